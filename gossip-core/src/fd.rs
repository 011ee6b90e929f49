//! Phi-accrual failure detection, as Cassandra does it, in 12 bytes per peer.
//!
//! Each time a newer heartbeat of a peer arrives (directly or through
//! gossip), the interval since the previous arrival updates the mean
//! interval; the first arrival counts the initial interval instead, so a new
//! peer is judged leniently. Then
//!
//! ```text
//! phi(now) = (now - last_arrival) / mean_interval / ln(10)
//! ```
//!
//! (the exponential-distribution form Cassandra uses). Cassandra keeps a
//! window of samples and averages it; here the mean is the average of the
//! first [`WINDOW`] intervals, then moves an eighth of the way to each new
//! one (an exponentially weighted mean, as TCP smooths round trips), so
//! it follows recent intervals without storing them and testing a peer is
//! a multiplication. An outlier fades by 7/8 an arrival rather than
//! leaving after [`WINDOW`] of them: one interval of an hour (a healed
//! partition) still counts about 3 minutes in the mean 8 arrivals later,
//! delaying phi's early-warning probe meanwhile (phi decides nothing
//! else).
//!
//! Phi is reported to users (snapshots, `gossip info`), and a member whose
//! phi passes the threshold (8 by default: about 18.4 mean intervals of
//! silence) is probed at once, an early warning; whether it is down is
//! decided by probes and suspicion ([`Node`](crate::Node)), never by phi
//! alone.
//!
//! One deliberate difference from Cassandra: it ignores intervals over two
//! seconds, because its SYN carries every digest and each node hears every
//! heartbeat about once a round. Here a SYN fits one datagram, so in a large
//! cluster a node hears a given peer's heartbeat every few rounds, and
//! dropping the long intervals would bias the mean low. Every interval
//! counts, except those spanning a local pause of this node (the caller says
//! so), which are about us, not the peer.

use core::time::Duration;

use crate::time::Instant;

/// Intervals averaged before the mean becomes a moving one; each later
/// interval moves it by `1 / WINDOW` of the difference.
pub const WINDOW: usize = 8;

/// A peer's heartbeat arrivals: the last one and the mean interval, in 12
/// bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ArrivalWindow {
    last: Instant,
    /// The mean interval in microseconds, a multiple of 16 (capped at
    /// about 71.6 minutes), in the upper 28 bits; in the lower 4 how many
    /// intervals it averages, up to [`WINDOW`] (none before the first
    /// arrival).
    mean_len: u32,
}

/// The bits of [`ArrivalWindow::mean_len`] that count intervals.
const LEN_BITS: u32 = 0xF;

impl ArrivalWindow {
    /// Records a heartbeat arrival at `now`. The first one records `initial`
    /// as its interval; later ones the time since the previous one, unless
    /// `count_interval` is false (the interval spans a local pause) or it is
    /// shorter than `min` (the same news arriving by two paths, which says
    /// nothing about the peer's rhythm: it only refreshes the last arrival).
    pub(crate) fn record(
        &mut self,
        now: Instant,
        initial: Duration,
        min: Duration,
        count_interval: bool,
    ) {
        if self.len() == 0 {
            self.push(initial);
        } else {
            let interval = now - self.last;
            if count_interval && interval >= min {
                self.push(interval);
            }
        }
        self.last = now;
    }

    /// Intervals in the mean.
    fn len(&self) -> u32 {
        self.mean_len & LEN_BITS
    }

    /// The mean interval in microseconds.
    fn mean_micros(&self) -> u32 {
        self.mean_len & !LEN_BITS
    }

    /// Forgets everything (a new incarnation).
    pub(crate) fn reset(&mut self) {
        *self = Self::default();
    }

    /// When the last arrival was recorded.
    pub(crate) fn last_arrival(&self) -> Option<Instant> {
        (self.len() > 0).then_some(self.last)
    }

    /// The mean interval, `None` before the first arrival.
    pub(crate) fn mean(&self) -> Option<Duration> {
        (self.len() > 0).then(|| Duration::from_micros(u64::from(self.mean_micros())))
    }

    /// Phi at `now`: 0 before the first arrival.
    pub(crate) fn phi(&self, now: Instant) -> f64 {
        let last = self.last;
        match self.len() {
            0 => 0.0,
            _ if self.mean_micros() > 0 => {
                // In microseconds, from 64 and 32 bits (not through
                // `Duration`'s 128).
                let elapsed = now.as_micros().saturating_sub(last.as_micros()) as f64;
                elapsed / f64::from(self.mean_micros()) / core::f64::consts::LN_10
            }
            // A zero mean (arrivals at one instant): any silence is infinite phi.
            _ if now > last => f64::INFINITY,
            _ => 0.0,
        }
    }

    /// The instant phi reaches `threshold`: `last + mean * threshold * ln(10)`.
    pub(crate) fn convict_at(&self, threshold: f64) -> Instant {
        match self.len() {
            1.. => {
                let micros = f64::from(self.mean_micros()) * threshold * core::f64::consts::LN_10;
                // `as` saturates for floats: NaN gives 0, huge gives u64::MAX.
                self.last + Duration::from_micros(micros as u64)
            }
            0 => Instant::MAX,
        }
    }

    fn push(&mut self, interval: Duration) {
        // Capped at `u32::MAX` microseconds (about 71.6 minutes).
        let sample = u32::try_from(interval.as_micros()).unwrap_or(u32::MAX);
        let n = (self.len() + 1).min(WINDOW as u32);
        let mean = self.mean_micros();
        // Unsigned both ways (no 64-bit signed division in a
        // microcontroller's flash).
        let mean = if sample >= mean {
            mean + (sample - mean) / n
        } else {
            mean - (mean - sample) / n
        };
        self.mean_len = (mean & !LEN_BITS) | n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn phi_follows_cassandras_formula() {
        let mut w = ArrivalWindow::default();
        assert_eq!(w.phi(Instant::from_millis(10_000)), 0.0);
        assert_eq!(w.convict_at(8.0), Instant::MAX);
        // First arrival records the initial interval (1 s).
        w.record(Instant::ZERO, S, Duration::ZERO, true);
        assert_eq!(w.mean(), Some(S));
        // Then one-second arrivals.
        for i in 1..=20 {
            w.record(Instant::from_millis(i * 1000), S, Duration::ZERO, true);
        }
        assert_eq!(w.mean(), Some(S));
        assert_eq!(w.last_arrival(), Some(Instant::from_millis(20_000)));
        let last = Instant::from_millis(20_000);
        let phi = w.phi(last + 5 * S);
        assert!((phi - 5.0 / core::f64::consts::LN_10).abs() < 1e-9, "{phi}");
        // Threshold 8: 8 * ln(10) = 18.42 mean intervals of silence.
        let at = w.convict_at(8.0);
        assert_eq!(at.as_micros(), 20_000_000 + 18_420_680);
        assert!(w.phi(at) >= 7.999_999);
        assert!(w.phi(Instant::from_micros(at.as_micros() - 10_000)) < 8.0);
    }

    #[test]
    fn long_intervals_count_unless_they_span_a_local_pause() {
        let mut w = ArrivalWindow::default();
        w.record(Instant::ZERO, S, Duration::ZERO, true);
        w.record(Instant::from_millis(1000), S, Duration::ZERO, true);
        // A peer heard of every 5 s: that is its rhythm.
        w.record(Instant::from_millis(6_000), S, Duration::ZERO, true);
        // (1 + 1 + 5) / 3 s, to the 16 µs the mean is kept in.
        assert_eq!(w.mean(), Some(Duration::from_micros(2_333_328)));
        // A 60 s pause of ours is not.
        w.record(Instant::from_millis(66_000), S, Duration::ZERO, false);
        assert_eq!(w.mean(), Some(Duration::from_micros(2_333_328)));
        assert_eq!(w.last_arrival(), Some(Instant::from_millis(66_000)));
    }

    #[test]
    fn arrivals_closer_than_the_minimum_only_refresh() {
        let mut w = ArrivalWindow::default();
        let min = S / 2;
        w.record(Instant::ZERO, S, min, true);
        w.record(Instant::from_millis(1000), S, min, true);
        // The same news by another path, 20 ms later.
        w.record(Instant::from_millis(1020), S, min, true);
        assert_eq!(w.mean(), Some(S));
        assert_eq!(w.last_arrival(), Some(Instant::from_millis(1020)));
    }

    #[test]
    fn samples_are_capped_at_about_71_minutes() {
        let mut w = ArrivalWindow::default();
        w.record(Instant::ZERO, S, Duration::ZERO, true);
        // Three hours of silence count as the cap.
        w.record(Instant::from_millis(3 * 3_600_000), S, Duration::ZERO, true);
        let capped = u64::from(u32::MAX);
        let mean = w.mean().unwrap().as_micros();
        assert!(
            mean.abs_diff(u128::from((1_000_000 + capped) / 2)) < 16,
            "{mean}"
        );
        // A long run of them approaches the cap and never passes it.
        for hour in 2..80 {
            w.record(
                Instant::from_millis(hour * 3 * 3_600_000),
                S,
                Duration::ZERO,
                true,
            );
        }
        let mean = w.mean().unwrap().as_micros();
        assert!(
            mean <= u128::from(capped) && mean > u128::from(capped) * 999 / 1000,
            "{mean}"
        );
        assert!(w.phi(Instant::MAX).is_finite());
    }

    #[test]
    fn the_mean_averages_the_first_intervals_then_follows_the_latest() {
        let mut w = ArrivalWindow::default();
        let mut t = Instant::ZERO;
        w.record(t, 10 * S, Duration::ZERO, true);
        for _ in 1..WINDOW {
            t = t + S / 2;
            w.record(t, 10 * S, Duration::ZERO, true);
        }
        // The mean is kept to 16 µs: each interval may round it down by
        // up to that.
        let near = |w: &ArrivalWindow, micros: u128| {
            let mean = w.mean().unwrap().as_micros();
            assert!(
                mean.abs_diff(micros) <= 16 * WINDOW as u128,
                "{mean} is not {micros}"
            );
        };
        // The average of the first eight (to a microsecond each): one of
        // 10 s, seven of 0.5 s.
        near(&w, 1_687_500);
        // Each later one moves it an eighth of the way.
        t = t + S / 2;
        w.record(t, 10 * S, Duration::ZERO, true);
        near(&w, 1_687_500 - 148_437);
        // The initial 10 s fades: within 1 % of the rhythm after 40 more.
        for _ in 0..40 {
            t = t + S / 2;
            w.record(t, 10 * S, Duration::ZERO, true);
        }
        let mean = w.mean().unwrap().as_micros();
        assert!(mean.abs_diff(500_000) < 5_000, "{mean}");
        assert_eq!(core::mem::size_of::<ArrivalWindow>(), 12);
    }

    #[test]
    fn zero_mean_is_handled() {
        let mut w = ArrivalWindow::default();
        w.record(Instant::ZERO, Duration::ZERO, Duration::ZERO, true);
        assert_eq!(w.phi(Instant::ZERO), 0.0);
        assert_eq!(w.phi(Instant::from_micros(1)), f64::INFINITY);
        assert_eq!(w.convict_at(8.0), Instant::ZERO);
        assert_eq!(w.convict_at(f64::NAN), Instant::ZERO);
    }
}
