//! The register map: offsets, x2APIC MSR numbers, access per mode (SDM Vol. 3A Table 11-1,
//! Table 11-6).

use super::*;
use ApicRegister::*;

const ALL: [ApicRegister; 27] = [
    Id,
    Version,
    Tpr,
    Apr,
    Ppr,
    Eoi,
    Rrd,
    Ldr,
    Dfr,
    Svr,
    Isr(0),
    Isr(7),
    Tmr(0),
    Tmr(7),
    Irr(0),
    Irr(7),
    Esr,
    LvtCmci,
    IcrLow,
    IcrHigh,
    LvtTimer,
    LvtThermal,
    LvtPerf,
    LvtLint0,
    LvtLint1,
    LvtError,
    SelfIpi,
];

#[test]
fn offsets_and_msrs_round_trip() {
    for reg in ALL
        .into_iter()
        .chain([TimerInitialCount, TimerCurrentCount, TimerDivide])
    {
        assert_eq!(
            ApicRegister::from_offset(reg.offset()),
            Some(reg),
            "{reg:?}"
        );
        assert_eq!(
            ApicRegister::from_x2apic_msr(reg.x2apic_msr()),
            Some(reg),
            "{reg:?}"
        );
        assert_eq!(reg.word(), reg.offset() as usize / 4);
    }
}

#[test]
fn msr_numbers_match_table_11_6() {
    let table = [
        (Id, 0x802),
        (Version, 0x803),
        (Tpr, 0x808),
        (Ppr, 0x80A),
        (Eoi, 0x80B),
        (Ldr, 0x80D),
        (Svr, 0x80F),
        (Isr(0), 0x810),
        (Isr(7), 0x817),
        (Tmr(0), 0x818),
        (Irr(0), 0x820),
        (Irr(7), 0x827),
        (Esr, 0x828),
        (LvtCmci, 0x82F),
        (IcrLow, 0x830),
        (LvtTimer, 0x832),
        (LvtThermal, 0x833),
        (LvtPerf, 0x834),
        (LvtLint0, 0x835),
        (LvtLint1, 0x836),
        (LvtError, 0x837),
        (TimerInitialCount, 0x838),
        (TimerCurrentCount, 0x839),
        (TimerDivide, 0x83E),
        (SelfIpi, 0x83F),
    ];
    for (reg, msr) in table {
        assert_eq!(reg.x2apic_msr(), msr, "{reg:?}");
    }
}

#[test]
fn reserved_offsets_have_no_register() {
    for offset in [
        0x00, 0x10, 0x40, 0x70, 0x290, 0x2E0, 0x3A0, 0x3D0, 0x400, 0xFF0, 0x84, 0x1000,
    ] {
        assert_eq!(ApicRegister::from_offset(offset), None, "{offset:#x}");
    }
    assert_eq!(ApicRegister::from_x2apic_msr(0x7FF), None);
    assert_eq!(ApicRegister::from_x2apic_msr(0x900), None);
}

#[test]
fn access_rules_per_mode() {
    let x = |reg: ApicRegister| reg.access(ApicMode::XApic);
    let x2 = |reg: ApicRegister| reg.access(ApicMode::X2Apic);
    assert_eq!(
        (x(Id), x2(Id)),
        (Some(Access::ReadWrite), Some(Access::ReadOnly))
    );
    assert_eq!(
        (x(Ldr), x2(Ldr)),
        (Some(Access::ReadWrite), Some(Access::ReadOnly))
    );
    for reg in [Apr, Rrd, Dfr, IcrHigh] {
        assert_eq!(x2(reg), None, "{reg:?} is gone in x2APIC mode");
        assert!(x(reg).is_some());
    }
    assert_eq!((x(SelfIpi), x2(SelfIpi)), (None, Some(Access::WriteOnly)));
    assert_eq!(x2(Eoi), Some(Access::WriteOnly));
    for reg in [Version, Ppr, Isr(3), Tmr(3), Irr(3), TimerCurrentCount] {
        assert_eq!(
            (x(reg), x2(reg)),
            (Some(Access::ReadOnly), Some(Access::ReadOnly)),
            "{reg:?}"
        );
    }
    for reg in ALL {
        assert_eq!(reg.access(ApicMode::Disabled), None);
    }
}
