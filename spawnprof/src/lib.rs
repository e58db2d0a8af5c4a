pub const PROBES: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/spawnprof"));
