#![no_std]
#![forbid(unsafe_code)]
//! Runs one [`gossip_core::Node`] on an embedded UDP stack, with no `std`
//! and no allocator.
//!
//! [`Gossip`] owns a node (with [`gossip_core::FixedStorage`]: every
//! capacity chosen at compile time) and one datagram buffer, and runs the
//! core's drain rule over either kind of embedded network stack:
//!
//! - **blocking** ([`Gossip::poll`]), over `embedded-nal`'s
//!   [`UdpFullStack`](embedded_nal::UdpFullStack): call it from the main
//!   loop whenever something may have happened (a frame arrived, a deadline
//!   passed); it never blocks;
//! - **async** ([`Gossip::step`]), over `embedded-nal-async`'s
//!   [`UnconnectedUdp`](embedded_nal_async::UnconnectedUdp) and a
//!   [`Timer`]: each call waits for a datagram or the next deadline, handles
//!   it and sends what the node asks.
//!
//! Both are the same protocol code as on servers: [`gossip_core::Node`], no
//! embedded-only fork. Between calls the application sets its states
//! ([`Gossip::set_state`]) and reads [`Event`]s ([`Gossip::poll_event`]).
//!
//! ```text
//! loop {
//!     iface.poll(..);                                   // the network stack
//!     let next = gossip.poll(clock.now(), &mut stack, &mut socket);
//!     while let Some(event) = gossip.poll_event() { .. }
//!     sleep until `next` or a frame arrives;
//! }
//! ```
//!
//! With the `smoltcp` feature, `net` has an `embedded-nal` stack over a
//! smoltcp interface and an in-memory Ethernet switch (a smoltcp `Device`)
//! for running several nodes in one program, as the tests and the QEMU
//! firmware do. With `embassy-time`, `EmbassyTime` is a [`Clock`] and a
//! [`Timer`]. With `embassy-net`, `Gossip::step_embassy` runs the async
//! variant on embassy-net UDP sockets (module `embassy`, with an example
//! task). With `defmt`, drops and membership events are logged.
//!
//! smoltcp, under both `net` and `embassy`, learns neighbors from ARP only
//! and one a second, and a UDP socket whose first datagram waits for a
//! neighbor sends nothing: both glues take two sockets (a spare one for
//! destinations silent lately, such as dead boards) and clear a stuck
//! queue (`QueueStats`); [`arp::Gleaner`] lets an Ethernet driver keep
//! the neighbor cache filled from the traffic itself. The crate's README
//! says why in full.
//!
//! Time is the core's [`Instant`]: microseconds from any origin the
//! [`Clock`] picks (boot, say).

use core::future::Future;
use core::net::SocketAddr;
use core::pin::pin;
use core::task::Poll;

use gossip_core::Storage;
use gossip_core::state::{MergeError, StateKey, Version};
use gossip_core::wire::ClusterId;
use gossip_core::{Config, Event, FixedStorage, Instant, Node};
use rand_core::Rng;

pub mod arp;
#[cfg(feature = "embassy-net")]
pub mod embassy;
#[cfg(any(feature = "smoltcp", feature = "embassy-net"))]
mod hol;
#[cfg(any(feature = "smoltcp", feature = "embassy-net"))]
pub use hol::{FRESH_FOR, QueueStats, SHUN_FIRST, SHUN_MAX, STUCK_AFTER};
#[cfg(feature = "smoltcp")]
pub mod net;

pub use gossip_core;

/// Where to record an entry in a small fixed table: the slot `mine`
/// recognises, or a free one, or the one `staleness` ranks highest.
fn pick_slot<T: Copy>(
    slots: &[Option<T>],
    mine: impl Fn(&T) -> bool,
    staleness: impl Fn(&T) -> u32,
) -> Option<usize> {
    slots
        .iter()
        .position(|s| s.as_ref().is_some_and(&mine))
        .or_else(|| slots.iter().position(Option::is_none))
        .or_else(|| {
            let ranks = slots
                .iter()
                .map(|s| s.as_ref().map_or(u32::MAX, &staleness));
            ranks.enumerate().max_by_key(|&(_, r)| r).map(|(i, _)| i)
        })
}

/// A [`FixedStorage`] sized for microcontrollers: 16 peers, each with up to
/// 8 application states of up to 32-byte values (user key names up to 16
/// bytes), 512-byte datagrams, 2 pending replies. Use it with
/// [`small_config`]; about 15 KB per node on a Cortex-M.
pub type SmallStorage = FixedStorage<16, 488, 512, 2>;

/// A configuration [`SmallStorage`] holds: [`Config::lan`] with 512-byte
/// datagrams, 16 peers, 2 pending replies, and limits of 8 keys per
/// endpoint, 16-byte key names and 32-byte values.
pub fn small_config(cluster: ClusterId) -> Config {
    let mut c = Config::lan(cluster);
    c.max_datagram_size = 512;
    c.max_peers = 16;
    c.max_pending_replies = 2;
    c.limits.max_keys_per_endpoint = 8;
    c.limits.max_key_len = 16;
    c.limits.max_value_len = 32;
    c
}

/// The board's monotonic clock.
pub trait Clock {
    /// Now, in the core's time (microseconds from the clock's origin).
    fn now(&self) -> Instant;
}

/// Waits for a deadline (async variant only).
pub trait Timer {
    /// Completes at `deadline` (at once if it has passed).
    fn at(&mut self, deadline: Instant) -> impl Future<Output = ()>;
}

/// Counters of what the binding itself dropped (the node counts its own
/// drops in [`Node::stats`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BindingStats {
    /// Datagrams the stack would not take (buffer full, unroutable, IPv6 on
    /// an IPv4-only stack, ...): gossip tolerates loss, so they are dropped.
    pub send_failures: u32,
    /// Receive errors reported by the stack (not "nothing to receive").
    pub receive_errors: u32,
}

/// Datagrams handled per [`Gossip::poll`] at most, so a flood cannot keep
/// the main loop from its other work; the rest wait in the stack.
pub const RECEIVE_BURST: usize = 8;

/// One gossip node and its datagram buffer of `MTU` bytes (at least the
/// configuration's `max_datagram_size`; larger received datagrams are
/// truncated by the stack and then dropped as malformed).
pub struct Gossip<S: Storage, R: Rng, const MTU: usize> {
    node: Node<S, R>,
    buf: [u8; MTU],
    /// A datagram of the async variant still in `buf`, its destination and
    /// size: the step sending it was dropped before the socket took it.
    unsent: Option<(SocketAddr, usize)>,
    stats: BindingStats,
}

/// Why a [`Gossip`] was not made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// `MTU` is smaller than the configuration's `max_datagram_size`.
    BufferTooSmall {
        /// The buffer's size.
        mtu: usize,
        /// What the configuration needs.
        needed: usize,
    },
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Error::BufferTooSmall { mtu, needed } => write!(
                f,
                "datagram buffer of {mtu} bytes, the configuration needs {needed}"
            ),
        }
    }
}

impl core::error::Error for Error {}

impl<S: Storage, R: Rng, const MTU: usize> Gossip<S, R, MTU> {
    /// Wraps `node` (made with [`Node::new`], its seeds and first states
    /// set).
    pub fn new(node: Node<S, R>) -> Result<Self, Error> {
        let needed = node.config().max_datagram_size;
        if MTU < needed {
            return Err(Error::BufferTooSmall { mtu: MTU, needed });
        }
        Ok(Self {
            node,
            buf: [0; MTU],
            unsent: None,
            stats: BindingStats::default(),
        })
    }

    /// The node.
    pub fn node(&self) -> &Node<S, R> {
        &self.node
    }

    /// The node, for commands the binding does not wrap.
    pub fn node_mut(&mut self) -> &mut Node<S, R> {
        &mut self.node
    }

    /// What the binding dropped.
    pub fn stats(&self) -> BindingStats {
        self.stats
    }

    /// Sets one of the node's application states; it spreads from the next
    /// round.
    pub fn set_state(&mut self, key: StateKey<'_>, value: &[u8]) -> Result<Version, MergeError> {
        self.node.set_local_state(key, value)
    }

    /// Leaves gracefully: the next [`poll`](Self::poll) or
    /// [`step`](Self::step) sends the SHUTDOWN notices, after which
    /// [`Node::is_shut_down`] is true.
    pub fn shutdown(&mut self, now: Instant) {
        self.node.shutdown(now);
    }

    /// The next membership event, if any (drain after every poll or step).
    pub fn poll_event(&mut self) -> Option<Event<'_>> {
        let event = self.node.poll_event();
        #[cfg(feature = "defmt")]
        if let Some(e) = &event {
            log_event(e);
        }
        event
    }

    /// The blocking variant: handles up to [`RECEIVE_BURST`] datagrams
    /// waiting in `socket`, each followed by what the node then sends (its
    /// reply: a burst of SYNs never overflows the short reply queue), then
    /// the deadline if it is due, and sends what that asks. Never blocks: a datagram the stack cannot take now is
    /// dropped and counted. Returns the next deadline (`None`: only a
    /// datagram can wake the node, or it has shut down); `now` when it
    /// stopped at [`RECEIVE_BURST`] datagrams and more may be waiting.
    pub fn poll<U: embedded_nal::UdpFullStack>(
        &mut self,
        now: Instant,
        stack: &mut U,
        socket: &mut U::UdpSocket,
    ) -> Option<Instant> {
        let mut burst = 0;
        for _ in 0..RECEIVE_BURST {
            match stack.receive(socket, &mut self.buf) {
                Ok((n, from)) => {
                    self.received(now, from, n);
                    // The drain rule, per datagram: its reply goes out before
                    // the next is handled (the reply queue is short on a
                    // microcontroller) and before a status check runs.
                    self.send_all(now, stack, socket);
                    burst += 1;
                }
                Err(nb::Error::WouldBlock) => break,
                Err(nb::Error::Other(_)) => {
                    self.stats.receive_errors = self.stats.receive_errors.saturating_add(1);
                    break;
                }
            }
        }
        self.due(now);
        self.send_all(now, stack, socket);
        if burst == RECEIVE_BURST && !self.node.is_shut_down() {
            // More may be waiting in the stack, and no new frame need come
            // to wake the caller: ask to be called again now.
            return Some(now);
        }
        self.node.poll_timeout()
    }

    /// The async variant: waits for the first of a datagram on `socket` and
    /// the node's next deadline (not when shutting down: the notices go out
    /// at once), handles it, then sends what the node asks.
    /// Call it in a loop until [`Node::is_shut_down`]; between calls, read
    /// events and set states. Send
    /// failures are dropped and counted; a receive error is returned (the
    /// node is unchanged and the next call goes on).
    ///
    /// **Cancel-safe** (when `socket`'s `receive_into` takes a datagram only
    /// when it returns it, and its `send` queues only when it returns, as
    /// embassy-net's do): the future may be dropped at any await, in a `select` with the
    /// application's own work, say. Dropped while waiting, nothing was
    /// taken; dropped while sending, the datagram stays in the buffer and
    /// goes out first in the next step, and the ones after it are still in
    /// the node. Nothing is lost and the node is never left half-updated.
    pub async fn step<U, C, T>(
        &mut self,
        socket: &mut U,
        clock: &C,
        timer: &mut T,
    ) -> Result<(), U::Error>
    where
        U: embedded_nal_async::UnconnectedUdp,
        C: Clock,
        T: Timer,
    {
        let local = self.node.local_addr();
        // What a dropped step left unsent goes first: `buf` still holds it.
        if let Some((to, size)) = self.unsent {
            let result = socket
                .send(local, to, self.buf.get(..size).unwrap_or(&[]))
                .await;
            self.sent(result.is_ok());
        }
        let deadline = self.node.poll_timeout();
        // Leaving: the SHUTDOWN notices go out now, without waiting.
        let received = if self.node.is_shutting_down() {
            None
        } else {
            let mut receive = pin!(socket.receive_into(&mut self.buf));
            let mut wait = pin!(async {
                match deadline {
                    Some(at) => timer.at(at).await,
                    None => core::future::pending().await,
                }
            });
            core::future::poll_fn(|cx| {
                if wait.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(None);
                }
                receive.as_mut().poll(cx).map(Some)
            })
            .await
        };
        let now = clock.now();
        match received {
            Some(Ok((n, _local, from))) => self.received(now, from, n),
            Some(Err(e)) => {
                self.stats.receive_errors = self.stats.receive_errors.saturating_add(1);
                return Err(e);
            }
            None => {}
        }
        self.due(now);
        while let Some(t) = self.node.poll_transmit(now, &mut self.buf) {
            // Marked before the await, cleared after: a step dropped at the
            // send leaves the datagram for the next one.
            self.unsent = Some((t.destination, t.size));
            let bytes = self.buf.get(..t.size).unwrap_or(&[]);
            let result = socket.send(local, t.destination, bytes).await;
            self.sent(result.is_ok());
        }
        Ok(())
    }

    /// The unsent datagram has been handed to the socket (or refused by it:
    /// dropped and counted).
    fn sent(&mut self, ok: bool) {
        self.unsent = None;
        if !ok {
            self.stats.send_failures = self.stats.send_failures.saturating_add(1);
        }
    }

    fn received(&mut self, now: Instant, from: SocketAddr, n: usize) {
        let datagram = self.buf.get(..n).unwrap_or(&[]);
        #[cfg(feature = "defmt")]
        let before = self.node.stats().dropped_total();
        self.node.handle_datagram(now, from, datagram);
        #[cfg(feature = "defmt")]
        if self.node.stats().dropped_total() > before
            && let Some(reason) = self.node.stats().last_drop
        {
            defmt::debug!("gossip: datagram dropped: {}", reason.name());
        }
    }

    /// Sends everything the node has to send now (blocking variant).
    fn send_all<U: embedded_nal::UdpFullStack>(
        &mut self,
        now: Instant,
        stack: &mut U,
        socket: &mut U::UdpSocket,
    ) {
        while let Some(t) = self.node.poll_transmit(now, &mut self.buf) {
            let bytes = self.buf.get(..t.size).unwrap_or(&[]);
            if stack.send_to(socket, t.destination, bytes).is_err() {
                self.stats.send_failures = self.stats.send_failures.saturating_add(1);
            }
        }
    }

    fn due(&mut self, now: Instant) {
        if self.node.poll_timeout().is_some_and(|t| t <= now) {
            self.node.handle_timeout(now);
        }
    }
}

#[cfg(feature = "defmt")]
fn log_event(e: &Event<'_>) {
    use defmt::Display2Format as D;
    match e {
        Event::Discovered { endpoint } => defmt::info!("gossip: discovered {}", D(endpoint)),
        Event::Up { endpoint } => defmt::info!("gossip: up {}", D(endpoint)),
        Event::Suspect { endpoint } => defmt::info!("gossip: suspect {}", D(endpoint)),
        Event::Down { endpoint } => defmt::warn!("gossip: down {}", D(endpoint)),
        Event::Restarted {
            endpoint,
            generation,
        } => defmt::info!(
            "gossip: restarted {} generation {}",
            D(endpoint),
            generation.0
        ),
        Event::ShutDown { endpoint } => defmt::info!("gossip: shut down {}", D(endpoint)),
        Event::Removed { endpoint } => defmt::info!("gossip: removed {}", D(endpoint)),
        Event::StateChanged { endpoint, .. } => defmt::debug!("gossip: state of {}", D(endpoint)),
    }
}

/// [`Clock`] and [`Timer`] on embassy-time's global time driver.
#[cfg(feature = "embassy-time")]
#[derive(Clone, Copy, Debug, Default)]
pub struct EmbassyTime;

#[cfg(feature = "embassy-time")]
impl Clock for EmbassyTime {
    fn now(&self) -> Instant {
        Instant::from_micros(embassy_time::Instant::now().as_micros())
    }
}

#[cfg(feature = "embassy-time")]
impl Timer for EmbassyTime {
    fn at(&mut self, deadline: Instant) -> impl Future<Output = ()> {
        embassy_time::Timer::at(embassy_time::Instant::from_micros(deadline.as_micros()))
    }
}
