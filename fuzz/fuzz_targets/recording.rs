//! A recording directory's files → (summary, records), then what
//! `spawnprof report` prints from them. Input: summary.json, a NUL byte,
//! spawns.jsonl.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spawnprof::{
    recording::parse_recording,
    report::{breakdown, table},
};

fuzz_target!(|data: &[u8]| {
    let (summary, spawns) = match data.iter().position(|&b| b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    // The loader reads both with read_to_string: only UTF-8 gets parsed.
    let (Ok(summary), Ok(spawns)) = (std::str::from_utf8(summary), std::str::from_utf8(spawns))
    else {
        return;
    };
    let Ok((summary, records)) = parse_recording(summary, spawns) else {
        return;
    };
    let _ = table::processes(&records, 40, records.len() as u64, "in spawns.jsonl", Some(80));
    let _ = table::breakdown(&breakdown::of_summary(&summary), Some(80));
});
