//! The hypervisor's block drivers and its disk stores (and the uplink NIC, `e1000`): at boot, PCI enumeration finds the
//! storage controllers, each driver probes its units, and every drive is checked for a disk
//! store (`vm::store`), all reported. Afterwards the drivers run asynchronously: requests are
//! submitted through the `BlockDevice` seam and completed by [`poll`], which the scheduler
//! calls between slices (bounded work per call), never from an exit handler.

mod ata;
pub mod e1000;
mod nvme;
pub mod store_disk;

use alloc::boxed::Box;
use alloc::vec::Vec;
use log::{info, warn};
use spin::Mutex;
use vm::store::ata::AtaChannel;
use vm::store::block::{BlockDevice, Completion, SyncUnit};
use vm::store::{CopyState, Store, StoreError};

/// A drive's commands may take this long before they fail (and the channel is reset).
const TIMEOUT_SECONDS: u64 = 2;
/// Polls a boot-time (synchronous) request may take: bounded even if the TSC stalls.
const SYNC_MAX_POLLS: u64 = 50_000_000;

/// One unit of one block device, and the store on it if it has one.
pub struct Drive {
    pub device: usize,
    pub unit: usize,
    pub store: Option<Store>,
}

/// Every block device, its drives, and the completions not yet collected.
pub struct Storage {
    pub devices: Vec<Box<dyn BlockDevice + Send>>,
    pub drives: Vec<Drive>,
    /// Completions polled from the devices, for the disk whose tag they carry.
    pub completions: Vec<(usize, usize, Completion)>,
    /// Store disks open by VMs.
    pub open: Vec<store_disk::Opening>,
    /// The last tag base handed to a store disk (`vm::store::disk_io`).
    pub next_tag_base: u64,
}

pub static STORAGE: Mutex<Option<Storage>> = Mutex::new(None);

fn mib(sectors: u64) -> u64 {
    sectors * vm::store::SECTOR as u64 / (1024 * 1024)
}

/// Finds the controllers and drives and opens their stores; prints what it found. With
/// `store_check` (`[hypervisor] store-check`), each store also gets a write / flush /
/// read-back of a free allocation unit (`vm::store::Store::scratch_check`).
pub fn init(store_check: bool, rsdp: Option<u64>) {
    let mechanism = crate::pci::init(rsdp);
    let functions = crate::pci::enumerate();
    info!("pci: {} functions ({mechanism})", functions.len());
    for f in functions
        .iter()
        .filter(|f| f.class == crate::pci::class::MASS_STORAGE)
    {
        info!("pci: {f} (mass storage)");
    }
    e1000::init(&functions);
    let tsc_hz = crate::arch::calibrate_tsc_hz();
    let timeout = tsc_hz.saturating_mul(TIMEOUT_SECONDS);
    let mut devices: Vec<Box<dyn BlockDevice + Send>> = Vec::new();
    for (i, bus) in ata::channels(&functions).into_iter().enumerate() {
        let name = alloc::format!("ata{i}");
        let bus_master = bus.bus_master;
        let ch = AtaChannel::probe(bus, &name, timeout);
        match (bus_master, &ch.dma_unusable) {
            (Some(bm), None) => info!(
                "{name}: bus-master DMA (registers at port {:#x}), {} KiB bounce buffer at {:#x}",
                bm.base,
                bm.area.buffer_bytes / 1024,
                bm.area.buffer
            ),
            (Some(_), Some(e)) => warn!("{name}: bus-master DMA not used (PIO instead): {e}"),
            (None, _) => info!("{name}: no bus master: PIO"),
        }
        for (which, why) in &ch.skipped {
            info!("drive {which}: not used: {why}");
        }
        for (u, _) in ch.trim.iter().enumerate().filter(|(_, &t)| t) {
            let unit = &ch.units()[u];
            if unit.discard {
                info!(
                    "drive {}: TRIM (IDENTIFY word 169 bit 0): DISCARD passes through as DATA SET MANAGEMENT",
                    unit.name
                );
            } else {
                info!(
                    "drive {}: says TRIM (IDENTIFY word 169 bit 0), but DATA SET MANAGEMENT needs bus-master DMA: DISCARD stays a no-op",
                    unit.name
                );
            }
        }
        if !ch.units().is_empty() {
            devices.push(Box::new(ch));
        }
    }
    for c in nvme::controllers(&functions, tsc_hz) {
        if !c.units().is_empty() {
            devices.push(Box::new(c));
        }
    }
    let mut drives = Vec::new();
    for (d, dev) in devices.iter_mut().enumerate() {
        for u in 0..dev.units().len() {
            let i = dev.units()[u].clone();
            let nvme = i.name.starts_with("nvme");
            info!(
                "drive {}: \"{}\", {} sectors ({} MiB), {}, {}{}",
                i.name,
                i.model,
                i.sectors,
                mib(i.sectors),
                if i.write_cache {
                    "write cache"
                } else {
                    "no write cache"
                },
                match (i.flush, nvme) {
                    (false, _) => "no flush command",
                    (true, true) => "Flush",
                    (true, false) => "FLUSH CACHE EXT",
                },
                match (nvme, i.dma) {
                    (true, _) => "",
                    (false, true) => ", bus-master DMA",
                    (false, false) => ", PIO",
                }
            );
            let mut io = SyncUnit {
                dev: &mut **dev,
                unit: u,
                max_polls: SYNC_MAX_POLLS,
            };
            let store = match Store::open_drive(&mut io) {
                Ok(s) => {
                    report(&i.name, &s);
                    if store_check {
                        check(&i.name, &s, &mut io);
                    }
                    Some(s)
                }
                Err(StoreError::NotAStore) => {
                    info!("drive {}: no disk store", i.name);
                    None
                }
                Err(StoreError::NoStorePartition) => {
                    info!(
                        "drive {}: no disk store (its GPT has no Bulkhead store partition)",
                        i.name
                    );
                    None
                }
                Err(e) => {
                    warn!(
                        "drive {}: disk store not used (nothing is written to it): {e}",
                        i.name
                    );
                    None
                }
            };
            drives.push(Drive {
                device: d,
                unit: u,
                store,
            });
        }
    }
    if drives.is_empty() {
        info!("storage: no drives");
    }
    *STORAGE.lock() = Some(Storage {
        devices,
        drives,
        completions: Vec::new(),
        open: Vec::new(),
        next_tag_base: 0,
    });
}

/// The store check, and how the drive moved its data (the device's transfer counters
/// before and after: bus-master DMA or PIO on ATA, NVMe always DMA).
fn check(drive: &str, s: &Store, io: &mut SyncUnit<'_, dyn BlockDevice + Send>) {
    let before = io.dev.transfers();
    let result = s.scratch_check(io);
    let after = io.dev.transfers();
    let (dma, pio) = (after.dma - before.dma, after.pio - before.pio);
    match &result {
        Ok(Some(r)) if r.mismatches == 0 => info!(
            "store-check {drive}: wrote, flushed and read back {} bytes at sector {}: ok (crc32c {:#010x}); {dma} transfers by DMA, {pio} by PIO",
            r.bytes, r.lba, r.checksum
        ),
        Ok(Some(r)) => warn!(
            "store-check {drive}: FAILED: {} of {} bytes read back at sector {} differ from what was written; check the drive",
            r.mismatches, r.bytes, r.lba
        ),
        Ok(None) => info!("store-check {drive}: no free allocation unit to test on; skipped"),
        Err(e) => warn!("store-check {drive}: FAILED: {e}"),
    }
    if let Ok(Some(r)) = result {
        zeroing(drive, r.lba, r.bytes, io);
    }
}

/// The pass-through half of the store check: DISCARD / WRITE_ZEROES as the drive does them
/// (NVMe Dataset Management and Write Zeroes when ONCS says so), checked to read back zero.
fn zeroing(drive: &str, lba: u64, bytes: usize, io: &mut SyncUnit<'_, dyn BlockDevice + Send>) {
    match io.zeroing_check(lba, bytes) {
        Ok(z) if z.nonzero == 0 => info!(
            "store-check {drive}: {}{} on {bytes} bytes at sector {lba}: ok, read back as zeroes",
            match (z.discarded, drive.starts_with("nvme")) {
                (true, true) => "discard by Dataset Management (deallocate), then ",
                (true, false) => "discard by DATA SET MANAGEMENT (TRIM), then ",
                (false, _) => "no discard command (DISCARD is a no-op), ",
            },
            if z.drive_zeroed {
                "zeroes by Write Zeroes"
            } else {
                "zeroes written (no zeroing command)"
            }
        ),
        Ok(z) => warn!(
            "store-check {drive}: FAILED: {} of {bytes} bytes at sector {lba} are not zero after zeroing; check the drive",
            z.nonzero
        ),
        Err(e) => warn!("store-check {drive}: FAILED: zeroing at sector {lba}: {e}"),
    }
}

fn report(drive: &str, s: &Store) {
    let r = s.region();
    let place = match r.partition {
        Some(p) => alloc::format!("GPT partition {}", p + 1),
        None => "whole drive".into(),
    };
    let copy = |c: &CopyState| match c {
        CopyState::Valid { generation } => alloc::format!("generation {generation}"),
        CopyState::Damaged(e) => alloc::format!("DAMAGED ({e})"),
    };
    info!(
        "store on {drive} ({place}): {} disks, {} bytes, {} free; header A {}, B {}",
        s.disks().len(),
        s.capacity_bytes(),
        s.free_bytes(),
        copy(&s.copies()[0]),
        copy(&s.copies()[1])
    );
    for c in s.copies() {
        if let CopyState::Damaged(e) = c {
            warn!(
                "store on {drive}: one header copy is damaged ({e}); the next change rewrites it"
            );
        }
    }
    for d in s.disks() {
        info!(
            "store on {drive}: disk {} {} bytes in {} extent(s)",
            d.name,
            d.size_bytes(),
            d.extents.len()
        );
    }
}

/// Whether some device has work in flight (a storage request, an uplink NIC's rings): the
/// console-draining CPU then keeps polling at its idle poll period instead of sleeping long.
pub fn busy() -> bool {
    if e1000::has_uplink() {
        return true;
    }
    STORAGE.try_lock().is_none_or(|g| {
        g.as_ref()
            .is_some_and(|s| s.devices.iter().any(|d| !d.idle()))
    })
}

/// Advances every device by one bounded step and keeps what completed for its submitter;
/// moves the uplink NIC's frames. Called by the scheduler between slices.
pub fn poll() {
    e1000::poll();
    let Some(mut guard) = STORAGE.try_lock() else {
        return;
    };
    let Some(s) = guard.as_mut() else { return };
    for (d, dev) in s.devices.iter_mut().enumerate() {
        if dev.idle() {
            continue;
        }
        if let Some((unit, c)) = dev.poll() {
            s.completions.push((d, unit, c));
        }
    }
}
