//! Ctrl-C, SIGTERM and SIGHUP at every moment of a recording.
//!
//! - While the probes load and attach: the signal is caught (not the default
//!   death with a half-made output directory) and seen once they are ready;
//!   the recording stops before anything is traced ([`InterruptedBeforeTracing`]).
//! - While recording: tokio delivers it to the recording loop, which stops,
//!   keeps what was recorded and marks it interrupted.
//! - Whenever a signal is still waiting for the loop (or a bench for its next
//!   configuration), the next one quits at once.
//! - While the recording is drained and written: that work is synchronous, so
//!   tokio cannot deliver anything. A handler of our own, run in signal
//!   context next to tokio's, notes a first signal and exits at once on the
//!   next one (after an interrupt, the very next one). The kernel detaches
//!   every probe as our descriptors close.
//! - A hang-up (the ssh session or terminal went away) stops a recording
//!   like SIGTERM, and at once, in signal context, points stdout and stderr
//!   at /dev/null: printing to a dead terminal fails, and Rust's print
//!   macros panic on failure, which would lose the recording being written.
use std::sync::{
    Once,
    atomic::{AtomicU8, Ordering},
};

use anyhow::Result;
use tokio::signal::unix::{Signal, SignalKind, signal};

/// Signals are the recording loop's (tokio's) to handle.
const LOOP: u8 = 0;
/// Writing a recording that was not interrupted: note the first signal.
const WRITING: u8 = 1;
/// One more signal ends the process at once.
const QUIT_ON_NEXT: u8 = 2;

static PHASE: AtomicU8 = AtomicU8::new(LOOP);
/// Signals that arrived in the LOOP phase since it began.
static UNHANDLED: AtomicU8 = AtomicU8::new(0);

fn enter(phase: u8) {
    UNHANDLED.store(0, Ordering::SeqCst);
    PHASE.store(phase, Ordering::SeqCst);
}

/// The exit status of an interrupted recording, as a shell reports a
/// process killed by SIGINT.
pub const EXIT_INTERRUPTED: i32 = 130;

/// The recording was stopped while its probes were being set up: nothing
/// was traced and the probes are detached again.
#[derive(Debug)]
pub struct InterruptedBeforeTracing;

impl std::fmt::Display for InterruptedBeforeTracing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(
            "interrupted while the probes were loading: nothing was recorded, and every probe is detached",
        )
    }
}

impl std::error::Error for InterruptedBeforeTracing {}

/// A recording stopped by a signal, for a caller that runs several (the
/// bench) and must stop too.
#[derive(Debug)]
pub struct Interrupted;

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("interrupted")
    }
}

impl std::error::Error for Interrupted {}

/// Whether `e` is a Ctrl-C, SIGTERM or SIGHUP rather than a failure.
pub fn is_interruption(e: &anyhow::Error) -> bool {
    e.chain()
        .any(|c| c.is::<Interrupted>() || c.is::<InterruptedBeforeTracing>())
}

/// Ctrl-C (SIGINT), SIGTERM and SIGHUP, caught from the moment this is
/// made.
pub struct Interrupts {
    sigint: Signal,
    sigterm: Signal,
    sighup: Signal,
}

/// Which signal stopped the recording.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    CtrlC,
    Terminate,
    HangUp,
}

impl Interrupts {
    /// Must be called inside the tokio runtime.
    pub fn catch() -> Result<Self> {
        install_handler();
        enter(LOOP);
        Ok(Self {
            sigint: signal(SignalKind::interrupt())?,
            sigterm: signal(SignalKind::terminate())?,
            sighup: signal(SignalKind::hangup())?,
        })
    }

    /// The next Ctrl-C, SIGTERM or SIGHUP.
    pub async fn recv(&mut self) -> Stop {
        tokio::select! {
            _ = self.sigint.recv() => Stop::CtrlC,
            _ = self.sigterm.recv() => Stop::Terminate,
            _ = self.sighup.recv() => Stop::HangUp,
        }
    }

    /// Whether a signal arrived while we were busy (e.g. loading probes).
    /// The short sleep lets tokio's driver read its signal pipe, which it
    /// only does while the runtime waits.
    pub async fn arrived(&mut self) -> Option<Stop> {
        tokio::select! {
            biased;
            stop = self.recv() => Some(stop),
            _ = tokio::time::sleep(std::time::Duration::from_millis(1)) => None,
        }
    }

    /// Signals are tokio's to deliver again (between the recordings of a
    /// bench, after each one's writing phase).
    pub fn rearm(&self) {
        enter(LOOP);
    }

    /// The recording loop is over: from now on signals are handled in
    /// signal context. `interrupted`: the loop ended on a signal, so the next
    /// one quits at once.
    pub fn writing(self, interrupted: bool) {
        enter(if interrupted { QUIT_ON_NEXT } else { WRITING });
        // Dropping the streams leaves tokio's handler installed (it is
        // process-wide); it only stops waking anyone.
        drop(self);
    }
}

fn install_handler() {
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(|| {
        for sig in [libc::SIGINT, libc::SIGTERM] {
            // SAFETY: the action only touches an atomic and calls write(2)
            // and _exit(2), all async-signal-safe.
            let registered = unsafe { signal_hook_registry::register(sig, on_signal) };
            if let Err(e) = registered {
                crate::say!(
                    "spawnprof: warning: a second Ctrl-C will not quit at once while the report is written ({e})"
                );
            }
        }
        // SAFETY: open(2) and dup2(2) are async-signal-safe.
        if let Err(e) = unsafe { signal_hook_registry::register(libc::SIGHUP, on_hang_up) } {
            crate::say!("spawnprof: warning: a hang-up may lose the recording ({e})");
        }
    });
}

/// Runs in signal context, after (or before) tokio's own action.
fn on_signal() {
    match PHASE.load(Ordering::SeqCst) {
        // The first is tokio's to deliver; a second before it was acted on
        // means the user wants out now.
        LOOP if UNHANDLED.fetch_add(1, Ordering::SeqCst) >= 1 => quit_at_once(),
        WRITING => {
            PHASE.store(QUIT_ON_NEXT, Ordering::SeqCst);
            let note = b"\nspawnprof: the recording is being written; Ctrl-C again to quit at once (its reports may then be incomplete)\n";
            // SAFETY: write(2) on stderr with a static buffer.
            unsafe { libc::write(libc::STDERR_FILENO, note.as_ptr().cast(), note.len()) };
        }
        QUIT_ON_NEXT => quit_at_once(),
        _ => {}
    }
}

/// The terminal is gone: what we print from now on goes nowhere instead of
/// failing (and panicking).
fn on_hang_up() {
    // SAFETY: open(2), dup2(2) and close(2) on our own descriptors.
    unsafe {
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_WRONLY);
        if null >= 0 {
            libc::dup2(null, libc::STDOUT_FILENO);
            libc::dup2(null, libc::STDERR_FILENO);
            libc::close(null);
        }
    }
}

fn quit_at_once() {
    let note = b"\nspawnprof: quitting at once\n";
    // SAFETY: write(2) and _exit(2) are async-signal-safe; the kernel
    // closes our descriptors, which detaches every probe.
    unsafe {
        libc::write(libc::STDERR_FILENO, note.as_ptr().cast(), note.len());
        libc::_exit(EXIT_INTERRUPTED);
    }
}
