//! virtio-blk device (virtio 1.2 §5.2) with a pluggable [`BlockBackend`].

use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use crate::memory::GuestMemory;
use crate::mmio::{DeviceStats, Progress, VirtioDevice, WorkBudget};
use crate::queue::{DescriptorChain, Queue, QueueError};
use crate::spec::{blk_status, device_id, feature, BlkRequestType};
use crate::state::{BlkState, DeviceState, DiskContents, DiskState, QueueState, StateError};

pub use crate::ramdisk::RamDisk;

/// virtio 1.2 §5.2.6: sizes are expressed in 512-byte sectors regardless of blk_size.
pub const SECTOR_SIZE: u64 = 512;
/// Queue size offered for the single request queue (virtio 1.2 §5.2.2).
pub const BLK_QUEUE_SIZE: u16 = 256;
/// virtio 1.2 §5.2.6: struct virtio_blk_req header is 16 bytes.
const HEADER_LEN: u64 = 16;
/// virtio 1.2 §5.2.6: GET_ID returns a 20-byte string.
pub const BLK_ID_BYTES: usize = 20;
/// Bytes copied per backend call unless the backend asks for more
/// ([`BlockBackend::max_transfer`]).
pub const CHUNK: usize = 4096;
/// The most bytes per backend call any backend gets (the device's copy buffer, allocated
/// once when the device is created).
pub const MAX_TRANSFER: usize = 64 * 1024;
/// Maximum sectors of one discard / write-zeroes segment (config max_*_sectors).
const MAX_ZERO_SECTORS: u32 = 0x0040_0000;
/// virtio 1.2 §5.2.6: VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP in virtio_blk_discard_write_zeroes.
const ZEROES_FLAG_UNMAP: u32 = 1;

/// A failed backend operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendError {
    /// The range lies beyond the end of the disk.
    OutOfRange {
        /// Byte offset.
        offset: u64,
        /// Length in bytes.
        len: u64,
    },
    /// The disk is read-only.
    ReadOnly,
    /// Backend I/O failure.
    Io,
    /// An asynchronous backend (a drive) has started the transfer and not finished it: the
    /// device keeps the request in flight and asks again, with the same range, on a later
    /// call. Never an error for the guest.
    Pending,
    /// The disk's heap budget cannot hold the blocks this write needs (copy-on-write
    /// overlay, see [`crate::ramdisk`]); nothing was written to those blocks.
    NoSpace {
        /// The budget in bytes.
        budget: u64,
        /// Bytes charged when the write was refused.
        charged: u64,
        /// Bytes the write needed.
        needed: u64,
    },
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackendError::OutOfRange { offset, len } => {
                write!(f, "disk range {offset:#x}+{len:#x} is out of range")
            }
            BackendError::ReadOnly => write!(f, "disk is read-only"),
            BackendError::Io => write!(f, "backend I/O error"),
            BackendError::Pending => write!(f, "backend transfer in progress"),
            BackendError::NoSpace {
                budget,
                charged,
                needed,
            } => write!(
                f,
                "disk overlay budget exhausted: {charged} of {budget} bytes used, {needed} more \
                 needed; raise the disk's overlay budget in the VM configuration"
            ),
        }
    }
}

/// Storage behind a virtio-blk device.
pub trait BlockBackend {
    /// Size in bytes.
    fn len(&self) -> u64;
    /// Whether the disk is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Whether writes are refused.
    fn read_only(&self) -> bool;
    /// Reads `buf.len()` bytes at byte `offset`.
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), BackendError>;
    /// Writes `data` at byte `offset`.
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), BackendError>;
    /// Makes completed writes durable.
    fn flush(&mut self) -> Result<(), BackendError>;
    /// Whether DISCARD and WRITE_ZEROES are offered (virtio 1.2 §5.2.3). Default: yes.
    fn supports_zeroes(&self) -> bool {
        true
    }
    /// Bytes the device should move per backend call (a drive's transfer size: fewer, larger
    /// drive commands). Clamped to `SECTOR_SIZE..=MAX_TRANSFER` and rounded down to whole
    /// sectors. Default: [`CHUNK`].
    fn max_transfer(&self) -> usize {
        CHUNK
    }
    /// Drops `len` bytes at `offset` (VIRTIO_BLK_T_DISCARD, virtio 1.2 §5.2.6.2: what a
    /// discarded range reads afterwards is not specified). Default: zeroes it
    /// ([`BlockBackend::write_zeroes`]); a backend may also leave the data as it is.
    fn discard(&mut self, offset: u64, len: u64) -> Result<(), BackendError> {
        self.write_zeroes(offset, len)
    }
    /// Heap bytes the backend may still allocate because of guest requests, at most
    /// (reserve them when the VM is created). Default: 0 (nothing allocated after creation).
    fn worst_case_bytes(&self) -> u64 {
        0
    }
    /// The disk's contents for a snapshot ([`crate::state`]). Default:
    /// [`DiskContents::External`], the backend keeps its data itself (a drive) and nothing
    /// is saved. A backend that wraps a RAM disk must forward this and
    /// [`BlockBackend::load_contents`], or its contents are lost.
    fn save_contents(&self) -> DiskContents<'_> {
        DiskContents::External
    }
    /// Replaces the contents with `contents`, taken by [`BlockBackend::save_contents`] of a
    /// backend of the same configuration (size and read-only flag are checked by the
    /// device), after checking all of it; on error nothing changed. Default: accepts only
    /// [`DiskContents::External`].
    fn load_contents(&mut self, contents: &DiskContents<'_>) -> Result<(), StateError> {
        match contents {
            DiskContents::External => Ok(()),
            other => Err(StateError::DiskKind {
                snapshot: other.kind_name(),
                vm: crate::state::DISK_EXTERNAL,
            }),
        }
    }
    /// Zeroes `len` bytes at `offset`. The default writes zeros 512 bytes at a time; the
    /// device bounds how much it asks for per call.
    fn write_zeroes(&mut self, offset: u64, len: u64) -> Result<(), BackendError> {
        let zeros = [0u8; 512];
        let mut done = 0u64;
        while done < len {
            let n = (len - done).min(zeros.len() as u64) as usize;
            let off = offset
                .checked_add(done)
                .ok_or(BackendError::OutOfRange { offset, len })?;
            self.write_at(off, &zeros[..n])?;
            done += n as u64;
        }
        Ok(())
    }
}

/// Limits and identity of a block device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockConfig {
    /// virtio 1.2 §5.2.4 seg_max: maximum data segments per request.
    pub seg_max: u32,
    /// virtio 1.2 §5.2.4 size_max: maximum bytes of any single segment.
    pub size_max: u32,
    /// GET_ID string (NUL-padded, not necessarily NUL-terminated when 20 bytes long).
    pub id: [u8; BLK_ID_BYTES],
}

impl Default for BlockConfig {
    fn default() -> Self {
        let mut id = [0u8; BLK_ID_BYTES];
        id[..13].copy_from_slice(b"bulkhead-disk");
        BlockConfig {
            seg_max: 126,
            size_max: 64 * 1024,
            id,
        }
    }
}

/// A virtio-blk device (virtio 1.2 §5.2) with one request queue.
///
/// Work per transport call is bounded ([`crate::mmio::MAX_REQUESTS_PER_CALL`] requests,
/// [`crate::mmio::MAX_BYTES_PER_CALL`] bytes). A request larger than the byte bound is not
/// refused (a driver that did not negotiate SEG_MAX / SIZE_MAX may send any size, virtio
/// 1.2 §5.2.3): its data phase stops at the bound and continues in the next call from where
/// it stopped; it completes (status byte, used ring) when all its data has moved. Nothing
/// is allocated per request: the chain and the copy buffer are allocated at creation.
#[derive(Debug)]
pub struct BlockDevice<B: BlockBackend> {
    backend: B,
    config: BlockConfig,
    features: u64,
    scratch: Vec<u8>,
    /// The chain of the request being processed.
    chain: DescriptorChain,
    /// The data phase of `chain`, when it did not finish within one call.
    in_flight: Option<InFlight>,
}

/// Outcome of one request: the status byte and bytes written before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Completion {
    status: u8,
    data_written: u32,
}

impl Completion {
    fn status(status: u8) -> Self {
        Completion {
            status,
            data_written: 0,
        }
    }

    /// virtio 1.2 §5.2.6: any backend failure is VIRTIO_BLK_S_IOERR; an exhausted overlay
    /// budget is also counted on its own.
    fn backend_error(e: BackendError, stats: &mut DeviceStats) -> Self {
        if matches!(e, BackendError::NoSpace { .. }) {
            stats.budget_exceeded += 1;
        }
        Completion::status(blk_status::IOERR)
    }
}

/// What the data phase of a request does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DataOp {
    /// VIRTIO_BLK_T_IN: disk → the chain's writable buffers.
    Read,
    /// VIRTIO_BLK_T_OUT: the chain's readable buffers after the header → disk.
    Write,
    /// VIRTIO_BLK_T_WRITE_ZEROES: zero the disk range.
    Zero,
    /// VIRTIO_BLK_T_DISCARD: the backend may drop the range ([`BlockBackend::discard`]).
    Discard,
    /// VIRTIO_BLK_T_FLUSH on a backend that may answer [`BackendError::Pending`].
    Flush,
}

/// The data phase of a request, possibly spanning several transport calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct InFlight {
    op: DataOp,
    /// Byte offset on the disk.
    offset: u64,
    /// Data bytes of the request.
    len: u64,
    /// Data bytes moved so far.
    done: u64,
}

/// The result of starting or advancing a request.
enum Step {
    Complete(Completion),
    Continue(InFlight),
}

impl<B: BlockBackend> BlockDevice<B> {
    /// A device over `backend` with default limits.
    pub fn new(backend: B) -> Self {
        Self::with_config(backend, BlockConfig::default())
    }

    /// A device over `backend` with the given limits and id.
    pub fn with_config(backend: B, mut config: BlockConfig) -> Self {
        // virtio 1.2 §2.7.5.3.1: a chain (header + data + status) fits the queue size.
        config.seg_max = config.seg_max.clamp(1, u32::from(BLK_QUEUE_SIZE) - 2);
        config.size_max = config.size_max.max(SECTOR_SIZE as u32);
        let sector = SECTOR_SIZE as usize;
        let chunk = backend.max_transfer().clamp(sector, MAX_TRANSFER) / sector * sector;
        BlockDevice {
            backend,
            config,
            features: 0,
            scratch: vec![0; chunk],
            chain: DescriptorChain::with_capacity(BLK_QUEUE_SIZE),
            in_flight: None,
        }
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// The backend, mutably.
    pub fn backend_mut(&mut self) -> &mut B {
        &mut self.backend
    }

    /// Heap bytes the device may still allocate because of the guest: the backend's
    /// [`BlockBackend::worst_case_bytes`] (the device's own buffers are allocated at creation).
    pub fn worst_case_bytes(&self) -> u64 {
        self.backend.worst_case_bytes()
    }

    /// Whether a request's data phase stopped at the work bound and waits for the next call.
    pub fn request_in_flight(&self) -> bool {
        self.in_flight.is_some()
    }

    /// Capacity in 512-byte sectors (virtio 1.2 §5.2.4).
    pub fn capacity(&self) -> u64 {
        self.backend.len() / SECTOR_SIZE
    }

    /// virtio 1.2 §5.2.4 struct virtio_blk_config (through write_zeroes_may_unmap).
    fn config_bytes(&self) -> [u8; 60] {
        let mut c = [0u8; 60];
        c[0..8].copy_from_slice(&self.capacity().to_le_bytes());
        c[8..12].copy_from_slice(&self.config.size_max.to_le_bytes());
        c[12..16].copy_from_slice(&self.config.seg_max.to_le_bytes());
        // geometry (16..20) not offered; blk_size at 20.
        c[20..24].copy_from_slice(&(SECTOR_SIZE as u32).to_le_bytes());
        // topology (24..32) not offered; writeback 32, num_queues 34 (MQ not offered).
        c[34..36].copy_from_slice(&1u16.to_le_bytes());
        if !self.backend.read_only() && self.backend.supports_zeroes() {
            c[36..40].copy_from_slice(&MAX_ZERO_SECTORS.to_le_bytes()); // max_discard_sectors
            c[40..44].copy_from_slice(&1u32.to_le_bytes()); // max_discard_seg
            c[44..48].copy_from_slice(&1u32.to_le_bytes()); // discard_sector_alignment
            c[48..52].copy_from_slice(&MAX_ZERO_SECTORS.to_le_bytes()); // max_write_zeroes_sectors
            c[52..56].copy_from_slice(&1u32.to_le_bytes()); // max_write_zeroes_seg
            c[56] = 0; // write_zeroes_may_unmap
        }
        c
    }

    /// Byte range of `sectors_len` bytes at `sector`, if inside the disk.
    fn disk_range(&self, sector: u64, len: u64) -> Option<u64> {
        let offset = sector.checked_mul(SECTOR_SIZE)?;
        let end = offset.checked_add(len)?;
        (end <= self.capacity() * SECTOR_SIZE).then_some(offset)
    }

    /// Validates the request in `self.chain` and either completes it (no data phase, or
    /// invalid) or returns its data phase.
    fn start(&mut self, mem: &mut dyn GuestMemory, stats: &mut DeviceStats) -> Step {
        let chain = &self.chain;
        // virtio 1.2 §5.2.6: header (16 bytes) device-readable, data, status byte
        // device-writable (last byte of the chain).
        let readable = chain.readable_len();
        let writable = chain.writable_len();
        let fail = |status| Step::Complete(Completion::status(status));
        if readable < HEADER_LEN {
            return fail(blk_status::IOERR);
        }
        // seg_max / size_max bind the driver only when it negotiated VIRTIO_BLK_F_SEG_MAX /
        // VIRTIO_BLK_F_SIZE_MAX (virtio 1.2 §5.2.3, §5.2.6.1); violations then fail with
        // IOERR. Without them any size is served (data moves in fixed-size chunks, so a
        // large segment costs no memory). Header and status descriptors are not data.
        let data_segments = chain.descriptor_count().saturating_sub(2);
        let seg_limit = self.features & feature::BLK_SEG_MAX != 0;
        let size_limit = self.features & feature::BLK_SIZE_MAX != 0;
        if (seg_limit && data_segments > self.config.seg_max as usize)
            || (size_limit
                && chain
                    .readable
                    .iter()
                    .chain(chain.writable.iter())
                    .any(|s| s.len > self.config.size_max))
        {
            return fail(blk_status::IOERR);
        }
        let mut hdr = [0u8; HEADER_LEN as usize];
        if chain.read_at(mem, 0, &mut hdr) != Ok(hdr.len()) {
            return fail(blk_status::IOERR);
        }
        let ty = u32::from_le_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]);
        let sector = u64::from_le_bytes([
            hdr[8], hdr[9], hdr[10], hdr[11], hdr[12], hdr[13], hdr[14], hdr[15],
        ]);
        let out_len = readable - HEADER_LEN;
        let in_len = writable - 1; // writable >= 1 checked by the caller
        let Some(ty) = BlkRequestType::from_u32(ty) else {
            // virtio 1.2 §5.2.6.2: unknown request types fail with UNSUPP.
            return fail(blk_status::UNSUPP);
        };
        let data = |op, offset, len| {
            Step::Continue(InFlight {
                op,
                offset,
                len,
                done: 0,
            })
        };
        match ty {
            BlkRequestType::In => match self.data_range(sector, in_len) {
                Some(offset) => data(DataOp::Read, offset, in_len),
                None => fail(blk_status::IOERR),
            },
            BlkRequestType::Out => {
                // virtio 1.2 §5.2.6.2: a read-only device fails OUT with IOERR.
                if self.backend.read_only() {
                    return fail(blk_status::IOERR);
                }
                match self.data_range(sector, out_len) {
                    Some(offset) => data(DataOp::Write, offset, out_len),
                    None => fail(blk_status::IOERR),
                }
            }
            BlkRequestType::Flush => {
                // virtio 1.2 §5.2.6.2: FLUSH only with VIRTIO_BLK_F_FLUSH.
                if self.features & feature::BLK_FLUSH == 0 {
                    return fail(blk_status::UNSUPP);
                }
                // Through the data phase, so a drive's flush can take several calls.
                data(DataOp::Flush, 0, 0)
            }
            BlkRequestType::GetId => {
                let n = (in_len as usize).min(BLK_ID_BYTES);
                match self.chain.write_at(mem, 0, &self.config.id[..n]) {
                    Ok(w) => {
                        stats.bytes_written += w as u64;
                        Step::Complete(Completion {
                            status: blk_status::OK,
                            data_written: w as u32,
                        })
                    }
                    Err(_) => fail(blk_status::IOERR),
                }
            }
            BlkRequestType::Discard | BlkRequestType::WriteZeroes => {
                let op = if ty == BlkRequestType::Discard {
                    DataOp::Discard
                } else {
                    DataOp::Zero
                };
                match self.zero_range(mem, ty, out_len) {
                    Ok((offset, len)) => data(op, offset, len),
                    Err(status) => fail(status),
                }
            }
        }
    }

    /// virtio 1.2 §5.2.6.1: the data length of IN/OUT is a multiple of 512 and the range
    /// lies inside the disk. Returns the byte offset.
    fn data_range(&self, sector: u64, len: u64) -> Option<u64> {
        if !len.is_multiple_of(SECTOR_SIZE) {
            return None;
        }
        self.disk_range(sector, len)
    }

    /// virtio 1.2 §5.2.6: DISCARD / WRITE_ZEROES carry struct
    /// virtio_blk_discard_write_zeroes { le64 sector; le32 num_sectors; le32 flags; }.
    /// Returns the disk byte range or the failure status.
    fn zero_range(
        &self,
        mem: &dyn GuestMemory,
        ty: BlkRequestType,
        len: u64,
    ) -> Result<(u64, u64), u8> {
        let needed = match ty {
            BlkRequestType::Discard => feature::BLK_DISCARD,
            _ => feature::BLK_WRITE_ZEROES,
        };
        if self.features & needed == 0 {
            return Err(blk_status::UNSUPP);
        }
        if self.backend.read_only() {
            return Err(blk_status::IOERR);
        }
        // max_discard_seg = max_write_zeroes_seg = 1.
        if len != 16 {
            return Err(blk_status::IOERR);
        }
        let mut seg = [0u8; 16];
        if self.chain.read_at(mem, HEADER_LEN, &mut seg) != Ok(16) {
            return Err(blk_status::IOERR);
        }
        let sector = u64::from_le_bytes([
            seg[0], seg[1], seg[2], seg[3], seg[4], seg[5], seg[6], seg[7],
        ]);
        let num = u32::from_le_bytes([seg[8], seg[9], seg[10], seg[11]]);
        let flags = u32::from_le_bytes([seg[12], seg[13], seg[14], seg[15]]);
        // virtio 1.2 §5.2.6.2: unknown flags, or unmap on DISCARD, fail with UNSUPP.
        let unmap = flags & ZEROES_FLAG_UNMAP != 0;
        if flags & !ZEROES_FLAG_UNMAP != 0 || (unmap && ty == BlkRequestType::Discard) {
            return Err(blk_status::UNSUPP);
        }
        if num > MAX_ZERO_SECTORS {
            return Err(blk_status::IOERR);
        }
        let bytes = u64::from(num) * SECTOR_SIZE;
        match self.disk_range(sector, bytes) {
            Some(offset) => Ok((offset, bytes)),
            None => Err(blk_status::IOERR),
        }
    }

    /// Moves as much of the data phase as `budget` allows, in pieces of the backend's
    /// [`BlockBackend::max_transfer`] bytes (the copy buffer's size).
    fn advance(
        &mut self,
        mut f: InFlight,
        mem: &mut dyn GuestMemory,
        stats: &mut DeviceStats,
        budget: &mut WorkBudget,
    ) -> Step {
        if f.op == DataOp::Flush {
            return match self.backend.flush() {
                Ok(()) => Step::Complete(Completion::status(blk_status::OK)),
                Err(BackendError::Pending) => Step::Continue(f),
                Err(e) => Step::Complete(Completion::backend_error(e, stats)),
            };
        }
        let end = f.done + budget.take_bytes(f.len - f.done);
        let ioerr = Step::Complete(Completion::status(blk_status::IOERR));
        while f.done < end {
            let n = (end - f.done).min(self.scratch.len() as u64) as usize;
            let at = f.offset + f.done;
            let buf = &mut self.scratch[..n];
            match f.op {
                DataOp::Read => {
                    match self.backend.read_at(at, buf) {
                        Ok(()) => {}
                        Err(BackendError::Pending) => return Step::Continue(f),
                        Err(e) => return Step::Complete(Completion::backend_error(e, stats)),
                    }
                    if self.chain.write_at(mem, f.done, buf) != Ok(n) {
                        return ioerr;
                    }
                    stats.bytes_written += n as u64;
                }
                DataOp::Write => {
                    if self.chain.read_at(mem, HEADER_LEN + f.done, buf) != Ok(n) {
                        return ioerr;
                    }
                    match self.backend.write_at(at, buf) {
                        Ok(()) => {}
                        Err(BackendError::Pending) => return Step::Continue(f),
                        Err(e) => return Step::Complete(Completion::backend_error(e, stats)),
                    }
                    stats.bytes_read += n as u64;
                }
                DataOp::Zero | DataOp::Discard => {
                    // One backend call for the whole granted range (a copy-on-write disk
                    // records it as one zero range).
                    let n = end - f.done;
                    let r = if f.op == DataOp::Zero {
                        self.backend.write_zeroes(at, n)
                    } else {
                        self.backend.discard(at, n)
                    };
                    match r {
                        Ok(()) => {}
                        Err(BackendError::Pending) => return Step::Continue(f),
                        Err(e) => return Step::Complete(Completion::backend_error(e, stats)),
                    }
                    f.done += n;
                    continue;
                }
                // Handled before the loop.
                DataOp::Flush => break,
            }
            f.done += n as u64;
        }
        if f.done < f.len {
            return Step::Continue(f);
        }
        Step::Complete(Completion {
            status: blk_status::OK,
            // The chain's total length fits in 32 bits (checked when it was popped).
            data_written: if f.op == DataOp::Read {
                f.len as u32
            } else {
                0
            },
        })
    }

    /// Writes the status byte (last writable byte, virtio 1.2 §5.2.6) and returns the chain
    /// through the used ring with the bytes written.
    fn complete(
        &mut self,
        queue: &mut Queue,
        mem: &mut dyn GuestMemory,
        stats: &mut DeviceStats,
        c: Completion,
    ) -> Result<(), QueueError> {
        if c.status != blk_status::OK {
            stats.errors += 1;
        }
        let writable = self.chain.writable_len();
        let status_ok = self.chain.write_at(mem, writable - 1, &[c.status]) == Ok(1);
        let used = c.data_written.saturating_add(u32::from(status_ok));
        queue.add_used(mem, self.chain.head, used)
    }
}

impl<B: BlockBackend> VirtioDevice for BlockDevice<B> {
    fn device_id(&self) -> u32 {
        device_id::BLOCK
    }

    fn device_features(&self) -> u64 {
        let mut f = feature::VERSION_1
            | feature::RING_EVENT_IDX
            | feature::RING_INDIRECT_DESC
            | feature::BLK_SIZE_MAX
            | feature::BLK_SEG_MAX
            | feature::BLK_BLK_SIZE
            | feature::BLK_FLUSH;
        if self.backend.read_only() {
            f |= feature::BLK_RO;
        } else if self.backend.supports_zeroes() {
            f |= feature::BLK_DISCARD | feature::BLK_WRITE_ZEROES;
        }
        f
    }

    fn num_queues(&self) -> usize {
        1
    }

    fn queue_max_size(&self, index: usize) -> u16 {
        if index == 0 {
            BLK_QUEUE_SIZE
        } else {
            0
        }
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        let cfg = self.config_bytes();
        read_bytes(&cfg, offset, data);
    }

    fn write_config(&mut self, _offset: u64, _data: &[u8]) {
        // virtio 1.2 §5.2.4: only `writeback` is writable, with CONFIG_WCE (not offered).
    }

    fn activate(&mut self, features: u64) {
        self.features = features;
    }

    fn process_queue(
        &mut self,
        _index: usize,
        queue: &mut Queue,
        mem: &mut dyn GuestMemory,
        stats: &mut DeviceStats,
        budget: &mut WorkBudget,
    ) -> Result<Progress, QueueError> {
        // Each iteration either finishes the request in flight, stops at the work bound,
        // or takes one request from the budget: bounded by MAX_REQUESTS_PER_CALL.
        loop {
            if let Some(f) = self.in_flight.take() {
                match self.advance(f, mem, stats, budget) {
                    Step::Continue(f) => {
                        self.in_flight = Some(f);
                        return Ok(Progress::More);
                    }
                    Step::Complete(c) => self.complete(queue, mem, stats, c)?,
                }
            }
            if budget.exhausted() {
                return Ok(if queue.has_available(mem)? {
                    Progress::More
                } else {
                    Progress::Done
                });
            }
            if !queue.pop_into(mem, &mut self.chain)? {
                return Ok(Progress::Done);
            }
            budget.take_request();
            stats.requests += 1;
            if self.chain.writable_len() == 0 {
                // No room for the status byte (virtio 1.2 §5.2.6): the request fails
                // without a status; the buffer is returned with nothing written.
                stats.errors += 1;
                queue.add_used(mem, self.chain.head, 0)?;
                continue;
            }
            match self.start(mem, stats) {
                Step::Complete(c) => self.complete(queue, mem, stats, c)?,
                // The next iteration moves its data.
                Step::Continue(f) => self.in_flight = Some(f),
            }
        }
    }

    fn queue_stopped(&mut self, _index: usize) {
        self.in_flight = None;
    }

    fn reset(&mut self) {
        self.features = 0;
        self.in_flight = None;
    }

    fn worst_case_bytes(&self) -> u64 {
        self.backend.worst_case_bytes()
    }

    /// The disk: its size, read-only flag and contents. The configuration space follows
    /// from creation (virtio 1.2 §5.2.4); a request in flight is given back to the ring
    /// ([`VirtioDevice::in_flight_chains`]).
    fn save_device_state(&self) -> DeviceState<'_> {
        DeviceState::Blk(BlkState {
            disk: DiskState {
                len: self.backend.len(),
                read_only: self.backend.read_only(),
                contents: self.backend.save_contents(),
            },
        })
    }

    fn load_device_state(
        &mut self,
        state: &DeviceState<'_>,
        _queues: &[QueueState],
    ) -> Result<(), StateError> {
        let DeviceState::Blk(b) = state else {
            return Err(StateError::KindMismatch {
                snapshot: state.kind(),
                vm_device_id: device_id::BLOCK,
            });
        };
        let disk = &b.disk;
        // virtio 1.2 §5.2.4: capacity is configuration the guest already read.
        if disk.len != self.backend.len() {
            return Err(StateError::DiskSize {
                snapshot: disk.len,
                vm: self.backend.len(),
            });
        }
        // virtio 1.2 §5.2.3: VIRTIO_BLK_F_RO was offered (or not) and negotiated.
        if disk.read_only != self.backend.read_only() {
            return Err(StateError::ReadOnly {
                snapshot: disk.read_only,
                vm: self.backend.read_only(),
            });
        }
        self.backend.load_contents(&disk.contents)?;
        self.features = 0;
        self.in_flight = None;
        Ok(())
    }

    /// The request whose data phase continues in a later call (it was popped last: the
    /// device takes the next one only when it completed).
    fn in_flight_chains(&self, _index: usize) -> u16 {
        u16::from(self.in_flight.is_some())
    }
}

/// Copies `data.len()` bytes of `src` at `offset`, zero past the end.
pub(crate) fn read_bytes(src: &[u8], offset: u64, data: &mut [u8]) {
    for (i, b) in data.iter_mut().enumerate() {
        *b = offset
            .checked_add(i as u64)
            .and_then(|o| usize::try_from(o).ok())
            .and_then(|o| src.get(o))
            .copied()
            .unwrap_or(0);
    }
}
