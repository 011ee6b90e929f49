//! The interrupt-driven front end: an `embassy-net-driver` [`Driver`].
//!
//! When the receive FIFO is empty, the driver registers the stack's waker
//! and unmasks the controller's interrupt; [`on_interrupt`] (called from
//! the firmware's handler for IRQ [`MPS2_IRQ`]) masks it again and wakes
//! the stack, which then reads every waiting frame. The latched status is
//! cleared before each look at the FIFO, so a frame that arrives between
//! the look and the unmask raises the interrupt at once: none is missed.

use core::task::Context;

use cortex_m::interrupt::InterruptNumber;
use cortex_m::peripheral::NVIC;
use embassy_net_driver::{Capabilities, Driver, HardwareAddress, LinkState};
use embassy_sync::waitqueue::AtomicWaker;

use super::{FRAME, Lan9118, MPS2_IRQ, RxFrame, TxFrame};

/// The stack's waker, woken by the interrupt.
static RX_WAKER: AtomicWaker = AtomicWaker::new();

/// The LAN9118's line in the NVIC.
#[derive(Clone, Copy)]
struct Irq;

// SAFETY: `number` returns a valid external interrupt number of this
// board (13: the Ethernet controller on mps2-an385/an386), always the same.
unsafe impl InterruptNumber for Irq {
    fn number(self) -> u16 {
        MPS2_IRQ
    }
}

/// Call from the interrupt handler of [`MPS2_IRQ`]: masks the line (the
/// driver unmasks it when it next finds the FIFO empty) and wakes the
/// network stack.
pub fn on_interrupt() {
    NVIC::mask(Irq);
    RX_WAKER.wake();
}

/// The controller as an embassy-net driver.
pub struct EmbassyLan9118 {
    nic: Lan9118,
}

impl EmbassyLan9118 {
    /// Takes the controller and routes its "frame received" status to its
    /// interrupt pin. The firmware's handler for [`MPS2_IRQ`] must call
    /// [`on_interrupt`]; the driver unmasks the line itself.
    pub fn new(mut nic: Lan9118) -> Self {
        nic.enable_rx_interrupt();
        Self { nic }
    }

    /// The controller (its MAC address and counters).
    pub fn nic(&self) -> &Lan9118 {
        &self.nic
    }
}

impl embassy_net_driver::RxToken for RxFrame<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, f: F) -> R {
        RxFrame::consume(self, f)
    }
}

impl embassy_net_driver::TxToken for TxFrame<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        TxFrame::consume(self, len, f)
    }
}

impl Driver for EmbassyLan9118 {
    type RxToken<'a>
        = RxFrame<'a>
    where
        Self: 'a;
    type TxToken<'a>
        = TxFrame<'a>
    where
        Self: 'a;

    fn receive(&mut self, cx: &mut Context<'_>) -> Option<(RxFrame<'_>, TxFrame<'_>)> {
        RX_WAKER.register(cx.waker());
        self.nic.clear_rx_interrupt();
        // The line was high until now, so the NVIC may hold it pending:
        // forget that, or the next unmask wakes the stack for nothing.
        NVIC::unpend(Irq);
        if let Some(next) = self.nic.next() {
            return Some(self.nic.frames(next));
        }
        if self.nic.rx_waiting() {
            // Only bad frames this time (read out and dropped), more wait:
            // come back at once rather than for the next arrival.
            cx.waker().wake_by_ref();
        } else {
            // SAFETY: unmasking an interrupt can break a critical section
            // built on masking it; this firmware's critical sections mask
            // all interrupts (PRIMASK, cortex-m's single-core
            // implementation), none relies on this line being masked.
            unsafe { NVIC::unmask(Irq) };
        }
        None
    }

    fn transmit(&mut self, _: &mut Context<'_>) -> Option<TxFrame<'_>> {
        // The transmit FIFO takes a frame at once or the frame is dropped
        // and counted: there is nothing to wait for.
        Some(self.nic.transmit())
    }

    fn link_state(&mut self, _: &mut Context<'_>) -> LinkState {
        LinkState::Up
    }

    fn capabilities(&self) -> Capabilities {
        let mut caps = Capabilities::default();
        caps.max_transmission_unit = FRAME;
        caps
    }

    fn hardware_address(&self) -> HardwareAddress {
        HardwareAddress::Ethernet(self.nic.mac())
    }
}
