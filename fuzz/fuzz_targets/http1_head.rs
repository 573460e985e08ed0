#![no_main]
//! See `latticed_proxy::fuzzing::http1_head`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| latticed_proxy::fuzzing::http1_head(data));
