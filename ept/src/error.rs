//! Error type.

use core::fmt;

use crate::types::{Gpa, Hpa, MemoryType};

/// Why an EPT operation was refused. Every operation that returns an error
/// leaves the mappings unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EptError {
    /// The guest-physical start address is not 4 KiB aligned.
    MisalignedGpa(Gpa),
    /// The host-physical start address is not 4 KiB aligned.
    MisalignedHpa(Hpa),
    /// The length is zero.
    ZeroLength,
    /// The length is not a multiple of 4 KiB.
    MisalignedLength(u64),
    /// `gpa + len` overflows 64 bits.
    GpaOverflow {
        /// Start of the range.
        gpa: Gpa,
        /// Length of the range.
        len: u64,
    },
    /// The range ends above the 48-bit guest-physical space of a 4-level walk.
    GpaOutOfRange {
        /// Start of the range.
        gpa: Gpa,
        /// Length of the range.
        len: u64,
    },
    /// `hpa + len` overflows 64 bits.
    HpaOverflow {
        /// Start of the range.
        hpa: Hpa,
        /// Length of the range.
        len: u64,
    },
    /// The range ends above the configured physical-address width.
    HpaOutOfRange {
        /// Start of the range.
        hpa: Hpa,
        /// Length of the range.
        len: u64,
        /// Configured physical-address width (MAXPHYADDR) in bits.
        max_phys_bits: u8,
    },
    /// Access rights with no permission at all (that would be a not-present
    /// entry: use `unmap`).
    EmptyAccess,
    /// Access rights containing bits other than READ, WRITE, EXECUTE and
    /// USER_EXECUTE.
    InvalidAccessBits(u64),
    /// WRITE without READ: an EPT misconfiguration (SDM Vol. 3C §29.3.3.1).
    WriteWithoutRead,
    /// Execute-only (or user-execute-only) access, which the processor was
    /// configured as not supporting (SDM Vol. 3C §29.3.3.1).
    ExecuteOnlyUnsupported,
    /// USER_EXECUTE requested but mode-based execute control is not configured.
    UserExecuteUnsupported,
    /// Part of the range is already mapped (first mapped address given).
    AlreadyMapped(Gpa),
    /// Part of the range is not mapped (first unmapped address given).
    NotMapped(Gpa),
    /// The frame allocator has no frame for a paging structure.
    OutOfMemory,
    /// The frame allocator returned a frame that is not 4 KiB aligned or lies
    /// above the configured physical-address width.
    InvalidTableFrame(Hpa),
    /// The configured physical-address width is outside 32..=52 bits.
    InvalidPhysicalAddressWidth(u8),
    /// The EPTP memory type must be UC or WB (SDM Vol. 3C §25.6.11, Table 25-9).
    InvalidEptpMemoryType(MemoryType),
}

impl fmt::Display for EptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            EptError::MisalignedGpa(g) => write!(f, "{g} is not 4 KiB aligned"),
            EptError::MisalignedHpa(h) => write!(f, "{h} is not 4 KiB aligned"),
            EptError::ZeroLength => f.write_str("length is zero"),
            EptError::MisalignedLength(l) => {
                write!(f, "length {l:#x} is not a multiple of 4 KiB")
            }
            EptError::GpaOverflow { gpa, len } => {
                write!(f, "{gpa} + length {len:#x} overflows the address space")
            }
            EptError::GpaOutOfRange { gpa, len } => write!(
                f,
                "{gpa} + length {len:#x} ends above 2^48, the limit of a 4-level EPT walk"
            ),
            EptError::HpaOverflow { hpa, len } => {
                write!(f, "{hpa} + length {len:#x} overflows the address space")
            }
            EptError::HpaOutOfRange { hpa, len, max_phys_bits } => write!(
                f,
                "{hpa} + length {len:#x} ends above the {max_phys_bits}-bit physical address width"
            ),
            EptError::EmptyAccess => {
                f.write_str("access rights are empty (use unmap to remove a mapping)")
            }
            EptError::InvalidAccessBits(b) => write!(f, "access rights contain unknown bits {b:#x}"),
            EptError::WriteWithoutRead => {
                f.write_str("write access without read access is an EPT misconfiguration")
            }
            EptError::ExecuteOnlyUnsupported => {
                f.write_str("execute-only access is not supported by this configuration")
            }
            EptError::UserExecuteUnsupported => f.write_str(
                "user-mode execute access needs mode-based execute control, which is not configured",
            ),
            EptError::AlreadyMapped(g) => write!(f, "{g} is already mapped"),
            EptError::NotMapped(g) => write!(f, "{g} is not mapped"),
            EptError::OutOfMemory => f.write_str("out of frames for EPT paging structures"),
            EptError::InvalidTableFrame(h) => write!(
                f,
                "frame allocator returned {h}, which is misaligned or above the physical address width"
            ),
            EptError::InvalidPhysicalAddressWidth(b) => {
                write!(f, "physical address width {b} is outside 32..=52 bits")
            }
            EptError::InvalidEptpMemoryType(m) => {
                write!(f, "EPTP memory type {m} is invalid (must be UC or WB)")
            }
        }
    }
}

impl core::error::Error for EptError {}
