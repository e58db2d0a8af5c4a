//! `bench.json`: where a bench's figures are kept, read back by `report`
//! and `diff`.
use std::path::Path;

use anyhow::{Context as _, Result};

use super::results::BenchReport;

pub const BENCH_FILE: &str = "bench.json";

/// Reads `bench.json` from a bench directory.
pub fn load_report(dir: &Path) -> Result<BenchReport> {
    let path = dir.join(BENCH_FILE);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("{} is corrupt or from another version", path.display()))
}

/// Writes `bench.json` whole or not at all (a new file renamed over the old).
pub(super) fn write_bench_json(dir: &Path, report: &BenchReport) -> Result<()> {
    let path = dir.join(BENCH_FILE);
    let tmp = dir.join(format!(".{BENCH_FILE}.tmp"));
    std::fs::write(&tmp, serde_json::to_string_pretty(report)? + "\n")
        .and_then(|()| std::fs::rename(&tmp, &path))
        .with_context(|| format!("writing {}", path.display()))
}
