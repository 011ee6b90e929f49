//! Loss and partitions injected through the `Transport` trait.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gossip_tokio::{ClusterId, Config};
mod common;
use common::eventually;
use gossip_tokio::{NodeConfig, Running, Transport, spawn_on};
use tokio::net::UdpSocket;

/// A UDP socket that drops every `loss_every`-th datagram it sends, and
/// everything to or from blocked addresses.
struct Faulty {
    socket: UdpSocket,
    blocked: Arc<Mutex<HashSet<SocketAddr>>>,
    loss_every: u64,
    sent: AtomicU64,
}

impl Transport for Faulty {
    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    async fn recv_from(&self, buf: &mut [u8]) -> std::io::Result<(usize, SocketAddr)> {
        loop {
            let (n, from) = self.socket.recv_from(buf).await?;
            if !self.blocked.lock().unwrap().contains(&from) {
                return Ok((n, from));
            }
        }
    }

    async fn send_to(&self, buf: &[u8], target: SocketAddr) -> std::io::Result<usize> {
        let k = self.sent.fetch_add(1, Ordering::Relaxed) + 1;
        let lost = self.loss_every > 0 && k.is_multiple_of(self.loss_every);
        if lost || self.blocked.lock().unwrap().contains(&target) {
            return Ok(buf.len());
        }
        self.socket.send_to(buf, target).await
    }
}

async fn node(
    ip: u8,
    seed: Option<SocketAddr>,
    loss_every: u64,
) -> (Running, Arc<Mutex<HashSet<SocketAddr>>>) {
    let socket = UdpSocket::bind(format!("127.0.0.{ip}:0")).await.unwrap();
    let blocked = Arc::new(Mutex::new(HashSet::new()));
    let mut gossip = Config::lan(ClusterId::from_name("faults"));
    gossip.gossip_interval = Duration::from_millis(50);
    let mut cfg = NodeConfig::new(socket.local_addr().unwrap(), gossip);
    cfg.seeds.extend(seed);
    let transport = Faulty {
        socket,
        blocked: blocked.clone(),
        loss_every,
        sent: AtomicU64::new(0),
    };
    (spawn_on(cfg, transport).unwrap(), blocked)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn converges_under_loss_and_heals_a_partition() {
    // One datagram in five lost on every node.
    let (a, block_a) = node(41, None, 5).await;
    let seed = a.handle.local_addr();
    let (b, block_b) = node(42, Some(seed), 5).await;
    let (c, block_c) = node(43, Some(seed), 5).await;
    let c_addr = c.handle.local_addr();
    eventually(
        &[&a, &b, &c],
        "convergence with 20% loss",
        Duration::from_secs(15),
        |s| s.alive() == 2,
    )
    .await;

    // Cut C off: A and B convict it; C convicts them.
    block_a.lock().unwrap().insert(c_addr);
    block_b.lock().unwrap().insert(c_addr);
    block_c
        .lock()
        .unwrap()
        .extend([seed, b.handle.local_addr()]);
    eventually(&[&a, &b], "C marked down", Duration::from_secs(15), |s| {
        s.endpoint(&c_addr).is_some_and(|e| !e.alive)
    })
    .await;
    eventually(&[&c], "C alone", Duration::from_secs(15), |s| {
        s.alive() == 0
    })
    .await;

    // Heal: everyone sees everyone again.
    block_a.lock().unwrap().clear();
    block_b.lock().unwrap().clear();
    block_c.lock().unwrap().clear();
    eventually(&[&a, &b, &c], "healed", Duration::from_secs(15), |s| {
        s.alive() == 2
    })
    .await;
    for n in [a, b, c] {
        n.handle.shutdown().await.unwrap();
    }
}
