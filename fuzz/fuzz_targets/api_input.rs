#![no_main]
//! An API request as the control API sees it: METHOD, path and JSON body
//! (one per line), routed to an operation of either API it serves (VPC
//! Lattice, RAM) and validated against that operation's input shape.
//! Neither may panic, and every problem names a field.

use latticed_fuzz::api_model::Api;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines = text.splitn(3, '\n');
    let (Some(method), Some(path)) = (lines.next(), lines.next()) else {
        return;
    };
    let Ok(body) = serde_json::from_str::<serde_json::Value>(lines.next().unwrap_or("{}")) else {
        return;
    };
    for api in [Api::Lattice, Api::Ram] {
        let m = api.model();
        let Some((op, _params)) = m.route(method, path) else {
            continue;
        };
        let Some(shape) = &op.input else { continue };
        for problem in m.validate(shape, &body) {
            assert!(
                !problem.name.is_empty() && !problem.message.is_empty(),
                "{problem:?}"
            );
        }
    }
});
