//! Loading and attaching the probes.
//!
//! ```text
//! host (privileges, tracefs, BTF, kprobe PMU)
//!   └─▶ config: tracepoint field offsets + kernel struct offsets → ProbeConfig
//!         └─▶ session: load the object, then per stage of the plan table
//!               attach: precheck → load → attach, best candidate first → PlanRow
//! ```
//!
//! [`plan::PLAN`] is the table (stage → candidates: fentry → kprobe → raw
//! tracepoint → tracepoint → unavailable); nothing here branches on a kernel
//! version. Dropping the [`Session`] detaches every program;
//! [`Session::stop`] ends a recording without waiting for that (`detach`).
mod arch;
mod attach;
pub mod btf;
mod config;
mod detach;
pub mod features;
pub mod host;
pub mod metrics;
mod options;
pub mod park;
pub mod plan;
pub mod session;
mod slots;
mod spawns;
pub mod tracefs;

pub use btf::KernelBtf;
pub use config::tracepoint_offsets;
pub use host::Host;
pub use metrics::{KernelMetrics, RawMetrics};
pub use options::SessionOptions;
pub use session::{RawSample, Session};
pub use spawns::{KernelSpawns, Lost};
pub use tracefs::Tracefs;
