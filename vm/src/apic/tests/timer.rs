//! The APIC timer (SDM Vol. 3A §11.5.4, Figure 11-10; TSC-deadline §11.5.4.1).

use super::*;
use crate::apic::timer::divisor;

const ONE_SHOT: u32 = 0;
const PERIODIC: u32 = 1 << 17;
const TSC_DEADLINE: u32 = 2 << 17;
const DIVIDE_BY_1: u32 = 0xB;

/// An enabled APIC with the timer's LVT and divider set.
fn timer(lvt: u32, dcr: u32) -> Apic {
    let mut a = enabled(0);
    a.mmio_write(0x3E0, dcr, 0);
    a.mmio_write(0x320, lvt, 0);
    a
}

#[test]
fn divide_configuration_values() {
    let table = [
        (0x0, 2),
        (0x1, 4),
        (0x2, 8),
        (0x3, 16),
        (0x8, 32),
        (0x9, 64),
        (0xA, 128),
        (0xB, 1),
    ];
    for (dcr, div) in table {
        assert_eq!(divisor(dcr), div, "DCR {dcr:#x}");
        assert_eq!(divisor(dcr | 0x4), div, "bit 2 is reserved");
    }
    let mut a = enabled(0);
    a.mmio_write(0x3E0, 0x4, 0);
    assert_eq!(a.mmio_read(0x3E0, 0), 0);
}

#[test]
fn each_divider_sets_the_period() {
    for (dcr, div) in [(0x0, 2), (0x3, 16), (0xA, 128), (0xB, 1)] {
        let mut a = timer(ONE_SHOT | 0x30, dcr);
        a.mmio_write(0x380, 10, 1000);
        assert_eq!(a.timer_deadline(), Some(1000 + 10 * div), "divide by {div}");
    }
}

#[test]
fn one_shot_counts_down_and_fires_once() {
    let mut a = timer(ONE_SHOT | 0x30, DIVIDE_BY_1);
    assert_eq!(a.mmio_write(0x380, 1000, 100), ApicEffect::TimerChanged);
    assert_eq!(a.mmio_read(0x390, 100), 1000);
    assert_eq!(a.mmio_read(0x390, 350), 750);
    assert_eq!(a.timer_deadline(), Some(1100));
    assert!(!a.advance(1099));
    assert_eq!(a.highest_irr(), None);
    assert!(a.advance(1100));
    assert_eq!(a.highest_irr(), Some(0x30));
    assert_eq!(word(&a, 0x180 + 0x10), 0, "edge-triggered");
    assert_eq!(a.mmio_read(0x390, 1200), 0);
    assert_eq!(a.mmio_read(0x380, 1200), 1000, "initial count kept");
    assert_eq!(a.timer_deadline(), None);
    assert!(!a.advance(5000));
    assert_eq!(a.stats().timer_fires, 1);
}

#[test]
fn the_timer_clock_scales_against_the_tsc() {
    // 3 TSC ticks per timer tick, divide by 2: 6 TSC ticks per count.
    let mut cfg = config(0, false);
    cfg.tsc_hz = 3_000_000;
    let mut a = LocalApic::new(Box::new([0; PAGE_WORDS]), cfg);
    a.mmio_write(0xF0, 0x1FF, 0);
    a.mmio_write(0x320, 0x30, 0);
    a.mmio_write(0x380, 5, 60);
    assert_eq!(a.timer_deadline(), Some(90));
    assert_eq!(a.mmio_read(0x390, 61), 5);
    assert_eq!(a.mmio_read(0x390, 66), 4);
    assert_eq!(a.mmio_read(0x390, 89), 1);
    assert_eq!(a.mmio_read(0x390, 90), 0);
}

#[test]
fn periodic_reloads_without_drift_and_coalesces() {
    let mut a = timer(PERIODIC | 0x31, DIVIDE_BY_1);
    a.mmio_write(0x380, 100, 0);
    assert!(a.advance(100));
    assert_eq!(a.timer_deadline(), Some(200));
    assert_eq!(
        a.mmio_read(0x390, 250),
        50,
        "the read fired the tick at 200"
    );
    assert_eq!(a.timer_deadline(), Some(300));
    assert_eq!(
        a.mmio_write(0xB0, 0, 450),
        ApicEffect::None,
        "nothing in service"
    );
    // The write at 450 advanced: 300 and 400 due -> one interrupt, one coalesced.
    assert_eq!(a.timer_deadline(), Some(500));
    assert_eq!(a.mmio_read(0x390, 450), 50);
    assert!(!a.advance(499));
    assert!(a.advance(503));
    assert_eq!(a.timer_deadline(), Some(600), "late advance does not drift");
    let stats = a.stats();
    assert_eq!((stats.timer_fires, stats.timer_coalesced), (4, 1));
}

#[test]
fn a_masked_timer_counts_but_never_interrupts() {
    let mut a = timer(LVT_MASKED | ONE_SHOT | 0x30, DIVIDE_BY_1);
    a.mmio_write(0x380, 100, 0);
    assert_eq!(a.timer_deadline(), None, "nothing to wake up for");
    assert_eq!(a.mmio_read(0x390, 40), 60);
    assert!(!a.advance(200));
    assert_eq!(a.stats().timer_fires, 1);
    a.mmio_write(0x320, 0x30, 300);
    assert!(
        !a.advance(400),
        "the expiry while masked is not delivered late"
    );
    assert_eq!(a.highest_irr(), None);
}

#[test]
fn unmasking_a_running_timer_shows_its_deadline() {
    let mut a = timer(LVT_MASKED | PERIODIC | 0x30, DIVIDE_BY_1);
    a.mmio_write(0x380, 100, 0);
    assert_eq!(
        a.mmio_write(0x320, PERIODIC | 0x30, 250),
        ApicEffect::TimerChanged
    );
    assert_eq!(a.timer_deadline(), Some(300));
    assert_eq!(
        a.stats().timer_coalesced,
        1,
        "100 and 200 passed while masked"
    );
}

#[test]
fn initial_count_zero_stops_the_timer() {
    let mut a = timer(ONE_SHOT | 0x30, DIVIDE_BY_1);
    a.mmio_write(0x380, 100, 0);
    a.mmio_write(0x380, 0, 10);
    assert_eq!(a.timer_deadline(), None);
    assert_eq!(a.mmio_read(0x390, 20), 0);
    assert!(!a.advance(1000));
}

#[test]
fn a_divide_change_keeps_the_remaining_count() {
    let mut a = timer(ONE_SHOT | 0x30, DIVIDE_BY_1);
    a.mmio_write(0x380, 1000, 0);
    a.mmio_write(0x3E0, 0x0, 400);
    assert_eq!(a.timer_deadline(), Some(400 + 600 * 2));
    assert_eq!(a.mmio_read(0x390, 1000), 300);
}

#[test]
fn tsc_deadline_mode() {
    let mut a = timer(TSC_DEADLINE | 0x32, DIVIDE_BY_1);
    assert_eq!(a.timer_mode(), TimerMode::TscDeadline);
    a.mmio_write(0x380, 500, 0);
    assert_eq!(a.mmio_read(0x380, 0), 0, "initial count ignored");
    assert_eq!(a.timer_deadline(), None);
    assert_eq!(a.set_tsc_deadline(5000, 100), ApicEffect::TimerChanged);
    assert_eq!(a.timer_deadline(), Some(5000));
    assert_eq!(a.tsc_deadline(100), 5000);
    assert_eq!(a.mmio_read(0x390, 100), 0, "current count unused");
    assert!(!a.advance(4999));
    assert!(a.advance(5000));
    assert_eq!(a.highest_irr(), Some(0x32));
    assert_eq!(a.tsc_deadline(5001), 0, "reads 0 after firing");
    assert_eq!(a.timer_deadline(), None);
    assert_eq!(
        a.msr_write(IA32_TSC_DEADLINE, 9000, 6000),
        Ok(ApicEffect::TimerChanged)
    );
    assert_eq!(a.msr_read(IA32_TSC_DEADLINE, 6000), Ok(9000));
    a.set_tsc_deadline(0, 6001);
    assert_eq!(a.timer_deadline(), None, "0 disarms");
    assert_eq!(a.set_tsc_deadline(10, 7000), ApicEffect::TimerChanged);
    assert!(a.advance(7000), "a past deadline fires at once");
}

#[test]
fn the_tsc_deadline_msr_is_ignored_in_the_other_modes() {
    let mut a = timer(ONE_SHOT | 0x30, DIVIDE_BY_1);
    assert_eq!(a.set_tsc_deadline(5000, 0), ApicEffect::None);
    assert_eq!(a.tsc_deadline(0), 0);
    assert_eq!(a.timer_deadline(), None);
}

#[test]
fn switching_the_timer_mode_disarms() {
    let mut a = timer(ONE_SHOT | 0x30, DIVIDE_BY_1);
    a.mmio_write(0x380, 1000, 0);
    a.mmio_write(0x320, PERIODIC | 0x30, 10);
    assert_eq!(a.timer_deadline(), None);
    assert_eq!(a.mmio_read(0x380, 10), 0);
    a.mmio_write(0x320, TSC_DEADLINE | 0x30, 20);
    a.set_tsc_deadline(100, 20);
    a.mmio_write(0x320, ONE_SHOT | 0x30, 30);
    assert_eq!(a.timer_deadline(), None);
    assert!(!a.advance(200));
    // Same mode, new vector: still armed.
    a.mmio_write(0x380, 50, 300);
    a.mmio_write(0x320, ONE_SHOT | 0x40, 310);
    assert_eq!(a.timer_deadline(), Some(350));
}

#[test]
fn software_disable_hides_the_deadline() {
    let mut a = timer(ONE_SHOT | 0x30, DIVIDE_BY_1);
    a.mmio_write(0x380, 100, 0);
    a.mmio_write(0xF0, 0xFF, 10);
    assert_eq!(a.timer_deadline(), None);
    assert!(!a.advance(200));
}

#[test]
fn x2apic_timer_msrs() {
    let mut a = x2(0);
    a.msr_write(0x83E, u64::from(DIVIDE_BY_1), 0).unwrap();
    a.msr_write(0x832, u64::from(PERIODIC | 0x33), 0).unwrap();
    assert_eq!(a.msr_write(0x838, 40, 0), Ok(ApicEffect::TimerChanged));
    assert_eq!(a.msr_read(0x839, 10), Ok(30));
    assert_eq!(a.msr_read(0x838, 10), Ok(40));
    assert!(a.advance(40));
    assert_eq!(a.pending(), Some(0x33));
}
