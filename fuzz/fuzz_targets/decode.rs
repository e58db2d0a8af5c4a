//! Ring-buffer record → event: any byte string is either rejected or
//! decoded into an event whose text fits the wire limits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spawnprof::trace::decode::decode;
use spawnprof_common::{TEXT_LEN, kind};

fuzz_target!(|data: &[u8]| {
    let Ok(event) = decode(data) else {
        return;
    };
    assert!(event.mark.kind != 0 && event.mark.kind < kind::COUNT);
    let _ = event.comm();
    if let Some(text) = &event.text {
        // Lossy UTF-8 can grow invalid bytes into U+FFFD (3 bytes each).
        assert!(text.len() <= 3 * TEXT_LEN);
        // Only captured argument/environment blocks keep their NULs.
        if !matches!(event.mark.kind, kind::EXEC_ARGS | kind::EXEC_ENV) {
            assert!(!text.contains('\0'));
        }
    } else {
        assert!(!event.text_truncated);
    }
});
