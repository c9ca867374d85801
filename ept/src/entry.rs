//! Raw EPT paging-structure entry encoding.
//!
//! Formats: SDM Vol. 3C §29.3.2, Tables 29-1 (PML4E), 29-2 (PDPTE mapping a
//! 1-GByte page), 29-3 (PDPTE referencing a PD), 29-4 (PDE mapping a 2-MByte
//! page), 29-5 (PDE referencing a PT) and 29-6 (PTE mapping a 4-KByte page).

use crate::types::{Access, Attributes};

/// Bit 0: read access.
pub(crate) const READ: u64 = 1 << 0;
/// Bit 1: write access.
pub(crate) const WRITE: u64 = 1 << 1;
/// Bit 2: execute access (supervisor-mode execute with mode-based execute control).
pub(crate) const EXECUTE: u64 = 1 << 2;
/// Bits 5:3 of a leaf: EPT memory type.
pub(crate) const MEMTYPE_SHIFT: u32 = 3;
pub(crate) const MEMTYPE_MASK: u64 = 0b111 << MEMTYPE_SHIFT;
/// Bit 6 of a leaf: ignore PAT memory type.
pub(crate) const IGNORE_PAT: u64 = 1 << 6;
/// Bit 7 of a PDPTE/PDE: the entry maps a 1-GByte/2-MByte page (Tables 29-2,
/// 29-4); must be 0 in an entry referencing a table (Tables 29-3, 29-5) and is
/// reserved in a PML4E (Table 29-1).
pub(crate) const LARGE: u64 = 1 << 7;
/// Bit 8: accessed flag (SDM Vol. 3C §29.3.4, only if EPTP bit 6 is set).
pub(crate) const ACCESSED: u64 = 1 << 8;
/// Bit 9 of a leaf: dirty flag (SDM Vol. 3C §29.3.4).
pub(crate) const DIRTY: u64 = 1 << 9;
/// Bit 10: user-mode execute access (mode-based execute control only).
pub(crate) const USER_EXECUTE: u64 = 1 << 10;
/// All permission bits. With mode-based execute control an entry is present
/// if any of bits 2:0 or bit 10 is set; otherwise if any of bits 2:0 is set
/// (SDM Vol. 3C §29.3.2). Bit 10 is only ever written when mode-based execute
/// control is configured, so this mask decides presence in both cases.
pub(crate) const PERM_MASK: u64 = READ | WRITE | EXECUTE | USER_EXECUTE;
/// Bits 51:12: physical address (bits above MAXPHYADDR are reserved and must
/// be 0, SDM Vol. 3C §29.3.3.1).
pub(crate) const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;
/// Attribute bits copied to the children when a large page is split.
pub(crate) const SPLIT_INHERIT: u64 = PERM_MASK | MEMTYPE_MASK | IGNORE_PAT | ACCESSED | DIRTY;

/// log2 of the region covered by one entry at `level` (1 = PT .. 4 = PML4).
pub(crate) const fn entry_shift(level: u8) -> u32 {
    12 + 9 * (level as u32 - 1)
}

/// Bytes covered by one entry at `level`.
pub(crate) const fn entry_size(level: u8) -> u64 {
    1 << entry_shift(level)
}

/// Index of `addr` in the table at `level` (always < 512).
pub(crate) const fn index(addr: u64, level: u8) -> usize {
    ((addr >> entry_shift(level)) & 0x1ff) as usize
}

/// Whether the entry is present (SDM Vol. 3C §29.3.2).
pub(crate) const fn is_present(entry: u64) -> bool {
    entry & PERM_MASK != 0
}

/// Whether a present entry at `level` maps a page (as opposed to referencing
/// the next paging structure): every PTE, and PDPTEs/PDEs with bit 7 set.
pub(crate) const fn is_leaf(entry: u64, level: u8) -> bool {
    level == 1 || ((level == 2 || level == 3) && entry & LARGE != 0)
}

/// Physical address field of an entry.
pub(crate) const fn address(entry: u64) -> u64 {
    entry & ADDR_MASK
}

/// A non-leaf entry referencing `table`: RWX = 111 so that the leaf alone
/// decides the permissions (access is the AND over all levels, SDM Vol. 3C
/// §29.3.3.2), plus bit 10 when mode-based execute control is in use.
pub(crate) const fn table_entry(table: u64, mode_based_execute: bool) -> u64 {
    let ux = if mode_based_execute { USER_EXECUTE } else { 0 };
    (table & ADDR_MASK) | READ | WRITE | EXECUTE | ux
}

/// Leaf attribute bits (everything but the address and bit 7).
pub(crate) fn leaf_bits(attrs: Attributes) -> u64 {
    let ipat = if attrs.ignore_pat { IGNORE_PAT } else { 0 };
    (attrs.access.bits() & PERM_MASK) | (attrs.memory_type.bits() << MEMTYPE_SHIFT) | ipat
}

/// A leaf entry mapping `hpa` at `level`.
pub(crate) const fn leaf_entry(hpa: u64, bits: u64, level: u8) -> u64 {
    let large = if level > 1 { LARGE } else { 0 };
    (hpa & ADDR_MASK) | bits | large
}

/// Access rights of a leaf entry.
pub(crate) const fn access(entry: u64) -> Access {
    Access::from_bits_truncate(entry & PERM_MASK)
}
