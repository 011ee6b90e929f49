//! chitchat 0.13.

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
