//! Snapshot state (issue 18): work in flight when the state is saved. A request or output
//! buffer the device took and did not complete is given back to its ring (next_avail one
//! lower); the restored device runs it again and completes it exactly once.

use super::state::{console, output, pattern, read, restore, settle, whole_disk, write};
use super::*;
use crate::console::{ByteRing, ConsoleDevice, TRANSMITQ};
use crate::memory::GuestMemory as _;
use crate::mmio::MAX_BYTES_PER_CALL;
use crate::spec::{blk_status, BlkRequestType as T, Register};
use crate::state::{ConsoleState, DeviceState};
use crate::testing::Buf;

/// A write larger than the per-call byte bound is in flight when saved: the state gives it
/// back (next_avail one lower, its queue pending); the restored device runs it again from
/// the start and completes it exactly once, then the request queued behind it.
#[test]
fn blk_request_in_flight_is_given_back() {
    const SIZE: usize = 4 << 20;
    let data = pattern(MAX_BYTES_PER_CALL as usize * 3 / 2, 7);
    let features = ALL_FEATURES & !(feature::BLK_SEG_MAX | feature::BLK_SIZE_MAX);
    let (mut d, mut t) = blk_mem(RamDisk::new(SIZE), BlockConfig::default(), features, SIZE);
    let a = d.alloc_data(&data);
    let (bufs, st) = d.blk_request(T::OUT, 16, &[Buf::r(a, data.len() as u32)]);
    let big = d.add_chain(0, &bufs);
    let small_data = d.alloc_data(&[0x42; 512]);
    let (bufs, small_st) = d.blk_request(T::OUT, 8, &[Buf::r(small_data, 512)]);
    let small = d.add_chain(0, &bufs);
    let e = d.kick(&mut t, 0);
    assert!(e.more && !e.interrupt);
    assert!(t.device().request_in_flight());
    assert_eq!(t.queues()[0].next_avail(), 1);

    let s = t.save_state();
    assert_eq!(
        s.queues[0].next_avail, 0,
        "the request in flight is given back"
    );
    assert_eq!(s.queues[0].next_used, 0);
    assert_eq!(s.pending, 1);
    assert!(s.queues[0].notifications_suppressed);
    let mut d2 = d.clone();
    let fresh = MmioTransport::new(BlockDevice::new(RamDisk::new(SIZE)));
    let mut t2 = restore(&t, fresh, &d2.mem);
    assert!(!t2.device().request_in_flight());
    assert!(t2.has_kicks());
    settle(&mut d2, &mut t2);
    assert_eq!(d2.pop_used(0), Some((u32::from(big), 1)));
    assert_eq!(d2.pop_used(0), Some((u32::from(small), 1)));
    assert_eq!(d2.pop_used(0), None, "each request completes once");
    assert_eq!(d2.used_idx(0), 2);
    assert_eq!(d2.read(st, 1)[0], blk_status::OK);
    assert_eq!(d2.read(small_st, 1)[0], blk_status::OK);
    let disk = whole_disk(&mut t2);
    assert!(disk[16 * 512..16 * 512 + data.len()] == data[..]);
    assert_eq!(disk[8 * 512..9 * 512], [0x42; 512]);
    assert_eq!(t2.stats().requests, 2);
    assert_eq!(
        t2.stats().bytes_read,
        data.len() as u64 + 512,
        "the write runs again from the start"
    );
    // The original finishes the same way.
    settle(&mut d, &mut t);
    assert_eq!(d.used_idx(0), 2);
    assert!(whole_disk(&mut t) == disk);
}

/// A read in flight: the restored device reads all of it again into the guest's buffers.
#[test]
fn blk_read_in_flight_completes_with_the_right_data() {
    const SIZE: usize = 4 << 20;
    let img = pattern(SIZE, 3);
    let features = ALL_FEATURES & !(feature::BLK_SEG_MAX | feature::BLK_SIZE_MAX);
    let (mut d, mut t) = blk_mem(
        RamDisk::from_image(img.clone()),
        BlockConfig::default(),
        features,
        SIZE,
    );
    write(&mut d, &mut t, 0, &[0x99; 512]);
    let len = 2 * MAX_BYTES_PER_CALL as usize + 4096;
    let r = d.alloc(len as u64, 16);
    let (bufs, st) = d.blk_request(T::IN, 0, &[Buf::w(r, len as u32)]);
    let head = d.add_chain(0, &bufs);
    assert!(d.kick(&mut t, 0).more);
    t.process_kicks(&mut d.mem);
    assert!(t.device().request_in_flight(), "two calls in, one to go");
    let s = t.save_state();
    assert_eq!((s.queues[0].next_avail, s.queues[0].next_used), (1, 1));
    let mut d2 = d.clone();
    let fresh = MmioTransport::new(BlockDevice::new(RamDisk::from_image(vec![0; SIZE])));
    let mut t2 = restore(&t, fresh, &d2.mem);
    settle(&mut d2, &mut t2);
    assert_eq!(d2.pop_used(0), Some((u32::from(head), len as u32 + 1)));
    assert_eq!(d2.pop_used(0), None);
    assert_eq!(d2.read(st, 1)[0], blk_status::OK);
    let mut expect = img[..len].to_vec();
    expect[..512].fill(0x99);
    assert!(
        d2.read(r, len) == expect,
        "data read by the restored device differs"
    );
    assert_eq!(
        t2.stats().bytes_written,
        len as u64,
        "read once, from the start"
    );
}

/// Console output stalled on a full sink: the buffer is given back with the bytes the sink
/// already took; the restored console outputs only the rest, completes the buffer once and
/// carries on with the next.
#[test]
fn console_output_stalled_on_a_full_sink_is_given_back() {
    let (mut d, mut t) = console(4);
    let a = d.alloc_data(b"hello world\n");
    let head = d.add_chain(TRANSMITQ, &[Buf::r(a, 12)]);
    let b = d.alloc_data(b"!");
    let next = d.add_chain(TRANSMITQ, &[Buf::r(b, 1)]);
    assert!(d.kick(&mut t, TRANSMITQ).more);
    assert_eq!(d.pop_used(TRANSMITQ), None);
    let s = t.save_state();
    assert_eq!(
        s.device,
        DeviceState::Console(ConsoleState {
            input: Vec::new(),
            tx_skip: 4
        })
    );
    assert_eq!(s.queues[TRANSMITQ].next_avail, 0);
    assert_eq!(s.pending, 1 << TRANSMITQ);
    // The host keeps what the old sink took.
    let mut all = output(&mut t);
    assert_eq!(all, b"hell");

    let mut d2 = d.clone();
    let fresh = MmioTransport::new(ConsoleDevice::new(ByteRing::new(64)));
    let mut t2 = restore(&t, fresh, &d2.mem);
    assert_eq!(
        t2.save_state().queues[TRANSMITQ].next_avail,
        0,
        "not given back twice"
    );
    settle(&mut d2, &mut t2);
    all.extend(output(&mut t2));
    assert_eq!(all, b"hello world\n!");
    assert_eq!(d2.pop_used(TRANSMITQ), Some((u32::from(head), 0)));
    assert_eq!(d2.pop_used(TRANSMITQ), Some((u32::from(next), 0)));
    assert_eq!(d2.pop_used(TRANSMITQ), None);
    assert_eq!(
        t2.save_state().device,
        DeviceState::Console(ConsoleState::default())
    );
}

/// A restored console whose transmitq is stopped before it took the given-back buffer
/// forgets the skip (the buffer is not the one the sink saw part of any more).
#[test]
fn console_stopping_the_transmitq_forgets_the_skip() {
    let (mut d, mut t) = console(2);
    let a = d.alloc_data(b"abcdef");
    d.add_chain(TRANSMITQ, &[Buf::r(a, 6)]);
    d.kick(&mut t, TRANSMITQ);
    let d2 = d.clone();
    let fresh = MmioTransport::new(ConsoleDevice::new(ByteRing::new(64)));
    let mut t2 = restore(&t, fresh, &d2.mem);
    let mut d2 = d2;
    d2.mmio_write(&mut t2, Register::QueueSel, TRANSMITQ as u32);
    d2.mmio_write(&mut t2, Register::QueueReady, 0);
    let s = t2.save_state();
    assert_eq!(s.device, DeviceState::Console(ConsoleState::default()));
    assert!(!s.queues[TRANSMITQ].ready);
}

/// Deferred kicks not processed yet are pending in the state; the restored transport
/// processes them.
#[test]
fn deferred_kicks_stay_pending() {
    let mut t = MmioTransport::new(BlockDevice::new(RamDisk::new(1 << 16)));
    t.set_deferred_notify(true);
    let mut d = Driver::new(1 << 20);
    d.setup(&mut t, ALL_FEATURES, 64).unwrap();
    for i in 0..3u8 {
        let a = d.alloc_data(&[i; 512]);
        let (bufs, _) = d.blk_request(T::OUT, u64::from(i), &[Buf::r(a, 512)]);
        d.add_chain(0, &bufs);
    }
    assert!(d.kick(&mut t, 0).more);
    let s = t.save_state();
    assert_eq!((s.pending, s.queues[0].next_avail), (1, 0));
    let mut d2 = d.clone();
    let mut fresh = MmioTransport::new(BlockDevice::new(RamDisk::new(1 << 16)));
    fresh.set_deferred_notify(true);
    let mut t2 = restore(&t, fresh, &d2.mem);
    assert!(t2.has_kicks());
    assert!(t2.process_kicks(&mut d2.mem).interrupt);
    assert_eq!(d2.used_idx(0), 3);
    while d2.pop_used(0).is_some() {}
    for i in 0..3u8 {
        assert_eq!(read(&mut d2, &mut t2, u64::from(i), 512), [i; 512]);
    }
}

/// The available and used indices wrap at 2^16 (virtio 1.2 §2.7.6, §2.7.8): a request
/// taken at available index 0xffff (next_avail now 0) is given back as 0xffff, and the
/// restored device completes it at used index 0xffff, the used index wrapping to 0.
#[test]
fn a_request_in_flight_across_the_index_wrap() {
    const SIZE: usize = 4 << 20;
    let features = ALL_FEATURES & !(feature::BLK_SEG_MAX | feature::BLK_SIZE_MAX);
    let (mut d, mut t) = blk_mem(RamDisk::new(SIZE), BlockConfig::default(), features, SIZE);
    // Both sides at index 0xffff: a state with those indices, the driver's rings to match.
    let mut s = t.save_state().into_owned();
    let q = &mut s.queues[0];
    (q.next_avail, q.next_used, q.signalled_used) = (0xffff, 0xffff, 0xffff);
    t.load_state_checked(&s, &d.mem).unwrap();
    d.set_avail_idx(0, 0xffff);
    d.queues[0].last_used = 0xffff;
    let used = d.queues[0].used;
    d.mem.write_u16(used + 2, 0xffff).unwrap();
    d.set_used_event(0, 0xffff);
    let data = pattern(MAX_BYTES_PER_CALL as usize * 3 / 2, 5);
    let a = d.alloc_data(&data);
    let (bufs, st) = d.blk_request(T::OUT, 0, &[Buf::r(a, data.len() as u32)]);
    let head = d.add_chain(0, &bufs);
    assert!(d.kick(&mut t, 0).more);
    assert_eq!(t.queues()[0].next_avail(), 0, "wrapped");
    assert_eq!(t.save_state().queues[0].next_avail, 0xffff);
    let mut d2 = d.clone();
    let fresh = MmioTransport::new(BlockDevice::new(RamDisk::new(SIZE)));
    let mut t2 = restore(&t, fresh, &d2.mem);
    let mut interrupt = false;
    while t2.has_kicks() {
        interrupt |= t2.process_kicks(&mut d2.mem).interrupt;
    }
    assert!(interrupt, "the completion crosses used_event 0xffff");
    assert_eq!(d2.pop_used(0), Some((u32::from(head), 1)));
    assert_eq!(d2.pop_used(0), None);
    assert_eq!(d2.used_idx(0), 0);
    assert_eq!(d2.read(st, 1)[0], blk_status::OK);
    assert!(whole_disk(&mut t2)[..data.len()] == data[..]);
    // And the next request runs at index 0.
    write(&mut d2, &mut t2, 4096, &[3; 512]);
    assert_eq!(read(&mut d2, &mut t2, 4096, 512), [3; 512]);
}

/// A load into a transport whose own request is in flight, or whose console output is
/// stalled, forgets that work: only the loaded state decides what runs.
#[test]
fn a_load_forgets_the_targets_own_work_in_flight() {
    const SIZE: usize = 4 << 20;
    let features = ALL_FEATURES & !(feature::BLK_SEG_MAX | feature::BLK_SIZE_MAX);
    let (mut ds, mut src) = blk_mem(RamDisk::new(SIZE), BlockConfig::default(), features, SIZE);
    write(&mut ds, &mut src, 0, &[7; 512]);
    let (mut d, mut t) = blk_mem(RamDisk::new(SIZE), BlockConfig::default(), features, SIZE);
    let len = MAX_BYTES_PER_CALL as usize * 2;
    let r = d.alloc(len as u64, 16);
    let (bufs, _) = d.blk_request(T::IN, 0, &[Buf::w(r, len as u32)]);
    d.add_chain(0, &bufs);
    assert!(d.kick(&mut t, 0).more && t.device().request_in_flight());
    let s = src.save_state();
    t.load_state_checked(&s, &ds.mem).unwrap();
    assert!(!t.device().request_in_flight() && !t.has_kicks());
    assert_eq!(t.save_state(), s);
    assert_eq!(read(&mut ds, &mut t, 0, 512), [7; 512]);

    let (mut dc, src) = console(64);
    let (mut d, mut t) = console(2);
    let a = d.alloc_data(b"stalled");
    d.add_chain(TRANSMITQ, &[Buf::r(a, 7)]);
    assert!(d.kick(&mut t, TRANSMITQ).more);
    let s = src.save_state();
    t.load_state_checked(&s, &dc.mem).unwrap();
    assert_eq!(t.save_state(), s);
    output(&mut t);
    let b = dc.alloc_data(b"ok");
    dc.add_chain(TRANSMITQ, &[Buf::r(b, 2)]);
    dc.kick(&mut t, TRANSMITQ);
    assert_eq!(output(&mut t), b"ok", "no byte skipped");
}
