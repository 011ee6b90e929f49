//! The wire format: every byte that crosses the network is written and read
//! here.
//!
//! # Datagram layout
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 2 | magic [`MAGIC`], `0x47 0x53` (`"GS"`) |
//! | 2 | 1 | protocol version, [`PROTOCOL_VERSION`] (4) |
//! | 3 | 1 | flags: bit 0 [`FLAG_AUTH`] means an authentication trailer ends the datagram; other bits must be 0 |
//! | 4 | 4 | cluster identifier, [`ClusterId`], little endian |
//! | 8 | 1 | message kind, [`Kind`]: 1 SYN, 2 ACK, 3 ACK2, 4 SHUTDOWN, 5 PING, 6 PING-REQ, 7 PING-ACK, 8 NACK, 9 NEWS, 10 CATCH-UP |
//! | 9 | 6–8 or 18–20 | sender: the sending node's gossip address (postcard `SocketAddr`: variant byte 0 then 4 IPv4 address bytes, or 1 then 16 IPv6 bytes; then the port as a 1–3 byte varint; IPv6 flow info and scope id are not sent) |
//! | .. | .. | rumors: `list<Rumor>`, membership news piggybacked on every message |
//! | .. | .. | body, postcard-encoded, by kind (below) |
//! | end − n − 1 | n | authentication tag, only with [`FLAG_AUTH`] |
//! | end − 1 | 1 | n, the tag's length, only with [`FLAG_AUTH`] |
//!
//! Postcard writes unsigned integers as LEB128 varints (7 bits a byte, low
//! first), byte strings and strings as a varint length and the bytes.
//! Generations and versions are 32-bit, as Cassandra's: their varints take
//! at most 5 bytes and hold at most `u32::MAX`; a wider one makes the
//! datagram malformed ([`Error::Malformed`]), and it is dropped. In the
//! bodies, `list<T>` is a varint count followed by that many `T`:
//!
//! - **SYN**: `list<GossipDigest>`, then a [`RingRange`] `start: varint`,
//!   `end: varint`: the list holds every endpoint the sender knows whose
//!   [`ring_position`] lies in that range, so an endpoint in the range that
//!   the list leaves out is one the sender lacks (the list may hold others
//!   too; `start == end + 1` means the whole ring); then `summary: bytes`,
//!   empty or a [`Summary`] of 128 bytes (64 little-endian `u16`) of every
//!   endpoint the sender knows; then `filter: bytes`, empty or a [`Filter`]
//!   (`salt: u32` little-endian, then 8 to 1,024 bytes of bits, a multiple
//!   of 8) of the endpoints the sender knows on the range: a sync's SYN to
//!   a member far apart covers its range by a filter rather than digests,
//!   and an endpoint on the range the filter does not hold is one the
//!   sender lacks
//! - **ACK**: `list<GossipDigest>` (requests), `list<EndpointDelta>` (deltas)
//! - **ACK2**: `list<EndpointDelta>`
//! - **SHUTDOWN**: the sender's own final delta without the endpoint:
//!   `generation`, `list<Entry>`, `heartbeat`
//! - **PING**, **PING-ACK**, **NACK**: `seq: varint`, the probe's sequence
//!   number (a PING-ACK answers the PING, or relays the answer to a PING-REQ;
//!   a NACK says a relayed PING went unanswered)
//! - **PING-REQ**: `seq: varint`, `target: SocketAddr`: "ping it for me"
//! - **NEWS**: no body: the rumors alone, pushed at once when they are hot
//! - **CATCH-UP**: `list<EndpointDelta>`, `next: varint`, `more: varint`
//!   (0 or 1): one datagram of a paced burst of whole endpoints that a SYN's
//!   sender lacks on its range, in ring order; `next` is where the
//!   receiver's next SYN should start, and `more` (on the burst's last
//!   datagram) asks it to send that SYN now, as the range is not covered yet
//!
//! with
//!
//! - `Rumor` = `endpoint: SocketAddr`, `generation: varint`, `claim: varint`
//!   (a [`Claim`]'s [`key`](Claim::key): incarnation, status, confirmations);
//! - `GossipDigest` = `endpoint: SocketAddr`, `generation: varint`,
//!   `max_version: varint`, `claim: varint`; in an ACK's requests the version
//!   is the requester's and means "send me what is above it" (0 with an
//!   unknown or newer generation: "send me everything"), and the claim is 0;
//! - `EndpointDelta` = `endpoint: SocketAddr`, `generation: varint`,
//!   `claim: varint`, `list<Entry>`, `heartbeat: option<varint>` (`0x00` none, `0x01` then the
//!   version); never empty: at least one entry or the heartbeat (an empty
//!   delta says nothing, so writers leave it out and `decode` rejects it);
//! - `Entry` = `key`, `version: varint`, `value: bytes`, where `key` is a varint
//!   code: 0 is a user-defined key followed by its name as a string; any other
//!   code is a well-known [`ApplicationState`](crate::state::ApplicationState)
//!   with no payload. Codes this build does not know decode as
//!   [`StateKey::Unknown`](crate::state::StateKey::Unknown) and are kept and relayed, not rejected.
//!
//! Entries of one delta are in ascending version order. Writers are canonical
//! (minimal varints). `decode` also accepts overlong varints (postcard does),
//! so decoding and re-encoding gives the same message in canonical bytes,
//! which may be shorter than what arrived.
//!
//! # Sizes
//!
//! The writers ([`SynWriter`], [`AckWriter`], [`Ack2Writer`],
//! [`encode_shutdown`]) write into the caller's buffer and never past it:
//! pass a shorter slice to keep room for an authentication trailer. They take
//! items in the caller's priority order and keep as many as fit.
//!
//! # Errors
//!
//! [`decode`] borrows from its input, needs no allocator and never panics. It
//! rejects short input, a wrong magic, another protocol version, unknown
//! flags, another cluster, an unknown message kind, a body that does not
//! parse, and trailing bytes, each as its own [`Error`] variant.

pub(crate) mod codec;
mod writer;

use core::fmt;
use core::net::SocketAddr;

pub use crate::claim::{Claim, Status};
use crate::state::{Delta, Entries, Generation, Version};
use codec::Reader;
pub use writer::{
    Ack2Writer, AckWriter, CatchUpWriter, SynWriter, encode_probe, encode_shutdown, rumor_len,
};

/// The first two bytes of every datagram: `"GS"`.
pub const MAGIC: [u8; 2] = *b"GS";
/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u8 = 4;
/// Flag bit: an authentication trailer (tag, then its one-byte length) ends
/// the datagram.
pub const FLAG_AUTH: u8 = 0b0000_0001;
/// Bytes before the sender address: magic, version, flags, cluster, kind.
pub const PREFIX_LEN: usize = 9;
/// Room a writer keeps for a list's element count while the list is open (a
/// three-byte varint; the final count takes its minimal size).
pub const COUNT_RESERVE_LEN: usize = codec::COUNT_RESERVE;
/// The largest header: [`PREFIX_LEN`] and an IPv6 sender.
pub const MAX_HEADER_LEN: usize = PREFIX_LEN + 20;

/// Identifies a cluster; datagrams of other clusters are refused.
///
/// Made from the cluster's name with [`ClusterId::from_name`] (32-bit FNV-1a),
/// so nodes configured with the same name agree without coordination.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClusterId(pub u32);

impl ClusterId {
    /// The identifier of the cluster named `name` (32-bit FNV-1a of its bytes).
    pub const fn from_name(name: &str) -> Self {
        let mut rest = name.as_bytes();
        let mut hash: u32 = 0x811c_9dc5;
        while let [byte, tail @ ..] = rest {
            hash ^= *byte as u32;
            hash = hash.wrapping_mul(0x0100_0193);
            rest = tail;
        }
        ClusterId(hash)
    }
}

impl fmt::Display for ClusterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08x}", self.0)
    }
}

/// Message kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Kind {
    /// Opens an exchange with digests.
    Syn = 1,
    /// Answers a SYN with requests and deltas.
    Ack = 2,
    /// Answers an ACK's requests with deltas.
    Ack2 = 3,
    /// Announces the sender's graceful shutdown.
    Shutdown = 4,
    /// A probe: "are you alive?"
    Ping = 5,
    /// "Probe this member for me" (an indirect probe).
    PingReq = 6,
    /// Answers a PING, or relays the answer to a PING-REQ.
    PingAck = 7,
    /// A relayed PING went unanswered.
    Nack = 8,
    /// Rumors only, pushed at once.
    News = 9,
    /// Catches up a node far behind: part of a burst of whole endpoints it
    /// lacks on its SYN's range.
    CatchUp = 10,
}

impl Kind {
    /// The kind with this code, if any.
    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(Kind::Syn),
            2 => Some(Kind::Ack),
            3 => Some(Kind::Ack2),
            4 => Some(Kind::Shutdown),
            5 => Some(Kind::Ping),
            6 => Some(Kind::PingReq),
            7 => Some(Kind::PingAck),
            8 => Some(Kind::Nack),
            9 => Some(Kind::News),
            10 => Some(Kind::CatchUp),
            _ => None,
        }
    }
}

/// What every datagram starts with, besides magic, version and flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// The cluster the sender belongs to.
    pub cluster: ClusterId,
    /// The sender's gossip address: its identity in the cluster.
    pub sender: SocketAddr,
}

/// `(endpoint, generation, max_version)`: what a node knows of an endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(
    any(test, feature = "serde"),
    derive(serde::Serialize, serde::Deserialize)
)]
pub struct GossipDigest {
    /// The endpoint described.
    pub endpoint: SocketAddr,
    /// Its generation as known.
    pub generation: Generation,
    /// The highest version known of it.
    pub max_version: Version,
    /// What the sender believes of its liveness (zero in an ACK's requests).
    pub claim: Claim,
}

/// Membership news about one endpoint: a liveness claim about a generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Rumor {
    /// The endpoint it is about.
    pub endpoint: SocketAddr,
    /// The generation it is about.
    pub generation: Generation,
    /// What it says.
    pub claim: Claim,
}

/// A decoded datagram, borrowing from the received bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Datagram<'a> {
    /// The sender's cluster and address.
    pub header: Header,
    /// Membership news the sender piggybacked.
    pub rumors: Rumors<'a>,
    /// The message.
    pub message: Message<'a>,
    /// The authentication tag, when [`FLAG_AUTH`] was set. Not verified here.
    pub auth_tag: Option<&'a [u8]>,
}

/// A decoded message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Message<'a> {
    /// SYN: the sender's digests.
    Syn(Syn<'a>),
    /// ACK: requests and deltas.
    Ack(Ack<'a>),
    /// ACK2: deltas.
    Ack2(Ack2<'a>),
    /// SHUTDOWN: the sender is leaving gracefully.
    Shutdown(Shutdown<'a>),
    /// CATCH-UP: part of a burst of whole endpoints.
    CatchUp(CatchUp<'a>),
    /// PING, PING-REQ, PING-ACK, NACK or NEWS.
    Probe(Probe),
}

impl Message<'_> {
    /// The message's kind.
    pub fn kind(&self) -> Kind {
        match self {
            Message::Syn(_) => Kind::Syn,
            Message::Ack(_) => Kind::Ack,
            Message::Ack2(_) => Kind::Ack2,
            Message::Shutdown(_) => Kind::Shutdown,
            Message::CatchUp(_) => Kind::CatchUp,
            Message::Probe(p) => p.kind(),
        }
    }
}

/// The liveness messages: probes, their answers, and pushed news.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Probe {
    /// "Are you alive?"; answered by a PING-ACK with the same `seq`.
    Ping {
        /// The probe's sequence number.
        seq: u32,
    },
    /// "Ping `target` for me": answered by a PING-ACK with the same `seq`
    /// when the target answers, a NACK when it does not.
    PingReq {
        /// The requester's sequence number.
        seq: u32,
        /// Whom to ping.
        target: SocketAddr,
    },
    /// The answer to a PING (or a relayed one, to a PING-REQ).
    PingAck {
        /// The sequence number answered.
        seq: u32,
    },
    /// A relayed PING went unanswered.
    Nack {
        /// The requester's sequence number.
        seq: u32,
    },
    /// Rumors only.
    News,
}

impl Probe {
    /// The message's kind.
    pub fn kind(&self) -> Kind {
        match self {
            Probe::Ping { .. } => Kind::Ping,
            Probe::PingReq { .. } => Kind::PingReq,
            Probe::PingAck { .. } => Kind::PingAck,
            Probe::Nack { .. } => Kind::Nack,
            Probe::News => Kind::News,
        }
    }
}

/// The body of a SYN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Syn<'a> {
    /// What the sender knows, one digest per endpoint.
    pub digests: Digests<'a>,
    /// The part of the ring the digests cover completely.
    pub range: RingRange,
    /// Which endpoints the sender knows, the whole ring in 128 bytes: a
    /// [`Summary`] in its wire form ([`Summary::from_wire`] reads it).
    pub summary: Option<&'a [u8; SUMMARY_BYTES]>,
    /// Which endpoints the sender knows on `range`, as a [`Filter`] rather
    /// than digests (a sync's SYN to a member far apart): an endpoint on
    /// the range the filter does not hold is one the sender lacks.
    pub filter: Option<Filter<'a>>,
}

impl Syn<'_> {
    /// Whether its filter holds the endpoint at `position` (false without
    /// a filter).
    pub fn filter_holds(&self, position: u32) -> bool {
        self.filter.is_some_and(|f| f.contains(position))
    }
}

/// Segments of the ring a [`Summary`] covers.
pub const SUMMARY_SEGMENTS: usize = 64;

/// A [`Summary`]'s size on the wire.
pub const SUMMARY_BYTES: usize = 2 * SUMMARY_SEGMENTS;

/// Which endpoints a node knows (itself included), in 128 bytes: the ring
/// in [`SUMMARY_SEGMENTS`] equal parts (by the top six bits of a
/// [`ring_position`]), each 16 bits: how many endpoints are known there
/// (modulo 64, the top six bits) and the XOR of a 10-bit fingerprint of
/// their positions. Two nodes that know the same endpoints have the same
/// summary; a segment that differs holds an endpoint one of them lacks.
/// Fewer than 64 endpoints missing from a segment always show; as many
/// missing on each side show but once in 1,024 segments (the ring sweep
/// still finds them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Summary(pub [u16; SUMMARY_SEGMENTS]);

impl Default for Summary {
    fn default() -> Self {
        Summary([0; SUMMARY_SEGMENTS])
    }
}

impl Summary {
    /// The segment `position` lies in.
    pub fn segment(position: u32) -> usize {
        (position >> 26) as usize
    }

    /// The first position of segment `segment` (taken modulo the segments).
    pub fn segment_start(segment: usize) -> u32 {
        ((segment % SUMMARY_SEGMENTS) as u32) << 26
    }

    /// Adds the endpoint at `position`.
    pub fn add(&mut self, position: u32) {
        if let Some(s) = self.0.get_mut(Self::segment(position)) {
            let count = (*s >> 10).wrapping_add(1) & 0x3f;
            *s = (count << 10) | ((*s ^ Self::fingerprint(position)) & 0x3ff);
        }
    }

    /// Takes the endpoint at `position` out again.
    pub fn remove(&mut self, position: u32) {
        if let Some(s) = self.0.get_mut(Self::segment(position)) {
            let count = (*s >> 10).wrapping_sub(1) & 0x3f;
            *s = (count << 10) | ((*s ^ Self::fingerprint(position)) & 0x3ff);
        }
    }

    /// Ten bits of `position`, mixed.
    fn fingerprint(position: u32) -> u16 {
        (position.wrapping_mul(0x9e37_79b1) >> 22) as u16
    }

    /// The first segment where `self` and `other` differ, looking from
    /// segment `from` on around the ring.
    pub fn first_difference(&self, other: &Summary, from: usize) -> Option<usize> {
        (0..SUMMARY_SEGMENTS)
            .map(|k| (from + k) % SUMMARY_SEGMENTS)
            .find(|&s| self.0.get(s) != other.0.get(s))
    }

    /// Its wire form: the segments in order, each little-endian.
    pub fn to_bytes(&self) -> [u8; SUMMARY_BYTES] {
        let mut out = [0u8; SUMMARY_BYTES];
        for (chunk, s) in out.chunks_exact_mut(2).zip(self.0) {
            chunk.copy_from_slice(&s.to_le_bytes());
        }
        out
    }

    /// Reads the wire form.
    pub fn from_wire(bytes: &[u8; SUMMARY_BYTES]) -> Summary {
        let mut summary = Summary::default();
        for (s, chunk) in summary.0.iter_mut().zip(bytes.chunks_exact(2)) {
            if let [lo, hi] = *chunk {
                *s = u16::from_le_bytes([lo, hi]);
            }
        }
        summary
    }
}

/// Hashes a [`Filter`] sets per endpoint.
pub const FILTER_HASHES: u32 = 4;

/// Filter bits a SYN spends per endpoint it covers: with
/// [`FILTER_HASHES`] hashes, about one endpoint in 85 the sender lacks
/// reads as known (a later SYN, with another salt, finds it).
pub const FILTER_BITS_PER_ENDPOINT: usize = 10;

/// The largest filter a SYN carries, in bytes.
pub const MAX_FILTER_BYTES: usize = 1024;

/// A Bloom filter of [`ring_position`]s: which endpoints a SYN's sender
/// knows on its range, in [`FILTER_BITS_PER_ENDPOINT`] bits each where a
/// digest takes about 15 bytes. On the wire: `salt: u32` little-endian,
/// then the bits (8 to [`MAX_FILTER_BYTES`] bytes, a multiple of 8). The
/// salt, new for every SYN, makes each filter's false positives its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Filter<'a> {
    salt: u32,
    bits: &'a [u8],
}

impl<'a> Filter<'a> {
    /// Reads the wire form: `None` when empty.
    pub fn from_wire(raw: &'a [u8]) -> Result<Option<Self>, Error> {
        if raw.is_empty() {
            return Ok(None);
        }
        let (salt, bits) = raw.split_first_chunk::<4>().ok_or(Error::Malformed)?;
        if bits.is_empty() || bits.len() > MAX_FILTER_BYTES || !bits.len().is_multiple_of(8) {
            return Err(Error::Malformed);
        }
        Ok(Some(Filter {
            salt: u32::from_le_bytes(*salt),
            bits,
        }))
    }

    /// A filter over `bits` (written by [`filter_insert`]) with `salt`.
    pub fn new(salt: u32, bits: &'a [u8]) -> Self {
        Filter { salt, bits }
    }

    /// Its salt.
    pub fn salt(&self) -> u32 {
        self.salt
    }

    /// Its bits.
    pub fn bits(&self) -> &'a [u8] {
        self.bits
    }

    /// Whether the endpoint at `position` may be in it (never false for
    /// one that is).
    pub fn contains(&self, position: u32) -> bool {
        filter_probes(self.salt, position, self.bits.len())
            .all(|(byte, mask)| self.bits.get(byte).is_some_and(|b| b & mask != 0))
    }
}

/// Sets the bits of the endpoint at `position` in the filter `bits`
/// salted with `salt`.
pub fn filter_insert(bits: &mut [u8], salt: u32, position: u32) {
    for (byte, mask) in filter_probes(salt, position, bits.len()) {
        if let Some(b) = bits.get_mut(byte) {
            *b |= mask;
        }
    }
}

/// The bits (byte, mask) of `position` in a filter of `len` bytes: double
/// hashing of a 64-bit mix (splitmix64's) of the position and the salt,
/// each probe mapped onto the bits by a multiply, not a division.
fn filter_probes(salt: u32, position: u32, len: usize) -> impl Iterator<Item = (usize, u8)> {
    let mut h = (u64::from(position) << 32 | u64::from(salt)).wrapping_add(0x9e37_79b9_7f4a_7c15);
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    let nbits = (len as u64).saturating_mul(8);
    let (h1, h2) = (h as u32, (h >> 32) as u32 | 1);
    (0..FILTER_HASHES).map(move |i| {
        let bit = (u64::from(h1.wrapping_add(i.wrapping_mul(h2))) * nbits) >> 32;
        ((bit / 8) as usize, 1u8 << (bit % 8))
    })
}

/// A clockwise range `start..=end` of [`ring_position`]s; `start == end + 1`
/// (wrapping) is the whole ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RingRange {
    /// The first position.
    pub start: u32,
    /// The last position.
    pub end: u32,
}

impl RingRange {
    /// The whole ring, starting anywhere.
    pub const WHOLE: RingRange = RingRange {
        start: 0,
        end: u32::MAX,
    };

    /// Whether `position` lies in the range.
    pub fn contains(&self, position: u32) -> bool {
        position.wrapping_sub(self.start) <= self.end.wrapping_sub(self.start)
    }

    /// Whether the range is the whole ring.
    pub fn is_whole(&self) -> bool {
        self.end.wrapping_sub(self.start) == u32::MAX
    }
}

/// Where an endpoint sits on the ring SYNs cover range by range: 32-bit
/// FNV-1a of its family byte (4 or 6), address bytes and big-endian port.
/// Every node computes the same value.
pub fn ring_position(addr: &SocketAddr) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    let mut eat = |bytes: &[u8]| {
        for b in bytes {
            hash ^= u32::from(*b);
            hash = hash.wrapping_mul(0x0100_0193);
        }
    };
    match addr {
        SocketAddr::V4(a) => {
            eat(&[4]);
            eat(&a.ip().octets());
        }
        SocketAddr::V6(a) => {
            eat(&[6]);
            eat(&a.ip().octets());
        }
    }
    eat(&addr.port().to_be_bytes());
    hash
}

/// The body of an ACK.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ack<'a> {
    /// What the ACK's sender wants: for each, everything above the version.
    pub requests: Digests<'a>,
    /// What the ACK's sender has that the SYN's sender lacks.
    pub deltas: Deltas<'a>,
}

/// The body of an ACK2.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ack2<'a> {
    /// Answers to the ACK's requests.
    pub deltas: Deltas<'a>,
}

/// The body of a CATCH-UP datagram: one of a paced burst that answers a SYN
/// whose sender lacks more endpoints on its range than one ACK carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CatchUp<'a> {
    /// Whole endpoints the SYN's sender lacked, in ring order.
    pub deltas: Deltas<'a>,
    /// Where on the ring the receiver's next SYN should start: the first
    /// position of its range the burst has not covered yet (one past the
    /// range once it is covered).
    pub next: u32,
    /// Set on a burst's last datagram when the range is not covered yet:
    /// "ask again now".
    pub more: bool,
}

/// The body of a SHUTDOWN notice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shutdown<'a> {
    /// The sender's own final delta (its STATUS and the highest heartbeat).
    pub delta: Delta<'a>,
}

/// One endpoint's delta as carried by ACK and ACK2.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EndpointDelta<'a> {
    /// The endpoint the delta is about.
    pub endpoint: SocketAddr,
    /// What the sender believes of its liveness.
    pub claim: Claim,
    /// The delta.
    pub delta: Delta<'a>,
}

/// A validated counted list, as decoded from a datagram: an iterator over
/// its items that reads each one again (validated once, by `parse`), with
/// the count left, `Debug` and equality by items.
macro_rules! list_view {
    ($(#[$doc:meta])* $ty:ident, $item:ty, |$rd:ident| $read:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Default)]
        pub struct $ty<'a> {
            bytes: &'a [u8],
            remaining: u32,
        }

        impl<'a> $ty<'a> {
            fn parse(rd: &mut Reader<'a>) -> Result<Self, Error> {
                let count = rd.count(1)?;
                let start = rd.rest();
                for _ in 0..count {
                    let $rd = &mut *rd;
                    $read?;
                }
                let used = start.len() - rd.rest().len();
                Ok(Self {
                    bytes: start.get(..used).ok_or(Error::Malformed)?,
                    remaining: count,
                })
            }

            /// Items left.
            pub fn len(&self) -> usize {
                self.remaining as usize
            }

            /// Whether none are left.
            pub fn is_empty(&self) -> bool {
                self.remaining == 0
            }
        }

        impl<'a> Iterator for $ty<'a> {
            type Item = $item;

            fn next(&mut self) -> Option<$item> {
                if self.remaining == 0 {
                    return None;
                }
                let mut reader = Reader::new(self.bytes);
                let $rd = &mut reader;
                match $read {
                    Ok(item) => {
                        self.bytes = reader.rest();
                        self.remaining -= 1;
                        Some(item)
                    }
                    Err(_) => {
                        self.remaining = 0;
                        None
                    }
                }
            }

            fn size_hint(&self) -> (usize, Option<usize>) {
                (0, Some(self.remaining as usize))
            }
        }

        impl fmt::Debug for $ty<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_list().entries(*self).finish()
            }
        }

        impl PartialEq for $ty<'_> {
            fn eq(&self, other: &Self) -> bool {
                self.len() == other.len() && self.zip(*other).all(|(a, b)| a == b)
            }
        }

        impl Eq for $ty<'_> {}
    };
}

list_view!(
    /// A validated list of digests: an iterator over [`GossipDigest`].
    Digests,
    GossipDigest,
    |rd| rd.digest().map_err(Error::from)
);

list_view!(
    /// A validated list of rumors: an iterator over [`Rumor`].
    Rumors,
    Rumor,
    |rd| rd.rumor().map_err(Error::from)
);

list_view!(
    /// A validated list of endpoint deltas: an iterator over
    /// [`EndpointDelta`].
    Deltas,
    EndpointDelta<'a>,
    |rd| take_endpoint_delta(rd)
);

impl<'a> Digests<'a> {
    /// A list already validated: `count` digests encoded in `bytes`.
    pub(crate) fn from_validated(bytes: &'a [u8], count: u32) -> Self {
        Self {
            bytes,
            remaining: count,
        }
    }

    /// The encoded digests left (validated).
    pub(crate) fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }
}

/// Why a datagram was not decoded (or a message not encoded). Decoding is pure:
/// in every case no state anywhere changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// Shorter than a header (or than its authentication trailer claims).
    Truncated,
    /// The first two bytes are not [`MAGIC`].
    BadMagic,
    /// Another protocol version.
    UnsupportedVersion(u8),
    /// Flag bits this build does not know.
    UnsupportedFlags(u8),
    /// From another cluster.
    OtherCluster(ClusterId),
    /// A message kind this build does not know (skipped, not fatal).
    UnknownKind(u8),
    /// The sender address or the body does not parse.
    Malformed,
    /// Bytes left over after the body.
    TrailingBytes,
    /// Encoding: the buffer cannot hold even an empty message.
    BufferTooSmall,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Truncated => f.write_str("datagram truncated"),
            Error::BadMagic => f.write_str("not a gossip datagram (bad magic)"),
            Error::UnsupportedVersion(v) => write!(f, "unsupported protocol version {v}"),
            Error::UnsupportedFlags(v) => write!(f, "unsupported flags {v:#04x}"),
            Error::OtherCluster(c) => write!(f, "datagram from another cluster ({c})"),
            Error::UnknownKind(k) => write!(f, "unknown message kind {k}"),
            Error::Malformed => f.write_str("malformed message body"),
            Error::TrailingBytes => f.write_str("trailing bytes after message"),
            Error::BufferTooSmall => f.write_str("buffer too small for the message"),
        }
    }
}

impl core::error::Error for Error {}

impl From<codec::Malformed> for Error {
    fn from(_: codec::Malformed) -> Self {
        Error::Malformed
    }
}

/// Decodes one datagram of cluster `cluster`.
///
/// Checks, in order: length, magic, protocol version, flags (and the
/// authentication trailer's length), cluster, kind, then parses and validates
/// the whole body (UTF-8 of user keys included) and rejects trailing bytes.
/// The returned views iterate without re-validating.
pub fn decode(datagram: &[u8], cluster: ClusterId) -> Result<Datagram<'_>, Error> {
    let Some((prefix, rest)) = datagram.split_first_chunk::<PREFIX_LEN>() else {
        return Err(Error::Truncated);
    };
    let [m0, m1, version, flags, c0, c1, c2, c3, kind] = *prefix;
    if [m0, m1] != MAGIC {
        return Err(Error::BadMagic);
    }
    if version != PROTOCOL_VERSION {
        return Err(Error::UnsupportedVersion(version));
    }
    if flags & !FLAG_AUTH != 0 {
        return Err(Error::UnsupportedFlags(flags));
    }
    let (rest, auth_tag) = if flags & FLAG_AUTH != 0 {
        let (&tag_len, rest) = rest.split_last().ok_or(Error::Truncated)?;
        let body_len = rest
            .len()
            .checked_sub(usize::from(tag_len))
            .ok_or(Error::Truncated)?;
        let (body, tag) = rest.split_at(body_len);
        (body, Some(tag))
    } else {
        (rest, None)
    };
    let sent_cluster = ClusterId(u32::from_le_bytes([c0, c1, c2, c3]));
    if sent_cluster != cluster {
        return Err(Error::OtherCluster(sent_cluster));
    }
    let kind = Kind::from_code(kind).ok_or(Error::UnknownKind(kind))?;
    let mut rd = Reader::new(rest);
    let sender = rd.addr()?;
    let rumors = Rumors::parse(&mut rd)?;
    let message = match kind {
        Kind::Syn => {
            let digests = Digests::parse(&mut rd)?;
            let start = rd.u32()?;
            let end = rd.u32()?;
            let raw = rd.bytes()?;
            let summary = match raw.len() {
                0 => None,
                _ => Some(<&[u8; SUMMARY_BYTES]>::try_from(raw).map_err(|_| Error::Malformed)?),
            };
            let filter = Filter::from_wire(rd.bytes()?)?;
            Message::Syn(Syn {
                digests,
                range: RingRange { start, end },
                summary,
                filter,
            })
        }
        Kind::Ack => {
            let requests = Digests::parse(&mut rd)?;
            let deltas = Deltas::parse(&mut rd)?;
            Message::Ack(Ack { requests, deltas })
        }
        Kind::Ack2 => Message::Ack2(Ack2 {
            deltas: Deltas::parse(&mut rd)?,
        }),
        Kind::Shutdown => Message::Shutdown(Shutdown {
            delta: take_delta_body(&mut rd)?,
        }),
        Kind::CatchUp => {
            let deltas = Deltas::parse(&mut rd)?;
            let next = rd.u32()?;
            let more = match rd.u32()? {
                0 => false,
                1 => true,
                _ => return Err(Error::Malformed),
            };
            Message::CatchUp(CatchUp { deltas, next, more })
        }
        Kind::Ping => Message::Probe(Probe::Ping { seq: rd.u32()? }),
        Kind::PingReq => Message::Probe(Probe::PingReq {
            seq: rd.u32()?,
            target: rd.addr()?,
        }),
        Kind::PingAck => Message::Probe(Probe::PingAck { seq: rd.u32()? }),
        Kind::Nack => Message::Probe(Probe::Nack { seq: rd.u32()? }),
        Kind::News => Message::Probe(Probe::News),
    };
    if !rd.is_empty() {
        return Err(Error::TrailingBytes);
    }
    Ok(Datagram {
        header: Header {
            cluster: sent_cluster,
            sender,
        },
        rumors,
        message,
        auth_tag,
    })
}

fn take_endpoint_delta<'a>(rd: &mut Reader<'a>) -> Result<EndpointDelta<'a>, Error> {
    let endpoint = rd.addr()?;
    let generation = rd.generation()?;
    let claim = rd.claim()?;
    let delta = take_delta_items(rd, generation)?;
    if delta.entries.is_empty() && delta.heartbeat.is_none() {
        return Err(Error::Malformed);
    }
    Ok(EndpointDelta {
        endpoint,
        claim,
        delta,
    })
}

fn take_delta_body<'a>(rd: &mut Reader<'a>) -> Result<Delta<'a>, Error> {
    let generation = rd.generation()?;
    take_delta_items(rd, generation)
}

fn take_delta_items<'a>(rd: &mut Reader<'a>, generation: Generation) -> Result<Delta<'a>, Error> {
    let count = rd.count(1)?;
    let entries = Entries::parse(rd, count)?;
    let heartbeat = rd.option_version()?;
    Ok(Delta {
        generation,
        heartbeat,
        entries,
    })
}

#[cfg(test)]
mod tests;
