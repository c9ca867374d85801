//! Split virtqueues, device side (virtio 1.2 §2.7).
//!
//! Everything the queue reads from guest memory is hostile: every malformed case ends
//! in a [`QueueError`]. The MMIO transport reacts to any `QueueError` by setting
//! DEVICE_NEEDS_RESET (virtio 1.2 §2.1.2) and stopping the device until reset.

use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use crate::memory::{GuestMemory, MemError};
use crate::spec::{feature, ring, vring_need_event};
use crate::state::{QueueState, RingPart, StateError};

/// A malformed virtqueue or descriptor chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueError {
    /// The queue was used while not ready (virtio 1.2 §4.2.2 QueueReady).
    NotReady,
    /// Queue size is zero, above QueueNumMax or not a power of 2 (virtio 1.2 §2.7).
    InvalidSize(u16),
    /// A ring address is not aligned as virtio 1.2 §2.7 "Virtqueue Part Alignment" requires.
    Misaligned {
        /// Guest-physical address of the ring part.
        addr: u64,
        /// Required alignment.
        align: u64,
    },
    /// A ring part does not lie in guest RAM.
    RingOutsideMemory(u64),
    /// The available index moved more than the queue size ahead (virtio 1.2 §2.7.6).
    AvailIdxJump {
        /// Last available index processed by the device.
        last: u16,
        /// Available index published by the driver.
        avail: u16,
    },
    /// A descriptor index is outside the descriptor table (virtio 1.2 §2.7.5).
    DescIndexOutOfRange {
        /// The bad index.
        index: u16,
        /// Number of entries in the table it indexes.
        table_len: u32,
    },
    /// A descriptor chain visits the same descriptor twice (virtio 1.2 §2.7.5.2).
    Loop(u16),
    /// A descriptor chain is longer than the queue size (virtio 1.2 §2.7.5.3.1).
    ChainTooLong,
    /// Sum of the lengths in one chain overflows 32 bits (used `len` is 32-bit, §2.7.8).
    LengthOverflow,
    /// `addr + len` of a descriptor overflows 64 bits.
    AddressOverflow {
        /// Descriptor address.
        addr: u64,
        /// Descriptor length.
        len: u32,
    },
    /// A descriptor buffer lies (partly) outside guest RAM.
    BufferOutsideMemory {
        /// Descriptor address.
        addr: u64,
        /// Descriptor length.
        len: u32,
    },
    /// A device-readable descriptor follows a device-writable one (virtio 1.2 §2.7.4.2).
    ReadableAfterWritable,
    /// VIRTQ_DESC_F_INDIRECT used without VIRTIO_F_INDIRECT_DESC (virtio 1.2 §2.7.5.3.1).
    IndirectNotNegotiated,
    /// VIRTQ_DESC_F_INDIRECT together with VIRTQ_DESC_F_NEXT (virtio 1.2 §2.7.5.3.1).
    IndirectWithNext,
    /// VIRTQ_DESC_F_INDIRECT inside an indirect table (virtio 1.2 §2.7.5.3.1).
    NestedIndirect,
    /// Indirect table length is zero or not a multiple of 16 (virtio 1.2 §2.7.5.3.1).
    BadIndirectLength(u32),
    /// Indirect table has more entries than the queue size (virtio 1.2 §2.7.5.3.1:
    /// a chain may not be longer than the queue size).
    IndirectTableTooLarge(u32),
    /// Guest memory access to a ring failed.
    Memory(MemError),
}

impl fmt::Display for QueueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueueError::NotReady => write!(f, "virtqueue is not ready"),
            QueueError::InvalidSize(s) => write!(f, "invalid virtqueue size {s}"),
            QueueError::Misaligned { addr, align } => {
                write!(f, "ring address {addr:#x} is not {align}-byte aligned")
            }
            QueueError::RingOutsideMemory(a) => write!(f, "ring at {a:#x} is outside guest RAM"),
            QueueError::AvailIdxJump { last, avail } => write!(
                f,
                "available index jumped from {last} to {avail}, more than the queue size"
            ),
            QueueError::DescIndexOutOfRange { index, table_len } => write!(
                f,
                "descriptor index {index} out of range for table of {table_len}"
            ),
            QueueError::Loop(i) => write!(f, "descriptor chain loops at descriptor {i}"),
            QueueError::ChainTooLong => write!(f, "descriptor chain longer than the queue size"),
            QueueError::LengthOverflow => write!(f, "descriptor chain total length overflows"),
            QueueError::AddressOverflow { addr, len } => {
                write!(
                    f,
                    "descriptor {addr:#x}+{len:#x} overflows the address space"
                )
            }
            QueueError::BufferOutsideMemory { addr, len } => {
                write!(
                    f,
                    "descriptor buffer {addr:#x}+{len:#x} is outside guest RAM"
                )
            }
            QueueError::ReadableAfterWritable => {
                write!(f, "device-readable descriptor after a device-writable one")
            }
            QueueError::IndirectNotNegotiated => {
                write!(f, "indirect descriptor without VIRTIO_F_INDIRECT_DESC")
            }
            QueueError::IndirectWithNext => write!(f, "indirect descriptor with NEXT flag"),
            QueueError::NestedIndirect => write!(f, "nested indirect descriptor"),
            QueueError::BadIndirectLength(l) => write!(
                f,
                "indirect table length {l} is zero or not a multiple of 16"
            ),
            QueueError::IndirectTableTooLarge(n) => {
                write!(f, "indirect table of {n} entries exceeds the queue size")
            }
            QueueError::Memory(e) => write!(f, "ring access failed: {e}"),
        }
    }
}

impl From<MemError> for QueueError {
    fn from(e: MemError) -> Self {
        QueueError::Memory(e)
    }
}

/// One guest buffer of a descriptor chain, already checked to be inside guest RAM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// Guest-physical address.
    pub addr: u64,
    /// Length in bytes.
    pub len: u32,
}

/// A validated descriptor chain (virtio 1.2 §2.7.5): device-readable buffers first,
/// then device-writable ones.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DescriptorChain {
    /// Index of the head descriptor (what goes into the used ring).
    pub head: u16,
    /// Device-readable buffers, in order.
    pub readable: Vec<Segment>,
    /// Device-writable buffers, in order.
    pub writable: Vec<Segment>,
}

impl DescriptorChain {
    /// An empty chain that can hold chains of up to `descriptors` descriptors without
    /// allocating (give it the queue's maximum size and use it with [`Queue::pop_into`]).
    pub fn with_capacity(descriptors: u16) -> Self {
        DescriptorChain {
            head: 0,
            readable: Vec::with_capacity(usize::from(descriptors)),
            writable: Vec::with_capacity(usize::from(descriptors)),
        }
    }

    /// Empties the chain, keeping its capacity.
    pub fn clear(&mut self) {
        self.head = 0;
        self.readable.clear();
        self.writable.clear();
    }

    /// Total bytes the device may read.
    pub fn readable_len(&self) -> u64 {
        self.readable.iter().map(|s| u64::from(s.len)).sum()
    }

    /// Total bytes the device may write.
    pub fn writable_len(&self) -> u64 {
        self.writable.iter().map(|s| u64::from(s.len)).sum()
    }

    /// Number of descriptors (excluding an indirect table pointer).
    pub fn descriptor_count(&self) -> usize {
        self.readable.len() + self.writable.len()
    }

    /// Copies `buf.len()` bytes from the readable buffers, starting at byte `offset`
    /// of the concatenated readable area. Returns the number of bytes copied.
    pub fn read_at(
        &self,
        mem: &dyn GuestMemory,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<usize, MemError> {
        let mut done = 0usize;
        let mut skip = offset;
        for seg in &self.readable {
            if done == buf.len() {
                break;
            }
            let len = u64::from(seg.len);
            if skip >= len {
                skip -= len;
                continue;
            }
            let avail = (len - skip) as usize;
            let n = avail.min(buf.len() - done);
            let gpa = seg.addr.checked_add(skip).ok_or(MemError::Overflow {
                gpa: seg.addr,
                len: skip,
            })?;
            mem.read(gpa, &mut buf[done..done + n])?;
            done += n;
            skip = 0;
        }
        Ok(done)
    }

    /// Copies `data` into the writable buffers starting at byte `offset` of the
    /// concatenated writable area. Returns the number of bytes copied.
    pub fn write_at(
        &self,
        mem: &mut dyn GuestMemory,
        offset: u64,
        data: &[u8],
    ) -> Result<usize, MemError> {
        let mut done = 0usize;
        let mut skip = offset;
        for seg in &self.writable {
            if done == data.len() {
                break;
            }
            let len = u64::from(seg.len);
            if skip >= len {
                skip -= len;
                continue;
            }
            let avail = (len - skip) as usize;
            let n = avail.min(data.len() - done);
            let gpa = seg.addr.checked_add(skip).ok_or(MemError::Overflow {
                gpa: seg.addr,
                len: skip,
            })?;
            mem.write(gpa, &data[done..done + n])?;
            done += n;
            skip = 0;
        }
        Ok(done)
    }
}

/// One part of a split virtqueue's layout.
struct PartLayout {
    part: RingPart,
    addr: u64,
    align: u64,
    len: u64,
}

/// The three ring parts of a queue of `size` entries (virtio 1.2 §2.7: alignment, and the
/// sizes of §2.7.5 descriptor table, §2.7.6 available ring, §2.7.8 used ring).
fn ring_parts(size: u16, desc: u64, avail: u64, used: u64) -> [PartLayout; 3] {
    let n = u64::from(size);
    [
        PartLayout {
            part: RingPart::Descriptors,
            addr: desc,
            align: ring::DESC_ALIGN,
            len: ring::DESC_SIZE * n,
        },
        PartLayout {
            part: RingPart::Driver,
            addr: avail,
            align: ring::AVAIL_ALIGN,
            len: ring::AVAIL_FIXED_BYTES + ring::AVAIL_ENTRY_BYTES * n,
        },
        PartLayout {
            part: RingPart::Device,
            addr: used,
            align: ring::USED_ALIGN,
            len: ring::USED_FIXED_BYTES + ring::USED_ENTRY_BYTES * n,
        },
    ]
}

/// A split virtqueue as configured by the driver (virtio 1.2 §2.7).
#[derive(Debug, Clone)]
pub struct Queue {
    max_size: u16,
    size: u16,
    ready: bool,
    desc_table: u64,
    avail_ring: u64,
    used_ring: u64,
    next_avail: u16,
    next_used: u16,
    /// Used index at the last interrupt decision (for EVENT_IDX, §2.7.7.2).
    signalled_used: u16,
    /// Whether used buffers were added since the last interrupt decision.
    used_pending: bool,
    event_idx: bool,
    /// `disable_notification` is in effect.
    notifications_suppressed: bool,
    indirect: bool,
    /// Descriptors visited by the chain walk (one bit per entry of the table being walked),
    /// allocated once for `max_size` entries: no allocation per request.
    visited: Vec<u64>,
}

impl Queue {
    /// A queue the device supports with at most `max_size` entries (QueueNumMax).
    pub fn new(max_size: u16) -> Self {
        Queue {
            max_size: max_size.min(ring::MAX_QUEUE_SIZE),
            size: max_size.min(ring::MAX_QUEUE_SIZE),
            ready: false,
            desc_table: 0,
            avail_ring: 0,
            used_ring: 0,
            next_avail: 0,
            next_used: 0,
            signalled_used: 0,
            used_pending: false,
            event_idx: false,
            notifications_suppressed: false,
            indirect: false,
            visited: vec![0; usize::from(max_size.min(ring::MAX_QUEUE_SIZE)).div_ceil(64)],
        }
    }

    /// Back to the reset state (virtio 1.2 §4.2.2.1: QueueReady becomes 0).
    pub fn reset(&mut self) {
        // Keeps the visited bitmap (`Queue::new(0)` allocates nothing).
        let (visited, max) = (core::mem::take(&mut self.visited), self.max_size);
        *self = Queue {
            visited,
            max_size: max,
            size: max,
            ..Queue::new(0)
        };
    }

    /// QueueNumMax.
    pub fn max_size(&self) -> u16 {
        self.max_size
    }
    /// QueueNum as set by the driver.
    pub fn size(&self) -> u16 {
        self.size
    }
    /// QueueReady.
    pub fn ready(&self) -> bool {
        self.ready
    }
    /// Descriptor table GPA.
    pub fn desc_table(&self) -> u64 {
        self.desc_table
    }
    /// Available (driver) ring GPA.
    pub fn avail_ring(&self) -> u64 {
        self.avail_ring
    }
    /// Used (device) ring GPA.
    pub fn used_ring(&self) -> u64 {
        self.used_ring
    }
    /// Next available ring index the device will consume.
    pub fn next_avail(&self) -> u16 {
        self.next_avail
    }
    /// Next used ring index the device will fill.
    pub fn next_used(&self) -> u16 {
        self.next_used
    }

    /// Sets QueueNum (validated when the queue is made ready). Ignored, returning
    /// false, while the queue is ready (virtio 1.2 §4.2.2.2: the driver must not change
    /// the layout of a ready queue).
    pub fn set_size(&mut self, size: u16) -> bool {
        if self.ready {
            return false;
        }
        self.size = size;
        true
    }
    /// Sets the descriptor table GPA (ignored while ready, see [`Queue::set_size`]).
    pub fn set_desc_table(&mut self, gpa: u64) -> bool {
        if self.ready {
            return false;
        }
        self.desc_table = gpa;
        true
    }
    /// Sets the available ring GPA (ignored while ready, see [`Queue::set_size`]).
    pub fn set_avail_ring(&mut self, gpa: u64) -> bool {
        if self.ready {
            return false;
        }
        self.avail_ring = gpa;
        true
    }
    /// Sets the used ring GPA (ignored while ready, see [`Queue::set_size`]).
    pub fn set_used_ring(&mut self, gpa: u64) -> bool {
        if self.ready {
            return false;
        }
        self.used_ring = gpa;
        true
    }
    /// Records negotiated ring features (VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC).
    pub fn set_features(&mut self, event_idx: bool, indirect: bool) {
        self.event_idx = event_idx;
        self.indirect = indirect;
    }

    /// Validates the layout and marks the queue ready (virtio 1.2 §2.7, §4.2.2).
    pub fn activate(&mut self, mem: &dyn GuestMemory) -> Result<(), QueueError> {
        self.validate(mem)?;
        self.ready = true;
        self.next_avail = 0;
        self.next_used = 0;
        self.signalled_used = 0;
        self.used_pending = false;
        Ok(())
    }

    /// Clears QueueReady without touching the layout.
    pub fn deactivate(&mut self) {
        self.ready = false;
    }

    /// virtio 1.2 §2.7: size is a power of 2 no larger than QueueNumMax; ring parts are
    /// aligned (descriptor table 16, available ring 2, used ring 4) and inside guest RAM.
    pub fn validate(&self, mem: &dyn GuestMemory) -> Result<(), QueueError> {
        let s = self.size;
        if s == 0 || s > self.max_size || !s.is_power_of_two() {
            return Err(QueueError::InvalidSize(s));
        }
        for p in ring_parts(s, self.desc_table, self.avail_ring, self.used_ring) {
            if p.addr % p.align != 0 {
                return Err(QueueError::Misaligned {
                    addr: p.addr,
                    align: p.align,
                });
            }
            mem.check_range(p.addr, p.len)
                .map_err(|_| QueueError::RingOutsideMemory(p.addr))?;
        }
        Ok(())
    }

    /// The queue's state for a snapshot ([`crate::state`]).
    pub fn save_state(&self) -> QueueState {
        QueueState {
            size: self.size,
            ready: self.ready,
            desc_table: self.desc_table,
            avail_ring: self.avail_ring,
            used_ring: self.used_ring,
            next_avail: self.next_avail,
            next_used: self.next_used,
            signalled_used: self.signalled_used,
            used_pending: self.used_pending,
            event_idx: self.event_idx,
            indirect: self.indirect,
            notifications_suppressed: self.notifications_suppressed,
        }
    }

    /// Checks that `s` is a state queue `index` of this device can reach: a ready queue
    /// passed [`Queue::validate`] when the driver set QueueReady and its layout is frozen
    /// since (virtio 1.2 §2.7, §4.2.2.2), so its size is a power of 2 up to QueueNumMax and
    /// its ring parts are aligned, do not wrap and (with `mem`) lie in guest RAM. A queue
    /// that is not ready may hold anything the driver wrote; its indices are reset when it
    /// is made ready. `offered` are the device's features: a ring feature in effect was
    /// offered (virtio 1.2 §2.2.1).
    pub fn check_state(
        &self,
        index: usize,
        s: &QueueState,
        offered: u64,
        mem: Option<&dyn GuestMemory>,
    ) -> Result<(), StateError> {
        for (on, bit) in [
            (s.event_idx, feature::RING_EVENT_IDX),
            (s.indirect, feature::RING_INDIRECT_DESC),
        ] {
            if on && offered & bit == 0 {
                return Err(StateError::QueueFeatureNotOffered {
                    queue: index,
                    feature: bit,
                });
            }
        }
        if !s.ready {
            return Ok(());
        }
        let size = s.size;
        if size == 0 {
            return Err(StateError::QueueSizeZero { queue: index });
        }
        if !size.is_power_of_two() {
            return Err(StateError::QueueSizeNotPowerOfTwo { queue: index, size });
        }
        if size > self.max_size {
            return Err(StateError::QueueSizeTooLarge {
                queue: index,
                size,
                max: self.max_size,
            });
        }
        for p in ring_parts(size, s.desc_table, s.avail_ring, s.used_ring) {
            let (part, addr) = (p.part, p.addr);
            if addr % p.align != 0 {
                return Err(StateError::QueueMisaligned {
                    queue: index,
                    part,
                    addr,
                    align: p.align,
                });
            }
            if addr.checked_add(p.len).is_none() {
                return Err(StateError::QueueRingOverflow {
                    queue: index,
                    part,
                    addr,
                });
            }
            if let Some(mem) = mem {
                mem.check_range(addr, p.len)
                    .map_err(|_| StateError::QueueRingOutsideMemory {
                        queue: index,
                        part,
                        addr,
                    })?;
            }
        }
        Ok(())
    }

    /// Takes over `s`, checked with [`Queue::check_state`]. QueueNumMax stays.
    pub fn load_state(&mut self, s: &QueueState) {
        self.size = s.size;
        self.ready = s.ready;
        self.desc_table = s.desc_table;
        self.avail_ring = s.avail_ring;
        self.used_ring = s.used_ring;
        self.next_avail = s.next_avail;
        self.next_used = s.next_used;
        self.signalled_used = s.signalled_used;
        self.used_pending = s.used_pending;
        self.event_idx = s.event_idx;
        self.indirect = s.indirect;
        self.notifications_suppressed = s.notifications_suppressed;
    }

    fn check_ready(&self) -> Result<(), QueueError> {
        if self.ready {
            Ok(())
        } else {
            Err(QueueError::NotReady)
        }
    }

    /// Reads the driver's available index, checking it did not jump (virtio 1.2 §2.7.6).
    fn avail_idx(&self, mem: &dyn GuestMemory) -> Result<u16, QueueError> {
        let avail = mem.read_u16(self.avail_ring.wrapping_add(2))?;
        if avail.wrapping_sub(self.next_avail) > self.size {
            return Err(QueueError::AvailIdxJump {
                last: self.next_avail,
                avail,
            });
        }
        Ok(avail)
    }

    /// Whether the driver has made buffers available that were not consumed yet.
    pub fn has_available(&self, mem: &dyn GuestMemory) -> Result<bool, QueueError> {
        self.check_ready()?;
        Ok(self.avail_idx(mem)? != self.next_avail)
    }

    /// Takes the next available descriptor chain, if any (virtio 1.2 §2.7.13). Allocates the
    /// chain; devices use [`Queue::pop_into`].
    pub fn pop(&mut self, mem: &dyn GuestMemory) -> Result<Option<DescriptorChain>, QueueError> {
        let mut chain = DescriptorChain::with_capacity(self.size);
        Ok(self.pop_into(mem, &mut chain)?.then_some(chain))
    }

    /// Takes the next available descriptor chain into `chain` (virtio 1.2 §2.7.13); false if
    /// the driver made none available. Allocates nothing when `chain` was created with
    /// [`DescriptorChain::with_capacity`] of at least the queue size.
    pub fn pop_into(
        &mut self,
        mem: &dyn GuestMemory,
        chain: &mut DescriptorChain,
    ) -> Result<bool, QueueError> {
        self.check_ready()?;
        let avail = self.avail_idx(mem)?;
        if avail == self.next_avail {
            return Ok(false);
        }
        // virtio 1.2 §2.7.6: ring[idx % size] holds the head of a chain.
        let slot = u64::from(self.next_avail % self.size);
        let head = mem.read_u16(self.avail_ring.wrapping_add(4 + 2 * slot))?;
        self.next_avail = self.next_avail.wrapping_add(1);
        let mut visited = core::mem::take(&mut self.visited);
        let walked = self.read_chain(mem, head, chain, &mut visited);
        self.visited = visited;
        walked.map(|()| true)
    }

    /// Gives back the chain most recently popped (e.g. RX had nothing to deliver).
    pub fn undo_pop(&mut self) {
        self.next_avail = self.next_avail.wrapping_sub(1);
    }

    /// Marks descriptor `index` of a table of `table_len` entries visited; a second visit
    /// is a loop (virtio 1.2 §2.7.5.2).
    fn visit(visited: &mut [u64], index: u16, table_len: u32) -> Result<(), QueueError> {
        let (word, bit) = (usize::from(index) / 64, usize::from(index) % 64);
        // The index was checked against table_len (at most the queue size, which sized
        // `visited`).
        let slot = visited
            .get_mut(word)
            .ok_or(QueueError::DescIndexOutOfRange { index, table_len })?;
        if *slot & (1 << bit) != 0 {
            return Err(QueueError::Loop(index));
        }
        *slot |= 1 << bit;
        Ok(())
    }

    /// Walks and validates the chain starting at `head` into `chain` (virtio 1.2 §2.7.5,
    /// §2.7.5.3).
    fn read_chain(
        &self,
        mem: &dyn GuestMemory,
        head: u16,
        chain: &mut DescriptorChain,
        visited: &mut [u64],
    ) -> Result<(), QueueError> {
        chain.clear();
        chain.head = head;
        let mut table = self.desc_table;
        let mut table_len = u32::from(self.size);
        let words = |entries: u32| (entries as usize).div_ceil(64);
        visited
            .get_mut(..words(table_len))
            .ok_or(QueueError::InvalidSize(self.size))?
            .fill(0);
        let mut in_indirect = false;
        let mut index = head;
        let mut count: u32 = 0;
        let mut total: u32 = 0;
        loop {
            if u32::from(index) >= table_len {
                return Err(QueueError::DescIndexOutOfRange { index, table_len });
            }
            Self::visit(visited, index, table_len)?;

            // virtio 1.2 §2.7.5: struct virtq_desc { le64 addr; le32 len; le16 flags; le16 next; }
            let mut raw = [0u8; 16];
            mem.read(
                table.wrapping_add(ring::DESC_SIZE * u64::from(index)),
                &mut raw,
            )?;
            let addr = u64::from_le_bytes([
                raw[0], raw[1], raw[2], raw[3], raw[4], raw[5], raw[6], raw[7],
            ]);
            let len = u32::from_le_bytes([raw[8], raw[9], raw[10], raw[11]]);
            let flags = u16::from_le_bytes([raw[12], raw[13]]);
            let next = u16::from_le_bytes([raw[14], raw[15]]);

            if flags & ring::DESC_F_INDIRECT != 0 {
                // virtio 1.2 §2.7.5.3.1 driver requirements, enforced by the device.
                if !self.indirect {
                    return Err(QueueError::IndirectNotNegotiated);
                }
                if in_indirect {
                    return Err(QueueError::NestedIndirect);
                }
                if flags & ring::DESC_F_NEXT != 0 {
                    return Err(QueueError::IndirectWithNext);
                }
                if len == 0 || len % 16 != 0 {
                    return Err(QueueError::BadIndirectLength(len));
                }
                let entries = len / 16;
                if entries > u32::from(self.size) {
                    return Err(QueueError::IndirectTableTooLarge(entries));
                }
                Self::check_buffer(mem, addr, len)?;
                table = addr;
                table_len = entries;
                visited
                    .get_mut(..words(entries))
                    .ok_or(QueueError::IndirectTableTooLarge(entries))?
                    .fill(0);
                in_indirect = true;
                index = 0;
                continue;
            }

            count += 1;
            if count > u32::from(self.size) {
                return Err(QueueError::ChainTooLong);
            }
            Self::check_buffer(mem, addr, len)?;
            total = total.checked_add(len).ok_or(QueueError::LengthOverflow)?;
            let seg = Segment { addr, len };
            if flags & ring::DESC_F_WRITE != 0 {
                chain.writable.push(seg);
            } else {
                // virtio 1.2 §2.7.4.2: device-writable descriptors come after readable ones.
                if !chain.writable.is_empty() {
                    return Err(QueueError::ReadableAfterWritable);
                }
                chain.readable.push(seg);
            }
            if flags & ring::DESC_F_NEXT == 0 {
                return Ok(());
            }
            index = next;
        }
    }

    fn check_buffer(mem: &dyn GuestMemory, addr: u64, len: u32) -> Result<(), QueueError> {
        if addr.checked_add(u64::from(len)).is_none() {
            return Err(QueueError::AddressOverflow { addr, len });
        }
        mem.check_range(addr, u64::from(len))
            .map_err(|_| QueueError::BufferOutsideMemory { addr, len })
    }

    /// Returns a chain to the driver through the used ring (virtio 1.2 §2.7.8, §2.7.14).
    pub fn add_used(
        &mut self,
        mem: &mut dyn GuestMemory,
        head: u16,
        len: u32,
    ) -> Result<(), QueueError> {
        self.check_ready()?;
        // virtio 1.2 §2.7.8: struct virtq_used_elem { le32 id; le32 len; } at ring[idx % size].
        let slot = u64::from(self.next_used % self.size);
        let elem = self.used_ring.wrapping_add(4 + 8 * slot);
        let mut raw = [0u8; 8];
        raw[..4].copy_from_slice(&u32::from(head).to_le_bytes());
        raw[4..].copy_from_slice(&len.to_le_bytes());
        mem.write(elem, &raw)?;
        self.next_used = self.next_used.wrapping_add(1);
        // virtio 1.2 §2.7.8.2: the element is written before the index is updated.
        mem.write_u16(self.used_ring.wrapping_add(2), self.next_used)?;
        self.used_pending = true;
        Ok(())
    }

    /// Asks the driver to notify when it adds buffers beyond what was consumed
    /// (virtio 1.2 §2.7.10: avail_event with EVENT_IDX; otherwise notifications are
    /// always enabled since used.flags stays 0). Returns whether more buffers arrived
    /// meanwhile, in which case the caller must keep processing.
    pub fn enable_notification(&mut self, mem: &mut dyn GuestMemory) -> Result<bool, QueueError> {
        self.check_ready()?;
        if self.event_idx {
            // virtio 1.2 §2.7.8: le16 avail_event follows ring[size] in the used ring.
            let avail_event = self.used_ring.wrapping_add(4 + 8 * u64::from(self.size));
            mem.write_u16(avail_event, self.next_avail)?;
        } else if self.notifications_suppressed {
            mem.write_u16(self.used_ring, 0)?;
        }
        self.notifications_suppressed = false;
        self.has_available(mem)
    }

    /// Asks the driver not to notify for now, because the device will process the queue
    /// anyway (virtio 1.2 §2.7.10): with EVENT_IDX, avail_event moves a whole ring ahead of
    /// what the device consumed (the driver cannot get further ahead); without it, the used
    /// ring's VIRTQ_USED_F_NO_NOTIFY flag. [`Queue::enable_notification`] undoes it.
    pub fn disable_notification(&mut self, mem: &mut dyn GuestMemory) -> Result<(), QueueError> {
        self.check_ready()?;
        if self.event_idx {
            let avail_event = self.used_ring.wrapping_add(4 + 8 * u64::from(self.size));
            mem.write_u16(avail_event, self.next_avail.wrapping_add(self.size))?;
        } else {
            mem.write_u16(self.used_ring, ring::USED_F_NO_NOTIFY)?;
        }
        self.notifications_suppressed = true;
        Ok(())
    }

    /// Decides whether the driver must be interrupted for the used buffers added since
    /// the previous decision (virtio 1.2 §2.7.7.2 with EVENT_IDX using used_event and
    /// `vring_need_event`, §2.7.7.1 VIRTQ_AVAIL_F_NO_INTERRUPT otherwise).
    pub fn needs_interrupt(&mut self, mem: &dyn GuestMemory) -> Result<bool, QueueError> {
        self.check_ready()?;
        if !self.used_pending {
            return Ok(false);
        }
        self.used_pending = false;
        let old = self.signalled_used;
        self.signalled_used = self.next_used;
        if self.event_idx {
            // virtio 1.2 §2.7.6: le16 used_event follows ring[size] in the available ring.
            let used_event =
                mem.read_u16(self.avail_ring.wrapping_add(4 + 2 * u64::from(self.size)))?;
            Ok(vring_need_event(used_event, self.next_used, old))
        } else {
            let flags = mem.read_u16(self.avail_ring)?;
            Ok(flags & ring::AVAIL_F_NO_INTERRUPT == 0)
        }
    }
}
