//! `gossip`: the command-line front end.
//!
//! - `gossip agent`: runs one node until SIGINT or SIGTERM, with an admin
//!   endpoint (a page at `/`, `/gossipinfo`, `/cluster`, `/status`,
//!   `/events`, `/metrics`).
//! - `gossip info`: prints an agent's gossipinfo, its members one line
//!   each, or its cluster as JSON, once or refreshed in place.
//! - `gossip demo`: a real cluster on 127.0.0.1 in one process: converges,
//!   loses a node, sees it restart, sees another leave; every step timed.
//! - `gossip sim`: runs a simulated cluster scenario and prints its figures.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use gossip_sim::scenario::{self, Hooks};
use gossip_sim::{Figures, Scenario, ScenarioConfig};

mod admin;
mod agent;
mod demo;
mod info;
mod page;
mod plot;

/// How long `sim` runs before its progress bar is drawn.
const PROGRESS_AFTER: Duration = Duration::from_secs(2);

/// The process's resident memory (`VmRSS`, Linux), for the simulator's
/// memory per known peer; 0 where it cannot be read.
fn resident_bytes() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
            let kb: usize = line.split_whitespace().nth(1)?.parse().ok()?;
            kb.checked_mul(1024)
        })
        .unwrap_or(0)
}

#[derive(Parser)]
#[command(
    name = "gossip",
    version,
    about = "A Cassandra-style gossip protocol: simulator and tools"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one node until SIGINT or SIGTERM, then leave gracefully.
    Agent(AgentArgs),
    /// Print an agent's gossip information (nodetool gossipinfo's layout).
    Info(InfoArgs),
    /// Run a local cluster on 127.0.0.1: converge, crash, restart, shutdown.
    Demo(DemoArgs),
    /// Run a simulated cluster scenario on a virtual clock and print its figures.
    Sim(SimArgs),
}

#[derive(clap::Args)]
struct AgentArgs {
    #[command(flatten)]
    node: gossip_tokio::NodeArgs,
    /// The admin HTTP endpoint (loopback unless asked otherwise).
    #[arg(long, default_value = "127.0.0.1:0")]
    admin: std::net::SocketAddr,
    /// A cluster key file: 32 random bytes (`head -c 32 /dev/urandom`) or
    /// 64 hex digits. Every datagram is then authenticated. Repeat for
    /// rotation: the first key seals, all are accepted. The files are read
    /// again on SIGHUP or `POST /keys/reload` on the admin endpoint.
    #[arg(long = "key-file")]
    key_files: Vec<PathBuf>,
    /// How to log: one line of text an event, or one JSON object a line
    /// (RUST_LOG sets the level, `info` by default).
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
}

#[derive(clap::Args)]
struct InfoArgs {
    /// The agent's admin endpoint, host:port.
    #[arg(long)]
    admin: String,
    /// Print the /cluster JSON instead.
    #[arg(long, conflicts_with = "status")]
    json: bool,
    /// One line a member (address, liveness, generation, heartbeat, phi,
    /// STATUS, DC, RACK), as `nodetool status`.
    #[arg(long)]
    status: bool,
    /// Refresh in place every SECONDS until interrupted.
    #[arg(long, value_name = "SECONDS", value_parser = parse_watch)]
    watch: Option<Duration>,
}

/// How the agent logs.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    /// One line of text an event.
    Text,
    /// One JSON object a line.
    Json,
}

fn parse_watch(s: &str) -> Result<Duration, String> {
    let secs: f64 = s.parse().map_err(|_| format!("'{s}' is not a number"))?;
    if (0.1..=3600.0).contains(&secs) {
        Ok(Duration::from_secs_f64(secs))
    } else {
        Err("--watch takes 0.1 to 3600 seconds".into())
    }
}

#[derive(clap::Args)]
struct DemoArgs {
    /// Nodes in the cluster (3 to 64).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(3..=64))]
    nodes: u16,
}

#[derive(clap::Args)]
struct SimArgs {
    /// converge, disseminate, crash, restart, partition, churn or pause.
    #[arg(long, value_parser = parse_scenario)]
    scenario: Scenario,
    /// Nodes in the cluster.
    #[arg(long, value_parser = clap::value_parser!(u32).range(2..=1_048_576))]
    nodes: u32,
    /// Seed of the run: the same seed gives the same run.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Probability that a datagram is lost, 0 to 0.9.
    #[arg(long, default_value_t = 0.0, value_parser = parse_loss)]
    loss: f64,
    /// Random extra latency per datagram, up to this many milliseconds
    /// (default: the simulated LAN's 2 ms).
    #[arg(long, value_parser = clap::value_parser!(u64).range(0..=60_000))]
    jitter_ms: Option<u64>,
    /// `pause`: how long the node is frozen, in milliseconds.
    #[arg(long, default_value_t = 3000, value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pause_ms: u64,
    /// Gossip interval in milliseconds.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    interval_ms: u64,
    /// Live peers gossiped to each round, 1 to 3.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=3))]
    fanout: u8,
    /// Give up after this many rounds of the measured phase.
    #[arg(long, default_value_t = 600, value_parser = clap::value_parser!(u32).range(1..))]
    max_rounds: u32,
    /// Print exactly one JSON object on stdout.
    #[arg(long, conflicts_with = "markdown")]
    json: bool,
    /// Print a markdown table (header and one row) of the main figures.
    #[arg(long)]
    markdown: bool,
    /// Write an SVG plot of the fraction of nodes at the goal over time.
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<PathBuf>,
    /// Threads to simulate on (default: every core). The run is the same
    /// whatever the number; only the wall time changes.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    threads: Option<u16>,
}

fn parse_scenario(s: &str) -> Result<Scenario, String> {
    s.parse()
}

fn parse_loss(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|_| format!("'{s}' is not a number"))?;
    if (0.0..0.9).contains(&v) {
        Ok(v)
    } else {
        Err("loss must be at least 0 and below 0.9".into())
    }
}

/// The simulator reserves its nodes' peer tables in huge pages
/// ([`gossip_sim::arena`]); every other allocation is the system's.
#[global_allocator]
static ALLOC: gossip_sim::arena::TableAlloc = gossip_sim::arena::TableAlloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Agent(args) => agent(args),
        Command::Info(args) => {
            let view = if args.json {
                info::View::Json
            } else if args.status {
                info::View::Status
            } else {
                info::View::GossipInfo
            };
            exit(info::run(&args.admin, view, args.watch))
        }
        Command::Demo(args) => demo(args),
        Command::Sim(args) => sim(args),
    }
}

/// Prints an error with its causes; the exit code.
fn exit(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    use anyhow::Context as _;
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the runtime")
}

/// Logs to stdout, as text or JSON lines; `RUST_LOG` sets the filter.
fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout);
    // Another subscriber already set (only in tests) keeps logging.
    let _ = match format {
        LogFormat::Text => builder.with_target(false).try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

fn agent(args: AgentArgs) -> ExitCode {
    init_logs(args.log_format);
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => return exit(Err(e)),
    };
    let opts = agent::AgentOptions {
        node: args.node,
        admin: args.admin,
        key_files: args.key_files,
    };
    exit(rt.block_on(agent::run(opts)))
}

fn demo(args: DemoArgs) -> ExitCode {
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(e) => return exit(Err(e)),
    };
    exit(runtime.block_on(demo::run(usize::from(args.nodes))))
}

fn sim(args: SimArgs) -> ExitCode {
    let cfg = ScenarioConfig {
        scenario: args.scenario,
        nodes: args.nodes as usize,
        seed: args.seed,
        loss: args.loss,
        jitter: args.jitter_ms.map(Duration::from_millis),
        pause: Duration::from_millis(args.pause_ms),
        interval: Duration::from_millis(args.interval_ms),
        fanout: args.fanout,
        max_rounds: args.max_rounds,
    };
    if let Err(e) = cfg.validate() {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    // Drawn on stderr once a run has taken a few seconds (stdout stays the
    // figures alone).
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(1000),
        indicatif::ProgressDrawTarget::hidden(),
    );
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} {msg} [{bar:30}] {percent}% of the round limit, {elapsed}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let started = std::time::Instant::now();
    let mut shown = false;
    let label = format!("{} with {} nodes", cfg.scenario, cfg.nodes);
    let mut progress = |p: scenario::Progress| {
        if !shown && started.elapsed() >= PROGRESS_AFTER {
            bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
            shown = true;
        }
        bar.set_message(format!(
            "{label}: {}, round {}, {:.1}% at the goal",
            p.phase,
            p.round,
            p.goal * 100.0
        ));
        bar.set_position((p.limit * 1000.0) as u64);
    };
    let hooks = Hooks {
        progress: Some(&mut progress),
        heap_bytes: Some(&resident_bytes),
    };
    let mut pool = rayon::ThreadPoolBuilder::new();
    if let Some(n) = args.threads {
        pool = pool.num_threads(usize::from(n));
    }
    let result = match pool.build() {
        Ok(pool) => pool.install(|| scenario::run(&cfg, hooks)),
        Err(e) => Err(format!("cannot start the simulator's threads: {e}")),
    };
    bar.finish_and_clear();
    let fig = match result {
        Ok(fig) => fig,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(path) = &args.plot
        && let Err(e) = plot::converged_fraction(path, &fig)
    {
        eprintln!("error: cannot write {}: {e}", path.display());
        return ExitCode::from(1);
    }
    if args.json {
        match serde_json::to_string(&fig) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(1);
            }
        }
    } else if args.markdown {
        print_markdown(&fig);
    } else {
        print_summary(&fig);
    }
    if fig.converged {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn print_markdown(f: &Figures) {
    let ms =
        |v: Option<u64>| v.map_or_else(|| "-".to_string(), |v| format!("{:.1}", v as f64 / 1000.0));
    let goal = match f.scenario.as_str() {
        "disseminate" => ms(f.disseminate_ms),
        "crash" => format!("{} / {}", ms(f.detect_ms_p50), ms(f.detect_ms_max)),
        "restart" => ms(f.restart_ms),
        "partition" | "churn" => ms(f.heal_ms),
        "pause" => ms(f.resume_ms),
        "join" => format!("{} / {}", ms(f.join_ms), ms(f.joined_ms)),
        _ => f.rounds.map_or_else(|| "-".into(), |r| format!("{r:.1}")),
    };
    println!(
        "| scenario | nodes | loss | jitter (ms) | goal reached | rounds | measured (s) | false downs | datagrams/node/s | bytes/node/s | steady bytes/node/s | max datagram | bytes/known peer | wall (s) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    println!(
        "| {} | {} | {} | {} | {} | {} | {} | {} | {:.1} | {:.0} | {} | {} | {} | {:.1} |",
        f.scenario,
        f.nodes,
        f.loss,
        f.jitter_ms,
        if f.converged { "yes" } else { "**no**" },
        f.rounds.map_or_else(|| "-".into(), |r| format!("{r:.1}")),
        goal,
        f.false_downs,
        f.datagrams_per_node_per_s,
        f.bytes_per_node_per_s,
        f.steady_bytes_per_node_per_s
            .map_or_else(|| "-".into(), |b| format!("{b:.0}")),
        f.max_datagram_bytes,
        f.bytes_per_known_peer
            .map_or_else(|| "-".into(), |b| format!("{b:.0}")),
        f.wall_ms as f64 / 1000.0
    );
}

fn print_summary(f: &Figures) {
    let opt = |v: Option<u64>| v.map_or_else(|| "-".to_string(), |v| format!("{v} ms"));
    println!(
        "scenario {} with {} nodes (seed {}, loss {}, jitter {} ms, interval {} ms, fanout {})",
        f.scenario, f.nodes, f.seed, f.loss, f.jitter_ms, f.interval_ms, f.fanout
    );
    println!(
        "  goal reached        {}",
        if f.converged { "yes" } else { "NO" }
    );
    if let Some(r) = f.rounds {
        println!("  rounds to goal      {r}");
    }
    println!("  simulated time      {} ms", f.sim_time_ms);
    println!("  disseminate         {}", opt(f.disseminate_ms));
    println!(
        "  detection p50/max   {} / {}",
        opt(f.detect_ms_p50),
        opt(f.detect_ms_max)
    );
    println!("  restart seen        {}", opt(f.restart_ms));
    println!("  views agree again   {}", opt(f.heal_ms));
    println!("  up after pause      {}", opt(f.resume_ms));
    println!(
        "  join: has all / all see it {} / {}",
        opt(f.join_ms),
        opt(f.joined_ms)
    );
    println!("  false downs         {}", f.false_downs);
    println!(
        "  per node per second {} datagrams, {} bytes",
        f.datagrams_per_node_per_s, f.bytes_per_node_per_s
    );
    if let Some(b) = f.steady_bytes_per_node_per_s {
        println!("  steady, per node/s  {b} bytes");
    }
    println!("  largest datagram    {} bytes", f.max_datagram_bytes);
    if let Some(b) = f.bytes_per_known_peer {
        println!("  memory / known peer {b:.0} bytes");
    }
    println!("  wall time           {} ms", f.wall_ms);
    if let Some(v) = &f.violation {
        println!("  VIOLATION           {v}");
    }
}

#[cfg(test)]
mod tests {
    /// clap's own checks of the whole command line (unique names, valid
    /// defaults), which otherwise run only when a subcommand is parsed.
    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
