//! Instant clones (issue 18; docs/architecture.md, "Instant clones"): a VM configured with
//! `from-snapshot = "SNAP"` starts as a copy of snapshot SNAP without copying its RAM. The
//! snapshot's data pages are put once into frames of their own, the *base*, which every clone
//! of the snapshot follows (guest_memory.rs, vm::snapshot::clone_memory): a clone starts with
//! nothing mapped and maps a base frame read-only on its first read, copies it on its first
//! write, and gives a zero page a frame only when it touches it. Each clone gets its own
//! devices from its own configuration (its MAC, its disks' overlays restored from the
//! snapshot) and continues from the snapshot's vCPU state, as a restore does.

use super::super::scheduler;
use super::*;
use vm::snapshot::clone_memory::Base;
use vm::snapshot::memory::{Run, PAGE};

/// The frames of a snapshot's data pages, shared read-only by its clones. Freed when the
/// snapshot is forgotten and the last clone following it has started from something else.
#[derive(Debug)]
pub struct CloneBase {
    /// One entry per page of RAM: the frame holding it, 0 for a zero page.
    frames: Vec<u64>,
    data_pages: u64,
}

impl Base for CloneBase {
    fn pages(&self) -> u64 {
        self.frames.pages()
    }
    fn frame(&self, page: u64) -> Option<u64> {
        self.frames.frame(page)
    }
}

impl Drop for CloneBase {
    fn drop(&mut self) {
        for &frame in self.frames.iter().filter(|&&f| f != 0) {
            // SAFETY: the frame was allocated for this base, which is dropped only when no
            // clone holds it any more: each clone unmapped (and flushed) all of its RAM before
            // it let go of it (GuestMemory::follow, reset).
            unsafe { crate::memory::free_frame(frame) };
        }
    }
}

impl CloneBase {
    /// The data pages of `snapshot` in frames of their own. Refused when the machine has
    /// fewer free frames than the pages need plus a reserve of 4 MiB.
    fn build(snapshot: &Snapshot) -> Result<Self, SnapshotError> {
        const RESERVE: u64 = 1024;
        let pages = snapshot.info.memory / PAGE as u64;
        let runs = vm::snapshot::memory::decode(&snapshot.memory, pages).map_err(|e| {
            SnapshotError::Device(alloc::format!("its memory section is malformed: {e}"))
        })?;
        let data_pages: u64 = runs
            .iter()
            .map(|r| match r {
                Run::Data { data, .. } => (data.len() / PAGE) as u64,
                Run::Zero { .. } => 0,
            })
            .sum();
        let left = crate::memory::frames_left();
        if left < data_pages + RESERVE {
            return Err(SnapshotError::Frames {
                needed: data_pages,
                available: left.saturating_sub(RESERVE),
            });
        }
        let mut frames = Vec::new();
        frames
            .try_reserve_exact(pages as usize)
            .map_err(|_| SnapshotError::Heap {
                needed: pages as usize * 8,
                available: crate::memory::heap_available(),
            })?;
        frames.resize(pages as usize, 0);
        // Dropped on an error: what was allocated so far goes back.
        let mut base = CloneBase {
            frames,
            data_pages: 0,
        };
        for run in runs {
            let Run::Data { first, data } = run else {
                continue;
            };
            for (i, page) in data.as_chunks::<PAGE>().0.iter().enumerate() {
                let frame = crate::memory::allocate_frame().ok_or(SnapshotError::Frames {
                    needed: data_pages,
                    available: base.data_pages,
                })?;
                // SAFETY: the frame was just allocated (whole, in the direct map) and is
                // written only here, before any clone maps it.
                unsafe {
                    core::ptr::copy_nonoverlapping(
                        page.as_ptr(),
                        crate::memory::phys_to_virt(frame),
                        PAGE,
                    )
                };
                if let Some(slot) = base.frames.get_mut(first as usize + i) {
                    *slot = frame;
                    base.data_pages += 1;
                } else {
                    // SAFETY: just allocated, mapped nowhere (decode keeps runs inside RAM).
                    unsafe { crate::memory::free_frame(frame) };
                }
            }
        }
        Ok(base)
    }

    /// Host memory the base holds.
    pub fn bytes(&self) -> u64 {
        self.data_pages * PAGE as u64
    }
}

/// Snapshot `name` and its base, built on its first clone (kept with the snapshot for the
/// next ones).
fn base_of(name: SnapshotName) -> Result<(Arc<Snapshot>, Arc<CloneBase>), SnapshotError> {
    let mut store = STORE.lock();
    let held = store
        .iter_mut()
        .find(|h| h.name == name)
        .ok_or(SnapshotError::NoSuchSnapshot(name))?;
    if let Some(base) = &held.base {
        return Ok((held.snapshot.clone(), base.clone()));
    }
    let start = arch::rdtsc();
    let base = Arc::new(CloneBase::build(&held.snapshot)?);
    info!(
        "snapshot {name}: clone base of {} pages built in {} ticks",
        base.data_pages,
        arch::rdtsc().saturating_sub(start)
    );
    held.base = Some(base.clone());
    Ok((held.snapshot.clone(), base))
}

/// The snapshot a clone (`from-snapshot`) starts from.
fn snapshot_of(slot: &VmSlot) -> Result<(SnapshotName, Arc<Snapshot>), SnapshotError> {
    let wanted = slot
        .config
        .from_snapshot()
        .ok_or(SnapshotError::NotAClone)?;
    // The configuration checked the name.
    let name = SnapshotName::new(wanted).ok_or(SnapshotError::NotAClone)?;
    Ok((name, held(name)?))
}

/// For the rebuild of the clone in `slot` (restart.rs, its lock held as `vm`): its snapshot,
/// checked against its configuration and this CPU, and the snapshot's base.
pub(in crate::vmm) fn resolve(
    slot: &VmSlot,
    vm: &Vm,
) -> Result<(Arc<Snapshot>, Arc<CloneBase>), SnapshotError> {
    let (name, snapshot) = snapshot_of(slot)?;
    check_fits(vm, slot, &snapshot)?;
    base_of(name)
}

/// `start VM` of a clone, and each VM `clone SNAP N` starts: checks that its snapshot is held
/// and fits, and asks for its rebuild (shell_ops::service_starts, restart.rs), which makes
/// its RAM follow the snapshot's base.
pub fn start(slot: &VmSlot) -> Result<(), SnapshotError> {
    {
        let vm = slot.vm.lock();
        if vm.vcpus_running != 0 || vm.pause.is_some() {
            return Err(SnapshotError::NotStopped);
        }
        let (_, snapshot) = snapshot_of(slot)?;
        check_fits(&vm, slot, &snapshot)?;
    }
    let mut pending = slot.pending_start.lock();
    if pending.is_some() {
        return Err(SnapshotError::StartPending);
    }
    scheduler::vm_starting();
    *pending = Some(scheduler::PendingStart::Operator);
    Ok(())
}

/// `clone SNAP N`: starts the first `count` stopped VMs configured `from-snapshot = SNAP`;
/// returns their names. Refused whole when fewer are stopped.
pub fn clone_many(name: SnapshotName, count: usize) -> Result<Vec<String>, SnapshotError> {
    if !STORE.lock().iter().any(|h| h.name == name) {
        return Err(SnapshotError::NoSuchSnapshot(name));
    }
    let candidates: Vec<&VmSlot> = scheduler::slots()
        .iter()
        .filter(|s| s.config.from_snapshot() == Some(name.as_str()))
        .collect();
    if candidates.is_empty() {
        return Err(SnapshotError::NoClones(name));
    }
    let idle: Vec<&VmSlot> = candidates
        .iter()
        .copied()
        .filter(|s| s.vm.lock().vcpus_running == 0 && s.pending_start().is_none())
        .collect();
    if idle.len() < count {
        return Err(SnapshotError::TooFewClones {
            name,
            asked: count,
            configured: candidates.len(),
            stopped: idle.len(),
        });
    }
    let mut started = Vec::new();
    for slot in idle.into_iter().take(count) {
        start(slot)?;
        started.push(slot.config.name.clone());
    }
    Ok(started)
}
