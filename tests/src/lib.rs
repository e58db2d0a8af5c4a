//! Helpers for the real-kernel integration tests in `tests/tests/`.
//!
//! The tests drive the built `spawnprof` binary (and the reference spawner)
//! the way a user would, then read the recording back with the library.
//! `cargo xtask test` builds both binaries and points `SPAWNPROF_BIN` and
//! `SPAWNPROF_SPAWNER` at them.
use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::atomic::{AtomicU32, Ordering},
};

use spawnprof::{
    model::SpawnRecord,
    recording::{Summary, load_recording},
};

pub mod browser;
pub mod serve;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn binary(env: &str, name: &str) -> PathBuf {
    if let Ok(p) = std::env::var(env) {
        return p.into();
    }
    let root = workspace_root();
    for profile in ["debug", "release"] {
        let p = root.join("target").join(profile).join(name);
        if p.exists() {
            return p;
        }
    }
    panic!("{name} is not built: run the tests through `cargo xtask test` (or set {env})");
}

/// The spawnprof binary under test.
pub fn spawnprof_bin() -> PathBuf {
    binary("SPAWNPROF_BIN", "spawnprof")
}

/// The reference spawner binary.
pub fn spawner_bin() -> PathBuf {
    binary("SPAWNPROF_SPAWNER", "spawnprof-spawner")
}

/// Fails loudly unless the test can load eBPF programs.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "these tests load eBPF programs into the kernel: run them as root (`cargo xtask test` does)"
    );
}

/// A fresh output directory under the target dir.
pub fn out_dir(test: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = workspace_root()
        .join("target")
        .join("itest-out")
        .join(format!(
            "{test}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// A finished `spawnprof record` run.
pub struct Run {
    pub output: Output,
    pub dir: PathBuf,
    pub summary: Summary,
    pub records: Vec<SpawnRecord>,
}

impl Run {
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }

    /// Process spawns (not threads, not the root command).
    pub fn children(&self) -> Vec<&SpawnRecord> {
        self.records
            .iter()
            .filter(|r| !r.thread && !r.root)
            .collect()
    }

    /// The root command's direct children (a zygote's children are
    /// grandchildren).
    pub fn children_of_root(&self) -> Vec<&SpawnRecord> {
        let root = self.root().child_pid;
        self.children()
            .into_iter()
            .filter(|r| r.parent_pid == root)
            .collect()
    }

    /// The root command's children made by fork (not vfork, posix_spawn
    /// or a thread).
    pub fn forks_of_root(&self) -> Vec<&SpawnRecord> {
        self.children_of_root()
            .into_iter()
            .filter(|r| r.method.as_deref() == Some("fork"))
            .collect()
    }

    pub fn root(&self) -> &SpawnRecord {
        self.records
            .iter()
            .find(|r| r.root)
            .expect("the root command has a record")
    }
}

/// The one gap a record may show on this host. Context switches away from
/// PID 1's threads (this sandbox's agent) fire no sched_switch at all, so
/// now and then a child's first switch-in goes unseen. Its first run then
/// comes from the scheduler's wait count at its return from clone, unless
/// it had been switched in twice by then: the record says so, and it must
/// stay rare.
pub const FIRST_RUN_MISSED: &str = "first run not seen (its first switch-in was missed)";

/// Asserts every record is complete, except that at most one of them may
/// have had its first switch-in missed (see [`FIRST_RUN_MISSED`]).
pub fn assert_complete(what: &str, records: &[&SpawnRecord]) {
    assert_complete_but(what, records, 1);
}

/// [`assert_complete`], allowing `max_missed` first-run misses.
pub fn assert_complete_but(what: &str, records: &[&SpawnRecord], max_missed: usize) {
    let mut missed = 0;
    for r in records {
        if r.incomplete == [FIRST_RUN_MISSED] {
            missed += 1;
            continue;
        }
        assert!(r.incomplete.is_empty(), "{what}: {:?}", r.incomplete);
    }
    assert!(
        missed <= max_missed,
        "{what}: {missed} of {} first runs missed",
        records.len()
    );
}

/// A fork's wait for its parent's mmap lock, asserted to be timed and to
/// lie within its dup_mmap; `None` when the record has no dup_mmap.
pub fn lock_wait_within_dup_mmap(r: &SpawnRecord) -> Option<u64> {
    let dup_mmap = r.duration("dup_mmap")?;
    let wait = r.duration("mm_lock_wait");
    assert!(
        wait.is_some_and(|w| w <= dup_mmap),
        "a fork's lock wait is timed, within its dup_mmap: {r:#?}"
    );
    wait
}

/// Runs `spawnprof record -o DIR <args>` and loads the recording.
pub fn record(test: &str, args: &[&str]) -> Run {
    require_root();
    let dir = out_dir(test);
    let output = Command::new(spawnprof_bin())
        .arg("record")
        .arg("-o")
        .arg(&dir)
        .args(args)
        .output()
        .expect("run spawnprof");
    let (summary, records) = load_recording(&dir).unwrap_or_else(|e| {
        panic!(
            "no recording in {}: {e:#}\nstderr:\n{}",
            dir.display(),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    Run {
        output,
        dir,
        summary,
        records,
    }
}

/// Runs `spawnprof record -o DIR <record_args> -- spawnprof-spawner
/// <spawner_args>`, checks it succeeded and loads the recording.
pub fn record_spawner(test: &str, record_args: &[&str], spawner_args: &[&str]) -> Run {
    let bin = spawner_bin();
    let mut all = record_args.to_vec();
    all.extend(["--", bin.to_str().expect("utf-8 path")]);
    all.extend_from_slice(spawner_args);
    let run = record(test, &all);
    assert!(run.output.status.success(), "{}", run.stderr());
    run
}

/// Runs `spawnprof diff A B -o OUT` on a wide terminal, checks it
/// succeeded and returns its table.
pub fn diff(a: &Path, b: &Path, out: &Path) -> String {
    let output = Command::new(spawnprof_bin())
        .env("COLUMNS", "220")
        .arg("diff")
        .args([a, b])
        .arg("-o")
        .arg(out)
        .output()
        .expect("run spawnprof diff");
    let table = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{table}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    table
}

/// `summary.json` as plain JSON: for fields the library's types lack.
pub fn summary_json(dir: &Path) -> serde_json::Value {
    let path = dir.join("summary.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `spawns.jsonl` as plain JSON, one value per record: for fields the
/// library's types lack.
pub fn records_json(dir: &Path) -> Vec<serde_json::Value> {
    let path = dir.join("spawns.jsonl");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .collect()
}
