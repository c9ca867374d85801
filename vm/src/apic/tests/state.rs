//! Snapshots of the local APIC (issue 18): `save_state` / `load_state` round trips in every
//! mode and timer mode, the host-TSC shift, truncated and out-of-range input, and a random
//! walk whose every state must survive a restore and behave the same after it.

use super::*;
use crate::apic::timer::shift_deadline;
use crate::snapshot::codec::{Dec, Enc};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

// The layout of a saved APIC (state.rs): initial ID, base, page, ESR latch, timer.
const ID_AT: usize = 0;
const BASE_AT: usize = 4;
const PAGE_AT: usize = 12;
const ESR_AT: usize = PAGE_AT + 4 * PAGE_WORDS;
const MODE_AT: usize = ESR_AT + 4;
const DIVISOR_AT: usize = MODE_AT + 1;
const INITIAL_AT: usize = DIVISOR_AT + 8;
const ARMED_AT: usize = INITIAL_AT + 8;
const DEADLINE_AT: usize = ARMED_AT + 1;
const PERIOD_AT: usize = DEADLINE_AT + 8;
const STATE_LEN: usize = PERIOD_AT + 8;

const ONE_SHOT: u32 = 0;
const PERIODIC: u32 = 1 << 17;
const TSC_DEADLINE: u32 = 2 << 17;
const X2APIC_BASE: u64 = DEFAULT_APIC_BASE | APIC_BASE_EN | APIC_BASE_EXTD;

fn save(a: &Apic) -> Vec<u8> {
    let mut e = Enc::default();
    a.save_state(&mut e);
    e.0
}

/// `load_state` from all of `bytes`; on success every byte must have been read.
fn load(a: &mut Apic, bytes: &[u8], shift: u64) -> Result<(), &'static str> {
    let mut d = Dec::new(bytes);
    let result = a.load_state(&mut d, shift);
    if result.is_ok() {
        assert!(d.done(), "load_state reads every field");
    }
    result
}

/// A fresh APIC with `a`'s configuration, loaded from `a`'s state moved by `shift`.
fn restored(a: &Apic, shift: u64) -> Apic {
    let mut fresh = LocalApic::new(Box::new([0; PAGE_WORDS]), a.config);
    load(&mut fresh, &save(a), shift).expect("a saved state loads");
    fresh
}

fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

fn get_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

/// Where page register `offset` is in a saved state.
fn page_at(offset: u16) -> usize {
    PAGE_AT + usize::from(offset)
}

/// The BSP's xAPIC with most registers programmed, requests and an interrupt in service, a
/// latched error both in ESR and pending, and the timer in `lvt_mode` at divide 16:
/// one-shot / periodic armed with 1000 counts at TSC 100, TSC-deadline at 20,000.
fn busy_xapic(lvt_mode: u32) -> Apic {
    let mut a = apic(3, true);
    // Enabled, spurious vector 0xFF, EOI-broadcast suppression.
    a.mmio_write(0xF0, 0x11FF, 0);
    a.mmio_write(0x80, 0x20, 0);
    a.mmio_write(0xD0, 0x0500_0000, 0);
    a.mmio_write(0xE0, 0x0FFF_FFFF, 0);
    a.mmio_write(0x350, 0x0000_A700, 0); // LINT0 ExtINT, level, active low
    a.mmio_write(0x370, 0x40, 0); // LVT error: vector 0x40
    a.mmio_write(0x310, 0x0200_0000, 0);
    assert!(matches!(a.mmio_write(0x300, 0x4041, 0), ApicEffect::Ipi(_)));
    // An illegal register access (LVT error interrupt 0x40), made visible by an ESR write,
    // then a send-illegal-vector error left pending.
    a.mmio_read(0x10, 0);
    a.mmio_write(0x280, 0, 0);
    a.mmio_write(0x300, 0x4005, 0);
    assert!(a.accept(0x90, true));
    assert_eq!(a.acknowledge(), Some(0x90));
    assert!(a.accept(0x50, false));
    assert!(a.accept(0xA1, true));
    a.mmio_write(0x3E0, 0x3, 0);
    a.mmio_write(0x320, lvt_mode | 0x30, 0);
    a.mmio_write(0x380, 1000, 100);
    if lvt_mode == TSC_DEADLINE {
        a.set_tsc_deadline(20_000, 100);
    }
    a
}

/// An AP's x2APIC (ID 0x1234) with the timer periodic, an ICR sent, a self IPI, a
/// level-triggered interrupt in service.
fn busy_x2apic() -> Apic {
    let mut a = x2(0x1234);
    a.msr_write(0x808, 0x10, 0).unwrap();
    a.msr_write(0x837, 0x41, 0).unwrap();
    assert!(matches!(
        a.msr_write(0x830, 0x0000_0007_0000_4044, 0),
        Ok(ApicEffect::Ipi(_))
    ));
    a.msr_write(0x83F, 0x55, 0).unwrap();
    assert!(a.accept(0x66, true));
    assert_eq!(a.acknowledge(), Some(0x66));
    a.msr_write(0x83E, 0xB, 0).unwrap();
    a.msr_write(0x832, u64::from(PERIODIC | 0x31), 0).unwrap();
    a.msr_write(0x838, 700, 50).unwrap();
    a
}

/// Every register as software reads it at `now` (xAPIC MMIO or x2APIC MSRs).
fn registers(a: &mut Apic, now: u64) -> Vec<String> {
    let mut out = Vec::new();
    for offset in (0..PAGE_BYTES).step_by(usize::from(REGISTER_STRIDE)) {
        match a.mode() {
            ApicMode::XApic => out.push(format!("{offset:#x}={:#x}", a.mmio_read(offset, now))),
            ApicMode::X2Apic => {
                let msr = X2APIC_MSR_BASE + u32::from(offset / REGISTER_STRIDE);
                out.push(format!("{msr:#x}={:?}", a.msr_read(msr, now)));
            }
            ApicMode::Disabled => {}
        }
    }
    out
}

/// The same later inputs at TSC `t + shift` for each of the original's `t`: register reads,
/// timer queries and expiries, acknowledge and EOI. The outputs, timestamps moved back by
/// `shift`, must not depend on whether the APIC was restored.
fn script(a: &mut Apic, shift: u64) -> Vec<String> {
    let at = |t: u64| t.wrapping_add(shift);
    let back = |t: u64| t.wrapping_sub(shift);
    let mut out = registers(a, at(120));
    for t in [
        150, 5_000, 16_099, 16_100, 16_101, 19_999, 20_000, 40_000, 80_123,
    ] {
        out.push(format!(
            "{t}: deadline {:?}, tsc-deadline {:?}, fired {}",
            a.timer_deadline().map(back),
            Some(a.tsc_deadline(at(t))).filter(|&d| d != 0).map(back),
            a.advance(at(t)),
        ));
        out.push(format!(
            "pending {:?} ppr {:#x} irr {:?} isr {:?}",
            a.pending(),
            a.ppr(),
            a.highest_irr(),
            a.highest_isr()
        ));
        if let Some(vector) = a.acknowledge() {
            out.push(format!("ack {vector:#x}, eoi {:?}", a.end_of_interrupt()));
        }
    }
    out.extend(registers(a, at(90_000)));
    out
}

/// Round trip: the restored APIC saves the same bytes and behaves as the original does,
/// unshifted and shifted.
fn check_round_trip(mut a: Apic) {
    let bytes = save(&a);
    assert_eq!(bytes.len(), STATE_LEN);
    let b = restored(&a, 0);
    assert_eq!(save(&b), bytes, "save, load, save is byte-identical");
    assert_eq!(b.page().regs(), a.page().regs());
    let shifts = [0, 1, 12_345_678_901, 1 << 62];
    let mut copies: Vec<Apic> = shifts.iter().map(|&s| restored(&a, s)).collect();
    let expected = script(&mut a, 0);
    for (b, shift) in copies.iter_mut().zip(shifts) {
        assert_eq!(script(b, shift), expected, "shift {shift}");
    }
}

#[test]
fn an_xapic_round_trips_in_every_timer_mode() {
    for mode in [ONE_SHOT, PERIODIC, TSC_DEADLINE] {
        let a = busy_xapic(mode);
        assert!(a.timer_deadline().is_some(), "{mode:#x}: armed");
        assert_eq!(a.highest_isr(), Some(0x90));
        assert_eq!(a.esr_pending, ESR_SEND_ILLEGAL_VECTOR);
        assert_eq!(word(&a, 0x280), ESR_ILLEGAL_REGISTER);
        check_round_trip(a);
    }
}

#[test]
fn an_x2apic_round_trips() {
    let a = busy_x2apic();
    assert_eq!(a.mode(), ApicMode::X2Apic);
    let mut b = restored(&a, 0);
    check_round_trip(a);
    assert_eq!(b.msr_read(0x802, 0), Ok(0x1234));
    assert_eq!(b.msr_read(0x80D, 0), Ok(u64::from(x2apic_ldr(0x1234))));
    assert_eq!(b.msr_read(0x830, 0), Ok(0x0000_0007_0000_4044));
}

#[test]
fn power_up_disabled_and_expired_states_round_trip() {
    check_round_trip(apic(0, true));
    check_round_trip(apic(7, false));
    let mut disabled = busy_xapic(ONE_SHOT);
    disabled.set_apic_base(DEFAULT_APIC_BASE).unwrap();
    assert_eq!(disabled.mode(), ApicMode::Disabled);
    check_round_trip(disabled);
    // One-shot fired (initial count kept, disarmed); periodic several periods in; a
    // masked periodic timer counting; a divide change mid-count.
    let mut fired = busy_xapic(ONE_SHOT);
    assert!(fired.advance(20_000));
    assert_eq!(fired.timer_deadline(), None);
    check_round_trip(fired);
    let mut periodic = busy_xapic(PERIODIC);
    periodic.advance(50_000);
    periodic.mmio_write(0x3E0, 0xB, 50_001);
    check_round_trip(periodic);
    let mut masked = busy_xapic(PERIODIC);
    masked.mmio_write(0x320, LVT_MASKED | PERIODIC | 0x30, 200);
    assert_eq!(masked.timer_deadline(), None);
    check_round_trip(masked);
    // The reserved timer mode 11 a guest may write counts as one-shot.
    let mut reserved_mode = busy_xapic(ONE_SHOT);
    reserved_mode.mmio_write(0x320, (0b11 << 17) | 0x30, 0);
    check_round_trip(reserved_mode);
}

#[test]
fn the_shift_moves_the_timer_deadline() {
    const S: u64 = 987_654_321;
    for mode in [ONE_SHOT, PERIODIC, TSC_DEADLINE] {
        let a = busy_xapic(mode);
        let deadline = a.timer_deadline().unwrap();
        let b = restored(&a, S);
        assert_eq!(b.timer_deadline(), Some(deadline + S), "{mode:#x}");
        if mode == TSC_DEADLINE {
            assert_eq!(b.tsc_deadline(S), a.tsc_deadline(0) + S);
        }
    }
    let a = busy_x2apic();
    assert_eq!(
        restored(&a, S).timer_deadline(),
        a.timer_deadline().map(|d| d + S)
    );
}

#[test]
fn a_shift_behind_the_deadline_clamps_at_tsc_zero() {
    assert_eq!(shift_deadline(100, 5), 105);
    assert_eq!(shift_deadline(100, 0u64.wrapping_sub(30)), 70);
    assert_eq!(shift_deadline(100, 0u64.wrapping_sub(300)), 0, "was due");
    assert_eq!(shift_deadline(u64::MAX - 5, 10), u64::MAX);
    // A restore on a host whose TSC is behind the snapshot's deadline: due at once.
    let a = busy_xapic(ONE_SHOT);
    let deadline = a.timer_deadline().unwrap();
    let mut b = restored(&a, 0u64.wrapping_sub(deadline + 1_000));
    assert_eq!(b.timer_deadline(), Some(0));
    assert!(!b.vector_bit(IRR_BASE, 0x30));
    assert!(b.advance(0));
    assert!(b.vector_bit(IRR_BASE, 0x30), "the timer's vector requested");
}

#[test]
fn every_truncation_is_refused_and_changes_nothing() {
    for full in [save(&busy_xapic(PERIODIC)), save(&busy_x2apic())] {
        // The target is busy too, so a partial write would show.
        let mut target = busy_xapic(TSC_DEADLINE);
        let mut x2target = busy_x2apic();
        let before = (save(&target), save(&x2target));
        for len in 0..full.len() {
            for t in [&mut target, &mut x2target] {
                assert_eq!(
                    load(t, &full[..len], 0),
                    Err(
                        if len < BASE_AT || get_u32(&full, ID_AT) == t.config.apic_id {
                            "the section ends early"
                        } else {
                            "APIC ID differs from the restoring vCPU's"
                        }
                    ),
                    "{len} bytes"
                );
            }
        }
        assert_eq!((save(&target), save(&x2target)), before);
    }
}

#[test]
fn another_vcpus_apic_is_refused() {
    for a in [busy_xapic(ONE_SHOT), busy_x2apic()] {
        let bytes = save(&a);
        let mut other = LocalApic::new(
            Box::new([0; PAGE_WORDS]),
            ApicConfig {
                apic_id: a.config.apic_id + 1,
                ..a.config
            },
        );
        let before = save(&other);
        assert_eq!(
            load(&mut other, &bytes, 0),
            Err("APIC ID differs from the restoring vCPU's")
        );
        assert_eq!(save(&other), before);
    }
    // An x2APIC page whose ID is not the initial ID, the ID field right.
    let mut bytes = save(&busy_x2apic());
    put_u32(&mut bytes, page_at(0x20), 0x1235);
    assert_eq!(
        load(&mut x2(0x1234), &bytes, 0),
        Err("APIC ID differs from the restoring vCPU's")
    );
    // The BSP's state into an AP with the same ID.
    let bytes = save(&busy_xapic(ONE_SHOT));
    assert_eq!(
        load(&mut apic(3, false), &bytes, 0),
        Err("APIC base BSP flag differs from the restoring vCPU's")
    );
}

/// A saved state, a change to it, the refusal it must meet.
type Case = (Apic, fn(&mut [u8]), &'static str);

fn bad_cases() -> Vec<Case> {
    let xapic = || busy_xapic(ONE_SHOT);
    let periodic = || busy_xapic(PERIODIC);
    let deadline = || busy_xapic(TSC_DEADLINE);
    let mut cases: Vec<Case> = Vec::new();
    let mut case = |a: Apic, change: fn(&mut [u8]), why: &'static str| cases.push((a, change, why));
    case(
        xapic(),
        |b| put_u32(b, ID_AT, 4),
        "APIC ID differs from the restoring vCPU's",
    );
    case(
        xapic(),
        |b| set_base(b, |v| v | 1 << 9),
        "APIC base with reserved bits set",
    );
    case(
        xapic(),
        |b| set_base(b, |v| v | 1),
        "APIC base with reserved bits set",
    );
    case(
        xapic(),
        |b| set_base(b, |v| v | 1 << PHYS_BITS),
        "APIC base with reserved bits set",
    );
    case(
        xapic(),
        |b| set_base(b, |v| (v | APIC_BASE_EXTD) & !APIC_BASE_EN),
        "APIC base with x2APIC mode but the APIC disabled",
    );
    case(
        xapic(),
        |b| set_base(b, |v| v & !APIC_BASE_BSP),
        "APIC base BSP flag differs from the restoring vCPU's",
    );
    case(
        xapic(),
        |b| put_u32(b, page_at(0x20), 0x0300_0001),
        "xAPIC ID with reserved bits set",
    );
    case(
        busy_x2apic(),
        |b| put_u32(b, page_at(0x20), 0),
        "APIC ID differs from the restoring vCPU's",
    );
    case(
        xapic(),
        |b| put_u32(b, page_at(0x30), 0x15),
        "version register differs from the model's",
    );
    case(
        xapic(),
        |b| put_u32(b, page_at(0x80), 0x120),
        "TPR with reserved bits set",
    );
    case(
        xapic(),
        |b| put_u32(b, page_at(0xD0), 0x0500_0001),
        "LDR with reserved bits set",
    );
    case(
        busy_x2apic(),
        |b| put_u32(b, page_at(0xD0), 0x0500_0000),
        "x2APIC LDR not derived from the APIC ID",
    );
    case(
        xapic(),
        |b| put_u32(b, page_at(0xE0), 0xF000_0000),
        "DFR bits 27:0 not all ones",
    );
    case(
        xapic(),
        |b| put_u32(b, page_at(0xF0), 0x4FF),
        "SVR with reserved bits set",
    );
    case(
        xapic(),
        |b| put_u32(b, page_at(0x100), 1 << 2),
        "a vector below 16 in ISR, TMR or IRR",
    );
    case(
        xapic(),
        |b| put_u32(b, page_at(0x180), 1 << 15),
        "a vector below 16 in ISR, TMR or IRR",
    );
    case(
        busy_x2apic(),
        |b| put_u32(b, page_at(0x200), 1),
        "a vector below 16 in ISR, TMR or IRR",
    );
    case(
        xapic(),
        |b| put_u32(b, page_at(0x280), 1),
        "ESR with reserved bits set",
    );
    case(
        xapic(),
        |b| put_u32(b, page_at(0x350), 0x1000),
        "an LVT with reserved bits set",
    );
    case(
        xapic(),
        |b| put_u32(b, page_at(0x2F0), 1 << 17),
        "an LVT with reserved bits set",
    );
    case(
        xapic(),
        |b| put_u32(b, page_at(0x300), 0x1041),
        "ICR with reserved bits set",
    );
    case(
        xapic(),
        |b| put_u32(b, page_at(0x310), 0x0200_0001),
        "ICR destination with reserved bits set",
    );
    case(
        xapic(),
        |b| put_u32(b, page_at(0x3E0), 0x7),
        "divide configuration with reserved bits set",
    );
    case(
        xapic(),
        |b| put_u32(b, ESR_AT, 1),
        "ESR latch with reserved bits set",
    );
    case(xapic(), |b| b[MODE_AT] = 3, "timer mode 3 is reserved");
    case(xapic(), |b| b[MODE_AT] = 4, "timer mode out of range");
    case(
        xapic(),
        |b| put_u64(b, DIVISOR_AT, 0),
        "timer divisor not a power of two from 1 to 128",
    );
    case(
        xapic(),
        |b| put_u64(b, DIVISOR_AT, 3),
        "timer divisor not a power of two from 1 to 128",
    );
    case(
        xapic(),
        |b| put_u64(b, DIVISOR_AT, 256),
        "timer divisor not a power of two from 1 to 128",
    );
    case(
        xapic(),
        |b| put_u64(b, INITIAL_AT, 1 << 32),
        "timer initial count wider than 32 bits",
    );
    case(
        xapic(),
        |b| b[ARMED_AT] = 2,
        "timer armed flag neither 0 nor 1",
    );
    case(
        apic(3, true),
        |b| put_u64(b, DEADLINE_AT, 5),
        "a disarmed timer with a deadline",
    );
    case(
        periodic(),
        |b| put_u64(b, PERIOD_AT, 0),
        "periodic timer armed with period 0",
    );
    case(
        xapic(),
        |b| put_u64(b, PERIOD_AT, 16),
        "timer period outside periodic mode",
    );
    case(
        deadline(),
        |b| put_u64(b, PERIOD_AT, 16),
        "timer period outside periodic mode",
    );
    case(
        deadline(),
        |b| put_u64(b, INITIAL_AT, 9),
        "timer initial count in TSC-deadline mode",
    );
    case(
        xapic(),
        |b| {
            put_u64(b, INITIAL_AT, 0);
            put_u32(b, page_at(0x380), 0);
        },
        "timer armed with initial count 0",
    );
    case(
        apic(3, true),
        |b| b[MODE_AT] = 1,
        "timer mode differs from the LVT timer's",
    );
    case(
        periodic(),
        |b| put_u32(b, page_at(0x320), 0x30),
        "timer mode differs from the LVT timer's",
    );
    case(
        xapic(),
        |b| put_u64(b, INITIAL_AT, 999),
        "timer initial count differs from the register page's",
    );
    case(
        xapic(),
        |b| put_u32(b, page_at(0x380), 999),
        "timer initial count differs from the register page's",
    );
    case(
        xapic(),
        |b| put_u64(b, DIVISOR_AT, 4),
        "timer divisor differs from the divide configuration register",
    );
    case(
        xapic(),
        |b| put_u32(b, page_at(0x3E0), 0xB),
        "timer divisor differs from the divide configuration register",
    );
    cases
}

fn set_base(b: &mut [u8], change: fn(u64) -> u64) {
    let base = u64::from_le_bytes(b[BASE_AT..BASE_AT + 8].try_into().unwrap());
    put_u64(b, BASE_AT, change(base));
}

#[test]
fn out_of_range_fields_are_refused_by_name_and_change_nothing() {
    let cases = bad_cases();
    for (i, (a, change, why)) in cases.into_iter().enumerate() {
        let mut bytes = save(&a);
        assert!(load(&mut restored(&a, 0), &bytes, 0).is_ok());
        change(&mut bytes);
        let mut target = restored(&a, 0);
        let before = save(&target);
        assert_eq!(load(&mut target, &bytes, 0), Err(why), "case {i}");
        assert_eq!(save(&target), before, "case {i}: unchanged");
    }
}

#[test]
fn an_inconsistent_ppr_is_recomputed() {
    let a = busy_xapic(ONE_SHOT);
    let mut bytes = save(&a);
    put_u32(&mut bytes, page_at(0xA0), 0xEE);
    let mut b = restored(&apic(3, true), 0);
    load(&mut b, &bytes, 0).unwrap();
    assert_eq!(word(&b, 0xA0), 0x90, "ISR 0x90 over TPR 0x20");
    assert_eq!(save(&b), save(&a));
}

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

/// One random operation at host TSC `now` (`shift` added to the deadline a TSC-deadline
/// write names); what it returned, timestamps moved back by `shift`.
fn random_op(a: &mut Apic, r: u64, value: u64, now: u64, shift: u64) -> String {
    let offset = ((value >> 40) as u16 & 0x3F0) % PAGE_BYTES;
    let msr = X2APIC_MSR_BASE + (value >> 48) as u32 % 0x40;
    let bases = [
        DEFAULT_APIC_BASE | APIC_BASE_EN,
        X2APIC_BASE,
        DEFAULT_APIC_BASE,
    ];
    match r % 15 {
        0 | 1 => format!("{:?}", a.mmio_write(offset, value as u32, now)),
        2 => format!("{:?}", a.mmio_read(offset, now)),
        3 | 4 => format!("{:?}", a.msr_write(msr, value >> (r >> 58), now)),
        5 => format!("{:?}", a.msr_read(msr, now)),
        6 => format!("{:?}", a.accept(value as u8, value & 0x100 != 0)),
        7 => format!("{:?}", a.acknowledge()),
        8 => format!("{:?}", a.advance(now)),
        9 => format!("{:?}", a.apic_write(offset, now)),
        10 => {
            let deadline = (now.wrapping_sub(shift) + (value >> 52)).wrapping_add(shift);
            format!(
                "{:?} {:?}",
                a.set_tsc_deadline(deadline, now),
                Some(a.tsc_deadline(now))
                    .filter(|&d| d != 0)
                    .map(|d| d.wrapping_sub(shift))
            )
        }
        11 if value.is_multiple_of(8) => {
            let result = a.set_apic_base(bases[value as usize % bases.len()] | APIC_BASE_BSP);
            if value & 0x1000 != 0 {
                a.reset_for_init();
            }
            format!("{result:?}")
        }
        12 => {
            // APIC-register virtualization: the CPU stores a guest write to a register it
            // virtualizes (TPR: bits 7:0 only) and exits (SDM Vol. 3C §30.4.3).
            let writable = ApicRegister::from_offset(offset)
                .and_then(|reg| reg.access(a.mode()))
                .is_some_and(|access| access != Access::ReadOnly);
            if !writable {
                return String::from("-");
            }
            let value = if offset == ApicRegister::Tpr.offset() {
                value as u32 & 0xFF
            } else {
                value as u32
            };
            a.page_mut().regs_mut()[usize::from(offset) / 4] = value;
            format!("{:?}", a.apic_write(offset, now))
        }
        13 => {
            // Virtual-interrupt delivery's EOI: the CPU clears the highest ISR bit, then the
            // EOI-induced exit (SDM Vol. 3C §30.1.4).
            let Some(vector) = a.highest_isr() else {
                return String::from("-");
            };
            let (word, bit) = Apic::vector_slot(ISR_BASE, vector);
            a.page_mut().regs_mut()[word] &= !bit;
            format!("{:?}", a.eoi_virtualized(vector))
        }
        14 => {
            // Program the timer on purpose (random writes rarely arm it): a mode, a vector,
            // maybe masked, a divider, then a count or a TSC deadline.
            let lvt = (value % 3) << 17 | (value >> 8 & 0x1_00FF) | 0x20;
            let count = (value >> 32) % 5_000 + 1;
            let dcr = (value >> 24) as u32 & 0xB;
            let writes = [(0x3E0, u64::from(dcr)), (0x320, lvt), (0x380, count)];
            let mut out = String::new();
            for (offset, v) in writes {
                let effect = match a.mode() {
                    ApicMode::X2Apic => {
                        let msr = X2APIC_MSR_BASE + u32::from(offset / REGISTER_STRIDE);
                        format!("{:?}", a.msr_write(msr, v, now))
                    }
                    _ => format!("{:?}", a.mmio_write(offset, v as u32, now)),
                };
                out.push_str(&effect);
            }
            let deadline = now.wrapping_add(count);
            out.push_str(&format!("{:?}", a.set_tsc_deadline(deadline, now)));
            out
        }
        _ => format!("{:?}", a.mmio_write(0xB0, 0, now)),
    }
}

#[test]
fn every_state_of_a_random_walk_restores_and_continues_alike() {
    const STEPS: u64 = 40_000;
    const CHECK_EVERY: u64 = 97;
    const FOLLOW: u64 = 40;
    const SHIFT: u64 = 0x0123_4567_89AB;
    let mut rng = XorShift(0x2545_F491_4F6C_DD1D);
    let mut a = apic(2, true);
    let mut now = 1_000u64;
    let mut checked = 0;
    let mut seen = Vec::new();
    for step in 0..STEPS {
        if step % 512 == 0 {
            a.msr_write(0x80F, 0x1FF, now).ok();
            a.mmio_write(0xF0, 0x1FF, now);
        }
        now += rng.next() >> 56;
        let (r, value) = (rng.next(), rng.next());
        random_op(&mut a, r, value, now, 0);
        if step % CHECK_EVERY != 0 {
            continue;
        }
        let bytes = save(&a);
        seen.push((
            a.mode(),
            a.timer_mode(),
            a.timer.deadline.is_some(),
            a.highest_isr().is_some(),
        ));
        let mut b = restored(&a, SHIFT);
        assert_eq!(save(&restored(&a, 0)), bytes, "step {step}");
        // Continue both with the same inputs: the same outputs and pages.
        let mut original = restored(&a, 0);
        let mut fork = XorShift(rng.0);
        let mut t = now;
        for _ in 0..FOLLOW {
            t += fork.next() >> 58;
            let (r, value) = (fork.next(), fork.next());
            let x = random_op(&mut original, r, value, t, 0);
            let y = random_op(&mut b, r, value, t + SHIFT, SHIFT);
            assert_eq!(x, y, "step {step}");
            assert_eq!(original.page().regs(), b.page().regs(), "step {step}");
            assert_eq!(
                original.timer_deadline(),
                b.timer_deadline().map(|d| d - SHIFT)
            );
        }
        checked += 1;
    }
    assert_eq!(checked, STEPS.div_ceil(CHECK_EVERY));
    // The walk reached the interesting states: both enabled modes, every timer mode armed,
    // interrupts in service.
    for mode in [ApicMode::XApic, ApicMode::X2Apic, ApicMode::Disabled] {
        assert!(seen.iter().any(|s| s.0 == mode), "{mode:?}");
    }
    for timer in [
        TimerMode::OneShot,
        TimerMode::Periodic,
        TimerMode::TscDeadline,
    ] {
        let armed = seen.iter().filter(|s| s.1 == timer && s.2).count();
        assert!(armed > 3, "{timer:?} armed in {armed} states");
    }
    assert!(seen.iter().filter(|s| s.3).count() > 20);
    assert!(seen.iter().any(|s| s.0 == ApicMode::X2Apic && s.2));
    assert!(a.stats().timer_fires > 10, "{:?}", a.stats());
}
