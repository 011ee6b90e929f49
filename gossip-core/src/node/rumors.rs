//! Membership rumors: every liveness change a node learns (suspect, down,
//! left, a refutation, a restart) rides piggyback on every datagram it
//! sends to a member (but SHUTDOWN notices), fewest-sent first, until it has been sent about `λ · log10(N)`
//! times; hot news is also pushed at once, in NEWS datagrams, to a few random
//! members (rumor mongering), instead of waiting for the next round.
//!
//! A queued rumor names its endpoint (a table slot, or this node); what it
//! says is read from the table when it is sent, so a rumor always carries
//! the latest claim, and a newer change restarts its count.
//!
//! Rumors are news, not the record: a node that missed one still learns the
//! claim from anti-entropy, since every digest and delta carries it.

use core::net::SocketAddr;

use rand_core::Rng;

use super::{LOCAL_SLOT, Node};
use crate::claim::{Claim, Status};
use crate::table::{Seq, Storage};
use crate::wire::{self, Rumor};

/// Rumors waiting to be sent; past this, the most-sent one gives way.
pub(super) const RUMOR_QUEUE: usize = 32;

/// Rumors in one datagram at most.
pub(super) const MAX_PIGGYBACK: usize = 8;

/// A datagram's rumors.
pub(super) type Piggyback = heapless::Vec<Rumor, MAX_PIGGYBACK>;

/// NEWS datagrams pushed per round at most (the rest of the hot news waits
/// for piggybacking).
const PUSHES_PER_ROUND: u8 = 6;

/// Corrections owed at once (see [`Node::owe_correction`]); past this, the
/// rest wait for anti-entropy.
const OWED_CORRECTIONS: usize = 4;

/// Corrections sent per round at most: a member that keeps spreading stale
/// rumors (or a forged source) gets no more than this a round.
const CORRECTIONS_PER_ROUND: u8 = 4;

/// One queued rumor: whose (a slot, or [`LOCAL_SLOT`]) and how often sent.
#[derive(Clone, Copy, Debug)]
pub(super) struct Queued {
    who: u32,
    sends: u8,
}

/// The rumor queue and the push budget.
#[derive(Debug)]
pub(super) struct Rumors {
    queue: heapless::Vec<Queued, RUMOR_QUEUE>,
    /// NEWS datagrams still to push.
    pushes: u8,
    /// NEWS datagrams this round may still push.
    push_budget: u8,
    /// Members that spread a claim older than ours, and whose (a slot):
    /// each gets a NEWS datagram with ours.
    owed: heapless::Vec<(SocketAddr, u32), OWED_CORRECTIONS>,
    /// Corrections this round may still send.
    correction_budget: u8,
}

impl Default for Rumors {
    fn default() -> Self {
        Self {
            queue: heapless::Vec::new(),
            pushes: 0,
            push_budget: PUSHES_PER_ROUND,
            owed: heapless::Vec::new(),
            correction_budget: CORRECTIONS_PER_ROUND,
        }
    }
}

impl Rumors {
    /// A new round: the push budget is renewed.
    pub(super) fn new_round(&mut self) {
        self.push_budget = PUSHES_PER_ROUND;
        self.correction_budget = CORRECTIONS_PER_ROUND;
    }

    /// Forgets the rumors about slot `who` (it was vacated or reused).
    pub(super) fn forget(&mut self, who: u32) {
        self.queue.retain(|q| q.who != who);
        self.owed.retain(|&(_, w)| w != who);
    }
}

/// How many times a rumor is sent in a cluster of `members`: `mult *
/// ceil(log10(members + 1))`, at least `mult`.
pub(super) fn retransmit_limit(mult: u8, members: usize) -> u8 {
    // ceil(log10(members + 1)): the least k with 10^k >= members + 1.
    let x = members.saturating_add(1);
    let (mut k, mut p) = (0u8, 1usize);
    while p < x {
        p = p.saturating_mul(10);
        k += 1;
    }
    mult.saturating_mul(k).max(mult)
}

impl<S: Storage, R: Rng> Node<S, R> {
    /// Queues news about `who` (a slot or [`LOCAL_SLOT`]): sent afresh from
    /// now on; `hot` news is also pushed at once.
    pub(super) fn spread(&mut self, who: u32, hot: bool) {
        let r = &mut self.rumors;
        if let Some(q) = r.queue.iter_mut().find(|q| q.who == who) {
            q.sends = 0;
        } else if r.queue.push(Queued { who, sends: 0 }).is_err() {
            // Full: the most-sent rumor has had its chance.
            if let Some(q) = r.queue.iter_mut().max_by_key(|q| q.sends) {
                *q = Queued { who, sends: 0 };
            }
        }
        if hot {
            let fanout = self.config.push_fanout;
            r.pushes = r.pushes.max(fanout);
        }
    }

    /// The rumor a queue entry stands for now, if it still says anything.
    fn rumor_of(&self, who: u32) -> Option<Rumor> {
        if who == LOCAL_SLOT {
            return Some(Rumor {
                endpoint: self.local,
                generation: self.me.generation(),
                claim: self.own_claim(),
            });
        }
        let p = self.peers.as_slice().get(who as usize)?;
        p.is_member().then(|| Rumor {
            endpoint: p.addr(),
            generation: p.state.generation(),
            claim: p.claim(),
        })
    }

    /// The rumors for a datagram to `to`: first what we believe of `to`
    /// itself when that is not "alive" (so it can refute at once), then
    /// `extra`, then, to a member, the queued rumors sent least so far,
    /// within a quarter of the datagram. Counts the queued ones as sent.
    pub(super) fn piggyback(&mut self, to: SocketAddr, extra: &[Rumor]) -> Piggyback {
        let mut out = Piggyback::new();
        let budget = self.config.max_datagram_size / 4;
        let mut used = 0;
        let mut add = |out: &mut Piggyback, r: Rumor| -> bool {
            let len = wire::rumor_len(&r);
            if used + len > budget || out.iter().any(|o| o.endpoint == r.endpoint) {
                return false;
            }
            if out.push(r).is_ok() {
                used += len;
                true
            } else {
                false
            }
        };
        let member = self.endpoint(&to);
        let is_member = member.is_some();
        if let Some(p) = member {
            let claim = p.claim();
            if claim.status != Status::Alive {
                add(
                    &mut out,
                    Rumor {
                        endpoint: to,
                        generation: p.state.generation(),
                        claim,
                    },
                );
            }
        }
        for r in extra {
            add(&mut out, *r);
        }
        // Queued rumors go to members only: a stranger's datagram (forged
        // sources included) neither uses up their sends nor gets them.
        if !is_member {
            return out;
        }
        let limit = retransmit_limit(self.config.rumor_retransmit_mult, self.endpoint_count());
        // Fewest sends first: the queue sorted once by sends. An insertion
        // sort: at most 32 entries, and no general sort linked into
        // firmware for it (core's is about 2 KB of flash).
        let mut order: heapless::Vec<(u8, u32), RUMOR_QUEUE> = heapless::Vec::new();
        for q in &self.rumors.queue {
            let at = order
                .iter()
                .position(|&o| o > (q.sends, q.who))
                .unwrap_or(order.len());
            let _ = order.insert(at, (q.sends, q.who));
        }
        let mut sent: heapless::Vec<u32, MAX_PIGGYBACK> = heapless::Vec::new();
        let mut stale: heapless::Vec<u32, RUMOR_QUEUE> = heapless::Vec::new();
        for &(_, who) in &order {
            if out.is_full() {
                break;
            }
            let Some(rumor) = self.rumor_of(who) else {
                let _ = stale.push(who);
                continue;
            };
            // Already carried (as what we believe of `to`, or an extra).
            if out.iter().any(|o| o.endpoint == rumor.endpoint) {
                continue;
            }
            if !add(&mut out, rumor) {
                break;
            }
            let _ = sent.push(who);
        }
        if !sent.is_empty() || !stale.is_empty() {
            self.rumors.queue.retain_mut(|q| {
                if stale.contains(&q.who) {
                    return false;
                }
                if sent.contains(&q.who) {
                    q.sends = q.sends.saturating_add(1);
                }
                q.sends < limit
            });
        }
        out
    }

    /// Member `to` spread a rumor about slot `who` that an incarnation of
    /// ours beats: it missed a refutation (which rumors, sent a bounded
    /// number of times, can miss in a large cluster), and would otherwise
    /// hold its stale view until anti-entropy brings the endpoint's digest,
    /// about N / 300 rounds. It gets ours in a NEWS datagram.
    pub(super) fn owe_correction(&mut self, to: SocketAddr, who: u32) {
        let owed = &mut self.rumors.owed;
        if !owed.contains(&(to, who)) {
            let _ = owed.push((to, who));
        }
    }

    /// A NEWS datagram with a correction owed, if any and the round allows
    /// it: its destination and size (`None`: the claim is gone).
    pub(super) fn write_correction(
        &mut self,
        buf: &mut [u8],
    ) -> Option<(SocketAddr, Option<usize>)> {
        if self.rumors.correction_budget == 0 {
            return None;
        }
        let (to, who) = self.rumors.owed.pop()?;
        self.rumors.correction_budget -= 1;
        self.stats.corrections_sent += 1;
        let Some(rumor) = self.rumor_of(who) else {
            return Some((to, None));
        };
        let rumors = self.piggyback(to, &[rumor]);
        let size =
            wire::encode_probe(buf, &self.header(), &rumors, &wire::Probe::News).unwrap_or(0);
        Some((to, Some(size)))
    }

    /// A member to push hot news to now, if any push is due and the round
    /// allows it.
    pub(super) fn next_push(&mut self) -> Option<SocketAddr> {
        if self.rumors.pushes == 0 || self.rumors.push_budget == 0 || self.rumors.queue.is_empty() {
            return None;
        }
        self.rumors.pushes -= 1;
        self.rumors.push_budget -= 1;
        self.random_member(true)
    }

    /// This node's own claim: alive at its incarnation, or left once it
    /// shuts down.
    pub(super) fn own_claim(&self) -> Claim {
        let status = if self.is_shutting_down() {
            Status::Left
        } else {
            Status::Alive
        };
        Claim::new(self.incarnation, status)
    }
}

#[cfg(test)]
mod tests {
    use super::retransmit_limit;

    #[test]
    fn retransmits_grow_with_the_log_of_the_cluster() {
        assert_eq!(retransmit_limit(4, 0), 4);
        assert_eq!(retransmit_limit(4, 8), 4);
        assert_eq!(retransmit_limit(4, 9), 4);
        assert_eq!(retransmit_limit(4, 10), 8);
        assert_eq!(retransmit_limit(4, 99), 8);
        assert_eq!(retransmit_limit(4, 100), 12);
        assert_eq!(retransmit_limit(4, 999), 12);
        assert_eq!(retransmit_limit(4, 10_000), 20);
    }
}
