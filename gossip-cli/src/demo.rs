//! `gossip demo`: a real cluster on 127.0.0.1 in one process, put through
//! its paces: convergence, a crash, a restart with a new generation, and a
//! graceful shutdown, each timed.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use gossip_core::Config;
use gossip_core::wire::ClusterId;
use gossip_tokio::{Handle, NodeConfig, Running, Snapshot, spawn_task};

/// Polls every this often while waiting for a step.
const POLL: Duration = Duration::from_millis(50);

struct Member {
    running: Option<Running>,
    listen: SocketAddr,
    data_dir: PathBuf,
}

impl Member {
    fn handle(&self) -> Option<&Handle> {
        self.running.as_ref().map(|r| &r.handle)
    }
}

fn config() -> Config {
    let mut c = Config::lan(ClusterId::from_name("gossip-demo"));
    c.gossip_interval = Duration::from_millis(200);
    c
}

async fn start(
    listen: SocketAddr,
    seed: Option<SocketAddr>,
    data_dir: PathBuf,
    i: usize,
) -> anyhow::Result<Running> {
    let mut cfg = NodeConfig::new(listen, config());
    cfg.seeds.extend(seed);
    cfg.data_dir = Some(data_dir);
    cfg.states.push(("STATUS".into(), b"NORMAL".to_vec()));
    cfg.states
        .push(("RACK".into(), format!("rack{}", i % 3 + 1).into_bytes()));
    Ok(spawn_task(cfg).await?)
}

/// Every running member's snapshot, by index.
async fn snapshots(members: &[Member]) -> Vec<Option<Snapshot>> {
    let mut out = Vec::with_capacity(members.len());
    for m in members {
        out.push(match m.handle() {
            Some(h) => h.snapshot().await.ok(),
            None => None,
        });
    }
    out
}

/// Waits (bounded) until `done` holds for the snapshots, printing a live line
/// about once a second. Returns the time it took.
async fn wait_for(
    what: &str,
    members: &[Member],
    limit: Duration,
    done: impl Fn(&[Option<Snapshot>]) -> bool,
) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let mut last_print = Instant::now();
    loop {
        let snaps = snapshots(members).await;
        if done(&snaps) {
            let took = start.elapsed();
            println!("  {what}: {:.2} s", took.as_secs_f64());
            return Ok(took);
        }
        if start.elapsed() > limit {
            print_table(members, &snaps);
            anyhow::bail!("{what} did not happen within {} s", limit.as_secs());
        }
        if last_print.elapsed() >= Duration::from_secs(1) {
            last_print = Instant::now();
            let views: Vec<String> = snaps
                .iter()
                .map(|s| s.as_ref().map_or("-".into(), |s| s.alive().to_string()))
                .collect();
            println!(
                "  ... {:.1} s, peers each node sees alive: [{}]",
                start.elapsed().as_secs_f64(),
                views.join(" ")
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

fn print_table(members: &[Member], snaps: &[Option<Snapshot>]) {
    println!(
        "  {:<22} {:>12} {:>10} {:>6} {:>10}  STATUS",
        "node", "generation", "heartbeat", "alive", "max phi"
    );
    for (m, s) in members.iter().zip(snaps) {
        match s {
            Some(s) => {
                let phi = s
                    .endpoints
                    .iter()
                    .filter(|e| e.alive)
                    .map(|e| e.phi)
                    .fold(0.0f64, f64::max);
                let status = s
                    .local
                    .state("STATUS")
                    .map_or_else(String::new, |v| v.value_text());
                println!(
                    "  {:<22} {:>12} {:>10} {:>6} {:>10.2}  {status}",
                    m.listen.to_string(),
                    s.local.generation.0,
                    s.local.heartbeat.0,
                    format!("{}/{}", s.alive(), members.len() - 1),
                    phi
                );
            }
            None => println!("  {:<22} (not running)", m.listen.to_string()),
        }
    }
}

/// Every running member other than `except` satisfies `f` about `target`.
fn all_see(
    snaps: &[Option<Snapshot>],
    except: &[usize],
    target: SocketAddr,
    f: impl Fn(&gossip_tokio::EndpointSnapshot) -> bool,
) -> bool {
    snaps.iter().enumerate().all(|(i, s)| {
        except.contains(&i)
            || s.as_ref()
                .is_some_and(|s| s.endpoint(&target).is_some_and(&f))
    })
}

/// Runs the demo; the error says which step failed.
pub(crate) async fn run(nodes: usize) -> anyhow::Result<()> {
    let base = std::env::temp_dir().join(format!("gossip-demo-{}", std::process::id()));
    let result = steps(nodes, &base).await;
    let _ = std::fs::remove_dir_all(&base);
    result
}

async fn steps(nodes: usize, base: &std::path::Path) -> anyhow::Result<()> {
    println!("starting {nodes} nodes on 127.0.0.1 (200 ms rounds, fanout 2, node 0 the seed)");
    let mut members: Vec<Member> = Vec::with_capacity(nodes);
    let mut seed = None;
    for i in 0..nodes {
        let data_dir = base.join(format!("node-{i}"));
        let listen: SocketAddr = "127.0.0.1:0".parse()?;
        let running = start(listen, seed, data_dir.clone(), i).await?;
        let listen = running.handle.local_addr();
        seed = seed.or(Some(listen));
        members.push(Member {
            running: Some(running),
            listen,
            data_dir,
        });
    }

    println!("1. convergence: every node sees every other alive");
    let n = nodes;
    wait_for("converged", &members, Duration::from_secs(30), |s| {
        s.iter()
            .all(|s| s.as_ref().is_some_and(|s| s.alive() == n - 1))
    })
    .await?;
    print_table(&members, &snapshots(&members).await);

    let victim = nodes - 1;
    let victim_addr = members[victim].listen;
    println!("2. crash: node {victim_addr} stops without a word");
    if let Some(r) = members[victim].running.take() {
        r.task.abort();
        let _ = r.task.await;
    }
    wait_for(
        "every live node marked it down",
        &members,
        Duration::from_secs(60),
        |s| all_see(s, &[victim], victim_addr, |e| !e.alive),
    )
    .await?;

    println!("3. restart: node {victim_addr} comes back with a new generation");
    let old_generation = snapshots(&members).await[0]
        .as_ref()
        .and_then(|s| s.endpoint(&victim_addr).map(|e| e.generation.0))
        .unwrap_or(0);
    let running = start(victim_addr, seed, members[victim].data_dir.clone(), victim).await?;
    let new_generation = running.handle.generation();
    members[victim].running = Some(running);
    println!("  generation {old_generation} -> {}", new_generation.0);
    wait_for(
        "every node sees it up again",
        &members,
        Duration::from_secs(30),
        |s| {
            all_see(s, &[victim], victim_addr, |e| {
                e.alive && e.generation == new_generation
            })
        },
    )
    .await?;

    let leaving = nodes - 2;
    let leaving_addr = members[leaving].listen;
    println!("4. graceful shutdown: node {leaving_addr} leaves");
    if let Some(h) = members[leaving].handle() {
        h.shutdown().await?;
    }
    if let Some(r) = members[leaving].running.take() {
        let _ = r.task.await;
    }
    wait_for(
        "every node sees it shut down",
        &members,
        Duration::from_secs(10),
        |s| {
            all_see(s, &[leaving], leaving_addr, |e| {
                !e.alive
                    && e.state("STATUS")
                        .is_some_and(|v| v.value.starts_with(b"shutdown"))
            })
        },
    )
    .await?;
    print_table(&members, &snapshots(&members).await);

    println!("5. the rest shut down gracefully");
    for m in &mut members {
        if let Some(r) = m.running.take() {
            r.handle.shutdown().await?;
            let _ = r.task.await;
        }
    }
    println!("demo complete: every step happened");
    Ok(())
}
