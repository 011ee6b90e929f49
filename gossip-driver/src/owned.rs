//! Owned copies of what a [`Node`] reports, for bindings that
//! hand events and snapshots to other tasks (feature `alloc`).
//!
//! Every binding needs these conversions; they live here so there is one copy.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::net::SocketAddr;

use crate::node::{Event, Node, Stats};
use crate::state::{EndpointState, StateKey, VersionedValue};
use crate::storage::StateBuf;
use crate::table::{Liveness, Peer, Storage};
use crate::time::Instant;

/// An owned [`Event`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MembershipEvent {
    /// A new endpoint entered the table.
    Discovered(SocketAddr),
    /// An endpoint is believed up (again, after `Down` or `Restarted`).
    Up(SocketAddr),
    /// An endpoint is suspected (down unless it refutes in time).
    Suspect(SocketAddr),
    /// An endpoint that was up is believed down.
    Down(SocketAddr),
    /// An endpoint came back with a newer generation: not believed up until
    /// an `Up` follows.
    Restarted {
        /// Its address.
        endpoint: SocketAddr,
        /// Its new generation.
        generation: u64,
    },
    /// An endpoint announced a graceful shutdown.
    ShutDown(SocketAddr),
    /// An endpoint was removed after being down too long.
    Removed(SocketAddr),
    /// An application state of an endpoint changed.
    StateChanged {
        /// Its address.
        endpoint: SocketAddr,
        /// The key's name (`STATUS`, or a user key).
        key: String,
        /// The new value.
        value: Vec<u8>,
        /// Its version.
        version: u64,
    },
}

impl From<Event<'_>> for MembershipEvent {
    fn from(e: Event<'_>) -> Self {
        match e {
            Event::Discovered { endpoint } => MembershipEvent::Discovered(endpoint),
            Event::Up { endpoint } => MembershipEvent::Up(endpoint),
            Event::Suspect { endpoint } => MembershipEvent::Suspect(endpoint),
            Event::Down { endpoint } => MembershipEvent::Down(endpoint),
            Event::Restarted {
                endpoint,
                generation,
            } => MembershipEvent::Restarted {
                endpoint,
                generation: generation.0,
            },
            Event::ShutDown { endpoint } => MembershipEvent::ShutDown(endpoint),
            Event::Removed { endpoint } => MembershipEvent::Removed(endpoint),
            Event::StateChanged {
                endpoint,
                key,
                value,
            } => MembershipEvent::StateChanged {
                endpoint,
                key: key.to_string(),
                value: value.value.to_vec(),
                version: value.version.0,
            },
        }
    }
}

impl core::fmt::Display for MembershipEvent {
    /// One line, as the bindings log it: `up 10.0.0.1:7000`,
    /// `state 10.0.0.1:7000 LOAD=0.5 (v7)`.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            MembershipEvent::Discovered(a) => write!(f, "discovered {a}"),
            MembershipEvent::Up(a) => write!(f, "up {a}"),
            MembershipEvent::Suspect(a) => write!(f, "suspect {a}"),
            MembershipEvent::Down(a) => write!(f, "down {a}"),
            MembershipEvent::Restarted {
                endpoint,
                generation,
            } => write!(f, "restarted {endpoint} generation {generation}"),
            MembershipEvent::ShutDown(a) => write!(f, "shut down {a}"),
            MembershipEvent::Removed(a) => write!(f, "removed {a}"),
            MembershipEvent::StateChanged {
                endpoint,
                key,
                value,
                version,
            } => write!(
                f,
                "state {endpoint} {key}={} (v{version})",
                String::from_utf8_lossy(value)
            ),
        }
    }
}

/// One application state, owned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateSnapshot {
    /// The key's name.
    pub key: String,
    /// When it was written, in its owner's version counter.
    pub version: u64,
    /// The value.
    pub value: Vec<u8>,
}

impl StateSnapshot {
    fn of(key: StateKey<'_>, value: VersionedValue<'_>) -> Self {
        Self {
            key: key.to_string(),
            version: value.version.0,
            value: value.value.to_vec(),
        }
    }

    /// The value as text (lossy).
    pub fn value_text(&self) -> String {
        String::from_utf8_lossy(&self.value).into_owned()
    }
}

/// One endpoint as a node sees it, owned.
#[derive(Clone, Debug, PartialEq)]
pub struct EndpointSnapshot {
    /// Its address.
    pub address: SocketAddr,
    /// Its generation.
    pub generation: u64,
    /// Its heartbeat version.
    pub heartbeat: u64,
    /// Whether it is believed up (alive or suspected).
    pub alive: bool,
    /// What the node believes of it: alive, suspect, down or left.
    pub liveness: Liveness,
    /// Its incarnation within its generation, as the node knows it (raised
    /// by the endpoint each time it refutes a suspicion of itself).
    pub incarnation: u32,
    /// The failure detector's phi (0 for the node itself).
    pub phi: f64,
    /// Its application states, in version order.
    pub states: Vec<StateSnapshot>,
}

impl EndpointSnapshot {
    fn of_state<B: StateBuf>(address: SocketAddr, state: &EndpointState<B>) -> Self {
        Self {
            address,
            generation: state.generation().0,
            heartbeat: state.heartbeat().version.0,
            alive: true,
            liveness: Liveness::Alive,
            incarnation: 0,
            phi: 0.0,
            states: state
                .entries()
                .map(|(k, v)| StateSnapshot::of(k, v))
                .collect(),
        }
    }

    fn of_peer<B: StateBuf>(peer: &Peer<B>, now: Instant) -> Self {
        Self {
            alive: peer.is_alive(),
            liveness: peer.liveness(),
            incarnation: peer.incarnation(),
            phi: peer.phi(now),
            ..Self::of_state(peer.addr(), peer.state())
        }
    }

    /// The state under `key` (by name), if any.
    pub fn state(&self, key: &str) -> Option<&StateSnapshot> {
        self.states.iter().find(|s| s.key == key)
    }
}

/// A node's whole view at one instant, owned.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    /// The node itself.
    pub local: EndpointSnapshot,
    /// Every endpoint it knows, by address.
    pub endpoints: Vec<EndpointSnapshot>,
    /// Its counters.
    pub stats: Stats,
}

impl Snapshot {
    /// Copies `node`'s view at `now`.
    pub fn of<S: Storage, R: rand_core::Rng>(node: &Node<S, R>, now: Instant) -> Self {
        let mut endpoints: Vec<EndpointSnapshot> = node
            .endpoints()
            .map(|p| EndpointSnapshot::of_peer(p, now))
            .collect();
        endpoints.sort_by_key(|e| e.address);
        Self {
            local: EndpointSnapshot {
                incarnation: node.incarnation(),
                ..EndpointSnapshot::of_state(node.local_addr(), node.local_state())
            },
            endpoints,
            stats: node.stats().clone(),
        }
    }

    /// Endpoints believed up, alive or suspected (the node itself not
    /// counted).
    pub fn alive(&self) -> usize {
        self.endpoints.iter().filter(|e| e.alive).count()
    }

    /// Endpoints with liveness `l` (the node itself not counted).
    pub fn count(&self, l: Liveness) -> usize {
        self.endpoints.iter().filter(|e| e.liveness == l).count()
    }

    /// The endpoint at `address`.
    pub fn endpoint(&self, address: &SocketAddr) -> Option<&EndpointSnapshot> {
        self.endpoints.iter().find(|e| e.address == *address)
    }
}
