//! The end of a recording: `spawns.raw` → `spawns.jsonl`, with the
//! statistics of the summary folded along the way, in one pass.
use std::path::Path;

use anyhow::Result;

use super::{SpawnWriter, raw::for_each_raw};
use crate::{
    analysis::Accumulator,
    model::{FaultCoverage, SpawnRecord},
    trace::{Assembler, AssemblyStats, decode},
};

/// What converting the raw records gave.
pub struct Converted {
    /// The first spawns, for the terminal table.
    pub kept: Vec<SpawnRecord>,
    pub stats: Accumulator,
    pub assembly: AssemblyStats,
    /// Bytes of a record cut short at the end of spawns.raw (a kill).
    pub cut_bytes: u64,
}

/// Converts the raw records of the recording in `dir` into `writer`
/// (spawns.jsonl); `t0` and `coverage` as the recording had them.
pub fn convert(
    dir: &Path,
    writer: &mut SpawnWriter,
    t0: u64,
    coverage: FaultCoverage,
    keep: usize,
) -> Result<Converted> {
    convert_into(dir, writer, Folding::new(t0, coverage, keep))
}

/// [`convert`], folding into what `folding` holds already (spawns counted
/// in memory while the disk was full).
pub fn convert_into(
    dir: &Path,
    writer: &mut SpawnWriter,
    mut folding: Folding,
) -> Result<Converted> {
    let (_, cut_bytes) = for_each_raw(dir, |bytes| {
        if let Some(r) = folding.feed(bytes) {
            writer.write(&r);
        }
        Ok(())
    })?;
    Ok(folding.done(cut_bytes))
}

/// Raw records into spawns, statistics and the first spawns kept.
pub struct Folding {
    asm: Assembler,
    stats: Accumulator,
    kept: Vec<SpawnRecord>,
    keep: usize,
}

impl Folding {
    pub fn new(t0: u64, coverage: FaultCoverage, keep: usize) -> Self {
        Self {
            asm: Assembler::new(t0, coverage),
            stats: Accumulator::default(),
            kept: Vec::new(),
            keep,
        }
    }

    /// Folds one raw record in; returns the spawn it completes.
    pub fn feed(&mut self, bytes: &[u8]) -> Option<SpawnRecord> {
        let record = match decode(bytes) {
            Ok(r) => r,
            Err(_) => {
                self.asm.malformed();
                return None;
            }
        };
        let r = self.asm.feed(record)?;
        self.stats.add(&r);
        if self.kept.len() < self.keep {
            self.kept.push(r.clone());
        }
        Some(r)
    }

    pub fn done(self, cut_bytes: u64) -> Converted {
        Converted {
            kept: self.kept,
            stats: self.stats,
            assembly: self.asm.stats(),
            cut_bytes,
        }
    }
}
