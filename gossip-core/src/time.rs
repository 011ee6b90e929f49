//! The core's notion of time.
//!
//! The core never reads a clock: every time-sensitive call takes `now`, an
//! [`Instant`] the caller made from its own monotonic clock (a binding maps
//! the standard library's `Instant`, an embassy timer or a simulator's
//! virtual clock to it). Durations are [`core::time::Duration`].

use core::fmt;
use core::ops::{Add, Sub};
use core::time::Duration;

/// A point on the caller's monotonic clock, in microseconds since an origin
/// the caller chooses (its start, say). Only differences matter.
///
/// Held as two 32-bit halves: aligned to 4 bytes, it packs without padding
/// among the 32-bit fields of a peer slot (a node keeps one per peer), and
/// the structures holding instants need less stack on a microcontroller.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Instant([u32; 2]);

impl PartialOrd for Instant {
    fn partial_cmp(&self, other: &Self) -> Option<core::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Instant {
    /// As 64-bit numbers (a register pair on a 32-bit core), not as an
    /// array.
    fn cmp(&self, other: &Self) -> core::cmp::Ordering {
        self.as_micros().cmp(&other.as_micros())
    }
}

impl Instant {
    /// The origin.
    pub const ZERO: Instant = Instant::from_micros(0);
    /// The farthest representable point.
    pub const MAX: Instant = Instant::from_micros(u64::MAX);

    /// The instant `micros` microseconds after the origin.
    pub const fn from_micros(micros: u64) -> Self {
        Instant([(micros >> 32) as u32, micros as u32])
    }

    /// The instant `millis` milliseconds after the origin (saturating).
    pub const fn from_millis(millis: u64) -> Self {
        Instant::from_micros(millis.saturating_mul(1000))
    }

    /// Microseconds since the origin.
    pub const fn as_micros(self) -> u64 {
        ((self.0[0] as u64) << 32) | self.0[1] as u64
    }

    /// The time elapsed from `earlier` to `self`, zero if `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Instant) -> Duration {
        Duration::from_micros(self.as_micros().saturating_sub(earlier.as_micros()))
    }

    /// `self + duration`, or `None` past [`Instant::MAX`].
    pub fn checked_add(self, duration: Duration) -> Option<Instant> {
        let micros = u64::try_from(duration.as_micros()).ok()?;
        self.as_micros()
            .checked_add(micros)
            .map(Instant::from_micros)
    }

    /// `self + duration`, saturating at [`Instant::MAX`].
    pub fn saturating_add(self, duration: Duration) -> Instant {
        self.checked_add(duration).unwrap_or(Instant::MAX)
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;

    /// Saturating: never panics.
    fn add(self, rhs: Duration) -> Instant {
        self.saturating_add(rhs)
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;

    /// Saturating at zero: never panics.
    fn sub(self, rhs: Instant) -> Duration {
        self.saturating_duration_since(rhs)
    }
}

impl fmt::Debug for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let micros = self.as_micros();
        write!(f, "{}.{:06}s", micros / 1_000_000, micros % 1_000_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates() {
        let t = Instant::from_millis(1500);
        assert_eq!(t.as_micros(), 1_500_000);
        assert_eq!(t + Duration::from_millis(500), Instant::from_millis(2000));
        assert_eq!(Instant::from_millis(2000) - t, Duration::from_millis(500));
        assert_eq!(t - Instant::from_millis(2000), Duration::ZERO);
        assert_eq!(Instant::MAX + Duration::from_secs(1), Instant::MAX);
        assert_eq!(t.checked_add(Duration::MAX), None);
        assert_eq!(Instant::from_millis(u64::MAX), Instant::MAX);
        assert_eq!(alloc_free_debug(t), "1.500000s");
        // Across the halves: order and arithmetic are the 64-bit ones.
        let low = Instant::from_micros(u64::from(u32::MAX));
        let high = low + Duration::from_micros(1);
        assert_eq!(high.as_micros(), 1 << 32);
        assert!(low < high && high < Instant::MAX);
        assert_eq!(high - low, Duration::from_micros(1));
        assert_eq!(core::mem::align_of::<Instant>(), 4);
    }

    fn alloc_free_debug(t: Instant) -> heapless::String<32> {
        use core::fmt::Write;
        let mut s = heapless::String::new();
        write!(s, "{t:?}").unwrap();
        s
    }
}
