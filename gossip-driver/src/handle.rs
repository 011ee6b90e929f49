//! [`Handle`], which talks to a running node's loop, and [`Events`], a
//! subscription to its membership events.

use std::fmt;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

use crate::owned::{MembershipEvent, Snapshot};
use crate::{Error, Generation, Keyring, Version};
use gossip_core::state::MergeError;

/// What a [`Handle`] asks of the loop.
pub(crate) enum Command {
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
    pub(crate) commands: mpsc::Sender<Command>,
    pub(crate) events: broadcast::Sender<MembershipEvent>,
    pub(crate) local: SocketAddr,
    pub(crate) generation: Generation,
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
    /// The node's address: its identity in the cluster (the advertised
    /// address, or the bound one).
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
    /// A subscriber that falls more than [`EVENT_BUFFER`](crate::EVENT_BUFFER) events behind gets
    /// [`RecvError::Lagged`]`(n)`, then the oldest event kept: the `n` missed
    /// ones are gone (an `Up` among them is not sent again).
    pub fn subscribe(&self) -> Events {
        Events::new(self.events.subscribe())
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
    /// 3. on [`RecvError::Lagged`], drop the subscription and start over at 1 with
    ///    a new call: the new snapshot replaces the whole view (what the
    ///    missed events did is in it).
    ///
    /// Once the subscriber has received every event sent, its view is the
    /// node's ([`Snapshot::endpoints`] with `alive`).
    pub async fn subscribe_with_snapshot(&self) -> Result<(Snapshot, Events), Error> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Subscribe(tx)).await?;
        let (snapshot, events) = rx.await.map_err(|_| Error::Stopped)?;
        Ok((snapshot, Events::new(events)))
    }

    /// The node's view of the cluster now.
    pub async fn snapshot(&self) -> Result<Snapshot, Error> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Snapshot(tx)).await?;
        rx.await.map_err(|_| Error::Stopped)
    }

    /// Replaces the key ring (rotation: see [`gossip_core::auth`]); `None` turns
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

/// A subscription to a node's membership events, in the order the node
/// produced them: [`recv`](Self::recv) them one at a time, or use it as a
/// `futures_core::Stream` of `Result<MembershipEvent, Lagged>` (which ends
/// when the node has stopped).
pub struct Events {
    stream: BroadcastStream<MembershipEvent>,
}

impl fmt::Debug for Events {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Events").finish_non_exhaustive()
    }
}

/// The subscriber fell more than [`EVENT_BUFFER`](crate::EVENT_BUFFER) events behind: this many
/// events are gone; the next one received is the oldest kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lagged(pub u64);

impl fmt::Display for Lagged {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} membership events missed", self.0)
    }
}

impl std::error::Error for Lagged {}

/// Why [`Events::recv`] gave no event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecvError {
    /// The subscriber fell behind and missed this many events (see
    /// [`Handle::subscribe_with_snapshot`] for starting over).
    Lagged(u64),
    /// The node has stopped and every event it sent was received.
    Closed,
}

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecvError::Lagged(n) => write!(f, "{n} membership events missed"),
            RecvError::Closed => f.write_str("the node has stopped"),
        }
    }
}

impl std::error::Error for RecvError {}

impl Events {
    fn new(rx: broadcast::Receiver<MembershipEvent>) -> Self {
        Self {
            stream: BroadcastStream::new(rx),
        }
    }

    /// The next event; waits for one.
    pub async fn recv(&mut self) -> Result<MembershipEvent, RecvError> {
        match std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next_event(cx)).await {
            Some(Ok(event)) => Ok(event),
            Some(Err(Lagged(n))) => Err(RecvError::Lagged(n)),
            None => Err(RecvError::Closed),
        }
    }

    /// The next event if one is waiting (`Ok(None)` when none is), without
    /// waiting.
    pub fn try_recv(&mut self) -> Result<Option<MembershipEvent>, RecvError> {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match Pin::new(&mut *self).poll_next_event(&mut cx) {
            Poll::Pending => Ok(None),
            Poll::Ready(Some(Ok(event))) => Ok(Some(event)),
            Poll::Ready(Some(Err(Lagged(n)))) => Err(RecvError::Lagged(n)),
            Poll::Ready(None) => Err(RecvError::Closed),
        }
    }

    fn poll_next_event(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<MembershipEvent, Lagged>>> {
        Pin::new(&mut self.stream)
            .poll_next(cx)
            .map(|item| item.map(|r| r.map_err(|BroadcastStreamRecvError::Lagged(n)| Lagged(n))))
    }
}

impl Stream for Events {
    type Item = Result<MembershipEvent, Lagged>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.poll_next_event(cx)
    }
}
