//! This project's tokio binding.

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
    async fn debug(&mut self, when: &str) {
        let mut sum = gossip_core::Stats::default();
        for r in self.nodes.iter().flatten() {
            if let Ok(s) = r.handle.snapshot().await {
                let t = &s.stats;
                sum.late_rounds += t.late_rounds;
                sum.probes_sent += t.probes_sent;
                sum.probe_failures += t.probe_failures;
                sum.ping_reqs_sent += t.ping_reqs_sent;
                sum.suspicions_raised += t.suspicions_raised;
                sum.convictions += t.convictions;
                sum.refutations += t.refutations;
                sum.outbox_full += t.outbox_full;
            }
        }
        eprintln!(
            "{when}: late rounds {}, probes {} failed {}, ping-reqs {}, suspicions {}, \
             convictions {}, refutations {}, outbox full {}",
            sum.late_rounds,
            sum.probes_sent,
            sum.probe_failures,
            sum.ping_reqs_sent,
            sum.suspicions_raised,
            sum.convictions,
            sum.refutations,
            sum.outbox_full
        );
    }
}

/// The node's view from a snapshot: who it believes alive (and who it had
/// believed alive that is no longer: a down), and whether it has the key.
fn apply(view: &Mutex<View>, s: &gossip_tokio::Snapshot) {
    let mut v = view.lock().unwrap();
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
    v.key |= s
        .endpoints
        .iter()
        .any(|e| e.state(KEY).is_some_and(|st| st.value == VALUE.as_bytes()));
}

/// Defaults but the round, 100 ms; membership followed by the contract of
/// `Handle::subscribe_with_snapshot`.
pub(super) async fn start(n: usize, views: Views, counters: Arc<Counters>) -> Ours {
    let mut gossip = Config::new(ClusterId::from_name("compare"));
    gossip.gossip_interval = ROUND;
    gossip.max_peers = n;
    let mut nodes = Vec::new();
    let mut addrs = Vec::new();
    for i in 0..n {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut cfg = NodeConfig::new(socket.local_addr().unwrap(), gossip.clone());
        cfg.seeds.extend(addrs.first().copied());
        let r = spawn_on(cfg, Counted(socket, counters.clone())).unwrap();
        addrs.push(r.handle.local_addr());
        let views = views.clone();
        let handle = r.handle.clone();
        tokio::spawn(async move {
            let Ok((s, mut events)) = handle.subscribe_with_snapshot().await else {
                return;
            };
            apply(&views[i], &s);
            loop {
                let e = match events.recv().await {
                    Ok(e) => e,
                    Err(gossip_tokio::RecvError::Lagged(_)) => {
                        // Fell behind (a busy join): a new subscription and
                        // the snapshot taken with it replace the view.
                        match handle.subscribe_with_snapshot().await {
                            Ok((s, rx)) => {
                                events = rx;
                                apply(&views[i], &s);
                            }
                            Err(_) => return,
                        }
                        continue;
                    }
                    Err(_) => return,
                };
                let mut v = views[i].lock().unwrap();
                match e {
                    MembershipEvent::Up { endpoint: a } => {
                        v.alive.insert(a);
                    }
                    MembershipEvent::Down { endpoint: a } => {
                        v.alive.remove(&a);
                        v.downed.insert(a);
                    }
                    MembershipEvent::Restarted { endpoint: a, .. }
                    | MembershipEvent::Removed { endpoint: a } => {
                        v.alive.remove(&a);
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
