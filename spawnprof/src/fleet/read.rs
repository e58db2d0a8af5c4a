//! Finding the benches of a fleet and reading each one's `bench.json`
//! into a row: in parallel, keeping only the row and a few numbers per
//! configuration, so a thousand nodes take seconds and little memory.
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

use super::{
    file::{NodeRow, Skipped},
    metrics::{METRICS, values},
    reference::Samples,
};
use crate::bench::{BENCH_FILE, BenchReport, load_report};

/// The bench directories among `dirs`: each one that holds `bench.json`,
/// and for the others, their subdirectories that do (sorted by name).
pub fn discover(dirs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for dir in dirs {
        if dir.join(BENCH_FILE).is_file() {
            out.push(dir.clone());
            continue;
        }
        let entries = std::fs::read_dir(dir).map_err(|e| {
            anyhow::anyhow!(
                "{}: {e}; pass bench directories (written by `spawnprof bench -o DIR`) or a directory holding them",
                dir.display()
            )
        })?;
        let mut found: Vec<PathBuf> = entries
            .filter_map(|e| Some(e.ok()?.path()))
            .filter(|p| p.join(BENCH_FILE).is_file())
            .collect();
        if found.is_empty() {
            bail!(
                "{} holds no {BENCH_FILE}, nor does any directory in it; pass bench directories \
                 (written by `spawnprof bench -o DIR`) or a directory holding them",
                dir.display()
            );
        }
        found.sort();
        out.extend(found);
    }
    Ok(out)
}

/// What reading the fleet gave: rows in the order of `dirs`, the
/// directories that could not be read, and the samples of the median node.
pub struct Read {
    pub nodes: Vec<NodeRow>,
    pub skipped: Vec<Skipped>,
    pub samples: Samples,
}

/// Reads every bench, on as many threads as there are CPUs.
pub fn read_all(dirs: &[PathBuf]) -> Read {
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let chunk = dirs.len().div_ceil(workers).max(1);
    let parts: Vec<(Vec<Result<NodeRow, Skipped>>, Samples)> = std::thread::scope(|s| {
        let handles: Vec<_> = dirs
            .chunks(chunk)
            .map(|part| s.spawn(move || read_part(part)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a reader thread panicked"))
            .collect()
    });
    let mut read = Read {
        nodes: Vec::with_capacity(dirs.len()),
        skipped: Vec::new(),
        samples: Samples::default(),
    };
    for (rows, samples) in parts {
        for r in rows {
            match r {
                Ok(row) => read.nodes.push(row),
                Err(s) => read.skipped.push(s),
            }
        }
        read.samples.merge(samples);
    }
    unique_names(&mut read.nodes);
    read
}

fn read_part(dirs: &[PathBuf]) -> (Vec<Result<NodeRow, Skipped>>, Samples) {
    let mut samples = Samples::default();
    let rows = dirs
        .iter()
        .map(|dir| {
            let report = load_report(dir).map_err(|e| Skipped {
                dir: dir.clone(),
                reason: format!("{e:#}"),
            })?;
            samples.add(&report);
            Ok(row(dir, &report))
        })
        .collect();
    (rows, samples)
}

/// A bench's row: its facts and each figure it measured.
pub fn row(dir: &Path, r: &BenchReport) -> NodeRow {
    let figures = METRICS
        .iter()
        .zip(values(r))
        .filter_map(|(m, v)| Some((m.id.to_string(), v?)))
        .collect();
    NodeRow {
        name: r.node.name().to_string(),
        dir: dir.to_path_buf(),
        facts: r.node.clone(),
        figures,
        quick: r.quick,
        incomplete: r.interrupted || r.unfinished,
    }
}

/// Two benches of one name (the same host benched twice, containers with
/// one host name) get their directory's name instead, or a number.
fn unique_names(nodes: &mut [NodeRow]) {
    let mut seen = std::collections::HashMap::<String, usize>::new();
    for n in nodes.iter() {
        *seen.entry(n.name.clone()).or_default() += 1;
    }
    let mut taken = std::collections::HashSet::new();
    for n in nodes.iter_mut() {
        if seen[&n.name] > 1 {
            let base = n.dir.file_name().map_or_else(
                || n.name.clone(),
                |f| format!("{} ({})", n.name, f.to_string_lossy()),
            );
            let mut name = base.clone();
            let mut k = 2;
            while !taken.insert(name.clone()) {
                name = format!("{base} #{k}");
                k += 1;
            }
            n.name = name;
        } else {
            taken.insert(n.name.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::results::testing;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("spawnprof-fleet-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn write_bench(dir: &Path, host: &str) {
        let mut r = testing::bench(Vec::new());
        r.node.hostname = host.into();
        r.node.node_name = None;
        r.node.slurm = None;
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join(BENCH_FILE), serde_json::to_string(&r).unwrap()).unwrap();
    }

    #[test]
    fn a_parent_directory_gives_its_benches_and_a_bad_one_is_left_out_with_why() {
        let base = scratch("read");
        write_bench(&base.join("n2"), "same");
        write_bench(&base.join("n1"), "same");
        write_bench(&base.join("n3"), "other");
        std::fs::create_dir_all(base.join("n4")).unwrap();
        std::fs::write(base.join("n4").join(BENCH_FILE), "{").unwrap();
        std::fs::create_dir_all(base.join("not-a-bench")).unwrap();
        let dirs = discover(std::slice::from_ref(&base)).unwrap();
        let names: Vec<_> = dirs.iter().map(|d| d.file_name().unwrap()).collect();
        assert_eq!(names, ["n1", "n2", "n3", "n4"]);
        let read = read_all(&dirs);
        let names: Vec<&str> = read.nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["same (n1)", "same (n2)", "other"]);
        assert_eq!(read.skipped.len(), 1);
        assert!(
            read.skipped[0].reason.contains("corrupt"),
            "{:?}",
            read.skipped
        );

        let empty = base.join("not-a-bench");
        let err = discover(&[empty]).unwrap_err().to_string();
        assert!(
            err.contains("holds no bench.json") && err.contains("spawnprof bench -o DIR"),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(base);
    }
}
