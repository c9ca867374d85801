//! The PC's ISA interrupt lines wired to both of its interrupt controllers: every device line
//! drives its 8259A input and the IOAPIC pin the guest's MADT maps it to (ISA IRQ 0 → GSI 2
//! by an interrupt source override, every other ISA IRQ *n* → GSI *n*: ACPI 6.5 §5.2.12.5),
//! as on a PC whose IOAPIC pins 1-15 see the ISA lines (82093AA §2.3). Which controller
//! delivers is the guest's choice: the one it unmasks the line at. A guest that unmasks a
//! line at both gets it twice, as on hardware; [`IrqLines::double_routed`] counts such lines
//! when they fire, so the VM's report shows a guest that never decided.
//!
//! The IOAPIC's messages are queued here (a fixed ring: no allocation per interrupt) for the
//! hypervisor to route to the vCPUs their destination names.

use super::ioapic::{IoApic, IoApicEffects, IoApicMessage};
use super::pic::Pic;
use super::state;
use crate::io::IrqSink;
use crate::snapshot::codec::{Dec, Enc};

/// The IOAPIC pin (GSI) of ISA line `irq` (the MADT's interrupt source override for IRQ 0).
pub const fn gsi_of_isa_irq(irq: u8) -> u8 {
    if irq == 0 {
        2
    } else {
        irq
    }
}

/// Queued IOAPIC messages; more than one per pin in flight is impossible for level pins
/// (remote IRR) and means coalesced edges otherwise.
const QUEUE: usize = 32;

/// The 8259A pair and the IOAPIC behind the same lines, with the IOAPIC's outgoing messages.
#[derive(Debug, Clone)]
pub struct IrqLines {
    pub pic: Pic,
    pub ioapic: IoApic,
    queue: [Option<IoApicMessage>; QUEUE],
    head: usize,
    len: usize,
    /// Messages lost because the queue was full (the hypervisor did not route for 32 edges).
    pub overflowed: u64,
    /// Line edges that were unmasked at both controllers.
    pub double_routed: u64,
    /// Bumped whenever the set of level-triggered IOAPIC vectors may have changed (the
    /// VMX EOI-exit bitmap follows it).
    pub level_generation: u64,
}

impl IrqLines {
    /// Both controllers after reset; the IOAPIC with APIC ID `ioapic_id`.
    pub fn new(ioapic_id: u8) -> Self {
        Self {
            pic: Pic::new(),
            ioapic: IoApic::new(ioapic_id),
            queue: [None; QUEUE],
            head: 0,
            len: 0,
            overflowed: 0,
            double_routed: 0,
            level_generation: 0,
        }
    }

    fn push(&mut self, message: IoApicMessage) {
        if self.len == QUEUE {
            self.overflowed += 1;
            return;
        }
        self.queue[(self.head + self.len) % QUEUE] = Some(message);
        self.len += 1;
    }

    /// The oldest IOAPIC message not yet routed.
    pub fn take_message(&mut self) -> Option<IoApicMessage> {
        if self.len == 0 {
            return None;
        }
        let m = self.queue[self.head].take();
        self.head = (self.head + 1) % QUEUE;
        self.len -= 1;
        m
    }

    /// Whether messages wait to be routed.
    pub fn has_messages(&self) -> bool {
        self.len > 0
    }

    /// A 32-bit write into the IOAPIC window at `offset`; a message it causes (unmasking an
    /// asserted level pin) is queued.
    pub fn ioapic_write(&mut self, offset: u64, value: u32) -> IoApicEffects {
        let effects = self.ioapic.mmio_write(offset, value);
        if let Some(m) = effects.message {
            self.push(m);
        }
        if effects.level_vectors_changed {
            self.level_generation += 1;
        }
        effects
    }

    /// An EOI broadcast for `vector` (SDM Vol. 3A §11.8.5): level pins still asserted deliver
    /// again (82093AA §3.2.4, remote IRR).
    pub fn ioapic_eoi(&mut self, vector: u8) {
        for m in self.ioapic.eoi(vector) {
            self.push(m);
        }
    }

    /// Whether GSI `pin`'s redirection entry is unmasked.
    pub fn ioapic_pin_unmasked(&self, pin: u8) -> bool {
        const MASK: u64 = 1 << 16;
        self.ioapic.entry(pin).is_some_and(|e| e & MASK == 0)
    }

    /// Whether any IOAPIC pin is unmasked (a device could interrupt some vCPU through it).
    pub fn ioapic_any_unmasked(&self) -> bool {
        (0..super::ioapic::PINS as u8).any(|p| self.ioapic_pin_unmasked(p))
    }

    /// Whether ISA line `irq` reaches a CPU through either controller.
    pub fn line_unmasked(&self, irq: u8) -> bool {
        self.pic.line_unmasked(irq) || self.ioapic_pin_unmasked(gsi_of_isa_irq(irq))
    }

    /// Appends the guest-visible state: the 8259A pair ([`Pic::save_state`], with its input
    /// line levels), the IOAPIC ([`IoApic::save_state`], with its pin levels) and the IOAPIC
    /// messages not yet routed to a vCPU, oldest first (count, then each message). Skipped:
    /// the overflow and double-routing counters (host statistics) and `level_generation`
    /// (a host cache key; [`IrqLines::load_state`] bumps it).
    pub fn save_state(&self, e: &mut Enc) {
        self.pic.save_state(e);
        self.ioapic.save_state(e);
        // At most QUEUE: fits.
        e.u8(self.len as u8);
        for i in 0..self.len {
            if let Some(m) = self.queue[(self.head + i) % QUEUE] {
                m.save_state(e);
            }
        }
    }

    /// Reads what [`IrqLines::save_state`] wrote into these lines (created with
    /// [`IrqLines::new`]), and bumps `level_generation`: the level-triggered vectors changed
    /// as far as a cached EOI-exit bitmap knows. `shift` is unused: nothing here keeps time.
    /// On error nothing changes and the message names the first bad field.
    pub fn load_state(&mut self, d: &mut Dec<'_>, shift: u64) -> Result<(), &'static str> {
        let mut pic = self.pic.clone();
        pic.load_state(d, shift)?;
        let mut ioapic = self.ioapic.clone();
        ioapic.load_state(d, shift)?;
        let len = usize::from(state::u8(d)?);
        if len > QUEUE {
            return Err("more queued IOAPIC messages than the queue holds");
        }
        let mut queue = [None; QUEUE];
        for slot in queue.iter_mut().take(len) {
            *slot = Some(IoApicMessage::load_state(d)?);
        }
        self.pic = pic;
        self.ioapic = ioapic;
        self.queue = queue;
        self.head = 0;
        self.len = len;
        self.level_generation = self.level_generation.wrapping_add(1);
        Ok(())
    }
}

impl IrqSink for IrqLines {
    fn set_irq(&mut self, irq: u8, level: bool) {
        if irq >= 16 {
            return;
        }
        let pin = gsi_of_isa_irq(irq);
        if level && self.pic.line_unmasked(irq) && self.ioapic_pin_unmasked(pin) {
            self.double_routed += 1;
        }
        self.pic.set_line(irq, level);
        if let Some(m) = self.ioapic.set_line(pin, level) {
            self.push(m);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::ioapic::{DeliveryMode, IOREGSEL, IOWIN};

    /// Programs GSI `pin`: `vector`, fixed, physical destination `dest`, edge, unmasked.
    fn route(lines: &mut IrqLines, pin: u8, vector: u8, dest: u8) {
        let index = 0x10 + 2 * u32::from(pin);
        lines.ioapic_write(IOREGSEL, index);
        lines.ioapic_write(IOWIN, u32::from(vector));
        lines.ioapic_write(IOREGSEL, index + 1);
        lines.ioapic_write(IOWIN, u32::from(dest) << 24);
    }

    #[test]
    fn isa_irq0_is_gsi2_and_the_others_are_identity() {
        assert_eq!(gsi_of_isa_irq(0), 2);
        for irq in 1..16 {
            assert_eq!(gsi_of_isa_irq(irq), irq);
        }
    }

    #[test]
    fn an_edge_reaches_the_unmasked_controller_only() {
        let mut lines = IrqLines::new(2);
        // The guest masks the 8259A (OCW1 0xFF on both chips), as Linux does when it moves
        // the ISA lines to the IOAPIC, and routes the PIT's IRQ 0 through pin 2 to APIC ID 1.
        lines.pic.write_port(0x21, 0xff);
        lines.pic.write_port(0xa1, 0xff);
        route(&mut lines, 2, 0x30, 1);
        lines.set_irq(0, true);
        lines.set_irq(0, false);
        let m = lines.take_message().expect("a message for pin 2");
        assert_eq!((m.pin, m.vector, m.dest), (2, 0x30, 1));
        assert_eq!(m.delivery, DeliveryMode::Fixed);
        assert!(!m.level_triggered);
        assert_eq!(lines.take_message(), None);
        // The 8259A saw the edge on a masked line: nothing to deliver.
        assert_eq!(lines.pic.pending_vector(), None);
        assert_eq!(lines.double_routed, 0);
        // A masked IOAPIC pin: nothing queued.
        lines.set_irq(4, true);
        assert!(!lines.has_messages());
    }

    #[test]
    fn the_queue_is_bounded_and_fifo() {
        let mut lines = IrqLines::new(0);
        route(&mut lines, 5, 0x40, 0);
        for _ in 0..QUEUE + 3 {
            lines.set_irq(5, true);
            lines.set_irq(5, false);
        }
        assert_eq!(lines.overflowed, 3);
        let mut n = 0;
        while let Some(m) = lines.take_message() {
            assert_eq!(m.vector, 0x40);
            n += 1;
        }
        assert_eq!(n, QUEUE);
        // Room again after draining.
        lines.set_irq(5, true);
        assert!(lines.take_message().is_some());
    }

    #[test]
    fn a_level_pin_redelivers_after_eoi_while_asserted() {
        let mut lines = IrqLines::new(0);
        // Pin 9 level-triggered (bit 15), active high, vector 0x49.
        lines.ioapic_write(IOREGSEL, 0x10 + 18);
        lines.ioapic_write(IOWIN, 0x49 | (1 << 15));
        lines.ioapic_write(IOREGSEL, 0x10 + 19);
        lines.ioapic_write(IOWIN, 0);
        assert_eq!(lines.level_generation, 1);
        assert_eq!(lines.ioapic.level_vectors()[1], 1 << (0x49 - 64));
        lines.set_irq(9, true);
        let m = lines.take_message().unwrap();
        assert!(m.level_triggered);
        // Remote IRR set: a second assertion is not a new message.
        lines.set_irq(9, true);
        assert_eq!(lines.take_message(), None);
        lines.ioapic_eoi(0x49);
        assert_eq!(lines.take_message().map(|m| m.vector), Some(0x49));
        lines.set_irq(9, false);
        lines.ioapic_eoi(0x49);
        assert_eq!(lines.take_message(), None);
    }

    #[test]
    fn a_line_unmasked_at_both_controllers_is_counted() {
        let mut lines = IrqLines::new(0);
        // ICW1-4 with vectors 0x20/0x28, then unmask IRQ 4 at the master.
        for (port, v) in [
            (0x20, 0x11),
            (0x21, 0x20),
            (0x21, 0x04),
            (0x21, 0x01),
            (0xa0, 0x11),
            (0xa1, 0x28),
            (0xa1, 0x02),
            (0xa1, 0x01),
            (0x21, 0xef),
        ] {
            lines.pic.write_port(port, v);
        }
        route(&mut lines, 4, 0x34, 0);
        assert!(lines.line_unmasked(4));
        lines.set_irq(4, true);
        assert_eq!(lines.double_routed, 1);
        assert_eq!(lines.pic.pending_vector(), Some(0x24));
        assert_eq!(lines.take_message().map(|m| m.vector), Some(0x34));
        assert!(!lines.line_unmasked(3));
        assert!(lines.ioapic_any_unmasked());
        // Lines beyond the ISA range are ignored.
        lines.set_irq(16, true);
        assert_eq!(lines.take_message(), None);
    }
}
