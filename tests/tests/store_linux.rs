//! Linux on a store disk (issue 15): an ext4 filesystem made by the host tool's side
//! (`mke2fs -t ext4 -d`, imported with `bulkhead-boot disk import`) on a store disk on
//! ata0-slave, used by the unmodified Linux guest through virtio-blk (`disk = "root"`), in
//! Bochs. The guest's steps are its init's `bulkhead.disk=` switch
//! (tests/guest/linux/README.md).

use bulkhead_boot::Platform;
use bulkhead_tests::{
    boot_killed_at, boot_with_drives, bundle_files, linux_guest, manifest_value, Checked,
};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Bochs derives a flat disk's geometry from its size: whole cylinders of 16 heads x 63
/// sectors keep every sector visible. 64 cylinders: 33 MB, room for the 16 MiB disk.
const CYLINDER: u64 = 16 * 63 * 512;
const DRIVE_CYLINDERS: u64 = 64;
const FS_SIZE: &str = "16M";

const CMDLINE: &str =
    "console=ttyS0,115200 panic=-1 reboot=t io_delay=none nolapic tsc=reliable no_timer_check bulkhead.checks=none";

fn disk(args: &[&str]) {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let mut out = Vec::new();
    let code = bulkhead_boot::disk::main(&args, &mut out)
        .unwrap_or_else(|e| panic!("bulkhead-boot disk {args:?}: {e}"));
    assert_eq!(code, 0, "bulkhead-boot disk {args:?}");
}

/// Runs a host program, returning its exit code and output.
fn tool(program: &str, args: &[&str]) -> (i32, String) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} (e2fsprogs): {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

fn sha256_of(path: &Path) -> String {
    let (code, out) = tool("sha256sum", &[path.to_str().unwrap()]);
    assert_eq!(code, 0, "sha256sum {}: {out}", path.display());
    out.split_whitespace().next().unwrap().to_string()
}

/// A store drive holding disk "root": a 16 MiB ext4 filesystem with one 64 KiB file "seed"
/// (xorshift bytes). Returns the drive and the seed's sha256.
fn ext4_store(dir: &Path) -> (PathBuf, String) {
    let seed_dir = dir.join("seed-dir");
    std::fs::create_dir(&seed_dir).unwrap();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let seed: Vec<u8> = (0..65536)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let seed_file = seed_dir.join("seed");
    std::fs::write(&seed_file, &seed).unwrap();
    let seed_sha = sha256_of(&seed_file);
    let fs = dir.join("root.ext4");
    let (code, out) = tool(
        "mke2fs",
        &[
            "-q",
            "-F",
            "-t",
            "ext4",
            "-L",
            "bulkhead",
            "-d",
            seed_dir.to_str().unwrap(),
            fs.to_str().unwrap(),
            FS_SIZE,
        ],
    );
    assert_eq!(code, 0, "mke2fs: {out}");
    let drive = dir.join("store.img");
    std::fs::File::create(&drive)
        .unwrap()
        .set_len(DRIVE_CYLINDERS * CYLINDER)
        .unwrap();
    let s = drive.to_str().unwrap();
    disk(&["init", s]);
    disk(&["import", s, "root", fs.to_str().unwrap()]);
    (drive, seed_sha)
}

/// The Linux VM's bundle: the guest kernel and initramfs, disk "root" from the store.
fn linux_bundle(step: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = linux_guest();
    let conf = format!(
        "[vm.linux]\nkind = \"linux\"\nimage = \"bzImage\"\ninitrd = \"initramfs.cpio.lz4\"\n\
         memory = \"64M\"\ncmdline = \"{CMDLINE} bulkhead.disk={step}\"\n\
         [[vm.linux.virtio-blk]]\ndisk = \"root\"\n"
    );
    bundle_files(
        &conf,
        &[dir.join("bzImage"), dir.join("initramfs.cpio.lz4")],
    )
}

/// Exports disk "root" and recovers it as a power loss would leave it: `e2fsck -fy` replays
/// the journal and must find no damage it cannot repair (exit status 0 or 1); then the
/// file's bytes are dumped with debugfs. Returns (fsck status, sha256 of `file` or "missing").
fn read_back(dir: &Path, drive: &Path, file: &str) -> (i32, String, String) {
    let fs = dir.join("export.ext4");
    disk(&[
        "export",
        drive.to_str().unwrap(),
        "root",
        fs.to_str().unwrap(),
    ]);
    let (fsck, fsck_out) = tool("e2fsck", &["-fy", fs.to_str().unwrap()]);
    let dumped = dir.join("dumped.bin");
    let _ = std::fs::remove_file(&dumped);
    let (code, out) = tool(
        "debugfs",
        &[
            "-R",
            &format!("dump /{file} {}", dumped.display()),
            fs.to_str().unwrap(),
        ],
    );
    let sha = if code == 0 && dumped.exists() {
        sha256_of(&dumped)
    } else {
        format!("missing ({out})")
    };
    (fsck, sha, fsck_out)
}

/// The hypervisor's line for the store-backed device: no drive errors, some flushes.
fn assert_clean_device(run: &Checked) {
    let dev = run.line("vm linux: virtio-blk at ");
    assert!(
        dev.contains(" store-disk=root ") && dev.contains(" drive-errors=0"),
        "{dev}"
    );
    assert!(!dev.contains(" flushes=0 "), "the guest flushed: {dev}");
}

/// Boot 1 writes data.bin on the ext4 filesystem with fsync, unmounts and powers off; the
/// host finds it in the exported disk (e2fsck clean, same sha256); boot 2, a fresh Bochs on
/// the same drive file, mounts the filesystem and reads data.bin back intact.
#[test]
fn bochs_linux_ext4_file_survives_a_reboot() {
    let guest = linux_guest();
    let pattern = manifest_value(&guest, "blk_pattern_sha256");
    let dir = tempfile::tempdir().unwrap();
    let (drive, seed_sha) = ext4_store(dir.path());

    let (_b1, image1) = linux_bundle("write");
    let run1 = boot_with_drives(
        Platform::Bochs,
        &image1,
        "corei7_skylake_x",
        900,
        std::slice::from_ref(&drive),
    );
    run1.exited(0, "ok")
        .saw("vm linux: virtio-blk over store disk root on ata0-slave")
        .said(
            "linux",
            &format!("guest: disk ext4: mounted /dev/vda seed sha256={seed_sha}"),
        )
        .said(
            "linux",
            &format!("guest: PASS disk ext4 write file=data.bin sha256={pattern}"),
        )
        .said("linux", "guest: ALL PASS")
        .saw("vm linux: stopped: guest powered off (ACPI S5)")
        .not_saw("guest: FAIL");
    assert_clean_device(&run1);
    // DISCARD and WRITE_ZEROES are offered on a store disk (virtio 1.2 §5.2.3): the guest's
    // block layer has limits for both, and fstrim's DISCARDs succeed (a no-op on a drive
    // without TRIM; the data below still verifies).
    let limits = run1.guest_line("linux", "guest: disk ext4: discard_max_bytes=");
    for key in ["discard_max_bytes=", "write_zeroes_max_bytes="] {
        let v: u64 = limits
            .split(key)
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {key} in {limits}"));
        assert!(v > 0, "{limits}");
    }
    run1.said("linux", "guest: disk ext4: fstrim /mnt: ")
        .said("linux", " bytes trimmed");

    let (fsck, sha, fsck_out) = read_back(dir.path(), &drive, "data.bin");
    assert_eq!(fsck, 0, "an unmounted filesystem is clean: {fsck_out}");
    assert_eq!(sha, pattern, "data.bin as the host reads it");

    let (_b2, image2) = linux_bundle("verify");
    let run2 = boot_with_drives(
        Platform::Bochs,
        &image2,
        "corei7_skylake_x",
        900,
        std::slice::from_ref(&drive),
    );
    run2.exited(0, "ok")
        .said(
            "linux",
            &format!("guest: PASS disk ext4 verify file=data.bin sha256={pattern}"),
        )
        .said("linux", "guest: ALL PASS")
        .not_saw("guest: FAIL");
    assert_clean_device(&run2);
}

/// A power loss right after fsync returned: Bochs is killed (SIGKILL) the moment the guest
/// reports it, while the guest goes on writing unsynced data. The host replays the journal of
/// the exported disk and reads data.bin: three rounds, zero mismatches.
#[test]
fn bochs_linux_fsynced_ext4_file_survives_a_kill() {
    let guest = linux_guest();
    let pattern = manifest_value(&guest, "blk_pattern_sha256");
    let (_b, image) = linux_bundle("crash");
    let mut mismatches = Vec::new();
    for round in 0..3 {
        let dir = tempfile::tempdir().unwrap();
        let (drive, _) = ext4_store(dir.path());
        let run = boot_killed_at(
            &image,
            "corei7_skylake_x",
            900,
            std::slice::from_ref(&drive),
            "[linux] guest: disk ext4: fsync returned file=data.bin",
        );
        assert!(
            run.outcome.killed,
            "round {round}: {}\n{}",
            run.outcome.summary(),
            run.outcome.transcript
        );
        run.said(
            "linux",
            &format!("guest: disk ext4: fsync returned file=data.bin sha256={pattern}"),
        );
        let (fsck, sha, fsck_out) = read_back(dir.path(), &drive, "data.bin");
        eprintln!("round {round}: e2fsck -fy exit {fsck}, data.bin sha256={sha}");
        assert!(
            fsck <= 1,
            "round {round}: e2fsck found damage it could not repair: {fsck_out}"
        );
        if sha != pattern {
            mismatches.push(format!("round {round}: data.bin sha256={sha}"));
        }
    }
    assert!(mismatches.is_empty(), "mismatches: {mismatches:?}");
}
