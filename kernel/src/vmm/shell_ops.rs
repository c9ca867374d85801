//! What the hypervisor shell (kernel/src/shell.rs) reads from and does to the running VMs:
//! plain data for `vms` and `stats VM` (vm::shell::commands formats it), `stop VM`, and
//! console input for an attached VM. Each call takes one VM's lock for a bounded copy; it runs
//! on the console-draining CPU between slices, never in an exit handler.

use super::scheduler::{self, VmSlot};
use super::*;
use vm::shell::commands::{StatsView, VmRow, VmState};

/// Why a shell operation on a VM cannot be done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpError {
    /// The VM has stopped.
    Stopped,
    /// A stop was already decided.
    Stopping,
    /// The VM's UART has no room: try again after the guest has read.
    UartFull,
    NoSuchVm,
}

impl fmt::Display for OpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OpError::Stopped => "the VM has stopped (its report was printed)",
            OpError::Stopping => "the VM is already stopping",
            OpError::UartFull => "the VM's UART is full",
            OpError::NoSuchVm => "no such VM",
        })
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
                state: state(&vm),
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
        let devices = alloc::vec![alloc::format!(
            "device work: rounds={} ticks={}",
            vm.platform.virtio.work.rounds,
            vm.platform.virtio.work.ticks
        )];
        (
            vm.name.clone(),
            state(&vm),
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

/// `stop VM`: the VM's vCPUs stop at their next exit or wake-up check (they are kicked out of
/// the guest), the last one prints the VM's report.
pub fn stop(vm: usize) -> Result<(), OpError> {
    let mut vm = slot(vm)?.vm.lock();
    match state(&vm) {
        VmState::Stopped => return Err(OpError::Stopped),
        VmState::Stopping => return Err(OpError::Stopping),
        VmState::Running => {}
    }
    vm.stopping = Some(StopReason::Operator);
    vm.kick_other_cpus();
    Ok(())
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

/// Whether `vm` has stopped.
pub fn stopped(vm: usize) -> bool {
    slot(vm).map_or(true, |s| s.vm.lock().vcpus_running == 0)
}
