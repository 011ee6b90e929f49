//! The gossip state machine: one [`Node`] per process (or per simulated node).
//!
//! See the [crate docs](crate) for the run loop and the drain rule.

use core::fmt;
use core::net::SocketAddr;
use core::time::Duration;

use rand_core::Rng;

#[cfg(feature = "auth")]
use crate::auth::Keyring;
use crate::claim::{Claim, Status};
use crate::config::{Config, ConfigError, StorageShortfall};
use crate::state::{
    ApplicationState, Delta, EndpointState, Generation, MergeError, StateKey, Version,
    VersionedValue,
};
use crate::storage::StateBuf;
use crate::table::{AddrIndex, Liveness, Peer, Reply, Seq, Slot, Storage, doubt, flags};
use crate::time::Instant;
use crate::wire::{
    self, Ack2Writer, AckWriter, Digests, Filter, GossipDigest, Header, Kind, Message, RingRange,
    Rumor, Syn, SynWriter, ring_position,
};

mod catch_up;
mod claims;
mod events;
mod exchange;
mod fit;
mod getters;
mod members;
mod merge;
mod probe;
mod reply;
mod round;
mod rumors;
mod stats;
mod summary;
mod suspicion;

pub use events::Event;
use events::{EventKind, take_event};
use reply::{ReplyContext, StoredReply, write_ack, write_ack2};
use stats::kind_index;
pub use stats::{DropReason, Stats};

pub use suspicion::MAX_HEALTH;

/// The most seeds a node keeps.
pub const MAX_SEEDS: usize = 16;

/// SYN targets in one round: `fanout` live peers, one more with news,
/// three more during a join, one unreachable, one seed.
const MAX_TARGETS: usize = 9;

/// Deltas ranked by version gap per reply; the rest follow unranked.
const RANKED_DELTAS: usize = 32;

/// Digest lookups an ACK remembers (a 1400-byte SYN holds about 90).
const FOUND_SCRATCH: usize = 256;

/// A SYN's digests as [`Node::note_digests`] decoded them, each with the slot
/// its endpoint was found in.
type Found<S> =
    <S as crate::table::sealed::Containers>::Scratch<(u32, GossipDigest), FOUND_SCRATCH>;

/// The digests of `syn` past those `found` holds (none, unless the SYN
/// carried more than the scratch's size).
fn unnoted<'a, S: Storage>(
    found: &Found<S>,
    syn: &Syn<'a>,
) -> impl Iterator<Item = GossipDigest> + 'a {
    let noted = found.as_slice().len();
    (syn.digests.len() > noted)
        .then_some(syn.digests)
        .into_iter()
        .flat_map(move |digests| digests.skip(noted))
}

/// Scratch markers: the digest is of this node, or of no known slot.
const LOCAL_SLOT: u32 = u32::MAX - 1;
const NO_SLOT: u32 = crate::table::NOT_FOUND;

/// Rounds after application news during which one more peer is gossiped to.
const NEWS_ROUNDS: u8 = 2;

/// How far past the incarnation known a claim may go (a member raises its
/// own by one per refutation); beyond, it is ignored as hostile.
const MAX_INCARNATION_JUMP: u32 = 1024;

/// Members that probe a suspect they hear of, on average (each one whose
/// probe fails confirms the suspicion; Lifeguard counts up to 3).
const CONFIRMING_PROBERS: u64 = 8;

/// Phi-triggered probes per round at most (the early warning).
const PHI_PROBES_PER_ROUND: u32 = 1;

/// Table slots the round's sweep looks at, at most: a round's work does not
/// grow with the cluster; a table of N slots is swept every N / 64 rounds.
const SWEEP_PER_ROUND: usize = 64;

/// Claims corrected in one ACK at most (digests that showed the SYN's
/// sender an older claim than ours).
const MAX_CORRECTIONS: usize = 4;

/// Recently refreshed endpoints remembered for the next SYNs.
const RECENT: usize = 64;

/// News an ACK pushes beside what its SYN asked about (see `write_ack`).
#[cfg(feature = "alloc")]
const FRESH_NEWS: usize = 2;

/// Members a SYN's stretch of the ring may always cover; in larger tables,
/// at most half the members, so two SYNs sweep the ring when the datagram
/// holds that many (a node also gets a SYN from another about every round;
/// a SYN filled with the whole ring would spend most of its bytes on
/// heartbeats the receiver gets anyway).
const MIN_STRETCH: usize = 64;

/// SYNs a round, at most, to peers whose membership summaries differ from
/// ours (none without the `catch-up` feature, which sends them): a node
/// far behind fills in mostly by these, each exchange giving each side what
/// the other lacks on its stretch, and a far-behind side a burst. This many
/// with rounds of a second or longer; shorter rounds get proportionally
/// fewer (see [`Node::syncs_per_round`]).
const SYNCS_PER_ROUND: usize = if cfg!(feature = "catch-up") { 32 } else { 0 };

/// SYNs a SYN whose sender's summary differs from ours gets, for as many
/// differing segments: one. A peer serves one burst to a peer at a time,
/// so syncs spread over many peers fill a far-behind node faster than
/// several to one (`gossip sim --scenario converge`: 3,000 nodes converge
/// in 7.1 rounds with one, 9.3 with two).
#[cfg(feature = "catch-up")]
const SYNCS_PER_SYN: usize = 1;

/// Requests ranked per ACK (more than half a datagram holds).
const RANKED_REQUESTS: usize = 64;

/// Consecutive deltas that do not fit before a reply is considered full.
const FULL_AFTER_MISSES: u32 = 4;

/// The STATUS value a node publishes when it shuts down gracefully.
pub const SHUTDOWN_STATUS: &[u8] = b"shutdown,true";

/// A datagram the caller must send: `size` bytes at the start of the buffer
/// given to [`Node::poll_transmit`], to `destination`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Where to send it.
    pub destination: SocketAddr,
    /// How many bytes of the buffer to send.
    pub size: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Running,
    /// Sending SHUTDOWN notices; `cursor` is the next slot to consider.
    ShuttingDown {
        cursor: usize,
    },
    Stopped,
}

/// One gossip node: the sans-IO state machine.
///
/// `S` chooses the storage ([`HeapStorage`](crate::HeapStorage) with an
/// allocator, [`FixedStorage`](crate::FixedStorage) without); `R` is the
/// caller's random number generator (any `rand_core` RNG; with the same seed
/// and the same inputs a node's outputs are byte for byte the same).
pub struct Node<S: Storage, R> {
    config: Config,
    local: SocketAddr,
    me: EndpointState<S::StateBuf>,
    peers: S::Peers,
    index: S::Index,
    free: S::Indices,
    events: S::Indices,
    event_head: usize,
    replies: S::Replies,
    /// Per slot, the seqs seen from that sender (authenticated clusters;
    /// empty until a sealed datagram arrives).
    #[cfg(feature = "auth")]
    replays: S::Replays,
    reply_head: usize,
    seeds: heapless::Vec<SocketAddr, MAX_SEEDS>,
    targets: heapless::Vec<SocketAddr, MAX_TARGETS>,
    /// Where the next SYN's stretch of the ring starts.
    ring_cursor: u32,
    /// The slot the next round's sweep starts at.
    sweep_cursor: usize,
    /// The probe cycle, probes in flight, PING-REQs served, liveness
    /// messages to send.
    prober: probe::Prober,
    /// Membership rumors to piggyback and push.
    rumors: rumors::Rumors,
    /// Catch-up bursts for peers far behind.
    catch_up: catch_up::CatchUps,
    /// Which endpoints we know, ourselves included: sent in every SYN.
    summary: wire::Summary,
    /// Syncs owed (to peers whose summaries differ from ours, or whose
    /// bursts asked for more): to whom, where from, and whether by a
    /// filter.
    #[cfg_attr(not(feature = "catch-up"), allow(dead_code))]
    syncs: heapless::Vec<(SocketAddr, u32, bool), SYNCS_PER_ROUND>,
    /// Syncs started this round.
    synced: u8,
    /// Suspects whose timeouts are tracked to the instant.
    suspects: heapless::Vec<u32, { suspicion::TRACKED_SUSPECTS }>,
    /// This node's incarnation within its generation (raised to refute).
    incarnation: u32,
    /// The bit this node sets in the suspicions it confirms.
    confirmer_bit: u8,
    /// `suspicion_mult`, in thousandths.
    suspicion_mult_milli: u64,
    /// Local health (Lifeguard): 0 is healthy, up to [`MAX_HEALTH`].
    health: u8,
    /// Phi-triggered probes this round may still start.
    phi_probes: u32,
    /// Slots whose news reached us most recently, newest last, with the
    /// stamp they had then (an entry is current while the slot's stamp
    /// matches).
    recent: heapless::Deque<(u32, u32), RECENT>,
    stamp: u32,
    /// The latest slots whose application news reached us, with their
    /// stamps then, newest last.
    #[cfg(feature = "alloc")]
    fresh: heapless::Deque<(u32, u32), FRESH_NEWS>,
    /// The stamp at the start of the last round and of the one before:
    /// news stamped past the older is fresh (see `fresh_news`).
    #[cfg(feature = "alloc")]
    round_stamps: [u32; 2],
    /// Rounds left that push application news to one more peer.
    news: u8,
    /// Rounds left that gossip to three more peers: new endpoints or
    /// generations came in lately (a join is going on, and the joiners'
    /// states and ours spread faster for it).
    joining: u8,
    rng: R,
    next_round: Instant,
    last_round: Option<Instant>,
    pause_grace_until: Instant,
    /// When the node was created, and the latest `now` it was given.
    started: Instant,
    last_now: Instant,
    /// Occupied slots (members and quarantined).
    occupied: usize,
    /// Members believed up (alive or suspected).
    alive: usize,
    /// Members down or left.
    unreachable: usize,
    phase: Phase,
    stats: Stats,
    /// The views the last datagram's deltas were merged into, as they were
    /// before: `(slot, generation, max version)`. The simulator checks,
    /// once the datagram is handled, that none went back.
    #[cfg(feature = "internals")]
    merged: alloc::vec::Vec<(u32, Generation, Version)>,
    /// The key ring, when authenticating.
    #[cfg(feature = "auth")]
    auth: Option<Keyring>,
    /// The next `seq` to seal with: kept when the ring is switched off and
    /// on again, so peers never see a `seq` twice.
    #[cfg(feature = "auth")]
    next_seq: u64,
}

impl<S: Storage, R: Rng> Node<S, R> {
    /// A node gossiping as `local` (its address, and identity, in the
    /// cluster) in incarnation `generation`, knowing `seeds` (its own address
    /// among them is ignored). Its first round is due at `now`.
    ///
    /// Fails when the configuration is invalid or the storage cannot hold
    /// what it allows.
    pub fn new(
        config: Config,
        local: SocketAddr,
        generation: Generation,
        seeds: &[SocketAddr],
        rng: R,
        now: Instant,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        check_storage::<S>(&config)?;
        if generation > crate::state::MAX_GENERATION {
            return Err(ConfigError::Generation);
        }
        let mut seed_list = heapless::Vec::new();
        for seed in seeds {
            if *seed != local && !seed_list.contains(seed) {
                seed_list
                    .push(*seed)
                    .map_err(|_| ConfigError::TooManySeeds)?;
            }
        }
        let index = S::Index::default();
        let prober = probe::Prober::default();
        // Validated: above 0 and at most 100.
        let suspicion_mult_milli = (config.suspicion_mult * 1000.0) as u64;
        Ok(Self {
            config,
            local,
            me: EndpointState::new(generation),
            peers: S::Peers::default(),
            index,
            free: S::Indices::default(),
            events: S::Indices::default(),
            event_head: 0,
            replies: S::Replies::default(),
            #[cfg(feature = "auth")]
            replays: S::Replays::default(),
            reply_head: 0,
            seeds: seed_list,
            targets: heapless::Vec::new(),
            ring_cursor: 0,
            sweep_cursor: 0,
            prober,
            rumors: rumors::Rumors::default(),
            catch_up: catch_up::CatchUps::default(),
            summary: {
                let mut summary = wire::Summary::default();
                summary.add(ring_position(&local));
                summary
            },
            syncs: heapless::Vec::new(),
            synced: 0,
            suspects: heapless::Vec::new(),
            incarnation: 0,
            confirmer_bit: crate::claim::confirmer_bit(ring_position(&local)),
            suspicion_mult_milli,
            health: 0,
            phi_probes: PHI_PROBES_PER_ROUND,
            recent: heapless::Deque::new(),
            stamp: 0,
            #[cfg(feature = "alloc")]
            fresh: heapless::Deque::new(),
            #[cfg(feature = "alloc")]
            round_stamps: [0; 2],
            news: 0,
            joining: 0,
            rng,
            next_round: now,
            last_round: None,
            pause_grace_until: Instant::ZERO,
            started: now,
            last_now: now,
            occupied: 0,
            alive: 0,
            unreachable: 0,
            phase: Phase::Running,
            stats: Stats::default(),
            #[cfg(feature = "internals")]
            merged: alloc::vec::Vec::new(),
            #[cfg(feature = "auth")]
            auth: None,
            #[cfg(feature = "auth")]
            next_seq: crate::auth::first_seq(generation.0),
        })
    }

    // ---- inputs ---------------------------------------------------------

    /// A datagram arrived from `from` (its source address; replies go there).
    ///
    /// Bad input never panics and is never an error for the caller: it is
    /// dropped, counted by reason in [`Node::stats`], and leaves the state
    /// unchanged. Every delta of a datagram is checked before any is applied.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        self.last_now = self.last_now.max(now);
        if self.phase == Phase::Running {
            self.note_pause(now);
        }
        self.stats.datagrams_in += 1;
        self.stats.bytes_in += datagram.len() as u64;
        #[cfg(feature = "internals")]
        self.merged.clear();
        if let Err(reason) = self.try_handle(now, from, datagram) {
            self.stats.drop(reason);
        }
    }

    /// A deadline passed. Runs the gossip round when it is due; harmless when
    /// called early or often.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.last_now = self.last_now.max(now);
        if self.phase != Phase::Running {
            return;
        }
        self.note_pause(now);
        self.probe_deadlines(now);
        self.expire_suspicions(now);
        if now >= self.next_round {
            self.round(now);
        }
    }

    // ---- commands -------------------------------------------------------

    /// Sets one of this node's application states; it spreads from the next
    /// round on. Returns the version it was written at.
    pub fn set_local_state(
        &mut self,
        key: StateKey<'_>,
        value: &[u8],
    ) -> Result<Version, MergeError> {
        let limits = self.config.limits;
        let version = self.me.set_local(key, value, &limits)?;
        self.news = NEWS_ROUNDS;
        Ok(version)
    }

    /// Leaves the cluster gracefully: STATUS becomes `shutdown,true`, the
    /// heartbeat jumps to the highest version, and the following
    /// [`poll_transmit`](Self::poll_transmit) calls return a SHUTDOWN notice
    /// for every live peer, which marks this node down at once. When they are
    /// drained, [`is_shut_down`](Self::is_shut_down) is true and the node
    /// neither sends nor accepts anything more.
    pub fn shutdown(&mut self, now: Instant) {
        if self.phase != Phase::Running {
            return;
        }
        let limits = self.config.limits;
        // Fails only if the state is full of other keys; the notice itself
        // still marks this node down.
        let _ = self.me.set_local(
            StateKey::Known(ApplicationState::Status),
            SHUTDOWN_STATUS,
            &limits,
        );
        self.me.force_highest_heartbeat();
        self.targets.clear();
        self.replies.truncate(0);
        self.reply_head = 0;
        self.phase = Phase::ShuttingDown { cursor: 0 };
        self.last_round = Some(now);
    }

    /// Authenticates from now on with `ring` (feature `auth`): every datagram
    /// sent is sealed with its primary key, and every datagram received must
    /// carry a seal made with one of its keys and a sequence number not seen
    /// before from its sender; others are dropped ([`DropReason::MissingAuth`],
    /// [`DropReason::BadMac`], [`DropReason::Replayed`]). `None` turns
    /// authentication off. Rotate keys by changing the ring in place
    /// ([`keyring_mut`](Self::keyring_mut)).
    #[cfg(feature = "auth")]
    pub fn set_keyring(&mut self, ring: Option<Keyring>) {
        self.auth = ring;
    }

    /// The key ring, when authenticating.
    #[cfg(feature = "auth")]
    pub fn keyring(&self) -> Option<&Keyring> {
        self.auth.as_ref()
    }

    /// The key ring, to install, promote or remove keys.
    #[cfg(feature = "auth")]
    pub fn keyring_mut(&mut self) -> Option<&mut Keyring> {
        self.auth.as_mut()
    }

    /// Makes room for `additional` more endpoints at once (never past
    /// [`Config::max_peers`]), for a node that knows how large its cluster
    /// is: with [`HeapStorage`](crate::HeapStorage) the peer table, its
    /// index and ring order are allocated once, at that size, instead of
    /// growing (and copying themselves) as endpoints are learned, and hold
    /// no spare room past it. Fixed storage has all its room already: a
    /// no-op there.
    pub fn reserve_peers(&mut self, additional: usize) {
        let slots = self.peers.as_slice().len();
        let room = self.config.max_peers.saturating_sub(self.occupied);
        let additional = additional.min(room);
        // Free slots are reused before the table grows.
        let new_slots = additional
            .saturating_sub(self.free.as_slice().len())
            .min(self.config.max_peers.saturating_sub(slots));
        self.peers.reserve(new_slots);
        self.index.reserve(additional, self.peers.as_slice());
    }

    // ---- outputs --------------------------------------------------------

    /// The next datagram to send, encoded into `buf` (at most
    /// `max_datagram_size` bytes of it are used; give at least that many, or
    /// what does not fit is counted in [`Stats::unencodable`] and skipped).
    /// Call until `None` after every input.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<Transmit> {
        let limit = buf.len().min(self.config.max_datagram_size);
        let full = buf.get_mut(..limit)?;
        // Room for the seal, when authenticating.
        #[cfg(feature = "auth")]
        let message_limit = match self.auth {
            Some(_) => limit.saturating_sub(crate::auth::TRAILER_LEN),
            None => limit,
        };
        #[cfg(not(feature = "auth"))]
        let message_limit = limit;
        loop {
            let buf = full.get_mut(..message_limit)?;
            let (destination, size, kind) = match self.phase {
                Phase::Stopped => return None,
                Phase::ShuttingDown { cursor } => match self.next_shutdown_target(cursor) {
                    Some((slot, destination)) => {
                        self.phase = Phase::ShuttingDown { cursor: slot + 1 };
                        (destination, Some(self.write_shutdown(buf)), Kind::Shutdown)
                    }
                    None => {
                        self.phase = Phase::Stopped;
                        return None;
                    }
                },
                Phase::Running => {
                    if let Some(out) = self.prober.next_outgoing() {
                        let size = self.write_liveness(buf, out.to, &out.msg);
                        (out.to, Some(size), out.msg.kind())
                    } else if let Some(reply) = self.write_next_reply(now, buf) {
                        reply
                    } else if let Some((to, size)) = self.write_correction(buf) {
                        (to, size, Kind::News)
                    } else if let Some(to) = self.next_push() {
                        let size = self.write_news(buf, to);
                        (to, size, Kind::News)
                    } else if let Some(target) = self.targets.pop() {
                        self.watch_gossip(now, target);
                        (
                            target,
                            Some(self.write_syn(buf, target, None, false)),
                            Kind::Syn,
                        )
                    } else if let Some((to, start, filter)) = self.next_sync() {
                        (
                            to,
                            Some(self.write_syn(buf, to, Some(start), filter)),
                            Kind::Syn,
                        )
                    } else if let Some((to, size)) = self.write_catch_up(now, buf) {
                        (to, size, Kind::CatchUp)
                    } else {
                        return None;
                    }
                }
            };
            let size = match size {
                // Nothing to say (an exchange already in sync).
                None => continue,
                Some(0) => {
                    self.stats.unencodable += 1;
                    continue;
                }
                Some(size) => size,
            };
            #[cfg(feature = "auth")]
            let size = match &self.auth {
                Some(ring) => {
                    let Some(sealed) = ring.seal(full, size, self.next_seq) else {
                        self.stats.unencodable += 1;
                        continue;
                    };
                    self.next_seq = self.next_seq.wrapping_add(1);
                    sealed
                }
                None => size,
            };
            self.stats.datagrams_out += 1;
            self.stats.bytes_out += size as u64;
            if let Some(c) = self.stats.sent_by_kind.get_mut(kind_index(kind)) {
                *c += 1;
            }
            return Some(Transmit { destination, size });
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) is next due; `None` once
    /// the node has shut down.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.phase != Phase::Running {
            return None;
        }
        let probes = self.prober.next_deadline();
        // Suspicions do not time out while recovering from a pause.
        let suspicions = self
            .next_suspicion_deadline()
            .map(|t| t.max(self.pause_grace_until));
        let next = [probes, suspicions, self.catch_up.deadline()]
            .into_iter()
            .flatten()
            .fold(self.next_round, Instant::min);
        Some(next)
    }

    /// The next membership event, `None` when there are none.
    pub fn poll_event(&mut self) -> Option<Event<'_>> {
        let (idx, kind) = self.next_event()?;
        let peer = self.peers.as_slice().get(idx as usize)?;
        let endpoint = peer.addr();
        Some(match kind {
            EventKind::Discovered => Event::Discovered { endpoint },
            EventKind::Up => Event::Up { endpoint },
            EventKind::Suspect => Event::Suspect { endpoint },
            EventKind::Down => Event::Down { endpoint },
            EventKind::Restarted => Event::Restarted {
                endpoint,
                generation: peer.state.generation(),
            },
            EventKind::ShutDown => Event::ShutDown { endpoint },
            EventKind::Removed => Event::Removed { endpoint },
            EventKind::StateChanged(version) => {
                let (key, value) = peer.state.entries().find(|(_, v)| v.version == version)?;
                Event::StateChanged {
                    endpoint,
                    key,
                    value,
                }
            }
        })
    }

    // ---- private: input -------------------------------------------------

    fn try_handle(
        &mut self,
        now: Instant,
        from: SocketAddr,
        datagram: &[u8],
    ) -> Result<(), DropReason> {
        if self.phase != Phase::Running {
            return Err(DropReason::ShutDown);
        }
        if datagram.len() > self.config.max_datagram_size {
            return Err(DropReason::Oversized);
        }
        let decoded = wire::decode(datagram, self.config.cluster).map_err(DropReason::from_wire)?;
        #[cfg(feature = "auth")]
        let seq = match (&self.auth, decoded.auth_tag) {
            (Some(ring), Some(_)) => Some(ring.open(datagram).map_err(|_| DropReason::BadMac)?),
            (Some(_), None) => return Err(DropReason::MissingAuth),
            (None, Some(_)) => return Err(DropReason::Unauthenticated),
            (None, None) => None,
        };
        #[cfg(not(feature = "auth"))]
        if decoded.auth_tag.is_some() {
            return Err(DropReason::Unauthenticated);
        }
        let sender = decoded.header.sender;
        if sender == self.local {
            return Err(DropReason::FromSelf);
        }
        // A seq seen before, too far below the newest, or from an older
        // incarnation of the sender than the one known (its generation is
        // in the seq's high half) is a replay.
        #[cfg(feature = "auth")]
        if let Some(seq) = seq
            && let Some(idx) = self.index.find(&sender, self.peers.as_slice())
            && self.peers.as_slice().get(idx as usize).is_some_and(|p| {
                let window = self.replays.as_slice().get(idx as usize).copied();
                !window.unwrap_or_default().is_fresh(seq)
                    || seq < crate::auth::first_seq(p.state.generation().0)
            })
        {
            return Err(DropReason::Replayed);
        }
        // Authenticated replies go to the sender's authenticated address,
        // not to the datagram's source: a replayed datagram with a forged
        // source cannot aim replies at a third party.
        #[cfg(feature = "auth")]
        let from = if seq.is_some() { sender } else { from };
        if let Some(idx) = self.index.find(&sender, self.peers.as_slice())
            && self
                .peers
                .as_slice()
                .get(idx as usize)
                .is_some_and(|p| p.slot == Slot::Quarantined)
            && !revives_sender(&decoded.message, self.peers.as_slice().get(idx as usize))
        {
            return Err(DropReason::Quarantined);
        }
        match decoded.message {
            // Its digests are noted when the reply is written, in the same
            // pass that finds them for the reply.
            Message::Syn(syn) => {
                // Without bursts, a filter is not read: what we know on its
                // range goes in the ACK as to a SYN that lacks it all.
                let filter = syn.filter.filter(|_| cfg!(feature = "catch-up"));
                self.queue_reply(from, StoredReply::Syn(syn.digests, syn.range, filter))?;
                #[cfg(feature = "catch-up")]
                if let Some(theirs) = syn.summary {
                    self.compare_summary(sender, from, &wire::Summary::from_wire(theirs));
                }
            }
            Message::Ack(ack) => {
                let slots = self.check_deltas(ack.deltas)?;
                if !ack.requests.is_empty() {
                    self.queue_reply(from, StoredReply::Ack(ack.requests))?;
                }
                self.apply_deltas(now, ack.deltas, &slots);
            }
            Message::Ack2(ack2) => self.take_deltas(now, ack2.deltas)?,
            Message::CatchUp(burst) => {
                self.take_deltas(now, burst.deltas)?;
                self.caught_up(sender, burst.next, burst.more);
            }
            Message::Shutdown(notice) => {
                let slot = self.check_delta(sender, &notice.delta)?;
                let claim = Claim::new(0, Status::Alive);
                self.apply_delta(now, sender, &notice.delta, claim, Some(slot));
                self.mark_shut_down(now, sender, notice.delta.generation);
            }
            Message::Probe(probe) => self.handle_probe(now, sender, from, probe),
        }
        // The datagram was accepted: an answer from its sender, and news.
        self.prober.heard_from(sender);
        for rumor in decoded.rumors {
            self.hear_rumor(now, from, &rumor);
        }
        if let Some(c) = self
            .stats
            .received_by_kind
            .get_mut(kind_index(decoded.message.kind()))
        {
            *c += 1;
        }
        #[cfg(feature = "auth")]
        if let Some(seq) = seq
            && let Some(idx) = self.index.find(&sender, self.peers.as_slice())
        {
            // Windows exist for the slots of senders heard sealed so far.
            while self.replays.as_slice().len() <= idx as usize
                && self.replays.try_push(Default::default()).is_ok()
            {}
            if let Some(window) = self.replays.as_mut_slice().get_mut(idx as usize) {
                window.record(seq);
            }
        }
        Ok(())
    }

    /// Whether `addr` is a member in the table (not removed).
    fn is_member(&self, addr: &SocketAddr) -> bool {
        self.index
            .find(addr, self.peers.as_slice())
            .and_then(|i| self.peers.as_slice().get(i as usize))
            .is_some_and(|p| p.is_member())
    }

    /// Checks every delta, then applies them all (an ACK2's, a
    /// CATCH-UP's).
    #[inline(never)]
    fn take_deltas(&mut self, now: Instant, deltas: wire::Deltas<'_>) -> Result<(), DropReason> {
        let slots = self.check_deltas(deltas)?;
        self.apply_deltas(now, deltas, &slots);
        Ok(())
    }

    /// Our generation advanced by the seconds we have been running: the
    /// reference the one-year bogus-generation limit is measured from (a
    /// generation is boot time in seconds), as Cassandra measures it from now.
    fn reference_generation(&self) -> Generation {
        let running = (self.last_now - self.started).as_secs();
        Generation(self.me.generation().0.saturating_add(running))
    }

    /// Keeps a SYN or ACK until its reply is polled.
    fn queue_reply(&mut self, to: SocketAddr, input: StoredReply<'_>) -> Result<(), DropReason> {
        let pending = self.replies.as_slice().len() - self.reply_head;
        if pending >= self.config.max_pending_replies {
            return Err(DropReason::ReplyQueueFull);
        }
        if self.reply_head > 0 {
            // Reclaim the slots of replies already sent: the first of them
            // takes this one, in the buffer it had (no allocation).
            let head = self.reply_head;
            self.replies.as_mut_slice().rotate_left(head);
            self.replies.truncate(pending + 1);
            self.reply_head = 0;
            if let Some(r) = self.replies.as_mut_slice().last_mut() {
                r.to = to;
            }
        } else {
            self.replies
                .try_push(Reply {
                    to,
                    bytes: S::Datagram::default(),
                })
                .map_err(|_| DropReason::ReplyQueueFull)?;
        }
        // Copied into its slot, not built aside and moved (a fixed datagram
        // is as large as the reply queue's slots).
        let copied = self.replies.as_mut_slice().last_mut().is_some_and(|r| {
            let old = r.bytes.bytes().len();
            r.bytes
                .splice_gap(0, old, input.stored_len())
                .map(|gap| input.store(gap))
                .is_ok()
        });
        if !copied {
            self.replies.truncate(pending);
            return Err(DropReason::Oversized);
        }
        Ok(())
    }
    // ---- private: output ------------------------------------------------

    fn header(&self) -> Header {
        Header {
            cluster: self.config.cluster,
            sender: self.local,
        }
    }

    fn own_digest(&self) -> GossipDigest {
        GossipDigest {
            endpoint: self.local,
            generation: self.me.generation(),
            max_version: self.me.max_version(),
            claim: self.own_claim(),
        }
    }

    /// A PING, PING-REQ, PING-ACK or NACK to `to`, with rumors.
    fn write_liveness(&mut self, buf: &mut [u8], to: SocketAddr, msg: &wire::Probe) -> usize {
        let rumors = self.piggyback(to, &[]);
        wire::encode_probe(buf, &self.header(), &rumors, msg).unwrap_or(0)
    }

    /// A NEWS datagram to `to`: the hottest rumors (`None` when none is
    /// left to say).
    fn write_news(&mut self, buf: &mut [u8], to: SocketAddr) -> Option<usize> {
        let rumors = self.piggyback(to, &[]);
        if rumors.is_empty() {
            return None;
        }
        Some(wire::encode_probe(buf, &self.header(), &rumors, &wire::Probe::News).unwrap_or(0))
    }

    fn next_shutdown_target(&self, cursor: usize) -> Option<(usize, SocketAddr)> {
        self.peers
            .as_slice()
            .iter()
            .enumerate()
            .skip(cursor)
            .find(|(_, p)| p.is_member() && p.is_alive())
            .map(|(i, p)| (i, p.addr()))
    }

    fn write_shutdown(&self, buf: &mut [u8]) -> usize {
        // Everything in version order: the highest heartbeat rides only when
        // every older entry fits, so no receiver ends up advertising a
        // version it lacks entries below. (The notice marks us down
        // whatever it carries.)
        wire::encode_shutdown(
            buf,
            &self.header(),
            &[],
            self.me.generation(),
            self.me.items_above(Version(0)),
        )
        .unwrap_or(0)
    }
}

fn check_storage<S: Storage>(config: &Config) -> Result<(), ConfigError> {
    let short = |cap: Option<usize>, need: usize| cap.is_some_and(|c| c < need);
    if short(S::Peers::default().capacity_limit(), config.max_peers)
        || short(S::Indices::default().capacity_limit(), config.max_peers)
    {
        return Err(ConfigError::Storage(StorageShortfall::Peers));
    }
    if short(
        S::StateBuf::default().capacity_limit(),
        config.limits.max_state_bytes(),
    ) {
        return Err(ConfigError::Storage(StorageShortfall::StateBytes));
    }
    if short(
        S::Datagram::default().capacity_limit(),
        config.max_datagram_size,
    ) {
        return Err(ConfigError::Storage(StorageShortfall::DatagramBytes));
    }
    if short(
        S::Replies::default().capacity_limit(),
        config.max_pending_replies,
    ) {
        return Err(ConfigError::Storage(StorageShortfall::Replies));
    }
    Ok(())
}

/// Whether a datagram from a quarantined sender carries its restart (a newer
/// generation of itself), which ends the quarantine.
fn revives_sender<B: StateBuf>(message: &Message<'_>, peer: Option<&Peer<B>>) -> bool {
    let Some(peer) = peer else {
        return false;
    };
    let newer = |generation: Generation| generation > peer.state.generation();
    let in_deltas = |deltas| has_newer(deltas, peer.addr(), peer.state.generation());
    match *message {
        Message::Syn(syn) => syn
            .digests
            .into_iter()
            .any(|d| d.endpoint == peer.addr() && newer(d.generation)),
        Message::Ack(ack) => in_deltas(ack.deltas),
        Message::Ack2(ack2) => in_deltas(ack2.deltas),
        Message::CatchUp(burst) => in_deltas(burst.deltas),
        Message::Shutdown(_) | Message::Probe(_) => false,
    }
}

/// Whether `deltas` carry `endpoint` at a generation above `generation`.
#[inline(never)]
fn has_newer(deltas: wire::Deltas<'_>, endpoint: SocketAddr, generation: Generation) -> bool {
    deltas
        .into_iter()
        .any(|d| d.endpoint == endpoint && d.delta.generation > generation)
}

fn digest_of<B: StateBuf>(p: &Peer<B>) -> GossipDigest {
    GossipDigest {
        endpoint: p.addr(),
        generation: p.state.generation(),
        max_version: p.state.max_version(),
        claim: p.claim(),
    }
}

/// Where a claim comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    /// This node's own probes and timeouts.
    Own,
    /// Others, about a member we know.
    Heard,
    /// Others, about an endpoint we just learned (or its new generation).
    Fresh,
}

#[cfg(test)]
mod tests;
