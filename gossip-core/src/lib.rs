#![no_std]
#![forbid(unsafe_code)]
#![deny(clippy::indexing_slicing)]
//! A Cassandra-style gossip protocol as a `no_std`, sans-IO core.
//!
//! This crate holds the protocol's data and rules and nothing that touches a
//! socket or a clock: it does no I/O, never reads a clock, spawns nothing and
//! needs no allocator. Bindings (tokio, smol, embedded UDP stacks) feed a
//! [`Node`] datagrams and deadlines and send what it asks them to.
//!
//! # The run loop
//!
//! A [`Node`] takes **inputs** and produces **outputs**:
//!
//! | inputs | outputs |
//! |---|---|
//! | [`Node::handle_datagram`]`(now, from, bytes)` | [`Node::poll_transmit`]`(now, buf) -> Option<`[`Transmit`]`>` |
//! | [`Node::handle_timeout`]`(now)` | [`Node::poll_timeout`]`() -> Option<`[`Instant`]`>` |
//! | [`Node::set_local_state`]`(key, value)`, [`Node::shutdown`]`(now)` | [`Node::poll_event`]`() -> Option<`[`Event`]`>` |
//!
//! **The drain rule:** after every input or command, the caller drains the
//! outputs in this order: transmits until `None`, then reads the timeout (the
//! next deadline; arm a timer for it), then events until `None`. Nothing is
//! lost if a caller drains late, but replies wait in a small bounded queue
//! ([`Config::max_pending_replies`]) and datagrams beyond it are dropped.
//!
//! **Time:** `now` is always an argument. [`Instant`] is the core's own
//! monotonic time (microseconds from an origin the caller picks); durations
//! are [`core::time::Duration`]. [`Node::handle_timeout`] is harmless when
//! called early.
//!
//! **Randomness** comes from a [`rand_core::Rng`] the caller supplies: with
//! the same seed and the same inputs, a node's outputs are the same, byte for
//! byte, which is what makes simulation and fuzzing reproducible.
//! The traits are `rand_core` 0.10's, re-exported as
//! [`gossip_core::rand_core`](rand_core) so the version always matches: any
//! RNG of `rand` 0.10 or `rand_xoshiro` 0.8 fits (`rand` 0.9's `StdRng`
//! implements `rand_core` 0.9's traits, and does not).
//!
//! **Bad input** (malformed datagrams, other clusters, hostile values over the
//! limits) never panics and is never an error the caller must handle: it is
//! dropped, counted by [`DropReason`] in [`Node::stats`], and leaves the state
//! unchanged.
//!
//! ```
//! use core::time::Duration;
//! use gossip_core::{Config, Event, HeapStorage, Instant, Node};
//! use gossip_core::state::{Generation, StateKey};
//! use gossip_core::wire::ClusterId;
//! use rand_core::SeedableRng;
//! use rand_xoshiro::Xoshiro256PlusPlus as Rng;
//!
//! let config = Config::new(ClusterId::from_name("demo"));
//! let (a, b) = ("10.0.0.1:7000".parse()?, "10.0.0.2:7000".parse()?);
//! let mut now = Instant::ZERO;
//! // Node A is the seed; B knows only A.
//! let mut nodes: [Node<HeapStorage, Rng>; 2] = [
//!     Node::new(config.clone(), a, Generation(1_700_000_000), &[], Rng::seed_from_u64(1), now)?,
//!     Node::new(config, b, Generation(1_700_000_007), &[a], Rng::seed_from_u64(2), now)?,
//! ];
//! nodes[0].set_local_state(StateKey::parse("DC"), b"dc1")?;
//!
//! // What a binding does, with an in-memory "network" instead of a socket.
//! let mut in_flight = Vec::new();
//! let mut buf = [0u8; 1400];
//! let mut b_saw_a_up = false;
//! for _ in 0..100 {
//!     // Input: the deadline of every node that is due.
//!     for (i, node) in nodes.iter_mut().enumerate() {
//!         if node.poll_timeout().is_some_and(|t| t <= now) {
//!             node.handle_timeout(now);
//!         }
//!         // The drain: transmits, then the timeout, then events.
//!         while let Some(t) = node.poll_transmit(now, &mut buf) {
//!             in_flight.push((i, t.destination, buf[..t.size].to_vec()));
//!         }
//!         while let Some(event) = node.poll_event() {
//!             if let Event::Up { endpoint } = event {
//!                 b_saw_a_up |= i == 1 && endpoint == a;
//!             }
//!         }
//!     }
//!     // Input: every datagram in flight (delivered at once here).
//!     for (from, to, bytes) in core::mem::take(&mut in_flight) {
//!         let sender = nodes[from].local_addr();
//!         if let Some(node) = nodes.iter_mut().find(|n| n.local_addr() == to) {
//!             node.handle_datagram(now, sender, &bytes);
//!         }
//!     }
//!     now = now + Duration::from_millis(100);
//! }
//! assert!(b_saw_a_up);
//! let seen = nodes[1].endpoint(&a).unwrap();
//! assert_eq!(seen.state().get(&StateKey::parse("DC")).unwrap().value, b"dc1");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! (A real binding drains right after each `handle_datagram` too; the example
//! batches them, which the drain rule allows.)
//!
//! # The protocol ([`Node`])
//!
//! Every `gossip_interval` (1 s by default, jittered ±10%) a node bumps its
//! heartbeat, picks targets as Cassandra does (`fanout` random live peers; an
//! unreachable one with probability `unreachable / (live + 1)`; a seed when
//! no live target was one or fewer peers are live than there are seeds; for
//! two rounds after application news, one more live peer; for two rounds
//! after meeting a new endpoint or generation, three more) and sends each a
//! SYN with digests `(endpoint, generation, max_version, claim)`: its own, those
//! of the endpoints whose application news reached it last (so news spreads
//! as a rumor), and every endpoint it knows on the next stretch of a shared
//! hash ring ([`wire::ring_position`]), as far as one datagram holds. The
//! SYN says which stretch it covers completely, and successive SYNs sweep the
//! ring. The receiver compares each digest with its view: it requests what is
//! newer on the other side (endpoints it lacks first) and sends, in its ACK,
//! what is newer on its side, plus every endpoint it knows in the stretch that
//! the SYN left out (the sender lacks those), ranked: whole endpoints, then
//! application news, then heartbeats, largest version gap first. With
//! `alloc`, the ACK also carries whole, after the other news, up to two
//! endpoints whose states changed in the last two rounds when the SYN did
//! not mention them (none while endpoints are joining): a node that no
//! member happens to send a SYN to still learns news through its own. The ACK2
//! answers the requests. Whatever does not fit one datagram (1400 bytes by
//! default) follows in later rounds.
//!
//! Whether a member is alive is decided by SWIM's mechanisms with
//! Lifeguard's refinements, beside that anti-entropy (details in the
//! `node::probe`, `node::suspicion` and `node::rumors` module docs):
//!
//! - **probes**: each round a node pings one member, in its own random
//!   order, and checks that the member it gossiped to answered; no answer
//!   within the probe timeout (`probe_timeout`, a tenth of a round, longer
//!   when measured round trips say so): a second PING, and
//!   `indirect_probes` (3) other members ping it for it (PING-REQ) and
//!   relay the answer or a NACK;
//! - **suspicion**: no answer at all makes the member SUSPECT at the
//!   incarnation known, a [`claim::Claim`] that spreads as a rumor. Its
//!   timeout runs from `suspicion_max_mult × min` down to `min =
//!   suspicion_mult × gossip_interval × max(2, log10 N)` as other nodes'
//!   own failed probes confirm it; then it is DOWN. A node convicts only
//!   after its own probe failed (it probes first otherwise), and a death it
//!   hears of a member it has no reason to doubt is a suspicion to it;
//! - **refutation**: a member told it is suspected or down raises its own
//!   incarnation at once; "alive at a newer incarnation" beats both, so a
//!   member marked down that speaks again is seen up again, and no stale
//!   rumor brings a dead member back or keeps a live one down;
//! - **rumors**: every liveness change rides piggyback on every datagram
//!   (fewest-sent first, about `rumor_retransmit_mult × log10 N` times) and
//!   hot news is pushed at once to `push_fanout` members; every digest and
//!   delta also carries the sender's claim, so a node that missed a rumor
//!   still learns it;
//! - **believe the cluster**: an endpoint learned through gossip takes the
//!   liveness the gossip carries;
//! - **local health**: a node whose probes miss the NACKs they were owed,
//!   that must refute suspicions of itself or whose rounds run late
//!   stretches its own probe and suspicion timeouts (up to 9 times), and
//!   after a pause of its own raises no suspicion for as long again.
//!
//! The phi-accrual detector ([`fd`]) still runs on heartbeat arrivals and is
//! reported ([`Peer::phi`]); a member past `phi_threshold` is probed at once.
//! Nobody is marked down on phi alone. A graceful
//! [`Node::shutdown`] publishes `STATUS = shutdown,true` and the highest
//! heartbeat and tells every live peer, which marks the node down at once. A
//! newer generation replaces an endpoint wholesale (a restart). A peer down
//! longer than `removal_delay` is removed and its address quarantined, so
//! stale gossip cannot bring it back.
//!
//! # Storage ([`Storage`])
//!
//! [`HeapStorage`] (feature `alloc`, on by default) grows up to the
//! configured limits; [`FixedStorage`]
//! has compile-time capacities, needs no allocator and sizes the scratch a
//! call puts on the stack by its table's capacity. Both keep the occupied
//! slots in ring order (a SYN's stretch of the ring is walked, not the whole
//! table; peers are found by their ring position, a hash of the address)
//! and run the same state machine under the same [`Config`] limits.
//!
//! # Features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `alloc` | on | [`HeapStorage`]; needs an allocator |
//! | `auth` | on | cluster keys ([`auth`]): HMAC-SHA256 on every datagram; no allocator needed |
//! | `catch-up` | on | sending catch-up bursts and membership summaries (large clusters) |
//! | `serde` | off | `Serialize` / `Deserialize` for generations, versions, digests and claims |
//! | `internals` | off | what the simulator reads from inside a node (table slot numbers, the views a datagram merged into; implies `alloc`); no semver promise |
//!
//! No feature reads a clock, spawns a task or pulls a runtime crate.
//!
//! # Without an allocator
//!
//! On a microcontroller (or anywhere without a global allocator), turn the
//! default features off, so `alloc` is not asked for:
//!
//! ```toml
//! [dependencies]
//! gossip-core = { version = "0.1", default-features = false, features = ["auth"] }
//! rand_xoshiro = "0.8"   # any rand_core 0.10 RNG
//! ```
//!
//! Then pick a [`FixedStorage`] and let [`Config::fit`] shrink a
//! configuration to its capacities (the peer table, the state buffer, the
//! datagram and reply buffers), so [`Node::new`] accepts the pair:
//!
//! ```
//! use gossip_core::rand_core::SeedableRng;
//! use gossip_core::state::Generation;
//! use gossip_core::wire::ClusterId;
//! use gossip_core::{Config, FixedStorage, Instant, Node};
//!
//! // 16 peers, 488 bytes of state each, 512-byte datagrams, 2 replies:
//! // about 15 KB, inline in the node.
//! type Storage = FixedStorage<16, 488, 512, 2>;
//!
//! let config = Config::lan(ClusterId::from_name("fleet")).fit::<Storage>()?;
//! let me = "10.0.0.1:7946".parse()?;
//! let rng = rand_xoshiro::Xoshiro128PlusPlus::seed_from_u64(7);
//! let node = Node::<Storage, _>::new(config, me, Generation(1), &[], rng, Instant::ZERO)?;
//! # let _ = node;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! `scripts/outside-crate.sh` builds exactly this, from a crate outside the
//! workspace, for `thumbv7em-none-eabihf`, as CI does. `gossip-embedded`
//! runs such a node on `embedded-nal` and smoltcp.
//!
//! # The state model ([`state`])
//!
//! Every node owns one [`EndpointState`](state::EndpointState):
//!
//! - a [`HeartbeatState`](state::HeartbeatState): a
//!   [`Generation`](state::Generation), which changes only when the node
//!   restarts (seconds since the Unix epoch at boot, by convention), and a
//!   [`Version`](state::Version);
//! - application states: a map from [`StateKey`](state::StateKey) to
//!   [`VersionedValue`](state::VersionedValue). Keys are Cassandra's
//!   well-known states ([`ApplicationState`](state::ApplicationState): STATUS,
//!   LOAD, SCHEMA, DC, RACK, RELEASE_VERSION, INTERNAL_IP, HOST_ID, TOKENS,
//!   SEVERITY, NATIVE_TRANSPORT_ADDRESS, NET_VERSION, ...) sent as compact
//!   codes, or user-defined names.
//!
//! Versions come from one counter per node that increases on every heartbeat
//! and every local state change, so within a generation "newer" is always
//! defined. Each node keeps a replica of every endpoint's state it has heard
//! of and merges remote deltas into it with
//! [`EndpointState::apply`](state::EndpointState::apply): per key the higher
//! `(generation, version)` wins, a newer generation replaces the endpoint
//! wholesale, and a generation more than
//! [`Limits::max_generation_drift`](state::Limits::max_generation_drift)
//! (one year) ahead of the merging node's own is rejected as bogus. The merge
//! is commutative, associative and idempotent (tested as properties).
//!
//! [`Limits`](state::Limits) (keys per endpoint, key length, value length) are
//! configuration and hold everywhere. Storage of the states is the only thing
//! a build without an allocator does differently ([`storage`]): a fixed
//! `heapless::Vec<u8, N>` instead of a growing `Vec<u8>`, same behaviour.
//!
//! # The wire format ([`wire`])
//!
//! Every datagram is a 9-byte prefix (magic `"GS"`, protocol version, flags,
//! cluster identifier, message kind), the sender's address, and a
//! postcard-encoded body: SYN (digests), ACK (requests and deltas), ACK2
//! (deltas) or SHUTDOWN (the sender's final delta). The [`wire`] module
//! documents the layout byte by byte. Writers fill the caller's buffer with as
//! many digests and deltas as fit and never write past it; [`wire::decode`]
//! borrows from its input, never allocates and never panics.
//!
//! ```
//! use gossip_core::state::{ApplicationState, EndpointState, Generation, Limits, Version};
//! use gossip_core::wire::{self, Ack2Writer, ClusterId, Header, Message};
//!
//! let limits = Limits::default();
//! // Node A's own state: a heartbeat and STATUS.
//! let mut a: EndpointState<heapless::Vec<u8, 256>> = EndpointState::new(Generation(1_700_000_000));
//! a.set_local(ApplicationState::Status.into(), b"NORMAL", &limits).unwrap();
//! a.beat().unwrap();
//!
//! // A sends everything above version 0 in an ACK2.
//! let header = Header { cluster: ClusterId::from_name("demo"), sender: "10.0.0.1:7000".parse().unwrap() };
//! let mut buf = [0u8; 1400];
//! let mut ack2 = Ack2Writer::new(&mut buf, &header, &[]).unwrap();
//! ack2.push_delta(header.sender, a.generation(), Default::default(), a.items_above(Version(0)));
//! let len = ack2.finish();
//!
//! // B decodes it and merges it into its replica of A.
//! let datagram = wire::decode(&buf[..len], header.cluster).unwrap();
//! let Message::Ack2(body) = datagram.message else { unreachable!() };
//! let mut replica: EndpointState<heapless::Vec<u8, 256>> = EndpointState::new(Generation(0));
//! for delta in body.deltas {
//!     replica.apply(&delta.delta, &limits, Generation(1_700_000_100), |_, _| {}).unwrap();
//! }
//! assert_eq!(replica, a);
//! ```

#[cfg(feature = "alloc")]
extern crate alloc;

#[cfg(feature = "auth")]
pub mod auth;
pub mod claim;
pub mod config;
pub mod fd;
mod node;
pub mod state;
pub mod storage;
mod table;
pub mod time;
pub mod wire;

pub use config::{Config, ConfigError};
pub use node::{DropReason, Event, MAX_HEALTH, MAX_SEEDS, Node, SHUTDOWN_STATUS, Stats, Transmit};
/// The RNG traits a [`Node`] needs (version 0.10).
pub use rand_core;
#[cfg(feature = "alloc")]
pub use table::HeapStorage;
pub use table::{FixedStorage, Liveness, Peer, PeerOf, Storage};
pub use time::Instant;
