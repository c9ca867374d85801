//! The snapshot container: a header, a section table and the sections, every part
//! checksummed (CRC-32C), little-endian throughout.
//!
//! ```text
//! offset  size  field
//! 0       8     magic "BHSNAPv\0"
//! 8       4     format version (FORMAT_VERSION)
//! 12      4     section count (1..=MAX_SECTIONS)
//! 16      8     total length of the snapshot in bytes
//! 24      4     CRC-32C of the section table
//! 28      4     CRC-32C of bytes 0..28 of the header
//! 32      32×n  section table: kind u32, instance u32, offset u64, length u64, CRC-32C u32,
//!               reserved u32 (0)
//! ...           the sections in table order, each at the first 8-byte aligned offset after
//!               the previous one (the table for the first), zero padding in between and
//!               after the last up to the total length
//! ```
//!
//! The reader refuses, with a [`SnapshotError`] naming what is wrong, anything that is not
//! exactly such a file: a foreign magic, another version, a truncated file, a section outside
//! the file or overlapping another, a checksum mismatch, an unknown section kind, a missing
//! or repeated section. Nothing in a snapshot is trusted before its checksum matched.

use alloc::vec::Vec;
use core::fmt;

use crate::store::crc::crc32c;

/// The file's first eight bytes.
pub const MAGIC: [u8; 8] = *b"BHSNAPv\0";
/// The layout this code writes and reads; another version is refused (no silent upgrade).
pub const FORMAT_VERSION: u32 = 1;
pub const HEADER_SIZE: usize = 32;
pub const ENTRY_SIZE: usize = 32;
/// Sections per snapshot at most (a VM of 16 vCPUs has under 64).
pub const MAX_SECTIONS: usize = 256;
/// Sections start on this alignment.
pub const SECTION_ALIGN: usize = 8;

/// What a section holds. The numbers are part of the format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u32)]
pub enum SectionKind {
    /// The VM: name, RAM size, vCPU count, guest kind ([`super::VmInfo`]); exactly one.
    VmInfo = 1,
    /// What the restoring CPU must offer ([`super::Requirements`]); exactly one.
    Requirements = 2,
    /// One vCPU's architectural state ([`super::VcpuState`]); instance = vCPU index.
    Vcpu = 3,
    /// One vCPU's local APIC (register page, base, timer); instance = vCPU index.
    LocalApic = 4,
    /// The IOAPIC, PIC, PIT, RTC, UART and ACPI PM state; exactly one.
    Platform = 5,
    /// One virtio-mmio device's transport and queue state; instance = window index.
    Virtio = 6,
    /// Guest RAM as runs of pages ([`super::memory`]); exactly one.
    Memory = 7,
}

impl SectionKind {
    pub fn from_u32(v: u32) -> Option<Self> {
        Some(match v {
            1 => Self::VmInfo,
            2 => Self::Requirements,
            3 => Self::Vcpu,
            4 => Self::LocalApic,
            5 => Self::Platform,
            6 => Self::Virtio,
            7 => Self::Memory,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::VmInfo => "vm-info",
            Self::Requirements => "requirements",
            Self::Vcpu => "vcpu",
            Self::LocalApic => "local-apic",
            Self::Platform => "platform",
            Self::Virtio => "virtio",
            Self::Memory => "memory",
        }
    }

    /// Whether a snapshot has exactly one section of this kind (instance 0).
    pub fn is_singleton(self) -> bool {
        matches!(
            self,
            Self::VmInfo | Self::Requirements | Self::Platform | Self::Memory
        )
    }
}

/// Why a snapshot was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotError {
    /// Shorter than its header or section table, or than the length its header states.
    Truncated {
        needed: u64,
        have: u64,
    },
    /// Longer than its header states.
    TrailingBytes {
        stated: u64,
        have: u64,
    },
    BadMagic,
    UnsupportedVersion {
        found: u32,
    },
    HeaderChecksum {
        stored: u32,
        computed: u32,
    },
    TableChecksum {
        stored: u32,
        computed: u32,
    },
    BadSectionCount {
        count: u32,
    },
    UnknownSection {
        index: usize,
        kind: u32,
    },
    /// A section outside the file, misaligned, overlapping the previous one or the table.
    BadSectionBounds {
        index: usize,
        offset: u64,
        len: u64,
    },
    SectionChecksum {
        kind: SectionKind,
        instance: u32,
    },
    DuplicateSection {
        kind: SectionKind,
        instance: u32,
    },
    MissingSection {
        kind: SectionKind,
        instance: u32,
    },
    /// A reserved field that is not zero.
    Reserved {
        index: usize,
    },
    /// Bytes after the last section other than its zero padding.
    BadPadding {
        end: u64,
    },
    /// A section whose contents do not parse (`what` says which field).
    BadSection {
        kind: SectionKind,
        instance: u32,
        what: &'static str,
    },
}

impl fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use SnapshotError as E;
        match self {
            E::Truncated { needed, have } => write!(f, "the snapshot is truncated: {needed} bytes needed, {have} present; take the snapshot again"),
            E::TrailingBytes { stated, have } => write!(f, "the snapshot is {have} bytes but its header says {stated}: it was appended to or corrupted"),
            E::BadMagic => write!(f, "not a Bulkhead snapshot (bad magic)"),
            E::UnsupportedVersion { found } => write!(f, "snapshot format version {found}; this Bulkhead reads version {FORMAT_VERSION} only: restore it with the Bulkhead that took it"),
            E::HeaderChecksum { stored, computed } => write!(f, "the snapshot header is corrupted (CRC-32C {computed:#010x}, stored {stored:#010x})"),
            E::TableChecksum { stored, computed } => write!(f, "the snapshot's section table is corrupted (CRC-32C {computed:#010x}, stored {stored:#010x})"),
            E::BadSectionCount { count } => write!(f, "the snapshot claims {count} sections (1 to {MAX_SECTIONS} allowed)"),
            E::UnknownSection { index, kind } => write!(f, "section {index} has unknown kind {kind}: written by a newer Bulkhead?"),
            E::BadSectionBounds { index, offset, len } => write!(f, "section {index} ({len} bytes at {offset}) lies outside the file, is misaligned or overlaps another"),
            E::SectionChecksum { kind, instance } => write!(f, "the snapshot's {} section {instance} is corrupted (checksum mismatch)", kind.name()),
            E::DuplicateSection { kind, instance } => write!(f, "the snapshot has two {} sections {instance}", kind.name()),
            E::MissingSection { kind, instance } => write!(f, "the snapshot lacks its {} section {instance}", kind.name()),
            E::Reserved { index } => write!(f, "section {index}'s reserved field is not zero"),
            E::BadPadding { end } => write!(f, "the snapshot has data after its last section (which ends at byte {end})"),
            E::BadSection { kind, instance, what } => write!(f, "the snapshot's {} section {instance} is malformed: {what}", kind.name()),
        }
    }
}

/// One section as found in a parsed snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Section<'a> {
    pub kind: SectionKind,
    pub instance: u32,
    pub data: &'a [u8],
}

/// Builds a snapshot from sections.
#[derive(Debug, Default)]
pub struct Writer {
    sections: Vec<(SectionKind, u32, Vec<u8>)>,
}

fn align_up(v: usize) -> usize {
    v.div_ceil(SECTION_ALIGN) * SECTION_ALIGN
}

impl Writer {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn section(&mut self, kind: SectionKind, instance: u32, data: Vec<u8>) -> &mut Self {
        self.sections.push((kind, instance, data));
        self
    }

    /// The snapshot's bytes; sections in the order given.
    pub fn finish(&self) -> Vec<u8> {
        let n = self.sections.len();
        let table_end = HEADER_SIZE + n * ENTRY_SIZE;
        let mut offsets = Vec::with_capacity(n);
        let mut at = align_up(table_end);
        for (_, _, d) in &self.sections {
            offsets.push(at);
            at = align_up(at + d.len());
        }
        let total = at;
        let mut out = alloc::vec![0u8; total];
        for (i, ((kind, instance, data), &off)) in self.sections.iter().zip(&offsets).enumerate() {
            let e = &mut out[HEADER_SIZE + i * ENTRY_SIZE..HEADER_SIZE + (i + 1) * ENTRY_SIZE];
            e[0..4].copy_from_slice(&(*kind as u32).to_le_bytes());
            e[4..8].copy_from_slice(&instance.to_le_bytes());
            e[8..16].copy_from_slice(&(off as u64).to_le_bytes());
            e[16..24].copy_from_slice(&(data.len() as u64).to_le_bytes());
            e[24..28].copy_from_slice(&crc32c(data).to_le_bytes());
            out[off..off + data.len()].copy_from_slice(data);
        }
        out[0..8].copy_from_slice(&MAGIC);
        out[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        out[12..16].copy_from_slice(&(n as u32).to_le_bytes());
        out[16..24].copy_from_slice(&(total as u64).to_le_bytes());
        let table_crc = crc32c(&out[HEADER_SIZE..table_end]);
        out[24..28].copy_from_slice(&table_crc.to_le_bytes());
        let header_crc = crc32c(&out[0..28]);
        out[28..32].copy_from_slice(&header_crc.to_le_bytes());
        out
    }
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn le64(b: &[u8], at: usize) -> u64 {
    u64::from(le32(b, at)) | (u64::from(le32(b, at + 4)) << 32)
}

/// A snapshot whose header, table and every section's checksum were verified.
#[derive(Debug, Clone)]
pub struct Parsed<'a> {
    pub sections: Vec<Section<'a>>,
}

impl<'a> Parsed<'a> {
    /// Verifies `bytes` (see the module's layout); sections keep the table's order.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, SnapshotError> {
        use SnapshotError as E;
        let have = bytes.len() as u64;
        if bytes.len() < HEADER_SIZE {
            return Err(E::Truncated {
                needed: HEADER_SIZE as u64,
                have,
            });
        }
        if bytes[0..8] != MAGIC {
            return Err(E::BadMagic);
        }
        let stored = le32(bytes, 28);
        let computed = crc32c(&bytes[0..28]);
        if stored != computed {
            return Err(E::HeaderChecksum { stored, computed });
        }
        let version = le32(bytes, 8);
        if version != FORMAT_VERSION {
            return Err(E::UnsupportedVersion { found: version });
        }
        let count = le32(bytes, 12);
        if count == 0 || count as usize > MAX_SECTIONS {
            return Err(E::BadSectionCount { count });
        }
        let total = le64(bytes, 16);
        if total > have {
            return Err(E::Truncated {
                needed: total,
                have,
            });
        }
        if total < have {
            return Err(E::TrailingBytes {
                stated: total,
                have,
            });
        }
        let table_end = HEADER_SIZE + count as usize * ENTRY_SIZE;
        if bytes.len() < table_end {
            return Err(E::Truncated {
                needed: table_end as u64,
                have,
            });
        }
        let stored = le32(bytes, 24);
        let computed = crc32c(&bytes[HEADER_SIZE..table_end]);
        if stored != computed {
            return Err(E::TableChecksum { stored, computed });
        }
        let mut sections: Vec<Section<'a>> = Vec::with_capacity(count as usize);
        let mut prev_end = table_end as u64;
        for index in 0..count as usize {
            let e =
                &bytes[HEADER_SIZE + index * ENTRY_SIZE..HEADER_SIZE + (index + 1) * ENTRY_SIZE];
            let kind_raw = le32(e, 0);
            let kind = SectionKind::from_u32(kind_raw).ok_or(E::UnknownSection {
                index,
                kind: kind_raw,
            })?;
            let instance = le32(e, 4);
            let (offset, len) = (le64(e, 8), le64(e, 16));
            if le32(e, 28) != 0 {
                return Err(E::Reserved { index });
            }
            // Canonical layout: each section starts at the first aligned offset after the
            // previous one, and the padding in between is zero, so no byte of the file
            // escapes a check.
            let end = offset.checked_add(len);
            let fits = end.is_some_and(|end| end <= have)
                && offset == align_up(prev_end as usize) as u64
                && bytes[prev_end as usize..offset as usize]
                    .iter()
                    .all(|&b| b == 0);
            if !fits {
                return Err(E::BadSectionBounds { index, offset, len });
            }
            let data = &bytes[offset as usize..(offset + len) as usize];
            if crc32c(data) != le32(e, 24) {
                return Err(E::SectionChecksum { kind, instance });
            }
            if kind.is_singleton() && instance != 0 {
                return Err(E::BadSection {
                    kind,
                    instance,
                    what: "a single section must be instance 0",
                });
            }
            if sections
                .iter()
                .any(|s| s.kind == kind && s.instance == instance)
            {
                return Err(E::DuplicateSection { kind, instance });
            }
            prev_end = offset + len;
            sections.push(Section {
                kind,
                instance,
                data,
            });
        }
        let end = align_up(prev_end as usize) as u64;
        if end != total || bytes[prev_end as usize..].iter().any(|&b| b != 0) {
            return Err(E::BadPadding { end: prev_end });
        }
        Ok(Parsed { sections })
    }

    /// The section `kind`/`instance`, or [`SnapshotError::MissingSection`].
    pub fn get(&self, kind: SectionKind, instance: u32) -> Result<&'a [u8], SnapshotError> {
        self.sections
            .iter()
            .find(|s| s.kind == kind && s.instance == instance)
            .map(|s| s.data)
            .ok_or(SnapshotError::MissingSection { kind, instance })
    }

    /// How many sections of `kind` there are.
    pub fn count(&self, kind: SectionKind) -> usize {
        self.sections.iter().filter(|s| s.kind == kind).count()
    }
}
