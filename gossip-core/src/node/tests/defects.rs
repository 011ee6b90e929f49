//! Bad input: every kind of defect in a datagram is dropped, counted and
//! changes nothing; random mutations of real datagrams never panic; a flood
//! of endpoints near the top of the version range evicts no member.

use super::*;

/// An endpoint, a generation and `(key, value)` entries.
type DeltaSpec<'a> = (SocketAddr, u64, Vec<(&'a str, &'a [u8])>);

#[test]
fn each_kind_of_defect_is_dropped_counted_and_changes_nothing() {
    let mut net = net(3);
    assert!(net.run_until(Duration::from_secs(30), |n| n.converged()));
    let now = net.now;
    let victim = 0;
    let other = addr(1);
    let header = Header {
        cluster: CLUSTER,
        sender: other,
    };
    let known = net.node(victim).endpoint(&other).unwrap().state().clone();
    let gen_known = known.generation();

    let ack2 = |deltas: &[DeltaSpec<'_>]| -> Vec<u8> {
        let mut buf = vec![0u8; 4096];
        let mut w = Ack2Writer::new(&mut buf, &header, &[]).unwrap();
        for (endpoint, generation, entries) in deltas {
            let items: Vec<_> = entries
                .iter()
                .enumerate()
                .map(|(i, (k, v))| {
                    crate::state::DeltaItem::State(
                        StateKey::parse(k),
                        VersionedValue {
                            version: Version(1_000_000 + i as u64),
                            value: v,
                        },
                    )
                })
                .chain([crate::state::DeltaItem::Heartbeat(Version(2_000_000))])
                .collect();
            assert!(
                w.push_delta(
                    *endpoint,
                    Generation(*generation),
                    Default::default(),
                    items
                ) > 0
            );
        }
        let n = w.finish();
        buf.truncate(n);
        buf
    };
    let fine = ack2(&[(addr(9), gen_known.0, vec![("k", b"v")])]);
    let syn = {
        let mut buf = vec![0u8; 1400];
        let w = SynWriter::new(&mut buf, &header, &[]).unwrap();
        let n = w.finish(wire::RingRange::WHOLE);
        buf.truncate(n);
        buf
    };
    let with = |bytes: &[u8], f: &dyn Fn(&mut Vec<u8>)| {
        let mut b = bytes.to_vec();
        f(&mut b);
        b
    };
    let too_many: Vec<(String, Vec<u8>)> =
        (0..65).map(|i| (format!("k{i}"), b"v".to_vec())).collect();
    let too_many: Vec<(&str, &[u8])> = too_many
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_slice()))
        .collect();
    let long_key = "k".repeat(65);
    let long_value = vec![b'x'; 1025];
    let self_header = Header {
        cluster: CLUSTER,
        sender: addr(victim),
    };
    let mut from_self = vec![0u8; 1400];
    let n = SynWriter::new(&mut from_self, &self_header, &[])
        .unwrap()
        .finish(wire::RingRange::WHOLE);
    from_self.truncate(n);
    let mut other_cluster = vec![0u8; 1400];
    let n = SynWriter::new(
        &mut other_cluster,
        &Header {
            cluster: ClusterId::from_name("other"),
            sender: other,
        },
        &[],
    )
    .unwrap()
    .finish(wire::RingRange::WHOLE);
    other_cluster.truncate(n);

    let cases: Vec<(&str, Vec<u8>, DropReason)> = vec![
        ("empty", vec![], DropReason::Truncated),
        (
            "truncated header",
            fine[..5].to_vec(),
            DropReason::Truncated,
        ),
        ("oversized", vec![0u8; 1401], DropReason::Oversized),
        (
            "bad magic",
            with(&fine, &|b| b[0] = b'X'),
            DropReason::BadMagic,
        ),
        (
            "version 1",
            with(&fine, &|b| b[2] = 1),
            DropReason::UnsupportedVersion,
        ),
        (
            "unknown flags",
            with(&fine, &|b| b[3] = 0x80),
            DropReason::UnsupportedFlags,
        ),
        ("other cluster", other_cluster, DropReason::OtherCluster),
        (
            "unknown kind",
            with(&fine, &|b| b[8] = 77),
            DropReason::UnknownKind,
        ),
        (
            "cut body",
            fine[..fine.len() - 2].to_vec(),
            DropReason::Malformed,
        ),
        (
            "trailing bytes",
            with(&fine, &|b| b.push(0)),
            DropReason::TrailingBytes,
        ),
        (
            "auth trailer",
            with(&syn, &|b| {
                b[3] |= wire::FLAG_AUTH;
                b.extend_from_slice(&[0xAA; 16]);
                b.push(16);
            }),
            DropReason::Unauthenticated,
        ),
        ("from self", from_self, DropReason::FromSelf),
        (
            "duplicate endpoint",
            ack2(&[
                (addr(9), gen_known.0, vec![("a", b"1")]),
                (addr(9), gen_known.0, vec![("b", b"2")]),
            ]),
            DropReason::DuplicateEndpoint,
        ),
        (
            "bogus generation",
            ack2(&[(addr(9), GEN + Limits::ONE_YEAR + 3600, vec![("a", b"1")])]),
            DropReason::BogusGeneration,
        ),
        (
            "too many keys",
            ack2(&[(addr(9), gen_known.0, too_many)]),
            DropReason::TooManyKeys,
        ),
        (
            "empty key",
            ack2(&[(other, gen_known.0, vec![("", b"1")])]),
            DropReason::BadKey,
        ),
        (
            "long key",
            ack2(&[(other, gen_known.0, vec![(long_key.as_str(), b"1")])]),
            DropReason::BadKey,
        ),
        (
            "long value",
            ack2(&[(other, gen_known.0, vec![("a", long_value.as_slice())])]),
            DropReason::ValueTooLong,
        ),
        (
            "duplicate key",
            ack2(&[(other, gen_known.0, vec![("a", b"1"), ("a", b"2")])]),
            DropReason::DuplicateKey,
        ),
        (
            // A valid delta first, then a bad one: neither is applied.
            "bad delta after a good one",
            ack2(&[
                (addr(9), gen_known.0, vec![("a", b"1")]),
                (other, gen_known.0, vec![("", b"1")]),
            ]),
            DropReason::BadKey,
        ),
    ];
    let node = net.nodes[victim].as_mut().unwrap();
    for (name, bytes, reason) in cases {
        let before = snapshot(node);
        let dropped = node.stats().dropped(reason);
        let total = node.stats().dropped_total();
        node.handle_datagram(now, other, &bytes);
        assert_eq!(
            node.stats().dropped(reason),
            dropped + 1,
            "{name}: {reason}"
        );
        assert_eq!(node.stats().dropped_total(), total + 1, "{name}");
        assert_eq!(snapshot(node), before, "{name} changed state");
        assert_eq!(poll(node, now), None, "{name} caused a reply");
        assert_eq!(node.poll_event(), None, "{name} caused an event");
    }
    // The well-formed one is accepted.
    node.handle_datagram(now, other, &fine);
    assert!(node.endpoint(&addr(9)).is_some());
    // A SHUTDOWN whose delta is bad changes nothing either.
    let mut buf = vec![0u8; 1400];
    let big = vec![b'x'; 2000];
    let n = encode_shutdown(
        &mut buf,
        &header,
        &[],
        gen_known,
        [crate::state::DeltaItem::State(
            StateKey::parse("a"),
            VersionedValue {
                version: Version(5),
                value: &big[..1100],
            },
        )],
    )
    .unwrap();
    let before = snapshot(node);
    let dropped = node.stats().dropped(DropReason::ValueTooLong);
    node.handle_datagram(now, other, &buf[..n]);
    assert_eq!(snapshot(node), before);
    assert_eq!(node.stats().dropped(DropReason::ValueTooLong), dropped + 1);
    assert!(node.endpoint(&other).unwrap().is_alive());
}

#[test]
fn hostile_bytes_never_panic_and_dropped_ones_change_nothing() {
    let mut net = net(4);
    // Record real datagrams to mutate.
    let mut samples: Vec<Vec<u8>> = Vec::new();
    for _ in 0..2_000 {
        net.step();
        samples.extend(net.flight.iter().map(|f| f.bytes.clone()));
        if samples.len() > 300 {
            break;
        }
    }
    assert!(net.run_until(Duration::from_secs(30), |n| n.converged()));
    let now = net.now;
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(99);
    let node = net.nodes[0].as_mut().unwrap();
    let (mut dropped, mut accepted) = (0, 0);
    for _ in 0..6_000 {
        let mut bytes = samples[(rng.next_u64() % samples.len() as u64) as usize].clone();
        match rng.next_u32() % 4 {
            0 => {
                let n = (rng.next_u32() % 64) as usize;
                bytes = (0..n).map(|_| rng.next_u32() as u8).collect();
            }
            1 => {
                let cut = (rng.next_u64() % (bytes.len() as u64 + 1)) as usize;
                bytes.truncate(cut);
            }
            _ => {
                for _ in 0..1 + rng.next_u32() % 4 {
                    let i = (rng.next_u64() % bytes.len() as u64) as usize;
                    bytes[i] = rng.next_u32() as u8;
                }
            }
        }
        let before = snapshot(node);
        let views: Vec<(SocketAddr, Generation, Version)> = node
            .endpoints()
            .map(|p| (p.addr(), p.state().generation(), p.state().max_version()))
            .collect();
        let total = node.stats().dropped_total();
        let from = addr((rng.next_u32() % 4) as usize);
        node.handle_datagram(now, from, &bytes);
        if node.stats().dropped_total() > total {
            dropped += 1;
            assert_eq!(snapshot(node), before, "dropped datagram changed state");
        } else {
            accepted += 1;
            // No endpoint's view goes back.
            for (a, g, v) in views {
                if let Some(p) = node.endpoint(&a) {
                    assert!((p.state().generation(), p.state().max_version()) >= (g, v));
                }
            }
        }
        let mut buf = [0u8; 1400];
        for _ in 0..100 {
            let Some(t) = node.poll_transmit(now, &mut buf) else {
                break;
            };
            assert!(t.size <= 1400);
            wire::decode(&buf[..t.size], CLUSTER).unwrap();
        }
        while node.poll_event().is_some() {}
    }
    assert!(
        dropped > 500 && accepted > 50,
        "{dropped} dropped, {accepted} accepted"
    );
}

#[test]
fn a_version_near_the_top_is_refused_and_a_flood_evicts_no_member() {
    let mut net: Net<HeapStorage> = Net::new(3, |_| {
        let mut c = config();
        c.max_peers = 8;
        c
    });
    assert!(net.run_until(Duration::from_secs(30), |n| n.converged()));
    let other = addr(1);
    let generation = net.node(0).endpoint(&other).unwrap().state().generation();
    let header = Header {
        cluster: CLUSTER,
        sender: other,
    };
    // Pinning node 1's key at the last version but one: refused.
    let mut buf = vec![0u8; 1400];
    let mut w = Ack2Writer::new(&mut buf, &header, &[]).unwrap();
    w.push_delta(
        other,
        generation,
        Default::default(),
        [crate::state::DeltaItem::State(
            StateKey::parse("k"),
            VersionedValue {
                version: Version(Version::MAX.0 - 1),
                value: b"pinned",
            },
        )],
    );
    let n = w.finish();
    let now = net.now;
    let node = net.node_mut(0);
    let before = snapshot(node);
    node.handle_datagram(now, other, &buf[..n]);
    assert_eq!(node.stats().last_drop, Some(DropReason::VersionJump));
    assert_eq!(snapshot(node), before);
    // A flood of 200 invented endpoints: the table stops at max_peers, the
    // members stay, alive.
    for batch in 0..20u8 {
        let mut buf = vec![0u8; 1400];
        let mut w = Ack2Writer::new(&mut buf, &header, &[]).unwrap();
        for i in 0..10u8 {
            let a = SocketAddr::from(([10, 88, batch, i], 7000));
            w.push_delta(
                a,
                Generation(GEN),
                Default::default(),
                [crate::state::DeltaItem::Heartbeat(Version(1))],
            );
        }
        let n = w.finish();
        node.handle_datagram(now, other, &buf[..n]);
    }
    assert_eq!(node.endpoint_count(), 8);
    assert!(node.stats().refused_endpoints >= 200 - 6);
    net.run_for(Duration::from_secs(20));
    assert!(
        net.converged(),
        "members evicted or marked down by the flood"
    );
}
