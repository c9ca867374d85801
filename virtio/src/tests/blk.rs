//! virtio-blk end-to-end tests (virtio 1.2 §5.2).

use super::*;
use crate::blk::BlockBackend;
use crate::spec::{blk_status, interrupt, ring, BlkRequestType as T, Register};
use crate::testing::Buf;
use crate::GuestMemory as _;

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Submits one request, kicks, returns (status, used len, interrupt).
fn run(d: &mut Driver, t: &mut Blk, ty: u32, sector: u64, data: &[Buf]) -> (u8, u32, bool) {
    let (bufs, st) = d.blk_request(ty, sector, data);
    let head = d.add_chain(0, &bufs);
    let e = d.kick(t, 0);
    let (id, len) = d.pop_used(0).expect("completion");
    assert_eq!(id, u32::from(head));
    (d.read(st, 1)[0], len, e.interrupt)
}

#[test]
fn write_then_read_multi_segment() {
    let (mut d, mut t) = blk();
    let data = pattern(2048, 7);
    let a = d.alloc_data(&data[..512]);
    let b = d.alloc_data(&data[512..1536]);
    let c = d.alloc_data(&data[1536..]);
    let (s, len, irq) = run(
        &mut d,
        &mut t,
        T::OUT,
        10,
        &[Buf::r(a, 512), Buf::r(b, 1024), Buf::r(c, 512)],
    );
    assert_eq!((s, len, irq), (blk_status::OK, 1, true));

    let x = d.alloc(1536, 16);
    let y = d.alloc(512, 16);
    let (s, len, _) = run(
        &mut d,
        &mut t,
        T::IN,
        10,
        &[Buf::w(x, 1536), Buf::w(y, 512)],
    );
    assert_eq!((s, len), (blk_status::OK, 2049));
    let mut got = d.read(x, 1536);
    got.extend(d.read(y, 512));
    assert_eq!(got, data);
    let mut disk = [0u8; 2048];
    t.device_mut()
        .backend_mut()
        .read_at(10 * 512, &mut disk)
        .unwrap();
    assert_eq!(&disk[..], &data[..]);
    let st = t.stats();
    assert_eq!(st.requests, 2);
    assert_eq!(st.bytes_read, 2048);
    assert_eq!(st.bytes_written, 2048);
    assert_eq!(st.errors, 0);
}

#[test]
fn flush_and_get_id() {
    let (mut d, mut t) = blk();
    let (s, len, _) = run(&mut d, &mut t, T::FLUSH, 0, &[]);
    assert_eq!((s, len), (blk_status::OK, 1));
    assert_eq!(t.device().backend().flushes(), 1);
    let id = d.alloc(20, 16);
    let (s, len, _) = run(&mut d, &mut t, T::GET_ID, 0, &[Buf::w(id, 20)]);
    assert_eq!((s, len), (blk_status::OK, 21));
    assert_eq!(&d.read(id, 13)[..], b"bulkhead-disk");
}

#[test]
fn read_only_refuses_writes() {
    let (mut d, mut t) = blk_with(
        RamDisk::from_image(vec![0xaa; 4096]).read_only(true),
        BlockConfig::default(),
        ALL_FEATURES,
    );
    assert_ne!(d.features & feature::BLK_RO, 0);
    assert_eq!(d.features & feature::BLK_WRITE_ZEROES, 0);
    let a = d.alloc_data(&[1; 512]);
    let (s, len, _) = run(&mut d, &mut t, T::OUT, 0, &[Buf::r(a, 512)]);
    assert_eq!((s, len), (blk_status::IOERR, 1));
    // Reads still work, data unchanged.
    let r = d.alloc(512, 16);
    let (s, _, _) = run(&mut d, &mut t, T::IN, 0, &[Buf::w(r, 512)]);
    assert_eq!(s, blk_status::OK);
    assert_eq!(d.read(r, 512), vec![0xaa; 512]);
    assert_eq!(t.stats().errors, 1);
}

#[test]
fn seg_max_and_size_max_violations() {
    let cfg = BlockConfig {
        seg_max: 2,
        size_max: 1024,
        ..BlockConfig::default()
    };
    let (mut d, mut t) = blk_with(RamDisk::new(1 << 20), cfg, ALL_FEATURES);
    // Config space reports the limits (virtio 1.2 §5.2.4).
    assert_eq!(t.read(0x100 + 8, 4), 1024);
    assert_eq!(t.read(0x100 + 12, 4), 2);
    let bufs: Vec<Buf> = (0..3).map(|_| Buf::w(d.alloc(512, 16), 512)).collect();
    let (s, _, _) = run(&mut d, &mut t, T::IN, 0, &bufs);
    assert_eq!(s, blk_status::IOERR, "3 data segments > seg_max 2");
    let (s, _, _) = run(&mut d, &mut t, T::IN, 0, &bufs[..2]);
    assert_eq!(s, blk_status::OK);
    let big = d.alloc(2048, 16);
    let (s, _, _) = run(&mut d, &mut t, T::IN, 0, &[Buf::w(big, 2048)]);
    assert_eq!(s, blk_status::IOERR, "segment 2048 > size_max 1024");
}

/// Found by the virtio-drivers guest: a driver that did not negotiate SEG_MAX/SIZE_MAX is not
/// bound by them (virtio 1.2 §5.2.3).
#[test]
fn limits_apply_only_when_negotiated() {
    let cfg = BlockConfig {
        seg_max: 2,
        size_max: 1024,
        ..BlockConfig::default()
    };
    let without = ALL_FEATURES & !(feature::BLK_SEG_MAX | feature::BLK_SIZE_MAX);
    let (mut d, mut t) = blk_with(RamDisk::new(1 << 20), cfg, without);
    let big = d.alloc(4096, 16);
    let (s, _, _) = run(&mut d, &mut t, T::IN, 0, &[Buf::w(big, 4096)]);
    assert_eq!(
        s,
        blk_status::OK,
        "a 4 KiB segment with size_max 1024 not negotiated"
    );
    let bufs: Vec<Buf> = (0..4).map(|_| Buf::w(d.alloc(512, 16), 512)).collect();
    let (s, _, _) = run(&mut d, &mut t, T::IN, 0, &bufs);
    assert_eq!(
        s,
        blk_status::OK,
        "4 data segments with seg_max 2 not negotiated"
    );
}

#[test]
fn out_of_range_sectors_fail() {
    let (mut d, mut t) = blk();
    let cap = t.read(0x100, 8);
    assert_eq!(cap, (1 << 20) / 512);
    let r = d.alloc(1024, 16);
    let (s, _, _) = run(&mut d, &mut t, T::IN, cap, &[Buf::w(r, 512)]);
    assert_eq!(s, blk_status::IOERR);
    let (s, _, _) = run(&mut d, &mut t, T::IN, cap - 1, &[Buf::w(r, 1024)]);
    assert_eq!(s, blk_status::IOERR);
    let (s, _, _) = run(&mut d, &mut t, T::OUT, u64::MAX, &[Buf::r(r, 512)]);
    assert_eq!(s, blk_status::IOERR);
    let (s, _, _) = run(&mut d, &mut t, T::IN, cap - 1, &[Buf::w(r, 512)]);
    assert_eq!(s, blk_status::OK);
    // Not a multiple of 512.
    let (s, _, _) = run(&mut d, &mut t, T::IN, 0, &[Buf::w(r, 100)]);
    assert_eq!(s, blk_status::IOERR);
    // Header too short, unknown type.
    let (s, _, _) = run(&mut d, &mut t, 99, 0, &[]);
    assert_eq!(s, blk_status::UNSUPP);
    assert_eq!(t.stats().errors, 5);
}

#[test]
fn missing_status_byte_and_short_header() {
    let (mut d, mut t) = blk();
    let h = d.alloc_data(&[0; 16]);
    let head = d.add_chain(0, &[Buf::r(h, 16)]);
    d.kick(&mut t, 0);
    assert_eq!(d.pop_used(0), Some((u32::from(head), 0)));
    let h = d.alloc_data(&[0; 8]);
    let st = d.alloc(1, 1);
    d.add_chain(0, &[Buf::r(h, 8), Buf::w(st, 1)]);
    d.kick(&mut t, 0);
    assert_eq!(d.pop_used(0).map(|u| u.1), Some(1));
    assert_eq!(d.read(st, 1)[0], blk_status::IOERR);
    assert!(t.error().is_none());
}

#[test]
fn write_zeroes_and_discard() {
    let (mut d, mut t) = blk_with(
        RamDisk::from_image(vec![0xff; 1 << 16]),
        BlockConfig::default(),
        ALL_FEATURES,
    );
    let mut seg = [0u8; 16];
    seg[..8].copy_from_slice(&2u64.to_le_bytes());
    seg[8..12].copy_from_slice(&3u32.to_le_bytes());
    let s_addr = d.alloc_data(&seg);
    let (s, _, _) = run(&mut d, &mut t, T::WRITE_ZEROES, 0, &[Buf::r(s_addr, 16)]);
    assert_eq!(s, blk_status::OK);
    let mut disk = vec![0u8; 6 * 512];
    t.device_mut().backend_mut().read_at(0, &mut disk).unwrap();
    assert!(disk[..1024].iter().all(|&b| b == 0xff));
    assert!(disk[1024..2560].iter().all(|&b| b == 0));
    assert!(disk[2560..].iter().all(|&b| b == 0xff));
    // DISCARD with the unmap flag is UNSUPP (virtio 1.2 §5.2.6.2).
    seg[12] = 1;
    let s_addr = d.alloc_data(&seg);
    let (s, _, _) = run(&mut d, &mut t, T::DISCARD, 0, &[Buf::r(s_addr, 16)]);
    assert_eq!(s, blk_status::UNSUPP);
    seg[12] = 0;
    seg[..8].copy_from_slice(&200u64.to_le_bytes());
    let s_addr = d.alloc_data(&seg);
    let (s, _, _) = run(&mut d, &mut t, T::DISCARD, 0, &[Buf::r(s_addr, 16)]);
    assert_eq!(s, blk_status::IOERR, "out of range");
}

#[test]
fn copy_on_write_static_image() {
    static IMAGE: [u8; 8192] = [0x5a; 8192];
    let (mut d, mut t) = blk_with(
        RamDisk::from_static(&IMAGE),
        BlockConfig::default(),
        ALL_FEATURES,
    );
    let a = d.alloc_data(&[1; 1024]);
    let (s, _, _) = run(&mut d, &mut t, T::OUT, 7, &[Buf::r(a, 1024)]);
    assert_eq!(s, blk_status::OK);
    let r = d.alloc(2048, 16);
    let (s, _, _) = run(&mut d, &mut t, T::IN, 6, &[Buf::w(r, 2048)]);
    assert_eq!(s, blk_status::OK);
    let got = d.read(r, 2048);
    assert!(got[..512].iter().all(|&b| b == 0x5a));
    assert!(got[512..1536].iter().all(|&b| b == 1));
    assert!(got[1536..].iter().all(|&b| b == 0x5a));
    assert!(IMAGE.iter().all(|&b| b == 0x5a));
}

#[test]
fn indirect_descriptors() {
    let (mut d, mut t) = blk();
    assert_ne!(d.features & feature::RING_INDIRECT_DESC, 0);
    let data = pattern(1024, 3);
    let a = d.alloc_data(&data);
    let (bufs, st) = d.blk_request(T::OUT, 4, &[Buf::r(a, 1024)]);
    let head = d.add_indirect(0, &bufs);
    d.kick(&mut t, 0);
    assert_eq!(d.pop_used(0), Some((u32::from(head), 1)));
    assert_eq!(d.read(st, 1)[0], blk_status::OK);
    let r = d.alloc(1024, 16);
    let (bufs, st) = d.blk_request(T::IN, 4, &[Buf::w(r, 512), Buf::w(r + 512, 512)]);
    d.add_indirect(0, &bufs);
    d.kick(&mut t, 0);
    assert_eq!(d.pop_used(0).map(|u| u.1), Some(1025));
    assert_eq!(d.read(st, 1)[0], blk_status::OK);
    assert_eq!(d.read(r, 1024), data);
}

#[test]
fn batching_32_requests_one_notify() {
    // 32 requests of 3 descriptors need 96 descriptors: use 128-entry queues.
    let mut t = MmioTransport::new(BlockDevice::new(RamDisk::new(1 << 20)));
    let mut d = Driver::new(1 << 20);
    d.setup(&mut t, ALL_FEATURES, 128).unwrap();
    let mut statuses = Vec::new();
    for i in 0..32u64 {
        let a = d.alloc_data(&[i as u8; 512]);
        let (bufs, st) = d.blk_request(T::OUT, i, &[Buf::r(a, 512)]);
        d.add_chain(0, &bufs);
        statuses.push(st);
    }
    let e = d.kick(&mut t, 0);
    assert!(e.interrupt);
    let mut n = 0;
    while d.pop_used(0).is_some() {
        n += 1;
    }
    assert_eq!(n, 32);
    assert!(statuses.iter().all(|&s| d.read(s, 1)[0] == blk_status::OK));
    let st = t.stats();
    assert_eq!(st.notifications, 1);
    assert_eq!(st.interrupts, 1);
    assert_eq!(st.requests, 32);
    assert_eq!(d.ack_interrupt(&mut t), interrupt::USED_BUFFER);
    assert_eq!(t.interrupt_status(), 0);
    // EVENT_IDX: the device asks to be notified at the next avail index (§2.7.10).
    assert_eq!(d.avail_event(0), 32);
}

/// Deferred notifications (an asynchronous backend): a driver that adds 32 requests one at a
/// time and notifies whenever EVENT_IDX says so (virtio 1.2 §2.7.10, vring_need_event) kicks
/// once; the device then completes all 32 with one interrupt.
#[test]
fn deferred_notify_batches_a_driver_that_kicks_per_request() {
    let mut t = MmioTransport::new(BlockDevice::new(RamDisk::new(1 << 20)));
    t.set_deferred_notify(true);
    let mut d = Driver::new(1 << 20);
    d.setup(&mut t, ALL_FEATURES, 128).unwrap();
    let mut kicks = 0;
    for i in 0..32u64 {
        let a = d.alloc_data(&[i as u8; 512]);
        let (bufs, _) = d.blk_request(T::OUT, i, &[Buf::r(a, 512)]);
        let old = d.avail_idx(0);
        d.add_chain(0, &bufs);
        let new = d.avail_idx(0);
        let event = d.avail_event(0);
        // vring_need_event(event, new, old)
        if new.wrapping_sub(event).wrapping_sub(1) < new.wrapping_sub(old) {
            assert!(
                !d.kick(&mut t, 0).interrupt,
                "deferred: nothing completes at the kick"
            );
            kicks += 1;
        }
    }
    assert_eq!(kicks, 1, "one notification for the whole batch");
    assert!(t.has_kicks());
    assert!(
        d.pop_used(0).is_none(),
        "nothing completed before processing"
    );
    assert!(t.process_kicks(&mut d.mem).interrupt);
    assert!(!t.has_kicks());
    let mut n = 0;
    while d.pop_used(0).is_some() {
        n += 1;
    }
    assert_eq!(n, 32);
    let st = t.stats();
    assert_eq!((st.notifications, st.requests, st.interrupts), (1, 32, 1));
    // Caught up: the device asks to be notified at the next request again.
    assert_eq!(d.avail_event(0), 32);
}

/// The same without EVENT_IDX: the device sets VIRTQ_USED_F_NO_NOTIFY while it has work
/// queued, and clears it once it has caught up (virtio 1.2 §2.7.10).
#[test]
fn deferred_notify_without_event_idx_uses_no_notify() {
    let mut t = MmioTransport::new(BlockDevice::new(RamDisk::new(1 << 20)));
    t.set_deferred_notify(true);
    let mut d = Driver::new(1 << 20);
    d.setup(&mut t, ALL_FEATURES & !feature::RING_EVENT_IDX, 128)
        .unwrap();
    let used_flags = |d: &Driver| d.mem.read_u16(d.queues[0].used).unwrap();
    let mut kicks = 0;
    for i in 0..8u64 {
        let a = d.alloc_data(&[i as u8; 512]);
        let (bufs, _) = d.blk_request(T::OUT, i, &[Buf::r(a, 512)]);
        d.add_chain(0, &bufs);
        if used_flags(&d) & ring::USED_F_NO_NOTIFY == 0 {
            d.kick(&mut t, 0);
            kicks += 1;
        }
    }
    assert_eq!(kicks, 1);
    assert!(t.process_kicks(&mut d.mem).interrupt);
    assert_eq!(
        used_flags(&d) & ring::USED_F_NO_NOTIFY,
        0,
        "notifications re-enabled"
    );
    let mut n = 0;
    while d.pop_used(0).is_some() {
        n += 1;
    }
    assert_eq!(n, 8);
}

#[test]
fn event_idx_suppresses_interrupts() {
    let (mut d, mut t) = blk();
    assert_ne!(d.features & feature::RING_EVENT_IDX, 0);
    // used_event = 5: the driver wants an interrupt only once used idx passes 5.
    d.set_used_event(0, 5);
    let r = d.alloc(512, 16);
    for i in 0..5 {
        let (_, _, irq) = run(&mut d, &mut t, T::IN, i, &[Buf::w(r, 512)]);
        assert!(!irq, "request {i} must not interrupt");
    }
    assert_eq!(t.stats().interrupts, 0);
    assert_eq!(t.interrupt_status(), 0);
    // The 6th completion moves used idx from 5 to 6, crossing used_event (§2.7.7.2).
    let (_, _, irq) = run(&mut d, &mut t, T::IN, 0, &[Buf::w(r, 512)]);
    assert!(irq);
    assert_eq!(t.stats().interrupts, 1);
}

#[test]
fn no_interrupt_flag_without_event_idx() {
    let (mut d, mut t) = blk_with(
        RamDisk::new(1 << 16),
        BlockConfig::default(),
        ALL_FEATURES & !feature::RING_EVENT_IDX,
    );
    d.set_avail_flags(0, crate::spec::ring::AVAIL_F_NO_INTERRUPT);
    let r = d.alloc(512, 16);
    let (s, _, irq) = run(&mut d, &mut t, T::IN, 0, &[Buf::w(r, 512)]);
    assert_eq!((s, irq), (blk_status::OK, false));
    d.set_avail_flags(0, 0);
    let (_, _, irq) = run(&mut d, &mut t, T::IN, 0, &[Buf::w(r, 512)]);
    assert!(irq);
    // avail_event is not written without EVENT_IDX.
    assert_eq!(d.avail_event(0), 0);
}

#[test]
fn config_space_and_ids() {
    let (mut d, mut t) = blk();
    assert_eq!(d.mmio_read(&mut t, Register::DeviceId), 2);
    assert_eq!(t.read(0x100, 4), 2048);
    assert_eq!(t.read(0x104, 4), 0);
    assert_eq!(t.read(0x100, 1), 0);
    assert_eq!(t.read(0x101, 1), 8);
    assert_eq!(t.read(0x100 + 20, 4), 512, "blk_size");
    assert_eq!(t.read(0x1000, 4), 0, "past the config struct reads 0");
    assert_eq!(t.stats().bad_accesses, 0);
    assert_eq!(t.read(0x101, 2), 0, "misaligned config read");
    assert_eq!(t.stats().bad_accesses, 1);
}
