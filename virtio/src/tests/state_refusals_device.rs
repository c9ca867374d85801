//! Snapshot states a load refuses, device part: disks (size, read-only flag, kind, owned
//! contents, copy-on-write overlays) and consoles. Helpers and the transport's part are in
//! [`super::state_refusals`].

use std::borrow::Cow;

use super::state::{blk_op, console, image, output, settle, write, Console, Drive};
use super::state_refusals::{blk_case, blk_source, blk_target, loads, refused, DISK};
use super::*;
use crate::blk::BlockBackend;
use crate::console::{INPUT_CAPACITY, TRANSMITQ};
use crate::ramdisk::{OVERLAY_BLOCK, OVERLAY_BLOCK_COST};
use crate::spec::{blk_status, BlkRequestType as T};
use crate::state::{
    DeviceState, DiskContents, OverlayBlock, OverlayState, StateError as E, TransportState,
    ZeroRange,
};
use crate::testing::Buf;

fn cow_disk() -> RamDisk {
    RamDisk::from_static(image(DISK, 1))
}

/// A source copy-on-write state: blocks 0 and 2, one zero range.
fn cow_source() -> TransportState<'static> {
    let (mut d, mut t) = blk_with(cow_disk(), BlockConfig::default(), ALL_FEATURES);
    write(&mut d, &mut t, 0, &[1; 512]);
    write(&mut d, &mut t, 16, &[2; 512]);
    let mut seg = [0u8; 16];
    seg[..8].copy_from_slice(&10u64.to_le_bytes());
    seg[8..12].copy_from_slice(&2u32.to_le_bytes());
    let a = d.alloc_data(&seg);
    assert_eq!(
        blk_op(&mut d, &mut t, T::WRITE_ZEROES, 0, &[Buf::r(a, 16)]).0,
        blk_status::OK
    );
    t.save_state().into_owned()
}

/// The overlay of a copy-on-write state.
fn overlay<'s>(s: &'s mut TransportState<'static>) -> &'s mut OverlayState<'static> {
    match &mut s.device {
        DeviceState::Blk(b) => match &mut b.disk.contents {
            DiskContents::CopyOnWrite(o) => o,
            other => panic!("{} contents", other.kind_name()),
        },
        other => panic!("{} state", other.kind()),
    }
}

/// Runs one case on a pair over copy-on-write disks.
fn cow_case(corrupt: impl FnOnce(&mut OverlayState<'static>), want: E, text: &str) {
    let good = cow_source();
    let (d, mut t) = blk_target(cow_disk());
    let mut s = good.clone();
    corrupt(overlay(&mut s));
    refused(&mut t, &d.mem, &s, want, text);
    loads(&mut t, &d.mem, &good);
}

fn zr(start: u64, end: u64) -> ZeroRange {
    ZeroRange { start, end }
}

#[test]
fn disk_size() {
    let s = blk_source(RamDisk::new(DISK));
    let (d, mut t) = blk_target(RamDisk::new(2 * DISK));
    let want = E::DiskSize {
        snapshot: DISK as u64,
        vm: 2 * DISK as u64,
    };
    refused(
        &mut t,
        &d.mem,
        &s,
        want,
        "disk size differs: snapshot has 16384 bytes, VM has 32768",
    );
}

#[test]
fn read_only() {
    let flag = |s: &mut TransportState<'static>, ro: bool| match &mut s.device {
        DeviceState::Blk(b) => b.disk.read_only = ro,
        _ => unreachable!(),
    };
    let want = E::ReadOnly {
        snapshot: true,
        vm: false,
    };
    let text =
        "the disk's read-only flag differs: snapshot has a read-only disk, VM a writable one";
    blk_case(|s| flag(s, true), want, text);
    // A read-only pair (BLK_RO negotiated, no writes).
    let ro = || RamDisk::new(DISK).read_only(true);
    let (mut d, mut src) = blk_with(ro(), BlockConfig::default(), ALL_FEATURES);
    let r = d.alloc(512, 16);
    assert_eq!(
        blk_op(&mut d, &mut src, T::IN, 0, &[Buf::w(r, 512)]).0,
        blk_status::OK
    );
    let good = src.save_state().into_owned();
    let (d, mut t) = blk_with(ro(), BlockConfig::default(), ALL_FEATURES);
    let mut s = good.clone();
    flag(&mut s, false);
    let want = E::ReadOnly {
        snapshot: false,
        vm: true,
    };
    let text =
        "the disk's read-only flag differs: snapshot has a writable disk, VM a read-only one";
    refused(&mut t, &d.mem, &s, want, text);
    loads(&mut t, &d.mem, &good);
}

#[test]
fn disk_kind() {
    let owned = blk_source(RamDisk::new(DISK));
    let cow = cow_source();
    let (d, mut t) = blk_target(cow_disk());
    let want = E::DiskKind {
        snapshot: "owned",
        vm: "copy-on-write",
    };
    let text = "the disk kind differs: snapshot has owned contents, the VM's disk is copy-on-write";
    refused(&mut t, &d.mem, &owned, want, text);
    let (d, mut t) = blk_target(RamDisk::new(DISK));
    let want = E::DiskKind {
        snapshot: "copy-on-write",
        vm: "owned",
    };
    let text = "the disk kind differs: snapshot has copy-on-write contents, the VM's disk is owned";
    refused(&mut t, &d.mem, &cow, want, text);
    let mut s = owned.clone();
    match &mut s.device {
        DeviceState::Blk(b) => b.disk.contents = DiskContents::External,
        _ => unreachable!(),
    }
    let want = E::DiskKind {
        snapshot: "external",
        vm: "owned",
    };
    let text = "the disk kind differs: snapshot has external contents, the VM's disk is owned";
    refused(&mut t, &d.mem, &s, want, text);
    // A backend without contents of its own refuses any.
    let mut drive = MmioTransport::new(BlockDevice::new(Drive(vec![0; DISK])));
    let mut dd = Driver::new(1 << 20);
    dd.setup(&mut drive, ALL_FEATURES, 64).unwrap();
    let want = E::DiskKind {
        snapshot: "owned",
        vm: "external",
    };
    let text = "the disk kind differs: snapshot has owned contents, the VM's disk is external";
    refused(&mut drive, &dd.mem, &owned, want, text);
}

#[test]
fn disk_contents_length() {
    let want = E::DiskContentsLength {
        bytes: DISK as u64 - 1,
        disk: DISK as u64,
    };
    let text = "the disk contents are 16383 bytes, the disk 16384";
    blk_case(
        |s| match &mut s.device {
            DeviceState::Blk(b) => match &mut b.disk.contents {
                DiskContents::Owned(bytes) => bytes.to_mut().truncate(DISK - 1),
                _ => unreachable!(),
            },
            _ => unreachable!(),
        },
        want,
        text,
    );
}

fn block(index: u64, fill: u8) -> OverlayBlock<'static> {
    OverlayBlock {
        index,
        data: Cow::Owned(vec![fill; OVERLAY_BLOCK as usize]),
    }
}

#[test]
fn overlay_block_beyond_disk() {
    let text = "overlay block 4 is beyond the disk's 4 blocks";
    cow_case(
        |o| o.blocks.push(block(4, 9)),
        E::OverlayBlockBeyondDisk {
            index: 4,
            blocks: 4,
        },
        text,
    );
    // The partial last block of a disk that is not a multiple of the block size exists.
    let img = image(DISK + 100, 3);
    let mut t = MmioTransport::new(BlockDevice::new(RamDisk::from_static(img)));
    let mut s = t.save_state().into_owned();
    overlay(&mut s).blocks.push(block(4, 9));
    t.load_state(&s).unwrap();
    let mut tail = [0u8; 100];
    t.device_mut()
        .backend_mut()
        .read_at(DISK as u64, &mut tail)
        .unwrap();
    assert_eq!(tail, [9; 100]);
}

#[test]
fn overlay_block_order() {
    let text = "overlay block 0 is repeated or out of order";
    cow_case(
        |o| o.blocks[1].index = 0,
        E::OverlayBlockOrder { index: 0 },
        text,
    );
    cow_case(
        |o| o.blocks.insert(0, block(3, 1)),
        E::OverlayBlockOrder { index: 0 },
        text,
    );
}

#[test]
fn overlay_block_length() {
    let text = "overlay block 2 holds 4095 bytes, not 4096";
    cow_case(
        |o| {
            o.blocks[1].data.to_mut().pop();
        },
        E::OverlayBlockLength {
            index: 2,
            len: 4095,
        },
        text,
    );
}

#[test]
fn overlay_budget() {
    let s = cow_source();
    let (d, mut t) = blk_target(RamDisk::from_static_with_budget(
        image(DISK, 1),
        OVERLAY_BLOCK_COST,
    ));
    assert_eq!(t.device().backend().overlay_blocks(), 1);
    let want = E::OverlayBudget {
        needed: 2 * OVERLAY_BLOCK_COST + 32,
        budget: OVERLAY_BLOCK_COST,
    };
    let text =
        "the disk overlay needs 8352 bytes of its 4160-byte budget; raise the disk's overlay \
                budget in the VM configuration";
    refused(&mut t, &d.mem, &s, want, text);
}

#[test]
fn zero_range_bounds() {
    let cases = [
        (0x200, 0x200, "0x200..0x200"),
        (0x3e00, 0x4001, "0x3e00..0x4001"),
        (0x300, 0x100, "0x300..0x100"),
    ];
    for (start, end, hex) in cases {
        let text = format!("zero range {hex} is empty or beyond the 16384-byte disk");
        cow_case(
            |o| o.zero_ranges.push(zr(start, end)),
            E::ZeroRangeBounds {
                start,
                end,
                disk: DISK as u64,
            },
            &text,
        );
    }
    let (d, mut t) = blk_target(cow_disk());
    let mut s = cow_source();
    overlay(&mut s).zero_ranges.push(zr(0x3e00, 0x4000));
    loads(&mut t, &d.mem, &s);
}

#[test]
fn zero_range_order() {
    // The source's range is 0x1400..0x1800.
    let cases = [(0x1800, 0x1900), (0x1600, 0x1900), (0x1000, 0x1100)];
    for (start, end) in cases {
        let text =
            format!("zero range at {start:#x} overlaps, touches or precedes the one before it");
        cow_case(
            |o| o.zero_ranges.push(zr(start, end)),
            E::ZeroRangeOrder { start },
            &text,
        );
    }
}

#[test]
fn too_many_zero_ranges() {
    let ranges = |n: u64| (0..n).map(|i| zr(2 * i, 2 * i + 1)).collect::<Vec<_>>();
    let text = "4097 zero ranges, at most 4096 allowed";
    cow_case(
        |o| o.zero_ranges = ranges(4097),
        E::TooManyZeroRanges {
            count: 4097,
            max: 4096,
        },
        text,
    );
    let (d, mut t) = blk_target(cow_disk());
    let mut s = cow_source();
    overlay(&mut s).zero_ranges = ranges(4096);
    loads(&mut t, &d.mem, &s);
    let mut got = [0xffu8; 4];
    t.device_mut()
        .backend_mut()
        .read_at(4096, &mut got)
        .unwrap();
    let img = image(DISK, 1);
    assert_eq!(got, [0, img[4097], 0, img[4099]]);
}

/// A console pair: the source has input typed ahead and output stalled on a full sink.
fn console_pair() -> (TransportState<'static>, Driver, Console) {
    let (mut d, mut src) = console(4);
    src.device_mut().push_input(b"typed");
    let a = d.alloc_data(b"hello world\n");
    d.add_chain(TRANSMITQ, &[Buf::r(a, 12)]);
    d.kick(&mut src, TRANSMITQ);
    let good = src.save_state().into_owned();
    assert_eq!(good.pending, 1 << TRANSMITQ);
    let (mut d, mut t) = console(64);
    let b = d.alloc_data(b"other");
    d.add_chain(TRANSMITQ, &[Buf::r(b, 5)]);
    d.kick(&mut t, TRANSMITQ);
    settle(&mut d, &mut t);
    assert_eq!(output(&mut t), b"other");
    (good, d, t)
}

fn console_mut<'s>(s: &'s mut TransportState<'static>) -> &'s mut crate::state::ConsoleState {
    match &mut s.device {
        DeviceState::Console(c) => c,
        _ => unreachable!(),
    }
}

#[test]
fn console_input() {
    let (good, d, mut t) = console_pair();
    let mut s = good.clone();
    console_mut(&mut s).input = vec![b'x'; INPUT_CAPACITY + 1];
    let text = "4097 bytes of console input, at most 4096 fit";
    refused(
        &mut t,
        &d.mem,
        &s,
        E::ConsoleInput {
            len: 4097,
            max: 4096,
        },
        text,
    );
    console_mut(&mut s).input.pop();
    loads(&mut t, &d.mem, &s);
    assert_eq!(t.device().pending_input(), INPUT_CAPACITY);
}

#[test]
fn console_transmit_offset() {
    let (good, d, mut t) = console_pair();
    let mut s = good.clone();
    (s.queues[TRANSMITQ].ready, s.pending) = (false, 0);
    let text = "the console's partly transmitted buffer is 4 bytes in, but its transmitq is not \
                ready or no buffer is that long";
    refused(
        &mut t,
        &d.mem,
        &s,
        E::ConsoleTransmitOffset { offset: 4 },
        text,
    );
    let mut s = good.clone();
    console_mut(&mut s).tx_skip = 1 << 32;
    let text = "the console's partly transmitted buffer is 4294967296 bytes in, but its \
                transmitq is not ready or no buffer is that long";
    refused(
        &mut t,
        &d.mem,
        &s,
        E::ConsoleTransmitOffset { offset: 1 << 32 },
        text,
    );
    console_mut(&mut s).tx_skip = u64::from(u32::MAX);
    loads(&mut t, &d.mem, &s);
    loads(&mut t, &d.mem, &good);
}

#[test]
fn out_of_memory_message() {
    assert_eq!(
        E::OutOfMemory { bytes: 4096 }.to_string(),
        "cannot allocate 4096 bytes from the hypervisor heap for the disk overlay"
    );
}
