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
//! * `alloc::boxed::Box<[u8]>` (feature `alloc`, what
//!   [`HeapStorage`](crate::HeapStorage) uses): exactly as many bytes as the
//!   states take and 16 bytes in the peer slot (a `Vec` takes 24 and keeps
//!   spare capacity); every change reallocates, and states change rarely.
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
}
