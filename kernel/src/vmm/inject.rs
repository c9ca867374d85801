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

/// Interruptibility-state bits (SDM Vol. 3C §25.4.2 Table 25-3).
const BLOCKING_BY_STI: u64 = 1 << 0;
const BLOCKING_BY_MOV_SS: u64 = 1 << 1;
const BLOCKING_BY_NMI: u64 = 1 << 3;
/// RFLAGS.IF (SDM Vol. 3A §2.3).
const RFLAGS_IF: u64 = 1 << 9;
/// The valid bit of the VM-entry interruption-information field (SDM Vol. 3C §25.8.3).
const INJECTION_VALID: u64 = 1 << 31;

impl VcpuExit<'_> {
    /// Whether the 8259A's output reaches this vCPU now: its INTR line is wired to the boot
    /// vCPU's LINT0 (SDM Vol. 3A §11.1), which passes it while the local APIC is hardware-
    /// disabled or LINT0 is an unmasked ExtINT entry (§11.5.1).
    fn pic_reaches_me(&self) -> bool {
        self.vcpu.index == 0 && self.vm.lapics[0].accepts_extint()
    }

    /// Delivers the next event if the guest can take it now, otherwise asks for an exit when
    /// the window opens (interrupt-window exiting, SDM Vol. 3C §26.7.5). In priority order
    /// (SDM Vol. 3A §7.9): an interrupt deferred behind an exception (see
    /// [`Vcpu::deferred_event`]), an NMI, the local APIC's highest-priority interrupt above its
    /// PPR (§11.8.3), the 8259A's (ExtINT, which bypasses the APIC's priority, §11.5.1).
    /// Maskable interrupts need RFLAGS.IF = 1 and no STI/MOV-SS blocking (§27.6.1, §26.8);
    /// NMIs no NMI or MOV-SS blocking (§26.3.1.5).
    pub(super) fn inject_pending_interrupt(&mut self) {
        let nmi = self.vcpu.nmi_pending;
        // With virtual-interrupt delivery the CPU delivers the APIC's interrupts itself from
        // RVI (apic_virtualization.rs, SDM Vol. 3C §30.2): nothing to inject for them.
        let apic = self.vm.apicv.is_none() && self.vm.lapics[self.vcpu.index].pending().is_some();
        let pic = self.pic_reaches_me() && self.platform.pending_vector().is_some();
        if self.vcpu.deferred_event.is_none() && !nmi && !apic && !pic {
            return;
        }
        if vmcs::read_exit(F::VM_ENTRY_INTERRUPTION_INFO) & INJECTION_VALID != 0 {
            return;
        }
        let blocking = vmcs::read_exit(F::GUEST_INTERRUPTIBILITY_STATE);
        if nmi
            && self.vcpu.deferred_event.is_none()
            && blocking & (BLOCKING_BY_NMI | BLOCKING_BY_MOV_SS) == 0
        {
            self.vcpu.nmi_pending = false;
            write_injection(&Injection {
                info: InterruptionInfo::new_nmi(),
                error_code: None,
                instruction_length: None,
            });
            self.vcpu.stats.interrupts_injected += 1;
            let _ = vmcs::write_guest(vmcs::guest_field!(GUEST_ACTIVITY_STATE), 0);
            return;
        }
        let rflags = vmcs::read_exit(F::GUEST_RFLAGS);
        if rflags & RFLAGS_IF == 0 || blocking & (BLOCKING_BY_STI | BLOCKING_BY_MOV_SS) != 0 {
            if self.vcpu.deferred_event.is_some() || apic || pic {
                let _ = setup::set_interrupt_window_exiting(&mut self.vcpu.controls, true);
            }
            return;
        }
        let event = match self.vcpu.deferred_event.take() {
            Some(event) => Some(event),
            None => {
                let index = self.vcpu.index;
                let vector = match apic.then(|| self.vm.lapics[index].acknowledge()).flatten() {
                    Some(v) => Some(v),
                    None if pic => self.platform.acknowledge(),
                    None => None,
                };
                vector.map(|vector| Injection {
                    info: InterruptionInfo::new_external_interrupt(vector),
                    error_code: None,
                    instruction_length: None,
                })
            }
        };
        if let Some(event) = event {
            write_injection(&event);
            self.vcpu.stats.interrupts_injected += 1;
            // A halted guest resumes at the instruction after HLT (activity state active).
            let _ = vmcs::write_guest(vmcs::guest_field!(GUEST_ACTIVITY_STATE), 0);
        }
    }
}
