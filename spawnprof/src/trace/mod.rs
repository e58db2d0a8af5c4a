//! From the ring buffer to spawn records.
//!
//! ```text
//! ring buffer ─▶ decode (validate each Mark) ─▶ reorder (20 ms window, by ts)
//!   ─▶ correlate (per-spawn state machine) ─▶ model::SpawnRecord
//! perf samples ─▶ stacks (symbolize, fold) ─▶ stacks.svg
//! ```
pub mod correlate;
pub mod decode;
pub mod reorder;
pub mod stacks;

pub use correlate::{CorrelationStats, Correlator};
pub use decode::{Event, decode};
pub use reorder::Reorder;
