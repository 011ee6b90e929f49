//! Two gossip nodes in one Cortex-M4 firmware (QEMU `mps2-an386`), each with
//! its own smoltcp interface and UDP socket, joined by the in-memory switch
//! of `gossip_embedded::net`:
//!
//! both sized for the embedded target (`SmallStorage`: room for 16 peers with
//! 8 states of up to 32-byte values each). Node 1 publishes 8 states of
//! 32-byte values under 16-byte names, so node 0 holds a peer with a full set
//! of states. They converge, node 0 changes a state, node 1 sees it; the
//! firmware prints a summary (timings, sizes, the RAM high-water mark) over
//! semihosting and exits 0, or exits 1 on failure or panic.
//!
//! (One node per microcontroller, talking over a real Ethernet controller, is
//! the `node` binary.)
#![no_std]
#![no_main]

use core::net::SocketAddr;
use core::time::Duration;

use cortex_m_rt::entry;
use cortex_m_semihosting::hprintln;
use embedded_nal::UdpFullStack;
use gossip_core::state::{Generation, StateKey};
use gossip_core::{Event, Node};
use gossip_embedded::net::{Port, SmoltcpStack, Switch, UdpHandle};
use gossip_embedded::{Gossip, SmallStorage};
use gossip_firmware::{
    STATE_KEYS, addr, config, fail, has_states, millis, now, paint_stack, run_to_exit, small,
    stack_high_water, state_value, static_ram,
};
use rand_core::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;
use smoltcp::iface::{Interface, SocketSet, SocketStorage};
use smoltcp::socket::udp;
use smoltcp::wire::{EthernetAddress, IpAddress, IpCidr};

/// Each node: 16 peers, 8 keys of up to 32-byte values (names up to 16
/// bytes), 512-byte datagrams, 2 pending replies.
type NodeGossip = Gossip<SmallStorage, Xoshiro256PlusPlus, 512>;
/// Frames of up to 554 bytes (a 512-byte datagram and its Ethernet, IPv4 and
/// UDP headers), 2 queued per port.
const FRAME: usize = 554;
type Net = Switch<2, FRAME, 2>;

/// One node's interface, socket and gossip.
struct Host<'a> {
    port: Port<'a, 2, FRAME, 2>,
    iface: Interface,
    sockets: SocketSet<'a>,
    socket: UdpHandle,
    gossip: NodeGossip,
}

/// The buffers a host's UDP sockets live in: room for two datagrams each
/// way on the main socket, one to send on the spare.
struct Buffers {
    rx_meta: [udp::PacketMetadata; 2],
    rx: [u8; 1024],
    tx_meta: [udp::PacketMetadata; 2],
    tx: [u8; 1024],
    spare_meta: [udp::PacketMetadata; 1],
    spare_tx: [u8; 512],
}

impl Buffers {
    const fn new() -> Self {
        Self {
            rx_meta: [udp::PacketMetadata::EMPTY; 2],
            rx: [0; 1024],
            tx_meta: [udp::PacketMetadata::EMPTY; 2],
            tx: [0; 1024],
            spare_meta: [udp::PacketMetadata::EMPTY; 1],
            spare_tx: [0; 512],
        }
    }
}

impl<'a> Host<'a> {
    /// Returns the host itself (not a `Result`), so it is built in place:
    /// a node is too large to build aside and move. Fails through
    /// [`fail`].
    #[inline(never)]
    fn new(
        switch: &'a Net,
        i: u8,
        storage: &'a mut [SocketStorage<'a>; 2],
        buffers: &'a mut Buffers,
    ) -> Self {
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
            spare_meta,
            spare_tx,
        } = buffers;
        let mut sockets = SocketSet::new(&mut storage[..]);
        let main = sockets.add(udp::Socket::new(
            udp::PacketBuffer::new(&mut rx_meta[..], &mut rx[..]),
            udp::PacketBuffer::new(&mut tx_meta[..], &mut tx[..]),
        ));
        let spare = sockets.add(udp::Socket::new(
            udp::PacketBuffer::new(&mut [][..], &mut [][..]),
            udp::PacketBuffer::new(&mut spare_meta[..], &mut spare_tx[..]),
        ));
        let seeds: &[SocketAddr] = if i == 0 { &[] } else { &[addr(0)] };
        let rng = Xoshiro256PlusPlus::seed_from_u64(0x5eed + u64::from(i));
        let generation = Generation(1_000 + u64::from(i));
        let Ok(node) = Node::new(config(), addr(i), generation, seeds, rng, now()) else {
            fail("node configuration");
        };
        let Ok(gossip) = Gossip::new(node) else {
            fail("datagram buffer");
        };
        let mut socket = UdpHandle::new(main, spare);
        if SmoltcpStack::new(&mut iface, &mut port, &mut sockets, now())
            .bind(&mut socket, 7000)
            .is_err()
        {
            fail("bind");
        }
        Self {
            port,
            iface,
            sockets,
            socket,
            gossip,
        }
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

#[entry]
fn main() -> ! {
    run_to_exit(|_| run())
}

fn run() -> Result<(), &'static str> {
    let switch = Net::new();
    let (mut b0, mut b1) = (Buffers::new(), Buffers::new());
    let mut s0 = [SocketStorage::EMPTY; 2];
    let mut s1 = [SocketStorage::EMPTY; 2];
    let mut h0 = Host::new(&switch, 0, &mut s0, &mut b0);
    let mut h1 = Host::new(&switch, 1, &mut s1, &mut b1);
    for (k, name) in STATE_KEYS.iter().enumerate() {
        h1.gossip
            .set_state(StateKey::parse(name), &state_value(1, k))
            .map_err(|_| "set_state on node 1")?;
    }
    let construction_peak = stack_high_water();
    paint_stack();
    let want = (addr(0), "ROLE", &b"gateway"[..]);

    let started = now();
    let mut converged = None;
    let mut disseminated = None;
    while now().saturating_duration_since(started) < Duration::from_secs(30) {
        h0.poll(want);
        let seen = h1.poll(want);
        let t = now().saturating_duration_since(started);
        let both_live = h0.gossip.node().live_count() == 1 && h1.gossip.node().live_count() == 1;
        if converged.is_none() && both_live && has_states(h0.gossip.node(), 1) {
            converged = Some(t);
            h0.gossip
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
    let s = h0.gossip.node().stats();
    hprintln!("gossip firmware on mps2-an386: 2 nodes, smoltcp, in-memory switch");
    hprintln!("converged_ms={}", millis(converged));
    hprintln!("state_change_ms={}", millis(disseminated - converged));
    hprintln!(
        "node0 datagrams_out={} bytes_out={} dropped={}",
        small(s.datagrams_out),
        small(s.bytes_out),
        small(s.dropped_total())
    );
    hprintln!("switch_dropped_frames={}", switch.dropped());
    // What each node keeps for as long as it runs: its gossip state, its
    // interface and its socket buffers (all on main's stack here).
    hprintln!("gossip_node_bytes={}", core::mem::size_of::<NodeGossip>());
    hprintln!(
        "resident_bytes_per_node={}",
        core::mem::size_of::<Host<'_>>() + core::mem::size_of::<Buffers>()
    );
    hprintln!("switch_bytes={}", core::mem::size_of::<Net>());
    let gossip_peak = stack_high_water();
    hprintln!("static_ram_bytes={}", static_ram());
    hprintln!("stack_peak_construction_bytes={}", construction_peak);
    hprintln!("stack_peak_gossip_bytes={}", gossip_peak);
    hprintln!(
        "ram_total_bytes={} (two nodes)",
        static_ram() + gossip_peak.max(construction_peak)
    );
    Ok(())
}
