//! The mechanism every stage must resolve to, per guest kernel and per
//! `spawnprof record` options, and the known gaps whose data is not
//! asserted, read from the tables in docs/KERNELS.md: the document is the
//! test's expectation, so the two cannot drift apart.
use anyhow::{Result, anyhow, bail, ensure};

/// The document, compiled in so that a change to it rebuilds xtask.
const KERNELS_MD: &str = include_str!("../../../docs/KERNELS.md");
/// What a table heading starts with: "### `spawnprof record --no-fentry`".
const HEADING: &str = "### `spawnprof record";
/// The heading of the known-gaps table.
const GAPS: &str = "## Known gaps";

/// A stage whose data a kernel does not reliably give through a mechanism.
#[derive(Debug, PartialEq)]
pub struct Gap {
    pub kernels: Vec<String>,
    pub stages: Vec<String>,
    pub mechanism: String,
    pub why: String,
}

impl Gap {
    pub fn covers(&self, kernel: &str, stage: &str, mechanism: &str) -> bool {
        self.kernels.iter().any(|k| k == kernel)
            && self.stages.iter().any(|s| s == stage)
            && self.mechanism == mechanism
    }
}

/// Everything docs/KERNELS.md expects.
pub struct Expectations {
    pub tables: Vec<Table>,
    pub gaps: Vec<Gap>,
}

/// One table: the stages' mechanisms under one set of options.
#[derive(Debug)]
pub struct Table {
    /// The options after `spawnprof record`, e.g. `--no-fentry` or "".
    pub flags: String,
    /// The kernel columns, as `Guest::name`s.
    pub kernels: Vec<String>,
    /// (stage, one mechanism per kernel column).
    pub rows: Vec<(String, Vec<String>)>,
}

impl Table {
    /// (stage, mechanism) for `kernel`, every row.
    pub fn column(&self, kernel: &str) -> Result<Vec<(&str, &str)>> {
        let i = self
            .kernels
            .iter()
            .position(|k| k == kernel)
            .ok_or_else(|| {
                anyhow!(
                    "docs/KERNELS.md's `spawnprof record {}` table has no column {kernel}",
                    self.flags
                )
            })?;
        Ok(self
            .rows
            .iter()
            .map(|(stage, cells)| (stage.as_str(), cells[i].as_str()))
            .collect())
    }
}

/// What docs/KERNELS.md expects.
pub fn expectations() -> Result<Expectations> {
    parse(KERNELS_MD)
}

impl Expectations {
    /// The table for the options `flags`.
    pub fn table(&self, flags: &str) -> Result<&Table> {
        self.tables
            .iter()
            .find(|t| t.flags == flags)
            .ok_or_else(|| anyhow!("docs/KERNELS.md has no table headed {HEADING} {flags}`"))
    }

    pub fn gap(&self, kernel: &str, stage: &str, mechanism: &str) -> Option<&Gap> {
        self.gaps
            .iter()
            .find(|g| g.covers(kernel, stage, mechanism))
    }
}

/// Which table the lines being read belong to.
enum Reading {
    Nothing,
    Mechanisms,
    Gaps,
}

fn parse(text: &str) -> Result<Expectations> {
    let mut tables: Vec<Table> = Vec::new();
    let mut gaps = Vec::new();
    let mut reading = Reading::Nothing;
    for (n, line) in text.lines().enumerate() {
        let at = || format!("docs/KERNELS.md line {}", n + 1);
        if let Some(rest) = line.strip_prefix(HEADING) {
            let flags = rest
                .strip_suffix('`')
                .ok_or_else(|| anyhow!("{}: the heading should end in a backtick", at()))?;
            tables.push(Table {
                flags: flags.trim().to_string(),
                kernels: Vec::new(),
                rows: Vec::new(),
            });
            reading = Reading::Mechanisms;
            continue;
        }
        if line.starts_with('#') {
            reading = if line.trim() == GAPS {
                Reading::Gaps
            } else {
                Reading::Nothing
            };
            continue;
        }
        let Some(cells) = row_cells(line) else {
            continue;
        };
        if cells
            .iter()
            .all(|c| c.chars().all(|ch| ch == '-' || ch == ':'))
        {
            continue; // the separator row
        }
        match reading {
            Reading::Nothing => {}
            Reading::Mechanisms => {
                let table = tables.last_mut().expect("reading a table");
                table_row(table, &cells).map_err(|e| anyhow!("{}: {e}", at()))?
            }
            Reading::Gaps if cells[0] == "kernel" => {} // the header
            Reading::Gaps => gaps.push(gap_row(&cells).map_err(|e| anyhow!("{}: {e}", at()))?),
        }
    }
    ensure!(
        !tables.is_empty(),
        "docs/KERNELS.md has no `{HEADING}` tables"
    );
    Ok(Expectations { tables, gaps })
}

fn table_row(table: &mut Table, cells: &[&str]) -> Result<()> {
    if table.kernels.is_empty() {
        ensure!(cells[0] == "stage", "the header should start with `stage`");
        table.kernels = cells[1..].iter().map(|c| c.to_string()).collect();
        return Ok(());
    }
    ensure!(
        cells.len() == table.kernels.len() + 1,
        "{} cells, expected {}",
        cells.len(),
        table.kernels.len() + 1
    );
    let mechanisms = cells[1..].iter().map(|c| c.to_string()).collect();
    table
        .rows
        .push((cells[0].trim_matches('`').to_string(), mechanisms));
    Ok(())
}

/// `| kernel, kernel | stage, stage | mechanism | why |`
fn gap_row(cells: &[&str]) -> Result<Gap> {
    let [kernels, stages, mechanism, why] = cells else {
        bail!("a known gap has 4 cells: kernels, stages, mechanism, why");
    };
    let list = |cell: &str| {
        cell.split(',')
            .map(|c| c.trim().trim_matches('`').to_string())
            .collect()
    };
    Ok(Gap {
        kernels: list(kernels),
        stages: list(stages),
        mechanism: mechanism.to_string(),
        why: why.to_string(),
    })
}

/// The cells of a markdown table row, None for any other line.
fn row_cells(line: &str) -> Option<Vec<&str>> {
    let inner = line.trim().strip_prefix('|')?.strip_suffix('|')?;
    Some(inner.split('|').map(str::trim).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::guests::GUESTS;
    use crate::vm::runs::RUNS;

    #[test]
    fn tables_parse_with_a_column_per_guest_and_a_table_per_run() {
        let text = "intro\n### `spawnprof record`\n\n| stage | 6.1 | 5.10 |\n|---|---|---|\n\
                    | `clone` | fentry | kprobe |\n\n### `spawnprof record --no-fentry`\n\
                    | stage | 6.1 |\n|---|---|\n| clone | kprobe |\n";
        let e = parse(text).unwrap();
        let t = &e.tables;
        assert_eq!(t[0].flags, "");
        assert_eq!(t[0].column("5.10").unwrap(), [("clone", "kprobe")]);
        assert_eq!(e.table("--no-fentry").unwrap().rows.len(), 1);
        assert!(e.table("--low-overhead").is_err());
        assert!(t[1].column("5.10").is_err());
        assert!(e.gaps.is_empty());
        assert!(parse("### `spawnprof record`\n| stage | a |\n|-|-|\n| x | 1 | 2 |").is_err());
    }

    #[test]
    fn known_gaps_name_kernels_stages_and_a_mechanism() {
        let text = "### `spawnprof record`\n| stage | 6.1 |\n|---|---|\n| dup_mmap | kprobe |\n\
                    ## Known gaps\n| kernel | stage | mechanism | why |\n|---|---|---|---|\n\
                    | 6.1, 6.12 | `dup_mmap`, `mm_lock_wait` | raw_tracepoint | old prototype |\n\
                    ## Later\n| not | a | gap | row |\n";
        let e = parse(text).unwrap();
        assert_eq!(e.gaps.len(), 1);
        assert_eq!(e.gaps[0].why, "old prototype");
        assert!(e.gap("6.12", "mm_lock_wait", "raw_tracepoint").is_some());
        assert!(e.gap("6.12", "mm_lock_wait", "kprobe").is_none());
        assert!(e.gap("5.10", "dup_mmap", "raw_tracepoint").is_none());
        assert!(parse("### `spawnprof record`\n## Known gaps\n| a | b |\n").is_err());
    }

    #[test]
    fn the_document_covers_every_run_and_guest() {
        let e = expectations().unwrap();
        for run in &RUNS {
            let t = e.table(run.flags).unwrap();
            for guest in GUESTS.iter().filter(|g| run.short || !g.short) {
                assert!(!t.column(guest.name).unwrap().is_empty(), "{}", guest.name);
            }
        }
    }
}
