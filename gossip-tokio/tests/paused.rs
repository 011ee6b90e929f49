//! Timing on tokio's paused clock: nodes on an in-memory network, so a
//! minute of gossip takes milliseconds and nothing depends on the machine's
//! speed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gossip_core::Config;
use gossip_core::wire::ClusterId;
use gossip_tokio::{MembershipEvent, NodeConfig, Running, Transport, spawn_on};
use tokio::sync::mpsc;

type Inbox = mpsc::UnboundedSender<(Vec<u8>, SocketAddr)>;

/// Datagrams between nodes of one process, delivered at once.
#[derive(Clone, Default)]
struct MemNet(Arc<Mutex<HashMap<SocketAddr, Inbox>>>);

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
        if let Some(tx) = self.net.0.lock().unwrap().get(&target) {
            let _ = tx.send((buf.to_vec(), self.addr));
        }
        Ok(buf.len())
    }
}

fn start(net: &MemNet, i: u8, seed: Option<SocketAddr>) -> Running {
    let addr: SocketAddr = format!("10.0.0.{i}:7000").parse().unwrap();
    let mut cfg = NodeConfig::new(addr, Config::new(ClusterId::from_name("paused")));
    cfg.seeds.extend(seed);
    spawn_on(cfg, net.socket(addr)).unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_crashed_node_is_convicted_on_the_virtual_clock() {
    let net = MemNet::default();
    let nodes: Vec<Running> = (1..=4)
        .map(|i| start(&net, i, (i > 1).then(|| "10.0.0.1:7000".parse().unwrap())))
        .collect();
    // One-second rounds: converge within 30 virtual seconds.
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut done = true;
        for n in &nodes {
            done &= n.handle.snapshot().await.unwrap().alive() == 3;
        }
        if done {
            break;
        }
    }
    for n in &nodes {
        assert_eq!(n.handle.snapshot().await.unwrap().alive(), 3);
    }
    // Let the detectors learn the rhythm, then crash node 4.
    tokio::time::sleep(Duration::from_secs(20)).await;
    let mut events = nodes[0].handle.subscribe();
    let victim = nodes[3].handle.local_addr();
    nodes[3].task.abort();
    net.unplug(&victim);
    let crashed_at = tokio::time::Instant::now();
    let down_at = loop {
        match tokio::time::timeout(Duration::from_secs(120), events.recv()).await {
            Ok(Ok(MembershipEvent::Down(a))) if a == victim => break tokio::time::Instant::now(),
            Ok(Ok(_)) => {}
            other => panic!("no conviction: {other:?}"),
        }
    };
    let took = down_at - crashed_at;
    // Phi 8 at a one-second heartbeat rhythm: about 18.4 s of silence, then
    // a probe and half a round; never before the silence phi needs.
    assert!(took >= Duration::from_secs(15), "{took:?}");
    assert!(took <= Duration::from_secs(45), "{took:?}");
    for n in &nodes[..3] {
        n.handle.shutdown().await.unwrap();
    }
}
