//! The guest's own 8259A pair and 8254 PIT, as the test guests program them (8259A and 8254
//! datasheets).

use crate::cpu::outb;

/// ICW1 (edge, cascade, ICW4 needed), ICW2 (vector bases `base`, `base + 8`), ICW3 (slave on
/// IRQ2), ICW4 (8086 mode); then OCW1 with `master_mask` and the slave fully masked.
pub fn init(base: u8, master_mask: u8) {
    for (port, value) in [
        (0x20, 0x11),
        (0xA0, 0x11),
        (0x21, base),
        (0xA1, base + 8),
        (0x21, 4),
        (0xA1, 2),
        (0x21, 1),
        (0xA1, 1),
        (0x21, master_mask),
        (0xA1, 0xFF),
    ] {
        outb(port, value);
    }
}

/// A non-specific EOI to the master (OCW2).
pub fn eoi() {
    outb(0x20, 0x20);
}

/// PIT channel 0 in mode 2 (rate generator), binary, lobyte/hibyte, with `count` (0 = 65536).
pub fn pit_periodic(count: u16) {
    outb(0x43, 0x34);
    outb(0x40, count as u8);
    outb(0x40, (count >> 8) as u8);
}
