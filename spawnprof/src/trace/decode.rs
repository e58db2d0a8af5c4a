//! Ring-buffer records → [`Record`]s. Every record starts with its kind
//! ([`rec`]); its size must be the size of that kind's struct (a spawn
//! record may stop after its path). Anything
//! else (short, oversized, unknown kind, a length past its buffer) is
//! rejected here rather than trusted.
use anyhow::{Result, bail};
use spawnprof_common::{
    COMM_LEN, ExecEvent, Notice, PATH_LEN_MASK, SPAWN_PATH_OFFSET, TEXT_LEN, TEXT_TRUNCATED,
    TextEvent, rec,
};

pub use spawnprof_common::SpawnEvent;

/// One decoded ring-buffer record.
#[derive(Clone, Debug)]
pub enum Record {
    Spawn(Box<SpawnEvent>),
    Exec(ExecEvent),
    Text(TextEvent),
    Notice(Notice),
}

/// The kind of a raw record, without decoding the rest.
pub fn kind_of(bytes: &[u8]) -> Option<u16> {
    Some(u16::from_ne_bytes(bytes.get(..2)?.try_into().ok()?))
}

/// Reads a `T` from exactly `size_of::<T>()` bytes.
fn read<T: Copy>(bytes: &[u8], what: &str) -> Result<T> {
    let want = size_of::<T>();
    if bytes.len() != want {
        bail!("{what} record of {} bytes, expected {want}", bytes.len());
    }
    // SAFETY: every record type is repr(C) plain data valid for any bit
    // pattern, and the length was checked; read_unaligned copes with the
    // ring buffer's 8-byte alignment being a promise we do not rely on.
    Ok(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) })
}

/// A spawn record, sent only as far as its path goes
/// ([`SpawnEvent::wire_len`]): the rest is zero.
fn read_spawn(bytes: &[u8]) -> Result<SpawnEvent> {
    let full = size_of::<SpawnEvent>();
    if !(SPAWN_PATH_OFFSET..=full).contains(&bytes.len()) {
        bail!(
            "spawn record of {} bytes, expected {SPAWN_PATH_OFFSET} to {full}",
            bytes.len()
        );
    }
    let mut s: SpawnEvent = zeroed();
    // SAFETY: plain data valid for any bit pattern; at most its size copied.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), (&raw mut s).cast::<u8>(), bytes.len())
    };
    // The path came with the record, and its NUL.
    let path = usize::from(s.exec_path_len & PATH_LEN_MASK);
    let carried = bytes.len() - SPAWN_PATH_OFFSET;
    if path > 0 && path >= carried {
        bail!(
            "spawn record of {} bytes with an exec path of {path} bytes",
            bytes.len()
        );
    }
    Ok(s)
}

/// Decodes one ring-buffer record.
pub fn decode(bytes: &[u8]) -> Result<Record> {
    let Some(kind) = kind_of(bytes) else {
        bail!("record of {} bytes is too short for a kind", bytes.len());
    };
    Ok(match kind {
        rec::SPAWN => Record::Spawn(Box::new(read_spawn(bytes)?)),
        rec::EXEC => {
            let e: ExecEvent = read(bytes, "exec")?;
            if usize::from(e.path_len & PATH_LEN_MASK) > TEXT_LEN {
                bail!("exec record with a path of {} bytes", e.path_len);
            }
            Record::Exec(e)
        }
        rec::CAPTURE_ARGS | rec::CAPTURE_ENV => {
            let t: TextEvent = read(bytes, "capture")?;
            if (t.len & !TEXT_TRUNCATED) as usize > TEXT_LEN {
                bail!(
                    "capture record with {} bytes of text",
                    t.len & !TEXT_TRUNCATED
                );
            }
            Record::Text(t)
        }
        rec::NOTICE_EXEC | rec::NOTICE_EXIT | rec::NOTICE_FORK => {
            Record::Notice(read(bytes, "notice")?)
        }
        other => bail!("unknown record kind {other}"),
    })
}

/// A NUL-padded kernel comm as a string.
pub fn comm_str(comm: &[u8; COMM_LEN]) -> String {
    let end = comm.iter().position(|&b| b == 0).unwrap_or(COMM_LEN);
    String::from_utf8_lossy(&comm[..end]).into_owned()
}

/// A path of `len` bytes (its length bits) at the start of `buf`, cut at
/// its NUL: the kernel's string length counts it.
pub fn path_str(buf: &[u8; TEXT_LEN], len: u16) -> String {
    let raw = &buf[..usize::from(len & PATH_LEN_MASK).min(TEXT_LEN)];
    let raw = raw.split(|&b| b == 0).next().unwrap_or_default();
    String::from_utf8_lossy(raw).into_owned()
}

/// Captured strings: NUL-separated, the empty ones dropped.
pub fn strings(t: &TextEvent) -> Vec<String> {
    let n = ((t.len & !TEXT_TRUNCATED) as usize).min(TEXT_LEN);
    t.text[..n]
        .split(|&b| b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

/// The bytes of a record, as the kernel sends it (tests, fuzzing).
pub fn bytes_of<T: Copy>(v: &T) -> Vec<u8> {
    // SAFETY: reading the bytes of a plain-data value.
    unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), size_of::<T>()) }.to_vec()
}

/// A zeroed record of a plain-data type (tests, fuzzing, the root spawn).
pub fn zeroed<T: Copy>() -> T {
    // SAFETY: every record type is valid for the all-zero bit pattern.
    unsafe { std::mem::zeroed() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_each_kind_and_rejects_malformed_records() {
        let mut s: SpawnEvent = zeroed();
        s.kind = rec::SPAWN;
        s.exec_path[..5].copy_from_slice(b"/bin\0");
        s.exec_path_len = 5;
        let Record::Spawn(got) = decode(&bytes_of(&s)).unwrap() else {
            panic!("not a spawn")
        };
        assert_eq!(path_str(&got.exec_path, got.exec_path_len), "/bin");
        let mut e: ExecEvent = zeroed();
        e.kind = rec::EXEC;
        assert!(matches!(decode(&bytes_of(&e)).unwrap(), Record::Exec(_)));
        let mut t: TextEvent = zeroed();
        t.kind = rec::CAPTURE_ARGS;
        t.text[..7].copy_from_slice(b"a\0bc\0\0d");
        t.len = 7 | TEXT_TRUNCATED;
        let Record::Text(got) = decode(&bytes_of(&t)).unwrap() else {
            panic!("not a capture")
        };
        assert_eq!(strings(&got), ["a", "bc", "d"]);

        assert!(decode(&[1]).is_err(), "too short");
        assert!(decode(&bytes_of(&s)[..100]).is_err(), "truncated spawn");
        // As the kernel sends it: only as far as the path goes.
        s.exec_path[..10].copy_from_slice(b"/bin/true\0");
        s.exec_path_len = 9;
        let wire = s.wire();
        assert_eq!(wire.len(), 442);
        let Record::Spawn(got) = decode(wire).unwrap() else {
            panic!("not a spawn")
        };
        assert_eq!(path_str(&got.exec_path, got.exec_path_len), "/bin/true");
        assert!(
            decode(&bytes_of(&s)[..SPAWN_PATH_OFFSET + 9]).is_err(),
            "a path past the record's end"
        );
        let mut long = bytes_of(&e);
        long.push(0);
        assert!(decode(&long).is_err(), "oversized exec");
        e.path_len = 300;
        assert!(decode(&bytes_of(&e)).is_err(), "path past its buffer");
        let mut unknown = bytes_of(&e);
        unknown[0] = 99;
        assert!(decode(&unknown).is_err(), "unknown kind");
    }
}
