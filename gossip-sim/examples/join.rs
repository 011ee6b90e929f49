//! Diagnostic: how a mass join progresses: per 5 rounds, the fraction of
//! (node, peer) pairs known, known alive, and known with both start states.
//!
//! `cargo run --release -p gossip-sim --example join -- 1000`

use gossip_core::Instant;
use gossip_core::state::StateKey;
use gossip_sim::{Scenario, ScenarioConfig, Sim, SimConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    let cfg = ScenarioConfig::new(Scenario::Converge, n);
    let mut sim = Sim::new(SimConfig::new(n, 1, cfg.node_config()))?;
    sim.run_until(Instant::from_millis(150), &mut ());
    for i in 0..n {
        sim.set_state(i, "STATUS", b"NORMAL", &mut ());
        sim.set_state(i, "HOST_ID", format!("{i:036}").as_bytes(), &mut ());
    }
    let pairs = (n * (n - 1)) as f64;
    for r in 1..=40u64 {
        sim.run_until(Instant::from_millis(r * 5000), &mut ());
        let (mut known, mut alive, mut full) = (0usize, 0usize, 0usize);
        for i in 0..n {
            let Some(node) = sim.node(i) else { continue };
            for p in node.endpoints() {
                known += 1;
                alive += usize::from(p.is_alive());
                let s = p.state();
                full += usize::from(
                    s.get(&StateKey::parse("STATUS")).is_some()
                        && s.get(&StateKey::parse("HOST_ID")).is_some(),
                );
            }
        }
        let t = sim.totals();
        println!(
            "t={:>3}s known {:.3} alive {:.3} states {:.3}  KB/node {:.1}",
            r * 5,
            known as f64 / pairs,
            alive as f64 / pairs,
            full as f64 / pairs,
            t.bytes as f64 / n as f64 / 1024.0
        );
        if alive == n * (n - 1) && full == alive {
            break;
        }
    }
    Ok(())
}
