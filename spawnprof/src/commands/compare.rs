//! `spawnprof compare DIR...`: the benches of a fleet in one report.
use anyhow::Result;
use spawnprof::{
    cli::CompareArgs,
    fleet::{self, CompareOptions, FLEET_HTML},
    recording::OutputDir,
};

/// Flags printed on the terminal; the page has them all.
const MAX_PRINTED_FLAGS: usize = 30;

pub fn run(args: CompareArgs) -> Result<i32> {
    let out_dir = OutputDir::before_writing(&args.output);
    let opts = CompareOptions {
        dirs: args.dirs,
        out_dir: args.output.clone(),
        threshold: args.threshold,
        diff_nodes: args.diff_nodes,
    };
    let report = fleet::run(&opts)?;
    out_dir.hand_to_invoking_user()?;
    print!("{}", fleet::render(&report, MAX_PRINTED_FLAGS));
    eprintln!(
        "fleet report written to {}",
        args.output.join(FLEET_HTML).display()
    );
    Ok(0)
}
