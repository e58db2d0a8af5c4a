//! Time-weighted stage stacks in the "folded" format flamegraph tools read
//! (`frame;frame;frame weight`), aggregated one record at a time so a
//! recording of any size folds in constant memory.
//!
//! A stack is `all spawns;<parent comm>;<method>;<stage path>`, where the
//! stage path follows the spawn-time tree ([`SPAWN_TIME`]):
//! `copy_process;dup_mmap;copy_page_range`. Weights are nanoseconds of
//! *self* time: a node's time minus its children's, so a frame drawn by a
//! flamegraph tool is exactly as wide as the node's time, and a spawn's
//! frames add up to its wall time, each nanosecond once. Time no stage
//! accounts for stays on the method frame.
use std::{
    collections::{BTreeMap, HashMap},
    fmt::Write as _,
    hash::{Hash, Hasher},
    io::{self, Write},
    sync::OnceLock,
};

use crate::model::{Durations, Family, SPAWN_TIME, SPAWN_TIME_NODES, SpawnRecord, spawn_times};

/// The root frame of every stack.
pub const ROOT_FRAME: &str = "all spawns";

/// A stage as a flamegraph frame: its full path below the method frame and
/// the indices of its child stages.
#[derive(Debug)]
pub struct FlameStage {
    pub name: &'static str,
    /// `copy_process;dup_mmap`.
    pub path: String,
    pub parent: Option<usize>,
    pub children: Vec<usize>,
    pub family: Family,
}

/// The stage frames, in [`SPAWN_TIME`] order. Built once: the tree is static.
pub fn flame_stages() -> &'static [FlameStage] {
    static FRAMES: OnceLock<Vec<FlameStage>> = OnceLock::new();
    FRAMES.get_or_init(|| {
        let mut frames: Vec<FlameStage> = Vec::new();
        for n in SPAWN_TIME {
            // SPAWN_TIME lists parents before children (a model.rs test
            // checks it), so the parent's frame already exists here.
            let parent = n
                .parent
                .and_then(|p| frames.iter().position(|f| f.name == p));
            let path = match parent {
                Some(p) => format!("{};{}", frames[p].path, n.name),
                None => n.name.to_string(),
            };
            let idx = frames.len();
            if let Some(p) = parent {
                frames[p].children.push(idx);
            }
            frames.push(FlameStage {
                name: n.name,
                path,
                parent,
                children: Vec::new(),
                family: n.family,
            });
        }
        frames
    })
}

/// Index of a stage in [`flame_stages`].
pub fn flame_index(name: &str) -> Option<usize> {
    flame_stages().iter().position(|f| f.name == name)
}

/// Weights per record and group: one per flame stage, then the time no
/// stage accounts for (drawn on the method frame).
pub const WEIGHTS: usize = SPAWN_TIME_NODES + 1;

/// Self time of every flame stage of one record, in [`flame_stages`]
/// order, then its unsplit time ([`WEIGHTS`] values; all zero for a record
/// with no place in the spawn-time tree).
pub fn self_times(d: &Durations, out: &mut Vec<u64>) {
    out.clear();
    match spawn_times(d) {
        Some(t) => {
            out.extend(t.self_times());
            out.push(t.unsplit());
        }
        None => out.resize(WEIGHTS, 0),
    }
}

/// Frame names cannot contain `;` (the separator) or line breaks, and
/// should not be empty.
pub fn frame_name(s: &str) -> String {
    let clean: String = s
        .chars()
        .map(|c| match c {
            ';' => ':',
            c if c.is_control() => '?',
            c => c,
        })
        .collect();
    let clean = clean.trim();
    if clean.is_empty() {
        "?".into()
    } else {
        clean.to_string()
    }
}

/// The frame below the root: who spawned.
pub fn parent_frame(parent_comm: Option<&str>, root: bool) -> String {
    match (parent_comm, root) {
        (Some(c), _) => frame_name(c),
        // The root command is forked by spawnprof before tracing starts.
        (None, true) => "spawnprof".into(),
        (None, false) => "?".into(),
    }
}

/// The frame below the parent: how. `vfork`, or `fork (clone)` when the
/// syscall is not named after the method.
pub fn method_frame(method: Option<&str>, syscall: Option<&str>, root: bool) -> String {
    match (method, syscall) {
        (Some(m), Some(s)) if m != s => frame_name(&format!("{m} ({s})")),
        (Some(m), _) | (None, Some(m)) => frame_name(m),
        (None, None) if root => "root command".into(),
        (None, None) => "unknown".into(),
    }
}

/// The parts of a record that pick its stack, borrowed.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub struct StackKey<'a> {
    pub parent_comm: Option<&'a str>,
    pub method: Option<&'a str>,
    pub syscall: Option<&'a str>,
    pub root: bool,
}

impl<'a> StackKey<'a> {
    pub fn of(r: &'a SpawnRecord) -> Self {
        Self {
            parent_comm: r.parent_comm.as_deref(),
            method: r.method.as_deref(),
            syscall: r.syscall.as_deref(),
            root: r.root,
        }
    }

    fn hash64(&self) -> u64 {
        let mut h = FxHasher::default();
        self.hash(&mut h);
        h.finish()
    }

    fn owned(&self) -> OwnedKey {
        OwnedKey {
            parent_comm: self.parent_comm.map(str::to_string),
            method: self.method.map(str::to_string),
            syscall: self.syscall.map(str::to_string),
            root: self.root,
        }
    }
}

/// The Fx hash (rustc's): a multiply and rotate per word. The group index
/// is looked up once per record, and SipHash's DoS resistance buys nothing
/// for a handful of command names (it cost 3% of reading a recording).
#[derive(Default)]
struct FxHasher(u64);

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

impl FxHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct OwnedKey {
    parent_comm: Option<String>,
    method: Option<String>,
    syscall: Option<String>,
    root: bool,
}

impl OwnedKey {
    fn matches(&self, k: &StackKey<'_>) -> bool {
        self.root == k.root
            && self.parent_comm.as_deref() == k.parent_comm
            && self.method.as_deref() == k.method
            && self.syscall.as_deref() == k.syscall
    }

    fn frames(&self) -> (String, String) {
        (
            parent_frame(self.parent_comm.as_deref(), self.root),
            method_frame(self.method.as_deref(), self.syscall.as_deref(), self.root),
        )
    }
}

/// Self-time sums for one (parent, method) pair.
#[derive(Clone, Debug, Default)]
pub struct Group {
    pub spawns: u64,
    pub self_ns: Vec<u64>,
}

/// Folds records into stage stacks. `add` one record at a time; folders
/// filled in parallel `merge` into one.
#[derive(Debug, Default)]
pub struct StageFolder {
    /// Groups by the raw record fields, found through a hash of them so a
    /// record of a known group allocates nothing. Frame names are made
    /// only when the stacks are written.
    index: HashMap<u64, Vec<usize>>,
    groups: Vec<(OwnedKey, Group)>,
    scratch: Vec<u64>,
    spawns: u64,
}

impl StageFolder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, r: &SpawnRecord) {
        self.add_parts(StackKey::of(r), &r.durations.0);
    }

    /// Adds one spawn given the fields that pick its stack and its stage
    /// durations (the streaming reader has no [`SpawnRecord`]).
    pub fn add_parts(&mut self, key: StackKey<'_>, d: &Durations) {
        self.spawns += 1;
        let mut scratch = std::mem::take(&mut self.scratch);
        self_times(d, &mut scratch);
        self.group_mut(key, |g| {
            g.spawns += 1;
            for (sum, v) in g.self_ns.iter_mut().zip(&scratch) {
                *sum += v;
            }
        });
        self.scratch = scratch;
    }

    fn group_mut(&mut self, key: StackKey<'_>, f: impl FnOnce(&mut Group)) {
        let bucket = self.index.entry(key.hash64()).or_default();
        let found = bucket
            .iter()
            .copied()
            .find(|&i| self.groups[i].0.matches(&key));
        let i = match found {
            Some(i) => i,
            None => {
                self.groups.push((
                    key.owned(),
                    Group {
                        spawns: 0,
                        self_ns: vec![0; WEIGHTS],
                    },
                ));
                bucket.push(self.groups.len() - 1);
                self.groups.len() - 1
            }
        };
        f(&mut self.groups[i].1);
    }

    /// Adds another folder's sums to this one.
    pub fn merge(&mut self, other: StageFolder) {
        self.spawns += other.spawns;
        for (key, g) in other.groups {
            let k = StackKey {
                parent_comm: key.parent_comm.as_deref(),
                method: key.method.as_deref(),
                syscall: key.syscall.as_deref(),
                root: key.root,
            };
            self.group_mut(k, |mine| {
                mine.spawns += g.spawns;
                for (a, b) in mine.self_ns.iter_mut().zip(&g.self_ns) {
                    *a += b;
                }
            });
        }
    }

    /// Records added.
    pub fn spawns(&self) -> u64 {
        self.spawns
    }

    /// Every (parent frame, method frame) group, sorted; groups whose
    /// fields differ but whose frames read the same are combined.
    pub fn groups(&self) -> Vec<(String, String, Group)> {
        let mut by_frames: BTreeMap<(String, String), Group> = BTreeMap::new();
        for (key, g) in &self.groups {
            let merged = by_frames.entry(key.frames()).or_insert_with(|| Group {
                spawns: 0,
                self_ns: vec![0; g.self_ns.len()],
            });
            merged.spawns += g.spawns;
            for (a, b) in merged.self_ns.iter_mut().zip(&g.self_ns) {
                *a += b;
            }
        }
        by_frames.into_iter().map(|((p, m), g)| (p, m, g)).collect()
    }

    /// Sum of every weight: the total spawn time drawn.
    pub fn total_ns(&self) -> u64 {
        self.groups.iter().flat_map(|(_, g)| &g.self_ns).sum()
    }

    /// Folded lines, sorted, zero weights left out. `scale` multiplies
    /// every weight (`diff` uses it to turn totals into per-spawn values).
    pub fn lines_scaled(&self, scale: impl Fn(&Group, u64) -> u64) -> Vec<(String, u64)> {
        let frames = flame_stages();
        let mut out = Vec::new();
        for (parent, method, g) in self.groups() {
            for (f, &ns) in frames.iter().zip(&g.self_ns) {
                let w = scale(&g, ns);
                if w > 0 {
                    out.push((format!("{ROOT_FRAME};{parent};{method};{}", f.path), w));
                }
            }
            let unsplit = scale(&g, g.self_ns[SPAWN_TIME_NODES]);
            if unsplit > 0 {
                out.push((format!("{ROOT_FRAME};{parent};{method}"), unsplit));
            }
        }
        out.sort();
        out
    }

    pub fn lines(&self) -> Vec<(String, u64)> {
        self.lines_scaled(|_, ns| ns)
    }

    /// The folded text: one `stack weight` line per stack.
    pub fn to_folded(&self) -> String {
        let mut s = String::new();
        for (stack, w) in self.lines() {
            let _ = writeln!(s, "{stack} {w}");
        }
        s
    }

    pub fn write_folded(&self, mut w: impl Write) -> io::Result<()> {
        w.write_all(self.to_folded().as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{KernelFnTimes, Timestamps};

    fn fork_record(comm: &str) -> SpawnRecord {
        let mut r = SpawnRecord {
            parent_comm: Some(comm.into()),
            method: Some("fork".into()),
            syscall: Some("clone".into()),
            ts: Timestamps {
                clone_enter: Some(1_000),
                mm_lock_wait: Some(2_000),
                mm_copy_start: Some(2_500),
                mm_copy_end: Some(9_000),
                newtask: Some(10_000),
                wakeup_new: Some(11_000),
                clone_exit: Some(12_000),
                first_run: Some(13_000),
                exec_first_enter: Some(14_000),
                exec_enter: Some(14_000),
                exec_prepare: Some(15_000),
                exec_done: Some(17_000),
                exec_return: Some(18_000),
                exit: Some(30_000),
                ..Default::default()
            },
            kernel_fn: Some(KernelFnTimes {
                copy_page_range_ns: 5_000,
                copy_page_range_calls: 10,
                anon_vma_fork_ns: 600,
                anon_vma_fork_calls: 3,
            }),
            ..Default::default()
        };
        r.derive_durations();
        r
    }

    #[test]
    fn stage_paths_follow_the_spawn_time_tree() {
        let paths: Vec<&str> = flame_stages().iter().map(|f| f.path.as_str()).collect();
        for p in [
            "copy_process;dup_mmap;mm_lock_wait",
            "copy_process;dup_mmap;copy_page_range",
            "copy_process;dup_mmap;anon_vma_fork",
            "fork_wakeup",
            "sched_delay",
            "exec;exec_load",
        ] {
            assert!(paths.contains(&p), "{p} missing from {paths:?}");
        }
        // The parent's side overlaps the child's stages: never drawn.
        for left_out in [
            "clone",
            "parent_return",
            "vfork_resume",
            "spawn_to_exec",
            "run",
        ] {
            assert!(!paths.iter().any(|p| p.contains(left_out)), "{left_out}");
        }
    }

    #[test]
    fn self_time_subtracts_children_and_widens_parents() {
        let r = fork_record("sh");
        let mut v = Vec::new();
        self_times(&r.durations.0, &mut v);
        let at = |v: &[u64], n: &str| v[flame_index(n).unwrap()];
        // dup_mmap = 2000..9000 = 7000; children: lock 500, cpr 5000, avf 600.
        assert_eq!(at(&v, "dup_mmap"), 900);
        assert_eq!(at(&v, "copy_page_range"), 5_000);
        // copy_process 9000 = dup_mmap 7000 + 2000 of its own.
        assert_eq!(at(&v, "copy_process"), 2_000);
        // Every nanosecond of clone entry → exec return, once.
        assert_eq!(v.iter().sum::<u64>(), r.duration("spawn_to_exec").unwrap());
        assert_eq!(v[SPAWN_TIME_NODES], 0, "nothing unsplit");
        // A kernel-summed child longer than its parent: the parent is
        // widened to it, never negative, and the spawn with it.
        let mut r2 = r.clone();
        r2.kernel_fn.as_mut().unwrap().copy_page_range_ns = 50_000;
        r2.derive_durations();
        self_times(&r2.durations.0, &mut v);
        assert_eq!(at(&v, "dup_mmap"), 0);
        assert_eq!(at(&v, "copy_process"), 0);
        assert_eq!(at(&v, "copy_page_range"), 50_000);
        assert_eq!(
            v.iter().sum::<u64>(),
            51_100 + 1_000 + 2_000 + 1_000 + 4_000
        );
    }

    #[test]
    fn a_child_that_never_execs_is_spawned_once_it_runs() {
        let mut r = fork_record("sh");
        for t in [
            &mut r.ts.exec_first_enter,
            &mut r.ts.exec_enter,
            &mut r.ts.exec_prepare,
            &mut r.ts.exec_done,
            &mut r.ts.exec_return,
        ] {
            *t = None;
        }
        r.derive_durations();
        let mut v = Vec::new();
        self_times(&r.durations.0, &mut v);
        // copy_process 9000 + fork_wakeup 1000 + sched_delay 2000.
        assert_eq!(v.iter().sum::<u64>(), 12_000);
        assert_eq!(v[flame_index("exec").unwrap()], 0);
    }

    #[test]
    fn folded_weights_add_up_to_stage_totals() {
        let mut f = StageFolder::new();
        for comm in ["sh", "sh", "make;evil\nname"] {
            f.add(&fork_record(comm));
        }
        let text = f.to_folded();
        let mut dup_mmap_total = 0;
        for line in text.lines() {
            let (stack, w) = line.rsplit_once(' ').expect("frames count");
            let w: u64 = w.parse().expect("count is an integer");
            let frames: Vec<&str> = stack.split(';').collect();
            assert_eq!(frames[0], ROOT_FRAME);
            assert!(
                frames[1] == "sh" || frames[1] == "make:evil?name",
                "{stack}"
            );
            assert_eq!(frames[2], "fork (clone)");
            if frames.contains(&"dup_mmap") {
                dup_mmap_total += w;
            }
        }
        // Three spawns of 7000 ns in dup_mmap (self + children).
        assert_eq!(dup_mmap_total, 3 * 7_000);
        let all: u64 = f.lines().iter().map(|(_, w)| w).sum();
        assert_eq!(
            all,
            3 * 17_000,
            "three spawns of 17 µs, clone entry to exec return"
        );
        assert_eq!(f.spawns(), 3);
        assert_eq!(f.groups().len(), 2);
    }
}
