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
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(u64);

impl Instant {
    /// The origin.
    pub const ZERO: Instant = Instant(0);
    /// The farthest representable point.
    pub const MAX: Instant = Instant(u64::MAX);

    /// The instant `micros` microseconds after the origin.
    pub const fn from_micros(micros: u64) -> Self {
        Instant(micros)
    }

    /// The instant `millis` milliseconds after the origin (saturating).
    pub const fn from_millis(millis: u64) -> Self {
        Instant(millis.saturating_mul(1000))
    }

    /// Microseconds since the origin.
    pub const fn as_micros(self) -> u64 {
        self.0
    }

    /// The time elapsed from `earlier` to `self`, zero if `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Instant) -> Duration {
        Duration::from_micros(self.0.saturating_sub(earlier.0))
    }

    /// `self + duration`, or `None` past [`Instant::MAX`].
    pub fn checked_add(self, duration: Duration) -> Option<Instant> {
        let micros = u64::try_from(duration.as_micros()).ok()?;
        self.0.checked_add(micros).map(Instant)
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
        write!(f, "{}.{:06}s", self.0 / 1_000_000, self.0 % 1_000_000)
    }
}

/// An [`Instant`] as a peer slot keeps it: two 32-bit halves, high first,
/// so it aligns to 4 bytes and packs without padding among the slot's
/// 32-bit fields (a node keeps one slot per peer).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Stamp([u32; 2]);

impl Stamp {
    /// The instant.
    pub(crate) fn get(self) -> Instant {
        let [high, low] = self.0;
        Instant((u64::from(high) << 32) | u64::from(low))
    }
}

impl From<Instant> for Stamp {
    fn from(t: Instant) -> Self {
        Stamp([(t.0 >> 32) as u32, t.0 as u32])
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
        // Stamps keep every bit, across the halves.
        for t in [
            Instant::ZERO,
            t,
            Instant::from_micros(1 << 32),
            Instant::MAX,
        ] {
            assert_eq!(Stamp::from(t).get(), t);
        }
        assert_eq!(core::mem::align_of::<Stamp>(), 4);
    }

    fn alloc_free_debug(t: Instant) -> heapless::String<32> {
        use core::fmt::Write;
        let mut s = heapless::String::new();
        write!(s, "{t:?}").unwrap();
        s
    }
}
