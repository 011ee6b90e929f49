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

/// Who a follower of node `i`'s events believes alive, by the rule
/// [`Event`] documents: `Up` puts an endpoint in, `Down`, `Restarted` and
/// `Removed` take it out (`Suspect` does not: a suspect is up until down).
fn followed<S: Storage>(net: &Net<S>, i: usize) -> Vec<SocketAddr> {
    let mut alive: Vec<SocketAddr> = Vec::new();
    for (_, e) in &net.events[i] {
        match e {
            Ev::Up(a) if !alive.contains(a) => alive.push(*a),
            Ev::Down(a) | Ev::Restarted { endpoint: a, .. } | Ev::Removed(a) => {
                alive.retain(|x| x != a);
            }
            _ => {}
        }
    }
    alive.sort();
    alive
}

/// Node `i`'s own live set.
fn alive_set<S: Storage>(net: &Net<S>, i: usize) -> Vec<SocketAddr> {
    let mut alive: Vec<SocketAddr> = net
        .node(i)
        .endpoints()
        .filter(|p| p.is_alive())
        .map(|p| p.addr())
        .collect();
    alive.sort();
    alive
}

/// Every running node's events, followed from its start, give its live set
/// (between two steps, when every node has drained its events).
fn assert_followers_agree<S: Storage>(net: &Net<S>, when: &str) {
    for i in (0..net.nodes.len()).filter(|i| net.nodes[*i].is_some()) {
        assert_eq!(
            followed(net, i),
            alive_set(net, i),
            "node {i}'s events disagree with its live set {when} (at {:?})",
            net.now
        );
    }
}

#[test]
fn events_followed_from_the_start_give_the_live_set_through_restarts() {
    let mut net = net(5);
    let converged = net.run_until(Duration::from_secs(30), |n| {
        assert_followers_agree(n, "while joining");
        n.converged()
    });
    assert!(converged);
    // Node 3 restarts before anyone convicts it: its seed hears the new
    // generation from it first-hand (alive all along), the others second-
    // or first-hand.
    let r = 3;
    net.nodes[r] = None;
    net.run_for(Duration::from_millis(300));
    assert!(net.node(0).endpoint(&addr(r)).unwrap().is_alive());
    net.nodes[r] = Some(net.make(r, config(), GEN + 100, &[addr(0)]));
    // A new node, followed from its start.
    net.events[r].clear();
    let restarted = Ev::Restarted {
        endpoint: addr(r),
        generation: GEN + 100,
    };
    let seen = net.run_until(Duration::from_secs(30), |n| {
        assert_followers_agree(n, "during the restart");
        (0..5).filter(|i| *i != r).all(|i| {
            n.saw(i, &restarted).is_some()
                && n.node(i).endpoint(&addr(r)).is_some_and(|p| {
                    p.is_alive() && p.state().generation() == Generation(GEN + 100)
                })
        })
    });
    assert!(seen);
    // It restarts again and dies before most have heard from it: whoever
    // learned the new generation second-hand marks that incarnation down
    // too.
    net.nodes[r] = Some(net.make(r, config(), GEN + 200, &[addr(0)]));
    net.events[r].clear();
    let learned = net.run_until(Duration::from_secs(10), |n| {
        n.node(0)
            .endpoint(&addr(r))
            .is_some_and(|p| p.state().generation() == Generation(GEN + 200))
    });
    assert!(learned);
    net.nodes[r] = None;
    let convicted = net.run_until(Duration::from_secs(120), |n| {
        assert_followers_agree(n, "after the second restart");
        (0..5).filter(|i| *i != r).all(|i| {
            n.node(i)
                .endpoint(&addr(r))
                .is_none_or(|p| p.liveness() == Liveness::Down)
        })
    });
    assert!(convicted);
    net.run_for(Duration::from_secs(10));
    assert_followers_agree(&net, "at the end");
}

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

/// An endpoint, a generation and `(key, value)` entries.
type DeltaSpec<'a> = (SocketAddr, u64, Vec<(&'a str, &'a [u8])>);

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

#[cfg(feature = "auth")]
mod hostile {
    use super::*;
    use crate::auth::{Key, Keyring, TRAILER_LEN};

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
    fn ack2_about(
        sender: SocketAddr,
        endpoint: SocketAddr,
        generation: u64,
        version: u64,
    ) -> Vec<u8> {
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

    fn sealed(bytes: &[u8], with: &Key, seq: u64) -> Vec<u8> {
        let mut buf = bytes.to_vec();
        buf.resize(bytes.len() + TRAILER_LEN, 0);
        let n = Keyring::new(with.clone())
            .seal(&mut buf, bytes.len(), seq)
            .unwrap();
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

#[cfg(feature = "catch-up")]
mod catch_up;
mod exchange;
mod liveness;

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
