//! `spawnprof report DIR`: re-render a saved recording or bench.
use std::path::Path;

use anyhow::Result;
use spawnprof::{
    analysis::Accumulator,
    bench,
    recording::{Recording, SPAWNS_FILE, Summary, ensure_writable, write_summary},
    report::{breakdown, export, findings, table},
    sys::term,
};

/// Rows of the process table printed.
const ROWS: usize = 40;

pub fn run(dir: &Path) -> Result<()> {
    let is_bench = dir.join(bench::BENCH_FILE).exists();
    // The reports are written next to the recording or bench (checked first:
    // a killed recording's rebuild writes there too).
    if is_bench || dir.join(SPAWNS_FILE).exists() {
        ensure_writable(
            dir,
            &format!(
                "the reports are written into it; run as a user who may write there, or copy it \
                 first: cp -r {} /tmp/copy && spawnprof report /tmp/copy",
                dir.display()
            ),
        )?;
    }
    if is_bench {
        return redraw_bench(dir);
    }
    let summary = summary(dir)?;
    let rec = Recording::open(dir);
    // Stream the records: a recording can hold millions of spawns, and the
    // table shows only the first ones.
    let mut records = Vec::new();
    rec.records(|r| {
        records.push(r.clone());
        Ok(records.len() < ROWS)
    })?;
    for path in export::write_all_from_recording(dir)? {
        eprintln!("wrote {}", path.display());
    }
    rec.hand_to_invoking_user()?;
    let width = term::width(&std::io::stdout());
    print!(
        "{}",
        table::processes(
            &records,
            ROWS,
            summary.counts.processes(),
            "all of them in spawns.jsonl",
            width
        )
    );
    println!();
    print!(
        "{}",
        table::breakdown(&breakdown::of_summary(&summary), width)
    );
    if let Some(p) = &summary.placement {
        print!("{}", table::placement(p));
    }
    for finding in findings::findings(summary.hidden_costs.as_ref()) {
        println!("finding: {finding}");
    }
    Ok(())
}

/// A bench directory: its charts redrawn from bench.json.
fn redraw_bench(dir: &Path) -> Result<()> {
    let report = bench::load_report(dir)?;
    let rec = Recording::open(dir);
    bench::page::write(dir, &report)?;
    rec.hand_to_invoking_user()?;
    print!("{}", bench::render(&report));
    eprintln!("charts and bench.html written to {}", dir.display());
    Ok(())
}

/// The summary, with a warning where it is not whole. One rebuilt from
/// spawns.jsonl is saved, so every output and a later `spawnprof diff`
/// read the rebuilt figures.
fn summary(dir: &Path) -> Result<Summary> {
    let mut summary = Recording::open(dir).summary()?;
    if let Some(why) = &summary.unfinished {
        eprintln!("warning: {why}");
        write_summary(dir, &summary)?;
    }
    let older = summary.spawn_time.is_none() || summary.hidden_costs.is_none();
    if older && summary.counts.spawns + summary.counts.threads > 0 {
        // A recording made before spawnprof kept the spawn-time tree or
        // the hidden costs: they are rebuilt from the spawns and kept, for
        // the next report and diff.
        let mut acc = Accumulator::default();
        Recording::open(dir).records(|r| {
            acc.add(r);
            Ok(true)
        })?;
        summary.spawn_time = acc.spawn_time();
        summary.hidden_costs = Some(acc.hidden_costs());
        write_summary(dir, &summary)?;
    }
    if let Some(why) = &summary.spawns_incomplete {
        eprintln!(
            "warning: spawns.jsonl lacks some of the {} spawns counted: {why}",
            summary.counts.spawns
        );
    }
    Ok(summary)
}
