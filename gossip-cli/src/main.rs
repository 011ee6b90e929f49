//! `gossip`: the command-line front end.
//!
//! - `gossip agent`: runs one node until SIGINT or SIGTERM, with an admin
//!   endpoint (`/gossipinfo`, `/cluster`, `/metrics`).
//! - `gossip info`: prints an agent's gossipinfo, or its cluster as JSON.
//! - `gossip demo`: a real cluster on 127.0.0.1 in one process: converges,
//!   loses a node, sees it restart, sees another leave; every step timed.
//! - `gossip sim`: runs a simulated cluster scenario and prints its figures.

use std::alloc::{GlobalAlloc, Layout};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use clap::{Parser, Subcommand};
use gossip_sim::scenario::{self, Hooks};
use gossip_sim::{Figures, Scenario, ScenarioConfig};

mod agent;
mod demo;
mod plot;

/// mimalloc, counting the bytes on the heap so `sim` can report memory per
/// known peer (mimalloc: the simulator's threads allocate and free a lot,
/// often what another thread allocated). The counter is split in shards,
/// one per thread most of the time (picked by the stack's address), so the
/// simulator's threads do not fight over one cache line on every
/// allocation.
struct CountingAlloc;

static INNER: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[repr(align(128))]
struct Shard(AtomicUsize);

const SHARDS: usize = 16;

/// How long `sim` runs before its progress bar is drawn.
const PROGRESS_AFTER: Duration = Duration::from_secs(2);

static HEAP: [Shard; SHARDS] = [const { Shard(AtomicUsize::new(0)) }; SHARDS];

/// This thread's shard: threads' stacks lie megabytes apart.
fn shard() -> &'static AtomicUsize {
    let marker = 0u8;
    let at = core::ptr::addr_of!(marker) as usize;
    &HEAP[(at >> 21) % SHARDS].0
}

// SAFETY: every method forwards to mimalloc's `GlobalAlloc` with the
// caller's arguments unchanged, so its guarantees hold; the only addition is a relaxed
// counter update, which touches no memory the allocation hands out.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout (non-zero size is the
        // caller's obligation, as for any allocator).
        let p = unsafe { INNER.alloc(layout) };
        if !p.is_null() {
            shard().fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `INNER` (through `alloc` above) with
        // this layout, as the caller guarantees.
        unsafe { INNER.dealloc(ptr, layout) };
        shard().fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let p = unsafe { INNER.alloc_zeroed(layout) };
        if !p.is_null() {
            shard().fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from `INNER` with `layout`, and `new_size` meets
        // `realloc`'s rules, as the caller guarantees.
        let p = unsafe { INNER.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            let shard = shard();
            shard.fetch_sub(layout.size(), Ordering::Relaxed);
            shard.fetch_add(new_size, Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

fn heap_bytes() -> usize {
    // A shard goes below zero when a thread frees what another allocated:
    // the wrapping sum is still exact.
    HEAP.iter().fold(0usize, |sum, s| {
        sum.wrapping_add(s.0.load(Ordering::Relaxed))
    })
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
    /// The UDP address to bind, and this node's identity unless --advertise
    /// gives another (0.0.0.0:PORT binds every interface, and then needs
    /// --advertise).
    #[arg(long)]
    listen: std::net::SocketAddr,
    /// The address peers reach this node at, its identity in the cluster
    /// (Cassandra's broadcast_address); default: the --listen address.
    #[arg(long)]
    advertise: Option<std::net::SocketAddr>,
    /// A seed to join through, host:port (repeat for more).
    #[arg(long = "seed")]
    seeds: Vec<String>,
    /// The cluster's name: nodes of other clusters are ignored.
    #[arg(long, default_value = "gossip")]
    cluster: String,
    /// An application state to publish, KEY=VALUE (repeat for more).
    #[arg(long = "state", value_parser = agent::parse_state)]
    states: Vec<(String, String)>,
    /// Gossip interval in milliseconds.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    interval_ms: u64,
    /// The admin HTTP endpoint (loopback unless asked otherwise).
    #[arg(long, default_value = "127.0.0.1:0")]
    admin: std::net::SocketAddr,
    /// Where to keep the generation, so it increases across restarts.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// A cluster key file: 32 random bytes (`head -c 32 /dev/urandom`) or
    /// 64 hex digits. Every datagram is then authenticated. Repeat for
    /// rotation: the first key seals, all are accepted. The files are read
    /// again on SIGHUP or `POST /keys/reload` on the admin endpoint.
    #[arg(long = "key-file")]
    key_files: Vec<PathBuf>,
}

#[derive(clap::Args)]
struct InfoArgs {
    /// The agent's admin endpoint, host:port.
    #[arg(long)]
    admin: String,
    /// Print the /cluster JSON instead.
    #[arg(long)]
    json: bool,
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Agent(args) => agent(args),
        Command::Info(args) => match agent::info(&args.admin, args.json) {
            Ok(body) => {
                print!("{body}");
                if args.json {
                    println!();
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(1)
            }
        },
        Command::Demo(args) => demo(args),
        Command::Sim(args) => sim(args),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("error: cannot start the runtime: {e}");
            ExitCode::from(1)
        })
}

fn agent(args: AgentArgs) -> ExitCode {
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let opts = agent::AgentOptions {
        listen: args.listen,
        advertise: args.advertise,
        seeds: args.seeds,
        cluster: args.cluster,
        states: args.states,
        interval_ms: args.interval_ms,
        admin: args.admin,
        data_dir: args.data_dir,
        key_files: args.key_files,
    };
    match rt.block_on(agent::run(opts)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

fn demo(args: DemoArgs) -> ExitCode {
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    match runtime.block_on(demo::run(usize::from(args.nodes))) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
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
        heap_bytes: Some(&heap_bytes),
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
