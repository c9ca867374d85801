//! Network interface controllers the hypervisor drives itself for a network's uplink: the
//! driver logic, host-tested against models of the hardware (like `crate::store` for the
//! disk controllers); the kernel supplies register access and DMA memory.
//!
//! Why here and not in the `virtio` crate: `virtio` models devices *offered to guests*;
//! this is a driver *of* host hardware, which the VM crate already holds for the ATA and
//! NVMe controllers (same seams: registers behind a trait, DMA through
//! [`crate::store::nvme::DmaMemory`]), so the kernel side stays a thin MMIO shim.

pub mod e1000;
