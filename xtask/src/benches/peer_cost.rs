//! The in-kernel run time of bpftrace's programs per spawn, doing the same
//! stages as spawnprof's default recording: the yardstick for
//! `record --probe-cost`. And what those run-time statistics cost by
//! themselves. They are on only for these runs (`kernel.bpf_stats_enabled`),
//! never while rates are timed. Also the bpftrace setups the rate benches
//! share (`bench-overhead`, `bench-serve`).
use std::{
    collections::BTreeMap,
    io::{BufRead as _, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
};

use anyhow::{Context as _, Result, bail};

const STATS_SYSCTL: &str = "/proc/sys/kernel/bpf_stats_enabled";

/// BPF run time per spawn as the kernel's statistics report it.
#[derive(Clone, Copy)]
pub struct RunTime {
    pub us_per_spawn: f64,
    pub runs_per_spawn: f64,
}

impl RunTime {
    /// Less what the statistics report for `empty_ns` a run of a
    /// near-empty program: their own clock, not the programs' work.
    pub fn net_of(self, empty_ns: f64) -> f64 {
        (self.us_per_spawn - self.runs_per_spawn * empty_ns / 1000.0).max(0.0)
    }
}

/// bpftrace runs `script` while `argv` makes `spawns` spawns: its
/// programs' run time per spawn.
pub fn bpftrace_cost(script: &str, argv: &[String], spawns: u64) -> Result<RunTime> {
    let _stats = Stats::on()?;
    let mut bpftrace = start(script)?;
    let result = measure(bpftrace.id(), argv);
    // SIGINT: bpftrace prints its maps (to the null device) and detaches.
    unsafe { libc::kill(bpftrace.id() as i32, libc::SIGINT) };
    let _ = bpftrace.wait();
    let (runs, ns) = result?;
    let spawns = spawns.max(1) as f64;
    Ok(RunTime {
        us_per_spawn: ns as f64 / spawns / 1000.0,
        runs_per_spawn: runs as f64 / spawns,
    })
}

/// One-line programs on the clone3 entry, which each spawn of the loop
/// passes once: what timing one stage inside the spawn call costs at the
/// least on this host, whatever the tracer.
const STAGE_FLOOR: [(&str, &str); 3] = [
    (
        "an empty program",
        "tracepoint:syscalls:sys_enter_clone3 /tid == 0/ { @n = count(); }",
    ),
    (
        "one clock read",
        "tracepoint:syscalls:sys_enter_clone3 { $t = nsecs; if ($t == 0) { @n = count(); } }",
    ),
    (
        "a timestamp stored under the tid",
        "tracepoint:syscalls:sys_enter_clone3 { @t[tid] = nsecs; }",
    ),
];

/// `rounds` interleaved rounds of each [`STAGE_FLOOR`] program while `argv`
/// makes `spawns` spawns: the time the statistics report for a run of each.
pub fn stage_floor(argv: &[String], spawns: u64, rounds: usize) -> Result<()> {
    let mut ns = vec![Vec::new(); STAGE_FLOOR.len()];
    for _ in 0..rounds {
        for (i, (_, script)) in STAGE_FLOOR.iter().enumerate() {
            let t = bpftrace_cost(script, argv, spawns)?;
            ns[i].push(t.us_per_spawn * 1000.0 / t.runs_per_spawn.max(f64::MIN_POSITIVE));
        }
    }
    let each: Vec<String> = STAGE_FLOOR
        .iter()
        .zip(&ns)
        .map(|((name, _), v)| format!("{name} {} ns", super::spread(v, 0)))
        .collect();
    println!(
        "One bpftrace program on the clone3 entry, inside each spawn, a run as the statistics \
         report it (median of {rounds} rounds): {}. Caches are cold there: each stage timed \
         inside the spawn call costs about the last figure, whichever tracer times it",
        each.join(", ")
    );
    Ok(())
}

/// bpftrace doing what spawnprof's default recording does on a
/// tracepoint-only kernel, stage for stage: the clone call, fork to
/// wake-up, wake-up to first run, the exec call, exec to exit, exit to
/// reap, each into a histogram. Unlike spawnprof it filters on no traced
/// set (it has none), and keeps no per-spawn record.
pub(super) const BPFTRACE_STAGES: &str = r#"
tracepoint:syscalls:sys_enter_clone, tracepoint:syscalls:sys_enter_clone3,
tracepoint:syscalls:sys_enter_vfork, tracepoint:syscalls:sys_enter_fork
{ @clone_start[tid] = nsecs; }
tracepoint:syscalls:sys_exit_clone, tracepoint:syscalls:sys_exit_clone3,
tracepoint:syscalls:sys_exit_vfork, tracepoint:syscalls:sys_exit_fork
/@clone_start[tid]/
{ @clone = hist(nsecs - @clone_start[tid]); delete(@clone_start[tid]); }
tracepoint:sched:sched_process_fork { @forked[args->child_pid] = nsecs; }
tracepoint:sched:sched_wakeup_new /@forked[args->pid]/
{ @wakeup = hist(nsecs - @forked[args->pid]); @woken[args->pid] = nsecs; }
tracepoint:sched:sched_switch /@woken[args->next_pid]/
{ @first_run = hist(nsecs - @woken[args->next_pid]); delete(@woken[args->next_pid]); }
tracepoint:syscalls:sys_enter_execve { @exec_start[tid] = nsecs; }
tracepoint:sched:sched_process_exec /@exec_start[tid]/
{ @exec = hist(nsecs - @exec_start[tid]); delete(@exec_start[tid]); }
tracepoint:sched:sched_process_exit /@forked[pid]/
{ @life = hist(nsecs - @forked[pid]); delete(@forked[pid]); @exited[pid] = nsecs; }
tracepoint:syscalls:sys_exit_wait4 /args->ret > 0 && @exited[args->ret]/
{ @reap = hist(nsecs - @exited[args->ret]); delete(@exited[args->ret]); }
"#;

/// A program on the tracepoint of acct(2), which no workload here calls.
pub(super) const IDLE_SYSCALL_TP: &str = "tracepoint:syscalls:sys_enter_acct { @n = count(); }";

/// A bpftrace script of empty programs, one on every tracepoint that
/// `spawnprof record --no-raw-tracepoint` attaches on this kernel (read
/// from a short recording's plan), but the fork-only ones, which stay
/// parked in a posix_spawn loop: what entering a program at each stage
/// costs, with no work in it. Classic tracepoints, because bpftrace 0.17
/// (Debian 12) has no raw ones; compare it with that recording.
pub(super) fn empty_at_our_tracepoints(spawnprof: &Path, out: &Path) -> Result<String> {
    let dir = out.join("plan");
    let argv = ["/bin/true".to_string()];
    let summary = super::recorded_summary(spawnprof, &dir, &["--no-raw-tracepoint"], &argv)?;
    let probes = bpftrace_probes(&summary["plan"]);
    if probes.is_empty() {
        bail!("no tracepoint in the plan of {}", dir.display());
    }
    Ok(format!("{} {{}}", probes.join(",\n")))
}

/// The plan rows' classic tracepoints (`CATEGORY:NAME`) as bpftrace names
/// them, fork-only ones left out (parked while no traced process forks).
fn bpftrace_probes(plan: &serde_json::Value) -> Vec<String> {
    let mut probes: Vec<String> = plan
        .as_array()
        .into_iter()
        .flatten()
        .filter(|row| row["mechanism"] == "tracepoint")
        .flat_map(|row| row["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t.as_str().map(|t| format!("tracepoint:{t}")))
        .filter(|t| !t.contains(":mmap_lock_") && !t.contains(":page_fault_user"))
        .collect();
    probes.sort();
    probes.dedup();
    probes
}

/// bpftrace running `script` for the life of the command `argv`.
pub(super) fn bpftrace_running(script: &str, argv: &[String]) -> Command {
    let mut c = Command::new("bpftrace");
    c.args(["-q", "-e", script, "-c", &argv.join(" ")]);
    c
}

/// A program that only compares its pid, on the tracepoint of getppid(2).
const NEAR_EMPTY: &str = "tracepoint:syscalls:sys_enter_getppid /pid == 1/ { @n = count(); }";

/// getppid() calls per timed run.
const CALLS: &str = "3000000";

/// What the run-time statistics add to each program run on this host, and
/// what they report for a near-empty program (mostly their own clock):
/// `rounds` pairs of a pinned getppid() loop under [`NEAR_EMPTY`],
/// statistics off then on. Returns that reported time.
pub fn statistics_cost(spawn_loop: &Path, rounds: usize) -> Result<f64> {
    let mut bpftrace = start(NEAR_EMPTY)?;
    let result = statistics_rounds(bpftrace.id(), spawn_loop, rounds);
    // SAFETY: signalling our own child.
    unsafe { libc::kill(bpftrace.id() as i32, libc::SIGINT) };
    let _ = bpftrace.wait();
    let (off, on, reported) = result?;
    println!(
        "BPF run-time statistics on this host (pinned getppid() loop, one bpftrace program that \
         only compares its pid, median of {rounds} rounds): {} ns a call with them off, {} on; \
         they add {:.0} ns to each program run and report {reported:.0} ns for it",
        super::spread(&off, 0),
        super::spread(&on, 0),
        super::median(on.clone()) - super::median(off.clone()),
    );
    Ok(reported)
}

/// (ns per call with statistics off, with them on, reported ns per run).
fn statistics_rounds(
    pid: u32,
    spawn_loop: &Path,
    rounds: usize,
) -> Result<(Vec<f64>, Vec<f64>, f64)> {
    let (mut off, mut on, mut runs, mut ns) = (Vec::new(), Vec::new(), 0, 0);
    for _ in 0..rounds {
        off.push(getppid_ns(spawn_loop)?);
        let _stats = Stats::on()?;
        let before = programs(pid)?;
        on.push(getppid_ns(spawn_loop)?);
        let (r, n) = since(pid, &before)?;
        (runs, ns) = (runs + r, ns + n);
    }
    Ok((off, on, ns as f64 / runs.max(1) as f64))
}

/// One timed getppid() loop, pinned to CPU 0 when taskset is there.
fn getppid_ns(spawn_loop: &Path) -> Result<f64> {
    let mut c = match crate::cmd::find_in_path("taskset") {
        Some(t) => {
            let mut c = Command::new(t);
            c.args(["-c", "0"]).arg(spawn_loop);
            c
        }
        None => Command::new(spawn_loop),
    };
    let output = c.args(["getppid", CALLS]).output()?;
    super::number(
        &super::spawner_json(&output.stdout, "ns_per_call")?,
        "/ns_per_call",
    )
}

/// bpftrace with `script`, once its probes are attached.
/// bpftrace running `script`, once it says its probes are attached.
pub(super) fn start(script: &str) -> Result<Child> {
    let script = format!("BEGIN {{ printf(\"attached\\n\"); }}\n{script}");
    let mut child = Command::new("bpftrace")
        .args(["-q", "-e", &script])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("starting bpftrace")?;
    let stdout = child.stdout.take().context("bpftrace's stdout")?;
    let mut first = String::new();
    BufReader::new(stdout).read_line(&mut first)?;
    if first.trim() != "attached" {
        let _ = child.kill();
        bail!("bpftrace did not attach its probes: {first:?}");
    }
    Ok(child)
}

/// (runs, ns) of `pid`'s programs over one run of `argv`.
fn measure(pid: u32, argv: &[String]) -> Result<(u64, u64)> {
    let before = programs(pid)?;
    let status = Command::new(&argv[0])
        .args(&argv[1..])
        .stdout(Stdio::null())
        .status()?;
    if !status.success() {
        bail!("{} failed under bpftrace: {status}", argv.join(" "));
    }
    since(pid, &before)
}

/// (runs, ns) of `pid`'s programs since the reading `before`.
pub(super) fn since(pid: u32, before: &BTreeMap<u64, (u64, u64)>) -> Result<(u64, u64)> {
    Ok(programs(pid)?
        .iter()
        .fold((0, 0), |(runs, ns), (id, (r, n))| {
            let (r0, n0) = before.get(id).copied().unwrap_or_default();
            (runs + r - r0, ns + n - n0)
        }))
}

/// Program id -> (run_cnt, run_time_ns) of every BPF program `pid` holds,
/// from its file descriptors' fdinfo.
pub(super) fn programs(pid: u32) -> Result<BTreeMap<u64, (u64, u64)>> {
    let mut out = BTreeMap::new();
    for fd in std::fs::read_dir(format!("/proc/{pid}/fdinfo"))? {
        let Ok(info) = std::fs::read_to_string(fd?.path()) else {
            continue;
        };
        let field = |name: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(name)?.trim().parse::<u64>().ok())
        };
        if let (Some(id), Some(runs), Some(ns)) =
            (field("prog_id:"), field("run_cnt:"), field("run_time_ns:"))
        {
            out.insert(id, (runs, ns));
        }
    }
    Ok(out)
}

/// BPF run-time statistics on, and back as they were on drop.
pub(super) struct Stats {
    was: String,
}

impl Stats {
    pub(super) fn on() -> Result<Self> {
        let was = std::fs::read_to_string(STATS_SYSCTL).context("reading bpf_stats_enabled")?;
        std::fs::write(STATS_SYSCTL, "1").context("turning BPF statistics on")?;
        Ok(Self { was })
    }
}

impl Drop for Stats {
    fn drop(&mut self) {
        let _ = std::fs::write(STATS_SYSCTL, self.was.trim());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_empty_script_names_each_tracepoint_once_and_skips_fork_only_ones() {
        let plan = serde_json::json!([
            {"mechanism": "tracepoint", "targets": ["syscalls:sys_enter_clone3", "sched:sched_process_fork"]},
            {"mechanism": "tracepoint", "targets": ["sched:sched_switch", "mmap_lock:mmap_lock_released"]},
            {"mechanism": "tracepoint", "targets": ["sched:sched_process_fork", "exceptions:page_fault_user"]},
            {"mechanism": "rawtracepoint", "targets": ["raw_tp:sched_wakeup_new"]},
            {"mechanism": "unavailable", "targets": ["copy_page_range"]},
        ]);
        assert_eq!(
            bpftrace_probes(&plan),
            [
                "tracepoint:sched:sched_process_fork",
                "tracepoint:sched:sched_switch",
                "tracepoint:syscalls:sys_enter_clone3",
            ]
        );
    }
}
