//! Owned copies of what a [`Node`] reports, for the subscribers and
//! callers of a running node. State values are [`Bytes`]: an event sent to
//! many subscribers clones a reference count, not the value.

use std::net::SocketAddr;

use bytes::Bytes;
use gossip_core::state::{EndpointState, StateKey, VersionedValue};
use gossip_core::storage::StateBuf;
use gossip_core::{Event, Instant, Liveness, Node, Stats};
use gossip_core::{Peer, Storage};

use crate::{Generation, Version};

/// An owned [`Event`], with the same variants and field names. The order
/// they come in is in the crate's documentation.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum MembershipEvent {
    /// A new endpoint entered the table.
    Discovered {
        /// Its address.
        endpoint: SocketAddr,
    },
    /// An endpoint is believed up (again, after `Down` or `Restarted`).
    Up {
        /// Its address.
        endpoint: SocketAddr,
    },
    /// An endpoint is suspected (down unless it refutes in time).
    Suspect {
        /// Its address.
        endpoint: SocketAddr,
    },
    /// An endpoint that was up is believed down.
    Down {
        /// Its address.
        endpoint: SocketAddr,
    },
    /// An endpoint came back with a newer generation: not believed up until
    /// an `Up` follows.
    Restarted {
        /// Its address.
        endpoint: SocketAddr,
        /// Its new generation.
        generation: Generation,
    },
    /// An endpoint announced a graceful shutdown.
    ShutDown {
        /// Its address.
        endpoint: SocketAddr,
    },
    /// An endpoint was removed after being down too long.
    Removed {
        /// Its address.
        endpoint: SocketAddr,
    },
    /// An application state of an endpoint changed.
    StateChanged {
        /// Its address.
        endpoint: SocketAddr,
        /// The key's name (`STATUS`, or a user key).
        key: String,
        /// The new value.
        value: Bytes,
        /// Its version.
        version: Version,
    },
}

impl MembershipEvent {
    /// The endpoint the event is about.
    pub fn endpoint(&self) -> SocketAddr {
        match self {
            MembershipEvent::Discovered { endpoint }
            | MembershipEvent::Up { endpoint }
            | MembershipEvent::Suspect { endpoint }
            | MembershipEvent::Down { endpoint }
            | MembershipEvent::Restarted { endpoint, .. }
            | MembershipEvent::ShutDown { endpoint }
            | MembershipEvent::Removed { endpoint }
            | MembershipEvent::StateChanged { endpoint, .. } => *endpoint,
        }
    }
}

impl From<Event<'_>> for MembershipEvent {
    fn from(e: Event<'_>) -> Self {
        match e {
            Event::Discovered { endpoint } => MembershipEvent::Discovered { endpoint },
            Event::Up { endpoint } => MembershipEvent::Up { endpoint },
            Event::Suspect { endpoint } => MembershipEvent::Suspect { endpoint },
            Event::Down { endpoint } => MembershipEvent::Down { endpoint },
            Event::Restarted {
                endpoint,
                generation,
            } => MembershipEvent::Restarted {
                endpoint,
                generation,
            },
            Event::ShutDown { endpoint } => MembershipEvent::ShutDown { endpoint },
            Event::Removed { endpoint } => MembershipEvent::Removed { endpoint },
            Event::StateChanged {
                endpoint,
                key,
                value,
            } => MembershipEvent::StateChanged {
                endpoint,
                key: key.to_string(),
                value: Bytes::copy_from_slice(value.value),
                version: value.version,
            },
        }
    }
}

impl core::fmt::Display for MembershipEvent {
    /// One line, as the bindings log it: `up 10.0.0.1:7000`,
    /// `state 10.0.0.1:7000 LOAD=0.5 (v7)`.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            MembershipEvent::Discovered { endpoint } => write!(f, "discovered {endpoint}"),
            MembershipEvent::Up { endpoint } => write!(f, "up {endpoint}"),
            MembershipEvent::Suspect { endpoint } => write!(f, "suspect {endpoint}"),
            MembershipEvent::Down { endpoint } => write!(f, "down {endpoint}"),
            MembershipEvent::Restarted {
                endpoint,
                generation,
            } => write!(f, "restarted {endpoint} generation {}", generation.0),
            MembershipEvent::ShutDown { endpoint } => write!(f, "shut down {endpoint}"),
            MembershipEvent::Removed { endpoint } => write!(f, "removed {endpoint}"),
            MembershipEvent::StateChanged {
                endpoint,
                key,
                value,
                version,
            } => write!(
                f,
                "state {endpoint} {key}={} (v{})",
                String::from_utf8_lossy(value),
                version.0
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
    pub version: Version,
    /// The value.
    pub value: Bytes,
}

impl StateSnapshot {
    fn of(key: StateKey<'_>, value: VersionedValue<'_>) -> Self {
        Self {
            key: key.to_string(),
            version: value.version,
            value: Bytes::copy_from_slice(value.value),
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
    pub generation: Generation,
    /// Its heartbeat version.
    pub heartbeat: Version,
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
            generation: state.generation(),
            heartbeat: state.heartbeat().version,
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
