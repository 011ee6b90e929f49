//! foca 2.0.

use super::*;
use foca::{
    AccumulatingRuntime, BroadcastHandler, Foca, Invalidates, OwnedNotification, PostcardCodec,
    Timer,
};
use rand::SeedableRng;
use rand::rngs::SmallRng;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::num::{NonZeroU32, NonZeroUsize};
use tokio::sync::mpsc;

#[derive(Debug)]
pub(super) struct KvError;

impl std::fmt::Display for KvError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("bad broadcast")
    }
}

impl std::error::Error for KvError {}

/// One key of node 0, versioned.
pub(super) struct KvKey(u64);

impl Invalidates for KvKey {
    fn invalidates(&self, other: &Self) -> bool {
        self.0 > other.0
    }
}

/// Node `i`'s handler of node 0's key broadcasts.
struct Kv {
    seen: u64,
    views: Views,
    i: usize,
}

impl BroadcastHandler<SocketAddr> for Kv {
    type Key = KvKey;
    type Error = KvError;

    fn receive_item(
        &mut self,
        data: &[u8],
        _sender: Option<&SocketAddr>,
    ) -> Result<Option<KvKey>, KvError> {
        let version = u64::from_be_bytes(
            data.get(..8)
                .ok_or(KvError)?
                .try_into()
                .map_err(|_| KvError)?,
        );
        if version <= self.seen {
            return Ok(None);
        }
        self.seen = version;
        if data.get(8..) == Some(VALUE.as_bytes()) {
            self.views[self.i].lock().unwrap().key = true;
        }
        Ok(Some(KvKey(version)))
    }
}

enum Cmd {
    Announce(SocketAddr),
    Put(Vec<u8>),
}

pub(super) struct Fo {
    nodes: Vec<Option<(tokio::task::JoinHandle<()>, mpsc::UnboundedSender<Cmd>)>>,
    addrs: Vec<SocketAddr>,
}

impl Cluster for Fo {
    async fn set_key(&mut self) {
        let mut data = 1u64.to_be_bytes().to_vec();
        data.extend_from_slice(VALUE.as_bytes());
        let _ = self.nodes[0].as_ref().unwrap().1.send(Cmd::Put(data));
    }
    fn kill(&mut self, i: usize) {
        if let Some((task, _)) = self.nodes[i].take() {
            task.abort();
        }
    }
    async fn refresh(&mut self) {}
    fn addr(&self, i: usize) -> SocketAddr {
        self.addrs[i]
    }
}

async fn node(
    id: SocketAddr,
    sock: tokio::net::UdpSocket,
    cfg: foca::Config,
    kv: Kv,
    mut cmds: mpsc::UnboundedReceiver<Cmd>,
    counters: Arc<Counters>,
    seed: u64,
) {
    let (views, i) = (kv.views.clone(), kv.i);
    let mut buf = vec![0u8; cfg.max_packet_size.get()];
    let mut foca =
        Foca::with_custom_broadcast(id, cfg, SmallRng::seed_from_u64(seed), PostcardCodec, kv);
    let mut rt = AccumulatingRuntime::new();
    let mut timers: BinaryHeap<Reverse<(tokio::time::Instant, Timer<SocketAddr>)>> =
        BinaryHeap::new();
    loop {
        let next = timers.peek().map(|Reverse((t, _))| *t);
        let sleep = async move {
            match next {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            r = sock.recv_from(&mut buf) => if let Ok((len, _)) = r {
                let _ = foca.handle_data(&buf[..len], &mut rt);
            },
            () = sleep => {
                let now = tokio::time::Instant::now();
                while timers.peek().is_some_and(|Reverse((t, _))| *t <= now) {
                    let Reverse((_, ev)) = timers.pop().unwrap();
                    let _ = foca.handle_timer(ev, &mut rt);
                }
            }
            c = cmds.recv() => match c {
                Some(Cmd::Announce(dst)) => { let _ = foca.announce(dst, &mut rt); }
                Some(Cmd::Put(d)) => {
                    let _ = foca.add_broadcast(&d);
                    let _ = foca.gossip(&mut rt);
                    views[i].lock().unwrap().key = true;
                }
                None => return,
            },
        }
        while let Some((dst, data)) = rt.to_send() {
            if sock.send_to(&data, dst).await.is_ok() {
                counters.sent(data.len());
            }
        }
        let now = tokio::time::Instant::now();
        while let Some((after, ev)) = rt.to_schedule() {
            timers.push(Reverse((now + after, ev)));
        }
        while let Some(n) = rt.to_notify() {
            let mut v = views[i].lock().unwrap();
            match n {
                OwnedNotification::MemberUp(m) => {
                    v.alive.insert(m);
                }
                OwnedNotification::MemberDown(m) => {
                    v.alive.remove(&m);
                    v.downed.insert(m);
                }
                _ => {}
            }
        }
    }
}

pub(super) async fn start(n: usize, views: Views, counters: Arc<Counters>) -> Fo {
    let mut cfg = foca::Config::new_lan(NonZeroU32::new(n as u32).unwrap());
    // Every period halved, gossip every round, as peers.md measured.
    cfg.probe_period /= 2;
    cfg.probe_rtt /= 2;
    cfg.suspect_to_down_after /= 2;
    cfg.periodic_gossip = Some(foca::PeriodicParams {
        frequency: ROUND,
        num_members: NonZeroUsize::new(3).unwrap(),
    });
    if let Some(p) = cfg.periodic_announce.as_mut() {
        p.frequency /= 2;
    }
    if let Some(p) = cfg.periodic_announce_to_down_members.as_mut() {
        p.frequency /= 2;
    }
    let mut nodes = Vec::new();
    let mut addrs: Vec<SocketAddr> = Vec::new();
    for i in 0..n {
        let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let id = sock.local_addr().unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        let kv = Kv {
            seen: 0,
            views: views.clone(),
            i,
        };
        let task = tokio::spawn(node(
            id,
            sock,
            cfg.clone(),
            kv,
            rx,
            counters.clone(),
            i as u64,
        ));
        if let Some(seed) = addrs.first() {
            let _ = tx.send(Cmd::Announce(*seed));
        }
        addrs.push(id);
        nodes.push(Some((task, tx)));
        tokio::time::sleep(jitter(n)).await;
    }
    Fo { nodes, addrs }
}
