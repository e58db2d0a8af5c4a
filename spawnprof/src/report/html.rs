//! `report.html`: one self-contained page to put in front of people. No
//! network at all: CSS inline, charts as inline SVG, flamegraphs as
//! `data:` URLs in frames (so their own scripts keep search and zoom), no
//! external scripts or fonts. Everything taken from a recording (commands,
//! paths, probe errors) is escaped.
//!
//! The markup is kept well-formed XML as well as HTML (closed tags, only
//! XML entities, no `<` `>` `&` in the CSS), so tests can parse it.
use std::fmt::Write as _;

use super::{Summary, charts::escape, trace::TraceStats};
use crate::units::{format_bytes, format_ns};

/// A chart with the sentence that says how to read it.
pub struct Figure {
    pub file: String,
    pub caption: String,
    pub svg: String,
}

/// A flamegraph to embed, or why there is none.
pub enum Flame {
    Svg { file: String, svg: String },
    Missing { file: String, why: String },
}

/// Everything the page shows.
pub struct Page<'a> {
    pub summary: &'a Summary,
    /// The summary as JSON, to pick up fields this version does not know
    /// by name (the node facts are printed generically if present).
    pub summary_json: serde_json::Value,
    pub unavailable: Vec<super::Unmeasured>,
    pub flames: Vec<Flame>,
    pub figures: Vec<Figure>,
    pub processes: &'a [super::processes::ProcessRow],
    pub processes_total: u64,
    /// Every process, by the program it exec'd.
    pub programs: &'a super::stream::Programs,
    /// One sentence of what dominates the spawn time, for the top.
    pub headline: Option<String>,
    pub trace: TraceStats,
    pub files: Vec<String>,
}

const CSS: &str = r#"
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; color: #1d232a; background: #f4f5f7; }
header { background: #1f2d3d; color: #fff; padding: 18px 28px 16px; }
header h1 { margin: 0 0 4px; font-size: 21px; font-weight: 650; }
header .target { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; font-size: 13px; opacity: 0.92; word-break: break-all; }
nav { margin-top: 10px; font-size: 13px; }
nav a { color: #bcd6f5; margin-right: 14px; text-decoration: none; }
main { padding: 4px 28px 40px; max-width: 1480px; }
section { background: #fff; border: 1px solid #e1e4e8; border-radius: 8px; padding: 14px 18px; margin: 16px 0; overflow-x: auto; }
section.warn { background: #fff6e8; border-color: #f0c070; }
h2 { font-size: 16px; margin: 0 0 10px; }
p { margin: 6px 0; }
.note { color: #59636e; font-size: 12.5px; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { padding: 4px 8px; border-bottom: 1px solid #eceef1; text-align: left; vertical-align: top; }
#process-table td { white-space: nowrap; }
#process-table td.path { white-space: normal; }
#node-table th { width: 240px; }
th { background: #f0f2f5; font-weight: 600; white-space: nowrap; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tbody tr:nth-child(even) { background: #fafbfc; }
td.path, td.mono { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 12px; word-break: break-all; }
.facts { display: grid; grid-template-columns: repeat(auto-fill, minmax(190px, 1fr)); gap: 10px 20px; }
.fact .k { color: #59636e; font-size: 12px; }
.fact .v { font-weight: 600; word-break: break-word; }
.mech { display: inline-block; padding: 0 7px; border-radius: 9px; font-size: 12px; font-weight: 600; background: #e8eaed; }
.mech-fentry { background: #d9f2dc; color: #1e6b2a; }
.mech-kprobe { background: #dcebfb; color: #1b4f8a; }
.mech-raw_tracepoint { background: #ede1f7; color: #5b2d83; }
.mech-tracepoint { background: #fff0cc; color: #7a5300; }
.mech-unavailable { background: #f9dcdc; color: #8a1f1f; }
ul.rej { margin: 0; padding-left: 16px; color: #7a4a00; font-size: 12px; }
.share { display: inline-block; height: 9px; background: #4e79a7; border-radius: 2px; vertical-align: middle; margin-right: 6px; }
.swatch { display: inline-block; width: 9px; height: 9px; border-radius: 2px; margin-right: 6px; vertical-align: middle; }
.figs { display: flex; flex-wrap: wrap; gap: 18px; }
figure { margin: 0; max-width: 100%; }
figure svg { max-width: 100%; height: auto; }
figcaption { font-size: 12.5px; color: #59636e; max-width: 760px; margin-top: 4px; }
iframe.flame { display: block; width: 100%; border: 1px solid #e1e4e8; border-radius: 4px; background: #fff; }
code { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 12.5px; }
p.headline { margin: 16px 0 0; padding: 12px 18px; background: #fff; border: 1px solid #e1e4e8; border-left: 5px solid #e8743b; border-radius: 8px; font-size: 16px; font-weight: 600; }
ul.findings { margin: 10px 0 0; padding: 10px 18px 10px 36px; background: #fff; border: 1px solid #e1e4e8; border-left: 5px solid #d4a72c; border-radius: 8px; font-size: 14px; }
ul.findings li { margin: 4px 0; }
details summary { cursor: pointer; }
details summary h2 { display: inline; }
"#;

fn num_cell(out: &mut String, v: &str) {
    let _ = write!(out, r#"<td class="num">{}</td>"#, escape(v));
}

fn cell(out: &mut String, v: &str) {
    let _ = write!(out, "<td>{}</td>", escape(v));
}

fn header_row(out: &mut String, cols: &[(&str, bool)]) {
    out.push_str("<thead><tr>");
    for (name, num) in cols {
        if *num {
            let _ = write!(out, r#"<th class="num">{}</th>"#, escape(name));
        } else {
            let _ = write!(out, "<th>{}</th>", escape(name));
        }
    }
    out.push_str("</tr></thead>");
}

/// `2026-01-01 00:00:00 UTC` from Unix seconds (civil-from-days, so no
/// date crate is needed).
pub fn utc(unix_s: u64) -> String {
    let days = (unix_s / 86_400) as i64;
    let secs = unix_s % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + (m <= 2) as i64;
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

fn facts(out: &mut String, s: &Summary) {
    let c = &s.counts;
    let mut items: Vec<(&str, String)> = vec![
        ("kernel", s.kernel.clone()),
        ("started", utc(s.start_unix_s)),
        ("duration", format_ns(s.duration_ns)),
        (
            "exit code",
            s.exit_code.map_or("-".into(), |c| c.to_string()),
        ),
        ("spawns", c.spawns.to_string()),
        ("threads", c.threads.to_string()),
        ("execs", format!("{}{}", c.execs, c.re_execs_note())),
        ("failed exec attempts", c.failed_exec_attempts.to_string()),
        ("incomplete records", c.incomplete.to_string()),
        ("lost spawns", s.lost_spawns.to_string()),
        ("spawnprof", s.spawnprof_version.clone()),
    ];
    if !c.by_method.is_empty() {
        let methods: Vec<String> = c
            .by_method
            .iter()
            .map(|(m, n)| format!("{m} {n}"))
            .collect();
        items.push(("spawns by method", methods.join(", ")));
    }
    if let Some(p) = &s.placement {
        let mut v = format!("{} of {}", p.other_cpu, p.known);
        let (same, other) = (&p.sched_delay_same_cpu, &p.sched_delay_other_cpu);
        if same.count > 0 && other.count > 0 {
            let _ = write!(
                v,
                " (wait to first run, p50: {} there, {} on the parent's CPU)",
                format_ns(other.p50_ns),
                format_ns(same.p50_ns)
            );
        }
        items.push(("children started on another CPU", v));
    }
    out.push_str(r#"<div class="facts">"#);
    for (k, v) in items {
        let _ = write!(
            out,
            r#"<div class="fact"><div class="k">{}</div><div class="v">{}</div></div>"#,
            escape(k),
            escape(&v)
        );
    }
    out.push_str("</div>");
}

/// What the recording could not keep, in a sentence, when it lost anything.
pub fn lost_note(s: &Summary) -> Option<String> {
    let n = |k: &str| s.lost.get(k).copied().unwrap_or(0);
    let mut parts = Vec::new();
    if s.lost_spawns > 0 {
        let why: Vec<String> = ["spawn_no_room", "spawn_ring_full", "spawn_overwritten"]
            .iter()
            .filter(|k| n(k) > 0)
            .map(|k| format!("{k}: {}", n(k)))
            .collect();
        parts.push(format!(
            "{} spawns have no record ({}): the kernel had no room to keep them",
            s.lost_spawns,
            why.join(", ")
        ));
    }
    if n("clone_no_room") > 0 {
        parts.push(format!(
            "{} clones were not followed from their entry (too many at once): their spawns lack \
             the parent's side",
            n("clone_no_room")
        ));
    }
    if n("exec_ring_full") > 0 {
        parts.push(format!(
            "{} exec attempt records did not fit in the ring buffer (their spawns say so in \
             `incomplete`)",
            n("exec_ring_full")
        ));
    }
    if n("text_ring_full") > 0 {
        parts.push(format!(
            "{} captures or exec notices did not fit in the ring buffer (captured arguments are \
             missing there, and stacks sampled in those processes may lack user symbols)",
            n("text_ring_full")
        ));
    }
    (!parts.is_empty()).then(|| {
        format!(
            "{}. Record again with a larger --ring-buffer.",
            parts.join("; ")
        )
    })
}

fn warnings(out: &mut String, s: &Summary) {
    let mut w = Vec::new();
    if s.interrupted {
        w.push("The recording was interrupted (Ctrl-C/SIGTERM); everything recorded until then is here.".to_string());
    }
    if let Some(why) = &s.unfinished {
        w.push(why.clone());
    }
    if let Some(lost) = lost_note(s) {
        w.push(lost);
    }
    if !s.schema_ok() {
        w.push(format!(
            "summary.json has schema version {}; this spawnprof reads version {}. Some fields may be missing.",
            s.schema_version,
            crate::recording::SCHEMA_VERSION
        ));
    }
    if w.is_empty() {
        return;
    }
    out.push_str(r#"<section class="warn" id="warnings"><h2>Warnings</h2>"#);
    for line in w {
        let _ = write!(out, "<p>{}</p>", escape(&line));
    }
    out.push_str("</section>");
}

/// The node facts, if the summary carries them (`"node": {...}`): printed
/// generically so new fields show up without a change here.
fn node(out: &mut String, json: &serde_json::Value) {
    let Some(node) = json.get("node").and_then(|n| n.as_object()) else {
        return;
    };
    let brief: Vec<String> = ["hostname", "kernel_release", "cpus_online", "thp_enabled"]
        .iter()
        .filter_map(|k| match node.get(*k)? {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Number(n) if *k == "cpus_online" => Some(format!("{n} CPUs")),
            _ => None,
        })
        .collect();
    let _ = write!(
        out,
        r#"<section id="node"><details><summary><h2>Node</h2> <span class="note">{}; click for every fact</span></summary><table id="node-table"><tbody>"#,
        escape(&brief.join(", "))
    );
    for (k, v) in node {
        let v = match v {
            serde_json::Value::Null => "-".to_string(),
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Number(n) if k == "mem_total" || k.ends_with("_bytes") => n
                .as_u64()
                .map_or_else(|| n.to_string(), |b| format!("{} ({b})", format_bytes(b))),
            other => other.to_string(),
        };
        let _ = write!(
            out,
            r#"<tr><th>{}</th><td class="mono">{}</td></tr>"#,
            escape(k),
            escape(&v)
        );
    }
    out.push_str("</tbody></table></details></section>");
}

fn plan(out: &mut String, s: &Summary) {
    out.push_str(r#"<section id="plan"><h2>Attach plan</h2><p class="note">How each stage was observed on this kernel, and why a more precise mechanism was not used.</p><table id="plan-table">"#);
    header_row(
        out,
        &[
            ("stage", false),
            ("mechanism", false),
            ("how", false),
            ("rejected", false),
        ],
    );
    out.push_str("<tbody>");
    for row in &s.plan {
        let mech = row.mechanism.to_string();
        let _ = write!(
            out,
            r#"<tr><td><code>{}</code></td><td><span class="mech mech-{}">{}</span></td><td>{}"#,
            escape(&row.stage),
            escape(&mech),
            escape(&mech),
            escape(&row.how)
        );
        if !row.targets.is_empty() {
            let _ = write!(
                out,
                r#"<div class="note"><code>{}</code></div>"#,
                escape(&row.targets.join(", "))
            );
        }
        out.push_str("</td><td>");
        if !row.rejected.is_empty() {
            out.push_str(r#"<ul class="rej">"#);
            for r in &row.rejected {
                let _ = write!(
                    out,
                    "<li><b>{}</b>: {}</li>",
                    escape(&r.mechanism.to_string()),
                    escape(&r.reason)
                );
            }
            out.push_str("</ul>");
        }
        out.push_str("</td></tr>");
    }
    if s.plan.is_empty() {
        out.push_str(r#"<tr><td colspan="4">no plan recorded</td></tr>"#);
    }
    out.push_str("</tbody></table></section>");
}

fn breakdown(out: &mut String, s: &Summary, unavailable: &[super::Unmeasured]) {
    let vfork = s.counts.by_method.contains_key("vfork");
    let b = super::breakdown::breakdown(&s.stages, s.spawn_time.as_ref(), unavailable, vfork);
    out.push_str(r#"<section id="breakdown"><h2>Stage breakdown</h2>"#);
    if b.is_empty() {
        out.push_str(r#"<p class="note">No spawn was recorded, so there is no stage breakdown.</p></section>"#);
        return;
    }
    if !b.tree.is_empty() {
        out.push_str(r#"<p class="note">Spawn time, from the parent's clone entry to the child's exec (or its first run, without one), each nanosecond once: the stages follow one another, sub-stages add up to their stage, and share is of all spawn time. Count, mean and percentiles are each stage's own, over the spawns that measured it.</p>"#);
        breakdown_table(out, "breakdown-table", &b.tree);
    }
    out.push_str(r#"<p class="note">Overlapping the spawn time: the parent's call, and the time after the exec.</p>"#);
    breakdown_table(out, "overlap-table", &b.overlapping);
    if let Some(note) = &b.vfork_note {
        let _ = write!(out, r#"<p class="note">{}.</p>"#, escape(note));
    }
    out.push_str("</section>");
}

fn breakdown_table(out: &mut String, id: &str, rows: &[super::breakdown::Row]) {
    let _ = write!(out, r#"<table id="{id}">"#);
    header_row(
        out,
        &[
            ("stage", false),
            ("count", true),
            ("mean", true),
            ("p50", true),
            ("p99", true),
            ("time", true),
            ("share", true),
            ("note", false),
        ],
    );
    out.push_str("<tbody>");
    for r in rows {
        let color = super::charts::stage_color(&r.label).unwrap_or("transparent");
        let _ = write!(
            out,
            r#"<tr><td style="padding-left: {}px" title="{}"><span class="swatch" style="background: {color}"></span><code>{}</code></td>"#,
            8 + 18 * r.depth,
            escape(&r.what),
            escape(&r.label)
        );
        match &r.stats {
            Some(st) => {
                num_cell(out, &st.count.to_string());
                for v in [st.mean_ns, st.p50_ns, st.p99_ns] {
                    num_cell(out, &format_ns(v));
                }
            }
            None if r.time.is_some() => (0..4).for_each(|_| num_cell(out, "")),
            None => {
                num_cell(out, "0");
                (0..3).for_each(|_| num_cell(out, "-"));
            }
        }
        match r.time {
            Some((ns, share)) => {
                num_cell(out, &format_ns(ns));
                let pct = 100.0 * share;
                let _ = write!(
                    out,
                    r#"<td class="num"><span class="share" style="width: {:.0}px; background: {color}"></span>{pct:.1}%</td>"#,
                    (pct.min(100.0) * 0.6).max(1.0)
                );
            }
            None => (0..2).for_each(|_| num_cell(out, "")),
        }
        cell(out, &r.note);
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
}

/// Standard base64 (RFC 4648, padded), for `data:` URLs.
pub fn base64(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn flames(out: &mut String, flames: &[Flame]) {
    out.push_str(r#"<section id="flamegraphs"><h2>Flamegraphs</h2><p class="note">Click a frame to zoom, Ctrl-F or “Search” to highlight; hover for exact values.</p>"#);
    for f in flames {
        match f {
            Flame::Svg { file, svg } => {
                let height = super::flamegraph::svg_height(svg).unwrap_or(400) + 4;
                let data = base64(super::flamegraph::embeddable(svg).as_bytes());
                let _ = write!(
                    out,
                    r#"<p><a href="{f}"><code>{f}</code></a></p><iframe class="flame" title="{f}" style="height: {height}px" src="data:image/svg+xml;base64,{data}"></iframe>"#,
                    f = escape(file),
                );
            }
            Flame::Missing { file, why } => {
                let _ = write!(
                    out,
                    r#"<p class="note"><code>{}</code>: {}</p>"#,
                    escape(file),
                    escape(why)
                );
            }
        }
    }
    out.push_str("</section>");
}

fn figures(out: &mut String, figs: &[Figure]) {
    out.push_str(r#"<section id="charts"><h2>Charts</h2><div class="figs">"#);
    for f in figs {
        let _ = write!(
            out,
            r#"<figure>{}<figcaption>{} (<a href="{file}"><code>{file}</code></a>)</figcaption></figure>"#,
            f.svg,
            escape(&f.caption),
            file = escape(&f.file)
        );
    }
    out.push_str("</div></section>");
}

fn files(out: &mut String, page: &Page<'_>) {
    out.push_str(r#"<section id="files"><h2>Files</h2><ul>"#);
    for f in &page.files {
        let _ = write!(
            out,
            r#"<li><a href="{f}"><code>{f}</code></a></li>"#,
            f = escape(f)
        );
    }
    out.push_str("</ul>");
    let t = page.trace;
    let _ = write!(
        out,
        "<p class=\"note\">Open <code>trace.json</code> in ui.perfetto.dev or chrome://tracing: one track per thread, a slice per stage, flow arrows from each clone to its child. {}</p>",
        escape(&if t.spawns_written < t.spawns_seen {
            format!(
                "It holds the first {} of {} spawns, to stay small enough for the viewers.",
                t.spawns_written, t.spawns_seen
            )
        } else {
            format!("It holds all {} spawns.", t.spawns_seen)
        })
    );
    out.push_str("</section>");
}

/// The whole page.
pub fn render(page: &Page<'_>) -> String {
    let s = page.summary;
    let mut out = String::with_capacity(256 * 1024);
    let _ = write!(
        out,
        r##"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"/><meta name="viewport" content="width=device-width, initial-scale=1"/><title>spawnprof: {t}</title><style>{CSS}{sort_css}</style></head><body><header><h1>spawnprof report</h1><div class="target">{t}</div><nav><a href="#breakdown">stages</a><a href="#flamegraphs">flamegraphs</a><a href="#charts">charts</a><a href="#processes">processes</a><a href="#plan">attach plan</a><a href="#files">files</a></nav></header><main>"##,
        t = escape(&crate::units::elide(&s.target, crate::units::SHOWN_COMMAND)),
        sort_css = super::sortable::CSS,
    );
    if let Some(line) = &page.headline {
        let _ = write!(
            out,
            r#"<p class="headline" id="headline">{}</p>"#,
            escape(line)
        );
    }
    let findings = super::findings::findings(s.hidden_costs.as_ref());
    if !findings.is_empty() {
        out.push_str(r#"<ul class="findings" id="findings">"#);
        for f in &findings {
            let _ = write!(out, "<li>{}</li>", escape(f));
        }
        out.push_str("</ul>");
    }
    warnings(&mut out, s);
    out.push_str(r#"<section id="overview"><h2>Recording</h2>"#);
    facts(&mut out, s);
    out.push_str("</section>");
    node(&mut out, &page.summary_json);
    breakdown(&mut out, s, &page.unavailable);
    flames(&mut out, &page.flames);
    figures(&mut out, &page.figures);
    super::processes::table(
        &mut out,
        page.programs,
        page.processes,
        page.processes_total,
    );
    plan(&mut out, s);
    files(&mut out, page);
    let _ = writeln!(
        out,
        r#"<p class="note">Generated by spawnprof {} from summary.json and spawns.jsonl; <code>spawnprof report DIR</code> regenerates it.</p></main>{}</body></html>"#,
        escape(&s.spawnprof_version),
        super::sortable::SCRIPT
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(i.as_bytes()), o);
        }
    }

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_767_225_599), "2025-12-31 23:59:59 UTC");
    }
}
