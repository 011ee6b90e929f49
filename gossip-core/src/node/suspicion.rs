//! Suspicion (SWIM, with Lifeguard's refinements) and local health.
//!
//! A member whose probe failed, directly and through others, becomes
//! SUSPECT at the incarnation known; the claim spreads as a rumor. It has
//! until its suspicion times out to refute (a newer incarnation); then the
//! node that timed out claims it DOWN, which spreads as a rumor too.
//!
//! The timeout shrinks as independent confirmations come in (each node that
//! hears a suspicion probes the suspect itself, and counts its own failure
//! as one; the count travels in the claim), from a maximum to a minimum
//! (Lifeguard's dynamic suspicion timeout):
//!
//! ```text
//! min     = suspicion_mult * gossip_interval * max(2, log10(N))
//! max     = suspicion_max_mult * min
//! timeout = max - (max - min) * ln(C + 1) / ln(K + 1)      C confirmations, K = 3
//! ```
//!
//! both scaled by this node's local health (below). With the defaults (0.5
//! and 4), a 100-node cluster at one-second rounds waits 4 s on a lone
//! suspicion and 1 s once three others confirmed it. Smaller clusters wait
//! as long as 100 nodes do: their suspicions get few confirmations, and at
//! high loss a refutation may need several rounds to get through (with a
//! floor of one decade, 10 agents at 20 % loss convicted a live member
//! about once in 600 suspicions).
//!
//! **Local health** (Lifeguard's awareness): a score from 0 to
//! [`MAX_HEALTH`], raised when a probe fails without the NACKs the helpers
//! owed (the failure may be ours), when this node must refute a suspicion
//! of itself, and when a round runs late; lowered by each probe answered.
//! Probe and suspicion timeouts are multiplied by `score + 1`, so an
//! overloaded or paused node does not convict healthy peers. Independently,
//! after a local pause longer than `max_local_pause`, no suspicion is
//! raised or timed out for as long again.

use core::time::Duration;

use rand_core::Rng;

use super::Node;
use crate::claim::{Claim, MAX_CONFIRMATIONS, Status};
use crate::table::{Liveness, Seq, Storage, doubt};
use crate::time::Instant;

/// The highest local health score (Lifeguard's `S`).
pub const MAX_HEALTH: u8 = 8;

/// Suspects whose timeouts are tracked to the instant; more are expired by
/// the round's sweep instead.
pub(super) const TRACKED_SUSPECTS: usize = 32;

/// `1000 · ln(C + 1) / ln(K + 1)` for `C` = 0..=K, K =
/// [`MAX_CONFIRMATIONS`] (3).
const CONFIRMED_PER_MILLE: [u64; MAX_CONFIRMATIONS as usize + 1] = [0, 500, 792, 1000];

/// `1000 · log2(1 + k / 16)` for k = 0..16.
const LOG2_MILLI: [u64; 16] = [
    0, 87, 170, 248, 322, 392, 459, 524, 585, 644, 700, 755, 807, 858, 907, 954,
];

/// `1000 · log10(n)`, within 30, in integers: the bit length gives log2's
/// integer part, the next four bits its fraction.
fn log10_milli(n: usize) -> u64 {
    if n <= 1 {
        return 0;
    }
    let n = n as u64;
    let exponent = 63 - n.leading_zeros();
    let fraction = if exponent >= 4 {
        (n >> (exponent - 4)) & 0xf
    } else {
        (n << (4 - exponent)) & 0xf
    };
    let log2 = u64::from(exponent) * 1000 + LOG2_MILLI.get(fraction as usize).copied().unwrap_or(0);
    // log10(2) = 0.30103.
    log2 * 30_103 / 100_000
}

impl<S: Storage, R: Rng> Node<S, R> {
    /// How long a suspicion with `confirmations` lasts here, local health
    /// included (integer arithmetic: it is computed for every tracked
    /// suspect whenever the next deadline is asked for).
    pub(super) fn suspicion_timeout(&self, confirmations: u8) -> Duration {
        let members = self.endpoint_count() + 1;
        let interval = u64::try_from(self.config.gossip_interval.as_micros()).unwrap_or(u64::MAX);
        let decades = log10_milli(members).max(2000);
        let min = (interval.saturating_mul(self.suspicion_mult_milli) / 1000)
            .saturating_mul(decades)
            / 1000;
        let max = min.saturating_mul(u64::from(self.config.suspicion_max_mult));
        let fraction = CONFIRMED_PER_MILLE
            .get(usize::from(confirmations.min(MAX_CONFIRMATIONS)))
            .copied()
            .unwrap_or(1000);
        let micros = max - ((max - min) / 1000).saturating_mul(fraction);
        Duration::from_micros(micros.saturating_mul(u64::from(self.health) + 1))
    }

    /// Whether slot `idx` is suspected.
    fn is_suspected(&self, idx: u32) -> bool {
        self.peers
            .as_slice()
            .get(idx as usize)
            .is_some_and(|p| p.is_member() && p.liveness == Liveness::Suspect)
    }

    /// When the suspicion of slot `idx` times out, if it is suspected and
    /// not being probed by this node (then the probe decides).
    pub(super) fn suspicion_deadline(&self, idx: u32) -> Option<Instant> {
        let p = self.peers.as_slice().get(idx as usize)?;
        (p.is_member() && p.liveness == Liveness::Suspect && !self.prober.probing(idx))
            .then(|| p.since + self.suspicion_timeout(p.claim().confirmations()))
    }

    /// The suspicion of slot `idx` timed out here. DOWN if this node's own
    /// probe failed during it; otherwise it probes first (one probe, its
    /// failure a confirmation, its answer a new start), so that no node
    /// convicts a member on others' word alone when the member might have
    /// refuted to it. When every probe slot is taken, the suspicion waits
    /// the length of a probe and tries again. (Deaths heard from others are
    /// taken as they come, so a real death spreads meanwhile.)
    fn suspicion_over(&mut self, now: Instant, idx: u32) {
        let confirmed = self
            .peers
            .as_slice()
            .get(idx as usize)
            .is_some_and(|p| p.doubt & doubt::CONFIRMED != 0);
        if confirmed {
            self.convict(now, idx);
            return;
        }
        self.start_probe(now, idx, super::probe::Cause::Extra);
        if !self.prober.probing(idx) {
            // Its deadline moves to a probe's length from now.
            let wait = self.probe_timeout().saturating_mul(3);
            let late = self
                .suspicion_deadline(idx)
                .map_or(Duration::ZERO, |t| now - t);
            if let Some(p) = self.peers.as_mut_slice().get_mut(idx as usize) {
                p.since = p.since + late + wait;
            }
        }
    }

    /// Raises or confirms the suspicion of slot `idx` after this node's own
    /// probe of it failed: a suspicion at the incarnation known, with this
    /// node's confirmer bit (merged into one heard from others, it is one
    /// more confirmation).
    pub(super) fn suspect(&mut self, now: Instant, idx: u32) {
        if now < self.pause_grace_until {
            return;
        }
        let Some(p) = self.peers.as_mut_slice().get_mut(idx as usize) else {
            return;
        };
        if !p.is_member() || p.has_left() {
            return;
        }
        let generation = p.state.generation();
        match p.liveness {
            Liveness::Alive => {}
            Liveness::Suspect if p.doubt & doubt::CONFIRMED == 0 => {}
            _ => return,
        }
        let claim = Claim {
            confirmers: self.confirmer_bit,
            ..Claim::new(p.incarnation, Status::Suspect)
        };
        self.stats.suspicions_raised += 1;
        self.merge_claim(now, idx, generation, claim, super::Source::Own);
        if let Some(p) = self.peers.as_mut_slice().get_mut(idx as usize) {
            p.doubt |= doubt::CONFIRMED;
        }
    }

    /// Ends every tracked suspicion that timed out (the round's sweep takes
    /// the others), unless this node is recovering from a pause of its own:
    /// see [`suspicion_over`](Self::suspicion_over).
    pub(super) fn expire_suspicions(&mut self, now: Instant) {
        if now < self.pause_grace_until {
            return;
        }
        let mut k = 0;
        while let Some(&idx) = self.suspects.get(k) {
            if !self.is_suspected(idx) {
                self.suspects.swap_remove(k);
                continue;
            }
            k += 1;
            if self.suspicion_deadline(idx).is_some_and(|t| now >= t) {
                self.suspicion_over(now, idx);
            }
        }
    }

    /// The round's sweep: a suspect not tracked to the instant whose
    /// suspicion timed out.
    pub(super) fn sweep_suspect(&mut self, now: Instant, idx: u32) {
        if now >= self.pause_grace_until && self.suspicion_deadline(idx).is_some_and(|t| now >= t) {
            self.suspicion_over(now, idx);
        }
    }

    /// The suspicion of slot `idx` timed out: DOWN at the incarnation known.
    pub(super) fn convict(&mut self, now: Instant, idx: u32) {
        let Some(p) = self.peers.as_slice().get(idx as usize) else {
            return;
        };
        if p.liveness != Liveness::Suspect {
            return;
        }
        let generation = p.state.generation();
        let claim = Claim::new(p.incarnation, Status::Down);
        self.stats.convictions += 1;
        self.merge_claim(now, idx, generation, claim, super::Source::Own);
    }

    /// The earliest tracked suspicion timeout.
    pub(super) fn next_suspicion_deadline(&self) -> Option<Instant> {
        self.suspects
            .iter()
            .filter_map(|&idx| self.suspicion_deadline(idx))
            .min()
    }

    /// Starts tracking a new suspect's timeout (when there is room).
    pub(super) fn track_suspect(&mut self, idx: u32) {
        if !self.suspects.contains(&idx) {
            let _ = self.suspects.push(idx);
        }
    }

    /// Local health got worse (a missed NACK, a refutation, a late round).
    pub(super) fn health_worse(&mut self) {
        self.health = (self.health + 1).min(MAX_HEALTH);
    }

    /// Local health got better (a probe answered).
    pub(super) fn health_better(&mut self) {
        self.health = self.health.saturating_sub(1);
    }
}

#[cfg(test)]
mod tests {
    use super::log10_milli;

    #[test]
    fn log10_is_close() {
        // log10 by bisection on 10^x (exp by its series), for reference.
        fn reference(x: f64) -> f64 {
            let pow10 = |x: f64| {
                let y = x * core::f64::consts::LN_10;
                let k = (y / 8.0) as i32 + 1;
                let r = y / f64::from(1 << k);
                let (mut term, mut sum) = (1.0, 1.0);
                for i in 1..30 {
                    term *= r / f64::from(i);
                    sum += term;
                }
                for _ in 0..k {
                    sum *= sum;
                }
                sum
            };
            let (mut lo, mut hi) = (0.0f64, 10.0f64);
            for _ in 0..60 {
                let mid = (lo + hi) / 2.0;
                if pow10(mid) < x {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            lo
        }
        for n in [
            1usize, 2, 3, 7, 10, 99, 100, 1000, 1023, 1024, 10_000, 123_456,
        ] {
            let want = reference(n as f64) * 1000.0;
            let got = log10_milli(n) as f64;
            assert!(
                (got - want).abs() <= 30.0,
                "log10({n}) = {got}, want {want}"
            );
        }
    }
}
