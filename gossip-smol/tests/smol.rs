//! Nodes on smol and on async-std, on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers

use std::time::Duration;

mod common;
use common::{config, on, sees, until};
use gossip_smol::{MembershipEvent, spawn, spawn_task, start};

#[test]
fn smol_nodes_join_share_state_and_see_crash_and_shutdown() {
    smol::block_on(async {
        let a = spawn(on(31, None)).await.unwrap();
        let seed = a.local_addr();
        let b = spawn(on(32, Some(seed))).await.unwrap();
        let c = spawn_task(on(33, Some(seed))).await.unwrap();
        let (b_addr, c_addr) = (b.local_addr(), c.handle.local_addr());
        until(
            &[&a, &b, &c.handle],
            "convergence",
            Duration::from_secs(10),
            |s| s.alive() == 2, // the others,
        )
        .await;

        // A state change reaches everyone, and subscribers are told.
        let mut events = c.handle.subscribe();
        let version = a.set_state("LOAD", b"0.5").await.unwrap();
        until(
            &[&b, &c.handle],
            "the LOAD change",
            Duration::from_secs(10),
            |s| sees(s, seed, "LOAD", b"0.5"),
        )
        .await;
        let mut told = false;
        while let Ok(Some(e)) = events.try_recv() {
            told |= e
                == MembershipEvent::StateChanged {
                    endpoint: seed,
                    key: "LOAD".into(),
                    value: gossip_smol::Bytes::from_static(b"0.5"),
                    version,
                };
        }
        assert!(told, "C's subscriber heard of the change");

        // B leaves gracefully: the others see it, and B answers no more.
        b.shutdown().await.unwrap();
        until(
            &[&a, &c.handle],
            "B's shutdown",
            Duration::from_secs(10),
            |s| s.endpoint(&b_addr).is_some_and(|e| !e.alive),
        )
        .await;
        assert!(
            b.snapshot().await.is_err(),
            "a stopped node answers no more"
        );

        // C crashes (its task is dropped, which cancels it): A convicts it.
        drop(c.task);
        until(&[&a], "C's conviction", Duration::from_secs(15), |s| {
            s.endpoint(&c_addr).is_some_and(|e| !e.alive)
        })
        .await;
        a.shutdown().await.unwrap();
    });
}

#[test]
fn async_std_nodes_converge_and_restart_with_a_higher_generation() {
    let dir = std::env::temp_dir().join(format!("gossip-smol-gen-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    async_std::task::block_on(async {
        let (a, run) = start(on(34, None)).await.unwrap();
        let a_task = async_std::task::spawn(run);
        let seed = a.local_addr();
        let mut b_config = on(35, Some(seed));
        b_config.data_dir = Some(dir.clone());
        let (b, run) = start(b_config.clone()).await.unwrap();
        let b_task = async_std::task::spawn(run);
        b.set_state("ROLE", b"cache").await.unwrap();
        until(&[&a], "B's ROLE", Duration::from_secs(10), |s| {
            sees(s, b.local_addr(), "ROLE", b"cache")
        })
        .await;

        // B crashes, then comes back on the same address: a higher
        // generation from its data directory, and A sees it up again.
        let first = b.generation();
        b_task.cancel().await;
        b_config.listen = b.local_addr();
        let (b, run) = start(b_config).await.unwrap();
        async_std::task::spawn(run);
        assert!(b.generation() > first);
        until(&[&a], "B's restart", Duration::from_secs(10), |s| {
            s.endpoint(&b.local_addr())
                .is_some_and(|e| e.alive && e.generation == b.generation())
        })
        .await;
        b.shutdown().await.unwrap();
        a.shutdown().await.unwrap();
        a_task.await;
    });
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_configuration_and_ports_in_use_are_errors() {
    smol::block_on(async {
        let a = spawn(config()).await.unwrap();
        let mut cfg = config();
        cfg.listen = a.local_addr();
        let err = spawn(cfg).await.expect_err("port in use");
        assert!(err.to_string().contains("cannot bind"), "{err}");
        let mut cfg = config();
        cfg.gossip.fanout = 9;
        let err = spawn(cfg).await.expect_err("bad fanout");
        assert!(err.to_string().contains("fanout"), "{err}");
        a.shutdown().await.unwrap();
    });
}
