//! Parking the fork-only probes while the traced processes do not fork.
//!
//! On kernels without fentry or kprobes, dup_mmap and copy-on-write faults
//! are seen through the mmap-lock and page-fault tracepoints, which fire
//! for every such event of the machine: about 100 program runs per spawn
//! of a posix_spawn loop that never forks, and 13 µs of BPF time with
//! statistics on. After [`QUIET_SPAWNS`] spawns without a fork, with none
//! in flight, they are detached in two groups: the mmap-lock programs
//! (dup_mmap) at once, the page-fault one once no copy-on-write window is
//! open either (a shell that forked once and waits keeps one open). The
//! probes count those spawns and wake the reader at the first threshold
//! (later ones wait for its timer):
//!
//! ```text
//! attached ──N spawns, no fork──▶ PARKED[0] |= MM_LOCK (| FAULTS), links dropped
//!    ▲                                 │ a traced fork's entry: its record
//!    └── re-attached, PARKED[0] = 0 ◀──┘ marked unwatched, reader woken; N doubles
//! ```
//!
//! N starts at [`QUIET_SPAWNS`] (32) and doubles at each return, up to
//! [`QUIET_SPAWNS_MAX`]: a workload that forks every hundred spawns loses
//! the dup_mmap of two forks, not of one in each hundred.
//!
//! A fork that begins while parked has no dup_mmap (and, if the fault
//! program was parked too, no copy-on-write counts), and its record says
//! so; the forks after it have both.
//!
//! `serve` and `top` watch every process, and on a real machine some
//! window is nearly always open: PID 1 or a shell forked and waits. So
//! they also park the page-fault program once no window has had a
//! copy-on-write fault for [`SessionOptions::cow_quiet`] (5 s): a window
//! that stayed quiet that long counts no later writes until the next fork
//! brings the program back. `record` keeps counting to the window's end.
//!
//! [`SessionOptions::cow_quiet`]: super::SessionOptions::cow_quiet
use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use aya::{
    Ebpf,
    maps::{Array, MapData},
    programs::RawTracePoint,
};
use serde::{Deserialize, Serialize};
pub use spawnprof_common::QUIET_SPAWNS;
use spawnprof_common::{Gates, MAP_GATES, MAP_PARKED, QUIET_SPAWNS_MAX, parked};

use super::attach::{ForkLinks, ForkProgram, program};
use crate::sys::clock::thread_cpu_ns;

/// How long `serve` and `top` let open copy-on-write windows go without
/// a fault before the page-fault program parks: the writes that follow a
/// fork come at once (a server's BGSAVE keeps writing), an idle shell's
/// never.
pub const METRICS_COW_QUIET: Duration = Duration::from_secs(5);

/// How often the fork-only probes were parked and brought back, and the
/// CPU that took: each detach or attach has the kernel re-patch every
/// call site of its tracepoint (about 0.6 ms for each mmap-lock one here).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParkCounts {
    pub parked: u32,
    pub resumed: u32,
    #[serde(default)]
    pub cpu_ns: u64,
}

/// The fork-only programs' links while attached, and where the parking
/// stands.
#[derive(Default)]
pub struct ForkProbes {
    /// The links of the attached fork-only programs.
    pub(super) links: ForkLinks,
    /// The kernel's count of traced forks when last looked at.
    forks_seen: u64,
    /// The parked programs, to attach again.
    parked: Vec<ForkProgram>,
    /// Spawns without a fork before parking: doubles at each return.
    quiet: u64,
    counts: ParkCounts,
    /// CPU of the detaching threads, added as each finishes.
    detach_cpu_ns: Arc<AtomicU64>,
    /// How long open windows may go without a copy-on-write fault before
    /// the fault program parks anyway (`serve`, `top`); `None`: never.
    cow_quiet: Option<Duration>,
    /// The kernel's count of windowed copy-on-write faults, and when it
    /// last moved (or the fault program came back).
    cow_seen: u64,
    cow_moved: Option<Instant>,
}

impl ForkProbes {
    pub(super) fn new(links: ForkLinks, cow_quiet: Option<Duration>) -> Self {
        Self {
            links,
            quiet: QUIET_SPAWNS,
            cow_quiet,
            ..Self::default()
        }
    }

    /// The counts so far, with the CPU of the detaches that have finished.
    pub fn counts(&self) -> ParkCounts {
        ParkCounts {
            cpu_ns: self.counts.cpu_ns + self.detach_cpu_ns.load(Ordering::Relaxed),
            ..self.counts
        }
    }

    /// Parks or brings back the fork-only probes. Called by the reader on
    /// each wake-up (`serve` and `top`: on a timer): one map read.
    pub fn keep(&mut self, ebpf: &mut Ebpf) -> Result<()> {
        if self.links.is_empty() && self.parked.is_empty() {
            return Ok(());
        }
        let gates = read_gates(ebpf)?;
        if gates.forks_seen != self.forks_seen {
            self.forks_seen = gates.forks_seen;
            return self.resume(ebpf);
        }
        let windows_quiet = self.windows_quiet(&gates);
        let attached = groups(self.links.iter().map(|(p, _)| p));
        let due = parkable(&gates, self.quiet, windows_quiet) & attached;
        if due != 0 {
            self.park(ebpf, due, windows_quiet)?;
        }
        Ok(())
    }

    /// Whether the open copy-on-write windows went [`Self::cow_quiet`]
    /// without a fault (never without that option).
    fn windows_quiet(&mut self, gates: &Gates) -> bool {
        let Some(quiet) = self.cow_quiet else {
            return false;
        };
        let now = Instant::now();
        if gates.cow_faults_seen != self.cow_seen || self.cow_moved.is_none() {
            self.cow_seen = gates.cow_faults_seen;
            self.cow_moved = Some(now);
        }
        self.cow_moved.is_some_and(|t| now - t >= quiet)
    }

    /// Parks the groups `due` (attached ones).
    fn park(&mut self, ebpf: &mut Ebpf, due: u32, windows_quiet: bool) -> Result<()> {
        let before = groups(&self.parked);
        set_parked(ebpf, before | due)?;
        // A fork that began before the flag was up would be half seen.
        let gates = read_gates(ebpf)?;
        let still = parkable(&gates, self.quiet, windows_quiet);
        if gates.forks_seen != self.forks_seen || still & due != due {
            return set_parked(ebpf, before);
        }
        let (links, kept): (ForkLinks, ForkLinks) = std::mem::take(&mut self.links)
            .into_iter()
            .partition(|(p, _)| group(p) & due != 0);
        self.links = kept;
        self.parked.extend(links.iter().map(|(p, _)| *p));
        self.counts.parked += 1;
        // Each detach waits for an RCU grace period: not on the reader's time.
        let spent = Arc::clone(&self.detach_cpu_ns);
        std::thread::spawn(move || {
            let start = thread_cpu_ns();
            drop(links);
            spent.fetch_add(thread_cpu_ns() - start, Ordering::Relaxed);
        });
        Ok(())
    }

    fn resume(&mut self, ebpf: &mut Ebpf) -> Result<()> {
        if self.parked.is_empty() {
            return Ok(());
        }
        let start = thread_cpu_ns();
        for fork in std::mem::take(&mut self.parked) {
            let rt: &mut RawTracePoint = program(ebpf, fork.program)?.try_into()?;
            let link = rt
                .attach(fork.tracepoint)
                .with_context(|| format!("attaching {} again", fork.program))?;
            self.links.push((fork, rt.take_link(link)?));
        }
        self.counts.resumed += 1;
        self.quiet = (self.quiet * 2).min(QUIET_SPAWNS_MAX);
        // The fork's own window gets its full quiet time.
        self.cow_moved = None;
        self.counts.cpu_ns += thread_cpu_ns() - start;
        set_parked(ebpf, 0)
    }
}

/// The groups the gates allow to park: none while a fork is in flight or
/// fewer than `quiet` spawns went by without one; the page-fault program
/// only with no copy-on-write window open, or none with a recent fault
/// (`windows_quiet`).
fn parkable(gates: &Gates, quiet: u64, windows_quiet: bool) -> u32 {
    if gates.spawns_since_fork < quiet || gates.forks_in_flight != 0 {
        return 0;
    }
    if gates.cow_windows == 0 || windows_quiet {
        parked::MM_LOCK | parked::FAULTS
    } else {
        parked::MM_LOCK
    }
}

/// The group of a fork-only program.
fn group(p: &ForkProgram) -> u32 {
    if p.tracepoint == "page_fault_user" {
        parked::FAULTS
    } else {
        parked::MM_LOCK
    }
}

/// The groups `programs` belong to.
fn groups<'a>(programs: impl IntoIterator<Item = &'a ForkProgram>) -> u32 {
    programs.into_iter().fold(0, |bits, p| bits | group(p))
}

/// The probes' gate counters now (see [`spawnprof_common::Gates`]).
pub(super) fn read_gates(ebpf: &Ebpf) -> Result<Gates> {
    let map = ebpf
        .map(MAP_GATES)
        .context("the probes' gate counters (.bss) are missing")?;
    let gates: Array<_, Gates> = Array::try_from(map)?;
    Ok(gates.get(&0, 0)?)
}

fn set_parked(ebpf: &mut Ebpf, groups: u32) -> Result<()> {
    let mut flag: Array<&mut MapData, u32> = Array::try_from(
        ebpf.map_mut(MAP_PARKED)
            .context("the PARKED map is missing")?,
    )?;
    flag.set(0, groups, 0)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gates(spawns_since_fork: u64, cow_windows: u64) -> Gates {
        Gates {
            spawns_since_fork,
            cow_windows,
            ..Gates::default()
        }
    }

    #[test]
    fn an_open_window_keeps_the_fault_program_until_it_goes_quiet() {
        let both = parked::MM_LOCK | parked::FAULTS;
        assert_eq!(parkable(&gates(31, 0), 32, true), 0);
        assert_eq!(parkable(&gates(32, 0), 32, false), both);
        assert_eq!(parkable(&gates(32, 1), 32, false), parked::MM_LOCK);
        assert_eq!(parkable(&gates(32, 1), 32, true), both);
        let in_flight = Gates {
            forks_in_flight: 1,
            ..gates(32, 1)
        };
        assert_eq!(parkable(&in_flight, 32, true), 0);
    }

    #[test]
    fn windows_go_quiet_only_with_the_option_and_a_still_count() {
        let mut exact = ForkProbes::new(Vec::new(), None);
        assert!(!exact.windows_quiet(&gates(0, 1)));
        let mut probes = ForkProbes::new(Vec::new(), Some(Duration::ZERO));
        assert!(probes.windows_quiet(&gates(0, 1)));
        probes.cow_quiet = Some(Duration::from_secs(3600));
        let faulted = Gates {
            cow_faults_seen: 5,
            ..gates(0, 1)
        };
        assert!(!probes.windows_quiet(&faulted));
        // Backdated: an hour without a fault.
        probes.cow_moved = Instant::now().checked_sub(Duration::from_secs(3600));
        assert!(probes.windows_quiet(&faulted));
        let faulted_again = Gates {
            cow_faults_seen: 6,
            ..faulted
        };
        assert!(!probes.windows_quiet(&faulted_again));
    }
}
