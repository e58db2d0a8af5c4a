// Cargo does not know the eBPF object depends on the linker binary; without
// this, switching bpf-linker versions leaves a stale object behind.
fn main() {
    if let Ok(linker) = which::which("bpf-linker") {
        println!("cargo:rerun-if-changed={}", linker.display());
    }
}
