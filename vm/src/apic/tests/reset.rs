//! Power-up and INIT state (SDM Vol. 3A §11.4.7.1, §11.4.7.3).

use super::*;

const LVT_OFFSETS: [u16; 7] = [0x320, 0x330, 0x340, 0x350, 0x360, 0x370, 0x2F0];

#[test]
fn bsp_power_up_state_is_virtual_wire() {
    let mut a = apic(3, true);
    assert_eq!(a.mmio_read(0x20, 0), 0x0300_0000);
    assert_eq!(a.apic_id(), 3);
    // 0x14 | max LVT 6 << 16 | EOI-broadcast suppression.
    assert_eq!(a.mmio_read(0x30, 0), 0x0106_0014);
    assert_eq!(a.mmio_read(0x80, 0), 0);
    assert_eq!(a.mmio_read(0xA0, 0), 0);
    assert_eq!(a.mmio_read(0xD0, 0), 0);
    assert_eq!(a.mmio_read(0xE0, 0), 0xFFFF_FFFF);
    assert_eq!(a.mmio_read(0xF0, 0), 0xFF);
    assert_eq!(a.mmio_read(0x350, 0), 0x700, "LINT0 ExtINT, unmasked");
    assert_eq!(a.mmio_read(0x360, 0), 0x400, "LINT1 NMI, unmasked");
    for offset in [0x320, 0x330, 0x340, 0x370, 0x2F0] {
        assert_eq!(a.mmio_read(offset, 0), 0x1_0000, "LVT {offset:#x} masked");
    }
    assert_eq!(a.apic_base(), 0xFEE0_0900);
    assert_eq!(a.mode(), ApicMode::XApic);
    assert_eq!(a.mmio_base(), 0xFEE0_0000);
    assert!(a.accepts_extint());
    assert!(a.lint1_nmi());
    assert!(!a.is_enabled());
    assert_eq!(a.timer_mode(), TimerMode::OneShot);
    assert_eq!(a.timer_deadline(), None);
    assert_eq!(a.stats(), ApicStats::default());
}

#[test]
fn ap_power_up_state_masks_every_lvt() {
    let mut a = apic(1, false);
    assert_eq!(a.apic_base(), 0xFEE0_0800);
    for offset in LVT_OFFSETS {
        assert_eq!(a.mmio_read(offset, 0), 0x1_0000, "LVT {offset:#x}");
    }
    assert!(!a.accepts_extint());
    assert!(!a.lint1_nmi());
}

#[test]
fn init_keeps_id_and_base_and_resets_the_rest() {
    let mut a = enabled(2);
    a.mmio_write(0x20, 0x0700_0000, 0);
    a.mmio_write(0x80, 0x40, 0);
    a.mmio_write(0x350, 0x700, 0);
    a.mmio_write(0x380, 500, 0);
    assert!(a.accept(0x80, true));
    assert_eq!(a.acknowledge(), Some(0x80));
    assert!(a.accept(0x90, false));
    a.reset_for_init();
    assert_eq!(a.mmio_read(0x20, 0), 0x0700_0000);
    assert_eq!(a.apic_base(), 0xFEE0_0800);
    assert_eq!(a.mmio_read(0x80, 0), 0);
    assert_eq!(a.mmio_read(0xF0, 0), 0xFF);
    assert_eq!(a.mmio_read(0x350, 0), 0x1_0000);
    assert_eq!(a.mmio_read(0x380, 0), 0);
    assert_eq!(a.timer_deadline(), None);
    assert_eq!(a.highest_irr(), None);
    assert_eq!(a.highest_isr(), None);
    assert_eq!(word(&a, 0x180 + 0x40), 0, "TMR cleared");
}

#[test]
fn init_in_x2apic_mode_keeps_the_mode_id_and_ldr() {
    let mut a = x2(0x23);
    a.msr_write(0x808, 0x30, 0).unwrap();
    a.reset_for_init();
    assert_eq!(a.mode(), ApicMode::X2Apic);
    assert_eq!(a.msr_read(0x802, 0), Ok(0x23));
    assert_eq!(a.msr_read(0x80D, 0), Ok(0x0002_0008));
    assert_eq!(a.msr_read(0x808, 0), Ok(0));
    assert_eq!(a.msr_read(0x80F, 0), Ok(0xFF));
}

#[test]
fn the_page_is_the_register_file() {
    let mut a = enabled(0);
    a.mmio_write(0x80, 0x5A, 0);
    assert_eq!(word(&a, 0x80), 0x5A);
    assert_eq!(word(&a, 0xA0), 0x5A, "PPR kept in the page");
    assert!(a.accept(0x41, false));
    assert_eq!(
        word(&a, 0x200 + 0x20),
        1 << 1,
        "IRR word 2 bit 1 = vector 0x41"
    );
    // The CPU's side: a write to VTPR is what the model reads.
    a.page_mut().regs_mut()[0x80 / 4] = 0x20;
    assert_eq!(a.tpr(), 0x20);
}
