//! Phi-accrual failure detection, as Cassandra does it, in 32 bytes per peer.
//!
//! Each time a newer heartbeat of a peer arrives (directly or through
//! gossip), the interval since the previous arrival is recorded in a window of
//! [`WINDOW`] samples; the first arrival records the initial interval instead,
//! so a new peer is judged leniently. Then
//!
//! ```text
//! phi(now) = (now - last_arrival) / mean_interval / ln(10)
//! ```
//!
//! (the exponential-distribution form Cassandra uses). Intervals are kept in
//! two bytes each, within 0.31 % (a unit chosen by size: 1 µs, 100 µs,
//! 10 ms or 1 s), and the mean is updated at each arrival, so testing a peer
//! is a multiplication.
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

/// Samples kept per peer.
pub const WINDOW: usize = 8;

/// A peer's recent heartbeat inter-arrival times.
///
/// Laid out by hand (`repr(C)`): what a node's round sweep reads for every
/// peer (last arrival, mean, counts) leads, in its first 15 bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct ArrivalWindow {
    last: Instant,
    /// The samples' mean in microseconds (capped at `u32::MAX`, about 71
    /// minutes), kept so the status check's per-peer test is a
    /// multiplication.
    mean_micros: u32,
    arrivals: u8,
    len: u8,
    next: u8,
    /// Intervals, each in two bytes (see [`encode_interval`]).
    samples: [u16; WINDOW],
}

impl ArrivalWindow {
    /// Records a heartbeat arrival at `now`. The first one records `initial`
    /// as its interval; later ones the time since the previous one, unless
    /// `count_interval` is false (the interval spans a local pause) or it is
    /// shorter than `min` (the same news arriving by two paths, which says
    /// nothing about the peer's rhythm: it only refreshes the last arrival).
    pub fn record(&mut self, now: Instant, initial: Duration, min: Duration, count_interval: bool) {
        if self.arrivals == 0 {
            self.push(initial);
        } else {
            let interval = now - self.last;
            if count_interval && interval >= min {
                self.push(interval);
            }
        }
        self.last = now;
        self.arrivals = self.arrivals.saturating_add(1);
    }

    /// Forgets everything (a new incarnation).
    pub fn reset(&mut self) {
        *self = Self::default();
    }

    /// Heartbeat arrivals recorded (saturating at 255).
    pub fn arrivals(&self) -> u8 {
        self.arrivals
    }

    /// When the last arrival was recorded.
    pub fn last_arrival(&self) -> Option<Instant> {
        (self.arrivals > 0).then_some(self.last)
    }

    /// The mean interval, `None` before the first arrival.
    pub fn mean(&self) -> Option<Duration> {
        (self.len > 0).then(|| Duration::from_micros(u64::from(self.mean_micros)))
    }

    /// Phi at `now`: 0 before the first arrival.
    pub fn phi(&self, now: Instant) -> f64 {
        match self.mean() {
            Some(mean) if !mean.is_zero() => {
                let elapsed = (now - self.last).as_micros() as f64;
                elapsed / mean.as_micros() as f64 / core::f64::consts::LN_10
            }
            // A zero mean (arrivals at one instant): any silence is infinite phi.
            Some(_) if now > self.last => f64::INFINITY,
            _ => 0.0,
        }
    }

    /// The instant phi reaches `threshold`: `last + mean * threshold * ln(10)`.
    pub fn convict_at(&self, threshold: f64) -> Instant {
        match self.mean() {
            Some(mean) => {
                let micros = mean.as_micros() as f64 * threshold * core::f64::consts::LN_10;
                // `as` saturates for floats: NaN gives 0, huge gives u64::MAX.
                self.last + Duration::from_micros(micros as u64)
            }
            None => Instant::MAX,
        }
    }

    fn push(&mut self, interval: Duration) {
        if let Some(slot) = self.samples.get_mut(usize::from(self.next)) {
            // Capped at `u32::MAX` microseconds (about 71.6 minutes), as
            // samples always were.
            *slot = encode_interval(interval.min(SAMPLE_MAX));
        }
        self.next = ((usize::from(self.next) + 1) % WINDOW) as u8;
        if usize::from(self.len) < WINDOW {
            self.len += 1;
        }
        let window = self.samples.get(..usize::from(self.len)).unwrap_or(&[]);
        let sum: u64 = window.iter().map(|s| decode_interval(*s)).sum();
        let mean = sum / u64::from(self.len.max(1));
        self.mean_micros = u32::try_from(mean).unwrap_or(u32::MAX);
    }
}

/// The longest interval a sample holds.
const SAMPLE_MAX: Duration = Duration::from_micros(u32::MAX as u64);

/// The units an encoded interval counts in, by its top two bits (in
/// microseconds): 1 µs below 16.4 ms, 100 µs below 1.64 s, 10 ms below
/// 164 s, 1 s up to about 4.5 hours (longer intervals count as that).
const UNITS: [u64; 4] = [1, 100, 10_000, 1_000_000];

/// The largest count a unit holds (14 bits).
const COUNT_MAX: u64 = (1 << 14) - 1;

/// An interval in two bytes: the finest unit that holds it, rounded to the
/// nearest count: within 0.31 % (half a unit over the unit's least count
/// above its finer neighbour's range), exact for whole milliseconds from
/// 16 ms to 1.6 s and whole hundredths of a second up to 164 s.
pub(crate) fn encode_interval(interval: Duration) -> u16 {
    let micros = u64::try_from(interval.as_micros()).unwrap_or(u64::MAX);
    for (code, unit) in UNITS.iter().enumerate() {
        let count = micros.saturating_add(unit / 2) / unit;
        if count <= COUNT_MAX {
            return ((code as u16) << 14) | count as u16;
        }
    }
    (3 << 14) | COUNT_MAX as u16
}

/// The interval [`encode_interval`] encoded, in microseconds.
pub(crate) fn decode_interval(code: u16) -> u64 {
    let unit = UNITS.get(usize::from(code >> 14)).copied().unwrap_or(1);
    (u64::from(code) & COUNT_MAX) * unit
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_take_two_bytes_within_a_third_of_a_percent() {
        let exact = [
            0,
            1,
            16_383,
            16_000,
            999_000,
            1_000_000,
            1_500_000,
            2_000_000,
            163_830_000,
        ];
        for micros in exact {
            let d = Duration::from_micros(micros);
            assert_eq!(decode_interval(encode_interval(d)), micros, "{micros}");
        }
        let mut micros = 1u64;
        while micros < 16_000_000_000 {
            let back = decode_interval(encode_interval(Duration::from_micros(micros)));
            let error = back.abs_diff(micros) as f64 / micros as f64;
            assert!(error <= 0.0031, "{micros} came back as {back}");
            micros = micros * 21 / 20 + 1;
        }
        // Past 4.5 hours: the largest.
        let huge = decode_interval(encode_interval(Duration::from_secs(1 << 40)));
        assert_eq!(huge, COUNT_MAX * 1_000_000);
    }

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn phi_follows_cassandras_formula() {
        let mut w = ArrivalWindow::default();
        assert_eq!(w.phi(Instant::from_millis(10_000)), 0.0);
        assert_eq!(w.convict_at(8.0), Instant::MAX);
        // First arrival records the initial interval (2 s).
        w.record(Instant::ZERO, 2 * S, Duration::ZERO, true);
        assert_eq!(w.mean(), Some(2 * S));
        // Then one-second arrivals.
        for i in 1..=20 {
            w.record(Instant::from_millis(i * 1000), 2 * S, Duration::ZERO, true);
        }
        assert_eq!(w.mean(), Some(S));
        assert_eq!(w.arrivals(), 21);
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
        assert_eq!(w.mean(), Some(Duration::from_micros(2_333_333)));
        // A 60 s pause of ours is not.
        w.record(Instant::from_millis(66_000), S, Duration::ZERO, false);
        assert_eq!(w.mean(), Some(Duration::from_micros(2_333_333)));
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
        let capped = decode_interval(encode_interval(SAMPLE_MAX));
        assert!(capped.abs_diff(u64::from(u32::MAX)) <= u64::from(u32::MAX) / 300);
        assert_eq!(
            w.mean(),
            Some(Duration::from_micros((1_000_000 + capped) / 2))
        );
    }

    #[test]
    fn window_keeps_the_latest_samples() {
        let mut w = ArrivalWindow::default();
        let mut t = Instant::ZERO;
        w.record(t, 10 * S, Duration::ZERO, true);
        for _ in 0..WINDOW {
            t = t + S / 2;
            w.record(t, 10 * S, Duration::ZERO, true);
        }
        // The initial 10 s sample has rotated out.
        assert_eq!(w.mean(), Some(S / 2));
        assert!(core::mem::size_of::<ArrivalWindow>() <= 32);
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
