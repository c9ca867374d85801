//! Host tests of the PVH loader: the `hvm_start_info` layout, the entry note, the module list,
//! the memory map, placement and malformed images.

use super::*;
use crate::acpi::{AcpiConfig, GuestTables, BIOS_AREA_GPA};
use crate::linux::E820Kind;
use alloc::vec;
use alloc::vec::Vec;

use crate::test_mem::Mem;

const RAM: u64 = 128 << 20;
const KERNEL: u64 = 0x100_0000;
const ENTRY: u64 = KERNEL + 0x40;

/// A minimal ELF64 like Linux's vmlinux: a PT_LOAD of 0x100 file bytes at KERNEL (memsz
/// 0x4000) whose e_entry is virtual, and a PT_NOTE holding a GNU note then the Xen PVH note
/// with a `desc_len`-byte descriptor.
fn vmlinux(desc_len: usize) -> Vec<u8> {
    let mut img = vec![0u8; 0x400];
    img[..4].copy_from_slice(b"\x7fELF");
    img[4] = 2;
    img[5] = 1;
    img[6] = 1;
    img[16..18].copy_from_slice(&2u16.to_le_bytes());
    img[18..20].copy_from_slice(&62u16.to_le_bytes());
    img[24..32].copy_from_slice(&0xffff_ffff_8100_0000u64.to_le_bytes());
    img[32..40].copy_from_slice(&64u64.to_le_bytes());
    img[54..56].copy_from_slice(&56u16.to_le_bytes());
    img[56..58].copy_from_slice(&2u16.to_le_bytes());
    let ph = |img: &mut Vec<u8>, at: usize, kind: u32, off: u64, paddr: u64, fs: u64, ms: u64| {
        img[at..at + 4].copy_from_slice(&kind.to_le_bytes());
        for (o, v) in [
            (8, off),
            (16, paddr | 0xffff_ffff_0000_0000),
            (24, paddr),
            (32, fs),
            (40, ms),
        ] {
            img[at + o..at + o + 8].copy_from_slice(&v.to_le_bytes());
        }
    };
    // Notes at 0x200: GNU build id (type 3, name "GNU"), then Xen PHYS32_ENTRY.
    let mut notes = Vec::new();
    for (name, kind, desc) in [
        (&b"GNU\0"[..], 3u32, vec![0xEEu8; 20]),
        (
            &b"Xen\0"[..],
            XEN_ELFNOTE_PHYS32_ENTRY,
            ENTRY.to_le_bytes()[..desc_len.min(8)].to_vec(),
        ),
    ] {
        let desc = if desc_len > 8 && kind == XEN_ELFNOTE_PHYS32_ENTRY {
            vec![0u8; desc_len]
        } else {
            desc
        };
        notes.extend_from_slice(&(name.len() as u32).to_le_bytes());
        notes.extend_from_slice(&(desc.len() as u32).to_le_bytes());
        notes.extend_from_slice(&kind.to_le_bytes());
        notes.extend_from_slice(name);
        notes.extend_from_slice(&desc);
        while notes.len() % 4 != 0 {
            notes.push(0);
        }
    }
    ph(&mut img, 64, 1, 0x300, KERNEL, 0x100, 0x4000);
    ph(
        &mut img,
        64 + 56,
        4,
        0x200,
        0,
        notes.len() as u64,
        notes.len() as u64,
    );
    img[0x200..0x200 + notes.len()].copy_from_slice(&notes);
    for (i, b) in img[0x300..0x400].iter_mut().enumerate() {
        *b = i as u8;
    }
    img
}

fn window() -> [E820Entry; 1] {
    [E820Entry {
        addr: 0xD000_0000,
        size: 0x10_0000,
        kind: E820Kind::Reserved,
    }]
}

#[test]
fn start_info_layout_matches_start_info_h() {
    // struct hvm_start_info (version 1), hvm_modlist_entry, hvm_memmap_table_entry.
    assert_eq!(
        (
            SI_MAGIC,
            SI_VERSION,
            SI_FLAGS,
            SI_NR_MODULES,
            SI_MODLIST_PADDR
        ),
        (0, 4, 8, 12, 16)
    );
    assert_eq!(
        (
            SI_CMDLINE_PADDR,
            SI_RSDP_PADDR,
            SI_MEMMAP_PADDR,
            SI_MEMMAP_ENTRIES
        ),
        (24, 32, 40, 48)
    );
    assert_eq!(
        (START_INFO_SIZE, MODLIST_ENTRY_SIZE, MEMMAP_ENTRY_SIZE),
        (56, 32, 24)
    );
    assert_eq!(START_MAGIC, 0x336e_c578);
}

#[test]
fn linux_like_kernel_gets_the_start_info() {
    let initrd = vec![0x5Au8; 70_000];
    let tables = GuestTables::build(&AcpiConfig::new(2), BIOS_AREA_GPA).unwrap();
    let extra = window();
    let cfg = PvhConfig {
        ram: RAM,
        cmdline: "console=ttyS0 rdinit=/init",
        initrd: Some(&initrd),
        e820_extra: &extra,
        acpi: Some(&tables),
    };
    let mut mem = Mem::new(RAM);
    let boot = load_pvh(&vmlinux(4), &cfg, &mut mem).unwrap();
    assert_eq!(
        boot.mode,
        EntryMode::Flat32 {
            eax: 0,
            ebx: START_INFO_GPA as u32
        }
    );
    assert_eq!(
        boot.rip, ENTRY,
        "the note's physical entry, not the virtual e_entry"
    );
    let si = START_INFO_GPA;
    assert_eq!(mem.u32(si), START_MAGIC);
    assert_eq!(mem.u32(si + 4), 1);
    assert_eq!(mem.u32(si + 8), 0);
    assert_eq!(mem.u32(si + 12), 1);
    assert_eq!(mem.cstr(mem.u64(si + 24)), b"console=ttyS0 rdinit=/init");
    assert_eq!(mem.u64(si + 32), tables.rsdp_gpa());
    assert_eq!(mem.read(tables.base_gpa(), 8), b"RSD PTR ");
    // Module 0: the initrd, 4 KiB aligned, clear of the kernel, below the top of RAM.
    let m = mem.u64(si + 16);
    let (at, size) = (mem.u64(m), mem.u64(m + 8));
    assert_eq!((size, at % 0x1000, mem.u64(m + 16)), (70_000, 0, 0));
    assert!(at >= KERNEL + 0x4000 && at + size <= RAM);
    assert_eq!(mem.read(at, 70_000), initrd);
    // The kernel segment at its physical address, BSS zeroed.
    let expect: Vec<u8> = (0..=255u8).collect();
    assert_eq!(mem.read(KERNEL, 0x100), expect);
    assert_eq!(mem.read(KERNEL + 0x100, 0x3f00), vec![0; 0x3f00]);
    // The memory map: E820 types, reserved BIOS area (with the ACPI tables), the window.
    let (map, n) = (mem.u64(si + 40), mem.u32(si + 48));
    let entries: Vec<(u64, u64, u32, u32)> = (0..u64::from(n))
        .map(|i| {
            let e = map + i * 24;
            (mem.u64(e), mem.u64(e + 8), mem.u32(e + 16), mem.u32(e + 20))
        })
        .collect();
    assert_eq!(
        entries,
        vec![
            (0, 0x9_FC00, 1, 0),
            (0x9_FC00, 0x6_0400, 2, 0),
            (0x10_0000, RAM - 0x10_0000, 1, 0),
            (0xD000_0000, 0x10_0000, 2, 0),
        ]
    );
}

#[test]
fn eight_byte_note_and_no_initrd() {
    let cfg = PvhConfig {
        ram: RAM,
        cmdline: "",
        initrd: None,
        e820_extra: &[],
        acpi: None,
    };
    let mut mem = Mem::new(RAM);
    let boot = load_pvh(&vmlinux(8), &cfg, &mut mem).unwrap();
    assert_eq!(boot.rip, ENTRY);
    let si = START_INFO_GPA;
    assert_eq!(
        (mem.u32(si + 12), mem.u64(si + 16), mem.u64(si + 32)),
        (0, 0, 0)
    );
}

#[test]
fn notes_and_placement_are_checked() {
    let cfg = PvhConfig {
        ram: RAM,
        cmdline: "",
        initrd: None,
        e820_extra: &[],
        acpi: None,
    };
    let mut mem = Mem::new(RAM);
    assert_eq!(
        load_pvh(&vmlinux(6), &cfg, &mut mem),
        Err(PvhError::BadPvhNote { size: 6 })
    );
    // Renaming the owner leaves no PVH note.
    let mut img = vmlinux(4);
    let at = img.windows(4).position(|w| w == b"Xen\0").unwrap();
    img[at] = b'Y';
    assert_eq!(load_pvh(&img, &cfg, &mut mem), Err(PvhError::NoPvhNote));
    let e = PvhError::NoPvhNote.to_string();
    assert!(
        e.contains("CONFIG_PVH=y") && e.contains("kind = \"linux\""),
        "{e}"
    );
    // A note whose size runs past its segment.
    let mut img = vmlinux(4);
    img[0x204..0x208].copy_from_slice(&0x1000u32.to_le_bytes());
    assert_eq!(
        load_pvh(&img, &cfg, &mut mem),
        Err(PvhError::Elf(LoadError::Truncated("note")))
    );
    // Too little RAM for the kernel segment; an initrd that does not fit.
    let small = PvhConfig {
        ram: 16 << 20,
        ..cfg
    };
    assert!(matches!(
        load_pvh(&vmlinux(4), &small, &mut Mem::new(16 << 20)),
        Err(PvhError::Load(LoadError::SegmentOutsideRam { .. }))
    ));
    let big = vec![0u8; RAM as usize];
    let huge = PvhConfig {
        initrd: Some(&big),
        ..cfg
    };
    assert!(matches!(
        load_pvh(&vmlinux(4), &huge, &mut mem),
        Err(PvhError::InitrdDoesNotFit { .. })
    ));
    // A bzImage is refused with the hint.
    let e = load_pvh(&[0u8; 600], &cfg, &mut mem).unwrap_err();
    assert!(e.to_string().contains("not the bzImage"), "{e}");
    // An entry outside the segment.
    let mut img = vmlinux(4);
    let at = img.windows(4).position(|w| w == b"Xen\0").unwrap() + 4;
    img[at..at + 4].copy_from_slice(&0x20_0000u32.to_le_bytes());
    assert_eq!(
        load_pvh(&img, &cfg, &mut mem),
        Err(PvhError::EntryOutsideImage { entry: 0x20_0000 })
    );
}

#[test]
fn mangled_images_never_panic() {
    let cfg = PvhConfig {
        ram: RAM,
        cmdline: "x",
        initrd: Some(&[1, 2, 3]),
        e820_extra: &[],
        acpi: None,
    };
    let base = vmlinux(4);
    let mut seed = 0x9e37_79b9u32;
    for round in 0..3000 {
        let mut img = base.clone();
        for _ in 0..4 {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            let at = seed as usize % img.len();
            img[at] = (seed >> 24) as u8;
        }
        if round % 7 == 0 {
            img.truncate(seed as usize % img.len());
        }
        let _ = load_pvh(&img, &cfg, &mut Mem::new(RAM));
    }
}
