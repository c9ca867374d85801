//! An in-memory drive for tests, the fuzz target and the host tool's dry runs, with a
//! power-loss model: after a set number of sector writes it stops, optionally leaving the
//! sector being written half old, half new (a torn write).

use super::error::IoError;
use super::header::SECTOR;
use super::BlockIo;
use alloc::vec::Vec;

#[derive(Debug, Clone)]
pub struct MemDevice {
    pub data: Vec<u8>,
    /// Sector writes left before the simulated power loss (`None`: never).
    pub writes_left: Option<u64>,
    /// Whether the write that hits the power loss leaves a torn sector.
    pub tear: bool,
    pub flushes: u64,
    pub sector_writes: u64,
}

impl MemDevice {
    pub fn new(sectors: u64) -> Self {
        Self::from_bytes(alloc::vec![0u8; sectors as usize * SECTOR])
    }

    pub fn from_bytes(data: Vec<u8>) -> Self {
        MemDevice {
            data,
            writes_left: None,
            tear: false,
            flushes: 0,
            sector_writes: 0,
        }
    }

    fn check(&self, lba: u64, bytes: usize) -> Result<core::ops::Range<usize>, IoError> {
        if !bytes.is_multiple_of(SECTOR) {
            return Err(IoError::Unaligned { bytes });
        }
        let sectors = (bytes / SECTOR) as u64;
        let n = self.sectors();
        match lba.checked_add(sectors) {
            Some(end) if end <= n => Ok(lba as usize * SECTOR..end as usize * SECTOR),
            _ => Err(IoError::OutOfRange {
                lba,
                sectors,
                device_sectors: n,
            }),
        }
    }
}

impl BlockIo for MemDevice {
    fn sectors(&self) -> u64 {
        (self.data.len() / SECTOR) as u64
    }

    fn read(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), IoError> {
        let r = self.check(lba, buf.len())?;
        buf.copy_from_slice(&self.data[r]);
        Ok(())
    }

    fn write(&mut self, lba: u64, buf: &[u8]) -> Result<(), IoError> {
        let r = self.check(lba, buf.len())?;
        for (i, s) in buf.chunks(SECTOR).enumerate() {
            let at = r.start + i * SECTOR;
            match &mut self.writes_left {
                Some(0) => {
                    return Err(IoError::Timeout {
                        lba: lba + i as u64,
                    })
                }
                Some(n) if *n == 1 && self.tear => {
                    self.data[at..at + SECTOR / 2].copy_from_slice(&s[..SECTOR / 2]);
                    *n = 0;
                    return Err(IoError::Timeout {
                        lba: lba + i as u64,
                    });
                }
                Some(n) => *n -= 1,
                None => {}
            }
            self.data[at..at + SECTOR].copy_from_slice(s);
            self.sector_writes += 1;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), IoError> {
        if self.writes_left == Some(0) {
            return Err(IoError::Timeout { lba: 0 });
        }
        self.flushes += 1;
        Ok(())
    }
}

/// A [`BlockDevice`](super::block::BlockDevice) over a [`MemDevice`] for tests: one unit,
/// each request completes `latency` polls after it is started, at most `depth` queued.
#[derive(Debug)]
pub struct MemBlockDevice {
    pub disk: MemDevice,
    pub latency: u32,
    pub depth: usize,
    info: [super::block::DriveInfo; 1],
    queue: alloc::collections::VecDeque<(super::block::Request, u32)>,
    /// Lbas of reads that fail with a device error.
    pub bad_lba: Option<u64>,
    pub submitted: u64,
    pub discards: u64,
}

impl MemBlockDevice {
    pub fn new(disk: MemDevice, latency: u32, depth: usize) -> Self {
        let info = [super::block::DriveInfo {
            name: "mem0".into(),
            model: "memory".into(),
            sectors: disk.sectors(),
            write_cache: true,
            flush: true,
            dma: false,
            discard: true,
            write_zeroes: true,
        }];
        MemBlockDevice {
            disk,
            latency,
            depth,
            info,
            queue: Default::default(),
            bad_lba: None,
            submitted: 0,
            discards: 0,
        }
    }
}

impl super::block::BlockDevice for MemBlockDevice {
    fn units(&self) -> &[super::block::DriveInfo] {
        &self.info
    }

    fn submit(
        &mut self,
        unit: usize,
        req: super::block::Request,
    ) -> Result<(), super::block::Request> {
        if unit != 0
            || self.queue.len() >= self.depth
            || super::block::check(&self.info[0], &req).is_err()
        {
            return Err(req);
        }
        self.submitted += 1;
        self.queue.push_back((req, self.latency));
        Ok(())
    }

    fn poll(&mut self) -> Option<(usize, super::block::Completion)> {
        use super::block::Op;
        let (_, wait) = self.queue.front_mut()?;
        if *wait > 0 {
            *wait -= 1;
            return None;
        }
        let (mut req, _) = self.queue.pop_front()?;
        let sectors = (req.buf.len() / SECTOR) as u64;
        let result = match req.op {
            Op::Read
                if self
                    .bad_lba
                    .is_some_and(|b| (req.lba..req.lba + sectors).contains(&b)) =>
            {
                Err(IoError::Device {
                    lba: self.bad_lba.unwrap_or(0),
                    status: 0x5140,
                })
            }
            Op::Read => self.disk.read(req.lba, &mut req.buf),
            Op::Write => self.disk.write(req.lba, &req.buf),
            Op::Flush => self.disk.flush(),
            // The model keeps a discarded range's data (allowed: its contents are
            // unspecified) and counts it.
            Op::Discard(_) => {
                self.discards += 1;
                Ok(())
            }
            Op::WriteZeroes(n) => {
                let zeros = alloc::vec![0u8; n as usize * SECTOR];
                self.disk.write(req.lba, &zeros)
            }
        };
        Some((
            0,
            super::block::Completion {
                tag: req.tag,
                op: req.op,
                lba: req.lba,
                buf: req.buf,
                result,
            },
        ))
    }

    fn idle(&self) -> bool {
        self.queue.is_empty()
    }

    /// A memory model moves data by neither DMA nor PIO.
    fn transfers(&self) -> super::block::Transfers {
        super::block::Transfers::default()
    }
}
