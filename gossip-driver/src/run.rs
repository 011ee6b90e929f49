//! The async run loop every server binding shares (feature `driver`).
//!
//! A binding (`gossip-tokio`, `gossip-smol`) supplies two small things, a
//! [`Transport`] (its UDP socket) and a [`Runtime`] (its clock and timer),
//! and spawns the future [`start`] returns on its executor. Everything else,
//! the configuration, the generation file, the command channel, the
//! [`Handle`] and the loop itself, is this module, so both bindings run the
//! same code and a user switches runtime by changing one import.
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
//! The channels are `tokio::sync`'s, which need no tokio runtime: they work
//! the same under smol, async-std or any other executor.

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::pin;
use std::string::String;
use std::task::Poll;
use std::time::{SystemTime, UNIX_EPOCH};
use std::vec;
use std::vec::Vec;

use rand_core::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::auth::Keyring;
use crate::owned::{MembershipEvent, Snapshot};
use crate::state::{Generation, MergeError, StateKey, Version};
use crate::{Config, ConfigError, HeapStorage, Instant, Node};

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
    /// Cluster keys: with a ring, every datagram is authenticated
    /// ([`crate::auth`]); `None`: no authentication.
    pub keyring: Option<Keyring>,
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

/// What the node sends and receives datagrams through: a binding's UDP
/// socket, or a wrapper around one (tests inject loss and partitions this
/// way).
pub trait Transport: Send + Sync + 'static {
    /// The address datagrams arrive at.
    fn local_addr(&self) -> std::io::Result<SocketAddr>;

    /// Receives one datagram. Must be cancel-safe: the loop drops this future
    /// when a deadline or a command comes first.
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

/// A binding's clock and timer.
pub trait Runtime: Send + Sync + 'static {
    /// Now, on the core's clock (microseconds from an origin the runtime
    /// picks when it is made).
    fn now(&self) -> Instant;

    /// Completes at `deadline` (at once if it has passed).
    fn sleep_until(&self, deadline: Instant) -> impl Future<Output = ()> + Send;
}

/// Membership events kept for a subscriber that falls behind. The buffer is
/// allocated up front, per node (about 130 bytes an event).
pub const EVENT_BUFFER: usize = 256;

/// The node type the loop runs.
pub type DriverNode = Node<HeapStorage, Xoshiro256PlusPlus>;

enum Command {
    SetState(
        String,
        Vec<u8>,
        oneshot::Sender<Result<Version, MergeError>>,
    ),
    Snapshot(oneshot::Sender<Snapshot>),
    Subscribe(oneshot::Sender<(Snapshot, broadcast::Receiver<MembershipEvent>)>),
    Keyring(Option<Keyring>, oneshot::Sender<()>),
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

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle")
            .field("local", &self.local)
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
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

    /// A new subscription to membership events from now on. Nothing before
    /// is replayed: the node's loop runs from the moment it is spawned, so
    /// members it has already seen up are never announced to this
    /// subscription. To follow the membership, start from
    /// [`subscribe_with_snapshot`](Self::subscribe_with_snapshot) instead.
    ///
    /// A subscriber that falls more than [`EVENT_BUFFER`] events behind gets
    /// `RecvError::Lagged(n)`, then the oldest event kept: the `n` missed
    /// ones are gone (an `Up` among them is not sent again).
    pub fn subscribe(&self) -> broadcast::Receiver<MembershipEvent> {
        self.events.subscribe()
    }

    /// The node's view and a subscription that starts exactly there: both
    /// taken by the loop between two steps, so the snapshot shows the effect
    /// of every event sent before the subscription's first, and of none
    /// after.
    ///
    /// To follow who is alive (and the states likewise):
    ///
    /// 1. start from the snapshot's endpoints with `alive`;
    /// 2. apply each event in order: [`Up`](MembershipEvent::Up) puts an
    ///    endpoint in; [`Down`](MembershipEvent::Down),
    ///    [`Restarted`](MembershipEvent::Restarted) and
    ///    [`Removed`](MembershipEvent::Removed) take it out (a restarted
    ///    endpoint is announced `Up` again once alive);
    ///    [`Suspect`](MembershipEvent::Suspect) changes nothing (a suspect is
    ///    up until it is down);
    /// 3. on `RecvError::Lagged`, drop the receiver and start over at 1 with
    ///    a new call: the new snapshot replaces the whole view (what the
    ///    missed events did is in it).
    ///
    /// Once the subscriber has received every event sent, its view is the
    /// node's ([`Snapshot::endpoints`] with `alive`).
    pub async fn subscribe_with_snapshot(
        &self,
    ) -> Result<(Snapshot, broadcast::Receiver<MembershipEvent>), Error> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Subscribe(tx)).await?;
        rx.await.map_err(|_| Error::Stopped)
    }

    /// The node's view of the cluster now.
    pub async fn snapshot(&self) -> Result<Snapshot, Error> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Snapshot(tx)).await?;
        rx.await.map_err(|_| Error::Stopped)
    }

    /// Replaces the key ring (rotation: see [`crate::auth`]); `None` turns
    /// authentication off. Takes effect for the next datagram.
    pub async fn set_keyring(&self, keyring: Option<Keyring>) -> Result<(), Error> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Keyring(keyring, tx)).await?;
        rx.await.map_err(|_| Error::Stopped)
    }

    /// Leaves gracefully: STATUS becomes `shutdown,true` and every live peer
    /// is told; returns when the notices are sent and the loop has ended
    /// (the transport is dropped with it).
    pub async fn shutdown(&self) -> Result<(), Error> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Shutdown(tx)).await?;
        rx.await.map_err(|_| Error::Stopped)
    }

    async fn send(&self, c: Command) -> Result<(), Error> {
        self.commands.send(c).await.map_err(|_| Error::Stopped)
    }
}

/// A running node: its [`Handle`] and its task, of the binding's executor
/// (`tokio::task::JoinHandle<()>`, `smol::Task<()>`).
#[derive(Debug)]
pub struct Running<Task> {
    /// Talks to the node.
    pub handle: Handle,
    /// The node's task: aborting or cancelling it makes the node vanish
    /// without a word, as a crash would.
    pub task: Task,
}

/// [`start`], then hands the loop to `spawn` (the binding's executor).
pub fn spawn_with<T: Transport, R: Runtime, Task>(
    config: NodeConfig,
    transport: T,
    runtime: R,
    spawn: impl FnOnce(Loop) -> Task,
) -> Result<Running<Task>, Error> {
    let (handle, run) = start(config, transport, runtime)?;
    Ok(Running {
        handle,
        task: spawn(std::boxed::Box::pin(run)),
    })
}

/// The node's loop as a boxed future, for [`spawn_with`].
pub type Loop = std::pin::Pin<std::boxed::Box<dyn Future<Output = ()> + Send + 'static>>;

/// Picks the generation, builds the node with `config`'s seeds and states,
/// and returns its [`Handle`] and the loop to spawn on `transport` (already
/// bound; `config.listen` is only used in error messages). The node's
/// first round is due as soon as the loop starts.
pub fn start<T: Transport, R: Runtime>(
    config: NodeConfig,
    transport: T,
    runtime: R,
) -> Result<(Handle, impl Future<Output = ()> + Send + 'static), Error> {
    config.gossip.validate().map_err(Error::Config)?;
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let generation = match &config.data_dir {
        Some(dir) => crate::persist::next_generation(dir, wall)
            .map_err(|e| Error::DataDir(dir.clone(), e))?,
        None => Generation(wall),
    };
    let local = transport
        .local_addr()
        .map_err(|e| Error::Bind(config.listen, e))?;
    let rng = Xoshiro256PlusPlus::seed_from_u64(seed_from_environment(local));
    let mut node = DriverNode::new(
        config.gossip.clone(),
        local,
        generation,
        &config.seeds,
        rng,
        runtime.now(),
    )
    .map_err(Error::Config)?;
    for (key, value) in &config.states {
        node.set_local_state(StateKey::parse(key), value)
            .map_err(Error::State)?;
    }
    if let Some(ring) = &config.keyring {
        tracing::info!(
            primary = format_args!("{:08x}", ring.primary().fingerprint()),
            keys = ring.keys().count(),
            "authenticating datagrams"
        );
    }
    node.set_keyring(config.keyring.clone());
    let (commands, rx) = mpsc::channel(64);
    let (events, _) = broadcast::channel(EVENT_BUFFER);
    let handle = Handle {
        commands,
        events: events.clone(),
        local,
        generation,
    };
    tracing::info!(%local, generation = generation.0, seeds = ?config.seeds, "gossip node started");
    Ok((handle, run(node, transport, runtime, rx, events)))
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

/// What woke the loop.
enum Wake {
    Deadline,
    Command(Option<Command>),
    Datagram(std::io::Result<(usize, SocketAddr)>),
}

/// No deadline: wake up now and then anyway (harmless, see
/// [`Node::handle_timeout`]).
const IDLE: core::time::Duration = core::time::Duration::from_secs(3600);

async fn run<T: Transport, R: Runtime>(
    mut node: DriverNode,
    transport: T,
    runtime: R,
    mut commands: mpsc::Receiver<Command>,
    events: broadcast::Sender<MembershipEvent>,
) {
    // One byte more than the largest datagram accepted: a larger one arrives
    // truncated to this, and the node drops it as oversized.
    let mut inbuf = vec![0u8; node.config().max_datagram_size + 1];
    let mut outbuf = vec![0u8; node.config().max_datagram_size];
    let mut shutdown_replies: Vec<oneshot::Sender<()>> = Vec::new();
    let mut commands_open = true;
    drain(&mut node, &transport, &runtime, &events, &mut outbuf).await;
    loop {
        let deadline = node
            .poll_timeout()
            .unwrap_or_else(|| runtime.now().saturating_add(IDLE));
        let wake = {
            let mut sleep = pin!(runtime.sleep_until(deadline));
            let mut command = pin!(async {
                if commands_open {
                    commands.recv().await
                } else {
                    std::future::pending().await
                }
            });
            let mut datagram = pin!(transport.recv_from(&mut inbuf));
            std::future::poll_fn(|cx| {
                if sleep.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Wake::Deadline);
                }
                if let Poll::Ready(c) = command.as_mut().poll(cx) {
                    return Poll::Ready(Wake::Command(c));
                }
                datagram.as_mut().poll(cx).map(Wake::Datagram)
            })
            .await
        };
        match wake {
            Wake::Deadline => node.handle_timeout(runtime.now()),
            Wake::Datagram(Ok((n, from))) => {
                let before = node.stats().dropped_total();
                node.handle_datagram(runtime.now(), from, inbuf.get(..n).unwrap_or(&[]));
                if node.stats().dropped_total() > before {
                    tracing::debug!(%from, reason = ?node.stats().last_drop, "datagram dropped");
                }
            }
            // ICMP errors of earlier sends (a peer's port closed) show up
            // here on some systems: nothing to do.
            Wake::Datagram(Err(e)) => tracing::trace!(error = %e, "receive error"),
            Wake::Command(Some(Command::SetState(key, value, reply))) => {
                let _ = reply.send(node.set_local_state(StateKey::parse(&key), &value));
            }
            Wake::Command(Some(Command::Snapshot(reply))) => {
                let _ = reply.send(Snapshot::of(&node, runtime.now()));
            }
            // Between two steps: the last drain sent every event so far, so
            // the receiver's first event is the first after the snapshot.
            Wake::Command(Some(Command::Subscribe(reply))) => {
                let _ = reply.send((Snapshot::of(&node, runtime.now()), events.subscribe()));
            }
            Wake::Command(Some(Command::Keyring(ring, reply))) => {
                node.set_keyring(ring);
                let _ = reply.send(());
            }
            Wake::Command(Some(Command::Shutdown(reply))) => {
                node.shutdown(runtime.now());
                shutdown_replies.push(reply);
            }
            // Every handle is gone: leave gracefully.
            Wake::Command(None) => {
                commands_open = false;
                node.shutdown(runtime.now());
            }
        }
        drain(&mut node, &transport, &runtime, &events, &mut outbuf).await;
        if node.is_shut_down() {
            tracing::info!(local = %node.local_addr(), "gossip node shut down");
            for reply in shutdown_replies.drain(..) {
                let _ = reply.send(());
            }
            return;
        }
    }
}

/// The drain rule: transmits, then (read by the loop) the timeout, then
/// events.
async fn drain<T: Transport, R: Runtime>(
    node: &mut DriverNode,
    transport: &T,
    runtime: &R,
    events: &broadcast::Sender<MembershipEvent>,
    buf: &mut [u8],
) {
    let now = runtime.now();
    while let Some(t) = node.poll_transmit(now, buf) {
        let bytes = buf.get(..t.size).unwrap_or(&[]);
        if let Err(e) = transport.send_to(bytes, t.destination).await {
            tracing::debug!(to = %t.destination, error = %e, "send failed");
        }
    }
    let wanted = events.receiver_count() > 0 || tracing::enabled!(tracing::Level::WARN);
    while let Some(event) = node.poll_event() {
        if !wanted {
            // Nobody listens: skip the owned copy.
            continue;
        }
        let event = MembershipEvent::from(event);
        if matches!(event, MembershipEvent::Down(_)) {
            tracing::warn!(%event);
        } else if matches!(event, MembershipEvent::StateChanged { .. }) {
            tracing::debug!(%event);
        } else {
            tracing::info!(%event);
        }
        // No subscriber is fine.
        let _ = events.send(event);
    }
}
