//! embassy-time's driver on these boards: the SysTick millisecond clock
//! ([`uptime_millis`](crate::uptime_millis)) and one timer queue.
//!
//! SysTick pends PendSV once the earliest alarm is due; the embassy
//! firmware's PendSV handler calls [`SysTickDriver::on_alarm`], which wakes
//! the due timers and sets the next alarm. The firmware registers the
//! driver with
//! `embassy_time_driver::time_driver_impl!(static DRIVER: SysTickDriver = SysTickDriver::new());`
//! and enables embassy-time's `tick-hz-1_000`.

use core::cell::RefCell;
use core::task::Waker;

use cortex_m::peripheral::SCB;
use critical_section::{CriticalSection, Mutex};
use embassy_time_driver::Driver;
use embassy_time_queue_utils::Queue;

use crate::{ALARM, uptime_millis};

/// The driver: the clock is SysTick's, the queue is here.
pub struct SysTickDriver {
    queue: Mutex<RefCell<Queue>>,
}

impl Default for SysTickDriver {
    fn default() -> Self {
        Self::new()
    }
}

impl SysTickDriver {
    /// An empty queue.
    pub const fn new() -> Self {
        Self {
            queue: Mutex::new(RefCell::new(Queue::new())),
        }
    }

    /// Call from the PendSV handler: wakes the timers that are due and sets
    /// the next alarm.
    pub fn on_alarm(&self) {
        critical_section::with(|cs| {
            let next = self
                .queue
                .borrow(cs)
                .borrow_mut()
                .next_expiration(uptime_millis());
            arm(cs, next);
        });
    }
}

/// Sets the alarm SysTick checks; one already due pends PendSV now.
fn arm(cs: CriticalSection<'_>, at: u64) {
    ALARM.borrow(cs).set(at);
    if at <= uptime_millis() {
        SCB::set_pendsv();
    }
}

impl Driver for SysTickDriver {
    fn now(&self) -> u64 {
        uptime_millis()
    }

    fn schedule_wake(&self, at: u64, waker: &Waker) {
        critical_section::with(|cs| {
            let mut queue = self.queue.borrow(cs).borrow_mut();
            if queue.schedule_wake(at, waker) {
                let next = queue.next_expiration(uptime_millis());
                arm(cs, next);
            }
        });
    }
}
