//! Snapshot state of the legacy devices (issue 18): for every device and for the
//! [`LegacyPlatform`], a state reached through the guest-facing API survives save → load →
//! save byte for byte and behaves the same afterwards; a shift moves its timers; every
//! truncation and the out-of-range values are refused without changing the device.

use alloc::boxed::Box;
use alloc::vec::Vec;

use super::acpi_pm::{self, AcpiPm, PowerRequest};
use super::dma_page::DmaPages;
use super::irq_lines::IrqLines;
use super::legacy::{LegacyPlatform, PlatformConfig};
use super::pic::{self, Pic};
use super::pit::{self, Pit, PIT_HZ};
use super::rtc::{self, Rtc};
use super::state::{ENDS_EARLY, TRAILING};
use super::uart::{Uart, COM1_BASE, RX_CAPACITY};
use crate::devices::ioapic::{IoApic, IOREGSEL, IOWIN, PINS};
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

mod controllers;
mod ports;
mod timers;

use timers::NYE;

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
