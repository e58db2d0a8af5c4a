//! `cargo xtask fuzz [--seconds N] [TARGET...]`: runs the cargo-fuzz
//! targets in fuzz/ (its own workspace, nightly, sanitizers) for a bounded
//! time each and reports runs and crashes per target. Not part of
//! `cargo xtask test`: fuzzing is slow and its findings are turned into
//! ordinary unit tests next to the code.
//!
//! Each target grows its corpus in fuzz/corpus/TARGET (ignored by git),
//! starting from the committed seeds in fuzz/seeds/TARGET. libFuzzer stops
//! at the first crash, hang or OOM of a target and writes the input to
//! fuzz/artifacts/TARGET/; the next target still runs.
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::{cmd, setup};

/// A single input running longer than this is reported as a hang.
const INPUT_TIMEOUT_S: u64 = 10;

/// Lines of a target's output echoed to the console (progress lines left
/// out); a crash report with a full backtrace runs to hundreds. The log
/// keeps everything.
const ECHOED_LINES: usize = 60;

const INSTALL: &str = "cargo install cargo-fuzz --locked";

pub fn run(seconds: u64, requested: &[String]) -> Result<ExitCode> {
    if seconds == 0 {
        bail!("--seconds must be at least 1");
    }
    let root = cmd::repo_root();
    let fuzz_dir = root.join("fuzz");
    let known = targets(&fuzz_dir)?;
    let targets = select(&known, requested)?;
    // build.rs builds the eBPF object with nightly and bpf-linker, fuzz
    // builds included.
    setup::ensure(true)?;
    ensure_cargo_fuzz()?;

    println!("fuzz: building {} target(s) (nightly, ASan)", known.len());
    let mut build = cmd::cargo(["+nightly", "fuzz", "build", "--debug-assertions"]);
    cmd::run(&mut build).context("building the fuzz targets failed")?;

    let logs = fuzz_dir.join("logs");
    fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    let mut results = Vec::new();
    for target in &targets {
        println!("fuzz: {target}: running for {seconds} s");
        let result = run_target(&fuzz_dir, target, seconds)?;
        print_result(&root, target, &result);
        results.push((target.clone(), result));
    }

    let failed: Vec<&str> = results
        .iter()
        .filter(|(_, r)| !r.clean())
        .map(|(t, _)| t.as_str())
        .collect();
    let runs: u64 = results.iter().filter_map(|(_, r)| r.runs).sum();
    println!(
        "fuzz: {} target(s), {seconds} s each, {runs} runs: {} clean, {} failed{}",
        results.len(),
        results.len() - failed.len(),
        failed.len(),
        if failed.is_empty() {
            String::new()
        } else {
            format!(" ({})", failed.join(", "))
        }
    );
    Ok(if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The targets in fuzz/fuzz_targets/ (cargo-fuzz's layout: one file each,
/// named like its `[[bin]]`), sorted.
fn targets(fuzz_dir: &Path) -> Result<Vec<String>> {
    let dir = fuzz_dir.join("fuzz_targets");
    let mut names = Vec::new();
    for entry in fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "rs")
            && let Some(stem) = path.file_stem()
        {
            names.push(stem.to_string_lossy().into_owned());
        }
    }
    names.sort();
    Ok(names)
}

/// The requested targets in the order given, or all of them.
fn select(known: &[String], requested: &[String]) -> Result<Vec<String>> {
    if requested.is_empty() {
        return Ok(known.to_vec());
    }
    for t in requested {
        if !known.contains(t) {
            bail!(
                "no fuzz target {t:?}; the targets are: {}",
                known.join(", ")
            );
        }
    }
    Ok(requested.to_vec())
}

fn ensure_cargo_fuzz() -> Result<()> {
    if let Some(version) = cmd::stdout_of("cargo", &["fuzz", "--version"]) {
        println!("fuzz: using {}", version.trim());
        return Ok(());
    }
    println!("fuzz: cargo-fuzz is not installed: running `{INSTALL}`");
    let mut install = cmd::cargo(["install", "cargo-fuzz", "--locked"]);
    if let Err(e) = cmd::run(&mut install) {
        bail!("installing cargo-fuzz failed ({e:#}); install it by hand with `{INSTALL}`");
    }
    if cmd::stdout_of("cargo", &["fuzz", "--version"]).is_none() {
        bail!(
            "cargo-fuzz was installed but `cargo fuzz --version` still fails; \
             is ~/.cargo/bin on PATH? Otherwise install it by hand with `{INSTALL}`"
        );
    }
    Ok(())
}

/// What one target's run came to.
#[derive(Debug, Default, PartialEq)]
struct Outcome {
    /// Inputs executed, from libFuzzer's final stats.
    runs: Option<u64>,
    /// Seconds libFuzzer reports having fuzzed.
    seconds: Option<u64>,
    /// The input that crashed, hung or ran out of memory.
    artifact: Option<PathBuf>,
    /// The first lines saying what went wrong (panic message, sanitizer).
    reason: Option<String>,
    /// Inputs in the corpus directory afterwards.
    corpus: usize,
    /// `cargo fuzz` exited non-zero.
    exit_failed: bool,
    log: PathBuf,
}

impl Outcome {
    fn clean(&self) -> bool {
        !self.exit_failed && self.artifact.is_none()
    }

    /// "crash", "timeout", "oom", "leak": the prefix libFuzzer gives the
    /// artifact's file name.
    fn kind(&self) -> &str {
        self.artifact
            .as_deref()
            .and_then(Path::file_name)
            .and_then(|n| n.to_str())
            .and_then(|n| n.split('-').next())
            .unwrap_or("failure")
    }
}

fn run_target(fuzz_dir: &Path, target: &str, seconds: u64) -> Result<Outcome> {
    let corpus = fuzz_dir.join("corpus").join(target);
    let seeds = fuzz_dir.join("seeds").join(target);
    fs::create_dir_all(&corpus).with_context(|| format!("creating {}", corpus.display()))?;
    let log_path = fuzz_dir.join("logs").join(format!("{target}.log"));
    let mut log =
        fs::File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;

    let mut fuzz = cmd::cargo(["+nightly", "fuzz", "run", "--debug-assertions", target]);
    // New inputs go to the first corpus directory, so the seeds stay as committed.
    fuzz.arg(&corpus);
    if seeds.is_dir() {
        fuzz.arg(&seeds);
    }
    fuzz.args([
        "--".to_string(),
        format!("-max_total_time={seconds}"),
        format!("-timeout={INPUT_TIMEOUT_S}"),
        "-print_final_stats=1".to_string(),
    ]);
    fuzz.stdout(Stdio::inherit()).stderr(Stdio::piped());
    let mut child = fuzz
        .spawn()
        .with_context(|| format!("cannot start `{}`", cmd::describe(&fuzz)))?;
    // From libFuzzer's first line: the build `cargo fuzz run` may redo first
    // is not fuzzing time.
    let mut started = None;
    let mut parser = LogParser::default();
    let mut stderr = BufReader::new(child.stderr.take().expect("piped"));
    let mut raw = Vec::new();
    let mut echoed = 0;
    loop {
        raw.clear();
        if stderr.read_until(b'\n', &mut raw)? == 0 {
            break;
        }
        log.write_all(&raw)?;
        let line = String::from_utf8_lossy(&raw);
        let line = line.trim_end_matches(['\n', '\r']);
        if started.is_none() && line.starts_with("INFO: Seed:") {
            started = Some(Instant::now());
        }
        parser.observe(line);
        if !is_progress_line(line) {
            echoed += 1;
            if echoed <= ECHOED_LINES {
                eprintln!("    {line}");
            }
        }
    }
    if echoed > ECHOED_LINES {
        eprintln!(
            "    ({} more lines in {})",
            echoed - ECHOED_LINES,
            log_path.display()
        );
    }
    let status = child.wait()?;
    let mut outcome = parser.finish();
    // libFuzzer prints no `Done ... in N second(s)` when it stops at a crash.
    outcome.seconds = outcome
        .seconds
        .or_else(|| started.map(|t| t.elapsed().as_secs()));
    outcome.exit_failed = !status.success();
    outcome.corpus = fs::read_dir(&corpus).map_or(0, |d| d.count());
    outcome.log = log_path;
    Ok(outcome)
}

/// libFuzzer's periodic `#1024\tNEW cov: ...` lines and its closing
/// "recommended dictionary": the bulk of its output, kept in the log but
/// not echoed.
fn is_progress_line(line: &str) -> bool {
    if line.starts_with("######") || (line.starts_with('"') && line.contains("\" # Uses: ")) {
        return true;
    }
    let Some(rest) = line.strip_prefix('#') else {
        return false;
    };
    let digits = rest.chars().take_while(char::is_ascii_digit).count();
    digits > 0
        && ["NEW", "REDUCE", "pulse", "RELOAD"]
            .iter()
            .any(|w| rest[digits..].trim_start().starts_with(w))
}

/// Picks the facts out of `cargo fuzz run` output, line by line.
#[derive(Default)]
struct LogParser {
    outcome: Outcome,
    /// Runs from the last `#N` status line, when no final stats came.
    last_status_runs: Option<u64>,
    /// Lines of the failure report collected so far.
    reason: Vec<String>,
}

impl LogParser {
    fn observe(&mut self, line: &str) {
        let o = &mut self.outcome;
        if let Some(n) = line.strip_prefix("stat::number_of_executed_units:") {
            o.runs = n.trim().parse().ok();
        } else if let Some(rest) = line.strip_prefix("Done ") {
            // `Done 110080 runs in 31 second(s)`
            let words: Vec<&str> = rest.split_whitespace().collect();
            if let [runs, "runs", "in", secs, ..] = words[..] {
                o.runs = o.runs.or(runs.parse().ok());
                o.seconds = secs.parse().ok();
            }
        } else if let Some(rest) = line.strip_prefix('#') {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            if let Ok(n) = digits.parse() {
                self.last_status_runs = Some(n);
            }
        }
        if let Some((_, path)) = line.split_once("Test unit written to ") {
            o.artifact = Some(PathBuf::from(path.trim()));
        }
        // A panic is `thread '<unnamed>' panicked at FILE:LINE:COL:` then
        // the message; sanitizers and hangs say `==PID== ERROR: ...`.
        let wants_next = self.reason.len() == 1 && self.reason[0].contains("panicked at");
        if self.reason.is_empty() && (line.contains("panicked at") || line.contains("ERROR: "))
            || wants_next
        {
            self.reason.push(line.trim().to_string());
        }
    }

    fn finish(mut self) -> Outcome {
        self.outcome.runs = self.outcome.runs.or(self.last_status_runs);
        if !self.reason.is_empty() {
            self.outcome.reason = Some(self.reason.join(" "));
        }
        self.outcome
    }
}

fn print_result(root: &Path, target: &str, o: &Outcome) {
    let runs = o.runs.map_or("? runs".into(), |n| format!("{n} runs"));
    let secs = o.seconds.map_or("?".into(), |s| s.to_string());
    let crashes = if o.artifact.is_some() { 1 } else { 0 };
    let log = rel(root, &o.log);
    if o.clean() {
        println!(
            "fuzz: {target:<16} ok       {runs} in {secs} s, 0 crashes, corpus {} inputs",
            o.corpus
        );
        return;
    }
    let Some(artifact) = &o.artifact else {
        println!(
            "fuzz: {target:<16} FAILED   {runs} in {secs} s: cargo fuzz failed without a crash input; see {log}"
        );
        return;
    };
    let artifact = rel(root, artifact);
    println!(
        "fuzz: {target:<16} {:<8} {runs} in {secs} s, {crashes} crash (libFuzzer stops at the first)",
        o.kind().to_uppercase()
    );
    if let Some(reason) = &o.reason {
        println!("      {reason}");
    }
    println!("      input:     {artifact}");
    println!("      reproduce: cargo +nightly fuzz run --debug-assertions {target} {artifact}");
    println!("      minimise:  cargo +nightly fuzz tmin --debug-assertions {target} {artifact}");
    println!("      log:       {log}");
}

/// `path` relative to the repository root when it is inside it (the
/// commands above are run from there).
fn rel(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .display()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Outcome {
        let mut p = LogParser::default();
        for line in text.lines() {
            p.observe(line);
        }
        p.finish()
    }

    #[test]
    fn a_clean_run_reports_runs_and_seconds() {
        let o = parse(
            "#2\tINITED cov: 10 ft: 10 corp: 1/1b exec/s: 0 rss: 30Mb\n\
             #1024\tNEW cov: 12 ft: 14 corp: 2/5b lim: 4 exec/s: 0 rss: 31Mb\n\
             Done 110080 runs in 31 second(s)\n\
             stat::number_of_executed_units: 110080\n\
             stat::peak_rss_mb:              40\n",
        );
        assert_eq!(o.runs, Some(110080));
        assert_eq!(o.seconds, Some(31));
        assert!(o.artifact.is_none() && o.reason.is_none());
        assert!(o.clean());
    }

    #[test]
    fn a_panic_reports_its_message_and_input() {
        let o = parse(
            "#5000\tNEW cov: 12 ft: 14 corp: 2/5b\n\
             thread '<unnamed>' panicked at spawnprof/src/correlate.rs:430:40:\n\
             attempt to negate with overflow\n\
             note: run with `RUST_BACKTRACE=1`\n\
             ==123== ERROR: libFuzzer: deadly signal\n\
             artifact_prefix='/w/fuzz/artifacts/correlate/'; Test unit written to /w/fuzz/artifacts/correlate/crash-0123abc\n\
             stat::number_of_executed_units: 5123\n",
        );
        assert_eq!(o.runs, Some(5123));
        assert_eq!(
            o.artifact.as_deref(),
            Some(Path::new("/w/fuzz/artifacts/correlate/crash-0123abc"))
        );
        assert_eq!(o.kind(), "crash");
        assert_eq!(
            o.reason.as_deref(),
            Some(
                "thread '<unnamed>' panicked at spawnprof/src/correlate.rs:430:40: \
                 attempt to negate with overflow"
            )
        );
        assert!(!o.clean());
    }

    #[test]
    fn a_hang_is_a_timeout_and_runs_fall_back_to_the_last_status() {
        let o = parse(
            "#4096\tpulse  cov: 12 ft: 14 corp: 2/5b\n\
             ==77== ERROR: libFuzzer: timeout after 10 seconds\n\
             artifact_prefix='a/'; Test unit written to a/timeout-99\n",
        );
        assert_eq!(o.runs, Some(4096));
        assert_eq!(o.kind(), "timeout");
        assert_eq!(
            o.reason.as_deref(),
            Some("==77== ERROR: libFuzzer: timeout after 10 seconds")
        );
    }

    #[test]
    fn progress_lines_are_recognised() {
        assert!(is_progress_line("#1024\tNEW cov: 12 ft: 14"));
        assert!(is_progress_line("#65536\tpulse  cov: 12"));
        assert!(!is_progress_line("#2\tINITED cov: 10"));
        assert!(!is_progress_line("#123 DONE cov: 10"));
        assert!(!is_progress_line("INFO: Seed: 42"));
        assert!(is_progress_line("###### Recommended dictionary. ######"));
        assert!(is_progress_line(r#""\004\000\000\000" # Uses: 26698"#));
    }

    #[test]
    fn targets_are_checked_against_the_known_ones() {
        let known = vec!["btf".to_string(), "decode".to_string()];
        assert_eq!(select(&known, &[]).unwrap(), known);
        assert_eq!(
            select(&known, &["decode".into()]).unwrap(),
            vec!["decode".to_string()]
        );
        let err = select(&known, &["nope".into()]).unwrap_err().to_string();
        assert!(err.contains("btf, decode"), "{err}");
    }

    #[test]
    fn the_fuzz_crate_has_the_expected_targets() {
        let known = targets(&cmd::repo_root().join("fuzz")).unwrap();
        assert_eq!(
            known,
            ["assemble", "btf", "decode", "recording", "tracefs_format"]
        );
    }
}
