//! Ring-buffer record → record: any byte string is either rejected or
//! decoded into a record whose lengths fit their buffers.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spawnprof::trace::decode::{Record, decode, path_str, strings};
use spawnprof_common::{PATH_LEN_MASK, TEXT_LEN, TEXT_TRUNCATED};

fuzz_target!(|data: &[u8]| {
    let Ok(record) = decode(data) else {
        return;
    };
    match record {
        Record::Spawn(s) => {
            assert!(usize::from(s.exec_path_len & PATH_LEN_MASK) <= TEXT_LEN);
            // Lossy UTF-8 can grow invalid bytes into U+FFFD (3 bytes each).
            assert!(path_str(&s.exec_path, s.exec_path_len).len() <= 3 * TEXT_LEN);
            let _ = s.state();
        }
        Record::Exec(e) => {
            let path = path_str(&e.path, e.path_len);
            assert!(!path.contains('\0') && path.len() <= 3 * TEXT_LEN);
        }
        Record::Text(t) => {
            assert!(((t.len & !TEXT_TRUNCATED) as usize) <= TEXT_LEN);
            assert!(strings(&t).iter().all(|s| !s.is_empty() && !s.contains('\0')));
        }
        Record::Notice(_) => {}
    }
});
