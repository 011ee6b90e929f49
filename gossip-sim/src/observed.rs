//! Events as the simulator keeps them between a node's step and the
//! observer: owned, so a window's steps can run on several threads. A
//! state's value is kept as a range of a byte buffer the events share (a
//! large run reports hundreds of millions of state changes; one allocation
//! each would cost more than the nodes' work).

use std::net::SocketAddr;

use gossip_core::Event;
use gossip_core::state::{ApplicationState, Generation, StateKey, Version, VersionedValue};

/// A node's event, owned, until the merge hands it to the observer.
pub(crate) enum Observed {
    Discovered(SocketAddr),
    Up(SocketAddr),
    Suspect(SocketAddr),
    Down(SocketAddr),
    Restarted(SocketAddr, Generation),
    ShutDown(SocketAddr),
    Removed(SocketAddr),
    StateChanged {
        endpoint: SocketAddr,
        key: OwnedKey,
        version: Version,
        /// Where the value is in the events' byte buffer.
        value: (u32, u32),
    },
}

pub(crate) enum OwnedKey {
    Known(ApplicationState),
    User(String),
    Unknown(u16),
}

impl Observed {
    /// The event, its value (if any) appended to `bytes`.
    pub(crate) fn of(e: &Event<'_>, bytes: &mut Vec<u8>) -> Self {
        match *e {
            Event::Discovered { endpoint } => Observed::Discovered(endpoint),
            Event::Up { endpoint } => Observed::Up(endpoint),
            Event::Suspect { endpoint } => Observed::Suspect(endpoint),
            Event::Down { endpoint } => Observed::Down(endpoint),
            Event::Restarted {
                endpoint,
                generation,
            } => Observed::Restarted(endpoint, generation),
            Event::ShutDown { endpoint } => Observed::ShutDown(endpoint),
            Event::Removed { endpoint } => Observed::Removed(endpoint),
            Event::StateChanged {
                endpoint,
                key,
                value,
            } => Observed::StateChanged {
                endpoint,
                key: match key {
                    StateKey::Known(k) => OwnedKey::Known(k),
                    StateKey::User(name) => OwnedKey::User(name.to_string()),
                    StateKey::Unknown(code) => OwnedKey::Unknown(code),
                },
                version: value.version,
                value: {
                    let start = bytes.len();
                    bytes.extend_from_slice(value.value);
                    (start as u32, value.value.len() as u32)
                },
            },
        }
    }

    /// The event with its value moved `by` bytes along (its buffer was
    /// appended to a larger one at that offset).
    pub(crate) fn shifted(mut self, by: usize) -> Self {
        if let Observed::StateChanged { value, .. } = &mut self {
            value.0 += by as u32;
        }
        self
    }

    /// Calls `f` with the event as the node reported it, its value read
    /// from `bytes`.
    pub(crate) fn with(&self, bytes: &[u8], f: impl FnOnce(&Event<'_>)) {
        let event = match self {
            Observed::Discovered(endpoint) => Event::Discovered {
                endpoint: *endpoint,
            },
            Observed::Up(endpoint) => Event::Up {
                endpoint: *endpoint,
            },
            Observed::Suspect(endpoint) => Event::Suspect {
                endpoint: *endpoint,
            },
            Observed::Down(endpoint) => Event::Down {
                endpoint: *endpoint,
            },
            Observed::Restarted(endpoint, generation) => Event::Restarted {
                endpoint: *endpoint,
                generation: *generation,
            },
            Observed::ShutDown(endpoint) => Event::ShutDown {
                endpoint: *endpoint,
            },
            Observed::Removed(endpoint) => Event::Removed {
                endpoint: *endpoint,
            },
            Observed::StateChanged {
                endpoint,
                key,
                version,
                value,
            } => Event::StateChanged {
                endpoint: *endpoint,
                key: match key {
                    OwnedKey::Known(k) => StateKey::Known(*k),
                    OwnedKey::User(name) => StateKey::User(name),
                    OwnedKey::Unknown(code) => StateKey::Unknown(*code),
                },
                value: VersionedValue {
                    version: *version,
                    value: bytes
                        .get(value.0 as usize..)
                        .and_then(|b| b.get(..value.1 as usize))
                        .unwrap_or_default(),
                },
            },
        };
        f(&event);
    }
}
