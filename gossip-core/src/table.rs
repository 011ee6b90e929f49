//! The peer table and the storage it lives in.
//!
//! A [`Node`](crate::Node) is generic over a [`Storage`], which names every
//! container it uses. Two are provided:
//!
//! - [`FixedStorage`]: fixed capacities chosen at compile time
//!   (`heapless::Vec`), no allocator;
//! - [`HeapStorage`] (feature `alloc`): `Vec`s that grow up to the configured
//!   limits.
//!
//! A growable table finds endpoints through the ring order it keeps anyway
//! ([`RingIndex`]: a ring position is a hash of the address, so a lookup
//! starts where the position says and touches a few cache lines), with no
//! hash table beside it; a fixed one, of tens of slots, is scanned.
//!
//! Both run the same state machine; [`Config`](crate::Config) limits hold in
//! both, and [`Node::new`](crate::Node::new) refuses a fixed storage too small
//! for the configuration.

use core::net::SocketAddr;

use crate::claim::{Claim, Status};
use crate::fd::ArrivalWindow;
use crate::state::{ApplicationState, EndpointState, Generation, StateKey, Version32};
use crate::storage::StateBuf;
use crate::time::Instant;

/// A growable or fixed sequence.
pub trait Seq<T> {
    /// The elements.
    fn as_slice(&self) -> &[T];
    /// The elements, mutably.
    fn as_mut_slice(&mut self) -> &mut [T];
    /// Appends `value`, or gives it back when full.
    fn try_push(&mut self, value: T) -> Result<(), T>;
    /// Keeps the first `len` elements.
    fn truncate(&mut self, len: usize);
    /// The fixed capacity, `None` for a growable sequence.
    fn capacity_limit(&self) -> Option<usize>;
    /// Makes room for `additional` more elements at once, where the
    /// sequence can grow (a fixed one has all its room already).
    fn reserve(&mut self, additional: usize) {
        let _ = additional;
    }
}

impl<T, const N: usize> Seq<T> for heapless::Vec<T, N> {
    fn as_slice(&self) -> &[T] {
        heapless::Vec::as_slice(self)
    }
    fn as_mut_slice(&mut self) -> &mut [T] {
        heapless::Vec::as_mut_slice(self)
    }
    fn try_push(&mut self, value: T) -> Result<(), T> {
        self.push(value)
    }
    fn truncate(&mut self, len: usize) {
        heapless::Vec::truncate(self, len);
    }
    fn capacity_limit(&self) -> Option<usize> {
        Some(N)
    }
}

#[cfg(feature = "alloc")]
impl<T> Seq<T> for alloc::vec::Vec<T> {
    fn as_slice(&self) -> &[T] {
        alloc::vec::Vec::as_slice(self)
    }
    fn as_mut_slice(&mut self) -> &mut [T] {
        alloc::vec::Vec::as_mut_slice(self)
    }
    /// Doubles up to 1,024 elements, then grows by an eighth when full: a
    /// table of 10,000 peers holds at most 1,250 spare slots, not 6,384,
    /// small ones reallocate rarely, and growth stays amortized O(1).
    fn try_push(&mut self, value: T) -> Result<(), T> {
        if self.len() == self.capacity() {
            let len = self.len();
            self.reserve_exact(if len < 1024 { len.max(4) } else { len / 8 });
        }
        self.push(value);
        Ok(())
    }
    fn truncate(&mut self, len: usize) {
        alloc::vec::Vec::truncate(self, len);
    }
    fn capacity_limit(&self) -> Option<usize> {
        None
    }
    fn reserve(&mut self, additional: usize) {
        self.reserve_exact(additional);
    }
}

/// Finds a peer's slot by address, and keeps the occupied slots in ring
/// order (by [`ring_position`](crate::wire::ring_position)), so a SYN's
/// stretch of the ring is walked without scanning the whole table.
pub trait AddrIndex: Default {
    /// The slot holding `addr`, among occupied slots.
    fn find<B>(&self, addr: &SocketAddr, peers: &[Peer<B>]) -> Option<u32>;
    /// [`find`](Self::find) for each of `items` (its address by `addr`),
    /// written into the item's first field ([`NOT_FOUND`] when not
    /// found). The same answers as one `find` each; an index may fetch
    /// the items' table lines together (each lookup in a large table is a
    /// cache miss or two, and independent ones overlap).
    fn find_each<T, B>(
        &self,
        items: &mut [(u32, T)],
        addr: impl Fn(&T) -> &SocketAddr,
        peers: &[Peer<B>],
    ) {
        find_one_by_one(self, items, addr, peers);
    }
    /// Slot `idx` was just occupied.
    fn insert<B>(&mut self, idx: u32, peers: &[Peer<B>]);
    /// Slot `idx` is about to be vacated.
    fn remove<B>(&mut self, idx: u32, peers: &[Peer<B>]);
    /// Every occupied slot as `(ring position, slot)`, in ring order.
    fn ring(&self) -> RingView<'_>;
    /// Makes room for `additional` more peers at once, where the index can
    /// grow.
    fn reserve<B>(&mut self, additional: usize, peers: &[Peer<B>]) {
        let _ = (additional, peers);
    }
}

/// The occupied slots in ring order, as two ascending runs: a long one and a
/// short tail that new slots are inserted into (an insertion step over the
/// tail only). When an insertion would take the tail past `MERGE_CHUNK`
/// entries, the tail is merged into the long run from the back, in place,
/// touching only the long run's entries above the tail's least: with
/// thousands of peers that is a pass over the table every `MERGE_CHUNK`
/// insertions, not one every time the order is read. A fixed-capacity order
/// (tens of slots) has no tail: an insertion step over the whole run.
#[derive(Default)]
pub(crate) struct RingOrder<V> {
    entries: V,
    /// How many leading entries form the long run.
    sorted: usize,
}

/// The most entries a growable order's tail holds; it is merged (through a
/// stack buffer of 1 KiB) when one more comes.
#[cfg(feature = "alloc")]
const MERGE_CHUNK: usize = 128;

impl<V: Seq<(u32, u32)>> RingOrder<V> {
    fn insert(&mut self, ring: u32, idx: u32) {
        let entry = (ring, idx);
        // Room for every slot: the caller's table holds as many.
        if self.entries.try_push(entry).is_err() {
            return;
        }
        let growable = self.entries.capacity_limit().is_none();
        let entries = self.entries.as_mut_slice();
        let len = entries.len();
        let sorted = self.sorted.min(len - 1);
        #[cfg(feature = "alloc")]
        if growable && len - sorted > MERGE_CHUNK && merge_tail(entries, sorted) {
            self.sorted = len;
            return;
        }
        // An insertion step, within the tail of a growable order, over the
        // whole of a fixed one.
        let lower = if growable { sorted } else { 0 };
        let mut j = len - 1;
        while j > lower && entries.get(j - 1).is_some_and(|e| *e > entry) {
            entries.swap(j - 1, j);
            j -= 1;
        }
        if !growable {
            self.sorted = len;
        }
    }

    fn remove(&mut self, ring: u32, idx: u32) {
        let entries = self.entries.as_mut_slice();
        let sorted = self.sorted.min(entries.len());
        let (run, tail) = entries.split_at(sorted);
        let found = match run.binary_search(&(ring, idx)) {
            Ok(at) => Some(at),
            Err(_) => tail.binary_search(&(ring, idx)).ok().map(|at| at + sorted),
        };
        if let Some(at) = found {
            entries.copy_within(at + 1.., at);
            let len = entries.len() - 1;
            self.entries.truncate(len);
            if at < sorted {
                self.sorted = sorted - 1;
            }
        }
    }

    fn view(&self) -> RingView<'_> {
        let entries = self.entries.as_slice();
        let (run, tail) = entries.split_at(self.sorted.min(entries.len()));
        RingView { runs: [run, tail] }
    }
}

/// Merges `entries[sorted..]` (ascending but for its last entry, at most
/// [`MERGE_CHUNK`] + 1 entries) into the ascending `entries[..sorted]`, from
/// the back. False, with nothing changed, for a longer tail (callers keep it
/// within the buffer).
#[cfg(feature = "alloc")]
fn merge_tail(entries: &mut [(u32, u32)], sorted: usize) -> bool {
    let mut tail = [(0u32, 0u32); MERGE_CHUNK + 1];
    let Some(tail) = entries
        .len()
        .checked_sub(sorted)
        .and_then(|n| tail.get_mut(..n))
    else {
        return false;
    };
    if let Some(src) = entries.get(sorted..) {
        tail.copy_from_slice(src);
    }
    // In order but for the last entry: one insertion step.
    for k in (1..tail.len()).rev() {
        if tail.get(k - 1) > tail.get(k) {
            tail.swap(k - 1, k);
        } else {
            break;
        }
    }
    // Fill from the back: the larger of the run's and the tail's last.
    let (mut i, mut j) = (sorted, tail.len());
    for k in (0..entries.len()).rev() {
        let Some(&t) = j.checked_sub(1).and_then(|j| tail.get(j)) else {
            // The tail is placed; the rest of the run is where it was.
            break;
        };
        let from_run = i
            .checked_sub(1)
            .and_then(|i| entries.get(i).copied())
            .filter(|p| *p > t);
        let next = match from_run {
            Some(p) => {
                i -= 1;
                p
            }
            None => {
                j -= 1;
                t
            }
        };
        if let Some(e) = entries.get_mut(k) {
            *e = next;
        }
    }
    true
}

/// The occupied slots as `(ring position, slot)`, in ring order: two
/// ascending runs (see [`AddrIndex::ring`]) that [`clockwise`](Self::clockwise)
/// walks as one.
#[derive(Clone, Copy, Debug, Default)]
pub struct RingView<'a> {
    runs: [&'a [(u32, u32)]; 2],
}

impl<'a> RingView<'a> {
    /// Two ascending runs of `(ring position, slot)` entries (either may be
    /// empty).
    pub fn new(run: &'a [(u32, u32)], tail: &'a [(u32, u32)]) -> Self {
        Self { runs: [run, tail] }
    }

    /// How many slots.
    pub fn len(&self) -> usize {
        self.runs[0].len() + self.runs[1].len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every entry, clockwise from `start`: ascending from the first at or
    /// after `start`, then from the least up to it.
    pub fn clockwise(self, start: u32) -> impl Iterator<Item = (u32, u32)> + 'a {
        let [a, b] = self.runs;
        let (a_before, a_after) = a.split_at(a.partition_point(|&(p, _)| p < start));
        let (b_before, b_after) = b.split_at(b.partition_point(|&(p, _)| p < start));
        Merge(a_after, b_after).chain(Merge(a_before, b_before))
    }
}

/// Two ascending runs, walked as one.
struct Merge<'a>(&'a [(u32, u32)], &'a [(u32, u32)]);

impl Iterator for Merge<'_> {
    type Item = (u32, u32);

    fn next(&mut self) -> Option<(u32, u32)> {
        let take_first = match (self.0.first(), self.1.first()) {
            (Some(a), Some(b)) => a <= b,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => return None,
        };
        let run = if take_first { &mut self.0 } else { &mut self.1 };
        let (first, rest) = run.split_first()?;
        *run = rest;
        Some(*first)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.0.len() + self.1.len();
        (n, Some(n))
    }
}

/// What [`AddrIndex::find_each`] writes for an address not found.
pub(crate) const NOT_FOUND: u32 = u32::MAX;

/// [`AddrIndex::find_each`] as one [`find`](AddrIndex::find) an item.
fn find_one_by_one<I: AddrIndex, T, B>(
    index: &I,
    items: &mut [(u32, T)],
    addr: impl Fn(&T) -> &SocketAddr,
    peers: &[Peer<B>],
) {
    for (slot, item) in items.iter_mut() {
        *slot = index.find(addr(item), peers).unwrap_or(NOT_FOUND);
    }
}

/// An [`AddrIndex`] over the ring order alone (8 bytes a peer): a peer's
/// ring position is a hash of its address, so its entry is found where the
/// position says, `position / 2^32` of the way along the long run
/// (interpolation, then a gallop and a binary search over the few entries
/// the guess was off by), and by a binary search of the short tail. A
/// fixed-capacity table is scanned instead.
///
/// Ring positions are not keyed: a hostile peer that forges many addresses
/// at one position makes lookups of that position linear in their number,
/// which [`Config::max_peers`](crate::Config::max_peers) bounds.
#[derive(Default)]
pub struct RingIndex<V> {
    ring: RingOrder<V>,
}

impl<V: Seq<(u32, u32)> + Default> AddrIndex for RingIndex<V> {
    fn find<B>(&self, addr: &SocketAddr, peers: &[Peer<B>]) -> Option<u32> {
        let key = PeerAddr::new(addr);
        if self.ring.entries.capacity_limit().is_some() {
            // A fixed table (tens of slots, a microcontroller's): a scan is
            // as quick, and the least code in flash.
            return peers
                .iter()
                .position(|p| p.slot != Slot::Vacant && p.addr == key)
                .and_then(|i| u32::try_from(i).ok());
        }
        let position = crate::wire::ring_position(addr);
        let [run, _] = self.ring.view().runs;
        self.find_from(&key, position, interpolate(run, position), peers)
    }

    fn find_each<T, B>(
        &self,
        items: &mut [(u32, T)],
        addr: impl Fn(&T) -> &SocketAddr,
        peers: &[Peer<B>],
    ) {
        if self.ring.entries.capacity_limit().is_some() {
            return find_one_by_one(self, items, addr, peers);
        }
        // Two passes of short, independent steps, so the processor has many
        // of the cache misses in flight at once: where each item's position
        // falls in the long run, then the slots found there. (The first
        // field holds the run index in between.)
        let [run, _] = self.ring.view().runs;
        for (slot, item) in items.iter_mut() {
            let position = crate::wire::ring_position(addr(item));
            *slot = u32::try_from(interpolate(run, position)).unwrap_or(u32::MAX);
        }
        for (slot, item) in items.iter_mut() {
            let (addr, from) = (addr(item), *slot as usize);
            let position = crate::wire::ring_position(addr);
            *slot = self
                .find_from(&PeerAddr::new(addr), position, from, peers)
                .unwrap_or(NOT_FOUND);
        }
    }

    fn insert<B>(&mut self, idx: u32, peers: &[Peer<B>]) {
        if let Some(p) = peers.get(idx as usize) {
            self.ring
                .insert(crate::wire::ring_position(&p.addr.get()), idx);
        }
    }

    fn remove<B>(&mut self, idx: u32, peers: &[Peer<B>]) {
        if let Some(p) = peers.get(idx as usize) {
            self.ring
                .remove(crate::wire::ring_position(&p.addr.get()), idx);
        }
    }

    fn ring(&self) -> RingView<'_> {
        self.ring.view()
    }

    fn reserve<B>(&mut self, additional: usize, _peers: &[Peer<B>]) {
        self.ring.entries.reserve(additional);
    }
}

impl<V: Seq<(u32, u32)>> RingIndex<V> {
    /// The slot holding `key` (at ring `position`), from index `from` of the
    /// long run (where `position` falls in it), then in the tail: a growable
    /// table's lookup.
    fn find_from<B>(
        &self,
        key: &PeerAddr,
        position: u32,
        from: usize,
        peers: &[Peer<B>],
    ) -> Option<u32> {
        let [run, tail] = self.ring.view().runs;
        let holds = |e: &&(u32, u32)| peers.get(e.1 as usize).is_some_and(|p| p.addr == *key);
        let at = |entries: &[(u32, u32)], from: usize| {
            entries
                .get(from..)
                .unwrap_or_default()
                .iter()
                .take_while(|e| e.0 == position)
                .find(holds)
                .map(|e| e.1)
        };
        // The tail (the latest insertions) only when the run has not got it.
        at(run, from).or_else(|| at(tail, tail.partition_point(|e| e.0 < position)))
    }
}

/// The first entry of the ascending `run` at or after `position`: guessed
/// from where `position` falls in the 32-bit range (positions are hashes,
/// spread evenly), then bracketed by steps doubling away from the guess and
/// searched within the bracket. About as many entries are touched as the
/// guess is off by in a logarithm, a few cache lines however long the run.
fn interpolate(run: &[(u32, u32)], position: u32) -> usize {
    let n = run.len();
    let below = |i: usize| run.get(i).is_some_and(|e| e.0 < position);
    let guess = ((u64::from(position) * n as u64) >> 32) as usize;
    let (mut lo, mut hi);
    let mut step = 8usize;
    if below(guess) {
        // The answer is after the guess.
        lo = guess + 1;
        loop {
            hi = lo.saturating_add(step).min(n);
            if hi == n || !below(hi) {
                break;
            }
            lo = hi + 1;
            step = step.saturating_mul(2);
        }
    } else {
        // At the guess or before it.
        hi = guess.min(n);
        loop {
            lo = hi.saturating_sub(step);
            if lo == 0 || below(lo) {
                break;
            }
            hi = lo;
            step = step.saturating_mul(2);
        }
    }
    lo + run
        .get(lo..hi)
        .map_or(0, |r| r.partition_point(|e| e.0 < position))
}

/// The containers a [`Node`](crate::Node) keeps its peer table and
/// buffers in: [`FixedStorage`] (compile-time capacities, no allocator) or
/// [`HeapStorage`] (growable). Sealed: the node relies on how these
/// containers behave, so no other type implements it.
pub trait Storage: sealed::Containers {}

impl<T: sealed::Containers> Storage for T {}

pub(crate) mod sealed {
    use super::*;

    /// Every container a [`Node`](crate::Node) uses.
    pub trait Containers {
        /// Holds one endpoint's packed application states.
        type StateBuf: StateBuf;
        /// The peer table's slots.
        type Peers: Seq<Peer<Self::StateBuf>> + Default;
        /// Slot numbers (free slots, peers with pending events).
        type Indices: Seq<u32> + Default;
        /// One stored datagram (a SYN or ACK awaiting its reply).
        type Datagram: StateBuf;
        /// Datagrams awaiting their reply.
        type Replies: Seq<Reply<Self::Datagram>> + Default;
        /// Finds slots by address.
        type Index: AddrIndex;
        /// Scratch on the stack for one call (rankings, a SYN's decoded digests
        /// while answering it): up to `N` items with [`HeapStorage`] (answering
        /// a SYN holds up to 256 digests of 56 bytes, about 14 KB, beside the
        /// rankings), up to the table's capacity with [`FixedStorage`] (a table
        /// of 16 peers never ranks more than 17 endpoints, and a
        /// microcontroller's stack is small).
        /// Past its capacity the node takes slower paths or leaves the rest
        /// unranked; it never fails for it.
        type Scratch<T, const N: usize>: Seq<T> + Default;
        /// Per slot, the seqs seen from the peer in it (authenticated clusters).
        #[cfg(feature = "auth")]
        type Replays: Seq<crate::auth::ReplayWindow> + Default;
    }
}

/// Fixed capacities, no allocator: up to `PEERS` endpoints of at most
/// `STATE_BYTES` packed state each, and `REPLIES` pending replies of up to
/// `DATAGRAM` bytes.
///
/// RAM is about `PEERS * (STATE_BYTES + 92) + REPLIES * (DATAGRAM + 40)`
/// bytes, inline in the [`Node`](crate::Node) (a slot is its states and
/// 84 bytes, its ring entry 8), and a few kilobytes more. The scratch
/// a call puts on the stack is sized by `PEERS` too (at most `PEERS` items
/// each): answering a SYN holds its decoded digests (56 bytes a peer) and
/// the ACK's rankings (about 60 bytes a peer in the largest), about 150
/// bytes a peer in all.
#[derive(Clone, Copy, Debug, Default)]
pub struct FixedStorage<
    const PEERS: usize,
    const STATE_BYTES: usize,
    const DATAGRAM: usize = 1400,
    const REPLIES: usize = 2,
>;

impl<const PEERS: usize, const STATE_BYTES: usize, const DATAGRAM: usize, const REPLIES: usize>
    sealed::Containers for FixedStorage<PEERS, STATE_BYTES, DATAGRAM, REPLIES>
{
    type StateBuf = heapless::Vec<u8, STATE_BYTES>;
    type Peers = heapless::Vec<Peer<Self::StateBuf>, PEERS>;
    type Indices = heapless::Vec<u32, PEERS>;
    type Datagram = heapless::Vec<u8, DATAGRAM>;
    type Replies = heapless::Vec<Reply<Self::Datagram>, REPLIES>;
    type Index = RingIndex<heapless::Vec<(u32, u32), PEERS>>;
    type Scratch<T, const N: usize> = heapless::Vec<T, PEERS>;
    #[cfg(feature = "auth")]
    type Replays = heapless::Vec<crate::auth::ReplayWindow, PEERS>;
}

/// Growable storage bounded by the configuration. The
/// peer table doubles up to 1,024 slots, then grows by an eighth as
/// endpoints are learned; [`Node::reserve_peers`](crate::Node::reserve_peers)
/// allocates it once for a known cluster size instead.
///
/// An endpoint's packed application states live in its slot up to
/// `INLINE_STATES` bytes (at most 255), in an allocation of their own beyond
/// ([`InlineStates`](crate::storage::InlineStates)). The default, 54 bytes,
/// holds a STATUS and a HOST_ID (a UUID) with room to spare, and rounds the
/// slot to a multiple of 8 bytes; a cluster whose states are all larger can
/// take `HeapStorage<0>`: the states field shrinks from 56 bytes to 24 (a
/// tag and the pointer to their allocation).
#[cfg(feature = "alloc")]
#[derive(Clone, Copy, Debug, Default)]
pub struct HeapStorage<const INLINE_STATES: usize = 54>;

#[cfg(feature = "alloc")]
impl<const INLINE_STATES: usize> sealed::Containers for HeapStorage<INLINE_STATES> {
    type StateBuf = crate::storage::InlineStates<INLINE_STATES>;
    type Peers = alloc::vec::Vec<Peer<Self::StateBuf>>;
    type Indices = alloc::vec::Vec<u32>;
    type Datagram = alloc::vec::Vec<u8>;
    type Replies = alloc::vec::Vec<Reply<Self::Datagram>>;
    type Index = RingIndex<alloc::vec::Vec<(u32, u32)>>;
    type Scratch<T, const N: usize> = heapless::Vec<T, N>;
    #[cfg(feature = "auth")]
    type Replays = alloc::vec::Vec<crate::auth::ReplayWindow>;
}

/// The peer slot of a node with storage `S` (what
/// [`Node::endpoints`](crate::Node::endpoints) yields references to).
pub type PeerOf<S> = Peer<<S as sealed::Containers>::StateBuf>;

/// A received datagram waiting for its reply to be encoded.
pub struct Reply<D> {
    pub(crate) to: SocketAddr,
    pub(crate) bytes: D,
}

/// What a node believes of a peer's health.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Liveness {
    /// It answers probes, or the cluster says so (nobody suspects it).
    Alive,
    /// A probe of it failed, directly and through others: it is suspected,
    /// and down unless it refutes before the suspicion times out.
    Suspect,
    /// Its suspicion timed out (here or anywhere in the cluster).
    Down,
    /// It shut down gracefully.
    Left,
}

impl Liveness {
    /// A short lowercase name: `alive`, `suspect`, `down`, `left`.
    pub fn name(self) -> &'static str {
        match self {
            Liveness::Alive => "alive",
            Liveness::Suspect => "suspect",
            Liveness::Down => "down",
            Liveness::Left => "left",
        }
    }
}

impl core::fmt::Display for Liveness {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// What a slot of the table holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Slot {
    /// Free for reuse.
    Vacant,
    /// A known endpoint.
    Member,
    /// A removed endpoint: only its address and generation are kept, until
    /// `since` (the end of its quarantine).
    Quarantined,
}

/// What this node itself found while it suspects a peer.
pub(crate) mod doubt {
    /// Its own probe failed (counted as a confirmation).
    pub(crate) const CONFIRMED: u8 = 1 << 0;
    /// Its own probe was answered: the peer is alive to it, whatever others
    /// say, until the suspicion times out again.
    pub(crate) const ANSWERED: u8 = 1 << 1;
}

pub(crate) mod flags {
    /// STATUS says the endpoint shut down.
    pub(crate) const LEFT: u8 = 1 << 0;
    /// In the pending-events queue.
    pub(crate) const QUEUED: u8 = 1 << 1;
    /// Mentioned by the SYN being answered.
    pub(crate) const MENTIONED: u8 = 1 << 2;
    /// Events to report.
    pub(crate) const EV_DISCOVERED: u8 = 1 << 3;
    pub(crate) const EV_RESTARTED: u8 = 1 << 4;
    pub(crate) const EV_SHUTDOWN: u8 = 1 << 5;
    pub(crate) const EV_REMOVED: u8 = 1 << 6;
    /// Probed because its phi passed the threshold, since its last
    /// heartbeat.
    pub(crate) const PHI_PROBED: u8 = 1 << 7;
}

/// A peer's address as the table keeps it: IP and port in 19 bytes (a
/// `SocketAddr` takes 32). IPv6 flow information and scope id are not kept;
/// the wire does not carry them either, so every address the table learns
/// has them zero, and lookups ignore them.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
#[repr(C)]
pub(crate) struct PeerAddr {
    /// The IPv4 address in the first 4 bytes (the rest zero), or the IPv6
    /// address.
    ip: [u8; 16],
    port: [u8; 2],
    v6: bool,
}

impl PeerAddr {
    pub(crate) fn new(addr: &SocketAddr) -> Self {
        let mut ip = [0u8; 16];
        let v6 = match addr {
            SocketAddr::V4(a) => {
                if let Some(head) = ip.get_mut(..4) {
                    head.copy_from_slice(&a.ip().octets());
                }
                false
            }
            SocketAddr::V6(a) => {
                ip = a.ip().octets();
                true
            }
        };
        Self {
            ip,
            port: addr.port().to_le_bytes(),
            v6,
        }
    }

    pub(crate) fn get(&self) -> SocketAddr {
        let port = u16::from_le_bytes(self.port);
        if self.v6 {
            SocketAddr::from((self.ip, port))
        } else {
            let [a, b, c, d, ..] = self.ip;
            SocketAddr::from(([a, b, c, d], port))
        }
    }
}

/// One slot of the peer table: an endpoint, its state and what this node
/// thinks of its health.
///
/// Laid out by hand (`repr(C)`): the one-byte fields and the 19-byte address
/// lead, the 32-bit fields and the failure detector (aligned to 4) follow
/// with 3 bytes of padding, and the endpoint state closes the slot. With
/// [`HeapStorage`]'s default that is 136 bytes, the states inline.
#[repr(C)]
pub struct Peer<B> {
    pub(crate) slot: Slot,
    /// Alive, Suspect or Down (a peer that left is Down with
    /// [`flags::LEFT`], for good in its generation).
    pub(crate) liveness: Liveness,
    /// The liveness last reported in an event.
    pub(crate) reported: Option<Liveness>,
    pub(crate) flags: u8,
    /// Who confirmed its suspicion (see [`Claim::confirmers`]).
    pub(crate) confirmers: u8,
    /// [`doubt`] bits of the current suspicion.
    pub(crate) doubt: u8,
    pub(crate) addr: PeerAddr,
    /// Its incarnation within its generation, as known.
    pub(crate) incarnation: u32,
    /// When news of it last reached us (the node's refresh counter).
    pub(crate) stamp: u32,
    pub(crate) reported_version: Version32,
    /// The highest version of it seen anywhere (digests included).
    pub(crate) evidence: Version32,
    pub(crate) window: ArrivalWindow,
    /// Suspected since (here), down since (members); end of quarantine
    /// (quarantined).
    pub(crate) since: Instant,
    pub(crate) state: EndpointState<B>,
}

impl<B: StateBuf> Peer<B> {
    pub(crate) fn new(addr: SocketAddr, generation: Generation) -> Self {
        Self {
            addr: PeerAddr::new(&addr),
            state: EndpointState::new(generation),
            window: ArrivalWindow::default(),
            since: Instant::ZERO,
            reported_version: Version32::default(),
            evidence: Version32::default(),
            stamp: 0,
            slot: Slot::Member,
            liveness: Liveness::Alive,
            reported: None,
            flags: 0,
            confirmers: 0,
            doubt: 0,
            incarnation: 0,
        }
    }

    /// The endpoint's gossip address (its identity).
    pub fn addr(&self) -> SocketAddr {
        self.addr.get()
    }

    /// Its heartbeat and application states as this node knows them.
    pub fn state(&self) -> &EndpointState<B> {
        &self.state
    }

    /// What this node believes of it.
    pub fn liveness(&self) -> Liveness {
        if self.has_left() {
            Liveness::Left
        } else {
            self.liveness
        }
    }

    /// Whether it is believed up: alive or suspected (not yet down).
    pub fn is_alive(&self) -> bool {
        matches!(self.liveness, Liveness::Alive | Liveness::Suspect) && !self.has_left()
    }

    /// Its incarnation within its generation, as known.
    pub fn incarnation(&self) -> u32 {
        self.incarnation
    }

    /// What this node claims of it: its liveness at the incarnation known.
    pub fn claim(&self) -> Claim {
        let status = match self.liveness() {
            Liveness::Alive => Status::Alive,
            Liveness::Suspect => Status::Suspect,
            Liveness::Down => Status::Down,
            Liveness::Left => Status::Left,
        };
        Claim {
            incarnation: self.incarnation,
            status,
            confirmers: if status == Status::Suspect {
                self.confirmers
            } else {
                0
            },
        }
    }

    /// Whether its STATUS says it shut down gracefully.
    pub fn has_left(&self) -> bool {
        self.flags & flags::LEFT != 0
    }

    /// The failure detector's phi at `now` (0 before any heartbeat).
    pub fn phi(&self, now: Instant) -> f64 {
        self.window.phi(now)
    }

    /// The failure detector's mean interval between its heartbeats.
    pub fn heartbeat_interval(&self) -> Option<core::time::Duration> {
        self.window.mean()
    }

    /// When its heartbeat last advanced.
    pub fn last_heartbeat(&self) -> Option<Instant> {
        self.window.last_arrival()
    }

    /// Since when it has been down, if it is.
    pub fn down_since(&self) -> Option<Instant> {
        (self.liveness == Liveness::Down).then_some(self.since)
    }

    /// Where this node's clock for its suspicion starts, if it suspects it:
    /// when the suspicion reached it, moved on when the peer answered this
    /// node's own probe, or while a probe waited for a free slot.
    pub fn suspected_since(&self) -> Option<Instant> {
        (self.liveness == Liveness::Suspect && !self.has_left()).then_some(self.since)
    }

    pub(crate) fn is_member(&self) -> bool {
        self.slot == Slot::Member
    }

    /// Whether the STATUS value marks a graceful shutdown (`shutdown,...`).
    pub(crate) fn status_says_shutdown(&self) -> bool {
        self.state
            .get(&StateKey::Known(ApplicationState::Status))
            .is_some_and(|v| is_shutdown_status(v.value))
    }
}

/// Whether a STATUS value announces a graceful shutdown.
pub(crate) fn is_shutdown_status(value: &[u8]) -> bool {
    value.starts_with(SHUTDOWN_STATUS_PREFIX)
}

/// The STATUS value prefix of a node that shut down (Cassandra writes
/// `shutdown,true`).
pub(crate) const SHUTDOWN_STATUS_PREFIX: &[u8] = b"shutdown";

#[cfg(test)]
mod tests;
