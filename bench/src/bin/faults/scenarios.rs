//! The scenarios: each starts a fresh cluster, applies one fault, measures
//! what the agents saw, and reports it with its target.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::ValueEnum;
use gossip_core::auth::Key;
use serde::Serialize;

use crate::cluster::{Change, Cluster, Metrics, Options, Seen, address, delay, seen_at};
use crate::net::Firewall;

/// A fault to apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Scenario {
    /// Steady state at 5 % random loss: no false down.
    Steady5,
    /// Steady state at 20 % random loss: no false down.
    Steady20,
    /// `kill -9` of one agent at 5 % loss: seen down by all within 1.5 s.
    Kill5,
    /// `kill -9` of one agent at 20 % loss: seen down by all within 3 s.
    Kill20,
    /// SIGSTOP one agent for 3 s: seen up by all within 1 s of SIGCONT, and it convicts nobody.
    Pause,
    /// Two halves cut apart for 10 s: all see all alive within 2 s of healing.
    Partition,
    /// One agent's datagrams to another dropped: neither marked down.
    OneWay,
    /// Keys rotated through key files and SIGHUP at 5 % loss: no down.
    Rotation,
}

impl Scenario {
    /// Every scenario, in the order run.
    pub(crate) const ALL: [Scenario; 8] = [
        Scenario::Steady5,
        Scenario::Steady20,
        Scenario::Kill5,
        Scenario::Kill20,
        Scenario::Pause,
        Scenario::Partition,
        Scenario::OneWay,
        Scenario::Rotation,
    ];

    /// The name on the command line and in the report.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Scenario::Steady5 => "steady-5",
            Scenario::Steady20 => "steady-20",
            Scenario::Kill5 => "kill-5",
            Scenario::Kill20 => "kill-20",
            Scenario::Pause => "pause",
            Scenario::Partition => "partition",
            Scenario::OneWay => "one-way",
            Scenario::Rotation => "rotation",
        }
    }
}

/// What every scenario needs.
pub(crate) struct Env {
    pub(crate) opts: Options,
    pub(crate) agents: usize,
    pub(crate) firewall: Firewall,
    pub(crate) steady: Duration,
    pub(crate) one_way: Duration,
}

/// A down an agent saw that the fault does not explain.
#[derive(Serialize)]
pub(crate) struct FalseDown {
    observer: String,
    target: String,
    at_s: f64,
}

/// One scenario's outcome.
#[derive(Serialize)]
pub(crate) struct Report {
    pub(crate) scenario: &'static str,
    pub(crate) agents: usize,
    pub(crate) interval_ms: u64,
    pub(crate) loss_percent: u8,
    /// How long the fault lasted.
    pub(crate) fault_s: f64,
    pub(crate) target: &'static str,
    /// The target was met.
    pub(crate) met: bool,
    /// The cluster behaved: the fault applied, what had to be seen was seen
    /// (within generous bounds), and nobody was falsely marked down.
    pub(crate) passed: bool,
    pub(crate) figures: BTreeMap<&'static str, f64>,
    pub(crate) false_downs: Vec<FalseDown>,
    /// Sums over the agents, from `/metrics`, during the scenario.
    pub(crate) counters: BTreeMap<&'static str, f64>,
    /// Gossip datagrams the fault's rules dropped.
    pub(crate) dropped_by_fault: u64,
}

/// The counters reported, by their `/metrics` name.
const COUNTERS: [(&str, &str); 9] = [
    ("datagrams_sent", "gossip_datagrams_sent_total"),
    ("probes_sent", "gossip_probes_sent_total"),
    ("probe_failures", "gossip_probe_failures_total"),
    ("ping_reqs_sent", "gossip_ping_reqs_sent_total"),
    ("suspicions_raised", "gossip_suspicions_raised_total"),
    ("convictions", "gossip_convictions_total"),
    ("refutations", "gossip_refutations_total"),
    ("late_rounds", "gossip_late_rounds_total"),
    (
        "dropped_bad_mac",
        "gossip_dropped_datagrams_total{reason=\"bad_mac\"}",
    ),
];

/// A started scenario: its cluster and the counters at its start.
struct Run<'a> {
    env: &'a Env,
    scenario: Scenario,
    loss: u8,
    cluster: Cluster,
    before: Vec<Option<Metrics>>,
}

impl<'a> Run<'a> {
    fn begin(env: &'a Env, scenario: Scenario, loss: u8, extra: &[String]) -> Result<Run<'a>> {
        env.firewall.clear()?;
        let cluster = Cluster::start(&env.opts, env.agents, scenario.name(), extra)?;
        let before = cluster.all_metrics();
        env.firewall.loss(loss)?;
        Ok(Run {
            env,
            scenario,
            loss,
            cluster,
            before,
        })
    }

    /// Ends the fault and the cluster; the report's common part.
    fn finish(
        mut self,
        fault: Duration,
        target: &'static str,
        false_downs: Vec<FalseDown>,
        figures: BTreeMap<&'static str, f64>,
    ) -> Result<Report> {
        let after = self.cluster.all_metrics();
        let dropped = self.env.firewall.dropped();
        self.env.firewall.clear()?;
        self.cluster.stop();
        let mut counters = BTreeMap::new();
        for (short, name) in COUNTERS {
            let sum: f64 = self
                .before
                .iter()
                .zip(&after)
                .filter_map(|(b, a)| Some(a.as_ref()?.get(name)? - b.as_ref()?.get(name)?))
                .sum();
            counters.insert(short, sum);
        }
        Ok(Report {
            scenario: self.scenario.name(),
            agents: self.env.agents,
            interval_ms: self.env.opts.interval_ms,
            loss_percent: self.loss,
            fault_s: fault.as_secs_f64(),
            target,
            met: false,
            passed: false,
            figures,
            false_downs,
            counters,
            dropped_by_fault: dropped,
        })
    }
}

/// Downs in `changes` that `expected` does not explain.
fn false_downs(changes: &[Change], expected: impl Fn(&Change) -> bool) -> Vec<FalseDown> {
    changes
        .iter()
        .filter(|c| c.seen == Seen::Down && !expected(c))
        .map(|c| FalseDown {
            observer: address(c.observer).to_string(),
            target: address(c.target).to_string(),
            at_s: c.at.as_secs_f64(),
        })
        .collect()
}

/// The median and the largest of `d`, in seconds.
fn median_max(mut d: Vec<Duration>) -> (f64, f64) {
    d.sort();
    let median = d.get(d.len() / 2).map_or(f64::NAN, Duration::as_secs_f64);
    let max = d.last().map_or(f64::NAN, Duration::as_secs_f64);
    (median, max)
}

fn sleep(d: Duration) {
    std::thread::sleep(d);
}

/// Runs `scenario`.
pub(crate) fn run(env: &Env, scenario: Scenario) -> Result<Report> {
    match scenario {
        Scenario::Steady5 => steady(env, scenario, 5),
        Scenario::Steady20 => steady(env, scenario, 20),
        Scenario::Kill5 => kill(env, scenario, 5, Duration::from_millis(1500)),
        Scenario::Kill20 => kill(env, scenario, 20, Duration::from_secs(3)),
        Scenario::Pause => pause(env),
        Scenario::Partition => partition(env),
        Scenario::OneWay => one_way(env),
        Scenario::Rotation => rotation(env),
    }
}

fn steady(env: &Env, scenario: Scenario, loss: u8) -> Result<Report> {
    let run = Run::begin(env, scenario, loss, &[])?;
    sleep(env.steady);
    let changes = run.cluster.changes();
    let downs = false_downs(&changes, |_| false);
    let suspects = changes.iter().filter(|c| c.seen == Seen::Suspect).count();
    let figures = BTreeMap::from([("suspect_marks", suspects as f64)]);
    let mut r = run.finish(env.steady, "no false down", downs, figures)?;
    r.met = r.false_downs.is_empty();
    r.passed = r.met && r.dropped_by_fault > 0;
    Ok(r)
}

fn kill(env: &Env, scenario: Scenario, loss: u8, target: Duration) -> Result<Report> {
    let mut run = Run::begin(env, scenario, loss, &[])?;
    sleep(Duration::from_secs(5));
    let victim = env.agents - 1;
    let others: Vec<usize> = (0..victim).collect();
    let killed = run.cluster.now();
    run.cluster.kill(victim)?;
    let seen_by_all = run.cluster.wait_until(Duration::from_secs(15), |c| {
        others
            .iter()
            .all(|&o| delay(c, o, victim, Seen::Down, killed).is_some())
    });
    sleep(Duration::from_secs(1));
    let changes = run.cluster.changes();
    let delays: Vec<Duration> = others
        .iter()
        .filter_map(|&o| delay(&changes, o, victim, Seen::Down, killed))
        .collect();
    let (median, last) = median_max(delays.clone());
    let downs = false_downs(&changes, |c| c.target == victim && c.at >= killed);
    let figures = BTreeMap::from([
        ("down_seen_median_s", median),
        ("down_seen_last_s", last),
        ("down_seen_by", delays.len() as f64),
        ("observers", others.len() as f64),
    ]);
    let text = if loss == 5 {
        "down seen by all within 1.5 s, no false down"
    } else {
        "down seen by all within 3 s, no false down"
    };
    let fault = run.cluster.now() - killed;
    let mut r = run.finish(fault, text, downs, figures)?;
    r.passed = seen_by_all && r.false_downs.is_empty() && r.dropped_by_fault > 0;
    r.met = r.passed && last <= target.as_secs_f64();
    Ok(r)
}

fn pause(env: &Env) -> Result<Report> {
    let run = Run::begin(env, Scenario::Pause, 0, &[])?;
    sleep(Duration::from_secs(3));
    let victim = env.agents - 1;
    let others: Vec<usize> = (0..victim).collect();
    let convictions = |run: &Run<'_>| {
        run.cluster
            .metrics(victim)
            .and_then(|m| m.get("gossip_convictions_total").copied())
    };
    let convictions_before = convictions(&run);
    let stopped = run.cluster.now();
    run.cluster.signal(victim, "STOP")?;
    sleep(Duration::from_secs(3));
    let resumed = run.cluster.now();
    run.cluster.signal(victim, "CONT")?;
    let seen_up = run.cluster.wait_until(Duration::from_secs(10), |c| {
        others
            .iter()
            .all(|&o| delay(c, o, victim, Seen::Alive, resumed).is_some())
    });
    // Long enough for any suspicion the victim raised on resuming to time out.
    sleep(Duration::from_secs(5));
    let convictions_after = convictions(&run);
    let changes = run.cluster.changes();
    let delays: Vec<Duration> = others
        .iter()
        .filter_map(|&o| delay(&changes, o, victim, Seen::Alive, resumed))
        .collect();
    let (median, last) = median_max(delays);
    let marked_down = others
        .iter()
        .filter(|&&o| {
            changes.iter().any(|c| {
                c.observer == o && c.target == victim && c.seen == Seen::Down && c.at >= stopped
            })
        })
        .count();
    let convicted = match (convictions_before, convictions_after) {
        (Some(b), Some(a)) => a - b,
        _ => f64::NAN,
    };
    let downs = false_downs(&changes, |c| c.target == victim && c.at >= stopped);
    let figures = BTreeMap::from([
        ("seen_up_median_s", median),
        ("seen_up_last_s", last),
        ("marked_down_by", marked_down as f64),
        ("convictions_by_paused_after_resume", convicted),
    ]);
    let mut r = run.finish(
        Duration::from_secs(3),
        "seen up by all within 1 s of resuming, convicts nobody",
        downs,
        figures,
    )?;
    r.passed = seen_up && r.false_downs.is_empty() && convicted == 0.0;
    r.met = r.passed && last <= 1.0;
    Ok(r)
}

fn partition(env: &Env) -> Result<Report> {
    let run = Run::begin(env, Scenario::Partition, 0, &[])?;
    sleep(Duration::from_secs(3));
    let n = env.agents;
    let half = n / 2;
    let side = |i: usize| i < half;
    let left: Vec<_> = (0..half).map(address).collect();
    let right: Vec<_> = (half..n).map(address).collect();
    let cut = run.cluster.now();
    env.firewall.cut(&left, &right)?;
    env.firewall.cut(&right, &left)?;
    sleep(Duration::from_secs(10));
    let dropped = env.firewall.dropped();
    let healed = run.cluster.now();
    env.firewall.clear()?;
    let pairs: Vec<(usize, usize)> = (0..n)
        .flat_map(|o| (0..n).filter(move |&t| t != o).map(move |t| (o, t)))
        .collect();
    let all_alive = run.cluster.wait_until(Duration::from_secs(20), |c| {
        pairs
            .iter()
            .all(|&(o, t)| delay(c, o, t, Seen::Alive, healed).is_some())
    });
    sleep(Duration::from_secs(2));
    let changes = run.cluster.changes();
    let delays: Vec<Duration> = pairs
        .iter()
        .filter_map(|&(o, t)| delay(&changes, o, t, Seen::Alive, healed))
        .collect();
    let (median, last) = median_max(delays);
    let settled = healed + Duration::from_secs_f64(if last.is_finite() { last } else { 0.0 });
    let cross_down = pairs
        .iter()
        .filter(|&&(o, t)| {
            side(o) != side(t) && seen_at(&changes, o, t, healed) == Some(Seen::Down)
        })
        .count();
    // Downs across the cut while it held (and until every pair healed) are
    // the fault's; any other is false.
    let downs = false_downs(&changes, |c| {
        side(c.observer) != side(c.target) && c.at >= cut && c.at <= settled
    });
    let figures = BTreeMap::from([
        ("cross_pairs_down_at_heal", cross_down as f64),
        ("all_alive_median_s", median),
        ("all_alive_last_s", last),
    ]);
    let mut r = run.finish(
        Duration::from_secs(10),
        "every agent sees every other alive within 2 s of healing",
        downs,
        figures,
    )?;
    r.dropped_by_fault = dropped;
    r.passed = all_alive && r.false_downs.is_empty() && dropped > 0 && cross_down > 0;
    r.met = r.passed && last <= 2.0;
    Ok(r)
}

fn one_way(env: &Env) -> Result<Report> {
    let run = Run::begin(env, Scenario::OneWay, 0, &[])?;
    sleep(Duration::from_secs(3));
    let (a, b) = (env.agents - 2, env.agents - 1);
    env.firewall.cut(&[address(a)], &[address(b)])?;
    sleep(env.one_way);
    let dropped = env.firewall.dropped();
    env.firewall.clear()?;
    sleep(Duration::from_secs(2));
    let changes = run.cluster.changes();
    let suspects = changes
        .iter()
        .filter(|c| c.seen == Seen::Suspect && (c.target == a || c.target == b))
        .count();
    let downs = false_downs(&changes, |_| false);
    let figures = BTreeMap::from([("suspect_marks_of_the_two", suspects as f64)]);
    let mut r = run.finish(
        env.one_way,
        "neither side of the one-way cut marked down by anyone",
        downs,
        figures,
    )?;
    r.dropped_by_fault = dropped;
    r.passed = r.false_downs.is_empty() && dropped > 0;
    r.met = r.passed;
    Ok(r)
}

/// 32 random bytes.
fn random_key() -> Result<[u8; 32]> {
    let mut key = [0u8; 32];
    let mut f = std::fs::File::open("/dev/urandom")?;
    std::io::Read::read_exact(&mut f, &mut key)?;
    Ok(key)
}

fn write_key(path: &Path, key: &[u8; 32]) -> Result<()> {
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    std::fs::write(path, hex).with_context(|| format!("writing {}", path.display()))
}

fn rotation(env: &Env) -> Result<Report> {
    let (old, new) = (random_key()?, random_key()?);
    let new_fingerprint = format!(
        "{:08x}",
        Key::parse(&new)
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .fingerprint()
    );
    let dir = env.opts.workdir.join("keys");
    std::fs::create_dir_all(&dir)?;
    let (primary, next) = (dir.join("primary.key"), dir.join("next.key"));
    write_key(&primary, &old)?;
    write_key(&next, &old)?;
    let extra: Vec<String> = [&primary, &next]
        .iter()
        .flat_map(|p| ["--key-file".to_string(), p.display().to_string()])
        .collect();
    let run = Run::begin(env, Scenario::Rotation, 5, &extra)?;
    sleep(Duration::from_secs(3));
    let start = run.cluster.now();
    // Accept the new key everywhere, then seal with it, then drop the old.
    for (p, n) in [(&old, &new), (&new, &old), (&new, &new)] {
        write_key(&primary, p)?;
        write_key(&next, n)?;
        for i in 0..env.agents {
            run.cluster.signal(i, "HUP")?;
        }
        sleep(Duration::from_secs(4));
    }
    let fault = run.cluster.now() - start;
    let changes = run.cluster.changes();
    let downs = false_downs(&changes, |_| false);
    // Each agent says what it loaded: three reloads, the last sealing with the new key.
    let rotated = (0..env.agents)
        .filter(|i| {
            let log = env
                .opts
                .workdir
                .join(format!("{}-agent-{i}.log", Scenario::Rotation.name()));
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let reloads: Vec<&str> = text
                .lines()
                .filter(|l| l.contains("keys reloaded"))
                .collect();
            reloads.len() == 3
                && reloads
                    .last()
                    .is_some_and(|l| l.contains(&format!("primary {new_fingerprint}")))
        })
        .count();
    let figures = BTreeMap::from([("agents_rotated", rotated as f64)]);
    let mut r = run.finish(fault, "keys rotate with no down", downs, figures)?;
    r.passed = r.false_downs.is_empty() && rotated == env.agents && r.dropped_by_fault > 0;
    r.met = r.passed;
    Ok(r)
}
