//! The anti-entropy exchange: the SYN (our digest, fresh news, a stretch of
//! the ring), the recent-news list it draws on, and the ACK or ACK2 written
//! for a queued SYN or ACK.

use super::*;

impl<S: Storage, R: Rng> Node<S, R> {
    /// A SYN: our digest; then the endpoints whose application news (a state
    /// change, a new endpoint, a restart) reached us most recently, so it
    /// spreads epidemically as a rumor does, in up to half the datagram; then
    /// every endpoint we know on the next stretch of the ring, from where the
    /// previous SYN stopped, as far as fits. The SYN says which stretch it
    /// covers completely, so the receiver can tell which endpoints we lack;
    /// the stretches sweep the whole ring (anti-entropy: nothing is missed
    /// for long).
    ///
    /// A SYN that syncs a segment (`at`: its start) starts there, and leaves
    /// the stretch the next SYN covers where it was.
    #[inline(never)]
    pub(super) fn write_syn(
        &mut self,
        buf: &mut [u8],
        to: SocketAddr,
        at: Option<u32>,
        filter: bool,
    ) -> usize {
        // A sync's SYN spends the datagram on its stretch.
        let hot_budget = if at.is_some() { 0 } else { buf.len() / 2 };
        let header = self.header();
        let own = self.own_digest();
        let start = at.unwrap_or(self.ring_cursor);
        let most = self.endpoint_count().div_ceil(2).max(MIN_STRETCH);
        let rumors = self.piggyback(to, &[]);
        #[cfg(feature = "catch-up")]
        let w = SynWriter::with_summary(buf, &header, &rumors, &self.summary);
        #[cfg(not(feature = "catch-up"))]
        let w = SynWriter::new(buf, &header, &rumors);
        let Ok(mut w) = w else {
            return 0;
        };
        if !w.push(&own) {
            return 0;
        }
        #[cfg(feature = "catch-up")]
        if let Some(start) = at.filter(|_| filter) {
            return self.write_filter(w, start);
        }
        #[cfg(not(feature = "catch-up"))]
        let _ = filter;
        let peers = self.peers.as_mut_slice();
        for &(idx, stamp) in self.recent.iter().rev() {
            if w.len() >= hot_budget {
                break;
            }
            if let Some(p) = peers.get_mut(idx as usize)
                && p.stamp == stamp
                && p.is_member()
                && p.flags & flags::MENTIONED == 0
            {
                if !w.push(&digest_of(p)) {
                    break;
                }
                p.flags |= flags::MENTIONED;
            }
        }
        // Members clockwise from `start`, nearest first, as far as fits and
        // at most `MIN_STRETCH` or half the ring, whichever is more.
        let mut covered: Option<u32> = None;
        let mut left_out: Option<u32> = None;
        let mut taken = 0;
        for (position, i) in self.index.ring().clockwise(start) {
            let Some(p) = peers.get(i as usize) else {
                continue;
            };
            if !p.is_member() {
                continue;
            }
            let distance = position.wrapping_sub(start);
            if taken >= most || (p.flags & flags::MENTIONED == 0 && !w.push(&digest_of(p))) {
                left_out = Some(distance);
                break;
            }
            taken += 1;
            covered = Some(distance);
        }
        let range = match (left_out, covered) {
            (None, _) => RingRange {
                start,
                end: start.wrapping_sub(1),
            },
            (Some(_), Some(d)) => RingRange {
                start,
                end: start.wrapping_add(d),
            },
            // Stop short of the first one left out (nothing fitted: claim as
            // little as a range can).
            (Some(d), None) => RingRange {
                start,
                end: start.wrapping_add(d.saturating_sub(1)),
            },
        };
        if at.is_none() {
            self.ring_cursor = range.end.wrapping_add(1);
        }
        for &(idx, _) in self.recent.iter() {
            if let Some(p) = peers.get_mut(idx as usize) {
                p.flags &= !flags::MENTIONED;
            }
        }
        w.finish(range)
    }

    /// Ends a sync's SYN with a [`Filter`] of every endpoint we hold
    /// clockwise from `start`, as many as its bits cover (quarantined ones
    /// too: the ring is read without the peers, and what we removed we do
    /// not want back but by a newer generation, which digests bring).
    #[cfg(feature = "catch-up")]
    fn write_filter(&mut self, mut w: SynWriter<'_>, start: u32) -> usize {
        let len = w.reserve_filter(wire::MAX_FILTER_BYTES);
        let mut bits = [0u8; wire::MAX_FILTER_BYTES];
        let Some(bits) = bits.get_mut(..len).filter(|b| !b.is_empty()) else {
            // No room (rumors filled it): our digest alone, over the one
            // position `start`.
            return w.finish(RingRange { start, end: start });
        };
        let salt = self.rng.next_u32();
        let most = len * 8 / wire::FILTER_BITS_PER_ENDPOINT;
        let mut end = start.wrapping_sub(1);
        for (taken, (position, _)) in self.index.ring().clockwise(start).enumerate() {
            if taken == most {
                end = position.wrapping_sub(1);
                break;
            }
            wire::filter_insert(bits, salt, position);
        }
        let range = RingRange { start, end };
        self.catch_up.filtered(range);
        w.finish_with_filter(range, Some(Filter::new(salt, bits)))
    }

    /// Notes that application news of slot `idx` just reached us.
    pub(super) fn refreshed(&mut self, idx: u32) {
        self.news = NEWS_ROUNDS;
        self.note_recent(idx);
        #[cfg(feature = "alloc")]
        {
            if self.fresh.is_full() {
                self.fresh.pop_front();
            }
            // Cannot fail: there is room now.
            let _ = self.fresh.push_back((idx, self.stamp));
        }
    }

    /// Puts slot `idx` first among the endpoints whose digests the next
    /// SYNs carry ahead of their stretch of the ring (news of its states,
    /// or of its liveness).
    pub(super) fn note_recent(&mut self, idx: u32) {
        self.stamp = self.stamp.wrapping_add(1);
        if let Some(p) = self.peers.as_mut_slice().get_mut(idx as usize) {
            p.stamp = self.stamp;
        }
        if self.recent.is_full() {
            self.recent.pop_front();
        }
        // Cannot fail: there is room now.
        let _ = self.recent.push_back((idx, self.stamp));
    }

    /// The slots whose application news reached us this round or the one
    /// before, newest first, for the ACKs to push. None while an endpoint
    /// is joining (a new endpoint or generation met in the last two
    /// rounds): a mass join is all news and its ACKs are full of it, so
    /// the news pushed is of known endpoints' states. Not news whose
    /// endpoint's liveness changed since (its stamp moved on): that one
    /// heads our SYNs' digests anyway. Without `alloc`, none.
    #[cfg(feature = "alloc")]
    fn fresh_news(&self) -> heapless::Vec<u32, FRESH_NEWS> {
        let mut fresh = heapless::Vec::new();
        if self.news == 0 || self.joining > 0 {
            return fresh;
        }
        let peers = self.peers.as_slice();
        let floor = self.round_stamps[0];
        for &(idx, stamp) in self.fresh.iter().rev() {
            // Stamps count up (wrapping): one at or before the floor is older
            // than the round before this one.
            let since = stamp.wrapping_sub(floor);
            if since == 0 || since > u32::MAX / 2 {
                break;
            }
            if peers.get(idx as usize).is_some_and(|p| p.stamp == stamp) {
                let _ = fresh.push(idx);
            }
        }
        fresh
    }

    /// Notes a SYN's digests (heartbeat arrivals for phi, claims, news to
    /// catch up on) and
    /// finds their slots, marked [`flags::MENTIONED`], for the ACK: one
    /// lookup per digest. Keeps the digests decoded with their slots in
    /// `found` (as many as it holds; the rest are decoded and looked up
    /// again by their readers). Returns whether the SYN mentions this node.
    pub(super) fn note_digests(
        &mut self,
        now: Instant,
        syn: &Syn<'_>,
        found: &mut Found<S>,
    ) -> bool {
        // Decoded first and looked up together (see `AddrIndex::find_each`),
        // then noted; digests past the scratch one at a time.
        let mut rest = syn.digests;
        while found.capacity_limit() != Some(found.as_slice().len()) {
            let Some(d) = rest.next() else { break };
            let _ = found.try_push((NO_SLOT, d));
        }
        self.index
            .find_each(found.as_mut_slice(), |d| &d.endpoint, self.peers.as_slice());
        let mut local_mentioned = false;
        for k in 0..syn.digests.len() {
            let (slot, d) = match found.as_slice().get(k) {
                Some(&entry) => entry,
                None => {
                    let Some(d) = rest.next() else { break };
                    let slot = self.index.find(&d.endpoint, self.peers.as_slice());
                    (slot.unwrap_or(NO_SLOT), d)
                }
            };
            let slot = if d.endpoint == self.local {
                local_mentioned = true;
                self.hear_about_self(d.generation, d.claim);
                LOCAL_SLOT
            } else {
                let known = Some(slot).filter(|&s| s != NO_SLOT);
                if let Some(p) = known.and_then(|i| self.peers.as_mut_slice().get_mut(i as usize)) {
                    p.flags |= flags::MENTIONED;
                }
                self.note_digest(now, &d, known);
                slot
            };
            if let Some(entry) = found.as_mut_slice().get_mut(k) {
                entry.0 = slot;
            }
        }
        local_mentioned
    }

    /// Encodes the reply to the oldest pending SYN or ACK, if any: its
    /// destination, its size (`None`: nothing to send, `Some(0)`: could not be
    /// encoded) and kind.
    pub(super) fn write_next_reply(
        &mut self,
        now: Instant,
        buf: &mut [u8],
    ) -> Option<(SocketAddr, Option<usize>, Kind)> {
        let head = self.reply_head;
        let reply = self.replies.as_mut_slice().get_mut(head)?;
        let to = reply.to;
        // The slot is done with: its bytes move out (noting a SYN's digests
        // changes the table, which they must not borrow), and their buffer
        // goes back for the next reply queued in the slot.
        let stored = core::mem::take(&mut reply.bytes);
        self.reply_head += 1;
        let Some(input) = StoredReply::read(stored.bytes()) else {
            // Unreachable: stored by `queue_reply`.
            return Some((to, None, Kind::Ack));
        };
        // Filled in place: returning it would copy the whole scratch.
        let mut found = Found::<S>::default();
        let (local_mentioned, burst) = match &input {
            StoredReply::Syn(digests, range, filter) => {
                let syn = Syn {
                    digests: *digests,
                    range: *range,
                    summary: None,
                    filter: *filter,
                };
                let mentioned = self.note_digests(now, &syn, &mut found);
                #[cfg(feature = "catch-up")]
                let mentioned =
                    mentioned || filter.is_some_and(|f| f.contains(ring_position(&self.local)));
                (mentioned, self.plan_burst(to, &syn, mentioned, now))
            }
            StoredReply::Ack(_) => (false, false),
        };
        // Claims the SYN's sender knows older versions of than ours.
        let mut corrections = heapless::Vec::<Rumor, MAX_CORRECTIONS>::new();
        for &(slot, d) in found.as_slice() {
            if corrections.is_full() {
                break;
            }
            if let Some(p) = self.peers.as_slice().get(slot as usize)
                && p.is_member()
                && p.state.generation() == d.generation
                && p.claim().beats(&d.claim)
            {
                let _ = corrections.push(Rumor {
                    endpoint: p.addr(),
                    generation: d.generation,
                    claim: p.claim(),
                });
            }
        }
        let rumors = self.piggyback(to, &corrections);
        let header = self.header();
        let occupied = self.occupied;
        // (Only an ACK pushes news.)
        #[cfg(feature = "alloc")]
        let fresh = match input {
            StoredReply::Syn(..) => self.fresh_news(),
            StoredReply::Ack(_) => heapless::Vec::new(),
        };
        let own_claim = self.own_claim();
        let Node {
            config,
            me,
            peers,
            index,
            local,
            ..
        } = self;
        let ctx: ReplyContext<'_, S> = ReplyContext {
            local: *local,
            me: &*me,
            own_claim,
            index: &*index,
            room_for_new: occupied < config.max_peers,
            #[cfg(feature = "alloc")]
            fresh: &fresh,
            rumors: &rumors,
        };
        let (size, kind) = match input {
            StoredReply::Syn(digests, range, filter) => {
                let syn = Syn {
                    digests,
                    range,
                    summary: None,
                    filter,
                };
                let size = write_ack(
                    &ctx,
                    peers.as_slice(),
                    syn,
                    &found,
                    (local_mentioned, burst),
                    &header,
                    buf,
                );
                // Unflag what `note_digests` flagged.
                let local = *local;
                let unflag = |peers: &mut S::Peers, slot: u32| {
                    if let Some(p) = peers.as_mut_slice().get_mut(slot as usize) {
                        p.flags &= !flags::MENTIONED;
                    }
                };
                for &(slot, _) in found.as_slice() {
                    unflag(peers, slot);
                }
                for d in unnoted::<S>(&found, &syn) {
                    if d.endpoint != local
                        && let Some(slot) = index.find(&d.endpoint, peers.as_slice())
                    {
                        unflag(peers, slot);
                    }
                }
                (size, Kind::Ack)
            }
            StoredReply::Ack(requests) => (
                write_ack2(&ctx, peers.as_slice(), requests, &header, buf),
                Kind::Ack2,
            ),
        };
        if let Some(slot) = self.replies.as_mut_slice().get_mut(head) {
            slot.bytes = stored;
        }
        Some((to, size, kind))
    }
}
