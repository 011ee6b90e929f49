//! Two no-allocator nodes on the host, each with its own smoltcp interface
//! and UDP socket, joined by the in-memory Ethernet switch and driven by a
//! virtual clock: the second joins through the first (its seed), publishes
//! a state, and both print their membership events. What a firmware's main
//! loop does, with the board's Ethernet driver in place of the switch.
//!
//! ```sh
//! cargo run -p gossip-embedded --example switch
//! ```

use core::net::SocketAddr;
use core::time::Duration;

use embedded_nal::UdpFullStack;
use gossip_embedded::gossip_core::rand_core::SeedableRng;
use gossip_embedded::gossip_core::state::{Generation, StateKey};
use gossip_embedded::gossip_core::wire::ClusterId;
use gossip_embedded::gossip_core::{Instant, Node};
use gossip_embedded::net::{Port, SmoltcpStack, Switch, UdpHandle};
use gossip_embedded::{Gossip, SmallStorage, small_config};
use rand_xoshiro::Xoshiro128PlusPlus;
use smoltcp::iface::{Interface, SocketSet, SocketStorage};
use smoltcp::socket::udp;
use smoltcp::wire::{EthernetAddress, IpAddress, IpCidr};

/// Two ports, frames up to 600 bytes, 8 frames queued per port.
type Net = Switch<2, 600, 8>;

fn addr(i: u8) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, 1 + i], 7000))
}

/// One board: its port on the switch, its interface, its socket and node.
struct Board<'a> {
    port: Port<'a, 2, 600, 8>,
    iface: Interface,
    sockets: SocketSet<'static>,
    socket: UdpHandle,
    gossip: Gossip<SmallStorage, Xoshiro128PlusPlus, 512>,
}

/// Static buffers, as a firmware would declare them (leaked on the host).
fn leak<T>(t: T) -> &'static mut T {
    Box::leak(Box::new(t))
}

impl<'a> Board<'a> {
    fn new(
        switch: &'a Net,
        i: u8,
        seeds: &[SocketAddr],
    ) -> Result<Self, Box<dyn std::error::Error>> {
        let mut port = Port::new(switch, usize::from(i));
        let mut cfg = smoltcp::iface::Config::new(EthernetAddress([2, 0, 0, 0, 0, 1 + i]).into());
        cfg.random_seed = u64::from(i);
        let mut iface = Interface::new(cfg, &mut port, smoltcp::time::Instant::ZERO);
        iface.update_ip_addrs(|a| {
            let _ = a.push(IpCidr::new(IpAddress::v4(10, 0, 0, 1 + i), 24));
        });
        let mut sockets = SocketSet::new(&mut leak([SocketStorage::EMPTY; 2])[..]);
        let buffer = || {
            udp::PacketBuffer::new(
                &mut leak([udp::PacketMetadata::EMPTY; 8])[..],
                &mut leak([0u8; 4096])[..],
            )
        };
        // The main socket receives (added first); the spare one only sends,
        // to destinations not heard from lately.
        let main = sockets.add(udp::Socket::new(buffer(), buffer()));
        let spare = sockets.add(udp::Socket::new(
            udp::PacketBuffer::new(&mut [][..], &mut [][..]),
            buffer(),
        ));
        let mut socket = UdpHandle::new(main, spare);
        let mut config = small_config(ClusterId::from_name("example"));
        config.gossip_interval = Duration::from_millis(200);
        // A board without a clock keeps a boot counter for its generation.
        let generation = Generation(1);
        let rng = Xoshiro128PlusPlus::seed_from_u64(u64::from(i) + 1);
        let node = Node::new(config, addr(i), generation, seeds, rng, Instant::ZERO)?;
        let gossip = Gossip::new(node).map_err(|e| format!("{e:?}"))?;
        let mut stack = SmoltcpStack::new(&mut iface, &mut port, &mut sockets, Instant::ZERO);
        stack
            .bind(&mut socket, 7000)
            .map_err(|e| format!("bind: {e:?}"))?;
        Ok(Board {
            port,
            iface,
            sockets,
            socket,
            gossip,
        })
    }

    /// One turn of the main loop: receive, run due timers, send, report.
    fn poll(&mut self, name: &str, now: Instant) {
        let mut stack = SmoltcpStack::new(&mut self.iface, &mut self.port, &mut self.sockets, now);
        self.gossip.poll(now, &mut stack, &mut self.socket);
        while let Some(event) = self.gossip.poll_event() {
            println!("{:>6.1} s  {name}: {event:?}", now.as_micros() as f64 / 1e6);
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let switch = Net::new();
    let mut seed = Board::new(&switch, 0, &[])?;
    let mut member = Board::new(&switch, 1, &[addr(0)])?;
    member
        .gossip
        .set_state(StateKey::parse("ROLE"), b"sensor")
        .map_err(|e| format!("{e:?}"))?;
    // Five virtual seconds in 1 ms steps.
    let mut now = Instant::ZERO;
    for _ in 0..5_000 {
        seed.poll("seed  ", now);
        member.poll("member", now);
        now = now + Duration::from_millis(1);
    }
    println!(
        "the seed knows {} live member(s), the member {}",
        seed.gossip.node().live_count(),
        member.gossip.node().live_count()
    );
    Ok(())
}
