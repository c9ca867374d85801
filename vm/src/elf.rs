//! The parts of an ELF executable the 32-bit boot protocols need (System V gABI, "ELF Header",
//! "Program Header", "Note Section"): the entry point, the PT_LOAD segments at their physical
//! addresses and the notes of the PT_NOTE segments. ELF32 (i386) and ELF64 (x86_64), little
//! endian. Every offset and size is checked against the file; nothing panics.

use alloc::vec::Vec;

use crate::loader::LoadError;

const PT_LOAD: u32 = 1;
const PT_NOTE: u32 = 4;
const ET_EXEC: u16 = 2;
const EM_386: u16 = 3;
const EM_X86_64: u16 = 62;
const ELFCLASS32: u8 = 1;
const ELFCLASS64: u8 = 2;
const ELFDATA2LSB: u8 = 1;
/// gABI: Elf32_Phdr is 32 bytes, Elf64_Phdr 56.
const PHDR32_SIZE: u16 = 32;
const PHDR64_SIZE: u16 = 56;

/// One PT_LOAD segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub offset: u64,
    pub paddr: u64,
    pub filesz: u64,
    pub memsz: u64,
}

/// One note of a PT_NOTE segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Note<'a> {
    /// The owner name without its NUL terminator.
    pub name: &'a [u8],
    pub kind: u32,
    pub desc: &'a [u8],
}

/// A parsed executable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Elf<'a> {
    pub image: &'a [u8],
    pub entry: u64,
    /// PT_LOAD segments with a non-zero memory size, in file order.
    pub segments: Vec<Segment>,
    notes: Vec<(usize, usize)>,
}

fn get<const N: usize>(b: &[u8], at: u64) -> Option<[u8; N]> {
    let at = usize::try_from(at).ok()?;
    b.get(at..at.checked_add(N)?)?.try_into().ok()
}
fn le16(b: &[u8], at: u64) -> Option<u16> {
    get(b, at).map(u16::from_le_bytes)
}
fn le32(b: &[u8], at: u64) -> Option<u32> {
    get(b, at).map(u32::from_le_bytes)
}
fn le64(b: &[u8], at: u64) -> Option<u64> {
    get(b, at).map(u64::from_le_bytes)
}

impl<'a> Elf<'a> {
    /// Parses the ELF header and the program headers.
    pub fn parse(image: &'a [u8]) -> Result<Self, LoadError> {
        if image.get(..4) != Some(b"\x7fELF") {
            return Err(LoadError::NotElf);
        }
        let class = image.get(4).copied();
        let machine = le16(image, 18);
        let is64 = match (class, image.get(5).copied(), machine) {
            (Some(ELFCLASS64), Some(ELFDATA2LSB), Some(EM_X86_64)) => true,
            (Some(ELFCLASS32), Some(ELFDATA2LSB), Some(EM_386)) => false,
            _ => return Err(LoadError::NotElfX86),
        };
        if le16(image, 16) != Some(ET_EXEC) {
            return Err(LoadError::NotExecutable);
        }
        let hdr = LoadError::Truncated("ELF header");
        // gABI ELF header: e_entry, e_phoff, e_phentsize, e_phnum.
        let (entry, phoff, phentsize, phnum) = if is64 {
            (
                le64(image, 24),
                le64(image, 32),
                le16(image, 54),
                le16(image, 56),
            )
        } else {
            (
                le32(image, 24).map(u64::from),
                le32(image, 28).map(u64::from),
                le16(image, 42),
                le16(image, 44),
            )
        };
        let (entry, phoff, phentsize, phnum) = (
            entry.ok_or(hdr.clone())?,
            phoff.ok_or(hdr.clone())?,
            phentsize.ok_or(hdr.clone())?,
            phnum.ok_or(hdr)?,
        );
        if phentsize < if is64 { PHDR64_SIZE } else { PHDR32_SIZE } {
            return Err(LoadError::Truncated("program header size"));
        }
        let mut segments = Vec::new();
        let mut notes = Vec::new();
        let trunc = LoadError::Truncated("program headers");
        for i in 0..u64::from(phnum) {
            let ph = phoff
                .checked_add(i * u64::from(phentsize))
                .ok_or(trunc.clone())?;
            let w32 = |o: u64| le32(image, ph + o).map(u64::from).ok_or(trunc.clone());
            let w64 = |o: u64| le64(image, ph + o).ok_or(trunc.clone());
            let kind = le32(image, ph).ok_or(trunc.clone())?;
            // gABI program header: p_offset, p_paddr, p_filesz, p_memsz.
            let (offset, paddr, filesz, memsz) = if is64 {
                (w64(8)?, w64(24)?, w64(32)?, w64(40)?)
            } else {
                (w32(4)?, w32(12)?, w32(16)?, w32(20)?)
            };
            match kind {
                PT_LOAD if memsz != 0 => {
                    if filesz > memsz {
                        return Err(LoadError::FileSizeExceedsMemSize { paddr });
                    }
                    offset
                        .checked_add(filesz)
                        .filter(|end| *end <= image.len() as u64)
                        .ok_or(LoadError::Truncated("segment data"))?;
                    segments.push(Segment {
                        offset,
                        paddr,
                        filesz,
                        memsz,
                    });
                }
                PT_NOTE => {
                    let end = offset
                        .checked_add(filesz)
                        .filter(|end| *end <= image.len() as u64)
                        .ok_or(LoadError::Truncated("note segment"))?;
                    notes.push((offset as usize, end as usize));
                }
                _ => {}
            }
        }
        if segments.is_empty() {
            return Err(LoadError::NoLoadableSegment);
        }
        Ok(Elf {
            image,
            entry,
            segments,
            notes,
        })
    }

    /// The file bytes of `segment` (checked in [`Elf::parse`]).
    pub fn data(&self, segment: &Segment) -> &'a [u8] {
        let start = segment.offset as usize;
        &self.image[start..start + segment.filesz as usize]
    }

    /// The notes of every PT_NOTE segment; a malformed note ends its segment's list with an
    /// error.
    pub fn notes(&self) -> Result<Vec<Note<'a>>, LoadError> {
        let mut out = Vec::new();
        for &(start, end) in &self.notes {
            let seg = &self.image[start..end];
            let mut at = 0usize;
            // gABI "Note Section": namesz, descsz, type, then name and desc, each padded to
            // 4 bytes.
            while at < seg.len() {
                let bad = LoadError::Truncated("note");
                let namesz = le32(seg, at as u64).ok_or(bad.clone())? as usize;
                let descsz = le32(seg, at as u64 + 4).ok_or(bad.clone())? as usize;
                let kind = le32(seg, at as u64 + 8).ok_or(bad.clone())?;
                let name_at = at + 12;
                let desc_at = name_at
                    .checked_add(namesz.checked_next_multiple_of(4).ok_or(bad.clone())?)
                    .ok_or(bad.clone())?;
                let next = desc_at
                    .checked_add(descsz.checked_next_multiple_of(4).ok_or(bad.clone())?)
                    .ok_or(bad.clone())?;
                let name = seg.get(name_at..name_at + namesz).ok_or(bad.clone())?;
                let desc = seg.get(desc_at..desc_at + descsz).ok_or(bad.clone())?;
                let name = name.strip_suffix(b"\0").unwrap_or(name);
                out.push(Note { name, kind, desc });
                at = next.min(seg.len());
            }
        }
        Ok(out)
    }
}

/// Copies every PT_LOAD segment of `elf` to its physical address and zeroes its BSS. Each
/// segment must lie at or above 1 MiB ([`IMAGE_MIN_GPA`](crate::loader::IMAGE_MIN_GPA)) and
/// inside one of the `usable` RAM ranges; `entry` (a physical address: `e_entry` for Multiboot,
/// the PVH note's for PVH) must be in a segment. Returns the
/// segments' `[start, end)` ranges.
pub fn load_segments(
    elf: &Elf,
    entry: u64,
    ram: u64,
    usable: &[(u64, u64)],
    mem: &mut impl crate::loader::GuestWrite,
) -> Result<Vec<(u64, u64)>, LoadError> {
    let mut ranges = Vec::with_capacity(elf.segments.len());
    for s in &elf.segments {
        if s.paddr < crate::loader::IMAGE_MIN_GPA {
            return Err(LoadError::SegmentBelowImageBase { paddr: s.paddr });
        }
        let outside = LoadError::SegmentOutsideRam {
            paddr: s.paddr,
            memsz: s.memsz,
            ram,
        };
        let end = s.paddr.checked_add(s.memsz).ok_or(outside.clone())?;
        if !usable.iter().any(|&(a, b)| a <= s.paddr && end <= b) {
            return Err(outside);
        }
        ranges.push((s.paddr, end));
    }
    if !ranges.iter().any(|&(a, b)| (a..b).contains(&entry)) {
        return Err(LoadError::EntryOutsideImage { entry });
    }
    for s in &elf.segments {
        mem.write(s.paddr, elf.data(s))?;
        mem.zero(s.paddr + s.filesz, s.memsz - s.filesz)?;
    }
    Ok(ranges)
}
