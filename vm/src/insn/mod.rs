//! Decoding and emulation of the guest instruction behind an MMIO access.
//!
//! When the guest touches a guest-physical address `G` that belongs to a registered MMIO
//! region, the EPT violation tells the kernel *where* but not *what*: not the width, not the
//! direction with certainty, not the value written or the register loaded. The kernel fetches
//! up to 15 bytes at the guest RIP and hands them to [`emulate`], which decodes the instruction,
//! performs the device access through a callback (the address is always `G`, so the
//! instruction's addressing — segment, base, index, displacement, address size — only matters
//! for instruction *length*), writes back the destination register and RFLAGS, and returns the
//! instruction length so the kernel advances RIP.
//!
//! # Decoder choice: `iced-x86`
//!
//! The byte-level decoding is done by [`iced_x86`] (`default-features = false`,
//! `features = ["no_std", "decoder"]`), the de-facto standard x86 decoder in Rust. It handles
//! every legacy-prefix / REX / ModRM / SIB / displacement / address-size corner, rejects
//! encodings that raise `#UD` (including `LOCK` on non-lockable instructions), caps instructions
//! at 15 bytes, is fuzzed upstream, and never panics on input. It builds for
//! `x86_64-unknown-none` (its tables are initialised once, lazily, on the kernel heap through
//! `lazy_static`/`spin`) and costs about 4 s of compile time from scratch on two cores
//! (measured: 3.3–4.7 s debug or release, for `iced-x86` + `lazy_static` + `spin`). A
//! hand-written decoder of the MOV forms would have been ~400 lines of exactly the kind of
//! code that hides bugs (REX-vs-high-byte register numbering, `67`-prefixed 16-bit ModRM,
//! RIP-relative vs SIB-without-base, REX placement rules) for a hostile-input path; the
//! dependency is cheaper than that risk.
//!
//! This module is the *semantic* layer on top: a whitelist of instructions that can reasonably
//! target MMIO, which operand is memory, access width, direction, the register involved, and
//! the architectural write-back rules (8/16-bit destinations preserve the upper bits, 32-bit
//! destinations zero-extend to 64 bits, MOVZX/MOVSX/MOVSXD extend).
//!
//! # Supported instructions
//!
//! * `MOV r/m, reg` (`88`, `89`), `MOV reg, r/m` (`8A`, `8B`), `MOV moffs` (`A0`–`A3`),
//!   `MOV r/m, imm` (`C6 /0`, `C7 /0`; `REX.W C7` sign-extends its imm32);
//! * `MOVZX` (`0F B6`, `0F B7`), `MOVSX` (`0F BE`, `0F BF`), `MOVSXD` (`63`);
//! * `ADD`/`OR`/`ADC`/`SBB`/`AND`/`SUB`/`XOR`/`CMP` in the forms `r/m, reg`, `reg, r/m` and
//!   `r/m, imm` (`00`–`3B`, `80`, `81`, `83`), and `TEST r/m, reg` / `TEST r/m, imm`
//!   (`84`, `85`, `F6 /0`, `F7 /0`), with RFLAGS computed (AF is computed for the arithmetic
//!   forms and cleared, as real CPUs do, for the logical ones);
//! * `STOS` (`AA`, `AB`) without a `REP` prefix: one store, then `rDI` steps by the width,
//!   backwards if RFLAGS.DF is set, wrapping at the address size.
//!
//! All of them with any operand-size (`66`), address-size (`67`), segment-override and REX
//! prefixes, in 16-, 32- and 64-bit code. Anything else — a valid instruction outside the
//! whitelist (`MOVS`, `XCHG`, SSE/AVX moves, `REP STOS`, …) — is
//! [`InsnError::Unsupported`] carrying the instruction's bytes, so the kernel can stop the VM
//! with a precise report. `LOCK MOV` is [`InsnError::LockPrefix`] (it would be `#UD` on
//! hardware); `LOCK` on the read-modify-write forms is accepted (the vCPU is stopped while the
//! access is emulated, so the read and write are not torn from its point of view).

use core::fmt;

use iced_x86::{
    Decoder, DecoderError, DecoderOptions, Instruction, MemorySize, Mnemonic, OpKind, Register,
};

pub use vmx::Gpr;

mod alu;
mod cache;

pub use alu::AluOp;
pub use cache::DecodeCache;

#[cfg(test)]
mod tests;

/// The longest legal x86 instruction.
pub const MAX_INSN_LEN: usize = 15;

/// The code-segment default size the instruction is decoded with.
///
/// Derive it with [`CpuMode::from_segment`] from EFER.LMA and the CS access rights in the VMCS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CpuMode {
    /// 16-bit code: real mode, virtual-8086 mode, or a 16-bit code segment (CS.D = 0) in
    /// protected or compatibility mode.
    Bits16,
    /// 32-bit code: a 32-bit code segment (CS.D = 1) in protected or compatibility mode.
    Bits32,
    /// 64-bit code: IA-32e mode with CS.L = 1.
    Bits64,
}

impl CpuMode {
    /// The decode mode for a guest with the given EFER.LMA, CS.L and CS.D/B bits.
    ///
    /// Real mode has CS.D = 0 (the VMCS holds the real-mode CS access rights) and so decodes
    /// as [`CpuMode::Bits16`], as does virtual-8086 mode. CS.L is only meaningful in IA-32e
    /// mode; CS.L = 1 together with CS.D = 1 is reserved and treated as 64-bit here.
    pub const fn from_segment(efer_lma: bool, cs_l: bool, cs_db: bool) -> Self {
        if efer_lma && cs_l {
            Self::Bits64
        } else if cs_db {
            Self::Bits32
        } else {
            Self::Bits16
        }
    }

    const fn bitness(self) -> u32 {
        match self {
            Self::Bits16 => 16,
            Self::Bits32 => 32,
            Self::Bits64 => 64,
        }
    }
}

/// RFLAGS bits the emulation reads or writes.
pub mod rflags {
    /// Carry flag.
    pub const CF: u64 = 1 << 0;
    /// Parity flag.
    pub const PF: u64 = 1 << 2;
    /// Auxiliary-carry flag.
    pub const AF: u64 = 1 << 4;
    /// Zero flag.
    pub const ZF: u64 = 1 << 6;
    /// Sign flag.
    pub const SF: u64 = 1 << 7;
    /// Direction flag.
    pub const DF: u64 = 1 << 10;
    /// Overflow flag.
    pub const OF: u64 = 1 << 11;
    /// The six arithmetic status flags.
    pub const STATUS: u64 = CF | PF | AF | ZF | SF | OF;
}

/// Access to the guest's general-purpose registers and RFLAGS.
///
/// The kernel implements this over its saved-register area (and the VMCS guest RFLAGS field).
/// Registers are always read and written as full 64-bit values; the emulation applies the
/// partial-register rules itself.
pub trait Registers {
    /// The full 64-bit value of `r`.
    fn get(&self, r: Gpr) -> u64;
    /// Sets the full 64-bit value of `r`.
    fn set(&mut self, r: Gpr, value: u64);
    /// Guest RFLAGS.
    fn rflags(&self) -> u64;
    /// Sets guest RFLAGS (only the status flags in [`rflags::STATUS`] are ever changed).
    fn set_rflags(&mut self, value: u64);
}

/// A register operand as the instruction names it: which GPR, how wide, and whether it is one
/// of the legacy high-byte registers AH, CH, DH, BH (bits 15:8 of RAX..RBX).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RegOperand {
    /// The 64-bit register containing the operand.
    pub gpr: Gpr,
    /// Operand width in bytes: 1, 2, 4 or 8.
    pub size: u8,
    /// AH/CH/DH/BH: the operand is bits 15:8 of `gpr`.
    pub high_byte: bool,
}

impl RegOperand {
    /// Maps an iced register to a GPR operand; `None` for non-GPRs (segment, control, vector
    /// registers, ...).
    fn from_iced(r: Register) -> Option<Self> {
        let n = r as u32;
        let (index, size, high_byte) = match n {
            // AL, CL, DL, BL
            1..=4 => (n - 1, 1, false),
            // AH, CH, DH, BH
            5..=8 => (n - 5, 1, true),
            // SPL, BPL, SIL, DIL, R8L..R15L
            9..=20 => (n - 5, 1, false),
            // AX..R15W
            21..=36 => (n - 21, 2, false),
            // EAX..R15D
            37..=52 => (n - 37, 4, false),
            // RAX..R15
            53..=68 => (n - 53, 8, false),
            _ => return None,
        };
        Some(Self {
            gpr: Gpr::from_bits(index as u8),
            size,
            high_byte,
        })
    }

    /// The operand's current value, zero-extended.
    pub fn read(self, regs: &impl Registers) -> u64 {
        let full = regs.get(self.gpr);
        let shifted = if self.high_byte { full >> 8 } else { full };
        shifted & mask(self.size)
    }

    /// Writes `value` (truncated to the operand width) with the architectural rules: 8- and
    /// 16-bit writes preserve the rest of the register, 32-bit writes zero-extend to 64 bits
    /// (in every mode: outside 64-bit mode bits 63:32 are not architecturally visible, and
    /// after a switch back to 64-bit mode they are undefined, so zero is as good as any).
    pub fn write(self, regs: &mut impl Registers, value: u64) {
        let old = regs.get(self.gpr);
        let new = match (self.size, self.high_byte) {
            (1, true) => (old & !0xff00) | ((value & 0xff) << 8),
            (1, false) => (old & !0xff) | (value & 0xff),
            (2, _) => (old & !0xffff) | (value & 0xffff),
            (4, _) => value & 0xffff_ffff,
            _ => value,
        };
        regs.set(self.gpr, new);
    }
}

/// How a load is widened to the destination register.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Extend {
    /// MOV (same width) and MOVZX.
    Zero,
    /// MOVSX, MOVSXD.
    Sign,
}

/// One device access, as passed to the callback of [`emulate`]. The address is the faulting
/// guest-physical address from the exit; the callback already knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MmioAccess {
    /// Read `size` bytes; the callback returns the value (upper bits beyond `size` are ignored).
    Read {
        /// 1, 2, 4 or 8.
        size: u8,
    },
    /// Write the low `size` bytes of `value` (upper bits are zero); the callback's return value
    /// is ignored.
    Write {
        /// 1, 2, 4 or 8.
        size: u8,
        /// The value, zero-extended.
        value: u64,
    },
}

/// An [`MmioAccess`] against a bank of 32-bit registers (the local APIC, SDM Vol. 3A
/// §11.4.1; the IOAPIC window, 82093AA §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DwordAccess {
    /// Read the aligned register at `register`; [`DwordAccess::narrow`] gives the bytes the
    /// access asked for.
    Read {
        register: u64,
        shift: u32,
        mask: u64,
    },
    /// Write `value` to the aligned register at `register`.
    Write { register: u64, value: u32 },
    /// A narrower or misaligned write: its effect is undefined; it is ignored.
    Ignored,
}

impl DwordAccess {
    /// The bytes of the register value `value` a read asked for.
    pub fn narrow(self, value: u32) -> u64 {
        match self {
            DwordAccess::Read { shift, mask, .. } => (u64::from(value) >> shift) & mask,
            _ => 0,
        }
    }
}

impl MmioAccess {
    /// This access at `offset` of a bank of 32-bit registers.
    pub fn dword_register(self, offset: u64) -> DwordAccess {
        let register = offset & !3;
        match self {
            MmioAccess::Read { size } => DwordAccess::Read {
                register,
                shift: ((offset & 3) * 8) as u32,
                mask: if size >= 4 {
                    u64::from(u32::MAX)
                } else {
                    (1 << (8 * u32::from(size))) - 1
                },
            },
            MmioAccess::Write { size: 4, value } if offset & 3 == 0 => DwordAccess::Write {
                register,
                value: value as u32,
            },
            MmioAccess::Write { .. } => DwordAccess::Ignored,
        }
    }
}

/// What the faulting instruction does to the MMIO location.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MmioOp {
    /// `dest = extend(mem)`: MOV reg, r/m; MOVZX; MOVSX; MOVSXD.
    Load {
        /// Memory width in bytes.
        size: u8,
        /// The destination register.
        dest: RegOperand,
        /// How the value is widened to `dest.size`.
        extend: Extend,
    },
    /// `mem = value`: MOV r/m, reg and MOV r/m, imm.
    Store {
        /// Memory width in bytes.
        size: u8,
        /// The value, truncated to `size` and zero-extended.
        value: u64,
    },
    /// `mem = mem OP operand` with RFLAGS updated; CMP and TEST only read.
    MemAlu {
        /// Memory width in bytes.
        size: u8,
        /// The operation.
        op: AluOp,
        /// The register or immediate source, truncated to `size`.
        operand: u64,
    },
    /// `reg = reg OP mem` with RFLAGS updated; CMP only reads.
    RegAlu {
        /// Memory (and register) width in bytes.
        size: u8,
        /// The operation.
        op: AluOp,
        /// The register operand (destination unless `op` is CMP).
        reg: RegOperand,
    },
    /// STOS without REP: `mem = value`, then `di` steps by `size` (down if RFLAGS.DF).
    Stos {
        /// Memory width in bytes.
        size: u8,
        /// AL/AX/EAX/RAX, truncated to `size`.
        value: u64,
        /// Address size in bytes (2, 4, 8): the part of RDI that is stepped (DI, EDI, RDI).
        address_size: u8,
    },
}

impl MmioOp {
    /// Memory access width in bytes.
    pub const fn size(&self) -> u8 {
        match *self {
            Self::Load { size, .. }
            | Self::Store { size, .. }
            | Self::MemAlu { size, .. }
            | Self::RegAlu { size, .. }
            | Self::Stos { size, .. } => size,
        }
    }

    /// Whether the device is read.
    pub const fn reads(&self) -> bool {
        !matches!(self, Self::Store { .. } | Self::Stos { .. })
    }

    /// Whether the device is written. The kernel can check this against the EPT violation's
    /// qualification: a mismatch means the instruction bytes changed under the fault.
    pub const fn writes(&self) -> bool {
        match self {
            Self::Store { .. } | Self::Stos { .. } => true,
            Self::MemAlu { op, .. } => op.writes_result(),
            Self::Load { .. } | Self::RegAlu { .. } => false,
        }
    }
}

/// A decoded MMIO instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Decoded {
    /// Instruction length in bytes (1..=15): the amount to advance RIP by.
    pub len: u8,
    /// What it does.
    pub op: MmioOp,
}

/// A completed emulation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Emulated {
    /// Instruction length in bytes: the kernel advances RIP by this much.
    pub len: u8,
    /// What was done.
    pub op: MmioOp,
    /// The value read from the device, if it was read (zero-extended from `op.size()`).
    pub read: Option<u64>,
    /// The value written to the device, if it was written (zero-extended from `op.size()`).
    pub written: Option<u64>,
}

/// The bytes of an instruction that could not be emulated, for the report.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct InsnBytes {
    buf: [u8; MAX_INSN_LEN],
    len: u8,
}

impl InsnBytes {
    /// Copies up to [`MAX_INSN_LEN`] bytes.
    pub fn new(bytes: &[u8]) -> Self {
        let mut buf = [0; MAX_INSN_LEN];
        let len = bytes.len().min(MAX_INSN_LEN);
        buf[..len].copy_from_slice(&bytes[..len]);
        Self {
            buf,
            len: len as u8,
        }
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.buf[..usize::from(self.len).min(MAX_INSN_LEN)]
    }
}

impl fmt::Debug for InsnBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InsnBytes({self})")
    }
}

impl fmt::Display for InsnBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.as_slice().iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// Why an instruction could not be emulated. Every variant means: stop the VM and report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InsnError {
    /// The bytes end before the instruction does (`available` bytes were given).
    Truncated {
        /// How many bytes were given.
        available: u8,
    },
    /// Not a valid instruction in this mode (it would raise `#UD`), or longer than 15 bytes.
    Invalid {
        /// Up to 15 bytes from the start of the instruction.
        bytes: InsnBytes,
    },
    /// A MOV-family instruction with a LOCK prefix (`#UD` on hardware).
    LockPrefix {
        /// The instruction.
        bytes: InsnBytes,
    },
    /// The instruction has no memory operand, so it cannot have caused the EPT violation
    /// (the guest changed the code under the fault, or the fetch went wrong).
    NotMemoryOperand {
        /// The instruction.
        bytes: InsnBytes,
    },
    /// A valid instruction that touches memory but is not emulated here.
    Unsupported {
        /// The instruction.
        bytes: InsnBytes,
    },
}

impl fmt::Display for InsnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated { available } => {
                write!(f, "instruction truncated after {available} bytes")
            }
            Self::Invalid { bytes } => write!(f, "invalid instruction: {bytes}"),
            Self::LockPrefix { bytes } => {
                write!(f, "LOCK prefix on a non-lockable instruction: {bytes}")
            }
            Self::NotMemoryOperand { bytes } => {
                write!(f, "instruction has no memory operand: {bytes}")
            }
            Self::Unsupported { bytes } => {
                write!(f, "unsupported MMIO instruction: {bytes}")
            }
        }
    }
}

impl core::error::Error for InsnError {}

/// All-ones in the low `size` bytes.
const fn mask(size: u8) -> u64 {
    match size {
        1 => 0xff,
        2 => 0xffff,
        4 => 0xffff_ffff,
        _ => u64::MAX,
    }
}

/// Sign-extends the low `size` bytes of `value` to 64 bits.
const fn sign_extend(value: u64, size: u8) -> u64 {
    match size {
        1 => value as u8 as i8 as i64 as u64,
        2 => value as u16 as i16 as i64 as u64,
        4 => value as u32 as i32 as i64 as u64,
        _ => value,
    }
}

/// Builds the decoder's lazily initialised tables (a one-time heap allocation, ~tens of KiB)
/// now rather than on the first MMIO exit. Optional; call once after the heap is up.
pub fn warm_up() {
    let _ = Decoder::try_new(64, &[0x90], DecoderOptions::NONE).map(|mut d| d.decode());
}

/// Decodes the instruction at the start of `bytes` (surplus bytes are ignored) and works out
/// its MMIO access. `regs` is only read, for the value a store writes.
pub fn decode(bytes: &[u8], mode: CpuMode, regs: &impl Registers) -> Result<Decoded, InsnError> {
    let bytes = &bytes[..bytes.len().min(MAX_INSN_LEN)];
    let insn = decode_raw(bytes, mode)?;
    decoded(insn, bytes, regs)
}

/// [`decode`] through `cache`: the same bytes in the same mode decode once.
pub fn decode_cached(
    cache: &mut DecodeCache,
    bytes: &[u8],
    mode: CpuMode,
    regs: &impl Registers,
) -> Result<Decoded, InsnError> {
    let bytes = &bytes[..bytes.len().min(MAX_INSN_LEN)];
    let insn = match cache.lookup(bytes, mode) {
        Some(insn) => insn,
        None => {
            let insn = decode_raw(bytes, mode)?;
            cache.insert(bytes, mode, &insn);
            insn
        }
    };
    decoded(insn, bytes, regs)
}

/// The MMIO access of a decoded instruction (`regs` read for the value a store writes).
fn decoded(insn: Instruction, bytes: &[u8], regs: &impl Registers) -> Result<Decoded, InsnError> {
    let len = insn.len();
    let this = InsnBytes::new(&bytes[..len.min(bytes.len())]);
    let op = classify(&insn, regs, this)?;
    Ok(Decoded { len: len as u8, op })
}

/// Decodes the instruction, performs its device accesses through `mmio` (a read, a write, or a
/// read followed by a write), and writes back the destination register and RFLAGS.
///
/// On error nothing has been accessed or modified. RIP is not touched: the kernel advances it
/// by [`Emulated::len`].
pub fn emulate(
    bytes: &[u8],
    mode: CpuMode,
    regs: &mut impl Registers,
    mmio: impl FnMut(MmioAccess) -> u64,
) -> Result<Emulated, InsnError> {
    let decoded = decode(bytes, mode, regs)?;
    perform(decoded, regs, mmio)
}

/// [`emulate`] with the decode through `cache` (a per-vCPU [`DecodeCache`]: a doorbell
/// write decodes once).
pub fn emulate_cached(
    cache: &mut DecodeCache,
    bytes: &[u8],
    mode: CpuMode,
    regs: &mut impl Registers,
    mmio: impl FnMut(MmioAccess) -> u64,
) -> Result<Emulated, InsnError> {
    let decoded = decode_cached(cache, bytes, mode, regs)?;
    perform(decoded, regs, mmio)
}

/// Performs a decoded instruction's device accesses and writes back its results.
fn perform(
    Decoded { len, op }: Decoded,
    regs: &mut impl Registers,
    mut mmio: impl FnMut(MmioAccess) -> u64,
) -> Result<Emulated, InsnError> {
    let mut read = None;
    let mut written = None;
    match op {
        MmioOp::Load { size, dest, extend } => {
            let value = mmio(MmioAccess::Read { size }) & mask(size);
            read = Some(value);
            let value = match extend {
                Extend::Zero => value,
                Extend::Sign => sign_extend(value, size),
            };
            dest.write(regs, value);
        }
        MmioOp::Store { size, value } => {
            mmio(MmioAccess::Write { size, value });
            written = Some(value);
        }
        MmioOp::MemAlu { size, op, operand } => {
            let value = mmio(MmioAccess::Read { size }) & mask(size);
            read = Some(value);
            let flags = regs.rflags();
            let (result, flags) = op.apply(value, operand, size, flags);
            if op.writes_result() {
                mmio(MmioAccess::Write {
                    size,
                    value: result,
                });
                written = Some(result);
            }
            regs.set_rflags(flags);
        }
        MmioOp::RegAlu { size, op, reg } => {
            let value = mmio(MmioAccess::Read { size }) & mask(size);
            read = Some(value);
            let flags = regs.rflags();
            let (result, flags) = op.apply(reg.read(regs), value, size, flags);
            if op.writes_result() {
                reg.write(regs, result);
            }
            regs.set_rflags(flags);
        }
        MmioOp::Stos {
            size,
            value,
            address_size,
        } => {
            mmio(MmioAccess::Write { size, value });
            written = Some(value);
            let step = if regs.rflags() & rflags::DF != 0 {
                u64::from(size).wrapping_neg()
            } else {
                u64::from(size)
            };
            let di = RegOperand {
                gpr: Gpr::Rdi,
                size: address_size,
                high_byte: false,
            };
            di.write(regs, di.read(regs).wrapping_add(step));
        }
    }
    Ok(Emulated {
        len,
        op,
        read,
        written,
    })
}

/// Runs the decoder, mapping its failures to [`InsnError`].
fn decode_raw(bytes: &[u8], mode: CpuMode) -> Result<Instruction, InsnError> {
    let invalid = || InsnError::Invalid {
        bytes: InsnBytes::new(bytes),
    };
    let mut decoder =
        Decoder::try_new(mode.bitness(), bytes, DecoderOptions::NONE).map_err(|_| invalid())?;
    let insn = decoder.decode();
    match decoder.last_error() {
        DecoderError::None if !insn.is_invalid() && insn.len() <= bytes.len() => Ok(insn),
        DecoderError::NoMoreBytes => Err(InsnError::Truncated {
            available: bytes.len() as u8,
        }),
        _ => {
            // Tell a LOCK on a MOV (#UD, but a precise report helps) from other garbage.
            let mut lax = Decoder::try_new(mode.bitness(), bytes, DecoderOptions::NO_INVALID_CHECK)
                .map_err(|_| invalid())?;
            let insn = lax.decode();
            if lax.last_error() == DecoderError::None
                && !insn.is_invalid()
                && insn.has_lock_prefix()
            {
                let len = insn.len().min(bytes.len());
                return Err(InsnError::LockPrefix {
                    bytes: InsnBytes::new(&bytes[..len]),
                });
            }
            Err(invalid())
        }
    }
}

/// The memory operand's index, if the instruction has an ordinary one.
fn memory_operand(insn: &Instruction) -> Option<u32> {
    (0..insn.op_count()).find(|&i| matches!(insn.try_op_kind(i), Ok(OpKind::Memory)))
}

/// Whether the instruction touches memory at all (ordinary or string operands).
fn touches_memory(insn: &Instruction) -> bool {
    (0..insn.op_count()).any(|i| {
        matches!(
            insn.try_op_kind(i),
            Ok(OpKind::Memory
                | OpKind::MemorySegSI
                | OpKind::MemorySegESI
                | OpKind::MemorySegRSI
                | OpKind::MemorySegDI
                | OpKind::MemorySegEDI
                | OpKind::MemorySegRDI
                | OpKind::MemoryESDI
                | OpKind::MemoryESEDI
                | OpKind::MemoryESRDI)
        )
    }) || matches!(
        insn.mnemonic(),
        // Implicit memory operands that iced does not list as operands.
        Mnemonic::Push
            | Mnemonic::Pop
            | Mnemonic::Call
            | Mnemonic::Ret
            | Mnemonic::Enter
            | Mnemonic::Leave
            | Mnemonic::Pushf
            | Mnemonic::Popf
            | Mnemonic::Pusha
            | Mnemonic::Popa
            | Mnemonic::Xlatb
            | Mnemonic::Iret
            | Mnemonic::Int
            | Mnemonic::Int1
            | Mnemonic::Int3
            | Mnemonic::Into
    )
}

/// Works out what a successfully decoded instruction does to memory.
fn classify(
    insn: &Instruction,
    regs: &impl Registers,
    bytes: InsnBytes,
) -> Result<MmioOp, InsnError> {
    let unsupported = InsnError::Unsupported { bytes };
    let Some(mem) = memory_operand(insn) else {
        if matches!(
            insn.mnemonic(),
            Mnemonic::Stosb | Mnemonic::Stosw | Mnemonic::Stosd | Mnemonic::Stosq
        ) {
            return classify_stos(insn, regs).ok_or(unsupported);
        }
        return Err(if touches_memory(insn) {
            unsupported
        } else {
            InsnError::NotMemoryOperand { bytes }
        });
    };
    let size = match insn.memory_size() {
        MemorySize::UInt8 | MemorySize::Int8 => 1,
        MemorySize::UInt16 | MemorySize::Int16 => 2,
        MemorySize::UInt32 | MemorySize::Int32 => 4,
        MemorySize::UInt64 | MemorySize::Int64 => 8,
        _ => return Err(unsupported),
    };
    if insn.op_count() != 2 {
        return Err(unsupported);
    }
    let other = 1 - mem;
    let other_reg = || {
        insn.try_op_register(other)
            .ok()
            .and_then(RegOperand::from_iced)
            .ok_or(unsupported)
    };
    let other_is_reg = matches!(insn.try_op_kind(other), Ok(OpKind::Register));
    let lock = insn.has_lock_prefix();
    let mnemonic = insn.mnemonic();

    if let Some(op) = AluOp::from_mnemonic(mnemonic) {
        if lock && !op.writes_result() {
            // iced already rejects LOCK CMP/TEST as #UD; be explicit anyway.
            return Err(InsnError::LockPrefix { bytes });
        }
        return if mem == 0 {
            let operand = if other_is_reg {
                other_reg()?.read(regs)
            } else {
                insn.try_immediate(other).map_err(|_| unsupported)?
            };
            Ok(MmioOp::MemAlu {
                size,
                op,
                operand: operand & mask(size),
            })
        } else {
            let reg = other_reg()?;
            if reg.size != size || lock {
                return Err(unsupported);
            }
            Ok(MmioOp::RegAlu { size, op, reg })
        };
    }

    let extend = match mnemonic {
        Mnemonic::Mov => Extend::Zero,
        Mnemonic::Movzx => Extend::Zero,
        Mnemonic::Movsx | Mnemonic::Movsxd => Extend::Sign,
        _ => return Err(unsupported),
    };
    if lock {
        return Err(InsnError::LockPrefix { bytes });
    }
    if mem == 1 {
        let dest = other_reg()?;
        if dest.size < size {
            return Err(unsupported);
        }
        Ok(MmioOp::Load { size, dest, extend })
    } else if mnemonic != Mnemonic::Mov {
        Err(unsupported)
    } else if other_is_reg {
        let src = other_reg()?;
        if src.size != size {
            return Err(unsupported);
        }
        Ok(MmioOp::Store {
            size,
            value: src.read(regs),
        })
    } else {
        let value = insn.try_immediate(other).map_err(|_| unsupported)?;
        Ok(MmioOp::Store {
            size,
            value: value & mask(size),
        })
    }
}

/// STOS without REP.
fn classify_stos(insn: &Instruction, regs: &impl Registers) -> Option<MmioOp> {
    if insn.has_rep_prefix() || insn.has_repne_prefix() || insn.op_count() != 2 {
        return None;
    }
    let address_size = match insn.try_op_kind(0).ok()? {
        OpKind::MemoryESDI => 2,
        OpKind::MemoryESEDI => 4,
        OpKind::MemoryESRDI => 8,
        _ => return None,
    };
    let src = RegOperand::from_iced(insn.try_op_register(1).ok()?)?;
    Some(MmioOp::Stos {
        size: src.size,
        value: src.read(regs),
        address_size,
    })
}
