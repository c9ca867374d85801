//! The arithmetic/logic operations emulated on MMIO operands, with their RFLAGS effects.

use iced_x86::Mnemonic;

use super::{mask, rflags};

/// A two-operand ALU operation `dst = dst OP src`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AluOp {
    /// ADD.
    Add,
    /// OR.
    Or,
    /// ADC (add with carry in).
    Adc,
    /// SBB (subtract with borrow in).
    Sbb,
    /// AND.
    And,
    /// SUB.
    Sub,
    /// XOR.
    Xor,
    /// CMP: SUB that only sets flags.
    Cmp,
    /// TEST: AND that only sets flags.
    Test,
}

impl AluOp {
    pub(super) fn from_mnemonic(m: Mnemonic) -> Option<Self> {
        Some(match m {
            Mnemonic::Add => Self::Add,
            Mnemonic::Or => Self::Or,
            Mnemonic::Adc => Self::Adc,
            Mnemonic::Sbb => Self::Sbb,
            Mnemonic::And => Self::And,
            Mnemonic::Sub => Self::Sub,
            Mnemonic::Xor => Self::Xor,
            Mnemonic::Cmp => Self::Cmp,
            Mnemonic::Test => Self::Test,
            _ => return None,
        })
    }

    /// Whether the result is stored (false for CMP and TEST).
    pub const fn writes_result(self) -> bool {
        !matches!(self, Self::Cmp | Self::Test)
    }

    /// Computes `dst OP src` on `size`-byte operands (1, 2, 4; anything else is 8) and the new RFLAGS (only the status
    /// flags of `flags` change). Returns the result zero-extended from `size`.
    pub fn apply(self, dst: u64, src: u64, size: u8, flags: u64) -> (u64, u64) {
        let m = mask(size);
        let (a, b) = (dst & m, src & m);
        let carry_in = u64::from(flags & rflags::CF != 0);
        // The top bit of the operand (`mask` treats any other size as 8 bytes; so does this).
        let sign = (m >> 1) + 1;
        // (result, CF, OF, AF) per operation.
        let (result, cf, of, af) = match self {
            Self::Add | Self::Adc => {
                let c = if self == Self::Adc { carry_in } else { 0 };
                let wide = u128::from(a) + u128::from(b) + u128::from(c);
                let r = (wide as u64) & m;
                let cf = wide > u128::from(m);
                let of = (a ^ r) & (b ^ r) & sign != 0;
                (r, cf, of, (a ^ b ^ r) & 0x10 != 0)
            }
            Self::Sub | Self::Sbb | Self::Cmp => {
                let c = if self == Self::Sbb { carry_in } else { 0 };
                let r = a.wrapping_sub(b).wrapping_sub(c) & m;
                let cf = u128::from(a) < u128::from(b) + u128::from(c);
                let of = (a ^ b) & (a ^ r) & sign != 0;
                (r, cf, of, (a ^ b ^ r) & 0x10 != 0)
            }
            Self::And | Self::Test => (a & b, false, false, false),
            Self::Or => (a | b, false, false, false),
            Self::Xor => (a ^ b, false, false, false),
        };
        let mut new = flags & !rflags::STATUS;
        for (bit, set) in [
            (rflags::CF, cf),
            (rflags::OF, of),
            (rflags::AF, af),
            (rflags::ZF, result == 0),
            (rflags::SF, result & sign != 0),
            (rflags::PF, (result as u8).count_ones().is_multiple_of(2)),
        ] {
            if set {
                new |= bit;
            }
        }
        (result, new)
    }
}
