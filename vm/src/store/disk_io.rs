//! One store disk as a sequence of asynchronous transfers on its drive: the virtio-blk
//! backend over a store disk asks for a byte range, [`DiskIo::step`] maps it through the
//! disk's extents ([`DiskMap`]), submits one driver request per drive run, and answers
//! `Pending` until every part has completed; the answer to the same question asked again
//! is then the data (read) or the acknowledgement (write, flush). A write is acknowledged
//! only once the drive has completed it; a flush is the drive's cache flush.
//!
//! A different question while a transfer is in flight waits for it and then starts anew,
//! unless the finished transfer covers it (same operation and start, at least as long):
//! the device layer may ask for a shorter piece of the same range when its work budget is
//! smaller than the last time.

use super::block::{BlockDevice, Completion, Op, Request};
use super::error::IoError;
use super::header::SECTOR;
use super::map::DiskMap;
use alloc::vec;
use alloc::vec::Vec;

/// Bytes of one driver request at most (a drive run longer than that is split).
pub const MAX_PART_BYTES: usize = 64 * 1024;
/// Sectors of one discard or write-zeroes driver request at most (NVMe Write Zeroes takes
/// 65536 blocks per command).
pub const MAX_RANGE_SECTORS: u64 = 65536;

/// The answer to a transfer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IoStatus {
    /// Submitted, not complete: ask again later.
    Pending,
    Done(Result<(), IoError>),
}

#[derive(Debug)]
enum PartState {
    /// Not accepted by the driver yet (its queue was full).
    Waiting(Request),
    Submitted,
    Finished(Result<Vec<u8>, IoError>),
}

#[derive(Debug)]
struct Part {
    tag: u64,
    /// Where its data goes in the transfer.
    at: usize,
    state: PartState,
}

#[derive(Debug)]
struct Transfer {
    op: Op,
    offset: u64,
    len: usize,
    parts: Vec<Part>,
}

impl Transfer {
    /// Whether this (finished) write wrote exactly `buf` at its start: a new request for the
    /// same range with other data (after a device reset) must be written again.
    fn wrote(&self, buf: &[u8]) -> bool {
        self.parts.iter().all(|p| match &p.state {
            PartState::Finished(Ok(d)) => {
                let end = (p.at + d.len()).min(buf.len());
                p.at >= end || buf[p.at..end] == d[..end - p.at]
            }
            _ => true,
        })
    }
}

/// Counters of one disk's transfers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiskIoStats {
    pub reads: u64,
    pub writes: u64,
    pub flushes: u64,
    /// Discards and write-zeroes passed to the drive ([`DiskIo::range_step`]).
    pub discards: u64,
    pub zeroed: u64,
    pub errors: u64,
    /// Driver requests submitted.
    pub requests: u64,
}

/// One store disk's transfers on unit `unit` of its drive's device.
#[derive(Debug)]
pub struct DiskIo {
    map: DiskMap,
    unit: usize,
    /// Tags of this disk's requests are `tag_base | sequence` (the sequence uses the low
    /// 48 bits); the submitter routes completions by `tag & !0xFFFF_FFFF_FFFF`.
    tag_base: u64,
    seq: u64,
    current: Option<Transfer>,
    /// A zeroing in progress (`zero_step`): its start and the bytes written so far.
    zeroing: Option<(u64, u64)>,
    pub stats: DiskIoStats,
}

/// The tag bits a [`DiskIo`] owns.
pub const TAG_SEQ_MASK: u64 = (1 << 48) - 1;

impl DiskIo {
    pub fn new(map: DiskMap, unit: usize, tag_base: u64) -> DiskIo {
        DiskIo {
            map,
            unit,
            tag_base: tag_base & !TAG_SEQ_MASK,
            seq: 0,
            current: None,
            zeroing: None,
            stats: DiskIoStats::default(),
        }
    }

    /// The disk's size in bytes.
    pub fn len(&self) -> u64 {
        self.map.sectors() * SECTOR as u64
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn unit(&self) -> usize {
        self.unit
    }

    /// Whether a completion's tag is one of this disk's.
    pub fn owns(&self, tag: u64) -> bool {
        tag & !TAG_SEQ_MASK == self.tag_base
    }

    /// Whether a transfer is still waiting for the drive.
    pub fn busy(&self) -> bool {
        self.current.as_ref().is_some_and(|t| {
            t.parts
                .iter()
                .any(|p| !matches!(p.state, PartState::Finished(_)))
        })
    }

    /// Takes a completion of one of this disk's requests (see [`DiskIo::owns`]).
    pub fn deliver(&mut self, c: Completion) {
        let Some(t) = self.current.as_mut() else {
            return;
        };
        if let Some(p) = t
            .parts
            .iter_mut()
            .find(|p| p.tag == c.tag && matches!(p.state, PartState::Submitted))
        {
            p.state = PartState::Finished(c.result.map(|()| c.buf));
        }
    }

    fn next_tag(&mut self) -> u64 {
        self.seq = (self.seq + 1) & TAG_SEQ_MASK;
        self.tag_base | self.seq
    }

    /// Submits what the driver did not accept yet.
    fn push(&mut self, dev: &mut dyn BlockDevice) {
        let unit = self.unit;
        let Some(t) = self.current.as_mut() else {
            return;
        };
        for p in t.parts.iter_mut() {
            if let PartState::Waiting(_) = p.state {
                let PartState::Waiting(req) =
                    core::mem::replace(&mut p.state, PartState::Submitted)
                else {
                    continue;
                };
                match dev.submit(unit, req) {
                    Ok(()) => self.stats.requests += 1,
                    Err(req) => {
                        p.state = PartState::Waiting(req);
                        return;
                    }
                }
            }
        }
    }

    /// Asks for `op` on `buf.len()` bytes at byte `offset` of the disk (a read fills `buf`,
    /// a write takes it; a flush ignores both).
    pub fn step(
        &mut self,
        dev: &mut dyn BlockDevice,
        op: Op,
        offset: u64,
        buf: &mut [u8],
    ) -> IoStatus {
        if self.current.is_some() {
            self.push(dev);
            if self.busy() {
                return IoStatus::Pending;
            }
            let t = self.current.take().expect("checked above");
            let covers = t.op == op
                && (op == Op::Flush || (t.offset == offset && t.len >= buf.len()))
                && (op != Op::Write || t.wrote(buf));
            if covers {
                return IoStatus::Done(self.finish(t, buf));
            }
        }
        if let Err(e) = self.start(op, offset, buf) {
            self.stats.errors += 1;
            return IoStatus::Done(Err(e));
        }
        self.push(dev);
        IoStatus::Pending
    }

    /// Asks for `len` zero bytes at byte `offset` (virtio-blk WRITE_ZEROES on a drive
    /// without a zeroing command): written as pieces of at most `zeros.len()` bytes (a
    /// buffer the caller owns, zeroed here, whole sectors), one after another, each
    /// acknowledged by the drive; `Pending` until the last one is. Asking again from the same
    /// start continues (with the length now asked for); another start, or an error, starts
    /// over.
    pub fn zero_step(
        &mut self,
        dev: &mut dyn BlockDevice,
        offset: u64,
        len: u64,
        zeros: &mut [u8],
    ) -> IoStatus {
        let piece_max = (zeros.len() / SECTOR * SECTOR) as u64;
        if piece_max == 0 {
            return IoStatus::Done(Err(IoError::Unaligned { bytes: zeros.len() }));
        }
        let mut done = match self.zeroing {
            // The device may grant a different length when it asks again (its work budget):
            // the same start continues.
            Some((o, d)) if o == offset && d <= len => d,
            _ => 0,
        };
        while done < len {
            self.zeroing = Some((offset, done));
            let n = (len - done).min(piece_max) as usize;
            zeros[..n].fill(0);
            match self.step(dev, Op::Write, offset + done, &mut zeros[..n]) {
                IoStatus::Pending => return IoStatus::Pending,
                IoStatus::Done(Ok(())) => done += n as u64,
                IoStatus::Done(Err(e)) => {
                    self.zeroing = None;
                    return IoStatus::Done(Err(e));
                }
            }
        }
        self.zeroing = None;
        IoStatus::Done(Ok(()))
    }

    /// Asks for a discard (`discard`) or a write-zeroes of `len` bytes at byte `offset`,
    /// passed to a drive that has the command ([`Op::Discard`], [`Op::WriteZeroes`]): one
    /// driver request per drive run of at most [`MAX_RANGE_SECTORS`], no data moved;
    /// `Pending` until all completed, as [`DiskIo::step`].
    pub fn range_step(
        &mut self,
        dev: &mut dyn BlockDevice,
        discard: bool,
        offset: u64,
        len: u64,
    ) -> IoStatus {
        let kind = |n| {
            if discard {
                Op::Discard(n)
            } else {
                Op::WriteZeroes(n)
            }
        };
        if self.current.is_some() {
            self.push(dev);
            if self.busy() {
                return IoStatus::Pending;
            }
            let t = self.current.take().expect("checked above");
            if t.op == kind(0) && t.offset == offset && t.len as u64 >= len {
                return IoStatus::Done(self.finish(t, &mut []));
            }
        }
        if let Err(e) = self.start_range(kind, offset, len) {
            self.stats.errors += 1;
            return IoStatus::Done(Err(e));
        }
        self.push(dev);
        IoStatus::Pending
    }

    fn start_range(
        &mut self,
        kind: impl Fn(u32) -> Op,
        offset: u64,
        len: u64,
    ) -> Result<(), IoError> {
        let sector = SECTOR as u64;
        if !offset.is_multiple_of(sector) || !len.is_multiple_of(sector) || len == 0 {
            return Err(IoError::Unaligned {
                bytes: len as usize,
            });
        }
        let (lba, sectors) = (offset / sector, len / sector);
        let runs: Vec<(u64, u64)> = self
            .map
            .runs(lba, sectors)
            .map_err(|_| IoError::OutOfRange {
                lba,
                sectors,
                device_sectors: self.map.sectors(),
            })?
            .collect();
        let mut parts = Vec::new();
        for (lba, n) in runs {
            let mut done = 0u64;
            while done < n {
                let k = (n - done).min(MAX_RANGE_SECTORS);
                let tag = self.next_tag();
                parts.push(Part {
                    tag,
                    at: 0,
                    state: PartState::Waiting(Request {
                        tag,
                        op: kind(k as u32),
                        lba: lba + done,
                        buf: Vec::new(),
                    }),
                });
                done += k;
            }
        }
        self.current = Some(Transfer {
            op: kind(0),
            offset,
            len: len as usize,
            parts,
        });
        Ok(())
    }

    fn finish(&mut self, t: Transfer, buf: &mut [u8]) -> Result<(), IoError> {
        let mut first_error = None;
        for p in t.parts {
            match p.state {
                PartState::Finished(Ok(data)) => {
                    if t.op == Op::Read {
                        let end = (p.at + data.len()).min(buf.len());
                        if p.at < end {
                            buf[p.at..end].copy_from_slice(&data[..end - p.at]);
                        }
                    }
                }
                PartState::Finished(Err(e)) => {
                    first_error.get_or_insert(e);
                }
                _ => {}
            }
        }
        match first_error {
            Some(e) => {
                self.stats.errors += 1;
                Err(e)
            }
            None => {
                match t.op {
                    Op::Read => self.stats.reads += 1,
                    Op::Write => self.stats.writes += 1,
                    Op::Flush => self.stats.flushes += 1,
                    Op::Discard(_) => self.stats.discards += 1,
                    Op::WriteZeroes(_) => self.stats.zeroed += 1,
                }
                Ok(())
            }
        }
    }

    fn start(&mut self, op: Op, offset: u64, buf: &[u8]) -> Result<(), IoError> {
        let mut parts = Vec::new();
        if op == Op::Flush {
            let tag = self.next_tag();
            parts.push(Part {
                tag,
                at: 0,
                state: PartState::Waiting(Request {
                    tag,
                    op,
                    lba: 0,
                    buf: Vec::new(),
                }),
            });
        } else {
            if !offset.is_multiple_of(SECTOR as u64) || !buf.len().is_multiple_of(SECTOR) {
                return Err(IoError::Unaligned { bytes: buf.len() });
            }
            let sectors = (buf.len() / SECTOR) as u64;
            let runs = self
                .map
                .runs(offset / SECTOR as u64, sectors)
                .map_err(|_| IoError::OutOfRange {
                    lba: offset / SECTOR as u64,
                    sectors,
                    device_sectors: self.map.sectors(),
                })?;
            let mut at = 0usize;
            let runs: Vec<(u64, u64)> = runs.collect();
            for (lba, n) in runs {
                let mut done = 0u64;
                while done < n {
                    let k = (n - done).min((MAX_PART_BYTES / SECTOR) as u64);
                    let bytes = k as usize * SECTOR;
                    let data = match op {
                        Op::Write => buf[at..at + bytes].to_vec(),
                        _ => vec![0u8; bytes],
                    };
                    let tag = self.next_tag();
                    parts.push(Part {
                        tag,
                        at,
                        state: PartState::Waiting(Request {
                            tag,
                            op,
                            lba: lba + done,
                            buf: data,
                        }),
                    });
                    at += bytes;
                    done += k;
                }
            }
        }
        self.current = Some(Transfer {
            op,
            offset,
            len: buf.len(),
            parts,
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests;
