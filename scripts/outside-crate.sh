#!/usr/bin/env bash
# Builds a no-allocator node from a crate outside this workspace, for a
# Cortex-M target, following only gossip-core's documented recipe
# ("Without an allocator" in its crate docs): `default-features = false`, a
# `FixedStorage` and `Config::fit`, the RNG traits through the re-exported
# `rand_core`. The crate is a staticlib, so linking it fails if anything
# still needs an allocator or std. Made in a temporary folder, removed after.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
target=thumbv7em-none-eabihf
if ! rustup target list --installed | grep -qx "$target"; then
    rustup target add "$target"
fi
dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT
mkdir -p "$dir/src"
cat >"$dir/Cargo.toml" <<EOF
[package]
name = "outside"
version = "0.0.0"
edition = "2024"
publish = false

[lib]
crate-type = ["staticlib"]

[dependencies]
gossip-core = { path = "$repo/gossip-core", default-features = false }
rand_xoshiro = "0.8"

[profile.dev]
panic = "abort"

[profile.release]
panic = "abort"

[workspace]
EOF
cat >"$dir/src/lib.rs" <<'EOF'
#![no_std]
//! A node with fixed capacities and no allocator, from outside the workspace.

use gossip_core::rand_core::SeedableRng;
use gossip_core::state::Generation;
use gossip_core::wire::ClusterId;
use gossip_core::{Config, FixedStorage, Instant, Node};
use rand_xoshiro::Xoshiro128PlusPlus;

/// 16 peers, 488 bytes of state each, 512-byte datagrams, 2 pending replies.
type Storage = FixedStorage<16, 488, 512, 2>;

/// Starts a node and counts the datagrams of its first round.
// SAFETY: `no_mangle` exports this one symbol from a library that defines
// no other of the same name.
#[unsafe(no_mangle)]
pub extern "C" fn gossip_first_round(seed: u64) -> u32 {
    let Ok(config) = Config::lan(ClusterId::from_name("outside")).fit::<Storage>() else {
        return 0;
    };
    let me = core::net::SocketAddr::from(([10, 0, 0, 1], 7946));
    let seeds = [core::net::SocketAddr::from(([10, 0, 0, 2], 7946))];
    let rng = Xoshiro128PlusPlus::seed_from_u64(seed);
    let Ok(mut node) =
        Node::<Storage, _>::new(config, me, Generation(1), &seeds, rng, Instant::ZERO)
    else {
        return 0;
    };
    node.handle_timeout(Instant::ZERO);
    let mut buf = [0u8; 512];
    let mut sent = 0;
    while node.poll_transmit(Instant::ZERO, &mut buf).is_some() {
        sent += 1;
    }
    sent
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    loop {}
}
EOF
(cd "$dir" && cargo build --release --target "$target" 2>&1 | tail -n 20)
lib="$dir/target/$target/release/liboutside.a"
[ -f "$lib" ] || { echo "OUTSIDE CRATE: no $lib"; exit 1; }
echo "outside crate: no-allocator node for $target linked ($(wc -c <"$lib") bytes of staticlib)"
