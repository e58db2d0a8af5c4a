//! spawnprof: a profiler for process creation.
//!
//! Data path: kernel probes (`spawnprof-ebpf`) emit marks → [`session`] loads
//! and attaches them following the [`plan`] chosen from the host's
//! [`capabilities`] → [`decode`] → [`correlate`] folds marks into
//! [`model::SpawnRecord`]s → [`analysis`] summarises → [`report`] writes
//! tables and files. [`record`] drives a recording; [`workload`] is the
//! reference spawner driven by `spawnprof bench`.

pub mod analysis;
pub mod bench;
pub mod capabilities;
pub mod cli;
pub mod correlate;
pub mod decode;
pub mod interrupt;
pub mod model;
pub mod node;
pub mod plan;
pub mod record;
pub mod report;
pub mod session;
pub mod stacks;
pub mod units;
pub mod workload;

/// The eBPF object built by build.rs.
pub const PROBES: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/spawnprof"));
