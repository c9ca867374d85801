//! Snapshot state (issue 18, [`crate::state`]): a device driven through init and requests is
//! saved, loaded into a fresh transport of the same configuration over the same guest RAM,
//! and driven on. Work in flight is in [`super::state_in_flight`], refused states in
//! [`super::state_refusals`] and [`super::state_refusals_device`].

use std::borrow::Cow;

use super::*;
use crate::blk::BlockBackend;
use crate::console::{ByteRing, ConsoleDevice, INPUT_CAPACITY, RECEIVEQ, TRANSMITQ};
use crate::memory::VecMemory;
use crate::mmio::VirtioDevice;
use crate::net::{NetDevice, NET_HDR_LEN, RX_QUEUE, TX_QUEUE};
use crate::ramdisk::{OVERLAY_BLOCK, OVERLAY_BLOCK_COST, ZERO_RANGE_COST};
use crate::spec::{blk_status, interrupt, net_status, status, BlkRequestType as T, Register};
use crate::state::{ConsoleState, DeviceState, DiskContents, NetState, ZeroRange};
use crate::switch::NetPort;
use crate::testing::Buf;

pub(super) type Console = MmioTransport<ConsoleDevice<ByteRing>>;
pub(super) type Net = MmioTransport<NetDevice>;

pub(super) const MAC: [u8; 6] = [0x52, 0x54, 0, 0, 0, 0x0a];

pub(super) fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(29).wrapping_add(seed) ^ (i >> 9) as u8)
        .collect()
}

/// A leaked image (`&'static`, like an archive entry) for copy-on-write disks.
pub(super) fn image(len: usize, seed: u8) -> &'static [u8] {
    Box::leak(pattern(len, seed).into_boxed_slice())
}

/// Saves `t`, checks the owned copy equals the borrowed state, loads it into `fresh` (a
/// transport of the same configuration) checked against `mem` (the guest RAM at the
/// snapshot), and checks that the restored transport saves the very same state.
pub(super) fn restore<D: VirtioDevice>(
    t: &MmioTransport<D>,
    mut fresh: MmioTransport<D>,
    mem: &VecMemory,
) -> MmioTransport<D> {
    let s = t.save_state();
    assert_eq!(s.clone().into_owned(), s);
    fresh
        .load_state_checked(&s, mem)
        .expect("load_state_checked");
    assert_eq!(
        fresh.save_state(),
        s,
        "the restored transport saves the same state"
    );
    fresh
}

/// Runs the transport until it has no work left.
pub(super) fn settle<D: VirtioDevice>(d: &mut Driver, t: &mut MmioTransport<D>) {
    for _ in 0..64 {
        if !t.has_kicks() {
            return;
        }
        t.process_kicks(&mut d.mem);
    }
    panic!("the device does not settle");
}

/// One blk request through queue 0: (status byte, used length).
pub(super) fn blk_op<B: BlockBackend>(
    d: &mut Driver,
    t: &mut MmioTransport<BlockDevice<B>>,
    ty: u32,
    sector: u64,
    data: &[Buf],
) -> (u8, u32) {
    let (bufs, st) = d.blk_request(ty, sector, data);
    let head = d.add_chain(0, &bufs);
    d.kick(t, 0);
    settle(d, t);
    let (id, len) = d.pop_used(0).expect("completion");
    assert_eq!(id, u32::from(head));
    assert_eq!(d.pop_used(0), None, "one completion per request");
    (d.read(st, 1)[0], len)
}

pub(super) fn write<B: BlockBackend>(
    d: &mut Driver,
    t: &mut MmioTransport<BlockDevice<B>>,
    sector: u64,
    data: &[u8],
) {
    let a = d.alloc_data(data);
    let r = blk_op(d, t, T::OUT, sector, &[Buf::r(a, data.len() as u32)]);
    assert_eq!(r, (blk_status::OK, 1), "write at sector {sector}");
}

pub(super) fn read<B: BlockBackend>(
    d: &mut Driver,
    t: &mut MmioTransport<BlockDevice<B>>,
    sector: u64,
    len: usize,
) -> Vec<u8> {
    let a = d.alloc(len as u64, 16);
    let r = blk_op(d, t, T::IN, sector, &[Buf::w(a, len as u32)]);
    assert_eq!(
        r,
        (blk_status::OK, len as u32 + 1),
        "read at sector {sector}"
    );
    d.read(a, len)
}

/// WRITE_ZEROES or DISCARD of `num` sectors at `sector` (virtio 1.2 §5.2.6.2).
pub(super) fn zero<B: BlockBackend>(
    d: &mut Driver,
    t: &mut MmioTransport<BlockDevice<B>>,
    ty: u32,
    sector: u64,
    num: u32,
) {
    let mut seg = [0u8; 16];
    seg[..8].copy_from_slice(&sector.to_le_bytes());
    seg[8..12].copy_from_slice(&num.to_le_bytes());
    let a = d.alloc_data(&seg);
    assert_eq!(blk_op(d, t, ty, 0, &[Buf::r(a, 16)]).0, blk_status::OK);
}

pub(super) fn whole_disk(t: &mut Blk) -> Vec<u8> {
    let backend = t.device_mut().backend_mut();
    let mut v = vec![0u8; backend.len() as usize];
    backend.read_at(0, &mut v).expect("in range");
    v
}

/// Owned RAM disk: writes, WRITE_ZEROES, DISCARD and a flush, the last interrupt not
/// acknowledged. The restored device has the same bytes, status, features and pending
/// interrupt, its used ring continues where the original's stopped, and it serves new
/// requests; the original keeps running unchanged.
#[test]
fn blk_owned_disk_round_trip() {
    const SIZE: usize = 1 << 20;
    let (mut d, mut t) = blk();
    let mut model = vec![0u8; SIZE];
    let a = pattern(8 * 512, 1);
    write(&mut d, &mut t, 8, &a);
    model[8 * 512..16 * 512].copy_from_slice(&a);
    let b = pattern(512, 2);
    write(&mut d, &mut t, 2047, &b);
    model[SIZE - 512..].copy_from_slice(&b);
    zero(&mut d, &mut t, T::WRITE_ZEROES, 10, 2);
    model[10 * 512..12 * 512].fill(0);
    zero(&mut d, &mut t, T::DISCARD, 15, 1);
    model[15 * 512..16 * 512].fill(0);
    assert_eq!(
        blk_op(&mut d, &mut t, T::FLUSH, 0, &[]),
        (blk_status::OK, 1)
    );
    assert_eq!(
        t.interrupt_status(),
        interrupt::USED_BUFFER,
        "not acknowledged"
    );
    let used = d.used_idx(0);
    assert_eq!(used, 5);

    let s = t.save_state();
    assert_eq!(s.status, status::DRIVER_OK | status::FEATURES_OK | 3);
    assert_eq!(s.driver_features, d.features);
    assert_eq!((s.queues[0].next_avail, s.queues[0].next_used), (5, 5));
    assert!(s.queues[0].event_idx && s.queues[0].indirect);
    assert_eq!(s.pending, 0);
    let DeviceState::Blk(b0) = &s.device else {
        panic!("a blk state: {:?}", s.device.kind())
    };
    assert_eq!((b0.disk.len, b0.disk.read_only), (SIZE as u64, false));
    match &b0.disk.contents {
        DiskContents::Owned(Cow::Borrowed(bytes)) => assert!(*bytes == &model[..]),
        other => panic!(
            "borrowed owned contents expected, got {}",
            other.kind_name()
        ),
    }

    let mut d2 = d.clone();
    let fresh = MmioTransport::new(BlockDevice::new(RamDisk::new(SIZE)));
    let mut t2 = restore(&t, fresh, &d2.mem);
    assert_eq!(t2.interrupt_status(), interrupt::USED_BUFFER);
    assert_eq!(t2.status(), t.status());
    assert_eq!(t2.driver_features(), d.features);
    assert!(t2.error().is_none());
    assert!(whole_disk(&mut t2) == model, "restored disk differs");
    assert_eq!(t2.stats(), Default::default(), "statistics are not saved");

    // The restored device continues the rings: reads of what was written before.
    assert_eq!(read(&mut d2, &mut t2, 8, 8 * 512), model[8 * 512..16 * 512]);
    assert_eq!(d2.used_idx(0), used + 1);
    assert_eq!(read(&mut d2, &mut t2, 2047, 512), b);
    let c = pattern(1024, 3);
    write(&mut d2, &mut t2, 100, &c);
    assert_eq!(read(&mut d2, &mut t2, 100, 1024), c);
    assert_eq!(d2.used_idx(0), used + 4);
    assert_eq!(d2.ack_interrupt(&mut t2), interrupt::USED_BUFFER);

    // The original is not disturbed by the save.
    assert_eq!(read(&mut d, &mut t, 8, 8 * 512), model[8 * 512..16 * 512]);
    assert!(whole_disk(&mut t) == model);
}

/// Copy-on-write disk over an image: writes, WRITE_ZEROES and DISCARD leave overlay blocks
/// and zero ranges; the state holds exactly those (borrowed), the restored disk over the same
/// image reads like the original, with the same charge, and takes new writes.
#[test]
fn blk_copy_on_write_round_trip() {
    const SIZE: usize = 64 * 1024;
    let img = image(SIZE, 9);
    let budget = 8 * OVERLAY_BLOCK_COST + 8 * ZERO_RANGE_COST;
    let (mut d, mut t) = blk_with(
        RamDisk::from_static_with_budget(img, budget),
        BlockConfig::default(),
        ALL_FEATURES,
    );
    assert_ne!(d.features & feature::BLK_WRITE_ZEROES, 0);
    assert_ne!(d.features & feature::BLK_DISCARD, 0);
    let mut model = img.to_vec();
    let a = pattern(512, 4);
    write(&mut d, &mut t, 3, &a); // block 0
    model[3 * 512..4 * 512].copy_from_slice(&a);
    let b = pattern(2 * 4096, 5);
    write(&mut d, &mut t, 16, &b); // blocks 2 and 3
    model[16 * 512..32 * 512].copy_from_slice(&b);
    zero(&mut d, &mut t, T::WRITE_ZEROES, 40, 16); // bytes 0x5000..0x7000
    model[40 * 512..56 * 512].fill(0);
    zero(&mut d, &mut t, T::DISCARD, 100, 4); // bytes 0xc800..0xd000
    model[100 * 512..104 * 512].fill(0);
    zero(&mut d, &mut t, T::WRITE_ZEROES, 24, 2); // inside block 3: zeroed in place
    model[24 * 512..26 * 512].fill(0);

    let s = t.save_state();
    let DeviceState::Blk(bs) = &s.device else {
        panic!("a blk state")
    };
    let DiskContents::CopyOnWrite(o) = &bs.disk.contents else {
        panic!("copy-on-write contents expected")
    };
    let indices: Vec<u64> = o.blocks.iter().map(|b| b.index).collect();
    assert_eq!(indices, [0, 2, 3]);
    for blk in &o.blocks {
        assert!(matches!(blk.data, Cow::Borrowed(_)), "blocks are borrowed");
        let at = (blk.index * OVERLAY_BLOCK) as usize;
        assert_eq!(&blk.data[..], &model[at..at + OVERLAY_BLOCK as usize]);
    }
    let ranges = [(0x3000, 0x3400), (0x5000, 0x7000), (0xc800, 0xd000)];
    let want: Vec<ZeroRange> = ranges
        .iter()
        .map(|&(start, end)| ZeroRange { start, end })
        .collect();
    assert_eq!(o.zero_ranges, want);
    let owned = s.clone().into_owned();
    assert_eq!(owned, s);
    let DeviceState::Blk(ob) = &owned.device else {
        panic!("a blk state")
    };
    let DiskContents::CopyOnWrite(oo) = &ob.disk.contents else {
        panic!("copy-on-write contents expected")
    };
    assert!(oo.blocks.iter().all(|b| matches!(b.data, Cow::Owned(_))));
    drop(s);

    let charged = t.device().backend().overlay_charged();
    assert_eq!(charged, 3 * OVERLAY_BLOCK_COST + 3 * ZERO_RANGE_COST);
    let mut d2 = d.clone();
    let fresh = MmioTransport::new(BlockDevice::new(RamDisk::from_static_with_budget(
        img, budget,
    )));
    let mut t2 = restore(&t, fresh, &d2.mem);
    let disk = t2.device().backend();
    assert_eq!((disk.overlay_blocks(), disk.zero_ranges()), (3, 3));
    assert_eq!(disk.overlay_charged(), charged, "the charge is recomputed");
    assert!(whole_disk(&mut t2) == model, "restored disk differs");
    assert!(img == pattern(SIZE, 9), "the image is never written");

    // Through the restored rings: read back, then write inside a zero range.
    assert_eq!(read(&mut d2, &mut t2, 0, 16 * 4096), model[..16 * 4096]);
    let c = pattern(512, 6);
    write(&mut d2, &mut t2, 44, &c);
    model[44 * 512..45 * 512].copy_from_slice(&c);
    assert_eq!(
        read(&mut d2, &mut t2, 40, 16 * 512),
        model[40 * 512..56 * 512]
    );
    assert!(whole_disk(&mut t2) == model);
    assert_eq!(t2.device().backend().overlay_blocks(), 4);
}

/// A backend that keeps its data itself (like a drive): its contents are external.
#[derive(Debug)]
pub(super) struct Drive(pub(super) Vec<u8>);
impl BlockBackend for Drive {
    fn len(&self) -> u64 {
        self.0.len() as u64
    }
    fn read_only(&self) -> bool {
        false
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), crate::BackendError> {
        let at = offset as usize;
        buf.copy_from_slice(&self.0[at..at + buf.len()]);
        Ok(())
    }
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), crate::BackendError> {
        let at = offset as usize;
        self.0[at..at + data.len()].copy_from_slice(data);
        Ok(())
    }
    fn flush(&mut self) -> Result<(), crate::BackendError> {
        Ok(())
    }
}
/// A backend that keeps its data itself (a drive): nothing of the disk is saved, and the
/// restored device serves the target backend's own data.
#[test]
fn blk_external_backend_saves_no_contents() {
    let mut t = MmioTransport::new(BlockDevice::new(Drive(vec![0; 8192])));
    let mut d = Driver::new(1 << 20);
    d.setup(&mut t, ALL_FEATURES, 64).unwrap();
    write(&mut d, &mut t, 1, &[7; 512]);
    let s = t.save_state();
    let DeviceState::Blk(b) = &s.device else {
        panic!("a blk state")
    };
    assert_eq!(b.disk.contents, DiskContents::External);
    let mut d2 = d.clone();
    let mut t2 = restore(
        &t,
        MmioTransport::new(BlockDevice::new(Drive(vec![0x33; 8192]))),
        &d2.mem,
    );
    assert_eq!(read(&mut d2, &mut t2, 1, 512), [0x33; 512]);
}

/// virtio-net: the link status, ConfigGeneration and the unacknowledged configuration
/// change interrupt survive; posted RX buffers stay posted; frames waiting in the backlog
/// are dropped; RX, TX and link changes work on the restored device.
#[test]
fn net_round_trip_keeps_link_state() {
    let frame = |n: u8| {
        let mut f = vec![n; 60];
        f[..6].copy_from_slice(&MAC);
        f
    };
    let mut t: Net = MmioTransport::new(NetDevice::new(MAC));
    let mut d = Driver::new(1 << 20);
    d.setup(&mut t, ALL_FEATURES, 64).unwrap();
    let rx = d.net_rx_buffers(RX_QUEUE, 3, 1526);
    d.kick(&mut t, RX_QUEUE);
    assert!(t.device_mut().deliver(&frame(1)));
    assert!(t.poll(&mut d.mem).interrupt);
    assert_eq!(d.pop_used(RX_QUEUE), Some((u32::from(rx[0].0), 72)));
    d.set_used_event(RX_QUEUE, 1);
    d.net_tx(TX_QUEUE, &frame(2));
    d.kick(&mut t, TX_QUEUE);
    assert!(d.pop_used(TX_QUEUE).is_some());
    assert_eq!(d.ack_interrupt(&mut t), interrupt::USED_BUFFER);
    let gen = d.mmio_read(&mut t, Register::ConfigGeneration);
    t.device_mut().set_link_up(false);
    assert!(t.poll(&mut d.mem).interrupt);
    assert_eq!(t.interrupt_status(), interrupt::CONFIG_CHANGE);
    // A frame for the guest and the one the guest sent (no switch took it), waiting: not
    // saved. What the guest sends while the link is down is dropped.
    assert!(t.device_mut().rx_ring_mut().push(&frame(3)));
    d.net_tx(TX_QUEUE, &frame(4));
    d.kick(&mut t, TX_QUEUE);
    assert_eq!((t.device().rx_backlog(), t.device().tx_backlog()), (1, 1));

    let s = t.save_state();
    assert_eq!(s.device, DeviceState::Net(NetState { link_up: false }));
    assert_eq!(s.config_generation, gen + 1);
    assert!(!s.config_change_pending);
    let mut d2 = d.clone();
    let mut t2 = restore(&t, MmioTransport::new(NetDevice::new(MAC)), &d2.mem);
    assert!(!t2.device().link_up());
    assert_eq!(t2.read(0x106, 2), 0, "config status: link down");
    assert_eq!(d2.mmio_read(&mut t2, Register::ConfigGeneration), gen + 1);
    assert_eq!(t2.interrupt_status(), interrupt::CONFIG_CHANGE);
    assert_eq!((t2.device().rx_backlog(), t2.device().tx_backlog()), (0, 0));
    assert!(!t2.poll(&mut d2.mem).interrupt, "nothing new to signal");

    // Link up again: a configuration change on the restored device (virtio 1.2 §5.1.4.2).
    t2.device_mut().set_link_up(true);
    assert!(t2.poll(&mut d2.mem).interrupt);
    assert_eq!(t2.read(0x106, 2) as u16, net_status::LINK_UP);
    assert_eq!(d2.mmio_read(&mut t2, Register::ConfigGeneration), gen + 2);
    // RX fills the next buffer posted before the snapshot; TX continues its ring.
    assert!(t2.device_mut().deliver(&frame(5)));
    assert!(t2.poll(&mut d2.mem).interrupt);
    assert_eq!(d2.pop_used(RX_QUEUE), Some((u32::from(rx[1].0), 72)));
    assert_eq!(d2.read(rx[1].1 + NET_HDR_LEN as u64, 60), frame(5));
    let before = d2.used_idx(TX_QUEUE);
    d2.net_tx(TX_QUEUE, &frame(6));
    d2.kick(&mut t2, TX_QUEUE);
    assert_eq!(d2.used_idx(TX_QUEUE), before + 1);
    let mut buf = [0u8; crate::frames::MAX_FRAME];
    let n = t2.device_mut().take_frame(&mut buf).expect("a frame");
    assert_eq!(&buf[..n], &frame(6)[..]);
}

/// A link change the transport has not folded into ConfigGeneration yet is saved as
/// pending and signalled by the restored transport at its next poll.
#[test]
fn net_unsignalled_config_change_is_signalled_after_load() {
    let mut t: Net = MmioTransport::new(NetDevice::new(MAC));
    let mut d = Driver::new(1 << 20);
    d.setup(&mut t, ALL_FEATURES, 64).unwrap();
    t.device_mut().set_link_up(false);
    let s = t.save_state();
    assert!(s.config_change_pending);
    assert_eq!(s.config_generation, 0);
    let mut d2 = d.clone();
    let mut t2 = restore(&t, MmioTransport::new(NetDevice::new(MAC)), &d2.mem);
    assert_eq!(t2.interrupt_status(), 0);
    let e = t2.poll(&mut d2.mem);
    assert!(e.interrupt);
    assert_eq!(t2.interrupt_status(), interrupt::CONFIG_CHANGE);
    assert_eq!(d2.mmio_read(&mut t2, Register::ConfigGeneration), 1);
    assert!(!t2.save_state().config_change_pending);
    // The original signals the same.
    assert!(t.poll(&mut d.mem).interrupt);
    assert_eq!(t.save_state(), t2.save_state());
}

pub(super) fn console(sink_bytes: usize) -> (Driver, Console) {
    let mut t = MmioTransport::new(ConsoleDevice::new(ByteRing::new(sink_bytes)));
    let mut d = Driver::new(1 << 20);
    d.setup(&mut t, ALL_FEATURES, 64).unwrap();
    (d, t)
}

pub(super) fn output(t: &mut Console) -> Vec<u8> {
    let mut v = Vec::new();
    t.device_mut().sink_mut().drain(usize::MAX, |b| {
        v.extend_from_slice(b);
        b.len()
    });
    v
}

/// Console: input typed ahead of the guest's receive buffers is saved (oldest first, also
/// when it wraps the input ring) and delivered by the restored device into buffers posted
/// before and after the snapshot.
#[test]
fn console_buffered_input_survives() {
    let (mut d, mut t) = console(64);
    let a = d.alloc_data(b"boot\n");
    d.add_chain(TRANSMITQ, &[Buf::r(a, 5)]);
    d.kick(&mut t, TRANSMITQ);
    assert_eq!(output(&mut t), b"boot\n");
    // Wrap the input ring: fill most of it, deliver most, then push more.
    let big = pattern(INPUT_CAPACITY - 4, 1);
    assert_eq!(t.device_mut().push_input(&big), big.len());
    let r0 = d.alloc(INPUT_CAPACITY as u64 - 8, 16);
    d.add_chain(RECEIVEQ, &[Buf::w(r0, INPUT_CAPACITY as u32 - 8)]);
    d.kick(&mut t, RECEIVEQ);
    assert_eq!(
        d.pop_used(RECEIVEQ).map(|u| u.1),
        Some(INPUT_CAPACITY as u32 - 8)
    );
    // Like Linux: after consuming a buffer, ask for an interrupt at the next one.
    d.set_used_event(RECEIVEQ, 1);
    assert_eq!(t.device_mut().push_input(b"typed ahead"), 11);
    let mut expect = big[INPUT_CAPACITY - 8..].to_vec();
    expect.extend_from_slice(b"typed ahead");
    let r1 = d.alloc(8, 16);
    let h1 = d.add_chain(RECEIVEQ, &[Buf::w(r1, 8)]);
    // Posted but not noticed by the device yet (no kick, no poll).

    let s = t.save_state();
    assert_eq!(
        s.device,
        DeviceState::Console(ConsoleState {
            input: expect.clone(),
            tx_skip: 0
        })
    );
    let mut d2 = d.clone();
    let fresh = MmioTransport::new(ConsoleDevice::new(ByteRing::new(64)));
    let mut t2 = restore(&t, fresh, &d2.mem);
    assert_eq!(t2.device().pending_input(), expect.len());
    assert_eq!(t2.interrupt_status(), interrupt::USED_BUFFER);
    assert!(t2.poll(&mut d2.mem).interrupt);
    assert_eq!(d2.pop_used(RECEIVEQ), Some((u32::from(h1), 8)));
    let r2 = d2.alloc(64, 16);
    d2.add_chain(RECEIVEQ, &[Buf::w(r2, 64)]);
    d2.kick(&mut t2, RECEIVEQ);
    assert_eq!(d2.pop_used(RECEIVEQ).map(|u| u.1), Some(7));
    let mut got = d2.read(r1, 8);
    got.extend(d2.read(r2, 7));
    assert_eq!(got, expect);
    assert_eq!(d2.used_idx(RECEIVEQ), 3);
    // Output still flows on the restored device.
    let b = d2.alloc_data(b"ok");
    d2.add_chain(TRANSMITQ, &[Buf::r(b, 2)]);
    d2.kick(&mut t2, TRANSMITQ);
    assert_eq!(output(&mut t2), b"ok");
}

/// A device that needed a reset is restored needing one (the reason is not saved): it
/// ignores notifications until the driver resets and sets it up again.
#[test]
fn device_needs_reset_survives_and_a_reset_recovers() {
    let (mut d, mut t) = blk();
    let h = d.alloc_data(&[0; 16]);
    d.write_desc(0, 5, h, 16, crate::spec::ring::DESC_F_NEXT, 5);
    d.push_avail(0, 5);
    d.kick(&mut t, 0);
    assert_ne!(t.status() & status::DEVICE_NEEDS_RESET, 0);
    assert!(t.error().is_some());
    let mut d2 = d.clone();
    let fresh = MmioTransport::new(BlockDevice::new(RamDisk::new(1 << 20)));
    let mut t2 = restore(&t, fresh, &d2.mem);
    assert_ne!(t2.status() & status::DEVICE_NEEDS_RESET, 0);
    assert!(t2.error().is_none(), "the reason is host bookkeeping");
    assert_eq!(t2.interrupt_status(), interrupt::CONFIG_CHANGE);
    let a = d2.alloc_data(&[1; 512]);
    let (bufs, _) = d2.blk_request(T::OUT, 0, &[Buf::r(a, 512)]);
    d2.add_chain(0, &bufs);
    assert!(!d2.kick(&mut t2, 0).interrupt, "ignored until reset");
    d2.setup(&mut t2, ALL_FEATURES, 64).unwrap();
    write(&mut d2, &mut t2, 0, &[1; 512]);
    assert_eq!(read(&mut d2, &mut t2, 0, 512), [1; 512]);
}

/// Loading the state of a freshly reset device into one that was driven puts it back to
/// reset: it saves like a new transport and a driver sets it up again.
#[test]
fn loading_a_reset_state_resets_a_used_transport() {
    let reset = MmioTransport::new(BlockDevice::new(RamDisk::new(1 << 16)));
    let (mut d, mut t) = blk_with(RamDisk::new(1 << 16), BlockConfig::default(), ALL_FEATURES);
    write(&mut d, &mut t, 3, &[5; 512]);
    let s = reset.save_state();
    assert_eq!(s.status, 0);
    t.load_state_checked(&s, &d.mem).unwrap();
    assert_eq!(t.save_state(), s);
    assert_eq!(t.interrupt_status(), 0);
    d.setup(&mut t, ALL_FEATURES, 64).unwrap();
    assert_eq!(read(&mut d, &mut t, 3, 512), [0; 512]);
}

/// A load not checked against guest RAM takes a ring outside it; the queue fails at its
/// first use with DEVICE_NEEDS_RESET instead of touching anything.
#[test]
fn unchecked_load_of_a_ring_outside_ram_fails_at_first_use() {
    let (mut d, t) = blk();
    let mut s = t.save_state().into_owned();
    s.queues[0].desc_table = 0x1000;
    let mut t2 = MmioTransport::new(BlockDevice::new(RamDisk::new(1 << 20)));
    assert!(t2.load_state_checked(&s, &d.mem).is_err());
    t2.load_state(&s).expect("not checked against RAM");
    let (bufs, _) = d.blk_request(T::FLUSH, 0, &[]);
    d.add_chain(0, &bufs);
    d.kick(&mut t2, 0);
    assert_ne!(t2.status() & status::DEVICE_NEEDS_RESET, 0);
    assert!(t2.error().is_some());
}
