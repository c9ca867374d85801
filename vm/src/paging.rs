//! Guest linear → guest physical translation by walking the guest's own page tables, for the
//! hypervisor's accesses on the guest's behalf (fetching the instruction of an MMIO exit).
//! Supports paging off, 4-level IA-32e paging (SDM Vol. 3A §4.5) and 32-bit paging with
//! 4 MiB pages (§4.3); PAE without long mode is reported as unsupported.

use core::fmt;

/// Why a linear address could not be translated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WalkError {
    /// A paging-structure entry is not present (the guest would take #PF).
    NotPresent { level: u8 },
    /// A paging structure lies outside guest RAM.
    TableOutsideRam { gpa: u64 },
    /// A paging mode this walker does not implement.
    Unsupported(&'static str),
}

impl fmt::Display for WalkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WalkError::NotPresent { level } => write!(
                f,
                "the guest's page tables do not map the address (level {level} entry not present)"
            ),
            WalkError::TableOutsideRam { gpa } => {
                write!(f, "a guest page table at {gpa:#x} lies outside guest RAM")
            }
            WalkError::Unsupported(m) => write!(f, "unsupported paging mode: {m}"),
        }
    }
}

/// The paging-related guest state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PagingState {
    pub cr0: u64,
    pub cr3: u64,
    pub cr4: u64,
    pub efer: u64,
}

const CR0_PG: u64 = 1 << 31;
const CR4_PSE: u64 = 1 << 4;
const CR4_PAE: u64 = 1 << 5;
const CR4_LA57: u64 = 1 << 12;
const EFER_LMA: u64 = 1 << 10;
const PRESENT: u64 = 1;
const PAGE_SIZE_BIT: u64 = 1 << 7;
const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;

/// Translates `linear`; `read_u64`/`read_u32` read guest-physical memory (None outside RAM).
pub fn translate(
    state: &PagingState,
    linear: u64,
    read_u64: impl Fn(u64) -> Option<u64>,
    read_u32: impl Fn(u64) -> Option<u32>,
) -> Result<u64, WalkError> {
    if state.cr0 & CR0_PG == 0 {
        return Ok(linear);
    }
    if state.efer & EFER_LMA != 0 {
        if state.cr4 & CR4_LA57 != 0 {
            return Err(WalkError::Unsupported("5-level paging"));
        }
        let mut table = state.cr3 & ADDR_MASK;
        for level in (1..=4u8).rev() {
            let shift = 12 + 9 * (u32::from(level) - 1);
            let index = (linear >> shift) & 0x1ff;
            let gpa = table + index * 8;
            let entry = read_u64(gpa).ok_or(WalkError::TableOutsideRam { gpa })?;
            if entry & PRESENT == 0 {
                return Err(WalkError::NotPresent { level });
            }
            // Large pages at level 3 (1 GiB) and 2 (2 MiB).
            if (level == 3 || level == 2) && entry & PAGE_SIZE_BIT != 0 {
                let page_mask = (1u64 << shift) - 1;
                return Ok((entry & ADDR_MASK & !page_mask) | (linear & page_mask));
            }
            table = entry & ADDR_MASK;
        }
        return Ok(table | (linear & 0xfff));
    }
    if state.cr4 & CR4_PAE != 0 {
        return Err(WalkError::Unsupported("PAE paging outside long mode"));
    }
    // 32-bit paging (SDM Vol. 3A §4.3).
    let linear = linear & 0xffff_ffff;
    let pde_gpa = (state.cr3 & 0xffff_f000) + ((linear >> 22) & 0x3ff) * 4;
    let pde = u64::from(read_u32(pde_gpa).ok_or(WalkError::TableOutsideRam { gpa: pde_gpa })?);
    if pde & PRESENT == 0 {
        return Err(WalkError::NotPresent { level: 2 });
    }
    if state.cr4 & CR4_PSE != 0 && pde & PAGE_SIZE_BIT != 0 {
        return Ok((pde & 0xffc0_0000) | (linear & 0x3f_ffff));
    }
    let pte_gpa = (pde & 0xffff_f000) + ((linear >> 12) & 0x3ff) * 4;
    let pte = u64::from(read_u32(pte_gpa).ok_or(WalkError::TableOutsideRam { gpa: pte_gpa })?);
    if pte & PRESENT == 0 {
        return Err(WalkError::NotPresent { level: 1 });
    }
    Ok((pte & 0xffff_f000) | (linear & 0xfff))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::collections::BTreeMap;

    fn mem(entries: &[(u64, u64)]) -> BTreeMap<u64, u64> {
        entries.iter().copied().collect()
    }

    #[test]
    fn paging_off_is_identity() {
        let s = PagingState {
            cr0: 0x11,
            cr3: 0,
            cr4: 0,
            efer: 0,
        };
        assert_eq!(translate(&s, 0x1234, |_| None, |_| None), Ok(0x1234));
    }

    #[test]
    fn long_mode_4k_and_2m_pages() {
        let s = PagingState {
            cr0: CR0_PG | 1,
            cr3: 0x1000,
            cr4: CR4_PAE,
            efer: EFER_LMA | (1 << 8),
        };
        // PML4[0] → 0x2000; PDPT[0] → 0x3000; PD[0] 2 MiB page at 0x4000_0000;
        // PD[1] → PT 0x5000; PT[3] → 0x9000.
        let m = mem(&[
            (0x1000, 0x2003),
            (0x2000, 0x3003),
            (0x3000, 0x4000_0083),
            (0x3008, 0x5003),
            (0x5018, 0x9003),
        ]);
        let r = |a| m.get(&a).copied().or(Some(0));
        assert_eq!(translate(&s, 0x12345, r, |_| None), Ok(0x4001_2345));
        assert_eq!(translate(&s, 0x20_3abc, r, |_| None), Ok(0x9abc));
        assert_eq!(
            translate(&s, 0x40_0000, r, |_| None),
            Err(WalkError::NotPresent { level: 2 })
        );
        assert_eq!(
            translate(&s, 0x12345, |_| None, |_| None),
            Err(WalkError::TableOutsideRam { gpa: 0x1000 })
        );
        let s5 = PagingState {
            cr4: CR4_PAE | CR4_LA57,
            ..s
        };
        assert!(matches!(
            translate(&s5, 0, r, |_| None),
            Err(WalkError::Unsupported(_))
        ));
    }

    #[test]
    fn legacy_32bit_paging() {
        let s = PagingState {
            cr0: CR0_PG | 1,
            cr3: 0x1000,
            cr4: CR4_PSE,
            efer: 0,
        };
        let m: BTreeMap<u64, u32> = [(0x1000, 0x2003u32), (0x1004, 0x0080_0083), (0x2008, 0x7003)]
            .into_iter()
            .collect();
        let r = |a| m.get(&a).copied().or(Some(0));
        assert_eq!(translate(&s, 0x2123, |_| None, r), Ok(0x7123));
        assert_eq!(translate(&s, 0x40_1234, |_| None, r), Ok(0x80_1234));
        let pae = PagingState { cr4: CR4_PAE, ..s };
        assert!(matches!(
            translate(&pae, 0, |_| None, r),
            Err(WalkError::Unsupported(_))
        ));
    }
}
