//! String I/O emulation: INS and OUTS with and without REP (SDM Vol. 2A INS/INSB/INSW/INSD,
//! Vol. 2B OUTS/OUTSB/OUTSW/OUTSD, REP). An I/O exit with the "string" bit (SDM Vol. 3C
//! Table 28-5) gives the port, the element size, the direction and REP; the address size and
//! the segment override come from the instruction's prefixes ([`decode`]); [`emulate`] moves
//! the elements between the port and guest memory through a [`StringIoBus`], steps RSI/RDI by
//! the element size in the direction RFLAGS.DF says and counts RCX down, all at the
//! instruction's address size (16-bit: only the low word changes and wraps; 32-bit: the
//! register is zero-extended; 64-bit: all of it).
//!
//! Work per exit is bounded: at most `max_elements` elements, after which the instruction is
//! left to run again with the registers updated (the CPU itself may interrupt a REP string
//! instruction between iterations, SDM Vol. 2B REP, so a guest cannot tell).
//!
//! Segment limits and access rights are not checked (the guests Bulkhead runs use flat or
//! real-mode segments); a memory operand that is not guest RAM is reported to the caller.

use crate::insn::CpuMode;

/// A segment register (for the OUTS source; INS always writes ES:rDI).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Segment {
    Es,
    Cs,
    Ss,
    Ds,
    Fs,
    Gs,
}

/// What the exit qualification and the prefixes say about one string I/O instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StringIo {
    pub port: u16,
    /// Element size in bytes: 1, 2 or 4.
    pub size: u8,
    /// INS (port to memory) rather than OUTS.
    pub input: bool,
    pub rep: bool,
    /// Address size in bits: 16, 32 or 64.
    pub address_bits: u8,
    /// The segment of the memory operand (ES for INS, DS or the override for OUTS).
    pub segment: Segment,
}

/// Why the prefixes could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// No INS/OUTS opcode (0x6C-0x6F) after at most 14 prefix bytes.
    NotStringIo,
}

/// Decodes the prefixes of the INS/OUTS at `bytes` in `mode`; `port`, `size`, `input` and
/// `rep` come from the exit qualification (SDM Vol. 3C Table 28-5).
pub fn decode(
    bytes: &[u8],
    mode: CpuMode,
    port: u16,
    size: u8,
    input: bool,
    rep: bool,
) -> Result<StringIo, DecodeError> {
    let mut address_override = false;
    let mut segment = Segment::Ds;
    for &b in bytes.iter().take(15) {
        match b {
            0x67 => address_override = true,
            0x26 => segment = Segment::Es,
            0x2e => segment = Segment::Cs,
            0x36 => segment = Segment::Ss,
            0x3e => segment = Segment::Ds,
            0x64 => segment = Segment::Fs,
            0x65 => segment = Segment::Gs,
            0x66 | 0xf0 | 0xf2 | 0xf3 => {}
            0x40..=0x4f if mode == CpuMode::Bits64 => {}
            0x6c..=0x6f => {
                // SDM Vol. 2A §2.2.1 / Vol. 1 §3.6.1: the 0x67 prefix toggles 16/32 bits
                // outside 64-bit mode and selects 32 bits in it.
                let address_bits = match (mode, address_override) {
                    (CpuMode::Bits64, false) => 64,
                    (CpuMode::Bits64, true) | (CpuMode::Bits32, false) => 32,
                    (CpuMode::Bits32, true) | (CpuMode::Bits16, false) => 16,
                    (CpuMode::Bits16, true) => 32,
                };
                return Ok(StringIo {
                    port,
                    size,
                    input,
                    rep,
                    address_bits,
                    // INS writes ES:rDI, which cannot be overridden.
                    segment: if input { Segment::Es } else { segment },
                });
            }
            _ => return Err(DecodeError::NotStringIo),
        }
    }
    Err(DecodeError::NotStringIo)
}

/// A memory operand the bus could not reach (not guest RAM, not mapped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemFault {
    pub segment: Segment,
    pub offset: u64,
}

/// The ports and guest memory string I/O works on.
pub trait StringIoBus {
    fn port_read(&mut self, port: u16, size: u8) -> u32;
    fn port_write(&mut self, port: u16, size: u8, value: u32);
    /// Reads `buf.len()` bytes at `segment:offset` (offset already masked to the address
    /// size).
    fn mem_read(&mut self, segment: Segment, offset: u64, buf: &mut [u8]) -> Result<(), MemFault>;
    fn mem_write(&mut self, segment: Segment, offset: u64, data: &[u8]) -> Result<(), MemFault>;
}

/// The registers string I/O changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StringRegs {
    pub rcx: u64,
    pub rsi: u64,
    pub rdi: u64,
    /// RFLAGS.DF: addresses decrease.
    pub df: bool,
}

/// How the instruction ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Complete: skip the instruction.
    Done,
    /// REP count left after `max_elements`: re-enter at the same instruction.
    Continue,
    /// A memory operand could not be reached; the registers say how far it got.
    Fault(MemFault),
}

fn mask(bits: u8) -> u64 {
    match bits {
        16 => 0xffff,
        32 => 0xffff_ffff,
        _ => u64::MAX,
    }
}

/// Writes `value` into `reg` at an address size: 16 bits keep the upper bits, 32 and 64
/// bits replace the register (a 32-bit result is zero-extended).
fn set(reg: &mut u64, value: u64, bits: u8) {
    *reg = if bits == 16 {
        (*reg & !0xffff) | (value & 0xffff)
    } else {
        value & mask(bits)
    };
}

/// Emulates up to `max_elements` iterations of the instruction.
pub fn emulate(
    io: &StringIo,
    regs: &mut StringRegs,
    bus: &mut impl StringIoBus,
    max_elements: u64,
) -> Outcome {
    let bits = io.address_bits;
    let m = mask(bits);
    let mut left = if io.rep { regs.rcx & m } else { 1 };
    let step = u64::from(io.size);
    let mut done = 0;
    while left > 0 {
        if done == max_elements.max(1) {
            return Outcome::Continue;
        }
        let mut buf = [0u8; 4];
        let elem = &mut buf[..usize::from(io.size.clamp(1, 4))];
        let index = if io.input { regs.rdi } else { regs.rsi };
        let offset = index & m;
        if io.input {
            let value = bus.port_read(io.port, io.size);
            elem.copy_from_slice(&value.to_le_bytes()[..elem.len()]);
            if let Err(f) = bus.mem_write(io.segment, offset, elem) {
                return Outcome::Fault(f);
            }
        } else {
            if let Err(f) = bus.mem_read(io.segment, offset, elem) {
                return Outcome::Fault(f);
            }
            let mut word = [0u8; 4];
            word[..elem.len()].copy_from_slice(elem);
            bus.port_write(io.port, io.size, u32::from_le_bytes(word));
        }
        let next = if regs.df {
            offset.wrapping_sub(step)
        } else {
            offset.wrapping_add(step)
        };
        if io.input {
            set(&mut regs.rdi, next, bits);
        } else {
            set(&mut regs.rsi, next, bits);
        }
        left -= 1;
        done += 1;
        if io.rep {
            set(&mut regs.rcx, left, bits);
        }
    }
    Outcome::Done
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    struct Bus {
        mem: Vec<u8>,
        port_in: u32,
        out: Vec<(u16, u8, u32)>,
        segs: Vec<Segment>,
    }

    impl Bus {
        fn new() -> Self {
            Bus {
                mem: (0..=255u8).cycle().take(0x2_0000).collect(),
                port_in: 0x1234_5678,
                out: Vec::new(),
                segs: Vec::new(),
            }
        }
    }

    impl StringIoBus for Bus {
        fn port_read(&mut self, _port: u16, _size: u8) -> u32 {
            let v = self.port_in;
            self.port_in = self.port_in.wrapping_add(0x0101_0101);
            v
        }
        fn port_write(&mut self, port: u16, size: u8, value: u32) {
            self.out.push((port, size, value));
        }
        fn mem_read(&mut self, s: Segment, offset: u64, buf: &mut [u8]) -> Result<(), MemFault> {
            self.segs.push(s);
            let o = offset as usize;
            let src = self
                .mem
                .get(o..o + buf.len())
                .ok_or(MemFault { segment: s, offset })?;
            buf.copy_from_slice(src);
            Ok(())
        }
        fn mem_write(&mut self, s: Segment, offset: u64, data: &[u8]) -> Result<(), MemFault> {
            self.segs.push(s);
            let o = offset as usize;
            let dst = self
                .mem
                .get_mut(o..o + data.len())
                .ok_or(MemFault { segment: s, offset })?;
            dst.copy_from_slice(data);
            Ok(())
        }
    }

    fn regs(rcx: u64, rsi: u64, rdi: u64, df: bool) -> StringRegs {
        StringRegs { rcx, rsi, rdi, df }
    }

    #[test]
    fn prefixes_give_address_size_and_segment() {
        let d = |b: &[u8], m, input| decode(b, m, 0x3f8, 1, input, true).unwrap();
        // rep outsb; addr32 rep outsb; fs rep outsb; rep insd in 64-bit mode.
        assert_eq!(d(&[0xf3, 0x6e], CpuMode::Bits64, false).address_bits, 64);
        assert_eq!(
            d(&[0x67, 0xf3, 0x6e], CpuMode::Bits64, false).address_bits,
            32
        );
        assert_eq!(
            d(&[0x64, 0xf3, 0x6e], CpuMode::Bits64, false).segment,
            Segment::Fs
        );
        assert_eq!(
            d(&[0x64, 0xf3, 0x6d], CpuMode::Bits64, true).segment,
            Segment::Es,
            "INS ignores segment overrides"
        );
        assert_eq!(
            d(&[0xf3, 0x48, 0x6d], CpuMode::Bits64, true).address_bits,
            64
        );
        assert_eq!(d(&[0x6e], CpuMode::Bits16, false).address_bits, 16);
        assert_eq!(d(&[0x67, 0x6e], CpuMode::Bits16, false).address_bits, 32);
        assert_eq!(d(&[0x67, 0x6e], CpuMode::Bits32, false).address_bits, 16);
        assert_eq!(d(&[0x6e], CpuMode::Bits32, false).segment, Segment::Ds);
        assert_eq!(
            decode(&[0x90], CpuMode::Bits64, 0, 1, false, false),
            Err(DecodeError::NotStringIo)
        );
        assert_eq!(
            decode(&[0x48, 0x6e], CpuMode::Bits32, 0, 1, false, false),
            Err(DecodeError::NotStringIo),
            "REX is INC/DEC outside 64-bit mode"
        );
        assert_eq!(
            decode(&[0x66; 15], CpuMode::Bits64, 0, 1, false, false),
            Err(DecodeError::NotStringIo)
        );
    }

    fn io(input: bool, rep: bool, size: u8, bits: u8) -> StringIo {
        StringIo {
            port: 0x3f8,
            size,
            input,
            rep,
            address_bits: bits,
            segment: if input { Segment::Es } else { Segment::Ds },
        }
    }

    #[test]
    fn rep_outsb_sends_every_byte_and_counts_down() {
        let mut bus = Bus::new();
        let mut r = regs(5, 0x100, 0, false);
        assert_eq!(
            emulate(&io(false, true, 1, 64), &mut r, &mut bus, 4096),
            Outcome::Done
        );
        assert_eq!(r, regs(0, 0x105, 0, false));
        let bytes: Vec<u32> = bus.out.iter().map(|o| o.2).collect();
        assert_eq!(bytes, [0, 1, 2, 3, 4]);
        assert!(bus.segs.iter().all(|s| *s == Segment::Ds));
    }

    #[test]
    fn rep_insw_backwards_with_df() {
        let mut bus = Bus::new();
        let mut r = regs(3, 0, 0x1006, true);
        assert_eq!(
            emulate(&io(true, true, 2, 32), &mut r, &mut bus, 4096),
            Outcome::Done
        );
        assert_eq!(r, regs(0, 0, 0x1000, true));
        assert_eq!(&bus.mem[0x1006..0x1008], &[0x78, 0x56]);
        assert_eq!(&bus.mem[0x1004..0x1006], &[0x79, 0x57]);
        assert_eq!(&bus.mem[0x1002..0x1004], &[0x7a, 0x58]);
        assert_eq!(bus.mem[0x1008], 0x08, "untouched after the first element");
    }

    #[test]
    fn address_size_masks_wraps_and_zero_extends() {
        // 16-bit: SI wraps at 64 KiB, the upper bits of RSI and RCX stay.
        let mut bus = Bus::new();
        let mut r = regs(0xdead_0002, 0xbeef_ffff, 0, false);
        assert_eq!(
            emulate(&io(false, true, 1, 16), &mut r, &mut bus, 4096),
            Outcome::Done
        );
        assert_eq!(r.rsi, 0xbeef_0001);
        assert_eq!(r.rcx, 0xdead_0000);
        assert_eq!(bus.out.len(), 2, "the count is CX, not RCX");
        // 32-bit in 64-bit mode (0x67): ESI used, RSI zero-extended.
        let mut r = regs(1, 0xffff_ffff_0000_0010, 0, false);
        emulate(&io(false, true, 4, 32), &mut r, &mut bus, 4096);
        assert_eq!(r.rsi, 0x14);
        assert_eq!(r.rcx, 0);
        // REP with a zero count does nothing.
        let before = bus.out.len();
        let mut r = regs(0, 0x10, 0, false);
        assert_eq!(
            emulate(&io(false, true, 1, 64), &mut r, &mut bus, 4096),
            Outcome::Done
        );
        assert_eq!(bus.out.len(), before);
        // Without REP, RCX is neither used nor changed.
        let mut r = regs(0, 0x10, 0, false);
        emulate(&io(false, false, 1, 64), &mut r, &mut bus, 4096);
        assert_eq!(r, regs(0, 0x11, 0, false));
    }

    #[test]
    fn long_counts_continue_and_faults_stop_with_progress_kept() {
        let mut bus = Bus::new();
        let mut r = regs(10, 0, 0x100, false);
        assert_eq!(
            emulate(&io(true, true, 1, 64), &mut r, &mut bus, 4),
            Outcome::Continue
        );
        assert_eq!(r, regs(6, 0, 0x104, false));
        assert_eq!(
            emulate(&io(true, true, 1, 64), &mut r, &mut bus, 4),
            Outcome::Continue
        );
        assert_eq!(
            emulate(&io(true, true, 1, 64), &mut r, &mut bus, 4),
            Outcome::Done
        );
        assert_eq!(r, regs(0, 0, 0x10a, false));
        // Memory ends at 0x20000: the third element faults; two were done.
        let mut r = regs(5, 0, 0x1_fffc, false);
        let got = emulate(&io(true, true, 2, 64), &mut r, &mut bus, 4096);
        assert_eq!(
            got,
            Outcome::Fault(MemFault {
                segment: Segment::Es,
                offset: 0x2_0000
            })
        );
        assert_eq!(r, regs(3, 0, 0x2_0000, false));
    }
}
