//! Polled output to the 16550 UART at 0x3F8 (the hypervisor's transmitter is always ready;
//! LSR bit 5 is still polled, a bounded number of times, in case it is not).

use crate::cpu::{inb, outb};

pub const COM1: u16 = 0x3F8;
const LSR: u16 = COM1 + 5;
const LSR_THR_EMPTY: u8 = 1 << 5;

/// Writes one byte to the transmitter holding register.
pub fn write_byte(b: u8) {
    for _ in 0..100_000 {
        if inb(LSR) & LSR_THR_EMPTY != 0 {
            break;
        }
        core::hint::spin_loop();
    }
    outb(COM1, b);
}

pub fn write_bytes(bytes: &[u8]) {
    for &b in bytes {
        write_byte(b);
    }
}
