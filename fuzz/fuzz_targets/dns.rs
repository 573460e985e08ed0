#![no_main]
//! A DNS query from a tenant, through the per-namespace resolver's own
//! answering (`agent/src/dns.rs`, `fuzz_query`).

libfuzzer_sys::fuzz_target!(|data: &[u8]| latticed_fuzz::dns::fuzz_query(data));
