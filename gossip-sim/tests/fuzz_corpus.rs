//! Replays every committed fuzz corpus file (`fuzz/corpus/<target>/`) through
//! the function its cargo-fuzz target calls, on stable Rust, then runs each
//! target on a bounded number of seeded random inputs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers

use std::path::PathBuf;

use gossip_sim::fuzz;
use rand_core::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

type Target = fn(&[u8]);

const TARGETS: [(&str, Target, usize); 3] = [
    ("wire_decode", fuzz::wire_decode, 3000),
    ("node_ops", fuzz::node_ops, 300),
    ("cluster_ops", fuzz::cluster_ops, 20),
];

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let b = std::fs::read(&p).unwrap();
            (p, b)
        })
        .collect()
}

#[test]
fn every_corpus_file_replays_clean() {
    for (target, run, _) in TARGETS {
        let files = corpus(target);
        assert!(files.len() >= 3, "{target}: a corpus of at least 3 files");
        for (path, bytes) in files {
            let ok = std::panic::catch_unwind(|| run(&bytes));
            assert!(ok.is_ok(), "{target} failed on {}", path.display());
        }
    }
}

#[test]
fn seeded_random_inputs_pass_every_target() {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(0x6f55);
    for (target, run, count) in TARGETS {
        // Mutations of corpus files, and plain random bytes.
        let files = corpus(target);
        for i in 0..count {
            let mut bytes = if i % 2 == 0 && !files.is_empty() {
                files[i / 2 % files.len()].1.clone()
            } else {
                let len = (rng.next_u32() % 512) as usize;
                (0..len).map(|_| rng.next_u32() as u8).collect()
            };
            for _ in 0..rng.next_u32() % 8 {
                if bytes.is_empty() {
                    break;
                }
                let at = (rng.next_u32() as usize) % bytes.len();
                bytes[at] ^= rng.next_u32() as u8;
            }
            let ok = std::panic::catch_unwind(|| run(&bytes));
            assert!(ok.is_ok(), "{target} failed on input {i}: {bytes:02x?}");
        }
    }
}
