//! Developer tasks for spawnprof: `cargo xtask <command>` (aliased in
//! .cargo/config.toml). The eBPF side needs a nightly toolchain, LLVM and
//! bpf-linker; every command that builds checks for them first, so a fresh
//! machine needs nothing but `cargo xtask test` (or `build`, `run`...).
mod benches;
mod cmd;
mod elf;
mod fuzz;
mod install;
mod setup;
mod test;
mod vm;

use std::os::unix::process::CommandExt;
use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "Developer tasks for spawnprof")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what the eBPF build needs (nightly + rust-src, llvm-<M>-dev,
    /// bpf-linker); only what is missing.
    Setup,
    /// Check the toolchain, then `cargo build` the default members.
    Build {
        #[arg(long)]
        release: bool,
    },
    /// Build (release unless --debug) and run spawnprof as root:
    /// `cargo xtask run -- ARGS...`.
    Run {
        #[arg(long)]
        debug: bool,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// `run -- bench ARGS...` (release).
    Bench {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// `run -- bench-report ARGS...` (release).
    BenchReport {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// A C spawn loop without probes, under spawnprof and under bpftrace
    /// timing the same stages, as ratios in interleaved rounds; the probes'
    /// cost per spawn, the end-to-exit time, the spawner against C, and
    /// strace -f (docs/BENCHMARKS.md).
    BenchOverhead {
        /// Runs per setup (the median is reported).
        #[arg(long, default_value_t = 5)]
        rounds: usize,
    },
    /// Both cores spawning /bin/true under spawnprof for a while: lost spawns
    /// and spawnprof's memory over time (docs/BENCHMARKS.md).
    BenchStorm {
        #[arg(long, default_value_t = 60)]
        seconds: u64,
    },
    /// `spawnprof compare` of N synthetic nodes made from one real quick
    /// bench: wall time, CPU and peak RSS (docs/BENCHMARKS.md).
    BenchFleet {
        #[arg(long, default_value_t = 1000)]
        nodes: usize,
    },
    /// What always-on `spawnprof serve --all` costs: the serial posix_spawn
    /// rate against no probes, serve's CPU at 1,000 spawns/s, and its
    /// memory and scrapes through a storm (docs/BENCHMARKS.md).
    BenchServe {
        /// Interleaved rounds of the rate comparison (the median is reported).
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        /// Length of the storm.
        #[arg(long, default_value_t = 60)]
        storm_seconds: u64,
    },
    /// Everything CI checks: fmt, clippy, build, unit, integration and VM
    /// tests. Ends with `N passed, M failed, K skipped`.
    Test,
    /// Build (release) and install spawnprof and spawnprof-spawner into
    /// PREFIX/bin (via sudo when not root).
    Install {
        #[arg(long, default_value = "/usr/local")]
        prefix: std::path::PathBuf,
    },
    /// Build (release) a Debian package of spawnprof with cargo-deb
    /// (installed when missing) into target/debian/, and print its path.
    Deb,
    /// Run the cargo-fuzz targets in fuzz/ for a bounded time each
    /// (nightly; installs cargo-fuzz if missing). Not part of `test`.
    Fuzz {
        /// How long to fuzz each target.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// Targets to run (default: all of them).
        targets: Vec<String>,
    },
    /// Boot Debian's 5.10, 6.1, 6.12 and arm64 6.1 kernels in QEMU and check
    /// each stage's mechanism and data there against docs/KERNELS.md
    /// (`cargo xtask vm-test --help` lists its options, parsed by vm/).
    #[command(alias = "vm")]
    VmTest {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn main() -> ExitCode {
    // Print errors ourselves: anyhow's Debug output would add a backtrace
    // whenever RUST_BACKTRACE is set, burying the one line that matters.
    match dispatch(Cli::parse().command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(task: Task) -> Result<ExitCode> {
    match task {
        Task::Setup => setup::ensure(false)?,
        Task::Build { release } => build(release, &[])?,
        Task::Run { debug, args } => run_spawnprof(!debug, &args)?,
        Task::Bench { args } => run_spawnprof(true, &prepend("bench", args))?,
        Task::BenchReport { args } => run_spawnprof(true, &prepend("bench-report", args))?,
        Task::BenchOverhead { rounds } => {
            build(true, &["spawnprof"])?;
            benches::overhead(rounds.max(1))?
        }
        Task::BenchStorm { seconds } => {
            build(true, &["spawnprof"])?;
            benches::storm(seconds.max(1))?
        }
        Task::BenchFleet { nodes } => {
            build(true, &["spawnprof"])?;
            benches::fleet(nodes.max(1))?
        }
        Task::BenchServe {
            rounds,
            storm_seconds,
        } => {
            build(true, &["spawnprof"])?;
            benches::serve(rounds.max(1), storm_seconds.max(1))?
        }
        Task::Test => return test::run(),
        Task::Install { prefix } => install::install(&prefix)?,
        Task::Deb => {
            install::deb()?;
        }
        Task::Fuzz { seconds, targets } => return fuzz::run(seconds, &targets),
        Task::VmTest { args } => vm::run(&args)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// `cargo build` of `packages`, or of the default members when empty.
pub(crate) fn build(release: bool, packages: &[&str]) -> Result<()> {
    setup::ensure(true)?;
    let with_spawnprof = packages.contains(&"spawnprof");
    // Never `--workspace`: that would build spawnprof-ebpf for the host and
    // fail (duplicate lang item); spawnprof's build.rs builds it for BPF.
    let mut cargo = cmd::cargo(["build"]);
    for package in packages {
        cargo.args(["-p", package]);
    }
    if with_spawnprof {
        // The spawner is linked below; building it here too would relink it
        // dynamically on every call.
        cargo.args(["--lib", "--bin", "spawnprof"]);
    }
    if release {
        cargo.arg("--release");
    }
    cmd::run(&mut cargo)?;
    if with_spawnprof {
        static_spawner(release)?;
    }
    Ok(())
}

/// Links the reference spawner statically (glibc's static-pie), so that
/// its address space is as small as a C loop's: dynamically linked, it has
/// about 22 more mappings, which every fork copies (fork-exec p50 0.82 of
/// the C loop's speed; static, 1.0: docs/BENCHMARKS.md). Only its own
/// crate is compiled with the flag; its dependencies stay shared.
fn static_spawner(release: bool) -> Result<()> {
    let mut cargo = cmd::cargo(["rustc", "-p", "spawnprof", "--bin", "spawnprof-spawner"]);
    if release {
        cargo.arg("--release");
    }
    cargo.args(["--", "-C", "target-feature=+crt-static"]);
    cmd::run(&mut cargo)
}

/// Builds, then replaces this process with spawnprof (via sudo if needed):
/// its exit code becomes ours, and Ctrl-C reaches it without killing a
/// parent that would otherwise have to relay the status.
fn run_spawnprof(release: bool, args: &[String]) -> Result<()> {
    // Only what runs, so a broken test crate does not block a profiling run.
    build(release, &["spawnprof"])?;
    let profile = if release { "release" } else { "debug" };
    let bin = cmd::target_dir().join(profile).join("spawnprof");
    let mut command = cmd::as_root(&bin)?;
    command.args(args);
    let err = command.exec();
    bail!("cannot run `{}`: {err}", cmd::describe(&command))
}

fn prepend(first: &str, rest: Vec<String>) -> Vec<String> {
    std::iter::once(first.to_string()).chain(rest).collect()
}
