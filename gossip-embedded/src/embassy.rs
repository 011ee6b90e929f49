//! embassy-net glue (feature `embassy-net`): a node on an
//! [`embassy_net::udp::UdpSocket`], timed by embassy-time.
//!
//! [`Gossip::step_embassy`] is [`Gossip::step`] with the socket wrapped in
//! [`EmbassyUdp`] (an `embedded-nal-async` `UnconnectedUdp`) and
//! [`EmbassyTime`] as the clock and timer: the same node and the same drain
//! rule as every other binding, no protocol code here. It is cancel-safe,
//! so it can sit in a `select` with the application's own work.
//!
//! [`EmbassyUdp`] also keeps the node out of smoltcp's head-of-line
//! blocking: a datagram to a board that no longer answers ARP (a crashed
//! member, a seed that never booted) would otherwise hold the socket's whole
//! send queue, and smoltcp then keeps that socket silent for a second. It
//! takes two sockets on the node's port: datagrams to destinations heard
//! from in the last [`FRESH_FOR`](crate::FRESH_FOR) go by the main one, the
//! rest by a spare one, so a board that has been silent that long can only
//! hold the spare. A queue whose head has not moved for 50 ms (for a fresh
//! destination, a second more: smoltcp may be asking for another address)
//! is cleared, and a destination not fresh at its head is left alone for a
//! second (doubling each time it does it again, up to 32 s) or until it is
//! heard from ([`EmbassyUdp::stats`] counts both).
//!
//! One task runs the node; another runs the embassy-net stack
//! (`Runner::run`), as in every embassy-net program. IPv4 only: a peer
//! with an IPv6 address is refused by the socket wrapper ([`UdpError::Ipv6`])
//! and counted as a send failure.
//!
//! ```no_run
//! use core::net::SocketAddr;
//! use embassy_net::Stack;
//! use embassy_time::Duration;
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
//!     // The main socket receives (made first); the spare only sends.
//!     let (mut rx_meta, mut rx) = ([PacketMetadata::EMPTY; 4], [0u8; 1024]);
//!     let (mut tx_meta, mut tx) = ([PacketMetadata::EMPTY; 2], [0u8; 1024]);
//!     let main = UdpSocket::new(stack, &mut rx_meta, &mut rx, &mut tx_meta, &mut tx);
//!     let (mut spare_meta, mut spare_tx) = ([PacketMetadata::EMPTY; 1], [0u8; 512]);
//!     let spare = UdpSocket::new(stack, &mut [], &mut [], &mut spare_meta, &mut spare_tx);
//!     let mut udp = EmbassyUdp::bind(main, spare, me.port()).unwrap();
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
//!         if gossip.node().is_shut_down() {
//!             // Let the SHUTDOWN notices leave before powering down.
//!             let _ = embassy_time::with_timeout(Duration::from_millis(200), udp.flush()).await;
//!             // power down ...
//!         }
//!         while let Some(event) = gossip.poll_event() {
//!             if let Event::Down { endpoint } = event {
//!                 // react to a crashed peer
//!                 let _ = endpoint;
//!             }
//!         }
//!     }
//! }
//! ```

use core::future::{Future, poll_fn};
use core::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use core::pin::pin;
use core::task::{Context, Poll, Waker};

use embassy_net::IpEndpoint;
use embassy_net::udp::{BindError, RecvError, SendError, UdpSocket};
use embedded_io_async::ErrorKind;
use gossip_core::Storage;
use rand_core::Rng;

use crate::hol::{Lane, Lanes, QueueStats, patience};
use crate::{Clock, EmbassyTime, Gossip};

/// Two embassy-net UDP sockets bound to the node's port, as one
/// `embedded-nal-async`
/// [`UnconnectedUdp`](embedded_nal_async::UnconnectedUdp), each with a
/// watch on its send queue (see the [module docs](self)).
///
/// Datagrams to a destination heard from in the last [`FRESH_FOR`](crate::FRESH_FOR) go by
/// the *main* socket, which also receives everything; the others by the
/// *spare* one. A board that does not answer ARP (a dead member, a seed
/// that never booted) is never fresh, so it can only hold the spare
/// socket's queue, and smoltcp's one-second wait after a missing neighbor
/// never silences the node toward the living. Receiving is cancel-safe:
/// embassy-net takes a datagram only when it hands it over.
pub struct EmbassyUdp<'d> {
    lanes: Lanes<UdpSocket<'d>>,
}

impl<'d> EmbassyUdp<'d> {
    /// Binds both sockets to `port` (the node's) and wraps them. `main`
    /// must have been made first on the stack: embassy-net hands each
    /// datagram to the first socket bound to its port, and only `main`
    /// needs receive buffers (`spare` can have empty ones). Each needs a
    /// send buffer that holds a datagram of `max_datagram_size`.
    pub fn bind(
        mut main: UdpSocket<'d>,
        mut spare: UdpSocket<'d>,
        port: u16,
    ) -> Result<Self, BindError> {
        main.bind(port)?;
        spare.bind(port)?;
        Ok(Self {
            lanes: Lanes::new(main, spare),
        })
    }

    /// The main socket (the one that receives).
    pub fn socket(&self) -> &UdpSocket<'d> {
        &self.lanes.main.socket
    }

    /// Waits until both send queues are empty: after a graceful shutdown,
    /// before the board powers down or resets, so the SHUTDOWN notices
    /// leave. Bound it with a timeout (a queue held by a dead neighbor
    /// empties only when cleared).
    pub async fn flush(&mut self) {
        self.lanes.main.socket.flush().await;
        self.lanes.spare.socket.flush().await;
    }

    /// What each socket's watch counted: (main, spare).
    pub fn stats(&self) -> (QueueStats, QueueStats) {
        self.lanes.stats()
    }
}

impl Lane<UdpSocket<'_>> {
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

    /// Queues the datagram, or drops it (its destination is shunned).
    /// Waits while the queue is full, at most the patience of a head to
    /// such a destination ([`STUCK_AFTER`](crate::STUCK_AFTER), a second
    /// more for a fresh one); then, if the head itself has waited its
    /// patience, the queue is cleared (its destination shunned unless
    /// fresh) and the datagram queued, else the datagram is dropped.
    async fn send(
        &mut self,
        remote: SocketAddrV4,
        fresh: bool,
        data: &[u8],
    ) -> Result<(), UdpError> {
        let to = SocketAddr::V4(remote);
        let empty = self.queue_empty();
        let verdict = self.hol.before_send(EmbassyTime.now(), to, fresh, empty);
        if verdict.clear {
            self.clear();
        }
        if !verdict.send {
            return Ok(());
        }
        let endpoint = IpEndpoint::from(remote);
        let timeout = embassy_time::Duration::from_micros(patience(fresh).as_micros() as u64);
        match embassy_time::with_timeout(timeout, self.socket.send_to(data, endpoint)).await {
            Ok(sent) => sent.map_err(UdpError::Send),
            Err(embassy_time::TimeoutError) => {
                let verdict = self.hol.timed_out(EmbassyTime.now(), to);
                if verdict.clear {
                    self.clear();
                }
                if !verdict.send {
                    return Ok(());
                }
                // The queue is empty: this send does not wait for room.
                self.socket
                    .send_to(data, endpoint)
                    .await
                    .map_err(UdpError::Send)
            }
        }
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

    /// Queues the datagram on the main socket if its destination was heard
    /// from lately, else on the spare one; or drops it when its destination
    /// is shunned (counted in [`EmbassyUdp::stats`], not an error).
    async fn send(
        &mut self,
        _local: SocketAddr,
        remote: SocketAddr,
        data: &[u8],
    ) -> Result<(), UdpError> {
        let SocketAddr::V4(remote) = remote else {
            return Err(UdpError::Ipv6);
        };
        let (lane, fresh) = self.lanes.route(SocketAddr::V4(remote), EmbassyTime.now());
        lane.send(remote, fresh, data).await
    }

    async fn receive_into(
        &mut self,
        buffer: &mut [u8],
    ) -> Result<(usize, SocketAddr, SocketAddr), UdpError> {
        // The main socket receives everything; the spare is looked at too,
        // in case it was made first.
        let (main, spare) = (&self.lanes.main.socket, &self.lanes.spare.socket);
        let (n, meta) = poll_fn(|cx| match main.poll_recv_from(buffer, cx) {
            Poll::Pending => spare.poll_recv_from(buffer, cx),
            ready => ready,
        })
        .await
        .map_err(UdpError::Receive)?;
        let from = SocketAddr::from(meta.endpoint);
        self.lanes.heard_from(from, EmbassyTime.now());
        let port = self.lanes.main.socket.endpoint().port;
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
