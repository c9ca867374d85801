//! Running a vCPU for a time slice: the loop around VM entry (the VM's lock held from each
//! exit to the next entry), applying a handler's action (event re-delivery included),
//! switching per-vCPU state, the EPT shootdown. Injection is in inject.rs, stopping in stop.rs.

use super::guest_apic::Signal;
use super::inject::{write_injection, CR0_PE};

use super::*;

/// RFLAGS.RF (SDM Vol. 3A §2.3).
const RFLAGS_RF: u64 = 1 << 16;

impl Vm {
    /// One bounded round of the VM's queued device work.
    pub(super) fn device_work(&mut self) {
        self.platform
            .device_work(&mut self.memory, &mut self.console);
    }
}

/// The earlier of two optional deadlines.
pub(super) fn min_deadline(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

impl VcpuExit<'_> {
    /// A start-up IPI for this vCPU, waiting after INIT (its VMCS is current): the real-mode
    /// start state at `vector << 12` (SDM Vol. 3A §9.4.4.1), general registers cleared.
    pub(super) fn start_up(&mut self, vector: u8) -> Result<(), &'static str> {
        setup::write_startup_state(&self.vm.caps, vector, self.vm.platform.cr4_reserved())
            .map_err(|_| "writing the start-up state failed")?;
        setup::set_ia32e_mode_guest(&mut self.vcpu.controls, false)
            .map_err(|_| "VMWRITE of the entry controls failed")?;
        let _ = setup::set_interrupt_window_exiting(&mut self.vcpu.controls, false);
        let _ = vmcs::write_guest(vmcs::guest_field!(VM_ENTRY_INTERRUPTION_INFO), 0);
        self.vcpu.regs = GuestRegs::default();
        self.vcpu.deferred_event = None;
        self.vcpu.halted_irqs_off = false;
        self.vcpu.pv_unhalted = false;
        self.vcpu.state = State::Runnable;
        self.vcpu.stats.startups += 1;
        Ok(())
    }

    /// Makes this vCPU's MSR, extended-state and debug-register values live before it runs.
    pub(super) fn switch_in(&mut self) {
        self.vm.platform.load_msrs(&self.vcpu.msr_state);
        self.vcpu.xstate.restore();
        self.vcpu.debug.restore();
    }

    /// Saves what `switch_in` made live after the VM ran.
    pub(super) fn switch_out(&mut self) {
        Platform::save_msrs(&mut self.vcpu.msr_state);
        self.vcpu.xstate.save();
        self.vcpu.debug.save();
    }

    /// Applies a handler's action to the VMCS; returns whether the vCPU keeps running. An
    /// event whose delivery the exit interrupted is delivered again on the next entry (SDM Vol.
    /// 3C §28.2.4), combined with an exception the handler raises as the CPU would (SDM Vol. 3A
    /// §6.15 Table 6-5).
    pub(super) fn apply(&mut self, action: Action, info: &ExitInfo) -> bool {
        let advance = |len: u64| advance_rip(info.rip, len);
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
                self.vcpu.stats.exceptions_injected += 1;
                true
            }
            Action::InjectSoftware { vector } => {
                // SDM Vol. 3C §27.6.1.1: software exceptions need the instruction length.
                write_injection(&Injection {
                    info: InterruptionInfo::new_software_exception(vector),
                    error_code: None,
                    instruction_length: Some(info.instruction_length as u32),
                });
                self.vcpu.stats.exceptions_injected += 1;
                true
            }
            Action::Halt => {
                advance(info.instruction_length);
                // An idle vCPU is the moment to do the I/O it queued (one bounded round; the
                // scheduler continues the rest while the vCPU sleeps).
                self.vm.device_work();
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
            self.vcpu.stats.events_reinjected += 1;
            if self.vcpu.state == State::Halted {
                self.vcpu.state = State::Runnable;
            }
        }
        keep_running
    }
}

/// Skips the guest's instruction of `len` bytes at `rip` (SDM Vol. 3C §28.2.5: the VM-exit
/// instruction length), which ends STI/MOV-SS blocking (SDM Vol. 3C §25.4.2).
#[inline]
pub(super) fn advance_rip(rip: u64, len: u64) {
    let _ = vmcs::write_guest(vmcs::guest_field!(GUEST_RIP), rip.wrapping_add(len));
    let state = vmcs::read_exit(F::GUEST_INTERRUPTIBILITY_STATE);
    if state & BLOCKING_BY_STI_OR_MOV_SS != 0 {
        let _ = vmcs::write_guest(
            vmcs::guest_field!(GUEST_INTERRUPTIBILITY_STATE),
            state & !BLOCKING_BY_STI_OR_MOV_SS,
        );
    }
}

/// Interruptibility state bits 0 (blocking by STI) and 1 (blocking by MOV SS) (SDM Vol. 3C
/// §25.4.2, Table 25-3).
const BLOCKING_BY_STI_OR_MOV_SS: u64 = 0b11;

/// Runs `vcpu` of the VM in `slot` for up to one time slice on this CPU: device timers are
/// brought up to date and pending interrupts injected before every entry; the VMX-preemption
/// timer is armed for the earlier of the next device deadline and the end of the slice (SDM
/// Vol. 3C §26.5.1: it counts down at the TSC rate >> IA32_VMX_MISC[4:0]). The VM's lock is
/// held from each exit to the next entry, never while the guest runs. `pumps` says whether
/// this CPU drains the console (the others leave it alone).
///
/// Returns whether the slice was cut short for a halted vCPU's wake-up: the rest of the slice
/// is then kept in `slice_left`, so another vCPU's timers never cost this one its time.
pub(super) fn run_slice(
    slot: &VmSlot,
    vcpu: &mut Vcpu,
    timeslice: u64,
    wake_others_at: u64,
    pumps: bool,
) -> bool {
    let mut vm = slot.vm.lock();
    if let Err(e) = vcpu.vmcs.load() {
        error!("vm {}: vcpu {}: {e}", vm.name, vcpu.index);
        VcpuExit { vm: &mut vm, vcpu }.stop(StopReason::Bug("VMPTRLD failed"));
        return false;
    }
    if !vcpu.host_state_written {
        // This CPU's host state (GDT, TSS, GS base, ...): the VMCS was created on another.
        if setup::write_host_state().is_err() {
            VcpuExit { vm: &mut vm, vcpu }
                .stop(StopReason::Bug("writing the host state on this CPU failed"));
            return false;
        }
        vcpu.host_state_written = true;
    }
    let here = crate::percpu::current().index();
    if vcpu.last_cpu.is_some_and(|c| c != here) {
        vcpu.stats.migrations += 1;
        // This CPU may hold translations of this VM from before (another of its vCPUs, or
        // this one earlier), and the guest's INVLPGs since then ran elsewhere: flush the
        // VM's combined and guest-physical mappings here (SDM Vol. 3C §29.4.3.1, INVEPT
        // single-context).
        if vm.memory.invept_here().is_err() {
            VcpuExit { vm: &mut vm, vcpu }.stop(StopReason::Bug("INVEPT failed"));
            return false;
        }
        vcpu.ept_sync.flushed_here(vcpu.index);
        // The kvmclock record is rewritten for the new CPU (kvm_pv.rs).
        VcpuExit { vm: &mut vm, vcpu }.kvm_pv_clock_changed();
    }
    vcpu.last_cpu = Some(here);
    if let Some(s) = vm.vcpu_sched.get_mut(vcpu.index) {
        *s = kvm_hypercalls::Sched::Running;
    }
    if let Some(cpu) = vm.vcpu_cpus.get_mut(vcpu.index) {
        // Where a kick finds it.
        *cpu = here;
    }
    if let Some(vector) = vcpu.pending_startup.take() {
        // Started by a SIPI while it waited outside a slice (scheduler.rs).
        let mut x = VcpuExit { vm: &mut vm, vcpu };
        if let Err(why) = x.start_up(vector) {
            x.stop(StopReason::Bug(why));
            return false;
        }
    }
    let preemption = vcpu
        .controls
        .pin
        .contains(PinBasedControls::ACTIVATE_VMX_PREEMPTION_TIMER);
    let rate = vm.caps.preemption_timer_rate();
    {
        let mut x = VcpuExit { vm: &mut vm, vcpu };
        x.switch_in();
        // Steal time for the wait since the last slice, PV TLB flush (kvm_pv.rs).
        x.kvm_pv_slice_start(arch::rdtsc());
    }
    let budget = vcpu.slice_left.take().unwrap_or(timeslice);
    vcpu.slice_end = arch::rdtsc().saturating_add(budget);
    vcpu.wake_others_at = wake_others_at;
    // The last exit may go back into the guest by the fast path (fast_path.rs).
    let mut fast = false;
    loop {
        let now = arch::rdtsc();
        if pumps {
            crate::serial::pump_if_due(now);
            // Console input into its queue (a FIFO read, no lock of any VM), so typing into
            // the shell loses nothing while this vCPU has its slice; the shell's pass runs
            // between slices.
            crate::shell::receive_if_due(now);
        }
        // The console's deadlines move with other CPUs' output and with typing: read anew.
        let fast_until = match (fast, pumps) {
            (false, _) => 0,
            (true, false) => vcpu.fast_until,
            (true, true) => vcpu.fast_until.min(console_deadline(now)),
        };
        if now < fast_until {
            // Nothing the full pass looks at changed and none of its deadlines passed: the
            // preemption timer counts down what is left of the last one (SDM Vol. 3C
            // §26.5.1: the timer starts from the VMCS value at each VM entry).
            let ticks = ((fast_until - now) >> rate).clamp(1, u64::from(u32::MAX));
            let _ = vmcs::write_guest(vmcs::guest_field!(VMX_PREEMPTION_TIMER_VALUE), ticks);
            vcpu.stats.fast_resumes += 1;
        } else {
            let mut x = VcpuExit { vm: &mut vm, vcpu };
            if let Some(reason) = x.vm.stopping {
                // Another vCPU stopped the VM.
                x.stop(reason);
                break;
            }
            if x.vm.pause.is_some() {
                // A snapshot: the vCPU parks in its CPU's next scheduler pass, its exit
                // handled (snapshot/mod.rs).
                break;
            }
            if x.vm.platform.virtio.work_due().is_some_and(|d| now >= d) {
                x.vm.device_work();
            }
            x.vm.platform.tick(now);
            // Device interrupts raised since the last entry (by this exit's handler too) reach
            // the inboxes, and this vCPU takes its inbox in, before anything is delivered.
            x.vm.route_ioapic();
            match x.take_inbox() {
                // INIT: the vCPU waits for a start-up IPI, outside the guest.
                Signal::Init => break,
                Signal::Reset => {
                    x.stop(StopReason::InitOnBootVcpu);
                    break;
                }
                Signal::Startup(vector) => {
                    if let Err(why) = x.start_up(vector) {
                        x.stop(StopReason::Bug(why));
                        break;
                    }
                }
                Signal::None => {}
            }
            let me = x.vcpu.index;
            x.vm.lapics[me].advance(now);
            x.inject_pending_interrupt();
            if x.vm.apicv.is_some() {
                x.sync_virtual_interrupts();
            }
            // kvmclock and steal-time areas placed or stale, the PV EOI bit (kvm_pv.rs).
            x.kvm_pv_before_entry();
            x.kvm_pv_eoi_offer();
            if preemption {
                // Queued console output gets the UART's next FIFO slot on time, like a
                // transmit interrupt would; while input is active, console input is read on
                // time as a receive interrupt would (shell.rs).
                let pump = if pumps {
                    console_deadline(now)
                } else {
                    u64::MAX
                };
                let slice_end = x
                    .vcpu
                    .slice_deadline()
                    .min(x.vm.platform.virtio.work_due().unwrap_or(u64::MAX))
                    .min(pump);
                // A guest may program its PIT for a 1-tick period; a floor on device deadlines
                // (10 µs) keeps that from turning into an exit storm. Coalesced ticks are
                // delivered as one interrupt, as the PIT model already does for missed ones.
                // Only the boot vCPU receives the PIT's interrupts.
                let floor = now.saturating_add(x.vm.min_timer_ticks);
                let pit = if x.vcpu.index == 0 {
                    x.vm.platform.next_wake()
                } else {
                    None
                };
                let wake = min_deadline(pit, x.vm.lapics[me].timer_deadline());
                let deadline = wake.map_or(slice_end, |d| d.max(floor).min(slice_end));
                let ticks = (deadline.saturating_sub(now) >> rate).clamp(1, u64::from(u32::MAX));
                let _ = vmcs::write_guest(vmcs::guest_field!(VMX_PREEMPTION_TIMER_VALUE), ticks);
                x.vcpu.fast_until = deadline;
            } else {
                x.vcpu.fast_until = 0;
            }
            // A PV EOI offer is read back under the lock after the next exit.
            x.vcpu.quick_armed = preemption && !x.kvm_pv_eoi_out();
            if !x.vcpu.entered {
                x.vcpu.entered = true;
                if x.vcpu.index == 0 {
                    x.vm.console.start();
                    info!("vm {}: first VM entry", x.vm.name);
                } else {
                    info!(
                        "vm {}: vcpu {} first VM entry on cpu {}",
                        x.vm.name,
                        x.vcpu.index,
                        crate::percpu::current().index()
                    );
                }
            }
        }
        drop(vm);
        let mut invept_failed = false;
        let (result, exited_at, reason) = loop {
            // In guest mode for the EPT's shootdowns, flushed if the EPT changed since this
            // vCPU's last flush (ept_sync.rs).
            if vcpu.ept_sync.enter(vcpu.index, here).is_err() {
                invept_failed = true;
                break (Ok(()), arch::rdtsc(), None);
            }
            // SAFETY: this vCPU's VMCS is current (loaded above) with complete host state for
            // this CPU and guest state, and `launched` tracks VMLAUNCH for it.
            let result = unsafe { entry::enter(&mut vcpu.regs, vcpu.launched) };
            vcpu.ept_sync.exited(vcpu.index);
            let exited_at = arch::rdtsc();
            if result.is_err() {
                break (result, exited_at, None);
            }
            vcpu.launched = true;
            // CPUID and the stateless hypercalls go back in from here (quick_exit.rs).
            let until = |v: &Vcpu, now: u64| {
                if pumps {
                    v.fast_until.min(console_deadline(now))
                } else {
                    v.fast_until
                }
            };
            match quick_exit::answer(vcpu, exited_at, until, rate) {
                Ok(()) => continue,
                Err(reason) => break (result, exited_at, reason),
            }
        };
        vm = slot.vm.lock();
        let mut x = VcpuExit { vm: &mut vm, vcpu };
        if invept_failed {
            x.stop(StopReason::Bug("INVEPT before VM entry failed"));
            break;
        }
        if let Err(rflags) = result {
            let error = vmcs::read(F::VM_INSTRUCTION_ERROR).unwrap_or(0);
            x.stop(StopReason::EntryInstructionFailed { rflags, error });
            break;
        }
        // A PV EOI the guest did by clearing its bit is done before the exit is handled.
        let pv_eoi_offered = x.kvm_pv_eoi_after_exit();
        let info = ExitInfo::read(reason);
        let fast_candidate = fast_path::candidate(&x, &info);
        x.vcpu.exit_passive = false;
        let action = exits::dispatch(&mut x, &info);
        // Recorded before the action is applied, so a stopping VM's report includes it.
        x.vcpu
            .stats
            .record(info.reason.reason.number(), arch::rdtsc() - exited_at);
        let keep_running = x.apply(action, &info);
        fast = keep_running
            && !pv_eoi_offered
            && match action {
                Action::Advance => fast_candidate,
                Action::Resume => x.vcpu.exit_passive,
                _ => false,
            };
        if fast {
            // A doorbell queued device work: it runs in the full pass when due.
            if let Some(due) = x.vm.platform.virtio.work_due() {
                x.vcpu.fast_until = x.vcpu.fast_until.min(due);
            }
        }
        if x.vcpu.index != 0 && x.vm.platform.pending_vector().is_some() {
            // A device interrupt for vCPU 0 (its handling here raised it): if vCPU 0 runs
            // elsewhere, kick it so the interrupt is injected now, not at its next exit.
            if let Some(&boot_cpu) = x.vm.vcpu_cpus.first() {
                if boot_cpu != crate::percpu::current().index() {
                    crate::smp::kick(boot_cpu);
                }
            }
        }
        if !keep_running || (!preemption && arch::rdtsc() > x.vcpu.slice_deadline()) {
            break;
        }
    }
    let mut x = VcpuExit { vm: &mut vm, vcpu };
    x.switch_out();
    let me = x.vcpu.index;
    x.vm.vcpu_sched[me] = kvm_hypercalls::Sched::after_slice(x.vcpu);
    let now = arch::rdtsc();
    x.kvm_pv_slice_end(now);
    let cut_for_wakeup =
        x.vcpu.state == State::Runnable && now >= x.vcpu.wake_others_at && now < x.vcpu.slice_end;
    if cut_for_wakeup {
        x.vcpu.slice_left = Some(x.vcpu.slice_end - now);
    }
    cut_for_wakeup
}

/// The console-draining CPU's own deadline in a slice: queued output's next FIFO slot, and
/// while input is active the next read of the receiver (shell.rs).
fn console_deadline(now: u64) -> u64 {
    crate::serial::next_pump()
        .unwrap_or(u64::MAX)
        .min(crate::shell::slice_deadline(now))
}

impl Vm {
    /// Kicks every CPU other than this one that runs one of this VM's vCPUs out of the guest.
    pub(super) fn kick_other_cpus(&self) {
        let here = crate::percpu::current().index();
        let mut kicked = 0u64;
        for &cpu in &self.vcpu_cpus {
            if cpu != here && cpu < 64 && kicked & (1 << cpu) == 0 {
                kicked |= 1 << cpu;
                crate::smp::kick(cpu);
            }
        }
    }
}
