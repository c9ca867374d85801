//! The scheduler: every VM's vCPU round-robin on this CPU, halted vCPUs woken by their
//! devices, the console drained while idle.

use super::*;

/// Creates every configured VM and runs them round-robin until all have stopped. Returns how
/// many VMs were created and how many could not be.
pub fn run(
    caps: &Capabilities,
    archive: &Archive<'static>,
    config: &Config,
    tsc_hz: u64,
) -> (usize, usize) {
    let mut vms: Vec<Vm> = Vec::new();
    let mut failed = 0;
    for (i, vc) in config.vms.iter().enumerate() {
        match Vm::create(i, vc, archive, caps, tsc_hz) {
            Ok(vm) => vms.push(vm),
            Err(e) => {
                error!("vm {}: not started: {e}", vc.name);
                failed += 1;
            }
        }
    }
    let created = vms.len();
    let timeslice = config.hypervisor.timeslice;
    // A halted VM's timer may cut another VM's slice at most this often (100 µs): the PIT
    // model coalesces the ticks in between into one interrupt, as for any missed tick.
    let min_wake = tsc_hz / 10_000;
    let mut next = 0;
    // The VM whose slice was cut for a wake-up: it resumes after the woken VM.
    let mut resume: Option<usize> = None;
    while !vms
        .iter()
        .all(|v| matches!(v.vcpu.state, State::Stopped(_)))
    {
        crate::serial::pump_if_due(arch::rdtsc());
        // Block drivers complete their requests here, a bounded step each, never in an exit.
        crate::drivers::poll();
        // Halted vCPUs wake when their devices raise an interrupt; one that no device can
        // interrupt any more (every line masked, no timer) never wakes: its VM is stopped.
        let now = arch::rdtsc();
        for vm in vms.iter_mut().filter(|v| v.vcpu.state == State::Halted) {
            // Device work a sleeping vCPU waits for: one bounded round per pass, counted for
            // its VM, with the other VMs' slices in between.
            if vm.platform.virtio.work_due().is_some_and(|d| now >= d) {
                vm.platform.device_work(&mut vm.memory, &mut vm.console);
            }
            vm.platform.tick(now);
            if vm.platform.pending_vector().is_some() || vm.vcpu.deferred_event.is_some() {
                vm.vcpu.state = State::Runnable;
            } else if !vm.platform.can_wake() {
                vm.halt_forever();
            }
        }
        let runnable = (0..vms.len())
            .map(|k| (next + k) % vms.len())
            .find(|&i| vms[i].vcpu.state == State::Runnable);
        if let Some(i) = runnable {
            let wake_others_at = vms
                .iter()
                .filter(|v| v.vcpu.state == State::Halted)
                .filter_map(|v| v.platform.next_wake())
                .min()
                .map_or(u64::MAX, |d| d.max(now.saturating_add(min_wake)));
            let cut = vms[i].run_slice(timeslice, wake_others_at);
            next = if cut {
                resume = Some(i);
                i + 1
            } else {
                match resume.take() {
                    Some(r) if r != i => r,
                    _ => i + 1,
                }
            };
            continue;
        }
        // Everyone left is halted: wait for the earliest device deadline; without one
        // nothing can ever wake them.
        let deadline = vms
            .iter()
            .filter(|v| v.vcpu.state == State::Halted)
            .filter_map(|v| v.platform.next_wake())
            .min();
        match deadline {
            Some(d) => {
                // Idle: the time to drain the console.
                loop {
                    let now = arch::rdtsc();
                    if now >= d {
                        break;
                    }
                    crate::serial::pump_if_due(now);
                    core::hint::spin_loop();
                }
            }
            None => {
                for vm in vms.iter_mut().filter(|v| v.vcpu.state == State::Halted) {
                    vm.halt_forever();
                }
            }
        }
    }
    let (size, high_water) = memory::heap_size_and_high_water();
    info!(
        "heap: {} KiB, high-water {} KiB, reserved for guest-driven growth {} KiB",
        size / 1024,
        high_water / 1024,
        memory::heap_reserved() / 1024
    );
    (created, failed)
}
