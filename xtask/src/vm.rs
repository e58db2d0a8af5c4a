//! `cargo xtask vm-test`: boots Debian's 6.1 cloud kernel under QEMU with a
//! busybox initramfs holding the spawnprof binaries, runs them there and checks
//! what they wrote from the host.
//!
//! Why a VM at all: the development host's kernel has no kprobes and refuses
//! fentry loads, so spawnprof's two upper attach tiers can only be exercised on
//! another kernel. Debian's 6.1 cloud kernel has both (and BTF) and boots in a
//! few seconds under TCG; KVM is avoided on purpose because `-enable-kvm`
//! hangs on these hosts.
//!
//! ```text
//! cargo xtask vm-test                 runs A-E: fork and posix_spawn, fentry tier and --no-fentry (kprobe), --low-overhead
//! cargo xtask vm-test --smoke         harness self-check; needs no `spawnprof record`
//! cargo xtask vm-test --shell CMD ... run each CMD in the VM and print its output
//!   --timeout SECS    limit for the whole VM run (default 300)
//!   --debug|--release which target/ profile to take the binaries from
//!   --verbose         stream the serial console while the VM runs
//! ```
//!
//! Everything downloaded or built lives in `target/vm-cache/`; the serial
//! console of the last run is kept in `target/vm-cache/last-run.log`.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::cmd::run_checked;
use anyhow::{Context, Result, anyhow, bail, ensure};
use serde_json::Value;

/// Debian packages the harness runs on the host.
const HOST_PACKAGES: [&str; 3] = ["qemu-system-x86", "cpio", "busybox-static"];
/// Where busybox-static installs its (statically linked) binary.
const BUSYBOX: &str = "/bin/busybox";
/// Default limit for the whole VM run; a normal full run takes well under a minute.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);
/// Limit for each command inside the VM, so one hung command still leaves
/// time for the others (and for the dmesg dump) before the host gives up.
const COMMAND_TIMEOUT_SECS: u32 = 100;
/// Outputs longer than this many lines come back shortened to their first
/// and last KEEP_LINES lines (JSON outputs stay far below).
const MAX_LINES: usize = 10_000;
const KEEP_LINES: usize = 3_000;
/// Fork spawns each run must report (the workload makes exactly this many).
const SPAWN_COUNT: usize = 20;
/// Stages whose attach mechanism the two runs pin down: the kernel
/// functions inside a fork, and the syscall stages that avoid syscall
/// tracepoints there.
const CHECKED_STAGES: [&str; 10] = [
    "first_run",
    "copy_page_range",
    "anon_vma_fork",
    "dup_mmap",
    "mm_lock_wait",
    "clone",
    "exec",
    "reap",
    "page_faults",
    "exec_prepare",
];
/// PATH entries the spawner puts in front of the real ones: each spawn
/// fails this many exec attempts first.
const PATH_MISSES: usize = 2;

pub fn run(args: &[String]) -> Result<()> {
    let started = Instant::now();
    let opts = Options::parse(args)?;
    let paths = Paths::new()?;
    fs::create_dir_all(&paths.cache)
        .with_context(|| format!("creating {}", paths.cache.display()))?;

    let t = Instant::now();
    ensure_packages()?;
    let packages_time = t.elapsed();

    let t = Instant::now();
    let kernel = fetch_kernel(&paths.cache)?;
    let kernel_time = t.elapsed();
    println!(
        "vm-test: kernel {} ({}, {:.1}s)",
        kernel.package,
        if kernel.downloaded {
            "downloaded"
        } else {
            "cached"
        },
        kernel_time.as_secs_f64()
    );

    let bins = locate_binaries(&paths, opts.profile)?;
    let nonce = make_nonce();
    let commands = match &opts.mode {
        Mode::Full => full_commands(&bins),
        Mode::Smoke => smoke_commands(),
        Mode::Shell(cmds) => shell_commands(cmds),
    };

    let t = Instant::now();
    let initrd = build_initramfs(&paths.cache, &bins, &init_script(&nonce, &commands))?;
    let initramfs_time = t.elapsed();

    let t = Instant::now();
    let console = boot(
        &kernel.vmlinuz,
        &initrd,
        &paths.log,
        opts.timeout,
        opts.verbose,
    )?;
    let boot_time = t.elapsed();
    println!(
        "vm-test: timings: packages {:.1}s, kernel {:.1}s, initramfs {:.1}s, boot+run {:.1}s",
        packages_time.as_secs_f64(),
        kernel_time.as_secs_f64(),
        initramfs_time.as_secs_f64(),
        boot_time.as_secs_f64()
    );

    let outcome = parse_sections(&console, &nonce).and_then(|sections| match &opts.mode {
        Mode::Full => check_full(&sections, &bins),
        Mode::Smoke => check_smoke(&sections),
        Mode::Shell(_) => print_shell(&sections),
    });
    println!(
        "vm-test: total {:.1}s; console log: {}",
        started.elapsed().as_secs_f64(),
        paths.log.display()
    );
    outcome.map_err(|e| anyhow!("{e:#}\n(full serial console: {})", paths.log.display()))
}

// ---------------------------------------------------------------------------
// Command line

#[derive(Debug)]
enum Mode {
    /// The real test: both tiers, with host-side assertions.
    Full,
    /// Harness self-check that needs nothing from `spawnprof record`.
    Smoke,
    /// Arbitrary commands, for debugging in the VM.
    Shell(Vec<String>),
}

#[derive(Debug, Clone, Copy)]
enum Profile {
    /// Whichever of target/release and target/debug was built last.
    Auto,
    Debug,
    Release,
}

#[derive(Debug)]
struct Options {
    mode: Mode,
    profile: Profile,
    timeout: Duration,
    verbose: bool,
}

const USAGE: &str = "vm-test arguments: [--smoke | --shell CMD [--shell CMD ...]] \
                     [--timeout SECS] [--debug | --release] [--verbose]";

impl Options {
    fn parse(args: &[String]) -> Result<Options> {
        let mut opts = Options {
            mode: Mode::Full,
            profile: Profile::Auto,
            timeout: DEFAULT_TIMEOUT,
            verbose: false,
        };
        let mut shell = Vec::new();
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            match arg.as_str() {
                "--smoke" => opts.mode = Mode::Smoke,
                "--shell" => shell.push(
                    it.next()
                        .ok_or_else(|| anyhow!("--shell needs a command\n{USAGE}"))?
                        .clone(),
                ),
                "--timeout" => {
                    let secs = it
                        .next()
                        .and_then(|s| s.parse::<u64>().ok())
                        .ok_or_else(|| anyhow!("--timeout needs a number of seconds\n{USAGE}"))?;
                    opts.timeout = Duration::from_secs(secs);
                }
                "--debug" => opts.profile = Profile::Debug,
                "--release" => opts.profile = Profile::Release,
                "--verbose" | "-v" => opts.verbose = true,
                "--help" | "-h" => bail!("{USAGE}"),
                other => bail!("vm-test: unknown argument {other:?}\n{USAGE}"),
            }
        }
        if !shell.is_empty() {
            ensure!(
                !matches!(opts.mode, Mode::Smoke),
                "--smoke and --shell exclude each other\n{USAGE}"
            );
            opts.mode = Mode::Shell(shell);
        }
        Ok(opts)
    }
}

struct Paths {
    target: PathBuf,
    cache: PathBuf,
    log: PathBuf,
}

impl Paths {
    fn new() -> Result<Paths> {
        // xtask is always built from this workspace, so the compile-time
        // manifest path is reliable wherever `cargo xtask` is started from.
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .ok_or_else(|| anyhow!("xtask's manifest dir has no parent"))?
            .to_path_buf();
        let target = match std::env::var_os("CARGO_TARGET_DIR") {
            Some(dir) => root.join(dir), // join keeps an absolute dir as it is
            None => root.join("target"),
        };
        let cache = target.join("vm-cache");
        let log = cache.join("last-run.log");
        Ok(Paths { target, cache, log })
    }
}

// ---------------------------------------------------------------------------
// Host packages

/// Installs qemu, cpio and busybox-static from Debian unless already there.
/// (qemu-system-x86 replaces the preinstalled backports qemu-utils; spawnprof
/// does not need the latter.)
fn ensure_packages() -> Result<()> {
    crate::cmd::ensure_debian_packages("vm-test", &HOST_PACKAGES)
}

// ---------------------------------------------------------------------------
// Kernel

struct Kernel {
    package: String,
    vmlinuz: PathBuf,
    downloaded: bool,
}

/// Makes sure the newest available `linux-image-6.1.0-N-cloud-amd64-unsigned`
/// is unpacked in the cache and returns its vmlinuz. Only the kernel image
/// (and its config, handy for checking CONFIG_* options) is kept: the test
/// boots without modules.
fn fetch_kernel(cache: &Path) -> Result<Kernel> {
    let dir = cache.join("kernel");
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let package = newest_kernel_package(&dir)?;
    let vmlinuz = dir.join(format!("{package}.vmlinuz"));
    if vmlinuz.is_file() {
        return Ok(Kernel {
            package,
            vmlinuz,
            downloaded: false,
        });
    }

    println!("vm-test: downloading {package}");
    // Unpack in a scratch dir and move the image into place last, so an
    // interrupted run never leaves a half-written kernel that looks cached.
    let work = dir.join(format!("{package}.partial"));
    remove_dir_if_exists(&work)?;
    fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    run_checked(
        Command::new("apt-get")
            .args(["download", &package])
            .current_dir(&work),
    )
    .with_context(|| {
        format!("downloading {package} failed; check network access and `apt-get update`")
    })?;
    let deb = find_entry(&work, |name| name.ends_with(".deb"))?
        .ok_or_else(|| anyhow!("apt-get download left no .deb in {}", work.display()))?;
    let unpacked = work.join("root");
    run_checked(Command::new("dpkg").arg("-x").arg(&deb).arg(&unpacked))?;
    let boot = unpacked.join("boot");
    let image = find_entry(&boot, |name| name.starts_with("vmlinuz-"))?
        .ok_or_else(|| anyhow!("{package} has no boot/vmlinuz-*"))?;
    if let Some(config) = find_entry(&boot, |name| name.starts_with("config-"))? {
        copy_file(&config, &dir.join(format!("{package}.config")))?;
    }
    let staged = dir.join(format!("{package}.vmlinuz.tmp"));
    copy_file(&image, &staged)?;
    fs::rename(&staged, &vmlinuz).with_context(|| format!("moving {}", vmlinuz.display()))?;
    remove_dir_if_exists(&work)?;
    Ok(Kernel {
        package,
        vmlinuz,
        downloaded: true,
    })
}

/// The newest cloud kernel package apt knows about (several ABI numbers are
/// usually listed; the highest wins). Falls back to the newest cached kernel
/// when apt knows none, e.g. offline with empty package lists.
fn newest_kernel_package(cache_dir: &Path) -> Result<String> {
    let search = || -> Result<Option<String>> {
        let out = run_checked(Command::new("apt-cache").args([
            "search",
            "--names-only",
            r"^linux-image-6\.1\.0-[0-9]+-cloud-amd64-unsigned$",
        ]))?;
        let names = out
            .lines()
            .filter_map(|line| line.split_whitespace().next());
        Ok(newest_by_abi(names))
    };
    if let Some(pkg) = search()? {
        return Ok(pkg);
    }
    println!("vm-test: no 6.1 cloud kernel in apt's lists, running apt-get update");
    let updated = run_checked(Command::new("apt-get").arg("update"));
    if updated.is_ok()
        && let Some(pkg) = search()?
    {
        return Ok(pkg);
    }
    let mut cached = Vec::new();
    for entry in read_dir(cache_dir)? {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(pkg) = name.strip_suffix(".vmlinuz") {
            cached.push(pkg.to_string());
        }
    }
    newest_by_abi(cached.iter().map(String::as_str)).ok_or_else(|| {
        anyhow!(
            "no linux-image-6.1.0-*-cloud-amd64-unsigned package found (apt-get update: {}); \
             this needs Debian 12 (bookworm) apt sources with network access",
            match updated {
                Ok(_) => "ok".to_string(),
                Err(e) => format!("{e:#}"),
            }
        )
    })
}

/// Picks the name with the highest ABI number N in `linux-image-6.1.0-N-...`.
fn newest_by_abi<'a>(names: impl Iterator<Item = &'a str>) -> Option<String> {
    names
        .filter_map(|name| {
            let abi = name.strip_prefix("linux-image-6.1.0-")?.split('-').next()?;
            Some((abi.parse::<u32>().ok()?, name))
        })
        .max()
        .map(|(_, name)| name.to_string())
}

// ---------------------------------------------------------------------------
// Binaries under test

struct Binaries {
    spawnprof: PathBuf,
    /// The reference workload, when it is built and understands its flags.
    spawner: Option<PathBuf>,
}

fn locate_binaries(paths: &Paths, profile: Profile) -> Result<Binaries> {
    let dirs: &[&str] = match profile {
        Profile::Auto => &["release", "debug"],
        Profile::Debug => &["debug"],
        Profile::Release => &["release"],
    };
    // Of the profiles built, the most recently built: a stale release build
    // must not stand in for the debug build just made (or the reverse).
    let find = || {
        dirs.iter()
            .map(|d| paths.target.join(d))
            .filter_map(|dir| {
                let built = std::fs::metadata(dir.join("spawnprof"))
                    .ok()
                    .filter(|m| m.is_file())?
                    .modified()
                    .ok()?;
                Some((built, dir))
            })
            .max_by_key(|(built, _)| *built)
            .map(|(_, dir)| dir)
    };
    let dir = match find() {
        Some(dir) => dir,
        None => {
            // The callers normally build first; this keeps a bare
            // `cargo xtask vm-test` on a fresh checkout working too.
            println!("vm-test: spawnprof is not built; running cargo build -p spawnprof");
            let mut build = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
            build.args(["build", "-p", "spawnprof"]);
            if matches!(profile, Profile::Release) {
                build.arg("--release");
            }
            let status = build.status().context("running cargo build -p spawnprof")?;
            ensure!(
                status.success(),
                "cargo build -p spawnprof failed ({status})"
            );
            find().ok_or_else(|| {
                anyhow!(
                    "cargo build -p spawnprof left no spawnprof in {}",
                    paths.target.display()
                )
            })?
        }
    };
    let spawnprof = dir.join("spawnprof");
    let spawner = Some(dir.join("spawnprof-spawner")).filter(|p| spawner_is_usable(p));
    println!(
        "vm-test: testing {}{}",
        spawnprof.display(),
        match &spawner {
            Some(p) => format!(" with workload {}", p.display()),
            None => " (spawnprof-spawner not usable yet: busybox loop workload)".to_string(),
        }
    );
    Ok(Binaries { spawnprof, spawner })
}

/// The spawner may still be a stub that accepts anything and does nothing; a
/// usable one documents `--method` in its help.
fn spawner_is_usable(path: &Path) -> bool {
    path.is_file()
        && Command::new(path)
            .arg("--help")
            .stdin(Stdio::null())
            .output()
            .is_ok_and(|out| {
                out.status.success() && String::from_utf8_lossy(&out.stdout).contains("--method")
            })
}

// ---------------------------------------------------------------------------
// What runs in the VM

/// One command run by /init; its output comes back between marker lines.
struct VmCommand {
    name: String,
    shell: String,
}

fn vm_command(name: &str, shell: impl Into<String>) -> VmCommand {
    VmCommand {
        name: name.to_string(),
        shell: shell.into(),
    }
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
        // busybox ash forks for every external command named by path (and
        // waits with wait4).
        let script = format!("i=0; while [ $i -lt {SPAWN_COUNT} ]; do /bin/true; i=$((i+1)); done");
        format!("sh -c {}", sh_quote(&script))
    }
}

/// Runs A and C take the default tiers (fentry where available); B and D
/// force the kprobe tier with `--no-fentry`; E is A with `--low-overhead`. A and B fork and wait with
/// waitpid (kernel_wait4); C and D posix_spawn (vfork-style, for the
/// parent's release at the child's exec) and wait with waitid (the waitid
/// syscall function).
const RUNS: [Run; 5] = [
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

struct Run {
    label: &'static str,
    dir: &'static str,
    flags: &'static str,
    /// What the CHECKED_STAGES must be attached with in this run.
    mechanism: &'static str,
    /// How the spawner waits for its children (`--reap`).
    reap: &'static str,
    /// The spawner's `--method`: fork-exec runs check the mm copy,
    /// posix-spawn runs the vfork parent's release.
    method: &'static str,
}

impl Run {
    /// Whether this run's spawns are vfork-style (checked for the parent's
    /// release). Without the spawner the busybox fallback loop always forks.
    fn spawns_vfork(&self, with_spawner: bool) -> bool {
        with_spawner && self.method == "posix-spawn"
    }
}

fn full_commands(bins: &Binaries) -> Vec<VmCommand> {
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

/// Checks the harness itself: the kernel, the mounts, the tracing interfaces
/// spawnprof relies on, and that the copied binaries find their libraries.
/// The two tracefs probes show forks and a kprobe firing without spawnprof.
fn smoke_commands() -> Vec<VmCommand> {
    let loop_ = format!("i=0; while [ $i -lt {SPAWN_COUNT} ]; do /bin/true; i=$((i+1)); done");
    let traced = |setup: &str, teardown: &str, pattern: &str| {
        format!(
            "cd /sys/kernel/tracing && echo > trace && {setup} && sh -c {} && {teardown} && \
             grep -c {pattern} trace",
            sh_quote(&loop_)
        )
    };
    vec![
        vm_command("uname", "uname -r"),
        vm_command("mounts", "cat /proc/mounts"),
        vm_command(
            "syscall-events",
            "ls /sys/kernel/tracing/events/syscalls | head",
        ),
        vm_command(
            "kprobe-pmu",
            "cat /sys/bus/event_source/devices/kprobe/type",
        ),
        vm_command(
            "filter-functions",
            "grep -c . /sys/kernel/tracing/available_filter_functions",
        ),
        vm_command("btf", "ls -l /sys/kernel/btf/vmlinux"),
        vm_command("spawnprof-runs", "/spawnprof --help"),
        vm_command(
            "fork-count",
            traced(
                "echo 1 > events/sched/sched_process_fork/enable",
                "echo 0 > events/sched/sched_process_fork/enable",
                "sched_process_fork:",
            ),
        ),
        vm_command(
            "kprobe-count",
            traced(
                "echo p:vmtest_cpr copy_page_range > kprobe_events && \
                 echo 1 > events/kprobes/vmtest_cpr/enable",
                "echo 0 > events/kprobes/vmtest_cpr/enable",
                "vmtest_cpr:",
            ),
        ),
        vm_command("dmesg", "dmesg"),
    ]
}

fn shell_commands(cmds: &[String]) -> Vec<VmCommand> {
    cmds.iter()
        .enumerate()
        .map(|(i, cmd)| vm_command(&format!("shell-{}", i + 1), cmd.as_str()))
        .collect()
}

/// Marker lines carry a per-run nonce so neither a command's output nor a
/// stale log can be mistaken for them. /init prints `MARKER ready`,
/// `MARKER begin NAME` and `MARKER end NAME rc=N` lines.
fn marker(nonce: &str) -> String {
    format!("@@spawnprof-vm-{nonce}@@")
}

/// The /init script (PID 1 in the VM): mount what spawnprof needs, run each
/// command with its output captured to a file (so it is not interleaved and
/// does not see a tty, which keeps progress bars out), print that output
/// between markers with the exit status, then power off.
fn init_script(nonce: &str, cmds: &[VmCommand]) -> String {
    let mut s = format!(
        r#"#!/bin/sh
# Generated by `cargo xtask vm-test`; runs as PID 1 in the test VM.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin HOME=/root TERM=dumb
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tracefs tracefs /sys/kernel/tracing
mount -t debugfs debugfs /sys/kernel/debug
mount -t bpf bpffs /sys/fs/bpf
# Keep kernel messages off the console so they cannot split the lines the
# host parses; the dmesg command dumps them instead.
dmesg -n 1
section() {{
    echo "{mark} begin $1"
    timeout {COMMAND_TIMEOUT_SECS} sh -c "$2" </dev/null >/tmp/.section-out 2>&1
    rc=$?
    # Verifier logs can run to 100k lines, minutes over the serial port:
    # keep head and tail of such floods.
    n=$(wc -l </tmp/.section-out)
    if [ "$n" -gt {MAX_LINES} ]; then
        head -n {KEEP_LINES} /tmp/.section-out
        echo "[vm-test: $((n - 2 * {KEEP_LINES})) lines omitted]"
        tail -n {KEEP_LINES} /tmp/.section-out
    else
        cat /tmp/.section-out
    fi
    echo
    echo "{mark} end $1 rc=$rc"
}}
# The firmware leaves terminal escapes on the current line: start a fresh one.
echo
echo "{mark} ready"
"#,
        mark = marker(nonce),
    );
    for cmd in cmds {
        let _ = writeln!(
            s,
            "section {} {}",
            sh_quote(&cmd.name),
            sh_quote(&cmd.shell)
        );
    }
    s.push_str("sync\npoweroff -f\n");
    s
}

fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn make_nonce() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{:x}{:x}", nanos, std::process::id())
}

// ---------------------------------------------------------------------------
// Initramfs

/// Stages busybox (with its applet links), the binaries under test with the
/// libraries they load, and /init, then packs it all as a gzipped newc cpio.
fn build_initramfs(cache: &Path, bins: &Binaries, init: &str) -> Result<PathBuf> {
    let root = cache.join("initramfs");
    remove_dir_if_exists(&root)?;
    for dir in [
        "bin", "sbin", "usr/bin", "usr/sbin", "proc", "sys", "dev", "tmp", "root", "etc",
    ] {
        create_dir(&root.join(dir))?;
    }

    install_busybox(&root)?;
    let mut binaries = vec![(bins.spawnprof.clone(), "spawnprof")];
    if let Some(spawner) = &bins.spawner {
        binaries.push((spawner.clone(), "spawnprof-spawner"));
    }
    let mut libs = HashSet::new();
    for (path, name) in &binaries {
        install_executable(path, &root.join(name))?;
        libs.extend(shared_libraries(path)?);
    }
    for lib in &libs {
        // Same absolute path as on the host: that is where the binaries'
        // PT_INTERP and the loader's default search path look.
        let dest = root.join(lib.strip_prefix("/").unwrap_or(lib));
        if let Some(parent) = dest.parent() {
            create_dir(parent)?;
        }
        copy_file(lib, &dest)?; // follows symlinks: the VM gets real files
    }

    let init_path = root.join("init");
    fs::write(&init_path, init).with_context(|| format!("writing {}", init_path.display()))?;
    set_executable(&init_path)?;

    let initrd = cache.join("initrd.gz");
    pack_cpio(&root, &initrd)?;
    Ok(initrd)
}

fn install_busybox(root: &Path) -> Result<()> {
    let busybox = root.join("bin/busybox");
    install_executable(Path::new(BUSYBOX), &busybox)?;
    ensure!(
        shared_libraries(Path::new(BUSYBOX))?.is_empty(),
        "{BUSYBOX} is dynamically linked; install busybox-static \
         (apt-get install -y --no-install-recommends busybox-static)"
    );
    let list = run_checked(Command::new(BUSYBOX).arg("--list-full"))?;
    for applet in list.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let link = root.join(applet);
        if link.exists() {
            continue;
        }
        if let Some(parent) = link.parent() {
            create_dir(parent)?;
        }
        symlink("/bin/busybox", &link).with_context(|| format!("linking {}", link.display()))?;
    }
    Ok(())
}

fn install_executable(from: &Path, to: &Path) -> Result<()> {
    copy_file(from, to)?;
    set_executable(to)
}

/// The absolute paths `ldd` lists for `binary`, the dynamic loader included;
/// empty for a static binary.
fn shared_libraries(binary: &Path) -> Result<Vec<PathBuf>> {
    let out = Command::new("ldd")
        .arg(binary)
        .output()
        .with_context(|| format!("running ldd {}", binary.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stdout.contains("not a dynamic executable") || stderr.contains("not a dynamic executable") {
        return Ok(Vec::new());
    }
    ensure!(
        out.status.success(),
        "ldd {} failed: {stderr}",
        binary.display()
    );
    let mut libs = Vec::new();
    for line in stdout.lines().map(str::trim) {
        // `libc.so.6 => /lib/.../libc.so.6 (0x..)`, `/lib64/ld-linux-x86-64.so.2 (0x..)`,
        // or `linux-vdso.so.1 (0x..)` (in the kernel, nothing to copy).
        let target = line.split_once("=>").map_or(line, |(_, t)| t.trim());
        ensure!(
            !target.starts_with("not found"),
            "{} needs a library that is not installed: {line}",
            binary.display()
        );
        if let Some(path) = target
            .split_whitespace()
            .next()
            .filter(|p| p.starts_with('/'))
        {
            libs.push(PathBuf::from(path));
        }
    }
    Ok(libs)
}

/// `find . | cpio -o -H newc | gzip`, without a shell so each tool's failure
/// is reported on its own.
fn pack_cpio(root: &Path, initrd: &Path) -> Result<()> {
    let mut list = String::new();
    list_tree(root, Path::new("."), &mut list)?;

    let tmp = initrd.with_extension("gz.tmp");
    let out = fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let mut cpio = Command::new("cpio")
        .args(["-o", "-H", "newc", "--quiet", "-R", "0:0"])
        .current_dir(root)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("running cpio (apt-get install -y --no-install-recommends cpio)")?;
    let cpio_out = cpio
        .stdout
        .take()
        .ok_or_else(|| anyhow!("cpio has no stdout"))?;
    let mut gzip = Command::new("gzip")
        .arg("-1") // the kernel unpacks it under TCG: fast beats small
        .stdin(cpio_out)
        .stdout(out)
        .spawn()
        .context("running gzip")?;
    {
        let mut stdin = cpio
            .stdin
            .take()
            .ok_or_else(|| anyhow!("cpio has no stdin"))?;
        stdin
            .write_all(list.as_bytes())
            .context("feeding the file list to cpio")?;
    } // dropping stdin ends cpio's input
    let cpio_status = cpio.wait().context("waiting for cpio")?;
    let gzip_status = gzip.wait().context("waiting for gzip")?;
    ensure!(cpio_status.success(), "cpio failed ({cpio_status})");
    ensure!(gzip_status.success(), "gzip failed ({gzip_status})");
    fs::rename(&tmp, initrd).with_context(|| format!("moving {}", initrd.display()))
}

/// Pre-order listing (each directory before its contents, as the kernel's
/// unpacker needs), relative to `root`, sorted so the archive is reproducible.
fn list_tree(root: &Path, rel: &Path, out: &mut String) -> Result<()> {
    let mut entries: Vec<_> = read_dir(&root.join(rel))?
        .into_iter()
        .map(|e| e.file_name())
        .collect();
    entries.sort();
    for name in entries {
        let path = rel.join(&name);
        let _ = writeln!(out, "{}", path.display());
        let meta = fs::symlink_metadata(root.join(&path))
            .with_context(|| format!("reading {}", path.display()))?;
        if meta.is_dir() {
            list_tree(root, &path, out)?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Boot

/// Boots the kernel with the initramfs and returns the serial console text.
/// The console is written to `log` as it arrives so that it survives a
/// timeout or a crash of this process.
fn boot(
    vmlinuz: &Path,
    initrd: &Path,
    log: &Path,
    timeout: Duration,
    verbose: bool,
) -> Result<String> {
    println!(
        "vm-test: booting (QEMU TCG, timeout {}s)",
        timeout.as_secs()
    );
    let mut log_file =
        fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    // No -enable-kvm: it hangs on these hosts, and TCG boots this kernel in seconds.
    let mut child = Command::new("qemu-system-x86_64")
        .args(["-m", "2048", "-smp", "2", "-cpu", "max"])
        .arg("-kernel")
        .arg(vmlinuz)
        .arg("-initrd")
        .arg(initrd)
        .args(["-append", "console=ttyS0 quiet panic=-1", "-nographic", "-no-reboot"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context(
            "starting qemu-system-x86_64 (apt-get install -y --no-install-recommends qemu-system-x86)",
        )?;

    let mut stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow!("qemu has no stdout"))?;
    let mut stderr = child
        .stderr
        .take()
        .ok_or_else(|| anyhow!("qemu has no stderr"))?;
    let console_reader = thread::spawn(move || -> std::io::Result<Vec<u8>> {
        let mut console = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            let n = stdout.read(&mut buf)?;
            if n == 0 {
                return Ok(console);
            }
            log_file.write_all(&buf[..n])?;
            if verbose {
                let _ = std::io::stderr().write_all(&buf[..n]);
            }
            console.extend_from_slice(&buf[..n]);
        }
    });
    let stderr_reader = thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });

    let waited = wait_with_timeout(&mut child, timeout);
    let console = console_reader
        .join()
        .map_err(|_| anyhow!("the console reader thread panicked"))?
        .with_context(|| format!("reading the serial console into {}", log.display()))?;
    let qemu_stderr = stderr_reader.join().unwrap_or_default();
    let console = String::from_utf8_lossy(&console).replace('\r', "");

    match waited? {
        None => bail!(
            "the VM did not power off within {}s and was killed (raise --timeout, or look \
             at where it stopped); last console lines:\n{}",
            timeout.as_secs(),
            tail(&console, 15)
        ),
        Some(status) if !status.success() => bail!(
            "qemu-system-x86_64 failed ({status}): {}\nlast console lines:\n{}",
            qemu_stderr.trim(),
            tail(&console, 15)
        ),
        Some(_) => Ok(console),
    }
}

/// Waits for `child`, killing it after `timeout`; None means it was killed.
fn wait_with_timeout(
    child: &mut Child,
    timeout: Duration,
) -> Result<Option<std::process::ExitStatus>> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().context("waiting for qemu")? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            child.kill().context("killing qemu after the timeout")?;
            child.wait().context("reaping qemu")?;
            return Ok(None);
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// The last `lines` lines of console text, without the firmware's terminal
/// escapes and other control characters.
fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..]
        .join("\n")
        .chars()
        .filter(|c| *c == '\n' || !c.is_control())
        .collect()
}

// ---------------------------------------------------------------------------
// Results

/// One command's output as read back from the console.
#[derive(Debug)]
struct Section {
    name: String,
    /// None when the VM died before the command finished.
    rc: Option<i32>,
    body: String,
}

impl Section {
    /// Name, exit status and output for messages. Long outputs (a verifier
    /// log runs to 100k lines) keep their head, where errors are usually
    /// stated, and their tail; the log file has all of it.
    fn describe(&self) -> String {
        const KEEP: usize = 12;
        let rc = self.rc.map_or("did not finish".to_string(), |rc| {
            format!("exit status {rc}")
        });
        let lines: Vec<&str> = self.body.trim_end().lines().collect();
        let shown = if lines.len() > 2 * KEEP {
            let omitted = format!("[... {} lines omitted ...]", lines.len() - 2 * KEEP);
            [
                &lines[..KEEP],
                &[omitted.as_str()],
                &lines[lines.len() - KEEP..],
            ]
            .concat()
            .join("\n")
        } else {
            lines.join("\n")
        };
        format!("`{}` ({rc}):\n{}", self.name, indent(&shown))
    }
}

/// Splits the console text into the commands' outputs using the marker lines.
/// Markers are looked for anywhere in a line, in case something (firmware
/// escapes, a stray kernel message) got printed in front of them.
fn parse_sections(console: &str, nonce: &str) -> Result<Vec<Section>> {
    let mark = marker(nonce);
    let mut ready = false;
    let mut sections = Vec::new();
    let mut open: Option<(String, Vec<&str>)> = None;
    for line in console.lines() {
        let Some(at) = line.find(&mark) else {
            if let Some((_, body)) = open.as_mut() {
                body.push(line);
            }
            continue;
        };
        let directive = line[at + mark.len()..].trim();
        if directive == "ready" {
            ready = true;
        } else if let Some(name) = directive.strip_prefix("begin ") {
            if let Some((name, body)) = open.take() {
                sections.push(Section {
                    name,
                    rc: None,
                    body: body.join("\n"),
                });
            }
            open = Some((name.to_string(), Vec::new()));
        } else if let Some(rest) = directive.strip_prefix("end ") {
            let Some((name, mut body)) = open.take() else {
                continue;
            };
            // /init echoes one newline after the output in case it lacked one.
            if body.last() == Some(&"") {
                body.pop();
            }
            let rc = rest.rsplit_once(" rc=").and_then(|(_, rc)| rc.parse().ok());
            sections.push(Section {
                name,
                rc,
                body: body.join("\n"),
            });
        }
    }
    if let Some((name, body)) = open {
        sections.push(Section {
            name,
            rc: None,
            body: body.join("\n"),
        });
    }
    ensure!(
        ready,
        "the VM never reached /init; last console lines:\n{}",
        tail(console, 15)
    );
    Ok(sections)
}

fn section<'a>(sections: &'a [Section], name: &str) -> Result<&'a Section> {
    sections
        .iter()
        .find(|s| s.name == name)
        .ok_or_else(|| anyhow!("no output from `{name}` came back from the VM (did it crash?)"))
}

/// A section that must have exited 0.
fn ok_section<'a>(sections: &'a [Section], name: &str) -> Result<&'a Section> {
    let s = section(sections, name)?;
    ensure!(s.rc == Some(0), "{}", s.describe());
    Ok(s)
}

fn check_full(sections: &[Section], bins: &Binaries) -> Result<()> {
    if let Ok(probes) = section(sections, "probes") {
        println!("vm-test: spawnprof probes in the VM: {}", probes.describe());
    }
    let mut failures = Vec::new();
    for run in &RUNS {
        match assert_tiers(sections, run, bins.spawner.is_some()) {
            Ok(spawns) => println!(
                "vm-test: run {} ok: {} via {}, {spawns} {} spawns with {}, \
                 clone via kernel_clone, {} reaps seen{}",
                run.label,
                CHECKED_STAGES.join(", "),
                run.mechanism,
                run.method,
                if run.spawns_vfork(bins.spawner.is_some()) {
                    "the parent's release at begin_new_exec"
                } else {
                    "kernel_fn timings"
                },
                run.reap,
                if bins.spawner.is_some() {
                    ", PATH misses as failed exec attempts"
                } else {
                    ""
                }
            ),
            Err(e) => failures.push(format!(
                "run {} (`spawnprof record{}`, expects {}): {e:#}",
                run.label, run.flags, run.mechanism
            )),
        }
    }
    if failures.is_empty() {
        return Ok(());
    }
    if bins.spawner.is_none() {
        failures.push("note: the workload was the busybox fallback loop".to_string());
    }
    bail!("vm-test failed:\n{}", failures.join("\n"))
}

/// Checks one record run: its plan attaches CHECKED_STAGES with the run's
/// mechanism, and at least SPAWN_COUNT spawns of the run's method carry what
/// those tiers measure (kernel-function data for forks, the parent's release
/// for vfork-style spawns). Returns the number of such spawns.
/// `with_spawner`: false for the busybox fallback, whose loop always forks
/// and has no PATH misses.
fn assert_tiers(sections: &[Section], run: &Run, with_spawner: bool) -> Result<usize> {
    let d = run.dir;
    ok_section(sections, &format!("record-{d}"))?;

    let summary_text = &ok_section(sections, &format!("summary-{d}"))?.body;
    let summary: Value = serde_json::from_str(summary_text)
        .with_context(|| format!("summary.json is not JSON:\n{}", indent(summary_text)))?;
    let plan = summary
        .get("plan")
        .and_then(Value::as_array)
        .ok_or_else(|| {
            anyhow!(
                "summary.json has no \"plan\" array:\n{}",
                indent(summary_text)
            )
        })?;
    for stage in CHECKED_STAGES {
        let row = plan
            .iter()
            .find(|row| row.get("stage").and_then(Value::as_str) == Some(stage))
            .ok_or_else(|| {
                anyhow!(
                    "the plan has no row for stage {stage}; plan rows:\n{}",
                    indent(&plan.iter().map(json).collect::<Vec<_>>().join("\n"))
                )
            })?;
        ensure!(
            row.get("mechanism").and_then(Value::as_str) == Some(run.mechanism),
            "stage {stage} should use {} but the plan says {}",
            run.mechanism,
            json(row)
        );
    }

    let vfork = run.spawns_vfork(with_spawner);
    let expected = if vfork { "vfork" } else { "fork" };
    let spawns_text = &ok_section(sections, &format!("spawns-{d}"))?.body;
    let mut seen = 0;
    let mut bad = Vec::new();
    for (i, line) in spawns_text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let spawn: Value = serde_json::from_str(line)
            .with_context(|| format!("spawns.jsonl line {} is not JSON: {line}", i + 1))?;
        let method = spawn.get("method").and_then(Value::as_str);
        let thread = spawn.get("thread").and_then(Value::as_bool);
        if method != Some(expected) || thread != Some(false) {
            continue;
        }
        seen += 1;
        let mut problems = check_common(&spawn, run);
        problems.extend(if vfork {
            check_vfork_release(&spawn)
        } else {
            check_fork(&spawn)
        });
        if with_spawner && let Err(e) = check_exec_attempts(&spawn) {
            problems.push(e.to_string());
        }
        bad.extend(problems.into_iter().map(|p| format!("line {}: {p}", i + 1)));
    }
    ensure!(
        bad.is_empty(),
        "{} problems in {seen} {expected} spawns, e.g.\n{}",
        bad.len(),
        indent(&bad[..bad.len().min(3)].join("\n"))
    );
    ensure!(
        seen >= SPAWN_COUNT,
        "expected at least {SPAWN_COUNT} {expected} spawns (method {expected}, thread false), \
         found {seen} in {} lines of spawns.jsonl",
        spawns_text.lines().count()
    );
    Ok(seen)
}

fn ts(spawn: &Value, field: &str) -> Option<u64> {
    spawn
        .pointer(&format!("/ts/{field}"))
        .and_then(Value::as_u64)
}

/// What every spawn of a kernel-function tier has: the clone seen on
/// kernel_clone, the reap, the first run (schedule_tail) and its CPUs.
fn check_common(spawn: &Value, run: &Run) -> Vec<String> {
    let mut bad = Vec::new();
    // kernel_clone, not a syscall tracepoint, saw the clone.
    let syscall = spawn.get("syscall").and_then(Value::as_str);
    if syscall != Some("kernel_clone") {
        bad.push(format!("syscall {syscall:?}, expected \"kernel_clone\""));
    }
    if ts(spawn, "reap").is_none() {
        bad.push(format!("no reap time ({})", run.reap));
    }
    if ts(spawn, "first_run").is_none() {
        bad.push("no first run (schedule_tail)".to_string());
    }
    // schedule_tail runs on the child's first CPU: the placement data.
    let cpu = |f: &str| spawn.get(f).and_then(Value::as_u64);
    if cpu("parent_cpu").is_none() || cpu("child_first_cpu").is_none() {
        bad.push(format!(
            "no CPUs (parent_cpu {:?}, child_first_cpu {:?})",
            cpu("parent_cpu"),
            cpu("child_first_cpu")
        ));
    }
    bad
}

/// A fork copies the mm: the lock wait inside dup_mmap, CoW faults on
/// do_wp_page and the copy_page_range / anon_vma_fork times.
fn check_fork(spawn: &Value) -> Vec<String> {
    let mut bad = Vec::new();
    // The lock wait inside dup_mmap, from uprobe_start_dup_mmap to
    // uprobe_dup_mmap, with no mmap_lock tracepoint attached.
    match (ts(spawn, "mm_lock_wait"), ts(spawn, "mm_copy_start")) {
        (Some(wait), Some(held)) if wait <= held => {}
        other => bad.push(format!(
            "no lock wait inside dup_mmap (mm_lock_wait, mm_copy_start) = {other:?}"
        )),
    }
    // The child writes to its stack, shared copy-on-write, before its
    // exec: do_wp_page sees it.
    let count = |f: &str| {
        spawn
            .pointer(&format!("/faults/{f}"))
            .and_then(Value::as_u64)
    };
    if count("pre_exec_cow").is_none_or(|c| c == 0) || count("total").is_none_or(|c| c == 0) {
        bad.push(format!(
            "no pre-exec CoW fault (do_wp_page) or no fault total (task counters): faults = {}",
            spawn.get("faults").map_or("absent".to_string(), json)
        ));
    }
    let positive = |field: &str| {
        spawn
            .pointer(&format!("/kernel_fn/{field}"))
            .and_then(Value::as_f64)
            .is_some_and(|v| v > 0.0)
    };
    let missing: Vec<&str> = [
        "copy_page_range_ns",
        "copy_page_range_calls",
        "anon_vma_fork_calls",
    ]
    .into_iter()
    .filter(|f| !positive(f))
    .collect();
    if !missing.is_empty() {
        bad.push(format!(
            "kernel_fn.{} not > 0: kernel_fn = {}",
            missing.join(", kernel_fn."),
            spawn.get("kernel_fn").map_or("absent".to_string(), json)
        ));
    }
    bad
}

/// A vfork-style spawn on a kernel before 6.10 (no sched_prepare_exec):
/// begin_new_exec marks the exec's point of no return, which releases the
/// suspended parent, and the parent returns after it.
fn check_vfork_release(spawn: &Value) -> Vec<String> {
    let (prepare, release, back) = (
        ts(spawn, "exec_prepare"),
        ts(spawn, "vfork_release"),
        ts(spawn, "clone_exit"),
    );
    match (prepare, release, back) {
        (Some(p), Some(r), Some(b)) if p == r && r <= b => Vec::new(),
        other => vec![format!(
            "no vfork release at begin_new_exec before the parent's return \
             (exec_prepare, vfork_release, clone_exit) = {other:?}"
        )],
    }
}

/// The spawner's PATH search, seen through the exec stage's kernel-function
/// tier: the PATH_MISSES made-up directories fail with ENOENT first, in
/// order, and the last attempt succeeds.
fn check_exec_attempts(spawn: &Value) -> Result<()> {
    let attempts = spawn
        .get("exec_attempts")
        .and_then(Value::as_array)
        .context("no exec_attempts")?;
    ensure!(
        attempts.len() > PATH_MISSES,
        "{} exec attempts, expected more than {PATH_MISSES}: {}",
        attempts.len(),
        json(&Value::Array(attempts.clone()))
    );
    for (n, a) in attempts.iter().take(PATH_MISSES).enumerate() {
        let path = a.get("path").and_then(Value::as_str).unwrap_or("");
        ensure!(
            path.ends_with(&format!("spawnprof-miss-{n}/true"))
                && a.get("ret").and_then(Value::as_i64) == Some(-2),
            "attempt {n} should be a failed (ENOENT) spawnprof-miss-{n}/true: {}",
            json(a)
        );
    }
    let last = attempts.last().expect("non-empty");
    ensure!(
        last.get("ret").and_then(Value::as_i64) == Some(0),
        "the last exec attempt did not succeed: {}",
        json(last)
    );
    Ok(())
}

/// The smoke run's checks, with a short report of what the VM offers.
fn check_smoke(sections: &[Section]) -> Result<()> {
    let uname = ok_section(sections, "uname")?.body.trim().to_string();
    ensure!(
        uname.starts_with("6.1.0-"),
        "expected a 6.1.0 kernel, got {uname:?}"
    );
    let events = ok_section(sections, "syscall-events")?;
    ensure!(
        !events.body.trim().is_empty(),
        "no syscall tracepoints: {}",
        events.describe()
    );
    let kprobe_type = section(sections, "kprobe-pmu")?;
    let functions = ok_section(sections, "filter-functions")?;
    let btf = section(sections, "btf")?;
    let spawnprof = section(sections, "spawnprof-runs")?;
    // 126/127: the shell could not execute it, i.e. a missing loader or library.
    ensure!(
        !matches!(spawnprof.rc, Some(126 | 127) | None),
        "spawnprof does not run in the VM: {}",
        spawnprof.describe()
    );
    let forks = ok_section(sections, "fork-count")?.body.trim().to_string();
    let kprobe_hits = section(sections, "kprobe-count")?;

    println!("vm-test: smoke results");
    println!("  kernel:               {uname}");
    let first_syscall = events.body.lines().find(|l| l.starts_with("sys_"));
    println!(
        "  syscall tracepoints:  present (first: {})",
        first_syscall.unwrap_or("?")
    );
    println!(
        "  kprobe PMU type:      {}",
        if kprobe_type.rc == Some(0) {
            kprobe_type.body.trim()
        } else {
            "absent"
        }
    );
    println!("  traceable functions:  {}", functions.body.trim());
    println!(
        "  /sys/kernel/btf/vmlinux: {}",
        if btf.rc == Some(0) {
            "present"
        } else {
            "absent"
        }
    );
    println!("  spawnprof --help:     exit status {:?}", spawnprof.rc);
    println!("  forks traced in a {SPAWN_COUNT}-iteration loop: {forks}");
    println!(
        "  copy_page_range kprobe hits in that loop: {}",
        kprobe_hits.body.trim()
    );
    ensure!(
        kprobe_type.rc == Some(0),
        "no kprobe PMU: {}",
        kprobe_type.describe()
    );
    ensure!(btf.rc == Some(0), "no kernel BTF: {}", btf.describe());
    ensure!(
        kprobe_hits.rc == Some(0),
        "the tracefs kprobe did not fire: {}",
        kprobe_hits.describe()
    );
    Ok(())
}

fn print_shell(sections: &[Section]) -> Result<()> {
    let mut failed = Vec::new();
    for s in sections {
        println!("{}", s.describe());
        if s.rc != Some(0) {
            failed.push(s.name.clone());
        }
    }
    ensure!(failed.is_empty(), "failed in the VM: {}", failed.join(", "));
    Ok(())
}

// ---------------------------------------------------------------------------
// Small helpers

fn read_dir(dir: &Path) -> Result<Vec<fs::DirEntry>> {
    fs::read_dir(dir)
        .and_then(|entries| entries.collect())
        .with_context(|| format!("reading {}", dir.display()))
}

fn find_entry(dir: &Path, pred: impl Fn(&str) -> bool) -> Result<Option<PathBuf>> {
    Ok(read_dir(dir)?
        .into_iter()
        .find(|e| pred(&e.file_name().to_string_lossy()))
        .map(|e| e.path()))
}

fn create_dir(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
}

fn remove_dir_if_exists(dir: &Path) -> Result<()> {
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing {}", dir.display()))
        }
        _ => Ok(()),
    }
}

fn copy_file(from: &Path, to: &Path) -> Result<()> {
    fs::copy(from, to)
        .map(drop)
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))
}

fn set_executable(path: &Path) -> Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(0o755))
        .with_context(|| format!("making {} executable", path.display()))
}

/// Compact JSON for quoting values in error messages.
fn json(value: &Value) -> String {
    value.to_string()
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_highest_abi() {
        let names = [
            "linux-image-6.1.0-9-cloud-amd64-unsigned",
            "linux-image-6.1.0-56-cloud-amd64-unsigned",
            "linux-image-6.1.0-47-cloud-amd64-unsigned",
        ];
        assert_eq!(
            newest_by_abi(names.into_iter()).as_deref(),
            Some("linux-image-6.1.0-56-cloud-amd64-unsigned")
        );
    }

    #[test]
    fn sections_round_trip() {
        let n = "abc";
        let m = marker(n);
        let console = format!(
            "boot noise\n\x1b[2J{m} ready\n{m} begin one\nhello\n\n{m} end one rc=0\n\
             {m} begin two\npartial"
        );
        let s = parse_sections(&console, n).expect("parses");
        assert_eq!(s.len(), 2);
        assert_eq!(
            (s[0].name.as_str(), s[0].rc, s[0].body.as_str()),
            ("one", Some(0), "hello")
        );
        assert_eq!(
            (s[1].name.as_str(), s[1].rc, s[1].body.as_str()),
            ("two", None, "partial")
        );
    }

    fn sections_for(dir: &str, mechanism: &str, copy_ns: u64) -> Vec<Section> {
        let sec = |name: String, body: String| Section {
            name,
            rc: Some(0),
            body,
        };
        let rows: Vec<String> = CHECKED_STAGES
            .iter()
            .map(|stage| format!(r#"{{"stage":"{stage}","mechanism":"{mechanism}"}}"#))
            .chain([r#"{"stage":"exit","mechanism":"tracepoint"}"#.to_string()])
            .collect();
        let plan = format!(r#"{{"plan":[{}]}}"#, rows.join(","));
        let attempts = r#"[{"path":"/nonexistent/spawnprof-miss-0/true","ret":-2},
            {"path":"/nonexistent/spawnprof-miss-1/true","ret":-2},{"path":"/bin/true","ret":0}]"#
            .replace('\n', "");
        let fork = format!(
            r#"{{"syscall":"kernel_clone","method":"fork","thread":false,"parent_cpu":0,"child_first_cpu":1,"ts":{{"reap":7,"mm_lock_wait":3,"mm_copy_start":4,"first_run":5}},"faults":{{"pre_exec_cow":2,"total":90}},"exec_attempts":{attempts},"kernel_fn":{{"copy_page_range_ns":{copy_ns},"copy_page_range_calls":9,"anon_vma_fork_calls":3}}}}"#
        );
        let vfork = format!(
            r#"{{"syscall":"kernel_clone","method":"vfork","thread":false,"parent_cpu":0,"child_first_cpu":0,"ts":{{"reap":9,"first_run":2,"exec_prepare":5,"vfork_release":5,"clone_exit":6}},"exec_attempts":{attempts}}}"#
        );
        let thread = r#"{"syscall":"kernel_clone","method":"thread","thread":true,"kernel_fn":{}}"#;
        let spawns = [
            vec![thread.to_string()],
            vec![fork; SPAWN_COUNT],
            vec![vfork; SPAWN_COUNT],
        ]
        .concat()
        .join("\n");
        vec![
            sec(format!("record-{dir}"), String::new()),
            sec(format!("summary-{dir}"), plan),
            sec(format!("spawns-{dir}"), spawns),
        ]
    }

    #[test]
    fn tiers_pass_and_fail() {
        let (a, b) = (&RUNS[0], &RUNS[1]);
        assert_eq!(
            assert_tiers(&sections_for("a", "fentry", 5000), a, true).ok(),
            Some(SPAWN_COUNT)
        );
        assert_eq!(
            assert_tiers(&sections_for("b", "kprobe", 5000), b, true).ok(),
            Some(SPAWN_COUNT)
        );
        let wrong_tier = assert_tiers(&sections_for("b", "fentry", 5000), b, true).unwrap_err();
        assert!(format!("{wrong_tier:#}").contains(r#""mechanism":"fentry""#));
        let no_time = assert_tiers(&sections_for("a", "fentry", 0), a, true).unwrap_err();
        assert!(format!("{no_time:#}").contains("copy_page_range_ns"));
        let no_cpu: Vec<Section> = sections_for("a", "fentry", 5000)
            .into_iter()
            .map(|mut s| {
                s.body = s.body.replace(r#""child_first_cpu":1,"#, "");
                s
            })
            .collect();
        let no_cpu = assert_tiers(&no_cpu, a, true).unwrap_err();
        assert!(
            format!("{no_cpu:#}").contains("child_first_cpu"),
            "{no_cpu:#}"
        );
    }

    #[test]
    fn posix_spawn_runs_check_the_vfork_release_not_the_mm_copy() {
        let c = &RUNS[2];
        assert_eq!(c.method, "posix-spawn");
        assert_eq!(
            assert_tiers(&sections_for("c", "fentry", 0), c, true).ok(),
            Some(SPAWN_COUNT)
        );
        let unreleased: Vec<Section> = sections_for("c", "fentry", 0)
            .into_iter()
            .map(|mut s| {
                s.body = s.body.replace(r#""vfork_release":5,"#, "");
                s
            })
            .collect();
        let err = assert_tiers(&unreleased, c, true).unwrap_err();
        assert!(format!("{err:#}").contains("vfork_release"), "{err:#}");
        // The busybox fallback forks in every run.
        assert_eq!(
            assert_tiers(&sections_for("c", "fentry", 5000), c, false).ok(),
            Some(SPAWN_COUNT)
        );
    }

    #[test]
    fn a_spawn_seen_by_syscall_tracepoints_or_without_its_path_misses_fails() {
        let a = &RUNS[0];
        let tracepoint_clone: Vec<Section> = sections_for("a", "fentry", 5000)
            .into_iter()
            .map(|mut s| {
                s.body = s
                    .body
                    .replace(r#""syscall":"kernel_clone""#, r#""syscall":"clone""#);
                s
            })
            .collect();
        let err = assert_tiers(&tracepoint_clone, a, true).unwrap_err();
        assert!(format!("{err:#}").contains("kernel_clone"), "{err:#}");
        let no_misses: Vec<Section> = sections_for("a", "fentry", 5000)
            .into_iter()
            .map(|mut s| {
                s.body = s.body.replace("spawnprof-miss-1", "elsewhere");
                s
            })
            .collect();
        let err = assert_tiers(&no_misses, a, true).unwrap_err();
        assert!(format!("{err:#}").contains("spawnprof-miss-1"), "{err:#}");
        // Without the spawner (busybox loop) there is no PATH search to check.
        assert!(assert_tiers(&no_misses, a, false).is_ok());
    }

    /// Boots the VM for real; `cargo test -p xtask -- --ignored vm_smoke`.
    #[test]
    #[ignore = "boots a QEMU VM; `cargo xtask test` runs it as its vm-test step"]
    fn vm_smoke() {
        if let Err(e) = run(&["--smoke".to_string()]) {
            panic!("{e:#}");
        }
    }
}
