//! Guest kernels: for each guest, the newest kernel of its Debian package
//! family that apt can download, unpacked once and cached as a bare vmlinuz
//! (the guests boot without modules).
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};

use super::apt::Apt;
use super::files::{copy_file, create_dir, find_entry, read_dir, remove_dir_if_exists};
use super::guests::Guest;

pub struct Kernel {
    pub package: String,
    pub vmlinuz: PathBuf,
    pub downloaded: bool,
}

/// The newest kernel of `guest`'s family in apt's lists that is cached or
/// downloads (a suite's lists can name kernels its pool no longer has), else
/// the newest cached one, e.g. offline. Its config is kept next to it, for
/// checking CONFIG_* options by hand.
pub fn fetch_kernel(apt: &Apt, guest: &Guest, cache: &Path) -> Result<Kernel> {
    let dir = cache.join("kernel");
    create_dir(&dir)?;
    let listed = apt.search(&guest.regex()).unwrap_or_else(|e| {
        println!("vm-test: {}: apt-cache search failed: {e:#}", guest.name);
        Vec::new()
    });
    let mut failures = Vec::new();
    for package in newest_first(guest, listed) {
        let vmlinuz = dir.join(format!("{package}.vmlinuz"));
        let downloaded = !vmlinuz.is_file();
        if downloaded {
            println!("vm-test: {}: downloading {package}", guest.name);
            if let Err(e) = download(apt, guest, &dir, &package, &vmlinuz) {
                println!("vm-test: {}: {e:#}; trying an older one", guest.name);
                failures.push(format!("{e:#}"));
                continue;
            }
        }
        return Ok(Kernel {
            package,
            vmlinuz,
            downloaded,
        });
    }
    newest_cached(guest, &dir)?.ok_or_else(|| {
        anyhow!(
            "no {}N{} kernel could be downloaded or is cached ({}); this needs network \
             access to deb.debian.org",
            guest.prefix,
            guest.suffix,
            if failures.is_empty() {
                "apt lists none".to_string()
            } else {
                failures.join("; ")
            }
        )
    })
}

/// Downloads and unpacks `package` in a scratch dir and moves the image into
/// place last, so an interrupted run never leaves a half-written kernel
/// that looks cached.
fn download(apt: &Apt, guest: &Guest, dir: &Path, package: &str, vmlinuz: &Path) -> Result<()> {
    let unpacked = dir.join(format!("{package}.partial"));
    apt.unpack(&format!("{package}:{}", guest.arch.debian()), &unpacked)?;
    let boot = unpacked.join("boot");
    let image = find_entry(&boot, |name| name.starts_with("vmlinuz-"))?
        .ok_or_else(|| anyhow!("{package} has no boot/vmlinuz-*"))?;
    if let Some(config) = find_entry(&boot, |name| name.starts_with("config-"))? {
        copy_file(&config, &dir.join(format!("{package}.config")))?;
    }
    let staged = dir.join(format!("{package}.vmlinuz.tmp"));
    copy_file(&image, &staged)?;
    fs::rename(&staged, vmlinuz).with_context(|| format!("moving {}", vmlinuz.display()))?;
    remove_dir_if_exists(&unpacked)
}

fn newest_cached(guest: &Guest, dir: &Path) -> Result<Option<Kernel>> {
    let cached = read_dir(dir)?.into_iter().filter_map(|entry| {
        let name = entry.file_name().to_string_lossy().into_owned();
        name.strip_suffix(".vmlinuz").map(str::to_string)
    });
    Ok(newest_first(guest, cached)
        .into_iter()
        .next()
        .map(|package| {
            println!("vm-test: {}: using the cached {package}", guest.name);
            Kernel {
                vmlinuz: dir.join(format!("{package}.vmlinuz")),
                package,
                downloaded: false,
            }
        }))
}

/// The names of `guest`'s family among `names`, highest number first.
fn newest_first(guest: &Guest, names: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut family: Vec<(u32, String)> = names
        .into_iter()
        .filter_map(|name| Some((guest.number_of(&name)?, name)))
        .collect();
    family.sort_unstable_by(|a, b| b.cmp(a));
    family.dedup();
    family.into_iter().map(|(_, name)| name).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::guests::GUESTS;

    #[test]
    fn newest_of_the_family_first() {
        let names = [
            "linux-image-6.1.0-9-cloud-amd64-unsigned",
            "linux-image-6.1.0-56-cloud-amd64-unsigned",
            "linux-image-6.1.0-60-cloud-arm64-unsigned",
            "linux-image-6.1.0-47-cloud-amd64-unsigned",
        ];
        assert_eq!(
            newest_first(&GUESTS[1], names.map(String::from)),
            [
                "linux-image-6.1.0-56-cloud-amd64-unsigned",
                "linux-image-6.1.0-47-cloud-amd64-unsigned",
                "linux-image-6.1.0-9-cloud-amd64-unsigned"
            ]
        );
    }
}
