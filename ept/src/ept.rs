//! The EPT hierarchy builder.

use core::fmt;
use core::sync::atomic::Ordering;

use crate::entry::{self, entry_size, index, is_leaf, is_present};
use crate::eptp::{Eptp, Invalidation};
use crate::error::EptError;
use crate::memory::{FrameAllocator, TableMemory};
use crate::types::{
    Access, Attributes, Gpa, Hpa, MemoryType, PageSize, Translation, GPA_LIMIT, PAGE_SIZE,
};

/// Level of the root table (PML4) of a 4-level walk.
const ROOT_LEVEL: u8 = 4;
/// At most this many tables are needed to split the (at most two) large
/// pages straddling the ends of a range: a 1 GiB page split down to 4 KiB at
/// each end takes one PD and one PT.
const MAX_SPLIT_TABLES: usize = 4;

/// Processor capabilities and choices, supplied by the caller (the `vmx`
/// crate decodes them from IA32_VMX_EPT_VPID_CAP, SDM Vol. 3D Appendix A.10,
/// and CPUID.80000008H:EAX[7:0] for the physical-address width).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EptConfig {
    /// 2 MiB pages (EPT PDE bit 7) are supported and may be used.
    pub page_2m: bool,
    /// 1 GiB pages (EPT PDPTE bit 7) are supported and may be used.
    pub page_1g: bool,
    /// The processor supports accessed and dirty flags for EPT.
    pub accessed_dirty_supported: bool,
    /// Enable accessed and dirty flags in the EPTP (bit 6). Only honoured when
    /// `accessed_dirty_supported` is set (SDM Vol. 3C §25.6.11, §29.3.4).
    pub accessed_dirty: bool,
    /// The processor supports execute-only translations (bits 2:0 = 100b);
    /// otherwise they are EPT misconfigurations (SDM Vol. 3C §29.3.3.1).
    pub execute_only: bool,
    /// The "mode-based execute control for EPT" VM-execution control will be
    /// set: bit 10 grants user-mode execute (SDM Vol. 3C §29.3.3.2).
    pub mode_based_execute: bool,
    /// Physical-address width (MAXPHYADDR) in bits: address bits at or above
    /// it are reserved in EPT entries (SDM Vol. 3C §29.3.3.1).
    pub max_phys_bits: u8,
    /// Memory type the processor uses to access the paging structures (EPTP
    /// bits 2:0); UC or WB (SDM Vol. 3C §25.6.11, §29.3.7.1).
    pub eptp_memory_type: MemoryType,
}

impl Default for EptConfig {
    /// 2 MiB pages, no 1 GiB pages, no A/D flags, no execute-only, no
    /// mode-based execute, 46-bit physical addresses, WB paging structures.
    fn default() -> Self {
        Self {
            page_2m: true,
            page_1g: false,
            accessed_dirty_supported: false,
            accessed_dirty: false,
            execute_only: false,
            mode_based_execute: false,
            max_phys_bits: 46,
            eptp_memory_type: MemoryType::WriteBack,
        }
    }
}

impl EptConfig {
    fn validate(&self) -> Result<(), EptError> {
        if !(32..=52).contains(&self.max_phys_bits) {
            return Err(EptError::InvalidPhysicalAddressWidth(self.max_phys_bits));
        }
        match self.eptp_memory_type {
            MemoryType::Uncacheable | MemoryType::WriteBack => Ok(()),
            other => Err(EptError::InvalidEptpMemoryType(other)),
        }
    }

    fn phys_limit(&self) -> u64 {
        1 << self.max_phys_bits
    }

    fn large_page_allowed(&self, level: u8) -> bool {
        match level {
            2 => self.page_2m,
            3 => self.page_1g,
            _ => false,
        }
    }
}

/// A 4-level EPT hierarchy.
///
/// All mutating operations either succeed or return an error leaving the
/// translations unchanged, and report the [`Invalidation`] the caller owes.
///
/// Paging-structure frames that become empty are detached immediately but
/// only returned to the allocator by [`Ept::reclaim_tables`], which the caller
/// calls after the INVEPT an [`Invalidation::SingleContext`] asked for: until
/// then a processor may still hold the detached table in its paging-structure
/// caches (SDM Vol. 3C §29.4.1) and walk it.
///
/// `Ept` has no `Drop` implementation: call [`Ept::destroy`] once no logical
/// processor can use the EPTP any more. Dropping it instead leaks the table
/// frames (deliberately: freeing them behind the processor's back is unsafe).
pub struct Ept<A: FrameAllocator, M: TableMemory> {
    alloc: A,
    mem: M,
    config: EptConfig,
    root: Hpa,
    eptp: Eptp,
    /// Tables linked into the hierarchy, including the root.
    live_tables: usize,
    /// Detached tables awaiting `reclaim_tables`, chained through entry 0.
    pending_head: Option<Hpa>,
    pending_tables: usize,
    /// Pre-allocated, zeroed frames for splitting large pages.
    reserve: [Option<Hpa>; MAX_SPLIT_TABLES],
}

impl<A: FrameAllocator, M: TableMemory> fmt::Debug for Ept<A, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ept")
            .field("eptp", &self.eptp)
            .field("config", &self.config)
            .field("live_tables", &self.live_tables)
            .field("pending_tables", &self.pending_tables)
            .finish_non_exhaustive()
    }
}

/// What a range walk does with each leaf it covers.
#[derive(Clone, Copy)]
enum Op {
    Unmap,
    Protect(u64),
}

impl<A: FrameAllocator, M: TableMemory> Ept<A, M> {
    /// Creates an empty hierarchy (one zeroed PML4 table).
    ///
    /// Pass `&mut allocator` / `&memory` to keep ownership with the caller
    /// (both traits are implemented for references).
    pub fn new(alloc: A, mem: M, config: EptConfig) -> Result<Self, EptError> {
        config.validate()?;
        let mut ept = Ept {
            alloc,
            mem,
            config,
            root: Hpa::new(0),
            eptp: Eptp::new(Hpa::new(0), config.eptp_memory_type, false),
            live_tables: 0,
            pending_head: None,
            pending_tables: 0,
            reserve: [None; MAX_SPLIT_TABLES],
        };
        let root = ept.alloc_table()?;
        ept.root = root;
        ept.eptp = Eptp::new(
            root,
            config.eptp_memory_type,
            config.accessed_dirty && config.accessed_dirty_supported,
        );
        Ok(ept)
    }

    /// The EPTP to load into the VMCS: PML4 address, page-walk length 4,
    /// configured memory type, A/D enable when supported and requested
    /// (SDM Vol. 3C §25.6.11, Table 25-9).
    pub fn eptp(&self) -> Eptp {
        self.eptp
    }

    /// The configuration this hierarchy was built with.
    pub fn config(&self) -> &EptConfig {
        &self.config
    }

    /// Paging-structure frames currently linked in (including the PML4).
    pub fn table_frames(&self) -> usize {
        self.live_tables
    }

    /// Detached frames waiting for [`Ept::reclaim_tables`].
    pub fn pending_frames(&self) -> usize {
        self.pending_tables
    }

    /// The frame allocator.
    pub fn allocator(&self) -> &A {
        &self.alloc
    }

    /// The frame allocator, mutably (e.g. to refill it).
    pub fn allocator_mut(&mut self) -> &mut A {
        &mut self.alloc
    }

    /// The table memory.
    pub fn memory(&self) -> &M {
        &self.mem
    }

    /// Maps `[gpa, gpa + len)` to `[hpa, hpa + len)` with `access` and
    /// `memory_type` (ignore-PAT clear). See [`Ept::map_with`].
    pub fn map(
        &mut self,
        gpa: Gpa,
        hpa: Hpa,
        len: u64,
        access: Access,
        memory_type: MemoryType,
    ) -> Result<Invalidation, EptError> {
        self.map_with(gpa, hpa, len, Attributes::new(access, memory_type))
    }

    /// Maps `[gpa, gpa + len)` to `[hpa, hpa + len)`.
    ///
    /// Each piece uses the largest page size that is enabled in the
    /// configuration, to which both the guest- and host-physical addresses of
    /// the piece are aligned and which fits in the remaining length.
    ///
    /// Fails with [`EptError::AlreadyMapped`] if any page of the range is
    /// mapped. Only not-present entries are filled, so the result is always
    /// [`Invalidation::None`] (SDM Vol. 3C §29.4.3.4). If allocating a table
    /// fails midway, the pages mapped so far are removed again and the error
    /// returned; a vCPU running concurrently on this EPT may have cached them,
    /// so such a caller must treat the error like `SingleContext`.
    pub fn map_with(
        &mut self,
        gpa: Gpa,
        hpa: Hpa,
        len: u64,
        attrs: Attributes,
    ) -> Result<Invalidation, EptError> {
        let end = self.check_gpa_range(gpa, len)?;
        self.check_hpa_range(hpa, len)?;
        self.check_access(attrs.access)?;
        if let Some(first) = self.find(self.root, ROOT_LEVEL, gpa.as_u64(), end, true) {
            return Err(EptError::AlreadyMapped(Gpa::new(first)));
        }
        let bits = entry::leaf_bits(attrs);
        let (g, h) = (gpa.as_u64(), hpa.as_u64());
        if let Err(e) = self.map_rec(self.root, ROOT_LEVEL, g, end, g, h, bits) {
            // Everything in [g, end) was created by this call and lies
            // entirely inside the range, so no split is needed to remove it.
            self.walk_range(self.root, ROOT_LEVEL, g, end, Op::Unmap);
            return Err(e);
        }
        Ok(Invalidation::None)
    }

    /// Removes every mapping in `[gpa, gpa + len)`; unmapped holes in the
    /// range are skipped.
    ///
    /// A large page only partly inside the range is split first (the parts
    /// outside keep their address, access and memory type). Tables that
    /// become empty are detached and queued for [`Ept::reclaim_tables`].
    /// Returns [`Invalidation::None`] only if nothing was mapped in the range.
    pub fn unmap(&mut self, gpa: Gpa, len: u64) -> Result<Invalidation, EptError> {
        let end = self.check_gpa_range(gpa, len)?;
        self.fill_reserve(gpa.as_u64(), end)?;
        let changed = self.walk_range(self.root, ROOT_LEVEL, gpa.as_u64(), end, Op::Unmap);
        self.drain_reserve();
        Ok(self.invalidation(changed))
    }

    /// Changes the access rights of every page in `[gpa, gpa + len)`, which
    /// must be mapped entirely ([`EptError::NotMapped`] otherwise). Large
    /// pages only partly inside the range are split first.
    ///
    /// Returns [`Invalidation::None`] if no entry changed. Any change yields
    /// `SingleContext`: it is required when permissions are removed or a page
    /// is split, and recommended when they are only added (otherwise the
    /// guest may take one spurious EPT violation, SDM Vol. 3C §29.4.3.4).
    pub fn protect(
        &mut self,
        gpa: Gpa,
        len: u64,
        access: Access,
    ) -> Result<Invalidation, EptError> {
        let end = self.check_gpa_range(gpa, len)?;
        self.check_access(access)?;
        if let Some(hole) = self.find(self.root, ROOT_LEVEL, gpa.as_u64(), end, false) {
            return Err(EptError::NotMapped(Gpa::new(hole)));
        }
        self.fill_reserve(gpa.as_u64(), end)?;
        let op = Op::Protect(access.bits() & entry::PERM_MASK);
        let changed = self.walk_range(self.root, ROOT_LEVEL, gpa.as_u64(), end, op);
        self.drain_reserve();
        Ok(self.invalidation(changed))
    }

    /// Walks the hierarchy like the processor does (SDM Vol. 3C §29.3.2) and
    /// returns the translation of `gpa`, or `None` if it is not mapped or
    /// above the 48-bit guest-physical space.
    pub fn translate(&self, gpa: Gpa) -> Option<Translation> {
        let gpa = gpa.as_u64();
        if gpa >= GPA_LIMIT {
            return None;
        }
        let mut table = self.root;
        let mut level = ROOT_LEVEL;
        loop {
            let e = self.load(table, index(gpa, level));
            if !is_present(e) {
                return None;
            }
            if is_leaf(e, level) {
                let size = entry_size(level);
                let base = entry::address(e) & !(size - 1);
                return Some(Translation {
                    hpa: Hpa::new(base | (gpa & (size - 1))),
                    access: entry::access(e),
                    memory_type: MemoryType::from_bits(
                        (e & entry::MEMTYPE_MASK) >> entry::MEMTYPE_SHIFT,
                    )?,
                    ignore_pat: e & entry::IGNORE_PAT != 0,
                    page_size: PageSize::from_level(level)?,
                });
            }
            if level == 1 {
                return None;
            }
            table = Hpa::new(entry::address(e));
            level -= 1;
        }
    }

    /// Returns the frames of detached tables to the allocator and how many
    /// there were.
    ///
    /// Call this only after the INVEPT required by the operations that
    /// detached them has completed on every logical processor that uses this
    /// EPTP (or while no vCPU with this EPTP has run since the detach):
    /// until then a processor may still walk them.
    pub fn reclaim_tables(&mut self) -> usize {
        let mut freed = 0;
        let mut next = self.pending_head.take();
        while let Some(frame) = next {
            if freed >= self.pending_tables {
                break;
            }
            let link = self.load(frame, 0);
            self.mem.table(frame)[0].store(0, Ordering::Relaxed);
            next = (link != 0).then(|| Hpa::new(entry::address(link)));
            self.alloc.free_table(frame);
            freed += 1;
        }
        self.pending_tables = 0;
        freed
    }

    /// Returns every table frame (linked and detached) to the allocator and
    /// gives back the allocator and memory.
    ///
    /// The caller must ensure that no logical processor uses the EPTP any
    /// more and that its cached translations were invalidated (INVEPT).
    pub fn destroy(mut self) -> (A, M) {
        self.reclaim_tables();
        self.free_rec(self.root, ROOT_LEVEL);
        self.live_tables = 0;
        let Ept { alloc, mem, .. } = self;
        (alloc, mem)
    }

    // ---- argument checks ------------------------------------------------

    /// Checks a guest-physical range and returns its end.
    fn check_gpa_range(&self, gpa: Gpa, len: u64) -> Result<u64, EptError> {
        if !gpa.is_aligned(PageSize::Size4K) {
            return Err(EptError::MisalignedGpa(gpa));
        }
        check_len(len)?;
        let end = gpa
            .as_u64()
            .checked_add(len)
            .ok_or(EptError::GpaOverflow { gpa, len })?;
        if end > GPA_LIMIT {
            return Err(EptError::GpaOutOfRange { gpa, len });
        }
        Ok(end)
    }

    fn check_hpa_range(&self, hpa: Hpa, len: u64) -> Result<(), EptError> {
        if !hpa.is_aligned(PageSize::Size4K) {
            return Err(EptError::MisalignedHpa(hpa));
        }
        check_len(len)?;
        let end = hpa
            .as_u64()
            .checked_add(len)
            .ok_or(EptError::HpaOverflow { hpa, len })?;
        if end > self.config.phys_limit() {
            return Err(EptError::HpaOutOfRange {
                hpa,
                len,
                max_phys_bits: self.config.max_phys_bits,
            });
        }
        Ok(())
    }

    /// Rejects access rights that would be not present or misconfigured
    /// (SDM Vol. 3C §29.3.3.1).
    fn check_access(&self, access: Access) -> Result<(), EptError> {
        if Access::from_bits(access.bits()).is_none() {
            return Err(EptError::InvalidAccessBits(access.bits()));
        }
        if access.is_empty() {
            return Err(EptError::EmptyAccess);
        }
        if access.contains(Access::WRITE) && !access.contains(Access::READ) {
            return Err(EptError::WriteWithoutRead);
        }
        if access.contains(Access::USER_EXECUTE) && !self.config.mode_based_execute {
            return Err(EptError::UserExecuteUnsupported);
        }
        if !access.contains(Access::READ) && !self.config.execute_only {
            return Err(EptError::ExecuteOnlyUnsupported);
        }
        Ok(())
    }

    fn invalidation(&self, changed: bool) -> Invalidation {
        if changed {
            Invalidation::SingleContext(self.eptp)
        } else {
            Invalidation::None
        }
    }

    // ---- frames ---------------------------------------------------------

    fn load(&self, table: Hpa, idx: usize) -> u64 {
        self.mem.table(table)[idx & 0x1ff].load(Ordering::Acquire)
    }

    /// Release ordering: a table's contents are written before the entry
    /// that links it becomes visible to the processor's walk.
    fn store(&self, table: Hpa, idx: usize, value: u64) {
        self.mem.table(table)[idx & 0x1ff].store(value, Ordering::Release)
    }

    /// Allocates, validates and zeroes a table frame.
    fn alloc_table(&mut self) -> Result<Hpa, EptError> {
        let frame = self.alloc.allocate_table().ok_or(EptError::OutOfMemory)?;
        if !frame.is_aligned(PageSize::Size4K) || frame.as_u64() >= self.config.phys_limit() {
            self.alloc.free_table(frame);
            return Err(EptError::InvalidTableFrame(frame));
        }
        for e in self.mem.table(frame) {
            e.store(0, Ordering::Relaxed);
        }
        self.live_tables += 1;
        Ok(frame)
    }

    /// A zeroed frame from the split reserve, or a fresh one.
    fn take_table(&mut self) -> Result<Hpa, EptError> {
        for slot in self.reserve.iter_mut() {
            if let Some(frame) = slot.take() {
                return Ok(frame);
            }
        }
        self.alloc_table()
    }

    /// Detaches an empty table: queue it for `reclaim_tables`, chaining the
    /// list through entry 0. The link is 4 KiB aligned, so bits 2:0 and 10
    /// are 0 and the entry stays not present should a processor still walk
    /// the table.
    fn retire(&mut self, frame: Hpa) {
        let link = self.pending_head.map_or(0, Hpa::as_u64);
        self.store(frame, 0, link);
        self.pending_head = Some(frame);
        self.pending_tables += 1;
        self.live_tables = self.live_tables.saturating_sub(1);
    }

    fn table_is_empty(&self, table: Hpa) -> bool {
        self.mem
            .table(table)
            .iter()
            .all(|e| !is_present(e.load(Ordering::Acquire)))
    }

    /// Pre-allocates the frames needed to split the large pages straddling
    /// `start` and `end`, so that unmap/protect cannot fail halfway.
    fn fill_reserve(&mut self, start: u64, end: u64) -> Result<(), EptError> {
        const TWO_MIB: u64 = 1 << 21;
        let straddling = |addr: u64| -> Option<(u8, u64)> {
            if addr >= GPA_LIMIT {
                return None;
            }
            let (level, base) = self.leaf_at(addr)?;
            (level > 1 && base != addr).then_some((level, base))
        };
        let s = straddling(start);
        let e = straddling(end);
        let mut needed = 0;
        if let Some((level, _)) = s {
            needed += 1;
            if level == 3 && !start.is_multiple_of(TWO_MIB) {
                needed += 1;
            }
        }
        if let Some((level, _)) = e {
            let same_leaf = s == e;
            if !same_leaf {
                needed += 1;
            }
            let same_pt =
                same_leaf && !start.is_multiple_of(TWO_MIB) && start / TWO_MIB == end / TWO_MIB;
            if level == 3 && !end.is_multiple_of(TWO_MIB) && !same_pt {
                needed += 1;
            }
        }
        for i in 0..needed.min(MAX_SPLIT_TABLES) {
            match self.alloc_table() {
                Ok(frame) => self.reserve[i] = Some(frame),
                Err(err) => {
                    self.drain_reserve();
                    return Err(err);
                }
            }
        }
        Ok(())
    }

    /// Returns unused reserve frames (never linked, so never walked).
    fn drain_reserve(&mut self) {
        for i in 0..MAX_SPLIT_TABLES {
            if let Some(frame) = self.reserve[i].take() {
                self.alloc.free_table(frame);
                self.live_tables = self.live_tables.saturating_sub(1);
            }
        }
    }

    // ---- walks ----------------------------------------------------------

    /// The leaf mapping `addr`: its level and the GPA where its page starts.
    fn leaf_at(&self, addr: u64) -> Option<(u8, u64)> {
        let mut table = self.root;
        let mut level = ROOT_LEVEL;
        loop {
            let e = self.load(table, index(addr, level));
            if !is_present(e) {
                return None;
            }
            if is_leaf(e, level) {
                return Some((level, addr & !(entry_size(level) - 1)));
            }
            if level == 1 {
                return None;
            }
            table = Hpa::new(entry::address(e));
            level -= 1;
        }
    }

    /// First address in `[start, end)` that is mapped (`want_mapped`) or
    /// unmapped (`!want_mapped`), skipping whole not-present subtrees.
    fn find(&self, table: Hpa, level: u8, start: u64, end: u64, want_mapped: bool) -> Option<u64> {
        let size = entry_size(level);
        let mut addr = start;
        while addr < end {
            let chunk_end = ((addr & !(size - 1)) + size).min(end);
            let e = self.load(table, index(addr, level));
            let found = if !is_present(e) {
                !want_mapped
            } else if is_leaf(e, level) {
                want_mapped
            } else if level > 1 {
                let child = Hpa::new(entry::address(e));
                if let Some(a) = self.find(child, level - 1, addr, chunk_end, want_mapped) {
                    return Some(a);
                }
                false
            } else {
                false
            };
            if found {
                return Some(addr);
            }
            addr = chunk_end;
        }
        None
    }

    /// Fills not-present entries for `[start, end)`; `(gpa0, hpa0)` anchor
    /// the linear GPA→HPA relation.
    #[allow(clippy::too_many_arguments)]
    fn map_rec(
        &mut self,
        table: Hpa,
        level: u8,
        start: u64,
        end: u64,
        gpa0: u64,
        hpa0: u64,
        bits: u64,
    ) -> Result<(), EptError> {
        let size = entry_size(level);
        let mut addr = start;
        while addr < end {
            let base = addr & !(size - 1);
            let chunk_end = (base + size).min(end);
            let idx = index(addr, level);
            let e = self.load(table, idx);
            // Cannot overflow: hpa0 + (end - gpa0) was checked against MAXPHYADDR.
            let hpa = hpa0 + (addr - gpa0);
            let whole = addr == base && chunk_end == base + size && hpa.is_multiple_of(size);
            if level == 1 || (!is_present(e) && whole && self.config.large_page_allowed(level)) {
                if is_present(e) {
                    return Err(EptError::AlreadyMapped(Gpa::new(addr)));
                }
                // SDM Vol. 3C Tables 29-2/29-4/29-6: address, RWX, memory
                // type, ignore-PAT, and bit 7 for a large page.
                self.store(table, idx, entry::leaf_entry(hpa, bits, level));
            } else {
                let child = if !is_present(e) {
                    let child = self.alloc_table()?;
                    self.store(
                        table,
                        idx,
                        entry::table_entry(child.as_u64(), self.config.mode_based_execute),
                    );
                    child
                } else if is_leaf(e, level) {
                    return Err(EptError::AlreadyMapped(Gpa::new(addr)));
                } else {
                    Hpa::new(entry::address(e))
                };
                self.map_rec(child, level - 1, addr, chunk_end, gpa0, hpa0, bits)?;
            }
            addr = chunk_end;
        }
        Ok(())
    }

    /// Applies `op` to every leaf in `[start, end)`, splitting large pages
    /// that straddle the range boundaries and detaching tables that become
    /// empty. Returns whether any present entry changed.
    fn walk_range(&mut self, table: Hpa, level: u8, start: u64, end: u64, op: Op) -> bool {
        let size = entry_size(level);
        let mut changed = false;
        let mut addr = start;
        while addr < end {
            let base = addr & !(size - 1);
            let chunk_end = (base + size).min(end);
            let idx = index(addr, level);
            let e = self.load(table, idx);
            let cur = addr;
            addr = chunk_end;
            if !is_present(e) {
                continue;
            }
            let whole = cur == base && chunk_end == base + size;
            if is_leaf(e, level) && whole {
                changed |= self.apply(table, idx, op);
                continue;
            }
            let child = if is_leaf(e, level) {
                // A large page straddling the range boundary: split it so
                // the part outside keeps its mapping (SDM Vol. 3C §29.4.3.4
                // asks for INVEPT after changing bit 7, reported via `changed`).
                // `fill_reserve` set aside the frames, so this cannot fail;
                // if it somehow did, the page is left mapped as it was.
                match self.split(table, idx, level) {
                    Ok(child) => child,
                    Err(_) => continue,
                }
            } else {
                Hpa::new(entry::address(e))
            };
            changed |= self.walk_range(child, level - 1, cur, chunk_end, op);
            if matches!(op, Op::Unmap) && self.table_is_empty(child) {
                self.store(table, idx, 0);
                self.retire(child);
                changed = true;
            } else if is_leaf(e, level) {
                changed = true;
            }
        }
        changed
    }

    /// Updates one leaf; returns whether it changed.
    fn apply(&self, table: Hpa, idx: usize, op: Op) -> bool {
        let slot = &self.mem.table(table)[idx & 0x1ff];
        match op {
            Op::Unmap => is_present(slot.swap(0, Ordering::AcqRel)),
            Op::Protect(perms) => {
                // Compare-exchange keeps A/D bits the processor may set
                // concurrently (SDM Vol. 3C §29.3.4).
                let mut old = slot.load(Ordering::Acquire);
                loop {
                    let new = (old & !entry::PERM_MASK) | perms;
                    match slot.compare_exchange(old, new, Ordering::AcqRel, Ordering::Acquire) {
                        Ok(_) => return old & entry::PERM_MASK != perms,
                        Err(now) => old = now,
                    }
                }
            }
        }
    }

    /// Replaces the large leaf at `table[idx]` (at `level` 2 or 3) by a table
    /// of 512 leaves of the next smaller size mapping the same addresses with
    /// the same attributes and A/D flags. Returns the new table.
    fn split(&mut self, table: Hpa, idx: usize, level: u8) -> Result<Hpa, EptError> {
        let child = self.take_table()?;
        let child_level = level - 1;
        let child_size = entry_size(child_level);
        let slot = &self.mem.table(table)[idx & 0x1ff];
        let link = entry::table_entry(child.as_u64(), self.config.mode_based_execute);
        let mut old = slot.load(Ordering::Acquire);
        loop {
            let base = entry::address(old) & !(entry_size(level) - 1);
            let attrs = old & entry::SPLIT_INHERIT;
            for (i, e) in self.mem.table(child).iter().enumerate() {
                let hpa = base + i as u64 * child_size;
                e.store(
                    entry::leaf_entry(hpa, attrs, child_level),
                    Ordering::Relaxed,
                );
            }
            // The children are complete before the link is published; retry
            // if the processor set A/D on the large page in the meantime.
            match slot.compare_exchange(old, link, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Ok(child),
                Err(now) => old = now,
            }
        }
    }

    /// Frees `table` and every table below it.
    fn free_rec(&mut self, table: Hpa, level: u8) {
        if level > 1 {
            for idx in 0..512 {
                let e = self.load(table, idx);
                if is_present(e) && !is_leaf(e, level) {
                    self.free_rec(Hpa::new(entry::address(e)), level - 1);
                }
            }
        }
        self.alloc.free_table(table);
    }
}

fn check_len(len: u64) -> Result<(), EptError> {
    if len == 0 {
        return Err(EptError::ZeroLength);
    }
    if !len.is_multiple_of(PAGE_SIZE) {
        return Err(EptError::MisalignedLength(len));
    }
    Ok(())
}
