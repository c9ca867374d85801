//! DiskIo against an in-memory asynchronous device: extents, splitting, retries, zeroing,
//! and DISCARD / WRITE_ZEROES pass-through.

use super::*;
use crate::store::mem::{MemBlockDevice, MemDevice};
use crate::store::{Region, Store};

/// A store with disk "a" in two extents (units 8 and 10 of 8 sectors) on a device with
/// latency 2 and queue depth 4.
fn setup() -> (MemBlockDevice, DiskIo) {
    let mut d = MemDevice::new(1024);
    let mut s = Store::format(
        &mut d,
        Region {
            start: 0,
            sectors: 1024,
            partition: None,
        },
        8,
        [0; 16],
    )
    .unwrap();
    s.create(&mut d, "a", 4096).unwrap();
    s.create(&mut d, "b", 4096).unwrap();
    s.grow(&mut d, "a", 8192).unwrap();
    let map = s.map("a").unwrap();
    (MemBlockDevice::new(d, 2, 4), DiskIo::new(map, 0, 7 << 48))
}

/// Runs one transfer to completion the way the virtio backend does: poll the device,
/// deliver this disk's completions, ask again.
fn run(
    dev: &mut MemBlockDevice,
    io: &mut DiskIo,
    op: Op,
    offset: u64,
    buf: &mut [u8],
) -> (Result<(), IoError>, u32) {
    let mut asks = 0;
    loop {
        asks += 1;
        if let IoStatus::Done(r) = io.step(dev, op, offset, buf) {
            return (r, asks);
        }
        if let Some((_, c)) = crate::store::block::BlockDevice::poll(dev) {
            assert!(io.owns(c.tag));
            io.deliver(c);
        }
        assert!(asks < 10_000);
    }
}

#[test]
fn writes_span_extents_and_read_back() {
    let (mut dev, mut io) = setup();
    assert_eq!(io.len(), 8192);
    let data: Vec<u8> = (0..6144u32).map(|i| (i * 13) as u8).collect();
    let (r, asks) = run(&mut dev, &mut io, Op::Write, 1024, &mut data.clone());
    assert_eq!(r, Ok(()));
    assert!(
        asks > 1,
        "a write is not acknowledged before the drive completed it"
    );
    // Sectors 2..8 of extent 1 (LBA 64..72) and 0..6 of extent 2 (LBA 80..86).
    assert_eq!(&dev.disk.data[66 * 512..72 * 512], &data[..3072]);
    assert_eq!(&dev.disk.data[80 * 512..86 * 512], &data[3072..]);
    let mut back = vec![0u8; 6144];
    assert_eq!(run(&mut dev, &mut io, Op::Read, 1024, &mut back).0, Ok(()));
    assert_eq!(back, data);
    let flushes = dev.disk.flushes;
    assert_eq!(run(&mut dev, &mut io, Op::Flush, 0, &mut []).0, Ok(()));
    assert_eq!(dev.disk.flushes, flushes + 1);
    assert_eq!(
        (
            io.stats.reads,
            io.stats.writes,
            io.stats.flushes,
            io.stats.requests
        ),
        (1, 1, 1, 5)
    );
}

#[test]
fn errors_and_bounds() {
    let (mut dev, mut io) = setup();
    let mut b = vec![0u8; 1024];
    assert_eq!(
        io.step(&mut dev, Op::Read, 8192 - 512, &mut b),
        IoStatus::Done(Err(IoError::OutOfRange {
            lba: 15,
            sectors: 2,
            device_sectors: 16
        }))
    );
    assert_eq!(
        io.step(&mut dev, Op::Read, 100, &mut b),
        IoStatus::Done(Err(IoError::Unaligned { bytes: 1024 }))
    );
    dev.bad_lba = Some(65);
    assert_eq!(
        run(&mut dev, &mut io, Op::Read, 0, &mut b).0,
        Err(IoError::Device {
            lba: 65,
            status: 0x5140
        })
    );
    assert_eq!(io.stats.errors, 3);
}

#[test]
fn a_new_write_of_other_data_to_the_same_range_is_written_again() {
    let (mut dev, mut io) = setup();
    let mut a = vec![1u8; 512];
    assert_eq!(io.step(&mut dev, Op::Write, 0, &mut a), IoStatus::Pending);
    while let Some((_, c)) = crate::store::block::BlockDevice::poll(&mut dev)
        .or_else(|| crate::store::block::BlockDevice::poll(&mut dev))
    {
        io.deliver(c);
    }
    for _ in 0..4 {
        if let Some((_, c)) = crate::store::block::BlockDevice::poll(&mut dev) {
            io.deliver(c);
        }
    }
    // The device was reset: request A is gone; request B asks for the same range.
    let mut b = vec![2u8; 512];
    assert_eq!(run(&mut dev, &mut io, Op::Write, 0, &mut b).0, Ok(()));
    assert_eq!(&dev.disk.data[64 * 512..65 * 512], &b[..]);
    // The same data again is covered by the finished transfer (one more request only).
    let n = dev.submitted;
    assert_eq!(
        run(&mut dev, &mut io, Op::Write, 0, &mut b.clone()).0,
        Ok(())
    );
    assert_eq!(dev.submitted, n + 1);
}

#[test]
fn a_full_driver_queue_is_retried_and_big_runs_split() {
    let mut d = MemDevice::new(4096);
    let mut s = Store::format(
        &mut d,
        Region {
            start: 0,
            sectors: 4096,
            partition: None,
        },
        8,
        [0; 16],
    )
    .unwrap();
    s.create(&mut d, "big", 1 << 20).unwrap();
    let mut dev = MemBlockDevice::new(d, 0, 2);
    let mut io = DiskIo::new(s.map("big").unwrap(), 0, 1 << 48);
    let data: Vec<u8> = (0..(1 << 20) as u32)
        .map(|i| (i >> 9) as u8 ^ i as u8)
        .collect();
    // 1 MiB in one run: 16 parts of 64 KiB, at most 2 in the driver's queue at a time.
    assert_eq!(
        run(&mut dev, &mut io, Op::Write, 0, &mut data.clone()).0,
        Ok(())
    );
    assert_eq!(io.stats.requests, 16);
    let mut back = vec![0u8; 1 << 20];
    assert_eq!(run(&mut dev, &mut io, Op::Read, 0, &mut back).0, Ok(()));
    assert!(back == data);
}

/// WRITE_ZEROES by writing zeroes: 12 KiB across both extents in 4 KiB pieces, each
/// acknowledged by the drive; the neighbours stay; a range beyond the disk fails.
#[test]
fn zeroing_writes_pieces_of_zeroes() {
    let (mut dev, mut io) = setup();
    let data = vec![0xA5u8; 8192];
    assert_eq!(
        run(&mut dev, &mut io, Op::Write, 0, &mut data.clone()).0,
        Ok(())
    );
    let writes = io.stats.writes;
    let mut zeros = vec![0xFFu8; 4096];
    let mut asks = 0;
    let r = loop {
        asks += 1;
        if let IoStatus::Done(r) = io.zero_step(&mut dev, 512, 6144, &mut zeros) {
            break r;
        }
        if let Some((_, c)) = crate::store::block::BlockDevice::poll(&mut dev) {
            io.deliver(c);
        }
        assert!(asks < 10_000);
    };
    assert_eq!(r, Ok(()));
    assert!(asks > 2, "each piece waits for the drive");
    // Two pieces: 4096 + 2048 bytes.
    assert_eq!(io.stats.writes, writes + 2);
    let mut back = vec![0u8; 8192];
    assert_eq!(run(&mut dev, &mut io, Op::Read, 0, &mut back).0, Ok(()));
    assert!(back[..512].iter().all(|&b| b == 0xA5));
    assert!(back[512..6656].iter().all(|&b| b == 0));
    assert!(back[6656..].iter().all(|&b| b == 0xA5));
    let beyond = loop {
        if let IoStatus::Done(r) = io.zero_step(&mut dev, 8192 - 512, 1024, &mut zeros) {
            break r;
        }
        if let Some((_, c)) = crate::store::block::BlockDevice::poll(&mut dev) {
            io.deliver(c);
        }
    };
    assert!(beyond.is_err(), "{beyond:?}");
    assert!(matches!(
        io.zero_step(&mut dev, 0, 512, &mut [0u8; 100]),
        IoStatus::Done(Err(IoError::Unaligned { bytes: 100 }))
    ));
}

/// DISCARD and WRITE_ZEROES passed to a drive that has the commands: one request per
/// drive run (the range spans both extents), no data moved, acknowledged only after the
/// drive completed them; write-zeroes reads back as zeroes, the neighbours stay.
#[test]
fn discard_and_write_zeroes_pass_through_per_drive_run() {
    let (mut dev, mut io) = setup();
    let data = vec![0xA5u8; 8192];
    assert_eq!(
        run(&mut dev, &mut io, Op::Write, 0, &mut data.clone()).0,
        Ok(())
    );
    let (requests, submitted) = (io.stats.requests, dev.submitted);
    let range = |io: &mut DiskIo, dev: &mut MemBlockDevice, discard, off, len| {
        let mut asks = 0;
        loop {
            asks += 1;
            if let IoStatus::Done(r) = io.range_step(dev, discard, off, len) {
                return (r, asks);
            }
            if let Some((_, c)) = crate::store::block::BlockDevice::poll(dev) {
                io.deliver(c);
            }
            assert!(asks < 10_000);
        }
    };
    let (r, asks) = range(&mut io, &mut dev, true, 1024, 6144);
    assert_eq!(r, Ok(()));
    assert!(asks > 1, "acknowledged only after the drive");
    assert_eq!(
        (io.stats.discards, dev.discards),
        (1, 2),
        "one per extent run"
    );
    let (r, _) = range(&mut io, &mut dev, false, 512, 6144);
    assert_eq!(r, Ok(()));
    assert_eq!(io.stats.zeroed, 1);
    assert_eq!(io.stats.requests - requests, 4);
    assert_eq!(dev.submitted - submitted, 4);
    let mut back = vec![0u8; 8192];
    assert_eq!(run(&mut dev, &mut io, Op::Read, 0, &mut back).0, Ok(()));
    assert!(back[..512].iter().all(|&b| b == 0xA5));
    assert!(back[512..6656].iter().all(|&b| b == 0));
    assert!(back[6656..].iter().all(|&b| b == 0xA5));
    assert_eq!(io.stats.writes, 1, "no zeroes were written as data");
    // Beyond the disk, unaligned, empty: refused before the drive sees anything.
    let before = dev.submitted;
    assert!(matches!(
        range(&mut io, &mut dev, true, 8192 - 512, 1024).0,
        Err(IoError::OutOfRange { .. })
    ));
    assert!(matches!(
        range(&mut io, &mut dev, false, 100, 512).0,
        Err(IoError::Unaligned { .. })
    ));
    assert!(range(&mut io, &mut dev, false, 0, 0).0.is_err());
    assert_eq!(dev.submitted, before);
}
