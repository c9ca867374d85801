//! Device side of virtio 1.2 for the Bulkhead hypervisor: split virtqueues (§2.7),
//! the virtio-mmio version 2 transport (§4.2), virtio-blk (§5.2), virtio-net (§5.1)
//! with a learning virtual switch and a gateway port (ARP + ICMP echo), and a one-port
//! virtio-console (§5.3).
//!
//! Only modern devices (VIRTIO_F_VERSION_1) are implemented. Guest memory is reached
//! exclusively through the bounds-checked [`GuestMemory`] trait; no input from the guest
//! can make the crate panic, loop forever or allocate without bound. Any malformed
//! virtqueue ends in a [`QueueError`]: the device sets DEVICE_NEEDS_RESET (§2.1.2),
//! raises a configuration change interrupt and ignores the queues until reset.
//!
//! # Use from the hypervisor
//!
//! ```
//! use virtio::{MmioTransport, BlockDevice, RamDisk, NetDevice, Switch, Gateway, NetPort, VecMemory};
//!
//! // Guest RAM as the hypervisor exposes it (implement `GuestMemory` over EPT-mapped RAM).
//! let mut ram = VecMemory::new(0x4000_0000, 1 << 20);
//! // One MMIO window (0x200 bytes) per device, e.g. at 0xd000_0000 and 0xd000_1000.
//! let mut blk = MmioTransport::new(BlockDevice::new(RamDisk::from_image(vec![0; 1 << 20])));
//! let mut net = MmioTransport::new(NetDevice::new([0x52, 0x54, 0, 0x12, 0x34, 0x56]));
//! let mut switch = Switch::new(256);
//! let mut gateway = Gateway::new([0x02, 0, 0, 0, 0, 1], [10, 0, 2, 2]);
//!
//! // EPT violation on the window: decode the access, then
//! let value = blk.read(0x000, 4); // MagicValue
//! assert_eq!(value, 0x7472_6976);
//! let effect = net.write(0x050, 4, 1, &mut ram); // QueueNotify(TX)
//! if effect.interrupt { /* inject the device's IRQ (edge) */ }
//!
//! // Move frames between ports (after TX notifies, and when frames arrive).
//! switch.pump(&mut [net.device_mut() as &mut dyn NetPort, &mut gateway]);
//! // Copy delivered frames into RX buffers; inject if asked.
//! if net.poll(&mut ram).interrupt { /* inject */ }
//! ```
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod blk;
pub mod console;
pub mod frames;
pub mod memory;
pub mod mmio;
pub mod net;
pub mod queue;
pub mod ramdisk;
pub mod spec;
pub mod switch;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

#[cfg(test)]
mod tests;

pub use blk::{BackendError, BlockBackend, BlockConfig, BlockDevice};
pub use console::{ByteRing, ConsoleDevice, ConsoleSink};
pub use frames::{FrameBuf, FrameRing, MAX_FRAME};
pub use memory::{GuestMemory, MemError, VecMemory};
pub use mmio::{
    DeviceError, DeviceStats, MmioEffect, MmioTransport, Progress, VirtioDevice, WorkBudget,
    MAX_BYTES_PER_CALL, MAX_REQUESTS_PER_CALL,
};
pub use net::NetDevice;
pub use queue::{DescriptorChain, Queue, QueueError, Segment};
pub use ramdisk::{DiskAllocError, RamDisk};
pub use switch::{Gateway, NetPort, PortSet, PumpOutcome, Switch};
