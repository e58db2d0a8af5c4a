//! Each guest's initrd, and the guests booted and checked, as many at once
//! as `--jobs` allows (TCG runs a guest's vCPUs on host threads, so two
//! guests keep two cores busy).
use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;
use std::thread;
use std::time::Instant;

use anyhow::{Result, anyhow};

use super::apt::Apt;
use super::binaries::Binaries;
use super::console::{self, Section, section};
use super::files::create_dir;
use super::guests::{Arch, GUESTS, Guest};
use super::image::Kernel;
use super::initramfs;
use super::options::{Mode, Options, Paths};
use super::runs::{self, VmCommand};
use super::{checks, qemu, smoke};

/// A guest ready to boot.
pub struct Prepared {
    guest: &'static Guest,
    kernel: Kernel,
    bins: Binaries,
    initrd: PathBuf,
    log: PathBuf,
    nonce: String,
}

pub struct Outcome {
    pub guest: &'static Guest,
    pub package: String,
    pub seconds: f64,
    /// Lines to report, or what failed.
    pub result: Result<Vec<String>>,
    /// The first line of the first boot's failure, when it was booted again.
    pub first_failure: Option<String>,
}

/// Writes each guest's initrd: its architecture's base and payload (built
/// once per architecture) and its own /init.
pub fn prepare(
    paths: &Paths,
    apt: &Apt,
    mode: &Mode,
    guests: &[&'static Guest],
    kernels: Vec<Kernel>,
    bins: &BTreeMap<Arch, Binaries>,
) -> Result<Vec<Prepared>> {
    let nonce = console::make_nonce();
    let mut archives: BTreeMap<Arch, (PathBuf, PathBuf)> = BTreeMap::new();
    let mut prepared = Vec::new();
    for (&guest, kernel) in guests.iter().zip(kernels) {
        let bins = bins[&guest.arch].clone();
        let (base, payload) = match archives.entry(guest.arch) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => e.insert((
                initramfs::base(&paths.cache, apt, guest.arch)?,
                initramfs::payload(&paths.cache, &bins)?,
            )),
        };
        let dir = paths.guest(guest);
        create_dir(&dir)?;
        let init = initramfs::init_script(&nonce, &commands(mode, guest, &bins));
        let initrd = dir.join("initrd.gz");
        initramfs::initrd(base, payload, &init, &initrd)?;
        prepared.push(Prepared {
            guest,
            kernel,
            bins,
            initrd,
            log: dir.join("console.log"),
            nonce: nonce.clone(),
        });
    }
    Ok(prepared)
}

fn commands(mode: &Mode, guest: &Guest, bins: &Binaries) -> Vec<VmCommand> {
    match mode {
        Mode::Full => runs::full_commands(guest, bins),
        Mode::Smoke => smoke::smoke_commands(),
        Mode::Shell(cmds) => runs::shell_commands(cmds),
    }
}

/// Boots every guest, `opts.jobs` at a time, the slow (short-run) ones
/// first so they do not finish last alone; reports each as it ends.
pub fn run_all(mut prepared: Vec<Prepared>, opts: &Options) -> Vec<Outcome> {
    prepared.sort_by_key(|p| !p.guest.short);
    let workers = opts.jobs.min(prepared.len());
    let queue = Mutex::new(VecDeque::from(prepared));
    let outcomes = Mutex::new(Vec::new());
    thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                loop {
                    // Its own statement: the queue's lock must not be held
                    // through the boot, as a `while let` would hold it.
                    let next = queue.lock().expect("queue").pop_front();
                    let Some(p) = next else { break };
                    let outcome = run_one(&p, opts);
                    let outcome = match outcome.result {
                        Ok(_) => outcome,
                        Err(_) => boot_again(&p, opts, outcome),
                    };
                    print_outcome(&outcome);
                    outcomes.lock().expect("outcomes").push(outcome);
                }
            });
        }
    });
    let mut outcomes = outcomes.into_inner().expect("outcomes");
    outcomes.sort_by_key(|o| GUESTS.iter().position(|g| g.name == o.guest.name));
    outcomes
}

/// A guest that failed gets one more boot: TCG emulation has failed a
/// boot that passed five times in a row on the same host. The first
/// failure is printed whole and stays in the summary; two failures fail.
fn boot_again(p: &Prepared, opts: &Options, first: Outcome) -> Outcome {
    print_outcome(&first);
    let saved = p.log.with_extension("first.log");
    let _ = std::fs::copy(&p.log, &saved);
    println!(
        "vm-test: [{}] booting it once more (first console: {})",
        p.guest.name,
        saved.display()
    );
    let reason = first
        .result
        .as_ref()
        .err()
        .map(|e| first_line(&format!("{e:#}")));
    Outcome {
        first_failure: reason,
        ..run_one(p, opts)
    }
}

/// The first non-empty line of `text`, at most 160 characters.
fn first_line(text: &str) -> String {
    let line = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    line.chars().take(160).collect()
}

fn run_one(p: &Prepared, opts: &Options) -> Outcome {
    println!(
        "vm-test: [{}] booting {} (QEMU TCG, timeout {}s)",
        p.guest.name,
        p.kernel.package,
        opts.timeout.as_secs()
    );
    let started = Instant::now();
    let arch = p.guest.arch;
    let result = qemu::boot(
        arch,
        &p.kernel.vmlinuz,
        &p.initrd,
        &p.log,
        opts.timeout,
        opts.verbose,
    )
    .and_then(|console| console::parse_sections(&console, &p.nonce))
    .and_then(|sections| check(&opts.mode, p.guest, &sections, &p.bins))
    .map_err(|e| anyhow!("{e:#}\n(full serial console: {})", p.log.display()));
    Outcome {
        guest: p.guest,
        package: p.kernel.package.clone(),
        seconds: started.elapsed().as_secs_f64(),
        result,
        first_failure: None,
    }
}

fn check(mode: &Mode, guest: &Guest, sections: &[Section], bins: &Binaries) -> Result<Vec<String>> {
    match mode {
        Mode::Full => {
            let mut lines = section(sections, "probes")
                .map(|p| vec![format!("spawnprof probes in the VM: {}", p.describe())])
                .unwrap_or_default();
            lines.extend(checks::check_full(guest, sections, bins)?);
            Ok(lines)
        }
        Mode::Smoke => smoke::check_smoke(guest, sections),
        Mode::Shell(_) => checks::shell_outputs(sections),
    }
}

/// One guest's report, in one piece so that parallel guests do not mix.
fn print_outcome(o: &Outcome) {
    let mut out = std::io::stdout().lock();
    let name = o.guest.name;
    let status = status(o);
    let _ = writeln!(
        out,
        "vm-test: [{name}] {status} in {:.1}s ({})",
        o.seconds, o.package
    );
    let lines = match &o.result {
        Ok(lines) => lines.clone(),
        Err(e) => vec![format!("error: {e:#}")],
    };
    for line in lines.iter().flat_map(|l| l.lines()) {
        // `cargo xtask test` counts the lines that start with SKIPPED:.
        if line.starts_with("SKIPPED:") {
            let _ = writeln!(out, "{line}");
        } else {
            let _ = writeln!(out, "vm-test: [{name}]   {line}");
        }
    }
    let _ = out.flush();
}

/// One line per guest, in the matrix's order, then why each failed boot
/// failed (the error's first line: the full text is above).
pub fn print_summary(outcomes: &[Outcome]) {
    println!(
        "vm-test: {:<10} {:<14} {:>9}  kernel",
        "guest", "result", "boot+run"
    );
    for o in outcomes {
        println!(
            "vm-test: {:<10} {:<14} {:>8.1}s  {}",
            o.guest.name,
            status(o),
            o.seconds,
            o.package
        );
    }
    for o in outcomes {
        if let Some(first) = &o.first_failure {
            println!("vm-test: {} first boot: {first}", o.guest.name);
        }
        if let Err(e) = &o.result {
            println!(
                "vm-test: {}: {}",
                o.guest.name,
                first_line(&format!("{e:#}"))
            );
        }
    }
}

fn status(o: &Outcome) -> &'static str {
    match (&o.result, &o.first_failure) {
        (Ok(_), None) => "ok",
        (Ok(_), Some(_)) => "ok (2nd boot)",
        (Err(_), _) => "FAILED",
    }
}
