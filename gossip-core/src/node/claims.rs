//! Liveness claims heard from others and about this node: merged, refuted,
//! or doubted.

use super::*;

impl<S: Storage, R: Rng> Node<S, R> {
    /// A rumor arrived from `from` (the datagram's source): merged into what
    /// we believe (about ourselves: a suspicion or death is refuted). A rumor
    /// about a newer generation of a known endpoint (a restart) sends `from`
    /// a SYN: it has the new state, and our digest of the old one asks for
    /// all of it (the restarted endpoint itself would get a SYN from everyone
    /// at once). Only a member's datagram does that.
    pub(super) fn hear_rumor(&mut self, now: Instant, from: SocketAddr, r: &Rumor) {
        if r.endpoint == self.local {
            self.hear_about_self(r.generation, r.claim);
            return;
        }
        let Some(idx) = self.index.find(&r.endpoint, self.peers.as_slice()) else {
            return;
        };
        let Some(p) = self.peers.as_slice().get(idx as usize) else {
            return;
        };
        if !p.is_member() {
            return;
        }
        let known = p.state.generation();
        if r.generation == known {
            self.merge_claim(now, idx, r.generation, r.claim, Source::Heard);
            // A member spreading a claim from before the endpoint's latest
            // refutation (or restart of its incarnations) is told ours.
            if self
                .peers
                .as_slice()
                .get(idx as usize)
                .is_some_and(|p| p.incarnation > r.claim.incarnation)
                && self.endpoint(&from).is_some()
            {
                self.owe_correction(from, idx);
            }
        } else if r.generation > known
            && r.claim.status == Status::Alive
            && self.endpoint(&from).is_some()
        {
            self.add_target(from);
        }
    }

    /// Someone claims `claim` about this node's `generation`: a suspicion or
    /// death at our incarnation (or a later one) is refuted at once with a
    /// newer incarnation, pushed as hot news.
    pub(super) fn hear_about_self(&mut self, generation: Generation, claim: Claim) {
        if generation != self.me.generation()
            || self.phase != Phase::Running
            || claim.incarnation > self.incarnation.saturating_add(MAX_INCARNATION_JUMP)
        {
            return;
        }
        if claim.status != Status::Alive && claim.incarnation >= self.incarnation {
            self.incarnation = claim.incarnation.saturating_add(1);
            self.stats.refutations += 1;
            self.health_worse();
            self.spread(LOCAL_SLOT, true);
        } else if claim.status == Status::Alive && claim.incarnation > self.incarnation {
            // An incarnation of ours from before a restart within the same
            // generation: go on from it.
            self.incarnation = claim.incarnation;
        }
    }

    /// Merges `claim` about slot `idx` (at `generation`) into what we
    /// believe; returns whether it changed anything. A claim heard from
    /// others that newly suspects a member makes us probe it ourselves (a
    /// failure is one more confirmation).
    pub(super) fn merge_claim(
        &mut self,
        now: Instant,
        idx: u32,
        generation: Generation,
        claim: Claim,
        source: Source,
    ) -> bool {
        let heard = source == Source::Heard;
        // The shortest suspicion here: a death heard sooner than that after
        // its suspicion reached us is old news arriving in a burst.
        let shortest = (heard && claim.is_gone())
            .then(|| self.suspicion_timeout(crate::claim::MAX_CONFIRMATIONS));
        let Some(p) = self.peers.as_mut_slice().get_mut(idx as usize) else {
            return false;
        };
        // Leaving is final within a generation (a restart is a new one), and
        // a member raises its incarnation a step at a time: a claim far
        // beyond the one known is hostile.
        if !p.is_member()
            || p.state.generation() != generation
            || p.has_left()
            || claim.incarnation > p.incarnation.saturating_add(MAX_INCARNATION_JUMP)
        {
            return false;
        }
        // A death heard of a member we had no doubt about, that answered our
        // own probe during its suspicion, or whose suspicion reached us only
        // just now (news from across a partition that healed since comes as
        // a burst of old suspicions and deaths), is a fully confirmed
        // suspicion here, not a death: we probe it ourselves before our
        // shortest suspicion ends, and it can refute meanwhile. A real death
        // was suspected here first, a suspicion's length before (the
        // suspicion spreads as fast as the death does, and the death comes
        // a timeout later), or our own probe failed.
        let doubtful = match (p.liveness, shortest) {
            (Liveness::Alive, _) => true,
            (Liveness::Suspect, Some(shortest)) => {
                p.doubt & doubt::ANSWERED != 0
                    || (p.doubt & doubt::CONFIRMED == 0 && now - p.since < shortest)
            }
            _ => false,
        };
        let claim = if shortest.is_some() && doubtful {
            Claim {
                confirmers: u8::MAX,
                ..Claim::new(claim.incarnation, Status::Suspect)
            }
        } else {
            claim
        };
        let ours = p.claim();
        let merged = ours.merge(&claim);
        if merged == ours {
            return false;
        }
        let claim = merged;
        let before = p.liveness;
        let liveness = match claim.status {
            Status::Alive => Liveness::Alive,
            Status::Suspect => Liveness::Suspect,
            Status::Down | Status::Left => Liveness::Down,
        };
        let confirmed_more =
            liveness == Liveness::Suspect && claim.confirmations() > ours.confirmations();
        p.incarnation = claim.incarnation;
        p.confirmers = match claim.status {
            Status::Suspect => claim.confirmers,
            _ => 0,
        };
        // A suspicion of a newer incarnation is a new suspicion: its clock
        // and what we found of the old one start over.
        let new_suspicion = liveness == Liveness::Suspect
            && (before != Liveness::Suspect || claim.incarnation != ours.incarnation);
        if new_suspicion {
            p.doubt = 0;
            p.since = now;
        }
        self.set_liveness(idx, liveness, now);
        if before != liveness {
            self.note_recent(idx);
        }
        if liveness == Liveness::Suspect {
            self.track_suspect(idx);
            // A few of those who hear a suspicion probe the suspect: enough
            // for its confirmations, not a flood at every false alarm.
            let members = self.endpoint_count();
            if heard
                && new_suspicion
                && self.rng.next_u64() % (members as u64).max(1) < CONFIRMING_PROBERS
            {
                self.start_probe(now, idx, probe::Cause::Extra);
            }
        }
        self.spread(idx, before != liveness || confirmed_more);
        true
    }
}
