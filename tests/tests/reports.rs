//! The shareable reports from a real recording: stage flamegraph, the
//! stage breakdown, trace.json, stacks.svg, charts and report.html, and the
//! page rendered by a real browser (screenshots in target/screenshots/).
//!
//! `spawnprof record` writes these files itself; the tests also call the
//! library on the saved recording, the way `spawnprof report DIR` does.
use std::process::Command;

use spawnprof::{
    model::{SPAWN_TIME, time_node_index},
    report::{
        charts::{rgb, stage_color},
        export::{
            FOLDED_FILE, HTML_FILE, STACKS_SVG, STAGES_SVG, TRACE_FILE, write_all_from_recording,
        },
    },
};
use spawnprof_tests::{
    Run,
    browser::{NO_CHROMIUM, Page, chromium, png_size, screenshot_dir},
    record, spawnprof_bin,
};

/// A shell that vforks /bin/true, forks a subshell, and runs a command
/// that does not exist (a failed exec), a few times over; stacks sampled.
fn small_recording(test: &str) -> Run {
    let run = record(
        test,
        &[
            "--sample-hz",
            "999",
            "--",
            "sh",
            "-c",
            "for i in 1 2 3 4 5 6 7 8 9 10 11 12; do /bin/true; (/bin/true); (exit 0); /nonexistent/spawnprof-no-such-binary 2>/dev/null; done; exit 0",
        ],
    );
    assert!(run.output.status.success(), "{}", run.stderr());
    write_all_from_recording(&run.dir).expect("render the reports");
    run
}

#[test]
fn reports_from_a_real_recording_have_the_documented_content() {
    let run = small_recording("reports");
    check_stage_flamegraph(&run);
    check_breakdown(&run);
    check_trace(&run);
    check_stacks(&run);
    check_page(&run);
}

/// stages.folded: `frames weight`, rooted at "all spawns", following the
/// spawn-time tree: every nanosecond of spawn time once, so the weights add
/// up to the summary's spawn time and no parent-side stage is drawn.
fn check_stage_flamegraph(run: &Run) {
    let folded = std::fs::read_to_string(run.dir.join(FOLDED_FILE)).unwrap();
    let mut total = 0u64;
    for line in folded.lines() {
        let (stack, w) = line.rsplit_once(' ').expect("`frames count`");
        let w: u64 = w.parse().expect("integer ns");
        assert!(w > 0, "{line}");
        total += w;
        let frames: Vec<&str> = stack.split(';').collect();
        assert_eq!(frames[0], "all spawns", "{line}");
        assert!(frames.len() >= 3, "root;parent;method[;stages]: {line}");
        for stage in &frames[3..] {
            assert!(
                time_node_index(stage).is_some(),
                "{stage} is not in the spawn-time tree: {line}"
            );
        }
        for parents_side in ["clone", "parent_return", "vfork_resume"] {
            assert!(
                !frames.contains(&parents_side),
                "{parents_side} drawn again: {line}"
            );
        }
    }
    let spawn_time = run.summary.spawn_time.as_ref().expect("summary.spawn_time");
    assert_eq!(
        total, spawn_time.total.total_ns,
        "each nanosecond of spawn time once"
    );
    assert!(
        folded.lines().any(|l| l.contains(";sh;vfork"))
            && folded.lines().any(|l| l.contains(";sh;fork")),
        "sh vforks /bin/true and forks subshells:\n{folded}"
    );

    // stages.svg: each stage in its family's colour.
    let svg = std::fs::read_to_string(run.dir.join(STAGES_SVG)).unwrap();
    assert!(svg.starts_with("<?xml") && svg.trim_end().ends_with("</svg>"));
    assert!(svg.contains("each ns once") && svg.contains("<script"));
    let mut coloured = 0;
    for n in SPAWN_TIME {
        let Some(fill) = frame_fill(&svg, n.name) else {
            continue;
        };
        let (r, g, b) = rgb(stage_color(n.name).unwrap());
        assert_eq!(
            fill,
            format!("rgb({r},{g},{b})"),
            "{} drawn in {fill}",
            n.name
        );
        coloured += 1;
    }
    assert!(coloured >= 5, "stages drawn: {coloured}");
}

/// The `fill` of the first frame named `name` in a flamegraph.
fn frame_fill(svg: &str, name: &str) -> Option<String> {
    let at = svg.find(&format!("<title>{name} ("))?;
    let rect = &svg[at..];
    let fill = rect.find("fill=\"")? + 6;
    Some(rect[fill..fill + rect[fill..].find('"')?].to_string())
}

/// The breakdown adds up: the tree's top level to the spawn time, every
/// node's children to at most the node; the terminal says it plainly.
fn check_breakdown(run: &Run) {
    let t = run.summary.spawn_time.as_ref().unwrap();
    let top: u64 = SPAWN_TIME
        .iter()
        .filter(|n| n.parent.is_none())
        .map(|n| t.node(n.name))
        .sum();
    assert_eq!(top + t.unsplit(), t.total.total_ns);
    for n in SPAWN_TIME {
        let children: u64 = SPAWN_TIME
            .iter()
            .filter(|c| c.parent == Some(n.name))
            .map(|c| t.node(c.name))
            .sum();
        assert!(
            children <= t.node(n.name),
            "{}'s children add up past it",
            n.name
        );
    }
    let err = run.stderr();
    assert!(err.contains("spawn time, each nanosecond once"), "{err}");
    assert!(err.contains("100.0%"), "{err}");
    assert!(
        err.contains(
            "vfork: the parent is suspended from its child's wake-up until the child's exec"
        ),
        "{err}"
    );
    // No share past 100%: the tree's shares are of all spawn time.
    for line in err.lines() {
        if let Some(share) = line.split_whitespace().find(|w| w.ends_with('%')) {
            let v: f64 = share.trim_end_matches('%').parse().unwrap_or(0.0);
            assert!(v <= 100.0, "{line}");
        }
    }
}

/// trace.json: the structure docs/OUTPUT.md describes, every flow forward
/// in time (the vfork ones too).
fn check_trace(run: &Run) {
    let trace: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.dir.join(TRACE_FILE)).unwrap()).unwrap();
    let events = trace["traceEvents"].as_array().expect("traceEvents");
    let of = |ph: &'static str| events.iter().filter(move |e| e["ph"] == ph);
    assert!(of("X").count() > 50);
    for e in of("X") {
        for key in ["name", "ts", "dur", "pid", "tid"] {
            assert!(!e[key].is_null(), "{key} in {e}");
        }
    }
    let shell = run.root().child_pid.expect("root pid");
    assert!(
        of("X").any(|e| e["name"] == "clone" && e["pid"] == shell),
        "the shell's clones sit on the shell's track"
    );
    assert!(
        of("i").any(|e| e["name"] == "exec failed: ENOENT"
            && e["args"]["path"] == "/nonexistent/spawnprof-no-such-binary"),
        "the failed exec of the missing binary"
    );
    let flows_out: Vec<_> = of("s").collect();
    assert!(flows_out.len() >= 24, "a flow per spawn");
    let vforks = run
        .children()
        .iter()
        .filter(|r| r.method.as_deref() == Some("vfork"))
        .count();
    assert!(vforks >= 12, "{vforks} vforks");
    for s in &flows_out {
        let ends: Vec<_> = of("f").filter(|f| f["id"] == s["id"]).collect();
        assert_eq!(ends.len(), 1);
        let (from, to) = (s["ts"].as_f64().unwrap(), ends[0]["ts"].as_f64().unwrap());
        assert!(from <= to, "a flow back in time: {s} → {}", ends[0]);
    }
    assert!(
        of("M").any(|e| e["name"] == "process_name" && e["args"]["name"] == "true"),
        "children are named after their command"
    );
    assert_eq!(
        trace["otherData"]["spawns_total"].as_u64(),
        Some(run.records.len() as u64)
    );
}

/// stacks.svg: user stacks stop at the first frame that cannot be trusted
/// (one `[unwind stopped]` frame right under the process), the root names
/// the program, and the picture is a few hundred pixels tall.
fn check_stacks(run: &Run) {
    let folded = std::fs::read_to_string(run.dir.join("stacks.folded")).unwrap();
    assert!(!folded.is_empty(), "stacks sampled at 999 Hz");
    for line in folded.lines() {
        let (stack, _) = line.rsplit_once(' ').unwrap();
        let frames: Vec<&str> = stack.split(';').collect();
        let stopped: Vec<usize> = (0..frames.len())
            .filter(|&i| frames[i] == "[unwind stopped]")
            .collect();
        assert!(
            stopped.len() <= 1 && stopped.iter().all(|&i| i == 1),
            "{line}"
        );
        let user = frames[1..]
            .iter()
            .take_while(|f| !f.ends_with("_[k]"))
            .count();
        assert!(user <= 40, "{user} user frames: {line}");
        assert!(!frames[1..].contains(&"[unknown]"), "{line}");
    }
    assert!(
        folded
            .lines()
            .any(|l| l.starts_with("true → /") || l.starts_with("sh → /")),
        "roots name the program exec'd:\n{folded}"
    );
    let svg = std::fs::read_to_string(run.dir.join(STACKS_SVG)).unwrap();
    let height = spawnprof::report::flamegraph::svg_height(&svg).unwrap();
    assert!(height < 900, "stacks.svg is {height} px tall");
}

/// report.html: every table, the headline, the flamegraphs as data.
fn check_page(run: &Run) {
    let html = std::fs::read_to_string(run.dir.join(HTML_FILE)).unwrap();
    for id in [
        "plan-table",
        "breakdown-table",
        "overlap-table",
        "process-table",
        "node-table",
        "headline",
    ] {
        assert!(
            html.contains(&format!("id=\"{id}\"")),
            "#{id} in report.html"
        );
    }
    assert!(html.contains("data:image/svg+xml;base64,"));
    assert!(html.contains("class=\"sortable grouped\""));
    assert!(
        html.contains("<td class=\"path\">/bin/true</td>"),
        "a group for /bin/true"
    );
}

#[test]
fn report_html_renders_in_chromium_with_its_story_first() {
    let Some(browser) = chromium() else {
        println!("{NO_CHROMIUM}");
        return;
    };
    let run = small_recording("reports-browser");
    let page = run.dir.join(HTML_FILE).canonicalize().unwrap();
    let profile = run.dir.join("chromium-profile");
    let at = |fragment| Page {
        browser: &browser,
        page: &page,
        fragment,
        profile: &profile,
    };
    let png = screenshot_dir().join("report.png");
    let bytes = at("").screenshot(&png, 1280, 2600);
    assert_eq!(png_size(&bytes), (1280, 2600));
    assert!(
        bytes.len() > 20_000,
        "a blank page would be tiny: {} bytes",
        bytes.len()
    );

    let dom = at("").dom();
    let pos = |needle: &str| {
        dom.find(needle)
            .unwrap_or_else(|| panic!("{needle} not rendered"))
    };
    // The headline first, above the recording's facts.
    assert!(pos("id=\"headline\"") < pos("id=\"overview\""));
    assert!(dom.contains("a spawn took on average"), "headline");
    // The node's facts folded away; the flamegraph frames sized to them.
    assert!(!dom.contains("<details open"), "node table collapsed");
    for frame in dom.split("<iframe").skip(1) {
        let h = frame
            .split("height: ")
            .nth(1)
            .and_then(|h| h.split("px").next())
            .and_then(|h| h.parse::<u32>().ok())
            .expect("a frame height");
        assert!(h < 1000, "a flamegraph frame {h} px tall");
    }
    // The process table sorts in the browser: by program, then by count.
    let order = |fragment| program_order(&at(fragment).dom());
    let by_name = order("#sort=program");
    let mut sorted = by_name.clone();
    sorted.sort();
    assert_eq!(by_name, sorted, "sorted by program");
    assert!(by_name.len() >= 2, "{by_name:?}");
    let counts = counts_in_order(&at("#sort=-processes").dom());
    assert!(counts.windows(2).all(|w| w[0] >= w[1]), "{counts:?}");
    println!("report.html screenshot: {}", png.display());
}

/// The program of each group of the rendered process table, in order.
fn program_order(dom: &str) -> Vec<String> {
    let table = &dom[dom.find("id=\"process-table\"").unwrap()..];
    table
        .split("<tbody class=\"group")
        .skip(1)
        .filter_map(|g| {
            let cell = g.split("<td class=\"path\">").nth(1)?;
            Some(cell[..cell.find("</td>")?].to_string())
        })
        .collect()
}

/// The process count of each group of the rendered process table, in order.
fn counts_in_order(dom: &str) -> Vec<u64> {
    let table = &dom[dom.find("id=\"process-table\"").unwrap()..];
    table
        .split("<tbody class=\"group")
        .skip(1)
        .filter_map(|g| {
            let v = g.split("data-v=\"").nth(1)?;
            v[..v.find('"')?].parse().ok()
        })
        .collect()
}

/// `spawnprof report` rebuilds the same page from the saved recording,
/// and the hidden costs an older recording's summary lacks.
#[test]
fn report_rebuilds_the_pages_from_the_saved_recording() {
    let run = small_recording("reports-rebuild");
    std::fs::remove_file(run.dir.join(HTML_FILE)).unwrap();
    let summary_path = run.dir.join("summary.json");
    let mut summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary_path).unwrap()).unwrap();
    let costs = summary
        .as_object_mut()
        .unwrap()
        .remove("hidden_costs")
        .expect("hidden_costs");
    std::fs::write(&summary_path, summary.to_string()).unwrap();
    let out = Command::new(spawnprof_bin())
        .arg("report")
        .arg(&run.dir)
        .output()
        .expect("run spawnprof report");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(run.dir.join(HTML_FILE).is_file());
    let rebuilt: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary_path).unwrap()).unwrap();
    assert_eq!(rebuilt["hidden_costs"], costs, "rebuilt from spawns.jsonl");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("spawn time, each nanosecond once"),
        "{stdout}"
    );
}
