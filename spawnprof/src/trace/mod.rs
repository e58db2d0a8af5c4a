//! From the kernel's records to spawn records.
//!
//! ```text
//! ring buffer ─▶ decode (validate each record) ─▶ assemble (join a spawn's
//!   exec attempts and captures to it) ─▶ model::SpawnRecord
//! perf samples ─▶ stacks (symbolize, fold) ─▶ stacks.svg
//! ```
//!
//! Each spawn is assembled in the kernel (spawnprof-ebpf `spawn`) and
//! arrives whole, once, when it ends: nothing here depends on the order
//! records from different CPUs arrive in.
pub mod assemble;
pub mod decode;
pub mod stacks;

pub use assemble::{Assembler, AssemblyStats};
pub use decode::{Record, decode};
