//! Heap budgets of copy-on-write RAM disks (issue 9, finding 1): overlay blocks and zero
//! ranges are charged before they are allocated, writes beyond the budget fail with
//! VIRTIO_BLK_S_IOERR and leave the disk unchanged, WRITE_ZEROES / DISCARD record ranges.

use super::fuzz_smoke::Rng;
use super::*;
use crate::blk::{BackendError, BlockBackend};
use crate::ramdisk::{
    full_overlay_bytes, DiskAllocError, MAX_ZERO_RANGES, OVERLAY_BLOCK, OVERLAY_BLOCK_COST,
    ZERO_RANGE_COST,
};
use crate::spec::{blk_status, BlkRequestType as T};
use crate::testing::Buf;

/// A leaked image (`&'static`, like an archive entry) of `len` bytes with a pattern.
fn image(len: usize, seed: u8) -> &'static [u8] {
    let v: Vec<u8> = (0..len)
        .map(|i| (i as u8).wrapping_mul(13).wrapping_add(seed) | 1)
        .collect();
    Box::leak(v.into_boxed_slice())
}

fn run(d: &mut Driver, t: &mut Blk, ty: u32, sector: u64, data: &[Buf]) -> u8 {
    let (bufs, st) = d.blk_request(ty, sector, data);
    let head = d.add_chain(0, &bufs);
    d.kick(t, 0);
    while t.has_kicks() {
        t.process_kicks(&mut d.mem);
    }
    let (id, _) = d.pop_used(0).expect("completion");
    assert_eq!(id, u32::from(head));
    d.read(st, 1)[0]
}

fn zero_segment(d: &mut Driver, sector: u64, num: u32, flags: u32) -> Buf {
    let mut seg = [0u8; 16];
    seg[..8].copy_from_slice(&sector.to_le_bytes());
    seg[8..12].copy_from_slice(&num.to_le_bytes());
    seg[12..].copy_from_slice(&flags.to_le_bytes());
    Buf::r(d.alloc_data(&seg), 16)
}

fn disk_bytes(t: &mut Blk, offset: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    t.device_mut()
        .backend_mut()
        .read_at(offset, &mut v)
        .expect("in range");
    v
}

/// Finding 1: a guest writes every block of a 64 KiB image disk whose overlay budget holds
/// 10 blocks (and most of an 11th): the first 10 writes succeed, the other 6 get IOERR and
/// are counted as budget_exceeded, the charge never passes the budget, and both the written
/// blocks and the unwritten image blocks read back intact.
#[test]
fn cow_writes_beyond_the_budget_fail_with_ioerr() {
    let img = image(64 * 1024, 3);
    let budget = 10 * OVERLAY_BLOCK_COST + OVERLAY_BLOCK_COST - 1;
    let disk = RamDisk::from_static_with_budget(img, budget);
    assert_eq!(disk.worst_case_bytes(), budget);
    let (mut d, mut t) = blk_with(disk, BlockConfig::default(), ALL_FEATURES);
    assert_eq!(t.worst_case_bytes(), budget);
    let data = d.alloc(OVERLAY_BLOCK, 16);
    let mut statuses = Vec::new();
    for block in 0..16u64 {
        let fill = vec![0xc0 | block as u8; OVERLAY_BLOCK as usize];
        crate::GuestMemory::write(&mut d.mem, data, &fill).unwrap();
        statuses.push(run(
            &mut d,
            &mut t,
            T::OUT,
            block * 8,
            &[Buf::r(data, OVERLAY_BLOCK as u32)],
        ));
        let charged = t.device().backend().overlay_charged();
        assert!(charged <= budget, "charged {charged} > budget {budget}");
    }
    let ok = statuses.iter().filter(|&&s| s == blk_status::OK).count();
    assert_eq!(ok, 10);
    assert!(statuses[..10].iter().all(|&s| s == blk_status::OK));
    assert!(statuses[10..].iter().all(|&s| s == blk_status::IOERR));
    let st = t.stats();
    assert_eq!((st.budget_exceeded, st.errors, st.requests), (6, 6, 16));
    let disk = t.device().backend();
    assert_eq!(disk.overlay_blocks(), 10);
    assert_eq!(disk.overlay_charged(), 10 * OVERLAY_BLOCK_COST);
    for block in 0..16u64 {
        let got = disk_bytes(&mut t, block * OVERLAY_BLOCK, OVERLAY_BLOCK as usize);
        if block < 10 {
            assert!(
                got.iter().all(|&b| b == 0xc0 | block as u8),
                "block {block}"
            );
        } else {
            let at = (block * OVERLAY_BLOCK) as usize;
            assert_eq!(
                &got[..],
                &img[at..at + OVERLAY_BLOCK as usize],
                "block {block}"
            );
        }
    }
}

/// A write that straddles an allocated and a missing block is refused as a whole when the
/// missing one does not fit: not a byte of the allocated block changes.
#[test]
fn refused_write_changes_nothing() {
    let img = image(16 * 1024, 9);
    let mut disk = RamDisk::from_static_with_budget(img, OVERLAY_BLOCK_COST);
    disk.write_at(0, &[0xaa; 512]).unwrap();
    let err = disk.write_at(OVERLAY_BLOCK - 512, &[0xbb; 1024]);
    assert_eq!(
        err,
        Err(BackendError::NoSpace {
            budget: OVERLAY_BLOCK_COST,
            charged: OVERLAY_BLOCK_COST,
            needed: OVERLAY_BLOCK_COST,
        })
    );
    assert_eq!(
        err.unwrap_err().to_string(),
        "disk overlay budget exhausted: 4160 of 4160 bytes used, 4160 more needed; raise the \
         disk's overlay budget in the VM configuration"
    );
    let mut got = vec![0u8; 2 * OVERLAY_BLOCK as usize];
    disk.read_at(0, &mut got).unwrap();
    assert_eq!(&got[..512], &[0xaa; 512]);
    assert_eq!(&got[512..], &img[512..2 * OVERLAY_BLOCK as usize]);
    assert_eq!(disk.overlay_blocks(), 1);
}

/// WRITE_ZEROES over a whole 64 MiB image disk allocates no block: one zero range, its
/// charge 32 bytes; blocks written before are freed (their charge returned); everything reads
/// as zeros; requests reaching past the end fail with IOERR.
#[test]
fn write_zeroes_whole_disk_records_one_range() {
    const SIZE: usize = 64 << 20;
    let img = image(SIZE, 1);
    let disk = RamDisk::from_static_with_budget(img, 4 * OVERLAY_BLOCK_COST);
    let (mut d, mut t) = blk_with(disk, BlockConfig::default(), ALL_FEATURES);
    let data = d.alloc_data(&[0x77; 2 * 4096]);
    assert_eq!(
        run(&mut d, &mut t, T::OUT, 8, &[Buf::r(data, 2 * 4096)]),
        blk_status::OK
    );
    assert_eq!(
        t.device().backend().overlay_charged(),
        2 * OVERLAY_BLOCK_COST
    );
    let sectors = (SIZE / 512) as u32;
    let seg = zero_segment(&mut d, 0, sectors, 0);
    assert_eq!(
        run(&mut d, &mut t, T::WRITE_ZEROES, 0, &[seg]),
        blk_status::OK
    );
    let disk = t.device().backend();
    assert_eq!(disk.overlay_blocks(), 0);
    assert_eq!(disk.zero_ranges(), 1);
    assert_eq!(disk.overlay_charged(), ZERO_RANGE_COST);
    for at in [0u64, 4096, 8 * 512, (SIZE - 4096) as u64] {
        assert!(
            disk_bytes(&mut t, at, 4096).iter().all(|&b| b == 0),
            "at {at:#x}"
        );
    }
    // Beyond the end: one sector too many, the last sector plus one, a wild sector.
    let cases = [
        (0, sectors + 1),
        (u64::from(sectors) - 1, 2),
        (u64::MAX / 512, 1),
    ];
    for (sector, num) in cases {
        let seg = zero_segment(&mut d, sector, num, 0);
        assert_eq!(
            run(&mut d, &mut t, T::WRITE_ZEROES, 0, &[seg]),
            blk_status::IOERR,
            "sector {sector} num {num}"
        );
    }
    // The unmap flag is allowed on WRITE_ZEROES (virtio 1.2 §5.2.6.2) and DISCARD records a
    // range too.
    let seg = zero_segment(&mut d, 0, 8, 1);
    assert_eq!(
        run(&mut d, &mut t, T::WRITE_ZEROES, 0, &[seg]),
        blk_status::OK
    );
    let seg = zero_segment(&mut d, 16, 8, 0);
    assert_eq!(run(&mut d, &mut t, T::DISCARD, 0, &[seg]), blk_status::OK);
    let st = t.stats();
    assert_eq!((st.errors, st.budget_exceeded), (3, 0));
    assert_eq!(t.device().backend().overlay_charged(), ZERO_RANGE_COST);
}

/// Zero a range spanning two blocks, then write inside it: the new block starts zeroed, the
/// image shows outside the range.
#[test]
fn zero_range_then_partial_write_then_read_back() {
    let img = image(8 * 4096, 5);
    let (mut d, mut t) = blk_with(
        RamDisk::from_static(img),
        BlockConfig::default(),
        ALL_FEATURES,
    );
    // Sectors 3..11 = bytes 1536..5632: the end of block 0 and the start of block 1.
    let seg = zero_segment(&mut d, 3, 8, 0);
    assert_eq!(
        run(&mut d, &mut t, T::WRITE_ZEROES, 0, &[seg]),
        blk_status::OK
    );
    let data = d.alloc_data(&[0xee; 512]);
    assert_eq!(
        run(&mut d, &mut t, T::OUT, 4, &[Buf::r(data, 512)]),
        blk_status::OK
    );
    let mut expect = img[..3 * 4096].to_vec();
    expect[1536..5632].fill(0);
    expect[2048..2560].fill(0xee);
    let r = d.alloc(3 * 4096, 16);
    assert_eq!(
        run(&mut d, &mut t, T::IN, 0, &[Buf::w(r, 3 * 4096)]),
        blk_status::OK
    );
    assert_eq!(d.read(r, 3 * 4096), expect);
    let disk = t.device().backend();
    assert_eq!((disk.overlay_blocks(), disk.zero_ranges()), (1, 1));
    assert_eq!(disk.overlay_charged(), OVERLAY_BLOCK_COST + ZERO_RANGE_COST);
}

/// Random writes and zero ranges against a copy-on-write disk with a small budget and a
/// plain byte vector as the model: reads always agree, refused operations change nothing,
/// the charge never exceeds the budget and always equals blocks and ranges times their cost.
#[test]
fn cow_disk_matches_a_model_under_a_budget() {
    let mut r = Rng(0x5eed_0001);
    for round in 0..40 {
        let len = 4096 * (1 + r.below(24) as usize);
        let img = image(len, round as u8);
        let budget = r.below(12 * OVERLAY_BLOCK_COST);
        let mut disk = RamDisk::from_static_with_budget(img, budget);
        let mut model = img.to_vec();
        for _ in 0..200 {
            let off = 512 * r.below(len as u64 / 512);
            let max = len as u64 - off;
            let n = (512 * (1 + r.below(16))).min(max);
            if r.chance(3) {
                let res = disk.write_zeroes(off, n);
                if res.is_ok() {
                    model[off as usize..(off + n) as usize].fill(0);
                } else {
                    assert!(matches!(res, Err(BackendError::NoSpace { .. })));
                }
            } else {
                let byte = r.next() as u8;
                let data = vec![byte; n as usize];
                if disk.write_at(off, &data).is_ok() {
                    model[off as usize..(off + n) as usize].fill(byte);
                }
            }
            let charged = disk.overlay_charged();
            assert!(charged <= budget);
            assert_eq!(
                charged,
                disk.overlay_blocks() as u64 * OVERLAY_BLOCK_COST
                    + disk.zero_ranges() as u64 * ZERO_RANGE_COST
            );
        }
        let mut got = vec![0u8; len];
        disk.read_at(0, &mut got).unwrap();
        assert!(got == model, "round {round}: disk differs from the model");
    }
}

#[test]
fn worst_case_bytes_per_kind() {
    let owned = RamDisk::new(1 << 20);
    assert_eq!(owned.worst_case_bytes(), 0, "allocated up front");
    assert_eq!(owned.overlay_budget(), None);
    let img = image(10 * 4096 + 100, 0);
    let full = RamDisk::from_static(img);
    assert_eq!(
        full_overlay_bytes(img.len() as u64),
        11 * OVERLAY_BLOCK_COST + MAX_ZERO_RANGES as u64 * ZERO_RANGE_COST
    );
    assert_eq!(
        full.worst_case_bytes(),
        full_overlay_bytes(img.len() as u64)
    );
    let small = RamDisk::from_static_with_budget(img, 5000);
    assert_eq!(small.worst_case_bytes(), 5000);
    let huge = RamDisk::from_static_with_budget(img, u64::MAX);
    assert_eq!(
        huge.worst_case_bytes(),
        full_overlay_bytes(img.len() as u64)
    );
    let e = RamDisk::try_new(usize::MAX).unwrap_err();
    assert_eq!(e, DiskAllocError { bytes: u64::MAX });
    assert!(e
        .to_string()
        .starts_with("cannot allocate a 18446744073709551615-byte RAM disk"));
    assert_eq!(RamDisk::try_new(4096).unwrap().len(), 4096);
}

/// An owned disk zeroes in place; read-only disks refuse zeroing.
#[test]
fn owned_disk_zeroes_in_place_and_read_only_refuses() {
    let mut disk = RamDisk::from_image(vec![0xff; 8192]);
    disk.write_zeroes(512, 1024).unwrap();
    let mut got = vec![0u8; 8192];
    disk.read_at(0, &mut got).unwrap();
    assert!(got[..512].iter().all(|&b| b == 0xff));
    assert!(got[512..1536].iter().all(|&b| b == 0));
    assert!(got[1536..].iter().all(|&b| b == 0xff));
    assert_eq!(
        disk.write_zeroes(8192 - 512, 1024),
        Err(BackendError::OutOfRange {
            offset: 8192 - 512,
            len: 1024
        })
    );
    let mut ro = RamDisk::from_static(image(4096, 0)).read_only(true);
    assert_eq!(ro.write_zeroes(0, 512), Err(BackendError::ReadOnly));
}
