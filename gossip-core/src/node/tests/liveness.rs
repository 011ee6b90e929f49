//! Liveness: probes, indirect probes, suspicion, refutation and the rules
//! that keep stale rumors from winning.

use super::*;
use crate::claim::MAX_CONFIRMATIONS;
use crate::state::ApplicationState;
use crate::wire::{Probe, encode_probe};

/// Node 0, knowing node 1 and node 2 (alive at incarnation 0) from an ACK2
/// of node 1's.
fn node_knowing_two(now: Instant) -> HeapNode {
    let mut a: HeapNode = lone(config(), now);
    learn_alive(&mut a, now, &[addr(1), addr(2)]);
    while a.poll_event().is_some() {}
    a
}

/// A NEWS datagram from node 1 carrying `rumors`.
fn news(rumors: &[Rumor]) -> Vec<u8> {
    probe_from(1, rumors, Probe::News)
}

fn probe_from(i: usize, rumors: &[Rumor], probe: Probe) -> Vec<u8> {
    probe_from_addr(addr(i), rumors, probe)
}

fn probe_from_addr(sender: SocketAddr, rumors: &[Rumor], probe: Probe) -> Vec<u8> {
    let header = Header {
        cluster: CLUSTER,
        sender,
    };
    let mut buf = vec![0u8; 1400];
    let n = encode_probe(&mut buf, &header, rumors, &probe).unwrap();
    buf.truncate(n);
    buf
}

/// A PING-REQ from node `from` asking to ping node `target`.
fn ping_req(from: usize, seq: u32, target: usize) -> Vec<u8> {
    probe_from(
        from,
        &[],
        Probe::PingReq {
            seq,
            target: addr(target),
        },
    )
}

/// Whether `sent` holds `probe` to node `to`.
fn sent_to(sent: &[(SocketAddr, Vec<u8>)], to: usize, probe: Probe) -> bool {
    sent.iter().any(|(dest, b)| {
        *dest == addr(to) && wire::decode(b, CLUSTER).unwrap().message == Message::Probe(probe)
    })
}

/// The seqs of the PINGs in `sent` to node `to`.
fn pings_to(sent: &[(SocketAddr, Vec<u8>)], to: usize) -> Vec<u32> {
    sent.iter()
        .filter(|(dest, _)| *dest == addr(to))
        .filter_map(|(_, b)| match wire::decode(b, CLUSTER).unwrap().message {
            Message::Probe(Probe::Ping { seq }) => Some(seq),
            _ => None,
        })
        .collect()
}

fn about(i: usize, claim: Claim) -> Rumor {
    Rumor {
        endpoint: addr(i),
        generation: Generation(GEN),
        claim,
    }
}

fn events(node: &mut HeapNode) -> Vec<Ev> {
    let mut out = Vec::new();
    while let Some(e) = node.poll_event() {
        out.push(Ev::from(e));
    }
    out
}

fn drain_all(node: &mut HeapNode, now: Instant) -> Vec<(SocketAddr, Vec<u8>)> {
    let mut out = Vec::new();
    while let Some(t) = poll(node, now) {
        out.push(t);
    }
    out
}

#[test]
fn a_stale_alive_rumor_does_not_bring_a_dead_member_back() {
    let now = Instant::from_millis(1000);
    let mut a = node_knowing_two(now);
    a.handle_datagram(
        now,
        addr(1),
        &news(&[about(2, Claim::new(2, Status::Down))]),
    );
    let p = a.endpoint(&addr(2)).unwrap();
    // A death at a later incarnation than ours is believed outright only
    // when we doubted it: we had no doubt, so it is a suspicion here.
    assert_eq!((p.liveness(), p.incarnation()), (Liveness::Suspect, 2));
    // Our own probe failed meanwhile (as with a real crash): the death holds.
    a.suspect(now, a.endpoint_slot(&addr(2)).unwrap() as u32);
    a.handle_datagram(
        now,
        addr(1),
        &news(&[about(2, Claim::new(2, Status::Down))]),
    );
    assert_eq!(a.endpoint(&addr(2)).unwrap().liveness(), Liveness::Down);
    // Old news of it alive, at its incarnation or before, changes nothing.
    for i in [0, 1, 2] {
        a.handle_datagram(now, addr(1), &news(&[about(2, Claim::alive(i))]));
        assert_eq!(a.endpoint(&addr(2)).unwrap().liveness(), Liveness::Down);
    }
    assert!(!events(&mut a).contains(&Ev::Up(addr(2))));
    // Its refutation (a newer incarnation) brings it back.
    a.handle_datagram(now, addr(1), &news(&[about(2, Claim::alive(3))]));
    assert_eq!(a.endpoint(&addr(2)).unwrap().liveness(), Liveness::Alive);
    assert_eq!(events(&mut a), [Ev::Up(addr(2))]);
}

#[test]
fn a_stale_suspicion_does_not_keep_a_refuted_member_down() {
    let now = Instant::from_millis(1000);
    let mut a = node_knowing_two(now);
    a.handle_datagram(now, addr(1), &news(&[about(2, Claim::alive(3))]));
    assert_eq!(a.endpoint(&addr(2)).unwrap().incarnation(), 3);
    let stale = [
        Claim::new(2, Status::Suspect),
        Claim::new(2, Status::Down),
        Claim {
            confirmers: 0xff,
            ..Claim::new(1, Status::Suspect)
        },
    ];
    for claim in stale {
        a.handle_datagram(now, addr(1), &news(&[about(2, claim)]));
        assert_eq!(a.endpoint(&addr(2)).unwrap().liveness(), Liveness::Alive);
    }
    assert_eq!(events(&mut a), []);
    // A suspicion at its current incarnation is news: suspected.
    a.handle_datagram(
        now,
        addr(1),
        &news(&[about(2, Claim::new(3, Status::Suspect))]),
    );
    assert_eq!(a.endpoint(&addr(2)).unwrap().liveness(), Liveness::Suspect);
    assert_eq!(events(&mut a), [Ev::Suspect(addr(2))]);
    // Nothing more before the longest suspicion ends. Then, on others'
    // word alone, no conviction: node 0 probes node 2 first.
    let longest = a.suspicion_timeout(0);
    a.handle_timeout(now + (longest - Duration::from_millis(1)));
    assert_eq!(a.endpoint(&addr(2)).unwrap().liveness(), Liveness::Suspect);
    let end = now + longest;
    a.handle_timeout(end);
    assert_eq!(a.endpoint(&addr(2)).unwrap().liveness(), Liveness::Suspect);
    let pings = drain_all(&mut a, end)
        .into_iter()
        .filter(|(to, b)| {
            *to == addr(2)
                && matches!(
                    wire::decode(b, CLUSTER).unwrap().message,
                    Message::Probe(Probe::Ping { .. })
                )
        })
        .count();
    assert_eq!(pings, 1);
    // No answer, directly or through others: its own failure confirms it,
    // and it is down (the NACK the helper owed and never sent worsened
    // node 0's health, which stretches the suspicion a little).
    let mut t = end;
    for _ in 0..64 {
        t = a.poll_timeout().unwrap();
        a.handle_timeout(t);
        drain_all(&mut a, t);
        if a.endpoint(&addr(2)).unwrap().liveness() == Liveness::Down {
            break;
        }
    }
    assert_eq!(a.endpoint(&addr(2)).unwrap().liveness(), Liveness::Down);
    assert!(t - end >= a.config().probe_timeout() * 3);
    let about_2: Vec<Ev> = events(&mut a)
        .into_iter()
        .filter(|e| matches!(e, Ev::Up(x) | Ev::Suspect(x) | Ev::Down(x) if *x == addr(2)))
        .collect();
    assert_eq!(about_2, [Ev::Down(addr(2))]);
}

#[test]
fn a_node_told_it_is_suspected_refutes_at_once() {
    let now = Instant::from_millis(1000);
    let mut a = node_knowing_two(now);
    assert_eq!(a.incarnation(), 0);
    // Node 1 pings us, with the news that we are suspected.
    let ping = probe_from(
        1,
        &[about(0, Claim::new(0, Status::Suspect))],
        Probe::Ping { seq: 77 },
    );
    a.handle_datagram(now, addr(1), &ping);
    assert_eq!(a.incarnation(), 1);
    assert_eq!(a.stats().refutations, 1);
    assert!(a.health() > 0);
    // The answer carries the refutation: alive at incarnation 1.
    let sent = drain_all(&mut a, now);
    let (to, ack) = &sent[0];
    assert_eq!(*to, addr(1));
    let d = wire::decode(ack, CLUSTER).unwrap();
    assert_eq!(d.message, Message::Probe(Probe::PingAck { seq: 77 }));
    let rumors: Vec<Rumor> = d.rumors.collect();
    assert!(rumors.contains(&about(0, Claim::alive(1))), "{rumors:?}");
    // And it is pushed at once to others (hot news).
    assert!(sent.iter().any(|(_, b)| {
        matches!(
            wire::decode(b, CLUSTER).map(|d| d.message),
            Ok(Message::Probe(Probe::News))
        )
    }));
    // An older suspicion, or one of a generation not ours, is not refuted
    // again.
    a.handle_datagram(
        now,
        addr(1),
        &news(&[about(0, Claim::new(0, Status::Down))]),
    );
    let other_generation = Rumor {
        generation: Generation(GEN + 1),
        ..about(0, Claim::new(5, Status::Suspect))
    };
    a.handle_datagram(now, addr(1), &news(&[other_generation]));
    assert_eq!(a.incarnation(), 1);
    // A death at our incarnation is.
    a.handle_datagram(
        now,
        addr(1),
        &news(&[about(0, Claim::new(1, Status::Down))]),
    );
    assert_eq!(a.incarnation(), 2);
}

#[test]
fn a_ping_req_is_relayed_and_nacked_when_the_target_is_silent() {
    let now = Instant::from_millis(1000);
    let mut a = node_knowing_two(now);
    // Node 1 asks us to ping node 2.
    let req = ping_req(1, 9, 2);
    a.handle_datagram(now, addr(1), &req);
    let sent = drain_all(&mut a, now);
    let pings = pings_to(&sent, 2);
    assert_eq!(pings.len(), 1);
    // Node 2 answers: the answer is relayed with node 1's number.
    a.handle_datagram(
        now,
        addr(2),
        &probe_from(2, &[], Probe::PingAck { seq: pings[0] }),
    );
    let relayed = drain_all(&mut a, now);
    assert!(sent_to(&relayed, 1, Probe::PingAck { seq: 9 }));
    // Asked again, node 2 stays silent: a NACK once the probe timeout passed.
    a.handle_datagram(now, addr(1), &ping_req(1, 10, 2));
    drain_all(&mut a, now);
    let timeout = a.probe_timeout();
    assert!(a.poll_timeout().unwrap() <= now + timeout);
    a.handle_timeout(now + timeout);
    let later = drain_all(&mut a, now + timeout);
    assert!(sent_to(&later, 1, Probe::Nack { seq: 10 }));
    // Asked to ping ourselves: we answer ourselves.
    a.handle_datagram(now, addr(1), &ping_req(1, 11, 0));
    let own = drain_all(&mut a, now);
    assert!(sent_to(&own, 1, Probe::PingAck { seq: 11 }));
}

#[test]
fn suspicions_shorten_with_confirmations_and_stretch_with_poor_health() {
    let now = Instant::from_millis(1000);
    let mut a = node_knowing_two(now);
    // Three members: log10 is below 2, so the shortest suspicion is twice
    // suspicion_mult rounds (as at 100 members); the longest
    // suspicion_max_mult times that.
    let min = config().gossip_interval.mul_f64(config().suspicion_mult) * 2;
    let max = min * config().suspicion_max_mult;
    let close = |a: Duration, b: Duration| a.abs_diff(b) < Duration::from_millis(2);
    assert!(close(a.suspicion_timeout(0), max));
    assert!(close(a.suspicion_timeout(MAX_CONFIRMATIONS), min));
    let mut last = a.suspicion_timeout(0);
    for c in 1..=MAX_CONFIRMATIONS {
        let t = a.suspicion_timeout(c);
        assert!(t < last, "{c} confirmations: {t:?}");
        last = t;
    }
    // A node in poor health waits longer, for probes and suspicions alike.
    a.health_worse();
    a.health_worse();
    assert!(close(a.suspicion_timeout(0), max * 3));
    // (Nothing measured yet: the probe timeout is half a round.)
    assert_eq!(a.probe_timeout(), config().gossip_interval / 2 * 3);
}

#[test]
fn missed_nacks_worsen_local_health_and_answers_restore_it() {
    // Node 0 probes while its own network is down: no answer, no NACK.
    let mut net = net(5);
    assert!(net.run_until(Duration::from_secs(30), |n| n.converged()));
    assert_eq!(net.node(0).health(), 0);
    net.muted[0] = true;
    assert!(net.run_until(Duration::from_secs(20), |n| n.node(0).health() >= 2));
    // Back: its probes are answered and its health recovers.
    net.muted[0] = false;
    assert!(net.run_until(Duration::from_secs(60), |n| n.node(0).health() == 0));
}

#[test]
fn a_death_heard_of_a_member_we_do_not_doubt_is_a_suspicion_it_can_refute() {
    // Node 2 is fine; someone says it is dead (say, from across a partition
    // that healed since). Node 0 suspects it, probes it, it refutes: no
    // down anywhere.
    let mut net = net(4);
    assert!(net.run_until(Duration::from_secs(30), |n| n.converged()));
    net.run_for(Duration::from_secs(5));
    let now = net.now;
    net.node_mut(0).handle_datagram(
        now,
        addr(1),
        &news(&[about(2, Claim::new(0, Status::Down))]),
    );
    net.drain(0);
    assert_eq!(
        net.node(0).endpoint(&addr(2)).unwrap().liveness(),
        Liveness::Suspect
    );
    assert!(net.run_until(Duration::from_secs(10), |n| n.node(2).incarnation() > 0));
    net.run_for(Duration::from_secs(10));
    for i in 0..4 {
        assert_eq!(net.saw(i, &Ev::Down(addr(2))), None, "node {i}");
    }
    assert!(net.converged());
}

#[test]
fn a_member_that_left_stays_left_whatever_comes_later() {
    let now = Instant::from_millis(1000);
    let mut a = node_knowing_two(now);
    // Node 2 leaves: its SHUTDOWN notice.
    let header = Header {
        cluster: CLUSTER,
        sender: addr(2),
    };
    let mut buf = vec![0u8; 1400];
    let items = [
        DeltaItem::State(
            StateKey::Known(ApplicationState::Status),
            VersionedValue {
                version: Version(4),
                value: SHUTDOWN_STATUS,
            },
        ),
        DeltaItem::Heartbeat(Version::MAX),
    ];
    let n = encode_shutdown(&mut buf, &header, &[], Generation(GEN), items).unwrap();
    a.handle_datagram(now, addr(2), &buf[..n]);
    assert_eq!(a.endpoint(&addr(2)).unwrap().liveness(), Liveness::Left);
    // Later news of it alive (a refutation it made before leaving, relayed
    // late) or suspected changes nothing.
    for claim in [Claim::alive(5), Claim::new(6, Status::Suspect)] {
        a.handle_datagram(now, addr(1), &news(&[about(2, claim)]));
        let p = a.endpoint(&addr(2)).unwrap();
        assert_eq!(p.liveness(), Liveness::Left);
        assert!(!p.is_alive());
    }
    assert_eq!(a.live_count(), 1);
}

#[test]
fn an_incarnation_far_ahead_is_ignored_as_hostile() {
    let now = Instant::from_millis(1000);
    let mut a = node_knowing_two(now);
    // "Alive at 1,000,000" would leave node 2 unable to refute ever after.
    a.handle_datagram(now, addr(1), &news(&[about(2, Claim::alive(1_000_000))]));
    assert_eq!(a.endpoint(&addr(2)).unwrap().incarnation(), 0);
    // Nor does a suspicion of us that far ahead move our own incarnation.
    a.handle_datagram(
        now,
        addr(1),
        &news(&[about(0, Claim::new(u32::MAX, Status::Suspect))]),
    );
    assert_eq!(a.incarnation(), 0);
    // A step ahead is news.
    a.handle_datagram(now, addr(1), &news(&[about(2, Claim::alive(3))]));
    assert_eq!(a.endpoint(&addr(2)).unwrap().incarnation(), 3);
}

#[test]
fn a_stranger_cannot_aim_pings_at_a_third_party() {
    let now = Instant::from_millis(1000);
    let mut a = node_knowing_two(now);
    // Node 9 is no member: its PING-REQ about member 2 is ignored, and a
    // member's PING-REQ about a non-member too.
    let req = ping_req(9, 1, 2);
    a.handle_datagram(now, addr(9), &req);
    let req = ping_req(1, 2, 9);
    a.handle_datagram(now, addr(1), &req);
    assert!(drain_all(&mut a, now).is_empty());
}

#[test]
fn slow_answers_lengthen_the_probe_timeout_and_fast_ones_shorten_it() {
    let mut now = Instant::from_millis(1000);
    let mut a = node_knowing_two(now);
    let floor = a.config().probe_timeout();
    let ceiling = a.config().gossip_interval / 2;
    let idx = a.index.find(&addr(2), a.peers.as_slice()).unwrap();
    // Probes node 2 and delivers an answer from `from` after `delay`.
    let mut probe = |a: &mut HeapNode, from: usize, delay: Duration| {
        a.start_probe(now, idx, probe::Cause::Extra);
        let seq = pings_to(&drain_all(a, now), 2)[0];
        now = now + delay;
        a.handle_datagram(
            now,
            addr(from),
            &probe_from(from, &[], Probe::PingAck { seq }),
        );
        drain_all(a, now);
        assert!(!a.prober.probing(idx), "the answer ended the probe");
    };
    // Nothing measured yet: half a round. Answers relayed by a helper
    // measure nothing.
    assert_eq!(a.probe_timeout(), ceiling);
    for _ in 0..5 {
        probe(&mut a, 1, floor * 2);
    }
    assert_eq!(a.probe_timeout(), ceiling);
    // The target's own answers, each a probe timeout and a half late.
    for _ in 0..5 {
        probe(&mut a, 2, floor * 3 / 2);
    }
    let stretched = a.probe_timeout();
    assert!(stretched > floor * 3 / 2, "{stretched:?}");
    assert!(stretched <= ceiling, "{stretched:?}");
    // Much slower answers: never past half a round.
    for _ in 0..5 {
        probe(&mut a, 2, ceiling * 2);
    }
    assert_eq!(a.probe_timeout(), ceiling);
    // Prompt answers bring it back to the configured timeout.
    for _ in 0..40 {
        probe(&mut a, 2, Duration::from_millis(1));
    }
    assert_eq!(a.probe_timeout(), floor);
}

#[test]
fn an_unanswered_ping_is_sent_again_beside_the_ping_reqs() {
    let now = Instant::from_millis(1000);
    let mut a = node_knowing_two(now);
    let idx = a.index.find(&addr(2), a.peers.as_slice()).unwrap();
    a.start_probe(now, idx, probe::Cause::Extra);
    let seq = pings_to(&drain_all(&mut a, now), 2)[0];
    // The PING (or its answer) was lost: at the probe timeout, node 1 is
    // asked to ping node 2, and node 2 is pinged once more.
    let later = now + a.probe_timeout();
    a.handle_timeout(later);
    let sent = drain_all(&mut a, later);
    assert!(sent_to(
        &sent,
        1,
        Probe::PingReq {
            seq,
            target: addr(2)
        }
    ));
    assert!(sent_to(&sent, 2, Probe::Ping { seq: seq | 1 }));
    assert_ne!(seq, seq | 1);
    // The second PING's answer ends the probe: no suspicion, and no round
    // trip measured from the first PING.
    let answered = later + Duration::from_millis(5);
    a.handle_datagram(
        answered,
        addr(2),
        &probe_from(2, &[], Probe::PingAck { seq: seq | 1 }),
    );
    assert!(!a.prober.probing(idx));
    assert!(a.prober.rtt.timeout().is_none());
    let end = answered + a.config().gossip_interval * 3;
    a.handle_timeout(end);
    drain_all(&mut a, end);
    assert_eq!(a.endpoint(&addr(2)).unwrap().liveness(), Liveness::Alive);
}

#[test]
fn a_member_spreading_a_claim_from_before_a_refutation_is_told_the_newer_one() {
    let now = Instant::from_millis(1000);
    let mut a = node_knowing_two(now);
    // Node 2 refuted a suspicion: alive at incarnation 1.
    a.handle_datagram(now, addr(1), &news(&[about(2, Claim::alive(1))]));
    assert_eq!(a.endpoint(&addr(2)).unwrap().incarnation(), 1);
    drain_all(&mut a, now);
    // Node 1 missed that, convicted node 2, and spreads its death.
    let stale = news(&[about(2, Claim::new(0, Status::Down))]);
    a.handle_datagram(now, addr(1), &stale);
    a.handle_datagram(now, addr(1), &stale);
    assert!(a.endpoint(&addr(2)).unwrap().is_alive());
    let sent = drain_all(&mut a, now);
    let corrections: Vec<_> = sent
        .iter()
        .filter(|(to, b)| {
            *to == addr(1)
                && wire::decode(b, CLUSTER).is_ok_and(|d| {
                    d.message == Message::Probe(Probe::News)
                        && d.rumors.clone().any(|r| r == about(2, Claim::alive(1)))
                })
        })
        .collect();
    assert_eq!(
        corrections.len(),
        1,
        "once, however often it is heard: {sent:?}"
    );
    assert_eq!(a.stats().corrections_sent, 1);
    // A rumor at the incarnation we know is merged, not corrected; nor is
    // a stranger's stale rumor answered.
    a.handle_datagram(
        now,
        addr(1),
        &news(&[about(2, Claim::new(1, Status::Suspect))]),
    );
    let stranger = SocketAddr::from(([127, 0, 9, 9], 7000));
    let stale = probe_from_addr(
        stranger,
        &[about(2, Claim::new(0, Status::Down))],
        Probe::News,
    );
    a.handle_datagram(now, stranger, &stale);
    drain_all(&mut a, now);
    assert_eq!(a.stats().corrections_sent, 1);
}

#[test]
fn corrections_are_bounded_per_round() {
    let now = Instant::from_millis(1000);
    let mut a: HeapNode = lone(config(), now);
    let members: Vec<SocketAddr> = (1..=12).map(addr).collect();
    learn_alive(&mut a, now, &members);
    // Node 2 refuted; then each of nodes 3..=12 spreads a stale death of
    // it within one round.
    a.handle_datagram(now, addr(1), &news(&[about(2, Claim::alive(1))]));
    drain_all(&mut a, now);
    for i in 3..=12 {
        let stale = probe_from(i, &[about(2, Claim::new(0, Status::Down))], Probe::News);
        a.handle_datagram(now, addr(i), &stale);
        drain_all(&mut a, now);
    }
    // 4 sent, 4 more owed (the rest forgotten: anti-entropy mends them).
    assert_eq!(a.stats().corrections_sent, 4);
    // The next round sends the owed ones.
    for _ in 0..64 {
        let t = a.poll_timeout().unwrap();
        a.handle_timeout(t);
        drain_all(&mut a, t);
        if t - now >= a.config().gossip_interval {
            break;
        }
    }
    assert_eq!(a.stats().corrections_sent, 8);
}

/// The members `a`'s next `n` cycle probes go to, each answered.
fn cycle_probes(a: &mut HeapNode, now: &mut Instant, n: usize) -> Vec<SocketAddr> {
    let mut order = Vec::new();
    for _ in 0..n {
        a.probe_cycle(*now);
        let sent = drain_all(a, *now);
        let (to, seq) = sent
            .iter()
            .find_map(
                |(dest, b)| match wire::decode(b, CLUSTER).unwrap().message {
                    Message::Probe(Probe::Ping { seq }) => Some((*dest, seq)),
                    _ => None,
                },
            )
            .expect("each step probes a member");
        *now = *now + Duration::from_millis(10);
        a.handle_datagram(*now, to, &probe_from_addr(to, &[], Probe::PingAck { seq }));
        drain_all(a, *now);
        order.push(to);
    }
    order
}

#[test]
fn each_cycle_probes_every_live_member_once_in_a_new_order() {
    let mut now = Instant::from_millis(1000);
    let mut a: HeapNode = lone(config(), now);
    let mut members: Vec<SocketAddr> = (1..=11).map(addr).collect();
    learn_alive(&mut a, now, &members);
    while a.poll_event().is_some() {}
    drain_all(&mut a, now);
    members.sort();
    let mut orders = Vec::new();
    for _ in 0..3 {
        let order = cycle_probes(&mut a, &mut now, members.len());
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(sorted, members, "once each: {order:?}");
        orders.push(order);
    }
    assert!(
        orders[0] != orders[1] && orders[1] != orders[2],
        "{orders:?}"
    );
}
