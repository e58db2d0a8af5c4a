//! The one record every output is built from: a [`SpawnRecord`] per spawn
//! (one process or thread created), with a timestamp per stage boundary, the
//! derived stage durations, exec attempts and fault counters.
//!
//! The stage vocabulary lives in [`STAGES`]: names, the boundaries each stage
//! runs between, and how stages nest (for the stage flamegraph).
use std::{fmt, sync::OnceLock};

use serde::{
    Deserialize, Deserializer, Serialize, Serializer,
    de::{self, IgnoredAny, MapAccess, Visitor},
    ser::SerializeMap,
};
use spawnprof_common::clone_flags as cf;

/// Which fault figures the kernel's records carry for real: a figure no probe or
/// counter produced arrives as 0 and must be reported as null.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultCoverage {
    /// Copy-on-write faults: counted by the page-fault probe only.
    pub cow: bool,
    /// Fault totals: the kernel's task counters, or else the page-fault probe.
    pub totals: bool,
}

impl FaultCoverage {
    /// Every figure real: the default, and what tests of built records use.
    pub const ALL: Self = Self {
        cow: true,
        totals: true,
    };
}

/// Stage boundaries, in ns since the recording started; `None` where the
/// kernel did not let us see it (or the mark was lost).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timestamps {
    pub clone_enter: Option<u64>,
    pub copy_process_enter: Option<u64>,
    pub mm_lock_wait: Option<u64>,
    pub mm_copy_start: Option<u64>,
    pub mm_copy_end: Option<u64>,
    pub dup_mmap_enter: Option<u64>,
    pub dup_mmap_exit: Option<u64>,
    pub copy_process_exit: Option<u64>,
    pub newtask: Option<u64>,
    pub fork_done: Option<u64>,
    pub wakeup_new: Option<u64>,
    pub clone_exit: Option<u64>,
    pub first_run: Option<u64>,
    pub child_return: Option<u64>,
    pub exec_first_enter: Option<u64>,
    pub exec_enter: Option<u64>,
    pub exec_prepare: Option<u64>,
    /// vfork-style spawns only: `exec_prepare` again, the child's exec at its
    /// point of no return, a few µs before it releases the suspended parent;
    /// or, for a child that never execs, its exit, just after the release.
    pub vfork_release: Option<u64>,
    pub exec_done: Option<u64>,
    pub exec_return: Option<u64>,
    pub exit: Option<u64>,
    pub reap: Option<u64>,
}

/// copy_page_range / anon_vma_fork time inside this spawn's clone, summed in
/// the kernel (fentry or kprobe tier only).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelFnTimes {
    pub copy_page_range_ns: u64,
    pub copy_page_range_calls: u64,
    pub anon_vma_fork_ns: u64,
    pub anon_vma_fork_calls: u64,
}

/// One execve/execveat call by the child.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecAttempt {
    pub enter: u64,
    pub exit: Option<u64>,
    /// 0 on success, -errno on failure (None: return not seen).
    pub ret: Option<i64>,
    pub path: String,
    pub path_truncated: bool,
    /// The path could not be read (its page was not resident): `path` is
    /// then empty, which otherwise means an empty path (`AT_EMPTY_PATH`).
    #[serde(default)]
    pub path_unreadable: bool,
    /// Known only for the successful attempt (the kernel's own count).
    pub env_count: Option<u64>,
    pub argc: Option<u64>,
    pub syscall: String,
}

impl ExecAttempt {
    pub fn succeeded(&self) -> bool {
        self.ret == Some(0)
    }
}

/// Page faults. `pre_exec*`: the child's before its exec;
/// `parent_cow_after_fork`: the parent's copy-on-write breaks from this fork
/// until its next fork (or its exit); `*_total`: the child's whole life.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Faults {
    pub pre_exec: Option<u64>,
    pub pre_exec_cow: Option<u64>,
    pub total: Option<u64>,
    pub cow_total: Option<u64>,
    pub parent_cow_after_fork: Option<u64>,
}

/// One spawn, parent and child sides linked.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SpawnRecord {
    pub parent_pid: Option<u32>,
    pub parent_tid: Option<u32>,
    pub parent_comm: Option<String>,
    pub child_pid: Option<u32>,
    /// The CPU the parent was on when the child was created
    /// (sched_process_fork), and the CPU the child first ran on (the
    /// first_run stage). When they differ the child's start waited for
    /// another CPU to be woken, which on idle or virtual CPUs can cost more
    /// than the spawn itself. Absent in older recordings.
    #[serde(default)]
    pub parent_cpu: Option<u32>,
    #[serde(default)]
    pub child_first_cpu: Option<u32>,
    /// The child's first switch-in never reached the context-switch
    /// probes, so its first run is its wake-up plus the wait the scheduler
    /// itself counted (`sched_info.run_delay`), read when it returned from
    /// the clone; on another CPU than its parent's, that return itself
    /// (the count misses the other CPU's wake from idle).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub first_run_from_run_delay: bool,
    /// A thread (CLONE_THREAD), not a process.
    pub thread: bool,
    /// The command spawnprof itself started (`record -- CMD`).
    pub root: bool,
    /// "clone", "clone3", "fork" or "vfork".
    pub syscall: Option<String>,
    pub clone_flags: Option<u64>,
    /// Flags spelled out, e.g. "CLONE_VM|CLONE_VFORK|SIGCHLD".
    pub flags: Option<String>,
    /// "fork", "vfork" (CLONE_VM|CLONE_VFORK), "clone-vm" or "thread".
    pub method: Option<String>,
    pub comm_before: Option<String>,
    pub comm_after: Option<String>,
    /// The path of the successful exec, as the kernel resolved it.
    pub exec_path: Option<String>,
    pub env_count: Option<u64>,
    pub env_bytes: Option<u64>,
    pub argc: Option<u64>,
    /// Argument strings of the exec'd image: only with `--capture-args`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<String>>,
    /// Environment of the exec'd image: only with `--capture-env`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    /// The captured args/env were cut at 256 bytes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub capture_truncated: bool,
    pub ts: Timestamps,
    /// ns for every stage of [`stage_names`] (null where unavailable); a
    /// JSON object of stage name → ns.
    pub durations: StageDurations,
    pub kernel_fn: Option<KernelFnTimes>,
    pub exec_attempts: Vec<ExecAttempt>,
    pub failed_exec_attempts: u64,
    pub faults: Faults,
    /// Exit status (0-255) when the process exited normally.
    pub exit_status: Option<i32>,
    /// Terminating signal, when killed by one.
    pub exit_signal: Option<i32>,
    /// Why parts of this record are missing (recording ended, records lost, …).
    pub incomplete: Vec<String>,
}

/// How a stage's boundaries are read off the timestamps.
type Boundary = fn(&Timestamps) -> Option<u64>;

/// A named interval of a spawn.
pub struct StageDef {
    pub name: &'static str,
    /// Enclosing stage in the stage flamegraph (`None`: a top-level stage).
    pub parent: Option<&'static str>,
    /// Which side of the spawn does the work.
    pub side: Side,
    pub what: &'static str,
    start: Boundary,
    end: Boundary,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Parent,
    Child,
    Both,
}

impl StageDef {
    /// `(start, end)` in ns when both ends were seen, in order.
    pub fn bounds(&self, ts: &Timestamps) -> Option<(u64, u64)> {
        let (s, e) = ((self.start)(ts)?, (self.end)(ts)?);
        (e >= s).then_some((s, e))
    }

    pub fn duration(&self, ts: &Timestamps) -> Option<u64> {
        self.bounds(ts).map(|(s, e)| e - s)
    }
}

/// copy_process's return, or the nearest boundary seen: task_newtask in
/// older recordings, else sched_process_fork (just after it returns).
fn copy_process_end(t: &Timestamps) -> Option<u64> {
    t.copy_process_exit.or(t.newtask).or(t.fork_done)
}

fn or(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    a.or(b)
}

/// Every stage, in the order a spawn goes through them. Where a better
/// boundary exists (fentry/kprobe on the function itself) it is preferred over
/// the tracepoint derivation.
pub const STAGES: &[StageDef] = &[
    StageDef {
        name: "spawn_to_exec",
        parent: None,
        side: Side::Both,
        what: "clone entry in the parent to the child's successful exec return: the latency a spawner sees",
        start: |t| t.clone_enter,
        end: |t| t.exec_return,
    },
    StageDef {
        name: "clone",
        parent: None,
        side: Side::Parent,
        what: "the parent's clone/fork/vfork syscall, entry to return (vfork: includes the wait for the child's exec)",
        start: |t| t.clone_enter,
        end: |t| t.clone_exit,
    },
    StageDef {
        name: "copy_process",
        parent: Some("clone"),
        side: Side::Parent,
        what: "copy_process: duplicating the task (from syscall entry to sched_process_fork where fentry/kprobe are missing)",
        start: |t| or(t.copy_process_enter, t.clone_enter),
        end: copy_process_end,
    },
    StageDef {
        name: "dup_mmap",
        parent: Some("copy_process"),
        side: Side::Parent,
        what: "dup_mmap: copying the address space (page tables, VMAs, anon_vma chains); fork only",
        start: |t| or(t.dup_mmap_enter, t.mm_lock_wait),
        end: |t| or(t.dup_mmap_exit, t.mm_copy_end),
    },
    StageDef {
        name: "mm_lock_wait",
        parent: Some("dup_mmap"),
        side: Side::Parent,
        what: "waiting for the parent's mmap write lock inside dup_mmap",
        start: |t| t.mm_lock_wait,
        end: |t| t.mm_copy_start,
    },
    StageDef {
        name: "fork_wakeup",
        parent: Some("clone"),
        side: Side::Parent,
        what: "end of copy_process to the child being put on a run queue",
        start: copy_process_end,
        end: |t| t.wakeup_new,
    },
    StageDef {
        name: "parent_return",
        parent: Some("clone"),
        side: Side::Parent,
        what: "child woken to the parent's return (vfork: the parent is suspended until the child execs or exits)",
        start: |t| t.wakeup_new,
        end: |t| t.clone_exit,
    },
    StageDef {
        name: "vfork_resume",
        parent: Some("parent_return"),
        side: Side::Parent,
        what: "vfork: the child's exec (begin_new_exec or sched_prepare_exec) or exit releasing the suspended parent to the parent's return, the parent's own wake-up",
        start: |t| t.vfork_release,
        end: |t| t.clone_exit,
    },
    StageDef {
        name: "sched_delay",
        parent: None,
        side: Side::Child,
        what: "child woken to its first time on a CPU",
        start: |t| t.wakeup_new,
        end: |t| t.first_run,
    },
    StageDef {
        name: "pre_exec",
        parent: None,
        side: Side::Child,
        what: "the child's user-space work between fork return and its first execve",
        start: |t| or(t.child_return, t.first_run),
        end: |t| t.exec_first_enter,
    },
    StageDef {
        name: "path_search",
        parent: None,
        side: Side::Child,
        what: "failed exec attempts before the one that succeeded (PATH lookup)",
        start: |t| t.exec_first_enter,
        end: |t| t.exec_enter,
    },
    StageDef {
        name: "exec",
        parent: None,
        side: Side::Child,
        what: "the successful execve, entry to return",
        start: |t| t.exec_enter,
        end: |t| t.exec_return,
    },
    StageDef {
        name: "exec_load",
        parent: Some("exec"),
        side: Side::Child,
        what: "execve entry to the exec's point of no return (sched_prepare_exec / begin_new_exec): copying argv/env, opening and checking the binary",
        start: |t| t.exec_enter,
        end: |t| t.exec_prepare,
    },
    StageDef {
        name: "exec_replace",
        parent: Some("exec"),
        side: Side::Child,
        what: "sched_prepare_exec to sched_process_exec: dropping the old mm, mapping the new image",
        start: |t| t.exec_prepare,
        end: |t| t.exec_done,
    },
    StageDef {
        name: "exec_finish",
        parent: Some("exec"),
        side: Side::Child,
        what: "sched_process_exec to the return to user space in the new image",
        start: |t| t.exec_done,
        end: |t| t.exec_return,
    },
    StageDef {
        name: "run",
        parent: None,
        side: Side::Child,
        what: "the new program running: exec return to exit",
        start: |t| or(t.exec_return, t.first_run),
        end: |t| t.exit,
    },
    StageDef {
        name: "reap_delay",
        parent: None,
        side: Side::Parent,
        what: "exit to the parent's wait returning it",
        start: |t| t.exit,
        end: |t| t.reap,
    },
];

/// Stages measured as kernel-summed totals rather than timestamp pairs.
pub const KERNEL_FN_STAGES: &[(&str, &str)] = &[
    ("copy_page_range", "dup_mmap"),
    ("anon_vma_fork", "dup_mmap"),
];

/// What kind of work a stage is, for colours: the same family, the same
/// hue, in every picture.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    /// Duplicating the task itself (copy_process outside dup_mmap).
    Task,
    /// Copying the address space: dup_mmap and what runs inside it.
    MmCopy,
    /// Waiting to be put on a CPU, or to run on one.
    Scheduler,
    /// Finding, loading and starting the new program.
    Exec,
    /// The child's own code between fork and exec.
    UserWork,
}

impl Family {
    /// How the family is named in legends.
    pub fn label(self) -> &'static str {
        match self {
            Family::Task => "task copy",
            Family::MmCopy => "mm copy",
            Family::Scheduler => "scheduler",
            Family::Exec => "exec",
            Family::UserWork => "user work",
        }
    }
}

/// A stage in the spawn-time tree ([`SPAWN_TIME`]).
pub struct TimeNode {
    pub name: &'static str,
    /// The node it is part of (`None`: a piece of the spawn itself).
    pub parent: Option<&'static str>,
    pub family: Family,
}

const fn node(name: &'static str, parent: Option<&'static str>, family: Family) -> TimeNode {
    TimeNode {
        name,
        parent,
        family,
    }
}

/// The spawn-time tree: a spawn's wall time, from the parent's clone
/// entry to the child's successful exec return (or, for a child that never
/// execs, its first run), cut into stages that follow one another, each
/// counted once. The parent's side (`clone`, `parent_return`,
/// `vfork_resume`) is not in it: a fork parent returns while its child
/// waits for a CPU, and a vfork parent is suspended through its child's
/// start and exec, so either would count that time twice.
/// Parents are listed before their children.
pub const SPAWN_TIME: &[TimeNode] = &[
    node("copy_process", None, Family::Task),
    node("dup_mmap", Some("copy_process"), Family::MmCopy),
    node("mm_lock_wait", Some("dup_mmap"), Family::MmCopy),
    node("copy_page_range", Some("dup_mmap"), Family::MmCopy),
    node("anon_vma_fork", Some("dup_mmap"), Family::MmCopy),
    node("fork_wakeup", None, Family::Scheduler),
    node("sched_delay", None, Family::Scheduler),
    node("pre_exec", None, Family::UserWork),
    node("path_search", None, Family::Exec),
    node("exec", None, Family::Exec),
    node("exec_load", Some("exec"), Family::Exec),
    node("exec_replace", Some("exec"), Family::Exec),
    node("exec_finish", Some("exec"), Family::Exec),
];

/// Nodes of [`SPAWN_TIME`].
pub const SPAWN_TIME_NODES: usize = SPAWN_TIME.len();

/// The family of a stage; the parent's-side stages are scheduling (the
/// parent waiting to return), `run` is the program's own work.
pub fn family_of(stage: &str) -> Option<Family> {
    SPAWN_TIME
        .iter()
        .find(|n| n.name == stage)
        .map(|n| n.family)
        .or(match stage {
            "clone" => Some(Family::Task),
            "parent_return" | "vfork_resume" | "reap_delay" => Some(Family::Scheduler),
            "run" => Some(Family::UserWork),
            _ => None,
        })
}

/// The nodes a child that never execs has: it is spawned once it first runs.
const BEFORE_FIRST_RUN: [&str; 7] = [
    "copy_process",
    "dup_mmap",
    "mm_lock_wait",
    "copy_page_range",
    "anon_vma_fork",
    "fork_wakeup",
    "sched_delay",
];

/// One spawn in the spawn-time tree: its total wall time and each node's
/// time (inclusive of its children), in [`SPAWN_TIME`] order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpawnTimes {
    pub total: u64,
    pub nodes: [u64; SPAWN_TIME_NODES],
}

impl SpawnTimes {
    /// Each node's own time: its time less its children's (never below
    /// zero: [`spawn_times`] widens a parent to its children).
    pub fn self_times(&self) -> [u64; SPAWN_TIME_NODES] {
        let mut own = self.nodes;
        for (i, n) in SPAWN_TIME.iter().enumerate() {
            if let Some(p) = n.parent.and_then(time_node_index) {
                own[p] = own[p].saturating_sub(self.nodes[i]);
            }
        }
        own
    }

    /// The total less the top-level nodes: time no stage accounts for
    /// (gaps between probes, or a stage whose probe is missing).
    pub fn unsplit(&self) -> u64 {
        let top: u64 = SPAWN_TIME
            .iter()
            .zip(&self.nodes)
            .filter(|(n, _)| n.parent.is_none())
            .map(|(_, v)| v)
            .sum();
        self.total.saturating_sub(top)
    }
}

/// Position of a node in [`SPAWN_TIME`].
pub fn time_node_index(name: &str) -> Option<usize> {
    SPAWN_TIME.iter().position(|n| n.name == name)
}

/// A spawn's place in the spawn-time tree, from its stage durations
/// alone (so the light reader of `spawns.jsonl` can use it). A child that
/// exec'd spans `spawn_to_exec`; one that never did, its task copy,
/// wake-up and wait to first run. Where probes disagree by a few
/// nanoseconds and children add up past their parent, the parent is
/// widened to them, so children always sum to at most their parent and
/// top-level nodes to at most the total. `None` when nothing is known.
pub fn spawn_times(d: &Durations) -> Option<SpawnTimes> {
    static POS: OnceLock<([usize; SPAWN_TIME_NODES], usize)> = OnceLock::new();
    let (pos, to_exec) = POS.get_or_init(|| {
        let pos = std::array::from_fn(|i| {
            stage_position(SPAWN_TIME[i].name).expect("spawn-time nodes are stages")
        });
        (pos, stage_position("spawn_to_exec").expect("a stage"))
    });
    let exec_total = d[*to_exec];
    let mut nodes = [0u64; SPAWN_TIME_NODES];
    let mut seen = false;
    for (i, n) in SPAWN_TIME.iter().enumerate() {
        if exec_total.is_none() && !BEFORE_FIRST_RUN.contains(&n.name) {
            continue;
        }
        if let Some(v) = d[pos[i]] {
            nodes[i] = v;
            seen = true;
        }
    }
    if !seen && exec_total.is_none() {
        return None;
    }
    // Children after parents in the table: walking it backwards sums each
    // node's children before the node itself is looked at.
    let mut children = [0u64; SPAWN_TIME_NODES];
    for i in (0..SPAWN_TIME_NODES).rev() {
        nodes[i] = nodes[i].max(children[i]);
        if let Some(p) = SPAWN_TIME[i].parent.and_then(time_node_index) {
            children[p] += nodes[i];
        }
    }
    let top: u64 = SPAWN_TIME
        .iter()
        .zip(&nodes)
        .filter(|(n, _)| n.parent.is_none())
        .map(|(_, v)| v)
        .sum();
    Some(SpawnTimes {
        total: exec_total.unwrap_or(0).max(top),
        nodes,
    })
}

pub fn stage(name: &str) -> Option<&'static StageDef> {
    STAGES.iter().find(|s| s.name == name)
}

/// The stages (of [`STAGES`]) that cannot be measured when the given probe
/// stages of the attach plan are unavailable: the boundaries those probes
/// give are taken away and every stage whose start or end is then unknown
/// (no fallback boundary either) is listed. A report marks these
/// "unavailable" rather than "not seen".
pub fn stages_lost_without(plan_stages: &[&str]) -> Vec<&'static str> {
    let mut t = Timestamps::every_boundary();
    for probe in plan_stages {
        match *probe {
            "copy_process" => (t.copy_process_enter, t.copy_process_exit) = (None, None),
            "dup_mmap" => (t.dup_mmap_enter, t.dup_mmap_exit) = (None, None),
            "mm_lock_wait" => (t.mm_lock_wait, t.mm_copy_start, t.mm_copy_end) = (None, None, None),
            "wakeup_new" => t.wakeup_new = None,
            "first_run" => t.first_run = None,
            // vfork_release is exec_prepare again (or an exit without exec).
            "exec_prepare" => (t.exec_prepare, t.vfork_release) = (None, None),
            "reap" => t.reap = None,
            _ => {}
        }
    }
    STAGES
        .iter()
        .filter(|s| (s.start)(&t).is_none() || (s.end)(&t).is_none())
        .map(|s| s.name)
        .collect()
}

impl Timestamps {
    /// The last boundary seen, if any.
    pub fn latest(&self) -> Option<u64> {
        [
            self.clone_enter,
            self.copy_process_enter,
            self.mm_lock_wait,
            self.mm_copy_start,
            self.mm_copy_end,
            self.dup_mmap_enter,
            self.dup_mmap_exit,
            self.copy_process_exit,
            self.newtask,
            self.fork_done,
            self.wakeup_new,
            self.clone_exit,
            self.first_run,
            self.child_return,
            self.exec_first_enter,
            self.exec_enter,
            self.exec_prepare,
            self.vfork_release,
            self.exec_done,
            self.exec_return,
            self.exit,
            self.reap,
        ]
        .into_iter()
        .flatten()
        .max()
    }

    /// Every boundary known (all at 1 ns): the starting point of
    /// [`stages_lost_without`].
    fn every_boundary() -> Self {
        let k = Some(1);
        Self {
            clone_enter: k,
            copy_process_enter: k,
            mm_lock_wait: k,
            mm_copy_start: k,
            mm_copy_end: k,
            dup_mmap_enter: k,
            dup_mmap_exit: k,
            copy_process_exit: k,
            newtask: k,
            fork_done: k,
            wakeup_new: k,
            clone_exit: k,
            first_run: k,
            child_return: k,
            exec_first_enter: k,
            exec_enter: k,
            exec_prepare: k,
            vfork_release: k,
            exec_done: k,
            exec_return: k,
            exit: k,
            reap: k,
        }
    }
}

impl SpawnRecord {
    /// The successful execs of this process: a wrapper that execs its
    /// program (jspawnhelper, env, nice, `sh -c 'exec …'`) has two. At
    /// least one when the kernel saw an exec whose attempt record was lost.
    pub fn successful_execs(&self) -> u64 {
        let seen = self.exec_attempts.iter().filter(|a| a.succeeded()).count() as u64;
        seen.max(self.ts.exec_done.is_some() as u64)
    }

    /// The successful exec attempts after the first: a wrapper's exec of
    /// its program, and any after it.
    pub fn later_execs(&self) -> impl Iterator<Item = &ExecAttempt> {
        self.exec_attempts.iter().filter(|a| a.succeeded()).skip(1)
    }

    /// Fills [`Self::durations`] (and the kernel-summed stages) from the timestamps.
    pub fn derive_durations(&mut self) {
        let d = &mut self.durations.0;
        for (slot, stage) in d.iter_mut().zip(STAGES) {
            *slot = stage.duration(&self.ts);
        }
        // In KERNEL_FN_STAGES order.
        let k = self.kernel_fn.as_ref();
        d[STAGES.len()] = k.map(|k| k.copy_page_range_ns);
        d[STAGES.len() + 1] = k.map(|k| k.anon_vma_fork_ns);
    }

    pub fn duration(&self, stage: &str) -> Option<u64> {
        self.durations.0[stage_position(stage)?]
    }
}

/// Every stage of [`STAGES`] then [`KERNEL_FN_STAGES`]: the durations a
/// record carries, by position instead of by name.
pub const ALL_STAGES: usize = STAGES.len() + KERNEL_FN_STAGES.len();

/// One record's stage durations, indexed like [`stage_names`].
pub type Durations = [Option<u64>; ALL_STAGES];

/// The names behind the positions of [`Durations`].
pub fn stage_names() -> impl Iterator<Item = &'static str> + Clone {
    STAGES
        .iter()
        .map(|s| s.name)
        .chain(KERNEL_FN_STAGES.iter().map(|(n, _)| *n))
}

/// Position of a stage name in [`Durations`]. Names are grouped by length,
/// so a lookup costs one or two string compares (this runs for every stage
/// of every record read back).
pub fn stage_position(name: &str) -> Option<usize> {
    /// Stage names grouped by length: `[len] → (name, position)`.
    type ByLength = Vec<Vec<(&'static str, usize)>>;
    static BY_LEN: OnceLock<ByLength> = OnceLock::new();
    let by_len = BY_LEN.get_or_init(|| {
        let mut v: ByLength = Vec::new();
        for (i, n) in stage_names().enumerate() {
            if v.len() <= n.len() {
                v.resize(n.len() + 1, Vec::new());
            }
            v[n.len()].push((n, i));
        }
        v
    });
    by_len
        .get(name.len())?
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, i)| *i)
}

/// [`SpawnRecord::durations`]: positions in memory (no allocation per
/// record), an object of stage name → integer or null in JSON, names in
/// alphabetical order. Stages this version does not know are skipped when
/// reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StageDurations(pub Durations);

impl Default for StageDurations {
    fn default() -> Self {
        Self([None; ALL_STAGES])
    }
}

impl StageDurations {
    /// (name, ns) in [`stage_names`] order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, Option<u64>)> + '_ {
        stage_names().zip(self.0.iter().copied())
    }
}

impl Serialize for StageDurations {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        static ALPHABETICAL: OnceLock<Vec<(&'static str, usize)>> = OnceLock::new();
        let order = ALPHABETICAL.get_or_init(|| {
            let mut v: Vec<_> = stage_names().enumerate().map(|(i, n)| (n, i)).collect();
            v.sort();
            v
        });
        let mut map = s.serialize_map(Some(order.len()))?;
        for &(name, i) in order {
            map.serialize_entry(name, &self.0[i])?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for StageDurations {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        /// A key, resolved to its position without being copied.
        struct Position(Option<usize>);
        impl<'de> Deserialize<'de> for Position {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl Visitor<'_> for V {
                    type Value = Position;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str("a stage name")
                    }
                    fn visit_str<E: de::Error>(self, v: &str) -> Result<Position, E> {
                        Ok(Position(stage_position(v)))
                    }
                }
                d.deserialize_str(V)
            }
        }
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StageDurations;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of stage names to durations")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = StageDurations::default();
                while let Some(Position(at)) = map.next_key()? {
                    match at {
                        Some(i) => out.0[i] = map.next_value()?,
                        None => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(out)
            }
        }
        d.deserialize_map(V)
    }
}

/// "fork", "vfork", "clone-vm" or "thread", from clone flags.
pub fn method_of(flags: u64) -> &'static str {
    if flags & cf::CLONE_THREAD != 0 {
        "thread"
    } else if flags & (cf::CLONE_VM | cf::CLONE_VFORK) == cf::CLONE_VM | cf::CLONE_VFORK {
        "vfork"
    } else if flags & cf::CLONE_VM != 0 {
        "clone-vm"
    } else {
        "fork"
    }
}

/// Clone flags spelled out, the exit signal last (`CLONE_VM|CLONE_VFORK|SIGCHLD`).
/// `exit_signal`: where the syscall passes it apart (clone3); `None` where
/// it is the flags' low byte (clone, fork, vfork).
pub fn describe_flags(flags: u64, exit_signal: Option<u64>) -> String {
    const NAMES: &[(u64, &str)] = &[
        (cf::CLONE_VM, "CLONE_VM"),
        (cf::CLONE_FS, "CLONE_FS"),
        (cf::CLONE_FILES, "CLONE_FILES"),
        (cf::CLONE_SIGHAND, "CLONE_SIGHAND"),
        (cf::CLONE_PIDFD, "CLONE_PIDFD"),
        (cf::CLONE_PTRACE, "CLONE_PTRACE"),
        (cf::CLONE_VFORK, "CLONE_VFORK"),
        (cf::CLONE_PARENT, "CLONE_PARENT"),
        (cf::CLONE_THREAD, "CLONE_THREAD"),
        (cf::CLONE_NEWNS, "CLONE_NEWNS"),
        (cf::CLONE_SYSVSEM, "CLONE_SYSVSEM"),
        (cf::CLONE_SETTLS, "CLONE_SETTLS"),
        (cf::CLONE_PARENT_SETTID, "CLONE_PARENT_SETTID"),
        (cf::CLONE_CHILD_CLEARTID, "CLONE_CHILD_CLEARTID"),
        (cf::CLONE_DETACHED, "CLONE_DETACHED"),
        (cf::CLONE_UNTRACED, "CLONE_UNTRACED"),
        (cf::CLONE_CHILD_SETTID, "CLONE_CHILD_SETTID"),
        (cf::CLONE_NEWCGROUP, "CLONE_NEWCGROUP"),
        (cf::CLONE_NEWUTS, "CLONE_NEWUTS"),
        (cf::CLONE_NEWIPC, "CLONE_NEWIPC"),
        (cf::CLONE_NEWUSER, "CLONE_NEWUSER"),
        (cf::CLONE_NEWPID, "CLONE_NEWPID"),
        (cf::CLONE_NEWNET, "CLONE_NEWNET"),
        (cf::CLONE_IO, "CLONE_IO"),
        (cf::CLONE_CLEAR_SIGHAND, "CLONE_CLEAR_SIGHAND"),
        (cf::CLONE_INTO_CGROUP, "CLONE_INTO_CGROUP"),
    ];
    // Built in one String: this runs for every spawn recorded.
    let mut out = String::with_capacity(64);
    let mut part = |s: &str| {
        if !out.is_empty() {
            out.push('|');
        }
        out.push_str(s);
    };
    for (_, name) in NAMES.iter().filter(|(bit, _)| flags & bit != 0) {
        part(name);
    }
    let known: u64 = NAMES.iter().map(|(b, _)| b).fold(cf::CSIGNAL, |a, b| a | b);
    if flags & !known != 0 {
        part(&format!("{:#x}", flags & !known));
    }
    let low = flags & cf::CSIGNAL;
    let signal = match exit_signal {
        None => low,
        // clone3's flags use the low byte too.
        Some(signal) => {
            if low & cf::CLONE_NEWTIME != 0 {
                part("CLONE_NEWTIME");
            }
            if low & !cf::CLONE_NEWTIME != 0 {
                part(&format!("{:#x}", low & !cf::CLONE_NEWTIME));
            }
            signal
        }
    };
    match signal {
        0 => {}
        17 => part("SIGCHLD"),
        sig => part(&format!("sig{sig}")),
    }
    if out.is_empty() {
        out.push('0');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_probe_takes_away_the_stages_that_need_its_boundaries() {
        let lost = stages_lost_without;
        assert!(lost(&[]).is_empty(), "{:?}", lost(&[]));
        assert_eq!(
            lost(&["exec_prepare"]),
            ["vfork_resume", "exec_load", "exec_replace"]
        );
        assert_eq!(
            lost(&["wakeup_new"]),
            ["fork_wakeup", "parent_return", "sched_delay"]
        );
        assert_eq!(lost(&["reap"]), ["reap_delay"]);
        // Boundaries with a fallback: the tracepoint tier derives dup_mmap
        // from the mmap lock, copy_process from clone entry and newtask.
        assert!(lost(&["dup_mmap", "copy_process"]).is_empty());
        assert_eq!(
            lost(&["dup_mmap", "mm_lock_wait"]),
            ["dup_mmap", "mm_lock_wait"]
        );
        // first_run: sched_delay; pre_exec and run fall back on other marks.
        assert_eq!(lost(&["first_run"]), ["sched_delay"]);
    }

    #[test]
    fn every_boundary_is_set_in_the_full_timestamps() {
        let json = serde_json::to_value(Timestamps::every_boundary()).unwrap();
        let nulls: Vec<&String> = json
            .as_object()
            .unwrap()
            .iter()
            .filter(|(_, v)| v.is_null())
            .map(|(k, _)| k)
            .collect();
        assert!(nulls.is_empty(), "{nulls:?}");
    }

    #[test]
    fn durations_are_a_name_map_in_json_in_alphabetical_order() {
        let mut r = SpawnRecord::default();
        r.ts.clone_enter = Some(10);
        r.ts.clone_exit = Some(35);
        r.derive_durations();
        assert_eq!(r.duration("clone"), Some(25));
        let json = serde_json::to_value(r.durations).unwrap();
        let obj = json.as_object().unwrap();
        assert_eq!(obj.len(), ALL_STAGES);
        assert_eq!(obj["clone"], 25);
        assert!(obj["exec"].is_null());
        let text = serde_json::to_string(&r.durations).unwrap();
        let keys: Vec<&str> = text.split('"').skip(1).step_by(2).collect();
        assert!(keys.is_sorted(), "{keys:?}");
        assert_eq!(
            serde_json::from_str::<StageDurations>(&text).unwrap(),
            r.durations
        );
        // A stage this version does not know is skipped; missing ones are null.
        let read: StageDurations = serde_json::from_str(r#"{"zzz_new":5,"cl\u006fne":7}"#).unwrap();
        assert_eq!(
            read.iter().find(|(n, _)| *n == "clone"),
            Some(("clone", Some(7)))
        );
        assert_eq!(read.0.iter().flatten().count(), 1);
    }

    #[test]
    fn stage_parents_exist_and_precede_their_children() {
        for (i, s) in STAGES.iter().enumerate() {
            if let Some(p) = s.parent {
                let pi = STAGES
                    .iter()
                    .position(|x| x.name == p)
                    .expect("parent exists");
                assert!(pi < i, "{} listed before its parent {p}", s.name);
            }
        }
    }

    #[test]
    fn durations_prefer_function_boundaries_over_tracepoint_derivations() {
        let mut r = SpawnRecord {
            ts: Timestamps {
                clone_enter: Some(100),
                mm_lock_wait: Some(110),
                mm_copy_start: Some(115),
                mm_copy_end: Some(300),
                newtask: Some(320),
                ..Default::default()
            },
            ..Default::default()
        };
        r.derive_durations();
        assert_eq!(r.duration("dup_mmap"), Some(190));
        assert_eq!(r.duration("mm_lock_wait"), Some(5));
        assert_eq!(r.duration("copy_process"), Some(220));
        assert_eq!(r.duration("exec"), None);
        assert_eq!(r.duration("copy_page_range"), None, "unavailable, not zero");
        r.ts.dup_mmap_enter = Some(105);
        r.ts.dup_mmap_exit = Some(305);
        r.derive_durations();
        assert_eq!(r.duration("dup_mmap"), Some(200));
    }

    #[test]
    fn the_spawn_time_tree_lists_parents_first_and_only_stages() {
        for (i, n) in SPAWN_TIME.iter().enumerate() {
            assert!(stage_position(n.name).is_some(), "{} is a stage", n.name);
            if let Some(p) = n.parent {
                let pi = time_node_index(p).expect("parent in the tree");
                assert!(pi < i, "{} listed before its parent {p}", n.name);
            }
        }
        // The parent's side overlaps the child's stages.
        for outside in ["clone", "parent_return", "vfork_resume", "spawn_to_exec"] {
            assert!(time_node_index(outside).is_none(), "{outside}");
        }
        assert!(spawn_times(&StageDurations::default().0).is_none());
    }

    #[test]
    fn flags_are_spelled_out() {
        assert_eq!(
            describe_flags(cf::CLONE_VM | cf::CLONE_VFORK | 17, None),
            "CLONE_VM|CLONE_VFORK|SIGCHLD"
        );
        assert_eq!(describe_flags(0, None), "0");
        assert_eq!(
            describe_flags(cf::CLONE_THREAD | (1 << 40) | 9, None),
            "CLONE_THREAD|0x10000000000|sig9"
        );
        assert_eq!(describe_flags(1 << 40, None), "0x10000000000");
        // What `unshare`, systemd and pidfd users pass: named, not hex.
        assert_eq!(
            describe_flags(
                cf::CLONE_NEWNS
                    | cf::CLONE_NEWUTS
                    | cf::CLONE_NEWIPC
                    | cf::CLONE_NEWPID
                    | cf::CLONE_NEWNET
                    | cf::CLONE_NEWUSER
                    | cf::CLONE_NEWCGROUP
                    | 17,
                None
            ),
            "CLONE_NEWNS|CLONE_NEWCGROUP|CLONE_NEWUTS|CLONE_NEWIPC|CLONE_NEWUSER|CLONE_NEWPID|\
             CLONE_NEWNET|SIGCHLD"
        );
        assert_eq!(
            describe_flags(
                cf::CLONE_PIDFD | cf::CLONE_SYSVSEM | cf::CLONE_INTO_CGROUP,
                Some(17)
            ),
            "CLONE_PIDFD|CLONE_SYSVSEM|CLONE_INTO_CGROUP|SIGCHLD"
        );
        assert_eq!(
            describe_flags(cf::CLONE_NEWTIME, Some(17)),
            "CLONE_NEWTIME|SIGCHLD"
        );
        assert_eq!(method_of(cf::CLONE_VM | cf::CLONE_VFORK | 17), "vfork");
        assert_eq!(method_of(17), "fork");
        assert_eq!(method_of(cf::CLONE_VM | cf::CLONE_THREAD), "thread");
    }
}
