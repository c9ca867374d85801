//! How the EPT builder obtains and accesses paging-structure frames.

use core::sync::atomic::AtomicU64;

use crate::types::Hpa;

/// Source of 4 KiB frames for EPT paging structures.
///
/// The frames need not be zeroed: [`crate::Ept`] clears every table it
/// allocates before linking it in.
pub trait FrameAllocator {
    /// Allocates one 4 KiB-aligned frame that nobody else uses until it is
    /// given back with [`FrameAllocator::free_table`]; `None` when exhausted.
    fn allocate_table(&mut self) -> Option<Hpa>;

    /// Takes back a frame previously returned by `allocate_table`.
    fn free_table(&mut self, frame: Hpa);
}

/// Access to the contents of EPT paging-structure frames.
///
/// Entries are `AtomicU64` because the processor reads the tables while
/// vCPUs run and, with accessed/dirty flags enabled, sets bits 8 and 9 in them
/// with locked read-modify-writes (SDM Vol. 3C §29.3.4); the builder updates
/// entries with atomic stores and compare-exchange so those updates are not
/// lost and no Rust reference aliases a concurrently modified plain integer.
///
/// # Safety
///
/// The hypervisor's memory safety depends on this mapping being faithful: the
/// EPTP built from these tables is handed to the processor, which walks the
/// *physical* frames. An implementation must guarantee that
/// `table(frame)` returns a reference to the 4 KiB of memory at host-physical
/// address `frame` (e.g. `direct_map_base + frame`), valid for as long as the
/// borrow of `self`, for every `frame` obtained from the [`FrameAllocator`]
/// used with the same [`crate::Ept`] and not yet freed. [`crate::Ept`] only
/// ever passes such frames. If the frames came from anywhere else (e.g. an
/// allocator that can hand out frames in use elsewhere), the guest could be
/// given access to arbitrary host memory.
///
/// A kernel implementation with a direct map looks like:
///
/// ```no_run
/// use core::sync::atomic::AtomicU64;
/// use ept::{Hpa, TableMemory};
///
/// struct DirectMap {
///     offset: u64,
/// }
///
/// unsafe impl TableMemory for DirectMap {
///     fn table(&self, frame: Hpa) -> &[AtomicU64; 512] {
///         // SAFETY: `frame` is an EPT table frame from our allocator, mapped
///         // at `self.offset + frame` for the kernel's lifetime; AtomicU64 has
///         // the same layout as u64 and the frame is 4 KiB aligned.
///         unsafe { &*((self.offset + frame.as_u64()) as *const [AtomicU64; 512]) }
///     }
/// }
/// ```
pub unsafe trait TableMemory {
    /// The 512 entries of the paging structure at `frame`.
    fn table(&self, frame: Hpa) -> &[AtomicU64; 512];
}

impl<T: FrameAllocator + ?Sized> FrameAllocator for &mut T {
    fn allocate_table(&mut self) -> Option<Hpa> {
        (**self).allocate_table()
    }

    fn free_table(&mut self, frame: Hpa) {
        (**self).free_table(frame)
    }
}

// SAFETY: forwards to `T`, which upholds the contract.
unsafe impl<T: TableMemory + ?Sized> TableMemory for &T {
    fn table(&self, frame: Hpa) -> &[AtomicU64; 512] {
        (**self).table(frame)
    }
}
