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

/// Checks a request's shape against a unit: whole sectors, inside the drive.
pub fn check(info: &DriveInfo, req: &Request) -> Result<(), IoError> {
    if !req.buf.len().is_multiple_of(SECTOR) {
        return Err(IoError::Unaligned {
            bytes: req.buf.len(),
        });
    }
    let sectors = (req.buf.len() / SECTOR) as u64;
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
            .map_err(|r| IoError::OutOfRange {
                lba: r.lba,
                sectors: (r.buf.len() / SECTOR) as u64,
                device_sectors: self.sectors(),
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
