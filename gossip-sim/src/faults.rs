//! Random fault schedules: a small cluster under crashes, restarts, pauses,
//! partitions, loss and duplication, which must converge once the faults
//! stop. The property tests and the `cluster_ops` fuzz target both run
//! [`FaultSchedule::run`].

use std::time::Duration;

use arbitrary::{Arbitrary, Unstructured};
use gossip_core::Instant;

use crate::scenario::{Scenario, ScenarioConfig};
use crate::{NetworkModel, Sim, SimConfig};

/// The most nodes a schedule runs.
pub const MAX_NODES: usize = 8;

/// One fault (or command) of a schedule. Node 0 is the seed.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// Node `i` crashes.
    Crash(usize),
    /// Node `i` restarts with a higher generation (from a crash or not).
    Restart(usize),
    /// Node `i` stops processing for this many seconds.
    Pause(usize, u64),
    /// `groups[i]` is node i's side of a partition.
    Partition(Vec<u32>),
    /// Every partition heals.
    Heal,
    /// Node `i` sets key `K` to one byte.
    SetState(usize, u8),
    /// Node `i` shuts down gracefully.
    Shutdown(usize),
    /// This many seconds pass.
    Wait(u64),
}

/// A cluster, its faulty network and a schedule of faults.
#[derive(Clone, Debug, PartialEq)]
pub struct FaultSchedule {
    /// Nodes, 2 to [`MAX_NODES`].
    pub nodes: usize,
    /// Seeds the network and the nodes.
    pub seed: u64,
    /// Loss while the faults last, below 0.3.
    pub loss: f64,
    /// Duplication while the faults last, below 0.1.
    pub duplicate: f64,
    /// The faults, in order.
    pub steps: Vec<Fault>,
}

impl FaultSchedule {
    /// A schedule from raw choices: every value is folded into its range, so
    /// any input (a fuzzer's bytes, quickcheck's numbers) is a valid schedule.
    pub fn from_choices(
        nodes: usize,
        seed: u64,
        loss: u8,
        duplicate: u8,
        steps: &[(u8, u64)],
    ) -> Self {
        let nodes = 2 + nodes % (MAX_NODES - 1);
        let pick = |x: u64| (x % nodes as u64) as usize;
        let steps = steps
            .iter()
            .take(12)
            .map(|&(kind, x)| match kind % 8 {
                0 => Fault::Crash(1 + pick(x) % (nodes - 1)),
                1 => Fault::Restart(1 + pick(x) % (nodes - 1)),
                2 => Fault::Pause(pick(x), 1 + (x >> 8) % 20),
                3 => Fault::Partition((0..nodes).map(|i| ((x >> (2 * i)) % 3) as u32).collect()),
                4 => Fault::Heal,
                5 => Fault::SetState(pick(x), (x >> 8) as u8),
                6 => Fault::Shutdown(1 + pick(x) % (nodes - 1)),
                _ => Fault::Wait(1 + (x >> 8) % 30),
            })
            .collect();
        Self {
            nodes,
            seed,
            loss: f64::from(loss % 30) / 100.0,
            duplicate: f64::from(duplicate % 10) / 100.0,
            steps,
        }
    }

    /// Runs the schedule, then stops the faults (heals, restarts what is
    /// down, no more loss) and waits up to 300 s for convergence. Errors
    /// with what went wrong: a broken invariant or no convergence.
    pub fn run(&self) -> Result<(), String> {
        let cfg = ScenarioConfig::new(Scenario::Converge, self.nodes);
        let mut sim_cfg = SimConfig::new(self.nodes, self.seed, cfg.node_config());
        sim_cfg.network = NetworkModel {
            loss: self.loss,
            duplicate: self.duplicate,
            jitter: Duration::from_millis(30),
            ..NetworkModel::default()
        };
        let mut sim = Sim::new(sim_cfg).map_err(|e| e.to_string())?;
        let mut t = Instant::from_millis(5_000);
        sim.run_until(t, &mut ());
        for step in &self.steps {
            match step {
                Fault::Crash(i) => sim.crash(*i),
                Fault::Restart(i) => sim.restart(*i, &mut ()),
                Fault::Pause(i, s) => sim.pause(*i, Duration::from_secs(*s)),
                Fault::Partition(groups) => sim.partition(groups),
                Fault::Heal => sim.heal(),
                Fault::SetState(i, v) => sim.set_state(*i, "K", &[*v], &mut ()),
                Fault::Shutdown(i) => sim.shutdown(*i, &mut ()),
                Fault::Wait(s) => {
                    t = t + Duration::from_secs(*s);
                    sim.run_until(t, &mut ());
                }
            }
            if let Some(v) = sim.violation() {
                return Err(v.to_string());
            }
        }
        // Faults stop: heal, restart what is down, no more loss.
        sim.heal();
        sim.set_network(NetworkModel::default());
        for i in 0..self.nodes {
            if !sim.is_up(i) {
                sim.restart(i, &mut ());
            }
        }
        let limit = sim.now() + Duration::from_secs(300);
        let converged = sim.run_while(limit, &mut (), |s, _| s.divergence().is_none());
        if let Some(v) = sim.violation() {
            return Err(v.to_string());
        }
        if !converged {
            return Err(format!("no convergence: {:?}", sim.divergence()));
        }
        Ok(())
    }
}

impl<'a> Arbitrary<'a> for FaultSchedule {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let nodes = usize::from(u8::arbitrary(u)?);
        let seed = u64::arbitrary(u)?;
        let (loss, duplicate) = (u8::arbitrary(u)?, u8::arbitrary(u)?);
        let steps: Vec<(u8, u64)> = u.arbitrary_iter()?.take(12).collect::<Result<_, _>>()?;
        Ok(Self::from_choices(nodes, seed, loss, duplicate, &steps))
    }
}
