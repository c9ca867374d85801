//! A VM's memory: guest RAM as one contiguous host range, mapped by the VM's own EPT
//! hierarchy; nothing else of the host is mapped, so a guest can reach only its RAM (SDM Vol.
//! 3C §29.3). Accesses the hypervisor makes on the guest's behalf go through bounds-checked
//! copies.

use crate::memory::{self, FRAME_SIZE};
use core::fmt;
use core::sync::atomic::AtomicU64;
use ept::{Access, Ept, EptConfig, FrameAllocator, Gpa, Hpa, MemoryType, TableMemory};
use vm::loader::{GuestWrite, LoadError};

/// EPT page-table frames come from the kernel's frame allocator.
#[derive(Debug, Default)]
pub struct KernelFrames;

impl FrameAllocator for KernelFrames {
    fn allocate_table(&mut self) -> Option<Hpa> {
        memory::allocate_frame().map(Hpa::new)
    }

    fn free_table(&mut self, frame: Hpa) {
        // SAFETY: `Ept` only frees frames it got from `allocate_table` and no longer uses.
        unsafe { memory::free_frame(frame.as_u64()) }
    }
}

/// EPT tables are reached through the direct map.
#[derive(Debug, Default)]
pub struct DirectMap;

// SAFETY: `table` returns the direct-map view of a frame that `Ept` obtained from
// `KernelFrames`, which hands out exclusive, 4 KiB-aligned, mapped frames.
unsafe impl TableMemory for DirectMap {
    fn table(&self, frame: Hpa) -> &[AtomicU64; 512] {
        // SAFETY: see the impl's contract: the frame is a live EPT table owned by this Ept.
        unsafe { &*memory::phys_to_virt(frame.as_u64()).cast::<[AtomicU64; 512]>() }
    }
}

/// Why guest memory could not be set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestMemoryError {
    OutOfMemory { bytes: u64 },
    Ept(ept::EptError),
}

impl fmt::Display for GuestMemoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GuestMemoryError::OutOfMemory { bytes } => {
                write!(f, "not enough host memory for {} MiB of guest RAM; lower `memory` or give the machine more", bytes >> 20)
            }
            GuestMemoryError::Ept(e) => write!(f, "building the EPT failed: {e}"),
        }
    }
}

/// Guest RAM [0, size) backed by host [hpa, hpa + size), and the EPT that maps it.
pub struct GuestMemory {
    hpa: u64,
    size: u64,
    ept: Ept<KernelFrames, DirectMap>,
}

impl fmt::Debug for GuestMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuestMemory")
            .field("hpa", &self.hpa)
            .field("size", &self.size)
            .finish()
    }
}

impl GuestMemory {
    /// Allocates and zeroes `size` bytes of RAM (2 MiB aligned so EPT can use large pages)
    /// and maps them write-back with RWX at GPA 0.
    pub fn new(size: u64, config: EptConfig) -> Result<Self, GuestMemoryError> {
        const ALIGN: u64 = 2 << 20;
        let hpa = memory::allocate_contiguous(size, ALIGN)
            .ok_or(GuestMemoryError::OutOfMemory { bytes: size })?;
        // SAFETY: the range was just reserved for this VM and is covered by the direct map.
        unsafe { core::ptr::write_bytes(memory::phys_to_virt(hpa), 0, size as usize) };
        let mut ept = Ept::new(KernelFrames, DirectMap, config).map_err(GuestMemoryError::Ept)?;
        // A fresh hierarchy: nothing cached yet, no INVEPT needed (SDM Vol. 3C §29.4.2).
        let _ = ept
            .map(
                Gpa::new(0),
                Hpa::new(hpa),
                size,
                Access::RWX,
                MemoryType::WriteBack,
            )
            .map_err(GuestMemoryError::Ept)?;
        Ok(GuestMemory { hpa, size, ept })
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// The EPT pointer for the VMCS.
    pub fn eptp(&self) -> u64 {
        self.ept.eptp().bits()
    }

    /// The host-virtual view of guest range [gpa, gpa + len), if it is RAM.
    fn range(&self, gpa: u64, len: u64) -> Option<*mut u8> {
        let end = gpa.checked_add(len)?;
        (end <= self.size).then(|| memory::phys_to_virt(self.hpa + gpa))
    }

    /// Copies guest RAM into `buf`; `None` when the range is not entirely RAM.
    pub fn read(&self, gpa: u64, buf: &mut [u8]) -> Option<()> {
        let src = self.range(gpa, buf.len() as u64)?;
        // SAFETY: the range lies inside this VM's RAM, which the direct map covers; guest RAM
        // is plain memory the guest may change concurrently only on other vCPUs (byte copy).
        unsafe { core::ptr::copy_nonoverlapping(src, buf.as_mut_ptr(), buf.len()) };
        Some(())
    }

    /// Copies `data` into guest RAM; `None` when the range is not entirely RAM.
    pub fn write(&mut self, gpa: u64, data: &[u8]) -> Option<()> {
        let dst = self.range(gpa, data.len() as u64)?;
        // SAFETY: as for `read`; the destination is this VM's RAM only.
        unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), dst, data.len()) };
        Some(())
    }

    /// Reads a little-endian u64 of guest RAM.
    pub fn read_u64(&self, gpa: u64) -> Option<u64> {
        let mut b = [0u8; 8];
        self.read(gpa, &mut b)?;
        Some(u64::from_le_bytes(b))
    }

    /// Frames of host memory this VM uses beyond its RAM: EPT tables (the VMCS and bitmaps are
    /// counted by the caller).
    pub fn overhead_bytes(&self) -> u64 {
        self.ept.table_frames() as u64 * FRAME_SIZE
    }
}

impl GuestWrite for GuestMemory {
    fn write(&mut self, gpa: u64, data: &[u8]) -> Result<(), LoadError> {
        GuestMemory::write(self, gpa, data).ok_or(LoadError::OutsideRam {
            gpa,
            len: data.len() as u64,
        })
    }

    fn zero(&mut self, gpa: u64, len: u64) -> Result<(), LoadError> {
        let dst = self
            .range(gpa, len)
            .ok_or(LoadError::OutsideRam { gpa, len })?;
        // SAFETY: the range lies inside this VM's RAM.
        unsafe { core::ptr::write_bytes(dst, 0, len as usize) };
        Ok(())
    }
}
