//! Fuzzes the MMIO instruction decoder/emulator (`vm::insn`): the first input byte picks the
//! CPU mode and seeds RFLAGS, the next up to 15 bytes are the instruction, the rest fill the
//! registers and the device's read value. Nothing may panic; a success must be
//! self-consistent (length within the bytes given, 1 or 2 device accesses of a legal width,
//! written values zero-extended, only the status flags of RFLAGS changed); an error must
//! leave registers and device untouched.
//!
//! Run with `cargo fuzz run insn` from `vm/` (e.g. `cargo fuzz run insn -- -max_total_time=20`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use vm::insn::{emulate, rflags, CpuMode, Gpr, MmioAccess, Registers, MAX_INSN_LEN};

#[derive(Clone, PartialEq, Eq, Debug)]
struct Regs {
    gpr: [u64; 16],
    rflags: u64,
}

impl Registers for Regs {
    fn get(&self, r: Gpr) -> u64 {
        self.gpr[r.index()]
    }
    fn set(&mut self, r: Gpr, value: u64) {
        self.gpr[r.index()] = value;
    }
    fn rflags(&self) -> u64 {
        self.rflags
    }
    fn set_rflags(&mut self, value: u64) {
        self.rflags = value;
    }
}

fn mask(size: u8) -> u64 {
    match size {
        1 => 0xff,
        2 => 0xffff,
        4 => 0xffff_ffff,
        _ => u64::MAX,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&head, rest)) = data.split_first() else {
        return;
    };
    let mode = match head % 3 {
        0 => CpuMode::Bits16,
        1 => CpuMode::Bits32,
        _ => CpuMode::Bits64,
    };
    let (code, rest) = rest.split_at(rest.len().min(MAX_INSN_LEN));
    let mut seed = rest.iter().fold(0x9e37_79b9_7f4a_7c15u64, |s, &b| {
        (s ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut regs = Regs {
        gpr: core::array::from_fn(|_| next()),
        rflags: 0x2 | (u64::from(head) << 3 & rflags::STATUS) | (u64::from(head & 0x80) << 3),
    };
    let device = next();
    let before = regs.clone();
    let mut accesses = 0;
    let result = emulate(code, mode, &mut regs, |access| {
        accesses += 1;
        match access {
            MmioAccess::Read { size } => assert!(matches!(size, 1 | 2 | 4 | 8)),
            MmioAccess::Write { size, value } => {
                assert!(matches!(size, 1 | 2 | 4 | 8));
                assert_eq!(value & !mask(size), 0, "write not zero-extended");
            }
        }
        device
    });
    match result {
        Ok(e) => {
            assert!(e.len >= 1 && usize::from(e.len) <= code.len());
            assert!(accesses == 1 || accesses == 2);
            assert_eq!(e.read.is_some(), e.op.reads());
            assert_eq!(e.written.is_some(), e.op.writes());
            assert_eq!(
                regs.rflags & !rflags::STATUS,
                before.rflags & !rflags::STATUS
            );
        }
        Err(e) => {
            assert_eq!(accesses, 0, "device accessed on error {e}");
            assert_eq!(regs, before, "registers changed on error {e}");
            let _ = e.to_string();
        }
    }
});
