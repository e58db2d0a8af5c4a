//! The aggregates every report needs from all of a recording's spawns
//! (stage stacks, the latency histogram, counts), folded on every core
//! from the light reading of `spawns.jsonl` ([`crate::recording::light`]).
use std::{collections::BTreeMap, path::Path};

use anyhow::Result;

use super::{
    charts::LogHistogram,
    folded::{StackKey, StageFolder},
};
use crate::{
    model::{Durations, SpawnRecord, stage_position},
    recording::light::{self, LightRecord},
};

/// The stage-stack key of a light record, as [`StackKey::of`] gives it
/// for a full one.
pub fn light_key<'a>(r: &'a LightRecord<'_>) -> StackKey<'a> {
    StackKey {
        parent_comm: r.parent_comm.as_ref().map(|s| &*s.0),
        method: r.method.as_ref().map(|s| &*s.0),
        syscall: r.syscall.as_ref().map(|s| &*s.0),
        root: r.root,
    }
}

/// The processes that ran one program (or did not exec): how many, how,
/// and how long they took to get there and to run.
#[derive(Clone, Debug, Default)]
pub struct Program {
    pub spawns: u64,
    /// Spawn method → processes.
    pub methods: BTreeMap<String, u64>,
    pub failed_execs: u64,
    /// clone entry → exec return (`spawn_to_exec`).
    pub to_exec: LogHistogram,
    pub to_exec_ns: u128,
    pub to_exec_max: u64,
    /// exec return → exit (`run`), of those that exec'd.
    pub run_ns: u128,
    pub runs: u64,
}

impl Program {
    fn merge(&mut self, o: Program) {
        self.spawns += o.spawns;
        for (m, n) in o.methods {
            *self.methods.entry(m).or_default() += n;
        }
        self.failed_execs += o.failed_execs;
        self.to_exec.merge(&o.to_exec);
        self.to_exec_ns += o.to_exec_ns;
        self.to_exec_max = self.to_exec_max.max(o.to_exec_max);
        self.run_ns += o.run_ns;
        self.runs += o.runs;
    }

    /// Mean clone entry → exec return.
    pub fn to_exec_mean(&self) -> Option<u64> {
        let n = self.to_exec.total();
        (n > 0).then(|| (self.to_exec_ns / u128::from(n)) as u64)
    }

    /// Mean exec return → exit.
    pub fn run_mean(&self) -> Option<u64> {
        (self.runs > 0).then(|| (self.run_ns / u128::from(self.runs)) as u64)
    }
}

/// The group of a process without a program: it never exec'd.
pub const NO_EXEC: &str = "(no exec)";
/// … or every exec it tried failed.
pub const EXEC_FAILED: &str = "(every exec failed)";
/// Distinct programs kept; the rest are counted together, so a recording
/// of a million different scripts keeps bounded memory.
const MAX_PROGRAMS: usize = 2_000;
/// Where processes of programs past [`MAX_PROGRAMS`] are counted.
pub const OTHER_PROGRAMS: &str = "(other programs)";

/// Processes by the program they exec'd.
#[derive(Debug, Default)]
pub struct Programs(pub BTreeMap<String, Program>);

impl Programs {
    fn add(&mut self, r: &LightRecord<'_>) {
        let path = match (&r.exec_path, r.failed_exec_attempts) {
            (Some(p), _) => &*p.0,
            (None, 0) => NO_EXEC,
            (None, _) => EXEC_FAILED,
        };
        let key = if self.0.contains_key(path) || self.0.len() < MAX_PROGRAMS {
            path
        } else {
            OTHER_PROGRAMS
        };
        if !self.0.contains_key(key) {
            self.0.insert(key.to_string(), Program::default());
        }
        let g = self.0.get_mut(key).expect("inserted above");
        g.spawns += 1;
        let method = r
            .method
            .as_ref()
            .map_or(if r.root { "root" } else { "-" }, |m| &*m.0);
        match g.methods.get_mut(method) {
            Some(n) => *n += 1,
            None => {
                g.methods.insert(method.to_string(), 1);
            }
        }
        g.failed_execs += r.failed_exec_attempts;
        static AT: std::sync::OnceLock<(usize, usize)> = std::sync::OnceLock::new();
        let (to_exec, run) = *AT.get_or_init(|| {
            let at = |s| stage_position(s).expect("a stage");
            (at("spawn_to_exec"), at("run"))
        });
        if let Some(v) = r.durations.0[to_exec] {
            g.to_exec.add(v);
            g.to_exec_ns += u128::from(v);
            g.to_exec_max = g.to_exec_max.max(v);
        }
        if let (Some(v), Some(_)) = (r.durations.0[run], &r.exec_path) {
            g.run_ns += u128::from(v);
            g.runs += 1;
        }
    }

    fn merge(&mut self, other: Programs) {
        for (k, v) in other.0 {
            self.0.entry(k).or_default().merge(v);
        }
    }
}

/// What the aggregate reports need from every record; partial aggregates
/// from different threads merge.
#[derive(Debug, Default)]
pub struct Aggregates {
    /// Stage stacks of every spawn but the root command.
    pub folder: StageFolder,
    pub spawn_to_exec: LogHistogram,
    /// Every record, the root command included.
    pub records: u64,
    /// Records that are processes (not threads).
    pub processes: u64,
    /// Those processes by the program they exec'd.
    pub programs: Programs,
}

impl Aggregates {
    fn add_parts(&mut self, key: StackKey<'_>, d: &Durations, thread: bool) {
        self.records += 1;
        self.processes += u64::from(!thread);
        // The root command was started (and held before its exec) by
        // spawnprof, not spawned by the traced program; the summary's stage
        // statistics leave it out (analysis::Accumulator), so the pictures
        // drawn next to them do too.
        if key.root {
            return;
        }
        self.folder.add_parts(key, d);
        static SPAWN_TO_EXEC: std::sync::OnceLock<Option<usize>> = std::sync::OnceLock::new();
        let at = *SPAWN_TO_EXEC.get_or_init(|| stage_position("spawn_to_exec"));
        if let Some(v) = at.and_then(|i| d[i]) {
            self.spawn_to_exec.add(v);
        }
    }

    pub fn add(&mut self, r: &SpawnRecord) {
        self.add_light(&LightRecord::of(r));
    }

    pub fn add_light(&mut self, r: &LightRecord<'_>) {
        self.add_parts(light_key(r), &r.durations.0, r.thread);
        if !r.thread {
            self.programs.add(r);
        }
    }

    pub fn merge(&mut self, other: Aggregates) {
        self.folder.merge(other.folder);
        self.spawn_to_exec.merge(&other.spawn_to_exec);
        self.records += other.records;
        self.processes += other.processes;
        self.programs.merge(other.programs);
    }
}

/// Aggregates every record of `path` on `workers` threads.
pub fn aggregate_file(path: &Path, workers: usize) -> Result<Aggregates> {
    light::fold(path, workers, Aggregates::add_light, Aggregates::merge)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recording::synthetic::synthesize;

    fn write_jsonl(dir: &Path, text: &str) -> std::path::PathBuf {
        std::fs::create_dir_all(dir).unwrap();
        let p = dir.join("spawns.jsonl");
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn parallel_aggregation_matches_sequential_and_finds_bad_lines() {
        let recs: Vec<SpawnRecord> = synthesize(20_000, 11).collect();
        let mut text = String::new();
        for r in &recs {
            text.push_str(&serde_json::to_string(r).unwrap());
            text.push('\n');
        }
        let dir = std::env::temp_dir().join(format!("spawnprof-stream-{}", std::process::id()));
        let p = write_jsonl(&dir, &text);
        let mut seq = Aggregates::default();
        recs.iter().for_each(|r| seq.add(r));
        for workers in [1, 3] {
            let par = aggregate_file(&p, workers).unwrap();
            assert_eq!(par.records, 20_000, "{workers} workers");
            assert_eq!(par.processes, seq.processes);
            assert_eq!(par.folder.lines(), seq.folder.lines());
            assert_eq!(par.spawn_to_exec.bins(), seq.spawn_to_exec.bins());
        }
        // Chunk edges anywhere: inside lines, on newlines, one byte wide.
        let small: String = text.lines().take(150).map(|l| format!("{l}\n")).collect();
        let p_small = write_jsonl(&dir.join("small"), &small);
        let mut seq = Aggregates::default();
        recs[..150].iter().for_each(|r| seq.add(r));
        for chunk in [1, 37, 1000, 1601, 1 << 20] {
            let par = light::fold_chunked(
                &p_small,
                2,
                chunk,
                &Aggregates::add_light,
                Aggregates::merge,
            )
            .unwrap();
            assert_eq!(par.records, 150, "chunks of {chunk}");
            assert_eq!(par.folder.lines(), seq.folder.lines());
        }
        // A corrupt line deep in the file is reported with its line number.
        let mut lines: Vec<&str> = text.lines().collect();
        lines[17_345] = "{\"thread\": tru";
        let p = write_jsonl(&dir, &(lines.join("\n") + "\n"));
        let err = format!("{:#}", aggregate_file(&p, 2).unwrap_err());
        assert!(
            err.contains("spawns.jsonl:17346 is not a valid spawn record"),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
