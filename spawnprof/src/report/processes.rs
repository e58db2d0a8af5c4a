//! report.html's process table: one block per program the processes
//! exec'd (over every process of the recording), sortable, each opening
//! onto its first processes one by one.
use std::fmt::Write as _;

use super::{
    charts::escape,
    html::{PROCESS_COLUMNS, ProcessRow},
    sortable::{self, Column},
    stream::Programs,
};
use crate::units::format_ns;

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
