//! Exit dispatch: one place that maps an exit reason to its handler; each handler returns an
//! [`Action`] and never touches the hardware beyond the current VMCS fields it reads.

use super::guest_memory::{Touch, TouchError};
use super::vmcs;
use super::{StopReason, Vcpu, VcpuExit as Vm};
use vm::cpuid::VcpuCpuidState;
use vm::devices::acpi_pm::PowerRequest;
use vmx::disposition::{disposition, Disposition, TaskSwitch};
use vmx::event::Injection;
use vmx::exit::{
    CrAccess, DecodedExitReason, EptViolation, ExceptionVector, ExitReason, Gpr, InterruptionInfo,
    InterruptionType, IoDirection, IoQualification,
};
use vmx::fields::VmcsField as F;

/// What the vCPU does after an exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Re-enter at the same RIP (the handler already changed what was needed).
    Resume,
    /// Skip the exiting instruction (SDM Vol. 3C §28.2.5: VM-exit instruction length).
    Advance,
    /// Deliver an exception to the guest at the faulting instruction.
    Inject {
        vector: ExceptionVector,
        error_code: Option<u32>,
    },
    /// Reflect an intercepted software exception (INT3): delivered after the instruction.
    InjectSoftware { vector: ExceptionVector },
    /// Skip the instruction and sleep until an interrupt is pending (HLT, idle hypercall).
    Halt,
    /// Skip the instruction and let other vCPUs run (end of slice, yield hypercall).
    Yield,
    /// The VM ends.
    Stop(StopReason),
}

/// Everything a handler learns from the exit.
#[derive(Debug, Clone, Copy)]
pub struct ExitInfo {
    pub reason: DecodedExitReason,
    pub qualification: u64,
    pub rip: u64,
    pub instruction_length: u64,
    /// The event whose delivery this exit interrupted, to be delivered again (SDM Vol. 3C
    /// §28.2.4): the exit was caused by the delivery (e.g. an EPT violation on the guest's
    /// stack or IDT), not by the instruction at RIP.
    pub interrupted: Option<Injection>,
}

impl ExitInfo {
    /// Reads the exit's information; `reason` is the exit reason if it was read already (the
    /// quick path's look at the exit).
    pub fn read(reason: Option<DecodedExitReason>) -> Self {
        let reason =
            reason.unwrap_or_else(|| ExitReason::from_raw(vmcs::read_exit(F::EXIT_REASON) as u32));
        let instruction_length = vmcs::read_exit(F::VM_EXIT_INSTRUCTION_LENGTH);
        // Each VMREAD costs (about 30 ticks under Bochs): the IDT-vectoring fields are read only
        // where they can be valid, the error code only when the event has one.
        let interrupted = if caused_by_instruction(reason.reason) {
            None
        } else {
            let idt = vmcs::read_exit(F::IDT_VECTORING_INFO) as u32;
            let event = InterruptionInfo::from_raw(idt);
            let error_code = if event.valid() && event.error_code_valid() {
                vmcs::read_exit(F::IDT_VECTORING_ERROR_CODE) as u32
            } else {
                0
            };
            Injection::from_idt_vectoring(idt, error_code, instruction_length as u32)
        };
        ExitInfo {
            reason,
            qualification: if qualification_cleared(reason.reason) {
                0
            } else {
                vmcs::read_exit(F::EXIT_QUALIFICATION)
            },
            rip: vmcs::read_exit(F::GUEST_RIP),
            instruction_length,
            interrupted,
        }
    }
}

/// Exits whose exit qualification the CPU clears (SDM Vol. 3C §28.2.1: only the exits listed
/// there define it; "for all other VM exits, this field is cleared"): not read, a VMREAD saved
/// on the most frequent simple exits.
fn qualification_cleared(reason: ExitReason) -> bool {
    matches!(
        reason,
        ExitReason::Cpuid
            | ExitReason::Rdmsr
            | ExitReason::Wrmsr
            | ExitReason::Vmcall
            | ExitReason::Hlt
            | ExitReason::Rdtsc
            | ExitReason::Rdpmc
            | ExitReason::Invd
            | ExitReason::Wbinvd
            | ExitReason::Xsetbv
            | ExitReason::ExternalInterrupt
            | ExitReason::InterruptWindow
            | ExitReason::TripleFault
            | ExitReason::PreemptionTimerExpired
    )
}

/// Exits caused by executing an instruction: the instruction runs only after any event has
/// been delivered, so such an exit never interrupts event delivery and its IDT-vectoring
/// information is never valid (SDM Vol. 3C §28.2.4; the instruction-caused exits of §26.1.2
/// and §26.1.3).
fn caused_by_instruction(reason: ExitReason) -> bool {
    matches!(
        reason,
        ExitReason::Cpuid
            | ExitReason::Getsec
            | ExitReason::Hlt
            | ExitReason::Invd
            | ExitReason::Invlpg
            | ExitReason::Rdpmc
            | ExitReason::Rdtsc
            | ExitReason::Rsm
            | ExitReason::Vmcall
            | ExitReason::Vmclear
            | ExitReason::Vmlaunch
            | ExitReason::Vmptrld
            | ExitReason::Vmptrst
            | ExitReason::Vmread
            | ExitReason::Vmresume
            | ExitReason::Vmwrite
            | ExitReason::Vmxoff
            | ExitReason::Vmxon
            | ExitReason::ControlRegisterAccess
            | ExitReason::MovDr
            | ExitReason::IoInstruction
            | ExitReason::Rdmsr
            | ExitReason::Wrmsr
            | ExitReason::Mwait
            | ExitReason::Monitor
            | ExitReason::Pause
            | ExitReason::Invept
            | ExitReason::Rdtscp
            | ExitReason::Invvpid
            | ExitReason::Wbinvd
            | ExitReason::Xsetbv
            | ExitReason::Rdrand
            | ExitReason::Invpcid
            | ExitReason::Vmfunc
            | ExitReason::Rdseed
    )
}

/// The single dispatch point.
pub fn dispatch(vm: &mut Vm, info: &ExitInfo) -> Action {
    if info.reason.entry_failure {
        return Action::Stop(StopReason::EntryFailure {
            reason: info.reason.reason,
            qualification: info.qualification,
        });
    }
    match info.reason.reason {
        ExitReason::ExceptionOrNmi => exception_or_nmi(),
        ExitReason::ExternalInterrupt => vm.host_interrupt(),
        ExitReason::TripleFault => Action::Stop(StopReason::TripleFault),
        ExitReason::InterruptWindow => vm.interrupt_window(),
        ExitReason::Cpuid => cpuid(vm.vcpu),
        ExitReason::Hlt => hlt(vm),
        ExitReason::Vmcall => vm.hypercall(),
        ExitReason::ControlRegisterAccess => cr_access(vm, info),
        ExitReason::IoInstruction => io(vm, info),
        ExitReason::Rdmsr => vm.rdmsr(),
        ExitReason::Wrmsr => vm.wrmsr(),
        ExitReason::EptViolation => ept_violation(vm, info),
        ExitReason::EptMisconfiguration => Action::Stop(StopReason::Bug("EPT misconfiguration")),
        ExitReason::PreemptionTimerExpired => vm.timer_expired(),
        ExitReason::Xsetbv => vm.xsetbv(),
        ExitReason::Rdpmc => rdpmc(),
        ExitReason::Invd => invd(),
        ExitReason::Monitor | ExitReason::Mwait => monitor_mwait(),
        ExitReason::TaskSwitch => task_switch(info),
        // APIC virtualization (apic_virtualization.rs).
        ExitReason::ApicAccess => vm.apic_access(info),
        ExitReason::VirtualizedEoi => vm.virtualized_eoi(info),
        ExitReason::ApicWrite => vm.apic_write(info),
        // Instructions of features hidden from guests: #UD as on a CPU without them
        // (vmx::disposition says which feature).
        ExitReason::Vmclear
        | ExitReason::Vmlaunch
        | ExitReason::Vmptrld
        | ExitReason::Vmptrst
        | ExitReason::Vmread
        | ExitReason::Vmresume
        | ExitReason::Vmwrite
        | ExitReason::Vmxoff
        | ExitReason::Vmxon
        | ExitReason::Invept
        | ExitReason::Invvpid
        | ExitReason::Vmfunc
        | ExitReason::Getsec
        | ExitReason::Seamcall
        | ExitReason::Tdcall => hidden_instruction(),
        // Impossible with Bulkhead's controls (the reason for each is in
        // vmx::disposition::disposition): a hypervisor bug if one arrives.
        r @ (ExitReason::InitSignal
        | ExitReason::StartupIpi
        | ExitReason::IoSmi
        | ExitReason::OtherSmi
        | ExitReason::NmiWindow
        | ExitReason::Invlpg
        | ExitReason::Rdtsc
        | ExitReason::Rsm
        | ExitReason::MovDr
        | ExitReason::MonitorTrapFlag
        | ExitReason::Pause
        | ExitReason::TprBelowThreshold
        | ExitReason::GdtrIdtrAccess
        | ExitReason::LdtrTrAccess
        | ExitReason::Rdtscp
        | ExitReason::Wbinvd
        | ExitReason::Rdrand
        | ExitReason::Invpcid
        | ExitReason::Encls
        | ExitReason::Rdseed
        | ExitReason::PmlFull
        | ExitReason::Xsaves
        | ExitReason::Xrstors
        | ExitReason::Pconfig
        | ExitReason::SppEvent
        | ExitReason::Umwait
        | ExitReason::Tpause
        | ExitReason::Loadiwkey
        | ExitReason::Enclv
        | ExitReason::EnqcmdPasidFailure
        | ExitReason::EnqcmdsPasidFailure
        | ExitReason::BusLock
        | ExitReason::InstructionTimeout
        | ExitReason::Rdmsrlist
        | ExitReason::Wrmsrlist
        | ExitReason::Unknown(_)) => impossible(r),
        // Entry failures arrive with the entry-failure bit (handled above).
        r @ (ExitReason::EntryFailureInvalidGuestState
        | ExitReason::EntryFailureMsrLoading
        | ExitReason::EntryFailureMachineCheck) => Action::Stop(StopReason::EntryFailure {
            reason: r,
            qualification: info.qualification,
        }),
    }
}

/// An exit Bulkhead's controls rule out (vmx::disposition): logged with the reason and the
/// VM stopped as unhandled.
fn impossible(reason: ExitReason) -> Action {
    if let Disposition::Impossible(why) = disposition(reason) {
        log::error!("exit reason {reason} should be impossible: {why}");
    }
    Action::Stop(StopReason::Unhandled(reason))
}

/// Task switch (reason 9, unconditional: SDM Vol. 3C §26.1.2): not emulated, the VM stops
/// with the documented reason (vmx::disposition::TASK_SWITCH_STOP, docs/vm-platform.md).
fn task_switch(info: &ExitInfo) -> Action {
    Action::Stop(StopReason::TaskSwitch(TaskSwitch::from_qualification(
        info.qualification,
    )))
}

/// Exception or NMI (reason 0): host NMIs are consumed; intercepted guest exceptions (only
/// #BP, see the exception bitmap) are reflected (SDM Vol. 3C §28.2.2).
fn exception_or_nmi() -> Action {
    let info = InterruptionInfo::from_raw(vmcs::read_exit(F::VM_EXIT_INTERRUPTION_INFO) as u32);
    match info.kind() {
        // Counted as an exception-or-NMI exit in the statistics.
        InterruptionType::Nmi => Action::Resume,
        InterruptionType::SoftwareException
            if info.vector() == ExceptionVector::Breakpoint.vector() =>
        {
            Action::InjectSoftware {
                vector: ExceptionVector::Breakpoint,
            }
        }
        _ => match ExceptionVector::from_u8(info.vector()) {
            Some(vector) => {
                let error_code = info
                    .error_code_valid()
                    .then(|| vmcs::read_exit(F::VM_EXIT_INTERRUPTION_ERROR_CODE) as u32);
                Action::Inject { vector, error_code }
            }
            None => Action::Stop(StopReason::Bug(
                "an exception exit with a vector Bulkhead does not intercept",
            )),
        },
    }
}

/// CPUID (reason 10): the VM's policy answers (SDM Vol. 3C §26.1.2: CPUID always exits). It
/// needs only the vCPU (the policy is shared read-only), so the quick path (quick_exit.rs)
/// runs it too, without the VM's lock.
pub(super) fn cpuid(vcpu: &mut Vcpu) -> Action {
    let leaf = vcpu.regs.rax as u32;
    let subleaf = vcpu.regs.rcx as u32;
    // CR4.OSXSAVE and CR4.PKE are the guest's own bits: the real CR4, not the shadow; read
    // (a VMREAD) only for the leaves that report them.
    let cr4 = if vcpu.cpuid.reads_cr4(leaf) {
        vmcs::read_exit(F::GUEST_CR4)
    } else {
        0
    };
    let state = VcpuCpuidState {
        apic_id: vcpu.index as u32,
        cr4,
        xcr0: vcpu.xstate.xcr0,
        limit_cpuid: vcpu.msr_state.misc_enable & vm::msr::MISC_ENABLE_LIMIT_CPUID != 0,
    };
    let [a, b, c, d] = vcpu.cpuid.lookup(leaf, subleaf, &state);
    let r = &mut vcpu.regs;
    (r.rax, r.rbx, r.rcx, r.rdx) = (u64::from(a), u64::from(b), u64::from(c), u64::from(d));
    Action::Advance
}

/// RFLAGS.IF (SDM Vol. 3A §2.3).
const RFLAGS_IF: u64 = 1 << 9;

/// HLT (reason 12): sleep until an interrupt is pending; with interrupts disabled nothing can
/// ever wake the vCPU, so the VM has powered itself off. In a KVM PV VM (PV_UNHALT) a
/// `KVM_HC_KICK_CPU` wakes it too: a kick that came first makes HLT return at once, and a HLT
/// with IF = 0 waits for a kick while another vCPU may still send one (Linux's `kvm_wait`).
fn hlt(vm: &mut Vm) -> Action {
    if vm.vcpu.pv_unhalted {
        // The kick ends this halt instead of the one it came too early for.
        vm.vcpu.pv_unhalted = false;
        vm.kvm_calls.kick_woke += 1;
        return Action::Advance;
    }
    let rflags = vmcs::read_exit(F::GUEST_RFLAGS);
    // With IF = 0 only NMI, SMI or INIT could wake the CPU (SDM Vol. 2A HLT); Bulkhead
    // sends none of them to guests (an NMI only through the guest's own IPIs).
    let irqs_off = rflags & RFLAGS_IF == 0;
    if irqs_off && (!vm.kvm_pv_offered || !vm.another_may_kick(vm.vcpu.index)) {
        return Action::Stop(StopReason::HaltedWithInterruptsDisabled);
    }
    vm.vcpu.halted_irqs_off = irqs_off;
    vm.vcpu.idle_call = false;
    Action::Halt
}

/// Instructions of features CPUID hides (vmx::disposition::Disposition::InvalidOpcode): the
/// VMX instructions (reasons 19-27, 50, 53, 59: CPUID.1:ECX.VMX = 0, SDM Vol. 3C §31.3),
/// GETSEC (11: SMX hidden), SEAMCALL and TDCALL (76, 77: no TDX). They raise #UD as on a CPU
/// without the feature.
fn hidden_instruction() -> Action {
    Action::Inject {
        vector: ExceptionVector::InvalidOpcode,
        error_code: None,
    }
}

/// Writes a guest GPR (RSP goes to the VMCS).
pub fn set_gpr(regs: &mut super::entry::GuestRegs, g: Gpr, value: u64) {
    let slot = match g {
        Gpr::Rax => &mut regs.rax,
        Gpr::Rcx => &mut regs.rcx,
        Gpr::Rdx => &mut regs.rdx,
        Gpr::Rbx => &mut regs.rbx,
        Gpr::Rsp => {
            let _ = vmcs::write_guest(vmcs::guest_field!(GUEST_RSP), value);
            return;
        }
        Gpr::Rbp => &mut regs.rbp,
        Gpr::Rsi => &mut regs.rsi,
        Gpr::Rdi => &mut regs.rdi,
        Gpr::R8 => &mut regs.r8,
        Gpr::R9 => &mut regs.r9,
        Gpr::R10 => &mut regs.r10,
        Gpr::R11 => &mut regs.r11,
        Gpr::R12 => &mut regs.r12,
        Gpr::R13 => &mut regs.r13,
        Gpr::R14 => &mut regs.r14,
        Gpr::R15 => &mut regs.r15,
    };
    *slot = value;
}

/// Reads a guest GPR (RSP from the VMCS).
pub fn get_gpr(regs: &super::entry::GuestRegs, g: Gpr) -> u64 {
    match g {
        Gpr::Rax => regs.rax,
        Gpr::Rcx => regs.rcx,
        Gpr::Rdx => regs.rdx,
        Gpr::Rbx => regs.rbx,
        Gpr::Rsp => vmcs::read_exit(F::GUEST_RSP),
        Gpr::Rbp => regs.rbp,
        Gpr::Rsi => regs.rsi,
        Gpr::Rdi => regs.rdi,
        Gpr::R8 => regs.r8,
        Gpr::R9 => regs.r9,
        Gpr::R10 => regs.r10,
        Gpr::R11 => regs.r11,
        Gpr::R12 => regs.r12,
        Gpr::R13 => regs.r13,
        Gpr::R14 => regs.r14,
        Gpr::R15 => regs.r15,
    }
}

/// Control-register access (reason 28), SDM Vol. 3C §28.2.1 Table 28-3.
fn cr_access(vm: &mut Vm, info: &ExitInfo) -> Action {
    match CrAccess::from_raw(info.qualification) {
        CrAccess::MovToCr { cr, gpr } => {
            let value = get_gpr(&vm.vcpu.regs, gpr);
            vm.write_cr(cr, value)
        }
        CrAccess::MovFromCr { cr: 3, gpr } => {
            set_gpr(&mut vm.vcpu.regs, gpr, vmcs::read_exit(F::GUEST_CR3));
            Action::Advance
        }
        CrAccess::MovFromCr { cr: 8, gpr } => {
            let tpr = vm.lapic().tpr();
            set_gpr(&mut vm.vcpu.regs, gpr, u64::from(tpr >> 4));
            Action::Advance
        }
        CrAccess::MovFromCr { .. } => Action::Stop(StopReason::Bug(
            "a MOV from a control register Bulkhead does not intercept",
        )),
        // Both rewrite CR0 from the guest's view of it (vmcs::guest_cr0): the read shadow alone
        // holds stale values of the bits the guest owns.
        CrAccess::Clts => vm.write_cr(0, vmcs::guest_cr0() & !(1 << 3)),
        CrAccess::Lmsw { source_data, .. } => {
            // LMSW loads CR0[3:0] but cannot clear PE (SDM Vol. 2A LMSW).
            let cr0 = vmcs::guest_cr0();
            let low = u64::from(source_data) & 0xf;
            vm.write_cr(0, (cr0 & !0xe) | low | (cr0 & 1))
        }
    }
}

/// I/O instruction (reason 30), SDM Vol. 3C §28.2.1 Table 28-5.
fn io(vm: &mut Vm, info: &ExitInfo) -> Action {
    let Ok(q) = IoQualification::from_raw(info.qualification) else {
        return Action::Stop(StopReason::Bug("malformed I/O exit qualification"));
    };
    if q.string {
        return vm.string_io(&q, info);
    }
    let size = q.size.bytes();
    let mask = if size == 4 {
        0xffff_ffff
    } else {
        (1u64 << (size * 8)) - 1
    };
    match q.direction {
        IoDirection::In => {
            let vmw = &mut *vm.vm;
            let value = u64::from(vmw.platform.port_read(q.port, size, &mut vmw.console));
            let rax = &mut vm.vcpu.regs.rax;
            // IN to EAX zero-extends into RAX in 64-bit mode; AL/AX keep the upper bits.
            *rax = if size == 4 {
                value & mask
            } else {
                (*rax & !mask) | (value & mask)
            };
        }
        IoDirection::Out => {
            let value = (vm.vcpu.regs.rax & mask) as u32;
            let vmw = &mut *vm.vm;
            vmw.platform
                .port_write(q.port, size, value, &mut vmw.console);
            // SLP_EN with S5 in PM1a_CNT, or the reset register (ACPI 6.5 §4.8.3.2.1,
            // §4.8.3.6): the VM ends, its report says how.
            match vmw.platform.take_power_request() {
                Some(PowerRequest::Off) => return Action::Stop(StopReason::AcpiPowerOff),
                Some(PowerRequest::Reset) => return Action::Stop(StopReason::AcpiReset),
                None => {}
            }
        }
    }
    Action::Advance
}

/// EPT violation (reason 48), SDM Vol. 3C §28.2.1 Table 28-7: an MMIO region's device, or
/// the end of the VM (the access is outside its RAM and every region; nothing was touched).
fn ept_violation(vm: &mut Vm, info: &ExitInfo) -> Action {
    let gpa = vmcs::read_exit(F::GUEST_PHYSICAL_ADDRESS);
    let q = EptViolation::from_raw(info.qualification);
    if vm.mmio_target(gpa).is_some() {
        if let Some(event) = info.interrupted {
            // The CPU touched a device window while delivering an event (the guest's IDT,
            // GDT or stack lies in it): there is no instruction to emulate, and a device
            // cannot serve as a descriptor table or stack.
            return Action::Stop(StopReason::EventDeliveryThroughMmio {
                gpa,
                vector: event.info.vector(),
            });
        }
        return vm.mmio(gpa, info);
    }
    // A page the guest gave back with MEM_RELEASE touched again, or a clone's page touched
    // for the first time or written for the first time (copy-on-write), by an instruction or
    // by event delivery: `apply` then delivers the interrupted event again (SDM Vol. 3C
    // §28.2.4, IDT-vectoring information).
    match vm.memory.fault(gpa, q.contains(EptViolation::WRITE)) {
        Ok(Touch::FaultedIn | Touch::Clone(_)) => return Action::Resume,
        Ok(Touch::Genuine) => {}
        Err(TouchError::NoFrame) => return Action::Stop(StopReason::CloneOutOfMemory { gpa }),
        Err(TouchError::Ept(_)) => {
            return Action::Stop(StopReason::Bug(
                "no EPT table frame for a page the guest touched (the VM's pool is sized for \
                 every split)",
            ))
        }
        Err(TouchError::Shootdown(_) | TouchError::NotAClone) => {
            return Action::Stop(StopReason::Bug(
                "flushing the other CPUs' translations for a copy-on-write page failed",
            ))
        }
    }
    let access = if q.contains(EptViolation::FETCH) {
        "instruction fetch"
    } else if q.contains(EptViolation::WRITE) {
        "write"
    } else {
        "read"
    };
    Action::Stop(StopReason::OutsideMemory { gpa, access })
}

/// RDPMC (reason 15): no performance counters are offered (CPUID leaf 0xA is zero), so every
/// counter number is invalid: #GP(0) (SDM Vol. 2B RDPMC). The host's counters stay unread.
fn rdpmc() -> Action {
    super::gp()
}

/// MONITOR (reason 39) and MWAIT (reason 36): CPUID.1:ECX.MONITOR is 0 for guests, so both
/// raise #UD (SDM Vol. 2B MONITOR, MWAIT); a guest never picks the physical CPU's sleep state.
fn monitor_mwait() -> Action {
    Action::Inject {
        vector: ExceptionVector::InvalidOpcode,
        error_code: None,
    }
}

/// INVD (reason 13, always exits: SDM Vol. 3C §26.1.2): the guest asks to discard its caches
/// without writing them back. Discarding modified lines would lose other VMs' and the host's
/// data, and guest RAM is write-back coherent memory whose cache state no guest can observe,
/// so it completes as a no-op (as WBINVD would, without the cost).
fn invd() -> Action {
    Action::Advance
}
