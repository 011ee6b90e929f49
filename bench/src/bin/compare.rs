//! This project's tokio binding, chitchat 0.13 and foca 2.0 side by side, in
//! the layout `shared/notes/peers.md` measured them: N nodes in one process,
//! one UDP socket each on 127.0.0.1, tokio with 2 workers, 100 ms rounds,
//! node 0 the only seed, starts jittered over 100 ms.
//!
//! ```text
//! cargo run --release -p gossip-bench --bin compare -- [--sizes 10,50,100] [--repeats 3] [--systems gossip,chitchat,foca,gossip-phi3.5]
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

// ---- this project ---------------------------------------------------------

mod ours {
    use super::*;
    use gossip_core::Config;
    use gossip_core::wire::ClusterId;
    use gossip_tokio::{MembershipEvent, NodeConfig, Running, Transport, spawn_on};

    struct Counted(tokio::net::UdpSocket, Arc<Counters>);

    impl Transport for Counted {
        fn local_addr(&self) -> std::io::Result<SocketAddr> {
            self.0.local_addr()
        }
        fn recv_from<'a>(
            &'a self,
            buf: &'a mut [u8],
        ) -> impl Future<Output = std::io::Result<(usize, SocketAddr)>> + Send + 'a {
            self.0.recv_from(buf)
        }
        async fn send_to(&self, buf: &[u8], target: SocketAddr) -> std::io::Result<usize> {
            let n = self.0.send_to(buf, target).await?;
            self.1.sent(n);
            Ok(n)
        }
    }

    pub(super) struct Ours {
        nodes: Vec<Option<Running>>,
        addrs: Vec<SocketAddr>,
    }

    impl Cluster for Ours {
        async fn set_key(&mut self) {
            let h = &self.nodes[0].as_ref().unwrap().handle;
            h.set_state(KEY, VALUE.as_bytes()).await.unwrap();
        }
        fn kill(&mut self, i: usize) {
            if let Some(r) = self.nodes[i].take() {
                r.task.abort();
            }
        }
        async fn refresh(&mut self) {}
        fn addr(&self, i: usize) -> SocketAddr {
            self.addrs[i]
        }
    }

    /// `phi`: the conviction threshold (8, Cassandra's default; 3.5 is
    /// chitchat's phi 8, whose formula lacks Cassandra's `1 / ln 10`).
    pub(super) async fn start(n: usize, views: Views, counters: Arc<Counters>, phi: f64) -> Ours {
        let mut gossip = Config::new(ClusterId::from_name("compare"));
        gossip.gossip_interval = ROUND;
        gossip.phi_threshold = phi;
        gossip.max_peers = n;
        let mut nodes = Vec::new();
        let mut addrs = Vec::new();
        for i in 0..n {
            let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let mut cfg = NodeConfig::new(socket.local_addr().unwrap(), gossip.clone());
            cfg.seeds.extend(addrs.first().copied());
            let r = spawn_on(cfg, Counted(socket, counters.clone())).unwrap();
            addrs.push(r.handle.local_addr());
            let mut events = r.handle.subscribe();
            let views = views.clone();
            let handle = r.handle.clone();
            tokio::spawn(async move {
                loop {
                    let e = match events.recv().await {
                        Ok(e) => e,
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                            // Fell behind (a busy join): take the node's view
                            // from a snapshot instead of the missed events.
                            // Events still queued are older than the snapshot
                            // (an old Down replayed after it would hide a live
                            // member): skip them, following only events from
                            // before the snapshot on, which it agrees with.
                            events = events.resubscribe();
                            if let Ok(s) = handle.snapshot().await {
                                let mut v = views[i].lock().unwrap();
                                for e in s.endpoints.iter().filter(|e| !e.alive) {
                                    if v.alive.contains(&e.address) {
                                        v.downed.insert(e.address);
                                    }
                                }
                                v.alive = s
                                    .endpoints
                                    .iter()
                                    .filter(|e| e.alive)
                                    .map(|e| e.address)
                                    .collect();
                                v.key |= s.endpoints.iter().any(|e| {
                                    e.state(KEY).is_some_and(|st| st.value == VALUE.as_bytes())
                                });
                            }
                            continue;
                        }
                        Err(_) => return,
                    };
                    let mut v = views[i].lock().unwrap();
                    match e {
                        MembershipEvent::Up(a) => {
                            v.alive.insert(a);
                        }
                        MembershipEvent::Down(a) => {
                            v.alive.remove(&a);
                            v.downed.insert(a);
                        }
                        MembershipEvent::StateChanged { key, value, .. } => {
                            v.key |= key == KEY && value == VALUE.as_bytes();
                        }
                        _ => {}
                    }
                }
            });
            nodes.push(Some(r));
            tokio::time::sleep(jitter(n)).await;
        }
        Ours { nodes, addrs }
    }
}

// ---- chitchat 0.13 --------------------------------------------------------

mod chit {
    use super::*;
    use async_trait::async_trait;
    use chitchat::transport::{RecvOutcome, SendOutcome, Socket, Transport, UdpTransport};
    use chitchat::{
        ChitchatConfig, ChitchatEnvelope, ChitchatHandle, ChitchatId, FailureDetectorConfig,
        spawn_chitchat,
    };

    struct CountingTransport(Arc<Counters>);
    struct CountingSocket(Box<dyn Socket>, Arc<Counters>);

    #[async_trait]
    impl Transport for CountingTransport {
        async fn open(&self, listen_addr: SocketAddr) -> anyhow::Result<Box<dyn Socket>> {
            let inner = UdpTransport.open(listen_addr).await?;
            Ok(Box::new(CountingSocket(inner, self.0.clone())))
        }
    }

    #[async_trait]
    impl Socket for CountingSocket {
        fn local_addr(&self) -> anyhow::Result<SocketAddr> {
            self.0.local_addr()
        }
        async fn send(
            &mut self,
            to: SocketAddr,
            envelope: ChitchatEnvelope,
        ) -> anyhow::Result<SendOutcome> {
            let out = self.0.send(to, envelope).await?;
            self.1.sent(out.num_bytes_sent);
            Ok(out)
        }
        async fn recv(&mut self) -> anyhow::Result<RecvOutcome> {
            self.0.recv().await
        }
    }

    pub(super) struct Chit {
        nodes: Vec<Option<ChitchatHandle>>,
        ids: Vec<ChitchatId>,
        views: Views,
    }

    impl Cluster for Chit {
        async fn set_key(&mut self) {
            let h = self.nodes[0].as_ref().unwrap();
            h.with_chitchat(|c| c.self_node_state().set(KEY, VALUE))
                .await;
        }
        fn kill(&mut self, i: usize) {
            if let Some(h) = self.nodes[i].take() {
                h.abort();
            }
        }
        async fn refresh(&mut self) {
            let origin = self.ids[0].clone();
            for (i, h) in self.nodes.iter().enumerate() {
                let Some(h) = h else { continue };
                let chitchat = h.chitchat();
                let c = chitchat.lock().await;
                let mut v = self.views[i].lock().unwrap();
                // A down is a member seen alive, then dead (chitchat counts
                // nodes it has not heard twice yet as dead too).
                for id in c.dead_nodes() {
                    if v.alive.contains(&id.gossip_advertise_addr) {
                        v.downed.insert(id.gossip_advertise_addr);
                    }
                }
                v.alive = c
                    .live_nodes()
                    .filter(|id| **id != self.ids[i])
                    .map(|id| id.gossip_advertise_addr)
                    .collect();
                v.key |= c.node_state(&origin).and_then(|s| s.get(KEY)) == Some(VALUE);
            }
        }
        fn addr(&self, i: usize) -> SocketAddr {
            self.ids[i].gossip_advertise_addr
        }
    }

    pub(super) async fn start(n: usize, views: Views, counters: Arc<Counters>) -> Chit {
        let mut nodes = Vec::new();
        let mut ids: Vec<ChitchatId> = Vec::new();
        for i in 0..n {
            let addr = free_port_addr();
            let id = ChitchatId::new(format!("node-{i}"), 0, addr);
            let config = ChitchatConfig {
                chitchat_id: id.clone(),
                cluster_id: "compare".to_string(),
                gossip_interval: ROUND,
                listen_addr: addr,
                seed_nodes: ids
                    .first()
                    .map(|s| s.gossip_advertise_addr.to_string())
                    .into_iter()
                    .collect(),
                failure_detector_config: FailureDetectorConfig {
                    phi_threshold: 8.0,
                    initial_interval: ROUND,
                    ..Default::default()
                },
                marked_for_deletion_grace_period: Duration::from_secs(3600),
                catchup_callback: None,
                extra_liveness_predicate: None,
                protocol_version: chitchat::ProtocolVersion::V0,
            };
            let h = spawn_chitchat(config, Vec::new(), &CountingTransport(counters.clone()))
                .await
                .unwrap();
            ids.push(id);
            nodes.push(Some(h));
            tokio::time::sleep(jitter(n)).await;
        }
        Chit { nodes, ids, views }
    }
}

// ---- foca 2.0 -------------------------------------------------------------

mod fo {
    use super::*;
    use foca::{
        AccumulatingRuntime, BroadcastHandler, Foca, Invalidates, OwnedNotification, PostcardCodec,
        Timer,
    };
    use rand::SeedableRng;
    use rand::rngs::SmallRng;
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;
    use std::num::{NonZeroU32, NonZeroUsize};
    use tokio::sync::mpsc;

    #[derive(Debug)]
    pub(super) struct KvError;

    impl std::fmt::Display for KvError {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("bad broadcast")
        }
    }

    impl std::error::Error for KvError {}

    /// One key of node 0, versioned.
    pub(super) struct KvKey(u64);

    impl Invalidates for KvKey {
        fn invalidates(&self, other: &Self) -> bool {
            self.0 > other.0
        }
    }

    /// Node `i`'s handler of node 0's key broadcasts.
    struct Kv {
        seen: u64,
        views: Views,
        i: usize,
    }

    impl BroadcastHandler<SocketAddr> for Kv {
        type Key = KvKey;
        type Error = KvError;

        fn receive_item(
            &mut self,
            data: &[u8],
            _sender: Option<&SocketAddr>,
        ) -> Result<Option<KvKey>, KvError> {
            let version = u64::from_be_bytes(
                data.get(..8)
                    .ok_or(KvError)?
                    .try_into()
                    .map_err(|_| KvError)?,
            );
            if version <= self.seen {
                return Ok(None);
            }
            self.seen = version;
            if data.get(8..) == Some(VALUE.as_bytes()) {
                self.views[self.i].lock().unwrap().key = true;
            }
            Ok(Some(KvKey(version)))
        }
    }

    enum Cmd {
        Announce(SocketAddr),
        Put(Vec<u8>),
    }

    pub(super) struct Fo {
        nodes: Vec<Option<(tokio::task::JoinHandle<()>, mpsc::UnboundedSender<Cmd>)>>,
        addrs: Vec<SocketAddr>,
    }

    impl Cluster for Fo {
        async fn set_key(&mut self) {
            let mut data = 1u64.to_be_bytes().to_vec();
            data.extend_from_slice(VALUE.as_bytes());
            let _ = self.nodes[0].as_ref().unwrap().1.send(Cmd::Put(data));
        }
        fn kill(&mut self, i: usize) {
            if let Some((task, _)) = self.nodes[i].take() {
                task.abort();
            }
        }
        async fn refresh(&mut self) {}
        fn addr(&self, i: usize) -> SocketAddr {
            self.addrs[i]
        }
    }

    async fn node(
        id: SocketAddr,
        sock: tokio::net::UdpSocket,
        cfg: foca::Config,
        kv: Kv,
        mut cmds: mpsc::UnboundedReceiver<Cmd>,
        counters: Arc<Counters>,
        seed: u64,
    ) {
        let (views, i) = (kv.views.clone(), kv.i);
        let mut buf = vec![0u8; cfg.max_packet_size.get()];
        let mut foca =
            Foca::with_custom_broadcast(id, cfg, SmallRng::seed_from_u64(seed), PostcardCodec, kv);
        let mut rt = AccumulatingRuntime::new();
        let mut timers: BinaryHeap<Reverse<(tokio::time::Instant, Timer<SocketAddr>)>> =
            BinaryHeap::new();
        loop {
            let next = timers.peek().map(|Reverse((t, _))| *t);
            let sleep = async move {
                match next {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                r = sock.recv_from(&mut buf) => if let Ok((len, _)) = r {
                    let _ = foca.handle_data(&buf[..len], &mut rt);
                },
                () = sleep => {
                    let now = tokio::time::Instant::now();
                    while timers.peek().is_some_and(|Reverse((t, _))| *t <= now) {
                        let Reverse((_, ev)) = timers.pop().unwrap();
                        let _ = foca.handle_timer(ev, &mut rt);
                    }
                }
                c = cmds.recv() => match c {
                    Some(Cmd::Announce(dst)) => { let _ = foca.announce(dst, &mut rt); }
                    Some(Cmd::Put(d)) => {
                        let _ = foca.add_broadcast(&d);
                        let _ = foca.gossip(&mut rt);
                        views[i].lock().unwrap().key = true;
                    }
                    None => return,
                },
            }
            while let Some((dst, data)) = rt.to_send() {
                if sock.send_to(&data, dst).await.is_ok() {
                    counters.sent(data.len());
                }
            }
            let now = tokio::time::Instant::now();
            while let Some((after, ev)) = rt.to_schedule() {
                timers.push(Reverse((now + after, ev)));
            }
            while let Some(n) = rt.to_notify() {
                let mut v = views[i].lock().unwrap();
                match n {
                    OwnedNotification::MemberUp(m) => {
                        v.alive.insert(m);
                    }
                    OwnedNotification::MemberDown(m) => {
                        v.alive.remove(&m);
                        v.downed.insert(m);
                    }
                    _ => {}
                }
            }
        }
    }

    pub(super) async fn start(n: usize, views: Views, counters: Arc<Counters>) -> Fo {
        let mut cfg = foca::Config::new_lan(NonZeroU32::new(n as u32).unwrap());
        // Every period halved, gossip every round, as peers.md measured.
        cfg.probe_period /= 2;
        cfg.probe_rtt /= 2;
        cfg.suspect_to_down_after /= 2;
        cfg.periodic_gossip = Some(foca::PeriodicParams {
            frequency: ROUND,
            num_members: NonZeroUsize::new(3).unwrap(),
        });
        if let Some(p) = cfg.periodic_announce.as_mut() {
            p.frequency /= 2;
        }
        if let Some(p) = cfg.periodic_announce_to_down_members.as_mut() {
            p.frequency /= 2;
        }
        let mut nodes = Vec::new();
        let mut addrs: Vec<SocketAddr> = Vec::new();
        for i in 0..n {
            let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let id = sock.local_addr().unwrap();
            let (tx, rx) = mpsc::unbounded_channel();
            let kv = Kv {
                seen: 0,
                views: views.clone(),
                i,
            };
            let task = tokio::spawn(node(
                id,
                sock,
                cfg.clone(),
                kv,
                rx,
                counters.clone(),
                i as u64,
            ));
            if let Some(seed) = addrs.first() {
                let _ = tx.send(Cmd::Announce(*seed));
            }
            addrs.push(id);
            nodes.push(Some((task, tx)));
            tokio::time::sleep(jitter(n)).await;
        }
        Fo { nodes, addrs }
    }
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
            "gossip" | "gossip-phi3.5" => {
                let phi = if system == "gossip" { 8.0 } else { 3.5 };
                let c = ours::start(n, views.clone(), counters.clone(), phi).await;
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
            // `main` checked the name.
            _ => Run::default(),
        }
    })
}

const SYSTEMS: [&str; 4] = ["gossip", "chitchat", "foca", "gossip-phi3.5"];

/// Sizes, repeats and systems from the command line.
fn options(args: &[String]) -> Result<(Vec<usize>, usize, Vec<String>), String> {
    let mut sizes = vec![10, 50, 100, 200, 500, 1000];
    let mut repeats = 3;
    let mut systems: Vec<String> = SYSTEMS.iter().take(3).map(|s| s.to_string()).collect();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let value = it.next().ok_or_else(|| format!("{a} needs a value"))?;
        let bad = |what: &str| format!("{a}: '{value}' is not {what}");
        match a.as_str() {
            "--sizes" => {
                sizes = value
                    .split(',')
                    .map(|s| s.parse().ok().filter(|n| (3..=5000).contains(n)))
                    .collect::<Option<_>>()
                    .ok_or_else(|| bad("a list of sizes from 3 to 5000"))?
            }
            "--repeats" => {
                repeats = value
                    .parse()
                    .ok()
                    .filter(|r| (1..=20).contains(r))
                    .ok_or_else(|| bad("a count from 1 to 20"))?
            }
            "--systems" => {
                systems = value.split(',').map(String::from).collect();
                if let Some(s) = systems.iter().find(|s| !SYSTEMS.contains(&s.as_str())) {
                    return Err(format!(
                        "--systems: unknown system '{s}' (gossip, chitchat, foca)"
                    ));
                }
            }
            other => {
                return Err(format!(
                    "unknown option {other} (--sizes, --repeats, --systems)"
                ));
            }
        }
    }
    Ok((sizes, repeats, systems))
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
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--one") {
        let system = args.get(1).map_or("", String::as_str);
        let n = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(0);
        if !SYSTEMS.contains(&system) || n < 3 {
            eprintln!("usage: compare --one gossip|chitchat|foca|gossip-phi3.5 N (N >= 3)");
            return std::process::ExitCode::from(2);
        }
        println!("{}", serde_json::to_string(&one(system, n)).unwrap());
        return std::process::ExitCode::SUCCESS;
    }
    let (sizes, repeats, systems) = match options(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::from(2);
        }
    };
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
