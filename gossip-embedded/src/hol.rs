//! Head-of-line blocking in smoltcp's UDP sockets, and how the smoltcp and
//! embassy-net glue gets out of it.
//!
//! smoltcp sends a UDP socket's queue strictly in order. A datagram to an
//! address on the LAN whose hardware address is not in the neighbor cache
//! waits at the head of the queue while smoltcp asks for it (ARP, at most
//! one request a second for the whole interface), and every datagram
//! behind it waits too (smoltcp issue #594). Gossip sends to members that
//! are down (to notice their return) and to seeds that may never have
//! booted, so one dead board on the LAN would silence every board that
//! gossips to it, once its entry in their neighbor caches expires (60 s).
//!
//! [`HeadOfLine`] watches the queue from outside: it remembers the oldest
//! datagram that may still be queued, and when the queue has not emptied
//! for [`STUCK_AFTER`] (50 ms), the glue clears the socket's queues (closes
//! and binds it again: the datagrams in them are lost, as a network may
//! lose them) and the head's destination is *shunned*: datagrams to it are
//! dropped for [`SHUN_FIRST`], then twice as long each time it holds the
//! queue again, up to [`SHUN_MAX`], until a datagram arrives from it (a
//! board that boots again asks for our address, which fills the neighbor
//! cache). A live neighbor taken for dead (its ARP request waited behind
//! another's) is back within a second, even when it shuns us too.

use core::net::{SocketAddr, SocketAddrV4};
use core::time::Duration;

use gossip_core::Instant;

/// How long the send queue may stay non-empty before its head is taken to
/// be stuck: several times what an answered ARP request takes on a LAN,
/// and short beside the probe and suspicion times of 100 ms rounds, since
/// the node cannot answer anyone while its queue is held. A live neighbor
/// whose ARP request waits behind another (smoltcp asks at most once a
/// second) may be taken for dead: a few datagrams to it are lost, and the
/// shun ends with its next datagram.
pub const STUCK_AFTER: Duration = Duration::from_millis(50);

/// How long a destination that held the queue is first shunned: longer
/// than smoltcp waits between two ARP requests, so the next datagram to it
/// can ask at once.
pub const SHUN_FIRST: Duration = Duration::from_secs(1);

/// The longest shun: a board that stays dead costs one [`STUCK_AFTER`]
/// wait this often.
pub const SHUN_MAX: Duration = Duration::from_secs(32);

/// Destinations tracked at once; when full, the one whose shun ended
/// first makes room.
const SHUNNED: usize = 4;

/// What to do with the next datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Verdict {
    /// Clear the socket's queues first: their head is stuck.
    pub(crate) clear: bool,
    /// Queue the datagram (not when its destination is shunned: drop it).
    pub(crate) send: bool,
}

/// A destination that held the queue: until when it is shunned, and how
/// many times in a row it held the queue.
#[derive(Clone, Copy, Debug)]
struct Shun {
    addr: SocketAddrV4,
    until: Tick,
    strikes: u8,
}

/// Senders remembered (as many as [`SmallStorage`](crate::SmallStorage)
/// has peers); when full, the one heard from longest ago makes room.
const RECENT: usize = 16;

/// A destination heard from within this long is *fresh*: alive, so it is
/// given smoltcp's second to find its address and is never shunned.
pub const FRESH_FOR: Duration = Duration::from_secs(2);

/// The IPv4 senders heard from lately, and when: 12 bytes a sender.
#[derive(Clone, Debug, Default)]
pub(crate) struct Recent {
    senders: [Option<([u8; 4], u16, Tick)>; RECENT],
}

fn key(addr: SocketAddr) -> Option<([u8; 4], u16)> {
    match addr {
        SocketAddr::V4(v4) => Some((v4.ip().octets(), v4.port())),
        SocketAddr::V6(_) => None,
    }
}

impl Recent {
    /// A datagram arrived from `from` at `now`.
    pub(crate) fn heard_from(&mut self, from: SocketAddr, now: Instant) {
        let (Some((ip, port)), now) = (key(from), Tick::of(now)) else {
            return;
        };
        let slot = crate::pick_slot(
            &self.senders,
            |&(i, p, _)| (i, p) == (ip, port),
            |&(_, _, t)| now.since(t),
        );
        if let Some(slot) = slot.and_then(|i| self.senders.get_mut(i)) {
            *slot = Some((ip, port, now));
        }
    }

    /// Whether `to` was heard from within [`FRESH_FOR`] of `now`. Settles
    /// the table: a sender heard from longer ago is kept at just that age,
    /// so its wrapping time never comes round to look fresh.
    pub(crate) fn is_fresh(&mut self, to: SocketAddr, now: Instant) -> bool {
        let now = Tick::of(now);
        let fresh = ms(FRESH_FOR);
        for (_, _, t) in self.senders.iter_mut().flatten() {
            if now.since(*t) >= fresh {
                *t = now.minus(FRESH_FOR);
            }
        }
        let Some((ip, port)) = key(to) else {
            return false;
        };
        self.senders
            .iter()
            .flatten()
            .any(|&(i, p, t)| (i, p) == (ip, port) && now.since(t) < fresh)
    }
}

/// A duration in whole milliseconds.
fn ms(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

/// A time in wrapping milliseconds of the node's clock: 4 bytes, where an
/// [`Instant`] takes 8. The tables keep their times within a few seconds
/// (or [`SHUN_MAX`]) of now, far inside the 24 days in which wrapping
/// comparisons hold.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Tick(u32);

impl Tick {
    fn of(now: Instant) -> Self {
        Tick((now.as_micros() / 1_000) as u32)
    }

    fn plus(self, d: Duration) -> Self {
        Tick(self.0.wrapping_add(ms(d)))
    }

    fn minus(self, d: Duration) -> Self {
        Tick(self.0.wrapping_sub(ms(d)))
    }

    /// Milliseconds from `earlier` to `self`; 0 if `earlier` is later.
    fn since(self, earlier: Tick) -> u32 {
        let d = self.0.wrapping_sub(earlier.0);
        if (d as i32) < 0 { 0 } else { d }
    }

    fn is_before(self, other: Tick) -> bool {
        (other.0.wrapping_sub(self.0) as i32) > 0
    }
}

/// One socket of a glue (a smoltcp handle, an embassy-net socket) and the
/// watch on its send queue.
#[derive(Debug)]
pub(crate) struct Lane<S> {
    pub(crate) socket: S,
    pub(crate) hol: HeadOfLine,
}

/// What both glues share: the main socket (it receives, and sends to the
/// destinations heard from in the last [`FRESH_FOR`]), the spare one (it
/// sends to the others), and the senders heard from lately that choose
/// between them.
#[derive(Debug)]
pub(crate) struct Lanes<S> {
    pub(crate) main: Lane<S>,
    pub(crate) spare: Lane<S>,
    recent: Recent,
}

impl<S> Lanes<S> {
    pub(crate) fn new(main: S, spare: S) -> Self {
        let lane = |socket| Lane {
            socket,
            hol: HeadOfLine::default(),
        };
        Self {
            main: lane(main),
            spare: lane(spare),
            recent: Recent::default(),
        }
    }

    /// The lane a datagram to `to` goes by, and whether `to` is fresh.
    pub(crate) fn route(&mut self, to: SocketAddr, now: Instant) -> (&mut Lane<S>, bool) {
        if self.recent.is_fresh(to, now) {
            (&mut self.main, true)
        } else {
            (&mut self.spare, false)
        }
    }

    /// A datagram arrived from `from` at `now`: it is fresh, and shunned
    /// by neither socket.
    pub(crate) fn heard_from(&mut self, from: SocketAddr, now: Instant) {
        self.main.hol.heard_from(from);
        self.spare.hol.heard_from(from);
        self.recent.heard_from(from, now);
    }

    /// What each socket's watch counted: (main, spare).
    pub(crate) fn stats(&self) -> (QueueStats, QueueStats) {
        (self.main.hol.stats(), self.spare.hol.stats())
    }
}

/// What the glue counted about head-of-line blocking.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Times the socket's queues were cleared because a datagram to an
    /// unresolvable neighbor held them.
    pub cleared: u32,
    /// Datagrams dropped because their destination had held the queue (or
    /// because the socket was still held after a clear).
    pub shunned: u32,
}

/// smoltcp's wait between ARP requests: one a second for the whole
/// interface, and a socket whose head's neighbor is missing sends nothing
/// for as long. After a clear the queue is not judged for this long: the
/// next head may be a live neighbor whose request waits for the dead one's
/// second to end.
pub(crate) const SILENCE: Duration = Duration::from_secs(1);

/// How long a datagram may wait at the head of the queue: [`STUCK_AFTER`];
/// to a destination heard from lately, smoltcp's [`SILENCE`] more (it asks
/// for at most one neighbor's address a second, so a live neighbor's may
/// wait behind a dead one's), and it is not shunned.
pub(crate) fn patience(fresh: bool) -> Duration {
    if fresh {
        STUCK_AFTER + SILENCE
    } else {
        STUCK_AFTER
    }
}

/// The oldest datagram that may still be queued.
#[derive(Clone, Copy, Debug)]
struct Head {
    /// Its destination, when known.
    to: Option<SocketAddrV4>,
    /// When it was queued.
    since: Tick,
    /// Whether its destination was heard from lately.
    fresh: bool,
}

/// The watch on one socket's send queue: about 100 bytes (IPv4 addresses:
/// both glues are IPv4 only).
#[derive(Clone, Debug, Default)]
pub(crate) struct HeadOfLine {
    head: Option<Head>,
    /// Destinations that held the queue and have not been heard from since.
    shunned: [Option<Shun>; SHUNNED],
    /// Until then the queue is not judged (see [`SILENCE`]).
    quiet_until: Option<Tick>,
    stats: QueueStats,
}

impl HeadOfLine {
    pub(crate) fn stats(&self) -> QueueStats {
        self.stats
    }

    /// Whether the queue was cleared less than [`SILENCE`] ago.
    fn quiet(&self, now: Tick) -> bool {
        self.quiet_until.is_some_and(|q| now.is_before(q))
    }

    /// Whether the head has waited its [`patience`], counted from the end
    /// of the quiet after a clear (a head queued then waited for smoltcp,
    /// not for its neighbor): the queue is stuck.
    fn due(&self, now: Tick) -> bool {
        if self.quiet(now) {
            return false;
        }
        self.head.is_some_and(|h| {
            let since = match self.quiet_until {
                Some(q) if h.since.is_before(q) => q,
                _ => h.since,
            };
            now.since(since) >= ms(patience(h.fresh))
        })
    }

    /// Keeps the times near `now`: a quiet that is over is forgotten (a
    /// head queued during it now counts from its end), and a shun that is
    /// over ends now, so no wrapping time comes round.
    fn settle(&mut self, now: Tick) {
        if let Some(q) = self.quiet_until
            && !now.is_before(q)
        {
            if let Some(h) = &mut self.head
                && h.since.is_before(q)
            {
                h.since = q;
            }
            self.quiet_until = None;
        }
        for s in self.shunned.iter_mut().flatten() {
            if !now.is_before(s.until) {
                s.until = now;
            }
        }
    }

    /// Before queueing a datagram to `to` (`fresh`: heard from lately);
    /// `queue_empty` is whether the socket's send queue is empty now.
    pub(crate) fn before_send(
        &mut self,
        now: Instant,
        to: SocketAddr,
        fresh: bool,
        queue_empty: bool,
    ) -> Verdict {
        let now = Tick::of(now);
        self.settle(now);
        if queue_empty {
            self.head = None;
        }
        let clear = self.due(now);
        if clear {
            self.stuck_at(now);
        }
        let to = v4(to);
        let send = !to.is_some_and(|to| self.is_shunned(now, to));
        if !send {
            self.stats.shunned = self.stats.shunned.saturating_add(1);
        } else if self.head.is_none() {
            self.head = Some(Head {
                to,
                since: now,
                fresh,
            });
        }
        Verdict { clear, send }
    }

    /// A datagram to `to` waited for room in the full queue as long as
    /// such a datagram may ([`patience`]). If the head has waited its own
    /// patience too, the queue is stuck: clear it (the head's destination
    /// is shunned unless fresh) and queue the datagram, unless `to` is
    /// shunned. Else the datagram is dropped and counted, as a full buffer
    /// drops.
    #[cfg(feature = "embassy-net")]
    pub(crate) fn timed_out(&mut self, now: Instant, to: SocketAddr) -> Verdict {
        let now = Tick::of(now);
        self.settle(now);
        if !self.due(now) {
            self.stats.shunned = self.stats.shunned.saturating_add(1);
            return Verdict {
                clear: false,
                send: false,
            };
        }
        self.stuck_at(now);
        let send = !v4(to).is_some_and(|to| self.is_shunned(now, to));
        if !send {
            self.stats.shunned = self.stats.shunned.saturating_add(1);
        }
        Verdict { clear: true, send }
    }

    fn stuck_at(&mut self, now: Tick) {
        if let Some(Head {
            to: Some(dest),
            fresh: false,
            ..
        }) = self.head
        {
            self.shun(now, dest);
        }
        self.head = None;
        self.quiet_until = Some(now.plus(SILENCE));
        self.stats.cleared = self.stats.cleared.saturating_add(1);
    }

    /// A datagram arrived from `from`: it answers, so it is not shunned.
    pub(crate) fn heard_from(&mut self, from: SocketAddr) {
        let Some(from) = v4(from) else {
            return;
        };
        for slot in &mut self.shunned {
            if slot.is_some_and(|s| s.addr == from) {
                *slot = None;
            }
        }
    }

    fn is_shunned(&self, now: Tick, to: SocketAddrV4) -> bool {
        self.shunned
            .iter()
            .flatten()
            .any(|s| s.addr == to && now.is_before(s.until))
    }

    fn shun(&mut self, now: Tick, addr: SocketAddrV4) {
        // The address's own slot (its shun doubles), or a free one, or the
        // one whose shun ended first.
        let slot = crate::pick_slot(
            &self.shunned,
            |s| s.addr == addr,
            // Ended (settled to end no later than now) ranks highest; the
            // one that ends soonest next.
            |s| u32::MAX - s.until.since(now),
        );
        let Some(slot) = slot else {
            return;
        };
        let Some(slot) = self.shunned.get_mut(slot) else {
            return;
        };
        let strikes = match slot {
            Some(s) if s.addr == addr => s.strikes.saturating_add(1),
            _ => 0,
        };
        let factor = 1u32 << strikes.min(5);
        let shun = SHUN_FIRST.saturating_mul(factor).min(SHUN_MAX);
        *slot = Some(Shun {
            addr,
            until: now.plus(shun),
            strikes,
        });
    }
}

fn v4(addr: SocketAddr) -> Option<SocketAddrV4> {
    match addr {
        SocketAddr::V4(v4) => Some(v4),
        SocketAddr::V6(_) => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn a(i: u8) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, i], 7000))
    }

    fn ms(t: u64) -> Instant {
        Instant::from_millis(t)
    }

    /// The queue found stuck at `now` (as a send that waited on it).
    fn stuck(h: &mut HeadOfLine, now: Instant) {
        let now = Tick::of(now);
        h.settle(now);
        h.stuck_at(now);
    }

    const SEND: Verdict = Verdict {
        clear: false,
        send: true,
    };

    #[test]
    fn a_queue_that_moves_is_left_alone() {
        let mut h = HeadOfLine::default();
        // Non-empty at every other send for seconds, but emptied in between.
        for t in (0..5_000).step_by(10) {
            assert_eq!(h.before_send(ms(t), a(2), false, true), SEND);
            assert_eq!(h.before_send(ms(t), a(3), false, false), SEND);
        }
        assert_eq!(h.stats(), QueueStats::default());
    }

    #[test]
    fn a_stuck_head_is_cleared_and_its_destination_shunned_until_heard_from() {
        let stuck = STUCK_AFTER.as_millis() as u64;
        let mut h = HeadOfLine::default();
        assert_eq!(h.before_send(ms(0), a(9), false, true), SEND); // the dead one
        assert_eq!(h.before_send(ms(1), a(2), false, false), SEND);
        assert_eq!(h.before_send(ms(stuck - 1), a(2), false, false), SEND);
        assert_eq!(
            h.before_send(ms(stuck), a(2), false, false),
            Verdict {
                clear: true,
                send: true
            }
        );
        // a(9) is dropped; a(2) is the new head and moves.
        assert!(!h.before_send(ms(stuck + 100), a(9), false, true).send);
        assert!(!h.before_send(ms(stuck + 999), a(9), false, true).send);
        assert_eq!(
            h.stats(),
            QueueStats {
                cleared: 1,
                shunned: 2
            }
        );
        h.heard_from(a(9));
        assert_eq!(h.before_send(ms(stuck + 1_000), a(9), false, true), SEND);
    }

    #[test]
    fn a_shun_doubles_while_the_destination_stays_silent() {
        let mut h = HeadOfLine::default();
        let mut t = 0;
        for shun in [1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 32_000] {
            assert!(h.before_send(ms(t), a(9), false, true).send, "at {t} ms");
            stuck(&mut h, ms(t + 60)); // a send waited on a full queue
            t += 60;
            assert!(!h.before_send(ms(t + shun - 1), a(9), false, true).send);
            t += shun;
        }
        // Heard from: the next shun is short again.
        h.heard_from(a(9));
        h.before_send(ms(t), a(9), false, true);
        stuck(&mut h, ms(t));
        assert!(h.before_send(ms(t) + SHUN_FIRST, a(9), false, true).send);
    }

    #[test]
    fn after_a_clear_the_queue_is_not_judged_for_smoltcps_second() {
        let stuck = STUCK_AFTER.as_millis() as u64;
        let mut h = HeadOfLine::default();
        h.before_send(ms(0), a(9), false, true);
        assert!(h.before_send(ms(stuck), a(2), false, false).clear);
        assert!(h.quiet(Tick::of(ms(stuck + 999))));
        // a(2) waits behind smoltcp's silence, not behind a dead head: it
        // is neither cleared nor shunned.
        assert_eq!(h.before_send(ms(stuck + 500), a(2), false, false), SEND);
        assert_eq!(h.before_send(ms(stuck + 999), a(3), false, false), SEND);
        assert!(!h.quiet(Tick::of(ms(stuck + 1_000))));
        // Judged again from the end of the silence on.
        assert_eq!(
            h.before_send(ms(stuck + 1_000 + stuck - 1), a(3), false, false),
            SEND
        );
        assert!(
            h.before_send(ms(stuck + 1_000 + stuck), a(3), false, false)
                .clear
        );
        assert_eq!(
            h.stats(),
            QueueStats {
                cleared: 2,
                shunned: 0
            }
        );
    }

    #[test]
    fn a_fresh_head_gets_smoltcps_second_and_is_not_shunned() {
        let mut h = HeadOfLine::default();
        h.before_send(ms(0), a(2), true, true);
        let wait = patience(true).as_millis() as u64;
        assert!(!h.before_send(ms(wait - 1), a(3), false, false).clear);
        assert!(h.before_send(ms(wait), a(3), false, false).clear);
        // Cleared, but a(2) is alive: datagrams to it still go.
        assert!(h.before_send(ms(wait + 1), a(2), true, true).send);
        assert_eq!(
            h.stats(),
            QueueStats {
                cleared: 1,
                shunned: 0
            }
        );
    }

    #[test]
    fn recent_senders_are_fresh_for_a_while() {
        let mut r = Recent::default();
        r.heard_from(a(2), ms(1_000));
        assert!(r.is_fresh(a(2), ms(1_000 + 1_999)));
        assert!(!r.is_fresh(a(2), ms(1_000 + 2_000)));
        assert!(!r.is_fresh(a(3), ms(1_000)));
        // Full: the one heard from longest ago makes room.
        for i in 0..RECENT as u8 {
            r.heard_from(a(10 + i), ms(2_000 + u64::from(i)));
        }
        assert!(!r.is_fresh(a(2), ms(2_100)), "evicted");
        assert!(r.is_fresh(a(10), ms(2_100)));
    }

    #[test]
    fn times_long_past_do_not_come_round() {
        let mut h = HeadOfLine::default();
        let mut r = Recent::default();
        h.before_send(ms(0), a(9), false, true);
        stuck(&mut h, ms(60));
        r.heard_from(a(3), ms(0));
        // Other traffic every 10 s for 49.7 days (2^32 ms and a little).
        let mut t = 0;
        while t < (1u64 << 32) + 100 {
            t += 10_000;
            h.before_send(ms(t), a(2), true, true);
            r.is_fresh(a(2), ms(t));
        }
        let now = ms(t + 10_000);
        assert!(
            h.before_send(now, a(9), false, true).send,
            "a(9)'s shun ended long ago"
        );
        assert!(!r.is_fresh(a(3), now), "a(3) was heard from long ago");
    }

    #[test]
    fn the_shun_that_ended_first_makes_room() {
        let mut h = HeadOfLine::default();
        for i in 0..=SHUNNED as u8 {
            let t = u64::from(i) * 100;
            h.before_send(ms(t), a(20 + i), false, true);
            stuck(&mut h, ms(t + 60));
        }
        assert!(h.before_send(ms(1_000), a(20), false, true).send, "evicted");
        for i in 1..=SHUNNED as u8 {
            assert!(!h.before_send(ms(1_000), a(20 + i), false, true).send);
        }
    }
}
