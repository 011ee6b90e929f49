//! Every scenario on small clusters, determinism, and random fault schedules.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers

use gossip_core::Instant;
use gossip_sim::faults::FaultSchedule;
use gossip_sim::scenario::{self, Hooks};
use gossip_sim::{Scenario, ScenarioConfig, Sim, SimConfig};
use quickcheck::{Arbitrary, Gen, QuickCheck, TestResult};

fn run(scenario: Scenario, nodes: usize, seed: u64, loss: f64) -> gossip_sim::Figures {
    let mut cfg = ScenarioConfig::new(scenario, nodes);
    cfg.seed = seed;
    cfg.loss = loss;
    scenario::run(&cfg, Hooks::default()).expect("valid configuration")
}

#[test]
fn every_scenario_reaches_its_goal_on_a_small_cluster() {
    for scenario in Scenario::ALL {
        let f = run(scenario, 24, 7, 0.0);
        assert!(f.converged, "{scenario}: {f:?}");
        assert_eq!(f.violation, None, "{scenario}");
        assert!(f.max_datagram_bytes <= 1400);
        assert!(f.datagrams_per_node_per_s > 0.0);
        match scenario {
            Scenario::Converge => assert!(f.rounds.is_some_and(|r| r < 30.0), "{f:?}"),
            Scenario::Disseminate => assert!(f.disseminate_ms.is_some()),
            Scenario::Crash => {
                assert!(f.detect_ms_p50.is_some() && f.detect_ms_max.is_some());
                assert!(f.detect_ms_p50 <= f.detect_ms_max);
            }
            Scenario::Restart => assert!(f.restart_ms.is_some()),
            Scenario::Partition | Scenario::Churn => assert!(f.heal_ms.is_some()),
            Scenario::Pause => assert!(f.resume_ms.is_some()),
            Scenario::Join => assert!(f.join_ms.is_some() && f.joined_ms.is_some()),
        }
    }
}

#[test]
fn progress_reports_each_phase_its_rounds_and_goal() {
    let cfg = ScenarioConfig::new(Scenario::Crash, 24);
    let mut seen: Vec<scenario::Progress> = Vec::new();
    let mut record = |p: scenario::Progress| seen.push(p);
    let f = scenario::run(
        &cfg,
        Hooks {
            progress: Some(&mut record),
            ..Hooks::default()
        },
    )
    .unwrap();
    assert!(f.converged, "{f:?}");
    let phases: Vec<&str> = seen.iter().map(|p| p.phase).collect();
    assert_eq!(phases.first(), Some(&"join"), "{seen:?}");
    assert_eq!(phases.last(), Some(&"crash"), "{seen:?}");
    // Within a phase, rounds and the limit spent only grow; the goal is a
    // fraction.
    for w in seen.windows(2) {
        if w[0].phase == w[1].phase && w[1].round >= w[0].round {
            assert!(w[1].limit >= w[0].limit, "{w:?}");
        }
    }
    assert!(seen.iter().all(|p| (0.0..=1.0).contains(&p.goal)));
    assert!(seen.iter().any(|p| p.phase == "join" && p.round >= 1));
    // The join's reports climb to nearly every node at the goal.
    let join_goal = seen.iter().filter(|p| p.phase == "join").map(|p| p.goal);
    assert!(join_goal.fold(0.0, f64::max) > 0.5, "{seen:?}");
}

#[test]
fn a_joiner_has_every_state_and_is_seen_within_a_few_rounds() {
    let f = run(Scenario::Join, 400, 1, 0.0);
    assert!(f.converged, "{f:?}");
    assert_eq!(f.false_downs, 0, "{f:?}");
    // Virtual time: the joiner's catch-up takes bursts of a round's part.
    assert!(f.join_ms.is_some_and(|ms| ms <= 2_000), "{f:?}");
    assert!(f.joined_ms.is_some_and(|ms| ms <= 4_000), "{f:?}");
}

#[test]
fn crash_with_loss_is_detected_without_false_downs() {
    let f = run(Scenario::Crash, 40, 3, 0.05);
    assert!(f.converged, "{f:?}");
    assert_eq!(f.false_downs, 0, "{f:?}");
}

#[test]
fn a_pause_causes_no_down_and_is_seen_up_again() {
    let mut cfg = ScenarioConfig::new(Scenario::Pause, 30);
    cfg.seed = 2;
    // Long enough that others mark the frozen node down first.
    cfg.pause = std::time::Duration::from_secs(8);
    let f = scenario::run(&cfg, Hooks::default()).unwrap();
    assert!(f.converged, "{f:?}");
    assert_eq!(f.false_downs, 0, "{f:?}");
    // Seen up within a few rounds of its resume.
    assert!(f.resume_ms.is_some_and(|ms| ms <= 3_000), "{f:?}");
}

#[test]
fn crash_under_loss_and_jitter_has_no_false_down() {
    let mut cfg = ScenarioConfig::new(Scenario::Crash, 40);
    cfg.seed = 4;
    cfg.loss = 0.1;
    cfg.jitter = Some(std::time::Duration::from_millis(200));
    let f = scenario::run(&cfg, Hooks::default()).unwrap();
    assert!(f.converged, "{f:?}");
    assert_eq!(f.false_downs, 0, "{f:?}");
    assert_eq!(f.jitter_ms, 200);
}

#[test]
fn same_seed_same_figures() {
    for scenario in [Scenario::Converge, Scenario::Churn] {
        let mut a = run(scenario, 16, 11, 0.1);
        let mut b = run(scenario, 16, 11, 0.1);
        a.wall_ms = 0;
        b.wall_ms = 0;
        assert_eq!(a, b, "{scenario}");
        assert_eq!(a.timeline, b.timeline);
    }
    // And another seed gives another run.
    let a = run(Scenario::Converge, 16, 11, 0.1);
    let c = run(Scenario::Converge, 16, 12, 0.1);
    assert_ne!(a.sim_time_ms, c.sim_time_ms);
}

/// How a [`Log`] takes the events.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
enum Mode {
    /// In time order, after each step.
    #[default]
    Timed,
    /// Node by node, after each step, unsorted.
    Unsorted,
    /// Where each node runs ([`gossip_sim::Observer::by_node`]).
    ByNode,
}

/// Every event every node reported, in the order the observer saw them,
/// and how many came out of order: earlier than the one before, or at the
/// same moment from a node before the one before. Taking them by node, it
/// keeps each node's apart and counts the ones `on_event` got anyway.
#[derive(Default)]
struct Log {
    events: Vec<(usize, String)>,
    last: Option<(Instant, usize)>,
    out_of_order: usize,
    mode: Mode,
    per_node: Vec<std::sync::Mutex<Vec<String>>>,
}

impl gossip_sim::Observer for Log {
    fn on_event(&mut self, now: Instant, node: usize, event: &gossip_core::Event<'_>) {
        self.events
            .push((node, format!("{now:?} {node} {event:?}")));
        if self.last.is_some_and(|last| (now, node) < last) {
            self.out_of_order += 1;
        }
        self.last = Some((now, node));
    }

    fn in_time_order(&self) -> bool {
        self.mode == Mode::Timed
    }

    fn by_node(&self) -> Option<&dyn gossip_sim::NodeObserver> {
        (self.mode == Mode::ByNode).then_some(self as &dyn gossip_sim::NodeObserver)
    }
}

impl gossip_sim::NodeObserver for Log {
    fn on_node_events(&self, now: Instant, node: usize, events: &mut gossip_sim::NodeEvents<'_>) {
        let mut log = self.per_node[node].lock().unwrap();
        events(&mut |event| log.push(format!("{now:?} {node} {event:?}")));
    }
}

/// What [`scripted_run`] returns: the events seen (with their nodes),
/// totals, window counts and convergence.
type Run = (
    Vec<(usize, String)>,
    gossip_sim::Totals,
    (u64, u64),
    Result<(), gossip_sim::Violation>,
);

/// A scripted run of 48 nodes on a 20 ms network (each window, as long as
/// the least latency, holds several nodes' work, split between threads
/// when there are two): loss, a crash, a restart, a partition and a state
/// change. Returns the event log, totals, window counts and convergence.
fn scripted_run(threads: usize, reserve_peers: bool, mode: Mode) -> Run {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    pool.install(|| {
        let node = ScenarioConfig::new(Scenario::Converge, 48).node_config();
        let mut cfg = SimConfig::new(48, 9, node);
        cfg.network.latency = std::time::Duration::from_millis(20);
        cfg.network.loss = 0.05;
        cfg.reserve_peers = reserve_peers;
        let mut sim = Sim::new(cfg).unwrap();
        let mut log = Log {
            mode,
            per_node: (0..48).map(|_| Default::default()).collect(),
            ..Log::default()
        };
        let at = Instant::from_millis;
        sim.run_until(at(10_000), &mut log);
        sim.crash(3);
        sim.set_state(7, "ROLE", b"leader", &mut log);
        sim.run_until(at(20_000), &mut log);
        sim.restart(3, &mut log);
        sim.partition(&[0, 1, 0, 1]);
        sim.run_until(at(25_000), &mut log);
        sim.heal();
        sim.run_until(at(40_000), &mut log);
        let converged = sim.check_converged();
        if mode == Mode::ByNode {
            assert!(
                log.events.is_empty(),
                "on_event got {} events",
                log.events.len()
            );
            for (node, events) in log.per_node.into_iter().enumerate() {
                let events = events.into_inner().unwrap();
                log.events.extend(events.into_iter().map(|e| (node, e)));
            }
        }
        assert!(!log.events.is_empty());
        if mode == Mode::Timed {
            assert_eq!(log.out_of_order, 0, "events out of (time, node) order");
        }
        (log.events, sim.totals().clone(), sim.windows(), converged)
    })
}

#[test]
fn reserving_the_tables_changes_nothing_but_memory() {
    let (grown, reserved) = (
        scripted_run(1, false, Mode::Timed),
        scripted_run(1, true, Mode::Timed),
    );
    assert!(reserved.3.is_ok(), "{:?}", reserved.3);
    assert_eq!(grown.1, reserved.1);
    assert_eq!(grown.0, reserved.0);
}

#[test]
fn the_same_run_on_one_thread_and_on_two() {
    let on = |threads: usize| scripted_run(threads, false, Mode::Timed);
    let (one, two) = (on(1), on(2));
    assert!(one.3.is_ok(), "{:?}", one.3);
    let (windows, parallel) = one.2;
    assert!(
        parallel * 4 > windows,
        "{parallel} of {windows} windows ran in parallel"
    );
    assert_eq!(one.1, two.1);
    assert_eq!(one.2, two.2);
    assert_eq!(one.0.len(), two.0.len());
    for (a, b) in one.0.iter().zip(&two.0) {
        assert_eq!(a, b);
    }
}

/// An observer that does not ask for time order, or that takes each node's
/// events where it runs, gets the same events, each node's in the same
/// order, and the run is the same.
#[test]
fn events_node_by_node_are_the_same_events() {
    let timed = scripted_run(2, false, Mode::Timed);
    let of = |log: &[(usize, String)], node: usize| -> Vec<String> {
        log.iter()
            .filter(|(n, _)| *n == node)
            .map(|(_, e)| e.clone())
            .collect()
    };
    for mode in [Mode::Unsorted, Mode::ByNode] {
        let other = scripted_run(2, false, mode);
        assert_eq!(timed.1, other.1);
        assert_eq!(timed.2, other.2);
        for node in 0..48 {
            assert_eq!(of(&timed.0, node), of(&other.0, node), "node {node}");
        }
        assert_eq!(timed.0.len(), other.0.len());
        // And it was not sorted for it: some events came before earlier ones.
        assert_ne!(timed.0, other.0);
    }
}

#[test]
fn timers_do_not_pile_up() {
    // Deadlines move all the time (probes, suspicions, rounds); each move
    // sets a timer, and the ones for moved deadlines must not each set one
    // more when they come due: the queue stays about as long as the
    // cluster is large, however long it runs.
    let n = 48;
    let node = ScenarioConfig::new(Scenario::Converge, n).node_config();
    let mut cfg = SimConfig::new(n, 5, node);
    cfg.network.loss = 0.05;
    let mut sim = Sim::new(cfg).unwrap();
    let mut longest = Vec::new();
    for second in 1..=120u64 {
        sim.run_until(Instant::from_millis(second * 1000), &mut ());
        longest.push(sim.queued());
    }
    let early = longest[10..30].iter().max().copied().unwrap_or(0);
    let late = longest[100..].iter().max().copied().unwrap_or(0);
    assert!(
        late <= 3 * n,
        "{late} actions queued after 100 s: {longest:?}"
    );
    assert!(
        late <= early * 2,
        "queue grew from {early} to {late}: {longest:?}"
    );
}

#[test]
fn the_clock_follows_the_windows_stepped() {
    // Once a small cluster is stable, most windows report no event: the
    // clock must still advance with the deadlines handled.
    let node = ScenarioConfig::new(Scenario::Converge, 4).node_config();
    let mut sim = Sim::new(SimConfig::new(4, 3, node)).unwrap();
    let goal = Instant::from_millis(60_000);
    let mut last = sim.now();
    for _ in 0..100_000 {
        if sim.now() >= goal {
            break;
        }
        assert!(sim.step(&mut ()));
        assert!(sim.now() >= last);
        last = sim.now();
    }
    assert!(sim.now() >= goal, "stuck at {:?}", sim.now());
    assert!(sim.next_at().is_some_and(|t| t >= sim.now()));
    assert_eq!(sim.divergence(), None);
}

#[test]
fn bad_parameters_are_refused() {
    let mut cfg = ScenarioConfig::new(Scenario::Partition, 3);
    assert!(scenario::run(&cfg, Hooks::default()).is_err());
    cfg.nodes = 10;
    cfg.loss = 0.95;
    assert!(scenario::run(&cfg, Hooks::default()).is_err());
    cfg.loss = f64::NAN;
    assert!(scenario::run(&cfg, Hooks::default()).is_err());
    cfg.loss = 0.0;
    cfg.fanout = 4;
    assert!(scenario::run(&cfg, Hooks::default()).is_err());
    assert!("nope".parse::<Scenario>().is_err());
    assert_eq!("churn".parse::<Scenario>(), Ok(Scenario::Churn));
}

#[test]
fn divergence_is_reported_while_a_partition_lasts() {
    let cfg = ScenarioConfig::new(Scenario::Converge, 6);
    let mut sim = Sim::new(SimConfig::new(6, 5, cfg.node_config())).unwrap();
    sim.run_until(Instant::from_millis(30_000), &mut ());
    assert_eq!(sim.divergence(), None);
    sim.partition(&[0, 0, 0, 1, 1, 1]);
    sim.run_until(Instant::from_millis(120_000), &mut ());
    assert!(sim.divergence().is_some());
    assert!(sim.check_converged().is_err());
}

/// A quickcheck-made [`FaultSchedule`].
#[derive(Clone, Debug)]
struct Faults(FaultSchedule);

impl Arbitrary for Faults {
    fn arbitrary(g: &mut Gen) -> Self {
        let steps: Vec<(u8, u64)> = (0..usize::arbitrary(g) % 8)
            .map(|_| (u8::arbitrary(g), u64::arbitrary(g)))
            .collect();
        Faults(FaultSchedule::from_choices(
            usize::arbitrary(g),
            u64::arbitrary(g),
            u8::arbitrary(g),
            u8::arbitrary(g),
            &steps,
        ))
    }
}

#[test]
fn random_fault_schedules_converge_once_faults_stop() {
    fn prop(f: Faults) -> TestResult {
        match f.0.run() {
            Ok(()) => TestResult::passed(),
            Err(e) => TestResult::error(format!("{:?}: {e}", f.0)),
        }
    }
    QuickCheck::new()
        .tests(40)
        .quickcheck(prop as fn(Faults) -> TestResult);
}
