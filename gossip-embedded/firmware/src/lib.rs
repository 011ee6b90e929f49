//! What the firmware binaries share: the SysTick clock, the node
//! configuration and states, RAM accounting (stack painting), the exit paths
//! over semihosting, and the LAN9118 Ethernet driver.
//!
//! - `two-nodes`: two nodes on two smoltcp interfaces inside one firmware,
//!   joined by `gossip_embedded::net`'s in-memory switch.
//! - `node`: one node per firmware on the board's LAN9118 Ethernet
//!   controller; two QEMU instances joined by QEMU's socket network gossip
//!   with each other (`scripts/firmware.sh`).
//! - `embassy-node`: one node per firmware on embassy (executor, embassy-net
//!   on the LAN9118's embassy-net driver, embassy-time on SysTick); two
//!   instances gossip as `node` does, or three show a crash and a restart.
#![no_std]

pub mod args;
pub mod lan9118;
pub mod time_driver;

use core::cell::Cell;
use core::net::SocketAddr;
use core::time::Duration;

use cortex_m::peripheral::syst::SystClkSource;
use cortex_m::peripheral::{SCB, SYST};
use cortex_m_rt::exception;
use cortex_m_semihosting::{debug, hprintln};
use critical_section::Mutex;
use gossip_core::state::StateKey;
use gossip_core::wire::ClusterId;
use gossip_core::{Config, Instant, Node};
use gossip_embedded::small_config;

/// The 8 states every node publishes: 16-byte names, 32-byte values (the
/// most `small_config` allows), so each node holds a peer with a full set.
pub const STATE_KEYS: [&str; 8] = [
    "sensor.temp.0001",
    "sensor.temp.0002",
    "sensor.humid.001",
    "sensor.humid.002",
    "firmware.version",
    "uplink.gateway.0",
    "battery.mv.x1000",
    "location.grid.id",
];

/// Node `node`'s value for `STATE_KEYS[key]`.
pub fn state_value(node: u8, key: usize) -> [u8; 32] {
    let mut v = [b'a' + (key as u8 % 26); 32];
    v[0] = b'0' + node % 10;
    v
}

/// Whether `node` holds every state `peer` publishes, with its values.
pub fn has_states<S: gossip_core::Storage, R: rand_core::Rng>(node: &Node<S, R>, peer: u8) -> bool {
    let Some(p) = node.endpoint(&addr(peer)) else {
        return false;
    };
    STATE_KEYS.iter().enumerate().all(|(k, name)| {
        p.state()
            .get(&StateKey::parse(name))
            .is_some_and(|v| v.value == state_value(peer, k))
    })
}

/// Node `i`'s gossip address: 10.0.0.(i + 1):7000.
pub fn addr(i: u8) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, 1 + i], 7000))
}

/// `small_config` (16 peers, 8 keys of up to 32-byte values, 512-byte
/// datagrams) with 100 ms rounds.
pub fn config() -> Config {
    let mut c = small_config(ClusterId::from_name("firmware"));
    c.gossip_interval = Duration::from_millis(100);
    c
}

/// Milliseconds since boot, counted by SysTick (64 bits: it never wraps).
static MILLIS: Mutex<Cell<u64>> = Mutex::new(Cell::new(0));

/// When SysTick pends PendSV for embassy-time's timer queue
/// ([`time_driver`]); `u64::MAX`: never (the blocking firmwares).
pub(crate) static ALARM: Mutex<Cell<u64>> = Mutex::new(Cell::new(u64::MAX));

#[exception]
fn SysTick() {
    let due = critical_section::with(|cs| {
        let millis = MILLIS.borrow(cs);
        millis.set(millis.get() + 1);
        millis.get() >= ALARM.borrow(cs).get()
    });
    if due {
        SCB::set_pendsv();
    }
}

/// Starts the millisecond clock: mps2-an386 runs the core at 25 MHz.
fn start_clock(syst: &mut SYST) {
    syst.set_clock_source(SystClkSource::Core);
    syst.set_reload(25_000 - 1);
    syst.clear_current();
    syst.enable_interrupt();
    syst.enable_counter();
}

/// Milliseconds since boot.
pub fn uptime_millis() -> u64 {
    critical_section::with(|cs| MILLIS.borrow(cs).get())
}

/// Now, on the SysTick clock.
pub fn now() -> Instant {
    Instant::from_millis(uptime_millis())
}

/// Whole milliseconds, saturating at `u32::MAX` (49 days).
pub fn millis(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

/// `n`, saturating at `u32::MAX`: the figures are printed as `u32`, the
/// one integer formatting the firmware links anyway (`usize` on this
/// target, for core's panic messages); a second one costs flash.
pub fn small(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Exits 0 through semihosting.
pub fn pass() -> ! {
    debug::exit(debug::EXIT_SUCCESS);
    loop {
        cortex_m::asm::wfi();
    }
}

/// Prints why and exits 1 through semihosting.
pub fn fail(why: &str) -> ! {
    hprintln!("FAILED: {}", why);
    debug::exit(debug::EXIT_FAILURE);
    loop {
        cortex_m::asm::wfi();
    }
}

/// A firmware's whole life: paints the stack (for [`stack_high_water`]),
/// runs `run` with the core peripherals and the millisecond clock started,
/// then exits through semihosting: 0, or 1 with the reason.
pub fn run_to_exit(run: impl FnOnce(&mut cortex_m::Peripherals) -> Result<(), &'static str>) -> ! {
    paint_stack();
    let outcome = match cortex_m::Peripherals::take() {
        Some(mut core) => {
            start_clock(&mut core.SYST);
            run(&mut core)
        }
        None => Err("peripherals"),
    };
    if let Err(why) = outcome {
        fail(why);
    }
    pass()
}

unsafe extern "C" {
    static mut __sdata: u32;
    static mut __edata: u32;
    static mut __sbss: u32;
    static mut __ebss: u32;
    static mut _stack_start: u32;
}

const PAINT: u32 = 0x5AFE_57AC;

/// Fills the free RAM between the end of `.bss` and the current stack
/// pointer (less a margin) with a pattern, for [`stack_high_water`].
pub fn paint_stack() {
    let bottom = core::ptr::addr_of_mut!(__ebss);
    let sp = cortex_m::register::msp::read() as usize - 256;
    let mut p = bottom;
    while (p as usize) < sp {
        // SAFETY: `p` runs over word-aligned addresses from the end of .bss
        // (cortex-m-rt aligns it to 4) up to 256 bytes below the current
        // stack pointer: RAM that no object occupies (there is no heap) and
        // that the stack has not reached yet, so nothing reads or aliases it.
        unsafe {
            p.write_volatile(PAINT);
            p = p.add(1);
        }
    }
}

/// Bytes of stack used since the last [`paint_stack`]: from the top of RAM
/// down to the lowest word that no longer holds the pattern.
pub fn stack_high_water() -> usize {
    let top = core::ptr::addr_of_mut!(_stack_start) as usize;
    let mut p = core::ptr::addr_of_mut!(__ebss);
    // SAFETY: reads (volatile, word-aligned) of the painted region between
    // the end of .bss and the stack, which is plain RAM; stops at the first
    // word the stack has written, at the latest at the stack top.
    unsafe {
        while (p as usize) < top && p.read_volatile() == PAINT {
            p = p.add(1);
        }
    }
    top - p as usize
}

/// `.data` + `.bss` bytes.
pub fn static_ram() -> usize {
    let span = |a: *mut u32, b: *mut u32| b as usize - a as usize;
    span(
        core::ptr::addr_of_mut!(__sdata),
        core::ptr::addr_of_mut!(__edata),
    ) + span(
        core::ptr::addr_of_mut!(__sbss),
        core::ptr::addr_of_mut!(__ebss),
    )
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    hprintln!("PANIC: {}", info);
    debug::exit(debug::EXIT_FAILURE);
    loop {
        cortex_m::asm::wfi();
    }
}
