//! Register-by-register tests of the 82093AA model against the datasheet's §3.

use super::*;
use alloc::vec::Vec;

fn read(io: &mut IoApic, index: u8) -> u32 {
    io.mmio_write(IOREGSEL, u32::from(index));
    io.mmio_read(IOWIN)
}

fn write(io: &mut IoApic, index: u8, value: u32) -> IoApicEffects {
    io.mmio_write(IOREGSEL, u32::from(index));
    io.mmio_write(IOWIN, value)
}

/// Programs entry `pin` (high dword first, as Linux does, then the low dword).
fn program(io: &mut IoApic, pin: u8, low: u32, dest: u8) -> IoApicEffects {
    write(io, 0x11 + 2 * pin, u32::from(dest) << 24);
    write(io, 0x10 + 2 * pin, low)
}

const LEVEL: u32 = 1 << 15;
const MASK: u32 = 1 << 16;
const ACTIVE_LOW: u32 = 1 << 13;
const RIRR: u32 = 1 << 14;

#[test]
fn version_id_and_arbitration() {
    let mut io = IoApic::new(2);
    assert_eq!(read(&mut io, 0x01), 0x0017_0011);
    assert_eq!(read(&mut io, 0x00), 0x0200_0000);
    assert_eq!(read(&mut io, 0x02), 0x0200_0000);
    // Only bits 27:24 of the ID are writable; the arbitration ID follows the ID.
    write(&mut io, 0x00, 0xFFFF_FFFF);
    assert_eq!(read(&mut io, 0x00), 0x0F00_0000);
    assert_eq!(read(&mut io, 0x02), 0x0F00_0000);
    assert_eq!(io.id(), 0xF);
    // Version and arbitration are read-only.
    write(&mut io, 0x01, 0);
    write(&mut io, 0x02, 0x0300_0000);
    assert_eq!(read(&mut io, 0x01), VERSION_VALUE);
    assert_eq!(read(&mut io, 0x02), 0x0F00_0000);
    // IOREGSEL keeps bits 7:0; unknown indices read 0 and ignore writes.
    io.mmio_write(IOREGSEL, 0xABCD_EF03);
    assert_eq!(io.mmio_read(IOREGSEL), 0x03);
    assert_eq!(io.mmio_read(IOWIN), 0);
    write(&mut io, 0x40, 0x1234);
    assert_eq!(read(&mut io, 0x40), 0);
    assert_eq!(read(&mut io, 0xFF), 0);
    // Other window offsets read 0.
    assert_eq!(io.mmio_read(0x20), 0);
    assert_eq!(io.mmio_read(0x04), 0);
    assert_eq!(IoApic::new(0x35).id(), 5, "a 4-bit ID");
}

#[test]
fn reset_masks_every_entry() {
    let mut io = IoApic::new(0);
    for pin in 0..24u8 {
        assert_eq!(read(&mut io, 0x10 + 2 * pin), MASK);
        assert_eq!(read(&mut io, 0x11 + 2 * pin), 0);
        assert_eq!(io.entry(pin), Some(u64::from(MASK)));
    }
    assert_eq!(io.entry(24), None);
    assert_eq!(io.level_vectors(), [0; 4]);
    // A masked edge pin delivers nothing.
    assert_eq!(io.set_line(4, true), None);
    assert_eq!(io.deliveries(4), 0);
}

#[test]
fn redirection_read_write_keeps_read_only_and_reserved_bits() {
    let mut io = IoApic::new(0);
    write(&mut io, 0x10 + 2 * 5, 0xFFFF_FFFF);
    write(&mut io, 0x11 + 2 * 5, 0xFFFF_FFFF);
    // Delivery status (12) and remote IRR (14) read 0; reserved bits 31:17 and 55:32 read 0.
    assert_eq!(read(&mut io, 0x10 + 2 * 5), 0x0001_AFFF);
    assert_eq!(read(&mut io, 0x11 + 2 * 5), 0xFF00_0000);
    assert_eq!(io.entry(5), Some(0xFF00_0000_0001_AFFF));
    // The neighbours are untouched.
    assert_eq!(io.entry(4), Some(u64::from(MASK)));
    assert_eq!(io.entry(6), Some(u64::from(MASK)));
    // Entry 23 is the last one (index 0x3F); 0x40 is not an entry.
    write(&mut io, 0x3E, 0x31);
    write(&mut io, 0x3F, 0x0300_0000);
    assert_eq!(io.entry(23), Some(0x0300_0000_0000_0031));
    assert_eq!(Register::decode(0x3F), Register::RedirectionHigh(23));
    assert_eq!(Register::decode(0x40), Register::Unknown(0x40));
    assert_eq!(Register::decode(0x0F), Register::Unknown(0x0F));
}

#[test]
fn edge_pins_deliver_on_rising_edges_only() {
    let mut io = IoApic::new(0);
    // Pin 2 (the PIT through the ISO): fixed, physical, vector 0x30, to APIC 1.
    assert_eq!(program(&mut io, 2, 0x30, 1).message, None);
    let m = io.set_line(2, true).unwrap();
    assert_eq!(
        m,
        IoApicMessage {
            pin: 2,
            vector: 0x30,
            delivery: DeliveryMode::Fixed,
            dest_mode: DestinationMode::Physical,
            dest: 1,
            level_triggered: false,
        }
    );
    // Staying high is no new edge; low then high is.
    assert_eq!(io.set_line(2, true), None);
    assert_eq!(io.set_line(2, false), None);
    assert!(io.set_line(2, true).is_some());
    assert_eq!(io.deliveries(2), 2);
    // Edge entries never set remote IRR, and an EOI for their vector does nothing.
    assert_eq!(io.entry(2).unwrap() & u64::from(RIRR), 0);
    assert_eq!(io.eoi(0x30).count(), 0);
    // Masked: the edge is lost (not latched), unmasking does not deliver it.
    io.set_line(2, false);
    program(&mut io, 2, 0x30 | MASK, 1);
    assert_eq!(io.set_line(2, true), None);
    assert_eq!(program(&mut io, 2, 0x30, 1).message, None);
    assert_eq!(io.deliveries(2), 2);
}

#[test]
fn level_pins_use_remote_irr_and_eoi() {
    let mut io = IoApic::new(0);
    // Pin 9 (the SCI): level, active high, logical destination 0x03, vector 0x39.
    let fx = program(&mut io, 9, 0x39 | LEVEL | (1 << 11), 0x03);
    assert!(fx.level_vectors_changed);
    assert_eq!(fx.message, None, "line not asserted yet");
    assert_eq!(io.level_vectors(), [1 << 0x39, 0, 0, 0]);
    let m = io.set_line(9, true).unwrap();
    assert_eq!(m.vector, 0x39);
    assert_eq!(m.dest, 0x03);
    assert_eq!(m.dest_mode, DestinationMode::Logical);
    assert!(m.level_triggered);
    assert_eq!(read(&mut io, 0x10 + 18), 0x39 | LEVEL | (1 << 11) | RIRR);
    // Remote IRR set: no second delivery while asserted.
    assert_eq!(io.set_line(9, true), None);
    // Guest writes cannot clear remote IRR of a level entry.
    write(&mut io, 0x10 + 18, 0x39 | LEVEL | (1 << 11));
    assert_eq!(io.entry(9).unwrap() & u64::from(RIRR), u64::from(RIRR));
    // EOI for another vector: nothing. EOI for 0x39 while still asserted: delivered again.
    assert_eq!(io.eoi(0x3A).count(), 0);
    let again: Vec<_> = io.eoi(0x39).collect();
    assert_eq!(again, [m]);
    assert_eq!(io.deliveries(9), 2);
    // Deasserted, then EOI: remote IRR clears and nothing is sent.
    io.set_line(9, false);
    assert_eq!(io.eoi(0x39).count(), 0);
    assert_eq!(io.entry(9).unwrap() & u64::from(RIRR), 0);
    assert_eq!(io.deliveries(9), 2);
    // Asserting again delivers.
    assert!(io.set_line(9, true).is_some());
    assert_eq!(io.deliveries(9), 3);
}

#[test]
fn switching_to_edge_clears_remote_irr() {
    let mut io = IoApic::new(0);
    program(&mut io, 10, 0x41 | LEVEL, 0);
    io.set_line(10, true).unwrap();
    // Linux's __eoi_ioapic_pin: mask, set edge, set level again.
    write(&mut io, 0x10 + 20, 0x41 | MASK);
    assert_eq!(io.entry(10).unwrap() & u64::from(RIRR), 0);
    let fx = write(&mut io, 0x10 + 20, 0x41 | LEVEL | MASK);
    assert_eq!(fx.message, None, "still masked");
    let fx = write(&mut io, 0x10 + 20, 0x41 | LEVEL);
    assert_eq!(fx.message.unwrap().vector, 0x41, "unmasked while asserted");
}

#[test]
fn unmasking_an_asserted_level_pin_delivers() {
    let mut io = IoApic::new(0);
    assert_eq!(io.set_line(11, true), None, "masked at reset");
    let fx = program(&mut io, 11, 0x51 | LEVEL, 2);
    let m = fx.message.unwrap();
    assert_eq!((m.pin, m.vector, m.dest), (11, 0x51, 2));
    assert_eq!(io.deliveries(11), 1);
    // A masked level entry keeps its remote IRR; the EOI still clears it and, masked,
    // delivers nothing.
    write(&mut io, 0x10 + 22, 0x51 | LEVEL | MASK);
    assert_eq!(io.eoi(0x51).count(), 0);
    assert_eq!(io.entry(11).unwrap() & u64::from(RIRR), 0);
    assert_eq!(
        io.level_vectors()[1],
        1 << (0x51 - 64),
        "masked level entries stay in the EOI-exit set"
    );
}

#[test]
fn polarity() {
    let mut io = IoApic::new(0);
    // Active-low level: asserted while the pin is low.
    program(&mut io, 16, 0x61 | LEVEL | ACTIVE_LOW, 0);
    // The pin is electrically low after reset: unmasking it delivered already.
    assert_eq!(io.deliveries(16), 1);
    io.set_line(16, true);
    assert_eq!(io.eoi(0x61).count(), 0, "deasserted (high)");
    assert_eq!(io.set_line(16, false).unwrap().vector, 0x61);
    // Active-low edge: the falling edge delivers, the rising one does not.
    program(&mut io, 17, 0x62 | ACTIVE_LOW, 0);
    assert_eq!(io.deliveries(17), 0, "edge entries never deliver on unmask");
    io.set_line(17, true);
    assert_eq!(io.set_line(17, true), None);
    assert_eq!(io.set_line(17, false).unwrap().vector, 0x62);
    assert_eq!(io.set_line(17, true), None);
}

#[test]
fn delivery_modes() {
    let mut io = IoApic::new(0);
    let cases = [
        (0b000, DeliveryMode::Fixed, true),
        (0b001, DeliveryMode::LowestPriority, true),
        (0b010, DeliveryMode::Smi, false),
        (0b100, DeliveryMode::Nmi, false),
        (0b101, DeliveryMode::Init, false),
        (0b111, DeliveryMode::ExtInt, false),
    ];
    for (pin, &(bits, mode, level)) in cases.iter().enumerate() {
        let pin = pin as u8;
        // Programmed as level: only Fixed and LowestPriority are treated as level.
        program(
            &mut io,
            pin,
            (0x70 + u32::from(pin)) | (bits << 8) | LEVEL,
            0,
        );
        let m = io.set_line(pin, true).unwrap();
        assert_eq!(m.delivery, mode);
        assert_eq!(m.level_triggered, level, "{mode:?}");
    }
    assert_eq!(
        io.level_vectors(),
        [0, (1 << (0x70 - 64)) | (1 << (0x71 - 64)), 0, 0]
    );
    // Reserved modes 011 and 110 send nothing and are counted.
    program(&mut io, 20, 0x80 | (0b011 << 8), 0);
    program(&mut io, 21, 0x81 | (0b110 << 8), 0);
    assert_eq!(io.set_line(20, true), None);
    assert_eq!(io.set_line(21, true), None);
    assert_eq!(io.reserved_mode_drops(), 2);
    assert_eq!(io.deliveries(20), 0);
}

#[test]
fn low_vectors_are_sent_as_programmed() {
    let mut io = IoApic::new(0);
    program(&mut io, 3, 0x05, 0);
    assert_eq!(io.set_line(3, true).unwrap().vector, 0x05);
}

#[test]
fn eoi_redelivers_every_pin_sharing_the_vector() {
    let mut io = IoApic::new(0);
    for pin in [5u8, 6, 7] {
        program(&mut io, pin, 0x90 | LEVEL, pin);
        io.set_line(pin, true).unwrap();
    }
    io.set_line(6, false);
    let pins: Vec<u8> = io.eoi(0x90).map(|m| m.pin).collect();
    assert_eq!(pins, [5, 7]);
    assert_eq!(io.level_vectors()[2], 1 << (0x90 - 128));
}

#[test]
fn pins_beyond_23_are_ignored() {
    let mut io = IoApic::new(0);
    for pin in 24..=255u8 {
        assert_eq!(io.set_line(pin, true), None);
        assert_eq!(io.deliveries(pin), 0);
    }
    assert_eq!(io.lines, 0);
}

#[test]
fn level_vector_changes_are_reported() {
    let mut io = IoApic::new(0);
    assert!(!program(&mut io, 1, 0x31, 0).level_vectors_changed);
    assert!(program(&mut io, 1, 0x31 | LEVEL, 0).level_vectors_changed);
    assert!(!program(&mut io, 1, 0x31 | LEVEL | MASK, 0).level_vectors_changed);
    assert!(program(&mut io, 1, 0x32 | LEVEL, 0).level_vectors_changed);
    assert_eq!(io.level_vectors(), [1 << 0x32, 0, 0, 0]);
}

#[test]
fn hostile_random_writes() {
    let mut io = IoApic::new(1);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for _ in 0..100_000 {
        let r = next();
        match r % 5 {
            0 => {
                io.mmio_write((r >> 8) & 0x1F, (r >> 16) as u32);
            }
            1 => {
                let _ = io.set_line((r >> 8) as u8 % 32, r & 0x100 != 0);
            }
            2 => {
                let _ = io.eoi((r >> 8) as u8).count();
            }
            3 => {
                let _ = write(&mut io, (r >> 8) as u8, (r >> 16) as u32);
            }
            _ => {
                let _ = io.mmio_read((r >> 8) & 0x1F);
            }
        }
        // Invariants: the version is constant, reserved and delivery-status bits read 0,
        // remote IRR is only ever set on level entries.
        assert_eq!(read(&mut io, 0x01), VERSION_VALUE);
        for e in io.redirection {
            assert_eq!(e & !(WRITABLE | REMOTE_IRR), 0);
            if e & REMOTE_IRR != 0 {
                assert!(IoApic::level_vector(e).is_some() || e & TRIGGER_LEVEL != 0);
            }
        }
        assert_eq!(read(&mut io, 0x00) & !ID_MASK, 0);
    }
    let total: u64 = (0..24).map(|p| io.deliveries(p)).sum();
    assert!(total > 0, "random programming delivers sometimes");
}
