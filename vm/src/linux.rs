//! Loading a Linux bzImage with the x86 boot protocol's 64-bit entry
//! (Documentation/arch/x86/boot.rst, "THE LINUX/x86 BOOT PROTOCOL", sections "The Real-Mode
//! Kernel Header", "Details of Header Fields", "Loading The Rest of The Kernel" and "64-bit Boot
//! Protocol"; the `struct boot_params` layout is Documentation/arch/x86/zero-page.rst and
//! arch/x86/include/uapi/asm/bootparam.h).
//!
//! The image comes from a user's bundle: every field is checked, every offset and sum is
//! checked, and a bad image gives a [`LinuxError`] that says what to do; nothing panics.
//!
//! # Guest memory map
//!
//! | GPA                             | Contents                                                |
//! |---------------------------------|---------------------------------------------------------|
//! | `0x0000..0x0FFF`                | unused, left zero (real-mode IVT/BDA: no EBDA pointer)  |
//! | `0x1000..0x1027`                | GDT ([`GDT_GPA`]): 0x08 code64, 0x10 data, 0x18 TSS     |
//! | `0x2000..0x2FFF`                | TSS ([`TSS_GPA`])                                       |
//! | `0x3000..0x3FFF`                | PML4 ([`PML4_GPA`], the entry CR3)                      |
//! | `0x4000..0x4FFF`                | PDPT ([`PDPT_GPA`](crate::loader::PDPT_GPA))                                     |
//! | `0x5000..0x8FFF`                | 4 page directories: identity map of 0..4 GiB, 2 MiB pages |
//! | `0x9000..0x9FFF`                | zero page, `struct boot_params` ([`ZERO_PAGE_GPA`])     |
//! | `0xA000..0xDFFF`                | boot stack, RSP = [`BOOT_STACK_TOP`] = `0xE000`         |
//! | `0x2_0000..0x2_FFFF`            | kernel command line, NUL-terminated ([`CMDLINE_GPA`])   |
//! | `0x9_D000..0x9_EFFF`            | the decompressor's 32-bit trampoline, only when it must toggle 5-level paging (it takes the 8 KiB below the first RAM end under 0x9F000, saves and restores them) |
//! | `0x9_FC00..0xF_FFFF`            | e820 reserved (EBDA, VGA, BIOS area)                    |
//! | `0xE_0000..`                    | ACPI tables when given ([`LinuxExtras::acpi`], `vm::acpi`), RSDP first; `acpi_rsdp_addr` points at it |
//! | `pref_address..+init_size`      | protected-mode kernel (0x100_0000 for the test guest)   |
//! | top of RAM below `initrd_addr_max` and 4 GiB | initrd, 4 KiB aligned                      |
//!
//! The e820 map given to the kernel: RAM `[0, 0x9FC00)`, reserved `[0x9FC00, 0x100000)`, RAM
//! `[0x100000, ram)`, and the caller's extra entries (the virtio-mmio window as reserved); RAM
//! entries are split around every extra entry so nothing overlaps.
//!
//! # Entry state (boot.rst, "64-bit Boot Protocol")
//!
//! 64-bit mode, paging on with CR3 = [`PML4_GPA`] (the identity map covers the kernel's
//! `init_size` region, the zero page, the command line and the initrd: everything is placed
//! below 4 GiB), interrupts disabled, RIP = load address + 0x200 (`startup_64`), RSI = the zero
//! page, RSP = [`BOOT_STACK_TOP`].
//!
//! Selectors: boot.rst asks for a GDT with flat `__BOOT_CS` = 0x10 and `__BOOT_DS` = 0x18 and
//! CS/DS/ES/SS loaded with them. Bulkhead's long-mode environment has code64 at 0x08, data at
//! 0x10 and the TSS at 0x18, so the guest enters with CS = 0x08, DS = ES = SS = 0x10. This works:
//! `startup_64` in arch/x86/boot/compressed/head_64.S (Linux 6.1) loads null selectors into DS,
//! ES, SS, FS and GS, switches to its own stack, `lgdt`s its own GDT and reloads CS with `lretq`
//! to its `__KERNEL_CS` before any other segment or interrupt use. Older decompressors also
//! zero the data segments and never load a selector of the loader's GDT; they run on the
//! loader's CS, flat 64-bit code here, until the decompressed kernel loads its own GDT.
//! QEMU, Firecracker and cloud-hypervisor use 0x10/0x18 to follow the letter of the document;
//! doing so here would need a GDT with 0x10 = code64 and 0x18 = data, which clashes with the
//! existing ELF guest contract (data at 0x10, TSS at 0x18).

use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use crate::acpi::GuestTables;
use crate::loader::{
    build_long_mode_environment, BootState, EntryMode, GuestWrite, LoadError, GDT_GPA,
    IDENTITY_MAP_GIB, PD_GPA, PML4_GPA, TSS_GPA,
};

/// The zero page (`struct boot_params`, 4 KiB), right after the page directories.
pub const ZERO_PAGE_GPA: u64 = 0x9000;
/// Size of `struct boot_params` (zero-page.rst).
pub const ZERO_PAGE_SIZE: u64 = 0x1000;
/// The boot stack: `[BOOT_STACK_GPA, BOOT_STACK_TOP)`. `startup_64` switches to its own stack
/// before its first push, so this only has to be valid, not large.
pub const BOOT_STACK_GPA: u64 = 0xA000;
pub const BOOT_STACK_TOP: u64 = 0xE000;
/// The kernel command line (NUL-terminated) and the size of the area reserved for it.
pub const CMDLINE_GPA: u64 = 0x2_0000;
pub const CMDLINE_AREA_SIZE: u64 = 0x1_0000;
/// Start of the EBDA/VGA/BIOS hole reported as reserved in the e820 map.
pub const EBDA_GPA: u64 = 0x9_FC00;
/// The first byte above the BIOS hole; the kernel and the initrd go at or above it.
pub const HIGH_MEMORY_GPA: u64 = 0x10_0000;
/// End of the identity map built by [`build_long_mode_environment`].
pub const IDENTITY_MAP_END: u64 = IDENTITY_MAP_GIB << 30;
/// Alignment of the initrd.
pub const INITRD_ALIGN: u64 = 0x1000;
/// The oldest protocol with `xloadflags` (and so a declared 64-bit entry point): 2.12.
pub const MIN_PROTOCOL: u16 = 0x020C;
/// Offset of the 64-bit entry point `startup_64` in the protected-mode kernel.
pub const ENTRY64_OFFSET: u64 = 0x200;
/// Capacity of `boot_params.e820_table` (E820_MAX_ENTRIES_ZEROPAGE).
pub const E820_MAX_ENTRIES: usize = 128;
/// `heap_end_ptr`: boot.rst's sample loader value (heap_end 0xE000 less 0x200). Only the
/// real-mode setup code reads it, and the 64-bit entry skips that code.
pub const HEAP_END_PTR: u16 = 0xDE00;
/// `type_of_loader` for a boot loader without an assigned ID (boot.rst, type_of_loader).
pub const LOADER_UNDEFINED: u8 = 0xFF;

// Nothing in low memory overlaps.
const _: () = assert!(GDT_GPA + 0x28 <= TSS_GPA);
const _: () = assert!(TSS_GPA + 0x1000 <= PML4_GPA);
const _: () = assert!(PD_GPA + IDENTITY_MAP_GIB * 0x1000 <= ZERO_PAGE_GPA);
const _: () = assert!(ZERO_PAGE_GPA + ZERO_PAGE_SIZE <= BOOT_STACK_GPA);
const _: () = assert!(BOOT_STACK_TOP <= CMDLINE_GPA);
const _: () = assert!(CMDLINE_GPA + CMDLINE_AREA_SIZE <= 0x9_D000);
const _: () = assert!(E820_TABLE + E820_MAX_ENTRIES * E820_ENTRY_SIZE <= 0xD00);

// Setup header offsets in the image and in the zero page (boot.rst, "The Real-Mode Kernel
// Header"; the header is copied to the same offsets of struct boot_params).
const SETUP_SECTS: usize = 0x1F1;
const SYSSIZE: usize = 0x1F4;
const BOOT_FLAG: usize = 0x1FE;
const JUMP: usize = 0x200;
const HEADER_MAGIC: usize = 0x202;
const VERSION: usize = 0x206;
const TYPE_OF_LOADER: usize = 0x210;
const LOADFLAGS: usize = 0x211;
const CODE32_START: usize = 0x214;
const RAMDISK_IMAGE: usize = 0x218;
const RAMDISK_SIZE: usize = 0x21C;
const HEAP_END: usize = 0x224;
const CMD_LINE_PTR: usize = 0x228;
const INITRD_ADDR_MAX: usize = 0x22C;
const KERNEL_ALIGNMENT: usize = 0x230;
const RELOCATABLE_KERNEL: usize = 0x234;
const MIN_ALIGNMENT: usize = 0x235;
const XLOADFLAGS: usize = 0x236;
const CMDLINE_SIZE: usize = 0x238;
const PAYLOAD_OFFSET: usize = 0x248;
const PAYLOAD_LENGTH: usize = 0x24C;
const PREF_ADDRESS: usize = 0x258;
const INIT_SIZE: usize = 0x260;
/// End of the protocol 2.12 header (handover_offset at 0x264/4).
const HEADER_END_2_12: usize = 0x268;
/// struct boot_params continues with edd_mbr_sig_buffer at 0x290 (zero-page.rst): the copied
/// header never goes past it, whatever the jump byte says.
const HEADER_END_MAX: usize = 0x290;

// Zero page fields outside the setup header (zero-page.rst).
const EXT_RAMDISK_IMAGE: usize = 0x0C0;
const EXT_RAMDISK_SIZE: usize = 0x0C4;
const EXT_CMD_LINE_PTR: usize = 0x0C8;
/// zero-page.rst: acpi_rsdp_addr (u64, boot protocol 2.14+; older kernels ignore it and find
/// the RSDP by scanning 0xE0000-0xFFFFF, where `vm::acpi` puts it).
const ACPI_RSDP_ADDR: usize = 0x070;
const E820_ENTRIES: usize = 0x1E8;
const E820_TABLE: usize = 0x2D0;
const E820_ENTRY_SIZE: usize = 20;

const BOOT_FLAG_VALUE: u16 = 0xAA55;
const LOADED_HIGH: u8 = 1 << 0;
const CAN_USE_HEAP: u8 = 1 << 7;
/// xloadflags bit 0: the kernel has the 64-bit entry point at 0x200.
pub const XLF_KERNEL_64: u16 = 1 << 0;
/// xloadflags bit 1: kernel, boot_params, cmdline and ramdisk may be above 4 GiB.
pub const XLF_CAN_BE_LOADED_ABOVE_4G: u16 = 1 << 1;

/// What is wrong with a bzImage or with the VM it is loaded into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinuxError {
    /// No boot flag 0xAA55 at 0x1FE or no "HdrS" at 0x202, or not a bzImage (LOADED_HIGH clear).
    NotBzImage,
    /// Boot protocol older than 2.12 (no xloadflags, so no declared 64-bit entry).
    ProtocolTooOld { version: u16 },
    /// xloadflags has no XLF_KERNEL_64: a 32-bit kernel.
    No64BitEntry,
    /// The file ends before the named part.
    Truncated(&'static str),
    /// A header field has a value no kernel produces.
    BadHeader(&'static str),
    /// The kernel's `init_size` region ends at `need`, beyond the VM's `ram`.
    KernelDoesNotFit { need: u64, ram: u64 },
    /// The kernel's region `[start, end)` is not usable RAM below 4 GiB.
    KernelNotInRam { start: u64, end: u64 },
    /// The initrd needs `size` bytes; the largest usable gap has `room`.
    InitrdDoesNotFit { size: u64, room: u64 },
    /// The command line has `len` bytes; the kernel takes at most `max`.
    CmdlineTooLong { len: u64, max: u64 },
    /// The command line contains a NUL byte.
    CmdlineHasNul,
    /// An extra e820 entry wraps around the address space.
    BadE820 { addr: u64, size: u64 },
    /// The e820 map has `count` entries, more than the zero page holds.
    TooManyE820Entries { count: usize },
    /// The ACPI tables `[start, end)` overlap RAM the e820 map gives the kernel, which would
    /// reuse it.
    AcpiTablesInRam { start: u64, end: u64 },
    /// Writing guest memory failed.
    Load(LoadError),
}

impl From<LoadError> for LinuxError {
    fn from(e: LoadError) -> Self {
        LinuxError::Load(e)
    }
}

/// A `memory = ...M` suggestion comfortably above `need` bytes that the configuration accepts
/// (a multiple of 2M, at most [`crate::config::MAX_MEMORY`]); `None` when no VM is big enough.
fn suggest_mib(need: u64) -> Option<u64> {
    let max = crate::config::MAX_MEMORY >> 20;
    if need > crate::config::MAX_MEMORY {
        return None;
    }
    let mib = need.saturating_add(32 << 20) >> 20;
    Some(
        mib.checked_next_power_of_two()
            .unwrap_or(mib)
            .max(128)
            .min(max),
    )
}

impl fmt::Display for LinuxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LinuxError::NotBzImage => write!(
                f,
                "not a Linux bzImage (no boot flag 0xAA55 at 0x1FE, no \"HdrS\" at 0x202, or not \
                 loaded high), or the file is truncated; use arch/x86/boot/bzImage from the \
                 kernel build"
            ),
            LinuxError::ProtocolTooOld { version } => write!(
                f,
                "the kernel speaks boot protocol {}.{}, Bulkhead needs 2.12 or newer (Linux 3.8+) \
                 for the 64-bit entry point; use a newer kernel",
                version >> 8,
                version & 0xff
            ),
            LinuxError::No64BitEntry => write!(
                f,
                "the kernel has no 64-bit entry point (xloadflags lacks XLF_KERNEL_64); build an \
                 x86_64 kernel (CONFIG_64BIT=y)"
            ),
            LinuxError::Truncated(what) => {
                write!(f, "the bzImage is truncated ({what}); copy the file again")
            }
            LinuxError::BadHeader(what) => {
                write!(f, "the bzImage's setup header is malformed: {what}")
            }
            LinuxError::KernelDoesNotFit { need, ram } => match suggest_mib(*need) {
                Some(mib) => write!(
                    f,
                    "the kernel needs guest RAM up to {need:#x} ({} MiB) to decompress, the VM \
                     has {} MiB; give the VM more memory (memory = \"{mib}M\")",
                    need.div_ceil(1 << 20),
                    ram >> 20,
                ),
                None => write!(
                    f,
                    "the kernel needs guest RAM up to {need:#x} ({} MiB) to decompress, more \
                     than a VM can have ({} MiB, memory = \"{}M\"); its init_size is \
                     implausible: rebuild the kernel or use arch/x86/boot/bzImage",
                    need.div_ceil(1 << 20),
                    crate::config::MAX_MEMORY >> 20,
                    crate::config::MAX_MEMORY >> 20,
                ),
            },
            LinuxError::KernelNotInRam { start, end } => write!(
                f,
                "the kernel wants guest memory {start:#x}..{end:#x}, which is not usable RAM \
                 below 4 GiB (Bulkhead keeps 0..1 MiB and the MMIO windows); use a kernel with a \
                 standard CONFIG_PHYSICAL_START"
            ),
            LinuxError::InitrdDoesNotFit { size, room } => write!(
                f,
                "the initrd is {size} bytes but only {room} bytes of RAM are free above the \
                 kernel and below the initrd limit; give the VM at least {} MiB more memory or \
                 use a smaller initrd",
                size.saturating_sub(*room).div_ceil(1 << 20).max(1)
            ),
            LinuxError::CmdlineTooLong { len, max } => write!(
                f,
                "the kernel command line is {len} bytes but the kernel accepts at most {max}; \
                 shorten it"
            ),
            LinuxError::CmdlineHasNul => {
                write!(
                    f,
                    "the kernel command line contains a NUL character; remove it"
                )
            }
            LinuxError::BadE820 { addr, size } => write!(
                f,
                "memory map entry {addr:#x}+{size:#x} wraps around the address space"
            ),
            LinuxError::TooManyE820Entries { count } => write!(
                f,
                "the memory map has {count} entries, the zero page holds {E820_MAX_ENTRIES}"
            ),
            LinuxError::AcpiTablesInRam { start, end } => write!(
                f,
                "the ACPI tables at {start:#x}..{end:#x} overlap RAM in the memory map; place \
                 them at 0xE0000 (vm::acpi::BIOS_AREA_GPA) or mark their range reserved with an \
                 extra e820 entry"
            ),
            LinuxError::Load(e) => write!(f, "loading the kernel: {e}"),
        }
    }
}

/// e820 memory types (ACPI 6.5 §15, "System Address Map Interfaces"; values as in the e820
/// BIOS call).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum E820Kind {
    Ram = 1,
    Reserved = 2,
    Acpi = 3,
    Nvs = 4,
    Unusable = 5,
}

/// One entry of the e820 map (`struct boot_e820_entry`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct E820Entry {
    pub addr: u64,
    pub size: u64,
    pub kind: E820Kind,
}

/// What the VM gives the kernel.
#[derive(Debug, Clone, Copy)]
pub struct LinuxConfig<'a> {
    /// Guest RAM: `[0, ram)`, less the caller's extra entries.
    pub ram: u64,
    /// The kernel command line, without the terminating NUL.
    pub cmdline: &'a str,
    /// The initial ramdisk, if any (an empty one counts as none).
    pub initrd: Option<&'a [u8]>,
    /// Extra e820 entries, e.g. the virtio-mmio window as reserved. They go to the kernel as
    /// given; the base RAM entries are split around every one of them (whatever its kind), and
    /// the loader places nothing in them.
    pub e820_extra: &'a [E820Entry],
}

/// Optional parts of a Linux boot beyond [`LinuxConfig`] (see [`load_linux_with`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct LinuxExtras<'a> {
    /// ACPI tables: copied to guest memory at their base and announced in
    /// `boot_params.acpi_rsdp_addr`. Their range must be outside the e820 RAM entries: the
    /// BIOS area at 0xE0000 (reserved in the base map) or a range `e820_extra` reserves.
    pub acpi: Option<&'a GuestTables>,
}

/// The setup header fields Bulkhead uses (boot.rst, "Details of Header Fields").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SetupHeader {
    /// Boot protocol version, e.g. 0x020F for 2.15.
    pub version: u16,
    /// Sectors of real-mode setup code after the boot sector (a stored 0 reads as 4).
    pub setup_sects: u8,
    /// Size of the protected-mode code in 16-byte paragraphs.
    pub syssize: u32,
    /// 0x202 + the jump byte at 0x201: the end of the header.
    pub header_end: usize,
    pub loadflags: u8,
    pub initrd_addr_max: u32,
    pub kernel_alignment: u32,
    pub relocatable_kernel: bool,
    pub min_alignment: u8,
    pub xloadflags: u16,
    /// The longest command line, without the NUL.
    pub cmdline_size: u32,
    pub payload_offset: u32,
    pub payload_length: u32,
    pub pref_address: u64,
    /// Bytes the kernel needs from its runtime start address until it reads the memory map.
    pub init_size: u32,
    /// File offset of the protected-mode kernel: (setup_sects + 1) * 512.
    pub kernel_offset: usize,
    /// Bytes of protected-mode kernel in the file (everything after the setup code).
    pub kernel_size: usize,
}

fn byte(b: &[u8], at: usize) -> Result<u8, LinuxError> {
    b.get(at)
        .copied()
        .ok_or(LinuxError::Truncated("setup header"))
}
fn le16(b: &[u8], at: usize) -> Result<u16, LinuxError> {
    b.get(at..at.wrapping_add(2))
        .and_then(|s| s.try_into().ok())
        .map(u16::from_le_bytes)
        .ok_or(LinuxError::Truncated("setup header"))
}
fn le32(b: &[u8], at: usize) -> Result<u32, LinuxError> {
    b.get(at..at.wrapping_add(4))
        .and_then(|s| s.try_into().ok())
        .map(u32::from_le_bytes)
        .ok_or(LinuxError::Truncated("setup header"))
}
fn le64(b: &[u8], at: usize) -> Result<u64, LinuxError> {
    b.get(at..at.wrapping_add(8))
        .and_then(|s| s.try_into().ok())
        .map(u64::from_le_bytes)
        .ok_or(LinuxError::Truncated("setup header"))
}

/// Validates the setup header of a bzImage and returns the fields the loader uses.
pub fn parse_header(bzimage: &[u8]) -> Result<SetupHeader, LinuxError> {
    // boot.rst, "The Real-Mode Kernel Header": boot_flag 0xAA55 at 0x1FE, "HdrS" at 0x202.
    if le16(bzimage, BOOT_FLAG).ok() != Some(BOOT_FLAG_VALUE)
        || bzimage.get(HEADER_MAGIC..HEADER_MAGIC + 4) != Some(b"HdrS")
    {
        return Err(LinuxError::NotBzImage);
    }
    let version = le16(bzimage, VERSION)?;
    if version < MIN_PROTOCOL {
        return Err(LinuxError::ProtocolTooOld { version });
    }
    // Note (1) of the header table: setup_sects 0 means 4.
    let setup_sects = match byte(bzimage, SETUP_SECTS)? {
        0 => 4,
        n => n,
    };
    // "Loading The Rest of The Kernel": the protected-mode kernel starts at (setup_sects+1)*512.
    let kernel_offset = (usize::from(setup_sects) + 1) * 512;
    let kernel_size = bzimage
        .len()
        .checked_sub(kernel_offset)
        .ok_or(LinuxError::Truncated("real-mode setup code"))?;
    // "64-bit Boot Protocol": the header ends at 0x0202 + the byte at 0x0201.
    let header_end = HEADER_MAGIC + usize::from(byte(bzimage, JUMP + 1)?);
    if header_end < HEADER_END_2_12 {
        return Err(LinuxError::BadHeader(
            "the jump at 0x200 ends the header before the protocol 2.12 fields",
        ));
    }
    let loadflags = byte(bzimage, LOADFLAGS)?;
    // "Loading The Rest of The Kernel": a bzImage has LOADED_HIGH set.
    if loadflags & LOADED_HIGH == 0 {
        return Err(LinuxError::NotBzImage);
    }
    let xloadflags = le16(bzimage, XLOADFLAGS)?;
    if xloadflags & XLF_KERNEL_64 == 0 {
        return Err(LinuxError::No64BitEntry);
    }
    let syssize = le32(bzimage, SYSSIZE)?;
    if syssize == 0 {
        return Err(LinuxError::BadHeader("syssize is 0"));
    }
    // syssize counts 16-byte paragraphs of protected-mode code (tools/build.c pads the file to
    // exactly syssize * 16 bytes after the setup code).
    if (kernel_size as u64) < u64::from(syssize) * 16 {
        return Err(LinuxError::Truncated(
            "protected-mode kernel shorter than syssize",
        ));
    }
    if (kernel_size as u64) <= ENTRY64_OFFSET {
        return Err(LinuxError::Truncated("64-bit entry point"));
    }
    Ok(SetupHeader {
        version,
        setup_sects,
        syssize,
        header_end,
        loadflags,
        initrd_addr_max: le32(bzimage, INITRD_ADDR_MAX)?,
        kernel_alignment: le32(bzimage, KERNEL_ALIGNMENT)?,
        relocatable_kernel: byte(bzimage, RELOCATABLE_KERNEL)? != 0,
        min_alignment: byte(bzimage, MIN_ALIGNMENT)?,
        xloadflags,
        cmdline_size: le32(bzimage, CMDLINE_SIZE)?,
        payload_offset: le32(bzimage, PAYLOAD_OFFSET)?,
        payload_length: le32(bzimage, PAYLOAD_LENGTH)?,
        pref_address: le64(bzimage, PREF_ADDRESS)?,
        init_size: le32(bzimage, INIT_SIZE)?,
        kernel_offset,
        kernel_size,
    })
}

/// The e820 map and the RAM the loader may place things in.
struct MemoryMap {
    /// Sorted by address.
    e820: Vec<E820Entry>,
    /// Usable RAM ranges `[start, end)`: the base RAM less every extra entry.
    usable: Vec<(u64, u64)>,
}

/// The e820 map for `ram` bytes plus `extra`, RAM split around the extra entries.
fn build_e820(ram: u64, extra: &[E820Entry]) -> Result<MemoryMap, LinuxError> {
    let mut usable: Vec<(u64, u64)> = Vec::new();
    if ram > 0 {
        usable.push((0, ram.min(EBDA_GPA)));
    }
    if ram > HIGH_MEMORY_GPA {
        usable.push((HIGH_MEMORY_GPA, ram));
    }
    let mut map = vec![E820Entry {
        addr: EBDA_GPA,
        size: HIGH_MEMORY_GPA - EBDA_GPA,
        kind: E820Kind::Reserved,
    }];
    for e in extra.iter().filter(|e| e.size != 0) {
        let end = e.addr.checked_add(e.size).ok_or(LinuxError::BadE820 {
            addr: e.addr,
            size: e.size,
        })?;
        let mut carved = Vec::with_capacity(usable.len() + 1);
        for &(s, t) in &usable {
            if end <= s || e.addr >= t {
                carved.push((s, t));
                continue;
            }
            if s < e.addr {
                carved.push((s, e.addr));
            }
            if end < t {
                carved.push((end, t));
            }
        }
        usable = carved;
        map.push(*e);
        if map.len() + usable.len() > E820_MAX_ENTRIES {
            return Err(LinuxError::TooManyE820Entries {
                count: map.len() + usable.len(),
            });
        }
    }
    map.extend(usable.iter().map(|&(s, t)| E820Entry {
        addr: s,
        size: t - s,
        kind: E820Kind::Ram,
    }));
    map.sort_by_key(|e| e.addr);
    if map.len() > E820_MAX_ENTRIES {
        return Err(LinuxError::TooManyE820Entries { count: map.len() });
    }
    Ok(MemoryMap { e820: map, usable })
}

/// The highest `INITRD_ALIGN`-aligned address where `size` bytes fit in `usable` RAM at or
/// above 1 MiB, below `limit` and outside `kernel`.
fn place_initrd(
    usable: &[(u64, u64)],
    kernel: (u64, u64),
    limit: u64,
    size: u64,
) -> Result<u64, LinuxError> {
    let mut best: Option<u64> = None;
    let mut room = 0;
    for &(s, e) in usable {
        let (s, e) = (s.max(HIGH_MEMORY_GPA), e.min(limit));
        for (s, e) in [(s, e.min(kernel.0)), (s.max(kernel.1), e)] {
            let Some(s) = s.checked_next_multiple_of(INITRD_ALIGN) else {
                continue;
            };
            let fits = e.saturating_sub(s);
            room = room.max(fits);
            if size <= fits {
                let start = (e - size) & !(INITRD_ALIGN - 1);
                best = best.max(Some(start));
            }
        }
    }
    best.ok_or(LinuxError::InitrdDoesNotFit { size, room })
}

fn put(zp: &mut [u8], at: usize, bytes: &[u8]) {
    if let Some(dst) = zp.get_mut(at..at + bytes.len()) {
        dst.copy_from_slice(bytes);
    }
}

/// Loads a bzImage for the 64-bit boot protocol: the protected-mode kernel at its
/// `pref_address`, the zero page, the command line, the initrd and the long-mode environment.
pub fn load_linux(
    bzimage: &[u8],
    config: &LinuxConfig,
    mem: &mut impl GuestWrite,
) -> Result<BootState, LinuxError> {
    load_linux_with(bzimage, config, &LinuxExtras::default(), mem)
}

/// [`load_linux`] with `extras`: ACPI tables for the guest.
pub fn load_linux_with(
    bzimage: &[u8],
    config: &LinuxConfig,
    extras: &LinuxExtras,
    mem: &mut impl GuestWrite,
) -> Result<BootState, LinuxError> {
    let hdr = parse_header(bzimage)?;
    let kernel = bzimage
        .get(hdr.kernel_offset..)
        .ok_or(LinuxError::Truncated("protected-mode kernel"))?;
    let ram = config.ram;

    // Command line: at most cmdline_size bytes without the NUL (boot.rst, cmdline_size).
    let cmdline = config.cmdline.as_bytes();
    if cmdline.contains(&0) {
        return Err(LinuxError::CmdlineHasNul);
    }
    let max = u64::from(hdr.cmdline_size).min(CMDLINE_AREA_SIZE - 1);
    if cmdline.len() as u64 > max {
        return Err(LinuxError::CmdlineTooLong {
            len: cmdline.len() as u64,
            max,
        });
    }

    // The kernel goes at pref_address (a non-relocatable kernel runs only there; a relocatable
    // one prefers it); without one, at 1 MiB ("Loading The Rest of The Kernel").
    let load = if hdr.pref_address != 0 {
        hdr.pref_address
    } else {
        HIGH_MEMORY_GPA
    };
    // boot.rst, init_size: runtime_start = align_up(load, kernel_alignment) if relocatable,
    // else pref_address; init_size bytes from there must be free RAM.
    let runtime_start = if hdr.relocatable_kernel {
        if !hdr.kernel_alignment.is_power_of_two() {
            return Err(LinuxError::BadHeader(
                "kernel_alignment is not a power of two",
            ));
        }
        load.checked_next_multiple_of(u64::from(hdr.kernel_alignment))
    } else {
        Some(load)
    };
    let kernel_end = runtime_start
        .and_then(|r| r.checked_add(u64::from(hdr.init_size)))
        .zip(load.checked_add(kernel.len() as u64))
        .map(|(a, b)| a.max(b))
        .ok_or(LinuxError::KernelNotInRam {
            start: load,
            end: u64::MAX,
        })?;
    let not_in_ram = LinuxError::KernelNotInRam {
        start: load,
        end: kernel_end,
    };
    if !(HIGH_MEMORY_GPA..IDENTITY_MAP_END).contains(&load) {
        return Err(not_in_ram);
    }
    if kernel_end > ram {
        return Err(LinuxError::KernelDoesNotFit {
            need: kernel_end,
            ram,
        });
    }
    let MemoryMap { e820, usable } = build_e820(ram, config.e820_extra)?;
    let in_ram = usable.iter().any(|&(s, e)| s <= load && kernel_end <= e);
    if kernel_end > IDENTITY_MAP_END || !in_ram {
        return Err(not_in_ram);
    }
    if let Some(t) = extras.acpi {
        let (start, end) = (t.base_gpa(), t.end_gpa());
        if usable.iter().any(|&(s, e)| start < e && s < end) {
            return Err(LinuxError::AcpiTablesInRam { start, end });
        }
    }

    // initrd: as high as possible below initrd_addr_max (the highest byte it may occupy) and
    // below the 4 GiB identity map, clear of the kernel's init_size region.
    let initrd = match config.initrd {
        Some(data) if !data.is_empty() => {
            let limit = (u64::from(hdr.initrd_addr_max) + 1).min(IDENTITY_MAP_END);
            let at = place_initrd(&usable, (load, kernel_end), limit, data.len() as u64)?;
            Some((at, data))
        }
        _ => None,
    };

    // The zero page (boot.rst, "64-bit Boot Protocol"): all zero, the setup header copied from
    // 0x1F1 to its end, then the loader's fields.
    let mut zp = vec![0u8; ZERO_PAGE_SIZE as usize];
    let header_end = hdr.header_end.min(HEADER_END_MAX);
    let header = bzimage
        .get(SETUP_SECTS..header_end)
        .ok_or(LinuxError::Truncated("setup header"))?;
    put(&mut zp, SETUP_SECTS, header);
    put(&mut zp, TYPE_OF_LOADER, &[LOADER_UNDEFINED]);
    put(&mut zp, LOADFLAGS, &[hdr.loadflags | CAN_USE_HEAP]);
    // code32_start: "the boot loader must set the code32_start field to point to the loaded
    // code" (relocatable_kernel); load < 4 GiB was checked above.
    put(&mut zp, CODE32_START, &(load as u32).to_le_bytes());
    put(&mut zp, HEAP_END, &HEAP_END_PTR.to_le_bytes());
    put(&mut zp, CMD_LINE_PTR, &(CMDLINE_GPA as u32).to_le_bytes());
    put(
        &mut zp,
        EXT_CMD_LINE_PTR,
        &((CMDLINE_GPA >> 32) as u32).to_le_bytes(),
    );
    if let Some((at, data)) = initrd {
        let size = data.len() as u64;
        put(&mut zp, RAMDISK_IMAGE, &(at as u32).to_le_bytes());
        put(&mut zp, RAMDISK_SIZE, &(size as u32).to_le_bytes());
        put(
            &mut zp,
            EXT_RAMDISK_IMAGE,
            &((at >> 32) as u32).to_le_bytes(),
        );
        put(
            &mut zp,
            EXT_RAMDISK_SIZE,
            &((size >> 32) as u32).to_le_bytes(),
        );
    }
    // zero-page.rst: e820_entries at 0x1E8, e820_table at 0x2D0 (struct boot_e820_entry,
    // packed: u64 addr, u64 size, u32 type).
    put(&mut zp, E820_ENTRIES, &[e820.len() as u8]);
    for (i, e) in e820.iter().enumerate() {
        let at = E820_TABLE + i * E820_ENTRY_SIZE;
        put(&mut zp, at, &e.addr.to_le_bytes());
        put(&mut zp, at + 8, &e.size.to_le_bytes());
        put(&mut zp, at + 16, &(e.kind as u32).to_le_bytes());
    }

    if let Some(t) = extras.acpi {
        put(&mut zp, ACPI_RSDP_ADDR, &t.rsdp_gpa().to_le_bytes());
    }

    let cr3 = build_long_mode_environment(mem)?;
    mem.write(ZERO_PAGE_GPA, &zp)?;
    let mut line = Vec::with_capacity(cmdline.len() + 1);
    line.extend_from_slice(cmdline);
    line.push(0);
    mem.write(CMDLINE_GPA, &line)?;
    mem.write(load, kernel)?;
    if let Some((at, data)) = initrd {
        mem.write(at, data)?;
    }
    if let Some(t) = extras.acpi {
        mem.write(t.base_gpa(), t.image())?;
    }
    Ok(BootState {
        mode: EntryMode::Long64 { cr3 },
        rip: load + ENTRY64_OFFSET,
        rsp: BOOT_STACK_TOP,
        rdi: 0,
        rsi: ZERO_PAGE_GPA,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use alloc::vec::Vec;

    /// Sparse guest memory: records every write; reads return the newest bytes written.
    struct Mem {
        ram: u64,
        writes: Vec<(u64, Vec<u8>)>,
    }

    impl Mem {
        fn new(ram: u64) -> Self {
            Mem {
                ram,
                writes: Vec::new(),
            }
        }
        fn read(&self, gpa: u64, len: usize) -> Vec<u8> {
            let mut out = vec![0u8; len];
            for (at, data) in &self.writes {
                for (i, b) in out.iter_mut().enumerate() {
                    let a = gpa + i as u64;
                    if a >= *at && a < at + data.len() as u64 {
                        *b = data[(a - at) as usize];
                    }
                }
            }
            out
        }
        fn u8(&self, gpa: u64) -> u8 {
            self.read(gpa, 1)[0]
        }
        fn u16(&self, gpa: u64) -> u16 {
            u16::from_le_bytes(self.read(gpa, 2).try_into().unwrap())
        }
        fn u32(&self, gpa: u64) -> u32 {
            u32::from_le_bytes(self.read(gpa, 4).try_into().unwrap())
        }
        fn u64(&self, gpa: u64) -> u64 {
            u64::from_le_bytes(self.read(gpa, 8).try_into().unwrap())
        }
        fn written(&self, gpa: u64) -> bool {
            self.writes
                .iter()
                .any(|(at, d)| gpa >= *at && gpa < at + d.len() as u64)
        }
    }

    impl GuestWrite for Mem {
        fn write(&mut self, gpa: u64, data: &[u8]) -> Result<(), LoadError> {
            let len = data.len() as u64;
            if gpa.checked_add(len).is_none_or(|e| e > self.ram) {
                return Err(LoadError::OutsideRam { gpa, len });
            }
            self.writes.push((gpa, data.to_vec()));
            Ok(())
        }
        fn zero(&mut self, gpa: u64, len: u64) -> Result<(), LoadError> {
            self.write(gpa, &vec![0; len as usize])
        }
    }

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
            let text =
                alloc::format!("[vm.a]\nkind = \"linux\"\nimage = \"b\"\nmemory = \"{mib}M\"\n");
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
}
