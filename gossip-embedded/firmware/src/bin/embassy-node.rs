//! One gossip node per firmware on embassy: embassy-executor runs two
//! tasks, embassy-net's stack on the LAN9118 (its embassy-net driver,
//! woken by the controller's interrupt) and the node
//! (`Gossip::step_embassy` on an embassy-net UDP socket, timed by
//! embassy-time on SysTick).
//!
//! The board's number comes from its MAC address (`:01` is node 0 at
//! 10.0.0.1, the seed; `:02` node 1; `:03` node 2), its settings from the
//! command line QEMU passes over semihosting (`-append`):
//!
//! - `boot=N`: the generation. A board without a clock keeps a boot
//!   counter in flash and adds one before it gossips; QEMU's board has no
//!   non-volatile memory, so `scripts/firmware.sh` counts boots for it.
//! - `mode=pair` (the default): as the `node` firmware, nodes 0 and 1 run
//!   until each sees the other alive with its 8 states, keep gossiping
//!   2 s, shut down and print the RAM they used.
//! - `mode=crash`: three boards. Nodes 0 and 1 watch node 2 and print
//!   every change they see of it; they pass once they have seen it up,
//!   down (its QEMU killed), then restarted with a newer generation and up
//!   again, and fail on a false down of each other. Node 2 gossips until
//!   it is killed; booted again (`boot=2`), it runs until it sees both
//!   others with their states, then leaves.
//!
//! Exits 0 through semihosting, or 1 with the reason (also when its RAM
//! use reaches 32 KiB, or after 120 s).
#![no_std]
#![no_main]

use core::net::SocketAddr;
use core::time::Duration;

use cortex_m_rt::{entry, exception};
use cortex_m_semihosting::hprintln;
use embassy_executor::{Executor, Spawner};
use embassy_net::udp::{PacketMetadata, UdpSocket};
use embassy_net::{Ipv4Address, Ipv4Cidr, Runner, StackResources, StaticConfigV4};
use gossip_core::state::{Generation, StateKey};
use gossip_core::{Event, Instant, Node};
use gossip_embedded::embassy::EmbassyUdp;
use gossip_embedded::{Clock, EmbassyTime, Gossip, SmallStorage};
use gossip_firmware::args::Args;
use gossip_firmware::lan9118::embassy::{EmbassyLan9118, on_interrupt};
use gossip_firmware::lan9118::{self, Lan9118};
use gossip_firmware::time_driver::SysTickDriver;
use gossip_firmware::{
    STATE_KEYS, addr, config, fail, has_states, millis, paint_stack, run_to_exit, small,
    stack_high_water, state_value, static_ram,
};
use rand_core::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

embassy_time_driver::time_driver_impl!(static DRIVER: SysTickDriver = SysTickDriver::new());

/// The RAM target for one node with its network stack.
const RAM_LIMIT: usize = 32 * 1024;

/// How long a node keeps gossiping after it has seen what it waited for.
const LINGER: Duration = Duration::from_secs(2);

/// A run that has not finished by then has failed.
const LIMIT: Duration = Duration::from_secs(120);

type G = Gossip<SmallStorage, Xoshiro256PlusPlus, 512>;

#[exception]
fn PendSV() {
    DRIVER.on_alarm();
}

#[exception]
unsafe fn DefaultHandler(irqn: i16) {
    if irqn == lan9118::MPS2_IRQ as i16 {
        on_interrupt();
    }
}

#[entry]
fn main() -> ! {
    run_to_exit(|_| start())
}

/// Builds the node on this frame's stack, as the blocking firmware does
/// (in place: a node is too large to build aside and move), then runs the
/// executor on it, never to return. The main task gets the node by a
/// `'static` reference: held in the task's state, it would be counted
/// twice (once in the state, once for the temporaries that build it) and
/// its construction would sit in the task's frame at every poll.
fn start() -> Result<(), &'static str> {
    let (mode, boot) = settings()?;
    let board = board(mode)?;
    let me = board.me;
    let seed = [addr(0)];
    let seeds = if me == 0 { &[][..] } else { &seed[..] };
    let rng = Xoshiro256PlusPlus::seed_from_u64(0x5eed + u64::from(me) + (boot << 8));
    let started = EmbassyTime.now();
    let Ok(node) = Node::new(config(), addr(me), Generation(boot), seeds, rng, started) else {
        return Err("node configuration");
    };
    let Ok(mut gossip) = Gossip::new(node) else {
        return Err("datagram buffer");
    };
    for (k, name) in STATE_KEYS.iter().enumerate() {
        gossip
            .set_state(StateKey::parse(name), &state_value(me, k))
            .map_err(|_| "set_state")?;
    }
    hprintln!(
        "gossip node {} on mps2-an386: embassy, LAN9118, generation {}",
        me,
        small(boot)
    );
    let gossip: *mut G = &mut gossip;
    // SAFETY: `executor.run` below never returns, so this frame is never
    // popped and `gossip` is never moved or dropped: it lives as long as
    // the program, as a `'static` value would. This is the only reference
    // made to it, and `start` does not touch `gossip` again.
    let gossip: &'static mut G = unsafe { &mut *gossip };
    let executor = cortex_m::singleton!(: Executor = Executor::new()).ok_or("executor")?;
    executor.run(|spawner| {
        let task = main_task(spawner, gossip, board, Settings { mode, boot }, started);
        if let Err(why) = spawn(spawner, task) {
            fail(why);
        }
    })
}

/// Spawns the task `token` names (a task function's result).
fn spawn<S>(
    spawner: Spawner,
    token: Result<embassy_executor::SpawnToken<S>, embassy_executor::SpawnError>,
) -> Result<(), &'static str> {
    spawner.spawn(token.map_err(|_| "spawn")?);
    Ok(())
}

#[embassy_executor::task]
async fn net_task(mut runner: Runner<'static, &'static mut EmbassyLan9118>) -> ! {
    runner.run().await
}

#[embassy_executor::task]
async fn main_task(
    spawner: Spawner,
    gossip: &'static mut G,
    board: Board,
    settings: Settings,
    started: Instant,
) {
    match run(spawner, gossip, board, settings, started).await {
        Ok(()) => gossip_firmware::pass(),
        Err(why) => fail(why),
    }
}

/// The board's number and its network driver.
struct Board {
    me: u8,
    driver: &'static mut EmbassyLan9118,
}

/// What the command line asked for.
#[derive(Clone, Copy)]
struct Settings {
    mode: Mode,
    boot: u64,
}

/// What the board was told to do.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Pair,
    Crash,
}

async fn run(
    spawner: Spawner,
    gossip: &'static mut G,
    board: Board,
    settings: Settings,
    started: Instant,
) -> Result<(), &'static str> {
    let Settings { mode, boot } = settings;
    let me = board.me;
    let nodes: u8 = if mode == Mode::Crash { 3 } else { 2 };
    let mut udp = network(spawner, board, boot)?;
    let construction_peak = stack_high_water();
    paint_stack();

    let mut watch = Watch::new(me, nodes, mode, boot);
    let mut done_at: Option<Instant> = None;
    loop {
        // A receive error (a datagram larger than the buffer) is dropped:
        // the next step goes on.
        let _ = gossip.step_embassy(&mut udp).await;
        let now = EmbassyTime.now();
        let elapsed = now.saturating_duration_since(started);
        while let Some(e) = gossip.poll_event() {
            watch.event(&e, elapsed)?;
        }
        if done_at.is_none() && watch.done(gossip.node()) {
            hprintln!("node{}: done at {} ms", me, millis(elapsed));
            done_at = Some(now);
            watch.finished = true;
        }
        if done_at.is_some_and(|d| now >= d + LINGER) && !gossip.node().is_shutting_down() {
            gossip.shutdown(now);
        }
        if gossip.node().is_shut_down() {
            break;
        }
        if elapsed >= LIMIT {
            return Err("not done in 120 s");
        }
    }

    // The SHUTDOWN notices are queued: let the runner send them before the
    // board goes (at most 200 ms).
    let flushed = embassy_time::Duration::from_millis(200);
    let _ = embassy_time::with_timeout(flushed, udp.flush()).await;
    report(me, gossip, &udp, construction_peak)
}

/// Prints the node's figures and the RAM it used; fails at 32 KiB. Not
/// inlined: its temporaries stay out of the main task's frame.
#[inline(never)]
fn report(
    me: u8,
    gossip: &G,
    udp: &EmbassyUdp<'_>,
    construction_peak: usize,
) -> Result<(), &'static str> {
    let gossip_peak = stack_high_water();
    let s = gossip.node().stats();
    let (main, spare) = udp.stats();
    hprintln!(
        "node{}: datagrams_out={} bytes_out={} dropped={} queue_cleared={}/{} shunned={}",
        me,
        small(s.datagrams_out),
        small(s.bytes_out),
        small(s.dropped_total()),
        main.cleared,
        spare.cleared,
        main.shunned + spare.shunned
    );
    let stack_peak = gossip_peak.max(construction_peak);
    let ram = static_ram() + stack_peak;
    hprintln!(
        "node{}: ram_total_bytes={} (static {}, stack peak {}: start {}, gossip {}; target: under {})",
        me,
        ram,
        static_ram(),
        stack_peak,
        construction_peak,
        gossip_peak,
        RAM_LIMIT
    );
    if ram >= RAM_LIMIT {
        return Err("RAM use reached 32 KiB");
    }
    Ok(())
}

/// The mode and the boot count from the command line.
fn settings() -> Result<(Mode, u64), &'static str> {
    let args = Args::read();
    let mode = match args.get("mode") {
        None | Some("pair") => Mode::Pair,
        Some("crash") => Mode::Crash,
        Some(_) => return Err("mode must be pair or crash"),
    };
    Ok((mode, args.number("boot").unwrap_or(1)))
}

/// Brings up the controller as an embassy-net driver (in a static); the
/// board's number comes from its MAC address. Not inlined, as
/// [`network`].
#[inline(never)]
fn board(mode: Mode) -> Result<Board, &'static str> {
    // SAFETY: MPS2_BASE is the LAN9118's register block on mps2-an386, and
    // this is the only code in the firmware that touches it.
    let nic = unsafe { Lan9118::new(lan9118::MPS2_BASE) }.map_err(lan9118::Error::as_str)?;
    let me = match nic.mac()[5] {
        m @ 1..=3 => m - 1,
        _ => return Err("start QEMU with a MAC address ending in :01, :02 or :03"),
    };
    if mode == Mode::Pair && me > 1 {
        return Err("mode=pair takes nodes 0 and 1 only");
    }
    let driver =
        cortex_m::singleton!(: EmbassyLan9118 = EmbassyLan9118::new(nic)).ok_or("driver")?;
    Ok(Board { me, driver })
}

/// Brings up the embassy-net stack on the driver (its runner spawned) and
/// the node's sockets. Not async and not inlined: its temporaries (the
/// stack's resources, the runner) live in this frame while it runs, not in
/// every poll of the main task's.
#[inline(never)]
fn network(spawner: Spawner, board: Board, boot: u64) -> Result<EmbassyUdp<'static>, &'static str> {
    let me = board.me;
    let resources =
        cortex_m::singleton!(: StackResources<2> = StackResources::new()).ok_or("resources")?;
    let ip = StaticConfigV4 {
        address: Ipv4Cidr::new(Ipv4Address::new(10, 0, 0, 1 + me), 24),
        gateway: None,
        dns_servers: Default::default(),
    };
    let (stack, runner) = embassy_net::new(
        board.driver,
        embassy_net::Config::ipv4_static(ip),
        resources,
        u64::from(me) + boot,
    );
    spawn(spawner, net_task(runner))?;

    // Static buffers. The main socket (made first: it receives) has room
    // for two received datagrams and one to send (a step awaits each send:
    // the next waits until the runner has sent the one before); the spare
    // one, for destinations not heard from lately, only sends.
    let rx_meta = cortex_m::singleton!(: [PacketMetadata; 2] = [PacketMetadata::EMPTY; 2]);
    let rx = cortex_m::singleton!(: [u8; 1024] = [0; 1024]);
    let tx_meta = cortex_m::singleton!(: [PacketMetadata; 1] = [PacketMetadata::EMPTY; 1]);
    let tx = cortex_m::singleton!(: [u8; 512] = [0; 512]);
    let spare_meta = cortex_m::singleton!(: [PacketMetadata; 1] = [PacketMetadata::EMPTY; 1]);
    let spare_tx = cortex_m::singleton!(: [u8; 512] = [0; 512]);
    let (Some(rx_meta), Some(rx), Some(tx_meta), Some(tx), Some(spare_meta), Some(spare_tx)) =
        (rx_meta, rx, tx_meta, tx, spare_meta, spare_tx)
    else {
        return Err("socket buffers");
    };
    let main = UdpSocket::new(stack, rx_meta, rx, tx_meta, tx);
    let spare = UdpSocket::new(stack, &mut [], &mut [], spare_meta, spare_tx);
    EmbassyUdp::bind(main, spare, 7000).map_err(|_| "bind")
}

/// What a node waits for, and what it reports of the others.
struct Watch {
    me: u8,
    nodes: u8,
    mode: Mode,
    boot: u64,
    /// Crash mode, nodes 0 and 1: how far node 2's story has got.
    seen: Seen,
    /// The peers that announced they were leaving.
    left: [bool; 3],
    /// This node has seen what it waited for (and lingers).
    finished: bool,
}

/// The crash story as nodes 0 and 1 see node 2: up, down, restarted
/// (the core says so only for a newer generation), up again.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Seen {
    Nothing,
    Up,
    Down,
    Restarted,
    UpAgain,
}

impl Watch {
    fn new(me: u8, nodes: u8, mode: Mode, boot: u64) -> Self {
        Self {
            me,
            nodes,
            mode,
            boot,
            seen: Seen::Nothing,
            left: [false; 3],
            finished: false,
        }
    }

    fn index(&self, endpoint: &SocketAddr) -> Option<u8> {
        (0..self.nodes).find(|&j| addr(j) == *endpoint)
    }

    /// Prints a change of another node, and follows the crash story.
    #[inline(never)]
    fn event(&mut self, e: &Event<'_>, elapsed: Duration) -> Result<(), &'static str> {
        let me = self.me;
        let ms = millis(elapsed);
        match *e {
            Event::Up { endpoint } => {
                let Some(j) = self.index(&endpoint) else {
                    return Ok(());
                };
                hprintln!("node{}: node{} up at {} ms", me, j, ms);
                if j == 2 {
                    self.seen = match self.seen {
                        Seen::Nothing => Seen::Up,
                        Seen::Restarted => Seen::UpAgain,
                        other => other,
                    };
                }
            }
            Event::Suspect { endpoint } => {
                if let Some(j) = self.index(&endpoint) {
                    hprintln!("node{}: node{} suspect at {} ms", me, j, ms);
                }
            }
            Event::Down { endpoint } => {
                let Some(j) = self.index(&endpoint) else {
                    return Ok(());
                };
                hprintln!("node{}: node{} down at {} ms", me, j, ms);
                // Before this node is done every other node runs (node 2's
                // first life aside): a down is false. After it, the others
                // may have finished and left.
                let leaving = self.left.get(usize::from(j)).copied().unwrap_or(false);
                if j != 2 && !leaving && !self.finished && self.mode == Mode::Crash {
                    return Err("a false down: a running node was marked down");
                }
                if (j, self.seen) == (2, Seen::Up) {
                    self.seen = Seen::Down;
                }
            }
            Event::Restarted {
                endpoint,
                generation,
            } => {
                let Some(j) = self.index(&endpoint) else {
                    return Ok(());
                };
                hprintln!(
                    "node{}: node{} restarted with generation {} at {} ms",
                    me,
                    j,
                    small(generation.0),
                    ms
                );
                if (j, self.seen) == (2, Seen::Down) {
                    self.seen = Seen::Restarted;
                }
            }
            Event::ShutDown { endpoint } => {
                if let Some(j) = self.index(&endpoint) {
                    hprintln!("node{}: node{} shut down at {} ms", me, j, ms);
                    if let Some(l) = self.left.get_mut(usize::from(j)) {
                        *l = true;
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Whether this node has seen what it waits for.
    #[inline(never)]
    fn done<S: gossip_core::Storage, R: rand_core::Rng>(&self, node: &Node<S, R>) -> bool {
        let others_complete = || {
            (0..self.nodes).filter(|&j| j != self.me).all(|j| {
                has_states(node, j) && node.endpoint(&addr(j)).is_some_and(|p| p.is_alive())
            })
        };
        match (self.mode, self.me) {
            (Mode::Pair, _) => others_complete(),
            (Mode::Crash, 0 | 1) => self.seen == Seen::UpAgain,
            // Node 2's first life runs until it is killed.
            (Mode::Crash, _) => self.boot > 1 && others_complete(),
        }
    }
}
