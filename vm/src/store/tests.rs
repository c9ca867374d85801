//! Host tests of the disk store: format round trips, the two-copy header under torn writes,
//! every header and GPT error, allocation, growth and the sector map.

use super::header::*;
use super::mem::MemDevice;
use super::*;
use alloc::string::ToString;
use alloc::vec;
use alloc::vec::Vec;

const ID: [u8; 16] = *b"bulkhead-test-id";
/// A small store: 8-sector (4 KiB) units, so headers take units 0..8.
const UNIT: u32 = 8;

fn whole(sectors: u64) -> Region {
    Region {
        start: 0,
        sectors,
        partition: None,
    }
}

fn fresh(sectors: u64) -> (MemDevice, Store) {
    let mut d = MemDevice::new(sectors);
    let s = Store::format(&mut d, whole(sectors), UNIT, ID).unwrap();
    (d, s)
}

fn reopen(d: &mut MemDevice) -> Store {
    let r = Store::locate(d).unwrap();
    Store::open(d, r).unwrap()
}

/// Recomputes the CRC of header copy `c` after a test changed it.
fn reseal(d: &mut MemDevice, c: Copy) {
    let at = match c {
        Copy::A => 0,
        Copy::B => HEADER_BYTES,
    };
    let crc = crc::crc32c(&d.data[at..at + HEADER_BYTES - 4]);
    d.data[at + HEADER_BYTES - 4..at + HEADER_BYTES].copy_from_slice(&crc.to_le_bytes());
}

fn read_disk(d: &mut MemDevice, s: &Store, name: &str) -> Vec<u8> {
    let m = s.map(name).unwrap();
    let mut out = Vec::new();
    for (lba, n) in m.runs(0, m.sectors()).unwrap() {
        let mut b = vec![0u8; n as usize * SECTOR];
        d.read(lba, &mut b).unwrap();
        out.extend_from_slice(&b);
    }
    out
}

fn write_disk(d: &mut MemDevice, s: &Store, name: &str, sector: u64, data: &[u8]) {
    let m = s.map(name).unwrap();
    let mut off = 0;
    for (lba, n) in m.runs(sector, (data.len() / SECTOR) as u64).unwrap() {
        let len = n as usize * SECTOR;
        d.write(lba, &data[off..off + len]).unwrap();
        off += len;
    }
}

#[test]
fn format_then_open() {
    let (mut d, s) = fresh(1024);
    assert_eq!(s.current_copy(), Copy::A);
    assert_eq!(s.header().generation, 2);
    let o = reopen(&mut d);
    assert_eq!(o.header(), s.header());
    assert_eq!(
        o.copies(),
        &[
            CopyState::Valid { generation: 2 },
            CopyState::Valid { generation: 1 }
        ]
    );
    assert_eq!(o.current_copy(), Copy::A);
    // 1024 sectors = 128 units, 8 for the headers.
    assert_eq!(o.capacity_bytes(), 120 * 4096);
    assert_eq!(o.free_bytes(), 120 * 4096);
    assert!(o.disks().is_empty());
}

#[test]
fn create_list_grow_delete_round_trip() {
    let (mut d, mut s) = fresh(1024);
    s.create(&mut d, "root", 8192).unwrap();
    s.create(&mut d, "data", 512).unwrap();
    assert_eq!(s.header().generation, 4);
    let o = reopen(&mut d);
    assert_eq!(o.header(), s.header());
    let names: Vec<_> = o
        .disks()
        .iter()
        .map(|x| (x.name.as_str(), x.size_bytes()))
        .collect();
    assert_eq!(names, [("root", 8192), ("data", 512)]);
    assert_eq!(
        o.disk("root").unwrap().extents,
        [Extent {
            start_unit: 8,
            units: 2
        }]
    );
    assert_eq!(
        o.disk("data").unwrap().extents,
        [Extent {
            start_unit: 10,
            units: 1
        }]
    );
    // root cannot grow in place (data follows it): a second extent.
    s.grow(&mut d, "root", 3 * 4096).unwrap();
    assert_eq!(
        s.disk("root").unwrap().extents,
        [
            Extent {
                start_unit: 8,
                units: 2
            },
            Extent {
                start_unit: 11,
                units: 1
            }
        ]
    );
    // data grows in place once root's extent moved past it? No: unit 11 is root's now, so
    // data gets a second extent as well; root grows in place at unit 12.
    s.grow(&mut d, "root", 4 * 4096).unwrap();
    assert_eq!(
        s.disk("root").unwrap().extents[1],
        Extent {
            start_unit: 11,
            units: 2
        }
    );
    s.delete(&mut d, "data").unwrap();
    let o = reopen(&mut d);
    assert_eq!(o.header(), s.header());
    assert_eq!(o.disks().len(), 1);
    assert_eq!(
        o.free_runs()[0],
        Extent {
            start_unit: 10,
            units: 1
        }
    );
    assert_eq!(o.free_bytes(), (120 - 4) * 4096);
}

#[test]
fn new_extents_are_zeroed_and_data_survives_growth() {
    let mut d = MemDevice::from_bytes(vec![0xAA; 1024 * SECTOR]);
    let mut s = Store::format(&mut d, whole(1024), UNIT, ID).unwrap();
    s.create(&mut d, "a", 4096).unwrap();
    assert!(read_disk(&mut d, &s, "a").iter().all(|&b| b == 0));
    let pattern: Vec<u8> = (0..4096u32).map(|i| (i * 7 + 3) as u8).collect();
    write_disk(&mut d, &s, "a", 0, &pattern);
    s.delete(&mut d, "a").unwrap();
    // The freed units are zeroed when reused: no data crosses disks.
    s.create(&mut d, "b", 4096).unwrap();
    assert_eq!(s.disk("b").unwrap().extents[0].start_unit, 8);
    assert!(read_disk(&mut d, &s, "b").iter().all(|&b| b == 0));
    write_disk(&mut d, &s, "b", 0, &pattern);
    s.create(&mut d, "c", 512).unwrap();
    s.grow(&mut d, "b", 3 * 4096).unwrap();
    let got = read_disk(&mut d, &s, "b");
    assert_eq!(&got[..4096], &pattern[..]);
    assert!(got[4096..].iter().all(|&b| b == 0));
}

#[test]
fn grow_zeroes_the_unexposed_tail_of_the_last_unit() {
    let mut d = MemDevice::from_bytes(vec![0x55; 1024 * SECTOR]);
    let mut s = Store::format(&mut d, whole(1024), UNIT, ID).unwrap();
    s.create(&mut d, "a", 1024).unwrap();
    // Sectors 2..8 of the unit belong to the disk but are not exposed; scribble on them.
    let lba = 8 * u64::from(UNIT) + 2;
    d.write(lba, &[0xEE; 6 * SECTOR]).unwrap();
    s.grow(&mut d, "a", 4096).unwrap();
    let got = read_disk(&mut d, &s, "a");
    assert!(got[1024..].iter().all(|&b| b == 0));
    assert_eq!(
        s.disk("a").unwrap().extents,
        [Extent {
            start_unit: 8,
            units: 1
        }]
    );
}

#[test]
fn map_splits_requests_at_extent_boundaries() {
    let (mut d, mut s) = fresh(1024);
    s.create(&mut d, "a", 4096).unwrap();
    s.create(&mut d, "b", 4096).unwrap();
    s.grow(&mut d, "a", 3 * 4096).unwrap();
    let m = s.map("a").unwrap();
    assert_eq!(m.sectors(), 24);
    // Extents: units 8..9 (LBA 64..72) then 10..12 (LBA 80..96).
    let runs: Vec<_> = m.runs(6, 4).unwrap().collect();
    assert_eq!(runs, [(70, 2), (80, 2)]);
    let runs: Vec<_> = m.runs(0, 24).unwrap().collect();
    assert_eq!(runs, [(64, 8), (80, 16)]);
    assert_eq!(m.runs(23, 1).unwrap().collect::<Vec<_>>(), [(95, 1)]);
    assert_eq!(m.runs(24, 0).unwrap().count(), 0);
    assert_eq!(
        m.runs(20, 5).unwrap_err(),
        StoreError::BeyondDisk {
            sector: 20,
            sectors: 5,
            disk_sectors: 24
        }
    );
    assert!(m.runs(u64::MAX, 2).is_err());
}

/// Every power-loss point of a change (each sector of the header write, torn or not) leaves
/// a store that opens as either the state before or the state after.
#[test]
fn torn_header_writes_lose_nothing() {
    for op in 0..3 {
        for tear in [false, true] {
            for cut in 0..=HEADER_SECTORS + 1 {
                let (mut d, mut s) = fresh(1024);
                s.create(&mut d, "keep", 4096).unwrap();
                s.create(&mut d, "other", 4096).unwrap();
                write_disk(&mut d, &s, "keep", 0, &[0x42; 4096]);
                let before = s.header().clone();
                let change = |d: &mut MemDevice, s: &mut Store| match op {
                    0 => s.create(d, "new", 4096),
                    1 => s.grow(d, "other", 8192),
                    _ => s.delete(d, "other"),
                };
                let after = {
                    let (mut d2, mut s2) = (d.clone(), s.clone());
                    change(&mut d2, &mut s2).unwrap();
                    s2.header().clone()
                };
                // Zeroing (for create/grow) takes 8 sector writes first; cut within the header
                // (cut 32: the header is written but its flush fails, cut 33: all done).
                let zeroing = if op == 2 { 0 } else { u64::from(UNIT) };
                d.writes_left = Some(zeroing + cut);
                d.tear = tear;
                let r = change(&mut d, &mut s);
                d.writes_left = None;
                let o = reopen(&mut d);
                assert_eq!(r.is_ok(), cut > HEADER_SECTORS, "op {op} cut {cut}");
                if r.is_ok() {
                    assert_eq!(o.header(), &after, "op {op} cut {cut}");
                } else {
                    // Before the flush failed the write may or may not have reached the drive.
                    let want = if cut == HEADER_SECTORS && !tear {
                        &after
                    } else {
                        &before
                    };
                    assert_eq!(o.header(), want, "op {op} cut {cut} tear {tear}");
                    // The next change goes to the damaged copy and works.
                    let mut o2 = o.clone();
                    o2.create(&mut d, "after", 512).unwrap();
                    assert_eq!(reopen(&mut d).header(), o2.header());
                }
                assert_eq!(read_disk(&mut d, &o, "keep"), vec![0x42; 4096]);
            }
        }
    }
}

#[test]
fn damaged_copy_falls_back_and_is_rewritten() {
    let (mut d, mut s) = fresh(1024);
    s.create(&mut d, "a", 4096).unwrap(); // gen 3 in B
    assert_eq!(s.current_copy(), Copy::B);
    d.data[HEADER_BYTES + 200] ^= 1;
    let o = reopen(&mut d);
    assert_eq!(o.current_copy(), Copy::A);
    assert_eq!(o.header().generation, 2);
    assert!(o.disks().is_empty());
    assert!(matches!(
        o.copies()[1],
        CopyState::Damaged(HeaderError::Checksum { .. })
    ));
    let mut o = o;
    o.create(&mut d, "b", 512).unwrap();
    assert_eq!(o.current_copy(), Copy::B);
    assert_eq!(o.header().generation, 3);
    let o = reopen(&mut d);
    assert_eq!(
        o.copies(),
        &[
            CopyState::Valid { generation: 2 },
            CopyState::Valid { generation: 3 }
        ]
    );
}

#[test]
fn both_copies_bad_or_none() {
    let mut d = MemDevice::new(1024);
    assert_eq!(
        Store::open(&mut d, whole(1024)).unwrap_err(),
        StoreError::NotAStore
    );
    let (mut d, _) = fresh(1024);
    d.data[100] ^= 0xFF;
    d.data[HEADER_BYTES + 8] = 9;
    match Store::open(&mut d, whole(1024)).unwrap_err() {
        StoreError::BothCopiesBad {
            a: HeaderError::Checksum { .. },
            b: HeaderError::UnsupportedVersion(v),
        } => {
            assert_eq!(v, 9 | (VERSION & !0xFF))
        }
        e => panic!("{e:?}"),
    }
    let e = Store::open(&mut d, whole(1024)).unwrap_err().to_string();
    assert!(
        e.contains("both store header copies are damaged") && e.contains("not written"),
        "{e}"
    );
}

/// Each malformed field of a (re-sealed) header copy gives its own error.
#[test]
fn every_header_error() {
    type Edit = fn(&mut [u8]);
    fn put32(b: &mut [u8], at: usize, v: u32) {
        b[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }
    fn put64(b: &mut [u8], at: usize, v: u64) {
        b[at..at + 8].copy_from_slice(&v.to_le_bytes());
    }
    let cases: Vec<(Edit, HeaderError)> = vec![
        (|b| b[0] = b'X', HeaderError::BadMagic),
        (|b| put32(b, 8, 2), HeaderError::UnsupportedVersion(2)),
        (|b| put32(b, 12, 4096), HeaderError::BadHeaderSize(4096)),
        (|b| put64(b, 16, 0), HeaderError::ZeroGeneration),
        (
            |b| put64(b, 24, 1 << 40),
            HeaderError::RegionMismatch {
                header_sectors: 1 << 40,
                region_sectors: 1024,
            },
        ),
        (|b| put32(b, 32, 12), HeaderError::BadUnit(12)),
        (|b| put32(b, 32, 4), HeaderError::BadUnit(4)),
        (
            |b| put32(b, 32, 1024),
            HeaderError::StoreTooSmall { sectors: 1024 },
        ),
        (|b| put32(b, 36, 65), HeaderError::TooManyDisks(65)),
        (|b| b[60] = 1, HeaderError::ReservedNotZero { offset: 60 }),
        (
            |b| b[16000] = 1,
            HeaderError::ReservedNotZero { offset: 16000 },
        ),
        (
            |b| b[128 + 2 * 192 + 5] = 1,
            HeaderError::ReservedNotZero {
                offset: 128 + 2 * 192 + 5,
            },
        ),
        (|b| b[128] = b'9', HeaderError::BadName { slot: 0 }),
        (|b| b[128 + 5] = b'x', HeaderError::BadName { slot: 0 }),
        (|b| b[128 + 1] = b'A', HeaderError::BadName { slot: 0 }),
        (
            |b| b[128 + 192..128 + 192 + 4].copy_from_slice(b"root"),
            HeaderError::DuplicateName { slot: 1, first: 0 },
        ),
        (
            |b| put32(b, 128 + 40, 1),
            HeaderError::BadFlags { slot: 0, flags: 1 },
        ),
        (
            |b| put64(b, 128 + 32, 0),
            HeaderError::EmptyDisk { slot: 0 },
        ),
        (
            |b| put32(b, 128 + 44, 17),
            HeaderError::TooManyExtents { slot: 0, count: 17 },
        ),
        (
            |b| put32(b, 128 + 44, 0),
            HeaderError::TooManyExtents { slot: 0, count: 0 },
        ),
        (
            |b| put32(b, 128 + 48 + 8, 1),
            HeaderError::ReservedNotZero {
                offset: 128 + 48 + 8,
            },
        ),
        (
            |b| put32(b, 128 + 52, 0),
            HeaderError::EmptyExtent { slot: 0, extent: 0 },
        ),
        (
            |b| put32(b, 128 + 48, 7),
            HeaderError::ExtentOutOfStore { slot: 0, extent: 0 },
        ),
        (
            |b| put32(b, 128 + 52, 200),
            HeaderError::ExtentOutOfStore { slot: 0, extent: 0 },
        ),
        (
            |b| put32(b, 128 + 48, u32::MAX),
            HeaderError::ExtentOutOfStore { slot: 0, extent: 0 },
        ),
        (
            |b| put32(b, 128 + 192 + 48, 9),
            HeaderError::ExtentOverlap {
                slot: 1,
                extent: 0,
                other_slot: 0,
            },
        ),
        (
            |b| {
                put32(b, 128 + 44, 2);
                put32(b, 128 + 56, 9);
                put32(b, 128 + 60, 1);
            },
            HeaderError::ExtentOverlap {
                slot: 0,
                extent: 1,
                other_slot: 0,
            },
        ),
        (
            |b| put64(b, 128 + 32, 17),
            HeaderError::SizeBeyondExtents {
                slot: 0,
                size_sectors: 17,
                capacity_sectors: 16,
            },
        ),
    ];
    for (i, (edit, want)) in cases.into_iter().enumerate() {
        let (mut d, mut s) = fresh(1024);
        s.create(&mut d, "root", 8192).unwrap(); // slot 0: units 8..10
        s.create(&mut d, "swap", 4096).unwrap(); // slot 1: unit 10; current copy A (gen 4)
        assert_eq!(s.current_copy(), Copy::A);
        edit(&mut d.data[..HEADER_BYTES]);
        reseal(&mut d, Copy::A);
        // Copy B (gen 3) is the fallback; the store still opens from it.
        let o = Store::open(&mut d, whole(1024)).unwrap();
        assert_eq!(o.current_copy(), Copy::B, "case {i}");
        assert_eq!(o.copies()[0], CopyState::Damaged(want.clone()), "case {i}");
        assert!(!want.to_string().is_empty());
    }
    // The checksum itself.
    let (mut d, _) = fresh(1024);
    d.data[HEADER_BYTES - 1] ^= 0x80;
    let o = Store::open(&mut d, whole(1024)).unwrap();
    assert!(matches!(
        o.copies()[0],
        CopyState::Damaged(HeaderError::Checksum { .. })
    ));
    // A header copy that does not fit in the region.
    let mut d = MemDevice::new(40);
    assert_eq!(
        Store::open(&mut d, whole(40)).unwrap_err(),
        StoreError::BothCopiesBad {
            a: HeaderError::BadMagic,
            b: HeaderError::StoreTooSmall { sectors: 40 }
        }
    );
}

#[test]
fn operation_errors() {
    let (mut d, mut s) = fresh(1024);
    assert_eq!(
        s.create(&mut d, "Root", 512),
        Err(StoreError::BadName("Root".into()))
    );
    assert_eq!(
        s.create(&mut d, "", 512),
        Err(StoreError::BadName("".into()))
    );
    assert_eq!(
        s.create(&mut d, &"a".repeat(33), 512),
        Err(StoreError::BadName("a".repeat(33)))
    );
    assert_eq!(s.create(&mut d, "a", 0), Err(StoreError::BadSize(0)));
    assert_eq!(s.create(&mut d, "a", 513), Err(StoreError::BadSize(513)));
    s.create(&mut d, "a", 512).unwrap();
    assert_eq!(
        s.create(&mut d, "a", 512),
        Err(StoreError::DiskExists("a".into()))
    );
    assert_eq!(
        s.grow(&mut d, "b", 512),
        Err(StoreError::NoSuchDisk("b".into()))
    );
    assert_eq!(
        s.delete(&mut d, "b"),
        Err(StoreError::NoSuchDisk("b".into()))
    );
    assert_eq!(s.grow(&mut d, "a", 0), Err(StoreError::BadSize(0)));
    s.grow(&mut d, "a", 1024).unwrap();
    assert_eq!(
        s.grow(&mut d, "a", 512),
        Err(StoreError::WouldShrink {
            name: "a".into(),
            size: 1024,
            requested: 512
        })
    );
    assert_eq!(
        s.create(&mut d, "big", 120 * 4096),
        Err(StoreError::NoSpace {
            needed_bytes: 120 * 4096,
            free_bytes: 119 * 4096
        })
    );
    let gen = s.header().generation;
    // Failed operations write nothing.
    assert_eq!(reopen(&mut d).header().generation, gen);
    assert_eq!(
        Store::format(&mut d, whole(1024), 12, ID).unwrap_err(),
        StoreError::BadUnit(12)
    );
    assert_eq!(
        Store::format(&mut d, whole(64), UNIT, ID).unwrap_err(),
        StoreError::RegionTooSmall {
            sectors: 64,
            needed: 72
        }
    );
}

#[test]
fn too_many_disks_and_fragmentation() {
    let (mut d, mut s) = fresh(2048); // 248 data units
    for i in 0..MAX_DISKS {
        s.create(&mut d, &alloc::format!("d{i}"), 4096).unwrap();
    }
    assert_eq!(
        s.create(&mut d, "one-more", 512),
        Err(StoreError::TooManyDisks)
    );
    // Free every other disk: 32 one-unit holes, then ask for 20 units in a disk.
    for i in (0..MAX_DISKS).step_by(2) {
        s.delete(&mut d, &alloc::format!("d{i}")).unwrap();
    }
    let o = reopen(&mut d);
    assert_eq!(o.header(), s.header());
    // The tail after d63 is one large run: a big disk fits whole.
    s.create(&mut d, "big", 100 * 4096).unwrap();
    assert_eq!(s.disk("big").unwrap().extents.len(), 1);
    // Now only the tail's rest (184 - 100 = 84 units) and 32 holes remain; a disk of
    // 84 + 17 units needs 18 extents.
    assert_eq!(
        s.create(&mut d, "frag", (84 + 17) * 4096),
        Err(StoreError::TooFragmented {
            name: "frag".into()
        })
    );
    s.create(&mut d, "ok", (84 + 15) * 4096).unwrap();
    assert_eq!(s.disk("ok").unwrap().extents.len(), 16);
}

#[test]
fn io_errors_reach_the_caller() {
    let (mut d, mut s) = fresh(1024);
    d.writes_left = Some(0);
    assert_eq!(
        s.create(&mut d, "a", 512),
        Err(StoreError::Io(IoError::Timeout { lba: 64 }))
    );
    let mut short = MemDevice::new(10);
    assert_eq!(
        short.read(9, &mut [0; 1024]),
        Err(IoError::OutOfRange {
            lba: 9,
            sectors: 2,
            device_sectors: 10
        })
    );
    assert_eq!(
        short.write(0, &[0; 100]),
        Err(IoError::Unaligned { bytes: 100 })
    );
}

#[test]
fn scratch_check_uses_the_last_free_unit_and_leaves_it_zero() {
    let (mut d, mut s) = fresh(1024);
    s.create(&mut d, "a", 4096).unwrap();
    let before = d.data.clone();
    let r = s.scratch_check(&mut d).unwrap().unwrap();
    // Units 9..128 are free: the last is unit 127, LBA 1016.
    assert_eq!((r.lba, r.bytes, r.mismatches), (1016, 4096, 0));
    assert_eq!(
        d.data, before,
        "the scratch unit is zero again, nothing else changed"
    );
    assert_eq!(d.flushes, 2 + 2 + 2);
    let (mut d, mut s) = fresh(80); // 10 units: 8 for headers, 2 for data
    s.create(&mut d, "full", 8192).unwrap();
    assert_eq!(s.scratch_check(&mut d), Ok(None));
}
