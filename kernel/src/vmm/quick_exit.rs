//! The quick path: exits answered before the run loop takes the VM's lock (issue 14;
//! docs/architecture.md, "What an exit costs").
//!
//! Two exits need nothing but the vCPU itself: CPUID (the policy is shared read-only, its
//! per-vCPU inputs are the vCPU's APIC ID, XCR0, IA32_MISC_ENABLE and the guest's CR4) and
//! the stateless hypercalls VERSION and NOP (`hypercall::host::is_stateless`). When the
//! last full pre-entry pass left the vCPU armed for it (`Vcpu::quick_armed`) and none of
//! that pass's deadlines has passed (`Vcpu::fast_until`, the console's), such an exit is
//! handled here, right after the VM exit, by the same handler the dispatcher calls
//! (`exits::cpuid`, `hypercalls::stateless_hypercall`), and the guest goes back in at once:
//! no VM lock, no `ExitInfo`, no dispatch, no pre-entry pass.
//!
//! Why that is the full path's result: the handlers are the same functions; what the full
//! path does besides them cannot apply to these exits — they are instruction-caused, so no
//! event delivery was interrupted (SDM Vol. 3C §28.2.4); they change no interrupt line,
//! timer, interrupt controller, EPT or device, so the pre-entry pass has nothing new to
//! see (fast_path.rs); what other CPUs change for this vCPU comes with a kick, a host
//! interrupt that makes the next entry exit at once into the full path; a PV EOI offer
//! (read back under the VM's lock after every exit) disarms the quick path until the next
//! full pass. Statistics stay exact: the exit is counted and timed by reason from the same
//! first TSC read after the exit, and counted as a fast re-entry and a quick exit.

use super::exits::Action;
use super::hypercalls::{stateless_hypercall, HcFrame};
use super::{exits, run_loop, vmcs, Vcpu};
use crate::arch;
use vmx::exit::{DecodedExitReason, ExitReason};
use vmx::fields::VmcsField as F;

/// Handles the exit `vcpu` just took at TSC `exited_at` if it is a quick one and the guest
/// may go back in before `until(exited_at)` (the deadlines of the last full pass and the
/// console's, computed only for a quick reason): then RIP is advanced, the preemption timer
/// re-armed for what is left (`rate`: the timer's TSC shift, SDM Vol. 3C §26.5.1) and
/// `Ok(())` returned. Otherwise nothing is changed and `Err` carries the exit reason if it
/// was read (the full path does not read it again).
pub(super) fn answer(
    vcpu: &mut Vcpu,
    exited_at: u64,
    until: impl FnOnce(&Vcpu, u64) -> u64,
    rate: u8,
) -> Result<(), Option<DecodedExitReason>> {
    if !vcpu.quick_armed || exited_at >= vcpu.fast_until {
        return Err(None);
    }
    let reason = ExitReason::from_raw(vmcs::read_exit(F::EXIT_REASON) as u32);
    if reason.entry_failure || !matches!(reason.reason, ExitReason::Cpuid | ExitReason::Vmcall) {
        return Err(Some(reason));
    }
    let until = until(vcpu, exited_at);
    if exited_at >= until {
        return Err(Some(reason));
    }
    let action = match reason.reason {
        ExitReason::Cpuid => exits::cpuid(vcpu),
        ExitReason::Vmcall => {
            let frame = HcFrame::read(vcpu);
            match stateless_hypercall(vcpu, &frame) {
                Some(action) => action,
                None => return Err(Some(reason)),
            }
        }
        _ => return Err(Some(reason)),
    };
    debug_assert_eq!(action, Action::Advance);
    let rip = vmcs::read_exit(F::GUEST_RIP);
    let len = vmcs::read_exit(F::VM_EXIT_INSTRUCTION_LENGTH);
    run_loop::advance_rip(rip, len);
    let now = arch::rdtsc();
    vcpu.stats.record(reason.reason.number(), now - exited_at);
    vcpu.stats.record_quick();
    // The timer restarts from its VMCS value at every entry (SDM Vol. 3C §26.5.1): what is
    // left of the deadline (at least one tick: one just passed during the handling exits
    // at once into the full path).
    let ticks = ((until.saturating_sub(now)) >> rate).clamp(1, u64::from(u32::MAX));
    let _ = vmcs::write_guest(vmcs::guest_field!(VMX_PREEMPTION_TIMER_VALUE), ticks);
    Ok(())
}
