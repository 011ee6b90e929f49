//! What a node reports: membership events, and which one a peer owes next.

use super::*;

/// A membership change, borrowed from the node until its next `&mut` call.
///
/// Followed from the node's creation, the events give its live set once
/// they are all polled: `Up` puts an endpoint in; `Down`, `Restarted` and
/// `Removed` take it out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// A new endpoint entered the table.
    Discovered {
        /// Its address.
        endpoint: SocketAddr,
    },
    /// An endpoint is believed up: newly known as alive, back from a
    /// suspicion (refuted) or from down, or its new incarnation alive after
    /// [`Event::Restarted`].
    Up {
        /// Its address.
        endpoint: SocketAddr,
    },
    /// An endpoint is suspected: a probe of it failed. It is still up (an
    /// [`Event::Up`] came before), and down unless it refutes (then
    /// [`Event::Up`] follows) before the suspicion times out.
    Suspect {
        /// Its address.
        endpoint: SocketAddr,
    },
    /// An endpoint that was up (or suspected) is believed down: its
    /// suspicion timed out.
    Down {
        /// Its address.
        endpoint: SocketAddr,
    },
    /// An endpoint came back with a newer generation; its old state is gone,
    /// and it is not believed up until an [`Event::Up`] follows (right after
    /// it, unless the cluster already says the new incarnation is down). A
    /// follower of the events takes it out of its live set here, as on
    /// [`Event::Down`].
    Restarted {
        /// Its address.
        endpoint: SocketAddr,
        /// Its new generation.
        generation: Generation,
    },
    /// An endpoint announced a graceful shutdown (STATUS `shutdown`).
    ShutDown {
        /// Its address.
        endpoint: SocketAddr,
    },
    /// An endpoint down longer than the removal delay left the table; its
    /// address is quarantined.
    Removed {
        /// Its address.
        endpoint: SocketAddr,
    },
    /// An application state of an endpoint changed. Changes made between two
    /// polls coalesce: the latest value is reported.
    StateChanged {
        /// Its address.
        endpoint: SocketAddr,
        /// The key.
        key: StateKey<'a>,
        /// The new value and its version.
        value: VersionedValue<'a>,
    },
}

impl Event<'_> {
    /// The endpoint the event is about.
    pub fn endpoint(&self) -> SocketAddr {
        match *self {
            Event::Discovered { endpoint }
            | Event::Up { endpoint }
            | Event::Suspect { endpoint }
            | Event::Down { endpoint }
            | Event::Restarted { endpoint, .. }
            | Event::ShutDown { endpoint }
            | Event::Removed { endpoint }
            | Event::StateChanged { endpoint, .. } => endpoint,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum EventKind {
    Discovered,
    Up,
    Suspect,
    Down,
    Restarted,
    ShutDown,
    Removed,
    StateChanged(Version),
}

/// The next event of one peer, clearing what it reports.
pub(super) fn take_event<B: StateBuf>(peer: &mut Peer<B>) -> Option<EventKind> {
    let mut take = |flag: u8| {
        let set = peer.flags & flag != 0;
        peer.flags &= !flag;
        set
    };
    match peer.slot {
        Slot::Vacant => None,
        Slot::Quarantined => take(flags::EV_REMOVED).then_some(EventKind::Removed),
        Slot::Member => {
            if take(flags::EV_DISCOVERED) {
                return Some(EventKind::Discovered);
            }
            if take(flags::EV_RESTARTED) {
                return Some(EventKind::Restarted);
            }
            let reported = Version::from(peer.reported_version);
            if let Some((_, value)) = peer.state.entries().find(|(_, v)| v.version > reported) {
                peer.reported_version = value.version.into();
                return Some(EventKind::StateChanged(value.version));
            }
            if take(flags::EV_SHUTDOWN) {
                return Some(EventKind::ShutDown);
            }
            let before = peer.reported;
            let now = peer.liveness();
            peer.reported = Some(now);
            match (before, now) {
                (b, Liveness::Alive) if b != Some(Liveness::Alive) => Some(EventKind::Up),
                (Some(Liveness::Alive), Liveness::Suspect) => Some(EventKind::Suspect),
                // A suspect is up until it is down: one not reported up yet
                // (new, restarted, or back from down) is reported up first,
                // then suspected.
                (b, Liveness::Suspect) if b != Some(Liveness::Suspect) => {
                    peer.reported = Some(Liveness::Alive);
                    Some(EventKind::Up)
                }
                (Some(Liveness::Alive | Liveness::Suspect), Liveness::Down | Liveness::Left) => {
                    Some(EventKind::Down)
                }
                _ => None,
            }
        }
    }
}
