//! This project's tokio binding, chitchat 0.13, foca 2.0 and memberlist 0.8
//! (the Rust port of HashiCorp's memberlist) side by side, in the layout
//! `shared/notes/peers.md` measured them: N nodes in one process, one UDP
//! socket each on 127.0.0.1 (memberlist: a UDP socket and a TCP listener),
//! tokio with 2 workers, 100 ms rounds, node 0 the only seed, starts
//! jittered over 100 ms.
//!
//! ```text
//! cargo run --release -p gossip-bench --bin compare -- [--sizes 10,50,100] [--repeats 3] [--systems gossip,chitchat,foca,memberlist]
//! ```
//!
//! Each (system, N, repeat) runs in a child process of its own (so peak RSS
//! is that run's), which prints one JSON line; the parent prints a markdown
//! table of medians with [min-max].
#![allow(clippy::unwrap_used, clippy::expect_used)] // a measuring tool: a broken run aborts

use std::collections::HashSet;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

mod chit; // chitchat 0.13
mod fo; // foca 2.0
mod ml; // memberlist 0.8
mod ours; // this project's tokio binding

/// Bytes and datagrams sent by every node of a run, counted at the send call.
#[derive(Default)]
struct Counters {
    bytes: AtomicU64,
    datagrams: AtomicU64,
}

impl Counters {
    fn sent(&self, bytes: usize) {
        self.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        self.datagrams.fetch_add(1, Ordering::Relaxed);
    }
}

/// What one node believes, kept up to date by its system's adapter.
#[derive(Default)]
struct View {
    /// Other members it believes alive.
    alive: HashSet<SocketAddr>,
    /// It has node 0's key change.
    key: bool,
    /// Members it marked down.
    downed: HashSet<SocketAddr>,
}

type Views = Arc<Vec<Mutex<View>>>;

/// The figures of one run.
#[derive(Serialize, Deserialize, Clone, Debug, Default)]
struct Run {
    converge_s: Option<f64>,
    key_s: Option<f64>,
    detect_s: Option<f64>,
    false_downs: u64,
    cpu_ms_per_node_s: f64,
    bytes_per_node_s: f64,
    datagrams_per_node_s: f64,
    peak_rss_mb: f64,
}

const KEY: &str = "LOAD";
const VALUE: &str = "0.42";
const ROUND: Duration = Duration::from_millis(100);

/// A running cluster of one system.
trait Cluster {
    /// Node 0 sets `KEY` to `VALUE`.
    fn set_key(&mut self) -> impl Future<Output = ()>;
    /// Node `i` vanishes without a word (its task aborted, socket closed).
    fn kill(&mut self, i: usize);
    /// Refreshes the views, for systems that are polled.
    fn refresh(&mut self) -> impl Future<Output = ()>;
    /// Node `i`'s address.
    fn addr(&self, i: usize) -> SocketAddr;
    /// For `COMPARE_DEBUG`: the system's own counters, summed over nodes.
    fn debug(&mut self, _when: &str) -> impl Future<Output = ()> {
        async {}
    }
}

fn cpu_seconds() -> f64 {
    // utime + stime of this process, in clock ticks (100 a second on Linux).
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Polls (refreshing the views) every 20 ms until `f` holds, at most `limit`.
async fn until<C: Cluster>(
    c: &mut C,
    views: &Views,
    limit: Duration,
    f: impl Fn(&[Mutex<View>]) -> bool,
) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        c.refresh().await;
        if f(views) {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

async fn measure<C: Cluster>(
    mut c: C,
    n: usize,
    views: Views,
    counters: Arc<Counters>,
    started: Instant,
) -> Run {
    let mut run = Run::default();
    let all = |v: &[Mutex<View>], skip: &[usize], f: &dyn Fn(&View) -> bool| {
        v.iter()
            .enumerate()
            .filter(|(i, _)| !skip.contains(i))
            .all(|(_, v)| f(&v.lock().unwrap()))
    };
    run.converge_s = until(&mut c, &views, Duration::from_secs(60), |v| {
        all(v, &[], &|x| x.alive.len() >= n - 1)
    })
    .await
    .map(|_| started.elapsed().as_secs_f64());
    if std::env::var_os("COMPARE_DEBUG").is_some() {
        let sizes: Vec<usize> = views
            .iter()
            .map(|v| v.lock().unwrap().alive.len())
            .collect();
        eprintln!("alive per node after converge: {sizes:?}");
        c.debug("after converging").await;
    }

    // Steady window: 10 s of traffic and CPU, and false downs.
    c.refresh().await;
    let downs_before: usize = views.iter().map(|v| v.lock().unwrap().downed.len()).sum();
    let (cpu0, b0, d0) = (
        cpu_seconds(),
        counters.bytes.load(Ordering::Relaxed),
        counters.datagrams.load(Ordering::Relaxed),
    );
    tokio::time::sleep(Duration::from_secs(10)).await;
    let (cpu1, b1, d1) = (
        cpu_seconds(),
        counters.bytes.load(Ordering::Relaxed),
        counters.datagrams.load(Ordering::Relaxed),
    );
    let per = |x: f64| x / 10.0 / n as f64;
    run.cpu_ms_per_node_s = per((cpu1 - cpu0) * 1000.0);
    run.bytes_per_node_s = per((b1 - b0) as f64);
    run.datagrams_per_node_s = per((d1 - d0) as f64);
    c.refresh().await;
    let downs_after: usize = views.iter().map(|v| v.lock().unwrap().downed.len()).sum();
    run.false_downs = (downs_after - downs_before.min(downs_after)) as u64;
    if std::env::var_os("COMPARE_DEBUG").is_some() {
        eprintln!(
            "downs while converging: {downs_before}, in the steady window: {}",
            run.false_downs
        );
        c.debug("after the steady window").await;
    }

    // One key change on node 0.
    c.set_key().await;
    run.key_s = until(&mut c, &views, Duration::from_secs(30), |v| {
        all(v, &[0], &|x| x.key)
    })
    .await
    .map(|d| d.as_secs_f64());

    // Kill the last node.
    let victim = n - 1;
    let victim_addr = c.addr(victim);
    c.kill(victim);
    run.detect_s = until(&mut c, &views, Duration::from_secs(60), |v| {
        all(v, &[victim], &|x| {
            x.downed.contains(&victim_addr) || !x.alive.contains(&victim_addr)
        })
    })
    .await
    .map(|d| d.as_secs_f64());
    // Downs of nodes other than the victim, over the whole run.
    c.refresh().await;
    let others: u64 = views
        .iter()
        .map(|v| {
            v.lock()
                .unwrap()
                .downed
                .iter()
                .filter(|a| **a != victim_addr)
                .count() as u64
        })
        .sum();
    run.false_downs = run.false_downs.max(others);
    run.peak_rss_mb = peak_rss_mb();
    run
}

fn free_port_addr() -> SocketAddr {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    s.local_addr().unwrap()
}

fn jitter(n: usize) -> Duration {
    Duration::from_micros(100_000 / n as u64)
}

fn one(system: &str, n: usize) -> Run {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let views: Views = Arc::new((0..n).map(|_| Mutex::new(View::default())).collect());
        let counters = Arc::new(Counters::default());
        let started = Instant::now();
        match system {
            "gossip" => {
                let c = ours::start(n, views.clone(), counters.clone()).await;
                measure(c, n, views, counters, started).await
            }
            "chitchat" => {
                let c = chit::start(n, views.clone(), counters.clone()).await;
                measure(c, n, views, counters, started).await
            }
            "foca" => {
                let c = fo::start(n, views.clone(), counters.clone()).await;
                measure(c, n, views, counters, started).await
            }
            "memberlist" => {
                let c = ml::start(n, views.clone(), counters.clone()).await;
                measure(c, n, views, counters, started).await
            }
            // `main` checked the name.
            _ => Run::default(),
        }
    })
}

const SYSTEMS: [&str; 4] = ["gossip", "chitchat", "foca", "memberlist"];

/// This project beside chitchat, foca and memberlist: N nodes of each in
/// one process on 127.0.0.1, 100 ms rounds; a markdown table on stdout.
#[derive(clap::Parser)]
#[command(name = "compare")]
struct Cli {
    /// Cluster sizes, 3 to 5000 each.
    #[arg(long, value_delimiter = ',', default_values_t = [10, 50, 100, 200, 500, 1000],
          value_parser = clap::value_parser!(u32).range(3..=5000))]
    sizes: Vec<u32>,
    /// Runs per system and size, 1 to 20 (each in a fresh process).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..=20))]
    repeats: u8,
    /// Systems to run.
    #[arg(long, value_delimiter = ',', default_values_t = SYSTEMS.map(String::from),
          value_parser = clap::builder::PossibleValuesParser::new(SYSTEMS))]
    systems: Vec<String>,
    /// Run one system once at N nodes and print its JSON (the parent
    /// process runs each measurement this way).
    #[arg(long, num_args = 2, value_names = ["SYSTEM", "N"], hide = true)]
    one: Option<Vec<String>>,
}

/// `median [min-max]` of the present values; "—" when none, and how many
/// runs missed, if any.
fn summary(values: &[Option<f64>], digits: usize) -> String {
    let mut v: Vec<f64> = values.iter().flatten().copied().collect();
    let missed = values.len() - v.len();
    if v.is_empty() {
        return "timed out".into();
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let med = v[v.len() / 2];
    let text = if v.len() == 1 {
        format!("{med:.digits$}")
    } else {
        format!(
            "{med:.digits$} [{:.digits$}-{:.digits$}]",
            v[0],
            v[v.len() - 1]
        )
    };
    if missed > 0 {
        format!("{text} ({missed}/{} timed out)", values.len())
    } else {
        text
    }
}

/// Runs one measurement in a child process; its JSON line, or `None` if it
/// failed or took more than 10 minutes (killed: a saturated system can take
/// that long to even answer).
fn run_child(me: &std::path::Path, system: &str, n: usize) -> Option<String> {
    let mut child = Command::new(me)
        .args(["--one", system, &n.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let deadline = Instant::now() + Duration::from_secs(600);
    while Instant::now() < deadline {
        if child.try_wait().ok()?.is_some() {
            let mut out = String::new();
            std::io::Read::read_to_string(&mut child.stdout.take()?, &mut out).ok()?;
            return Some(out);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

fn main() -> std::process::ExitCode {
    let cli = <Cli as clap::Parser>::parse();
    if let Some(one_run) = &cli.one {
        let system = one_run.first().map_or("", String::as_str);
        let n = one_run.get(1).and_then(|n| n.parse().ok()).unwrap_or(0);
        if !SYSTEMS.contains(&system) || n < 3 {
            eprintln!("usage: compare --one gossip|chitchat|foca|memberlist N (N >= 3)");
            return std::process::ExitCode::from(2);
        }
        println!("{}", serde_json::to_string(&one(system, n)).unwrap());
        return std::process::ExitCode::SUCCESS;
    }
    let sizes: Vec<usize> = cli.sizes.iter().map(|&n| n as usize).collect();
    let (repeats, systems) = (cli.repeats, cli.systems);
    let me = std::env::current_exe().unwrap();
    println!(
        "| N | system | all see N members (s) | key change everywhere (s) | killed node down everywhere (s) | false downs | CPU ms/node/s | bytes/node/s | datagrams/node/s | peak RSS (MB) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for &n in &sizes {
        for system in &systems {
            let mut runs = Vec::new();
            for _ in 0..repeats {
                let out = run_child(&me, system, n);
                let line = out.unwrap_or_default();
                match serde_json::from_str::<Run>(line.trim()) {
                    Ok(r) => runs.push(r),
                    Err(e) => eprintln!("{system} N={n}: run failed or timed out ({e}): {line}"),
                }
            }
            let col = |f: &dyn Fn(&Run) -> Option<f64>, d: usize| {
                summary(&runs.iter().map(f).collect::<Vec<_>>(), d)
            };
            println!(
                "| {n} | {system} | {} | {} | {} | {} | {} | {} | {} | {} |",
                col(&|r| r.converge_s, 2),
                col(&|r| r.key_s, 3),
                col(&|r| r.detect_s, 2),
                col(&|r| Some(r.false_downs as f64), 0),
                col(&|r| Some(r.cpu_ms_per_node_s), 2),
                col(&|r| Some(r.bytes_per_node_s), 0),
                col(&|r| Some(r.datagrams_per_node_s), 1),
                col(&|r| Some(r.peak_rss_mb), 1),
            );
        }
    }
    std::process::ExitCode::SUCCESS
}
