//! Diagnostic: how a mass join (the `converge` scenario) progresses, round
//! by round: the share of (node, peer) pairs known and known with both start
//! states, the least-informed nodes' shares (0th, 1st, 10th percentile), and what moved the states
//! (datagrams by kind, catch-up bursts and the endpoints they carried,
//! summary syncs), cluster-wide, per node.
//!
//! `cargo run --release -p gossip-sim --example join -- 1000`

use gossip_core::Instant;
use gossip_core::state::StateKey;
use gossip_core::wire::Kind;
use gossip_sim::scenario::start_states;
use gossip_sim::{Scenario, ScenarioConfig, Sim, SimConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    let cfg = ScenarioConfig::new(Scenario::Converge, n);
    let mut sim_cfg = SimConfig::new(n, 1, cfg.node_config());
    sim_cfg.reserve_peers = true;
    sim_cfg.start_states = Some(start_states);
    let mut sim = Sim::new(sim_cfg)?;
    let pairs = (n * (n - 1)) as f64;
    let kinds = [Kind::Syn, Kind::Ack, Kind::Ack2, Kind::CatchUp];
    println!(
        "round known  states least p1 p10 | per node: SYN ACK ACK2 CATCHUP bursts endpoints syncs KB"
    );
    for r in 1..=60u64 {
        sim.run_until(Instant::from_millis(r * 1000 + 100), &mut ());
        let (mut known, mut full) = (0usize, 0usize);
        let mut each = Vec::with_capacity(n);
        let mut sent = [0u64; 4];
        let (mut bursts, mut endpoints, mut syncs) = (0u64, 0u64, 0u64);
        for i in 0..n {
            let Some(node) = sim.node(i) else { continue };
            let mut mine = 0;
            for p in node.endpoints() {
                known += 1;
                let s = p.state();
                if p.is_alive()
                    && s.get(&StateKey::parse("STATUS")).is_some()
                    && s.get(&StateKey::parse("HOST_ID")).is_some()
                {
                    full += 1;
                    mine += 1;
                }
            }
            each.push(mine);
            let st = node.stats();
            for (s, k) in sent.iter_mut().zip(kinds) {
                *s += st.sent(k);
            }
            bursts += st.catch_up_bursts;
            endpoints += st.catch_up_endpoints;
            syncs += st.summary_syncs;
        }
        let per = |v: u64| v as f64 / n as f64;
        each.sort_unstable();
        let share =
            |q: usize| each.get(q * each.len() / 100).copied().unwrap_or(0) as f64 / (n - 1) as f64;
        println!(
            "{r:>5} {:.3} {:.3} {:.3} {:.3} {:.3}   | {:.1} {:.1} {:.1} {:.1} {:.2} {:.0} {:.2} {:.0}",
            known as f64 / pairs,
            full as f64 / pairs,
            share(0),
            share(1),
            share(10),
            per(sent[0]),
            per(sent[1]),
            per(sent[2]),
            per(sent[3]),
            per(bursts),
            per(endpoints),
            per(syncs),
            sim.totals().bytes as f64 / n as f64 / 1024.0
        );
        if full == n * (n - 1) {
            break;
        }
    }
    Ok(())
}
