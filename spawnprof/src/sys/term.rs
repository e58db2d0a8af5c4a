//! The terminal spawnprof prints to: how wide it is.
use std::os::fd::AsRawFd;

/// Columns to fit printed tables into: `COLUMNS` when set to a number (a
/// user's override, and what scripts set), else the width of the terminal
/// behind `out`; `None` when `out` is not a terminal (a pipe or a file
/// keeps every character).
pub fn width(out: &impl AsRawFd) -> Option<usize> {
    let from_env = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse::<usize>().ok())
        .filter(|&c| c > 0);
    from_env.or_else(|| window_width(out.as_raw_fd()))
}

fn window_width(fd: i32) -> Option<usize> {
    // SAFETY: TIOCGWINSZ writes a winsize into the struct we own; on a
    // descriptor that is not a terminal it fails and writes nothing.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    let ok = unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) } == 0;
    (ok && ws.ws_col > 0).then_some(usize::from(ws.ws_col))
}
