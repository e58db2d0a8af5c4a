//! tracefs: finding (or mounting) it, and parsing tracepoint `format` files.
//!
//! Classic tracepoint records change layout between kernels (6.18 turned the
//! comm arrays of `sched_process_fork` into `__data_loc` strings, moving
//! parent_pid/child_pid from 24/44 to 12/20), so the probes never hard-code an
//! offset: the loader reads them here and passes them as globals.
use std::{
    collections::HashMap,
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result, bail};

/// Where tracefs is usually found; the first is mounted when none is.
const MOUNT_POINTS: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

/// A mounted tracefs.
#[derive(Clone, Debug)]
pub struct Tracefs {
    root: PathBuf,
}

impl Tracefs {
    /// Finds a mounted tracefs, mounting one at /sys/kernel/tracing if needed.
    pub fn open() -> Result<Self> {
        for dir in MOUNT_POINTS {
            if Path::new(dir).join("events").is_dir() {
                return Ok(Self { root: dir.into() });
            }
        }
        let target = MOUNT_POINTS[0];
        mount_tracefs(target).with_context(|| {
            format!(
                "tracefs is not mounted and mounting it at {target} failed; \
                 mount it by hand (`sudo mount -t tracefs nodev {target}`), \
                 or run spawnprof as root with CAP_SYS_ADMIN"
            )
        })?;
        // It stays mounted, as perf and bpftrace leave it: say so, since it
        // is a change to the host.
        crate::say!("spawnprof: tracefs was not mounted; mounted it at {target}");
        Ok(Self {
            root: target.into(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether `category:name` exists on this kernel.
    pub fn has_event(&self, category: &str, name: &str) -> bool {
        self.event_dir(category, name).join("format").is_file()
    }

    fn event_dir(&self, category: &str, name: &str) -> PathBuf {
        self.root.join("events").join(category).join(name)
    }

    /// The parsed format of `category:name`.
    pub fn format(&self, category: &str, name: &str) -> Result<EventFormat> {
        let path = self.event_dir(category, name).join("format");
        let text = fs::read_to_string(&path).with_context(|| {
            format!(
                "tracepoint {category}:{name} is not available ({})",
                path.display()
            )
        })?;
        EventFormat::parse(&text).with_context(|| format!("parsing {}", path.display()))
    }
}

fn mount_tracefs(target: &str) -> Result<()> {
    use std::ffi::CString;
    let source = CString::new("tracefs")?;
    let fstype = CString::new("tracefs")?;
    let dir = CString::new(target)?;
    // SAFETY: all pointers are valid NUL-terminated strings for the call's duration.
    let rc = unsafe {
        libc::mount(
            source.as_ptr(),
            dir.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    Ok(())
}

/// One field of a tracepoint record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field {
    /// The declaration as written, e.g. `__data_loc char[] parent_comm`.
    pub decl: String,
    pub offset: u32,
    pub size: u32,
    pub signed: bool,
}

impl Field {
    /// A `__data_loc` string: the record holds a (len << 16 | offset) locator.
    pub fn is_data_loc(&self) -> bool {
        self.decl.starts_with("__data_loc")
    }
}

/// The fields of a tracepoint record, by name.
#[derive(Clone, Debug, Default)]
pub struct EventFormat {
    pub id: Option<u32>,
    pub fields: HashMap<String, Field>,
}

impl EventFormat {
    /// Parses the text of a tracefs `format` file.
    pub fn parse(text: &str) -> Result<Self> {
        let mut format = Self::default();
        for line in text.lines() {
            let line = line.trim();
            if let Some(id) = line.strip_prefix("ID:") {
                format.id = id.trim().parse().ok();
                continue;
            }
            if !line.starts_with("field:") {
                continue;
            }
            let (name, field) = parse_field_line(line)
                .with_context(|| format!("unrecognised field line: {line:?}"))?;
            format.fields.insert(name, field);
        }
        if format.fields.is_empty() {
            bail!("no fields found");
        }
        Ok(format)
    }

    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.get(name)
    }

    /// Offset of `name`, checking it has the expected size.
    pub fn offset_of(&self, name: &str, size: u32) -> Result<u32> {
        let field = self
            .field(name)
            .with_context(|| format!("field {name} is missing"))?;
        if field.size != size {
            bail!("field {name} has size {}, expected {size}", field.size);
        }
        Ok(field.offset)
    }
}

/// `field:pid_t parent_pid;\toffset:12;\tsize:4;\tsigned:1;`
fn parse_field_line(line: &str) -> Option<(String, Field)> {
    let mut decl = None;
    let (mut offset, mut size, mut signed) = (None, None, false);
    for part in line.split(';') {
        let part = part.trim();
        if let Some(d) = part.strip_prefix("field:") {
            decl = Some(d.trim().to_string());
        } else if let Some(v) = part.strip_prefix("offset:") {
            offset = v.trim().parse().ok();
        } else if let Some(v) = part.strip_prefix("size:") {
            size = v.trim().parse().ok();
        } else if let Some(v) = part.strip_prefix("signed:") {
            signed = v.trim() == "1";
        }
    }
    let decl = decl?;
    let name = field_name(&decl)?;
    Some((
        name,
        Field {
            decl,
            offset: offset?,
            size: size?,
            signed,
        },
    ))
}

/// The identifier in a C declaration: `char comm[16]` → `comm`,
/// `struct mm_struct * mm` → `mm`, `__data_loc char[] filename` → `filename`.
fn field_name(decl: &str) -> Option<String> {
    let last = decl.split_whitespace().last()?;
    let last = last.trim_start_matches('*');
    let name = last.split('[').next()?;
    if name.is_empty() {
        return None;
    }
    Some(name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// sched_process_fork as printed by 6.18 (comms became __data_loc strings).
    const FORK_6_18: &str = "name: sched_process_fork
ID: 318
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:__data_loc char[] parent_comm;\toffset:8;\tsize:4;\tsigned:0;
\tfield:pid_t parent_pid;\toffset:12;\tsize:4;\tsigned:1;
\tfield:__data_loc char[] child_comm;\toffset:16;\tsize:4;\tsigned:0;
\tfield:pid_t child_pid;\toffset:20;\tsize:4;\tsigned:1;

print fmt: \"comm=%s pid=%d child_comm=%s child_pid=%d\", __get_str(parent_comm), REC->parent_pid, __get_str(child_comm), REC->child_pid
";

    /// The same event on older kernels (e.g. 6.1), with fixed comm arrays.
    const FORK_6_1: &str = "name: sched_process_fork
ID: 280
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:char parent_comm[16];\toffset:8;\tsize:16;\tsigned:1;
\tfield:pid_t parent_pid;\toffset:24;\tsize:4;\tsigned:1;
\tfield:char child_comm[16];\toffset:28;\tsize:16;\tsigned:1;
\tfield:pid_t child_pid;\toffset:44;\tsize:4;\tsigned:1;

print fmt: \"comm=%s pid=%d child_comm=%s child_pid=%d\", REC->parent_comm, REC->parent_pid, REC->child_comm, REC->child_pid
";

    #[test]
    fn parses_the_data_loc_layout_of_6_18() {
        let f = EventFormat::parse(FORK_6_18).unwrap();
        assert_eq!(f.id, Some(318));
        assert_eq!(f.offset_of("parent_pid", 4).unwrap(), 12);
        assert_eq!(f.offset_of("child_pid", 4).unwrap(), 20);
        assert!(f.field("child_comm").unwrap().is_data_loc());
        assert_eq!(f.field("common_pid").unwrap().offset, 4);
    }

    #[test]
    fn parses_the_comm_array_layout_of_older_kernels() {
        let f = EventFormat::parse(FORK_6_1).unwrap();
        assert_eq!(f.offset_of("parent_pid", 4).unwrap(), 24);
        assert_eq!(f.offset_of("child_pid", 4).unwrap(), 44);
        let comm = f.field("parent_comm").unwrap();
        assert_eq!((comm.offset, comm.size), (8, 16));
        assert!(!comm.is_data_loc());
    }

    #[test]
    fn pointer_and_array_declarations_yield_their_names() {
        assert_eq!(field_name("struct mm_struct * mm").as_deref(), Some("mm"));
        assert_eq!(
            field_name("const char *const * envp").as_deref(),
            Some("envp")
        );
        assert_eq!(field_name("char comm[16]").as_deref(), Some("comm"));
        assert_eq!(
            field_name("__data_loc char[] filename").as_deref(),
            Some("filename")
        );
    }

    #[test]
    fn a_size_mismatch_is_an_error_not_a_wrong_read() {
        let f = EventFormat::parse(FORK_6_18).unwrap();
        assert!(f.offset_of("child_pid", 8).is_err());
        assert!(f.offset_of("no_such_field", 4).is_err());
    }

    #[test]
    fn garbage_is_rejected() {
        assert!(EventFormat::parse("").is_err());
        assert!(EventFormat::parse("field:int x;\toffset:zz;").is_err());
    }
}
