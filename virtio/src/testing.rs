//! Driver-side test harness: lays out real split rings in a [`VecMemory`], negotiates
//! features and sets up queues through MMIO registers the way Linux' virtio_mmio
//! driver does, submits buffers, kicks, and reads completions.
//!
//! Available in this crate's tests and, with the `testing` feature, to other crates.

use alloc::vec;
use alloc::vec::Vec;

use crate::memory::{GuestMemory, VecMemory};
use crate::mmio::{MmioEffect, MmioTransport, VirtioDevice};
use crate::spec::{ring, status, Register};

/// Default guest RAM base used by [`Driver::new`].
pub const RAM_BASE: u64 = 0x4000_0000;

/// One buffer of a chain to submit: guest address, length, device-writable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Buf {
    /// Guest-physical address.
    pub addr: u64,
    /// Length in bytes.
    pub len: u32,
    /// Device-writable (VIRTQ_DESC_F_WRITE).
    pub write: bool,
}

impl Buf {
    /// A device-readable buffer.
    pub fn r(addr: u64, len: u32) -> Self {
        Buf {
            addr,
            len,
            write: false,
        }
    }
    /// A device-writable buffer.
    pub fn w(addr: u64, len: u32) -> Self {
        Buf {
            addr,
            len,
            write: true,
        }
    }
}

/// Driver view of one split virtqueue (virtio 1.2 §2.7).
#[derive(Debug, Clone)]
pub struct DriverQueue {
    /// Queue index.
    pub index: u16,
    /// Queue size.
    pub size: u16,
    /// Descriptor table GPA.
    pub desc: u64,
    /// Available ring GPA.
    pub avail: u64,
    /// Used ring GPA.
    pub used: u64,
    /// Next free descriptor (descriptors are handed out round-robin).
    pub next_desc: u16,
    /// Driver's avail idx.
    pub avail_idx: u16,
    /// Last used idx consumed by the driver.
    pub last_used: u16,
}

/// A fake guest: RAM with a bump allocator plus driver queues. A clone is the same guest
/// (RAM and driver state), e.g. to run it against a restored device.
#[derive(Debug, Clone)]
pub struct Driver {
    /// Guest RAM.
    pub mem: VecMemory,
    next_free: u64,
    /// Queues set up by [`Driver::setup`].
    pub queues: Vec<DriverQueue>,
    /// Features negotiated by [`Driver::setup`].
    pub features: u64,
}

/// Ways [`Driver::setup`] can fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetupError {
    /// MagicValue / Version mismatch.
    NotVirtioMmio,
    /// The device cleared FEATURES_OK.
    FeaturesRefused,
    /// QueueNumMax was 0 for a required queue.
    QueueUnavailable(u16),
    /// The device set DEVICE_NEEDS_RESET during setup.
    NeedsReset,
}

impl Driver {
    /// `size` bytes of guest RAM at [`RAM_BASE`].
    pub fn new(size: usize) -> Self {
        Driver {
            mem: VecMemory::new(RAM_BASE, size),
            next_free: RAM_BASE,
            queues: Vec::new(),
            features: 0,
        }
    }

    /// Allocates `len` bytes aligned to `align` (a power of two) from guest RAM.
    /// Panics if RAM is exhausted (test code only).
    pub fn alloc(&mut self, len: u64, align: u64) -> u64 {
        let addr = self.next_free.next_multiple_of(align);
        self.next_free = addr + len;
        assert!(
            self.next_free <= self.mem.base() + self.mem.size(),
            "test guest RAM exhausted"
        );
        addr
    }

    /// Allocates a buffer holding `data`.
    pub fn alloc_data(&mut self, data: &[u8]) -> u64 {
        let a = self.alloc(data.len() as u64, 16);
        self.mem.write(a, data).expect("in RAM");
        a
    }

    /// Reads `len` bytes of guest RAM.
    pub fn read(&self, gpa: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0; len];
        self.mem.read(gpa, &mut v).expect("in RAM");
        v
    }

    /// 32-bit MMIO read.
    pub fn mmio_read<D: VirtioDevice>(&mut self, t: &mut MmioTransport<D>, reg: Register) -> u32 {
        t.read(reg.offset(), 4) as u32
    }

    /// 32-bit MMIO write.
    pub fn mmio_write<D: VirtioDevice>(
        &mut self,
        t: &mut MmioTransport<D>,
        reg: Register,
        v: u32,
    ) -> MmioEffect {
        t.write(reg.offset(), 4, u64::from(v), &mut self.mem)
    }

    /// Initializes the device like Linux' virtio_mmio + virtio core (virtio 1.2 §3.1.1):
    /// reset, ACKNOWLEDGE, DRIVER, feature negotiation (`wanted` ∩ offered), FEATURES_OK
    /// (checked), queue setup for every queue with at most `queue_size` entries,
    /// DRIVER_OK.
    pub fn setup<D: VirtioDevice>(
        &mut self,
        t: &mut MmioTransport<D>,
        wanted: u64,
        queue_size: u16,
    ) -> Result<u64, SetupError> {
        if self.mmio_read(t, Register::MagicValue) != crate::spec::MMIO_MAGIC
            || self.mmio_read(t, Register::Version) != 2
        {
            return Err(SetupError::NotVirtioMmio);
        }
        self.mmio_write(t, Register::Status, 0);
        self.mmio_write(t, Register::Status, u32::from(status::ACKNOWLEDGE));
        self.mmio_write(
            t,
            Register::Status,
            u32::from(status::ACKNOWLEDGE | status::DRIVER),
        );
        self.mmio_write(t, Register::DeviceFeaturesSel, 1);
        let hi = self.mmio_read(t, Register::DeviceFeatures);
        self.mmio_write(t, Register::DeviceFeaturesSel, 0);
        let lo = self.mmio_read(t, Register::DeviceFeatures);
        let offered = (u64::from(hi) << 32) | u64::from(lo);
        let features = offered & wanted;
        self.negotiate(t, features)?;
        self.features = features;
        self.queues.clear();
        let mut index = 0u16;
        loop {
            self.mmio_write(t, Register::QueueSel, u32::from(index));
            if self.mmio_read(t, Register::QueueReady) != 0 {
                return Err(SetupError::NeedsReset);
            }
            let max = self.mmio_read(t, Register::QueueNumMax);
            if max == 0 {
                if index == 0 {
                    return Err(SetupError::QueueUnavailable(0));
                }
                break;
            }
            let size = (max as u16).min(queue_size);
            let q = self.layout_queue(index, size);
            self.mmio_write(t, Register::QueueNum, u32::from(size));
            self.mmio_write(t, Register::QueueDescLow, q.desc as u32);
            self.mmio_write(t, Register::QueueDescHigh, (q.desc >> 32) as u32);
            self.mmio_write(t, Register::QueueDriverLow, q.avail as u32);
            self.mmio_write(t, Register::QueueDriverHigh, (q.avail >> 32) as u32);
            self.mmio_write(t, Register::QueueDeviceLow, q.used as u32);
            self.mmio_write(t, Register::QueueDeviceHigh, (q.used >> 32) as u32);
            self.mmio_write(t, Register::QueueReady, 1);
            self.queues.push(q);
            index += 1;
        }
        let s = self.mmio_read(t, Register::Status) as u8;
        self.mmio_write(t, Register::Status, u32::from(s | status::DRIVER_OK));
        if self.mmio_read(t, Register::Status) as u8 & status::DEVICE_NEEDS_RESET != 0 {
            return Err(SetupError::NeedsReset);
        }
        Ok(features)
    }

    /// Writes DriverFeatures and sets FEATURES_OK, checking the device kept it.
    pub fn negotiate<D: VirtioDevice>(
        &mut self,
        t: &mut MmioTransport<D>,
        features: u64,
    ) -> Result<(), SetupError> {
        self.mmio_write(t, Register::DriverFeaturesSel, 1);
        self.mmio_write(t, Register::DriverFeatures, (features >> 32) as u32);
        self.mmio_write(t, Register::DriverFeaturesSel, 0);
        self.mmio_write(t, Register::DriverFeatures, features as u32);
        let s = self.mmio_read(t, Register::Status) as u8;
        self.mmio_write(t, Register::Status, u32::from(s | status::FEATURES_OK));
        if self.mmio_read(t, Register::Status) as u8 & status::FEATURES_OK == 0 {
            return Err(SetupError::FeaturesRefused);
        }
        Ok(())
    }

    /// Allocates and zeroes the three ring parts of a queue.
    pub fn layout_queue(&mut self, index: u16, size: u16) -> DriverQueue {
        let n = u64::from(size);
        let desc = self.alloc(16 * n, 16);
        let avail = self.alloc(6 + 2 * n, 2);
        let used = self.alloc(6 + 8 * n, 4);
        DriverQueue {
            index,
            size,
            desc,
            avail,
            used,
            next_desc: 0,
            avail_idx: 0,
            last_used: 0,
        }
    }

    /// Writes descriptor `i` of queue `q` verbatim (for malformed-ring tests).
    pub fn write_desc(&mut self, q: usize, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let base = self.queues[q].desc + 16 * u64::from(i);
        Self::write_desc_at(&mut self.mem, base, addr, len, flags, next);
    }

    fn write_desc_at(mem: &mut VecMemory, at: u64, addr: u64, len: u32, flags: u16, next: u16) {
        mem.write_u64(at, addr).expect("in RAM");
        mem.write_u32(at + 8, len).expect("in RAM");
        mem.write_u16(at + 12, flags).expect("in RAM");
        mem.write_u16(at + 14, next).expect("in RAM");
    }

    /// Puts `head` in the next available slot and publishes it (virtio 1.2 §2.7.13).
    pub fn push_avail(&mut self, q: usize, head: u16) {
        let dq = &mut self.queues[q];
        let slot = u64::from(dq.avail_idx % dq.size);
        let avail = dq.avail;
        dq.avail_idx = dq.avail_idx.wrapping_add(1);
        let idx = dq.avail_idx;
        self.mem
            .write_u16(avail + 4 + 2 * slot, head)
            .expect("in RAM");
        self.mem.write_u16(avail + 2, idx).expect("in RAM");
    }

    /// The driver's current avail idx of queue `q`.
    pub fn avail_idx(&self, q: usize) -> u16 {
        self.queues[q].avail_idx
    }

    /// Sets the avail ring's idx directly (for malformed-ring tests).
    pub fn set_avail_idx(&mut self, q: usize, idx: u16) {
        self.queues[q].avail_idx = idx;
        let a = self.queues[q].avail;
        self.mem.write_u16(a + 2, idx).expect("in RAM");
    }

    /// Adds a direct descriptor chain of `bufs` and makes it available. Returns the head.
    pub fn add_chain(&mut self, q: usize, bufs: &[Buf]) -> u16 {
        let size = self.queues[q].size;
        let head = self.queues[q].next_desc;
        let n = bufs.len() as u16;
        for (k, b) in bufs.iter().enumerate() {
            let i = (head + k as u16) % size;
            let last = k + 1 == bufs.len();
            let mut flags = if b.write { ring::DESC_F_WRITE } else { 0 };
            if !last {
                flags |= ring::DESC_F_NEXT;
            }
            self.write_desc(q, i, b.addr, b.len, flags, (i + 1) % size);
        }
        self.queues[q].next_desc = (head + n) % size;
        self.push_avail(q, head);
        head
    }

    /// Adds a chain of one indirect descriptor pointing at a table holding `bufs`
    /// (virtio 1.2 §2.7.5.3). Returns the head.
    pub fn add_indirect(&mut self, q: usize, bufs: &[Buf]) -> u16 {
        let table = self.alloc(16 * bufs.len() as u64, 16);
        for (k, b) in bufs.iter().enumerate() {
            let mut flags = if b.write { ring::DESC_F_WRITE } else { 0 };
            if k + 1 < bufs.len() {
                flags |= ring::DESC_F_NEXT;
            }
            let at = table + 16 * k as u64;
            Self::write_desc_at(&mut self.mem, at, b.addr, b.len, flags, k as u16 + 1);
        }
        let size = self.queues[q].size;
        let head = self.queues[q].next_desc;
        self.write_desc(
            q,
            head,
            table,
            16 * bufs.len() as u32,
            ring::DESC_F_INDIRECT,
            0,
        );
        self.queues[q].next_desc = (head + 1) % size;
        self.push_avail(q, head);
        head
    }

    /// Writes QueueNotify for queue `q`.
    pub fn kick<D: VirtioDevice>(&mut self, t: &mut MmioTransport<D>, q: usize) -> MmioEffect {
        let idx = self.queues[q].index;
        self.mmio_write(t, Register::QueueNotify, u32::from(idx))
    }

    /// Next used element `(id, len)` the driver has not consumed yet.
    pub fn pop_used(&mut self, q: usize) -> Option<(u32, u32)> {
        let dq = &self.queues[q];
        let idx = self.mem.read_u16(dq.used + 2).expect("in RAM");
        if idx == dq.last_used {
            return None;
        }
        let slot = u64::from(dq.last_used % dq.size);
        let id = self.mem.read_u32(dq.used + 4 + 8 * slot).expect("in RAM");
        let len = self.mem.read_u32(dq.used + 8 + 8 * slot).expect("in RAM");
        self.queues[q].last_used = dq.last_used.wrapping_add(1);
        Some((id, len))
    }

    /// Device's used idx.
    pub fn used_idx(&self, q: usize) -> u16 {
        self.mem.read_u16(self.queues[q].used + 2).expect("in RAM")
    }

    /// Writes used_event (avail ring, after ring[size]; virtio 1.2 §2.7.6).
    pub fn set_used_event(&mut self, q: usize, v: u16) {
        let dq = &self.queues[q];
        let at = dq.avail + 4 + 2 * u64::from(dq.size);
        self.mem.write_u16(at, v).expect("in RAM");
    }

    /// Reads avail_event (used ring, after ring[size]; virtio 1.2 §2.7.8).
    pub fn avail_event(&self, q: usize) -> u16 {
        let dq = &self.queues[q];
        self.mem
            .read_u16(dq.used + 4 + 8 * u64::from(dq.size))
            .expect("in RAM")
    }

    /// Sets avail.flags (VIRTQ_AVAIL_F_NO_INTERRUPT).
    pub fn set_avail_flags(&mut self, q: usize, flags: u16) {
        let a = self.queues[q].avail;
        self.mem.write_u16(a, flags).expect("in RAM");
    }

    /// Reads InterruptStatus and acknowledges it, like vm_interrupt() in Linux.
    pub fn ack_interrupt<D: VirtioDevice>(&mut self, t: &mut MmioTransport<D>) -> u32 {
        let s = self.mmio_read(t, Register::InterruptStatus);
        self.mmio_write(t, Register::InterruptAck, s);
        s
    }

    /// Builds a virtio-blk request (virtio 1.2 §5.2.6): header, `data` buffers,
    /// status byte. Returns (chain buffers, status byte GPA).
    pub fn blk_request(&mut self, ty: u32, sector: u64, data: &[Buf]) -> (Vec<Buf>, u64) {
        let mut hdr = [0u8; 16];
        hdr[..4].copy_from_slice(&ty.to_le_bytes());
        hdr[8..].copy_from_slice(&sector.to_le_bytes());
        let h = self.alloc_data(&hdr);
        let st = self.alloc_data(&[0xff]);
        let mut bufs = vec![Buf::r(h, 16)];
        bufs.extend_from_slice(data);
        bufs.push(Buf::w(st, 1));
        (bufs, st)
    }

    /// Sends an Ethernet frame on virtio-net TX queue `q` (virtio 1.2 §5.1.6.2): a
    /// 12-byte zeroed virtio_net_hdr and the frame in one descriptor, like Linux.
    pub fn net_tx(&mut self, q: usize, frame: &[u8]) -> u16 {
        let mut buf = vec![0u8; 12];
        buf.extend_from_slice(frame);
        let a = self.alloc_data(&buf);
        self.add_chain(q, &[Buf::r(a, buf.len() as u32)])
    }

    /// Posts `n` RX buffers of `len` bytes on queue `q`; returns (head, gpa) pairs.
    pub fn net_rx_buffers(&mut self, q: usize, n: usize, len: u32) -> Vec<(u16, u64)> {
        (0..n)
            .map(|_| {
                let a = self.alloc(u64::from(len), 16);
                (self.add_chain(q, &[Buf::w(a, len)]), a)
            })
            .collect()
    }
}
