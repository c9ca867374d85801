//! Event injection (SDM Vol. 3C §27.6 "Event Injection"): the VM-entry interruption fields,
//! and the delivery of the next pending interrupt when the guest can take it.

use super::*;

/// CR0.PE (SDM Vol. 3A §2.5).
pub(super) const CR0_PE: u64 = 1 << 0;

/// Programs the VM-entry event-injection fields for `event` (SDM Vol. 3C §25.8.3), without
/// an error code while the guest is in real mode (SDM Vol. 3C §27.2.1.3).
pub(super) fn write_injection(event: &Injection) {
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

impl VcpuExit<'_> {
    /// Delivers the next interrupt if the guest can take it now (RFLAGS.IF = 1, no STI/MOV-SS
    /// blocking, no event already being injected: SDM Vol. 3C §27.6.1 and §26.8), otherwise
    /// asks for an exit when the window opens (interrupt-window exiting, §26.7.5). An
    /// interrupt deferred behind an exception (see [`Vcpu::deferred_event`]) goes first, then
    /// the PIC's. The 8259A's output reaches the boot vCPU only (as its INTR pin is wired on a
    /// PC: SDM Vol. 3A §11.1, ExtINT through LINT0 of the bootstrap processor).
    pub(super) fn inject_pending_interrupt(&mut self) {
        let pic = self.vcpu.index == 0;
        if self.vcpu.deferred_event.is_none() && !(pic && self.platform.pending_vector().is_some())
        {
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
            None if !pic => None,
            None => self.platform.acknowledge().map(|vector| Injection {
                info: InterruptionInfo::new_external_interrupt(vector),
                error_code: None,
                instruction_length: None,
            }),
        };
        if let Some(event) = event {
            write_injection(&event);
            self.vcpu.stats.interrupts_injected += 1;
            // A halted guest resumes at the instruction after HLT (activity state active).
            let _ = vmcs::write_guest(vmcs::guest_field!(GUEST_ACTIVITY_STATE), 0);
        }
    }
}
