//! Writes every shareable output of a recording into its directory:
//! `stages.folded`, `stages.svg`, `trace.json`, the chart SVGs and
//! `report.html`.
//!
//! Everything is built from the saved data (the [`Summary`] and the spawn
//! records) in one pass over the records that keeps only aggregates: stage
//! stacks, a latency histogram, the first rows of the process table and
//! the trace writer's track names. That is what lets `spawnprof report DIR`
//! stream a million-spawn `spawns.jsonl` instead of loading it.
use std::{
    fs::{self, File},
    io::BufWriter,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result};

use super::unavailable_stages;
use super::{
    charts, flamegraph,
    folded::{self, StageFolder},
    html::{self, Figure, Flame},
    processes::ProcessRow,
    stream::{self, Aggregates},
    trace::{self, TraceWriter},
};
use crate::{
    model::SpawnRecord,
    recording::{SPAWNS_FILE, SUMMARY_FILE, Summary, for_each_record, read_summary},
};

pub const FOLDED_FILE: &str = "stages.folded";
pub const STAGES_SVG: &str = "stages.svg";
/// The on-CPU stack flamegraph, written by another part of spawnprof;
/// embedded in the page when present.
pub const STACKS_SVG: &str = "stacks.svg";
pub const TRACE_FILE: &str = "trace.json";
pub const HTML_FILE: &str = "report.html";
pub const STAGE_CHART: &str = "stage_means.svg";
pub const LATENCY_CHART: &str = "spawn_to_exec_hist.svg";

/// Rows of the per-process table in the page.
pub const PROCESS_ROWS: usize = 200;

/// At most this many categories (spawn methods) in the stage chart.
const CHART_CATEGORIES: usize = 8;

/// The outputs fed by the first records only: trace.json (up to its cap)
/// and the rows of the process table.
pub struct Head {
    trace: TraceWriter<BufWriter<File>>,
    trace_tmp: PathBuf,
    rows: Vec<ProcessRow>,
}

impl Head {
    /// Starts `trace.json` in `dir` (which must exist), under a temporary
    /// name until `finish`, so an interrupted run leaves no half file.
    pub fn create(dir: &Path, trace_cap: u64) -> Result<Self> {
        let trace_tmp = dir.join(format!(".{TRACE_FILE}.partial"));
        let file = File::create(&trace_tmp)
            .with_context(|| format!("creating {}", trace_tmp.display()))?;
        let trace = TraceWriter::new(BufWriter::with_capacity(1 << 20, file), trace_cap)
            .with_context(|| format!("writing {}", trace_tmp.display()))?;
        Ok(Self {
            trace,
            trace_tmp,
            rows: Vec::new(),
        })
    }

    pub fn add(&mut self, r: &SpawnRecord) -> Result<()> {
        if !r.thread && self.rows.len() < PROCESS_ROWS {
            self.rows.push(ProcessRow::of(r));
        }
        self.trace
            .add(r)
            .with_context(|| format!("writing {}", self.trace_tmp.display()))
    }

    /// Later records would change nothing here.
    pub fn is_full(&self) -> bool {
        self.trace.is_full()
    }
}

/// Builds the reports from records fed one at a time (records already in
/// memory; [`write_all_from_recording`] reads a saved one faster).
pub struct ReportBuilder {
    dir: PathBuf,
    agg: Aggregates,
    head: Head,
}

impl ReportBuilder {
    pub fn create(dir: &Path) -> Result<Self> {
        Self::with_trace_cap(dir, trace::DEFAULT_CAP)
    }

    pub fn with_trace_cap(dir: &Path, cap: u64) -> Result<Self> {
        Ok(Self {
            dir: dir.to_path_buf(),
            agg: Aggregates::default(),
            head: Head::create(dir, cap)?,
        })
    }

    pub fn add(&mut self, r: &SpawnRecord) -> Result<()> {
        self.agg.add(r);
        self.head.add(r)
    }

    /// Writes the remaining files; returns every path written.
    pub fn finish(self, summary: &Summary) -> Result<Vec<PathBuf>> {
        finish(&self.dir, summary, self.agg, self.head)
    }
}

/// Writes every file from the aggregates and the head: the stage folded
/// stacks and flamegraph, the charts, trace.json, and last the page that
/// embeds them.
fn finish(dir: &Path, summary: &Summary, agg: Aggregates, head: Head) -> Result<Vec<PathBuf>> {
    let mut out = Written {
        dir,
        paths: Vec::new(),
    };
    out.write(FOLDED_FILE, &agg.folder.to_folded())?;
    let flames = flames(&mut out, &agg.folder)?;
    let figures = figures(&agg, summary);
    for f in &figures {
        out.write(&f.file, &f.svg)?;
    }
    let (_, trace_stats) = head
        .trace
        .finish(summary, Some(agg.records))
        .with_context(|| format!("writing {}", head.trace_tmp.display()))?;
    let trace_path = dir.join(TRACE_FILE);
    fs::rename(&head.trace_tmp, &trace_path)
        .with_context(|| format!("writing {}", trace_path.display()))?;
    out.paths.push(trace_path);

    let page = html::Page {
        summary,
        summary_json: serde_json::to_value(summary).unwrap_or_default(),
        unavailable: unavailable_stages(summary),
        flames,
        figures,
        processes: &head.rows,
        processes_total: agg.processes,
        programs: &agg.programs,
        headline: super::headline::headline(&agg.folder),
        trace: trace_stats,
        files: out.listing(),
    };
    out.write(HTML_FILE, &html::render(&page))?;
    Ok(out.paths)
}

/// The files written into a recording's directory so far.
struct Written<'a> {
    dir: &'a Path,
    paths: Vec<PathBuf>,
}

impl Written<'_> {
    fn write(&mut self, name: &str, text: &str) -> Result<()> {
        let path = self.dir.join(name);
        fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        self.paths.push(path);
        Ok(())
    }

    /// The files the page lists: the recording's own, those written so
    /// far, and the stack flamegraph when there is one.
    fn listing(&self) -> Vec<String> {
        let mut files: Vec<String> = [SUMMARY_FILE, SPAWNS_FILE]
            .iter()
            .map(|s| s.to_string())
            .chain(
                self.paths
                    .iter()
                    .filter_map(|p| p.file_name()?.to_str().map(str::to_string)),
            )
            .collect();
        if self.dir.join(STACKS_SVG).exists() {
            files.push(STACKS_SVG.into());
        }
        files
    }
}

/// The stage flamegraph (or why it is missing), and the stack flamegraph
/// when the recording has one.
fn flames(out: &mut Written<'_>, folder: &StageFolder) -> Result<Vec<Flame>> {
    let mut flames = Vec::new();
    match flamegraph::stages_svg(folder) {
        Ok(svg) => {
            out.write(STAGES_SVG, &svg)?;
            flames.push(Flame::Svg {
                file: STAGES_SVG.into(),
                svg,
            });
        }
        Err(e) => {
            // An empty recording still gets its page; say why the picture
            // is missing instead of failing the whole report.
            let _ = fs::remove_file(out.dir.join(STAGES_SVG));
            flames.push(Flame::Missing {
                file: STAGES_SVG.into(),
                why: format!("{e:#}"),
            });
        }
    }
    let stacks = out.dir.join(STACKS_SVG);
    if stacks.exists() {
        match fs::read_to_string(&stacks) {
            Ok(svg) => flames.push(Flame::Svg {
                file: STACKS_SVG.into(),
                svg,
            }),
            Err(e) => flames.push(Flame::Missing {
                file: STACKS_SVG.into(),
                why: format!("cannot read it: {e}"),
            }),
        }
    }
    Ok(flames)
}

/// The two charts of the page, with their captions.
fn figures(agg: &Aggregates, summary: &Summary) -> Vec<Figure> {
    vec![
        Figure {
            file: STAGE_CHART.into(),
            caption: "Mean time per spawn in each stage from the parent's clone entry to the child's exec (its first run when it never execs), by spawn method, each nanosecond once: stages with sub-stages count only their own time, so a bar is the mean spawn time. The parent's return runs alongside the child (fork) or waits for its exec (vfork) and is not stacked again.".into(),
            svg: stage_chart(&agg.folder),
        },
        Figure {
            file: LATENCY_CHART.into(),
            caption: "How long spawns took from clone entry to the child's successful exec (spawn_to_exec), on a log scale, with the recording's p50 and p99.".into(),
            svg: latency_chart(&agg.spawn_to_exec, summary),
        },
    ]
}

/// Mean time per spawn of each node of the spawn-time tree, per spawn
/// method (the busiest methods first): the same nanoseconds as the stage
/// flamegraph, so the bars add up to each method's mean spawn time. The
/// root command is left out: spawnprof forks it and holds it before its
/// exec, which is not the target's spawn cost.
fn stage_chart(folder: &StageFolder) -> String {
    let mut by_method: Vec<(String, u64, Vec<f64>)> = Vec::new();
    for (_, method, g) in folder.groups() {
        if method == "root command" {
            continue;
        }
        let pos = match by_method.iter().position(|m| m.0 == method) {
            Some(p) => p,
            None => {
                by_method.push((method, 0, vec![0.0; folded::WEIGHTS]));
                by_method.len() - 1
            }
        };
        let m = &mut by_method[pos];
        m.1 += g.spawns;
        for (sum, &ns) in m.2.iter_mut().zip(&g.self_ns) {
            *sum += ns as f64;
        }
    }
    by_method.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    by_method.truncate(CHART_CATEGORIES);
    // Stages never seen in this recording stay out of the legend.
    let keep: Vec<usize> = (0..folded::WEIGHTS)
        .filter(|&k| by_method.iter().any(|m| m.2[k] > 0.0))
        .collect();
    let frames = folded::flame_stages();
    let label = |k: usize| match frames.get(k) {
        Some(f) if f.children.is_empty() => f.name.to_string(),
        Some(f) => format!("{} (own)", f.name),
        None => "(not split by a probe)".to_string(),
    };
    let names: Vec<String> = keep.iter().map(|&k| label(k)).collect();
    let colors: Vec<&str> = keep
        .iter()
        .map(|&k| {
            frames
                .get(k)
                .and_then(|f| charts::stage_color(f.name))
                .unwrap_or("#bdbdbd")
        })
        .collect();
    let cats: Vec<String> = by_method
        .iter()
        .map(|m| format!("{} ×{}", m.0, m.1))
        .collect();
    let values: Vec<Vec<f64>> = by_method
        .iter()
        .map(|m| keep.iter().map(|&k| m.2[k] / m.1.max(1) as f64).collect())
        .collect();
    charts::stacked_bars_colored(
        "Where spawn time goes",
        &charts::Axis::new("mean time per spawn", charts::Unit::Nanos),
        &cats,
        &names,
        &colors,
        &values,
    )
}

fn latency_chart(h: &charts::LogHistogram, summary: &Summary) -> String {
    let mut markers = Vec::new();
    if let Some(s) = summary.stages.get("spawn_to_exec").filter(|s| s.count > 0) {
        markers.push(("p50", s.p50_ns as f64));
        markers.push(("p99", s.p99_ns as f64));
    }
    charts::histogram(
        &format!("spawn_to_exec latency ({} spawns)", h.total()),
        &charts::Axis::new("clone entry → exec return", charts::Unit::Nanos).log(),
        &h.bins(),
        &markers,
    )
}

/// Writes every output for records already in memory (the end of
/// `spawnprof record`).
pub fn write_all(dir: &Path, summary: &Summary, records: &[SpawnRecord]) -> Result<Vec<PathBuf>> {
    let mut b = ReportBuilder::create(dir)?;
    for r in records {
        b.add(r)?;
    }
    b.finish(summary)
}

/// Threads for parsing: every core.
fn workers() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// Rebuilds every output of a saved recording (`spawnprof report DIR`)
/// without loading it: one thread parses the head of `spawns.jsonl` in
/// full for trace.json and the process table while the others aggregate
/// the whole file (see [`stream`]).
pub fn write_all_from_recording(dir: &Path) -> Result<Vec<PathBuf>> {
    let summary = read_summary(dir)?;
    let mut head = Head::create(dir, trace::DEFAULT_CAP)?;
    let (head_result, agg) = std::thread::scope(|s| {
        let head_thread = s.spawn(|| {
            for_each_record(dir, |r| {
                head.add(r)?;
                Ok(!head.is_full())
            })
        });
        let agg = stream::aggregate_file(&dir.join(SPAWNS_FILE), workers());
        let head_result = head_thread
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the trace.json writer panicked")));
        (head_result, agg)
    });
    let agg = agg?;
    head_result?;
    finish(dir, &summary, agg, head)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        analysis,
        model::{KernelFnTimes, Timestamps},
        recording::synthetic::{synthesize, synthetic_summary},
        sys::node::NodeFacts,
    };

    fn temp_dir(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("spawnprof-export-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn summary_of(records: &[SpawnRecord]) -> Summary {
        let mut acc = analysis::Accumulator::default();
        records.iter().for_each(|r| acc.add(r));
        let mut s = synthetic_summary(
            "test <target> & \"quotes\"",
            acc.stage_stats(),
            acc.counts(),
        );
        s.spawn_time = acc.spawn_time();
        s
    }

    /// Forks of a process with 1 GiB of touched memory: copying its page
    /// tables (dup_mmap) is nearly all of the clone.
    fn fork_at_1gib(n: u64) -> Vec<SpawnRecord> {
        (0..n)
            .map(|i| {
                let t = i * 100_000_000;
                let mut r = SpawnRecord {
                    parent_pid: Some(10),
                    parent_tid: Some(10),
                    parent_comm: Some("bigheap".into()),
                    child_pid: Some(100 + i as u32),
                    method: Some("fork".into()),
                    syscall: Some("clone".into()),
                    ts: Timestamps {
                        clone_enter: Some(t),
                        copy_process_enter: Some(t + 2_000),
                        dup_mmap_enter: Some(t + 30_000),
                        mm_lock_wait: Some(t + 30_000),
                        mm_copy_start: Some(t + 31_000),
                        mm_copy_end: Some(t + 24_000_000),
                        dup_mmap_exit: Some(t + 24_001_000),
                        copy_process_exit: Some(t + 24_050_000),
                        newtask: Some(t + 24_050_000),
                        wakeup_new: Some(t + 24_060_000),
                        clone_exit: Some(t + 24_080_000),
                        first_run: Some(t + 24_070_000),
                        exec_first_enter: Some(t + 24_200_000),
                        exec_enter: Some(t + 24_200_000),
                        exec_prepare: Some(t + 24_300_000),
                        exec_done: Some(t + 24_900_000),
                        exec_return: Some(t + 24_950_000),
                        exit: Some(t + 30_000_000),
                        ..Default::default()
                    },
                    kernel_fn: Some(KernelFnTimes {
                        copy_page_range_ns: 21_000_000,
                        copy_page_range_calls: 300,
                        anon_vma_fork_ns: 1_500_000,
                        anon_vma_fork_calls: 120,
                    }),
                    ..Default::default()
                };
                r.derive_durations();
                r
            })
            .collect()
    }

    fn folded_lines(dir: &Path) -> Vec<(Vec<String>, u64)> {
        fs::read_to_string(dir.join(FOLDED_FILE))
            .unwrap()
            .lines()
            .map(|l| {
                let (stack, w) = l.rsplit_once(' ').expect("`frames count`");
                let frames = stack.split(';').map(str::to_string).collect();
                (frames, w.parse().expect("an integer count"))
            })
            .collect()
    }

    #[test]
    fn dup_mmap_dominates_a_fork_of_a_big_process() {
        let recs = fork_at_1gib(20);
        let dir = temp_dir("fork1g");
        write_all(&dir, &summary_of(&recs), &recs).unwrap();
        let lines = folded_lines(&dir);
        assert!(!lines.is_empty());
        let under = |frame: &str| -> u64 {
            lines
                .iter()
                .filter(|(f, _)| f.iter().any(|x| x == frame))
                .map(|(_, w)| w)
                .sum()
        };
        let all: u64 = lines.iter().map(|(_, w)| w).sum();
        let dup_mmap = under("dup_mmap");
        assert!(
            dup_mmap as f64 > 0.9 * all as f64,
            "dup_mmap {dup_mmap} of all spawn time {all}"
        );
        assert_eq!(all, 20 * 24_950_000, "clone entry to exec return, once");
        // Weights are nanoseconds: dup_mmap's frame is exactly its total.
        assert_eq!(dup_mmap, 20 * 23_971_000);
        for (frames, _) in &lines {
            assert_eq!(frames[..3], ["all spawns", "bigheap", "fork (clone)"]);
        }
        assert!(lines.iter().any(|(f, _)| f.ends_with(&[
            "copy_process".to_string(),
            "dup_mmap".into(),
            "copy_page_range".into()
        ])));
        let svg = fs::read_to_string(dir.join(STAGES_SVG)).unwrap();
        let doc = xml(&svg, "stages.svg is XML");
        let titles: Vec<&str> = doc
            .descendants()
            .filter(|n| n.tag_name().name() == "title")
            .filter_map(|n| n.text())
            .collect();
        assert!(
            titles
                .iter()
                .any(|t| t.starts_with("dup_mmap (479,420,000 ns")),
            "{titles:?}"
        );
        assert!(svg.contains("(or first run), each ns once"));
        let _ = fs::remove_dir_all(&dir);
    }

    /// Parses XML that may carry a DTD (the flamegraph SVGs do).
    fn xml<'a>(text: &'a str, what: &str) -> roxmltree::Document<'a> {
        let opt = roxmltree::ParsingOptions {
            allow_dtd: true,
            ..Default::default()
        };
        roxmltree::Document::parse_with_options(text, opt).expect(what)
    }

    #[test]
    fn the_page_is_self_contained_escaped_and_complete() {
        let (dir, summary, written) = a_page_with_hostile_strings();
        for name in [
            FOLDED_FILE,
            STAGES_SVG,
            TRACE_FILE,
            HTML_FILE,
            STAGE_CHART,
            LATENCY_CHART,
        ] {
            assert!(written.contains(&dir.join(name)), "{name} written");
        }
        let html = fs::read_to_string(dir.join(HTML_FILE)).unwrap();
        assert_escaped_and_offline(&html);
        let doc = xml(&html, "well-formed page");
        assert_tables(&doc, &summary);
        assert_pictures(&doc);
        let _ = fs::remove_dir_all(&dir);
    }

    /// Writes every output of 500 synthetic spawns, some strings in them
    /// and in the summary hostile to HTML, with a stacks.svg beside them:
    /// (the directory, the summary, the paths written).
    fn a_page_with_hostile_strings() -> (PathBuf, Summary, Vec<PathBuf>) {
        let mut recs: Vec<SpawnRecord> = synthesize(500, 5).collect();
        let evil = "<script>alert('x')</script>&\"";
        recs[3].parent_comm = Some(evil.into());
        recs[3].thread = false;
        recs[3].exec_path = Some(format!("/tmp/{evil}"));
        let mut summary = summary_of(&recs);
        summary.node = Some(NodeFacts::collect());
        summary.plan[0].rejected[0].reason = evil.into();
        let dir = temp_dir("html");
        fs::write(
            dir.join(STACKS_SVG),
            flamegraph::stages_svg(&{
                let mut f = StageFolder::new();
                recs.iter().for_each(|r| f.add(r));
                f
            })
            .unwrap(),
        )
        .unwrap();
        let written = write_all(&dir, &summary, &recs).unwrap();
        (dir, summary, written)
    }

    /// No script but the page's own sorting one, no outside resource, and
    /// the hostile comm shown as text.
    fn assert_escaped_and_offline(html: &str) {
        assert_eq!(
            html.matches("<script").count(),
            1,
            "only the table-sorting script, and the evil comm is escaped"
        );
        assert!(html.contains(super::super::sortable::SCRIPT));
        assert!(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;"));
        for external in ["http://", "https://", "src=\"/", "<link", "@import", "url("] {
            let outside_svg_ns = html.replace("http://www.w3.org/2000/svg", "");
            assert!(
                !outside_svg_ns.contains(external),
                "no external resource: {external}"
            );
        }
    }

    fn by_id<'a, 'i>(
        doc: &'a roxmltree::Document<'i>,
        id: &str,
    ) -> Option<roxmltree::Node<'a, 'i>> {
        doc.descendants().find(|n| n.attribute("id") == Some(id))
    }

    /// Every table, the plan's rows, the process table capped, the node's facts.
    fn assert_tables(doc: &roxmltree::Document<'_>, summary: &Summary) {
        for id in [
            "plan-table",
            "breakdown-table",
            "process-table",
            "node-table",
        ] {
            assert!(by_id(doc, id).is_some(), "#{id}");
        }
        let rows = |id: &str| {
            by_id(doc, id)
                .unwrap()
                .descendants()
                .filter(|n| n.tag_name().name() == "tr")
                .count()
        };
        assert_eq!(rows("plan-table"), summary.plan.len() + 1);
        // One block per program, every process counted in one of them;
        // processes listed one by one only from the first PROCESS_ROWS.
        let table = by_id(doc, "process-table").unwrap();
        let groups: Vec<_> = table
            .children()
            .filter(|n| n.attribute("class") == Some("group"))
            .collect();
        assert!(groups.len() > 1, "several programs");
        let counted: u64 = groups
            .iter()
            .map(|g| {
                let head = g.children().find(|n| n.has_tag_name("tr")).unwrap();
                let cells: Vec<_> = head.children().filter(|n| n.has_tag_name("td")).collect();
                cells[1]
                    .attribute("data-v")
                    .unwrap()
                    .parse::<u64>()
                    .unwrap()
            })
            .sum();
        assert_eq!(
            counted,
            summary.counts.processes(),
            "every process in a group"
        );
        let members = table
            .descendants()
            .filter(|n| n.attribute("class") == Some("members") && n.has_tag_name("table"))
            .flat_map(|t| t.descendants().filter(|n| n.has_tag_name("tr")).skip(1))
            .count();
        assert!(members > 0 && members <= PROCESS_ROWS, "{members} listed");
        let html = doc.input_text();
        assert!(html.contains(&format!("among the first {PROCESS_ROWS} of")));
        let node_text: String = by_id(doc, "node-table")
            .unwrap()
            .descendants()
            .filter_map(|n| n.text())
            .collect();
        assert!(node_text.contains("glibc_version"));
    }

    /// Both flamegraphs embedded as data, both charts inline.
    fn assert_pictures(doc: &roxmltree::Document<'_>) {
        let frames: Vec<_> = doc
            .descendants()
            .filter(|n| n.tag_name().name() == "iframe")
            .collect();
        assert_eq!(frames.len(), 2, "stages.svg and stacks.svg");
        for f in frames {
            let src = f.attribute("src").unwrap();
            assert!(src.starts_with("data:image/svg+xml;base64,"));
        }
        let inline_svgs = doc
            .descendants()
            .filter(|n| n.tag_name().name() == "svg")
            .count();
        assert_eq!(inline_svgs, 2, "the two charts");
    }

    #[test]
    fn rendering_from_disk_matches_rendering_from_memory() {
        let recs: Vec<SpawnRecord> = synthesize(3_000, 9).collect();
        let summary = summary_of(&recs);
        let (a, b) = (temp_dir("mem"), temp_dir("disk"));
        write_all(&a, &summary, &recs).unwrap();
        let mut w = crate::recording::SpawnWriter::create(&b).unwrap();
        recs.iter().for_each(|r| w.write(r));
        w.finish().unwrap();
        crate::recording::write_summary(&b, &summary).unwrap();
        write_all_from_recording(&b).unwrap();
        for name in [
            FOLDED_FILE,
            STAGES_SVG,
            TRACE_FILE,
            STAGE_CHART,
            LATENCY_CHART,
        ] {
            assert_eq!(
                fs::read(a.join(name)).unwrap(),
                fs::read(b.join(name)).unwrap(),
                "{name}"
            );
        }
        for d in [a, b] {
            let _ = fs::remove_dir_all(d);
        }
    }

    #[test]
    fn an_empty_recording_still_gets_a_page() {
        let dir = temp_dir("empty");
        let written = write_all(&dir, &summary_of(&[]), &[]).unwrap();
        assert!(!dir.join(STAGES_SVG).exists());
        assert!(written.contains(&dir.join(HTML_FILE)));
        let html = fs::read_to_string(dir.join(HTML_FILE)).unwrap();
        assert!(html.contains("nothing to draw"));
        let trace: serde_json::Value =
            serde_json::from_slice(&fs::read(dir.join(TRACE_FILE)).unwrap()).unwrap();
        assert_eq!(trace["traceEvents"].as_array().map(Vec::len), Some(0));
        let _ = fs::remove_dir_all(&dir);
    }
}
