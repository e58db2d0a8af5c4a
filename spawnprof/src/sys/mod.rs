//! The machine and this process: clocks, /proc and /sys, and the node
//! facts that explain spawn costs.
pub mod cgroup;
pub mod clock;
pub mod memlock;
pub mod node;
pub mod procfs;
pub mod term;
