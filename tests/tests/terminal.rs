//! What `spawnprof record` prints on a terminal, the small things a new
//! user trips over: the count of processes left out of the table, exec→exit
//! of a child that never exec'd, a huge command line, a command that is not
//! found, the terminal's width, the live count, and what summary.json
//! leaves out.
use std::process::Command;

use spawnprof_tests::{out_dir, record, require_root, spawnprof_bin, summary_json};

#[test]
fn the_table_says_how_many_processes_it_left_out_of_all_of_them() {
    let run = record(
        "more",
        &[
            "--rows",
            "10",
            "--",
            "sh",
            "-c",
            "i=0; while [ $i -lt 60 ]; do /bin/true; i=$((i+1)); done",
        ],
    );
    let err = run.stderr();
    // 60 children and the shell, 10 shown.
    assert!(
        err.contains("… and 51 more (all of them in spawns.jsonl)"),
        "{err}"
    );
}

#[test]
fn a_child_that_never_execs_has_no_exec_to_exit_time() {
    let run = record(
        "no-exec",
        &["--", "sh", "-c", "(exit 0); (exit 0); /bin/true"],
    );
    let err = run.stderr();
    let rows: Vec<&str> = err.lines().filter(|l| l.contains(" fork ")).collect();
    assert!(rows.len() >= 2, "{err}");
    for row in rows {
        // pid ppid method comm path fork→exec exec→exit status
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(
            cells[cells.len() - 3],
            "-",
            "exec→exit of a child that never exec'd: {row}"
        );
    }
}

#[test]
fn a_huge_command_line_is_shown_cut_and_kept_whole() {
    // 180 KB of arguments (one may not pass 128 KiB), kept with --capture-args.
    let chunk = "x".repeat(9_000);
    let mut args = vec!["--capture-args", "--", "sh", "-c", "true", "sh"];
    args.extend(std::iter::repeat_n(chunk.as_str(), 20));
    let run = record("huge-cmdline", &args);
    let err = run.stderr();
    let tracing = err
        .lines()
        .find(|l| l.starts_with("spawnprof: tracing"))
        .expect("the tracing line");
    assert!(
        tracing.len() < 400,
        "{} bytes: {}",
        tracing.len(),
        &tracing[..200]
    );
    assert!(tracing.contains("KiB in all)"), "{tracing}");
    assert!(
        err.len() < 60_000,
        "the script is not echoed: {} bytes on stderr",
        err.len()
    );
    let html = std::fs::read_to_string(run.dir.join("report.html")).unwrap();
    assert!(
        !html.contains(&"x".repeat(1_000)),
        "the page does not carry it whole either"
    );
    let target = summary_json(&run.dir)["target"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        target.len() > 180_000,
        "summary.json keeps the whole target"
    );
}

#[test]
fn a_command_that_is_not_found_gets_one_line_not_a_table_of_not_seen() {
    let run = record("not-found-table", &["--", "spawnprof-no-such-command-xyz"]);
    assert_eq!(run.output.status.code(), Some(127));
    let err = run.stderr();
    assert!(
        err.contains("no spawn was recorded, so there is no stage breakdown"),
        "{err}"
    );
    assert!(!err.contains("not seen"), "{err}");
}

#[test]
fn tables_fit_the_terminal_width_from_columns() {
    require_root();
    let dir = out_dir("columns");
    let out = Command::new(spawnprof_bin())
        .env("COLUMNS", "80")
        .args(["record", "-o"])
        .arg(&dir)
        .args(["--", "sh", "-c", "/bin/true; /usr/bin/env true"])
        .output()
        .expect("run spawnprof");
    let err = String::from_utf8_lossy(&out.stderr);
    let table: Vec<&str> = err
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("pid"))
        .take_while(|l| !l.is_empty())
        .collect();
    assert!(table.len() >= 3, "{err}");
    for line in table {
        assert!(
            line.chars().count() <= 80,
            "{} wide: {line}",
            line.chars().count()
        );
    }
}

#[test]
fn summary_json_leaves_out_what_it_does_not_have() {
    let run = record("absent", &["--", "/bin/true"]);
    let s = summary_json(&run.dir);
    let s = s.as_object().unwrap();
    assert!(!s.contains_key("probe_cost"), "absent without --probe-cost");
    assert!(
        s.contains_key("stack_samples"),
        "documented in docs/OUTPUT.md"
    );
    let run = record("probe-cost", &["--probe-cost", "--", "/bin/true"]);
    assert!(summary_json(&run.dir)["probe_cost"].is_object());
}

/// On a terminal the count is drawn in the bottom row while the command
/// scrolls above it; the terminal gets its whole screen back at the end.
/// `script` gives spawnprof a terminal (a pty) and keeps what it wrote.
#[test]
fn record_draws_a_live_count_below_the_commands_output() {
    require_root();
    let dir = out_dir("live");
    let typescript = dir.with_extension("typescript");
    std::fs::create_dir_all(dir.parent().unwrap()).unwrap();
    let inner = format!(
        "stty rows 30 cols 100; {} record -o {} -- sh -c 'for i in 1 2 3; do echo line $i; sleep 0.4; /bin/true; done'",
        spawnprof_bin().display(),
        dir.display()
    );
    // Its own copy of the terminal's output goes nowhere: the escapes
    // would set a scroll region on the terminal running the tests.
    let status = Command::new("script")
        .args(["-qec", &inner])
        .arg(&typescript)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("script (util-linux)");
    assert!(status.success());
    let text = String::from_utf8_lossy(&std::fs::read(&typescript).unwrap()).into_owned();
    let region = text
        .find("\x1b[1;29r")
        .expect("the scroll region above the bottom row");
    let count = text.find("spawnprof recording [").expect("the live count");
    let released = text.rfind("\x1b[r").expect("the whole screen given back");
    assert!(region < count && count < released, "{text:?}");
    for i in 1..=3 {
        assert!(
            text.contains(&format!("line {i}\r\n")),
            "the command's output intact: {text:?}"
        );
    }
    assert!(
        text[released..].contains("recording written to"),
        "{text:?}"
    );
    // Not on a terminal (here, stderr is a pipe): nothing drawn.
    let run = record("not-live", &["--", "/bin/true"]);
    assert!(!run.stderr().contains("\x1b["), "{:?}", run.stderr());
}
