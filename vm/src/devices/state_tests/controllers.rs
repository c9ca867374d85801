//! The interrupt controllers' snapshot state: the 8259A pair, the IOAPIC and the ISA lines.

use super::*;

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
                io.read_register(crate::devices::ioapic::Register::decode(index)),
            ));
        }
        out.extend(io.level_vectors());
    };
    let message = |m: Option<crate::devices::ioapic::IoApicMessage>, out: &mut Vec<u64>| {
        out.push(m.map_or(u64::MAX, |m| {
            u64::from(m.pin)
                | u64::from(m.vector) << 8
                | u64::from(m.dest) << 16
                | u64::from(m.level_triggered) << 24
                | u64::from(m.dest_mode == crate::devices::ioapic::DestinationMode::Logical) << 25
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
