//! The ring order and the ring index: order kept through inserts and
//! removals, lookups by interpolation, peers sharing a position.

use super::RingOrder;
use alloc::vec::Vec;

/// A small xorshift: the test needs many cases, not a dependency.
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

fn check<V: super::Seq<(u32, u32)> + Default>(rounds: usize, max_len: usize) {
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut order = RingOrder::<V>::default();
    let mut model: Vec<(u32, u32)> = Vec::new();
    let mut idx = 0u32;
    for _ in 0..rounds {
        // A burst of inserts (sometimes more than one merge chunk),
        // some removals, then the order is asked for.
        let inserts = (next(&mut rng) % 80) as usize;
        for _ in 0..inserts {
            if model.len() >= max_len {
                break;
            }
            // Few distinct ring positions: ties are ordered by slot.
            let entry = ((next(&mut rng) % 500) as u32, idx);
            idx += 1;
            order.insert(entry.0, entry.1);
            model.push(entry);
        }
        for _ in 0..(next(&mut rng) % 4) {
            if model.is_empty() {
                break;
            }
            let at = (next(&mut rng) % model.len() as u64) as usize;
            let e = model.swap_remove(at);
            order.remove(e.0, e.1);
        }
        model.sort_unstable();
        let view = order.view();
        assert_eq!(view.len(), model.len());
        let walked: Vec<(u32, u32)> = view.clockwise(0).collect();
        assert_eq!(walked, model);
        // From anywhere: the entries at or after it, then the rest.
        let start = (next(&mut rng) % 520) as u32;
        let split = model.partition_point(|e| e.0 < start);
        let rotated: Vec<(u32, u32)> = model[split..]
            .iter()
            .chain(&model[..split])
            .copied()
            .collect();
        assert_eq!(view.clockwise(start).collect::<Vec<_>>(), rotated);
        // The tail never outgrows the merge buffer; a fixed order has none.
        let tail = order.entries.as_slice().len() - order.sorted;
        match order.entries.capacity_limit() {
            Some(_) => assert_eq!(tail, 0),
            None => assert!(tail <= super::MERGE_CHUNK),
        }
    }
}

/// Each merge's last entry is the least of its tail, and a fixed order's
/// every new entry goes to the front.
#[test]
fn ring_order_takes_descending_inserts() {
    fn descending<V: super::Seq<(u32, u32)> + Default>(n: u32) {
        let mut order = RingOrder::<V>::default();
        for k in (0..n).rev() {
            order.insert(k / 2, k);
        }
        let walked: Vec<(u32, u32)> = order.view().clockwise(0).collect();
        let expected: Vec<(u32, u32)> = (0..n).map(|k| (k / 2, k)).collect();
        assert_eq!(walked, expected);
    }
    descending::<Vec<(u32, u32)>>(1_000);
    descending::<heapless::Vec<(u32, u32), 64>>(64);
}

/// Interpolation finds what a binary search finds, for positions
/// spread evenly, bunched, equal, at the ends, in runs of any length.
#[test]
fn interpolation_finds_the_first_entry_at_or_after_a_position() {
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let shapes: [fn(u64) -> u32; 4] = [
        |r| r as u32,
        |r| 0x7000_0000 + (r % 5000) as u32,
        |_| 42,
        |r| if r % 2 == 0 { 0 } else { u32::MAX },
    ];
    for len in [0usize, 1, 2, 3, 9, 100, 5_000] {
        for shape in shapes {
            let mut run: Vec<(u32, u32)> = (0..len as u32)
                .map(|i| (shape(next(&mut rng)), i))
                .collect();
            run.sort_unstable();
            let probes = run
                .iter()
                .map(|e| e.0)
                .chain([0, 1, 41, 42, 43, u32::MAX - 1, u32::MAX])
                .chain((0..200).map(|_| next(&mut rng) as u32));
            for position in probes {
                let want = run.partition_point(|e| e.0 < position);
                assert_eq!(super::interpolate(&run, position), want, "{len} {position}");
            }
        }
    }
}

/// Peers are found by address, among others at the same ring position
/// too, in the long run and in the tail, and not after removal.
#[test]
fn ring_index_finds_peers_sharing_a_position() {
    use super::{AddrIndex, Peer, RingIndex};
    use crate::state::Generation;
    use core::net::SocketAddr;
    // Addresses spread over IPs and ports (sequential ones rarely
    // collide under FNV-1a).
    let addr = |i: u32| {
        let mut x = u64::from(i) + 1;
        let r = next(&mut x) ^ next(&mut x);
        SocketAddr::from(((r as u32).to_be_bytes(), (r >> 32) as u16))
    };
    // Two addresses with one ring position (a 32-bit hash: a birthday
    // search finds a pair among a few hundred thousand).
    let mut seen = alloc::collections::BTreeMap::new();
    let (a, b) = (0..1_000_000u32)
        .find_map(|i| {
            seen.insert(crate::wire::ring_position(&addr(i)), i)
                .map(|j| (j, i))
        })
        .unwrap();
    let mut order: Vec<u32> = (0..3_000).filter(|i| *i != a && *i != b).collect();
    order.insert(10, a);
    // The second of the pair among the last inserted: in the tail.
    order.push(b);
    let peers: Vec<Peer<heapless::Vec<u8, 8>>> = order
        .iter()
        .map(|i| Peer::new(addr(*i), Generation(1)))
        .collect();
    let mut index = RingIndex::<Vec<(u32, u32)>>::default();
    for slot in 0..peers.len() as u32 {
        index.insert(slot, &peers);
    }
    for (slot, i) in order.iter().enumerate() {
        assert_eq!(index.find(&addr(*i), &peers), Some(slot as u32), "{i}");
    }
    assert_eq!(index.find(&addr(2_000_000), &peers), None);
    let strangers = [addr(2_000_000), addr(2_000_001)];
    assert_finds_each(&index, &peers, &strangers);
    let last = peers.len() as u32 - 1;
    index.remove(last, &peers);
    assert_eq!(index.find(&addr(b), &peers), None);
    assert_eq!(index.find(&addr(a), &peers), Some(10));
    assert_finds_each(&index, &peers, &strangers);

    // Both of the pair in the long run, the later one second at its
    // position; and a fixed-capacity index (scanned).
    let mut order: Vec<u32> = (0..1_000).filter(|i| *i != a && *i != b).collect();
    order.insert(10, a);
    order.insert(20, b);
    let peers: Vec<Peer<heapless::Vec<u8, 8>>> = order
        .iter()
        .map(|i| Peer::new(addr(*i), Generation(1)))
        .collect();
    let mut index = RingIndex::<Vec<(u32, u32)>>::default();
    let mut fixed = RingIndex::<heapless::Vec<(u32, u32), 1024>>::default();
    for slot in 0..peers.len() as u32 {
        index.insert(slot, &peers);
        fixed.insert(slot, &peers);
    }
    assert_eq!(index.find(&addr(b), &peers), Some(20));
    assert_finds_each(&index, &peers, &strangers);
    // The scan answers as the ring does.
    let mut scanned: Vec<(u32, SocketAddr)> = order.iter().map(|i| (0, addr(*i))).collect();
    let mut ringed = scanned.clone();
    fixed.find_each(&mut scanned, |a| a, &peers);
    index.find_each(&mut ringed, |a| a, &peers);
    assert_eq!(scanned, ringed);
    // An empty index finds nothing.
    let empty = RingIndex::<Vec<(u32, u32)>>::default();
    assert_finds_each(&empty, &peers[..0], &strangers);
}

/// `find_each` answers as `find` does, for every peer in `peers` and
/// for `strangers`.
fn assert_finds_each<I: super::AddrIndex, B>(
    index: &I,
    peers: &[super::Peer<B>],
    strangers: &[core::net::SocketAddr],
) {
    let mut items: Vec<(u32, core::net::SocketAddr)> = peers
        .iter()
        .map(|p| p.addr.get())
        .chain(strangers.iter().copied())
        .map(|a| (0, a))
        .collect();
    index.find_each(&mut items, |a| a, peers);
    for (slot, a) in &items {
        let want = index.find(a, peers).unwrap_or(super::NOT_FOUND);
        assert_eq!(*slot, want, "{a}");
    }
}

#[test]
fn ring_order_stays_in_order_through_inserts_and_removals() {
    check::<Vec<(u32, u32)>>(300, 5_000);
    check::<heapless::Vec<(u32, u32), 64>>(300, 64);
}
