//! Just enough of the GUID Partition Table (UEFI 2.10 §5.3) to find the Bulkhead store
//! partition on a drive, and to write a fresh one-partition GPT for `bulkhead-boot disk init
//! --gpt`. The primary header is at LBA 1 (§5.3.2), its partition array usually at LBA 2; the
//! backup header is on the last LBA with its array just before it. A damaged primary falls
//! back to the backup, as §5.3.2 asks.

use super::crc::crc32_ieee;
use super::error::{GptError, IoError};
use super::header::SECTOR;
use super::BlockIo;
use alloc::vec;
use alloc::vec::Vec;

pub const SIGNATURE: &[u8; 8] = b"EFI PART";
/// GPT revision 1.0 (§5.3.2 Table 5-5).
pub const REVISION: u32 = 0x0001_0000;
pub const GPT_HEADER_SIZE: u32 = 92;
pub const ENTRY_SIZE: u32 = 128;
pub const ENTRIES: u32 = 128;
/// Sectors of a 128-entry array of 128-byte entries.
pub const ARRAY_SECTORS: u64 = (ENTRIES * ENTRY_SIZE) as u64 / SECTOR as u64;
/// Partitions start on a 1 MiB boundary.
pub const ALIGN: u64 = 2048;

/// The Bulkhead store partition type GUID, `b1c4e2d0-5b7e-4f3a-8c9d-42554c4b4844`, in its
/// on-disk byte order (the first three fields little-endian, §Appendix A).
pub const STORE_TYPE: [u8; 16] = [
    0xd0, 0xe2, 0xc4, 0xb1, 0x7e, 0x5b, 0x3a, 0x4f, 0x8c, 0x9d, 0x42, 0x55, 0x4c, 0x4b, 0x48, 0x44,
];
pub const STORE_TYPE_TEXT: &str = "b1c4e2d0-5b7e-4f3a-8c9d-42554c4b4844";

/// Where the store lives on a drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    pub start: u64,
    pub sectors: u64,
    /// The GPT partition index (0-based), or `None` for a whole-drive store.
    pub partition: Option<u32>,
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

/// Finds the store: a GPT partition of [`STORE_TYPE`] if the drive has a GPT (primary or
/// backup), else the whole drive. `Ok(None)` means a GPT without a store partition.
pub fn locate(dev: &mut dyn BlockIo) -> Result<Option<Region>, super::StoreError> {
    let n = dev.sectors();
    let mut s = vec![0u8; SECTOR];
    if n < 2 {
        return Ok(Some(Region {
            start: 0,
            sectors: n,
            partition: None,
        }));
    }
    dev.read(1, &mut s)?;
    let primary_sig = &s[..8] == SIGNATURE;
    let mut last = vec![0u8; SECTOR];
    dev.read(n - 1, &mut last)?;
    let backup_sig = &last[..8] == SIGNATURE;
    if !primary_sig && !backup_sig {
        return Ok(Some(Region {
            start: 0,
            sectors: n,
            partition: None,
        }));
    }
    let primary = if primary_sig {
        Some(parse(dev, &s, 1))
    } else {
        None
    };
    let found = match primary {
        Some(Ok(r)) => r,
        Some(Err(e)) if !backup_sig => return Err(e.into()),
        Some(Err(e)) => parse(dev, &last, n - 1).map_err(|_| e)?,
        None => parse(dev, &last, n - 1)?,
    };
    Ok(found)
}

/// Parses one GPT header (read at `lba`) and its array; returns the store partition.
fn parse(dev: &mut dyn BlockIo, h: &[u8], lba: u64) -> Result<Option<Region>, GptSrc> {
    let size = u32_at(h, 12);
    if !(GPT_HEADER_SIZE..=SECTOR as u32).contains(&size) {
        return Err(GptError::HeaderSize(size).into());
    }
    let stored = u32_at(h, 16);
    let mut copy = h[..size as usize].to_vec();
    copy[16..20].fill(0);
    let computed = crc32_ieee(&copy);
    if stored != computed {
        return Err(GptError::HeaderChecksum { stored, computed }.into());
    }
    let my = u64_at(h, 24);
    if my != lba {
        return Err(GptError::MyLba {
            stored: my,
            read_at: lba,
        }
        .into());
    }
    let first_usable = u64_at(h, 40);
    let last_usable = u64_at(h, 48);
    let array = u64_at(h, 72);
    let entries = u32_at(h, 80);
    let entry_size = u32_at(h, 84);
    let array_crc = u32_at(h, 88);
    if !(1..=1024).contains(&entries)
        || !(128..=4096).contains(&entry_size)
        || !entry_size.is_multiple_of(128)
    {
        return Err(GptError::EntryArray {
            entries,
            entry_size,
        }
        .into());
    }
    let bytes = u64::from(entries) * u64::from(entry_size);
    let sectors = bytes.div_ceil(SECTOR as u64);
    if array < 1 || array.checked_add(sectors).is_none_or(|e| e > dev.sectors()) {
        return Err(GptError::EntryArrayOutOfRange { lba: array }.into());
    }
    let mut buf = vec![0u8; (sectors as usize) * SECTOR];
    dev.read(array, &mut buf).map_err(GptSrc::Io)?;
    let computed = crc32_ieee(&buf[..bytes as usize]);
    if computed != array_crc {
        return Err(GptError::EntriesChecksum {
            stored: array_crc,
            computed,
        }
        .into());
    }
    let mut found: Option<(u32, Region)> = None;
    for i in 0..entries {
        let e = &buf[(i * entry_size) as usize..((i + 1) * entry_size) as usize];
        if e[..16] != STORE_TYPE {
            continue;
        }
        let (first, last) = (u64_at(e, 32), u64_at(e, 40));
        if first > last || first < first_usable || last > last_usable || last >= dev.sectors() {
            return Err(GptError::BadPartition { index: i }.into());
        }
        if let Some((f, _)) = found {
            return Err(GptError::SeveralStores {
                first: f,
                second: i,
            }
            .into());
        }
        found = Some((
            i,
            Region {
                start: first,
                sectors: last - first + 1,
                partition: Some(i),
            },
        ));
    }
    Ok(found.map(|(_, r)| r))
}

/// A GPT parse failure: the table's own error or the drive's.
#[derive(Debug)]
enum GptSrc {
    Gpt(GptError),
    Io(IoError),
}

impl From<GptError> for GptSrc {
    fn from(e: GptError) -> Self {
        GptSrc::Gpt(e)
    }
}

impl From<GptSrc> for super::StoreError {
    fn from(e: GptSrc) -> Self {
        match e {
            GptSrc::Gpt(g) => super::StoreError::Gpt(g),
            GptSrc::Io(i) => super::StoreError::Io(i),
        }
    }
}

/// The sectors of a fresh GPT with one store partition covering the drive (from 1 MiB to the
/// last usable sector): `(lba, bytes)` pairs to write. `ids` are the disk and partition
/// GUIDs. `None` if the drive is too small for the partition to hold anything.
pub fn fresh(total_sectors: u64, ids: [[u8; 16]; 2]) -> Option<Vec<(u64, Vec<u8>)>> {
    let last_usable = total_sectors.checked_sub(2 + ARRAY_SECTORS)?;
    let first_usable = 2 + ARRAY_SECTORS;
    if last_usable < ALIGN + 1 {
        return None;
    }
    let mut array = vec![0u8; (ARRAY_SECTORS as usize) * SECTOR];
    array[..16].copy_from_slice(&STORE_TYPE);
    array[16..32].copy_from_slice(&ids[1]);
    array[32..40].copy_from_slice(&ALIGN.to_le_bytes());
    array[40..48].copy_from_slice(&last_usable.to_le_bytes());
    for (i, c) in "bulkhead-store".encode_utf16().enumerate() {
        array[56 + 2 * i..58 + 2 * i].copy_from_slice(&c.to_le_bytes());
    }
    let array_crc = crc32_ieee(&array);
    let header = |my: u64, alt: u64, array_lba: u64| {
        let mut h = vec![0u8; SECTOR];
        h[..8].copy_from_slice(SIGNATURE);
        h[8..12].copy_from_slice(&REVISION.to_le_bytes());
        h[12..16].copy_from_slice(&GPT_HEADER_SIZE.to_le_bytes());
        h[24..32].copy_from_slice(&my.to_le_bytes());
        h[32..40].copy_from_slice(&alt.to_le_bytes());
        h[40..48].copy_from_slice(&first_usable.to_le_bytes());
        h[48..56].copy_from_slice(&last_usable.to_le_bytes());
        h[56..72].copy_from_slice(&ids[0]);
        h[72..80].copy_from_slice(&array_lba.to_le_bytes());
        h[80..84].copy_from_slice(&ENTRIES.to_le_bytes());
        h[84..88].copy_from_slice(&ENTRY_SIZE.to_le_bytes());
        h[88..92].copy_from_slice(&array_crc.to_le_bytes());
        let crc = crc32_ieee(&h[..GPT_HEADER_SIZE as usize]);
        h[16..20].copy_from_slice(&crc.to_le_bytes());
        h
    };
    // The protective MBR (§5.2.3): one partition of type 0xEE from LBA 1 over the drive.
    let mut mbr = vec![0u8; SECTOR];
    let p = &mut mbr[446..462];
    p[1..4].copy_from_slice(&[0x00, 0x02, 0x00]);
    p[4] = 0xEE;
    p[5..8].copy_from_slice(&[0xFF, 0xFF, 0xFF]);
    p[8..12].copy_from_slice(&1u32.to_le_bytes());
    let mbr_len = u32::try_from(total_sectors - 1).unwrap_or(u32::MAX);
    p[12..16].copy_from_slice(&mbr_len.to_le_bytes());
    mbr[510] = 0x55;
    mbr[511] = 0xAA;
    let last = total_sectors - 1;
    Some(vec![
        (0, mbr),
        (1, header(1, last, 2)),
        (2, array.clone()),
        (last - ARRAY_SECTORS, array),
        (last, header(last, 1, last - ARRAY_SECTORS)),
    ])
}

#[cfg(test)]
mod tests;
