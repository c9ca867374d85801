//! Typed addresses, page sizes, memory types and access rights.

use core::fmt;

/// Size of the smallest EPT page and of every EPT paging structure (4 KiB).
pub const PAGE_SIZE: u64 = 4096;

/// One past the highest guest-physical address a 4-level EPT walk can
/// translate: bits 47:0 (SDM Vol. 3C §29.3.2, "EPT Translation Mechanism":
/// with a page-walk length of 4 the walk uses guest-physical bits 47:12).
pub const GPA_LIMIT: u64 = 1 << 48;

/// A guest-physical address.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[repr(transparent)]
pub struct Gpa(u64);

/// A host-physical address.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[repr(transparent)]
pub struct Hpa(u64);

macro_rules! addr_impl {
    ($t:ident, $name:literal) => {
        impl $t {
            /// Wraps a raw address.
            pub const fn new(addr: u64) -> Self {
                Self(addr)
            }

            /// The raw address.
            pub const fn as_u64(self) -> u64 {
                self.0
            }

            /// Whether the address is a multiple of `size` (a power of two).
            pub const fn is_aligned(self, size: PageSize) -> bool {
                self.0 & (size.bytes() - 1) == 0
            }

            /// The address plus `offset`, or `None` on overflow.
            pub const fn checked_add(self, offset: u64) -> Option<Self> {
                match self.0.checked_add(offset) {
                    Some(v) => Some(Self(v)),
                    None => None,
                }
            }
        }

        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($name, "({:#x})"), self.0)
            }
        }

        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($name, " {:#x}"), self.0)
            }
        }
    };
}

addr_impl!(Gpa, "GPA");
addr_impl!(Hpa, "HPA");

/// Size of a page mapped by a leaf EPT entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PageSize {
    /// 4 KiB, mapped by an EPT PTE (SDM Vol. 3C Table 29-6).
    Size4K,
    /// 2 MiB, mapped by an EPT PDE with bit 7 set (SDM Vol. 3C Table 29-4).
    Size2M,
    /// 1 GiB, mapped by an EPT PDPTE with bit 7 set (SDM Vol. 3C Table 29-2).
    Size1G,
}

impl PageSize {
    /// Size in bytes.
    pub const fn bytes(self) -> u64 {
        match self {
            PageSize::Size4K => 1 << 12,
            PageSize::Size2M => 1 << 21,
            PageSize::Size1G => 1 << 30,
        }
    }

    /// The page size mapped by a leaf at paging-structure `level`
    /// (1 = PT, 2 = PD, 3 = PDPT).
    pub(crate) const fn from_level(level: u8) -> Option<Self> {
        match level {
            1 => Some(PageSize::Size4K),
            2 => Some(PageSize::Size2M),
            3 => Some(PageSize::Size1G),
            _ => None,
        }
    }
}

/// EPT memory type, the encoding of bits 5:3 of a leaf entry and of bits 2:0
/// of the EPTP (SDM Vol. 3C §29.3.7 "EPT and Memory Typing"; values 2, 3 and 7
/// are reserved and cause an EPT misconfiguration, §29.3.3.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MemoryType {
    /// Uncacheable.
    Uncacheable = 0,
    /// Write combining.
    WriteCombining = 1,
    /// Write through.
    WriteThrough = 4,
    /// Write protected.
    WriteProtected = 5,
    /// Write back.
    WriteBack = 6,
}

impl MemoryType {
    /// Decodes a 3-bit memory-type field; `None` for the reserved values.
    pub const fn from_bits(bits: u64) -> Option<Self> {
        match bits {
            0 => Some(MemoryType::Uncacheable),
            1 => Some(MemoryType::WriteCombining),
            4 => Some(MemoryType::WriteThrough),
            5 => Some(MemoryType::WriteProtected),
            6 => Some(MemoryType::WriteBack),
            _ => None,
        }
    }

    /// The 3-bit encoding.
    pub const fn bits(self) -> u64 {
        self as u64
    }
}

impl fmt::Display for MemoryType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MemoryType::Uncacheable => "UC",
            MemoryType::WriteCombining => "WC",
            MemoryType::WriteThrough => "WT",
            MemoryType::WriteProtected => "WP",
            MemoryType::WriteBack => "WB",
        })
    }
}

bitflags::bitflags! {
    /// Access rights granted by an EPT leaf entry. The flag values are the
    /// entry bits themselves (SDM Vol. 3C Tables 29-2, 29-4, 29-6: bit 0 read,
    /// bit 1 write, bit 2 execute (supervisor-mode execute when mode-based
    /// execute control is enabled), bit 10 user-mode execute).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct Access: u64 {
        /// Reads allowed (bit 0).
        const READ = 1 << 0;
        /// Writes allowed (bit 1). Requires READ: write-only and
        /// write/execute entries are EPT misconfigurations (SDM Vol. 3C §29.3.3.1).
        const WRITE = 1 << 1;
        /// Instruction fetches allowed (bit 2); with mode-based execute
        /// control, supervisor-mode fetches only (SDM Vol. 3C §29.3.3.2).
        const EXECUTE = 1 << 2;
        /// User-mode instruction fetches allowed (bit 10). Only meaningful
        /// with the "mode-based execute control for EPT" VM-execution control
        /// (SDM Vol. 3C §29.3.3.2); otherwise bit 10 is ignored.
        const USER_EXECUTE = 1 << 10;

        /// Read + write.
        const RW = Self::READ.bits() | Self::WRITE.bits();
        /// Read + execute.
        const RX = Self::READ.bits() | Self::EXECUTE.bits();
        /// Read + write + execute.
        const RWX = Self::READ.bits() | Self::WRITE.bits() | Self::EXECUTE.bits();
    }
}

/// Attributes of a leaf mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Attributes {
    /// Access rights.
    pub access: Access,
    /// EPT memory type (leaf bits 5:3).
    pub memory_type: MemoryType,
    /// Ignore the guest PAT memory type (leaf bit 6, SDM Vol. 3C §29.3.7.2):
    /// when set, the EPT memory type is the effective type; when clear it is
    /// combined with the guest PAT type.
    pub ignore_pat: bool,
}

impl Attributes {
    /// Attributes with `ignore_pat` clear.
    pub const fn new(access: Access, memory_type: MemoryType) -> Self {
        Self {
            access,
            memory_type,
            ignore_pat: false,
        }
    }
}

/// Result of a GPA→HPA walk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Translation {
    /// Host-physical address the GPA translates to (including the page offset).
    pub hpa: Hpa,
    /// Access rights of the leaf entry.
    pub access: Access,
    /// EPT memory type of the leaf entry.
    pub memory_type: MemoryType,
    /// Whether the leaf has the ignore-PAT bit set.
    pub ignore_pat: bool,
    /// Size of the page containing the GPA.
    pub page_size: PageSize,
}
