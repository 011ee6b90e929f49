//! The order of membership events on every path, as a subscriber of one
//! node sees them about another: join, crash, restart after a crash,
//! graceful shutdown, restart after a shutdown, removal. Real sockets on
//! loopback; every wait is bounded.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use gossip_tokio::{ClusterId, Config, Events, MembershipEvent, NodeConfig, Running, spawn_task};

fn config() -> Config {
    let mut c = Config::lan(ClusterId::from_name("tokio-events"));
    c.gossip_interval = Duration::from_millis(50);
    c.removal_delay = Duration::from_secs(2);
    c
}

async fn start(listen: SocketAddr, seed: Option<SocketAddr>, dir: Option<&Path>) -> Running {
    let mut cfg = NodeConfig::new(listen, config());
    cfg.seeds.extend(seed);
    cfg.data_dir = dir.map(Path::to_path_buf);
    cfg.states.push(("ROLE".into(), b"test".to_vec()));
    spawn_task(cfg).await.expect("binds on loopback")
}

fn data_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gossip-events-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// What one node told its subscriber, about one endpoint.
struct Recorder {
    events: Events,
    about: SocketAddr,
    log: Vec<MembershipEvent>,
}

impl Recorder {
    /// Records events until one about the endpoint matches `f` (at most
    /// `limit`); the events about it recorded meanwhile, by name.
    async fn until(
        &mut self,
        what: &str,
        limit: Duration,
        f: impl Fn(&MembershipEvent) -> bool,
    ) -> Vec<&'static str> {
        let start = self.log.len();
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let e = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .unwrap_or_else(|_| panic!("no {what} within {limit:?}: {:?}", self.log))
                .expect("the subscription lasts");
            if e.endpoint() != self.about {
                continue;
            }
            let done = f(&e);
            self.log.push(e);
            if done {
                return self.log[start..].iter().map(name).collect();
            }
        }
    }
}

fn name(e: &MembershipEvent) -> &'static str {
    match e {
        MembershipEvent::Discovered { .. } => "discovered",
        MembershipEvent::Up { .. } => "up",
        MembershipEvent::Suspect { .. } => "suspect",
        MembershipEvent::Down { .. } => "down",
        MembershipEvent::Restarted { .. } => "restarted",
        MembershipEvent::ShutDown { .. } => "shut down",
        MembershipEvent::Removed { .. } => "removed",
        MembershipEvent::StateChanged { .. } => "state",
        _ => "other",
    }
}

/// Node A (the seed) on `a_ip`, an address for B on `b_ip` kept across its
/// restarts, B's data directory, and a recorder of what A says about B.
async fn setup(a_ip: u8, b_ip: u8, name: &str) -> (Running, SocketAddr, PathBuf, Recorder) {
    let a = start(format!("127.0.0.{a_ip}:0").parse().unwrap(), None, None).await;
    let b_addr = std::net::UdpSocket::bind(format!("127.0.0.{b_ip}:0"))
        .unwrap()
        .local_addr()
        .unwrap();
    let rec = Recorder {
        events: a.handle.subscribe(),
        about: b_addr,
        log: Vec::new(),
    };
    (a, b_addr, data_dir(name), rec)
}

/// The events of a restart: `Restarted`, then the new generation's states,
/// then `Up`, and nothing else.
fn assert_restart(seen: &[&str]) {
    let (first, rest) = seen.split_first().expect("events");
    let (last, middle) = rest.split_last().expect("an up");
    assert_eq!(
        (*first, *last),
        ("restarted", "up"),
        "a restart is Restarted ... Up: {seen:?}"
    );
    assert!(
        middle.iter().all(|e| *e == "state"),
        "only state changes between Restarted and Up: {seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_crash_and_restart_after_a_crash() {
    let (a, b_addr, dir, mut rec) = setup(41, 42, "crash").await;
    let seed = a.handle.local_addr();
    let limit = Duration::from_secs(10);

    // Join: Discovered first, then Up (its states may come between).
    let b = start(b_addr, Some(seed), Some(&dir)).await;
    let seen = rec
        .until("up", limit, |e| matches!(e, MembershipEvent::Up { .. }))
        .await;
    assert_eq!(seen.first(), Some(&"discovered"), "{seen:?}");
    assert!(
        seen[1..seen.len() - 1].iter().all(|e| *e == "state"),
        "{seen:?}"
    );

    // Crash: Suspect, then Down.
    b.task.abort();
    let _ = b.task.await;
    let seen = rec
        .until("down", limit, |e| matches!(e, MembershipEvent::Down { .. }))
        .await;
    assert_eq!(seen, ["suspect", "down"]);

    // Restart after the crash (a higher generation from the data
    // directory): Restarted, its states, Up.
    let b = start(b_addr, Some(seed), Some(&dir)).await;
    let seen = rec
        .until("up", limit, |e| matches!(e, MembershipEvent::Up { .. }))
        .await;
    assert_restart(&seen);
    let generation = b.handle.generation();
    assert!(rec.log.iter().any(|e| matches!(e,
        MembershipEvent::Restarted { generation: g, .. } if *g == generation)));

    b.handle.shutdown().await.unwrap();
    a.handle.shutdown().await.unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_faster_than_the_crash_is_seen() {
    let (a, b_addr, dir, mut rec) = setup(46, 47, "fast").await;
    let seed = a.handle.local_addr();
    let limit = Duration::from_secs(10);
    let b = start(b_addr, Some(seed), Some(&dir)).await;
    rec.until("up", limit, |e| matches!(e, MembershipEvent::Up { .. }))
        .await;
    // Crashed and back at once: the new process's first datagrams reach A
    // while it still believes the old one up (or only suspects it).
    b.task.abort();
    let _ = b.task.await;
    let b = start(b_addr, Some(seed), Some(&dir)).await;
    let seen = rec
        .until("up", limit, |e| matches!(e, MembershipEvent::Up { .. }))
        .await;
    // A suspicion of the old process may come first; then the restart.
    let from = usize::from(seen.first() == Some(&"suspect"));
    assert_restart(&seen[from..]);
    b.handle.shutdown().await.unwrap();
    a.handle.shutdown().await.unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_restart_after_a_shutdown_and_removal() {
    let (a, b_addr, dir, mut rec) = setup(43, 44, "shutdown").await;
    let seed = a.handle.local_addr();
    let limit = Duration::from_secs(10);
    let b = start(b_addr, Some(seed), Some(&dir)).await;
    rec.until("up", limit, |e| matches!(e, MembershipEvent::Up { .. }))
        .await;

    // Graceful shutdown: its STATUS changes, then ShutDown, then Down.
    b.handle.shutdown().await.unwrap();
    let _ = b.task.await;
    let seen = rec
        .until("down", limit, |e| matches!(e, MembershipEvent::Down { .. }))
        .await;
    assert_eq!(seen, ["state", "shut down", "down"]);

    // Restart after the shutdown: Restarted, its states, Up.
    let b = start(b_addr, Some(seed), Some(&dir)).await;
    let seen = rec
        .until("up", limit, |e| matches!(e, MembershipEvent::Up { .. }))
        .await;
    assert_restart(&seen);

    // Gone for good: after the removal delay, Removed.
    b.handle.shutdown().await.unwrap();
    let _ = b.task.await;
    let seen = rec
        .until("removed", limit, |e| {
            matches!(e, MembershipEvent::Removed { .. })
        })
        .await;
    assert_eq!(seen, ["state", "shut down", "down", "removed"]);

    a.handle.shutdown().await.unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn an_unspecified_identity_is_refused_and_advertise_names_the_node() {
    let err = spawn_task(NodeConfig::new("0.0.0.0:0".parse().unwrap(), config()))
        .await
        .expect_err("0.0.0.0 is no identity");
    assert!(
        err.to_string().contains("cannot gossip as 0.0.0.0:"),
        "{err}"
    );
    assert!(err.to_string().contains("advertise"), "{err}");

    // Bound to every interface, known by the advertised address.
    let advertised: SocketAddr = "127.0.0.45:7946".parse().unwrap();
    let mut cfg = NodeConfig::new("0.0.0.0:0".parse().unwrap(), config());
    cfg.advertise = Some(advertised);
    let node = spawn_task(cfg).await.unwrap();
    assert_eq!(node.handle.local_addr(), advertised);
    let snapshot = node.handle.snapshot().await.unwrap();
    assert_eq!(snapshot.local.address, advertised);
    node.handle.shutdown().await.unwrap();
}
