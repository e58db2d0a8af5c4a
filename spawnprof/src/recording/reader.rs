//! Reading a saved recording back: the summary, and the spawns one at a
//! time.
use std::{
    fs::{self, File},
    io::{BufRead as _, BufReader},
    path::Path,
};

use anyhow::{Context as _, Result};

use super::{SPAWNS_FILE, SUMMARY_FILE, Summary};
use crate::model::SpawnRecord;

/// Reads `summary.json` of a recording.
pub fn read_summary(dir: &Path) -> Result<Summary> {
    let summary_path = dir.join(SUMMARY_FILE);
    let text = fs::read_to_string(&summary_path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => anyhow::anyhow!(
            "{} is not a spawnprof recording (no {SUMMARY_FILE})",
            dir.display()
        ),
        std::io::ErrorKind::PermissionDenied => anyhow::anyhow!(
            "cannot read {}: permission denied; run as a user who may read it (or with sudo)",
            summary_path.display()
        ),
        _ => anyhow::Error::new(e).context(format!("reading {}", summary_path.display())),
    })?;
    parse_summary(&text, &summary_path)
}

/// Calls `f` with each record of `spawns.jsonl` in order, one at a time
/// (a recording may hold millions), until `f` returns `false`. Returns how
/// many records were read.
pub fn for_each_record(dir: &Path, f: impl FnMut(&SpawnRecord) -> Result<bool>) -> Result<u64> {
    let spawns_path = dir.join(SPAWNS_FILE);
    let file =
        File::open(&spawns_path).with_context(|| format!("opening {}", spawns_path.display()))?;
    each_spawn(
        BufReader::with_capacity(1 << 20, file).lines(),
        &spawns_path,
        f,
    )
}

/// Reads a whole recording back (tests, small recordings). A corrupt line
/// is an error naming the file and line.
pub fn load_recording(dir: &Path) -> Result<(Summary, Vec<SpawnRecord>)> {
    let summary = read_summary(dir)?;
    let mut records = Vec::new();
    for_each_record(dir, |r| {
        records.push(r.clone());
        Ok(true)
    })?;
    Ok((summary, records))
}

/// [`load_recording`] on the contents of the two files (fuzzing, tests):
/// the same parsing and checks, with errors naming the bare file names.
pub fn parse_recording(summary: &str, spawns: &str) -> Result<(Summary, Vec<SpawnRecord>)> {
    let summary = parse_summary(summary, Path::new(SUMMARY_FILE))?;
    let lines = spawns.lines().map(|l| Ok(l.to_string()));
    let records = parse_spawns(lines, Path::new(SPAWNS_FILE))?;
    Ok((summary, records))
}

fn parse_summary(text: &str, summary_path: &Path) -> Result<Summary> {
    serde_json::from_str(text).with_context(|| {
        format!(
            "{} is corrupt or from another version",
            summary_path.display()
        )
    })
}

/// One [`SpawnRecord`] per non-blank line of `spawns_path`.
fn parse_spawns(
    lines: impl Iterator<Item = std::io::Result<String>>,
    spawns_path: &Path,
) -> Result<Vec<SpawnRecord>> {
    let mut records = Vec::new();
    each_spawn(lines, spawns_path, |r| {
        records.push(r.clone());
        Ok(true)
    })?;
    Ok(records)
}

/// Parses lines into records and hands each to `f` until it returns false.
fn each_spawn(
    lines: impl Iterator<Item = std::io::Result<String>>,
    spawns_path: &Path,
    mut f: impl FnMut(&SpawnRecord) -> Result<bool>,
) -> Result<u64> {
    let mut n = 0;
    for (i, line) in lines.enumerate() {
        let line = line.with_context(|| format!("reading {}", spawns_path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let r: SpawnRecord = serde_json::from_str(&line).with_context(|| {
            format!(
                "{}:{} is not a valid spawn record (truncated or corrupt recording)",
                spawns_path.display(),
                i + 1
            )
        })?;
        n += 1;
        if !f(&r)? {
            break;
        }
    }
    Ok(n)
}
