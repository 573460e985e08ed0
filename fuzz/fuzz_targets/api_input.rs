#![no_main]
//! An API request as the control API sees it: METHOD, path and JSON body
//! (one per line), routed to an operation and validated against the
//! model's input shape. Neither may panic, and every problem names a field.

use latticed_fuzz::api_model::model;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines = text.splitn(3, '\n');
    let (Some(method), Some(path)) = (lines.next(), lines.next()) else {
        return;
    };
    let m = model();
    let Some((op, _params)) = m.route(method, path) else {
        return;
    };
    let Ok(body) = serde_json::from_str::<serde_json::Value>(lines.next().unwrap_or("{}")) else {
        return;
    };
    for problem in m.validate(&op.name, &body) {
        assert!(
            !problem.name.is_empty() && !problem.message.is_empty(),
            "{problem:?}"
        );
    }
});
