//! What the guests run: the record runs of the full test, each a
//! `spawnprof record` of a short workload followed by `cat`s of what it
//! wrote, and the `--shell` commands.
use super::binaries::Binaries;
use super::guests::Guest;

/// Spawns of the run's method each run must report (the workload makes
/// exactly this many).
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
    /// The `spawnprof record` options, exactly as docs/KERNELS.md's table
    /// headings write them: they pick the expected mechanisms.
    pub flags: &'static str,
    /// How the spawner waits for its children (`--reap`).
    pub reap: &'static str,
    /// The spawner's `--method`: fork-exec runs check the mm copy,
    /// posix-spawn runs the vfork parent's release.
    pub method: &'static str,
    /// Run on the short guests too. The others add nothing there: without
    /// fentry (arm64 6.1), --no-fentry and --low-overhead change no stage.
    pub short: bool,
}

impl Run {
    /// The directory the run records into, and its sections' suffix.
    pub fn dir(&self) -> String {
        self.label.to_lowercase()
    }

    /// Whether this run's spawns are vfork-style (checked for the parent's
    /// release). Without the spawner the busybox fallback loop always forks.
    pub fn spawns_vfork(&self, with_spawner: bool) -> bool {
        with_spawner && self.method == "posix-spawn"
    }
}

/// A and C take the best tiers the kernel has; B and D do without fentry;
/// E leaves out the probes on machine-wide events; F has tracepoints only,
/// as on a kernel without fentry and kprobes. A, B, E and F fork and wait
/// with waitpid (kernel_wait4); C and D posix_spawn (vfork-style, for the
/// parent's release at the child's exec) and wait with waitid.
pub const RUNS: [Run; 6] = [
    Run {
        label: "A",
        flags: "",
        reap: "waitpid",
        method: "fork-exec",
        short: true,
    },
    Run {
        label: "B",
        flags: "--no-fentry",
        reap: "waitpid",
        method: "fork-exec",
        short: false,
    },
    Run {
        label: "C",
        flags: "",
        reap: "waitid",
        method: "posix-spawn",
        short: true,
    },
    Run {
        label: "D",
        flags: "--no-fentry",
        reap: "waitid",
        method: "posix-spawn",
        short: false,
    },
    Run {
        label: "E",
        flags: "--low-overhead",
        reap: "waitpid",
        method: "fork-exec",
        short: false,
    },
    Run {
        label: "F",
        flags: "--no-fentry --no-kprobe",
        reap: "waitpid",
        method: "fork-exec",
        short: true,
    },
];

/// The runs `guest` makes.
pub fn runs_for(guest: &Guest) -> impl Iterator<Item = &'static Run> {
    let short = guest.short;
    RUNS.iter().filter(move |run| run.short || !short)
}

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

/// The spawner's methods that issue clone/clone3 from their own assembly
/// (one version per architecture), each run briefly without spawnprof.
pub const RAW_METHODS: [&str; 2] = ["vfork-exec", "clone3-vfork"];

pub fn full_commands(guest: &Guest, bins: &Binaries) -> Vec<VmCommand> {
    let mut cmds = vec![vm_command("probes", "/spawnprof probes")];
    if bins.spawner.is_some() {
        let runs: Vec<String> = RAW_METHODS
            .iter()
            .map(|m| format!("/spawnprof-spawner --method {m} --count 3 --program true"))
            .collect();
        cmds.push(vm_command("raw-methods", runs.join(" && ")));
    }
    for run in runs_for(guest) {
        let d = run.dir();
        cmds.push(vm_command(
            &format!("record-{d}"),
            format!(
                "/spawnprof record {} -o /tmp/{d} -- {}",
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
    if bins.spawner.is_some() {
        cmds.push(vm_command("serve", serve_run()));
    }
    cmds.push(vm_command("dmesg", "dmesg"));
    cmds
}

/// Forks the spawner makes under `spawnprof serve` in the guest.
pub const SERVE_FORKS: u32 = 30;

/// `spawnprof serve --all` in the background (the loopback brought up first), SERVE_FORKS forks, a scrape
/// with busybox's wget, SIGTERM: its exit status and the page's counts.
fn serve_run() -> String {
    format!(
        "(ip link set lo up || ifconfig lo 127.0.0.1 up) 2>/dev/null; \
         /spawnprof serve --all --listen 127.0.0.1:9464 2>/tmp/serve.log & S=$!; i=0; \
         until wget -qO- http://127.0.0.1:9464/ready >/dev/null 2>&1; do \
         sleep 1; i=$((i+1)); [ $i -gt 90 ] && break; done; \
         /spawnprof-spawner --method fork-exec --count {SERVE_FORKS} --warmup 0 --program true \
         >/dev/null; sleep 1; wget -qO /tmp/metrics.txt http://127.0.0.1:9464/metrics; \
         kill -TERM $S; wait $S; echo \"serve exit $?\"; cat /tmp/serve.log; \
         grep -E '^spawnprof_(spawns_total|stage_duration_seconds_count)' /tmp/metrics.txt"
    )
}

pub fn shell_commands(cmds: &[String]) -> Vec<VmCommand> {
    cmds.iter()
        .enumerate()
        .map(|(i, cmd)| vm_command(&format!("shell-{}", i + 1), cmd.as_str()))
        .collect()
}

/// `s` as one word of a POSIX shell command line.
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}
