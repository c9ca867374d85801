//! The local APIC register map: xAPIC MMIO offsets (SDM Vol. 3A §11.4.1, Table 11-1), their
//! x2APIC MSR numbers (§11.12.1.2, Table 11-6: MSR = 0x800 + offset / 16), which registers
//! exist and how they may be accessed in each mode, and the bits software may write.

use super::ApicMode;

/// First x2APIC MSR (§11.12.1.2).
pub const X2APIC_MSR_BASE: u32 = 0x800;
/// Last MSR of the x2APIC range (§11.12.1.2: 0x800-0x8FF are reserved for the x2APIC).
pub const X2APIC_MSR_LAST: u32 = 0x8FF;
/// Stride between two registers in the xAPIC page (§11.4.1: 128-bit aligned).
pub const REGISTER_STRIDE: u16 = 0x10;
/// Size of the xAPIC register page (and of the VMX virtual-APIC page).
pub const PAGE_BYTES: u16 = 0x1000;

/// LVT bit 16: the entry is masked (§11.5.1, Figure 11-8).
pub const LVT_MASKED: u32 = 1 << 16;
/// LVT bits 10:8: delivery mode (§11.5.1).
pub const LVT_DELIVERY_MODE_SHIFT: u32 = 8;
/// LVT bits 10:8 mask.
pub const LVT_DELIVERY_MODE_MASK: u32 = 0b111 << LVT_DELIVERY_MODE_SHIFT;
/// LVT delivery mode 100: NMI.
pub const LVT_DELIVERY_NMI: u32 = 0b100;
/// LVT delivery mode 111: ExtINT (the 8259A supplies the vector).
pub const LVT_DELIVERY_EXTINT: u32 = 0b111;
/// LVT bit 12: delivery status (read-only).
pub const LVT_DELIVERY_STATUS: u32 = 1 << 12;
/// LINT0/LINT1 bit 14: remote IRR (read-only).
pub const LVT_REMOTE_IRR: u32 = 1 << 14;
/// LVT bits 7:0: vector.
pub const LVT_VECTOR_MASK: u32 = 0xFF;

/// SVR bit 8: APIC software enable (§11.9, Figure 11-23).
pub const SVR_APIC_ENABLED: u32 = 1 << 8;
/// SVR bit 12: suppress EOI broadcasts (§11.8.5).
pub const SVR_SUPPRESS_EOI_BROADCAST: u32 = 1 << 12;
/// SVR reset value: spurious vector 0xFF, software-disabled (§11.4.7.1).
pub const SVR_RESET: u32 = 0xFF;

/// ESR bit 5: send illegal vector (§11.5.3, Figure 11-9).
pub const ESR_SEND_ILLEGAL_VECTOR: u32 = 1 << 5;
/// ESR bit 6: receive illegal vector.
pub const ESR_RECEIVE_ILLEGAL_VECTOR: u32 = 1 << 6;
/// ESR bit 7: illegal register address.
pub const ESR_ILLEGAL_REGISTER: u32 = 1 << 7;
/// The ESR bits the model ever latches (the others are never set: no checksums, no
/// redirectable IPIs, no remote reads).
pub const ESR_MODEL_BITS: u32 =
    ESR_SEND_ILLEGAL_VECTOR | ESR_RECEIVE_ILLEGAL_VECTOR | ESR_ILLEGAL_REGISTER;

/// DFR bits 27:0 are reserved and read as ones (§11.6.2.2, Figure 11-14).
pub const DFR_RESERVED_ONES: u32 = 0x0FFF_FFFF;
/// DFR model field, bits 31:28: 1111b flat, 0000b cluster.
pub const DFR_MODEL_SHIFT: u32 = 28;
/// DFR flat model.
pub const DFR_MODEL_FLAT: u32 = 0xF;
/// DFR cluster model.
pub const DFR_MODEL_CLUSTER: u32 = 0x0;

/// xAPIC ID and logical ID sit in bits 31:24 (§11.4.6, §11.6.2.2).
pub const XAPIC_ID_SHIFT: u32 = 24;
/// The xAPIC ID register bits 31:24 (§11.4.6: 8-bit IDs on Pentium 4 and later).
pub const XAPIC_ID_MASK: u32 = 0xFF << XAPIC_ID_SHIFT;

/// The version register's fixed part: an integrated APIC, version 0x14 (§11.4.8, Figure 11-7).
pub const VERSION: u32 = 0x14;
/// Highest LVT index: timer, thermal, perf, LINT0, LINT1, error, CMCI (7 entries) -> 6.
pub const MAX_LVT_INDEX: u32 = 6;
/// Version bits 23:16: max LVT entry.
pub const VERSION_MAX_LVT_SHIFT: u32 = 16;
/// Version bit 24: EOI-broadcast suppression supported (§11.8.5).
pub const VERSION_EOI_SUPPRESSION: u32 = 1 << 24;
/// The version register's value (read-only, §11.4.8).
pub const VERSION_REGISTER: u32 =
    VERSION | (MAX_LVT_INDEX << VERSION_MAX_LVT_SHIFT) | VERSION_EOI_SUPPRESSION;

/// How software may access a register in a given mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Readable and writable.
    ReadWrite,
    /// Writes are an error (xAPIC: ESR "illegal register address"; x2APIC: #GP).
    ReadOnly,
    /// Reads are an error in x2APIC mode (#GP); xAPIC reads of EOI return 0.
    WriteOnly,
}

/// One architectural local APIC register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApicRegister {
    /// Local APIC ID, 0x20.
    Id,
    /// Version, 0x30.
    Version,
    /// Task priority, 0x80.
    Tpr,
    /// Arbitration priority, 0x90 (xAPIC only).
    Apr,
    /// Processor priority, 0xA0.
    Ppr,
    /// End of interrupt, 0xB0.
    Eoi,
    /// Remote read, 0xC0 (xAPIC only).
    Rrd,
    /// Logical destination, 0xD0.
    Ldr,
    /// Destination format, 0xE0 (xAPIC only).
    Dfr,
    /// Spurious-interrupt vector, 0xF0.
    Svr,
    /// In-service register word `n` (0..8), 0x100 + 0x10·n.
    Isr(u8),
    /// Trigger-mode register word `n`, 0x180 + 0x10·n.
    Tmr(u8),
    /// Interrupt-request register word `n`, 0x200 + 0x10·n.
    Irr(u8),
    /// Error status, 0x280.
    Esr,
    /// LVT corrected machine-check interrupt, 0x2F0.
    LvtCmci,
    /// Interrupt command, low half, 0x300 (x2APIC: the whole 64-bit ICR, MSR 0x830).
    IcrLow,
    /// Interrupt command, high half, 0x310 (xAPIC only).
    IcrHigh,
    /// LVT timer, 0x320.
    LvtTimer,
    /// LVT thermal sensor, 0x330.
    LvtThermal,
    /// LVT performance-monitoring counters, 0x340.
    LvtPerf,
    /// LVT LINT0, 0x350.
    LvtLint0,
    /// LVT LINT1, 0x360.
    LvtLint1,
    /// LVT error, 0x370.
    LvtError,
    /// Timer initial count, 0x380.
    TimerInitialCount,
    /// Timer current count, 0x390.
    TimerCurrentCount,
    /// Timer divide configuration, 0x3E0.
    TimerDivide,
    /// Self IPI, 0x3F0 (x2APIC only, MSR 0x83F).
    SelfIpi,
}

/// Offset of ISR word 0.
pub const ISR_BASE: u16 = 0x100;
/// Offset of TMR word 0.
pub const TMR_BASE: u16 = 0x180;
/// Offset of IRR word 0.
pub const IRR_BASE: u16 = 0x200;
/// Number of 32-bit words in ISR/TMR/IRR (256 vectors).
pub const VECTOR_WORDS: u8 = 8;

/// Every LVT register, in LVT index order except CMCI last (§11.5.1).
pub const LVTS: [ApicRegister; 7] = [
    ApicRegister::LvtTimer,
    ApicRegister::LvtThermal,
    ApicRegister::LvtPerf,
    ApicRegister::LvtLint0,
    ApicRegister::LvtLint1,
    ApicRegister::LvtError,
    ApicRegister::LvtCmci,
];

impl ApicRegister {
    /// The register's offset in the xAPIC page (and the virtual-APIC page).
    pub const fn offset(self) -> u16 {
        use ApicRegister::*;
        match self {
            Id => 0x20,
            Version => 0x30,
            Tpr => 0x80,
            Apr => 0x90,
            Ppr => 0xA0,
            Eoi => 0xB0,
            Rrd => 0xC0,
            Ldr => 0xD0,
            Dfr => 0xE0,
            Svr => 0xF0,
            Isr(n) => ISR_BASE + n as u16 * REGISTER_STRIDE,
            Tmr(n) => TMR_BASE + n as u16 * REGISTER_STRIDE,
            Irr(n) => IRR_BASE + n as u16 * REGISTER_STRIDE,
            Esr => 0x280,
            LvtCmci => 0x2F0,
            IcrLow => 0x300,
            IcrHigh => 0x310,
            LvtTimer => 0x320,
            LvtThermal => 0x330,
            LvtPerf => 0x340,
            LvtLint0 => 0x350,
            LvtLint1 => 0x360,
            LvtError => 0x370,
            TimerInitialCount => 0x380,
            TimerCurrentCount => 0x390,
            TimerDivide => 0x3E0,
            SelfIpi => 0x3F0,
        }
    }

    /// Index of the register's 32-bit word in the page.
    pub const fn word(self) -> usize {
        self.offset() as usize / 4
    }

    /// The register at a page offset, in any mode; `None` for reserved offsets and for
    /// offsets that are not the start of a 16-byte register slot.
    pub fn from_offset(offset: u16) -> Option<Self> {
        use ApicRegister::*;
        if !offset.is_multiple_of(REGISTER_STRIDE) || offset >= PAGE_BYTES {
            return None;
        }
        let in_block = |base: u16| {
            (base..base + VECTOR_WORDS as u16 * REGISTER_STRIDE)
                .contains(&offset)
                .then(|| ((offset - base) / REGISTER_STRIDE) as u8)
        };
        if let Some(n) = in_block(ISR_BASE) {
            return Some(Isr(n));
        }
        if let Some(n) = in_block(TMR_BASE) {
            return Some(Tmr(n));
        }
        if let Some(n) = in_block(IRR_BASE) {
            return Some(Irr(n));
        }
        [
            Id,
            Version,
            Tpr,
            Apr,
            Ppr,
            Eoi,
            Rrd,
            Ldr,
            Dfr,
            Svr,
            Esr,
            LvtCmci,
            IcrLow,
            IcrHigh,
            LvtTimer,
            LvtThermal,
            LvtPerf,
            LvtLint0,
            LvtLint1,
            LvtError,
            TimerInitialCount,
            TimerCurrentCount,
            TimerDivide,
            SelfIpi,
        ]
        .into_iter()
        .find(|r| r.offset() == offset)
    }

    /// The register an x2APIC MSR names (§11.12.1.2: MSR 0x800 + offset / 16), before the
    /// mode's access rules; `None` outside 0x800-0x8FF or at a reserved slot.
    pub fn from_x2apic_msr(msr: u32) -> Option<Self> {
        if !(X2APIC_MSR_BASE..=X2APIC_MSR_LAST).contains(&msr) {
            return None;
        }
        let offset = u16::try_from((msr - X2APIC_MSR_BASE) * u32::from(REGISTER_STRIDE)).ok()?;
        Self::from_offset(offset)
    }

    /// The x2APIC MSR of this register (whether or not it exists in x2APIC mode).
    pub const fn x2apic_msr(self) -> u32 {
        X2APIC_MSR_BASE + (self.offset() / REGISTER_STRIDE) as u32
    }

    /// How the register may be accessed in `mode`; `None` if it does not exist there (xAPIC:
    /// Table 11-1; x2APIC: Table 11-6, where APR, RRD, DFR and ICR high are gone and SELF IPI
    /// is new, and ID and LDR become read-only, §11.12.2 / §11.12.10.2).
    pub fn access(self, mode: ApicMode) -> Option<Access> {
        use ApicRegister::*;
        let x2apic = match mode {
            ApicMode::Disabled => return None,
            ApicMode::XApic => false,
            ApicMode::X2Apic => true,
        };
        Some(match self {
            Apr | Rrd | Dfr | IcrHigh if x2apic => return None,
            SelfIpi if !x2apic => return None,
            Id | Ldr if x2apic => Access::ReadOnly,
            Version | Apr | Ppr | Rrd | Isr(_) | Tmr(_) | Irr(_) | TimerCurrentCount => {
                Access::ReadOnly
            }
            Eoi | SelfIpi => Access::WriteOnly,
            _ => Access::ReadWrite,
        })
    }

    /// The bits software can set in an LVT register (§11.5.1, Figure 11-8): the rest are
    /// reserved (write-ignored) or read-only (delivery status, remote IRR).
    pub fn lvt_write_mask(self) -> Option<u32> {
        use ApicRegister::*;
        /// Timer mode, bits 18:17 (§11.5.4.1).
        const TIMER_MODE: u32 = 0b11 << 17;
        /// LINT pin polarity, bit 13.
        const POLARITY: u32 = 1 << 13;
        /// LINT trigger mode, bit 15.
        const TRIGGER: u32 = 1 << 15;
        let base = LVT_VECTOR_MASK | LVT_MASKED;
        Some(match self {
            LvtTimer => base | TIMER_MODE,
            LvtThermal | LvtPerf | LvtCmci => base | LVT_DELIVERY_MODE_MASK,
            LvtLint0 | LvtLint1 => base | LVT_DELIVERY_MODE_MASK | POLARITY | TRIGGER,
            LvtError => base,
            _ => return None,
        })
    }
}
