//! The fast path for simple exits (issue 14; docs/architecture.md, "What an exit costs").
//!
//! After most exits the run loop does its full pre-entry pass before the next VM entry:
//! deferred device work, the platform's timers, IOAPIC routing, the vCPU's inbox, the local
//! APIC timer, interrupt injection and the virtual-interrupt status, the KVM PV areas and the
//! VMX-preemption timer's next deadline. An exit whose handler can have changed none of what
//! that pass looks at skips it when no deadline the pass armed has passed: the guest goes
//! back in with only the preemption timer re-armed for what is left of that deadline.
//!
//! What the pass reacts to and why a simple exit cannot have changed it:
//! - deadlines (slice end, PIT, local APIC timer, queued device work, console pump and
//!   input): `Vcpu::fast_until` is their minimum as of the last full pass, checked here;
//! - interrupts for this vCPU from other CPUs (IPIs, device lines routed by another vCPU,
//!   a stop, an EPT change): they come with a kick, a host interrupt that is pending while
//!   this exit is handled and makes the next entry exit at once (an external-interrupt exit,
//!   which takes the full pass);
//! - what the handler itself did: only the exits below qualify, whose handlers touch the
//!   vCPU's registers, its MSR state or the VMCS guest state, never an interrupt line, a
//!   timer, an interrupt controller, the EPT or a device; and an MMIO access to a virtio
//!   register that raised no line (the handler sets `Vcpu::exit_passive`), whose queued
//!   device work only brings `fast_until` forward to its deadline.
//!
//! Statistics stay exact: the exit is counted and timed by reason as any other, and
//! `ExitStats::fast_resumes` counts the fast re-entries.

use super::exits::ExitInfo;
use super::VcpuExit;
use vmx::exit::{ExitReason, IoQualification};
use vmx::msr::Msr;

/// KVM's paravirtual MSRs (Linux `arch/x86/include/uapi/asm/kvm_para.h`): the old kvmclock
/// pair and the 0x4b564dxx block (kvmclock, steal time, PV EOI, poll control, ...).
const KVM_MSRS: core::ops::RangeInclusive<u32> = 0x4b56_4d00..=0x4b56_4dff;
const KVM_OLD_WALL_CLOCK: u32 = 0x11;
const KVM_OLD_SYSTEM_TIME: u32 = 0x12;

/// Whether the exit described by `info`, about to be handled, qualifies for the fast path if
/// its handler then simply advances past the instruction. Looked at before the handler runs
/// (a hypercall's number and an MSR's index are in the registers the handler overwrites).
pub(super) fn candidate(x: &VcpuExit<'_>, info: &ExitInfo) -> bool {
    if info.reason.entry_failure || info.interrupted.is_some() {
        return false;
    }
    let regs = &x.vcpu.regs;
    match info.reason.reason {
        // SDM Vol. 3C §26.1.2: CPUID always exits; the handler only writes RAX-RDX.
        ExitReason::Cpuid => true,
        // x2APIC registers (SDM Vol. 3A §11.12.1.2) are the APIC model's.
        ExitReason::Rdmsr => !Msr(regs.rcx as u32).is_x2apic(),
        ExitReason::Wrmsr => plain_msr_write(regs.rcx as u32),
        ExitReason::Vmcall => cheap_hypercall(regs.rax, x.vm.kvm_pv_offered),
        ExitReason::IoInstruction => IoQualification::from_raw(info.qualification)
            .is_ok_and(|q| !q.string && x.vm.platform.port_is_passive(q.port, q.size.bytes())),
        _ => false,
    }
}

/// WRMSR of an MSR that only the vCPU's MSR state or its VMCS guest state holds. Excluded:
/// the APIC (IA32_APIC_BASE switches the APIC's mode; x2APIC registers drive interrupts and
/// the APIC timer), the TSC and its deadline (the TSC offset, kvmclock, the APIC timer),
/// KVM's PV MSRs (areas in guest memory the pre-entry pass keeps), EFER and
/// IA32_MISC_ENABLE (paging mode, CPUID-visible features) and IA32_XSS (extended state).
fn plain_msr_write(msr: u32) -> bool {
    !(Msr(msr).is_x2apic()
        || KVM_MSRS.contains(&msr)
        || [
            Msr::IA32_APIC_BASE.0,
            Msr::IA32_TIME_STAMP_COUNTER.0,
            Msr::IA32_TSC_ADJUST.0,
            Msr::IA32_TSC_DEADLINE.0,
            Msr::IA32_EFER.0,
            Msr::IA32_MISC_ENABLE.0,
            Msr::IA32_XSS.0,
            KVM_OLD_WALL_CLOCK,
            KVM_OLD_SYSTEM_TIME,
        ]
        .contains(&msr))
}

/// Bulkhead hypercalls that read or report only (docs/hypercall-abi.md): VERSION, NOP and
/// EXIT_STATS. The console, MULTICALL, IDLE and MEM_RELEASE calls, and every KVM call
/// (kicks, IPIs, yields, TLB flushes), take the full pass.
fn cheap_hypercall(rax: u64, kvm_pv: bool) -> bool {
    match hypercall::route::route(rax, kvm_pv) {
        hypercall::route::Abi::Bulkhead(nr) => matches!(
            nr,
            hypercall::call::VERSION | hypercall::call::NOP | hypercall::call::EXIT_STATS
        ),
        hypercall::route::Abi::Kvm(_) => false,
    }
}
