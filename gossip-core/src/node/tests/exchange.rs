//! The anti-entropy exchange: the stretch of the ring a SYN covers and the
//! round's sweep over a large table, what an ACK sends of the stretch, and
//! what it pushes beside what its SYN asked about.

use super::*;
use crate::state::DeltaItem;
use crate::wire::RingRange;

/// A node that knows 50 members, rounds after they joined, and the time.
fn settled() -> (HeapNode, Instant) {
    let now = Instant::from_millis(1000);
    let mut a = with_members(config(), 50, now);
    // Rounds go by: the members are no longer joining.
    let now = rounds(&mut a, now, 5);
    (a, now)
}

/// `rounds` rounds later.
fn rounds(a: &mut HeapNode, mut now: Instant, rounds: u32) -> Instant {
    for _ in 0..rounds {
        now = now + config().gossip_interval;
        a.handle_timeout(now);
        while poll(a, now).is_some() {}
    }
    while a.poll_event().is_some() {}
    now
}

/// `a` learns from node 1 that `endpoint` set its `load` (version 4 and on).
fn learn_news(a: &mut HeapNode, now: Instant, endpoint: SocketAddr, version: u64) {
    let header = Header {
        cluster: CLUSTER,
        sender: addr(1),
    };
    let mut buf = vec![0u8; 1400];
    let mut w = Ack2Writer::new(&mut buf, &header, &[]).unwrap();
    w.push_delta(
        endpoint,
        Generation(GEN),
        Claim::alive(0),
        [DeltaItem::State(
            StateKey::parse("load"),
            VersionedValue {
                version: Version(version),
                value: b"0.9",
            },
        )],
    );
    let n = w.finish();
    a.handle_datagram(now, addr(1), &buf[..n]);
}

/// [`settled`], with news of member 30 just learned.
fn with_news() -> (HeapNode, SocketAddr, Instant) {
    let (mut a, now) = settled();
    let news = member(30);
    learn_news(&mut a, now, news, 4);
    (a, news, now)
}

/// The ACK `a` answers `from`'s SYN with, if any; the SYN lists `from`
/// itself and `mentioned` (at their version 4), over `from`'s position
/// alone.
fn ack_to(
    a: &mut HeapNode,
    from: SocketAddr,
    mentioned: &[SocketAddr],
    now: Instant,
) -> Option<Vec<u8>> {
    let header = Header {
        cluster: CLUSTER,
        sender: from,
    };
    let mut buf = vec![0u8; 1400];
    let mut w = SynWriter::new(&mut buf, &header, &[]).unwrap();
    for &endpoint in [from].iter().chain(mentioned) {
        assert!(w.push(&GossipDigest {
            endpoint,
            generation: Generation(GEN),
            max_version: Version(if endpoint == from { 3 } else { 4 }),
            claim: Claim::alive(0),
        }));
    }
    let position = wire::ring_position(&from);
    let n = w.finish(RingRange {
        start: position,
        end: position,
    });
    a.handle_datagram(now, from, &buf[..n]);
    let (to, ack) = poll(a, now)?;
    assert_eq!(to, from);
    Some(ack)
}

/// An endpoint's delta: its states' keys and values.
type Delta = (SocketAddr, Vec<(String, Vec<u8>)>);

/// The endpoints an ACK has deltas of.
fn deltas(ack: Option<Vec<u8>>) -> Vec<Delta> {
    let Some(ack) = ack else {
        return Vec::new();
    };
    let Message::Ack(k) = decoded(&ack) else {
        panic!("expected ACK")
    };
    k.deltas
        .map(|d| {
            let states = d
                .delta
                .entries
                .map(|(key, v)| (format!("{key:?}"), v.value.to_vec()))
                .collect();
            (d.endpoint, states)
        })
        .collect()
}

/// The endpoints `a` pushes news of in its ACK to a SYN from member 7 that
/// mentions nothing but member 7.
fn pushed(a: &mut HeapNode, now: Instant) -> Vec<SocketAddr> {
    deltas(ack_to(a, member(7), &[], now))
        .into_iter()
        .map(|d| d.0)
        .collect()
}

/// A SYN that does not list a member's fresh news (its sender's stretch
/// lies elsewhere) gets it in the ACK all the same, whole: a node no member
/// sends a SYN to for a while still learns news through its own exchanges.
#[test]
#[cfg(feature = "alloc")]
fn an_ack_carries_fresh_news_its_syn_did_not_list() {
    let (mut a, news, now) = with_news();
    let got = deltas(ack_to(&mut a, member(7), &[], now));
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].0, news);
    assert!(got[0].1.iter().any(|(_, value)| value == b"0.9"), "{got:?}");
}

/// News the SYN shows its sender has already is not pushed again.
#[test]
#[cfg(feature = "alloc")]
fn an_ack_does_not_push_news_its_syn_has() {
    let (mut a, news, now) = with_news();
    assert_eq!(deltas(ack_to(&mut a, member(7), &[news], now)), []);
}

/// News stays fresh for the rest of its round and the next: the ACKs of
/// the next round push it too.
#[test]
#[cfg(feature = "alloc")]
fn an_ack_pushes_news_of_the_round_before() {
    let (mut a, news, now) = with_news();
    let now = rounds(&mut a, now, 1);
    assert_eq!(pushed(&mut a, now), [news]);
}

/// News goes stale: two rounds later, an ACK pushes none.
#[test]
#[cfg(feature = "alloc")]
fn an_ack_pushes_only_fresh_news() {
    let (mut a, _, now) = with_news();
    let now = rounds(&mut a, now, 2);
    assert_eq!(pushed(&mut a, now), []);
}

/// Older news is not pushed beside newer: only what arrived this round or
/// the one before.
#[test]
#[cfg(feature = "alloc")]
fn older_news_is_not_pushed_beside_newer() {
    let (mut a, _, now) = with_news();
    let now = rounds(&mut a, now, 2);
    let newer = member(40);
    learn_news(&mut a, now, newer, 4);
    assert_eq!(pushed(&mut a, now), [newer]);
}

/// While endpoints are joining, the ACKs push no news.
#[test]
#[cfg(feature = "alloc")]
fn no_news_is_pushed_while_endpoints_join() {
    let (mut a, _, now) = with_news();
    learn_alive(&mut a, now, &[member(60)]);
    assert_eq!(pushed(&mut a, now), []);
}

#[test]
fn a_syn_covers_half_the_ring_so_two_sweep_it() {
    let mut c = config();
    c.max_datagram_size = 8000;
    let now = Instant::from_millis(1000);
    let total = 200;
    let mut a = with_members(c, total, now);
    // No fresh news: the SYNs are our digest and their stretch.
    a.recent.clear();
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..2 {
        let mut buf = vec![0u8; 8000];
        let n = a.write_syn(&mut buf, member(0), None, false);
        let Message::Syn(syn) = decoded(&buf[..n]) else {
            panic!("not a SYN");
        };
        let listed: Vec<SocketAddr> = syn
            .digests
            .map(|d| d.endpoint)
            .filter(|e| *e != addr(0))
            .collect();
        assert_eq!(listed.len(), total / 2);
        seen.extend(listed);
    }
    assert_eq!(seen.len(), total);
}

#[test]
fn the_round_sweep_covers_a_large_table_a_bounded_stretch_at_a_time() {
    let mut c = config();
    c.removal_delay = Duration::from_secs(10);
    let start = Instant::from_millis(1000);
    let total = 200;
    let mut a = with_members(c, total, start);
    assert_eq!(a.endpoint_count(), total);
    // Every one of them down (as if convicted here).
    for i in 0..total {
        let idx = a.index.find(&member(i), a.peers.as_slice()).unwrap();
        a.merge_claim(
            start,
            idx,
            Generation(GEN),
            Claim::new(0, Status::Down),
            Source::Own,
        );
    }
    assert_eq!(a.live_count(), 0);
    // Past the removal delay, each round removes one stretch of the table.
    let mut now = start + Duration::from_secs(11);
    let mut left = vec![total];
    while left.last() != Some(&0) && left.len() < 10 {
        a.round(now);
        left.push(a.endpoint_count());
        now = now + Duration::from_secs(1);
    }
    let stretch = SWEEP_PER_ROUND;
    assert!(stretch < total);
    let want: Vec<usize> = (0..=total.div_ceil(stretch))
        .map(|k| total.saturating_sub(k * stretch))
        .collect();
    assert_eq!(left, want);
}

#[test]
fn an_ack_sends_what_the_syn_stretch_left_out() {
    let mut net = net(5);
    assert!(net.run_until(Duration::from_secs(30), |n| n.converged()));
    let now = net.now;
    let a = net.node_mut(0);
    let target = addr(3);
    let pos = wire::ring_position(&target);
    let header = Header {
        cluster: CLUSTER,
        sender: addr(7),
    };
    let syn = |range: wire::RingRange| {
        let mut buf = vec![0u8; 1400];
        let n = SynWriter::new(&mut buf, &header, &[])
            .unwrap()
            .finish(range);
        buf.truncate(n);
        buf
    };
    let deltas_in = |a: &mut HeapNode, bytes: &[u8]| -> Vec<SocketAddr> {
        a.handle_datagram(now, addr(7), bytes);
        let Some((_, ack)) = poll(a, now) else {
            return Vec::new();
        };
        match decoded(&ack) {
            Message::Ack(k) => k.deltas.map(|d| d.endpoint).collect(),
            other => panic!("{other:?}"),
        }
    };
    // A stretch holding only the target's position: the SYN lists nothing
    // there, so the sender lacks it.
    let only = wire::RingRange {
        start: pos,
        end: pos,
    };
    assert_eq!(deltas_in(a, &syn(only)), [target]);
    // A stretch just past it: nothing to say about the target.
    let past = wire::RingRange {
        start: pos.wrapping_add(1),
        end: pos.wrapping_add(1),
    };
    assert!(!deltas_in(a, &syn(past)).contains(&target));
    // The whole ring: every endpoint A knows, itself included.
    let mut all = deltas_in(a, &syn(wire::RingRange::WHOLE));
    all.sort();
    assert_eq!(all, [addr(0), addr(1), addr(2), addr(3), addr(4)]);
}

#[test]
fn application_news_gossips_to_one_more_peer() {
    let mut net = net(6);
    assert!(net.run_until(Duration::from_secs(30), |n| n.converged()));
    net.run_for(Duration::from_secs(20));
    let syns = |n: &Net<HeapStorage>| n.node(1).stats().sent(Kind::Syn);
    // Quiet rounds: one live peer a round (plus, now and then, the seed).
    let before = syns(&net);
    net.run_for(Duration::from_secs(30));
    let quiet = syns(&net) - before;
    // News every third round: one more peer for two rounds each time, 20
    // more SYNs in all (the seed's share varies by a few either way).
    let before = syns(&net);
    for k in 0..10 {
        net.node_mut(1)
            .set_local_state(StateKey::parse("k"), format!("v{k}").as_bytes())
            .unwrap();
        net.run_for(Duration::from_secs(3));
    }
    let busy = syns(&net) - before;
    assert!(busy >= quiet + 12, "quiet {quiet}, with news {busy}");
}
