//! The kernel matrix: which Debian cloud kernels vm-test boots, where apt
//! finds them, and what each guest architecture needs on the host.

/// Debian's archive and its security archive.
const DEBIAN: &str = "http://deb.debian.org/debian";
const SECURITY: &str = "http://deb.debian.org/debian-security";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Arch {
    Amd64,
    Arm64,
}

impl Arch {
    /// Debian's name for it, as in `busybox-static:arm64`.
    pub fn debian(self) -> &'static str {
        match self {
            Arch::Amd64 => "amd64",
            Arch::Arm64 => "arm64",
        }
    }

    /// The Rust target spawnprof is built for, when it is not the host's.
    pub fn cross_target(self) -> Option<&'static str> {
        match self {
            Arch::Amd64 => None,
            Arch::Arm64 => Some("aarch64-unknown-linux-gnu"),
        }
    }

    /// Where the guest's libraries go (Debian's multiarch directory, which
    /// its dynamic loader searches without an ld.so.cache), and where the
    /// host keeps that architecture's libraries.
    pub fn lib_dirs(self) -> (&'static str, &'static [&'static str]) {
        match self {
            Arch::Amd64 => (
                "/lib/x86_64-linux-gnu",
                &["/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu"],
            ),
            Arch::Arm64 => ("/lib/aarch64-linux-gnu", &["/usr/aarch64-linux-gnu/lib"]),
        }
    }

    /// Host Debian packages that boot this architecture's guests and build
    /// its binaries. gcc-aarch64-linux-gnu only recommends the arm64 libc,
    /// and we install without recommends.
    pub fn host_packages(self) -> &'static [&'static str] {
        match self {
            Arch::Amd64 => &["qemu-system-x86"],
            Arch::Arm64 => &[
                "qemu-system-arm",
                "gcc-aarch64-linux-gnu",
                "libc6-dev-arm64-cross",
            ],
        }
    }

    /// The QEMU binary and the arguments before -kernel. pauth-impdef: TCG
    /// emulates pointer authentication's QARMA cipher slowly, and the guest
    /// cannot tell the implementation-defined one from it.
    pub fn qemu(self) -> (&'static str, &'static [&'static str]) {
        match self {
            Arch::Amd64 => ("qemu-system-x86_64", &["-cpu", "max"]),
            Arch::Arm64 => (
                "qemu-system-aarch64",
                &["-machine", "virt", "-cpu", "max,pauth-impdef=on"],
            ),
        }
    }

    pub fn console(self) -> &'static str {
        match self {
            Arch::Amd64 => "ttyS0",
            Arch::Arm64 => "ttyAMA0",
        }
    }
}

/// One guest of the matrix: a Debian cloud kernel package family, of which
/// the newest apt can download is booted.
pub struct Guest {
    /// Short name for messages, `--kernel` and the docs' table columns.
    pub name: &'static str,
    pub arch: Arch,
    /// (archive, suite) pairs apt looks in.
    pub suites: &'static [(&'static str, &'static str)],
    /// The package names are `{prefix}N{suffix}`; the highest N is newest.
    pub prefix: &'static str,
    pub suffix: &'static str,
    /// What `uname -r` starts with in the guest.
    pub release: &'static str,
    /// Only a few record runs: the guest is slow under TCG.
    pub short: bool,
}

impl Guest {
    /// The package name for N, or None when `name` is not of this family.
    pub fn number_of(&self, name: &str) -> Option<u32> {
        let n = name.strip_prefix(self.prefix)?.strip_suffix(self.suffix)?;
        n.parse().ok()
    }

    /// The family as an anchored POSIX regex, for `apt-cache search`.
    pub fn regex(&self) -> String {
        let escape = |s: &str| s.replace('.', r"\.").replace('+', r"\+");
        format!("^{}[0-9]+{}$", escape(self.prefix), escape(self.suffix))
    }
}

pub const GUESTS: &[Guest] = &[
    Guest {
        name: "5.10",
        arch: Arch::Amd64,
        suites: &[(DEBIAN, "bullseye"), (SECURITY, "bullseye-security")],
        prefix: "linux-image-5.10.0-",
        suffix: "-cloud-amd64-unsigned",
        release: "5.10.0-",
        short: false,
    },
    Guest {
        name: "6.1",
        arch: Arch::Amd64,
        suites: &[(DEBIAN, "bookworm"), (SECURITY, "bookworm-security")],
        prefix: "linux-image-6.1.0-",
        suffix: "-cloud-amd64-unsigned",
        release: "6.1.0-",
        short: false,
    },
    Guest {
        name: "6.12",
        arch: Arch::Amd64,
        suites: &[(DEBIAN, "trixie"), (SECURITY, "trixie-security")],
        prefix: "linux-image-6.12.",
        suffix: "+deb13-cloud-amd64-unsigned",
        release: "6.12.",
        short: false,
    },
    Guest {
        name: "6.1-arm64",
        arch: Arch::Arm64,
        suites: &[(DEBIAN, "bookworm"), (SECURITY, "bookworm-security")],
        prefix: "linux-image-6.1.0-",
        suffix: "-cloud-arm64-unsigned",
        release: "6.1.0-",
        short: true,
    },
];

/// Where busybox-static comes from for every architecture.
pub const BUSYBOX_SUITE: (&str, &str) = (DEBIAN, "bookworm");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_families_match_their_own_names_only() {
        let g = |name| GUESTS.iter().find(|g| g.name == name).unwrap();
        assert_eq!(
            g("6.12").number_of("linux-image-6.12.118+deb13-cloud-amd64-unsigned"),
            Some(118)
        );
        assert_eq!(
            g("6.12").number_of("linux-image-6.12.95+deb12-cloud-amd64-unsigned"),
            None
        );
        assert_eq!(
            g("6.1").number_of("linux-image-6.1.0-57-cloud-amd64-unsigned"),
            Some(57)
        );
        assert_eq!(
            g("6.1").number_of("linux-image-6.1.0-57-cloud-arm64-unsigned"),
            None
        );
        assert_eq!(
            g("6.12").regex(),
            r"^linux-image-6\.12\.[0-9]+\+deb13-cloud-amd64-unsigned$"
        );
    }
}
