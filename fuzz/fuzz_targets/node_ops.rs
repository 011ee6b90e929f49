//! `node_ops`: see `gossip_sim::fuzz::node_ops` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gossip_sim::fuzz::node_ops(data));
