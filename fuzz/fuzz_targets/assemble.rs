//! Arbitrary kernel records, decoded, joined into spawns by the assembler
//! and summarised the way a recording's end does (every spawn into an
//! [`analysis::Accumulator`]): no record sequence (any timestamps, any
//! progress bytes, exec attempts without their spawn, repeats) may panic.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use spawnprof::{
    analysis,
    model::FaultCoverage,
    trace::{
        Assembler,
        decode::{bytes_of, decode, zeroed},
    },
};
use spawnprof_common::{ExecEvent, SpawnEvent, TEXT_LEN, TextEvent, rec, spawn, ts};

#[derive(Arbitrary, Debug)]
struct Input {
    t0: u64,
    cow: bool,
    totals: bool,
    records: Vec<FuzzRecord>,
}

#[derive(Arbitrary, Debug)]
enum FuzzRecord {
    Spawn {
        /// Small ids, so that spawns and their exec attempts collide.
        id: u8,
        tgid: u8,
        progress: u32,
        ts: [u64; 6],
        flags: u64,
        syscall: u16,
        exit_signal: u32,
        counts: [u32; 8],
        path: Vec<u8>,
        path_len: u16,
    },
    Exec {
        id: u8,
        tgid: u8,
        enter: u64,
        exit: u64,
        ret: i64,
        path: Vec<u8>,
        path_len: u16,
    },
    Text {
        id: u8,
        tgid: u8,
        args: bool,
        text: Vec<u8>,
        len: u32,
    },
    Raw(Vec<u8>),
}

fn fill(buf: &mut [u8; TEXT_LEN], from: &[u8]) {
    let n = from.len().min(TEXT_LEN);
    buf[..n].copy_from_slice(&from[..n]);
}

impl FuzzRecord {
    fn bytes(&self) -> Vec<u8> {
        match self {
            FuzzRecord::Spawn {
                id,
                tgid,
                progress,
                ts: stamps,
                flags,
                syscall,
                exit_signal,
                counts,
                path,
                path_len,
            } => {
                let mut s: SpawnEvent = zeroed();
                s.kind = rec::SPAWN;
                s.spawn_id = u64::from(*id);
                (s.child_tid, s.child_tgid) = (u32::from(*tgid), u32::from(*tgid));
                s.mark(*progress & ((1 << spawn::COUNT) - 1));
                // A few boundaries, spread over the slots.
                for (i, t) in stamps.iter().enumerate() {
                    s.ts[(i * 4) % ts::COUNT] = *t;
                }
                (s.clone_flags, s.syscall, s.exit_signal) = (*flags, *syscall, *exit_signal);
                (s.exec_attempts, s.failed_attempts) = (counts[0] as u16, counts[1] as u16);
                (s.argc, s.envc, s.exit_code) = (counts[2], counts[3], counts[4]);
                (s.faults_total, s.cow_total, s.parent_cow) = (counts[5], counts[6], counts[7]);
                fill(&mut s.exec_path, path);
                s.exec_path_len = *path_len;
                bytes_of(&s)
            }
            FuzzRecord::Exec {
                id,
                tgid,
                enter,
                exit,
                ret,
                path,
                path_len,
            } => {
                let mut e: ExecEvent = zeroed();
                e.kind = rec::EXEC;
                (e.spawn_id, e.child_tgid) = (u64::from(*id), u32::from(*tgid));
                (e.enter, e.exit, e.ret) = (*enter, *exit, *ret);
                fill(&mut e.path, path);
                e.path_len = *path_len;
                bytes_of(&e)
            }
            FuzzRecord::Text {
                id,
                tgid,
                args,
                text,
                len,
            } => {
                let mut t: TextEvent = zeroed();
                t.kind = if *args {
                    rec::CAPTURE_ARGS
                } else {
                    rec::CAPTURE_ENV
                };
                (t.spawn_id, t.child_tgid, t.len) = (u64::from(*id), u32::from(*tgid), *len);
                fill(&mut t.text, text);
                bytes_of(&t)
            }
            FuzzRecord::Raw(bytes) => bytes.clone(),
        }
    }
}

fuzz_target!(|input: Input| {
    let coverage = FaultCoverage {
        cow: input.cow,
        totals: input.totals,
    };
    let mut asm = Assembler::new(input.t0, coverage);
    let mut stats = analysis::Accumulator::default();
    for r in &input.records {
        match decode(&r.bytes()) {
            Ok(record) => {
                if let Some(spawn) = asm.feed(record) {
                    stats.add(&spawn);
                }
            }
            Err(_) => asm.malformed(),
        }
    }
    let _ = (stats.counts(), stats.stage_stats(), stats.placement(), asm.stats());
});
