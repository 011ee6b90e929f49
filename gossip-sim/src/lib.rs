//! A deterministic many-node simulator for [`gossip_core`].
//!
//! [`Sim`] drives N [`Node`]s on a virtual clock that jumps to the earliest
//! deadline or delivery, in windows as long as the network's least latency
//! (nodes with work in the same window run on several threads: nothing one
//! sends can reach another within the window), over a seeded network model ([`NetworkModel`]:
//! latency, loss, duplication, and the reordering that random latency brings)
//! with faults injected by the caller: partitions into arbitrary groups and
//! healing, crashes, restarts with a higher generation, and pauses (a node
//! that stops processing, then resumes with what queued up for it). The same
//! [`SimConfig`] and the same calls give the same run, byte for byte, on any
//! number of threads.
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

use gossip_core::state::{Generation, StateKey};
use gossip_core::{Config, ConfigError, Event, HeapStorage, Instant, Node};
use rand_core::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

pub mod arena;
pub mod faults;
pub mod fuzz;
mod observed;
pub mod scenario;
mod step;
mod tracker;

use observed::Observed;
use step::{Effects, Job, NodeRun, World, jobs, run_job};

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
    /// Each node makes room for every other node when it starts
    /// ([`Node::reserve_peers`]), as a deployment that knows its cluster's
    /// size can: its tables are allocated once instead of growing (in huge
    /// pages when [`arena::TableAlloc`] is the global allocator).
    pub reserve_peers: bool,
    /// The application states node `i` (of generation `g`) sets before its
    /// first round, each time it starts, as Cassandra's nodes preload
    /// theirs before gossip starts.
    pub start_states: Option<StartStates>,
    /// The last `held_back` nodes do not start with the others; each starts
    /// when [`Sim::start`] is called for it.
    pub held_back: usize,
}

/// `(node, generation)` to the states it starts with.
pub type StartStates = fn(usize, u64) -> Vec<(&'static str, Vec<u8>)>;

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
            reserve_peers: false,
            start_states: None,
            held_back: 0,
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

    /// Whether events must arrive in time order across nodes (true by
    /// default). Each node's own arrive in its order either way, and all
    /// of a step's before the step returns; an observer whose account of
    /// one node does not depend on the order of the others' events returns
    /// false, and a step's events then arrive node by node, unsorted (a
    /// large run reports hundreds of millions).
    fn in_time_order(&self) -> bool {
        true
    }

    /// The observer's part that takes each node's events where the node
    /// runs, on the simulator's threads, if it has one (`None` by
    /// default). An observer whose account of each node reads that node's
    /// events alone gives one: then no event is copied for it, none waits
    /// for the step to end, and [`on_event`](Self::on_event) gets none.
    fn by_node(&self) -> Option<&dyn NodeObserver> {
        None
    }
}

/// Takes one node's events where that node runs ([`Observer::by_node`]):
/// calls for different nodes may come at once, on different threads; those
/// for one node come in its order, and all of a step's before the step
/// returns.
pub trait NodeObserver: Sync {
    /// Node `node` reported events at `now`: `events` hands each of them, in
    /// order, to the function it is given.
    fn on_node_events(&self, now: Instant, node: usize, events: &mut NodeEvents<'_>);
}

/// A node's events being handed over ([`NodeObserver::on_node_events`]):
/// called once, it passes each event in turn to the function it is given.
pub type NodeEvents<'a> = dyn FnMut(&mut dyn FnMut(&Event<'_>)) + 'a;

impl Observer for () {
    fn on_event(&mut self, _: Instant, _: usize, _: &Event<'_>) {}

    fn in_time_order(&self) -> bool {
        false
    }
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

impl Totals {
    fn add(&mut self, other: &Totals) {
        self.datagrams += other.datagrams;
        self.bytes += other.bytes;
        self.max_datagram = self.max_datagram.max(other.max_datagram);
        self.lost += other.lost;
        self.duplicated += other.duplicated;
        self.delivered += other.delivered;
    }
}

struct Slot {
    addr: SocketAddr,
    node: Option<SimNode>,
    generation: u64,
    /// Paused until then: nothing is processed, deliveries wait.
    paused_until: Option<Instant>,
    /// When the node's live timer fires. Timers set for deadlines that
    /// have since moved still fire, and are ignored: run, each would set
    /// one more timer for the next deadline, and a node's timers would
    /// multiply with every deadline change.
    scheduled: Option<Instant>,
    /// The network's randomness for what this node sends (loss,
    /// duplication, jitter): one stream per node, so a run does not depend
    /// on the order nodes are handled in.
    rng: Xoshiro256PlusPlus,
    /// Endpoint -> the generation it had when this node marked it down;
    /// moved to `removed` on removal (the resurrection check).
    down_generation: HashMap<u32, Generation>,
    removed: HashMap<u32, Generation>,
}

enum Action {
    Start,
    Timeout,
    Deliver { from: u32, bytes: Vec<u8> },
}

/// A node's actions in a window: `(at, seq, action)`, in order.
type Actions = Vec<(Instant, u64, Action)>;

struct Scheduled {
    at: Instant,
    seq: u64,
    node: u32,
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
///
/// It advances in windows as long as the network's least latency: nothing a
/// node sends in a window can arrive within it, so the nodes with something
/// to do in a window are handled independently, on the threads of the
/// `rayon` pool the simulation runs in (the global one, sized by
/// `RAYON_NUM_THREADS`, unless the caller installs its own), and their
/// effects are merged in a fixed order. The run is the same whatever the
/// number of threads. Run it on one of the pool's threads
/// (`ThreadPool::install`, as [`scenario::run`] does) so windows start
/// without a hand-over to another thread.
pub struct Sim {
    cfg: SimConfig,
    now: Instant,
    slots: Vec<Slot>,
    /// Each node's partition group (datagrams between groups are lost).
    groups: Vec<u32>,
    queue: BinaryHeap<Reverse<Scheduled>>,
    seq: u64,
    totals: Totals,
    violation: Option<Violation>,
    /// Windows run, and how many of them had enough nodes with work to be
    /// split between threads.
    windows: (u64, u64),
    /// The merged events' value bytes, kept between windows.
    event_bytes: Vec<u8>,
    /// The merged events and their delivery order (`(time in µs, node,
    /// index)`), kept between windows (their buffers are reused).
    merged_events: Vec<Observed>,
    event_order: Vec<(u64, u32, usize)>,
    /// The window being gathered (its buffer is reused).
    window: Vec<Scheduled>,
}

/// Windows with fewer nodes to handle run on the calling thread: handing
/// them to the pool costs more than it saves.
const PARALLEL_JOBS: usize = 3;

/// The generation nodes start with (seconds since the epoch, as bindings do).
pub const BASE_GENERATION: u64 = 1_700_000_000;

/// Node `i`'s address: `10.a.b.c:7000`.
pub fn node_addr(i: usize) -> SocketAddr {
    let i = i as u32 + 1;
    SocketAddr::from((Ipv4Addr::from(0x0a00_0000 | (i & 0x00ff_ffff)), 7000))
}

/// The node with address `addr` among `n` ([`node_addr`]'s inverse).
fn index_in(addr: &SocketAddr, n: usize) -> Option<u32> {
    Sim::index_for(*addr)
        .filter(|i| *i < n)
        .and_then(|i| u32::try_from(i).ok())
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
            groups: vec![0; cfg.nodes],
            queue: BinaryHeap::new(),
            seq: 0,
            totals: Totals::default(),
            violation: None,
            windows: (0, 0),
            event_bytes: Vec::new(),
            merged_events: Vec::new(),
            event_order: Vec::new(),
            window: Vec::new(),
            cfg,
        };
        for i in 0..sim.cfg.nodes {
            sim.slots.push(Slot {
                addr: node_addr(i),
                node: None,
                generation: BASE_GENERATION,
                paused_until: None,
                scheduled: None,
                rng: Xoshiro256PlusPlus::seed_from_u64(
                    sim.cfg.seed ^ 0x6e65_7477_6f72_6b00 ^ (i as u64).wrapping_mul(0x9e37_79b9),
                ),
                down_generation: HashMap::new(),
                removed: HashMap::new(),
            });
            let spread = sim.cfg.start_spread.as_micros() as u64;
            let at = Instant::from_micros(if spread > 0 {
                rng.next_u64() % spread
            } else {
                0
            });
            if i + sim.cfg.held_back < sim.cfg.nodes {
                sim.schedule(at, i as u32, Action::Start);
            }
        }
        Ok(sim)
    }

    // ---- running ----------------------------------------------------------

    /// Handles the next window of work: every delivery and deadline due
    /// within the network's least latency of the earliest one (at least
    /// that one). Returns false when nothing is left to do.
    pub fn step(&mut self, observer: &mut impl Observer) -> bool {
        self.step_until(Instant::MAX, observer)
    }

    /// The time of the next scheduled delivery or deadline.
    pub fn next_at(&self) -> Option<Instant> {
        self.queue.peek().map(|Reverse(s)| s.at)
    }

    /// Actions waiting: datagrams in flight, node starts and timers (a
    /// node's live one, and those set for deadlines that have since moved,
    /// until their time).
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// [`step`](Self::step), handling nothing later than `until`. Returns
    /// false when nothing is due by then.
    pub fn step_until(&mut self, until: Instant, observer: &mut impl Observer) -> bool {
        let Some(start) = self.next_at().filter(|at| *at <= until) else {
            return false;
        };
        let width = self.cfg.network.latency.max(Duration::from_micros(1));
        let end = (start + width).min(until + Duration::from_micros(1));
        // The window's work, by node (in node order), each node's in order.
        // (`start` itself always: at the end of time `end` saturates to it.)
        let mut window = std::mem::take(&mut self.window);
        while self
            .queue
            .peek()
            .is_some_and(|Reverse(s)| s.at < end || s.at == start)
        {
            if let Some(Reverse(s)) = self.queue.pop() {
                window.push(s);
            }
        }
        // Keys are unique (`seq` is): an unstable sort gives the one order.
        window.sort_unstable_by_key(|s| (s.node, s.at, s.seq));
        let mut due: Vec<(u32, Actions)> = Vec::new();
        for s in window.drain(..) {
            match due.last_mut() {
                Some((node, list)) if *node == s.node => list.push((s.at, s.seq, s.action)),
                _ => due.push((s.node, vec![(s.at, s.seq, s.action)])),
            }
        }
        self.window = window;
        let first_local_seq = self.seq + 1;
        let mut jobs = jobs(&mut self.slots, due);
        let world = World {
            cfg: &self.cfg,
            groups: &self.groups,
            observer: observer.by_node(),
        };
        let run = |job: &mut Job<'_>| run_job(job, &world, start, end, first_local_seq);
        let parallel = jobs.len() >= PARALLEL_JOBS;
        self.windows.0 += 1;
        self.windows.1 += u64::from(parallel);
        if parallel && rayon::current_num_threads() > 1 {
            use rayon::prelude::*;
            // One job per task: jobs are coarse (a node's whole share of
            // the window) and uneven, so an idle thread may take any one.
            jobs.par_iter_mut().with_max_len(1).for_each(run);
        } else {
            jobs.iter_mut().for_each(run);
        }
        let effects: Vec<(u32, Effects)> = jobs.into_iter().map(|j| (j.node, j.effects)).collect();
        // The clock reads the last moment handled, events or not.
        let last = effects.iter().map(|(_, fx)| fx.last).max().unwrap_or(start);
        self.now = self.now.max(last);
        self.merge(effects, observer);
        true
    }

    /// Applies the nodes' effects in node order: later actions into the
    /// queue, events to the observer (in time order if it asks), totals,
    /// violations.
    fn merge(&mut self, effects: Vec<(u32, Effects)>, observer: &mut impl Observer) {
        // The window's events in node order, each node's in its order, and
        // their delivery order: `(time, node, index)` keys, sorted (small
        // integer keys sort several times faster than the events would).
        let mut events = std::mem::take(&mut self.merged_events);
        let mut order = std::mem::take(&mut self.event_order);
        events.clear();
        order.clear();
        let mut bytes = std::mem::take(&mut self.event_bytes);
        bytes.clear();
        for (node, fx) in effects {
            for (at, to, action) in fx.later {
                self.schedule(at, to, action);
            }
            let base = bytes.len();
            bytes.extend_from_slice(&fx.event_bytes);
            for (at, e) in fx.events {
                order.push((at.as_micros(), node, events.len()));
                events.push(e.shifted(base));
            }
            self.totals.add(&fx.totals);
            if let Some((at, what)) = fx.violation {
                let earlier = self.violation.as_ref().is_none_or(|v| at < v.at);
                if earlier {
                    self.violation = Some(Violation {
                        seed: self.cfg.seed,
                        at,
                        what,
                    });
                }
            }
        }
        // Keys are unique (indices are): no need for a stable sort. A node's
        // events keep their order (its indices ascend with it). Unsorted,
        // they are in node order, each node's in its order.
        if observer.in_time_order() {
            order.sort_unstable();
        }
        for &(micros, node, k) in &order {
            if let Some(e) = events.get(k) {
                let at = Instant::from_micros(micros);
                e.with(&bytes, |event| observer.on_event(at, node as usize, event));
                self.now = self.now.max(at);
            }
        }
        self.event_bytes = bytes;
        self.merged_events = events;
        self.event_order = order;
    }

    /// Steps until virtual time reaches `until` (or nothing is left).
    pub fn run_until(&mut self, until: Instant, observer: &mut impl Observer) {
        while self.step_until(until, observer) {}
        self.now = self.now.max(until);
    }

    /// Steps until `done` holds (checked after every window) or virtual time
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
            if !self.step_until(limit, observer) {
                self.now = self.now.max(limit);
                return done(self, observer);
            }
        }
    }

    /// Runs `f` on node `i` now, outside any window (a command or a fault),
    /// and applies its effects.
    fn at_node(
        &mut self,
        i: usize,
        observer: &mut impl Observer,
        f: impl FnOnce(&mut NodeRun<'_, '_>),
    ) {
        let now = self.now;
        let first_local_seq = self.seq + 1;
        let Some(slot) = self.slots.get_mut(i) else {
            return;
        };
        let world = World {
            cfg: &self.cfg,
            groups: &self.groups,
            observer: observer.by_node(),
        };
        let mut fx = Effects::default();
        {
            let mut run = NodeRun {
                i: i as u32,
                slot,
                world: &world,
                now,
                end: now,
                local: BinaryHeap::new(),
                pending: Vec::new(),
                next_seq: first_local_seq,
                fx: &mut fx,
            };
            f(&mut run);
            run.flush_local();
        }
        self.merge(vec![(i as u32, fx)], observer);
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

    /// Node `i`, held back or crashed, starts now with its generation (a
    /// running node is left alone).
    pub fn start(&mut self, i: usize, observer: &mut impl Observer) {
        if self.slots.get(i).is_some_and(|s| s.node.is_none()) {
            self.at_node(i, observer, |run| run.start());
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
        self.at_node(i, observer, |run| run.start());
    }

    /// Node `i` stops processing for `d`; what arrives meanwhile waits.
    pub fn pause(&mut self, i: usize, d: Duration) {
        let until = self.now + d;
        if let Some(slot) = self.slots.get_mut(i)
            && slot.node.is_some()
        {
            slot.paused_until = Some(until);
            self.schedule(until, i as u32, Action::Timeout);
        }
    }

    /// Splits the network: `groups[i]` is node i's group; datagrams between
    /// groups are lost. Nodes beyond `groups` are in group 0.
    pub fn partition(&mut self, groups: &[u32]) {
        for (i, g) in self.groups.iter_mut().enumerate() {
            *g = groups.get(i).copied().unwrap_or(0);
        }
    }

    /// Heals every partition.
    pub fn heal(&mut self) {
        self.groups.iter_mut().for_each(|g| *g = 0);
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
        self.at_node(i, observer, |run| {
            if let Some(node) = run.slot.node.as_mut()
                && let Err(e) = node.set_local_state(StateKey::parse(key), value)
            {
                // Limits are generous in simulations; a refusal is a test bug.
                run.fail(format!("node {i} refused set_state({key}): {e}"));
            }
            run.drain();
        });
    }

    /// Node `i` shuts down gracefully.
    pub fn shutdown(&mut self, i: usize, observer: &mut impl Observer) {
        self.at_node(i, observer, |run| {
            let now = run.now;
            if let Some(node) = run.slot.node.as_mut() {
                node.shutdown(now);
            }
            run.drain();
        });
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

    /// The node index of a simulated address ([`node_addr`]'s inverse), in
    /// a simulation of any size.
    pub fn index_for(addr: SocketAddr) -> Option<usize> {
        match addr {
            SocketAddr::V4(a) if a.port() == 7000 => {
                let bits = u32::from(*a.ip());
                let i = (bits & 0x00ff_ffff).checked_sub(1)?;
                (bits >> 24 == 10).then_some(i as usize)
            }
            _ => None,
        }
    }

    /// The node at `addr`.
    pub fn index_of(&self, addr: &SocketAddr) -> Option<usize> {
        index_in(addr, self.slots.len()).map(|i| i as usize)
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
        match (self.groups.get(a), self.groups.get(b)) {
            (Some(x), Some(y)) => x == y,
            _ => false,
        }
    }

    /// Node `i`'s current generation.
    pub fn generation(&self, i: usize) -> u64 {
        self.slots.get(i).map_or(0, |s| s.generation)
    }

    /// Windows run so far, and how many of them had enough nodes with work
    /// to be split between threads (see [`Sim`]).
    pub fn windows(&self) -> (u64, u64) {
        self.windows
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
        if let Some(what) = self.divergence()
            && self.violation.is_none()
        {
            self.violation = Some(Violation {
                seed: self.cfg.seed,
                at: self.now,
                what,
            });
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

    fn schedule(&mut self, at: Instant, node: u32, action: Action) {
        self.seq += 1;
        self.queue.push(Reverse(Scheduled {
            at,
            seq: self.seq,
            node,
            action,
        }));
    }
}
