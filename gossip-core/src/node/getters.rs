//! What the application reads of a node: its address and state, the
//! endpoints it knows, its health, counters and phase.

use super::*;

impl<S: Storage, R: Rng> Node<S, R> {
    /// This node's address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// This node's own state.
    pub fn local_state(&self) -> &EndpointState<S::StateBuf> {
        &self.me
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The seeds (without this node).
    pub fn seeds(&self) -> &[SocketAddr] {
        &self.seeds
    }

    /// Every known endpoint other than this node (removed ones excluded).
    pub fn endpoints(&self) -> impl Iterator<Item = &Peer<S::StateBuf>> + '_ {
        self.peers.as_slice().iter().filter(|p| p.is_member())
    }

    /// The endpoint at `addr`, if known (not this node).
    pub fn endpoint(&self, addr: &SocketAddr) -> Option<&Peer<S::StateBuf>> {
        let idx = self.index.find(addr, self.peers.as_slice())?;
        self.peers
            .as_slice()
            .get(idx as usize)
            .filter(|p| p.is_member())
    }

    /// Where the endpoint at `addr` sits in the peer table, if known: a
    /// handle for [`endpoint_at`](Self::endpoint_at) that saves the lookup.
    /// It stays valid while the endpoint is in the table; once the endpoint
    /// is removed, the slot may hold another.
    #[cfg(any(test, feature = "internals"))]
    pub fn endpoint_slot(&self, addr: &SocketAddr) -> Option<usize> {
        let idx = self.index.find(addr, self.peers.as_slice())? as usize;
        self.peers.as_slice().get(idx)?.is_member().then_some(idx)
    }

    /// The views the last datagram merged deltas into (and the sender's, for
    /// a shutdown notice), each as `(slot, generation, max version)` before
    /// the merge: once the datagram is handled, the endpoint in each slot
    /// should be at that point or past it.
    #[cfg(feature = "internals")]
    pub fn merged_views(&self) -> impl Iterator<Item = (usize, Generation, Version)> + '_ {
        self.merged.iter().map(|&(s, g, v)| (s as usize, g, v))
    }

    /// The endpoint in table slot `slot` (see
    /// [`endpoint_slot`](Self::endpoint_slot)), if the slot holds one.
    #[cfg(any(test, feature = "internals"))]
    pub fn endpoint_at(&self, slot: usize) -> Option<&Peer<S::StateBuf>> {
        self.peers.as_slice().get(slot).filter(|p| p.is_member())
    }

    /// This node's incarnation within its generation: raised each time it
    /// refutes a suspicion of itself.
    pub fn incarnation(&self) -> u32 {
        self.incarnation
    }

    /// Local health (Lifeguard): 0 when healthy, up to [`MAX_HEALTH`]; probe
    /// and suspicion timeouts are multiplied by one more than it.
    pub fn health(&self) -> u8 {
        self.health
    }

    /// Known endpoints (this node excluded).
    pub fn endpoint_count(&self) -> usize {
        self.alive + self.unreachable
    }

    /// The membership summary this node's SYNs carry.
    pub fn summary(&self) -> &wire::Summary {
        &self.summary
    }

    /// Endpoints believed up (alive or suspected).
    pub fn live_count(&self) -> usize {
        self.alive
    }

    /// Endpoints down or left.
    pub fn unreachable_count(&self) -> usize {
        self.unreachable
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Whether [`shutdown`](Self::shutdown) was called.
    pub fn is_shutting_down(&self) -> bool {
        self.phase != Phase::Running
    }

    /// Whether the shutdown notices have all been polled.
    pub fn is_shut_down(&self) -> bool {
        self.phase == Phase::Stopped
    }
}
