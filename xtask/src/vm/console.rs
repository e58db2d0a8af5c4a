//! The console protocol between /init and the host: /init prints
//! `MARKER ready`, then `MARKER begin NAME`, the command's output and
//! `MARKER end NAME rc=N` for each command; the host splits the serial
//! console into [`Section`]s along those lines.
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Result, anyhow, ensure};

use super::qemu::tail;

/// Marker lines carry a per-run nonce so neither a command's output nor a
/// stale log can be mistaken for them.
pub fn marker(nonce: &str) -> String {
    format!("@@spawnprof-vm-{nonce}@@")
}

pub fn make_nonce() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{:x}{:x}", nanos, std::process::id())
}

/// One command's output as read back from the console.
#[derive(Debug)]
pub struct Section {
    pub name: String,
    /// None when the VM died before the command finished.
    pub rc: Option<i32>,
    /// How long it ran, when it finished.
    pub seconds: Option<f64>,
    pub body: String,
}

impl Section {
    /// A command the VM died in (or was killed in).
    fn unfinished((name, body): (String, Vec<&str>)) -> Section {
        Section {
            name,
            rc: None,
            seconds: None,
            body: body.join("\n"),
        }
    }

    /// Name, exit status and output for messages. Long outputs (a verifier
    /// log runs to 100k lines) keep their head, where errors are usually
    /// stated, and their tail; the log file has all of it.
    pub fn describe(&self) -> String {
        const KEEP: usize = 12;
        let rc = match (self.rc, self.seconds) {
            (Some(rc), Some(s)) => format!("exit status {rc}, {s:.1} s"),
            (Some(rc), None) => format!("exit status {rc}"),
            (None, _) => "did not finish".to_string(),
        };
        let lines: Vec<&str> = self.body.trim_end().lines().collect();
        let shown = if lines.len() > 2 * KEEP {
            let omitted = format!("[... {} lines omitted ...]", lines.len() - 2 * KEEP);
            [
                &lines[..KEEP],
                &[omitted.as_str()],
                &lines[lines.len() - KEEP..],
            ]
            .concat()
            .join("\n")
        } else {
            lines.join("\n")
        };
        format!("`{}` ({rc}):\n{}", self.name, indent(&shown))
    }
}

/// Splits the console text into the commands' outputs using the marker lines.
/// Markers are looked for anywhere in a line, in case something (firmware
/// escapes, a stray kernel message) got printed in front of them.
pub fn parse_sections(console: &str, nonce: &str) -> Result<Vec<Section>> {
    let mark = marker(nonce);
    let mut ready = false;
    let mut sections = Vec::new();
    let mut open: Option<(String, Vec<&str>)> = None;
    for line in console.lines() {
        let Some(at) = line.find(&mark) else {
            if let Some((_, body)) = open.as_mut() {
                body.push(line);
            }
            continue;
        };
        let directive = line[at + mark.len()..].trim();
        if directive == "ready" {
            ready = true;
        } else if let Some(name) = directive.strip_prefix("begin ") {
            sections.extend(open.take().map(Section::unfinished));
            open = Some((name.to_string(), Vec::new()));
        } else if let Some(rest) = directive.strip_prefix("end ")
            && let Some((name, mut body)) = open.take()
        {
            // /init echoes one newline after the output in case it lacked one.
            if body.last() == Some(&"") {
                body.pop();
            }
            let field = |key: &str| {
                rest.split_whitespace()
                    .find_map(|f| f.strip_prefix(key)?.parse::<i64>().ok())
            };
            sections.push(Section {
                name,
                rc: field("rc=").and_then(|rc| i32::try_from(rc).ok()),
                seconds: field("cs=").map(|cs| cs as f64 / 100.0),
                body: body.join("\n"),
            });
        }
    }
    sections.extend(open.map(Section::unfinished));
    ensure!(
        ready,
        "the VM never reached /init; last console lines:\n{}",
        tail(console, 15)
    );
    Ok(sections)
}

pub fn section<'a>(sections: &'a [Section], name: &str) -> Result<&'a Section> {
    sections
        .iter()
        .find(|s| s.name == name)
        .ok_or_else(|| anyhow!("no output from `{name}` came back from the VM (did it crash?)"))
}

/// A section that must have exited 0.
pub fn ok_section<'a>(sections: &'a [Section], name: &str) -> Result<&'a Section> {
    let s = section(sections, name)?;
    ensure!(s.rc == Some(0), "{}", s.describe());
    Ok(s)
}

pub fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_round_trip() {
        let n = "abc";
        let m = marker(n);
        let console = format!(
            "boot noise\n\x1b[2J{m} ready\n{m} begin one\nhello\n\n{m} end one rc=0 cs=1234\n\
             {m} begin two\npartial"
        );
        let s = parse_sections(&console, n).expect("parses");
        assert_eq!(s.len(), 2);
        assert_eq!(
            (s[0].name.as_str(), s[0].rc, s[0].body.as_str()),
            ("one", Some(0), "hello")
        );
        assert_eq!(s[0].seconds, Some(12.34));
        assert_eq!(
            (s[1].name.as_str(), s[1].rc, s[1].body.as_str()),
            ("two", None, "partial")
        );
    }
}
