//! The timers' snapshot state: the 8254 PIT and the MC146818 RTC.

use super::*;

// ---------------------------------------------------------------------------------------
// 8254

const PIT_TSC_HZ: u64 = 2_000_000_000;

/// A TSC delta of at least `ticks` PIT clocks.
fn pit_t(ticks: u64) -> u64 {
    ticks * PIT_TSC_HZ / PIT_HZ + 1
}

struct PitRig {
    pit: Pit,
    irq: Lines,
    con: FakeConsole,
}

impl PitRig {
    fn new(pit: Pit) -> Self {
        Self {
            pit,
            irq: Lines::default(),
            con: FakeConsole::default(),
        }
    }
    fn out(&mut self, port: u16, v: u8, now: u64) {
        let mut ctx = IoContext::new(now, &mut self.irq, &mut self.con);
        self.pit.write_port(port, v, &mut ctx);
    }
    fn inb(&mut self, port: u16, now: u64) -> u8 {
        let mut ctx = IoContext::new(now, &mut self.irq, &mut self.con);
        self.pit.read_port(port, &mut ctx)
    }
    fn advance(&mut self, now: u64) {
        let mut ctx = IoContext::new(now, &mut self.irq, &mut self.con);
        self.pit.advance(&mut ctx);
    }
}

/// Port B's refresh bit, which toggles with the absolute TSC (no state).
const PORT_B_REFRESH: u8 = 0x10;
/// When [`busy_pit`] leaves the PIT.
const PIT_SAVED_AT: u64 = 1_000 + 5 * 1_000 * PIT_TSC_HZ / PIT_HZ;

/// Counter 0 periodic (mode 2, 1000 clocks) with edges reported, counter 1 between the two
/// bytes of its count (mode 3), counter 2 in mode 0 paused by its gate with a count latched
/// and half read, a status latch on counter 0, the speaker on.
fn busy_pit() -> Pit {
    let mut r = PitRig::new(Pit::new(PIT_TSC_HZ));
    let t0 = 1_000;
    r.out(pit::PORT_CONTROL, 0x34, t0);
    r.out(pit::PORT_COUNTER0, 0xe8, t0);
    r.out(pit::PORT_COUNTER0, 0x03, t0);
    r.out(pit::PORT_CONTROL, 0x76, t0);
    r.out(pit::PORT_COUNTER1, 0x10, t0);
    r.out(pit::PORT_B, 0x03, t0);
    r.out(pit::PORT_CONTROL, 0xb0, t0);
    r.out(pit::PORT_COUNTER2, 0x00, t0);
    r.out(pit::PORT_COUNTER2, 0x40, t0);
    for k in 1..=3 {
        r.advance(t0 + pit_t(k * 1_000));
    }
    r.out(pit::PORT_B, 0x02, t0 + pit_t(100));
    r.out(pit::PORT_CONTROL, 0x80, t0 + pit_t(200));
    let _ = r.inb(pit::PORT_COUNTER2, t0 + pit_t(300));
    r.out(pit::PORT_CONTROL, 0xe2, PIT_SAVED_AT);
    r.pit
}

/// Guest-visible outputs of a fixed sequence of accesses at `PIT_SAVED_AT + shift` on.
fn pit_script(pit: Pit, shift: u64) -> Vec<u64> {
    let mut r = PitRig::new(pit);
    let mut out = Vec::new();
    let at = |k: u64| (PIT_SAVED_AT + pit_t(k * 173)).wrapping_add(shift);
    for k in 0..12u64 {
        let now = at(k);
        if k == 4 {
            r.out(pit::PORT_B, 0x03, now); // counter 2's gate back up
            r.out(pit::PORT_COUNTER1, 0x00, now); // counter 1's MSB
        }
        for port in [
            pit::PORT_COUNTER0,
            pit::PORT_COUNTER0,
            pit::PORT_COUNTER0,
            pit::PORT_COUNTER1,
            pit::PORT_COUNTER1,
            pit::PORT_COUNTER2,
            pit::PORT_COUNTER2,
        ] {
            out.push(u64::from(r.inb(port, now)));
        }
        out.push(u64::from(r.inb(pit::PORT_B, now) & !PORT_B_REFRESH));
        r.advance(now);
        out.push(r.irq.0.len() as u64);
        out.push(
            r.pit
                .next_deadline_tsc()
                .map_or(u64::MAX, |d| d.wrapping_sub(shift)),
        );
    }
    out
}

#[test]
fn pit_round_trip_and_behaviour() {
    let orig = busy_pit();
    let restored = restore(&orig, || Pit::new(PIT_TSC_HZ), 0);
    assert_eq!(pit_script(restored, 0), pit_script(orig, 0));
}

#[test]
fn pit_shift_moves_counters_and_deadline() {
    let orig = busy_pit();
    let expected = pit_script(orig.clone(), 0);
    // Restored later (a positive shift) and on a host rebooted since, whose TSC is behind the
    // counters' start times (they wrap below 0).
    for shift in [7 * PIT_TSC_HZ * 3600, 0u64.wrapping_sub(PIT_SAVED_AT / 2)] {
        let restored = restore(&orig, || Pit::new(PIT_TSC_HZ), shift);
        assert_eq!(
            restored.next_deadline_tsc(),
            orig.next_deadline_tsc().map(|d| d.wrapping_add(shift))
        );
        assert_eq!(pit_script(restored, shift), expected, "shift {shift}");
    }
}

#[test]
fn pit_truncations_refused() {
    assert_truncations_refused(&busy_pit(), || Pit::new(PIT_TSC_HZ));
}

/// A fresh counter's fields: mode, access, BCD, count (u32), loaded, null count, gate,
/// ticks (u64), running flag, write byte order, LSB, read byte order, latch flag, status
/// flag, edges (u64).
const PIT_FRESH_COUNTER: usize = 32;
const PIT_COUNT: usize = 3;
const PIT_GATE: usize = 9;
const PIT_WRITE_HI: usize = 19;
const PIT_EDGES: usize = 24;

#[test]
fn pit_out_of_range_refused() {
    let fresh = || Pit::new(PIT_TSC_HZ);
    let b = bytes_of(&fresh());
    assert_eq!(b.len(), 3 * PIT_FRESH_COUNTER + 2);
    let ch = |i: usize, field: usize| i * PIT_FRESH_COUNTER + field;
    let cases: [(usize, &[u8], &str); 9] = [
        (ch(2, 0), &[6], "PIT channel 2 mode above 5"),
        (
            ch(0, 1),
            &[0],
            "PIT channel 0 access (RW1-RW0) not LSB, MSB or LSB then MSB",
        ),
        (
            ch(1, PIT_COUNT),
            &[0, 0, 0, 0],
            "PIT channel 1 initial count outside 1..=65536",
        ),
        (
            ch(1, PIT_COUNT),
            &[1, 0, 1, 0],
            "PIT channel 1 initial count outside 1..=65536",
        ),
        (ch(0, 2), &[2], "PIT channel 0 BCD flag neither 0 nor 1"),
        (
            ch(0, PIT_GATE),
            &[0],
            "PIT channel 0 gate low, but only counter 2's gate is wired",
        ),
        (
            ch(1, PIT_EDGES),
            &[1],
            "PIT channel 1 counting without a count written",
        ),
        (
            3 * PIT_FRESH_COUNTER + 1,
            &[0x01],
            "PIT port B value beyond the check enables",
        ),
        (
            3 * PIT_FRESH_COUNTER,
            &[2],
            "PIT port B speaker bit neither 0 nor 1",
        ),
    ];
    for (at, v, message) in cases {
        assert_refused(fresh, &patched(&b, at, v), message);
    }
    // Counter 1 in LSB-only mode, between two bytes.
    let b1 = patched(&b, ch(1, 1), &[1]);
    assert_refused(
        fresh,
        &patched(&b1, ch(1, PIT_WRITE_HI), &[1]),
        "PIT channel 1 between two bytes without LSB-then-MSB access",
    );
    // Loaded counters: edges only where counter 0 can report them.
    let loaded = patched(&b, ch(1, 7), &[1]);
    assert_refused(
        fresh,
        &patched(&loaded, ch(1, PIT_EDGES), &[1]),
        "PIT channel 1 OUT edge count impossible in its mode",
    );
    let loaded = patched(&b, ch(0, 7), &[1]);
    assert_refused(
        fresh,
        &patched(&loaded, ch(0, PIT_EDGES), &[2]),
        "PIT channel 0 OUT edge count impossible in its mode",
    );
}

// ---------------------------------------------------------------------------------------
// MC146818

const RTC_HZ: u64 = 1_000_000_000;
/// 2026-12-31 23:59:59 UTC.
pub(super) const NYE: u64 = 1_798_761_599;

fn rtc_write(rtc: &mut Rtc, index: u8, v: u8, now: u64) {
    rtc.write_port(rtc::PORT_INDEX, index, now);
    rtc.write_port(rtc::PORT_DATA, v, now);
}

/// Memory-size bytes, general RAM, alarm bytes, binary 12-hour mode, a guest-set hour, the
/// index left at register A with NMI disabled.
fn running_rtc() -> Rtc {
    let mut rtc = Rtc::new(NYE, 1_000, RTC_HZ);
    rtc.set_memory_size(64 << 20);
    assert!(rtc.set_cmos_byte(0x40, 0x5a));
    rtc_write(&mut rtc, rtc::REG_B, 0x04, 2_000);
    rtc_write(&mut rtc, 0x04, 0x80 | 3, 3 * RTC_HZ);
    for (alarm, v) in [(0x01, 30), (0x03, 15), (0x05, 4)] {
        rtc_write(&mut rtc, alarm, v, 4 * RTC_HZ);
    }
    rtc.write_port(rtc::PORT_INDEX, 0x80 | rtc::REG_A, 5 * RTC_HZ);
    rtc
}

/// [`running_rtc`] with register B's SET on and the seconds rewritten while frozen.
fn frozen_rtc() -> Rtc {
    let mut rtc = running_rtc();
    rtc_write(&mut rtc, rtc::REG_B, 0x80 | 0x04, 6 * RTC_HZ);
    rtc_write(&mut rtc, 0x00, 42, 7 * RTC_HZ);
    rtc
}

const RTC_SAVED_AT: u64 = 8 * RTC_HZ;

/// Every register read at several times from `RTC_SAVED_AT + shift` on, with SET released
/// half way.
fn rtc_script(mut rtc: Rtc, shift: u64) -> Vec<u8> {
    let mut out = Vec::new();
    out.push(u8::from(rtc.nmi_disabled()));
    out.push(rtc.read_port(rtc::PORT_DATA, RTC_SAVED_AT.wrapping_add(shift)));
    for k in 0..6u64 {
        let now = (RTC_SAVED_AT + k * 1_700_000_000).wrapping_add(shift);
        if k == 3 {
            rtc_write(&mut rtc, rtc::REG_B, 0x04, now);
        }
        for index in 0..0x80u8 {
            rtc.write_port(rtc::PORT_INDEX, index, now);
            out.push(rtc.read_port(rtc::PORT_DATA, now));
        }
    }
    out
}

#[test]
fn rtc_round_trip_and_behaviour() {
    for orig in [running_rtc(), frozen_rtc()] {
        let restored = restore(&orig, || Rtc::new(0, 0, RTC_HZ), 0);
        assert_eq!(rtc_script(restored, 0), rtc_script(orig, 0));
    }
}

#[test]
fn rtc_shift_moves_the_clock() {
    for orig in [running_rtc(), frozen_rtc()] {
        let expected = rtc_script(orig.clone(), 0);
        // Restored an hour later, and on a host rebooted since: the base TSC (1000) wraps.
        for shift in [3_600 * RTC_HZ, 0u64.wrapping_sub(RTC_SAVED_AT / 2)] {
            let restored = restore(&orig, || Rtc::new(0, 0, RTC_HZ), shift);
            assert_eq!(
                restored.unix_time(RTC_SAVED_AT.wrapping_add(shift)),
                orig.unix_time(RTC_SAVED_AT)
            );
            assert_eq!(rtc_script(restored, shift), expected, "shift {shift}");
        }
    }
}

#[test]
fn rtc_truncations_refused() {
    assert_truncations_refused(&frozen_rtc(), || Rtc::new(0, 0, RTC_HZ));
}

/// Index, NMI flag, 128 CMOS bytes, base TSC, base seconds, offset, frozen flag, then the
/// frozen date: year (u64), month, day, hour, minute, second.
const RTC_CMOS: usize = 2;
const RTC_FROZEN: usize = RTC_CMOS + 128 + 24;

#[test]
fn rtc_out_of_range_refused() {
    let fresh = || Rtc::new(0, 0, RTC_HZ);
    let b = bytes_of(&frozen_rtc());
    let reg = |r: u8| RTC_CMOS + usize::from(r);
    let month = RTC_FROZEN + 1 + 8;
    let cases: [(usize, &[u8], &str); 10] = [
        (0, &[0x80], "RTC index above 0x7F"),
        (1, &[2], "RTC NMI-disable bit neither 0 nor 1"),
        (
            reg(rtc::REG_A),
            &[0xa6],
            "RTC register A stores the read-only UIP bit",
        ),
        (
            reg(rtc::REG_B),
            &[0x80 | 0x10],
            "RTC register B has SET and UIE together",
        ),
        (
            reg(rtc::REG_B),
            &[0x04],
            "RTC register B's SET bit disagrees with the frozen time",
        ),
        (
            reg(rtc::REG_C),
            &[0x80],
            "RTC CMOS byte of a clock or status register not 0",
        ),
        (RTC_FROZEN, &[2], "RTC frozen-time flag neither 0 nor 1"),
        (
            month,
            &[13],
            "RTC frozen time not a date the clock can show",
        ),
        // 31 February.
        (
            month,
            &[2, 31],
            "RTC frozen time not a date the clock can show",
        ),
        (
            month + 4,
            &[60],
            "RTC frozen time not a date the clock can show",
        ),
    ];
    for (at, v, message) in cases {
        assert_refused(fresh, &patched(&b, at, v), message);
    }
    // A year beyond any the clock can show (it would overflow the year arithmetic).
    assert_refused(
        fresh,
        &patched(&b, RTC_FROZEN + 1, &i64::MAX.to_le_bytes()),
        "RTC frozen time not a date the clock can show",
    );
}
