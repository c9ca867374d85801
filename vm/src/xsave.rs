//! XSETBV validation (SDM Vol. 1 §13.3 "Enabling the XSAVE Feature Set and XSAVE-Enabled
//! Features", Vol. 2D XSETBV): what a guest may load into XCR0 given the components its CPUID
//! offers (CPUID.0xD.0:EDX:EAX).

/// XCR0 components (SDM Vol. 1 §13.1).
pub mod xcr0 {
    pub const X87: u64 = 1 << 0;
    pub const SSE: u64 = 1 << 1;
    pub const AVX: u64 = 1 << 2;
    pub const BNDREGS: u64 = 1 << 3;
    pub const BNDCSR: u64 = 1 << 4;
    pub const OPMASK: u64 = 1 << 5;
    pub const ZMM_HI256: u64 = 1 << 6;
    pub const HI16_ZMM: u64 = 1 << 7;
    pub const PKRU: u64 = 1 << 9;
    pub const TILECFG: u64 = 1 << 17;
    pub const TILEDATA: u64 = 1 << 18;
    /// The AVX-512 state components, enabled together.
    pub const AVX512: u64 = OPMASK | ZMM_HI256 | HI16_ZMM;
}

/// Why XSETBV raises #GP(0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XsetbvError {
    /// ECX is not 0: only XCR0 exists for guests (XGETBV/XSETBV with ECX = 1 is XINUSE,
    /// read-only).
    UnknownRegister(u32),
    /// A bit the guest's CPUID does not offer (reserved or unsupported).
    Unsupported(u64),
    /// XCR0[0] (x87) must be 1.
    X87Clear,
    /// AVX needs SSE; AVX-512 needs AVX and all three of its components; MPX needs both
    /// BNDREGS and BNDCSR; AMX needs both TILECFG and TILEDATA.
    Inconsistent(u64),
}

/// Validates `value` for XSETBV with `ecx`, against the components `supported`
/// (CPUID.0xD.0:EDX:EAX of the guest). Returns the value to load into XCR0.
pub fn validate_xsetbv(ecx: u32, value: u64, supported: u64) -> Result<u64, XsetbvError> {
    use xcr0::*;
    if ecx != 0 {
        return Err(XsetbvError::UnknownRegister(ecx));
    }
    if value & !supported != 0 {
        return Err(XsetbvError::Unsupported(value & !supported));
    }
    if value & X87 == 0 {
        return Err(XsetbvError::X87Clear);
    }
    let both = |bits: u64| value & bits == 0 || value & bits == bits;
    let consistent = (value & AVX == 0 || value & SSE != 0)
        && (value & AVX512 == 0 || (value & AVX != 0 && value & AVX512 == AVX512))
        && both(BNDREGS | BNDCSR)
        && both(TILECFG | TILEDATA);
    if !consistent {
        return Err(XsetbvError::Inconsistent(value));
    }
    Ok(value)
}

/// Offset of MXCSR in the legacy region (SDM Vol. 1 Table 10-2).
const MXCSR_OFFSET: usize = 24;
/// The MXCSR bits FXRSTOR/XRSTOR accept when MXCSR_MASK is not known to include DAZ: the
/// default mask (SDM Vol. 1 §11.6.6).
const MXCSR_DEFAULT_MASK: u32 = 0xffbf;
/// The XSAVE header: XSTATE_BV at 512, XCOMP_BV at 520, reserved to 576 (SDM Vol. 1 §13.4.2).
const XSTATE_BV_OFFSET: usize = 512;
const XCOMP_BV_OFFSET: usize = 520;
const HEADER_END: usize = 576;
/// The legacy region FXSAVE writes.
pub const FXSAVE_BYTES: usize = 512;

/// Checks an extended-state image taken from a snapshot before it is loaded with FXRSTOR
/// (`xsave` false: exactly the 512-byte legacy region) or XRSTOR in the standard format with
/// requested-feature bitmap `rfbm` (`len` bytes): every condition under which the
/// instruction would fault in the host (SDM Vol. 2B FXRSTOR, XRSTOR "Protected Mode
/// Exceptions"; Vol. 1 §13.8): reserved MXCSR bits, XSTATE_BV bits outside `rfbm`, a compacted
/// image or non-zero reserved header bytes.
pub fn check_image(image: &[u8], len: usize, xsave: bool, rfbm: u64) -> Result<(), &'static str> {
    if image.len() != len || (!xsave && len != FXSAVE_BYTES) || (xsave && len < HEADER_END) {
        return Err("the extended-state image's size is not this CPU's");
    }
    let word = |at: usize| u64::from_le_bytes(image[at..at + 8].try_into().unwrap_or([0; 8]));
    let mxcsr = word(MXCSR_OFFSET) as u32;
    if mxcsr & !MXCSR_DEFAULT_MASK != 0 {
        return Err("MXCSR with reserved bits set");
    }
    if xsave {
        if word(XSTATE_BV_OFFSET) & !rfbm != 0 {
            return Err("XSTATE_BV names components the VM does not offer");
        }
        if image[XCOMP_BV_OFFSET..HEADER_END].iter().any(|&b| b != 0) {
            return Err("a compacted XSAVE image or reserved header bytes set");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::xcr0::*;
    use super::*;

    const SKYLAKE_X: u64 = X87 | SSE | AVX | AVX512 | PKRU;

    #[test]
    fn valid_values_load() {
        for v in [
            X87,
            X87 | SSE,
            X87 | SSE | AVX,
            X87 | SSE | AVX | AVX512,
            SKYLAKE_X,
        ] {
            assert_eq!(validate_xsetbv(0, v, SKYLAKE_X), Ok(v), "{v:#x}");
        }
        assert_eq!(validate_xsetbv(0, X87 | PKRU, SKYLAKE_X), Ok(X87 | PKRU));
    }

    #[test]
    fn reserved_unsupported_and_inconsistent_values_gp() {
        let s = SKYLAKE_X;
        assert_eq!(
            validate_xsetbv(1, 0b11, s),
            Err(XsetbvError::UnknownRegister(1))
        );
        assert_eq!(validate_xsetbv(0, SSE, s), Err(XsetbvError::X87Clear));
        assert_eq!(
            validate_xsetbv(0, X87 | AVX, s),
            Err(XsetbvError::Inconsistent(X87 | AVX))
        );
        assert_eq!(
            validate_xsetbv(0, X87 | SSE | OPMASK | ZMM_HI256 | HI16_ZMM, s),
            Err(XsetbvError::Inconsistent(X87 | SSE | AVX512)),
            "AVX-512 without AVX"
        );
        assert_eq!(
            validate_xsetbv(0, X87 | SSE | AVX | OPMASK, s),
            Err(XsetbvError::Inconsistent(X87 | SSE | AVX | OPMASK))
        );
        // Not offered: MPX, AMX, bit 63, bit 8 (PT, supervisor).
        for bit in [BNDREGS | BNDCSR, TILECFG | TILEDATA, 1 << 63, 1 << 8] {
            assert_eq!(
                validate_xsetbv(0, X87 | SSE | bit, s),
                Err(XsetbvError::Unsupported(bit))
            );
        }
        // A CPU with only x87/SSE/AVX refuses AVX-512.
        assert_eq!(
            validate_xsetbv(0, X87 | SSE | AVX | AVX512, X87 | SSE | AVX),
            Err(XsetbvError::Unsupported(AVX512))
        );
        // Pairs that must go together where they are offered.
        let all = X87 | SSE | BNDREGS | BNDCSR | TILECFG | TILEDATA;
        assert!(validate_xsetbv(0, X87 | BNDREGS, all).is_err());
        assert!(validate_xsetbv(0, X87 | SSE | TILEDATA, all).is_err());
        assert!(validate_xsetbv(0, all, all).is_ok());
    }

    #[test]
    fn snapshot_images_that_would_fault_are_refused() {
        let mut fx = [0u8; FXSAVE_BYTES];
        fx[MXCSR_OFFSET..MXCSR_OFFSET + 4].copy_from_slice(&0x1f80u32.to_le_bytes());
        assert_eq!(check_image(&fx, FXSAVE_BYTES, false, 0), Ok(()));
        assert!(check_image(&fx[..511], FXSAVE_BYTES, false, 0).is_err());
        let mut bad = fx;
        bad[MXCSR_OFFSET + 2] = 1;
        assert_eq!(
            check_image(&bad, FXSAVE_BYTES, false, 0),
            Err("MXCSR with reserved bits set")
        );
        let mut x = alloc::vec![0u8; 4096];
        x[..FXSAVE_BYTES].copy_from_slice(&fx);
        x[XSTATE_BV_OFFSET] = (X87 | SSE | AVX) as u8;
        assert_eq!(check_image(&x, 4096, true, X87 | SSE | AVX), Ok(()));
        assert_eq!(
            check_image(&x, 4096, true, X87 | SSE),
            Err("XSTATE_BV names components the VM does not offer")
        );
        x[XCOMP_BV_OFFSET + 7] = 0x80;
        assert_eq!(
            check_image(&x, 4096, true, X87 | SSE | AVX),
            Err("a compacted XSAVE image or reserved header bytes set")
        );
        assert!(check_image(&x, 2048, true, X87).is_err());
    }
}
