//! The blocking variant handles at most `RECEIVE_BURST` datagrams per call
//! and then asks to be called again at once; each datagram's reply goes out
//! before the next is handled, so a burst does not overflow the short reply
//! queue.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use gossip_core::state::Generation;
use gossip_core::wire::{ClusterId, Header, RingRange, SynWriter};
use gossip_core::{DropReason, Instant, Node};
use gossip_embedded::{Gossip, RECEIVE_BURST, SmallStorage, small_config};
use rand_core::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

/// A stack whose one socket has datagrams waiting; sends are counted and
/// vanish.
struct Waiting(VecDeque<(SocketAddr, Vec<u8>)>, usize);

impl embedded_nal::UdpClientStack for Waiting {
    type UdpSocket = ();
    type Error = ();
    fn socket(&mut self) -> Result<(), ()> {
        Ok(())
    }
    fn connect(&mut self, _: &mut (), _: SocketAddr) -> Result<(), ()> {
        Ok(())
    }
    fn send(&mut self, _: &mut (), _: &[u8]) -> nb::Result<(), ()> {
        Ok(())
    }
    fn receive(&mut self, _: &mut (), buf: &mut [u8]) -> nb::Result<(usize, SocketAddr), ()> {
        let (from, bytes) = self.0.pop_front().ok_or(nb::Error::WouldBlock)?;
        buf[..bytes.len()].copy_from_slice(&bytes);
        Ok((bytes.len(), from))
    }
    fn close(&mut self, _: ()) -> Result<(), ()> {
        Ok(())
    }
}

impl embedded_nal::UdpFullStack for Waiting {
    fn bind(&mut self, _: &mut (), _: u16) -> Result<(), ()> {
        Ok(())
    }
    fn send_to(&mut self, _: &mut (), _: SocketAddr, _: &[u8]) -> nb::Result<(), ()> {
        self.1 += 1;
        Ok(())
    }
}

#[test]
fn a_full_burst_asks_to_be_called_again_now() {
    let cluster = ClusterId::from_name("burst");
    let me = SocketAddr::from(([10, 0, 0, 1], 7000));
    let mut config = small_config(cluster);
    config.gossip_interval = Duration::from_millis(100);
    let rng = Xoshiro256PlusPlus::seed_from_u64(1);
    let node: Node<SmallStorage, _> =
        Node::new(config, me, Generation(5), &[], rng, Instant::ZERO).unwrap();
    let mut g: Gossip<SmallStorage, _, 512> = Gossip::new(node).unwrap();
    let mut waiting = VecDeque::new();
    for i in 0..RECEIVE_BURST + 3 {
        let from = SocketAddr::from(([10, 0, 1, i as u8], 7000));
        let mut buf = vec![0u8; 512];
        let n = SynWriter::new(
            &mut buf,
            &Header {
                cluster,
                sender: from,
            },
            &[],
        )
        .unwrap()
        .finish(RingRange::WHOLE);
        buf.truncate(n);
        waiting.push_back((from, buf));
    }
    let mut stack = Waiting(VecDeque::new(), 0);
    // The first round (due at once) gives the node a heartbeat to tell.
    let start = Instant::from_millis(10);
    g.poll(start, &mut stack, &mut ());
    let after_round = stack.1;
    stack.0 = waiting;
    let now = Instant::from_millis(50);
    let first = g.poll(now, &mut stack, &mut ());
    assert_eq!(first, Some(now), "a full burst: call again now");
    assert_eq!(stack.0.len(), 3, "at most RECEIVE_BURST datagrams per call");
    let second = g.poll(now, &mut stack, &mut ());
    assert!(stack.0.is_empty());
    assert!(
        second.is_some_and(|t| t > now),
        "then the next deadline: {second:?}"
    );
    assert_eq!(g.node().stats().datagrams_in, (RECEIVE_BURST + 3) as u64);
    // small_config keeps 2 pending replies: every SYN was still answered.
    let stats = g.node().stats();
    assert_eq!(stats.dropped(DropReason::ReplyQueueFull), 0, "{stats:?}");
    assert_eq!(
        stats.sent(gossip_core::wire::Kind::Ack),
        (RECEIVE_BURST + 3) as u64,
        "one ACK per SYN: {stats:?}"
    );
    assert_eq!(stack.1 - after_round, RECEIVE_BURST + 3);
}
