//! Loading an ELF kernel through its PVH entry (the Xen PVH boot ABI: docs/misc/pvh.pandoc and
//! the `hvm_start_info` layout of xen/include/public/arch-x86/hvm/start_info.h, version 1).
//! Linux (`CONFIG_PVH`), several unikernels and Firecracker's direct boot use it.
//!
//! The kernel names its 32-bit entry in an ELF note of type XEN_ELFNOTE_PHYS32_ENTRY (18),
//! owner "Xen", in a PT_NOTE segment; its PT_LOAD segments go to their physical addresses.
//! Every field and offset from the image is checked; a bad image gives a [`PvhError`].
//!
//! # Guest memory map
//!
//! | GPA                 | Contents                                                        |
//! |---------------------|-----------------------------------------------------------------|
//! | `0x1000..0x101F`    | GDT: 0x08 flat code32, 0x10 flat data, 0x18 busy 32-bit TSS     |
//! | `0x2000..0x2FFF`    | TSS                                                             |
//! | `0x6000..0x6037`    | `hvm_start_info` ([`START_INFO_GPA`]; EBX at entry)             |
//! | `0x6040..0x605F`    | module list, the initrd as module 0 ([`MODLIST_GPA`])           |
//! | `0x6100..0x6DFF`    | memory map, `hvm_memmap_table_entry` ([`MEMMAP_GPA`])           |
//! | `0x2_0000..0x2_FFFF`| kernel command line, NUL-terminated ([`CMDLINE_GPA`])           |
//! | `0x9_FC00..0xF_FFFF`| reserved (EBDA, VGA, BIOS area); ACPI tables at 0xE0000, RSDP in `rsdp_paddr` |
//! | `p_paddr` of each segment | the kernel (0x100_0000 for Linux)                         |
//! | top of RAM < 4 GiB  | initrd, 4 KiB aligned, clear of the kernel                      |
//!
//! # Entry state (pvh.pandoc)
//!
//! 32-bit protected mode, paging off, CS a flat 4 GiB execute/read segment, DS/ES/SS flat
//! read/write, TR a busy 32-bit TSS, EFLAGS.IF/TF/VM clear, EBX = [`START_INFO_GPA`]
//! ([`EntryMode::Flat32`]); the other registers are unspecified.

use alloc::vec::Vec;
use core::fmt;

use crate::acpi::GuestTables;
use crate::elf::{self, Elf};
use crate::linux::{build_e820, place_initrd, E820Entry, LinuxError, MemoryMap};
use crate::loader::{build_flat32_environment, BootState, EntryMode, GuestWrite, LoadError};

/// xen/include/public/elfnote.h: the note owner and XEN_ELFNOTE_PHYS32_ENTRY.
pub const XEN_NOTE_NAME: &[u8] = b"Xen";
pub const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;
/// start_info.h: XEN_HVM_START_MAGIC_VALUE and the version Bulkhead writes (with memmap).
pub const START_MAGIC: u32 = 0x336e_c578;
pub const START_INFO_VERSION: u32 = 1;
/// start_info.h `struct hvm_start_info` offsets.
pub const SI_MAGIC: usize = 0;
pub const SI_VERSION: usize = 4;
pub const SI_FLAGS: usize = 8;
pub const SI_NR_MODULES: usize = 12;
pub const SI_MODLIST_PADDR: usize = 16;
pub const SI_CMDLINE_PADDR: usize = 24;
pub const SI_RSDP_PADDR: usize = 32;
pub const SI_MEMMAP_PADDR: usize = 40;
pub const SI_MEMMAP_ENTRIES: usize = 48;
pub const START_INFO_SIZE: usize = 56;
/// `struct hvm_modlist_entry`: paddr, size, cmdline_paddr, reserved.
pub const MODLIST_ENTRY_SIZE: usize = 32;
/// `struct hvm_memmap_table_entry`: addr, size, type (E820 types), reserved.
pub const MEMMAP_ENTRY_SIZE: usize = 24;

pub const START_INFO_GPA: u64 = 0x6000;
pub const MODLIST_GPA: u64 = 0x6040;
pub const MEMMAP_GPA: u64 = 0x6100;
pub const MAX_MEMMAP_ENTRIES: usize = 128;
pub const CMDLINE_GPA: u64 = 0x2_0000;
pub const CMDLINE_MAX: usize = 0x1_0000 - 1;
/// The entry and the initrd are 32-bit: PVH starts with paging off.
const LIMIT_32: u64 = 1 << 32;

const _: () = assert!(START_INFO_GPA + START_INFO_SIZE as u64 <= MODLIST_GPA);
const _: () = assert!(MODLIST_GPA + MODLIST_ENTRY_SIZE as u64 <= MEMMAP_GPA);
const _: () = assert!(MEMMAP_GPA + (MAX_MEMMAP_ENTRIES * MEMMAP_ENTRY_SIZE) as u64 <= 0x7000);

/// What is wrong with a PVH kernel or its boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PvhError {
    /// The image is not a loadable ELF (a bzImage needs `kind = "linux"`).
    Elf(LoadError),
    /// No XEN_ELFNOTE_PHYS32_ENTRY note.
    NoPvhNote,
    /// The note's descriptor is not a 4- or 8-byte address.
    BadPvhNote {
        size: usize,
    },
    /// The entry is above 4 GiB or outside every loaded segment.
    EntryOutsideImage {
        entry: u64,
    },
    CmdlineHasNul,
    CmdlineTooLong {
        len: usize,
        max: usize,
    },
    InitrdDoesNotFit {
        size: u64,
        room: u64,
    },
    /// The memory map (extra entries, their number).
    MemoryMap(LinuxError),
    Load(LoadError),
}

impl fmt::Display for PvhError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use PvhError as E;
        match self {
            E::Elf(e) => write!(
                f,
                "kind = \"pvh\" needs an ELF kernel (for Linux the `vmlinux`, not the bzImage): \
                 {e}"
            ),
            E::NoPvhNote => write!(
                f,
                "the ELF has no PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY, owner \"Xen\"); build \
                 Linux with CONFIG_PVH=y, or boot the bzImage with kind = \"linux\""
            ),
            E::BadPvhNote { size } => write!(
                f,
                "the PVH entry note's descriptor is {size} bytes; it must be a 4- or 8-byte \
                 address"
            ),
            E::EntryOutsideImage { entry } => write!(
                f,
                "the PVH entry {entry:#x} is not inside a loaded segment below 4 GiB"
            ),
            E::CmdlineHasNul => write!(f, "the command line contains a NUL byte"),
            E::CmdlineTooLong { len, max } => {
                write!(f, "the command line is {len} bytes; at most {max} fit")
            }
            E::InitrdDoesNotFit { size, room } => write!(
                f,
                "the initrd of {size} bytes does not fit in RAM below 4 GiB beside the kernel \
                 (largest free range {room} bytes); raise `memory`"
            ),
            E::MemoryMap(e) => write!(f, "building the memory map: {e}"),
            E::Load(e) => write!(f, "loading the kernel: {e}"),
        }
    }
}

impl From<LoadError> for PvhError {
    fn from(e: LoadError) -> Self {
        PvhError::Load(e)
    }
}

/// The PVH entry point named by the kernel's XEN_ELFNOTE_PHYS32_ENTRY note.
pub fn find_entry(elf: &Elf) -> Result<u64, PvhError> {
    let notes = elf.notes().map_err(PvhError::Elf)?;
    let note = notes
        .iter()
        .find(|n| n.name == XEN_NOTE_NAME && n.kind == XEN_ELFNOTE_PHYS32_ENTRY)
        .ok_or(PvhError::NoPvhNote)?;
    // Linux emits `.long` (arch/x86/platform/pvh/head.S); older kernels `_ASM_PTR`.
    match note.desc.len() {
        4 => Ok(u64::from(u32::from_le_bytes(
            note.desc.try_into().expect("length checked"),
        ))),
        8 => Ok(u64::from_le_bytes(
            note.desc.try_into().expect("length checked"),
        )),
        size => Err(PvhError::BadPvhNote { size }),
    }
}

/// What the VM gives the kernel.
#[derive(Debug, Clone, Copy)]
pub struct PvhConfig<'a> {
    /// Guest RAM: `[0, ram)`, less the extra entries.
    pub ram: u64,
    pub cmdline: &'a str,
    /// The initial ramdisk, module 0 (an empty one counts as none).
    pub initrd: Option<&'a [u8]>,
    /// Extra memory-map entries (the virtio-mmio window as reserved), as for Linux.
    pub e820_extra: &'a [E820Entry],
    /// ACPI tables: copied to their base and announced in `rsdp_paddr`.
    pub acpi: Option<&'a GuestTables>,
}

fn put(buf: &mut [u8], at: usize, bytes: &[u8]) {
    buf[at..at + bytes.len()].copy_from_slice(bytes);
}

/// Loads an ELF kernel with a PVH entry note, its initrd, command line, memory map and
/// `hvm_start_info`.
pub fn load_pvh(
    image: &[u8],
    config: &PvhConfig,
    mem: &mut impl GuestWrite,
) -> Result<BootState, PvhError> {
    let elf = Elf::parse(image).map_err(PvhError::Elf)?;
    let entry = find_entry(&elf)?;
    let cmdline = config.cmdline.as_bytes();
    if cmdline.contains(&0) {
        return Err(PvhError::CmdlineHasNul);
    }
    if cmdline.len() > CMDLINE_MAX {
        return Err(PvhError::CmdlineTooLong {
            len: cmdline.len(),
            max: CMDLINE_MAX,
        });
    }
    let MemoryMap { e820, usable } =
        build_e820(config.ram, config.e820_extra).map_err(PvhError::MemoryMap)?;
    if e820.len() > MAX_MEMMAP_ENTRIES {
        return Err(PvhError::MemoryMap(LinuxError::TooManyE820Entries {
            count: e820.len(),
        }));
    }
    // Segments: at or above 1 MiB, inside usable RAM (never the BIOS area with the ACPI tables
    // nor the virtio-mmio window); the entry in one of them and below 4 GiB.
    let ranges =
        elf::load_segments(&elf, entry, config.ram, &usable, mem).map_err(|e| match e {
            LoadError::EntryOutsideImage { .. } => PvhError::EntryOutsideImage { entry },
            e => PvhError::Load(e),
        })?;
    if entry >= LIMIT_32 || !ranges.iter().any(|&(s, e)| (s..e).contains(&entry)) {
        return Err(PvhError::EntryOutsideImage { entry });
    }
    let kernel = (
        ranges.iter().map(|r| r.0).min().unwrap_or(0),
        ranges.iter().map(|r| r.1).max().unwrap_or(0),
    );
    let initrd = match config.initrd {
        Some(data) if !data.is_empty() => {
            let at = place_initrd(&usable, kernel, LIMIT_32, data.len() as u64).map_err(
                |e| match e {
                    LinuxError::InitrdDoesNotFit { size, room } => {
                        PvhError::InitrdDoesNotFit { size, room }
                    }
                    e => PvhError::MemoryMap(e),
                },
            )?;
            Some((at, data))
        }
        _ => None,
    };

    let mut info = [0u8; START_INFO_SIZE];
    put(&mut info, SI_MAGIC, &START_MAGIC.to_le_bytes());
    put(&mut info, SI_VERSION, &START_INFO_VERSION.to_le_bytes());
    put(&mut info, SI_FLAGS, &0u32.to_le_bytes());
    put(
        &mut info,
        SI_NR_MODULES,
        &u32::from(initrd.is_some()).to_le_bytes(),
    );
    if initrd.is_some() {
        put(&mut info, SI_MODLIST_PADDR, &MODLIST_GPA.to_le_bytes());
    }
    put(&mut info, SI_CMDLINE_PADDR, &CMDLINE_GPA.to_le_bytes());
    if let Some(t) = config.acpi {
        put(&mut info, SI_RSDP_PADDR, &t.rsdp_gpa().to_le_bytes());
    }
    put(&mut info, SI_MEMMAP_PADDR, &MEMMAP_GPA.to_le_bytes());
    put(
        &mut info,
        SI_MEMMAP_ENTRIES,
        &(e820.len() as u32).to_le_bytes(),
    );
    let mut memmap = Vec::with_capacity(e820.len() * MEMMAP_ENTRY_SIZE);
    for e in &e820 {
        memmap.extend_from_slice(&e.addr.to_le_bytes());
        memmap.extend_from_slice(&e.size.to_le_bytes());
        memmap.extend_from_slice(&(e.kind as u32).to_le_bytes());
        memmap.extend_from_slice(&0u32.to_le_bytes());
    }

    build_flat32_environment(mem)?;
    mem.write(START_INFO_GPA, &info)?;
    mem.write(MEMMAP_GPA, &memmap)?;
    let mut line = Vec::with_capacity(cmdline.len() + 1);
    line.extend_from_slice(cmdline);
    line.push(0);
    mem.write(CMDLINE_GPA, &line)?;
    if let Some((at, data)) = initrd {
        let mut module = [0u8; MODLIST_ENTRY_SIZE];
        put(&mut module, 0, &at.to_le_bytes());
        put(&mut module, 8, &(data.len() as u64).to_le_bytes());
        mem.write(MODLIST_GPA, &module)?;
        mem.write(at, data)?;
    }
    if let Some(t) = config.acpi {
        mem.write(t.base_gpa(), t.image())?;
    }
    Ok(BootState {
        mode: EntryMode::Flat32 {
            eax: 0,
            ebx: START_INFO_GPA as u32,
        },
        rip: entry,
        rsp: 0,
        rdi: 0,
        rsi: 0,
    })
}

#[cfg(test)]
mod tests;
