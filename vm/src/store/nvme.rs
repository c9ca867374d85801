//! NVMe driver logic for one controller, independent of the hardware: the kernel supplies
//! the controller's registers (BAR0) through [`NvmeRegs`] and DMA-able pages through
//! [`DmaMemory`]. Reference: NVM Express Base Specification 2.0 (§3.1 registers, §3.5
//! controller initialization, §4.1-4.2 queue entries, §5 admin commands) and the NVM
//! Command Set Specification 1.0 (§3 Read/Write/Flush, §4.1.5 Identify Namespace).
//!
//! One admin queue pair and one I/O queue pair, polled (no interrupts). At most one I/O
//! command is in flight; each moves at most [`BUFFER_BYTES`] bytes, and never more than the
//! controller's MDTS (Identify Controller byte 77, in units of CAP.MPSMIN; NVMe 1.4 §5.15.2),
//! through a contiguous bounce buffer described by PRP1, PRP2 and a PRP list page ([`prp`],
//! NVMe 1.4 §4.3), so no guest or heap buffer is ever handed to the device. Each
//! [`NvmeController::poll`] looks at the completion queue once.

use super::block::{admit, BlockDevice, Completion, DriveInfo, Op, Request, Transfers};
use super::error::IoError;
use super::header::SECTOR;
use alloc::collections::VecDeque;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

mod command;
pub mod prp;

pub use command::*;

/// The memory page size used (CC.MPS = 0: 4 KiB).
pub const PAGE: usize = 4096;
/// The bounce buffer: the largest request the store disks make (64 KiB, 16 pages).
pub const BUFFER_BYTES: usize = 64 * 1024;
/// Identify Controller: MDTS, the maximum data transfer size, a power of two in units of
/// the minimum memory page size (CAP.MPSMIN); 0 = no limit (NVMe 1.4 §5.15.2, Figure 247).
const ID_MDTS: usize = 77;
/// Entries of each queue (admin and I/O).
pub const QUEUE_ENTRIES: u16 = 16;

/// Controller registers (NVMe 2.0 §3.1.3, Figure 33), byte offsets in BAR0.
pub mod reg {
    pub const CAP: u64 = 0x00;
    pub const VS: u64 = 0x08;
    pub const CC: u64 = 0x14;
    pub const CSTS: u64 = 0x1C;
    pub const AQA: u64 = 0x24;
    pub const ASQ: u64 = 0x28;
    pub const ACQ: u64 = 0x30;
    /// Doorbells start here (§3.1.3.23): SQ y tail at 0x1000 + 2y·stride, CQ y head at
    /// 0x1000 + (2y+1)·stride, stride = 4 << CAP.DSTRD.
    pub const DOORBELLS: u64 = 0x1000;
}

/// CC fields (§3.1.3.5): EN, I/O SQ entry size 2^6 = 64, I/O CQ entry size 2^4 = 16.
const CC_EN: u32 = 1;
const CC_IOSQES: u32 = 6 << 16;
const CC_IOCQES: u32 = 4 << 20;
/// CSTS (§3.1.3.6): ready, controller fatal status.
const CSTS_RDY: u32 = 1;
const CSTS_CFS: u32 = 2;

/// Identify CNS values (§5.17.1, Figure 273).
const CNS_NAMESPACE: u32 = 0x00;
const CNS_CONTROLLER: u32 = 0x01;

/// A controller's registers.
pub trait NvmeRegs {
    fn read32(&mut self, offset: u64) -> u32;
    fn write32(&mut self, offset: u64, value: u32);
    fn read64(&mut self, offset: u64) -> u64 {
        u64::from(self.read32(offset)) | u64::from(self.read32(offset + 4)) << 32
    }
    fn write64(&mut self, offset: u64, value: u64) {
        self.write32(offset, value as u32);
        self.write32(offset + 4, (value >> 32) as u32);
    }
    /// A monotonic tick count (the TSC), for timeouts.
    fn now(&mut self) -> u64;
}

/// Physical memory the controller reads and writes (pages given at creation).
pub trait DmaMemory {
    fn read(&mut self, phys: u64, out: &mut [u8]);
    fn write(&mut self, phys: u64, data: &[u8]);
}

/// The pages the driver needs, each [`PAGE`] bytes, physically addressed and aligned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pages {
    pub admin_sq: u64,
    pub admin_cq: u64,
    pub io_sq: u64,
    pub io_cq: u64,
    /// Identify data.
    pub data: u64,
    /// The PRP list page of the command in flight.
    pub prp_list: u64,
    /// The I/O bounce buffer: [`BUFFER_BYTES`], physically contiguous, page aligned.
    pub buffer: u64,
}

/// Why a controller is not used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NvmeError {
    /// CAP says the controller does not implement the NVM command set (CAP.CSS bit 0).
    NoNvmCommandSet,
    /// CAP.MPSMIN above 4 KiB.
    PageSize {
        min: u64,
    },
    /// CSTS.RDY did not reach the wanted value within CAP.TO.
    NotReady {
        enable: bool,
    },
    /// CSTS.CFS: the controller reported a fatal error.
    Fatal,
    /// An admin command failed or timed out.
    Admin {
        opcode: u8,
        status: u16,
    },
    AdminTimeout {
        opcode: u8,
    },
    /// The driver's bounce buffer or list page breaks the PRP rules.
    Memory(prp::PrpError),
}

impl core::fmt::Display for NvmeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            NvmeError::NoNvmCommandSet => {
                write!(f, "the controller does not implement the NVM command set")
            }
            NvmeError::PageSize { min } => write!(
                f,
                "the controller's smallest page is {min} bytes (4096 needed)"
            ),
            NvmeError::NotReady { enable } => write!(
                f,
                "the controller did not become {} within its CAP.TO timeout",
                if *enable { "ready" } else { "disabled" }
            ),
            NvmeError::Fatal => write!(f, "the controller reported a fatal status (CSTS.CFS)"),
            NvmeError::Admin { opcode, status } => {
                write!(
                    f,
                    "admin command {opcode:#04x} failed with status {status:#06x}"
                )
            }
            NvmeError::AdminTimeout { opcode } => {
                write!(f, "admin command {opcode:#04x} timed out")
            }
            NvmeError::Memory(e) => write!(f, "its DMA memory cannot be used: {e}"),
        }
    }
}

/// One queue pair's ring state.
#[derive(Debug, Clone, Copy)]
struct QueuePair {
    id: u16,
    sq: u64,
    cq: u64,
    tail: u16,
    head: u16,
    phase: bool,
}

impl QueuePair {
    fn new(id: u16, sq: u64, cq: u64) -> Self {
        QueuePair {
            id,
            sq,
            cq,
            tail: 0,
            head: 0,
            phase: true,
        }
    }
}

/// An I/O command in flight for a request.
#[derive(Debug)]
struct Active {
    unit: usize,
    req: Request,
    /// Bytes of the request done.
    done: usize,
    /// Bytes of the command in flight (0: none).
    cmd_bytes: usize,
    since: u64,
}

/// Identify data of the controller and namespace 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub model: String,
    pub serial: String,
    pub namespaces: u32,
    pub volatile_cache: bool,
    pub ns1_blocks: u64,
    pub ns1_block_size: u32,
    /// MDTS in bytes (`None`: the controller sets no limit).
    pub mdts_bytes: Option<u64>,
    /// ONCS bit 2: Dataset Management (deallocate).
    pub dataset_management: bool,
    /// ONCS bit 3: Write Zeroes.
    pub write_zeroes: bool,
}

/// One NVMe controller with namespace 1 as its unit.
#[derive(Debug)]
pub struct NvmeController<R: NvmeRegs, M: DmaMemory> {
    regs: R,
    mem: M,
    pages: Pages,
    stride: u64,
    timeout: u64,
    admin: QueuePair,
    io: QueuePair,
    next_cid: u16,
    units: Vec<DriveInfo>,
    pub identity: Option<Identity>,
    /// The most bytes one Read/Write moves: the bounce buffer, capped by MDTS.
    pub max_command_bytes: usize,
    queue: VecDeque<(usize, Request)>,
    active: Option<Active>,
    pub timeouts: u64,
    pub errors: u64,
    /// Read and Write commands completed (all DMA).
    pub data_commands: u64,
}

fn ascii(b: &[u8]) -> String {
    let s: String = b
        .iter()
        .map(|&c| match c {
            0 => ' ',
            c if c.is_ascii_graphic() || c == b' ' => c as char,
            _ => '.',
        })
        .collect();
    String::from(s.trim())
}

impl<R: NvmeRegs, M: DmaMemory> NvmeController<R, M> {
    /// Resets and enables the controller (§3.5.1), creates the I/O queue pair and identifies
    /// the controller and namespace 1. `tick_hz` is the rate of [`NvmeRegs::now`]: commands
    /// time out after 2 seconds, the enable and disable after CAP.TO (at least 2 seconds).
    /// `name` is the unit's name (e.g. `nvme0n1`).
    pub fn init(
        mut regs: R,
        mut mem: M,
        pages: Pages,
        name: &str,
        tick_hz: u64,
    ) -> Result<Self, NvmeError> {
        let timeout = tick_hz.saturating_mul(2);
        let cap = regs.read64(reg::CAP);
        if cap & (1 << 37) == 0 {
            return Err(NvmeError::NoNvmCommandSet);
        }
        let mpsmin = 1u64 << (12 + ((cap >> 48) & 0xF));
        if mpsmin > PAGE as u64 {
            return Err(NvmeError::PageSize { min: mpsmin });
        }
        let stride = 4u64 << ((cap >> 32) & 0xF);
        // CAP.TO is in 500 ms units (§3.1.3.1).
        let to = timeout.max((tick_hz / 2).saturating_mul((cap >> 24) & 0xFF));
        prp::prps(pages.buffer, BUFFER_BYTES, pages.prp_list).map_err(NvmeError::Memory)?;
        for p in [
            pages.admin_sq,
            pages.admin_cq,
            pages.io_sq,
            pages.io_cq,
            pages.data,
            pages.prp_list,
        ] {
            mem.write(p, &[0u8; PAGE]);
        }
        let mut c = NvmeController {
            regs,
            mem,
            pages,
            stride,
            timeout,
            admin: QueuePair::new(0, pages.admin_sq, pages.admin_cq),
            io: QueuePair::new(1, pages.io_sq, pages.io_cq),
            next_cid: 0,
            units: Vec::new(),
            identity: None,
            max_command_bytes: BUFFER_BYTES,
            queue: VecDeque::new(),
            active: None,
            timeouts: 0,
            errors: 0,
            data_commands: 0,
        };
        if c.regs.read32(reg::CC) & CC_EN != 0 {
            c.regs.write32(reg::CC, 0);
        }
        c.wait_ready(false, to)?;
        let entries = u32::from(QUEUE_ENTRIES - 1);
        c.regs.write32(reg::AQA, entries << 16 | entries);
        c.regs.write64(reg::ASQ, pages.admin_sq);
        c.regs.write64(reg::ACQ, pages.admin_cq);
        c.regs.write32(reg::CC, CC_EN | CC_IOSQES | CC_IOCQES);
        c.wait_ready(true, to)?;
        // I/O completion queue 1, then submission queue 1 on it (§5.4, §5.5): physically
        // contiguous, interrupts off.
        let qsize = u32::from(QUEUE_ENTRIES - 1) << 16;
        c.admin_cmd(Command {
            opcode: admin::CREATE_IO_CQ,
            prp1: pages.io_cq,
            cdw10: qsize | 1,
            cdw11: 1,
            ..Default::default()
        })?;
        c.admin_cmd(Command {
            opcode: admin::CREATE_IO_SQ,
            prp1: pages.io_sq,
            cdw10: qsize | 1,
            cdw11: 1 << 16 | 1,
            ..Default::default()
        })?;
        c.admin_cmd(Command {
            opcode: admin::IDENTIFY,
            prp1: pages.data,
            cdw10: CNS_CONTROLLER,
            ..Default::default()
        })?;
        let mut id = [0u8; PAGE];
        c.mem.read(pages.data, &mut id);
        let serial = ascii(&id[4..24]);
        let model = ascii(&id[24..64]);
        let namespaces = u32::from_le_bytes([id[516], id[517], id[518], id[519]]);
        let volatile_cache = id[525] & 1 != 0;
        let oncs = u16::from_le_bytes([id[ID_ONCS], id[ID_ONCS + 1]]);
        let mdts_bytes = match id[ID_MDTS] {
            0 => None,
            m => Some(mpsmin.checked_shl(u32::from(m)).unwrap_or(u64::MAX)),
        };
        if let Some(m) = mdts_bytes {
            // At least one block per command; MDTS of one 4 KiB page gives 8 sectors.
            c.max_command_bytes = BUFFER_BYTES.min(m.max(SECTOR as u64) as usize);
        }
        let (mut blocks, mut block_size) = (0, 0);
        if namespaces >= 1 {
            c.admin_cmd(Command {
                opcode: admin::IDENTIFY,
                nsid: 1,
                prp1: pages.data,
                cdw10: CNS_NAMESPACE,
                ..Default::default()
            })?;
            c.mem.read(pages.data, &mut id);
            blocks = u64::from_le_bytes(id[0..8].try_into().unwrap_or([0; 8]));
            let format = usize::from(id[26] & 0xF);
            let lbaf = 128 + 4 * format;
            block_size = 1u32.checked_shl(u32::from(id[lbaf + 2])).unwrap_or(0);
        }
        c.identity = Some(Identity {
            model: model.clone(),
            serial,
            namespaces,
            volatile_cache,
            ns1_blocks: blocks,
            ns1_block_size: block_size,
            mdts_bytes,
            dataset_management: oncs & ONCS_DSM != 0,
            write_zeroes: oncs & ONCS_WRITE_ZEROES != 0,
        });
        if blocks > 0 && block_size == SECTOR as u32 {
            c.units.push(DriveInfo {
                name: String::from(name),
                model,
                sectors: blocks,
                write_cache: volatile_cache,
                flush: true,
                dma: true,
                discard: oncs & ONCS_DSM != 0,
                write_zeroes: oncs & ONCS_WRITE_ZEROES != 0,
            });
        }
        Ok(c)
    }

    fn wait_ready(&mut self, enable: bool, timeout: u64) -> Result<(), NvmeError> {
        let start = self.regs.now();
        loop {
            let s = self.regs.read32(reg::CSTS);
            if s & CSTS_CFS != 0 && enable {
                return Err(NvmeError::Fatal);
            }
            if (s & CSTS_RDY != 0) == enable {
                return Ok(());
            }
            if self.regs.now().wrapping_sub(start) > timeout {
                return Err(NvmeError::NotReady { enable });
            }
        }
    }

    fn cid(&mut self) -> u16 {
        self.next_cid = self.next_cid.wrapping_add(1);
        self.next_cid
    }

    /// Puts `cmd` in a queue's next slot and rings its tail doorbell.
    fn submit_to(&mut self, admin: bool, mut cmd: Command) -> u16 {
        cmd.cid = self.cid();
        let q = if admin { &mut self.admin } else { &mut self.io };
        let at = q.sq + u64::from(q.tail) * SQE as u64;
        q.tail = (q.tail + 1) % QUEUE_ENTRIES;
        let (tail, id) = (q.tail, q.id);
        self.mem.write(at, &cmd.encode());
        self.regs.write32(
            reg::DOORBELLS + 2 * u64::from(id) * self.stride,
            u32::from(tail),
        );
        cmd.cid
    }

    /// The next completion of a queue, if the controller posted one (phase tag, §4.2.4).
    fn reap(&mut self, admin: bool) -> Option<CompletionEntry> {
        let q = if admin { &mut self.admin } else { &mut self.io };
        let at = q.cq + u64::from(q.head) * CQE as u64;
        // The controller may be writing the entry while we look (it runs concurrently): read
        // DW3 (phase tag) alone first, and the whole entry only once the phase says it is
        // posted (§4.2.4), so a half-written entry is never taken.
        let mut dw3 = [0u8; 4];
        self.mem.read(at + 12, &mut dw3);
        if (u32::from_le_bytes(dw3) & (1 << 16) != 0) != q.phase {
            return None;
        }
        let mut b = [0u8; CQE];
        self.mem.read(at, &mut b);
        let e = CompletionEntry::decode(&b);
        q.head = (q.head + 1) % QUEUE_ENTRIES;
        if q.head == 0 {
            q.phase = !q.phase;
        }
        let (head, id) = (q.head, q.id);
        self.regs.write32(
            reg::DOORBELLS + (2 * u64::from(id) + 1) * self.stride,
            u32::from(head),
        );
        Some(e)
    }

    /// Runs one admin command to completion (boot time only, bounded).
    fn admin_cmd(&mut self, cmd: Command) -> Result<(), NvmeError> {
        let opcode = cmd.opcode;
        let cid = self.submit_to(true, cmd);
        let start = self.regs.now();
        loop {
            if let Some(e) = self.reap(true) {
                if e.cid != cid {
                    continue;
                }
                return if e.status == 0 {
                    Ok(())
                } else {
                    Err(NvmeError::Admin {
                        opcode,
                        status: e.status,
                    })
                };
            }
            if self.regs.now().wrapping_sub(start) > self.timeout {
                return Err(NvmeError::AdminTimeout { opcode });
            }
        }
    }

    /// Issues the next I/O command of the active request, or completes it.
    fn next_command(&mut self) -> Option<(usize, Completion)> {
        let a = self.active.as_mut()?;
        let total = match a.req.op.range_sectors() {
            Some(n) => n as usize * SECTOR,
            None => a.req.buf.len(),
        };
        let max = self.max_command_bytes;
        let first = a.cmd_bytes == 0 && a.done == 0;
        let (opcode, bytes) = match a.req.op {
            Op::Flush if first => (nvm::FLUSH, 0),
            Op::Read if a.done < total => (nvm::READ, (total - a.done).min(max)),
            Op::Write if a.done < total => (nvm::WRITE, (total - a.done).min(max)),
            // One range of up to 2^32 - 1 blocks: the whole request in one command.
            Op::Discard(_) if first => (nvm::DATASET_MANAGEMENT, total),
            Op::WriteZeroes(_) if a.done < total => (
                nvm::WRITE_ZEROES,
                (total - a.done).min(WRITE_ZEROES_MAX_BLOCKS * SECTOR),
            ),
            _ => return self.finish(Ok(())),
        };
        let lba = a.req.lba + (a.done / SECTOR) as u64;
        let blocks = (bytes / SECTOR) as u32;
        let cmd = match opcode {
            nvm::FLUSH => Command {
                opcode,
                nsid: 1,
                ..Default::default()
            },
            nvm::DATASET_MANAGEMENT => {
                self.mem.write(self.pages.data, &dsm_range(lba, blocks));
                Command {
                    opcode,
                    nsid: 1,
                    prp1: self.pages.data,
                    cdw10: 0, // one range
                    cdw11: DSM_DEALLOCATE,
                    ..Default::default()
                }
            }
            nvm::WRITE_ZEROES => Command {
                opcode,
                nsid: 1,
                cdw10: lba as u32,
                cdw11: (lba >> 32) as u32,
                cdw12: (blocks - 1) & 0xFFFF,
                ..Default::default()
            },
            _ => {
                // `init` checked the whole buffer against the PRP rules: a part of it passes.
                let Ok(prps) = prp::prps(self.pages.buffer, bytes, self.pages.prp_list) else {
                    return self.finish(Err(IoError::Device { lba, status: 0 }));
                };
                if !prps.list.is_empty() {
                    self.mem
                        .write(self.pages.prp_list, &prp::encode_list(&prps.list));
                }
                if opcode == nvm::WRITE {
                    self.mem
                        .write(self.pages.buffer, &a.req.buf[a.done..a.done + bytes]);
                }
                Command::io(opcode, 0, 1, lba, blocks, &prps)
            }
        };
        self.submit_to(false, cmd);
        let now = self.regs.now();
        let a = self.active.as_mut()?;
        // A flush counts as one byte to wait for.
        a.cmd_bytes = bytes.max(1);
        a.since = now;
        None
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
}

impl<R: NvmeRegs, M: DmaMemory> BlockDevice for NvmeController<R, M> {
    fn units(&self) -> &[DriveInfo] {
        &self.units
    }

    fn submit(&mut self, unit: usize, req: Request) -> Result<(), Request> {
        admit(&mut self.queue, &self.units, unit, req)
    }

    fn poll(&mut self) -> Option<(usize, Completion)> {
        if self.active.is_none() {
            let (unit, req) = self.queue.pop_front()?;
            let since = self.regs.now();
            self.active = Some(Active {
                unit,
                req,
                done: 0,
                cmd_bytes: 0,
                since,
            });
            return self.next_command();
        }
        let Some(e) = self.reap(false) else {
            let a = self.active.as_ref()?;
            if self.regs.now().wrapping_sub(a.since) > self.timeout {
                let lba = a.req.lba + (a.done / SECTOR) as u64;
                self.timeouts += 1;
                return self.finish(Err(IoError::Timeout { lba }));
            }
            return None;
        };
        let a = self.active.as_mut()?;
        if e.status != 0 {
            let lba = a.req.lba + (a.done / SECTOR) as u64;
            return self.finish(Err(IoError::Device {
                lba,
                status: e.status,
            }));
        }
        let n = a.cmd_bytes;
        if a.req.op == Op::Read {
            self.mem
                .read(self.pages.buffer, &mut a.req.buf[a.done..a.done + n]);
        }
        let a = self.active.as_mut()?;
        if matches!(a.req.op, Op::Flush | Op::Discard(_)) {
            return self.finish(Ok(()));
        }
        if matches!(a.req.op, Op::Read | Op::Write) {
            self.data_commands += 1;
        }
        a.done += n;
        a.cmd_bytes = 0;
        self.next_command()
    }

    fn idle(&self) -> bool {
        self.active.is_none() && self.queue.is_empty()
    }

    fn transfers(&self) -> Transfers {
        Transfers {
            dma: self.data_commands,
            pio: 0,
        }
    }
}

/// `"nvme{controller}n1"`.
pub fn unit_name(controller: usize) -> String {
    format!("nvme{controller}n1")
}

#[cfg(test)]
mod tests;
