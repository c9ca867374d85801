//! The x2APIC MSR interface (SDM Vol. 3A §11.12.1.2, Table 11-6; §11.12.1.3).

use super::*;

#[test]
fn identity_registers() {
    let mut a = x2(0x1234);
    assert_eq!(a.msr_read(0x802, 0), Ok(0x1234));
    assert_eq!(a.msr_read(0x803, 0), Ok(0x0106_0014));
    assert_eq!(a.msr_read(0x80D, 0), Ok(0x0123_0010));
    assert_eq!(a.msr_read(0x80F, 0), Ok(0x1FF));
}

#[test]
fn reserved_msrs_fault_both_ways() {
    let mut a = x2(0);
    let reserved = [
        0x800, 0x801, 0x804, 0x807, 0x809, 0x80C, 0x80E, 0x829, 0x82E, 0x831, 0x83A, 0x83D, 0x840,
        0x8FF,
    ];
    for msr in reserved {
        assert_eq!(
            a.msr_read(msr, 0),
            Err(ApicError::ReservedRegister { msr }),
            "{msr:#x}"
        );
        assert_eq!(
            a.msr_write(msr, 0, 0),
            Err(ApicError::ReservedRegister { msr }),
            "{msr:#x}"
        );
    }
    assert_eq!(a.stats().msr_faults, 2 * reserved.len() as u64);
}

#[test]
fn write_only_and_read_only_msrs() {
    let mut a = x2(0);
    for msr in [0x80B, 0x83F] {
        assert_eq!(a.msr_read(msr, 0), Err(ApicError::WriteOnly { msr }));
    }
    for msr in [
        0x802, 0x803, 0x80A, 0x80D, 0x810, 0x817, 0x818, 0x820, 0x827, 0x839,
    ] {
        assert_eq!(
            a.msr_write(msr, 0, 0),
            Err(ApicError::ReadOnly { msr }),
            "{msr:#x}"
        );
    }
    assert_eq!(a.msr_read(0x802, 0), Ok(0));
}

#[test]
fn reserved_bits_fault() {
    let mut a = x2(0);
    let cases = [
        (0x80B, 1),
        (0x828, 0x80),
        (0x83F, 0x100),
        (0x808, 1 << 32),
        (0x808, 0x100),
        (0x80F, 1 << 40),
        (0x80F, 0x400),
        (0x832, 1 << 19),
        (0x832, 0x700),
        (0x835, 1 << 17),
        (0x837, 0x400),
        (0x83E, 0x4),
        (0x838, 1 << 63),
    ];
    for (msr, value) in cases {
        assert_eq!(
            a.msr_write(msr, value, 0),
            Err(ApicError::ReservedBits { msr, value }),
            "{msr:#x}"
        );
    }
    assert_eq!(
        a.msr_write(0x80B, 0, 0),
        Ok(ApicEffect::None),
        "EOI of nothing"
    );
    assert_eq!(a.stats().spurious_eois, 1);
    assert_eq!(a.msr_write(0x828, 0, 0), Ok(ApicEffect::None));
    assert_eq!(a.stats().msr_faults, 13);
    // Read-only status bits are ignored, not reserved.
    assert_eq!(a.msr_write(0x835, 0x5700, 0), Ok(ApicEffect::None));
    assert_eq!(a.msr_read(0x835, 0), Ok(0x700));
    assert_eq!(
        a.msr_write(0x832, 0x1_1030, 0),
        Ok(ApicEffect::TimerChanged)
    );
    assert_eq!(a.msr_read(0x832, 0), Ok(0x1_0030));
}

#[test]
fn tpr_and_ppr_through_msrs() {
    let mut a = x2(0);
    a.msr_write(0x808, 0xFF, 0).unwrap();
    assert_eq!(a.msr_read(0x808, 0), Ok(0xFF));
    a.msr_write(0x808, 0x30, 0).unwrap();
    assert!(a.accept(0x80, false));
    assert_eq!(a.acknowledge(), Some(0x80));
    assert_eq!(a.msr_read(0x80A, 0), Ok(0x80));
    assert_eq!(a.msr_read(0x810 + 4, 0), Ok(1), "ISR word 4 bit 0");
    assert_eq!(
        a.msr_write(0x80B, 0, 0),
        Ok(ApicEffect::Eoi {
            vector: 0x80,
            level: false
        })
    );
    assert_eq!(a.msr_read(0x80A, 0), Ok(0x30));
}

#[test]
fn icr_is_one_64_bit_msr() {
    let mut a = x2(0);
    let value = 0x1234_5678_0000_4031;
    let expected = Ipi {
        delivery_mode: DeliveryMode::Fixed,
        vector: 0x31,
        destination_mode: DestinationMode::Physical,
        destination: 0x1234_5678,
        shorthand: Shorthand::None,
        level: true,
        trigger: TriggerMode::Edge,
    };
    assert_eq!(a.msr_write(0x830, value, 0), Ok(ApicEffect::Ipi(expected)));
    assert_eq!(a.msr_read(0x830, 0), Ok(value));
    assert_eq!(word(&a, 0x300), 0x4031);
    assert_eq!(word(&a, 0x310), 0x1234_5678);
    // Delivery status (bit 12) may be written and reads 0; reserved bits fault.
    a.msr_write(0x830, 0xFFFF_FFFF_0000_D0F1, 0).unwrap();
    assert_eq!(a.msr_read(0x830, 0), Ok(0xFFFF_FFFF_0000_C0F1));
    for bit in [13, 16, 17, 20, 31] {
        let value = 0x40F1 | 1 << bit;
        assert_eq!(
            a.msr_write(0x830, value, 0),
            Err(ApicError::ReservedBits { msr: 0x830, value })
        );
    }
    assert_eq!(a.msr_read(0x830, 0), Ok(0xFFFF_FFFF_0000_C0F1), "unchanged");
}

#[test]
fn self_ipi_msr_sets_irr() {
    let mut a = x2(0);
    assert_eq!(
        a.msr_write(0x83F, 0x40, 0),
        Ok(ApicEffect::SelfIpi { vector: 0x40 })
    );
    assert_eq!(a.highest_irr(), Some(0x40));
    assert_eq!(a.pending(), Some(0x40));
    assert_eq!(word(&a, 0x180 + 0x20), 0, "edge: TMR clear");
    assert_eq!(a.stats().self_ipis, 1);
    assert_eq!(
        a.msr_write(0x83F, 0x05, 0),
        Ok(ApicEffect::None),
        "illegal vector"
    );
    a.msr_write(0x828, 0, 0).unwrap();
    assert_eq!(a.msr_read(0x828, 0), Ok(u64::from(ESR_SEND_ILLEGAL_VECTOR)));
}

#[test]
fn x2apic_msrs_outside_x2apic_mode_fault() {
    let mut a = enabled(0);
    assert_eq!(
        a.msr_read(0x808, 0),
        Err(ApicError::NotX2ApicMode {
            msr: 0x808,
            mode: ApicMode::XApic
        })
    );
    assert_eq!(
        a.msr_write(0x830, 0, 0),
        Err(ApicError::NotX2ApicMode {
            msr: 0x830,
            mode: ApicMode::XApic
        })
    );
    assert_eq!(
        a.msr_read(0x10, 0),
        Err(ApicError::NotApicMsr { msr: 0x10 })
    );
    assert_eq!(a.msr_read(IA32_APIC_BASE, 0), Ok(0xFEE0_0800));
    assert_eq!(a.msr_read(IA32_TSC_DEADLINE, 0), Ok(0));
    assert_eq!(a.stats().msr_faults, 3);
}

#[test]
fn error_messages_say_what_to_do() {
    let e = ApicError::ReservedBits {
        msr: 0x80B,
        value: 1,
    };
    assert_eq!(
        alloc::format!("{e}"),
        "WRMSR 0x1 to x2APIC MSR 0x80b sets reserved bits (SDM Vol. 3A Table 11-6): inject #GP(0)"
    );
}
