//! `wire_decode`: see `gossip_sim::fuzz::wire_decode` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gossip_sim::fuzz::wire_decode(data));
