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
