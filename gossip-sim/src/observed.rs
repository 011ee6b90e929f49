//! Events as the simulator keeps them between a node's step and the
//! observer: owned, so a window's steps can run on several threads.

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
        value: Vec<u8>,
    },
}

pub(crate) enum OwnedKey {
    Known(ApplicationState),
    User(String),
    Unknown(u16),
}

impl Observed {
    pub(crate) fn of(e: &Event<'_>) -> Self {
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
                value: value.value.to_vec(),
            },
        }
    }

    /// Calls `f` with the event as the node reported it.
    pub(crate) fn with(&self, f: impl FnOnce(&Event<'_>)) {
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
                    value,
                },
            },
        };
        f(&event);
    }
}
