//! memberlist 0.8, the Rust port of HashiCorp's memberlist (SWIM with
//! Lifeguard), on its TCP/UDP transport (`NetTransport` with the `Tcp` stream
//! layer), crate features `tokio` and `tcp` only: no checksum, compression,
//! encryption, DNS or QUIC, as `Options::lan()` uses none of them.
//!
//! Options: `Options::lan()` with three fields set, its 1 s protocol period
//! (HashiCorp's LAN default) scaled to this harness's 100 ms round:
//! - `probe_interval` 100 ms (HashiCorp 1 s; the port's `lan()` has 500 ms),
//! - `probe_timeout` 50 ms (HashiCorp 500 ms; the port's `lan()` has 1 s, more
//!   than its own probe interval),
//! - `gossip_interval` 100 ms, one round (`lan()`: 200 ms).
//!
//! The rest as `lan()` has them: `gossip_nodes` 3, `indirect_checks` 3,
//! `retransmit_mult` 4, `suspicion_mult` 4, `suspicion_max_timeout_mult` 6,
//! `awareness_max_multiplier` 8, `push_pull_interval` 30 s,
//! `gossip_to_the_dead_time` 30 s, TCP fallback pings on.
//!
//! The key change is node metadata, memberlist's place for a small value per
//! node: node 0's delegate starts returning `LOAD=0.42` from `node_meta` and
//! node 0 calls `update_node`, which gossips a new alive message; the others
//! see it in `notify_update`. Membership comes from the event delegate:
//! `notify_join` adds a member, `notify_leave` (a member marked dead, or
//! left) removes it and, if it was alive, counts a down.
//!
//! Bytes and datagrams are counted at the transport, a wrapper around
//! `NetTransport` that implements memberlist's `Transport` trait: every UDP
//! packet `send_to` sent (its payload bytes, one datagram each) and every
//! message written to a TCP stream through `Transport::write`, where all of
//! memberlist's stream sends go (push/pull, TCP fallback pings and their
//! acks; its payload bytes, one datagram each). TCP handshakes, headers and
//! acks are not counted, as no system's UDP headers are.
//!
//! A kill is a crash, not a leave: the node's wrapper stops sending at once
//! (a shared `killed` flag: `send_to`, `write` and `open` fail), then
//! `Memberlist::shutdown`, which sends nothing (no leave message), stops its
//! tasks and closes its UDP socket and TCP listener.

use super::*;
use memberlist::agnostic::RuntimeLite;
use memberlist::delegate::{CompositeDelegate, EventDelegate, NodeDelegate, VoidDelegate};
use memberlist::net::{NetTransport, NetTransportOptions, stream_layer::StreamLayer};
use memberlist::proto::{MaybeResolvedAddress, Meta, NodeId, NodeState, Payload};
use memberlist::tokio::{TokioRuntime, TokioSocketAddrResolver, TokioTcp};
use memberlist::transport::{Connection, PacketSubscriber, StreamSubscriber, Transport};
use memberlist::{Memberlist, Options};
use std::sync::atomic::AtomicBool;

type Net = NetTransport<NodeId, TokioSocketAddrResolver, TokioTcp, TokioRuntime>;
type Instant = <TokioRuntime as RuntimeLite>::Instant;
type Conn = <Net as Transport>::Connection;

/// TCP's share of the traffic, for `COMPARE_DEBUG`.
#[derive(Default)]
struct StreamCounters {
    bytes: AtomicU64,
    messages: AtomicU64,
}

/// `NetTransport`, counting what it sends, silenced once `killed`.
struct Counted {
    inner: Net,
    counters: Arc<Counters>,
    streams: Arc<StreamCounters>,
    killed: Arc<AtomicBool>,
}

type CountedOptions = (
    NetTransportOptions<NodeId, TokioSocketAddrResolver, TokioTcp>,
    Arc<Counters>,
    Arc<StreamCounters>,
    Arc<AtomicBool>,
);

impl Counted {
    fn check(&self) -> Result<(), <Net as Transport>::Error> {
        if self.killed.load(Ordering::Relaxed) {
            let e = std::io::Error::new(std::io::ErrorKind::ConnectionAborted, "killed");
            return Err(e.into());
        }
        Ok(())
    }
}

impl Transport for Counted {
    type Error = <Net as Transport>::Error;
    type Id = NodeId;
    type Address = SocketAddr;
    type ResolvedAddress = SocketAddr;
    type Resolver = TokioSocketAddrResolver;
    type Connection = Conn;
    type Runtime = TokioRuntime;
    type Options = CountedOptions;

    async fn new(
        (options, counters, streams, killed): CountedOptions,
    ) -> Result<Self, Self::Error> {
        Ok(Self {
            inner: Net::new(options).await?,
            counters,
            streams,
            killed,
        })
    }
    async fn resolve(&self, addr: &SocketAddr) -> Result<SocketAddr, Self::Error> {
        self.inner.resolve(addr).await
    }
    fn local_id(&self) -> &NodeId {
        self.inner.local_id()
    }
    fn local_address(&self) -> &SocketAddr {
        self.inner.local_address()
    }
    fn advertise_address(&self) -> &SocketAddr {
        self.inner.advertise_address()
    }
    fn max_packet_size(&self) -> usize {
        self.inner.max_packet_size()
    }
    fn header_overhead(&self) -> usize {
        self.inner.header_overhead()
    }
    fn blocked_address(&self, addr: &SocketAddr) -> Result<(), Self::Error> {
        self.inner.blocked_address(addr)
    }
    async fn read(
        &self,
        from: &SocketAddr,
        conn: &mut <Conn as Connection>::Reader,
    ) -> Result<usize, Self::Error> {
        self.inner.read(from, conn).await
    }
    async fn write(
        &self,
        conn: &mut <Conn as Connection>::Writer,
        payload: Payload,
    ) -> Result<usize, Self::Error> {
        self.check()?;
        let n = self.inner.write(conn, payload).await?;
        self.counters.sent(n);
        self.streams.bytes.fetch_add(n as u64, Ordering::Relaxed);
        self.streams.messages.fetch_add(1, Ordering::Relaxed);
        Ok(n)
    }
    async fn send_to(
        &self,
        addr: &SocketAddr,
        packet: Payload,
    ) -> Result<(usize, Instant), Self::Error> {
        self.check()?;
        let (n, at) = self.inner.send_to(addr, packet).await?;
        self.counters.sent(n);
        Ok((n, at))
    }
    async fn open(&self, addr: &SocketAddr, deadline: Instant) -> Result<Conn, Self::Error> {
        self.check()?;
        self.inner.open(addr, deadline).await
    }
    fn packet(&self) -> PacketSubscriber<SocketAddr, Instant> {
        self.inner.packet()
    }
    fn stream(&self) -> StreamSubscriber<SocketAddr, Conn> {
        self.inner.stream()
    }
    fn packet_reliable(&self) -> bool {
        self.inner.packet_reliable()
    }
    fn packet_secure(&self) -> bool {
        self.inner.packet_secure()
    }
    fn stream_secure(&self) -> bool {
        <TokioTcp as StreamLayer>::is_secure()
    }
    async fn shutdown(&self) -> Result<(), Self::Error> {
        self.inner.shutdown().await
    }
}

/// A node's metadata: empty, then `KEY=VALUE` on node 0.
struct MetaDelegate(Arc<Mutex<Meta>>);

impl NodeDelegate for MetaDelegate {
    async fn node_meta(&self, _limit: usize) -> Meta {
        self.0.lock().unwrap().clone()
    }
}

/// Node `i`'s membership events, into its view.
struct Events {
    views: Views,
    i: usize,
    me: NodeId,
}

impl Events {
    fn up(&self, node: &NodeState<NodeId, SocketAddr>) {
        if *node.id() == self.me {
            return;
        }
        let mut v = self.views[self.i].lock().unwrap();
        v.alive.insert(*node.address());
        v.key |= node.meta().as_bytes() == format!("{KEY}={VALUE}").as_bytes();
    }
}

impl EventDelegate for Events {
    type Id = NodeId;
    type Address = SocketAddr;

    async fn notify_join(&self, node: Arc<NodeState<NodeId, SocketAddr>>) {
        self.up(&node);
    }
    async fn notify_leave(&self, node: Arc<NodeState<NodeId, SocketAddr>>) {
        let mut v = self.views[self.i].lock().unwrap();
        if v.alive.remove(node.address()) {
            v.downed.insert(*node.address());
        }
    }
    async fn notify_update(&self, node: Arc<NodeState<NodeId, SocketAddr>>) {
        self.up(&node);
    }
}

type Void = VoidDelegate<NodeId, SocketAddr>;
type Delegate = CompositeDelegate<NodeId, SocketAddr, Void, Void, Events, Void, MetaDelegate>;
type Node = Memberlist<Counted, Delegate>;

pub(super) struct Ml {
    nodes: Vec<Option<Node>>,
    /// Node 0's metadata.
    meta: Arc<Mutex<Meta>>,
    killed: Vec<Arc<AtomicBool>>,
    addrs: Vec<SocketAddr>,
    streams: Arc<StreamCounters>,
    counters: Arc<Counters>,
}

impl Cluster for Ml {
    async fn set_key(&mut self) {
        let m = self.nodes[0].clone().unwrap();
        let meta = Meta::try_from(format!("{KEY}={VALUE}")).unwrap();
        *self.meta.lock().unwrap() = meta;
        // update_node waits until the broadcast is out; the clock runs from
        // the call.
        tokio::spawn(async move {
            let _ = m.update_node(Duration::from_secs(10)).await;
        });
    }
    fn kill(&mut self, i: usize) {
        if std::env::var_os("COMPARE_DEBUG").is_some() {
            let (b, d) = (&self.counters.bytes, &self.counters.datagrams);
            let (sb, sm) = (&self.streams.bytes, &self.streams.messages);
            eprintln!(
                "sent so far: {} bytes in {} sends, of which TCP {} bytes in {} messages",
                b.load(Ordering::Relaxed),
                d.load(Ordering::Relaxed),
                sb.load(Ordering::Relaxed),
                sm.load(Ordering::Relaxed),
            );
        }
        self.killed[i].store(true, Ordering::Relaxed);
        if let Some(m) = self.nodes[i].take() {
            tokio::spawn(async move {
                let _ = m.shutdown().await;
            });
        }
    }
    async fn refresh(&mut self) {}
    fn addr(&self, i: usize) -> SocketAddr {
        self.addrs[i]
    }
}

pub(super) async fn start(n: usize, views: Views, counters: Arc<Counters>) -> Ml {
    let opts = Options::lan()
        .with_probe_interval(ROUND)
        .with_probe_timeout(ROUND / 2)
        .with_gossip_interval(ROUND);
    let streams = Arc::new(StreamCounters::default());
    let mut ml = Ml {
        nodes: Vec::new(),
        meta: Arc::new(Mutex::new(Meta::empty())),
        killed: Vec::new(),
        addrs: Vec::new(),
        streams: streams.clone(),
        counters: counters.clone(),
    };
    for i in 0..n {
        let id = NodeId::new(format!("node-{i}")).unwrap();
        let mut net = NetTransportOptions::new(id.clone());
        net.add_bind_address(SocketAddr::from(([127, 0, 0, 1], 0)));
        let killed = Arc::new(AtomicBool::new(false));
        let meta = if i == 0 {
            ml.meta.clone()
        } else {
            Arc::new(Mutex::new(Meta::empty()))
        };
        let delegate = CompositeDelegate::new()
            .with_event_delegate(Events {
                views: views.clone(),
                i,
                me: id,
            })
            .with_node_delegate(MetaDelegate(meta));
        let m: Node = Memberlist::with_delegate(
            delegate,
            (net, counters.clone(), streams.clone(), killed.clone()),
            opts.clone(),
        )
        .await
        .unwrap();
        let addr = *m.advertise_address();
        if let Some(&seed) = ml.addrs.first() {
            let m = m.clone();
            tokio::spawn(async move {
                // A user retries a join that failed (a busy seed).
                for _ in 0..10 {
                    match m.join(MaybeResolvedAddress::Resolved(seed)).await {
                        Ok(_) => return,
                        Err(e) => {
                            if std::env::var_os("COMPARE_DEBUG").is_some() {
                                eprintln!("node {i}: join failed: {e}");
                            }
                            tokio::time::sleep(ROUND * 10).await;
                        }
                    }
                }
            });
        }
        ml.addrs.push(addr);
        ml.killed.push(killed);
        ml.nodes.push(Some(m));
        tokio::time::sleep(jitter(n)).await;
    }
    ml
}
