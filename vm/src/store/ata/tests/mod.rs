//! The ATA channel logic against a model of an IDE channel with two drives: IDENTIFY, LBA48
//! taskfiles, PIO data-in/out across command boundaries, flushes, errors and timeouts.

mod bus_master;

use super::*;
use crate::store::block::{SyncUnit, QUEUE_DEPTH};
use crate::store::{BlockIo, Store};
use alloc::vec;

#[derive(Debug, Default)]
struct FakeDrive {
    data: Vec<u8>,
    identify: Vec<u16>,
}

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum Phase {
    Idle,
    Identify,
    Read,
    Write,
    DmaRead,
    DmaWrite,
    DmaTrim,
}

/// A bus master on the fake channel (Bus Master IDE rev 1.0): its registers and the
/// physical memory of its DMA area, `MEM_BASE..`.
#[derive(Debug)]
struct FakeBm {
    cmd: u8,
    status: u8,
    prd: u32,
    mem: Vec<u8>,
    area: dma::DmaArea,
    /// Polls until a started transfer runs.
    pending: Option<u32>,
    /// Transfers run, and the PRD tables they walked.
    tables: Vec<Vec<dma::PrdEntry>>,
}

const MEM_BASE: u64 = 0x8_0000;

#[derive(Debug)]
struct FakeBus {
    drives: [Option<FakeDrive>; 2],
    sel: usize,
    cur: [u8; 6],
    prev: [u8; 6],
    status: u8,
    error: u8,
    busy: u32,
    /// BSY polls after each command or sector.
    latency: u32,
    phase: Phase,
    lba: u64,
    left: u64,
    buf: Vec<u16>,
    now: u64,
    commands: Vec<(u8, u64, u64)>,
    fail_lba: Option<u64>,
    hang: bool,
    resets: u32,
    words_moved: u64,
    bm: Option<FakeBm>,
    /// Features register, two-deep (current, previous).
    features: [u8; 2],
    /// (LBA, sectors) of every TRIM range entry received.
    trims: Vec<(u64, u16)>,
}

fn identify_words(model: &str, sectors: u64, lba48: bool) -> Vec<u16> {
    let mut w = vec![0u16; 256];
    let mut m = [b' '; 40];
    m[..model.len()].copy_from_slice(model.as_bytes());
    for (i, pair) in m.chunks(2).enumerate() {
        w[27 + i] = u16::from_be_bytes([pair[0], pair[1]]);
    }
    w[82] = 1 << 5;
    w[83] = (1 << 13) | if lba48 { 1 << 10 } else { 0 };
    for i in 0..4 {
        w[100 + i] = (sectors >> (16 * i)) as u16;
    }
    w
}

impl FakeBus {
    fn new(master: Option<u64>, slave: Option<u64>) -> Self {
        let d = |s: Option<u64>| {
            s.map(|n| FakeDrive {
                data: vec![0; n as usize * SECTOR],
                identify: identify_words("BULKHEAD TEST DISK", n, true),
            })
        };
        FakeBus {
            drives: [d(master), d(slave)],
            sel: 0,
            cur: [0; 6],
            prev: [0; 6],
            status: status::DRDY,
            error: 0,
            busy: 0,
            latency: 3,
            phase: Phase::Idle,
            lba: 0,
            left: 0,
            buf: Vec::new(),
            now: 0,
            commands: Vec::new(),
            fail_lba: None,
            hang: false,
            resets: 0,
            words_moved: 0,
            bm: None,
            features: [0; 2],
            trims: Vec::new(),
        }
    }

    /// The same channel with a bus master whose PRD table is at `MEM_BASE` and whose bounce
    /// buffer of `buffer_bytes` follows 64 KiB later; drives say they support DMA.
    fn with_dma(mut self, buffer_bytes: usize) -> Self {
        for d in self.drives.iter_mut().flatten() {
            d.identify[49] |= 1 << 8;
        }
        let area = dma::DmaArea {
            table: MEM_BASE,
            table_bytes: 4096,
            buffer: MEM_BASE + 0x1_0000,
            buffer_bytes,
        };
        self.bm = Some(FakeBm {
            cmd: 0,
            status: 0,
            prd: 0,
            mem: vec![0; 0x3_0000],
            area,
            pending: None,
            tables: Vec::new(),
        });
        self
    }

    /// Runs a started bus-master transfer: walks the PRD table, checks it describes exactly
    /// the command's sectors with no entry across a 64 KiB boundary, moves the data.
    fn run_dma(&mut self) {
        let mut bm = self.bm.take().unwrap();
        let mut entries = Vec::new();
        let mut at = u64::from(bm.prd);
        loop {
            let off = (at - MEM_BASE) as usize;
            let raw: [u8; 8] = bm.mem[off..off + 8].try_into().unwrap();
            let e = dma::PrdEntry::decode(&raw);
            let (start, end) = (u64::from(e.base), u64::from(e.base) + u64::from(e.bytes));
            assert_eq!(
                start >> 16,
                (end - 1) >> 16,
                "PRD entry {e:?} crosses 64 KiB"
            );
            entries.push(e);
            at += 8;
            if e.end_of_table {
                break;
            }
        }
        let bytes: u64 = entries.iter().map(|e| u64::from(e.bytes)).sum();
        assert_eq!(bytes, self.left * SECTOR as u64, "PRD table != command");
        let to_memory = bm.cmd & dma::command::WRITE_TO_MEMORY != 0;
        assert_eq!(to_memory, self.phase == Phase::DmaRead, "wrong direction");
        if self.phase == Phase::DmaTrim {
            assert_eq!(
                self.features,
                [0x01, 0x00],
                "Features = TRIM (high byte first)"
            );
            let e0 = entries[0];
            let off = (u64::from(e0.base) - MEM_BASE) as usize;
            let block = bm.mem[off..off + SECTOR].to_vec();
            for e in block.as_chunks::<8>().0 {
                let v = u64::from_le_bytes(*e);
                let (lba, n) = (v & ((1 << 48) - 1), (v >> 48) as u16);
                if n == 0 {
                    continue;
                }
                self.trims.push((lba, n));
                let d = &mut self.drives[self.sel].as_mut().unwrap().data;
                d[lba as usize * SECTOR..(lba as usize + n as usize) * SECTOR].fill(0xFF);
            }
            self.status = status::DRDY;
            self.phase = Phase::Idle;
            bm.status = (bm.status & !dma::status::ACTIVE) | dma::status::INTERRUPT;
            bm.pending = None;
            bm.tables.push(entries);
            self.bm = Some(bm);
            return;
        }
        let failed = self
            .fail_lba
            .is_some_and(|f| (self.lba..self.lba + self.left).contains(&f));
        if failed {
            self.status = status::DRDY | status::ERR;
            self.error = 0x40;
        } else {
            let mut disk = self.lba as usize * SECTOR;
            for e in &entries {
                let m = (u64::from(e.base) - MEM_BASE) as usize;
                let n = e.bytes as usize;
                let d = &mut self.drives[self.sel].as_mut().unwrap().data;
                if to_memory {
                    bm.mem[m..m + n].copy_from_slice(&d[disk..disk + n]);
                } else {
                    d[disk..disk + n].copy_from_slice(&bm.mem[m..m + n]);
                }
                disk += n;
            }
            self.status = status::DRDY;
        }
        self.phase = Phase::Idle;
        bm.status = (bm.status & !dma::status::ACTIVE) | dma::status::INTERRUPT;
        bm.pending = None;
        bm.tables.push(entries);
        self.bm = Some(bm);
    }

    fn drive(&mut self) -> &mut FakeDrive {
        self.drives[self.sel].as_mut().unwrap()
    }

    fn load_sector(&mut self) {
        if Some(self.lba) == self.fail_lba {
            self.status = status::DRDY | status::ERR;
            self.error = 0x40; // UNC: uncorrectable data
            self.phase = Phase::Idle;
            return;
        }
        let at = self.lba as usize * SECTOR;
        let s: Vec<u16> = self.drive().data[at..at + SECTOR]
            .chunks(2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
            .collect();
        self.buf = s;
        self.status = status::DRDY | status::DRQ;
    }
}

impl AtaBus for FakeBus {
    fn read(&mut self, reg: Reg) -> u8 {
        match reg {
            Reg::Status => self.status,
            Reg::Error => self.error,
            Reg::LbaMid | Reg::LbaHigh => 0,
            _ => 0,
        }
    }

    fn write(&mut self, reg: Reg, v: u8) {
        let i = reg as usize;
        match reg {
            Reg::Device => self.sel = usize::from(v & DEVICE_SLAVE != 0),
            Reg::SectorCount | Reg::LbaLow | Reg::LbaMid | Reg::LbaHigh => {
                self.prev[i] = self.cur[i];
                self.cur[i] = v;
            }
            Reg::Status => {
                if self.drives[self.sel].is_none() {
                    self.status = 0;
                    return;
                }
                let lba = u64::from_le_bytes([
                    self.cur[3],
                    self.cur[4],
                    self.cur[5],
                    self.prev[3],
                    self.prev[4],
                    self.prev[5],
                    0,
                    0,
                ]);
                let count = match u64::from(self.prev[2]) << 8 | u64::from(self.cur[2]) {
                    0 => 65536,
                    n => n,
                };
                self.commands.push((v, lba, count));
                self.busy = self.latency;
                self.error = 0;
                match v {
                    cmd::IDENTIFY_DEVICE => {
                        self.buf = self.drive().identify.clone();
                        self.phase = Phase::Identify;
                        self.status = status::DRDY | status::DRQ;
                    }
                    cmd::READ_SECTORS_EXT => {
                        (self.phase, self.lba, self.left) = (Phase::Read, lba, count);
                        self.load_sector();
                    }
                    cmd::WRITE_SECTORS_EXT => {
                        (self.phase, self.lba, self.left) = (Phase::Write, lba, count);
                        self.buf.clear();
                        self.status = status::DRDY | status::DRQ;
                    }
                    cmd::FLUSH_CACHE_EXT => self.status = status::DRDY,
                    cmd::DATA_SET_MANAGEMENT
                        if self.bm.is_some() && self.drive().identify[169] & 1 != 0 =>
                    {
                        (self.phase, self.lba, self.left) = (Phase::DmaTrim, lba, count);
                        self.status = status::DRDY | status::DRQ;
                    }
                    cmd::READ_DMA_EXT | cmd::WRITE_DMA_EXT if self.bm.is_some() => {
                        let phase = if v == cmd::READ_DMA_EXT {
                            Phase::DmaRead
                        } else {
                            Phase::DmaWrite
                        };
                        (self.phase, self.lba, self.left) = (phase, lba, count);
                        self.status = status::DRDY | status::DRQ;
                    }
                    _ => {
                        self.status = status::DRDY | status::ERR;
                        self.error = 0x04; // ABRT
                    }
                }
            }
            Reg::Error => self.features = [v, self.features[0]],
            Reg::Data => {}
        }
    }

    fn alt_status(&mut self) -> u8 {
        self.now += 1;
        if self.hang {
            return status::BSY;
        }
        if let Some(n) = self.bm.as_mut().and_then(|b| b.pending.as_mut()) {
            if *n == 0 {
                self.run_dma();
            } else {
                *n -= 1;
            }
        }
        if self.drives[self.sel].is_none() {
            return 0;
        }
        if self.busy > 0 {
            self.busy -= 1;
            return status::BSY;
        }
        self.status
    }

    fn control(&mut self, v: u8) {
        if v & CONTROL_SRST != 0 {
            self.resets += 1;
            self.hang = false;
        }
    }

    fn read_data(&mut self, words: &mut [u16]) {
        assert_eq!(
            self.status & status::DRQ,
            status::DRQ,
            "data read without DRQ"
        );
        assert!(self.busy == 0, "data read while busy");
        self.words_moved += words.len() as u64;
        for w in words.iter_mut() {
            *w = self.buf.remove(0);
        }
        if self.buf.is_empty() {
            match self.phase {
                Phase::Read => {
                    self.left -= 1;
                    self.lba += 1;
                    if self.left > 0 {
                        self.busy = self.latency;
                        self.load_sector();
                    } else {
                        self.status = status::DRDY;
                        self.phase = Phase::Idle;
                    }
                }
                _ => {
                    self.status = status::DRDY;
                    self.phase = Phase::Idle;
                }
            }
        }
    }

    fn write_data(&mut self, words: &[u16]) {
        assert_eq!(self.phase, Phase::Write);
        assert!(
            self.busy == 0 && self.status & status::DRQ != 0,
            "data write without DRQ"
        );
        self.words_moved += words.len() as u64;
        self.buf.extend_from_slice(words);
        if self.buf.len() == SECTOR / 2 {
            let at = self.lba as usize * SECTOR;
            let bytes: Vec<u8> = self.buf.drain(..).flat_map(u16::to_le_bytes).collect();
            self.drive().data[at..at + SECTOR].copy_from_slice(&bytes);
            self.lba += 1;
            self.left -= 1;
            self.busy = self.latency;
            self.status = if self.left > 0 {
                status::DRDY | status::DRQ
            } else {
                status::DRDY
            };
            if self.left == 0 {
                self.phase = Phase::Idle;
            }
        }
    }

    fn now(&mut self) -> u64 {
        self.now
    }

    fn bus_master(&mut self) -> Option<&mut dyn dma::BusMaster> {
        if self.bm.is_some() {
            Some(self)
        } else {
            None
        }
    }
}

impl dma::BusMaster for FakeBus {
    fn area(&self) -> dma::DmaArea {
        self.bm.as_ref().unwrap().area
    }

    fn read_bm(&mut self, reg: dma::BmReg) -> u8 {
        let bm = self.bm.as_ref().unwrap();
        match reg {
            dma::BmReg::Command => bm.cmd,
            dma::BmReg::Status => bm.status,
        }
    }

    fn write_bm(&mut self, reg: dma::BmReg, v: u8) {
        let latency = self.latency;
        let bm = self.bm.as_mut().unwrap();
        match reg {
            dma::BmReg::Command => {
                let start = v & dma::command::START != 0;
                if start && bm.cmd & dma::command::START == 0 {
                    bm.status |= dma::status::ACTIVE;
                    bm.pending = Some(latency);
                } else if !start {
                    bm.status &= !dma::status::ACTIVE;
                    bm.pending = None;
                }
                bm.cmd = v & (dma::command::START | dma::command::WRITE_TO_MEMORY);
            }
            // Bits 1 and 2 are cleared by writing 1 (§2.2).
            dma::BmReg::Status => bm.status &= !(v & 0x06),
        }
    }

    fn write_prd_address(&mut self, phys: u32) {
        self.bm.as_mut().unwrap().prd = phys & !3;
    }

    fn write_memory(&mut self, phys: u64, data: &[u8]) {
        let bm = self.bm.as_mut().unwrap();
        let at = (phys - MEM_BASE) as usize;
        bm.mem[at..at + data.len()].copy_from_slice(data);
    }

    fn read_memory(&mut self, phys: u64, out: &mut [u8]) {
        let bm = self.bm.as_ref().unwrap();
        let at = (phys - MEM_BASE) as usize;
        out.copy_from_slice(&bm.mem[at..at + out.len()]);
    }
}

const TIMEOUT: u64 = 10_000;

fn sync(ch: &mut AtaChannel<FakeBus>) -> SyncUnit<'_, AtaChannel<FakeBus>> {
    SyncUnit {
        dev: ch,
        unit: 0,
        max_polls: 100_000,
    }
}

#[test]
fn probe_finds_drives_and_parses_identify() {
    let ch = AtaChannel::probe(FakeBus::new(None, Some(20480)), "ata0", TIMEOUT);
    assert_eq!(
        ch.units(),
        [DriveInfo {
            name: "ata0-slave".into(),
            model: "BULKHEAD TEST DISK".into(),
            sectors: 20480,
            write_cache: true,
            flush: true,
            dma: false,
            discard: false,
            write_zeroes: false
        }]
    );
    assert!(ch.skipped.is_empty());
    let both = AtaChannel::probe(FakeBus::new(Some(100), Some(200)), "ata1", TIMEOUT);
    assert_eq!(
        both.units()
            .iter()
            .map(|u| (u.name.as_str(), u.sectors))
            .collect::<Vec<_>>(),
        [("ata1-master", 100), ("ata1-slave", 200)]
    );
    let mut floating = FakeBus::new(None, None);
    floating.status = 0xFF;
    floating.drives = [None, None];
    assert!(AtaChannel::probe(floating, "ata2", TIMEOUT)
        .units()
        .is_empty());
    let mut old = FakeBus::new(Some(100), None);
    old.drives[0].as_mut().unwrap().identify = identify_words("OLD", 100, false);
    let ch = AtaChannel::probe(old, "ata0", TIMEOUT);
    assert!(ch.units().is_empty());
    assert_eq!(ch.skipped, [("ata0-master".into(), Unusable::NoLba48)]);
}

#[test]
fn identify_variants() {
    let mut w = [0u16; 256];
    w.copy_from_slice(&identify_words("X", 1 << 40, true));
    assert_eq!(Identify::parse(&w).unwrap().sectors, 1 << 40);
    w[0] = 0x85C0;
    assert_eq!(Identify::parse(&w), Err(Unusable::Packet));
    w[0] = 0;
    w[106] = 0x4000 | (1 << 12);
    w[117] = 2048; // words: 4096-byte logical sectors
    assert_eq!(Identify::parse(&w), Err(Unusable::SectorSize(4096)));
    w[106] = 0;
    w[82] = 0;
    w[83] = 1 << 10;
    let id = Identify::parse(&w).unwrap();
    assert!(!id.flush_ext && !id.write_cache);
    assert_eq!(id.model, "X");
}

#[test]
fn lba48_taskfile_order() {
    let tf = lba48_taskfile(true, 0x0000_BA98_7654_3210, 0x0102);
    assert_eq!(
        tf,
        [
            (Reg::Device, 0x50),
            (Reg::SectorCount, 0x01),
            (Reg::LbaLow, 0x76),
            (Reg::LbaMid, 0x98),
            (Reg::LbaHigh, 0xBA),
            (Reg::SectorCount, 0x02),
            (Reg::LbaLow, 0x10),
            (Reg::LbaMid, 0x32),
            (Reg::LbaHigh, 0x54),
        ]
    );
}

#[test]
fn read_write_across_commands_with_bounded_polls() {
    let mut ch = AtaChannel::probe(FakeBus::new(Some(4096), None), "ata0", TIMEOUT);
    let data: Vec<u8> = (0..600 * SECTOR)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3])
        .collect();
    ch.submit(
        0,
        Request {
            tag: 7,
            op: Op::Write,
            lba: 1000,
            buf: data.clone(),
        },
    )
    .unwrap();
    let mut polls = 0;
    let c = loop {
        let before = ch.bus.words_moved;
        polls += 1;
        if let Some(c) = ch.poll() {
            break c;
        }
        assert!(
            ch.bus.words_moved - before <= SECTORS_PER_POLL * 256,
            "a poll moved more than 16 sectors"
        );
    };
    assert_eq!(
        (c.0, c.1.tag, c.1.op, c.1.result),
        (0, 7, Op::Write, Ok(()))
    );
    assert!(polls >= 600 / SECTORS_PER_POLL, "{polls}");
    assert_eq!(
        &ch.bus.drives[0].as_ref().unwrap().data[1000 * SECTOR..1600 * SECTOR],
        &data[..]
    );
    // 600 sectors: commands of 256, 256 and 88.
    let cmds: Vec<_> = ch
        .bus
        .commands
        .iter()
        .filter(|c| c.0 == cmd::WRITE_SECTORS_EXT)
        .map(|c| (c.1, c.2))
        .collect();
    assert_eq!(cmds, [(1000, 256), (1256, 256), (1512, 88)]);
    let mut back = vec![0u8; 600 * SECTOR];
    sync(&mut ch).read(1000, &mut back).unwrap();
    assert_eq!(back, data);
    assert!(ch.idle());
}

#[test]
fn flush_is_flush_cache_ext() {
    let mut ch = AtaChannel::probe(FakeBus::new(Some(64), None), "ata0", TIMEOUT);
    sync(&mut ch).flush().unwrap();
    assert_eq!(
        ch.bus.commands.last().map(|c| c.0),
        Some(cmd::FLUSH_CACHE_EXT)
    );
}

#[test]
fn device_errors_and_timeouts_complete_the_request() {
    let mut ch = AtaChannel::probe(FakeBus::new(Some(64), None), "ata0", TIMEOUT);
    ch.bus.fail_lba = Some(10);
    let mut b = vec![0u8; 8 * SECTOR];
    assert_eq!(
        sync(&mut ch).read(6, &mut b),
        Err(IoError::Device {
            lba: 10,
            status: 0x4140
        })
    );
    assert_eq!(ch.errors, 1);
    ch.bus.fail_lba = None;
    sync(&mut ch).read(6, &mut b).unwrap();
    ch.bus.hang = true;
    ch.bus.latency = 0;
    ch.submit(
        0,
        Request {
            tag: 1,
            op: Op::Flush,
            lba: 0,
            buf: Vec::new(),
        },
    )
    .unwrap();
    ch.bus.hang = true;
    let c = (0..100_000).find_map(|_| ch.poll()).unwrap();
    assert_eq!(c.1.result, Err(IoError::Timeout { lba: 0 }));
    assert_eq!((ch.timeouts, ch.bus.resets), (1, 1));
    // The channel works again after the reset.
    sync(&mut ch).write(0, &[1; SECTOR]).unwrap();
}

#[test]
fn malformed_submissions_come_back() {
    let mut ch = AtaChannel::probe(FakeBus::new(Some(64), None), "ata0", TIMEOUT);
    let r = |lba, n| Request {
        tag: 0,
        op: Op::Read,
        lba,
        buf: vec![0; n],
    };
    assert!(ch.submit(0, r(63, 2 * SECTOR)).is_err());
    assert!(ch.submit(0, r(0, 100)).is_err());
    assert!(ch.submit(1, r(0, SECTOR)).is_err());
    for _ in 0..QUEUE_DEPTH {
        ch.submit(0, r(0, SECTOR)).unwrap();
    }
    assert!(ch.submit(0, r(0, SECTOR)).is_err());
    let mut done = 0;
    for _ in 0..100_000 {
        if ch.poll().is_some() {
            done += 1;
        }
    }
    assert_eq!(done, QUEUE_DEPTH);
    assert!(ch.idle());
    let mut s = sync(&mut ch);
    assert_eq!(
        s.read(64, &mut [0; SECTOR]),
        Err(IoError::OutOfRange {
            lba: 64,
            sectors: 1,
            device_sectors: 64
        })
    );
}

#[test]
fn a_store_on_an_ata_drive() {
    let mut ch = AtaChannel::probe(FakeBus::new(None, Some(8192)), "ata0", TIMEOUT);
    let mut io = sync(&mut ch);
    let region = Store::locate(&mut io).unwrap();
    let mut s = Store::format(&mut io, region, 8, [3; 16]).unwrap();
    s.create(&mut io, "vm-disk", 64 * 1024).unwrap();
    let o = Store::open_drive(&mut io).unwrap();
    assert_eq!(o.header(), s.header());
    let flushes = ch
        .bus
        .commands
        .iter()
        .filter(|c| c.0 == cmd::FLUSH_CACHE_EXT)
        .count();
    assert_eq!(
        flushes, 4,
        "format: 2 header commits; create: zeroing + header"
    );
}
