//! `spawnprof diff A B`: what changed in spawn time between two recordings
//! (two benches: [`crate::bench::diff`]).
//!
//! Writes `diff.folded` (inferno's differential format: `stack A B`),
//! `diff.svg` (the differential flamegraph: B's widths, red where B spends
//! more per spawn than A, blue where less) and `diff-a.svg` (the same
//! colours on A's widths, where time that disappeared shows), and returns
//! a side-by-side table of the stage means.
//!
//! Widths are per spawn (each recording's total divided by its number of
//! spawns), so recordings of different lengths compare; stored in
//! picoseconds to keep rare stacks from rounding to zero, shown in ns.
use std::{
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result};
use inferno::differential;

use super::{
    flamegraph::{self, Labels, Render},
    folded::StageFolder,
    stream::aggregate_file,
};
use crate::{
    model::{KERNEL_FN_STAGES, STAGES},
    recording::{SPAWNS_FILE, Summary},
    units::{SHOWN_COMMAND, elide, format_ns},
};

pub const DIFF_FOLDED: &str = "diff.folded";
pub const DIFF_SVG: &str = "diff.svg";
pub const DIFF_A_SVG: &str = "diff-a.svg";

/// Weights are stored ×1000 (ps per spawn); the graph divides back.
const SCALE: u64 = 1000;

struct Side {
    dir: PathBuf,
    summary: Summary,
    folder: StageFolder,
}

fn load(dir: &Path) -> Result<Side> {
    // A killed recording's figures, rebuilt from its spawns.
    let summary = crate::recording::recover::summary(dir)?;
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let agg = aggregate_file(&dir.join(SPAWNS_FILE), workers)?;
    Ok(Side {
        dir: dir.to_path_buf(),
        summary,
        folder: agg.folder,
    })
}

/// Folded text with weights in ps per spawn.
pub fn per_spawn_folded(f: &StageFolder) -> String {
    let spawns = u128::from(f.spawns().max(1));
    let mut s = String::new();
    for (stack, w) in f.lines_scaled(|_, ns| {
        // Rounded to the nearest ps; u128 so the product cannot overflow.
        ((u128::from(ns) * u128::from(SCALE) + spawns / 2) / spawns) as u64
    }) {
        let _ = writeln!(s, "{stack} {w}");
    }
    s
}

/// A signed duration: `+1.2 µs`, `-850 ns`, `0 ns`.
pub fn signed_ns(delta: i128) -> String {
    let mag = format_ns(delta.unsigned_abs().min(u128::from(u64::MAX)) as u64);
    match delta.signum() {
        1 => format!("+{mag}"),
        -1 => format!("-{mag}"),
        _ => mag,
    }
}

/// One row of the stage table: means in ns (`None`: not measured).
#[derive(Clone, Debug, PartialEq)]
pub struct StageDelta {
    pub stage: String,
    pub a_mean: Option<u64>,
    pub b_mean: Option<u64>,
}

impl StageDelta {
    pub fn delta(&self) -> Option<i128> {
        Some(i128::from(self.b_mean?) - i128::from(self.a_mean?))
    }

    /// B / A (`None` when either is missing or A is zero).
    pub fn ratio(&self) -> Option<f64> {
        let (a, b) = (self.a_mean?, self.b_mean?);
        (a > 0).then(|| b as f64 / a as f64)
    }
}

/// Stage means of both recordings, in [`STAGES`] order.
pub fn stage_deltas(a: &Summary, b: &Summary) -> Vec<StageDelta> {
    let mean = |s: &Summary, name: &str| {
        s.stages
            .get(name)
            .filter(|st| st.count > 0)
            .map(|st| st.mean_ns)
    };
    STAGES
        .iter()
        .map(|s| s.name)
        .chain(KERNEL_FN_STAGES.iter().map(|(n, _)| *n))
        .map(|name| StageDelta {
            stage: name.to_string(),
            a_mean: mean(a, name),
            b_mean: mean(b, name),
        })
        .collect()
}

/// The table `run` returns.
pub fn render_table(a: &Summary, b: &Summary, a_dir: &Path, b_dir: &Path) -> String {
    let rows = stage_deltas(a, b);
    let cells: Vec<[String; 5]> = rows
        .iter()
        .map(|r| {
            let opt = |v: Option<u64>| v.map_or_else(|| "-".into(), format_ns);
            [
                r.stage.clone(),
                opt(r.a_mean),
                opt(r.b_mean),
                r.delta().map_or_else(|| "-".into(), signed_ns),
                r.ratio().map_or_else(|| "-".into(), |x| format!("{x:.2}×")),
            ]
        })
        .collect();
    let header = ["stage", "A mean", "B mean", "delta", "ratio"];
    let mut widths = header.map(|h| h.chars().count());
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "A: {} ({}, {} spawns)",
        a_dir.display(),
        elide(&a.target, SHOWN_COMMAND),
        a.counts.spawns
    );
    let _ = writeln!(
        out,
        "B: {} ({}, {} spawns)",
        b_dir.display(),
        elide(&b.target, SHOWN_COMMAND),
        b.counts.spawns
    );
    let line = |c: [&str; 5], out: &mut String| {
        // Stage name left-aligned, numbers right-aligned (pad by chars:
        // `µ` and `×` are more than one byte).
        let mut s = String::new();
        for (i, (cell, w)) in c.iter().zip(widths).enumerate() {
            let pad = " ".repeat(w - cell.chars().count());
            if i == 0 {
                let _ = write!(s, "{cell}{pad}");
            } else {
                let _ = write!(s, "  {pad}{cell}");
            }
        }
        let _ = writeln!(out, "{}", s.trim_end());
    };
    line(header, &mut out);
    for row in &cells {
        line(
            [&row[0], &row[1], &row[2], &row[3], &row[4]].map(String::as_str),
            &mut out,
        );
    }
    out.push_str(&crate::probe::plan::differences_note(&a.plan, &b.plan));
    out
}

/// Loads recordings `a` and `b`, writes `diff.folded` and `diff.svg` into
/// `out` (created if needed) and returns the stage table.
pub fn run(a: &Path, b: &Path, out: &Path) -> Result<String> {
    let a = load(a).with_context(|| format!("loading recording A ({})", a.display()))?;
    let b = load(b).with_context(|| format!("loading recording B ({})", b.display()))?;
    fs::create_dir_all(out)
        .with_context(|| format!("creating {} (choose a writable -o DIR)", out.display()))?;

    let (fa, fb) = (per_spawn_folded(&a.folder), per_spawn_folded(&b.folder));
    let lines = combine(&fa, &fb)?;
    let folded_path = out.join(DIFF_FOLDED);
    fs::write(&folded_path, lines.join("\n") + "\n")
        .with_context(|| format!("writing {}", folded_path.display()))?;

    let (na, nb) = (a.folder.spawns(), b.folder.spawns());
    let drawn_b = draw(
        &lines,
        &out.join(DIFF_SVG),
        &Labels {
            title: "spawnprof diff: stage time per spawn, A → B (B's stacks)",
            subtitle: format!(
                "widths: B's ns per spawn ({nb} spawns); red: more time per spawn than in A ({na} spawns), blue: less"
            ),
            count_name: "ns per spawn",
            name_type: "Stage:",
        },
        false,
    )?;
    // A differential flamegraph only shows the second profile's stacks:
    // time that went away (a stage or method B no longer has) is
    // invisible in diff.svg. diff-a.svg draws A's stacks with the same
    // colours (B − A), so both sides can be seen.
    let drawn_a = draw(
        &combine(&fb, &fa)?,
        &out.join(DIFF_A_SVG),
        &Labels {
            title: "spawnprof diff: stage time per spawn, A → B (A's stacks)",
            subtitle: format!(
                "widths: A's ns per spawn ({na} spawns); red: more time per spawn in B ({nb} spawns), blue: less"
            ),
            count_name: "ns per spawn",
            name_type: "Stage:",
        },
        true,
    )?;
    let mut table = render_table(&a.summary, &b.summary, &a.dir, &b.dir);
    for (side, s) in [("A", &a.summary), ("B", &b.summary)] {
        if s.unfinished.is_some() {
            let _ = writeln!(
                table,
                "note: spawnprof did not finish recording {side} (it was killed); its figures \
                 were rebuilt from its spawns.jsonl and lack its last second or so"
            );
        }
    }
    for (drawn, file, side) in [(drawn_b, DIFF_SVG, "B"), (drawn_a, DIFF_A_SVG, "A")] {
        if !drawn {
            let _ = writeln!(
                table,
                "(no {file}: recording {side} has no measured spawn stages)"
            );
        }
    }
    Ok(table)
}

/// inferno's differential stacks (`stack first second`), sorted.
pub fn combine(first: &str, second: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    differential::from_readers(
        differential::Options::default(),
        first.as_bytes(),
        second.as_bytes(),
        &mut out,
    )
    .context("combining the two recordings' stage stacks")?;
    let text = String::from_utf8(out).context("differential stacks are not UTF-8")?;
    // inferno writes the stacks in hash order; sort for a stable file.
    let mut lines: Vec<String> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect();
    lines.sort_unstable();
    Ok(lines)
}

/// Draws a differential graph at the second counts' widths; false (and no
/// file, rather than a stale one) when the second side is empty.
pub fn draw(lines: &[String], path: &Path, labels: &Labels<'_>, negate: bool) -> Result<bool> {
    let has_second = lines
        .iter()
        .any(|l| l.rsplit(' ').next().is_some_and(|w| w != "0"));
    if !has_second {
        let _ = fs::remove_file(path);
        return Ok(false);
    }
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    let render = Render {
        factor: 1.0 / SCALE as f64,
        negate_differentials: negate,
    };
    let svg = flamegraph::render_lines(&refs, labels, render)?;
    fs::write(path, svg).with_context(|| format!("writing {}", path.display()))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recording::{read_summary, synthetic::write_synthetic_recording};

    fn temp_dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("spawnprof-diff-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    fn data_rows(table: &str) -> Vec<Vec<String>> {
        table
            .lines()
            .skip(3) // A:, B:, header
            .map(|l| l.split_whitespace().map(str::to_string).collect())
            .collect()
    }

    #[test]
    fn a_recording_diffed_with_itself_is_all_zero() {
        let (a, out) = (temp_dir("self"), temp_dir("self-out"));
        write_synthetic_recording(&a, 2_000, 1).unwrap();
        let table = run(&a, &a, &out).unwrap();
        let rows = data_rows(&table);
        assert_eq!(rows.len(), STAGES.len() + KERNEL_FN_STAGES.len());
        let mut measured = 0;
        for r in &rows {
            let (delta, ratio) = (&r[r.len() - 2], &r[r.len() - 1]);
            if ratio == "-" {
                continue;
            }
            measured += 1;
            assert_eq!(delta, "ns", "{r:?}"); // "0 ns" splits into "0", "ns"
            assert_eq!(r[r.len() - 3], "0", "{r:?}");
            assert_eq!(ratio, "1.00×", "{r:?}");
        }
        assert!(measured >= 12, "{table}");
        // The differential stacks: the same weight on both sides.
        let folded = fs::read_to_string(out.join(DIFF_FOLDED)).unwrap();
        for line in folded.lines() {
            let mut w = line.rsplitn(3, ' ');
            let (b, a) = (w.next().unwrap(), w.next().unwrap());
            assert_eq!(a, b, "{line}");
        }
        let svg = fs::read_to_string(out.join(DIFF_SVG)).unwrap();
        let opt = roxmltree::ParsingOptions {
            allow_dtd: true,
            ..Default::default()
        };
        roxmltree::Document::parse_with_options(&svg, opt).expect("diff.svg is XML");
        for d in [a, out] {
            let _ = fs::remove_dir_all(d);
        }
    }

    #[test]
    fn a_slower_recording_shows_positive_deltas() {
        let (a, b, out) = (temp_dir("a"), temp_dir("b"), temp_dir("ab-out"));
        write_synthetic_recording(&a, 1_000, 1).unwrap();
        write_synthetic_recording(&b, 1_000, 2).unwrap();
        // Make B's exec twice as slow in its summary.
        let mut sb = read_summary(&b).unwrap();
        let a_exec = read_summary(&a).unwrap().stages["exec"].mean_ns;
        sb.stages.get_mut("exec").unwrap().mean_ns = 2 * a_exec;
        crate::recording::write_summary(&b, &sb).unwrap();
        let table = run(&a, &b, &out).unwrap();
        let exec = data_rows(&table)
            .into_iter()
            .find(|r| r[0] == "exec")
            .unwrap();
        assert!(exec[exec.len() - 3].starts_with('+'), "{exec:?}");
        assert_eq!(exec.last().unwrap(), "2.00×");
        for f in [DIFF_SVG, DIFF_A_SVG] {
            let svg = fs::read_to_string(out.join(f)).unwrap();
            assert!(svg.contains("ns per spawn"), "{f}");
        }
        for d in [a, b, out] {
            let _ = fs::remove_dir_all(d);
        }
    }

    #[test]
    fn signed_durations() {
        assert_eq!(signed_ns(0), "0 ns");
        assert_eq!(signed_ns(1500), "+1.5 µs");
        assert_eq!(signed_ns(-850), "-850 ns");
    }
}
