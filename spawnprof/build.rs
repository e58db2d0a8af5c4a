//! Builds the eBPF object (`spawnprof-ebpf`) with the nightly toolchain and
//! bpf-linker, and leaves it in OUT_DIR for `include_bytes_aligned!`.
//! `cargo xtask setup` installs what this needs.
use std::path::Path;

fn main() -> anyhow::Result<()> {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR")?;
    let ebpf_dir = Path::new(&manifest_dir)
        .parent()
        .expect("spawnprof/ has a parent")
        .join("spawnprof-ebpf");
    let ebpf_dir = ebpf_dir.to_str().expect("utf-8 path");
    println!("cargo:rerun-if-changed={ebpf_dir}/src");
    println!("cargo:rerun-if-changed=../spawnprof-common/src");
    let package = aya_build::Package {
        name: "spawnprof-ebpf",
        root_dir: ebpf_dir,
        ..Default::default()
    };
    aya_build::build_ebpf([package], aya_build::Toolchain::default()).map_err(|e| {
        anyhow::anyhow!(
            "building the eBPF probes failed: {e:#}\n\
             hint: run `cargo xtask setup` to install nightly rust-src, llvm-22-dev and bpf-linker"
        )
    })
}
