//! Every malformed-ring case ends in its defined [`QueueError`]: the device sets
//! DEVICE_NEEDS_RESET (virtio 1.2 §2.1.2), raises a configuration change interrupt,
//! and ignores the queue until the driver resets it.

use super::*;
use crate::memory::GuestMemory;
use crate::mmio::DeviceError;
use crate::queue::{Queue, QueueError};
use crate::spec::{interrupt, ring, status, BlkRequestType as T, Register};
use crate::testing::{Buf, RAM_BASE};

const N: u16 = 64;
const F_NEXT: u16 = ring::DESC_F_NEXT;
const F_W: u16 = ring::DESC_F_WRITE;
const F_IND: u16 = ring::DESC_F_INDIRECT;

/// Kicks queue 0 and asserts the device failed with `expected`.
fn expect_failure(d: &mut Driver, t: &mut Blk, expected: QueueError) {
    let e = d.kick(t, 0);
    assert_eq!(
        t.error(),
        Some(DeviceError::Queue {
            queue: 0,
            error: expected
        })
    );
    assert!(e.interrupt, "config change interrupt");
    assert_ne!(t.status() & status::DEVICE_NEEDS_RESET, 0);
    assert_eq!(
        t.interrupt_status() & interrupt::CONFIG_CHANGE,
        interrupt::CONFIG_CHANGE
    );
    assert_eq!(t.stats().errors, 1);
    // Further notifications do nothing until reset.
    let used = d.used_idx(0);
    assert!(!d.kick(t, 0).interrupt);
    assert_eq!(d.used_idx(0), used);
    // The error message names the problem.
    assert!(!alloc::format!("{}", t.error().unwrap()).is_empty());
    // Reset (write 0 to Status) recovers: a fresh setup works again.
    d.mmio_write(t, Register::Status, 0);
    assert_eq!(t.status(), 0);
    assert!(t.error().is_none());
    d.setup(t, d.features, N).expect("re-setup after reset");
    let (bufs, st) = d.blk_request(T::FLUSH, 0, &[]);
    d.add_chain(0, &bufs);
    d.kick(t, 0);
    assert!(d.pop_used(0).is_some());
    assert_eq!(d.read(st, 1)[0], 0);
}

fn data(d: &mut Driver) -> u64 {
    d.alloc(512, 16)
}

#[test]
fn head_index_out_of_range() {
    let (mut d, mut t) = blk();
    d.push_avail(0, N);
    expect_failure(
        &mut d,
        &mut t,
        QueueError::DescIndexOutOfRange {
            index: N,
            table_len: u32::from(N),
        },
    );
}

#[test]
fn next_index_out_of_range() {
    let (mut d, mut t) = blk();
    let a = data(&mut d);
    d.write_desc(0, 0, a, 16, F_NEXT, 1000);
    d.push_avail(0, 0);
    expect_failure(
        &mut d,
        &mut t,
        QueueError::DescIndexOutOfRange {
            index: 1000,
            table_len: u32::from(N),
        },
    );
}

#[test]
fn descriptor_loop() {
    let (mut d, mut t) = blk();
    let a = data(&mut d);
    d.write_desc(0, 0, a, 16, F_NEXT, 1);
    d.write_desc(0, 1, a, 16, F_NEXT, 2);
    d.write_desc(0, 2, a, 16, F_NEXT, 1);
    d.push_avail(0, 0);
    expect_failure(&mut d, &mut t, QueueError::Loop(1));
}

#[test]
fn self_loop() {
    let (mut d, mut t) = blk();
    let a = data(&mut d);
    d.write_desc(0, 5, a, 16, F_NEXT, 5);
    d.push_avail(0, 5);
    expect_failure(&mut d, &mut t, QueueError::Loop(5));
}

#[test]
fn indirect_loop() {
    let (mut d, mut t) = blk();
    let a = data(&mut d);
    let table = d.alloc(32, 16);
    for (i, next) in [(0u64, 1u16), (1, 0)] {
        d.mem.write_u64(table + 16 * i, a).unwrap();
        d.mem.write_u32(table + 16 * i + 8, 16).unwrap();
        d.mem.write_u16(table + 16 * i + 12, F_NEXT).unwrap();
        d.mem.write_u16(table + 16 * i + 14, next).unwrap();
    }
    d.write_desc(0, 0, table, 32, F_IND, 0);
    d.push_avail(0, 0);
    expect_failure(&mut d, &mut t, QueueError::Loop(0));
}

#[test]
fn chain_longer_than_queue_size() {
    // A direct descriptor followed by an indirect table of N entries: N + 1 buffers.
    let (mut d, mut t) = blk();
    let a = data(&mut d);
    let table = d.alloc(16 * u64::from(N), 16);
    for i in 0..N {
        let at = table + 16 * u64::from(i);
        d.mem.write_u64(at, a).unwrap();
        d.mem.write_u32(at + 8, 1).unwrap();
        let last = i + 1 == N;
        d.mem
            .write_u16(at + 12, if last { F_W } else { F_W | F_NEXT })
            .unwrap();
        d.mem.write_u16(at + 14, i + 1).unwrap();
    }
    d.write_desc(0, 0, a, 16, F_NEXT, 1);
    d.write_desc(0, 1, table, 16 * u32::from(N), F_IND, 0);
    d.push_avail(0, 0);
    expect_failure(&mut d, &mut t, QueueError::ChainTooLong);
}

#[test]
fn total_length_overflows() {
    // 33 descriptors of 128 MiB each (aliasing the same RAM) sum to more than 4 GiB.
    let ram = 0x0810_0000;
    let (mut d, mut t) = blk_mem(
        RamDisk::new(1 << 16),
        BlockConfig::default(),
        ALL_FEATURES,
        ram,
    );
    for i in 0..33u16 {
        d.write_desc(0, i, RAM_BASE, 0x0800_0000, F_W | F_NEXT, i + 1);
    }
    d.write_desc(0, 33, RAM_BASE, 1, F_W, 0);
    d.push_avail(0, 0);
    expect_failure(&mut d, &mut t, QueueError::LengthOverflow);
}

#[test]
fn address_overflows() {
    let (mut d, mut t) = blk();
    let addr = u64::MAX - 7;
    d.write_desc(0, 0, addr, 16, 0, 0);
    d.push_avail(0, 0);
    expect_failure(
        &mut d,
        &mut t,
        QueueError::AddressOverflow { addr, len: 16 },
    );
}

#[test]
fn buffer_outside_guest_ram() {
    let (mut d, mut t) = blk();
    d.write_desc(0, 0, 0x1000, 16, 0, 0);
    d.push_avail(0, 0);
    expect_failure(
        &mut d,
        &mut t,
        QueueError::BufferOutsideMemory {
            addr: 0x1000,
            len: 16,
        },
    );
}

#[test]
fn buffer_straddles_end_of_ram() {
    let (mut d, mut t) = blk();
    let addr = RAM_BASE + (1 << 20) - 8;
    d.write_desc(0, 0, addr, 16, 0, 0);
    d.push_avail(0, 0);
    expect_failure(
        &mut d,
        &mut t,
        QueueError::BufferOutsideMemory { addr, len: 16 },
    );
}

#[test]
fn readable_after_writable() {
    let (mut d, mut t) = blk();
    let a = data(&mut d);
    d.write_desc(0, 0, a, 16, F_W | F_NEXT, 1);
    d.write_desc(0, 1, a, 16, 0, 0);
    d.push_avail(0, 0);
    expect_failure(&mut d, &mut t, QueueError::ReadableAfterWritable);
}

#[test]
fn indirect_without_feature() {
    let (mut d, mut t) = blk_with(RamDisk::new(1 << 16), BlockConfig::default(), no_indirect());
    let a = data(&mut d);
    let (bufs, _) = d.blk_request(T::IN, 0, &[Buf::w(a, 512)]);
    d.add_indirect(0, &bufs);
    expect_failure(&mut d, &mut t, QueueError::IndirectNotNegotiated);
}

#[test]
fn indirect_with_next() {
    let (mut d, mut t) = blk();
    let a = data(&mut d);
    let table = d.alloc(16, 16);
    d.mem.write_u64(table, a).unwrap();
    d.mem.write_u32(table + 8, 16).unwrap();
    d.write_desc(0, 0, table, 16, F_IND | F_NEXT, 1);
    d.write_desc(0, 1, a, 1, F_W, 0);
    d.push_avail(0, 0);
    expect_failure(&mut d, &mut t, QueueError::IndirectWithNext);
}

#[test]
fn nested_indirect() {
    let (mut d, mut t) = blk();
    let a = data(&mut d);
    let inner = d.alloc(16, 16);
    d.mem.write_u64(inner, a).unwrap();
    d.mem.write_u32(inner + 8, 16).unwrap();
    let outer = d.alloc(16, 16);
    d.mem.write_u64(outer, inner).unwrap();
    d.mem.write_u32(outer + 8, 16).unwrap();
    d.mem.write_u16(outer + 12, F_IND).unwrap();
    d.write_desc(0, 0, outer, 16, F_IND, 0);
    d.push_avail(0, 0);
    expect_failure(&mut d, &mut t, QueueError::NestedIndirect);
}

#[test]
fn indirect_length_not_multiple_of_16() {
    let (mut d, mut t) = blk();
    let table = d.alloc(32, 16);
    d.write_desc(0, 0, table, 24, F_IND, 0);
    d.push_avail(0, 0);
    expect_failure(&mut d, &mut t, QueueError::BadIndirectLength(24));
}

#[test]
fn indirect_length_zero() {
    let (mut d, mut t) = blk();
    let table = d.alloc(32, 16);
    d.write_desc(0, 0, table, 0, F_IND, 0);
    d.push_avail(0, 0);
    expect_failure(&mut d, &mut t, QueueError::BadIndirectLength(0));
}

#[test]
fn indirect_table_too_large() {
    let (mut d, mut t) = blk();
    let entries = u32::from(N) + 1;
    let table = d.alloc(16 * u64::from(entries), 16);
    d.write_desc(0, 0, table, 16 * entries, F_IND, 0);
    d.push_avail(0, 0);
    expect_failure(&mut d, &mut t, QueueError::IndirectTableTooLarge(entries));
}

#[test]
fn indirect_table_outside_ram() {
    let (mut d, mut t) = blk();
    d.write_desc(0, 0, 0x2000, 32, F_IND, 0);
    d.push_avail(0, 0);
    expect_failure(
        &mut d,
        &mut t,
        QueueError::BufferOutsideMemory {
            addr: 0x2000,
            len: 32,
        },
    );
}

#[test]
fn avail_idx_jumps_ahead() {
    let (mut d, mut t) = blk();
    d.set_avail_idx(0, N + 1);
    expect_failure(
        &mut d,
        &mut t,
        QueueError::AvailIdxJump {
            last: 0,
            avail: N + 1,
        },
    );
}

/// Sets up queue 0 by hand with a bad layout; QueueReady=1 fails the device.
fn bad_layout(size: u16, desc: u64, avail: u64, used: u64) -> Option<DeviceError> {
    let mut t = MmioTransport::new(BlockDevice::new(RamDisk::new(4096)));
    let mut d = Driver::new(1 << 16);
    d.mmio_write(&mut t, Register::Status, 1);
    d.mmio_write(&mut t, Register::Status, 3);
    d.negotiate(&mut t, feature::VERSION_1).unwrap();
    d.mmio_write(&mut t, Register::QueueSel, 0);
    d.mmio_write(&mut t, Register::QueueNum, u32::from(size));
    d.mmio_write(&mut t, Register::QueueDescLow, desc as u32);
    d.mmio_write(&mut t, Register::QueueDescHigh, (desc >> 32) as u32);
    d.mmio_write(&mut t, Register::QueueDriverLow, avail as u32);
    d.mmio_write(&mut t, Register::QueueDriverHigh, (avail >> 32) as u32);
    d.mmio_write(&mut t, Register::QueueDeviceLow, used as u32);
    d.mmio_write(&mut t, Register::QueueDeviceHigh, (used >> 32) as u32);
    d.mmio_write(&mut t, Register::QueueReady, 1);
    if t.error().is_some() {
        assert_eq!(d.mmio_read(&mut t, Register::QueueReady), 0);
        assert_ne!(t.status() & status::DEVICE_NEEDS_RESET, 0);
    } else {
        assert_eq!(d.mmio_read(&mut t, Register::QueueReady), 1);
    }
    t.error()
}

#[test]
fn bad_queue_layouts() {
    let b = RAM_BASE;
    let q = |error| Some(DeviceError::Queue { queue: 0, error });
    assert_eq!(
        bad_layout(0, b, b + 0x1000, b + 0x2000),
        q(QueueError::InvalidSize(0))
    );
    assert_eq!(
        bad_layout(48, b, b + 0x1000, b + 0x2000),
        q(QueueError::InvalidSize(48))
    );
    assert_eq!(
        bad_layout(512, b, b + 0x1000, b + 0x2000),
        q(QueueError::InvalidSize(512))
    );
    assert_eq!(
        bad_layout(16, b + 8, b + 0x1000, b + 0x2000),
        q(QueueError::Misaligned {
            addr: b + 8,
            align: 16
        })
    );
    assert_eq!(
        bad_layout(16, b, b + 0x1001, b + 0x2000),
        q(QueueError::Misaligned {
            addr: b + 0x1001,
            align: 2
        })
    );
    assert_eq!(
        bad_layout(16, b, b + 0x1000, b + 0x2002),
        q(QueueError::Misaligned {
            addr: b + 0x2002,
            align: 4
        })
    );
    assert_eq!(
        bad_layout(16, b, b + 0x1000, 0x10),
        q(QueueError::RingOutsideMemory(0x10))
    );
    assert_eq!(
        bad_layout(16, b, u64::MAX - 1, b + 0x2000),
        q(QueueError::RingOutsideMemory(u64::MAX - 1))
    );
    assert_eq!(bad_layout(16, b, b + 0x1000, b + 0x2000), None);
}

#[test]
fn queue_not_ready() {
    let mut mem = crate::memory::VecMemory::new(0, 4096);
    let mut q = Queue::new(16);
    assert_eq!(q.pop(&mem), Err(QueueError::NotReady));
    assert_eq!(q.add_used(&mut mem, 0, 0), Err(QueueError::NotReady));
    assert_eq!(q.needs_interrupt(&mem), Err(QueueError::NotReady));
}

#[test]
fn error_messages() {
    let all = [
        QueueError::NotReady,
        QueueError::InvalidSize(3),
        QueueError::Misaligned { addr: 1, align: 2 },
        QueueError::RingOutsideMemory(1),
        QueueError::AvailIdxJump { last: 0, avail: 9 },
        QueueError::DescIndexOutOfRange {
            index: 1,
            table_len: 1,
        },
        QueueError::Loop(1),
        QueueError::ChainTooLong,
        QueueError::LengthOverflow,
        QueueError::AddressOverflow { addr: 1, len: 1 },
        QueueError::BufferOutsideMemory { addr: 1, len: 1 },
        QueueError::ReadableAfterWritable,
        QueueError::IndirectNotNegotiated,
        QueueError::IndirectWithNext,
        QueueError::NestedIndirect,
        QueueError::BadIndirectLength(1),
        QueueError::IndirectTableTooLarge(1),
        QueueError::Memory(crate::memory::MemError::OutOfBounds { gpa: 0, len: 1 }),
    ];
    let msgs: Vec<_> = all.iter().map(|e| alloc::format!("{e}")).collect();
    for (i, m) in msgs.iter().enumerate() {
        assert!(!m.is_empty());
        assert!(!msgs[..i].contains(m), "duplicate message {m}");
    }
}
