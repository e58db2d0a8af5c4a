//! cgroup v2: where it is mounted, and the paths of cgroup ids (a cgroup's
//! id is its directory's inode number), for `serve --cgroup-label`.
use std::{
    collections::HashMap,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
};

/// Where cgroup2 is mounted, from /proc/self/mountinfo.
pub fn cgroup2_mounts(mountinfo: &str) -> Vec<PathBuf> {
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

/// Cgroup ids to paths below the cgroup2 mount ("/system.slice/x.service"),
/// remembered once found. An id not found (the cgroup is gone, or another
/// hierarchy's) is named by its number.
#[derive(Debug, Default)]
pub struct CgroupNames {
    root: Option<PathBuf>,
    known: HashMap<u64, String>,
}

impl CgroupNames {
    pub fn new() -> Self {
        let mounts = super::procfs::read("/proc/self/mountinfo").unwrap_or_default();
        Self::at(cgroup2_mounts(&mounts).into_iter().next())
    }

    pub fn at(root: Option<PathBuf>) -> Self {
        Self {
            root,
            known: HashMap::new(),
        }
    }

    /// The path of each of `ids`, walking the hierarchy once for those not
    /// known yet.
    pub fn resolve(&mut self, ids: impl IntoIterator<Item = u64>) {
        let missing: Vec<u64> = ids
            .into_iter()
            .filter(|id| !self.known.contains_key(id))
            .collect();
        if missing.is_empty() {
            return;
        }
        if let Some(root) = &self.root {
            walk(root, root, &mut |id, rel| {
                if missing.contains(&id) {
                    self.known.insert(id, rel);
                }
            });
        }
        for id in missing {
            self.known
                .entry(id)
                .or_insert_with(|| format!("cgroup id {id}"));
        }
    }

    /// The name of a resolved id.
    pub fn name(&self, id: u64) -> String {
        self.known
            .get(&id)
            .cloned()
            .unwrap_or_else(|| format!("cgroup id {id}"))
    }
}

/// Calls `found(inode, "/relative/path")` for `dir` and every directory below.
fn walk(root: &Path, dir: &Path, found: &mut impl FnMut(u64, String)) {
    let Ok(meta) = std::fs::metadata(dir) else {
        return;
    };
    let rel = dir.strip_prefix(root).unwrap_or(dir);
    found(meta.ino(), format!("/{}", rel.display()));
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            walk(root, &entry.path(), found);
        }
    }
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

    #[test]
    fn ids_are_named_by_their_directory() {
        let root = std::env::temp_dir().join(format!("spawnprof-cg-{}", std::process::id()));
        let sub = root.join("system.slice/x.service");
        std::fs::create_dir_all(&sub).unwrap();
        let id = std::fs::metadata(&sub).unwrap().ino();
        let root_id = std::fs::metadata(&root).unwrap().ino();
        let mut names = CgroupNames::at(Some(root.clone()));
        names.resolve([id, root_id, 1]);
        std::fs::remove_dir_all(&root).unwrap();
        assert_eq!(names.name(id), "/system.slice/x.service");
        assert_eq!(names.name(root_id), "/");
        assert_eq!(names.name(1), "cgroup id 1");
    }
}
