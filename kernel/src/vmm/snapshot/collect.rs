//! Taking the snapshot of a paused VM in bounded steps: each shell pass on the console CPU
//! (`snapshot::service`) works on it for at most one timeslice of the scheduler, so the
//! vCPUs that share that CPU wait for it as for one more vCPU's slice, never for the whole
//! copy (docs/architecture.md, "Budgets and bounded work"); the paused VM stays paused across
//! the passes, so its RAM and devices do not change meanwhile.
//!
//! The first step reads the devices (the moment `taken_tsc` every deadline and guest TSC
//! refers to), then RAM is scanned for its zero pages in place, the heap for its data pages
//! checked and reserved in one piece, and the data pages copied; the last step assembles the
//! snapshot.

use super::*;
use vm::snapshot::memory::{self, FillCursor, Plan, PAGE};

/// Pages scanned between two looks at the clock.
const SCAN_CHUNK: u64 = 128;
/// Data pages copied between two looks at the clock.
const FILL_CHUNK: u64 = 16;

/// A snapshot being taken.
#[derive(Debug)]
pub(in crate::vmm) struct Collecting {
    taken_tsc: u64,
    sections: devices::Sections,
    plan: Plan,
    /// The memory section, reserved whole once the scan is done.
    ram: Option<Vec<u8>>,
    cursor: FillCursor,
}

/// What a step did.
pub(super) enum Step {
    /// Work is left for the next pass.
    More,
    Done(Box<Collected>),
}

/// A snapshot as collected, with what the shell reports of it.
pub(super) struct Collected {
    pub snapshot: Snapshot,
    pub data_pages: u64,
}

impl Collected {
    pub fn bytes(&self) -> usize {
        let s = &self.snapshot;
        s.memory.len()
            + s.platform.len()
            + s.lapics.iter().map(Vec::len).sum::<usize>()
            + s.virtio.iter().map(Vec::len).sum::<usize>()
            + s.vcpus.iter().map(|v| v.xsave.len() + 1024).sum::<usize>()
    }
}

/// Ticks a step may take: one timeslice of the scheduler.
fn step_budget() -> u64 {
    scheduler::timeslice_ticks().max(1)
}

/// One bounded step of the snapshot of the paused `vm` (every vCPU parked, its lock held).
/// On an error the work so far is dropped; the caller ends the pause.
pub(super) fn step(vm: &mut Vm, kind: &str) -> Result<Step, SnapshotError> {
    let start = arch::rdtsc();
    let budget = step_budget();
    let spent = || arch::rdtsc().saturating_sub(start) >= budget;
    let mut c = match vm.pause.as_mut().and_then(|p| p.collecting.take()) {
        Some(c) => c,
        None => begin(vm)?,
    };
    // In place: the VM's RAM is not copied to find its zero pages (a page index below the
    // RAM size is always RAM; `None` would count as zero).
    while !c.plan.scan_some(SCAN_CHUNK, |i| {
        vm.memory.page_has_data(i * PAGE as u64).unwrap_or(false)
    }) {
        if spent() {
            return keep(vm, c);
        }
    }
    if c.ram.is_none() {
        let needed = c.plan.encoded_len();
        let available = crate::memory::heap_available();
        if needed.saturating_add(HEAP_MARGIN) > available {
            return Err(SnapshotError::Heap { needed, available });
        }
        let mut ram = Vec::new();
        ram.try_reserve_exact(needed)
            .map_err(|_| SnapshotError::Heap { needed, available })?;
        c.ram = Some(ram);
    }
    let Collecting {
        plan, ram, cursor, ..
    } = &mut c;
    let ram = ram.as_mut().expect("reserved above");
    while !memory::fill_some(plan, ram, cursor, FILL_CHUNK, |i, buf| {
        if vm.memory.read(i * PAGE as u64, buf).is_none() {
            buf.fill(0);
        }
    }) {
        if spent() {
            return keep(vm, c);
        }
    }
    Ok(Step::Done(Box::new(finish(vm, c, kind))))
}

/// Puts `c` back into the pause for the next step.
fn keep(vm: &mut Vm, c: Collecting) -> Result<Step, SnapshotError> {
    if let Some(p) = vm.pause.as_mut() {
        p.collecting = Some(c);
    }
    Ok(Step::More)
}

/// The first step: the devices, at `taken_tsc`, after checking the heap they need.
fn begin(vm: &mut Vm) -> Result<Collecting, SnapshotError> {
    let needed = devices::estimate(vm);
    let available = crate::memory::heap_available();
    if needed.saturating_add(HEAP_MARGIN) > available {
        return Err(SnapshotError::Heap { needed, available });
    }
    let taken_tsc = arch::rdtsc();
    let sections = devices::save(vm).map_err(SnapshotError::Device)?;
    Ok(Collecting {
        taken_tsc,
        sections,
        plan: Plan::new(vm.memory.size() / PAGE as u64),
        ram: None,
        cursor: FillCursor::default(),
    })
}

/// The last step: the vCPUs' states (recorded when they parked) and the sections.
fn finish(vm: &mut Vm, c: Collecting, kind: &str) -> Collected {
    let mut vcpus: Vec<VcpuState> = vm
        .pause
        .as_mut()
        .map(|p| p.vcpus.iter_mut().filter_map(Option::take).collect())
        .unwrap_or_default();
    for v in &mut vcpus {
        // The offset recorded at parking: the guest TSC at `taken_tsc`.
        v.guest_tsc = v.guest_tsc.wrapping_add(c.taken_tsc);
    }
    let devices::Sections {
        platform,
        lapics,
        virtio,
    } = c.sections;
    let info = VmInfo {
        name: vm.name.clone(),
        memory: vm.memory.size(),
        vcpus: vcpus.len() as u32,
        kind: String::from(kind),
        kvm_pv: vm.kvm_pv.is_some(),
        devices: virtio.len() as u32,
        taken_tsc: c.taken_tsc,
    };
    Collected {
        data_pages: c.plan.data_pages(),
        snapshot: Snapshot {
            requirements: requirements(vm),
            info,
            vcpus,
            lapics,
            platform,
            virtio,
            memory: c.ram.unwrap_or_default(),
        },
    }
}
