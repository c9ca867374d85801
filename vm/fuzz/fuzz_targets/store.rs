//! Fuzzes the disk store's reader (`vm::store`): a drive image (a valid store, GPT or whole
//! drive, with fuzz-chosen byte edits, re-sealed or not, or raw fuzz bytes) opens as a store
//! or gives a typed error, never a panic. An opened store respects the format's invariants
//! (extents inside the store, no overlaps, disks within their extents) and survives a change
//! and a reopen unchanged.
//!
//! Run with `cargo fuzz run store` from `vm/` (e.g. `cargo fuzz run store -- -max_total_time=20`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use vm::store::header::{first_data_unit, total_units, HEADER_BYTES, MAX_DISKS, MAX_EXTENTS};
use vm::store::mem::MemDevice;
use vm::store::*;

const SECTORS: u64 = 2600;

fn reseal(d: &mut MemDevice, at: usize) {
    let crc = crc::crc32c(&d.data[at..at + HEADER_BYTES - 4]);
    d.data[at + HEADER_BYTES - 4..at + HEADER_BYTES].copy_from_slice(&crc.to_le_bytes());
}

static BASE: [OnceLock<(MemDevice, Region)>; 2] = [OnceLock::new(), OnceLock::new()];

/// A store with two disks (one in two extents), on a whole drive or in a GPT partition.
fn base(gpt: bool) -> (MemDevice, Region) {
    let mut d = MemDevice::new(SECTORS);
    let region = if gpt {
        for (lba, bytes) in gpt::fresh(SECTORS, [[1; 16], [2; 16]]).unwrap() {
            d.write(lba, &bytes).unwrap();
        }
        Store::locate(&mut d).unwrap()
    } else {
        Region { start: 0, sectors: SECTORS, partition: None }
    };
    let mut s = Store::format(&mut d, region, 8, [7; 16]).unwrap();
    s.create(&mut d, "root", 8192).unwrap();
    s.create(&mut d, "swap", 4096).unwrap();
    s.grow(&mut d, "root", 16384).unwrap();
    (d, region)
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else { return };
    let mut d = if flags & 8 != 0 {
        let mut b = rest.to_vec();
        b.resize(b.len().div_ceil(SECTOR) * SECTOR, 0);
        MemDevice::from_bytes(b)
    } else {
        let (mut d, region) = BASE[usize::from(flags & 4 != 0)].get_or_init(|| base(flags & 4 != 0)).clone();
        let base = region.start as usize * SECTOR;
        // Edits: (u16 offset into the two header copies + GPT area, value).
        for e in rest.chunks_exact(3) {
            let off = usize::from(u16::from_le_bytes([e[0], e[1]])) % (2 * HEADER_BYTES);
            let at = if flags & 16 != 0 { off % (34 * SECTOR) } else { base + off };
            d.data[at] = e[2];
        }
        if flags & 1 != 0 {
            reseal(&mut d, base);
        }
        if flags & 2 != 0 {
            reseal(&mut d, base + HEADER_BYTES);
        }
        d
    };
    let Ok(mut s) = Store::open_drive(&mut d).map_err(|e| e.to_string()) else { return };
    let h = s.header().clone();
    let region = s.region();
    assert!(h.store_sectors <= region.sectors);
    assert!(h.disks.len() <= MAX_DISKS);
    let (first, total) = (first_data_unit(h.unit_sectors), total_units(h.store_sectors, h.unit_sectors));
    let mut used: Vec<(u64, u64)> = Vec::new();
    for disk in &h.disks {
        assert!(!disk.extents.is_empty() && disk.extents.len() <= MAX_EXTENTS);
        for e in &disk.extents {
            assert!(e.units > 0 && u64::from(e.start_unit) >= first && e.end() <= total);
            assert!(used.iter().all(|&(s, n)| e.end() <= s || s + n <= u64::from(e.start_unit)));
            used.push((u64::from(e.start_unit), u64::from(e.units)));
        }
        let m = s.map(&disk.name).unwrap();
        let mapped: u64 = m.runs(0, m.sectors()).unwrap().map(|(lba, n)| {
            assert!(lba >= region.start && lba + n <= region.start + region.sectors);
            n
        }).sum();
        assert_eq!(mapped, disk.size_sectors);
    }
    let free: u64 = s.free_runs().iter().map(|e| u64::from(e.units)).sum();
    assert_eq!(free + used.iter().map(|u| u.1).sum::<u64>(), total - first);
    // A change commits to the other copy and reads back the same.
    let changed = match h.disks.first().map(|x| x.name.clone()) {
        Some(n) if flags & 32 != 0 => s.delete(&mut d, &n),
        Some(n) => s.grow(&mut d, &n, h.disks[0].size_bytes() + 512),
        None => s.create(&mut d, "fuzz", 512),
    };
    if changed.is_ok() {
        let o = Store::open(&mut d, region).unwrap();
        assert_eq!(o.header(), s.header());
    }
});
