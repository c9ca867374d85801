//! Host tests of the Linux boot-protocol loader (bzImage header, zero page, e820, initrd).

use super::*;
use alloc::vec;
use alloc::vec::Vec;

use crate::test_mem::Mem;

const MIB: u64 = 1 << 20;
const RAM: u64 = 64 * MIB;
const LOAD: u64 = 0x100_0000;
const INIT: u32 = 0x40_0000;

/// A synthetic bzImage: a boot sector plus `setup_sects` setup sectors holding a protocol
/// 2.15 header, then `payload` (a multiple of 16 bytes) as the protected-mode kernel.
fn bzimage_with(stored_setup_sects: u8, payload: &[u8]) -> Vec<u8> {
    let sects = if stored_setup_sects == 0 {
        4
    } else {
        stored_setup_sects
    };
    let mut b = vec![0u8; (usize::from(sects) + 1) * 512];
    b[SETUP_SECTS] = stored_setup_sects;
    b[0x1FA..0x1FC].copy_from_slice(&0xFFFFu16.to_le_bytes()); // vid_mode
    b[SYSSIZE..SYSSIZE + 4].copy_from_slice(&(payload.len() as u32 / 16).to_le_bytes());
    b[BOOT_FLAG..BOOT_FLAG + 2].copy_from_slice(&0xAA55u16.to_le_bytes());
    b[JUMP] = 0xEB;
    b[JUMP + 1] = 0x6A; // header ends at 0x26C (2.15: kernel_info_offset)
    b[HEADER_MAGIC..HEADER_MAGIC + 4].copy_from_slice(b"HdrS");
    b[VERSION..VERSION + 2].copy_from_slice(&0x020Fu16.to_le_bytes());
    b[0x20E..0x210].copy_from_slice(&0x3C0u16.to_le_bytes()); // kernel_version
    b[LOADFLAGS] = LOADED_HIGH;
    b[CODE32_START..CODE32_START + 4].copy_from_slice(&0x10_0000u32.to_le_bytes());
    b[INITRD_ADDR_MAX..INITRD_ADDR_MAX + 4].copy_from_slice(&0x7FFF_FFFFu32.to_le_bytes());
    b[KERNEL_ALIGNMENT..KERNEL_ALIGNMENT + 4].copy_from_slice(&0x20_0000u32.to_le_bytes());
    b[RELOCATABLE_KERNEL] = 0;
    b[MIN_ALIGNMENT] = 21;
    b[XLOADFLAGS..XLOADFLAGS + 2]
        .copy_from_slice(&(XLF_KERNEL_64 | XLF_CAN_BE_LOADED_ABOVE_4G).to_le_bytes());
    b[CMDLINE_SIZE..CMDLINE_SIZE + 4].copy_from_slice(&2047u32.to_le_bytes());
    b[PAYLOAD_OFFSET..PAYLOAD_OFFSET + 4].copy_from_slice(&0x3A0u32.to_le_bytes());
    b[PAYLOAD_LENGTH..PAYLOAD_LENGTH + 4].copy_from_slice(&0x40u32.to_le_bytes());
    b[PREF_ADDRESS..PREF_ADDRESS + 8].copy_from_slice(&LOAD.to_le_bytes());
    b[INIT_SIZE..INIT_SIZE + 4].copy_from_slice(&INIT.to_le_bytes());
    b[0x264..0x268].copy_from_slice(&0x190u32.to_le_bytes()); // handover_offset
    b[0x268..0x26C].copy_from_slice(&0x1234u32.to_le_bytes()); // kernel_info_offset
                                                               // Bytes after the header (start_of_setup) must not reach the zero page.
    b[0x26C..0x300].fill(0xCC);
    b.extend_from_slice(payload);
    b
}

fn payload() -> Vec<u8> {
    (0..0x400u32).map(|i| (i * 7 + 1) as u8).collect()
}

fn bzimage() -> Vec<u8> {
    bzimage_with(4, &payload())
}

fn config<'a>(ram: u64, cmdline: &'a str, initrd: Option<&'a [u8]>) -> LinuxConfig<'a> {
    LinuxConfig {
        ram,
        cmdline,
        initrd,
        e820_extra: &[],
    }
}

fn set32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn e820(mem: &Mem) -> Vec<(u64, u64, u32)> {
    let z = ZERO_PAGE_GPA;
    (0..u64::from(mem.u8(z + 0x1E8)))
        .map(|i| {
            let at = z + 0x2D0 + i * 20;
            (mem.u64(at), mem.u64(at + 8), mem.u32(at + 16))
        })
        .collect()
}

#[test]
fn parses_the_header() {
    let h = parse_header(&bzimage()).unwrap();
    assert_eq!(
        h,
        SetupHeader {
            version: 0x020F,
            setup_sects: 4,
            syssize: 0x40,
            header_end: 0x26C,
            loadflags: LOADED_HIGH,
            initrd_addr_max: 0x7FFF_FFFF,
            kernel_alignment: 0x20_0000,
            relocatable_kernel: false,
            min_alignment: 21,
            xloadflags: 3,
            cmdline_size: 2047,
            payload_offset: 0x3A0,
            payload_length: 0x40,
            pref_address: LOAD,
            init_size: INIT,
            kernel_offset: 0xA00,
            kernel_size: 0x400,
        }
    );
    // setup_sects 0 means 4.
    let h0 = parse_header(&bzimage_with(0, &payload())).unwrap();
    assert_eq!((h0.setup_sects, h0.kernel_offset), (4, 0xA00));
    let h2 = parse_header(&bzimage_with(2, &payload())).unwrap();
    assert_eq!((h2.setup_sects, h2.kernel_offset), (2, 0x600));
}

#[test]
fn loads_a_good_image() {
    let image = bzimage();
    let initrd: Vec<u8> = (0..0x1801u32).map(|i| i as u8 ^ 0x5A).collect();
    let mut mem = Mem::new(RAM);
    let s = load_linux(
        &image,
        &config(RAM, "console=ttyS0 panic=-1", Some(&initrd)),
        &mut mem,
    )
    .unwrap();
    assert_eq!(
        s,
        BootState {
            mode: EntryMode::Long64 { cr3: PML4_GPA },
            rip: LOAD + 0x200,
            rsp: BOOT_STACK_TOP,
            rdi: 0,
            rsi: ZERO_PAGE_GPA,
        }
    );
    let z = ZERO_PAGE_GPA;
    // The whole zero page is written; bytes outside the header and the loader's fields
    // stay zero (sentinel at 0x1EF in particular).
    assert!(mem.written(z) && mem.written(z + 0xFFF));
    assert_eq!(mem.u8(z + 0x1EF), 0, "sentinel");
    assert!(mem.read(z, 0xC0).iter().all(|&b| b == 0), "screen_info..");
    // The setup header, copied from the image's 0x1F1 up to 0x26C.
    assert_eq!(mem.u8(z + 0x1F1), 4, "setup_sects");
    assert_eq!(mem.u32(z + 0x1F4), 0x40, "syssize");
    assert_eq!(mem.u16(z + 0x1FA), 0xFFFF, "vid_mode");
    assert_eq!(mem.u16(z + 0x1FE), 0xAA55, "boot_flag");
    assert_eq!(mem.u16(z + 0x200), 0x6AEB, "jump");
    assert_eq!(&mem.read(z + 0x202, 4), b"HdrS");
    assert_eq!(mem.u16(z + 0x206), 0x020F, "version");
    assert_eq!(mem.u16(z + 0x20E), 0x3C0, "kernel_version");
    assert_eq!(mem.u32(z + 0x22C), 0x7FFF_FFFF, "initrd_addr_max");
    assert_eq!(mem.u32(z + 0x230), 0x20_0000, "kernel_alignment");
    assert_eq!(mem.u8(z + 0x234), 0, "relocatable_kernel");
    assert_eq!(mem.u8(z + 0x235), 21, "min_alignment");
    assert_eq!(mem.u16(z + 0x236), 3, "xloadflags");
    assert_eq!(mem.u32(z + 0x238), 2047, "cmdline_size");
    assert_eq!(mem.u64(z + 0x258), LOAD, "pref_address");
    assert_eq!(mem.u32(z + 0x260), INIT, "init_size");
    assert_eq!(mem.u32(z + 0x264), 0x190, "handover_offset");
    assert_eq!(mem.u32(z + 0x268), 0x1234, "kernel_info_offset");
    assert!(
        mem.read(z + 0x26C, 0x290 - 0x26C).iter().all(|&b| b == 0),
        "nothing past the header end"
    );
    // The loader's fields.
    assert_eq!(mem.u8(z + 0x210), 0xFF, "type_of_loader");
    assert_eq!(mem.u8(z + 0x211), LOADED_HIGH | CAN_USE_HEAP, "loadflags");
    assert_eq!(mem.u32(z + 0x214), LOAD as u32, "code32_start");
    assert_eq!(mem.u16(z + 0x224), 0xDE00, "heap_end_ptr");
    assert_eq!(mem.u32(z + 0x228), CMDLINE_GPA as u32, "cmd_line_ptr");
    assert_eq!(mem.u32(z + 0xC8), 0, "ext_cmd_line_ptr");
    // initrd: top of RAM, 4 KiB aligned.
    let at = (RAM - initrd.len() as u64) & !0xFFF;
    assert_eq!(mem.u32(z + 0x218), at as u32, "ramdisk_image");
    assert_eq!(mem.u32(z + 0x21C), 0x1801, "ramdisk_size");
    assert_eq!(
        (mem.u32(z + 0xC0), mem.u32(z + 0xC4)),
        (0, 0),
        "ext_ramdisk"
    );
    assert_eq!(mem.read(at, initrd.len()), initrd);
    // e820.
    assert_eq!(
        e820(&mem),
        vec![
            (0, 0x9FC00, 1),
            (0x9FC00, 0x100000 - 0x9FC00, 2),
            (0x100000, RAM - 0x100000, 1)
        ]
    );
    // Command line, NUL-terminated; the protected-mode kernel at pref_address.
    assert_eq!(
        mem.read(CMDLINE_GPA, 24),
        b"console=ttyS0 panic=-1\0\0".to_vec()
    );
    assert!(mem.written(CMDLINE_GPA + 22));
    assert_eq!(mem.read(LOAD, 0x400), payload());
    assert!(!mem.written(LOAD + 0x400) && !mem.written(LOAD - 1));
    // The long-mode environment.
    assert_eq!(mem.u64(PML4_GPA), crate::loader::PDPT_GPA | 3);
    assert_eq!(mem.u64(GDT_GPA + 8), 0x00af_9b00_0000_ffff);
}

#[test]
fn nothing_overlaps() {
    let image = bzimage();
    let initrd = vec![1u8; 0x3000];
    let mut mem = Mem::new(RAM);
    load_linux(&image, &config(RAM, "x", Some(&initrd)), &mut mem).unwrap();
    let mut ranges: Vec<(u64, u64)> = mem
        .writes
        .iter()
        .map(|(a, d)| (*a, a + d.len() as u64))
        .collect();
    ranges.push((LOAD, LOAD + u64::from(INIT)));
    ranges.push((BOOT_STACK_GPA, BOOT_STACK_TOP));
    ranges.sort();
    // Writes of the long-mode environment: GDT, TSS, PML4, PDPT, PDs (each distinct).
    for w in ranges.windows(2) {
        let (a, b) = (w[0], w[1]);
        let nested = a.0 == LOAD && b.0 == LOAD; // the payload inside init_size
        assert!(a.1 <= b.0 || nested, "{a:x?} overlaps {b:x?}");
    }
}

#[test]
fn initrd_goes_below_initrd_addr_max() {
    let mut image = bzimage();
    set32(&mut image, INITRD_ADDR_MAX, 0x37F_FFFF); // the highest byte: 56 MiB - 1
    let initrd = vec![7u8; 0x1234];
    let mut mem = Mem::new(RAM);
    load_linux(&image, &config(RAM, "", Some(&initrd)), &mut mem).unwrap();
    let at = mem.u32(ZERO_PAGE_GPA + 0x218);
    assert_eq!(at, 0x37F_E000);
    assert!(u64::from(at) + 0x1234 <= 0x380_0000);
    // An empty initrd is no initrd; an empty command line is a lone NUL.
    let mut mem = Mem::new(RAM);
    load_linux(&image, &config(RAM, "", Some(&[])), &mut mem).unwrap();
    assert_eq!(mem.u32(ZERO_PAGE_GPA + 0x218), 0);
    assert_eq!(mem.u32(ZERO_PAGE_GPA + 0x21C), 0);
    assert!(mem.written(CMDLINE_GPA) && mem.u8(CMDLINE_GPA) == 0);
}

#[test]
fn initrd_fills_the_gap_below_the_kernel_when_above_is_too_small() {
    // RAM ends 4 KiB after the kernel's init_size region; the initrd goes below the kernel.
    let ram = LOAD + u64::from(INIT) + 0x1000;
    let initrd = vec![9u8; 0x2000];
    let mut mem = Mem::new(ram);
    load_linux(&bzimage(), &config(ram, "", Some(&initrd)), &mut mem).unwrap();
    assert_eq!(mem.u32(ZERO_PAGE_GPA + 0x218), (LOAD - 0x2000) as u32);
}

#[test]
fn big_memory_with_an_mmio_window() {
    // 8 GiB of RAM with the virtio-mmio window reserved at 0xD0000000..4 GiB: RAM is split
    // around it, the initrd stays below both the window and 4 GiB.
    let ram = 8 << 30;
    let mut image = bzimage();
    set32(&mut image, INITRD_ADDR_MAX, 0xFFFF_FFFF);
    let window = [E820Entry {
        addr: 0xD000_0000,
        size: 0x3000_0000,
        kind: E820Kind::Reserved,
    }];
    let initrd = vec![3u8; 0x10_0000];
    let mut mem = Mem::new(ram);
    let cfg = LinuxConfig {
        ram,
        cmdline: "quiet",
        initrd: Some(&initrd),
        e820_extra: &window,
    };
    load_linux(&image, &cfg, &mut mem).unwrap();
    assert_eq!(
        e820(&mem),
        vec![
            (0, 0x9FC00, 1),
            (0x9FC00, 0x60400, 2),
            (0x100000, 0xD000_0000 - 0x100000, 1),
            (0xD000_0000, 0x3000_0000, 2),
            (1 << 32, ram - (1 << 32), 1),
        ]
    );
    assert_eq!(mem.u32(ZERO_PAGE_GPA + 0x218), 0xCFF0_0000);
    assert_eq!(mem.u32(ZERO_PAGE_GPA + 0xC0), 0);
}

#[test]
fn relocatable_kernels_use_the_aligned_runtime_start() {
    let mut image = bzimage();
    image[RELOCATABLE_KERNEL] = 1;
    // pref_address off the 2 MiB alignment: init_size counts from the aligned-up start.
    image[PREF_ADDRESS..PREF_ADDRESS + 8].copy_from_slice(&0x110_0000u64.to_le_bytes());
    let need = 0x120_0000 + u64::from(INIT);
    let mut mem = Mem::new(RAM);
    let s = load_linux(&image, &config(need - 1, "", None), &mut mem);
    assert_eq!(
        s,
        Err(LinuxError::KernelDoesNotFit {
            need,
            ram: need - 1
        })
    );
    let s = load_linux(&image, &config(need, "", None), &mut mem).unwrap();
    assert_eq!(s.rip, 0x110_0200);
    set32(&mut image, KERNEL_ALIGNMENT, 0x30_0000);
    assert!(matches!(
        load_linux(&image, &config(RAM, "", None), &mut mem),
        Err(LinuxError::BadHeader(_))
    ));
}

#[test]
fn header_errors() {
    let good = bzimage();
    let p = |b: &[u8]| parse_header(b);
    assert_eq!(p(b"MZ"), Err(LinuxError::NotBzImage));
    assert_eq!(p(&[]), Err(LinuxError::NotBzImage));
    let mut b = good.clone();
    b[BOOT_FLAG] = 0;
    assert_eq!(p(&b), Err(LinuxError::NotBzImage));
    let mut b = good.clone();
    b[HEADER_MAGIC] = b'h';
    assert_eq!(p(&b), Err(LinuxError::NotBzImage));
    let mut b = good.clone();
    b[LOADFLAGS] = 0;
    assert_eq!(p(&b), Err(LinuxError::NotBzImage), "zImage");
    let mut b = good.clone();
    b[VERSION..VERSION + 2].copy_from_slice(&0x020Bu16.to_le_bytes());
    assert_eq!(p(&b), Err(LinuxError::ProtocolTooOld { version: 0x020B }));
    let mut b = good.clone();
    b[XLOADFLAGS] = XLF_CAN_BE_LOADED_ABOVE_4G as u8;
    assert_eq!(p(&b), Err(LinuxError::No64BitEntry));
    let mut b = good.clone();
    b[JUMP + 1] = 0x62; // header ends at 0x264: no handover_offset
    assert!(matches!(p(&b), Err(LinuxError::BadHeader(_))));
    let mut b = good.clone();
    set32(&mut b, SYSSIZE, 0);
    assert!(matches!(p(&b), Err(LinuxError::BadHeader(_))));
    let mut b = good.clone();
    set32(&mut b, SYSSIZE, 0x41);
    assert!(matches!(p(&b), Err(LinuxError::Truncated(_))));
    assert!(matches!(
        p(&good[..good.len() - 1]),
        Err(LinuxError::Truncated(_))
    ));
    assert!(matches!(p(&good[..0x800]), Err(LinuxError::Truncated(_))));
    // A kernel too short to hold the entry point at 0x200.
    let short = bzimage_with(4, &[0x90; 0x200]);
    assert!(matches!(p(&short), Err(LinuxError::Truncated(_))));
    // A huge jump byte is clamped when copying: nothing past 0x290 comes from the image.
    let mut b = good.clone();
    b[JUMP + 1] = 0xFF;
    b[0x26C..0x400].fill(0xEE);
    let mut mem = Mem::new(RAM);
    load_linux(&b, &config(RAM, "", None), &mut mem).unwrap();
    assert_eq!(mem.u8(ZERO_PAGE_GPA + 0x28F), 0xEE);
    assert!(mem
        .read(ZERO_PAGE_GPA + 0x290, 0x40)
        .iter()
        .all(|&x| x == 0));
}

#[test]
fn placement_errors() {
    let image = bzimage();
    let mut mem = Mem::new(RAM);
    let need = LOAD + u64::from(INIT);
    assert_eq!(
        load_linux(&image, &config(16 * MIB, "", None), &mut mem),
        Err(LinuxError::KernelDoesNotFit {
            need,
            ram: 16 * MIB
        })
    );
    // A pref_address in low memory, above 4 GiB, or a region inside a reserved window.
    for pref in [0x8_0000u64, 5 << 30] {
        let mut b = image.clone();
        b[PREF_ADDRESS..PREF_ADDRESS + 8].copy_from_slice(&pref.to_le_bytes());
        assert!(matches!(
            load_linux(&b, &config(8 << 30, "", None), &mut mem),
            Err(LinuxError::KernelNotInRam { .. })
        ));
    }
    let mut b = image.clone();
    b[PREF_ADDRESS..PREF_ADDRESS + 8].copy_from_slice(&(u64::MAX - 0xFFF).to_le_bytes());
    assert!(matches!(
        load_linux(&b, &config(RAM, "", None), &mut mem),
        Err(LinuxError::KernelNotInRam { .. })
    ));
    let hole = [E820Entry {
        addr: LOAD + 0x10_0000,
        size: 0x1000,
        kind: E820Kind::Reserved,
    }];
    let cfg = LinuxConfig {
        e820_extra: &hole,
        ..config(RAM, "", None)
    };
    assert_eq!(
        load_linux(&image, &cfg, &mut mem),
        Err(LinuxError::KernelNotInRam {
            start: LOAD,
            end: need
        })
    );
    // initrd too large: the room is everything above the kernel plus the gap below it.
    let initrd = vec![0u8; RAM as usize];
    let room = RAM - need;
    assert_eq!(
        load_linux(&image, &config(RAM, "", Some(&initrd)), &mut mem),
        Err(LinuxError::InitrdDoesNotFit { size: RAM, room })
    );
    // Command line.
    let mut b = image.clone();
    set32(&mut b, CMDLINE_SIZE, 8);
    assert!(load_linux(&b, &config(RAM, "12345678", None), &mut mem).is_ok());
    assert_eq!(
        load_linux(&b, &config(RAM, "123456789", None), &mut mem),
        Err(LinuxError::CmdlineTooLong { len: 9, max: 8 })
    );
    let mut b = image.clone();
    set32(&mut b, CMDLINE_SIZE, u32::MAX);
    let long = "x".repeat(CMDLINE_AREA_SIZE as usize);
    assert_eq!(
        load_linux(&b, &config(RAM, &long, None), &mut mem),
        Err(LinuxError::CmdlineTooLong {
            len: CMDLINE_AREA_SIZE,
            max: CMDLINE_AREA_SIZE - 1
        })
    );
    assert_eq!(
        load_linux(&image, &config(RAM, "a\0b", None), &mut mem),
        Err(LinuxError::CmdlineHasNul)
    );
    // e820.
    let wrap = [E820Entry {
        addr: u64::MAX,
        size: 2,
        kind: E820Kind::Reserved,
    }];
    let cfg = LinuxConfig {
        e820_extra: &wrap,
        ..config(RAM, "", None)
    };
    assert_eq!(
        load_linux(&image, &cfg, &mut mem),
        Err(LinuxError::BadE820 {
            addr: u64::MAX,
            size: 2
        })
    );
    let many: Vec<E820Entry> = (0..130u64)
        .map(|i| E820Entry {
            addr: 0x1_0000_0000 + i * 0x2000,
            size: 0x1000,
            kind: E820Kind::Reserved,
        })
        .collect();
    let cfg = LinuxConfig {
        e820_extra: &many,
        ..config(8 << 30, "", None)
    };
    assert!(matches!(
        load_linux(&image, &cfg, &mut mem),
        Err(LinuxError::TooManyE820Entries { .. })
    ));
    // Guest memory refuses a write: the VM claims more RAM than it backs.
    let mut small = Mem::new(8 * MIB);
    assert!(matches!(
        load_linux(&image, &config(RAM, "", None), &mut small),
        Err(LinuxError::Load(LoadError::OutsideRam { .. }))
    ));
}

#[test]
fn messages_say_what_to_do() {
    use alloc::string::ToString;
    let m = LinuxError::KernelDoesNotFit {
        need: 0x140_0000,
        ram: 16 * MIB,
    }
    .to_string();
    assert_eq!(
        m,
        "the kernel needs guest RAM up to 0x1400000 (20 MiB) to decompress, the VM has 16 \
         MiB; give the VM more memory (memory = \"128M\")"
    );
    let m = LinuxError::ProtocolTooOld { version: 0x020B }.to_string();
    assert!(m.contains("2.11"), "{m}");
    let m = LinuxError::InitrdDoesNotFit {
        size: 10 * MIB,
        room: 3 * MIB,
    }
    .to_string();
    assert!(m.contains("7 MiB more"), "{m}");
    assert_eq!(suggest_mib(200 * MIB), Some(256));
    // Never beyond what `memory =` accepts (issue 9: it advised 4096M).
    assert_eq!(suggest_mib(3000 * MIB), Some(3328));
    assert_eq!(suggest_mib(3328 * MIB), Some(3328));
    assert_eq!(suggest_mib(3329 * MIB), None);
    assert_eq!(suggest_mib(u64::MAX), None);
    let m = LinuxError::KernelDoesNotFit {
        need: 0xFFFF_FFFF,
        ram: 64 * MIB,
    }
    .to_string();
    assert_eq!(
        m,
        "the kernel needs guest RAM up to 0xffffffff (4096 MiB) to decompress, more than a \
         VM can have (3328 MiB, memory = \"3328M\"); its init_size is implausible: rebuild \
         the kernel or use arch/x86/boot/bzImage"
    );
    // Every suggestion parses.
    for need in [MIB, 100 * MIB, 1000 * MIB, 3000 * MIB, 3328 * MIB] {
        let mib = suggest_mib(need).unwrap();
        let text = alloc::format!("[vm.a]\nkind = \"linux\"\nimage = \"b\"\nmemory = \"{mib}M\"\n");
        let c = crate::config::Config::parse(text.as_bytes()).unwrap();
        assert!(c.vms[0].memory >= need);
    }
}

#[test]
fn every_prefix_is_refused_without_panicking() {
    let image = bzimage();
    let initrd = [1u8; 16];
    for n in 0..image.len() {
        let mut mem = Mem::new(RAM);
        assert!(
            load_linux(&image[..n], &config(RAM, "x", Some(&initrd)), &mut mem).is_err(),
            "prefix {n}"
        );
    }
}

#[test]
fn mangled_headers_never_panic() {
    let image = bzimage();
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..3000 {
        let mut b = image.clone();
        for _ in 0..1 + next() % 6 {
            let at = 0x1F1 + (next() % 0x80) as usize;
            b[at] = next() as u8;
        }
        let ram = [0, MIB, RAM, u64::MAX][(next() % 4) as usize];
        let mut mem = Mem::new(RAM);
        let _ = load_linux(&b, &config(ram, "console=ttyS0", Some(&[1; 64])), &mut mem);
    }
}

mod acpi_tests;
