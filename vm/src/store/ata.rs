//! ATA driver logic for one IDE channel (two drives), independent of the hardware: the
//! kernel supplies the channel's registers through [`AtaBus`]. References: ATA/ATAPI-6 (T13
//! 1410D) §7 for the register block and the PIO data-in/data-out protocols (§9.7, §9.8), and
//! ACS-3 (T13 2161-D) for the commands and the IDENTIFY DEVICE data (§7.12, Table 45).
//!
//! Commands use 48-bit addressing (READ/WRITE SECTORS EXT, FLUSH CACHE EXT) at most 256
//! sectors each; a request is split into such commands. Each [`AtaChannel::poll`] moves at
//! most [`SECTORS_PER_POLL`] sectors, so its work is bounded; a command that makes no progress
//! for `timeout` ticks fails with [`IoError::Timeout`] and the channel is reset.
//!
//! When the channel has a PCI bus master ([`AtaBus::bus_master`], [`dma`]) and a drive says
//! it supports DMA (IDENTIFY word 49 bit 8), its transfers are READ/WRITE DMA EXT instead:
//! at most the bounce buffer's sectors per command, one PRD table, the data copied between
//! the bounce buffer and the request once per command; the poll only looks at two status
//! registers while the bus master moves the data.

pub mod dma;

use super::block::{admit, BlockDevice, Completion, DriveInfo, Op, Request, Transfers};
use super::error::IoError;
use super::header::SECTOR;
use alloc::collections::VecDeque;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

/// Command block registers (ATA/ATAPI-6 §7.1, Table 13), offsets from the base port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reg {
    Data = 0,
    /// Error (read) / Features (write).
    Error = 1,
    SectorCount = 2,
    LbaLow = 3,
    LbaMid = 4,
    LbaHigh = 5,
    Device = 6,
    /// Status (read) / Command (write).
    Status = 7,
}

/// Status register bits (ATA/ATAPI-6 §7.15).
pub mod status {
    pub const BSY: u8 = 0x80;
    pub const DRDY: u8 = 0x40;
    pub const DF: u8 = 0x20;
    pub const DRQ: u8 = 0x08;
    pub const ERR: u8 = 0x01;
}

/// Command codes (ACS-3 Table B.2).
pub mod cmd {
    pub const IDENTIFY_DEVICE: u8 = 0xEC;
    pub const READ_SECTORS_EXT: u8 = 0x24;
    pub const WRITE_SECTORS_EXT: u8 = 0x34;
    /// READ DMA EXT / WRITE DMA EXT: the data moves by the bus master (ACS-3 Table B.2).
    pub const READ_DMA_EXT: u8 = 0x25;
    pub const WRITE_DMA_EXT: u8 = 0x35;
    /// DATA SET MANAGEMENT (ACS-3, "DATA SET MANAGEMENT - 06h"): a DMA data-out of 512-byte blocks of LBA range
    /// entries; Features bit 0 = TRIM.
    pub const DATA_SET_MANAGEMENT: u8 = 0x06;
    pub const FLUSH_CACHE_EXT: u8 = 0xEA;
}

/// DATA SET MANAGEMENT Features bit 0: TRIM (ACS-3, DATA SET MANAGEMENT, Features field).
pub const DSM_TRIM: u16 = 0x0001;
/// One LBA range entry (ACS-3, DATA SET MANAGEMENT, "LBA Range Entry"): bits 47:0 the LBA, bits 63:48 the sector count
/// (1..=65535; 0 = unused entry); 64 entries per 512-byte block.
pub const TRIM_ENTRY_MAX: u32 = 0xFFFF;
const TRIM_ENTRIES_PER_BLOCK: usize = SECTOR / 8;

/// The one 512-byte block of LBA range entries that trims `sectors` from `lba`, or `None`
/// when it needs more than one block (more than 64 x 65535 sectors) or the LBA needs more
/// than 48 bits.
pub fn trim_block(lba: u64, sectors: u32) -> Option<[u8; SECTOR]> {
    let entries = sectors.div_ceil(TRIM_ENTRY_MAX) as usize;
    if entries > TRIM_ENTRIES_PER_BLOCK || lba + u64::from(sectors) > 1 << 48 {
        return None;
    }
    let mut b = [0u8; SECTOR];
    let (mut at, mut left) = (lba, sectors);
    for e in b.as_chunks_mut::<8>().0.iter_mut().take(entries) {
        let n = left.min(TRIM_ENTRY_MAX);
        *e = (at | u64::from(n) << 48).to_le_bytes();
        at += u64::from(n);
        left -= n;
    }
    Some(b)
}

/// Device register: bit 6 selects LBA addressing, bit 4 the drive (ATA/ATAPI-6 §7.9); bits 7
/// and 5 are obsolete and set for old drives.
const DEVICE_LBA: u8 = 0xE0;
const DEVICE_SLAVE: u8 = 0x10;
/// Device control register: nIEN (no interrupts, we poll) and SRST (ATA/ATAPI-6 §7.8).
pub const CONTROL_NIEN: u8 = 0x02;
pub const CONTROL_SRST: u8 = 0x04;
/// The most sectors one command moves here (a count of 256; LBA48 allows 65536).
pub const SECTORS_PER_COMMAND: u64 = 256;
/// The most sectors one poll moves.
pub const SECTORS_PER_POLL: u64 = 16;

/// One IDE channel's registers.
pub trait AtaBus {
    fn read(&mut self, reg: Reg) -> u8;
    fn write(&mut self, reg: Reg, value: u8);
    /// The alternate status register (reading it has no side effect).
    fn alt_status(&mut self) -> u8;
    fn control(&mut self, value: u8);
    /// Reads 16-bit words from the data register.
    fn read_data(&mut self, words: &mut [u16]);
    /// Writes 16-bit words to the data register.
    fn write_data(&mut self, words: &[u16]);
    /// A monotonic tick count (the TSC), for timeouts.
    fn now(&mut self) -> u64;
    /// The channel's bus-master DMA engine and memory, when its controller has one (a PCI
    /// IDE function with programming interface bit 7 and BAR4, PCI IDE Controller
    /// Specification 1.0 §2.1); `None`: PIO only.
    fn bus_master(&mut self) -> Option<&mut dyn dma::BusMaster> {
        None
    }
}

/// IDENTIFY DEVICE data decoded (ACS-3 §7.12.7, Table 45).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identify {
    pub model: String,
    pub sectors: u64,
    pub lba48: bool,
    pub flush_ext: bool,
    pub write_cache: bool,
    /// Logical sector size in bytes (words 106, 117-118).
    pub sector_size: u32,
    /// Word 49 bit 8: DMA supported.
    pub dma: bool,
    /// Word 169 bit 0: DATA SET MANAGEMENT with the TRIM bit supported (ACS-3 Table 45).
    pub trim: bool,
}

/// Why a drive was found but is not used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unusable {
    /// Word 0 bit 15: an ATAPI (packet) device, e.g. a CD-ROM.
    Packet,
    /// No 48-bit addressing (word 83 bit 10).
    NoLba48,
    /// Logical sectors other than 512 bytes.
    SectorSize(u32),
}

impl core::fmt::Display for Unusable {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Unusable::Packet => write!(f, "a packet (ATAPI) device, not a disk"),
            Unusable::NoLba48 => write!(f, "no 48-bit addressing (ATA-6 or later needed)"),
            Unusable::SectorSize(s) => {
                write!(f, "{s}-byte logical sectors (only 512 is supported)")
            }
        }
    }
}

impl Identify {
    pub fn parse(w: &[u16; 256]) -> Result<Identify, Unusable> {
        if w[0] & 0x8000 != 0 {
            return Err(Unusable::Packet);
        }
        let mut model = String::new();
        for &x in &w[27..47] {
            for b in x.to_be_bytes() {
                model.push(if b.is_ascii_graphic() || b == b' ' {
                    b as char
                } else {
                    '.'
                });
            }
        }
        let model = String::from(model.trim());
        let lba48 = w[83] & (1 << 10) != 0;
        if !lba48 {
            return Err(Unusable::NoLba48);
        }
        let sectors = w[100..104]
            .iter()
            .rev()
            .fold(0u64, |a, &x| (a << 16) | u64::from(x));
        // Word 106: bit 14 set, bit 15 clear = valid; bit 12 = logical sector longer than 256 words.
        let sector_size = if w[106] & 0xC000 == 0x4000 && w[106] & (1 << 12) != 0 {
            ((u32::from(w[118]) << 16) | u32::from(w[117])) * 2
        } else {
            SECTOR as u32
        };
        if sector_size != SECTOR as u32 {
            return Err(Unusable::SectorSize(sector_size));
        }
        Ok(Identify {
            model,
            sectors,
            lba48,
            flush_ext: w[83] & (1 << 13) != 0,
            write_cache: w[82] & (1 << 5) != 0,
            sector_size,
            dma: w[49] & (1 << 8) != 0,
            trim: w[169] & 1 != 0,
        })
    }
}

/// The taskfile of a 48-bit command: (register, value) in the order written; the "previous"
/// (high) bytes go first into each two-deep register (ATA/ATAPI-6 §6.20).
pub fn lba48_taskfile(slave: bool, lba: u64, count: u16) -> [(Reg, u8); 9] {
    let b = lba.to_le_bytes();
    let [clo, chi] = count.to_le_bytes();
    [
        (Reg::Device, 0x40 | if slave { DEVICE_SLAVE } else { 0 }),
        (Reg::SectorCount, chi),
        (Reg::LbaLow, b[3]),
        (Reg::LbaMid, b[4]),
        (Reg::LbaHigh, b[5]),
        (Reg::SectorCount, clo),
        (Reg::LbaLow, b[0]),
        (Reg::LbaMid, b[1]),
        (Reg::LbaHigh, b[2]),
    ]
}

/// A command in flight.
#[derive(Debug)]
struct Active {
    unit: usize,
    req: Request,
    /// Sectors of the request done so far.
    done: u64,
    /// Sectors of the current command not yet transferred.
    left_in_cmd: u64,
    /// The current command moves its data by the bus master.
    dma: bool,
    /// Tick of the last progress.
    since: u64,
}

/// One IDE channel: up to two drives, one command at a time.
#[derive(Debug)]
pub struct AtaChannel<B: AtaBus> {
    bus: B,
    /// "ata0", "ata1", ...
    name: String,
    units: Vec<DriveInfo>,
    /// Which drive (false: master, true: slave) each unit is.
    slave: Vec<bool>,
    /// Whether each unit's IDENTIFY says TRIM (word 169 bit 0), for the boot report.
    pub trim: Vec<bool>,
    queue: VecDeque<(usize, Request)>,
    active: Option<Active>,
    timeout: u64,
    /// The bus master's memory and the PRD entries its table page holds, if DMA is usable.
    dma: Option<(dma::DmaArea, usize)>,
    /// Why the channel's bus master is not used (for the boot report), if it has one.
    pub dma_unusable: Option<dma::PrdError>,
    /// Drives seen but not used, with why (for the boot report).
    pub skipped: Vec<(String, Unusable)>,
    pub timeouts: u64,
    pub errors: u64,
    pub transfers: Transfers,
}

fn words_to_bytes(w: &[u16], out: &mut [u8]) {
    for (o, x) in out.as_chunks_mut::<2>().0.iter_mut().zip(w) {
        *o = x.to_le_bytes();
    }
}

impl<B: AtaBus> AtaChannel<B> {
    /// Probes both drives of a channel with IDENTIFY DEVICE (polled, each step bounded by
    /// `timeout` ticks). A floating bus (status 0xFF) or an absent drive (status 0) gives a
    /// channel without units.
    pub fn probe(mut bus: B, name: &str, timeout: u64) -> Self {
        bus.control(CONTROL_NIEN);
        let (dma, dma_unusable) = match bus.bus_master().map(|bm| {
            let area = bm.area();
            area.validate().map(|max| (area, max))
        }) {
            Some(Ok(d)) => (Some(d), None),
            Some(Err(e)) => (None, Some(e)),
            None => (None, None),
        };
        let mut ch = AtaChannel {
            bus,
            name: String::from(name),
            units: Vec::new(),
            slave: Vec::new(),
            trim: Vec::new(),
            queue: VecDeque::new(),
            active: None,
            timeout,
            dma,
            dma_unusable,
            skipped: Vec::new(),
            timeouts: 0,
            errors: 0,
            transfers: Transfers::default(),
        };
        for slave in [false, true] {
            let which = format!("{name}-{}", if slave { "slave" } else { "master" });
            if let Some(words) = ch.identify(slave) {
                match Identify::parse(&words) {
                    Ok(id) => {
                        ch.units.push(DriveInfo {
                            name: which,
                            model: id.model,
                            sectors: id.sectors,
                            write_cache: id.write_cache,
                            flush: id.flush_ext,
                            dma: id.dma && ch.dma.is_some(),
                            // TRIM is a DMA data-out: only with a bus master. TRIMmed
                            // sectors need not read as zeroes (ACS-3 word 69 bits 14/5 are
                            // not relied on): WRITE_ZEROES is written as zeroes.
                            discard: id.trim && id.dma && ch.dma.is_some(),
                            write_zeroes: false,
                        });
                        ch.trim.push(id.trim);
                        ch.slave.push(slave);
                    }
                    Err(u) => ch.skipped.push((which, u)),
                }
            }
        }
        ch
    }

    /// Waits (bounded) until BSY clears; the last status, or `None` on timeout.
    fn wait_not_busy(&mut self) -> Option<u8> {
        let start = self.bus.now();
        loop {
            let s = self.bus.alt_status();
            if s & status::BSY == 0 {
                return Some(s);
            }
            if self.bus.now().wrapping_sub(start) > self.timeout {
                return None;
            }
        }
    }

    fn identify(&mut self, slave: bool) -> Option<[u16; 256]> {
        if self.bus.alt_status() == 0xFF {
            return None; // floating bus: no controller or no drives
        }
        self.bus.write(
            Reg::Device,
            DEVICE_LBA | if slave { DEVICE_SLAVE } else { 0 },
        );
        self.wait_not_busy()?;
        for r in [Reg::SectorCount, Reg::LbaLow, Reg::LbaMid, Reg::LbaHigh] {
            self.bus.write(r, 0);
        }
        self.bus.write(Reg::Status, cmd::IDENTIFY_DEVICE);
        if self.bus.alt_status() == 0 {
            return None; // no drive
        }
        let s = self.wait_not_busy()?;
        // A packet device aborts IDENTIFY DEVICE with its signature in LBA mid/high
        // (ATA/ATAPI-6 §9.12): report it as such rather than as absent.
        if s & status::ERR != 0 || s & status::DRQ == 0 {
            let (mid, high) = (self.bus.read(Reg::LbaMid), self.bus.read(Reg::LbaHigh));
            if (mid, high) == (0x14, 0xEB) {
                let mut w = [0u16; 256];
                w[0] = 0x8000;
                return Some(w);
            }
            return None;
        }
        let mut w = [0u16; 256];
        self.bus.read_data(&mut w);
        let _ = self.bus.read(Reg::Status);
        Some(w)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Issues the next command of the active request, or completes it.
    fn start_command(&mut self) -> Option<(usize, Completion)> {
        if matches!(self.active.as_ref()?.req.op, Op::Discard(_)) {
            return self.start_trim();
        }
        let a = self.active.as_mut()?;
        let total = (a.req.buf.len() / SECTOR) as u64;
        let slave = self.slave[a.unit];
        let dma = match (a.req.op, self.dma) {
            (Op::Read | Op::Write, Some(d)) if self.units[a.unit].dma => Some(d),
            _ => None,
        };
        let command = match (a.req.op, dma.is_some()) {
            (Op::Flush, _) if a.done == 0 && a.left_in_cmd == 0 => cmd::FLUSH_CACHE_EXT,
            (Op::Read, false) if a.done < total => cmd::READ_SECTORS_EXT,
            (Op::Write, false) if a.done < total => cmd::WRITE_SECTORS_EXT,
            (Op::Read, true) if a.done < total => cmd::READ_DMA_EXT,
            (Op::Write, true) if a.done < total => cmd::WRITE_DMA_EXT,
            // `admit` refuses them (the units do not offer them); never reported done.
            // (A discard on a TRIM drive went to `start_trim`.)
            (Op::Discard(_) | Op::WriteZeroes(_), _) => {
                let op = a.req.op;
                return self.finish(Err(IoError::Unsupported { op }));
            }
            _ => return self.finish(Ok(())),
        };
        let mut count = (total - a.done).min(SECTORS_PER_COMMAND);
        let lba = a.req.lba + a.done;
        if let Some((area, max_entries)) = dma {
            count = count.min((area.buffer_bytes / SECTOR) as u64);
            let at = a.done as usize * SECTOR;
            let bytes = count as usize * SECTOR;
            let write = a.req.op == Op::Write;
            let table = match dma::prd_table(&[(area.buffer, bytes as u64)], max_entries) {
                Ok(t) => t,
                // `validate` checked the whole buffer at probe: a part of it cannot fail.
                Err(_) => return self.finish(Err(IoError::Device { lba, status: 0 })),
            };
            let direction = if write {
                0
            } else {
                dma::command::WRITE_TO_MEMORY
            };
            let bm = self.bus.bus_master()?;
            // Bus Master IDE rev 1.0 §3 (standard programming sequence): the PRD table and
            // the data in memory, the table's address, the direction, Interrupt and Error
            // cleared (write 1); then the drive's command; then Start.
            let mut raw = Vec::with_capacity(table.len() * dma::PRD_ENTRY_BYTES);
            for e in &table {
                raw.extend_from_slice(&e.encode());
            }
            bm.write_memory(area.table, &raw);
            if write {
                bm.write_memory(area.buffer, &a.req.buf[at..at + bytes]);
            }
            bm.write_bm(dma::BmReg::Command, 0);
            bm.write_bm(
                dma::BmReg::Status,
                dma::status::ERROR | dma::status::INTERRUPT,
            );
            bm.write_prd_address(area.table as u32);
            bm.write_bm(dma::BmReg::Command, direction);
            self.issue(slave, lba, count, 0, command);
            if let Some(bm) = self.bus.bus_master() {
                bm.write_bm(dma::BmReg::Command, direction | dma::command::START);
            }
        } else {
            self.issue(slave, lba, count, 0, command);
        }
        let now = self.bus.now();
        let a = self.active.as_mut()?;
        // A flush has no data phase; mark it as one pseudo-sector to wait for.
        a.left_in_cmd = if command == cmd::FLUSH_CACHE_EXT {
            1
        } else {
            count
        };
        a.dma = dma.is_some() && command != cmd::FLUSH_CACHE_EXT;
        a.since = now;
        None
    }

    /// A discard: DATA SET MANAGEMENT with TRIM, one block of range entries moved by the
    /// bus master (a DMA data-out, ACS-3 "DATA SET MANAGEMENT - 06h"); done once that command completes.
    fn start_trim(&mut self) -> Option<(usize, Completion)> {
        let a = self.active.as_mut()?;
        let Op::Discard(n) = a.req.op else {
            return None;
        };
        if a.done > 0 {
            return self.finish(Ok(()));
        }
        let (lba, slave) = (a.req.lba, self.slave[a.unit]);
        let block = match (self.dma, self.units[a.unit].discard) {
            (Some(_), true) => trim_block(lba, n),
            _ => None,
        };
        let (Some((area, max_entries)), Some(block)) = (self.dma, block) else {
            let op = a.req.op;
            return self.finish(Err(IoError::Unsupported { op }));
        };
        let Ok(table) = dma::prd_table(&[(area.buffer, SECTOR as u64)], max_entries) else {
            return self.finish(Err(IoError::Device { lba, status: 0 }));
        };
        let bm = self.bus.bus_master()?;
        let mut raw = Vec::with_capacity(table.len() * dma::PRD_ENTRY_BYTES);
        for e in &table {
            raw.extend_from_slice(&e.encode());
        }
        bm.write_memory(area.table, &raw);
        bm.write_memory(area.buffer, &block);
        bm.write_bm(dma::BmReg::Command, 0);
        bm.write_bm(
            dma::BmReg::Status,
            dma::status::ERROR | dma::status::INTERRUPT,
        );
        bm.write_prd_address(area.table as u32);
        // Count = 1 block of entries, LBA 0 (ACS-3, DATA SET MANAGEMENT inputs).
        self.issue(slave, 0, 1, DSM_TRIM, cmd::DATA_SET_MANAGEMENT);
        if let Some(bm) = self.bus.bus_master() {
            bm.write_bm(dma::BmReg::Command, dma::command::START);
        }
        let now = self.bus.now();
        let a = self.active.as_mut()?;
        a.left_in_cmd = 1;
        a.dma = true;
        a.since = now;
        None
    }

    /// Writes a 48-bit command's taskfile (and Features, when not 0: two-deep too, the high
    /// byte first) and command register, then waits the 400 ns after which the status is
    /// valid (ATA/ATAPI-6 §9.1): four reads of the alternate status take at least that long.
    fn issue(&mut self, slave: bool, lba: u64, count: u64, features: u16, command: u8) {
        if features != 0 {
            let [lo, hi] = features.to_le_bytes();
            self.bus.write(Reg::Error, hi);
            self.bus.write(Reg::Error, lo);
        }
        let tf = lba48_taskfile(slave, lba, (count % 65536) as u16);
        for (r, v) in tf {
            self.bus.write(r, v);
        }
        self.bus.write(Reg::Status, command);
        for _ in 0..4 {
            let _ = self.bus.alt_status();
        }
    }

    /// Stops the bus master and clears its Interrupt and Error bits (Bus Master IDE rev 1.0
    /// §3: software clears Start when the transfer is done or abandoned).
    fn stop_dma(&mut self) {
        if let Some(bm) = self.bus.bus_master() {
            bm.write_bm(dma::BmReg::Command, 0);
            bm.write_bm(
                dma::BmReg::Status,
                dma::status::ERROR | dma::status::INTERRUPT,
            );
        }
    }

    /// A DMA command in flight: done when the bus master is no longer active and the drive
    /// neither busy nor asking for data (Bus Master IDE rev 1.0 §2.2: Active clears at the
    /// end of the last PRD); then its data is copied out of the bounce buffer.
    fn poll_dma(&mut self) -> Option<(usize, Completion)> {
        let s = self.bus.alt_status();
        let bms = self
            .bus
            .bus_master()
            .map_or(0, |bm| bm.read_bm(dma::BmReg::Status));
        let a = self.active.as_ref()?;
        if s & (status::ERR | status::DF) != 0 || bms & dma::status::ERROR != 0 {
            self.stop_dma();
            let s = self.bus.read(Reg::Status);
            return self.fail(s);
        }
        if s & (status::BSY | status::DRQ) != 0 || bms & dma::status::ACTIVE != 0 {
            if self.bus.now().wrapping_sub(a.since) > self.timeout {
                let lba = a.req.lba + a.done;
                self.timeouts += 1;
                self.stop_dma();
                self.reset();
                return self.finish(Err(IoError::Timeout { lba }));
            }
            return None;
        }
        self.stop_dma();
        let _ = self.bus.read(Reg::Status);
        if matches!(self.active.as_ref()?.req.op, Op::Read | Op::Write) {
            self.transfers.dma += 1;
        }
        let (area, _) = self.dma?;
        let a = self.active.as_mut()?;
        let at = a.done as usize * SECTOR;
        let bytes = a.left_in_cmd as usize * SECTOR;
        if a.req.op == Op::Read {
            let out = &mut a.req.buf[at..at + bytes];
            self.bus.bus_master()?.read_memory(area.buffer, out);
        }
        let a = self.active.as_mut()?;
        a.done += a.left_in_cmd;
        a.left_in_cmd = 0;
        a.dma = false;
        self.start_command()
    }

    fn finish(&mut self, result: Result<(), IoError>) -> Option<(usize, Completion)> {
        let a = self.active.take()?;
        if result.is_err() {
            self.errors += 1;
        }
        Some((
            a.unit,
            Completion {
                tag: a.req.tag,
                op: a.req.op,
                lba: a.req.lba,
                buf: a.req.buf,
                result,
            },
        ))
    }

    fn fail(&mut self, s: u8) -> Option<(usize, Completion)> {
        let err = self.bus.read(Reg::Error);
        let lba = self.active.as_ref().map_or(0, |a| a.req.lba + a.done);
        self.finish(Err(IoError::Device {
            lba,
            status: u16::from(s) << 8 | u16::from(err),
        }))
    }

    /// Resets the channel after a timeout (SRST, ATA/ATAPI-6 §9.2).
    fn reset(&mut self) {
        self.bus.control(CONTROL_NIEN | CONTROL_SRST);
        self.bus.control(CONTROL_NIEN);
    }
}

impl<B: AtaBus> BlockDevice for AtaChannel<B> {
    fn units(&self) -> &[DriveInfo] {
        &self.units
    }

    fn submit(&mut self, unit: usize, req: Request) -> Result<(), Request> {
        admit(&mut self.queue, &self.units, unit, req)
    }

    fn poll(&mut self) -> Option<(usize, Completion)> {
        if self.active.is_none() {
            let (unit, req) = self.queue.pop_front()?;
            let since = self.bus.now();
            self.active = Some(Active {
                unit,
                req,
                done: 0,
                left_in_cmd: 0,
                dma: false,
                since,
            });
            return self.start_command();
        }
        if self.active.as_ref()?.dma {
            return self.poll_dma();
        }
        let mut moved = 0;
        loop {
            let s = self.bus.alt_status();
            let a = self.active.as_ref()?;
            if s & status::BSY != 0 {
                if self.bus.now().wrapping_sub(a.since) > self.timeout {
                    let lba = a.req.lba + a.done;
                    self.timeouts += 1;
                    self.reset();
                    return self.finish(Err(IoError::Timeout { lba }));
                }
                return None;
            }
            if s & (status::ERR | status::DF) != 0 {
                let s = self.bus.read(Reg::Status);
                return self.fail(s);
            }
            let op = a.req.op;
            if op == Op::Flush || (op == Op::Write && a.left_in_cmd == 0) {
                // Command complete: the flush finished, or the last written sector is in.
                let _ = self.bus.read(Reg::Status);
                let a = self.active.as_mut()?;
                a.left_in_cmd = 0;
                if op == Op::Flush {
                    return self.finish(Ok(()));
                }
                self.transfers.pio += 1;
                return self.start_command();
            }
            if s & status::DRQ == 0 {
                return None;
            }
            if moved == SECTORS_PER_POLL {
                return None;
            }
            let now = self.bus.now();
            let a = self.active.as_mut()?;
            let at = a.done as usize * SECTOR;
            let mut w = [0u16; SECTOR / 2];
            match op {
                Op::Read => {
                    self.bus.read_data(&mut w);
                    words_to_bytes(&w, &mut a.req.buf[at..at + SECTOR]);
                }
                _ => {
                    for (x, b) in w
                        .iter_mut()
                        .zip(a.req.buf[at..at + SECTOR].as_chunks::<2>().0)
                    {
                        *x = u16::from_le_bytes(*b);
                    }
                    self.bus.write_data(&w);
                }
            }
            a.done += 1;
            a.left_in_cmd -= 1;
            a.since = now;
            moved += 1;
            if op == Op::Read && a.left_in_cmd == 0 {
                let _ = self.bus.read(Reg::Status);
                self.transfers.pio += 1;
                return self.start_command();
            }
        }
    }

    fn idle(&self) -> bool {
        self.active.is_none() && self.queue.is_empty()
    }

    fn transfers(&self) -> Transfers {
        self.transfers
    }
}

#[cfg(test)]
mod tests;
