#![no_std]
#![forbid(unsafe_code)]
#![deny(clippy::indexing_slicing)]
#![cfg_attr(docsrs, feature(doc_cfg))]
//! A Cassandra-style gossip protocol as a `no_std`, sans-IO core.
//!
//! This crate holds the protocol's data and rules and nothing that touches a
//! socket or a clock. Bindings (tokio, smol, embedded UDP stacks) feed it
//! datagrams and deadlines and send what it asks them to.
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
//! let mut ack2 = Ack2Writer::new(&mut buf, &header).unwrap();
//! ack2.push_delta(header.sender, a.generation(), a.items_above(Version(0)));
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

pub mod state;
pub mod storage;
pub mod wire;
