//! Disk store integration tests (issue 15): the hypervisor finds the drives through PCI and
//! its ATA driver, reads the stores on them and reports exactly what the host tool wrote.

use bulkhead_boot::Platform;
use bulkhead_tests::{boot_with_drives, image_for};
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
