//! The `virtio_drivers::Hal` for Bulkhead's identity-mapped guests, and the small heap that
//! the crate's `alloc` feature needs (indirect descriptor lists are boxed).
//!
//! - DMA: a bump allocator over a static, page-aligned 2 MiB pool in `.bss` (zero at entry,
//!   never reused, so every allocation is zeroed); `dma_dealloc` only records the release.
//! - Addresses: guest-virtual = guest-physical, so `share`/`unshare` and
//!   `mmio_phys_to_virt` are the identity.
//! - Heap: power-of-two size classes (16 B .. 4 KiB) with free lists, carved from a static
//!   512 KiB arena; larger blocks are bump-allocated and never freed. One vCPU, and nothing
//!   allocates in interrupt handlers, so no locking is needed.

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicUsize, Ordering};
use virtio_drivers::{BufferDirection, Hal, PhysAddr, PAGE_SIZE};

const DMA_POOL_BYTES: usize = 2 << 20;

#[repr(C, align(4096))]
struct DmaPool(UnsafeCell<[u8; DMA_POOL_BYTES]>);

// SAFETY: the pool is only handed out in disjoint page ranges by the bump allocator below
// (single vCPU); the bytes themselves are only accessed through those ranges.
unsafe impl Sync for DmaPool {}

static DMA_POOL: DmaPool = DmaPool(UnsafeCell::new([0; DMA_POOL_BYTES]));
static DMA_NEXT_PAGE: AtomicUsize = AtomicUsize::new(0);
static DMA_LIVE_PAGES: AtomicUsize = AtomicUsize::new(0);
static DMA_ALLOCS: AtomicUsize = AtomicUsize::new(0);

/// DMA pool usage: (pages handed out, pages still live, allocations, pool pages).
pub fn dma_usage() -> (usize, usize, usize, usize) {
    (
        DMA_NEXT_PAGE.load(Ordering::Relaxed),
        DMA_LIVE_PAGES.load(Ordering::Relaxed),
        DMA_ALLOCS.load(Ordering::Relaxed),
        DMA_POOL_BYTES / PAGE_SIZE,
    )
}

/// The HAL: identity-mapped memory, DMA from the static pool.
#[derive(Debug)]
pub struct IdentityHal;

// SAFETY: `dma_alloc` returns page-aligned, zeroed, never-aliased pages of a static pool (the
// bump pointer only moves forward) or (0, dangling) when the pool is exhausted, which the crate
// turns into `Error::DmaError`; every address is identity-mapped, so physical = virtual.
unsafe impl Hal for IdentityHal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        let total = DMA_POOL_BYTES / PAGE_SIZE;
        let first = DMA_NEXT_PAGE.load(Ordering::Relaxed);
        if pages == 0 || first + pages > total {
            return (0, NonNull::dangling());
        }
        DMA_NEXT_PAGE.store(first + pages, Ordering::Relaxed);
        DMA_LIVE_PAGES.fetch_add(pages, Ordering::Relaxed);
        DMA_ALLOCS.fetch_add(1, Ordering::Relaxed);
        let base = DMA_POOL.0.get().cast::<u8>();
        // SAFETY: `first + pages <= total`, so the offset stays inside the pool.
        let ptr = unsafe { base.add(first * PAGE_SIZE) };
        let nn = NonNull::new(ptr).expect("static pool is not at address 0");
        (ptr as u64, nn)
    }

    unsafe fn dma_dealloc(_paddr: PhysAddr, _vaddr: NonNull<u8>, pages: usize) -> i32 {
        DMA_LIVE_PAGES.fetch_sub(pages, Ordering::Relaxed);
        0
    }

    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, _size: usize) -> NonNull<u8> {
        NonNull::new(paddr as *mut u8).expect("MMIO at address 0")
    }

    unsafe fn share(buffer: NonNull<[u8]>, _direction: BufferDirection) -> PhysAddr {
        buffer.as_ptr().cast::<u8>() as u64
    }

    unsafe fn unshare(_paddr: PhysAddr, _buffer: NonNull<[u8]>, _direction: BufferDirection) {}
}

const HEAP_BYTES: usize = 512 << 10;
const CLASSES: usize = 9; // 16, 32, ..., 4096
const MIN_CLASS_SHIFT: u32 = 4;

#[repr(C, align(4096))]
struct Arena([u8; HEAP_BYTES]);

struct HeapState {
    arena: Arena,
    next: usize,
    free: [usize; CLASSES],
    allocs: usize,
    frees: usize,
}

/// The global allocator (see the module documentation).
#[derive(Debug)]
pub struct Heap;

struct HeapCell(UnsafeCell<HeapState>);

// SAFETY: one vCPU, and no allocation happens in interrupt handlers, so the state is never
// accessed concurrently.
unsafe impl Sync for HeapCell {}

static HEAP: HeapCell = HeapCell(UnsafeCell::new(HeapState {
    arena: Arena([0; HEAP_BYTES]),
    next: 0,
    free: [0; CLASSES],
    allocs: 0,
    frees: 0,
}));

fn class_of(layout: Layout) -> Option<usize> {
    let size = layout.size().max(layout.align()).max(1 << MIN_CLASS_SHIFT);
    let class = size.next_power_of_two().trailing_zeros() - MIN_CLASS_SHIFT;
    ((class as usize) < CLASSES).then_some(class as usize)
}

impl HeapState {
    fn bump(&mut self, size: usize, align: usize) -> *mut u8 {
        let base = self.arena.0.as_mut_ptr() as usize;
        let start = (base + self.next).next_multiple_of(align);
        if start + size > base + HEAP_BYTES {
            return core::ptr::null_mut();
        }
        self.next = start + size - base;
        start as *mut u8
    }
}

// SAFETY: blocks come from disjoint parts of the arena: a class block is only reused after
// `dealloc` returned it, blocks of a class are aligned to their (power-of-two) size, which is
// at least the layout's size and alignment; bump blocks are never reused.
unsafe impl GlobalAlloc for Heap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: see `HeapCell`: no concurrent access.
        let h = unsafe { &mut *HEAP.0.get() };
        h.allocs += 1;
        match class_of(layout) {
            Some(c) => {
                let head = h.free[c];
                if head != 0 {
                    // SAFETY: `head` is a freed block of this class; its first word holds the
                    // next free block (written by `dealloc`).
                    h.free[c] = unsafe { *(head as *const usize) };
                    head as *mut u8
                } else {
                    let size = 1usize << (c as u32 + MIN_CLASS_SHIFT);
                    h.bump(size, size)
                }
            }
            None => h.bump(layout.size(), layout.align()),
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: see `HeapCell`: no concurrent access.
        let h = unsafe { &mut *HEAP.0.get() };
        h.frees += 1;
        if let Some(c) = class_of(layout) {
            // SAFETY: the block is ours again (the caller freed it), at least 16 bytes and
            // 16-aligned: its first word links it into the free list.
            unsafe { *(ptr as *mut usize) = h.free[c] };
            h.free[c] = ptr as usize;
        }
    }
}

/// Heap usage: (arena bytes used, allocations, frees).
pub fn heap_usage() -> (usize, usize, usize) {
    // SAFETY: see `HeapCell`: no concurrent access; only plain counters are read.
    let h = unsafe { &*HEAP.0.get() };
    (h.next, h.allocs, h.frees)
}
