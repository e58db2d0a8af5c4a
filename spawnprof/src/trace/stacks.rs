//! Sampled on-CPU stacks of the traced processes → folded stacks and an
//! inferno flamegraph (`stacks.folded`, `stacks.svg`).
//!
//! Kernel frames are symbolized from kallsyms. User frames are symbolized
//! with blazesym from the ELF files the process had mapped: spawned
//! processes are often gone by the end of a recording, so their
//! `/proc/PID/maps` is snapshotted while they run ([`MapsCache::observe`]).
//! A frame whose process was never snapshotted, or whose file has no
//! symbol for it, is shown as `[unknown]` under the process name.
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
    path: PathBuf,
}

/// File-backed executable mappings of processes, captured while they live.
#[derive(Default)]
pub struct MapsCache {
    by_tgid: HashMap<u32, Vec<Mapping>>,
    /// Snapshotted processes that have exited since the last prune.
    exited: Vec<u32>,
    /// Start of the current one-second budget window, and snapshots taken in it.
    window: Option<std::time::Instant>,
    taken: u32,
}

/// Snapshots per second at most. Reading /proc/PID/maps costs tens of µs
/// and takes the process's mmap lock; under a spawn storm a snapshot per
/// exec cost the workload a sixth of its rate. Processes past the budget
/// keep their kernel frames; their user frames read `[unknown]`.
const SNAPSHOTS_PER_SECOND: u32 = 50;

impl MapsCache {
    /// Snapshots the executable file mappings of `tgid` once, within the budget.
    pub fn observe(&mut self, tgid: u32) {
        if self.by_tgid.contains_key(&tgid) {
            return;
        }
        let now = std::time::Instant::now();
        match self.window {
            Some(start) if now.duration_since(start).as_secs() < 1 => {
                if self.taken >= SNAPSHOTS_PER_SECOND {
                    return;
                }
            }
            _ => {
                self.window = Some(now);
                self.taken = 0;
            }
        }
        self.taken += 1;
        let Ok(text) = fs::read_to_string(format!("/proc/{tgid}/maps")) else {
            return;
        };
        self.by_tgid.insert(tgid, parse_maps(&text));
    }

    /// A process ended: no more samples can come from it.
    pub fn exited(&mut self, tgid: u32) {
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

    fn find(&self, tgid: u32, ip: u64) -> Option<&Mapping> {
        self.by_tgid
            .get(&tgid)?
            .iter()
            .find(|m| ip >= m.start && ip < m.end)
    }
}

/// `start-end perms offset dev inode path` lines; keeps executable, file-backed ones.
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
            if !perms.contains('x') || !path.starts_with('/') {
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

/// Folds samples into `frames count` lines (root first: process name, user
/// frames outermost first, then kernel frames).
pub fn fold(samples: &[RawSample], maps: &MapsCache, ksyms: &KernelSymbols) -> Vec<String> {
    let symbolizer = Symbolizer::new();
    let mut user_cache: HashMap<(PathBuf, u64), String> = HashMap::new();
    let mut folded: BTreeMap<String, u64> = BTreeMap::new();
    for s in samples {
        let mut frames = vec![sanitize(&comm_str(&s.comm))];
        for &ip in s.user.iter().rev() {
            let name = match maps.find(s.tgid, ip) {
                Some(m) => {
                    let file_offset = ip - m.start + m.offset;
                    user_cache
                        .entry((m.path.clone(), file_offset))
                        .or_insert_with(|| symbolize_user(&symbolizer, &m.path, file_offset))
                        .clone()
                }
                None => "[unknown]".into(),
            };
            frames.push(name);
        }
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
        "cpu-clock sampling at {hz} Hz; width = samples; kernel frames end in _[k]"
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
    fn maps_keep_executable_file_mappings() {
        let text = "\
55d0c0000000-55d0c0001000 r--p 00000000 08:01 123 /usr/bin/true
55d0c0001000-55d0c0005000 r-xp 00001000 08:01 123 /usr/bin/true
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0 [stack]
7ffd00030000-7ffd00032000 r-xp 00000000 00:00 0 [vdso]
";
        let maps = parse_maps(text);
        assert_eq!(maps.len(), 1);
        assert_eq!(maps[0].offset, 0x1000);
        assert_eq!(maps[0].path, Path::new("/usr/bin/true"));
    }

    #[test]
    fn folding_puts_the_process_first_and_kernel_frames_last() {
        let ksyms = KernelSymbols(BTreeMap::from([
            (0x1000, "copy_page_range".to_string()),
            (0x2000, "dup_mmap".to_string()),
        ]));
        let mut comm = [0u8; 16];
        comm[..2].copy_from_slice(b"sh");
        let s = RawSample {
            tgid: 1,
            comm,
            kernel: vec![0x1010, 0x2020],
            user: vec![0xdead],
            count: 3,
        };
        let lines = fold(&[s.clone(), s], &MapsCache::default(), &ksyms);
        assert_eq!(
            lines,
            vec!["sh;[unknown];dup_mmap_[k];copy_page_range_[k] 6"]
        );
    }
}
