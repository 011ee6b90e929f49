//! Where an endpoint's application states live.
//!
//! An [`EndpointState`](crate::state::EndpointState) keeps its entries packed
//! in one byte buffer, in the same encoding they have on the wire. The buffer
//! type is the only thing that differs between a build with an allocator and
//! one without:
//!
//! * [`heapless::Vec<u8, N>`]: fixed capacity of `N` bytes, no allocator;
//! * `alloc::vec::Vec<u8>` (feature `alloc`): grows as needed, so an endpoint
//!   with two small states costs a few tens of bytes, not a worst-case array;
//! * `alloc::boxed::Box<[u8]>` (feature `alloc`): exactly as many bytes as
//!   the states take and 16 bytes in the peer slot (a `Vec` takes 24 and
//!   keeps spare capacity); every change reallocates, and states change
//!   rarely;
//! * [`InlineStates<N>`] (feature `alloc`, what
//!   [`HeapStorage`](crate::HeapStorage) uses): up to `N` bytes in the slot
//!   itself, a `Box<[u8]>` beyond.
//!
//! The configured [`Limits`](crate::state::Limits) hold in both; a fixed buffer
//! additionally refuses what does not fit its capacity, reported as
//! [`MergeError::Capacity`](crate::state::MergeError::Capacity) with the state
//! unchanged.

/// A byte buffer that holds an endpoint's packed application states.
pub trait StateBuf: Default {
    /// The largest number of bytes this buffer can ever hold, or `None` when it
    /// grows without a fixed bound (limits still apply).
    fn capacity_limit(&self) -> Option<usize>;

    /// The bytes held.
    fn bytes(&self) -> &[u8];

    /// Replaces `remove` bytes at `at` with a gap of `gap` bytes and returns the
    /// gap for the caller to fill. On error nothing changed.
    fn splice_gap(
        &mut self,
        at: usize,
        remove: usize,
        gap: usize,
    ) -> Result<&mut [u8], CapacityError>;

    /// Drops every byte.
    fn clear(&mut self);
}

/// A [`StateBuf`] could not hold the bytes asked of it; nothing changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CapacityError;

impl core::fmt::Display for CapacityError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("state buffer capacity exceeded")
    }
}

impl core::error::Error for CapacityError {}

impl<const N: usize> StateBuf for heapless::Vec<u8, N> {
    fn capacity_limit(&self) -> Option<usize> {
        Some(N)
    }

    fn bytes(&self) -> &[u8] {
        self.as_slice()
    }

    fn splice_gap(
        &mut self,
        at: usize,
        remove: usize,
        gap: usize,
    ) -> Result<&mut [u8], CapacityError> {
        let old_len = self.len();
        let end = at.checked_add(remove).ok_or(CapacityError)?;
        if end > old_len {
            return Err(CapacityError);
        }
        let new_len = (old_len - remove).checked_add(gap).ok_or(CapacityError)?;
        if new_len > N {
            return Err(CapacityError);
        }
        if new_len > old_len {
            self.resize(new_len, 0).map_err(|_| CapacityError)?;
        }
        self.as_mut_slice().copy_within(end..old_len, at + gap);
        self.truncate(new_len);
        self.as_mut_slice()
            .get_mut(at..at + gap)
            .ok_or(CapacityError)
    }

    fn clear(&mut self) {
        heapless::Vec::clear(self);
    }
}

#[cfg(feature = "alloc")]
impl StateBuf for alloc::vec::Vec<u8> {
    fn capacity_limit(&self) -> Option<usize> {
        None
    }

    fn bytes(&self) -> &[u8] {
        self.as_slice()
    }

    fn splice_gap(
        &mut self,
        at: usize,
        remove: usize,
        gap: usize,
    ) -> Result<&mut [u8], CapacityError> {
        let end = at.checked_add(remove).ok_or(CapacityError)?;
        if end > self.len() {
            return Err(CapacityError);
        }
        self.splice(at..end, core::iter::repeat_n(0, gap));
        self.get_mut(at..at + gap).ok_or(CapacityError)
    }

    fn clear(&mut self) {
        alloc::vec::Vec::clear(self);
    }
}

#[cfg(feature = "alloc")]
impl StateBuf for alloc::boxed::Box<[u8]> {
    fn capacity_limit(&self) -> Option<usize> {
        None
    }

    fn bytes(&self) -> &[u8] {
        self
    }

    /// Through a `Vec` (the box moves in and out, no copy), shrunk back
    /// to the exact size.
    fn splice_gap(
        &mut self,
        at: usize,
        remove: usize,
        gap: usize,
    ) -> Result<&mut [u8], CapacityError> {
        let mut bytes = core::mem::take(self).into_vec();
        // On error the vector is unchanged, and goes back as it was.
        let spliced = StateBuf::splice_gap(&mut bytes, at, remove, gap).map(|_| ());
        *self = bytes.into_boxed_slice();
        spliced?;
        self.get_mut(at..at + gap).ok_or(CapacityError)
    }

    fn clear(&mut self) {
        *self = alloc::boxed::Box::default();
    }
}

/// Application states held in the peer slot up to `N` bytes (at most 255),
/// in a boxed slice of exactly their size beyond: what
/// [`HeapStorage`](crate::HeapStorage) keeps each endpoint's states in.
///
/// Most endpoints publish a few short states (a status, a host id): inline,
/// they cost no allocation, no allocator overhead (a 48-byte allocation
/// takes 64 bytes of glibc's heap) and no pointer to follow when a digest
/// or delta is compared. Larger states pay for a 16-byte pointer and their
/// allocation, as a plain `Box<[u8]>` would.
#[cfg(feature = "alloc")]
#[derive(Clone)]
pub struct InlineStates<const N: usize>(Repr<N>);

#[cfg(feature = "alloc")]
#[derive(Clone)]
enum Repr<const N: usize> {
    Inline { len: u8, bytes: [u8; N] },
    Boxed(alloc::boxed::Box<[u8]>),
}

#[cfg(feature = "alloc")]
impl<const N: usize> Default for InlineStates<N> {
    fn default() -> Self {
        const {
            assert!(
                N <= u8::MAX as usize,
                "inline states hold at most 255 bytes"
            )
        };
        Self(Repr::Inline {
            len: 0,
            bytes: [0; N],
        })
    }
}

#[cfg(feature = "alloc")]
impl<const N: usize> InlineStates<N> {
    /// Whether the states live in the slot (not in an allocation of their
    /// own).
    pub fn is_inline(&self) -> bool {
        matches!(self.0, Repr::Inline { .. })
    }
}

#[cfg(feature = "alloc")]
impl<const N: usize> StateBuf for InlineStates<N> {
    fn capacity_limit(&self) -> Option<usize> {
        None
    }

    fn bytes(&self) -> &[u8] {
        match &self.0 {
            Repr::Inline { len, bytes } => bytes.get(..usize::from(*len)).unwrap_or(bytes),
            Repr::Boxed(b) => b,
        }
    }

    /// Rebuilds the bytes with the gap, inline when they fit, else in a box
    /// of the new size.
    fn splice_gap(
        &mut self,
        at: usize,
        remove: usize,
        gap: usize,
    ) -> Result<&mut [u8], CapacityError> {
        let old = self.bytes();
        let end = at.checked_add(remove).ok_or(CapacityError)?;
        let (Some(head), Some(tail)) = (old.get(..at), old.get(end..)) else {
            return Err(CapacityError);
        };
        let gap_end = at.checked_add(gap).ok_or(CapacityError)?;
        let new_len = gap_end.checked_add(tail.len()).ok_or(CapacityError)?;
        self.0 = match u8::try_from(new_len) {
            Ok(len) if new_len <= N => {
                let mut bytes = [0u8; N];
                bytes
                    .get_mut(..at)
                    .ok_or(CapacityError)?
                    .copy_from_slice(head);
                bytes
                    .get_mut(gap_end..new_len)
                    .ok_or(CapacityError)?
                    .copy_from_slice(tail);
                Repr::Inline { len, bytes }
            }
            _ => {
                let mut v = alloc::vec::Vec::with_capacity(new_len);
                v.extend_from_slice(head);
                v.resize(gap_end, 0);
                v.extend_from_slice(tail);
                Repr::Boxed(v.into_boxed_slice())
            }
        };
        let bytes = match &mut self.0 {
            Repr::Inline { bytes, .. } => &mut bytes[..],
            Repr::Boxed(b) => &mut b[..],
        };
        bytes.get_mut(at..gap_end).ok_or(CapacityError)
    }

    fn clear(&mut self) {
        *self = Self::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn splice<B: StateBuf>(
        b: &mut B,
        at: usize,
        remove: usize,
        insert: &[u8],
    ) -> Result<(), CapacityError> {
        b.splice_gap(at, remove, insert.len())?
            .copy_from_slice(insert);
        Ok(())
    }

    fn exercise<B: StateBuf>(mut b: B) {
        splice(&mut b, 0, 0, b"hello").unwrap();
        splice(&mut b, 5, 0, b" world").unwrap();
        assert_eq!(b.bytes(), b"hello world");
        splice(&mut b, 0, 5, b"HI").unwrap();
        assert_eq!(b.bytes(), b"HI world");
        splice(&mut b, 2, 6, b"").unwrap();
        assert_eq!(b.bytes(), b"HI");
        assert_eq!(splice(&mut b, 3, 0, b"x"), Err(CapacityError));
        assert_eq!(splice(&mut b, 1, 5, b"x"), Err(CapacityError));
        assert_eq!(b.bytes(), b"HI");
        b.clear();
        assert_eq!(b.bytes(), b"");
    }

    #[test]
    fn heapless_splice() {
        exercise(heapless::Vec::<u8, 16>::new());
        let mut b = heapless::Vec::<u8, 4>::new();
        splice(&mut b, 0, 0, b"abcd").unwrap();
        assert_eq!(splice(&mut b, 1, 0, b"x"), Err(CapacityError));
        assert_eq!(b.bytes(), b"abcd");
        splice(&mut b, 1, 2, b"XY").unwrap();
        assert_eq!(b.bytes(), b"aXYd");
    }

    #[cfg(feature = "alloc")]
    #[test]
    fn vec_splice() {
        exercise(alloc::vec::Vec::new());
    }

    #[cfg(feature = "alloc")]
    #[test]
    fn boxed_splice() {
        exercise(alloc::boxed::Box::<[u8]>::default());
    }

    #[cfg(feature = "alloc")]
    #[test]
    fn inline_splice_moves_between_slot_and_box() {
        exercise(InlineStates::<8>::default());
        exercise(InlineStates::<0>::default());
        let mut b = InlineStates::<4>::default();
        splice(&mut b, 0, 0, b"abcd").unwrap();
        assert!(b.is_inline());
        // One byte more than fits: boxed, the bytes kept in order.
        splice(&mut b, 2, 0, b"X").unwrap();
        assert!(!b.is_inline());
        assert_eq!(b.bytes(), b"abXcd");
        // Errors change nothing, boxed or inline.
        assert_eq!(splice(&mut b, 6, 0, b"x"), Err(CapacityError));
        assert_eq!(splice(&mut b, 4, 2, b"x"), Err(CapacityError));
        assert_eq!(b.bytes(), b"abXcd");
        // Back to fitting: inline again.
        splice(&mut b, 0, 2, b"").unwrap();
        assert!(b.is_inline());
        assert_eq!(b.bytes(), b"Xcd");
        b.clear();
        assert!(b.is_inline());
        assert_eq!(b.bytes(), b"");
    }
}
