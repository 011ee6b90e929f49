//! Runs one [`gossip_core::Node`] on a tokio UDP socket.
//!
//! [`spawn`] binds the socket and starts one task that owns the node. The
//! task is the whole binding, a loop of `select!` then the drain:
//!
//! ```text
//! loop {
//!     select! {
//!         datagram = socket.recv_from()  => node.handle_datagram(now, from, datagram),
//!         _ = sleep_until(deadline)      => node.handle_timeout(now),
//!         command = commands.recv()      => set a state, take a snapshot, or shut down,
//!     }
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
//! data directory so it strictly increases across restarts.
//!
//! ```no_run
//! # async fn demo() -> Result<(), gossip_tokio::Error> {
//! use gossip_core::Config;
//! use gossip_core::wire::ClusterId;
//! use gossip_tokio::{NodeConfig, spawn};
//!
//! let mut config = NodeConfig::new("127.0.0.1:7000".parse().unwrap(), Config::new(ClusterId::from_name("demo")));
//! config.seeds.push("127.0.0.1:7001".parse().unwrap());
//! config.states.push(("DC".into(), b"dc1".to_vec()));
//! let node = spawn(config).await?;
//! let mut events = node.subscribe();
//! while let Ok(event) = events.recv().await {
//!     println!("{event:?}");
//! #   break;
//! }
//! node.shutdown().await?;
//! # Ok(()) }
//! ```

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gossip_core::state::{Generation, MergeError, StateKey, Version};
use gossip_core::{Config, ConfigError, HeapStorage, Node};
use rand_core::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;
use tokio::net::UdpSocket;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant as TokioInstant;

pub use gossip_core::owned::{EndpointSnapshot, MembershipEvent, Snapshot, StateSnapshot};

/// How to run one node.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// The address to bind and gossip as (its identity in the cluster).
    pub listen: SocketAddr,
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
}

impl NodeConfig {
    /// A node at `listen` with `gossip`, no seeds, no data directory.
    pub fn new(listen: SocketAddr, gossip: Config) -> Self {
        Self {
            listen,
            seeds: Vec::new(),
            gossip,
            data_dir: None,
            states: Vec::new(),
        }
    }
}

/// What can go wrong.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The socket could not be bound (in use, not a local address, ...).
    Bind(SocketAddr, std::io::Error),
    /// The configuration is invalid.
    Config(ConfigError),
    /// The data directory could not be read or written.
    DataDir(PathBuf, std::io::Error),
    /// A state was refused (limits).
    State(MergeError),
    /// The node's task has ended.
    Stopped,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Bind(addr, e) => write!(f, "cannot bind {addr}: {e}"),
            Error::Config(e) => write!(f, "invalid configuration: {e}"),
            Error::DataDir(dir, e) => write!(f, "data directory {}: {e}", dir.display()),
            Error::State(e) => write!(f, "state refused: {e}"),
            Error::Stopped => f.write_str("the node has stopped"),
        }
    }
}

impl std::error::Error for Error {}

enum Command {
    SetState(
        String,
        Vec<u8>,
        oneshot::Sender<Result<Version, MergeError>>,
    ),
    Snapshot(oneshot::Sender<Snapshot>),
    Shutdown(oneshot::Sender<()>),
}

/// Talks to a running node. Cheap to clone.
#[derive(Clone)]
pub struct Handle {
    commands: mpsc::Sender<Command>,
    events: broadcast::Sender<MembershipEvent>,
    local: SocketAddr,
    generation: Generation,
}

impl Handle {
    /// The node's address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The node's generation.
    pub fn generation(&self) -> Generation {
        self.generation
    }

    /// Sets one of the node's application states.
    pub async fn set_state(&self, key: &str, value: &[u8]) -> Result<Version, Error> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::SetState(key.into(), value.into(), tx))
            .await?;
        rx.await.map_err(|_| Error::Stopped)?.map_err(Error::State)
    }

    /// A new subscription to membership events (from now on).
    pub fn subscribe(&self) -> broadcast::Receiver<MembershipEvent> {
        self.events.subscribe()
    }

    /// The node's view of the cluster now.
    pub async fn snapshot(&self) -> Result<Snapshot, Error> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Snapshot(tx)).await?;
        rx.await.map_err(|_| Error::Stopped)
    }

    /// Leaves gracefully: STATUS becomes `shutdown,true` and every live peer
    /// is told; returns when the notices are sent and the socket is closed.
    pub async fn shutdown(&self) -> Result<(), Error> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Shutdown(tx)).await?;
        rx.await.map_err(|_| Error::Stopped)
    }

    async fn send(&self, c: Command) -> Result<(), Error> {
        self.commands.send(c).await.map_err(|_| Error::Stopped)
    }
}

/// A running node: its [`Handle`] and its task (abort the task to make the
/// node vanish without a word, as a crash would).
pub struct Running {
    /// Talks to the node.
    pub handle: Handle,
    /// The node's task.
    pub task: JoinHandle<()>,
}

/// What the node sends and receives datagrams through: a tokio
/// [`UdpSocket`], or a wrapper around one (tests inject loss and partitions
/// this way).
pub trait Transport: Send + Sync + 'static {
    /// The address datagrams arrive at.
    fn local_addr(&self) -> std::io::Result<SocketAddr>;

    /// Receives one datagram.
    fn recv_from<'a>(
        &'a self,
        buf: &'a mut [u8],
    ) -> impl Future<Output = std::io::Result<(usize, SocketAddr)>> + Send + 'a;

    /// Sends one datagram.
    fn send_to<'a>(
        &'a self,
        buf: &'a [u8],
        target: SocketAddr,
    ) -> impl Future<Output = std::io::Result<usize>> + Send + 'a;
}

impl Transport for UdpSocket {
    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        UdpSocket::local_addr(self)
    }

    fn recv_from<'a>(
        &'a self,
        buf: &'a mut [u8],
    ) -> impl Future<Output = std::io::Result<(usize, SocketAddr)>> + Send + 'a {
        UdpSocket::recv_from(self, buf)
    }

    fn send_to<'a>(
        &'a self,
        buf: &'a [u8],
        target: SocketAddr,
    ) -> impl Future<Output = std::io::Result<usize>> + Send + 'a {
        UdpSocket::send_to(self, buf, target)
    }
}

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
    spawn_on(config, socket)
}

/// Starts the node's task on `transport` (already bound; `config.listen` is
/// not used).
pub fn spawn_on<T: Transport>(config: NodeConfig, transport: T) -> Result<Running, Error> {
    config.gossip.validate().map_err(Error::Config)?;
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let generation = match &config.data_dir {
        Some(dir) => gossip_core::persist::next_generation(dir, wall)
            .map_err(|e| Error::DataDir(dir.clone(), e))?,
        None => Generation(wall),
    };
    let socket = transport;
    let local = socket
        .local_addr()
        .map_err(|e| Error::Bind(config.listen, e))?;
    let clock = Clock::new();
    let rng = Xoshiro256PlusPlus::seed_from_u64(seed_from_environment(local));
    let mut node: Node<HeapStorage, Xoshiro256PlusPlus> = Node::new(
        config.gossip.clone(),
        local,
        generation,
        &config.seeds,
        rng,
        clock.now(),
    )
    .map_err(Error::Config)?;
    for (key, value) in &config.states {
        node.set_local_state(StateKey::parse(key), value)
            .map_err(Error::State)?;
    }
    let (commands, rx) = mpsc::channel(64);
    let (events, _) = broadcast::channel(4096);
    let handle = Handle {
        commands,
        events: events.clone(),
        local,
        generation,
    };
    tracing::info!(%local, generation = generation.0, seeds = ?config.seeds, "gossip node started");
    let task = tokio::spawn(run(node, socket, clock, rx, events));
    Ok(Running { handle, task })
}

/// Maps the core's [`gossip_core::Instant`] to tokio's clock (so
/// `tokio::time::pause` works in tests).
#[derive(Clone, Copy)]
struct Clock {
    origin: TokioInstant,
}

impl Clock {
    fn new() -> Self {
        Self {
            origin: TokioInstant::now(),
        }
    }

    fn now(&self) -> gossip_core::Instant {
        let micros = u64::try_from(self.origin.elapsed().as_micros()).unwrap_or(u64::MAX);
        gossip_core::Instant::from_micros(micros)
    }

    fn deadline(&self, at: gossip_core::Instant) -> TokioInstant {
        self.origin + Duration::from_micros(at.as_micros())
    }
}

/// A seed for the node's RNG: gossip needs unpredictability between nodes,
/// not secrecy.
fn seed_from_environment(local: SocketAddr) -> u64 {
    use std::hash::{BuildHasher, Hash, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    local.hash(&mut h);
    SystemTime::now().hash(&mut h);
    std::process::id().hash(&mut h);
    h.finish()
}

type CoreNode = Node<HeapStorage, Xoshiro256PlusPlus>;

async fn run<T: Transport>(
    mut node: CoreNode,
    socket: T,
    clock: Clock,
    mut commands: mpsc::Receiver<Command>,
    events: broadcast::Sender<MembershipEvent>,
) {
    let mut inbuf = vec![0u8; 65_536];
    let mut outbuf = vec![0u8; node.config().max_datagram_size];
    let mut shutdown_reply: Option<oneshot::Sender<()>> = None;
    let far = Duration::from_secs(3600);
    drain(&mut node, &socket, &clock, &events, &mut outbuf).await;
    loop {
        let deadline = node
            .poll_timeout()
            .map_or_else(|| TokioInstant::now() + far, |t| clock.deadline(t));
        tokio::select! {
            received = socket.recv_from(&mut inbuf) => match received {
                Ok((n, from)) => {
                    let before = node.stats().dropped_total();
                    node.handle_datagram(clock.now(), from, inbuf.get(..n).unwrap_or(&[]));
                    if node.stats().dropped_total() > before {
                        tracing::debug!(%from, reason = ?node.stats().last_drop, "datagram dropped");
                    }
                }
                // ICMP errors of earlier sends (a peer's port closed) show up
                // here on some systems: nothing to do.
                Err(e) => tracing::trace!(error = %e, "receive error"),
            },
            () = tokio::time::sleep_until(deadline) => node.handle_timeout(clock.now()),
            command = commands.recv() => match command {
                Some(Command::SetState(key, value, reply)) => {
                    let _ = reply.send(node.set_local_state(StateKey::parse(&key), &value));
                }
                Some(Command::Snapshot(reply)) => {
                    let _ = reply.send(Snapshot::of(&node, clock.now()));
                }
                Some(Command::Shutdown(reply)) => {
                    node.shutdown(clock.now());
                    shutdown_reply = Some(reply);
                }
                // Every handle is gone: leave gracefully.
                None => node.shutdown(clock.now()),
            },
        }
        drain(&mut node, &socket, &clock, &events, &mut outbuf).await;
        if node.is_shut_down() {
            tracing::info!(local = %node.local_addr(), "gossip node shut down");
            if let Some(reply) = shutdown_reply.take() {
                let _ = reply.send(());
            }
            return;
        }
    }
}

/// The drain rule: transmits, then (read by the loop) the timeout, then
/// events.
async fn drain<T: Transport>(
    node: &mut CoreNode,
    socket: &T,
    clock: &Clock,
    events: &broadcast::Sender<MembershipEvent>,
    buf: &mut [u8],
) {
    let now = clock.now();
    while let Some(t) = node.poll_transmit(now, buf) {
        let bytes = buf.get(..t.size).unwrap_or(&[]);
        if let Err(e) = socket.send_to(bytes, t.destination).await {
            tracing::debug!(to = %t.destination, error = %e, "send failed");
        }
    }
    while let Some(event) = node.poll_event() {
        let event = MembershipEvent::from(event);
        match &event {
            MembershipEvent::Discovered(a) => tracing::info!(endpoint = %a, "discovered"),
            MembershipEvent::Up(a) => tracing::info!(endpoint = %a, "up"),
            MembershipEvent::Down(a) => tracing::warn!(endpoint = %a, "down"),
            MembershipEvent::Restarted {
                endpoint,
                generation,
            } => tracing::info!(%endpoint, generation, "restarted"),
            MembershipEvent::ShutDown(a) => tracing::info!(endpoint = %a, "shut down"),
            MembershipEvent::Removed(a) => tracing::info!(endpoint = %a, "removed"),
            MembershipEvent::StateChanged { endpoint, key, .. } => {
                tracing::debug!(%endpoint, key, "state changed");
            }
        }
        // No subscriber is fine.
        let _ = events.send(event);
    }
}
