//! Register accesses: xAPIC MMIO (SDM Vol. 3A §11.4.1), x2APIC MSRs (§11.12.1.2), and the
//! APIC-write VM exit of APIC-register virtualization (SDM Vol. 3C §30.4.3.3). All three end
//! in one [`LocalApic::write_register`], so a register behaves the same however it is written.

use super::icr::{self, IcrReject, ICR_DELIVERY_STATUS, ICR_HIGH_XAPIC_MASK, ICR_LOW_WRITE_MASK};
use super::registers::*;
use super::timer::{TimerMode, DIVIDE_WRITE_MASK};
use super::{
    ApicEffect, ApicError, ApicMode, ApicPage, LocalApic, IA32_APIC_BASE, IA32_TSC_DEADLINE,
};

/// TPR bits 7:0 (§11.8.3.1; 31:8 reserved).
pub(super) const TPR_MASK: u32 = 0xFF;
/// SVR writable bits: vector 7:0, APIC enable 8, focus checking 9, EOI-broadcast
/// suppression 12 (§11.9, Figure 11-23).
pub(super) const SVR_WRITE_MASK: u32 = 0x13FF;
/// xAPIC LDR: logical ID in bits 31:24 (§11.6.2.2).
pub(super) const LDR_XAPIC_MASK: u32 = 0xFF00_0000;
/// xAPIC DFR: model in bits 31:28.
const DFR_MODEL_MASK: u32 = 0xF000_0000;
/// SELF IPI: vector in bits 7:0, the rest reserved (§11.12.11).
const SELF_IPI_VECTOR_MASK: u64 = 0xFF;
/// x2APIC ICR bits 63:32: the destination (§11.12.9); every other x2APIC register is 32 bits.
const ICR_DESTINATION_SHIFT: u32 = 32;
/// ICR bits 19:18 = 01: the self shorthand.
const ICR_SHORTHAND_SELF: u32 = 0b01 << 18;

/// The bits of an x2APIC register a WRMSR may set: the writable ones plus the read-only
/// status bits (delivery status, remote IRR), which are ignored rather than reserved. EOI
/// and ESR accept only 0 (Table 11-6).
fn x2apic_writable_bits(reg: ApicRegister) -> u32 {
    match reg {
        ApicRegister::Tpr => TPR_MASK,
        ApicRegister::Svr => SVR_WRITE_MASK,
        ApicRegister::SelfIpi => SELF_IPI_VECTOR_MASK as u32,
        ApicRegister::TimerDivide => DIVIDE_WRITE_MASK,
        ApicRegister::TimerInitialCount => u32::MAX,
        ApicRegister::LvtLint0 | ApicRegister::LvtLint1 => {
            reg.lvt_write_mask().unwrap_or(0) | LVT_DELIVERY_STATUS | LVT_REMOTE_IRR
        }
        _ => reg
            .lvt_write_mask()
            .map_or(0, |mask| mask | LVT_DELIVERY_STATUS),
    }
}

impl<P: ApicPage> LocalApic<P> {
    /// A 32-bit xAPIC MMIO read at `offset` in the APIC page (aligned; the caller splits
    /// other sizes). Reserved offsets read 0 and latch ESR "illegal register address"
    /// (§11.5.3). Outside xAPIC mode the page is not decoded: 0, counted.
    pub fn mmio_read(&mut self, offset: u16, now: u64) -> u32 {
        if self.mode() != ApicMode::XApic {
            self.stats.wrong_mode_accesses += 1;
            return 0;
        }
        let reg =
            ApicRegister::from_offset(offset).filter(|reg| reg.access(ApicMode::XApic).is_some());
        match reg {
            Some(reg) => {
                self.advance(now);
                self.read_register(reg, now)
            }
            None => {
                self.illegal_access();
                0
            }
        }
    }

    /// A 32-bit xAPIC MMIO write. Writes to reserved offsets or read-only registers are
    /// ignored and latch ESR "illegal register address" (§11.5.3).
    pub fn mmio_write(&mut self, offset: u16, value: u32, now: u64) -> ApicEffect {
        if self.mode() != ApicMode::XApic {
            self.stats.wrong_mode_accesses += 1;
            return ApicEffect::None;
        }
        match ApicRegister::from_offset(offset).map(|r| (r, r.access(ApicMode::XApic))) {
            Some((reg, Some(Access::ReadWrite | Access::WriteOnly))) => {
                self.write_register(reg, u64::from(value), now)
            }
            _ => {
                self.illegal_access();
                ApicEffect::None
            }
        }
    }

    /// RDMSR of IA32_APIC_BASE, IA32_TSC_DEADLINE or an x2APIC MSR (§11.12.1.2).
    pub fn msr_read(&mut self, msr: u32, now: u64) -> Result<u64, ApicError> {
        match msr {
            IA32_APIC_BASE => return Ok(self.base),
            IA32_TSC_DEADLINE => return Ok(self.tsc_deadline(now)),
            _ => {}
        }
        let reg = match self.x2apic_register(msr) {
            Ok((reg, Access::ReadWrite | Access::ReadOnly)) => reg,
            Ok((_, Access::WriteOnly)) => {
                self.stats.msr_faults += 1;
                return Err(ApicError::WriteOnly { msr });
            }
            Err(error) => {
                self.stats.msr_faults += 1;
                return Err(error);
            }
        };
        self.advance(now);
        Ok(match reg {
            // §11.12.9: the ICR is one 64-bit MSR, destination in bits 63:32.
            ApicRegister::IcrLow => {
                u64::from(self.reg(ApicRegister::IcrHigh)) << ICR_DESTINATION_SHIFT
                    | u64::from(self.reg(ApicRegister::IcrLow))
            }
            reg => u64::from(self.read_register(reg, now)),
        })
    }

    /// WRMSR of IA32_APIC_BASE, IA32_TSC_DEADLINE or an x2APIC MSR (§11.12.1.2).
    pub fn msr_write(&mut self, msr: u32, value: u64, now: u64) -> Result<ApicEffect, ApicError> {
        match msr {
            IA32_APIC_BASE => return self.set_apic_base(value),
            IA32_TSC_DEADLINE => return Ok(self.set_tsc_deadline(value, now)),
            _ => {}
        }
        let checked = self.x2apic_register(msr).and_then(|(reg, access)| {
            if access == Access::ReadOnly {
                return Err(ApicError::ReadOnly { msr });
            }
            // SDM Vol. 3A §11.12.1.3: a WRMSR setting a reserved bit faults (RsvdZ). Bits
            // 63:32 are reserved in every register but the ICR (Table 11-6).
            let reserved = match reg {
                ApicRegister::IcrLow => {
                    value as u32 & !(ICR_LOW_WRITE_MASK | ICR_DELIVERY_STATUS) != 0
                }
                _ => {
                    value >> ICR_DESTINATION_SHIFT != 0
                        || value as u32 & !x2apic_writable_bits(reg) != 0
                }
            };
            if reserved {
                Err(ApicError::ReservedBits { msr, value })
            } else {
                Ok(reg)
            }
        });
        match checked {
            Ok(reg) => Ok(self.write_register(reg, value, now)),
            Err(error) => {
                self.stats.msr_faults += 1;
                Err(error)
            }
        }
    }

    /// An APIC-write VM exit (trap-like, SDM Vol. 3C §30.4.3.3): the guest's value is already
    /// in the page at `offset`; act on it as a write of that value would. In x2APIC mode a
    /// write to offset 0x300 is the whole ICR (VICR_LO and VICR_HI, §30.5).
    pub fn apic_write(&mut self, offset: u16, now: u64) -> ApicEffect {
        let mode = self.mode();
        let writable = ApicRegister::from_offset(offset).filter(|reg| {
            matches!(
                reg.access(mode),
                Some(Access::ReadWrite | Access::WriteOnly)
            )
        });
        let Some(reg) = writable else {
            if mode == ApicMode::XApic {
                self.illegal_access();
            }
            return ApicEffect::None;
        };
        let mut value = u64::from(self.reg(reg));
        if mode == ApicMode::X2Apic && reg == ApicRegister::IcrLow {
            value |= u64::from(self.reg(ApicRegister::IcrHigh)) << ICR_DESTINATION_SHIFT;
        }
        self.write_register(reg, value, now)
    }

    /// The x2APIC register behind `msr` and its access rule, or the #GP reason.
    fn x2apic_register(&self, msr: u32) -> Result<(ApicRegister, Access), ApicError> {
        let mode = self.mode();
        if !(X2APIC_MSR_BASE..=X2APIC_MSR_LAST).contains(&msr) {
            return Err(ApicError::NotApicMsr { msr });
        }
        if mode != ApicMode::X2Apic {
            return Err(ApicError::NotX2ApicMode { msr, mode });
        }
        let reg = ApicRegister::from_x2apic_msr(msr).ok_or(ApicError::ReservedRegister { msr })?;
        let access = reg
            .access(mode)
            .ok_or(ApicError::ReservedRegister { msr })?;
        Ok((reg, access))
    }

    /// The value software reads from `reg` (valid in the current mode).
    fn read_register(&self, reg: ApicRegister, now: u64) -> u32 {
        match reg {
            ApicRegister::Ppr => u32::from(self.ppr()),
            ApicRegister::TimerCurrentCount => self.timer.current_count(now),
            // Write-only (xAPIC EOI reads 0); APR and remote read are not modelled.
            ApicRegister::Eoi | ApicRegister::Apr | ApicRegister::Rrd => 0,
            reg => self.reg(reg),
        }
    }

    /// The one write path: `value` is already checked for the mode's #GP rules.
    fn write_register(&mut self, reg: ApicRegister, value: u64, now: u64) -> ApicEffect {
        // Expiries due before this write happen under the old configuration.
        self.advance(now);
        let low = value as u32;
        let x2apic = self.mode() == ApicMode::X2Apic;
        match reg {
            ApicRegister::Id => self.set_reg(reg, low & XAPIC_ID_MASK),
            ApicRegister::Tpr => self.set_tpr((low & TPR_MASK) as u8),
            ApicRegister::Eoi => return self.eoi(),
            ApicRegister::Ldr => self.set_reg(reg, low & LDR_XAPIC_MASK),
            ApicRegister::Dfr => self.set_reg(reg, (low & DFR_MODEL_MASK) | DFR_RESERVED_ONES),
            ApicRegister::Svr => return self.write_svr(low & SVR_WRITE_MASK),
            ApicRegister::Esr => {
                // §11.5.3: a write makes the errors since the last write visible.
                self.set_reg(reg, self.esr_pending);
                self.esr_pending = 0;
            }
            ApicRegister::IcrHigh => self.set_reg(reg, low & ICR_HIGH_XAPIC_MASK),
            ApicRegister::IcrLow => {
                let low = low & ICR_LOW_WRITE_MASK;
                self.set_reg(ApicRegister::IcrLow, low);
                let destination = if x2apic {
                    let high = (value >> ICR_DESTINATION_SHIFT) as u32;
                    self.set_reg(ApicRegister::IcrHigh, high);
                    high
                } else {
                    self.reg(ApicRegister::IcrHigh) >> XAPIC_ID_SHIFT
                };
                return self.send_ipi(low, destination);
            }
            ApicRegister::SelfIpi => {
                // §11.12.11: a fixed, edge-triggered IPI to self.
                return self.send_ipi(ICR_SHORTHAND_SELF | (low & LVT_VECTOR_MASK), 0);
            }
            ApicRegister::LvtTimer => {
                self.write_lvt(reg, low);
                let mode = TimerMode::of_lvt(self.reg(reg));
                if mode != self.timer.mode {
                    // §11.5.4.1: changing the timer mode disarms the timer.
                    self.timer.mode = mode;
                    self.timer.disarm();
                    self.set_reg(ApicRegister::TimerInitialCount, 0);
                }
                return ApicEffect::TimerChanged;
            }
            ApicRegister::LvtThermal
            | ApicRegister::LvtPerf
            | ApicRegister::LvtLint0
            | ApicRegister::LvtLint1
            | ApicRegister::LvtError
            | ApicRegister::LvtCmci => self.write_lvt(reg, low),
            ApicRegister::TimerInitialCount => {
                // §11.5.4.1: ignored in TSC-deadline mode.
                let count = if self.timer.mode == TimerMode::TscDeadline {
                    0
                } else {
                    low
                };
                self.set_reg(reg, count);
                self.timer.start_count(count, now);
                return ApicEffect::TimerChanged;
            }
            ApicRegister::TimerDivide => {
                let dcr = low & DIVIDE_WRITE_MASK;
                self.set_reg(reg, dcr);
                self.timer.set_divide(dcr, now);
                return ApicEffect::TimerChanged;
            }
            ApicRegister::Version
            | ApicRegister::Apr
            | ApicRegister::Ppr
            | ApicRegister::Rrd
            | ApicRegister::Isr(_)
            | ApicRegister::Tmr(_)
            | ApicRegister::Irr(_)
            | ApicRegister::TimerCurrentCount => self.illegal_access(),
        }
        ApicEffect::None
    }

    /// An LVT write: reserved and read-only bits dropped; the mask stays set while the APIC
    /// is software-disabled (§11.4.7.2).
    fn write_lvt(&mut self, reg: ApicRegister, value: u32) {
        let mut lvt = value & reg.lvt_write_mask().unwrap_or(0);
        if !self.software_enabled() {
            lvt |= LVT_MASKED;
        }
        self.set_reg(reg, lvt);
    }

    /// SVR write; software-disabling masks every LVT (§11.4.7.2).
    fn write_svr(&mut self, svr: u32) -> ApicEffect {
        self.set_reg(ApicRegister::Svr, svr);
        if svr & SVR_APIC_ENABLED != 0 {
            return ApicEffect::None;
        }
        for lvt in LVTS {
            self.set_reg(lvt, self.reg(lvt) | LVT_MASKED);
        }
        ApicEffect::TimerChanged
    }

    /// An ICR write: decode and either deliver to self or hand the IPI to the kernel.
    fn send_ipi(&mut self, low: u32, destination: u32) -> ApicEffect {
        match icr::decode(low, destination) {
            Ok(ipi) if ipi.shorthand == icr::Shorthand::Self_ => {
                self.stats.self_ipis += 1;
                if self.accept(ipi.vector, ipi.trigger == icr::TriggerMode::Level) {
                    ApicEffect::SelfIpi { vector: ipi.vector }
                } else {
                    ApicEffect::None
                }
            }
            Ok(ipi) => {
                self.stats.ipis_sent += 1;
                ApicEffect::Ipi(ipi)
            }
            Err(reject) => {
                self.stats.ipis_rejected += 1;
                if reject == IcrReject::IllegalVector {
                    self.latch_error(ESR_SEND_ILLEGAL_VECTOR);
                }
                ApicEffect::None
            }
        }
    }

    /// An xAPIC access to a reserved offset or a write to a read-only register.
    fn illegal_access(&mut self) {
        self.stats.illegal_accesses += 1;
        self.latch_error(ESR_ILLEGAL_REGISTER);
    }

    /// Record an error for the next ESR write and raise the LVT error interrupt if it is
    /// unmasked (§11.5.3). An error vector below 16 is not delivered (it would be an error
    /// itself; only its ESR bit is latched).
    pub(super) fn latch_error(&mut self, bit: u32) {
        self.esr_pending |= bit;
        let lvt = self.reg(ApicRegister::LvtError);
        let vector = (lvt & LVT_VECTOR_MASK) as u8;
        if lvt & LVT_MASKED != 0 || !self.is_enabled() {
            return;
        }
        if vector < icr::FIRST_LEGAL_VECTOR {
            self.esr_pending |= ESR_RECEIVE_ILLEGAL_VECTOR;
            return;
        }
        self.set_irr(vector, false);
    }
}
