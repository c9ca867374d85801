//! A VM's memory: guest RAM as one contiguous host range, or for an instant clone page by page
//! (its own frames and its snapshot's base, copied on write: vm::snapshot::clone_memory),
//! mapped by the VM's own EPT hierarchy; nothing else of the host is mapped, so a guest can
//! reach only its RAM (SDM Vol. 3C §29.3). Accesses the hypervisor makes on the guest's behalf
//! go through bounds-checked copies, page by page for a clone.

use super::ept_sync::{EptSync, ShootdownError};
use super::snapshot::CloneBase;
use crate::memory::{self, FRAME_SIZE};
use alloc::sync::Arc;
use core::fmt;
use core::sync::atomic::AtomicU64;
use ept::{Access, Ept, EptConfig, FrameAllocator, Gpa, Hpa, MemoryType, TableMemory};
use vm::loader::{GuestWrite, LoadError};
use vm::snapshot::clone_memory::{self, ClonePages};

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
    /// The flush of the old translations failed (a hypervisor bug).
    Shootdown(ShootdownError),
}

/// Which INVEPT this CPU offers for invalidating one VM's mappings (SDM Vol. 3C §31.3 INVEPT,
/// §29.4.3.4): single-context when available, else all-context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InveptKind(pub vmx::instructions::InveptType);

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

/// What backs guest RAM.
enum Backing {
    /// [0, size) at host [hpa, hpa + size): allocated and mapped whole at creation.
    Contiguous { hpa: u64 },
    /// An instant clone's (`from-snapshot`): each page in a frame of its own, in the snapshot
    /// base's frames (read-only) or in none yet, mapped on first touch (clone_memory.rs).
    Clone {
        pages: ClonePages,
        base: Option<Arc<CloneBase>>,
    },
}

/// The base of a clone that follows none yet: every page zero.
const NO_BASE: &[u64] = &[];

/// Guest RAM [0, size), and the EPT that maps it.
pub struct GuestMemory {
    size: u64,
    backing: Backing,
    ept: Ept<KernelFrames, DirectMap>,
    /// The shootdown of cached translations after an EPT change (ept_sync.rs); the vCPUs hold
    /// it too.
    sync: Arc<EptSync>,
    /// 4 KiB pages mapped again after a `MEM_RELEASE` (first touch).
    pub faulted_in: u64,
    /// 4 KiB pages given back with `MEM_RELEASE`.
    pub released: u64,
    /// A clone's hypervisor writes (device DMA) that found no free host frame for the page.
    pub starved_writes: u64,
    /// Shootdowns that had to kick another CPU.
    pub shootdown_kicks: u64,
}

impl fmt::Debug for GuestMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuestMemory")
            .field("size", &self.size)
            .field("clone", &matches!(self.backing, Backing::Clone { .. }))
            .finish()
    }
}

/// What an EPT violation on guest RAM was ([`GuestMemory::fault`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Touch {
    /// A page the guest released, mapped again.
    FaultedIn,
    /// A clone's page: mapped from the snapshot base, copied on write, or given a zero frame.
    Clone(clone_memory::Fault),
    /// Not one of those: a genuine violation.
    Genuine,
}

/// Why an EPT violation on guest RAM could not be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TouchError {
    /// No free host frame for a clone's own page.
    NoFrame,
    Ept(ept::EptError),
    Shootdown(ShootdownError),
    /// Asked of a VM that is not a clone.
    NotAClone,
}

impl fmt::Display for TouchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TouchError::NoFrame => f.write_str(
                "the machine has no free memory for a page this clone wrote (clones share the \
                 snapshot's pages and take a frame per page they write); stop clones or give \
                 the machine more memory",
            ),
            TouchError::Ept(e) => write!(f, "changing the EPT failed: {e}"),
            TouchError::Shootdown(e) => write!(f, "{e}"),
            TouchError::NotAClone => f.write_str("the VM is not a clone (`from-snapshot`)"),
        }
    }
}

/// Frames the clones' copy-on-write faults leave to the rest of the hypervisor (4 MiB): a
/// clone that would take them stops instead.
const CLONE_FRAME_RESERVE: u64 = 1024;

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
        vcpus: usize,
    ) -> Result<Self, GuestMemoryError> {
        const ALIGN: u64 = 2 << 20;
        let hpa = memory::allocate_contiguous(size, ALIGN)
            .ok_or(GuestMemoryError::OutOfMemory { bytes: size })?;
        // SAFETY: the range was just reserved for this VM and is covered by the direct map.
        unsafe { core::ptr::write_bytes(memory::phys_to_virt(hpa), 0, size as usize) };
        Self::build(
            size,
            Backing::Contiguous { hpa },
            config,
            invept,
            apic_access,
            vcpus,
        )
    }

    /// RAM of an instant clone (`from-snapshot`): no frame yet and nothing mapped; it follows
    /// a snapshot base once [`GuestMemory::follow`] gives it one. Its EPT holds 4 KiB pages
    /// only (each page maps its own frame).
    pub fn new_clone(
        size: u64,
        config: EptConfig,
        invept: InveptKind,
        apic_access: Option<(u64, u64)>,
        vcpus: usize,
    ) -> Result<Self, GuestMemoryError> {
        let pages = ClonePages::new(size / FRAME_SIZE);
        let backing = Backing::Clone { pages, base: None };
        Self::build(size, backing, config, invept, apic_access, vcpus)
    }

    fn build(
        size: u64,
        backing: Backing,
        config: EptConfig,
        invept: InveptKind,
        apic_access: Option<(u64, u64)>,
        vcpus: usize,
    ) -> Result<Self, GuestMemoryError> {
        let mut ept =
            Ept::new(KernelFrames::default(), DirectMap, config).map_err(GuestMemoryError::Ept)?;
        // A fresh hierarchy: nothing cached yet, no INVEPT needed (SDM Vol. 3C §29.4.2).
        if let Backing::Contiguous { hpa } = backing {
            let _ = ept
                .map(
                    Gpa::new(0),
                    Hpa::new(hpa),
                    size,
                    Access::RWX,
                    MemoryType::WriteBack,
                )
                .map_err(GuestMemoryError::Ept)?;
        }
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
        let sync = Arc::new(EptSync::new(vcpus, ept.eptp().bits(), invept.0));
        Ok(GuestMemory {
            size,
            backing,
            ept,
            sync,
            faulted_in: 0,
            released: 0,
            starved_writes: 0,
            shootdown_kicks: 0,
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

    /// The shootdown state its vCPUs enter through.
    pub fn sync(&self) -> &Arc<EptSync> {
        &self.sync
    }

    /// Whether this is a clone's RAM (`from-snapshot`).
    pub fn is_clone(&self) -> bool {
        matches!(self.backing, Backing::Clone { .. })
    }

    /// A clone's faults and frames (`None` for other VMs).
    pub fn clone_counters(&self) -> Option<clone_memory::CloneCounters> {
        match &self.backing {
            Backing::Clone { pages, .. } => Some(pages.counters()),
            Backing::Contiguous { .. } => None,
        }
    }

    /// A restart (restart.rs): every byte of RAM zeroed, the counters back to zero. Pages the
    /// guest released stay out of the EPT and fault in on first touch as before, with what
    /// the loader writes there. A clone gives back every frame of its own and unmaps all of
    /// its RAM; it follows its base again (no vCPU runs: all of them stopped).
    pub fn reset(&mut self) -> Result<(), TouchError> {
        self.released = 0;
        self.faulted_in = 0;
        self.starved_writes = 0;
        match &mut self.backing {
            Backing::Contiguous { hpa } => {
                // SAFETY: [hpa, hpa + size) is this VM's RAM, in the direct map; no vCPU of
                // the VM runs while it restarts (all of them stopped).
                unsafe {
                    core::ptr::write_bytes(memory::phys_to_virt(*hpa), 0, self.size as usize)
                };
                Ok(())
            }
            Backing::Clone { pages, .. } => {
                let freed = pages.reset();
                let invalidation = self
                    .ept
                    .unmap(Gpa::new(0), self.size)
                    .map_err(TouchError::Ept)?;
                if invalidation.is_required() {
                    self.sync.shootdown().map_err(TouchError::Shootdown)?;
                }
                self.ept.reclaim_tables();
                for frame in freed {
                    // SAFETY: the frame was this clone's own (allocated by `own_frame`), and
                    // the EPT no longer maps it on any CPU (unmapped, flushed above).
                    unsafe { memory::free_frame(frame) };
                }
                Ok(())
            }
        }
    }

    /// A clone's RAM starts again as `new` (a snapshot base: the clone's start) or as all
    /// zero (`None`: a restore writes the snapshot's RAM into it): reset first, so no CPU maps
    /// a frame of the base it followed before (which may be freed once it lets go of it).
    pub fn follow(&mut self, new: Option<Arc<CloneBase>>) -> Result<(), TouchError> {
        if !self.is_clone() {
            return Err(TouchError::NotAClone);
        }
        self.reset()?;
        if let Backing::Clone { base, .. } = &mut self.backing {
            *base = new;
        }
        Ok(())
    }

    /// `MEM_RELEASE`: zeroes the 4 KiB pages [gpa, gpa + len) and removes them from the EPT
    /// (splitting large pages), then invalidates this VM's cached translations on every CPU
    /// (SDM Vol. 3C §29.4.3.4: required after removing a mapping). The next access to any of
    /// them is an EPT violation that [`GuestMemory::fault`] serves. A clone's pages read as
    /// zero afterwards whatever its base holds, and its own frames go back to the machine.
    pub fn release(&mut self, gpa: u64, len: u64) -> Result<(), ReleaseError> {
        let end = gpa.checked_add(len).ok_or(ReleaseError::OutsideRam)?;
        if end > self.size {
            return Err(ReleaseError::OutsideRam);
        }
        let invalidation = self
            .ept
            .unmap(Gpa::new(gpa), len)
            .map_err(ReleaseError::Ept)?;
        if invalidation.is_required() {
            self.sync.shootdown().map_err(ReleaseError::Shootdown)?;
        }
        match &mut self.backing {
            Backing::Contiguous { hpa } => {
                // SAFETY: the range lies inside this VM's RAM (checked above), which the
                // direct map covers; the guest gave its contents up.
                unsafe {
                    core::ptr::write_bytes(memory::phys_to_virt(*hpa + gpa), 0, len as usize)
                };
            }
            Backing::Clone { pages, .. } => {
                for page in gpa / FRAME_SIZE..end.div_ceil(FRAME_SIZE) {
                    if let Some(frame) = pages.release(page) {
                        // SAFETY: the clone's own frame, unmapped and flushed everywhere above.
                        unsafe { memory::free_frame(frame) };
                    }
                }
            }
        }
        // Tables the unmap emptied are no longer cached after the INVEPT (SDM Vol. 3C
        // §29.4.3.4): back to this VM's pool, or release/touch cycles would drain it.
        self.ept.reclaim_tables();
        self.released += len / FRAME_SIZE;
        Ok(())
    }

    /// An EPT violation at `gpa` (`write`: by a write): maps a released page back (first
    /// touch after `MEM_RELEASE`; filling a not-present entry needs no INVEPT, SDM Vol. 3C
    /// §29.4.3.4), or serves a clone's page (clone_memory.rs): the base frame read-only, a
    /// copy of it on a write, a zero frame. [`Touch::Genuine`] when it is none of these.
    pub fn fault(&mut self, gpa: u64, write: bool) -> Result<Touch, TouchError> {
        let page = gpa / FRAME_SIZE;
        if gpa >= self.size {
            return Ok(Touch::Genuine);
        }
        let fault = match &self.backing {
            Backing::Contiguous { hpa } => {
                if self.ept.translate(Gpa::new(page * FRAME_SIZE)).is_some() {
                    return Ok(Touch::Genuine);
                }
                let _ = self
                    .ept
                    .map(
                        Gpa::new(page * FRAME_SIZE),
                        Hpa::new(hpa + page * FRAME_SIZE),
                        FRAME_SIZE,
                        Access::RWX,
                        MemoryType::WriteBack,
                    )
                    .map_err(TouchError::Ept)?;
                self.faulted_in += 1;
                return Ok(Touch::FaultedIn);
            }
            Backing::Clone { pages, base } => match base.as_deref() {
                Some(b) => pages.fault(b, page, write),
                None => pages.fault(NO_BASE, page, write),
            },
        };
        match fault {
            clone_memory::Fault::MapShared(_)
                if self.ept.translate(Gpa::new(page * FRAME_SIZE)).is_some() =>
            {
                // Another vCPU's read mapped it since this violation: it is served.
            }
            clone_memory::Fault::MapShared(frame) => {
                // A base frame: readable and executable, never writable (SDM Vol. 3C
                // §29.3.2: a write through it is an EPT violation, the copy below).
                let _ = self
                    .ept
                    .map(
                        Gpa::new(page * FRAME_SIZE),
                        Hpa::new(frame),
                        FRAME_SIZE,
                        Access::READ | Access::EXECUTE,
                        MemoryType::WriteBack,
                    )
                    .map_err(TouchError::Ept)?;
                if let Backing::Clone { pages, .. } = &mut self.backing {
                    pages.mapped_shared();
                }
            }
            clone_memory::Fault::Copy { .. } | clone_memory::Fault::Zero => {
                self.own_frame(page)?;
            }
            clone_memory::Fault::Mapped(_) => {
                if self.ept.translate(Gpa::new(page * FRAME_SIZE)).is_some() {
                    // Its own frame, mapped with full access by another vCPU's fault since
                    // this violation (both touched the page at once): nothing left to do,
                    // the access is retried.
                    return Ok(Touch::Clone(fault));
                }
                // Given a frame by a hypervisor write that could not map it: map it now.
                self.own_frame(page)?;
            }
            clone_memory::Fault::Outside => return Ok(Touch::Genuine),
        }
        Ok(Touch::Clone(fault))
    }

    /// Gives clone page `page` a frame of its own (a copy of its base page, or zeros), maps it
    /// with full access in place of whatever mapped it (flushing the old translation on every
    /// CPU first) and returns the frame's address.
    fn own_frame(&mut self, page: u64) -> Result<u64, TouchError> {
        let Backing::Clone { pages, base } = &mut self.backing else {
            return Err(TouchError::NoFrame);
        };
        let b: &[u64] = NO_BASE;
        let backing = match base.as_deref() {
            Some(base) => pages.backing(base, page),
            None => pages.backing(b, page),
        };
        if let Some(clone_memory::Backing::Own(frame)) = backing {
            if self.ept.translate(Gpa::new(page * FRAME_SIZE)).is_none() {
                let _ = self
                    .ept
                    .map(
                        Gpa::new(page * FRAME_SIZE),
                        Hpa::new(frame),
                        FRAME_SIZE,
                        Access::RWX,
                        MemoryType::WriteBack,
                    )
                    .map_err(TouchError::Ept)?;
            }
            return Ok(frame);
        }
        if memory::frames_left() <= CLONE_FRAME_RESERVE {
            return Err(TouchError::NoFrame);
        }
        let frame = memory::allocate_frame().ok_or(TouchError::NoFrame)?;
        let copied = if let Some(clone_memory::Backing::Shared(from)) = backing {
            // SAFETY: both are whole frames in the direct map: `from` a base frame nobody
            // writes, `frame` just allocated for this page.
            unsafe {
                core::ptr::copy_nonoverlapping(
                    memory::phys_to_virt(from),
                    memory::phys_to_virt(frame),
                    FRAME_SIZE as usize,
                )
            };
            true
        } else {
            false
        };
        let gpa = Gpa::new(page * FRAME_SIZE);
        if self.ept.translate(gpa).is_some() {
            // The base frame was mapped read-only: no CPU may use that translation once the
            // page is the clone's own (its writes would be lost to the readers of the old
            // frame): unmap, flush everywhere, map the copy.
            let invalidation = self.ept.unmap(gpa, FRAME_SIZE).map_err(TouchError::Ept)?;
            if invalidation.is_required() {
                let kicks = self.sync.shootdown().map_err(TouchError::Shootdown)?;
                self.shootdown_kicks += u64::from(kicks);
            }
        }
        let mapped = self.ept.map(
            gpa,
            Hpa::new(frame),
            FRAME_SIZE,
            Access::RWX,
            MemoryType::WriteBack,
        );
        if let Err(e) = mapped {
            // SAFETY: the frame was allocated above and is mapped nowhere.
            unsafe { memory::free_frame(frame) };
            return Err(TouchError::Ept(e));
        }
        if let Backing::Clone { pages, .. } = &mut self.backing {
            if let Some(old) = pages.own(page, frame, copied) {
                // Not reached (an own page returns above); freed all the same.
                // SAFETY: the page's previous own frame, no longer mapped.
                unsafe { memory::free_frame(old) };
            }
        }
        Ok(frame)
    }

    /// Invalidates this VM's cached EPT translations on this CPU (another vCPU changed the
    /// EPT since this CPU last ran one of the VM's vCPUs).
    pub fn invept_here(&self) -> Result<(), vmx::error::VmFail> {
        self.sync.invept_here()
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// The EPT pointer for the VMCS.
    pub fn eptp(&self) -> u64 {
        self.ept.eptp().bits()
    }

    /// Whether [gpa, gpa + len) is entirely RAM.
    fn in_ram(&self, gpa: u64, len: u64) -> bool {
        gpa.checked_add(len).is_some_and(|end| end <= self.size)
    }

    /// Where the page holding `gpa` is for a read: the host-virtual address of `gpa` in it,
    /// or `None` for a page that is zero in no frame.
    fn read_ptr(&self, gpa: u64) -> Option<*mut u8> {
        let offset = gpa % FRAME_SIZE;
        match &self.backing {
            Backing::Contiguous { hpa } => Some(memory::phys_to_virt(hpa + gpa)),
            Backing::Clone { pages, base } => {
                let page = gpa / FRAME_SIZE;
                let backing = match base.as_deref() {
                    Some(b) => pages.backing(b, page),
                    None => pages.backing(NO_BASE, page),
                };
                match backing? {
                    clone_memory::Backing::Zero => None,
                    clone_memory::Backing::Shared(f) | clone_memory::Backing::Own(f) => {
                        Some(memory::phys_to_virt(f + offset))
                    }
                }
            }
        }
    }

    /// The host-virtual address of `gpa` for a write: a clone's page gets its own frame first.
    fn write_ptr(&mut self, gpa: u64) -> Option<*mut u8> {
        match &self.backing {
            Backing::Contiguous { hpa } => Some(memory::phys_to_virt(hpa + gpa)),
            Backing::Clone { .. } => match self.own_frame(gpa / FRAME_SIZE) {
                Ok(frame) => Some(memory::phys_to_virt(frame + gpa % FRAME_SIZE)),
                Err(_) => {
                    self.starved_writes += 1;
                    None
                }
            },
        }
    }

    /// The pieces of [gpa, gpa + len) that do not cross a page boundary: (gpa, offset into
    /// the range, length).
    fn pieces(gpa: u64, len: u64) -> impl Iterator<Item = (u64, usize, usize)> {
        let mut at = gpa;
        let end = gpa + len;
        core::iter::from_fn(move || {
            if at >= end {
                return None;
            }
            let stop = end.min((at / FRAME_SIZE + 1) * FRAME_SIZE);
            let piece = (at, (at - gpa) as usize, (stop - at) as usize);
            at = stop;
            Some(piece)
        })
    }

    /// Copies guest RAM into `buf`; `None` when the range is not entirely RAM.
    pub fn read(&self, gpa: u64, buf: &mut [u8]) -> Option<()> {
        if !self.in_ram(gpa, buf.len() as u64) {
            return None;
        }
        if let Backing::Contiguous { hpa } = self.backing {
            // SAFETY: inside this VM's RAM (checked above), in the direct map.
            unsafe {
                core::ptr::copy_nonoverlapping(
                    memory::phys_to_virt(hpa + gpa),
                    buf.as_mut_ptr(),
                    buf.len(),
                )
            };
            return Some(());
        }
        // A clone: page by page (a zero page in no frame reads as zeros).
        for (at, offset, len) in Self::pieces(gpa, buf.len() as u64) {
            let dst = &mut buf[offset..offset + len];
            match self.read_ptr(at) {
                // SAFETY: the piece lies inside one RAM page (or contiguous RAM) of this VM,
                // which the direct map covers; guest RAM is plain memory the guest may change
                // concurrently only on other vCPUs (byte copy).
                Some(src) => unsafe { core::ptr::copy_nonoverlapping(src, dst.as_mut_ptr(), len) },
                None => dst.fill(0),
            }
        }
        Some(())
    }

    /// Whether the 4 KiB page at `gpa` (page-aligned) holds a byte that is not zero, read in
    /// place a word at a time (a snapshot's scan of the paused VM); `None` when it is not RAM.
    pub fn page_has_data(&self, gpa: u64) -> Option<bool> {
        const WORDS: usize = vm::snapshot::memory::PAGE / 8;
        if !gpa.is_multiple_of(vm::snapshot::memory::PAGE as u64)
            || !self.in_ram(gpa, vm::snapshot::memory::PAGE as u64)
        {
            return None;
        }
        let Some(src) = self.read_ptr(gpa) else {
            return Some(false);
        };
        let src = src.cast::<u64>();
        // SAFETY: the page lies inside this VM's RAM, which the direct map covers, and is
        // 8-byte aligned (RAM pages start on a page boundary); only reads, through raw
        // pointers (no reference to memory the guest may write on another vCPU).
        Some((0..WORDS).any(|w| unsafe { src.add(w).read() } != 0))
    }

    /// Copies `data` into guest RAM; `None` when the range is not entirely RAM (or a clone
    /// found no frame for one of its pages: `starved_writes` counts it).
    pub fn write(&mut self, gpa: u64, data: &[u8]) -> Option<()> {
        if !self.in_ram(gpa, data.len() as u64) {
            return None;
        }
        if let Backing::Contiguous { hpa } = self.backing {
            // SAFETY: inside this VM's RAM (checked above), in the direct map.
            unsafe {
                core::ptr::copy_nonoverlapping(
                    data.as_ptr(),
                    memory::phys_to_virt(hpa + gpa),
                    data.len(),
                )
            };
            return Some(());
        }
        // A clone: page by page, each given its own frame first.
        let mut at = gpa;
        let end = gpa + data.len() as u64;
        while at < end {
            let stop = end.min((at / FRAME_SIZE + 1) * FRAME_SIZE);
            let dst = self.write_ptr(at)?;
            let offset = (at - gpa) as usize;
            // SAFETY: as for `read`; the piece lies in one page, the destination is this
            // clone's own frame.
            unsafe {
                core::ptr::copy_nonoverlapping(data[offset..].as_ptr(), dst, (stop - at) as usize)
            };
            at = stop;
        }
        Some(())
    }

    /// Atomically exchanges the guest RAM byte at `gpa` for `value` (other vCPUs may update
    /// it with a locked compare-exchange meanwhile); returns the old byte.
    pub fn swap_u8(&mut self, gpa: u64, value: u8) -> Option<u8> {
        if !self.in_ram(gpa, 1) {
            return None;
        }
        let p = self.write_ptr(gpa)?;
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

    /// The memory line of the VM's report and of `stats VM`: released and faulted-in pages,
    /// and for a clone its frames and faults.
    pub fn summary(&self) -> alloc::string::String {
        let mut line = alloc::format!(
            "released-pages={} faulted-in={}",
            self.released,
            self.faulted_in
        );
        if let Some(c) = self.clone_counters() {
            line.push_str(&alloc::format!(
                " clone: own-frames={} ({} KiB of {} KiB) shared-maps={} copies={} zero-fills={} starved-writes={} shootdown-kicks={}",
                c.own_frames,
                c.own_frames * FRAME_SIZE / 1024,
                self.size / 1024,
                c.shared_maps,
                c.copies,
                c.zero_fills,
                self.starved_writes,
                self.shootdown_kicks
            ));
        }
        line
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
        if !self.in_ram(gpa, len) {
            return Err(LoadError::OutsideRam { gpa, len });
        }
        let end = gpa + len;
        let mut at = gpa;
        while at < end {
            let stop = match self.backing {
                Backing::Contiguous { .. } => end,
                Backing::Clone { .. } => end.min((at / FRAME_SIZE + 1) * FRAME_SIZE),
            };
            // A clone's page that is zero in no frame is zero already.
            if self.read_ptr(at).is_some() {
                let dst = self
                    .write_ptr(at)
                    .ok_or(LoadError::OutsideRam { gpa, len })?;
                // SAFETY: the piece lies inside this VM's RAM (for a clone, in one page, its
                // own frame).
                unsafe { core::ptr::write_bytes(dst, 0, (stop - at) as usize) };
            }
            at = stop;
        }
        Ok(())
    }
}
