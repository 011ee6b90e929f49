//! Membership summaries: every SYN carries its sender's [`Summary`] of the
//! endpoints it knows. A member whose summary differs from ours in some
//! segment of the ring gets a sync's SYN from a random point of that
//! segment. When a quarter or more of the segments differ (one of us is
//! far behind, as in a mass join), the SYN carries a
//! [`Filter`](crate::wire::Filter) of every endpoint we hold from there on,
//! as many as its bits cover (819 in a 1,400-byte datagram, where digests
//! cover about 85), and its answer (an ACK, or a burst when we lack many)
//! holds what the filter lacks; otherwise it carries digests, whose
//! versions and claims also mend what differs besides membership (a
//! refutation a lossy network lost). Its summary gets us a sync back, for
//! what the member lacks. An endpoint one node lacks is found in a round or two
//! wherever it lies on the ring, where the ring sweep alone, a datagram of
//! digests a SYN, takes about N / 60 SYNs. A round's filters start past the
//! stretch its earlier ones covered (their answers are on their way) until
//! they have covered the whole ring.

use super::*;
#[cfg(feature = "catch-up")]
use crate::wire::Summary;

impl<S: Storage, R: Rng> Node<S, R> {
    /// A SYN from `sender` (replies go to `to`) carried `theirs`: up to
    /// [`SYNCS_PER_SYN`] segments that differ each get a SYN (and at most
    /// [`SYNCS_PER_ROUND`] a round).
    #[cfg(feature = "catch-up")]
    pub(super) fn compare_summary(&mut self, sender: SocketAddr, to: SocketAddr, theirs: &Summary) {
        if self.syncs.iter().any(|(a, _, _)| *a == to) {
            return;
        }
        // Members only: a stranger's SYN gets its ACK, no more.
        if !self.is_member(&sender) {
            return;
        }
        // A SYN's stretch covers `MIN_STRETCH` members at least: a segment
        // that holds more is synced one part of that size at a time, a
        // random one each time.
        let per_segment = self.endpoint_count() / wire::SUMMARY_SEGMENTS + 1;
        let parts = per_segment.div_ceil(MIN_STRETCH).max(1) as u32;
        let mut from = (self.rng.next_u32() as usize) % wire::SUMMARY_SEGMENTS;
        // Far apart (a quarter of the segments differ): a filter covers
        // more at once. Close: digests, whose claims and versions also
        // mend what the filter does not carry (a refutation lost to a
        // lossy network).
        let differing = (0..wire::SUMMARY_SEGMENTS)
            .filter(|&s| self.summary.0.get(s) != theirs.0.get(s))
            .count();
        let filter = differing * 4 >= wire::SUMMARY_SEGMENTS;
        for _ in 0..SYNCS_PER_SYN {
            if usize::from(self.synced) >= self.syncs_per_round() {
                return;
            }
            let Some(segment) = self.summary.first_difference(theirs, from) else {
                return;
            };
            // Around the ring back to a segment already queued: done.
            let queued =
                |&(a, s, _): &(SocketAddr, u32, bool)| a == to && Summary::segment(s) == segment;
            if self.syncs.iter().any(queued) {
                return;
            }
            from = segment + 1;
            let part = self.rng.next_u32() % parts;
            let offset = ((1u64 << 26) * u64::from(part) / u64::from(parts)) as u32;
            if self
                .syncs
                .push((to, Summary::segment_start(segment) | offset, filter))
                .is_err()
            {
                return;
            }
            self.synced += 1;
            self.stats.summary_syncs += 1;
        }
    }

    /// Summary syncs a round: [`SYNCS_PER_ROUND`] with rounds of a second
    /// or longer, proportionally fewer with shorter ones (at least one).
    /// Syncs are repair traffic, three datagrams an exchange and bursts
    /// besides: budgeted by the second, as Cassandra gossips once a second
    /// and memberlist pushes and pulls every 30 s whatever its probe
    /// period, so that short rounds do not multiply them. (500 nodes in
    /// one process on two cores, at 100 ms rounds, 32 a round: the joining
    /// nodes' event loops fell behind, probes failed, and thousands of live
    /// members were marked down.)
    #[cfg(feature = "catch-up")]
    pub(super) fn syncs_per_round(&self) -> usize {
        let micros = u64::try_from(self.config.gossip_interval.as_micros()).unwrap_or(u64::MAX);
        let scaled = (SYNCS_PER_ROUND as u64).saturating_mul(micros) / 1_000_000;
        usize::try_from(scaled)
            .unwrap_or(SYNCS_PER_ROUND)
            .clamp(1, SYNCS_PER_ROUND)
    }

    /// The next SYN owed to a peer whose summary differs: to whom, and
    /// where its stretch starts.
    #[cfg(feature = "catch-up")]
    pub(super) fn next_sync(&mut self) -> Option<(SocketAddr, u32, bool)> {
        let (to, start, filter) = self.syncs.pop()?;
        let start = if filter {
            self.catch_up.filter_start(start)
        } else {
            start
        };
        Some((to, start, filter))
    }

    /// Without the `catch-up` feature: no syncs.
    #[cfg(not(feature = "catch-up"))]
    pub(super) fn next_sync(&mut self) -> Option<(SocketAddr, u32, bool)> {
        None
    }
}
