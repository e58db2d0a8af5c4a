//! A ring buffer too small for a burst loses no spawn: the kernel keeps
//! each finished spawn it could not send, and spawnprof collects it.
use spawnprof_tests::{record, record_spawner};

#[test]
fn a_one_page_ring_buffer_under_a_burst_keeps_every_spawn() {
    let run = record(
        "loss",
        &[
            "--ring-buffer",
            "4096",
            // No exec notices for stack symbolization: only spawns compete
            // for the ring.
            "--sample-hz",
            "0",
            "--",
            "sh",
            "-c",
            // spawnprof (the shell's parent) is stopped for the burst, as a
            // reader on a loaded machine falls behind. Left running on an
            // idle CPU it is woken at half full and can keep up with a
            // shell's spawns, and the burst would not overflow the ring.
            "kill -STOP $PPID; for i in $(seq 300); do /bin/true & done; wait; kill -CONT $PPID",
        ],
    );
    let s = &run.summary;
    assert_eq!(s.lost_spawns, 0, "{:?}", s.lost);
    // `seq` is one more child of the shell.
    assert_eq!(run.children().len(), 301, "every spawn has its record");
    assert!(
        s.lost.get("spawn_deferred").copied().unwrap_or(0) > 0 && s.assembly.collected_deferred > 0,
        "a one-page ring buffer (six spawn records) must overflow under 300 parallel \
         spawns, and the spawns it had no room for be collected: {:?} {:?}",
        s.lost,
        s.assembly
    );
    assert!(
        run.children().iter().all(|r| r.ts.reap.is_some()),
        "each collected spawn is whole"
    );
    assert!(!run.stderr().contains("WARNING"), "{}", run.stderr());
}

/// More unreaped children than the kernel keeps spawn slots for (8,192):
/// the rest, whose slot a sibling holds, go to the spill hash and are all
/// recorded whole.
#[test]
fn more_live_spawns_than_slots_are_all_recorded() {
    let spawner: Vec<&str> = "--method posix-spawn --mode batched --count 10000 --warmup 0"
        .split(' ')
        .collect();
    let run = record_spawner("slots_full", &["--sample-hz", "0"], &spawner);
    let s = &run.summary;
    assert_eq!(s.lost_spawns, 0, "{:?}", s.lost);
    let children = run.children();
    assert_eq!(children.len(), 10000, "every spawn has its record");
    assert!(
        children
            .iter()
            .all(|r| r.ts.reap.is_some() && r.ts.exec_done.is_some()),
        "each spawn is whole"
    );
}
