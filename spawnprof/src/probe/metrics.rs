//! The kernel's metrics maps as userspace reads them (`serve`, `top`):
//! taken out of the loaded object like the spawn state, and read whole at
//! each scrape. See [`spawnprof_common::metrics`].
use anyhow::{Context as _, Result};
use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, MapData},
};
use spawnprof_common::metrics::{
    ERRNO_SLOTS, MAP_EXEC_ERRNO, MAP_LABELS, MAP_METRICS_STATE, MAP_SERIES, MetricsState, Series,
    SeriesKey, method,
};

/// The maps' entries at one moment.
#[derive(Clone, Debug, Default)]
pub struct RawMetrics {
    /// Per (comm, method): counters and a histogram per stage.
    pub series: Vec<(SeriesKey, Series)>,
    /// (errno, failed exec attempts), the non-zero ones.
    pub exec_errno: Vec<(u32, u64)>,
    pub state: MetricsState,
}

pub struct KernelMetrics {
    series: HashMap<MapData, SeriesKey, Series>,
    errno: Array<MapData, u64>,
    state: Array<MapData, MetricsState>,
}

/// Sizes the metrics maps for `top_k` labels (and the `other` one): every
/// (label, method) has room, so an update never finds the map full.
pub(super) fn size_maps(loader: &mut EbpfLoader<'_>, top_k: u32) {
    loader
        .map_max_entries(MAP_LABELS, top_k.max(1))
        .map_max_entries(MAP_SERIES, (top_k + 1) * method::COUNT as u32);
}

/// The most memory the metrics maps can take for `top_k` labels, in bytes
/// (values and keys, without the kernel's per-entry overhead).
pub fn max_bytes(top_k: u32) -> u64 {
    let entry = (size_of::<SeriesKey>() + size_of::<Series>()) as u64;
    (u64::from(top_k) + 1) * method::COUNT as u64 * entry + u64::from(ERRNO_SLOTS) * 8
}

impl KernelMetrics {
    pub(super) fn take(ebpf: &mut Ebpf) -> Result<Self> {
        let mut take = |name: &str| {
            ebpf.take_map(name)
                .with_context(|| format!("the {name} map is missing"))
        };
        Ok(Self {
            series: HashMap::try_from(take(MAP_SERIES)?)?,
            errno: Array::try_from(take(MAP_EXEC_ERRNO)?)?,
            state: Array::try_from(take(MAP_METRICS_STATE)?)?,
        })
    }

    /// Every entry now. Entries only ever grow, so a read racing an update
    /// sees an older or newer count, never a torn key.
    pub fn read(&self) -> RawMetrics {
        let series = self.series.iter().filter_map(Result::ok).collect();
        let exec_errno = (0..ERRNO_SLOTS)
            .filter_map(|e| Some((e, self.errno.get(&e, 0).ok()?)))
            .filter(|(_, n)| *n > 0)
            .collect();
        let state = self.state.get(&0, 0).unwrap_or_default();
        RawMetrics {
            series,
            exec_errno,
            state,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stated_memory_bound_holds() {
        // docs/SERVE.md: at most 2.1 MiB at the default top-k, 66 MiB at 1024.
        assert!(
            max_bytes(32) < (2.2 * 1024.0 * 1024.0) as u64,
            "{}",
            max_bytes(32)
        );
        assert!(max_bytes(1024) < 66 * 1024 * 1024, "{}", max_bytes(1024));
        assert_eq!(size_of::<Series>(), 40 + 12 * (16 + 114 * 8));
    }
}
