//! `cargo xtask vm-test`: boots Debian's 6.1 cloud kernel under QEMU with a
//! busybox initramfs holding the spawnprof binaries, runs them there and checks
//! what they wrote from the host.
//!
//! A VM because the development host has no kprobes and refuses fentry, so
//! spawnprof's two upper attach tiers need another kernel. Debian's 6.1 cloud
//! kernel has both (and BTF) and boots in seconds under TCG (KVM hangs here).
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
mod binaries;
mod checks;
mod console;
mod files;
mod image;
mod initramfs;
mod options;
mod qemu;
mod runs;
mod smoke;

use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};

use binaries::Binaries;
use console::Section;
use options::{Mode, Options, Paths};
use runs::VmCommand;

/// Debian packages the harness runs on the host (qemu-system-x86 replaces
/// the preinstalled backports qemu-utils, which spawnprof does not need).
const HOST_PACKAGES: [&str; 3] = ["qemu-system-x86", "cpio", "busybox-static"];

pub fn run(args: &[String]) -> Result<()> {
    let started = Instant::now();
    let opts = Options::parse(args)?;
    let paths = Paths::new();
    files::create_dir(&paths.cache)?;
    let mut timings = Timings::default();

    timings.time("packages", || {
        crate::cmd::ensure_debian_packages("vm-test", &HOST_PACKAGES)
    })?;
    let kernel = timings.time("kernel", || image::fetch_kernel(&paths.cache))?;
    println!(
        "vm-test: kernel {} ({}, {:.1}s)",
        kernel.package,
        if kernel.downloaded {
            "downloaded"
        } else {
            "cached"
        },
        timings.last().as_secs_f64()
    );
    let bins = binaries::locate_binaries(&paths, opts.profile)?;
    let nonce = console::make_nonce();
    let init = initramfs::init_script(&nonce, &commands(&opts.mode, &bins));
    let initrd = timings.time("initramfs", || {
        initramfs::build_initramfs(&paths.cache, &bins, &init)
    })?;
    let console = timings.time("boot+run", || {
        qemu::boot(
            &kernel.vmlinuz,
            &initrd,
            &paths.log,
            opts.timeout,
            opts.verbose,
        )
    })?;
    println!("vm-test: timings: {}", timings.describe());

    let outcome = console::parse_sections(&console, &nonce)
        .and_then(|sections| check(&opts.mode, &sections, &bins));
    println!(
        "vm-test: total {:.1}s; console log: {}",
        started.elapsed().as_secs_f64(),
        paths.log.display()
    );
    outcome.map_err(|e| anyhow!("{e:#}\n(full serial console: {})", paths.log.display()))
}

fn commands(mode: &Mode, bins: &Binaries) -> Vec<VmCommand> {
    match mode {
        Mode::Full => runs::full_commands(bins),
        Mode::Smoke => smoke::smoke_commands(),
        Mode::Shell(cmds) => runs::shell_commands(cmds),
    }
}

fn check(mode: &Mode, sections: &[Section], bins: &Binaries) -> Result<()> {
    match mode {
        Mode::Full => checks::check_full(sections, bins),
        Mode::Smoke => smoke::check_smoke(sections),
        Mode::Shell(_) => checks::print_shell(sections),
    }
}

/// How long each phase took, printed as one line.
#[derive(Default)]
struct Timings(Vec<(&'static str, Duration)>);

impl Timings {
    fn time<T>(&mut self, phase: &'static str, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let t = Instant::now();
        let result = f();
        self.0.push((phase, t.elapsed()));
        result
    }

    fn last(&self) -> Duration {
        self.0.last().map_or(Duration::ZERO, |(_, d)| *d)
    }

    fn describe(&self) -> String {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|(phase, d)| format!("{phase} {:.1}s", d.as_secs_f64()))
            .collect();
        parts.join(", ")
    }
}

#[cfg(test)]
mod tests {
    /// Boots the VM for real; `cargo test -p xtask -- --ignored vm_smoke`.
    #[test]
    #[ignore = "boots a QEMU VM; `cargo xtask test` runs it as its vm-test step"]
    fn vm_smoke() {
        if let Err(e) = super::run(&["--smoke".to_string()]) {
            panic!("{e:#}");
        }
    }
}
