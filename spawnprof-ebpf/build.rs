fn main() {
    // aya-build passes the userspace target's architecture as
    // `--cfg bpf_target_arch=...`; the probes name syscall functions by it.
    println!(
        "cargo::rustc-check-cfg=cfg(bpf_target_arch, values(\"aarch64\", \"arm\", \"loongarch64\", \"mips\", \"powerpc64\", \"riscv64\", \"s390x\", \"x86_64\"))"
    );
    // Cargo does not know the eBPF object depends on the linker binary;
    // without this, switching bpf-linker versions leaves a stale object.
    if let Ok(linker) = which::which("bpf-linker") {
        println!("cargo:rerun-if-changed={}", linker.display());
    }
}
