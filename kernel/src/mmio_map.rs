//! Mappings for device registers the bootloader's direct map does not reach (a 64-bit BAR
//! placed high by the firmware, e.g. OVMF puts QEMU's NVMe BAR at 0xE0_0000_0000): one
//! empty top-level (PML4) slot of the upper half becomes a window, and each BAR is mapped
//! there with 4 KiB pages, writable and uncached (PCD | PWT, SDM Vol. 3A §4.9 and §11.12:
//! with the PAT's default entries this selects UC). The window only grows; device
//! registers stay mapped for the run.

use crate::memory;
use spin::Mutex;
use x86_64::structures::paging::{
    FrameAllocator, Mapper, OffsetPageTable, Page, PageTable, PageTableFlags, PhysFrame, Size4KiB,
};
use x86_64::{PhysAddr, VirtAddr};

/// Frames for page tables, from the kernel's frame allocator (zeroed).
struct Frames;

// SAFETY: `memory::allocate_frame` hands out each zeroed frame once.
unsafe impl FrameAllocator<Size4KiB> for Frames {
    fn allocate_frame(&mut self) -> Option<PhysFrame<Size4KiB>> {
        memory::allocate_frame().map(|p| PhysFrame::containing_address(PhysAddr::new(p)))
    }
}

/// The next free virtual address in the window, once a window was chosen.
static NEXT: Mutex<Option<u64>> = Mutex::new(None);

/// Why a mapping could not be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapError {
    /// Every upper-half PML4 slot is in use.
    NoWindow,
    /// No frame for a page table.
    NoFrames,
}

impl core::fmt::Display for MapError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            MapError::NoWindow => {
                write!(f, "no free top-level page-table slot for device mappings")
            }
            MapError::NoFrames => write!(f, "no memory for the page tables of a device mapping"),
        }
    }
}

/// Maps `len` bytes of device registers at physical `phys` (page aligned) uncached; returns
/// the virtual address of `phys`.
pub fn map(phys: u64, len: u64) -> Result<*mut u8, MapError> {
    let offset = memory::phys_to_virt(0) as u64;
    let (cr3, _) = x86_64::registers::control::Cr3::read();
    let l4_virt = memory::phys_to_virt(cr3.start_address().as_u64()).cast::<PageTable>();
    // SAFETY: CR3's top-level table is mapped by the direct map; the NEXT lock (taken below,
    // before any change) serialises every change to it, on any CPU, and CPUs add no other
    // top-level entries after boot.
    let l4 = unsafe { &mut *l4_virt };
    let mut next = NEXT.lock();
    let base = match *next {
        Some(v) => v,
        None => {
            let slot = (256..512)
                .rev()
                .find(|&i| l4[i].is_unused())
                .ok_or(MapError::NoWindow)?;
            VirtAddr::new_truncate((slot as u64) << 39).as_u64()
        }
    };
    // SAFETY: `offset` is the bootloader's direct map of all physical memory, which is what
    // OffsetPageTable needs to reach the tables.
    let mut table = unsafe { OffsetPageTable::new(l4, VirtAddr::new(offset)) };
    let flags = PageTableFlags::PRESENT
        | PageTableFlags::WRITABLE
        | PageTableFlags::NO_CACHE
        | PageTableFlags::WRITE_THROUGH;
    let pages = len.div_ceil(memory::FRAME_SIZE);
    for i in 0..pages {
        let page =
            Page::<Size4KiB>::containing_address(VirtAddr::new(base + i * memory::FRAME_SIZE));
        let frame = PhysFrame::containing_address(PhysAddr::new(phys + i * memory::FRAME_SIZE));
        // SAFETY: the page lies in a PML4 slot that was empty and is used only by this window,
        // so no existing mapping changes; the frame is device memory, never RAM the kernel uses.
        let flush = unsafe { table.map_to(page, frame, flags, &mut Frames) }
            .map_err(|_| MapError::NoFrames)?;
        flush.flush();
    }
    *next = Some(base + pages * memory::FRAME_SIZE);
    Ok(base as *mut u8)
}
