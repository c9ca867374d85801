//! The hooks for APIC virtualization (SDM Vol. 3C ch. 30): RVI/SVI, EOI-induced exits,
//! APIC-write exits, the TPR threshold. The tests play the CPU's part on the page.

use super::*;

fn cpu_write(a: &mut Apic, offset: u16, value: u32) {
    a.page_mut().regs_mut()[offset as usize / 4] = value;
}

#[test]
fn rvi_and_svi_are_the_highest_irr_and_isr() {
    let mut a = enabled(0);
    assert_eq!((a.highest_irr(), a.highest_isr()), (None, None));
    assert!(a.accept(0x31, false));
    assert!(a.accept(0xA2, false));
    assert!(a.accept(0x7F, false));
    assert_eq!(a.highest_irr(), Some(0xA2));
    assert_eq!(a.acknowledge(), Some(0xA2));
    assert_eq!((a.highest_irr(), a.highest_isr()), (Some(0x7F), Some(0xA2)));
}

#[test]
fn eoi_induced_exit_only_broadcasts() {
    let mut a = enabled(0);
    assert!(a.accept(0x70, true));
    assert_eq!(a.acknowledge(), Some(0x70));
    // Virtual-interrupt delivery's EOI virtualization: the CPU clears VISR itself.
    cpu_write(&mut a, 0x100 + 0x30, 0);
    assert_eq!(
        a.eoi_virtualized(0x70),
        ApicEffect::Eoi {
            vector: 0x70,
            level: true
        }
    );
    assert_eq!(word(&a, 0xA0), 0, "PPR follows the cleared ISR");
    assert!(a.accept(0x71, false));
    assert_eq!(
        a.eoi_virtualized(0x71),
        ApicEffect::Eoi {
            vector: 0x71,
            level: false
        }
    );
    assert_eq!(a.highest_irr(), Some(0x71), "IRR untouched");
    assert_eq!((a.stats().eois, a.stats().level_eois), (2, 1));
}

#[test]
fn apic_write_exit_acts_on_the_page_value() {
    let mut a = enabled(0);
    cpu_write(&mut a, 0x80, 0x40);
    assert_eq!(a.apic_write(0x80, 0), ApicEffect::None);
    assert_eq!(word(&a, 0xA0), 0x40, "PPR recomputed");
    cpu_write(&mut a, 0x310, 0x0200_0000);
    assert_eq!(a.apic_write(0x310, 0), ApicEffect::None);
    cpu_write(&mut a, 0x300, 0x4035);
    let ApicEffect::Ipi(ipi) = a.apic_write(0x300, 0) else {
        panic!("no IPI")
    };
    assert_eq!((ipi.vector, ipi.destination), (0x35, 2));
    // ESR: the page holds the guest's written value; the write makes the latch visible.
    a.mmio_read(0x40, 0);
    cpu_write(&mut a, 0x280, 0);
    a.apic_write(0x280, 0);
    assert_eq!(word(&a, 0x280), ESR_ILLEGAL_REGISTER);
    // Initial count arms the timer.
    cpu_write(&mut a, 0x320, 0x30);
    assert_eq!(a.apic_write(0x320, 0), ApicEffect::TimerChanged);
    cpu_write(&mut a, 0x3E0, 0xB);
    a.apic_write(0x3E0, 0);
    cpu_write(&mut a, 0x380, 70);
    assert_eq!(a.apic_write(0x380, 5), ApicEffect::TimerChanged);
    assert_eq!(a.timer_deadline(), Some(75));
    // EOI without virtual-interrupt delivery: an ordinary EOI.
    assert!(a.accept(0x90, true));
    assert_eq!(a.acknowledge(), Some(0x90));
    assert_eq!(
        a.apic_write(0xB0, 0),
        ApicEffect::Eoi {
            vector: 0x90,
            level: true
        }
    );
    assert_eq!(a.highest_isr(), None);
}

#[test]
fn apic_write_in_x2apic_mode_reads_the_whole_icr() {
    let mut a = x2(0);
    cpu_write(&mut a, 0x310, 0x0000_0100);
    cpu_write(&mut a, 0x300, 0x0000_0500 | 0x4000);
    let ApicEffect::Ipi(ipi) = a.apic_write(0x300, 0) else {
        panic!("no IPI")
    };
    assert_eq!(
        (ipi.delivery_mode, ipi.destination),
        (DeliveryMode::Init, 0x100)
    );
    cpu_write(&mut a, 0x3F0, 0x66);
    assert_eq!(a.apic_write(0x3F0, 0), ApicEffect::SelfIpi { vector: 0x66 });
    assert_eq!(
        a.apic_write(0x30, 0),
        ApicEffect::None,
        "read-only: nothing"
    );
}

#[test]
fn tpr_threshold_is_the_blocked_class() {
    let mut a = enabled(0);
    assert_eq!(a.tpr_threshold(), 0);
    a.set_tpr(0x80);
    assert!(a.accept(0x51, false));
    assert_eq!(a.tpr_threshold(), 5);
    assert!(a.accept(0x82, false));
    assert_eq!(a.tpr_threshold(), 8, "same class as TPR: blocked");
    assert!(a.accept(0x91, false));
    assert_eq!(a.tpr_threshold(), 0, "deliverable: no threshold");
    // Blocked by the in-service vector, not by TPR: wait for the EOI instead.
    let mut b = enabled(0);
    assert!(b.accept(0xC0, false));
    assert_eq!(b.acknowledge(), Some(0xC0));
    assert!(b.accept(0xB0, false));
    b.set_tpr(0x20);
    assert_eq!(b.pending(), None);
    assert_eq!(b.tpr_threshold(), 0);
}
