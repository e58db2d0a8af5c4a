//! The shareable reports (issue 5) from a real recording: stage
//! flamegraph, trace.json, charts and report.html, and the page rendered
//! by a real browser when one is installed.
//!
//! `spawnprof record` may or may not write these files itself yet, so the
//! tests call the library on the saved recording, the way
//! `spawnprof report DIR` does.
use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use spawnprof::report::export::{
    FOLDED_FILE, HTML_FILE, STAGES_SVG, TRACE_FILE, write_all_from_recording,
};
use spawnprof_tests::{Run, record};

/// A shell that vforks /bin/true, forks a subshell, and runs a command
/// that does not exist (a failed exec), a few times over.
fn small_recording(test: &str) -> Run {
    let run = record(
        test,
        &[
            "--",
            "sh",
            "-c",
            "for i in 1 2 3 4 5 6 7 8; do /bin/true; (/bin/true); /nonexistent/spawnprof-no-such-binary 2>/dev/null; done; exit 0",
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
    check_trace(&run);
    check_page(&run);
}

/// stages.folded: `frames weight`, rooted at "all spawns", and each
/// stage's subtree as wide as its recorded total; stages.svg around it.
fn check_stage_flamegraph(run: &Run) {
    let folded = std::fs::read_to_string(run.dir.join(FOLDED_FILE)).unwrap();
    let mut lines = Vec::new();
    for line in folded.lines() {
        let (stack, w) = line.rsplit_once(' ').expect("`frames count`");
        let w: u64 = w.parse().expect("integer ns");
        assert!(w > 0, "{line}");
        let frames: Vec<&str> = stack.split(';').collect();
        assert_eq!(frames[0], "all spawns", "{line}");
        assert!(frames.len() >= 4, "root;parent;method;stage: {line}");
        lines.push((frames, w));
    }
    assert!(
        lines
            .iter()
            .any(|(f, _)| f[1] == "sh" && f[2].starts_with("vfork")),
        "sh vforks /bin/true:\n{folded}"
    );
    assert!(
        lines
            .iter()
            .any(|(f, _)| f[1] == "sh" && f[2].starts_with("fork")),
        "sh forks the subshell:\n{folded}"
    );
    let subtree = |stage: &str| -> u64 {
        lines
            .iter()
            .filter(|(f, _)| f[3..].contains(&stage))
            .map(|(_, w)| w)
            .sum()
    };
    let exec_total = run.summary.stages["exec"].total_ns;
    let drawn = subtree("exec");
    assert!(
        drawn >= exec_total && drawn as f64 <= exec_total as f64 * 1.01,
        "exec drawn {drawn} ns, recorded {exec_total} ns"
    );

    let svg = std::fs::read_to_string(run.dir.join(STAGES_SVG)).unwrap();
    assert!(svg.starts_with("<?xml") && svg.trim_end().ends_with("</svg>"));
    assert!(svg.contains("nanoseconds of spawn time") && svg.contains("<script"));
}

/// trace.json: the structure docs/OUTPUT.md describes.
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
    assert!(!flows_out.is_empty());
    for s in &flows_out {
        assert_eq!(of("f").filter(|f| f["id"] == s["id"]).count(), 1);
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

/// report.html: every table, and the flamegraph embedded as data.
fn check_page(run: &Run) {
    let html = std::fs::read_to_string(run.dir.join(HTML_FILE)).unwrap();
    for id in [
        "plan-table",
        "breakdown-table",
        "process-table",
        "node-table",
    ] {
        assert!(
            html.contains(&format!("id=\"{id}\"")),
            "#{id} in report.html"
        );
    }
    assert!(html.contains("data:image/svg+xml;base64,"));
}

/// The browser this machine has, if any (`SPAWNPROF_CHROMIUM` overrides).
fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("SPAWNPROF_CHROMIUM") {
        return Some(p.into());
    }
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |d| d.join(name)))
        .find(|p| p.is_file())
}

/// Runs headless Chromium on `page` with `extra` arguments; returns its
/// stdout and stderr. Offline: no component updates, sync or background
/// requests, a throwaway profile.
fn headless(browser: &Path, page: &Path, profile: &Path, extra: &[&str]) -> (String, String) {
    let mut child = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(format!("file://{}", page.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chromium");
    // Read both pipes on threads so a chatty browser cannot block on them.
    let mut out = child.stdout.take().expect("piped");
    let mut err = child.stderr.take().expect("piped");
    let out_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut out, &mut s);
        s
    });
    let err_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut err, &mut s);
        s
    });
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        match child.try_wait().expect("wait for chromium") {
            Some(_) => break,
            None if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("chromium did not finish rendering in 90 s");
            }
            None => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    (
        out_t.join().unwrap_or_default(),
        err_t.join().unwrap_or_default(),
    )
}

#[test]
fn report_html_renders_in_chromium_without_errors() {
    let Some(browser) = chromium() else {
        println!(
            "SKIPPED: no chromium on PATH (apt-get install --no-install-recommends chromium, or set SPAWNPROF_CHROMIUM)"
        );
        return;
    };
    let run = small_recording("reports-browser");
    let page = run.dir.join(HTML_FILE).canonicalize().unwrap();
    let profile = run.dir.join("chromium-profile");
    let png = run.dir.join("report.png");

    let (_, shot_log) = headless(
        &browser,
        &page,
        &profile,
        &[
            &format!("--screenshot={}", png.display()),
            "--window-size=1280,2400",
        ],
    );
    let bytes = std::fs::read(&png)
        .unwrap_or_else(|e| panic!("no screenshot at {}: {e}\n{shot_log}", png.display()));
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
    assert!(
        bytes.len() > 20_000,
        "a blank page would be tiny: {} bytes",
        bytes.len()
    );

    let (dom, log) = headless(&browser, &page, &profile, &["--dump-dom"]);
    for needle in [
        "id=\"plan-table\"",
        "id=\"breakdown-table\"",
        "id=\"process-table\"",
        "<svg",
        "<iframe",
    ] {
        assert!(
            dom.contains(needle),
            "{needle} missing from the rendered DOM"
        );
    }
    for log in [&shot_log, &log] {
        for line in log.lines() {
            assert!(
                !line.contains("Uncaught") && !line.contains("ERROR:CONSOLE"),
                "console error while rendering report.html: {line}"
            );
        }
    }
}
