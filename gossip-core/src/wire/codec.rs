//! Byte-level helpers shared by the message writers, the message views and the
//! endpoint-state storage (which keeps its entries in the wire encoding).
//!
//! Everything here is bounds-checked: a write that does not fit reports
//! [`Full`] and leaves the logical position unchanged; a read that does not
//! parse reports [`Malformed`]. Nothing panics.

#[cfg(test)]
#[cfg(test)]
use serde::{Deserialize, Serialize};

use core::net::SocketAddr;

use crate::claim::Claim;
use crate::state::{Generation, StateKey, Version, VersionedValue};
use crate::wire::{GossipDigest, Rumor};

/// A write did not fit the space left.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Full;

/// Bytes did not parse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Malformed;

/// Room kept for a list's element count while the list is written: a varint of
/// three bytes counts up to 2^21 - 1 elements, more than a 64 KiB datagram holds.
pub(crate) const COUNT_RESERVE: usize = 3;

/// A cursor that writes postcard values into a caller's buffer, never past
/// `limit`.
pub(crate) struct Cursor<'b> {
    buf: &'b mut [u8],
    pos: usize,
    limit: usize,
}

impl<'b> Cursor<'b> {
    pub(crate) fn new(buf: &'b mut [u8]) -> Self {
        let limit = buf.len();
        Self { buf, pos: 0, limit }
    }

    /// Bytes written so far.
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    /// Forgets everything written after `pos` (used to roll back a partial item).
    pub(crate) fn rewind(&mut self, pos: usize) {
        if pos <= self.pos {
            self.pos = pos;
        }
    }

    /// Lowers (or raises, up to the buffer's end) the limit writes may reach.
    pub(crate) fn set_limit(&mut self, limit: usize) {
        self.limit = limit.min(self.buf.len());
    }

    /// The current limit.
    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    /// The buffer's full length.
    pub(crate) fn capacity(&self) -> usize {
        self.buf.len()
    }

    /// Writes raw bytes.
    pub(crate) fn raw(&mut self, bytes: &[u8]) -> Result<(), Full> {
        let end = self.pos.checked_add(bytes.len()).ok_or(Full)?;
        if end > self.limit {
            return Err(Full);
        }
        self.buf
            .get_mut(self.pos..end)
            .ok_or(Full)?
            .copy_from_slice(bytes);
        self.pos = end;
        Ok(())
    }

    // Hand-written writers for what every SYN, ACK and ACK2 is made of
    // (varints, addresses, digests, byte strings): the same bytes postcard
    // writes (`fast_writers_agree_with_postcard` holds them to it), without
    // a serializer or a library copy per field of a few bytes.

    /// One byte.
    fn byte(&mut self, b: u8) -> Result<(), Full> {
        if self.pos >= self.limit {
            return Err(Full);
        }
        *self.buf.get_mut(self.pos).ok_or(Full)? = b;
        self.pos += 1;
        Ok(())
    }

    /// An unsigned LEB128 varint, as postcard writes every unsigned integer
    /// wider than a byte. On `Full` the position may have moved: callers
    /// roll back to a mark.
    pub(crate) fn put_varint(&mut self, mut v: u64) -> Result<(), Full> {
        while v >= 0x80 {
            self.byte((v as u8) | 0x80)?;
            v >>= 7;
        }
        self.byte(v as u8)
    }

    /// Raw bytes, copied byte by byte when few (a library copy costs more
    /// than it moves for an address).
    fn small(&mut self, bytes: &[u8]) -> Result<(), Full> {
        let end = self.pos.checked_add(bytes.len()).ok_or(Full)?;
        if end > self.limit {
            return Err(Full);
        }
        let room = self.buf.get_mut(self.pos..end).ok_or(Full)?;
        for (d, s) in room.iter_mut().zip(bytes) {
            *d = *s;
        }
        self.pos = end;
        Ok(())
    }

    /// A socket address: the variant (0: V4, 1: V6), the IP's bytes, the
    /// port (postcard's encoding of `SocketAddr`; a V6 address's flow info
    /// and scope id are not part of it).
    pub(crate) fn put_addr(&mut self, addr: &SocketAddr) -> Result<(), Full> {
        match addr {
            SocketAddr::V4(a) => {
                self.byte(0)?;
                self.small(&a.ip().octets())?;
            }
            SocketAddr::V6(a) => {
                self.byte(1)?;
                self.small(&a.ip().octets())?;
            }
        }
        self.put_varint(u64::from(addr.port()))
    }

    /// A digest: endpoint, generation, max version, claim.
    pub(crate) fn put_digest(&mut self, d: &GossipDigest) -> Result<(), Full> {
        self.put_addr(&d.endpoint)?;
        self.put_varint(d.generation.0)?;
        self.put_varint(d.max_version.0)?;
        self.put_varint(d.claim.key())
    }

    /// A rumor: endpoint, generation, claim.
    pub(crate) fn put_rumor(&mut self, r: &Rumor) -> Result<(), Full> {
        self.put_addr(&r.endpoint)?;
        self.put_varint(r.generation.0)?;
        self.put_varint(r.claim.key())
    }

    /// A byte string: varint length, bytes.
    pub(crate) fn put_bytes(&mut self, bytes: &[u8]) -> Result<(), Full> {
        self.put_varint(bytes.len() as u64)?;
        self.raw(bytes)
    }

    /// An `Option<u64>`: a tag byte, then the value.
    pub(crate) fn put_option_u64(&mut self, v: Option<u64>) -> Result<(), Full> {
        match v {
            None => self.byte(0),
            Some(v) => {
                self.byte(1)?;
                self.put_varint(v)
            }
        }
    }

    /// Starts a counted list: reserves [`COUNT_RESERVE`] bytes for the count.
    pub(crate) fn begin_list(&mut self) -> Result<usize, Full> {
        let start = self.pos;
        self.raw(&[0; COUNT_RESERVE])?;
        Ok(start)
    }

    /// Ends a list started at `start` with `count` elements: writes the count as
    /// a minimal varint and moves the elements down over the unused reserve, so
    /// the encoding is canonical.
    pub(crate) fn end_list(&mut self, start: usize, count: u32) -> Result<(), Full> {
        let mut tmp = [0u8; 5];
        let n = {
            let mut c = Cursor::new(&mut tmp);
            c.put_varint(u64::from(count))?;
            c.pos()
        };
        if n > COUNT_RESERVE {
            return Err(Full);
        }
        let body_start = start.checked_add(COUNT_RESERVE).ok_or(Full)?;
        if body_start > self.pos {
            return Err(Full);
        }
        let slot = self.buf.get_mut(start..start + n).ok_or(Full)?;
        slot.copy_from_slice(tmp.get(..n).ok_or(Full)?);
        let shift = COUNT_RESERVE - n;
        if shift > 0 {
            self.buf.copy_within(body_start..self.pos, start + n);
            self.pos -= shift;
        }
        Ok(())
    }
}

/// A reader over borrowed bytes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self { rest: bytes }
    }

    pub(crate) fn rest(&self) -> &'a [u8] {
        self.rest
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// Reads one postcard-encoded value (the reference the hand-written
    /// readers are tested against).
    #[cfg(test)]
    pub(crate) fn take<T: Deserialize<'a>>(&mut self) -> Result<T, Malformed> {
        let (value, rest) = postcard::take_from_bytes(self.rest).map_err(|_| Malformed)?;
        self.rest = rest;
        Ok(value)
    }

    // Hand-written readers for the types on the hot paths (digests, deltas,
    // entries). Each accepts exactly what postcard's deserializer accepts
    // (overlong varints included) and gives the same value; the
    // `fast_readers_agree_with_postcard` test holds them to it.

    fn byte(&mut self) -> Result<u8, Malformed> {
        let (&b, rest) = self.rest.split_first().ok_or(Malformed)?;
        self.rest = rest;
        Ok(b)
    }

    /// An unsigned LEB128 varint of at most `max_len` bytes, whose last byte
    /// holds at most `last_max` (the bits left of the type).
    fn varint(&mut self, max_len: usize, last_max: u8) -> Result<u64, Malformed> {
        let mut out = 0u64;
        for i in 0..max_len {
            let b = self.byte()?;
            out |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                if i == max_len - 1 && b > last_max {
                    return Err(Malformed);
                }
                return Ok(out);
            }
        }
        Err(Malformed)
    }

    pub(crate) fn u16(&mut self) -> Result<u16, Malformed> {
        self.varint(3, 0x03).map(|v| v as u16)
    }

    pub(crate) fn u32(&mut self) -> Result<u32, Malformed> {
        self.varint(5, 0x0f).map(|v| v as u32)
    }

    pub(crate) fn u64(&mut self) -> Result<u64, Malformed> {
        self.varint(10, 0x01)
    }

    fn usize(&mut self) -> Result<usize, Malformed> {
        #[cfg(target_pointer_width = "64")]
        let n = self.u64()?;
        #[cfg(not(target_pointer_width = "64"))]
        let n = u64::from(self.u32()?);
        usize::try_from(n).map_err(|_| Malformed)
    }

    /// A byte string (varint length, bytes).
    pub(crate) fn bytes(&mut self) -> Result<&'a [u8], Malformed> {
        let len = self.usize()?;
        if len > self.rest.len() {
            return Err(Malformed);
        }
        let (bytes, rest) = self.rest.split_at(len);
        self.rest = rest;
        Ok(bytes)
    }

    /// A UTF-8 string.
    pub(crate) fn str(&mut self) -> Result<&'a str, Malformed> {
        core::str::from_utf8(self.bytes()?).map_err(|_| Malformed)
    }

    /// A generation: 32 bits at most (a wider varint is malformed).
    pub(crate) fn generation(&mut self) -> Result<Generation, Malformed> {
        self.u32().map(|g| Generation(u64::from(g)))
    }

    /// A version: 32 bits at most (a wider varint is malformed).
    pub(crate) fn version(&mut self) -> Result<Version, Malformed> {
        self.u32().map(|v| Version(u64::from(v)))
    }

    /// An optional version (a tag byte 0 or 1, then the version).
    pub(crate) fn option_version(&mut self) -> Result<Option<Version>, Malformed> {
        match self.byte()? {
            0 => Ok(None),
            1 => self.version().map(Some),
            _ => Err(Malformed),
        }
    }

    /// An `Option<u64>` (a tag byte 0 or 1, then the value).
    #[cfg(test)]
    pub(crate) fn option_u64(&mut self) -> Result<Option<u64>, Malformed> {
        match self.byte()? {
            0 => Ok(None),
            1 => self.u64().map(Some),
            _ => Err(Malformed),
        }
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Malformed> {
        if self.rest.len() < N {
            return Err(Malformed);
        }
        let (bytes, rest) = self.rest.split_at(N);
        self.rest = rest;
        bytes.try_into().map_err(|_| Malformed)
    }

    /// A socket address: variant 0 (IPv4: 4 octets, port) or 1 (IPv6: 16
    /// octets, port), as serde writes it for binary formats.
    pub(crate) fn addr(&mut self) -> Result<SocketAddr, Malformed> {
        match self.u32()? {
            0 => {
                let ip = self.array::<4>()?;
                let port = self.u16()?;
                Ok(SocketAddr::from((ip, port)))
            }
            1 => {
                let ip = self.array::<16>()?;
                let port = self.u16()?;
                Ok(SocketAddr::from((ip, port)))
            }
            _ => Err(Malformed),
        }
    }

    /// A digest: endpoint, generation, max version, claim.
    pub(crate) fn digest(&mut self) -> Result<GossipDigest, Malformed> {
        Ok(GossipDigest {
            endpoint: self.addr()?,
            generation: self.generation()?,
            max_version: self.version()?,
            claim: self.claim()?,
        })
    }

    /// A claim: its key as a varint.
    pub(crate) fn claim(&mut self) -> Result<Claim, Malformed> {
        Claim::from_key(self.u64()?).ok_or(Malformed)
    }

    /// A rumor: endpoint, generation, claim.
    pub(crate) fn rumor(&mut self) -> Result<Rumor, Malformed> {
        Ok(Rumor {
            endpoint: self.addr()?,
            generation: self.generation()?,
            claim: self.claim()?,
        })
    }

    /// Reads a list count and checks it is plausible: every element takes at
    /// least `min_item` bytes, so a count larger than the bytes left is hostile.
    pub(crate) fn count(&mut self, min_item: usize) -> Result<u32, Malformed> {
        let count = self.u32()?;
        let needed = (count as usize).checked_mul(min_item).ok_or(Malformed)?;
        if needed > self.rest.len() {
            return Err(Malformed);
        }
        Ok(count)
    }
}

/// The wire code of a user-defined key (followed by the key's UTF-8 name).
pub(crate) const USER_KEY_CODE: u16 = 0;

/// Writes a state key: a varint code, and for user keys the name as a
/// postcard string.
pub(crate) fn put_key(cur: &mut Cursor<'_>, key: &StateKey<'_>) -> Result<(), Full> {
    match key {
        StateKey::User(name) => {
            cur.put_varint(u64::from(USER_KEY_CODE))?;
            cur.put_bytes(name.as_bytes())
        }
        other => cur.put_varint(u64::from(other.code())),
    }
}

/// Reads a state key.
pub(crate) fn take_key<'a>(rd: &mut Reader<'a>) -> Result<StateKey<'a>, Malformed> {
    let code = rd.u16()?;
    if code == USER_KEY_CODE {
        let name = rd.str()?;
        Ok(StateKey::User(name))
    } else {
        Ok(StateKey::from_code(code))
    }
}

/// Writes one entry `(key, version, value)`.
pub(crate) fn put_entry(
    cur: &mut Cursor<'_>,
    key: &StateKey<'_>,
    value: &VersionedValue<'_>,
) -> Result<(), Full> {
    let start = cur.pos();
    let res = put_key(cur, key)
        .and_then(|()| cur.put_varint(value.version.0))
        .and_then(|()| cur.put_bytes(value.value));
    if res.is_err() {
        cur.rewind(start);
    }
    res
}

/// Reads one entry.
pub(crate) fn take_entry<'a>(
    rd: &mut Reader<'a>,
) -> Result<(StateKey<'a>, VersionedValue<'a>), Malformed> {
    let key = take_key(rd)?;
    let version = rd.version()?;
    let value = rd.bytes()?;
    Ok((key, VersionedValue { version, value }))
}

/// The encoded size of one entry.
pub(crate) fn entry_len(key: &StateKey<'_>, value: &VersionedValue<'_>) -> usize {
    let key_len = match key {
        StateKey::User(name) => varint_len(u64::from(USER_KEY_CODE)) + bytes_len(name.len()),
        other => varint_len(u64::from(other.code())),
    };
    key_len + varint_len(value.version.0) + bytes_len(value.value.len())
}

/// The size of a postcard byte string (or string) of `len` bytes.
pub(crate) fn bytes_len(len: usize) -> usize {
    varint_len(len as u64).saturating_add(len)
}

/// The size of an unsigned LEB128 varint.
pub(crate) fn varint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

/// Serializes a byte slice as a postcard byte string (varint length, bytes).
#[cfg(test)]
struct Bytes<'a>(&'a [u8]);

#[cfg(test)]
impl Serialize for Bytes<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use std::vec::Vec;

    use rand_core::{Rng, SeedableRng};

    use super::*;
    use crate::state::ApplicationState;

    /// `fast` and postcard agree on `bytes`: the same value and the same
    /// bytes left, or both refuse.
    fn agree<'a, T>(bytes: &'a [u8], fast: impl Fn(&mut Reader<'a>) -> Result<T, Malformed>)
    where
        T: Deserialize<'a> + PartialEq + core::fmt::Debug,
    {
        let mut a = Reader::new(bytes);
        let mut b = Reader::new(bytes);
        let (x, y) = (fast(&mut a), b.take::<T>());
        assert_eq!(x, y, "on {bytes:02x?}");
        if x.is_ok() {
            assert_eq!(a.rest(), b.rest(), "on {bytes:02x?}");
        }
    }

    #[test]
    fn fast_readers_agree_with_postcard() {
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(11);
        // Varint edges: every length, continuation bits, the largest last
        // bytes each width allows, overlong forms.
        let mut inputs: Vec<Vec<u8>> = std::vec![
            std::vec![],
            std::vec![0x00],
            std::vec![0x7f],
            std::vec![0x80, 0x00],
            std::vec![0xff, 0xff, 0x03],
            std::vec![0xff, 0xff, 0x04],
            std::vec![0xff, 0xff, 0xff, 0xff, 0x0f],
            std::vec![0xff, 0xff, 0xff, 0xff, 0x10],
            std::vec![0xff; 9].into_iter().chain([0x01]).collect(),
            std::vec![0xff; 9].into_iter().chain([0x02]).collect(),
            std::vec![0xff; 11],
            std::vec![0x01, 0x05],
            std::vec![0x02, 0x05],
            std::vec![0x03, 0xc3, 0xa9, 0x41],
            std::vec![0x02, 0xc3, 0x28],
        ];
        for _ in 0..20_000 {
            let len = (rng.next_u32() % 24) as usize;
            let mut v: Vec<u8> = (0..len).map(|_| rng.next_u32() as u8).collect();
            // Small leading values reach the variants and short strings.
            if let Some(first) = v.first_mut()
                && rng.next_u32() % 2 == 0
            {
                *first %= 4;
            }
            inputs.push(v);
        }
        for bytes in &inputs {
            agree::<u16>(bytes, |r| r.u16());
            agree::<u32>(bytes, |r| r.u32());
            agree::<u64>(bytes, |r| r.u64());
            agree::<&[u8]>(bytes, |r| r.bytes());
            agree::<&str>(bytes, |r| r.str());
            agree::<Option<u64>>(bytes, |r| r.option_u64());
            agree::<SocketAddr>(bytes, |r| r.addr());
            // Postcard reads 64-bit generations and versions; ours are
            // 32-bit and refuse wider ones.
            let ours = Reader::new(bytes).digest();
            match Reader::new(bytes).take::<GossipDigest>() {
                Ok(d)
                    if d.generation.0 <= u64::from(u32::MAX)
                        && d.max_version.0 <= u64::from(u32::MAX) =>
                {
                    agree::<GossipDigest>(bytes, |r| r.digest());
                }
                Ok(_) => assert_eq!(ours, Err(Malformed), "on {bytes:02x?}"),
                Err(_) => assert!(ours.is_err(), "on {bytes:02x?}"),
            }
        }
    }

    /// `fast` writes what postcard writes for `value`, or both run out of
    /// room.
    fn same_bytes<T: Serialize + ?Sized>(
        value: &T,
        fast: impl Fn(&mut Cursor<'_>) -> Result<(), Full>,
    ) {
        for room in [0usize, 1, 3, 7, 12, 64] {
            let mut a = [0u8; 64];
            let mut b = [0u8; 64];
            let mut cur = Cursor::new(&mut a[..room]);
            let x = fast(&mut cur).map(|()| cur.pos());
            let y = postcard::to_slice(value, &mut b[..room])
                .map(|w| w.len())
                .ok();
            assert_eq!(x.ok(), y, "room {room}");
            if let Some(n) = y {
                assert_eq!(&a[..n], &b[..n], "room {room}");
            }
        }
    }

    #[test]
    fn fast_writers_agree_with_postcard() {
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(13);
        for _ in 0..5_000 {
            let bits = rng.next_u32() % 65;
            let v = if bits == 64 {
                rng.next_u64()
            } else {
                rng.next_u64() & ((1u64 << bits) - 1)
            };
            same_bytes(&v, |c| c.put_varint(v));
            let port = rng.next_u32() as u16;
            let addr = if rng.next_u32() % 2 == 0 {
                SocketAddr::from((rng.next_u32().to_be_bytes(), port))
            } else {
                let mut ip = [0u8; 16];
                rng.fill_bytes(&mut ip);
                SocketAddr::from((ip, port))
            };
            same_bytes(&addr, |c| c.put_addr(&addr));
            let d = GossipDigest {
                endpoint: addr,
                generation: Generation(v),
                max_version: Version(rng.next_u64() >> (rng.next_u32() % 64)),
                claim: Default::default(),
            };
            same_bytes(&d, |c| c.put_digest(&d));
            let len = (rng.next_u32() % 40) as usize;
            let bytes: Vec<u8> = (0..len).map(|_| rng.next_u32() as u8).collect();
            same_bytes(&Bytes(&bytes), |c| c.put_bytes(&bytes));
            let o = (rng.next_u32() % 2 == 0).then_some(v);
            same_bytes(&o, |c| c.put_option_u64(o));
        }
    }

    #[test]
    fn entry_len_matches_encoding() {
        let cases: [(StateKey<'_>, u64, &[u8]); 4] = [
            (StateKey::Known(ApplicationState::Status), 0, b""),
            (StateKey::User("k"), 300, &[7; 200]),
            (StateKey::Unknown(999), u64::from(u32::MAX), b"xyz"),
            (StateKey::User(""), 127, b"v"),
        ];
        for (key, version, value) in cases {
            let vv = VersionedValue {
                version: Version(version),
                value,
            };
            let mut buf = [0u8; 512];
            let mut cur = Cursor::new(&mut buf);
            put_entry(&mut cur, &key, &vv).unwrap();
            assert_eq!(cur.pos(), entry_len(&key, &vv));
            let mut rd = Reader::new(&buf[..entry_len(&key, &vv)]);
            assert_eq!(take_entry(&mut rd).unwrap(), (key, vv));
            assert!(rd.is_empty());
        }
    }

    #[test]
    fn list_count_is_minimal() {
        for count in [0u32, 1, 127, 128, 300, 16_383, 16_384] {
            let mut buf = [0u8; 64];
            let mut cur = Cursor::new(&mut buf);
            let start = cur.begin_list().unwrap();
            cur.raw(&[0xAA, 0xBB]).unwrap();
            cur.end_list(start, count).unwrap();
            let n = varint_len(u64::from(count));
            assert_eq!(cur.pos(), n + 2);
            let mut rd = Reader::new(&buf[..n + 2]);
            assert_eq!(rd.take::<u32>().unwrap(), count);
            assert_eq!(rd.rest(), &[0xAA, 0xBB]);
        }
    }

    #[test]
    fn failed_entry_write_rolls_back() {
        let mut buf = [0u8; 8];
        let mut cur = Cursor::new(&mut buf);
        cur.raw(&[1, 2]).unwrap();
        let vv = VersionedValue {
            version: Version(1),
            value: &[0; 16],
        };
        assert_eq!(put_entry(&mut cur, &StateKey::User("abc"), &vv), Err(Full));
        assert_eq!(cur.pos(), 2);
    }
}
