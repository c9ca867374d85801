//! Snapshot state of the legacy devices (issue 18): for every device and for the
//! [`LegacyPlatform`], a state reached through the guest-facing API survives save → load →
//! save byte for byte and behaves the same afterwards; a shift moves its timers; every
//! truncation and the out-of-range values are refused without changing the device.

use alloc::boxed::Box;
use alloc::vec::Vec;

use super::acpi_pm::{self, AcpiPm, PowerRequest};
use super::dma_page::DmaPages;
use super::ioapic::{IoApic, IOREGSEL, IOWIN, PINS};
use super::irq_lines::IrqLines;
use super::legacy::{LegacyPlatform, PlatformConfig};
use super::pic::{self, Pic};
use super::pit::{self, Pit, PIT_HZ};
use super::rtc::{self, Rtc};
use super::state::{ENDS_EARLY, TRAILING};
use super::uart::{Uart, COM1_BASE, RX_CAPACITY};
use crate::io::tests::FakeConsole;
use crate::io::{AccessSize, IoContext, IrqSink, PortDevice};
use crate::snapshot::codec::{Dec, Enc};

/// The snapshot interface every device has, for the generic checks below.
trait Saved {
    fn save(&self, e: &mut Enc);
    fn load(&mut self, d: &mut Dec<'_>, shift: u64) -> Result<(), &'static str>;
}

macro_rules! saved {
    ($($t:ty),*) => {
        $(impl Saved for $t {
            fn save(&self, e: &mut Enc) {
                self.save_state(e);
            }
            fn load(&mut self, d: &mut Dec<'_>, shift: u64) -> Result<(), &'static str> {
                self.load_state(d, shift)
            }
        })*
    };
}

saved!(
    Pic,
    Pit,
    Rtc,
    Uart,
    AcpiPm,
    DmaPages,
    IoApic,
    IrqLines,
    LegacyPlatform
);

fn bytes_of<T: Saved>(t: &T) -> Vec<u8> {
    let mut e = Enc::default();
    t.save(&mut e);
    e.0
}

/// Loads `b` into `t`; the whole of `b` must be read.
fn load<T: Saved>(t: &mut T, b: &[u8], shift: u64) -> Result<(), &'static str> {
    let mut d = Dec::new(b);
    t.load(&mut d, shift)?;
    assert!(d.done(), "load_state left bytes unread");
    Ok(())
}

/// Saves `orig`, loads it into `fresh()` with `shift`, and checks that saving the restored
/// device again gives the same bytes (with shift 0) ; returns the restored device.
fn restore<T: Saved>(orig: &T, fresh: impl Fn() -> T, shift: u64) -> T {
    let b = bytes_of(orig);
    let mut t = fresh();
    load(&mut t, &b, shift).expect("a saved state loads");
    if shift == 0 {
        assert_eq!(bytes_of(&t), b, "save → load → save is byte-identical");
    }
    t
}

/// Every proper prefix of `orig`'s state is refused as ending early, and leaves a fresh
/// device as it was.
fn assert_truncations_refused<T: Saved>(orig: &T, fresh: impl Fn() -> T) {
    let b = bytes_of(orig);
    assert!(!b.is_empty());
    for n in 0..b.len() {
        let mut t = fresh();
        let before = bytes_of(&t);
        let mut d = Dec::new(&b[..n]);
        assert_eq!(t.load(&mut d, 0), Err(ENDS_EARLY), "prefix of {n} bytes");
        assert_eq!(
            bytes_of(&t),
            before,
            "prefix of {n} bytes changed the device"
        );
    }
}

/// `b` with the bytes at `at` replaced by `v`.
fn patched(b: &[u8], at: usize, v: &[u8]) -> Vec<u8> {
    let mut b = b.to_vec();
    b[at..at + v.len()].copy_from_slice(v);
    b
}

/// `b` is refused with `message`, and a fresh device is left as it was.
fn assert_refused<T: Saved>(fresh: impl Fn() -> T, b: &[u8], message: &str) {
    let mut t = fresh();
    let before = bytes_of(&t);
    let mut d = Dec::new(b);
    assert_eq!(t.load(&mut d, 0), Err(message));
    assert_eq!(bytes_of(&t), before, "a refused load changed the device");
}

/// Records every IRQ line change a device makes.
#[derive(Debug, Default)]
struct Lines(Vec<(u8, bool)>);

impl IrqSink for Lines {
    fn set_irq(&mut self, irq: u8, level: bool) {
        self.0.push((irq, level));
    }
}

// ---------------------------------------------------------------------------------------
// 8259A

/// Linux's init_8259A on the master, the slave stopped after ICW2 (expecting ICW3), then
/// requests, an interrupt in service, rotation, special mask, ELCR and read-ISR select.
fn busy_pic() -> Pic {
    let mut p = Pic::new();
    for (port, v) in [
        (pic::MASTER_CMD, 0x11),
        (pic::MASTER_DATA, 0x30),
        (pic::MASTER_DATA, 0x04),
        (pic::MASTER_DATA, 0x01),
        (pic::MASTER_DATA, 0x00),
        (pic::ELCR_MASTER, 0x20),
        (pic::SLAVE_CMD, 0x19),
        (pic::SLAVE_DATA, 0x38),
    ] {
        p.write_port(port, v);
    }
    p.raise(3);
    assert_eq!(p.acknowledge(), Some(0x33));
    p.raise(4);
    p.raise(5);
    p.raise(12);
    p.write_port(pic::MASTER_CMD, 0xc1); // set priority: IR2 highest
    p.write_port(pic::MASTER_CMD, 0x68); // OCW3: special mask mode on
    p.write_port(pic::MASTER_CMD, 0x0b); // OCW3: read ISR
    p
}

/// Guest-visible outputs of a fixed input sequence.
fn pic_script(p: &mut Pic) -> Vec<u32> {
    let mut out = Vec::new();
    let note = |p: &mut Pic, out: &mut Vec<u32>| {
        out.push(p.pending_vector().map_or(0x100, u32::from));
        out.push(u32::from(p.irr()));
        out.push(u32::from(p.isr()));
        out.push(u32::from(p.imr()));
    };
    for port in [
        pic::MASTER_CMD,
        pic::MASTER_DATA,
        pic::SLAVE_CMD,
        pic::SLAVE_DATA,
        pic::ELCR_MASTER,
        pic::ELCR_SLAVE,
    ] {
        out.push(u32::from(p.read_port(port)));
    }
    note(p, &mut out);
    // Finish the slave's ICW sequence, unmask, take interrupts, EOI.
    p.write_port(pic::SLAVE_DATA, 0x02);
    p.write_port(pic::SLAVE_DATA, 0x00);
    note(p, &mut out);
    for _ in 0..4 {
        out.push(p.acknowledge().map_or(0x100, u32::from));
        note(p, &mut out);
    }
    p.write_port(pic::MASTER_CMD, 0x20);
    p.write_port(pic::SLAVE_CMD, 0x20);
    p.lower(5);
    p.raise(1);
    note(p, &mut out);
    p.write_port(pic::MASTER_CMD, 0x0c); // poll
    out.push(u32::from(p.read_port(pic::MASTER_CMD)));
    note(p, &mut out);
    out
}

#[test]
fn pic_round_trip_and_behaviour() {
    let orig = busy_pic();
    let mut restored = restore(&orig, Pic::new, 0);
    let mut orig = orig;
    assert_eq!(pic_script(&mut restored), pic_script(&mut orig));
}

#[test]
fn pic_truncations_refused() {
    assert_truncations_refused(&busy_pic(), Pic::new);
}

/// Per chip: IRR, ISR, IMR, lines, vector base, ICW step, flags (u16), priority, ELCR.
const PIC_CHIP: usize = 10;

#[test]
fn pic_out_of_range_refused() {
    let b = bytes_of(&busy_pic());
    let cases: [(usize, &[u8], &str); 7] = [
        (
            4,
            &[0x31],
            "PIC master vector base (ICW2) not a multiple of 8",
        ),
        (5, &[4], "PIC master initialisation step above ICW4"),
        (
            6,
            &[0x00, 0x04],
            "PIC master mode flags with undefined bits set",
        ),
        (
            PIC_CHIP + 8,
            &[8],
            "PIC slave lowest priority (OCW2 L2-L0) above 7",
        ),
        (
            PIC_CHIP + 9,
            &[0x01],
            "PIC slave ELCR makes an edge-only input level-triggered",
        ),
        // The slave expects ICW3; claim it is initialised, or in single mode.
        (
            PIC_CHIP + 6,
            &[0x01, 0x00],
            "PIC slave initialised in the middle of its ICW sequence",
        ),
        (
            PIC_CHIP + 6,
            &[0x04, 0x00],
            "PIC slave expects ICW3 in single mode",
        ),
    ];
    for (at, v, message) in cases {
        assert_refused(Pic::new, &patched(&b, at, v), message);
    }
    // ICW4 expected without ICW1.IC4: the slave's step moved to ICW4, its flags cleared.
    let b = patched(&b, PIC_CHIP + 5, &[3]);
    let b = patched(&b, PIC_CHIP + 6, &[0, 0]);
    assert_refused(
        Pic::new,
        &b,
        "PIC slave expects an ICW4 its ICW1 did not announce",
    );
}

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
const NYE: u64 = 1_798_761_599;

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

// ---------------------------------------------------------------------------------------
// 16550

struct UartRig {
    uart: Uart,
    irq: Lines,
    con: FakeConsole,
}

impl UartRig {
    fn new(uart: Uart) -> Self {
        Self {
            uart,
            irq: Lines::default(),
            con: FakeConsole::default(),
        }
    }
    fn out(&mut self, reg: u16, v: u8) {
        let mut ctx = IoContext::new(0, &mut self.irq, &mut self.con);
        self.uart.write_port(COM1_BASE + reg, v, &mut ctx);
    }
    fn inb(&mut self, reg: u16) -> u8 {
        let mut ctx = IoContext::new(0, &mut self.irq, &mut self.con);
        self.uart.read_port(COM1_BASE + reg, &mut ctx)
    }
    fn receive(&mut self, bytes: &[u8]) -> usize {
        let mut ctx = IoContext::new(0, &mut self.irq, &mut self.con);
        self.uart.receive(bytes, &mut ctx)
    }
}

/// Divisor 3, 8N1 with a stick bit, FIFO on, scratch byte, OUT2, received bytes waiting
/// with the data and THRE interrupts enabled (the line high).
fn receiving_uart() -> Uart {
    let mut r = UartRig::new(Uart::com1());
    r.out(3, 0x80);
    r.out(0, 3);
    r.out(1, 0);
    r.out(3, 0x23);
    r.out(2, 0x07);
    r.out(7, 0x5a);
    r.out(4, 0x0b);
    r.out(1, 0x03);
    assert_eq!(r.receive(b"hello"), 5);
    assert!(r.uart.irq_level());
    r.uart
}

/// Loopback with an overrun (the receiver full), modem-status deltas and the line-status
/// and modem-status interrupts enabled.
fn overrun_uart() -> Uart {
    let mut r = UartRig::new(Uart::com1());
    r.out(1, 0x0c);
    r.out(4, 0x10 | 0x02);
    for i in 0..=RX_CAPACITY {
        r.out(0, i as u8);
    }
    r.uart
}

/// Reads and writes of every register, with the console output and IRQ changes.
fn uart_script(uart: Uart) -> (Vec<u8>, Vec<(u8, bool)>, Vec<u8>) {
    let mut r = UartRig::new(uart);
    let mut out = Vec::new();
    out.push(u8::from(r.uart.irq_level()));
    out.push(r.uart.rx_space() as u8);
    for reg in [2, 5, 6, 0, 2, 0, 1, 3, 4, 7, 2, 5, 6] {
        out.push(r.inb(reg));
    }
    r.out(0, b'!');
    r.out(4, 0x08);
    r.receive(b"xy");
    for _ in 0..8 {
        for reg in [2, 5, 0] {
            out.push(r.inb(reg));
        }
    }
    r.out(3, 0x80);
    out.push(r.inb(0));
    out.push(r.inb(1));
    (out, r.irq.0, r.con.0)
}

#[test]
fn uart_round_trip_and_behaviour() {
    for orig in [receiving_uart(), overrun_uart(), Uart::com1()] {
        let restored = restore(&orig, Uart::com1, 0);
        assert_eq!(restored.irq_level(), orig.irq_level());
        assert_eq!(uart_script(restored), uart_script(orig));
    }
}

#[test]
fn uart_truncations_refused() {
    assert_truncations_refused(&receiving_uart(), Uart::com1);
}

#[test]
fn uart_out_of_range_refused() {
    let b = bytes_of(&receiving_uart());
    // IER, LCR, MCR, SCR, DLL, DLM, FIFO, THRE pending, LSR errors, MSR deltas, FIFO length.
    let cases: [(usize, &[u8], &str); 7] = [
        (0, &[0x10], "UART IER with bits 7:4 set"),
        (2, &[0x20], "UART MCR with bits 7:5 set"),
        (6, &[2], "UART FIFO enable neither 0 nor 1"),
        (7, &[0xff], "UART THRE-pending flag neither 0 nor 1"),
        (8, &[0x01], "UART LSR errors other than overrun"),
        (9, &[0x10], "UART MSR deltas beyond bits 3:0"),
        (
            10,
            &(RX_CAPACITY as u32 + 1).to_le_bytes(),
            "UART receive FIFO longer than its capacity",
        ),
    ];
    for (at, v, message) in cases {
        assert_refused(Uart::com1, &patched(&b, at, v), message);
    }
    // A length within the capacity but beyond the input ends early.
    assert_refused(
        Uart::com1,
        &patched(&b, 10, &(RX_CAPACITY as u32).to_le_bytes()),
        ENDS_EARLY,
    );
}

// ---------------------------------------------------------------------------------------
// ACPI PM1 blocks

/// WAK_STS from an unsupported sleep, the power button pressed and enabled, S5 in SLP_TYP,
/// SYS_RST stored and a power-off request not yet taken.
fn busy_acpi_pm() -> AcpiPm {
    let mut pm = AcpiPm::new();
    pm.write_port(0x605, 0x20 | (3 << 2));
    pm.press_power_button();
    pm.write_port(0x602, 0x20);
    pm.write_port(0x603, 0x01);
    pm.write_port(acpi_pm::RESET_PORT, 0x02);
    pm.write_port(0x605, 0x20 | (acpi_pm::SLP_TYP_S5 << 2));
    assert_eq!(pm.request(), Some(PowerRequest::Off));
    pm
}

fn acpi_pm_script(mut pm: AcpiPm) -> Vec<u32> {
    let mut out = Vec::new();
    let note = |pm: &AcpiPm, out: &mut Vec<u32>| {
        for port in (0x600..0x606).chain([acpi_pm::RESET_PORT]) {
            out.push(u32::from(pm.read_port(port)));
        }
        out.push(u32::from(pm.sci_level()));
    };
    note(&pm, &mut out);
    out.push(match pm.take_request() {
        None => 0,
        Some(PowerRequest::Off) => 1,
        Some(PowerRequest::Reset) => 2,
    });
    pm.write_port(0x601, 0x81);
    note(&pm, &mut out);
    pm.write_port(acpi_pm::RESET_PORT, acpi_pm::RESET_VALUE);
    out.push(u32::from(pm.take_request() == Some(PowerRequest::Reset)));
    note(&pm, &mut out);
    out
}

#[test]
fn acpi_pm_round_trip_and_behaviour() {
    let orig = busy_acpi_pm();
    let restored = restore(&orig, AcpiPm::new, 0);
    assert_eq!(acpi_pm_script(restored), acpi_pm_script(orig));
}

#[test]
fn acpi_pm_truncations_refused() {
    assert_truncations_refused(&busy_acpi_pm(), AcpiPm::new);
}

#[test]
fn acpi_pm_out_of_range_refused() {
    let b = bytes_of(&busy_acpi_pm());
    // PM1_STS, PM1_EN, PM1_CNT (u16 each), reset register, request.
    let cases: [(usize, &[u8], &str); 5] = [
        (0, &[0x01, 0x00], "ACPI PM1_STS with unmodelled bits"),
        (2, &[0x01, 0x00], "ACPI PM1_EN with unmodelled bits"),
        (4, &[0x01, 0x00], "ACPI PM1_CNT with bits that do not stick"),
        (
            6,
            &[0x04],
            "ACPI reset register with bits that do not stick",
        ),
        (7, &[3], "ACPI power request neither none, off nor reset"),
    ];
    for (at, v, message) in cases {
        assert_refused(AcpiPm::new, &patched(&b, at, v), message);
    }
}

// ---------------------------------------------------------------------------------------
// DMA page registers (every byte value is one a guest can write: nothing is out of range)

fn written_dma_pages() -> DmaPages {
    let mut d = DmaPages::new();
    for (port, v) in [(0x80, 0x12), (0x87, 0x05), (0x8f, 0x00), (0x81, 0xa5)] {
        d.write_port(port, v);
    }
    d
}

#[test]
fn dma_pages_round_trip_and_behaviour() {
    let orig = written_dma_pages();
    let restored = restore(&orig, DmaPages::new, 0);
    for port in 0x7f..0x91 {
        assert_eq!(restored.read_port(port), orig.read_port(port));
    }
    assert_eq!(restored.post_code(), 0x12);
}

#[test]
fn dma_pages_truncations_refused() {
    assert_truncations_refused(&written_dma_pages(), DmaPages::new);
}

// ---------------------------------------------------------------------------------------
// 82093AA

fn ioapic_write(io: &mut IoApic, index: u8, value: u32) {
    io.mmio_write(IOREGSEL, u32::from(index));
    io.mmio_write(IOWIN, value);
}

const LEVEL: u32 = 1 << 15;
const MASK: u32 = 1 << 16;
const ACTIVE_LOW: u32 = 1 << 13;
const LOGICAL: u32 = 1 << 11;

/// A new ID; pin 9 level-triggered, asserted and delivered (remote IRR set); pin 4 edge,
/// active low, masked, its line high; pin 1 edge to a logical destination; IOREGSEL left
/// at pin 1's high dword.
fn busy_ioapic() -> IoApic {
    let mut io = IoApic::new(2);
    ioapic_write(&mut io, 0x00, 5 << 24);
    ioapic_write(&mut io, 0x10 + 18 + 1, 1 << 24);
    ioapic_write(&mut io, 0x10 + 18, 0x49 | LEVEL);
    assert!(io.set_line(9, true).is_some());
    ioapic_write(&mut io, 0x10 + 8, 0x34 | ACTIVE_LOW | MASK);
    io.set_line(4, true);
    ioapic_write(&mut io, 0x10 + 2 + 1, 0x03 << 24);
    ioapic_write(&mut io, 0x10 + 2, 0x31 | LOGICAL);
    io.mmio_write(IOREGSEL, 0x13);
    io
}

fn ioapic_script(mut io: IoApic) -> Vec<u64> {
    let mut out = Vec::new();
    let note = |io: &IoApic, out: &mut Vec<u64>| {
        out.push(u64::from(io.mmio_read(IOREGSEL)));
        out.push(u64::from(io.mmio_read(IOWIN)));
        for index in 0..0x40u8 {
            out.push(u64::from(
                io.read_register(super::ioapic::Register::decode(index)),
            ));
        }
        out.extend(io.level_vectors());
    };
    let message = |m: Option<super::ioapic::IoApicMessage>, out: &mut Vec<u64>| {
        out.push(m.map_or(u64::MAX, |m| {
            u64::from(m.pin)
                | u64::from(m.vector) << 8
                | u64::from(m.dest) << 16
                | u64::from(m.level_triggered) << 24
                | u64::from(m.dest_mode == super::ioapic::DestinationMode::Logical) << 25
        }));
    };
    note(&io, &mut out);
    // Pin 9 is still asserted: the EOI re-delivers it.
    for m in io.eoi(0x49) {
        message(Some(m), &mut out);
    }
    message(io.set_line(9, true), &mut out);
    // Unmasking pin 4, then its line going low (active low: asserted).
    ioapic_write(&mut io, 0x10 + 8, 0x34 | ACTIVE_LOW);
    message(io.set_line(4, false), &mut out);
    message(io.set_line(1, true), &mut out);
    message(io.set_line(1, false), &mut out);
    message(io.set_line(1, true), &mut out);
    note(&io, &mut out);
    out
}

#[test]
fn ioapic_round_trip_and_behaviour() {
    let orig = busy_ioapic();
    let restored = restore(&orig, || IoApic::new(0), 0);
    assert_eq!(restored.id(), 5);
    assert_eq!(ioapic_script(restored), ioapic_script(orig));
}

#[test]
fn ioapic_truncations_refused() {
    assert_truncations_refused(&busy_ioapic(), || IoApic::new(0));
}

/// IOREGSEL, ID, arbitration ID, 24 entries (u64 each), pin levels (u32).
const IOAPIC_ENTRIES: usize = 3;
const IOAPIC_BYTES: usize = IOAPIC_ENTRIES + 8 * PINS + 4;

#[test]
fn ioapic_out_of_range_refused() {
    let fresh = || IoApic::new(0);
    let b = bytes_of(&busy_ioapic());
    assert_eq!(b.len(), IOAPIC_BYTES);
    let entry = |pin: usize| IOAPIC_ENTRIES + 8 * pin;
    let with_bits = |pin: usize, bits: u64| {
        let e = u64::from_le_bytes(b[entry(pin)..entry(pin) + 8].try_into().unwrap());
        patched(&b, entry(pin), &(e | bits).to_le_bytes())
    };
    assert_refused(fresh, &patched(&b, 1, &[16, 16]), "IOAPIC ID above 15");
    assert_refused(
        fresh,
        &patched(&b, 2, &[4]),
        "IOAPIC arbitration ID differs from its ID",
    );
    let reserved = "IOAPIC redirection entry with reserved or delivery-status bits set";
    assert_refused(fresh, &with_bits(3, 1 << 17), reserved);
    assert_refused(fresh, &with_bits(3, 1 << 55), reserved);
    assert_refused(fresh, &with_bits(9, 1 << 12), reserved);
    assert_refused(
        fresh,
        &with_bits(4, 1 << 14),
        "IOAPIC remote IRR set on an edge-triggered entry",
    );
    assert_refused(
        fresh,
        &patched(&b, IOAPIC_BYTES - 4, &(1u32 << 24).to_le_bytes()),
        "IOAPIC line levels beyond pin 23",
    );
}

// ---------------------------------------------------------------------------------------
// The ISA lines: both controllers and the IOAPIC's queued messages

/// Programs GSI `pin`: `low` (vector, modes) to physical APIC ID `dest`.
fn route(lines: &mut IrqLines, pin: u8, low: u32, dest: u8) {
    let index = 0x10 + 2 * u32::from(pin);
    lines.ioapic_write(IOREGSEL, index + 1);
    lines.ioapic_write(IOWIN, u32::from(dest) << 24);
    lines.ioapic_write(IOREGSEL, index);
    lines.ioapic_write(IOWIN, low);
}

/// The PIC pair initialised, IRQ1 and 5 requested at it; three edge messages (pin 5) and a
/// level one (pin 9) queued, the queue's head moved past a taken message.
fn busy_lines() -> IrqLines {
    let mut lines = IrqLines::new(3);
    for (port, v) in [
        (0x20, 0x11),
        (0x21, 0x20),
        (0x21, 0x04),
        (0x21, 0x01),
        (0xa0, 0x11),
        (0xa1, 0x28),
        (0xa1, 0x02),
        (0xa1, 0x01),
        (0x21, 0xd9),
    ] {
        lines.pic.write_port(port, v);
    }
    route(&mut lines, 5, 0x45, 1);
    route(&mut lines, 9, 0x49 | LEVEL, 0);
    for _ in 0..4 {
        lines.set_irq(5, true);
        lines.set_irq(5, false);
    }
    assert!(lines.take_message().is_some());
    lines.set_irq(9, true);
    lines.set_irq(1, true);
    lines
}

fn lines_script(mut lines: IrqLines) -> Vec<u64> {
    let mut out = Vec::new();
    let messages = |lines: &mut IrqLines, out: &mut Vec<u64>| {
        while let Some(m) = lines.take_message() {
            out.push(u64::from(m.pin) | u64::from(m.vector) << 8 | u64::from(m.dest) << 16);
        }
        out.push(u64::MAX);
    };
    out.push(u64::from(lines.has_messages()));
    messages(&mut lines, &mut out);
    out.push(lines.pic.pending_vector().map_or(u64::MAX, u64::from));
    out.push(lines.pic.acknowledge().map_or(u64::MAX, u64::from));
    out.push(lines.pic.acknowledge().map_or(u64::MAX, u64::from));
    lines.ioapic_eoi(0x49);
    lines.set_irq(5, true);
    messages(&mut lines, &mut out);
    out.extend(lines.ioapic.level_vectors());
    for irq in 0..16 {
        out.push(u64::from(lines.line_unmasked(irq)));
    }
    out
}

#[test]
fn irq_lines_round_trip_and_behaviour() {
    let orig = busy_lines();
    let restored = restore(&orig, || IrqLines::new(3), 0);
    assert_ne!(
        restored.level_generation,
        IrqLines::new(3).level_generation,
        "a cached EOI-exit bitmap must be refreshed after a load"
    );
    assert_eq!(lines_script(restored), lines_script(orig));
}

#[test]
fn irq_lines_truncations_refused() {
    assert_truncations_refused(&busy_lines(), || IrqLines::new(3));
}

/// Where the queue starts: after both chips and the IOAPIC.
const LINES_QUEUE: usize = 2 * PIC_CHIP + IOAPIC_BYTES;

#[test]
fn irq_lines_out_of_range_refused() {
    let fresh = || IrqLines::new(3);
    let b = bytes_of(&busy_lines());
    assert_eq!(b[LINES_QUEUE], 4, "three pin-5 messages and one pin-9");
    // Per message: pin, vector, delivery mode, logical, destination, level.
    let first = LINES_QUEUE + 1;
    let cases: [(usize, &[u8], &str); 6] = [
        (
            LINES_QUEUE,
            &[33],
            "more queued IOAPIC messages than the queue holds",
        ),
        (first, &[24], "queued IOAPIC message for a pin above 23"),
        (
            first + 2,
            &[0b011],
            "queued IOAPIC message with a reserved delivery mode",
        ),
        (
            first + 3,
            &[2],
            "queued IOAPIC message's destination mode neither 0 nor 1",
        ),
        (
            first + 5,
            &[2],
            "queued IOAPIC message's trigger mode neither 0 nor 1",
        ),
        // The level pin-9 message is the last; make it NMI.
        (
            first + 3 * 6 + 2,
            &[0b100],
            "queued IOAPIC message level-triggered in an edge-only delivery mode",
        ),
    ];
    for (at, v, message) in cases {
        assert_refused(fresh, &patched(&b, at, v), message);
    }
    // The nested devices' refusals come through.
    assert_refused(
        fresh,
        &patched(&b, 4, &[0x21]),
        "PIC master vector base (ICW2) not a multiple of 8",
    );
    assert_refused(
        fresh,
        &patched(&b, 2 * PIC_CHIP + 1, &[16]),
        "IOAPIC ID above 15",
    );
}

// ---------------------------------------------------------------------------------------
// The platform

const HZ: u64 = 3_000_000_000;
const B: AccessSize = AccessSize::Byte;

fn config(acpi_pm: bool) -> PlatformConfig {
    let mut cfg = PlatformConfig::new(HZ);
    cfg.wall_clock_secs = NYE;
    cfg.boot_tsc = 500;
    cfg.ram_bytes = 64 << 20;
    cfg.acpi_pm = acpi_pm;
    cfg.ioapic_id = 1;
    cfg
}

/// A platform created as a restore would create it: same configuration, other clock.
fn fresh_platform(acpi_pm: bool) -> LegacyPlatform {
    let mut cfg = config(acpi_pm);
    cfg.wall_clock_secs = 12_345;
    cfg.boot_tsc = 77;
    LegacyPlatform::new(cfg)
}

fn out(p: &mut LegacyPlatform, port: u16, v: u8, now: u64) {
    p.io_write(port, B, u32::from(v), now);
}

const PLATFORM_SAVED_AT: u64 = 40_000_000;

/// Linux's PIC and PIT (periodic, HZ = 100) set-up with IRQ0 and 4 unmasked, a timer
/// interrupt in service, console input waiting, an RTC hour and CMOS byte written, the
/// IOAPIC routing pin 4, a queued message, the power button pressed and enabled.
fn busy_platform(acpi_pm: bool) -> LegacyPlatform {
    let mut p = LegacyPlatform::new(config(acpi_pm));
    for (port, v) in [
        (0x21, 0xff),
        (0xa1, 0xff),
        (0x20, 0x11),
        (0x21, 0x30),
        (0x21, 0x04),
        (0x21, 0x01),
        (0xa0, 0x11),
        (0xa1, 0x38),
        (0xa1, 0x02),
        (0xa1, 0x01),
        (0x21, 0xea),
        (0xa1, 0xfd),
        (0x43, 0x34),
        (0x40, 0x9c),
        (0x40, 0x2e),
        (0x3fc, 0x0b),
        (0x3f9, 0x01),
        (0x70, 0x04),
        (0x71, 0x07),
        (0x70, 0x41),
        (0x71, 0x99),
        (0x87, 0x03),
    ] {
        out(&mut p, port, v, 1_000);
    }
    p.tick(35_000_000);
    assert_eq!(p.acknowledge(), Some(0x30));
    assert_eq!(p.uart_receive(b"ls\n", 36_000_000), 3);
    p.ioapic_write(IOREGSEL, 0x10 + 8);
    p.ioapic_write(IOWIN, 0x44);
    p.set_irq(4, false);
    p.set_irq(4, true);
    if acpi_pm {
        p.io_write(0x602, AccessSize::Word, 0x0100, PLATFORM_SAVED_AT);
        p.press_power_button();
    }
    p
}

/// Guest-visible outputs from `PLATFORM_SAVED_AT + shift` on: interrupts, timer deadlines,
/// counter and clock reads, console input, IOAPIC messages, ACPI registers.
fn platform_script(mut p: LegacyPlatform, shift: u64) -> Vec<u64> {
    let mut out = Vec::new();
    for k in 0..10u64 {
        let now = (PLATFORM_SAVED_AT + k * 13_000_000).wrapping_add(shift);
        p.tick(now);
        out.push(p.pending_vector().map_or(u64::MAX, u64::from));
        out.push(u64::from(p.can_interrupt()));
        if let Some(v) = p.acknowledge() {
            out.push(u64::from(v));
            out.push(u64::from(p.io_read(0x3fa, B, now)));
            p.io_write(0x20, B, 0x20, now);
        }
        for port in [
            0x40, 0x40, 0x3fd, 0x3f8, 0x20, 0x21, 0xa1, 0x87, 0x600, 0x602,
        ] {
            out.push(u64::from(p.io_read(port, AccessSize::Word, now)));
        }
        for index in [0x00, 0x02, 0x04, 0x07, 0x41] {
            p.io_write(0x70, B, index, now);
            out.push(u64::from(p.io_read(0x71, B, now)));
        }
        out.push(
            p.next_deadline_tsc()
                .map_or(u64::MAX, |d| d.wrapping_sub(shift)),
        );
        while let Some(m) = p.take_ioapic_message() {
            out.push(u64::from(m.vector) << 8 | u64::from(m.pin));
        }
        out.push(u64::from(p.ioapic_read(IOWIN)));
    }
    out
}

#[test]
fn platform_round_trip_and_behaviour() {
    for acpi_pm in [false, true] {
        let orig = busy_platform(acpi_pm);
        let restored = restore(&orig, || fresh_platform(acpi_pm), 0);
        assert_eq!(platform_script(restored, 0), platform_script(orig, 0));
    }
}

#[test]
fn platform_shift_moves_every_timer() {
    let orig = busy_platform(true);
    let expected = platform_script(busy_platform(true), 0);
    for shift in [HZ * 86_400, 0u64.wrapping_sub(PLATFORM_SAVED_AT / 4)] {
        let restored = restore(&orig, || fresh_platform(true), shift);
        assert_eq!(
            restored.next_deadline_tsc(),
            orig.next_deadline_tsc().map(|d| d.wrapping_add(shift))
        );
        assert_eq!(platform_script(restored, shift), expected, "shift {shift}");
    }
}

#[test]
fn platform_truncations_refused() {
    for acpi_pm in [false, true] {
        assert_truncations_refused(&busy_platform(acpi_pm), || fresh_platform(acpi_pm));
    }
}

#[test]
fn platform_acpi_presence_must_match() {
    let with = bytes_of(&busy_platform(true));
    let without = bytes_of(&busy_platform(false));
    assert_refused(
        || fresh_platform(false),
        &with[..with.len() - 8],
        "an ACPI PM device this platform is configured without",
    );
    assert_refused(
        || fresh_platform(true),
        &without,
        "no ACPI PM device, but this platform has one",
    );
    let at = without.len() - 1;
    assert_refused(
        || fresh_platform(false),
        &patched(&without, at, &[2]),
        "ACPI PM presence neither 0 nor 1",
    );
    // A device's refusal stops the whole load, and nothing changes.
    assert_refused(
        || fresh_platform(true),
        &patched(&with, with.len() - 1, &[7]),
        "ACPI power request neither none, off nor reset",
    );
}

#[test]
fn platform_section_refuses_trailing_bytes() {
    let b = bytes_of(&busy_platform(true));
    let mut p = fresh_platform(true);
    let before = bytes_of(&p);
    let mut longer = b.clone();
    longer.push(0);
    assert_eq!(p.load_section(&longer, 0), Err(TRAILING));
    assert_eq!(
        bytes_of(&p),
        before,
        "a refused section changed the platform"
    );
    assert_eq!(p.load_section(&b[..b.len() - 1], 0), Err(ENDS_EARLY));
    assert_eq!(bytes_of(&p), before);
    assert_eq!(p.load_section(&b, 0), Ok(()));
    assert_eq!(bytes_of(&p), b);
}

#[test]
fn registered_ports_count_only_run_time_devices() {
    struct Dummy;
    impl PortDevice for Dummy {
        fn name(&self) -> &'static str {
            "dummy"
        }
        fn read(&mut self, _: u16, _: AccessSize, _: &mut IoContext<'_>) -> u32 {
            0
        }
        fn write(&mut self, _: u16, _: AccessSize, _: u32, _: &mut IoContext<'_>) {}
    }
    for acpi_pm in [false, true] {
        let mut p = fresh_platform(acpi_pm);
        assert_eq!(p.registered_ports(), 0, "the built-in devices are saved");
        p.register(0x500, 0x503, Box::new(Dummy)).unwrap();
        p.register(0x1f0, 0x1f7, Box::new(Dummy)).unwrap();
        assert_eq!(p.registered_ports(), 12);
    }
}

/// Hostile input: every single-byte corruption of a saved platform is either refused
/// (leaving the platform unchanged) or gives a platform the guest can go on using.
#[test]
fn corrupted_platform_states_never_break_the_platform() {
    let b = bytes_of(&busy_platform(true));
    let mut x: u32 = 0x9e37_79b9;
    for at in 0..b.len() {
        for _ in 0..3 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let mut bad = b.clone();
            bad[at] ^= (x as u8) | 1;
            let mut p = fresh_platform(true);
            let before = bytes_of(&p);
            match p.load_section(&bad, u64::from(x) << 20) {
                Err(_) => assert_eq!(bytes_of(&p), before),
                Ok(()) => {
                    let _ = platform_script(p, u64::from(x) << 20);
                }
            }
        }
    }
}
