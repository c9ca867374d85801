//! xAPIC MMIO register behaviour (SDM Vol. 3A §11.4.1 Table 11-1, §11.5, §11.6.2, §11.9).

use super::*;

#[test]
fn writable_bits_of_each_register() {
    let mut a = enabled(0);
    let cases: [(u16, u32); 17] = [
        (0x20, 0xFF00_0000),  // ID
        (0x80, 0x0000_00FF),  // TPR
        (0xD0, 0xFF00_0000),  // LDR
        (0xE0, 0xFFFF_FFFF),  // DFR: model + reserved ones
        (0xF0, 0x0000_13FF),  // SVR
        (0x310, 0xFF00_0000), // ICR high
        (0x320, 0x0007_00FF), // LVT timer: vector, mask, mode
        (0x330, 0x0001_07FF), // thermal
        (0x340, 0x0001_07FF), // perf
        (0x350, 0x0001_A7FF), // LINT0: + polarity, trigger (remote IRR read-only)
        (0x360, 0x0001_A7FF), // LINT1
        (0x370, 0x0001_00FF), // error
        (0x2F0, 0x0001_07FF), // CMCI
        (0x380, 0xFFFF_FFFF), // initial count
        (0x3E0, 0x0000_000B), // divide: bits 0, 1, 3
        (0x280, 0x0000_0000), // ESR: nothing latched yet
        (0xB0, 0x0000_0000),  // EOI reads 0
    ];
    for (offset, expected) in cases {
        a.mmio_write(offset, 0xFFFF_FFFF, 0);
        assert_eq!(a.mmio_read(offset, 0), expected, "offset {offset:#x}");
    }
    // The timer LVT above chose reserved mode 11: it counts as one-shot.
    assert_eq!(a.timer_mode(), TimerMode::OneShot);
    assert_eq!(a.mmio_read(0xE0, 0), 0xFFFF_FFFF);
    a.mmio_write(0xE0, 0, 0);
    assert_eq!(a.mmio_read(0xE0, 0), 0x0FFF_FFFF, "cluster model");
    assert_eq!(a.stats().illegal_accesses, 0);
}

#[test]
fn reserved_offsets_read_zero_and_latch_illegal_register() {
    let mut a = enabled(0);
    for offset in [
        0x0, 0x10, 0x40, 0x70, 0x290, 0x2E0, 0x3A0, 0x3F0, 0x400, 0xFF0, 0x24,
    ] {
        assert_eq!(a.mmio_read(offset, 0), 0, "offset {offset:#x}");
    }
    assert_eq!(a.stats().illegal_accesses, 11);
    assert_eq!(esr(&mut a), ESR_ILLEGAL_REGISTER);
    assert_eq!(esr(&mut a), 0, "the second write clears it");
}

#[test]
fn writes_to_read_only_registers_are_ignored_and_latched() {
    let mut a = enabled(0);
    for offset in [
        0x30, 0x90, 0xA0, 0xC0, 0x100, 0x170, 0x180, 0x200, 0x270, 0x390,
    ] {
        a.mmio_write(offset, 0xFFFF_FFFF, 0);
        assert_eq!(esr(&mut a), ESR_ILLEGAL_REGISTER, "offset {offset:#x}");
    }
    assert_eq!(a.mmio_read(0x30, 0), 0x0106_0014);
    assert_eq!(a.highest_irr(), None);
    assert_eq!(a.highest_isr(), None);
    assert_eq!(a.mmio_read(0xA0, 0), 0);
    a.mmio_write(0x500, 1, 0);
    assert_eq!(esr(&mut a), ESR_ILLEGAL_REGISTER, "reserved offset write");
    assert_eq!(a.stats().illegal_accesses, 11);
}

#[test]
fn esr_is_a_write_then_read_latch() {
    let mut a = enabled(0);
    a.mmio_read(0x40, 0);
    assert_eq!(a.mmio_read(0x280, 0), 0, "not visible before a write");
    a.mmio_write(0x280, 0, 0);
    a.mmio_read(0x50, 0);
    assert_eq!(
        a.mmio_read(0x280, 0),
        ESR_ILLEGAL_REGISTER,
        "the first error"
    );
    a.mmio_write(0x280, 0xFFFF_FFFF, 0);
    assert_eq!(
        a.mmio_read(0x280, 0),
        ESR_ILLEGAL_REGISTER,
        "the second, latched later"
    );
    a.mmio_write(0x280, 0, 0);
    assert_eq!(a.mmio_read(0x280, 0), 0);
}

#[test]
fn an_error_raises_the_unmasked_lvt_error() {
    let mut a = enabled(0);
    a.mmio_write(0x370, 0xFE, 0);
    a.mmio_write(0x30, 1, 0);
    assert_eq!(a.highest_irr(), Some(0xFE));
    assert_eq!(a.pending(), Some(0xFE));
    // An error vector below 16 is not delivered.
    let mut b = enabled(0);
    b.mmio_write(0x370, 0x05, 0);
    b.mmio_write(0x30, 1, 0);
    assert_eq!(b.highest_irr(), None);
    assert_eq!(
        esr(&mut b),
        ESR_ILLEGAL_REGISTER | ESR_RECEIVE_ILLEGAL_VECTOR
    );
}

#[test]
fn software_disable_masks_every_lvt_and_keeps_them_masked() {
    let mut a = enabled(0);
    a.mmio_write(0x350, 0x700, 0);
    a.mmio_write(0x320, 0x30, 0);
    assert!(a.accepts_extint());
    assert_eq!(a.mmio_write(0xF0, 0xFF, 0), ApicEffect::TimerChanged);
    assert!(!a.is_enabled());
    assert_eq!(a.mmio_read(0x350, 0), 0x1_0700);
    assert_eq!(a.mmio_read(0x320, 0), 0x1_0030);
    assert!(!a.accepts_extint());
    a.mmio_write(0x350, 0x700, 0);
    assert_eq!(a.mmio_read(0x350, 0), 0x1_0700, "mask stays while disabled");
    a.mmio_write(0xF0, 0x1FF, 0);
    assert_eq!(a.mmio_read(0x350, 0), 0x1_0700, "enabling does not unmask");
    a.mmio_write(0x350, 0x700, 0);
    assert_eq!(a.mmio_read(0x350, 0), 0x700);
}

#[test]
fn lint1_nmi_follows_lvt_lint1() {
    let mut a = enabled(0);
    assert!(!a.lint1_nmi());
    a.mmio_write(0x360, 0x400, 0);
    assert!(a.lint1_nmi());
    a.mmio_write(0x360, 0x1_0400, 0);
    assert!(!a.lint1_nmi());
    a.mmio_write(0x350, 0x1_0700, 0);
    assert!(!a.accepts_extint(), "masked ExtINT");
    a.mmio_write(0x350, 0x000, 0);
    assert!(!a.accepts_extint(), "fixed, not ExtINT");
}

#[test]
fn mmio_is_ignored_in_x2apic_mode() {
    let mut a = x2(1);
    assert_eq!(a.mmio_read(0x30, 0), 0);
    assert_eq!(a.mmio_write(0x80, 0x40, 0), ApicEffect::None);
    assert_eq!(a.tpr(), 0);
    assert_eq!(a.stats().wrong_mode_accesses, 2);
}
