#![no_main]
//! A configuration file (`latticed run --config`): parsed, then planned
//! (every field validated) against a namespace directory the fuzzer cannot
//! see into. Neither may panic.

use latticed_fuzz::{model::Config, plan};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(config) = serde_json::from_slice::<Config>(data) else {
        return;
    };
    let dir = std::env::temp_dir().join("latticed-fuzz-netns");
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(dir.join("vpc-a"), b"");
    let _ = plan::plan(&config, &dir);
});
