//! Catch-up bursts: a SYN whose sender lacks more endpoints on its range than
//! one ACK carries (a joiner, a node back from a partition or a restart) is
//! answered with an ACK and a paced burst of CATCH-UP datagrams holding those
//! endpoints whole, in ring order: those its digests do not mention or, for
//! a sync's SYN, those its [`Filter`] does not hold. Each says where the
//! burst got to, so the receiver's next SYN resumes there; the last one of a
//! burst that did not cover the range, or whose receiver lacked most of it
//! (and so likely lacks as much beyond), asks at once for a sync's SYN from
//! there. A lost datagram leaves a gap that the next SYN over that stretch
//! finds (its endpoints are still missing there), so nothing is
//! retransmitted.
//!
//! What bounds a burst: at most [`Config::catch_up_datagrams`] a round in
//! all, paced evenly through the round; a quarter of them per burst; half of
//! them a round to one peer; [`SOURCES_PER_ROUND`] peers a round;
//! [`MAX_BURSTS`] bursts queued. When the cluster authenticates, only a
//! member's SYN (sealed, fresh, from an endpoint in the table) gets a burst,
//! so a forged or replayed SYN gets none; without authentication, a forged
//! source gets no more than a member would.

use super::*;
#[cfg(feature = "catch-up")]
use crate::wire::CatchUpWriter;

/// Bursts queued at once; a far-behind SYN beyond them gets a plain ACK
/// (one slot without the `catch-up` feature, never used).
pub(super) const MAX_BURSTS: usize = if cfg!(feature = "catch-up") { 4 } else { 1 };

/// Peers served a round.
pub(super) const SOURCES_PER_ROUND: usize = 8;

/// Endpoints missing from a SYN's range from which its sender is far behind
/// (about what one ACK carries of them).
#[cfg(feature = "catch-up")]
pub(super) const FAR_BEHIND: usize = 16;

/// The SYN's mentions a burst remembers (a 1400-byte SYN holds about 85).
const MENTIONED: usize = if cfg!(feature = "catch-up") { 128 } else { 1 };

/// The bytes of a SYN's filter a burst keeps.
const FILTER: usize = if cfg!(feature = "catch-up") {
    wire::MAX_FILTER_BYTES
} else {
    0
};

/// SYNs a node sends a round when bursts ask for them.
const ASKED_PER_ROUND: u8 = 16;

/// One burst: the rest of a SYN's range, walked clockwise.
#[derive(Debug)]
#[cfg_attr(not(feature = "catch-up"), allow(dead_code))]
pub(super) struct Burst {
    to: SocketAddr,
    /// The range's start and its length minus one (the last distance).
    start: u32,
    span: u32,
    /// Distance from `start` of the next position to look at.
    pos: u32,
    /// Datagrams left.
    left: u16,
    /// Distances from `start` of the endpoints the SYN mentioned, sorted.
    mentioned: heapless::Vec<u32, MENTIONED>,
    /// The SYN's filter (salt and bits), when it had one: what it holds
    /// is not sent.
    salt: u32,
    filter: heapless::Vec<u8, FILTER>,
    /// Whether the burst's last datagram asks for the next SYN even when
    /// it covered the range (a sender that lacks most of its range likely
    /// lacks as much beyond it).
    chain: bool,
}

impl Burst {
    /// Whether the SYN mentioned the endpoint at `position`, `distance`
    /// from the start.
    #[cfg(feature = "catch-up")]
    fn mentions(&self, position: u32, distance: u32) -> bool {
        self.mentioned.binary_search(&distance).is_ok()
            || (!self.filter.is_empty() && Filter::new(self.salt, &self.filter).contains(position))
    }
}

/// The bursts in flight and this round's accounts.
#[derive(Debug, Default)]
#[cfg_attr(not(feature = "catch-up"), allow(dead_code))]
pub(super) struct CatchUps {
    bursts: heapless::Deque<Burst, MAX_BURSTS>,
    /// When the next CATCH-UP may go (pacing).
    next_at: Instant,
    /// Datagrams granted this round, per peer.
    served: heapless::Vec<(SocketAddr, u16), SOURCES_PER_ROUND>,
    /// SYNs sent this round because a burst asked for them.
    asked: u8,
    /// What this round's filters covered: the ring from `covered_from`
    /// on, `covered` positions (2^32: all of it).
    covered_from: u32,
    covered: u64,
}

impl CatchUps {
    pub(super) fn new_round(&mut self) {
        self.served.clear();
        self.asked = 0;
        self.covered = 0;
    }

    /// Where a filter meant to start at `start` starts: past what this
    /// round's filters covered, if it falls there and they did not cover
    /// the whole ring (their bursts are on their way).
    #[cfg(feature = "catch-up")]
    pub(super) fn filter_start(&self, start: u32) -> u32 {
        match self.offset_in_covered(start) {
            Some(_) => self.covered_from.wrapping_add(self.covered as u32),
            None => start,
        }
    }

    /// How far into this round's covered stretch `position` lies, if it
    /// lies there (never once the whole ring is covered).
    #[cfg(feature = "catch-up")]
    fn offset_in_covered(&self, position: u32) -> Option<u64> {
        let into = u64::from(position.wrapping_sub(self.covered_from));
        (self.covered <= u64::from(u32::MAX) && into < self.covered).then_some(into)
    }

    /// A burst asks for the next filter from `next`: what this round's
    /// filters covered ends there (the burst did not get further).
    #[cfg(feature = "catch-up")]
    fn resume_at(&mut self, next: u32) {
        if let Some(into) = self.offset_in_covered(next) {
            self.covered = into;
        }
    }

    /// A filter covered `range`.
    #[cfg(feature = "catch-up")]
    pub(super) fn filtered(&mut self, range: RingRange) {
        if self.covered > u64::from(u32::MAX) {
            // The whole ring, for the rest of the round.
            return;
        }
        let len = u64::from(range.end.wrapping_sub(range.start)) + 1;
        let len = if range.is_whole() { 1 << 32 } else { len };
        if self.covered > 0 && self.covered_from.wrapping_add(self.covered as u32) == range.start {
            self.covered += len;
        } else {
            self.covered_from = range.start;
            self.covered = len;
        }
    }

    /// When the next CATCH-UP is due, if one is queued (never without the
    /// `catch-up` feature).
    pub(super) fn deadline(&self) -> Option<Instant> {
        if cfg!(feature = "catch-up") {
            (!self.bursts.is_empty()).then_some(self.next_at)
        } else {
            None
        }
    }

    /// How many datagrams a burst to `to` may have now (0: none).
    #[cfg(feature = "catch-up")]
    fn grant(&self, to: SocketAddr, per_round: u16) -> u16 {
        // One burst to a peer at a time: a second SYN over the same range
        // would only send the same endpoints again.
        if per_round == 0 || self.bursts.is_full() || self.bursts.iter().any(|b| b.to == to) {
            return 0;
        }
        let per_burst = (per_round / 4).max(1);
        let per_peer = (per_round / 2).max(1);
        match self.served.iter().find(|(a, _)| *a == to) {
            Some(&(_, given)) => per_burst.min(per_peer.saturating_sub(given)),
            None if self.served.is_full() => 0,
            None => per_burst,
        }
    }

    #[cfg(feature = "catch-up")]
    fn record(&mut self, to: SocketAddr, datagrams: u16) {
        match self.served.iter_mut().find(|(a, _)| *a == to) {
            Some((_, given)) => *given = given.saturating_add(datagrams),
            // Room checked by `grant`.
            None => {
                let _ = self.served.push((to, datagrams));
            }
        }
    }

    /// Whether a burst's ask for one more SYN is taken this round.
    pub(super) fn take_ask(&mut self) -> bool {
        if self.asked >= ASKED_PER_ROUND {
            return false;
        }
        self.asked += 1;
        true
    }
}

impl<S: Storage, R: Rng> Node<S, R> {
    /// How far behind the SYN's sender is (its digests flagged
    /// [`flags::MENTIONED`], or its filter): `None` when it lacks fewer
    /// than [`FAR_BEHIND`] of the endpoints we know on its range;
    /// `Some(true)` when it lacks at least half of those seen, so it likely
    /// lacks as much off its range too. Stops at the [`FAR_BEHIND`]th
    /// missing one.
    #[cfg(feature = "catch-up")]
    fn far_behind(&self, syn: &Syn<'_>, local_mentioned: bool) -> Option<bool> {
        let range = syn.range;
        let mut missing =
            usize::from(!local_mentioned && range.contains(ring_position(&self.local)));
        let mut seen = missing;
        let span = range.end.wrapping_sub(range.start);
        let peers = self.peers.as_slice();
        for (position, i) in self.index.ring().clockwise(range.start) {
            if missing >= FAR_BEHIND || position.wrapping_sub(range.start) > span {
                break;
            }
            if syn.filter_holds(position) {
                seen += 1;
                continue;
            }
            if let Some(p) = peers.get(i as usize).filter(|p| p.is_member()) {
                seen += 1;
                if p.flags & flags::MENTIONED == 0 {
                    missing += 1;
                }
            }
        }
        (missing >= FAR_BEHIND).then_some(missing * 2 >= seen)
    }

    /// Starts a burst to `to` for the SYN (`syn`, its digests flagged) when
    /// its sender is far behind and the budgets allow one; returns whether
    /// it did (its ACK then leaves the missing endpoints to the burst).
    #[cfg(feature = "catch-up")]
    pub(super) fn plan_burst(
        &mut self,
        to: SocketAddr,
        syn: &Syn<'_>,
        local_mentioned: bool,
        now: Instant,
    ) -> bool {
        let grant = self.catch_up.grant(to, self.config.catch_up_datagrams);
        if grant == 0 || !self.burst_allowed(to) {
            return false;
        }
        let Some(lacks_most) = self.far_behind(syn, local_mentioned) else {
            return false;
        };
        // The burst covers the SYN's range. A sender that lacks most of a
        // range short of the whole ring likely lacks as much beyond it: the
        // burst's end asks for its next SYN (a filter from where the burst
        // ended), which says what it has there.
        let start = syn.range.start;
        let span = syn.range.end.wrapping_sub(start);
        let mut mentioned = heapless::Vec::new();
        let mut filter = heapless::Vec::new();
        let mut salt = 0;
        if let Some(f) = syn.filter {
            if filter.extend_from_slice(f.bits()).is_err() {
                return false;
            }
            salt = f.salt();
        }
        for d in syn.digests {
            let distance = ring_position(&d.endpoint).wrapping_sub(start);
            if distance > span {
                continue;
            }
            // Kept sorted by insertion (a SYN lists a few dozen): no sort
            // routine in a microcontroller's flash.
            let at = mentioned.partition_point(|&m| m < distance);
            if mentioned.insert(at, distance).is_err() {
                // More than remembered: the rest are sent again, harmlessly.
                break;
            }
        }
        let burst = Burst {
            to,
            start,
            span,
            pos: 0,
            left: grant,
            mentioned,
            salt,
            filter,
            chain: lacks_most && !syn.range.is_whole(),
        };
        if self.catch_up.bursts.push_back(burst).is_err() {
            return false;
        }
        if self.catch_up.bursts.len() == 1 {
            self.catch_up.next_at = self.catch_up.next_at.max(now);
        }
        self.catch_up.record(to, grant);
        self.stats.catch_up_bursts += 1;
        true
    }

    /// Without the `catch-up` feature: no bursts.
    #[cfg(not(feature = "catch-up"))]
    pub(super) fn plan_burst(
        &mut self,
        _to: SocketAddr,
        _syn: &Syn<'_>,
        _local_mentioned: bool,
        _now: Instant,
    ) -> bool {
        false
    }

    /// Authenticated clusters burst only to members (a sealed, fresh SYN
    /// from an endpoint in the table: its reply goes to that endpoint).
    #[cfg(feature = "catch-up")]
    fn burst_allowed(&self, to: SocketAddr) -> bool {
        #[cfg(feature = "auth")]
        if self.auth.is_some() {
            return self.is_member(&to);
        }
        let _ = to;
        true
    }

    /// The next CATCH-UP, when one is due: its destination and size (`None`
    /// when the burst's range had nothing left to send).
    #[cfg(feature = "catch-up")]
    pub(super) fn write_catch_up(
        &mut self,
        now: Instant,
        buf: &mut [u8],
    ) -> Option<(SocketAddr, Option<usize>)> {
        if now < self.catch_up.next_at {
            return None;
        }
        let header = self.header();
        let burst = self.catch_up.bursts.front_mut()?;
        let to = burst.to;
        let Ok(mut w) = CatchUpWriter::new(buf, &header, &[]) else {
            self.catch_up.bursts.pop_front();
            return Some((to, Some(0)));
        };
        let peers = self.peers.as_slice();
        // Where the next datagram resumes, when this one fills up.
        let mut resume = None;
        for (position, i) in self
            .index
            .ring()
            .clockwise(burst.start.wrapping_add(burst.pos))
        {
            let distance = position.wrapping_sub(burst.start);
            if distance > burst.span || distance < burst.pos {
                // Past the range, or around the ring back to where we began.
                break;
            }
            if burst.mentions(position, distance) {
                continue;
            }
            let Some(p) = peers.get(i as usize).filter(|p| p.is_member()) else {
                continue;
            };
            let whole = p.state.item_count();
            let items = || p.state.items_above(Version(0));
            if w.push_whole_delta(p.addr(), p.state.generation(), p.claim(), items(), whole) {
                continue;
            }
            if w.deltas() == 0 {
                // Too large for a datagram of its own: what fits of it.
                w.push_delta(p.addr(), p.state.generation(), p.claim(), items());
                continue;
            }
            // Full: this endpoint starts the next datagram.
            resume = Some(distance);
            break;
        }
        burst.left = burst.left.saturating_sub(1);
        let last = resume.is_none() || burst.left == 0;
        let (next, more) = match resume {
            Some(d) => {
                burst.pos = d;
                (burst.start.wrapping_add(d), last)
            }
            // The range is covered.
            None => (
                burst.start.wrapping_add(burst.span).wrapping_add(1),
                burst.chain,
            ),
        };
        let sent = w.deltas();
        let size = w.finish(next, more);
        if last {
            self.catch_up.bursts.pop_front();
        }
        let spacing =
            self.config.gossip_interval / u32::from(self.config.catch_up_datagrams.max(1));
        self.catch_up.next_at = now + spacing;
        if sent == 0 {
            return Some((to, None));
        }
        self.stats.catch_up_endpoints += sent as u64;
        Some((to, Some(size)))
    }

    /// Without the `catch-up` feature: none to send.
    #[cfg(not(feature = "catch-up"))]
    pub(super) fn write_catch_up(
        &mut self,
        _now: Instant,
        _buf: &mut [u8],
    ) -> Option<(SocketAddr, Option<usize>)> {
        None
    }

    /// A CATCH-UP arrived from `sender` (its deltas already applied): the
    /// next SYN's stretch starts where the burst got to, and a burst that
    /// asks for more gets a sync's SYN (a filter) from there now.
    pub(super) fn caught_up(&mut self, sender: SocketAddr, next: u32, more: bool) {
        if !self.is_member(&sender) {
            return;
        }
        self.ring_cursor = next;
        if !more || !self.catch_up.take_ask() {
            return;
        }
        #[cfg(feature = "catch-up")]
        self.catch_up.resume_at(next);
        if self.syncs.push((sender, next, true)).is_err() {
            self.add_target(sender);
        }
    }
}
