//! Stopping a vCPU and its VM: a stop reason on the boot vCPU, or a fault on any vCPU, ends
//! the whole VM (the other vCPUs stop at their next exit; ones in the guest on other CPUs are
//! kicked out of it by IPI); a secondary vCPU that halts for good only parks itself. The last
//! vCPU out prints the VM's report: the stop reason, the statistics of every vCPU summed (and
//! each vCPU's own for a VM with several), console, memory and device counters.

use super::*;

impl VcpuExit<'_> {
    /// A halted vCPU that nothing can ever wake: it stops (and with it the VM, for vCPU 0).
    /// Its VMCS must be current.
    pub(super) fn halt_forever(&mut self) {
        self.stop(StopReason::HaltedWithoutInterruptSource);
    }

    /// Stops this vCPU (its VMCS is current) for `reason`.
    pub(super) fn stop(&mut self, reason: StopReason) {
        if matches!(self.vcpu.state, State::Stopped(_)) {
            return;
        }
        self.vcpu.state = State::Stopped(reason);
        let me = self.vcpu.index;
        self.vm.vcpu_sched[me] = super::kvm_hypercalls::Sched::Stopped;
        if self.vcpu.pooled {
            scheduler::pool_vcpu_stopped();
        }
        if matches!(
            reason,
            StopReason::EntryFailure { .. } | StopReason::EntryInstructionFailed { .. }
        ) {
            vmcs::dump(&self.vm.name);
        }
        let rip = vmcs::read(F::GUEST_RIP).unwrap_or(0);
        if self.vm.stopping.is_none() && (self.vcpu.stops_vm(reason) || self.vm.vcpus_running == 1)
        {
            self.vm.stopping = Some(reason);
            self.vm.stop_rip = rip;
            // The VM's other vCPUs may be in the guest on other CPUs: kick them out so they
            // see `stopping` at once.
            self.vm.kick_other_cpus();
        } else if self.vm.stop_rip == 0 {
            // The operator (or another vCPU's kick) decided: the report names where the first
            // vCPU out was.
            self.vm.stop_rip = rip;
        }
        self.vcpu.stats.unclaimed_port_accesses = self.vm.platform.unclaimed_port_accesses();
        if self.vm.vcpu_cpus.len() > 1 {
            let name = &self.vm.name;
            let n = self.vcpu.index;
            info!("vm {name}: vcpu {n} stopped: {reason} (RIP {rip:#x})");
            for line in alloc::format!("{}", self.vcpu.stats).lines() {
                info!("vm {name}: vcpu {n} {line}");
            }
        }
        let stats = core::mem::take(&mut self.vcpu.stats);
        self.vm.finished_stats.merge(&stats);
        let x = &self.vcpu.xstate;
        self.vm.xstate_switches += x.switches;
        self.vm.xstate_ticks += x.ticks;
        self.vm.vcpus_running = self.vm.vcpus_running.saturating_sub(1);
        if self.vm.vcpus_running == 0 {
            let (xsave, xcr0) = (x.xsave(), x.xcr0);
            self.vm.report(reason, xsave, xcr0);
            if self.vm.stopping.unwrap_or(reason) == StopReason::AcpiReset {
                super::restart::restart_after_reboot(&self.vm.name);
            }
            scheduler::vm_finished();
        }
    }
}

impl Vm {
    /// The VM's report, printed when its last vCPU stopped (`last` is that vCPU's reason;
    /// the VM's own is the one that stopped it, with its RIP).
    fn report(&mut self, last: StopReason, xsave: bool, xcr0: u64) {
        let reason = self.stopping.unwrap_or(last);
        let rip = self.stop_rip;
        let name = self.name.clone();
        self.console.flush();
        let ran = arch::rdtsc().saturating_sub(self.console.started());
        info!("vm {name}: stopped: {reason} (RIP {rip:#x}) after {ran} ticks");
        for line in alloc::format!("{}", self.finished_stats).lines() {
            info!("vm {name}: {line}");
        }
        info!("vm {name}: console: {}", self.console.summary());
        info!(
            "vm {name}: extended state: {} xcr0={xcr0:#x} switches={} ticks={} avg={}",
            if xsave { "xsave" } else { "fxsave" },
            self.xstate_switches,
            self.xstate_ticks,
            self.xstate_ticks
                .checked_div(self.xstate_switches)
                .unwrap_or(0)
        );
        info!("vm {name}: memory: {}", self.memory.summary());
        let lines = self.platform.irq_lines();
        info!(
            "vm {name}: interrupts: routed={} kicks={} dropped={} double-routed={} ioapic-queue-overflows={}",
            self.apic_stats.messages,
            self.apic_stats.kicks,
            self.apic_stats.dropped,
            lines.double_routed,
            lines.overflowed
        );
        if self.kvm_calls.any() {
            info!("vm {name}: {}", self.kvm_calls);
        }
        info!(
            "vm {name}: device work: rounds={} ticks={}",
            self.platform.virtio.work.rounds, self.platform.virtio.work.ticks
        );
        for line in self.platform.virtio.report() {
            info!("vm {name}: {line}");
        }
        self.kvm_pv_report();
    }
}
