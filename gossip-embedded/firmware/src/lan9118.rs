//! The SMSC LAN9118 Ethernet controller of the Arm MPS2 boards (QEMU's
//! `mps2-an386` maps it at [`MPS2_BASE`], its interrupt on IRQ [`MPS2_IRQ`]):
//! one driver, two front ends.
//!
//! - [`Lan9118`] is a polled smoltcp `Device` (module `smoltcp`): the
//!   blocking firmware calls the stack from its main loop.
//! - [`embassy::EmbassyLan9118`] is an `embassy-net-driver` `Driver`: it
//!   sleeps until the controller's "frame received" interrupt wakes it.
//!
//! Both read the next frame out of the receive FIFO into one frame buffer
//! ([`RxFrame`]) and write a frame to send into the other, then push it into
//! the transmit FIFO ([`TxFrame`]): two [`FRAME`]-byte buffers, and a
//! [`Gleaner`] that hands the stack, before a unicast IPv4 frame from a
//! neighbor, the ARP reply that neighbor would send, so smoltcp knows every
//! member that talks to the board without asking (smoltcp asks for one
//! address a second, and a socket waiting for one sends nothing).

pub mod embassy;
mod smoltcp;

use gossip_embedded::arp::{ARP_FRAME, Gleaner};

/// Where the LAN9118's registers are on the MPS2 boards.
pub const MPS2_BASE: usize = 0x4020_0000;

/// The LAN9118's interrupt line on `mps2-an385`/`an386` (external IRQ 13).
pub const MPS2_IRQ: u16 = 13;

/// The largest frame handled: a 512-byte datagram with its Ethernet (14),
/// IPv4 (20) and UDP (8) headers. Longer received frames are dropped and
/// counted.
pub const FRAME: usize = 554;

// Register offsets (SMSC LAN9118 datasheet, section 5).
const RX_DATA_FIFO: usize = 0x00;
const TX_DATA_FIFO: usize = 0x20;
const RX_STATUS_FIFO: usize = 0x40;
const ID_REV: usize = 0x50;
const IRQ_CFG: usize = 0x54;
const INT_STS: usize = 0x58;
const INT_EN: usize = 0x5c;
const BYTE_TEST: usize = 0x64;
const TX_CFG: usize = 0x70;
const HW_CFG: usize = 0x74;
const RX_FIFO_INF: usize = 0x7c;
const TX_FIFO_INF: usize = 0x80;
const PMT_CTRL: usize = 0x84;
const MAC_CSR_CMD: usize = 0xa4;
const MAC_CSR_DATA: usize = 0xa8;

// MAC registers, reached through MAC_CSR_CMD / MAC_CSR_DATA.
const MAC_CR: u32 = 1;
const MAC_ADDRH: u32 = 2;
const MAC_ADDRL: u32 = 3;

const CSR_BUSY: u32 = 1 << 31;
const CSR_READ: u32 = 1 << 30;
const MAC_CR_TXEN: u32 = 1 << 3;
const MAC_CR_RXEN: u32 = 1 << 2;
const TX_CFG_TX_ON: u32 = 1 << 1;
const TX_CFG_TXSAO: u32 = 1 << 2;
const HW_CFG_SRST: u32 = 1;
const PMT_CTRL_READY: u32 = 1;
const MAC_CR_PRMS: u32 = 1 << 18;
const TX_FIRST_SEGMENT: u32 = 1 << 13;
const TX_LAST_SEGMENT: u32 = 1 << 12;
/// Receive status: the frame had an error (CRC, runt, too long, ...).
const RX_ERROR_SUMMARY: u32 = 1 << 15;
/// IRQ_CFG: the interrupt pin is enabled, active high, push-pull.
const IRQ_EN: u32 = 1 << 8;
const IRQ_POL: u32 = 1 << 4;
const IRQ_TYPE: u32 = 1;
/// INT_STS / INT_EN: the receive status FIFO holds a frame's status.
const RSFL_INT: u32 = 1 << 3;

/// Polls of a busy bit before giving up.
const BUSY_POLLS: u32 = 100_000;

/// Why the controller was not brought up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// BYTE_TEST or ID_REV did not read as a LAN9118's.
    NotFound,
    /// A soft reset or a MAC register access did not complete.
    Timeout,
}

impl Error {
    /// A one-line description.
    pub fn as_str(self) -> &'static str {
        match self {
            Error::NotFound => "no LAN9118 at the expected address",
            Error::Timeout => "the LAN9118 did not complete a reset or MAC access",
        }
    }
}

/// What the driver counted.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stats {
    /// Frames handed to smoltcp.
    pub rx_frames: u32,
    /// Frames received with an error or longer than [`FRAME`], dropped.
    pub rx_dropped: u32,
    /// Frames pushed into the transmit FIFO.
    pub tx_frames: u32,
    /// Frames dropped because the transmit FIFO had no room.
    pub tx_dropped: u32,
}

/// The register block.
#[derive(Clone, Copy)]
struct Regs {
    base: usize,
}

impl Regs {
    fn read(self, offset: usize) -> u32 {
        // SAFETY: `base` is the LAN9118's register block, which `Lan9118::new`'s
        // caller guaranteed, and `offset` is one of the register offsets above
        // (all inside the 256-byte block, word-aligned). A volatile read of a
        // device register touches no Rust object.
        unsafe { core::ptr::read_volatile((self.base + offset) as *const u32) }
    }

    fn write(self, offset: usize, value: u32) {
        // SAFETY: as for `read`: a word-aligned register of the device's own
        // block; the write changes the device's state only.
        unsafe { core::ptr::write_volatile((self.base + offset) as *mut u32, value) }
    }

    fn wait_clear(self, offset: usize, bit: u32) -> Result<(), Error> {
        for _ in 0..BUSY_POLLS {
            if self.read(offset) & bit == 0 {
                return Ok(());
            }
        }
        Err(Error::Timeout)
    }

    fn wait_set(self, offset: usize, bit: u32) -> Result<(), Error> {
        for _ in 0..BUSY_POLLS {
            if self.read(offset) & bit != 0 {
                return Ok(());
            }
        }
        Err(Error::Timeout)
    }

    fn mac_read(self, reg: u32) -> Result<u32, Error> {
        self.write(MAC_CSR_CMD, CSR_BUSY | CSR_READ | reg);
        self.wait_clear(MAC_CSR_CMD, CSR_BUSY)?;
        Ok(self.read(MAC_CSR_DATA))
    }

    fn mac_write(self, reg: u32, value: u32) -> Result<(), Error> {
        self.write(MAC_CSR_DATA, value);
        self.write(MAC_CSR_CMD, CSR_BUSY | reg);
        self.wait_clear(MAC_CSR_CMD, CSR_BUSY)
    }
}

/// The controller, brought up, its two frame buffers, and the neighbors
/// it gleans for the stack (see [`gossip_embedded::arp`]).
pub struct Lan9118 {
    regs: Regs,
    mac: [u8; 6],
    rx: [u8; FRAME],
    tx: [u8; FRAME],
    stats: Stats,
    gleaner: Gleaner<GLEANED>,
    /// The ARP reply gleaned from the frame in `rx`, handed over first.
    arp: [u8; ARP_FRAME],
    /// The length of the frame in `rx` when it waits behind its ARP reply.
    held: Option<usize>,
}

/// Neighbors gleaned at once (12 bytes each): a cluster's worth.
const GLEANED: usize = 16;

/// Which frame the stack gets next.
#[derive(Clone, Copy)]
enum Next {
    /// The ARP reply gleaned from the frame in `rx`.
    Arp,
    /// The frame in `rx`, this long.
    Frame(usize),
}

impl Lan9118 {
    /// Checks that a LAN9118 answers at `base`, resets it, reads its MAC
    /// address and turns the transmitter and receiver on (exact MAC match
    /// and broadcast).
    ///
    /// # Safety
    ///
    /// `base` must be the address of a LAN9118's register block, and nothing
    /// else may access that block while the returned value lives.
    pub unsafe fn new(base: usize) -> Result<Self, Error> {
        let regs = Regs { base };
        if regs.read(BYTE_TEST) != 0x8765_4321 || regs.read(ID_REV) >> 16 != 0x0118 {
            return Err(Error::NotFound);
        }
        regs.write(HW_CFG, HW_CFG_SRST);
        regs.wait_clear(HW_CFG, HW_CFG_SRST)?;
        regs.wait_set(PMT_CTRL, PMT_CTRL_READY)?;
        let low = regs.mac_read(MAC_ADDRL)?.to_le_bytes();
        let high = regs.mac_read(MAC_ADDRH)?.to_le_bytes();
        let mac = [low[0], low[1], low[2], low[3], high[0], high[1]];
        regs.write(INT_EN, 0);
        // Keep the reset's other settings; leave promiscuous mode.
        let cr = regs.mac_read(MAC_CR)?;
        regs.mac_write(MAC_CR, (cr & !MAC_CR_PRMS) | MAC_CR_TXEN | MAC_CR_RXEN)?;
        regs.write(TX_CFG, TX_CFG_TX_ON | TX_CFG_TXSAO);
        Ok(Self {
            regs,
            mac,
            rx: [0; FRAME],
            tx: [0; FRAME],
            stats: Stats::default(),
            gleaner: Gleaner::new(),
            arp: [0; ARP_FRAME],
            held: None,
        })
    }

    /// The controller's MAC address (QEMU: `-nic ...,mac=`).
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// What it counted.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Reads the next frame of the receive FIFO into `rx`; its length, or
    /// `None` when the FIFO holds no frame. A bad or overlong frame is read
    /// out (the FIFO must be drained frame by frame), dropped and counted.
    fn read_frame(&mut self) -> Option<usize> {
        // A few bad frames in a row at most per call, so a flood cannot keep
        // the caller here.
        for _ in 0..4 {
            if (self.regs.read(RX_FIFO_INF) >> 16) & 0xff == 0 {
                return None;
            }
            let status = self.regs.read(RX_STATUS_FIFO);
            // The length counts the 4-byte CRC at the end.
            let len = ((status >> 16) & 0x3fff) as usize;
            for word in 0..len.div_ceil(4) {
                let bytes = self.regs.read(RX_DATA_FIFO).to_le_bytes();
                for (i, b) in bytes.into_iter().enumerate() {
                    if let Some(slot) = self.rx.get_mut(word * 4 + i) {
                        *slot = b;
                    }
                }
            }
            let frame = len.saturating_sub(4);
            if status & RX_ERROR_SUMMARY == 0 && (14..=FRAME).contains(&frame) {
                self.stats.rx_frames = self.stats.rx_frames.saturating_add(1);
                return Some(frame);
            }
            self.stats.rx_dropped = self.stats.rx_dropped.saturating_add(1);
        }
        None
    }
}

/// A received frame, in the driver's receive buffer.
pub struct RxFrame<'a> {
    frame: &'a mut [u8],
}

impl RxFrame<'_> {
    /// Hands the frame to `f`.
    fn consume<R>(self, f: impl FnOnce(&mut [u8]) -> R) -> R {
        f(self.frame)
    }
}

/// Room for one frame to send, in the driver's transmit buffer.
pub struct TxFrame<'a> {
    regs: Regs,
    buf: &'a mut [u8; FRAME],
    stats: &'a mut Stats,
}

impl TxFrame<'_> {
    /// Lets `f` write a frame of `len` bytes (at most [`FRAME`]) and pushes
    /// it into the transmit FIFO; when the FIFO has no room, the frame is
    /// dropped and counted.
    fn consume<R>(self, len: usize, f: impl FnOnce(&mut [u8]) -> R) -> R {
        // The stacks never ask for more than the MTU reported (FRAME).
        let len = len.min(FRAME);
        let frame = self.buf.get_mut(..len).unwrap_or(&mut []);
        let r = f(frame);
        let words = len.div_ceil(4);
        let room = (self.regs.read(TX_FIFO_INF) & 0xffff) as usize;
        if room < words * 4 + 8 {
            self.stats.tx_dropped = self.stats.tx_dropped.saturating_add(1);
            return r;
        }
        // Command A: one segment holding the whole frame, no offset; command
        // B: the frame's length (tag 0).
        self.regs.write(
            TX_DATA_FIFO,
            len as u32 | TX_FIRST_SEGMENT | TX_LAST_SEGMENT,
        );
        self.regs.write(TX_DATA_FIFO, len as u32);
        for chunk in frame.chunks(4) {
            let mut word = [0u8; 4];
            for (w, b) in word.iter_mut().zip(chunk) {
                *w = *b;
            }
            self.regs.write(TX_DATA_FIFO, u32::from_le_bytes(word));
        }
        self.stats.tx_frames = self.stats.tx_frames.saturating_add(1);
        r
    }
}

impl Lan9118 {
    /// Whether a frame waits: in the receive FIFO, or read and held behind
    /// its ARP reply.
    fn rx_waiting(&self) -> bool {
        self.held.is_some() || (self.regs.read(RX_FIFO_INF) >> 16) & 0xff != 0
    }

    /// What the stack gets next: a held frame, or the next one of the FIFO
    /// (preceded by the ARP reply gleaned from it, if any); `None` when
    /// the FIFO holds no (good) frame.
    fn next(&mut self) -> Option<Next> {
        if let Some(len) = self.held.take() {
            return Some(Next::Frame(len));
        }
        let len = self.read_frame()?;
        let now = crate::uptime_millis() as u32;
        let frame = self.rx.get(..len).unwrap_or(&[]);
        if self.gleaner.glean(frame, now, &mut self.arp) {
            self.held = Some(len);
            return Some(Next::Arp);
        }
        Some(Next::Frame(len))
    }

    /// The next frame for the stack and room to answer it, or `None`.
    fn receive(&mut self) -> Option<(RxFrame<'_>, TxFrame<'_>)> {
        let next = self.next()?;
        Some(self.frames(next))
    }

    /// The frame `next` names, and room to answer it.
    fn frames(&mut self, next: Next) -> (RxFrame<'_>, TxFrame<'_>) {
        let Self {
            regs,
            rx,
            tx,
            stats,
            arp,
            ..
        } = self;
        let frame = match next {
            Next::Arp => &mut arp[..],
            Next::Frame(len) => rx.get_mut(..len).unwrap_or(&mut []),
        };
        (
            RxFrame { frame },
            TxFrame {
                regs: *regs,
                buf: tx,
                stats,
            },
        )
    }

    /// Room for a frame to send.
    fn transmit(&mut self) -> TxFrame<'_> {
        TxFrame {
            regs: self.regs,
            buf: &mut self.tx,
            stats: &mut self.stats,
        }
    }

    /// Routes "a frame's status entered the receive status FIFO" to the
    /// interrupt pin (active high, push-pull, as the board wires it).
    fn enable_rx_interrupt(&mut self) {
        self.regs.write(INT_EN, RSFL_INT);
        self.regs.write(IRQ_CFG, IRQ_EN | IRQ_POL | IRQ_TYPE);
    }

    /// Clears the latched "frame received" status (the pin follows it).
    fn clear_rx_interrupt(&mut self) {
        self.regs.write(INT_STS, RSFL_INT);
    }
}
