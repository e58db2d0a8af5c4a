//! The resolved plan: one row per stage, what a recording stores, a diff
//! compares and `spawnprof probes` prints.
use serde::{Deserialize, Serialize};

use super::{LOW_OVERHEAD, Mechanism, SKIP_STAGE};

/// Why a better mechanism was not used.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejection {
    pub mechanism: Mechanism,
    pub reason: String,
}

/// The resolved plan for one stage.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanRow {
    pub stage: String,
    pub mechanism: Mechanism,
    pub how: String,
    /// What was attached, e.g. `sched:sched_process_fork` or `copy_page_range`.
    pub targets: Vec<String>,
    pub rejected: Vec<Rejection>,
}

impl PlanRow {
    /// The option that left this stage's probes out on request, if one did.
    pub fn left_out_by(&self) -> Option<&'static str> {
        self.rejected.iter().find_map(|r| {
            [SKIP_STAGE, LOW_OVERHEAD]
                .into_iter()
                .find(|flag| r.reason.contains(flag))
        })
    }

    /// The mechanism, and for a stage left out on request, by what.
    pub fn describe(&self) -> String {
        match self.left_out_by() {
            Some(flag) => format!("{} ({flag})", self.mechanism),
            None => self.mechanism.to_string(),
        }
    }
}

#[cfg(test)]
impl PlanRow {
    /// A resolved row for tests; `rejected`: the reason one better
    /// candidate was turned down.
    pub(crate) fn for_test(stage: &str, mechanism: Mechanism, rejected: Option<&str>) -> Self {
        Self {
            stage: stage.into(),
            mechanism,
            how: String::new(),
            targets: Vec::new(),
            rejected: rejected
                .map(|reason| Rejection {
                    mechanism: Mechanism::RawTracepoint,
                    reason: reason.into(),
                })
                .into_iter()
                .collect(),
        }
    }
}

/// The stages two plans observed differently, one line each ("first_run:
/// A fentry, B unavailable"), for a diff to warn that those stages' numbers
/// come from different probes (or from none on one side).
pub fn differences(a: &[PlanRow], b: &[PlanRow]) -> Vec<String> {
    a.iter()
        .filter_map(|ra| {
            let rb = b.iter().find(|rb| rb.stage == ra.stage)?;
            (ra.mechanism != rb.mechanism)
                .then(|| format!("{}: A {}, B {}", ra.stage, ra.describe(), rb.describe()))
        })
        .collect()
}

/// The lines a diff prints under its table when the plans differ.
pub fn differences_note(a: &[PlanRow], b: &[PlanRow]) -> String {
    let diffs = differences(a, b);
    if diffs.is_empty() {
        return String::new();
    }
    format!(
        "observed differently on A and B (compare these stages with care; the plan in each directory's summary or bench JSON says why):\n  {}\n",
        diffs.join("\n  ")
    )
}

/// Renders a plan as a table for the terminal.
pub fn render(plan: &[PlanRow]) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let w = plan.iter().map(|r| r.stage.len()).max().unwrap_or(5).max(5);
    let _ = writeln!(
        out,
        "{:<w$}  {:<14}  how / why not better",
        "stage", "mechanism"
    );
    for row in plan {
        let _ = writeln!(
            out,
            "{:<w$}  {:<14}  {}",
            row.stage,
            row.mechanism.to_string(),
            row.how
        );
        for r in &row.rejected {
            let _ = writeln!(
                out,
                "{:<w$}  {:<14}    {} rejected: {}",
                "", "", r.mechanism, r.reason
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_diff_names_the_stages_two_plans_observed_differently() {
        let row = PlanRow::for_test;
        let a = [
            row("clone", Mechanism::Fentry, None),
            row("first_run", Mechanism::Fentry, None),
            row("exit", Mechanism::RawTracepoint, None),
        ];
        let b = [
            row("clone", Mechanism::Tracepoint, None),
            row(
                "first_run",
                Mechanism::Unavailable,
                Some("fires on every context switch of the machine: left out (--low-overhead)"),
            ),
            row("exit", Mechanism::RawTracepoint, None),
        ];
        assert_eq!(
            differences(&a, &b),
            [
                "clone: A fentry, B tracepoint",
                "first_run: A fentry, B unavailable (--low-overhead)"
            ]
        );
        assert_eq!(differences_note(&a, &a), "");
    }
}
