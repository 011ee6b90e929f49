//! Benchmarks of this project: `benches/core.rs` (criterion: the core's
//! encoding, decoding, SYN handling and rounds) and the `compare` binary
//! (this project's tokio binding, chitchat, foca and memberlist side by
//! side).
//!
//! This library holds what both use: a node that knows many endpoints.

use std::net::SocketAddr;

use gossip_core::state::{DeltaItem, Generation, StateKey, Version, VersionedValue};
use gossip_core::wire::{Ack2Writer, ClusterId, GossipDigest, Header, RingRange, SynWriter};
use gossip_core::{Config, HeapStorage, Instant, Node};
use rand_core::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

/// The cluster every benchmark node is in.
pub const CLUSTER: ClusterId = ClusterId::from_name("bench");

/// The generation of every benchmark endpoint.
pub const GENERATION: Generation = Generation(1_700_000_000);

/// The node type benchmarked.
pub type BenchNode = Node<HeapStorage, Xoshiro256PlusPlus>;

/// Endpoint `i`: `10.i.i.i:7000`, spread over the address space.
pub fn endpoint(i: usize) -> SocketAddr {
    let [a, b, c, d] = (0x0a00_0000u32 + i as u32).to_be_bytes();
    SocketAddr::from(([a, b, c, d], 7000))
}

/// A node (endpoint 0) that knows `n` other endpoints, each with a STATUS
/// and a 36-byte HOST_ID, as a Cassandra node would, all alive (each has
/// spoken to it), at `now`.
pub fn node_knowing(n: usize, now: Instant) -> BenchNode {
    let mut config = Config::new(CLUSTER);
    config.max_peers = n + 16;
    let rng = Xoshiro256PlusPlus::seed_from_u64(1);
    let mut node = match BenchNode::new(config, endpoint(0), GENERATION, &[], rng, now) {
        Ok(node) => node,
        Err(e) => unreachable_config(e),
    };
    let mut buf = vec![0u8; 1400];
    let mut next = 1;
    while next <= n {
        let header = Header {
            cluster: CLUSTER,
            sender: endpoint(next),
        };
        let Ok(mut w) = Ack2Writer::new(&mut buf, &header, &[]) else {
            break;
        };
        while next <= n {
            let items = cassandra_items();
            if w.push_delta(endpoint(next), GENERATION, Default::default(), items) < 3 {
                break;
            }
            next += 1;
        }
        let len = w.finish();
        node.handle_datagram(
            now,
            endpoint(next.saturating_sub(1)),
            buf.get(..len).unwrap_or(&[]),
        );
        let mut out = vec![0u8; 1400];
        while node.poll_transmit(now, &mut out).is_some() {}
        while node.poll_event().is_some() {}
    }
    // Each endpoint speaks to the node once (a SYN with its own digest), as
    // in a running cluster: a heartbeat arrival of each for phi.
    let mut out = vec![0u8; 1400];
    for i in 1..=n {
        let header = Header {
            cluster: CLUSTER,
            sender: endpoint(i),
        };
        let Ok(mut w) = SynWriter::new(&mut buf, &header, &[]) else {
            break;
        };
        w.push(&GossipDigest {
            endpoint: endpoint(i),
            generation: GENERATION,
            max_version: Version(3),
            claim: Default::default(),
        });
        let len = w.finish(RingRange { start: 0, end: 0 });
        node.handle_datagram(now, endpoint(i), buf.get(..len).unwrap_or(&[]));
        while node.poll_transmit(now, &mut out).is_some() {}
        while node.poll_event().is_some() {}
    }
    node
}

/// A Cassandra node's usual states, as delta items: STATUS, a 36-byte
/// HOST_ID, and the heartbeat.
pub fn cassandra_items() -> [DeltaItem<'static>; 3] {
    [
        DeltaItem::State(
            StateKey::parse("STATUS"),
            VersionedValue {
                version: Version(1),
                value: b"NORMAL,-1234567890",
            },
        ),
        DeltaItem::State(
            StateKey::parse("HOST_ID"),
            VersionedValue {
                version: Version(2),
                value: b"3f1c0f6e-8d2b-4c1e-9a57-2b7c9e0d1a44",
            },
        ),
        DeltaItem::Heartbeat(Version(3)),
    ]
}

#[cold]
fn unreachable_config(e: gossip_core::ConfigError) -> ! {
    // The configuration above is valid; a failure is a bug in this crate.
    #[allow(clippy::panic)]
    {
        panic!("benchmark configuration refused: {e}")
    }
}
