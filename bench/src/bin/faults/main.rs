//! The fault harness: real `gossip agent` processes on 127.0.0.x in a
//! network namespace of their own, under faults made with nftables (random
//! loss, partitions, one-way cuts) and signals (`kill -9`, SIGSTOP/SIGCONT,
//! SIGHUP for key rotation). Each scenario starts a fresh cluster, watches
//! what every agent sees through its admin endpoint, and reports its
//! figures; the whole run prints one JSON summary on stdout.
//!
//! It refuses to run outside the namespace it is given: start it through
//! `scripts/faults.sh`, which makes the namespace, installs nftables if it is
//! missing, builds the binaries and removes the namespace and every process
//! in it on any exit.

mod cluster;
mod net;
mod scenarios;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Result, bail};
use clap::Parser;
use serde::Serialize;

use cluster::Options;
use scenarios::{Env, Report, Scenario};

/// Real agents under packet loss, partitions, pauses and crashes.
#[derive(Parser)]
#[command(name = "faults")]
struct Cli {
    /// The `gossip` binary the agents run.
    #[arg(long)]
    gossip: PathBuf,
    /// The network namespace (`ip netns` name) this runs in; checked, so
    /// the firewall rules never reach the host's.
    #[arg(long)]
    netns: String,
    /// Agents per scenario (2 to 250).
    #[arg(long, default_value_t = 10)]
    agents: usize,
    /// Gossip interval of every agent, in milliseconds.
    #[arg(long, default_value_t = 200)]
    interval_ms: u64,
    /// A scenario to run (repeat for more); all when none is given.
    #[arg(long = "scenario", value_enum)]
    scenarios: Vec<Scenario>,
    /// How long the steady-state scenarios last, in seconds.
    #[arg(long, default_value_t = 300)]
    steady_secs: u64,
    /// How long the one-way cut lasts, in seconds.
    #[arg(long, default_value_t = 120)]
    one_way_secs: u64,
    /// How often each agent's `/cluster` is read, in milliseconds.
    #[arg(long, default_value_t = 50)]
    poll_ms: u64,
    /// Where agent logs and key files go (default: a new folder in the
    /// temporary directory, kept for reading after the run).
    #[arg(long)]
    workdir: Option<PathBuf>,
    /// Exit with failure when a target is missed, not only when the cluster
    /// misbehaves (a false down, a fault never seen or never healed).
    #[arg(long)]
    strict: bool,
}

/// The JSON summary.
#[derive(Serialize)]
struct Summary {
    agents: usize,
    interval_ms: u64,
    poll_ms: u64,
    workdir: String,
    /// Every scenario passed (behaved; see `Report::passed`).
    passed: bool,
    /// Every scenario met its target.
    met: bool,
    scenarios: Vec<Report>,
}

fn run(cli: Cli) -> Result<Summary> {
    if !(2..=250).contains(&cli.agents) {
        bail!("--agents must be 2 to 250, not {}", cli.agents);
    }
    if cli.interval_ms == 0 || cli.poll_ms == 0 {
        bail!("--interval-ms and --poll-ms must be above 0");
    }
    net::require_namespace(&cli.netns)?;
    if !cli.gossip.is_file() {
        bail!("--gossip {}: no such file", cli.gossip.display());
    }
    let workdir = cli.workdir.unwrap_or_else(|| {
        std::env::temp_dir().join(format!("gossip-faults-{}", std::process::id()))
    });
    std::fs::create_dir_all(&workdir)?;
    let env = Env {
        opts: Options {
            gossip: cli.gossip,
            interval_ms: cli.interval_ms,
            poll: Duration::from_millis(cli.poll_ms),
            workdir: workdir.clone(),
        },
        agents: cli.agents,
        firewall: net::Firewall::install()?,
        steady: Duration::from_secs(cli.steady_secs),
        one_way: Duration::from_secs(cli.one_way_secs),
    };
    let chosen = if cli.scenarios.is_empty() {
        Scenario::ALL.to_vec()
    } else {
        cli.scenarios
    };
    let mut reports = Vec::new();
    for s in chosen {
        eprintln!("faults: {} with {} agents ...", s.name(), cli.agents);
        let r = scenarios::run(&env, s)?;
        eprintln!(
            "faults: {}: {} ({}), {}; {:?}",
            r.scenario,
            if r.met { "target met" } else { "TARGET MISSED" },
            r.target,
            if r.passed { "passed" } else { "FAILED" },
            r.figures
        );
        reports.push(r);
    }
    Ok(Summary {
        agents: cli.agents,
        interval_ms: cli.interval_ms,
        poll_ms: cli.poll_ms,
        workdir: workdir.display().to_string(),
        passed: reports.iter().all(|r| r.passed),
        met: reports.iter().all(|r| r.met),
        scenarios: reports,
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let strict = cli.strict;
    match run(cli) {
        Ok(summary) => {
            match serde_json::to_string_pretty(&summary) {
                Ok(json) => println!("{json}"),
                Err(e) => {
                    eprintln!("faults: {e}");
                    return ExitCode::FAILURE;
                }
            }
            if !summary.passed {
                eprintln!("faults: FAILED: a scenario misbehaved (see \"passed\" above)");
                ExitCode::FAILURE
            } else if strict && !summary.met {
                eprintln!("faults: FAILED: a target was missed (see \"met\" above)");
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("faults: {e:#}");
            ExitCode::FAILURE
        }
    }
}
