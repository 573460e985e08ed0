#![no_main]
//! See `latticed_proxy::fuzzing::policy`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| latticed_proxy::fuzzing::policy(data));
