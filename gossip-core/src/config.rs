//! Node configuration.

use core::fmt;
use core::time::Duration;

use crate::state::Limits;
use crate::wire::{COUNT_RESERVE_LEN, ClusterId, MAX_HEADER_LEN};

/// How a [`Node`](crate::Node) gossips. Start from [`Config::new`] (Cassandra's
/// defaults: one-second rounds, fanout 1) or [`Config::lan`] (faster rounds for a
/// local network) and change fields; [`Node::new`](crate::Node::new) checks
/// the result with [`Config::validate`].
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// The cluster this node belongs to; datagrams of other clusters are
    /// dropped.
    pub cluster: ClusterId,
    /// Time between gossip rounds (Cassandra: 1 s). Most budgets are per
    /// round, so shorter rounds send more a second; the SYNs sent to
    /// members whose membership summaries differ (feature `catch-up`) are
    /// not: 32 a round with rounds of a second or longer, proportionally
    /// fewer with shorter ones (at least one).
    pub gossip_interval: Duration,
    /// Each round's delay is drawn uniformly from `gossip_interval` ± this
    /// percentage, so that nodes do not move in lockstep. 0 to 50.
    pub interval_jitter_percent: u8,
    /// Live peers sent a SYN each round, 1 to 3.
    pub fanout: u8,
    /// Phi above which a peer is probed at once, before its turn in the
    /// probe cycle (an early warning: nobody is convicted on phi alone).
    /// Cassandra's conviction threshold, 8.
    pub phi_threshold: f64,
    /// How long a probe waits for a direct answer before asking others to
    /// probe (PING-REQ), at least. `None`: a tenth of `gossip_interval`.
    /// Measured round trips lengthen it when answers take longer (`srtt + 4
    /// · rttvar`, up to half of `gossip_interval`). The indirect probes then
    /// have two probe timeouts more (a direct answer that comes late still
    /// counts until then).
    pub probe_timeout: Option<Duration>,
    /// Members asked to probe a member that did not answer (SWIM's `k`),
    /// 1 to 8.
    pub indirect_probes: u8,
    /// The shortest suspicion, in gossip intervals per decade of cluster
    /// size: `suspicion_mult * gossip_interval * max(2, log10(N))` once
    /// fully confirmed. Above 0, at most 100.
    pub suspicion_mult: f64,
    /// The longest suspicion (no confirmation) as a multiple of the
    /// shortest, 1 to 100.
    pub suspicion_max_mult: u32,
    /// Each membership rumor is piggybacked about this many times per
    /// decade of cluster size (`λ · log10(N)`), 1 to 32.
    pub rumor_retransmit_mult: u8,
    /// Members hot news (a suspicion, a death, a refutation, a restart) is
    /// pushed to at once, 0 to 8 (at most 6 pushes a round; the rest of the
    /// news rides piggyback).
    pub push_fanout: u8,
    /// The interval a peer's first heartbeat is assumed to follow (it counts
    /// in the mean until the window has rotated it out). `None`: twice
    /// `gossip_interval`, as Cassandra.
    pub fd_initial_interval: Option<Duration>,
    /// A local pause (no round for this long) suspends suspicions for as
    /// long again, so a node that was frozen does not suspect everyone.
    /// `None`: five
    /// gossip intervals.
    pub max_local_pause: Option<Duration>,
    /// A peer down this long is removed from the table.
    pub removal_delay: Duration,
    /// A removed peer's address is quarantined this long: gossip about its old
    /// generation is ignored, so stale state cannot bring it back. A newer
    /// generation (a real restart) is accepted at once.
    pub quarantine_delay: Duration,
    /// The largest datagram sent or accepted, in bytes (default 1400, one
    /// Ethernet frame). All nodes of a cluster should use the same value.
    pub max_datagram_size: usize,
    /// The most endpoints the peer table holds (removed ones in quarantine
    /// included). Newcomers beyond it are refused and counted.
    pub max_peers: usize,
    /// Received SYNs and ACKs waiting for their reply to be polled. The drain
    /// rule keeps this near zero; beyond it datagrams are dropped and counted.
    pub max_pending_replies: usize,
    /// The most CATCH-UP datagrams a node sends a round, paced evenly
    /// through it: bursts of whole endpoints for peers far behind (a
    /// joiner, a node back from a partition or a restart), at most a quarter
    /// of them per burst and half of them a round to one peer. 0 turns
    /// catch-up off (far-behind peers then catch up one ACK at a time);
    /// at most [`MAX_CATCH_UP_DATAGRAMS`].
    pub catch_up_datagrams: u16,
    /// Bounds on each endpoint's application states.
    pub limits: Limits,
}

impl Config {
    /// Cassandra's defaults for cluster `cluster`: 1 s rounds (±10%), fanout
    /// 1, phi 8, removal after 1 h down, 60 s quarantine, 1400-byte datagrams,
    /// up to 1024 peers; SWIM's probes with a 200 ms probe timeout, 3
    /// indirect probes, suspicions of 0.5 to 2 rounds per decade of cluster
    /// size, rumors sent 4 times per decade and pushed to 3 members.
    pub fn new(cluster: ClusterId) -> Self {
        Self {
            cluster,
            gossip_interval: Duration::from_secs(1),
            interval_jitter_percent: 10,
            fanout: 1,
            phi_threshold: 8.0,
            probe_timeout: None,
            indirect_probes: 3,
            suspicion_mult: 0.5,
            suspicion_max_mult: 4,
            rumor_retransmit_mult: 4,
            push_fanout: 3,
            fd_initial_interval: None,
            max_local_pause: None,
            removal_delay: Duration::from_secs(3600),
            quarantine_delay: Duration::from_secs(60),
            max_datagram_size: 1400,
            max_peers: 1024,
            max_pending_replies: 16,
            catch_up_datagrams: 128,
            limits: Limits::default(),
        }
    }

    /// For a local network: 200 ms rounds and fanout 2, otherwise as
    /// [`Config::new`].
    pub fn lan(cluster: ClusterId) -> Self {
        Self {
            gossip_interval: Duration::from_millis(200),
            fanout: 2,
            ..Self::new(cluster)
        }
    }

    /// Heartbeat arrivals closer than this (half a gossip interval) count as
    /// one: the same news by two paths says nothing about a peer's rhythm.
    pub fn fd_min_interval(&self) -> Duration {
        self.gossip_interval / 2
    }

    /// The failure detector's initial interval.
    pub fn fd_initial_interval(&self) -> Duration {
        self.fd_initial_interval
            .unwrap_or(self.gossip_interval.saturating_mul(2))
    }

    /// The probe timeout.
    pub fn probe_timeout(&self) -> Duration {
        self.probe_timeout.unwrap_or(self.gossip_interval / 10)
    }

    /// The local pause that suspends convictions.
    pub fn max_local_pause(&self) -> Duration {
        self.max_local_pause
            .unwrap_or(self.gossip_interval.saturating_mul(5))
    }

    /// The smallest `max_datagram_size` that carries one entry of the largest
    /// size [`Limits`] allow (in an ACK with an IPv6 sender and endpoint),
    /// with room for an authentication seal (25 bytes).
    pub fn min_datagram_size(&self) -> usize {
        const ADDR: usize = 20;
        const VARINT64: usize = 10;
        const HEARTBEAT: usize = 1 + VARINT64;
        const SEAL: usize = 25;
        const CLAIM: usize = 6;
        (MAX_HEADER_LEN + 4 * COUNT_RESERVE_LEN + ADDR + VARINT64 + CLAIM + HEARTBEAT + SEAL)
            .saturating_add(self.limits.max_entry_len())
    }

    /// Checks every field; the error names the first that is wrong.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.gossip_interval < Duration::from_millis(1) {
            return Err(ConfigError::GossipInterval);
        }
        if self.interval_jitter_percent > 50 {
            return Err(ConfigError::Jitter);
        }
        if !(1..=3).contains(&self.fanout) {
            return Err(ConfigError::Fanout);
        }
        if !(self.phi_threshold > 0.0 && self.phi_threshold <= MAX_PHI_THRESHOLD) {
            return Err(ConfigError::PhiThreshold);
        }
        let timeout = self.probe_timeout();
        if timeout.is_zero() || timeout >= self.gossip_interval {
            return Err(ConfigError::ProbeTimeout);
        }
        if !(1..=8).contains(&self.indirect_probes) {
            return Err(ConfigError::IndirectProbes);
        }
        let mult_ok = self.suspicion_mult > 0.0 && self.suspicion_mult <= 100.0;
        if !mult_ok || !(1..=100).contains(&self.suspicion_max_mult) {
            return Err(ConfigError::Suspicion);
        }
        if !(1..=32).contains(&self.rumor_retransmit_mult) || self.push_fanout > 8 {
            return Err(ConfigError::Rumors);
        }
        if self.fd_initial_interval().is_zero() {
            return Err(ConfigError::FdInitialInterval);
        }
        if self.max_datagram_size > MAX_UDP_PAYLOAD {
            return Err(ConfigError::DatagramTooLarge);
        }
        let min = self.min_datagram_size();
        if self.max_datagram_size < min {
            return Err(ConfigError::DatagramTooSmall { min });
        }
        if self.max_peers == 0 || self.max_peers > MAX_PEERS {
            return Err(ConfigError::MaxPeers);
        }
        if self.max_pending_replies == 0 {
            return Err(ConfigError::PendingReplies);
        }
        if self.catch_up_datagrams > MAX_CATCH_UP_DATAGRAMS {
            return Err(ConfigError::CatchUp);
        }
        let l = &self.limits;
        if l.max_keys_per_endpoint == 0
            || l.max_keys_per_endpoint > usize::from(u16::MAX)
            || l.max_key_len == 0
            || l.max_version_jump == 0
        {
            return Err(ConfigError::Limits);
        }
        Ok(())
    }
}

/// The largest phi threshold accepted (Cassandra's default is 8; 100 would
/// wait 230 mean intervals).
pub const MAX_PHI_THRESHOLD: f64 = 100.0;

/// The most CATCH-UP datagrams a round that may be configured.
pub const MAX_CATCH_UP_DATAGRAMS: u16 = 4096;

/// The largest UDP payload over IPv4.
pub const MAX_UDP_PAYLOAD: usize = 65_507;

/// The most peers a table may be configured for (indices are 32-bit).
pub const MAX_PEERS: usize = (u32::MAX - 1) as usize;

/// A [`Config`] (or the storage it is paired with) that cannot work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// `gossip_interval` is under a millisecond.
    GossipInterval,
    /// `interval_jitter_percent` is over 50.
    Jitter,
    /// `fanout` is not 1, 2 or 3.
    Fanout,
    /// `phi_threshold` is not above 0 and at most [`MAX_PHI_THRESHOLD`].
    PhiThreshold,
    /// `fd_initial_interval` is zero.
    FdInitialInterval,
    /// `probe_timeout` is zero, or not shorter than `gossip_interval`.
    ProbeTimeout,
    /// `indirect_probes` is not 1 to 8.
    IndirectProbes,
    /// `suspicion_mult` is not above 0 and at most 100, or
    /// `suspicion_max_mult` not 1 to 100.
    Suspicion,
    /// `rumor_retransmit_mult` is not 1 to 32, or `push_fanout` over 8.
    Rumors,
    /// `max_datagram_size` is over the largest UDP payload.
    DatagramTooLarge,
    /// `max_datagram_size` cannot carry one entry of the largest allowed size.
    DatagramTooSmall {
        /// The smallest size that can, with these limits.
        min: usize,
    },
    /// `max_peers` is zero or too large.
    MaxPeers,
    /// `max_pending_replies` is zero.
    PendingReplies,
    /// `catch_up_datagrams` is over [`MAX_CATCH_UP_DATAGRAMS`].
    CatchUp,
    /// `limits` allow no keys, or empty key names, or more than 65535 keys,
    /// or no version jump at all.
    Limits,
    /// The storage cannot hold what the configuration allows.
    Storage(StorageShortfall),
    /// More seeds than a node keeps ([`MAX_SEEDS`](crate::MAX_SEEDS)).
    TooManySeeds,
    /// A generation above
    /// [`MAX_GENERATION`](crate::state::MAX_GENERATION): generations are
    /// 32-bit.
    Generation,
}

/// Which fixed capacity is smaller than the configuration needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StorageShortfall {
    /// The peer table holds fewer than `max_peers` endpoints.
    Peers,
    /// An endpoint's state buffer is smaller than the largest state the
    /// limits allow ([`Limits::max_state_bytes`]).
    StateBytes,
    /// A stored datagram is smaller than `max_datagram_size`.
    DatagramBytes,
    /// Fewer reply slots than `max_pending_replies`.
    Replies,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::GossipInterval => f.write_str("gossip interval must be at least 1 ms"),
            ConfigError::Jitter => f.write_str("interval jitter must be at most 50%"),
            ConfigError::Fanout => f.write_str("fanout must be 1, 2 or 3"),
            ConfigError::PhiThreshold => {
                f.write_str("phi threshold must be above 0 and at most 100")
            }
            ConfigError::FdInitialInterval => {
                f.write_str("failure detector initial interval must not be zero")
            }
            ConfigError::ProbeTimeout => {
                f.write_str("probe timeout must be above zero and below the gossip interval")
            }
            ConfigError::IndirectProbes => f.write_str("indirect probes must be 1 to 8"),
            ConfigError::Suspicion => f.write_str(
                "suspicion multiplier must be above 0 and at most 100, its max multiple 1 to 100",
            ),
            ConfigError::Rumors => {
                f.write_str("rumor retransmit multiplier must be 1 to 32 and push fanout at most 8")
            }
            ConfigError::DatagramTooLarge => write!(
                f,
                "max datagram size must be at most {MAX_UDP_PAYLOAD} bytes"
            ),
            ConfigError::DatagramTooSmall { min } => write!(
                f,
                "max datagram size must be at least {min} bytes for these limits"
            ),
            ConfigError::MaxPeers => f.write_str("max peers must be between 1 and 2^32 - 2"),
            ConfigError::PendingReplies => f.write_str("max pending replies must not be zero"),
            ConfigError::CatchUp => write!(
                f,
                "catch-up datagrams must be at most {MAX_CATCH_UP_DATAGRAMS} a round"
            ),
            ConfigError::Limits => f.write_str(
                "limits must allow 1 to 65535 keys per endpoint and key names of at least 1 byte",
            ),
            ConfigError::Storage(what) => write!(
                f,
                "storage too small for the configuration: {}",
                match what {
                    StorageShortfall::Peers => "peer table capacity below max_peers",
                    StorageShortfall::StateBytes => "state buffer below the limits' largest state",
                    StorageShortfall::DatagramBytes => "datagram buffer below max_datagram_size",
                    StorageShortfall::Replies => "reply slots below max_pending_replies",
                }
            ),
            ConfigError::TooManySeeds => write!(f, "at most {} seeds", crate::MAX_SEEDS),
            ConfigError::Generation => write!(
                f,
                "generation above {}: generations are 32-bit",
                crate::state::MAX_GENERATION
            ),
        }
    }
}

impl core::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_each_bad_field_is_named() {
        let ok = Config::new(ClusterId::from_name("t"));
        assert_eq!(ok.validate(), Ok(()));
        assert_eq!(Config::lan(ok.cluster).validate(), Ok(()));
        assert_eq!(ok.fd_initial_interval(), Duration::from_secs(2));
        assert_eq!(ok.max_local_pause(), Duration::from_secs(5));
        let bad = |f: &dyn Fn(&mut Config)| {
            let mut c = ok.clone();
            f(&mut c);
            c.validate()
        };
        assert_eq!(
            bad(&|c| c.gossip_interval = Duration::ZERO),
            Err(ConfigError::GossipInterval)
        );
        assert_eq!(
            bad(&|c| c.interval_jitter_percent = 51),
            Err(ConfigError::Jitter)
        );
        assert_eq!(bad(&|c| c.fanout = 0), Err(ConfigError::Fanout));
        assert_eq!(bad(&|c| c.fanout = 4), Err(ConfigError::Fanout));
        assert_eq!(
            bad(&|c| c.phi_threshold = f64::NAN),
            Err(ConfigError::PhiThreshold)
        );
        assert_eq!(
            bad(&|c| c.phi_threshold = 0.0),
            Err(ConfigError::PhiThreshold)
        );
        assert_eq!(
            bad(&|c| c.fd_initial_interval = Some(Duration::ZERO)),
            Err(ConfigError::FdInitialInterval)
        );
        assert_eq!(ok.probe_timeout(), Duration::from_millis(100));
        assert_eq!(
            bad(&|c| c.probe_timeout = Some(Duration::from_secs(1))),
            Err(ConfigError::ProbeTimeout)
        );
        assert_eq!(
            bad(&|c| c.probe_timeout = Some(Duration::ZERO)),
            Err(ConfigError::ProbeTimeout)
        );
        assert_eq!(
            bad(&|c| c.indirect_probes = 0),
            Err(ConfigError::IndirectProbes)
        );
        assert_eq!(
            bad(&|c| c.suspicion_mult = f64::NAN),
            Err(ConfigError::Suspicion)
        );
        assert_eq!(
            bad(&|c| c.suspicion_max_mult = 0),
            Err(ConfigError::Suspicion)
        );
        assert_eq!(
            bad(&|c| c.rumor_retransmit_mult = 0),
            Err(ConfigError::Rumors)
        );
        assert_eq!(bad(&|c| c.push_fanout = 9), Err(ConfigError::Rumors));
        assert_eq!(
            bad(&|c| c.max_datagram_size = 70_000),
            Err(ConfigError::DatagramTooLarge)
        );
        let min = ok.min_datagram_size();
        assert_eq!(
            bad(&|c| c.max_datagram_size = min - 1),
            Err(ConfigError::DatagramTooSmall { min })
        );
        assert_eq!(bad(&|c| c.max_datagram_size = min), Ok(()));
        assert_eq!(bad(&|c| c.max_peers = 0), Err(ConfigError::MaxPeers));
        assert_eq!(
            bad(&|c| c.max_pending_replies = 0),
            Err(ConfigError::PendingReplies)
        );
        assert_eq!(
            bad(&|c| c.limits.max_keys_per_endpoint = 0),
            Err(ConfigError::Limits)
        );
    }
}
