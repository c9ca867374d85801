//! The EPT pointer and the invalidation a caller owes after a change.

use core::fmt;

use crate::types::{Hpa, MemoryType};

/// Extended-page-table pointer, the value of the EPTP VM-execution control
/// field (SDM Vol. 3C §25.6.11, Table 25-9):
///
/// | bits  | meaning                                               |
/// |-------|-------------------------------------------------------|
/// | 2:0   | memory type for accessing the EPT paging structures (0 = UC, 6 = WB) |
/// | 5:3   | EPT page-walk length minus 1 (3 for a 4-level walk)   |
/// | 6     | enable accessed and dirty flags                       |
/// | 7     | enable supervisor shadow-stack control (not used: 0)  |
/// | 11:8  | reserved, 0                                           |
/// | N-1:12| physical address of the EPT PML4 table                |
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct Eptp(u64);

impl Eptp {
    /// Bits 5:3 value for a 4-level walk (page-walk length 4, minus 1).
    const WALK_LENGTH_4: u64 = 3 << 3;
    /// Bit 6: enable accessed and dirty flags for EPT (SDM Vol. 3C §29.3.4).
    const ACCESSED_DIRTY: u64 = 1 << 6;

    /// Builds an EPTP for a 4-level hierarchy rooted at `pml4`. The memory
    /// type must be UC or WB (checked by `EptConfig` before this is reached).
    pub(crate) const fn new(pml4: Hpa, memory_type: MemoryType, accessed_dirty: bool) -> Self {
        let ad = if accessed_dirty {
            Self::ACCESSED_DIRTY
        } else {
            0
        };
        Eptp(
            (pml4.as_u64() & crate::entry::ADDR_MASK)
                | memory_type.bits()
                | Self::WALK_LENGTH_4
                | ad,
        )
    }

    /// The raw 64-bit value to write to the EPTP VMCS field.
    pub const fn bits(self) -> u64 {
        self.0
    }

    /// Physical address of the PML4 table.
    pub const fn pml4(self) -> Hpa {
        Hpa::new(self.0 & crate::entry::ADDR_MASK)
    }

    /// Memory type used to access the paging structures (bits 2:0).
    pub const fn memory_type(self) -> Option<MemoryType> {
        MemoryType::from_bits(self.0 & 0b111)
    }

    /// EPT page-walk length (bits 5:3 plus 1).
    pub const fn page_walk_length(self) -> u8 {
        (((self.0 >> 3) & 0b111) + 1) as u8
    }

    /// Whether accessed and dirty flags are enabled (bit 6).
    pub const fn accessed_dirty(self) -> bool {
        self.0 & Self::ACCESSED_DIRTY != 0
    }
}

impl fmt::Debug for Eptp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Eptp({:#x})", self.0)
    }
}

/// INVEPT type operand (SDM Vol. 3C §29.4.3.1 and "INVEPT—Invalidate
/// Translations Derived from EPT" in the VMX instruction reference).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u64)]
pub enum InveptType {
    /// Invalidate mappings associated with the EPTP in the descriptor.
    SingleContext = 1,
    /// Invalidate mappings associated with all EPTPs.
    AllContext = 2,
}

/// The 128-bit INVEPT descriptor: bits 63:0 EPTP, bits 127:64 reserved and
/// zero ("INVEPT—Invalidate Translations Derived from EPT", SDM Vol. 3C VMX
/// instruction reference).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(C, align(16))]
pub struct InveptDescriptor {
    /// The EPTP whose cached mappings are to be invalidated.
    pub eptp: u64,
    /// Reserved, must be zero.
    pub reserved: u64,
}

/// The TLB / paging-structure-cache invalidation the caller must perform
/// after an EPT change.
///
/// A logical processor may cache guest-physical and combined mappings derived
/// from *present* EPT entries (SDM Vol. 3C §29.4.1) tagged with the EPTP, and
/// keeps them across VM exits and entries (§29.4.3.2). It never caches
/// anything derived from not-present entries (§29.4.2), so filling a
/// not-present entry needs no invalidation (§29.4.3.4, "Guidelines for Use of
/// the INVEPT Instruction"). Removing or reducing
/// permissions, changing an address, the page size (bit 7), the memory type
/// or the ignore-PAT bit of a present entry does (§29.4.3.4).
///
/// When the value is [`Invalidation::SingleContext`], the caller must execute
/// INVEPT with type single-context (or all-context) and the contained EPTP
/// **on every logical processor that may have run a vCPU with this EPTP**
/// (INVEPT only affects the executing processor) before any such vCPU
/// resumes, and before calling [`crate::Ept::reclaim_tables`].
#[must_use = "after a change to present EPT entries the caller must run INVEPT"]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Invalidation {
    /// Only not-present entries were filled: nothing to invalidate.
    None,
    /// Present entries were changed or removed: INVEPT single-context with
    /// this EPTP is required.
    SingleContext(Eptp),
}

impl Invalidation {
    /// Whether an INVEPT is required.
    pub const fn is_required(self) -> bool {
        matches!(self, Invalidation::SingleContext(_))
    }

    /// The stronger of two invalidations (for batching several changes).
    pub const fn merge(self, other: Invalidation) -> Invalidation {
        match (self, other) {
            (Invalidation::SingleContext(e), _) | (_, Invalidation::SingleContext(e)) => {
                Invalidation::SingleContext(e)
            }
            _ => Invalidation::None,
        }
    }

    /// The INVEPT type and descriptor to execute, if any.
    pub const fn invept(self) -> Option<(InveptType, InveptDescriptor)> {
        match self {
            Invalidation::None => None,
            Invalidation::SingleContext(eptp) => Some((
                InveptType::SingleContext,
                InveptDescriptor {
                    eptp: eptp.bits(),
                    reserved: 0,
                },
            )),
        }
    }
}
