//! Runs one [`gossip_core::Node`] on smol's reactor, `async-io`, and so on
//! async-std, which is built on the same reactor.
//!
//! The node is the run loop every server binding shares
//! ([`gossip_driver`]), here on an [`async_io::Async`] UDP socket and
//! an [`async_io::Timer`]:
//!
//! ```text
//! loop {
//!     wait for the first of:
//!         Timer::at(deadline)        => node.handle_timeout(now)
//!         commands.recv()            => set a state, take a snapshot, or shut down
//!         socket.recv_from()         => node.handle_datagram(now, from, datagram)
//!     while let Some(t) = node.poll_transmit(now, &mut buf) { socket.send_to(..) }
//!     deadline = node.poll_timeout();
//!     while let Some(e) = node.poll_event() { events.send(e.into()) }
//! }
//! ```
//!
//! The API is `gossip-tokio`'s: the same [`NodeConfig`], [`Handle`],
//! [`MembershipEvent`] and [`Snapshot`] types (they are the same types, from
//! `gossip-core`), the same `spawn`, `spawn_task` and `spawn_on`. Switching
//! runtime is changing the crate name. Generation persistence (the data
//! directory), graceful [`Handle::shutdown`] and `tracing` logs are the
//! shared loop's, so they behave exactly as on tokio.
//!
//! One difference comes from the executors: dropping a smol
//! [`Task`] cancels it. [`spawn`] detaches the node's task; with
//! [`spawn_task`] you hold it, and dropping [`Running::task`] stops the node
//! at once, without a word, as a crash would.
//!
//! # On smol
//!
//! ```no_run
//! use gossip_smol::{ClusterId, Config};
//! use gossip_smol::{NodeConfig, spawn};
//!
//! smol::block_on(async {
//!     let listen = "127.0.0.1:7000".parse().unwrap();
//!     let mut config = NodeConfig::new(listen, Config::new(ClusterId::from_name("demo")));
//!     config.seeds.push("127.0.0.1:7001".parse().unwrap());
//!     config.states.push(("DC".into(), b"dc1".to_vec()));
//!     let node = spawn(config).await?;
//!     let mut events = node.subscribe();
//!     while let Ok(event) = events.recv().await {
//!         println!("{event}");
//! #       break;
//!     }
//!     node.shutdown().await
//! })?;
//! # Ok::<(), gossip_smol::Error>(())
//! ```
//!
//! # On async-std (or any other executor)
//!
//! [`start`] binds the socket and hands back the loop as a plain future, for
//! the executor of your choice; the socket and timer are still async-io's,
//! which runs its own reactor thread when nothing else drives it.
//!
//! ```no_run
//! use gossip_smol::{ClusterId, Config};
//! use gossip_smol::{NodeConfig, start};
//!
//! async_std::task::block_on(async {
//!     let listen = "127.0.0.1:7000".parse().unwrap();
//!     let config = NodeConfig::new(listen, Config::new(ClusterId::from_name("demo")));
//!     let (node, run) = start(config).await?;
//!     async_std::task::spawn(run);
//!     node.set_state("LOAD", b"0.5").await?;
//!     println!("{:?}", node.snapshot().await?);
//!     node.shutdown().await
//! })?;
//! # Ok::<(), gossip_smol::Error>(())
//! ```

use std::future::Future;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant as StdInstant};

use async_io::{Async, Timer};
use gossip_driver::{self as driver, Runtime};
use smol::Task;

pub use gossip_driver::{
    Bytes, ClusterId, Config, ConfigError, EndpointSnapshot, Error, Events, Generation, Handle,
    Key, Keyring, Lagged, Liveness, MembershipEvent, NodeConfig, RecvError, Snapshot,
    StateSnapshot, Stats, Transport, Version, gossip_core,
};
#[cfg(feature = "clap")]
pub use gossip_driver::{NodeArgs, parse_state, resolve};

/// A running node: its [`Handle`] and its task on smol's global executor
/// (drop or cancel the task to make the node vanish without a word, as a
/// crash would).
pub type Running = driver::Running<Task<()>>;

/// Binds the socket and starts the node on smol's global executor, detached;
/// see [`spawn_task`] to hold the task.
pub async fn spawn(config: NodeConfig) -> Result<Handle, Error> {
    let running = spawn_task(config).await?;
    running.task.detach();
    Ok(running.handle)
}

/// Binds a UDP socket at `config.listen` and starts the node's task on
/// smol's global executor.
pub async fn spawn_task(config: NodeConfig) -> Result<Running, Error> {
    let (handle, run) = start(config).await?;
    Ok(Running {
        handle,
        task: smol::spawn(run),
    })
}

/// Starts the node's task on `transport` (already bound; `config.listen` is
/// not used).
pub fn spawn_on<T: Transport>(config: NodeConfig, transport: T) -> Result<Running, Error> {
    driver::spawn_with(config, transport, Clock::new(), smol::spawn)
}

/// Binds a UDP socket at `config.listen` and returns the node's handle and
/// its loop, to spawn on any executor (async-std's, a `LocalExecutor`, ...).
/// Nothing happens until the loop is polled.
pub async fn start(
    config: NodeConfig,
) -> Result<(Handle, impl Future<Output = ()> + Send + 'static), Error> {
    config.gossip.validate().map_err(Error::Config)?;
    let socket =
        Async::<UdpSocket>::bind(config.listen).map_err(|e| Error::Bind(config.listen, e))?;
    driver::start(config, Socket(socket), Clock::new())
}

/// An async-io UDP socket as a [`Transport`].
struct Socket(Async<UdpSocket>);

impl Transport for Socket {
    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.0.get_ref().local_addr()
    }

    async fn recv_from(&self, buf: &mut [u8]) -> std::io::Result<(usize, SocketAddr)> {
        self.0.recv_from(buf).await
    }

    async fn send_to(&self, buf: &[u8], target: SocketAddr) -> std::io::Result<usize> {
        self.0.send_to(buf, target).await
    }
}

/// The core's clock on [`std::time::Instant`], with async-io timers.
struct Clock {
    origin: StdInstant,
}

impl Clock {
    fn new() -> Self {
        Self {
            origin: StdInstant::now(),
        }
    }
}

impl Runtime for Clock {
    fn now(&self) -> gossip_driver::Instant {
        gossip_driver::Instant::ZERO + self.origin.elapsed()
    }

    async fn sleep_until(&self, deadline: gossip_driver::Instant) {
        let at = self.origin + Duration::from_micros(deadline.as_micros());
        Timer::at(at).await;
    }
}

/// The workspace README's example, compiled as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
