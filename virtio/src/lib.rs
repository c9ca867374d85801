//! Device side of virtio 1.2 for the Bulkhead hypervisor: split virtqueues (§2.7),
//! the virtio-mmio version 2 transport (§4.2), virtio-blk (§5.2) and virtio-net (§5.1)
//! with a virtual switch and a gateway port.
//!
//! Only modern devices (VIRTIO_F_VERSION_1) are implemented. Guest memory is reached
//! exclusively through the bounds-checked [`GuestMemory`] trait; no input from the guest
//! can make the crate panic, loop forever or allocate without bound.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod blk;
pub mod memory;
pub mod mmio;
pub mod net;
pub mod queue;
pub mod spec;
pub mod switch;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

#[cfg(test)]
mod tests;

pub use blk::{BackendError, BlockBackend, BlockConfig, BlockDevice, RamDisk};
pub use memory::{GuestMemory, MemError, VecMemory};
pub use mmio::{DeviceError, DeviceStats, MmioEffect, MmioTransport, VirtioDevice};
pub use net::NetDevice;
pub use queue::{DescriptorChain, Queue, QueueError, Segment};
pub use switch::{Gateway, NetPort, Switch};
