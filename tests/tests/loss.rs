//! A ring buffer too small for a burst loses no spawn: the kernel keeps
//! each finished spawn it could not send, and spawnprof collects it.
use spawnprof_tests::record;

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
            "for i in $(seq 300); do /bin/true & done; wait",
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
