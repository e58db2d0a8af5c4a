//! `cargo xtask test`: every check CI runs, in order, continuing past
//! failures so one run reports all of them. Output streams through as it
//! comes while libtest summaries and `SKIPPED:` lines are tallied, and the
//! run ends with a step table and the line CI parses:
//! `N passed, M failed, K skipped`.
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::{cmd, setup};

/// Counts from one step's output.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Tally {
    pub passed: u64,
    pub failed: u64,
    pub ignored: u64,
    /// `SKIPPED:` lines: tests that returned early because the machine
    /// cannot run them. libtest counts those as passed.
    pub skipped: u64,
}

impl Tally {
    /// Feeds one output line (without its newline).
    pub fn observe(&mut self, line: &str) {
        let line = strip_ansi(line);
        if let Some((passed, failed, ignored)) = parse_result_line(&line) {
            self.passed += passed;
            self.failed += failed;
            self.ignored += ignored;
        } else if is_skip_line(&line) {
            self.skipped += 1;
        }
    }
}

/// Parses libtest's summary, e.g.
/// `test result: ok. 12 passed; 0 failed; 3 ignored; 0 measured; 0 filtered out; finished in 0.01s`,
/// into (passed, failed, ignored).
pub fn parse_result_line(line: &str) -> Option<(u64, u64, u64)> {
    let rest = line.trim().strip_prefix("test result: ")?;
    let (_verdict, counts) = rest.split_once(". ")?;
    let (mut passed, mut failed, mut ignored) = (None, None, None);
    for field in counts.split(';') {
        let mut words = field.split_whitespace();
        let (Some(n), Some(what)) = (words.next(), words.next()) else {
            continue;
        };
        let Ok(n) = n.parse::<u64>() else { continue };
        match what {
            "passed" => passed = Some(n),
            "failed" => failed = Some(n),
            "ignored" => ignored = Some(n),
            _ => {}
        }
    }
    Some((passed?, failed?, ignored.unwrap_or(0)))
}

/// A test's `SKIPPED: reason` line. With `--nocapture` a test's stdout lands
/// right after libtest's `test name ... ` prefix, so accept that too.
fn is_skip_line(line: &str) -> bool {
    let line = line.trim_start();
    let after_prefix = line
        .strip_prefix("test ")
        .and_then(|rest| rest.split_once(" ... "))
        .map(|(_, tail)| tail);
    after_prefix.unwrap_or(line).starts_with("SKIPPED:")
}

/// Removes ANSI colour sequences (`ESC [ ... letter`), in case a step was
/// told to colour its output even though it is piped.
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

struct StepResult {
    name: &'static str,
    ok: bool,
    duration: Duration,
    tally: Tally,
    note: String,
}

impl StepResult {
    /// (passed, failed, skipped) this step adds to the final line. A failed
    /// step with no failed test in its output (compile error, fmt diff, VM
    /// error) counts as one failure, so nothing fails silently.
    fn counts(&self) -> (u64, u64, u64) {
        let t = self.tally;
        let failed = if !self.ok && t.failed == 0 {
            1
        } else {
            t.failed
        };
        // Tests that printed SKIPPED: were counted as passed by libtest.
        let passed = t.passed.saturating_sub(t.skipped);
        (passed, failed, t.skipped + t.ignored)
    }
}

pub fn run() -> Result<ExitCode> {
    let mut results = vec![timed("setup", || match setup::ensure(true) {
        Ok(()) => (true, Tally::default(), String::new()),
        Err(e) => (false, Tally::default(), format!("{e:#}")),
    })];
    results.extend(cargo_steps());
    ensure_chromium();
    ensure_slurm();
    ensure_serve_tools();
    let (packaging, deb) = packaging();
    results.push(packaging);
    results.push(integration_tests(deb.as_deref()));
    // The VM tier runs as a child `cargo xtask vm-test` (vm::run with no
    // arguments) so its output is streamed and tallied like the others and
    // its error lands in the table. Not current_exe(): the build step may
    // have just replaced this very binary.
    // --debug: test the binaries this run just built, never a stale release build.
    results.push(streamed(
        "vm tests",
        &mut cmd::cargo(["xtask", "vm-test", "--debug"]),
    ));
    Ok(summarise(&results))
}

/// fmt, clippy, build and the unit tests.
fn cargo_steps() -> Vec<StepResult> {
    let steps: [(&'static str, &[&str]); 4] = [
        ("fmt", &["fmt", "--all", "--check"]),
        (
            "clippy",
            &["clippy", "--all-targets", "--", "-D", "warnings"],
        ),
        ("build", &["build"]),
        // Not --workspace: that would build spawnprof-ebpf for the host.
        (
            "unit tests",
            &[
                "test",
                "--no-fail-fast",
                "-p",
                "spawnprof",
                "-p",
                "spawnprof-common",
                "-p",
                "xtask",
            ],
        ),
    ];
    steps
        .into_iter()
        .map(|(name, args)| streamed(name, &mut cmd::cargo(args)))
        .collect()
}

/// `cargo xtask install` into a scratch prefix (its binaries must run from
/// there), then `cargo xtask deb`: the package the integration tests
/// install, run and remove (`SPAWNPROF_DEB`).
fn packaging() -> (StepResult, Option<std::path::PathBuf>) {
    println!("\n==> packaging: cargo xtask install --prefix <scratch>, cargo xtask deb");
    let mut deb = None;
    let step = timed("packaging", || match install_and_package() {
        Ok(path) => {
            deb = Some(path);
            (true, Tally::default(), String::new())
        }
        Err(e) => (false, Tally::default(), format!("{e:#}")),
    });
    (step, deb)
}

fn install_and_package() -> Result<std::path::PathBuf> {
    let prefix = std::env::temp_dir().join(format!("spawnprof-install-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&prefix);
    crate::install::install(&prefix)?;
    for name in crate::install::BINARIES {
        let bin = prefix.join("bin").join(name);
        let out = Command::new(&bin)
            .arg("--help")
            .output()
            .with_context(|| format!("running the installed {}", bin.display()))?;
        anyhow::ensure!(
            out.status.success(),
            "{} --help failed: {out:?}",
            bin.display()
        );
    }
    let _ = std::fs::remove_dir_all(&prefix);
    crate::install::deb()
}

/// The real-kernel tests, as root: directly, or with only the test binaries
/// run through sudo. `deb`: the package the packaging test installs.
fn integration_tests(deb: Option<&std::path::Path>) -> StepResult {
    let target = cmd::target_dir();
    let mut integration = cmd::cargo([
        "test",
        "--no-fail-fast",
        "-p",
        "spawnprof-tests",
        "--",
        "--test-threads=1", // tests attach system-wide probes: one at a time
        "--nocapture",      // so SKIPPED: lines of passing tests are seen
    ]);
    integration
        .env("SPAWNPROF_BIN", target.join("debug/spawnprof"))
        .env("SPAWNPROF_SPAWNER", target.join("debug/spawnprof-spawner"));
    if let Some(deb) = deb {
        integration.env("SPAWNPROF_DEB", deb);
    }
    if cmd::is_root() {
        streamed("integration tests", &mut integration)
    } else if cmd::find_in_path("sudo").is_some() {
        // Build as the user, run only the test binaries as root, so target/
        // never fills with root-owned files.
        let vv = cmd::stdout_of("rustc", &["-vV"]).unwrap_or_default();
        let host = setup::parse_rustc_vv(&vv)
            .host
            .to_uppercase()
            .replace('-', "_");
        integration.env(format!("CARGO_TARGET_{host}_RUNNER"), "sudo -E");
        streamed("integration tests", &mut integration)
    } else {
        let why = "the tests load eBPF programs: run as root, or install sudo";
        timed("integration tests", || {
            (false, Tally::default(), why.into())
        })
    }
}

fn timed(name: &'static str, f: impl FnOnce() -> (bool, Tally, String)) -> StepResult {
    let start = Instant::now();
    let (ok, tally, note) = f();
    StepResult {
        name,
        ok,
        duration: start.elapsed(),
        tally,
        note,
    }
}

/// Runs one step, echoing its stdout and stderr line by line while tallying.
fn streamed(name: &'static str, command: &mut Command) -> StepResult {
    println!("\n==> {name}: {}", cmd::describe(command));
    timed(name, || match stream(command) {
        Ok((status, tally, _)) if status.success() => (true, tally, String::new()),
        Ok((status, tally, hint)) if hint.is_empty() => (false, tally, status.to_string()),
        Ok((status, tally, hint)) => (false, tally, format!("{status}; {hint}")),
        Err(e) => (false, Tally::default(), format!("{e:#}")),
    })
}

fn stream(command: &mut Command) -> Result<(std::process::ExitStatus, Tally, String)> {
    // stdout and stderr share one pipe, as on a terminal, so cargo's
    // `Running ...` lines (stderr) stay in order with libtest's (stdout).
    let (reader, writer) = std::io::pipe().context("creating a pipe")?;
    let mut child = command
        .stdin(Stdio::null()) // CI has no stdin; nothing may prompt
        .stdout(writer.try_clone().context("duplicating a pipe")?)
        .stderr(writer)
        .spawn()
        .with_context(|| format!("cannot start `{}`", cmd::describe(command)))?;
    // Drop the Command's copies of the write end, or we never see EOF.
    command.stdout(Stdio::null()).stderr(Stdio::null());

    let mut tally = Tally::default();
    let mut hint = Hint::default();
    let mut reader = BufReader::new(reader);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).context("reading the step's output"),
        }
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(&line);
        let _ = out.flush();
        let text = String::from_utf8_lossy(&line);
        tally.observe(text.trim_end());
        hint.observe(text.trim_end());
    }
    let status = child.wait().context("waiting for the step")?;
    Ok((status, tally, hint.best()))
}

/// Picks one line to explain a failed step in the table: the last `error...`
/// line (cargo's, or xtask vm-test's own), else the first `Diff in FILE:LINE:`
/// of `cargo fmt --check`, else the last line.
#[derive(Default)]
struct Hint {
    last_error: Option<String>,
    first_diff: Option<String>,
    last: Option<String>,
}

impl Hint {
    fn observe(&mut self, line: &str) {
        let line = strip_ansi(line.trim());
        if line.is_empty() {
            return;
        }
        if line.starts_with("error") {
            self.last_error = Some(line.clone());
        } else if line.starts_with("Diff in ") && self.first_diff.is_none() {
            self.first_diff = Some(line.clone());
        }
        self.last = Some(line);
    }

    fn best(self) -> String {
        (self.last_error.or(self.first_diff).or(self.last)).unwrap_or_default()
    }
}

fn summarise(results: &[StepResult]) -> ExitCode {
    let (mut passed, mut failed, mut skipped) = (0, 0, 0);
    println!(
        "\n{:<18} {:<7} {:>8}  tests (passed/failed/skipped)",
        "step", "status", "time"
    );
    for r in results {
        let (p, f, s) = r.counts();
        passed += p;
        failed += f;
        skipped += s;
        let status = if r.ok { "ok" } else { "FAILED" };
        let tests = if r.tally == Tally::default() {
            String::new()
        } else {
            format!("{p}/{f}/{s}")
        };
        println!(
            "{:<18} {status:<7} {:>8}  {tests}",
            r.name,
            format_duration(r.duration)
        );
        if !r.note.is_empty() {
            println!("{:<18} {}", "", truncate(&r.note.replace('\n', " "), 160));
        }
    }
    // CI greps for exactly this line; keep it last and alone.
    println!("{passed} passed, {failed} failed, {skipped} skipped");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn format_duration(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs < 60.0 {
        format!("{secs:.1}s")
    } else {
        format!("{}m{:02}s", d.as_secs() / 60, d.as_secs() % 60)
    }
}

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((at, _)) => format!("{}...", &s[..at]),
        None => s.to_string(),
    }
}

/// The report test renders report.html in Debian's headless Chromium. Try to
/// install it; without it that test prints SKIPPED with the reason.
fn ensure_chromium() {
    if cmd::find_in_path("chromium").is_some() {
        return;
    }
    if let Err(e) = cmd::ensure_debian_packages("test", &["chromium"]) {
        println!("chromium could not be installed ({e:#}); the browser test will be skipped");
    }
}

/// The fleet test runs a real one-node Slurm from Debian's packages. Try
/// to install them; without them that test fails and says how to.
fn ensure_slurm() {
    if let Err(e) = cmd::ensure_debian_packages("test", &["slurmctld", "slurmd", "munge"]) {
        println!("Slurm could not be installed ({e:#}); the Slurm fleet test will fail");
    }
}

/// The serve tests scrape with Debian's Prometheus (and check the page
/// with its promtool); the top test drives a terminal with tmux. Without
/// them those tests print SKIPPED with the reason.
fn ensure_serve_tools() {
    let missing: Vec<&str> = [("prometheus", "prometheus"), ("tmux", "tmux")]
        .into_iter()
        .filter(|(bin, _)| cmd::find_in_path(bin).is_none())
        .map(|(_, pkg)| pkg)
        .collect();
    if missing.is_empty() {
        return;
    }
    if let Err(e) = cmd::ensure_debian_packages("test", &missing) {
        println!(
            "{} could not be installed ({e:#}); the serve and top tests will be skipped",
            missing.join(" ")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ok_summary() {
        let line = "test result: ok. 12 passed; 0 failed; 3 ignored; 0 measured; 0 filtered out; finished in 0.01s";
        assert_eq!(parse_result_line(line), Some((12, 0, 3)));
    }

    #[test]
    fn parses_failed_summary() {
        let line = "test result: FAILED. 4 passed; 2 failed; 0 ignored; 0 measured; 5 filtered out; finished in 1.20s";
        assert_eq!(parse_result_line(line), Some((4, 2, 0)));
    }

    #[test]
    fn ignores_other_lines() {
        assert_eq!(parse_result_line("test foo ... ok"), None);
        assert_eq!(parse_result_line("running 3 tests"), None);
        assert_eq!(parse_result_line("test result: garbage"), None);
    }

    #[test]
    fn tally_sums_summaries_and_skips_and_strips_colour() {
        let mut t = Tally::default();
        for line in [
            "running 2 tests",
            "test a ... ok",
            "test b ... SKIPPED: no BTF on this kernel",
            "ok",
            "test result: \x1b[32mok\x1b[0m. 2 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.00s",
            "SKIPPED: fentry not supported (EPERM)",
            "test result: FAILED. 1 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s",
            "not SKIPPED: this does not count",
        ] {
            t.observe(line);
        }
        assert_eq!(
            t,
            Tally {
                passed: 3,
                failed: 1,
                ignored: 1,
                skipped: 2
            }
        );
    }

    #[test]
    fn hint_prefers_errors_then_fmt_diffs_then_the_last_line() {
        let hint = |lines: &[&str]| {
            let mut h = Hint::default();
            for line in lines {
                h.observe(line);
            }
            h.best()
        };
        let fmt = [
            "Diff in /x/src/a.rs:41:",
            "-}",
            "Diff in /x/src/b.rs:2:",
            "+}",
        ];
        assert_eq!(hint(&fmt), "Diff in /x/src/a.rs:41:");
        let clippy = [
            "error: unused variable",
            "error: could not compile `spawnprof`",
            "warning: build failed",
        ];
        assert_eq!(hint(&clippy), "error: could not compile `spawnprof`");
        assert_eq!(hint(&["booting", "qemu died", "  "]), "qemu died");
    }

    #[test]
    fn failed_step_without_test_failures_counts_once() {
        let step = |ok, tally| StepResult {
            name: "x",
            ok,
            duration: Duration::ZERO,
            tally,
            note: String::new(),
        };
        assert_eq!(step(false, Tally::default()).counts(), (0, 1, 0));
        assert_eq!(step(true, Tally::default()).counts(), (0, 0, 0));
        let t = Tally {
            passed: 5,
            failed: 2,
            ignored: 1,
            skipped: 2,
        };
        assert_eq!(step(false, t).counts(), (3, 2, 3));
    }
}
