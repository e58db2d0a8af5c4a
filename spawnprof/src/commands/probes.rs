//! `spawnprof probes`: how each stage is observed on this kernel, and why.
use anyhow::Result;
use spawnprof::{
    cli::ProbeArgs,
    probe::{Host, Session, features, plan},
};

pub fn run(args: &ProbeArgs) -> Result<()> {
    let host = Host::probe()?;
    let session = Session::start(&host, &super::session_options(args)?)?;
    println!("kernel {}", host.kernel_release);
    println!("kernel features looked at:");
    print!("{}", features::render(&features::looked_at(&host)));
    print!("{}", plan::render(&session.plan));
    Ok(())
}
