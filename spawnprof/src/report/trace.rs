//! `trace.json`: the recording as a Chrome trace-event file, which
//! ui.perfetto.dev and chrome://tracing open.
//!
//! Structure (documented for users in docs/OUTPUT.md):
//! - one track per thread: `pid` is the thread group, `tid` the thread;
//!   a process's main thread has `tid == pid`;
//! - each measured stage of a spawn is a complete event (`"ph":"X"`, `ts`
//!   and `dur` in µs since the recording started, fractional to the ns).
//!   Parent-side stages (`clone` and its children) sit on the parent's
//!   thread; child-side stages (`sched_delay` … `exec_finish`, `run`, and
//!   `reap_delay`, the time spent as a zombie) on the child's. Zero-length
//!   stages are left out; `spawn_to_exec` spans both tracks and is shown by
//!   the flow arrow instead;
//! - each failed exec attempt is an instant event (`"ph":"i"`, `"s":"t"`)
//!   named `exec failed: <errno>` with the path in `args`;
//! - page faults are counter events (`"ph":"C"`): `faults` on the child
//!   (cumulative `all` and `cow` counts at its start, before its exec, and
//!   at its exit) and `cow_after_fork` on the parent (copy-on-write breaks
//!   from this fork to the parent's next fork);
//! - a flow (`"ph":"s"` inside the parent's `clone` slice, `"ph":"f"` with
//!   `"bp":"e"` inside the child's first slice, same `id`) links each spawn;
//! - `process_name` / `thread_name` metadata events (`"ph":"M"`) name the
//!   tracks after the command;
//! - `otherData` says what was traced and whether the trace was capped.
//!
//! The file is written while records stream past; at most `cap` spawns are
//! written (viewers struggle beyond a few hundred MB of JSON), and
//! `otherData` says how many were left out.
use std::{
    collections::HashMap,
    io::{self, Write},
};

use serde::Serialize;

use super::Summary;
use crate::model::{STAGES, Side, SpawnRecord, Timestamps};

/// Spawns written to `trace.json` before it is capped: about 45 MB of JSON,
/// which ui.perfetto.dev and chrome://tracing open in seconds (50 000
/// took 115 MB, and writing it a quarter of a million-spawn report's time).
pub const DEFAULT_CAP: u64 = 20_000;

/// `(start, end)` of a stage in ns, when both ends were seen in order.
/// Where a spawn's flow leaves the parent's clone slice and enters the
/// child's first slice: at the child's wake-up (or creation), kept strictly
/// inside the clone, and no earlier than that in the child's slice, so the
/// arrow never points back in time.
fn flow_ends(r: &SpawnRecord, clone: Slice, first: Slice) -> (u64, u64) {
    let inside = |t: u64, (start, end): Slice| {
        if end > start + 2 {
            t.clamp(start + 1, end - 1)
        } else {
            start + (end - start) / 2
        }
    };
    let handoff = r.ts.wakeup_new.or(r.ts.newtask).or(r.ts.fork_done);
    let from = inside(handoff.unwrap_or(clone.0 + (clone.1 - clone.0) / 2), clone);
    let middle = first.0 + (first.1 - first.0) / 2;
    let to = inside(middle.max(from), first);
    (from.min(to), to)
}

/// `spawn_to_exec` is not drawn as a slice: the flow arrow shows it.
pub fn stage_bounds(name: &str, ts: &Timestamps) -> Option<(u64, u64)> {
    if name == "spawn_to_exec" {
        return None;
    }
    crate::model::stage(name)?.bounds(ts)
}

fn on_parent_track(name: &str) -> bool {
    // reap_delay is the parent's lag, but it happens after the child is a
    // zombie: on the child's track it cannot overlap the parent's own
    // slices (its next clone), which would break the nesting viewers need.
    name != "reap_delay"
        && STAGES
            .iter()
            .any(|s| s.name == name && s.side == Side::Parent)
}

fn us(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

#[derive(Serialize)]
#[serde(untagged)]
enum Args<'a> {
    Clone {
        record: u64,
        method: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        flags: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        copy_page_range_ns: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        anon_vma_fork_ns: Option<u64>,
    },
    Record {
        record: u64,
    },
    Exec {
        path: &'a str,
        ret: Option<i64>,
        syscall: &'a str,
    },
    Faults {
        all: u64,
        cow: u64,
    },
    Cow {
        cow: u64,
    },
    Name {
        name: &'a str,
    },
}

#[derive(Serialize)]
struct Event<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    cat: &'static str,
    ph: &'static str,
    ts: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    dur: Option<f64>,
    pid: u32,
    tid: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bp: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    s: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    args: Option<Args<'a>>,
}

impl<'a> Event<'a> {
    fn new(name: &'a str, ph: &'static str, ts: u64, pid: u32, tid: u32) -> Self {
        Self {
            name,
            cat: "spawn",
            ph,
            ts: us(ts),
            dur: None,
            pid,
            tid,
            id: None,
            bp: None,
            s: None,
            args: None,
        }
    }
}

/// A track name and how sure we are of it: a child's name after its exec
/// beats its name before, which beats the name it had as someone's parent.
type Named = (u8, String);

fn name_track(map: &mut HashMap<(u32, u32), Named>, key: (u32, u32), rank: u8, name: &str) {
    match map.get_mut(&key) {
        Some(n) if n.0 > rank => {}
        Some(n) => *n = (rank, name.to_string()),
        None => {
            map.insert(key, (rank, name.to_string()));
        }
    }
}

/// A track: (pid, tid).
type Track = (u32, u32);
/// (start, end) of a slice, in ns.
type Slice = (u64, u64);

/// The tracks of a spawn's two sides: the parent's thread, and the child
/// (a new process's main thread, or a new thread of the parent's process).
#[derive(Clone, Copy)]
struct Tracks {
    parent: Option<Track>,
    child: Option<Track>,
}

impl Tracks {
    fn of(r: &SpawnRecord) -> Self {
        Self {
            parent: r.parent_pid.map(|p| (p, r.parent_tid.unwrap_or(p))),
            child: r.child_pid.map(|c| match (r.thread, r.parent_pid) {
                (true, Some(p)) => (p, c),
                _ => (c, c),
            }),
        }
    }
}

/// What was written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TraceStats {
    pub spawns_written: u64,
    pub spawns_seen: u64,
    pub events: u64,
}

/// Streams records into a trace-event JSON document.
pub struct TraceWriter<W: Write> {
    out: W,
    cap: u64,
    stats: TraceStats,
    /// (pid, tid) → name; `tid == 0` holds the process name.
    names: HashMap<(u32, u32), Named>,
}

impl<W: Write> TraceWriter<W> {
    pub fn new(mut out: W, cap: u64) -> io::Result<Self> {
        out.write_all(b"{\"traceEvents\":[\n")?;
        Ok(Self {
            out,
            cap,
            stats: TraceStats::default(),
            names: HashMap::new(),
        })
    }

    fn emit(&mut self, e: &Event<'_>) -> io::Result<()> {
        if self.stats.events > 0 {
            self.out.write_all(b",\n")?;
        }
        serde_json::to_writer(&mut self.out, e)?;
        self.stats.events += 1;
        Ok(())
    }

    /// The cap is reached: later spawns are only counted.
    pub fn is_full(&self) -> bool {
        self.stats.spawns_written >= self.cap
    }

    /// Writes the events of one spawn (nothing once the cap is reached).
    pub fn add(&mut self, r: &SpawnRecord) -> io::Result<()> {
        self.stats.spawns_seen += 1;
        if self.stats.spawns_written >= self.cap {
            return Ok(());
        }
        self.stats.spawns_written += 1;
        // 1-based position among the records: the line of spawns.jsonl.
        let record = self.stats.spawns_seen;
        let tracks = Tracks::of(r);
        self.name_tracks(r, tracks);
        let (clone_slice, first_child_slice) = self.stage_slices(r, record, tracks)?;
        if let Some((pid, tid)) = tracks.child {
            self.failed_execs(r, pid, tid)?;
            self.fault_counters(r, pid)?;
        }
        if let (Some((pid, tid)), Some(cow), Some(at)) = (
            tracks.parent,
            r.faults.parent_cow_after_fork,
            r.ts.clone_exit,
        ) {
            let mut e = Event::new("cow_after_fork", "C", at, pid, tid);
            e.args = Some(Args::Cow { cow });
            self.emit(&e)?;
        }
        if let (Some(parent), Some(child), Some(c), Some(f)) =
            (tracks.parent, tracks.child, clone_slice, first_child_slice)
        {
            self.flow(record, r, (parent, c), (child, f))?;
        }
        Ok(())
    }

    /// Names the spawn's tracks after the commands, keeping the surest name.
    fn name_tracks(&mut self, r: &SpawnRecord, tracks: Tracks) {
        if let Some((pid, tid)) = tracks.parent
            && let Some(comm) = &r.parent_comm
        {
            name_track(&mut self.names, (pid, 0), 0, comm);
            name_track(&mut self.names, (pid, tid), 0, comm);
        }
        if let Some((pid, tid)) = tracks.child {
            let comm = r.comm_after.as_ref().map(|c| (2, c));
            if let Some((rank, comm)) = comm.or(r.comm_before.as_ref().map(|c| (1, c))) {
                if !r.thread {
                    name_track(&mut self.names, (pid, 0), rank, comm);
                }
                name_track(&mut self.names, (pid, tid), rank, comm);
            }
        }
    }

    /// A complete event per measured stage, on the side it happens on.
    /// Returns the clone's slice and the child's first, which the flow links.
    fn stage_slices(
        &mut self,
        r: &SpawnRecord,
        record: u64,
        tracks: Tracks,
    ) -> io::Result<(Option<Slice>, Option<Slice>)> {
        let method = r
            .method
            .as_deref()
            .or(r.syscall.as_deref())
            .unwrap_or(if r.root { "root" } else { "unknown" });
        let mut clone_slice = None;
        let mut first_child_slice: Option<Slice> = None;
        for name in crate::model::STAGES.iter().map(|s| s.name) {
            let Some((start, end)) = stage_bounds(name, &r.ts) else {
                continue;
            };
            if end == start {
                continue;
            }
            let track = if on_parent_track(name) {
                tracks.parent
            } else {
                tracks.child
            };
            let Some((pid, tid)) = track else { continue };
            let mut e = Event::new(name, "X", start, pid, tid);
            e.dur = Some(us(end - start));
            e.args = Some(if name == "clone" {
                clone_slice = Some((start, end));
                Args::Clone {
                    record,
                    method,
                    flags: r.flags.as_deref(),
                    copy_page_range_ns: r.kernel_fn.as_ref().map(|k| k.copy_page_range_ns),
                    anon_vma_fork_ns: r.kernel_fn.as_ref().map(|k| k.anon_vma_fork_ns),
                }
            } else {
                Args::Record { record }
            });
            self.emit(&e)?;
            if !on_parent_track(name) && first_child_slice.is_none_or(|f| start < f.0) {
                first_child_slice = Some((start, end));
            }
        }
        Ok((clone_slice, first_child_slice))
    }

    /// An instant event on the child's track per failed exec attempt.
    fn failed_execs(&mut self, r: &SpawnRecord, pid: u32, tid: u32) -> io::Result<()> {
        for a in r.exec_attempts.iter().filter(|a| !a.succeeded()) {
            let name = match a.ret {
                Some(ret) => format!("exec failed: {}", errno_name(ret)),
                None => "exec failed: return not seen".to_string(),
            };
            let mut e = Event::new(&name, "i", a.enter, pid, tid);
            e.s = Some("t");
            e.args = Some(Args::Exec {
                path: &a.path,
                ret: a.ret,
                syscall: &a.syscall,
            });
            self.emit(&e)?;
        }
        Ok(())
    }

    /// The flow from the parent's clone slice to the child's first: bound
    /// by timestamp to the slice open at that moment, so both ends sit
    /// strictly inside their slice rather than on an edge. It leaves the
    /// clone when the child is handed to the scheduler (its wake-up), not
    /// at the clone's middle: a vfork parent's clone lasts until the
    /// child's exec, so its middle comes after the child started, and the
    /// arrow pointed back in time.
    fn flow(
        &mut self,
        record: u64,
        r: &SpawnRecord,
        ((ppid, ptid), clone): (Track, Slice),
        ((cpid, ctid), first): (Track, Slice),
    ) -> io::Result<()> {
        let (from, to) = flow_ends(r, clone, first);
        let mut s = Event::new("spawn", "s", from, ppid, ptid);
        s.id = Some(record);
        self.emit(&s)?;
        let mut e = Event::new("spawn", "f", to, cpid, ctid);
        e.id = Some(record);
        e.bp = Some("e");
        self.emit(&e)
    }

    /// The child's cumulative fault counts: zero when it starts, its
    /// pre-exec count when it execs, its total when it exits.
    fn fault_counters(&mut self, r: &SpawnRecord, pid: u32) -> io::Result<()> {
        let f = &r.faults;
        let start = r.ts.wakeup_new.or(r.ts.first_run);
        let points = [
            (start, Some(0), Some(0)),
            (r.ts.exec_first_enter, f.pre_exec, f.pre_exec_cow),
            (r.ts.exit, f.total, f.cow_total),
        ];
        if f.pre_exec.is_none() && f.total.is_none() {
            return Ok(());
        }
        for (at, all, cow) in points {
            let (Some(at), Some(all), Some(cow)) = (at, all, cow) else {
                continue;
            };
            let mut e = Event::new("faults", "C", at, pid, pid);
            e.args = Some(Args::Faults { all, cow });
            self.emit(&e)?;
        }
        Ok(())
    }

    /// Names the tracks, closes the document and returns the writer.
    /// `total_spawns`: the recording's spawns, when more were left unread
    /// than `add` saw (the streaming reader stops at the cap).
    pub fn finish(
        mut self,
        summary: &Summary,
        total_spawns: Option<u64>,
    ) -> io::Result<(W, TraceStats)> {
        if let Some(n) = total_spawns {
            self.stats.spawns_seen = self.stats.spawns_seen.max(n);
        }
        let mut names: Vec<((u32, u32), Named)> =
            std::mem::take(&mut self.names).into_iter().collect();
        names.sort();
        for ((pid, tid), (_, name)) in &names {
            let (kind, tid) = if *tid == 0 {
                ("process_name", *pid)
            } else {
                ("thread_name", *tid)
            };
            let mut e = Event::new(kind, "M", 0, *pid, tid);
            e.cat = "";
            e.args = Some(Args::Name { name });
            self.emit(&e)?;
        }
        let st = self.stats;
        let note = if st.spawns_written < st.spawns_seen {
            format!(
                "capped: the first {} of {} spawns (in spawns.jsonl order); all of them are in spawns.jsonl",
                st.spawns_written, st.spawns_seen
            )
        } else {
            "complete: every spawn of the recording".to_string()
        };
        let other = serde_json::json!({
            "tool": "spawnprof",
            "target": summary.target,
            "kernel": summary.kernel,
            "start_unix_s": summary.start_unix_s,
            "time_origin": "ts is µs since the recording started (summary.json start_monotonic_ns)",
            "spawns_in_trace": st.spawns_written,
            "spawns_total": st.spawns_seen,
            "note": note,
        });
        self.out
            .write_all(b"\n],\n\"displayTimeUnit\":\"ns\",\n\"otherData\":")?;
        serde_json::to_writer(&mut self.out, &other)?;
        self.out.write_all(b"}\n")?;
        self.out.flush()?;
        Ok((self.out, st))
    }
}

/// `ENOENT` for -2, the number otherwise.
pub fn errno_name(ret: i64) -> String {
    let name = match -ret {
        1 => "EPERM",
        2 => "ENOENT",
        7 => "E2BIG",
        8 => "ENOEXEC",
        12 => "ENOMEM",
        13 => "EACCES",
        14 => "EFAULT",
        20 => "ENOTDIR",
        21 => "EISDIR",
        26 => "ETXTBSY",
        36 => "ENAMETOOLONG",
        40 => "ELOOP",
        _ => return ret.to_string(),
    };
    name.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        model::{ExecAttempt, Faults},
        recording::synthetic::synthetic_summary,
    };

    fn summary() -> Summary {
        synthetic_summary("test", Default::default(), Default::default())
    }

    /// A fork of `sh` (pid 100) into 200, which fails one PATH lookup and
    /// then execs; its child 300 is spawned by 200 with vfork.
    pub(crate) fn family() -> Vec<SpawnRecord> {
        let mut a = SpawnRecord {
            parent_pid: Some(100),
            parent_tid: Some(100),
            parent_comm: Some("sh".into()),
            child_pid: Some(200),
            method: Some("fork".into()),
            syscall: Some("clone".into()),
            comm_before: Some("sh".into()),
            comm_after: Some("make".into()),
            ts: Timestamps {
                clone_enter: Some(1_000),
                newtask: Some(9_000),
                wakeup_new: Some(10_000),
                clone_exit: Some(11_000),
                first_run: Some(12_500),
                exec_first_enter: Some(14_000),
                exec_enter: Some(15_000),
                exec_prepare: Some(16_000),
                exec_done: Some(17_000),
                exec_return: Some(18_000),
                exit: Some(90_000),
                reap: Some(95_000),
                ..Default::default()
            },
            exec_attempts: vec![
                ExecAttempt {
                    enter: 14_000,
                    exit: Some(14_500),
                    ret: Some(-2),
                    path: "/usr/local/bin/make\"<x>".into(),
                    syscall: "execve".into(),
                    ..Default::default()
                },
                ExecAttempt {
                    enter: 15_000,
                    exit: Some(18_000),
                    ret: Some(0),
                    path: "/usr/bin/make".into(),
                    syscall: "execve".into(),
                    ..Default::default()
                },
            ],
            faults: Faults {
                pre_exec: Some(20),
                pre_exec_cow: Some(8),
                total: Some(120),
                cow_total: Some(9),
                parent_cow_after_fork: Some(5),
            },
            ..Default::default()
        };
        a.derive_durations();
        let mut b = SpawnRecord {
            parent_pid: Some(200),
            parent_tid: Some(200),
            parent_comm: Some("make".into()),
            child_pid: Some(300),
            method: Some("vfork".into()),
            syscall: Some("vfork".into()),
            comm_after: Some("cc".into()),
            ts: Timestamps {
                clone_enter: Some(30_000),
                newtask: Some(31_000),
                wakeup_new: Some(32_000),
                first_run: Some(33_000),
                exec_first_enter: Some(34_000),
                exec_enter: Some(34_000),
                exec_return: Some(40_000),
                clone_exit: Some(41_000),
                exit: Some(60_000),
                ..Default::default()
            },
            ..Default::default()
        };
        b.derive_durations();
        vec![a, b]
    }

    fn write(records: &[SpawnRecord], cap: u64) -> (serde_json::Value, TraceStats) {
        let mut w = TraceWriter::new(Vec::new(), cap).unwrap();
        for r in records {
            w.add(r).unwrap();
        }
        let (bytes, st) = w.finish(&summary(), None).unwrap();
        (serde_json::from_slice(&bytes).expect("valid JSON"), st)
    }

    #[test]
    fn trace_has_the_documented_structure() {
        let (doc, st) = write(&family(), 100);
        assert_eq!(st.spawns_written, 2);
        let events = doc["traceEvents"].as_array().expect("traceEvents array");
        let of = |ph: &'static str| events.iter().filter(move |e| e["ph"] == ph);
        for e in of("X") {
            for key in ["name", "ph", "ts", "dur", "pid", "tid"] {
                assert!(!e[key].is_null(), "{key} missing in {e}");
            }
            assert!(e["dur"].as_f64().unwrap() > 0.0);
        }
        let slice = |name: &str, pid: u64| {
            of("X")
                .find(|e| e["name"] == name && e["pid"] == pid)
                .unwrap_or_else(|| panic!("no {name} on {pid}"))
        };
        // Parent side on the parent, child side on the child, in µs.
        assert_eq!(slice("clone", 100)["ts"], 1.0);
        assert_eq!(slice("clone", 100)["dur"], 10.0);
        assert_eq!(slice("clone", 100)["args"]["method"], "fork");
        assert_eq!(slice("sched_delay", 200)["dur"], 2.5);
        assert_eq!(slice("reap_delay", 200)["dur"], 5.0);
        assert_eq!(slice("clone", 200)["tid"], 200);
        assert!(of("X").all(|e| e["name"] != "spawn_to_exec"));

        let failed: Vec<_> = of("i").collect();
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0]["name"], "exec failed: ENOENT");
        assert_eq!(failed[0]["args"]["path"], "/usr/local/bin/make\"<x>");
        assert_eq!(failed[0]["pid"], 200);

        let faults: Vec<_> = of("C").filter(|e| e["name"] == "faults").collect();
        let cows: Vec<u64> = faults
            .iter()
            .map(|e| e["args"]["cow"].as_u64().unwrap())
            .collect();
        assert_eq!(cows, vec![0, 8, 9]);
        assert!(of("C").any(|e| e["name"] == "cow_after_fork" && e["pid"] == 100));

        // Flows pair up, start inside the parent's clone and end inside the
        // child's first slice.
        let starts: Vec<_> = of("s").collect();
        let ends: Vec<_> = of("f").collect();
        assert_eq!(starts.len(), 2);
        for s in &starts {
            let f = ends.iter().find(|f| f["id"] == s["id"]).expect("paired f");
            assert_eq!(f["bp"], "e");
            let clone = of("X")
                .find(|e| {
                    e["name"] == "clone" && e["pid"] == s["pid"] && e["args"]["record"] == s["id"]
                })
                .unwrap();
            let (c0, cd) = (
                clone["ts"].as_f64().unwrap(),
                clone["dur"].as_f64().unwrap(),
            );
            let t = s["ts"].as_f64().unwrap();
            assert!(c0 < t && t < c0 + cd);
            assert_ne!(f["pid"], s["pid"]);
            // Forward in time, the vfork's too (its clone lasts until the
            // child's exec, long after the child started).
            assert!(t <= f["ts"].as_f64().unwrap(), "{s} → {f}");
        }

        let meta: Vec<_> = of("M").collect();
        let name_of = |kind: &str, pid: u64| {
            meta.iter()
                .find(|e| e["name"] == kind && e["pid"] == pid)
                .map(|e| e["args"]["name"].as_str().unwrap().to_string())
        };
        assert_eq!(name_of("process_name", 100).as_deref(), Some("sh"));
        // 200 is "make" both as a child (after exec) and as a parent.
        assert_eq!(name_of("process_name", 200).as_deref(), Some("make"));
        assert_eq!(name_of("thread_name", 300).as_deref(), Some("cc"));
        assert_eq!(doc["otherData"]["spawns_total"], 2);
        assert_eq!(doc["displayTimeUnit"], "ns");
    }

    #[test]
    fn a_capped_trace_says_so() {
        let recs: Vec<SpawnRecord> = family().into_iter().cycle().take(7).collect();
        let (doc, st) = write(&recs, 3);
        assert_eq!((st.spawns_written, st.spawns_seen), (3, 7));
        assert!(
            doc["otherData"]["note"]
                .as_str()
                .unwrap()
                .starts_with("capped")
        );
        let ids: std::collections::BTreeSet<u64> = doc["traceEvents"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["ph"] == "s")
            .map(|e| e["id"].as_u64().unwrap())
            .collect();
        assert_eq!(ids.into_iter().collect::<Vec<_>>(), vec![1, 2, 3]);
    }
}
