//! The guest kernel: the newest Debian 6.1 cloud kernel apt knows, downloaded
//! once and cached as a bare vmlinuz (the guest boots without modules).
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, anyhow};

use super::files::{copy_file, create_dir, find_entry, read_dir, remove_dir_if_exists};
use crate::cmd::run_checked;

pub struct Kernel {
    pub package: String,
    pub vmlinuz: PathBuf,
    pub downloaded: bool,
}

/// Makes sure the newest available `linux-image-6.1.0-N-cloud-amd64-unsigned`
/// is unpacked in the cache and returns its vmlinuz. Its config is kept too,
/// for checking CONFIG_* options by hand.
pub fn fetch_kernel(cache: &Path) -> Result<Kernel> {
    let dir = cache.join("kernel");
    create_dir(&dir)?;
    let package = newest_kernel_package(&dir)?;
    let vmlinuz = dir.join(format!("{package}.vmlinuz"));
    let downloaded = !vmlinuz.is_file();
    if downloaded {
        println!("vm-test: downloading {package}");
        download(&dir, &package, &vmlinuz)?;
    }
    Ok(Kernel {
        package,
        vmlinuz,
        downloaded,
    })
}

/// `apt-get download` and `dpkg -x` in a scratch dir, moving the image into
/// place last so an interrupted run never leaves a half-written kernel that
/// looks cached.
fn download(dir: &Path, package: &str, vmlinuz: &Path) -> Result<()> {
    let work = dir.join(format!("{package}.partial"));
    remove_dir_if_exists(&work)?;
    create_dir(&work)?;
    run_checked(
        Command::new("apt-get")
            .args(["download", package])
            .current_dir(&work),
    )
    .with_context(|| {
        format!("downloading {package} failed; check network access and `apt-get update`")
    })?;
    let deb = find_entry(&work, |name| name.ends_with(".deb"))?
        .ok_or_else(|| anyhow!("apt-get download left no .deb in {}", work.display()))?;
    let unpacked = work.join("root");
    run_checked(Command::new("dpkg").arg("-x").arg(&deb).arg(&unpacked))?;
    let boot = unpacked.join("boot");
    let image = find_entry(&boot, |name| name.starts_with("vmlinuz-"))?
        .ok_or_else(|| anyhow!("{package} has no boot/vmlinuz-*"))?;
    if let Some(config) = find_entry(&boot, |name| name.starts_with("config-"))? {
        copy_file(&config, &dir.join(format!("{package}.config")))?;
    }
    let staged = dir.join(format!("{package}.vmlinuz.tmp"));
    copy_file(&image, &staged)?;
    fs::rename(&staged, vmlinuz).with_context(|| format!("moving {}", vmlinuz.display()))?;
    remove_dir_if_exists(&work)
}

/// The newest cloud kernel package apt knows (the highest ABI number wins),
/// else the newest cached one, e.g. offline with empty package lists.
fn newest_kernel_package(cache_dir: &Path) -> Result<String> {
    let search = || -> Result<Option<String>> {
        let out = run_checked(Command::new("apt-cache").args([
            "search",
            "--names-only",
            r"^linux-image-6\.1\.0-[0-9]+-cloud-amd64-unsigned$",
        ]))?;
        let names = out
            .lines()
            .filter_map(|line| line.split_whitespace().next());
        Ok(newest_by_abi(names))
    };
    if let Some(pkg) = search()? {
        return Ok(pkg);
    }
    println!("vm-test: no 6.1 cloud kernel in apt's lists, running apt-get update");
    let updated = run_checked(Command::new("apt-get").arg("update"));
    if updated.is_ok()
        && let Some(pkg) = search()?
    {
        return Ok(pkg);
    }
    let mut cached = Vec::new();
    for entry in read_dir(cache_dir)? {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(pkg) = name.strip_suffix(".vmlinuz") {
            cached.push(pkg.to_string());
        }
    }
    newest_by_abi(cached.iter().map(String::as_str)).ok_or_else(|| {
        anyhow!(
            "no linux-image-6.1.0-*-cloud-amd64-unsigned package found (apt-get update: {}); \
             this needs Debian 12 (bookworm) apt sources with network access",
            match updated {
                Ok(_) => "ok".to_string(),
                Err(e) => format!("{e:#}"),
            }
        )
    })
}

/// Picks the name with the highest ABI number N in `linux-image-6.1.0-N-...`.
fn newest_by_abi<'a>(names: impl Iterator<Item = &'a str>) -> Option<String> {
    names
        .filter_map(|name| {
            let abi = name.strip_prefix("linux-image-6.1.0-")?.split('-').next()?;
            Some((abi.parse::<u32>().ok()?, name))
        })
        .max()
        .map(|(_, name)| name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_highest_abi() {
        let names = [
            "linux-image-6.1.0-9-cloud-amd64-unsigned",
            "linux-image-6.1.0-56-cloud-amd64-unsigned",
            "linux-image-6.1.0-47-cloud-amd64-unsigned",
        ];
        assert_eq!(
            newest_by_abi(names.into_iter()).as_deref(),
            Some("linux-image-6.1.0-56-cloud-amd64-unsigned")
        );
    }
}
