//! The backend of a virtio-blk device over a disk of a disk store (`disk = "NAME"`,
//! docs/configuration.md): each guest transfer becomes driver requests on the store's drive
//! (`vm::store::disk_io`), answered `Pending` until the drive completed them, so a write
//! is acknowledged to the guest only when the drive has it and FLUSH is the drive's cache
//! flush (ATA FLUSH CACHE EXT). One VM at a time may open a disk for writing; read-only
//! openings may share it with each other, never with a writer.

use super::{Storage, STORAGE};
use alloc::format;
use alloc::string::String;
use virtio::blk::{BackendError, BlockBackend};
use vm::store::block::{BlockDevice, Op, Transfers};
use vm::store::disk_io::{DiskIo, IoStatus, MAX_PART_BYTES};

/// Who holds a store disk open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opening {
    pub drive: usize,
    pub name: String,
    pub vm: String,
    pub writer: bool,
}

/// A store disk opened by a VM.
#[derive(Debug)]
pub struct StoreDisk {
    io: DiskIo,
    device: usize,
    drive: usize,
    name: String,
    vm: String,
    read_only: bool,
    /// The guest's data of a write, handed to `DiskIo` (which takes `&mut`, as for reads):
    /// one transfer's worth, allocated when the disk is opened.
    write_copy: alloc::vec::Vec<u8>,
    /// The drive's transfer counters when the disk was opened.
    transfers_at_open: Transfers,
    /// The drive has a discard command (NVMe Dataset Management, ATA TRIM), a zeroing
    /// command (NVMe Write Zeroes): DISCARD / WRITE_ZEROES pass through to it.
    drive_discard: bool,
    drive_zeroes: bool,
}

/// Why a VM's store disk cannot be opened (the VM is not started).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenError {
    NoStores,
    NotFound {
        name: String,
        stores: usize,
    },
    Ambiguous {
        name: String,
        first: String,
        second: String,
    },
    InUse {
        name: String,
        by: String,
        writer: bool,
    },
}

impl core::fmt::Display for OpenError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            OpenError::NoStores => write!(
                f,
                "no drive of this machine holds a disk store; create one with `bulkhead-boot disk init` (the boot report lists the drives)"
            ),
            OpenError::NotFound { name, stores } => write!(
                f,
                "no disk {name:?} in the {stores} disk store(s) found; `bulkhead-boot disk ls DRIVE` lists them, `disk create` adds one"
            ),
            OpenError::Ambiguous { name, first, second } => write!(
                f,
                "disk {name:?} is in the stores of both {first} and {second}; rename one with the host tool"
            ),
            OpenError::InUse { name, by, writer } => write!(
                f,
                "disk {name:?} is open {} by VM {by}; one writer at a time (or any number of `read-only = true` readers)",
                if *writer { "for writing" } else { "read-only" }
            ),
        }
    }
}

fn drive_name(s: &Storage, drive: usize) -> String {
    let d = &s.drives[drive];
    s.devices[d.device].units()[d.unit].name.clone()
}

impl StoreDisk {
    /// Opens disk `name` of whichever store holds it, for VM `vm`.
    pub fn open(name: &str, read_only: bool, vm: &str) -> Result<StoreDisk, OpenError> {
        let mut guard = STORAGE.lock();
        let s = guard.as_mut().ok_or(OpenError::NoStores)?;
        let stores = s.drives.iter().filter(|d| d.store.is_some()).count();
        if stores == 0 {
            return Err(OpenError::NoStores);
        }
        let mut holders = s
            .drives
            .iter()
            .enumerate()
            .filter(|(_, d)| d.store.as_ref().is_some_and(|st| st.disk(name).is_some()));
        let (drive, _) = holders.next().ok_or_else(|| OpenError::NotFound {
            name: name.into(),
            stores,
        })?;
        if let Some((other, _)) = holders.next() {
            return Err(OpenError::Ambiguous {
                name: name.into(),
                first: drive_name(s, drive),
                second: drive_name(s, other),
            });
        }
        if let Some(o) = s
            .open
            .iter()
            .find(|o| o.drive == drive && o.name == name && (o.writer || !read_only))
        {
            return Err(OpenError::InUse {
                name: name.into(),
                by: o.vm.clone(),
                writer: o.writer,
            });
        }
        let d = &s.drives[drive];
        let map = d
            .store
            .as_ref()
            .and_then(|st| st.map(name).ok())
            .ok_or_else(|| OpenError::NotFound {
                name: name.into(),
                stores,
            })?;
        s.next_tag_base += 1;
        let io = DiskIo::new(map, d.unit, s.next_tag_base << 48);
        let transfers_at_open = s.devices[d.device].transfers();
        let (drive_discard, drive_zeroes) = s.devices[d.device]
            .units()
            .get(d.unit)
            .map_or((false, false), |u| (u.discard, u.write_zeroes));
        s.open.push(Opening {
            drive,
            name: name.into(),
            vm: vm.into(),
            writer: !read_only,
        });
        log::info!(
            "vm {vm}: virtio-blk over store disk {name} on {}{}",
            drive_name(s, drive),
            if read_only { " (read-only)" } else { "" }
        );
        Ok(StoreDisk {
            io,
            device: d.device,
            drive,
            name: name.into(),
            vm: vm.into(),
            read_only,
            write_copy: alloc::vec![0; MAX_PART_BYTES],
            transfers_at_open,
            drive_discard,
            drive_zeroes,
        })
    }

    /// The device report's extra counters; `drive-dma` / `drive-pio` are the drive's data
    /// commands since this disk was opened, by how their data moved (bus-master DMA, PIO).
    pub fn report(&self) -> String {
        let st = self.io.stats;
        let now = STORAGE
            .lock()
            .as_ref()
            .and_then(|s| s.devices.get(self.device).map(|d| d.transfers()))
            .unwrap_or(self.transfers_at_open);
        format!(
            " store-disk={} reads={} writes={} flushes={} drive-requests={} drive-errors={} drive-dma={} drive-pio={} drive-discards={} drive-write-zeroes={}",
            self.name,
            st.reads,
            st.writes,
            st.flushes,
            st.requests,
            st.errors,
            now.dma - self.transfers_at_open.dma,
            now.pio - self.transfers_at_open.pio,
            st.discards,
            st.zeroed
        )
    }

    /// One bounded step: polls the drive once, takes this disk's completions, asks again.
    fn step(&mut self, op: Op, offset: u64, buf: &mut [u8]) -> Result<(), BackendError> {
        self.on_drive(|io, dev| io.step(dev, op, offset, buf))
    }

    /// One bounded step of zeroing `len` bytes at `offset` (`DiskIo::zero_step`).
    fn zero_step(&mut self, offset: u64, len: u64, zeros: &mut [u8]) -> Result<(), BackendError> {
        self.on_drive(|io, dev| io.zero_step(dev, offset, len, zeros))
    }

    /// One bounded step of a discard or write-zeroes passed to the drive
    /// (`DiskIo::range_step`).
    fn range_step(&mut self, discard: bool, offset: u64, len: u64) -> Result<(), BackendError> {
        self.on_drive(|io, dev| io.range_step(dev, discard, offset, len))
    }

    /// Polls the drive once, takes this disk's completions, then asks `ask`.
    fn on_drive(
        &mut self,
        ask: impl FnOnce(&mut DiskIo, &mut dyn BlockDevice) -> IoStatus,
    ) -> Result<(), BackendError> {
        let mut guard = STORAGE.lock();
        let Some(s) = guard.as_mut() else {
            return Err(BackendError::Io);
        };
        let Some(dev) = s.devices.get_mut(self.device) else {
            return Err(BackendError::Io);
        };
        if let Some((unit, c)) = dev.poll() {
            s.completions.push((self.device, unit, c));
        }
        let mut i = 0;
        while i < s.completions.len() {
            if s.completions[i].0 == self.device && self.io.owns(s.completions[i].2.tag) {
                let (_, _, c) = s.completions.swap_remove(i);
                self.io.deliver(c);
            } else {
                i += 1;
            }
        }
        match ask(&mut self.io, &mut **dev) {
            IoStatus::Pending => Err(BackendError::Pending),
            IoStatus::Done(Ok(())) => Ok(()),
            IoStatus::Done(Err(e)) => {
                log::warn!("vm {}: store disk {}: {e}", self.vm, self.name);
                Err(BackendError::Io)
            }
        }
    }
}

impl Drop for StoreDisk {
    fn drop(&mut self) {
        if let Some(s) = STORAGE.lock().as_mut() {
            if let Some(i) = s
                .open
                .iter()
                .position(|o| o.drive == self.drive && o.name == self.name && o.vm == self.vm)
            {
                s.open.swap_remove(i);
            }
        }
    }
}

impl BlockBackend for StoreDisk {
    fn len(&self) -> u64 {
        self.io.len()
    }

    fn read_only(&self) -> bool {
        self.read_only
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), BackendError> {
        self.step(Op::Read, offset, buf)
    }

    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), BackendError> {
        if self.read_only {
            return Err(BackendError::ReadOnly);
        }
        // DiskIo copies the data into its driver requests; it never writes to `buf` for a write.
        // The device asks for at most `max_transfer` bytes at a time.
        let mut copy = core::mem::take(&mut self.write_copy);
        let result = match copy.get_mut(..data.len()) {
            Some(buf) => {
                buf.copy_from_slice(data);
                self.step(Op::Write, offset, buf)
            }
            None => Err(BackendError::Io),
        };
        self.write_copy = copy;
        result
    }

    /// One driver request's worth (`vm::store::disk_io::MAX_PART_BYTES`, 128 sectors: one
    /// ATA READ/WRITE SECTORS EXT command) per call instead of 4 KiB pieces.
    fn max_transfer(&self) -> usize {
        MAX_PART_BYTES
    }

    fn flush(&mut self) -> Result<(), BackendError> {
        self.step(Op::Flush, 0, &mut [])
    }

    /// DISCARD and WRITE_ZEROES are offered (virtio 1.2 §5.2.3, limits in the config space).
    /// On an NVMe drive with Dataset Management / Write Zeroes (ONCS bits 2 and 3) they pass
    /// through, DISCARD also to an ATA drive with TRIM (DATA SET MANAGEMENT by DMA);
    /// otherwise WRITE_ZEROES writes zeroes and DISCARD is a no-op.
    fn supports_zeroes(&self) -> bool {
        true
    }

    /// Zeroes written in driver-request pieces (`DiskIo::zero_step`), each acknowledged by
    /// the drive; the device asks again while `Pending`. The device checked range and mode.
    fn write_zeroes(&mut self, offset: u64, len: u64) -> Result<(), BackendError> {
        if self.read_only {
            return Err(BackendError::ReadOnly);
        }
        if self.drive_zeroes {
            return self.range_step(false, offset, len);
        }
        let mut zeros = core::mem::take(&mut self.write_copy);
        let result = self.zero_step(offset, len, &mut zeros);
        self.write_copy = zeros;
        result
    }

    /// virtio 1.2 §5.2.6.2 leaves a discarded range's contents unspecified: NVMe Dataset
    /// Management (deallocate) or ATA TRIM where the drive has it, else nothing to do (the data stays;
    /// the store's extents stay allocated either way).
    fn discard(&mut self, offset: u64, len: u64) -> Result<(), BackendError> {
        if self.read_only {
            return Err(BackendError::ReadOnly);
        }
        if self.drive_discard {
            return self.range_step(true, offset, len);
        }
        match offset.checked_add(len) {
            Some(end) if end <= self.io.len() => Ok(()),
            _ => Err(BackendError::OutOfRange { offset, len }),
        }
    }
}

/// A virtio-blk backend: a RAM disk or a store disk.
#[derive(Debug)]
pub enum VmDisk {
    Ram(virtio::RamDisk),
    Store(StoreDisk),
}

impl VmDisk {
    /// Whether a transfer is waiting for the drive (never for a RAM disk).
    pub fn busy(&self) -> bool {
        match self {
            VmDisk::Ram(_) => false,
            VmDisk::Store(s) => s.io.busy(),
        }
    }

    /// Extra counters for the device report (store disks only).
    pub fn report(&self) -> String {
        match self {
            VmDisk::Ram(_) => String::new(),
            VmDisk::Store(s) => s.report(),
        }
    }
}

impl BlockBackend for VmDisk {
    /// A RAM disk's contents go into a snapshot; a store disk keeps its own (External).
    fn save_contents(&self) -> virtio::state::DiskContents<'_> {
        match self {
            VmDisk::Ram(d) => d.save_contents(),
            VmDisk::Store(d) => d.save_contents(),
        }
    }
    fn load_contents(
        &mut self,
        contents: &virtio::state::DiskContents<'_>,
    ) -> Result<(), virtio::StateError> {
        match self {
            VmDisk::Ram(d) => d.load_contents(contents),
            VmDisk::Store(d) => d.load_contents(contents),
        }
    }
    fn len(&self) -> u64 {
        match self {
            VmDisk::Ram(d) => d.len(),
            VmDisk::Store(d) => d.len(),
        }
    }
    fn read_only(&self) -> bool {
        match self {
            VmDisk::Ram(d) => BlockBackend::read_only(d),
            VmDisk::Store(d) => d.read_only(),
        }
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), BackendError> {
        match self {
            VmDisk::Ram(d) => d.read_at(offset, buf),
            VmDisk::Store(d) => d.read_at(offset, buf),
        }
    }
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), BackendError> {
        match self {
            VmDisk::Ram(d) => d.write_at(offset, data),
            VmDisk::Store(d) => d.write_at(offset, data),
        }
    }
    fn flush(&mut self) -> Result<(), BackendError> {
        match self {
            VmDisk::Ram(d) => d.flush(),
            VmDisk::Store(d) => d.flush(),
        }
    }
    fn supports_zeroes(&self) -> bool {
        match self {
            VmDisk::Ram(d) => d.supports_zeroes(),
            VmDisk::Store(d) => d.supports_zeroes(),
        }
    }
    fn max_transfer(&self) -> usize {
        match self {
            VmDisk::Ram(d) => d.max_transfer(),
            VmDisk::Store(d) => d.max_transfer(),
        }
    }
    fn worst_case_bytes(&self) -> u64 {
        match self {
            VmDisk::Ram(d) => d.worst_case_bytes(),
            VmDisk::Store(d) => d.worst_case_bytes(),
        }
    }
    fn write_zeroes(&mut self, offset: u64, len: u64) -> Result<(), BackendError> {
        match self {
            VmDisk::Ram(d) => d.write_zeroes(offset, len),
            VmDisk::Store(d) => d.write_zeroes(offset, len),
        }
    }
    fn discard(&mut self, offset: u64, len: u64) -> Result<(), BackendError> {
        match self {
            VmDisk::Ram(d) => d.discard(offset, len),
            VmDisk::Store(d) => d.discard(offset, len),
        }
    }
}
