//! Cluster authentication (feature `auth`): a keyed MAC on every datagram, a
//! key ring for rotation with no downtime, and a per-sender replay window.
//!
//! With a [`Keyring`] installed ([`Node::set_keyring`](crate::Node::set_keyring)),
//! a node seals every datagram it sends and drops every datagram that does
//! not carry a valid seal, before looking at its contents:
//!
//! ```text
//! header (flags bit 0 set) | body | seq: u64 LE | mac: 16 bytes | 24
//! ```
//!
//! `mac` is HMAC-SHA256, truncated to 128 bits, over everything before it
//! (header with its flags, body, `seq`), under the ring's primary key;
//! receivers accept a seal made with any installed key. `seq` starts at the
//! sender's generation times 2³² and grows by one per datagram, so it keeps
//! growing across restarts (the generation does). A receiver keeps, per
//! sender, the highest `seq` seen and which of the 63 below it were seen: a
//! datagram whose `seq` was seen, or is more than 63 below the highest, is a
//! replay and is dropped.
//!
//! Rotation: install the new key on every node (they accept it, still send
//! with the old one), then make it primary everywhere, then remove the old
//! one. At every step every pair of nodes shares a key the sender uses.
//!
//! What this does not do: hide anything (datagrams are authenticated, not
//! encrypted), or tell key holders apart (any holder of a cluster key can
//! speak for any member, as in memberlist). See the threat model in the
//! README.

use core::fmt;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::wire::{FLAG_AUTH, PREFIX_LEN};

/// Key length in bytes.
pub const KEY_LEN: usize = 32;
/// MAC length on the wire, in bytes (HMAC-SHA256 truncated).
pub const MAC_LEN: usize = 16;
/// The sequence number's length on the wire.
pub const SEQ_LEN: usize = 8;
/// What the seal adds to a datagram: `seq`, `mac` and the tag-length byte.
pub const TRAILER_LEN: usize = SEQ_LEN + MAC_LEN + 1;
/// Keys a ring holds at most (a primary and up to three being rotated).
pub const MAX_KEYS: usize = 4;
/// How far below the highest `seq` seen from a sender a datagram may still
/// arrive (reordered) and be accepted once.
pub const REPLAY_WINDOW: u64 = 64;

type HmacSha256 = Hmac<Sha256>;

/// A 32-byte cluster key. Its `Debug` shows a fingerprint, never the key.
#[derive(Clone, PartialEq, Eq)]
pub struct Key([u8; KEY_LEN]);

/// Why key material was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyError {
    /// Neither 32 raw bytes nor 64 hex digits (surrounding whitespace
    /// allowed); 32 hex digits (a 128-bit key as text) are refused too.
    BadLength(usize),
    /// 64 characters, but not all hex digits.
    NotHex,
    /// The ring already holds [`MAX_KEYS`] keys.
    RingFull,
    /// The key is not in the ring.
    NotInstalled,
    /// The primary key cannot be removed: make another primary first.
    IsPrimary,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::BadLength(n) => {
                write!(f, "a key is 32 raw bytes or 64 hex digits, not {n} bytes")
            }
            KeyError::NotHex => f.write_str("a 64-character key must be hex digits"),
            KeyError::RingFull => write!(f, "the key ring holds at most {MAX_KEYS} keys"),
            KeyError::NotInstalled => f.write_str("no such key in the ring"),
            KeyError::IsPrimary => f.write_str("the primary key cannot be removed"),
        }
    }
}

impl core::error::Error for KeyError {}

impl Key {
    /// A key from its bytes.
    pub const fn new(bytes: [u8; KEY_LEN]) -> Self {
        Key(bytes)
    }

    /// A key from a key file's contents: exactly 32 raw bytes (as made by
    /// `head -c 32 /dev/urandom`), or 64 hex digits with optional
    /// surrounding whitespace.
    pub fn parse(contents: &[u8]) -> Result<Key, KeyError> {
        if contents.len() == KEY_LEN && !contents.iter().all(u8::is_ascii_hexdigit) {
            let mut k = [0u8; KEY_LEN];
            k.copy_from_slice(contents);
            return Ok(Key(k));
        }
        let text = contents.trim_ascii();
        if text.len() == KEY_LEN && text.iter().all(u8::is_ascii_hexdigit) {
            // 32 hex digits is a 128-bit key written as text, not 32 random
            // bytes: refuse rather than use the characters as the key.
            return Err(KeyError::BadLength(contents.len()));
        }
        if text.len() != 2 * KEY_LEN {
            return Err(KeyError::BadLength(contents.len()));
        }
        let mut k = [0u8; KEY_LEN];
        for (byte, pair) in k.iter_mut().zip(text.chunks_exact(2)) {
            let digit = |c: u8| (c as char).to_digit(16).ok_or(KeyError::NotHex);
            let (&[hi, lo], _) = pair.split_at(2) else {
                return Err(KeyError::NotHex);
            };
            *byte = u8::try_from(digit(hi)? << 4 | digit(lo)?).map_err(|_| KeyError::NotHex)?;
        }
        Ok(Key(k))
    }

    /// The first 4 bytes of the key's SHA-256, as 8 hex digits: tells keys
    /// apart in logs without revealing them.
    pub fn fingerprint(&self) -> u32 {
        let digest = Sha256::digest(self.0);
        let mut first = [0u8; 4];
        first.copy_from_slice(digest.get(..4).unwrap_or(&[0; 4]));
        u32::from_be_bytes(first)
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC takes keys of any length: this never fails.
        match HmacSha256::new_from_slice(&self.0) {
            Ok(m) => m,
            Err(_) => unreachable_mac(),
        }
    }
}

#[cold]
fn unreachable_mac() -> HmacSha256 {
    // `new_from_slice` only fails for fixed-size-key MACs; HMAC has none.
    // Fall back to an all-zero key rather than panic.
    <HmacSha256 as Mac>::new(&Default::default())
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({:08x})", self.fingerprint())
    }
}

/// The keys a node accepts, and the primary one it seals with.
#[derive(Clone, PartialEq, Eq)]
pub struct Keyring {
    primary: Key,
    others: heapless::Vec<Key, { MAX_KEYS - 1 }>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("primary", &self.primary)
            .field("others", &self.others)
            .finish()
    }
}

impl Keyring {
    /// A ring holding `primary` alone.
    pub fn new(primary: Key) -> Self {
        Self {
            primary,
            others: heapless::Vec::new(),
        }
    }

    /// The key datagrams are sealed with.
    pub fn primary(&self) -> &Key {
        &self.primary
    }

    /// Every installed key, the primary first.
    pub fn keys(&self) -> impl Iterator<Item = &Key> {
        core::iter::once(&self.primary).chain(self.others.iter())
    }

    /// Accepts `key` from now on (sending still uses the primary). Installing
    /// a key already there does nothing.
    pub fn install(&mut self, key: Key) -> Result<(), KeyError> {
        if self.keys().any(|k| *k == key) {
            return Ok(());
        }
        self.others.push(key).map_err(|_| KeyError::RingFull)
    }

    /// Seals with `key` from now on; it must be installed.
    pub fn use_key(&mut self, key: &Key) -> Result<(), KeyError> {
        if self.primary == *key {
            return Ok(());
        }
        let other = self
            .others
            .iter_mut()
            .find(|k| *k == key)
            .ok_or(KeyError::NotInstalled)?;
        core::mem::swap(&mut self.primary, other);
        Ok(())
    }

    /// Stops accepting `key`; it must not be the primary.
    pub fn remove(&mut self, key: &Key) -> Result<(), KeyError> {
        if self.primary == *key {
            return Err(KeyError::IsPrimary);
        }
        let at = self
            .others
            .iter()
            .position(|k| k == key)
            .ok_or(KeyError::NotInstalled)?;
        self.others.remove(at);
        Ok(())
    }

    /// Seals the `len`-byte datagram at the start of `buf` with `seq`:
    /// sets the flag, appends `seq`, the MAC and the tag length. Returns the
    /// sealed length, or `None` if `buf` has no room for the trailer.
    pub fn seal(&self, buf: &mut [u8], len: usize, seq: u64) -> Option<usize> {
        let sealed = len.checked_add(TRAILER_LEN)?;
        if len < PREFIX_LEN || buf.len() < sealed {
            return None;
        }
        let flags = buf.get_mut(3)?;
        *flags |= FLAG_AUTH;
        buf.get_mut(len..len + SEQ_LEN)?
            .copy_from_slice(&seq.to_le_bytes());
        let mut mac = self.primary().mac();
        mac.update(buf.get(..len + SEQ_LEN)?);
        let tag = mac.finalize().into_bytes();
        buf.get_mut(len + SEQ_LEN..len + SEQ_LEN + MAC_LEN)?
            .copy_from_slice(tag.get(..MAC_LEN)?);
        *buf.get_mut(sealed - 1)? = (SEQ_LEN + MAC_LEN) as u8;
        Some(sealed)
    }

    /// Checks a sealed datagram against every installed key; returns its
    /// `seq`.
    pub fn open(&self, datagram: &[u8]) -> Result<u64, AuthError> {
        let n = datagram.len();
        let flags = *datagram.get(3).ok_or(AuthError::Missing)?;
        if flags & FLAG_AUTH == 0 {
            return Err(AuthError::Missing);
        }
        if n < PREFIX_LEN + TRAILER_LEN || datagram.last() != Some(&((SEQ_LEN + MAC_LEN) as u8)) {
            return Err(AuthError::Malformed);
        }
        let signed = datagram
            .get(..n - 1 - MAC_LEN)
            .ok_or(AuthError::Malformed)?;
        let tag = datagram
            .get(n - 1 - MAC_LEN..n - 1)
            .ok_or(AuthError::Malformed)?;
        let seq_bytes = signed
            .get(signed.len() - SEQ_LEN..)
            .ok_or(AuthError::Malformed)?;
        let mut seq = [0u8; SEQ_LEN];
        seq.copy_from_slice(seq_bytes);
        for key in self.keys() {
            let mut mac = key.mac();
            mac.update(signed);
            // Constant-time comparison of the leading MAC_LEN bytes.
            if mac.verify_truncated_left(tag).is_ok() {
                return Ok(u64::from_le_bytes(seq));
            }
        }
        Err(AuthError::BadMac)
    }
}

/// Why a datagram's seal was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthError {
    /// No seal.
    Missing,
    /// A seal of the wrong shape.
    Malformed,
    /// No installed key made this MAC.
    BadMac,
}

/// The `seq` numbers seen from one sender: the highest, and which of the
/// [`REPLAY_WINDOW`] - 1 below it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplayWindow {
    top: u64,
    /// Bit `i`: `top - i` was seen (bit 0: `top` itself, once any was).
    seen: u64,
}

impl ReplayWindow {
    /// Whether `seq` is new: above the highest, or within the window and
    /// not seen yet.
    pub fn is_fresh(&self, seq: u64) -> bool {
        if self.seen == 0 || seq > self.top {
            return true;
        }
        let back = self.top - seq;
        back < REPLAY_WINDOW && self.seen & (1 << back) == 0
    }

    /// Records `seq` as seen (call only after [`is_fresh`](Self::is_fresh)).
    pub fn record(&mut self, seq: u64) {
        if self.seen == 0 {
            self.top = seq;
            self.seen = 1;
        } else if seq > self.top {
            let shift = seq - self.top;
            self.seen = if shift >= REPLAY_WINDOW {
                0
            } else {
                self.seen << shift
            } | 1;
            self.top = seq;
        } else if self.top - seq < REPLAY_WINDOW {
            self.seen |= 1 << (self.top - seq);
        }
    }
}

/// The first `seq` of a node of generation `generation`: the generation's
/// low 32 bits (seconds, so until the year 2106) in the high half.
pub(crate) fn first_seq(generation: u64) -> u64 {
    (generation & 0xffff_ffff) << 32
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;

    fn key(b: u8) -> Key {
        Key::new([b; KEY_LEN])
    }

    #[test]
    fn keys_parse_from_raw_bytes_or_hex_and_nothing_else() {
        assert_eq!(Key::parse(&[7u8; 32]), Ok(key(7)));
        let hex = "07".repeat(32);
        assert_eq!(Key::parse(hex.as_bytes()), Ok(key(7)));
        assert_eq!(Key::parse(std::format!("  {hex}\n").as_bytes()), Ok(key(7)));
        assert_eq!(Key::parse(b"short"), Err(KeyError::BadLength(5)));
        assert_eq!(
            Key::parse("ab".repeat(16).as_bytes()),
            Err(KeyError::BadLength(32))
        );
        assert_eq!(
            Key::parse("zz".repeat(32).as_bytes()),
            Err(KeyError::NotHex)
        );
        assert!(
            !std::format!("{:?}", key(7)).contains("0707"),
            "Debug hides the key"
        );
    }

    #[test]
    fn a_seal_opens_with_any_installed_key_and_not_after_a_change() {
        let mut ring = Keyring::new(key(1));
        let mut buf = [0u8; 64];
        buf[..PREFIX_LEN].copy_from_slice(b"GS\x01\x00abcd\x01");
        buf[PREFIX_LEN..20].copy_from_slice(b"hello world");
        let n = ring.seal(&mut buf, 20, 42).unwrap();
        assert_eq!(n, 20 + TRAILER_LEN);
        assert_eq!(ring.open(&buf[..n]), Ok(42));
        // Another ring with the key among others accepts it.
        let mut other = Keyring::new(key(2));
        assert_eq!(other.open(&buf[..n]), Err(AuthError::BadMac));
        other.install(key(1)).unwrap();
        assert_eq!(other.open(&buf[..n]), Ok(42));
        // Any flipped bit, anywhere, breaks it.
        for i in 0..n {
            let mut bad = buf;
            bad[i] ^= 0x10;
            assert!(ring.open(&bad[..n]).is_err(), "bit flip at {i}");
        }
        // Rotation rules.
        ring.install(key(3)).unwrap();
        ring.use_key(&key(3)).unwrap();
        assert_eq!(ring.remove(&key(3)), Err(KeyError::IsPrimary));
        ring.remove(&key(1)).unwrap();
        assert_eq!(ring.primary(), &key(3));
        assert_eq!(ring.open(&buf[..n]), Err(AuthError::BadMac));
        for b in 4..7 {
            ring.install(key(b)).unwrap();
        }
        assert_eq!(ring.install(key(9)), Err(KeyError::RingFull));
    }

    #[test]
    fn the_replay_window_accepts_each_seq_once_and_nothing_too_old() {
        let mut w = ReplayWindow::default();
        for seq in [100, 103, 101, 150, 120] {
            assert!(w.is_fresh(seq), "{seq}");
            w.record(seq);
            assert!(!w.is_fresh(seq), "{seq} again");
        }
        assert!(w.is_fresh(149));
        assert!(!w.is_fresh(150 - REPLAY_WINDOW), "below the window");
        assert!(!w.is_fresh(100), "seen, and below the window now");
        w.record(1_000);
        assert!(!w.is_fresh(150));
        assert!(w.is_fresh(999));
    }
}
