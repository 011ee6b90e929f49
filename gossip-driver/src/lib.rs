//! The run loop, [`Handle`] and [`NodeConfig`] that every server binding of
//! [`gossip_core`] shares, on no runtime in particular.
//!
//! A binding (`gossip-tokio`, `gossip-smol`) supplies two small things, a
//! [`Transport`] (its UDP socket) and a [`Runtime`] (its clock and timer),
//! and spawns the future [`start`] returns on its executor. Everything else,
//! the configuration, the generation file, the command channel, the
//! [`Handle`] and the loop itself, is this crate, so both bindings run the
//! same code and a user switches runtime by changing one import.
//!
//! This is the crate that reads the wall clock (for the generation, as
//! Cassandra does) and the file system (the generation file); the protocol
//! crate, `gossip-core`, does neither.
//!
//! The loop is the core's drain rule around a three-way wait:
//!
//! ```text
//! loop {
//!     wait for the first of:
//!         the deadline passed        => node.handle_timeout(now)
//!         a command arrived          => set a state, take a snapshot, subscribe, or shut down
//!         a datagram arrived         => node.handle_datagram(now, from, datagram)
//!     while let Some(t) = node.poll_transmit(now, &mut buf) { transport.send_to(..) }
//!     deadline = node.poll_timeout();
//!     while let Some(e) = node.poll_event() { subscribers.send(e.into()) }
//! }
//! ```
//!
//! The wait is biased in that order: a flood of datagrams can neither hold
//! back the node's own rounds nor its handle's commands.
//!
//! Membership events reach subscribers as [`Events`] (an async `recv` and a
//! `futures_core::Stream`); no runtime's type is in this crate's API. Its
//! channels are tokio's `sync` primitives, which need no tokio runtime and
//! work the same under smol, async-std or any other executor.
//!
//! # Membership events, in order
//!
//! What a subscriber hears about one endpoint, path by path (application
//! states, [`StateChanged`](MembershipEvent::StateChanged), come whenever
//! they are learned, in version order):
//!
//! | path | events |
//! |---|---|
//! | joins | `Discovered`, its states, `Up` |
//! | crashes (or is cut off) | `Suspect`, `Down` |
//! | a suspicion refuted | `Suspect`, `Up` |
//! | restarts (after a crash or a shutdown) | `Restarted`, the new generation's states, `Up` |
//! | leaves gracefully | its `STATUS` change, `ShutDown`, `Down` |
//! | is forgotten (down for `Config::removal_delay`) | `Removed` |
//!
//! `Discovered` is always first about an endpoint and `Removed` last. `Up` puts an
//! endpoint in a follower's live set; `Down`, `Restarted` and `Removed`
//! take it out; `Suspect` does not (a suspect is up until it is down).
//! [`Handle::subscribe_with_snapshot`] says how to follow the membership
//! from a consistent start.

#![forbid(unsafe_code)]

#[cfg(feature = "clap")]
mod args;
mod handle;
mod owned;
pub mod persist;
mod run;

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

pub use bytes::Bytes;
pub use gossip_core;
pub use gossip_core::auth::{Key, Keyring};
pub use gossip_core::state::{Generation, Version};
pub use gossip_core::wire::ClusterId;
pub use gossip_core::{Config, ConfigError, Instant, Liveness, Stats};

#[cfg(feature = "clap")]
pub use args::{NodeArgs, parse_state, resolve};
pub use handle::{Events, Handle, Lagged, RecvError};
pub use owned::{EndpointSnapshot, MembershipEvent, Snapshot, StateSnapshot};
pub use run::{DriverNode, EVENT_BUFFER, Loop, Running, Runtime, Transport, spawn_with, start};

/// How to run one node.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// The address to bind the UDP socket to. `0.0.0.0:7000` binds every
    /// interface; then [`advertise`](Self::advertise) must say which address
    /// peers reach this node at.
    pub listen: SocketAddr,
    /// The address peers reach this node at: its identity in the cluster
    /// (Cassandra's `broadcast_address`). `None`: the bound address, which
    /// must then be a specific one (not `0.0.0.0` or `::`).
    pub advertise: Option<SocketAddr>,
    /// Seeds to join through.
    pub seeds: Vec<SocketAddr>,
    /// The protocol configuration.
    pub gossip: Config,
    /// Where the generation is kept; `None`: the wall clock alone decides it
    /// (a restart within the same second, or after the clock went back,
    /// would not be seen as one).
    pub data_dir: Option<PathBuf>,
    /// Application states to publish from the start.
    pub states: Vec<(String, Vec<u8>)>,
    /// Cluster keys: with a ring, every datagram is authenticated
    /// ([`gossip_core::auth`]); `None`: no authentication.
    pub keyring: Option<Keyring>,
}

impl NodeConfig {
    /// A node bound to and known as `listen`, with `gossip`, no seeds, no
    /// data directory.
    pub fn new(listen: SocketAddr, gossip: Config) -> Self {
        Self {
            listen,
            advertise: None,
            seeds: Vec::new(),
            gossip,
            data_dir: None,
            states: Vec::new(),
            keyring: None,
        }
    }
}

/// What can go wrong.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The socket could not be bound (in use, not a local address, ...).
    Bind(SocketAddr, std::io::Error),
    /// The address the node would be known as is unspecified (`0.0.0.0`,
    /// `::`) or has port 0: peers could not reach it there.
    Identity(SocketAddr),
    /// The configuration is invalid.
    Config(ConfigError),
    /// The data directory could not be read or written.
    DataDir(PathBuf, std::io::Error),
    /// A state was refused (limits).
    State(gossip_core::state::MergeError),
    /// The node's task has ended.
    Stopped,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Bind(addr, e) => write!(f, "cannot bind {addr}: {e}"),
            Error::Identity(addr) => write!(
                f,
                "cannot gossip as {addr}: peers cannot reach an unspecified address or port 0; \
                 set the address to advertise (NodeConfig::advertise)"
            ),
            Error::Config(e) => write!(f, "invalid configuration: {e}"),
            Error::DataDir(dir, e) => write!(f, "data directory {}: {e}", dir.display()),
            Error::State(e) => write!(f, "state refused: {e}"),
            Error::Stopped => f.write_str("the node has stopped"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Bind(_, e) | Error::DataDir(_, e) => Some(e),
            Error::Config(e) => Some(e),
            Error::State(e) => Some(e),
            Error::Identity(_) | Error::Stopped => None,
        }
    }
}
