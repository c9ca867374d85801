//! Shared helpers for Bulkhead's integration tests: find the images `scripts/test` built, boot
//! them on a platform, and assert on the transcript with the whole transcript shown on failure.

use bulkhead_boot::image::{
    build_bios_image, build_uefi_image, default_image_dir, guest_dir, kernel_path, pack_bundle,
    pack_bundle_unchecked,
};
use bulkhead_boot::transcript::{guest_lines, kernel_messages};
use bulkhead_boot::{Platform, RunOutcome, RunSpec};
use std::path::PathBuf;
use std::time::Duration;

/// The directory with `bulkhead-bios.img` / `bulkhead-uefi.img`: `$BULKHEAD_IMAGE_DIR`, else
/// `target/images`.
pub fn image_dir() -> PathBuf {
    std::env::var_os("BULKHEAD_IMAGE_DIR").map_or_else(default_image_dir, PathBuf::from)
}

/// The image a platform boots.
pub fn image_for(platform: Platform) -> PathBuf {
    let name = if platform.uses_uefi() {
        "bulkhead-uefi.img"
    } else {
        "bulkhead-bios.img"
    };
    let path = image_dir().join(name);
    assert!(
        path.is_file(),
        "{} is missing: build the images first with `cargo run -p bulkhead-boot -- build` (scripts/test does)",
        path.display()
    );
    path
}

/// Boots the default image of `platform` with `cpu` (a Bochs model or a QEMU -cpu) and
/// returns the outcome. Panics (with the emulator's log) when the emulator cannot be run.
pub fn boot(platform: Platform, cpu: &str, timeout_secs: u64) -> Checked {
    let mut spec = RunSpec::new(platform, image_for(platform));
    spec.cpu_model = cpu.to_string();
    spec.timeout = Duration::from_secs(timeout_secs);
    let outcome = bulkhead_boot::run(&spec)
        .unwrap_or_else(|e| panic!("could not run {}: {e}", platform.name()));
    eprintln!("{} ({cpu}): {}", platform.name(), outcome.summary());
    Checked {
        outcome,
        label: format!("{} with cpu {cpu}", platform.name()),
    }
}

/// A run's outcome with assertion helpers that print the transcript when they fail.
#[derive(Debug)]
pub struct Checked {
    pub outcome: RunOutcome,
    label: String,
}

impl Checked {
    fn fail(&self, what: &str) -> ! {
        panic!(
            "{}: {what}\n--- {} ---\n--- transcript ---\n{}\n--- emulator log tail ---\n{}",
            self.label,
            self.outcome.summary(),
            self.outcome.transcript,
            self.outcome.emulator_log_tail
        );
    }

    /// Asserts the transcript shows `needle` from its rightful author: a needle starting with
    /// `[` must begin a guest console line (`[vm] text`); any other must be in a hypervisor
    /// line, never in a guest's (bulkhead_boot::transcript::shows).
    pub fn saw(&self, needle: &str) -> &Self {
        if !self.outcome.saw(needle) {
            self.fail(&format!("expected the transcript to show {needle:?}"));
        }
        self
    }

    /// Asserts VM `vm`'s console printed a line containing `needle`.
    pub fn said(&self, vm: &str, needle: &str) -> &Self {
        if !self.outcome.guest_said(vm, needle) {
            self.fail(&format!("expected vm {vm}'s console to print {needle:?}"));
        }
        self
    }

    /// Asserts `needle` appears nowhere in the transcript, guest lines included.
    pub fn not_saw(&self, needle: &str) -> &Self {
        if self.outcome.contains(needle) {
            self.fail(&format!(
                "expected the transcript NOT to contain {needle:?}"
            ));
        }
        self
    }

    /// Asserts the kernel ended with exit status `code` named `name`.
    pub fn exited(&self, code: u8, name: &str) -> &Self {
        match &self.outcome.exit {
            Some(e) if e.code == code && e.name == name => self,
            _ => self.fail(&format!("expected kernel exit status {code} ({name})")),
        }
    }

    /// The first hypervisor log message containing `needle` (guest lines are never taken).
    pub fn line(&self, needle: &str) -> &str {
        kernel_messages(&self.outcome.transcript)
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| self.fail(&format!("no hypervisor line contains {needle:?}")))
    }

    /// The first line of `vm`'s console containing `needle` (without the `[vm] ` prefix).
    pub fn guest_line(&self, vm: &str, needle: &str) -> &str {
        guest_lines(&self.outcome.transcript, vm)
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| self.fail(&format!("vm {vm}'s console printed no {needle:?}")))
    }
}

/// The number after `key=` among the space-separated words of `line` (a report's counter).
pub fn key_value(line: &str, key: &str) -> u64 {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{key}=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
}

/// A BIOS image whose boot archive holds `conf` (as bulkhead.toml) and the named files from
/// `target/guests` (built by `bulkhead-boot guests`, which scripts/test runs). The image lives
/// in a temporary directory owned by the returned guard.
pub fn bundle_image(conf: &str, guests: &[&str]) -> (tempfile::TempDir, PathBuf) {
    let files: Vec<PathBuf> = guests.iter().map(|g| guest_dir().join(g)).collect();
    bundle_files(conf, &files)
}

/// Like [`bundle_image`] without the host-side checks of the files the configuration names
/// (the configuration itself is still checked): for tests of the hypervisor's own checks.
pub fn bundle_image_unchecked(conf: &str, guests: &[&str]) -> (tempfile::TempDir, PathBuf) {
    let files: Vec<PathBuf> = guests.iter().map(|g| guest_dir().join(g)).collect();
    bundle_with(conf, &files, pack_bundle_unchecked)
}

/// Like [`bundle_image`], with files from anywhere (e.g. the Linux guest's build directory).
pub fn bundle_files(conf: &str, files: &[PathBuf]) -> (tempfile::TempDir, PathBuf) {
    bundle_with(conf, files, pack_bundle)
}

fn bundle_with(
    conf: &str,
    files: &[PathBuf],
    pack: fn(&std::path::Path) -> Result<Vec<u8>, bulkhead_boot::BootError>,
) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let bundle = dir.path().join("bundle");
    std::fs::create_dir_all(&bundle).expect("bundle directory");
    std::fs::write(bundle.join("bulkhead.toml"), conf).expect("write bulkhead.toml");
    for src in files {
        assert!(
            src.is_file(),
            "{} is missing: build the test guests with `cargo run -p bulkhead-boot -- guests` (scripts/test does)",
            src.display()
        );
        let name = src.file_name().expect("file name");
        std::fs::copy(src, bundle.join(name)).expect("copy guest");
    }
    let archive = pack(&bundle).unwrap_or_else(|e| panic!("packing the bundle: {e}"));
    let ramdisk = dir.path().join("archive.bin");
    std::fs::write(&ramdisk, archive).expect("write archive");
    let kernel = kernel_path();
    assert!(
        kernel.is_file(),
        "{} is missing: build it with `cargo kernel` (scripts/test does)",
        kernel.display()
    );
    let image = dir.path().join("bulkhead-bios.img");
    build_bios_image(&kernel, Some(&ramdisk), &image)
        .unwrap_or_else(|e| panic!("building the image: {e}"));
    (dir, image)
}

/// The UEFI image of a bundle of test guests (for Bochs + OVMF).
pub fn bundle_uefi_image(conf: &str, guests: &[&str]) -> (tempfile::TempDir, PathBuf) {
    let (dir, _bios) = bundle_image(conf, guests);
    let image = dir.path().join("bulkhead-uefi.img");
    build_uefi_image(
        &kernel_path(),
        Some(&dir.path().join("archive.bin")),
        &image,
    )
    .unwrap_or_else(|e| panic!("building the UEFI image: {e}"));
    (dir, image)
}

/// Boots `image` in Bochs with `cpu`.
pub fn boot_image(image: &std::path::Path, cpu: &str, timeout_secs: u64) -> Checked {
    boot_image_on(Platform::Bochs, image, cpu, timeout_secs)
}

/// Boots `image` on `platform` with `cpu` and more drives attached in place (Bochs: ata0-slave,
/// ata1-master, ata1-slave; QEMU: IDE 1-3), so what the hypervisor writes stays in the files.
pub fn boot_with_drives(
    platform: Platform,
    image: &std::path::Path,
    cpu: &str,
    timeout_secs: u64,
    drives: &[PathBuf],
) -> Checked {
    boot_with_storage(platform, image, cpu, timeout_secs, drives, &[])
}

/// Boots `image` in Bochs with `drives` and kills the emulator (a simulated power loss) as
/// soon as the transcript shows `kill_at`.
pub fn boot_killed_at(
    image: &std::path::Path,
    cpu: &str,
    timeout_secs: u64,
    drives: &[PathBuf],
    kill_at: &str,
) -> Checked {
    let mut spec = RunSpec::new(Platform::Bochs, image);
    spec.cpu_model = cpu.to_string();
    spec.timeout = Duration::from_secs(timeout_secs);
    spec.drives = drives.to_vec();
    spec.kill_at = Some(kill_at.to_string());
    let outcome = bulkhead_boot::run(&spec).unwrap_or_else(|e| panic!("could not run Bochs: {e}"));
    eprintln!("bochs ({cpu}): {}", outcome.summary());
    Checked {
        outcome,
        label: format!("bochs with cpu {cpu}, killed at {kill_at:?}"),
    }
}

/// Like [`boot_with_drives`], with NVMe drives too (QEMU only: one controller per file).
pub fn boot_with_storage(
    platform: Platform,
    image: &std::path::Path,
    cpu: &str,
    timeout_secs: u64,
    drives: &[PathBuf],
    nvme: &[PathBuf],
) -> Checked {
    let mut spec = RunSpec::new(platform, image);
    spec.cpu_model = cpu.to_string();
    spec.timeout = Duration::from_secs(timeout_secs);
    spec.drives = drives.to_vec();
    spec.nvme = nvme.to_vec();
    let outcome = bulkhead_boot::run(&spec)
        .unwrap_or_else(|e| panic!("could not run {}: {e}", platform.name()));
    eprintln!("{} ({cpu}): {}", platform.name(), outcome.summary());
    Checked {
        outcome,
        label: format!(
            "{} with cpu {cpu}, {} extra drive(s) and {} NVMe drive(s)",
            platform.name(),
            drives.len(),
            nvme.len()
        ),
    }
}

/// QEMU's q35 machine (PCIe, ECAM through the ACPI MCFG) with NVMe drives only (its IDE
/// drives would be on AHCI).
pub fn boot_q35_with_nvme(image: &std::path::Path, timeout_secs: u64, nvme: &[PathBuf]) -> Checked {
    let mut spec = RunSpec::new(Platform::Qemu, image);
    spec.timeout = Duration::from_secs(timeout_secs);
    spec.nvme = nvme.to_vec();
    spec.q35 = true;
    let outcome = bulkhead_boot::run(&spec).unwrap_or_else(|e| panic!("could not run QEMU: {e}"));
    eprintln!("qemu q35: {}", outcome.summary());
    Checked {
        outcome,
        label: format!("qemu q35 with {} NVMe drive(s)", nvme.len()),
    }
}

/// Boots `image` in Bochs with `cpu` and an e1000 NIC (MAC `mac`) on Bochs's virtual
/// network (`ethmod=vnet`, virtual host 192.168.10.1).
pub fn boot_image_with_e1000(
    image: &std::path::Path,
    cpu: &str,
    timeout_secs: u64,
    mac: [u8; 6],
) -> Checked {
    let mut spec = RunSpec::new(Platform::Bochs, image);
    spec.cpu_model = cpu.to_string();
    spec.timeout = Duration::from_secs(timeout_secs);
    spec.e1000 = Some(mac);
    let outcome = bulkhead_boot::run(&spec).unwrap_or_else(|e| panic!("could not run Bochs: {e}"));
    eprintln!("bochs ({cpu}, e1000 on vnet): {}", outcome.summary());
    Checked {
        outcome,
        label: format!("bochs with cpu {cpu} and an e1000 on vnet"),
    }
}

/// Boots the UEFI `image` under QEMU TCG with an e1000 NIC (MAC `mac`) on QEMU's user
/// network.
pub fn boot_qemu_with_e1000(image: &std::path::Path, timeout_secs: u64, mac: [u8; 6]) -> Checked {
    let mut spec = RunSpec::new(Platform::Qemu, image);
    spec.timeout = Duration::from_secs(timeout_secs);
    spec.e1000 = Some(mac);
    let outcome = bulkhead_boot::run(&spec).unwrap_or_else(|e| panic!("could not run QEMU: {e}"));
    eprintln!("qemu (e1000): {}", outcome.summary());
    Checked {
        outcome,
        label: "qemu tcg with an e1000".into(),
    }
}

/// Boots `image` on `platform` with `cpu`.
pub fn boot_image_on(
    platform: Platform,
    image: &std::path::Path,
    cpu: &str,
    timeout_secs: u64,
) -> Checked {
    boot_image_smp(platform, image, cpu, 1, timeout_secs)
}

/// Boots `image` on Bochs with `cpu`, typing `input` into COM1 as the transcript shows each
/// feed's trigger (the hypervisor shell's tests).
pub fn boot_with_input(
    image: &std::path::Path,
    cpu: &str,
    input: Vec<bulkhead_boot::serial_input::Feed>,
    timeout_secs: u64,
) -> Checked {
    boot_with_input_smp(image, cpu, 1, input, timeout_secs)
}

/// [`boot_with_input`] on `cpus` emulated CPUs (Bochs `cpu: count=`).
pub fn boot_with_input_smp(
    image: &std::path::Path,
    cpu: &str,
    cpus: u32,
    input: Vec<bulkhead_boot::serial_input::Feed>,
    timeout_secs: u64,
) -> Checked {
    let mut spec = RunSpec::new(Platform::Bochs, image);
    spec.cpu_model = cpu.to_string();
    spec.cpus = cpus;
    spec.timeout = Duration::from_secs(timeout_secs);
    spec.input = input;
    let outcome = bulkhead_boot::run(&spec).unwrap_or_else(|e| panic!("could not run Bochs: {e}"));
    eprintln!(
        "bochs ({cpu}, {cpus} CPU(s)) with console input: {}",
        outcome.summary()
    );
    Checked {
        outcome,
        label: format!("bochs with cpu {cpu}, {cpus} CPU(s) and console input"),
    }
}

/// Boots `image` on `platform` with `cpu` and `cpus` emulated CPUs (Bochs `cpu: count=`).
pub fn boot_image_smp(
    platform: Platform,
    image: &std::path::Path,
    cpu: &str,
    cpus: u32,
    timeout_secs: u64,
) -> Checked {
    let mut spec = RunSpec::new(platform, image);
    spec.cpu_model = cpu.to_string();
    spec.cpus = cpus;
    spec.timeout = Duration::from_secs(timeout_secs);
    let outcome = bulkhead_boot::run(&spec).unwrap_or_else(|e| panic!("could not run Bochs: {e}"));
    eprintln!("bochs ({cpu}, {cpus} CPUs): {}", outcome.summary());
    Checked {
        outcome,
        label: format!("bochs with cpu {cpu} x{cpus}"),
    }
}

impl Checked {
    /// The exit-statistics line of `vm` for `reason` (e.g. "CPUID"), as (count, ticks).
    pub fn exit_count(&self, vm: &str, reason: &str) -> Option<u64> {
        let prefix = format!("vm {vm}: exits: {reason} ");
        kernel_messages(&self.outcome.transcript).find_map(|l| {
            let rest = l.strip_prefix(&prefix)?;
            let count = rest.trim_start().strip_prefix("count=")?;
            count.split_whitespace().next()?.parse().ok()
        })
    }

    /// Asserts the exit count of `vm` for `reason` is exactly `expected`. Zero means the
    /// VM's statistics were printed (its `exits: total` line is there) without a line for
    /// `reason`; a run whose statistics are missing fails.
    pub fn exits(&self, vm: &str, reason: &str, expected: u64) -> &Self {
        if self.exit_count(vm, "total").is_none() {
            self.fail(&format!(
                "vm {vm}: no exit statistics in the transcript (expected {expected} {reason} exits)"
            ));
        }
        let got = self.exit_count(vm, reason).unwrap_or(0);
        if got != expected {
            self.fail(&format!(
                "vm {vm}: expected {expected} {reason} exits, the statistics say {got}"
            ));
        }
        self
    }

    /// Asserts a counter from the `exits: hypercalls=... ` line of `vm`.
    pub fn counter(&self, vm: &str, name: &str, expected: u64) -> &Self {
        let got = self.counter_value(vm, name);
        if got != Some(expected) {
            self.fail(&format!("vm {vm}: expected {name}={expected}, got {got:?}"));
        }
        self
    }

    /// Counter `name` of VM `vm`'s stop report (its `exits: hypercalls=...` line).
    pub fn counter_value(&self, vm: &str, name: &str) -> Option<u64> {
        let line = self.line(&format!("vm {vm}: exits: hypercalls="));
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{name}=")))
            .and_then(|v| v.parse::<u64>().ok())
    }
}

/// The Debian guest's build directory (vmlinuz, initramfs.cpio.gz, rootfs.ext4, manifest):
/// `$BULKHEAD_DEBIAN_GUEST`, else the output of `scripts/build-debian-guest` (cached by
/// content hash; the first build downloads Debian's kernel package, about 30 s).
pub fn debian_guest() -> PathBuf {
    cached_build("BULKHEAD_DEBIAN_GUEST", "scripts/build-debian-guest")
}

/// The Linux test guest's build directory (bzImage, initramfs.cpio.lz4, manifest):
/// `$BULKHEAD_LINUX_GUEST`, else the output of `scripts/build-guest` (cached by content hash;
/// the first build takes about 6 minutes).
pub fn linux_guest() -> PathBuf {
    cached_build("BULKHEAD_LINUX_GUEST", "scripts/build-guest")
}

/// `$var` if set, else the directory `script` prints as its last line.
fn cached_build(var: &str, script: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os(var) {
        return PathBuf::from(dir);
    }
    let root = bulkhead_boot::image::workspace_root();
    let out = std::process::Command::new(root.join(script))
        .stderr(std::process::Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("run {script}: {e}"));
    assert!(out.status.success(), "{script} failed");
    let text = String::from_utf8_lossy(&out.stdout);
    PathBuf::from(
        text.lines()
            .last()
            .unwrap_or_else(|| panic!("{script} prints its output directory"))
            .trim(),
    )
}

/// A value from the Linux guest's manifest (`key=value` lines).
pub fn manifest_value(dir: &std::path::Path, key: &str) -> String {
    let text = std::fs::read_to_string(dir.join("manifest")).expect("read the guest manifest");
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("the guest manifest has no {key}"))
        .trim()
        .to_string()
}

/// The selftest guest's checks, in the order it runs them (tests/guest/README.md).
pub const SELFTEST_CHECKS: &[&str] = &[
    "cpuid-hypervisor-bit",
    "cpuid-vmx-hidden",
    "cpuid-signature",
    "abi-version",
    "hypercall-nop",
    "hypercall-console",
    "hypercall-unknown",
    "hypercall-bad-pointer",
    "multicall-8",
    "exit-stats",
    "io-unclaimed",
    "msr-roundtrip",
    "msr-unknown-gp",
    "msr-feature-control",
    "cr4-vmxe-gp",
    "cr-read",
    "vmx-ud",
    "int3-reflected",
    "mmio-virtio-magic",
    "guest-crate",
    "rdtsc-monotonic",
];

/// The selftest VM as most tests run it: 16 MiB and a 1 MiB RAM disk (one check reads it).
pub const SELFTEST_CONF: &str = r#"
[vm.selftest]
kind = "elf64"
image = "selftest.elf"
memory = "16M"

[[vm.selftest.virtio-blk]]
size = "1M"
"#;
