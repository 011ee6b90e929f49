//! embassy-net glue (feature `embassy-net`): a node on an
//! [`embassy_net::udp::UdpSocket`], timed by embassy-time.
//!
//! [`Gossip::step_embassy`] is [`Gossip::step`] with the socket wrapped in
//! [`EmbassyUdp`] (an `embedded-nal-async` `UnconnectedUdp`) and
//! [`EmbassyTime`] as the clock and timer: the same node and the same drain
//! rule as every other binding, no protocol code here. It is cancel-safe,
//! so it can sit in a `select` with the application's own work.
//!
//! [`EmbassyUdp`] also keeps the socket out of smoltcp's head-of-line
//! blocking: a datagram to a board that no longer answers ARP (a crashed
//! member, a seed that never booted) would otherwise hold the socket's whole
//! send queue. When the queue does not move for half a second it is
//! cleared and that destination is left alone for 30 s or until it is heard
//! from ([`EmbassyUdp::stats`] counts both).
//!
//! One task runs the node; another runs the embassy-net stack
//! (`Runner::run`), as in every embassy-net program. IPv4 only: a peer
//! with an IPv6 address is refused by the socket wrapper ([`UdpError::Ipv6`])
//! and counted as a send failure.
//!
//! ```no_run
//! use core::net::SocketAddr;
//! use embassy_net::Stack;
//! use embassy_net::udp::{PacketMetadata, UdpSocket};
//! use gossip_embedded::gossip_core::state::{Generation, StateKey};
//! use gossip_embedded::gossip_core::wire::ClusterId;
//! use gossip_embedded::gossip_core::{Event, Node};
//! use gossip_embedded::embassy::EmbassyUdp;
//! use gossip_embedded::{Clock, EmbassyTime, Gossip, SmallStorage, small_config};
//! use rand_core::SeedableRng;
//! use rand_xoshiro::Xoshiro256PlusPlus;
//!
//! /// The gossip task (spawn it with `#[embassy_executor::task]` beside the
//! /// stack's runner task): `me` is this board's address, `boot` a number
//! /// that grows with every boot (a counter kept in flash, say).
//! async fn gossip(stack: Stack<'static>, me: SocketAddr, seeds: &[SocketAddr], boot: u64) -> ! {
//!     stack.wait_config_up().await;
//!     let (mut rx_meta, mut rx) = ([PacketMetadata::EMPTY; 4], [0u8; 1024]);
//!     let (mut tx_meta, mut tx) = ([PacketMetadata::EMPTY; 4], [0u8; 1024]);
//!     let socket = UdpSocket::new(stack, &mut rx_meta, &mut rx, &mut tx_meta, &mut tx);
//!     let mut udp = EmbassyUdp::bind(socket, me.port()).unwrap();
//!
//!     let config = small_config(ClusterId::from_name("greenhouse"));
//!     let rng = Xoshiro256PlusPlus::seed_from_u64(boot ^ u64::from(me.port()));
//!     let node = Node::new(config, me, Generation(boot), seeds, rng, EmbassyTime.now()).unwrap();
//!     let mut gossip: Gossip<SmallStorage, _, 512> = Gossip::new(node).unwrap();
//!     gossip.set_state(StateKey::parse("role"), b"sensor").unwrap();
//!     loop {
//!         // A receive error (a datagram larger than the buffer) is dropped:
//!         // the next step goes on.
//!         let _ = gossip.step_embassy(&mut udp).await;
//!         while let Some(event) = gossip.poll_event() {
//!             if let Event::Down { endpoint } = event {
//!                 // react to a crashed peer
//!                 let _ = endpoint;
//!             }
//!         }
//!     }
//! }
//! ```

use core::future::Future;
use core::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use core::pin::pin;
use core::task::{Context, Waker};

use embassy_net::IpEndpoint;
use embassy_net::udp::{BindError, RecvError, SendError, UdpSocket};
use embedded_io_async::ErrorKind;
use gossip_core::Storage;
use rand_core::Rng;

pub use crate::hol::QueueStats;
use crate::hol::{HeadOfLine, STUCK_AFTER};
use crate::{Clock, EmbassyTime, Gossip};

/// An embassy-net UDP socket, bound, as an `embedded-nal-async`
/// [`UnconnectedUdp`](embedded_nal_async::UnconnectedUdp), with a watch on
/// its send queue (see the [module docs](self)). Its receive is
/// cancel-safe: embassy-net takes a datagram only when it hands it over.
pub struct EmbassyUdp<'d> {
    socket: UdpSocket<'d>,
    hol: HeadOfLine,
}

impl<'d> EmbassyUdp<'d> {
    /// Binds `socket` to `port` (the node's) and wraps it.
    pub fn bind(mut socket: UdpSocket<'d>, port: u16) -> Result<Self, BindError> {
        socket.bind(port)?;
        Ok(Self {
            socket,
            hol: HeadOfLine::default(),
        })
    }

    /// The socket.
    pub fn socket(&self) -> &UdpSocket<'d> {
        &self.socket
    }

    /// Times the send queue was cleared, and datagrams dropped because
    /// their destination held it.
    pub fn stats(&self) -> QueueStats {
        self.hol.stats()
    }

    /// Whether the send queue is empty now (never waits).
    fn queue_empty(&mut self) -> bool {
        let flushed = pin!(self.socket.flush());
        flushed
            .poll(&mut Context::from_waker(Waker::noop()))
            .is_ready()
    }

    /// Empties the socket's queues: closes it and binds it again.
    fn clear(&mut self) {
        let endpoint = self.socket.endpoint();
        self.socket.close();
        // Binding the endpoint it had cannot fail: the socket is closed.
        let _ = self.socket.bind(endpoint);
    }
}

/// What the embassy-net socket reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UdpError {
    /// A received datagram was larger than the buffer (it is dropped).
    Receive(RecvError),
    /// The socket refused a datagram.
    Send(SendError),
    /// A peer with an IPv6 address: the glue is IPv4 only.
    Ipv6,
}

impl core::fmt::Display for UdpError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            UdpError::Receive(e) => write!(f, "receive: {e:?}"),
            UdpError::Send(e) => write!(f, "send: {e:?}"),
            UdpError::Ipv6 => f.write_str("an IPv6 peer (IPv4 only)"),
        }
    }
}

impl core::error::Error for UdpError {}

impl embedded_io_async::Error for UdpError {
    fn kind(&self) -> ErrorKind {
        match self {
            UdpError::Receive(_) | UdpError::Send(SendError::PacketTooLarge) => {
                ErrorKind::OutOfMemory
            }
            UdpError::Send(SendError::NoRoute) => ErrorKind::AddrNotAvailable,
            UdpError::Send(SendError::SocketNotBound) => ErrorKind::NotConnected,
            UdpError::Ipv6 => ErrorKind::Unsupported,
        }
    }
}

impl embedded_nal_async::UnconnectedUdp for EmbassyUdp<'_> {
    type Error = UdpError;

    /// Queues the datagram, or drops it when its destination is shunned (a
    /// drop counted in [`EmbassyUdp::stats`], not an error). Waits while
    /// the queue is full, at most [`STUCK_AFTER`]: then the queue is
    /// cleared and its head's destination shunned.
    async fn send(
        &mut self,
        _local: SocketAddr,
        remote: SocketAddr,
        data: &[u8],
    ) -> Result<(), UdpError> {
        let SocketAddr::V4(v4) = remote else {
            return Err(UdpError::Ipv6);
        };
        let empty = self.queue_empty();
        let verdict = self.hol.before_send(EmbassyTime.now(), remote, empty);
        if verdict.clear {
            self.clear();
        }
        if !verdict.send {
            return Ok(());
        }
        let to = IpEndpoint::from(v4);
        let timeout = embassy_time::Duration::from_micros(STUCK_AFTER.as_micros() as u64);
        match embassy_time::with_timeout(timeout, self.socket.send_to(data, to)).await {
            Ok(sent) => sent.map_err(UdpError::Send),
            Err(embassy_time::TimeoutError) => {
                let now = EmbassyTime.now();
                self.hol.stuck(now);
                self.clear();
                // The queue is empty: this send does not wait.
                if self.hol.before_send(now, remote, true).send {
                    self.socket.send_to(data, to).await.map_err(UdpError::Send)
                } else {
                    Ok(())
                }
            }
        }
    }

    async fn receive_into(
        &mut self,
        buffer: &mut [u8],
    ) -> Result<(usize, SocketAddr, SocketAddr), UdpError> {
        let (n, meta) = self
            .socket
            .recv_from(buffer)
            .await
            .map_err(UdpError::Receive)?;
        let from = SocketAddr::from(meta.endpoint);
        self.hol.heard_from(from);
        let port = self.socket.endpoint().port;
        let local = match meta.local_address {
            Some(ip) => SocketAddr::new(ip.into(), port),
            None => SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port)),
        };
        Ok((n, local, from))
    }
}

impl<S: Storage, R: Rng, const MTU: usize> Gossip<S, R, MTU> {
    /// [`step`](Self::step) on an embassy-net socket with [`EmbassyTime`]:
    /// waits for a datagram or the next deadline, handles it and sends what
    /// the node asks. Call it in a loop until
    /// [`Node::is_shut_down`](gossip_core::Node::is_shut_down), reading
    /// events in between. Cancel-safe.
    pub async fn step_embassy(&mut self, socket: &mut EmbassyUdp<'_>) -> Result<(), UdpError> {
        self.step(socket, &EmbassyTime, &mut EmbassyTime).await
    }
}
