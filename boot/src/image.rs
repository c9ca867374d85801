//! Building the kernel and its disk images with the `bootloader` crate.

use crate::error::{io, BootError};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The BIOS and UEFI images built from one kernel.
#[derive(Debug, Clone)]
pub struct Images {
    pub bios: PathBuf,
    pub uefi: PathBuf,
}

/// The workspace root (the boot crate's parent directory).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// Where `build` puts images unless told otherwise.
pub fn default_image_dir() -> PathBuf {
    workspace_root().join("target").join("images")
}

/// Runs `cargo build --target x86_64-unknown-none --release` for `packages` (no_std
/// binaries: the kernel, the test guests) in the workspace.
fn cargo_build_none(packages: &[&str], what: &str) -> Result<(), BootError> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command.current_dir(workspace_root()).arg("build");
    for p in packages {
        command.args(["-p", p]);
    }
    let status = command
        .args(["--target", "x86_64-unknown-none", "--release"])
        .status()
        .map_err(|e| BootError::KernelBuild(format!("could not start cargo for {what}: {e}")))?;
    if status.success() {
        Ok(())
    } else {
        Err(BootError::KernelBuild(format!(
            "building {what}: cargo exited with {status}"
        )))
    }
}

/// Builds the kernel for x86_64-unknown-none (release) and returns the ELF's path.
pub fn build_kernel() -> Result<PathBuf, BootError> {
    cargo_build_none(&["bulkhead-kernel"], "the kernel")?;
    Ok(kernel_path())
}

/// Creates `bulkhead-bios.img` and `bulkhead-uefi.img` in `out_dir` from the kernel ELF and an
/// optional ramdisk (guest kernel, initrd and VM configuration travel in it).
pub fn build_images(
    kernel: &Path,
    ramdisk: Option<&Path>,
    out_dir: &Path,
) -> Result<Images, BootError> {
    if !kernel.is_file() {
        return Err(BootError::Missing {
            what: "kernel ELF",
            path: kernel.to_path_buf(),
        });
    }
    if let Some(r) = ramdisk {
        check_ramdisk(r)?;
    }
    std::fs::create_dir_all(out_dir).map_err(io("cannot create", out_dir))?;
    let images = Images {
        bios: out_dir.join("bulkhead-bios.img"),
        uefi: out_dir.join("bulkhead-uefi.img"),
    };

    let mut bios = bootloader::BiosBoot::new(kernel);
    bios.set_boot_config(&boot_config());
    if let Some(r) = ramdisk {
        bios.set_ramdisk(r);
    }
    bios.create_disk_image(&images.bios)
        .map_err(|e| BootError::Image {
            kind: "BIOS",
            message: format!("{e:#}"),
        })?;

    let mut uefi = bootloader::UefiBoot::new(kernel);
    uefi.set_boot_config(&boot_config());
    if let Some(r) = ramdisk {
        uefi.set_ramdisk(r);
    }
    uefi.create_disk_image(&images.uefi)
        .map_err(|e| BootError::Image {
            kind: "UEFI",
            message: format!("{e:#}"),
        })?;
    Ok(images)
}

/// The kernel ELF that `build_kernel` produces.
pub fn kernel_path() -> PathBuf {
    workspace_root().join("target/x86_64-unknown-none/release/bulkhead")
}

/// Reads and checks `bulkhead.toml` of a bundle directory; returns its text and the
/// configuration. A bundle that still has the old `bulkhead.conf` is refused with the command
/// that converts it.
fn read_config(dir: &Path) -> Result<(Vec<u8>, vm::config::Config), BootError> {
    let conf = dir.join(vm::config::FILE_NAME);
    let old = dir.join(vm::config::OLD_FILE_NAME);
    if old.exists() {
        return Err(BootError::Bundle(if conf.exists() {
            format!(
                "{} has both bulkhead.toml and the old bulkhead.conf: delete {}",
                dir.display(),
                old.display()
            )
        } else {
            format!(
                "{} is in the old format, which Bulkhead no longer reads: convert it with \
                 `bulkhead-boot config convert {} -o {}`, check the result, then delete \
                 bulkhead.conf",
                old.display(),
                old.display(),
                conf.display()
            )
        }));
    }
    if !conf.is_file() {
        return Err(BootError::Bundle(format!(
            "{} has no bulkhead.toml: write one (docs/configuration.md)",
            dir.display()
        )));
    }
    let text = std::fs::read(&conf).map_err(io("cannot read", &conf))?;
    let config = vm::config::Config::parse(&text)
        .map_err(|e| BootError::Bundle(e.located(&conf.display().to_string()).to_string()))?;
    Ok((text, config))
}

/// Reads and checks `bulkhead.toml` of a bundle directory (the configuration only).
pub fn bundle_config(dir: &Path) -> Result<vm::config::Config, BootError> {
    read_config(dir).map(|(_, c)| c)
}

/// The regular files of `dir` (not recursive), by name.
fn bundle_files(dir: &Path) -> Result<BTreeMap<String, Vec<u8>>, BootError> {
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(dir).map_err(io("cannot list", dir))? {
        let entry = entry.map_err(io("cannot list", dir))?;
        let path = entry.path();
        if !path.is_file() {
            continue;
        }
        let name = entry
            .file_name()
            .into_string()
            .map_err(|_| BootError::Bundle(format!("{} has a non-UTF-8 name", path.display())))?;
        files.insert(
            name,
            std::fs::read(&path).map_err(io("cannot read", &path))?,
        );
    }
    Ok(files)
}

fn archive_of(files: &BTreeMap<String, Vec<u8>>) -> Result<Vec<u8>, BootError> {
    let mut builder = vm::archive::ArchiveBuilder::new();
    for (name, data) in files {
        builder
            .add(name, data)
            .map_err(|e| BootError::Bundle(format!("{name}: {e}")))?;
    }
    Ok(builder.finish())
}

/// Checks a bundle directory as `build --bundle` does, without packing it: the configuration,
/// then the hypervisor's VM-creation checks on the host (crate::bundle): every named file is
/// there, every guest image and initrd loads into the VM's memory.
pub fn check_bundle(dir: &Path) -> Result<vm::config::Config, BootError> {
    let (text, config) = read_config(dir)?;
    let files = bundle_files(dir)?;
    crate::bundle::check(&config, &text, &files).map_err(|p| {
        let conf = dir.join(vm::config::FILE_NAME);
        BootError::Bundle(p.located(&conf.display().to_string()).to_string())
    })?;
    Ok(config)
}

/// One line per VM: name, kind, memory, image and devices.
pub fn summary(config: &vm::config::Config) -> Vec<String> {
    use vm::config::{DeviceConfig, DiskSource};
    let mut out = vec![format!(
        "timeslice {} TSC ticks, {} VM(s)",
        config.hypervisor.timeslice,
        config.vms.len()
    )];
    for v in &config.vms {
        let devices: Vec<String> = v
            .devices
            .iter()
            .map(|d| match d {
                DeviceConfig::VirtioBlk { source, read_only } => format!(
                    "virtio-blk {}{}",
                    match source {
                        DiskSource::Empty { size } => format!("size {size}"),
                        DiskSource::Image(name) => format!("image {name}"),
                        DiskSource::Store(name) => format!("store disk {name}"),
                    },
                    if *read_only { " ro" } else { "" }
                ),
                DeviceConfig::VirtioNet { mac, network } => format!(
                    "virtio-net {}{}",
                    mac.map(|b| format!("{b:02x}")).join(":"),
                    network
                        .as_ref()
                        .map(|n| format!(" on network {n}"))
                        .unwrap_or_default()
                ),
                DeviceConfig::VirtioConsole => "virtio-console".into(),
            })
            .collect();
        out.push(format!(
            "vm {}: {}, {} MiB, {}{}{}",
            v.name,
            v.kind.name(),
            v.memory >> 20,
            match &v.source {
                vm::config::GuestSource::Image(i) => format!("image {i}"),
                vm::config::GuestSource::Snapshot(s) => format!("clone of snapshot {s}"),
            },
            v.initrd
                .as_ref()
                .map_or_else(String::new, |i| format!(", initrd {i}")),
            if devices.is_empty() {
                String::new()
            } else {
                format!(", {}", devices.join(", "))
            }
        ));
    }
    out
}

/// Packs every regular file of `dir` (not recursive) into a boot archive (`vm::archive`)
/// after [`check_bundle`]: a mistake in `bulkhead.toml` or a guest that would not load is
/// reported here, on the host, with its line and column.
pub fn pack_bundle(dir: &Path) -> Result<Vec<u8>, BootError> {
    check_bundle(dir)?;
    archive_of(&bundle_files(dir)?)
}

/// Like [`pack_bundle`] with the configuration checked but not the files it names: for tests
/// of the hypervisor's own VM-creation checks (a missing or malformed guest image).
pub fn pack_bundle_unchecked(dir: &Path) -> Result<Vec<u8>, BootError> {
    bundle_config(dir)?;
    archive_of(&bundle_files(dir)?)
}

/// A ramdisk given with `--ramdisk` must be a boot archive: an empty file makes the
/// bootloader hang without a word, anything else is refused by the hypervisor at boot.
pub fn check_ramdisk(path: &Path) -> Result<(), BootError> {
    let data = std::fs::read(path).map_err(io("cannot read the ramdisk", path))?;
    if data.is_empty() {
        return Err(BootError::Bundle(format!(
            "the ramdisk {} is empty, and the bootloader would hang on it without a message: \
             give a boot archive (`bulkhead-boot build --bundle DIR` writes one)",
            path.display()
        )));
    }
    vm::archive::Archive::parse(&data).map_err(|e| {
        BootError::Bundle(format!(
            "the ramdisk {}: {e} (`bulkhead-boot build --bundle DIR` writes one)",
            path.display()
        ))
    })?;
    Ok(())
}

/// Packs `bundle` and writes the ramdisk file next to the images; returns its path.
pub fn write_ramdisk(bundle: &Path, out_dir: &Path) -> Result<PathBuf, BootError> {
    let archive = pack_bundle(bundle)?;
    std::fs::create_dir_all(out_dir).map_err(io("cannot create", out_dir))?;
    let path = out_dir.join("bulkhead-archive.bin");
    std::fs::write(&path, archive).map_err(io("cannot write", &path))?;
    Ok(path)
}

/// Creates only the BIOS image (for tests that boot Bochs with many bundles).
pub fn build_bios_image(
    kernel: &Path,
    ramdisk: Option<&Path>,
    out: &Path,
) -> Result<(), BootError> {
    let mut bios = bootloader::BiosBoot::new(kernel);
    bios.set_boot_config(&boot_config());
    if let Some(r) = ramdisk {
        bios.set_ramdisk(r);
    }
    bios.create_disk_image(out).map_err(|e| BootError::Image {
        kind: "BIOS",
        message: format!("{e:#}"),
    })
}

/// The bootloader's run-time configuration: its log goes to the serial port only. Its
/// framebuffer log drew into the 800x600x24 VESA mode that Bochs's RFB display cannot show,
/// and those redraws are where two Bochs at once crashed (../shared/platform-notes.md).
fn boot_config() -> bootloader::BootConfig {
    let mut config = bootloader::BootConfig::default();
    config.frame_buffer_logging = false;
    config
}

/// Creates only the UEFI image.
pub fn build_uefi_image(
    kernel: &Path,
    ramdisk: Option<&Path>,
    out: &Path,
) -> Result<(), BootError> {
    let mut uefi = bootloader::UefiBoot::new(kernel);
    uefi.set_boot_config(&boot_config());
    if let Some(r) = ramdisk {
        uefi.set_ramdisk(r);
    }
    uefi.create_disk_image(out).map_err(|e| BootError::Image {
        kind: "UEFI",
        message: format!("{e:#}"),
    })
}

/// Where the test guests are built.
pub fn guest_dir() -> PathBuf {
    workspace_root().join("target").join("guests")
}

/// Builds the test guests (tests/guest): the no_std ELF guests with cargo, the real-mode
/// guest with the GNU assembler; copies them to `target/guests`.
pub fn build_guests() -> Result<PathBuf, BootError> {
    let root = workspace_root();
    cargo_build_none(
        &[
            "guest-selftest",
            "guest-hostile",
            "guest-virtio",
            "guest-fuzz",
        ],
        "the test guests",
    )?;
    let out = guest_dir();
    std::fs::create_dir_all(&out).map_err(io("cannot create", &out))?;
    let release = root.join("target/x86_64-unknown-none/release");
    for entry in std::fs::read_dir(&release).map_err(io("cannot list", &release))? {
        let entry = entry.map_err(io("cannot list", &release))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_guest = !name.contains('.')
            && (name == "selftest"
                || name == "timer"
                || name == "events"
                || name == "isolation"
                || name == "fidelity"
                || name == "disk-fill"
                || name == "spin"
                || name == "forever"
                || name == "smp-counter"
                || name == "smp-triple"
                || name == "smp-kick"
                || name == "kvm-pv"
                || name == "irq-bench"
                || name == "progress"
                || name == "rt-latency"
                || name == "noisy"
                || name == "apic"
                || name == "kvm-hc"
                || name == "idle"
                || name == "snapshot"
                || name.starts_with("hostile-")
                || name == "virtio-client"
                || name == "fuzz");
        if is_guest && entry.path().is_file() {
            let dst = out.join(format!("{name}.elf"));
            std::fs::copy(entry.path(), &dst).map_err(io("cannot copy to", &dst))?;
        }
    }
    let script = root.join("tests/guest/realmode/build.sh");
    let status = Command::new("sh")
        .arg(&script)
        .arg(out.join("realmode.bin"))
        .stdout(std::process::Stdio::null())
        .status()
        .map_err(|e| BootError::KernelBuild(format!("could not run {}: {e}", script.display())))?;
    if !status.success() {
        return Err(BootError::KernelBuild(format!(
            "{} failed ({status}); is binutils installed?",
            script.display()
        )));
    }
    // The real-mode fidelity guests and the Multiboot v1 test kernel (ELF and a.out kludge).
    for script in [
        "tests/guest/fidelity16/build.sh",
        "tests/guest/multiboot/build.sh",
    ] {
        let script = root.join(script);
        let status = Command::new("sh")
            .arg(&script)
            .arg(&out)
            .stdout(std::process::Stdio::null())
            .status()
            .map_err(|e| {
                BootError::KernelBuild(format!("could not run {}: {e}", script.display()))
            })?;
        if !status.success() {
            return Err(BootError::KernelBuild(format!(
                "{} failed ({status}); is binutils installed?",
                script.display()
            )));
        }
    }
    Ok(out)
}
