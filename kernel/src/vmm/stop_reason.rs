//! Why a VM ended: the stop reasons its report names.

use super::*;

/// Why a VM ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// HLT with RFLAGS.IF = 0 and nothing pending: the guest powered itself off.
    HaltedWithInterruptsDisabled,
    /// HLT with interrupts enabled but no device that could ever interrupt.
    HaltedWithoutInterruptSource,
    TripleFault,
    /// A guest access to guest-physical memory that is neither RAM nor an MMIO region.
    OutsideMemory {
        gpa: u64,
        access: &'static str,
    },
    /// An MMIO access Bulkhead could not emulate.
    MmioUnemulated {
        gpa: u64,
    },
    /// An exit reason Bulkhead does not handle.
    Unhandled(ExitReason),
    /// Delivering an event touched a virtio-mmio window (the guest's IDT, GDT or stack is
    /// there).
    EventDeliveryThroughMmio {
        gpa: u64,
        vector: u8,
    },
    /// An INS/OUTS whose instruction or memory operand is not in guest RAM (unmapped, or a
    /// device window).
    StringIoUnreachable {
        port: u16,
    },
    /// A hardware task switch (not emulated: vmx::disposition::TASK_SWITCH_STOP).
    TaskSwitch(vmx::disposition::TaskSwitch),
    /// VM entry failed (SDM Vol. 3C §27.8).
    EntryFailure {
        reason: ExitReason,
        qualification: u64,
    },
    /// VMLAUNCH/VMRESUME itself failed (VMfail, SDM Vol. 3C §31.2).
    EntryInstructionFailed {
        rflags: u64,
        error: u64,
    },
    /// The guest entered ACPI S5 (SLP_EN with `\_S5`'s sleep type in PM1a_CNT).
    AcpiPowerOff,
    /// The guest wrote its reset value to the FADT's reset register (port 0xCF9): its reboot.
    /// The VM ends with its report and, with `on-reboot = "restart"` (the default), starts
    /// again from its configuration (restart.rs).
    AcpiReset,
    /// INIT reached the boot vCPU (from its own ICR, another vCPU's, or the IOAPIC): the
    /// bootstrap processor would restart at the reset vector (SDM Vol. 3A §9.1.1, §9.4), and a
    /// VM has no firmware there, so the VM ends as if reset.
    InitOnBootVcpu,
    /// The operator's `stop VM` in the hypervisor shell (kernel/src/shell.rs).
    Operator,
    /// The operator's `restart VM`: it starts again from its configuration (restart.rs).
    OperatorRestart,
    /// A clone (`from-snapshot`) not started yet: it waits for `start` or `clone`.
    AwaitingSnapshot,
    /// A clone touched a page for which the machine had no free frame (clones overcommit
    /// the machine's memory: docs/architecture.md, "Instant clones").
    CloneOutOfMemory {
        gpa: u64,
    },
    /// Something only a hypervisor bug can cause.
    Bug(&'static str),
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StopReason::HaltedWithInterruptsDisabled => {
                write!(f, "guest halted with interrupts disabled (powered off)")
            }
            StopReason::HaltedWithoutInterruptSource => write!(
                f,
                "guest halted waiting for an interrupt no device can send"
            ),
            StopReason::TripleFault => write!(f, "triple fault"),
            StopReason::OutsideMemory { gpa, access } => {
                write!(
                    f,
                    "{access} of guest-physical {gpa:#x}, outside guest RAM and every MMIO region"
                )
            }
            StopReason::MmioUnemulated { gpa } => write!(f, "unemulated MMIO access at {gpa:#x}"),
            StopReason::Unhandled(r) => write!(f, "unhandled exit reason {r}"),
            StopReason::EventDeliveryThroughMmio { gpa, vector } => write!(
                f,
                "delivering vector {vector:#x} touched the device window at {gpa:#x} (the guest's IDT, GDT or stack is in MMIO)"
            ),
            StopReason::EntryFailure {
                reason,
                qualification,
            } => {
                let class = vmx::exit::EntryFailure::classify(
                    ExitReason::from_raw(u32::from(reason.number()) | (1 << 31)),
                    *qualification,
                );
                match class {
                    Some(class) => write!(
                        f,
                        "VM entry failed: {reason}, qualification {qualification:#x}: {class}"
                    ),
                    None => write!(
                        f,
                        "VM entry failed: {reason}, qualification {qualification:#x}"
                    ),
                }
            }
            StopReason::StringIoUnreachable { port } => write!(
                f,
                "string I/O on port {port:#x} with its instruction or memory operand outside guest RAM (not emulated)"
            ),
            StopReason::TaskSwitch(t) => write!(
                f,
                "task switch to TSS selector {:#x} by {}: {}",
                t.selector,
                t.source,
                vmx::disposition::TASK_SWITCH_STOP
            ),
            StopReason::EntryInstructionFailed { rflags, error } => {
                write!(
                    f,
                    "VMLAUNCH/VMRESUME failed (RFLAGS {rflags:#x}): VM-instruction error {error}"
                )
            }
            StopReason::AcpiPowerOff => write!(f, "guest powered off (ACPI S5)"),
            StopReason::AcpiReset => write!(f, "guest reset (ACPI reset register)"),
            StopReason::InitOnBootVcpu => write!(
                f,
                "INIT on the boot vCPU (a reset: the VM has no firmware at the reset vector)"
            ),
            StopReason::Operator => write!(f, "stopped by the operator (shell `stop`)"),
            StopReason::OperatorRestart => write!(
                f,
                "stopped by the operator to start again (shell `restart`)"
            ),
            StopReason::AwaitingSnapshot => write!(
                f,
                "not started: a clone starts from its snapshot with `start VM` or `clone SNAP N`"
            ),
            StopReason::CloneOutOfMemory { gpa } => write!(
                f,
                "the machine has no free memory for the page at {gpa:#x} this clone touched \
                 (clones share their snapshot's pages and take a frame per page they write); \
                 stop other clones or give the machine more memory"
            ),
            StopReason::Bug(m) => write!(f, "hypervisor bug: {m}"),
        }
    }
}
