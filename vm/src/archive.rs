//! The boot archive: everything a run needs (configuration, guest images, disk images) packed
//! into the bootloader's ramdisk by the host tool, so nothing reaches the hypervisor through
//! hard-coded addresses or paths.
//!
//! Layout (all integers little-endian):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `BKHDARC1` |
//! | 8 | 4 | entry count N |
//! | 12 | 4 | reserved, 0 |
//! | 16 | 72·N | entries: name (56 bytes, UTF-8, NUL-padded), data offset (u64), data length (u64) |
//! | … | … | data, each entry 8-byte aligned |
//!
//! The parser checks every offset and length against the archive; a malformed archive gives
//! an [`ArchiveError`] naming the entry, never a panic.

use alloc::vec::Vec;
use core::fmt;

pub const MAGIC: &[u8; 8] = b"BKHDARC1";
pub const NAME_LEN: usize = 56;
const HEADER_LEN: usize = 16;
const ENTRY_LEN: usize = NAME_LEN + 16;
/// More entries than this is certainly a corrupt archive.
pub const MAX_ENTRIES: usize = 1024;

/// What is wrong with an archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArchiveError {
    /// Shorter than its header or entry table.
    Truncated,
    /// Does not start with `BKHDARC1`: not a Bulkhead boot archive.
    BadMagic,
    /// The entry count is implausible.
    TooManyEntries(u32),
    /// An entry's name is not NUL-padded UTF-8.
    BadName { index: usize },
    /// An entry's data lies outside the archive.
    EntryOutOfBounds { index: usize },
    /// Two entries share a name.
    DuplicateName { index: usize },
    /// (Builder) a name longer than 55 bytes or empty.
    NameTooLong,
}

impl fmt::Display for ArchiveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArchiveError::Truncated => write!(f, "the boot archive is truncated; rebuild the image with bulkhead-boot"),
            ArchiveError::BadMagic => write!(f, "the ramdisk is not a Bulkhead boot archive (no BKHDARC1 magic); build the image with bulkhead-boot"),
            ArchiveError::TooManyEntries(n) => write!(f, "the boot archive claims {n} entries (at most {MAX_ENTRIES}); it is corrupt"),
            ArchiveError::BadName { index } => write!(f, "boot archive entry {index} has a malformed name"),
            ArchiveError::EntryOutOfBounds { index } => write!(f, "boot archive entry {index} points outside the archive"),
            ArchiveError::DuplicateName { index } => write!(f, "boot archive entry {index} repeats an earlier name"),
            ArchiveError::NameTooLong => write!(f, "archive entry names must be 1 to {} bytes", NAME_LEN - 1),
        }
    }
}

/// A parsed archive borrowing its bytes.
#[derive(Debug, Clone)]
pub struct Archive<'a> {
    entries: Vec<(&'a str, &'a [u8])>,
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

impl<'a> Archive<'a> {
    /// Parses and validates an archive.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, ArchiveError> {
        if bytes.len() < HEADER_LEN {
            return Err(ArchiveError::Truncated);
        }
        if &bytes[..8] != MAGIC {
            return Err(ArchiveError::BadMagic);
        }
        let count = u32_at(bytes, 8).ok_or(ArchiveError::Truncated)?;
        if count as usize > MAX_ENTRIES {
            return Err(ArchiveError::TooManyEntries(count));
        }
        let count = count as usize;
        if bytes.len() < HEADER_LEN + count * ENTRY_LEN {
            return Err(ArchiveError::Truncated);
        }
        let mut entries: Vec<(&str, &[u8])> = Vec::with_capacity(count);
        for index in 0..count {
            let e = HEADER_LEN + index * ENTRY_LEN;
            let raw_name = &bytes[e..e + NAME_LEN];
            let len = raw_name
                .iter()
                .position(|&b| b == 0)
                .ok_or(ArchiveError::BadName { index })?;
            if len == 0 || raw_name[len..].iter().any(|&b| b != 0) {
                return Err(ArchiveError::BadName { index });
            }
            let name = core::str::from_utf8(&raw_name[..len])
                .map_err(|_| ArchiveError::BadName { index })?;
            let offset = u64_at(bytes, e + NAME_LEN).ok_or(ArchiveError::Truncated)?;
            let length = u64_at(bytes, e + NAME_LEN + 8).ok_or(ArchiveError::Truncated)?;
            let data = usize::try_from(offset)
                .ok()
                .zip(usize::try_from(length).ok())
                .and_then(|(o, l)| bytes.get(o..o.checked_add(l)?))
                .ok_or(ArchiveError::EntryOutOfBounds { index })?;
            if entries.iter().any(|(n, _)| *n == name) {
                return Err(ArchiveError::DuplicateName { index });
            }
            entries.push((name, data));
        }
        Ok(Archive { entries })
    }

    /// The data of the entry called `name`.
    pub fn get(&self, name: &str) -> Option<&'a [u8]> {
        self.entries
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, d)| *d)
    }

    /// All entries in order.
    pub fn entries(&self) -> impl Iterator<Item = (&'a str, &'a [u8])> + '_ {
        self.entries.iter().copied()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Builds an archive (used by the host tool).
#[derive(Debug, Default)]
pub struct ArchiveBuilder<'a> {
    entries: Vec<(&'a str, &'a [u8])>,
}

impl<'a> ArchiveBuilder<'a> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an entry; names are 1 to 55 bytes and unique.
    pub fn add(&mut self, name: &'a str, data: &'a [u8]) -> Result<&mut Self, ArchiveError> {
        if name.is_empty() || name.len() >= NAME_LEN || name.contains('\0') {
            return Err(ArchiveError::NameTooLong);
        }
        if self.entries.iter().any(|(n, _)| *n == name) {
            return Err(ArchiveError::DuplicateName {
                index: self.entries.len(),
            });
        }
        self.entries.push((name, data));
        Ok(self)
    }

    /// The archive bytes.
    pub fn finish(&self) -> Vec<u8> {
        let table_end = HEADER_LEN + self.entries.len() * ENTRY_LEN;
        let mut out = Vec::with_capacity(
            table_end + self.entries.iter().map(|(_, d)| d.len() + 8).sum::<usize>(),
        );
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(self.entries.len() as u32).to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        let mut offset = table_end.next_multiple_of(8);
        for (name, data) in &self.entries {
            let mut raw = [0u8; NAME_LEN];
            raw[..name.len()].copy_from_slice(name.as_bytes());
            out.extend_from_slice(&raw);
            out.extend_from_slice(&(offset as u64).to_le_bytes());
            out.extend_from_slice(&(data.len() as u64).to_le_bytes());
            offset = (offset + data.len()).next_multiple_of(8);
        }
        for (_, data) in &self.entries {
            out.resize(out.len().next_multiple_of(8), 0);
            out.extend_from_slice(data);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut b = ArchiveBuilder::new();
        b.add("bulkhead.toml", b"[vm.a]\n").unwrap();
        b.add("guest.elf", &[1, 2, 3]).unwrap();
        b.add("empty", &[]).unwrap();
        b.finish()
    }

    #[test]
    fn round_trip() {
        let bytes = sample();
        let a = Archive::parse(&bytes).unwrap();
        assert_eq!(a.len(), 3);
        assert_eq!(a.get("bulkhead.toml"), Some(&b"[vm.a]\n"[..]));
        assert_eq!(a.get("guest.elf"), Some(&[1u8, 2, 3][..]));
        assert_eq!(a.get("empty"), Some(&[][..]));
        assert_eq!(a.get("missing"), None);
    }

    #[test]
    fn every_malformation_has_its_error() {
        assert_eq!(
            Archive::parse(b"BKHD").unwrap_err(),
            ArchiveError::Truncated
        );
        assert_eq!(
            Archive::parse(b"NOTANARCHIVE0000").unwrap_err(),
            ArchiveError::BadMagic
        );
        let mut b = sample();
        b[8..12].copy_from_slice(&5000u32.to_le_bytes());
        assert_eq!(
            Archive::parse(&b).unwrap_err(),
            ArchiveError::TooManyEntries(5000)
        );
        let mut b = sample();
        b[8..12].copy_from_slice(&100u32.to_le_bytes());
        assert_eq!(Archive::parse(&b).unwrap_err(), ArchiveError::Truncated);
        let mut b = sample();
        b[HEADER_LEN..HEADER_LEN + NAME_LEN].fill(b'x');
        assert_eq!(
            Archive::parse(&b).unwrap_err(),
            ArchiveError::BadName { index: 0 }
        );
        let mut b = sample();
        b[HEADER_LEN] = 0;
        assert_eq!(
            Archive::parse(&b).unwrap_err(),
            ArchiveError::BadName { index: 0 }
        );
        let mut b = sample();
        let len_at = HEADER_LEN + ENTRY_LEN + NAME_LEN + 8;
        b[len_at..len_at + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(
            Archive::parse(&b).unwrap_err(),
            ArchiveError::EntryOutOfBounds { index: 1 }
        );
        let mut b = sample();
        let name2 = HEADER_LEN + ENTRY_LEN;
        let first: [u8; NAME_LEN] = b[HEADER_LEN..HEADER_LEN + NAME_LEN].try_into().unwrap();
        b[name2..name2 + NAME_LEN].copy_from_slice(&first);
        assert_eq!(
            Archive::parse(&b).unwrap_err(),
            ArchiveError::DuplicateName { index: 1 }
        );
    }

    #[test]
    fn builder_rejects_bad_names() {
        let mut b = ArchiveBuilder::new();
        assert_eq!(b.add("", b"").unwrap_err(), ArchiveError::NameTooLong);
        let long = "n".repeat(NAME_LEN);
        assert_eq!(b.add(&long, b"").unwrap_err(), ArchiveError::NameTooLong);
        b.add("a", b"").unwrap();
        assert!(matches!(
            b.add("a", b""),
            Err(ArchiveError::DuplicateName { .. })
        ));
    }

    #[test]
    fn truncated_prefixes_never_panic() {
        let bytes = sample();
        for n in 0..bytes.len() {
            let _ = Archive::parse(&bytes[..n]);
        }
    }
}
