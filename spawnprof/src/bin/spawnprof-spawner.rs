//! spawnprof-spawner: spawn N processes with one method and print one JSON
//! line with the timings. See `spawnprof::workload` and `--help`.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use spawnprof::{
    cli::UsageError,
    workload::{self, Config},
};

/// Reference spawner for spawnprof: creates --count processes with --method
/// and times only the spawn calls (children are reaped untimed). Prints one
/// JSON object on stdout; the children's stdout goes to stderr.
#[derive(Parser)]
#[command(name = "spawnprof-spawner", version)]
struct Cli {
    #[command(flatten)]
    config: Config,
}

fn main() -> ExitCode {
    // clap exits with status 2 on bad arguments.
    let cli = Cli::parse();
    // Children inherit dispositions: Rust ignores SIGPIPE at startup, but the
    // raw methods (fork-exec, vfork-exec, clone3-vfork, zygote) should start
    // programs with the default, like std and posix_spawn do.
    // SAFETY: setting a default disposition, single-threaded.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let mut out = match workload::isolate_stdout() {
        Ok(f) => f,
        Err(e) => {
            eprintln!("spawnprof-spawner: cannot set up stdout: {e}");
            return ExitCode::from(1);
        }
    };
    // SAFETY: main is still single-threaded here and calls run() once.
    match unsafe { workload::run(&cli.config) } {
        Ok(result) => {
            let mut line = serde_json::to_string(&result).expect("result serialises");
            line.push('\n');
            if let Err(e) = out.write_all(line.as_bytes()) {
                eprintln!("spawnprof-spawner: writing the result: {e}");
                return ExitCode::from(1);
            }
            ExitCode::SUCCESS
        }
        Err(e) if e.is::<UsageError>() => {
            eprintln!("spawnprof-spawner: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("spawnprof-spawner: error: {e:#}");
            ExitCode::from(1)
        }
    }
}
