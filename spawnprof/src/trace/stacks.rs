//! Sampled on-CPU stacks of the traced processes → folded stacks and an
//! inferno flamegraph (`stacks.folded`, `stacks.svg`).
//!
//! Kernel frames are symbolized from kallsyms. User frames are symbolized
//! with blazesym from the ELF files the process had mapped: spawned
//! processes are often gone by the end of a recording, so their
//! `/proc/PID/maps` is snapshotted while they run ([`MapsCache::observe`]).
//!
//! Kernel stacks are reliable; user stacks walked by frame pointers are
//! not: a binary built without them leaves a chain of garbage addresses
//! (up to the 127 the kernel keeps). Like profilers that check each
//! unwound address against the process's mappings, a user stack is kept
//! from its leaf outwards only while each address lies in an executable
//! mapping of the process; the first one that does not, and everything
//! beyond it, becomes one `[unwind stopped]` frame. Without a snapshot of
//! the process's mappings nothing can be checked, so its whole user stack
//! is that one frame. The root frame names the process and the program it
//! exec'd: `gcc → /usr/lib/gcc/x86_64-linux-gnu/12/cc1` is a child of gcc
//! before its exec, `cc1 → …` the same process after.
use crate::probe::RawSample;
use std::{
    collections::{BTreeMap, HashMap},
    fs,
    io::Write as _,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result};
use blazesym::symbolize::{Input, Symbolized, Symbolizer, source::Elf, source::Source};

use crate::trace::decode::comm_str;

#[derive(Clone, Debug)]
struct Mapping {
    start: u64,
    end: u64,
    offset: u64,
    /// The file, or `[vdso]`.
    path: PathBuf,
}

impl Mapping {
    fn is_file(&self) -> bool {
        self.path.is_absolute()
    }
}

/// File-backed executable mappings of processes, captured while they live.
#[derive(Default)]
pub struct MapsCache {
    by_tgid: HashMap<u32, Vec<Mapping>>,
    /// Processes to snapshot (again) once the budget allows: those that
    /// exec'd while it was spent, and those read before their dynamic
    /// loader had mapped their libraries. Oldest first.
    pending: std::collections::VecDeque<u32>,
    /// Snapshotted processes that have exited since the last prune.
    exited: Vec<u32>,
    /// Start of the current one-second budget window, and snapshots taken in it.
    window: Option<std::time::Instant>,
    taken: u32,
}

/// Snapshots per second at most. Reading /proc/PID/maps costs tens of µs
/// and takes the process's mmap lock; under a spawn storm a snapshot per
/// exec cost the workload a sixth of its rate. Processes past the budget
/// wait in line for the next second: the short-lived ones are gone by
/// then, so it goes to the long-lived ones, which get the most samples.
const SNAPSHOTS_PER_SECOND: u32 = 50;

/// A snapshot with this few executable mappings (the program, the dynamic
/// loader, the vDSO) was taken before the loader mapped the libraries:
/// it is read once more.
const BEFORE_LIBRARIES: usize = 3;

impl MapsCache {
    /// Snapshots the executable mappings of `tgid` (which just exec'd)
    /// within the budget, or queues it; first serves the queue.
    pub fn observe(&mut self, tgid: u32) {
        self.serve_pending();
        if self.by_tgid.contains_key(&tgid) {
            // An exec since the last snapshot: the mappings changed.
            self.by_tgid.remove(&tgid);
        }
        if !self.snapshot(tgid) {
            self.pending.push_back(tgid);
        }
    }

    /// Takes a snapshot if the budget allows; false when it does not.
    fn snapshot(&mut self, tgid: u32) -> bool {
        let now = std::time::Instant::now();
        match self.window {
            Some(start) if now.duration_since(start).as_secs() < 1 => {
                if self.taken >= SNAPSHOTS_PER_SECOND {
                    return false;
                }
            }
            _ => {
                self.window = Some(now);
                self.taken = 0;
            }
        }
        self.taken += 1;
        // A process already gone has nothing to read: done with it.
        if let Ok(text) = fs::read_to_string(format!("/proc/{tgid}/maps")) {
            let maps = parse_maps(&text);
            let again = maps.len() <= BEFORE_LIBRARIES && !self.by_tgid.contains_key(&tgid);
            self.by_tgid.insert(tgid, maps);
            if again {
                self.pending.push_back(tgid);
            }
        }
        true
    }

    /// Snapshots queued processes while the budget lasts.
    fn serve_pending(&mut self) {
        while let Some(&tgid) = self.pending.front() {
            if !self.snapshot_queued(tgid) {
                return;
            }
            self.pending.pop_front();
        }
    }

    /// One queued process: a second read replaces the first only when it
    /// worked (a process that exited meanwhile keeps what was read).
    fn snapshot_queued(&mut self, tgid: u32) -> bool {
        let before = self.by_tgid.remove(&tgid);
        let served = self.snapshot(tgid);
        if let Some(before) = before
            && (!served || !self.by_tgid.contains_key(&tgid))
        {
            self.by_tgid.insert(tgid, before);
        }
        served
    }

    /// A process ended: no more samples can come from it, and a queued
    /// snapshot of it can no longer be taken.
    pub fn exited(&mut self, tgid: u32) {
        self.pending.retain(|&t| t != tgid);
        self.serve_pending();
        if self.by_tgid.contains_key(&tgid) {
            self.exited.push(tgid);
        }
    }

    /// Forgets the snapshots of processes that exited without a single
    /// stack sample (`sampled`: the processes the kernel holds samples of,
    /// sorted). Without this the cache grew by every snapshot for as long
    /// as a recording ran (tens of MB an hour under a spawn storm); now it
    /// holds the live processes and the sampled ones, which the kernel's
    /// sample map bounds.
    pub fn prune(&mut self, sampled: &[u32]) {
        self.serve_pending();
        for tgid in self.exited.drain(..) {
            if sampled.binary_search(&tgid).is_err() {
                self.by_tgid.remove(&tgid);
            }
        }
    }

    /// Processes with a snapshot.
    pub fn len(&self) -> usize {
        self.by_tgid.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_tgid.is_empty()
    }

    fn of(&self, tgid: u32) -> Option<&[Mapping]> {
        self.by_tgid.get(&tgid).map(Vec::as_slice)
    }
}

/// `start-end perms offset dev inode path` lines; keeps the executable
/// ones that are file-backed, and the vDSO.
fn parse_maps(text: &str) -> Vec<Mapping> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let range = f.next()?;
            let perms = f.next()?;
            let offset = u64::from_str_radix(f.next()?, 16).ok()?;
            let _dev = f.next()?;
            let _inode = f.next()?;
            let path = f.collect::<Vec<_>>().join(" ");
            if !perms.contains('x') || !(path.starts_with('/') || path == "[vdso]") {
                return None;
            }
            let (s, e) = range.split_once('-')?;
            Some(Mapping {
                start: u64::from_str_radix(s, 16).ok()?,
                end: u64::from_str_radix(e, 16).ok()?,
                offset,
                path: path.into(),
            })
        })
        .collect()
}

/// Kernel symbols by address, for nearest-below lookups.
pub struct KernelSymbols(BTreeMap<u64, String>);

impl KernelSymbols {
    pub fn load() -> Self {
        Self(aya::util::kernel_symbols().unwrap_or_default())
    }

    fn name(&self, ip: u64) -> String {
        match self.0.range(..=ip).next_back() {
            Some((_, name)) => format!("{name}_[k]"),
            None => "[unknown]_[k]".into(),
        }
    }
}

/// The frame that stands for user frames that could not be trusted.
pub const UNWIND_STOPPED: &str = "[unwind stopped]";

/// The root frame of a process's samples: its name at the sample, and
/// the program it exec'd (from the recording), when known.
fn process_frame(comm: &str, exe: Option<&str>) -> String {
    // Spaces are kept (the weight is after the last one); separators are not.
    let frame = match exe {
        Some(exe) => format!("{comm} → {exe}"),
        None => comm.to_string(),
    };
    frame.replace([';', '\n'], "_")
}

/// Folds samples into `frames count` lines (root first: the process, user
/// frames outermost first, then kernel frames). `exes`: the program each
/// process exec'd, by pid.
pub fn fold(
    samples: &[RawSample],
    maps: &MapsCache,
    ksyms: &KernelSymbols,
    exes: &HashMap<u32, String>,
) -> Vec<String> {
    let symbolizer = Symbolizer::new();
    let mut user_cache: HashMap<(PathBuf, u64), String> = HashMap::new();
    let mut folded: BTreeMap<String, u64> = BTreeMap::new();
    for s in samples {
        let comm = comm_str(&s.comm);
        let mut frames = vec![process_frame(&comm, exes.get(&s.tgid).map(String::as_str))];
        let mut name = |m: &Mapping, file_offset: u64| -> String {
            if !m.is_file() {
                return "[vdso]".into();
            }
            user_cache
                .entry((m.path.clone(), file_offset))
                .or_insert_with(|| symbolize_user(&symbolizer, &m.path, file_offset))
                .clone()
        };
        frames.extend(user_frames(&s.user, maps.of(s.tgid), &mut name));
        for &ip in s.kernel.iter().rev() {
            frames.push(ksyms.name(ip));
        }
        *folded.entry(frames.join(";")).or_default() += s.count;
    }
    folded
        .into_iter()
        .map(|(stack, n)| format!("{stack} {n}"))
        .collect()
}

/// A user stack (`ips`, innermost first) as frames, outermost first: kept
/// from the leaf outwards while each address lies in an executable mapping
/// of the process, the rest as one [`UNWIND_STOPPED`]. A return address
/// points just past its call, so it is looked up one byte back (the call
/// itself, which may be a function's last instruction).
fn user_frames(
    ips: &[u64],
    maps: Option<&[Mapping]>,
    name: &mut dyn FnMut(&Mapping, u64) -> String,
) -> Vec<String> {
    let mut frames = Vec::new();
    for (i, &ip) in ips.iter().enumerate() {
        let at = if i == 0 { ip } else { ip.saturating_sub(1) };
        let mapping = maps.and_then(|m| m.iter().find(|m| at >= m.start && at < m.end));
        match mapping {
            Some(m) => frames.push(name(m, at - m.start + m.offset)),
            None => {
                frames.push(UNWIND_STOPPED.to_string());
                break;
            }
        }
    }
    frames.reverse();
    frames
}

fn symbolize_user(symbolizer: &Symbolizer, path: &Path, file_offset: u64) -> String {
    let src = Source::Elf(Elf::new(path));
    match symbolizer.symbolize_single(&src, Input::FileOffset(file_offset)) {
        Ok(Symbolized::Sym(sym)) => sanitize(&sym.name),
        _ => format!(
            "[{}]",
            path.file_name()
                .map_or("unknown".into(), |f| f.to_string_lossy())
        ),
    }
}

/// Folded-stack frames may not contain the separators.
fn sanitize(name: &str) -> String {
    name.replace([';', '\n'], "_").replace(' ', "_")
}

/// Writes `stacks.folded` and `stacks.svg`.
pub fn write(dir: &Path, lines: &[String], hz: u64) -> Result<()> {
    let folded = dir.join("stacks.folded");
    let mut f =
        fs::File::create(&folded).with_context(|| format!("creating {}", folded.display()))?;
    for l in lines {
        writeln!(f, "{l}")?;
    }
    if lines.is_empty() {
        return Ok(());
    }
    let svg = dir.join("stacks.svg");
    let out = fs::File::create(&svg).with_context(|| format!("creating {}", svg.display()))?;
    let mut opts = inferno::flamegraph::Options::default();
    opts.title = "On-CPU stacks of the traced processes".into();
    opts.subtitle = Some(format!(
        "cpu-clock sampling at {hz} Hz; width = samples; kernel frames end in _[k]; [unwind stopped]: user frames that could not be checked against the process's mappings"
    ));
    opts.count_name = "samples".into();
    inferno::flamegraph::from_lines(&mut opts, lines.iter().map(String::as_str), out)
        .context("rendering stacks.svg")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_of_processes_that_ended_unsampled_are_dropped() {
        let me = std::process::id();
        let mut maps = MapsCache::default();
        maps.observe(me);
        assert_eq!(maps.len(), 1, "our own maps can be read");
        // Sampled: kept for symbolization at the end.
        maps.exited(me);
        maps.prune(&[me - 1, me, me + 1]);
        assert_eq!(maps.len(), 1);
        // Exited without a sample: nothing will ever look it up.
        maps.exited(me);
        maps.prune(&[]);
        assert!(maps.is_empty());
        // A process that is still running is never dropped.
        maps.observe(me);
        maps.prune(&[]);
        assert_eq!(maps.len(), 1);
    }

    #[test]
    fn maps_keep_executable_file_mappings_and_the_vdso() {
        let text = "\
55d0c0000000-55d0c0001000 r--p 00000000 08:01 123 /usr/bin/true
55d0c0001000-55d0c0005000 r-xp 00001000 08:01 123 /usr/bin/true
7f0000000000-7f0000001000 rwxp 00000000 00:00 0
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0 [stack]
7ffd00030000-7ffd00032000 r-xp 00000000 00:00 0 [vdso]
";
        let maps = parse_maps(text);
        assert_eq!(maps.len(), 2);
        assert_eq!(maps[0].offset, 0x1000);
        assert_eq!(maps[0].path, Path::new("/usr/bin/true"));
        assert!(maps[0].is_file());
        assert!(!maps[1].is_file(), "{:?}", maps[1]);
    }

    #[test]
    fn folding_puts_the_process_first_and_kernel_frames_last() {
        let ksyms = KernelSymbols(BTreeMap::from([
            (0x1000, "copy_page_range".to_string()),
            (0x2000, "dup_mmap".to_string()),
        ]));
        let mut comm = [0u8; 16];
        comm[..3].copy_from_slice(b"gcc");
        let s = RawSample {
            tgid: 1,
            comm,
            kernel: vec![0x1010, 0x2020],
            user: vec![0xdead],
            count: 3,
        };
        let exes = HashMap::from([(1, "/usr/lib/gcc/x86_64-linux-gnu/12/cc1".to_string())]);
        let lines = fold(&[s.clone(), s], &MapsCache::default(), &ksyms, &exes);
        // No snapshot of its mappings: nothing of the user stack can be
        // checked, so all of it is one frame.
        assert_eq!(
            lines,
            vec![
                "gcc → /usr/lib/gcc/x86_64-linux-gnu/12/cc1;[unwind stopped];dup_mmap_[k];copy_page_range_[k] 6"
            ]
        );
    }

    fn mapping(start: u64, end: u64, path: &str) -> Mapping {
        Mapping {
            start,
            end,
            offset: 0,
            path: path.into(),
        }
    }

    #[test]
    fn user_stacks_stop_at_the_first_address_outside_the_mappings() {
        let maps = [
            mapping(0x55_0000, 0x56_0000, "/usr/bin/as"),
            mapping(
                0x7f00_0000,
                0x7f10_0000,
                "/usr/lib/x86_64-linux-gnu/libc.so.6",
            ),
            mapping(0x7fff_f000, 0x7fff_f800, "[vdso]"),
        ];
        let mut name = |m: &Mapping, off: u64| {
            let file = m.path.file_name().unwrap().to_string_lossy().into_owned();
            format!("{file}+{off:#x}")
        };
        // Leaf in libc, its caller in the program, then a frame-pointer
        // chain into garbage: a stack address, a non-canonical value, and
        // on for 120 more that must not reach the picture.
        let mut ips = vec![
            0x7f00_1234,
            0x55_0100,
            0x7ffc_1234_5678,
            0x1100_0100_0000_0057,
        ];
        ips.extend(std::iter::repeat_n(0x55_0200, 120));
        let frames = user_frames(&ips, Some(&maps), &mut name);
        assert_eq!(frames, ["[unwind stopped]", "as+0xff", "libc.so.6+0x1234"]);
        // Every address checks out: nothing is dropped.
        let frames = user_frames(&[0x7fff_f010, 0x55_0010], Some(&maps), &mut name);
        assert_eq!(frames, ["as+0xf", "[vdso]+0x10"]);
        // A leaf outside every mapping (JIT code, say): stopped at once.
        assert_eq!(
            user_frames(&[0x1234], Some(&maps), &mut name),
            [UNWIND_STOPPED]
        );
        assert!(user_frames(&[], None, &mut name).is_empty());
    }
}
