//! Catching up: a far-behind SYN gets a paced, bounded burst of whole
//! endpoints, and its sender resumes where the burst got to; a member whose
//! membership summary differs gets a SYN over the segment that differs.

use super::*;
use crate::wire::{CatchUp, RingRange};

/// One of many members: 127.1.x.y.
fn many(i: usize) -> SocketAddr {
    SocketAddr::from(([127, 1, (i / 256) as u8, (i % 256) as u8], 7000))
}

fn big_config() -> Config {
    let mut c = config();
    c.max_peers = 8192;
    c
}

/// A node knowing `total` members (`many(0..total)`).
fn knowing(c: Config, total: usize, now: Instant) -> HeapNode {
    let mut a: HeapNode = lone(c, now);
    let members: Vec<SocketAddr> = (0..total).map(many).collect();
    learn_alive(&mut a, now, &members);
    while a.poll_event().is_some() {}
    a
}

/// A SYN from `from` into `buf`, its own digest written.
fn own_syn(buf: &mut [u8], from: SocketAddr) -> SynWriter<'_> {
    let header = Header {
        cluster: CLUSTER,
        sender: from,
    };
    let mut w = SynWriter::new(buf, &header, &[]).unwrap();
    assert!(w.push(&GossipDigest {
        endpoint: from,
        generation: Generation(GEN),
        max_version: Version(1),
        claim: Claim::alive(0),
    }));
    w
}

/// A SYN from `from` listing only its own digest, over `range`.
fn bare_syn(from: SocketAddr, range: RingRange) -> Vec<u8> {
    let mut buf = vec![0u8; 1400];
    let n = own_syn(&mut buf, from).finish(range);
    buf.truncate(n);
    buf
}

/// Everything `a` sends to `to` from `now` until `until`, polled at each
/// deadline: (when, bytes).
fn sent_until(
    a: &mut HeapNode,
    mut now: Instant,
    until: Instant,
    to: SocketAddr,
) -> Vec<(Instant, Vec<u8>)> {
    let mut out = Vec::new();
    for _ in 0..10_000 {
        while let Some((dest, bytes)) = poll(a, now) {
            if dest == to {
                out.push((now, bytes));
            }
        }
        let Some(next) = a.poll_timeout() else { break };
        if next > until {
            break;
        }
        now = next.max(now);
        a.handle_timeout(now);
    }
    out
}

fn catch_ups(sent: &[(Instant, Vec<u8>)]) -> Vec<(Instant, CatchUp<'_>)> {
    sent.iter()
        .filter_map(|(t, b)| match decoded(b) {
            Message::CatchUp(c) => Some((*t, c)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_far_behind_syn_gets_a_paced_bounded_burst_in_ring_order() {
    let c = big_config();
    let interval = c.gossip_interval;
    let budget = usize::from(c.catch_up_datagrams);
    let now = Instant::from_millis(1000);
    let mut a = knowing(c, 5000, now);
    let joiner = addr(7);
    a.handle_datagram(now, joiner, &bare_syn(joiner, RingRange::WHOLE));
    let sent = sent_until(&mut a, now, now + interval / 2, joiner);
    let bursts = catch_ups(&sent);
    // A quarter of the round's budget, each datagram in bounds.
    assert_eq!(bursts.len(), budget / 4);
    assert!(sent.iter().all(|(_, b)| b.len() <= 1400));
    // Paced: never two within the spacing.
    // (Instants count microseconds.)
    let spacing = interval / budget as u32 - Duration::from_micros(1);
    for pair in bursts.windows(2) {
        assert!(
            pair[1].0 - pair[0].0 >= spacing,
            "{:?} {:?}",
            pair[0].0,
            pair[1].0
        );
    }
    // In ring order from the range's start, each endpoint once; only the
    // last asks for more, and says where to resume.
    let mut positions = Vec::new();
    for (i, (_, b)) in bursts.iter().enumerate() {
        assert_eq!(b.more, i + 1 == bursts.len());
        let first_next = b.deltas.map(|d| wire::ring_position(&d.endpoint));
        positions.extend(first_next);
    }
    assert!(positions.windows(2).all(|w| w[0] < w[1]));
    let last = bursts.last().unwrap().1;
    assert!(positions.iter().all(|&p| p < last.next));
    let sent_count = positions.len();
    let skipped = (0..5000)
        .map(|i| wire::ring_position(&many(i)))
        .filter(|&p| p < last.next)
        .count();
    assert_eq!(sent_count, skipped, "every endpoint before `next` was sent");
    assert_eq!(a.stats().catch_up_bursts, 1);
    assert_eq!(a.stats().sent(Kind::CatchUp), bursts.len() as u64);
}

#[test]
fn one_peer_gets_one_burst_at_a_time_and_half_the_round_at_most() {
    let c = big_config();
    let interval = c.gossip_interval;
    let budget = usize::from(c.catch_up_datagrams);
    let now = Instant::from_millis(1000);
    let mut a = knowing(c, 5000, now);
    a.handle_timeout(now);
    let joiner = addr(7);
    let syn = bare_syn(joiner, RingRange::WHOLE);
    // Two far-behind SYNs at once: one burst; the second SYN gets its ACK.
    let mut sent = Vec::new();
    for k in 1..=2 {
        let t = now + Duration::from_millis(k);
        a.handle_datagram(t, joiner, &syn);
        sent.extend(sent_until(&mut a, t, t, joiner));
    }
    let acks = |sent: &[(Instant, Vec<u8>)]| {
        sent.iter()
            .filter(|(_, b)| matches!(decoded(b), Message::Ack(_)))
            .count()
    };
    assert_eq!(acks(&sent), 2, "every SYN is answered");
    let t = now + Duration::from_millis(2);
    let end = now + interval * 2 / 5;
    sent.extend(sent_until(&mut a, t, end, joiner));
    assert_eq!(catch_ups(&sent).len(), budget / 4);
    assert_eq!(a.stats().catch_up_bursts, 1);
    // Once it is over, another: then half the round's budget is spent,
    // and a third SYN this round gets an ACK alone.
    for k in 0..2 {
        let t = end + interval * k / 5;
        a.handle_datagram(t, joiner, &syn);
        sent.extend(sent_until(&mut a, t, t + interval / 5, joiner));
    }
    assert_eq!(catch_ups(&sent).len(), budget / 2);
    assert_eq!(a.stats().catch_up_bursts, 2);
    assert_eq!(acks(&sent), 4);
}

#[test]
fn a_joiner_catches_up_in_a_round_with_bursts_and_not_without() {
    let members = 1500;
    let known_after = |catch_up: u16| {
        let mut c = big_config();
        c.catch_up_datagrams = catch_up;
        let mut now = Instant::from_millis(1000);
        let mut a = knowing(c.clone(), members, now);
        let mut j: HeapNode = Node::new(
            c,
            addr(7),
            Generation(GEN),
            &[addr(0)],
            Xoshiro256PlusPlus::seed_from_u64(3),
            now,
        )
        .unwrap();
        // One round and a half of A and J alone (A's SYNs to its other
        // members go nowhere).
        let end = now + Duration::from_millis(1500);
        for _ in 0..100_000 {
            if now > end {
                break;
            }
            j.handle_timeout(now);
            a.handle_timeout(now);
            let mut moved = true;
            while moved {
                moved = false;
                while let Some((to, bytes)) = poll(&mut j, now) {
                    moved = true;
                    if to == addr(0) {
                        a.handle_datagram(now, addr(7), &bytes);
                    }
                }
                while let Some((to, bytes)) = poll(&mut a, now) {
                    moved = true;
                    if to == addr(7) {
                        j.handle_datagram(now, addr(0), &bytes);
                    }
                }
            }
            let next = [j.poll_timeout(), a.poll_timeout()]
                .into_iter()
                .flatten()
                .min()
                .unwrap();
            now = next.max(now + Duration::from_micros(100));
        }
        j.endpoint_count()
    };
    let with = known_after(128);
    let without = known_after(0);
    // Everyone A knows, A itself included.
    assert_eq!(with, members + 1);
    assert!(without < members / 4, "without bursts J knew {without}");
}

#[cfg(feature = "auth")]
#[test]
fn an_authenticated_cluster_bursts_only_to_members() {
    use crate::auth::{Key, Keyring};
    let key = Key::new([5; 32]);
    let seal = |bytes: &[u8], seq: u64| sealed(bytes, &key, seq);
    let c = big_config();
    let now = Instant::from_millis(1000);
    let mut a = knowing(c, 5000, now);
    a.set_keyring(Some(Keyring::new(key.clone())));
    a.handle_timeout(now);
    // A sealed SYN from a stranger (with the key, say a node not yet
    // admitted): answered, but with no burst.
    let stranger = addr(7);
    let seq = crate::auth::first_seq(GEN);
    a.handle_datagram(
        now,
        stranger,
        &seal(&bare_syn(stranger, RingRange::WHOLE), seq),
    );
    let sent = sent_until(&mut a, now, now + Duration::from_millis(300), stranger);
    assert!(!sent.is_empty());
    assert!(catch_ups(&sent).is_empty());
    assert_eq!(a.stats().catch_up_bursts, 0);
    // The same from a member gets one.
    let m = many(3);
    let t = now + Duration::from_millis(300);
    a.handle_datagram(t, m, &seal(&bare_syn(m, RingRange::WHOLE), seq));
    let sent = sent_until(&mut a, t, t + Duration::from_millis(300), m);
    assert!(!catch_ups(&sent).is_empty());
    // Replayed, it is dropped before any reply.
    let t = t + Duration::from_millis(300);
    a.handle_datagram(t, m, &seal(&bare_syn(m, RingRange::WHOLE), seq));
    assert_eq!(a.stats().last_drop, Some(DropReason::Replayed));
    assert_eq!(a.stats().catch_up_bursts, 1);
}

/// A CATCH-UP from `from` carrying `endpoint`, asking for more at `next`.
fn catch_up_from(from: SocketAddr, endpoint: SocketAddr, next: u32) -> Vec<u8> {
    let header = Header {
        cluster: CLUSTER,
        sender: from,
    };
    let mut buf = vec![0u8; 1400];
    let mut w = crate::wire::CatchUpWriter::new(&mut buf, &header, &[]).unwrap();
    w.push_delta(
        endpoint,
        Generation(GEN),
        Claim::alive(0),
        [DeltaItem::Heartbeat(Version(3))],
    );
    let n = w.finish(next, true);
    buf.truncate(n);
    buf
}

#[test]
fn a_catch_up_moves_the_stretch_and_asks_again_only_from_a_member() {
    let now = Instant::from_millis(1000);
    let mut a = knowing(big_config(), 10, now);
    a.handle_timeout(now);
    while poll(&mut a, now).is_some() {}
    // From a stranger: its endpoints are taken, as any delta is, but it
    // neither moves the stretch nor gets a SYN.
    let cursor = a.ring_cursor;
    let stranger = addr(7);
    a.handle_datagram(now, stranger, &catch_up_from(stranger, many(100), 12345));
    assert!(a.endpoint(&many(100)).is_some());
    assert_eq!(a.ring_cursor, cursor);
    assert!(poll(&mut a, now).is_none());
    // From a member: the next SYN goes to it at once, from `next`.
    let m = many(2);
    a.handle_datagram(now, m, &catch_up_from(m, many(101), 12345));
    let (to, syn) = poll(&mut a, now).expect("a SYN");
    assert_eq!(to, m);
    let Message::Syn(syn) = decoded(&syn) else {
        panic!("not a SYN");
    };
    assert_eq!(syn.range.start, 12345);
}

/// The summary `node` should have: itself and every member it knows.
fn recomputed(node: &HeapNode) -> wire::Summary {
    let mut s = wire::Summary::default();
    s.add(wire::ring_position(&node.local_addr()));
    for p in node.endpoints() {
        s.add(wire::ring_position(&p.addr()));
    }
    s
}

#[test]
fn a_member_whose_summary_differs_gets_a_sync_that_finds_the_missing_endpoint() {
    let c = big_config();
    let now = Instant::from_millis(1000);
    let total = 3000;
    let mut r = knowing(c.clone(), total, now);
    r.handle_timeout(now);
    while poll(&mut r, now).is_some() {}
    let missing = many(855);
    let x_addr = many(2999);
    let others: Vec<SocketAddr> = (0..total - 1).map(many).filter(|a| *a != missing).collect();
    let mut x: HeapNode = Node::new(
        c,
        x_addr,
        Generation(GEN),
        &[],
        Xoshiro256PlusPlus::seed_from_u64(3),
        now,
    )
    .unwrap();
    // X learns everyone but `missing` (and R, node 0, which its SYN is to).
    learn_alive(&mut x, now, &others);
    learn_alive(&mut x, now, &[addr(0)]);
    while x.poll_event().is_some() {}
    x.recent.clear();
    assert_eq!(*x.summary(), recomputed(&x));
    assert_eq!(*r.summary(), recomputed(&r));
    // X's SYN covers some other stretch; its summary tells R the rest.
    let mut buf = vec![0u8; 1400];
    let n = x.write_syn(&mut buf, addr(0), None, false);
    let Message::Syn(syn) = decoded(&buf[..n]) else {
        panic!("not a SYN");
    };
    assert!(!syn.range.contains(wire::ring_position(&missing)));
    r.handle_datagram(now, x_addr, &buf[..n]);
    // One segment differs: one sync (not one per search around the ring).
    assert_eq!(r.stats().summary_syncs, 1);
    // Run the two until quiet: the sync's exchange brings `missing` to X.
    for _ in 0..20 {
        let mut moved = false;
        while let Some((to, bytes)) = poll(&mut r, now) {
            if to == x_addr {
                moved = true;
                x.handle_datagram(now, addr(0), &bytes);
            }
        }
        while let Some((to, bytes)) = poll(&mut x, now) {
            if to == addr(0) {
                moved = true;
                r.handle_datagram(now, x_addr, &bytes);
            }
        }
        if !moved {
            break;
        }
    }
    assert!(x.endpoint(&missing).is_some(), "the sync found it");
    assert!(r.stats().summary_syncs >= 1);
    assert_eq!(*x.summary(), recomputed(&x));

    // A stranger's SYN, summary and all, gets its ACK and no sync.
    let syncs = r.stats().summary_syncs;
    let stranger = addr(9);
    let mut buf = vec![0u8; 1400];
    let header = Header {
        cluster: CLUSTER,
        sender: stranger,
    };
    let w = SynWriter::with_summary(&mut buf, &header, &[], &wire::Summary::default()).unwrap();
    let n = w.finish(RingRange { start: 0, end: 0 });
    r.handle_datagram(now, stranger, &buf[..n]);
    while poll(&mut r, now).is_some() {}
    assert_eq!(r.stats().summary_syncs, syncs);
}

#[test]
fn syncs_spread_over_the_members_whose_summaries_differ() {
    let c = big_config();
    let now = Instant::from_millis(1000);
    let mut r = knowing(c.clone(), 3000, now);
    r.handle_timeout(now);
    while poll(&mut r, now).is_some() {}
    // More members than the round's syncs, each knowing nothing: every
    // segment differs.
    let syn_from = |sender: SocketAddr| {
        let mut buf = vec![0u8; 1400];
        let header = Header {
            cluster: CLUSTER,
            sender,
        };
        let w = SynWriter::with_summary(&mut buf, &header, &[], &wire::Summary::default()).unwrap();
        let n = w.finish(RingRange { start: 0, end: 0 });
        buf.truncate(n);
        buf
    };
    let mut synced = std::collections::BTreeMap::new();
    let per_round = r.syncs_per_round();
    let members = per_round / SYNCS_PER_SYN + 4;
    for i in 1..=members {
        let m = many(i);
        r.handle_datagram(now, m, &syn_from(m));
        while let Some((to, bytes)) = poll(&mut r, now) {
            if matches!(decoded(&bytes), Message::Syn(_)) {
                *synced.entry(to).or_insert(0) += 1;
            }
        }
    }
    // `SYNCS_PER_SYN` SYNs to each of the first members, then the round's
    // are spent.
    assert_eq!(r.stats().summary_syncs, per_round as u64);
    assert_eq!(synced.len(), per_round / SYNCS_PER_SYN, "{synced:?}");
    assert!(synced.values().all(|&n| n == SYNCS_PER_SYN), "{synced:?}");
    // The next round has as many more.
    let later = now + c.gossip_interval * 2;
    r.handle_timeout(later);
    while poll(&mut r, later).is_some() {}
    let m = many(members + 1);
    r.handle_datagram(later, m, &syn_from(m));
    assert_eq!(r.stats().summary_syncs, (per_round + SYNCS_PER_SYN) as u64);
}

#[test]
fn syncs_are_budgeted_by_the_second() {
    let now = Instant::from_millis(1000);
    let per_round = |ms: u64| {
        let mut c = big_config();
        c.gossip_interval = Duration::from_millis(ms);
        lone::<HeapStorage>(c, now).syncs_per_round()
    };
    assert_eq!(per_round(1000), SYNCS_PER_ROUND);
    assert_eq!(per_round(5000), SYNCS_PER_ROUND);
    assert_eq!(per_round(500), SYNCS_PER_ROUND / 2);
    assert_eq!(per_round(100), SYNCS_PER_ROUND / 10);
    // Never none: a short round still repairs.
    assert_eq!(per_round(10), 1);
}

#[test]
fn an_endpoint_too_large_to_go_whole_goes_in_part() {
    // A learns E with 2,400 bytes of states (through a large datagram);
    // its replies fit 1,400 bytes.
    let mut c = big_config();
    c.max_datagram_size = 8000;
    let now = Instant::from_millis(1000);
    let mut a = knowing(c, 3, now);
    let e = many(100);
    let header = Header {
        cluster: CLUSTER,
        sender: addr(1),
    };
    let value = [b'x'; 300];
    let mut buf = vec![0u8; 8000];
    let mut w = Ack2Writer::new(&mut buf, &header, &[]).unwrap();
    let items: Vec<DeltaItem<'_>> = (1..=8u64)
        .map(|v| {
            DeltaItem::State(
                StateKey::Unknown(200 + v as u16),
                VersionedValue {
                    version: Version(v),
                    value: &value,
                },
            )
        })
        .chain([DeltaItem::Heartbeat(Version(9))])
        .collect();
    assert_eq!(w.push_delta(e, Generation(GEN), Claim::alive(0), items), 9);
    let n = w.finish();
    a.handle_datagram(now, addr(1), &buf[..n]);
    assert_eq!(a.endpoint(&e).unwrap().state().len(), 8);
    while a.poll_event().is_some() {}
    // J asks for everything on the whole ring: E goes, in part.
    let j = addr(7);
    a.handle_datagram(now, j, &bare_syn(j, RingRange::WHOLE));
    let mut got = 0;
    while let Some((to, bytes)) = poll(&mut a, now) {
        if to == j
            && let Message::Ack(k) = decoded(&bytes)
        {
            got += k
                .deltas
                .filter(|d| d.endpoint == e)
                .map(|d| d.delta.entries.len())
                .sum::<usize>();
        }
    }
    assert!(got > 0 && got < 8, "{got} of E's 8 states");
}

/// A sync's SYN from `from` over `range`, with a filter holding `known`.
fn filter_syn(from: SocketAddr, range: RingRange, known: &[SocketAddr]) -> Vec<u8> {
    let mut buf = vec![0u8; 1400];
    let mut w = own_syn(&mut buf, from);
    let len = w.reserve_filter(wire::MAX_FILTER_BYTES);
    let mut bits = vec![0u8; len];
    for a in known {
        wire::filter_insert(&mut bits, 99, wire::ring_position(a));
    }
    let n = w.finish_with_filter(range, Some(wire::Filter::new(99, &bits)));
    buf.truncate(n);
    buf
}

#[test]
fn a_filter_syn_gets_a_burst_of_what_its_filter_lacks() {
    let c = big_config();
    let interval = c.gossip_interval;
    let now = Instant::from_millis(1000);
    let total = 3000;
    let mut a = knowing(c, total, now);
    a.handle_timeout(now);
    while poll(&mut a, now).is_some() {}
    // A tenth of the ring: about 300 members, the joiner knows two in three.
    let range = RingRange {
        start: 0x4000_0000,
        end: 0x5999_9999,
    };
    let on_range: Vec<SocketAddr> = (0..total)
        .map(many)
        .filter(|m| range.contains(wire::ring_position(m)))
        .collect();
    let (known, lacking): (Vec<_>, Vec<_>) =
        on_range.iter().enumerate().partition(|(i, _)| i % 3 != 0);
    let known: Vec<SocketAddr> = known.into_iter().map(|(_, m)| *m).collect();
    let mut lacking: Vec<SocketAddr> = lacking.into_iter().map(|(_, m)| *m).collect();
    // The joiner is a member on the range: its filter does not hold
    // itself, its digest mentions it, and the burst leaves it out.
    let joiner = lacking.remove(0);
    a.handle_datagram(now, joiner, &filter_syn(joiner, range, &known));
    let sent = sent_until(&mut a, now, now + interval / 2, joiner);
    // The ACK leaves them to the burst (it may answer the joiner's own
    // digest, which is older than what we know of it).
    let acked: usize = sent
        .iter()
        .filter_map(|(_, b)| match decoded(b) {
            Message::Ack(ack) => Some(
                ack.deltas
                    .filter(|d| d.endpoint != a.local_addr() && d.endpoint != joiner)
                    .count(),
            ),
            _ => None,
        })
        .sum();
    assert_eq!(acked, 0);
    let bursts = catch_ups(&sent);
    let got: Vec<SocketAddr> = bursts
        .iter()
        .flat_map(|(_, b)| b.deltas.map(|d| d.endpoint))
        .collect();
    // Nothing the filter holds, nothing off the range, each once.
    assert!(
        got.iter()
            .all(|m| !known.contains(m) && range.contains(wire::ring_position(m)))
    );
    let mut unique = got.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), got.len());
    // All it lacks but the filter's few false positives (about 1 %).
    assert!(!got.contains(&joiner), "its own state sent back");
    assert!(got.iter().all(|m| lacking.contains(m)));
    assert!(
        got.len() * 100 >= lacking.len() * 95,
        "{} of {}",
        got.len(),
        lacking.len()
    );
    // The range was covered: the last datagram says so, and asks for no
    // more (the joiner lacked a third of it, not most).
    let last = bursts.last().unwrap().1;
    assert!(!last.more);
    assert_eq!(last.next, range.end.wrapping_add(1));
}

#[test]
fn a_sync_covers_a_stretch_by_a_filter_past_what_this_round_covered() {
    let c = big_config();
    let now = Instant::from_millis(1000);
    let total = 3000;
    let mut a = knowing(c, total, now);
    a.handle_timeout(now);
    while poll(&mut a, now).is_some() {}
    let (p, q) = (many(1), many(2));
    let start = 0x2000_0000;
    a.syncs.clear();
    let _ = a.syncs.push((p, start, true));
    let _ = a.syncs.push((q, start, true));
    let mut syns = Vec::new();
    while let Some((to, bytes)) = poll(&mut a, now) {
        if let Message::Syn(s) = decoded(&bytes) {
            syns.push((to, s.range, s.filter.map(|f| (f.salt(), f.bits().to_vec()))));
        }
    }
    assert_eq!(syns.len(), 2);
    let positions: Vec<u32> = (0..total).map(|i| wire::ring_position(&many(i))).collect();
    let mut ends = Vec::new();
    for (_, range, filter) in &syns {
        let (salt, bits) = filter.as_ref().expect("a sync's SYN carries a filter");
        let f = wire::Filter::new(*salt, bits);
        // Everything we know on the range is in it, and the range holds
        // as many as its bits cover.
        let on: Vec<u32> = positions
            .iter()
            .copied()
            .filter(|&x| range.contains(x))
            .collect();
        assert!(on.iter().all(|&x| f.contains(x)));
        assert_eq!(on.len(), bits.len() * 8 / wire::FILTER_BITS_PER_ENDPOINT);
        ends.push(range.end);
    }
    // The first starts where asked; the second (same start, same round)
    // where the first ended, and a new round starts over.
    assert_eq!(syns[0].1.start, start);
    assert_eq!(syns[1].1.start, ends[0].wrapping_add(1));
    // A burst that ran out of datagrams inside the first filter's range
    // asks for the next filter from where it got to, not past the range.
    let inside = syns[0].1.start.wrapping_add(1000);
    a.handle_datagram(now, p, &catch_up_from(p, many(4000), inside));
    let mut resumed = None;
    while let Some((to, bytes)) = poll(&mut a, now) {
        if let Message::Syn(s) = decoded(&bytes)
            && to == p
        {
            resumed = Some((s.range.start, s.filter.is_some()));
        }
    }
    assert_eq!(resumed, Some((inside, true)));
    let next_round = now + a.config.gossip_interval * 2;
    a.handle_timeout(next_round);
    a.syncs.clear();
    let _ = a.syncs.push((p, start, true));
    let mut again = None;
    while let Some((_, bytes)) = poll(&mut a, next_round) {
        if let Message::Syn(s) = decoded(&bytes)
            && s.filter.is_some()
        {
            again = Some(s.range.start);
        }
    }
    assert_eq!(again, Some(start));
}

#[test]
fn a_far_apart_member_gets_a_filter_and_a_close_one_digests() {
    let c = big_config();
    let now = Instant::from_millis(1000);
    let total = 3000;
    let sync_from = |known: usize| -> Option<bool> {
        let mut r = knowing(c.clone(), total, now);
        r.handle_timeout(now);
        while poll(&mut r, now).is_some() {}
        // X knows `known` of R's members, R among them.
        let x_addr = many(total - 1);
        let mut x = knowing(c.clone(), known, now);
        learn_alive(&mut x, now, &[addr(0)]);
        while x.poll_event().is_some() {}
        let mut buf = vec![0u8; 1400];
        let x_syn = {
            let header = Header {
                cluster: CLUSTER,
                sender: x_addr,
            };
            let w = SynWriter::with_summary(&mut buf, &header, &[], x.summary()).unwrap();
            let n = w.finish(RingRange { start: 0, end: 0 });
            buf[..n].to_vec()
        };
        // X is a member of R's table: `many(total - 1)`.
        r.handle_datagram(now, x_addr, &x_syn);
        let mut sync = None;
        while let Some((to, bytes)) = poll(&mut r, now) {
            if to == x_addr
                && let Message::Syn(s) = decoded(&bytes)
            {
                sync = Some(s.filter.is_some());
            }
        }
        sync
    };
    // Every segment differs: a filter.
    assert_eq!(sync_from(100), Some(true));
    // A few differ: digests.
    assert_eq!(sync_from(total - 3), Some(false));
}
