//! Protocol tests: several nodes driven by a tiny loop on a virtual clock. No
//! sockets, no sleeps; every loop is bounded.

extern crate std;

use std::string::String;
use std::vec::Vec;
use std::{format, vec};

use rand_core::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

use super::*;
use crate::state::{DeltaItem, Limits};
use crate::table::{FixedStorage, HeapStorage};
use crate::wire::{ClusterId, EndpointDelta, encode_shutdown};

const CLUSTER: ClusterId = ClusterId::from_name("test");
const GEN: u64 = 1_700_000_000;
const LATENCY: Duration = Duration::from_millis(1);

type HeapNode = Node<HeapStorage, Xoshiro256PlusPlus>;

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, (i + 1) as u8], 7000))
}

fn config() -> Config {
    Config::new(CLUSTER)
}

/// An owned [`Event`], as the tests record them.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Ev {
    Discovered(SocketAddr),
    Up(SocketAddr),
    Suspect(SocketAddr),
    Down(SocketAddr),
    Restarted {
        endpoint: SocketAddr,
        generation: u64,
    },
    ShutDown(SocketAddr),
    Removed(SocketAddr),
    StateChanged {
        endpoint: SocketAddr,
        key: String,
        value: Vec<u8>,
        version: u64,
    },
}

impl From<Event<'_>> for Ev {
    fn from(e: Event<'_>) -> Self {
        use std::string::ToString;
        match e {
            Event::Discovered { endpoint } => Ev::Discovered(endpoint),
            Event::Up { endpoint } => Ev::Up(endpoint),
            Event::Suspect { endpoint } => Ev::Suspect(endpoint),
            Event::Down { endpoint } => Ev::Down(endpoint),
            Event::Restarted {
                endpoint,
                generation,
            } => Ev::Restarted {
                endpoint,
                generation: generation.0,
            },
            Event::ShutDown { endpoint } => Ev::ShutDown(endpoint),
            Event::Removed { endpoint } => Ev::Removed(endpoint),
            Event::StateChanged {
                endpoint,
                key,
                value,
            } => Ev::StateChanged {
                endpoint,
                key: key.to_string(),
                value: value.value.to_vec(),
                version: value.version.0,
            },
        }
    }
}

/// Whether `e` is a change of `key` to `value` at `endpoint` (any version).
fn is_change(endpoint: SocketAddr, key: &str, value: &[u8]) -> impl Fn(&Ev) -> bool {
    let key = String::from(key);
    let value = value.to_vec();
    move |e| {
        matches!(e, Ev::StateChanged { endpoint: a, key: k, value: v, .. }
            if *a == endpoint && *k == key && *v == value)
    }
}

struct InFlight {
    at: Instant,
    from: usize,
    to: SocketAddr,
    bytes: Vec<u8>,
}

/// N nodes on a perfect network with 1 ms latency.
struct Net<S: Storage> {
    nodes: Vec<Option<Node<S, Xoshiro256PlusPlus>>>,
    now: Instant,
    flight: Vec<InFlight>,
    /// Events each node reported, with when.
    events: Vec<Vec<(Instant, Ev)>>,
    /// Datagrams from or to these nodes are lost.
    muted: Vec<bool>,
    sent: usize,
}

impl<S: Storage> Net<S> {
    fn new(n: usize, config: impl Fn(usize) -> Config) -> Self {
        let mut net = Net {
            nodes: Vec::new(),
            now: Instant::from_millis(1_000),
            flight: Vec::new(),
            events: vec![Vec::new(); n],
            muted: vec![false; n],
            sent: 0,
        };
        for i in 0..n {
            let node = net.make(i, config(i), GEN, &[addr(0)]);
            net.nodes.push(Some(node));
        }
        net
    }

    fn make(
        &self,
        i: usize,
        config: Config,
        generation: u64,
        seeds: &[SocketAddr],
    ) -> Node<S, Xoshiro256PlusPlus> {
        let rng = Xoshiro256PlusPlus::seed_from_u64(i as u64 * 7919 + generation);
        Node::new(
            config,
            addr(i),
            Generation(generation),
            seeds,
            rng,
            self.now,
        )
        .unwrap()
    }

    fn node(&self, i: usize) -> &Node<S, Xoshiro256PlusPlus> {
        self.nodes[i].as_ref().unwrap()
    }

    fn node_mut(&mut self, i: usize) -> &mut Node<S, Xoshiro256PlusPlus> {
        self.nodes[i].as_mut().unwrap()
    }

    /// The drain rule: transmits, then (the timeout is read by `step`) events.
    fn drain(&mut self, i: usize) {
        let now = self.now;
        let Some(node) = self.nodes[i].as_mut() else {
            return;
        };
        let mut buf = [0u8; 1400];
        for _ in 0..10_000 {
            let Some(t) = node.poll_transmit(now, &mut buf) else {
                break;
            };
            assert!(t.size <= node.config().max_datagram_size);
            self.sent += 1;
            if !self.muted[i] {
                self.flight.push(InFlight {
                    at: now + LATENCY,
                    from: i,
                    to: t.destination,
                    bytes: buf[..t.size].to_vec(),
                });
            }
        }
        for _ in 0..10_000 {
            let Some(e) = node.poll_event() else {
                break;
            };
            self.events[i].push((now, Ev::from(e)));
        }
    }

    fn index_of(&self, a: SocketAddr) -> Option<usize> {
        (0..self.nodes.len()).find(|i| addr(*i) == a)
    }

    /// Advances the clock to the next delivery or deadline and handles it.
    fn step(&mut self) {
        let next_delivery = self.flight.iter().map(|f| f.at).min();
        let next_timeout = self
            .nodes
            .iter()
            .flatten()
            .filter_map(|n| n.poll_timeout())
            .min();
        let next = match (next_delivery, next_timeout) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b).expect("nothing left to do"),
        };
        // A node back from a pause may have a deadline in the past.
        let next = next.max(self.now);
        self.now = next;
        let (due, later): (Vec<_>, Vec<_>) = self.flight.drain(..).partition(|f| f.at <= next);
        self.flight = later;
        for f in due {
            let Some(to) = self.index_of(f.to) else {
                continue;
            };
            if self.muted[to] {
                continue;
            }
            if let Some(node) = self.nodes[to].as_mut() {
                node.handle_datagram(self.now, addr(f.from), &f.bytes);
                self.drain(to);
            }
        }
        for i in 0..self.nodes.len() {
            if let Some(node) = self.nodes[i].as_mut()
                && node.poll_timeout().is_some_and(|t| t <= self.now)
            {
                node.handle_timeout(self.now);
                self.drain(i);
            }
        }
    }

    /// Steps until `done` or `limit` of virtual time passes. Returns whether
    /// `done` held.
    fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&Self) -> bool) -> bool {
        let end = self.now + limit;
        for _ in 0..1_000_000 {
            if done(self) {
                return true;
            }
            if self.now > end {
                return false;
            }
            self.step();
        }
        false
    }

    fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        self.run_until(d + Duration::from_secs(1), |n| n.now >= end);
    }

    fn live(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|i| self.nodes[*i].is_some() && !self.muted[*i])
            .collect()
    }

    /// Every live node sees every other live node alive.
    fn converged(&self) -> bool {
        let live = self.live();
        live.iter().all(|&i| {
            live.iter().all(|&j| {
                i == j
                    || self
                        .node(i)
                        .endpoint(&addr(j))
                        .is_some_and(|p| p.is_alive())
            })
        })
    }

    fn saw(&self, i: usize, ev: &Ev) -> Option<Instant> {
        self.saw_where(i, |e| e == ev)
    }

    fn saw_where(&self, i: usize, f: impl Fn(&Ev) -> bool) -> Option<Instant> {
        self.events[i].iter().find(|(_, e)| f(e)).map(|(t, _)| *t)
    }
}

fn net(n: usize) -> Net<HeapStorage> {
    Net::new(n, |_| config())
}

/// Decodes a transmit for inspection.
fn decoded(bytes: &[u8]) -> Message<'_> {
    wire::decode(bytes, CLUSTER).unwrap().message
}

fn poll(node: &mut HeapNode, now: Instant) -> Option<(SocketAddr, Vec<u8>)> {
    let mut buf = [0u8; 1400];
    node.poll_transmit(now, &mut buf)
        .map(|t| (t.destination, buf[..t.size].to_vec()))
}

#[test]
fn three_nodes_exchange_syn_ack_ack2_step_by_step() {
    let now = Instant::from_millis(1000);
    let make = |i: usize| -> HeapNode {
        let rng = Xoshiro256PlusPlus::seed_from_u64(i as u64);
        Node::new(
            config(),
            addr(i),
            Generation(GEN + i as u64),
            &[addr(0)],
            rng,
            now,
        )
        .unwrap()
    };
    let (mut a, mut b, mut c) = (make(0), make(1), make(2));
    a.set_local_state(StateKey::parse("DC"), b"dc1").unwrap();
    c.set_local_state(StateKey::parse("zone"), b"z3").unwrap();

    // C joins through A (its seed) first.
    c.handle_timeout(now);
    let (to, syn) = poll(&mut c, now).unwrap();
    assert_eq!(to, addr(0));
    assert_eq!(poll(&mut c, now), None);
    a.handle_datagram(now, addr(2), &syn);
    let (_, ack) = poll(&mut a, now).unwrap();
    c.handle_datagram(now, addr(0), &ack);
    let (_, ack2) = poll(&mut c, now).unwrap();
    a.handle_datagram(now, addr(2), &ack2);
    assert!(a.endpoint(&addr(2)).unwrap().is_alive());

    // B joins through A, step by step.
    b.handle_timeout(now);
    let (to, syn) = poll(&mut b, now).unwrap();
    assert_eq!(to, addr(0));
    let Message::Syn(s) = decoded(&syn) else {
        panic!("expected SYN")
    };
    // B knows only itself, and says its list is complete.
    assert!(s.range.is_whole());
    let digests: Vec<_> = s.digests.collect();
    assert_eq!(digests.len(), 1);
    assert_eq!(digests[0].endpoint, addr(1));
    assert_eq!(digests[0].generation, Generation(GEN + 1));

    a.handle_datagram(now, addr(1), &syn);
    let (to, ack) = poll(&mut a, now).unwrap();
    assert_eq!(to, addr(1));
    assert_eq!(poll(&mut a, now), None);
    let Message::Ack(k) = decoded(&ack) else {
        panic!("expected ACK")
    };
    // A asks B for everything (it does not know B)...
    let requests: Vec<_> = k.requests.collect();
    assert_eq!(requests.len(), 1);
    assert_eq!(
        (requests[0].endpoint, requests[0].max_version),
        (addr(1), Version(0))
    );
    // ...and sends what B lacks: itself and C, whole.
    let mut delta_endpoints: Vec<_> = k.deltas.map(|d: EndpointDelta<'_>| d.endpoint).collect();
    delta_endpoints.sort();
    assert_eq!(delta_endpoints, [addr(0), addr(2)]);

    b.handle_datagram(now, addr(0), &ack);
    let (to, ack2) = poll(&mut b, now).unwrap();
    assert_eq!(to, addr(0));
    let Message::Ack2(k2) = decoded(&ack2) else {
        panic!("expected ACK2")
    };
    let deltas: Vec<_> = k2.deltas.collect();
    assert_eq!(deltas.len(), 1);
    assert_eq!(deltas[0].endpoint, addr(1));
    a.handle_datagram(now, addr(1), &ack2);
    assert_eq!(poll(&mut a, now), None);

    // B believes what A says: both alive (C only second-hand).
    assert_eq!(b.endpoint(&addr(0)).unwrap().liveness(), Liveness::Alive);
    assert_eq!(b.endpoint(&addr(2)).unwrap().liveness(), Liveness::Alive);
    assert_eq!(
        b.endpoint(&addr(0))
            .unwrap()
            .state()
            .get(&StateKey::parse("DC"))
            .unwrap()
            .value,
        b"dc1"
    );
    assert_eq!(
        b.endpoint(&addr(2))
            .unwrap()
            .state()
            .get(&StateKey::parse("zone"))
            .unwrap()
            .value,
        b"z3"
    );
    // A knows both, alive, with their states.
    assert!(a.endpoint(&addr(1)).unwrap().is_alive());
    assert_eq!(a.endpoint_count(), 2);
    assert_eq!(a.live_count(), 2);
    let (sent, received) = (a.stats().sent_by_kind, a.stats().received_by_kind);
    assert_eq!(received, [2, 0, 2, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(sent, [0, 2, 0, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(a.stats().received(Kind::Syn), 2);
    assert_eq!(a.stats().received(Kind::Ack2), 2);
    assert_eq!(a.stats().sent(Kind::Ack), 2);

    // B's events: A and C discovered and up, with their states.
    let mut events = Vec::new();
    while let Some(e) = b.poll_event() {
        events.push(Ev::from(e));
    }
    assert!(events.contains(&Ev::Discovered(addr(0))));
    assert!(events.contains(&Ev::Up(addr(0))));
    assert!(events.iter().any(is_change(addr(0), "DC", b"dc1")));
    assert!(events.contains(&Ev::Discovered(addr(2))));
    assert!(events.iter().any(is_change(addr(2), "zone", b"z3")));
    assert!(events.contains(&Ev::Up(addr(2))));
    assert_eq!(b.poll_event(), None);
}

#[test]
fn joining_through_a_seed_learns_everyone() {
    let mut net = net(8);
    assert!(net.run_until(Duration::from_secs(30), |n| n.converged()));
    for i in 0..8 {
        assert_eq!(net.node(i).endpoint_count(), 7);
        assert_eq!(net.node(i).live_count(), 7);
    }
    // Each node saw each other discovered and up exactly once.
    for i in 0..8 {
        for j in (0..8).filter(|j| *j != i) {
            let ups = net.events[i]
                .iter()
                .filter(|(_, e)| *e == Ev::Up(addr(j)))
                .count();
            assert_eq!(ups, 1, "node {i} saw {j} up {ups} times");
        }
    }
}

#[test]
fn a_state_change_reaches_everyone() {
    let mut net = net(10);
    assert!(net.run_until(Duration::from_secs(30), |n| n.converged()));
    let start = net.now;
    net.node_mut(3)
        .set_local_state(StateKey::parse("LOAD"), b"0.75")
        .unwrap();
    let has = |n: &Net<HeapStorage>| {
        (0..10).filter(|i| *i != 3).all(|i| {
            n.node(i)
                .endpoint(&addr(3))
                .and_then(|p| {
                    p.state()
                        .get(&StateKey::parse("LOAD"))
                        .map(|v| v.value == b"0.75")
                })
                .unwrap_or(false)
        })
    };
    assert!(net.run_until(Duration::from_secs(30), has));
    // And each node was told, once.
    for i in (0..10).filter(|i| *i != 3) {
        let t = net
            .saw_where(i, is_change(addr(3), "LOAD", b"0.75"))
            .unwrap();
        assert!(t >= start);
    }
}

#[test]
fn a_silent_node_is_suspected_then_down_and_seen_up_when_it_speaks_again() {
    let mut net = net(6);
    assert!(net.run_until(Duration::from_secs(30), |n| n.converged()));
    net.run_for(Duration::from_secs(20));
    let silent = 4;
    let victim = addr(silent);
    let muted_at = net.now;
    net.muted[silent] = true;
    let down = |n: &Net<HeapStorage>| {
        n.live()
            .iter()
            .all(|&i| n.saw(i, &Ev::Down(victim)).is_some())
    };
    assert!(net.run_until(Duration::from_secs(60), down));
    let interval = config().gossip_interval;
    for i in net.live() {
        // Suspected first (a probe failed, directly and through others),
        // down when the suspicion timed out: within a few rounds of the
        // first probe, whatever phi says.
        let suspected = net.saw(i, &Ev::Suspect(victim)).unwrap_or(Instant::MAX);
        let at = net.saw(i, &Ev::Down(victim)).unwrap();
        assert!(at > muted_at);
        let first_suspicion = net
            .live()
            .iter()
            .filter_map(|&j| net.saw(j, &Ev::Suspect(victim)))
            .min()
            .unwrap();
        assert!(suspected >= first_suspicion);
        assert!(
            at - first_suspicion >= interval / 2,
            "node {i} convicted early"
        );
        assert!(
            at - muted_at <= 12 * interval,
            "node {i} late: {:?}",
            at - muted_at
        );
        let p = net.node(i).endpoint(&victim).unwrap();
        assert_eq!(p.liveness(), Liveness::Down);
        assert!(!p.is_alive());
    }
    // It speaks again: it learns it is down, refutes with a newer
    // incarnation, and everyone sees it up.
    net.muted[silent] = false;
    let up_again = |n: &Net<HeapStorage>| {
        n.live().iter().filter(|&&i| i != silent).all(|&i| {
            n.events[i]
                .iter()
                .filter(|(_, e)| *e == Ev::Up(victim))
                .count()
                == 2
        })
    };
    assert!(net.run_until(Duration::from_secs(30), up_again));
    assert!(net.node(silent).incarnation() > 0);
    assert!(net.node(silent).stats().refutations > 0);
    assert!(net.run_until(Duration::from_secs(30), |n| n.converged()));
}

#[test]
fn graceful_shutdown_is_seen_at_once() {
    let mut net = net(6);
    assert!(net.run_until(Duration::from_secs(30), |n| n.converged()));
    let leaving = 2;
    let at = net.now;
    net.node_mut(leaving).shutdown(at);
    assert!(net.node(leaving).is_shutting_down());
    net.drain(leaving);
    assert!(net.node(leaving).is_shut_down());
    assert_eq!(net.node(leaving).poll_timeout(), None);
    // One notice per live peer.
    assert_eq!(net.node(leaving).stats().sent(Kind::Shutdown), 5);
    net.run_for(LATENCY); // deliver the notices
    for i in (0..6).filter(|i| *i != leaving) {
        let p = net.node(i).endpoint(&addr(leaving)).unwrap();
        assert!(!p.is_alive(), "node {i}");
        assert!(p.has_left());
        assert_eq!(p.state().heartbeat().version, Version::MAX);
        assert_eq!(
            p.state()
                .get(&StateKey::Known(ApplicationState::Status))
                .unwrap()
                .value,
            SHUTDOWN_STATUS
        );
        let shut = net.saw(i, &Ev::ShutDown(addr(leaving))).unwrap();
        let down = net.saw(i, &Ev::Down(addr(leaving))).unwrap();
        assert!(shut - at <= LATENCY && down - at <= LATENCY);
    }
    // The shut-down node ignores what it receives (a SYN, here): counted,
    // unanswered.
    let before = net.node(leaving).stats().dropped(DropReason::ShutDown);
    let mut buf = vec![0u8; 1400];
    let n = net
        .node_mut(0)
        .write_syn(&mut buf, addr(leaving), None, false);
    assert!(n > 0);
    let now = net.now;
    net.node_mut(leaving)
        .handle_datagram(now, addr(0), &buf[..n]);
    assert_eq!(
        net.node(leaving).stats().dropped(DropReason::ShutDown),
        before + 1
    );
    assert!(net.node_mut(leaving).poll_transmit(now, &mut buf).is_none());
    net.run_for(Duration::from_secs(5));
    // Later gossip does not bring it back up.
    for i in (0..6).filter(|i| *i != leaving) {
        assert!(!net.node(i).endpoint(&addr(leaving)).unwrap().is_alive());
    }
}

#[test]
fn restart_with_a_newer_generation_replaces_state() {
    let mut net = net(5);
    let r = 3;
    net.node_mut(r)
        .set_local_state(StateKey::parse("old"), b"1")
        .unwrap();
    assert!(net.run_until(Duration::from_secs(30), |n| n.converged()));
    assert!(net.run_until(Duration::from_secs(30), |n| {
        (0..5)
            .filter(|i| *i != r)
            .all(|i| n.node(i).endpoint(&addr(r)).unwrap().state().len() == 1)
    }));
    // Crash, then restart with a higher generation and a different state.
    net.nodes[r] = None;
    net.run_for(Duration::from_secs(3));
    let mut fresh = net.make(r, config(), GEN + 100, &[addr(0)]);
    fresh.set_local_state(StateKey::parse("new"), b"2").unwrap();
    net.nodes[r] = Some(fresh);
    let restarted = Ev::Restarted {
        endpoint: addr(r),
        generation: GEN + 100,
    };
    let seen = |n: &Net<HeapStorage>| {
        (0..5).filter(|i| *i != r).all(|i| {
            n.saw(i, &restarted).is_some()
                && n.node(i)
                    .endpoint(&addr(r))
                    .is_some_and(|p| p.is_alive() && p.state().len() == 1)
        })
    };
    assert!(net.run_until(Duration::from_secs(30), seen));
    for i in (0..5).filter(|i| *i != r) {
        let p = net.node(i).endpoint(&addr(r)).unwrap();
        assert_eq!(p.state().generation(), Generation(GEN + 100));
        assert!(p.state().get(&StateKey::parse("old")).is_none());
        assert_eq!(p.state().get(&StateKey::parse("new")).unwrap().value, b"2");
    }
}

/// Everything observable about a node's view, to check nothing changed.
fn snapshot(node: &HeapNode) -> Vec<String> {
    let mut out = vec![format!("{:?}", node.local_state())];
    for p in node.endpoints() {
        out.push(format!(
            "{} {:?} {:?} {:?} {:?}",
            p.addr(),
            p.liveness(),
            p.state(),
            p.window,
            p.flags
        ));
    }
    out
}

#[test]
fn same_seed_same_inputs_same_bytes() {
    let run = || {
        let mut net = net(6);
        net.run_for(Duration::from_secs(15));
        let mut all = Vec::new();
        for i in 0..6 {
            all.push(snapshot(net.node(i)));
            all.push(vec![format!("{:?}", net.node(i).stats())]);
        }
        (all, net.sent)
    };
    assert_eq!(run(), run());
}

#[test]
fn removal_after_delay_then_quarantine_blocks_stale_gossip() {
    let mut net: Net<HeapStorage> = Net::new(4, |_| {
        let mut c = config();
        c.removal_delay = Duration::from_secs(30);
        c.quarantine_delay = Duration::from_secs(20);
        c
    });
    assert!(net.run_until(Duration::from_secs(30), |n| n.converged()));
    let gone = 3;
    net.nodes[gone] = None;
    let removed = Ev::Removed(addr(gone));
    assert!(net.run_until(Duration::from_secs(120), |n| {
        (0..3).all(|i| n.saw(i, &removed).is_some())
    }));
    for i in 0..3 {
        assert!(net.node(i).endpoint(&addr(gone)).is_none());
        assert_eq!(net.node(i).endpoint_count(), 2);
    }
    // Stale gossip (its old generation) during quarantine is ignored.
    let stale = {
        let mut buf = vec![0u8; 1400];
        let header = Header {
            cluster: CLUSTER,
            sender: addr(1),
        };
        let mut w = Ack2Writer::new(&mut buf, &header, &[]).unwrap();
        w.push_delta(
            addr(gone),
            Generation(GEN),
            Default::default(),
            [crate::state::DeltaItem::Heartbeat(Version(1 << 20))],
        );
        let n = w.finish();
        buf.truncate(n);
        buf
    };
    let now = net.now;
    let node = net.node_mut(0);
    node.handle_datagram(now, addr(1), &stale);
    assert!(node.endpoint(&addr(gone)).is_none());
    assert!(node.stats().ignored_quarantined > 0);
    // A real restart (newer generation) is welcome at once.
    let fresh = net.make(gone, config(), GEN + 1, &[addr(0)]);
    net.nodes[gone] = Some(fresh);
    assert!(net.run_until(Duration::from_secs(30), |n| n.converged()));
}

/// Member `i` of [`with_members`].
fn member(i: usize) -> SocketAddr {
    SocketAddr::from(([127, 0, 1, i as u8], 7000))
}

/// `node` learns `endpoints` alive (incarnation 0, heartbeat 3) from node
/// 1's ACK2s, 40 to a datagram.
fn learn_alive(node: &mut HeapNode, now: Instant, endpoints: &[SocketAddr]) {
    let header = Header {
        cluster: CLUSTER,
        sender: addr(1),
    };
    for batch in endpoints.chunks(40) {
        let mut buf = vec![0u8; 1400];
        let mut w = Ack2Writer::new(&mut buf, &header, &[]).unwrap();
        for &endpoint in batch {
            w.push_delta(
                endpoint,
                Generation(GEN),
                Claim::alive(0),
                [DeltaItem::Heartbeat(Version(3))],
            );
        }
        let n = w.finish();
        node.handle_datagram(now, addr(1), &buf[..n]);
    }
}

/// A lone node that learned `total` members from node 1's ACK2s.
fn with_members(c: Config, total: usize, now: Instant) -> HeapNode {
    let mut a: HeapNode = lone(c, now);
    let members: Vec<SocketAddr> = (0..total).map(member).collect();
    learn_alive(&mut a, now, &members);
    a
}

#[test]
fn a_local_pause_does_not_convict_everyone() {
    let mut net = net(4);
    assert!(net.run_until(Duration::from_secs(30), |n| n.converged()));
    net.run_for(Duration::from_secs(10));
    // Node 0 freezes for a minute: it neither runs rounds nor receives.
    let frozen = net.nodes[0].take();
    net.muted[0] = true;
    net.run_for(Duration::from_secs(60));
    net.nodes[0] = frozen;
    net.muted[0] = false;
    let downs_before = net.events[0]
        .iter()
        .filter(|(_, e)| matches!(e, Ev::Down(_)))
        .count();
    net.run_for(Duration::from_secs(10));
    let downs_after = net.events[0]
        .iter()
        .filter(|(_, e)| matches!(e, Ev::Down(_)))
        .count();
    assert_eq!(downs_before, downs_after);
    assert!(net.converged());
}

/// Node 0 alone, with node 1 as its seed.
fn lone<S: Storage>(config: Config, now: Instant) -> Node<S, Xoshiro256PlusPlus> {
    Node::new(
        config,
        addr(0),
        Generation(GEN),
        &[addr(1)],
        Xoshiro256PlusPlus::seed_from_u64(1),
        now,
    )
    .unwrap()
}

#[test]
fn second_hand_discoveries_take_the_liveness_gossip_carries() {
    let now = Instant::from_millis(1000);
    let make = |i: usize| -> HeapNode {
        let rng = Xoshiro256PlusPlus::seed_from_u64(i as u64);
        Node::new(config(), addr(i), Generation(GEN), &[addr(0)], rng, now).unwrap()
    };
    let mut b = make(1);
    // A tells B of C (alive at incarnation 2) and D (down at incarnation 1).
    let header = Header {
        cluster: CLUSTER,
        sender: addr(0),
    };
    let mut buf = vec![0u8; 1400];
    let mut w = Ack2Writer::new(&mut buf, &header, &[]).unwrap();
    let items = [DeltaItem::Heartbeat(Version(5))];
    w.push_delta(addr(2), Generation(GEN), Claim::alive(2), items);
    w.push_delta(addr(3), Generation(GEN), Claim::new(1, Status::Down), items);
    let n = w.finish();
    b.handle_datagram(now, addr(0), &buf[..n]);
    let c = b.endpoint(&addr(2)).unwrap();
    assert_eq!((c.liveness(), c.incarnation()), (Liveness::Alive, 2));
    let d = b.endpoint(&addr(3)).unwrap();
    assert_eq!((d.liveness(), d.incarnation()), (Liveness::Down, 1));
    let mut events = Vec::new();
    while let Some(e) = b.poll_event() {
        events.push(Ev::from(e));
    }
    assert!(events.contains(&Ev::Up(addr(2))));
    assert!(events.contains(&Ev::Discovered(addr(3))));
    assert!(!events.contains(&Ev::Up(addr(3))));
    assert!(!events.contains(&Ev::Down(addr(3))));
    assert_eq!(b.live_count(), 1);
    assert_eq!(b.unreachable_count(), 1);
}

#[test]
fn the_bogus_generation_limit_moves_with_time() {
    // A node up for two years accepts a peer that restarted just now, even
    // though that generation is more than a year past its own boot.
    let start = Instant::from_millis(1000);
    let rng = Xoshiro256PlusPlus::seed_from_u64(3);
    let mut a: HeapNode = Node::new(config(), addr(0), Generation(GEN), &[], rng, start).unwrap();
    let two_years = Duration::from_secs(2 * Limits::ONE_YEAR);
    let now = start + two_years;
    a.handle_timeout(now);
    let header = Header {
        cluster: CLUSTER,
        sender: addr(1),
    };
    let mut buf = vec![0u8; 1400];
    let mut w = Ack2Writer::new(&mut buf, &header, &[]).unwrap();
    let restarted = Generation(GEN + two_years.as_secs());
    w.push_delta(
        addr(1),
        restarted,
        Default::default(),
        [crate::state::DeltaItem::Heartbeat(Version(1))],
    );
    let n = w.finish();
    a.handle_datagram(now, addr(1), &buf[..n]);
    assert_eq!(a.stats().dropped(DropReason::BogusGeneration), 0);
    assert_eq!(
        a.endpoint(&addr(1)).unwrap().state().generation(),
        restarted
    );
}

// ---- authentication and hostile peers (feature `auth`) --------------------

/// `bytes` sealed with `with` at sequence number `seq`.
#[cfg(feature = "auth")]
fn sealed(bytes: &[u8], with: &crate::auth::Key, seq: u64) -> Vec<u8> {
    let mut buf = bytes.to_vec();
    buf.resize(bytes.len() + crate::auth::TRAILER_LEN, 0);
    let n = crate::auth::Keyring::new(with.clone())
        .seal(&mut buf, bytes.len(), seq)
        .unwrap();
    buf.truncate(n);
    buf
}

#[cfg(feature = "catch-up")]
mod catch_up;
mod defects;
mod events;
mod exchange;
#[cfg(feature = "auth")]
mod hostile;
mod liveness;
mod storage;

#[cfg(feature = "internals")]
#[test]
fn merged_views_are_the_views_before_the_datagram() {
    let now = Instant::ZERO + Duration::from_secs(1);
    let mut a = with_members(config(), 3, now);
    // A datagram without deltas about known members records nothing.
    learn_alive(&mut a, now, &[member(7)]);
    assert_eq!(
        a.merged_views().count(),
        0,
        "a new endpoint has no view yet"
    );
    let header = Header {
        cluster: CLUSTER,
        sender: addr(1),
    };
    let mut buf = vec![0u8; 1400];
    let mut w = Ack2Writer::new(&mut buf, &header, &[]).unwrap();
    for (i, v) in [(0, 5), (2, 9)] {
        w.push_delta(
            member(i),
            Generation(GEN),
            Claim::alive(0),
            [DeltaItem::Heartbeat(Version(v))],
        );
    }
    let n = w.finish();
    a.handle_datagram(now, addr(1), &buf[..n]);
    let views: Vec<_> = a.merged_views().collect();
    let slots: Vec<_> = [0, 2]
        .iter()
        .map(|&i| a.endpoint_slot(&member(i)).unwrap())
        .collect();
    assert_eq!(
        views,
        [
            (slots[0], Generation(GEN), Version(3)),
            (slots[1], Generation(GEN), Version(3)),
        ]
    );
    for (slot, v) in slots.iter().zip([5, 9]) {
        assert_eq!(
            a.endpoint_at(*slot).unwrap().state().max_version(),
            Version(v)
        );
    }
    // The next datagram starts a new record.
    a.handle_datagram(now, addr(1), &buf[..n]);
    assert_eq!(
        a.merged_views().map(|(_, _, v)| v).collect::<Vec<_>>(),
        [Version(5), Version(9)]
    );
}
