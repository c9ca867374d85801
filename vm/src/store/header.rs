//! The store header: one 16 KiB structure, kept in two copies at the start of the store's
//! region (copy A at sector 0, copy B at sector 32). All integers little-endian.
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `BKHDSTOR` |
//! | 8 | 4 | format version (1) |
//! | 12 | 4 | header size in bytes (16384) |
//! | 16 | 8 | generation (≥ 1; the valid copy with the larger one wins) |
//! | 24 | 8 | store size in sectors (≤ its region) |
//! | 32 | 4 | allocation unit in sectors (a power of two, 8 ..= 2^20) |
//! | 36 | 4 | disk count N (≤ 64) |
//! | 40 | 16 | store id (random at `disk init`) |
//! | 56 | 72 | reserved, 0 |
//! | 128 | 192·64 | disk slots: N used, the rest all zero |
//! | 12416 | 3964 | reserved, 0 |
//! | 16380 | 4 | CRC-32C of bytes 0..16380 |
//!
//! A disk slot: name (32 bytes, NUL-padded), size in sectors (u64), flags (u32, 0), extent
//! count E (u32, 1..=16), 16 extents of (first unit u32, unit count u32), 16 reserved bytes.
//! Units are counted from the start of the region; the units covering the two header copies
//! are never allocated.

use super::error::HeaderError;
use alloc::string::String;
use alloc::vec::Vec;

pub const MAGIC: &[u8; 8] = b"BKHDSTOR";
pub const VERSION: u32 = 1;
pub const SECTOR: usize = 512;
pub const HEADER_BYTES: usize = 16384;
pub const HEADER_SECTORS: u64 = (HEADER_BYTES / SECTOR) as u64;
/// Sectors both header copies occupy at the start of the region.
pub const HEADERS_SECTORS: u64 = 2 * HEADER_SECTORS;
pub const MAX_DISKS: usize = 64;
pub const MAX_EXTENTS: usize = 16;
pub const NAME_LEN: usize = 32;
pub const MIN_UNIT: u32 = 8;
pub const MAX_UNIT: u32 = 1 << 20;
/// The default allocation unit: 1 MiB.
pub const DEFAULT_UNIT: u32 = 2048;

const DISKS_AT: usize = 128;
const SLOT_LEN: usize = 192;
const DISKS_END: usize = DISKS_AT + MAX_DISKS * SLOT_LEN;
const CRC_AT: usize = HEADER_BYTES - 4;
const SLOT_EXTENTS_AT: usize = 48;

/// A run of allocation units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    pub start_unit: u32,
    pub units: u32,
}

impl Extent {
    pub fn end(&self) -> u64 {
        u64::from(self.start_unit) + u64::from(self.units)
    }
}

/// One named disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskEntry {
    pub name: String,
    pub size_sectors: u64,
    pub extents: Vec<Extent>,
}

impl DiskEntry {
    pub fn capacity_units(&self) -> u64 {
        self.extents.iter().map(|e| u64::from(e.units)).sum()
    }

    pub fn size_bytes(&self) -> u64 {
        self.size_sectors * SECTOR as u64
    }
}

/// A decoded, validated header copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub generation: u64,
    pub store_sectors: u64,
    pub unit_sectors: u32,
    pub store_id: [u8; 16],
    pub disks: Vec<DiskEntry>,
}

/// A disk or VM name: 1-32 bytes of a-z, 0-9 and '-', a letter first (the VM name rule of
/// docs/configuration.md).
pub fn valid_name(n: &str) -> bool {
    let b = n.as_bytes();
    (1..=NAME_LEN).contains(&b.len())
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

/// The first unit after both header copies.
pub fn first_data_unit(unit_sectors: u32) -> u64 {
    HEADERS_SECTORS.div_ceil(u64::from(unit_sectors))
}

/// Units in a store of `store_sectors` (a partial unit at the end is unused).
pub fn total_units(store_sectors: u64, unit_sectors: u32) -> u64 {
    (store_sectors / u64::from(unit_sectors)).min(u64::from(u32::MAX))
}

/// Whether a unit size is one the format allows.
pub fn valid_unit(u: u32) -> bool {
    u.is_power_of_two() && (MIN_UNIT..=MAX_UNIT).contains(&u)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

fn zero(b: &[u8], range: core::ops::Range<usize>) -> Result<(), HeaderError> {
    match b[range.clone()].iter().position(|&x| x != 0) {
        Some(i) => Err(HeaderError::ReservedNotZero {
            offset: range.start + i,
        }),
        None => Ok(()),
    }
}

impl Header {
    /// Encodes into exactly [`HEADER_BYTES`] bytes, checksum included.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = alloc::vec![0u8; HEADER_BYTES];
        b[0..8].copy_from_slice(MAGIC);
        b[8..12].copy_from_slice(&VERSION.to_le_bytes());
        b[12..16].copy_from_slice(&(HEADER_BYTES as u32).to_le_bytes());
        b[16..24].copy_from_slice(&self.generation.to_le_bytes());
        b[24..32].copy_from_slice(&self.store_sectors.to_le_bytes());
        b[32..36].copy_from_slice(&self.unit_sectors.to_le_bytes());
        b[36..40].copy_from_slice(&(self.disks.len() as u32).to_le_bytes());
        b[40..56].copy_from_slice(&self.store_id);
        for (i, d) in self.disks.iter().enumerate() {
            let s = &mut b[DISKS_AT + i * SLOT_LEN..DISKS_AT + (i + 1) * SLOT_LEN];
            s[..d.name.len()].copy_from_slice(d.name.as_bytes());
            s[32..40].copy_from_slice(&d.size_sectors.to_le_bytes());
            s[44..48].copy_from_slice(&(d.extents.len() as u32).to_le_bytes());
            for (k, e) in d.extents.iter().enumerate() {
                let at = SLOT_EXTENTS_AT + k * 8;
                s[at..at + 4].copy_from_slice(&e.start_unit.to_le_bytes());
                s[at + 4..at + 8].copy_from_slice(&e.units.to_le_bytes());
            }
        }
        let crc = super::crc::crc32c(&b[..CRC_AT]);
        b[CRC_AT..].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes and validates one copy read from a region of `region_sectors` sectors.
    pub fn decode(b: &[u8], region_sectors: u64) -> Result<Header, HeaderError> {
        use HeaderError as H;
        if b.len() < HEADER_BYTES || &b[0..8] != MAGIC {
            return Err(H::BadMagic);
        }
        let b = &b[..HEADER_BYTES];
        let version = u32_at(b, 8);
        if version != VERSION {
            return Err(H::UnsupportedVersion(version));
        }
        let size = u32_at(b, 12);
        if size as usize != HEADER_BYTES {
            return Err(H::BadHeaderSize(size));
        }
        let stored = u32_at(b, CRC_AT);
        let computed = super::crc::crc32c(&b[..CRC_AT]);
        if stored != computed {
            return Err(H::Checksum { stored, computed });
        }
        let generation = u64_at(b, 16);
        if generation == 0 {
            return Err(H::ZeroGeneration);
        }
        let store_sectors = u64_at(b, 24);
        if store_sectors > region_sectors {
            return Err(H::RegionMismatch {
                header_sectors: store_sectors,
                region_sectors,
            });
        }
        let unit_sectors = u32_at(b, 32);
        if !valid_unit(unit_sectors) {
            return Err(H::BadUnit(unit_sectors));
        }
        let first = first_data_unit(unit_sectors);
        let total = total_units(store_sectors, unit_sectors);
        if total <= first {
            return Err(H::StoreTooSmall {
                sectors: store_sectors,
            });
        }
        let count = u32_at(b, 36);
        if count as usize > MAX_DISKS {
            return Err(H::TooManyDisks(count));
        }
        zero(b, 56..DISKS_AT)?;
        zero(b, DISKS_END..CRC_AT)?;
        let mut store_id = [0u8; 16];
        store_id.copy_from_slice(&b[40..56]);
        let mut disks: Vec<DiskEntry> = Vec::with_capacity(count as usize);
        for slot in 0..MAX_DISKS {
            let at = DISKS_AT + slot * SLOT_LEN;
            if slot >= count as usize {
                zero(b, at..at + SLOT_LEN)?;
                continue;
            }
            let s = &b[at..at + SLOT_LEN];
            let nlen = s[..NAME_LEN]
                .iter()
                .position(|&c| c == 0)
                .unwrap_or(NAME_LEN);
            zero(b, at + nlen..at + NAME_LEN).map_err(|_| H::BadName { slot })?;
            let name = core::str::from_utf8(&s[..nlen])
                .ok()
                .filter(|n| valid_name(n))
                .ok_or(H::BadName { slot })?;
            if let Some(first) = disks.iter().position(|d| d.name == name) {
                return Err(H::DuplicateName { slot, first });
            }
            let size_sectors = u64_at(s, 32);
            if size_sectors == 0 {
                return Err(H::EmptyDisk { slot });
            }
            let flags = u32_at(s, 40);
            if flags != 0 {
                return Err(H::BadFlags { slot, flags });
            }
            let ecount = u32_at(s, 44);
            if ecount == 0 || ecount as usize > MAX_EXTENTS {
                return Err(H::TooManyExtents {
                    slot,
                    count: ecount,
                });
            }
            zero(b, at + SLOT_EXTENTS_AT + ecount as usize * 8..at + SLOT_LEN)?;
            let mut extents = Vec::with_capacity(ecount as usize);
            for extent in 0..ecount as usize {
                let e = Extent {
                    start_unit: u32_at(s, SLOT_EXTENTS_AT + extent * 8),
                    units: u32_at(s, SLOT_EXTENTS_AT + extent * 8 + 4),
                };
                if e.units == 0 {
                    return Err(H::EmptyExtent { slot, extent });
                }
                if u64::from(e.start_unit) < first || e.end() > total {
                    return Err(H::ExtentOutOfStore { slot, extent });
                }
                let overlaps = |o: &Extent| {
                    e.start_unit < o.start_unit.saturating_add(o.units)
                        && o.start_unit < e.start_unit + e.units
                };
                let other = disks
                    .iter()
                    .position(|d| d.extents.iter().any(overlaps))
                    .or_else(|| extents.iter().any(overlaps).then_some(slot));
                if let Some(other_slot) = other {
                    return Err(H::ExtentOverlap {
                        slot,
                        extent,
                        other_slot,
                    });
                }
                extents.push(e);
            }
            let d = DiskEntry {
                name: name.into(),
                size_sectors,
                extents,
            };
            let capacity_sectors = d.capacity_units() * u64::from(unit_sectors);
            if size_sectors > capacity_sectors {
                return Err(H::SizeBeyondExtents {
                    slot,
                    size_sectors,
                    capacity_sectors,
                });
            }
            disks.push(d);
        }
        Ok(Header {
            generation,
            store_sectors,
            unit_sectors,
            store_id,
            disks,
        })
    }
}
