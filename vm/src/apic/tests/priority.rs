//! IRR/ISR/TMR, TPR/PPR and EOI (SDM Vol. 3A §11.8.3-§11.8.5).

use super::*;

const TMR: u16 = 0x180;

#[test]
fn accept_sets_irr_and_tmr_by_trigger_mode() {
    let mut a = enabled(0);
    assert!(a.accept(0x41, true));
    assert_eq!(word(&a, 0x200 + 0x20), 1 << 1);
    assert_eq!(word(&a, TMR + 0x20), 1 << 1, "level: TMR set");
    assert!(a.accept(0x41, false));
    assert_eq!(word(&a, TMR + 0x20), 0, "edge: TMR cleared");
    assert!(a.accept(0xFF, false));
    assert_eq!(word(&a, 0x270), 1 << 31);
    assert_eq!(a.highest_irr(), Some(0xFF));
    assert_eq!(a.stats().accepted, 3);
}

#[test]
fn vectors_below_16_are_refused_with_receive_illegal_vector() {
    let mut a = enabled(0);
    a.mmio_write(0x370, 0xEE, 0);
    for vector in [0, 1, 15] {
        assert!(!a.accept(vector, false));
    }
    assert_eq!(word(&a, 0x200), 0, "no IRR bit below 16");
    assert_eq!(a.highest_irr(), Some(0xEE), "the LVT error interrupt");
    assert_eq!(esr(&mut a), ESR_RECEIVE_ILLEGAL_VECTOR);
    assert_eq!(a.stats().illegal_vectors, 3);
    assert!(a.accept(16, false));
}

#[test]
fn a_software_disabled_apic_accepts_nothing() {
    let mut a = apic(0, false);
    assert!(!a.accept(0x40, false));
    assert_eq!(a.highest_irr(), None);
    assert_eq!(a.pending(), None);
}

#[test]
fn ppr_is_the_higher_of_tpr_and_the_in_service_class() {
    let mut a = enabled(0);
    assert!(a.accept(0x25, false));
    assert_eq!(a.acknowledge(), Some(0x25));
    a.mmio_write(0x80, 0x3A, 0);
    assert_eq!(a.mmio_read(0xA0, 0), 0x3A, "TPR class 3 >= ISR class 2");
    a.mmio_write(0x80, 0x1A, 0);
    assert_eq!(a.mmio_read(0xA0, 0), 0x20, "ISR class, sub-class 0");
    a.mmio_write(0x80, 0x2F, 0);
    assert_eq!(a.mmio_read(0xA0, 0), 0x2F, "equal classes: TPR");
    assert_eq!(a.priority_class(), 2);
}

#[test]
fn pending_needs_a_class_above_ppr() {
    let mut a = enabled(0);
    a.mmio_write(0x80, 0x50, 0);
    assert!(a.accept(0x45, false));
    assert_eq!(a.pending(), None, "class 4 <= TPR class 5");
    assert!(a.accept(0x5F, false));
    assert_eq!(a.pending(), None, "same class as TPR");
    assert!(a.accept(0x61, false));
    assert_eq!(a.pending(), Some(0x61));
    assert_eq!(a.acknowledge(), Some(0x61));
    assert_eq!(word(&a, 0x200 + 0x30), 0, "left IRR");
    assert_eq!(word(&a, 0x100 + 0x30), 1 << 1, "entered ISR");
    assert_eq!(a.mmio_read(0xA0, 0), 0x60);
    assert!(a.accept(0x65, false));
    assert_eq!(a.pending(), None, "same class as the in-service one");
    assert!(a.accept(0x71, false));
    assert_eq!(a.acknowledge(), Some(0x71));
    assert_eq!(a.highest_isr(), Some(0x71));
    assert_eq!(a.acknowledge(), None);
    a.mmio_write(0x80, 0x00, 0);
    assert_eq!(
        a.mmio_write(0xB0, 0, 0),
        ApicEffect::Eoi {
            vector: 0x71,
            level: false
        }
    );
    assert_eq!(
        a.mmio_write(0xB0, 0, 0),
        ApicEffect::Eoi {
            vector: 0x61,
            level: false
        }
    );
    assert_eq!(a.pending(), Some(0x65));
    assert_eq!(a.acknowledge(), Some(0x65));
    assert_eq!(a.acknowledge(), None, "0x5F: class 5 is not above PPR 0x60");
    assert_eq!(
        a.mmio_write(0xB0, 0, 0),
        ApicEffect::Eoi {
            vector: 0x65,
            level: false
        }
    );
    assert_eq!(a.acknowledge(), Some(0x5F));
}

#[test]
fn eoi_ends_the_highest_in_service_vector() {
    let mut a = enabled(0);
    assert!(a.accept(0x40, false));
    assert_eq!(a.acknowledge(), Some(0x40));
    assert!(a.accept(0x80, false));
    assert_eq!(a.acknowledge(), Some(0x80));
    assert_eq!(a.mmio_read(0xA0, 0), 0x80);
    assert_eq!(
        a.mmio_write(0xB0, 0, 0),
        ApicEffect::Eoi {
            vector: 0x80,
            level: false
        }
    );
    assert_eq!(a.highest_isr(), Some(0x40));
    assert_eq!(a.mmio_read(0xA0, 0), 0x40);
    assert_eq!(
        a.mmio_write(0xB0, 0, 0),
        ApicEffect::Eoi {
            vector: 0x40,
            level: false
        }
    );
    assert_eq!(a.mmio_read(0xA0, 0), 0);
    assert_eq!(a.mmio_write(0xB0, 0, 0), ApicEffect::None);
    let stats = a.stats();
    assert_eq!(
        (stats.eois, stats.level_eois, stats.spurious_eois),
        (2, 0, 1)
    );
}

#[test]
fn level_eoi_is_broadcast_unless_suppressed() {
    let mut a = enabled(0);
    assert!(a.accept(0x50, true));
    assert_eq!(a.acknowledge(), Some(0x50));
    assert_eq!(
        a.mmio_write(0xB0, 0, 0),
        ApicEffect::Eoi {
            vector: 0x50,
            level: true
        }
    );
    assert_eq!(a.stats().level_eois, 1);
    a.mmio_write(0xF0, 0x11FF, 0);
    assert!(a.accept(0x50, true));
    assert_eq!(a.acknowledge(), Some(0x50));
    assert_eq!(
        a.mmio_write(0xB0, 0, 0),
        ApicEffect::Eoi {
            vector: 0x50,
            level: false
        }
    );
    assert_eq!(a.stats().level_eois, 1);
}

#[test]
fn set_tpr_is_cr8() {
    let mut a = enabled(0);
    assert!(a.accept(0x35, false));
    a.set_tpr(0x30);
    assert_eq!(a.pending(), None);
    assert_eq!(a.mmio_read(0x80, 0), 0x30);
    a.set_tpr(0x20);
    assert_eq!(a.pending(), Some(0x35));
}
