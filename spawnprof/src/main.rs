fn main() -> anyhow::Result<()> {
    let mut ebpf = aya::Ebpf::load(spawnprof::PROBES)?;
    for (name, _) in ebpf.programs_mut() { println!("{name}"); }
    Ok(())
}
