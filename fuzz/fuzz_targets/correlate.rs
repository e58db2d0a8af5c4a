//! Arbitrary marks, encoded as ring-buffer records and decoded, through the
//! reorder window and the correlator, then summarised the way `record` does
//! (every finished record into an [`analysis::Accumulator`]):
//! no mark sequence (any timestamps, missing or repeated stages, pid reuse)
//! may panic.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use spawnprof::{
    analysis,
    trace::{Correlator, Reorder, decode},
};
use spawnprof_common::{COMM_LEN, Mark, TEXT_LEN, TEXT_TRUNCATED, kind};

#[derive(Arbitrary, Debug)]
struct Input {
    t0: u64,
    root: Option<u8>,
    window_ns: u16,
    steps: Vec<Step>,
}

#[derive(Arbitrary, Debug)]
enum Step {
    Mark(FuzzMark),
    /// The record loop's periodic release at CLOCK_MONOTONIC `now`.
    Ready(u64),
}

#[derive(Arbitrary, Debug)]
struct FuzzMark {
    /// Absolute, or added to the previous mark's timestamp (wrapping).
    ts: u64,
    ts_is_delta: bool,
    kind: u8,
    /// Small ids, so that parents, children and reaped pids collide.
    tid: u8,
    tgid: u8,
    a: u64,
    /// Take `a` as a small id (child tid, reaped pid) rather than a value.
    a_is_id: bool,
    b: u64,
    c: u64,
    comm: [u8; 4],
    text: Option<(Vec<u8>, bool)>,
}

impl FuzzMark {
    fn record(&self, prev_ts: u64) -> Vec<u8> {
        let mut comm = [0u8; COMM_LEN];
        comm[..4].copy_from_slice(&self.comm);
        let text = self.text.as_ref().map(|(t, truncated)| {
            let t = &t[..t.len().min(TEXT_LEN)];
            (t, if *truncated { TEXT_TRUNCATED } else { 0 })
        });
        let mark = Mark {
            ts_ns: if self.ts_is_delta {
                prev_ts.wrapping_add(self.ts % 1_000_000)
            } else {
                self.ts
            },
            tid: self.tid.into(),
            tgid: self.tgid.into(),
            kind: 1 + u16::from(self.kind) % (kind::COUNT - 1),
            cpu: 0,
            text_len: text.map_or(0, |(t, flag)| t.len() as u32 | flag),
            a: if self.a_is_id { self.a % 256 } else { self.a },
            b: self.b,
            c: self.c,
            comm,
        };
        // SAFETY: Mark is repr(C) plain data without padding.
        let mut bytes = unsafe {
            std::slice::from_raw_parts((&mark as *const Mark).cast::<u8>(), size_of::<Mark>())
        }
        .to_vec();
        if let Some((t, _)) = text {
            bytes.extend_from_slice(t);
        }
        bytes
    }
}

fuzz_target!(|input: Input| {
    let mut reorder = Reorder::new(input.window_ns.into());
    let mut correlator = Correlator::new(input.t0, input.root.map(u32::from));
    let mut stats = analysis::Accumulator::default();
    let mut prev_ts = input.t0;
    for step in &input.steps {
        match step {
            Step::Mark(m) => {
                let Ok(event) = decode(&m.record(prev_ts)) else {
                    continue;
                };
                prev_ts = event.mark.ts_ns;
                reorder.push(event);
            }
            Step::Ready(now) => {
                for event in reorder.ready(*now) {
                    correlator.feed(&event);
                }
                correlator.take_finished().iter().for_each(|r| stats.add(r));
            }
        }
    }
    for event in reorder.drain() {
        correlator.feed(&event);
    }
    correlator.finish_all();
    correlator.take_finished().iter().for_each(|r| stats.add(r));
    assert_eq!(correlator.in_flight(), 0);
    let _ = stats.counts();
    let _ = stats.stage_stats();
});
