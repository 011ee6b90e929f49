//! Nodes on loopback: join, state change, crash, graceful shutdown.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers

use std::net::SocketAddr;
use std::time::Duration;

use gossip_tokio::{ClusterId, Config};
mod common;
use common::eventually;
use gossip_tokio::{MembershipEvent, NodeConfig, Running, spawn_task};

fn config() -> Config {
    let mut c = Config::lan(ClusterId::from_name("tokio-test"));
    c.gossip_interval = Duration::from_millis(50);
    c
}

async fn start(ip: u8, seed: Option<SocketAddr>) -> Running {
    let listen: SocketAddr = format!("127.0.0.{ip}:0").parse().unwrap();
    let mut cfg = NodeConfig::new(listen, config());
    cfg.seeds.extend(seed);
    spawn_task(cfg).await.expect("binds on loopback")
}

/// Polls (bounded) until `f` holds for every node's snapshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_join_share_state_and_see_crash_and_shutdown() {
    let a = start(1, None).await;
    let seed = a.handle.local_addr();
    let b = start(2, Some(seed)).await;
    let c = start(3, Some(seed)).await;
    let (a_addr, b_addr, c_addr) = (seed, b.handle.local_addr(), c.handle.local_addr());
    eventually(&[&a, &b, &c], "convergence", Duration::from_secs(10), |s| {
        s.alive() == 2
    })
    .await;

    // A state change reaches everyone, and subscribers are told.
    let mut events = c.handle.subscribe();
    a.handle.set_state("LOAD", b"0.5").await.unwrap();
    eventually(&[&b, &c], "the LOAD change", Duration::from_secs(10), |s| {
        s.endpoint(&a_addr)
            .and_then(|e| e.state("LOAD"))
            .is_some_and(|v| v.value == b"0.5".as_slice())
    })
    .await;
    let mut told = false;
    while let Ok(Some(e)) = events.try_recv() {
        told |= matches!(e, MembershipEvent::StateChanged { endpoint, ref key, .. } if endpoint == a_addr && key == "LOAD");
    }
    assert!(told, "C's subscriber heard of the change");

    // B shuts down gracefully: the others see it at once.
    b.handle.shutdown().await.unwrap();
    b.task.await.unwrap();
    eventually(&[&a, &c], "B's shutdown", Duration::from_secs(10), |s| {
        s.endpoint(&b_addr).is_some_and(|e| {
            !e.alive
                && e.state("STATUS")
                    .is_some_and(|v| v.value.starts_with(b"shutdown"))
        })
    })
    .await;
    assert!(
        b.handle.snapshot().await.is_err(),
        "a stopped node answers no more"
    );

    // C crashes (its task vanishes): A convicts it.
    c.task.abort();
    let _ = c.task.await;
    eventually(&[&a], "C's conviction", Duration::from_secs(10), |s| {
        s.endpoint(&c_addr).is_some_and(|e| !e.alive)
    })
    .await;
    a.handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn bad_configuration_and_ports_in_use_are_errors() {
    let a = start(1, None).await;
    let mut cfg = NodeConfig::new(a.handle.local_addr(), config());
    let err = spawn_task(cfg.clone()).await.expect_err("port in use");
    assert!(err.to_string().contains("cannot bind"), "{err}");
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    cfg.gossip.fanout = 9;
    let err = spawn_task(cfg).await.expect_err("bad fanout");
    assert!(err.to_string().contains("fanout"), "{err}");
    a.handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn restarts_get_a_higher_generation_from_the_data_dir() {
    let dir = std::env::temp_dir().join(format!("gossip-tokio-gen-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut cfg = NodeConfig::new("127.0.0.1:0".parse().unwrap(), config());
    cfg.data_dir = Some(dir.clone());
    let first = spawn_task(cfg.clone()).await.unwrap();
    let g1 = first.handle.generation();
    first.handle.shutdown().await.unwrap();
    let second = spawn_task(cfg).await.unwrap();
    assert!(second.handle.generation() > g1);
    second.handle.shutdown().await.unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}
