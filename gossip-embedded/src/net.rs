//! smoltcp glue (feature `smoltcp`): an `embedded-nal` UDP stack over a
//! smoltcp interface, and an in-memory Ethernet switch for running several
//! interfaces in one program (tests, simulations, the QEMU firmware).
//!
//! ```text
//! let switch = RefCell::new(Switch::<3, 600, 4>::new());
//! let mut port = Port::new(&switch, 0);            // a smoltcp Device
//! let mut iface = Interface::new(config, &mut port, now);
//! let handle = sockets.add(udp_socket);
//! let mut stack = SmoltcpStack::new(&mut iface, &mut port, &mut sockets, now);
//! let mut socket = UdpHandle::new(handle);
//! stack.bind(&mut socket, 7000)?;
//! gossip.poll(now, &mut stack, &mut socket);
//! ```

use core::cell::RefCell;
use core::net::SocketAddr;

use heapless::Deque;
use smoltcp::iface::{Interface, SocketHandle, SocketSet};
use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::socket::udp;
use smoltcp::time::Instant as NetInstant;
use smoltcp::wire::IpEndpoint;

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

/// A UDP socket of a [`SmoltcpStack`]: the smoltcp handle and, when
/// connected, the remote.
#[derive(Clone, Copy, Debug)]
pub struct UdpHandle {
    handle: SocketHandle,
    remote: Option<SocketAddr>,
}

impl UdpHandle {
    /// The socket added to the [`SocketSet`] under `handle`.
    pub fn new(handle: SocketHandle) -> Self {
        Self {
            handle,
            remote: None,
        }
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
}

impl<'s, 'b, D: Device> SmoltcpStack<'s, 'b, D> {
    /// The stack at time `now` (the core's microseconds).
    pub fn new(
        iface: &'s mut Interface,
        device: &'s mut D,
        sockets: &'s mut SocketSet<'b>,
        now: gossip_core::Instant,
    ) -> Self {
        let now = NetInstant::from_micros(i64::try_from(now.as_micros()).unwrap_or(i64::MAX));
        Self {
            iface,
            device,
            sockets,
            now,
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
        socket: &UdpHandle,
        remote: SocketAddr,
        buf: &[u8],
    ) -> nb::Result<(), NetError> {
        let to = Self::endpoint(remote)?;
        let s = self.sockets.get_mut::<udp::Socket>(socket.handle);
        match s.send_slice(buf, to) {
            Ok(()) => {}
            Err(udp::SendError::BufferFull) => {
                // Make room by letting the interface send, then retry once.
                self.poll_interface();
                self.sockets
                    .get_mut::<udp::Socket>(socket.handle)
                    .send_slice(buf, to)
                    .map_err(|_| NetError::Send)?;
            }
            Err(udp::SendError::Unaddressable) => return Err(nb::Error::Other(NetError::Send)),
        }
        self.poll_interface();
        Ok(())
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
        let s = self.sockets.get_mut::<udp::Socket>(socket.handle);
        if !s.can_recv() {
            self.poll_interface();
        }
        let s = self.sockets.get_mut::<udp::Socket>(socket.handle);
        match s.recv_slice(buffer) {
            Ok((n, meta)) => Ok((n, SocketAddr::from(meta.endpoint))),
            Err(udp::RecvError::Exhausted) => Err(nb::Error::WouldBlock),
            Err(udp::RecvError::Truncated) => Err(nb::Error::Other(NetError::Truncated)),
        }
    }

    fn close(&mut self, socket: UdpHandle) -> Result<(), NetError> {
        self.sockets.get_mut::<udp::Socket>(socket.handle).close();
        Ok(())
    }
}

impl<D: Device> embedded_nal::UdpFullStack for SmoltcpStack<'_, '_, D> {
    fn bind(&mut self, socket: &mut UdpHandle, local_port: u16) -> Result<(), NetError> {
        self.sockets
            .get_mut::<udp::Socket>(socket.handle)
            .bind(local_port)
            .map_err(|_| NetError::Bind)
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
/// drops the frame, as a real switch would. No allocator.
pub struct Switch<const PORTS: usize, const FRAME: usize, const DEPTH: usize> {
    queues: [Deque<heapless::Vec<u8, FRAME>, DEPTH>; PORTS],
    plugged: [bool; PORTS],
    dropped: u32,
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
    pub fn new() -> Self {
        Self {
            queues: core::array::from_fn(|_| Deque::new()),
            plugged: [true; PORTS],
            dropped: 0,
        }
    }

    /// Plugs or unplugs port `i`: an unplugged port neither sends nor
    /// receives (its queue is emptied), as a stopped node's would.
    pub fn set_plugged(&mut self, i: usize, plugged: bool) {
        if let Some(p) = self.plugged.get_mut(i) {
            *p = plugged;
        }
        if let Some(q) = self.queues.get_mut(i) {
            q.clear();
        }
    }

    /// Frames dropped on full queues.
    pub fn dropped(&self) -> u32 {
        self.dropped
    }

    fn flood(&mut self, from: usize, frame: &[u8]) {
        if !self.plugged.get(from).copied().unwrap_or(false) {
            return;
        }
        for (i, (queue, plugged)) in self.queues.iter_mut().zip(self.plugged).enumerate() {
            if i == from || !plugged {
                continue;
            }
            let queued = heapless::Vec::from_slice(frame)
                .ok()
                .is_some_and(|copy| queue.push_back(copy).is_ok());
            if !queued {
                self.dropped = self.dropped.saturating_add(1);
            }
        }
    }
}

/// Port `index` of a [`Switch`]: a smoltcp [`Device`].
pub struct Port<'s, const PORTS: usize, const FRAME: usize, const DEPTH: usize> {
    switch: &'s RefCell<Switch<PORTS, FRAME, DEPTH>>,
    index: usize,
}

impl<'s, const PORTS: usize, const FRAME: usize, const DEPTH: usize> Port<'s, PORTS, FRAME, DEPTH> {
    /// Port `index` of `switch`.
    pub fn new(switch: &'s RefCell<Switch<PORTS, FRAME, DEPTH>>, index: usize) -> Self {
        Self { switch, index }
    }
}

/// A received frame.
pub struct RxFrame<const FRAME: usize>(heapless::Vec<u8, FRAME>);

/// Room for one frame to send.
pub struct TxFrame<'s, const PORTS: usize, const FRAME: usize, const DEPTH: usize> {
    switch: &'s RefCell<Switch<PORTS, FRAME, DEPTH>>,
    index: usize,
}

impl<const FRAME: usize> phy::RxToken for RxFrame<FRAME> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl<const PORTS: usize, const FRAME: usize, const DEPTH: usize> phy::TxToken
    for TxFrame<'_, PORTS, FRAME, DEPTH>
{
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut frame = [0u8; FRAME];
        // smoltcp never asks for more than the MTU the port reports (FRAME).
        let len = len.min(FRAME);
        let r = f(frame.get_mut(..len).unwrap_or(&mut []));
        self.switch
            .borrow_mut()
            .flood(self.index, frame.get(..len).unwrap_or(&[]));
        r
    }
}

impl<const PORTS: usize, const FRAME: usize, const DEPTH: usize> Device
    for Port<'_, PORTS, FRAME, DEPTH>
{
    type RxToken<'a>
        = RxFrame<FRAME>
    where
        Self: 'a;
    type TxToken<'a>
        = TxFrame<'a, PORTS, FRAME, DEPTH>
    where
        Self: 'a;

    fn receive(&mut self, _: NetInstant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let frame = self
            .switch
            .borrow_mut()
            .queues
            .get_mut(self.index)?
            .pop_front()?;
        Some((
            RxFrame(frame),
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
