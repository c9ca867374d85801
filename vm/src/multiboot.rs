//! Loading a Multiboot (version 1) kernel (the Multiboot Specification 0.6.96: §3.1 "OS image
//! format", §3.2 "Machine state", §3.3 "Boot information format").
//!
//! The image comes from a user's bundle: the header is searched in the first 8 KiB, every
//! field, offset and sum is checked, and a bad image gives a [`MultibootError`]; nothing
//! panics.
//!
//! # Guest memory map
//!
//! | GPA                 | Contents                                                        |
//! |---------------------|-----------------------------------------------------------------|
//! | `0x1000..0x101F`    | GDT: 0x08 flat code32, 0x10 flat data, 0x18 busy 32-bit TSS     |
//! | `0x2000..0x2FFF`    | TSS                                                             |
//! | `0x6000..0x6073`    | `multiboot_info` ([`INFO_GPA`]; EBX at entry)                   |
//! | `0x6080..0x617F`    | module list ([`MODS_GPA`], 16 bytes per module)                 |
//! | `0x6200..0x6DFF`    | memory map ([`MMAP_GPA`], 24 bytes per entry with its size word)|
//! | `0x6F00..`          | boot loader name, "Bulkhead" ([`LOADER_NAME_GPA`])              |
//! | `0x2_0000..0x2_7FFF`| kernel command line, NUL-terminated ([`CMDLINE_GPA`])           |
//! | `0x2_8000..0x2_FFFF`| module strings, NUL-terminated ([`MOD_STRINGS_GPA`])            |
//! | `0x9_FC00..0xF_FFFF`| reserved (EBDA, VGA, BIOS area; ACPI tables at 0xE0000)         |
//! | kernel's addresses  | the kernel: a.out-kludge addresses (flag 16) or ELF `p_paddr`    |
//! | top of RAM < 4 GiB  | modules, page-aligned, the highest first                        |
//!
//! # Entry state (§3.2)
//!
//! EAX = 0x2BADB002, EBX = [`INFO_GPA`], 32-bit protected mode with paging off, CS a flat
//! execute/read segment, DS/ES/FS/GS/SS flat read/write, interrupts off
//! ([`EntryMode::Flat32`]).

use alloc::vec::Vec;
use core::fmt;

use crate::acpi::GuestTables;
use crate::elf::{self, Elf};
use crate::linux::{build_e820, place_initrd, E820Entry, E820Kind, LinuxError, MemoryMap};
use crate::loader::{build_flat32_environment, BootState, EntryMode, GuestWrite, LoadError};

/// §3.1.2: the header's magic, and the magic the kernel finds in EAX (§3.2).
pub const HEADER_MAGIC: u32 = 0x1BAD_B002;
pub const BOOTLOADER_MAGIC: u32 = 0x2BAD_B002;
/// §3.1.1: the header lies, 4-byte aligned, within the first 8192 bytes of the image.
pub const HEADER_SEARCH: usize = 8192;
/// §3.1.2: header fields (offsets).
const FLAGS: usize = 4;
const CHECKSUM: usize = 8;
const HEADER_ADDR: usize = 12;
const LOAD_ADDR: usize = 16;
const LOAD_END_ADDR: usize = 20;
const BSS_END_ADDR: usize = 24;
const ENTRY_ADDR: usize = 28;
/// §3.1.2 header flags. Bits 0-15 are requirements, 16-31 optional features.
pub const FLAG_PAGE_ALIGN: u32 = 1 << 0;
pub const FLAG_MEMORY_INFO: u32 = 1 << 1;
pub const FLAG_VIDEO_MODE: u32 = 1 << 2;
pub const FLAG_AOUT_KLUDGE: u32 = 1 << 16;
const REQUIRED_MASK: u32 = 0xffff;
const SUPPORTED_REQUIRED: u32 = FLAG_PAGE_ALIGN | FLAG_MEMORY_INFO;

/// §3.3 `multiboot_info` flags (which fields are valid).
pub const INFO_MEMORY: u32 = 1 << 0;
pub const INFO_CMDLINE: u32 = 1 << 2;
pub const INFO_MODS: u32 = 1 << 3;
pub const INFO_MMAP: u32 = 1 << 6;
pub const INFO_LOADER_NAME: u32 = 1 << 9;
/// §3.3 `multiboot_info` field offsets; the structure ends with the framebuffer fields.
pub const INFO_FLAGS: usize = 0;
pub const INFO_MEM_LOWER: usize = 4;
pub const INFO_MEM_UPPER: usize = 8;
pub const INFO_CMDLINE_PTR: usize = 16;
pub const INFO_MODS_COUNT: usize = 20;
pub const INFO_MODS_ADDR: usize = 24;
pub const INFO_MMAP_LENGTH: usize = 44;
pub const INFO_MMAP_ADDR: usize = 48;
pub const INFO_BOOT_LOADER_NAME: usize = 64;
pub const INFO_SIZE: usize = 116;
/// §3.3 module structure: mod_start, mod_end, string, reserved.
pub const MODULE_SIZE: usize = 16;
/// §3.3 memory map entry: size (of the rest: 20), base_addr, length, type.
pub const MMAP_ENTRY_SIZE: usize = 24;
const MMAP_ENTRY_REST: u32 = 20;

pub const INFO_GPA: u64 = 0x6000;
pub const MODS_GPA: u64 = 0x6080;
pub const MAX_MODULES: usize = 16;
pub const MMAP_GPA: u64 = 0x6200;
pub const MAX_MMAP_ENTRIES: usize = 128;
pub const LOADER_NAME_GPA: u64 = 0x6F00;
pub const LOADER_NAME: &[u8] = b"Bulkhead\0";
pub const CMDLINE_GPA: u64 = 0x2_0000;
pub const CMDLINE_MAX: usize = 0x8000 - 1;
pub const MOD_STRINGS_GPA: u64 = 0x2_8000;
pub const MOD_STRINGS_SIZE: usize = 0x8000;
/// Modules go below 4 GiB: the module structure holds 32-bit addresses.
const MODULE_LIMIT: u64 = 1 << 32;
const PAGE: u64 = 0x1000;
const LOW_MEMORY_END: u64 = 0x10_0000;

const _: () = assert!(INFO_GPA + INFO_SIZE as u64 <= MODS_GPA);
const _: () = assert!(MODS_GPA + (MAX_MODULES * MODULE_SIZE) as u64 <= MMAP_GPA);
const _: () = assert!(MMAP_GPA + (MAX_MMAP_ENTRIES * MMAP_ENTRY_SIZE) as u64 <= LOADER_NAME_GPA);

/// What is wrong with a Multiboot kernel or its boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MultibootError {
    /// No 4-byte aligned magic 0x1BADB002 in the first 8 KiB.
    NoHeader,
    /// magic + flags + checksum is not 0 (mod 2^32).
    BadChecksum {
        offset: usize,
    },
    /// The header asks for a VBE video mode (flag 2), which Bulkhead does not set up.
    VideoModeRequired,
    /// Other requirement bits (3-15) the specification does not define.
    UnknownRequiredFlags {
        flags: u32,
    },
    /// The a.out-kludge addresses (flag 16) are inconsistent.
    BadAddresses(&'static str),
    /// Neither flag 16 nor an ELF image.
    NotElf(LoadError),
    /// The kernel's range is not RAM at or above 1 MiB.
    KernelNotInRam {
        start: u64,
        end: u64,
    },
    CmdlineHasNul,
    CmdlineTooLong {
        len: usize,
        max: usize,
    },
    TooManyModules {
        count: usize,
    },
    ModuleStringsTooLong,
    ModuleDoesNotFit {
        size: u64,
        room: u64,
    },
    /// The memory map (extra entries, their number).
    MemoryMap(LinuxError),
    Load(LoadError),
}

impl fmt::Display for MultibootError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use MultibootError as E;
        match self {
            E::NoHeader => write!(
                f,
                "no Multiboot header (magic 0x1BADB002, 4-byte aligned) in the first 8 KiB of \
                 the image; kind = \"multiboot\" needs a Multiboot v1 kernel"
            ),
            E::BadChecksum { offset } => write!(
                f,
                "the Multiboot header at offset {offset:#x} has a bad checksum (magic + flags + \
                 checksum must be 0)"
            ),
            E::VideoModeRequired => write!(
                f,
                "the kernel requires a video mode (Multiboot header flag 2); Bulkhead has no \
                 framebuffer: clear the flag and use the serial console"
            ),
            E::UnknownRequiredFlags { flags } => write!(
                f,
                "the Multiboot header requires features {flags:#x} (flag bits 3-15) that the \
                 specification does not define; clear them"
            ),
            E::BadAddresses(what) => write!(f, "the Multiboot header's addresses: {what}"),
            E::NotElf(e) => write!(
                f,
                "the Multiboot header has no addresses (flag 16) and the image is not a \
                 loadable ELF: {e}"
            ),
            E::KernelNotInRam { start, end } => write!(
                f,
                "the kernel at {start:#x}..{end:#x} is not in the VM's RAM above 1 MiB; link \
                 it at 0x100000 or above, or raise `memory`"
            ),
            E::CmdlineHasNul => write!(f, "the command line contains a NUL byte"),
            E::CmdlineTooLong { len, max } => {
                write!(f, "the command line is {len} bytes; at most {max} fit")
            }
            E::TooManyModules { count } => {
                write!(f, "{count} modules given; at most {MAX_MODULES} fit")
            }
            E::ModuleStringsTooLong => write!(
                f,
                "the module names exceed {MOD_STRINGS_SIZE} bytes; shorten them"
            ),
            E::ModuleDoesNotFit { size, room } => write!(
                f,
                "a module of {size} bytes does not fit in RAM below 4 GiB beside the kernel \
                 (largest free range {room} bytes); raise `memory`"
            ),
            E::MemoryMap(e) => write!(f, "building the memory map: {e}"),
            E::Load(e) => write!(f, "loading the kernel: {e}"),
        }
    }
}

impl From<LoadError> for MultibootError {
    fn from(e: LoadError) -> Self {
        MultibootError::Load(e)
    }
}

/// The a.out-kludge addresses of §3.1.3 (valid when flag 16 is set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addresses {
    pub header_addr: u32,
    pub load_addr: u32,
    pub load_end_addr: u32,
    pub bss_end_addr: u32,
    pub entry_addr: u32,
}

/// A checked Multiboot header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// File offset of the magic.
    pub offset: usize,
    pub flags: u32,
    pub addresses: Option<Addresses>,
}

fn le32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

/// Finds and checks the Multiboot header (§3.1.1, §3.1.2).
pub fn parse_header(image: &[u8]) -> Result<Header, MultibootError> {
    let search = &image[..image.len().min(HEADER_SEARCH)];
    let offset = (0..search.len().saturating_sub(3))
        .step_by(4)
        .find(|&o| le32(search, o) == Some(HEADER_MAGIC))
        .ok_or(MultibootError::NoHeader)?;
    let field = |o| le32(image, offset + o).ok_or(MultibootError::NoHeader);
    let flags = field(FLAGS)?;
    let checksum = field(CHECKSUM)?;
    if HEADER_MAGIC.wrapping_add(flags).wrapping_add(checksum) != 0 {
        return Err(MultibootError::BadChecksum { offset });
    }
    // §3.1.2: "If bit 2 in the flags word is set, information about the video mode table
    // must be available"; a boot loader that cannot satisfy a requirement bit must fail.
    if flags & FLAG_VIDEO_MODE != 0 {
        return Err(MultibootError::VideoModeRequired);
    }
    let unknown = flags & REQUIRED_MASK & !SUPPORTED_REQUIRED;
    if unknown != 0 {
        return Err(MultibootError::UnknownRequiredFlags { flags: unknown });
    }
    let addresses = if flags & FLAG_AOUT_KLUDGE != 0 {
        let bad = || MultibootError::BadAddresses("the header is truncated");
        let a = Addresses {
            header_addr: le32(image, offset + HEADER_ADDR).ok_or_else(bad)?,
            load_addr: le32(image, offset + LOAD_ADDR).ok_or_else(bad)?,
            load_end_addr: le32(image, offset + LOAD_END_ADDR).ok_or_else(bad)?,
            bss_end_addr: le32(image, offset + BSS_END_ADDR).ok_or_else(bad)?,
            entry_addr: le32(image, offset + ENTRY_ADDR).ok_or_else(bad)?,
        };
        Some(a)
    } else {
        None
    };
    Ok(Header {
        offset,
        flags,
        addresses,
    })
}

/// The kernel as it goes into memory: file bytes at a physical address, then zeroes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct KludgeImage<'a> {
    load: u64,
    data: &'a [u8],
    end: u64,
    entry: u64,
}

/// §3.1.3: the file from `header_offset - (header_addr - load_addr)` is loaded at load_addr,
/// up to load_end_addr (0: the end of the file); BSS is zeroed up to bss_end_addr (0: none).
fn kludge_image<'a>(
    image: &'a [u8],
    header: &Header,
    a: &Addresses,
) -> Result<KludgeImage<'a>, MultibootError> {
    use MultibootError::BadAddresses as Bad;
    let back = a
        .header_addr
        .checked_sub(a.load_addr)
        .ok_or(Bad("load_addr is above header_addr"))?;
    let file_start = header
        .offset
        .checked_sub(back as usize)
        .ok_or(Bad("load_addr lies before the start of the file"))?;
    let file_len = if a.load_end_addr == 0 {
        image.len() - file_start
    } else {
        let len = a
            .load_end_addr
            .checked_sub(a.load_addr)
            .ok_or(Bad("load_end_addr is below load_addr"))? as usize;
        if file_start + len > image.len() {
            return Err(Bad("load_end_addr lies beyond the end of the file"));
        }
        len
    };
    let load = u64::from(a.load_addr);
    let loaded_end = load + file_len as u64;
    let end = if a.bss_end_addr == 0 {
        loaded_end
    } else if u64::from(a.bss_end_addr) < loaded_end {
        return Err(Bad("bss_end_addr is below the end of the loaded image"));
    } else {
        u64::from(a.bss_end_addr)
    };
    let entry = u64::from(a.entry_addr);
    if !(load..end.max(load + 1)).contains(&entry) {
        return Err(Bad("entry_addr is outside the loaded image"));
    }
    Ok(KludgeImage {
        load,
        data: &image[file_start..file_start + file_len],
        end,
        entry,
    })
}

/// A boot module (§3.3 "mods"): its bytes and its string.
#[derive(Debug, Clone, Copy)]
pub struct Module<'a> {
    pub data: &'a [u8],
    /// The module's string (its name or command line), without the NUL.
    pub string: &'a str,
}

/// What the VM gives the kernel.
#[derive(Debug, Clone, Copy)]
pub struct MultibootConfig<'a> {
    /// Guest RAM: `[0, ram)`, less the extra entries.
    pub ram: u64,
    pub cmdline: &'a str,
    pub modules: &'a [Module<'a>],
    /// Extra memory-map entries (the virtio-mmio window as reserved), as for Linux.
    pub e820_extra: &'a [E820Entry],
    /// ACPI tables, copied to their base (the BIOS area, found by the RSDP scan).
    pub acpi: Option<&'a GuestTables>,
}

fn put(buf: &mut [u8], at: usize, v: u32) {
    buf[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

/// Loads a Multiboot kernel, its modules and the boot information.
pub fn load_multiboot(
    image: &[u8],
    config: &MultibootConfig,
    mem: &mut impl GuestWrite,
) -> Result<BootState, MultibootError> {
    let header = parse_header(image)?;
    let cmdline = config.cmdline.as_bytes();
    if cmdline.contains(&0) {
        return Err(MultibootError::CmdlineHasNul);
    }
    if cmdline.len() > CMDLINE_MAX {
        return Err(MultibootError::CmdlineTooLong {
            len: cmdline.len(),
            max: CMDLINE_MAX,
        });
    }
    if config.modules.len() > MAX_MODULES {
        return Err(MultibootError::TooManyModules {
            count: config.modules.len(),
        });
    }
    let strings_len: usize = config.modules.iter().map(|m| m.string.len() + 1).sum();
    if strings_len > MOD_STRINGS_SIZE || config.modules.iter().any(|m| m.string.contains('\0')) {
        return Err(MultibootError::ModuleStringsTooLong);
    }
    let MemoryMap { e820, usable } =
        build_e820(config.ram, config.e820_extra).map_err(MultibootError::MemoryMap)?;
    if e820.len() > MAX_MMAP_ENTRIES {
        return Err(MultibootError::MemoryMap(LinuxError::TooManyE820Entries {
            count: e820.len(),
        }));
    }

    // The kernel: a.out-kludge addresses take precedence over ELF (§3.1.3).
    let (kernel, entry) = match &header.addresses {
        Some(a) => {
            let k = kludge_image(image, &header, a)?;
            let in_ram = usable.iter().any(|&(s, e)| s <= k.load && k.end <= e);
            if k.load < LOW_MEMORY_END || !in_ram {
                return Err(MultibootError::KernelNotInRam {
                    start: k.load,
                    end: k.end,
                });
            }
            mem.write(k.load, k.data)?;
            mem.zero(
                k.load + k.data.len() as u64,
                k.end - k.load - k.data.len() as u64,
            )?;
            ((k.load, k.end), k.entry)
        }
        None => {
            let elf = Elf::parse(image).map_err(MultibootError::NotElf)?;
            let ranges = elf::load_segments(&elf, elf.entry, config.ram, &usable, mem)?;
            let start = ranges.iter().map(|r| r.0).min().unwrap_or(0);
            let end = ranges.iter().map(|r| r.1).max().unwrap_or(0);
            if end > MODULE_LIMIT || elf.entry >= MODULE_LIMIT {
                return Err(MultibootError::KernelNotInRam { start, end });
            }
            ((start, end), elf.entry)
        }
    };

    // Modules, page-aligned (header flag 0 asks for it; Bulkhead always aligns), below 4 GiB
    // and clear of the kernel; the module structures and strings.
    let mut mods = [0u8; MAX_MODULES * MODULE_SIZE];
    let mut strings = Vec::with_capacity(strings_len);
    let mut taken: Vec<(u64, u64)> = Vec::new();
    for (i, m) in config.modules.iter().enumerate() {
        let size = (m.data.len() as u64).max(1);
        // Free RAM: the usable ranges less the kernel and the modules placed so far.
        let mut free = usable.clone();
        for &(ts, te) in taken.iter().chain([kernel].iter()) {
            free = free
                .into_iter()
                .flat_map(|(s, e)| [(s, e.min(ts)), (s.max(te), e)])
                .filter(|(s, e)| s < e)
                .collect();
        }
        let at = place_initrd(&free, (0, 0), MODULE_LIMIT, size).map_err(|e| match e {
            LinuxError::InitrdDoesNotFit { size, room } => {
                MultibootError::ModuleDoesNotFit { size, room }
            }
            e => MultibootError::MemoryMap(e),
        })?;
        debug_assert_eq!(at % PAGE, 0);
        mem.write(at, m.data)?;
        taken.push((at, at + size));
        let string_gpa = MOD_STRINGS_GPA + strings.len() as u64;
        strings.extend_from_slice(m.string.as_bytes());
        strings.push(0);
        let e = &mut mods[i * MODULE_SIZE..(i + 1) * MODULE_SIZE];
        // §3.3: mod_end is the address just past the module.
        put(e, 0, at as u32);
        put(e, 4, (at + m.data.len() as u64) as u32);
        put(e, 8, string_gpa as u32);
    }

    // The memory map (§3.3 "mmap"): each entry's size word counts the 20 bytes after it.
    let mut mmap = Vec::with_capacity(e820.len() * MMAP_ENTRY_SIZE);
    for e in &e820 {
        mmap.extend_from_slice(&MMAP_ENTRY_REST.to_le_bytes());
        mmap.extend_from_slice(&e.addr.to_le_bytes());
        mmap.extend_from_slice(&e.size.to_le_bytes());
        mmap.extend_from_slice(&(e.kind as u32).to_le_bytes());
    }
    // mem_lower: KiB of RAM from 0 (at most 640); mem_upper: KiB of RAM from 1 MiB to the
    // first hole (§3.3).
    let ram_end_from = |at: u64| {
        e820.iter()
            .find(|e| e.kind == E820Kind::Ram && e.addr == at)
            .map_or(0, |e| e.size)
    };
    let mem_lower = (ram_end_from(0) / 1024) as u32;
    let mem_upper = (ram_end_from(LOW_MEMORY_END) / 1024) as u32;

    let mut info = [0u8; INFO_SIZE];
    let mut flags = INFO_MEMORY | INFO_CMDLINE | INFO_MMAP | INFO_LOADER_NAME;
    if !config.modules.is_empty() {
        flags |= INFO_MODS;
    }
    put(&mut info, INFO_FLAGS, flags);
    put(&mut info, INFO_MEM_LOWER, mem_lower);
    put(&mut info, INFO_MEM_UPPER, mem_upper);
    put(&mut info, INFO_CMDLINE_PTR, CMDLINE_GPA as u32);
    put(&mut info, INFO_MODS_COUNT, config.modules.len() as u32);
    put(&mut info, INFO_MODS_ADDR, MODS_GPA as u32);
    put(&mut info, INFO_MMAP_LENGTH, mmap.len() as u32);
    put(&mut info, INFO_MMAP_ADDR, MMAP_GPA as u32);
    put(&mut info, INFO_BOOT_LOADER_NAME, LOADER_NAME_GPA as u32);

    build_flat32_environment(mem)?;
    mem.write(INFO_GPA, &info)?;
    mem.write(MODS_GPA, &mods[..config.modules.len() * MODULE_SIZE])?;
    mem.write(MMAP_GPA, &mmap)?;
    mem.write(LOADER_NAME_GPA, LOADER_NAME)?;
    let mut line = Vec::with_capacity(cmdline.len() + 1);
    line.extend_from_slice(cmdline);
    line.push(0);
    mem.write(CMDLINE_GPA, &line)?;
    mem.write(MOD_STRINGS_GPA, &strings)?;
    if let Some(t) = config.acpi {
        mem.write(t.base_gpa(), t.image())?;
    }
    Ok(BootState {
        mode: EntryMode::Flat32 {
            eax: BOOTLOADER_MAGIC,
            ebx: INFO_GPA as u32,
        },
        rip: entry,
        rsp: 0,
        rdi: 0,
        rsi: 0,
    })
}

#[cfg(test)]
mod tests;
