//! IA32_APIC_BASE and the mode state machine (SDM Vol. 3A §11.4.4, §11.12.5, Figure 11-27).

use super::*;

const XAPIC: u64 = DEFAULT_APIC_BASE | APIC_BASE_EN;
const X2APIC: u64 = XAPIC | APIC_BASE_EXTD;
const DISABLED: u64 = DEFAULT_APIC_BASE;

#[test]
fn xapic_to_x2apic_sets_the_x2apic_id_and_ldr() {
    let mut a = apic(0x123, false);
    assert_eq!(a.mmio_read(0x20, 0), 0x2300_0000, "xAPIC ID: low 8 bits");
    assert_eq!(a.set_apic_base(X2APIC), Ok(ApicEffect::ModeChanged));
    assert_eq!(a.mode(), ApicMode::X2Apic);
    assert_eq!(a.apic_id(), 0x123);
    assert_eq!(a.msr_read(0x802, 0), Ok(0x123));
    // (0x123 >> 4) << 16 | 1 << 3
    assert_eq!(a.msr_read(0x80D, 0), Ok(0x0012_0008));
    assert_eq!(a.msr_read(IA32_APIC_BASE, 0), Ok(X2APIC));
}

#[test]
fn x2apic_ldr_formula() {
    assert_eq!(x2apic_ldr(0), 0x0000_0001);
    assert_eq!(x2apic_ldr(0xF), 0x0000_8000);
    assert_eq!(x2apic_ldr(0x10), 0x0001_0001);
    assert_eq!(x2apic_ldr(0x25), 0x0002_0020);
}

#[test]
fn forbidden_transitions_fault_and_change_nothing() {
    let mut a = x2(1);
    assert_eq!(
        a.set_apic_base(XAPIC),
        Err(ApicError::InvalidTransition {
            from: ApicMode::X2Apic,
            to: ApicMode::XApic
        })
    );
    assert_eq!(a.mode(), ApicMode::X2Apic);
    assert_eq!(a.set_apic_base(DISABLED), Ok(ApicEffect::ModeChanged));
    assert_eq!(
        a.set_apic_base(X2APIC),
        Err(ApicError::InvalidTransition {
            from: ApicMode::Disabled,
            to: ApicMode::X2Apic
        })
    );
    assert_eq!(a.mode(), ApicMode::Disabled);
    assert_eq!(a.set_apic_base(XAPIC), Ok(ApicEffect::ModeChanged));
    assert_eq!(a.mmio_read(0x20, 0), 0x0100_0000, "xAPIC ID again");
    assert_eq!(a.stats().msr_faults, 2);
}

#[test]
fn extd_without_en_is_invalid() {
    let mut a = apic(0, false);
    let value = DEFAULT_APIC_BASE | APIC_BASE_EXTD;
    assert_eq!(
        a.set_apic_base(value),
        Err(ApicError::BaseInvalidState { value })
    );
    assert_eq!(a.mode(), ApicMode::XApic);
}

#[test]
fn reserved_bits_fault() {
    let mut a = apic(0, false);
    for bit in [0, 7, 9, u32::from(PHYS_BITS), 63] {
        let value = XAPIC | 1 << bit;
        assert_eq!(
            a.set_apic_base(value),
            Err(ApicError::BaseReservedBits { value }),
            "bit {bit}"
        );
    }
    assert_eq!(a.apic_base(), XAPIC);
    let high = XAPIC | 1 << (PHYS_BITS - 1);
    assert_eq!(
        a.set_apic_base(high),
        Ok(ApicEffect::ModeChanged),
        "relocation below MAXPHYADDR"
    );
    assert_eq!(a.mmio_base(), 0x40_FEE0_0000);
}

#[test]
fn bsp_flag_is_read_only_and_same_value_changes_nothing() {
    let mut a = apic(0, true);
    assert_eq!(a.set_apic_base(XAPIC), Ok(ApicEffect::None));
    assert_eq!(a.apic_base(), XAPIC | APIC_BASE_BSP);
    let mut ap = apic(1, false);
    assert_eq!(
        ap.set_apic_base(XAPIC | APIC_BASE_BSP),
        Ok(ApicEffect::None)
    );
    assert_eq!(ap.apic_base(), XAPIC);
}

#[test]
fn disabling_resets_and_gives_lint0_to_the_pic() {
    let mut a = enabled(4);
    a.mmio_write(0x80, 0x30, 0);
    a.mmio_write(0x380, 100, 0);
    assert!(a.accept(0x50, false));
    assert_eq!(a.set_apic_base(DISABLED), Ok(ApicEffect::ModeChanged));
    assert!(a.accepts_extint());
    assert!(a.lint1_nmi());
    assert!(!a.is_enabled());
    assert!(!a.accept(0x60, false));
    assert_eq!(a.highest_irr(), None);
    assert_eq!(a.timer_deadline(), None);
    assert_eq!(a.mmio_read(0x80, 0), 0, "no MMIO while disabled");
    assert_eq!(a.stats().wrong_mode_accesses, 1);
    assert_eq!(a.set_apic_base(XAPIC), Ok(ApicEffect::ModeChanged));
    assert_eq!(a.mmio_read(0x80, 0), 0);
    assert_eq!(a.mmio_read(0xF0, 0), 0xFF);
    assert_eq!(a.mmio_read(0x20, 0), 0x0400_0000);
}
