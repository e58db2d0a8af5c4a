//! report.html's process table: one block per program the processes
//! exec'd (over every process of the recording), sortable, each opening
//! onto its first processes one by one.
use std::fmt::Write as _;

use super::{
    charts::escape,
    sortable::{self, Column},
    stream::{EXEC_FAILED, NO_EXEC, Programs},
};
use crate::{model::SpawnRecord, units::format_ns};

/// One row of the per-process table, already formatted.
#[derive(Clone, Debug, PartialEq)]
pub struct ProcessRow {
    pub cells: Vec<String>,
    /// The program it exec'd, as the process table groups it
    /// ([`Programs`]).
    pub group: String,
}

pub const PROCESS_COLUMNS: &[(&str, bool)] = &[
    ("pid", true),
    ("ppid", true),
    ("method", false),
    ("comm", false),
    ("exec'd path", false),
    ("failed execs", true),
    ("fork→exec", true),
    ("pre-exec faults (CoW)", true),
    ("exec→exit", true),
    ("status", false),
];

fn opt_ns(v: Option<u64>) -> String {
    v.map_or_else(|| "-".into(), format_ns)
}

impl ProcessRow {
    /// The same reading of a record as the terminal table.
    pub fn of(r: &SpawnRecord) -> Self {
        let comm = match (&r.comm_before, &r.comm_after) {
            (Some(a), Some(b)) if a != b => format!("{a}→{b}"),
            (Some(a), _) | (None, Some(a)) => a.clone(),
            _ => "-".into(),
        };
        let status = match (r.exit_signal, r.exit_status) {
            (Some(s), _) => format!("signal {s}"),
            (None, Some(s)) => format!("exit {s}"),
            _ => "-".into(),
        };
        let path = match (&r.exec_path, r.exec_attempts.last()) {
            (Some(p), _) => then_exec_d(p, r),
            (None, Some(a)) => match a.ret {
                Some(ret) => format!("{} (failed: {})", a.path, super::trace::errno_name(ret)),
                None => format!("{} (exec not seen to return)", a.path),
            },
            (None, None) => "-".into(),
        };
        let fork_exec =
            r.ts.exec_return
                .zip(r.ts.clone_enter.or(r.ts.fork_done))
                .and_then(|(e, s)| e.checked_sub(s));
        let faults = match (r.faults.pre_exec, r.faults.pre_exec_cow) {
            (Some(a), Some(c)) => format!("{a} ({c})"),
            (Some(a), None) => a.to_string(),
            _ => "-".into(),
        };
        let method = if r.root {
            "root".into()
        } else {
            r.method.clone().unwrap_or_else(|| "-".into())
        };
        let group = match (&r.exec_path, r.failed_exec_attempts) {
            (Some(p), _) => p.clone(),
            (None, 0) => NO_EXEC.into(),
            (None, _) => EXEC_FAILED.into(),
        };
        Self {
            group,
            cells: vec![
                r.child_pid.map_or("-".into(), |p| p.to_string()),
                r.parent_pid.map_or("-".into(), |p| p.to_string()),
                method,
                comm,
                path,
                r.failed_exec_attempts.to_string(),
                opt_ns(fork_exec),
                faults,
                // A child that never exec'd has no exec to count from.
                opt_ns(r.ts.exec_return.and(r.duration("run"))),
                status,
            ],
        }
    }

    /// The cell of the column named `column` (in [`PROCESS_COLUMNS`]).
    pub fn cell(&self, column: &str) -> &str {
        PROCESS_COLUMNS
            .iter()
            .position(|(name, _)| *name == column)
            .and_then(|i| self.cells.get(i))
            .map_or("-", String::as_str)
    }
}

/// The spawn's exec'd path, and the program a wrapper exec'd after it
/// (Java's jspawnhelper, env): `…/jspawnhelper → /bin/true`.
fn then_exec_d(first: &str, r: &SpawnRecord) -> String {
    let later: Vec<&str> = r.later_execs().map(|a| a.path.as_str()).collect();
    match later.as_slice() {
        [] => first.to_string(),
        [next] => format!("{first} → {next}"),
        [.., last] => format!("{first} → … → {last}"),
    }
}

/// Member rows shown under one program (the page keeps the first
/// [`super::export::PROCESS_ROWS`] processes in all).
const MEMBERS: usize = 25;

const GROUP_COLUMNS: &[Column<'static>] = &[
    Column {
        name: "program (exec'd path)",
        key: "program",
        num: false,
    },
    Column {
        name: "processes",
        key: "processes",
        num: true,
    },
    Column {
        name: "how spawned",
        key: "methods",
        num: false,
    },
    Column {
        name: "failed execs",
        key: "failed",
        num: true,
    },
    Column {
        name: "fork→exec p50",
        key: "p50",
        num: true,
    },
    Column {
        name: "fork→exec mean",
        key: "mean",
        num: true,
    },
    Column {
        name: "fork→exec max",
        key: "max",
        num: true,
    },
    Column {
        name: "exec→exit mean",
        key: "run",
        num: true,
    },
];

/// The table: programs with the most processes first.
pub fn table(out: &mut String, programs: &Programs, rows: &[ProcessRow], total: u64) {
    let _ = write!(
        out,
        r#"<section id="processes"><h2>Processes</h2><p class="note">{}</p><table id="process-table" class="sortable grouped">"#,
        escape(&caption(programs, rows.len(), total))
    );
    sortable::header(out, GROUP_COLUMNS);
    let mut order: Vec<(&String, &super::stream::Program)> = programs.0.iter().collect();
    order.sort_by(|a, b| b.1.spawns.cmp(&a.1.spawns).then(a.0.cmp(b.0)));
    for (path, p) in order {
        out.push_str(r#"<tbody class="group"><tr class="head">"#);
        let _ = write!(out, r#"<td class="path">{}</td>"#, escape(path));
        sortable::num(out, &p.spawns.to_string(), Some(p.spawns as f64));
        let methods: Vec<String> = p.methods.iter().map(|(m, n)| format!("{m} {n}")).collect();
        let _ = write!(out, "<td>{}</td>", escape(&methods.join(", ")));
        sortable::num(
            out,
            &p.failed_execs.to_string(),
            Some(p.failed_execs as f64),
        );
        let p50 = p.to_exec.quantile(0.5);
        ns_cell(out, p50);
        ns_cell(out, p.to_exec_mean());
        ns_cell(out, (p.to_exec.total() > 0).then_some(p.to_exec_max));
        ns_cell(out, p.run_mean());
        out.push_str("</tr>");
        members(out, rows.iter().filter(|r| &r.group == path));
        out.push_str("</tbody>");
    }
    out.push_str("</table></section>");
}

/// A duration cell, sortable, `-` when unknown.
fn ns_cell(out: &mut String, ns: Option<u64>) {
    match ns {
        Some(v) => sortable::num(out, &format_ns(v), Some(v as f64)),
        None => sortable::num(out, "-", None),
    }
}

fn caption(programs: &Programs, shown: usize, total: u64) -> String {
    let listed = if total as usize > shown {
        format!(
            "click one to list its processes among the first {shown} of {total} (all of them are in spawns.jsonl)"
        )
    } else {
        "click one to list its processes".to_string()
    };
    format!(
        "All {total} processes created (threads left out), by the program they exec'd ({} programs), most processes first; click a column to sort, {listed}. fork→exec p50 is within 26% (a log histogram).",
        programs.0.len()
    )
}

/// A program's first processes, as a nested table in one row.
fn members<'a>(out: &mut String, rows: impl Iterator<Item = &'a ProcessRow>) {
    let rows: Vec<&ProcessRow> = rows.take(MEMBERS).collect();
    if rows.is_empty() {
        return;
    }
    let _ = write!(
        out,
        r#"<tr class="members"><td colspan="{}"><table class="members">"#,
        GROUP_COLUMNS.len()
    );
    out.push_str("<thead><tr>");
    for (name, num) in PROCESS_COLUMNS {
        let class = if *num { r#" class="num""# } else { "" };
        let _ = write!(out, "<th{class}>{}</th>", escape(name));
    }
    out.push_str("</tr></thead><tbody>");
    for row in rows {
        out.push_str("<tr>");
        for (v, (name, num)) in row.cells.iter().zip(PROCESS_COLUMNS) {
            let class = match (*num, *name) {
                (true, _) => r#" class="num""#,
                (false, "exec'd path") => r#" class="path""#,
                _ => "",
            };
            let _ = write!(out, "<td{class}>{}</td>", escape(v));
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table></td></tr>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_rows_read_records_like_the_terminal_table() {
        let mut r = SpawnRecord {
            child_pid: Some(7),
            parent_pid: Some(1),
            method: Some("vfork".into()),
            comm_before: Some("sh".into()),
            comm_after: Some("true".into()),
            exec_path: Some("/bin/true".into()),
            exit_status: Some(0),
            ..Default::default()
        };
        r.ts.clone_enter = Some(1_000);
        r.ts.exec_return = Some(151_000);
        r.faults.pre_exec = Some(3);
        r.faults.pre_exec_cow = Some(1);
        let row = ProcessRow::of(&r);
        assert_eq!(
            row.cells,
            vec![
                "7",
                "1",
                "vfork",
                "sh→true",
                "/bin/true",
                "0",
                "150 µs",
                "3 (1)",
                "-",
                "exit 0"
            ]
        );
        let exec = |path: &str| crate::model::ExecAttempt {
            ret: Some(0),
            path: path.into(),
            ..Default::default()
        };
        r.exec_attempts = vec![exec("/bin/true")];
        assert_eq!(ProcessRow::of(&r).cell("exec'd path"), "/bin/true");
        r.exec_attempts.push(exec("/bin/env"));
        assert_eq!(
            ProcessRow::of(&r).cell("exec'd path"),
            "/bin/true → /bin/env"
        );
        r.exec_attempts.push(exec("/bin/sh"));
        assert_eq!(
            ProcessRow::of(&r).cell("exec'd path"),
            "/bin/true → … → /bin/sh"
        );
    }
}
