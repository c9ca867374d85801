//! Why a guest's APIC MSR access faults. Every variant is a #GP(0) for the guest (SDM Vol. 3A
//! §11.12.1.2 / §11.12.1.3, §11.12.5); the kernel injects it and resumes the guest.

use core::fmt;

use super::ApicMode;

/// A faulting APIC MSR access: the kernel injects #GP(0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApicError {
    /// The MSR is not one the local APIC model handles (route it elsewhere).
    NotApicMsr {
        /// The MSR.
        msr: u32,
    },
    /// An x2APIC MSR (0x800-0x8FF) accessed while the APIC is not in x2APIC mode.
    NotX2ApicMode {
        /// The MSR.
        msr: u32,
        /// The APIC's mode.
        mode: ApicMode,
    },
    /// An x2APIC MSR number with no register behind it.
    ReservedRegister {
        /// The MSR.
        msr: u32,
    },
    /// WRMSR to a read-only x2APIC register.
    ReadOnly {
        /// The MSR.
        msr: u32,
    },
    /// RDMSR of a write-only x2APIC register (EOI, SELF IPI).
    WriteOnly {
        /// The MSR.
        msr: u32,
    },
    /// WRMSR with reserved bits set (§11.12.1.3: bits 63:32 of a 32-bit register, a
    /// non-zero EOI or ESR write, the reserved bits of TPR, SVR, LVTs, ICR, divide, SELF IPI).
    ReservedBits {
        /// The MSR.
        msr: u32,
        /// The value written.
        value: u64,
    },
    /// IA32_APIC_BASE with reserved bits set (0-7, 9, or at/above MAXPHYADDR).
    BaseReservedBits {
        /// The value written.
        value: u64,
    },
    /// IA32_APIC_BASE with EN = 0 and EXTD = 1 (the invalid state of Figure 11-27).
    BaseInvalidState {
        /// The value written.
        value: u64,
    },
    /// A mode transition Figure 11-27 forbids (x2APIC → xAPIC, disabled → x2APIC).
    InvalidTransition {
        /// The current mode.
        from: ApicMode,
        /// The requested mode.
        to: ApicMode,
    },
}

impl fmt::Display for ApicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::NotApicMsr { msr } => write!(
                f,
                "MSR {msr:#x} is not a local APIC MSR: handle it outside vm::apic"
            ),
            Self::NotX2ApicMode { msr, mode } => write!(
                f,
                "x2APIC MSR {msr:#x} accessed in {mode:?} mode (SDM Vol. 3A §11.12.1.2): inject #GP(0)"
            ),
            Self::ReservedRegister { msr } => write!(
                f,
                "x2APIC MSR {msr:#x} is reserved (SDM Vol. 3A Table 11-6): inject #GP(0)"
            ),
            Self::ReadOnly { msr } => write!(
                f,
                "WRMSR to read-only x2APIC MSR {msr:#x} (SDM Vol. 3A §11.12.1.2): inject #GP(0)"
            ),
            Self::WriteOnly { msr } => write!(
                f,
                "RDMSR of write-only x2APIC MSR {msr:#x} (SDM Vol. 3A §11.12.1.2): inject #GP(0)"
            ),
            Self::ReservedBits { msr, value } => write!(
                f,
                "WRMSR {value:#x} to x2APIC MSR {msr:#x} sets reserved bits (SDM Vol. 3A Table 11-6): inject #GP(0)"
            ),
            Self::BaseReservedBits { value } => write!(
                f,
                "IA32_APIC_BASE write {value:#x} sets reserved bits (SDM Vol. 3A §11.4.4): inject #GP(0)"
            ),
            Self::BaseInvalidState { value } => write!(
                f,
                "IA32_APIC_BASE write {value:#x} sets EXTD without EN (SDM Vol. 3A §11.12.5, Figure 11-27): inject #GP(0)"
            ),
            Self::InvalidTransition { from, to } => write!(
                f,
                "APIC mode change {from:?} -> {to:?} is not allowed (SDM Vol. 3A §11.12.5, Figure 11-27): inject #GP(0)"
            ),
        }
    }
}
