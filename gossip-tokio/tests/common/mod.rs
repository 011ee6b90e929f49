//! Helpers shared by the tests.
#![allow(clippy::unwrap_used, clippy::panic, dead_code)] // test helpers

use std::time::Duration;

use gossip_tokio::{Running, Snapshot};

/// Polls every 25 ms, for at most `limit`, until `f` holds for every node's
/// snapshot.
pub(crate) async fn eventually(
    nodes: &[&Running],
    what: &str,
    limit: Duration,
    f: impl Fn(&Snapshot) -> bool,
) {
    let tries = limit.as_millis() / 25;
    for _ in 0..tries {
        let mut all = true;
        for n in nodes {
            all &= f(&n.handle.snapshot().await.unwrap());
        }
        if all {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{what} did not happen within {limit:?}");
}
