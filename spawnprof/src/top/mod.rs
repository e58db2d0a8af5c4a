//! `spawnprof top`: a live view of the same kernel histograms `serve`
//! exports, one row per comm, refreshed every interval. start the probes →
//! take the terminal (ratatui restores it on exit and, through its panic
//! hook, on a panic) → loop: read, draw, handle keys → give the terminal
//! back → detach.
pub mod rows;
pub mod view;

use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};

use crate::{
    metrics::Snapshot,
    probe::SessionOptions,
    serve::{Live, Target},
};
use rows::SortBy;

pub struct TopOptions {
    pub target: Target,
    pub labels: crate::probe::metrics::Labels,
    /// Free a label idle this long (zero: never).
    pub label_idle: Duration,
    pub interval: Duration,
    pub probes: SessionOptions,
}

/// Set by SIGTERM or SIGHUP: the loop ends and the terminal is restored.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop() {
    STOP.store(true, Ordering::Relaxed);
}

/// What the keys have set.
struct Keys {
    sort: SortBy,
    reverse: bool,
    quit: bool,
}

pub fn run(opts: TopOptions) -> Result<()> {
    for sig in [libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic.
        unsafe { signal_hook_registry::register(sig, || on_stop()) }
            .context("installing the SIGTERM handler")?;
    }
    let mut live = Live::start(&opts.target, opts.labels, &opts.probes)?;
    live.recycle_labels_after(opts.label_idle);
    let scope = super::serve::describe(&opts.target);
    let mut terminal = ratatui::try_init().context("taking over the terminal")?;
    let result = event_loop(&mut terminal, &mut live, &scope, opts.interval);
    ratatui::restore();
    result
}

fn event_loop(
    terminal: &mut ratatui::DefaultTerminal,
    live: &mut Live,
    scope: &str,
    interval: Duration,
) -> Result<()> {
    let tty = Tty::open()?;
    let mut keys = Keys {
        sort: SortBy::Rate,
        reverse: false,
        quit: false,
    };
    let mut before: Snapshot = live.snapshot();
    let mut taken = Instant::now();
    let mut shown = Vec::new();
    let mut next = Instant::now();
    while !keys.quit && !STOP.load(Ordering::Relaxed) {
        live.keep_fork_probes()?;
        if Instant::now() >= next {
            let now = live.snapshot();
            let seconds = taken.elapsed().as_secs_f64();
            shown = rows::rows(&now, &before, seconds);
            (before, taken) = (now, Instant::now());
            next = taken + interval;
        }
        rows::sort(&mut shown, keys.sort, keys.reverse);
        let header = view::Header {
            scope,
            sort: keys.sort,
            reverse: keys.reverse,
            capped: before.capped,
            lost: before.lost.values().sum(),
            by_cgroup: live.labels.cgroup_k.is_some(),
            by_exec: live.labels.by_exec,
        };
        terminal.draw(|f| view::draw(f, &shown, &header))?;
        let wait = next.saturating_duration_since(Instant::now());
        match tty.input(wait.min(Duration::from_millis(250))) {
            // Every key crossterm has read, not only the first.
            Input::Ready => {
                while event::poll(Duration::ZERO)? {
                    handle(event::read()?, &mut keys);
                }
            }
            Input::None => {}
            Input::HungUp => keys.quit = true,
        }
    }
    Ok(())
}

enum Input {
    Ready,
    None,
    /// The terminal is gone (its window or tmux session closed).
    HungUp,
}

/// The terminal keys come from: stdin, or /dev/tty when stdin is not one
/// (as crossterm reads them).
struct Tty {
    fd: i32,
    _file: Option<std::fs::File>,
}

impl Tty {
    fn open() -> Result<Self> {
        use std::os::fd::AsRawFd as _;
        // SAFETY: isatty only looks at the descriptor.
        if unsafe { libc::isatty(libc::STDIN_FILENO) } == 1 {
            return Ok(Self {
                fd: libc::STDIN_FILENO,
                _file: None,
            });
        }
        let file = std::fs::File::open("/dev/tty").context("top needs a terminal: /dev/tty")?;
        Ok(Self {
            fd: file.as_raw_fd(),
            _file: Some(file),
        })
    }

    /// Waits up to `wait` for a key with poll(2). Crossterm's own poll
    /// spins for ever on a terminal that hung up, deaf to SIGTERM, so it is
    /// only asked once there is input; a signal ends the wait early.
    fn input(&self, wait: Duration) -> Input {
        let mut fd = libc::pollfd {
            fd: self.fd,
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = wait.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: one valid pollfd for the duration of the call.
        if unsafe { libc::poll(&mut fd, 1, ms) } <= 0 {
            return Input::None;
        }
        if fd.revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0 {
            Input::HungUp
        } else {
            Input::Ready
        }
    }
}

fn handle(ev: Event, keys: &mut Keys) {
    let Event::Key(k) = ev else {
        return;
    };
    if k.kind != KeyEventKind::Press {
        return;
    }
    match k.code {
        KeyCode::Char('q') | KeyCode::Esc => keys.quit = true,
        KeyCode::Char('c') if k.modifiers.contains(KeyModifiers::CONTROL) => keys.quit = true,
        KeyCode::Char('s') | KeyCode::Right | KeyCode::Tab => keys.sort = keys.sort.next(),
        KeyCode::Char('r') => keys.reverse = !keys.reverse,
        KeyCode::Char('n') => keys.sort = SortBy::Comm,
        KeyCode::Char('t') => keys.sort = SortBy::Total,
        _ => {}
    }
}
