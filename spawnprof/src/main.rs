//! The `spawnprof` command: parse, dispatch to [`commands`], map errors
//! to exit statuses (2 for a bad command line, 130 for an interrupt).
mod commands;

use std::process::ExitCode;

use clap::Parser as _;
use spawnprof::{
    cli::{Cli, Command, UsageError},
    recorder::interrupt::{self, InterruptedBeforeTracing},
};

fn main() -> ExitCode {
    // A panic unwinds through the recording, whose drops detach every probe
    // and flush spawns.raw; say so after the standard message.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        // Not eprintln!: a panic while panicking (stderr gone) aborts.
        spawnprof::say!(
            "spawnprof: this is a bug in spawnprof; please report it with the message above. \
             Every probe is detached as spawnprof unwinds, and the spawns recorded so far stay in spawns.raw: \
             `spawnprof report DIR` rebuilds the recording from them."
        );
    }));
    let cli = Cli::parse();
    // Commands that only print end quietly on a closed pipe (`| head`, or
    // quitting `less`), as any Unix filter does. Record and bench keep
    // SIGPIPE ignored and print with say! (serve writes to sockets a
    // client may close), which never panics: a terminal
    // that went away must not cost a recording.
    if !matches!(
        cli.command,
        Command::Record(_) | Command::Bench(_) | Command::Serve(_) | Command::Top(_)
    ) {
        // SAFETY: restoring the default disposition before any thread starts.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    let result = match cli.command {
        Command::Record(args) => commands::record::run(args),
        Command::Probes(args) => commands::probes::run(&args).map(|()| 0),
        Command::Bench(args) => commands::bench::run(args),
        Command::Report { dir } => commands::report::run(&dir).map(|()| 0),
        Command::Diff { a, b, output } => commands::diff::run(&a, &b, &output).map(|t| {
            print!("{t}");
            eprintln!("differential flamegraphs written to {}", output.display());
            0
        }),
        Command::Compare(args) => commands::compare::run(args),
        Command::Serve(args) => commands::serve::run(args),
        Command::Top(args) => commands::top::run(args),
        Command::BenchReport { spawns } => commands::bench::report_timing(spawns).map(|()| 0),
    };
    match result {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        // say!, not eprintln!: the terminal may be gone (a closed pipe, a
        // hang-up), and a panic here would turn the exit status into 101.
        Err(e) if e.chain().any(|c| c.is::<InterruptedBeforeTracing>()) => {
            spawnprof::say!("spawnprof: {e:#}");
            ExitCode::from(interrupt::EXIT_INTERRUPTED as u8)
        }
        Err(e) if e.chain().any(|c| c.is::<UsageError>()) => {
            spawnprof::say!("spawnprof: error: {e:#}\n\nFor more information, try '--help'.");
            ExitCode::from(2)
        }
        Err(e) => {
            spawnprof::say!("spawnprof: error: {e:#}");
            ExitCode::from(1)
        }
    }
}
