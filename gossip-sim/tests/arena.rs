//! The simulator's table allocator: blocks made inside `long_lived` come
//! from the huge-page region, packed without overlap, and keep their bytes
//! when they grow out of it; everything else is the system's.
//!
//! One test: the region is the process's, so its checks (the last block's
//! room handed out again) must not race other tests' blocks.

use std::alloc::{GlobalAlloc, Layout};
use std::thread;

use gossip_sim::arena::{MIN_BLOCK, TableAlloc, holds, long_lived};

#[global_allocator]
static ALLOC: TableAlloc = TableAlloc;

fn fill(v: &mut Vec<u64>, tag: u64) {
    let n = v.capacity();
    v.clear();
    v.extend((0..n as u64).map(|k| tag << 32 | k));
}

fn intact(v: &[u64], tag: u64) -> bool {
    v.iter()
        .enumerate()
        .all(|(k, x)| *x == tag << 32 | k as u64)
}

#[test]
fn long_lived_blocks_are_packed_apart_and_keep_their_bytes() {
    let region = cfg!(target_os = "linux");
    let words = MIN_BLOCK / 8;

    // Only large blocks made inside `long_lived` go to the region.
    let small: Vec<u64> = long_lived(|| Vec::with_capacity(16));
    let outside: Vec<u64> = Vec::with_capacity(words);
    assert!(!holds(small.as_ptr()) && !holds(outside.as_ptr()));

    // Tables of uneven sizes, from two threads at once, filled: none
    // overlaps another, each in the region.
    let mut tables: Vec<(u64, Vec<u64>)> = thread::scope(|s| {
        let half = |from: u64| {
            s.spawn(move || {
                (from..from + 6)
                    .map(|t| {
                        let mut v = long_lived(|| Vec::with_capacity(words + 37 * t as usize));
                        fill(&mut v, t);
                        (t, v)
                    })
                    .collect::<Vec<_>>()
            })
        };
        let (a, b) = (half(0), half(6));
        let mut all = a.join().unwrap();
        all.extend(b.join().unwrap());
        all
    });
    assert_eq!(tables.len(), 12);
    for (t, v) in &tables {
        assert_eq!(holds(v.as_ptr()), region, "table {t}");
        assert_eq!(v.as_ptr() as usize % 64, 0, "table {t} is not line-aligned");
        assert!(intact(v, *t), "table {t} was overwritten");
    }

    // A table that outgrows its room (outside `long_lived`) moves out of
    // the region with its bytes; the others are untouched.
    let (t, mut grown) = tables.swap_remove(3);
    let len = grown.len();
    grown.push(0);
    grown.pop();
    assert!(!holds(grown.as_ptr()));
    assert_eq!(grown.len(), len);
    assert!(intact(&grown, t));
    for (t, v) in &tables {
        assert!(intact(v, *t), "table {t} was overwritten");
    }

    // Large alignments hold.
    let layout = Layout::from_size_align(MIN_BLOCK, 1 << 16).unwrap();
    // SAFETY: the layout has a non-zero size; the block is freed with it.
    let p = long_lived(|| unsafe { ALLOC.alloc(layout) });
    assert!(!p.is_null());
    assert_eq!(p as usize % (1 << 16), 0);
    assert_eq!(holds(p), region);
    // SAFETY: `p` was allocated above with `layout`, and not freed.
    unsafe { ALLOC.dealloc(p, layout) };

    // The last block's room is handed out again, and a zeroed block made
    // there reads zeros though the old one was written.
    let mut last: Vec<u64> = long_lived(|| Vec::with_capacity(words));
    fill(&mut last, 99);
    let at = last.as_ptr() as usize;
    drop(last);
    let zeroed: Vec<u64> = long_lived(|| vec![0; words]);
    if region {
        assert_eq!(
            zeroed.as_ptr() as usize,
            at,
            "the last block's room was not reused"
        );
    }
    assert!(zeroed.iter().all(|x| *x == 0));
    for (t, v) in &tables {
        assert!(intact(v, *t), "table {t} was overwritten");
    }
}
