//! Runs one [`gossip_core::Node`] on a tokio UDP socket.
//!
//! [`spawn`] binds the socket and spawns one task that owns the node. The
//! task is the run loop shared by every server binding
//! ([`gossip_driver`]), on tokio's socket and timer:
//!
//! ```text
//! loop {
//!     wait for the first of:
//!         sleep_until(deadline)      => node.handle_timeout(now)
//!         commands.recv()            => set a state, take a snapshot, or shut down
//!         socket.recv_from()         => node.handle_datagram(now, from, datagram)
//!     while let Some(t) = node.poll_transmit(now, &mut buf) { socket.send_to(..) }
//!     deadline = node.poll_timeout();
//!     while let Some(e) = node.poll_event() { events.send(e.into()) }
//! }
//! ```
//!
//! A cloneable [`Handle`] talks to the task: set local state, subscribe to
//! [`MembershipEvent`]s, take a [`Snapshot`] of the cluster, and
//! [`Handle::shutdown`], which announces the shutdown to every live peer
//! before the socket closes. The generation is kept in a small file in the
//! data directory so it strictly increases across restarts. `gossip-smol`
//! has the same API: switching runtime is changing the crate name.
//!
//! The node's clock is tokio's, so `tokio::time::pause` drives it in tests.
//!
//! ```no_run
//! # async fn demo() -> Result<(), gossip_tokio::Error> {
//! use gossip_tokio::{ClusterId, Config};
//! use gossip_tokio::{NodeConfig, spawn};
//!
//! let mut config = NodeConfig::new("127.0.0.1:7000".parse().unwrap(), Config::new(ClusterId::from_name("demo")));
//! config.seeds.push("127.0.0.1:7001".parse().unwrap());
//! config.states.push(("DC".into(), b"dc1".to_vec()));
//! let node = spawn(config).await?;
//! let mut events = node.subscribe();
//! while let Ok(event) = events.recv().await {
//!     println!("{event}");
//! #   break;
//! }
//! node.shutdown().await?;
//! # Ok(()) }
//! ```

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use gossip_driver::{self as driver, Runtime};
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;
use tokio::time::Instant as TokioInstant;

pub use gossip_driver::{
    Bytes, ClusterId, Config, ConfigError, EndpointSnapshot, Error, Events, Generation, Handle,
    Key, Keyring, Lagged, Liveness, MembershipEvent, NodeConfig, RecvError, Snapshot,
    StateSnapshot, Stats, Transport, Version, gossip_core,
};
#[cfg(feature = "clap")]
pub use gossip_driver::{NodeArgs, parse_state, resolve};

/// A running node: its [`Handle`] and its task (abort the task to make the
/// node vanish without a word, as a crash would).
pub type Running = driver::Running<JoinHandle<()>>;

/// Binds the socket and starts the node; see [`spawn_task`] to also get the
/// task.
pub async fn spawn(config: NodeConfig) -> Result<Handle, Error> {
    spawn_task(config).await.map(|r| r.handle)
}

/// Binds a UDP socket at `config.listen` and starts the node's task.
pub async fn spawn_task(config: NodeConfig) -> Result<Running, Error> {
    config.gossip.validate().map_err(Error::Config)?;
    let socket = UdpSocket::bind(config.listen)
        .await
        .map_err(|e| Error::Bind(config.listen, e))?;
    spawn_on(config, Socket(socket))
}

/// Starts the node's task on `transport` (already bound; `config.listen` is
/// not used). Needs a tokio runtime.
pub fn spawn_on<T: Transport>(config: NodeConfig, transport: T) -> Result<Running, Error> {
    driver::spawn_with(config, transport, Clock::new(), tokio::spawn)
}

/// A tokio [`UdpSocket`] as a [`Transport`].
struct Socket(UdpSocket);

impl Transport for Socket {
    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.0.local_addr()
    }

    fn recv_from<'a>(
        &'a self,
        buf: &'a mut [u8],
    ) -> impl Future<Output = std::io::Result<(usize, SocketAddr)>> + Send + 'a {
        self.0.recv_from(buf)
    }

    fn send_to<'a>(
        &'a self,
        buf: &'a [u8],
        target: SocketAddr,
    ) -> impl Future<Output = std::io::Result<usize>> + Send + 'a {
        self.0.send_to(buf, target)
    }
}

/// Maps the core's [`gossip_driver::Instant`] to tokio's clock (so
/// `tokio::time::pause` works in tests).
struct Clock {
    origin: TokioInstant,
}

impl Clock {
    fn new() -> Self {
        Self {
            origin: TokioInstant::now(),
        }
    }
}

impl Runtime for Clock {
    fn now(&self) -> gossip_driver::Instant {
        gossip_driver::Instant::ZERO + self.origin.elapsed()
    }

    fn sleep_until(&self, deadline: gossip_driver::Instant) -> impl Future<Output = ()> + Send {
        tokio::time::sleep_until(self.origin + Duration::from_micros(deadline.as_micros()))
    }
}

/// The README's example, compiled as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
