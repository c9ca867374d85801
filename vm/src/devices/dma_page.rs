//! The PC/AT DMA page registers (a 74LS612 memory mapper beside the 8237A DMA controllers),
//! 0x80-0x8F, reduced to what guests touch without a DMA controller:
//!
//! * 0x80 is the POST-code / I/O-delay port: Linux's `outb_p`/`native_io_delay()` write it
//!   constantly. Writes are absorbed (the last value is kept for debugging) and are not
//!   counted as unclaimed accesses.
//! * 0x81-0x8F are byte registers: writes are stored and reads return them, as on the
//!   PC/AT. Their reset value is 0xFF, so a read of a register nobody wrote (Linux reads
//!   0x87, the channel-0 page register, during boot) returns 0xFF exactly as an unclaimed
//!   port would, without polluting the unclaimed-port statistics.
//!
//! The 8237A itself (0x00-0x0F, 0xC0-0xDF) is not modelled; those ports stay unclaimed.

use super::state;
use crate::snapshot::codec::{Dec, Enc};

/// The I/O-delay / POST-code port.
pub const PORT_POST: u16 = 0x80;
/// First DMA page register.
pub const FIRST: u16 = 0x80;
/// Last DMA page register.
pub const LAST: u16 = 0x8f;
/// Registers 0x80-0x8F.
const REGISTERS: usize = (LAST - FIRST + 1) as usize;

/// Page registers 0x81-0x8F and the 0x80 sink.
#[derive(Debug, Clone)]
pub struct DmaPages {
    regs: [u8; REGISTERS],
    io_delay_writes: u64,
}

impl Default for DmaPages {
    fn default() -> Self {
        Self::new()
    }
}

impl DmaPages {
    /// Reset state: every register 0xFF.
    pub fn new() -> Self {
        Self {
            regs: [0xff; REGISTERS],
            io_delay_writes: 0,
        }
    }

    /// Whether `port` is in 0x80-0x8F.
    pub const fn claims(port: u16) -> bool {
        matches!(port, FIRST..=LAST)
    }

    /// Writes to port 0x80 so far.
    pub fn io_delay_writes(&self) -> u64 {
        self.io_delay_writes
    }

    /// Last value written to port 0x80 (0xFF if none).
    pub fn post_code(&self) -> u8 {
        self.regs[0]
    }

    /// Byte read (ports outside 0x80-0x8F read 0xff).
    pub fn read_port(&self, port: u16) -> u8 {
        self.regs
            .get(usize::from(port.wrapping_sub(FIRST)))
            .copied()
            .unwrap_or(0xff)
    }

    /// Appends the guest-visible state: the 16 bytes of 0x80-0x8F (the POST code and the
    /// page registers; every value is one a guest can write). Skipped: the I/O-delay write
    /// counter (a host statistic).
    pub fn save_state(&self, e: &mut Enc) {
        for &r in &self.regs {
            e.u8(r);
        }
    }

    /// Reads what [`DmaPages::save_state`] wrote. `shift` is unused. On error (the input
    /// ends early) nothing changes.
    pub fn load_state(&mut self, d: &mut Dec<'_>, shift: u64) -> Result<(), &'static str> {
        let _ = shift;
        self.regs = state::array(d)?;
        Ok(())
    }

    /// Byte write (ports outside 0x80-0x8F are ignored).
    pub fn write_port(&mut self, port: u16, value: u8) {
        if port == PORT_POST {
            self.io_delay_writes += 1;
        }
        if let Some(r) = self.regs.get_mut(usize::from(port.wrapping_sub(FIRST))) {
            *r = value;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sink_and_page_registers() {
        let mut d = DmaPages::new();
        assert_eq!(d.read_port(0x87), 0xff);
        d.write_port(0x80, 0x12);
        d.write_port(0x80, 0x34);
        assert_eq!(d.io_delay_writes(), 2);
        assert_eq!(d.post_code(), 0x34);
        d.write_port(0x87, 0x05);
        assert_eq!(d.read_port(0x87), 0x05);
        assert_eq!(d.read_port(0x90), 0xff);
        d.write_port(0x7f, 1);
        assert!(DmaPages::claims(0x8f) && !DmaPages::claims(0x90));
    }
}
