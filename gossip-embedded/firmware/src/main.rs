//! Two gossip nodes in one Cortex-M4 firmware (QEMU `mps2-an386`), each with
//! its own smoltcp interface and UDP socket, joined by the in-memory switch
//! of `gossip_embedded::net`. They converge, node 0 changes a state, node 1
//! sees it; the firmware prints a summary over semihosting and exits 0, or
//! exits 1 on failure or panic.
#![no_std]
#![no_main]

use core::cell::RefCell;
use core::net::SocketAddr;
use core::sync::atomic::{AtomicU32, Ordering};
use core::time::Duration;

use cortex_m::peripheral::syst::SystClkSource;
use cortex_m_rt::{entry, exception};
use cortex_m_semihosting::{debug, hprintln};
use embedded_nal::UdpFullStack;
use gossip_core::state::{Generation, StateKey};
use gossip_core::wire::ClusterId;
use gossip_core::{Config, Event, Instant, Node};
use gossip_embedded::net::{Port, SmoltcpStack, Switch, UdpHandle};
use gossip_embedded::{Gossip, SmallStorage, small_config};
use rand_core::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;
use smoltcp::iface::{Interface, SocketSet, SocketStorage};
use smoltcp::socket::udp;
use smoltcp::wire::{EthernetAddress, IpAddress, IpCidr};

/// 16 peers, 8 keys of up to 32-byte values (names up to 16 bytes), 512-byte
/// datagrams, 2 pending replies.
type NodeGossip = Gossip<SmallStorage, Xoshiro256PlusPlus, 512>;
type Net = Switch<2, 600, 4>;

/// Milliseconds since boot, counted by SysTick.
static MILLIS: AtomicU32 = AtomicU32::new(0);

#[exception]
fn SysTick() {
    MILLIS.fetch_add(1, Ordering::Relaxed);
}

fn now() -> Instant {
    Instant::from_millis(u64::from(MILLIS.load(Ordering::Relaxed)))
}

fn config() -> Config {
    let mut c = small_config(ClusterId::from_name("firmware"));
    c.gossip_interval = Duration::from_millis(100);
    c
}

fn addr(i: u8) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, 1 + i], 7000))
}

/// One node's interface, sockets and gossip.
struct Host<'a> {
    port: Port<'a, 2, 600, 4>,
    iface: Interface,
    sockets: SocketSet<'a>,
    socket: UdpHandle,
    gossip: NodeGossip,
}

/// The buffers a host's UDP socket lives in.
struct Buffers {
    rx_meta: [udp::PacketMetadata; 4],
    rx: [u8; 1024],
    tx_meta: [udp::PacketMetadata; 4],
    tx: [u8; 1024],
}

impl Buffers {
    const fn new() -> Self {
        Self {
            rx_meta: [udp::PacketMetadata::EMPTY; 4],
            rx: [0; 1024],
            tx_meta: [udp::PacketMetadata::EMPTY; 4],
            tx: [0; 1024],
        }
    }
}

impl<'a> Host<'a> {
    /// Not inlined, so its temporaries leave the stack when it returns.
    #[inline(never)]
    fn new(
        switch: &'a RefCell<Net>,
        i: u8,
        storage: &'a mut [SocketStorage<'a>; 1],
        buffers: &'a mut Buffers,
    ) -> Result<Self, &'static str> {
        let mut port = Port::new(switch, usize::from(i));
        let mut cfg = smoltcp::iface::Config::new(EthernetAddress([2, 0, 0, 0, 0, 1 + i]).into());
        cfg.random_seed = u64::from(i) + 1;
        let mut iface = Interface::new(cfg, &mut port, smoltcp::time::Instant::ZERO);
        iface.update_ip_addrs(|a| {
            let _ = a.push(IpCidr::new(IpAddress::v4(10, 0, 0, 1 + i), 24));
        });
        let Buffers {
            rx_meta,
            rx,
            tx_meta,
            tx,
        } = buffers;
        let mut sockets = SocketSet::new(&mut storage[..]);
        let handle = sockets.add(udp::Socket::new(
            udp::PacketBuffer::new(&mut rx_meta[..], &mut rx[..]),
            udp::PacketBuffer::new(&mut tx_meta[..], &mut tx[..]),
        ));
        let seeds: &[SocketAddr] = if i == 0 { &[] } else { &[addr(0)] };
        let rng = Xoshiro256PlusPlus::seed_from_u64(0x5eed + u64::from(i));
        let node = Node::new(
            config(),
            addr(i),
            Generation(1_000 + u64::from(i)),
            seeds,
            rng,
            now(),
        )
        .map_err(|_| "node configuration")?;
        let gossip = Gossip::new(node).map_err(|_| "datagram buffer")?;
        let mut socket = UdpHandle::new(handle);
        SmoltcpStack::new(&mut iface, &mut port, &mut sockets, now())
            .bind(&mut socket, 7000)
            .map_err(|_| "bind")?;
        Ok(Self {
            port,
            iface,
            sockets,
            socket,
            gossip,
        })
    }

    /// Polls the node; returns whether it saw `want` (endpoint, key, value).
    fn poll(&mut self, want: (SocketAddr, &str, &[u8])) -> bool {
        let t = now();
        let mut stack = SmoltcpStack::new(&mut self.iface, &mut self.port, &mut self.sockets, t);
        self.gossip.poll(t, &mut stack, &mut self.socket);
        let mut seen = false;
        while let Some(e) = self.gossip.poll_event() {
            if let Event::StateChanged {
                endpoint,
                key,
                value,
            } = e
            {
                seen |=
                    endpoint == want.0 && key == StateKey::parse(want.1) && value.value == want.2;
            }
        }
        seen
    }
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
/// pointer (less a margin) with [`PAINT`], for the stack high-water mark.
fn paint_stack() {
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

/// Bytes of stack ever used: from the top of RAM down to the lowest word
/// that no longer holds [`PAINT`].
fn stack_high_water() -> usize {
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

/// Whole milliseconds (u64: formatting a u128 costs flash).
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn static_ram() -> usize {
    let span = |a: *mut u32, b: *mut u32| b as usize - a as usize;
    span(
        core::ptr::addr_of_mut!(__sdata),
        core::ptr::addr_of_mut!(__edata),
    ) + span(
        core::ptr::addr_of_mut!(__sbss),
        core::ptr::addr_of_mut!(__ebss),
    )
}

#[entry]
fn main() -> ! {
    paint_stack();
    let code = match run() {
        Ok(()) => debug::EXIT_SUCCESS,
        Err(why) => {
            hprintln!("FAILED: {}", why);
            debug::EXIT_FAILURE
        }
    };
    debug::exit(code);
    loop {
        cortex_m::asm::wfi();
    }
}

fn run() -> Result<(), &'static str> {
    let mut core = cortex_m::Peripherals::take().ok_or("peripherals")?;
    // mps2-an386 runs the core at 25 MHz: a SysTick every millisecond.
    core.SYST.set_clock_source(SystClkSource::Core);
    core.SYST.set_reload(25_000 - 1);
    core.SYST.clear_current();
    core.SYST.enable_interrupt();
    core.SYST.enable_counter();

    let switch = RefCell::new(Net::new());
    let (mut b0, mut b1) = (Buffers::new(), Buffers::new());
    let mut s0 = [SocketStorage::EMPTY; 1];
    let mut s1 = [SocketStorage::EMPTY; 1];
    let mut h0 = Host::new(&switch, 0, &mut s0, &mut b0)?;
    let mut h1 = Host::new(&switch, 1, &mut s1, &mut b1)?;
    let mut hosts = [&mut h0, &mut h1];
    let want = (addr(0), "ROLE", &b"gateway"[..]);

    let started = now();
    let mut converged = None;
    let mut disseminated = None;
    while now().saturating_duration_since(started) < Duration::from_secs(30) {
        let mut seen = false;
        for h in hosts.iter_mut() {
            seen |= h.poll(want);
        }
        let t = now().saturating_duration_since(started);
        if converged.is_none() && hosts.iter().all(|h| h.gossip.node().live_count() == 1) {
            converged = Some(t);
            hosts[0]
                .gossip
                .set_state(StateKey::parse("ROLE"), b"gateway")
                .map_err(|_| "set_state")?;
        }
        if converged.is_some() && seen {
            disseminated = Some(t);
            break;
        }
        cortex_m::asm::wfi();
    }
    let converged = converged.ok_or("the nodes did not converge in 30 s")?;
    let disseminated = disseminated.ok_or("the state change did not arrive in 30 s")?;
    let s = hosts[0].gossip.node().stats();
    hprintln!("gossip firmware on mps2-an386: 2 nodes, smoltcp, in-memory switch");
    hprintln!("converged_ms={}", millis(converged));
    hprintln!("state_change_ms={}", millis(disseminated - converged));
    hprintln!(
        "node0 datagrams_out={} bytes_out={} dropped={}",
        s.datagrams_out,
        s.bytes_out,
        s.dropped_total()
    );
    hprintln!("switch_dropped_frames={}", switch.borrow().dropped());
    // What one node keeps for as long as it runs: its gossip state, its
    // interface and its socket buffers.
    hprintln!("gossip_node_bytes={}", core::mem::size_of::<NodeGossip>());
    hprintln!(
        "resident_bytes_per_node={}",
        core::mem::size_of::<Host<'_>>() + core::mem::size_of::<Buffers>()
    );
    hprintln!("static_ram_bytes={}", static_ram());
    hprintln!("stack_high_water_bytes={}", stack_high_water());
    hprintln!("ram_total_bytes={}", static_ram() + stack_high_water());
    Ok(())
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    hprintln!("PANIC: {}", info);
    debug::exit(debug::EXIT_FAILURE);
    loop {
        cortex_m::asm::wfi();
    }
}
