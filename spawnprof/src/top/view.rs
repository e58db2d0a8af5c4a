//! Drawing `top`'s table with ratatui.
use ratatui::{
    Frame,
    layout::{Constraint, Layout},
    style::{Modifier, Style},
    text::Line,
    widgets::{Block, Row as TableRow, Table},
};

use super::rows::{Row, STAGES, SortBy};
use crate::units::format_ns;

/// What the frame shows besides the rows.
pub struct Header<'a> {
    pub scope: &'a str,
    pub sort: SortBy,
    pub reverse: bool,
    pub capped: bool,
    pub lost: u64,
    /// Rows are per comm and cgroup (`--cgroup-label`).
    pub by_cgroup: bool,
    /// Rows name the exec'd programs (`--label-by exec`).
    pub by_exec: bool,
}

pub fn draw(frame: &mut Frame<'_>, rows: &[Row], header: &Header<'_>) {
    let [top, body, bottom] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(3),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    let capped = if header.capped {
        "  (labels capped: later comms count as other)"
    } else {
        ""
    };
    frame.render_widget(
        Line::from(format!(
            "spawnprof top: {}, {} rows, lost {}{capped}",
            header.scope,
            rows.len(),
            header.lost
        )),
        top,
    );
    frame.render_widget(table(rows, header), body);
    let order = if header.reverse {
        "ascending"
    } else {
        "descending"
    };
    frame.render_widget(
        Line::from(format!(
            "sorted by {} ({order})   s: next column  r: reverse  q: quit",
            header.sort.name()
        )),
        bottom,
    );
}

fn table<'a>(rows: &'a [Row], header: &Header<'_>) -> Table<'a> {
    // With --cgroup-label, the cgroup follows the comm.
    let by_cgroup = header.by_cgroup;
    let first = if header.by_exec { "PROGRAM" } else { "COMM" };
    let mut titles = vec![first.to_string()];
    if by_cgroup {
        titles.push("CGROUP".into());
    }
    titles.extend(["SPAWNS/S".into(), "TOTAL".into()]);
    for (_, name) in STAGES {
        titles.push(format!("{} p50", name.to_uppercase()));
        titles.push(format!("{} p99", name.to_uppercase()));
    }
    let sorted = match header.sort {
        SortBy::Comm => 0,
        SortBy::Rate => 1,
        SortBy::Total => 2,
        SortBy::P99(i) => 4 + 2 * i,
    } + usize::from(by_cgroup && header.sort != SortBy::Comm);
    let head = TableRow::new(titles.into_iter().enumerate().map(|(i, t)| {
        let style = Style::default().add_modifier(Modifier::BOLD);
        if i == sorted {
            ratatui::text::Span::styled(t, style.add_modifier(Modifier::REVERSED))
        } else {
            ratatui::text::Span::styled(t, style)
        }
    }));
    let body = rows.iter().map(|r| {
        let mut cells = vec![r.label.comm.clone()];
        if by_cgroup {
            cells.push(r.label.cgroup.clone().unwrap_or_default());
        }
        cells.extend([format!("{:.1}", r.per_second), r.total.to_string()]);
        for (p50, p99) in r.stages {
            cells.push(cell(p50));
            cells.push(cell(p99));
        }
        TableRow::new(cells)
    });
    let mut widths = vec![Constraint::Length(16)];
    if by_cgroup {
        widths.push(Constraint::Length(32));
    }
    widths.extend([Constraint::Length(9), Constraint::Length(9)]);
    widths.extend(std::iter::repeat_n(
        Constraint::Length(14),
        2 * STAGES.len(),
    ));
    Table::new(body, widths)
        .header(head)
        .block(Block::default())
}

fn cell(ns: Option<f64>) -> String {
    ns.map_or_else(|| "-".into(), |v| format_ns(v as u64))
}
