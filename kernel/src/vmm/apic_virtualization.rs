//! APIC virtualization at work (SDM Vol. 3C ch. 30; the controls in setup.rs, the decisions in
//! vmx::apicv): before each entry the guest interrupt status and the EOI-exit bitmap follow
//! the vCPU's local APIC model, whose register file is the virtual-APIC page; the three exits
//! it adds are handled here: APIC access (reason 44), virtualized EOI (45) and APIC write
//! (56). Interrupts then reach the guest without an exit to inject them (virtual-interrupt
//! delivery, §30.2), and EOIs of edge-triggered vectors, TPR writes and x2APIC self-IPIs
//! complete without one.

use super::*;
use vmx::exit::ApicAccessKind;

impl VcpuExit<'_> {
    /// Before VM entry: RVI = the highest vector in the model's IRR, SVI = the highest in
    /// service (SDM Vol. 3C §25.4.2, evaluated by the CPU at entry: §30.2.1), and the
    /// EOI-exit bitmap = the IOAPIC's level-triggered vectors, whose EOIs must reach it
    /// (§30.1.4: a set bit makes that vector's virtualized EOI exit).
    pub(super) fn sync_virtual_interrupts(&mut self) {
        let lapic = &self.vm.lapics[self.vcpu.index];
        let status = vmx::apicv::guest_interrupt_status(lapic.highest_irr(), lapic.highest_isr());
        let _ = vmcs::write_guest(
            vmcs::guest_field!(GUEST_INTERRUPT_STATUS),
            u64::from(status),
        );
        let (generation, level) = self.vm.platform.ioapic_level_vectors();
        if generation != self.vcpu.eoi_exit_generation {
            self.vcpu.eoi_exit_generation = generation;
            for (field, bits) in [
                F::EOI_EXIT_BITMAP_0,
                F::EOI_EXIT_BITMAP_1,
                F::EOI_EXIT_BITMAP_2,
                F::EOI_EXIT_BITMAP_3,
            ]
            .into_iter()
            .zip(level)
            {
                // SAFETY: the EOI-exit bitmap only decides which virtualized EOIs of this
                // vCPU exit (SDM Vol. 3C §30.1.4); no host state is involved.
                let _ = unsafe { vmcs::write(field, bits) };
            }
        }
    }

    /// The guest changed its APIC's mode (IA32_APIC_BASE): the APIC-access control and MSR
    /// bitmap follow it (setup::set_apic_access_mode).
    pub(super) fn apic_mode_changed(&mut self) -> Result<(), &'static str> {
        let Some(apicv) = self.vm.apicv else {
            return Ok(());
        };
        let mode = self.vm.lapics[self.vcpu.index].mode();
        let (xapic, x2apic, bitmap) = match mode {
            vm::apic::ApicMode::XApic => (true, false, apicv.xapic_msr_bitmap),
            vm::apic::ApicMode::X2Apic => (false, true, apicv.x2apic_msr_bitmap),
            vm::apic::ApicMode::Disabled => (false, false, apicv.xapic_msr_bitmap),
        };
        setup::set_apic_access_mode(&mut self.vcpu.controls, xapic, x2apic, bitmap)
            .map_err(|_| "VMWRITE of the APIC-access controls failed")
    }

    /// APIC access (reason 44, fault-like: SDM Vol. 3C §30.4.1, §28.2.1 Table 28-6): an
    /// access to the APIC-access page the CPU does not virtualize (the timer's current count,
    /// reserved offsets, sub-dword or misaligned accesses). A data read or write by an
    /// instruction is emulated against the model like any MMIO access; one during event
    /// delivery or an instruction fetch means the guest put its IDT, stack or code in the APIC
    /// page, and the VM stops.
    pub(super) fn apic_access(&mut self, info: &ExitInfo) -> Action {
        let access = vmx::exit::ApicAccess::from_qualification(info.qualification);
        let gpa = self.vm.lapics[self.vcpu.index].mmio_base() + u64::from(access.offset);
        match access.kind {
            ApicAccessKind::LinearRead | ApicAccessKind::LinearWrite => self.mmio(gpa, info),
            _ => Action::Stop(StopReason::EventDeliveryThroughMmio {
                gpa,
                vector: info.interrupted.map_or(0, |e| e.info.vector()),
            }),
        }
    }

    /// APIC write (reason 56, trap-like: SDM Vol. 3C §30.4.3.3): the CPU wrote the value into
    /// the virtual-APIC page at the offset in the qualification; the model acts on it (an
    /// ICR write sends its IPI, an LVT or timer write re-arms, ...).
    pub(super) fn apic_write(&mut self, info: &ExitInfo) -> Action {
        let offset = (info.qualification & 0xFFF) as u16;
        self.vcpu.stats.apic_accesses += 1;
        let now = arch::rdtsc();
        let effect = self.lapic().apic_write(offset, now);
        self.apic_effect(effect);
        Action::Resume
    }

    /// Virtualized EOI (reason 45, trap-like: SDM Vol. 3C §30.1.4): the CPU ended the vector
    /// in the qualification (its ISR bit is clear, SVI updated) and exits because the
    /// EOI-exit bitmap names it: a level-triggered IOAPIC vector, whose EOI goes on to the
    /// IOAPIC.
    pub(super) fn virtualized_eoi(&mut self, info: &ExitInfo) -> Action {
        let vector = (info.qualification & 0xFF) as u8;
        self.vcpu.stats.apic_eoi_exits += 1;
        let effect = self.lapic().eoi_virtualized(vector);
        self.apic_effect(effect);
        Action::Resume
    }
}
