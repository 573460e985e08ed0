#![no_main]
//! See `latticed_proxy::fuzzing::chunked`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| latticed_proxy::fuzzing::chunked(data));
