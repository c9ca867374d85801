//! A per-vCPU virtual local APIC (SDM Vol. 3A ch. 11 "Advanced Programmable Interrupt
//! Controller (APIC)"; x2APIC §11.12) whose register file *is* the VMX virtual-APIC page
//! (SDM Vol. 3C §30.1 "Virtual APIC State").
//!
//! Every architectural register lives in the page at its xAPIC offset (32 bits at a 16-byte
//! stride), so with APIC virtualization the CPU and this model share one state: the CPU sets
//! VISR/clears VIRR on virtual-interrupt delivery, clears VISR on a virtualized EOI and writes
//! VTPR, and the model reads what it finds. Only what the page cannot hold is in the struct:
//! IA32_APIC_BASE, the ESR's pending-error latch, the timer's arming state, counters.
//!
//! | offset | register | xAPIC | x2APIC MSR | notes |
//! |---|---|---|---|---|
//! | 0x20 | ID | RW (31:24) | 0x802 RO | x2APIC: the 32-bit initial ID |
//! | 0x30 | version | RO | 0x803 RO | 0x14, max LVT 6, EOI-broadcast suppression |
//! | 0x80 | TPR | RW | 0x808 RW | |
//! | 0x90 | APR | RO (0) | — | not modelled (P6 arbitration) |
//! | 0xA0 | PPR | RO | 0x80A RO | recomputed on every TPR/ISR change |
//! | 0xB0 | EOI | WO | 0x80B WO | x2APIC: non-zero = #GP |
//! | 0xC0 | RRD | RO (0) | — | remote read unsupported |
//! | 0xD0 | LDR | RW (31:24) | 0x80D RO | x2APIC: (id >> 4) << 16 \| 1 << (id & 0xF) |
//! | 0xE0 | DFR | RW (31:28) | — | |
//! | 0xF0 | SVR | RW | 0x80F RW | bits 0-9, 12 |
//! | 0x100-0x270 | ISR, TMR, IRR | RO | 0x810-0x827 RO | |
//! | 0x280 | ESR | RW | 0x828 RW | write latches errors since the last write |
//! | 0x2F0-0x370 | LVT CMCI, timer, thermal, perf, LINT0, LINT1, error | RW | 0x82F, 0x832-0x837 | |
//! | 0x300/0x310 | ICR low/high | RW | 0x830 (64-bit) | a low write sends |
//! | 0x380/0x390/0x3E0 | timer initial/current count, divide | RW/RO/RW | 0x838/0x839/0x83E | |
//! | 0x3F0 | SELF IPI | — | 0x83F WO | |
//!
//! Handlers return an [`ApicEffect`] and never act outside the model. A fixed IPI with the
//! *self* shorthand (and every SELF IPI MSR write) is delivered into this APIC's IRR by the
//! model and reported as [`ApicEffect::SelfIpi`]; every other IPI, including one addressed
//! to the sender's own ID or to "all including self", is only returned as
//! [`ApicEffect::Ipi`] for the kernel's router to deliver (to this APIC too, through
//! [`LocalApic::accept`]).
//!
//! A snapshot (issue 18) saves and restores the whole model but its counters:
//! [`LocalApic::save_state`] / [`LocalApic::load_state`] (state.rs).

mod access;
mod destination;
mod error;
mod icr;
pub mod registers;
mod state;
mod timer;

#[cfg(test)]
mod tests;

use alloc::boxed::Box;
use core::fmt;

pub use destination::{X2APIC_BROADCAST, XAPIC_BROADCAST};
pub use error::ApicError;
pub use icr::{
    DeliveryMode, DestinationMode, Ipi, IpiDestination, Shorthand, TriggerMode, FIRST_LEGAL_VECTOR,
};
pub use registers::{Access, ApicRegister};
pub use timer::TimerMode;

use registers::*;
use timer::Timer;

/// IA32_APIC_BASE (SDM Vol. 3A §11.4.4, Figure 11-5).
pub const IA32_APIC_BASE: u32 = 0x1B;
/// IA32_TSC_DEADLINE (§11.5.4.1).
pub const IA32_TSC_DEADLINE: u32 = 0x6E0;
/// IA32_APIC_BASE bit 8: this is the bootstrap processor.
pub const APIC_BASE_BSP: u64 = 1 << 8;
/// IA32_APIC_BASE bit 10: x2APIC mode enable (§11.12.1).
pub const APIC_BASE_EXTD: u64 = 1 << 10;
/// IA32_APIC_BASE bit 11: APIC global enable.
pub const APIC_BASE_EN: u64 = 1 << 11;
/// The power-up APIC base address (§11.4.1).
pub const DEFAULT_APIC_BASE: u64 = 0xFEE0_0000;
/// IA32_APIC_BASE bits 0-7 and 9 are reserved.
const APIC_BASE_LOW_RESERVED: u64 = 0x2FF;
/// The base address field starts at bit 12 (4 KiB aligned).
const APIC_BASE_ADDRESS_SHIFT: u32 = 12;
/// A vector's priority class is its bits 7:4 (SDM Vol. 3A §11.8.3).
const PRIORITY_CLASS_SHIFT: u32 = 4;
/// Vectors per 32-bit ISR/TMR/IRR word (§11.8.4).
const VECTORS_PER_WORD: u8 = 32;
/// Bytes per page word.
const WORD_BYTES: usize = 4;
/// Words in the register page.
pub const PAGE_WORDS: usize = 1024;

/// The storage of a local APIC's registers: a 4 KiB page of 1024 32-bit words, the VMX
/// virtual-APIC page when APIC virtualization is on.
pub trait ApicPage {
    /// The page.
    fn regs(&self) -> &[u32; PAGE_WORDS];
    /// The page, writable.
    fn regs_mut(&mut self) -> &mut [u32; PAGE_WORDS];
}

impl ApicPage for Box<[u32; PAGE_WORDS]> {
    fn regs(&self) -> &[u32; PAGE_WORDS] {
        self
    }
    fn regs_mut(&mut self) -> &mut [u32; PAGE_WORDS] {
        self
    }
}

/// The mode IA32_APIC_BASE selects (SDM Vol. 3A §11.12.5, Figure 11-27).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApicMode {
    /// EN = 0: globally disabled; LINT0/LINT1 are the processor's INTR/NMI pins.
    Disabled,
    /// EN = 1, EXTD = 0: memory-mapped xAPIC.
    XApic,
    /// EN = 1, EXTD = 1: x2APIC (MSR interface).
    X2Apic,
}

/// What the model needs to know about its vCPU and clocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApicConfig {
    /// The initial APIC ID (CPUID.1:EBX[31:24] and CPUID.0xB:EDX); xAPIC uses its low 8 bits.
    pub apic_id: u32,
    /// The bootstrap vCPU (IA32_APIC_BASE.BSP, and LINT0/LINT1 in virtual-wire mode).
    pub bsp: bool,
    /// The guest's MAXPHYADDR: IA32_APIC_BASE bits at and above it are reserved.
    pub max_phys_addr_bits: u8,
    /// The guest TSC frequency.
    pub tsc_hz: u64,
    /// The APIC timer's input clock (before the divider).
    pub timer_hz: u64,
}

/// What a register access asks of the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApicEffect {
    /// Nothing beyond the model (re-check [`LocalApic::pending`] after any access anyway).
    None,
    /// Route this IPI to every APIC whose [`LocalApic::accepts_destination`] is true.
    Ipi(Ipi),
    /// A fixed self IPI, already set in this APIC's IRR.
    SelfIpi {
        /// Its vector.
        vector: u8,
    },
    /// An EOI ended `vector`; `level`: it was level-triggered and broadcast is not
    /// suppressed, so the IOAPIC must see an EOI for it (§11.8.5).
    Eoi {
        /// The vector taken out of ISR.
        vector: u8,
        /// Broadcast to the IOAPIC.
        level: bool,
    },
    /// The timer's deadline or masking changed: re-read [`LocalApic::timer_deadline`].
    TimerChanged,
    /// IA32_APIC_BASE changed the mode or the base: remap the MMIO page / MSR bitmap.
    ModeChanged,
}

/// Counters of what the guest did with its APIC.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApicStats {
    /// EOIs that ended an in-service vector (emulated or virtualized).
    pub eois: u64,
    /// Of those, EOIs to broadcast to the IOAPIC.
    pub level_eois: u64,
    /// EOI writes with nothing in service.
    pub spurious_eois: u64,
    /// IPIs returned to the kernel.
    pub ipis_sent: u64,
    /// Self IPIs delivered inside the model.
    pub self_ipis: u64,
    /// ICR writes that sent nothing (illegal vector, reserved mode or combination).
    pub ipis_rejected: u64,
    /// Timer expiries.
    pub timer_fires: u64,
    /// Periodic expiries coalesced into another.
    pub timer_coalesced: u64,
    /// Interrupts set in IRR (from the router, the timer, LVT error, self IPIs).
    pub accepted: u64,
    /// Vectors 0-15 refused.
    pub illegal_vectors: u64,
    /// xAPIC accesses to reserved offsets or writes to read-only registers.
    pub illegal_accesses: u64,
    /// MMIO accesses while not in xAPIC mode (ignored).
    pub wrong_mode_accesses: u64,
    /// MSR accesses that returned an [`ApicError`].
    pub msr_faults: u64,
}

/// One vCPU's local APIC over the register page `P`.
pub struct LocalApic<P: ApicPage> {
    page: P,
    config: ApicConfig,
    /// IA32_APIC_BASE.
    base: u64,
    /// Errors detected since the last ESR write (§11.5.3).
    esr_pending: u32,
    timer: Timer,
    stats: ApicStats,
}

impl<P: ApicPage> fmt::Debug for LocalApic<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalApic")
            .field("apic_id", &self.apic_id())
            .field("base", &self.base)
            .field("timer", &self.timer)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl<P: ApicPage> LocalApic<P> {
    /// A local APIC in its power-up state (SDM Vol. 3A §11.4.7.1), xAPIC mode at
    /// 0xFEE00000, over `page` (whose contents are overwritten).
    pub fn new(page: P, config: ApicConfig) -> Self {
        let bsp = if config.bsp { APIC_BASE_BSP } else { 0 };
        let mut apic = Self {
            page,
            config,
            base: DEFAULT_APIC_BASE | APIC_BASE_EN | bsp,
            esr_pending: 0,
            timer: Timer::new(config.tsc_hz, config.timer_hz),
            stats: ApicStats::default(),
        };
        apic.reset_registers(apic.xapic_id());
        apic
    }

    /// An INIT (SDM Vol. 3A §11.4.7.3): the registers as at power-up, except the APIC ID
    /// (and x2APIC's LDR, derived from it) and IA32_APIC_BASE, which keep their values.
    pub fn reset_for_init(&mut self) {
        let id = self.reg(ApicRegister::Id);
        self.reset_registers(id);
    }

    /// The power-up register values with ID register `id` (§11.4.7.1): everything 0 but
    /// DFR all ones, SVR 0xFF and every LVT masked. Like KVM's `kvm_lapic_reset` (and a PC
    /// BIOS), the bootstrap vCPU has LINT0 = ExtINT and LINT1 = NMI unmasked (virtual-wire
    /// mode), so a guest that never programs its APIC still gets the 8259A's interrupts.
    fn reset_registers(&mut self, id: u32) {
        self.page.regs_mut().fill(0);
        self.timer.reset();
        self.esr_pending = 0;
        self.set_reg(ApicRegister::Id, id);
        self.set_reg(ApicRegister::Version, VERSION_REGISTER);
        self.set_reg(ApicRegister::Dfr, u32::MAX);
        self.set_reg(ApicRegister::Svr, SVR_RESET);
        for lvt in LVTS {
            self.set_reg(lvt, LVT_MASKED);
        }
        if self.config.bsp {
            let wire = |mode: u32| mode << LVT_DELIVERY_MODE_SHIFT;
            self.set_reg(ApicRegister::LvtLint0, wire(LVT_DELIVERY_EXTINT));
            self.set_reg(ApicRegister::LvtLint1, wire(LVT_DELIVERY_NMI));
        }
        if self.mode() == ApicMode::X2Apic {
            self.set_reg(ApicRegister::Ldr, x2apic_ldr(self.config.apic_id));
        }
    }

    /// The xAPIC ID register value of the initial APIC ID.
    fn xapic_id(&self) -> u32 {
        (self.config.apic_id & XAPIC_BROADCAST) << XAPIC_ID_SHIFT
    }

    /// Gives the register page back (a VM restarting builds its vCPUs' APICs anew over the
    /// same virtual-APIC pages, which their VMCSs name).
    pub fn into_page(self) -> P {
        self.page
    }

    /// The register page (for the kernel: it is the virtual-APIC page).
    pub fn page(&self) -> &P {
        &self.page
    }

    /// The register page, writable: what the CPU does to the virtual-APIC page while the
    /// guest runs (the kernel's hardware view; tests use it to play the CPU's part).
    pub fn page_mut(&mut self) -> &mut P {
        &mut self.page
    }

    /// The counters.
    pub fn stats(&self) -> ApicStats {
        self.stats
    }

    /// IA32_APIC_BASE.
    pub fn apic_base(&self) -> u64 {
        self.base
    }

    /// The mode IA32_APIC_BASE selects.
    pub fn mode(&self) -> ApicMode {
        mode_of(self.base).unwrap_or(ApicMode::Disabled)
    }

    /// The guest-physical address of the xAPIC register page.
    pub fn mmio_base(&self) -> u64 {
        self.base & !((1u64 << APIC_BASE_ADDRESS_SHIFT) - 1)
    }

    /// A WRMSR to IA32_APIC_BASE (SDM Vol. 3A §11.4.4, §11.12.5 and Figure 11-27). The BSP
    /// flag is the model's own and not changed by writes.
    pub fn set_apic_base(&mut self, value: u64) -> Result<ApicEffect, ApicError> {
        let result = self.write_apic_base(value);
        if result.is_err() {
            self.stats.msr_faults += 1;
        }
        result
    }

    fn write_apic_base(&mut self, value: u64) -> Result<ApicEffect, ApicError> {
        let phys_bits = u32::from(self.config.max_phys_addr_bits).min(u64::BITS);
        let above_maxphyaddr = u64::MAX.checked_shl(phys_bits).unwrap_or(0);
        if value & (APIC_BASE_LOW_RESERVED | above_maxphyaddr) != 0 {
            return Err(ApicError::BaseReservedBits { value });
        }
        let to = mode_of(value).ok_or(ApicError::BaseInvalidState { value })?;
        let from = self.mode();
        // SDM Vol. 3A §11.12.5: x2APIC -> xAPIC and disabled -> x2APIC are illegal.
        match (from, to) {
            (ApicMode::X2Apic, ApicMode::XApic) | (ApicMode::Disabled, ApicMode::X2Apic) => {
                return Err(ApicError::InvalidTransition { from, to });
            }
            _ => {}
        }
        let old = self.base;
        self.base = (value & !APIC_BASE_BSP) | (old & APIC_BASE_BSP);
        match (from, to) {
            // §11.4.3 / §11.12.5.1: a disabled APIC comes back in its power-up state.
            (_, ApicMode::Disabled) if from != ApicMode::Disabled => {
                self.reset_registers(self.xapic_id());
            }
            // §11.12.5.1: entering x2APIC mode sets the 32-bit ID and the derived LDR.
            (ApicMode::XApic, ApicMode::X2Apic) => {
                self.set_reg(ApicRegister::Id, self.config.apic_id);
                self.set_reg(ApicRegister::Ldr, x2apic_ldr(self.config.apic_id));
                self.set_reg(ApicRegister::IcrHigh, 0);
            }
            _ => {}
        }
        Ok(if self.base == old {
            ApicEffect::None
        } else {
            ApicEffect::ModeChanged
        })
    }

    /// The APIC ID in the current mode's format (xAPIC: the 8-bit ID, x2APIC: 32 bits).
    pub fn apic_id(&self) -> u32 {
        match self.mode() {
            ApicMode::X2Apic => self.reg(ApicRegister::Id),
            _ => self.reg(ApicRegister::Id) >> XAPIC_ID_SHIFT,
        }
    }

    /// Hardware-enabled and software-enabled (SVR bit 8, §11.4.7.2).
    pub fn is_enabled(&self) -> bool {
        self.mode() != ApicMode::Disabled && self.software_enabled()
    }

    fn software_enabled(&self) -> bool {
        self.reg(ApicRegister::Svr) & SVR_APIC_ENABLED != 0
    }

    /// The task priority (§11.8.3.1).
    pub fn tpr(&self) -> u8 {
        self.reg(ApicRegister::Tpr) as u8
    }

    /// Set the TPR (a MOV to CR8 writes TPR[7:4] = CR8[3:0], §11.8.6).
    pub fn set_tpr(&mut self, tpr: u8) {
        self.set_reg(ApicRegister::Tpr, u32::from(tpr));
        self.update_ppr();
    }

    /// The processor priority (§11.8.3.1): TPR if its class is at least the highest
    /// in-service vector's, else that vector's class with sub-class 0.
    pub fn ppr(&self) -> u8 {
        let tpr = self.tpr();
        let isrv = self.highest_isr().unwrap_or(0);
        if class(tpr) >= class(isrv) {
            tpr
        } else {
            class(isrv) << PRIORITY_CLASS_SHIFT
        }
    }

    /// PPR bits 7:4: the priority class the router compares for lowest-priority delivery.
    pub fn priority_class(&self) -> u8 {
        class(self.ppr())
    }

    fn update_ppr(&mut self) {
        let ppr = self.ppr();
        self.set_reg(ApicRegister::Ppr, u32::from(ppr));
    }

    /// The highest vector requested in IRR (RVI for virtual-interrupt delivery, §30.1.3).
    pub fn highest_irr(&self) -> Option<u8> {
        self.highest_in(IRR_BASE)
    }

    /// The highest vector in service (SVI, §30.1.3).
    pub fn highest_isr(&self) -> Option<u8> {
        self.highest_in(ISR_BASE)
    }

    /// An interrupt from the IOAPIC, another APIC's IPI or a local source: set IRR and the
    /// TMR bit for its trigger mode (§11.8.4). Refused when the APIC is disabled (hardware,
    /// or software: §11.4.7.2) or the vector is 0-15 (ESR "receive illegal vector", plus an
    /// LVT error interrupt if unmasked, §11.5.3).
    pub fn accept(&mut self, vector: u8, level_triggered: bool) -> bool {
        if !self.is_enabled() {
            return false;
        }
        if vector < icr::FIRST_LEGAL_VECTOR {
            self.stats.illegal_vectors += 1;
            self.latch_error(ESR_RECEIVE_ILLEGAL_VECTOR);
            return false;
        }
        self.set_irr(vector, level_triggered);
        true
    }

    /// Set IRR (and TMR for level, clear it for edge) without the enable checks.
    fn set_irr(&mut self, vector: u8, level_triggered: bool) {
        self.set_vector_bit(IRR_BASE, vector, true);
        self.set_vector_bit(TMR_BASE, vector, level_triggered);
        self.stats.accepted += 1;
    }

    /// The interrupt the emulation path should inject: the highest IRR vector whose priority
    /// class is above PPR's (§11.8.3), if the APIC is enabled.
    pub fn pending(&self) -> Option<u8> {
        if !self.is_enabled() {
            return None;
        }
        let irr = self.highest_irr()?;
        (class(irr) > class(self.ppr())).then_some(irr)
    }

    /// The guest took [`Self::pending`]'s vector (INTA of a fixed interrupt, §11.8.4): move it
    /// from IRR to ISR and raise PPR.
    pub fn acknowledge(&mut self) -> Option<u8> {
        let vector = self.pending()?;
        self.set_vector_bit(IRR_BASE, vector, false);
        self.set_vector_bit(ISR_BASE, vector, true);
        self.update_ppr();
        Some(vector)
    }

    /// How many vectors are in service (ISR bits set, §11.8.4).
    pub fn in_service_count(&self) -> usize {
        (0..VECTOR_WORDS)
            .map(|n| {
                let offset = (ISR_BASE + u16::from(n) * REGISTER_STRIDE) as usize;
                self.page.regs()[offset / WORD_BYTES].count_ones() as usize
            })
            .sum()
    }

    /// Whether `vector` was accepted level-triggered (its TMR bit, §11.8.4).
    pub fn is_level_triggered(&self, vector: u8) -> bool {
        self.vector_bit(TMR_BASE, vector)
    }

    /// An EOI the guest made without writing the EOI register (KVM's PV EOI, cleared bit in
    /// guest memory): the same as the register write (§11.8.5).
    pub fn end_of_interrupt(&mut self) -> ApicEffect {
        self.eoi()
    }

    /// An EOI write (§11.8.5): end the highest in-service vector.
    fn eoi(&mut self) -> ApicEffect {
        let Some(vector) = self.highest_isr() else {
            self.stats.spurious_eois += 1;
            return ApicEffect::None;
        };
        self.set_vector_bit(ISR_BASE, vector, false);
        self.update_ppr();
        self.eoi_effect(vector)
    }

    /// The IOAPIC part of an EOI of `vector` (§11.8.5: broadcast for a level-triggered
    /// vector unless SVR bit 12 suppresses it).
    fn eoi_effect(&mut self, vector: u8) -> ApicEffect {
        let level = self.vector_bit(TMR_BASE, vector)
            && self.reg(ApicRegister::Svr) & SVR_SUPPRESS_EOI_BROADCAST == 0;
        self.stats.eois += 1;
        if level {
            self.stats.level_eois += 1;
        }
        ApicEffect::Eoi { vector, level }
    }

    /// An EOI-induced VM exit (SDM Vol. 3C §30.1.4): the CPU already cleared `vector` from
    /// VISR and updated VPPR; only the IOAPIC broadcast is left.
    pub fn eoi_virtualized(&mut self, vector: u8) -> ApicEffect {
        self.update_ppr();
        self.eoi_effect(vector)
    }

    /// The TPR threshold for TPR-shadow-only operation (SDM Vol. 3C §30.1.2: with
    /// virtual-interrupt delivery off, a VM exit when VTPR[7:4] drops below it; a threshold
    /// above VTPR[7:4] fails VM entry (§27.2.1.1) or exits at once (§27.7.7)): the class of
    /// the highest IRR vector if TPR blocks it, else 0 (nothing pending, or it is blocked only
    /// by an in-service vector and waits for the EOI).
    pub fn tpr_threshold(&self) -> u8 {
        match self.highest_irr() {
            Some(irr) if class(irr) <= class(self.tpr()) => class(irr),
            _ => 0,
        }
    }

    /// Whether the 8259A's INTR reaches the vCPU: the APIC is globally disabled, or LINT0 is
    /// unmasked ExtINT (§11.5.1; as KVM's `kvm_apic_accept_pic_intr`).
    pub fn accepts_extint(&self) -> bool {
        self.mode() == ApicMode::Disabled
            || self.lint_is(ApicRegister::LvtLint0, LVT_DELIVERY_EXTINT)
    }

    /// Whether an NMI on LINT1 reaches the vCPU as an NMI: the APIC is globally disabled
    /// (LINT1 is then the NMI pin, §11.4.3), or LINT1 is unmasked NMI.
    pub fn lint1_nmi(&self) -> bool {
        self.mode() == ApicMode::Disabled || self.lint_is(ApicRegister::LvtLint1, LVT_DELIVERY_NMI)
    }

    fn lint_is(&self, lvt: ApicRegister, delivery: u32) -> bool {
        let value = self.reg(lvt);
        value & LVT_MASKED == 0
            && (value & LVT_DELIVERY_MODE_MASK) >> LVT_DELIVERY_MODE_SHIFT == delivery
    }

    /// The timer mode of the LVT timer.
    pub fn timer_mode(&self) -> TimerMode {
        self.timer.mode
    }

    /// The TSC at which the timer next raises an interrupt (for the VMX-preemption timer);
    /// `None` when disarmed, masked (a masked timer still counts: current count and periodic
    /// phase are computed from the TSC) or the APIC is globally disabled.
    pub fn timer_deadline(&self) -> Option<u64> {
        let masked = self.reg(ApicRegister::LvtTimer) & LVT_MASKED != 0;
        if self.mode() == ApicMode::Disabled || masked {
            return None;
        }
        self.timer.deadline
    }

    /// Fire the timer expiries due at `now` into IRR (edge, the LVT timer's vector) unless
    /// the LVT timer is masked; missed periodic ticks coalesce into one. Returns whether an
    /// interrupt was set in IRR.
    pub fn advance(&mut self, now: u64) -> bool {
        if self.mode() == ApicMode::Disabled {
            return false;
        }
        let Some(missed) = self.timer.expire(now) else {
            return false;
        };
        self.stats.timer_fires += 1;
        self.stats.timer_coalesced += missed;
        let lvt = self.reg(ApicRegister::LvtTimer);
        if lvt & LVT_MASKED != 0 {
            return false;
        }
        self.accept((lvt & LVT_VECTOR_MASK) as u8, false)
    }

    /// RDMSR IA32_TSC_DEADLINE at `now` (§11.5.4.1): the armed deadline, 0 when disarmed,
    /// after it fired, or outside TSC-deadline mode.
    pub fn tsc_deadline(&self, now: u64) -> u64 {
        match self.timer.deadline {
            Some(deadline) if self.timer.mode == TimerMode::TscDeadline && deadline > now => {
                deadline
            }
            _ => 0,
        }
    }

    /// WRMSR IA32_TSC_DEADLINE at `now` (§11.5.4.1): arms (0 disarms) in TSC-deadline mode,
    /// ignored in the other modes.
    pub fn set_tsc_deadline(&mut self, value: u64, now: u64) -> ApicEffect {
        self.advance(now);
        if self.timer.mode != TimerMode::TscDeadline || self.mode() == ApicMode::Disabled {
            return ApicEffect::None;
        }
        self.timer.set_tsc_deadline(value);
        ApicEffect::TimerChanged
    }

    // --- the register page ---

    fn reg(&self, reg: ApicRegister) -> u32 {
        self.page.regs()[reg.word()]
    }

    fn set_reg(&mut self, reg: ApicRegister, value: u32) {
        self.page.regs_mut()[reg.word()] = value;
    }

    /// Word and bit of `vector` in the 256-bit register at `base` (ISR/TMR/IRR, §11.8.4).
    fn vector_slot(base: u16, vector: u8) -> (usize, u32) {
        let word = (base + u16::from(vector / VECTORS_PER_WORD) * REGISTER_STRIDE) as usize;
        (word / WORD_BYTES, 1 << (vector % VECTORS_PER_WORD))
    }

    fn vector_bit(&self, base: u16, vector: u8) -> bool {
        let (word, bit) = Self::vector_slot(base, vector);
        self.page.regs()[word] & bit != 0
    }

    fn set_vector_bit(&mut self, base: u16, vector: u8, set: bool) {
        let (word, bit) = Self::vector_slot(base, vector);
        let regs = self.page.regs_mut();
        if set {
            regs[word] |= bit;
        } else {
            regs[word] &= !bit;
        }
    }

    fn highest_in(&self, base: u16) -> Option<u8> {
        (0..VECTOR_WORDS).rev().find_map(|n| {
            let offset = (base + u16::from(n) * REGISTER_STRIDE) as usize;
            let word = self.page.regs()[offset / WORD_BYTES];
            (word != 0).then(|| {
                let top = (u32::BITS - 1 - word.leading_zeros()) as u8;
                n * VECTORS_PER_WORD + top
            })
        })
    }
}

/// The mode bits EN/EXTD of an IA32_APIC_BASE value select; `None` for EN = 0, EXTD = 1.
fn mode_of(base: u64) -> Option<ApicMode> {
    match (base & APIC_BASE_EN != 0, base & APIC_BASE_EXTD != 0) {
        (false, false) => Some(ApicMode::Disabled),
        (true, false) => Some(ApicMode::XApic),
        (true, true) => Some(ApicMode::X2Apic),
        (false, true) => None,
    }
}

/// The x2APIC logical ID of an x2APIC ID (SDM Vol. 3A §11.12.10.2): cluster = ID[31:4] in
/// bits 31:16, member bit 1 << ID[3:0].
pub fn x2apic_ldr(id: u32) -> u32 {
    /// x2APIC ID bits 3:0 select the member bit; the rest is the cluster.
    const MEMBER_BITS: u32 = 4;
    /// The cluster sits in LDR bits 31:16.
    const CLUSTER_SHIFT: u32 = 16;
    ((id >> MEMBER_BITS) << CLUSTER_SHIFT) | (1 << (id & ((1 << MEMBER_BITS) - 1)))
}

/// The priority class of a vector or priority (bits 7:4, §11.8.3).
fn class(priority: u8) -> u8 {
    priority >> PRIORITY_CLASS_SHIFT
}
