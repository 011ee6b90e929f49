//! A deterministic many-node simulator for [`gossip_core`].
//!
//! [`Sim`] drives N [`Node`]s on a virtual clock that jumps to the earliest
//! deadline or delivery, over a seeded network model ([`NetworkModel`]:
//! latency, loss, duplication, and the reordering that random latency brings)
//! with faults injected by the caller: partitions into arbitrary groups and
//! healing, crashes, restarts with a higher generation, and pauses (a node
//! that stops processing, then resumes with what queued up for it). The same
//! [`SimConfig`] and the same calls give the same run, byte for byte.
//!
//! While it runs, the simulator checks the protocol's invariants and records
//! the first [`Violation`]:
//!
//! - no datagram is larger than `max_datagram_size`;
//! - per endpoint, no node's view goes back in `(generation, version)`;
//! - a removed endpoint is not brought back by stale gossip (an older or equal
//!   generation);
//! - and, on request ([`Sim::check_converged`]), every live node has the same
//!   view of every live node.
//!
//! [`scenario`] builds the standard scenarios and their [`Figures`] on top.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use gossip_core::state::{Generation, StateKey, Version};
use gossip_core::wire::{self, Message};
use gossip_core::{Config, ConfigError, Event, HeapStorage, Instant, Node};
use rand_core::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

pub mod faults;
pub mod fuzz;
pub mod scenario;

pub use scenario::{Figures, Scenario, ScenarioConfig};

/// The node type the simulator runs.
pub type SimNode = Node<HeapStorage, Xoshiro256PlusPlus>;

/// How the simulated network treats each datagram.
#[derive(Clone, Debug, PartialEq)]
pub struct NetworkModel {
    /// The least one-way latency.
    pub latency: Duration,
    /// Extra latency, uniform in `0..=jitter` per datagram: reorders.
    pub jitter: Duration,
    /// Probability a datagram is lost.
    pub loss: f64,
    /// Probability a datagram is delivered twice.
    pub duplicate: f64,
}

impl Default for NetworkModel {
    /// A data-center LAN: 0.5 ms to 2.5 ms, no loss, no duplicates.
    fn default() -> Self {
        Self {
            latency: Duration::from_micros(500),
            jitter: Duration::from_millis(2),
            loss: 0.0,
            duplicate: 0.0,
        }
    }
}

/// What a simulation is made of.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Nodes; node 0 is every node's seed.
    pub nodes: usize,
    /// Seeds the network and every node's RNG.
    pub seed: u64,
    /// Every node's configuration.
    pub node: Config,
    /// The network.
    pub network: NetworkModel,
    /// Nodes start at random times in `0..start_spread`.
    pub start_spread: Duration,
}

impl SimConfig {
    /// `nodes` nodes with `node` configuration on a default network, starting
    /// within 100 ms.
    pub fn new(nodes: usize, seed: u64, node: Config) -> Self {
        Self {
            nodes,
            seed,
            node,
            network: NetworkModel::default(),
            start_spread: Duration::from_millis(100),
        }
    }
}

/// A broken protocol invariant, with what reproduces it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The simulation seed.
    pub seed: u64,
    /// Virtual time when it was seen.
    pub at: Instant,
    /// What broke.
    pub what: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "invariant violated at {:?} (seed {}): {}",
            self.at, self.seed, self.what
        )
    }
}

impl std::error::Error for Violation {}

/// Sees every event every node reports.
pub trait Observer {
    /// `node` reported `event` at `now`.
    fn on_event(&mut self, now: Instant, node: usize, event: &Event<'_>);
}

impl Observer for () {
    fn on_event(&mut self, _: Instant, _: usize, _: &Event<'_>) {}
}

/// Network-wide counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Datagrams sent by all nodes.
    pub datagrams: u64,
    /// Their bytes.
    pub bytes: u64,
    /// The largest datagram sent.
    pub max_datagram: usize,
    /// Datagrams the network lost (loss, partition, crashed receiver).
    pub lost: u64,
    /// Datagrams the network delivered twice.
    pub duplicated: u64,
    /// Datagrams delivered.
    pub delivered: u64,
}

struct Slot {
    addr: SocketAddr,
    node: Option<SimNode>,
    generation: u64,
    /// Paused until then: nothing is processed, deliveries wait.
    paused_until: Option<Instant>,
    /// The deadline a timer is scheduled for.
    scheduled: Option<Instant>,
    group: u32,
}

enum Action {
    Start { node: u32 },
    Timeout { node: u32 },
    Deliver { to: u32, from: u32, bytes: Vec<u8> },
}

struct Scheduled {
    at: Instant,
    seq: u64,
    action: Action,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// The simulator.
pub struct Sim {
    cfg: SimConfig,
    now: Instant,
    slots: Vec<Slot>,
    by_addr: HashMap<SocketAddr, u32>,
    queue: BinaryHeap<Reverse<Scheduled>>,
    seq: u64,
    rng: Xoshiro256PlusPlus,
    buf: Vec<u8>,
    totals: Totals,
    /// (observer, endpoint) -> generation it had when the observer marked
    /// it down; moved to `removed` on removal.
    down_generation: HashMap<(u32, u32), Generation>,
    removed: HashMap<(u32, u32), Generation>,
    violation: Option<Violation>,
    /// Views before a datagram is handled, for the monotonicity check.
    scratch: Vec<(usize, SocketAddr, Generation, Version)>,
}

/// The generation nodes start with (seconds since the epoch, as bindings do).
pub const BASE_GENERATION: u64 = 1_700_000_000;

/// Node `i`'s address: `10.a.b.c:7000`.
pub fn node_addr(i: usize) -> SocketAddr {
    let i = i as u32 + 1;
    SocketAddr::from((Ipv4Addr::from(0x0a00_0000 | (i & 0x00ff_ffff)), 7000))
}

impl Sim {
    /// A simulation of `cfg.nodes` nodes, each starting at a random time
    /// within `cfg.start_spread`, node 0 their seed. Fails if the node
    /// configuration is invalid.
    pub fn new(cfg: SimConfig) -> Result<Self, ConfigError> {
        cfg.node.validate()?;
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(cfg.seed);
        let mut sim = Sim {
            now: Instant::ZERO,
            slots: Vec::with_capacity(cfg.nodes),
            by_addr: HashMap::with_capacity(cfg.nodes),
            queue: BinaryHeap::new(),
            seq: 0,
            rng: Xoshiro256PlusPlus::seed_from_u64(0),
            buf: vec![0u8; cfg.node.max_datagram_size],
            totals: Totals::default(),
            down_generation: HashMap::new(),
            removed: HashMap::new(),
            violation: None,
            scratch: Vec::new(),
            cfg,
        };
        for i in 0..sim.cfg.nodes {
            let addr = node_addr(i);
            sim.by_addr.insert(addr, i as u32);
            sim.slots.push(Slot {
                addr,
                node: None,
                generation: BASE_GENERATION,
                paused_until: None,
                scheduled: None,
                group: 0,
            });
            let spread = sim.cfg.start_spread.as_micros() as u64;
            let at = Instant::from_micros(if spread > 0 {
                rng.next_u64() % spread
            } else {
                0
            });
            sim.schedule(at, Action::Start { node: i as u32 });
        }
        sim.rng = rng;
        Ok(sim)
    }

    // ---- running ----------------------------------------------------------

    /// Handles the next scheduled delivery or deadline. Returns false when
    /// nothing is left to do.
    pub fn step(&mut self, observer: &mut impl Observer) -> bool {
        let Some(Reverse(next)) = self.queue.pop() else {
            return false;
        };
        self.now = self.now.max(next.at);
        match next.action {
            Action::Start { node } => self.start(node as usize, observer),
            Action::Timeout { node } => self.timeout(node as usize, observer),
            Action::Deliver { to, from, bytes } => self.deliver(to, from, bytes, observer),
        }
        true
    }

    /// Steps until virtual time reaches `until` (or nothing is left).
    pub fn run_until(&mut self, until: Instant, observer: &mut impl Observer) {
        while self.queue.peek().is_some_and(|Reverse(s)| s.at <= until) {
            self.step(observer);
        }
        self.now = self.now.max(until);
    }

    /// Steps until `done` holds (checked after every step) or virtual time
    /// passes `limit`. Returns whether `done` held.
    pub fn run_while<O: Observer>(
        &mut self,
        limit: Instant,
        observer: &mut O,
        mut done: impl FnMut(&Sim, &O) -> bool,
    ) -> bool {
        loop {
            if done(self, observer) {
                return true;
            }
            match self.queue.peek() {
                Some(Reverse(s)) if s.at <= limit => {
                    self.step(observer);
                }
                _ => {
                    self.now = self.now.max(limit);
                    return done(self, observer);
                }
            }
        }
    }

    // ---- faults and commands ----------------------------------------------

    /// Node `i` crashes: it stops, its state is lost, datagrams to it vanish.
    pub fn crash(&mut self, i: usize) {
        if let Some(slot) = self.slots.get_mut(i) {
            slot.node = None;
            slot.scheduled = None;
            slot.paused_until = None;
        }
    }

    /// Node `i` starts again, with a higher generation and no state.
    pub fn restart(&mut self, i: usize, observer: &mut impl Observer) {
        if let Some(slot) = self.slots.get_mut(i) {
            slot.generation += 1;
            slot.node = None;
            slot.paused_until = None;
            slot.scheduled = None;
        }
        self.start(i, observer);
    }

    /// Node `i` stops processing for `d`; what arrives meanwhile waits.
    pub fn pause(&mut self, i: usize, d: Duration) {
        let until = self.now + d;
        if let Some(slot) = self.slots.get_mut(i)
            && slot.node.is_some()
        {
            slot.paused_until = Some(until);
            self.schedule(until, Action::Timeout { node: i as u32 });
        }
    }

    /// Splits the network: `groups[i]` is node i's group; datagrams between
    /// groups are lost. Nodes beyond `groups` are in group 0.
    pub fn partition(&mut self, groups: &[u32]) {
        for (i, slot) in self.slots.iter_mut().enumerate() {
            slot.group = groups.get(i).copied().unwrap_or(0);
        }
    }

    /// Heals every partition.
    pub fn heal(&mut self) {
        for slot in &mut self.slots {
            slot.group = 0;
        }
    }

    /// Changes the network model from now on.
    pub fn set_network(&mut self, network: NetworkModel) {
        self.cfg.network = network;
    }

    /// Sets an application state of node `i` (running and not shut down;
    /// otherwise nothing happens).
    pub fn set_state(&mut self, i: usize, key: &str, value: &[u8], observer: &mut impl Observer) {
        if !self.is_up(i) {
            return;
        }
        if let Some(node) = self.slots.get_mut(i).and_then(|s| s.node.as_mut()) {
            // Limits are generous in simulations; a refusal is a test bug.
            if let Err(e) = node.set_local_state(StateKey::parse(key), value) {
                self.fail(format!("node {i} refused set_state({key}): {e}"));
            }
        }
        self.drain(i, observer);
    }

    /// Node `i` shuts down gracefully.
    pub fn shutdown(&mut self, i: usize, observer: &mut impl Observer) {
        let now = self.now;
        if let Some(node) = self.slots.get_mut(i).and_then(|s| s.node.as_mut()) {
            node.shutdown(now);
        }
        self.drain(i, observer);
    }

    // ---- reading ----------------------------------------------------------

    /// Virtual time now.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// The configuration.
    pub fn config(&self) -> &SimConfig {
        &self.cfg
    }

    /// Node `i`, if running.
    pub fn node(&self, i: usize) -> Option<&SimNode> {
        self.slots.get(i).and_then(|s| s.node.as_ref())
    }

    /// Nodes in the simulation (running or not).
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether there are no nodes.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Node `i`'s address.
    pub fn addr(&self, i: usize) -> SocketAddr {
        node_addr(i)
    }

    /// The node at `addr`.
    pub fn index_of(&self, addr: &SocketAddr) -> Option<usize> {
        self.by_addr.get(addr).map(|i| *i as usize)
    }

    /// Whether node `i` runs (started, not crashed; paused counts as running).
    pub fn is_up(&self, i: usize) -> bool {
        self.node(i).is_some_and(|n| !n.is_shutting_down())
    }

    /// Whether node `i` is paused.
    pub fn is_paused(&self, i: usize) -> bool {
        self.slots.get(i).is_some_and(|s| s.paused_until.is_some())
    }

    /// Whether `a` and `b` can exchange datagrams now.
    pub fn connected(&self, a: usize, b: usize) -> bool {
        match (self.slots.get(a), self.slots.get(b)) {
            (Some(x), Some(y)) => x.group == y.group,
            _ => false,
        }
    }

    /// Node `i`'s current generation.
    pub fn generation(&self, i: usize) -> u64 {
        self.slots.get(i).map_or(0, |s| s.generation)
    }

    /// Network counters.
    pub fn totals(&self) -> &Totals {
        &self.totals
    }

    /// The first invariant violation seen, if any.
    pub fn violation(&self) -> Option<&Violation> {
        self.violation.as_ref()
    }

    /// Checks that every running node sees every other running node alive,
    /// with the same generation and application states as the node itself
    /// has. Records and returns a violation otherwise.
    pub fn check_converged(&mut self) -> Result<(), Violation> {
        if let Some(what) = self.divergence() {
            self.fail(what);
        }
        match &self.violation {
            Some(v) => Err(v.clone()),
            None => Ok(()),
        }
    }

    /// Why the running nodes' views differ, if they do.
    pub fn divergence(&self) -> Option<String> {
        let up: Vec<usize> = (0..self.len()).filter(|i| self.is_up(*i)).collect();
        for &i in &up {
            let Some(observer) = self.node(i) else {
                continue;
            };
            for &j in &up {
                if i == j {
                    continue;
                }
                let Some(target) = self.node(j) else {
                    continue;
                };
                let Some(view) = observer.endpoint(&node_addr(j)) else {
                    return Some(format!("node {i} does not know node {j}"));
                };
                if !view.is_alive() {
                    return Some(format!("node {i} sees node {j} {:?}", view.liveness()));
                }
                let own = target.local_state();
                if view.state().generation() != own.generation() {
                    return Some(format!("node {i} has an old generation of node {j}"));
                }
                let same = own.len() == view.state().len()
                    && own
                        .entries()
                        .all(|(k, v)| view.state().get(&k).is_some_and(|w| w == v));
                if !same {
                    return Some(format!("node {i} has other states for node {j}"));
                }
            }
        }
        None
    }

    // ---- internals ----------------------------------------------------------

    fn schedule(&mut self, at: Instant, action: Action) {
        self.seq += 1;
        self.queue.push(Reverse(Scheduled {
            at,
            seq: self.seq,
            action,
        }));
    }

    fn fail(&mut self, what: String) {
        if self.violation.is_none() {
            self.violation = Some(Violation {
                seed: self.cfg.seed,
                at: self.now,
                what,
            });
        }
    }

    fn start(&mut self, i: usize, observer: &mut impl Observer) {
        let seed = node_addr(0);
        let Some(slot) = self.slots.get(i) else {
            return;
        };
        let rng = Xoshiro256PlusPlus::seed_from_u64(
            self.cfg.seed ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ slot.generation,
        );
        match Node::new(
            self.cfg.node.clone(),
            slot.addr,
            Generation(slot.generation),
            &[seed],
            rng,
            self.now,
        ) {
            Ok(node) => {
                if let Some(slot) = self.slots.get_mut(i) {
                    slot.node = Some(node);
                }
                self.drain(i, observer);
            }
            Err(e) => self.fail(format!("node {i} did not start: {e}")),
        }
    }

    fn timeout(&mut self, i: usize, observer: &mut impl Observer) {
        let now = self.now;
        let Some(slot) = self.slots.get_mut(i) else {
            return;
        };
        if let Some(until) = slot.paused_until {
            if now < until {
                return;
            }
            slot.paused_until = None;
        }
        slot.scheduled = None;
        if let Some(node) = slot.node.as_mut() {
            node.handle_timeout(now);
        }
        self.drain(i, observer);
    }

    fn deliver(&mut self, to: u32, from: u32, bytes: Vec<u8>, observer: &mut impl Observer) {
        let now = self.now;
        let i = to as usize;
        let Some(slot) = self.slots.get(i) else {
            return;
        };
        if slot.node.is_none() {
            self.totals.lost += 1;
            return;
        }
        if let Some(until) = slot.paused_until
            && now < until
        {
            // Waits in the socket buffer until the node resumes.
            self.schedule(until, Action::Deliver { to, from, bytes });
            return;
        }
        self.totals.delivered += 1;
        self.record_views(i, &bytes);
        let sender = node_addr(from as usize);
        if let Some(node) = self.slots.get_mut(i).and_then(|s| s.node.as_mut()) {
            node.handle_datagram(now, sender, &bytes);
        }
        self.check_views(i);
        self.drain(i, observer);
    }

    /// Notes node `i`'s views of the endpoints a datagram carries deltas for.
    fn record_views(&mut self, i: usize, bytes: &[u8]) {
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        if let Some(node) = self.node(i)
            && let Ok(d) = wire::decode(bytes, self.cfg.node.cluster)
        {
            let mut note = |addr: SocketAddr| {
                if let Some(slot) = node.endpoint_slot(&addr)
                    && let Some(p) = node.endpoint_at(slot)
                {
                    scratch.push((slot, addr, p.state().generation(), p.state().max_version()));
                }
            };
            match d.message {
                Message::Ack(a) => a.deltas.for_each(|x| note(x.endpoint)),
                Message::Ack2(a) => a.deltas.for_each(|x| note(x.endpoint)),
                Message::Shutdown(_) => note(d.header.sender),
                Message::Syn(_) => {}
            }
        }
        self.scratch = scratch;
    }

    fn check_views(&mut self, i: usize) {
        let Some(node) = self.node(i) else {
            return;
        };
        let mut broken = None;
        for (slot, addr, generation, version) in &self.scratch {
            // The slot still holds `addr`: handling one datagram never
            // removes an endpoint.
            if let Some(p) = node.endpoint_at(*slot) {
                let now = (p.state().generation(), p.state().max_version());
                if now < (*generation, *version) {
                    broken = Some(format!(
                        "node {i}'s view of {addr} went back from {:?} to {now:?}",
                        (generation, version)
                    ));
                }
            }
        }
        if let Some(what) = broken {
            self.fail(what);
        }
    }

    /// The drain rule: transmits, then the timeout, then events.
    fn drain(&mut self, i: usize, observer: &mut impl Observer) {
        let now = self.now;
        let max = self.cfg.node.max_datagram_size;
        let mut buf = std::mem::take(&mut self.buf);
        let mut out: Vec<(SocketAddr, Vec<u8>)> = Vec::new();
        let mut events: Vec<OwnedEvent> = Vec::new();
        let mut deadline = None;
        if let Some(node) = self.slots.get_mut(i).and_then(|s| s.node.as_mut()) {
            while let Some(t) = node.poll_transmit(now, &mut buf) {
                out.push((t.destination, buf.get(..t.size).unwrap_or(&[]).to_vec()));
            }
            deadline = node.poll_timeout();
            while let Some(e) = node.poll_event() {
                observer.on_event(now, i, &e);
                events.push(OwnedEvent::of(&e));
            }
        }
        self.buf = buf;
        for (to, bytes) in out {
            if bytes.len() > max {
                self.fail(format!("node {i} sent {} bytes (max {max})", bytes.len()));
            }
            self.send(i, to, bytes);
        }
        if let Some(at) = deadline {
            let slot = self.slots.get_mut(i);
            if let Some(slot) = slot
                && slot.scheduled != Some(at)
            {
                slot.scheduled = Some(at);
                let at = at.max(now);
                self.schedule(at, Action::Timeout { node: i as u32 });
            }
        }
        for e in events {
            self.watch(i, e);
        }
    }

    fn send(&mut self, from: usize, to: SocketAddr, bytes: Vec<u8>) {
        self.totals.datagrams += 1;
        self.totals.bytes += bytes.len() as u64;
        self.totals.max_datagram = self.totals.max_datagram.max(bytes.len());
        let Some(to) = self.index_of(&to) else {
            self.totals.lost += 1;
            return;
        };
        let net = self.cfg.network.clone();
        if !self.connected(from, to) || self.chance(net.loss) {
            self.totals.lost += 1;
            return;
        }
        let copies = if self.chance(net.duplicate) {
            self.totals.duplicated += 1;
            2
        } else {
            1
        };
        for _ in 0..copies {
            let jitter = net.jitter.as_micros() as u64;
            let extra = if jitter > 0 {
                self.rng.next_u64() % (jitter + 1)
            } else {
                0
            };
            let at = self.now + net.latency + Duration::from_micros(extra);
            self.schedule(
                at,
                Action::Deliver {
                    to: to as u32,
                    from: from as u32,
                    bytes: bytes.clone(),
                },
            );
        }
    }

    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && (self.rng.next_u64() as f64 / u64::MAX as f64) < p
    }

    /// Invariant bookkeeping on events.
    fn watch(&mut self, i: usize, e: OwnedEvent) {
        let key = |addr: SocketAddr, sim: &Sim| sim.index_of(&addr).map(|j| (i as u32, j as u32));
        match e {
            OwnedEvent::Down(addr) => {
                if let Some(k) = key(addr, self)
                    && let Some(p) = self.node(i).and_then(|n| n.endpoint(&addr))
                {
                    let generation = p.state().generation();
                    self.down_generation.insert(k, generation);
                }
            }
            OwnedEvent::Removed(addr) => {
                if let Some(k) = key(addr, self)
                    && let Some(g) = self.down_generation.remove(&k)
                {
                    self.removed.insert(k, g);
                }
            }
            OwnedEvent::Discovered(addr) => {
                if let Some(k) = key(addr, self)
                    && let Some(g) = self.removed.get(&k).copied()
                {
                    let now = self
                        .node(i)
                        .and_then(|n| n.endpoint(&addr))
                        .map(|p| p.state().generation());
                    if now.is_some_and(|n| n <= g) {
                        self.fail(format!(
                            "node {i} resurrected removed {addr} at generation {g:?}"
                        ));
                    } else {
                        self.removed.remove(&k);
                    }
                }
            }
            OwnedEvent::Other => {}
        }
    }
}

/// The events the invariant checks need, owned.
enum OwnedEvent {
    Down(SocketAddr),
    Removed(SocketAddr),
    Discovered(SocketAddr),
    Other,
}

impl OwnedEvent {
    fn of(e: &Event<'_>) -> Self {
        match *e {
            Event::Down { endpoint } => OwnedEvent::Down(endpoint),
            Event::Removed { endpoint } => OwnedEvent::Removed(endpoint),
            Event::Discovered { endpoint } => OwnedEvent::Discovered(endpoint),
            _ => OwnedEvent::Other,
        }
    }
}
