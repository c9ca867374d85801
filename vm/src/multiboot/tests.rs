//! Host tests of the Multiboot loader: header search and checks, the a.out-kludge and ELF
//! paths, the `multiboot_info` layout, the memory map, modules and malformed images.

use super::*;
use alloc::vec;
use alloc::vec::Vec;

use crate::test_mem::Mem;

const RAM: u64 = 64 << 20;
const LOAD: u32 = 0x10_0000;

/// An a.out-kludge kernel: header at file offset 0x40 (4-aligned), code after it, loaded at
/// 1 MiB with 0x1000 bytes of BSS.
fn kludge(flags: u32) -> Vec<u8> {
    let mut img = vec![0x90u8; 0x200];
    let h = 0x40;
    let flags = flags | FLAG_AOUT_KLUDGE;
    let words = [
        HEADER_MAGIC,
        flags,
        0u32.wrapping_sub(HEADER_MAGIC.wrapping_add(flags)),
        LOAD + h as u32,
        LOAD,
        LOAD + 0x200,
        LOAD + 0x1200,
        LOAD + 0x100,
    ];
    for (i, w) in words.iter().enumerate() {
        img[h + i * 4..h + i * 4 + 4].copy_from_slice(&w.to_le_bytes());
    }
    img
}

/// A minimal ELF32 executable: one PT_LOAD of 0x100 file bytes at `paddr`, memsz 0x2000,
/// and a Multiboot header without flag 16 in it.
fn elf32(paddr: u32) -> Vec<u8> {
    let mut img = vec![0u8; 0x200];
    img[..4].copy_from_slice(b"\x7fELF");
    img[4] = 1; // ELFCLASS32
    img[5] = 1; // little endian
    img[6] = 1;
    img[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    img[18..20].copy_from_slice(&3u16.to_le_bytes()); // EM_386
    img[24..28].copy_from_slice(&(paddr + 0x10).to_le_bytes()); // e_entry
    img[28..32].copy_from_slice(&52u32.to_le_bytes()); // e_phoff
    img[42..44].copy_from_slice(&32u16.to_le_bytes()); // e_phentsize
    img[44..46].copy_from_slice(&1u16.to_le_bytes()); // e_phnum
    let ph = 52;
    for (o, v) in [
        (0, 1u32),
        (4, 0x100),
        (8, paddr),
        (12, paddr),
        (16, 0x100),
        (20, 0x2000),
    ] {
        img[ph + o..ph + o + 4].copy_from_slice(&v.to_le_bytes());
    }
    let h = 0x100;
    let flags = FLAG_PAGE_ALIGN | FLAG_MEMORY_INFO;
    for (i, w) in [
        HEADER_MAGIC,
        flags,
        0u32.wrapping_sub(HEADER_MAGIC.wrapping_add(flags)),
    ]
    .iter()
    .enumerate()
    {
        img[h + i * 4..h + i * 4 + 4].copy_from_slice(&w.to_le_bytes());
    }
    img
}

fn config<'a>(modules: &'a [Module<'a>], extra: &'a [E820Entry]) -> MultibootConfig<'a> {
    MultibootConfig {
        ram: RAM,
        cmdline: "console=ttyS0 check",
        modules,
        e820_extra: extra,
        acpi: None,
    }
}

#[test]
fn info_layout_matches_the_specification() {
    // Multiboot 0.6.96 §3.3: the offsets of the fields Bulkhead fills.
    assert_eq!(
        (
            INFO_MEM_LOWER,
            INFO_MEM_UPPER,
            INFO_CMDLINE_PTR,
            INFO_MODS_COUNT
        ),
        (4, 8, 16, 20)
    );
    assert_eq!(
        (
            INFO_MODS_ADDR,
            INFO_MMAP_LENGTH,
            INFO_MMAP_ADDR,
            INFO_BOOT_LOADER_NAME
        ),
        (24, 44, 48, 64)
    );
    assert_eq!((INFO_SIZE, MODULE_SIZE, MMAP_ENTRY_SIZE), (116, 16, 24));
}

#[test]
fn kludge_kernel_boots_with_the_info_structure() {
    let module = [0xA5u8; 5000];
    let mods = [Module {
        data: &module,
        string: "initrd.bin",
    }];
    let window = [E820Entry {
        addr: 0xD000_0000,
        size: 0x10_0000,
        kind: E820Kind::Reserved,
    }];
    let mut mem = Mem::new(RAM);
    let img = kludge(FLAG_PAGE_ALIGN | FLAG_MEMORY_INFO);
    let boot = load_multiboot(&img, &config(&mods, &window), &mut mem).unwrap();
    assert_eq!(
        boot.mode,
        EntryMode::Flat32 {
            eax: 0x2BAD_B002,
            ebx: INFO_GPA as u32
        }
    );
    assert_eq!(boot.rip, u64::from(LOAD) + 0x100);
    // The image is at load_addr, BSS zeroed to bss_end_addr.
    assert_eq!(mem.read(u64::from(LOAD), 0x200), img);
    assert_eq!(mem.read(u64::from(LOAD) + 0x200, 0x1000), vec![0; 0x1000]);
    let flags = mem.u32(INFO_GPA);
    assert_eq!(
        flags,
        INFO_MEMORY | INFO_CMDLINE | INFO_MODS | INFO_MMAP | INFO_LOADER_NAME
    );
    assert_eq!(mem.u32(INFO_GPA + 4), 639, "mem_lower: 0x9FC00 bytes");
    assert_eq!(mem.u32(INFO_GPA + 8), ((RAM >> 10) - 1024) as u32);
    assert_eq!(
        mem.cstr(u64::from(mem.u32(INFO_GPA + 16))),
        b"console=ttyS0 check"
    );
    assert_eq!(mem.cstr(u64::from(mem.u32(INFO_GPA + 64))), b"Bulkhead");
    // Module 0: page aligned, below the top of RAM, outside the kernel, bytes intact.
    assert_eq!(mem.u32(INFO_GPA + 20), 1);
    let mods_addr = u64::from(mem.u32(INFO_GPA + 24));
    let (start, end) = (mem.u32(mods_addr), mem.u32(mods_addr + 4));
    assert_eq!(start % 0x1000, 0);
    assert_eq!(end - start, 5000);
    assert!(u64::from(end) <= RAM && start >= LOAD + 0x1200);
    assert_eq!(mem.read(u64::from(start), 5000), module);
    assert_eq!(mem.cstr(u64::from(mem.u32(mods_addr + 8))), b"initrd.bin");
    // mmap: size words of 20, RAM/reserved entries in address order, the window reserved.
    let (len, addr) = (mem.u32(INFO_GPA + 44), u64::from(mem.u32(INFO_GPA + 48)));
    assert_eq!(len as usize % MMAP_ENTRY_SIZE, 0);
    let entries: Vec<(u64, u64, u32)> = (0..u64::from(len) / 24)
        .map(|i| {
            let e = addr + i * 24;
            assert_eq!(mem.u32(e), 20);
            (mem.u64(e + 4), mem.u64(e + 12), mem.u32(e + 20))
        })
        .collect();
    assert_eq!(
        entries,
        vec![
            (0, 0x9_FC00, 1),
            (0x9_FC00, 0x6_0400, 2),
            (0x10_0000, RAM - 0x10_0000, 1),
            (0xD000_0000, 0x10_0000, 2),
        ]
    );
    // Everything Bulkhead writes below 1 MiB stays below the reserved area.
    for (at, data) in &mem.writes {
        if *at < 0x10_0000 {
            assert!(at + data.len() as u64 <= 0x9_FC00, "{at:#x}");
        }
    }
}

#[test]
fn elf_kernel_loads_its_segments() {
    let img = elf32(0x20_0000);
    let mut mem = Mem::new(RAM);
    let boot = load_multiboot(&img, &config(&[], &[]), &mut mem).unwrap();
    assert_eq!(boot.rip, 0x20_0010);
    assert_eq!(mem.read(0x20_0000, 0x100), img[0x100..0x200]);
    assert_eq!(mem.read(0x20_0100, 0x1f00), vec![0; 0x1f00]);
    assert_eq!(mem.u32(INFO_GPA) & INFO_MODS, 0);
}

#[test]
fn header_checks() {
    assert_eq!(parse_header(&[0u8; 100]), Err(MultibootError::NoHeader));
    // Beyond 8 KiB the magic is not a header.
    let mut far = vec![0u8; 9000];
    far[8192..8196].copy_from_slice(&HEADER_MAGIC.to_le_bytes());
    assert_eq!(parse_header(&far), Err(MultibootError::NoHeader));
    // Unaligned magic is not a header either.
    let mut odd = vec![0u8; 64];
    odd[2..6].copy_from_slice(&HEADER_MAGIC.to_le_bytes());
    assert_eq!(parse_header(&odd), Err(MultibootError::NoHeader));
    let mut bad = kludge(0);
    bad[0x48] ^= 1;
    assert_eq!(
        parse_header(&bad),
        Err(MultibootError::BadChecksum { offset: 0x40 })
    );
    assert_eq!(
        parse_header(&kludge(FLAG_VIDEO_MODE)),
        Err(MultibootError::VideoModeRequired)
    );
    assert_eq!(
        parse_header(&kludge(1 << 5)),
        Err(MultibootError::UnknownRequiredFlags { flags: 1 << 5 })
    );
    let e = MultibootError::VideoModeRequired.to_string();
    assert!(e.contains("flag 2") && e.contains("clear the flag"), "{e}");
    // Optional bits (16-31) other than 16 are ignored.
    assert!(parse_header(&kludge(1 << 20)).is_ok());
}

#[test]
fn bad_addresses_and_placement_are_refused() {
    let mut mem = Mem::new(RAM);
    // load_end_addr beyond the file.
    let mut img = kludge(0);
    let end = u32::from_le_bytes(img[0x54..0x58].try_into().unwrap());
    img[0x54..0x58].copy_from_slice(&(end + 0x1000).to_le_bytes());
    assert_eq!(
        load_multiboot(&img, &config(&[], &[]), &mut mem),
        Err(MultibootError::BadAddresses(
            "load_end_addr lies beyond the end of the file"
        ))
    );
    // A kernel below 1 MiB (in the reserved area) and one past the end of RAM.
    assert!(matches!(
        load_multiboot(&elf32(0x9_0000), &config(&[], &[]), &mut mem),
        Err(MultibootError::Load(
            LoadError::SegmentBelowImageBase { .. }
        ))
    ));
    assert!(matches!(
        load_multiboot(&elf32(RAM as u32 - 0x1000), &config(&[], &[]), &mut mem),
        Err(MultibootError::Load(LoadError::SegmentOutsideRam { .. }))
    ));
    // A module larger than RAM.
    let big = vec![0u8; RAM as usize];
    let mods = [Module {
        data: &big,
        string: "big",
    }];
    assert!(matches!(
        load_multiboot(&kludge(0), &config(&mods, &[]), &mut mem),
        Err(MultibootError::ModuleDoesNotFit { .. })
    ));
    let e = load_multiboot(&[0u8; 64], &config(&[], &[]), &mut mem).unwrap_err();
    assert!(e.to_string().contains("no Multiboot header"), "{e}");
}

#[test]
fn kludge_address_consistency() {
    let h = parse_header(&kludge(0)).unwrap();
    let a = h.addresses.unwrap();
    let img = kludge(0);
    let check = |a: Addresses| kludge_image(&img, &h, &a).map(|_| ());
    assert_eq!(
        check(Addresses {
            load_addr: a.header_addr + 4,
            ..a
        }),
        Err(MultibootError::BadAddresses(
            "load_addr is above header_addr"
        ))
    );
    assert_eq!(
        check(Addresses {
            load_addr: a.header_addr - 0x100,
            ..a
        }),
        Err(MultibootError::BadAddresses(
            "load_addr lies before the start of the file"
        ))
    );
    assert_eq!(
        check(Addresses {
            bss_end_addr: a.load_addr + 0x10,
            ..a
        }),
        Err(MultibootError::BadAddresses(
            "bss_end_addr is below the end of the loaded image"
        ))
    );
    assert_eq!(
        check(Addresses {
            entry_addr: a.bss_end_addr + 4,
            ..a
        }),
        Err(MultibootError::BadAddresses(
            "entry_addr is outside the loaded image"
        ))
    );
}

#[test]
fn mangled_images_never_panic() {
    let base = kludge(FLAG_MEMORY_INFO);
    let elf = elf32(0x20_0000);
    let mut seed = 0x1234_5678u32;
    for round in 0..3000 {
        let mut img = if round % 2 == 0 {
            base.clone()
        } else {
            elf.clone()
        };
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
        let mut mem = Mem::new(RAM);
        let _ = load_multiboot(&img, &config(&[], &[]), &mut mem);
    }
}
