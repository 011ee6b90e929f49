//! Timing on tokio's paused clock: nodes on an in-memory network, so a
//! minute of gossip takes milliseconds and nothing depends on the machine's
//! speed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gossip_tokio::{ClusterId, Config};
use gossip_tokio::{
    Events, Handle, MembershipEvent, NodeConfig, RecvError, Running, Snapshot, Transport, spawn_on,
};
use tokio::sync::mpsc;

type Inbox = mpsc::UnboundedSender<(Vec<u8>, SocketAddr)>;

/// Datagrams between nodes of one process, delivered at once, except to or
/// from a muted address.
#[derive(Clone, Default)]
struct MemNet(
    Arc<Mutex<HashMap<SocketAddr, Inbox>>>,
    Arc<Mutex<BTreeSet<SocketAddr>>>,
);

struct MemSocket {
    addr: SocketAddr,
    net: MemNet,
    inbox: tokio::sync::Mutex<mpsc::UnboundedReceiver<(Vec<u8>, SocketAddr)>>,
}

impl MemNet {
    fn socket(&self, addr: SocketAddr) -> MemSocket {
        let (tx, rx) = mpsc::unbounded_channel();
        self.0.lock().unwrap().insert(addr, tx);
        MemSocket {
            addr,
            net: self.clone(),
            inbox: tokio::sync::Mutex::new(rx),
        }
    }

    fn unplug(&self, addr: &SocketAddr) {
        self.0.lock().unwrap().remove(addr);
    }

    /// Drops every datagram to or from `addr` while `muted`.
    fn mute(&self, addr: SocketAddr, muted: bool) {
        let mut set = self.1.lock().unwrap();
        if muted {
            set.insert(addr);
        } else {
            set.remove(&addr);
        }
    }
}

impl Transport for MemSocket {
    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.addr)
    }

    async fn recv_from(&self, buf: &mut [u8]) -> std::io::Result<(usize, SocketAddr)> {
        let Some((bytes, from)) = self.inbox.lock().await.recv().await else {
            return Err(std::io::ErrorKind::BrokenPipe.into());
        };
        let n = bytes.len().min(buf.len());
        buf[..n].copy_from_slice(&bytes[..n]);
        Ok((n, from))
    }

    async fn send_to(&self, buf: &[u8], target: SocketAddr) -> std::io::Result<usize> {
        let muted = self.net.1.lock().unwrap();
        if muted.contains(&self.addr) || muted.contains(&target) {
            return Ok(buf.len());
        }
        drop(muted);
        if let Some(tx) = self.net.0.lock().unwrap().get(&target) {
            let _ = tx.send((buf.to_vec(), self.addr));
        }
        Ok(buf.len())
    }
}

/// One-second rounds: every node sees the others alive within 30 virtual
/// seconds.
async fn converge(nodes: &[Running]) {
    let others = nodes.len() - 1;
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut done = true;
        for n in nodes {
            done &= n.handle.snapshot().await.unwrap().alive() == others;
        }
        if done {
            return;
        }
    }
    panic!(
        "{} nodes did not converge in 30 virtual seconds",
        nodes.len()
    );
}

fn start(net: &MemNet, i: u8, seed: Option<SocketAddr>) -> Running {
    let addr: SocketAddr = format!("10.0.0.{i}:7000").parse().unwrap();
    let mut cfg = NodeConfig::new(addr, Config::new(ClusterId::from_name("paused")));
    cfg.seeds.extend(seed);
    spawn_on(cfg, net.socket(addr)).unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_crashed_node_is_suspected_then_down_on_the_virtual_clock() {
    let net = MemNet::default();
    let nodes: Vec<Running> = (1..=4)
        .map(|i| start(&net, i, (i > 1).then(|| "10.0.0.1:7000".parse().unwrap())))
        .collect();
    converge(&nodes).await;
    // A while in steady state, then crash node 4.
    tokio::time::sleep(Duration::from_secs(20)).await;
    let mut events = nodes[0].handle.subscribe();
    let victim = nodes[3].handle.local_addr();
    nodes[3].task.abort();
    net.unplug(&victim);
    let crashed_at = tokio::time::Instant::now();
    let down_at = loop {
        match tokio::time::timeout(Duration::from_secs(120), events.recv()).await {
            Ok(Ok(MembershipEvent::Down { endpoint: a })) if a == victim => {
                break tokio::time::Instant::now();
            }
            Ok(Ok(_)) => {}
            other => panic!("no conviction: {other:?}"),
        }
    };
    let took = down_at - crashed_at;
    // Never before a probe and its indirect probes failed (three probe
    // timeouts of 200 ms) and the shortest suspicion (half a round) passed;
    // within a few rounds (each node probes one member a round, and checks
    // the one it gossips to).
    assert!(took >= Duration::from_millis(1100), "{took:?}");
    assert!(took <= Duration::from_secs(10), "{took:?}");
    for n in &nodes[..3] {
        n.handle.shutdown().await.unwrap();
    }
}

/// Who a node believes alive, followed by the contract of
/// `Handle::subscribe_with_snapshot`.
struct Follower {
    alive: BTreeSet<SocketAddr>,
    events: Events,
    lagged: usize,
}

impl Follower {
    async fn start(handle: &Handle) -> Self {
        let (snapshot, events) = handle.subscribe_with_snapshot().await.unwrap();
        Follower {
            alive: alive_in(&snapshot),
            events,
            lagged: 0,
        }
    }

    /// Applies every event sent so far.
    async fn catch_up(&mut self, handle: &Handle) {
        loop {
            match self.events.try_recv() {
                Ok(Some(MembershipEvent::Up { endpoint: a })) => {
                    self.alive.insert(a);
                }
                Ok(Some(
                    MembershipEvent::Down { endpoint: a }
                    | MembershipEvent::Restarted { endpoint: a, .. }
                    | MembershipEvent::Removed { endpoint: a },
                )) => {
                    self.alive.remove(&a);
                }
                Ok(Some(_)) => {}
                Err(RecvError::Lagged(_)) => {
                    let lagged = self.lagged + 1;
                    *self = Follower::start(handle).await;
                    self.lagged = lagged;
                }
                Ok(None) => return,
                Err(e) => panic!("the node stopped: {e}"),
            }
        }
    }
}

fn alive_in(s: &Snapshot) -> BTreeSet<SocketAddr> {
    s.endpoints
        .iter()
        .filter(|e| e.alive)
        .map(|e| e.address)
        .collect()
}

fn start_with_states(net: &MemNet, i: u8, seed: SocketAddr, states: usize) -> Running {
    let addr: SocketAddr = format!("10.0.0.{i}:7000").parse().unwrap();
    let mut cfg = NodeConfig::new(addr, Config::new(ClusterId::from_name("paused")));
    cfg.seeds.push(seed);
    cfg.states = (0..states)
        .map(|k| (format!("k{k:02}"), b"v".to_vec()))
        .collect();
    spawn_on(cfg, net.socket(addr)).unwrap()
}

/// Advances the virtual clock a second at a time (at most `limit`) until
/// `f` holds for `node`'s snapshot.
async fn until(node: &Running, limit: u64, f: impl Fn(&Snapshot) -> bool) {
    for _ in 0..limit {
        if f(&node.handle.snapshot().await.unwrap()) {
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    panic!("not within {limit} s");
}

#[tokio::test(start_paused = true)]
async fn a_subscriber_by_the_contract_ends_with_the_nodes_view() {
    let net = MemNet::default();
    let seed: SocketAddr = "10.0.0.1:7000".parse().unwrap();
    let mut nodes = vec![start(&net, 1, None), start(&net, 2, Some(seed))];
    let a = nodes[0].handle.clone();
    // A sees B up before anyone subscribes (as when a node is spawned and
    // then subscribed to: its loop has already run).
    until(&nodes[0], 30, |s| s.alive() == 1).await;
    let mut follower = Follower::start(&a).await;
    assert_eq!(follower.alive.len(), 1, "B is in the snapshot");

    // Seven more join with 60 states each while the follower reads nothing:
    // over 400 events at A, so it lags, and the oldest, lost, include Ups.
    let states = 60;
    for i in 3..=9 {
        nodes.push(start_with_states(&net, i, seed, states));
    }
    until(&nodes[0], 120, |s| {
        s.alive() == 8
            && s.endpoints
                .iter()
                .filter(|e| e.states.len() == states)
                .count()
                == 7
    })
    .await;
    follower.catch_up(&a).await;
    assert!(follower.lagged > 0, "the follower fell behind");
    assert_eq!(follower.alive, alive_in(&a.snapshot().await.unwrap()));
    assert_eq!(follower.alive.len(), 8);

    // A crash is followed too.
    let victim = nodes[8].handle.local_addr();
    nodes[8].task.abort();
    net.unplug(&victim);
    for _ in 0..120 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        follower.catch_up(&a).await;
        if !follower.alive.contains(&victim) {
            break;
        }
    }
    let s = a.snapshot().await.unwrap();
    assert!(!s.endpoint(&victim).unwrap().alive);
    assert_eq!(follower.alive, alive_in(&s));
    for n in &nodes[..8] {
        n.handle.shutdown().await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn a_refuted_suspicion_is_suspect_then_up() {
    let net = MemNet::default();
    let nodes: Vec<Running> = (1..=4)
        .map(|i| start(&net, i, (i > 1).then(|| "10.0.0.1:7000".parse().unwrap())))
        .collect();
    converge(&nodes).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let victim = nodes[3].handle.local_addr();
    let mut events = nodes[0].handle.subscribe();
    // Node 4 goes silent until node 1 suspects it, then speaks again: it
    // hears the suspicion and refutes it before it times out.
    net.mute(victim, true);
    let mut seen = Vec::new();
    let suspected = record_until(&mut events, victim, &mut seen, |e| {
        matches!(e, MembershipEvent::Suspect { .. })
    })
    .await;
    assert!(suspected, "node 1 never suspected node 4: {seen:?}");
    net.mute(victim, false);
    let refuted = record_until(&mut events, victim, &mut seen, |e| {
        matches!(e, MembershipEvent::Up { .. })
    })
    .await;
    assert!(refuted, "no Up after the suspicion: {seen:?}");
    assert_eq!(
        seen,
        [
            MembershipEvent::Suspect { endpoint: victim },
            MembershipEvent::Up { endpoint: victim }
        ],
        "a refuted suspicion is Suspect, then Up"
    );
}

/// Records the events about `about` into `seen` until one matches `done`
/// (at most 60 virtual seconds); whether one did.
async fn record_until(
    events: &mut Events,
    about: SocketAddr,
    seen: &mut Vec<MembershipEvent>,
    done: impl Fn(&MembershipEvent) -> bool,
) -> bool {
    let found = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let e = events.recv().await.unwrap();
            if e.endpoint() != about {
                continue;
            }
            let last = done(&e);
            seen.push(e);
            if last {
                return;
            }
        }
    })
    .await;
    found.is_ok()
}
