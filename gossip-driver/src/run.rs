//! The loop itself: the [`Transport`] and [`Runtime`] a binding supplies,
//! [`start`], and the drain rule around a three-way wait (see the crate's
//! documentation).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::pin;
use std::task::Poll;
use std::time::{SystemTime, UNIX_EPOCH};

use gossip_core::state::StateKey;
use gossip_core::{HeapStorage, Instant, Node};
use rand_core::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::handle::{Command, Handle};
use crate::owned::{MembershipEvent, Snapshot};
use crate::{Error, Generation, NodeConfig};

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
/// bound; `config.listen` is only used in error messages). The node is
/// known as `config.advertise`, or else as the transport's address; an
/// unspecified address or port 0 there is [`Error::Identity`]. The node's
/// first round is due as soon as the loop starts.
pub fn start<T: Transport, R: Runtime>(
    config: NodeConfig,
    transport: T,
    runtime: R,
) -> Result<(Handle, impl Future<Output = ()> + Send + 'static), Error> {
    config.gossip.validate().map_err(Error::Config)?;
    let bound = transport
        .local_addr()
        .map_err(|e| Error::Bind(config.listen, e))?;
    let local = config.advertise.unwrap_or(bound);
    if local.ip().is_unspecified() || local.port() == 0 {
        return Err(Error::Identity(local));
    }
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let generation = match &config.data_dir {
        Some(dir) => crate::persist::next_generation(dir, wall)
            .map_err(|e| Error::DataDir(dir.clone(), e))?,
        None => Generation(wall),
    };
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
    tracing::info!(%local, %bound, generation = generation.0, seeds = ?config.seeds, "gossip node started");
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
        if matches!(event, MembershipEvent::Down { .. }) {
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
