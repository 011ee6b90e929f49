//! Message writers: fill a caller's buffer with as many digests and deltas as
//! fit, in the order given, and never write past it.

use core::net::SocketAddr;

use super::codec::{self, COUNT_RESERVE, Cursor};
use super::{
    Error, GossipDigest, Header, Kind, MAGIC, PROTOCOL_VERSION, Probe, RingRange, Rumor,
    SUMMARY_BYTES, Summary,
};
use crate::claim::Claim;
use crate::state::{DeltaItem, Generation, Version};

/// The most elements one list may hold: what a [`COUNT_RESERVE`]-byte varint
/// counts.
const MAX_LIST_LEN: u32 = (1 << 21) - 1;

/// Room kept at the end of a SYN for its ring range: two 32-bit varints.
const RANGE_RESERVE: usize = 10;

/// Room kept at the end of a delta for its heartbeat: an option tag and a
/// 64-bit varint.
const HEARTBEAT_RESERVE: usize = 1 + 10;

/// Writes a SYN: header and rumors, then as many digests as fit.
///
/// ```
/// use gossip_core::wire::{self, ClusterId, GossipDigest, Header, Message, RingRange, SynWriter};
/// use gossip_core::state::{Generation, Version};
///
/// let header = Header { cluster: ClusterId::from_name("demo"), sender: "127.0.0.1:7000".parse().unwrap() };
/// let mut buf = [0u8; 1400];
/// let mut syn = SynWriter::new(&mut buf, &header, &[]).unwrap();
/// assert!(syn.push(&GossipDigest {
///     endpoint: "127.0.0.2:7000".parse().unwrap(),
///     generation: Generation(1_700_000_000),
///     max_version: Version(42),
///     claim: Default::default(),
/// }));
/// let len = syn.finish(RingRange::WHOLE);
/// let datagram = wire::decode(&buf[..len], header.cluster).unwrap();
/// assert!(matches!(datagram.message, Message::Syn(s) if s.digests.len() == 1 && s.range.is_whole()));
/// ```
pub struct SynWriter<'b> {
    cur: Cursor<'b>,
    list: List,
    summary: Option<Summary>,
}

impl<'b> SynWriter<'b> {
    /// Writes the header and `rumors` into `buf`. Fails when not even an
    /// empty SYN fits. The SYN carries no membership summary.
    pub fn new(buf: &'b mut [u8], header: &Header, rumors: &[Rumor]) -> Result<Self, Error> {
        Self::start(buf, header, rumors, None)
    }

    /// As [`new`](Self::new), for a SYN that carries `summary` after its
    /// ring range.
    pub fn with_summary(
        buf: &'b mut [u8],
        header: &Header,
        rumors: &[Rumor],
        summary: &Summary,
    ) -> Result<Self, Error> {
        Self::start(buf, header, rumors, Some(*summary))
    }

    fn start(
        buf: &'b mut [u8],
        header: &Header,
        rumors: &[Rumor],
        summary: Option<Summary>,
    ) -> Result<Self, Error> {
        let mut cur = Cursor::new(buf);
        write_header(&mut cur, header, Kind::Syn, rumors)?;
        let list = List::begin(&mut cur)?;
        // Keep room for the ring range and the summary.
        let summary_len = summary.map_or(0, |_| SUMMARY_BYTES);
        reserve_tail(&mut cur, RANGE_RESERVE + 3 + summary_len)?;
        Ok(Self { cur, list, summary })
    }

    /// Adds a digest if it fits; returns whether it did.
    pub fn push(&mut self, digest: &GossipDigest) -> bool {
        self.list.push(&mut self.cur, |cur| cur.put_digest(digest))
    }

    /// Digests written so far.
    pub fn count(&self) -> usize {
        self.list.count as usize
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.cur.pos()
    }

    /// Whether nothing was written (never: the header is written by `new`).
    pub fn is_empty(&self) -> bool {
        self.cur.pos() == 0
    }

    /// Keeps room for a [`Filter`](super::Filter) of up to `max` bytes
    /// after the digests (those pushed so far stay); returns its size, a
    /// multiple of 8 (0: no room).
    pub fn reserve_filter(&mut self, max: usize) -> usize {
        // Its length varint (2 bytes) and salt.
        let room = self.cur.limit().saturating_sub(self.cur.pos() + 6);
        let len = room.min(max).min(super::MAX_FILTER_BYTES) / 8 * 8;
        if len == 0 || reserve_tail(&mut self.cur, len + 6).is_err() {
            return 0;
        }
        len
    }

    /// Finishes the datagram, saying which part of the ring the digests
    /// cover completely; returns its length.
    pub fn finish(self, range: RingRange) -> usize {
        self.finish_with_filter(range, None)
    }

    /// As [`finish`](Self::finish), with a filter of what the sender knows
    /// on `range` (its bits no longer than [`reserve_filter`](Self::reserve_filter)
    /// gave), in place of digests.
    pub fn finish_with_filter(
        mut self,
        range: RingRange,
        filter: Option<super::Filter<'_>>,
    ) -> usize {
        self.cur.set_limit(self.cur.capacity());
        match self
            .list
            .end(&mut self.cur)
            .and_then(|()| self.cur.put_varint(u64::from(range.start)))
            .and_then(|()| self.cur.put_varint(u64::from(range.end)))
            .and_then(|()| match &self.summary {
                Some(summary) => self.cur.put_bytes(&summary.to_bytes()),
                None => self.cur.put_bytes(&[]),
            })
            .and_then(|()| match filter {
                Some(f) => self
                    .cur
                    .put_varint((4 + f.bits().len()) as u64)
                    .and_then(|()| self.cur.raw(&f.salt().to_le_bytes()))
                    .and_then(|()| self.cur.raw(f.bits())),
                None => self.cur.put_bytes(&[]),
            }) {
            Ok(()) => self.cur.pos(),
            Err(_) => 0,
        }
    }
}

/// Writes an ACK: header, requests, then deltas. Every request must be pushed
/// before the first delta.
pub struct AckWriter<'b> {
    cur: Cursor<'b>,
    requests: Option<List>,
    request_count: usize,
    deltas: Option<List>,
}

impl<'b> AckWriter<'b> {
    /// Writes the header and `rumors` into `buf`. Fails when not even an
    /// empty ACK fits.
    pub fn new(buf: &'b mut [u8], header: &Header, rumors: &[Rumor]) -> Result<Self, Error> {
        let mut cur = Cursor::new(buf);
        write_header(&mut cur, header, Kind::Ack, rumors)?;
        let requests = List::begin(&mut cur)?;
        // Keep room for the delta list's count.
        reserve_tail(&mut cur, COUNT_RESERVE)?;
        Ok(Self {
            cur,
            requests: Some(requests),
            request_count: 0,
            deltas: None,
        })
    }

    /// Adds a request if it fits and no delta was pushed yet; returns whether
    /// it was added.
    pub fn push_request(&mut self, request: &GossipDigest) -> bool {
        match &mut self.requests {
            Some(list) => list.push(&mut self.cur, |cur| cur.put_digest(request)),
            None => false,
        }
    }

    /// Requests written so far.
    pub fn requests(&self) -> usize {
        match &self.requests {
            Some(list) => list.count as usize,
            None => self.request_count,
        }
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.cur.pos()
    }

    /// Whether nothing was written (never: the header is written by `new`).
    pub fn is_empty(&self) -> bool {
        self.cur.pos() == 0
    }

    /// Finishes the datagram; returns its length.
    pub fn finish(mut self) -> usize {
        if self.deltas.is_none() && self.start_deltas().is_err() {
            return 0;
        }
        match self.deltas.take().map(|list| list.end(&mut self.cur)) {
            Some(Ok(())) => self.cur.pos(),
            _ => 0,
        }
    }

    fn start_deltas(&mut self) -> Result<(), codec::Full> {
        if let Some(requests) = self.requests.take() {
            self.request_count = requests.count as usize;
            requests.end(&mut self.cur)?;
        }
        self.cur.set_limit(self.cur.capacity());
        self.deltas = Some(List::begin(&mut self.cur).map_err(|_| codec::Full)?);
        Ok(())
    }
}

/// Writes an ACK2: header, then deltas.
pub struct Ack2Writer<'b> {
    cur: Cursor<'b>,
    list: List,
}

impl<'b> Ack2Writer<'b> {
    /// Writes the header and `rumors` into `buf`. Fails when not even an
    /// empty ACK2 fits.
    pub fn new(buf: &'b mut [u8], header: &Header, rumors: &[Rumor]) -> Result<Self, Error> {
        let (cur, list) = begin_deltas(buf, header, Kind::Ack2, rumors, 0)?;
        Ok(Self { cur, list })
    }

    /// Finishes the datagram; returns its length.
    pub fn finish(mut self) -> usize {
        match self.list.end(&mut self.cur) {
            Ok(()) => self.cur.pos(),
            Err(_) => 0,
        }
    }
}

/// Writes a SHUTDOWN notice carrying the sender's own final delta (its items
/// in ascending version order, as many as fit). Returns the datagram's length.
pub fn encode_shutdown<'x>(
    buf: &mut [u8],
    header: &Header,
    rumors: &[Rumor],
    generation: Generation,
    items: impl IntoIterator<Item = DeltaItem<'x>>,
) -> Result<usize, Error> {
    let mut cur = Cursor::new(buf);
    write_header(&mut cur, header, Kind::Shutdown, rumors)?;
    cur.put_varint(generation.0)
        .map_err(|_| Error::BufferTooSmall)?;
    write_delta_items(&mut cur, items).map_err(|_| Error::BufferTooSmall)?;
    Ok(cur.pos())
}

/// Writes a PING, PING-REQ, PING-ACK, NACK or NEWS with `rumors`. Returns
/// the datagram's length.
pub fn encode_probe(
    buf: &mut [u8],
    header: &Header,
    rumors: &[Rumor],
    probe: &Probe,
) -> Result<usize, Error> {
    let mut cur = Cursor::new(buf);
    write_header(&mut cur, header, probe.kind(), rumors)?;
    let body = match probe {
        Probe::Ping { seq } | Probe::PingAck { seq } | Probe::Nack { seq } => {
            cur.put_varint(u64::from(*seq))
        }
        Probe::PingReq { seq, target } => cur
            .put_varint(u64::from(*seq))
            .and_then(|()| cur.put_addr(target)),
        Probe::News => Ok(()),
    };
    body.map_err(|_| Error::BufferTooSmall)?;
    Ok(cur.pos())
}

/// The bytes `rumor` takes in a message's rumor list.
pub fn rumor_len(rumor: &Rumor) -> usize {
    let addr = match rumor.endpoint {
        SocketAddr::V4(_) => 1 + 4,
        SocketAddr::V6(_) => 1 + 16,
    };
    addr + codec::varint_len(u64::from(rumor.endpoint.port()))
        + codec::varint_len(rumor.generation.0)
        + codec::varint_len(rumor.claim.key())
}

/// Room kept at the end of a CATCH-UP for `next` and `more`: a 32-bit
/// varint and a byte.
const CATCH_UP_RESERVE: usize = 5 + 1;

/// Writes a CATCH-UP: header and rumors, then as many endpoint deltas as fit,
/// then where the burst got to.
pub struct CatchUpWriter<'b> {
    cur: Cursor<'b>,
    list: List,
}

impl<'b> CatchUpWriter<'b> {
    /// Writes the header and `rumors` into `buf`. Fails when not even an
    /// empty CATCH-UP fits.
    pub fn new(buf: &'b mut [u8], header: &Header, rumors: &[Rumor]) -> Result<Self, Error> {
        let (cur, list) = begin_deltas(buf, header, Kind::CatchUp, rumors, CATCH_UP_RESERVE)?;
        Ok(Self { cur, list })
    }

    /// Finishes the datagram with the receiver's next ring position and
    /// whether it should ask again now; returns its length.
    pub fn finish(mut self, next: u32, more: bool) -> usize {
        self.cur.set_limit(self.cur.capacity());
        match self
            .list
            .end(&mut self.cur)
            .and_then(|()| self.cur.put_varint(u64::from(next)))
            .and_then(|()| self.cur.put_varint(u64::from(more)))
        {
            Ok(()) => self.cur.pos(),
            Err(_) => 0,
        }
    }
}

/// Lowers the cursor's limit by `n` bytes kept for what ends the message.
fn reserve_tail(cur: &mut Cursor<'_>, n: usize) -> Result<(), Error> {
    let limit = cur
        .limit()
        .checked_sub(n)
        .filter(|limit| *limit >= cur.pos())
        .ok_or(Error::BufferTooSmall)?;
    cur.set_limit(limit);
    Ok(())
}

fn write_header(
    cur: &mut Cursor<'_>,
    header: &Header,
    kind: Kind,
    rumors: &[Rumor],
) -> Result<(), Error> {
    let [c0, c1, c2, c3] = header.cluster.0.to_le_bytes();
    let [m0, m1] = MAGIC;
    cur.raw(&[m0, m1, PROTOCOL_VERSION, 0, c0, c1, c2, c3, kind as u8])
        .and_then(|()| cur.put_addr(&header.sender))
        .map_err(|_| Error::BufferTooSmall)?;
    let mut list = List::begin(cur)?;
    for r in rumors {
        if !list.push(cur, |cur| cur.put_rumor(r)) {
            return Err(Error::BufferTooSmall);
        }
    }
    list.end(cur).map_err(|_| Error::BufferTooSmall)
}

/// An open counted list.
struct List {
    start: usize,
    count: u32,
}

impl List {
    fn begin(cur: &mut Cursor<'_>) -> Result<Self, Error> {
        let start = cur.begin_list().map_err(|_| Error::BufferTooSmall)?;
        Ok(Self { start, count: 0 })
    }

    /// Writes one element with `write`; rolls back and returns false if it
    /// does not fit.
    fn push(
        &mut self,
        cur: &mut Cursor<'_>,
        write: impl FnOnce(&mut Cursor<'_>) -> Result<(), codec::Full>,
    ) -> bool {
        if self.count >= MAX_LIST_LEN {
            return false;
        }
        let mark = cur.pos();
        if write(cur).is_err() {
            cur.rewind(mark);
            return false;
        }
        self.count += 1;
        true
    }

    fn end(self, cur: &mut Cursor<'_>) -> Result<(), codec::Full> {
        cur.end_list(self.start, self.count)
    }
}

/// Pushes the delta when at least `need` of its items fit (at least one:
/// an empty delta says nothing); otherwise leaves the message as it was.
fn push_endpoint_delta<'x>(
    cur: &mut Cursor<'_>,
    list: &mut List,
    endpoint: SocketAddr,
    generation: Generation,
    claim: Claim,
    items: impl IntoIterator<Item = DeltaItem<'x>>,
    need: usize,
) -> usize {
    let mut written = 0;
    let pushed = list.push(cur, |cur| {
        cur.put_addr(&endpoint)?;
        cur.put_varint(generation.0)?;
        cur.put_varint(claim.key())?;
        written = write_delta_items(cur, items)?;
        if written < need.max(1) {
            return Err(codec::Full);
        }
        Ok(())
    });
    if pushed { written } else { 0 }
}

/// Starts a delta-only message (ACK2, CATCH-UP): header, rumors, the delta
/// list, and `tail` bytes kept for what ends it.
fn begin_deltas<'b>(
    buf: &'b mut [u8],
    header: &Header,
    kind: Kind,
    rumors: &[Rumor],
    tail: usize,
) -> Result<(Cursor<'b>, List), Error> {
    let mut cur = Cursor::new(buf);
    write_header(&mut cur, header, kind, rumors)?;
    let list = List::begin(&mut cur)?;
    reserve_tail(&mut cur, tail)?;
    Ok((cur, list))
}

/// The delta methods of the writers that carry endpoint deltas (ACK, ACK2,
/// CATCH-UP): `$list` gives the cursor and the open delta list, if any.
macro_rules! delta_writer {
    ($writer:ident, |$w:ident| $list:expr, |$r:ident| $count:expr) => {
        impl $writer<'_> {
            /// Adds one endpoint's delta, with the sender's claim about its
            /// liveness: the items in order (ascending version) until one
            /// does not fit. Returns how many items were written; 0 leaves
            /// the message as it was.
            pub fn push_delta<'x>(
                &mut self,
                endpoint: SocketAddr,
                generation: Generation,
                claim: Claim,
                items: impl IntoIterator<Item = DeltaItem<'x>>,
            ) -> usize {
                self.push_some(endpoint, generation, claim, items, 1)
            }

            /// Adds one endpoint's delta only if all `count` of its items
            /// fit (an endpoint's states and heartbeat: a receiver that
            /// learns it from this message then has all of it). Returns
            /// whether it did; if not, the message is as it was.
            pub fn push_whole_delta<'x>(
                &mut self,
                endpoint: SocketAddr,
                generation: Generation,
                claim: Claim,
                items: impl IntoIterator<Item = DeltaItem<'x>>,
                count: usize,
            ) -> bool {
                self.push_some(endpoint, generation, claim, items, count) > 0
            }

            fn push_some<'x>(
                &mut self,
                endpoint: SocketAddr,
                generation: Generation,
                claim: Claim,
                items: impl IntoIterator<Item = DeltaItem<'x>>,
                need: usize,
            ) -> usize {
                let $w = self;
                let Some((cur, list)) = ($list) else {
                    return 0;
                };
                push_endpoint_delta(cur, list, endpoint, generation, claim, items, need)
            }

            /// Endpoint deltas written so far.
            pub fn deltas(&self) -> usize {
                let $r = self;
                $count
            }

            /// The buffer's size (what one message may take in all).
            pub fn capacity(&self) -> usize {
                self.cur.capacity()
            }
        }
    };
}

delta_writer!(
    AckWriter,
    |w| {
        if w.deltas.is_none() && w.start_deltas().is_err() {
            None
        } else {
            w.deltas.as_mut().map(|list| (&mut w.cur, list))
        }
    },
    |w| w.deltas.as_ref().map_or(0, |list| list.count as usize)
);
delta_writer!(
    Ack2Writer,
    |w| Some((&mut w.cur, &mut w.list)),
    |w| w.list.count as usize
);
delta_writer!(
    CatchUpWriter,
    |w| Some((&mut w.cur, &mut w.list)),
    |w| w.list.count as usize
);

/// Writes `list<Entry>` then `option<heartbeat>` from items in ascending
/// version order, stopping at the first state that does not fit. Returns the
/// number of items written (the heartbeat counts as one).
fn write_delta_items<'x>(
    cur: &mut Cursor<'_>,
    items: impl IntoIterator<Item = DeltaItem<'x>>,
) -> Result<usize, codec::Full> {
    let outer_limit = cur.limit();
    let entries_limit = outer_limit
        .checked_sub(HEARTBEAT_RESERVE)
        .ok_or(codec::Full)?;
    cur.set_limit(entries_limit);
    let list = List::begin(cur).map_err(|_| codec::Full);
    let mut list = match list {
        Ok(list) => list,
        Err(e) => {
            cur.set_limit(outer_limit);
            return Err(e);
        }
    };
    let mut heartbeat: Option<Version> = None;
    for item in items {
        match item {
            DeltaItem::Heartbeat(version) => heartbeat = Some(version),
            DeltaItem::State(key, value) => {
                if !list.push(cur, |cur| codec::put_entry(cur, &key, &value)) {
                    break;
                }
            }
        }
    }
    cur.set_limit(outer_limit);
    let entries = list.count as usize;
    list.end(cur)?;
    cur.put_option_u64(heartbeat.map(|v| v.0))?;
    Ok(entries + usize::from(heartbeat.is_some()))
}
