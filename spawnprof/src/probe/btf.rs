//! Just enough of a BTF reader to find struct member offsets and function
//! names in the kernel's own type information (/sys/kernel/btf/vmlinux).
//!
//! The probes are built without CO-RE relocations, so the few kernel struct
//! fields they read (task->mm, mm->env_start/env_end, task->exit_code) get
//! their offsets from here at load time. aya parses BTF too but keeps type
//! lookups private.
use std::collections::{HashMap, HashSet};

use anyhow::{Context as _, Result, bail, ensure};

const MAGIC: u16 = 0xeb9f;

const KIND_INT: u32 = 1;
const KIND_PTR: u32 = 2;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_FUNC: u32 = 12;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_DECL_TAG: u32 = 17;
const KIND_TYPE_TAG: u32 = 18;
const KIND_ENUM64: u32 = 19;

#[derive(Clone, Debug)]
struct Member {
    name: u32,
    type_id: u32,
    bit_offset: u32,
}

#[derive(Clone, Debug)]
struct Type {
    kind: u32,
    name: u32,
    /// Size, or the referenced type id for modifiers/typedefs.
    size_or_type: u32,
    members: Vec<Member>,
}

/// A BTF blob, read little-endian; reads past its end are errors.
/// Parsed kernel BTF (types and strings only).
pub struct KernelBtf {
    types: Vec<Type>, // index = type id; id 0 is void
    strings: Vec<u8>,
    structs_by_name: HashMap<String, u32>,
}

impl KernelBtf {
    pub fn from_sys_fs() -> Result<Self> {
        let path = "/sys/kernel/btf/vmlinux";
        let data = std::fs::read(path).with_context(|| {
            format!("reading {path} (kernel built without CONFIG_DEBUG_INFO_BTF?)")
        })?;
        Self::parse(&data)
    }

    /// The header, then the type section, then an index of the structs.
    pub fn parse(data: &[u8]) -> Result<Self> {
        ensure!(
            u16_at(data, 0)? == MAGIC,
            "not little-endian BTF (bad magic)"
        );
        let hdr_len = u32_at(data, 4)? as usize;
        let type_off = u32_at(data, 8)? as usize;
        let type_len = u32_at(data, 12)? as usize;
        let str_off = u32_at(data, 16)? as usize;
        let str_len = u32_at(data, 20)? as usize;
        let types_start = hdr_len + type_off;
        let types_end = types_start + type_len;
        let strings = data
            .get(hdr_len + str_off..hdr_len + str_off + str_len)
            .context("truncated BTF string section")?
            .to_vec();
        ensure!(types_end <= data.len(), "truncated BTF type section");

        let mut types = vec![Type {
            kind: 0,
            name: 0,
            size_or_type: 0,
            members: Vec::new(),
        }];
        let mut at = types_start;
        while at < types_end {
            let (ty, next) = read_type(data, at)?;
            types.push(ty);
            at = next;
        }
        let mut btf = Self {
            types,
            strings,
            structs_by_name: HashMap::new(),
        };
        for (id, ty) in btf.types.iter().enumerate() {
            // Keep the first complete definition of each struct name.
            if ty.kind == KIND_STRUCT && ty.name != 0 {
                let name = btf.string(ty.name).to_string();
                btf.structs_by_name.entry(name).or_insert(id as u32);
            }
        }
        Ok(btf)
    }

    fn string(&self, offset: u32) -> &str {
        let rest = self.strings.get(offset as usize..).unwrap_or_default();
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        std::str::from_utf8(&rest[..end]).unwrap_or("")
    }

    /// Follows typedefs and qualifiers to the underlying type id.
    fn resolve(&self, mut id: u32) -> u32 {
        for _ in 0..32 {
            match self.types.get(id as usize) {
                Some(t)
                    if matches!(
                        t.kind,
                        KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG
                    ) =>
                {
                    id = t.size_or_type
                }
                _ => break,
            }
        }
        id
    }

    /// Byte offset of `member` in `struct name`, looking through anonymous
    /// struct/union members (mm_struct keeps most fields in one).
    pub fn member_offset(&self, struct_name: &str, member: &str) -> Option<u32> {
        let id = *self.structs_by_name.get(struct_name)?;
        self.find_member(id, member, 0, &mut HashSet::new())
            .map(|bits| bits / 8)
    }

    /// Size in bytes of `struct name`.
    pub fn struct_size(&self, struct_name: &str) -> Option<u32> {
        let id = *self.structs_by_name.get(struct_name)?;
        Some(self.types.get(id as usize)?.size_or_type)
    }

    /// `searched`: types already looked into. Each is searched once, so a
    /// corrupt BTF whose anonymous members point back at their own struct
    /// (or many at one type) cannot make the search exponential.
    fn find_member(
        &self,
        id: u32,
        member: &str,
        depth: u32,
        searched: &mut HashSet<u32>,
    ) -> Option<u32> {
        if depth > 8 || !searched.insert(id) {
            return None;
        }
        let ty = self.types.get(id as usize)?;
        for m in &ty.members {
            if m.name != 0 && self.string(m.name) == member {
                return Some(m.bit_offset);
            }
        }
        for m in ty.members.iter().filter(|m| m.name == 0) {
            let inner = self.resolve(m.type_id);
            if let Some(t) = self.types.get(inner as usize)
                && matches!(t.kind, KIND_STRUCT | KIND_UNION)
                && let Some(off) = self.find_member(inner, member, depth + 1, searched)
            {
                // Corrupt BTF can place members past u32 bits: no offset.
                return m.bit_offset.checked_add(off);
            }
        }
        None
    }

    /// Which argument of the raw tracepoint `name` is its first `bool`
    /// (0 for the first argument), from the `btf_trace_<name>` typedef the
    /// kernel declares for every tracepoint: a pointer to a prototype whose
    /// first parameter is the probe's own data, not an argument. Arguments
    /// come and go between kernels (mmap_lock lost its memcg_path in about
    /// 6.14), and a raw tracepoint program reads them by position.
    pub fn raw_tracepoint_bool_arg(&self, name: &str) -> Option<u32> {
        let typedef = format!("btf_trace_{name}");
        let ty = self
            .types
            .iter()
            .find(|t| t.kind == KIND_TYPEDEF && self.string(t.name) == typedef)?;
        let ptr = self.types.get(self.resolve(ty.size_or_type) as usize)?;
        let proto = self.types.get(self.resolve(ptr.size_or_type) as usize)?;
        if ptr.kind != KIND_PTR || proto.kind != KIND_FUNC_PROTO {
            return None;
        }
        let position = proto.members.iter().skip(1).position(|param| {
            self.types
                .get(self.resolve(param.type_id) as usize)
                .is_some_and(|t| t.kind == KIND_INT && self.string(t.name) == "_Bool")
        })?;
        u32::try_from(position).ok()
    }

    /// How many types the kernel's BTF describes.
    pub fn type_count(&self) -> usize {
        self.types.len() - 1
    }

    /// Whether the kernel has a function of this name in its BTF (a
    /// precondition for fentry/fexit; inlined functions are absent).
    pub fn has_function(&self, name: &str) -> bool {
        self.types
            .iter()
            .any(|t| t.kind == KIND_FUNC && self.string(t.name) == name)
    }
}

fn u16_at(data: &[u8], at: usize) -> Result<u16> {
    let bytes = data.get(at..at + 2).context("truncated BTF")?;
    Ok(u16::from_le_bytes(bytes.try_into()?))
}

fn u32_at(data: &[u8], at: usize) -> Result<u32> {
    let bytes = data.get(at..at + 4).context("truncated BTF")?;
    Ok(u32::from_le_bytes(bytes.try_into()?))
}

/// The type record at `at`, and where the next one starts. Struct and union
/// members keep their offsets; a prototype's parameters are kept as
/// members too (name and type, offset 0).
fn read_type(data: &[u8], at: usize) -> Result<(Type, usize)> {
    let name = u32_at(data, at)?;
    let info = u32_at(data, at + 4)?;
    let size_or_type = u32_at(data, at + 8)?;
    let at = at + 12;
    let kind = (info >> 24) & 0x1f;
    let vlen = (info & 0xffff) as usize;
    let kind_flag = info >> 31 == 1;
    let member = |m: usize| -> Result<Member> {
        let raw = u32_at(data, m + 8)?;
        Ok(Member {
            name: u32_at(data, m)?,
            type_id: u32_at(data, m + 4)?,
            // With kind_flag the top byte is a bitfield size.
            bit_offset: if kind_flag { raw & 0x00ff_ffff } else { raw },
        })
    };
    let param = |p: usize| -> Result<Member> {
        Ok(Member {
            name: u32_at(data, p)?,
            type_id: u32_at(data, p + 4)?,
            bit_offset: 0,
        })
    };
    let (members, len) = match kind {
        KIND_INT | KIND_VAR | KIND_DECL_TAG => (Vec::new(), 4),
        KIND_ARRAY => (Vec::new(), 12),
        KIND_STRUCT | KIND_UNION => {
            let members = (0..vlen).map(|i| member(at + i * 12));
            (members.collect::<Result<_>>()?, vlen * 12)
        }
        KIND_FUNC_PROTO => {
            let params = (0..vlen).map(|i| param(at + i * 8));
            (params.collect::<Result<_>>()?, vlen * 8)
        }
        KIND_ENUM => (Vec::new(), vlen * 8),
        KIND_DATASEC | KIND_ENUM64 => (Vec::new(), vlen * 12),
        KIND_PTR | 7 | KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_FUNC
        | 16 | KIND_TYPE_TAG => (Vec::new(), 0),
        other => bail!("unknown BTF kind {other}"),
    };
    let ty = Type {
        kind,
        name,
        size_or_type,
        members,
    };
    Ok((ty, at + len))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a tiny BTF blob: struct outer { int a; struct { long b; long c; }; }
    /// plus a FUNC named "f".
    fn sample() -> Vec<u8> {
        // string offsets: int=1 outer=5 a=11 b=13 c=15 f=17
        let strings = b"\0int\0outer\0a\0b\0c\0f\0";
        let types = [
            // 1: int, size 8
            &[1, KIND_INT << 24, 8, 64][..],
            // 2: anonymous struct { b at 0, c at 64 bits }
            &[0, (KIND_STRUCT << 24) | 2, 16, 13, 1, 0, 15, 1, 64],
            // 3: struct outer { a at 0, <anon> at 64 bits }
            &[5, (KIND_STRUCT << 24) | 2, 24, 11, 1, 0, 0, 2, 64],
            // 4: func f
            &[17, KIND_FUNC << 24, 0],
        ];
        blob(&types.concat(), strings)
    }

    #[test]
    fn finds_members_through_anonymous_structs() {
        let btf = KernelBtf::parse(&sample()).unwrap();
        assert_eq!(btf.member_offset("outer", "a"), Some(0));
        assert_eq!(btf.member_offset("outer", "b"), Some(8));
        assert_eq!(btf.member_offset("outer", "c"), Some(16));
        assert_eq!(btf.member_offset("outer", "nope"), None);
        assert!(btf.has_function("f"));
        assert!(!btf.has_function("g"));
    }

    #[test]
    fn rejects_truncated_or_foreign_data() {
        let blob = sample();
        assert!(KernelBtf::parse(&blob[..30]).is_err());
        assert!(KernelBtf::parse(b"\x00\x00garbage garbage garbage").is_err());
    }

    /// A BTF blob of `types` (u32 words) and `strings`, after a 24-byte header.
    fn blob(types: &[u32], strings: &[u8]) -> Vec<u8> {
        let types: Vec<u8> = types.iter().flat_map(|w| w.to_le_bytes()).collect();
        let mut blob = Vec::new();
        blob.extend_from_slice(&MAGIC.to_le_bytes());
        blob.extend_from_slice(&[1, 0]);
        let (tl, sl) = (types.len() as u32, strings.len() as u32);
        for w in [24u32, 0, tl, tl, sl] {
            blob.extend_from_slice(&w.to_le_bytes());
        }
        blob.extend_from_slice(&types);
        blob.extend_from_slice(strings);
        blob
    }

    /// Found by `cargo xtask fuzz btf`: struct "\x01" holds an anonymous
    /// struct at bit 2432696384 whose member "\x01" sits at bit 3953065984;
    /// adding the two overflowed u32 (a panic in debug builds, a wrapped
    /// offset in release).
    #[test]
    fn member_offsets_that_overflow_are_not_found() {
        const CRASH: &[u8] = &[
            0x9f, 0xeb, 0x01, 0x00, 0x18, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x64, 0x00,
            0x00, 0x00, 0x64, 0x00, 0x00, 0x00, 0x13, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x5f,
            0x00, 0x00, 0x00, 0x01, 0x08, 0x00, 0x00, 0x00, 0x40, 0x00, 0x24, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x02, 0x00, 0x00, 0x04, 0x10, 0x00, 0x00, 0x00, 0x0d, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x9f, 0xeb, 0x01, 0x00, 0x00, 0x00, 0x01, 0x00,
            0x01, 0x00, 0x40, 0x00, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x04,
            0x18, 0x00, 0x00, 0x00, 0x0b, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00,
            0xf9, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x40, 0x00, 0x00, 0x91,
            0xf0, 0x06, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0c, 0xf8, 0xff, 0xff, 0xff, 0x00, 0x13,
            0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x01, 0x00, 0x63,
            0x00, 0x66, 0x00,
        ];
        let btf = KernelBtf::parse(CRASH).unwrap();
        assert_eq!(btf.member_offset("\u{1}", "\u{1}"), None);
        // The same shape, spelled out: outer { <anon { x at 0xf000_0000 }> at 0x9000_0000 }.
        let anon = [0, (KIND_STRUCT << 24) | 1, 8, 7, 0, 0xf000_0000]; // 1: { x }
        let outer = [1, (KIND_STRUCT << 24) | 1, 8, 0, 1, 0x9000_0000]; // 2: { <1> }
        let btf = KernelBtf::parse(&blob(&[anon, outer].concat(), b"\0outer\0x\0")).unwrap();
        assert_eq!(btf.member_offset("outer", "x"), None);
    }

    /// Anonymous members referring back to their own struct (not valid BTF,
    /// but a corrupt file can say so) made a failed lookup take
    /// members^depth steps: 64 of them never finished.
    #[test]
    fn self_referencing_anonymous_members_do_not_hang_lookups() {
        let mut types = vec![1, (KIND_STRUCT << 24) | 64, 8];
        for i in 0..64 {
            types.extend_from_slice(&[0, 1, i]); // <anon> of type 1 (itself)
        }
        let btf = KernelBtf::parse(&blob(&types, b"\0outer\0")).unwrap();
        let started = std::time::Instant::now();
        assert_eq!(btf.member_offset("outer", "missing"), None);
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }

    #[test]
    fn reads_this_kernels_task_and_mm_offsets() {
        let Ok(btf) = KernelBtf::from_sys_fs() else {
            println!("SKIPPED: no /sys/kernel/btf/vmlinux on this host");
            return;
        };
        assert!(btf.member_offset("task_struct", "mm").is_some());
        assert!(btf.member_offset("mm_struct", "env_start").is_some());
        assert!(
            btf.member_offset("mm_struct", "env_end").unwrap()
                > btf.member_offset("mm_struct", "env_start").unwrap()
        );
        assert!(btf.has_function("copy_process"));
        // 6.18: mmap_lock_start_locking(mm, write), after about 6.14.
        assert_eq!(
            btf.raw_tracepoint_bool_arg("mmap_lock_start_locking"),
            Some(1)
        );
    }

    /// `typedef void (*btf_trace_tp)(void *, struct s *, [const char *,] bool)`:
    /// the tracepoint before and after it lost an argument.
    fn tracepoint_btf(with_path: bool) -> KernelBtf {
        const KIND_FUNC_PROTO_: u32 = KIND_FUNC_PROTO << 24;
        let strings = b"\0_Bool\0char\0s\0btf_trace_tp\0bool\0";
        // string offsets: _Bool=1 char=7 s=12 btf_trace_tp=14 bool=27
        let mut types = vec![
            1,
            KIND_INT << 24,
            1,
            0, // 1: _Bool
            27,
            KIND_TYPEDEF << 24,
            1, // 2: bool
            7,
            KIND_INT << 24,
            1,
            0, // 3: char
            0,
            KIND_CONST << 24,
            3, // 4: const char
            0,
            KIND_PTR << 24,
            4, // 5: const char *
            12,
            KIND_STRUCT << 24,
            8, // 6: struct s
            0,
            KIND_PTR << 24,
            6, // 7: struct s *
            0,
            KIND_PTR << 24,
            0, // 8: void *
        ];
        let params: &[u32] = if with_path { &[8, 7, 5, 2] } else { &[8, 7, 2] };
        types.extend([0, KIND_FUNC_PROTO_ | params.len() as u32, 0]); // 9
        for p in params {
            types.extend([0, *p]);
        }
        types.extend([0, KIND_PTR << 24, 9]); // 10: pointer to it
        types.extend([14, KIND_TYPEDEF << 24, 10]); // 11: btf_trace_tp
        KernelBtf::parse(&blob(&types, strings)).unwrap()
    }

    #[test]
    fn finds_a_raw_tracepoints_bool_argument_by_its_prototype() {
        assert_eq!(tracepoint_btf(true).raw_tracepoint_bool_arg("tp"), Some(2));
        assert_eq!(tracepoint_btf(false).raw_tracepoint_bool_arg("tp"), Some(1));
        assert_eq!(tracepoint_btf(false).raw_tracepoint_bool_arg("other"), None);
    }
}
