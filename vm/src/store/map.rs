//! A store disk's sector map: disk sectors to drive LBAs, split at extent boundaries. The
//! virtio-blk backend maps each guest request through it before it reaches a driver.

use super::error::StoreError;
use super::header::{DiskEntry, Extent};
use alloc::vec::Vec;

/// The drive runs of one disk, in disk order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskMap {
    /// (first drive LBA, sectors) of each extent, in disk order.
    runs: Vec<(u64, u64)>,
    size_sectors: u64,
}

impl DiskMap {
    pub fn new(region_start: u64, unit_sectors: u32, d: &DiskEntry) -> DiskMap {
        let u = u64::from(unit_sectors);
        let runs = d
            .extents
            .iter()
            .map(|e: &Extent| {
                (
                    region_start + u64::from(e.start_unit) * u,
                    u64::from(e.units) * u,
                )
            })
            .collect();
        DiskMap {
            runs,
            size_sectors: d.size_sectors,
        }
    }

    /// The disk's size in sectors.
    pub fn sectors(&self) -> u64 {
        self.size_sectors
    }

    /// The drive runs `(lba, sectors)` that hold disk sectors `sector..sector + count`, in order.
    pub fn runs(&self, sector: u64, count: u64) -> Result<Runs<'_>, StoreError> {
        match sector.checked_add(count) {
            Some(end) if end <= self.size_sectors => Ok(Runs {
                map: self,
                at: sector,
                left: count,
                extent: 0,
                base: 0,
            }),
            _ => Err(StoreError::BeyondDisk {
                sector,
                sectors: count,
                disk_sectors: self.size_sectors,
            }),
        }
    }
}

/// Iterator over the drive runs of a disk range.
#[derive(Debug)]
pub struct Runs<'a> {
    map: &'a DiskMap,
    at: u64,
    left: u64,
    extent: usize,
    /// Disk sector where `extent` starts.
    base: u64,
}

impl Iterator for Runs<'_> {
    type Item = (u64, u64);

    fn next(&mut self) -> Option<(u64, u64)> {
        while self.left > 0 {
            let &(lba, len) = self.map.runs.get(self.extent)?;
            if self.at < self.base + len {
                let off = self.at - self.base;
                let n = self.left.min(len - off);
                self.at += n;
                self.left -= n;
                return Some((lba + off, n));
            }
            self.base += len;
            self.extent += 1;
        }
        None
    }
}
