//! Running a vCPU for a time slice: the loop around VM entry, interrupt injection, applying
//! a handler's action (event re-delivery included), switching per-VM state, stopping.

use super::*;

/// CR0.PE (SDM Vol. 3A §2.5).
const CR0_PE: u64 = 1 << 0;
/// RFLAGS.RF (SDM Vol. 3A §2.3).
const RFLAGS_RF: u64 = 1 << 16;

/// Programs the VM-entry event-injection fields for `event` (SDM Vol. 3C §25.8.3), without
/// an error code while the guest is in real mode (SDM Vol. 3C §27.2.1.3).
fn write_injection(event: &Injection) {
    let protected = vmcs::read_exit(F::GUEST_CR0) & CR0_PE != 0;
    let event = &event.for_mode(protected);
    let _ = vmcs::write_guest(
        vmcs::guest_field!(VM_ENTRY_INTERRUPTION_INFO),
        u64::from(event.info.raw()),
    );
    if let Some(code) = event.error_code {
        let _ = vmcs::write_guest(
            vmcs::guest_field!(VM_ENTRY_EXCEPTION_ERROR_CODE),
            u64::from(code),
        );
    }
    if let Some(len) = event.instruction_length {
        let _ = vmcs::write_guest(
            vmcs::guest_field!(VM_ENTRY_INSTRUCTION_LENGTH),
            u64::from(len),
        );
    }
}

impl Vm {
    /// When this slice ends: its time is up, or a halted VM's device fires.
    pub(super) fn slice_deadline(&self) -> u64 {
        self.slice_end.min(self.wake_others_at)
    }

    /// Delivers the next interrupt if the guest can take it now (RFLAGS.IF = 1, no STI/MOV-SS
    /// blocking, no event already being injected: SDM Vol. 3C §27.6.1 and §26.8), otherwise
    /// asks for an exit when the window opens (interrupt-window exiting, §26.7.5). An
    /// interrupt deferred behind an exception (see [`Vcpu::deferred_event`]) goes first, then
    /// the PIC's.
    pub(super) fn inject_pending_interrupt(&mut self) {
        if self.vcpu.deferred_event.is_none() && self.platform.pending_vector().is_none() {
            return;
        }
        let injecting = vmcs::read_exit(F::VM_ENTRY_INTERRUPTION_INFO) & (1 << 31) != 0;
        if injecting {
            return;
        }
        let rflags = vmcs::read_exit(F::GUEST_RFLAGS);
        let blocking = vmcs::read_exit(F::GUEST_INTERRUPTIBILITY_STATE) & 0b11;
        if rflags & (1 << 9) == 0 || blocking != 0 {
            let _ = setup::set_interrupt_window_exiting(&mut self.vcpu.controls, true);
            return;
        }
        let event = match self.vcpu.deferred_event.take() {
            Some(event) => Some(event),
            None => self.platform.acknowledge().map(|vector| Injection {
                info: InterruptionInfo::new_external_interrupt(vector),
                error_code: None,
                instruction_length: None,
            }),
        };
        if let Some(event) = event {
            write_injection(&event);
            self.stats.interrupts_injected += 1;
            // A halted guest resumes at the instruction after HLT (activity state active).
            let _ = vmcs::write_guest(vmcs::guest_field!(GUEST_ACTIVITY_STATE), 0);
        }
    }

    /// Makes this VM's MSR, FPU and debug-register values live before it runs.
    pub(super) fn switch_in(&mut self) {
        self.platform.load_msrs();
        self.vcpu.xstate.restore();
        self.vcpu.debug.restore();
    }

    /// Saves what `switch_in` made live after the VM ran.
    pub(super) fn switch_out(&mut self) {
        self.platform.save_msrs();
        self.vcpu.xstate.save();
        self.vcpu.debug.save();
    }

    /// A halted vCPU that nothing can ever wake: its VM is stopped.
    pub(super) fn halt_forever(&mut self) {
        if let Err(e) = self.vcpu.vmcs.load() {
            error!("vm {}: {e}", self.name);
        }
        self.stop(StopReason::HaltedWithoutInterruptSource);
    }

    pub(super) fn stop(&mut self, reason: StopReason) {
        self.vcpu.state = State::Stopped(reason);
        if matches!(
            reason,
            StopReason::EntryFailure { .. } | StopReason::EntryInstructionFailed { .. }
        ) {
            vmcs::dump(&self.name);
        }
        self.stats.unclaimed_port_accesses = self.platform.unclaimed_port_accesses();
        let rip = vmcs::read(F::GUEST_RIP).unwrap_or(0);
        self.console.flush();
        let ran = arch::rdtsc().saturating_sub(self.console.started());
        info!(
            "vm {}: stopped: {reason} (RIP {rip:#x}) after {ran} ticks",
            self.name
        );
        for line in alloc::format!("{}", self.stats).lines() {
            info!("vm {}: {line}", self.name);
        }
        info!("vm {}: console: {}", self.name, self.console.summary());
        let x = &self.vcpu.xstate;
        info!(
            "vm {}: extended state: {} xcr0={:#x} switches={} ticks={} avg={}",
            self.name,
            if x.xsave() { "xsave" } else { "fxsave" },
            x.xcr0,
            x.switches,
            x.ticks,
            x.ticks.checked_div(x.switches).unwrap_or(0)
        );
        info!(
            "vm {}: memory: released-pages={} faulted-in={}",
            self.name, self.memory.released, self.memory.faulted_in
        );
        info!(
            "vm {}: device work: rounds={} ticks={}",
            self.name, self.platform.virtio.work.rounds, self.platform.virtio.work.ticks
        );
        for line in self.platform.virtio.report() {
            info!("vm {}: {line}", self.name);
        }
    }

    /// Applies a handler's action to the VMCS; returns whether the vCPU keeps running. An
    /// event whose delivery the exit interrupted is delivered again on the next entry (SDM Vol.
    /// 3C §28.2.4), combined with an exception the handler raises as the CPU would (SDM Vol. 3A
    /// §6.15 Table 6-5).
    pub(super) fn apply(&mut self, action: Action, info: &ExitInfo) -> bool {
        let advance = |len: u64| {
            let _ = vmcs::write_guest(vmcs::guest_field!(GUEST_RIP), info.rip.wrapping_add(len));
            // Skipping an instruction ends STI/MOV-SS blocking (SDM Vol. 3C §25.4.2).
            let state = vmcs::read_exit(F::GUEST_INTERRUPTIBILITY_STATE);
            if state & 0b11 != 0 {
                let _ = vmcs::write_guest(
                    vmcs::guest_field!(GUEST_INTERRUPTIBILITY_STATE),
                    state & !0b11,
                );
            }
        };
        let mut reinject = info.interrupted;
        let keep_running = match action {
            Action::Resume => true,
            Action::Advance => {
                advance(info.instruction_length);
                true
            }
            Action::Inject { vector, error_code } => {
                let new = Injection::exception(vector, error_code);
                let now = match reinject
                    .take()
                    .map(|pending| vmx::event::combine(pending, new))
                {
                    None => new,
                    Some(Combined::Inject { now, deferred }) => {
                        self.vcpu.deferred_event = deferred.or(self.vcpu.deferred_event);
                        now
                    }
                    Some(Combined::TripleFault) => {
                        self.stop(StopReason::TripleFault);
                        return false;
                    }
                };
                // The fault's RFLAGS image has RF = 1 (SDM Vol. 3A §18.3.1.1); VM entry pushes
                // the guest-state RFLAGS (SDM Vol. 3C §27.6.1.2). A real-mode delivery pushes
                // only FLAGS[15:0], which has no RF (SDM Vol. 3A §21.1.4).
                if now.sets_rf() && vmcs::read_exit(F::GUEST_CR0) & CR0_PE != 0 {
                    let rflags = vmcs::read_exit(F::GUEST_RFLAGS);
                    let _ = vmcs::write_guest(vmcs::guest_field!(GUEST_RFLAGS), rflags | RFLAGS_RF);
                }
                write_injection(&now);
                self.stats.exceptions_injected += 1;
                true
            }
            Action::InjectSoftware { vector } => {
                // SDM Vol. 3C §27.6.1.1: software exceptions need the instruction length.
                write_injection(&Injection {
                    info: InterruptionInfo::new_software_exception(vector),
                    error_code: None,
                    instruction_length: Some(info.instruction_length as u32),
                });
                self.stats.exceptions_injected += 1;
                true
            }
            Action::Halt => {
                advance(info.instruction_length);
                // An idle vCPU is the moment to do the I/O it queued (one bounded round; the
                // scheduler continues the rest while the vCPU sleeps).
                self.platform
                    .device_work(&mut self.memory, &mut self.console);
                self.vcpu.state = State::Halted;
                false
            }
            Action::Yield => {
                if info.reason.reason != ExitReason::PreemptionTimerExpired {
                    advance(info.instruction_length);
                }
                false
            }
            Action::Stop(reason) => {
                self.stop(reason);
                return false;
            }
        };
        if let Some(event) = reinject {
            write_injection(&event);
            self.stats.events_reinjected += 1;
            if self.vcpu.state == State::Halted {
                self.vcpu.state = State::Runnable;
            }
        }
        keep_running
    }

    /// Runs the vCPU for up to one time slice: device timers are brought up to date and
    /// pending interrupts injected before every entry; the VMX-preemption timer is armed for
    /// the earlier of the next device deadline and the end of the slice (SDM Vol. 3C §26.5.1:
    /// it counts down at the TSC rate >> IA32_VMX_MISC[4:0]).
    ///
    /// Returns whether the slice was cut short for a halted VM's wake-up: the rest of the
    /// slice is then kept in `slice_left`, so another VM's timers never cost this one its time.
    pub(super) fn run_slice(&mut self, timeslice: u64, wake_others_at: u64) -> bool {
        if let Err(e) = self.vcpu.vmcs.load() {
            self.stop(StopReason::Bug("VMPTRLD failed"));
            error!("vm {}: {e}", self.name);
            return false;
        }
        let preemption = self
            .vcpu
            .controls
            .pin
            .contains(PinBasedControls::ACTIVATE_VMX_PREEMPTION_TIMER);
        let rate = self.caps.preemption_timer_rate();
        self.switch_in();
        let budget = self.slice_left.take().unwrap_or(timeslice);
        self.slice_end = arch::rdtsc().saturating_add(budget);
        self.wake_others_at = wake_others_at;
        loop {
            let now = arch::rdtsc();
            crate::serial::pump_if_due(now);
            if self.platform.virtio.work_due().is_some_and(|d| now >= d) {
                self.platform
                    .device_work(&mut self.memory, &mut self.console);
            }
            self.platform.tick(now);
            self.inject_pending_interrupt();
            if preemption {
                // Queued console output gets the UART's next FIFO slot on time, like a
                // transmit interrupt would.
                let slice_end = self
                    .slice_deadline()
                    .min(self.platform.virtio.work_due().unwrap_or(u64::MAX))
                    .min(crate::serial::next_pump().unwrap_or(u64::MAX));
                // A guest may program its PIT for a 1-tick period; a floor on device deadlines
                // (10 µs) keeps that from turning into an exit storm. Coalesced ticks are
                // delivered as one interrupt, as the PIT model already does for missed ones.
                let floor = now.saturating_add(self.min_timer_ticks);
                let deadline = self
                    .platform
                    .next_wake()
                    .map_or(slice_end, |d| d.max(floor).min(slice_end));
                let ticks = (deadline.saturating_sub(now) >> rate).clamp(1, u64::from(u32::MAX));
                let _ = vmcs::write_guest(vmcs::guest_field!(VMX_PREEMPTION_TIMER_VALUE), ticks);
            }
            if !self.vcpu.launched {
                self.console.start();
                info!("vm {}: first VM entry", self.name);
            }
            // SAFETY: this VM's VMCS is current (loaded above) with complete host and guest
            // state, and `launched` tracks VMLAUNCH for it.
            let result = unsafe { entry::enter(&mut self.vcpu.regs, self.vcpu.launched) };
            let exited_at = arch::rdtsc();
            if let Err(rflags) = result {
                let error = vmcs::read(F::VM_INSTRUCTION_ERROR).unwrap_or(0);
                self.stop(StopReason::EntryInstructionFailed { rflags, error });
                break;
            }
            self.vcpu.launched = true;
            let info = ExitInfo::read();
            let action = exits::dispatch(self, &info);
            // Recorded before the action is applied, so a stopping VM's report includes it.
            self.stats
                .record(info.reason.reason.number(), arch::rdtsc() - exited_at);
            if !self.apply(action, &info) {
                break;
            }
            if !preemption && arch::rdtsc() > self.slice_deadline() {
                break;
            }
        }
        self.switch_out();
        let now = arch::rdtsc();
        let cut_for_wakeup = self.vcpu.state == State::Runnable
            && now >= self.wake_others_at
            && now < self.slice_end;
        if cut_for_wakeup {
            self.slice_left = Some(self.slice_end - now);
        }
        cut_for_wakeup
    }
}
