//! NVMe command layouts: the admin and NVM opcodes, the 64-byte submission queue entry, the
//! 16-byte completion queue entry and the Dataset Management range (NVMe Base 2.0 §4.1-4.2,
//! §5; NVM Command Set 1.0 §3), independent of the controller logic in `super`.

use super::prp;

/// Submission and completion queue entry sizes (§4.1, §4.2).
pub const SQE: usize = 64;
pub const CQE: usize = 16;

/// Admin opcodes (§5, Figure 138).
pub mod admin {
    pub const CREATE_IO_SQ: u8 = 0x01;
    pub const CREATE_IO_CQ: u8 = 0x05;
    pub const IDENTIFY: u8 = 0x06;
}
/// NVM command set opcodes (NVM Command Set 1.0 §3, Figure 17).
pub mod nvm {
    pub const FLUSH: u8 = 0x00;
    pub const WRITE: u8 = 0x01;
    pub const READ: u8 = 0x02;
    /// Write Zeroes (NVM Command Set 1.0 §3.2.8): CDW10/11 SLBA, CDW12 bits 15:0 NLB.
    pub const WRITE_ZEROES: u8 = 0x08;
    /// Dataset Management (§3.2.3): CDW10 bits 7:0 NR (ranges - 1), CDW11 bit 2 AD, the
    /// ranges (16 bytes each) at PRP1.
    pub const DATASET_MANAGEMENT: u8 = 0x09;
}
/// Identify Controller ONCS, optional NVM command support (bytes 521:520, NVMe 1.4 §5.15.2,
/// Figure 247): bit 2 Dataset Management, bit 3 Write Zeroes.
pub const ID_ONCS: usize = 520;
pub const ONCS_DSM: u16 = 1 << 2;
pub const ONCS_WRITE_ZEROES: u16 = 1 << 3;
/// Dataset Management CDW11 bit 2: Attribute – Deallocate.
pub const DSM_DEALLOCATE: u32 = 1 << 2;
/// Write Zeroes moves at most 65536 blocks per command (NLB is 16 bits, zero-based).
pub const WRITE_ZEROES_MAX_BLOCKS: usize = 65536;

/// One Dataset Management range (NVM Command Set 1.0 §3.2.3, range definition): context attributes
/// (0: none), length in logical blocks, starting LBA.
pub fn dsm_range(lba: u64, blocks: u32) -> [u8; 16] {
    let mut r = [0u8; 16];
    r[4..8].copy_from_slice(&blocks.to_le_bytes());
    r[8..16].copy_from_slice(&lba.to_le_bytes());
    r
}

/// A submission queue entry (§4.1, Figure 92): 64 bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Command {
    pub opcode: u8,
    pub cid: u16,
    pub nsid: u32,
    pub prp1: u64,
    pub prp2: u64,
    pub cdw10: u32,
    pub cdw11: u32,
    pub cdw12: u32,
}

impl Command {
    pub fn encode(&self) -> [u8; SQE] {
        let mut b = [0u8; SQE];
        // CDW0: opcode, FUSE = 0, PSDT = 0 (PRPs), command identifier.
        b[0] = self.opcode;
        b[2..4].copy_from_slice(&self.cid.to_le_bytes());
        b[4..8].copy_from_slice(&self.nsid.to_le_bytes());
        b[24..32].copy_from_slice(&self.prp1.to_le_bytes());
        b[32..40].copy_from_slice(&self.prp2.to_le_bytes());
        b[40..44].copy_from_slice(&self.cdw10.to_le_bytes());
        b[44..48].copy_from_slice(&self.cdw11.to_le_bytes());
        b[48..52].copy_from_slice(&self.cdw12.to_le_bytes());
        b
    }

    /// Read / Write of `blocks` (1..=65536) logical blocks at `lba`, the data at `prps`
    /// (NVM Command Set §3.2.4, §3.2.6: CDW12 bits 15:0 = NLB, zero-based).
    pub fn io(opcode: u8, cid: u16, nsid: u32, lba: u64, blocks: u32, prps: &prp::Prps) -> Command {
        Command {
            opcode,
            cid,
            nsid,
            prp1: prps.prp1,
            prp2: prps.prp2,
            cdw10: lba as u32,
            cdw11: (lba >> 32) as u32,
            cdw12: (blocks - 1) & 0xFFFF,
        }
    }
}

/// A completion queue entry (§4.2, Figure 96): command identifier, phase tag, status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompletionEntry {
    pub sq_head: u16,
    pub cid: u16,
    pub phase: bool,
    /// Status field (bits 31:17 of DW3): 0 is success.
    pub status: u16,
}

impl CompletionEntry {
    pub fn decode(b: &[u8]) -> CompletionEntry {
        let dw2 = u32::from_le_bytes([b[8], b[9], b[10], b[11]]);
        let dw3 = u32::from_le_bytes([b[12], b[13], b[14], b[15]]);
        CompletionEntry {
            sq_head: dw2 as u16,
            cid: dw3 as u16,
            phase: dw3 & (1 << 16) != 0,
            status: (dw3 >> 17) as u16,
        }
    }
}
