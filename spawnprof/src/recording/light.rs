//! Reading a large `spawns.jsonl` quickly and in little memory.
//!
//! Parsing every [`SpawnRecord`](crate::model::SpawnRecord) in full costs
//! about 8 µs a line (a million spawns: over 8 s on one core), mostly
//! allocating strings and map nodes that aggregate reports never look at.
//! Those need a few fields, so the bulk of the file is read as
//! [`LightRecord`]s, which borrow from the line and skip everything else,
//! on every core, in blocks of whole lines.
use std::{
    borrow::Cow,
    fmt,
    fs::File,
    path::Path,
    sync::atomic::{AtomicBool, AtomicUsize, Ordering},
};

use anyhow::{Context as _, Result, anyhow};
use serde::{
    Deserialize, Deserializer,
    de::{self, Visitor},
};

use crate::model::{StageDurations, stage_names, stage_position};

/// A string borrowed from the line when it has no escapes, copied otherwise.
#[derive(Debug)]
pub struct Str<'a>(pub Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Str<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v.to_string())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// The fields of a spawn record the aggregate reports use; the rest of the
/// line is skipped without allocating.
#[derive(Debug, Deserialize)]
pub struct LightRecord<'a> {
    #[serde(borrow, default)]
    pub parent_comm: Option<Str<'a>>,
    #[serde(default)]
    pub thread: bool,
    #[serde(default)]
    pub root: bool,
    #[serde(borrow, default)]
    pub syscall: Option<Str<'a>>,
    #[serde(borrow, default)]
    pub method: Option<Str<'a>>,
    #[serde(default)]
    pub child_pid: Option<u32>,
    #[serde(borrow, default)]
    pub exec_path: Option<Str<'a>>,
    #[serde(default)]
    pub failed_exec_attempts: u64,
    #[serde(default)]
    pub durations: StageDurations,
}

impl<'a> LightRecord<'a> {
    /// The same fields of a full record, borrowed.
    pub fn of(r: &'a crate::model::SpawnRecord) -> Self {
        let str = |s: &'a Option<String>| s.as_deref().map(|s| Str(Cow::Borrowed(s)));
        LightRecord {
            parent_comm: str(&r.parent_comm),
            thread: r.thread,
            root: r.root,
            syscall: str(&r.syscall),
            method: str(&r.method),
            child_pid: r.child_pid,
            exec_path: str(&r.exec_path),
            failed_exec_attempts: r.failed_exec_attempts,
            durations: r.durations,
        }
    }
}

/// Bytes of the file each work item covers.
const CHUNK: usize = 4 << 20;

/// A worker's result: its aggregates, the line count of each chunk it
/// parsed (to turn a chunk-relative error into a file line number), and
/// the first error it met as (chunk, line in chunk, message).
struct WorkerOut<A> {
    acc: A,
    lines: Vec<(usize, usize)>,
    error: Option<(usize, usize, String)>,
}

/// Folds every record of `path` into an `A` per thread with `add`, on
/// `workers` threads, then merges those with `merge`.
///
/// The file is cut into fixed chunks that the workers take in turn and
/// read themselves (`pread`), so copying from the page cache is spread
/// over the cores too. A chunk owns the lines that start inside it: it
/// skips the partial line at its start (unless the byte before it is a
/// newline) and reads on past its end to finish its last line.
pub fn fold<A, Add, Merge>(path: &Path, workers: usize, add: Add, merge: Merge) -> Result<A>
where
    A: Default + Send,
    Add: Fn(&mut A, &LightRecord<'_>) + Sync,
    Merge: Fn(&mut A, A),
{
    fold_chunked(path, workers, CHUNK, &add, merge)
}

pub(crate) fn fold_chunked<A, Add, Merge>(
    path: &Path,
    workers: usize,
    chunk_size: usize,
    add: &Add,
    merge: Merge,
) -> Result<A>
where
    A: Default + Send,
    Add: Fn(&mut A, &LightRecord<'_>) + Sync,
    Merge: Fn(&mut A, A),
{
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    // Records appended while we read are left for the next report.
    let len = file
        .metadata()
        .with_context(|| format!("reading {}", path.display()))?
        .len() as usize;
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let outs: Vec<std::thread::Result<Result<WorkerOut<A>>>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers.max(1))
            .map(|_| s.spawn(|| worker(&file, len, chunk_size, &next, &failed, add)))
            .collect();
        handles.into_iter().map(|h| h.join()).collect()
    });

    let mut acc = A::default();
    let mut lines = Vec::new();
    let mut first_error: Option<(usize, usize, String)> = None;
    for out in outs {
        let out = out
            .map_err(|_| anyhow!("a thread reading {} panicked", path.display()))?
            .with_context(|| format!("reading {}", path.display()))?;
        merge(&mut acc, out.acc);
        lines.extend(out.lines);
        if let Some(e) = out.error
            && first_error.as_ref().is_none_or(|f| (e.0, e.1) < (f.0, f.1))
        {
            first_error = Some(e);
        }
    }
    if let Some((chunk, line, msg)) = first_error {
        // Every chunk before the first bad one was parsed (workers stop
        // only after an error), so its line counts are all here.
        let before: usize = lines
            .iter()
            .filter(|(c, _)| *c < chunk)
            .map(|(_, n)| n)
            .sum();
        return Err(anyhow!(msg)).with_context(|| {
            format!(
                "{}:{} is not a valid spawn record (truncated or corrupt recording)",
                path.display(),
                before + line
            )
        });
    }
    Ok(acc)
}

fn worker<A: Default>(
    file: &File,
    len: usize,
    chunk_size: usize,
    next: &AtomicUsize,
    failed: &AtomicBool,
    add: &impl Fn(&mut A, &LightRecord<'_>),
) -> Result<WorkerOut<A>> {
    let mut out = WorkerOut {
        acc: A::default(),
        lines: Vec::new(),
        error: None,
    };
    let mut chunk_buf = ChunkBuf::default();
    while !failed.load(Ordering::Relaxed) {
        let chunk = next.fetch_add(1, Ordering::Relaxed);
        let start = chunk * chunk_size;
        if start >= len {
            break;
        }
        let end = (start + chunk_size).min(len);
        // One byte before the chunk tells whether a line starts at `start`.
        let from = start.saturating_sub(1);
        chunk_buf.read_range(file, from, end, len)?;
        let buf = chunk_buf.bytes();
        let mut pos = 0;
        if chunk > 0 {
            // Skip through the first newline: the line it ends belongs to
            // the previous chunk (if buf[0] is that newline, nothing else).
            match memchr::memchr(b'\n', buf) {
                Some(nl) if from + nl < end => pos = nl + 1,
                // No line starts in this chunk.
                _ => {
                    out.lines.push((chunk, 0));
                    continue;
                }
            }
        }
        let owned_end = end - from; // lines starting before this are ours
        parse_lines(buf, pos, owned_end, chunk, &mut out, add);
        if out.error.is_some() {
            failed.store(true, Ordering::Relaxed);
        }
    }
    Ok(out)
}

/// A read buffer that keeps its memory between chunks: it only grows, so
/// refilling it costs no zeroing (which showed up at 3% of the time).
#[derive(Default)]
struct ChunkBuf {
    data: Vec<u8>,
    len: usize,
}

impl ChunkBuf {
    fn bytes(&self) -> &[u8] {
        &self.data[..self.len]
    }

    /// Appends `n` bytes at `offset` (fewer only at the end of the file).
    fn read_at(&mut self, file: &File, offset: usize, n: usize) -> Result<()> {
        use std::os::unix::fs::FileExt as _;
        if self.data.len() < self.len + n {
            self.data.resize(self.len + n, 0);
        }
        let mut got = 0;
        while got < n {
            let at = self.len + got;
            match file.read_at(&mut self.data[at..at + n - got], (offset + got) as u64) {
                Ok(0) => break,
                Ok(k) => got += k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.len += got;
        Ok(())
    }

    /// Reads `from..end`, then on until the newline that ends the last
    /// line (or the end of the file).
    fn read_range(&mut self, file: &File, from: usize, end: usize, len: usize) -> Result<()> {
        self.len = 0;
        self.read_at(file, from, end - from)?;
        let mut at = end;
        // Lines are a few kB: read on in small steps, doubling for long ones.
        let mut step = 4096;
        while at < len && self.bytes().last() != Some(&b'\n') {
            let before = self.len;
            self.read_at(file, at, step.min(len - at))?;
            if let Some(nl) = memchr::memchr(b'\n', &self.bytes()[before..]) {
                self.len = before + nl + 1;
                break;
            }
            at += self.len - before;
            step = (step * 2).min(4 << 20);
        }
        Ok(())
    }
}

/// Parses the lines of `buf` that start in `pos..owned_end`.
fn parse_lines<A>(
    buf: &[u8],
    mut pos: usize,
    owned_end: usize,
    chunk: usize,
    out: &mut WorkerOut<A>,
    add: &impl Fn(&mut A, &LightRecord<'_>),
) {
    let mut line_no = 0;
    while pos < owned_end && pos < buf.len() {
        let end = memchr::memchr(b'\n', &buf[pos..]).map_or(buf.len(), |i| pos + i);
        let line = &buf[pos..end];
        pos = end + 1;
        line_no += 1;
        if line.trim_ascii().is_empty() {
            continue;
        }
        // The fast path, and serde_json for anything it does not expect
        // (and for the error message when the line is bad).
        if let Some(r) = scan_line(line) {
            add(&mut out.acc, &r);
            continue;
        }
        match serde_json::from_slice::<LightRecord<'_>>(line) {
            Ok(r) => add(&mut out.acc, &r),
            Err(e) => {
                out.error = Some((chunk, line_no, e.to_string()));
                return;
            }
        }
    }
    out.lines.push((chunk, line_no));
}

// The fast path. serde_json skips the fields nobody reads at about
// 400 MB/s, which for a million 1.6 kB lines is four seconds of CPU. Here
// the fields are read by hand, everything else is skipped by bracket
// matching, and once all of them have been seen the rest of the line is not
// read at all. Anything unexpected (escapes in a key, floats, a non-object
// line) returns None and the line goes through serde_json instead, which
// also produces the error message for bad lines. What the fast path does
// not read, it does not check: a line damaged after its `durations` still
// counts (the full parse of the head of the file, for trace.json, checks
// those lines completely).

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\r' | b'\n') {
        i += 1;
    }
    i
}

/// Index just past the string whose opening quote is at `i`, and whether
/// it holds escapes. A byte loop: most strings here are a few bytes long,
/// shorter than a SIMD search pays off for.
fn skip_string(b: &[u8], i: usize) -> Option<(usize, bool)> {
    let mut j = i + 1;
    let mut escaped = false;
    loop {
        match *b.get(j)? {
            b'"' => return Some((j + 1, escaped)),
            // The escaped character is never the closing quote.
            b'\\' => {
                escaped = true;
                j += 2;
            }
            _ => j += 1,
        }
    }
}

/// Index just past the object or array opening at `i`, when it holds no
/// nested object or array and no escapes (like `ts`): then its first
/// closing bracket outside a string ends it, which three SIMD searches
/// find. `None` means "not that simple", not "malformed".
fn skip_flat(b: &[u8], i: usize, close: u8) -> Option<usize> {
    let rest = &b[i + 1..];
    let mut from = 0;
    loop {
        let c = from + memchr::memchr(close, &rest[from..])?;
        let region = &rest[..c];
        if memchr::memchr3(b'{', b'[', b'\\', region).is_some() {
            return None;
        }
        // An even number of quotes before it: the bracket is outside any
        // string. Otherwise it sits inside one; look for the next.
        if memchr::memchr_iter(b'"', region).count().is_multiple_of(2) {
            return Some(i + 1 + c + 1);
        }
        from = c + 1;
    }
}

/// Index just past the JSON value starting at `i`.
fn skip_value(b: &[u8], i: usize) -> Option<usize> {
    match *b.get(i)? {
        b'"' => skip_string(b, i).map(|(e, _)| e),
        open @ (b'{' | b'[') => {
            let close = if open == b'{' { b'}' } else { b']' };
            if let Some(end) = skip_flat(b, i, close) {
                return Some(end);
            }
            let mut depth = 0usize;
            let mut j = i;
            while j < b.len() {
                match b[j] {
                    b'"' => {
                        j = skip_string(b, j)?.0;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            None
        }
        _ => {
            let mut j = i;
            while j < b.len() && !matches!(b[j], b',' | b'}' | b']' | b' ' | b'\t' | b'\r' | b'\n')
            {
                j += 1;
            }
            (j > i).then_some(j)
        }
    }
}

/// A string value or null; unescaped through serde_json when it has escapes.
fn opt_str(b: &[u8], i: usize) -> Option<(Option<Str<'_>>, usize)> {
    if b[i..].starts_with(b"null") {
        return Some((None, i + 4));
    }
    if b.get(i) != Some(&b'"') {
        return None;
    }
    let (end, escaped) = skip_string(b, i)?;
    let s = if escaped {
        Cow::Owned(serde_json::from_slice::<String>(&b[i..end]).ok()?)
    } else {
        Cow::Borrowed(std::str::from_utf8(&b[i + 1..end - 1]).ok()?)
    };
    Some((Some(Str(s)), end))
}

/// A whole number or null.
fn opt_u64(b: &[u8], mut i: usize) -> Option<(Option<u64>, usize)> {
    if b[i..].starts_with(b"null") {
        return Some((None, i + 4));
    }
    let start = i;
    let mut v: u64 = 0;
    while let Some(d) = b.get(i).filter(|c| c.is_ascii_digit()) {
        v = v.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
        i += 1;
    }
    (i > start).then_some((Some(v), i))
}

fn boolean(b: &[u8], i: usize) -> Option<(bool, usize)> {
    if b[i..].starts_with(b"true") {
        Some((true, i + 4))
    } else if b[i..].starts_with(b"false") {
        Some((false, i + 5))
    } else {
        None
    }
}

/// A key (its quote at `i`) and the index of its value. `None` for keys
/// with escapes: those go to serde_json.
fn key_at(b: &[u8], i: usize) -> Option<(&[u8], usize)> {
    let (end, escaped) = skip_string(b, i)?;
    if escaped {
        return None;
    }
    let j = skip_ws(b, end);
    if b.get(j) != Some(&b':') {
        return None;
    }
    Some((&b[i + 1..end - 1], skip_ws(b, j + 1)))
}

/// `"name":` for every stage, in name order: the order a `BTreeMap`
/// serializes them in, so in our own files each key is one compare.
fn key_patterns() -> &'static [(Vec<u8>, usize)] {
    use std::sync::OnceLock;
    static PATTERNS: OnceLock<Vec<(Vec<u8>, usize)>> = OnceLock::new();
    PATTERNS.get_or_init(|| {
        let mut v: Vec<(Vec<u8>, usize)> = stage_names()
            .enumerate()
            .map(|(i, n)| (format!("\"{n}\":").into_bytes(), i))
            .collect();
        v.sort();
        v
    })
}

/// The `durations` object: stage name → integer or null.
fn durations(b: &[u8], mut i: usize, out: &mut StageDurations) -> Option<usize> {
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i += 1;
    let patterns = key_patterns();
    let mut next = 0;
    loop {
        i = skip_ws(b, i);
        match *b.get(i)? {
            b'}' => return Some(i + 1),
            b'"' => {}
            _ => return None,
        }
        let slot = match patterns.get(next) {
            Some((pat, pos)) if b[i..].starts_with(pat) => {
                i = skip_ws(b, i + pat.len());
                next += 1;
                Some(*pos)
            }
            // Not the expected key (another writer, an unknown stage):
            // find it by name.
            _ => {
                let (key, at) = key_at(b, i)?;
                i = at;
                std::str::from_utf8(key).ok().and_then(stage_position)
            }
        };
        let value;
        (value, i) = opt_u64(b, i)?;
        if let Some(p) = slot {
            out.0[p] = value;
        }
        i = skip_ws(b, i);
        match *b.get(i)? {
            b',' => i += 1,
            b'}' => return Some(i + 1),
            _ => return None,
        }
    }
}

/// The fast path over one line (see above).
pub fn scan_line(b: &[u8]) -> Option<LightRecord<'_>> {
    const ALL: u16 = 0b1_1111_1111;
    let mut i = skip_ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i += 1;
    let mut r = LightRecord {
        parent_comm: None,
        thread: false,
        root: false,
        syscall: None,
        method: None,
        child_pid: None,
        exec_path: None,
        failed_exec_attempts: 0,
        durations: StageDurations::default(),
    };
    let mut seen = 0u16;
    loop {
        i = skip_ws(b, i);
        match *b.get(i)? {
            b'}' => return Some(r),
            b'"' => {}
            _ => return None,
        }
        let (key, at) = key_at(b, i)?;
        let bit;
        (i, bit) = field(key, b, at, &mut r)?;
        seen |= bit;
        if seen == ALL {
            return Some(r);
        }
        i = skip_ws(b, i);
        match *b.get(i)? {
            b',' => i += 1,
            b'}' => return Some(r),
            _ => return None,
        }
    }
}

/// Reads the value of `key` at `i` into `r` (or skips it): where the
/// value ends, and the bit of the field among those [`scan_line`] wants.
#[inline]
fn field<'a>(
    key: &[u8],
    b: &'a [u8],
    mut i: usize,
    r: &mut LightRecord<'a>,
) -> Option<(usize, u16)> {
    let bit = match key {
        b"parent_comm" => {
            (r.parent_comm, i) = opt_str(b, i)?;
            1
        }
        b"method" => {
            (r.method, i) = opt_str(b, i)?;
            2
        }
        b"syscall" => {
            (r.syscall, i) = opt_str(b, i)?;
            4
        }
        b"thread" => {
            (r.thread, i) = boolean(b, i)?;
            8
        }
        b"root" => {
            (r.root, i) = boolean(b, i)?;
            16
        }
        b"durations" => {
            i = durations(b, i, &mut r.durations)?;
            32
        }
        b"child_pid" => {
            let pid;
            (pid, i) = opt_u64(b, i)?;
            r.child_pid = pid.map(u32::try_from).transpose().ok()?;
            64
        }
        b"exec_path" => {
            (r.exec_path, i) = opt_str(b, i)?;
            128
        }
        b"failed_exec_attempts" => {
            let n;
            (n, i) = opt_u64(b, i)?;
            r.failed_exec_attempts = n?;
            256
        }
        _ => {
            i = skip_value(b, i)?;
            0
        }
    };
    Some((i, bit))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recording::synthetic::synthesize;

    fn same(a: &LightRecord<'_>, b: &LightRecord<'_>) {
        let text = |s: &Option<Str<'_>>| s.as_ref().map(|s| s.0.to_string());
        assert_eq!(text(&a.parent_comm), text(&b.parent_comm));
        assert_eq!(text(&a.method), text(&b.method));
        assert_eq!(text(&a.syscall), text(&b.syscall));
        assert_eq!(a.root, b.root);
        assert_eq!(a.thread, b.thread);
        assert_eq!(a.durations.0, b.durations.0);
        assert_eq!(a.child_pid, b.child_pid);
        assert_eq!(text(&a.exec_path), text(&b.exec_path));
        assert_eq!(a.failed_exec_attempts, b.failed_exec_attempts);
    }

    #[test]
    fn light_records_read_the_same_fields_as_full_ones() {
        for r in synthesize(300, 3) {
            let line = serde_json::to_string(&r).unwrap();
            let light: LightRecord<'_> = serde_json::from_str(&line).unwrap();
            assert_eq!(light.durations.0, r.durations.0);
            assert_eq!(
                light.parent_comm.as_ref().map(|s| &*s.0),
                r.parent_comm.as_deref()
            );
            assert_eq!(light.method.as_ref().map(|s| &*s.0), r.method.as_deref());
            assert_eq!(light.syscall.as_ref().map(|s| &*s.0), r.syscall.as_deref());
            assert_eq!(light.root, r.root);
            assert_eq!(light.thread, r.thread);
            assert_eq!(light.child_pid, r.child_pid);
            assert_eq!(
                light.exec_path.as_ref().map(|s| &*s.0),
                r.exec_path.as_deref()
            );
            assert_eq!(light.failed_exec_attempts, r.failed_exec_attempts);
            same(
                &scan_line(line.as_bytes()).expect("fast path takes our own lines"),
                &light,
            );
        }
        // Escaped strings are copied, not lost.
        let light: LightRecord<'_> =
            serde_json::from_str(r#"{"parent_comm":"a\"b","durations":{"clone":5,"new_stage":1}}"#)
                .unwrap();
        assert_eq!(light.parent_comm.unwrap().0, "a\"b");
        assert_eq!(
            light.durations.0[stage_names().position(|n| n == "clone").unwrap()],
            Some(5)
        );
    }

    #[test]
    fn the_fast_path_agrees_with_serde_or_steps_aside() {
        let lines = [
            // Escapes, braces and quotes inside skipped and read strings.
            r#"{"parent_pid":1,"flags":"a}b{\"c]","parent_comm":"sh \"x\"","ts":{"a":[1,{"b":"}"}]},"thread":false,"root":true,"syscall":"clone","method":"fork","durations":{"clone":7,"exec":null}}"#,
            // Fields in another order, whitespace, a missing field.
            r#" { "durations" : { "clone" : 3 } , "method" : null , "thread" : true } "#,
            // A stage name this version does not know.
            r#"{"durations":{"zzz_new":5,"clone":1},"parent_comm":null,"method":"vfork","syscall":"vfork","thread":false,"root":false}"#,
        ];
        for line in lines {
            let fast =
                scan_line(line.as_bytes()).unwrap_or_else(|| panic!("fast path refused {line}"));
            let slow: LightRecord<'_> = serde_json::from_str(line).unwrap();
            same(&fast, &slow);
        }
        // Unusual input is left to serde_json.
        for odd in [
            r#"{"durations":{"clone":1.5}}"#,
            "[1]",
            r#"{"thread":"yes"}"#,
            "{",
        ] {
            assert!(scan_line(odd.as_bytes()).is_none(), "{odd}");
        }
    }
}
