//! What a node counts: datagrams by kind, and why dropped ones were dropped.

use super::*;

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
    pub(super) fn from_wire(e: wire::Error) -> Self {
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

    pub(super) fn from_merge(e: MergeError) -> Self {
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
    /// Datagrams sent, by kind: read with [`Stats::sent`].
    pub(crate) sent_by_kind: [u64; KINDS],
    /// Datagrams accepted, by kind: read with [`Stats::received`].
    pub(crate) received_by_kind: [u64; KINDS],
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
    /// NEWS datagrams sent to members that spread a claim older than ours
    /// (from before a refutation they missed).
    pub corrections_sent: u64,
    /// Liveness messages dropped because too many were waiting.
    pub outbox_full: u64,
    /// New endpoints refused because the table was full.
    pub refused_endpoints: u64,
    /// Deltas about quarantined endpoints' old generations, ignored.
    pub ignored_quarantined: u64,
    /// Replies (or SYNs) that could not be encoded into the buffer given.
    pub unencodable: u64,
    /// Catch-up bursts started for peers far behind.
    pub catch_up_bursts: u64,
    /// Whole endpoints sent in CATCH-UP datagrams.
    pub catch_up_endpoints: u64,
    /// SYNs sent to members whose membership summaries differed from ours.
    pub summary_syncs: u64,
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

    /// Datagrams of `kind` this node sent.
    pub fn sent(&self, kind: Kind) -> u64 {
        self.sent_by_kind
            .get(kind_index(kind))
            .copied()
            .unwrap_or(0)
    }

    /// Datagrams of `kind` this node accepted.
    pub fn received(&self, kind: Kind) -> u64 {
        self.received_by_kind
            .get(kind_index(kind))
            .copied()
            .unwrap_or(0)
    }

    pub(super) fn drop(&mut self, reason: DropReason) {
        if let Some(c) = self.dropped.get_mut(reason as usize) {
            *c = c.saturating_add(1);
        }
        self.last_drop = Some(reason);
    }
}

/// Message kinds counted in [`Stats`].
pub(crate) const KINDS: usize = 10;

pub(super) fn kind_index(kind: Kind) -> usize {
    kind as usize - 1
}
