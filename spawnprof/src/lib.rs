//! spawnprof: a profiler for process creation.
//!
//! Data path: kernel probes (`spawnprof-ebpf`) emit marks → [`session`] loads
//! and attaches them following the [`plan`] chosen from the host's
//! [`capabilities`] → [`correlate`] folds marks into [`model::SpawnRecord`]s →
//! [`analysis`] summarises → [`report`] writes tables and files.
//! [`workload`] is the reference spawner driven by `spawnprof bench`.

pub mod workload;

/// The eBPF object built by build.rs.
pub const PROBES: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/spawnprof"));
