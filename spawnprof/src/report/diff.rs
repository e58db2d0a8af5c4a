//! `spawnprof diff A B`: what changed in spawn time between two recordings
//! (two benches: [`crate::bench::diff`]).
//!
//! Writes `diff.folded` (inferno's differential format: `stack A B`),
//! `diff.svg` (the differential flamegraph: B's widths, red where B is
//! slower than A, blue where faster, white where the change is within the
//! noise) and `diff-a.svg` (the same colours on A's widths, where time that
//! disappeared shows), and returns a table of every stage: the medians and
//! 90th percentiles of both, the change of the median with its bootstrap
//! interval, and the rank test's verdict ([`super::compare`]).
//!
//! Widths are per spawn (each recording's total divided by its number of
//! spawns), so recordings of different lengths compare; stored in
//! picoseconds to keep rare stacks from rounding to zero, shown in ns.
//! Colours follow the rank test on each frame's time per spawn, not the
//! means the widths show: one stall can move a mean tenfold.
use std::{
    collections::HashMap,
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result};
use inferno::differential;

use super::{
    compare::{ALPHA, Comparison, Reservoir, Verdict, percentile, rank_test},
    flamegraph::{self, Labels, Render},
    folded::{self, StageFolder, WEIGHTS},
    stream::{Aggregates, light_key},
    table::Table,
};
use crate::{
    model::{ALL_STAGES, stage_names},
    recording::{
        SPAWNS_FILE, Summary,
        light::{self, LightRecord},
    },
    units::{SHOWN_COMMAND, elide, format_ns},
};

pub const DIFF_FOLDED: &str = "diff.folded";
pub const DIFF_SVG: &str = "diff.svg";
pub const DIFF_A_SVG: &str = "diff-a.svg";

/// Weights are stored ×1000 (ps per spawn); the graph divides back.
const SCALE: u64 = 1000;

/// Values kept per stage for the table, and per frame for the colours.
const STAGE_SAMPLES: usize = 20_000;
const FRAME_SAMPLES: usize = 2_000;

/// A frame of the stage flamegraph: (parent frame, method frame).
type GroupKey = (String, String);

/// Samples of every distribution a diff compares, from one recording.
#[derive(Default)]
struct Samples {
    /// Per stage, in [`stage_names`] order (over non-root spawns).
    stages: Vec<Reservoir>,
    /// Per (parent, method) group: each flame stage's self time per spawn.
    frames: HashMap<GroupKey, Vec<Reservoir>>,
}

impl Samples {
    fn add(&mut self, r: &LightRecord<'_>) {
        if r.root {
            return;
        }
        if self.stages.is_empty() {
            self.stages = (0..ALL_STAGES)
                .map(|i| Reservoir::new(STAGE_SAMPLES, i as u64))
                .collect();
        }
        for (res, v) in self.stages.iter_mut().zip(r.durations.0) {
            if let Some(v) = v {
                res.push(v);
            }
        }
        let key = light_key(r);
        let group = (
            folded::parent_frame(key.parent_comm, key.root),
            folded::method_frame(key.method, key.syscall, key.root),
        );
        let mut own = Vec::with_capacity(WEIGHTS);
        folded::self_times(&r.durations.0, &mut own);
        let frames = self.frames.entry(group).or_insert_with(|| {
            (0..WEIGHTS)
                .map(|i| Reservoir::new(FRAME_SAMPLES, 1_000 + i as u64))
                .collect()
        });
        for (res, v) in frames.iter_mut().zip(own) {
            res.push(v);
        }
    }

    fn merge(&mut self, other: Samples) {
        if self.stages.is_empty() {
            self.stages = other.stages;
        } else {
            for (a, b) in self.stages.iter_mut().zip(other.stages) {
                a.merge(b);
            }
        }
        for (k, v) in other.frames {
            match self.frames.get_mut(&k) {
                Some(mine) => mine.iter_mut().zip(v).for_each(|(a, b)| a.merge(b)),
                None => {
                    self.frames.insert(k, v);
                }
            }
        }
    }

    /// A stage's samples (empty when never measured).
    fn stage(&self, i: usize) -> Reservoir {
        self.stages
            .get(i)
            .cloned()
            .unwrap_or_else(|| Reservoir::new(1, 0))
    }
}

/// One recording, read once: its stage stacks and samples.
#[derive(Default)]
struct Read {
    agg: Aggregates,
    samples: Samples,
}

struct Side {
    dir: PathBuf,
    summary: Summary,
    folder: StageFolder,
    samples: Samples,
}

fn load(dir: &Path) -> Result<Side> {
    // A killed recording's figures, rebuilt from its spawns.
    let summary = crate::recording::recover::summary(dir)?;
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let read = light::fold(
        &dir.join(SPAWNS_FILE),
        workers,
        |acc: &mut Read, r| {
            acc.agg.add_light(r);
            acc.samples.add(r);
        },
        |acc, other| {
            acc.agg.merge(other.agg);
            acc.samples.merge(other.samples);
        },
    )?;
    Ok(Side {
        dir: dir.to_path_buf(),
        summary,
        folder: read.agg.folder,
        samples: read.samples,
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

/// Every stage compared, in [`stage_names`] order.
fn compare_stages(a: &Samples, b: &Samples) -> Vec<(&'static str, Comparison)> {
    stage_names()
        .enumerate()
        .map(|(i, name)| (name, Comparison::of(&a.stage(i), &b.stage(i), i as u64)))
        .collect()
}

/// `+42 µs (+35 µs … +50 µs)`.
fn change_cell(change: Option<(i128, (i128, i128))>) -> String {
    match change {
        Some((d, (lo, hi))) => format!("{} ({} … {})", signed_ns(d), signed_ns(lo), signed_ns(hi)),
        None => "-".into(),
    }
}

/// `slower (p < 0.001)`, `within noise (p 0.43)`.
fn verdict_cell(c: &Comparison) -> String {
    let p = match c.p_value {
        Some(p) if p < 0.001 => "p < 0.001".to_string(),
        Some(p) => format!("p {p:.3}"),
        None => return "-".into(),
    };
    match c.verdict() {
        Verdict::Slower => format!("slower ({p})"),
        Verdict::Faster => format!("faster ({p})"),
        Verdict::WithinNoise => format!("within noise ({p})"),
        Verdict::Untested => "-".into(),
    }
}

/// The stage table `run` returns.
fn render_table(a: &Side, b: &Side, width: Option<usize>) -> String {
    let opt = |v: Option<u64>| v.map_or_else(|| "-".into(), format_ns);
    let mut t = Table::new(&[
        ("stage", false),
        ("A p50", true),
        ("B p50", true),
        ("p50 change (99% interval)", true),
        ("A p90", true),
        ("B p90", true),
        ("p90 change", true),
        ("mean A → B", true),
        ("B against A (rank test)", false),
    ])
    .fit(width);
    for (name, c) in compare_stages(&a.samples, &b.samples) {
        let means = match (c.a_mean, c.b_mean) {
            (None, None) => "-".to_string(),
            (x, y) => format!("{} → {}", opt(x), opt(y)),
        };
        t.rows.push(vec![
            name.to_string(),
            opt(c.a_p50),
            opt(c.b_p50),
            change_cell(c.p50_change),
            opt(c.a_p90),
            opt(c.b_p90),
            c.p90_change
                .map_or_else(|| "-".into(), |(d, _)| signed_ns(d)),
            means,
            verdict_cell(&c),
        ]);
    }
    let mut out = String::new();
    for (side, s) in [("A", a), ("B", b)] {
        let _ = writeln!(
            out,
            "{side}: {} ({}, {} spawns)",
            s.dir.display(),
            elide(&s.summary.target, SHOWN_COMMAND),
            s.summary.counts.spawns
        );
    }
    out.push_str(&t.render());
    let _ = writeln!(
        out,
        "slower/faster: the rank test (Mann-Whitney U) says B's values tend to be larger/smaller \
         than A's (p < {ALPHA}); within noise otherwise. Intervals: bootstrap of the median's \
         change. Means are shown, not judged: one stall moves a mean."
    );
    out.push_str(&crate::probe::plan::differences_note(
        &a.summary.plan,
        &b.summary.plan,
    ));
    out
}

/// Loads recordings `a` and `b`, writes `diff.folded` and `diff.svg` into
/// `out` (created if needed) and returns the stage table, fitted into
/// `width` columns.
pub fn run(a: &Path, b: &Path, out: &Path, width: Option<usize>) -> Result<String> {
    let a = load(a).with_context(|| format!("loading recording A ({})", a.display()))?;
    let b = load(b).with_context(|| format!("loading recording B ({})", b.display()))?;
    fs::create_dir_all(out)
        .with_context(|| format!("creating {} (choose a writable -o DIR)", out.display()))?;

    let (fa, fb) = (per_spawn_folded(&a.folder), per_spawn_folded(&b.folder));
    let noise = FrameChanges::of(&a.samples, &b.samples);
    let lines = noise.recolour(&combine(&fa, &fb)?, false);
    let folded_path = out.join(DIFF_FOLDED);
    fs::write(&folded_path, combine(&fa, &fb)?.join("\n") + "\n")
        .with_context(|| format!("writing {}", folded_path.display()))?;

    let (na, nb) = (a.folder.spawns(), b.folder.spawns());
    let drawn_b = draw(
        &lines,
        &out.join(DIFF_SVG),
        &Labels {
            title: "spawnprof diff: stage time per spawn, A → B (B's stacks)",
            subtitle: format!(
                "widths: B's ns per spawn ({nb} spawns); red: B slower than A ({na} spawns), blue: faster, white: within noise (rank test, p ≥ {ALPHA})"
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
        &noise.recolour(&combine(&fb, &fa)?, true),
        &out.join(DIFF_A_SVG),
        &Labels {
            title: "spawnprof diff: stage time per spawn, A → B (A's stacks)",
            subtitle: format!(
                "widths: A's ns per spawn ({na} spawns); red: B ({nb} spawns) slower, blue: faster, white: within noise (rank test, p ≥ {ALPHA})"
            ),
            count_name: "ns per spawn",
            name_type: "Stage:",
        },
        true,
    )?;
    let mut table = render_table(&a, &b, width);
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

/// Per frame (group and flame stage): B against A by the rank test, and
/// how much its median moved, in ps per spawn.
struct FrameChanges(HashMap<(GroupKey, usize), (Verdict, i128)>);

impl FrameChanges {
    fn of(a: &Samples, b: &Samples) -> Self {
        let mut out = HashMap::new();
        for (key, fa) in &a.frames {
            let Some(fb) = b.frames.get(key) else {
                continue;
            };
            for (i, (ra, rb)) in fa.iter().zip(fb).enumerate() {
                out.insert((key.clone(), i), frame_change(ra, rb));
            }
        }
        Self(out)
    }

    /// Differential lines (`stack first second`) with each frame's colour
    /// set by its verdict: a change within noise becomes no change; a
    /// significant one keeps the width drawn and takes the direction and
    /// size of the median's move (the mean's when the medians tie).
    /// `swapped`: the lines are `stack B A` (diff-a.svg).
    fn recolour(&self, lines: &[String], swapped: bool) -> Vec<String> {
        lines
            .iter()
            .map(|line| {
                let Some((stack, first, second)) = split_differential(line) else {
                    return line.clone();
                };
                let Some(key) = frame_key(stack) else {
                    return line.clone();
                };
                let (b, a) = if swapped {
                    (first, second)
                } else {
                    (second, first)
                };
                let a = match self.0.get(&key) {
                    Some((Verdict::WithinNoise, _)) => b,
                    Some((Verdict::Slower | Verdict::Faster, shift)) if *shift != 0 => {
                        (i128::from(b) - shift).clamp(0, u64::MAX as i128) as u64
                    }
                    _ => a,
                };
                let (first, second) = if swapped { (b, a) } else { (a, b) };
                format!("{stack} {first} {second}")
            })
            .collect()
    }
}

/// A frame's verdict and its median's move (ps per spawn), signed as the
/// verdict says.
fn frame_change(a: &Reservoir, b: &Reservoir) -> (Verdict, i128) {
    let mut sa = a.values().to_vec();
    let mut sb = b.values().to_vec();
    sa.sort_unstable();
    sb.sort_unstable();
    let Some(p) = rank_test(&sa, &sb) else {
        return (Verdict::Untested, 0);
    };
    if p >= ALPHA {
        return (Verdict::WithinNoise, 0);
    }
    let median = |v: &[u64]| i128::from(percentile(v, 0.5).unwrap_or(0));
    let mean = |v: &[u64]| v.iter().map(|&x| i128::from(x)).sum::<i128>() / v.len().max(1) as i128;
    let moved = match median(&sb) - median(&sa) {
        0 => mean(&sb) - mean(&sa),
        d => d,
    };
    let verdict = if moved >= 0 {
        Verdict::Slower
    } else {
        Verdict::Faster
    };
    (verdict, moved * i128::from(SCALE))
}

/// `stack first second` split into its parts.
fn split_differential(line: &str) -> Option<(&str, u64, u64)> {
    let (rest, second) = line.rsplit_once(' ')?;
    let (stack, first) = rest.rsplit_once(' ')?;
    Some((stack, first.parse().ok()?, second.parse().ok()?))
}

/// The group and flame stage a stack ends in: `all spawns;PARENT;METHOD`
/// then the stage path (none: the method frame's own, unsplit time).
fn frame_key(stack: &str) -> Option<(GroupKey, usize)> {
    let mut frames = stack.split(';');
    let _root = frames.next()?;
    let group = (frames.next()?.to_string(), frames.next()?.to_string());
    let index = match frames.next_back() {
        Some(last) => folded::flame_index(last)?,
        None => WEIGHTS - 1,
    };
    Some((group, index))
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
    use crate::{
        model::{SpawnRecord, Timestamps, stage_position},
        recording::{
            SpawnWriter,
            synthetic::{synthetic_summary, write_synthetic_recording},
            write_summary,
        },
    };

    fn temp_dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("spawnprof-diff-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    /// The table's row for `stage`, as whitespace-separated words.
    fn row(table: &str, stage: &str) -> String {
        table
            .lines()
            .find(|l| l.split_whitespace().next() == Some(stage))
            .unwrap_or_else(|| panic!("no {stage} row in\n{table}"))
            .to_string()
    }

    #[test]
    fn a_recording_diffed_with_itself_is_within_noise_everywhere() {
        let (a, out) = (temp_dir("self"), temp_dir("self-out"));
        write_synthetic_recording(&a, 2_000, 1).unwrap();
        let table = run(&a, &a, &out, None).unwrap();
        let mut measured = 0;
        for name in stage_names() {
            let r = row(&table, name);
            if r.contains("within noise") {
                measured += 1;
                // No change, and an interval around it.
                let change = r
                    .split_whitespace()
                    .skip(5)
                    .take(2)
                    .collect::<Vec<_>>()
                    .join(" ");
                assert_eq!(change, "0 ns", "{r}");
            } else {
                assert!(!r.contains("slower") && !r.contains("faster"), "{r}");
            }
        }
        assert!(measured >= 12, "{table}");
        // The differential stacks: the same weight on both sides.
        let folded = fs::read_to_string(out.join(DIFF_FOLDED)).unwrap();
        for line in folded.lines() {
            let (_, first, second) = split_differential(line).unwrap();
            assert_eq!(first, second, "{line}");
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

    /// 20 forks a side: B's dup_mmap is typically 74 µs where A's was 32
    /// µs, but one 17.5 ms stall in A makes A's mean ten times B's.
    fn forks(dup_mmap: impl Fn(u64) -> u64) -> Vec<SpawnRecord> {
        (0..20u64)
            .map(|i| {
                let t = i * 100_000_000;
                let d = dup_mmap(i);
                let mut r = SpawnRecord {
                    parent_comm: Some("bash".into()),
                    child_pid: Some(1_000 + i as u32),
                    method: Some("fork".into()),
                    syscall: Some("clone".into()),
                    exec_path: Some("/bin/true".into()),
                    ts: Timestamps {
                        clone_enter: Some(t),
                        mm_lock_wait: Some(t + 10_000),
                        mm_copy_start: Some(t + 10_500),
                        mm_copy_end: Some(t + 10_000 + d),
                        newtask: Some(t + 20_000 + d),
                        wakeup_new: Some(t + 22_000 + d),
                        clone_exit: Some(t + 24_000 + d),
                        first_run: Some(t + 25_000 + d),
                        exec_first_enter: Some(t + 40_000 + d),
                        exec_enter: Some(t + 40_000 + d),
                        exec_return: Some(t + 100_000 + d),
                        ..Default::default()
                    },
                    ..Default::default()
                };
                r.derive_durations();
                r
            })
            .collect()
    }

    fn write_recording(dir: &Path, records: &[SpawnRecord]) {
        fs::create_dir_all(dir).unwrap();
        let mut w = SpawnWriter::create(dir).unwrap();
        records.iter().for_each(|r| w.write(r));
        w.finish().unwrap();
        let mut acc = crate::analysis::Accumulator::default();
        records.iter().for_each(|r| acc.add(r));
        let mut s = synthetic_summary("bash loop", acc.stage_stats(), acc.counts());
        s.spawn_time = acc.spawn_time();
        write_summary(dir, &s).unwrap();
    }

    #[test]
    fn one_outlier_does_not_make_a_slower_stage_look_faster() {
        let (a, b, out) = (temp_dir("oa"), temp_dir("ob"), temp_dir("o-out"));
        write_recording(
            &a,
            &forks(|i| if i == 7 { 17_500_000 } else { 32_000 + i * 100 }),
        );
        write_recording(&b, &forks(|i| 74_000 + i * 100));
        let table = run(&a, &b, &out, None).unwrap();
        let dup = row(&table, "dup_mmap");
        assert!(dup.contains("slower (p < 0.001)"), "{dup}");
        assert!(dup.contains("+42"), "the median moved about 42 µs: {dup}");
        // Its mean went down tenfold, and the table says so without judging.
        assert!(dup.contains("906 µs → 75 µs"), "{dup}");
        // Unchanged stages are within noise.
        assert!(row(&table, "exec").contains("within noise"), "{table}");
        // diff.svg: the dup_mmap frame is red although its width shrank;
        // the exec frame, unchanged, is white.
        let svg = fs::read_to_string(out.join(DIFF_SVG)).unwrap();
        let fill = |frame: &str| frame_fill(&svg, frame);
        let (r, g, bl) = fill("dup_mmap");
        assert!(
            r == 255 && g < 250 && g == bl,
            "dup_mmap drawn {:?}",
            (r, g, bl)
        );
        assert_eq!(fill("exec"), (250, 250, 250), "within noise: neutral");
        for d in [a, b, out] {
            let _ = fs::remove_dir_all(d);
        }
    }

    /// The fill of the first frame whose hover text starts with `frame (`.
    fn frame_fill(svg: &str, frame: &str) -> (u8, u8, u8) {
        let opt = roxmltree::ParsingOptions {
            allow_dtd: true,
            ..Default::default()
        };
        let doc = roxmltree::Document::parse_with_options(svg, opt).unwrap();
        let g = doc
            .descendants()
            .find(|n| {
                n.has_tag_name("g")
                    && n.children().any(|t| {
                        t.has_tag_name("title")
                            && t.text()
                                .is_some_and(|x| x.starts_with(&format!("{frame} (")))
                    })
            })
            .unwrap_or_else(|| panic!("no {frame} frame"));
        let fill = g
            .children()
            .find(|n| n.has_tag_name("rect"))
            .and_then(|r| r.attribute("fill"))
            .unwrap();
        let nums: Vec<u8> = fill
            .trim_start_matches("rgb(")
            .trim_end_matches(')')
            .split(',')
            .map(|v| v.trim().parse().unwrap())
            .collect();
        (nums[0], nums[1], nums[2])
    }

    #[test]
    fn a_slower_recording_shows_positive_changes() {
        let (a, b, out) = (temp_dir("a"), temp_dir("b"), temp_dir("ab-out"));
        let base: Vec<SpawnRecord> = crate::recording::synthetic::synthesize(1_000, 1).collect();
        let slow: Vec<SpawnRecord> = base
            .iter()
            .map(|r| {
                let mut r = r.clone();
                let exec = stage_position("exec").unwrap();
                r.durations.0[exec] = r.durations.0[exec].map(|v| 2 * v + 10_000);
                r
            })
            .collect();
        write_recording(&a, &base);
        write_recording(&b, &slow);
        let table = run(&a, &b, &out, None).unwrap();
        let exec = row(&table, "exec");
        assert!(exec.contains("slower (p < 0.001)"), "{exec}");
        let change = exec.split_whitespace().nth(5).unwrap();
        assert!(change.starts_with('+'), "{exec}");
        for f in [DIFF_SVG, DIFF_A_SVG] {
            let svg = fs::read_to_string(out.join(f)).unwrap();
            assert!(
                svg.contains("ns per spawn") && svg.contains("within noise"),
                "{f}"
            );
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
