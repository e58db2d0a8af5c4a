//! Synthetic recordings: seeded, realistic spawn records for tests, fuzzing
//! and the report-rendering benchmark.
use std::{collections::BTreeMap, fs, path::Path};

use anyhow::{Context as _, Result};

use super::{Summary, write_summary};
use crate::{
    analysis::{Accumulator, Counts, StageStats},
    model::{
        ExecAttempt, Faults, KERNEL_FN_STAGES, KernelFnTimes, STAGES, SpawnRecord, Timestamps,
        describe_flags,
    },
    probe::plan::{Mechanism, PlanRow, Rejection},
};

/// xorshift64*: small, seedable, and good enough for synthetic timings.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Log-normal around `median` ns: spawn timings have long right tails.
    fn ns(&mut self, median: f64, sigma: f64) -> u64 {
        let (u1, u2) = (self.unit().max(1e-12), self.unit());
        let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
        (median * (sigma * z).exp()).max(1.0) as u64
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }
}

const PARENTS: &[(u32, &str)] = &[
    (1000, "bash"),
    (1001, "make"),
    (1002, "cargo"),
    (1003, "python3"),
    (1004, "node"),
];
const PROGRAMS: &[&str] = &[
    "/usr/bin/cc",
    "/usr/bin/git",
    "/usr/bin/sed",
    "/bin/true",
    "/usr/bin/rustc",
    "/usr/lib/gcc/x86_64-linux-gnu/12/cc1",
];
const PATH_DIRS: &[&str] = &["/root/.cargo/bin", "/usr/local/sbin", "/usr/local/bin"];

/// `n` realistic spawn records, generated one at a time (so even millions
/// need no memory): mostly posix_spawn-style vforks via clone3, forks with
/// address-space copies (the kernel-summed stages included), some PATH
/// searches with failed exec attempts, and threads.
pub fn synthesize(n: usize, seed: u64) -> impl Iterator<Item = SpawnRecord> {
    let mut rng = Rng(seed.max(1));
    (0..n).map(move |i| synth_one(&mut rng, i))
}

/// One spawn: its parent and method, the parent's side of the clone, the
/// child's start, its exec (processes only) and its end. The draws from
/// `rng` happen in this order, so a seed always gives the same records.
fn synth_one(rng: &mut Rng, i: usize) -> SpawnRecord {
    let (ppid, pcomm) = PARENTS[(rng.next() % PARENTS.len() as u64) as usize];
    let (method, syscall, flags) = pick_method(rng.unit());
    let thread = method == "thread";
    let mut ts = Timestamps::default();
    let (woken, kernel_fn) = synth_clone(rng, i, method, &mut ts);
    let mut c = woken + rng.ns(8_000.0, 1.2);
    ts.first_run = Some(c);
    c += rng.ns(1_500.0, 0.4);
    ts.child_return = Some(c);
    let exec = if thread {
        Exec::default()
    } else {
        synth_exec(rng, method, &mut c, &mut ts)
    };
    synth_end(rng, method, thread, (woken, c), &mut ts);
    let comm_after = exec
        .path
        .as_deref()
        .map(|p| p.rsplit('/').next().unwrap_or(p).chars().take(15).collect());
    let faults = Faults {
        pre_exec: Some(rng.next() % 60),
        pre_exec_cow: Some(rng.next() % 20),
        total: Some(100 + rng.next() % 400),
        cow_total: Some(20 + rng.next() % 20),
        parent_cow_after_fork: (method == "fork").then(|| rng.next() % 40),
    };
    let mut r = SpawnRecord {
        parent_pid: Some(ppid),
        parent_tid: Some(ppid),
        parent_comm: Some(pcomm.into()),
        child_pid: Some(10_000 + (i as u32 % 4_000_000)),
        thread,
        root: false,
        syscall: Some(syscall.into()),
        clone_flags: Some(flags),
        flags: Some(describe_flags(flags, None)),
        method: Some(method.into()),
        comm_before: Some(pcomm.into()),
        comm_after,
        exec_path: exec.path,
        env_count: (!thread).then_some(35),
        env_bytes: (!thread).then_some(2_100),
        argc: (!thread).then_some(3),
        ts,
        kernel_fn,
        exec_attempts: exec.attempts,
        failed_exec_attempts: exec.failed,
        faults,
        exit_status: (!thread).then_some(0),
        ..Default::default()
    };
    r.derive_durations();
    r
}

/// (method, syscall, clone flags) for a roll in [0, 1): mostly
/// posix_spawn-style vforks via clone3, then forks, vforks and threads.
fn pick_method(roll: f64) -> (&'static str, &'static str, u64) {
    if roll < 0.55 {
        ("vfork", "clone3", 0x4111)
    } else if roll < 0.80 {
        ("fork", "clone", 0x0120_0011)
    } else if roll < 0.88 {
        ("vfork", "vfork", 0x4111)
    } else {
        ("thread", "clone3", 0x003d_0f00)
    }
}

/// The parent's side of spawn `i`, from clone entry to the child's wakeup
/// (returned, with the kernel-summed times of a fork's address-space copy).
fn synth_clone(
    rng: &mut Rng,
    i: usize,
    method: &str,
    ts: &mut Timestamps,
) -> (u64, Option<KernelFnTimes>) {
    let mut t = i as u64 * 50_000 + rng.next() % 20_000;
    ts.clone_enter = Some(t);
    t += rng.ns(1_500.0, 0.3);
    ts.copy_process_enter = Some(t);
    let mut kernel_fn = None;
    if method == "fork" {
        t += rng.ns(3_000.0, 0.3);
        ts.dup_mmap_enter = Some(t);
        ts.mm_lock_wait = Some(t);
        t += rng.ns(400.0, 1.0);
        ts.mm_copy_start = Some(t);
        let copy = rng.ns(120_000.0, 0.8);
        t += copy;
        ts.mm_copy_end = Some(t);
        ts.dup_mmap_exit = Some(t + 200);
        t += 200;
        kernel_fn = Some(KernelFnTimes {
            copy_page_range_ns: copy * 7 / 10,
            copy_page_range_calls: 40 + rng.next() % 200,
            anon_vma_fork_ns: copy / 10,
            anon_vma_fork_calls: 10 + rng.next() % 50,
        });
    }
    t += rng.ns(15_000.0, 0.4);
    ts.copy_process_exit = Some(t);
    ts.newtask = Some(t);
    t += rng.ns(1_000.0, 0.3);
    ts.fork_done = Some(t);
    t += rng.ns(2_500.0, 0.5);
    ts.wakeup_new = Some(t);
    (t, kernel_fn)
}

/// A child's exec attempts.
#[derive(Default)]
struct Exec {
    attempts: Vec<ExecAttempt>,
    failed: u64,
    /// The successful one's.
    path: Option<String>,
}

/// A process's exec, `c` its clock: sometimes a PATH search of failed
/// attempts first, then the exec that succeeds.
fn synth_exec(rng: &mut Rng, method: &str, c: &mut u64, ts: &mut Timestamps) -> Exec {
    let mut exec = Exec::default();
    *c += rng.ns(if method == "fork" { 40_000.0 } else { 6_000.0 }, 0.8);
    ts.exec_first_enter = Some(*c);
    let program = rng.pick(PROGRAMS);
    let searches = if rng.unit() < 0.3 { rng.next() % 4 } else { 0 };
    let base = program.rsplit('/').next().unwrap_or(program);
    for k in 0..searches {
        let dir = PATH_DIRS[k as usize % PATH_DIRS.len()];
        let enter = *c;
        *c += rng.ns(2_000.0, 0.4);
        exec.attempts.push(ExecAttempt {
            enter,
            exit: Some(*c),
            ret: Some(-2),
            path: format!("{dir}/{base}"),
            syscall: "execve".into(),
            ..Default::default()
        });
        exec.failed += 1;
        *c += 300;
    }
    ts.exec_enter = Some(*c);
    let enter = *c;
    *c += rng.ns(45_000.0, 0.4);
    ts.exec_prepare = Some(*c);
    *c += rng.ns(90_000.0, 0.6);
    ts.exec_done = Some(*c);
    *c += rng.ns(8_000.0, 0.6);
    ts.exec_return = Some(*c);
    exec.attempts.push(ExecAttempt {
        enter,
        exit: Some(*c),
        ret: Some(0),
        path: program.into(),
        env_count: Some(35),
        argc: Some(1 + rng.next() % 12),
        syscall: "execve".into(),
        ..Default::default()
    });
    exec.path = Some(program.to_string());
    exec
}

/// The parent's return, the child's exit and (processes) its reap, after
/// the child's wakeup and the end of its exec: `(woken, c)`.
fn synth_end(
    rng: &mut Rng,
    method: &str,
    thread: bool,
    (woken, c): (u64, u64),
    ts: &mut Timestamps,
) {
    // vfork's parent resumes once the child has exec'd; fork's right away.
    let parent_back = if method == "vfork" {
        c + rng.ns(20_000.0, 0.8)
    } else {
        woken + rng.ns(1_200.0, 0.4)
    };
    ts.clone_exit = Some(parent_back);
    let exit = c.max(parent_back) + rng.ns(800_000.0, 1.5);
    ts.exit = Some(exit);
    if !thread {
        ts.reap = Some(exit + rng.ns(60_000.0, 1.0));
    }
}

/// A plausible attach plan (the tracepoint tier), for synthetic summaries.
pub fn synthetic_plan() -> Vec<PlanRow> {
    STAGES
        .iter()
        .filter(|s| s.name != "spawn_to_exec")
        .map(|s| s.name)
        .chain(KERNEL_FN_STAGES.iter().map(|(n, _)| *n))
        .map(|stage| {
            let summed = KERNEL_FN_STAGES.iter().any(|(n, _)| *n == stage);
            PlanRow {
                stage: stage.into(),
                mechanism: if summed {
                    Mechanism::Unavailable
                } else {
                    Mechanism::Tracepoint
                },
                how: format!("synthetic: {stage} from tracepoints"),
                targets: vec!["sched:sched_process_fork".into()],
                rejected: vec![Rejection {
                    mechanism: Mechanism::Fentry,
                    reason: "synthetic recording: <no BTF> & no kprobes".into(),
                }],
            }
        })
        .collect()
}

/// A summary with the given statistics, for synthetic recordings and tests.
pub fn synthetic_summary(
    target: &str,
    stages: BTreeMap<String, StageStats>,
    counts: Counts,
) -> Summary {
    Summary {
        start_monotonic_ns: 1_000_000_000,
        start_unix_s: 1_767_225_600,
        duration_ns: 60_000_000_000,
        exit_code: Some(0),
        plan: synthetic_plan(),
        counts,
        stages,
        captured: vec!["synthetic".into()],
        stack_sampling: "off".into(),
        ..Summary::new(target.into(), "6.18.0-synthetic".into())
    }
}

/// Writes a synthetic recording of `n` spawns (spawns.jsonl streamed, then
/// summary.json) into `dir`.
pub fn write_synthetic_recording(dir: &Path, n: usize, seed: u64) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut writer = super::SpawnWriter::create(dir)?;
    // The recorder's own accumulator, so the summary reads like a real one.
    let mut acc = Accumulator::default();
    for r in synthesize(n, seed) {
        acc.add(&r);
        writer.write(&r);
    }
    writer.finish()?;
    let mut summary = synthetic_summary(
        &format!("synthetic: {n} spawns"),
        acc.stage_stats(),
        acc.counts(),
    );
    summary.spawn_time = acc.spawn_time();
    write_summary(dir, &summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_records_are_ordered_and_complete() {
        let recs: Vec<SpawnRecord> = synthesize(2_000, 7).collect();
        let methods: std::collections::BTreeSet<&str> =
            recs.iter().filter_map(|r| r.method.as_deref()).collect();
        assert_eq!(
            methods.into_iter().collect::<Vec<_>>(),
            vec!["fork", "thread", "vfork"]
        );
        for r in &recs {
            assert!(r.duration("clone").is_some());
            assert!(r.duration("copy_process").is_some());
            if r.thread {
                assert!(r.exec_path.is_none());
            } else {
                assert!(r.duration("spawn_to_exec").is_some());
                assert_eq!(r.exec_attempts.len() as u64, r.failed_exec_attempts + 1);
            }
            if r.method.as_deref() == Some("fork") {
                let d = r.duration("dup_mmap").unwrap();
                let k = r.kernel_fn.as_ref().unwrap();
                assert!(k.copy_page_range_ns + k.anon_vma_fork_ns <= d);
            }
        }
        assert!(recs.iter().any(|r| r.failed_exec_attempts > 0));
        // Same seed, same records.
        assert_eq!(synthesize(5, 7).collect::<Vec<_>>(), recs[..5].to_vec());
    }

    /// Keeps a synthetic recording in `$SPAWNPROF_SYNTHETIC_DIR`, to render
    /// with `spawnprof report` and compare the outputs of two versions.
    /// `SPAWNPROF_SYNTHETIC_DIR=DIR cargo test -p spawnprof --lib keep_a_synthetic -- --ignored`
    #[test]
    #[ignore]
    fn keep_a_synthetic_recording_for_comparing_versions() {
        let dir = std::env::var_os("SPAWNPROF_SYNTHETIC_DIR").expect("SPAWNPROF_SYNTHETIC_DIR");
        write_synthetic_recording(Path::new(&dir), 20_000, 0x5eed).unwrap();
    }
}
