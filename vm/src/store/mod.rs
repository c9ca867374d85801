//! The disk store: named VM disks kept as extents on a real drive, in a GPT partition of
//! Bulkhead's type ([`gpt::STORE_TYPE`]) or on a whole drive.
//!
//! The store's header ([`header`]) is kept in two copies with a generation counter. Opening
//! reads both and takes the valid copy with the larger generation; every change writes the
//! *other* copy (the older or damaged one) with the next generation and flushes, so a write
//! torn by a power loss damages only the copy being written and the previous state survives
//! in the other. A store whose copies are both damaged is reported and never written.
//!
//! New extents are zeroed (and flushed) before the header that hands them to a disk is
//! written, so a disk never shows a deleted disk's data. The same code runs in the host tool
//! (`bulkhead-boot disk`, on an image file or block device) and in the hypervisor, through
//! [`BlockIo`].

pub mod ata;
pub mod block;
pub mod crc;
pub mod disk_io;
pub mod error;
pub mod gpt;
pub mod header;
pub mod map;
pub mod mem;
pub mod nvme;

#[cfg(test)]
mod tests;

pub use error::{Copy, GptError, HeaderError, IoError, StoreError};
pub use gpt::Region;
pub use header::{DiskEntry, Extent, Header, SECTOR};
pub use map::DiskMap;

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use header::{first_data_unit, total_units, valid_name, valid_unit, HEADER_BYTES, HEADER_SECTORS};

/// Synchronous sector access to a drive (512-byte sectors). The host tool implements it on a
/// file, the hypervisor on its block drivers (polled to completion at boot), tests in memory.
pub trait BlockIo {
    /// The drive's size in sectors.
    fn sectors(&self) -> u64;
    /// Reads `buf.len() / 512` sectors from `lba`.
    fn read(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), IoError>;
    /// Writes `buf.len() / 512` sectors at `lba`.
    fn write(&mut self, lba: u64, buf: &[u8]) -> Result<(), IoError>;
    /// Makes every completed write durable (the drive's cache flush).
    fn flush(&mut self) -> Result<(), IoError>;
}

/// The state of one header copy when the store was opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopyState {
    Valid { generation: u64 },
    Damaged(HeaderError),
}

/// An open store: its region, the current header, and which copy holds it.
#[derive(Debug, Clone)]
pub struct Store {
    region: Region,
    header: Header,
    current: Copy,
    copies: [CopyState; 2],
}

/// What [`Store::scratch_check`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScratchReport {
    pub lba: u64,
    pub bytes: usize,
    /// Bytes read back different from those written (0: the drive works).
    pub mismatches: usize,
    /// CRC-32C of what was read back.
    pub checksum: u32,
}

/// Bytes zeroed per write when new extents are cleared.
const ZERO_CHUNK: usize = 64 * 1024;

fn copy_lba(region: &Region, c: Copy) -> u64 {
    region.start
        + match c {
            Copy::A => 0,
            Copy::B => HEADER_SECTORS,
        }
}

impl Store {
    /// Finds the store on a drive ([`gpt::locate`]).
    pub fn locate(dev: &mut dyn BlockIo) -> Result<Region, StoreError> {
        gpt::locate(dev)?.ok_or(StoreError::NoStorePartition)
    }

    /// Writes a new, empty store over `region` (both copies), with `unit_sectors` per
    /// allocation unit.
    pub fn format(
        dev: &mut dyn BlockIo,
        region: Region,
        unit_sectors: u32,
        store_id: [u8; 16],
    ) -> Result<Store, StoreError> {
        if !valid_unit(unit_sectors) {
            return Err(StoreError::BadUnit(unit_sectors));
        }
        let needed = (first_data_unit(unit_sectors) + 1) * u64::from(unit_sectors);
        if region.sectors < needed {
            return Err(StoreError::RegionTooSmall {
                sectors: region.sectors,
                needed,
            });
        }
        let store_sectors = total_units(region.sectors, unit_sectors) * u64::from(unit_sectors);
        let header = Header {
            generation: 1,
            store_sectors,
            unit_sectors,
            store_id,
            disks: Vec::new(),
        };
        let mut s = Store {
            region,
            header,
            current: Copy::B,
            copies: [
                CopyState::Damaged(HeaderError::BadMagic),
                CopyState::Damaged(HeaderError::BadMagic),
            ],
        };
        // Copy B first at generation 1, then A at 2: both valid, A current.
        dev.write(copy_lba(&region, Copy::B), &s.header.encode())?;
        dev.flush()?;
        s.copies[1] = CopyState::Valid { generation: 1 };
        s.commit(dev, s.header.clone())?;
        Ok(s)
    }

    /// Opens the store in `region`: both copies read, the newer valid one wins.
    pub fn open(dev: &mut dyn BlockIo, region: Region) -> Result<Store, StoreError> {
        let mut buf = vec![0u8; HEADER_BYTES];
        let mut read = |c: Copy| -> Result<Result<Header, HeaderError>, StoreError> {
            if copy_lba(&region, c) + HEADER_SECTORS > region.start + region.sectors {
                return Ok(Err(HeaderError::StoreTooSmall {
                    sectors: region.sectors,
                }));
            }
            dev.read(copy_lba(&region, c), &mut buf)?;
            Ok(Header::decode(&buf, region.sectors))
        };
        let a = read(Copy::A)?;
        let b = read(Copy::B)?;
        let state = |r: &Result<Header, HeaderError>| match r {
            Ok(h) => CopyState::Valid {
                generation: h.generation,
            },
            Err(e) => CopyState::Damaged(e.clone()),
        };
        let copies = [state(&a), state(&b)];
        let (header, current) = match (a, b) {
            (Ok(a), Ok(b)) if b.generation > a.generation => (b, Copy::B),
            (Ok(a), _) => (a, Copy::A),
            (Err(_), Ok(b)) => (b, Copy::B),
            (Err(HeaderError::BadMagic), Err(HeaderError::BadMagic)) => {
                return Err(StoreError::NotAStore)
            }
            (Err(a), Err(b)) => return Err(StoreError::BothCopiesBad { a, b }),
        };
        Ok(Store {
            region,
            header,
            current,
            copies,
        })
    }

    /// Locates and opens the store on a drive.
    pub fn open_drive(dev: &mut dyn BlockIo) -> Result<Store, StoreError> {
        let region = Self::locate(dev)?;
        Self::open(dev, region)
    }

    pub fn region(&self) -> Region {
        self.region
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    pub fn disks(&self) -> &[DiskEntry] {
        &self.header.disks
    }

    pub fn disk(&self, name: &str) -> Option<&DiskEntry> {
        self.header.disks.iter().find(|d| d.name == name)
    }

    /// Which copy holds the current header.
    pub fn current_copy(&self) -> Copy {
        self.current
    }

    /// What each copy looked like when the store was opened (A, B).
    pub fn copies(&self) -> &[CopyState; 2] {
        &self.copies
    }

    fn unit_bytes(&self) -> u64 {
        u64::from(self.header.unit_sectors) * SECTOR as u64
    }

    /// Free allocation units, as (first unit, count) runs in order.
    pub fn free_runs(&self) -> Vec<Extent> {
        let mut used: Vec<Extent> = self
            .header
            .disks
            .iter()
            .flat_map(|d| d.extents.iter().copied())
            .collect();
        used.sort_by_key(|e| e.start_unit);
        let mut free = Vec::new();
        let mut at = first_data_unit(self.header.unit_sectors);
        let end = total_units(self.header.store_sectors, self.header.unit_sectors);
        for e in used.iter().chain(core::iter::once(&Extent {
            start_unit: end as u32,
            units: 0,
        })) {
            if u64::from(e.start_unit) > at {
                free.push(Extent {
                    start_unit: at as u32,
                    units: (u64::from(e.start_unit) - at) as u32,
                });
            }
            at = at.max(e.end());
        }
        free
    }

    pub fn free_bytes(&self) -> u64 {
        self.free_runs()
            .iter()
            .map(|e| u64::from(e.units))
            .sum::<u64>()
            * self.unit_bytes()
    }

    /// The store's data capacity in bytes (every unit after the headers).
    pub fn capacity_bytes(&self) -> u64 {
        let units = total_units(self.header.store_sectors, self.header.unit_sectors)
            - first_data_unit(self.header.unit_sectors);
        units * self.unit_bytes()
    }

    /// The sector map of a disk, for I/O.
    pub fn map(&self, name: &str) -> Result<DiskMap, StoreError> {
        let d = self
            .disk(name)
            .ok_or_else(|| StoreError::NoSuchDisk(name.into()))?;
        Ok(DiskMap::new(self.region.start, self.header.unit_sectors, d))
    }

    fn check_size(size: u64) -> Result<u64, StoreError> {
        if size == 0 || !size.is_multiple_of(SECTOR as u64) {
            return Err(StoreError::BadSize(size));
        }
        Ok(size / SECTOR as u64)
    }

    /// Picks units for `units` more of disk `d` (extending its last extent in place when the
    /// units after it are free), without writing anything.
    fn allocate(
        &self,
        name: &str,
        mut extents: Vec<Extent>,
        mut units: u64,
    ) -> Result<Vec<Extent>, StoreError> {
        let free = self.free_runs();
        let free_units: u64 = free.iter().map(|e| u64::from(e.units)).sum();
        if units > free_units {
            return Err(StoreError::NoSpace {
                needed_bytes: units * self.unit_bytes(),
                free_bytes: free_units * self.unit_bytes(),
            });
        }
        let mut runs = free;
        if let Some(last) = extents.last_mut() {
            if let Some(r) = runs
                .iter_mut()
                .find(|r| u64::from(r.start_unit) == last.end())
            {
                let take = units
                    .min(u64::from(r.units))
                    .min(u64::from(u32::MAX - last.units)) as u32;
                last.units += take;
                r.start_unit += take;
                r.units -= take;
                units -= u64::from(take);
            }
        }
        // The first run that holds the rest whole, else the largest runs first.
        if let Some(r) = runs.iter().find(|r| u64::from(r.units) >= units) {
            if units > 0 {
                extents.push(Extent {
                    start_unit: r.start_unit,
                    units: units as u32,
                });
            }
            units = 0;
        }
        runs.sort_by_key(|r| core::cmp::Reverse(r.units));
        for r in runs.iter().filter(|r| r.units > 0) {
            if units == 0 {
                break;
            }
            let take = units.min(u64::from(r.units)) as u32;
            extents.push(Extent {
                start_unit: r.start_unit,
                units: take,
            });
            units -= u64::from(take);
        }
        if extents.len() > header::MAX_EXTENTS {
            return Err(StoreError::TooFragmented { name: name.into() });
        }
        Ok(extents)
    }

    /// Zeroes units `from..` of `new` that `old` did not have (in unit order of `new`).
    fn zero_new(
        &self,
        dev: &mut dyn BlockIo,
        old: &[Extent],
        new: &[Extent],
    ) -> Result<(), StoreError> {
        let zeros = vec![0u8; ZERO_CHUNK];
        let unit = u64::from(self.header.unit_sectors);
        for (i, e) in new.iter().enumerate() {
            let had = old
                .get(i)
                .filter(|o| o.start_unit == e.start_unit)
                .map_or(0, |o| o.units);
            let mut lba = self.region.start + (u64::from(e.start_unit) + u64::from(had)) * unit;
            let end = self.region.start + e.end() * unit;
            while lba < end {
                let n = (end - lba).min((ZERO_CHUNK / SECTOR) as u64);
                dev.write(lba, &zeros[..n as usize * SECTOR])?;
                lba += n;
            }
        }
        Ok(())
    }

    /// Writes `next` to the copy that is not current, at the next generation, and flushes.
    fn commit(&mut self, dev: &mut dyn BlockIo, mut next: Header) -> Result<(), StoreError> {
        let target = match self.current {
            Copy::A => Copy::B,
            Copy::B => Copy::A,
        };
        next.generation = self.header.generation + 1;
        dev.write(copy_lba(&self.region, target), &next.encode())?;
        dev.flush()?;
        let g = next.generation;
        self.header = next;
        self.current = target;
        self.copies[target as usize] = CopyState::Valid { generation: g };
        Ok(())
    }

    /// Creates disk `name` of `size` bytes, zeroed.
    pub fn create(
        &mut self,
        dev: &mut dyn BlockIo,
        name: &str,
        size: u64,
    ) -> Result<(), StoreError> {
        if !valid_name(name) {
            return Err(StoreError::BadName(name.into()));
        }
        let sectors = Self::check_size(size)?;
        if self.disk(name).is_some() {
            return Err(StoreError::DiskExists(name.into()));
        }
        if self.header.disks.len() >= header::MAX_DISKS {
            return Err(StoreError::TooManyDisks);
        }
        let units = sectors.div_ceil(u64::from(self.header.unit_sectors));
        let extents = self.allocate(name, Vec::new(), units)?;
        self.zero_new(dev, &[], &extents)?;
        dev.flush()?;
        let mut next = self.header.clone();
        next.disks.push(DiskEntry {
            name: String::from(name),
            size_sectors: sectors,
            extents,
        });
        self.commit(dev, next)
    }

    /// Grows disk `name` to `size` bytes; the new part reads as zeros.
    pub fn grow(&mut self, dev: &mut dyn BlockIo, name: &str, size: u64) -> Result<(), StoreError> {
        let sectors = Self::check_size(size)?;
        let i = self
            .header
            .disks
            .iter()
            .position(|d| d.name == name)
            .ok_or_else(|| StoreError::NoSuchDisk(name.into()))?;
        let d = self.header.disks[i].clone();
        if sectors < d.size_sectors {
            return Err(StoreError::WouldShrink {
                name: name.into(),
                size: d.size_bytes(),
                requested: size,
            });
        }
        let unit = u64::from(self.header.unit_sectors);
        let have = d.capacity_units();
        let units = sectors.div_ceil(unit).saturating_sub(have);
        let extents = if units > 0 {
            self.allocate(name, d.extents.clone(), units)?
        } else {
            d.extents.clone()
        };
        self.zero_new(dev, &d.extents, &extents)?;
        // Sectors past the old size inside the old last unit: zero them too (the tail of a
        // unit the disk owned but did not expose may hold anything an import left there).
        let map = DiskMap::new(
            self.region.start,
            self.header.unit_sectors,
            &DiskEntry {
                name: d.name.clone(),
                size_sectors: have * unit,
                extents: d.extents.clone(),
            },
        );
        let tail_end = (have * unit).min(sectors);
        if tail_end > d.size_sectors {
            let zeros = vec![0u8; ZERO_CHUNK];
            for (lba, n) in map.runs(d.size_sectors, tail_end - d.size_sectors)? {
                let mut done = 0;
                while done < n {
                    let k = (n - done).min((ZERO_CHUNK / SECTOR) as u64);
                    dev.write(lba + done, &zeros[..k as usize * SECTOR])?;
                    done += k;
                }
            }
        }
        dev.flush()?;
        let mut next = self.header.clone();
        next.disks[i] = DiskEntry {
            name: d.name,
            size_sectors: sectors,
            extents,
        };
        self.commit(dev, next)
    }

    /// The boot-time store check: writes a pattern over the first 64 KiB (or the whole, if
    /// smaller) of the last free allocation unit, flushes, reads it back and compares, then zeroes it again (free units
    /// are zeroed before any disk gets them anyway). Touches nothing a disk owns. `Ok(None)`:
    /// no free unit to test on.
    pub fn scratch_check(
        &self,
        dev: &mut dyn BlockIo,
    ) -> Result<Option<ScratchReport>, StoreError> {
        // One unit, at most 64 KiB: a transfer of one full store-disk request (one ATA DMA
        // command of 128 sectors, one NVMe command with a PRP list).
        let unit_bytes = self.header.unit_sectors as usize * SECTOR;
        let bytes = unit_bytes.min(64 * 1024);
        let Some(last) = self.free_runs().last().copied() else {
            return Ok(None);
        };
        let lba = self.region.start + (last.end() - 1) * u64::from(self.header.unit_sectors);
        let pattern: Vec<u8> = (0..bytes)
            .map(|i| (i as u32).wrapping_mul(0x9E37_79B1).to_le_bytes()[3] ^ (lba as u8))
            .collect();
        dev.write(lba, &pattern)?;
        dev.flush()?;
        let mut back = vec![0u8; bytes];
        dev.read(lba, &mut back)?;
        let mismatches = pattern.iter().zip(&back).filter(|(a, b)| a != b).count();
        dev.write(lba, &vec![0u8; bytes])?;
        dev.flush()?;
        Ok(Some(ScratchReport {
            lba,
            bytes,
            mismatches,
            checksum: crc::crc32c(&back),
        }))
    }

    /// Deletes disk `name`; its units become free (and are zeroed when reused).
    pub fn delete(&mut self, dev: &mut dyn BlockIo, name: &str) -> Result<(), StoreError> {
        let i = self
            .header
            .disks
            .iter()
            .position(|d| d.name == name)
            .ok_or_else(|| StoreError::NoSuchDisk(name.into()))?;
        let mut next = self.header.clone();
        next.disks.remove(i);
        self.commit(dev, next)
    }
}
