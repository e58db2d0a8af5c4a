//! Recordings that spawnprof did not finish. `spawnprof record` writes a
//! provisional `summary.json` as tracing starts (target, node, attach plan)
//! and writes finished spawns out at least every second, so a spawnprof
//! killed where no handler runs (SIGKILL, the OOM killer, a crash, the
//! machine going down) still leaves a readable recording; here its counts
//! and statistics are rebuilt from `spawns.jsonl`.
use std::{
    fs::{self, File},
    path::Path,
};

use anyhow::{Context as _, Result, bail};

use super::{
    RAW_FILE, RecordingLock, SPAWNS_FILE, SUMMARY_FILE, SpawnWriter, Summary, convert,
    for_each_record, read_summary, write_summary,
    writer::{SUMMARY_RESERVE_FILE, cut_to_last_line},
};
use crate::{analysis::Accumulator, model::FaultCoverage};

/// What the summary says while the recording runs; replaced by the final
/// summary, or by [`rebuilt_note`] when the recording is rebuilt.
pub const WHILE_RECORDING: &str = "spawnprof was recording when this summary was written and has \
     not finished (or was killed): `spawnprof report DIR` rebuilds the counts and statistics from \
     spawns.jsonl";

/// The summary of the recording in `dir`. A finished one is returned as
/// written; one that spawnprof did not finish (its summary still the
/// provisional one, or missing beside a spawns.jsonl) is rebuilt from its
/// spawns, with [`Summary::unfinished`] saying what is not known. A record
/// the kill cut short at the end of spawns.jsonl is removed from the file.
/// Refuses a recording that a live spawnprof is still writing.
pub fn summary(dir: &Path) -> Result<Summary> {
    let has_summary = dir.join(SUMMARY_FILE).exists();
    let has_raw = dir.join(RAW_FILE).exists();
    if has_summary {
        let s = read_summary(dir)?;
        if s.unfinished.is_none() && !has_raw {
            return Ok(s);
        }
    } else if !dir.join(SPAWNS_FILE).exists() {
        // The error that says what a recording directory holds.
        read_summary(dir)?;
    }
    let Some(_lock) = RecordingLock::try_take(dir)? else {
        bail!(
            "{} is still being recorded (a spawnprof record is writing it); wait until it ends, \
             or stop it with Ctrl-C, then run this again",
            dir.display()
        );
    };
    // Read again under the lock: the recording may have finished meanwhile.
    let base = if has_summary || dir.join(SUMMARY_FILE).exists() {
        let s = read_summary(dir)?;
        if s.unfinished.is_none() {
            return if dir.join(RAW_FILE).exists() {
                finish_conversion(dir, s)
            } else {
                Ok(s)
            };
        }
        s
    } else {
        without_summary(dir)
    };
    rebuild(dir, base)
}

fn rebuild(dir: &Path, mut s: Summary) -> Result<Summary> {
    let raw_cut = if dir.join(RAW_FILE).exists() {
        convert_raw(dir, &mut s)?
    } else {
        0
    };
    let spawns_path = dir.join(SPAWNS_FILE);
    let file = File::options()
        .read(true)
        .write(true)
        .open(&spawns_path)
        .with_context(|| format!("opening {}", spawns_path.display()))?;
    let len_before = file.metadata()?.len();
    cut_to_last_line(&file)
        .with_context(|| format!("cutting the partial last line of {}", spawns_path.display()))?;
    let cut = len_before - file.metadata()?.len();
    drop(file);
    let mut acc = Accumulator::default();
    let mut latest = 0;
    let n = for_each_record(dir, |r| {
        acc.add(r);
        latest = latest.max(r.ts.latest().unwrap_or(0));
        Ok(true)
    })?;
    s.counts = acc.counts();
    s.stages = acc.stage_stats();
    s.placement = acc.placement();
    s.spawn_time = acc.spawn_time();
    s.hidden_costs = Some(acc.hidden_costs());
    s.duration_ns = s.duration_ns.max(latest);
    s.unfinished = Some(rebuilt_note(n, cut + raw_cut));
    // The space the recording set aside for its final summary.
    let _ = fs::remove_file(dir.join(SUMMARY_RESERVE_FILE));
    Ok(s)
}

/// The raw records a killed recording left: converted into spawns.jsonl,
/// which they replace. Returns the bytes of a record cut short.
fn convert_raw(dir: &Path, s: &mut Summary) -> Result<u64> {
    let mut writer = SpawnWriter::create(dir)?;
    let coverage = s.fault_coverage.unwrap_or(FaultCoverage::ALL);
    let converted = convert(dir, &mut writer, s.start_monotonic_ns, coverage, 0)?;
    writer.finish()?;
    s.assembly = converted.assembly;
    fs::remove_file(dir.join(RAW_FILE))
        .with_context(|| format!("removing {RAW_FILE} once converted"))?;
    Ok(converted.cut_bytes)
}

/// A finished recording whose spawns.jsonl the disk could not take: its
/// raw records, converted again now that there may be room. The summary's
/// counts and statistics were whole already (spawns that were never saved
/// were counted in memory), so only what it says of the file changes.
fn finish_conversion(dir: &Path, mut s: Summary) -> Result<Summary> {
    let mut writer = SpawnWriter::create(dir)?;
    let coverage = s.fault_coverage.unwrap_or(FaultCoverage::ALL);
    convert(dir, &mut writer, s.start_monotonic_ns, coverage, 0)?;
    let saved = writer.finish().with_context(|| {
        format!("{RAW_FILE} is kept: free more space, then run `spawnprof report` again")
    })?;
    fs::remove_file(dir.join(RAW_FILE))
        .with_context(|| format!("removing {RAW_FILE} once converted"))?;
    let processes = s.counts.spawns + s.counts.threads + 1;
    s.spawns_incomplete = (saved < processes).then(|| {
        format!(
            "spawns.jsonl holds the {saved} spawns saved while recording, of {processes}: the \
             disk was full, and the rest were only counted (the counts and statistics include \
             them)"
        )
    });
    write_summary(dir, &s)?;
    Ok(s)
}

/// What a rebuilt summary says about itself.
pub fn rebuilt_note(records: u64, cut_bytes: u64) -> String {
    let cut = if cut_bytes > 0 {
        format!("; the last record, cut short mid-write ({cut_bytes} bytes), was left out")
    } else {
        String::new()
    };
    format!(
        "spawnprof ended before it finished this recording (killed by SIGKILL or the OOM killer, a \
         crash, or the machine went down). Counts and statistics were rebuilt from the {records} \
         spawns it had received, which lack those of the last second or so and the spawns still \
         in progress{cut}. Not known: lost spawns, the command's exit status and stack samples."
    )
}

/// A recording whose spawnprof died before even its provisional summary
/// was written: only the spawns are known.
fn without_summary(dir: &Path) -> Summary {
    let start_unix_s = fs::metadata(dir.join(SPAWNS_FILE))
        .and_then(|m| m.created().or_else(|_| m.modified()))
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    Summary {
        start_unix_s,
        captured: vec!["unknown (summary.json missing)".into()],
        stack_sampling: "unknown (summary.json missing)".into(),
        ..Summary::new("unknown (summary.json missing)".into(), "unknown".into())
    }
}

#[cfg(test)]
mod tests {
    use std::{io::Write as _, path::PathBuf};

    use super::*;
    use crate::{
        analysis::Counts,
        recording::{
            synthetic::{synthesize, synthetic_summary},
            write_summary,
        },
    };

    fn temp_dir(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("spawnprof-recover-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    /// `n` records as spawnprof writes them, then half of one more: a
    /// spawns.jsonl that a kill interrupted mid-write.
    fn killed_spawns(dir: &Path, n: usize) -> (u64, Counts) {
        let records: Vec<_> = synthesize(n + 1, 7).collect();
        let mut f = File::create(dir.join(SPAWNS_FILE)).unwrap();
        for r in &records[..n] {
            serde_json::to_writer(&mut f, r).unwrap();
            f.write_all(b"\n").unwrap();
        }
        let last = serde_json::to_string(&records[n]).unwrap();
        let half = &last.as_bytes()[..last.len() / 2];
        f.write_all(half).unwrap();
        (half.len() as u64, crate::analysis::counts(&records[..n]))
    }

    #[test]
    fn a_provisional_summary_is_rebuilt_from_the_spawns_and_the_cut_record_removed() {
        let dir = temp_dir("provisional");
        let (cut, counts) = killed_spawns(&dir, 50);
        let mut provisional =
            synthetic_summary("sh -c loop", Default::default(), Default::default());
        provisional.unfinished = Some(WHILE_RECORDING.into());
        write_summary(&dir, &provisional).unwrap();
        fs::write(dir.join(SUMMARY_RESERVE_FILE), b"reserve").unwrap();

        let s = summary(&dir).unwrap();
        assert_eq!(s.counts, counts, "the counts of the 50 complete records");
        assert_eq!(s.counts.spawns + s.counts.threads, 50);
        assert_eq!(
            s.target, "sh -c loop",
            "what the provisional summary knew is kept"
        );
        assert!(!s.plan.is_empty());
        assert!(s.stages.get("spawn_to_exec").is_some_and(|st| st.count > 0));
        let note = s.unfinished.as_deref().unwrap();
        assert!(
            note.contains("50 spawns") && note.contains(&format!("({cut} bytes)")),
            "{note}"
        );
        let text = fs::read_to_string(dir.join(SPAWNS_FILE)).unwrap();
        assert!(text.ends_with('\n') && text.lines().count() == 50);
        assert!(!dir.join(SUMMARY_RESERVE_FILE).exists());

        // Rebuilding again gives the same figures, and nothing more is cut.
        let again = summary(&dir).unwrap();
        assert_eq!(again.counts, s.counts);
        assert!(!again.unfinished.unwrap().contains("cut short"));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn spawns_without_any_summary_are_still_a_recording() {
        let dir = temp_dir("no-summary");
        let (_, counts) = killed_spawns(&dir, 20);
        let s = summary(&dir).unwrap();
        assert_eq!(s.counts, counts);
        assert!(s.target.contains("summary.json missing"));
        assert!(s.unfinished.is_some());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_finished_recording_is_returned_as_written() {
        let dir = temp_dir("finished");
        killed_spawns(&dir, 5);
        let written = synthetic_summary("done", Default::default(), Default::default());
        write_summary(&dir, &written).unwrap();
        let s = summary(&dir).unwrap();
        assert_eq!(s.counts.spawns, 0, "a finished summary is not recomputed");
        assert!(s.unfinished.is_none());
        // …and its spawns.jsonl is left alone, cut record and all.
        assert!(
            !fs::read_to_string(dir.join(SPAWNS_FILE))
                .unwrap()
                .ends_with('\n')
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_recording_still_being_written_is_refused() {
        let dir = temp_dir("live");
        killed_spawns(&dir, 3);
        let _writer = RecordingLock::try_take(&dir).unwrap().expect("free");
        let e = summary(&dir).unwrap_err().to_string();
        assert!(e.contains("still being recorded"), "{e}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_empty_directory_is_not_a_recording() {
        let dir = temp_dir("empty");
        let e = format!("{:#}", summary(&dir).unwrap_err());
        assert!(e.contains("is not a spawnprof recording"), "{e}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
