//! smoltcp glue (feature `smoltcp`): an `embedded-nal` UDP stack over a
//! smoltcp interface, and an in-memory Ethernet switch for running several
//! interfaces in one program (tests, simulations, the QEMU firmware).
//!
//! ```text
//! let switch = Switch::<3, 600, 4>::new();
//! let mut port = Port::new(&switch, 0);            // a smoltcp Device
//! let mut iface = Interface::new(config, &mut port, now);
//! let main = sockets.add(udp_socket);         // receives; made first
//! let spare = sockets.add(spare_udp_socket);  // sends to the silent
//! let mut stack = SmoltcpStack::new(&mut iface, &mut port, &mut sockets, now);
//! let mut socket = UdpHandle::new(main, spare);
//! stack.bind(&mut socket, 7000)?;
//! gossip.poll(now, &mut stack, &mut socket);
//! ```

use core::cell::{Cell, RefCell};
use core::net::SocketAddr;

use smoltcp::iface::{Interface, SocketHandle, SocketSet};
use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::socket::AnySocket;
use smoltcp::socket::udp;
use smoltcp::time::Instant as NetInstant;
use smoltcp::wire::IpEndpoint;

use crate::QueueStats;
use crate::hol::Lanes;

/// What the smoltcp stack reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetError {
    /// An IPv6 address on this IPv4-only build.
    Unsupported,
    /// The socket could not be bound.
    Bind,
    /// No remote to send to: `connect` first, or use `send_to`.
    NotConnected,
    /// The datagram does not fit the socket's buffer, or cannot be routed.
    Send,
    /// The received datagram was larger than the buffer.
    Truncated,
    /// Sockets are made by the caller (they need buffers): use
    /// [`UdpHandle::new`].
    NoSocket,
}

/// The UDP "socket" of a [`SmoltcpStack`]: two smoltcp UDP sockets bound
/// to the node's port, the remote when connected, and a watch on each send
/// queue.
///
/// A datagram to a neighbor that does not answer ARP (a dead board, a seed
/// that never booted) would hold a smoltcp socket's whole send queue
/// (smoltcp's head-of-line blocking). So datagrams to destinations heard
/// from in the last [`FRESH_FOR`](crate::FRESH_FOR) go by the *main*
/// socket, which also receives everything, and the rest by the *spare* one:
/// a board silent that long can only hold the spare. A queue that has not
/// moved for
/// [`STUCK_AFTER`](crate::STUCK_AFTER) (a second more on the main socket:
/// smoltcp asks for one neighbor's address a second) is cleared and its
/// socket added to the set anew (smoltcp then stops waiting for that
/// neighbor); a destination not heard from lately is left alone for a
/// while ([`SHUN_FIRST`](crate::SHUN_FIRST), doubling up to
/// [`SHUN_MAX`](crate::SHUN_MAX)) or until heard from.
#[derive(Debug)]
pub struct UdpHandle {
    lanes: Lanes<SocketHandle>,
    remote: Option<SocketAddr>,
}

impl UdpHandle {
    /// The sockets added to the [`SocketSet`] under `main` (first: smoltcp
    /// hands each datagram to the first socket bound to its port; it needs
    /// the receive buffers) and `spare` (it only sends: empty receive
    /// buffers do). Each needs a send buffer that holds a datagram of
    /// `max_datagram_size`. Clearing a queue adds its socket to the set
    /// anew, in the first free slot: leave no free slot before `main`'s
    /// (remove no socket added before it), or `spare` could come first.
    pub fn new(main: SocketHandle, spare: SocketHandle) -> Self {
        Self {
            lanes: Lanes::new(main, spare),
            remote: None,
        }
    }

    /// The smoltcp sockets' handles, main and spare. They change when a
    /// send queue is cleared: the socket is added to the set anew.
    pub fn handles(&self) -> (SocketHandle, SocketHandle) {
        (self.lanes.main.socket, self.lanes.spare.socket)
    }

    /// What each socket's watch counted: (main, spare).
    pub fn stats(&self) -> (QueueStats, QueueStats) {
        self.lanes.stats()
    }
}

/// One smoltcp interface, its device and its sockets, as an `embedded-nal`
/// UDP stack. Each receive and send polls the interface, so frames move
/// without the caller polling it in between.
pub struct SmoltcpStack<'s, 'b, D: Device> {
    iface: &'s mut Interface,
    device: &'s mut D,
    sockets: &'s mut SocketSet<'b>,
    now: NetInstant,
    clock: gossip_core::Instant,
}

impl<'s, 'b, D: Device> SmoltcpStack<'s, 'b, D> {
    /// The stack at time `now` (the core's microseconds).
    pub fn new(
        iface: &'s mut Interface,
        device: &'s mut D,
        sockets: &'s mut SocketSet<'b>,
        now: gossip_core::Instant,
    ) -> Self {
        let clock = now;
        let now = NetInstant::from_micros(i64::try_from(now.as_micros()).unwrap_or(i64::MAX));
        Self {
            iface,
            device,
            sockets,
            now,
            clock,
        }
    }

    /// Lets the interface move frames now.
    pub fn poll_interface(&mut self) {
        self.iface.poll(self.now, self.device, self.sockets);
    }

    fn endpoint(addr: SocketAddr) -> Result<IpEndpoint, NetError> {
        match addr {
            SocketAddr::V4(v4) => Ok(IpEndpoint::from(v4)),
            SocketAddr::V6(_) => Err(NetError::Unsupported),
        }
    }

    fn send_slice(
        &mut self,
        socket: &mut UdpHandle,
        remote: SocketAddr,
        buf: &[u8],
    ) -> nb::Result<(), NetError> {
        let to = Self::endpoint(remote)?;
        let (lane, fresh) = socket.lanes.route(remote, self.clock);
        let empty = self.sockets.get::<udp::Socket>(lane.socket).send_queue() == 0;
        let verdict = lane.hol.before_send(self.clock, remote, fresh, empty);
        if verdict.clear {
            // Close and bind again (both queues are emptied), and add it to
            // the set anew: smoltcp forgets that it was waiting for the
            // missing neighbor, so the socket can send at once.
            let mut item = self.sockets.remove(lane.socket);
            let mut rebound = Ok(());
            if let Some(s) = udp::Socket::downcast_mut(&mut item) {
                let endpoint = s.endpoint();
                s.close();
                rebound = s.bind(endpoint);
            }
            // Back in the set first, whatever happens: the handle must stay
            // valid.
            lane.socket = self.sockets.add(item);
            rebound.map_err(|_| NetError::Bind)?;
        }
        if !verdict.send {
            // Shunned: dropped, counted in `UdpHandle::stats`.
            return Ok(());
        }
        let handle = lane.socket;
        match self
            .sockets
            .get_mut::<udp::Socket>(handle)
            .send_slice(buf, to)
        {
            Ok(()) => {}
            Err(udp::SendError::BufferFull) => {
                // Make room by letting the interface send, then retry once.
                self.poll_interface();
                self.sockets
                    .get_mut::<udp::Socket>(handle)
                    .send_slice(buf, to)
                    .map_err(|_| NetError::Send)?;
            }
            Err(udp::SendError::Unaddressable) => return Err(nb::Error::Other(NetError::Send)),
        }
        self.poll_interface();
        Ok(())
    }

    /// The next datagram waiting in `handle`'s socket.
    fn recv_from(
        &mut self,
        handle: SocketHandle,
        buffer: &mut [u8],
    ) -> nb::Result<(usize, SocketAddr), NetError> {
        match self
            .sockets
            .get_mut::<udp::Socket>(handle)
            .recv_slice(buffer)
        {
            Ok((n, meta)) => Ok((n, SocketAddr::from(meta.endpoint))),
            Err(udp::RecvError::Exhausted) => Err(nb::Error::WouldBlock),
            Err(udp::RecvError::Truncated) => Err(nb::Error::Other(NetError::Truncated)),
        }
    }
}

impl<D: Device> embedded_nal::UdpClientStack for SmoltcpStack<'_, '_, D> {
    type UdpSocket = UdpHandle;
    type Error = NetError;

    fn socket(&mut self) -> Result<UdpHandle, NetError> {
        Err(NetError::NoSocket)
    }

    fn connect(&mut self, socket: &mut UdpHandle, remote: SocketAddr) -> Result<(), NetError> {
        Self::endpoint(remote)?;
        socket.remote = Some(remote);
        Ok(())
    }

    fn send(&mut self, socket: &mut UdpHandle, buffer: &[u8]) -> nb::Result<(), NetError> {
        let remote = socket.remote.ok_or(NetError::NotConnected)?;
        self.send_slice(socket, remote, buffer)
    }

    fn receive(
        &mut self,
        socket: &mut UdpHandle,
        buffer: &mut [u8],
    ) -> nb::Result<(usize, SocketAddr), NetError> {
        if !self
            .sockets
            .get::<udp::Socket>(socket.lanes.main.socket)
            .can_recv()
        {
            self.poll_interface();
        }
        // The main socket receives everything; the spare is looked at too,
        // in case it was added first.
        let (main, spare) = socket.handles();
        let received = match self.recv_from(main, buffer) {
            Err(nb::Error::WouldBlock) => self.recv_from(spare, buffer),
            other => other,
        };
        if let Ok((_, from)) = received {
            socket.lanes.heard_from(from, self.clock);
        }
        received
    }

    fn close(&mut self, socket: UdpHandle) -> Result<(), NetError> {
        let (main, spare) = socket.handles();
        for handle in [main, spare] {
            self.sockets.get_mut::<udp::Socket>(handle).close();
        }
        Ok(())
    }
}

impl<D: Device> embedded_nal::UdpFullStack for SmoltcpStack<'_, '_, D> {
    fn bind(&mut self, socket: &mut UdpHandle, local_port: u16) -> Result<(), NetError> {
        let (main, spare) = socket.handles();
        for handle in [main, spare] {
            self.sockets
                .get_mut::<udp::Socket>(handle)
                .bind(local_port)
                .map_err(|_| NetError::Bind)?;
        }
        Ok(())
    }

    fn send_to(
        &mut self,
        socket: &mut UdpHandle,
        remote: SocketAddr,
        buffer: &[u8],
    ) -> nb::Result<(), NetError> {
        self.send_slice(socket, remote, buffer)
    }
}

/// An in-memory Ethernet switch of `PORTS` ports that floods every frame to
/// every other plugged port (interfaces drop frames not for them), each
/// port queueing up to `DEPTH` frames of up to `FRAME` bytes; a full queue
/// drops the frame, as a real switch would. No allocator, and frames are
/// written and read in place: a frame never sits on the stack (one
/// `FRAME`-byte transmit buffer is shared by the ports).
///
/// Shared by reference (`&Switch`) between its [`Port`]s; single-threaded.
pub struct Switch<const PORTS: usize, const FRAME: usize, const DEPTH: usize> {
    queues: [RefCell<FrameQueue<FRAME, DEPTH>>; PORTS],
    plugged: [Cell<bool>; PORTS],
    /// Where a port's interface writes the frame it sends, before it is
    /// copied to the other ports' queues.
    outgoing: RefCell<[u8; FRAME]>,
    dropped: Cell<u32>,
}

/// A ring of `DEPTH` frames of up to `FRAME` bytes.
struct FrameQueue<const FRAME: usize, const DEPTH: usize> {
    frames: [[u8; FRAME]; DEPTH],
    lens: [usize; DEPTH],
    head: usize,
    len: usize,
}

impl<const FRAME: usize, const DEPTH: usize> FrameQueue<FRAME, DEPTH> {
    const fn new() -> Self {
        Self {
            frames: [[0; FRAME]; DEPTH],
            lens: [0; DEPTH],
            head: 0,
            len: 0,
        }
    }

    fn front(&self) -> Option<&[u8]> {
        if self.len == 0 {
            return None;
        }
        let len = *self.lens.get(self.head)?;
        self.frames.get(self.head)?.get(..len)
    }

    fn pop_front(&mut self) {
        if self.len > 0 {
            self.head = (self.head + 1) % DEPTH;
            self.len -= 1;
        }
    }

    /// Appends a copy of `frame`; false when full or too large.
    fn push_back(&mut self, frame: &[u8]) -> bool {
        if self.len == DEPTH || frame.len() > FRAME {
            return false;
        }
        let tail = (self.head + self.len) % DEPTH;
        let (Some(slot), Some(len)) = (self.frames.get_mut(tail), self.lens.get_mut(tail)) else {
            return false;
        };
        if let Some(dst) = slot.get_mut(..frame.len()) {
            dst.copy_from_slice(frame);
        }
        *len = frame.len();
        self.len += 1;
        true
    }

    fn clear(&mut self) {
        self.len = 0;
    }
}

impl<const PORTS: usize, const FRAME: usize, const DEPTH: usize> Default
    for Switch<PORTS, FRAME, DEPTH>
{
    fn default() -> Self {
        Self::new()
    }
}

impl<const PORTS: usize, const FRAME: usize, const DEPTH: usize> Switch<PORTS, FRAME, DEPTH> {
    /// Every port plugged, every queue empty.
    pub const fn new() -> Self {
        Self {
            queues: [const { RefCell::new(FrameQueue::new()) }; PORTS],
            plugged: [const { Cell::new(true) }; PORTS],
            outgoing: RefCell::new([0; FRAME]),
            dropped: Cell::new(0),
        }
    }

    /// Plugs or unplugs port `i`: an unplugged port neither sends nor
    /// receives (its queue is emptied), as a stopped node's would.
    pub fn set_plugged(&self, i: usize, plugged: bool) {
        if let Some(p) = self.plugged.get(i) {
            p.set(plugged);
        }
        if let Some(Ok(mut q)) = self.queues.get(i).map(RefCell::try_borrow_mut) {
            q.clear();
        }
    }

    /// Frames dropped on full queues.
    pub fn dropped(&self) -> u32 {
        self.dropped.get()
    }

    fn is_plugged(&self, i: usize) -> bool {
        self.plugged.get(i).is_some_and(Cell::get)
    }

    fn drop_frame(&self) {
        self.dropped.set(self.dropped.get().saturating_add(1));
    }

    /// Copies `frame` to every other plugged port's queue.
    fn flood(&self, from: usize, frame: &[u8]) {
        if !self.is_plugged(from) {
            return;
        }
        for (i, queue) in self.queues.iter().enumerate() {
            if i == from || !self.is_plugged(i) {
                continue;
            }
            // A queue is borrowed only while its own port reads a frame,
            // and a port never floods to itself: the borrow succeeds.
            let queued = queue.try_borrow_mut().is_ok_and(|mut q| q.push_back(frame));
            if !queued {
                self.drop_frame();
            }
        }
    }
}

/// Port `index` of a [`Switch`]: a smoltcp [`Device`].
pub struct Port<'s, const PORTS: usize, const FRAME: usize, const DEPTH: usize> {
    switch: &'s Switch<PORTS, FRAME, DEPTH>,
    index: usize,
}

impl<'s, const PORTS: usize, const FRAME: usize, const DEPTH: usize> Port<'s, PORTS, FRAME, DEPTH> {
    /// Port `index` of `switch`.
    pub fn new(switch: &'s Switch<PORTS, FRAME, DEPTH>, index: usize) -> Self {
        Self { switch, index }
    }
}

/// The frame at the head of a port's queue, read in place.
pub struct RxFrame<'s, const PORTS: usize, const FRAME: usize, const DEPTH: usize> {
    switch: &'s Switch<PORTS, FRAME, DEPTH>,
    index: usize,
}

/// Room for one frame to send.
pub struct TxFrame<'s, const PORTS: usize, const FRAME: usize, const DEPTH: usize> {
    switch: &'s Switch<PORTS, FRAME, DEPTH>,
    index: usize,
}

impl<const PORTS: usize, const FRAME: usize, const DEPTH: usize> phy::RxToken
    for RxFrame<'_, PORTS, FRAME, DEPTH>
{
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        let Some(cell) = self.switch.queues.get(self.index) else {
            return f(&[]);
        };
        let r = match cell.try_borrow() {
            Ok(queue) => f(queue.front().unwrap_or(&[])),
            Err(_) => f(&[]),
        };
        if let Ok(mut queue) = cell.try_borrow_mut() {
            queue.pop_front();
        }
        r
    }
}

impl<const PORTS: usize, const FRAME: usize, const DEPTH: usize> phy::TxToken
    for TxFrame<'_, PORTS, FRAME, DEPTH>
{
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        // smoltcp never asks for more than the MTU the port reports (FRAME).
        let len = len.min(FRAME);
        let Ok(mut frame) = self.switch.outgoing.try_borrow_mut() else {
            // Only if an interface sent while another was sending: drop it.
            self.switch.drop_frame();
            let mut none = [0u8; 0];
            return f(&mut none);
        };
        let frame = frame.get_mut(..len).unwrap_or(&mut []);
        let r = f(frame);
        self.switch.flood(self.index, frame);
        r
    }
}

impl<const PORTS: usize, const FRAME: usize, const DEPTH: usize> Device
    for Port<'_, PORTS, FRAME, DEPTH>
{
    type RxToken<'a>
        = RxFrame<'a, PORTS, FRAME, DEPTH>
    where
        Self: 'a;
    type TxToken<'a>
        = TxFrame<'a, PORTS, FRAME, DEPTH>
    where
        Self: 'a;

    fn receive(&mut self, _: NetInstant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let queue = self.switch.queues.get(self.index)?.try_borrow().ok()?;
        queue.front()?;
        Some((
            RxFrame {
                switch: self.switch,
                index: self.index,
            },
            TxFrame {
                switch: self.switch,
                index: self.index,
            },
        ))
    }

    fn transmit(&mut self, _: NetInstant) -> Option<Self::TxToken<'_>> {
        Some(TxFrame {
            switch: self.switch,
            index: self.index,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = FRAME;
        caps
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use phy::{RxToken, TxToken};

    type Net = Switch<3, 64, 2>;

    fn send(port: &mut Port<'_, 3, 64, 2>, frame: &[u8]) {
        let tx = port.transmit(NetInstant::ZERO);
        tx.into_iter()
            .for_each(|t| t.consume(frame.len(), |buf| buf.copy_from_slice(frame)));
    }

    fn recv(port: &mut Port<'_, 3, 64, 2>) -> Option<std::vec::Vec<u8>> {
        let (rx, _tx) = port.receive(NetInstant::ZERO)?;
        Some(rx.consume(|frame| frame.to_vec()))
    }

    #[test]
    fn the_switch_floods_queues_drops_when_full_and_unplugs() {
        let switch = Net::new();
        let mut p: std::vec::Vec<_> = (0..3).map(|i| Port::new(&switch, i)).collect();
        send(&mut p[0], b"first");
        send(&mut p[0], b"second");
        send(&mut p[0], b"third"); // ports 1 and 2 hold 2 frames: dropped twice
        assert_eq!(switch.dropped(), 2);
        assert_eq!(recv(&mut p[0]), None, "a port never hears itself");
        assert_eq!(recv(&mut p[1]).as_deref(), Some(&b"first"[..]));
        assert_eq!(recv(&mut p[1]).as_deref(), Some(&b"second"[..]));
        assert_eq!(recv(&mut p[1]), None);

        switch.set_plugged(2, false);
        assert_eq!(recv(&mut p[2]), None, "unplugging empties the queue");
        send(&mut p[1], b"to zero only");
        send(&mut p[2], b"from an unplugged port");
        assert_eq!(recv(&mut p[0]).as_deref(), Some(&b"to zero only"[..]));
        assert_eq!(recv(&mut p[0]), None);
        assert_eq!(switch.dropped(), 2);

        switch.set_plugged(2, true);
        send(&mut p[0], b"back");
        assert_eq!(recv(&mut p[2]).as_deref(), Some(&b"back"[..]));
        // The queue's ring wraps around.
        for round in 0..5u8 {
            send(&mut p[1], &[round; 10]);
            assert_eq!(recv(&mut p[2]), Some(std::vec![round; 10]));
        }
    }
}
