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
mod tests {
    use super::*;
    use crate::store::mem::{MemBlockDevice, MemDevice};
    use crate::store::{Region, Store};

    /// A store with disk "a" in two extents (units 8 and 10 of 8 sectors) on a device with
    /// latency 2 and queue depth 4.
    fn setup() -> (MemBlockDevice, DiskIo) {
        let mut d = MemDevice::new(1024);
        let mut s = Store::format(
            &mut d,
            Region {
                start: 0,
                sectors: 1024,
                partition: None,
            },
            8,
            [0; 16],
        )
        .unwrap();
        s.create(&mut d, "a", 4096).unwrap();
        s.create(&mut d, "b", 4096).unwrap();
        s.grow(&mut d, "a", 8192).unwrap();
        let map = s.map("a").unwrap();
        (MemBlockDevice::new(d, 2, 4), DiskIo::new(map, 0, 7 << 48))
    }

    /// Runs one transfer to completion the way the virtio backend does: poll the device,
    /// deliver this disk's completions, ask again.
    fn run(
        dev: &mut MemBlockDevice,
        io: &mut DiskIo,
        op: Op,
        offset: u64,
        buf: &mut [u8],
    ) -> (Result<(), IoError>, u32) {
        let mut asks = 0;
        loop {
            asks += 1;
            if let IoStatus::Done(r) = io.step(dev, op, offset, buf) {
                return (r, asks);
            }
            if let Some((_, c)) = super::BlockDevice::poll(dev) {
                assert!(io.owns(c.tag));
                io.deliver(c);
            }
            assert!(asks < 10_000);
        }
    }

    #[test]
    fn writes_span_extents_and_read_back() {
        let (mut dev, mut io) = setup();
        assert_eq!(io.len(), 8192);
        let data: Vec<u8> = (0..6144u32).map(|i| (i * 13) as u8).collect();
        let (r, asks) = run(&mut dev, &mut io, Op::Write, 1024, &mut data.clone());
        assert_eq!(r, Ok(()));
        assert!(
            asks > 1,
            "a write is not acknowledged before the drive completed it"
        );
        // Sectors 2..8 of extent 1 (LBA 64..72) and 0..6 of extent 2 (LBA 80..86).
        assert_eq!(&dev.disk.data[66 * 512..72 * 512], &data[..3072]);
        assert_eq!(&dev.disk.data[80 * 512..86 * 512], &data[3072..]);
        let mut back = vec![0u8; 6144];
        assert_eq!(run(&mut dev, &mut io, Op::Read, 1024, &mut back).0, Ok(()));
        assert_eq!(back, data);
        let flushes = dev.disk.flushes;
        assert_eq!(run(&mut dev, &mut io, Op::Flush, 0, &mut []).0, Ok(()));
        assert_eq!(dev.disk.flushes, flushes + 1);
        assert_eq!(
            (
                io.stats.reads,
                io.stats.writes,
                io.stats.flushes,
                io.stats.requests
            ),
            (1, 1, 1, 5)
        );
    }

    #[test]
    fn errors_and_bounds() {
        let (mut dev, mut io) = setup();
        let mut b = vec![0u8; 1024];
        assert_eq!(
            io.step(&mut dev, Op::Read, 8192 - 512, &mut b),
            IoStatus::Done(Err(IoError::OutOfRange {
                lba: 15,
                sectors: 2,
                device_sectors: 16
            }))
        );
        assert_eq!(
            io.step(&mut dev, Op::Read, 100, &mut b),
            IoStatus::Done(Err(IoError::Unaligned { bytes: 1024 }))
        );
        dev.bad_lba = Some(65);
        assert_eq!(
            run(&mut dev, &mut io, Op::Read, 0, &mut b).0,
            Err(IoError::Device {
                lba: 65,
                status: 0x5140
            })
        );
        assert_eq!(io.stats.errors, 3);
    }

    #[test]
    fn a_new_write_of_other_data_to_the_same_range_is_written_again() {
        let (mut dev, mut io) = setup();
        let mut a = vec![1u8; 512];
        assert_eq!(io.step(&mut dev, Op::Write, 0, &mut a), IoStatus::Pending);
        while let Some((_, c)) =
            super::BlockDevice::poll(&mut dev).or_else(|| super::BlockDevice::poll(&mut dev))
        {
            io.deliver(c);
        }
        for _ in 0..4 {
            if let Some((_, c)) = super::BlockDevice::poll(&mut dev) {
                io.deliver(c);
            }
        }
        // The device was reset: request A is gone; request B asks for the same range.
        let mut b = vec![2u8; 512];
        assert_eq!(run(&mut dev, &mut io, Op::Write, 0, &mut b).0, Ok(()));
        assert_eq!(&dev.disk.data[64 * 512..65 * 512], &b[..]);
        // The same data again is covered by the finished transfer (one more request only).
        let n = dev.submitted;
        assert_eq!(
            run(&mut dev, &mut io, Op::Write, 0, &mut b.clone()).0,
            Ok(())
        );
        assert_eq!(dev.submitted, n + 1);
    }

    #[test]
    fn a_full_driver_queue_is_retried_and_big_runs_split() {
        let mut d = MemDevice::new(4096);
        let mut s = Store::format(
            &mut d,
            Region {
                start: 0,
                sectors: 4096,
                partition: None,
            },
            8,
            [0; 16],
        )
        .unwrap();
        s.create(&mut d, "big", 1 << 20).unwrap();
        let mut dev = MemBlockDevice::new(d, 0, 2);
        let mut io = DiskIo::new(s.map("big").unwrap(), 0, 1 << 48);
        let data: Vec<u8> = (0..(1 << 20) as u32)
            .map(|i| (i >> 9) as u8 ^ i as u8)
            .collect();
        // 1 MiB in one run: 16 parts of 64 KiB, at most 2 in the driver's queue at a time.
        assert_eq!(
            run(&mut dev, &mut io, Op::Write, 0, &mut data.clone()).0,
            Ok(())
        );
        assert_eq!(io.stats.requests, 16);
        let mut back = vec![0u8; 1 << 20];
        assert_eq!(run(&mut dev, &mut io, Op::Read, 0, &mut back).0, Ok(()));
        assert!(back == data);
    }

    /// WRITE_ZEROES by writing zeroes: 12 KiB across both extents in 4 KiB pieces, each
    /// acknowledged by the drive; the neighbours stay; a range beyond the disk fails.
    #[test]
    fn zeroing_writes_pieces_of_zeroes() {
        let (mut dev, mut io) = setup();
        let data = vec![0xA5u8; 8192];
        assert_eq!(
            run(&mut dev, &mut io, Op::Write, 0, &mut data.clone()).0,
            Ok(())
        );
        let writes = io.stats.writes;
        let mut zeros = vec![0xFFu8; 4096];
        let mut asks = 0;
        let r = loop {
            asks += 1;
            if let IoStatus::Done(r) = io.zero_step(&mut dev, 512, 6144, &mut zeros) {
                break r;
            }
            if let Some((_, c)) = super::BlockDevice::poll(&mut dev) {
                io.deliver(c);
            }
            assert!(asks < 10_000);
        };
        assert_eq!(r, Ok(()));
        assert!(asks > 2, "each piece waits for the drive");
        // Two pieces: 4096 + 2048 bytes.
        assert_eq!(io.stats.writes, writes + 2);
        let mut back = vec![0u8; 8192];
        assert_eq!(run(&mut dev, &mut io, Op::Read, 0, &mut back).0, Ok(()));
        assert!(back[..512].iter().all(|&b| b == 0xA5));
        assert!(back[512..6656].iter().all(|&b| b == 0));
        assert!(back[6656..].iter().all(|&b| b == 0xA5));
        let beyond = loop {
            if let IoStatus::Done(r) = io.zero_step(&mut dev, 8192 - 512, 1024, &mut zeros) {
                break r;
            }
            if let Some((_, c)) = super::BlockDevice::poll(&mut dev) {
                io.deliver(c);
            }
        };
        assert!(beyond.is_err(), "{beyond:?}");
        assert!(matches!(
            io.zero_step(&mut dev, 0, 512, &mut [0u8; 100]),
            IoStatus::Done(Err(IoError::Unaligned { bytes: 100 }))
        ));
    }

    /// DISCARD and WRITE_ZEROES passed to a drive that has the commands: one request per
    /// drive run (the range spans both extents), no data moved, acknowledged only after the
    /// drive completed them; write-zeroes reads back as zeroes, the neighbours stay.
    #[test]
    fn discard_and_write_zeroes_pass_through_per_drive_run() {
        let (mut dev, mut io) = setup();
        let data = vec![0xA5u8; 8192];
        assert_eq!(
            run(&mut dev, &mut io, Op::Write, 0, &mut data.clone()).0,
            Ok(())
        );
        let (requests, submitted) = (io.stats.requests, dev.submitted);
        let range = |io: &mut DiskIo, dev: &mut MemBlockDevice, discard, off, len| {
            let mut asks = 0;
            loop {
                asks += 1;
                if let IoStatus::Done(r) = io.range_step(dev, discard, off, len) {
                    return (r, asks);
                }
                if let Some((_, c)) = super::BlockDevice::poll(dev) {
                    io.deliver(c);
                }
                assert!(asks < 10_000);
            }
        };
        let (r, asks) = range(&mut io, &mut dev, true, 1024, 6144);
        assert_eq!(r, Ok(()));
        assert!(asks > 1, "acknowledged only after the drive");
        assert_eq!(
            (io.stats.discards, dev.discards),
            (1, 2),
            "one per extent run"
        );
        let (r, _) = range(&mut io, &mut dev, false, 512, 6144);
        assert_eq!(r, Ok(()));
        assert_eq!(io.stats.zeroed, 1);
        assert_eq!(io.stats.requests - requests, 4);
        assert_eq!(dev.submitted - submitted, 4);
        let mut back = vec![0u8; 8192];
        assert_eq!(run(&mut dev, &mut io, Op::Read, 0, &mut back).0, Ok(()));
        assert!(back[..512].iter().all(|&b| b == 0xA5));
        assert!(back[512..6656].iter().all(|&b| b == 0));
        assert!(back[6656..].iter().all(|&b| b == 0xA5));
        assert_eq!(io.stats.writes, 1, "no zeroes were written as data");
        // Beyond the disk, unaligned, empty: refused before the drive sees anything.
        let before = dev.submitted;
        assert!(matches!(
            range(&mut io, &mut dev, true, 8192 - 512, 1024).0,
            Err(IoError::OutOfRange { .. })
        ));
        assert!(matches!(
            range(&mut io, &mut dev, false, 100, 512).0,
            Err(IoError::Unaligned { .. })
        ));
        assert!(range(&mut io, &mut dev, false, 0, 0).0.is_err());
        assert_eq!(dev.submitted, before);
    }
}
