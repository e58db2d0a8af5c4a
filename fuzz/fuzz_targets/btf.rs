//! Kernel BTF → member offsets and function names. A BTF blob read from a
//! file must never panic the loader nor keep it busy: parse, then look up
//! names taken from the blob itself (so lookups can hit its structs).
#![no_main]

use libfuzzer_sys::fuzz_target;
use spawnprof::probe::btf::KernelBtf;

fuzz_target!(|data: &[u8]| {
    let Ok(btf) = KernelBtf::parse(data) else {
        return;
    };
    let mut names: Vec<&str> = data
        .split(|&b| b == 0)
        .filter(|s| !s.is_empty() && s.len() <= 32)
        .filter_map(|s| std::str::from_utf8(s).ok())
        .take(12)
        .collect();
    // The lookups the loader makes on a real kernel.
    names.extend([
        "task_struct",
        "mm_struct",
        "mm",
        "env_start",
        "copy_process",
    ]);
    for s in &names {
        let _ = btf.has_function(s);
        for m in &names {
            let _ = btf.member_offset(s, m);
        }
    }
});
