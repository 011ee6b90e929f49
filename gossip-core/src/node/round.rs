//! The gossip round: local pauses, the heartbeat, Cassandra's choice of SYN
//! targets, and the sweep over the table.

use super::*;

impl<S: Storage, R: Rng> Node<S, R> {
    /// No round for longer than `max_local_pause`: this node was frozen,
    /// and its peers' silence (its probes' failures, its suspicions' ends)
    /// says nothing about them. No suspicion is raised or ended for as long
    /// again. Checked before anything else a timeout or datagram does.
    pub(super) fn note_pause(&mut self, now: Instant) {
        let pause = self.config.max_local_pause();
        if let Some(last) = self.last_round
            && now - last > pause
            && now >= self.pause_grace_until
        {
            self.pause_grace_until = now + pause;
        }
    }

    pub(super) fn round(&mut self, now: Instant) {
        if self.last_round.is_some() && now - self.next_round > self.config.gossip_interval / 2 {
            self.stats.late_rounds += 1;
            self.health_worse();
        }
        self.last_round = Some(now);
        self.stats.rounds += 1;
        self.phi_probes = PHI_PROBES_PER_ROUND;
        self.rumors.new_round();
        self.catch_up.new_round();
        self.synced = 0;
        // What this round's ACKs count as fresh news (see `fresh_news`).
        #[cfg(feature = "alloc")]
        {
            self.round_stamps = [self.round_stamps[1], self.stamp];
        }
        // Cannot fail while running (the counter is exhausted only by shutdown).
        let _ = self.me.beat();
        self.choose_targets();
        self.status_check(now);
        self.probe_cycle(now);
        self.next_round = now + self.jittered_interval();
    }

    pub(super) fn jittered_interval(&mut self) -> Duration {
        let base = u64::try_from(self.config.gossip_interval.as_micros()).unwrap_or(u64::MAX);
        let spread = base / 100 * u64::from(self.config.interval_jitter_percent);
        let offset = match spread.checked_mul(2).and_then(|s| s.checked_add(1)) {
            Some(range) if spread > 0 => self.rng.next_u64() % range,
            _ => spread,
        };
        Duration::from_micros((base - spread).saturating_add(offset))
    }

    /// Cassandra's peer selection: `fanout` random live peers; an unreachable
    /// one with probability `unreachable / (live + 1)`; a seed when no live
    /// target was one or fewer peers are live than there are seeds, with
    /// probability `seeds / (live + unreachable)` (always when none is live).
    pub(super) fn choose_targets(&mut self) {
        self.targets.clear();
        let mut gossiped_to_seed = false;
        // Fresh application news goes to one more live peer (rumor
        // mongering): push-pull spreads it in about log3(N) rounds. While
        // endpoints are joining, three more exchanges a round carry their
        // states (a cluster's first convergence is bandwidth-bound).
        let news = self.news > 0;
        self.news = self.news.saturating_sub(1);
        let joining = self.joining > 0;
        self.joining = self.joining.saturating_sub(1);
        let extra = u8::from(news) + 3 * u8::from(joining);
        let wanted = usize::from(self.config.fanout + extra).min(self.alive);
        // Distinct peers: a few draws each, as the live ones may be few.
        for _ in 0..wanted * 4 {
            if self.targets.len() >= wanted {
                break;
            }
            if let Some(addr) = self.random_member(true) {
                gossiped_to_seed |= self.seeds.contains(&addr);
                self.add_target(addr);
            }
        }
        if self.unreachable > 0
            && self.rng.next_u64() % (self.alive as u64 + 1) < self.unreachable as u64
            && let Some(addr) = self.random_member(false)
        {
            self.add_target(addr);
        }
        let seeds = self.seeds.len();
        if seeds > 0 && (!gossiped_to_seed || self.alive < seeds) {
            let known = self.endpoint_count() as u64;
            let go = self.alive == 0 || self.rng.next_u64() % known.max(1) < seeds as u64;
            if go {
                let pick = (self.rng.next_u64() % seeds as u64) as usize;
                if let Some(seed) = self.seeds.get(pick).copied() {
                    self.add_target(seed);
                }
            }
        }
    }

    pub(super) fn add_target(&mut self, addr: SocketAddr) {
        if !self.targets.contains(&addr) {
            // Capacity covers fanout + 2.
            let _ = self.targets.push(addr);
        }
    }

    /// A uniformly random member that is alive (`alive == true`) or not.
    pub(super) fn random_member(&mut self, alive: bool) -> Option<SocketAddr> {
        let count = if alive { self.alive } else { self.unreachable };
        let len = self.peers.as_slice().len();
        if count == 0 || len == 0 {
            return None;
        }
        let matches = |p: &Peer<S::StateBuf>| p.is_member() && p.is_alive() == alive;
        // Rejection sampling is O(1) when matches are dense...
        for _ in 0..16 {
            let i = (self.rng.next_u64() % len as u64) as usize;
            if let Some(p) = self.peers.as_slice().get(i).filter(|p| matches(p)) {
                return Some(p.addr());
            }
        }
        // ...and this is exact when they are sparse.
        let k = (self.rng.next_u64() % count as u64) as usize;
        self.peers
            .as_slice()
            .iter()
            .filter(|p| matches(p))
            .nth(k)
            .map(|p| p.addr())
    }

    /// The round's sweep, over the next [`SWEEP_PER_ROUND`] slots of the
    /// table (so every slot once in `N / 64` rounds): times out suspicions
    /// not tracked to the instant (and tracks them when there is room),
    /// probes members past their phi threshold (the early warning), removes
    /// long-down members and ends quarantines.
    pub(super) fn status_check(&mut self, now: Instant) {
        let removal = self.config.removal_delay;
        let threshold = self.config.phi_threshold;
        let len = self.peers.as_slice().len();
        if len == 0 {
            return;
        }
        let count = len.min(SWEEP_PER_ROUND);
        let start = self.sweep_cursor % len;
        self.sweep_cursor = (start + count) % len;
        for k in 0..count {
            let i = (start + k) % len;
            let idx = i as u32;
            let Some(p) = self.peers.as_slice().get(i) else {
                break;
            };
            match (p.slot, p.liveness) {
                (Slot::Member, Liveness::Suspect) => {
                    self.track_suspect(idx);
                    self.sweep_suspect(now, idx);
                }
                (Slot::Member, Liveness::Down) => {
                    if now - p.since >= removal {
                        self.remove(idx, now);
                    }
                }
                (Slot::Member, _) => {
                    // Once per silence: probed when phi passes the
                    // threshold, again only after a heartbeat came.
                    if self.phi_probes > 0
                        && p.flags & flags::PHI_PROBED == 0
                        && !p.has_left()
                        && now >= p.window.convict_at(threshold)
                        && !self.prober.probing(idx)
                    {
                        self.phi_probes -= 1;
                        if let Some(p) = self.peers.as_mut_slice().get_mut(i) {
                            p.flags |= flags::PHI_PROBED;
                        }
                        self.start_probe(now, idx, probe::Cause::Extra);
                    }
                }
                (Slot::Quarantined, _) => {
                    if now >= p.since {
                        self.vacate(idx);
                    }
                }
                (Slot::Vacant, _) => {}
            }
        }
    }
}
