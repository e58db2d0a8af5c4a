//! Always-on metrics (`serve`, `top`), from the kernel's histograms and
//! counters: a [`Snapshot`] of the maps with its labels decoded, the
//! Prometheus text exposition of one, and quantiles and rates between two.
//! Pure functions of what was read: no kernel access here.
pub mod exposition;
pub mod quantile;
pub mod recycle;
pub mod snapshot;

pub use snapshot::{Snapshot, SpawnCounts};
