//! The async variant (`Gossip::step` over `embedded-nal-async`'s
//! `UnconnectedUdp`) on an in-memory network and a virtual clock, polled by
//! a minimal executor: two nodes converge and see a state change.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use gossip_core::state::{Generation, StateKey};
use gossip_core::wire::ClusterId;
use gossip_core::{Event, Instant, Node};
use gossip_embedded::{Clock, Gossip, SmallStorage, Timer, small_config};
use rand_core::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

type Queues = Rc<RefCell<Vec<VecDeque<(SocketAddr, Vec<u8>)>>>>;

/// One node's socket: its inbox in the shared queues. While `blocked`, a
/// send waits (as a full send buffer makes it) and records what it holds.
struct MemUdp {
    me: usize,
    queues: Queues,
    blocked: Rc<Cell<bool>>,
    held: Rc<RefCell<Vec<Vec<u8>>>>,
}

#[derive(Debug)]
struct NoError;

impl std::fmt::Display for NoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("never")
    }
}

impl std::error::Error for NoError {}

impl embedded_io_async::Error for NoError {
    fn kind(&self) -> embedded_io_async::ErrorKind {
        embedded_io_async::ErrorKind::Other
    }
}

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([10, 0, 1, 1 + i as u8], 7000))
}

impl embedded_nal_async::UnconnectedUdp for MemUdp {
    type Error = NoError;

    async fn send(
        &mut self,
        local: SocketAddr,
        remote: SocketAddr,
        data: &[u8],
    ) -> Result<(), NoError> {
        assert_eq!(local, addr(self.me));
        let blocked = self.blocked.clone();
        let mut recorded = false;
        std::future::poll_fn(|_| {
            if !blocked.get() {
                return Poll::Ready(());
            }
            if !recorded {
                self.held.borrow_mut().push(data.to_vec());
                recorded = true;
            }
            Poll::Pending
        })
        .await;
        let to = (0..self.queues.borrow().len()).find(|&i| addr(i) == remote);
        if let Some(to) = to {
            self.queues.borrow_mut()[to].push_back((local, data.to_vec()));
        }
        Ok(())
    }

    async fn receive_into(
        &mut self,
        buf: &mut [u8],
    ) -> Result<(usize, SocketAddr, SocketAddr), NoError> {
        std::future::poll_fn(|_| match self.queues.borrow_mut()[self.me].pop_front() {
            Some((from, bytes)) => {
                buf[..bytes.len()].copy_from_slice(&bytes);
                Poll::Ready(Ok((bytes.len(), addr(self.me), from)))
            }
            None => Poll::Pending,
        })
        .await
    }
}

/// The virtual clock, shared.
#[derive(Clone)]
struct VirtualClock(Rc<Cell<Instant>>);

impl Clock for VirtualClock {
    fn now(&self) -> Instant {
        self.0.get()
    }
}

impl Timer for VirtualClock {
    fn at(&mut self, deadline: Instant) -> impl Future<Output = ()> {
        let clock = self.0.clone();
        std::future::poll_fn(move |_| {
            if clock.get() >= deadline {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
    }
}

type G = Gossip<SmallStorage, Xoshiro256PlusPlus, 512>;

#[test]
fn two_async_nodes_converge_and_see_a_state_change() {
    let mut config = small_config(ClusterId::from_name("async-test"));
    config.gossip_interval = Duration::from_millis(100);
    let clock = VirtualClock(Rc::new(Cell::new(Instant::ZERO)));
    let queues: Queues = Rc::new(RefCell::new(vec![VecDeque::new(), VecDeque::new()]));
    let mut nodes: Vec<(G, MemUdp, VirtualClock)> = (0..2)
        .map(|i| {
            let seeds = if i == 0 { vec![] } else { vec![addr(0)] };
            let rng = Xoshiro256PlusPlus::seed_from_u64(i as u64);
            let node = Node::new(
                config.clone(),
                addr(i),
                Generation(7),
                &seeds,
                rng,
                clock.now(),
            )
            .unwrap();
            (
                Gossip::new(node).unwrap(),
                MemUdp {
                    me: i,
                    queues: queues.clone(),
                    blocked: Rc::new(Cell::new(false)),
                    held: Rc::new(RefCell::new(Vec::new())),
                },
                clock.clone(),
            )
        })
        .collect();
    let mut cx = Context::from_waker(Waker::noop());
    let mut changed = false;
    let mut seen_at = None;
    // Each millisecond, poll every node's step once: a step still waiting
    // is dropped (it is cancel-safe while it waits) and started again.
    for ms in 0..20_000u64 {
        clock.0.set(Instant::from_millis(ms));
        for (gossip, socket, timer) in &mut nodes {
            for _ in 0..4 {
                if gossip.node().is_shut_down() {
                    break;
                }
                let step = pin!(gossip.step(socket, &clock, timer));
                if step.poll(&mut cx).is_pending() {
                    break;
                }
            }
        }
        let (a, b) = nodes.split_at_mut(1);
        if !changed && a[0].0.node().live_count() == 1 && b[0].0.node().live_count() == 1 {
            a[0].0.set_state(StateKey::parse("MODE"), b"async").unwrap();
            changed = true;
        }
        while let Some(e) = b[0].0.poll_event() {
            if let Event::StateChanged {
                endpoint,
                key,
                value,
            } = e
                && endpoint == addr(0)
                && key == StateKey::parse("MODE")
                && value.value == b"async"
            {
                seen_at = Some(ms);
            }
        }
        while a[0].0.poll_event().is_some() {}
        if seen_at.is_some() {
            break;
        }
    }
    assert!(changed, "the two nodes never saw each other alive");
    let ms = seen_at.expect("node 1 never saw MODE=async");
    println!("converged and disseminated by {ms} ms");

    // A step dropped while its send waits (a full send buffer) loses
    // nothing: the datagram goes out first in the next step.
    {
        let (gossip, socket, timer) = &mut nodes[0];
        queues.borrow_mut()[1].clear();
        socket.blocked.set(true);
        let round = gossip
            .node()
            .poll_timeout()
            .expect("a running node has a deadline");
        clock.0.set(round);
        {
            let step = pin!(gossip.step(socket, &clock, timer));
            assert!(step.poll(&mut cx).is_pending(), "the send waits");
        }
        let held = socket
            .held
            .borrow_mut()
            .pop()
            .expect("the step reached a send");
        assert!(
            queues.borrow()[1].is_empty(),
            "nothing went out while blocked"
        );
        socket.blocked.set(false);
        {
            let step = pin!(gossip.step(socket, &clock, timer));
            let _ = step.poll(&mut cx);
        }
        let first = queues.borrow()[1].front().map(|(_, d)| d.clone());
        assert_eq!(first, Some(held), "the held datagram goes out first");
        assert_eq!(gossip.stats().send_failures, 0);
    }

    // Node 0 leaves: one step sends its notice at once (no deadline or
    // datagram needed), and node 1 sees it shut down.
    queues.borrow_mut()[0].clear(); // nothing to receive: the step must not wait
    nodes[0].0.shutdown(clock.now());
    {
        let (gossip, socket, timer) = &mut nodes[0];
        let step = pin!(gossip.step(socket, &clock, timer));
        assert!(
            step.poll(&mut cx).is_ready(),
            "a shutting-down step does not wait"
        );
    }
    assert!(nodes[0].0.node().is_shut_down());
    let mut left = false;
    for _ in 0..4 {
        let (gossip, socket, timer) = &mut nodes[1];
        {
            let step = pin!(gossip.step(socket, &clock, timer));
            let _ = step.poll(&mut cx);
        }
        while let Some(e) = gossip.poll_event() {
            left |= e == Event::ShutDown { endpoint: addr(0) };
        }
    }
    assert!(left, "node 1 did not see node 0 shut down");
}
