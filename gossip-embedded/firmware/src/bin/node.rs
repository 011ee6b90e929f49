//! One gossip node per firmware, on the board's LAN9118 Ethernet controller:
//! the shape of a real deployment, one node per microcontroller.
//! `scripts/firmware.sh` starts two QEMU `mps2-an386` instances joined by
//! QEMU's socket network, with MAC addresses ending in `:01` and `:02`
//! (node 0 at 10.0.0.1, the seed, and node 1 at 10.0.0.2).
//!
//! Each node is sized for the embedded target (`SmallStorage`: room for 16
//! peers with 8 states of up to 32-byte values) and publishes 8 states of
//! 32-byte values under 16-byte names. It runs until it sees the other node
//! alive with all of its states, keeps gossiping for 2 s so the other side
//! finishes too, then shuts down gracefully (the SHUTDOWN notice goes out).
//! It prints a summary over semihosting, including the RAM it used (.data +
//! .bss + the stack's high-water mark), and exits 0; it exits 1 on failure,
//! on a panic, or when the RAM used reaches 32 KiB.
#![no_std]
#![no_main]

use core::time::Duration;

use cortex_m_rt::entry;
use cortex_m_semihosting::hprintln;
use embedded_nal::UdpFullStack;
use gossip_core::state::{Generation, StateKey};
use gossip_core::{Event, Node};
use gossip_embedded::net::{SmoltcpStack, UdpHandle};
use gossip_embedded::{Gossip, SmallStorage};
use gossip_firmware::lan9118::{self, Lan9118};
use gossip_firmware::{
    STATE_KEYS, addr, config, has_states, millis, now, paint_stack, run_to_exit, small,
    stack_high_water, state_value, static_ram,
};
use rand_core::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;
use smoltcp::iface::{Interface, SocketSet, SocketStorage};
use smoltcp::socket::udp;
use smoltcp::wire::{EthernetAddress, IpAddress, IpCidr};

/// The RAM target for one node with its network stack.
const RAM_LIMIT: usize = 32 * 1024;

/// How long a node keeps gossiping after it has seen everything.
const LINGER: Duration = Duration::from_secs(2);

#[entry]
fn main() -> ! {
    run_to_exit(|_| run())
}

fn run() -> Result<(), &'static str> {
    // SAFETY: MPS2_BASE is the LAN9118's register block on mps2-an386, and
    // this is the only code in the firmware that touches it.
    let mut nic = unsafe { Lan9118::new(lan9118::MPS2_BASE) }.map_err(lan9118::Error::as_str)?;
    let mac = nic.mac();
    let me = match mac[5] {
        1 => 0u8,
        2 => 1u8,
        _ => return Err("start QEMU with a MAC address ending in :01 or :02"),
    };
    let other = 1 - me;

    let mut iface_config = smoltcp::iface::Config::new(EthernetAddress(mac).into());
    iface_config.random_seed = u64::from(me) + 1;
    let mut iface = Interface::new(iface_config, &mut nic, smoltcp::time::Instant::ZERO);
    iface.update_ip_addrs(|a| {
        let _ = a.push(IpCidr::new(IpAddress::v4(10, 0, 0, 1 + me), 24));
    });
    let mut rx_meta = [udp::PacketMetadata::EMPTY; 2];
    let mut rx = [0u8; 1024];
    let mut tx_meta = [udp::PacketMetadata::EMPTY; 2];
    let mut tx = [0u8; 1024];
    // The spare socket only sends (to destinations not heard from lately):
    // room for one datagram.
    let mut spare_meta = [udp::PacketMetadata::EMPTY; 1];
    let mut spare_tx = [0u8; 512];
    let mut storage = [SocketStorage::EMPTY; 2];
    let mut sockets = SocketSet::new(&mut storage[..]);
    let main = sockets.add(udp::Socket::new(
        udp::PacketBuffer::new(&mut rx_meta[..], &mut rx[..]),
        udp::PacketBuffer::new(&mut tx_meta[..], &mut tx[..]),
    ));
    let spare = sockets.add(udp::Socket::new(
        udp::PacketBuffer::new(&mut [][..], &mut [][..]),
        udp::PacketBuffer::new(&mut spare_meta[..], &mut spare_tx[..]),
    ));
    let mut socket = UdpHandle::new(main, spare);
    SmoltcpStack::new(&mut iface, &mut nic, &mut sockets, now())
        .bind(&mut socket, 7000)
        .map_err(|_| "bind")?;

    let seed = [addr(0)];
    let seeds = if me == 0 { &[][..] } else { &seed[..] };
    let rng = Xoshiro256PlusPlus::seed_from_u64(0x5eed + u64::from(me));
    let generation = Generation(1_000 + u64::from(me));
    let node = Node::new(config(), addr(me), generation, seeds, rng, now())
        .map_err(|_| "node configuration")?;
    let mut gossip: Gossip<SmallStorage, Xoshiro256PlusPlus, 512> =
        Gossip::new(node).map_err(|_| "datagram buffer")?;
    for (k, name) in STATE_KEYS.iter().enumerate() {
        gossip
            .set_state(StateKey::parse(name), &state_value(me, k))
            .map_err(|_| "set_state")?;
    }
    let construction_peak = stack_high_water();
    paint_stack();

    let started = now();
    let mut complete = None;
    let mut peer_left = false;
    while now().saturating_duration_since(started) < Duration::from_secs(30) {
        let t = now();
        let mut stack = SmoltcpStack::new(&mut iface, &mut nic, &mut sockets, t);
        gossip.poll(t, &mut stack, &mut socket);
        while let Some(e) = gossip.poll_event() {
            if let Event::ShutDown { endpoint } = e {
                peer_left |= endpoint == addr(other);
            }
        }
        let elapsed = t.saturating_duration_since(started);
        if complete.is_none() && gossip.node().live_count() == 1 && has_states(gossip.node(), other)
        {
            complete = Some(elapsed);
        }
        if complete.is_some_and(|c| elapsed >= c + LINGER) && !gossip.node().is_shutting_down() {
            gossip.shutdown(t);
        }
        if gossip.node().is_shut_down() {
            break;
        }
        cortex_m::asm::wfi();
    }
    let complete = complete.ok_or("did not see the other node with all its states in 30 s")?;
    if !gossip.node().is_shut_down() {
        return Err("did not shut down");
    }
    let gossip_peak = stack_high_water();
    let s = gossip.node().stats();
    let n = nic.stats();
    hprintln!("gossip node {} on mps2-an386: LAN9118, smoltcp", me);
    hprintln!(
        "node{}: saw node{} with its 8 states at {} ms",
        me,
        other,
        millis(complete)
    );
    hprintln!("node{}: saw node{} shut down: {}", me, other, peer_left);
    hprintln!(
        "node{}: datagrams_out={} bytes_out={} dropped={} frames_rx={} frames_tx={} frames_dropped={}",
        me,
        small(s.datagrams_out),
        small(s.bytes_out),
        small(s.dropped_total()),
        n.rx_frames,
        n.tx_frames,
        n.rx_dropped + n.tx_dropped
    );
    let ram = static_ram() + gossip_peak.max(construction_peak);
    hprintln!(
        "node{}: ram_total_bytes={} (static {}, stack peak {}; target: under {})",
        me,
        ram,
        static_ram(),
        gossip_peak.max(construction_peak),
        RAM_LIMIT
    );
    if ram >= RAM_LIMIT {
        return Err("RAM use reached 32 KiB");
    }
    Ok(())
}
