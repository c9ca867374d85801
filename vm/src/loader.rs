//! Loading guest images into guest RAM and describing the initial vCPU state:
//!
//! * `elf64`: a static ELF64 executable is copied to its physical addresses; the guest starts
//!   in 64-bit mode on identity-mapped page tables and a GDT that Bulkhead builds in low guest
//!   memory (the contract in tests/guest/README.md and docs/vm-platform.md);
//! * `real16`: a flat binary is copied to 0x7C00 and started in real mode (unrestricted guest).
//!
//! Every offset and size from the image is checked; a bad image gives a [`LoadError`].

use core::fmt;

/// Low guest memory used by the long-mode environment.
pub const GDT_GPA: u64 = 0x1000;
pub const TSS_GPA: u64 = 0x2000;
pub const PML4_GPA: u64 = 0x3000;
pub const PDPT_GPA: u64 = 0x4000;
pub const PD_GPA: u64 = 0x5000;
/// Identity map of the first 4 GiB (RAM and the MMIO window) with 2 MiB pages.
pub const IDENTITY_MAP_GIB: u64 = 4;
/// ELF segments must lie at or above 1 MiB.
pub const IMAGE_MIN_GPA: u64 = 0x10_0000;
/// GDT selectors of the long-mode environment.
pub const CODE64_SELECTOR: u16 = 0x08;
pub const DATA_SELECTOR: u16 = 0x10;
pub const TSS_SELECTOR: u16 = 0x18;
pub const GDT_LIMIT: u16 = 5 * 8 - 1;
/// The flat 32-bit environment's code selector (its GDT: null, code32, data, 8-byte TSS).
pub const CODE32_SELECTOR: u16 = 0x08;
pub const GDT32_LIMIT: u16 = 4 * 8 - 1;
pub const TSS_LIMIT: u32 = 0x67;
/// Real-mode load address and initial stack.
pub const REAL16_LOAD_GPA: u64 = 0x7C00;
pub const REAL16_STACK: u64 = 0x7000;

/// Guest RAM as the loader sees it.
pub trait GuestWrite {
    /// Copies `data` to guest-physical `gpa`; fails when the range is not RAM.
    fn write(&mut self, gpa: u64, data: &[u8]) -> Result<(), LoadError>;
    /// Zeroes `len` bytes at `gpa`.
    fn zero(&mut self, gpa: u64, len: u64) -> Result<(), LoadError>;
}

/// What is wrong with a guest image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadError {
    NotElf,
    NotElf64X86,
    NotExecutable,
    Truncated(&'static str),
    SegmentBelowImageBase {
        paddr: u64,
    },
    SegmentOutsideRam {
        paddr: u64,
        memsz: u64,
        ram: u64,
    },
    FileSizeExceedsMemSize {
        paddr: u64,
    },
    NoLoadableSegment,
    EntryOutsideImage {
        entry: u64,
    },
    ImageTooLarge {
        size: u64,
        room: u64,
    },
    RamTooSmall {
        ram: u64,
        need: u64,
    },
    OutsideRam {
        gpa: u64,
        len: u64,
    },
    /// Not an ELF32 for i386 nor an ELF64 for x86_64 (the 32-bit boot protocols take both).
    NotElfX86,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::NotElf => write!(
                f,
                "not an ELF file (kind = elf64 needs a static ELF64 executable)"
            ),
            LoadError::NotElf64X86 => write!(f, "not a little-endian ELF64 for x86_64"),
            LoadError::NotExecutable => write!(
                f,
                "not an executable (ET_EXEC); link the guest statically, without PIE"
            ),
            LoadError::Truncated(what) => write!(f, "the image is truncated ({what})"),
            LoadError::SegmentBelowImageBase { paddr } => {
                write!(f, "a segment at {paddr:#x} lies below 1 MiB, which Bulkhead reserves; link the guest at 0x100000 or above")
            }
            LoadError::SegmentOutsideRam { paddr, memsz, ram } => {
                write!(f, "a segment at {paddr:#x} (+{memsz:#x}) does not fit in the VM's {} MiB of RAM; raise `memory`", ram >> 20)
            }
            LoadError::FileSizeExceedsMemSize { paddr } => {
                write!(f, "the segment at {paddr:#x} has p_filesz > p_memsz")
            }
            LoadError::NoLoadableSegment => write!(f, "the ELF has no PT_LOAD segment"),
            LoadError::EntryOutsideImage { entry } => write!(
                f,
                "the entry point {entry:#x} is outside every loaded segment"
            ),
            LoadError::ImageTooLarge { size, room } => {
                write!(f, "the image is {size} bytes but only {room} fit")
            }
            LoadError::RamTooSmall { ram, need } => {
                write!(f, "the VM has {ram} bytes of RAM, the image needs {need}")
            }
            LoadError::OutsideRam { gpa, len } => {
                write!(f, "guest range {gpa:#x}+{len:#x} is outside RAM")
            }
            LoadError::NotElfX86 => write!(
                f,
                "not a little-endian ELF32 (i386) or ELF64 (x86_64) executable"
            ),
        }
    }
}

/// How the first vCPU starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryMode {
    /// 64-bit mode with CR3 = `cr3` and the GDT above.
    Long64 { cr3: u64 },
    /// Real mode, CS = DS = ES = SS = 0.
    Real16,
    /// 32-bit protected mode, paging off, flat 4 GiB CS ([`CODE32_SELECTOR`]) and data
    /// segments ([`DATA_SELECTOR`]), TR a busy 32-bit TSS ([`TSS_SELECTOR`]); EAX and EBX as
    /// the boot protocol names them (Multiboot 0.6.96 §3.2; Xen docs/misc/pvh.pandoc).
    Flat32 { eax: u32, ebx: u32 },
}

/// The initial register state of the boot vCPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootState {
    pub mode: EntryMode,
    pub rip: u64,
    pub rsp: u64,
    pub rdi: u64,
    pub rsi: u64,
}

fn le16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        b.get(at..at.checked_add(2)?)?.try_into().ok()?,
    ))
}
fn le32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}
fn le64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        b.get(at..at.checked_add(8)?)?.try_into().ok()?,
    ))
}

const PT_LOAD: u32 = 1;
const ET_EXEC: u16 = 2;
const EM_X86_64: u16 = 62;

/// Writes the GDT, TSS and identity-mapping page tables of the long-mode environment.
pub fn build_long_mode_environment(mem: &mut impl GuestWrite) -> Result<u64, LoadError> {
    // SDM Vol. 3A §3.4.5: flat 64-bit code (L=1, P, S, type execute/read) and flat data.
    const CODE64: u64 = 0x00af_9b00_0000_ffff;
    const DATA: u64 = 0x00cf_9300_0000_ffff;
    // SDM Vol. 3A §8.2.3: 16-byte 64-bit TSS descriptor, type 0x9 (available).
    let tss_low = (u64::from(TSS_LIMIT) & 0xffff)
        | ((TSS_GPA & 0xff_ffff) << 16)
        | (0x89u64 << 40)
        | (((TSS_GPA >> 24) & 0xff) << 56);
    let tss_high = TSS_GPA >> 32;
    let mut gdt = [0u8; 40];
    for (i, d) in [0, CODE64, DATA, tss_low, tss_high].iter().enumerate() {
        gdt[i * 8..i * 8 + 8].copy_from_slice(&d.to_le_bytes());
    }
    mem.write(GDT_GPA, &gdt)?;
    mem.zero(TSS_GPA, 0x1000)?;
    // SDM Vol. 3A §4.5: PML4[0] → PDPT; PDPT[i] → PD i; PD entries map 2 MiB pages
    // (P | RW | PS), identity.
    const P_RW: u64 = 0x3;
    const PS: u64 = 0x80;
    let mut table = [0u8; 4096];
    table[..8].copy_from_slice(&(PDPT_GPA | P_RW).to_le_bytes());
    mem.write(PML4_GPA, &table)?;
    table.fill(0);
    for i in 0..IDENTITY_MAP_GIB {
        let pd = PD_GPA + i * 0x1000;
        table[i as usize * 8..i as usize * 8 + 8].copy_from_slice(&(pd | P_RW).to_le_bytes());
    }
    mem.write(PDPT_GPA, &table)?;
    for i in 0..IDENTITY_MAP_GIB {
        let mut pd = [0u8; 4096];
        for e in 0..512u64 {
            let addr = (i << 30) | (e << 21);
            pd[e as usize * 8..e as usize * 8 + 8]
                .copy_from_slice(&(addr | P_RW | PS).to_le_bytes());
        }
        mem.write(PD_GPA + i * 0x1000, &pd)?;
    }
    Ok(PML4_GPA)
}

/// Writes the GDT (null, flat code32 at [`CODE32_SELECTOR`], flat data at [`DATA_SELECTOR`],
/// busy 32-bit TSS at [`TSS_SELECTOR`]) and the TSS of the flat 32-bit environment
/// ([`EntryMode::Flat32`]).
pub fn build_flat32_environment(mem: &mut impl GuestWrite) -> Result<(), LoadError> {
    // SDM Vol. 3A §3.4.5: flat 32-bit code (D=1, G=1, P, S, execute/read accessed) and flat
    // read/write data, base 0, limit 4 GiB.
    const CODE32: u64 = 0x00cf_9b00_0000_ffff;
    const DATA: u64 = 0x00cf_9300_0000_ffff;
    // SDM Vol. 3A §8.2.2: 32-bit TSS descriptor, type 0xB (busy), as TR holds it.
    let tss = (u64::from(TSS_LIMIT) & 0xffff)
        | ((TSS_GPA & 0xff_ffff) << 16)
        | (0x8bu64 << 40)
        | (((TSS_GPA >> 24) & 0xff) << 56);
    let mut gdt = [0u8; 32];
    for (i, d) in [0, CODE32, DATA, tss].iter().enumerate() {
        gdt[i * 8..i * 8 + 8].copy_from_slice(&d.to_le_bytes());
    }
    mem.write(GDT_GPA, &gdt)?;
    mem.zero(TSS_GPA, 0x1000)
}

/// Loads a static ELF64 executable (SysV gABI) and builds the long-mode environment.
pub fn load_elf64(
    image: &[u8],
    ram: u64,
    vm_index: u64,
    mem: &mut impl GuestWrite,
) -> Result<BootState, LoadError> {
    if image.get(..4) != Some(b"\x7fELF") {
        return Err(LoadError::NotElf);
    }
    // EI_CLASS = 2 (64-bit), EI_DATA = 1 (little-endian), e_machine = x86_64.
    if image.get(4) != Some(&2) || image.get(5) != Some(&1) || le16(image, 18) != Some(EM_X86_64) {
        return Err(LoadError::NotElf64X86);
    }
    if le16(image, 16) != Some(ET_EXEC) {
        return Err(LoadError::NotExecutable);
    }
    let entry = le64(image, 24).ok_or(LoadError::Truncated("ELF header"))?;
    let phoff = le64(image, 32).ok_or(LoadError::Truncated("ELF header"))?;
    let phentsize = le16(image, 54).ok_or(LoadError::Truncated("ELF header"))?;
    let phnum = le16(image, 56).ok_or(LoadError::Truncated("ELF header"))?;
    if phentsize < 56 {
        return Err(LoadError::Truncated("program header size"));
    }
    let cr3 = build_long_mode_environment(mem)?;
    let mut loaded = 0;
    let mut entry_ok = false;
    for i in 0..u64::from(phnum) {
        let ph = phoff
            .checked_add(i * u64::from(phentsize))
            .and_then(|p| usize::try_from(p).ok())
            .ok_or(LoadError::Truncated("program headers"))?;
        let field32 = |o| le32(image, ph + o).ok_or(LoadError::Truncated("program headers"));
        let field64 = |o| le64(image, ph + o).ok_or(LoadError::Truncated("program headers"));
        if field32(0)? != PT_LOAD {
            continue;
        }
        let (offset, paddr, filesz, memsz) =
            (field64(8)?, field64(24)?, field64(32)?, field64(40)?);
        if memsz == 0 {
            continue;
        }
        if filesz > memsz {
            return Err(LoadError::FileSizeExceedsMemSize { paddr });
        }
        if paddr < IMAGE_MIN_GPA {
            return Err(LoadError::SegmentBelowImageBase { paddr });
        }
        let end = paddr
            .checked_add(memsz)
            .filter(|e| *e <= ram)
            .ok_or(LoadError::SegmentOutsideRam { paddr, memsz, ram })?;
        let data = usize::try_from(offset)
            .ok()
            .zip(usize::try_from(filesz).ok())
            .and_then(|(o, l)| image.get(o..o.checked_add(l)?))
            .ok_or(LoadError::Truncated("segment data"))?;
        mem.write(paddr, data)?;
        mem.zero(paddr + filesz, memsz - filesz)?;
        entry_ok |= (paddr..end).contains(&entry);
        loaded += 1;
    }
    if loaded == 0 {
        return Err(LoadError::NoLoadableSegment);
    }
    if !entry_ok {
        return Err(LoadError::EntryOutsideImage { entry });
    }
    Ok(BootState {
        mode: EntryMode::Long64 { cr3 },
        rip: entry,
        rsp: ram,
        rdi: ram,
        rsi: vm_index,
    })
}

/// Loads a flat real-mode binary at 0x7C00.
pub fn load_real16(
    image: &[u8],
    ram: u64,
    mem: &mut impl GuestWrite,
) -> Result<BootState, LoadError> {
    // Real mode reaches 1 MiB; the image must fit between 0x7C00 and 0xA0000.
    let room = 0xA_0000 - REAL16_LOAD_GPA;
    if image.len() as u64 > room {
        return Err(LoadError::ImageTooLarge {
            size: image.len() as u64,
            room,
        });
    }
    if ram < 0x10_0000 {
        return Err(LoadError::RamTooSmall {
            ram,
            need: 0x10_0000,
        });
    }
    mem.write(REAL16_LOAD_GPA, image)?;
    Ok(BootState {
        mode: EntryMode::Real16,
        rip: REAL16_LOAD_GPA,
        rsp: REAL16_STACK,
        rdi: 0,
        rsi: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use alloc::vec::Vec;

    struct Ram(Vec<u8>);

    impl GuestWrite for Ram {
        fn write(&mut self, gpa: u64, data: &[u8]) -> Result<(), LoadError> {
            let s = usize::try_from(gpa).unwrap();
            let dst = self
                .0
                .get_mut(s..s + data.len())
                .ok_or(LoadError::OutsideRam {
                    gpa,
                    len: data.len() as u64,
                })?;
            dst.copy_from_slice(data);
            Ok(())
        }
        fn zero(&mut self, gpa: u64, len: u64) -> Result<(), LoadError> {
            let s = usize::try_from(gpa).unwrap();
            self.0
                .get_mut(s..s + len as usize)
                .ok_or(LoadError::OutsideRam { gpa, len })?
                .fill(0);
            Ok(())
        }
    }

    /// A minimal ELF64 executable with one PT_LOAD segment.
    fn elf(paddr: u64, code: &[u8], memsz: u64, entry: u64) -> Vec<u8> {
        let mut e = vec![0u8; 64 + 56];
        e[..4].copy_from_slice(b"\x7fELF");
        e[4] = 2;
        e[5] = 1;
        e[6] = 1;
        e[16..18].copy_from_slice(&ET_EXEC.to_le_bytes());
        e[18..20].copy_from_slice(&EM_X86_64.to_le_bytes());
        e[24..32].copy_from_slice(&entry.to_le_bytes());
        e[32..40].copy_from_slice(&64u64.to_le_bytes());
        e[54..56].copy_from_slice(&56u16.to_le_bytes());
        e[56..58].copy_from_slice(&1u16.to_le_bytes());
        let ph = 64;
        e[ph..ph + 4].copy_from_slice(&PT_LOAD.to_le_bytes());
        e[ph + 8..ph + 16].copy_from_slice(&120u64.to_le_bytes());
        e[ph + 16..ph + 24].copy_from_slice(&paddr.to_le_bytes());
        e[ph + 24..ph + 32].copy_from_slice(&paddr.to_le_bytes());
        e[ph + 32..ph + 40].copy_from_slice(&(code.len() as u64).to_le_bytes());
        e[ph + 40..ph + 48].copy_from_slice(&memsz.to_le_bytes());
        e.extend_from_slice(code);
        e
    }

    const RAM: u64 = 4 << 20;

    #[test]
    fn loads_an_elf_and_builds_the_environment() {
        let mut ram = Ram(vec![0xAA; RAM as usize]);
        let image = elf(0x10_0000, &[0xf4, 0x90], 0x1000, 0x10_0000);
        let s = load_elf64(&image, RAM, 3, &mut ram).unwrap();
        assert_eq!(
            s,
            BootState {
                mode: EntryMode::Long64 { cr3: PML4_GPA },
                rip: 0x10_0000,
                rsp: RAM,
                rdi: RAM,
                rsi: 3
            }
        );
        assert_eq!(&ram.0[0x10_0000..0x10_0003], &[0xf4, 0x90, 0]);
        assert!(
            ram.0[0x10_0002..0x10_1000].iter().all(|&b| b == 0),
            "bss zeroed"
        );
        // PML4[0] → PDPT, PDPT[3] → PD 3, PD 3 entry 511 maps 0xFFE00000 as a 2 MiB page.
        let q = |gpa: u64| {
            u64::from_le_bytes(ram.0[gpa as usize..gpa as usize + 8].try_into().unwrap())
        };
        assert_eq!(q(PML4_GPA), PDPT_GPA | 3);
        assert_eq!(q(PDPT_GPA + 3 * 8), (PD_GPA + 0x3000) | 3);
        assert_eq!(q(PD_GPA + 0x3000 + 511 * 8), 0xFFE0_0000 | 0x83);
        assert_eq!(q(GDT_GPA + 8), 0x00af_9b00_0000_ffff);
        // TSS descriptor: base 0x2000, limit 0x67, type 0x89.
        assert_eq!(q(GDT_GPA + 24), 0x0000_8900_2000_0067);
    }

    #[test]
    fn bad_elves_are_refused_precisely() {
        let mut ram = Ram(vec![0; RAM as usize]);
        assert_eq!(
            load_elf64(b"MZ..", RAM, 0, &mut ram),
            Err(LoadError::NotElf)
        );
        let mut e = elf(0x10_0000, &[0xf4], 0x10, 0x10_0000);
        e[4] = 1;
        assert_eq!(
            load_elf64(&e, RAM, 0, &mut ram),
            Err(LoadError::NotElf64X86)
        );
        let mut e = elf(0x10_0000, &[0xf4], 0x10, 0x10_0000);
        e[16] = 3;
        assert_eq!(
            load_elf64(&e, RAM, 0, &mut ram),
            Err(LoadError::NotExecutable)
        );
        let e = elf(0x8000, &[0xf4], 0x10, 0x8000);
        assert_eq!(
            load_elf64(&e, RAM, 0, &mut ram),
            Err(LoadError::SegmentBelowImageBase { paddr: 0x8000 })
        );
        let e = elf(0x3F_F000, &[0xf4], 0x2000, 0x3F_F000);
        assert!(matches!(
            load_elf64(&e, RAM, 0, &mut ram),
            Err(LoadError::SegmentOutsideRam { .. })
        ));
        let e = elf(0x10_0000, &[0xf4; 16], 0x8, 0x10_0000);
        assert_eq!(
            load_elf64(&e, RAM, 0, &mut ram),
            Err(LoadError::FileSizeExceedsMemSize { paddr: 0x10_0000 })
        );
        let e = elf(0x10_0000, &[0xf4], 0x10, 0x20_0000);
        assert_eq!(
            load_elf64(&e, RAM, 0, &mut ram),
            Err(LoadError::EntryOutsideImage { entry: 0x20_0000 })
        );
        let e = elf(0x10_0000, &[0xf4], 0x10, 0x10_0000);
        assert!(matches!(
            load_elf64(&e[..100], RAM, 0, &mut ram),
            Err(LoadError::Truncated(_))
        ));
        let e = elf(u64::MAX - 4, &[0xf4], 0x10, 0x10_0000);
        assert!(matches!(
            load_elf64(&e, RAM, 0, &mut ram),
            Err(LoadError::SegmentOutsideRam { .. })
        ));
    }

    #[test]
    fn every_prefix_of_an_elf_is_handled() {
        let e = elf(0x10_0000, &[0xf4; 32], 0x100, 0x10_0000);
        for n in 0..e.len() {
            let mut ram = Ram(vec![0; RAM as usize]);
            let _ = load_elf64(&e[..n], RAM, 0, &mut ram);
        }
    }

    #[test]
    fn real_mode_images() {
        let mut ram = Ram(vec![0; RAM as usize]);
        let s = load_real16(&[0xf4], RAM, &mut ram).unwrap();
        assert_eq!((s.mode, s.rip, s.rsp), (EntryMode::Real16, 0x7C00, 0x7000));
        assert_eq!(ram.0[0x7C00], 0xf4);
        assert!(matches!(
            load_real16(&vec![0; 0x10_0000], RAM, &mut ram),
            Err(LoadError::ImageTooLarge { .. })
        ));
    }
}
