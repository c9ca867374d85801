//! Host-side checks of a bundle (issue 9, "Host-side checks"): before `build --bundle` packs a
//! directory, it runs what the hypervisor runs at VM creation, with the hypervisor's own code:
//! every file the configuration names must be there, and each guest image is loaded with
//! `vm::loader` / `vm::linux` into a host buffer of the VM's memory size (with the same Linux
//! command line and e820 map, `VmConfig::linux_cmdline` / `mmio_window_e820`). A bundle that
//! would fail at boot fails here, with the place in bulkhead.toml and what to do.

use std::collections::BTreeMap;
use std::fmt;
use vm::config::{Config, DeviceConfig, DiskSource, GuestKind, VmConfig, MAX_MEMORY};
use vm::loader::{GuestWrite, LoadError};

const PAGE: u64 = 4096;

/// Guest RAM on the host: only pages the loader writes are allocated, so a 3328 MiB VM costs
/// what its image occupies.
#[derive(Debug)]
pub struct SparseRam {
    size: u64,
    pages: BTreeMap<u64, Box<[u8; PAGE as usize]>>,
}

impl SparseRam {
    pub fn new(size: u64) -> Self {
        SparseRam {
            size,
            pages: BTreeMap::new(),
        }
    }

    /// The byte at `gpa` (0 where nothing was written).
    pub fn byte(&self, gpa: u64) -> u8 {
        self.pages
            .get(&(gpa / PAGE))
            .map_or(0, |p| p[(gpa % PAGE) as usize])
    }

    fn check(&self, gpa: u64, len: u64) -> Result<(), LoadError> {
        match gpa.checked_add(len) {
            Some(end) if end <= self.size => Ok(()),
            _ => Err(LoadError::OutsideRam { gpa, len }),
        }
    }
}

impl GuestWrite for SparseRam {
    fn write(&mut self, gpa: u64, data: &[u8]) -> Result<(), LoadError> {
        self.check(gpa, data.len() as u64)?;
        let mut at = gpa;
        for chunk in data.chunks(PAGE as usize) {
            // A chunk may straddle two pages.
            let mut rest = chunk;
            while !rest.is_empty() {
                let off = (at % PAGE) as usize;
                let n = rest.len().min(PAGE as usize - off);
                let page = self
                    .pages
                    .entry(at / PAGE)
                    .or_insert_with(|| Box::new([0; PAGE as usize]));
                page[off..off + n].copy_from_slice(&rest[..n]);
                rest = &rest[n..];
                at += n as u64;
            }
        }
        Ok(())
    }

    fn zero(&mut self, gpa: u64, len: u64) -> Result<(), LoadError> {
        self.check(gpa, len)?;
        let end = gpa + len;
        let pages: Vec<u64> = self
            .pages
            .range(gpa / PAGE..end.div_ceil(PAGE))
            .map(|(p, _)| *p)
            .collect();
        for p in pages {
            let start = (p * PAGE).max(gpa);
            let stop = ((p + 1) * PAGE).min(end);
            if let Some(page) = self.pages.get_mut(&p) {
                page[(start - p * PAGE) as usize..(stop - p * PAGE) as usize].fill(0);
            }
        }
        Ok(())
    }
}

/// A bundle that would fail at boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleProblem {
    /// Line and column in bulkhead.toml of the value it is about.
    pub at: Option<(usize, usize)>,
    pub vm: String,
    pub kind: ProblemKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProblemKind {
    /// `key = "file"` names a file the directory does not have.
    MissingFile { key: &'static str, file: String },
    /// The guest image does not load (the loader's message).
    ImageDoesNotLoad {
        image: String,
        kind: &'static str,
        message: String,
    },
    /// The initrd is at least as large as the VM's RAM.
    InitrdLargerThanRam {
        initrd: String,
        size: u64,
        memory: u64,
    },
}

/// `memory = "...M"` that holds `bytes` with 64 MiB to spare, as the parser accepts it.
fn memory_for(bytes: u64) -> Option<u64> {
    let mib = bytes.saturating_add(64 << 20).div_ceil(2 << 20) * 2;
    (bytes < MAX_MEMORY).then(|| mib.min(MAX_MEMORY >> 20))
}

impl fmt::Display for ProblemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProblemKind::MissingFile { key, file } => write!(
                f,
                "{key} = {file:?} is not in the bundle directory: copy {file} into it or fix the \
                 name"
            ),
            ProblemKind::ImageDoesNotLoad {
                image,
                kind,
                message,
            } => write!(
                f,
                "the guest image {image} does not load as kind = \"{kind}\": {message}"
            ),
            ProblemKind::InitrdLargerThanRam {
                initrd,
                size,
                memory,
            } => {
                write!(
                    f,
                    "the initrd {initrd} is {size} bytes ({} MiB), more than the VM's memory \
                     ({} MiB): ",
                    size.div_ceil(1 << 20),
                    memory >> 20
                )?;
                match memory_for(*size) {
                    Some(mib) => write!(
                        f,
                        "give the VM memory = \"{mib}M\" or more, or use a smaller initrd"
                    ),
                    None => write!(
                        f,
                        "no VM can hold it (at most {} MiB); use a smaller initrd",
                        MAX_MEMORY >> 20
                    ),
                }
            }
        }
    }
}

impl BundleProblem {
    /// `PATH:LINE:COLUMN: vm NAME: message`.
    pub fn located<'a>(&'a self, path: &'a str) -> impl fmt::Display + 'a {
        struct L<'a>(&'a BundleProblem, &'a str);
        impl fmt::Display for L<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self.0.at {
                    Some((line, column)) => write!(f, "{}:{line}:{column}: ", self.1)?,
                    None => write!(f, "{}: ", self.1)?,
                }
                write!(f, "vm {}: {}", self.0.vm, self.0.kind)
            }
        }
        L(self, path)
    }
}

/// Runs the hypervisor's VM-creation checks for every VM of `config` against the files of
/// `files` (bundle file name → contents). `text` is bulkhead.toml, for positions.
pub fn check(
    config: &Config,
    text: &[u8],
    files: &BTreeMap<String, Vec<u8>>,
) -> Result<(), BundleProblem> {
    for (index, vm) in config.vms.iter().enumerate() {
        check_vm(index, vm, text, files)?;
    }
    Ok(())
}

fn check_vm(
    index: usize,
    vm: &VmConfig,
    text: &[u8],
    files: &BTreeMap<String, Vec<u8>>,
) -> Result<(), BundleProblem> {
    let problem = |path: &[&str], kind| BundleProblem {
        at: vm::config::value_position(text, path),
        vm: vm.name.clone(),
        kind,
    };
    let get = |key: &'static str, path: &[&str], file: &str| {
        files.get(file).ok_or_else(|| {
            problem(
                path,
                ProblemKind::MissingFile {
                    key,
                    file: file.to_string(),
                },
            )
        })
    };
    let name = vm.name.as_str();
    // A clone (`from-snapshot`) has no image: its RAM is the snapshot's.
    let image = match vm.image() {
        Some(file) => Some(get("image", &["vm", name, "image"], file)?),
        None => None,
    };
    let initrd = match &vm.initrd {
        Some(i) => Some((i, get("initrd", &["vm", name, "initrd"], i)?)),
        None => None,
    };
    // Disk images: the i-th virtio-blk device is the i-th [[vm.NAME.virtio-blk]] table.
    for (i, d) in vm.devices.iter().enumerate() {
        if let DeviceConfig::VirtioBlk {
            source: DiskSource::Image(file),
            ..
        } = d
        {
            let i = i.to_string();
            get("image", &["vm", name, "virtio-blk", &i, "image"], file)?;
        }
    }
    if let Some((file, data)) = initrd {
        if data.len() as u64 >= vm.memory {
            return Err(problem(
                &["vm", name, "initrd"],
                ProblemKind::InitrdLargerThanRam {
                    initrd: file.clone(),
                    size: data.len() as u64,
                    memory: vm.memory,
                },
            ));
        }
    }
    let Some(image) = image else {
        return Ok(());
    };
    let mut ram = SparseRam::new(vm.memory);
    let loaded = match vm.kind {
        GuestKind::Elf64 => vm::loader::load_elf64(image, vm.memory, index as u64, &mut ram)
            .map(drop)
            .map_err(|e| e.to_string()),
        GuestKind::Real16 => vm::loader::load_real16(image, vm.memory, &mut ram)
            .map(drop)
            .map_err(|e| e.to_string()),
        GuestKind::Linux => {
            let cmdline = vm.linux_cmdline();
            let extra = [VmConfig::mmio_window_e820()];
            let lc = vm::linux::LinuxConfig {
                ram: vm.memory,
                cmdline: &cmdline,
                initrd: initrd.map(|(_, d)| d.as_slice()),
                e820_extra: &extra,
            };
            vm::acpi::GuestTables::build(&vm.acpi_config(), vm::acpi::BIOS_AREA_GPA)
                .map_err(|e| e.to_string())
                .and_then(|tables| {
                    let extras = vm::linux::LinuxExtras {
                        acpi: Some(&tables),
                    };
                    vm::linux::load_linux_with(image, &lc, &extras, &mut ram)
                        .map(drop)
                        .map_err(|e| e.to_string())
                })
        }
        GuestKind::Pvh => {
            let cmdline = vm.linux_cmdline();
            let extra = [VmConfig::mmio_window_e820()];
            let pc = vm::pvh::PvhConfig {
                ram: vm.memory,
                cmdline: &cmdline,
                initrd: initrd.map(|(_, d)| d.as_slice()),
                e820_extra: &extra,
                acpi: None,
            };
            vm::pvh::load_pvh(image, &pc, &mut ram)
                .map(drop)
                .map_err(|e| e.to_string())
        }
        GuestKind::Multiboot => {
            let extra = [VmConfig::mmio_window_e820()];
            let modules: Vec<vm::multiboot::Module> = initrd
                .map(|(name, d)| vm::multiboot::Module {
                    data: d.as_slice(),
                    string: name.as_str(),
                })
                .into_iter()
                .collect();
            let mc = vm::multiboot::MultibootConfig {
                ram: vm.memory,
                cmdline: vm.cmdline.as_deref().unwrap_or(""),
                modules: &modules,
                e820_extra: &extra,
                acpi: None,
            };
            vm::multiboot::load_multiboot(image, &mc, &mut ram)
                .map(drop)
                .map_err(|e| e.to_string())
        }
    };
    loaded.map_err(|message| {
        problem(
            &["vm", name, "image"],
            ProblemKind::ImageDoesNotLoad {
                image: vm.image().unwrap_or_default().to_string(),
                kind: vm.kind.name(),
                message,
            },
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_ram_writes_zeroes_and_bounds() {
        let mut r = SparseRam::new(3 * PAGE);
        r.write(PAGE - 2, &[1, 2, 3, 4]).unwrap();
        assert_eq!(
            (0..4).map(|i| r.byte(PAGE - 2 + i)).collect::<Vec<_>>(),
            [1, 2, 3, 4]
        );
        assert_eq!(r.pages.len(), 2);
        r.zero(PAGE - 1, 2).unwrap();
        assert_eq!(
            (0..4).map(|i| r.byte(PAGE - 2 + i)).collect::<Vec<_>>(),
            [1, 0, 0, 4]
        );
        assert_eq!(
            r.write(3 * PAGE - 1, &[0, 0]),
            Err(LoadError::OutsideRam {
                gpa: 3 * PAGE - 1,
                len: 2
            })
        );
        assert_eq!(
            r.zero(u64::MAX, 2),
            Err(LoadError::OutsideRam {
                gpa: u64::MAX,
                len: 2
            })
        );
        // A whole 3328 MiB VM costs nothing until written.
        let mut big = SparseRam::new(MAX_MEMORY);
        big.zero(0, MAX_MEMORY).unwrap();
        assert!(big.pages.is_empty());
    }

    #[test]
    fn memory_suggestions_parse() {
        assert_eq!(memory_for(100 << 20), Some(164));
        assert_eq!(memory_for((100 << 20) + 1), Some(166));
        assert_eq!(memory_for(3300 << 20), Some(3328));
        assert_eq!(memory_for(MAX_MEMORY), None);
    }

    use crate::image::{check_bundle, check_ramdisk, pack_bundle, pack_bundle_unchecked};

    /// A static ELF64 executable: one PT_LOAD of `code` at `paddr`, entry at its start
    /// (System V gABI, "ELF Header" and "Program Header").
    fn elf(paddr: u64, code: &[u8]) -> Vec<u8> {
        let mut e = vec![0u8; 120];
        e[..4].copy_from_slice(b"\x7fELF");
        e[4] = 2; // ELFCLASS64
        e[5] = 1; // ELFDATA2LSB
        e[6] = 1; // EV_CURRENT
        e[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
        e[18..20].copy_from_slice(&62u16.to_le_bytes()); // EM_X86_64
        e[20..24].copy_from_slice(&1u32.to_le_bytes());
        e[24..32].copy_from_slice(&paddr.to_le_bytes()); // e_entry
        e[32..40].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
        e[52..54].copy_from_slice(&64u16.to_le_bytes()); // e_ehsize
        e[54..56].copy_from_slice(&56u16.to_le_bytes()); // e_phentsize
        e[56..58].copy_from_slice(&1u16.to_le_bytes()); // e_phnum
        let ph = 64;
        e[ph..ph + 4].copy_from_slice(&1u32.to_le_bytes()); // PT_LOAD
        e[ph + 4..ph + 8].copy_from_slice(&5u32.to_le_bytes()); // R+X
        e[ph + 8..ph + 16].copy_from_slice(&120u64.to_le_bytes()); // p_offset
        e[ph + 16..ph + 24].copy_from_slice(&paddr.to_le_bytes());
        e[ph + 24..ph + 32].copy_from_slice(&paddr.to_le_bytes());
        e[ph + 32..ph + 40].copy_from_slice(&(code.len() as u64).to_le_bytes());
        e[ph + 40..ph + 48].copy_from_slice(&(code.len() as u64).to_le_bytes());
        e.extend_from_slice(code);
        e
    }

    /// A synthetic bzImage (Linux boot.rst, "The Real-Mode Kernel Header", protocol 2.15):
    /// 4 setup sectors, a 1 KiB protected-mode payload, loaded at 16 MiB, `init_size` bytes.
    fn bzimage(init_size: u32) -> Vec<u8> {
        let mut b = vec![0u8; 5 * 512];
        let put = |b: &mut Vec<u8>, at: usize, v: &[u8]| b[at..at + v.len()].copy_from_slice(v);
        b[0x1F1] = 4; // setup_sects
        put(&mut b, 0x1FA, &0xFFFFu16.to_le_bytes()); // vid_mode
        put(&mut b, 0x1F4, &(0x400u32 / 16).to_le_bytes()); // syssize
        put(&mut b, 0x1FE, &0xAA55u16.to_le_bytes()); // boot_flag
        put(&mut b, 0x200, &[0xEB, 0x6A]); // jump: header ends at 0x26C
        put(&mut b, 0x202, b"HdrS");
        put(&mut b, 0x206, &0x020Fu16.to_le_bytes()); // version 2.15
        b[0x211] = 1; // loadflags: LOADED_HIGH
        put(&mut b, 0x214, &0x10_0000u32.to_le_bytes()); // code32_start
        put(&mut b, 0x22C, &0x7FFF_FFFFu32.to_le_bytes()); // initrd_addr_max
        put(&mut b, 0x230, &0x20_0000u32.to_le_bytes()); // kernel_alignment
        b[0x235] = 21; // min_alignment
        put(&mut b, 0x236, &3u16.to_le_bytes()); // xloadflags: KERNEL_64 | CAN_BE_LOADED_ABOVE_4G
        put(&mut b, 0x238, &2047u32.to_le_bytes()); // cmdline_size
        put(&mut b, 0x258, &0x100_0000u64.to_le_bytes()); // pref_address
        put(&mut b, 0x260, &init_size.to_le_bytes());
        b.extend((0..0x400u32).map(|i| (i * 7 + 1) as u8));
        b
    }

    const GOOD: &str = r#"[vm.elf]
kind = "elf64"
image = "guest.elf"
memory = "16M"

[vm.boot16]
kind = "real16"
image = "boot.bin"
memory = "4M"

[vm.linux]
kind = "linux"
image = "bzImage"
initrd = "initrd.img"
memory = "64M"
cmdline = "console=ttyS0"

[[vm.linux.virtio-blk]]
image = "disk.img"
"#;

    fn bundle(conf: &str, files: &[(&str, Vec<u8>)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("bulkhead.toml"), conf).unwrap();
        for (name, data) in files {
            std::fs::write(dir.path().join(name), data).unwrap();
        }
        dir
    }

    fn good_files() -> Vec<(&'static str, Vec<u8>)> {
        vec![
            ("guest.elf", elf(0x20_0000, &[0xF4; 64])),
            ("boot.bin", vec![0xF4; 512]),
            ("bzImage", bzimage(0x40_0000)),
            ("initrd.img", vec![7; 4096]),
            ("disk.img", vec![0; 4096]),
        ]
    }

    /// The error `check_bundle` gives for `conf` with `files`, without the directory prefix.
    fn problem(conf: &str, files: &[(&str, Vec<u8>)]) -> String {
        let dir = bundle(conf, files);
        let e = check_bundle(dir.path()).unwrap_err().to_string();
        let prefix = format!("bundle: {}/bulkhead.toml:", dir.path().display());
        e.strip_prefix(&prefix)
            .unwrap_or_else(|| panic!("{e}"))
            .to_string()
    }

    fn without(name: &str) -> Vec<(&'static str, Vec<u8>)> {
        good_files()
            .into_iter()
            .filter(|(n, _)| *n != name)
            .collect()
    }

    fn with(name: &'static str, data: Vec<u8>) -> Vec<(&'static str, Vec<u8>)> {
        let mut f = without(name);
        f.push((name, data));
        f
    }

    #[test]
    fn a_good_bundle_passes_and_packs() {
        let dir = bundle(GOOD, &good_files());
        let c = check_bundle(dir.path()).unwrap();
        assert_eq!(c.vms.len(), 3);
        let archive = pack_bundle(dir.path()).unwrap();
        let a = vm::archive::Archive::parse(&archive).unwrap();
        assert_eq!(a.get("bulkhead.toml"), Some(GOOD.as_bytes()));
        assert_eq!(a.get("boot.bin").map(<[u8]>::len), Some(512));
        assert_eq!(
            crate::image::summary(&c),
            [
                "timeslice 2000000 TSC ticks, 3 VM(s)",
                "vm elf: elf64, 16 MiB, image guest.elf",
                "vm boot16: real16, 4 MiB, image boot.bin",
                "vm linux: linux, 64 MiB, image bzImage, initrd initrd.img, virtio-blk image disk.img",
            ]
        );
    }

    #[test]
    fn missing_files_are_named_with_their_place() {
        assert_eq!(
            problem(GOOD, &without("guest.elf")),
            "3:9: vm elf: image = \"guest.elf\" is not in the bundle directory: copy guest.elf \
             into it or fix the name"
        );
        assert_eq!(
            problem(GOOD, &without("initrd.img")),
            "14:10: vm linux: initrd = \"initrd.img\" is not in the bundle directory: copy \
             initrd.img into it or fix the name"
        );
        assert_eq!(
            problem(GOOD, &without("disk.img")),
            "19:9: vm linux: image = \"disk.img\" is not in the bundle directory: copy disk.img \
             into it or fix the name"
        );
    }

    #[test]
    fn malformed_images_fail_with_the_loaders_message() {
        assert_eq!(
            problem(GOOD, &with("guest.elf", b"#!/bin/sh\n".to_vec())),
            format!(
                "3:9: vm elf: the guest image guest.elf does not load as kind = \"elf64\": {}",
                LoadError::NotElf
            )
        );
        // A segment beyond the VM's 16 MiB.
        assert_eq!(
            problem(GOOD, &with("guest.elf", elf(0x100_0000, &[0xF4; 64]))),
            format!(
                "3:9: vm elf: the guest image guest.elf does not load as kind = \"elf64\": {}",
                LoadError::SegmentOutsideRam {
                    paddr: 0x100_0000,
                    memsz: 64,
                    ram: 16 << 20
                }
            )
        );
        assert_eq!(
            problem(GOOD, &with("boot.bin", vec![0; 0x10_0000])),
            format!(
                "8:9: vm boot16: the guest image boot.bin does not load as kind = \"real16\": {}",
                LoadError::ImageTooLarge {
                    size: 0x10_0000,
                    room: 0xA_0000 - 0x7C00
                }
            )
        );
        let not_bz = problem(GOOD, &with("bzImage", elf(0x20_0000, &[0; 16])));
        assert_eq!(
            not_bz,
            format!(
                "13:9: vm linux: the guest image bzImage does not load as kind = \"linux\": {}",
                vm::linux::LinuxError::NotBzImage
            )
        );
        let mut truncated = bzimage(0x40_0000);
        truncated.truncate(0x230);
        assert!(problem(GOOD, &with("bzImage", truncated))
            .starts_with("13:9: vm linux: the guest image bzImage does not load as kind = \"linux\": the bzImage is truncated"));
    }

    #[test]
    fn an_initrd_larger_than_ram_is_refused_with_a_memory_that_parses() {
        let m = problem(GOOD, &with("initrd.img", vec![0; 64 << 20]));
        assert_eq!(
            m,
            "14:10: vm linux: the initrd initrd.img is 67108864 bytes (64 MiB), more than the \
             VM's memory (64 MiB): give the VM memory = \"128M\" or more, or use a smaller initrd"
        );
        // The advice is a value the parser takes, and with it the bundle passes.
        let fixed = GOOD.replace("memory = \"64M\"", "memory = \"128M\"");
        let dir = bundle(&fixed, &with("initrd.img", vec![0; 64 << 20]));
        check_bundle(dir.path()).unwrap();
        // An initrd that fits in RAM but not beside the kernel: the loader's message.
        let m = problem(GOOD, &with("initrd.img", vec![0; 60 << 20]));
        assert!(
            m.starts_with("13:9: vm linux: the guest image bzImage does not load as kind = \"linux\": the initrd is 62914560 bytes but only"),
            "{m}"
        );
    }

    /// Issue 9: a huge init_size advised `memory = 4096M`, which the parser rejects.
    #[test]
    fn a_huge_init_size_advises_a_memory_the_parser_accepts() {
        let m = problem(GOOD, &with("bzImage", bzimage(3000 << 20)));
        assert_eq!(
            m,
            "13:9: vm linux: the guest image bzImage does not load as kind = \"linux\": the \
             kernel needs guest RAM up to 0xbc800000 (3016 MiB) to decompress, the VM has 64 \
             MiB; give the VM more memory (memory = \"3328M\")"
        );
        let fixed = GOOD.replace("memory = \"64M\"", "memory = \"3328M\"");
        let dir = bundle(&fixed, &with("bzImage", bzimage(3000 << 20)));
        check_bundle(dir.path()).unwrap();
        // Beyond any VM: no memory can help, and the message says so.
        let m = problem(GOOD, &with("bzImage", bzimage(u32::MAX)));
        assert!(
            m.ends_with("more than a VM can have (3328 MiB, memory = \"3328M\"); its init_size is implausible: rebuild the kernel or use arch/x86/boot/bzImage"),
            "{m}"
        );
    }

    #[test]
    fn the_unchecked_packer_skips_only_the_file_checks() {
        let dir = bundle(GOOD, &without("guest.elf"));
        assert!(pack_bundle(dir.path()).is_err());
        let a = pack_bundle_unchecked(dir.path()).unwrap();
        assert!(vm::archive::Archive::parse(&a)
            .unwrap()
            .get("guest.elf")
            .is_none());
        // The configuration is still checked.
        let dir = bundle("[vm.a]\n", &[]);
        assert!(pack_bundle_unchecked(dir.path())
            .unwrap_err()
            .to_string()
            .ends_with("bulkhead.toml:1:1: [vm.a] needs `kind`, e.g. kind = \"elf64\" (or \"real16\", \"linux\", \"pvh\", \"multiboot\")"));
    }

    #[test]
    fn old_and_missing_configurations() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        assert_eq!(
            pack_bundle(dir.path()).unwrap_err().to_string(),
            format!("bundle: {d} has no bulkhead.toml: write one (docs/configuration.md)")
        );
        std::fs::write(dir.path().join("bulkhead.conf"), "[vm a]\n").unwrap();
        assert_eq!(
            pack_bundle(dir.path()).unwrap_err().to_string(),
            format!(
                "bundle: {d}/bulkhead.conf is in the old format, which Bulkhead no longer reads: \
                 convert it with `bulkhead-boot config convert {d}/bulkhead.conf -o \
                 {d}/bulkhead.toml`, check the result, then delete bulkhead.conf"
            )
        );
        std::fs::write(dir.path().join("bulkhead.toml"), GOOD).unwrap();
        assert_eq!(
            pack_bundle(dir.path()).unwrap_err().to_string(),
            format!(
                "bundle: {d} has both bulkhead.toml and the old bulkhead.conf: delete \
                 {d}/bulkhead.conf"
            )
        );
    }

    #[test]
    fn ramdisks_must_be_boot_archives() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.bin");
        std::fs::write(&empty, b"").unwrap();
        assert_eq!(
            check_ramdisk(&empty).unwrap_err().to_string(),
            format!(
                "bundle: the ramdisk {} is empty, and the bootloader would hang on it without a \
                 message: give a boot archive (`bulkhead-boot build --bundle DIR` writes one)",
                empty.display()
            )
        );
        let junk = dir.path().join("junk.bin");
        std::fs::write(&junk, b"0123456789abcdef").unwrap();
        assert_eq!(
            check_ramdisk(&junk).unwrap_err().to_string(),
            format!(
                "bundle: the ramdisk {}: {} (`bulkhead-boot build --bundle DIR` writes one)",
                junk.display(),
                vm::archive::ArchiveError::BadMagic
            )
        );
        let missing = dir.path().join("nothere.bin");
        assert!(check_ramdisk(&missing)
            .unwrap_err()
            .to_string()
            .starts_with("cannot read the ramdisk"));
        let good = dir.path().join("good.bin");
        std::fs::write(&good, vm::archive::ArchiveBuilder::new().finish()).unwrap();
        check_ramdisk(&good).unwrap();
        // build_images refuses it before the bootloader sees it.
        let e = crate::image::build_images(&good, Some(&empty), dir.path()).unwrap_err();
        assert!(e.to_string().contains("is empty"), "{e}");
    }
}
