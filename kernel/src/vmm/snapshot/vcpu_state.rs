//! One vCPU's architectural state out of its VMCS and the hypervisor's own records into a
//! snapshot (`vm::snapshot::VcpuState`), and back into a freshly programmed VMCS. Both run on
//! the vCPU's home CPU with its VMCS current and the vCPU switched out (its MSR, extended and
//! debug state saved into the `Vcpu`).

use super::super::setup::SEGMENT_FIELDS;
use super::super::*;
use vm::snapshot::vcpu::{
    DescriptorTable, HeldState, PendingEvent, RunState, Segment, VcpuState, SEGMENTS,
};
use vmx::exit::InterruptionInfo;

/// VM-entry interruption information bit 31: valid (SDM Vol. 3C §25.8.3).
const ENTRY_EVENT_VALID: u64 = 1 << 31;
/// EFER.LMA (SDM Vol. 3A §2.2.1): the "IA-32e mode guest" entry control follows it
/// (SDM Vol. 3C §27.3.1.1).
const EFER_LMA: u64 = 1 << 10;

fn read(field: vmcs::GuestField) -> u64 {
    vmcs::read_exit(field.field())
}

fn event_of(i: &Injection) -> PendingEvent {
    PendingEvent {
        interruption_info: i.info.raw(),
        error_code: i.error_code.unwrap_or(0),
        instruction_len: i.instruction_length.unwrap_or(0),
    }
}

fn injection_of(p: PendingEvent) -> Injection {
    let info = InterruptionInfo::from_raw(p.interruption_info);
    Injection {
        info,
        error_code: info.error_code_valid().then_some(p.error_code),
        instruction_length: info
            .kind()
            .uses_instruction_length()
            .then_some(p.instruction_len),
    }
}

impl Vcpu {
    /// This vCPU's state, its VMCS current. `guest_tsc` holds the TSC offset: the collector
    /// turns it into the guest's TSC at the moment the snapshot is taken.
    pub(in crate::vmm) fn capture(&self, policy: &vm::msr::MsrPolicy) -> VcpuState {
        let r = &self.regs;
        let mut segments = [Segment::default(); SEGMENTS];
        for (s, [sel, base, limit, ar]) in segments.iter_mut().zip(SEGMENT_FIELDS) {
            *s = Segment {
                selector: read(sel) as u16,
                base: read(base),
                limit: read(limit) as u32,
                access_rights: read(ar) as u32,
            };
        }
        let entry_info = read(vmcs::guest_field!(VM_ENTRY_INTERRUPTION_INFO));
        let pending_event = (entry_info & ENTRY_EVENT_VALID != 0).then(|| PendingEvent {
            interruption_info: entry_info as u32,
            error_code: read(vmcs::guest_field!(VM_ENTRY_EXCEPTION_ERROR_CODE)) as u32,
            instruction_len: read(vmcs::guest_field!(VM_ENTRY_INSTRUCTION_LENGTH)) as u32,
        });
        let m = &self.msr_state;
        VcpuState {
            gprs: [
                r.rax,
                r.rcx,
                r.rdx,
                r.rbx,
                read(vmcs::guest_field!(GUEST_RSP)),
                r.rbp,
                r.rsi,
                r.rdi,
                r.r8,
                r.r9,
                r.r10,
                r.r11,
                r.r12,
                r.r13,
                r.r14,
                r.r15,
            ],
            rip: read(vmcs::guest_field!(GUEST_RIP)),
            rflags: read(vmcs::guest_field!(GUEST_RFLAGS)),
            segments,
            gdtr: DescriptorTable {
                base: read(vmcs::guest_field!(GUEST_GDTR_BASE)),
                limit: read(vmcs::guest_field!(GUEST_GDTR_LIMIT)) as u16,
            },
            idtr: DescriptorTable {
                base: read(vmcs::guest_field!(GUEST_IDTR_BASE)),
                limit: read(vmcs::guest_field!(GUEST_IDTR_LIMIT)) as u16,
            },
            cr0: vmcs::guest_cr0(),
            cr2: r.cr2,
            cr3: read(vmcs::guest_field!(GUEST_CR3)),
            cr4: vmcs::guest_cr4(),
            // The TPR lives in the local APIC's page (its section), CR8 is its view.
            cr8: 0,
            dr6: self.debug.dr6,
            dr7: read(vmcs::guest_field!(GUEST_DR7)),
            efer: read(vmcs::guest_field!(GUEST_IA32_EFER)),
            pat: read(vmcs::guest_field!(GUEST_IA32_PAT)),
            sysenter_cs: read(vmcs::guest_field!(GUEST_IA32_SYSENTER_CS)),
            sysenter_esp: read(vmcs::guest_field!(GUEST_IA32_SYSENTER_ESP)),
            sysenter_eip: read(vmcs::guest_field!(GUEST_IA32_SYSENTER_EIP)),
            star: m.star,
            lstar: m.lstar,
            cstar: m.cstar,
            sfmask: m.sfmask,
            kernel_gs_base: m.kernel_gs_base,
            tsc_aux: m.tsc_aux,
            guest_tsc: m.tsc_offset,
            activity_state: read(vmcs::guest_field!(GUEST_ACTIVITY_STATE)) as u32,
            interruptibility: read(vmcs::guest_field!(GUEST_INTERRUPTIBILITY_STATE)) as u32,
            pending_debug: read(vmcs::guest_field!(GUEST_PENDING_DEBUG_EXCEPTIONS)),
            pending_event,
            xcr0: self.xstate.xcr0,
            xsave: self.xstate.image().to_vec(),
            dr: self.debug.dr,
            emulated_msrs: policy.saved_msrs(m),
            held: HeldState {
                run: match self.state {
                    State::Halted => RunState::Halted,
                    State::WaitForSipi => RunState::WaitForSipi,
                    _ => RunState::Runnable,
                },
                deferred_event: self.deferred_event.as_ref().map(event_of),
                nmi_pending: self.nmi_pending,
                pending_startup: self.pending_startup,
                pv_unhalted: self.pv_unhalted,
                halted_irqs_off: self.halted_irqs_off,
                idle_call: self.idle_call,
                poll_control: self.poll_control,
            },
        }
    }

    /// Makes this freshly restarted vCPU (its VMCS current and programmed as at creation)
    /// continue from `s`, with the guest TSC equal to `s.guest_tsc` at host TSC `restore_tsc`.
    /// What VM entry checks (segments, control registers, event) fails this VM's entry, not
    /// the host; what the host loads itself (MSRs, extended state) is checked here first.
    pub(in crate::vmm) fn apply_snapshot(
        &mut self,
        vm: &Vm,
        s: &VcpuState,
        restore_tsc: u64,
    ) -> Result<(), &'static str> {
        let policy = vm.platform.msr_policy();
        let mut msr = self.msr_state.clone();
        policy
            .restore_saved(&mut msr, &s.emulated_msrs)
            .map_err(|_| "an emulated MSR value the guest could not have written")?;
        for (swapped, value) in [
            (vmx::msr::Msr::IA32_STAR, s.star),
            (vmx::msr::Msr::IA32_LSTAR, s.lstar),
            (vmx::msr::Msr::IA32_CSTAR, s.cstar),
            (vmx::msr::Msr::IA32_FMASK, s.sfmask),
            (vmx::msr::Msr::IA32_KERNEL_GS_BASE, s.kernel_gs_base),
            (vmx::msr::Msr::IA32_TSC_AUX, s.tsc_aux),
        ] {
            // The guest's own WRMSR rules: canonical addresses, no reserved high halves.
            let ctx = vm::msr::MsrContext::default();
            if policy.wrmsr(&mut msr, swapped.0, value, &ctx) != vm::msr::MsrAction::Written {
                return Err("a syscall or TSC_AUX MSR value the guest could not have written");
            }
        }
        if s.dr.iter().any(|&d| !canonical(d)) {
            return Err("a debug address register that is not canonical");
        }
        // MOV to DR6 faults on bits 63:32 set (SDM Vol. 3B §18.2.3).
        if s.dr6 >> 32 != 0 {
            return Err("DR6 with bits 63:32 set");
        }
        self.xstate
            .load_image(&s.xsave, s.xcr0, vm.platform.xcr0_supported())?;
        msr.tsc_offset = s.guest_tsc.wrapping_sub(restore_tsc);
        self.msr_state = msr;
        self.debug.dr = s.dr;
        self.debug.dr6 = s.dr6;

        let w = |f: vmcs::GuestField, v: u64| {
            vmcs::write_guest(f, v).map_err(|_| "VMWRITE of the guest state failed")
        };
        for (seg, [sel, base, limit, ar]) in s.segments.iter().zip(SEGMENT_FIELDS) {
            w(sel, u64::from(seg.selector))?;
            w(base, seg.base)?;
            w(limit, u64::from(seg.limit))?;
            w(ar, u64::from(seg.access_rights))?;
        }
        w(vmcs::guest_field!(GUEST_GDTR_BASE), s.gdtr.base)?;
        w(
            vmcs::guest_field!(GUEST_GDTR_LIMIT),
            u64::from(s.gdtr.limit),
        )?;
        w(vmcs::guest_field!(GUEST_IDTR_BASE), s.idtr.base)?;
        w(
            vmcs::guest_field!(GUEST_IDTR_LIMIT),
            u64::from(s.idtr.limit),
        )?;
        // The guest's view goes to the read shadows, the CPU's value gets the bits VMX
        // fixes (SDM Vol. 3C §25.6.6, Appendix A.7-A.8).
        w(vmcs::guest_field!(CR0_READ_SHADOW), s.cr0)?;
        w(vmcs::guest_field!(CR4_READ_SHADOW), s.cr4)?;
        w(
            vmcs::guest_field!(GUEST_CR0),
            setup::effective_cr0(&vm.caps, s.cr0),
        )?;
        w(
            vmcs::guest_field!(GUEST_CR4),
            setup::effective_cr4(&vm.caps, s.cr4),
        )?;
        w(vmcs::guest_field!(GUEST_CR3), s.cr3)?;
        w(vmcs::guest_field!(GUEST_DR7), s.dr7)?;
        w(vmcs::guest_field!(GUEST_IA32_EFER), s.efer)?;
        w(vmcs::guest_field!(GUEST_IA32_PAT), s.pat)?;
        w(vmcs::guest_field!(GUEST_IA32_SYSENTER_CS), s.sysenter_cs)?;
        w(vmcs::guest_field!(GUEST_IA32_SYSENTER_ESP), s.sysenter_esp)?;
        w(vmcs::guest_field!(GUEST_IA32_SYSENTER_EIP), s.sysenter_eip)?;
        w(vmcs::guest_field!(GUEST_RSP), s.gprs[4])?;
        w(vmcs::guest_field!(GUEST_RIP), s.rip)?;
        w(vmcs::guest_field!(GUEST_RFLAGS), s.rflags)?;
        w(
            vmcs::guest_field!(GUEST_ACTIVITY_STATE),
            u64::from(s.activity_state),
        )?;
        w(
            vmcs::guest_field!(GUEST_INTERRUPTIBILITY_STATE),
            u64::from(s.interruptibility),
        )?;
        w(
            vmcs::guest_field!(GUEST_PENDING_DEBUG_EXCEPTIONS),
            s.pending_debug,
        )?;
        w(vmcs::guest_field!(TSC_OFFSET), self.msr_state.tsc_offset)?;
        match s.pending_event {
            Some(p) => {
                w(
                    vmcs::guest_field!(VM_ENTRY_INTERRUPTION_INFO),
                    u64::from(p.interruption_info),
                )?;
                w(
                    vmcs::guest_field!(VM_ENTRY_EXCEPTION_ERROR_CODE),
                    u64::from(p.error_code),
                )?;
                w(
                    vmcs::guest_field!(VM_ENTRY_INSTRUCTION_LENGTH),
                    u64::from(p.instruction_len),
                )?;
            }
            None => w(vmcs::guest_field!(VM_ENTRY_INTERRUPTION_INFO), 0)?,
        }
        setup::set_ia32e_mode_guest(&mut self.controls, s.efer & EFER_LMA != 0)
            .map_err(|_| "VMWRITE of the entry controls failed")?;
        let g = &s.gprs;
        self.regs = GuestRegs {
            rax: g[0],
            rcx: g[1],
            rdx: g[2],
            rbx: g[3],
            rbp: g[5],
            rsi: g[6],
            rdi: g[7],
            r8: g[8],
            r9: g[9],
            r10: g[10],
            r11: g[11],
            r12: g[12],
            r13: g[13],
            r14: g[14],
            r15: g[15],
            cr2: s.cr2,
        };
        let h = &s.held;
        self.state = match h.run {
            RunState::Runnable => State::Runnable,
            RunState::Halted => State::Halted,
            RunState::WaitForSipi => State::WaitForSipi,
        };
        self.deferred_event = h.deferred_event.map(injection_of);
        self.nmi_pending = h.nmi_pending;
        self.pending_startup = h.pending_startup;
        self.pv_unhalted = h.pv_unhalted;
        self.halted_irqs_off = h.halted_irqs_off;
        self.idle_call = h.idle_call;
        self.poll_control = h.poll_control;
        // The first entry writes the EOI-exit bitmap again.
        self.eoi_exit_generation = u64::MAX;
        Ok(())
    }
}

/// A canonical 48-bit linear address (SDM Vol. 1 §3.3.7.1): bits 63:47 all equal.
fn canonical(addr: u64) -> bool {
    let top = addr >> 47;
    top == 0 || top == (1 << 17) - 1
}
