//! The state model: heartbeats, versioned application states, endpoint state
//! and the merge of a remote delta into it.
//!
//! Every node owns one [`EndpointState`]: a [`HeartbeatState`]
//! (`generation`, `version`) and a map from [`StateKey`] to
//! [`VersionedValue`]. Versions come from one per-node counter shared by the
//! heartbeat and the states ([`EndpointState::max_version`] is that counter),
//! so "newer" is always well defined within a generation. The generation
//! changes only when the node restarts.
//!
//! Merging ([`EndpointState::apply`]) is a join: per key the higher
//! `(generation, version)` wins, a newer generation replaces the endpoint
//! wholesale, and two values with the same version are ordered by their bytes
//! (a deterministic tie-break that only hostile or buggy peers ever need). The
//! merge is therefore commutative, associative and idempotent, which is what
//! lets gossip deliver deltas in any order, any number of times.

use core::fmt;

use crate::storage::StateBuf;
use crate::wire::codec::{self, Cursor, Reader};

/// A node's incarnation: changes only when the node restarts.
///
/// By convention (Cassandra's) it is the wall-clock time in seconds since the
/// Unix epoch when the node started, kept strictly increasing across restarts
/// by the binding that persists it. The bogus-generation check
/// ([`Limits::max_generation_drift`]) is expressed in the same unit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(
    any(test, feature = "serde"),
    derive(serde::Serialize, serde::Deserialize)
)]
pub struct Generation(pub u64);

/// A point in one node's version counter. Starts at zero for every generation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(
    any(test, feature = "serde"),
    derive(serde::Serialize, serde::Deserialize)
)]
pub struct Version(pub u64);

impl Generation {
    /// The generation for a node starting now: `wall_secs` (seconds since the
    /// Unix epoch), but always above `last`, the generation of its previous
    /// run, if any.
    pub fn next_after(wall_secs: u64, last: Option<Generation>) -> Generation {
        match last {
            Some(last) if last.0 >= wall_secs => Generation(last.0.saturating_add(1)),
            _ => Generation(wall_secs),
        }
    }
}

impl Version {
    /// The version a node jumps its heartbeat to when it shuts down gracefully,
    /// so no older heartbeat can ever be taken for a newer one. Versions are
    /// 32-bit, as Cassandra's: this is the largest.
    pub const MAX: Version = Version(u32::MAX as u64);

    /// The next version, or `None` when the counter is exhausted (it never
    /// reaches [`Version::MAX`] by counting).
    pub fn next(self) -> Option<Version> {
        let next = self.0.checked_add(1)?;
        (next < Version::MAX.0).then_some(Version(next))
    }
}

/// The largest generation: generations are 32-bit, as Cassandra's.
pub const MAX_GENERATION: Generation = Generation(u32::MAX as u64);

impl fmt::Display for Generation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A node's liveness marker: its generation and its heartbeat version.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct HeartbeatState {
    /// The node's incarnation.
    pub generation: Generation,
    /// The version of its latest heartbeat.
    pub version: Version,
}

/// One application state's value and the version it was written at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct VersionedValue<'a> {
    /// When (in the owner's version counter) the value was written.
    pub version: Version,
    /// The value's bytes. Usually UTF-8 text, as in Cassandra.
    pub value: &'a [u8],
}

impl<'a> VersionedValue<'a> {
    /// The value as UTF-8 text, if it is.
    pub fn as_str(&self) -> Option<&'a str> {
        core::str::from_utf8(self.value).ok()
    }
}

macro_rules! application_states {
    ($( $(#[$doc:meta])* $variant:ident = $code:literal, $name:literal; )*) => {
        /// Cassandra's well-known application states, sent as one-byte codes.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        #[non_exhaustive]
        pub enum ApplicationState {
            $( $(#[$doc])* $variant = $code, )*
        }

        impl ApplicationState {
            /// Every well-known state, in code order.
            pub const ALL: &'static [ApplicationState] = &[$(ApplicationState::$variant),*];

            /// The wire code.
            pub fn code(self) -> u16 {
                self as u16
            }

            /// The state with this wire code, if it is one this build knows.
            pub fn from_code(code: u16) -> Option<Self> {
                match code {
                    $( $code => Some(ApplicationState::$variant), )*
                    _ => None,
                }
            }

            /// Cassandra's name for it, as `nodetool gossipinfo` prints it.
            pub fn name(self) -> &'static str {
                match self {
                    $( ApplicationState::$variant => $name, )*
                }
            }

            /// The state with this name (exact, upper case), if any.
            pub fn from_name(name: &str) -> Option<Self> {
                match name {
                    $( $name => Some(ApplicationState::$variant), )*
                    _ => None,
                }
            }
        }
    };
}

application_states! {
    /// Membership status, e.g. `NORMAL`, `LEAVING`, `shutdown`.
    Status = 1, "STATUS";
    /// How much data the node holds.
    Load = 2, "LOAD";
    /// The schema version the node runs.
    Schema = 3, "SCHEMA";
    /// The node's data center.
    Dc = 4, "DC";
    /// The node's rack.
    Rack = 5, "RACK";
    /// The software release the node runs.
    ReleaseVersion = 6, "RELEASE_VERSION";
    /// The node's address inside its data center.
    InternalIp = 7, "INTERNAL_IP";
    /// The node's stable identity (a UUID in Cassandra).
    HostId = 8, "HOST_ID";
    /// The node's tokens.
    Tokens = 9, "TOKENS";
    /// I/O pressure the node reports.
    Severity = 10, "SEVERITY";
    /// The address clients connect to.
    NativeTransportAddress = 11, "NATIVE_TRANSPORT_ADDRESS";
    /// The messaging protocol version.
    NetVersion = 12, "NET_VERSION";
    /// Whether the client port accepts connections.
    NativeTransportReady = 13, "NATIVE_TRANSPORT_READY";
    /// The client port.
    NativeTransportPort = 14, "NATIVE_TRANSPORT_PORT";
    /// The inter-node storage port.
    StoragePort = 15, "STORAGE_PORT";
    /// The schema compatibility version.
    SchemaCompatibilityVersion = 16, "SCHEMA_COMPATIBILITY_VERSION";
}

/// The key of one application state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StateKey<'a> {
    /// One of Cassandra's well-known states (a one-byte code on the wire).
    Known(ApplicationState),
    /// A user-defined key (its UTF-8 name travels on the wire).
    User(&'a str),
    /// A well-known code this build does not know (from a newer peer). It is
    /// kept and relayed like any other key, so mixed-version clusters converge.
    Unknown(u16),
}

impl<'a> StateKey<'a> {
    /// The key named `name`: a well-known state if the name is one
    /// (`"STATUS"`), a user key otherwise.
    pub fn parse(name: &'a str) -> Self {
        match ApplicationState::from_name(name) {
            Some(known) => StateKey::Known(known),
            None => StateKey::User(name),
        }
    }

    /// The wire code: the state's code, or 0 for a user key.
    pub fn code(&self) -> u16 {
        match self {
            StateKey::Known(s) => s.code(),
            StateKey::User(_) => codec::USER_KEY_CODE,
            StateKey::Unknown(code) => *code,
        }
    }

    /// The key for a non-user wire code.
    pub(crate) fn from_code(code: u16) -> Self {
        match ApplicationState::from_code(code) {
            Some(known) => StateKey::Known(known),
            None => StateKey::Unknown(code),
        }
    }

    /// The length the key limit applies to: a user key's name in bytes, zero
    /// for codes.
    pub fn name_len(&self) -> usize {
        match self {
            StateKey::User(name) => name.len(),
            _ => 0,
        }
    }
}

impl fmt::Display for StateKey<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StateKey::Known(s) => f.write_str(s.name()),
            StateKey::User(name) => f.write_str(name),
            StateKey::Unknown(code) => write!(f, "UNKNOWN_{code}"),
        }
    }
}

impl From<ApplicationState> for StateKey<'_> {
    fn from(s: ApplicationState) -> Self {
        StateKey::Known(s)
    }
}

/// Bounds on what one endpoint's state may hold. Enforced on every local
/// write and every merge, in builds with and without an allocator alike.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Application states per endpoint.
    pub max_keys_per_endpoint: usize,
    /// Bytes in a user-defined key's name (well-known keys are codes).
    pub max_key_len: usize,
    /// Bytes in one value.
    pub max_value_len: usize,
    /// How far a remote generation may be ahead of ours before it is rejected
    /// as bogus, in generation units (seconds). Cassandra's: one year.
    pub max_generation_drift: u64,
    /// How far above the highest version known of an endpoint (in the same
    /// generation; 0 for a new one) a received version may be. Versions
    /// grow by about one per round, so the default, 2²⁸ (eight years of
    /// one-second rounds), is not reached by a real node; it stops a
    /// hostile or broken peer from pinning a key at a version near
    /// [`Version::MAX`], after which its owner could never change it. The
    /// heartbeat's [`Version::MAX`] (a graceful shutdown's mark) is allowed.
    pub max_version_jump: u64,
}

impl Limits {
    /// One year in seconds: Cassandra's `MAX_GENERATION_DIFFERENCE`.
    pub const ONE_YEAR: u64 = 365 * 24 * 60 * 60;

    /// The encoded size of the largest entry these limits allow.
    pub fn max_entry_len(&self) -> usize {
        let key = codec::varint_len(0).saturating_add(codec::bytes_len(self.max_key_len));
        key.saturating_add(codec::varint_len(u64::MAX))
            .saturating_add(codec::bytes_len(self.max_value_len))
    }

    /// The packed size of the largest endpoint state these limits allow: a
    /// fixed [`StateBuf`] of at least this capacity never refuses a merge.
    pub fn max_state_bytes(&self) -> usize {
        self.max_entry_len()
            .saturating_mul(self.max_keys_per_endpoint)
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_keys_per_endpoint: 64,
            max_key_len: 64,
            max_value_len: 1024,
            max_generation_drift: Self::ONE_YEAR,
            max_version_jump: 1 << 28,
        }
    }
}

/// Application states packed in their wire encoding: an iterator over
/// `(key, value)` pairs. Used for both received deltas and stored state.
#[derive(Clone, Copy)]
pub struct Entries<'a> {
    bytes: &'a [u8],
    remaining: u32,
}

impl<'a> Entries<'a> {
    /// No entries.
    pub const EMPTY: Entries<'static> = Entries {
        bytes: &[],
        remaining: 0,
    };

    /// Entries already known to parse (validated wire input or our own store).
    pub(crate) fn from_validated(bytes: &'a [u8], count: u32) -> Self {
        Self {
            bytes,
            remaining: count,
        }
    }

    /// Parses and validates `count` entries from `rd`.
    pub(crate) fn parse(rd: &mut Reader<'a>, count: u32) -> Result<Self, codec::Malformed> {
        let start = rd.rest();
        for _ in 0..count {
            codec::take_entry(rd)?;
        }
        let used = start.len() - rd.rest().len();
        Ok(Self::from_validated(
            start.get(..used).ok_or(codec::Malformed)?,
            count,
        ))
    }

    /// Entries left.
    pub fn len(&self) -> usize {
        self.remaining as usize
    }

    /// Whether no entries are left.
    pub fn is_empty(&self) -> bool {
        self.remaining == 0
    }
}

impl<'a> Iterator for Entries<'a> {
    type Item = (StateKey<'a>, VersionedValue<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        let mut rd = Reader::new(self.bytes);
        match codec::take_entry(&mut rd) {
            Ok(item) => {
                self.bytes = rd.rest();
                self.remaining -= 1;
                Some(item)
            }
            Err(_) => {
                // Unreachable for validated bytes; stop rather than panic.
                self.remaining = 0;
                None
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.remaining as usize))
    }
}

impl fmt::Debug for Entries<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(*self).finish()
    }
}

impl PartialEq for Entries<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.zip(*other).all(|(a, b)| a == b)
    }
}

impl Eq for Entries<'_> {}

/// What one endpoint's owner has written since some version: the unit of
/// reconciliation. A delta may be partial (cut to fit a datagram): its entries
/// come in ascending version order and the heartbeat is included only when
/// every entry older than it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delta<'a> {
    /// The generation the entries belong to.
    pub generation: Generation,
    /// The heartbeat version, when included.
    pub heartbeat: Option<Version>,
    /// Application states, ascending by version.
    pub entries: Entries<'a>,
}

/// One element of a delta, in the order deltas are filled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeltaItem<'a> {
    /// The heartbeat's version.
    Heartbeat(Version),
    /// One application state.
    State(StateKey<'a>, VersionedValue<'a>),
}

impl DeltaItem<'_> {
    /// The item's version.
    pub fn version(&self) -> Version {
        match self {
            DeltaItem::Heartbeat(v) => *v,
            DeltaItem::State(_, vv) => vv.version,
        }
    }
}

/// Why a merge or local write was refused. In every case the endpoint state
/// is unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MergeError {
    /// The delta's generation is more than
    /// [`Limits::max_generation_drift`] ahead of ours (Cassandra: "bogus").
    BogusGeneration,
    /// The result would hold more than [`Limits::max_keys_per_endpoint`] keys.
    TooManyKeys,
    /// A user key's name is empty or longer than [`Limits::max_key_len`].
    BadKey,
    /// A value is longer than [`Limits::max_value_len`].
    ValueTooLong,
    /// The delta names the same key twice.
    DuplicateKey,
    /// The result would not fit the [`StateBuf`]'s fixed capacity.
    Capacity,
    /// The version counter is exhausted (after a graceful shutdown).
    VersionExhausted,
    /// A version further above the known ones than
    /// [`Limits::max_version_jump`].
    VersionJump,
}

impl fmt::Display for MergeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MergeError::BogusGeneration => "generation too far in the future",
            MergeError::TooManyKeys => "too many application states for one endpoint",
            MergeError::BadKey => "user key empty or too long",
            MergeError::ValueTooLong => "value too long",
            MergeError::DuplicateKey => "delta names a key twice",
            MergeError::Capacity => "state storage capacity exceeded",
            MergeError::VersionExhausted => "version counter exhausted (the node has shut down)",
            MergeError::VersionJump => "version too far above the known ones",
        })
    }
}

impl core::error::Error for MergeError {}

/// What a merge did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// The delta's generation was older than ours: nothing was applied.
    pub stale: bool,
    /// The delta's newer generation replaced the endpoint's state wholesale.
    pub replaced: bool,
    /// The heartbeat version moved forward.
    pub heartbeat_advanced: bool,
    /// Application states that changed.
    pub changed: usize,
}

/// One endpoint's heartbeat and application states.
///
/// `B` is where the states are stored (see [`crate::storage`]): a fixed
/// `heapless::Vec<u8, N>` without an allocator, a growable `Vec<u8>` with one.
/// Entries are kept in ascending version order, so a delta "everything above
/// version v" is a suffix.
#[derive(Clone)]
pub struct EndpointState<B> {
    /// The heartbeat's generation and version, and the highest version
    /// among the application states: 32-bit, as the wire's (so a peer slot
    /// stays small in large clusters).
    generation: u32,
    version: u32,
    max_state_version: u32,
    count: u16,
    buf: B,
}

/// A version as a peer slot stores it: 32 bits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Version32(u32);

impl From<Version> for Version32 {
    fn from(v: Version) -> Self {
        Version32(narrow(v.0))
    }
}

impl From<Version32> for Version {
    fn from(v: Version32) -> Self {
        Version(u64::from(v.0))
    }
}

/// A generation or version as stored: 32-bit. Callers check first (the wire
/// and [`EndpointState::check`] refuse wider values); a wider one saturates.
fn narrow(value: u64) -> u32 {
    u32::try_from(value).unwrap_or(u32::MAX)
}

impl<B: StateBuf> EndpointState<B> {
    /// An endpoint at `generation` with heartbeat version 0 and no states.
    /// Generations are 32-bit (seconds since the epoch last until 2106): a
    /// wider one is taken as [`MAX_GENERATION`].
    pub fn new(generation: Generation) -> Self {
        Self {
            generation: narrow(generation.0),
            version: 0,
            max_state_version: 0,
            count: 0,
            buf: B::default(),
        }
    }

    /// Merges a remote delta: per key the higher `(generation, version)` wins;
    /// a newer generation replaces the state wholesale; an older one is
    /// ignored ([`Applied::stale`]); a generation more than
    /// `limits.max_generation_drift` ahead of `local_generation` (the merging
    /// node's own) is refused. `on_change` sees every state that changed.
    ///
    /// The delta is checked in full before anything is written: on error the
    /// state is unchanged.
    pub fn apply(
        &mut self,
        delta: &Delta<'_>,
        limits: &Limits,
        local_generation: Generation,
        on_change: impl FnMut(StateKey<'_>, VersionedValue<'_>),
    ) -> Result<Applied, MergeError> {
        Self::check(Some(self), delta, limits, local_generation)?;
        self.apply_checked(delta, on_change)
    }

    /// [`apply`](Self::apply) without its check, for a delta that
    /// [`check`](Self::check) accepted against this very state (or, for a
    /// state just created at the delta's generation, against none) with the
    /// same limits and local generation: a node checks every delta of a
    /// datagram before it applies any, and need not check twice.
    pub(crate) fn apply_checked(
        &mut self,
        delta: &Delta<'_>,
        mut on_change: impl FnMut(StateKey<'_>, VersionedValue<'_>),
    ) -> Result<Applied, MergeError> {
        if delta.generation < self.generation() {
            return Ok(Applied {
                stale: true,
                ..Applied::default()
            });
        }
        let replace = delta.generation > self.generation();

        let mut applied = Applied {
            replaced: replace,
            ..Applied::default()
        };
        if replace {
            self.buf.clear();
            self.count = 0;
            self.generation = narrow(delta.generation.0);
            self.version = 0;
            self.max_state_version = 0;
        }
        for (key, value) in delta.entries {
            if let Some(slot) = self.winning_slot(&key, &value) {
                self.write(slot, &key, &value)?;
                applied.changed += 1;
                on_change(key, value);
            }
        }
        if let Some(version) = delta.heartbeat
            && version.0 > u64::from(self.version)
        {
            self.version = narrow(version.0);
            applied.heartbeat_advanced = true;
        }
        Ok(applied)
    }

    /// Merges another replica of this endpoint's state (the join of the two).
    pub fn merge<C: StateBuf>(
        &mut self,
        other: &EndpointState<C>,
        limits: &Limits,
        local_generation: Generation,
    ) -> Result<Applied, MergeError> {
        self.apply(&other.as_delta(), limits, local_generation, |_, _| {})
    }

    /// The owner's operation: a new heartbeat at the next version.
    pub fn beat(&mut self) -> Result<Version, MergeError> {
        let version = self.next_version()?;
        self.version = narrow(version.0);
        Ok(version)
    }

    /// The owner's operation: writes `value` under `key` at the next version.
    pub fn set_local(
        &mut self,
        key: StateKey<'_>,
        value: &[u8],
        limits: &Limits,
    ) -> Result<Version, MergeError> {
        let version = self.next_version()?;
        let value = VersionedValue { version, value };
        check_entry(&key, &value, limits)?;
        let slot = self.find(&key).map(|f| (f.offset, f.len));
        if slot.is_none() && self.len() >= limits.max_keys_per_endpoint {
            return Err(MergeError::TooManyKeys);
        }
        let old_len = slot.map_or(0, |(_, len)| len);
        let peak = self.buf.bytes().len() - old_len + codec::entry_len(&key, &value);
        if self.buf.capacity_limit().is_some_and(|cap| peak > cap) {
            return Err(MergeError::Capacity);
        }
        self.write(slot, &key, &value)?;
        Ok(version)
    }

    /// The owner's operation on graceful shutdown: the heartbeat jumps to
    /// [`Version::MAX`] so that every replica takes it as the newest.
    pub fn force_highest_heartbeat(&mut self) {
        self.version = narrow(Version::MAX.0);
    }

    /// The heartbeat.
    pub fn heartbeat(&self) -> HeartbeatState {
        HeartbeatState {
            generation: self.generation(),
            version: Version(u64::from(self.version)),
        }
    }

    /// The generation.
    pub fn generation(&self) -> Generation {
        Generation(u64::from(self.generation))
    }

    /// The highest version of the heartbeat and every state: what a digest
    /// advertises, and for the owner its version counter.
    pub fn max_version(&self) -> Version {
        Version(u64::from(self.version.max(self.max_state_version)))
    }

    /// The highest version among the application states (0 without any).
    pub fn max_state_version(&self) -> Version {
        Version(u64::from(self.max_state_version))
    }

    /// Number of application states.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// Whether there are no application states.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The value under `key`.
    pub fn get(&self, key: &StateKey<'_>) -> Option<VersionedValue<'_>> {
        self.entries().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Every application state, in ascending version order.
    pub fn entries(&self) -> Entries<'_> {
        Entries::from_validated(self.buf.bytes(), u32::from(self.count))
    }

    /// The whole state as a delta.
    pub fn as_delta(&self) -> Delta<'_> {
        Delta {
            generation: self.generation(),
            heartbeat: Some(self.heartbeat().version),
            entries: self.entries(),
        }
    }

    /// The heartbeat and every state with a version above `version`, in
    /// ascending version order: what a peer that has seen up to `version` of
    /// this generation lacks.
    pub fn items_above(&self, version: Version) -> ItemsAbove<'_> {
        ItemsAbove {
            entries: self.entries(),
            pending: None,
            heartbeat: Some(self.heartbeat().version).filter(|v| *v > version),
            above: version,
        }
    }

    /// How many items [`items_above`](Self::items_above)`(Version(0))`
    /// yields: every state above version 0, and the heartbeat once it has
    /// beaten.
    pub fn item_count(&self) -> usize {
        // Entries ascend by version: any at version 0 lead, and only those
        // are read.
        let unversioned = self
            .entries()
            .take_while(|(_, v)| v.version == Version(0))
            .count();
        usize::from(self.count).saturating_sub(unversioned) + usize::from(self.version > 0)
    }

    /// Bytes of state storage in use (not counting the buffer's own header).
    pub fn stored_bytes(&self) -> usize {
        self.buf.bytes().len()
    }

    fn next_version(&self) -> Result<Version, MergeError> {
        self.max_version()
            .next()
            .ok_or(MergeError::VersionExhausted)
    }

    /// Checks `delta` exactly as [`apply`](Self::apply) would, against
    /// `existing` state or, with `None`, against an endpoint not known yet;
    /// writes nothing. `Ok` means `apply` will succeed.
    pub fn check(
        existing: Option<&Self>,
        delta: &Delta<'_>,
        limits: &Limits,
        local_generation: Generation,
    ) -> Result<(), MergeError> {
        // Generations are 32-bit: a wider one is as bogus as one too far
        // ahead.
        let ceiling = local_generation
            .0
            .saturating_add(limits.max_generation_drift)
            .min(MAX_GENERATION.0);
        if delta.generation.0 > ceiling {
            return Err(MergeError::BogusGeneration);
        }
        if delta.entries.len() > limits.max_keys_per_endpoint {
            return Err(MergeError::TooManyKeys);
        }
        let base = match existing {
            Some(s) if delta.generation < s.generation() => return Ok(()),
            Some(s) if delta.generation == s.generation() => Some(s),
            _ => None,
        };
        // Versions are 32-bit: none may pass `Version::MAX` either.
        let highest = base
            .map_or(0, |s| s.max_version().0)
            .saturating_add(limits.max_version_jump)
            .min(Version::MAX.0);
        let mut entries = delta.entries;
        if entries.any(|(_, v)| v.version.0 > highest)
            || delta
                .heartbeat
                .is_some_and(|h| h.0 > highest && h != Version::MAX)
        {
            return Err(MergeError::VersionJump);
        }
        let mut count = base.map_or(0, |s| s.len());
        let mut size = base.map_or(0, |s| s.buf.bytes().len());
        let mut peak = size;
        for (i, (key, value)) in delta.entries.enumerate() {
            check_entry(&key, &value, limits)?;
            if delta.entries.take(i).any(|(k, _)| k == key) {
                return Err(MergeError::DuplicateKey);
            }
            let existing = base.and_then(|s| s.find(&key));
            if !wins(existing.as_ref().map(|f| &f.value), &value) {
                continue;
            }
            match existing {
                Some(found) => size -= found.len,
                None => count += 1,
            }
            size += codec::entry_len(&key, &value);
            peak = peak.max(size);
        }
        if count > limits.max_keys_per_endpoint {
            return Err(MergeError::TooManyKeys);
        }
        let capacity = match existing {
            Some(s) => s.buf.capacity_limit(),
            None => B::default().capacity_limit(),
        };
        if capacity.is_some_and(|cap| peak > cap) {
            return Err(MergeError::Capacity);
        }
        Ok(())
    }

    /// `Some(slot)` when `value` wins over what is stored under `key`, where
    /// `slot` is the current entry's `(offset, len)`, if there is one.
    #[allow(clippy::option_option)]
    fn winning_slot(
        &self,
        key: &StateKey<'_>,
        value: &VersionedValue<'_>,
    ) -> Option<Option<(usize, usize)>> {
        match self.find(key) {
            None => Some(None),
            Some(found) => {
                wins(Some(&found.value), value).then_some(Some((found.offset, found.len)))
            }
        }
    }

    /// Replaces the entry at `slot` (if any) with `(key, value)` at its place
    /// in version order. The caller has checked limits and capacity.
    fn write(
        &mut self,
        slot: Option<(usize, usize)>,
        key: &StateKey<'_>,
        value: &VersionedValue<'_>,
    ) -> Result<(), MergeError> {
        if let Some((offset, len)) = slot {
            self.buf
                .splice_gap(offset, len, 0)
                .map_err(|_| MergeError::Capacity)?;
            self.count -= 1;
        }
        let at = self.insert_position(value.version);
        let len = codec::entry_len(key, value);
        let gap = self
            .buf
            .splice_gap(at, 0, len)
            .map_err(|_| MergeError::Capacity)?;
        let mut cur = Cursor::new(gap);
        codec::put_entry(&mut cur, key, value).map_err(|_| MergeError::Capacity)?;
        self.count += 1;
        self.max_state_version = self.max_state_version.max(narrow(value.version.0));
        Ok(())
    }

    /// Finds `key`'s entry: its offset and length in the buffer, and value.
    fn find(&self, key: &StateKey<'_>) -> Option<Found<'_>> {
        let bytes = self.buf.bytes();
        let mut rd = Reader::new(bytes);
        for _ in 0..self.count {
            let offset = bytes.len() - rd.rest().len();
            let (k, value) = codec::take_entry(&mut rd).ok()?;
            if k == *key {
                let len = bytes.len() - rd.rest().len() - offset;
                return Some(Found { offset, len, value });
            }
        }
        None
    }

    /// The offset of the first entry with a version above `version`.
    fn insert_position(&self, version: Version) -> usize {
        let bytes = self.buf.bytes();
        let mut rd = Reader::new(bytes);
        for _ in 0..self.count {
            let offset = bytes.len() - rd.rest().len();
            match codec::take_entry(&mut rd) {
                Ok((_, value)) if value.version > version => return offset,
                Ok(_) => {}
                Err(_) => return offset,
            }
        }
        bytes.len()
    }
}

impl<B: StateBuf, C: StateBuf> PartialEq<EndpointState<C>> for EndpointState<B> {
    /// Logical equality: same heartbeat and the same set of states.
    fn eq(&self, other: &EndpointState<C>) -> bool {
        self.heartbeat() == other.heartbeat()
            && self.count == other.count
            && self
                .entries()
                .all(|(k, v)| other.get(&k).is_some_and(|o| o == v))
    }
}

impl<B: StateBuf> fmt::Debug for EndpointState<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EndpointState")
            .field("heartbeat", &self.heartbeat())
            .field("max_version", &self.max_version())
            .field("entries", &self.entries())
            .finish()
    }
}

/// Iterator returned by [`EndpointState::items_above`].
#[derive(Clone, Debug)]
pub struct ItemsAbove<'a> {
    entries: Entries<'a>,
    pending: Option<(StateKey<'a>, VersionedValue<'a>)>,
    heartbeat: Option<Version>,
    above: Version,
}

impl<'a> Iterator for ItemsAbove<'a> {
    type Item = DeltaItem<'a>;

    fn next(&mut self) -> Option<DeltaItem<'a>> {
        if self.pending.is_none() {
            self.pending = self.entries.find(|(_, v)| v.version > self.above);
        }
        match (self.pending, self.heartbeat) {
            (Some((_, value)), Some(hb)) if hb < value.version => {
                self.heartbeat = None;
                Some(DeltaItem::Heartbeat(hb))
            }
            (Some((key, value)), _) => {
                self.pending = None;
                Some(DeltaItem::State(key, value))
            }
            (None, hb) => {
                self.heartbeat = None;
                hb.map(DeltaItem::Heartbeat)
            }
        }
    }
}

struct Found<'a> {
    offset: usize,
    len: usize,
    value: VersionedValue<'a>,
}

/// Whether `new` replaces `current`: a higher version, or the same version
/// with greater bytes (the deterministic tie-break).
fn wins(current: Option<&VersionedValue<'_>>, new: &VersionedValue<'_>) -> bool {
    match current {
        None => true,
        Some(cur) => (new.version, new.value) > (cur.version, cur.value),
    }
}

fn check_entry(
    key: &StateKey<'_>,
    value: &VersionedValue<'_>,
    limits: &Limits,
) -> Result<(), MergeError> {
    if let StateKey::User(name) = key
        && (name.is_empty() || name.len() > limits.max_key_len)
    {
        return Err(MergeError::BadKey);
    }
    // Code 0 is the user-key marker, and a known code must be `Known`: either
    // would store bytes that parse as another key.
    if let StateKey::Unknown(code) = key
        && (*code == codec::USER_KEY_CODE || ApplicationState::from_code(*code).is_some())
    {
        return Err(MergeError::BadKey);
    }
    if value.value.len() > limits.max_value_len {
        return Err(MergeError::ValueTooLong);
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests;
