//! Liveness claims: what the cluster says of a member's health, and which of
//! two claims wins.
//!
//! A claim is `(incarnation, status, confirmers)` about one generation of
//! an endpoint. The incarnation is the member's own counter within its
//! generation: only the member raises it, to refute a suspicion or death of
//! itself (SWIM's refutation). Others claim it [`Suspect`](Status::Suspect)
//! or [`Down`](Status::Down) *at* the incarnation they knew.
//!
//! Claims about one generation are ordered by `(incarnation, status)`,
//! status ranked `Alive < Suspect < Down < Left`, and merging keeps the
//! larger; two suspicions at one incarnation merge into one with the
//! confirmers of both. (A newer generation is a restart: its state replaces
//! the old one, claims included.)
//! The merge is commutative, associative and idempotent, so any order of
//! arrival ends in the same view. This gives SWIM's rules:
//!
//! - a suspicion or death at incarnation `i` beats "alive at `i`";
//! - "alive at `i + 1`" (the member's refutation) beats both;
//! - a newer generation (a restart) beats everything of older ones;
//! - a suspicion carries who confirmed it: each node whose own probe failed
//!   sets its bit (one of eight, by a hash of its address), so confirmations
//!   made at the same moment by different nodes add up instead of hiding
//!   each other, and their count shortens everyone's suspicion timeout
//!   (Lifeguard). A node that hears of a death it doubts holds it as a
//!   suspicion with every bit set: the shortest one, long enough for the
//!   member to refute to the node's own probe.
//!
//! A stale rumor (an older incarnation's suspicion, an old "alive") never
//! wins over what a node knows, so it can neither bring a dead member back
//! nor keep a refuted one down. A member that left gracefully stays left for
//! its generation whatever claim comes later.
//!
//! On the wire a claim is one varint, its [`key`](Claim::key):
//! `incarnation << 10 | status << 8 | confirmers`.

use core::fmt;

/// Confirmations that shorten a suspicion at most (Lifeguard's `K`).
pub const MAX_CONFIRMATIONS: u8 = 3;

/// What a claim says of a member.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Status {
    /// It answers (or nobody has said otherwise).
    #[default]
    Alive = 0,
    /// A probe of it failed, directly and through others; it has until its
    /// suspicion times out to refute.
    Suspect = 1,
    /// Its suspicion timed out.
    Down = 2,
    /// It shut down gracefully.
    Left = 3,
}

impl Status {
    fn from_bits(bits: u64) -> Self {
        match bits & 3 {
            0 => Status::Alive,
            1 => Status::Suspect,
            2 => Status::Down,
            _ => Status::Left,
        }
    }

    /// A short lowercase name.
    pub fn name(self) -> &'static str {
        match self {
            Status::Alive => "alive",
            Status::Suspect => "suspect",
            Status::Down => "down",
            Status::Left => "left",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A claim about one generation of a member (see the [module docs](self)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Claim {
    /// The member's incarnation the claim is about.
    pub incarnation: u32,
    /// What it says.
    pub status: Status,
    /// Behind a suspicion (0 otherwise): a bit per confirmer, by
    /// [`confirmer_bit`].
    pub confirmers: u8,
}

/// The bit a node sets in the suspicions it confirms: one of eight, by a
/// hash of its address (`ring_position`), so distinct nodes mostly set
/// distinct bits.
pub fn confirmer_bit(ring_position: u32) -> u8 {
    1 << (ring_position % 8)
}

impl Claim {
    /// "Alive at `incarnation`".
    pub const fn alive(incarnation: u32) -> Self {
        Self {
            incarnation,
            status: Status::Alive,
            confirmers: 0,
        }
    }

    /// `status` at `incarnation`, no confirmers.
    pub const fn new(incarnation: u32, status: Status) -> Self {
        Self {
            incarnation,
            status,
            confirmers: 0,
        }
    }

    /// Confirmations of a suspicion: the confirmers but the first (the
    /// suspicion itself), at most [`MAX_CONFIRMATIONS`].
    pub fn confirmations(&self) -> u8 {
        let n = self.confirmers.count_ones() as u8;
        n.saturating_sub(1).min(MAX_CONFIRMATIONS)
    }

    fn rank(&self) -> u64 {
        (u64::from(self.incarnation) << 2) | self.status as u64
    }

    /// The claim's wire encoding: `incarnation << 10 | status << 8 |
    /// confirmers` (confirmers only in a suspicion).
    pub fn key(&self) -> u64 {
        let confirmers = match self.status {
            Status::Suspect => self.confirmers,
            _ => 0,
        };
        (self.rank() << 8) | u64::from(confirmers)
    }

    /// The claim a [`key`](Self::key) encodes; `None` for one no writer
    /// makes (an incarnation past `u32`, confirmers outside a suspicion).
    pub fn from_key(key: u64) -> Option<Self> {
        let incarnation = u32::try_from(key >> 10).ok()?;
        let status = Status::from_bits(key >> 8);
        let confirmers = (key & 0xff) as u8;
        if confirmers != 0 && status != Status::Suspect {
            return None;
        }
        Some(Self {
            incarnation,
            status,
            confirmers,
        })
    }

    /// The two claims merged: the higher `(incarnation, status)`, or one
    /// suspicion with the confirmers of both.
    pub fn merge(&self, other: &Claim) -> Claim {
        match self.rank().cmp(&other.rank()) {
            core::cmp::Ordering::Greater => *self,
            core::cmp::Ordering::Less => *other,
            core::cmp::Ordering::Equal => Claim {
                confirmers: if self.status == Status::Suspect {
                    self.confirmers | other.confirmers
                } else {
                    0
                },
                ..*self
            },
        }
    }

    /// Whether merging this claim into `other` changes it: news to whoever
    /// holds `other`.
    pub fn beats(&self, other: &Claim) -> bool {
        other.merge(self) != *other
    }

    /// Whether it says the member is gone (down or left).
    pub fn is_gone(&self) -> bool {
        matches!(self.status, Status::Down | Status::Left)
    }
}

impl fmt::Display for Claim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at incarnation {}", self.status, self.incarnation)?;
        if self.status == Status::Suspect && self.confirmations() > 0 {
            write!(f, " ({} confirmations)", self.confirmations())?;
        }
        Ok(())
    }
}

/// As its [`key`](Claim::key), a varint in postcard.
#[cfg(any(test, feature = "serde"))]
impl serde::Serialize for Claim {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.key())
    }
}

#[cfg(any(test, feature = "serde"))]
impl<'de> serde::Deserialize<'de> for Claim {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let key = u64::deserialize(d)?;
        Claim::from_key(key).ok_or_else(|| serde::de::Error::custom("invalid claim"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quickcheck::{Arbitrary, Gen, quickcheck};

    impl Arbitrary for Claim {
        fn arbitrary(g: &mut Gen) -> Self {
            let status = *g
                .choose(&[Status::Alive, Status::Suspect, Status::Down, Status::Left])
                .unwrap_or(&Status::Alive);
            Claim {
                incarnation: u32::arbitrary(g) % 8,
                status,
                confirmers: if status == Status::Suspect {
                    u8::arbitrary(g)
                } else {
                    0
                },
            }
        }
    }

    #[test]
    fn swim_precedence() {
        let alive = |i| Claim::alive(i);
        let suspect = |i| Claim::new(i, Status::Suspect);
        let down = |i| Claim::new(i, Status::Down);
        assert!(suspect(3).beats(&alive(3)));
        assert!(!suspect(2).beats(&alive(3)));
        assert!(alive(4).beats(&suspect(3)));
        assert!(alive(4).beats(&down(3)));
        assert!(!alive(3).beats(&down(3)));
        assert!(down(3).beats(&suspect(3)));
        let by = |bits| Claim {
            confirmers: bits,
            ..suspect(3)
        };
        assert!(by(0b01).beats(&suspect(3)));
        // Two confirmations made apart add up.
        assert_eq!(by(0b01).merge(&by(0b10)), by(0b11));
        assert!(by(0b10).beats(&by(0b01)));
        assert!(!by(0b01).beats(&by(0b11)));
        assert_eq!(by(0b111).confirmations(), 2);
        assert_eq!(by(0xff).confirmations(), MAX_CONFIRMATIONS);
        assert!(down(3).beats(&by(0xff)));
        assert!(Claim::new(3, Status::Left).beats(&down(3)));
    }

    quickcheck! {
        fn merge_is_a_join(a: Claim, b: Claim, c: Claim) -> bool {
            a.merge(&b) == b.merge(&a)
                && a.merge(&b).merge(&c) == a.merge(&b.merge(&c))
                && a.merge(&a) == a
        }

        fn key_round_trips(c: Claim) -> bool {
            Claim::from_key(c.key()) == Some(c)
        }

        fn keys_no_writer_makes_are_refused(key: u64) -> bool {
            match Claim::from_key(key) {
                Some(c) => c.key() == key,
                None => key >> 10 > u64::from(u32::MAX)
                    || (key & 0xff != 0 && (key >> 8) & 3 != 1),
            }
        }
    }
}
