//! Real `gossip agent` processes on 127.0.0.x, each watched by a thread that
//! polls its `/cluster` and records every change of what it sees of each
//! other agent, with the time it was seen.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

/// Every agent gossips on this UDP port (on its own 127.0.0.x address); the
/// firewall's rules match it.
pub(crate) const GOSSIP_PORT: u16 = 7946;
/// Every agent's admin endpoint listens on this TCP port.
const ADMIN_PORT: u16 = 8946;

/// How agents are started and watched.
pub(crate) struct Options {
    /// The `gossip` binary.
    pub(crate) gossip: PathBuf,
    /// Gossip interval of every agent.
    pub(crate) interval_ms: u64,
    /// How often each watcher asks its agent for `/cluster`.
    pub(crate) poll: Duration,
    /// Agent logs and key files go here.
    pub(crate) workdir: PathBuf,
}

/// Agent `i`'s address: 127.0.0.(i + 1).
pub(crate) fn address(i: usize) -> Ipv4Addr {
    let last = u8::try_from(i + 1).unwrap_or(u8::MAX);
    Ipv4Addr::new(127, 0, 0, last)
}

/// What an observer sees of an endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Seen {
    Alive,
    Suspect,
    Down,
    Left,
}

impl Seen {
    fn parse(s: &str) -> Option<Seen> {
        Some(match s {
            "alive" => Seen::Alive,
            "suspect" => Seen::Suspect,
            "down" => Seen::Down,
            "left" => Seen::Left,
            _ => return None,
        })
    }
}

/// `observer` began to see `target` as `seen` at `at` (since the cluster
/// converged; the time the answer arrived, so at most one poll late).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Change {
    pub(crate) at: Duration,
    pub(crate) observer: usize,
    pub(crate) target: usize,
    pub(crate) seen: Seen,
}

#[derive(Deserialize)]
struct ClusterView {
    endpoints: Vec<EndpointView>,
}

#[derive(Deserialize)]
struct EndpointView {
    address: String,
    liveness: String,
}

/// An HTTP client with short timeouts: a stopped agent must not hold a
/// watcher for long.
fn http() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_millis(400)))
        .build()
        .into()
}

fn get(http: &ureq::Agent, agent: usize, path: &str) -> Result<String> {
    let url = format!("http://{}:{ADMIN_PORT}{path}", address(agent));
    Ok(http.get(&url).call()?.body_mut().read_to_string()?)
}

/// What agent `i` sees of every other agent, by index.
fn view(
    http: &ureq::Agent,
    i: usize,
    index: &HashMap<String, usize>,
) -> Result<Vec<(usize, Seen)>> {
    let body = get(http, i, "/cluster")?;
    let view: ClusterView = serde_json::from_str(&body).context("/cluster is not JSON")?;
    Ok(view
        .endpoints
        .iter()
        .filter_map(|e| Some((*index.get(&e.address)?, Seen::parse(&e.liveness)?)))
        .collect())
}

/// Counters from `/metrics` (`name{labels}` to value).
pub(crate) type Metrics = BTreeMap<String, f64>;

fn parse_metrics(text: &str) -> Metrics {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            Some((name.to_string(), value.parse().ok()?))
        })
        .collect()
}

/// N agents, and a watcher thread for each.
pub(crate) struct Cluster {
    children: Vec<Option<Child>>,
    epoch: Instant,
    changes: Arc<Mutex<Vec<Change>>>,
    stop: Arc<AtomicBool>,
    watchers: Vec<JoinHandle<()>>,
    http: ureq::Agent,
}

impl Cluster {
    /// Starts `n` agents (the first three are everyone's seeds) with
    /// `extra` arguments each, waits until every agent sees every other
    /// alive (at most 30 s), then starts watching.
    pub(crate) fn start(opts: &Options, n: usize, name: &str, extra: &[String]) -> Result<Cluster> {
        let mut cluster = Cluster {
            children: Vec::with_capacity(n),
            epoch: Instant::now(),
            changes: Arc::default(),
            stop: Arc::default(),
            watchers: Vec::new(),
            http: http(),
        };
        let seeds: Vec<String> = (0..n.min(3))
            .map(|i| format!("{}:{GOSSIP_PORT}", address(i)))
            .collect();
        for i in 0..n {
            let log = opts.workdir.join(format!("{name}-agent-{i}.log"));
            let out = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
            let err = out.try_clone()?;
            let me = format!("{}:{GOSSIP_PORT}", address(i));
            let mut cmd = Command::new(&opts.gossip);
            cmd.arg("agent")
                .args(["--listen", &me])
                .args(["--admin", &format!("{}:{ADMIN_PORT}", address(i))])
                .args(["--interval-ms", &opts.interval_ms.to_string()])
                .args(["--cluster", "faults"])
                .args(extra)
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err);
            for s in seeds.iter().filter(|s| **s != me) {
                cmd.args(["--seed", s]);
            }
            let child = cmd
                .spawn()
                .with_context(|| format!("starting {}", opts.gossip.display()))?;
            cluster.children.push(Some(child));
        }
        let index: Arc<HashMap<String, usize>> = Arc::new(
            (0..n)
                .map(|i| (format!("{}:{GOSSIP_PORT}", address(i)), i))
                .collect(),
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let converged = (0..n).all(|i| {
                view(&cluster.http, i, &index)
                    .is_ok_and(|v| v.iter().filter(|(_, s)| *s == Seen::Alive).count() == n - 1)
            });
            if converged {
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "{n} agents did not converge within 30 s (logs in {})",
                    opts.workdir.display()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        cluster.epoch = Instant::now();
        for i in 0..n {
            let (changes, stop, index) =
                (cluster.changes.clone(), cluster.stop.clone(), index.clone());
            let (epoch, poll, http) = (cluster.epoch, opts.poll, cluster.http.clone());
            cluster.watchers.push(std::thread::spawn(move || {
                let mut last: Vec<Option<Seen>> = vec![None; n];
                while !stop.load(Ordering::Relaxed) {
                    let asked = Instant::now();
                    if let Ok(v) = view(&http, i, &index) {
                        let at = epoch.elapsed();
                        let mut changes = changes.lock().unwrap_or_else(|e| e.into_inner());
                        for (target, seen) in v {
                            if let Some(slot) = last.get_mut(target)
                                && *slot != Some(seen)
                            {
                                *slot = Some(seen);
                                changes.push(Change {
                                    at,
                                    observer: i,
                                    target,
                                    seen,
                                });
                            }
                        }
                    }
                    std::thread::sleep(poll.saturating_sub(asked.elapsed()));
                }
            }));
        }
        Ok(cluster)
    }

    /// Agents started.
    pub(crate) fn len(&self) -> usize {
        self.children.len()
    }

    /// Time since the cluster converged.
    pub(crate) fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    /// Every change seen so far, in the order seen.
    pub(crate) fn changes(&self) -> Vec<Change> {
        self.changes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Kills agent `i` with SIGKILL: no leave message, as a crash.
    pub(crate) fn kill(&mut self, i: usize) -> Result<()> {
        if let Some(mut child) = self.children.get_mut(i).and_then(Option::take) {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// Sends `signal` (`STOP`, `CONT`, `HUP`) to agent `i`.
    pub(crate) fn signal(&self, i: usize, signal: &str) -> Result<()> {
        let Some(Some(child)) = self.children.get(i) else {
            bail!("agent {i} is not running");
        };
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(child.id().to_string())
            .status()?;
        if !status.success() {
            bail!("kill -{signal} agent {i}: {status}");
        }
        Ok(())
    }

    /// Agent `i`'s counters, if it answers.
    pub(crate) fn metrics(&self, i: usize) -> Option<Metrics> {
        get(&self.http, i, "/metrics")
            .ok()
            .map(|t| parse_metrics(&t))
    }

    /// Every running agent's counters.
    pub(crate) fn all_metrics(&self) -> Vec<Option<Metrics>> {
        (0..self.len())
            .map(|i| {
                if matches!(self.children.get(i), Some(Some(_))) {
                    self.metrics(i)
                } else {
                    None
                }
            })
            .collect()
    }

    /// Waits (at most `limit`, checking every 50 ms) until `done` holds for
    /// the changes seen so far; whether it did.
    pub(crate) fn wait_until(&self, limit: Duration, done: impl Fn(&[Change]) -> bool) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if done(&self.changes()) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        done(&self.changes())
    }

    /// Stops the watchers and kills every agent.
    pub(crate) fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for w in self.watchers.drain(..) {
            let _ = w.join();
        }
        for i in 0..self.children.len() {
            // A stopped process must be continued to die of SIGKILL promptly
            // in every kernel; harmless otherwise.
            let _ = self.signal(i, "CONT");
            let _ = self.kill(i);
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What `observer` saw of `target` at `at`: its last change at or before.
/// (One thread records each observer's changes, so they are in time order.)
pub(crate) fn seen_at(
    changes: &[Change],
    observer: usize,
    target: usize,
    at: Duration,
) -> Option<Seen> {
    changes
        .iter()
        .rev()
        .find(|c| c.observer == observer && c.target == target && c.at <= at)
        .map(|c| c.seen)
}

/// How long after `from` `observer` first saw `target` as `seen`: zero if it
/// already did at `from`; `None` if it has not yet.
pub(crate) fn delay(
    changes: &[Change],
    observer: usize,
    target: usize,
    seen: Seen,
    from: Duration,
) -> Option<Duration> {
    if seen_at(changes, observer, target, from) == Some(seen) {
        return Some(Duration::ZERO);
    }
    changes
        .iter()
        .find(|c| c.observer == observer && c.target == target && c.at > from && c.seen == seen)
        .map(|c| c.at - from)
}
