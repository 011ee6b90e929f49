//! The bodies of the fuzz targets in `fuzz/`: each takes the fuzzer's bytes
//! and panics when a property fails. `fuzz/` only wraps them, and
//! `tests/fuzz_corpus.rs` replays the committed corpora through them on
//! stable Rust, so a corpus file that once crashed a target stays a test.
//!
//! - [`wire_decode`]: any bytes; whatever decodes re-encodes, in no more
//!   bytes, to a canonical form that decodes to the same message and
//!   re-encodes to the same bytes.
//! - [`node_ops`]: a sequence of operations against one node (raw datagrams,
//!   well-formed hostile messages, floods of invented endpoints, time jumps,
//!   early timeouts, state changes, shutdown, key rings on and off, sealed
//!   datagrams with right and wrong keys), checking after every one that
//!   transmits fit `max_datagram_size`, `poll_timeout` never lies in the
//!   past, the table stays within its limits and no endpoint's
//!   `(generation, version)` goes backwards.
//! - [`cluster_ops`]: a [`FaultSchedule`] on a small simulated cluster, with
//!   the simulator's invariants and convergence once the faults stop.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // assertions are the point

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use arbitrary::{Arbitrary, Unstructured};
use gossip_core::auth::{Key as ClusterKey, Keyring};
use gossip_core::claim::{Claim, Status};
use gossip_core::state::{
    ApplicationState, DeltaItem, Generation, StateKey, Version, VersionedValue,
};
use gossip_core::wire::{
    self, Ack2Writer, AckWriter, ClusterId, Datagram, GossipDigest, Header, Message, Probe,
    RingRange, Rumor, SynWriter,
};
use gossip_core::{Config, Event, HeapStorage, Instant, Node};
use rand_core::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

use crate::faults::FaultSchedule;

/// The cluster every fuzzed datagram claims.
pub const CLUSTER: ClusterId = ClusterId::from_name("fuzz");

// ---- wire_decode ----------------------------------------------------------

/// Decodes `data`; if it decodes, re-encodes it and checks the bytes and the
/// message are the same.
pub fn wire_decode(data: &[u8]) {
    // The cluster is taken from the datagram itself so that other-cluster
    // rejection does not hide the body from the fuzzer.
    let cluster = data
        .get(4..8)
        .and_then(|c| c.try_into().ok())
        .map_or(CLUSTER, |c: [u8; 4]| ClusterId(u32::from_le_bytes(c)));
    let Ok(decoded) = wire::decode(data, cluster) else {
        return;
    };
    let mut buf = vec![0u8; data.len() + 64];
    let n = encode(&decoded, &mut buf).expect("a decoded message re-encodes");
    let again = wire::decode(&buf[..n], cluster).expect("a re-encoded message decodes");
    assert_eq!(again.header, decoded.header);
    assert_eq!(again.rumors, decoded.rumors);
    assert_eq!(again.message, decoded.message);
    // Writers are canonical (minimal varints): the re-encoding is no longer
    // than what arrived (which may use overlong varints, which decode
    // accepts), and encoding it again gives the same bytes.
    let body_end = data.len() - decoded.auth_tag.map_or(0, |t| t.len() + 1);
    assert!(n <= body_end, "re-encoded {n} bytes from {body_end}");
    let mut third = vec![0u8; n + 64];
    let m = encode(&again, &mut third).expect("a canonical message re-encodes");
    assert_eq!(&third[..m], &buf[..n], "canonical encoding is stable");
}

/// Encodes a decoded datagram again (without its authentication trailer).
fn encode(d: &Datagram<'_>, buf: &mut [u8]) -> Result<usize, wire::Error> {
    fn items<'x>(delta: &gossip_core::state::Delta<'x>) -> impl Iterator<Item = DeltaItem<'x>> {
        delta
            .entries
            .map(|(k, v)| DeltaItem::State(k, v))
            .chain(delta.heartbeat.map(DeltaItem::Heartbeat))
    }
    let all = |written: usize, expected: usize| {
        if written == expected {
            Ok(())
        } else {
            Err(wire::Error::BufferTooSmall)
        }
    };
    let rumors: Vec<wire::Rumor> = d.rumors.collect();
    let rumors = rumors.as_slice();
    Ok(match d.message {
        Message::Syn(syn) => {
            let mut w = match syn.summary {
                Some(raw) => {
                    let summary = wire::Summary::from_wire(raw);
                    SynWriter::with_summary(buf, &d.header, rumors, &summary)?
                }
                None => SynWriter::new(buf, &d.header, rumors)?,
            };
            let pushed = syn.digests.filter(|g| w.push(g)).count();
            all(pushed, syn.digests.len())?;
            if let Some(f) = syn.filter {
                all(w.reserve_filter(f.bits().len()), f.bits().len())?;
            }
            w.finish_with_filter(syn.range, syn.filter)
        }
        Message::Ack(ack) => {
            let mut w = AckWriter::new(buf, &d.header, rumors)?;
            let pushed = ack.requests.filter(|g| w.push_request(g)).count();
            all(pushed, ack.requests.len())?;
            for x in ack.deltas {
                let n = items(&x.delta).count();
                all(
                    w.push_delta(x.endpoint, x.delta.generation, x.claim, items(&x.delta)),
                    n,
                )?;
            }
            w.finish()
        }
        Message::Ack2(ack2) => {
            let mut w = Ack2Writer::new(buf, &d.header, rumors)?;
            for x in ack2.deltas {
                let n = items(&x.delta).count();
                all(
                    w.push_delta(x.endpoint, x.delta.generation, x.claim, items(&x.delta)),
                    n,
                )?;
            }
            w.finish()
        }
        Message::CatchUp(c) => {
            let mut w = wire::CatchUpWriter::new(buf, &d.header, rumors)?;
            for x in c.deltas {
                let n = items(&x.delta).count();
                all(
                    w.push_delta(x.endpoint, x.delta.generation, x.claim, items(&x.delta)),
                    n,
                )?;
            }
            w.finish(c.next, c.more)
        }
        Message::Shutdown(s) => {
            wire::encode_shutdown(buf, &d.header, rumors, s.delta.generation, items(&s.delta))?
        }
        Message::Probe(p) => wire::encode_probe(buf, &d.header, rumors, &p)?,
    })
}

// ---- node_ops -------------------------------------------------------------

/// The generation of the fuzzed node; others are chosen around it.
const BASE: u64 = 1_700_000_000;

/// Who a datagram or digest is from or about.
#[derive(Arbitrary, Clone, Copy, Debug)]
pub enum Who {
    /// One of eight well-known peers, `10.0.0.2..=9:7000`.
    Peer(u8),
    /// Anyone.
    Any(u32, u16),
    /// The fuzzed node itself.
    Local,
}

impl Who {
    fn addr(self) -> SocketAddr {
        match self {
            Who::Peer(i) => SocketAddr::from(([10, 0, 0, 2 + i % 8], 7000)),
            Who::Any(ip, port) => SocketAddr::from((Ipv4Addr::from(ip), port)),
            Who::Local => LOCAL,
        }
    }
}

const LOCAL: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 7000);

/// A generation, hostile ones included.
#[derive(Arbitrary, Clone, Copy, Debug)]
pub enum Gen {
    /// Near the fuzzed node's.
    Near(i8),
    /// Far in the future (seconds ahead).
    Ahead(u32),
    /// Any value.
    Any(u64),
}

impl Gen {
    fn value(self) -> Generation {
        Generation(match self {
            Gen::Near(d) => BASE.saturating_add_signed(i64::from(d)),
            Gen::Ahead(s) => BASE.saturating_add(u64::from(s)),
            Gen::Any(g) => g,
        })
    }
}

/// A version, hostile ones included.
#[derive(Arbitrary, Clone, Copy, Debug)]
pub enum Ver {
    /// A small one.
    Small(u8),
    /// Any value (`u64::MAX` included).
    Any(u64),
}

impl Ver {
    fn value(self) -> Version {
        Version(match self {
            Ver::Small(v) => u64::from(v),
            Ver::Any(v) => v,
        })
    }
}

/// A state key, unknown codes and long names included.
#[derive(Arbitrary, Clone, Debug)]
pub enum Key {
    /// A code: well-known or not.
    Code(u16),
    /// A user-defined name.
    User(String),
}

impl Key {
    fn state_key(&self) -> StateKey<'_> {
        match self {
            Key::Code(c) => match ApplicationState::from_code(*c) {
                Some(s) => StateKey::Known(s),
                None => StateKey::Unknown(*c),
            },
            Key::User(name) => StateKey::User(name),
        }
    }
}

/// A liveness claim: incarnation, status, confirmations (taken modulo
/// their ranges, so every one is one a writer can make).
#[derive(Arbitrary, Clone, Copy, Debug)]
pub struct FuzzClaim(pub u8, pub u8, pub u8);

impl FuzzClaim {
    fn claim(self) -> Claim {
        let status =
            [Status::Alive, Status::Suspect, Status::Down, Status::Left][usize::from(self.1 % 4)];
        Claim {
            incarnation: u32::from(self.0 % 8),
            status,
            confirmers: if status == Status::Suspect { self.2 } else { 0 },
        }
    }
}

/// A rumor: about whom, which generation, what claim.
pub type FuzzRumor = (Who, Gen, FuzzClaim);

fn rumors(list: &[FuzzRumor]) -> Vec<Rumor> {
    list.iter()
        .take(8)
        .map(|(who, g, c)| Rumor {
            endpoint: who.addr(),
            generation: g.value(),
            claim: c.claim(),
        })
        .collect()
}

/// One endpoint's delta.
#[derive(Arbitrary, Clone, Debug)]
pub struct FuzzDelta {
    /// Whom it is about.
    pub who: Who,
    /// Its generation.
    pub generation: Gen,
    /// The sender's claim about its liveness.
    pub claim: FuzzClaim,
    /// Its states.
    pub entries: Vec<(Key, Ver, Vec<u8>)>,
    /// Its heartbeat.
    pub heartbeat: Option<Ver>,
}

impl FuzzDelta {
    fn items(&self) -> Vec<DeltaItem<'_>> {
        let mut items: Vec<DeltaItem<'_>> = self
            .entries
            .iter()
            .map(|(k, v, value)| {
                let key = k.state_key();
                DeltaItem::State(
                    key,
                    VersionedValue {
                        version: v.value(),
                        value,
                    },
                )
            })
            .collect();
        items.extend(self.heartbeat.map(|v| DeltaItem::Heartbeat(v.value())));
        items
    }
}

/// One operation against the node.
#[derive(Arbitrary, Clone, Debug)]
pub enum Op {
    /// Any bytes from anyone.
    Raw(Who, Vec<u8>),
    /// A SYN with these rumors and digests.
    Syn(
        Who,
        Vec<FuzzRumor>,
        Vec<(Who, Gen, Ver, FuzzClaim)>,
        u32,
        u32,
    ),
    /// A sync's SYN over `start..=end` whose filter has these bits (as
    /// many whole 8-byte words as fit) and this salt.
    FilterSyn(Who, u32, u32, u32, Vec<u8>),
    /// An ACK with these requests and deltas.
    Ack(Who, Vec<(Who, Gen, Ver, FuzzClaim)>, Vec<FuzzDelta>),
    /// An ACK2 with these rumors and deltas.
    Ack2(Who, Vec<FuzzRumor>, Vec<FuzzDelta>),
    /// A PING (0), PING-REQ (1), PING-ACK (2), NACK (3) or NEWS (4) with
    /// these rumors; the sequence number and the PING-REQ's target.
    Probe(Who, u8, u32, Who, Vec<FuzzRumor>),
    /// A SHUTDOWN notice.
    Shutdown(Who, FuzzDelta),
    /// ACK2s announcing `8 * n` invented endpoints.
    Flood(u8, u16),
    /// One of the node's own earlier datagrams, mutated, from its destination.
    Echo(u8, u16, u8),
    /// Time passes (milliseconds); due deadlines are handled.
    Advance(u16),
    /// A long pause (seconds): the node was not scheduled meanwhile.
    Jump(u16),
    /// `handle_timeout` now, due or not.
    EarlyTimeout,
    /// A local state change.
    SetState(Key, Vec<u8>),
    /// The node leaves gracefully.
    LocalShutdown,
    /// The node authenticates with key `k` (all bytes `k`), or stops.
    Keyring(Option<u8>),
    /// An ACK2 sealed with key `k` and sequence number `seq`.
    SealedAck2(u8, u64, Who, Vec<FuzzDelta>),
    /// A CATCH-UP with these deltas, resume position and "ask again".
    CatchUp(Who, Vec<FuzzDelta>, u32, bool),
}

/// The operations and the configuration of one `node_ops` run.
#[derive(Arbitrary, Clone, Debug)]
pub struct NodeOps {
    /// Seeds the node's RNG.
    pub seed: u64,
    /// Chooses the datagram size (256, 512 or 1400 bytes).
    pub size: u8,
    /// Whether the node has a seed to talk to.
    pub seeded: bool,
    /// What happens.
    pub ops: Vec<Op>,
}

/// Runs `data` as a [`NodeOps`] against one node.
pub fn node_ops(data: &[u8]) {
    let Ok(run) = NodeOps::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    run.run();
}

impl NodeOps {
    /// Runs the operations, checking the properties after each.
    pub fn run(&self) {
        let mut config = Config::lan(CLUSTER);
        config.max_datagram_size = [256, 512, 1400][usize::from(self.size % 3)];
        config.max_peers = 16;
        config.max_pending_replies = 2;
        config.limits.max_keys_per_endpoint = 8;
        config.limits.max_value_len = 64;
        config.limits.max_key_len = 16;
        let seeds: &[SocketAddr] = if self.seeded {
            &[Who::Peer(0).addr()]
        } else {
            &[]
        };
        let mut h = Harness {
            node: Node::new(
                config,
                LOCAL,
                Generation(BASE),
                seeds,
                Xoshiro256PlusPlus::seed_from_u64(self.seed),
                Instant::ZERO,
            )
            .expect("a valid configuration"),
            now: Instant::ZERO,
            sent: Vec::new(),
            views: HashMap::new(),
            buf: vec![0u8; 65_536],
            out: vec![0u8; 65_536],
        };
        h.settle();
        for op in self.ops.iter().take(256) {
            h.apply(op);
            h.settle();
        }
    }
}

struct Harness {
    node: Node<HeapStorage, Xoshiro256PlusPlus>,
    now: Instant,
    /// The node's last datagrams, for echoes.
    sent: Vec<(SocketAddr, Vec<u8>)>,
    /// The highest `(generation, version)` the node has held per endpoint.
    views: HashMap<SocketAddr, (Generation, Version)>,
    /// The node's transmits are written here.
    buf: Vec<u8>,
    /// Hostile messages are written here.
    out: Vec<u8>,
}

impl Harness {
    fn header(from: Who) -> Header {
        Header {
            cluster: CLUSTER,
            sender: from.addr(),
        }
    }

    fn apply(&mut self, op: &Op) {
        let mut out = std::mem::take(&mut self.out);
        self.operate(op, &mut out);
        self.out = out;
    }

    fn operate(&mut self, op: &Op, out: &mut [u8]) {
        match op {
            Op::Raw(from, bytes) => self.node.handle_datagram(self.now, from.addr(), bytes),
            Op::Syn(from, news, digests, start, end) => {
                let Ok(mut w) = SynWriter::new(out, &Self::header(*from), &rumors(news)) else {
                    return;
                };
                for (who, g, v, c) in digests {
                    w.push(&digest(*who, *g, *v, *c));
                }
                let n = w.finish(RingRange {
                    start: *start,
                    end: *end,
                });
                self.node.handle_datagram(self.now, from.addr(), &out[..n]);
            }
            Op::FilterSyn(from, start, end, salt, bits) => {
                let Ok(mut w) = SynWriter::new(out, &Self::header(*from), &[]) else {
                    return;
                };
                let len = w.reserve_filter(bits.len());
                let Some(bits) = bits.get(..len).filter(|b| !b.is_empty()) else {
                    return;
                };
                let range = RingRange {
                    start: *start,
                    end: *end,
                };
                let n = w.finish_with_filter(range, Some(wire::Filter::new(*salt, bits)));
                self.node.handle_datagram(self.now, from.addr(), &out[..n]);
            }
            Op::Ack(from, requests, deltas) => {
                let Ok(mut w) = AckWriter::new(out, &Self::header(*from), &[]) else {
                    return;
                };
                for (who, g, v, c) in requests {
                    w.push_request(&digest(*who, *g, *v, *c));
                }
                for d in deltas {
                    w.push_delta(
                        d.who.addr(),
                        d.generation.value(),
                        d.claim.claim(),
                        d.items(),
                    );
                }
                let n = w.finish();
                self.node.handle_datagram(self.now, from.addr(), &out[..n]);
            }
            Op::Ack2(from, news, deltas) => {
                let n = ack2(
                    out,
                    *from,
                    &rumors(news),
                    deltas.iter().map(|d| (d.who.addr(), d)),
                );
                self.node.handle_datagram(self.now, from.addr(), &out[..n]);
            }
            Op::CatchUp(from, deltas, next, more) => {
                let Ok(mut w) = wire::CatchUpWriter::new(out, &Self::header(*from), &[]) else {
                    return;
                };
                for d in deltas {
                    w.push_delta(
                        d.who.addr(),
                        d.generation.value(),
                        d.claim.claim(),
                        d.items(),
                    );
                }
                let n = w.finish(*next, *more);
                self.node.handle_datagram(self.now, from.addr(), &out[..n]);
            }
            Op::Probe(from, kind, seq, target, news) => {
                let probe = match kind % 5 {
                    0 => Probe::Ping { seq: *seq },
                    1 => Probe::PingReq {
                        seq: *seq,
                        target: target.addr(),
                    },
                    2 => Probe::PingAck { seq: *seq },
                    3 => Probe::Nack { seq: *seq },
                    _ => Probe::News,
                };
                if let Ok(n) = wire::encode_probe(out, &Self::header(*from), &rumors(news), &probe)
                {
                    self.node.handle_datagram(self.now, from.addr(), &out[..n]);
                }
            }
            Op::Shutdown(from, d) => {
                if let Ok(n) = wire::encode_shutdown(
                    out,
                    &Self::header(*from),
                    &[],
                    d.generation.value(),
                    d.items(),
                ) {
                    self.node.handle_datagram(self.now, from.addr(), &out[..n]);
                }
            }
            Op::Flood(count, first) => {
                let one = FuzzDelta {
                    who: Who::Local,
                    generation: Gen::Near(0),
                    claim: FuzzClaim(0, 0, 0),
                    entries: vec![(Key::User("K".into()), Ver::Small(1), b"v".to_vec())],
                    heartbeat: Some(Ver::Small(2)),
                };
                for batch in 0..u32::from(*count).min(64) {
                    let base = u32::from(*first) * 1024 + batch * 8;
                    let invented = (0..8).map(|i| {
                        (
                            SocketAddr::from((Ipv4Addr::from(0x0a80_0000 + base + i), 7000)),
                            &one,
                        )
                    });
                    let n = ack2(out, Who::Peer(batch as u8), &[], invented);
                    self.node
                        .handle_datagram(self.now, Who::Peer(batch as u8).addr(), &out[..n]);
                }
            }
            Op::Echo(which, at, xor) => {
                if self.sent.is_empty() {
                    return;
                }
                let (to, mut bytes) = self.sent[usize::from(*which) % self.sent.len()].clone();
                let at = usize::from(*at) % (bytes.len() + 1);
                if let Some(b) = bytes.get_mut(at) {
                    *b ^= xor;
                }
                self.node.handle_datagram(self.now, to, &bytes);
            }
            Op::Advance(ms) => self.now = self.now + Duration::from_millis(u64::from(*ms)),
            Op::Jump(s) => self.now = self.now + Duration::from_secs(u64::from(*s)),
            Op::EarlyTimeout => self.node.handle_timeout(self.now),
            Op::SetState(key, value) => {
                let key = key.state_key();
                // Refusals (limits) are fine; they must change nothing.
                let before = self.node.local_state().clone();
                if self.node.set_local_state(key, value).is_err() {
                    assert_eq!(
                        self.node.local_state(),
                        &before,
                        "a refused write changed the state"
                    );
                }
            }
            Op::LocalShutdown => self.node.shutdown(self.now),
            Op::Keyring(k) => self
                .node
                .set_keyring(k.map(|k| Keyring::new(ClusterKey::new([k; 32])))),
            Op::SealedAck2(k, seq, from, deltas) => {
                let n = ack2(out, *from, &[], deltas.iter().map(|d| (d.who.addr(), d)));
                let sealed = Keyring::new(ClusterKey::new([*k; 32])).seal(out, n, *seq);
                if let Some(n) = sealed {
                    self.node.handle_datagram(self.now, from.addr(), &out[..n]);
                }
            }
        }
    }

    /// What a correct binding does: handle due deadlines, drain, then check.
    fn settle(&mut self) {
        for _ in 0..8 {
            if self.node.poll_timeout().is_none_or(|t| t > self.now) {
                break;
            }
            self.node.handle_timeout(self.now);
            self.drain();
        }
        self.drain();
        self.check();
    }

    fn drain(&mut self) {
        let max = self.node.config().max_datagram_size;
        while let Some(t) = self.node.poll_transmit(self.now, &mut self.buf) {
            assert!(t.size <= max, "a {} byte datagram (max {max})", t.size);
            let bytes = self.buf[..t.size].to_vec();
            wire::decode(&bytes, CLUSTER).expect("the node's own datagrams decode");
            if self.sent.len() == 16 {
                self.sent.remove(0);
            }
            self.sent.push((t.destination, bytes));
        }
        while let Some(e) = self.node.poll_event() {
            if let Event::Removed { endpoint } = e {
                self.views.remove(&endpoint);
            }
        }
    }

    fn check(&mut self) {
        if let Some(t) = self.node.poll_timeout() {
            assert!(
                t > self.now,
                "deadline {t:?} not after now {:?} once settled",
                self.now
            );
        }
        let config = self.node.config();
        assert!(self.node.endpoint_count() <= config.max_peers);
        let max_bytes = config.limits.max_state_bytes();
        for p in self.node.endpoints() {
            let state = p.state();
            assert!(state.len() <= config.limits.max_keys_per_endpoint);
            assert!(state.stored_bytes() <= max_bytes);
            let now = (state.generation(), state.max_version());
            let before = self.views.entry(p.addr()).or_insert(now);
            assert!(
                now >= *before,
                "{}: went back from {before:?} to {now:?}",
                p.addr()
            );
            *before = now;
        }
    }
}

fn digest(who: Who, g: Gen, v: Ver, c: FuzzClaim) -> GossipDigest {
    GossipDigest {
        endpoint: who.addr(),
        generation: g.value(),
        max_version: v.value(),
        claim: c.claim(),
    }
}

fn ack2<'d>(
    out: &mut [u8],
    from: Who,
    rumors: &[Rumor],
    deltas: impl Iterator<Item = (SocketAddr, &'d FuzzDelta)>,
) -> usize {
    let Ok(mut w) = Ack2Writer::new(out, &Harness::header(from), rumors) else {
        return 0;
    };
    for (endpoint, d) in deltas {
        w.push_delta(endpoint, d.generation.value(), d.claim.claim(), d.items());
    }
    w.finish()
}

// ---- cluster_ops ----------------------------------------------------------

/// Runs `data` as a [`FaultSchedule`]; panics with the simulator's report if
/// an invariant breaks or the cluster does not converge once faults stop.
pub fn cluster_ops(data: &[u8]) {
    let Ok(schedule) = FaultSchedule::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    if let Err(e) = schedule.run() {
        panic!("{e}\n{schedule:?}");
    }
}
