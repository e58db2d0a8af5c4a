//! Outputs of a recording: pure renderers of the saved [`Summary`] and
//! spawn records, never of the kernel, so `spawnprof report DIR` can
//! rebuild every one of them from a saved recording.
//!
//! `export` writes them all into the recording's directory: `table`
//! (terminal), `folded`/`flamegraph` (stage flamegraph), `trace`
//! (Perfetto), `charts` (SVG), `html` (the one page); `stream` aggregates
//! a large spawns.jsonl on every core; `diff` compares two recordings.
pub mod breakdown;
pub mod charts;
pub mod compare;
pub mod diff;
pub mod export;
pub mod findings;
pub mod flamegraph;
pub mod folded;
pub mod headline;
pub mod html;
pub mod processes;
pub mod sortable;
pub mod stream;
pub mod table;
pub mod timing;
pub mod trace;

use crate::{
    probe::plan::{LOW_OVERHEAD, Mechanism, PlanRow},
    recording::Summary,
};

/// The stages a report cannot show for this recording, with why: the
/// probes the plan could not attach (or was told to skip), and the stages
/// of the breakdown that needed their boundaries.
pub fn unavailable_stages(summary: &Summary) -> Vec<Unmeasured> {
    unmeasured(&summary.plan)
}

fn unmeasured(plan: &[PlanRow]) -> Vec<Unmeasured> {
    let missing: Vec<&PlanRow> = plan
        .iter()
        .filter(|r| r.mechanism == Mechanism::Unavailable)
        .collect();
    let why = |rows: &[&PlanRow]| {
        let names: Vec<&str> = rows.iter().map(|r| r.stage.as_str()).collect();
        let flags: Vec<&str> = rows.iter().filter_map(|r| r.left_out_by()).collect();
        if flags.len() < rows.len() {
            format!("unavailable on this kernel (no {} probe)", names.join("/"))
        } else if flags.iter().all(|f| *f == LOW_OVERHEAD) {
            format!("left out (--low-overhead: no {} probe)", names.join("/"))
        } else {
            format!("skipped (--skip-stage {})", names.join(", "))
        }
    };
    let names: Vec<&str> = missing.iter().map(|r| r.stage.as_str()).collect();
    let mut out: Vec<Unmeasured> = missing
        .iter()
        .map(|r| Unmeasured {
            stage: r.stage.clone(),
            why: match r.left_out_by() {
                Some(flag) => format!("left out ({flag})"),
                None => "unavailable on this kernel".into(),
            },
        })
        .collect();
    // The report's stages those probes' boundaries were needed for, each
    // blamed on the missing probes without which it would be measured.
    for stage in crate::model::stages_lost_without(&names) {
        if out.iter().any(|u| u.stage == stage) {
            continue;
        }
        let needed: Vec<&PlanRow> = missing
            .iter()
            .copied()
            .filter(|row| {
                let others: Vec<&str> = names.iter().copied().filter(|n| *n != row.stage).collect();
                !crate::model::stages_lost_without(&others).contains(&stage)
            })
            .collect();
        // Or, when any one of several would do (sched_delay needs both
        // wakeup_new and first_run), those that take it away alone.
        let enough: Vec<&PlanRow> = missing
            .iter()
            .copied()
            .filter(|row| crate::model::stages_lost_without(&[row.stage.as_str()]).contains(&stage))
            .collect();
        let blamed = [needed, enough]
            .into_iter()
            .find(|rows| !rows.is_empty())
            .unwrap_or_else(|| missing.clone());
        out.push(Unmeasured {
            stage: stage.into(),
            why: why(&blamed),
        });
    }
    out
}

/// A stage of the report with no data by construction, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unmeasured {
    pub stage: String,
    pub why: String,
}

/// The note for a breakdown row without data: why it cannot have any, or
/// "not seen" when it could have and no spawn had it.
pub fn why_no_data<'a>(unavailable: &'a [Unmeasured], stage: &str) -> &'a str {
    unavailable
        .iter()
        .find(|u| u.stage == stage)
        .map_or("not seen", |u| u.why.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plan row; `left_out_by`: the option that rejected its candidates.
    fn row(stage: &str, mechanism: Mechanism, left_out_by: Option<&str>) -> PlanRow {
        let reason = left_out_by.map(|flag| format!("left out on request ({flag})"));
        PlanRow::for_test(stage, mechanism, reason.as_deref())
    }

    #[test]
    fn a_stage_without_data_says_which_probe_is_missing_and_why() {
        use Mechanism::{RawTracepoint, Unavailable};
        let plan = [
            row("wakeup_new", RawTracepoint, None),
            row("first_run", Unavailable, Some("--skip-stage")),
            row("exec_prepare", Unavailable, None),
            row("copy_page_range", Unavailable, None),
            row("mm_lock_wait", Unavailable, Some("--low-overhead")),
            row("dup_mmap", Unavailable, Some("--low-overhead")),
        ];
        let why = |stage: &str| {
            unmeasured(&plan)
                .into_iter()
                .find(|u| u.stage == stage)
                .map(|u| u.why)
        };
        assert_eq!(why("first_run").as_deref(), Some("left out (--skip-stage)"));
        assert_eq!(
            why("sched_delay").as_deref(),
            Some("skipped (--skip-stage first_run)")
        );
        assert_eq!(
            why("vfork_resume").as_deref(),
            Some("unavailable on this kernel (no exec_prepare probe)")
        );
        assert_eq!(
            why("exec_load").as_deref(),
            Some("unavailable on this kernel (no exec_prepare probe)")
        );
        assert_eq!(
            why("copy_page_range").as_deref(),
            Some("unavailable on this kernel")
        );
        assert_eq!(
            why("mm_lock_wait").as_deref(),
            Some("left out (--low-overhead)")
        );
        // dup_mmap's tracepoint derivation needs the mmap lock probes.
        assert_eq!(
            why("dup_mmap").as_deref(),
            Some("left out (--low-overhead)")
        );
        assert_eq!(why("fork_wakeup"), None, "wakeup_new is attached");
        assert_eq!(why("exec"), None);
    }
}
