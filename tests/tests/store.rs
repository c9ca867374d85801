//! Disk store integration tests (issue 15): the hypervisor finds the drives through PCI and
//! its ATA driver, reads the stores on them and reports exactly what the host tool wrote.

use bulkhead_boot::Platform;
use bulkhead_tests::{
    boot_killed_at, boot_q35_with_nvme, boot_with_drives, boot_with_storage, bundle_image,
    bundle_uefi_image, image_for, SELFTEST_CHECKS, SELFTEST_CONF,
};
use std::path::{Path, PathBuf};

/// Bochs derives a flat disk's geometry from its size: whole cylinders of 16 heads x 63
/// sectors keep every sector visible.
const CYLINDER: u64 = 16 * 63 * 512;

fn disk(args: &[&str]) {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let mut out = Vec::new();
    let code = bulkhead_boot::disk::main(&args, &mut out)
        .unwrap_or_else(|e| panic!("bulkhead-boot disk {args:?}: {e}"));
    assert_eq!(code, 0, "bulkhead-boot disk {args:?}");
}

fn drive(dir: &Path, name: &str, cylinders: u64) -> PathBuf {
    let p = dir.join(name);
    std::fs::File::create(&p)
        .unwrap()
        .set_len(cylinders * CYLINDER)
        .unwrap();
    p
}

fn flip(path: &Path, offset: u64) {
    let mut b = std::fs::read(path).unwrap();
    b[offset as usize] ^= 0x01;
    std::fs::write(path, b).unwrap();
}

/// Three store drives on ata0-slave, ata1-master and ata1-slave: a whole-drive store with two
/// disks, a GPT store whose older header copy is damaged (the newer one is used, and the
/// damage reported), and a store with both copies damaged (reported, never written).
#[test]
fn bochs_ata_drives_and_their_stores_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let whole = drive(dir.path(), "whole.img", 16);
    let w = whole.to_str().unwrap();
    disk(&["init", w]);
    disk(&["create", w, "root", "--size", "2M"]);
    disk(&["create", w, "swap", "--size", "512K"]);

    let gpt = drive(dir.path(), "gpt.img", 32);
    let g = gpt.to_str().unwrap();
    disk(&["init", g, "--gpt", "--unit", "64K"]);
    disk(&["create", g, "vda", "--size", "1M"]);
    // Copy A (generation 2) is the older one: damage it inside the partition (LBA 2048).
    flip(&gpt, 2048 * 512 + 300);

    let broken = drive(dir.path(), "broken.img", 16);
    let b = broken.to_str().unwrap();
    disk(&["init", b]);
    flip(&broken, 100);
    flip(&broken, 16384 + 100);
    let broken_before = std::fs::read(&broken).unwrap();

    let run = boot_with_drives(
        Platform::Bochs,
        &image_for(Platform::Bochs),
        "corei7_skylake_x",
        180,
        &[whole.clone(), gpt.clone(), broken.clone()],
    );
    run.exited(0, "ok")
        .saw("pci: 00:01.1 8086:7010 class 01.01.80 (mass storage)")
        .saw("drive ata0-master: \"Generic 1234\", ")
        .saw("drive ata0-master: no disk store")
        .saw("drive ata0-slave: \"Generic 1234\", 16128 sectors (7 MiB), no write cache, FLUSH CACHE EXT")
        .saw("store on ata0-slave (whole drive): 2 disks, 6291456 bytes, 3145728 free; header A generation 4, B generation 3")
        .saw("store on ata0-slave: disk root 2097152 bytes in 1 extent(s)")
        .saw("store on ata0-slave: disk swap 524288 bytes in 1 extent(s)")
        .saw("drive ata1-master: \"Generic 1234\", 32256 sectors (15 MiB), no write cache, FLUSH CACHE EXT")
        // Partition 2048..=32222 (30175 sectors): 235 units of 64 KiB, the first for headers.
        .saw("store on ata1-master (GPT partition 1): 1 disks, 15335424 bytes, 14286848 free; header A DAMAGED (checksum ")
        .saw("), B generation 3")
        .saw("store on ata1-master: one header copy is damaged (checksum ")
        .saw("store on ata1-master: disk vda 1048576 bytes in 1 extent(s)")
        .saw("drive ata1-slave: disk store not used (nothing is written to it): both store header copies are damaged (A: checksum ")
        .saw("vmx: VMXOFF ok");
    assert_eq!(
        std::fs::read(&broken).unwrap(),
        broken_before,
        "a damaged store was written"
    );
}

/// FNV-1a 64, as the virtio-client guest computes it.
fn fnv1a64(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

const PERSIST_CONF: &str = r#"
[vm.virtio]
kind = "elf64"
image = "virtio-client.elf"
memory = "32M"

[[vm.virtio.virtio-blk]]
disk = "vdisk"
"#;

/// `disk = "vdisk"`: run 1 writes a pattern through virtio-blk to a store disk on
/// ata0-slave (acknowledged only once the drive has it) and flushes it (ATA FLUSH CACHE
/// EXT); run 2, a fresh Bochs on the same drive file, reads it back with the same checksum;
/// the host tool exports the disk and finds the same bytes.
#[test]
fn bochs_store_disk_keeps_its_data_across_boots() {
    let dir = tempfile::tempdir().unwrap();
    let store = drive(dir.path(), "store.img", 16);
    let s = store.to_str().unwrap();
    disk(&["init", s]);
    disk(&["create", s, "other", "--size", "1M"]);
    disk(&["create", s, "vdisk", "--size", "2M"]);
    let (_b, image) = bundle_image(PERSIST_CONF, &["virtio-client.elf"]);

    let run1 = boot_with_drives(
        Platform::Bochs,
        &image,
        "corei7_skylake_x",
        300,
        std::slice::from_ref(&store),
    );
    run1.exited(0, "ok")
        .saw("vm virtio: virtio-blk over store disk vdisk on ata0-slave")
        .said(
            "virtio",
            "guest virtio-client: blk store disk capacity=4096 sectors readonly=false",
        )
        .said(
            "virtio",
            "guest virtio-client: PASS blk-persist-write checksum=",
        )
        .said("virtio", "guest virtio-client: DONE passed=1 failed=0")
        .not_saw("FAIL");
    let line = run1.guest_line("virtio", "PASS blk-persist-write");
    let sum = line
        .split("checksum=")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("no checksum in {line}"))
        .to_string();
    // The marker read, 8 data writes of 4 KiB and the marker; two flushes: each one drive
    // request, acknowledged after the drive completed it.
    // Every data transfer by bus-master DMA (READ/WRITE DMA EXT), none by PIO.
    let dev = run1.line("vm virtio: virtio-blk at ");
    assert!(
        dev.contains(
            " store-disk=vdisk reads=1 writes=9 flushes=2 drive-requests=12 drive-errors=0 drive-dma=10 drive-pio=0"
        ),
        "{dev}"
    );

    // The host tool reads the store back: the same pattern, the other disk untouched.
    let out = dir.path().join("vdisk.bin");
    disk(&["export", s, "vdisk", out.to_str().unwrap()]);
    let bytes = std::fs::read(&out).unwrap();
    assert_eq!(&bytes[..8], b"BKHDPERS");
    assert_eq!(format!("{:016x}", fnv1a64(&bytes[8 * 512..72 * 512])), sum);
    let other = dir.path().join("other.bin");
    disk(&["export", s, "other", other.to_str().unwrap()]);
    assert!(std::fs::read(&other).unwrap().iter().all(|&b| b == 0));

    let run2 = boot_with_drives(
        Platform::Bochs,
        &image,
        "corei7_skylake_x",
        300,
        std::slice::from_ref(&store),
    );
    run2.exited(0, "ok")
        .said(
            "virtio",
            &format!("guest virtio-client: PASS blk-persist-read checksum={sum} sectors=64"),
        )
        .said("virtio", "guest virtio-client: DONE passed=1 failed=0")
        .not_saw("FAIL");
    let dev = run2.line("vm virtio: virtio-blk at ");
    // The marker, then the 32 KiB in one piece: a store disk takes up to 64 KiB per backend
    // call (one driver request, one READ SECTORS EXT of 64 sectors), not 4 KiB pieces.
    assert!(
        dev.contains(
            " store-disk=vdisk reads=2 writes=0 flushes=0 drive-requests=2 drive-errors=0 drive-dma=2 drive-pio=0"
        ),
        "{dev}"
    );
}

/// Two VMs asking for the same disk for writing: the second is not started and says why;
/// a disk that is in no store stops its VM with the advice to create it.
#[test]
fn bochs_store_disk_has_one_writer_and_missing_disks_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = drive(dir.path(), "store.img", 16);
    let s = store.to_str().unwrap();
    disk(&["init", s]);
    disk(&["create", s, "vdisk", "--size", "1M"]);
    let conf = format!(
        "{PERSIST_CONF}
[vm.second]
kind = \"elf64\"
image = \"virtio-client.elf\"
memory = \"32M\"

[[vm.second.virtio-blk]]
disk = \"vdisk\"

[vm.third]
kind = \"elf64\"
image = \"virtio-client.elf\"
memory = \"32M\"

[[vm.third.virtio-blk]]
disk = \"nope\"
"
    );
    let (_b, image) = bundle_image(&conf, &["virtio-client.elf"]);
    let run = boot_with_drives(Platform::Bochs, &image, "corei7_skylake_x", 300, &[store]);
    run.exited(32, "bad-configuration")
        .saw("vm second: not started: disk \"vdisk\" is open for writing by VM virtio; one writer at a time")
        .saw("vm third: not started: no disk \"nope\" in the 1 disk store(s) found")
        .said("virtio", "guest virtio-client: PASS blk-persist-write checksum=")
        .saw("bulkhead: all VMs stopped (1 ran, 2 could not start)");
}

const CHECK_CONF: &str = r#"
[hypervisor]
store-check = true

[vm.selftest]
kind = "elf64"
image = "selftest.elf"
memory = "16M"
"#;

/// QEMU (no VT-x): the store check runs before the VT-x diagnosis. The NVMe driver
/// identifies QEMU's controller and finds the GPT store on namespace 1; the IDE driver finds
/// a store whose newer header copy is damaged (the older one is used). Each store gets a
/// write / flush / read-back of a free unit, zeroed again: the drive files are unchanged.
#[test]
fn qemu_store_check_on_nvme_and_ide() {
    let dir = tempfile::tempdir().unwrap();
    let nvme = drive(dir.path(), "nvme.img", 32);
    let n = nvme.to_str().unwrap();
    disk(&["init", n, "--gpt"]);
    disk(&["create", n, "vda", "--size", "4M"]);
    let ide = drive(dir.path(), "ide.img", 16);
    let i = ide.to_str().unwrap();
    disk(&["init", i, "--unit", "64K"]);
    disk(&["create", i, "a", "--size", "64K"]);
    disk(&["create", i, "b", "--size", "64K"]);
    // Copy A (generation 4) is current: damaged, copy B (generation 3, one disk) is used.
    flip(&ide, 5000);
    let (nvme_before, ide_before) = (std::fs::read(&nvme).unwrap(), std::fs::read(&ide).unwrap());

    let (_b, image) = bundle_uefi_image(CHECK_CONF, &["selftest.elf"]);
    let run = boot_with_storage(
        Platform::Qemu,
        &image,
        "max",
        120,
        std::slice::from_ref(&ide),
        std::slice::from_ref(&nvme),
    );
    run.exited(16, "not-intel")
        .saw(" functions (configuration mechanism #1; no ACPI MCFG)")
        .saw("pci: 00:04.0 1b36:0010 class 01.08.02 (mass storage)")
        .saw("nvme0 (00:04.0 1b36:0010 class 01.08.02): \"QEMU NVMe Ctrl\" serial \"bulkhead0\", ")
        .saw("namespace 1: 32256 blocks of 512 bytes")
        .saw("drive nvme0n1: \"QEMU NVMe Ctrl\", 32256 sectors (15 MiB), write cache, Flush")
        // 30175 partition sectors hold 14 units of 1 MiB, the first for the headers.
        .saw("store on nvme0n1 (GPT partition 1): 1 disks, 13631488 bytes, 9437184 free; header A generation 2, B generation 3")
        .saw("store on nvme0n1: disk vda 4194304 bytes in 1 extent(s)")
        // The last free unit: unit 13 of the partition at LBA 2048.
        .saw("; MDTS 512 KiB: up to 64 KiB per command (PRP list)")
        .saw("store-check nvme0n1: wrote, flushed and read back 65536 bytes at sector 28672: ok")
        .saw("ata0: bus-master DMA (registers at port 0x")
        .saw("drive ata0-slave: \"QEMU HARDDISK\", 16128 sectors (7 MiB)")
        .saw("store on ata0-slave (whole drive): 1 disks, 8192000 bytes, 8126464 free; header A DAMAGED (checksum ")
        .saw("), B generation 3")
        // 16128 sectors = 126 units of 64 KiB; the last is unit 125 at LBA 16000.
        .saw("store-check ata0-slave: wrote, flushed and read back 65536 bytes at sector 16000: ok")
        .saw("cpu: VMX no (CPUID.1:ECX[5])")
        .saw("cannot run: ");
    // QEMU's PIIX3 IDE has a bus master too: the check's three 64 KiB transfers (pattern,
    // read-back, zeroes) are one DMA command each on both drives: 128 sectors by ATA DMA,
    // 16 pages by NVMe PRP1 + a PRP list of 15 entries (at most MDTS).
    for d in ["nvme0n1", "ata0-slave"] {
        let l = run.line(&format!("store-check {d}: wrote"));
        assert!(l.ends_with("; 3 transfers by DMA, 0 by PIO"), "{l}");
    }
    // DISCARD / WRITE_ZEROES pass-through: QEMU's NVMe has Dataset Management and Write
    // Zeroes (ONCS bits 2 and 3); its IDE drives say TRIM (IDENTIFY word 169 bit 0), so a
    // discard is DATA SET MANAGEMENT by DMA there, and zeroes are written (no zeroing command).
    run.saw("store-check nvme0n1: discard by Dataset Management (deallocate), then zeroes by Write Zeroes on 65536 bytes at sector 28672: ok, read back as zeroes")
        .saw("drive ata0-slave: TRIM (IDENTIFY word 169 bit 0): DISCARD passes through as DATA SET MANAGEMENT")
        .saw("store-check ata0-slave: discard by DATA SET MANAGEMENT (TRIM), then zeroes written (no zeroing command) on 65536 bytes at sector 16000: ok, read back as zeroes");
    assert!(
        std::fs::read(&nvme).unwrap() == nvme_before,
        "the NVMe store changed"
    );
    assert!(
        std::fs::read(&ide).unwrap() == ide_before,
        "the IDE store changed"
    );
}

/// Bochs (PIIX3 IDE with bus master): the store check on ata0-slave moves its data by
/// bus-master DMA (READ/WRITE DMA EXT through a PRD table), not PIO: the channel reports its
/// bus master, the drive says "bus-master DMA", and the check's three 64 KiB transfers (the
/// pattern, its read-back, the zeroes) are counted as DMA, one command of 128 sectors each.
/// The drive file is unchanged.
#[test]
fn bochs_store_check_uses_bus_master_dma() {
    let dir = tempfile::tempdir().unwrap();
    let store = drive(dir.path(), "store.img", 16);
    let s = store.to_str().unwrap();
    disk(&["init", s, "--unit", "64K"]);
    disk(&["create", s, "a", "--size", "64K"]);
    let before = std::fs::read(&store).unwrap();
    let conf = format!("[hypervisor]\nstore-check = true\n{SELFTEST_CONF}");
    let (_b, image) = bundle_image(&conf, &["selftest.elf"]);
    let run = boot_with_drives(
        Platform::Bochs,
        &image,
        "corei7_skylake_x",
        300,
        std::slice::from_ref(&store),
    );
    run.exited(0, "ok")
        // Bochs's i440FX has no MCFG: configuration mechanism #1.
        .saw(" functions (configuration mechanism #1; no ACPI MCFG)")
        .saw("pci: 00:01.1 8086:7010 class 01.01.80 (mass storage)")
        .saw("drive ata0-slave: \"Generic 1234\", 16128 sectors (7 MiB), no write cache, FLUSH CACHE EXT, bus-master DMA")
        .saw("[selftest] guest selftest: DONE passed=21 failed=0")
        .not_saw("FAILED");
    // Both PIIX channels: BAR4 and BAR4 + 8 (Bus Master IDE rev 1.0 §2).
    for (ch, off) in [(0, 0), (1, 8)] {
        let l = run.line(&format!("ata{ch}: bus-master DMA (registers at port 0x"));
        let port = l
            .split("port 0x")
            .nth(1)
            .unwrap()
            .split(')')
            .next()
            .unwrap();
        let port = u16::from_str_radix(port, 16).unwrap();
        assert_eq!(port % 16, off, "{l}");
        assert!(l.contains("), 64 KiB bounce buffer at 0x"), "{l}");
    }
    // 126 units of 64 KiB; the last free one is unit 125 at LBA 16000.
    let l = run.line("store-check ata0-slave: wrote");
    assert!(
        l.contains("wrote, flushed and read back 65536 bytes at sector 16000: ok (crc32c 0x")
            && l.ends_with("; 3 transfers by DMA, 0 by PIO"),
        "{l}"
    );
    assert!(
        std::fs::read(&store).unwrap() == before,
        "the store check left its pattern on the drive"
    );
}

/// QEMU q35 (PCI Express): the kernel reads configuration space through ECAM, found in the
/// ACPI MCFG, and finds the NVMe controller and its store there; the store check passes.
/// (The pc machine of `qemu_store_check_on_nvme_and_ide` has no MCFG: mechanism #1.)
#[test]
fn qemu_q35_finds_nvme_through_ecam() {
    let dir = tempfile::tempdir().unwrap();
    let nvme = drive(dir.path(), "nvme.img", 32);
    let n = nvme.to_str().unwrap();
    disk(&["init", n, "--gpt"]);
    disk(&["create", n, "vda", "--size", "4M"]);
    let before = std::fs::read(&nvme).unwrap();
    let (_b, image) = bundle_uefi_image(CHECK_CONF, &["selftest.elf"]);
    let run = boot_q35_with_nvme(&image, 120, std::slice::from_ref(&nvme));
    run.exited(16, "not-intel")
        // QEMU q35's MMCONFIG window: 256 buses from 0xB000_0000.
        .saw(" functions (ECAM at 0xb0000000, buses 0-255, from the ACPI MCFG)")
        .saw("drive nvme0n1: \"QEMU NVMe Ctrl\", 32256 sectors (15 MiB), write cache, Flush")
        .saw("store on nvme0n1 (GPT partition 1): 1 disks, 13631488 bytes, 9437184 free; header A generation 2, B generation 3")
        .saw("store-check nvme0n1: wrote, flushed and read back 65536 bytes at sector 28672: ok")
        .saw("store-check nvme0n1: discard by Dataset Management (deallocate), then zeroes by Write Zeroes on 65536 bytes at sector 28672: ok, read back as zeroes")
        .saw("cpu: VMX no (CPUID.1:ECX[5])");
    let l = run.line("pci: ");
    assert!(l.starts_with("pci: ") && l.contains("ECAM"), "{l}");
    run.line(" 1b36:0010 class 01.08.02 (mass storage)");
    assert!(
        std::fs::read(&nvme).unwrap() == before,
        "the NVMe store changed"
    );
}

/// A power loss right after the guest saw its flush complete: Bochs is killed (SIGKILL) the
/// moment the guest reports `blk-persist-write`, and the host tool finds the flushed data in
/// the store image, which still opens cleanly. Repeated three times: zero mismatches.
#[test]
fn bochs_flushed_data_survives_a_kill() {
    let conf = PERSIST_CONF.replace("disk = \"vdisk\"", "disk = \"linger\"");
    let (_b, image) = bundle_image(&conf, &["virtio-client.elf"]);
    for round in 0..3 {
        let dir = tempfile::tempdir().unwrap();
        let store = drive(dir.path(), "store.img", 16);
        let s = store.to_str().unwrap();
        disk(&["init", s]);
        disk(&["create", s, "linger", "--size", "1M"]);
        let run = boot_killed_at(
            &image,
            "corei7_skylake_x",
            300,
            std::slice::from_ref(&store),
            "PASS blk-persist-write",
        );
        assert!(
            run.outcome.killed,
            "round {round}: {}\n{}",
            run.outcome.summary(),
            run.outcome.transcript
        );
        let line = run.guest_line("virtio", "PASS blk-persist-write");
        let sum = line
            .split("checksum=")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .unwrap()
            .to_string();
        let out = dir.path().join("linger.bin");
        disk(&["export", s, "linger", out.to_str().unwrap()]);
        let bytes = std::fs::read(&out).unwrap();
        assert_eq!(
            &bytes[..8],
            b"BKHDPERS",
            "round {round}: the marker was flushed"
        );
        assert_eq!(
            format!("{:016x}", fnv1a64(&bytes[8 * 512..72 * 512])),
            sum,
            "round {round}"
        );
        assert_eq!(
            u64::from_str_radix(&sum, 16).unwrap().to_le_bytes(),
            bytes[8..16],
            "round {round}"
        );
    }
}

/// A guest hammering its store disk (8192 unflushed 4 KiB writes, each a drive transfer
/// polled to completion) next to the selftest VM: the selftest passes every check, the
/// store disk takes every write without an error, and the selftest is not stopped.
#[test]
fn bochs_a_busy_store_disk_stalls_no_other_vm() {
    let dir = tempfile::tempdir().unwrap();
    let store = drive(dir.path(), "store.img", 16);
    let s = store.to_str().unwrap();
    disk(&["init", s]);
    disk(&["create", s, "linger", "--size", "1M"]);
    let conf = PERSIST_CONF.replace("disk = \"vdisk\"", "disk = \"linger\"") + SELFTEST_CONF;
    let (_b, image) = bundle_image(&conf, &["virtio-client.elf", "selftest.elf"]);
    let run = boot_with_drives(
        Platform::Bochs,
        &image,
        "corei7_skylake_x",
        600,
        std::slice::from_ref(&store),
    );
    run.exited(0, "ok")
        .said(
            "virtio",
            "guest virtio-client: PASS blk-persist-write checksum=",
        )
        .said(
            "virtio",
            "guest virtio-client: blk linger: 8192 unflushed 4 KiB writes",
        )
        .said("virtio", "guest virtio-client: DONE passed=1 failed=0")
        .saw("[selftest] guest selftest: DONE passed=21 failed=0")
        .saw("bulkhead: all VMs stopped (2 ran, 0 could not start)")
        .not_saw("FAIL");
    for check in SELFTEST_CHECKS {
        run.saw(&format!("[selftest] guest selftest: PASS {check}"));
    }
    let dev = run.line("vm virtio: virtio-blk at ");
    assert!(
        dev.contains(" errors=0 ") && dev.contains(" store-disk=linger reads=1 writes=8201 flushes=2 drive-requests=8204 drive-errors=0 drive-dma=8202 drive-pio=0"),
        "{dev}"
    );
}

const SHARED_CONF: &str = r#"
[vm.ra]
kind = "elf64"
image = "virtio-client.elf"
memory = "32M"

[[vm.ra.virtio-blk]]
disk = "shared"
read-only = true

[vm.rb]
kind = "elf64"
image = "virtio-client.elf"
memory = "32M"

[[vm.rb.virtio-blk]]
disk = "shared"
read-only = true

[vm.writer]
kind = "elf64"
image = "virtio-client.elf"
memory = "32M"

[[vm.writer.virtio-blk]]
disk = "shared"
"#;

/// Read-only sharing: two VMs attach disk "shared" with `read-only = true` and both read the
/// data the host tool imported with the same checksum; each one's write of sector 0 is
/// refused (VIRTIO_BLK_S_IOERR, counted in `errors=`, nothing reaches the drive); a third VM
/// asking for the disk writable is not started and says who holds it. The disk is unchanged.
#[test]
fn bochs_read_only_store_disk_is_shared_by_readers_only() {
    let dir = tempfile::tempdir().unwrap();
    let store = drive(dir.path(), "store.img", 16);
    let s = store.to_str().unwrap();
    disk(&["init", s]);
    // The layout blk-persist reads: marker and checksum in sector 0, 64 sectors from 8.
    let mut content = vec![0u8; 1 << 20];
    let mut x: u32 = 0x1234_5678;
    for b in &mut content[8 * 512..72 * 512] {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *b = x as u8;
    }
    let sum = fnv1a64(&content[8 * 512..72 * 512]);
    content[..8].copy_from_slice(b"BKHDPERS");
    content[8..16].copy_from_slice(&sum.to_le_bytes());
    let file = dir.path().join("shared.bin");
    std::fs::write(&file, &content).unwrap();
    disk(&["import", s, "shared", file.to_str().unwrap()]);

    let (_b, image) = bundle_image(SHARED_CONF, &["virtio-client.elf"]);
    let run = boot_with_drives(
        Platform::Bochs,
        &image,
        "corei7_skylake_x",
        300,
        std::slice::from_ref(&store),
    );
    run.exited(32, "bad-configuration")
        .saw("vm ra: virtio-blk over store disk shared on ata0-slave (read-only)")
        .saw("vm rb: virtio-blk over store disk shared on ata0-slave (read-only)")
        .saw("vm writer: not started: disk \"shared\" is open read-only by VM ra; one writer at a time (or any number of `read-only = true` readers)")
        .saw("bulkhead: all VMs stopped (2 ran, 1 could not start)")
        .not_saw("FAIL");
    for vm in ["ra", "rb"] {
        run.said(
            vm,
            "guest virtio-client: blk store disk capacity=2048 sectors readonly=true",
        )
        .said(
            vm,
            &format!("guest virtio-client: PASS blk-persist-read checksum={sum:016x} sectors=64"),
        )
        .said(vm, "guest virtio-client: PASS blk-readonly-write refused: ")
        .said(vm, "guest virtio-client: DONE passed=2 failed=0");
        let dev = run.line(&format!("vm {vm}: virtio-blk at "));
        // Four reads (sector 0 three times, the data once), the write refused and counted.
        assert!(
            dev.contains(" errors=1 ")
                && dev.contains(
                    " store-disk=shared reads=4 writes=0 flushes=0 drive-requests=4 drive-errors=0"
                ),
            "{dev}"
        );
    }
    let out = dir.path().join("after.bin");
    disk(&["export", s, "shared", out.to_str().unwrap()]);
    assert!(
        std::fs::read(&out).unwrap() == content,
        "a read-only disk changed"
    );
}
