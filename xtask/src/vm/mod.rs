//! `cargo xtask vm-test`: boots a matrix of Debian cloud kernels under QEMU
//! (5.10, 6.1 and 6.12 on x86_64, 6.1 on arm64), each with a busybox
//! initramfs holding the spawnprof binaries built for it, runs them there and
//! checks from the host what they wrote against docs/KERNELS.md.
//!
//! VMs because the development host has no kprobes and refuses fentry, and
//! runs one kernel; Debian's cloud kernels have both tiers and BTF and boot
//! in seconds under TCG (KVM hangs here).
//!
//! ```text
//! cargo xtask vm-test                 record runs A-F on every kernel (A, C, F on arm64)
//! cargo xtask vm-test --smoke         harness self-check; needs no `spawnprof record`
//! cargo xtask vm-test --shell CMD ... run each CMD in the VMs and print its output
//!   --kernel NAME     only this kernel (repeatable): 5.10, 6.1, 6.12, 6.1-arm64
//!   --jobs N          guests booted at once (default: the host's CPUs)
//!   --timeout SECS    limit for each guest's run (default 600)
//!   --debug|--release which target/ profile to take the binaries from
//!   --verbose         stream the serial consoles while the VMs run
//! ```
//!
//! Everything downloaded or built lives in `target/vm-cache/`, including the
//! apt configuration the kernels are found with; each guest's serial console
//! of the last run is kept in `target/vm-cache/<kernel>/console.log`.
mod apt;
mod binaries;
mod boots;
mod checks;
mod console;
mod expect;
mod files;
mod guests;
mod image;
mod initramfs;
mod options;
mod qemu;
mod runs;
mod smoke;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use apt::Apt;
use binaries::Binaries;
use guests::{Arch, BUSYBOX_SUITE, GUESTS};
use options::{Options, Paths};

pub fn run(args: &[String]) -> Result<()> {
    let started = Instant::now();
    let opts = Options::parse(args)?;
    let paths = Paths::new();
    files::create_dir(&paths.cache)?;
    let guests = opts.guests()?;
    let arches: BTreeSet<Arch> = guests.iter().map(|g| g.arch).collect();
    let mut timings = Timings::default();

    timings.time("packages", || host_packages(&arches))?;
    let apt = timings.time("apt", || Apt::new(&paths.cache, &sources()))?;
    let kernels = timings.time("kernels", || {
        let mut kernels = Vec::new();
        for guest in &guests {
            let kernel = image::fetch_kernel(&apt, guest, &paths.cache)?;
            let how = if kernel.downloaded {
                "downloaded"
            } else {
                "cached"
            };
            println!(
                "vm-test: [{}] kernel {} ({how})",
                guest.name, kernel.package
            );
            kernels.push(kernel);
        }
        Ok(kernels)
    })?;
    let bins = timings.time("binaries", || binaries_for(&paths, &opts, &arches))?;
    let prepared = timings.time("initramfs", || {
        boots::prepare(&paths, &apt, &opts.mode, &guests, kernels, &bins)
    })?;
    let outcomes = timings.time("boot+run", || Ok(boots::run_all(prepared, &opts)))?;

    println!("vm-test: timings: {}", timings.describe());
    boots::print_summary(&outcomes);
    println!("vm-test: total {:.1}s", started.elapsed().as_secs_f64());
    let failed: Vec<&str> = outcomes
        .iter()
        .filter(|o| o.result.is_err())
        .map(|o| o.guest.name)
        .collect();
    if !failed.is_empty() {
        bail!(
            "vm-test failed on {}, on two boots each (see above)",
            failed.join(", ")
        );
    }
    Ok(())
}

/// What the host needs for the guests' architectures: QEMU for each, the
/// cross toolchain for arm64, cpio, and Debian's archive keyring for apt.
fn host_packages(arches: &BTreeSet<Arch>) -> Result<()> {
    let mut pkgs = vec!["cpio", "debian-archive-keyring"];
    for arch in arches {
        pkgs.extend(arch.host_packages());
    }
    crate::cmd::ensure_debian_packages("vm-test", &pkgs)
}

/// (archive, suite) → Debian architectures: every guest's suites, and
/// busybox-static's suite for every architecture. All guests', whichever
/// run, so that choosing some with --kernel does not refetch the lists.
fn sources() -> BTreeMap<(&'static str, &'static str), Vec<&'static str>> {
    let mut sources: BTreeMap<(&str, &str), Vec<&str>> = BTreeMap::new();
    for guest in GUESTS {
        for &suite in guest.suites.iter().chain([&BUSYBOX_SUITE]) {
            let arches = sources.entry(suite).or_default();
            if !arches.contains(&guest.arch.debian()) {
                arches.push(guest.arch.debian());
            }
        }
    }
    sources
}

/// The host's binaries, and a cross build of them for each other arch.
fn binaries_for(
    paths: &Paths,
    opts: &Options,
    arches: &BTreeSet<Arch>,
) -> Result<BTreeMap<Arch, Binaries>> {
    let host = binaries::host_binaries(paths, opts.profile)?;
    let mut bins = BTreeMap::new();
    for &arch in arches {
        let built = binaries::cross_binaries(paths, &host, arch)?;
        binaries::check_built(&built)?;
        bins.insert(arch, built);
    }
    Ok(bins)
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
    /// Boots the VMs for real; `cargo test -p xtask -- --ignored vm_smoke`.
    #[test]
    #[ignore = "boots QEMU VMs; `cargo xtask test` runs vm-test as its own step"]
    fn vm_smoke() {
        if let Err(e) = super::run(&["--smoke".to_string()]) {
            panic!("{e:#}");
        }
    }
}
