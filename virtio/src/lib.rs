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
//! Everything a device allocates because of the guest is either allocated when it is
//! created (frame rings, chain buffers, console buffers) or charged to a budget whose
//! maximum [`MmioTransport::worst_case_bytes`] reports, so the VM's worst case can be
//! reserved at creation. Work per call is bounded ([`MAX_REQUESTS_PER_CALL`] requests,
//! [`MAX_BYTES_PER_CALL`] bytes); what is left is reported by [`MmioEffect::more`] /
//! [`MmioTransport::has_kicks`] and continued by the next [`MmioTransport::process_kicks`].
//!
//! ```
//! use virtio::{
//!     ByteRing, BlockDevice, ConsoleDevice, MmioTransport, NetDevice, PortKind, RamDisk,
//!     Switch, SwitchConfig, VecMemory,
//! };
//!
//! // Guest RAM as the hypervisor exposes it (implement `GuestMemory` over EPT-mapped RAM).
//! let mut ram = VecMemory::new(0x4000_0000, 1 << 20);
//! // A copy-on-write disk over an archive entry with a 256 KiB overlay budget.
//! static IMAGE: [u8; 1 << 20] = [0; 1 << 20];
//! let disk = RamDisk::from_static_with_budget(&IMAGE, 256 << 10);
//! // One MMIO window (0x200 bytes) per device, e.g. at 0xd000_0000 and 0xd000_1000.
//! let mut blk = MmioTransport::new(BlockDevice::new(disk));
//! blk.set_deferred_notify(true);
//! // Charge to the VM at creation: the budget (less than an overlay of the whole image).
//! let reserve = blk.worst_case_bytes();
//! assert_eq!(reserve, 256 << 10);
//! let mut net = MmioTransport::new(NetDevice::new([0x52, 0x54, 0, 0x12, 0x34, 0x56]));
//! let mut console = MmioTransport::new(ConsoleDevice::new(ByteRing::new(4096)));
//! // A network: a switch with a gateway port and one port per attached device.
//! let mut switch = Switch::new(SwitchConfig::new(4, 1_000_000_000));
//! switch.add_gateway([0x02, 0, 0, 0, 0, 1], [10, 0, 2, 2]).unwrap();
//! let port = switch.add_port(PortKind::Guest { mac: net.device().mac() }).unwrap();
//!
//! // EPT violation on the window: decode the access, then
//! let value = blk.read(0x000, 4); // MagicValue
//! assert_eq!(value, 0x7472_6976);
//! let effect = net.write(0x050, 4, 1, &mut ram); // QueueNotify(TX)
//! if effect.interrupt { /* inject the device's IRQ (edge) */ }
//!
//! // Deferred or left-over work: in the VM's time slice (or when its vCPU halts), once
//! // per slice; keep calling in later slices while `more` is set.
//! let e = blk.process_kicks(&mut ram);
//! if e.interrupt { /* inject */ }
//! if e.more { /* re-arm: continue in the next slice */ }
//!
//! // Forward what the guest sent (at most 64 frames per call, read in place), then fill its
//! // RX buffers straight from its port's queue (lent to the device); inject if asked.
//! let now = 0; // the TSC
//! let out = switch.send_from(port, net.device_mut().tx_ring_mut(), now);
//! if out.more { /* pump again in the next slice */ }
//! switch.swap_queue(port, net.device_mut().rx_ring_mut());
//! let interrupt = net.poll(&mut ram).interrupt;
//! switch.swap_queue(port, net.device_mut().rx_ring_mut());
//! if interrupt { /* inject */ }
//!
//! // Console: guest output lands in the sink; input goes in with push_input + poll.
//! console.device_mut().sink_mut().drain(64, |bytes| bytes.len() /* to the UART */);
//! console.device_mut().push_input(b"ls\n");
//! if console.poll(&mut ram).interrupt { /* inject */ }
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
pub mod state;
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
pub use state::{DeviceKind, DeviceState, StateError, TransportState};
pub use switch::{
    DropReason, Drops, FloodLimit, Gateway, MacText, NetPort, PortId, PortKind, PortStats,
    PumpOutcome, Switch, SwitchConfig, SwitchError, SwitchStats,
};
