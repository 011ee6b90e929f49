//! The peer table's bookkeeping: slots taken, revived, removed and vacated,
//! liveness changes and the counts they move, and the event queue.

use super::*;

impl<S: Storage, R: Rng> Node<S, R> {
    pub(super) fn insert_peer(&mut self, addr: SocketAddr, generation: Generation) -> Option<u32> {
        if self.occupied >= self.config.max_peers {
            return None;
        }
        let peer = Peer::new(addr, generation);
        let idx = match self.free.as_slice().last().copied() {
            Some(free) => {
                let len = self.free.as_slice().len();
                self.free.truncate(len - 1);
                let slot = self.peers.as_mut_slice().get_mut(free as usize)?;
                // The slot may still sit in the event queue.
                let queued = slot.flags & flags::QUEUED;
                *slot = peer;
                slot.flags = queued;
                free
            }
            None => {
                let idx = u32::try_from(self.peers.as_slice().len()).ok()?;
                self.peers.try_push(peer).ok()?;
                idx
            }
        };
        self.index.insert(idx, self.peers.as_slice());
        self.summary.add(ring_position(&addr));
        self.forget_seqs(idx);
        self.rumors.forget(idx);
        self.occupied += 1;
        // Believe the cluster: alive until a claim says otherwise.
        self.alive += 1;
        Some(idx)
    }

    /// Slot `idx` holds a new peer (or incarnation): no seq seen from it.
    pub(super) fn forget_seqs(&mut self, idx: u32) {
        #[cfg(feature = "auth")]
        if let Some(window) = self.replays.as_mut_slice().get_mut(idx as usize) {
            *window = Default::default();
        }
        #[cfg(not(feature = "auth"))]
        let _ = idx;
    }

    /// A quarantined slot becomes a fresh member at `generation`.
    pub(super) fn revive(&mut self, idx: u32, generation: Generation) {
        let Some(p) = self.peers.as_mut_slice().get_mut(idx as usize) else {
            return;
        };
        let queued = p.flags & flags::QUEUED;
        let addr = p.addr();
        *p = Peer::new(addr, generation);
        p.flags = queued;
        self.summary.add(ring_position(&addr));
        self.forget_seqs(idx);
        self.rumors.forget(idx);
        self.alive += 1;
    }

    pub(super) fn set_liveness(&mut self, idx: u32, liveness: Liveness, now: Instant) {
        let Some(p) = self.peers.as_mut_slice().get_mut(idx as usize) else {
            return;
        };
        if p.liveness == liveness || !p.is_member() {
            return;
        }
        let was_up = p.liveness != Liveness::Down;
        p.liveness = liveness;
        // Suspected or down since now; otherwise not suspected (any more).
        p.since = match liveness {
            Liveness::Alive => Instant::ZERO,
            _ => now,
        };
        match (was_up, liveness != Liveness::Down) {
            (true, false) => {
                self.alive -= 1;
                self.unreachable += 1;
            }
            (false, true) => {
                self.alive += 1;
                self.unreachable -= 1;
            }
            _ => {}
        }
        self.mark_dirty(idx);
    }

    /// Removes a long-down member; its address is quarantined.
    pub(super) fn remove(&mut self, idx: u32, now: Instant) {
        let quarantine = self.config.quarantine_delay;
        let Some(p) = self.peers.as_mut_slice().get_mut(idx as usize) else {
            return;
        };
        if !p.is_member() {
            return;
        }
        if p.liveness != Liveness::Down {
            self.alive -= 1;
        } else {
            self.unreachable -= 1;
        }
        let generation = p.state.generation();
        let addr = p.addr();
        p.state = EndpointState::new(generation);
        p.slot = Slot::Quarantined;
        self.summary.remove(ring_position(&addr));
        p.since = now + quarantine;
        p.flags = (p.flags & flags::QUEUED) | flags::EV_REMOVED;
        self.mark_dirty(idx);
    }

    /// Frees a slot whose quarantine ended.
    pub(super) fn vacate(&mut self, idx: u32) {
        self.index.remove(idx, self.peers.as_slice());
        let Some(p) = self.peers.as_mut_slice().get_mut(idx as usize) else {
            return;
        };
        p.slot = Slot::Vacant;
        p.state = EndpointState::new(Generation(0));
        p.flags &= flags::QUEUED;
        self.occupied -= 1;
        self.rumors.forget(idx);
        self.prober.forget(idx);
        // The free list has room for every slot.
        let _ = self.free.try_push(idx);
    }

    pub(super) fn mark_dirty(&mut self, idx: u32) {
        let Some(p) = self.peers.as_mut_slice().get_mut(idx as usize) else {
            return;
        };
        if p.flags & flags::QUEUED != 0 {
            return;
        }
        p.flags |= flags::QUEUED;
        if self.events.try_push(idx).is_ok() {
            return;
        }
        // Full: reclaim the entries already reported, then retry.
        let head = self.event_head;
        let len = self.events.as_slice().len();
        self.events.as_mut_slice().copy_within(head.., 0);
        self.events.truncate(len - head);
        self.event_head = 0;
        if self.events.try_push(idx).is_err()
            && let Some(p) = self.peers.as_mut_slice().get_mut(idx as usize)
        {
            p.flags &= !flags::QUEUED;
        }
    }

    pub(super) fn next_event(&mut self) -> Option<(u32, EventKind)> {
        loop {
            let Some(idx) = self.events.as_slice().get(self.event_head).copied() else {
                self.events.truncate(0);
                self.event_head = 0;
                return None;
            };
            if let Some(peer) = self.peers.as_mut_slice().get_mut(idx as usize) {
                if let Some(kind) = take_event(peer) {
                    return Some((idx, kind));
                }
                peer.flags &= !flags::QUEUED;
            }
            self.event_head += 1;
        }
    }
}
