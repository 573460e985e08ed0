#![no_main]
//! See `latticed_proxy::fuzzing::path`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| latticed_proxy::fuzzing::path(data));
