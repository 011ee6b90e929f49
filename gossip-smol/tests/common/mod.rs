//! Helpers shared by the tests: any executor (async-io timers run their
//! own reactor thread when nothing else drives them).
#![allow(clippy::unwrap_used, clippy::panic, dead_code)] // test helpers

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use gossip_smol::{ClusterId, Config};
use gossip_smol::{Handle, NodeConfig, Snapshot};

/// The protocol configuration of every test node: 50 ms rounds.
pub(crate) fn config() -> NodeConfig {
    let mut gossip = Config::lan(ClusterId::from_name("smol-test"));
    gossip.gossip_interval = Duration::from_millis(50);
    NodeConfig::new("127.0.0.1:0".parse().unwrap(), gossip)
}

/// A node configuration on `127.0.0.{ip}` (any port), joining through `seed`.
pub(crate) fn on(ip: u8, seed: Option<SocketAddr>) -> NodeConfig {
    let mut c = config();
    c.listen = SocketAddr::from(([127, 0, 0, ip], 0));
    c.seeds.extend(seed);
    c
}

/// Waits (every 25 ms, at most `limit`) until `f` holds for the snapshot of
/// every node in `nodes`; panics naming `what` otherwise.
pub(crate) async fn until(
    nodes: &[&Handle],
    what: &str,
    limit: Duration,
    f: impl Fn(&Snapshot) -> bool,
) {
    let give_up = Instant::now() + limit;
    while Instant::now() < give_up {
        let mut holds = true;
        for node in nodes {
            holds = holds && f(&node.snapshot().await.unwrap());
        }
        if holds {
            return;
        }
        async_io::Timer::after(Duration::from_millis(25)).await;
    }
    panic!("{what} did not happen within {limit:?}");
}

/// Whether `s` sees `endpoint` (itself included) alive with `key` = `value`.
pub(crate) fn sees(s: &Snapshot, endpoint: SocketAddr, key: &str, value: &[u8]) -> bool {
    let e = if s.local.address == endpoint {
        Some(&s.local)
    } else {
        s.endpoint(&endpoint)
    };
    e.is_some_and(|e| e.alive && e.state(key).is_some_and(|v| v.value == value))
}
