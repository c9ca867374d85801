//! Bulkhead's host tool as a library: build the kernel and its BIOS/UEFI disk images, generate
//! emulator configurations, run an image under Bochs, Bochs + OVMF, QEMU (TCG) + OVMF or
//! QEMU/KVM, and judge the serial transcript. The `bulkhead-boot` binary and the integration
//! tests (`tests/`) both use it.

pub mod bench;
pub mod bochs;
pub mod bundle;
pub mod convert;
pub mod disk;
pub mod error;
pub mod image;
pub mod qemu;
pub mod run;
pub mod serial_input;
pub mod transcript;

pub use error::BootError;
pub use run::{run, Platform, RunOutcome, RunSpec};
pub use transcript::KernelExit;
