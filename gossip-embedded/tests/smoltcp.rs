//! Three nodes, each with its own smoltcp interface and UDP socket, joined by
//! the in-memory Ethernet switch, on a virtual clock: they converge, see a
//! state change, detect a stopped node and see it restart with a new
//! generation. The blocking (`embedded-nal`) variant. Every node also lists
//! a seed that never boots, whose datagrams would hold a socket's send
//! queue (smoltcp's head-of-line blocking): they go by the spare socket,
//! which is cleared, and never hold the main one.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers

use std::net::SocketAddr;
use std::time::Duration;

use embedded_nal::{UdpClientStack, UdpFullStack};
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

const N: usize = 3;
type G = Gossip<SmallStorage, Xoshiro256PlusPlus, 512>;
type Net = Switch<N, 600, 8>;

fn config() -> Config {
    let mut c = small_config(ClusterId::from_name("embedded-test"));
    c.gossip_interval = Duration::from_millis(100);
    c
}

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, 1 + i as u8], 7000))
}

struct Host<'a> {
    port: Port<'a, N, 600, 8>,
    iface: Interface,
    sockets: SocketSet<'static>,
    socket: UdpHandle,
    gossip: Option<G>,
}

fn leak<T>(t: T) -> &'static mut T {
    Box::leak(Box::new(t))
}

impl<'a> Host<'a> {
    fn new(switch: &'a Net, i: usize) -> Self {
        let mut port = Port::new(switch, i);
        let mut cfg =
            smoltcp::iface::Config::new(EthernetAddress([2, 0, 0, 0, 0, 1 + i as u8]).into());
        cfg.random_seed = i as u64;
        let mut iface = Interface::new(cfg, &mut port, smoltcp::time::Instant::ZERO);
        iface.update_ip_addrs(|a| {
            a.push(IpCidr::new(IpAddress::v4(10, 0, 0, 1 + i as u8), 24))
                .unwrap();
        });
        let mut sockets = SocketSet::new(&mut leak([SocketStorage::EMPTY; 2])[..]);
        let buffer = || {
            udp::PacketBuffer::new(
                &mut leak([udp::PacketMetadata::EMPTY; 8])[..],
                &mut leak([0u8; 4096])[..],
            )
        };
        let main = sockets.add(udp::Socket::new(buffer(), buffer()));
        let spare = sockets.add(udp::Socket::new(
            udp::PacketBuffer::new(&mut [][..], &mut [][..]),
            buffer(),
        ));
        Host {
            port,
            iface,
            sockets,
            socket: UdpHandle::new(main, spare),
            gossip: None,
        }
    }

    fn start(&mut self, i: usize, generation: u64, now: Instant) {
        // Every node also lists a seed that never boots (no board answers
        // ARP for it): gossip to it must not hold the socket's send queue.
        let seeds = if i == 0 {
            vec![addr(8)]
        } else {
            vec![addr(0), addr(8)]
        };
        let rng = Xoshiro256PlusPlus::seed_from_u64(generation * 31 + i as u64);
        let node = Node::new(config(), addr(i), Generation(generation), &seeds, rng, now).unwrap();
        self.gossip = Some(Gossip::new(node).unwrap());
        let mut stack = SmoltcpStack::new(&mut self.iface, &mut self.port, &mut self.sockets, now);
        stack.bind(&mut self.socket, 7000).unwrap();
    }

    /// A new node with `generation` on the same interface (its socket
    /// reopened), as after a reboot.
    fn restart(&mut self, i: usize, generation: u64, now: Instant) {
        let mut stack = SmoltcpStack::new(&mut self.iface, &mut self.port, &mut self.sockets, now);
        let (main, spare) = self.socket.handles();
        let fresh = UdpHandle::new(main, spare);
        stack
            .close(std::mem::replace(&mut self.socket, fresh))
            .unwrap();
        self.start(i, generation, now);
    }

    fn poll(&mut self, now: Instant, events: &mut Vec<(SocketAddr, String)>) {
        let Some(g) = self.gossip.as_mut() else {
            return;
        };
        let mut stack = SmoltcpStack::new(&mut self.iface, &mut self.port, &mut self.sockets, now);
        g.poll(now, &mut stack, &mut self.socket);
        while let Some(e) = g.poll_event() {
            let what = match e {
                Event::Up { endpoint } => (endpoint, "up".to_string()),
                Event::Down { endpoint } => (endpoint, "down".to_string()),
                Event::Restarted {
                    endpoint,
                    generation,
                } => (endpoint, format!("restarted {}", generation.0)),
                Event::StateChanged {
                    endpoint,
                    key,
                    value,
                } => (
                    endpoint,
                    format!("{}={}", key, String::from_utf8_lossy(value.value)),
                ),
                _ => continue,
            };
            events.push(what);
        }
    }
}

/// Runs every host in 1 ms steps until `done` holds (at most `limit`);
/// how long it took, or `None`.
fn run_until(
    hosts: &mut [Host<'_>],
    now: &mut Instant,
    limit: Duration,
    events: &mut [Vec<(SocketAddr, String)>],
    done: impl Fn(&[Host<'_>], &[Vec<(SocketAddr, String)>]) -> bool,
) -> Option<Duration> {
    let start = *now;
    while *now < start + limit {
        for (h, ev) in hosts.iter_mut().zip(events.iter_mut()) {
            h.poll(*now, ev);
        }
        if done(hosts, events) {
            return Some(now.saturating_duration_since(start));
        }
        *now = *now + Duration::from_millis(1);
    }
    None
}

fn live(h: &Host<'_>) -> usize {
    h.gossip.as_ref().map_or(0, |g| g.node().live_count())
}

#[test]
fn three_smoltcp_nodes_converge_detect_a_stop_and_see_a_restart() {
    let switch = Net::new();
    let mut hosts: Vec<Host<'_>> = (0..N).map(|i| Host::new(&switch, i)).collect();
    let mut events = vec![Vec::new(); N];
    let mut now = Instant::ZERO;
    for (i, h) in hosts.iter_mut().enumerate() {
        h.start(i, 1_000, now);
    }

    let took = run_until(
        &mut hosts,
        &mut now,
        Duration::from_secs(10),
        &mut events,
        |hs, _| hs.iter().all(|h| live(h) == N - 1),
    )
    .expect("in time");
    println!("converged in {took:?}");

    // A state change on node 1 reaches the others.
    let g1 = hosts[1].gossip.as_mut().unwrap();
    g1.set_state(StateKey::parse("ROLE"), b"sensor").unwrap();
    let took = run_until(
        &mut hosts,
        &mut now,
        Duration::from_secs(10),
        &mut events,
        |_, ev| {
            [0, 2]
                .iter()
                .all(|&i| ev[i].contains(&(addr(1), "ROLE=sensor".into())))
        },
    )
    .expect("in time");
    println!("state change seen in {took:?}");

    // Node 2 stops (no word said, its port unplugged): 0 and 1 suspect it
    // when their probes fail, and mark it down when the suspicion ends.
    run_for(&mut hosts, &mut now, Duration::from_secs(10), &mut events);
    hosts[2].gossip = None;
    switch.set_plugged(2, false);
    let took = run_until(
        &mut hosts,
        &mut now,
        Duration::from_secs(30),
        &mut events,
        |_, ev| {
            [0, 1]
                .iter()
                .all(|&i| ev[i].contains(&(addr(2), "down".into())))
        },
    )
    .expect("in time");
    println!("stop detected in {took:?}");

    // Not before a probe and its indirect probes failed (three probe
    // timeouts) and the shortest suspicion passed.
    let c = config();
    let least = c.probe_timeout() * 3 + c.gossip_interval.mul_f64(c.suspicion_mult);
    assert!(took >= least, "down after {took:?}, before {least:?}");

    // Node 2 restarts with a higher generation: both see it, up again.
    switch.set_plugged(2, true);
    hosts[2].restart(2, 1_001, now);
    let took = run_until(
        &mut hosts,
        &mut now,
        Duration::from_secs(10),
        &mut events,
        |hs, ev| {
            [0, 1].iter().all(|&i| {
                ev[i].contains(&(addr(2), "restarted 1001".into())) && live(&hs[i]) == N - 1
            })
        },
    )
    .expect("in time");
    println!("restart seen in {took:?}");
    let seen = hosts[0]
        .gossip
        .as_ref()
        .unwrap()
        .node()
        .endpoint(&addr(2))
        .unwrap();
    assert_eq!(seen.state().generation(), Generation(1_001));
    for h in &hosts[..2] {
        let (main, spare) = h.socket.stats();
        println!("main {main:?}, spare {spare:?}");
        // The dead seed is never fresh: it holds the spare socket only.
        assert!(spare.cleared > 0, "the dead seed never held the queue");
        assert_eq!(main.cleared, 0, "the main socket was held");
    }
}

fn run_for(
    hosts: &mut [Host<'_>],
    now: &mut Instant,
    d: Duration,
    events: &mut [Vec<(SocketAddr, String)>],
) {
    assert_eq!(run_until(hosts, now, d, events, |_, _| false), None);
}
