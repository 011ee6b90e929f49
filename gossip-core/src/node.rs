//! The gossip state machine: one [`Node`] per process (or per simulated node).
//!
//! See the [crate docs](crate) for the run loop and the drain rule.

use core::fmt;
use core::net::SocketAddr;
use core::time::Duration;

use rand_core::Rng;

#[cfg(feature = "auth")]
use crate::auth::Keyring;
use crate::claim::{Claim, Status};
use crate::config::{Config, ConfigError, StorageShortfall};
use crate::state::{
    ApplicationState, Delta, EndpointState, Generation, MergeError, StateKey, Version,
    VersionedValue,
};
use crate::storage::StateBuf;
use crate::table::{AddrIndex, Liveness, Peer, Reply, Seq, Slot, Storage, doubt, flags};
use crate::time::Instant;
use crate::wire::{
    self, Ack2Writer, AckWriter, Digests, GossipDigest, Header, Kind, Message, RingRange, Rumor,
    Syn, SynWriter, ring_position,
};

mod probe;
mod rumors;
mod suspicion;

pub use suspicion::MAX_HEALTH;

/// The most seeds a node keeps.
pub const MAX_SEEDS: usize = 16;

/// SYN targets in one round: `fanout` live peers, one more with news,
/// three more during a join, one unreachable, one seed.
const MAX_TARGETS: usize = 9;

/// Deltas ranked by version gap per reply; the rest follow unranked.
const RANKED_DELTAS: usize = 32;

/// Digest lookups an ACK remembers (a 1400-byte SYN holds about 90).
const FOUND_SCRATCH: usize = 256;

/// A SYN's digests as [`Node::note_digests`] decoded them, each with the slot
/// its endpoint was found in.
type Found<S> = <S as Storage>::Scratch<(u32, GossipDigest), FOUND_SCRATCH>;

/// The digests of `syn` past those `found` holds (none, unless the SYN
/// carried more than the scratch's size).
fn unnoted<'a, S: Storage>(
    found: &Found<S>,
    syn: &Syn<'a>,
) -> impl Iterator<Item = GossipDigest> + 'a {
    let noted = found.as_slice().len();
    (syn.digests.len() > noted)
        .then_some(syn.digests)
        .into_iter()
        .flat_map(move |digests| digests.skip(noted))
}

/// Scratch markers: the digest is of this node, or of no known slot.
const LOCAL_SLOT: u32 = u32::MAX - 1;
const NO_SLOT: u32 = u32::MAX;

/// Rounds after application news during which one more peer is gossiped to.
const NEWS_ROUNDS: u8 = 2;

/// How far past the incarnation known a claim may go (a member raises its
/// own by one per refutation); beyond, it is ignored as hostile.
const MAX_INCARNATION_JUMP: u32 = 1024;

/// Members that probe a suspect they hear of, on average (each one whose
/// probe fails confirms the suspicion; Lifeguard counts up to 3).
const CONFIRMING_PROBERS: u64 = 8;

/// Phi-triggered probes per round at most (the early warning).
const PHI_PROBES_PER_ROUND: u32 = 1;

/// Claims corrected in one ACK at most (digests that showed the SYN's
/// sender an older claim than ours).
const MAX_CORRECTIONS: usize = 4;

/// Recently refreshed endpoints remembered for the next SYNs.
const RECENT: usize = 64;

/// Requests ranked per ACK (more than half a datagram holds).
const RANKED_REQUESTS: usize = 64;

/// Consecutive deltas that do not fit before a reply is considered full.
const FULL_AFTER_MISSES: u32 = 4;

/// The STATUS value a node publishes when it shuts down gracefully.
pub const SHUTDOWN_STATUS: &[u8] = b"shutdown,true";

/// A datagram the caller must send: `size` bytes at the start of the buffer
/// given to [`Node::poll_transmit`], to `destination`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Where to send it.
    pub destination: SocketAddr,
    /// How many bytes of the buffer to send.
    pub size: usize,
}

/// A membership change, borrowed from the node until its next `&mut` call.
///
/// Followed from the node's creation, the events give its live set once
/// they are all polled: `Up` puts an endpoint in; `Down`, `Restarted` and
/// `Removed` take it out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// A new endpoint entered the table.
    Discovered {
        /// Its address.
        endpoint: SocketAddr,
    },
    /// An endpoint is believed up: newly known as alive, back from a
    /// suspicion (refuted) or from down, or its new incarnation alive after
    /// [`Event::Restarted`].
    Up {
        /// Its address.
        endpoint: SocketAddr,
    },
    /// An endpoint is suspected: a probe of it failed. It is still up (an
    /// [`Event::Up`] came before), and down unless it refutes (then
    /// [`Event::Up`] follows) before the suspicion times out.
    Suspect {
        /// Its address.
        endpoint: SocketAddr,
    },
    /// An endpoint that was up (or suspected) is believed down: its
    /// suspicion timed out.
    Down {
        /// Its address.
        endpoint: SocketAddr,
    },
    /// An endpoint came back with a newer generation; its old state is gone,
    /// and it is not believed up until an [`Event::Up`] follows (right after
    /// it, unless the cluster already says the new incarnation is down). A
    /// follower of the events takes it out of its live set here, as on
    /// [`Event::Down`].
    Restarted {
        /// Its address.
        endpoint: SocketAddr,
        /// Its new generation.
        generation: Generation,
    },
    /// An endpoint announced a graceful shutdown (STATUS `shutdown`).
    ShutDown {
        /// Its address.
        endpoint: SocketAddr,
    },
    /// An endpoint down longer than the removal delay left the table; its
    /// address is quarantined.
    Removed {
        /// Its address.
        endpoint: SocketAddr,
    },
    /// An application state of an endpoint changed. Changes made between two
    /// polls coalesce: the latest value is reported.
    StateChanged {
        /// Its address.
        endpoint: SocketAddr,
        /// The key.
        key: StateKey<'a>,
        /// The new value and its version.
        value: VersionedValue<'a>,
    },
}

macro_rules! drop_reasons {
    ($( $(#[$doc:meta])* $variant:ident => $name:literal, )*) => {
        /// Why a received datagram was dropped. In every case the node's state
        /// is unchanged.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum DropReason {
            $( $(#[$doc])* $variant, )*
        }

        impl DropReason {
            /// Every reason, in a fixed order.
            pub const ALL: &'static [DropReason] = &[$(DropReason::$variant),*];

            /// A short snake_case name, for metrics.
            pub fn name(self) -> &'static str {
                match self {
                    $( DropReason::$variant => $name, )*
                }
            }
        }
    };
}

drop_reasons! {
    /// Larger than `max_datagram_size`.
    Oversized => "oversized",
    /// Shorter than a header.
    Truncated => "truncated",
    /// Not a gossip datagram.
    BadMagic => "bad_magic",
    /// Another protocol version.
    UnsupportedVersion => "unsupported_version",
    /// Unknown flag bits.
    UnsupportedFlags => "unsupported_flags",
    /// From another cluster.
    OtherCluster => "other_cluster",
    /// A message kind this build does not know.
    UnknownKind => "unknown_kind",
    /// A body that does not parse.
    Malformed => "malformed",
    /// Bytes after the message.
    TrailingBytes => "trailing_bytes",
    /// Carries an authentication tag, and this node has no key ring.
    Unauthenticated => "unauthenticated",
    /// No authentication tag, and this node requires one (it has a key ring).
    MissingAuth => "missing_auth",
    /// An authentication tag that no installed key made (or malformed).
    BadMac => "bad_mac",
    /// A sequence number this node already saw from the sender, or one too
    /// far below the newest: a replayed datagram.
    Replayed => "replayed",
    /// Claims to come from this node's own address.
    FromSelf => "from_self",
    /// Its sender is a removed endpoint still in quarantine.
    Quarantined => "quarantined",
    /// Names one endpoint twice.
    DuplicateEndpoint => "duplicate_endpoint",
    /// A generation more than the allowed drift ahead of ours.
    BogusGeneration => "bogus_generation",
    /// An endpoint with more application states than allowed.
    TooManyKeys => "too_many_keys",
    /// A user key empty or longer than allowed.
    BadKey => "bad_key",
    /// A value longer than allowed.
    ValueTooLong => "value_too_long",
    /// A delta naming one key twice.
    DuplicateKey => "duplicate_key",
    /// A state larger than the fixed state storage.
    StateCapacity => "state_capacity",
    /// A version too far above the known ones (`Limits::max_version_jump`).
    VersionJump => "version_jump",
    /// Too many replies already pending.
    ReplyQueueFull => "reply_queue_full",
    /// The node is shut down.
    ShutDown => "shut_down",
}

impl DropReason {
    fn from_wire(e: wire::Error) -> Self {
        match e {
            wire::Error::Truncated => DropReason::Truncated,
            wire::Error::BadMagic => DropReason::BadMagic,
            wire::Error::UnsupportedVersion(_) => DropReason::UnsupportedVersion,
            wire::Error::UnsupportedFlags(_) => DropReason::UnsupportedFlags,
            wire::Error::OtherCluster(_) => DropReason::OtherCluster,
            wire::Error::UnknownKind(_) => DropReason::UnknownKind,
            wire::Error::TrailingBytes => DropReason::TrailingBytes,
            _ => DropReason::Malformed,
        }
    }

    fn from_merge(e: MergeError) -> Self {
        match e {
            MergeError::BogusGeneration => DropReason::BogusGeneration,
            MergeError::TooManyKeys => DropReason::TooManyKeys,
            MergeError::BadKey => DropReason::BadKey,
            MergeError::ValueTooLong => DropReason::ValueTooLong,
            MergeError::DuplicateKey => DropReason::DuplicateKey,
            MergeError::VersionJump => DropReason::VersionJump,
            MergeError::Capacity | MergeError::VersionExhausted => DropReason::StateCapacity,
        }
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

const DROP_REASONS: usize = 25;
const _: () = assert!(DropReason::ALL.len() == DROP_REASONS);

/// Counters of what a node did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Datagrams handed to [`Node::handle_datagram`].
    pub datagrams_in: u64,
    /// Their bytes.
    pub bytes_in: u64,
    /// Datagrams returned by [`Node::poll_transmit`].
    pub datagrams_out: u64,
    /// Their bytes.
    pub bytes_out: u64,
    /// Datagrams sent, by kind: SYN, ACK, ACK2, SHUTDOWN, PING, PING-REQ,
    /// PING-ACK, NACK, NEWS.
    pub sent_by_kind: [u64; KINDS],
    /// Datagrams accepted, by kind (as `sent_by_kind`).
    pub received_by_kind: [u64; KINDS],
    /// Gossip rounds run.
    pub rounds: u64,
    /// Rounds that started more than half an interval late (this node was
    /// overloaded or paused).
    pub late_rounds: u64,
    /// Probes started (PINGs of the probe cycle and extra ones).
    pub probes_sent: u64,
    /// Probes that failed, directly and through others.
    pub probe_failures: u64,
    /// PING-REQs sent (indirect probes asked of others).
    pub ping_reqs_sent: u64,
    /// Suspicions this node raised or confirmed after its own probe failed.
    pub suspicions_raised: u64,
    /// Suspicions that timed out here (this node claimed the member down).
    pub convictions: u64,
    /// Suspicions of this node that it refuted.
    pub refutations: u64,
    /// Liveness messages dropped because too many were waiting.
    pub outbox_full: u64,
    /// New endpoints refused because the table was full.
    pub refused_endpoints: u64,
    /// Deltas about quarantined endpoints' old generations, ignored.
    pub ignored_quarantined: u64,
    /// Replies (or SYNs) that could not be encoded into the buffer given.
    pub unencodable: u64,
    /// Why the latest dropped datagram was dropped.
    pub last_drop: Option<DropReason>,
    dropped: [u64; DROP_REASONS],
}

impl Stats {
    /// Datagrams dropped for `reason`.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped.get(reason as usize).copied().unwrap_or(0)
    }

    /// Datagrams dropped for any reason.
    pub fn dropped_total(&self) -> u64 {
        self.dropped.iter().sum()
    }

    /// Every reason with its count.
    pub fn drops(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        DropReason::ALL.iter().map(|r| (*r, self.dropped(*r)))
    }

    fn drop(&mut self, reason: DropReason) {
        if let Some(c) = self.dropped.get_mut(reason as usize) {
            *c = c.saturating_add(1);
        }
        self.last_drop = Some(reason);
    }
}

/// Message kinds counted in [`Stats`].
pub const KINDS: usize = 9;

fn kind_index(kind: Kind) -> usize {
    kind as usize - 1
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Running,
    /// Sending SHUTDOWN notices; `cursor` is the next slot to consider.
    ShuttingDown {
        cursor: usize,
    },
    Stopped,
}

/// One gossip node: the sans-IO state machine.
///
/// `S` chooses the storage ([`HeapStorage`](crate::HeapStorage) with an
/// allocator, [`FixedStorage`](crate::FixedStorage) without); `R` is the
/// caller's random number generator (any `rand_core` RNG; with the same seed
/// and the same inputs a node's outputs are byte for byte the same).
pub struct Node<S: Storage, R> {
    config: Config,
    local: SocketAddr,
    me: EndpointState<S::StateBuf>,
    peers: S::Peers,
    index: S::Index,
    free: S::Indices,
    events: S::Indices,
    event_head: usize,
    replies: S::Replies,
    /// Per slot, the seqs seen from that sender (authenticated clusters;
    /// empty until a sealed datagram arrives).
    #[cfg(feature = "auth")]
    replays: S::Replays,
    reply_head: usize,
    seeds: heapless::Vec<SocketAddr, MAX_SEEDS>,
    targets: heapless::Vec<SocketAddr, MAX_TARGETS>,
    /// Where the next SYN's stretch of the ring starts.
    ring_cursor: u32,
    /// The probe cycle, probes in flight, PING-REQs served, liveness
    /// messages to send.
    prober: probe::Prober,
    /// Every slot of the table once, in this node's random probe order.
    probe_order: S::Indices,
    /// Membership rumors to piggyback and push.
    rumors: rumors::Rumors,
    /// Suspects whose timeouts are tracked to the instant.
    suspects: heapless::Vec<u32, { suspicion::TRACKED_SUSPECTS }>,
    /// This node's incarnation within its generation (raised to refute).
    incarnation: u32,
    /// The bit this node sets in the suspicions it confirms.
    confirmer_bit: u8,
    /// `suspicion_mult`, in thousandths.
    suspicion_mult_milli: u64,
    /// Local health (Lifeguard): 0 is healthy, up to [`MAX_HEALTH`].
    health: u8,
    /// Phi-triggered probes this round may still start.
    phi_probes: u32,
    /// Slots whose news reached us most recently, newest last, with the
    /// stamp they had then (an entry is current while the slot's stamp
    /// matches).
    recent: heapless::Deque<(u32, u32), RECENT>,
    stamp: u32,
    /// Rounds left that push application news to one more peer.
    news: u8,
    /// Rounds left that gossip to three more peers: new endpoints or
    /// generations came in lately (a join is going on, and the joiners'
    /// states and ours spread faster for it).
    joining: u8,
    rng: R,
    next_round: Instant,
    last_round: Option<Instant>,
    pause_grace_until: Instant,
    /// When the node was created, and the latest `now` it was given.
    started: Instant,
    last_now: Instant,
    /// Occupied slots (members and quarantined).
    occupied: usize,
    /// Members believed up (alive or suspected).
    alive: usize,
    /// Members down or left.
    unreachable: usize,
    phase: Phase,
    stats: Stats,
    /// The key ring, when authenticating.
    #[cfg(feature = "auth")]
    auth: Option<Keyring>,
    /// The next `seq` to seal with: kept when the ring is switched off and
    /// on again, so peers never see a `seq` twice.
    #[cfg(feature = "auth")]
    next_seq: u64,
}

impl<S: Storage, R: Rng> Node<S, R> {
    /// A node gossiping as `local` (its address, and identity, in the
    /// cluster) in incarnation `generation`, knowing `seeds` (its own address
    /// among them is ignored). Its first round is due at `now`.
    ///
    /// Fails when the configuration is invalid or the storage cannot hold
    /// what it allows.
    pub fn new(
        config: Config,
        local: SocketAddr,
        generation: Generation,
        seeds: &[SocketAddr],
        mut rng: R,
        now: Instant,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        check_storage::<S>(&config)?;
        let mut seed_list = heapless::Vec::new();
        for seed in seeds {
            if *seed != local && !seed_list.contains(seed) {
                seed_list
                    .push(*seed)
                    .map_err(|_| ConfigError::TooManySeeds)?;
            }
        }
        let mut index = S::Index::default();
        index.seed(rng.next_u64());
        let prober = probe::Prober::new();
        // Validated: above 0 and at most 100.
        let suspicion_mult_milli = (config.suspicion_mult * 1000.0) as u64;
        Ok(Self {
            config,
            local,
            me: EndpointState::new(generation),
            peers: S::Peers::default(),
            index,
            free: S::Indices::default(),
            events: S::Indices::default(),
            event_head: 0,
            replies: S::Replies::default(),
            #[cfg(feature = "auth")]
            replays: S::Replays::default(),
            reply_head: 0,
            seeds: seed_list,
            targets: heapless::Vec::new(),
            ring_cursor: 0,
            prober,
            probe_order: S::Indices::default(),
            rumors: rumors::Rumors::default(),
            suspects: heapless::Vec::new(),
            incarnation: 0,
            confirmer_bit: crate::claim::confirmer_bit(ring_position(&local)),
            suspicion_mult_milli,
            health: 0,
            phi_probes: PHI_PROBES_PER_ROUND,
            recent: heapless::Deque::new(),
            stamp: 0,
            news: 0,
            joining: 0,
            rng,
            next_round: now,
            last_round: None,
            pause_grace_until: Instant::ZERO,
            started: now,
            last_now: now,
            occupied: 0,
            alive: 0,
            unreachable: 0,
            phase: Phase::Running,
            stats: Stats::default(),
            #[cfg(feature = "auth")]
            auth: None,
            #[cfg(feature = "auth")]
            next_seq: crate::auth::first_seq(generation.0),
        })
    }

    // ---- inputs ---------------------------------------------------------

    /// A datagram arrived from `from` (its source address; replies go there).
    ///
    /// Bad input never panics and is never an error for the caller: it is
    /// dropped, counted by reason in [`Node::stats`], and leaves the state
    /// unchanged. Every delta of a datagram is checked before any is applied.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        self.last_now = self.last_now.max(now);
        if self.phase == Phase::Running {
            self.note_pause(now);
        }
        self.stats.datagrams_in += 1;
        self.stats.bytes_in += datagram.len() as u64;
        if let Err(reason) = self.try_handle(now, from, datagram) {
            self.stats.drop(reason);
        }
    }

    /// A deadline passed. Runs the gossip round when it is due; harmless when
    /// called early or often.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.last_now = self.last_now.max(now);
        if self.phase != Phase::Running {
            return;
        }
        self.note_pause(now);
        self.probe_deadlines(now);
        self.expire_suspicions(now);
        if now >= self.next_round {
            self.round(now);
        }
    }

    // ---- commands -------------------------------------------------------

    /// Sets one of this node's application states; it spreads from the next
    /// round on. Returns the version it was written at.
    pub fn set_local_state(
        &mut self,
        key: StateKey<'_>,
        value: &[u8],
    ) -> Result<Version, MergeError> {
        let limits = self.config.limits;
        let version = self.me.set_local(key, value, &limits)?;
        self.news = NEWS_ROUNDS;
        Ok(version)
    }

    /// Leaves the cluster gracefully: STATUS becomes `shutdown,true`, the
    /// heartbeat jumps to the highest version, and the following
    /// [`poll_transmit`](Self::poll_transmit) calls return a SHUTDOWN notice
    /// for every live peer, which marks this node down at once. When they are
    /// drained, [`is_shut_down`](Self::is_shut_down) is true and the node
    /// neither sends nor accepts anything more.
    pub fn shutdown(&mut self, now: Instant) {
        if self.phase != Phase::Running {
            return;
        }
        let limits = self.config.limits;
        // Fails only if the state is full of other keys; the notice itself
        // still marks this node down.
        let _ = self.me.set_local(
            StateKey::Known(ApplicationState::Status),
            SHUTDOWN_STATUS,
            &limits,
        );
        self.me.force_highest_heartbeat();
        self.targets.clear();
        self.replies.truncate(0);
        self.reply_head = 0;
        self.phase = Phase::ShuttingDown { cursor: 0 };
        self.last_round = Some(now);
    }

    /// Authenticates from now on with `ring` (feature `auth`): every datagram
    /// sent is sealed with its primary key, and every datagram received must
    /// carry a seal made with one of its keys and a sequence number not seen
    /// before from its sender; others are dropped ([`DropReason::MissingAuth`],
    /// [`DropReason::BadMac`], [`DropReason::Replayed`]). `None` turns
    /// authentication off. Rotate keys by changing the ring in place
    /// ([`keyring_mut`](Self::keyring_mut)).
    #[cfg(feature = "auth")]
    pub fn set_keyring(&mut self, ring: Option<Keyring>) {
        self.auth = ring;
    }

    /// The key ring, when authenticating.
    #[cfg(feature = "auth")]
    pub fn keyring(&self) -> Option<&Keyring> {
        self.auth.as_ref()
    }

    /// The key ring, to install, promote or remove keys.
    #[cfg(feature = "auth")]
    pub fn keyring_mut(&mut self) -> Option<&mut Keyring> {
        self.auth.as_mut()
    }

    // ---- outputs --------------------------------------------------------

    /// The next datagram to send, encoded into `buf` (at most
    /// `max_datagram_size` bytes of it are used; give at least that many, or
    /// what does not fit is counted in [`Stats::unencodable`] and skipped).
    /// Call until `None` after every input.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<Transmit> {
        let limit = buf.len().min(self.config.max_datagram_size);
        let full = buf.get_mut(..limit)?;
        // Room for the seal, when authenticating.
        #[cfg(feature = "auth")]
        let message_limit = match self.auth {
            Some(_) => limit.saturating_sub(crate::auth::TRAILER_LEN),
            None => limit,
        };
        #[cfg(not(feature = "auth"))]
        let message_limit = limit;
        loop {
            let buf = full.get_mut(..message_limit)?;
            let (destination, size, kind) = match self.phase {
                Phase::Stopped => return None,
                Phase::ShuttingDown { cursor } => match self.next_shutdown_target(cursor) {
                    Some((slot, destination)) => {
                        self.phase = Phase::ShuttingDown { cursor: slot + 1 };
                        (destination, Some(self.write_shutdown(buf)), Kind::Shutdown)
                    }
                    None => {
                        self.phase = Phase::Stopped;
                        return None;
                    }
                },
                Phase::Running => {
                    if let Some(out) = self.prober.next_outgoing() {
                        let size = self.write_liveness(buf, out.to, &out.msg);
                        (out.to, Some(size), out.msg.kind())
                    } else if let Some(reply) = self.write_next_reply(now, buf) {
                        reply
                    } else if let Some(to) = self.next_push() {
                        let size = self.write_news(buf, to);
                        (to, size, Kind::News)
                    } else if let Some(target) = self.targets.pop() {
                        self.watch_gossip(now, target);
                        (target, Some(self.write_syn(buf, target)), Kind::Syn)
                    } else {
                        return None;
                    }
                }
            };
            let size = match size {
                // Nothing to say (an exchange already in sync).
                None => continue,
                Some(0) => {
                    self.stats.unencodable += 1;
                    continue;
                }
                Some(size) => size,
            };
            #[cfg(feature = "auth")]
            let size = match &self.auth {
                Some(ring) => {
                    let Some(sealed) = ring.seal(full, size, self.next_seq) else {
                        self.stats.unencodable += 1;
                        continue;
                    };
                    self.next_seq = self.next_seq.wrapping_add(1);
                    sealed
                }
                None => size,
            };
            self.stats.datagrams_out += 1;
            self.stats.bytes_out += size as u64;
            if let Some(c) = self.stats.sent_by_kind.get_mut(kind_index(kind)) {
                *c += 1;
            }
            return Some(Transmit { destination, size });
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) is next due; `None` once
    /// the node has shut down.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.phase != Phase::Running {
            return None;
        }
        let probes = self.prober.next_deadline();
        // Suspicions do not time out while recovering from a pause.
        let suspicions = self
            .next_suspicion_deadline()
            .map(|t| t.max(self.pause_grace_until));
        let next = [probes, suspicions]
            .into_iter()
            .flatten()
            .fold(self.next_round, Instant::min);
        Some(next)
    }

    /// The next membership event, `None` when there are none.
    pub fn poll_event(&mut self) -> Option<Event<'_>> {
        let (idx, kind) = self.next_event()?;
        let peer = self.peers.as_slice().get(idx as usize)?;
        let endpoint = peer.addr();
        Some(match kind {
            EventKind::Discovered => Event::Discovered { endpoint },
            EventKind::Up => Event::Up { endpoint },
            EventKind::Suspect => Event::Suspect { endpoint },
            EventKind::Down => Event::Down { endpoint },
            EventKind::Restarted => Event::Restarted {
                endpoint,
                generation: peer.state.generation(),
            },
            EventKind::ShutDown => Event::ShutDown { endpoint },
            EventKind::Removed => Event::Removed { endpoint },
            EventKind::StateChanged(version) => {
                let (key, value) = peer.state.entries().find(|(_, v)| v.version == version)?;
                Event::StateChanged {
                    endpoint,
                    key,
                    value,
                }
            }
        })
    }

    // ---- getters --------------------------------------------------------

    /// This node's address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// This node's own state.
    pub fn local_state(&self) -> &EndpointState<S::StateBuf> {
        &self.me
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The seeds (without this node).
    pub fn seeds(&self) -> &[SocketAddr] {
        &self.seeds
    }

    /// Every known endpoint other than this node (removed ones excluded).
    pub fn endpoints(&self) -> impl Iterator<Item = &Peer<S::StateBuf>> + '_ {
        self.peers.as_slice().iter().filter(|p| p.is_member())
    }

    /// The endpoint at `addr`, if known (not this node).
    pub fn endpoint(&self, addr: &SocketAddr) -> Option<&Peer<S::StateBuf>> {
        let idx = self.index.find(addr, self.peers.as_slice())?;
        self.peers
            .as_slice()
            .get(idx as usize)
            .filter(|p| p.is_member())
    }

    /// Where the endpoint at `addr` sits in the peer table, if known: a
    /// handle for [`endpoint_at`](Self::endpoint_at) that saves the lookup.
    /// It stays valid while the endpoint is in the table; once the endpoint
    /// is removed, the slot may hold another.
    pub fn endpoint_slot(&self, addr: &SocketAddr) -> Option<usize> {
        let idx = self.index.find(addr, self.peers.as_slice())? as usize;
        self.peers.as_slice().get(idx)?.is_member().then_some(idx)
    }

    /// The endpoint in table slot `slot` (see
    /// [`endpoint_slot`](Self::endpoint_slot)), if the slot holds one.
    pub fn endpoint_at(&self, slot: usize) -> Option<&Peer<S::StateBuf>> {
        self.peers.as_slice().get(slot).filter(|p| p.is_member())
    }

    /// Makes room for `additional` more endpoints at once (never past
    /// [`Config::max_peers`]), for a node that knows how large its cluster
    /// is: with [`HeapStorage`](crate::HeapStorage) the peer table, its
    /// index and ring order are allocated once, at that size, instead of
    /// growing (and copying themselves) as endpoints are learned, and hold
    /// no spare room past it. Fixed storage has all its room already: a
    /// no-op there.
    pub fn reserve_peers(&mut self, additional: usize) {
        let slots = self.peers.as_slice().len();
        let room = self.config.max_peers.saturating_sub(self.occupied);
        let additional = additional.min(room);
        // Free slots are reused before the table grows.
        let new_slots = additional
            .saturating_sub(self.free.as_slice().len())
            .min(self.config.max_peers.saturating_sub(slots));
        self.peers.reserve(new_slots);
        self.probe_order.reserve(new_slots);
        self.index.reserve(additional, self.peers.as_slice());
    }

    /// This node's incarnation within its generation: raised each time it
    /// refutes a suspicion of itself.
    pub fn incarnation(&self) -> u32 {
        self.incarnation
    }

    /// Local health (Lifeguard): 0 when healthy, up to [`MAX_HEALTH`]; probe
    /// and suspicion timeouts are multiplied by one more than it.
    pub fn health(&self) -> u8 {
        self.health
    }

    /// Known endpoints (this node excluded).
    pub fn endpoint_count(&self) -> usize {
        self.alive + self.unreachable
    }

    /// Endpoints believed up (alive or suspected).
    pub fn live_count(&self) -> usize {
        self.alive
    }

    /// Endpoints down or left.
    pub fn unreachable_count(&self) -> usize {
        self.unreachable
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Whether [`shutdown`](Self::shutdown) was called.
    pub fn is_shutting_down(&self) -> bool {
        self.phase != Phase::Running
    }

    /// Whether the shutdown notices have all been polled.
    pub fn is_shut_down(&self) -> bool {
        self.phase == Phase::Stopped
    }

    // ---- private: input -------------------------------------------------

    fn try_handle(
        &mut self,
        now: Instant,
        from: SocketAddr,
        datagram: &[u8],
    ) -> Result<(), DropReason> {
        if self.phase != Phase::Running {
            return Err(DropReason::ShutDown);
        }
        if datagram.len() > self.config.max_datagram_size {
            return Err(DropReason::Oversized);
        }
        let decoded = wire::decode(datagram, self.config.cluster).map_err(DropReason::from_wire)?;
        #[cfg(feature = "auth")]
        let seq = match (&self.auth, decoded.auth_tag) {
            (Some(ring), Some(_)) => Some(ring.open(datagram).map_err(|_| DropReason::BadMac)?),
            (Some(_), None) => return Err(DropReason::MissingAuth),
            (None, Some(_)) => return Err(DropReason::Unauthenticated),
            (None, None) => None,
        };
        #[cfg(not(feature = "auth"))]
        if decoded.auth_tag.is_some() {
            return Err(DropReason::Unauthenticated);
        }
        let sender = decoded.header.sender;
        if sender == self.local {
            return Err(DropReason::FromSelf);
        }
        // A seq seen before, too far below the newest, or from an older
        // incarnation of the sender than the one known (its generation is
        // in the seq's high half) is a replay.
        #[cfg(feature = "auth")]
        if let Some(seq) = seq
            && let Some(idx) = self.index.find(&sender, self.peers.as_slice())
            && self.peers.as_slice().get(idx as usize).is_some_and(|p| {
                let window = self.replays.as_slice().get(idx as usize).copied();
                !window.unwrap_or_default().is_fresh(seq)
                    || seq < crate::auth::first_seq(p.state.generation().0)
            })
        {
            return Err(DropReason::Replayed);
        }
        // Authenticated replies go to the sender's authenticated address,
        // not to the datagram's source: a replayed datagram with a forged
        // source cannot aim replies at a third party.
        #[cfg(feature = "auth")]
        let from = if seq.is_some() { sender } else { from };
        if let Some(idx) = self.index.find(&sender, self.peers.as_slice())
            && self
                .peers
                .as_slice()
                .get(idx as usize)
                .is_some_and(|p| p.slot == Slot::Quarantined)
            && !revives_sender(&decoded.message, self.peers.as_slice().get(idx as usize))
        {
            return Err(DropReason::Quarantined);
        }
        match decoded.message {
            // Its digests are noted when the reply is written, in the same
            // pass that finds them for the reply.
            Message::Syn(syn) => {
                self.queue_reply(from, StoredReply::Syn(syn.digests, syn.range))?;
            }
            Message::Ack(ack) => {
                let slots = self.check_deltas(ack.deltas)?;
                if !ack.requests.is_empty() {
                    self.queue_reply(from, StoredReply::Ack(ack.requests))?;
                }
                self.apply_deltas(now, ack.deltas, &slots);
            }
            Message::Ack2(ack2) => {
                let slots = self.check_deltas(ack2.deltas)?;
                self.apply_deltas(now, ack2.deltas, &slots);
            }
            Message::Shutdown(notice) => {
                let slot = self.check_delta(sender, &notice.delta)?;
                let claim = Claim::new(0, Status::Alive);
                self.apply_delta(now, sender, &notice.delta, claim, Some(slot));
                self.mark_shut_down(now, sender, notice.delta.generation);
            }
            Message::Probe(probe) => self.handle_probe(now, sender, from, probe),
        }
        // The datagram was accepted: an answer from its sender, and news.
        self.prober.heard_from(sender);
        for rumor in decoded.rumors {
            self.hear_rumor(now, from, &rumor);
        }
        if let Some(c) = self
            .stats
            .received_by_kind
            .get_mut(kind_index(decoded.message.kind()))
        {
            *c += 1;
        }
        #[cfg(feature = "auth")]
        if let Some(seq) = seq
            && let Some(idx) = self.index.find(&sender, self.peers.as_slice())
        {
            // Windows exist for the slots of senders heard sealed so far.
            while self.replays.as_slice().len() <= idx as usize
                && self.replays.try_push(Default::default()).is_ok()
            {}
            if let Some(window) = self.replays.as_mut_slice().get_mut(idx as usize) {
                window.record(seq);
            }
        }
        Ok(())
    }

    /// Our generation advanced by the seconds we have been running: the
    /// reference the one-year bogus-generation limit is measured from (a
    /// generation is boot time in seconds), as Cassandra measures it from now.
    fn reference_generation(&self) -> Generation {
        let running = (self.last_now - self.started).as_secs();
        Generation(self.me.generation().0.saturating_add(running))
    }

    /// A rumor arrived from `from` (the datagram's source): merged into what
    /// we believe (about ourselves: a suspicion or death is refuted). A rumor
    /// about a newer generation of a known endpoint (a restart) sends `from`
    /// a SYN: it has the new state, and our digest of the old one asks for
    /// all of it (the restarted endpoint itself would get a SYN from everyone
    /// at once). Only a member's datagram does that.
    fn hear_rumor(&mut self, now: Instant, from: SocketAddr, r: &Rumor) {
        if r.endpoint == self.local {
            self.hear_about_self(r.generation, r.claim);
            return;
        }
        let Some(idx) = self.index.find(&r.endpoint, self.peers.as_slice()) else {
            return;
        };
        let Some(p) = self.peers.as_slice().get(idx as usize) else {
            return;
        };
        if !p.is_member() {
            return;
        }
        let known = p.state.generation();
        if r.generation == known {
            self.merge_claim(now, idx, r.generation, r.claim, Source::Heard);
        } else if r.generation > known
            && r.claim.status == Status::Alive
            && self.endpoint(&from).is_some()
        {
            self.add_target(from);
        }
    }

    /// Someone claims `claim` about this node's `generation`: a suspicion or
    /// death at our incarnation (or a later one) is refuted at once with a
    /// newer incarnation, pushed as hot news.
    fn hear_about_self(&mut self, generation: Generation, claim: Claim) {
        if generation != self.me.generation()
            || self.phase != Phase::Running
            || claim.incarnation > self.incarnation.saturating_add(MAX_INCARNATION_JUMP)
        {
            return;
        }
        if claim.status != Status::Alive && claim.incarnation >= self.incarnation {
            self.incarnation = claim.incarnation.saturating_add(1);
            self.stats.refutations += 1;
            self.health_worse();
            self.spread(LOCAL_SLOT, true);
        } else if claim.status == Status::Alive && claim.incarnation > self.incarnation {
            // An incarnation of ours from before a restart within the same
            // generation: go on from it.
            self.incarnation = claim.incarnation;
        }
    }

    /// Merges `claim` about slot `idx` (at `generation`) into what we
    /// believe; returns whether it changed anything. A claim heard from
    /// others that newly suspects a member makes us probe it ourselves (a
    /// failure is one more confirmation).
    fn merge_claim(
        &mut self,
        now: Instant,
        idx: u32,
        generation: Generation,
        claim: Claim,
        source: Source,
    ) -> bool {
        let heard = source == Source::Heard;
        // The shortest suspicion here: a death heard sooner than that after
        // its suspicion reached us is old news arriving in a burst.
        let shortest = (heard && claim.is_gone())
            .then(|| self.suspicion_timeout(crate::claim::MAX_CONFIRMATIONS));
        let Some(p) = self.peers.as_mut_slice().get_mut(idx as usize) else {
            return false;
        };
        // Leaving is final within a generation (a restart is a new one), and
        // a member raises its incarnation a step at a time: a claim far
        // beyond the one known is hostile.
        if !p.is_member()
            || p.state.generation() != generation
            || p.has_left()
            || claim.incarnation > p.incarnation.saturating_add(MAX_INCARNATION_JUMP)
        {
            return false;
        }
        // A death heard of a member we had no doubt about, that answered our
        // own probe during its suspicion, or whose suspicion reached us only
        // just now (news from across a partition that healed since comes as
        // a burst of old suspicions and deaths), is a fully confirmed
        // suspicion here, not a death: we probe it ourselves before our
        // shortest suspicion ends, and it can refute meanwhile. A real death
        // was suspected here first, a suspicion's length before (the
        // suspicion spreads as fast as the death does, and the death comes
        // a timeout later), or our own probe failed.
        let doubtful = match (p.liveness, shortest) {
            (Liveness::Alive, _) => true,
            (Liveness::Suspect, Some(shortest)) => {
                p.doubt & doubt::ANSWERED != 0
                    || (p.doubt & doubt::CONFIRMED == 0 && now - p.since < shortest)
            }
            _ => false,
        };
        let claim = if shortest.is_some() && doubtful {
            Claim {
                confirmers: u8::MAX,
                ..Claim::new(claim.incarnation, Status::Suspect)
            }
        } else {
            claim
        };
        let ours = p.claim();
        let merged = ours.merge(&claim);
        if merged == ours {
            return false;
        }
        let claim = merged;
        let before = p.liveness;
        let liveness = match claim.status {
            Status::Alive => Liveness::Alive,
            Status::Suspect => Liveness::Suspect,
            Status::Down | Status::Left => Liveness::Down,
        };
        let confirmed_more =
            liveness == Liveness::Suspect && claim.confirmations() > ours.confirmations();
        p.incarnation = claim.incarnation;
        p.confirmers = match claim.status {
            Status::Suspect => claim.confirmers,
            _ => 0,
        };
        // A suspicion of a newer incarnation is a new suspicion: its clock
        // and what we found of the old one start over.
        let new_suspicion = liveness == Liveness::Suspect
            && (before != Liveness::Suspect || claim.incarnation != ours.incarnation);
        if new_suspicion {
            p.doubt = 0;
            p.since = now;
        }
        self.set_liveness(idx, liveness, now);
        if liveness == Liveness::Suspect {
            self.track_suspect(idx);
            // A few of those who hear a suspicion probe the suspect: enough
            // for its confirmations, not a flood at every false alarm.
            let members = self.alive + self.unreachable;
            if heard
                && new_suspicion
                && self.rng.next_u64() % (members as u64).max(1) < CONFIRMING_PROBERS
            {
                self.start_probe(now, idx, probe::Cause::Extra);
            }
        }
        self.spread(idx, before != liveness || confirmed_more);
        true
    }

    /// Keeps a SYN or ACK until its reply is polled.
    fn queue_reply(&mut self, to: SocketAddr, input: StoredReply<'_>) -> Result<(), DropReason> {
        let pending = self.replies.as_slice().len() - self.reply_head;
        if pending >= self.config.max_pending_replies {
            return Err(DropReason::ReplyQueueFull);
        }
        if self.reply_head > 0 {
            // Reclaim the slots of replies already sent.
            let head = self.reply_head;
            self.replies.as_mut_slice().rotate_left(head);
            let len = self.replies.as_slice().len() - head;
            self.replies.truncate(len);
            self.reply_head = 0;
        }
        // Copied into its slot, not built aside and moved (a fixed datagram
        // is as large as the reply queue's slots).
        self.replies
            .try_push(Reply {
                to,
                bytes: S::Datagram::default(),
            })
            .map_err(|_| DropReason::ReplyQueueFull)?;
        let copied = self.replies.as_mut_slice().last_mut().is_some_and(|r| {
            r.bytes
                .splice_gap(0, 0, input.stored_len())
                .map(|gap| input.store(gap))
                .is_ok()
        });
        if !copied {
            let len = self.replies.as_slice().len() - 1;
            self.replies.truncate(len);
            return Err(DropReason::Oversized);
        }
        Ok(())
    }

    /// Checks every delta before any is applied; returns the slot each
    /// endpoint was found in ([`NO_SLOT`] when unknown or local), as far as
    /// the scratch holds, for [`apply_deltas`](Self::apply_deltas).
    fn check_deltas(
        &self,
        deltas: wire::Deltas<'_>,
    ) -> Result<S::Scratch<u32, FOUND_SCRATCH>, DropReason> {
        // Endpoints seen so far, to refuse duplicates; past the array's
        // capacity (only tiny deltas in huge datagrams) the slow way.
        let mut seen = S::Scratch::<SocketAddr, 128>::default();
        let mut slots = S::Scratch::<u32, FOUND_SCRATCH>::default();
        for (i, d) in deltas.enumerate() {
            let duplicate = if seen.as_slice().len() == i {
                seen.as_slice().contains(&d.endpoint)
            } else {
                deltas.take(i).any(|prev| prev.endpoint == d.endpoint)
            };
            if duplicate {
                return Err(DropReason::DuplicateEndpoint);
            }
            let _ = seen.try_push(d.endpoint);
            let slot = self.check_delta(d.endpoint, &d.delta)?;
            let _ = slots.try_push(slot);
        }
        Ok(slots)
    }

    /// Checks one delta; returns the slot its endpoint is in, or
    /// [`NO_SLOT`].
    fn check_delta(&self, endpoint: SocketAddr, delta: &Delta<'_>) -> Result<u32, DropReason> {
        if endpoint == self.local {
            return Ok(NO_SLOT);
        }
        let slot = self.index.find(&endpoint, self.peers.as_slice());
        let existing = slot
            .and_then(|i| self.peers.as_slice().get(i as usize))
            .filter(|p| p.is_member())
            .map(|p| &p.state);
        EndpointState::check(
            existing,
            delta,
            &self.config.limits,
            self.reference_generation(),
        )
        .map_err(DropReason::from_merge)?;
        Ok(slot.unwrap_or(NO_SLOT))
    }

    /// Applies checked deltas, with the slots [`check_deltas`](Self::check_deltas)
    /// found (deltas past them are looked up again).
    fn apply_deltas(
        &mut self,
        now: Instant,
        deltas: wire::Deltas<'_>,
        slots: &S::Scratch<u32, FOUND_SCRATCH>,
    ) {
        for (k, d) in deltas.enumerate() {
            let slot = slots.as_slice().get(k).copied();
            if d.endpoint == self.local {
                self.hear_about_self(d.delta.generation, d.claim);
                continue;
            }
            self.apply_delta(now, d.endpoint, &d.delta, d.claim, slot);
        }
    }

    /// Merges a checked delta about `endpoint`, and the sender's `claim`
    /// about its liveness. `slot`: where the check found the endpoint
    /// ([`NO_SLOT`]: nowhere), if it remembered; no other delta of the
    /// datagram can have moved it (endpoints are distinct, and applying never
    /// vacates a slot).
    fn apply_delta(
        &mut self,
        now: Instant,
        endpoint: SocketAddr,
        delta: &Delta<'_>,
        claim: Claim,
        slot: Option<u32>,
    ) {
        if endpoint == self.local {
            return;
        }
        let found = match slot {
            Some(NO_SLOT) => None,
            Some(i) => Some(i),
            None => self.index.find(&endpoint, self.peers.as_slice()),
        };
        let (idx, is_new) = match found {
            Some(i) => match self.peers.as_slice().get(i as usize) {
                Some(p) if p.slot == Slot::Quarantined => {
                    if delta.generation <= p.state.generation() {
                        self.stats.ignored_quarantined += 1;
                        return;
                    }
                    // A restart after removal: welcome back as a new member.
                    self.revive(i, delta.generation);
                    (i, true)
                }
                Some(_) => (i, false),
                None => return,
            },
            None => match self.insert_peer(endpoint, delta.generation) {
                Some(i) => (i, true),
                None => {
                    self.stats.refused_endpoints += 1;
                    return;
                }
            },
        };
        let initial = self.config.fd_initial_interval();
        let min_interval = self.config.fd_min_interval();
        let pause_grace_until = self.pause_grace_until;
        let Some(peer) = self.peers.as_mut_slice().get_mut(idx as usize) else {
            return;
        };
        let mut status_changed = false;
        // Checked with this state (or, new or revived, none) already.
        let Ok(applied) = peer.state.apply_checked(delta, |key, _| {
            status_changed |= key == StateKey::Known(ApplicationState::Status);
        }) else {
            // Unreachable: the delta was checked.
            return;
        };
        if applied.stale {
            return;
        }
        let mut dirty = applied.changed > 0;
        if is_new {
            peer.flags |= flags::EV_DISCOVERED;
            dirty = true;
        } else if applied.replaced {
            peer.flags |= flags::EV_RESTARTED;
            peer.doubt = 0;
            peer.reported_version = Version(0);
            // A new incarnation is not up until it is reported up: after
            // `Restarted`, an `Up` follows once it is alive, so the events
            // keep agreeing with `is_alive`.
            peer.reported = None;
            peer.window.reset();
            peer.evidence = Version(0);
            // A new incarnation of the endpoint: alive until claimed
            // otherwise.
            peer.incarnation = 0;
            peer.confirmers = 0;
            dirty = true;
        }
        // Any newer version is a heartbeat arrival for phi (digests may have
        // told us before the delta came: then it is not news again).
        let advanced = peer.state.max_version() > peer.evidence;
        if advanced || is_new || applied.replaced {
            peer.evidence = peer.evidence.max(peer.state.max_version());
            peer.window
                .record(now, initial, min_interval, now >= pause_grace_until);
            peer.flags &= !flags::PHI_PROBED;
        }
        let left = if status_changed || applied.replaced {
            peer.status_says_shutdown()
        } else {
            peer.flags & flags::LEFT != 0
        };
        let had_left = peer.flags & flags::LEFT != 0;
        if left && !had_left {
            peer.flags |= flags::LEFT | flags::EV_SHUTDOWN;
            dirty = true;
        } else if !left && had_left {
            peer.flags &= !flags::LEFT;
        }
        let newly_left = left && !had_left;
        if dirty {
            self.mark_dirty(idx);
        }
        if applied.changed > 0 || is_new || applied.replaced {
            // Application news (not a mere heartbeat): spread it like a rumor.
            self.refreshed(idx);
        }
        if is_new || applied.replaced {
            self.joining = NEWS_ROUNDS;
        }
        if left {
            self.set_liveness(idx, Liveness::Down, now);
        } else if applied.replaced {
            self.set_liveness(idx, Liveness::Alive, now);
        }
        // Believe the cluster: the sender's claim about its liveness (taken
        // as it is for an endpoint we did not know).
        let source = if is_new || applied.replaced {
            Source::Fresh
        } else {
            Source::Heard
        };
        self.merge_claim(now, idx, delta.generation, claim, source);
        if newly_left || applied.replaced {
            // A departure or a restart is hot news.
            self.spread(idx, true);
        }
    }

    /// A digest of a known endpoint: a newer version than we have seen is a
    /// heartbeat arrival for phi, even before the delta comes (which the
    /// datagram budget may delay by rounds in a large cluster); its claim is
    /// merged.
    fn note_digest(&mut self, now: Instant, d: &GossipDigest, slot: Option<u32>) {
        let initial = self.config.fd_initial_interval();
        let min_interval = self.config.fd_min_interval();
        let count_interval = now >= self.pause_grace_until;
        let Some(idx) = slot else {
            return;
        };
        let Some(peer) = self.peers.as_mut_slice().get_mut(idx as usize) else {
            return;
        };
        if !peer.is_member() || d.generation != peer.state.generation() {
            return;
        }
        let seen = peer.evidence.max(peer.state.max_version());
        if d.max_version > seen && !peer.has_left() {
            peer.evidence = d.max_version;
            peer.window
                .record(now, initial, min_interval, count_interval);
            peer.flags &= !flags::PHI_PROBED;
        }
        // Anti-entropy for liveness: the digest carries the sender's claim.
        self.merge_claim(now, idx, d.generation, d.claim, Source::Heard);
    }

    /// A SHUTDOWN notice from `sender` of `generation`: down at once.
    fn mark_shut_down(&mut self, now: Instant, sender: SocketAddr, generation: Generation) {
        let Some(idx) = self.index.find(&sender, self.peers.as_slice()) else {
            return;
        };
        let Some(peer) = self.peers.as_mut_slice().get_mut(idx as usize) else {
            return;
        };
        if !peer.is_member() || peer.state.generation() != generation {
            return;
        }
        let newly_left = peer.flags & flags::LEFT == 0;
        if newly_left {
            peer.flags |= flags::LEFT | flags::EV_SHUTDOWN;
            self.mark_dirty(idx);
        }
        self.set_liveness(idx, Liveness::Down, now);
        if newly_left {
            self.spread(idx, true);
        }
    }

    // ---- private: the round ---------------------------------------------

    /// No round for longer than `max_local_pause`: this node was frozen,
    /// and its peers' silence (its probes' failures, its suspicions' ends)
    /// says nothing about them. No suspicion is raised or ended for as long
    /// again. Checked before anything else a timeout or datagram does.
    fn note_pause(&mut self, now: Instant) {
        let pause = self.config.max_local_pause();
        if let Some(last) = self.last_round
            && now - last > pause
            && now >= self.pause_grace_until
        {
            self.pause_grace_until = now + pause;
        }
    }

    fn round(&mut self, now: Instant) {
        if self.last_round.is_some() && now - self.next_round > self.config.gossip_interval / 2 {
            self.stats.late_rounds += 1;
            self.health_worse();
        }
        self.last_round = Some(now);
        self.stats.rounds += 1;
        self.phi_probes = PHI_PROBES_PER_ROUND;
        self.rumors.new_round();
        // Cannot fail while running (the counter is exhausted only by shutdown).
        let _ = self.me.beat();
        self.choose_targets();
        self.status_check(now);
        self.probe_cycle(now);
        self.next_round = now + self.jittered_interval();
    }

    fn jittered_interval(&mut self) -> Duration {
        let base = u64::try_from(self.config.gossip_interval.as_micros()).unwrap_or(u64::MAX);
        let spread = base / 100 * u64::from(self.config.interval_jitter_percent);
        let offset = match spread.checked_mul(2).and_then(|s| s.checked_add(1)) {
            Some(range) if spread > 0 => self.rng.next_u64() % range,
            _ => spread,
        };
        Duration::from_micros((base - spread).saturating_add(offset))
    }

    /// Cassandra's peer selection: `fanout` random live peers; an unreachable
    /// one with probability `unreachable / (live + 1)`; a seed when no live
    /// target was one or fewer peers are live than there are seeds, with
    /// probability `seeds / (live + unreachable)` (always when none is live).
    fn choose_targets(&mut self) {
        self.targets.clear();
        let mut gossiped_to_seed = false;
        // Fresh application news goes to one more live peer (rumor
        // mongering): push-pull spreads it in about log3(N) rounds. While
        // endpoints are joining, three more exchanges a round carry their
        // states (a cluster's first convergence is bandwidth-bound).
        let news = self.news > 0;
        self.news = self.news.saturating_sub(1);
        let joining = self.joining > 0;
        self.joining = self.joining.saturating_sub(1);
        let extra = u8::from(news) + 3 * u8::from(joining);
        let wanted = usize::from(self.config.fanout + extra).min(self.alive);
        // Distinct peers: a few draws each, as the live ones may be few.
        for _ in 0..wanted * 4 {
            if self.targets.len() >= wanted {
                break;
            }
            if let Some(addr) = self.random_member(true) {
                gossiped_to_seed |= self.seeds.contains(&addr);
                self.add_target(addr);
            }
        }
        if self.unreachable > 0
            && self.rng.next_u64() % (self.alive as u64 + 1) < self.unreachable as u64
            && let Some(addr) = self.random_member(false)
        {
            self.add_target(addr);
        }
        let seeds = self.seeds.len();
        if seeds > 0 && (!gossiped_to_seed || self.alive < seeds) {
            let known = (self.alive + self.unreachable) as u64;
            let go = self.alive == 0 || self.rng.next_u64() % known.max(1) < seeds as u64;
            if go {
                let pick = (self.rng.next_u64() % seeds as u64) as usize;
                if let Some(seed) = self.seeds.get(pick).copied() {
                    self.add_target(seed);
                }
            }
        }
    }

    fn add_target(&mut self, addr: SocketAddr) {
        if !self.targets.contains(&addr) {
            // Capacity covers fanout + 2.
            let _ = self.targets.push(addr);
        }
    }

    /// A uniformly random member that is alive (`alive == true`) or not.
    fn random_member(&mut self, alive: bool) -> Option<SocketAddr> {
        let count = if alive { self.alive } else { self.unreachable };
        let len = self.peers.as_slice().len();
        if count == 0 || len == 0 {
            return None;
        }
        let matches = |p: &Peer<S::StateBuf>| p.is_member() && p.is_alive() == alive;
        // Rejection sampling is O(1) when matches are dense...
        for _ in 0..16 {
            let i = (self.rng.next_u64() % len as u64) as usize;
            if let Some(p) = self.peers.as_slice().get(i).filter(|p| matches(p)) {
                return Some(p.addr());
            }
        }
        // ...and this is exact when they are sparse.
        let k = (self.rng.next_u64() % count as u64) as usize;
        self.peers
            .as_slice()
            .iter()
            .filter(|p| matches(p))
            .nth(k)
            .map(|p| p.addr())
    }

    /// The round's sweep: times out suspicions not tracked to the instant,
    /// probes members past their phi threshold (the early warning), removes
    /// long-down members and ends quarantines.
    fn status_check(&mut self, now: Instant) {
        let removal = self.config.removal_delay;
        let threshold = self.config.phi_threshold;
        for i in 0..self.peers.as_slice().len() {
            let idx = i as u32;
            let Some(p) = self.peers.as_slice().get(i) else {
                break;
            };
            match (p.slot, p.liveness) {
                (Slot::Member, Liveness::Suspect) => self.sweep_suspect(now, idx),
                (Slot::Member, Liveness::Down) => {
                    if now - p.since >= removal {
                        self.remove(idx, now);
                    }
                }
                (Slot::Member, _) => {
                    // Once per silence: probed when phi passes the
                    // threshold, again only after a heartbeat came.
                    if self.phi_probes > 0
                        && p.flags & flags::PHI_PROBED == 0
                        && !p.has_left()
                        && now >= p.window.convict_at(threshold)
                        && !self.prober.probing(idx)
                    {
                        self.phi_probes -= 1;
                        if let Some(p) = self.peers.as_mut_slice().get_mut(i) {
                            p.flags |= flags::PHI_PROBED;
                        }
                        self.start_probe(now, idx, probe::Cause::Extra);
                    }
                }
                (Slot::Quarantined, _) => {
                    if now >= p.since {
                        self.vacate(idx);
                    }
                }
                (Slot::Vacant, _) => {}
            }
        }
    }

    // ---- private: table bookkeeping -------------------------------------

    fn insert_peer(&mut self, addr: SocketAddr, generation: Generation) -> Option<u32> {
        if self.occupied >= self.config.max_peers {
            return None;
        }
        let peer = Peer::new(addr, generation);
        let idx = match self.free.as_slice().last().copied() {
            Some(free) => {
                let len = self.free.as_slice().len();
                self.free.truncate(len - 1);
                let slot = self.peers.as_mut_slice().get_mut(free as usize)?;
                // The slot may still sit in the event queue.
                let queued = slot.flags & flags::QUEUED;
                *slot = peer;
                slot.flags = queued;
                free
            }
            None => {
                let idx = u32::try_from(self.peers.as_slice().len()).ok()?;
                self.peers.try_push(peer).ok()?;
                self.add_to_probe_order(idx);
                idx
            }
        };
        self.index.insert(idx, self.peers.as_slice());
        self.forget_seqs(idx);
        self.rumors.forget(idx);
        self.occupied += 1;
        // Believe the cluster: alive until a claim says otherwise.
        self.alive += 1;
        Some(idx)
    }

    /// Slot `idx` holds a new peer (or incarnation): no seq seen from it.
    fn forget_seqs(&mut self, idx: u32) {
        #[cfg(feature = "auth")]
        if let Some(window) = self.replays.as_mut_slice().get_mut(idx as usize) {
            *window = Default::default();
        }
        #[cfg(not(feature = "auth"))]
        let _ = idx;
    }

    /// A quarantined slot becomes a fresh member at `generation`.
    fn revive(&mut self, idx: u32, generation: Generation) {
        let Some(p) = self.peers.as_mut_slice().get_mut(idx as usize) else {
            return;
        };
        let queued = p.flags & flags::QUEUED;
        *p = Peer::new(p.addr(), generation);
        p.flags = queued;
        self.forget_seqs(idx);
        self.rumors.forget(idx);
        self.alive += 1;
    }

    fn set_liveness(&mut self, idx: u32, liveness: Liveness, now: Instant) {
        let Some(p) = self.peers.as_mut_slice().get_mut(idx as usize) else {
            return;
        };
        if p.liveness == liveness || !p.is_member() {
            return;
        }
        let was_up = p.liveness != Liveness::Down;
        p.liveness = liveness;
        // Suspected or down since now; otherwise not suspected (any more).
        p.since = match liveness {
            Liveness::Alive => Instant::ZERO,
            _ => now,
        };
        match (was_up, liveness != Liveness::Down) {
            (true, false) => {
                self.alive -= 1;
                self.unreachable += 1;
            }
            (false, true) => {
                self.alive += 1;
                self.unreachable -= 1;
            }
            _ => {}
        }
        self.mark_dirty(idx);
    }

    /// Removes a long-down member; its address is quarantined.
    fn remove(&mut self, idx: u32, now: Instant) {
        let quarantine = self.config.quarantine_delay;
        let Some(p) = self.peers.as_mut_slice().get_mut(idx as usize) else {
            return;
        };
        if !p.is_member() {
            return;
        }
        if p.liveness != Liveness::Down {
            self.alive -= 1;
        } else {
            self.unreachable -= 1;
        }
        let generation = p.state.generation();
        p.state = EndpointState::new(generation);
        p.slot = Slot::Quarantined;
        p.since = now + quarantine;
        p.flags = (p.flags & flags::QUEUED) | flags::EV_REMOVED;
        self.mark_dirty(idx);
    }

    /// Frees a slot whose quarantine ended.
    fn vacate(&mut self, idx: u32) {
        self.index.remove(idx, self.peers.as_slice());
        let Some(p) = self.peers.as_mut_slice().get_mut(idx as usize) else {
            return;
        };
        p.slot = Slot::Vacant;
        p.state = EndpointState::new(Generation(0));
        p.flags &= flags::QUEUED;
        self.occupied -= 1;
        self.rumors.forget(idx);
        self.prober.forget(idx);
        // The free list has room for every slot.
        let _ = self.free.try_push(idx);
    }

    fn mark_dirty(&mut self, idx: u32) {
        let Some(p) = self.peers.as_mut_slice().get_mut(idx as usize) else {
            return;
        };
        if p.flags & flags::QUEUED != 0 {
            return;
        }
        p.flags |= flags::QUEUED;
        if self.events.try_push(idx).is_ok() {
            return;
        }
        // Full: reclaim the entries already reported, then retry.
        let head = self.event_head;
        let len = self.events.as_slice().len();
        self.events.as_mut_slice().copy_within(head.., 0);
        self.events.truncate(len - head);
        self.event_head = 0;
        if self.events.try_push(idx).is_err()
            && let Some(p) = self.peers.as_mut_slice().get_mut(idx as usize)
        {
            p.flags &= !flags::QUEUED;
        }
    }

    fn next_event(&mut self) -> Option<(u32, EventKind)> {
        loop {
            let Some(idx) = self.events.as_slice().get(self.event_head).copied() else {
                self.events.truncate(0);
                self.event_head = 0;
                return None;
            };
            if let Some(peer) = self.peers.as_mut_slice().get_mut(idx as usize) {
                if let Some(kind) = take_event(peer) {
                    return Some((idx, kind));
                }
                peer.flags &= !flags::QUEUED;
            }
            self.event_head += 1;
        }
    }

    // ---- private: output ------------------------------------------------

    fn header(&self) -> Header {
        Header {
            cluster: self.config.cluster,
            sender: self.local,
        }
    }

    fn own_digest(&self) -> GossipDigest {
        GossipDigest {
            endpoint: self.local,
            generation: self.me.generation(),
            max_version: self.me.max_version(),
            claim: self.own_claim(),
        }
    }

    /// A PING, PING-REQ, PING-ACK or NACK to `to`, with rumors.
    fn write_liveness(&mut self, buf: &mut [u8], to: SocketAddr, msg: &wire::Probe) -> usize {
        let rumors = self.piggyback(to, &[]);
        wire::encode_probe(buf, &self.header(), &rumors, msg).unwrap_or(0)
    }

    /// A NEWS datagram to `to`: the hottest rumors (`None` when none is
    /// left to say).
    fn write_news(&mut self, buf: &mut [u8], to: SocketAddr) -> Option<usize> {
        let rumors = self.piggyback(to, &[]);
        if rumors.is_empty() {
            return None;
        }
        Some(wire::encode_probe(buf, &self.header(), &rumors, &wire::Probe::News).unwrap_or(0))
    }

    fn next_shutdown_target(&self, cursor: usize) -> Option<(usize, SocketAddr)> {
        self.peers
            .as_slice()
            .iter()
            .enumerate()
            .skip(cursor)
            .find(|(_, p)| p.is_member() && p.is_alive())
            .map(|(i, p)| (i, p.addr()))
    }

    fn write_shutdown(&self, buf: &mut [u8]) -> usize {
        // Everything in version order: the highest heartbeat rides only when
        // every older entry fits, so no receiver ends up advertising a
        // version it lacks entries below. (The notice marks us down
        // whatever it carries.)
        wire::encode_shutdown(
            buf,
            &self.header(),
            &[],
            self.me.generation(),
            self.me.items_above(Version(0)),
        )
        .unwrap_or(0)
    }

    /// A SYN: our digest; then the endpoints whose application news (a state
    /// change, a new endpoint, a restart) reached us most recently, so it
    /// spreads epidemically as a rumor does, in up to half the datagram; then
    /// every endpoint we know on the next stretch of the ring, from where the
    /// previous SYN stopped, as far as fits. The SYN says which stretch it
    /// covers completely, so the receiver can tell which endpoints we lack;
    /// the stretches sweep the whole ring (anti-entropy: nothing is missed
    /// for long).
    #[inline(never)]
    fn write_syn(&mut self, buf: &mut [u8], to: SocketAddr) -> usize {
        let hot_budget = buf.len() / 2;
        let header = self.header();
        let own = self.own_digest();
        let start = self.ring_cursor;
        let rumors = self.piggyback(to, &[]);
        let Ok(mut w) = SynWriter::new(buf, &header, &rumors) else {
            return 0;
        };
        if !w.push(&own) {
            return 0;
        }
        let peers = self.peers.as_mut_slice();
        for &(idx, stamp) in self.recent.iter().rev() {
            if w.len() >= hot_budget {
                break;
            }
            if let Some(p) = peers.get_mut(idx as usize)
                && p.stamp == stamp
                && p.is_member()
                && p.flags & flags::MENTIONED == 0
            {
                if !w.push(&digest_of(p)) {
                    break;
                }
                p.flags |= flags::MENTIONED;
            }
        }
        // Every member clockwise from `start`, nearest first, as far as fits.
        let mut covered: Option<u32> = None;
        let mut left_out: Option<u32> = None;
        for (position, i) in self.index.ring().clockwise(start) {
            let Some(p) = peers.get(i as usize) else {
                continue;
            };
            if !p.is_member() {
                continue;
            }
            let distance = position.wrapping_sub(start);
            if p.flags & flags::MENTIONED == 0 && !w.push(&digest_of(p)) {
                left_out = Some(distance);
                break;
            }
            covered = Some(distance);
        }
        let range = match (left_out, covered) {
            (None, _) => RingRange {
                start,
                end: start.wrapping_sub(1),
            },
            (Some(_), Some(d)) => RingRange {
                start,
                end: start.wrapping_add(d),
            },
            // Stop short of the first one left out (nothing fitted: claim as
            // little as a range can).
            (Some(d), None) => RingRange {
                start,
                end: start.wrapping_add(d.saturating_sub(1)),
            },
        };
        self.ring_cursor = range.end.wrapping_add(1);
        for &(idx, _) in self.recent.iter() {
            if let Some(p) = peers.get_mut(idx as usize) {
                p.flags &= !flags::MENTIONED;
            }
        }
        w.finish(range)
    }

    /// Notes that application news of slot `idx` just reached us.
    fn refreshed(&mut self, idx: u32) {
        self.news = NEWS_ROUNDS;
        self.stamp = self.stamp.wrapping_add(1);
        if let Some(p) = self.peers.as_mut_slice().get_mut(idx as usize) {
            p.stamp = self.stamp;
        }
        if self.recent.is_full() {
            self.recent.pop_front();
        }
        // Cannot fail: there is room now.
        let _ = self.recent.push_back((idx, self.stamp));
    }

    /// Notes a SYN's digests (evidence of life, news to catch up on) and
    /// finds their slots, marked [`flags::MENTIONED`], for the ACK: one
    /// lookup per digest. Keeps the digests decoded with their slots in
    /// `found` (as many as it holds; the rest are decoded and looked up
    /// again by their readers). Returns whether the SYN mentions this node.
    fn note_digests(&mut self, now: Instant, syn: &Syn<'_>, found: &mut Found<S>) -> bool {
        let mut local_mentioned = false;
        for d in syn.digests {
            let slot = if d.endpoint == self.local {
                local_mentioned = true;
                self.hear_about_self(d.generation, d.claim);
                LOCAL_SLOT
            } else {
                let slot = self.index.find(&d.endpoint, self.peers.as_slice());
                if let Some(p) = slot.and_then(|i| self.peers.as_mut_slice().get_mut(i as usize)) {
                    p.flags |= flags::MENTIONED;
                }
                self.note_digest(now, &d, slot);
                slot.unwrap_or(NO_SLOT)
            };
            let _ = found.try_push((slot, d));
        }
        local_mentioned
    }

    /// Encodes the reply to the oldest pending SYN or ACK, if any: its
    /// destination, its size (`None`: nothing to send, `Some(0)`: could not be
    /// encoded) and kind.
    fn write_next_reply(
        &mut self,
        now: Instant,
        buf: &mut [u8],
    ) -> Option<(SocketAddr, Option<usize>, Kind)> {
        let reply = self.replies.as_mut_slice().get_mut(self.reply_head)?;
        let to = reply.to;
        // The slot is done with: its bytes move out (noting a SYN's digests
        // changes the table, which they must not borrow).
        let stored = core::mem::take(&mut reply.bytes);
        self.reply_head += 1;
        let Some(input) = StoredReply::read(stored.bytes()) else {
            // Unreachable: stored by `queue_reply`.
            return Some((to, None, Kind::Ack));
        };
        // Filled in place: returning it would copy the whole scratch.
        let mut found = Found::<S>::default();
        let local_mentioned = match &input {
            StoredReply::Syn(digests, range) => {
                let syn = Syn {
                    digests: *digests,
                    range: *range,
                };
                self.note_digests(now, &syn, &mut found)
            }
            StoredReply::Ack(_) => false,
        };
        // Claims the SYN's sender knows older versions of than ours.
        let mut corrections = heapless::Vec::<Rumor, MAX_CORRECTIONS>::new();
        for &(slot, d) in found.as_slice() {
            if corrections.is_full() {
                break;
            }
            if let Some(p) = self.peers.as_slice().get(slot as usize)
                && p.is_member()
                && p.state.generation() == d.generation
                && p.claim().beats(&d.claim)
            {
                let _ = corrections.push(Rumor {
                    endpoint: p.addr(),
                    generation: d.generation,
                    claim: p.claim(),
                });
            }
        }
        let rumors = self.piggyback(to, &corrections);
        let header = self.header();
        let occupied = self.occupied;
        let own_claim = self.own_claim();
        let Node {
            config,
            me,
            peers,
            index,
            local,
            ..
        } = self;
        let ctx: ReplyContext<'_, S> = ReplyContext {
            local: *local,
            me: &*me,
            own_claim,
            index: &*index,
            room_for_new: occupied < config.max_peers,
            rumors: &rumors,
        };
        let (size, kind) = match input {
            StoredReply::Syn(digests, range) => {
                let syn = Syn { digests, range };
                let size = write_ack(
                    &ctx,
                    peers.as_slice(),
                    syn,
                    &found,
                    local_mentioned,
                    &header,
                    buf,
                );
                // Unflag what `note_digests` flagged.
                let local = *local;
                let unflag = |peers: &mut S::Peers, slot: u32| {
                    if let Some(p) = peers.as_mut_slice().get_mut(slot as usize) {
                        p.flags &= !flags::MENTIONED;
                    }
                };
                for &(slot, _) in found.as_slice() {
                    unflag(peers, slot);
                }
                for d in unnoted::<S>(&found, &syn) {
                    if d.endpoint != local
                        && let Some(slot) = index.find(&d.endpoint, peers.as_slice())
                    {
                        unflag(peers, slot);
                    }
                }
                (size, Kind::Ack)
            }
            StoredReply::Ack(requests) => (
                write_ack2(&ctx, peers.as_slice(), requests, &header, buf),
                Kind::Ack2,
            ),
        };
        Some((to, size, kind))
    }
}

/// What the reply to a SYN or an ACK reads of it, kept in the reply queue
/// until the reply is written: the SYN's digests and ring range, the ACK's
/// requests (not its deltas: they were applied on arrival). Stored as a
/// kind byte (0: SYN, 1: ACK), the range (two `u32`, little-endian; zeros
/// for an ACK), the digest count (`u32`) and the digests as validated on
/// arrival, so reading them back takes no second validation.
#[derive(Clone, Copy)]
enum StoredReply<'a> {
    Syn(wire::Digests<'a>, RingRange),
    Ack(wire::Digests<'a>),
}

/// Bytes before a [`StoredReply`]'s digests.
const STORED_HEADER: usize = 13;

impl<'a> StoredReply<'a> {
    fn digests(&self) -> wire::Digests<'a> {
        match self {
            StoredReply::Syn(d, _) | StoredReply::Ack(d) => *d,
        }
    }

    fn stored_len(&self) -> usize {
        STORED_HEADER + self.digests().as_bytes().len()
    }

    /// Writes it into `out`, [`stored_len`](Self::stored_len) bytes.
    fn store(&self, out: &mut [u8]) {
        let (kind, range) = match self {
            StoredReply::Syn(_, range) => (0u8, *range),
            StoredReply::Ack(_) => (1u8, RingRange { start: 0, end: 0 }),
        };
        let digests = self.digests();
        let count = u32::try_from(digests.len()).unwrap_or(u32::MAX);
        let (head, body) = out.split_at_mut(STORED_HEADER.min(out.len()));
        let mut fields = [0u8; STORED_HEADER];
        fields[0] = kind;
        fields[1..5].copy_from_slice(&range.start.to_le_bytes());
        fields[5..9].copy_from_slice(&range.end.to_le_bytes());
        fields[9..13].copy_from_slice(&count.to_le_bytes());
        head.copy_from_slice(fields.get(..head.len()).unwrap_or(&[]));
        let bytes = digests.as_bytes();
        if let Some(body) = body.get_mut(..bytes.len()) {
            body.copy_from_slice(bytes);
        }
    }

    /// Reads back what [`store`](Self::store) wrote.
    fn read(stored: &'a [u8]) -> Option<Self> {
        let (head, digests) = stored.split_first_chunk::<STORED_HEADER>()?;
        let word = |at: usize| -> Option<u32> {
            let bytes: [u8; 4] = head.get(at..at + 4)?.try_into().ok()?;
            Some(u32::from_le_bytes(bytes))
        };
        let digests = wire::Digests::from_validated(digests, word(9)?);
        match head[0] {
            0 => Some(StoredReply::Syn(
                digests,
                RingRange {
                    start: word(1)?,
                    end: word(5)?,
                },
            )),
            1 => Some(StoredReply::Ack(digests)),
            _ => None,
        }
    }
}

fn check_storage<S: Storage>(config: &Config) -> Result<(), ConfigError> {
    let short = |cap: Option<usize>, need: usize| cap.is_some_and(|c| c < need);
    if short(S::Peers::default().capacity_limit(), config.max_peers)
        || short(S::Indices::default().capacity_limit(), config.max_peers)
    {
        return Err(ConfigError::Storage(StorageShortfall::Peers));
    }
    if short(
        S::StateBuf::default().capacity_limit(),
        config.limits.max_state_bytes(),
    ) {
        return Err(ConfigError::Storage(StorageShortfall::StateBytes));
    }
    if short(
        S::Datagram::default().capacity_limit(),
        config.max_datagram_size,
    ) {
        return Err(ConfigError::Storage(StorageShortfall::DatagramBytes));
    }
    if short(
        S::Replies::default().capacity_limit(),
        config.max_pending_replies,
    ) {
        return Err(ConfigError::Storage(StorageShortfall::Replies));
    }
    Ok(())
}

/// Whether a datagram from a quarantined sender carries its restart (a newer
/// generation of itself), which ends the quarantine.
fn revives_sender<B: StateBuf>(message: &Message<'_>, peer: Option<&Peer<B>>) -> bool {
    let Some(peer) = peer else {
        return false;
    };
    let newer = |generation: Generation| generation > peer.state.generation();
    match *message {
        Message::Syn(syn) => syn
            .digests
            .into_iter()
            .any(|d| d.endpoint == peer.addr() && newer(d.generation)),
        Message::Ack(ack) => ack
            .deltas
            .into_iter()
            .any(|d| d.endpoint == peer.addr() && newer(d.delta.generation)),
        Message::Ack2(ack2) => ack2
            .deltas
            .into_iter()
            .any(|d| d.endpoint == peer.addr() && newer(d.delta.generation)),
        Message::Shutdown(_) | Message::Probe(_) => false,
    }
}

fn digest_of<B: StateBuf>(p: &Peer<B>) -> GossipDigest {
    GossipDigest {
        endpoint: p.addr(),
        generation: p.state.generation(),
        max_version: p.state.max_version(),
        claim: p.claim(),
    }
}

/// Where a claim comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    /// This node's own probes and timeouts.
    Own,
    /// Others, about a member we know.
    Heard,
    /// Others, about an endpoint we just learned (or its new generation).
    Fresh,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EventKind {
    Discovered,
    Up,
    Suspect,
    Down,
    Restarted,
    ShutDown,
    Removed,
    StateChanged(Version),
}

/// The next event of one peer, clearing what it reports.
fn take_event<B: StateBuf>(peer: &mut Peer<B>) -> Option<EventKind> {
    let mut take = |flag: u8| {
        let set = peer.flags & flag != 0;
        peer.flags &= !flag;
        set
    };
    match peer.slot {
        Slot::Vacant => None,
        Slot::Quarantined => take(flags::EV_REMOVED).then_some(EventKind::Removed),
        Slot::Member => {
            if take(flags::EV_DISCOVERED) {
                return Some(EventKind::Discovered);
            }
            if take(flags::EV_RESTARTED) {
                return Some(EventKind::Restarted);
            }
            let reported = peer.reported_version;
            if let Some((_, value)) = peer.state.entries().find(|(_, v)| v.version > reported) {
                peer.reported_version = value.version;
                return Some(EventKind::StateChanged(value.version));
            }
            if take(flags::EV_SHUTDOWN) {
                return Some(EventKind::ShutDown);
            }
            let before = peer.reported;
            let now = peer.liveness();
            peer.reported = Some(now);
            match (before, now) {
                (b, Liveness::Alive) if b != Some(Liveness::Alive) => Some(EventKind::Up),
                (Some(Liveness::Alive), Liveness::Suspect) => Some(EventKind::Suspect),
                // A suspect is up until it is down: one not reported up yet
                // (new, restarted, or back from down) is reported up first,
                // then suspected.
                (b, Liveness::Suspect) if b != Some(Liveness::Suspect) => {
                    peer.reported = Some(Liveness::Alive);
                    Some(EventKind::Up)
                }
                (Some(Liveness::Alive | Liveness::Suspect), Liveness::Down | Liveness::Left) => {
                    Some(EventKind::Down)
                }
                _ => None,
            }
        }
    }
}

// ---- reply building ---------------------------------------------------------

struct ReplyContext<'a, S: Storage> {
    local: SocketAddr,
    me: &'a EndpointState<S::StateBuf>,
    own_claim: Claim,
    index: &'a S::Index,
    room_for_new: bool,
    /// The reply's rumors.
    rumors: &'a [Rumor],
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Who {
    Local,
    Peer(u32),
}

/// A delta worth sending: everything of `who` above `above`.
#[derive(Clone, Copy, Debug)]
struct Candidate {
    /// Its rank: a tier in the top two bits, then the version gap.
    gap: u64,
    who: Who,
    above: Version,
}

/// How our view of an endpoint compares with a digest of it.
enum Compare {
    /// They know a newer generation: ask for all of it.
    RequestAll,
    /// They know newer versions: ask for what is above ours.
    RequestAbove(Version),
    /// We know more: send what is above theirs (0 for all).
    Send(Candidate),
    Same,
}

fn compare<B: StateBuf>(
    ours: &EndpointState<B>,
    who: Who,
    generation: Generation,
    version: Version,
) -> Compare {
    let mine = ours.max_version();
    if generation > ours.generation() {
        Compare::RequestAll
    } else if generation < ours.generation() {
        Compare::Send(everything(who, ours))
    } else if version > mine {
        Compare::RequestAbove(mine)
    } else if version < mine {
        // Application news ranks above a mere heartbeat, whatever the gap.
        let news = ours.max_state_version() > version;
        let tier = if news { TIER_NEWS } else { TIER_HEARTBEAT };
        Compare::Send(Candidate {
            gap: tier | (mine.0 - version.0).min(TIER_GAP_MASK),
            who,
            above: version,
        })
    } else {
        Compare::Same
    }
}

/// Ranking tiers of a candidate delta (the top two bits of its key): a whole
/// endpoint the other side lacks, application news, a heartbeat.
const TIER_WHOLE: u64 = 3 << 62;
const TIER_NEWS: u64 = 2 << 62;
const TIER_HEARTBEAT: u64 = 1 << 62;
const TIER_GAP_MASK: u64 = (1 << 62) - 1;

/// The items with the largest keys, as many as the scratch `V` holds: a
/// min-heap (the worst item kept at its root, so a better one replaces it in
/// O(log K)), sorted in place at the end by heapsort (no allocation, and no
/// sort routine in a microcontroller's flash).
struct TopK<T, V> {
    heap: V,
    /// Items offered so far.
    offered: usize,
    _item: core::marker::PhantomData<T>,
}

/// A [`TopK`] in `S`'s scratch, of up to `N` items.
type Top<S, T, const N: usize> = TopK<T, <S as Storage>::Scratch<(u64, T), N>>;

impl<T: Copy, V: Seq<(u64, T)> + Default> TopK<T, V> {
    fn new() -> Self {
        Self {
            heap: V::default(),
            offered: 0,
            _item: core::marker::PhantomData,
        }
    }

    /// How many it keeps at most.
    fn capacity(&self) -> usize {
        self.heap.capacity_limit().unwrap_or(usize::MAX)
    }

    fn offer(&mut self, key: u64, item: T) {
        self.offered += 1;
        match self.heap.try_push((key, item)) {
            Ok(()) => {
                let items = self.heap.as_mut_slice();
                let mut child = items.len() - 1;
                while child > 0 {
                    let parent = (child - 1) / 2;
                    if key_at(items, parent) <= key_at(items, child) {
                        break;
                    }
                    items.swap(parent, child);
                    child = parent;
                }
            }
            Err(item) => {
                let items = self.heap.as_mut_slice();
                if let Some(root) = items.first_mut()
                    && root.0 < item.0
                {
                    *root = item;
                    sift_down(items);
                }
            }
        }
    }

    /// Sorts in place, largest key first (no longer a heap: offer nothing
    /// more).
    fn sorted(&mut self) -> &[(u64, T)] {
        let items = self.heap.as_mut_slice();
        for end in (1..items.len()).rev() {
            items.swap(0, end);
            if let Some(heap) = items.get_mut(..end) {
                sift_down(heap);
            }
        }
        items
    }
}

fn key_at<T>(items: &[(u64, T)], i: usize) -> Option<u64> {
    items.get(i).map(|x| x.0)
}

/// Restores the min-heap order of `items` after its root changed.
fn sift_down<T>(items: &mut [(u64, T)]) {
    let mut parent = 0;
    loop {
        let left = 2 * parent + 1;
        let right = left + 1;
        let mut least = parent;
        if left < items.len() && key_at(items, left) < key_at(items, least) {
            least = left;
        }
        if right < items.len() && key_at(items, right) < key_at(items, least) {
            least = right;
        }
        if least == parent {
            return;
        }
        items.swap(parent, least);
        parent = least;
    }
}

type Ranked<S> = Top<S, Candidate, RANKED_DELTAS>;

fn ranked_contains(items: &[(u64, Candidate)], who: Who) -> bool {
    items.iter().any(|(_, c)| c.who == who)
}

/// Something deltas can be pushed into: the ACK and ACK2 writers.
trait DeltaSink {
    fn push_items(
        &mut self,
        addr: SocketAddr,
        generation: Generation,
        claim: Claim,
        items: crate::state::ItemsAbove<'_>,
    ) -> usize;

    /// Pushes everything of `state` above `above`, with our claim.
    fn push<B: StateBuf>(
        &mut self,
        addr: SocketAddr,
        state: &EndpointState<B>,
        claim: Claim,
        above: Version,
    ) -> usize {
        self.push_items(addr, state.generation(), claim, state.items_above(above))
    }
}

macro_rules! delta_sink {
    ($writer:ident) => {
        impl DeltaSink for $writer<'_> {
            fn push_items(
                &mut self,
                addr: SocketAddr,
                generation: Generation,
                claim: Claim,
                items: crate::state::ItemsAbove<'_>,
            ) -> usize {
                self.push_delta(addr, generation, claim, items)
            }
        }
    };
}

delta_sink!(AckWriter);
delta_sink!(Ack2Writer);

/// Writes the ranked candidates, then the others `visit` yields, until the
/// writer is full. `visit` stops when its callback returns false.
fn write_deltas<S: Storage>(
    ctx: &ReplyContext<'_, S>,
    peers: &[Peer<S::StateBuf>],
    w: &mut impl DeltaSink,
    ranked: &[(u64, Candidate)],
    visit: impl FnOnce(&mut dyn FnMut(Candidate) -> bool),
) {
    let mut misses = 0;
    let mut write = |c: &Candidate, misses: &mut u32| {
        if *misses >= FULL_AFTER_MISSES {
            return;
        }
        let written = match c.who {
            Who::Local => w.push(ctx.local, ctx.me, ctx.own_claim, c.above),
            Who::Peer(i) => match peers.get(i as usize) {
                Some(p) => w.push(p.addr(), &p.state, p.claim(), c.above),
                None => 1,
            },
        };
        if written == 0 {
            *misses += 1;
        } else {
            *misses = 0;
        }
    };
    for (_, c) in ranked {
        write(c, &mut misses);
    }
    visit(&mut |c| {
        if !ranked_contains(ranked, c.who) {
            write(&c, &mut misses);
        }
        misses < FULL_AFTER_MISSES
    });
}

/// The ACK to a SYN: requests for what we lack, deltas of what they lack.
#[inline(never)]
fn write_ack<S: Storage>(
    ctx: &ReplyContext<'_, S>,
    peers_ro: &[Peer<S::StateBuf>],
    syn: Syn<'_>,
    found: &Found<S>,
    local_mentioned: bool,
    header: &Header,
    buf: &mut [u8],
) -> Option<usize> {
    let request_budget = buf.len() / 2;
    let Ok(mut w) = AckWriter::new(buf, header, ctx.rumors) else {
        return Some(0);
    };
    // The SYN lists everything its sender knows on a stretch of the ring:
    // what it does not mention there is news to it. `found` has the digests
    // with their slots (past its size, decoded and looked up again), and the
    // mentioned members are flagged.
    let range = syn.range;
    let digests = || {
        let rest = unnoted::<S>(found, &syn).map(|d| {
            let slot = if d.endpoint == ctx.local {
                LOCAL_SLOT
            } else {
                ctx.index.find(&d.endpoint, peers_ro).unwrap_or(NO_SLOT)
            };
            (slot, d)
        });
        found.as_slice().iter().copied().chain(rest)
    };
    let lookup = |slot: u32| -> Option<(Who, &EndpointState<S::StateBuf>)> {
        match slot {
            LOCAL_SLOT => Some((Who::Local, ctx.me)),
            i => {
                let p = peers_ro.get(i as usize)?;
                p.is_member().then_some((Who::Peer(i), &p.state))
            }
        }
    };
    let mut ranked = Ranked::<S>::new();
    // What we lack, most first: endpoints we do not know (or only an older
    // generation of), then the largest version gaps.
    let mut wanted: Top<S, GossipDigest, RANKED_REQUESTS> = TopK::new();
    for (slot, d) in digests() {
        let request = match lookup(slot) {
            None => {
                let quarantined_old = peers_ro
                    .get(slot as usize)
                    .is_some_and(|p| d.generation <= p.state.generation());
                (ctx.room_for_new && !quarantined_old).then_some((u64::MAX, Version(0)))
            }
            Some((who, ours)) => match compare(ours, who, d.generation, d.max_version) {
                Compare::RequestAll if who != Who::Local => Some((u64::MAX, Version(0))),
                Compare::RequestAbove(v) if who != Who::Local => Some((d.max_version.0 - v.0, v)),
                Compare::Send(c) => {
                    ranked.offer(c.gap, c);
                    None
                }
                _ => None,
            },
        };
        if let Some((priority, version)) = request {
            wanted.offer(
                priority,
                GossipDigest {
                    endpoint: d.endpoint,
                    generation: d.generation,
                    max_version: version,
                    claim: Claim::default(),
                },
            );
        }
    }
    for (_, request) in wanted.sorted() {
        if w.len() >= request_budget || !w.push_request(request) {
            break;
        }
    }
    // The members on the SYN's stretch of the ring, in ring order.
    let ring = ctx.index.ring();
    let span = range.end.wrapping_sub(range.start);
    let unmentioned = |f: &mut dyn FnMut(Candidate) -> bool| {
        if !local_mentioned
            && range.contains(ring_position(&ctx.local))
            && !f(everything(Who::Local, ctx.me))
        {
            return false;
        }
        for (position, i) in ring.clockwise(range.start) {
            if position.wrapping_sub(range.start) > span {
                break;
            }
            if let Some(p) = peers_ro.get(i as usize)
                && p.is_member()
                && p.flags & flags::MENTIONED == 0
                && !f(everything(Who::Peer(i), &p.state))
            {
                return false;
            }
        }
        true
    };
    unmentioned(&mut |c| {
        ranked.offer(c.gap, c);
        true
    });
    // When nothing was pushed out of the ranking, no need to walk again.
    let all_ranked = ranked.offered <= ranked.capacity();
    let ranked = ranked.sorted();
    write_deltas(ctx, peers_ro, &mut w, ranked, |f| {
        for (slot, d) in digests() {
            if let Some((who, ours)) = lookup(slot)
                && let Compare::Send(c) = compare(ours, who, d.generation, d.max_version)
                && !f(c)
            {
                return;
            }
        }
        if !all_ranked {
            unmentioned(f);
        }
    });
    let empty = w.requests() == 0 && w.deltas() == 0;
    let size = w.finish();
    (!empty).then_some(size)
}

fn everything<B: StateBuf>(who: Who, state: &EndpointState<B>) -> Candidate {
    Candidate {
        gap: TIER_WHOLE | state.max_version().0.min(TIER_GAP_MASK),
        who,
        above: Version(0),
    }
}

/// The ACK2 to an ACK: what its requests asked for.
#[inline(never)]
fn write_ack2<S: Storage>(
    ctx: &ReplyContext<'_, S>,
    peers: &[Peer<S::StateBuf>],
    requests: Digests<'_>,
    header: &Header,
    buf: &mut [u8],
) -> Option<usize> {
    let Ok(mut w) = Ack2Writer::new(buf, header, ctx.rumors) else {
        return Some(0);
    };
    let candidate = |r: &GossipDigest| -> Option<Candidate> {
        let (who, ours) = if r.endpoint == ctx.local {
            (Who::Local, ctx.me)
        } else {
            let i = ctx.index.find(&r.endpoint, peers)?;
            let p = peers.get(i as usize).filter(|p| p.is_member())?;
            (Who::Peer(i), &p.state)
        };
        match compare(ours, who, r.generation, r.max_version) {
            Compare::Send(c) => Some(c),
            _ => None,
        }
    };
    let mut ranked = Ranked::<S>::new();
    for r in requests {
        if let Some(c) = candidate(&r) {
            ranked.offer(c.gap, c);
        }
    }
    let ranked = ranked.sorted();
    write_deltas(ctx, peers, &mut w, ranked, |f| {
        for r in requests {
            if let Some(c) = candidate(&r)
                && !f(c)
            {
                return;
            }
        }
    });
    if w.deltas() == 0 {
        return None;
    }
    Some(w.finish())
}

#[cfg(test)]
mod tests;
