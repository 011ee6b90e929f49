//! Storage: a full table refuses newcomers, fixed (no-alloc) storage runs
//! the same protocol and is refused when too small for the configuration,
//! reserved tables are allocated once, and memory per peer is reported.

use super::*;

#[test]
fn a_full_table_refuses_newcomers() {
    let mut net: Net<HeapStorage> = Net::new(6, |i| {
        let mut c = config();
        if i == 0 {
            c.max_peers = 3;
        }
        c
    });
    net.run_for(Duration::from_secs(20));
    let seed = net.node(0);
    assert_eq!(seed.endpoint_count(), 3);
    assert!(seed.stats().refused_endpoints > 0);
    // The others still learn everyone (through each other).
    assert!(net.run_until(Duration::from_secs(30), |n| {
        (1..6).all(|i| n.node(i).endpoint_count() == 5)
    }));
}

/// A configuration a `FixedStorage<max_peers, 512, 1400, 4>` holds.
fn fixed_config(max_peers: usize) -> Config {
    let mut c = config();
    c.max_peers = max_peers;
    c.max_pending_replies = 4;
    c.limits = Limits {
        max_keys_per_endpoint: 8,
        max_key_len: 16,
        max_value_len: 32,
        ..Limits::default()
    };
    c
}

#[test]
fn fixed_storage_runs_the_same_protocol() {
    type Fixed = FixedStorage<8, 512, 1400, 4>;
    let mut net: Net<Fixed> = Net::new(5, |_| fixed_config(8));
    net.node_mut(2)
        .set_local_state(StateKey::parse("k"), b"v")
        .unwrap();
    assert!(net.run_until(Duration::from_secs(30), |n| n.converged()));
    assert!(net.run_until(Duration::from_secs(30), |n| {
        (0..5).filter(|i| *i != 2).all(|i| {
            n.node(i)
                .endpoint(&addr(2))
                .is_some_and(|p| p.state().get(&StateKey::parse("k")).is_some())
        })
    }));
}

#[test]
fn fixed_storage_with_more_endpoints_in_a_syn_than_its_scratch_holds() {
    // A fixed table of 4 peers sizes its per-call scratch to 4 items: the SYNs
    // here carry 5 digests (the sender and its 4 peers), and each reply has 5
    // candidates, so the lookups past the scratch and the unranked tail run.
    type Fixed = FixedStorage<4, 512, 1400, 4>;
    let mut net: Net<Fixed> = Net::new(8, |_| fixed_config(4));
    assert!(net.run_until(Duration::from_secs(60), |n| {
        (0..8).all(|i| n.node(i).endpoint_count() == 4 && n.node(i).live_count() == 4)
    }));
    for i in 0..8 {
        let s = net.node(i).stats();
        assert_eq!(s.dropped_total(), 0, "node {i} dropped datagrams: {s:?}");
    }
}

#[test]
fn storage_too_small_for_the_configuration_is_refused() {
    let rng = || Xoshiro256PlusPlus::seed_from_u64(1);
    let now = Instant::ZERO;
    let new = |c: Config| -> Result<(), ConfigError> {
        Node::<FixedStorage<4, 64, 512, 2>, _>::new(c, addr(0), Generation(1), &[], rng(), now)
            .map(|_| ())
    };
    let small = Limits {
        max_keys_per_endpoint: 2,
        max_key_len: 8,
        max_value_len: 8,
        ..Limits::default()
    };
    let mut c = config();
    c.max_peers = 4;
    c.max_pending_replies = 2;
    c.max_datagram_size = 512;
    c.limits = small;
    assert_eq!(new(c.clone()), Ok(()));
    assert_eq!(
        new(Config {
            max_peers: 5,
            ..c.clone()
        }),
        Err(ConfigError::Storage(StorageShortfall::Peers))
    );
    assert_eq!(
        new(Config {
            limits: Limits {
                max_keys_per_endpoint: 8,
                ..small
            },
            ..c.clone()
        }),
        Err(ConfigError::Storage(StorageShortfall::StateBytes))
    );
    assert_eq!(
        new(Config {
            max_datagram_size: 600,
            ..c.clone()
        }),
        Err(ConfigError::Storage(StorageShortfall::DatagramBytes))
    );
    assert_eq!(
        new(Config {
            max_pending_replies: 3,
            ..c.clone()
        }),
        Err(ConfigError::Storage(StorageShortfall::Replies))
    );
    let seeds: Vec<SocketAddr> = (1..=17).map(addr).collect();
    assert_eq!(
        Node::<HeapStorage, _>::new(config(), addr(0), Generation(1), &seeds, rng(), now)
            .map(|_| ()),
        Err(ConfigError::TooManySeeds)
    );
}

#[test]
fn reserved_peers_are_allocated_once_and_capped_at_max_peers() {
    let mut c = config();
    c.max_peers = 40;
    let now = Instant::from_millis(1_000);
    let mut a: HeapNode = lone(c, now);
    // More than max_peers asked: room for max_peers.
    a.reserve_peers(1_000);
    assert_eq!(a.peers.capacity(), 40);
    let table = a.peers.as_ptr();
    // 40 endpoints learned, 10 per ACK2 from addr(1): no reallocation.
    let header = Header {
        cluster: CLUSTER,
        sender: addr(1),
    };
    for batch in 0..4u8 {
        let mut buf = vec![0u8; 1400];
        let mut w = Ack2Writer::new(&mut buf, &header, &[]).unwrap();
        for k in 0..10u8 {
            let endpoint = SocketAddr::from(([10, 0, batch, k], 7000));
            let items = [crate::state::DeltaItem::Heartbeat(Version(1))];
            assert!(w.push_delta(endpoint, Generation(GEN), Default::default(), items) > 0);
        }
        let n = w.finish();
        a.handle_datagram(now, addr(1), &buf[..n]);
    }
    assert_eq!(a.endpoint_count(), 40);
    assert_eq!(a.peers.as_ptr(), table, "the table was reallocated");
    assert_eq!(a.peers.capacity(), 40);
    // Full: asking again reserves nothing more.
    a.reserve_peers(10);
    assert_eq!(a.peers.capacity(), 40);
    // Fixed storage has its room already.
    let mut f: Node<FixedStorage<4, 512, 1400, 4>, _> = lone(fixed_config(4), now);
    f.reserve_peers(4);
    assert_eq!(f.endpoint_count(), 0);
}

#[test]
fn memory_per_peer_is_reported() {
    // Not a target, a record: the sizes the README and docs quote.
    type States = <HeapStorage as crate::table::sealed::Containers>::StateBuf;
    let peer = core::mem::size_of::<Peer<States>>();
    let window = core::mem::size_of::<crate::fd::ArrivalWindow>();
    assert!(window <= 12, "{window}");
    assert!(peer <= 136, "{peer}");
    std::println!("peer slot {peer} bytes, window {window} bytes");
}
