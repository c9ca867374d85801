//! Boot protocols beyond the bzImage: the Linux test guest's ELF kernel booted through its PVH
//! entry (vm::pvh, `kind = "pvh"`) reaches the same checks as the bzImage boot.

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
