//! A local APIC in a VM snapshot (issue 18): [`LocalApic::save_state`] appends the model's
//! guest-visible state as a fixed sequence of fields, [`LocalApic::load_state`] reads it back
//! into a model created with the same [`ApicConfig`], after checking every field, so that no
//! later access can find the model in a state the register interface could not have made.
//!
//! | field | codec | notes |
//! |---|---|---|
//! | initial APIC ID | u32 | [`ApicConfig::apic_id`], only to refuse a restore into another vCPU |
//! | IA32_APIC_BASE | u64 | |
//! | register page | 1024 × u32 | the virtual-APIC page, every word, reserved ones included |
//! | ESR latch | u32 | errors since the last ESR write (§11.5.3) |
//! | timer | u8, 2 × u64, u8, 2 × u64 | mode, divisor, initial count, armed, deadline, period (timer.rs) |
//!
//! Not saved: [`ApicStats`] (host bookkeeping: the restored model keeps its own counters,
//! zero in a fresh one) and the rest of [`ApicConfig`] (BSP, MAXPHYADDR, clock rates: the
//! restoring vCPU's own; IA32_APIC_BASE.BSP must agree with it). The only timestamp, the
//! timer's deadline, is host TSC (timer.rs) and moves by the restore's shift.

use alloc::vec;

use super::access::{LDR_XAPIC_MASK, SVR_WRITE_MASK, TPR_MASK};
use super::icr::{ICR_HIGH_XAPIC_MASK, ICR_LOW_WRITE_MASK};
use super::registers::*;
use super::timer::{TimerRegisters, DIVIDE_WRITE_MASK};
use super::{
    mode_of, x2apic_ldr, ApicConfig, ApicMode, ApicPage, LocalApic, APIC_BASE_BSP,
    APIC_BASE_LOW_RESERVED, FIRST_LEGAL_VECTOR, PAGE_WORDS,
};
use crate::snapshot::codec::{Dec, Enc};

/// The input ended before the last field.
const SHORT: &str = "the section ends early";
/// The saved APIC belongs to another vCPU.
const OTHER_VCPU: &str = "APIC ID differs from the restoring vCPU's";
/// ISR/TMR/IRR bits of vectors 0-15 in the first word of each (SDM Vol. 3A §11.5.2: the APIC
/// supports only vectors 16-255).
const ILLEGAL_VECTOR_BITS: u32 = (1 << FIRST_LEGAL_VECTOR) - 1;

impl<P: ApicPage> LocalApic<P> {
    /// Appends this APIC's state for a snapshot (see the module comment for the fields): the
    /// initial APIC ID, IA32_APIC_BASE, the 4 KiB register page, the ESR latch and the
    /// timer's arming state, whose deadline is in host TSC ticks. The counters are not saved.
    pub fn save_state(&self, e: &mut Enc) {
        e.u32(self.config.apic_id).u64(self.base);
        for &word in self.page.regs() {
            e.u32(word);
        }
        e.u32(self.esr_pending);
        self.timer.save_state(e);
    }

    /// Reads what [`Self::save_state`] wrote into this APIC, which must be freshly created by
    /// [`LocalApic::new`] with the saved APIC's configuration (the same vCPU: the initial APIC
    /// ID must match), and leaves `d` after the last field (the caller checks
    /// [`Dec::done`]). `shift` (the restoring host's TSC minus the snapshot's, modulo 2^64)
    /// moves the timer's deadline, so the timer continues as if the VM had been paused; the
    /// kernel keeps the guest's TSC continuous through its TSC offset, and the TSC-deadline
    /// MSR's guest value, converted to host TSC when written, moves with it.
    ///
    /// Every field is checked against what the register interface can produce; the first bad
    /// one is named in the error ("the section ends early", "APIC base with reserved bits
    /// set", "timer mode 3 is reserved", ...) and `self` is then unchanged. PPR is not
    /// trusted: it is recomputed from TPR and ISR (SDM Vol. 3A §11.8.3.1), as the CPU's TPR
    /// shadow may have changed TPR without an exit.
    ///
    /// After a successful load the kernel treats the APIC as after a mode change (APIC-access
    /// controls, MSR bitmap, MMIO base) and re-reads [`Self::timer_deadline`] and the pending
    /// interrupt state (RVI/SVI, TPR threshold) before the first entry.
    pub fn load_state(&mut self, d: &mut Dec, shift: u64) -> Result<(), &'static str> {
        if d.u32().ok_or(SHORT)? != self.config.apic_id {
            return Err(OTHER_VCPU);
        }
        let base = d.u64().ok_or(SHORT)?;
        let mode = check_base(base, &self.config)?;
        let mut page = vec![0u32; PAGE_WORDS];
        for word in page.iter_mut() {
            *word = d.u32().ok_or(SHORT)?;
        }
        check_page(&page, mode, self.config.apic_id)?;
        let esr_pending = d.u32().ok_or(SHORT)?;
        // §11.5.3: only the errors the model detects are latched.
        if esr_pending & !ESR_MODEL_BITS != 0 {
            return Err("ESR latch with reserved bits set");
        }
        let regs = TimerRegisters {
            lvt: page[ApicRegister::LvtTimer.word()],
            initial_count: page[ApicRegister::TimerInitialCount.word()],
            divide: page[ApicRegister::TimerDivide.word()],
        };
        let timer = self.timer.load_state(d, shift, regs)?;
        self.page.regs_mut().copy_from_slice(&page);
        self.base = base;
        self.esr_pending = esr_pending;
        self.timer = timer;
        self.update_ppr();
        Ok(())
    }
}

/// The mode of a saved IA32_APIC_BASE, if the value is one a WRMSR could have left.
fn check_base(base: u64, config: &ApicConfig) -> Result<ApicMode, &'static str> {
    let phys_bits = u32::from(config.max_phys_addr_bits).min(u64::BITS);
    let above_maxphyaddr = u64::MAX.checked_shl(phys_bits).unwrap_or(0);
    // SDM Vol. 3A §11.4.4, Figure 11-5: bits 0-7, 9 and MAXPHYADDR-63 are reserved.
    if base & (APIC_BASE_LOW_RESERVED | above_maxphyaddr) != 0 {
        return Err("APIC base with reserved bits set");
    }
    // §11.4.4: the BSP flag is the processor's; the restoring vCPU must have the same role.
    if (base & APIC_BASE_BSP != 0) != config.bsp {
        return Err("APIC base BSP flag differs from the restoring vCPU's");
    }
    // §11.12.5, Figure 11-27: EXTD = 1 with EN = 0 is the invalid state.
    mode_of(base).ok_or("APIC base with x2APIC mode but the APIC disabled")
}

/// Checks the register page of an APIC in `mode` whose initial APIC ID is `apic_id`: every
/// register holds only bits its write path can store. PPR and the words no register uses
/// (and EOI, SELF IPI, the current count, which the CPU may write but nothing reads) are
/// not checked.
fn check_page(page: &[u32], mode: ApicMode, apic_id: u32) -> Result<(), &'static str> {
    let reg = |r: ApicRegister| page[r.word()];
    let x2apic = mode == ApicMode::X2Apic;
    if x2apic {
        // §11.12.5.1: in x2APIC mode the ID is the 32-bit initial APIC ID (read-only,
        // §11.12.2) and LDR is derived from it (§11.12.10.2).
        if reg(ApicRegister::Id) != apic_id {
            return Err(OTHER_VCPU);
        }
    } else if reg(ApicRegister::Id) & !XAPIC_ID_MASK != 0 {
        // §11.4.6: the xAPIC ID is bits 31:24.
        return Err("xAPIC ID with reserved bits set");
    }
    // §11.4.8: the version register is read-only.
    if reg(ApicRegister::Version) != VERSION_REGISTER {
        return Err("version register differs from the model's");
    }
    // §11.8.3.1: TPR bits 31:8 are reserved.
    if reg(ApicRegister::Tpr) & !TPR_MASK != 0 {
        return Err("TPR with reserved bits set");
    }
    if x2apic {
        if reg(ApicRegister::Ldr) != x2apic_ldr(apic_id) {
            return Err("x2APIC LDR not derived from the APIC ID");
        }
    } else if reg(ApicRegister::Ldr) & !LDR_XAPIC_MASK != 0 {
        // §11.6.2.2: the xAPIC logical ID is bits 31:24.
        return Err("LDR with reserved bits set");
    }
    // §11.6.2.2, Figure 11-14: DFR bits 27:0 read as ones.
    if reg(ApicRegister::Dfr) & DFR_RESERVED_ONES != DFR_RESERVED_ONES {
        return Err("DFR bits 27:0 not all ones");
    }
    // §11.9, Figure 11-23.
    if reg(ApicRegister::Svr) & !SVR_WRITE_MASK != 0 {
        return Err("SVR with reserved bits set");
    }
    // §11.5.2: vectors 0-15 are never accepted, so never requested or in service.
    for block in [
        ApicRegister::Isr(0),
        ApicRegister::Tmr(0),
        ApicRegister::Irr(0),
    ] {
        if reg(block) & ILLEGAL_VECTOR_BITS != 0 {
            return Err("a vector below 16 in ISR, TMR or IRR");
        }
    }
    // §11.5.3: the ESR shows the latched errors.
    if reg(ApicRegister::Esr) & !ESR_MODEL_BITS != 0 {
        return Err("ESR with reserved bits set");
    }
    // §11.5.1, Figure 11-8: reserved LVT bits read 0; delivery status and remote IRR are
    // never set by the model.
    for lvt in LVTS {
        if reg(lvt) & !lvt.lvt_write_mask().unwrap_or(0) != 0 {
            return Err("an LVT with reserved bits set");
        }
    }
    // §11.6.1, Figure 11-12 (and §11.12.9: in x2APIC mode ICR bits 63:32 are all
    // destination).
    if reg(ApicRegister::IcrLow) & !ICR_LOW_WRITE_MASK != 0 {
        return Err("ICR with reserved bits set");
    }
    if !x2apic && reg(ApicRegister::IcrHigh) & !ICR_HIGH_XAPIC_MASK != 0 {
        return Err("ICR destination with reserved bits set");
    }
    // §11.5.4, Figure 11-10: bit 2 and bits 31:4 of the divide configuration are reserved.
    if reg(ApicRegister::TimerDivide) & !DIVIDE_WRITE_MASK != 0 {
        return Err("divide configuration with reserved bits set");
    }
    Ok(())
}
