//! PCI bus-master IDE DMA (the Intel PIIX3/PIIX4 IDE function, and every controller that
//! follows the "Programming Interface for Bus Master IDE Controller", revision 1.0, SFF-8038i):
//! the registers in BAR4, the physical region descriptor (PRD) table and the rules its
//! entries obey. Hardware-independent: the kernel supplies the registers and the memory
//! through [`BusMaster`]; [`prd_table`] is host-tested against the specification's layout.

use alloc::vec::Vec;

/// Bus-master registers of one channel, byte offsets from the channel's block in BAR4
/// (Bus Master IDE rev 1.0 §2, Table 1; PIIX4 datasheet §2.7.1: primary at BMIBA+0,
/// secondary at BMIBA+8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BmReg {
    /// Bus Master IDE Command register (§2.1).
    Command = 0,
    /// Bus Master IDE Status register (§2.2).
    Status = 2,
}

/// The offset of the PRD Table Address register, a 32-bit register (§2.3).
pub const PRD_TABLE_ADDRESS: u16 = 4;
/// The secondary channel's registers start 8 bytes after the primary's (§2, Table 1).
pub const CHANNEL_STRIDE: u16 = 8;

/// Command register bits (§2.1).
pub mod command {
    /// Start/Stop Bus Master: 1 starts the transfer; clearing it stops (aborts) it.
    pub const START: u8 = 0x01;
    /// Read or Write Control: 1 = the bus master writes memory (a device read, READ DMA),
    /// 0 = it reads memory (WRITE DMA).
    pub const WRITE_TO_MEMORY: u8 = 0x08;
}

/// Status register bits (§2.2).
pub mod status {
    /// Bus Master IDE Active: set while the transfer runs, cleared at the end of the last
    /// PRD (or when Start is cleared).
    pub const ACTIVE: u8 = 0x01;
    /// Error: the transfer failed (e.g. a target abort); write 1 to clear.
    pub const ERROR: u8 = 0x02;
    /// Interrupt: the drive raised its interrupt line; write 1 to clear.
    pub const INTERRUPT: u8 = 0x04;
    /// Drive 0 / drive 1 DMA capable (set by firmware, informational).
    pub const DRIVE0_CAPABLE: u8 = 0x20;
    pub const DRIVE1_CAPABLE: u8 = 0x40;
}

/// One PRD entry is 8 bytes (§1.2): the region's physical base (dword 0, bit 0 zero), its
/// byte count (dword 1 bits 15:1; 0 means 64 KiB) and End Of Table (dword 1 bit 31).
pub const PRD_ENTRY_BYTES: usize = 8;
const PRD_EOT: u32 = 1 << 31;
/// A region may not cross a 64 KiB boundary and holds at most 64 KiB (§1.2).
pub const REGION_LIMIT: u64 = 0x1_0000;
/// The PRD table is dword aligned and may not cross a 64 KiB boundary (§1.2, §2.3).
pub const TABLE_ALIGN: u64 = 4;

/// One decoded PRD entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrdEntry {
    pub base: u32,
    /// Bytes, 2..=65536.
    pub bytes: u32,
    pub end_of_table: bool,
}

impl PrdEntry {
    pub fn encode(&self) -> [u8; PRD_ENTRY_BYTES] {
        let mut b = [0u8; PRD_ENTRY_BYTES];
        b[..4].copy_from_slice(&self.base.to_le_bytes());
        // A count of 64 KiB is written as 0 (§1.2).
        let count = self.bytes & 0xFFFF;
        let eot = if self.end_of_table { PRD_EOT } else { 0 };
        b[4..].copy_from_slice(&(count | eot).to_le_bytes());
        b
    }

    pub fn decode(b: &[u8; PRD_ENTRY_BYTES]) -> PrdEntry {
        let base = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        let dw1 = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
        let count = dw1 & 0xFFFE;
        PrdEntry {
            base,
            bytes: if count == 0 { 0x1_0000 } else { count },
            end_of_table: dw1 & PRD_EOT != 0,
        }
    }
}

/// Why a PRD table cannot describe a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrdError {
    /// Nothing to transfer.
    Empty,
    /// The bus master addresses 32 bits only: memory above 4 GiB cannot be used.
    Above4GiB { phys: u64 },
    /// Regions must start at an even address and hold an even number of bytes (§1.2).
    Odd { phys: u64, bytes: u64 },
    /// More regions than the table page holds.
    TooManyEntries { needed: usize, max: usize },
}

impl core::fmt::Display for PrdError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            PrdError::Empty => write!(f, "a DMA transfer of no bytes"),
            PrdError::Above4GiB { phys } => write!(
                f,
                "DMA memory at {phys:#x} is above 4 GiB, out of the IDE bus master's reach"
            ),
            PrdError::Odd { phys, bytes } => write!(
                f,
                "DMA region {phys:#x}+{bytes:#x} is not word aligned (even address and length needed)"
            ),
            PrdError::TooManyEntries { needed, max } => {
                write!(f, "a PRD table of {needed} entries (at most {max} fit)")
            }
        }
    }
}

/// The PRD table for `regions` (physical address, bytes), in order: each region is split at
/// 64 KiB boundaries so no entry crosses one (§1.2), the last entry has End Of Table set.
/// At most `max_entries` entries.
pub fn prd_table(regions: &[(u64, u64)], max_entries: usize) -> Result<Vec<PrdEntry>, PrdError> {
    let mut out = Vec::new();
    for &(phys, bytes) in regions {
        if !phys.is_multiple_of(2) || !bytes.is_multiple_of(2) {
            return Err(PrdError::Odd { phys, bytes });
        }
        let end = phys
            .checked_add(bytes)
            .filter(|&e| e <= 1 << 32)
            .ok_or(PrdError::Above4GiB { phys })?;
        let mut at = phys;
        while at < end {
            let boundary = (at / REGION_LIMIT + 1) * REGION_LIMIT;
            let next = boundary.min(end);
            out.push(PrdEntry {
                base: at as u32,
                bytes: (next - at) as u32,
                end_of_table: false,
            });
            at = next;
        }
    }
    if out.len() > max_entries {
        return Err(PrdError::TooManyEntries {
            needed: out.len(),
            max: max_entries,
        });
    }
    out.last_mut().ok_or(PrdError::Empty)?.end_of_table = true;
    Ok(out)
}

/// The memory a channel's DMA uses: the PRD table's page and a bounce buffer, both below
/// 4 GiB and owned by the driver (no guest or heap buffer is ever handed to the device).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DmaArea {
    /// Physical address of the PRD table (dword aligned, inside one 64 KiB block).
    pub table: u64,
    /// Bytes the table may occupy.
    pub table_bytes: usize,
    /// Physical address and length of the (physically contiguous) bounce buffer.
    pub buffer: u64,
    pub buffer_bytes: usize,
}

impl DmaArea {
    /// Checks the area against the bus master's rules; the most PRD entries it holds.
    pub fn validate(&self) -> Result<usize, PrdError> {
        let max = self.table_bytes / PRD_ENTRY_BYTES;
        let table_end = self.table + self.table_bytes as u64;
        if table_end > 1 << 32 {
            return Err(PrdError::Above4GiB { phys: self.table });
        }
        if !self.table.is_multiple_of(TABLE_ALIGN)
            || self.table / REGION_LIMIT != (table_end - 1) / REGION_LIMIT
        {
            return Err(PrdError::Odd {
                phys: self.table,
                bytes: self.table_bytes as u64,
            });
        }
        prd_table(&[(self.buffer, self.buffer_bytes as u64)], max)?;
        Ok(max)
    }
}

/// A channel's bus-master registers and the memory its DMA uses.
pub trait BusMaster {
    /// The channel's DMA memory (checked with [`DmaArea::validate`] before use).
    fn area(&self) -> DmaArea;
    fn read_bm(&mut self, reg: BmReg) -> u8;
    fn write_bm(&mut self, reg: BmReg, value: u8);
    /// Writes the PRD Table Address register (§2.3).
    fn write_prd_address(&mut self, phys: u32);
    /// Copies `data` into physical memory of the channel's [`DmaArea`].
    fn write_memory(&mut self, phys: u64, data: &[u8]);
    /// Copies physical memory of the channel's [`DmaArea`] into `out`.
    fn read_memory(&mut self, phys: u64, out: &mut [u8]);
}
