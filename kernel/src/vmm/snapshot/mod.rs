//! VM snapshots (issue 18; docs/architecture.md, "Snapshots"): the shell's `snapshot VM
//! NAME` pauses a running VM, keeps its complete state in the hypervisor's memory and lets it
//! run on; `restore NAME VM` rebuilds a stopped VM of the same configuration from it, and its
//! guest continues exactly where the snapshot was taken. The format and every check on what
//! is restored are in the host-tested `vm::snapshot`; this module moves the state in and out.
//!
//! Pausing (no lock is held across CPUs): the request sets the VM's [`Pause`] and kicks its
//! CPUs. Each vCPU parks at its next full pre-entry pass or scheduler pass, on its home CPU:
//! its exit has been handled completely (an event to re-deliver is in the VMCS's VM-entry
//! interruption field, SDM Vol. 3C §28.2.4), its state is switched out, and it records its
//! [`VcpuState`] from its own VMCS (a VMCS is read only on the CPU it is current on, SDM Vol.
//! 3C §25.11.1). Halted vCPUs and vCPUs waiting for a start-up IPI park the same way, in the
//! scheduler's pass. When every vCPU has parked, the console CPU's shell pass ([`service`])
//! takes the device state and the RAM under the VM's lock, stores the snapshot and ends the
//! pause; the vCPUs go on. A VM with a disk transfer in flight (a store disk's drive) is not
//! paused: a snapshot is taken with no device request outstanding.
//!
//! Time: the snapshot records the host TSC at which the devices were read (`taken_tsc`) and
//! every vCPU's guest TSC at that moment; a restore at host TSC R gives each vCPU the TSC
//! offset that continues its TSC from there and moves every device deadline by
//! R - taken_tsc, so the guest sees the time between snapshot and restore as if it had not
//! passed (its RTC, read from the host's clock, shows the real time; kvmclock is rewritten
//! on the first entry).

mod clone;
mod collect;
mod devices;
mod vcpu_state;

pub(in crate::vmm) use clone::resolve as resolve_clone;
pub use clone::{clone_many, start as start_clone, CloneBase};

use super::scheduler::{self, VmSlot};
use super::*;
use alloc::sync::Arc;
use core::sync::atomic::{AtomicUsize, Ordering};
use spin::Mutex;
use vm::shell::SnapshotName;
use vm::snapshot::{Requirements, Snapshot, VcpuState, VmInfo};

/// Snapshots held at once.
pub const MAX_SNAPSHOTS: usize = 8;
/// Heap kept free beyond a snapshot's size (against fragmentation, and for the VMs' own
/// transient allocations): 1 MiB.
const HEAP_MARGIN: usize = 1 << 20;

/// A VM being paused for a snapshot.
#[derive(Debug)]
pub(in crate::vmm) struct Pause {
    name: SnapshotName,
    requested_at: u64,
    /// Each vCPU's state once it parked (its `guest_tsc` holds the TSC offset until the
    /// collector turns it into the guest TSC at `taken_tsc`).
    vcpus: Vec<Option<VcpuState>>,
    /// The snapshot being taken once every vCPU parked, in bounded steps ([`collect`]).
    collecting: Option<collect::Collecting>,
    /// Steps taken so far, and the longest in TSC ticks (reported).
    steps: u32,
    longest_step: u64,
}

/// A snapshot held in memory.
struct Held {
    name: SnapshotName,
    /// The VM it was taken of.
    vm: String,
    snapshot: Arc<Snapshot>,
    /// Its sections' bytes.
    bytes: usize,
    /// Its data pages in frames, shared by its clones (built on the first clone).
    base: Option<Arc<CloneBase>>,
}

static STORE: Mutex<Vec<Held>> = Mutex::new(Vec::new());
/// VMs with a pause in progress: while any is, every CPU looks at its vCPUs in each pass.
static PAUSING: AtomicUsize = AtomicUsize::new(0);

/// Whether some VM is being paused (the scheduler's passes park its vCPUs).
pub(in crate::vmm) fn pausing() -> bool {
    PAUSING.load(Ordering::Acquire) != 0
}

/// Why a snapshot, or a restore from one, cannot be done.
#[derive(Debug)]
pub enum SnapshotError {
    NoSuchVm,
    NotRunning,
    AlreadyPausing,
    VcpuStopped(usize),
    NameTaken(SnapshotName),
    StoreFull,
    DriveDisk,
    Heap {
        needed: usize,
        available: usize,
    },
    Stopped,
    NoSuchSnapshot(SnapshotName),
    NotStopped,
    StartPending,
    Incompatible(String),
    Device(String),
    /// `start`/`clone` of a VM without `from-snapshot`.
    NotAClone,
    /// `restore` into a clone: it starts from its own snapshot.
    IsAClone(String),
    /// `clone SNAP N`: no VM is configured `from-snapshot = SNAP`.
    NoClones(SnapshotName),
    TooFewClones {
        name: SnapshotName,
        asked: usize,
        configured: usize,
        stopped: usize,
    },
    /// Not enough free frames for the snapshot's base.
    Frames {
        needed: u64,
        available: u64,
    },
}

impl fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SnapshotError::NoSuchVm => f.write_str("no such VM"),
            SnapshotError::NotRunning => f.write_str("the VM is not running (`vms` shows its state)"),
            SnapshotError::AlreadyPausing => f.write_str("a snapshot of this VM is being taken already"),
            SnapshotError::VcpuStopped(i) => write!(f, "its vcpu {i} has stopped; a snapshot needs every vCPU"),
            SnapshotError::NameTaken(n) => write!(f, "a snapshot named `{n}` exists (`forget {n}` drops it)"),
            SnapshotError::StoreFull => write!(f, "{MAX_SNAPSHOTS} snapshots are held; `forget` one first"),
            SnapshotError::DriveDisk => f.write_str("the VM has a disk on a drive (a store disk): snapshots of those come with the store's disk snapshots"),
            SnapshotError::Heap { needed, available } => write!(
                f,
                "the snapshot needs {} KiB of hypervisor heap and {} KiB are free; `forget` a snapshot or give the machine more memory",
                needed / 1024,
                available / 1024
            ),
            SnapshotError::Stopped => f.write_str("the VM stopped while it was being paused; no snapshot was taken"),
            SnapshotError::NoSuchSnapshot(n) => write!(f, "no snapshot named `{n}` (`snapshots` lists them)"),
            SnapshotError::NotStopped => f.write_str("the VM is not stopped (`stop VM` first)"),
            SnapshotError::StartPending => f.write_str("the VM is starting already"),
            SnapshotError::Incompatible(why) => write!(f, "the snapshot does not fit this VM: {why}"),
            SnapshotError::Device(why) => write!(f, "{why}"),
            SnapshotError::NotAClone => f.write_str("the VM is not a clone (it has no `from-snapshot`)"),
            SnapshotError::IsAClone(snap) => write!(f, "the VM is a clone of snapshot `{snap}`: `start` it to start it from that snapshot"),
            SnapshotError::NoClones(n) => write!(f, "no VM is configured with from-snapshot = \"{n}\"; add [vm.NAME] tables with it to bulkhead.toml"),
            SnapshotError::TooFewClones { name, asked, configured, stopped } => write!(
                f,
                "{asked} clone(s) of `{name}` asked, but of the {configured} VM(s) configured with from-snapshot = \"{name}\" only {stopped} are stopped; nothing was started"
            ),
            SnapshotError::Frames { needed, available } => write!(
                f,
                "the snapshot's pages need {} KiB of free memory for its clones to share and {} KiB are free; `forget` a snapshot, stop VMs or give the machine more memory",
                needed * 4,
                available * 4
            ),
        }
    }
}

/// `snapshot VM NAME`: asks `vm`'s vCPUs to park; [`service`] takes the snapshot once they
/// have.
pub fn request(vm: usize, name: SnapshotName) -> Result<(), SnapshotError> {
    let slot = scheduler::slots().get(vm).ok_or(SnapshotError::NoSuchVm)?;
    let mut vm = slot.vm.lock();
    {
        let store = STORE.lock();
        if store.iter().any(|h| h.name == name) {
            return Err(SnapshotError::NameTaken(name));
        }
        if store.len() >= MAX_SNAPSHOTS {
            return Err(SnapshotError::StoreFull);
        }
    }
    if vm.pause.is_some() {
        return Err(SnapshotError::AlreadyPausing);
    }
    if vm.stopping.is_some() || vm.vcpus_running == 0 || slot.pending_start().is_some() {
        return Err(SnapshotError::NotRunning);
    }
    if vm.vcpus_running < slot.vcpus.len() {
        let i = slot.live.iter().position(|l| l.lock().is_none());
        return Err(SnapshotError::VcpuStopped(i.unwrap_or(0)));
    }
    if vm.platform.virtio.has_drive_disk() {
        return Err(SnapshotError::DriveDisk);
    }
    vm.pause = Some(Pause {
        name,
        requested_at: arch::rdtsc(),
        vcpus: (0..slot.vcpus.len()).map(|_| None).collect(),
        collecting: None,
        steps: 0,
        longest_step: 0,
    });
    PAUSING.fetch_add(1, Ordering::AcqRel);
    for &cpu in &vm.vcpu_cpus {
        crate::smp::kick(cpu);
    }
    Ok(())
}

/// What [`service`] did for one VM.
#[derive(Debug)]
pub enum Taken {
    Taken {
        name: SnapshotName,
        vm: String,
        vcpus: usize,
        memory: u64,
        data_pages: u64,
        bytes: usize,
        /// TSC ticks from the request until the VM ran on.
        paused_ticks: u64,
    },
    Failed {
        name: SnapshotName,
        vm: String,
        error: SnapshotError,
    },
}

/// Takes the snapshots whose VMs have parked every vCPU (the shell's pass, on the console
/// CPU): device state and RAM under the VM's lock, then the pause ends.
pub fn service() -> Vec<Taken> {
    let mut done = Vec::new();
    if !pausing() {
        return done;
    }
    let mut more = false;
    for slot in scheduler::slots() {
        let mut vm = slot.vm.lock();
        let Some(pause) = vm.pause.as_ref() else {
            continue;
        };
        let name = pause.name;
        if vm.stopping.is_some() {
            end_pause(&mut vm);
            done.push(Taken::Failed {
                name,
                vm: vm.name.clone(),
                error: SnapshotError::Stopped,
            });
            continue;
        }
        if vm.vcpus_running < slot.vcpus.len() {
            // A vCPU stopped for good while the others parked.
            let i = slot.live.iter().position(|l| l.lock().is_none());
            end_pause(&mut vm);
            done.push(Taken::Failed {
                name,
                vm: vm.name.clone(),
                error: SnapshotError::VcpuStopped(i.unwrap_or(0)),
            });
            continue;
        }
        if pause.vcpus.iter().any(Option::is_none) {
            continue;
        }
        let step_start = arch::rdtsc();
        let step = collect::step(&mut vm, slot.config.kind.name());
        let step_ticks = arch::rdtsc().saturating_sub(step_start);
        if let Some(p) = vm.pause.as_mut() {
            p.steps += 1;
            p.longest_step = p.longest_step.max(step_ticks);
        }
        let result = match step {
            Ok(collect::Step::More) => {
                more = true;
                continue;
            }
            Ok(collect::Step::Done(snapshot)) => Ok(*snapshot),
            Err(e) => Err(e),
        };
        let (requested_at, steps, longest) = vm
            .pause
            .as_ref()
            .map_or((0, 0, 0), |p| (p.requested_at, p.steps, p.longest_step));
        end_pause(&mut vm);
        let paused_ticks = arch::rdtsc().saturating_sub(requested_at);
        match result {
            Ok(snapshot) => {
                let bytes = snapshot.bytes();
                done.push(Taken::Taken {
                    name,
                    vm: vm.name.clone(),
                    vcpus: snapshot.snapshot.vcpus.len(),
                    memory: snapshot.snapshot.info.memory,
                    data_pages: snapshot.data_pages,
                    bytes,
                    paused_ticks,
                });
                info!(
                    "vm {}: snapshot {name} taken ({bytes} bytes, paused {paused_ticks} ticks; \
                     {steps} step(s), the longest {longest} ticks)",
                    vm.name
                );
                STORE.lock().push(Held {
                    name,
                    vm: vm.name.clone(),
                    snapshot: Arc::new(snapshot.snapshot),
                    bytes,
                    base: None,
                });
            }
            Err(error) => done.push(Taken::Failed {
                name,
                vm: vm.name.clone(),
                error,
            }),
        }
    }
    if more {
        // The next step at the next pass, not a polling interval later.
        crate::shell::pass_soon();
    }
    done
}

/// Ends `vm`'s pause: its parked vCPUs run on at their CPUs' next pass.
fn end_pause(vm: &mut Vm) {
    if vm.pause.take().is_some() {
        PAUSING.fetch_sub(1, Ordering::AcqRel);
    }
    for &cpu in &vm.vcpu_cpus {
        crate::smp::kick(cpu);
    }
}

/// What a guest of `vm` relies on: the CPUID feature words its policy offers (OSXSAVE and
/// OSPKE, which follow the guest's CR4, left out), its XSAVE components and the TSC rate.
pub(super) fn requirements(vm: &Vm) -> Requirements {
    use vm::snapshot::FeatureWord;
    /// CPUID.1:ECX.OSXSAVE[27] and CPUID.7.0:ECX.OSPKE[4] reflect CR4 (SDM Vol. 2A CPUID).
    const CR4_MIRRORS: [(u32, u8, u32); 2] = [(1, 2, 1 << 27), (7, 2, 1 << 4)];
    let policy = vm.platform.cpuid_policy();
    let cpu = vm::cpuid::VcpuCpuidState {
        apic_id: 0,
        cr4: 0,
        xcr0: vm.platform.xcr0_supported(),
        limit_cpuid: false,
    };
    let words: [(u32, u32, u8); 7] = [
        (1, 0, 2),
        (1, 0, 3),
        (7, 0, 1),
        (7, 0, 2),
        (7, 0, 3),
        (0xd, 1, 0),
        (0x8000_0001, 2, 2),
    ];
    let mut features = Vec::new();
    for (leaf, subleaf, register) in words {
        // (0x8000_0001, 2, 2) stands for ECX and EDX of the extended leaf.
        let (subleaf, regs): (u32, &[u8]) = if leaf == 0x8000_0001 {
            (0, &[2, 3])
        } else {
            (subleaf, core::slice::from_ref(&register))
        };
        let answer = policy.lookup(leaf, subleaf, &cpu);
        for &r in regs {
            let mut bits = answer[usize::from(r)];
            for (l, reg, mask) in CR4_MIRRORS {
                if l == leaf && reg == r {
                    bits &= !mask;
                }
            }
            features.push(FeatureWord {
                leaf,
                subleaf,
                register: r,
                bits,
            });
        }
    }
    Requirements {
        features,
        xcr0: vm.platform.xcr0_supported(),
        xsave_size: vm
            .platform
            .cpuid_policy()
            .xsave_size(vm.platform.xcr0_supported()),
        tsc_hz: vm.tsc_hz,
    }
}

/// One line per snapshot for `snapshots`.
pub fn list() -> Vec<String> {
    STORE
        .lock()
        .iter()
        .map(|h| {
            alloc::format!(
                "{:<24} vm {:<12} {} vCPU(s) {:>6} MiB RAM {:>8} KiB held{}",
                h.name.as_str(),
                h.vm,
                h.snapshot.vcpus.len(),
                h.snapshot.info.memory >> 20,
                h.bytes / 1024,
                h.base.as_ref().map_or_else(String::new, |b| alloc::format!(
                    ", {} KiB shared by its clones ({} holding it)",
                    b.bytes() / 1024,
                    Arc::strong_count(b) - 1
                ))
            )
        })
        .collect()
}

/// `forget NAME`: drops the snapshot (a restore under way keeps its own reference).
pub fn forget(name: SnapshotName) -> Result<usize, SnapshotError> {
    let mut store = STORE.lock();
    let at = store
        .iter()
        .position(|h| h.name == name)
        .ok_or(SnapshotError::NoSuchSnapshot(name))?;
    Ok(store.remove(at).bytes)
}

/// The held snapshot `name`.
fn held(name: SnapshotName) -> Result<Arc<Snapshot>, SnapshotError> {
    STORE
        .lock()
        .iter()
        .find(|h| h.name == name)
        .map(|h| h.snapshot.clone())
        .ok_or(SnapshotError::NoSuchSnapshot(name))
}

/// `restore NAME VM`: checks the snapshot against the stopped VM and this CPU, then asks for
/// the VM's rebuild from it (shell_ops::service_starts, restart.rs).
pub fn restore(name: SnapshotName, vm_index: usize) -> Result<(), SnapshotError> {
    let slot = scheduler::slots()
        .get(vm_index)
        .ok_or(SnapshotError::NoSuchVm)?;
    let snapshot = held(name)?;
    if let Some(snap) = slot.config.from_snapshot() {
        return Err(SnapshotError::IsAClone(String::from(snap)));
    }
    let vm = slot.vm.lock();
    check_fits(&vm, slot, &snapshot)?;
    if vm.vcpus_running != 0 || vm.pause.is_some() {
        return Err(SnapshotError::NotStopped);
    }
    let mut pending = slot.pending_start.lock();
    if pending.is_some() {
        return Err(SnapshotError::StartPending);
    }
    *slot.restore_from.lock() = Some(snapshot);
    scheduler::vm_starting();
    *pending = Some(scheduler::PendingStart::Operator);
    Ok(())
}

/// Whether `snapshot` can continue in `vm` (of `slot`'s configuration) on this CPU.
fn check_fits(vm: &Vm, slot: &VmSlot, snapshot: &Snapshot) -> Result<(), SnapshotError> {
    let i = &snapshot.info;
    let mismatch = |what: &str, snap: String, here: String| {
        Err(SnapshotError::Incompatible(alloc::format!(
            "{what}: the snapshot's is {snap}, this VM's {here}"
        )))
    };
    if i.memory != vm.memory.size() {
        return mismatch(
            "RAM",
            alloc::format!("{} MiB", i.memory >> 20),
            alloc::format!("{} MiB", vm.memory.size() >> 20),
        );
    }
    if i.vcpus as usize != slot.vcpus.len() {
        return mismatch(
            "vCPU count",
            alloc::format!("{}", i.vcpus),
            alloc::format!("{}", slot.vcpus.len()),
        );
    }
    if i.kind != slot.config.kind.name() {
        return mismatch(
            "guest kind",
            i.kind.clone(),
            String::from(slot.config.kind.name()),
        );
    }
    if i.kvm_pv != slot.config.kvm_pv {
        return mismatch(
            "kvm-pv",
            alloc::format!("{}", i.kvm_pv),
            alloc::format!("{}", slot.config.kvm_pv),
        );
    }
    if i.devices as usize != slot.config.devices.len() {
        return mismatch(
            "virtio device count",
            alloc::format!("{}", i.devices),
            alloc::format!("{}", slot.config.devices.len()),
        );
    }
    let here = requirements(vm);
    let missing = snapshot.requirements.check(&here);
    if let Some(first) = missing.first() {
        return Err(SnapshotError::Incompatible(alloc::format!(
            "this CPU (as the VM's configuration offers it) lacks what the guest relied on: {first}{}",
            if missing.len() > 1 { alloc::format!(" (and {} more)", missing.len() - 1) } else { String::new() }
        )));
    }
    Ok(())
}

/// The part of a restore done in the rebuild (restart.rs, the VM stopped and its devices
/// new): RAM, devices and local APICs from `snapshot`; returns the host TSC the vCPUs'
/// clocks continue from. On an error the VM stays stopped.
/// A clone's RAM (`base`) follows the snapshot's base instead of being written.
pub(in crate::vmm) fn restore_devices(
    vm: &mut Vm,
    snapshot: &Snapshot,
    base: Option<Arc<CloneBase>>,
) -> Result<u64, String> {
    let restore_tsc = arch::rdtsc();
    let shift = restore_tsc.wrapping_sub(snapshot.info.taken_tsc);
    if let Some(base) = base {
        vm.memory
            .follow(Some(base))
            .map_err(|e| alloc::format!("its RAM could not follow the snapshot: {e}"))?;
        devices::load(vm, snapshot, shift)?;
        return Ok(restore_tsc);
    }
    let pages = snapshot.info.memory / vm::snapshot::memory::PAGE as u64;
    let runs = vm::snapshot::memory::decode(&snapshot.memory, pages)
        .map_err(|e| alloc::format!("its memory section is malformed: {e}"))?;
    for run in runs {
        if let vm::snapshot::memory::Run::Data { first, data } = run {
            if vm
                .memory
                .write(first * vm::snapshot::memory::PAGE as u64, data)
                .is_none()
            {
                return Err(String::from("its RAM does not fit the VM's"));
            }
        }
    }
    devices::load(vm, snapshot, shift)?;
    Ok(restore_tsc)
}

/// What a restoring vCPU continues from: its state in the snapshot, and the host TSC its
/// clock continues at.
#[derive(Debug, Clone)]
pub(in crate::vmm) struct Resume {
    pub snapshot: Arc<Snapshot>,
    pub restore_tsc: u64,
}

impl Vcpu {
    /// On this vCPU's home CPU, in the scheduler's pass while some VM is being paused: parks
    /// it (recording its state) when its VM is being paused, lets it go on when the pause is
    /// over or the VM stops. `shared_pool`: a pool vCPU's VMCS is cleared again afterwards
    /// (another CPU may load it next, SDM Vol. 3C §25.11.1). Returns whether it is parked.
    pub(in crate::vmm) fn pause_check(&mut self, slot: &VmSlot, shared_pool: bool) -> bool {
        let mut vm = slot.vm.lock();
        let wanted = vm.pause.is_some() && vm.stopping.is_none();
        if !wanted {
            self.parked = false;
            return false;
        }
        if self.parked || matches!(self.state, State::Stopped(_)) {
            return self.parked;
        }
        if self.vmcs.load().is_err() {
            return false;
        }
        let state = self.capture(vm.platform.msr_policy());
        if self.pooled && shared_pool && self.vmcs.clear().is_ok() {
            self.launched = false;
            self.host_state_written = false;
        }
        if let Some(slot) = vm.pause.as_mut().and_then(|p| p.vcpus.get_mut(self.index)) {
            *slot = Some(state);
            self.parked = true;
        }
        self.parked
    }
}
