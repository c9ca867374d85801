//! Physical memory: a frame allocator over the bootloader's memory map, the direct map of all
//! physical memory (set up by the bootloader at a dynamic offset), and the kernel heap.

use bootloader_api::info::{MemoryRegionKind, MemoryRegions};
use core::alloc::{GlobalAlloc, Layout};
use core::sync::atomic::{AtomicUsize, Ordering};
use linked_list_allocator::LockedHeap;
use spin::{Mutex, Once};

pub const FRAME_SIZE: u64 = 4096;
/// At most this many usable regions are tracked (UEFI maps have ~100 entries, most of them
/// not usable); further ones are reported and left unused.
const MAX_REGIONS: usize = 64;
/// The kernel heap holds device state (RAM disks, network buffers) and logs; guest RAM is not
/// on the heap. It gets an eighth of usable memory, between 8 MiB and 512 MiB.
const HEAP_MIN: u64 = 8 << 20;
const HEAP_MAX: u64 = 512 << 20;

/// The kernel heap, with its high-water mark: the most bytes ever in use.
struct Heap {
    inner: LockedHeap,
    high_water: AtomicUsize,
}

// SAFETY: every call is forwarded to `LockedHeap`, a sound allocator; the high-water update
// only reads its counters.
unsafe impl GlobalAlloc for Heap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's contract.
        let p = unsafe { self.inner.alloc(layout) };
        if !p.is_null() {
            let used = self.inner.lock().used();
            self.high_water.fetch_max(used, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's contract.
        unsafe { self.inner.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static HEAP: Heap = Heap {
    inner: LockedHeap::empty(),
    high_water: AtomicUsize::new(0),
};
/// Heap bytes promised to VMs for what their guests may still make the hypervisor allocate
/// (disk overlays): never available to anyone else (docs/architecture.md, "Budgets").
static RESERVED: AtomicUsize = AtomicUsize::new(0);

static PHYS_OFFSET: Once<u64> = Once::new();
/// The end of the highest region of the firmware's memory map: the bootloader's direct map
/// covers physical addresses below it.
static MAPPED_END: Once<u64> = Once::new();
static FRAMES: Mutex<FrameAllocator> = Mutex::new(FrameAllocator::empty());
/// Two frames below 1 MiB kept out of the allocator for the application processors'
/// start-up code and its page-table root (a SIPI vector names a page below 1 MiB, and
/// 32-bit code can load only a CR3 below 4 GiB: SDM Vol. 3A §9.4.4.1, §10.8.5).
static LOW_FRAMES: Once<Option<u64>> = Once::new();
/// The first physical address a SIPI vector cannot name.
const LOW_MEMORY_END: u64 = 0x10_0000;
/// Frames taken by [`LOW_FRAMES`].
pub const LOW_FRAME_COUNT: u64 = 2;

/// A usable physical range: [next, end) is still free.
#[derive(Debug, Clone, Copy, Default)]
struct Range {
    next: u64,
    end: u64,
}

/// Bump allocation within each usable region (largest first), plus a free list of single
/// frames threaded through the freed frames themselves (via the direct map).
#[derive(Debug)]
pub struct FrameAllocator {
    regions: [Range; MAX_REGIONS],
    count: usize,
    free_list: u64,
    /// Frames on the free list.
    free_frames: u64,
    allocated: u64,
}

impl FrameAllocator {
    const fn empty() -> Self {
        Self {
            regions: [Range { next: 0, end: 0 }; MAX_REGIONS],
            count: 0,
            free_list: 0,
            free_frames: 0,
            allocated: 0,
        }
    }

    /// Bump-allocates `size` bytes aligned to `align` (a power of two, at least 4 KiB) from
    /// the first region with room; `None` when none has.
    fn bump(&mut self, size: u64, align: u64) -> Option<u64> {
        self.regions[..self.count].iter_mut().find_map(|r| {
            let start = r.next.checked_next_multiple_of(align)?;
            let end = start.checked_add(size)?;
            (end <= r.end).then(|| {
                r.next = end;
                start
            })
        })
    }
}

/// Reserves `size` bytes of physically contiguous memory aligned to `align` (guest RAM). The
/// memory is not zeroed; it is never returned (VMs live until the run ends).
pub fn allocate_contiguous(size: u64, align: u64) -> Option<u64> {
    FRAMES
        .lock()
        .bump(size.next_multiple_of(FRAME_SIZE), align.max(FRAME_SIZE))
}

/// Physical-to-virtual translation through the bootloader's direct map.
pub fn phys_to_virt(phys: u64) -> *mut u8 {
    (PHYS_OFFSET.get().copied().unwrap_or(0) + phys) as *mut u8
}

/// Allocates one zeroed 4 KiB frame; returns its physical address.
pub fn allocate_frame() -> Option<u64> {
    let mut frames = FRAMES.lock();
    let frame = if frames.free_list != 0 {
        let frame = frames.free_list;
        // SAFETY: every frame on the free list was handed back by `free_frame`, is owned by
        // the allocator and mapped by the direct map; its first word holds the next link.
        frames.free_list = unsafe { phys_to_virt(frame).cast::<u64>().read() };
        frames.free_frames -= 1;
        frame
    } else {
        frames.bump(FRAME_SIZE, FRAME_SIZE)?
    };
    frames.allocated += 1;
    drop(frames);
    // SAFETY: the frame was just taken from the allocator, so nothing else references it,
    // and the direct map covers it.
    unsafe { core::ptr::write_bytes(phys_to_virt(frame), 0, FRAME_SIZE as usize) };
    Some(frame)
}

/// Returns a frame obtained from [`allocate_frame`].
///
/// # Safety
/// `frame` must come from [`allocate_frame`], not be freed twice, and no longer be used by
/// anything (CPU structures included: a VMCS must be VMCLEARed first).
pub unsafe fn free_frame(frame: u64) {
    let mut frames = FRAMES.lock();
    // SAFETY: the caller hands over ownership of the frame; we store the list link in it.
    unsafe { phys_to_virt(frame).cast::<u64>().write(frames.free_list) };
    frames.free_list = frame;
    frames.free_frames += 1;
    frames.allocated -= 1;
}

/// What [`init`] found, for the platform report.
#[derive(Debug, Default, Clone, Copy)]
pub struct MemorySummary {
    pub regions: usize,
    pub usable_regions: usize,
    pub usable_bytes: u64,
    pub largest_usable: u64,
    pub highest_address: u64,
    pub ignored_regions: usize,
    pub heap_start: u64,
    pub heap_size: u64,
}

/// Sets up the direct map offset, the frame allocator and the heap.
pub fn init(regions: &MemoryRegions, phys_offset: u64) -> Result<MemorySummary, &'static str> {
    PHYS_OFFSET.call_once(|| phys_offset);
    let mut summary = MemorySummary {
        regions: regions.len(),
        ..Default::default()
    };
    let mut frames = FRAMES.lock();
    let mut low = None;
    for r in regions.iter() {
        summary.highest_address = summary.highest_address.max(r.end);
        if r.kind != MemoryRegionKind::Usable {
            continue;
        }
        // Frame 0 stays unused so a zero physical address can never be handed out.
        let mut start = r.start.max(FRAME_SIZE).next_multiple_of(FRAME_SIZE);
        let end = r.end & !(FRAME_SIZE - 1);
        let low_end = start + LOW_FRAME_COUNT * FRAME_SIZE;
        if low.is_none() && low_end <= end.min(LOW_MEMORY_END) {
            low = Some(start);
            start = low_end;
        }
        if end <= start {
            continue;
        }
        summary.usable_regions += 1;
        summary.usable_bytes += end - start;
        summary.largest_usable = summary.largest_usable.max(end - start);
        if frames.count == MAX_REGIONS {
            summary.ignored_regions += 1;
            continue;
        }
        let i = frames.count;
        frames.regions[i] = Range { next: start, end };
        frames.count += 1;
    }
    MAPPED_END.call_once(|| summary.highest_address);
    LOW_FRAMES.call_once(|| low);
    // Largest regions first: big contiguous allocations (heap, guest RAM) come from them.
    let count = frames.count;
    frames.regions[..count].sort_unstable_by_key(|r| core::cmp::Reverse(r.end - r.next));
    let heap_size = (summary.usable_bytes / 8).clamp(HEAP_MIN, HEAP_MAX) & !((2 << 20) - 1);
    let heap = frames
        .bump(heap_size, 2 << 20)
        .ok_or("not enough memory for the kernel heap (at least 8 MiB)")?;
    drop(frames);
    // SAFETY: the heap range was just reserved from the allocator, is mapped by the direct map
    // and is used for nothing else for the rest of the kernel's life.
    unsafe {
        HEAP.inner
            .lock()
            .init(phys_to_virt(heap), heap_size as usize)
    };
    summary.heap_start = heap;
    summary.heap_size = heap_size;
    Ok(summary)
}

/// Whether the direct map covers the 4 KiB page at `phys` (device pages such as the local
/// APIC's are mapped only when the firmware's memory map reaches them).
pub fn is_direct_mapped(phys: u64) -> bool {
    MAPPED_END
        .get()
        .is_some_and(|&end| phys.checked_add(FRAME_SIZE).is_some_and(|e| e <= end))
}

/// The [`LOW_FRAME_COUNT`] frames below 1 MiB reserved for starting application processors,
/// if the memory map had a usable range there.
pub fn low_frames() -> Option<u64> {
    LOW_FRAMES.get().copied().flatten()
}

/// Frames [`allocate_frame`] can still hand out: the free list and what the regions have left
/// (some of it may go to alignment if contiguous ranges are taken meanwhile).
pub fn frames_left() -> u64 {
    let frames = FRAMES.lock();
    let bump: u64 = frames.regions[..frames.count]
        .iter()
        .map(|r| r.end.saturating_sub(r.next) / FRAME_SIZE)
        .sum();
    bump + frames.free_frames
}

/// Frames currently handed out by [`allocate_frame`].
pub fn allocated_frames() -> u64 {
    FRAMES.lock().allocated
}

/// Free bytes on the kernel heap (a VM's device state must fit before it is created).
pub fn heap_free() -> usize {
    HEAP.inner.lock().free()
}

/// Free heap bytes nobody has a claim on: free less what VMs have reserved.
pub fn heap_available() -> usize {
    heap_free().saturating_sub(RESERVED.load(Ordering::Relaxed))
}

/// Reserves `bytes` of the heap for a VM's future device allocations if that many are
/// available beyond `margin` (kept free against fragmentation); returns what was available
/// otherwise.
pub fn reserve_heap(bytes: usize, margin: usize) -> Result<(), usize> {
    let available = heap_available();
    if bytes.saturating_add(margin) > available {
        return Err(available);
    }
    RESERVED.fetch_add(bytes, Ordering::Relaxed);
    Ok(())
}

/// Gives back `bytes` reserved by [`reserve_heap`] (a VM restarting reserves its worst case
/// anew).
pub fn release_heap(bytes: usize) {
    let _ = RESERVED.try_update(Ordering::Relaxed, Ordering::Relaxed, |r| {
        Some(r.saturating_sub(bytes))
    });
}

/// Heap bytes reserved for VMs.
pub fn heap_reserved() -> usize {
    RESERVED.load(Ordering::Relaxed)
}

/// The heap's size, and the most bytes ever in use at once.
pub fn heap_size_and_high_water() -> (usize, usize) {
    let size = HEAP.inner.lock().size();
    (size, HEAP.high_water.load(Ordering::Relaxed))
}

/// A device page (a local APIC, a PCI BAR) reachable at the returned address: through the
/// direct map when it covers the page, else uncached in the device window (mmio_map.rs).
/// `None` when it cannot be mapped.
pub fn map_mmio(phys: u64) -> Option<*mut u8> {
    let page = phys & !(FRAME_SIZE - 1);
    if is_direct_mapped(page) {
        return Some(phys_to_virt(phys));
    }
    let base = crate::mmio_map::map(page, FRAME_SIZE).ok()?;
    // SAFETY: `base` maps the whole page; the offset stays inside it.
    Some(unsafe { base.add((phys - page) as usize) })
}
