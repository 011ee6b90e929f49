//! Measures a cluster on 127.0.0.1 in one process, as `shared/notes/peers.md`
//! measured chitchat and foca: N nodes with one UDP socket each, tokio with 2
//! workers, 100 ms rounds, node 0 the only seed, starts jittered over 100 ms.
//! Prints: time until every node sees all N members alive; time for one key
//! change to reach every node; time until every live node marks a killed
//! node down; false downs; datagrams, bytes and CPU per node per second over
//! a 10 s steady window.
//!
//! `cargo run --release -p gossip-tokio --example loopback -- 10 50 100`

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use gossip_core::Config;
use gossip_core::wire::ClusterId;
use gossip_tokio::{MembershipEvent, NodeConfig, Running, Snapshot, spawn_task};

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

async fn snapshots(nodes: &[Option<Running>]) -> Vec<Option<Snapshot>> {
    let mut out = Vec::new();
    for n in nodes {
        out.push(match n {
            Some(r) => r.handle.snapshot().await.ok(),
            None => None,
        });
    }
    out
}

async fn until(
    nodes: &[Option<Running>],
    limit: Duration,
    f: impl Fn(&[Option<Snapshot>]) -> bool,
) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f(&snapshots(nodes).await) {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}

async fn measure(n: usize) -> Result<String, Box<dyn std::error::Error>> {
    let mut gossip = Config::new(ClusterId::from_name("loopback"));
    gossip.gossip_interval = Duration::from_millis(100);
    gossip.max_peers = n;
    let mut nodes: Vec<Option<Running>> = Vec::new();
    let started = Instant::now();
    let mut seed: Option<SocketAddr> = None;
    for _ in 0..n {
        let mut cfg = NodeConfig::new("127.0.0.1:0".parse()?, gossip.clone());
        cfg.seeds.extend(seed);
        cfg.states.push(("STATUS".into(), b"NORMAL".to_vec()));
        let r = spawn_task(cfg).await?;
        seed = seed.or(Some(r.handle.local_addr()));
        nodes.push(Some(r));
        tokio::time::sleep(Duration::from_micros(100_000 / n as u64)).await;
    }
    let converge = until(&nodes, Duration::from_secs(120), |s| {
        s.iter()
            .all(|s| s.as_ref().is_some_and(|s| s.alive() == n - 1))
    })
    .await
    // From the first node's start.
    .map(|_| started.elapsed());

    // Steady window: traffic and CPU.
    let stats0 = snapshots(&nodes).await;
    let cpu0 = cpu_seconds();
    let mut downs: Vec<_> = nodes
        .iter()
        .flatten()
        .map(|r| r.handle.subscribe())
        .collect();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let cpu = (cpu_seconds() - cpu0) / 10.0 / n as f64 * 1000.0;
    let stats1 = snapshots(&nodes).await;
    let sum = |s: &[Option<Snapshot>], f: fn(&Snapshot) -> u64| -> u64 {
        s.iter().flatten().map(f).sum()
    };
    let bytes = (sum(&stats1, |s| s.stats.bytes_out) - sum(&stats0, |s| s.stats.bytes_out)) as f64
        / 10.0
        / n as f64;
    let dgrams = (sum(&stats1, |s| s.stats.datagrams_out) - sum(&stats0, |s| s.stats.datagrams_out))
        as f64
        / 10.0
        / n as f64;
    let mut false_downs = 0;
    for rx in &mut downs {
        while let Ok(e) = rx.try_recv() {
            false_downs += usize::from(matches!(e, MembershipEvent::Down(_)));
        }
    }

    // One key change.
    let origin = nodes[0]
        .as_ref()
        .map(|r| r.handle.clone())
        .ok_or("no node 0")?;
    let origin_addr = origin.local_addr();
    origin.set_state("LOAD", b"0.42").await?;
    let change = until(&nodes, Duration::from_secs(60), |s| {
        s.iter().skip(1).all(|s| {
            s.as_ref().is_some_and(|s| {
                s.endpoint(&origin_addr)
                    .and_then(|e| e.state("LOAD"))
                    .is_some_and(|v| v.value == b"0.42")
            })
        })
    })
    .await;

    // Kill the last node (its task aborted, socket closed).
    let victim = nodes[n - 1].take().ok_or("no victim")?;
    let victim_addr = victim.handle.local_addr();
    victim.task.abort();
    let detect = until(&nodes, Duration::from_secs(120), |s| {
        s.iter()
            .flatten()
            .all(|s| s.endpoint(&victim_addr).is_some_and(|e| !e.alive))
    })
    .await;
    for r in nodes.into_iter().flatten() {
        let _ = r.handle.shutdown().await;
    }
    let secs = |d: Option<Duration>| {
        d.map_or_else(|| "timeout".into(), |d| format!("{:.2}", d.as_secs_f64()))
    };
    Ok(format!(
        "| {n} | {} | {} | {} | {false_downs} | {cpu:.2} | {bytes:.0} | {dgrams:.1} |",
        secs(converge),
        secs(change),
        secs(detect)
    ))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![10, 50, 100]
    } else {
        sizes
    };
    println!(
        "| N | all see N members (s) | key change everywhere (s) | killed node down everywhere (s) | false downs (10 s steady) | CPU ms/node/s | bytes/node/s | datagrams/node/s |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for n in sizes {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        println!("{}", rt.block_on(measure(n))?);
    }
    Ok(())
}
