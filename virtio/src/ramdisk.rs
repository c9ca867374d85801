//! RAM disks behind virtio-blk: an owned image written in place, or a copy-on-write
//! overlay with a heap budget over a borrowed `&'static [u8]` image.
//!
//! # The overlay budget
//!
//! A copy-on-write disk allocates heap memory only because the guest writes to it. Every
//! byte it may allocate is charged to a per-disk budget *before* the allocation happens:
//!
//! - one overlay block: [`OVERLAY_BLOCK_COST`] bytes ([`OVERLAY_BLOCK`] bytes of data plus
//!   [`OVERLAY_MAP_ENTRY_BYTES`] for its `BTreeMap` entry, see below);
//! - one zero range (WRITE_ZEROES / DISCARD): [`ZERO_RANGE_COST`] bytes, at most
//!   [`MAX_ZERO_RANGES`] of them.
//!
//! A write that would exceed the budget fails with [`BackendError::NoSpace`] and changes
//! nothing in the blocks it touches; the device answers VIRTIO_BLK_S_IOERR and counts it in
//! [`crate::DeviceStats::budget_exceeded`]. Zeroing whole overlay blocks gives their charge
//! back. [`RamDisk::worst_case_bytes`] is the most the overlay can ever hold, so a
//! hypervisor that reserves it at VM creation can never run out of heap because of a disk.
//!
//! Map overhead estimate: the overlay is a `BTreeMap<u64, Box<[u8; 4096]>>`. A leaf node
//! holds 11 keys and 11 values (8 bytes each) plus 16 bytes of header: 192 bytes; an
//! internal node adds 12 edge pointers: 288 bytes. Every node but the root holds at least 5
//! entries, so leaves cost at most 192 / 5 ≈ 39 bytes per entry and internal nodes (at most
//! one per 6 children) about 10 more; 64 bytes per entry covers that and the heap
//! allocator's rounding of the node allocations. The 4 KiB block is one allocation of
//! exactly 4096 bytes. Fragmentation of the hypervisor heap is not accounted.

use alloc::borrow::Cow;
use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::fmt;

use crate::blk::{BackendError, BlockBackend};
use crate::state::{
    DiskContents, OverlayBlock, OverlayState, StateError, ZeroRange, DISK_COPY_ON_WRITE, DISK_OWNED,
};

/// Granularity of the copy-on-write overlay.
pub const OVERLAY_BLOCK: u64 = 4096;
/// Estimated heap bytes of one overlay map entry beyond the block itself (see the module
/// documentation for the estimate).
pub const OVERLAY_MAP_ENTRY_BYTES: u64 = 64;
/// Budget charged per overlay block.
pub const OVERLAY_BLOCK_COST: u64 = OVERLAY_BLOCK + OVERLAY_MAP_ENTRY_BYTES;
/// Most zero ranges one overlay records (adjacent and overlapping ranges are merged).
pub const MAX_ZERO_RANGES: usize = 4096;
/// Budget charged per zero range: a 16-byte entry of a `Vec` that may hold up to twice
/// its length in capacity (amortized growth).
pub const ZERO_RANGE_COST: u64 = 32;

/// A RAM disk could not be allocated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskAllocError {
    /// Size of the disk in bytes.
    pub bytes: u64,
}

impl fmt::Display for DiskAllocError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot allocate a {}-byte RAM disk from the hypervisor heap; use a smaller disk or \
             give the machine more memory",
            self.bytes
        )
    }
}

/// Sorted, disjoint, non-adjacent byte ranges `[start, end)` that read as zeros.
#[derive(Debug, Default)]
struct ZeroRanges {
    ranges: Vec<(u64, u64)>,
}

impl ZeroRanges {
    /// Index of the first range ending at or after `start` (overlapping or touching it).
    fn first_touching(&self, start: u64) -> usize {
        self.ranges.partition_point(|&(_, e)| e < start)
    }

    /// Index of the first range starting after `end` (neither overlapping nor touching).
    fn first_after(&self, end: u64) -> usize {
        self.ranges.partition_point(|&(s, _)| s <= end)
    }

    /// Entries after inserting `[start, end)` (merging what it overlaps or touches).
    fn len_after_insert(&self, start: u64, end: u64) -> usize {
        let i = self.first_touching(start);
        let j = self.first_after(end).max(i);
        self.ranges.len() - (j - i) + 1
    }

    /// Inserts `[start, end)`, merging. The caller reserved room for one more entry.
    fn insert(&mut self, start: u64, end: u64) {
        let i = self.first_touching(start);
        let j = self.first_after(end).max(i);
        if i == j {
            self.ranges.insert(i, (start, end));
            return;
        }
        let s = self.ranges.get(i).map_or(start, |r| r.0.min(start));
        let e = self.ranges.get(j - 1).map_or(end, |r| r.1.max(end));
        if let Some(r) = self.ranges.get_mut(i) {
            *r = (s, e);
        }
        self.ranges.drain(i + 1..j);
    }

    /// Calls `f(start, end)` for every zeroed piece inside `[start, end)`.
    fn for_each_in(&self, start: u64, end: u64, mut f: impl FnMut(u64, u64)) {
        let from = self.ranges.partition_point(|&(_, e)| e <= start);
        for &(s, e) in self.ranges.get(from..).unwrap_or(&[]) {
            if s >= end {
                break;
            }
            f(s.max(start), e.min(end));
        }
    }
}

/// The copy-on-write state of a disk over a borrowed image.
#[derive(Debug)]
struct Overlay {
    blocks: BTreeMap<u64, Box<[u8; OVERLAY_BLOCK as usize]>>,
    zeroes: ZeroRanges,
    budget: u64,
    charged: u64,
}

enum Storage {
    Owned(Vec<u8>),
    Cow {
        image: &'static [u8],
        overlay: Overlay,
    },
}

/// A RAM disk: either an owned image written in place, or a copy-on-write overlay of
/// modified 4 KiB blocks and zeroed ranges over a borrowed `&'static [u8]` image, with a
/// heap budget (see the [module documentation](self)).
pub struct RamDisk {
    storage: Storage,
    read_only: bool,
    flushes: u64,
}

impl fmt::Debug for RamDisk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RamDisk")
            .field("len", &self.len())
            .field("overlay_blocks", &self.overlay_blocks())
            .field("zero_ranges", &self.zero_ranges())
            .field("overlay_charged", &self.overlay_charged())
            .field("read_only", &self.read_only)
            .finish()
    }
}

/// The budget that lets an overlay over `len` bytes hold every block and every zero range.
pub const fn full_overlay_bytes(len: u64) -> u64 {
    len.div_ceil(OVERLAY_BLOCK) * OVERLAY_BLOCK_COST + MAX_ZERO_RANGES as u64 * ZERO_RANGE_COST
}

impl RamDisk {
    /// A zeroed writable disk of `size` bytes, allocated up front.
    pub fn new(size: usize) -> Self {
        Self::from_image(alloc::vec![0; size])
    }

    /// A zeroed writable disk of `size` bytes, or an error if the heap cannot hold it.
    pub fn try_new(size: usize) -> Result<Self, DiskAllocError> {
        let mut v = Vec::new();
        v.try_reserve_exact(size)
            .map_err(|_| DiskAllocError { bytes: size as u64 })?;
        v.resize(size, 0);
        Ok(Self::from_image(v))
    }

    /// A writable disk holding `image` (written in place; nothing is allocated later).
    pub fn from_image(image: Vec<u8>) -> Self {
        RamDisk {
            storage: Storage::Owned(image),
            read_only: false,
            flushes: 0,
        }
    }

    /// A writable copy-on-write disk over a borrowed image whose overlay may grow until it
    /// holds every block ([`full_overlay_bytes`] of the image). Prefer
    /// [`RamDisk::from_static_with_budget`] with a configured budget; either way reserve
    /// [`RamDisk::worst_case_bytes`] when the VM is created.
    pub fn from_static(image: &'static [u8]) -> Self {
        Self::from_static_with_budget(image, full_overlay_bytes(image.len() as u64))
    }

    /// A writable copy-on-write disk over a borrowed image: writes go to an overlay of
    /// 4 KiB blocks and zero ranges charged to `budget_bytes`; the image is never
    /// modified. Writes beyond the budget fail with [`BackendError::NoSpace`].
    pub fn from_static_with_budget(image: &'static [u8], budget_bytes: u64) -> Self {
        RamDisk {
            storage: Storage::Cow {
                image,
                overlay: Overlay {
                    blocks: BTreeMap::new(),
                    zeroes: ZeroRanges::default(),
                    budget: budget_bytes,
                    charged: 0,
                },
            },
            read_only: false,
            flushes: 0,
        }
    }

    /// Makes the disk read-only (VIRTIO_BLK_F_RO).
    pub fn read_only(mut self, ro: bool) -> Self {
        self.read_only = ro;
        self
    }

    /// Number of flushes seen.
    pub fn flushes(&self) -> u64 {
        self.flushes
    }

    /// The overlay budget in bytes (`None` for an owned disk).
    pub fn overlay_budget(&self) -> Option<u64> {
        match &self.storage {
            Storage::Owned(_) => None,
            Storage::Cow { overlay, .. } => Some(overlay.budget),
        }
    }

    /// Bytes currently charged to the overlay budget (0 for an owned disk).
    pub fn overlay_charged(&self) -> u64 {
        match &self.storage {
            Storage::Owned(_) => 0,
            Storage::Cow { overlay, .. } => overlay.charged,
        }
    }

    /// Overlay blocks allocated.
    pub fn overlay_blocks(&self) -> usize {
        match &self.storage {
            Storage::Owned(_) => 0,
            Storage::Cow { overlay, .. } => overlay.blocks.len(),
        }
    }

    /// Zero ranges recorded.
    pub fn zero_ranges(&self) -> usize {
        match &self.storage {
            Storage::Owned(_) => 0,
            Storage::Cow { overlay, .. } => overlay.zeroes.ranges.len(),
        }
    }

    fn check(&self, offset: u64, len: u64) -> Result<(), BackendError> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len() => Ok(()),
            _ => Err(BackendError::OutOfRange { offset, len }),
        }
    }

    fn kind_name(&self) -> &'static str {
        match self.storage {
            Storage::Owned(_) => DISK_OWNED,
            Storage::Cow { .. } => DISK_COPY_ON_WRITE,
        }
    }
}

impl Overlay {
    /// The overlay a snapshot holds, borrowing the blocks.
    fn save(&self) -> OverlayState<'_> {
        OverlayState {
            blocks: self
                .blocks
                .iter()
                .map(|(&index, b)| OverlayBlock {
                    index,
                    data: Cow::Borrowed(&b[..]),
                })
                .collect(),
            zero_ranges: self
                .zeroes
                .ranges
                .iter()
                .map(|&(start, end)| ZeroRange { start, end })
                .collect(),
        }
    }

    /// Checks `s` for an overlay over `len` bytes with this overlay's budget: blocks inside
    /// the disk in increasing order, each [`OVERLAY_BLOCK`] bytes; zero ranges non-empty,
    /// inside the disk, sorted, disjoint and not touching (as [`ZeroRanges::insert`] keeps
    /// them), at most [`MAX_ZERO_RANGES`]; all of it within the budget. Returns the charge.
    fn check(&self, len: u64, s: &OverlayState<'_>) -> Result<u64, StateError> {
        let blocks = len.div_ceil(OVERLAY_BLOCK);
        let mut next = 0u64;
        for b in &s.blocks {
            if b.index >= blocks {
                return Err(StateError::OverlayBlockBeyondDisk {
                    index: b.index,
                    blocks,
                });
            }
            if b.index < next {
                return Err(StateError::OverlayBlockOrder { index: b.index });
            }
            if b.data.len() as u64 != OVERLAY_BLOCK {
                return Err(StateError::OverlayBlockLength {
                    index: b.index,
                    len: b.data.len(),
                });
            }
            // Below `blocks`, which is at most u64::MAX / OVERLAY_BLOCK + 1.
            next = b.index + 1;
        }
        let count = s.zero_ranges.len();
        if count > MAX_ZERO_RANGES {
            return Err(StateError::TooManyZeroRanges {
                count,
                max: MAX_ZERO_RANGES,
            });
        }
        let mut prev_end: Option<u64> = None;
        for r in &s.zero_ranges {
            if r.start >= r.end || r.end > len {
                return Err(StateError::ZeroRangeBounds {
                    start: r.start,
                    end: r.end,
                    disk: len,
                });
            }
            if prev_end.is_some_and(|e| r.start <= e) {
                return Err(StateError::ZeroRangeOrder { start: r.start });
            }
            prev_end = Some(r.end);
        }
        // Every block and every range is charged (see the module documentation).
        let needed = (s.blocks.len() as u64)
            .checked_mul(OVERLAY_BLOCK_COST)
            .and_then(|b| b.checked_add(count as u64 * ZERO_RANGE_COST));
        match needed {
            Some(n) if n <= self.budget => Ok(n),
            _ => Err(StateError::OverlayBudget {
                needed: needed.unwrap_or(u64::MAX),
                budget: self.budget,
            }),
        }
    }

    /// Builds the blocks and ranges of `s` (checked) without touching `self`; fails only
    /// when the heap cannot hold them.
    #[allow(clippy::type_complexity)]
    fn build(
        s: &OverlayState<'_>,
    ) -> Result<(BTreeMap<u64, Box<[u8; OVERLAY_BLOCK as usize]>>, ZeroRanges), StateError> {
        let oom = |bytes: u64| StateError::OutOfMemory { bytes };
        let mut blocks = BTreeMap::new();
        for b in &s.blocks {
            let mut v: Vec<u8> = Vec::new();
            v.try_reserve_exact(OVERLAY_BLOCK as usize)
                .map_err(|_| oom(OVERLAY_BLOCK))?;
            v.extend_from_slice(&b.data);
            let block: Box<[u8; OVERLAY_BLOCK as usize]> = v
                .into_boxed_slice()
                .try_into()
                .map_err(|_| oom(OVERLAY_BLOCK))?;
            blocks.insert(b.index, block);
        }
        let mut ranges = Vec::new();
        ranges
            .try_reserve_exact(s.zero_ranges.len())
            .map_err(|_| oom(s.zero_ranges.len() as u64 * ZERO_RANGE_COST))?;
        ranges.extend(s.zero_ranges.iter().map(|r| (r.start, r.end)));
        Ok((blocks, ZeroRanges { ranges }))
    }
}

impl Overlay {
    fn no_space(&self, needed: u64) -> BackendError {
        BackendError::NoSpace {
            budget: self.budget,
            charged: self.charged,
            needed,
        }
    }

    /// A new overlay block holding what the disk reads at `block` now.
    fn new_block(
        &self,
        image: &[u8],
        block: u64,
    ) -> Result<Box<[u8; OVERLAY_BLOCK as usize]>, BackendError> {
        let mut v: Vec<u8> = Vec::new();
        v.try_reserve_exact(OVERLAY_BLOCK as usize)
            .map_err(|_| self.no_space(OVERLAY_BLOCK_COST))?;
        let start = block * OVERLAY_BLOCK;
        let end = start + OVERLAY_BLOCK;
        let src = image
            .get(start as usize..(end as usize).min(image.len()))
            .unwrap_or(&[]);
        v.extend_from_slice(src);
        v.resize(OVERLAY_BLOCK as usize, 0);
        // virtio 1.2 §5.2.6.2: a block that was zeroed reads as zeros until rewritten.
        self.zeroes.for_each_in(start, end, |s, e| {
            if let Some(b) = v.get_mut((s - start) as usize..(e - start) as usize) {
                b.fill(0);
            }
        });
        v.into_boxed_slice()
            .try_into()
            .map_err(|_| self.no_space(OVERLAY_BLOCK_COST))
    }

    fn read(&self, image: &[u8], offset: u64, buf: &mut [u8]) {
        let mut done = 0usize;
        while done < buf.len() {
            let pos = offset + done as u64;
            let block = pos / OVERLAY_BLOCK;
            let within = (pos % OVERLAY_BLOCK) as usize;
            let n = (OVERLAY_BLOCK as usize - within).min(buf.len() - done);
            let dst = &mut buf[done..done + n];
            match self.blocks.get(&block) {
                Some(b) => dst.copy_from_slice(&b[within..within + n]),
                None => {
                    let p = pos as usize;
                    dst.copy_from_slice(&image[p..p + n]);
                    self.zeroes.for_each_in(pos, pos + n as u64, |s, e| {
                        dst[(s - pos) as usize..(e - pos) as usize].fill(0);
                    });
                }
            }
            done += n;
        }
    }

    /// Writes `data` at `offset` (range-checked by the caller). All blocks it needs are
    /// charged and allocated before any byte is written.
    fn write(&mut self, image: &[u8], offset: u64, data: &[u8]) -> Result<(), BackendError> {
        if data.is_empty() {
            return Ok(());
        }
        let first = offset / OVERLAY_BLOCK;
        let last = (offset + data.len() as u64 - 1) / OVERLAY_BLOCK;
        let missing = (first..=last)
            .filter(|b| !self.blocks.contains_key(b))
            .count() as u64;
        let needed = missing * OVERLAY_BLOCK_COST;
        if self
            .charged
            .checked_add(needed)
            .is_none_or(|c| c > self.budget)
        {
            return Err(self.no_space(needed));
        }
        for block in first..=last {
            if !self.blocks.contains_key(&block) {
                let b = self.new_block(image, block)?;
                self.charged += OVERLAY_BLOCK_COST;
                self.blocks.insert(block, b);
            }
        }
        let mut done = 0usize;
        while done < data.len() {
            let pos = offset + done as u64;
            let within = (pos % OVERLAY_BLOCK) as usize;
            let n = (OVERLAY_BLOCK as usize - within).min(data.len() - done);
            if let Some(b) = self.blocks.get_mut(&(pos / OVERLAY_BLOCK)) {
                b[within..within + n].copy_from_slice(&data[done..done + n]);
            }
            done += n;
        }
        Ok(())
    }

    /// Records `[offset, offset+len)` as zeros (range-checked by the caller): whole overlay
    /// blocks inside it are freed (their charge returned), partly covered ones are zeroed in
    /// place, and the range joins the zero-range set.
    fn zero(&mut self, offset: u64, len: u64) -> Result<(), BackendError> {
        if len == 0 {
            return Ok(());
        }
        let end = offset + len;
        let entries = self.zeroes.len_after_insert(offset, end);
        let grows = entries > self.zeroes.ranges.len();
        let full_first = offset.div_ceil(OVERLAY_BLOCK);
        let full_end = end / OVERLAY_BLOCK;
        let freed = if full_first < full_end {
            self.blocks.range(full_first..full_end).count() as u64 * OVERLAY_BLOCK_COST
        } else {
            0
        };
        if grows {
            let after = (self.charged - freed).checked_add(ZERO_RANGE_COST);
            if entries > MAX_ZERO_RANGES || after.is_none_or(|c| c > self.budget) {
                return Err(self.no_space(ZERO_RANGE_COST));
            }
            self.zeroes
                .ranges
                .try_reserve(1)
                .map_err(|_| self.no_space(ZERO_RANGE_COST))?;
        }
        // Entries only change by merging from here on; nothing below can fail.
        // Removal frees nodes and never allocates (unlike `split_off`).
        while let Some(&block) = self
            .blocks
            .range(full_first..full_end.max(full_first))
            .next()
            .map(|(k, _)| k)
        {
            self.blocks.remove(&block);
        }
        let first = offset / OVERLAY_BLOCK;
        let last = (end - 1) / OVERLAY_BLOCK;
        for block in [first, last] {
            let start = block * OVERLAY_BLOCK;
            if let Some(b) = self.blocks.get_mut(&block) {
                let s = offset.max(start) - start;
                let e = end.min(start + OVERLAY_BLOCK) - start;
                b[s as usize..e as usize].fill(0);
            }
        }
        let before = self.zeroes.ranges.len() as u64;
        self.zeroes.insert(offset, end);
        let after = self.zeroes.ranges.len() as u64;
        // `charged` includes `before` ranges and the freed blocks, so this cannot underflow.
        self.charged = self.charged - freed - before * ZERO_RANGE_COST + after * ZERO_RANGE_COST;
        Ok(())
    }
}

impl BlockBackend for RamDisk {
    fn len(&self) -> u64 {
        match &self.storage {
            Storage::Owned(v) => v.len() as u64,
            Storage::Cow { image, .. } => image.len() as u64,
        }
    }

    fn read_only(&self) -> bool {
        self.read_only
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), BackendError> {
        self.check(offset, buf.len() as u64)?;
        match &self.storage {
            Storage::Owned(v) => {
                let p = offset as usize;
                buf.copy_from_slice(&v[p..p + buf.len()]);
            }
            Storage::Cow { image, overlay } => overlay.read(image, offset, buf),
        }
        Ok(())
    }

    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), BackendError> {
        if self.read_only {
            return Err(BackendError::ReadOnly);
        }
        self.check(offset, data.len() as u64)?;
        match &mut self.storage {
            Storage::Owned(v) => {
                let p = offset as usize;
                v[p..p + data.len()].copy_from_slice(data);
                Ok(())
            }
            Storage::Cow { image, overlay } => overlay.write(image, offset, data),
        }
    }

    fn flush(&mut self) -> Result<(), BackendError> {
        self.flushes += 1;
        Ok(())
    }

    /// Owned disks zero in place; copy-on-write disks record a zero range (virtio 1.2
    /// §5.2.6.2 WRITE_ZEROES / DISCARD) instead of allocating blocks.
    fn write_zeroes(&mut self, offset: u64, len: u64) -> Result<(), BackendError> {
        if self.read_only {
            return Err(BackendError::ReadOnly);
        }
        self.check(offset, len)?;
        match &mut self.storage {
            Storage::Owned(v) => {
                let p = offset as usize;
                v[p..p + len as usize].fill(0);
                Ok(())
            }
            Storage::Cow { overlay, .. } => overlay.zero(offset, len),
        }
    }

    /// An owned disk's bytes, or a copy-on-write disk's overlay (borrowed, not copied).
    fn save_contents(&self) -> DiskContents<'_> {
        match &self.storage {
            Storage::Owned(v) => DiskContents::Owned(Cow::Borrowed(v)),
            Storage::Cow { overlay, .. } => DiskContents::CopyOnWrite(overlay.save()),
        }
    }

    /// An owned disk takes the bytes in place (nothing allocated); a copy-on-write disk
    /// builds the new overlay (charged to its budget, which must hold it) before replacing
    /// the old one, so an allocation failure changes nothing.
    fn load_contents(&mut self, contents: &DiskContents<'_>) -> Result<(), StateError> {
        let len = self.len();
        let vm = self.kind_name();
        match (&mut self.storage, contents) {
            (Storage::Owned(v), DiskContents::Owned(bytes)) => {
                if bytes.len() != v.len() {
                    return Err(StateError::DiskContentsLength {
                        bytes: bytes.len() as u64,
                        disk: len,
                    });
                }
                v.copy_from_slice(bytes);
                Ok(())
            }
            (Storage::Cow { overlay, .. }, DiskContents::CopyOnWrite(s)) => {
                let charged = overlay.check(len, s)?;
                let (blocks, zeroes) = Overlay::build(s)?;
                overlay.blocks = blocks;
                overlay.zeroes = zeroes;
                overlay.charged = charged;
                Ok(())
            }
            (_, other) => Err(StateError::DiskKind {
                snapshot: other.kind_name(),
                vm,
            }),
        }
    }

    /// 0 for an owned disk (allocated up front); for a copy-on-write disk the budget, or
    /// the overlay of every block plus [`MAX_ZERO_RANGES`] zero ranges if that is less.
    fn worst_case_bytes(&self) -> u64 {
        match &self.storage {
            Storage::Owned(_) => 0,
            Storage::Cow { image, overlay } => {
                overlay.budget.min(full_overlay_bytes(image.len() as u64))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_ranges_merge_adjacent_and_overlapping() {
        let mut z = ZeroRanges::default();
        z.insert(100, 200);
        z.insert(300, 400);
        assert_eq!(z.ranges, [(100, 200), (300, 400)]);
        assert_eq!(
            z.len_after_insert(200, 300),
            1,
            "touches both: merges into one"
        );
        assert_eq!(z.len_after_insert(500, 600), 3);
        z.insert(200, 300);
        assert_eq!(z.ranges, [(100, 400)]);
        z.insert(0, 50);
        z.insert(450, 460);
        z.insert(40, 455);
        assert_eq!(z.ranges, [(0, 460)]);
        let mut seen = Vec::new();
        z.for_each_in(10, 20, |s, e| seen.push((s, e)));
        assert_eq!(seen, [(10, 20)]);
        seen.clear();
        z.for_each_in(460, 500, |s, e| seen.push((s, e)));
        assert!(seen.is_empty());
    }
}
