//! The probe cycle (SWIM): each round a node pings one member, taken in
//! turn from its own order of the members; an answer within the probe
//! timeout proves the member alive. No answer: a second PING goes to it,
//! and `indirect_probes` other members are asked to ping it (PING-REQ) and
//! relay its answer, or a NACK when they get none. No answer within two
//! more probe timeouts either (a late direct answer still counts): the
//! member is suspected ([`suspicion`](super::suspicion)). A probe lasts
//! three probe timeouts at most, so with the default (a tenth of a round,
//! up to half a round as measured) it is usually over before the next
//! round's; the next cycle probe waits for the last one to end.
//!
//! The probe timeout is the configured one unless direct probes' measured
//! round trips say to wait longer (`srtt + 4 · rttvar`, as TCP's
//! retransmission timer, at most half a round): a round trip takes in both
//! nodes' event loops, so on overloaded hosts, or across a slow network,
//! probes wait as long as answers really take instead of failing and
//! raising suspicions of live members.
//!
//! The order is this node's own random permutation of the table's slots,
//! drawn anew for each full cycle and computed place by place (no list of
//! slots is kept); a slot added during a cycle lands at a random place in
//! it, as memberlist inserts into its probe list. Every member is probed by
//! every node once per cycle (about N rounds), and, every node's order
//! being independent, by some node about every round.
//!
//! Besides the cycle's probe, a node probes at once (at most
//! [`MAX_PROBES`] in flight): a member it hears suspected (each failure is
//! one more confirmation), a member whose phi passed the threshold (phi is
//! an early warning; nobody is convicted on it), and the live member it
//! gossiped to if no answer came from it within the probe timeout: a gossip
//! exchange is a probe that costs no datagram, so every member is checked
//! about twice a round, once by the cycle and once by the gossip.
//!
//! Helping others: a PING-REQ's target is pinged with a sequence number of
//! this node's; its answer is relayed as a PING-ACK with the requester's
//! number, and if none comes within this node's probe timeout, a NACK is
//! sent (Lifeguard: a requester missing NACKs learns that its own network or
//! process is the problem, not the target).

use core::net::SocketAddr;
use core::time::Duration;

use rand_core::Rng;

use super::Node;
use crate::table::{AddrIndex, Liveness, Seq, Storage, doubt};
use crate::time::Instant;
use crate::wire::Probe as Msg;

/// Probes in flight at most: the cycle's, and the extra ones.
pub(super) const MAX_PROBES: usize = 4;

/// PING-REQs this node relays at once at most; more are ignored (their
/// requesters count on the other helpers).
pub(super) const MAX_RELAYS: usize = 4;

/// Liveness messages waiting to be sent at most; past it, new ones are
/// dropped (and counted).
pub(super) const OUTBOX: usize = 16;

/// A round looks at up to twice this many places of the probe cycle to find
/// a member to probe: more than half of a cycle's places are slots of the
/// table, the rest are passed over without reading anything.
const MAX_STEPS: usize = 64;

/// Whose probe it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Cause {
    /// The cycle's probe of the round.
    Cycle,
    /// A member heard suspected, or past its phi threshold.
    Extra,
}

/// A probe in flight.
#[derive(Clone, Copy, Debug)]
pub(super) struct Probe {
    slot: u32,
    target: SocketAddr,
    seq: u32,
    /// When the PING went out (a direct answer's round trip is measured).
    sent: Instant,
    deadline: Instant,
    /// PING-REQs sent (0 while the direct ping is out).
    asked: u8,
    nacks: u8,
    indirect: bool,
    /// It was given one more timeout because this node ran late.
    late: bool,
    cause: Cause,
}

/// A PING-REQ being served.
#[derive(Clone, Copy, Debug)]
pub(super) struct Relay {
    requester: SocketAddr,
    requester_seq: u32,
    seq: u32,
    deadline: Instant,
}

/// A liveness message to send.
#[derive(Clone, Copy, Debug)]
pub(super) struct Outgoing {
    pub(super) to: SocketAddr,
    pub(super) msg: Msg,
}

/// A gossip target whose answer is awaited.
#[derive(Clone, Copy, Debug)]
pub(super) struct Watch {
    slot: u32,
    target: SocketAddr,
    deadline: Instant,
}

/// The probe cycle's state.
#[derive(Debug, Default)]
pub(super) struct Prober {
    probes: heapless::Vec<Probe, MAX_PROBES>,
    watch: Option<Watch>,
    relays: heapless::Vec<Relay, MAX_RELAYS>,
    outbox: heapless::Deque<Outgoing, OUTBOX>,
    /// The next place in the cycle, and how many places it has.
    next: usize,
    cycle_len: usize,
    /// The cycle's permutation: its key and bits (see [`cycle_slot`]).
    cycle_key: u64,
    cycle_bits: u32,
    /// Round trips of direct probes, smoothed.
    pub(super) rtt: RttEstimator,
}

/// Round trips of direct probes, smoothed as TCP's retransmission timer does
/// (RFC 6298): `srtt` and `rttvar` in microseconds, the first sample taken
/// whole. A round trip measures the whole path a probe takes: both
/// networks, and both nodes' event loops, so a node whose process or peers
/// run late learns to wait longer.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct RttEstimator {
    /// `(srtt, rttvar)`, once a sample came.
    smoothed: Option<(u64, u64)>,
}

impl RttEstimator {
    /// One round trip measured.
    pub(super) fn sample(&mut self, rtt: Duration) {
        let r = u64::try_from(rtt.as_micros()).unwrap_or(u64::MAX);
        self.smoothed = Some(match self.smoothed {
            None => (r, r / 2),
            Some((srtt, rttvar)) => {
                let rttvar = (rttvar / 4).saturating_mul(3) + srtt.abs_diff(r) / 4;
                let srtt = (srtt / 8).saturating_mul(7) + r / 8;
                (srtt, rttvar)
            }
        });
    }

    /// `srtt + 4 · rttvar`, if any sample came.
    pub(super) fn timeout(&self) -> Option<Duration> {
        self.smoothed.map(|(srtt, rttvar)| {
            Duration::from_micros(srtt.saturating_add(rttvar.saturating_mul(4)))
        })
    }
}

impl Prober {
    /// The next liveness message to send.
    pub(super) fn next_outgoing(&mut self) -> Option<Outgoing> {
        self.outbox.pop_front()
    }

    /// Whether slot `idx` is being probed.
    pub(super) fn probing(&self, idx: u32) -> bool {
        self.probes.iter().any(|p| p.slot == idx)
    }

    /// The earliest probe, watch or relay deadline.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        let probes = self.probes.iter().map(|p| p.deadline);
        let relays = self.relays.iter().map(|r| r.deadline);
        let watch = self.watch.map(|w| w.deadline);
        probes.chain(relays).chain(watch).min()
    }

    /// A datagram came from `sender`: the gossip target watched answered.
    pub(super) fn heard_from(&mut self, sender: SocketAddr) {
        if self.watch.is_some_and(|w| w.target == sender) {
            self.watch = None;
        }
    }

    /// Forgets the probes of slot `idx` (vacated: it may hold another
    /// endpoint next).
    pub(super) fn forget(&mut self, idx: u32) {
        self.probes.retain(|p| p.slot != idx);
        if self.watch.is_some_and(|w| w.slot == idx) {
            self.watch = None;
        }
    }
}

/// The slot number at `place` of a probe cycle over `0..2^bits` (`bits` at
/// most 32), a permutation drawn by `key`: six rounds of adding a key,
/// multiplying by an odd one and folding the high half into the low, each
/// step a bijection on `bits`-bit numbers. Three rounds leave structure
/// that shows: crashes in 100-node simulations are seen about 0.4 s later
/// on average (20 seeds) than with a shuffled list; six are as good.
fn cycle_slot(place: u32, bits: u32, key: u64) -> u32 {
    // In 32 bits (one instruction a step on a microcontroller): modulo
    // 2^32 is modulo 2^bits too, once masked.
    let mask = u32::MAX.checked_shr(32 - bits).unwrap_or(0);
    let shift = bits / 2 + 1;
    let mut x = place & mask;
    let mut round = key;
    for _ in 0..6 {
        x = x.wrapping_add((round >> 32) as u32) & mask;
        x = x.wrapping_mul(round as u32 | 1) & mask;
        x ^= x >> shift;
        round = round.rotate_left(11);
    }
    x
}

impl<S: Storage, R: Rng> Node<S, R> {
    /// This node's probe timeout: the configured one, or longer when
    /// measured round trips say so (`srtt + 4 · rttvar`, at most half a
    /// round), times local health. Before the first round trip is measured,
    /// half a round (as TCP starts from a long timeout: a node that just
    /// started, often with many others, knows nothing of the network yet).
    pub(super) fn probe_timeout(&self) -> Duration {
        let floor = self.config.probe_timeout();
        let ceiling = floor.max(self.config.gossip_interval / 2);
        let measured = self.prober.rtt.timeout().unwrap_or(ceiling);
        measured
            .clamp(floor, ceiling)
            .saturating_mul(u32::from(self.health) + 1)
    }

    /// The round's probe: the next member of the cycle, unless the last
    /// round's is still out.
    ///
    /// A cycle visits every slot number below a power of two at least the
    /// table's length once, in an order drawn for the cycle ([`cycle_slot`]),
    /// and probes the live members among them: each member once a cycle, in
    /// a random order, as SWIM's shuffled round-robin does, with no list of
    /// the slots to keep. A slot added during a cycle is visited in it if
    /// its number is in the cycle's range (the table grew within its power
    /// of two) and its place is still ahead: a random place, as SWIM
    /// inserts newcomers.
    pub(super) fn probe_cycle(&mut self, now: Instant) {
        if self.prober.probes.iter().any(|p| p.cause == Cause::Cycle) {
            return;
        }
        let len = self.peers.as_slice().len();
        for _ in 0..2 * MAX_STEPS {
            if self.prober.next >= self.prober.cycle_len {
                if len == 0 {
                    return;
                }
                let cycle_len = len.next_power_of_two();
                self.prober.cycle_bits = cycle_len.trailing_zeros();
                self.prober.cycle_len = cycle_len;
                self.prober.cycle_key = self.rng.next_u64();
                self.prober.next = 0;
            }
            let place = self.prober.next as u32;
            self.prober.next += 1;
            let idx = cycle_slot(place, self.prober.cycle_bits, self.prober.cycle_key);
            let probeable = self
                .peers
                .as_slice()
                .get(idx as usize)
                .is_some_and(|p| p.is_member() && p.is_alive());
            if probeable && !self.prober.probing(idx) {
                self.start_probe(now, idx, Cause::Cycle);
                return;
            }
        }
    }

    /// Probes slot `idx` now, if it is not being probed and there is room.
    pub(super) fn start_probe(&mut self, now: Instant, idx: u32, cause: Cause) {
        let Some(p) = self.peers.as_slice().get(idx as usize) else {
            return;
        };
        if !p.is_member()
            || p.has_left()
            || self.prober.probing(idx)
            || self.prober.probes.is_full()
        {
            return;
        }
        let target = p.addr();
        // Random: a stranger cannot guess it to forge an answer.
        // (Even: the retry's PING has the odd one next to it.)
        let seq = self.rng.next_u32() & !1;
        let probe = Probe {
            slot: idx,
            target,
            seq,
            sent: now,
            deadline: now + self.probe_timeout(),
            asked: 0,
            nacks: 0,
            indirect: false,
            late: false,
            cause,
        };
        // Not started when the PING cannot be queued (it would fail, and
        // suspect a member no network lost a datagram of).
        if !self.prober.probes.is_full() && self.send_liveness(target, Msg::Ping { seq }) {
            let _ = self.prober.probes.push(probe);
            self.stats.probes_sent += 1;
        }
    }

    /// A SYN went to `target`: unless a datagram comes from it within the
    /// probe timeout, it is probed (one gossip target watched at a time,
    /// live members only).
    pub(super) fn watch_gossip(&mut self, now: Instant, target: SocketAddr) {
        if self.prober.watch.is_some() {
            return;
        }
        let Some(slot) = self.index.find(&target, self.peers.as_slice()) else {
            return;
        };
        let live = self
            .peers
            .as_slice()
            .get(slot as usize)
            .is_some_and(|p| p.is_member() && p.is_alive());
        if live && !self.prober.probing(slot) {
            self.prober.watch = Some(Watch {
                slot,
                target,
                deadline: now + self.probe_timeout(),
            });
        }
    }

    /// Queues a liveness message; false (counted) when too many wait.
    pub(super) fn send_liveness(&mut self, to: SocketAddr, msg: Msg) -> bool {
        if self.prober.outbox.push_back(Outgoing { to, msg }).is_err() {
            self.stats.outbox_full += 1;
            return false;
        }
        true
    }

    /// A PING, PING-REQ, PING-ACK or NACK from `sender` (its identity),
    /// which came from `from` (where answers go). NEWS has no body.
    pub(super) fn handle_probe(
        &mut self,
        now: Instant,
        sender: SocketAddr,
        from: SocketAddr,
        msg: Msg,
    ) {
        match msg {
            Msg::Ping { seq } => {
                self.send_liveness(from, Msg::PingAck { seq });
            }
            Msg::PingReq { seq, target } => {
                // Served for members only, about members only: a stranger
                // cannot aim our PINGs at a third party.
                if self.endpoint(&sender).is_none() {
                    return;
                }
                if target == self.local {
                    // Asked to ping ourselves: we are alive.
                    self.send_liveness(from, Msg::PingAck { seq });
                    return;
                }
                if self.endpoint(&target).is_none() || self.prober.relays.is_full() {
                    return;
                }
                let own = self.rng.next_u32();
                let relay = Relay {
                    requester: from,
                    requester_seq: seq,
                    seq: own,
                    deadline: now + self.probe_timeout(),
                };
                if self.send_liveness(target, Msg::Ping { seq: own }) {
                    let _ = self.prober.relays.push(relay);
                }
            }
            // Answers count from members only (the target, or a helper).
            Msg::PingAck { .. } | Msg::Nack { .. } if self.endpoint(&sender).is_none() => {}
            Msg::PingAck { seq } => {
                if let Some(k) = self.prober.probes.iter().position(|p| p.seq == seq & !1) {
                    let probe = self.prober.probes.swap_remove(k);
                    self.health_better();
                    // From the target itself (not relayed by a helper), to
                    // the first PING: a round trip, late or not.
                    if sender == probe.target && seq & 1 == 0 {
                        self.prober.rtt.sample(now - probe.sent);
                    }
                    // A suspect answered us: alive to us whatever others say,
                    // and its suspicion starts over here (it has that long
                    // again to refute).
                    if let Some(p) = self.peers.as_mut_slice().get_mut(probe.slot as usize)
                        && p.is_member()
                        && p.addr() == probe.target
                        && p.liveness == Liveness::Suspect
                    {
                        p.doubt |= doubt::ANSWERED;
                        p.since = now;
                    }
                } else if let Some(k) = self.prober.relays.iter().position(|r| r.seq == seq) {
                    let r = self.prober.relays.swap_remove(k);
                    self.send_liveness(
                        r.requester,
                        Msg::PingAck {
                            seq: r.requester_seq,
                        },
                    );
                }
            }
            Msg::Nack { seq } => {
                if let Some(p) = self.prober.probes.iter_mut().find(|p| p.seq == seq) {
                    p.nacks = p.nacks.saturating_add(1);
                }
            }
            Msg::News => {}
        }
    }

    /// Moves probes and relays whose deadline passed: a direct ping
    /// unanswered asks helpers; an indirect probe unanswered suspects its
    /// target; a relay unanswered NACKs its requester.
    pub(super) fn probe_deadlines(&mut self, now: Instant) {
        if let Some(w) = self.prober.watch
            && now >= w.deadline
        {
            self.prober.watch = None;
            let same = self
                .peers
                .as_slice()
                .get(w.slot as usize)
                .is_some_and(|p| p.addr() == w.target);
            if same {
                self.start_probe(now, w.slot, Cause::Extra);
            }
        }
        let mut k = 0;
        while let Some(r) = self.prober.relays.get(k).copied() {
            if now >= r.deadline {
                self.prober.relays.swap_remove(k);
                self.send_liveness(
                    r.requester,
                    Msg::Nack {
                        seq: r.requester_seq,
                    },
                );
            } else {
                k += 1;
            }
        }
        let timeout = self.probe_timeout();
        let mut k = 0;
        while let Some(p) = self.prober.probes.get(k).copied() {
            if now < p.deadline {
                k += 1;
                continue;
            }
            if now - p.deadline > timeout && !p.late {
                // This node is running late (overloaded, or its task was
                // starved): the answer may be waiting, unread, in its own
                // socket. Its health worsens, and the probe gets one more
                // timeout, from now, before it counts as unanswered.
                self.health_worse();
                if let Some(q) = self.prober.probes.get_mut(k) {
                    q.late = true;
                    q.deadline = now + timeout;
                }
                k += 1;
                continue;
            }
            if !p.indirect {
                // A second PING of our own goes with the PING-REQs (as
                // memberlist's direct TCP attempt does): a lost datagram
                // on the direct path alone does not make a suspicion.
                self.send_liveness(p.target, Msg::Ping { seq: p.seq | 1 });
                let asked = self.ask_helpers(p.target, p.seq);
                // The indirect probes have two more probe timeouts (the
                // helpers' ping and the relays both ways).
                let deadline = now + self.probe_timeout().saturating_mul(2);
                if let Some(q) = self.prober.probes.get_mut(k) {
                    q.indirect = true;
                    q.asked = asked;
                    q.deadline = deadline;
                }
                k += 1;
                continue;
            }
            self.prober.probes.swap_remove(k);
            // Still the same member in that slot?
            let same = self
                .peers
                .as_slice()
                .get(p.slot as usize)
                .is_some_and(|q| q.is_member() && q.addr() == p.target);
            if p.nacks < p.asked {
                // Helpers owed NACKs that never came: we may be the problem.
                self.health_worse();
            }
            self.stats.probe_failures += 1;
            if same {
                self.suspect(now, p.slot);
            }
        }
    }

    /// Sends PING-REQs about `target` to up to `indirect_probes` random
    /// reachable members; returns how many.
    fn ask_helpers(&mut self, target: SocketAddr, seq: u32) -> u8 {
        let wanted = self.config.indirect_probes;
        let mut asked: heapless::Vec<SocketAddr, 8> = heapless::Vec::new();
        for _ in 0..u32::from(wanted) * 4 {
            if asked.len() >= usize::from(wanted) {
                break;
            }
            let Some(helper) = self.random_member(true) else {
                break;
            };
            if helper == target || asked.contains(&helper) {
                continue;
            }
            let _ = asked.push(helper);
        }
        let mut sent = 0;
        for helper in &asked {
            if self.send_liveness(*helper, Msg::PingReq { seq, target }) {
                self.stats.ping_reqs_sent += 1;
                sent += 1;
            }
        }
        sent
    }
}

#[cfg(test)]
mod tests {
    use super::cycle_slot;

    /// Every cycle visits each slot number below its power of two once, in
    /// an order that depends on the key.
    #[test]
    fn a_cycle_is_a_permutation_drawn_by_its_key() {
        for bits in 0..=12u32 {
            let n = 1usize << bits;
            let mut orders = alloc::vec::Vec::new();
            for key in [
                0x0123_4567_89ab_cdefu64,
                0x9e37_79b9_7f4a_7c15,
                0xdead_beef_cafe_f00d,
                0x5555_aaaa_3333_cccc,
            ] {
                let mut seen = alloc::vec![false; n];
                let order: alloc::vec::Vec<u32> =
                    (0..n as u32).map(|p| cycle_slot(p, bits, key)).collect();
                for &slot in &order {
                    let seen = seen.get_mut(slot as usize).unwrap();
                    assert!(!*seen, "bits {bits} key {key:#x}: slot {slot} twice");
                    *seen = true;
                }
                orders.push(order);
            }
            if n >= 8 {
                assert!(
                    orders.windows(2).all(|w| w[0] != w[1]),
                    "bits {bits}: two keys gave one order"
                );
                // Not the identity, nor close to it.
                let fixed = orders[2]
                    .iter()
                    .enumerate()
                    .filter(|(i, s)| *i as u32 == **s);
                assert!(fixed.count() <= n / 4 + 1, "bits {bits}");
            }
        }
        // The widest cycle: distinct slots too.
        let wide: alloc::collections::BTreeSet<u32> =
            (0..1000).map(|p| cycle_slot(p, 32, 7)).collect();
        assert_eq!(wide.len(), 1000);
    }
}
