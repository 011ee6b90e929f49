//! The standard scenarios and the figures each run yields.
//!
//! | scenario | what happens | goal measured |
//! |---|---|---|
//! | `converge` | all nodes start within 100 ms knowing only node 0 | every node sees every node alive with all its states |
//! | `disseminate` | after convergence node 0 changes one key | every node has the new value |
//! | `crash` | after convergence one node stops | every live node marks it down |
//! | `restart` | after convergence one node crashes, then restarts with a higher generation | every node sees it up with the new generation |
//! | `partition` | after convergence the cluster splits in halves until each half marked the other down, then heals | every node sees every node alive again |
//! | `churn` | after convergence nodes leave (shutdown or crash) and rejoin at a steady rate for a minute | every node sees every running node alive again |
//! | `pause` | after convergence one node is frozen for `pause` (default 3 s), then resumes with what queued up for it | every node sees it alive again (timed from the resume); the downs it causes count as false |
//!
//! Every node publishes `STATUS` and `HOST_ID` when it starts; "all its
//! states" means both.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use gossip_core::state::Generation;
use gossip_core::wire::ClusterId;
use gossip_core::{Config, Instant};
use rand_core::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use serde::Serialize;

use crate::tracker::{Tracker, Watch};
use crate::{NetworkModel, Sim, SimConfig, node_addr};

/// The standard scenarios.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    /// Everyone joins through node 0.
    Converge,
    /// One key change spreads.
    Disseminate,
    /// One node crashes.
    Crash,
    /// One node crashes and restarts.
    Restart,
    /// The cluster splits in halves, then heals.
    Partition,
    /// Nodes leave and rejoin steadily.
    Churn,
    /// One node is frozen for a while, then resumes.
    Pause,
    /// One node joins a converged cluster knowing only the seed.
    Join,
}

impl Scenario {
    /// Every scenario.
    pub const ALL: [Scenario; 8] = [
        Scenario::Converge,
        Scenario::Disseminate,
        Scenario::Crash,
        Scenario::Restart,
        Scenario::Partition,
        Scenario::Churn,
        Scenario::Pause,
        Scenario::Join,
    ];

    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Converge => "converge",
            Scenario::Disseminate => "disseminate",
            Scenario::Crash => "crash",
            Scenario::Restart => "restart",
            Scenario::Partition => "partition",
            Scenario::Churn => "churn",
            Scenario::Pause => "pause",
            Scenario::Join => "join",
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Scenario {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Scenario::ALL
            .into_iter()
            .find(|x| x.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Scenario::ALL.iter().map(|x| x.name()).collect();
                format!("unknown scenario '{s}' (one of: {})", names.join(", "))
            })
    }
}

/// What to run.
#[derive(Clone, Debug)]
pub struct ScenarioConfig {
    /// The scenario.
    pub scenario: Scenario,
    /// Nodes (at least 2; 4 for `partition`).
    pub nodes: usize,
    /// The seed: same seed, same run.
    pub seed: u64,
    /// Datagram loss probability, 0 to 1.
    pub loss: f64,
    /// Extra latency per datagram, uniform in `0..=jitter` (reorders);
    /// `None`: the default network's 2 ms.
    pub jitter: Option<Duration>,
    /// `pause`: how long the node is frozen.
    pub pause: Duration,
    /// Gossip interval.
    pub interval: Duration,
    /// Live peers per round, 1 to 3.
    pub fanout: u8,
    /// Give up after this many rounds of virtual time past the start of the
    /// measured phase.
    pub max_rounds: u32,
}

impl ScenarioConfig {
    /// Defaults: 1 s interval, fanout 1, no loss, 2 ms of jitter, seed 1, up
    /// to 600 rounds, 3 s pauses.
    pub fn new(scenario: Scenario, nodes: usize) -> Self {
        Self {
            scenario,
            nodes,
            seed: 1,
            loss: 0.0,
            jitter: None,
            pause: Duration::from_secs(3),
            interval: Duration::from_secs(1),
            fanout: 1,
            max_rounds: 600,
        }
    }

    /// The node configuration the scenario runs with.
    pub fn node_config(&self) -> Config {
        let mut c = Config::new(ClusterId::from_name("sim"));
        c.gossip_interval = self.interval;
        c.fanout = self.fanout;
        c.max_peers = self.nodes.max(1);
        c.removal_delay = Duration::from_secs(3600);
        c
    }

    /// Checks the parameters.
    pub fn validate(&self) -> Result<(), String> {
        let min = if self.scenario == Scenario::Partition {
            4
        } else {
            2
        };
        if self.nodes < min {
            return Err(format!("{} needs at least {min} nodes", self.scenario));
        }
        if self.nodes > 1 << 20 {
            return Err("at most 1048576 nodes".into());
        }
        if !(0.0..=1.0).contains(&self.loss) || self.loss.is_nan() {
            return Err("loss must be between 0 and 1".into());
        }
        if self.loss >= 0.9 {
            return Err("loss of 90% or more cannot converge".into());
        }
        if self.max_rounds == 0 {
            return Err("max rounds must be at least 1".into());
        }
        if self.jitter.is_some_and(|j| j > Duration::from_secs(60)) {
            return Err("jitter must be at most 60 s".into());
        }
        if self.scenario == Scenario::Pause && self.pause.is_zero() {
            return Err("a pause must last more than 0 ms".into());
        }
        self.node_config().validate().map_err(|e| e.to_string())
    }
}

/// What one run measured. Times are virtual (simulated) except `wall_ms`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Figures {
    /// The scenario's name.
    pub scenario: String,
    /// Nodes.
    pub nodes: usize,
    /// The seed.
    pub seed: u64,
    /// Loss probability.
    pub loss: f64,
    /// The network's jitter (extra latency per datagram, at most), in
    /// milliseconds.
    pub jitter_ms: u64,
    /// Gossip interval in milliseconds.
    pub interval_ms: u64,
    /// Fanout.
    pub fanout: u8,
    /// Whether the scenario's goal was reached (and no invariant broke).
    pub converged: bool,
    /// Gossip rounds from the start of the measured phase to the goal.
    pub rounds: Option<f64>,
    /// Virtual time the whole run took.
    pub sim_time_ms: u64,
    /// `disseminate`: time for the change to reach every node.
    pub disseminate_ms: Option<u64>,
    /// `crash`: median time for a live node to mark the crashed one down.
    pub detect_ms_p50: Option<u64>,
    /// `crash`: time for the last live node to mark it down.
    pub detect_ms_max: Option<u64>,
    /// `restart`: time until every node sees the restarted one up.
    pub restart_ms: Option<u64>,
    /// `partition` and `churn`: time from healing until views agree again.
    pub heal_ms: Option<u64>,
    /// `pause`: time from the frozen node's resume until every node sees it
    /// alive.
    pub resume_ms: Option<u64>,
    /// `join`: time from the joiner's start until it sees every member
    /// alive with its states.
    pub join_ms: Option<u64>,
    /// `join`: time from the joiner's start until every member sees it
    /// alive with its states.
    pub joined_ms: Option<u64>,
    /// Live, reachable nodes marked down (during the measured phase: the
    /// join for `converge`, after it for the others).
    pub false_downs: u64,
    /// Datagrams sent per node per second of virtual time.
    pub datagrams_per_node_per_s: f64,
    /// Bytes sent per node per second of virtual time.
    pub bytes_per_node_per_s: f64,
    /// Bytes sent per node per second in the 10 quiet rounds between the
    /// join and the scenario's faults (every scenario but `converge`).
    pub steady_bytes_per_node_per_s: Option<f64>,
    /// The largest datagram sent.
    pub max_datagram_bytes: usize,
    /// Memory per (node, known peer) pair, when the caller measures memory.
    pub bytes_per_known_peer: Option<f64>,
    /// Wall-clock time of the run.
    pub wall_ms: u64,
    /// The broken invariant, if one broke.
    pub violation: Option<String>,
    /// `(virtual seconds, fraction of nodes that reached the goal)`, sampled
    /// once a round during the measured phase.
    #[serde(skip)]
    pub timeline: Vec<(f64, f64)>,
}

/// Where a run is, reported about once a simulated round.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Progress {
    /// `"join"` while the cluster first converges, then the scenario's name.
    pub phase: &'static str,
    /// Rounds since the phase started.
    pub round: u64,
    /// The fraction of the phase's goal reached: nodes that see every node
    /// alive with its states, nodes that saw the crash, the change, ...
    pub goal: f64,
    /// The fraction of the phase's round limit (`max_rounds`) spent.
    pub limit: f64,
}

/// Hooks a caller can give a run.
#[derive(Default)]
pub struct Hooks<'a> {
    /// Called about once a simulated round.
    pub progress: Option<&'a mut (dyn FnMut(Progress) + Send)>,
    /// Bytes of memory in use now (the heap, or the process's resident
    /// memory), to report memory per known peer: what grew between the
    /// start and the goal, per (node, known peer) pair.
    pub heap_bytes: Option<&'a (dyn Fn() -> usize + Sync)>,
}

/// Runs one scenario.
pub fn run(cfg: &ScenarioConfig, hooks: Hooks<'_>) -> Result<Figures, String> {
    cfg.validate()?;
    // On a worker of rayon's pool, so the windows' parallel parts start
    // without handing work to another thread and back (see `Sim`).
    rayon::scope(|_| run_on_worker(cfg, hooks))
}

fn run_on_worker(cfg: &ScenarioConfig, hooks: Hooks<'_>) -> Result<Figures, String> {
    let wall = std::time::Instant::now();
    let mut sim_cfg = SimConfig::new(cfg.nodes, cfg.seed, cfg.node_config());
    let default_network = NetworkModel::default();
    sim_cfg.network = NetworkModel {
        loss: cfg.loss,
        jitter: cfg.jitter.unwrap_or(default_network.jitter),
        ..default_network
    };
    // Every node knows the cluster's size: its tables are allocated once.
    sim_cfg.reserve_peers = true;
    sim_cfg.start_states = Some(start_states);
    // `join`'s joiner, the last node, starts once the others converged.
    let joiner = (cfg.scenario == Scenario::Join).then_some(cfg.nodes - 1);
    sim_cfg.held_back = usize::from(joiner.is_some());
    let heap_before = hooks.heap_bytes.map(|f| f());
    let mut sim = Sim::new(sim_cfg).map_err(|e| e.to_string())?;
    let mut run = Run {
        cfg,
        tracker: Tracker::new(cfg.nodes, joiner),
        progress: hooks.progress,
        phase: "join",
        timeline: Vec::new(),
        rng: Xoshiro256PlusPlus::seed_from_u64(cfg.seed ^ 0x5ce7_a710),
    };
    let mut fig = Figures {
        scenario: cfg.scenario.name().into(),
        nodes: cfg.nodes,
        seed: cfg.seed,
        loss: cfg.loss,
        jitter_ms: sim_cfg_jitter_ms(cfg),
        interval_ms: cfg.interval.as_millis() as u64,
        fanout: cfg.fanout,
        ..Figures::default()
    };
    // Every scenario starts by converging; `converge` measures it.
    let measure_join = cfg.scenario == Scenario::Converge;
    let joined = run.converge(&mut sim, measure_join);
    let mut goal = joined.is_some();
    if measure_join {
        fig.rounds = joined.map(|d| rounds(d, cfg.interval));
    }
    run.phase = cfg.scenario.name();
    if goal && !measure_join {
        // Let the failure detectors collect samples before faults; false
        // downs count from here (the join has its own, in `converge`). The
        // traffic of these quiet rounds is the steady state's.
        let (before, start) = (sim.totals().clone(), sim.now());
        run.settle(&mut sim, 10);
        let secs = (sim.now() - start).as_secs_f64().max(1e-9);
        let quiet = (sim.totals().bytes - before.bytes) as f64;
        fig.steady_bytes_per_node_per_s = Some(round2(quiet / cfg.nodes as f64 / secs));
        run.tracker.reset_false_downs();
        goal = match cfg.scenario {
            Scenario::Converge => true,
            Scenario::Disseminate => run.disseminate(&mut sim, &mut fig),
            Scenario::Crash => run.crash(&mut sim, &mut fig),
            Scenario::Restart => run.restart(&mut sim, &mut fig),
            Scenario::Partition => run.partition(&mut sim, &mut fig),
            Scenario::Churn => run.churn(&mut sim, &mut fig),
            Scenario::Pause => run.pause(&mut sim, &mut fig),
            Scenario::Join => run.join(&mut sim, &mut fig),
        };
    }
    if let (Some(before), Some(now)) = (heap_before, hooks.heap_bytes.map(|f| f())) {
        let known: usize = (0..sim.len())
            .filter_map(|i| sim.node(i))
            .map(|n| n.endpoint_count())
            .sum();
        if known > 0 {
            fig.bytes_per_known_peer = Some(now.saturating_sub(before) as f64 / known as f64);
        }
    }
    let secs = sim.now().as_micros() as f64 / 1e6;
    let totals = sim.totals();
    let per = |x: u64| x as f64 / cfg.nodes as f64 / secs.max(1e-9);
    fig.datagrams_per_node_per_s = round2(per(totals.datagrams));
    fig.bytes_per_node_per_s = round2(per(totals.bytes));
    fig.max_datagram_bytes = totals.max_datagram;
    fig.sim_time_ms = sim.now().as_micros() / 1000;
    fig.false_downs = run.tracker.false_downs();
    fig.violation = sim.violation().map(|v| v.to_string());
    fig.converged = goal && fig.violation.is_none();
    fig.timeline = run.timeline;
    fig.wall_ms = wall.elapsed().as_millis() as u64;
    Ok(fig)
}

fn sim_cfg_jitter_ms(cfg: &ScenarioConfig) -> u64 {
    ms(cfg.jitter.unwrap_or(NetworkModel::default().jitter))
}

fn rounds(d: Duration, interval: Duration) -> f64 {
    round2(d.as_secs_f64() / interval.as_secs_f64())
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

struct Run<'c, 'h> {
    cfg: &'c ScenarioConfig,
    tracker: Tracker,
    progress: Option<&'h mut (dyn FnMut(Progress) + Send)>,
    /// The phase [`Progress`] reports.
    phase: &'static str,
    timeline: Vec<(f64, f64)>,
    rng: Xoshiro256PlusPlus,
}

impl Run<'_, '_> {
    fn limit(&self, sim: &Sim) -> Instant {
        sim.now() + self.cfg.interval * self.cfg.max_rounds
    }

    /// Runs round by round until `done` or the round limit; samples the
    /// timeline with `fraction`. Returns the time it took.
    fn until(
        &mut self,
        sim: &mut Sim,
        mut done: impl FnMut(&mut Sim, &mut Tracker) -> bool,
        fraction: impl Fn(&Sim, &Tracker) -> f64,
    ) -> Option<Duration> {
        let start = sim.now();
        let limit = self.limit(sim);
        let total = (limit - start).as_secs_f64();
        loop {
            let round_end = (sim.now() + self.cfg.interval).min(limit);
            let reached = {
                let tracker = &mut self.tracker;
                let mut reached = false;
                while !reached {
                    if done(sim, tracker) {
                        reached = true;
                        break;
                    }
                    if !sim.step_until(round_end, tracker) {
                        break;
                    }
                }
                reached
            };
            if !reached {
                sim.run_until(round_end, &mut self.tracker);
            }
            let spent = sim.now() - start;
            let goal = fraction(sim, &self.tracker);
            self.timeline.push((spent.as_secs_f64(), goal));
            if let Some(p) = self.progress.as_mut() {
                p(Progress {
                    phase: self.phase,
                    round: (spent.as_micros() / self.cfg.interval.as_micros().max(1)) as u64,
                    goal,
                    limit: (spent.as_secs_f64() / total).min(1.0),
                });
            }
            if reached {
                return Some(spent);
            }
            if sim.now() >= limit || sim.violation().is_some() {
                return None;
            }
        }
    }

    fn settle(&mut self, sim: &mut Sim, rounds: u32) {
        let until = sim.now() + self.cfg.interval * rounds;
        sim.run_until(until, &mut self.tracker);
    }

    /// Starts every node with its start states; runs until the tracker sees
    /// everyone complete. Returns the time it took.
    fn converge(&mut self, sim: &mut Sim, record: bool) -> Option<Duration> {
        let n = self.cfg.nodes;
        // Start every node (they were scheduled within 100 ms, each with
        // its states).
        let started = sim.now() + sim.config().start_spread;
        sim.run_until(started, &mut self.tracker);
        let elapsed = self.until(sim, |_, t| t.all_done(), |_, t| t.done() as f64 / n as f64);
        if !record {
            self.timeline.clear();
        }
        elapsed.map(|d| d + (started - Instant::ZERO))
    }

    fn disseminate(&mut self, sim: &mut Sim, fig: &mut Figures) -> bool {
        let n = self.cfg.nodes;
        self.tracker.watch(Watch::Key(0));
        self.tracker.hit(0, sim.now());
        sim.set_state(0, "probe", b"changed", &mut self.tracker);
        let took = self.until(
            sim,
            |_, t| t.hit_count() == t.n,
            |_, t| t.hit_count() as f64 / n as f64,
        );
        fig.disseminate_ms = took.map(ms);
        fig.rounds = took.map(|d| rounds(d, self.cfg.interval));
        took.is_some()
    }

    fn join(&mut self, sim: &mut Sim, fig: &mut Figures) -> bool {
        let n = self.cfg.nodes;
        let j = n - 1;
        self.tracker.joined(j);
        self.tracker.watch(Watch::Complete(j));
        // The joiner does not see itself.
        self.tracker.hit(j, sim.now());
        let start = sim.now();
        sim.start(j, &mut self.tracker);
        let mut has_all = None;
        let took = self.until(
            sim,
            |sim, t| {
                if has_all.is_none() && t.complete(j) == t.full {
                    has_all = Some(sim.now() - start);
                }
                has_all.is_some() && t.hit_count() == t.n
            },
            |_, t| t.hit_count() as f64 / n as f64,
        );
        fig.join_ms = has_all.map(ms);
        fig.joined_ms = took.map(ms);
        fig.rounds = took.map(|d| rounds(d, self.cfg.interval));
        took.is_some()
    }

    fn victim(&mut self) -> usize {
        // Anyone but the seed.
        1 + (self.rng.next_u64() % (self.cfg.nodes as u64 - 1)) as usize
    }

    fn crash(&mut self, sim: &mut Sim, fig: &mut Figures) -> bool {
        let n = self.cfg.nodes;
        let v = self.victim();
        self.tracker.watch(Watch::Down(v));
        self.tracker.absent[v] = true;
        self.tracker.hit(v, sim.now());
        let at = sim.now();
        sim.crash(v);
        let took = self.until(
            sim,
            |_, t| t.hit_count() == t.n,
            |_, t| t.hit_count() as f64 / n as f64,
        );
        let mut times: Vec<u64> = self
            .tracker
            .hits()
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != v)
            .filter_map(|(_, t)| t.map(|t| ms(t - at)))
            .collect();
        times.sort_unstable();
        fig.detect_ms_p50 = times.get(times.len() / 2).copied();
        fig.detect_ms_max = took.and(times.last().copied());
        fig.rounds = took.map(|d| rounds(d, self.cfg.interval));
        took.is_some()
    }

    fn restart(&mut self, sim: &mut Sim, fig: &mut Figures) -> bool {
        let v = self.victim();
        self.tracker.absent[v] = true;
        sim.crash(v);
        self.settle(sim, 5);
        self.tracker.watch(Watch::Touch(v));
        self.tracker.rejoined(v);
        sim.restart(v, &mut self.tracker);
        let generation = Generation(sim.generation(v));
        self.tracker.hit(v, sim.now());
        let took = self.until_all_see(sim, v, |p| {
            p.is_alive() && p.state().generation() == generation
        });
        fig.restart_ms = took.map(ms);
        fig.rounds = took.map(|d| rounds(d, self.cfg.interval));
        took.is_some()
    }

    /// Runs until every node sees node `v` as `seen` says, checking the
    /// nodes with news of it (the tracker watches `Touch(v)`).
    fn until_all_see(
        &mut self,
        sim: &mut Sim,
        v: usize,
        seen: impl Fn(&gossip_core::PeerOf<gossip_core::HeapStorage>) -> bool,
    ) -> Option<Duration> {
        let n = self.cfg.nodes;
        let victim = node_addr(v);
        self.until(
            sim,
            |sim, t| {
                let now = sim.now();
                let touched = t.take_touched();
                for i in touched {
                    let i = i as usize;
                    let up = sim
                        .node(i)
                        .and_then(|node| node.endpoint(&victim))
                        .is_some_and(&seen);
                    if up {
                        t.hit(i, now);
                    }
                }
                t.hit_count() == t.n
            },
            |_, t| t.hit_count() as f64 / n as f64,
        )
    }

    /// Runs until every running node's view agrees (checked once a round).
    fn agree(&mut self, sim: &mut Sim) -> Option<Duration> {
        let start = sim.now();
        let limit = self.limit(sim);
        loop {
            if sim.divergence().is_none() {
                return Some(sim.now() - start);
            }
            if sim.now() >= limit || sim.violation().is_some() {
                return None;
            }
            let next = (sim.now() + self.cfg.interval).min(limit);
            sim.run_until(next, &mut self.tracker);
            let up = (0..sim.len()).filter(|i| sim.is_up(*i)).count().max(1);
            self.timeline.push((
                (sim.now() - start).as_secs_f64(),
                self.tracker.done() as f64 / up as f64,
            ));
        }
    }

    /// Freezes a node for `pause`, then measures from its resume until every
    /// node sees it alive; the downs it causes (of anyone) and any other
    /// down of a live node count as false. Others' downs of the frozen node
    /// are true ones, even those that land after it resumed.
    fn pause(&mut self, sim: &mut Sim, fig: &mut Figures) -> bool {
        let v = self.victim();
        self.tracker.excused = Some(v);
        sim.pause(v, self.cfg.pause);
        let resume = sim.now() + self.cfg.pause;
        sim.run_until(resume, &mut self.tracker);
        self.tracker.watch(Watch::Touch(v));
        // Everyone is checked once at the resume; then those with news of it.
        self.tracker.touch_all();
        self.tracker.hit(v, sim.now());
        let took = self.until_all_see(sim, v, |p| p.is_alive());
        fig.resume_ms = took.map(ms);
        fig.rounds = took.map(|d| rounds(d, self.cfg.interval));
        took.is_some()
    }

    fn partition(&mut self, sim: &mut Sim, fig: &mut Figures) -> bool {
        let n = self.cfg.nodes;
        let groups: Vec<u32> = (0..n).map(|i| u32::from(i >= n / 2)).collect();
        self.tracker.groups = groups.clone();
        sim.partition(&groups);
        // Split until every node marked the other half down (or the round
        // limit), so healing has real work to do.
        let limit = self.limit(sim);
        while sim.now() < limit && sim.violation().is_none() {
            let next = sim.now() + self.cfg.interval;
            sim.run_until(next, &mut self.tracker);
            let t = &mut self.tracker;
            let cross_alive = (0..n)
                .any(|i| (0..n).any(|j| groups.get(i) != groups.get(j) && t.sees_alive(i, j)));
            if !cross_alive {
                break;
            }
        }
        sim.heal();
        self.tracker.groups = vec![0; n];
        let took = self.agree(sim);
        fig.heal_ms = took.map(ms);
        fig.rounds = took.map(|d| rounds(d, self.cfg.interval));
        took.is_some()
    }

    fn churn(&mut self, sim: &mut Sim, fig: &mut Figures) -> bool {
        let n = self.cfg.nodes;
        // One event every two rounds for a minute: a running node leaves
        // (graceful or crash, alternately) or a stopped one rejoins.
        let events = 30u32;
        let mut stopped: Vec<usize> = Vec::new();
        for e in 0..events {
            let rejoin = !stopped.is_empty() && (e % 3 == 2 || stopped.len() > n / 4);
            if rejoin {
                let k = (self.rng.next_u64() % stopped.len() as u64) as usize;
                let v = stopped.swap_remove(k);
                self.tracker.rejoined(v);
                sim.restart(v, &mut self.tracker);
            } else {
                let v = self.victim();
                if !stopped.contains(&v) {
                    self.tracker.absent[v] = true;
                    if e % 2 == 0 {
                        sim.shutdown(v, &mut self.tracker);
                    } else {
                        sim.crash(v);
                    }
                    stopped.push(v);
                }
            }
            self.settle(sim, 2);
            if sim.violation().is_some() {
                return false;
            }
        }
        let took = self.agree(sim);
        fig.heal_ms = took.map(ms);
        fig.rounds = took.map(|d| rounds(d, self.cfg.interval));
        took.is_some()
    }
}

/// What every node publishes before its first round: its STATUS and a
/// HOST_ID of its own (a [`StartStates`](crate::StartStates)).
pub fn start_states(i: usize, generation: u64) -> Vec<(&'static str, Vec<u8>)> {
    let host_id = format!("{i:08x}-0000-4000-8000-{generation:012x}");
    vec![
        ("STATUS", b"NORMAL".to_vec()),
        ("HOST_ID", host_id.into_bytes()),
    ]
}
