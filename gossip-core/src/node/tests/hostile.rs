//! Authenticated clusters: the catalogue of hostile datagrams (forged,
//! replayed, mis-keyed) dropped and counted without changing anything,
//! replays across incarnations, key rotation with no downtime, and keyed
//! and unkeyed nodes refusing each other.

use super::*;
use crate::auth::{Key, Keyring};

fn key(b: u8) -> Key {
    Key::new([b; 32])
}

/// An authenticated 3-node cluster, converged.
fn sealed_net() -> Net<HeapStorage> {
    let mut net = net(3);
    for i in 0..3 {
        net.node_mut(i).set_keyring(Some(Keyring::new(key(1))));
    }
    assert!(net.run_until(Duration::from_secs(30), |n| n.converged()));
    net
}

/// An ACK2 from `sender` about `endpoint`, unsealed.
fn ack2_about(sender: SocketAddr, endpoint: SocketAddr, generation: u64, version: u64) -> Vec<u8> {
    let header = Header {
        cluster: CLUSTER,
        sender,
    };
    let mut buf = vec![0u8; 1400];
    let mut w = Ack2Writer::new(&mut buf, &header, &[]).unwrap();
    let items = [
        crate::state::DeltaItem::State(
            StateKey::parse("k"),
            VersionedValue {
                version: Version(version),
                value: b"v",
            },
        ),
        crate::state::DeltaItem::Heartbeat(Version(version + 1)),
    ];
    assert!(w.push_delta(endpoint, Generation(generation), Default::default(), items) > 0);
    let n = w.finish();
    buf.truncate(n);
    buf
}

/// Feeds `bytes` to node 0 from node 1's address; checks it is dropped
/// for `reason`, counted, and changes nothing.
fn refused(net: &mut Net<HeapStorage>, name: &str, bytes: &[u8], reason: DropReason) {
    let now = net.now;
    let node = net.node_mut(0);
    let before = snapshot(node);
    let count = node.stats().dropped(reason);
    let total = node.stats().dropped_total();
    node.handle_datagram(now, addr(1), bytes);
    assert_eq!(node.stats().last_drop, Some(reason), "{name}");
    assert_eq!(node.stats().dropped(reason), count + 1, "{name}");
    assert_eq!(node.stats().dropped_total(), total + 1, "{name}");
    assert_eq!(snapshot(node), before, "{name} changed state");
    assert_eq!(poll(node, now), None, "{name} caused a reply");
    assert_eq!(node.poll_event(), None, "{name} caused an event");
}

#[test]
fn the_hostile_catalogue_of_an_authenticated_cluster() {
    let mut net = sealed_net();
    let other = addr(1);
    let generation = net.node(0).endpoint(&other).unwrap().state().generation().0;
    let invented = SocketAddr::from(([10, 66, 0, 1], 7000));
    let plain = ack2_about(other, invented, generation, 5);
    let good = sealed(&plain, &key(1), u64::MAX - 10);
    let cases: Vec<(&str, Vec<u8>, DropReason)> = vec![
        ("missing MAC", plain.clone(), DropReason::MissingAuth),
        (
            "sealed with another key",
            sealed(&plain, &key(2), 1 << 60),
            DropReason::BadMac,
        ),
        (
            "body bit flipped after sealing",
            {
                let mut b = good.clone();
                b[20] ^= 1;
                b
            },
            DropReason::BadMac,
        ),
        (
            "MAC bit flipped",
            {
                let mut b = good.clone();
                let n = b.len();
                b[n - 3] ^= 0x80;
                b
            },
            DropReason::BadMac,
        ),
        (
            "seq changed after sealing",
            {
                let mut b = good.clone();
                let n = b.len();
                b[n - 1 - 16 - 8] ^= 1;
                b
            },
            DropReason::BadMac,
        ),
        (
            "seal of the wrong shape (16-byte tag)",
            {
                let mut b = good.clone();
                let n = b.len();
                b[n - 1] = 16;
                b
            },
            DropReason::TrailingBytes,
        ),
        (
            "forged SHUTDOWN, unsealed",
            {
                let mut buf = vec![0u8; 1400];
                let header = Header {
                    cluster: CLUSTER,
                    sender: other,
                };
                let n = encode_shutdown(
                    &mut buf,
                    &header,
                    &[],
                    Generation(generation),
                    [crate::state::DeltaItem::Heartbeat(Version::MAX)],
                )
                .unwrap();
                buf.truncate(n);
                buf
            },
            DropReason::MissingAuth,
        ),
        (
            "flood of invented endpoints, unsealed",
            {
                let header = Header {
                    cluster: CLUSTER,
                    sender: other,
                };
                let mut buf = vec![0u8; 1400];
                let mut w = Ack2Writer::new(&mut buf, &header, &[]).unwrap();
                for i in 0..40u8 {
                    let a = SocketAddr::from(([10, 77, 0, i], 7000));
                    w.push_delta(
                        a,
                        Generation(GEN),
                        Default::default(),
                        [crate::state::DeltaItem::Heartbeat(Version(1))],
                    );
                }
                let n = w.finish();
                buf.truncate(n);
                buf
            },
            DropReason::MissingAuth,
        ),
    ];
    for (name, bytes, reason) in &cases {
        refused(&mut net, name, bytes, *reason);
    }
    // The sealed one is accepted once; the same datagram again is a
    // replay, and so is one far below the newest seq.
    let now = net.now;
    net.node_mut(0).handle_datagram(now, other, &good);
    assert!(
        net.node(0).endpoint(&invented).is_some(),
        "the sealed datagram is taken"
    );
    net.drain(0); // its probe of the new endpoint
    refused(&mut net, "replay", &good, DropReason::Replayed);
    let old = sealed(
        &ack2_about(other, invented, generation, 9),
        &key(1),
        u64::MAX - 10 - 64,
    );
    refused(&mut net, "seq below the window", &old, DropReason::Replayed);
    // No key, no voice: node 1 is still alive everywhere.
    net.run_for(Duration::from_secs(5));
    assert!(net.converged());
}

#[test]
fn a_seq_from_an_older_incarnation_is_a_replay_and_switching_keys_off_and_on_keeps_seq() {
    let mut net = sealed_net();
    // Y (a key holder) tells node 1 of X at generation GEN + 50; node 1
    // gossips it on. X itself has not spoken: no seq of X on record.
    let x = SocketAddr::from(([10, 55, 0, 1], 7000));
    let y = SocketAddr::from(([10, 55, 0, 9], 7000));
    let about_x = ack2_about(y, x, GEN + 50, 3);
    let now = net.now;
    net.node_mut(1).handle_datagram(
        now,
        y,
        &sealed(&about_x, &key(1), crate::auth::first_seq(GEN)),
    );
    net.drain(1);
    assert!(net.run_until(Duration::from_secs(10), |n| {
        n.node(0).endpoint(&x).is_some()
    }));
    // A datagram of X's previous incarnation (an old capture): refused.
    let from_x = ack2_about(x, x, GEN + 49, 9);
    let old = sealed(&from_x, &key(1), crate::auth::first_seq(GEN + 49) + 7);
    refused(
        &mut net,
        "seq of an older incarnation",
        &old,
        DropReason::Replayed,
    );
    // Authentication off and on again: the seq goes on, no replays seen.
    net.node_mut(2).set_keyring(None);
    net.node_mut(2).set_keyring(Some(Keyring::new(key(1))));
    net.run_for(Duration::from_secs(10));
    assert_eq!(net.node(0).stats().dropped(DropReason::Replayed), 1);
    assert_eq!(net.node(1).stats().dropped(DropReason::Replayed), 0);
    assert!(net.converged());
}

#[test]
fn keys_rotate_with_no_downtime() {
    let mut net = sealed_net();
    let rotate = |net: &mut Net<HeapStorage>, f: &dyn Fn(&mut Keyring)| {
        for i in 0..3 {
            f(net.node_mut(i).keyring_mut().unwrap());
            // Nodes change one after the other, a second apart.
            net.run_for(Duration::from_secs(1));
        }
        net.run_for(Duration::from_secs(5));
    };
    rotate(&mut net, &|r| r.install(key(2)).unwrap());
    rotate(&mut net, &|r| r.use_key(&key(2)).unwrap());
    rotate(&mut net, &|r| r.remove(&key(1)).unwrap());
    net.run_for(Duration::from_secs(30));
    for i in 0..3 {
        let s = net.node(i).stats();
        assert_eq!(s.dropped(DropReason::BadMac), 0, "node {i} refused a seal");
        assert_eq!(s.dropped(DropReason::Replayed), 0, "node {i} saw a replay");
        assert!(
            !net.events[i].iter().any(|(_, e)| matches!(e, Ev::Down(_))),
            "node {i} saw a node down during rotation"
        );
    }
    assert!(net.converged());
    // A node still on the old key alone is now shut out.
    let lone = net.node_mut(2);
    lone.set_keyring(Some(Keyring::new(key(1))));
    assert!(net.run_until(Duration::from_secs(120), |n| {
        n.node(0).endpoint(&addr(2)).is_some_and(|p| !p.is_alive())
    }));
    assert!(net.node(0).stats().dropped(DropReason::BadMac) > 0);
}

#[test]
fn an_unkeyed_node_refuses_sealed_datagrams_and_sealed_nodes_refuse_it() {
    // Node 1 seals, node 0 (its seed) has no key: node 0 refuses it.
    let mut net = net(2);
    net.node_mut(1).set_keyring(Some(Keyring::new(key(1))));
    net.run_for(Duration::from_secs(10));
    assert!(net.node(0).stats().dropped(DropReason::Unauthenticated) > 0);
    assert!(net.node(0).endpoint(&addr(1)).is_none());
    // With another key, node 0 refuses it for its MAC.
    net.node_mut(0).set_keyring(Some(Keyring::new(key(2))));
    net.run_for(Duration::from_secs(10));
    assert!(net.node(0).stats().dropped(DropReason::BadMac) > 0);
    assert!(net.node(0).endpoint(&addr(1)).is_none());
}
