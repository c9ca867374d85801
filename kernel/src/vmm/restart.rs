//! Starting a stopped VM again from its configuration (the shell's `start VM` and
//! `restart VM`, issue 17; docs/architecture.md, "Restarting a VM"). Nothing is allocated
//! twice: the VM keeps its RAM, EPT, bitmaps, APIC pages, VMCSs and VPIDs, and builds the rest
//! anew, in two steps:
//!
//! 1. [`rebuild`], on the console-draining CPU once every vCPU has stopped and no drive
//!    transfer of its disks is in flight: the devices dropped (their heap freed, their
//!    network ports detached, their store disks closed), the heap reservation given back, the
//!    budget checked again, RAM zeroed and the image loaded, devices, platform and local
//!    APICs created in their power-up state, the counters cleared; then the VM's epoch moves
//!    on and its vCPUs' CPUs are kicked.
//! 2. [`Vcpu::restart`], on the CPU that holds each stopped vCPU: its VMCS cleared (launch
//!    state "clear", SDM Vol. 3C §25.11.3), programmed as at creation, its VPID's cached
//!    translations invalidated (SDM Vol. 3C §29.4.3.3: the restarted guest's linear
//!    addresses must not hit the old one's, global pages included), and the vCPU made as new.

use super::create::CreateError;
use super::scheduler::{self, PendingStart, VmSlot};
use super::virtio_devices::VirtioDevices;
use super::*;
use vmx::instructions::InvvpidType;

/// Why a VM cannot start again (now).
#[derive(Debug)]
pub enum RestartError {
    /// A vCPU still runs: it is stopping.
    NotStopped,
    /// A disk transfer waits for the drive; the rebuild waits for it.
    DriveBusy,
    /// The VM could not be built again (its configuration's image, the heap budget...).
    Create(CreateError),
    /// The snapshot to restore could not be loaded into the rebuilt VM.
    Snapshot(String),
}

impl fmt::Display for RestartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RestartError::NotStopped => f.write_str("the VM has not stopped yet"),
            RestartError::DriveBusy => f.write_str("a disk transfer of the VM is in flight"),
            RestartError::Create(e) => write!(f, "{e}"),
            RestartError::Snapshot(e) => write!(f, "restoring the snapshot failed: {e}"),
        }
    }
}

/// A guest's reboot (its write to the FADT's reset register) ended the VM `name`: with
/// `on-reboot = "restart"` it starts again from its configuration at the console CPU's next
/// pass, as an operator's `restart` would. Called by its last vCPU out, under the VM's lock,
/// before that vCPU counts the VM as finished (so the run cannot end in between).
pub(super) fn restart_after_reboot(name: &str) {
    let Some(slot) = scheduler::slots().iter().find(|s| s.config.name == name) else {
        return;
    };
    let mut pending = slot.pending_start.lock();
    if slot.config.on_reboot != vm::config::OnReboot::Restart || pending.is_some() {
        return;
    }
    let n = slot
        .reboots
        .fetch_add(1, core::sync::atomic::Ordering::AcqRel)
        + 1;
    info!("vm {name}: rebooting (on-reboot = \"restart\"; reboot {n} of this run)");
    scheduler::vm_starting();
    *pending = Some(PendingStart::Reboot);
}

/// Step 1: builds the stopped VM of `slot` again from its configuration. On success the
/// VM counts `vcpus_running` again and its vCPUs restart at their CPUs' next pass; returns
/// the TSC ticks the rebuild took.
pub(super) fn rebuild(slot: &VmSlot, archive: &Archive<'static>) -> Result<u64, RestartError> {
    let start = arch::rdtsc();
    let mut vm = slot.vm.lock();
    if vm.vcpus_running != 0 {
        return Err(RestartError::NotStopped);
    }
    if vm.platform.virtio.drive_busy() {
        return Err(RestartError::DriveBusy);
    }
    // A clone (`from-snapshot`) starts from its snapshot whenever it starts (`start`,
    // `clone`, its guest's reboot): its RAM follows the snapshot's base (snapshot/clone.rs).
    let clone = if slot.config.from_snapshot().is_some() {
        let resolved = super::snapshot::resolve_clone(slot, &vm)
            .map_err(|e| RestartError::Snapshot(alloc::format!("{e}")))?;
        Some(resolved)
    } else {
        None
    };
    let restore = match &clone {
        Some((snapshot, _)) => Some(snapshot.clone()),
        None => slot.restore_from.lock().take(),
    };
    // A restore replaces RAM whole: the image is not loaded again, the boot state of the
    // VM's last start (the same configuration) stands for it; the vCPUs' own states replace
    // it at their restart.
    let earlier_boot = restore.as_ref().map(|_| *slot.boot.lock());
    let boot = vm
        .reset(slot.config_index, &slot.config, archive, earlier_boot)
        .map_err(RestartError::Create)?;
    *slot.resume.lock() = None;
    if let Some(snapshot) = restore {
        // RAM, devices and local APICs from the snapshot; its vCPUs' states are written
        // when they restart on their CPUs (Vcpu::restart). RAM is all zero: no image was
        // loaded.
        let base = clone.map(|(_, base)| base);
        match super::snapshot::restore_devices(&mut vm, &snapshot, base) {
            Ok(restore_tsc) => {
                *slot.resume.lock() = Some(super::snapshot::Resume {
                    snapshot,
                    restore_tsc,
                })
            }
            Err(e) => {
                // It stays stopped: no vCPU restarts.
                vm.vcpus_running = 0;
                return Err(RestartError::Snapshot(e));
            }
        }
    }
    *slot.boot.lock() = boot;
    slot.epoch
        .fetch_add(1, core::sync::atomic::Ordering::AcqRel);
    scheduler::restarted();
    // Its vCPUs' CPUs may sleep with nothing to run: they take the new vCPUs now.
    for &cpu in &vm.vcpu_cpus {
        crate::smp::kick(cpu);
    }
    let ticks = arch::rdtsc().saturating_sub(start);
    let from = if slot.resume.lock().is_some() {
        "a snapshot"
    } else {
        "its configuration"
    };
    info!(
        "vm {}: restarting from {from} ({} vCPU(s); rebuilt in {ticks} ticks)",
        vm.name, vm.vcpus_running
    );
    Ok(ticks)
}

impl Vm {
    /// Everything but the frames its vCPUs' VMCSs name built anew from `config`; returns the
    /// boot state its vCPUs start from: `boot` if given (RAM then stays zero, no image is
    /// loaded), else the loaded image's. On an error the VM stays stopped, with no devices.
    fn reset(
        &mut self,
        index: usize,
        config: &VmConfig,
        archive: &Archive<'static>,
        boot: Option<loader::BootState>,
    ) -> Result<loader::BootState, CreateError> {
        // The old devices go first (their heap counts against the budget checked next).
        self.platform.virtio = VirtioDevices::none();
        memory::release_heap(self.heap_reserved as usize);
        self.heap_reserved = 0;
        let plan = Self::heap_plan(config, archive)?;
        self.memory
            .reset()
            .map_err(|e| CreateError::Platform(alloc::format!("clearing its RAM failed: {e}")))?;
        let boot = match boot {
            Some(b) => b,
            None => Self::load_image(index, config, archive, &mut self.memory)?,
        };
        let (platform, kvm_pv, _, reserved) =
            Self::new_platform(config, archive, &self.caps, self.tsc_hz, &plan)?;
        let pages = core::mem::take(&mut self.lapics)
            .into_iter()
            .map(vm::apic::LocalApic::into_page)
            .collect();
        self.lapics = Self::new_lapics(pages, &platform, self.tsc_hz);
        let count = self.lapics.len();
        self.platform = platform;
        self.kvm_pv = kvm_pv;
        self.heap_reserved = reserved;
        self.console = Console::new(
            &config.name,
            config.console_timestamps,
            config.console_rate,
            config.console_buffer,
            self.tsc_hz,
        );
        self.stopping = None;
        self.stop_rip = 0;
        self.vcpus_running = count;
        self.finished_stats = ExitStats::new();
        self.xstate_switches = 0;
        self.xstate_ticks = 0;
        self.inboxes = (0..count).map(|_| guest_apic::Inbox::default()).collect();
        self.apic_stats = guest_apic::RoutingStats::default();
        self.kvm_pv_counters = kvm_pv::PvCounters::default();
        self.kvm_calls = Default::default();
        Ok(boot)
    }
}

impl Vcpu {
    /// Step 2, on the CPU that holds this stopped vCPU: it starts again from `slot`'s boot
    /// state if the VM was rebuilt since it stopped. Returns whether it did.
    pub(super) fn restart_if_rebuilt(&mut self, slot: &VmSlot) -> bool {
        let epoch = slot.epoch.load(core::sync::atomic::Ordering::Acquire);
        if !matches!(self.state, State::Stopped(_)) || self.epoch == epoch {
            return false;
        }
        let boot = *slot.boot.lock();
        let resume = slot.resume.lock().clone();
        let mut vm = slot.vm.lock();
        match self.restart(&mut vm, &slot.config, &boot, resume.as_ref()) {
            Ok(()) => {
                self.epoch = epoch;
                true
            }
            Err(e) => {
                // It stays stopped: the VM ends when its last vCPU gives up.
                self.epoch = epoch;
                error!(
                    "vm {}: vcpu {} cannot start again: {e}",
                    vm.name, self.index
                );
                vm.vcpus_running = vm.vcpus_running.saturating_sub(1);
                if vm.vcpus_running == 0 {
                    scheduler::vm_finished();
                }
                false
            }
        }
    }

    fn restart(
        &mut self,
        vm: &mut Vm,
        config: &VmConfig,
        boot: &loader::BootState,
        resume: Option<&super::snapshot::Resume>,
    ) -> Result<(), String> {
        let (index, vpid) = (self.index, self.vpid);
        // VMCLEAR: launch state "clear", so the next entry is a VMLAUNCH (SDM Vol. 3C
        // §25.11.3); then the VMCS is written as at creation.
        self.vmcs
            .clear()
            .map_err(|e| alloc::format!("{}", CreateError::Setup(e.into())))?;
        vm.program_vmcs(&self.vmcs, &vm.vcpu_resources(index, vpid), boot)
            .map_err(|e| alloc::format!("{e}"))?;
        invalidate_vpid(&vm.caps, vpid);
        let vmcs = core::mem::replace(&mut self.vmcs, vmcs::Vmcs::placeholder());
        *self = vm.new_vcpu(config, boot, (index, vm.lapics.len()), vmcs, vpid);
        if let Some(r) = resume {
            let state = r
                .snapshot
                .vcpus
                .get(index)
                .ok_or_else(|| String::from("the snapshot has no state for this vCPU"))?;
            self.apply_snapshot(vm, state, r.restore_tsc)
                .map_err(|e| alloc::format!("its snapshot state is refused: {e}"))?;
            // The restored local APIC's mode decides the APIC-access controls and the MSR
            // bitmap (SDM Vol. 3C §30.1); its kvmclock record is rewritten for the new TSC
            // offset on the first entry.
            let mut x = VcpuExit { vm, vcpu: self };
            x.apic_mode_changed().map_err(String::from)?;
            x.kvm_pv_clock_changed();
        }
        vm.vcpu_sched[index] = kvm_hypercalls::Sched::after_slice(self);
        if self.pooled {
            scheduler::pool_vcpu_restarted();
        }
        Ok(())
    }
}

/// Drops every translation cached for `vpid` (SDM Vol. 3C §31.3 INVVPID): single-context
/// where the CPU has it, else all-context (every VPID but the host's).
fn invalidate_vpid(caps: &Capabilities, vpid: u16) {
    let ty = if caps.supports_invvpid(InvvpidType::SingleContext) {
        InvvpidType::SingleContext
    } else if caps.supports_invvpid(InvvpidType::AllContext) {
        InvvpidType::AllContext
    } else {
        return;
    };
    // SAFETY: VMX root operation is active; INVVPID only drops cached translations.
    if let Err(e) = unsafe { vmx::instructions::invvpid(ty, vpid, 0) } {
        warn!("INVVPID for VPID {vpid} failed: {e}");
    }
}
