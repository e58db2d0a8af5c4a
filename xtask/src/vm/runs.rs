//! What the guest runs: the record runs of the full test, each a
//! `spawnprof record` of a fixed workload followed by `cat`s of what it
//! wrote, and the `--shell` commands.
use super::binaries::Binaries;
use super::initramfs::sh_quote;

/// Fork spawns each run must report (the workload makes exactly this many).
pub const SPAWN_COUNT: usize = 20;
/// PATH entries the spawner puts in front of the real ones: each spawn
/// fails this many exec attempts first.
pub const PATH_MISSES: usize = 2;

/// One command run by /init; its output comes back between marker lines.
pub struct VmCommand {
    pub name: String,
    pub shell: String,
}

pub fn vm_command(name: &str, shell: impl Into<String>) -> VmCommand {
    VmCommand {
        name: name.to_string(),
        shell: shell.into(),
    }
}

pub struct Run {
    pub label: &'static str,
    pub dir: &'static str,
    pub flags: &'static str,
    /// What the CHECKED_STAGES must be attached with in this run.
    pub mechanism: &'static str,
    /// How the spawner waits for its children (`--reap`).
    pub reap: &'static str,
    /// The spawner's `--method`: fork-exec runs check the mm copy,
    /// posix-spawn runs the vfork parent's release.
    pub method: &'static str,
}

impl Run {
    /// Whether this run's spawns are vfork-style (checked for the parent's
    /// release). Without the spawner the busybox fallback loop always forks.
    pub fn spawns_vfork(&self, with_spawner: bool) -> bool {
        with_spawner && self.method == "posix-spawn"
    }
}

/// A and C take the default tiers (fentry where available), B and D force
/// kprobes with `--no-fentry`, E is A with `--low-overhead`. A and B fork
/// and wait with waitpid (kernel_wait4); C and D posix_spawn (vfork-style,
/// for the parent's release at the child's exec) and wait with waitid.
pub const RUNS: [Run; 5] = [
    Run {
        label: "A",
        dir: "a",
        flags: "",
        mechanism: "fentry",
        reap: "waitpid",
        method: "fork-exec",
    },
    Run {
        label: "B",
        dir: "b",
        flags: " --no-fentry",
        mechanism: "kprobe",
        reap: "waitpid",
        method: "fork-exec",
    },
    Run {
        label: "C",
        dir: "c",
        flags: "",
        mechanism: "fentry",
        reap: "waitid",
        method: "posix-spawn",
    },
    Run {
        label: "D",
        dir: "d",
        flags: " --no-fentry",
        mechanism: "kprobe",
        reap: "waitid",
        method: "posix-spawn",
    },
    // --low-overhead leaves out only probes on machine-wide per-event
    // tracepoints: with fentry every stage keeps its kernel function.
    Run {
        label: "E",
        dir: "e",
        flags: " --low-overhead",
        mechanism: "fentry",
        reap: "waitpid",
        method: "fork-exec",
    },
];

/// The workload a record run profiles: SPAWN_COUNT spawns with the run's
/// method, each child waited for with the run's `reap` (waitpid or waitid).
fn workload(bins: &Binaries, run: &Run) -> String {
    if bins.spawner.is_some() {
        format!(
            "/spawnprof-spawner --method {} --count {SPAWN_COUNT} --rss 64M \
             --path-misses {PATH_MISSES} --program true --reap {}",
            run.method, run.reap
        )
    } else {
        format!("sh -c {}", sh_quote(&busybox_fork_loop()))
    }
}

/// SPAWN_COUNT runs of /bin/true: busybox ash forks for every external
/// command named by path (and waits with wait4).
pub fn busybox_fork_loop() -> String {
    format!("i=0; while [ $i -lt {SPAWN_COUNT} ]; do /bin/true; i=$((i+1)); done")
}

pub fn full_commands(bins: &Binaries) -> Vec<VmCommand> {
    let mut cmds = vec![vm_command("probes", "/spawnprof probes")];
    for run in &RUNS {
        let d = run.dir;
        cmds.push(vm_command(
            &format!("record-{d}"),
            format!(
                "/spawnprof record{} -o /tmp/{d} -- {}",
                run.flags,
                workload(bins, run)
            ),
        ));
        cmds.push(vm_command(
            &format!("summary-{d}"),
            format!("cat /tmp/{d}/summary.json"),
        ));
        cmds.push(vm_command(
            &format!("spawns-{d}"),
            format!("cat /tmp/{d}/spawns.jsonl"),
        ));
    }
    cmds.push(vm_command("dmesg", "dmesg"));
    cmds
}

pub fn shell_commands(cmds: &[String]) -> Vec<VmCommand> {
    cmds.iter()
        .enumerate()
        .map(|(i, cmd)| vm_command(&format!("shell-{}", i + 1), cmd.as_str()))
        .collect()
}
