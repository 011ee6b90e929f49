//! Diagnostic: converges N nodes, splits them in halves until each marked the
//! other down (or 10 minutes), heals, and counts the downs after the
//! heal (false downs: everyone is reachable again) by kind, per second.
//!
//! `cargo run --release -p gossip-sim --example partition_downs -- 1000`

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::time::Duration;

use gossip_core::{Event, Instant, Liveness};
use gossip_sim::{Observer, Scenario, ScenarioConfig, Sim, SimConfig};

#[derive(Default)]
struct Log {
    downs: Vec<(Instant, usize, SocketAddr)>,
    last_up: HashMap<(usize, SocketAddr), Instant>,
}

impl Observer for Log {
    fn on_event(&mut self, now: Instant, i: usize, e: &Event<'_>) {
        match e {
            Event::Down { endpoint } => self.downs.push((now, i, *endpoint)),
            Event::Up { endpoint } => {
                self.last_up.insert((i, *endpoint), now);
            }
            _ => {}
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    let cfg = ScenarioConfig::new(Scenario::Partition, n);
    let mut sim = Sim::new(SimConfig::new(n, 1, cfg.node_config()))?;
    let mut log = Log::default();
    for i in 0..n {
        sim.set_state(i, "STATUS", b"NORMAL", &mut log);
    }
    let step = |sim: &mut Sim, log: &mut Log, secs: u64| {
        let until = sim.now() + Duration::from_secs(secs);
        sim.run_until(until, log);
    };
    step(&mut sim, &mut log, 60);
    let half = |i: usize| u32::from(i >= n / 2);
    let other_half =
        |i: usize, ep: SocketAddr| Sim::index_for(ep).is_some_and(|j| half(j) != half(i));
    let groups: Vec<u32> = (0..n).map(half).collect();
    sim.partition(&groups);
    let split = sim.now();
    for _ in 0..600 {
        step(&mut sim, &mut log, 1);
        let cross_alive = (0..n).any(|i| {
            sim.node(i).is_some_and(|node| {
                node.endpoints()
                    .any(|p| other_half(i, p.addr()) && p.liveness() == Liveness::Alive)
            })
        });
        if !cross_alive {
            break;
        }
    }
    println!(
        "split for {:?}; {} downs during it",
        sim.now() - split,
        log.downs.len()
    );
    log.downs.clear();
    log.last_up.clear();
    let mut down_at_heal = HashSet::new();
    for i in 0..n {
        for p in sim.node(i).into_iter().flat_map(|node| node.endpoints()) {
            if p.liveness() == Liveness::Down {
                down_at_heal.insert((i, p.addr()));
            }
        }
    }
    sim.heal();
    let healed = sim.now();
    let mut per_second = BTreeMap::new();
    let mut kinds = BTreeMap::new();
    for _ in 0..120 {
        step(&mut sim, &mut log, 1);
        for (now, i, ep) in log.downs.drain(..) {
            *per_second.entry((now - healed).as_secs()).or_insert(0) += 1;
            let kind = match log.last_up.get(&(i, ep)) {
                Some(_) => "down again after an up since the heal",
                None if down_at_heal.contains(&(i, ep)) => "down again, no up in between",
                None => "first down (up or suspected at the heal)",
            };
            *kinds.entry(kind).or_insert(0) += 1;
        }
    }
    println!("downs after the heal, per second: {per_second:?}");
    println!("by kind: {kinds:?}");
    Ok(())
}
