//! Ring-buffer records → [`Event`]s. The kernel writes [`Mark`]s and
//! [`spawnprof_common::TextMark`]s; anything else (short, oversized, unknown
//! kind) is rejected here rather than trusted.
use anyhow::{Result, bail};
use spawnprof_common::{COMM_LEN, Mark, TEXT_LEN, TEXT_TRUNCATED, kind};

/// A decoded mark, with its text when it carried one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub mark: Mark,
    pub text: Option<String>,
    pub text_truncated: bool,
}

impl Event {
    pub fn comm(&self) -> String {
        comm_str(&self.mark.comm)
    }
}

/// A NUL-padded kernel comm as a string.
pub fn comm_str(comm: &[u8; COMM_LEN]) -> String {
    let end = comm.iter().position(|&b| b == 0).unwrap_or(COMM_LEN);
    String::from_utf8_lossy(&comm[..end]).into_owned()
}

const MARK_SIZE: usize = size_of::<Mark>();

/// Decodes one ring-buffer record.
pub fn decode(bytes: &[u8]) -> Result<Event> {
    if bytes.len() < MARK_SIZE {
        bail!(
            "record of {} bytes is shorter than a mark ({MARK_SIZE})",
            bytes.len()
        );
    }
    // SAFETY: Mark is repr(C) plain data valid for any bit pattern, and the
    // length was checked; read_unaligned copes with the ring buffer's 8-byte
    // alignment being a promise we do not need to rely on.
    let mark: Mark = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
    if mark.kind == 0 || mark.kind >= kind::COUNT {
        bail!("unknown mark kind {}", mark.kind);
    }
    let text_len = (mark.text_len & !TEXT_TRUNCATED) as usize;
    let has_text = bytes.len() > MARK_SIZE;
    if !has_text {
        if text_len != 0 {
            bail!("mark claims {text_len} bytes of text but carries none");
        }
        return Ok(Event {
            mark,
            text: None,
            text_truncated: false,
        });
    }
    let body = &bytes[MARK_SIZE..];
    if body.len() > TEXT_LEN || text_len > body.len() {
        bail!(
            "text of {text_len} bytes does not fit a {} byte body",
            body.len()
        );
    }
    let raw = &body[..text_len];
    // Strings end at their NUL (the kernel's length counts it); captured
    // argument and environment blocks keep theirs as separators.
    let raw = if matches!(mark.kind, kind::EXEC_ARGS | kind::EXEC_ENV) {
        raw
    } else {
        raw.split(|&b| b == 0).next().unwrap_or_default()
    };
    Ok(Event {
        mark,
        text: Some(String::from_utf8_lossy(raw).into_owned()),
        text_truncated: mark.text_len & TEXT_TRUNCATED != 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes_of(mark: &Mark) -> Vec<u8> {
        // SAFETY: Mark is plain data.
        unsafe { std::slice::from_raw_parts((mark as *const Mark).cast::<u8>(), MARK_SIZE) }
            .to_vec()
    }

    #[test]
    fn decodes_bare_and_text_marks() {
        let mut m = Mark {
            kind: kind::EXEC_ENTER,
            tid: 7,
            ..Default::default()
        };
        m.comm[..2].copy_from_slice(b"sh");
        let e = decode(&bytes_of(&m)).unwrap();
        assert_eq!(e.mark.tid, 7);
        assert_eq!(e.comm(), "sh");
        assert_eq!(e.text, None);

        m.text_len = 10; // "/bin/true" + NUL
        let mut b = bytes_of(&m);
        let mut body = [0u8; TEXT_LEN];
        body[..9].copy_from_slice(b"/bin/true");
        b.extend_from_slice(&body);
        let e = decode(&b).unwrap();
        assert_eq!(e.text.as_deref(), Some("/bin/true"));
        assert!(!e.text_truncated);
    }

    #[test]
    fn rejects_malformed_records() {
        assert!(decode(&[0u8; 10]).is_err());
        let m = Mark {
            kind: 999,
            ..Default::default()
        };
        assert!(decode(&bytes_of(&m)).is_err());
        let m = Mark {
            kind: kind::EXIT,
            text_len: 5,
            ..Default::default()
        };
        assert!(decode(&bytes_of(&m)).is_err(), "claims text it lacks");
        let m = Mark {
            kind: kind::EXEC_ENTER,
            text_len: 300,
            ..Default::default()
        };
        let mut b = bytes_of(&m);
        b.extend_from_slice(&[b'a'; 20]);
        assert!(decode(&b).is_err(), "text longer than the body");
    }
}
