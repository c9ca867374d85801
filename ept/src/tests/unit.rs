//! Unit tests. `Invalidation` results of setup calls are not asserted
//! everywhere (they are in `invalidation_kinds` and the property test).
#![allow(unused_must_use)]

use super::fake::{audit, new_ept, FakeAlloc, FakeMem, BASE};
use crate::entry;
use crate::{
    Access, Attributes, Ept, EptConfig, EptError, Gpa, Hpa, Invalidation, InveptType, MemoryType,
    PageSize, GPA_LIMIT,
};

const K4: u64 = 1 << 12;
const M2: u64 = 1 << 21;
const G1: u64 = 1 << 30;
const WB: MemoryType = MemoryType::WriteBack;
const UC: MemoryType = MemoryType::Uncacheable;

fn all_pages() -> EptConfig {
    EptConfig {
        page_1g: true,
        ..EptConfig::default()
    }
}

fn gpa(a: u64) -> Gpa {
    Gpa::new(a)
}

fn hpa(a: u64) -> Hpa {
    Hpa::new(a)
}

fn size_at(ept: &super::fake::FakeEpt, a: u64) -> Option<PageSize> {
    ept.translate(gpa(a)).map(|t| t.page_size)
}

#[test]
fn picks_largest_page_size_allowed_by_alignment_and_length() {
    let mut ept = new_ept(all_pages(), 64);
    let len = G1 + M2 + K4;
    assert_eq!(
        ept.map(gpa(G1), hpa(4 * G1), len, Access::RWX, WB),
        Ok(Invalidation::None)
    );
    assert_eq!(size_at(&ept, G1), Some(PageSize::Size1G));
    assert_eq!(size_at(&ept, 2 * G1), Some(PageSize::Size2M));
    assert_eq!(size_at(&ept, 2 * G1 + M2), Some(PageSize::Size4K));
    assert_eq!(size_at(&ept, 2 * G1 + M2 + K4), None);
    // root + PDPT + PD + PT
    assert_eq!(ept.table_frames(), 4);

    // HPA only 2 MiB aligned: no 1 GiB page even though the GPA is.
    ept.map(gpa(4 * G1), hpa(8 * G1 + M2), G1, Access::READ, WB)
        .unwrap();
    assert_eq!(size_at(&ept, 4 * G1), Some(PageSize::Size2M));
    // GPA only 4 KiB aligned, len covers a 2 MiB boundary: 4K up to it, then 2M.
    ept.map(
        gpa(6 * G1 - K4),
        hpa(10 * G1 - K4),
        M2 + K4,
        Access::READ,
        WB,
    )
    .unwrap();
    assert_eq!(size_at(&ept, 6 * G1 - K4), Some(PageSize::Size4K));
    assert_eq!(size_at(&ept, 6 * G1), Some(PageSize::Size2M));
    assert_eq!(audit(&ept), ept.table_frames());
}

#[test]
fn config_disables_large_pages() {
    let mut ept = new_ept(
        EptConfig {
            page_1g: false,
            ..EptConfig::default()
        },
        64,
    );
    ept.map(gpa(0), hpa(0), G1, Access::RW, WB).unwrap();
    assert_eq!(size_at(&ept, 0), Some(PageSize::Size2M));
    assert_eq!(size_at(&ept, G1 - K4), Some(PageSize::Size2M));

    let mut ept = new_ept(
        EptConfig {
            page_2m: false,
            page_1g: true,
            ..EptConfig::default()
        },
        64,
    );
    ept.map(gpa(0), hpa(0), G1 + M2, Access::RW, WB).unwrap();
    assert_eq!(size_at(&ept, 0), Some(PageSize::Size1G));
    assert_eq!(size_at(&ept, G1), Some(PageSize::Size4K));
}

#[test]
fn translate_at_offsets_within_each_page_size() {
    let mut ept = new_ept(all_pages(), 64);
    ept.map(gpa(0), hpa(3 * G1), G1, Access::RWX, WB).unwrap();
    ept.map(
        gpa(G1),
        hpa(5 * G1 + 4 * M2),
        M2,
        Access::RX,
        MemoryType::WriteThrough,
    )
    .unwrap();
    ept.map_with(
        gpa(G1 + M2),
        hpa(0x1234_5000),
        K4,
        Attributes {
            access: Access::READ,
            memory_type: UC,
            ignore_pat: true,
        },
    )
    .unwrap();
    for off in [0, 1, 0xfff, 0x1000, M2 + 7, G1 - 1] {
        let t = ept.translate(gpa(off)).unwrap();
        assert_eq!(t.hpa, hpa(3 * G1 + off));
        assert_eq!(
            (t.access, t.memory_type, t.ignore_pat),
            (Access::RWX, WB, false)
        );
    }
    for off in [0, 0x123, M2 - 1] {
        let t = ept.translate(gpa(G1 + off)).unwrap();
        assert_eq!(t.hpa, hpa(5 * G1 + 4 * M2 + off));
        assert_eq!(
            (t.access, t.memory_type, t.page_size),
            (Access::RX, MemoryType::WriteThrough, PageSize::Size2M)
        );
    }
    let t = ept.translate(gpa(G1 + M2 + 0xabc)).unwrap();
    assert_eq!(t.hpa, hpa(0x1234_5abc));
    assert_eq!(
        (t.memory_type, t.ignore_pat, t.page_size),
        (UC, true, PageSize::Size4K)
    );
    assert_eq!(ept.translate(gpa(G1 + M2 + K4)), None);
    assert_eq!(ept.translate(gpa(GPA_LIMIT)), None);
    assert_eq!(ept.translate(gpa(u64::MAX)), None);
}

#[test]
fn unmap_inside_1g_page_splits_and_keeps_the_rest() {
    let mut ept = new_ept(all_pages(), 64);
    let h = 7 * G1;
    ept.map(gpa(0), hpa(h), G1, Access::RW, MemoryType::WriteProtected)
        .unwrap();
    assert_eq!(ept.table_frames(), 2);
    let inv = ept.unmap(gpa(M2 + K4), K4).unwrap();
    assert_eq!(inv, Invalidation::SingleContext(ept.eptp()));
    // root + PDPT + PD + PT
    assert_eq!(ept.table_frames(), 4);
    let expect = [
        (0, Some(PageSize::Size2M)),
        (M2, Some(PageSize::Size4K)),
        (M2 + K4, None),
        (M2 + 2 * K4, Some(PageSize::Size4K)),
        (2 * M2 - K4, Some(PageSize::Size4K)),
        (2 * M2, Some(PageSize::Size2M)),
        (G1 - 1, Some(PageSize::Size2M)),
    ];
    for (a, size) in expect {
        let t = ept.translate(gpa(a));
        assert_eq!(t.map(|t| t.page_size), size, "at {a:#x}");
        if let Some(t) = t {
            assert_eq!(t.hpa, hpa(h + a));
            assert_eq!(
                (t.access, t.memory_type),
                (Access::RW, MemoryType::WriteProtected)
            );
        }
    }
    assert_eq!(audit(&ept), 4);

    // Unmapping a 2 MiB-aligned hole needs only the PD.
    let mut ept = new_ept(all_pages(), 64);
    ept.map(gpa(0), hpa(h), G1, Access::RW, WB).unwrap();
    ept.unmap(gpa(4 * M2), 2 * M2).unwrap();
    assert_eq!(ept.table_frames(), 3);
    assert_eq!(size_at(&ept, 3 * M2), Some(PageSize::Size2M));
    assert_eq!(size_at(&ept, 4 * M2), None);
    assert_eq!(size_at(&ept, 6 * M2), Some(PageSize::Size2M));
}

#[test]
fn unmap_range_straddling_two_large_pages() {
    let mut ept = new_ept(all_pages(), 64);
    ept.map(gpa(0), hpa(0), 2 * G1, Access::RWX, WB).unwrap();
    // From 4K before the 1G boundary to 4K after it.
    ept.unmap(gpa(G1 - K4), 2 * K4).unwrap();
    assert_eq!(size_at(&ept, G1 - 2 * K4), Some(PageSize::Size4K));
    assert_eq!(size_at(&ept, G1 - K4), None);
    assert_eq!(size_at(&ept, G1), None);
    assert_eq!(size_at(&ept, G1 + K4), Some(PageSize::Size4K));
    assert_eq!(size_at(&ept, G1 + M2), Some(PageSize::Size2M));
    // root, PDPT, 2 PDs, 2 PTs
    assert_eq!(ept.table_frames(), 6);
    assert_eq!(audit(&ept), 6);
}

#[test]
fn unmap_everything_leaves_only_the_root_and_destroy_frees_all() {
    let mut ept = new_ept(all_pages(), 256);
    ept.map(gpa(0), hpa(0), G1, Access::RWX, WB).unwrap();
    ept.map(gpa(3 * G1 + K4), hpa(K4), 5 * M2, Access::READ, WB)
        .unwrap();
    ept.map(gpa(600 * G1), hpa(G1), K4, Access::READ, WB)
        .unwrap();
    ept.unmap(gpa(G1 / 2), K4).unwrap();
    assert!(ept.table_frames() > 4);
    assert!(ept.unmap(gpa(0), 1024 * G1).unwrap().is_required());
    assert_eq!(ept.table_frames(), 1);
    assert_eq!(ept.allocator().outstanding(), 1 + ept.pending_frames());
    let pending = ept.pending_frames();
    assert_eq!(ept.reclaim_tables(), pending);
    assert_eq!(ept.allocator().outstanding(), 1);
    assert_eq!(ept.reclaim_tables(), 0);
    // Nothing left: unmapping again needs no invalidation.
    assert_eq!(ept.unmap(gpa(0), 1024 * G1), Ok(Invalidation::None));

    // Recycled frames are full of garbage: mapping again must still work.
    ept.map(gpa(5 * G1 + K4), hpa(K4), 3 * M2, Access::RW, WB)
        .unwrap();
    assert_eq!(audit(&ept), ept.table_frames());
    assert_eq!(ept.translate(gpa(5 * G1)), None);
    ept.unmap(gpa(5 * G1 + 2 * M2), K4).unwrap();
    let (alloc, _mem) = ept.destroy();
    assert_eq!(alloc.outstanding(), 0);
}

#[test]
fn protect_changes_access_and_splits() {
    let mut ept = new_ept(all_pages(), 64);
    ept.map(gpa(0), hpa(G1), M2, Access::RWX, WB).unwrap();
    let inv = ept.protect(gpa(K4), K4, Access::READ).unwrap();
    assert_eq!(inv, Invalidation::SingleContext(ept.eptp()));
    assert_eq!(ept.translate(gpa(0)).unwrap().access, Access::RWX);
    let t = ept.translate(gpa(K4 + 5)).unwrap();
    assert_eq!(
        (t.access, t.hpa, t.page_size),
        (Access::READ, hpa(G1 + K4 + 5), PageSize::Size4K)
    );
    assert_eq!(ept.translate(gpa(2 * K4)).unwrap().access, Access::RWX);
    // Same rights again: nothing changes.
    assert_eq!(
        ept.protect(gpa(K4), K4, Access::READ),
        Ok(Invalidation::None)
    );
    // Whole large page, no split.
    ept.map(gpa(M2), hpa(0), M2, Access::READ, WB).unwrap();
    let frames = ept.table_frames();
    assert!(ept.protect(gpa(M2), M2, Access::RW).unwrap().is_required());
    assert_eq!(ept.table_frames(), frames);
    assert_eq!(size_at(&ept, M2), Some(PageSize::Size2M));
    assert_eq!(ept.translate(gpa(M2)).unwrap().access, Access::RW);
    // Holes are refused without changing anything.
    assert_eq!(
        ept.protect(gpa(M2), 2 * M2, Access::READ),
        Err(EptError::NotMapped(gpa(2 * M2)))
    );
    assert_eq!(ept.translate(gpa(M2)).unwrap().access, Access::RW);
}

#[test]
fn split_preserves_accessed_and_dirty_flags() {
    let config = EptConfig {
        accessed_dirty_supported: true,
        accessed_dirty: true,
        ..all_pages()
    };
    let mut ept = new_ept(config, 64);
    ept.map(gpa(0), hpa(0), M2, Access::RW, WB).unwrap();
    let root = ept.eptp().pml4();
    let mem = ept.memory();
    let pdpt = Hpa::new(entry::address(mem.entry(root, 0)));
    let pd = Hpa::new(entry::address(mem.entry(pdpt, 0)));
    let e = mem.entry(pd, 0);
    mem.set_entry(pd, 0, e | entry::ACCESSED | entry::DIRTY);
    ept.protect(gpa(0), K4, Access::READ).unwrap();
    let mem = ept.memory();
    let pt = Hpa::new(entry::address(mem.entry(pd, 0)));
    for idx in [0, 1, 511] {
        let e = mem.entry(pt, idx);
        assert_eq!(
            e & (entry::ACCESSED | entry::DIRTY),
            entry::ACCESSED | entry::DIRTY
        );
        assert_eq!(e & entry::LARGE, 0);
    }
}

#[test]
fn already_mapped_is_refused_without_side_effects() {
    let mut ept = new_ept(all_pages(), 64);
    ept.map(gpa(M2 + 5 * K4), hpa(0), K4, Access::READ, WB)
        .unwrap();
    let frames = ept.table_frames();
    assert_eq!(
        ept.map(gpa(0), hpa(0), G1, Access::READ, WB),
        Err(EptError::AlreadyMapped(gpa(M2 + 5 * K4)))
    );
    assert_eq!(ept.table_frames(), frames);
    assert_eq!(ept.translate(gpa(0)), None);
    ept.map(gpa(0), hpa(0), M2, Access::READ, WB).unwrap();
    assert_eq!(
        ept.map(gpa(M2 - K4), hpa(0), K4, Access::READ, WB),
        Err(EptError::AlreadyMapped(gpa(M2 - K4)))
    );
}

#[test]
fn every_bad_argument_has_its_own_error() {
    let mut ept = new_ept(
        EptConfig {
            max_phys_bits: 40,
            ..all_pages()
        },
        64,
    );
    let r = Access::READ;
    assert_eq!(
        ept.map(gpa(1), hpa(0), K4, r, WB),
        Err(EptError::MisalignedGpa(gpa(1)))
    );
    assert_eq!(
        ept.map(gpa(0), hpa(0x800), K4, r, WB),
        Err(EptError::MisalignedHpa(hpa(0x800)))
    );
    assert_eq!(ept.map(gpa(0), hpa(0), 0, r, WB), Err(EptError::ZeroLength));
    assert_eq!(
        ept.map(gpa(0), hpa(0), 100, r, WB),
        Err(EptError::MisalignedLength(100))
    );
    let top = !0xfff_u64;
    assert_eq!(
        ept.map(gpa(top), hpa(0), 2 * K4, r, WB),
        Err(EptError::GpaOverflow {
            gpa: gpa(top),
            len: 2 * K4
        })
    );
    assert_eq!(
        ept.map(gpa(GPA_LIMIT - K4), hpa(0), 2 * K4, r, WB),
        Err(EptError::GpaOutOfRange {
            gpa: gpa(GPA_LIMIT - K4),
            len: 2 * K4
        })
    );
    assert_eq!(
        ept.map(gpa(0), hpa(top), 2 * K4, r, WB),
        Err(EptError::HpaOverflow {
            hpa: hpa(top),
            len: 2 * K4
        })
    );
    assert_eq!(
        ept.map(gpa(0), hpa((1 << 40) - K4), 2 * K4, r, WB),
        Err(EptError::HpaOutOfRange {
            hpa: hpa((1 << 40) - K4),
            len: 2 * K4,
            max_phys_bits: 40
        })
    );
    assert_eq!(
        ept.map(gpa(0), hpa(0), K4, Access::empty(), WB),
        Err(EptError::EmptyAccess)
    );
    assert_eq!(
        ept.map(gpa(0), hpa(0), K4, Access::from_bits_retain(1 << 5 | 1), WB),
        Err(EptError::InvalidAccessBits(0x21))
    );
    assert_eq!(
        ept.map(gpa(0), hpa(0), K4, Access::WRITE, WB),
        Err(EptError::WriteWithoutRead)
    );
    let wx = Access::WRITE | Access::EXECUTE;
    assert_eq!(
        ept.map(gpa(0), hpa(0), K4, wx, WB),
        Err(EptError::WriteWithoutRead)
    );
    assert_eq!(
        ept.map(gpa(0), hpa(0), K4, Access::EXECUTE, WB),
        Err(EptError::ExecuteOnlyUnsupported)
    );
    let ux = Access::READ | Access::USER_EXECUTE;
    assert_eq!(
        ept.map(gpa(0), hpa(0), K4, ux, WB),
        Err(EptError::UserExecuteUnsupported)
    );
    // The last valid page below 2^48 and the last valid frame below 2^40 work.
    ept.map(gpa(GPA_LIMIT - K4), hpa((1 << 40) - K4), K4, r, WB)
        .unwrap();
    assert_eq!(
        ept.translate(gpa(GPA_LIMIT - 1)).unwrap().hpa,
        hpa((1 << 40) - 1)
    );
    // unmap/protect validate the same way.
    assert_eq!(ept.unmap(gpa(3), K4), Err(EptError::MisalignedGpa(gpa(3))));
    assert_eq!(ept.unmap(gpa(0), 0), Err(EptError::ZeroLength));
    assert_eq!(
        ept.unmap(gpa(0), K4 + 1),
        Err(EptError::MisalignedLength(K4 + 1))
    );
    assert_eq!(
        ept.unmap(gpa(GPA_LIMIT), K4),
        Err(EptError::GpaOutOfRange {
            gpa: gpa(GPA_LIMIT),
            len: K4
        })
    );
    assert_eq!(
        ept.protect(gpa(GPA_LIMIT - K4), K4, Access::WRITE),
        Err(EptError::WriteWithoutRead)
    );
    assert_eq!(ept.protect(gpa(0), K4, r), Err(EptError::NotMapped(gpa(0))));
    // Config errors.
    let bad = EptConfig {
        max_phys_bits: 53,
        ..EptConfig::default()
    };
    assert_eq!(
        Ept::new(FakeAlloc::new(4), FakeMem::new(4), bad).err(),
        Some(EptError::InvalidPhysicalAddressWidth(53))
    );
    let bad = EptConfig {
        eptp_memory_type: MemoryType::WriteThrough,
        ..EptConfig::default()
    };
    assert_eq!(
        Ept::new(FakeAlloc::new(4), FakeMem::new(4), bad).err(),
        Some(EptError::InvalidEptpMemoryType(MemoryType::WriteThrough))
    );
    assert_eq!(
        Ept::new(FakeAlloc::new(0), FakeMem::new(0), EptConfig::default()).err(),
        Some(EptError::OutOfMemory)
    );
    let mut alloc = FakeAlloc::new(4);
    alloc.bogus_next = Some(hpa(BASE + 8));
    assert_eq!(
        Ept::new(&mut alloc, FakeMem::new(4), EptConfig::default()).err(),
        Some(EptError::InvalidTableFrame(hpa(BASE + 8)))
    );
    assert_eq!(alloc.outstanding(), 0);
}

#[test]
fn error_messages_say_what_is_wrong() {
    let msg = EptError::HpaOutOfRange {
        hpa: hpa(0x1000),
        len: 0x2000,
        max_phys_bits: 39,
    }
    .to_string();
    assert!(msg.contains("0x1000") && msg.contains("39-bit"), "{msg}");
    assert!(EptError::WriteWithoutRead
        .to_string()
        .contains("misconfiguration"));
    assert!(EptError::AlreadyMapped(gpa(0x5000))
        .to_string()
        .contains("0x5000"));
}

#[test]
fn execute_only_and_user_execute_when_configured() {
    let config = EptConfig {
        execute_only: true,
        mode_based_execute: true,
        ..all_pages()
    };
    let mut ept = new_ept(config, 64);
    ept.map(gpa(0), hpa(0), K4, Access::EXECUTE, WB).unwrap();
    ept.map(gpa(K4), hpa(0), K4, Access::USER_EXECUTE, WB)
        .unwrap();
    ept.map(
        gpa(2 * K4),
        hpa(0),
        K4,
        Access::READ | Access::USER_EXECUTE,
        WB,
    )
    .unwrap();
    assert_eq!(ept.translate(gpa(K4)).unwrap().access, Access::USER_EXECUTE);
    assert_eq!(
        ept.map(gpa(3 * K4), hpa(0), K4, Access::WRITE, WB),
        Err(EptError::WriteWithoutRead)
    );
    // Non-leaf entries grant user-mode execute too (bit 10).
    let root = ept.eptp().pml4();
    assert_ne!(ept.memory().entry(root, 0) & entry::USER_EXECUTE, 0);
}

#[test]
fn eptp_encoding() {
    let ept = new_ept(EptConfig::default(), 8);
    let root = ept.eptp().pml4();
    assert_eq!(root, hpa(BASE));
    assert_eq!(ept.eptp().bits(), BASE | 6 | (3 << 3));
    assert_eq!(ept.eptp().page_walk_length(), 4);
    assert_eq!(ept.eptp().memory_type(), Some(WB));
    assert!(!ept.eptp().accessed_dirty());

    let uc = new_ept(
        EptConfig {
            eptp_memory_type: UC,
            ..EptConfig::default()
        },
        8,
    );
    assert_eq!(uc.eptp().bits(), BASE | (3 << 3));

    let ad = EptConfig {
        accessed_dirty_supported: true,
        accessed_dirty: true,
        ..EptConfig::default()
    };
    assert_eq!(new_ept(ad, 8).eptp().bits(), BASE | 6 | (3 << 3) | (1 << 6));
    let unsupported = EptConfig {
        accessed_dirty: true,
        ..EptConfig::default()
    };
    assert!(!new_ept(unsupported, 8).eptp().accessed_dirty());
    let not_requested = EptConfig {
        accessed_dirty_supported: true,
        ..EptConfig::default()
    };
    assert!(!new_ept(not_requested, 8).eptp().accessed_dirty());
}

#[test]
fn invalidation_kinds() {
    let mut ept = new_ept(all_pages(), 64);
    let eptp = ept.eptp();
    assert_eq!(
        ept.map(gpa(0), hpa(0), M2, Access::RW, WB),
        Ok(Invalidation::None)
    );
    // Filling a not-present entry below an existing table: still nothing.
    assert_eq!(
        ept.map(gpa(M2), hpa(0), K4, Access::RW, WB),
        Ok(Invalidation::None)
    );
    assert_eq!(ept.unmap(gpa(G1), K4), Ok(Invalidation::None));
    let inv = ept.unmap(gpa(0), K4).unwrap();
    assert_eq!(inv, Invalidation::SingleContext(eptp));
    assert!(Invalidation::None.merge(inv).is_required());
    assert_eq!(
        Invalidation::None.merge(Invalidation::None),
        Invalidation::None
    );
    let (ty, desc) = inv.invept().unwrap();
    assert_eq!(ty, InveptType::SingleContext);
    assert_eq!((desc.eptp, desc.reserved), (eptp.bits(), 0));
    assert_eq!(core::mem::size_of_val(&desc), 16);
    assert_eq!(core::mem::align_of_val(&desc), 16);
    assert_eq!(Invalidation::None.invept(), None);
}

#[test]
fn out_of_memory_rolls_back() {
    let mut ept = new_ept(all_pages(), 64);
    ept.map(gpa(0), hpa(0), K4, Access::READ, WB).unwrap();
    assert_eq!(ept.table_frames(), 4);
    // The page at G1 - 4K fits in the existing PT; the one at G1 needs a new
    // PD and PT. With one frame left the PD is allocated, the PT is not.
    ept.allocator_limit(1);
    assert_eq!(
        ept.map(gpa(G1 - K4), hpa(0), 2 * K4, Access::READ, WB),
        Err(EptError::OutOfMemory)
    );
    assert_eq!(ept.translate(gpa(G1 - K4)), None);
    assert_eq!(ept.translate(gpa(G1)), None);
    assert_eq!(ept.table_frames(), 4);
    assert_eq!(ept.pending_frames(), 1);
    ept.reclaim_tables();
    assert_eq!(ept.allocator().outstanding(), 4);
    assert_eq!(audit(&ept), 4);

    // Splitting a 1 GiB page down to 4 KiB needs 2 frames: with 1 it fails
    // before touching anything.
    let mut ept = new_ept(all_pages(), 64);
    ept.map(gpa(0), hpa(0), G1, Access::RW, WB).unwrap();
    ept.allocator_limit(1);
    assert_eq!(ept.unmap(gpa(K4), K4), Err(EptError::OutOfMemory));
    assert_eq!(
        ept.protect(gpa(K4), K4, Access::READ),
        Err(EptError::OutOfMemory)
    );
    assert_eq!(size_at(&ept, K4), Some(PageSize::Size1G));
    assert_eq!(ept.translate(gpa(K4)).unwrap().access, Access::RW);
    assert_eq!(ept.allocator().outstanding(), 2);
    // Two frames are enough for one end; both ends in the same 2 MiB page
    // share the PT.
    ept.allocator_limit(2);
    ept.unmap(gpa(K4), K4).unwrap();
    assert_eq!(size_at(&ept, 0), Some(PageSize::Size4K));
    assert_eq!(size_at(&ept, K4), None);
}

impl super::fake::FakeEpt {
    fn allocator_limit(&mut self, n: usize) {
        // Test-only access to the owned fake allocator.
        self.allocator_mut().limit_to(n);
    }
}
