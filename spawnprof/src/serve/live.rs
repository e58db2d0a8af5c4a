//! The probes of `serve` and `top`: loaded with metrics on, scoped to the
//! processes asked for, read into [`Snapshot`]s. Dropping a [`Live`]
//! detaches every program.
use std::path::PathBuf;

use anyhow::{Context as _, Result};
use spawnprof_common::{Scope, scope};

use crate::{
    metrics::{Snapshot, snapshot::proc_rss},
    probe::{Host, KernelMetrics, Session, SessionOptions},
    sys::procfs::{descendants, tgid_of},
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
    pub top_k: u32,
    pub plan: Vec<crate::probe::plan::PlanRow>,
}

impl Live {
    /// Loads and attaches the probes for `target`, with at most `top_k`
    /// comm labels.
    pub fn start(target: &Target, top_k: u32, probes: &SessionOptions) -> Result<Self> {
        let opts = SessionOptions {
            metrics: Some(top_k),
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
            top_k,
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

    /// The metrics now.
    pub fn snapshot(&self) -> Snapshot {
        let mut snapshot = Snapshot::new(self.kernel.read(), &self.session.lost(), proc_rss);
        snapshot.fork_probes = self.session.park_counts();
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
    let root = cgroup2_mounts(&mounts)
        .into_iter()
        .filter(|m| path.starts_with(m))
        .max_by_key(|m| m.as_os_str().len())
        .with_context(|| {
            format!(
                "--cgroup {}: not in a cgroup v2 hierarchy (cgroup2 mounts: {}); pass a \
                 directory under one, e.g. /sys/fs/cgroup/system.slice/NAME.service",
                path.display(),
                cgroup2_mounts(&mounts)
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

/// Where cgroup2 is mounted, from /proc/self/mountinfo.
fn cgroup2_mounts(mountinfo: &str) -> Vec<PathBuf> {
    mountinfo
        .lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            (right.split_whitespace().next()? == "cgroup2")
                .then(|| left.split_whitespace().nth(4).map(PathBuf::from))
                .flatten()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup2_mounts_are_found_in_mountinfo() {
        let info = "30 24 0:26 / /sys/fs/cgroup/unified rw,nosuid shared:9 - cgroup2 cgroup2 rw\n\
                    31 24 0:27 / /sys/fs/cgroup/cpu rw shared:10 - cgroup cgroup rw,cpu\n";
        assert_eq!(
            cgroup2_mounts(info),
            vec![PathBuf::from("/sys/fs/cgroup/unified")]
        );
    }
}
