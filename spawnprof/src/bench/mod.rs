//! `spawnprof bench`: profile a node by running the reference spawner
//! through sweeps (method × RSS, THP, environment size, PATH misses, tokio
//! modes, the fork chain) with the probes attached, and join the spawner's
//! own figures with the recorded stage breakdown of the spawns inside its
//! timed window. Writes `bench.json` and one recording per configuration.
//!
//! ```text
//! BenchOptions ─sweep─▶ [BenchConfig] ─run: each in turn─▶ record::run_config ─▶ ConfigResult
//!                                      └─then─▶ overhead::measure_overhead ───▶ Overhead
//!                                                                                  │
//!   file: bench.json ◀── BenchReport (results) ◀──────────────────────────────────┘
//!          │
//!          ├─▶ findings ─▶ text::render (terminal), page (charts, bench.html)   also from `report DIR`
//!          └─▶ diff (two benches, node against node)
//! ```
//!
//! `sweep.rs` says what runs, `run.rs` runs it, `record.rs` records one
//! configuration and `overhead.rs` the cost of the probes; `results.rs`
//! holds what `bench.json` keeps, `file.rs` reads and writes it,
//! `findings.rs` says what it shows against the published figures, and
//! `text.rs` (the terminal), `charts.rs`, `page.rs` (bench.html) and
//! `diff.rs` present it.

pub mod charts;
pub mod diff;
mod file;
pub mod findings;
mod overhead;
pub mod page;
mod record;
pub(crate) mod results;
mod run;
mod sweep;
mod text;

pub use file::{BENCH_FILE, load_report};
pub use record::{call_breakdown, spawner_path};
pub use results::{BenchConfig, BenchReport, ConfigResult, Overhead, StageShare};
pub use run::run;
pub use sweep::{BenchOptions, EXPERIMENTS, expand_node_name, experiment_name, parse_list, sweep};
pub use text::{interrupted_note, placement_findings, render};
