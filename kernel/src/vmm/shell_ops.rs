//! What the hypervisor shell (kernel/src/shell.rs) reads from and does to the running VMs:
//! plain data for `vms` and `stats VM` (vm::shell::commands formats it), `stop VM`, and
//! console input for an attached VM. Each call takes one VM's lock for a bounded copy; it runs
//! on the console-draining CPU between slices, never in an exit handler.

use super::scheduler::{self, PendingStart, VmSlot};
use super::*;
use vm::shell::commands::{StatsView, VmRow, VmState};
use vm::shell::regs::Registers;
use vm::shell::top::Sample;
use vmx::fields::VmcsField;

/// Why a shell operation on a VM cannot be done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpError {
    /// The VM has stopped.
    Stopped,
    /// A stop was already decided.
    Stopping,
    /// The VM's UART has no room: try again after the guest has read.
    UartFull,
    NoSuchVm,
    NoSuchVcpu,
    /// `regs`: the vCPU has not had a slice yet.
    NotRunYet,
    /// `start`: the VM runs.
    Running,
    /// `start`/`restart`: one is pending already.
    StartPending,
    /// `start` of a clone: its snapshot is not held or does not fit.
    Clone(String),
}

impl fmt::Display for OpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let OpError::Clone(why) = self {
            return write!(f, "the clone cannot start: {why}");
        }
        f.write_str(match self {
            OpError::Clone(_) => "",
            OpError::Stopped => "the VM has stopped (its report was printed)",
            OpError::Stopping => "the VM is already stopping",
            OpError::UartFull => "the VM's UART is full",
            OpError::NoSuchVm => "no such VM",
            OpError::NoSuchVcpu => "no such vCPU (`vms` shows how many a VM has)",
            OpError::NotRunYet => "that vCPU has not run yet: try again in a moment",
            OpError::Running => "the VM is running (`restart VM` stops it and starts it again)",
            OpError::StartPending => "the VM is starting already",
        })
    }
}

/// The state `vms` and `stats` show: a stopped VM whose start is pending is starting.
fn shown_state(slot: &VmSlot, vm: &Vm) -> VmState {
    match state(vm) {
        VmState::Stopped if slot.pending_start().is_some() => VmState::Starting,
        s => s,
    }
}

fn slot(vm: usize) -> Result<&'static VmSlot, OpError> {
    scheduler::slots().get(vm).ok_or(OpError::NoSuchVm)
}

fn state(vm: &Vm) -> VmState {
    if vm.vcpus_running == 0 {
        VmState::Stopped
    } else if vm.stopping.is_some() {
        VmState::Stopping
    } else {
        VmState::Running
    }
}

fn uptime(vm: &Vm, now: u64) -> u64 {
    match vm.console.started() {
        0 => 0,
        t => now.saturating_sub(t),
    }
}

/// The TSC rate every tick count is in.
pub fn tsc_hz() -> u64 {
    scheduler::slots().first().map_or(1, |s| s.vm.lock().tsc_hz)
}

/// Every VM's name and vCPU count (what the parser resolves names against).
pub fn names() -> Vec<(String, usize)> {
    scheduler::slots()
        .iter()
        .map(|s| (s.vm.lock().name.clone(), s.vcpus.len()))
        .collect()
}

/// `vms`.
pub fn rows() -> Vec<VmRow> {
    let now = arch::rdtsc();
    scheduler::slots()
        .iter()
        .map(|s| {
            let vm = s.vm.lock();
            VmRow {
                name: vm.name.clone(),
                state: shown_state(s, &vm),
                vcpu_cpus: vm.vcpu_cpus.clone(),
                vcpus_running: vm.vcpus_running,
                memory_bytes: vm.memory.size(),
                uptime_ticks: uptime(&vm, now),
            }
        })
        .collect()
}

/// `stats VM`: the stopped vCPUs' counts plus each running vCPU's as of its last slice.
pub fn stats(vm: usize) -> Result<StatsView, OpError> {
    let slot = slot(vm)?;
    let now = arch::rdtsc();
    let (name, state, uptime_ticks, mut exits, console, mut devices) = {
        let vm = slot.vm.lock();
        let devices = alloc::vec![
            alloc::format!(
                "device work: rounds={} ticks={}",
                vm.platform.virtio.work.rounds,
                vm.platform.virtio.work.ticks
            ),
            alloc::format!("memory: {}", vm.memory.summary()),
        ];
        (
            vm.name.clone(),
            shown_state(slot, &vm),
            uptime(&vm, now),
            vm.finished_stats.clone(),
            vm.console.summary(),
            devices,
        )
    };
    for live in &slot.live {
        if let Some(s) = live.lock().as_ref() {
            exits.merge(s);
        }
    }
    devices.extend(slot.vm.lock().platform.virtio.report());
    Ok(StatsView {
        name,
        state,
        uptime_ticks,
        exits,
        console,
        devices,
    })
}

/// What `stop VM` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// Its vCPUs are stopping; the last one prints the report.
    Stopping,
    /// It had stopped at its guest's reboot and waited to start again: it stays stopped.
    RebootCancelled,
}

/// `stop VM`: the VM's vCPUs stop at their next exit or wake-up check (they are kicked out of
/// the guest), the last one prints the VM's report. A VM waiting to start again after its
/// guest's reboot (`on-reboot = "restart"`, paced by vm::reboot) stays stopped instead, so a
/// guest that reboots in a loop can always be stopped.
pub fn stop(vm: usize) -> Result<Stopped, OpError> {
    let slot = slot(vm)?;
    let mut vm = slot.vm.lock();
    match shown_state(slot, &vm) {
        VmState::Starting => {
            let mut pending = slot.pending_start.lock();
            if *pending != Some(PendingStart::Reboot) {
                // The operator's own `start`/`restart` is under way.
                return Err(OpError::StartPending);
            }
            // The shell's pass serves starts on this CPU before its commands: none is under
            // way. The start no longer counts the VM as running.
            *pending = None;
            scheduler::vm_finished();
            return Ok(Stopped::RebootCancelled);
        }
        VmState::Stopped => return Err(OpError::Stopped),
        VmState::Stopping => return Err(OpError::Stopping),
        VmState::Running => {}
    }
    vm.stopping = Some(StopReason::Operator);
    vm.kick_other_cpus();
    Ok(Stopped::Stopping)
}

/// `start VM`: a stopped VM is built again from its configuration and started (restart.rs),
/// at the shell's next pass ([`service_starts`]).
pub fn start(vm: usize) -> Result<(), OpError> {
    let slot = slot(vm)?;
    if slot.config.from_snapshot().is_some() {
        // A clone starts from its snapshot, which must be held and fit it.
        return super::snapshot::start_clone(slot).map_err(|e| match e {
            super::snapshot::SnapshotError::NotStopped => OpError::Running,
            super::snapshot::SnapshotError::StartPending => OpError::StartPending,
            e => OpError::Clone(alloc::format!("{e}")),
        });
    }
    let vm = slot.vm.lock();
    let mut pending = slot.pending_start.lock();
    if pending.is_some() {
        return Err(OpError::StartPending);
    }
    if state(&vm) != VmState::Stopped {
        return Err(OpError::Running);
    }
    // It counts as running from now, so the run does not end before it starts.
    scheduler::vm_starting();
    *pending = Some(PendingStart::Operator);
    Ok(())
}

/// `restart VM`: a running VM is stopped (its report printed) and started again from its
/// configuration; a stopped one is started.
pub fn restart(vm: usize) -> Result<(), OpError> {
    let slot = slot(vm)?;
    let mut vm = slot.vm.lock();
    let mut pending = slot.pending_start.lock();
    if pending.is_some() {
        return Err(OpError::StartPending);
    }
    // Counted as running before its last vCPU can stop (under the VM's lock), so the run
    // does not end in between.
    scheduler::vm_starting();
    *pending = Some(PendingStart::Operator);
    drop(pending);
    if state(&vm) == VmState::Running {
        vm.stopping = Some(StopReason::OperatorRestart);
        vm.kick_other_cpus();
    }
    Ok(())
}

/// What [`service_starts`] did for one VM.
#[derive(Debug)]
pub enum Started {
    /// Built again; `reboot`: for the guest's own reboot, not an operator's command;
    /// `from_snapshot`: restored (`restore`), not booted from its configuration.
    Started {
        name: String,
        vcpus: usize,
        reboot: bool,
        from_snapshot: bool,
    },
    Failed {
        name: String,
        error: String,
        reboot: bool,
    },
}

/// Builds again the VMs a `start` or `restart` waits for, once all their vCPUs have stopped
/// and their drives finished (restart.rs). Runs in the shell's pass on the console-draining
/// CPU; a rebuild zeroes the VM's RAM and loads its image, bounded by the VM's own size.
pub fn service_starts() -> Vec<Started> {
    let mut done = Vec::new();
    let Some(archive) = scheduler::archive() else {
        return done;
    };
    for slot in scheduler::slots() {
        let Some(cause) = slot.pending_start() else {
            continue;
        };
        let reboot = cause == PendingStart::Reboot;
        let name = slot.config.name.clone();
        let start = arch::rdtsc();
        // A guest's reboots are paced (vm::reboot): its rebuilds, which run here and not in
        // its own time slices, get a bounded share of this CPU.
        if reboot && !slot.reboot_pacing.lock().allows(start) {
            continue;
        }
        let from_snapshot = slot.restore_from.lock().is_some();
        let result = super::restart::rebuild(slot, archive);
        if let (true, Ok(ticks)) = (reboot, &result) {
            slot.reboot_pacing
                .lock()
                .rebuilt(start, start.saturating_add(*ticks));
        }
        match result {
            Ok(_) => done.push(Started::Started {
                name,
                vcpus: slot.vcpus.len(),
                reboot,
                from_snapshot,
            }),
            // Still stopping, or a drive transfer in flight: the next pass looks again.
            Err(
                super::restart::RestartError::NotStopped | super::restart::RestartError::DriveBusy,
            ) => continue,
            Err(e) => {
                // Its start is given up: it no longer counts as running.
                scheduler::vm_finished();
                done.push(Started::Failed {
                    name,
                    error: alloc::format!("{e}"),
                    reboot,
                });
            }
        }
        *slot.pending_start.lock() = None;
    }
    done
}

/// A byte typed while attached to `vm` (`console VM`): into its UART's receive FIFO, whose
/// interrupt the VM's vCPUs take at their next entry (they are kicked out of the guest).
pub fn console_input(vm: usize, byte: u8) -> Result<(), OpError> {
    let mut vm = slot(vm)?.vm.lock();
    if state(&vm) == VmState::Stopped {
        return Err(OpError::Stopped);
    }
    if vm.platform.uart_receive(&[byte], arch::rdtsc()) == 0 {
        return Err(OpError::UartFull);
    }
    vm.kick_other_cpus();
    Ok(())
}

/// The shell's terminal is attached to `vm` (`console VM`), or no longer.
pub fn set_attached(vm: usize, attached: bool) {
    if let Ok(slot) = slot(vm) {
        slot.vm.lock().console.set_attached(attached);
    }
}

/// Shows `vm`'s unfinished console line on the terminal (the shell's pass while attached) if
/// it changed since `*seen` (its console's byte count, updated): a guest's echo appears as it
/// is typed, before the guest ends the line.
pub fn show_unfinished(vm: usize, seen: &mut Option<u64>) {
    let Ok(slot) = slot(vm) else { return };
    let mut vm = slot.vm.lock();
    let written = vm.console.written();
    if *seen == Some(written) {
        return;
    }
    if vm.console.show_unfinished() {
        *seen = Some(written);
    }
}

/// Whether `vm` has stopped.
pub fn stopped(vm: usize) -> bool {
    slot(vm).map_or(true, |s| s.vm.lock().vcpus_running == 0)
}

/// A vCPU's registers and scheduling state after one of its slices (`regs VM VCPU`).
#[derive(Debug, Clone, Copy)]
pub struct RegsSnapshot {
    pub regs: Registers,
    pub state: &'static str,
    pub cpu: Option<usize>,
}

/// Copies `vcpu`'s registers from its VMCS, on its own CPU right after its slice: None when
/// its VMCS is not the current one here (it never ran, or its load failed).
pub(super) fn capture(vcpu: &Vcpu) -> Option<RegsSnapshot> {
    if !vcpu.entered || !vcpu.vmcs.is_current() {
        return None;
    }
    let g = &vcpu.regs;
    let read = |f: VmcsField| vmcs::read(f).unwrap_or(0);
    // SDM Vol. 3C §25.4.1: RSP, RIP, RFLAGS, CR0/CR3/CR4, the selectors and (with the
    // "load IA32_EFER" entry control) EFER are in the guest-state area; the other GPRs and
    // CR2 are saved by the exit path (entry.rs).
    let regs = Registers {
        gprs: [
            g.rax,
            g.rbx,
            g.rcx,
            g.rdx,
            g.rsi,
            g.rdi,
            g.rbp,
            read(VmcsField::GUEST_RSP),
            g.r8,
            g.r9,
            g.r10,
            g.r11,
            g.r12,
            g.r13,
            g.r14,
            g.r15,
        ],
        rip: read(VmcsField::GUEST_RIP),
        rflags: read(VmcsField::GUEST_RFLAGS),
        cr0: read(VmcsField::GUEST_CR0),
        cr2: g.cr2,
        cr3: read(VmcsField::GUEST_CR3),
        cr4: read(VmcsField::GUEST_CR4),
        efer: read(VmcsField::GUEST_IA32_EFER),
        selectors: [
            VmcsField::GUEST_CS_SELECTOR,
            VmcsField::GUEST_SS_SELECTOR,
            VmcsField::GUEST_DS_SELECTOR,
            VmcsField::GUEST_ES_SELECTOR,
            VmcsField::GUEST_FS_SELECTOR,
            VmcsField::GUEST_GS_SELECTOR,
            VmcsField::GUEST_LDTR_SELECTOR,
            VmcsField::GUEST_TR_SELECTOR,
        ]
        .map(|f| read(f) as u16),
        at: arch::rdtsc(),
    };
    let state = match vcpu.state {
        State::Runnable => "runnable",
        State::Halted => "halted",
        State::WaitForSipi => "waiting for a start-up IPI",
        State::Stopped(_) => "stopped",
    };
    Some(RegsSnapshot {
        regs,
        state,
        cpu: vcpu.last_cpu,
    })
}

/// `regs VM VCPU`: the registers its own CPU copied after its last slice.
pub fn regs(vm: usize, vcpu: usize) -> Result<RegsSnapshot, OpError> {
    slot(vm)?
        .regs
        .get(vcpu)
        .ok_or(OpError::NoSuchVcpu)?
        .lock()
        .ok_or(OpError::NotRunYet)
}

/// `top`: every VM's exit statistics now.
pub fn samples() -> Vec<Sample> {
    (0..scheduler::slots().len())
        .filter_map(|i| stats(i).ok())
        .map(|v| Sample {
            name: v.name,
            exits: v.exits,
            at: arch::rdtsc(),
        })
        .collect()
}
