//! What Bulkhead does with every basic exit reason of SDM Vol. 3D Appendix C (Table C-1):
//! handled by a handler, answered with #UD because the instruction's feature is hidden from
//! guests, impossible with the controls Bulkhead sets (with the reason), or a documented stop.
//! The kernel's dispatch (`kernel/src/vmm/exits.rs`) names every [`ExitReason`] and follows
//! this table; the unit tests below check that it covers every defined number.
//!
//! The unconditional exits of SDM Vol. 3C §26.1.2 (CPUID, GETSEC, INVD, XSETBV, the VMX
//! instructions, SEAMCALL, TDCALL, task switches) are all decided here.

use crate::exit::ExitReason;

/// How an exit reason is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// A handler emulates it (the dispatch names it).
    Handled,
    /// The instruction belongs to a feature CPUID hides from guests: #UD, as on a CPU without
    /// it. The reason names the hidden feature.
    InvalidOpcode(&'static str),
    /// Cannot happen with Bulkhead's VM-execution controls and guest state: if it does, the
    /// hypervisor has a bug and the VM stops with this explanation.
    Impossible(&'static str),
    /// Not emulated: the VM stops with this documented reason.
    Stop(&'static str),
}

/// Why a task switch stops the VM (docs/vm-platform.md, "CPU").
pub const TASK_SWITCH_STOP: &str = "hardware task switching (CALL/JMP to a TSS or task gate, \
     IRET with NT, a task gate in the IDT) is not emulated; 64-bit guests cannot use it and \
     32-bit guests must use software task switching";

/// The disposition of `reason` (SDM Vol. 3C §26.1.2 for the unconditional exits, §26.1.3 for
/// the conditional ones and the controls that enable them).
pub const fn disposition(reason: ExitReason) -> Disposition {
    use Disposition::*;
    use ExitReason as R;
    match reason {
        R::ExceptionOrNmi
        | R::ExternalInterrupt
        | R::TripleFault
        | R::InterruptWindow
        | R::Cpuid
        | R::Hlt
        | R::Invd
        | R::Rdpmc
        | R::Vmcall
        | R::ControlRegisterAccess
        | R::IoInstruction
        | R::Rdmsr
        | R::Wrmsr
        | R::EntryFailureInvalidGuestState
        | R::EntryFailureMsrLoading
        | R::EntryFailureMachineCheck
        | R::Mwait
        | R::Monitor
        | R::EptViolation
        | R::EptMisconfiguration
        | R::PreemptionTimerExpired
        | R::Xsetbv
        // APIC virtualization (SDM Vol. 3C ch. 30), on CPUs that have it (crate::apicv).
        | R::ApicAccess
        | R::VirtualizedEoi
        | R::ApicWrite => Handled,
        R::TaskSwitch => Stop(TASK_SWITCH_STOP),
        R::Vmclear
        | R::Vmlaunch
        | R::Vmptrld
        | R::Vmptrst
        | R::Vmread
        | R::Vmresume
        | R::Vmwrite
        | R::Vmxoff
        | R::Vmxon
        | R::Invept
        | R::Invvpid
        | R::Vmfunc => InvalidOpcode("VMX (CPUID.1:ECX.VMX = 0, SDM Vol. 3C §31.3)"),
        // GETSEC exits only with CR4.SMXE = 1 (#UD has priority otherwise, SDM Vol. 3C
        // §26.1.1); SMX is hidden and CR4.SMXE reserved for guests.
        R::Getsec => InvalidOpcode("SMX (CPUID.1:ECX.SMX = 0, CR4.SMXE reserved)"),
        // SEAM and trust-domain calls: no TDX module is offered (SDM Vol. 3C §26.1.2).
        R::Seamcall | R::Tdcall => InvalidOpcode("TDX (no SEAM range, no trust domain)"),
        R::InitSignal => Impossible(
            "INIT exits need a hardware INIT signal: Bulkhead sends none to CPUs in VMX non-root operation (guest INIT IPIs are emulated)",
        ),
        R::StartupIpi => {
            Impossible("SIPI exits need the wait-for-SIPI activity state, which is never set (a vCPU waiting for a guest SIPI is not entered)")
        }
        R::IoSmi | R::OtherSmi => Impossible(
            "SMI exits need the dual-monitor treatment of SMM (SDM Vol. 3C §32.15), never activated",
        ),
        R::NmiWindow => Impossible("NMI-window exiting is never set (no virtual NMIs)"),
        R::Invlpg => Impossible("INVLPG exiting is 0 (EPT makes guest TLB flushes harmless)"),
        R::Rdtsc | R::Rdtscp => Impossible("RDTSC exiting is 0 (the TSC is offset, not trapped)"),
        R::Rsm => Impossible("a guest never runs in SMM, and RSM outside SMM is #UD without exit"),
        R::MovDr => Impossible(
            "MOV-DR exiting is 0: DR0-DR3/DR6 are switched with the vCPU, DR7 through the VMCS",
        ),
        R::MonitorTrapFlag => Impossible("the monitor trap flag is never set"),
        R::Pause => Impossible("PAUSE exiting and PAUSE-loop exiting are 0"),
        R::TprBelowThreshold => Impossible(
            "the TPR shadow is used only with virtual-interrupt delivery, which ignores the TPR threshold (SDM Vol. 3C §30.1.2)",
        ),
        R::GdtrIdtrAccess | R::LdtrTrAccess => Impossible("descriptor-table exiting is 0"),
        R::Wbinvd => Impossible("WBINVD exiting is 0 (WBINVD runs natively)"),
        R::Rdrand | R::Rdseed => Impossible("RDRAND and RDSEED exiting are 0"),
        R::Invpcid => Impossible(
            "INVPCID exits only with INVLPG exiting = 1 (SDM Vol. 3C §26.1.3), which is 0",
        ),
        R::Encls | R::Enclv => Impossible("SGX is hidden and ENCLS exiting is 0"),
        R::PmlFull => Impossible("page-modification logging is not enabled"),
        R::Xsaves | R::Xrstors => Impossible(
            "XSAVES/XRSTORS are hidden and \"enable XSAVES/XRSTORS\" is 0: they raise #UD",
        ),
        R::Pconfig => Impossible("\"enable PCONFIG\" is 0: PCONFIG raises #UD"),
        R::SppEvent => Impossible("sub-page write permissions are not enabled"),
        R::Umwait | R::Tpause => {
            Impossible("\"enable user wait and pause\" is 0: UMWAIT/TPAUSE raise #UD")
        }
        R::Loadiwkey => Impossible("LOADIWKEY exiting is 0 (Key Locker is hidden)"),
        R::EnqcmdPasidFailure | R::EnqcmdsPasidFailure => {
            Impossible("PASID translation is not enabled")
        }
        R::BusLock => Impossible("VMM bus-lock detection is not enabled"),
        R::InstructionTimeout => Impossible("instruction timeouts are not enabled"),
        R::Rdmsrlist | R::Wrmsrlist => {
            Impossible("the MSR-list instructions are not enabled (no tertiary controls)")
        }
        R::Unknown(_) => Impossible("an exit reason the SDM does not define"),
    }
}

/// The source of a task switch (exit qualification bits 31:30, SDM Vol. 3C §28.2.1 Table
/// 28-2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskSwitchSource {
    /// CALL instruction.
    Call,
    /// IRET instruction.
    Iret,
    /// JMP instruction.
    Jmp,
    /// A task gate in the IDT.
    IdtTaskGate,
}

/// A decoded task-switch exit qualification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskSwitch {
    /// Selector of the task-state segment (bits 15:0).
    pub selector: u16,
    /// What started the switch (bits 31:30).
    pub source: TaskSwitchSource,
}

impl TaskSwitch {
    /// Decodes the exit qualification of a task-switch exit (SDM Vol. 3C Table 28-2).
    pub const fn from_qualification(q: u64) -> Self {
        let source = match (q >> 30) & 0b11 {
            0 => TaskSwitchSource::Call,
            1 => TaskSwitchSource::Iret,
            2 => TaskSwitchSource::Jmp,
            _ => TaskSwitchSource::IdtTaskGate,
        };
        TaskSwitch {
            selector: q as u16,
            source,
        }
    }
}

impl core::fmt::Display for TaskSwitchSource {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::Call => "CALL",
            Self::Iret => "IRET",
            Self::Jmp => "JMP",
            Self::IdtTaskGate => "a task gate in the IDT",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_defined_basic_reason_has_a_decision() {
        let mut defined = 0;
        for n in 0..=u16::MAX {
            let r = ExitReason::from_basic(n);
            let d = disposition(r);
            if let ExitReason::Unknown(_) = r {
                assert!(matches!(d, Disposition::Impossible(_)), "{n}");
                continue;
            }
            defined += 1;
            assert_eq!(r.number(), n);
            if let Disposition::InvalidOpcode(why)
            | Disposition::Impossible(why)
            | Disposition::Stop(why) = d
            {
                assert!(why.len() > 10, "{r}: say why");
            }
        }
        // SDM Vol. 3D Table C-1 defines 0-79 except 35, 38, 42 and 71.
        assert_eq!(defined, 76);
        for n in [35u16, 38, 42, 71, 80] {
            assert!(matches!(ExitReason::from_basic(n), ExitReason::Unknown(_)));
        }
    }

    #[test]
    fn the_unconditional_exits_of_26_1_2_are_all_decided_without_a_bug_stop() {
        // SDM Vol. 3C §26.1.2: CPUID, GETSEC, INVD, XSETBV and the VMX instructions exit
        // whatever the controls; none of them may land in `Impossible`.
        for r in [
            ExitReason::Cpuid,
            ExitReason::Getsec,
            ExitReason::Invd,
            ExitReason::Xsetbv,
            ExitReason::Vmcall,
            ExitReason::Vmclear,
            ExitReason::Vmlaunch,
            ExitReason::Vmptrld,
            ExitReason::Vmptrst,
            ExitReason::Vmread,
            ExitReason::Vmresume,
            ExitReason::Vmwrite,
            ExitReason::Vmxoff,
            ExitReason::Vmxon,
            ExitReason::Invept,
            ExitReason::Invvpid,
            ExitReason::Seamcall,
            ExitReason::Tdcall,
            ExitReason::TaskSwitch,
        ] {
            assert!(
                !matches!(disposition(r), Disposition::Impossible(_)),
                "{r} exits unconditionally"
            );
        }
        assert_eq!(
            disposition(ExitReason::TaskSwitch),
            Disposition::Stop(TASK_SWITCH_STOP)
        );
    }

    #[test]
    fn task_switch_qualification() {
        let t = TaskSwitch::from_qualification((2 << 30) | 0x28);
        assert_eq!(t.selector, 0x28);
        assert_eq!(t.source, TaskSwitchSource::Jmp);
        assert_eq!(
            TaskSwitch::from_qualification(3 << 30).source,
            TaskSwitchSource::IdtTaskGate
        );
        assert_eq!(
            TaskSwitch::from_qualification(0x1_0000_0008).source,
            TaskSwitchSource::Call
        );
    }
}
