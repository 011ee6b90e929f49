//! Criterion benchmarks of the core: encode and decode a full 1400-byte SYN
//! and ACK, handle a SYN with 1,000 known endpoints, and a gossip round
//! with 1,000 peers. `cargo bench -p gossip-bench --bench core`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)] // benchmark harness

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use gossip_bench::{CLUSTER, GENERATION, cassandra_items, endpoint, node_knowing};
use gossip_core::Instant;
use gossip_core::state::Version;
use gossip_core::wire::{self, AckWriter, GossipDigest, Header, RingRange, SynWriter};

fn digest(i: usize) -> GossipDigest {
    GossipDigest {
        endpoint: endpoint(i),
        generation: GENERATION,
        max_version: Version(1_000 + i as u64),
        claim: Default::default(),
    }
}

fn header() -> Header {
    Header {
        cluster: CLUSTER,
        sender: endpoint(0),
    }
}

/// A SYN filled with digests up to 1400 bytes.
fn full_syn(buf: &mut [u8]) -> usize {
    let mut w = SynWriter::new(buf, &header(), &[]).unwrap();
    let mut i = 1;
    while w.push(&digest(i)) {
        i += 1;
    }
    w.finish(RingRange::WHOLE)
}

/// An ACK with 8 requests, then whole endpoints (STATUS, HOST_ID,
/// heartbeat) up to 1400 bytes.
fn full_ack(buf: &mut [u8]) -> usize {
    let mut w = AckWriter::new(buf, &header(), &[]).unwrap();
    for i in 1..=8 {
        w.push_request(&digest(i));
    }
    let mut i = 100;
    while w.push_delta(
        endpoint(i),
        GENERATION,
        Default::default(),
        cassandra_items(),
    ) == 3
    {
        i += 1;
    }
    w.finish()
}

fn codec(c: &mut Criterion) {
    let mut buf = [0u8; 1400];
    c.bench_function("encode full SYN (1400 B)", |b| {
        b.iter(|| black_box(full_syn(black_box(&mut buf))))
    });
    let n = full_syn(&mut buf);
    let syn = buf[..n].to_vec();
    c.bench_function("decode full SYN (1400 B) and walk its digests", |b| {
        b.iter(|| {
            let d = wire::decode(black_box(&syn), CLUSTER).unwrap();
            match d.message {
                wire::Message::Syn(s) => black_box(s.digests.count()),
                _ => 0,
            }
        })
    });
    c.bench_function("encode full ACK (1400 B)", |b| {
        b.iter(|| black_box(full_ack(black_box(&mut buf))))
    });
    let n = full_ack(&mut buf);
    let ack = buf[..n].to_vec();
    c.bench_function("decode full ACK (1400 B) and walk its deltas", |b| {
        b.iter(|| {
            let d = wire::decode(black_box(&ack), CLUSTER).unwrap();
            match d.message {
                wire::Message::Ack(a) => black_box(a.deltas.map(|x| x.delta.entries.count()).sum()),
                _ => 0,
            }
        })
    });
}

fn node(c: &mut Criterion) {
    let start = Instant::from_millis(1_000);
    let mut node = node_knowing(1_000, start);
    let mut out = vec![0u8; 1400];
    // A SYN from a peer that knows the same endpoints at older versions:
    // the node answers with requests and deltas.
    let mut syn = vec![0u8; 1400];
    let n = {
        let mut w = SynWriter::new(
            &mut syn,
            &Header {
                cluster: CLUSTER,
                sender: endpoint(7),
            },
            &[],
        )
        .unwrap();
        let mut i = 1;
        while w.push(&GossipDigest {
            endpoint: endpoint(i),
            generation: GENERATION,
            max_version: Version(2),
            claim: Default::default(),
        }) {
            i += 1;
        }
        w.finish(RingRange::WHOLE)
    };
    let syn = syn[..n].to_vec();
    let mut now = start;
    c.bench_function(
        "handle a SYN (1000 known endpoints) and write the ACK",
        |b| {
            b.iter(|| {
                now = now + Duration::from_micros(10);
                node.handle_datagram(now, endpoint(7), black_box(&syn));
                let mut sent = 0;
                while let Some(t) = node.poll_transmit(now, &mut out) {
                    sent += t.size;
                }
                black_box(sent)
            })
        },
    );
    // Each round on a fresh node (built outside the timing) whose 1,000
    // peers are all alive: a long run of rounds on one node would measure a
    // cluster the failure detector has declared dead.
    let mut probe = node_knowing(1_000, start);
    probe.handle_timeout(start);
    let mut first = 0;
    while let Some(t) = probe.poll_transmit(start, &mut out) {
        first += t.size;
    }
    assert!(first > 500, "a round sent {first} bytes");
    c.bench_function(
        "a gossip round with 1000 live peers (timeout, SYNs out)",
        |b| {
            b.iter_batched(
                || node_knowing(1_000, start),
                |mut node| {
                    node.handle_timeout(start);
                    let mut sent = 0;
                    while let Some(t) = node.poll_transmit(start, &mut out) {
                        sent += t.size;
                    }
                    black_box(sent);
                    node
                },
                BatchSize::PerIteration,
            )
        },
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = codec, node
}
criterion_main!(benches);
