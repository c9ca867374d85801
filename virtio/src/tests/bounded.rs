//! Bounded work per transport call (issue 9, finding 5): at most MAX_REQUESTS_PER_CALL
//! requests and MAX_BYTES_PER_CALL bytes; the rest stays pending (`has_kicks`, `more`) and
//! completes, in order, in later calls. A huge request moves its data across calls.

use super::*;
use crate::blk::BlockBackend;
use crate::mmio::{MmioEffect, MAX_BYTES_PER_CALL, MAX_REQUESTS_PER_CALL};
use crate::spec::{blk_status, BlkRequestType as T};
use crate::testing::Buf;

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(7).wrapping_add(seed) ^ (i >> 9) as u8)
        .collect()
}

fn drain_used(d: &mut Driver) -> Vec<(u32, u32)> {
    let mut v = Vec::new();
    while let Some(u) = d.pop_used(0) {
        v.push(u);
    }
    v
}

/// 256 write requests behind one (deferred) kick: every call completes exactly 32, in
/// submission order, until all 256 are done; the data lands where it should.
#[test]
fn queued_requests_complete_32_per_call_in_order() {
    assert_eq!(MAX_REQUESTS_PER_CALL, 32);
    let mut t = MmioTransport::new(BlockDevice::new(RamDisk::new(1 << 20)));
    t.set_deferred_notify(true);
    let mut d = Driver::new(1 << 20);
    d.setup(&mut t, ALL_FEATURES, 256).unwrap();
    let mut heads = Vec::new();
    let mut statuses = Vec::new();
    for i in 0..256u64 {
        let a = d.alloc_data(&[i as u8; 512]);
        let (bufs, st) = d.blk_request(T::OUT, i, &[Buf::r(a, 512)]);
        heads.push(u32::from(d.add_indirect(0, &bufs)));
        statuses.push(st);
    }
    let e = d.kick(&mut t, 0);
    assert!(e.more && !e.interrupt, "deferred: nothing done at the kick");
    let mut completed = Vec::new();
    for call in 0..8 {
        assert!(t.has_kicks(), "call {call}: work left");
        let e = t.process_kicks(&mut d.mem);
        let used = drain_used(&mut d);
        assert_eq!(used.len(), 32, "call {call}");
        assert_eq!(e.more, call < 7, "call {call}: more");
        assert_eq!(t.stats().requests, 32 * (call as u64 + 1));
        completed.extend(used);
    }
    assert!(!t.has_kicks());
    assert_eq!(t.process_kicks(&mut d.mem), MmioEffect::default());
    let ids: Vec<u32> = completed.iter().map(|u| u.0).collect();
    assert_eq!(ids, heads, "completions in submission order");
    assert!(completed.iter().all(|u| u.1 == 1), "status byte only");
    assert!(statuses.iter().all(|&s| d.read(s, 1)[0] == blk_status::OK));
    for i in 0..256u64 {
        let mut got = [0u8; 512];
        t.device_mut()
            .backend_mut()
            .read_at(i * 512, &mut got)
            .unwrap();
        assert_eq!(got, [i as u8; 512], "sector {i}");
    }
    // The device asked for no notifications while it had work queued, and for the next
    // request once it caught up (virtio 1.2 §2.7.10).
    assert_eq!(d.avail_event(0), 256);
    assert_eq!(t.stats().notifications, 1);
}

/// The same through synchronous notifications: the notify itself does 32 requests and
/// reports `more`; the rest follows in process_kicks.
#[test]
fn synchronous_notify_is_bounded_too() {
    let mut t = MmioTransport::new(BlockDevice::new(RamDisk::new(1 << 20)));
    let mut d = Driver::new(1 << 20);
    d.setup(&mut t, ALL_FEATURES, 256).unwrap();
    for i in 0..100u64 {
        let r = d.alloc(512, 16);
        let (bufs, _) = d.blk_request(T::IN, i, &[Buf::w(r, 512)]);
        d.add_indirect(0, &bufs);
    }
    let e = d.kick(&mut t, 0);
    assert!(e.interrupt && e.more);
    assert!(t.has_kicks());
    assert_eq!(drain_used(&mut d).len(), 32);
    let counts: Vec<usize> = (0..3)
        .map(|_| {
            t.process_kicks(&mut d.mem);
            drain_used(&mut d).len()
        })
        .collect();
    assert_eq!(counts, [32, 32, 4]);
    assert!(!t.has_kicks());
}

/// One 16 MiB read (a driver that did not negotiate SIZE_MAX/SEG_MAX may send it): each
/// call moves exactly 1 MiB; the request completes after 16 calls with the right data and
/// length, and a request queued behind it completes in the call after.
#[test]
fn a_16_mib_request_is_split_across_calls() {
    const SIZE: usize = 16 << 20;
    let image = pattern(SIZE, 11);
    let features = ALL_FEATURES & !(feature::BLK_SEG_MAX | feature::BLK_SIZE_MAX);
    let (mut d, mut t) = blk_mem(
        RamDisk::from_image(image.clone()),
        BlockConfig::default(),
        features,
        SIZE + (1 << 20),
    );
    let r = d.alloc(SIZE as u64, 16);
    let (bufs, st) = d.blk_request(T::IN, 0, &[Buf::w(r, SIZE as u32)]);
    let big = d.add_chain(0, &bufs);
    let small_data = d.alloc_data(&[0x42; 512]);
    let (bufs, small_st) = d.blk_request(T::OUT, 8, &[Buf::r(small_data, 512)]);
    let small = d.add_chain(0, &bufs);
    let e = d.kick(&mut t, 0);
    assert!(e.more && !e.interrupt);
    assert_eq!(t.stats().bytes_written, MAX_BYTES_PER_CALL);
    assert!(t.device().request_in_flight());
    assert_eq!(d.pop_used(0), None);
    for call in 1..16u64 {
        let e = t.process_kicks(&mut d.mem);
        assert_eq!(t.stats().bytes_written, (call + 1) * MAX_BYTES_PER_CALL);
        if call < 15 {
            assert!(e.more && !e.interrupt, "call {call}");
            assert_eq!(d.pop_used(0), None, "call {call}: not complete yet");
        }
    }
    assert_eq!(d.pop_used(0), Some((u32::from(big), SIZE as u32 + 1)));
    assert_eq!(d.read(st, 1)[0], blk_status::OK);
    assert!(d.read(r, SIZE) == image, "data read back differs");
    // The read used the whole byte bound of its last call: the small write behind it comes
    // in the next one.
    assert_eq!(d.pop_used(0), None);
    assert!(t.has_kicks());
    let e = t.process_kicks(&mut d.mem);
    assert!(!e.more);
    assert_eq!(d.pop_used(0), Some((u32::from(small), 1)));
    assert_eq!(d.read(small_st, 1)[0], blk_status::OK);
    assert!(!t.has_kicks() && !t.device().request_in_flight());
}

/// WRITE_ZEROES of 16 MiB on an owned disk zeroes in place, 1 MiB per call.
#[test]
fn write_zeroes_on_an_owned_disk_is_bounded() {
    const SIZE: usize = 16 << 20;
    let (mut d, mut t) = blk_with(
        RamDisk::from_image(vec![0xff; SIZE]),
        BlockConfig::default(),
        ALL_FEATURES,
    );
    let mut seg = [0u8; 16];
    seg[8..12].copy_from_slice(&((SIZE / 512) as u32).to_le_bytes());
    let s = d.alloc_data(&seg);
    let (bufs, st) = d.blk_request(T::WRITE_ZEROES, 0, &[Buf::r(s, 16)]);
    d.add_chain(0, &bufs);
    d.kick(&mut t, 0);
    let mut calls = 1;
    while t.has_kicks() {
        let mut probe = [0u8; 1];
        let zeroed = calls * MAX_BYTES_PER_CALL as usize;
        t.device_mut()
            .backend_mut()
            .read_at(zeroed as u64, &mut probe)
            .unwrap();
        assert_eq!(
            probe,
            [0xff],
            "after {calls} calls, byte {zeroed:#x} not zeroed yet"
        );
        t.process_kicks(&mut d.mem);
        calls += 1;
    }
    assert_eq!(calls, 16);
    assert_eq!(d.read(st, 1)[0], blk_status::OK);
    let mut all = vec![1u8; SIZE];
    t.device_mut().backend_mut().read_at(0, &mut all).unwrap();
    assert!(all.iter().all(|&b| b == 0));
}

/// A reset while a request is in flight forgets it; the device works normally afterwards.
#[test]
fn reset_drops_a_request_in_flight() {
    let features = ALL_FEATURES & !(feature::BLK_SEG_MAX | feature::BLK_SIZE_MAX);
    let (mut d, mut t) = blk_mem(
        RamDisk::new(4 << 20),
        BlockConfig::default(),
        features,
        5 << 20,
    );
    let r = d.alloc(4 << 20, 16);
    let (bufs, _) = d.blk_request(T::IN, 0, &[Buf::w(r, 4 << 20)]);
    d.add_chain(0, &bufs);
    assert!(d.kick(&mut t, 0).more);
    assert!(t.device().request_in_flight());
    // Linux' virtio_mmio reset, then a fresh setup.
    d.mmio_write(&mut t, crate::spec::Register::Status, 0);
    assert!(!t.has_kicks() && !t.device().request_in_flight());
    d.setup(&mut t, features, 64).unwrap();
    let small = d.alloc(512, 16);
    let (bufs, st) = d.blk_request(T::IN, 0, &[Buf::w(small, 512)]);
    let head = d.add_chain(0, &bufs);
    let e = d.kick(&mut t, 0);
    assert!(e.interrupt && !e.more);
    assert_eq!(d.pop_used(0), Some((u32::from(head), 513)));
    assert_eq!(d.read(st, 1)[0], blk_status::OK);
}

/// Found by the fuzz target: a queue error while work is pending leaves nothing pending
/// (the device needs a reset), so `more` and `has_kicks` agree.
#[test]
fn a_broken_ring_leaves_no_pending_work() {
    let mut t = MmioTransport::new(BlockDevice::new(RamDisk::new(1 << 16)));
    t.set_deferred_notify(true);
    let mut d = Driver::new(1 << 20);
    d.setup(&mut t, ALL_FEATURES, 64).unwrap();
    let r = d.alloc(512, 16);
    let (bufs, _) = d.blk_request(T::IN, 0, &[Buf::w(r, 512)]);
    d.add_chain(0, &bufs);
    assert!(d.kick(&mut t, 0).more);
    // virtio 1.2 §2.7.6: the available index may not run more than the queue size ahead.
    d.set_avail_idx(0, 1000);
    let e = t.process_kicks(&mut d.mem);
    assert!(
        e.interrupt,
        "configuration change interrupt for DEVICE_NEEDS_RESET"
    );
    assert!(!e.more && !t.has_kicks());
    assert_eq!(
        t.error().map(|e| e.to_string()),
        Some("virtqueue 0: available index jumped from 0 to 1000, more than the queue size".into())
    );
}
