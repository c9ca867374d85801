//! A VM's memory: guest RAM as one contiguous host range, mapped by the VM's own EPT
//! hierarchy; nothing else of the host is mapped, so a guest can reach only its RAM (SDM Vol.
//! 3C §29.3). Accesses the hypervisor makes on the guest's behalf go through bounds-checked
//! copies.

use crate::memory::{self, FRAME_SIZE};
use core::fmt;
use core::sync::atomic::AtomicU64;
use ept::{Access, Ept, EptConfig, FrameAllocator, Gpa, Hpa, MemoryType, TableMemory};
use vm::loader::{GuestWrite, LoadError};

/// EPT page-table frames: from the kernel's frame allocator while the hierarchy is built,
/// then only from this VM's own pool, filled at creation with the worst case the guest can
/// cause (every large page split, [`GuestMemory::worst_case_table_frames`]); so nothing a
/// guest does to its EPT takes frames from the host or another VM.
#[derive(Debug, Default)]
pub struct KernelFrames {
    pool: alloc::vec::Vec<u64>,
    sealed: bool,
}

impl FrameAllocator for KernelFrames {
    fn allocate_table(&mut self) -> Option<Hpa> {
        if self.sealed {
            self.pool.pop().map(Hpa::new)
        } else {
            memory::allocate_frame().map(Hpa::new)
        }
    }

    fn free_table(&mut self, frame: Hpa) {
        if self.sealed && self.pool.len() < self.pool.capacity() {
            self.pool.push(frame.as_u64());
        } else {
            // SAFETY: `Ept` only frees frames it got from `allocate_table` and no longer uses.
            unsafe { memory::free_frame(frame.as_u64()) }
        }
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

/// Why released guest pages could not be taken out of the EPT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReleaseError {
    /// The range is not entirely guest RAM.
    OutsideRam,
    /// The EPT could not be changed (no frame for a split table).
    Ept(ept::EptError),
    /// INVEPT failed (a hypervisor bug: the EPTP is this VM's own).
    Invept(vmx::error::VmFail),
}

/// Which INVEPT this CPU offers for invalidating one VM's mappings (SDM Vol. 3C §31.3 INVEPT,
/// §29.4.3.4): single-context when available, else all-context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InveptKind(vmx::instructions::InveptType);

impl InveptKind {
    pub fn for_cpu(caps: &vmx::caps::Capabilities) -> Self {
        use vmx::caps::EptVpidCap;
        InveptKind(if caps.ept_vpid_has(EptVpidCap::INVEPT_SINGLE_CONTEXT) {
            vmx::instructions::InveptType::SingleContext
        } else {
            vmx::instructions::InveptType::AllContext
        })
    }
}

/// Guest RAM [0, size) backed by host [hpa, hpa + size), and the EPT that maps it.
pub struct GuestMemory {
    hpa: u64,
    size: u64,
    ept: Ept<KernelFrames, DirectMap>,
    invept: InveptKind,
    /// 4 KiB pages mapped again after a `MEM_RELEASE` (first touch).
    pub faulted_in: u64,
    /// Bumped by every change that needs an INVEPT: each vCPU flushes on its own CPU when its
    /// last flush was for an older generation (SDM Vol. 3C §29.4.3.4; INVEPT acts on the
    /// executing CPU only).
    pub generation: u64,
    /// 4 KiB pages given back with `MEM_RELEASE`.
    pub released: u64,
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
    /// and maps them write-back with RWX at GPA 0; `apic_access` maps one more 4 KiB page
    /// (GPA, HPA): the APIC-access page of APIC virtualization (SDM Vol. 3C §30.4), readable
    /// and writable, never executable.
    pub fn new(
        size: u64,
        config: EptConfig,
        invept: InveptKind,
        apic_access: Option<(u64, u64)>,
    ) -> Result<Self, GuestMemoryError> {
        const ALIGN: u64 = 2 << 20;
        let hpa = memory::allocate_contiguous(size, ALIGN)
            .ok_or(GuestMemoryError::OutOfMemory { bytes: size })?;
        // SAFETY: the range was just reserved for this VM and is covered by the direct map.
        unsafe { core::ptr::write_bytes(memory::phys_to_virt(hpa), 0, size as usize) };
        let mut ept =
            Ept::new(KernelFrames::default(), DirectMap, config).map_err(GuestMemoryError::Ept)?;
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
        if let Some((gpa, page)) = apic_access {
            let _ = ept
                .map(
                    Gpa::new(gpa),
                    Hpa::new(page),
                    FRAME_SIZE,
                    Access::READ | Access::WRITE,
                    MemoryType::WriteBack,
                )
                .map_err(GuestMemoryError::Ept)?;
        }
        // The pool for later splits: the worst case less what the hierarchy holds already.
        let spare = Self::worst_case_table_frames(size).saturating_sub(ept.table_frames() as u64);
        let frames = ept.allocator_mut();
        frames
            .pool
            .try_reserve_exact(spare as usize)
            .map_err(|_| GuestMemoryError::OutOfMemory { bytes: size })?;
        for _ in 0..spare {
            let frame =
                memory::allocate_frame().ok_or(GuestMemoryError::OutOfMemory { bytes: size })?;
            frames.pool.push(frame);
        }
        frames.sealed = true;
        Ok(GuestMemory {
            hpa,
            size,
            ept,
            invept,
            faulted_in: 0,
            generation: 0,
            released: 0,
        })
    }

    /// The most EPT table frames this VM can ever need: every 2 MiB and 1 GiB page split down
    /// to 4 KiB pages (one page table per 2 MiB, one directory per 1 GiB) plus the PDPT and
    /// PML4 (SDM Vol. 3C §29.3.2). Reserved at creation, so splits never fail for lack of frames
    /// another VM took.
    pub fn worst_case_table_frames(size: u64) -> u64 {
        /// Frames `Ept` takes ahead of a split (one per level below the root) on top of the
        /// tables it keeps.
        const SPLIT_RESERVE: u64 = 4;
        size.div_ceil(2 << 20) + size.div_ceil(1 << 30) + 2 + SPLIT_RESERVE
    }

    /// A restart (restart.rs): every byte of RAM zeroed, the counters back to zero. Pages the
    /// guest released stay out of the EPT and fault in on first touch as before, with what
    /// the loader writes there.
    pub fn reset(&mut self) {
        // SAFETY: [hpa, hpa + size) is this VM's RAM, in the direct map; no vCPU of the VM
        // runs while it restarts (all of them stopped).
        unsafe { core::ptr::write_bytes(memory::phys_to_virt(self.hpa), 0, self.size as usize) };
        self.released = 0;
        self.faulted_in = 0;
    }

    /// `MEM_RELEASE`: zeroes the 4 KiB pages [gpa, gpa + len) and removes them from the EPT
    /// (splitting large pages), then invalidates this VM's cached translations (SDM Vol. 3C
    /// §29.4.3.4: required after removing a mapping). The next access to any of them is an
    /// EPT violation that [`GuestMemory::fault_in`] serves.
    pub fn release(&mut self, gpa: u64, len: u64) -> Result<(), ReleaseError> {
        let dst = self.range(gpa, len).ok_or(ReleaseError::OutsideRam)?;
        let invalidation = self
            .ept
            .unmap(Gpa::new(gpa), len)
            .map_err(ReleaseError::Ept)?;
        // SAFETY: the range lies inside this VM's RAM (checked above), which the direct map
        // covers; the guest gave its contents up.
        unsafe { core::ptr::write_bytes(dst, 0, len as usize) };
        if invalidation.is_required() {
            // SAFETY: VMX root operation is active; the EPTP is this VM's own.
            unsafe { vmx::instructions::invept(self.invept.0, self.eptp()) }
                .map_err(ReleaseError::Invept)?;
            self.generation += 1;
        }
        // Tables the unmap emptied are no longer cached after the INVEPT (SDM Vol. 3C
        // §29.4.3.4): back to this VM's pool, or release/touch cycles would drain it.
        self.ept.reclaim_tables();
        self.released += len / FRAME_SIZE;
        Ok(())
    }

    /// Maps the released page holding `gpa` back (first touch after `MEM_RELEASE`): `Ok(true)`
    /// when it was a released RAM page, `Ok(false)` when `gpa` is not guest RAM or is mapped
    /// already (a genuine violation). Filling a not-present entry needs no INVEPT (SDM Vol.
    /// 3C §29.4.3.4).
    pub fn fault_in(&mut self, gpa: u64) -> Result<bool, ept::EptError> {
        let page = gpa & !(FRAME_SIZE - 1);
        if page >= self.size || self.ept.translate(Gpa::new(page)).is_some() {
            return Ok(false);
        }
        // Filling a not-present entry: `Invalidation::None` (SDM Vol. 3C §29.4.3.4).
        let _ = self.ept.map(
            Gpa::new(page),
            Hpa::new(self.hpa + page),
            FRAME_SIZE,
            Access::RWX,
            MemoryType::WriteBack,
        )?;
        self.faulted_in += 1;
        Ok(true)
    }

    /// Invalidates this VM's cached EPT translations on this CPU (another vCPU changed the
    /// EPT since this CPU last ran one of the VM's vCPUs).
    pub fn invept_here(&self) -> Result<(), vmx::error::VmFail> {
        // SAFETY: VMX root operation is active; the EPTP is this VM's own.
        unsafe { vmx::instructions::invept(self.invept.0, self.eptp()) }
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

    /// Whether the 4 KiB page at `gpa` (page-aligned) holds a byte that is not zero, read in
    /// place a word at a time (a snapshot's scan of the paused VM); `None` when it is not RAM.
    pub fn page_has_data(&self, gpa: u64) -> Option<bool> {
        const WORDS: usize = vm::snapshot::memory::PAGE / 8;
        if !gpa.is_multiple_of(vm::snapshot::memory::PAGE as u64) {
            return None;
        }
        let src = self
            .range(gpa, vm::snapshot::memory::PAGE as u64)?
            .cast::<u64>();
        // SAFETY: the page lies inside this VM's RAM, which the direct map covers, and is
        // 8-byte aligned (guest RAM starts on a page boundary); only reads, through raw
        // pointers (no reference to memory the guest may write on another vCPU).
        Some((0..WORDS).any(|w| unsafe { src.add(w).read() } != 0))
    }

    /// Copies `data` into guest RAM; `None` when the range is not entirely RAM.
    pub fn write(&mut self, gpa: u64, data: &[u8]) -> Option<()> {
        let dst = self.range(gpa, data.len() as u64)?;
        // SAFETY: as for `read`; the destination is this VM's RAM only.
        unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), dst, data.len()) };
        Some(())
    }

    /// Atomically exchanges the guest RAM byte at `gpa` for `value` (other vCPUs may update
    /// it with a locked compare-exchange meanwhile); returns the old byte.
    pub fn swap_u8(&mut self, gpa: u64, value: u8) -> Option<u8> {
        let p = self.range(gpa, 1)?;
        // SAFETY: the byte lies inside this VM's RAM (direct map); an AtomicU8 has the
        // alignment and size of u8, and the guest accesses it only with atomic or plain byte
        // operations, which the locked XCHG is atomic with (SDM Vol. 3A §9.1.2).
        let byte = unsafe { core::sync::atomic::AtomicU8::from_ptr(p) };
        Some(byte.swap(value, core::sync::atomic::Ordering::AcqRel))
    }

    /// Reads a little-endian u64 of guest RAM.
    pub fn read_u64(&self, gpa: u64) -> Option<u64> {
        let mut b = [0u8; 8];
        self.read(gpa, &mut b)?;
        Some(u64::from_le_bytes(b))
    }

    /// Frames of host memory this VM uses beyond its RAM: EPT tables and the pool reserved
    /// for splitting them (the VMCS and bitmaps are counted by the caller).
    pub fn overhead_bytes(&self) -> u64 {
        (self.ept.table_frames() + self.ept.allocator().pool.len()) as u64 * FRAME_SIZE
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
