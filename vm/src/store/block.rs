//! The seam between the store (and virtio-blk) and the hypervisor's block drivers: a
//! [`BlockDevice`] takes requests for its units (an ATA channel's two drives, an NVMe
//! controller's namespaces) and completes them asynchronously; the hypervisor polls it from
//! the scheduler, each poll doing bounded work, so no exit handler ever waits for a drive.
//! [`SyncUnit`] runs requests to completion for boot-time work (opening a store).

use super::error::IoError;
use super::header::SECTOR;
use super::BlockIo;
use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;

/// What a request does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Read,
    Write,
    /// Make completed writes durable (ATA FLUSH CACHE EXT, NVMe Flush).
    Flush,
    /// Let the drive drop this many sectors from `lba` (NVMe Dataset Management with
    /// Deallocate, ATA DATA SET MANAGEMENT TRIM); afterwards their contents are unspecified.
    /// No buffer.
    Discard(u32),
    /// Make this many sectors from `lba` read as zeroes (NVMe Write Zeroes). No buffer.
    WriteZeroes(u32),
}

impl Op {
    /// Sectors a buffer-less range operation covers (`None` for read, write, flush).
    pub fn range_sectors(self) -> Option<u32> {
        match self {
            Op::Discard(n) | Op::WriteZeroes(n) => Some(n),
            _ => None,
        }
    }
}

/// One request: `buf.len() / 512` sectors from `lba` (a flush has an empty buffer).
#[derive(Debug)]
pub struct Request {
    /// The submitter's own tag, returned in the completion.
    pub tag: u64,
    pub op: Op,
    pub lba: u64,
    pub buf: Vec<u8>,
}

/// A finished request: its buffer (filled for a read) and the outcome.
#[derive(Debug)]
pub struct Completion {
    pub tag: u64,
    pub op: Op,
    pub lba: u64,
    pub buf: Vec<u8>,
    pub result: Result<(), IoError>,
}

/// What a driver learned about a unit when it found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriveInfo {
    /// Where it is, e.g. `ata0-slave`.
    pub name: String,
    /// The drive's model string.
    pub model: String,
    pub sectors: u64,
    /// The drive has a volatile write cache that a flush must empty.
    pub write_cache: bool,
    /// The drive implements the flush command.
    pub flush: bool,
    /// Data moves by DMA (a bus-master IDE channel, NVMe), not by programmed I/O.
    pub dma: bool,
    /// The drive takes [`Op::Discard`] (NVMe ONCS bit 2, Dataset Management; ATA IDENTIFY
    /// word 169 bit 0, TRIM, on a bus-master channel).
    pub discard: bool,
    /// The drive takes [`Op::WriteZeroes`] (NVMe ONCS bit 3, Write Zeroes).
    pub write_zeroes: bool,
}

/// Data-transfer commands a device completed, by how their data moved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Transfers {
    /// By the device's DMA (bus-master IDE READ/WRITE DMA EXT, NVMe Read/Write).
    pub dma: u64,
    /// By programmed I/O (READ/WRITE SECTORS EXT through the data register).
    pub pio: u64,
}

/// A block controller with one or more units.
pub trait BlockDevice {
    /// The units this device drives (indices are the `unit` arguments).
    fn units(&self) -> &[DriveInfo];
    /// Queues a request for `unit`; gives it back when the queue is full or it is malformed
    /// (a buffer that is not whole sectors, a unit that does not exist).
    fn submit(&mut self, unit: usize, req: Request) -> Result<(), Request>;
    /// Advances the device by a bounded amount of work; returns a finished request if any.
    fn poll(&mut self) -> Option<(usize, Completion)>;
    /// No request is queued or in flight.
    fn idle(&self) -> bool;
    /// The data-transfer commands completed so far.
    fn transfers(&self) -> Transfers;
}

/// Requests a driver holds at most, queued and in flight (`submit` refuses more).
pub const QUEUE_DEPTH: usize = 64;

/// The common part of every driver's `submit`: the unit exists, the queue has room, and a
/// transfer has whole sectors inside the drive (a flush has no range). Queues the request or
/// gives it back.
pub fn admit(
    queue: &mut VecDeque<(usize, Request)>,
    units: &[DriveInfo],
    unit: usize,
    req: Request,
) -> Result<(), Request> {
    let Some(info) = units.get(unit) else {
        return Err(req);
    };
    if queue.len() >= QUEUE_DEPTH || (req.op != Op::Flush && check(info, &req).is_err()) {
        return Err(req);
    }
    queue.push_back((unit, req));
    Ok(())
}

/// Checks a request's shape against a unit: whole sectors, inside the drive; a discard or
/// write-zeroes only on a unit that takes it, without a buffer, of at least one sector.
pub fn check(info: &DriveInfo, req: &Request) -> Result<(), IoError> {
    if !req.buf.len().is_multiple_of(SECTOR) {
        return Err(IoError::Unaligned {
            bytes: req.buf.len(),
        });
    }
    let sectors = match req.op {
        Op::Discard(n) | Op::WriteZeroes(n) => {
            let supported = match req.op {
                Op::Discard(_) => info.discard,
                _ => info.write_zeroes,
            };
            if !supported || n == 0 || !req.buf.is_empty() {
                return Err(IoError::Unsupported { op: req.op });
            }
            u64::from(n)
        }
        _ => (req.buf.len() / SECTOR) as u64,
    };
    match req.lba.checked_add(sectors) {
        Some(end) if end <= info.sectors => Ok(()),
        _ => Err(IoError::OutOfRange {
            lba: req.lba,
            sectors,
            device_sectors: info.sectors,
        }),
    }
}

/// One unit of a [`BlockDevice`] as a synchronous [`BlockIo`]: each call submits one request
/// and polls (at most `max_polls` times) until it completes. For boot-time use only.
#[derive(Debug)]
pub struct SyncUnit<'a, D: BlockDevice + ?Sized> {
    pub dev: &'a mut D,
    pub unit: usize,
    pub max_polls: u64,
}

impl<D: BlockDevice + ?Sized> SyncUnit<'_, D> {
    fn run(&mut self, op: Op, lba: u64, buf: Vec<u8>) -> Result<Vec<u8>, IoError> {
        let tag = 0x5359_4e43; // "SYNC"
        self.dev
            .submit(self.unit, Request { tag, op, lba, buf })
            .map_err(|r| {
                let why = self
                    .dev
                    .units()
                    .get(self.unit)
                    .and_then(|i| check(i, &r).err());
                why.unwrap_or(IoError::OutOfRange {
                    lba: r.lba,
                    sectors: (r.buf.len() / SECTOR) as u64,
                    device_sectors: self.sectors(),
                })
            })?;
        for _ in 0..self.max_polls {
            if let Some((unit, c)) = self.dev.poll() {
                if unit == self.unit && c.tag == tag {
                    return c.result.map(|()| c.buf);
                }
            }
        }
        Err(IoError::Timeout { lba })
    }
}

impl<D: BlockDevice + ?Sized> BlockIo for SyncUnit<'_, D> {
    fn sectors(&self) -> u64 {
        self.dev.units().get(self.unit).map_or(0, |u| u.sectors)
    }

    fn read(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), IoError> {
        let got = self.run(Op::Read, lba, alloc::vec![0u8; buf.len()])?;
        buf.copy_from_slice(&got);
        Ok(())
    }

    fn write(&mut self, lba: u64, buf: &[u8]) -> Result<(), IoError> {
        self.run(Op::Write, lba, buf.to_vec()).map(drop)
    }

    fn flush(&mut self) -> Result<(), IoError> {
        self.run(Op::Flush, 0, Vec::new()).map(drop)
    }
}

/// What [`SyncUnit::zeroing_check`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZeroingReport {
    /// The drive deallocated the range (Dataset Management) after the pattern was written.
    pub discarded: bool,
    /// The range was zeroed by the drive's own command (Write Zeroes), not by writing zeroes.
    pub drive_zeroed: bool,
    /// Bytes read back that were not zero (0: the zeroing worked).
    pub nonzero: usize,
}

impl<D: BlockDevice + ?Sized> SyncUnit<'_, D> {
    /// The pass-through part of the boot-time store check, on a range nothing owns (the
    /// scratch unit): writes a pattern, flushes, discards it when the drive can, zeroes it
    /// (the drive's Write Zeroes when it has one, else written zeroes), flushes and reads
    /// it back, counting bytes that are not zero.
    pub fn zeroing_check(&mut self, lba: u64, bytes: usize) -> Result<ZeroingReport, IoError> {
        let sectors = (bytes / SECTOR) as u32;
        let info = self.dev.units().get(self.unit).cloned();
        let (discard, zeroes) = info.map_or((false, false), |i| (i.discard, i.write_zeroes));
        let pattern: Vec<u8> = (0..sectors as usize * SECTOR)
            .map(|i| (i as u8) | 1)
            .collect();
        self.write(lba, &pattern)?;
        self.flush()?;
        if discard {
            self.range(Op::Discard(sectors), lba)?;
        }
        if zeroes {
            self.range(Op::WriteZeroes(sectors), lba)?;
        } else {
            self.write(lba, &alloc::vec![0u8; pattern.len()])?;
        }
        self.flush()?;
        let mut back = alloc::vec![0xFFu8; pattern.len()];
        self.read(lba, &mut back)?;
        Ok(ZeroingReport {
            discarded: discard,
            drive_zeroed: zeroes,
            nonzero: back.iter().filter(|&&b| b != 0).count(),
        })
    }

    /// A discard or write-zeroes ([`Op::range_sectors`]) run to completion.
    pub fn range(&mut self, op: Op, lba: u64) -> Result<(), IoError> {
        if op.range_sectors().is_none() {
            return Err(IoError::Unsupported { op });
        }
        self.run(op, lba, Vec::new()).map(drop)
    }
}
