//! End-to-end tests through the MMIO transport, driven by [`crate::testing::Driver`].

mod blk;
mod bounded;
mod budget;
mod console;
mod fuzz_smoke;
mod mmio;
mod net;
mod pending;
mod queue_errors;
mod state;
mod state_in_flight;
mod state_refusals;
mod state_refusals_device;

use crate::blk::{BlockConfig, BlockDevice, RamDisk};
use crate::mmio::MmioTransport;
use crate::spec::feature;
use crate::testing::Driver;

/// Every ring feature a Linux guest would accept plus all blk/net features.
pub(crate) const ALL_FEATURES: u64 = u64::MAX;

pub(crate) type Blk = MmioTransport<BlockDevice<RamDisk>>;

/// A blk device over a zeroed 1 MiB disk, set up with `features` and 64-entry queues.
pub(crate) fn blk_with(disk: RamDisk, config: BlockConfig, features: u64) -> (Driver, Blk) {
    blk_mem(disk, config, features, 1 << 20)
}

pub(crate) fn blk_mem(
    disk: RamDisk,
    config: BlockConfig,
    features: u64,
    ram: usize,
) -> (Driver, Blk) {
    let mut t = MmioTransport::new(BlockDevice::with_config(disk, config));
    let mut d = Driver::new(ram);
    d.setup(&mut t, features, 64).expect("setup");
    (d, t)
}

pub(crate) fn blk() -> (Driver, Blk) {
    blk_with(RamDisk::new(1 << 20), BlockConfig::default(), ALL_FEATURES)
}

pub(crate) fn no_indirect() -> u64 {
    ALL_FEATURES & !feature::RING_INDIRECT_DESC
}
