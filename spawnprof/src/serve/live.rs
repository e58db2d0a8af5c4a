//! The probes of `serve` and `top`: loaded with metrics on, scoped to the
//! processes asked for, read into [`Snapshot`]s. Dropping a [`Live`]
//! detaches every program.
use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use spawnprof_common::{Scope, scope};

use crate::{
    metrics::{
        Snapshot,
        recycle::Recycler,
        snapshot::{Namers, proc_rss},
    },
    probe::{Host, KernelMetrics, Session, SessionOptions, metrics::Labels},
    sys::{
        cgroup::CgroupNames,
        procfs::{descendants, tgid_of},
    },
};

/// Which processes' spawns are counted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// Every process on the machine.
    All,
    /// The processes of a cgroup v2 directory and its sub-cgroups.
    Cgroup(PathBuf),
    /// A running process, and with `follow` its descendants too.
    Pid { pid: u32, follow: bool },
}

/// Loaded probes and their metrics maps.
pub struct Live {
    session: Session,
    kernel: KernelMetrics,
    cgroups: CgroupNames,
    /// Frees idle label slots (`--label-idle`); `None`: never.
    recycler: Option<Recycler>,
    /// Label slots freed so far.
    recycled: u64,
    pub labels: Labels,
    pub plan: Vec<crate::probe::plan::PlanRow>,
}

impl Live {
    /// Loads and attaches the probes for `target`, with at most `labels`.
    pub fn start(target: &Target, labels: Labels, probes: &SessionOptions) -> Result<Self> {
        let opts = SessionOptions {
            metrics: Some(labels),
            scope: probe_scope(target)?,
            follow: !matches!(target, Target::Pid { follow: false, .. }),
            // Nothing per spawn goes through it: the smallest ring there is.
            ring_buffer_bytes: 4096,
            notices: false,
            capture_args: false,
            capture_env: false,
            ..probes.clone()
        };
        let host = Host::probe()?;
        let mut session = Session::start(&host, &opts)?;
        if let Target::Pid { pid, follow } = *target {
            let tgid = tgid_of(pid)?;
            session.trace(tgid, true, false)?;
            if follow {
                for p in descendants(tgid) {
                    // A descendant that exited meanwhile is no error.
                    let _ = session.trace(p, true, false);
                }
            }
        }
        let kernel = session.take_metrics()?;
        let plan = session.plan.clone();
        Ok(Self {
            session,
            kernel,
            cgroups: CgroupNames::new(),
            recycler: None,
            recycled: 0,
            labels,
            plan,
        })
    }

    /// Parks the fork-only probes while nothing forks, and brings them
    /// back at a fork ([`crate::probe::park`]).
    pub fn keep_fork_probes(&mut self) -> Result<()> {
        self.session.keep_fork_probes()
    }

    /// How often the fork-only probes were parked and brought back.
    pub fn park_counts(&self) -> crate::probe::park::ParkCounts {
        self.session.park_counts()
    }

    /// Frees a label slot once its name has not spawned for `idle` while
    /// others wait in `other` ([`crate::metrics::recycle`]); zero: never.
    pub fn recycle_labels_after(&mut self, idle: Duration) {
        self.recycler = (!idle.is_zero()).then(|| Recycler::new(idle));
    }

    /// The metrics now. Labels idle too long are freed after this reading,
    /// so it is their last.
    pub fn snapshot(&mut self) -> Snapshot {
        let raw = self.kernel.read();
        if let Some(r) = &mut self.recycler {
            let idle = r.idle(&raw.series, Instant::now());
            if !idle.is_empty() {
                let keys: Vec<_> = raw.series.iter().map(|(k, _)| *k).collect();
                self.recycled += self.kernel.forget(&idle.comms, &idle.cgroups, &keys) as u64;
            }
        }
        self.cgroups.resolve(raw.cgroups.iter().copied());
        let cgroups = &self.cgroups;
        let name = |id| cgroups.name(id);
        let names = Namers {
            rss: &proc_rss,
            cgroup: self
                .labels
                .cgroup_k
                .map(|_| &name as &dyn Fn(u64) -> String),
        };
        let mut snapshot = Snapshot::new(raw, &self.session.lost(), &names);
        snapshot.fork_probes = self.session.park_counts();
        snapshot.labels_recycled = self.recycled;
        snapshot
    }
}

/// The kernel-side scope of a target.
fn probe_scope(target: &Target) -> Result<Scope> {
    Ok(match target {
        Target::All => Scope {
            kind: scope::ALL,
            ..Scope::default()
        },
        Target::Pid { .. } => Scope::default(),
        Target::Cgroup(path) => {
            let (id, level) = cgroup_of(path)?;
            match level {
                // The root cgroup holds every process.
                0 => Scope {
                    kind: scope::ALL,
                    ..Scope::default()
                },
                _ => Scope {
                    kind: scope::CGROUP,
                    cgroup_level: level,
                    cgroup_id: id,
                },
            }
        }
    })
}

/// A cgroup v2 directory's id (its inode number) and its depth below the
/// cgroup2 mount it is in.
pub fn cgroup_of(path: &std::path::Path) -> Result<(u64, u32)> {
    use std::os::unix::fs::MetadataExt as _;
    let path = path
        .canonicalize()
        .with_context(|| format!("--cgroup {}: no such directory", path.display()))?;
    let mounts = crate::sys::procfs::read("/proc/self/mountinfo").unwrap_or_default();
    let root = crate::sys::cgroup::cgroup2_mounts(&mounts)
        .into_iter()
        .filter(|m| path.starts_with(m))
        .max_by_key(|m| m.as_os_str().len())
        .with_context(|| {
            format!(
                "--cgroup {}: not in a cgroup v2 hierarchy (cgroup2 mounts: {}); pass a \
                 directory under one, e.g. /sys/fs/cgroup/system.slice/NAME.service",
                path.display(),
                crate::sys::cgroup::cgroup2_mounts(&mounts)
                    .iter()
                    .map(|m| m.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?;
    let level = path
        .strip_prefix(&root)
        .map(|rel| rel.components().count())
        .unwrap_or(0) as u32;
    let id = std::fs::metadata(&path)?.ino();
    Ok((id, level))
}
