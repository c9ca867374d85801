//! The guest's view of its local APIC and IOAPIC, for the `apic` test guest: xAPIC registers
//! through MMIO at the default base, x2APIC registers through MSRs 0x800-0x8FF (SDM Vol. 3A
//! §11.4.1 Table 11-1, §11.12.1.2 Table 11-6), and the IOAPIC's index/data window (82093AA
//! datasheet §3.0).

use crate::cpu;
use crate::trap::Fault;

/// The default xAPIC base (SDM Vol. 3A §11.4.1).
pub const XAPIC_BASE: u64 = 0xFEE0_0000;
/// The IOAPIC's register window (Bulkhead's MADT, docs/vm-platform.md).
pub const IOAPIC_BASE: u64 = 0xFEC0_0000;

/// IA32_APIC_BASE and its bits (SDM Vol. 3A §11.4.4, §11.12.1).
pub const IA32_APIC_BASE: u32 = 0x1B;
pub const APIC_BASE_BSP: u64 = 1 << 8;
pub const APIC_BASE_EXTD: u64 = 1 << 10;
pub const APIC_BASE_EN: u64 = 1 << 11;
/// IA32_TSC_DEADLINE (SDM Vol. 3A §11.5.4.1).
pub const IA32_TSC_DEADLINE: u32 = 0x6E0;

/// xAPIC register offsets (SDM Vol. 3A Table 11-1).
pub mod reg {
    pub const ID: u32 = 0x20;
    pub const VERSION: u32 = 0x30;
    pub const TPR: u32 = 0x80;
    pub const PPR: u32 = 0xA0;
    pub const EOI: u32 = 0xB0;
    pub const LDR: u32 = 0xD0;
    pub const DFR: u32 = 0xE0;
    pub const SVR: u32 = 0xF0;
    pub const ISR0: u32 = 0x100;
    pub const IRR0: u32 = 0x200;
    pub const ESR: u32 = 0x280;
    pub const ICR_LOW: u32 = 0x300;
    pub const ICR_HIGH: u32 = 0x310;
    pub const LVT_TIMER: u32 = 0x320;
    pub const LVT_ERROR: u32 = 0x370;
    pub const TIMER_INITIAL: u32 = 0x380;
    pub const TIMER_CURRENT: u32 = 0x390;
    pub const TIMER_DIVIDE: u32 = 0x3E0;
}

/// SVR bit 8: APIC software enable (SDM Vol. 3A §11.9).
pub const SVR_ENABLE: u32 = 1 << 8;
/// The spurious vector the test guests use.
pub const SPURIOUS_VECTOR: u32 = 0xFF;
/// LVT mask bit (SDM Vol. 3A §11.5.1).
pub const LVT_MASKED: u32 = 1 << 16;
/// LVT timer modes, bits 18:17 (SDM Vol. 3A §11.5.1 Figure 11-8).
pub const TIMER_PERIODIC: u32 = 1 << 17;
pub const TIMER_TSC_DEADLINE: u32 = 2 << 17;
/// Divide configuration 1011b: divide by 1 (SDM Vol. 3A §11.5.4 Figure 11-10).
pub const DIVIDE_BY_1: u32 = 0b1011;
/// ICR fields (SDM Vol. 3A §11.6.1 Figure 11-12).
pub const ICR_INIT: u32 = 0b101 << 8;
pub const ICR_STARTUP: u32 = 0b110 << 8;
pub const ICR_LOGICAL: u32 = 1 << 11;
pub const ICR_ASSERT: u32 = 1 << 14;
pub const ICR_LEVEL: u32 = 1 << 15;
pub const ICR_SELF: u32 = 0b01 << 18;
pub const ICR_ALL_BUT_SELF: u32 = 0b11 << 18;
/// ESR bits (SDM Vol. 3A §11.5.3 Figure 11-9).
pub const ESR_SEND_ILLEGAL_VECTOR: u32 = 1 << 5;

/// x2APIC MSR of the xAPIC register at `offset` (SDM Vol. 3A §11.12.1.2).
pub const fn x2apic_msr(offset: u32) -> u32 {
    0x800 + (offset >> 4)
}
/// The x2APIC SELF IPI register (write-only).
pub const X2APIC_SELF_IPI: u32 = 0x83F;

/// Reads xAPIC register `offset`.
pub fn read(offset: u32) -> u32 {
    // SAFETY: the APIC page is identity-mapped by the boot page tables and accessed as the
    // 32-bit aligned register it is (SDM Vol. 3A §11.4.1).
    unsafe { core::ptr::read_volatile((XAPIC_BASE + u64::from(offset)) as *const u32) }
}

/// Writes xAPIC register `offset`.
pub fn write(offset: u32, value: u32) {
    // SAFETY: as in `read`.
    unsafe { core::ptr::write_volatile((XAPIC_BASE + u64::from(offset)) as *mut u32, value) }
}

/// Whether `vector`'s bit is set in the 256-bit register starting at `base` (ISR, TMR, IRR).
pub fn vector_bit(base: u32, vector: u8) -> bool {
    read(base + u32::from(vector / 32) * 0x10) & (1 << (vector % 32)) != 0
}

/// Sends an IPI through the xAPIC ICR (high word first: the low-word write sends).
pub fn send_ipi(destination: u8, low: u32) {
    write(reg::ICR_HIGH, u32::from(destination) << 24);
    write(reg::ICR_LOW, low);
}

/// Reads x2APIC MSR `msr`.
pub fn x2_read(msr: u32) -> Result<u64, Fault> {
    cpu::rdmsr(msr)
}

/// Writes x2APIC MSR `msr`.
pub fn x2_write(msr: u32, value: u64) -> Result<(), Fault> {
    // SAFETY: x2APIC register writes change only this vCPU's virtual APIC.
    unsafe { cpu::wrmsr(msr, value) }
}

/// Reads IOAPIC register `index` through IOREGSEL/IOWIN (82093AA §3.1).
pub fn ioapic_read(index: u8) -> u32 {
    // SAFETY: the IOAPIC window is identity-mapped; IOREGSEL at +0, IOWIN at +0x10, 32-bit.
    unsafe {
        core::ptr::write_volatile(IOAPIC_BASE as *mut u32, u32::from(index));
        core::ptr::read_volatile((IOAPIC_BASE + 0x10) as *const u32)
    }
}

/// Writes IOAPIC register `index` through IOREGSEL/IOWIN (82093AA §3.1).
pub fn ioapic_write(index: u8, value: u32) {
    // SAFETY: as in `ioapic_read`.
    unsafe {
        core::ptr::write_volatile(IOAPIC_BASE as *mut u32, u32::from(index));
        core::ptr::write_volatile((IOAPIC_BASE + 0x10) as *mut u32, value);
    }
}
