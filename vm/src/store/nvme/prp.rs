//! Physical Region Page entries for an NVMe command's data (NVM Express Base Specification
//! 1.4 §4.3, "Physical Region Page Entry and List"; 2.0 §4.1.1): PRP1 is the data's first
//! address (dword aligned, any offset in its page); a transfer that ends in the second page
//! has that page's address in PRP2; a longer one has in PRP2 the address of a PRP list, one
//! 8-byte entry per further page, each page aligned (offset 0). One list page of
//! [`LIST_ENTRIES`] entries is used here, without chaining (its last entry would otherwise
//! point to the next list page), which covers 2 MiB + 4 KiB: more than any MDTS-split
//! command of this driver.

use super::PAGE;
use alloc::vec::Vec;

/// Entries in one list page (4 KiB / 8 bytes).
pub const LIST_ENTRIES: usize = PAGE / 8;

/// The PRP fields of one command, and the entries to write into the list page (empty when
/// no list is needed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prps {
    pub prp1: u64,
    pub prp2: u64,
    pub list: Vec<u64>,
}

/// Why a transfer cannot be described.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrpError {
    /// No data.
    Empty,
    /// PRP1's offset must be dword aligned (§4.3: bits 1:0 are zero).
    Unaligned { phys: u64 },
    /// The list page is not page aligned.
    ListUnaligned { phys: u64 },
    /// More pages than one list page holds.
    TooLarge { pages: usize },
}

impl core::fmt::Display for PrpError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            PrpError::Empty => write!(f, "an NVMe transfer of no bytes"),
            PrpError::Unaligned { phys } => {
                write!(f, "NVMe data at {phys:#x} is not dword aligned")
            }
            PrpError::ListUnaligned { phys } => {
                write!(f, "the PRP list page at {phys:#x} is not page aligned")
            }
            PrpError::TooLarge { pages } => write!(
                f,
                "an NVMe transfer over {pages} pages (one PRP list page holds {LIST_ENTRIES} more than the first)"
            ),
        }
    }
}

/// The PRPs for `bytes` of physically contiguous memory at `phys`, with `list_page` for the
/// PRP list if one is needed.
pub fn prps(phys: u64, bytes: usize, list_page: u64) -> Result<Prps, PrpError> {
    if bytes == 0 {
        return Err(PrpError::Empty);
    }
    if !phys.is_multiple_of(4) {
        return Err(PrpError::Unaligned { phys });
    }
    let page = PAGE as u64;
    let first_page = phys - phys % page;
    let end = phys + bytes as u64;
    let pages = (end - first_page).div_ceil(page) as usize;
    let rest = (1..pages).map(|i| first_page + i as u64 * page);
    match pages {
        1 => Ok(Prps {
            prp1: phys,
            prp2: 0,
            list: Vec::new(),
        }),
        2 => Ok(Prps {
            prp1: phys,
            prp2: first_page + page,
            list: Vec::new(),
        }),
        n if n - 1 > LIST_ENTRIES => Err(PrpError::TooLarge { pages: n }),
        _ if !list_page.is_multiple_of(page) => Err(PrpError::ListUnaligned { phys: list_page }),
        _ => Ok(Prps {
            prp1: phys,
            prp2: list_page,
            list: rest.collect(),
        }),
    }
}

/// The list page's bytes for `entries` (little-endian 64-bit entries, §4.3).
pub fn encode_list(entries: &[u64]) -> Vec<u8> {
    entries.iter().flat_map(|e| e.to_le_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: u64 = 0x9000;

    #[test]
    fn one_and_two_pages_need_no_list() {
        assert_eq!(
            prps(0x10_0000, 4096, L),
            Ok(Prps {
                prp1: 0x10_0000,
                prp2: 0,
                list: Vec::new()
            })
        );
        assert_eq!(prps(0x10_0000, 512, L).unwrap().prp2, 0);
        // 8 KiB from a page start: PRP2 is the second page itself.
        assert_eq!(
            prps(0x10_0000, 8192, L),
            Ok(Prps {
                prp1: 0x10_0000,
                prp2: 0x10_1000,
                list: Vec::new()
            })
        );
        // 4 KiB at an offset reaches into the next page: two pages, still no list.
        assert_eq!(
            prps(0x10_0200, 4096, L),
            Ok(Prps {
                prp1: 0x10_0200,
                prp2: 0x10_1000,
                list: Vec::new()
            })
        );
    }

    #[test]
    fn longer_transfers_put_a_list_in_prp2() {
        let p = prps(0x10_0000, 3 * 4096, L).unwrap();
        assert_eq!((p.prp1, p.prp2), (0x10_0000, L));
        assert_eq!(p.list, [0x10_1000, 0x10_2000]);
        // 64 KiB: PRP1 and 15 list entries, each page aligned.
        let p = prps(0x20_0000, 65536, L).unwrap();
        assert_eq!(p.list.len(), 15);
        assert!(p.list.iter().all(|e| e % 4096 == 0));
        assert_eq!(p.list.last(), Some(&0x20_F000));
        // An offset start: the list starts at the next page boundary.
        let p = prps(0x20_0800, 65536, L).unwrap();
        assert_eq!(
            (p.prp1, p.list.len(), p.list[0]),
            (0x20_0800, 16, 0x20_1000)
        );
        assert_eq!(
            encode_list(&[0x1122_3344_5566_7000, 0x8000])[..12],
            [0x00, 0x70, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, 0x00, 0x80, 0, 0]
        );
        // The largest: 1 + 512 pages.
        assert_eq!(prps(0, 513 * 4096, L).unwrap().list.len(), LIST_ENTRIES);
    }

    #[test]
    fn malformed_transfers_are_refused() {
        assert_eq!(prps(0x1000, 0, L), Err(PrpError::Empty));
        assert_eq!(
            prps(0x1002, 512, L),
            Err(PrpError::Unaligned { phys: 0x1002 })
        );
        assert_eq!(
            prps(0, 514 * 4096, L),
            Err(PrpError::TooLarge { pages: 514 })
        );
        assert_eq!(
            prps(0, 3 * 4096, 0x9008),
            Err(PrpError::ListUnaligned { phys: 0x9008 })
        );
    }
}
