//! The attach plan: for every probe stage, the mechanisms that can observe
//! it, best first. Adding a kernel quirk means adding a row or a candidate
//! to the table (`table.rs`), not another `if` in the loader.
//!
//! The loader ([`crate::session`]) walks each stage's candidates: a
//! candidate whose pre-check fails (no BTF entry, no kprobe PMU, no such
//! tracepoint, disabled on the command line) or whose load/attach fails is
//! rejected with the reason, and the next one is tried. The resolved plan is
//! printed by `spawnprof probes` and stored in every `summary.json`.
//!
//! This module holds the types; `rows` is the resolved plan (what a
//! recording stores and a diff compares).
use serde::{Deserialize, Serialize};

mod rows;
mod table;

pub use rows::{PlanRow, Rejection, differences, differences_note, render};
pub use table::{FORK_ONLY, PLAN};

/// How a stage is observed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mechanism {
    Fentry,
    Kprobe,
    /// A raw tracepoint: the tracepoint's C arguments instead of its record.
    RawTracepoint,
    Tracepoint,
    /// No program of its own: read from the kernel's scheduler statistics
    /// by a program another stage attached.
    #[serde(rename = "sched_info")]
    SchedInfo,
    Unavailable,
}

impl std::fmt::Display for Mechanism {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Fentry => "fentry",
            Self::Kprobe => "kprobe",
            Self::RawTracepoint => "raw_tracepoint",
            Self::Tracepoint => "tracepoint",
            Self::SchedInfo => "sched_info",
            Self::Unavailable => "unavailable",
        })
    }
}

/// One program to attach, by its name in the eBPF object.
#[derive(Clone, Copy, Debug)]
pub enum Attach {
    Tracepoint {
        program: &'static str,
        category: &'static str,
        name: &'static str,
        /// Absent on some architectures (e.g. no fork/vfork syscalls on arm64).
        optional: bool,
    },
    Fentry {
        program: &'static str,
        function: &'static str,
    },
    Fexit {
        program: &'static str,
        function: &'static str,
    },
    Kprobe {
        program: &'static str,
        function: &'static str,
    },
    Kretprobe {
        program: &'static str,
        function: &'static str,
    },
    RawTracepoint {
        program: &'static str,
        name: &'static str,
    },
}

impl Attach {
    pub fn program(&self) -> &'static str {
        match *self {
            Self::Tracepoint { program, .. }
            | Self::Fentry { program, .. }
            | Self::Fexit { program, .. }
            | Self::Kprobe { program, .. }
            | Self::Kretprobe { program, .. }
            | Self::RawTracepoint { program, .. } => program,
        }
    }

    pub fn target(&self) -> String {
        match *self {
            Self::Tracepoint { category, name, .. } => format!("{category}:{name}"),
            Self::RawTracepoint { name, .. } => format!("raw_tp:{name}"),
            Self::Fentry { function, .. } | Self::Kprobe { function, .. } => function.into(),
            Self::Fexit { function, .. } | Self::Kretprobe { function, .. } => {
                format!("{function} (return)")
            }
        }
    }
}

/// One way to observe a stage.
pub struct Candidate {
    pub mechanism: Mechanism,
    pub attaches: &'static [Attach],
    /// What this mechanism measures, for the report.
    pub how: &'static str,
}

/// The options that leave probes out on request, as rejection reasons
/// name them (reports tell "left out" from "unavailable" by them).
pub const SKIP_STAGE: &str = "--skip-stage";
pub const LOW_OVERHEAD: &str = "--low-overhead";
/// The option of `serve` and `top` that times first runs at each switch.
pub const FIRST_RUN_PER_SWITCH: &str = "--first-run-per-switch";
/// The machine-wide event of the per-switch first-run tiers.
pub const CONTEXT_SWITCH: &str = "context switch";

impl Candidate {
    /// The machine-wide event this candidate's tracepoints fire on, if they
    /// fire on every one of them (whoever causes it) rather than once per
    /// spawn: what `--low-overhead` leaves out.
    pub fn per_machine_event(&self) -> Option<&'static str> {
        self.attaches.iter().find_map(|a| {
            let name = match *a {
                Attach::Tracepoint { name, .. } | Attach::RawTracepoint { name, .. } => name,
                _ => return None,
            };
            match name {
                n if n.starts_with("mmap_lock_") => Some("mmap lock operation"),
                "page_fault_user" => Some("user page fault"),
                "sched_switch" => Some(CONTEXT_SWITCH),
                _ => None,
            }
        })
    }
}

/// A stage of the attach plan.
pub struct ProbeStage {
    pub name: &'static str,
    /// Recording is impossible without it: failing every candidate is an error.
    pub required: bool,
    pub candidates: &'static [Candidate],
}
