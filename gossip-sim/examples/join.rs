//! Diagnostic: how a mass join (the `converge` scenario) progresses, round
//! by round: the share of (node, peer) pairs known and known with both start
//! states, the least-informed nodes' shares (0th, 1st, 10th percentile), and what moved the states
//! (datagrams by kind, catch-up bursts and the endpoints they carried,
//! summary syncs), cluster-wide, per node, and the wall time so far.
//!
//! `cargo run --release -p gossip-sim --example join -- 1000 [loss]`

use gossip_core::Instant;
use gossip_core::state::StateKey;
use gossip_core::wire::Kind;
use gossip_sim::scenario::start_states;
use gossip_sim::{Scenario, ScenarioConfig, Sim, SimConfig};

/// The tables in huge pages, as in `gossip sim`.
#[global_allocator]
static ALLOC: gossip_sim::arena::TableAlloc = gossip_sim::arena::TableAlloc;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    let loss: f64 = std::env::args()
        .nth(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0.0);
    let cfg = ScenarioConfig::new(Scenario::Converge, n);
    let mut sim_cfg = SimConfig::new(n, 1, cfg.node_config());
    sim_cfg.network.loss = loss;
    sim_cfg.reserve_peers = true;
    sim_cfg.start_states = Some(start_states);
    let mut sim = Sim::new(sim_cfg)?;
    let pairs = (n * (n - 1)) as f64;
    let kinds = [Kind::Syn, Kind::Ack, Kind::Ack2, Kind::CatchUp];
    println!(
        "round known  states least p1 p10 not-alive | per node: SYN ACK ACK2 CATCHUP bursts endpoints syncs KB | wall s"
    );
    let began = std::time::Instant::now();
    for r in 1..=150u64 {
        sim.run_until(Instant::from_millis(r * 1000 + 100), &mut ());
        let (mut known, mut full, mut down) = (0usize, 0usize, 0usize);
        let mut each = Vec::with_capacity(n);
        let mut sent = [0u64; 4];
        let (mut bursts, mut endpoints, mut syncs) = (0u64, 0u64, 0u64);
        for i in 0..n {
            let Some(node) = sim.node(i) else { continue };
            let mut mine = 0;
            for p in node.endpoints() {
                known += 1;
                down += usize::from(!p.is_alive());
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
            "{r:>5} {:.3} {:.3} {:.3} {:.3} {:.3} {down} | {:.1} {:.1} {:.1} {:.1} {:.2} {:.0} {:.2} {:.0} | {:.1}",
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
            sim.totals().bytes as f64 / n as f64 / 1024.0,
            began.elapsed().as_secs_f64()
        );
        if (1..=4).contains(&down) {
            // Who sees whom not alive, how, and how the rest see it.
            for i in 0..n {
                let Some(node) = sim.node(i) else { continue };
                for p in node.endpoints().filter(|p| !p.is_alive()) {
                    let them =
                        (0..n).find(|&j| sim.node(j).is_some_and(|m| m.local_addr() == p.addr()));
                    let own = them.and_then(|j| sim.node(j)).map(|m| m.incarnation());
                    let alive_elsewhere = (0..n)
                        .filter_map(|j| sim.node(j))
                        .filter_map(|m| m.endpoint(&p.addr()))
                        .filter(|q| q.is_alive())
                        .count();
                    println!(
                        "      node {i} sees {} {:?} {:?} (incarnation {}); it is at {own:?}; {alive_elsewhere} see it alive",
                        p.addr(),
                        p.liveness(),
                        p.claim(),
                        p.incarnation()
                    );
                }
            }
        }
        if full == n * (n - 1) {
            break;
        }
    }
    Ok(())
}
