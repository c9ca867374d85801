//! Host tests of the local APIC model, by topic. Clocks are 1:1 (timer clock = TSC) unless a
//! test says otherwise, so counts and TSC deadlines are exact.

use super::registers::*;
use super::*;
use alloc::boxed::Box;

mod base;
mod destination;
mod hostile;
mod icr;
mod mmio;
mod priority;
mod registers;
mod reset;
mod state;
mod timer;
mod virtualization;
mod x2apic;

type Apic = LocalApic<Box<[u32; PAGE_WORDS]>>;

/// Guest MAXPHYADDR in these tests.
const PHYS_BITS: u8 = 39;

fn config(apic_id: u32, bsp: bool) -> ApicConfig {
    ApicConfig {
        apic_id,
        bsp,
        max_phys_addr_bits: PHYS_BITS,
        tsc_hz: 1_000_000,
        timer_hz: 1_000_000,
    }
}

/// A power-up APIC (xAPIC mode, software-disabled).
fn apic(apic_id: u32, bsp: bool) -> Apic {
    LocalApic::new(Box::new([0; PAGE_WORDS]), config(apic_id, bsp))
}

/// An AP's xAPIC, software-enabled with spurious vector 0xFF.
fn enabled(apic_id: u32) -> Apic {
    let mut a = apic(apic_id, false);
    a.mmio_write(0xF0, 0x1FF, 0);
    a
}

/// An AP's APIC in x2APIC mode, software-enabled.
fn x2(apic_id: u32) -> Apic {
    let mut a = apic(apic_id, false);
    a.set_apic_base(DEFAULT_APIC_BASE | APIC_BASE_EN | APIC_BASE_EXTD)
        .unwrap();
    a.msr_write(0x80F, 0x1FF, 0).unwrap();
    a
}

/// The raw page word at `offset`.
fn word(a: &Apic, offset: u16) -> u32 {
    a.page().regs()[offset as usize / 4]
}

/// Make the latched errors visible (write ESR) and read them (xAPIC).
fn esr(a: &mut Apic) -> u32 {
    a.mmio_write(0x280, 0, 0);
    a.mmio_read(0x280, 0)
}
