//! The kernel's metrics maps as userspace reads them (`serve`, `top`):
//! taken out of the loaded object like the spawn state, and read whole at
//! each scrape. See [`spawnprof_common::metrics`].
use anyhow::{Context as _, Result};
use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, MapData},
};
use spawnprof_common::{
    COMM_LEN,
    metrics::{
        ERRNO_SLOTS, MAP_CGROUPS, MAP_EXEC_ERRNO, MAP_LABELS, MAP_METRICS_STATE, MAP_SERIES,
        MetricsState, OTHER, OTHER_CGROUP, Series, SeriesKey, method, mode,
    },
};

/// How many distinct label values the kernel keeps; later ones share
/// `other`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Labels {
    /// Spawning comms (`--top-k`).
    pub top_k: u32,
    /// Spawning parents' cgroups (`--cgroup-label`, `--cgroup-k`); `None`:
    /// series are not labelled by cgroup.
    pub cgroup_k: Option<u32>,
    /// The comm label names the program each child exec'd (`--label-by
    /// exec`), not the spawning process.
    pub by_exec: bool,
}

impl Labels {
    /// The `ProbeConfig::metrics` bits.
    pub fn mode(self) -> u32 {
        let by_cgroup = if self.cgroup_k.is_some() {
            mode::BY_CGROUP
        } else {
            0
        };
        let by_exec = if self.by_exec { mode::BY_EXEC } else { 0 };
        mode::ON | by_cgroup | by_exec
    }

    /// Series per comm and method: one per cgroup label and `other`.
    fn cgroup_values(self) -> u32 {
        self.cgroup_k.map_or(1, |k| k + 1)
    }
}

/// The maps' entries at one moment.
#[derive(Clone, Debug, Default)]
pub struct RawMetrics {
    /// Per (comm, method, cgroup): counters and a histogram per stage.
    pub series: Vec<(SeriesKey, Series)>,
    /// The ids of the cgroups labelled.
    pub cgroups: Vec<u64>,
    /// (errno, failed exec attempts), the non-zero ones.
    pub exec_errno: Vec<(u32, u64)>,
    pub state: MetricsState,
}

pub struct KernelMetrics {
    series: HashMap<MapData, SeriesKey, Series>,
    labels: HashMap<MapData, [u8; COMM_LEN], u32>,
    cgroups: HashMap<MapData, u64, u32>,
    errno: Array<MapData, u64>,
    state: Array<MapData, MetricsState>,
}

/// Sizes the metrics maps for `labels` (and the `other` ones): every
/// (comm, method, cgroup) has room, so an update never finds the map full.
pub(super) fn size_maps(loader: &mut EbpfLoader<'_>, labels: Labels) {
    loader
        .map_max_entries(MAP_LABELS, labels.top_k.max(1))
        .map_max_entries(MAP_CGROUPS, labels.cgroup_k.unwrap_or(1).max(1))
        .map_max_entries(MAP_SERIES, series_entries(labels));
}

fn series_entries(labels: Labels) -> u32 {
    (labels.top_k + 1) * method::COUNT as u32 * labels.cgroup_values()
}

/// The most memory the metrics maps can take for `labels`, in bytes
/// (values and keys, without the kernel's per-entry overhead).
pub fn max_bytes(labels: Labels) -> u64 {
    let entry = (size_of::<SeriesKey>() + size_of::<Series>()) as u64;
    let cgroups = u64::from(labels.cgroup_k.unwrap_or(0)) * 12;
    u64::from(series_entries(labels)) * entry + u64::from(ERRNO_SLOTS) * 8 + cgroups
}

impl KernelMetrics {
    pub(super) fn take(ebpf: &mut Ebpf) -> Result<Self> {
        let mut take = |name: &str| {
            ebpf.take_map(name)
                .with_context(|| format!("the {name} map is missing"))
        };
        Ok(Self {
            series: HashMap::try_from(take(MAP_SERIES)?)?,
            labels: HashMap::try_from(take(MAP_LABELS)?)?,
            cgroups: HashMap::try_from(take(MAP_CGROUPS)?)?,
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
        let cgroups = self.cgroups.keys().filter_map(Result::ok).collect();
        RawMetrics {
            series,
            cgroups,
            exec_errno,
            state,
        }
    }

    /// Frees the label slots of `comms` and `cgroups` (low halves of ids),
    /// and removes their series and any series left without a label (a
    /// spawn racing an earlier free), given the series keys of a reading
    /// taken before. Returns the labels freed.
    pub fn forget(
        &mut self,
        comms: &[[u8; COMM_LEN]],
        cgroups: &[u32],
        read: &[SeriesKey],
    ) -> usize {
        let mut freed = 0;
        for comm in comms {
            freed += usize::from(self.labels.remove(comm).is_ok());
        }
        let ids: Vec<u64> = self.cgroups.keys().filter_map(Result::ok).collect();
        for id in ids.iter().filter(|id| cgroups.contains(&(**id as u32))) {
            freed += usize::from(self.cgroups.remove(id).is_ok());
        }
        // Read after the series, so a label taken since is in it: a series
        // is only made once its label is.
        let labelled: Vec<[u8; COMM_LEN]> = self.labels.keys().filter_map(Result::ok).collect();
        let groups: Vec<u32> = self
            .cgroups
            .keys()
            .filter_map(|id| Some(id.ok()? as u32))
            .collect();
        for key in read {
            let orphan = (key.comm != OTHER && !labelled.contains(&key.comm))
                || (key.cgroup != 0 && key.cgroup != OTHER_CGROUP && !groups.contains(&key.cgroup));
            if orphan {
                let _ = self.series.remove(key);
            }
        }
        freed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stated_memory_bound_holds() {
        // docs/SERVE.md: at most 2.1 MiB at the default top-k, 66 MiB at 1024.
        let labels = |top_k, cgroup_k| Labels {
            top_k,
            cgroup_k,
            by_exec: false,
        };
        let mib = |l| max_bytes(l) as f64 / (1024.0 * 1024.0);
        assert!(mib(labels(32, None)) < 2.2, "{}", mib(labels(32, None)));
        assert!(
            mib(labels(1024, None)) < 66.0,
            "{}",
            mib(labels(1024, None))
        );
        // With cgroup labels: (32 + 1) x 6 x (8 + 1) series.
        assert!(
            mib(labels(32, Some(8))) < 19.5,
            "{}",
            mib(labels(32, Some(8)))
        );
        assert_eq!(size_of::<Series>(), 40 + 12 * (16 + 114 * 8));
    }
}
