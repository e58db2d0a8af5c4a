//! tracefs `format` file text → field offsets: never panics, and every
//! field it returns is found again by name.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spawnprof::probe::tracefs::EventFormat;

fuzz_target!(|data: &[u8]| {
    // The loader reads the file with read_to_string: only UTF-8 gets here.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(format) = EventFormat::parse(text) else {
        return;
    };
    assert!(!format.fields.is_empty());
    for (name, field) in &format.fields {
        assert_eq!(format.offset_of(name, field.size).ok(), Some(field.offset));
        assert!(format.offset_of(name, field.size.wrapping_add(1)).is_err());
        let _ = field.is_data_loc();
    }
    // The lookups the loader makes.
    for name in ["parent_pid", "child_pid", "pid", "old_pid", "filename"] {
        let _ = format.offset_of(name, 4);
    }
});
