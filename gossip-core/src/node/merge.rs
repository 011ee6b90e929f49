//! Anti-entropy input: deltas checked before any is applied, then merged
//! (with the claims they carry), digests noted, shutdown notices.

use super::*;

impl<S: Storage, R: Rng> Node<S, R> {
    /// Checks every delta before any is applied; returns the slot each
    /// endpoint was found in ([`NO_SLOT`] when unknown or local), as far as
    /// the scratch holds, for [`apply_deltas`](Self::apply_deltas).
    pub(super) fn check_deltas(
        &self,
        deltas: wire::Deltas<'_>,
    ) -> Result<S::Scratch<u32, FOUND_SCRATCH>, DropReason> {
        // Endpoints seen so far, to refuse duplicates; past the array's
        // capacity (only tiny deltas in huge datagrams) the slow way.
        let mut seen = S::Scratch::<SocketAddr, 128>::default();
        let mut slots = S::Scratch::<u32, FOUND_SCRATCH>::default();
        for (i, d) in deltas.enumerate() {
            let duplicate = if seen.as_slice().len() == i {
                seen.as_slice().contains(&d.endpoint)
            } else {
                deltas.take(i).any(|prev| prev.endpoint == d.endpoint)
            };
            if duplicate {
                return Err(DropReason::DuplicateEndpoint);
            }
            let _ = seen.try_push(d.endpoint);
            let slot = self.check_delta(d.endpoint, &d.delta)?;
            let _ = slots.try_push(slot);
        }
        Ok(slots)
    }

    /// Checks one delta; returns the slot its endpoint is in, or
    /// [`NO_SLOT`].
    pub(super) fn check_delta(
        &self,
        endpoint: SocketAddr,
        delta: &Delta<'_>,
    ) -> Result<u32, DropReason> {
        if endpoint == self.local {
            return Ok(NO_SLOT);
        }
        let slot = self.index.find(&endpoint, self.peers.as_slice());
        let existing = slot
            .and_then(|i| self.peers.as_slice().get(i as usize))
            .filter(|p| p.is_member())
            .map(|p| &p.state);
        EndpointState::check(
            existing,
            delta,
            &self.config.limits,
            self.reference_generation(),
        )
        .map_err(DropReason::from_merge)?;
        Ok(slot.unwrap_or(NO_SLOT))
    }

    /// Applies checked deltas, with the slots [`check_deltas`](Self::check_deltas)
    /// found (deltas past them are looked up again).
    pub(super) fn apply_deltas(
        &mut self,
        now: Instant,
        deltas: wire::Deltas<'_>,
        slots: &S::Scratch<u32, FOUND_SCRATCH>,
    ) {
        for (k, d) in deltas.enumerate() {
            let slot = slots.as_slice().get(k).copied();
            if d.endpoint == self.local {
                self.hear_about_self(d.delta.generation, d.claim);
                continue;
            }
            #[cfg(feature = "internals")]
            self.note_merged(d.endpoint, slot);
            self.apply_delta(now, d.endpoint, &d.delta, d.claim, slot);
        }
    }

    /// Records the view a delta is about to be merged into, for
    /// [`merged_views`](Self::merged_views).
    #[cfg(feature = "internals")]
    fn note_merged(&mut self, endpoint: SocketAddr, slot: Option<u32>) {
        let found = match slot {
            Some(NO_SLOT) => None,
            Some(i) => Some(i),
            None => self.index.find(&endpoint, self.peers.as_slice()),
        };
        if let Some(i) = found
            && let Some(p) = self.peers.as_slice().get(i as usize)
            && p.is_member()
        {
            self.merged
                .push((i, p.state.generation(), p.state.max_version()));
        }
    }

    /// Merges a checked delta about `endpoint`, and the sender's `claim`
    /// about its liveness. `slot`: where the check found the endpoint
    /// ([`NO_SLOT`]: nowhere), if it remembered; no other delta of the
    /// datagram can have moved it (endpoints are distinct, and applying never
    /// vacates a slot).
    pub(super) fn apply_delta(
        &mut self,
        now: Instant,
        endpoint: SocketAddr,
        delta: &Delta<'_>,
        claim: Claim,
        slot: Option<u32>,
    ) {
        if endpoint == self.local {
            return;
        }
        let found = match slot {
            Some(NO_SLOT) => None,
            Some(i) => Some(i),
            None => self.index.find(&endpoint, self.peers.as_slice()),
        };
        let (idx, is_new) = match found {
            Some(i) => match self.peers.as_slice().get(i as usize) {
                Some(p) if p.slot == Slot::Quarantined => {
                    if delta.generation <= p.state.generation() {
                        self.stats.ignored_quarantined += 1;
                        return;
                    }
                    // A restart after removal: welcome back as a new member.
                    self.revive(i, delta.generation);
                    (i, true)
                }
                Some(_) => (i, false),
                None => return,
            },
            None => match self.insert_peer(endpoint, delta.generation) {
                Some(i) => (i, true),
                None => {
                    self.stats.refused_endpoints += 1;
                    return;
                }
            },
        };
        let initial = self.config.fd_initial_interval();
        let min_interval = self.config.fd_min_interval();
        let pause_grace_until = self.pause_grace_until;
        let Some(peer) = self.peers.as_mut_slice().get_mut(idx as usize) else {
            return;
        };
        let mut status_changed = false;
        // Checked with this state (or, new or revived, none) already.
        let Ok(applied) = peer.state.apply_checked(delta, |key, _| {
            status_changed |= key == StateKey::Known(ApplicationState::Status);
        }) else {
            // Unreachable: the delta was checked.
            return;
        };
        if applied.stale {
            return;
        }
        let mut dirty = applied.changed > 0;
        if is_new {
            peer.flags |= flags::EV_DISCOVERED;
            dirty = true;
        } else if applied.replaced {
            peer.flags |= flags::EV_RESTARTED;
            peer.doubt = 0;
            peer.reported_version = Version(0).into();
            // A new incarnation is not up until it is reported up: after
            // `Restarted`, an `Up` follows once it is alive, so the events
            // keep agreeing with `is_alive`.
            peer.reported = None;
            peer.window.reset();
            peer.evidence = Version(0).into();
            // A new incarnation of the endpoint: alive until claimed
            // otherwise.
            peer.incarnation = 0;
            peer.confirmers = 0;
            dirty = true;
        }
        // Any newer version is a heartbeat arrival for phi (digests may have
        // told us before the delta came: then it is not news again).
        let evidence = Version::from(peer.evidence);
        let advanced = peer.state.max_version() > evidence;
        if advanced || is_new || applied.replaced {
            peer.evidence = evidence.max(peer.state.max_version()).into();
            peer.window
                .record(now, initial, min_interval, now >= pause_grace_until);
            peer.flags &= !flags::PHI_PROBED;
        }
        let left = if status_changed || applied.replaced {
            peer.status_says_shutdown()
        } else {
            peer.flags & flags::LEFT != 0
        };
        let had_left = peer.flags & flags::LEFT != 0;
        if left && !had_left {
            peer.flags |= flags::LEFT | flags::EV_SHUTDOWN;
            dirty = true;
        } else if !left && had_left {
            peer.flags &= !flags::LEFT;
        }
        let newly_left = left && !had_left;
        if dirty {
            self.mark_dirty(idx);
        }
        if applied.changed > 0 || is_new || applied.replaced {
            // Application news (not a mere heartbeat): spread it like a rumor.
            self.refreshed(idx);
        }
        if is_new || applied.replaced {
            self.joining = NEWS_ROUNDS;
        }
        if left {
            self.set_liveness(idx, Liveness::Down, now);
        } else if applied.replaced {
            self.set_liveness(idx, Liveness::Alive, now);
        }
        // Believe the cluster: the sender's claim about its liveness (taken
        // as it is for an endpoint we did not know).
        let source = if is_new || applied.replaced {
            Source::Fresh
        } else {
            Source::Heard
        };
        self.merge_claim(now, idx, delta.generation, claim, source);
        if newly_left || applied.replaced {
            // A departure or a restart is hot news.
            self.spread(idx, true);
        }
    }

    /// A digest of a known endpoint: a newer version than we have seen is a
    /// heartbeat arrival for phi, even before the delta comes (which the
    /// datagram budget may delay by rounds in a large cluster); its claim is
    /// merged.
    pub(super) fn note_digest(&mut self, now: Instant, d: &GossipDigest, slot: Option<u32>) {
        let initial = self.config.fd_initial_interval();
        let min_interval = self.config.fd_min_interval();
        let count_interval = now >= self.pause_grace_until;
        let Some(idx) = slot else {
            return;
        };
        let Some(peer) = self.peers.as_mut_slice().get_mut(idx as usize) else {
            return;
        };
        if !peer.is_member() || d.generation != peer.state.generation() {
            return;
        }
        let seen = Version::from(peer.evidence).max(peer.state.max_version());
        if d.max_version > seen && !peer.has_left() {
            peer.evidence = d.max_version.into();
            peer.window
                .record(now, initial, min_interval, count_interval);
            peer.flags &= !flags::PHI_PROBED;
        }
        // Anti-entropy for liveness: the digest carries the sender's claim.
        self.merge_claim(now, idx, d.generation, d.claim, Source::Heard);
    }

    /// A SHUTDOWN notice from `sender` of `generation`: down at once.
    pub(super) fn mark_shut_down(
        &mut self,
        now: Instant,
        sender: SocketAddr,
        generation: Generation,
    ) {
        let Some(idx) = self.index.find(&sender, self.peers.as_slice()) else {
            return;
        };
        #[cfg(feature = "internals")]
        self.note_merged(sender, Some(idx));
        let Some(peer) = self.peers.as_mut_slice().get_mut(idx as usize) else {
            return;
        };
        if !peer.is_member() || peer.state.generation() != generation {
            return;
        }
        let newly_left = peer.flags & flags::LEFT == 0;
        if newly_left {
            peer.flags |= flags::LEFT | flags::EV_SHUTDOWN;
            self.mark_dirty(idx);
        }
        self.set_liveness(idx, Liveness::Down, now);
        if newly_left {
            self.spread(idx, true);
        }
    }
}
