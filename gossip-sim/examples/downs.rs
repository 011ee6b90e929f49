//! Diagnostic: runs `converge` and prints the first downs with what the
//! node's phi detector saw of the peer, and how many happened per 10 s.
//!
//! `cargo run --release -p gossip-sim --example downs -- 1000`

use std::collections::BTreeMap;
use std::net::SocketAddr;

use gossip_core::{Event, Instant};
use gossip_sim::{Observer, Scenario, ScenarioConfig, Sim, SimConfig};

struct Log {
    downs: Vec<(Instant, usize, SocketAddr)>,
}

impl Observer for Log {
    fn on_event(&mut self, now: Instant, i: usize, e: &Event<'_>) {
        if let Event::Down { endpoint } = e {
            self.downs.push((now, i, *endpoint));
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    let cfg = ScenarioConfig::new(Scenario::Converge, n);
    let mut sim = Sim::new(SimConfig::new(n, 1, cfg.node_config()))?;
    let mut log = Log { downs: Vec::new() };
    let (mut shown, mut total) = (0, 0);
    let mut per_10s = BTreeMap::new();
    while sim.now() < Instant::from_millis(240_000) && sim.step(&mut log) {
        for (now, i, ep) in log.downs.drain(..) {
            total += 1;
            *per_10s.entry(now.as_micros() / 10_000_000).or_insert(0) += 1;
            let (Some(node), Some(j)) = (sim.node(i), Sim::index_for(ep)) else {
                continue;
            };
            let Some(p) = node.endpoint(&ep) else {
                continue;
            };
            if shown < 12 {
                shown += 1;
                let actual = sim.node(j).map(|n| n.local_state().max_version());
                println!(
                    "{now:?}: node {i} convicted {j}: mean {:?}, last {:?}, view {:?}, actual {actual:?}, knows {}",
                    p.heartbeat_interval(),
                    p.last_heartbeat(),
                    p.state().max_version(),
                    node.endpoint_count()
                );
            }
        }
    }
    println!("{total} downs; per 10 s of virtual time: {per_10s:?}");
    Ok(())
}
