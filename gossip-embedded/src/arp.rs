//! Neighbors learned from the traffic itself, for smoltcp (and so
//! embassy-net) on Ethernet.
//!
//! smoltcp fills its neighbor cache from ARP only, asks at most once a
//! second for the whole interface, and forgets every entry 60 s after it
//! learned it, however busy the neighbor is. A board that boots into a
//! cluster of N members therefore needs about N seconds before it can
//! answer all of them, and every minute each member's entry expires and
//! has to be asked for again, one a second: while it waits, the socket
//! sends nothing at all (see the send-queue watch in `net` and `embassy`).
//! With rounds of a few hundred milliseconds that silence is enough to be
//! suspected, and convicted.
//!
//! A [`Gleaner`] sits in the Ethernet driver's receive path: for each
//! unicast IPv4 frame from a neighbor, it writes the ARP reply that
//! neighbor would have sent (its hardware and IP addresses, to ours), and
//! the driver hands that to the stack just before the frame itself. smoltcp
//! takes any ARP reply aimed at it into its cache, so every member that
//! talks to the board is known at once and stays known; only silent (dead)
//! ones are asked for. A neighbor is gleaned again after [`GLEAN_EVERY`],
//! well inside smoltcp's 60 s, so its entry never expires while it talks.
//!
//! Like ARP itself this trusts the LAN: a forged frame can claim an
//! address, as a forged ARP reply can.

use core::time::Duration;

/// The size of the ARP reply a [`Gleaner`] writes: an Ethernet header and
/// an IPv4-over-Ethernet ARP packet.
pub const ARP_FRAME: usize = 42;

/// How often a neighbor is gleaned again while it keeps talking.
pub const GLEAN_EVERY: Duration = Duration::from_secs(20);

const ETHERTYPE_IPV4: [u8; 2] = [0x08, 0x00];
const ETHERTYPE_ARP: [u8; 2] = [0x08, 0x06];

/// Remembers the last `N` neighbors gleaned and when (wrapping
/// milliseconds): 12 bytes each.
#[derive(Clone, Debug)]
pub struct Gleaner<const N: usize> {
    seen: [Option<([u8; 4], u32)>; N],
}

impl<const N: usize> Default for Gleaner<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Gleaner<N> {
    /// Nobody gleaned yet.
    pub const fn new() -> Self {
        Self { seen: [None; N] }
    }

    /// For a received Ethernet `frame` that is a unicast IPv4 datagram to
    /// this board from a neighbor not gleaned in the last [`GLEAN_EVERY`]
    /// (`now_ms`: any millisecond clock, wrapping), writes into `out` the
    /// ARP reply that neighbor would send and returns true: hand `out` to
    /// the stack before `frame`. Otherwise leaves `out` alone and returns
    /// false. Frames too short to be IPv4 are let through untouched.
    pub fn glean(&mut self, frame: &[u8], now_ms: u32, out: &mut [u8; ARP_FRAME]) -> bool {
        let (Some(dst_mac), Some(src_mac), Some(ethertype), Some(src_ip), Some(dst_ip)) = (
            frame.get(0..6),
            frame.get(6..12),
            frame.get(12..14),
            frame.get(26..30),
            frame.get(30..34),
        ) else {
            return false;
        };
        // IPv4 (version 4 in the first nibble) sent to us alone: broadcast
        // and multicast frames (first octet odd) say nothing of a neighbor.
        let version = frame.get(14).map(|b| b >> 4);
        let unicast = |mac: &[u8]| mac.first().is_some_and(|b| b & 1 == 0);
        if ethertype != ETHERTYPE_IPV4 || version != Some(4) || !unicast(dst_mac) {
            return false;
        }
        if !unicast(src_mac) || src_ip.iter().all(|&b| b == 0) {
            return false;
        }
        let mut ip = [0u8; 4];
        ip.copy_from_slice(src_ip);
        let every = GLEAN_EVERY.as_millis() as u32;
        // A neighbor gleaned longer ago is kept at just that age, so its
        // wrapping time never comes round to look recent.
        for (_, t) in self.seen.iter_mut().flatten() {
            if now_ms.wrapping_sub(*t) >= every {
                *t = now_ms.wrapping_sub(every);
            }
        }
        let fresh = self
            .seen
            .iter()
            .flatten()
            .any(|&(a, t)| a == ip && now_ms.wrapping_sub(t) < every);
        if fresh {
            return false;
        }
        // Its own slot, or a free one, or the one gleaned longest ago.
        let slot = crate::pick_slot(
            &self.seen,
            |&(a, _)| a == ip,
            |&(_, t)| now_ms.wrapping_sub(t),
        );
        if let Some(slot) = slot.and_then(|i| self.seen.get_mut(i)) {
            *slot = Some((ip, now_ms));
        }
        // Ethernet: to us, from the neighbor, ARP. Then the ARP reply:
        // hardware Ethernet, protocol IPv4, lengths 6 and 4, operation 2;
        // the sender is the neighbor, the target us.
        let parts: [&[u8]; 8] = [
            dst_mac,
            src_mac,
            &ETHERTYPE_ARP,
            &[0, 1, 0x08, 0x00, 6, 4, 0, 2],
            src_mac,
            src_ip,
            dst_mac,
            dst_ip,
        ];
        let bytes = parts.iter().flat_map(|p| p.iter());
        for (o, &b) in out.iter_mut().zip(bytes) {
            *o = b;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const US: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const THEM: [u8; 6] = [2, 0, 0, 0, 0, 2];

    /// An Ethernet frame carrying the start of an IPv4 header.
    fn ipv4(dst: [u8; 6], src: [u8; 6], from: [u8; 4], to: [u8; 4]) -> [u8; 42] {
        let mut f = [0u8; 42];
        f[0..6].copy_from_slice(&dst);
        f[6..12].copy_from_slice(&src);
        f[12..14].copy_from_slice(&ETHERTYPE_IPV4);
        f[14] = 0x45;
        f[23] = 17; // UDP
        f[26..30].copy_from_slice(&from);
        f[30..34].copy_from_slice(&to);
        f
    }

    #[test]
    fn a_unicast_datagram_yields_the_senders_arp_reply() {
        let mut g = Gleaner::<4>::new();
        let mut out = [0u8; ARP_FRAME];
        let frame = ipv4(US, THEM, [10, 0, 0, 2], [10, 0, 0, 1]);
        assert!(g.glean(&frame, 0, &mut out));
        // The Ethernet header: to us, from them, ARP.
        assert_eq!(&out[0..6], &US);
        assert_eq!(&out[6..12], &THEM);
        assert_eq!(&out[12..14], &ETHERTYPE_ARP);
        // The ARP reply, as smoltcp reads it.
        let arp = smoltcp::wire::ArpPacket::new_checked(&out[14..]).unwrap();
        let repr = smoltcp::wire::ArpRepr::parse(&arp).unwrap();
        assert_eq!(
            repr,
            smoltcp::wire::ArpRepr::EthernetIpv4 {
                operation: smoltcp::wire::ArpOperation::Reply,
                source_hardware_addr: smoltcp::wire::EthernetAddress(THEM),
                source_protocol_addr: [10, 0, 0, 2].into(),
                target_hardware_addr: smoltcp::wire::EthernetAddress(US),
                target_protocol_addr: [10, 0, 0, 1].into(),
            }
        );
    }

    #[test]
    fn a_neighbor_is_gleaned_again_only_after_a_while() {
        let mut g = Gleaner::<4>::new();
        let mut out = [0u8; ARP_FRAME];
        let frame = ipv4(US, THEM, [10, 0, 0, 2], [10, 0, 0, 1]);
        let every = GLEAN_EVERY.as_millis() as u32;
        assert!(g.glean(&frame, u32::MAX - 5, &mut out));
        assert!(!g.glean(&frame, u32::MAX, &mut out));
        // The clock wraps: still inside the period.
        assert!(!g.glean(&frame, every - 10, &mut out));
        assert!(g.glean(&frame, every - 6, &mut out));
    }

    #[test]
    fn a_time_long_past_does_not_come_round() {
        let mut g = Gleaner::<4>::new();
        let mut out = [0u8; ARP_FRAME];
        let frame = ipv4(US, THEM, [10, 0, 0, 2], [10, 0, 0, 1]);
        let other = ipv4(US, THEM, [10, 0, 0, 3], [10, 0, 0, 1]);
        assert!(g.glean(&frame, 0, &mut out));
        // Other traffic every 10 s for 49.6 days: .2's time is settled.
        for k in 1..=429_000u32 {
            g.glean(&other, k * 10_000, &mut out);
        }
        // 2^32 ms after .2 was gleaned, it is not taken for recent.
        assert!(g.glean(&frame, 0, &mut out));
    }

    #[test]
    fn broadcasts_other_protocols_and_short_frames_are_let_through() {
        let mut g = Gleaner::<4>::new();
        let mut out = [7u8; ARP_FRAME];
        let broadcast = ipv4([0xff; 6], THEM, [10, 0, 0, 2], [10, 0, 0, 255]);
        assert!(!g.glean(&broadcast, 0, &mut out));
        let mut arp = ipv4(US, THEM, [10, 0, 0, 2], [10, 0, 0, 1]);
        arp[12..14].copy_from_slice(&ETHERTYPE_ARP);
        assert!(!g.glean(&arp, 0, &mut out));
        let frame = ipv4(US, THEM, [10, 0, 0, 2], [10, 0, 0, 1]);
        assert!(!g.glean(&frame[..30], 0, &mut out));
        assert!(!g.glean(&[], 0, &mut out));
        assert_eq!(out, [7u8; ARP_FRAME], "untouched");
    }

    #[test]
    fn the_neighbor_gleaned_longest_ago_makes_room() {
        let mut g = Gleaner::<2>::new();
        let mut out = [0u8; ARP_FRAME];
        let from = |i: u8| ipv4(US, THEM, [10, 0, 0, i], [10, 0, 0, 1]);
        assert!(g.glean(&from(2), 0, &mut out));
        assert!(g.glean(&from(3), 10, &mut out));
        assert!(g.glean(&from(4), 20, &mut out)); // evicts .2
        assert!(g.glean(&from(2), 30, &mut out), "forgotten, gleaned again");
        assert!(!g.glean(&from(4), 40, &mut out));
    }
}
