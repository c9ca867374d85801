//! Snapshot states a load refuses ([`crate::state`] "Validation"), the transport's part
//! (the device's part is in [`super::state_refusals_device`]): one test per
//! [`crate::StateError`], asserting the variant, its message, that the target transport is
//! unchanged (it saves the same state and statistics as before), and, where a good state
//! exists, that the same state without the fault loads into it.

use super::state::{console, pattern, write, MAC};
use super::*;
use crate::console::{ByteRing, ConsoleDevice};
use crate::memory::{GuestMemory, VecMemory};
use crate::mmio::{DeviceError, DeviceStats, Progress, VirtioDevice, WorkBudget};
use crate::net::NetDevice;
use crate::queue::{Queue, QueueError};
use crate::spec::{status, Register};
use crate::state::{
    DeviceKind, DeviceState, QueueState, RingPart, StateError as E, TransportState,
};
use crate::testing::RAM_BASE;

/// Disk size of every blk pair.
pub(super) const DISK: usize = 16 * 1024;

/// Loading `s` into `t` fails with `want`, whose message is `text`, with and without the
/// guest-RAM check (except for the RAM check's own error), and changes nothing.
pub(super) fn refused<D: VirtioDevice>(
    t: &mut MmioTransport<D>,
    mem: &VecMemory,
    s: &TransportState<'_>,
    want: E,
    text: &str,
) {
    let before = t.save_state().into_owned();
    let stats = t.stats();
    assert_eq!(t.load_state_checked(s, mem), Err(want));
    assert_eq!(want.to_string(), text);
    if !matches!(want, E::QueueRingOutsideMemory { .. }) {
        assert_eq!(t.load_state(s), Err(want), "load_state refuses it too");
    }
    assert_eq!(t.save_state(), before, "a refused load changes nothing");
    assert_eq!(t.stats(), stats);
}

/// `s` loads into `t`, which then saves it.
pub(super) fn loads<D: VirtioDevice>(
    t: &mut MmioTransport<D>,
    mem: &VecMemory,
    s: &TransportState<'_>,
) {
    t.load_state_checked(s, mem).expect("a good state loads");
    assert_eq!(t.save_state(), *s);
}

/// A blk device over `disk` driven by a driver: three writes, interrupt not acknowledged.
pub(super) fn blk_source(disk: RamDisk) -> TransportState<'static> {
    let (mut d, mut t) = blk_with(disk, BlockConfig::default(), ALL_FEATURES);
    for i in 0..3u8 {
        write(&mut d, &mut t, 8 * u64::from(i), &pattern(512, i));
    }
    t.save_state().into_owned()
}

/// A blk device over `disk` driven differently (one write, interrupt acknowledged), with
/// its driver: the same ring layout as [`blk_source`]'s.
pub(super) fn blk_target(disk: RamDisk) -> (Driver, Blk) {
    let (mut d, mut t) = blk_with(disk, BlockConfig::default(), ALL_FEATURES);
    write(&mut d, &mut t, 1, &[0xee; 1024]);
    d.ack_interrupt(&mut t);
    (d, t)
}

/// Runs one case on a blk pair over owned disks: `corrupt` spoils the source state.
pub(super) fn blk_case(corrupt: impl FnOnce(&mut TransportState<'static>), want: E, text: &str) {
    let good = blk_source(RamDisk::new(DISK));
    let (d, mut t) = blk_target(RamDisk::new(DISK));
    let mut s = good.clone();
    corrupt(&mut s);
    refused(&mut t, &d.mem, &s, want, text);
    loads(&mut t, &d.mem, &good);
}

#[test]
fn kind_mismatch() {
    let (mut dc, mut c) = console(64);
    c.device_mut().push_input(b"x");
    c.poll(&mut dc.mem);
    let console_state = c.save_state().into_owned();
    let (d, mut t) = blk_target(RamDisk::new(DISK));
    let want = E::KindMismatch {
        snapshot: DeviceKind::Console,
        vm_device_id: 2,
    };
    let text = "the device kind differs: snapshot has console, VM has blk";
    refused(&mut t, &d.mem, &console_state, want, text);
    let blk_state = blk_source(RamDisk::new(DISK));
    let want = E::KindMismatch {
        snapshot: DeviceKind::Blk,
        vm_device_id: 3,
    };
    let text = "the device kind differs: snapshot has blk, VM has console";
    refused(&mut c, &dc.mem, &blk_state, want, text);
    let mut net = MmioTransport::new(NetDevice::new(MAC));
    let mut s = net.save_state().into_owned();
    s.device = console_state.device.clone();
    let want = E::KindMismatch {
        snapshot: DeviceKind::Console,
        vm_device_id: 1,
    };
    let text = "the device kind differs: snapshot has console, VM has net";
    refused(&mut net, &dc.mem, &s, want, text);
    assert_eq!(
        E::KindMismatch {
            snapshot: DeviceKind::Net,
            vm_device_id: 9
        }
        .to_string(),
        "the device kind differs: snapshot has net, VM has device type 9"
    );
}

#[test]
fn queue_count() {
    let want = E::QueueCount { snapshot: 2, vm: 1 };
    let text = "the snapshot has 2 virtqueues, the device 1";
    blk_case(|s| s.queues.push(QueueState::default()), want, text);
    blk_case(
        |s| s.queues.clear(),
        E::QueueCount { snapshot: 0, vm: 1 },
        "the snapshot has 0 virtqueues, the device 1",
    );
}

#[test]
fn queue_size_zero() {
    let text = "queue 0 is ready with size 0";
    blk_case(
        |s| s.queues[0].size = 0,
        E::QueueSizeZero { queue: 0 },
        text,
    );
}

#[test]
fn queue_size_not_power_of_two() {
    let want = E::QueueSizeNotPowerOfTwo { queue: 0, size: 48 };
    blk_case(
        |s| s.queues[0].size = 48,
        want,
        "queue 0 size 48 is not a power of two",
    );
}

#[test]
fn queue_size_too_large() {
    let want = E::QueueSizeTooLarge {
        queue: 0,
        size: 512,
        max: 256,
    };
    let text = "queue 0 size 512 exceeds the device's maximum 256";
    blk_case(|s| s.queues[0].size = 512, want, text);
}

/// A queue that is not ready may hold anything the driver wrote (it is validated when
/// made ready): a bad size and misaligned rings load.
#[test]
fn a_queue_not_ready_is_not_validated() {
    let (d, mut t) = blk_target(RamDisk::new(DISK));
    let mut s = blk_source(RamDisk::new(DISK));
    s.queues[0] = QueueState {
        size: 3,
        desc_table: 1,
        avail_ring: u64::MAX,
        used_ring: 7,
        next_avail: 9,
        // Features stay applied to a queue stopped after DRIVER_OK.
        event_idx: true,
        indirect: true,
        ..QueueState::default()
    };
    loads(&mut t, &d.mem, &s);
}

#[test]
fn queue_misaligned() {
    let desc = RAM_BASE;
    let cases = [
        (
            RingPart::Descriptors,
            desc + 8,
            16,
            "descriptor table at 0x40000008 is not 16",
        ),
        (
            RingPart::Driver,
            desc + 0x401,
            2,
            "driver area at 0x40000401 is not 2",
        ),
        (
            RingPart::Device,
            desc + 0x48a,
            4,
            "device area at 0x4000048a is not 4",
        ),
    ];
    for (part, addr, align, text) in cases {
        let want = E::QueueMisaligned {
            queue: 0,
            part,
            addr,
            align,
        };
        let text = format!("queue 0 {text}-byte aligned");
        blk_case(
            |s| {
                let q = &mut s.queues[0];
                assert_eq!(
                    (q.desc_table, q.avail_ring, q.used_ring),
                    (desc, desc + 0x400, desc + 0x488)
                );
                match part {
                    RingPart::Descriptors => q.desc_table = addr,
                    RingPart::Driver => q.avail_ring = addr,
                    RingPart::Device => q.used_ring = addr,
                }
            },
            want,
            &text,
        );
    }
}

#[test]
fn queue_ring_overflow() {
    let cases = [
        (
            RingPart::Descriptors,
            u64::MAX - 15,
            "descriptor table at 0xfffffffffffffff0",
        ),
        (
            RingPart::Driver,
            u64::MAX - 1,
            "driver area at 0xfffffffffffffffe",
        ),
        (
            RingPart::Device,
            u64::MAX - 3,
            "device area at 0xfffffffffffffffc",
        ),
    ];
    for (part, addr, text) in cases {
        let want = E::QueueRingOverflow {
            queue: 0,
            part,
            addr,
        };
        let text = format!("queue 0 {text} wraps around the address space");
        blk_case(
            |s| match part {
                RingPart::Descriptors => s.queues[0].desc_table = addr,
                RingPart::Driver => s.queues[0].avail_ring = addr,
                RingPart::Device => s.queues[0].used_ring = addr,
            },
            want,
            &text,
        );
    }
}

/// Only `load_state_checked` knows guest RAM: `load_state` takes the state.
#[test]
fn queue_ring_outside_memory() {
    let end = RAM_BASE + (1 << 20);
    let cases = [
        (RingPart::Descriptors, 0x1000, "descriptor table at 0x1000"),
        (RingPart::Device, end - 8, "device area at 0x400ffff8"),
    ];
    for (part, addr, text) in cases {
        let good = blk_source(RamDisk::new(DISK));
        let (d, mut t) = blk_target(RamDisk::new(DISK));
        let mut s = good.clone();
        match part {
            RingPart::Device => s.queues[0].used_ring = addr,
            _ => s.queues[0].desc_table = addr,
        }
        let want = E::QueueRingOutsideMemory {
            queue: 0,
            part,
            addr,
        };
        let text = format!("queue 0 {text} is outside guest RAM");
        refused(&mut t, &d.mem, &s, want, &text);
        t.load_state(&s).expect("not checked against guest RAM");
        assert_eq!(t.save_state(), s);
    }
}

/// A console that offers no ring features (VERSION_1 only).
struct Bare(ConsoleDevice<ByteRing>);

impl VirtioDevice for Bare {
    fn device_id(&self) -> u32 {
        self.0.device_id()
    }
    fn device_features(&self) -> u64 {
        feature::VERSION_1
    }
    fn num_queues(&self) -> usize {
        self.0.num_queues()
    }
    fn queue_max_size(&self, index: usize) -> u16 {
        self.0.queue_max_size(index)
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        self.0.read_config(offset, data)
    }
    fn write_config(&mut self, offset: u64, data: &[u8]) {
        self.0.write_config(offset, data)
    }
    fn activate(&mut self, features: u64) {
        self.0.activate(features)
    }
    fn process_queue(
        &mut self,
        index: usize,
        queue: &mut Queue,
        mem: &mut dyn GuestMemory,
        stats: &mut DeviceStats,
        budget: &mut WorkBudget,
    ) -> Result<Progress, QueueError> {
        self.0.process_queue(index, queue, mem, stats, budget)
    }
    fn poll(
        &mut self,
        queues: &mut [Queue],
        mem: &mut dyn GuestMemory,
        stats: &mut DeviceStats,
        budget: &mut WorkBudget,
    ) -> Result<Progress, DeviceError> {
        self.0.poll(queues, mem, stats, budget)
    }
    fn queue_stopped(&mut self, index: usize) {
        self.0.queue_stopped(index)
    }
    fn reset(&mut self) {
        self.0.reset()
    }
    fn save_device_state(&self) -> DeviceState<'_> {
        self.0.save_device_state()
    }
    fn load_device_state(&mut self, state: &DeviceState<'_>, q: &[QueueState]) -> Result<(), E> {
        self.0.load_device_state(state, q)
    }
    fn in_flight_chains(&self, index: usize) -> u16 {
        self.0.in_flight_chains(index)
    }
}

fn bare() -> MmioTransport<Bare> {
    MmioTransport::new(Bare(ConsoleDevice::new(ByteRing::new(64))))
}

#[test]
fn queue_feature_not_offered() {
    let mut src = bare();
    let mut d = Driver::new(1 << 20);
    assert_eq!(d.setup(&mut src, ALL_FEATURES, 64), Ok(feature::VERSION_1));
    let good = src.save_state().into_owned();
    let mut t = bare();
    let mut s = good.clone();
    s.queues[0].event_idx = true;
    let want = E::QueueFeatureNotOffered {
        queue: 0,
        feature: feature::RING_EVENT_IDX,
    };
    let text = "queue 0 uses ring feature bit 29 the device never offered";
    refused(&mut t, &d.mem, &s, want, text);
    let mut s = good.clone();
    s.queues[1].indirect = true;
    s.queues[1].ready = false;
    let want = E::QueueFeatureNotOffered {
        queue: 1,
        feature: feature::RING_INDIRECT_DESC,
    };
    let text = "queue 1 uses ring feature bit 28 the device never offered";
    refused(&mut t, &d.mem, &s, want, text);
    loads(&mut t, &d.mem, &good);
}

/// A driver that makes a queue ready before FEATURES_OK (out of the order of virtio 1.2
/// §3.1.1) with ring features the device does not offer in DriverFeatures: the state the
/// transport reaches loads (the queue does not use the features).
#[test]
fn ring_features_the_device_never_offered_never_reach_a_queue() {
    let mut src = bare();
    let mut d = Driver::new(1 << 20);
    d.mmio_write(&mut src, Register::Status, u32::from(status::ACKNOWLEDGE));
    d.mmio_write(
        &mut src,
        Register::Status,
        u32::from(status::ACKNOWLEDGE | status::DRIVER),
    );
    d.mmio_write(&mut src, Register::DriverFeaturesSel, 0);
    let ring = feature::RING_EVENT_IDX | feature::RING_INDIRECT_DESC;
    d.mmio_write(&mut src, Register::DriverFeatures, ring as u32);
    let q = d.layout_queue(0, 64);
    d.mmio_write(&mut src, Register::QueueNum, 64);
    d.mmio_write(&mut src, Register::QueueDescLow, q.desc as u32);
    d.mmio_write(&mut src, Register::QueueDriverLow, q.avail as u32);
    d.mmio_write(&mut src, Register::QueueDeviceLow, q.used as u32);
    d.mmio_write(&mut src, Register::QueueReady, 1);
    assert!(src.queues()[0].ready());
    let s = src.save_state();
    assert!(!s.queues[0].event_idx && !s.queues[0].indirect);
    loads(&mut bare(), &d.mem, &s);
}

#[test]
fn queue_features_differ_after_driver_ok() {
    let text = "queue 0's ring features differ from the negotiated ones";
    blk_case(
        |s| s.queues[0].indirect = false,
        E::QueueFeaturesDiffer { queue: 0 },
        text,
    );
    // Before DRIVER_OK they may differ (features are final only then).
    let (d, mut t) = blk_target(RamDisk::new(DISK));
    let mut s = blk_source(RamDisk::new(DISK));
    s.status = status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK;
    s.queues[0].indirect = false;
    loads(&mut t, &d.mem, &s);
}

#[test]
fn status_reserved() {
    for bit in [0x10u8, 0x20] {
        let st = 0x0f | bit;
        let text = format!("device status {st:#04x} has reserved bits set");
        blk_case(|s| s.status = st, E::StatusReserved { status: st }, &text);
    }
}

#[test]
fn status_order() {
    let cases = [
        (status::DRIVER, "0x02"),
        (status::ACKNOWLEDGE | status::FEATURES_OK, "0x09"),
        (
            status::ACKNOWLEDGE | status::DRIVER | status::DRIVER_OK,
            "0x07",
        ),
        (status::DRIVER_OK | status::FAILED, "0x84"),
    ];
    for (st, hex) in cases {
        let text = format!("device status {hex} skips a step of the initialization sequence");
        blk_case(|s| s.status = st, E::StatusOrder { status: st }, &text);
    }
    // Any state the driver can reach: FAILED or DEVICE_NEEDS_RESET alone, a refused
    // FEATURES_OK (then any features).
    let (d, mut t) = blk_target(RamDisk::new(DISK));
    for st in [status::FAILED, status::DEVICE_NEEDS_RESET, 3] {
        let mut s = blk_source(RamDisk::new(DISK));
        (s.status, s.driver_features) = (st, u64::MAX);
        loads(&mut t, &d.mem, &s);
    }
}

#[test]
fn features_not_offered() {
    let want = E::FeaturesNotOffered {
        features: 0x5_3000_6246,
        offered: 0x1_3000_6246,
    };
    let text = "the negotiated features 0x530006246 include bits 0x400000000 the device never \
                offered";
    blk_case(
        |s| {
            assert_eq!(s.driver_features, 0x1_3000_6246);
            s.driver_features |= feature::RING_PACKED;
        },
        want,
        text,
    );
}

#[test]
fn features_without_version_1() {
    let want = E::FeaturesWithoutVersion1 {
        features: 0x3000_6246,
    };
    let text = "the negotiated features 0x30006246 lack VIRTIO_F_VERSION_1";
    blk_case(|s| s.driver_features &= !feature::VERSION_1, want, text);
}

#[test]
fn interrupt_reserved() {
    let text = "interrupt status 0x5 has reserved bits set";
    blk_case(
        |s| s.interrupt_status = 5,
        E::InterruptReserved { status: 5 },
        text,
    );
}

#[test]
fn pending_inactive() {
    for st in [0x0b, 0x4f] {
        let text = "queues 0x1 have work pending on a device that is not running";
        blk_case(
            |s| (s.status, s.pending) = (st, 1),
            E::PendingInactive { pending: 1 },
            text,
        );
    }
}

#[test]
fn pending_not_ready() {
    let text = "queue 0 has work pending but is not ready (pending mask 0x1)";
    blk_case(
        |s| (s.queues[0].ready, s.pending) = (false, 1),
        E::PendingNotReady {
            pending: 1,
            queue: 0,
        },
        text,
    );
    for (pending, queue) in [(3u64, 1usize), (1 << 63, 63)] {
        let text =
            format!("queue {queue} has work pending but is not ready (pending mask {pending:#x})");
        blk_case(
            |s| s.pending = pending,
            E::PendingNotReady { pending, queue },
            &text,
        );
    }
}

#[test]
fn next_queue() {
    let text = "round-robin position 2 is beyond the 1 virtqueues";
    blk_case(
        |s| s.next_queue = 2,
        E::NextQueue { next: 2, queues: 1 },
        text,
    );
    let (d, mut t) = blk_target(RamDisk::new(DISK));
    let mut s = blk_source(RamDisk::new(DISK));
    s.next_queue = 1;
    loads(&mut t, &d.mem, &s);
}
