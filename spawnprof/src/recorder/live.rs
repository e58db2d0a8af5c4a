//! The live count a recording shows on a terminal: the spawns recorded so
//! far, redrawn a few times a second.
//!
//! With `-p` spawnprof has the terminal to itself: a spinner line. With a
//! command, the command writes to the same terminal, and a redrawn line
//! would tear its output apart; so, like apt's progress line, the count
//! gets the terminal's bottom row and the command scrolls in the rows
//! above it (a scroll region), untouched. Nothing is drawn when stderr is
//! not a terminal, when `TERM` is `dumb`, or with `--no-live`.
use std::io::{IsTerminal as _, Write as _};

use super::{RecordOptions, Target};

/// How the count is drawn.
pub(super) enum LiveCount {
    Spinner(indicatif::ProgressBar),
    BottomRow(BottomRow),
}

impl LiveCount {
    /// Whether and how this recording draws its count.
    pub(super) fn for_recording(opts: &RecordOptions) -> Option<Self> {
        let terminal =
            std::io::stderr().is_terminal() && std::env::var("TERM").map_or(true, |t| t != "dumb");
        if !(opts.announce && opts.live && terminal) {
            return None;
        }
        match opts.target {
            Target::Pid(_) => {
                let bar = indicatif::ProgressBar::new_spinner();
                bar.set_style(
                    indicatif::ProgressStyle::with_template(
                        "{spinner} recording [{elapsed}] {msg}",
                    )
                    .expect("valid template"),
                );
                Some(Self::Spinner(bar))
            }
            Target::Command(_) => BottomRow::take().map(Self::BottomRow),
        }
    }

    pub(super) fn show(&mut self, elapsed: std::time::Duration, spawns: u64) {
        let text = format!("{spawns} spawns");
        match self {
            Self::Spinner(bar) => {
                bar.set_message(text);
                bar.tick();
            }
            Self::BottomRow(row) => row.draw(&format!(
                "spawnprof recording [{}s] {text}",
                elapsed.as_secs()
            )),
        }
    }

    /// Clears the count and gives the terminal back as it was.
    pub(super) fn finish(self) {
        match self {
            Self::Spinner(bar) => bar.finish_and_clear(),
            Self::BottomRow(row) => drop(row),
        }
    }
}

/// The terminal's bottom row, kept out of the scroll region while the
/// recording runs. Dropping it restores the whole screen for scrolling.
pub(super) struct BottomRow {
    rows: u16,
    cols: u16,
}

/// The size of the terminal behind stderr, when it has one.
fn size() -> Option<(u16, u16)> {
    // SAFETY: TIOCGWINSZ fills the winsize we own, or fails.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    let ok = unsafe { libc::ioctl(libc::STDERR_FILENO, libc::TIOCGWINSZ, &mut ws) } == 0;
    (ok && ws.ws_row >= 3 && ws.ws_col >= 20).then_some((ws.ws_row, ws.ws_col))
}

fn emit(bytes: &str) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(bytes.as_bytes());
    let _ = err.flush();
}

impl BottomRow {
    /// Reserves the bottom row: a new line makes room, the scroll region
    /// shrinks by one row, and the cursor goes back where the command will
    /// write next.
    fn take() -> Option<Self> {
        let (rows, cols) = size()?;
        emit(&format!("\n\x1b7\x1b[1;{}r\x1b8\x1b[1A", rows - 1));
        Some(Self { rows, cols })
    }

    /// Writes `text` on the bottom row, leaving the cursor where it was.
    /// A resized terminal gets its scroll region set again first.
    fn draw(&mut self, text: &str) {
        if let Some((rows, cols)) = size()
            && (rows, cols) != (self.rows, self.cols)
        {
            (self.rows, self.cols) = (rows, cols);
            emit(&format!("\x1b7\x1b[1;{}r\x1b8", rows - 1));
        }
        let shown: String = text.chars().take(usize::from(self.cols) - 1).collect();
        emit(&format!(
            "\x1b7\x1b[{};1H\x1b[2K\x1b[7m{shown}\x1b[0m\x1b8",
            self.rows
        ));
    }
}

impl Drop for BottomRow {
    fn drop(&mut self) {
        // Whole screen scrolls again; the count's row is cleared.
        emit(&format!("\x1b7\x1b[r\x1b[{};1H\x1b[2K\x1b8", self.rows));
    }
}
