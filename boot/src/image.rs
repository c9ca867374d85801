//! Building the kernel and its disk images with the `bootloader` crate.

use crate::error::{io, BootError};
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

/// Builds the kernel for x86_64-unknown-none (release) and returns the ELF's path.
pub fn build_kernel() -> Result<PathBuf, BootError> {
    let root = workspace_root();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(&root)
        .args([
            "build",
            "-p",
            "bulkhead-kernel",
            "--target",
            "x86_64-unknown-none",
            "--release",
        ])
        .status()
        .map_err(|e| BootError::KernelBuild(format!("could not start cargo: {e}")))?;
    if !status.success() {
        return Err(BootError::KernelBuild(format!(
            "cargo exited with {status}"
        )));
    }
    Ok(root.join("target/x86_64-unknown-none/release/bulkhead"))
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
    std::fs::create_dir_all(out_dir).map_err(io("cannot create", out_dir))?;
    let images = Images {
        bios: out_dir.join("bulkhead-bios.img"),
        uefi: out_dir.join("bulkhead-uefi.img"),
    };

    let mut bios = bootloader::BiosBoot::new(kernel);
    if let Some(r) = ramdisk {
        bios.set_ramdisk(r);
    }
    bios.create_disk_image(&images.bios)
        .map_err(|e| BootError::Image {
            kind: "BIOS",
            message: format!("{e:#}"),
        })?;

    let mut uefi = bootloader::UefiBoot::new(kernel);
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
