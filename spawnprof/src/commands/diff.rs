//! `spawnprof diff A B`: two recordings, or two benches (node against node).
use std::path::Path;

use anyhow::{Result, bail};
use spawnprof::{bench::diff as bench_diff, recording::OutputDir, report::diff, sys::term};

/// Two recordings, or two benches (node against node).
pub fn run(a: &Path, b: &Path, out: &Path) -> Result<String> {
    let out_dir = OutputDir::before_writing(out);
    let table = match (bench_diff::is_bench(a), bench_diff::is_bench(b)) {
        (true, true) => bench_diff::run(a, b, out)?,
        (false, false) => diff::run(a, b, out, term::width(&std::io::stdout()))?,
        (a_bench, _) => {
            let (bench, recording) = if a_bench { (a, b) } else { (b, a) };
            bail!(
                "{} is a bench and {} a recording: compare two benches (node against node) or two recordings",
                bench.display(),
                recording.display()
            )
        }
    };
    out_dir.hand_to_invoking_user()?;
    Ok(table)
}
