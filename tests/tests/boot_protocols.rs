//! Boot protocols beyond the bzImage: the Linux test guest's ELF kernel booted through its PVH
//! entry (vm::pvh, `kind = "pvh"`) reaches the same checks as the bzImage boot; the Multiboot
//! v1 test kernel (vm::multiboot, `kind = "multiboot"`), as ELF32 and as an a.out-kludge flat
//! binary, finds the boot information it was given.

use bulkhead_tests::{boot_image, bundle_files, linux_guest, manifest_value, Checked};
use std::path::{Path, PathBuf};

const CMDLINE: &str =
    "console=ttyS0,115200 panic=-1 reboot=t io_delay=none nolapic tsc=reliable no_timer_check";

/// The ELF kernel inside a bzImage: the protected-mode payload (boot.rst: payload_offset at
/// 0x248 and payload_length at 0x24C, relative to the protected-mode code at
/// (setup_sects + 1) * 512) is the LZ4-compressed `vmlinux.bin`, decompressed with the `lz4`
/// tool scripts/build-guest uses. It keeps the ELF notes, the PVH entry among them.
fn vmlinux_from(bzimage: &Path, out_dir: &Path) -> PathBuf {
    let b = std::fs::read(bzimage).expect("read bzImage");
    let le32 = |at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap()) as usize;
    let setup_sects = match b[0x1f1] {
        0 => 4,
        n => usize::from(n),
    };
    let start = (setup_sects + 1) * 512 + le32(0x248);
    // Kbuild appends the decompressed size (4 bytes, little endian) after the LZ4 stream
    // (scripts/Makefile.lib, size_append); the lz4 tool takes only the stream.
    let payload = &b[start..start + le32(0x24c)];
    let (payload, size) = payload.split_at(payload.len() - 4);
    let size = u32::from_le_bytes(size.try_into().unwrap()) as u64;
    // LZ4 legacy frame magic 0x184C2102 (the guest config compresses with LZ4).
    assert_eq!(
        &payload[..4],
        &[0x02, 0x21, 0x4c, 0x18],
        "the bzImage payload is not LZ4"
    );
    let compressed = out_dir.join("vmlinux.lz4");
    std::fs::write(&compressed, payload).expect("write payload");
    let vmlinux = out_dir.join("vmlinux");
    let status = std::process::Command::new("lz4")
        .args(["-d", "-f", "-q"])
        .arg(&compressed)
        .arg(&vmlinux)
        .status()
        .expect("run lz4");
    assert!(status.success(), "lz4 -d failed");
    assert_eq!(std::fs::metadata(&vmlinux).expect("vmlinux").len(), size);
    vmlinux
}

fn pvh_conf() -> String {
    format!(
        "[vm.linux]\nkind = \"pvh\"\nimage = \"vmlinux\"\ninitrd = \"initramfs.cpio.lz4\"\nmemory = \"64M\"\n\
         console-timestamps = true\ncmdline = \"{CMDLINE}\"\n\
         [[vm.linux.virtio-blk]]\nsize = \"8M\"\nread-only = false\n\
         [[vm.linux.virtio-net]]\nmac = \"52:54:00:12:34:56\"\n"
    )
}

/// Boots the Linux guest through its PVH entry; returns the run and the entry its note names.
pub fn boot_pvh_linux() -> (Checked, u64) {
    let dir = linux_guest();
    let tmp = tempfile::tempdir().expect("temporary directory");
    let vmlinux = vmlinux_from(&dir.join("bzImage"), tmp.path());
    let bytes = std::fs::read(&vmlinux).expect("read vmlinux");
    let elf = vm::elf::Elf::parse(&bytes).expect("vmlinux is an ELF");
    let entry = vm::pvh::find_entry(&elf).expect("the guest kernel has CONFIG_PVH=y");
    let files = [vmlinux, dir.join("initramfs.cpio.lz4")];
    let (_bundle, image) = bundle_files(&pvh_conf(), &files);
    (boot_image(&image, "corei7_skylake_x", 600), entry)
}

#[test]
fn linux_boots_through_its_pvh_entry() {
    let dir = linux_guest();
    let pattern = manifest_value(&dir, "blk_pattern_sha256");
    let (run, entry) = boot_pvh_linux();
    run.saw(&format!(
        "vm linux: 64 MiB RAM, PVH guest vmlinux entered at {entry:#x}, "
    ));
    for needle in [
        "guest: userspace up uptime=",
        "guest: virtio-blk: found /dev/vda size=8388608",
        &format!("guest: PASS virtio-blk pattern sha256={pattern}"),
        "guest: virtio-net: found eth0 mac=52:54:00:12:34:56",
        "guest: PASS virtio-net ping 192.0.2.1 received=3/3",
        "guest: ALL PASS",
    ] {
        run.said("linux", needle);
    }
    run.saw("vm linux: stopped: guest powered off (ACPI S5)")
        .exited(0, "ok");
    for bad in [
        "guest: FAIL",
        "FAILED",
        "unhandled exit",
        "hypervisor bug",
        "Kernel panic",
    ] {
        run.not_saw(bad);
    }
}

/// FNV-1a (32-bit), as the Multiboot test kernel computes it over its module.
fn fnv1a(data: &[u8]) -> u32 {
    data.iter().fold(0x811c_9dc5u32, |h, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// The Multiboot v1 test kernel (tests/guest/multiboot), once as an ELF32 kernel and once as a
/// flat binary loaded by its a.out-kludge addresses, each with a module and a command line:
/// both find the machine state and boot information of Multiboot 0.6.96 §3.2-3.3 and print
/// them, and the test compares every value with what it configured.
#[test]
fn multiboot_kernels_get_their_boot_information() {
    let tmp = tempfile::tempdir().expect("temporary directory");
    // A module whose bytes are not all alike: its checksum then proves every byte arrived.
    let module: Vec<u8> = (0u32..10_000)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let module_path = tmp.path().join("module.bin");
    std::fs::write(&module_path, &module).expect("write the module");
    let conf = "[vm.mbelf]\nkind = \"multiboot\"\nimage = \"multiboot.elf\"\nmemory = \"16M\"\n\
                cmdline = \"mb-test one two\"\ninitrd = \"module.bin\"\n\
                [vm.mbaout]\nkind = \"multiboot\"\nimage = \"multiboot-aout.bin\"\nmemory = \"32M\"\n\
                cmdline = \"aout\"\ninitrd = \"module.bin\"\n";
    let guests = bulkhead_boot::image::guest_dir();
    let files = [
        guests.join("multiboot.elf"),
        guests.join("multiboot-aout.bin"),
        module_path,
    ];
    let (_bundle, image) = bundle_files(conf, &files);
    let run = boot_image(&image, "corei7_skylake_x", 300);
    let sum = fnv1a(&module);
    for (vm, megs, cmdline) in [("mbelf", 16u64, "mb-test one two"), ("mbaout", 32, "aout")] {
        // RAM below 640 KiB less the EBDA (0x9FC00 = 639 KiB), and from 1 MiB to the end of
        // RAM (vm::multiboot's memory map).
        let upper_kib = (megs << 10) - 1024;
        // The module sits page-aligned at the top of RAM.
        let start = ((megs << 20) - module.len() as u64) & !0xfff;
        let end = start + module.len() as u64;
        for needle in [
            "mb: magic 2badb002".to_string(),
            // PE on, paging off; IF clear; CS = the flat code selector 0x08.
            "mb: state cr0 ".to_string(),
            // memory, cmdline, mods, mmap, boot loader name (§3.3 flags 0, 2, 3, 6, 9).
            "mb: flags 0000024d".to_string(),
            format!("mb: mem_lower 0000027f mem_upper {upper_kib:08x}"),
            format!("mb: cmdline {cmdline}"),
            "mb: loader Bulkhead".to_string(),
            "mb: mods 00000001".to_string(),
            format!("mb: mod 0 start {start:08x} end {end:08x} fnv1a {sum:08x} string module.bin"),
            "mb: mmap entries ".to_string(),
            "mb: DONE passed=4 failed=0".to_string(),
        ] {
            run.said(vm, &needle);
        }
        let state = run.guest_line(vm, "mb: state cr0 ");
        assert!(state.ends_with(" cs 00000008"), "{state}");
        // Four entries: RAM below the EBDA, the BIOS area, RAM from 1 MiB, the virtio-mmio
        // window (reserved); RAM is 639 KiB plus the upper memory.
        let mmap = run.guest_line(vm, "mb: mmap entries ");
        assert!(
            mmap.ends_with(&format!(
                "mb: mmap entries 00000004 ram_kib {:08x}",
                639 + upper_kib
            )),
            "{mmap}"
        );
        run.saw(&format!(
            "vm {vm}: stopped: guest halted with interrupts disabled"
        ));
    }
    // The ELF's entry, and the a.out kludge's entry_addr (after its 32-byte header).
    run.saw("vm mbelf: 16 MiB RAM, Multiboot guest multiboot.elf entered at 0x10000c")
        .saw("vm mbaout: 32 MiB RAM, Multiboot guest multiboot-aout.bin entered at 0x100020")
        .not_saw("mb: DONE passed=4 failed=1")
        .exited(0, "ok");
}
