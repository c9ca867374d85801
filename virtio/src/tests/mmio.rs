//! virtio-mmio register model and status state machine (virtio 1.2 §4.2.2, §2.1, §3.1.1).

use super::*;
use crate::spec::{status, Register, MMIO_MAGIC};

fn fresh() -> (Driver, Blk) {
    (
        Driver::new(1 << 16),
        MmioTransport::new(BlockDevice::new(RamDisk::new(4096))),
    )
}

#[test]
fn identification_registers() {
    let (mut d, mut t) = fresh();
    assert_eq!(d.mmio_read(&mut t, Register::MagicValue), MMIO_MAGIC);
    assert_eq!(d.mmio_read(&mut t, Register::Version), 2);
    assert_eq!(d.mmio_read(&mut t, Register::DeviceId), 2);
    assert_ne!(d.mmio_read(&mut t, Register::VendorId), 0);
    assert_eq!(d.mmio_read(&mut t, Register::QueueNumMax), 256);
    d.mmio_write(&mut t, Register::QueueSel, 1);
    assert_eq!(d.mmio_read(&mut t, Register::QueueNumMax), 0);
    assert_eq!(d.mmio_read(&mut t, Register::ShmLenLow), u32::MAX);
    assert_eq!(d.mmio_read(&mut t, Register::ConfigGeneration), 0);
    d.mmio_write(&mut t, Register::DeviceFeaturesSel, 1);
    assert_eq!(
        d.mmio_read(&mut t, Register::DeviceFeatures) & 1,
        1,
        "VERSION_1"
    );
    d.mmio_write(&mut t, Register::DeviceFeaturesSel, 7);
    assert_eq!(d.mmio_read(&mut t, Register::DeviceFeatures), 0);
    assert_eq!(t.stats().bad_accesses, 0);
}

#[test]
fn bad_accesses_are_ignored_and_counted() {
    let (mut d, mut t) = fresh();
    assert_eq!(t.read(0x000, 1), 0, "byte read of a 32-bit register");
    assert_eq!(t.read(0x002, 4), 0, "misaligned");
    assert_eq!(t.read(0x008, 8), 0, "64-bit register read");
    assert_eq!(t.read(0x018, 4), 0, "hole");
    assert_eq!(t.read(0x014, 4), 0, "write-only register");
    assert_eq!(t.read(0x100, 3), 0, "odd config size");
    t.write(0x000, 4, 5, &mut d.mem);
    t.write(0x070, 2, 1, &mut d.mem);
    t.write(0x071, 4, 1, &mut d.mem);
    assert_eq!(t.status(), 0);
    d.mmio_write(&mut t, Register::QueueSel, 9);
    d.mmio_write(&mut t, Register::QueueNum, 8);
    d.mmio_write(&mut t, Register::QueueNotify, 9);
    assert_eq!(t.stats().bad_accesses, 11);
    assert_eq!(t.stats().notifications, 1);
}

#[test]
fn feature_negotiation_rules() {
    let (mut d, mut t) = fresh();
    d.mmio_write(&mut t, Register::Status, 1);
    d.mmio_write(&mut t, Register::Status, 3);
    // Without VERSION_1 the device refuses FEATURES_OK (legacy is not supported).
    assert!(d.negotiate(&mut t, feature::BLK_FLUSH).is_err());
    assert_eq!(t.status(), 3);
    // Features the device did not offer are refused too.
    assert!(d
        .negotiate(&mut t, feature::VERSION_1 | feature::RING_PACKED)
        .is_err());
    assert!(d
        .negotiate(&mut t, feature::VERSION_1 | feature::NET_MAC)
        .is_err());
    assert!(d
        .negotiate(&mut t, feature::VERSION_1 | feature::BLK_FLUSH)
        .is_ok());
    assert_eq!(t.driver_features(), feature::VERSION_1 | feature::BLK_FLUSH);
    // After FEATURES_OK the features are frozen.
    d.mmio_write(&mut t, Register::DriverFeaturesSel, 0);
    d.mmio_write(&mut t, Register::DriverFeatures, 0);
    assert_eq!(t.driver_features(), feature::VERSION_1 | feature::BLK_FLUSH);
}

#[test]
fn status_state_machine() {
    let (mut d, mut t) = fresh();
    // DRIVER before ACKNOWLEDGE, FEATURES_OK before DRIVER, DRIVER_OK before FEATURES_OK.
    d.mmio_write(&mut t, Register::Status, u32::from(status::DRIVER));
    assert_eq!(t.status(), 0);
    d.mmio_write(&mut t, Register::Status, 1);
    d.mmio_write(&mut t, Register::Status, 1 | u32::from(status::FEATURES_OK));
    assert_eq!(t.status(), 1);
    d.mmio_write(&mut t, Register::Status, 3);
    d.mmio_write(&mut t, Register::Status, 3 | u32::from(status::DRIVER_OK));
    assert_eq!(t.status(), 3);
    // Clearing a bit is not allowed; the driver cannot set DEVICE_NEEDS_RESET.
    d.mmio_write(&mut t, Register::Status, 1);
    assert_eq!(t.status(), 3);
    d.mmio_write(
        &mut t,
        Register::Status,
        3 | u32::from(status::DEVICE_NEEDS_RESET),
    );
    assert_eq!(t.status(), 3);
    d.mmio_write(&mut t, Register::Status, 3 | u32::from(status::FAILED));
    assert_eq!(t.status(), 3 | status::FAILED);
    d.mmio_write(&mut t, Register::Status, 0);
    assert_eq!(t.status(), 0);
    assert_eq!(t.stats().bad_accesses, 4);
}

#[test]
fn reset_clears_queues_and_layout_is_frozen_while_ready() {
    let (mut d, mut t) = blk();
    d.mmio_write(&mut t, Register::QueueSel, 0);
    assert_eq!(d.mmio_read(&mut t, Register::QueueReady), 1);
    let bad = t.stats().bad_accesses;
    d.mmio_write(&mut t, Register::QueueNum, 8);
    d.mmio_write(&mut t, Register::QueueDescLow, 0);
    assert_eq!(t.queues()[0].size(), 64);
    assert_eq!(t.stats().bad_accesses, bad + 2);
    d.mmio_write(&mut t, Register::Status, 0);
    assert_eq!(d.mmio_read(&mut t, Register::QueueReady), 0);
    assert_eq!(t.driver_features(), 0);
    // Notifications before DRIVER_OK do nothing.
    assert!(!d.kick(&mut t, 0).interrupt);
}

#[test]
fn interrupt_ack_clears_bits() {
    let (mut d, mut t) = blk();
    let (bufs, _) = d.blk_request(crate::spec::BlkRequestType::FLUSH, 0, &[]);
    d.add_chain(0, &bufs);
    assert!(d.kick(&mut t, 0).interrupt);
    assert_eq!(d.mmio_read(&mut t, Register::InterruptStatus), 1);
    d.mmio_write(&mut t, Register::InterruptAck, 1);
    assert_eq!(d.mmio_read(&mut t, Register::InterruptStatus), 0);
}
