#![no_main]
//! See `latticed_proxy::fuzzing::sigv4`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| latticed_proxy::fuzzing::sigv4(data));
