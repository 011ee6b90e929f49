//! Head-of-line blocking in smoltcp's UDP sockets, and how the smoltcp and
//! embassy-net glue gets out of it.
//!
//! smoltcp sends a UDP socket's queue strictly in order. A datagram to an
//! address on the LAN whose hardware address is not in the neighbor cache
//! waits at the head of the queue while smoltcp asks for it (ARP, once a
//! second), and every datagram behind it waits too (smoltcp issue #594).
//! Gossip sends to members that are down (to notice their return) and to
//! seeds that may never have booted, so one dead board on the LAN would
//! silence every board that gossips to it, once its entry in their
//! neighbor caches expires (60 s).
//!
//! [`HeadOfLine`] watches the queue from outside: it remembers the oldest
//! datagram that may still be queued, and when the queue has not emptied
//! for [`STUCK_AFTER`], the glue clears the socket's queues (closes and
//! binds it again: the datagrams in them are lost, as a network may lose
//! them) and the head's destination is *shunned*: datagrams to it are
//! dropped for [`SHUN_FOR`], or until a datagram arrives from it (a board
//! that boots again asks for our address, which fills the neighbor cache).

use core::net::SocketAddr;
use core::time::Duration;

use gossip_core::Instant;

/// How long the send queue may stay non-empty before its head is taken to
/// be stuck: longer than an answered ARP request takes on a LAN, shorter
/// than smoltcp's one-second wait between ARP requests.
pub const STUCK_AFTER: Duration = Duration::from_millis(500);

/// How long a destination that blocked the queue is shunned, unless it is
/// heard from first. After that one datagram is tried again (and may cost
/// another [`STUCK_AFTER`] wait if it still does not answer).
pub const SHUN_FOR: Duration = Duration::from_secs(30);

/// Destinations shunned at once; when full, the one shunned longest ago
/// makes room.
const SHUNNED: usize = 4;

/// What to do with the next datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Verdict {
    /// Clear the socket's queues first: their head is stuck.
    pub(crate) clear: bool,
    /// Queue the datagram (not when its destination is shunned: drop it).
    pub(crate) send: bool,
}

/// What the glue counted about head-of-line blocking.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Times the socket's queues were cleared because a datagram to an
    /// unresolvable neighbor held them.
    pub cleared: u32,
    /// Datagrams dropped because their destination had held the queue.
    pub shunned: u32,
}

/// The watch on one socket's send queue.
#[derive(Clone, Debug, Default)]
pub(crate) struct HeadOfLine {
    /// The oldest datagram that may still be queued: its destination (when
    /// known) and when it was queued.
    head: Option<(Option<SocketAddr>, Instant)>,
    /// Destinations dropped until the instant.
    shunned: [Option<(SocketAddr, Instant)>; SHUNNED],
    stats: QueueStats,
}

impl HeadOfLine {
    pub(crate) fn stats(&self) -> QueueStats {
        self.stats
    }

    /// Before queueing a datagram to `to`; `queue_empty` is whether the
    /// socket's send queue is empty now.
    pub(crate) fn before_send(
        &mut self,
        now: Instant,
        to: SocketAddr,
        queue_empty: bool,
    ) -> Verdict {
        if queue_empty {
            self.head = None;
        }
        let clear = self
            .head
            .is_some_and(|(_, since)| now.saturating_duration_since(since) >= STUCK_AFTER);
        if clear {
            self.stuck(now);
        }
        let send = !self.is_shunned(now, to);
        if !send {
            self.stats.shunned = self.stats.shunned.saturating_add(1);
        } else if self.head.is_none() {
            self.head = Some((Some(to), now));
        }
        Verdict { clear, send }
    }

    /// The queue stayed full for [`STUCK_AFTER`] (a send waited that long):
    /// its head's destination is shunned and the caller clears the queues.
    pub(crate) fn stuck(&mut self, now: Instant) {
        if let Some((Some(dest), _)) = self.head {
            self.shun(now, dest);
        }
        self.head = None;
        self.stats.cleared = self.stats.cleared.saturating_add(1);
    }

    /// A datagram arrived from `from`: it answers, so it is not shunned.
    pub(crate) fn heard_from(&mut self, from: SocketAddr) {
        for slot in &mut self.shunned {
            if slot.is_some_and(|(a, _)| a == from) {
                *slot = None;
            }
        }
    }

    fn is_shunned(&self, now: Instant, to: SocketAddr) -> bool {
        self.shunned
            .iter()
            .flatten()
            .any(|&(a, until)| a == to && now < until)
    }

    fn shun(&mut self, now: Instant, dest: SocketAddr) {
        let until = now + SHUN_FOR;
        // The same address's slot, or a free one, or the oldest.
        let slot = self
            .shunned
            .iter()
            .position(|s| s.is_some_and(|(a, _)| a == dest))
            .or_else(|| self.shunned.iter().position(Option::is_none))
            .or_else(|| {
                let ends = self
                    .shunned
                    .iter()
                    .map(|s| s.map_or(now, |(_, until)| until));
                ends.enumerate()
                    .min_by_key(|&(_, until)| until)
                    .map(|(i, _)| i)
            });
        if let Some(slot) = slot.and_then(|i| self.shunned.get_mut(i)) {
            *slot = Some((dest, until));
        }
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

    const SEND: Verdict = Verdict {
        clear: false,
        send: true,
    };

    #[test]
    fn a_queue_that_moves_is_left_alone() {
        let mut h = HeadOfLine::default();
        // Non-empty at every send for seconds, but emptied in between.
        for t in (0..5_000).step_by(100) {
            assert_eq!(h.before_send(ms(t), a(2), true), SEND);
            assert_eq!(h.before_send(ms(t), a(3), false), SEND);
        }
        assert_eq!(h.stats(), QueueStats::default());
    }

    #[test]
    fn a_stuck_head_is_cleared_and_its_destination_shunned_until_heard_from() {
        let mut h = HeadOfLine::default();
        assert_eq!(h.before_send(ms(0), a(9), true), SEND); // the dead one
        assert_eq!(h.before_send(ms(100), a(2), false), SEND);
        assert_eq!(h.before_send(ms(499), a(2), false), SEND);
        assert_eq!(
            h.before_send(ms(500), a(2), false),
            Verdict {
                clear: true,
                send: true
            }
        );
        // a(9) is dropped; a(2) is the new head and moves.
        assert!(!h.before_send(ms(600), a(9), true).send);
        assert!(!h.before_send(ms(600 + 29_000), a(9), true).send);
        assert_eq!(
            h.stats(),
            QueueStats {
                cleared: 1,
                shunned: 2
            }
        );
        h.heard_from(a(9));
        assert_eq!(h.before_send(ms(600 + 29_001), a(9), true), SEND);
    }

    #[test]
    fn a_shun_ends_after_its_time() {
        let mut h = HeadOfLine::default();
        h.before_send(ms(0), a(9), true);
        h.stuck(ms(700)); // a send waited on a full queue
        assert!(!h.before_send(ms(701), a(9), true).send);
        assert!(h.before_send(ms(700) + SHUN_FOR, a(9), true).send);
    }

    #[test]
    fn the_oldest_shun_makes_room() {
        let mut h = HeadOfLine::default();
        for i in 0..=SHUNNED as u8 {
            let t = u64::from(i) * 1_000;
            h.before_send(ms(t), a(20 + i), true);
            h.stuck(ms(t + 600));
        }
        assert!(h.before_send(ms(10_000), a(20), true).send, "evicted");
        for i in 1..=SHUNNED as u8 {
            assert!(!h.before_send(ms(10_000), a(20 + i), true).send);
        }
    }
}
