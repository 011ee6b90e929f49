//! Huge pages for the simulated nodes' peer tables.
//!
//! At 10,000 nodes the simulator holds 10,000 peer tables of about 1.4 MB
//! each, and a node's step touches its table at a few dozen scattered places:
//! with 4 KiB pages nearly every touch misses the TLB, and the page walk
//! misses the cache too. [`TableAlloc`], installed as the global allocator,
//! places the large blocks made inside [`long_lived`] (the simulator reserves
//! each node's table there) side by side in one region that asks the kernel
//! for transparent huge pages (`madvise(MADV_HUGEPAGE)`, which the common
//! `madvise` setting of `/sys/kernel/mm/transparent_hugepage/enabled`
//! honours), so a table spans one or two TLB entries. The blocks are packed
//! with no rounding beyond a cache line, so resident memory stays what the
//! tables use. Every other allocation, and all of them off Linux or where the
//! region cannot be mapped, goes to the system allocator.
//!
//! A freed block's addresses are not handed out again, except the last
//! block's (its room is rolled back, its pages kept); the pages wholly
//! inside any other freed block go back to the kernel (`MADV_DONTNEED`).
//! The region is 64 GiB of address space, reserved without memory behind
//! it: about 45,000 tables of 10,000 peers, restarts included, before
//! blocks go to the system allocator like any other.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// Blocks smaller than this stay with the system allocator.
pub const MIN_BLOCK: usize = 64 * 1024;

thread_local! {
    static LONG_LIVED: Cell<bool> = const { Cell::new(false) };
}

/// Whether a block of `size` bytes made now goes to the region.
fn for_region(size: usize) -> bool {
    size >= MIN_BLOCK && LONG_LIVED.try_with(Cell::get).unwrap_or(false)
}

/// Runs `f` with this thread's large allocations (at least [`MIN_BLOCK`]
/// bytes) placed in the huge-page region, when [`TableAlloc`] is the global
/// allocator; otherwise just runs `f`.
pub fn long_lived<T>(f: impl FnOnce() -> T) -> T {
    /// Puts the flag back, also when `f` panics (a thread pool may run
    /// more work on this thread after catching the panic).
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            LONG_LIVED.set(self.0);
        }
    }
    let _restore = Restore(LONG_LIVED.replace(true));
    f()
}

/// Whether `ptr` points into the huge-page region (a block made inside
/// [`long_lived`] while [`TableAlloc`] is the global allocator).
pub fn holds<T: ?Sized>(ptr: *const T) -> bool {
    region::owns(ptr.cast::<u8>().cast_mut())
}

/// A global allocator that puts the blocks made inside [`long_lived`] in a
/// huge-page region and everything else in [`System`].
///
/// ```no_run
/// #[global_allocator]
/// static ALLOC: gossip_sim::arena::TableAlloc = gossip_sim::arena::TableAlloc;
/// ```
#[derive(Debug, Default, Clone, Copy)]
pub struct TableAlloc;

#[cfg(target_os = "linux")]
mod region {
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Address space reserved for the region.
    const SIZE: usize = 64 << 30;
    /// Its alignment: a transparent huge page.
    const HUGE: usize = 2 << 20;
    /// The alignment of every block.
    const LINE: usize = 64;
    const PAGE: usize = 4096;

    /// The region's start; 0 while not mapped, 1 when mapping failed.
    static BASE: AtomicUsize = AtomicUsize::new(0);
    /// Bytes handed out from the start.
    static NEXT: AtomicUsize = AtomicUsize::new(0);

    fn base() -> Option<usize> {
        match BASE.load(Ordering::Acquire) {
            0 => map(),
            1 => None,
            b => Some(b),
        }
    }

    /// Maps the region (once: a thread that loses the race unmaps its own).
    fn map() -> Option<usize> {
        let len = SIZE + HUGE;
        // SAFETY: an anonymous private mapping at an address of the
        // kernel's choosing touches no existing memory; MAP_NORESERVE
        // reserves address space only. The result is checked below.
        let p = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            let _ = BASE.compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire);
            return base_if_mapped();
        }
        let start = p as usize;
        let aligned = start.next_multiple_of(HUGE);
        // SAFETY: `aligned..aligned + SIZE` lies inside the mapping just
        // made, which nothing else refers to yet. The advice only changes
        // how the kernel backs it; its failure leaves 4 KiB pages.
        unsafe {
            libc::madvise(aligned as *mut libc::c_void, SIZE, libc::MADV_HUGEPAGE);
        }
        match BASE.compare_exchange(0, aligned, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => Some(aligned),
            Err(_) => {
                // SAFETY: the mapping is ours alone: we lost the race, so
                // no block was handed out from it.
                unsafe {
                    libc::munmap(p, len);
                }
                base_if_mapped()
            }
        }
    }

    fn base_if_mapped() -> Option<usize> {
        match BASE.load(Ordering::Acquire) {
            0 | 1 => None,
            b => Some(b),
        }
    }

    /// A block of `size` bytes aligned to `align`, if the region has room.
    pub(super) fn alloc(size: usize, align: usize) -> Option<*mut u8> {
        let base = base()?;
        let align = align.max(LINE);
        let size = size.checked_next_multiple_of(LINE)?;
        let mut start = 0;
        NEXT.fetch_update(Ordering::AcqRel, Ordering::Acquire, |next| {
            start = (base + next).checked_next_multiple_of(align)? - base;
            let end = start.checked_add(size)?;
            (end <= SIZE).then_some(end)
        })
        .ok()?;
        Some((base + start) as *mut u8)
    }

    /// Whether `ptr` lies in the region.
    pub(super) fn owns(ptr: *mut u8) -> bool {
        base_if_mapped().is_some_and(|base| (base..base + SIZE).contains(&(ptr as usize)))
    }

    /// Whether `ptr` is a block of the region; if so, frees it.
    pub(super) fn free(ptr: *mut u8, size: usize) -> bool {
        let Some(base) = base_if_mapped().filter(|_| owns(ptr)) else {
            return false;
        };
        let at = ptr as usize;
        let start = at - base;
        let end = start + size.next_multiple_of(LINE);
        // The last block: hand its room out again.
        if NEXT
            .compare_exchange(end, start, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            return true;
        }
        let from = at.next_multiple_of(PAGE);
        let to = (base + end) & !(PAGE - 1);
        if to > from {
            // SAFETY: `from..to` lies inside the freed block, which its
            // owner gave up and the region never hands out again (only
            // the last block's room is, above). The advice drops the
            // pages; later reads would see zeros, but none come.
            unsafe {
                libc::madvise(from as *mut libc::c_void, to - from, libc::MADV_DONTNEED);
            }
        }
        true
    }
}

#[cfg(not(target_os = "linux"))]
mod region {
    pub(super) fn alloc(_size: usize, _align: usize) -> Option<*mut u8> {
        None
    }
    pub(super) fn owns(_ptr: *mut u8) -> bool {
        false
    }
    pub(super) fn free(_ptr: *mut u8, _size: usize) -> bool {
        false
    }
}

// SAFETY: every block comes from `System` or from the region; a region
// block is `layout.size()` bytes (rounded up) aligned to at least
// `layout.align()`, inside a mapping that lives as long as the process,
// and no two live blocks overlap (the bump offset only moves back over
// the last block when that block is freed). `dealloc` tells the two
// apart by address, since the region's addresses are the mapping's alone.
unsafe impl GlobalAlloc for TableAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if for_region(layout.size())
            && let Some(p) = region::alloc(layout.size(), layout.align())
        {
            return p;
        }
        // SAFETY: the caller's contract (a non-zero size) passes on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if !region::free(ptr, layout.size()) {
            // SAFETY: not a region block, so `System` made it, with this
            // layout (the caller's contract).
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if for_region(layout.size()) {
            // SAFETY: as `alloc`; a region block may hold an old block's
            // bytes, so it is zeroed here.
            let p = unsafe { self.alloc(layout) };
            if !p.is_null() {
                // SAFETY: `p` is a fresh block of `layout.size()` bytes.
                unsafe { core::ptr::write_bytes(p, 0, layout.size()) };
            }
            return p;
        }
        // SAFETY: as `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if region::owns(ptr) || for_region(new_size) {
            // Into or out of the region: a new block, the bytes copied.
            // SAFETY: the caller's contract: `new_size` is non-zero and,
            // rounded to `layout.align()`, does not overflow.
            let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
            // SAFETY: as `alloc`.
            let new = unsafe { self.alloc(new_layout) };
            if !new.is_null() {
                // SAFETY: both blocks are live, distinct, and at least the
                // smaller size long.
                unsafe {
                    core::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                    self.dealloc(ptr, layout);
                }
            }
            return new;
        }
        // SAFETY: `ptr` is a `System` block of this layout.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}
