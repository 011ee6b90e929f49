//! A mixed cluster on loopback: tokio nodes and smol nodes in one cluster.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers

use std::time::Duration;

mod common;
use common::{on, sees, until};

#[test]
fn tokio_and_smol_nodes_converge_see_changes_and_detect_crashes() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // Two tokio nodes on the tokio runtime, two smol nodes on smol's global
    // executor; the test itself waits with async-io timers on tokio.
    rt.block_on(async {
        let t1 = gossip_tokio::spawn_task(on(41, None)).await.unwrap();
        let seed = t1.handle.local_addr();
        let t2 = gossip_tokio::spawn_task(on(42, Some(seed))).await.unwrap();
        let s1 = gossip_smol::spawn_task(on(43, Some(seed))).await.unwrap();
        let s2 = gossip_smol::spawn_task(on(44, Some(seed))).await.unwrap();
        let all = [&t1.handle, &t2.handle, &s1.handle, &s2.handle];
        until(&all, "convergence", Duration::from_secs(10), |s| {
            s.alive() == 3
        })
        .await;

        // Each runtime's state changes reach the other.
        t2.handle.set_state("FROM", b"tokio").await.unwrap();
        s1.handle.set_state("FROM", b"smol").await.unwrap();
        let (t2_addr, s1_addr) = (t2.handle.local_addr(), s1.handle.local_addr());
        until(&all, "both changes", Duration::from_secs(10), |s| {
            sees(s, t2_addr, "FROM", b"tokio") && sees(s, s1_addr, "FROM", b"smol")
        })
        .await;

        // A smol node crashes: the tokio nodes convict it.
        drop(s2.task);
        let s2_addr = s2.handle.local_addr();
        until(
            &all[..3],
            "the smol node's conviction",
            Duration::from_secs(15),
            |s| s.endpoint(&s2_addr).is_some_and(|e| !e.alive),
        )
        .await;
        // A tokio node crashes: the smol node convicts it.
        t2.task.abort();
        until(
            &[&s1.handle],
            "the tokio node's conviction",
            Duration::from_secs(15),
            |s| s.endpoint(&t2_addr).is_some_and(|e| !e.alive),
        )
        .await;
        s1.handle.shutdown().await.unwrap();
        t1.handle.shutdown().await.unwrap();
    });
}
