//! Replies: the reply queue's stored SYNs and ACKs, and the ACK and ACK2
//! built from them (ranked deltas and requests within one datagram).

use super::*;

/// What the reply to a SYN or an ACK reads of it, kept in the reply queue
/// until the reply is written: the SYN's digests, ring range and filter, the
/// ACK's requests (not its deltas: they were applied on arrival). Stored as
/// a kind byte (0: SYN, 1: ACK, 2: SYN with a filter), the range (two
/// `u32`, little-endian; zeros for an ACK), the digest count and the
/// digests' length in bytes (`u32` each), the digests as validated on
/// arrival (so reading them back takes no second validation), then a
/// filter's salt and bits.
#[derive(Clone, Copy)]
pub(super) enum StoredReply<'a> {
    Syn(wire::Digests<'a>, RingRange, Option<Filter<'a>>),
    Ack(wire::Digests<'a>),
}

/// Bytes before a [`StoredReply`]'s digests.
const STORED_HEADER: usize = 17;

impl<'a> StoredReply<'a> {
    fn digests(&self) -> wire::Digests<'a> {
        match self {
            StoredReply::Syn(d, _, _) | StoredReply::Ack(d) => *d,
        }
    }

    fn filter(&self) -> Option<Filter<'a>> {
        match self {
            StoredReply::Syn(_, _, f) if cfg!(feature = "catch-up") => *f,
            _ => None,
        }
    }

    pub(super) fn stored_len(&self) -> usize {
        let filter = self.filter().map_or(0, |f| 4 + f.bits().len());
        STORED_HEADER + self.digests().as_bytes().len() + filter
    }

    /// Writes it into `out`, [`stored_len`](Self::stored_len) bytes.
    pub(super) fn store(&self, out: &mut [u8]) {
        let (kind, range) = match self {
            StoredReply::Syn(_, range, _) if self.filter().is_some() => (2u8, *range),
            StoredReply::Syn(_, range, _) => (0u8, *range),
            StoredReply::Ack(_) => (1u8, RingRange { start: 0, end: 0 }),
        };
        let digests = self.digests();
        let bytes = digests.as_bytes();
        let count = u32::try_from(digests.len()).unwrap_or(u32::MAX);
        let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
        let (head, body) = out.split_at_mut(STORED_HEADER.min(out.len()));
        let mut fields = [0u8; STORED_HEADER];
        fields[0] = kind;
        fields[1..5].copy_from_slice(&range.start.to_le_bytes());
        fields[5..9].copy_from_slice(&range.end.to_le_bytes());
        fields[9..13].copy_from_slice(&count.to_le_bytes());
        fields[13..17].copy_from_slice(&len.to_le_bytes());
        head.copy_from_slice(fields.get(..head.len()).unwrap_or(&[]));
        let (digest_part, filter_part) = body.split_at_mut(bytes.len().min(body.len()));
        digest_part.copy_from_slice(bytes.get(..digest_part.len()).unwrap_or(&[]));
        if let Some(f) = self.filter()
            && let Some((salt, bits)) = filter_part.split_first_chunk_mut::<4>()
        {
            *salt = f.salt().to_le_bytes();
            if let Some(bits) = bits.get_mut(..f.bits().len()) {
                bits.copy_from_slice(f.bits());
            }
        }
    }

    /// Reads back what [`store`](Self::store) wrote.
    pub(super) fn read(stored: &'a [u8]) -> Option<Self> {
        let (head, rest) = stored.split_first_chunk::<STORED_HEADER>()?;
        let word = |at: usize| -> Option<u32> {
            let bytes: [u8; 4] = head.get(at..at + 4)?.try_into().ok()?;
            Some(u32::from_le_bytes(bytes))
        };
        // (Without bursts no filter is stored: the digests end it.)
        let (digests, filter) = if cfg!(feature = "catch-up") {
            rest.split_at_checked(word(13)? as usize)?
        } else {
            (rest, &[][..])
        };
        let digests = wire::Digests::from_validated(digests, word(9)?);
        let range = RingRange {
            start: word(1)?,
            end: word(5)?,
        };
        match head[0] {
            0 => Some(StoredReply::Syn(digests, range, None)),
            2 if cfg!(feature = "catch-up") => {
                let (salt, bits) = filter.split_first_chunk::<4>()?;
                let filter = Filter::new(u32::from_le_bytes(*salt), bits);
                Some(StoredReply::Syn(digests, range, Some(filter)))
            }
            1 => Some(StoredReply::Ack(digests)),
            _ => None,
        }
    }
}

pub(super) struct ReplyContext<'a, S: Storage> {
    pub(super) local: SocketAddr,
    pub(super) me: &'a EndpointState<S::StateBuf>,
    pub(super) own_claim: Claim,
    pub(super) index: &'a S::Index,
    pub(super) room_for_new: bool,
    /// Slots whose application news reached us in the last rounds, newest
    /// first (none while endpoints are joining).
    #[cfg(feature = "alloc")]
    pub(super) fresh: &'a [u32],
    /// The reply's rumors.
    pub(super) rumors: &'a [Rumor],
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
type Top<S, T, const N: usize> =
    TopK<T, <S as crate::table::sealed::Containers>::Scratch<(u64, T), N>>;

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

    /// Whether it kept every item offered (none was pushed out).
    fn kept_all(&self) -> bool {
        self.offered <= self.capacity()
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
    /// Pushes `items`; all `whole` of them or none when `whole` is not 0.
    fn push_items(
        &mut self,
        addr: SocketAddr,
        generation: Generation,
        claim: Claim,
        items: crate::state::ItemsAbove<'_>,
        whole: usize,
    ) -> usize;

    /// The message's buffer size.
    fn capacity(&self) -> usize;

    /// Pushes everything of `state` above `above`, with our claim. An
    /// endpoint sent whole goes whole or not at all, so no receiver learns
    /// an endpoint without all its states; but one whose states take more
    /// than half a message, or that does not fit even first in one, goes
    /// in part (the rest follows in later exchanges, by its version).
    fn push<B: StateBuf>(
        &mut self,
        addr: SocketAddr,
        state: &EndpointState<B>,
        claim: Claim,
        above: Version,
    ) -> usize {
        // (Without the `catch-up` feature, in part as they fit.)
        let whole = if cfg!(feature = "catch-up")
            && above == Version(0)
            && state.stored_bytes() <= self.capacity() / 2
        {
            state.item_count()
        } else {
            0
        };
        self.push_items(
            addr,
            state.generation(),
            claim,
            state.items_above(above),
            whole,
        )
    }
}

macro_rules! delta_sink {
    ($writer:ident) => {
        impl DeltaSink for $writer<'_> {
            fn capacity(&self) -> usize {
                $writer::capacity(self)
            }

            fn push_items(
                &mut self,
                addr: SocketAddr,
                generation: Generation,
                claim: Claim,
                items: crate::state::ItemsAbove<'_>,
                whole: usize,
            ) -> usize {
                if whole == 0 {
                    self.push_delta(addr, generation, claim, items)
                } else if self.push_whole_delta(addr, generation, claim, items.clone(), whole) {
                    whole
                } else if self.deltas() == 0 {
                    self.push_delta(addr, generation, claim, items)
                } else {
                    0
                }
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
/// `(local_mentioned, burst)`: whether the SYN mentioned us, and whether a
/// catch-up burst carries the endpoints on its range it left out (then the
/// ACK does not, but for our own).
#[inline(never)]
pub(super) fn write_ack<S: Storage>(
    ctx: &ReplyContext<'_, S>,
    peers_ro: &[Peer<S::StateBuf>],
    syn: Syn<'_>,
    found: &Found<S>,
    (local_mentioned, burst): (bool, bool),
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
    // Our freshest news off the SYN's stretch, which it did not mention:
    // a node no member happened to send a SYN to lately learns it here,
    // since its own SYNs do not list it.
    #[cfg(feature = "alloc")]
    for &slot in ctx.fresh {
        if let Some(p) = peers_ro.get(slot as usize)
            && p.is_member()
            && p.flags & flags::MENTIONED == 0
            && !range.contains(ring_position(&p.addr()))
        {
            let c = Candidate {
                gap: TIER_NEWS,
                who: Who::Peer(slot),
                above: Version(0),
            };
            ranked.offer(c.gap, c);
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
        if burst {
            return true;
        }
        for (position, i) in ring.clockwise(range.start) {
            if position.wrapping_sub(range.start) > span {
                break;
            }
            // A filter answers before the peer is read (none without
            // bursts: see `handle_datagram`).
            if cfg!(feature = "catch-up") && syn.filter_holds(position) {
                continue;
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
    let all_ranked = ranked.kept_all();
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
pub(super) fn write_ack2<S: Storage>(
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
    // Every candidate ranked (the usual case): none to look up again.
    let all_ranked = ranked.kept_all();
    let ranked = ranked.sorted();
    write_deltas(ctx, peers, &mut w, ranked, |f| {
        if all_ranked {
            return;
        }
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
mod tests {
    extern crate std;

    use std::vec::Vec;

    use rand_core::{Rng, SeedableRng};
    use rand_xoshiro::Xoshiro256PlusPlus;

    use super::TopK;

    #[test]
    fn top_k_keeps_the_largest_keys_largest_first() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(7);
        for n in 0..40usize {
            let keys: Vec<u64> = (0..n).map(|_| rng.next_u64() % 16).collect();
            let mut top: TopK<usize, heapless::Vec<(u64, usize), 8>> = TopK::new();
            for (i, k) in keys.iter().enumerate() {
                top.offer(*k, i);
            }
            assert_eq!(top.offered, n);
            assert_eq!(top.capacity(), 8);
            let mut expected = keys.clone();
            expected.sort_unstable_by(|a, b| b.cmp(a));
            expected.truncate(8);
            let got = top.sorted();
            assert_eq!(got.iter().map(|x| x.0).collect::<Vec<_>>(), expected);
            // Each item is the one offered with its key, and none twice.
            let mut items: Vec<usize> = got.iter().map(|x| x.1).collect();
            assert!(got.iter().all(|&(k, i)| keys[i] == k));
            items.sort_unstable();
            items.dedup();
            assert_eq!(items.len(), got.len());
        }
    }
}
