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
pub(crate) struct MemoryMap {
    /// Sorted by address.
    pub(crate) e820: Vec<E820Entry>,
    /// Usable RAM ranges `[start, end)`: the base RAM less every extra entry.
    pub(crate) usable: Vec<(u64, u64)>,
}

/// The e820 map for `ram` bytes plus `extra`, RAM split around the extra entries.
pub(crate) fn build_e820(ram: u64, extra: &[E820Entry]) -> Result<MemoryMap, LinuxError> {
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
pub(crate) fn place_initrd(
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
mod tests;
