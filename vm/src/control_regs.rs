//! MOV to CR0 as the architecture defines it, for the writes that exit because they touch a
//! bit the hypervisor owns (SDM Vol. 3C §26.1.3; the CPU does the same checks itself for
//! guest-owned bits). The VMM applies the outcome to the guest CR0, EFER and the "IA-32e mode
//! guest" entry control.

/// CR0 bits (SDM Vol. 3A §2.5).
pub const CR0_PE: u64 = 1 << 0;
pub const CR0_NW: u64 = 1 << 29;
pub const CR0_CD: u64 = 1 << 30;
pub const CR0_PG: u64 = 1 << 31;
/// CR4.PAE and CR4.PCIDE (SDM Vol. 3A §2.5).
pub const CR4_PAE: u64 = 1 << 5;
pub const CR4_PCIDE: u64 = 1 << 17;
/// EFER.LME and EFER.LMA (SDM Vol. 3A §2.2.1).
pub const EFER_LME: u64 = 1 << 8;
pub const EFER_LMA: u64 = 1 << 10;

/// The guest's state a MOV to CR0 depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cr0Context {
    /// CR0 as the guest sees it now.
    pub cr0: u64,
    pub cr4: u64,
    pub efer: u64,
    /// CS.L: the guest executes in 64-bit mode (not compatibility mode).
    pub cs_long: bool,
}

/// What a MOV to CR0 does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cr0Write {
    /// #GP(0): the value is illegal in the current mode.
    Fault,
    /// CR0 takes the value; EFER becomes `efer` (IA-32e mode activated or deactivated by a PG
    /// change, SDM Vol. 3A §10.8.5 and §10.8.5.4; unchanged otherwise).
    Load { efer: u64 },
}

/// MOV to CR0 with `value` (SDM Vol. 2B MOV—Move to/from Control Registers, "Protected Mode
/// Exceptions" and "64-Bit Mode Exceptions"; Vol. 3A §2.5, §10.8.5):
/// - #GP if bits 63:32 are set, PG is set without PE, or NW without CD;
/// - #GP if PG is cleared in 64-bit mode, or while CR4.PCIDE = 1;
/// - clearing PG in compatibility mode leaves IA-32e mode (EFER.LMA = 0);
/// - setting PG with EFER.LME = 1 enters IA-32e mode (EFER.LMA = 1), which needs CR4.PAE
///   (#GP without it).
pub fn mov_to_cr0(ctx: &Cr0Context, value: u64) -> Cr0Write {
    if value >> 32 != 0
        || (value & CR0_PG != 0 && value & CR0_PE == 0)
        || (value & CR0_NW != 0 && value & CR0_CD == 0)
    {
        return Cr0Write::Fault;
    }
    let was_paging = ctx.cr0 & CR0_PG != 0;
    let paging = value & CR0_PG != 0;
    let mut efer = ctx.efer;
    if was_paging && !paging {
        if ctx.cr4 & CR4_PCIDE != 0 || (ctx.efer & EFER_LMA != 0 && ctx.cs_long) {
            return Cr0Write::Fault;
        }
        efer &= !EFER_LMA;
    } else if !was_paging && paging && ctx.efer & EFER_LME != 0 {
        if ctx.cr4 & CR4_PAE == 0 {
            return Cr0Write::Fault;
        }
        efer |= EFER_LMA;
    }
    Cr0Write::Load { efer }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LONG: Cr0Context = Cr0Context {
        cr0: 0x8001_0033,
        cr4: 0x620,
        efer: EFER_LME | EFER_LMA | (1 << 11),
        cs_long: true,
    };

    #[test]
    fn reserved_and_inconsistent_values_fault() {
        for v in [1u64 << 32, CR0_PG, CR0_NW | CR0_PE, 0x8001_0033 | 1 << 40] {
            assert_eq!(mov_to_cr0(&LONG, v), Cr0Write::Fault, "{v:#x}");
        }
    }

    #[test]
    fn clearing_pg_in_64_bit_mode_faults() {
        // The fuzzer's value: PG and PE cleared in 64-bit mode.
        assert_eq!(mov_to_cr0(&LONG, 0x1_0008), Cr0Write::Fault);
        assert_eq!(mov_to_cr0(&LONG, 0x6005_001a), Cr0Write::Fault);
        assert_eq!(mov_to_cr0(&LONG, 0x6001_0013), Cr0Write::Fault);
        // With PCIDE, clearing PG faults in any mode.
        let compat_pcid = Cr0Context {
            cs_long: false,
            cr4: LONG.cr4 | CR4_PCIDE,
            ..LONG
        };
        assert_eq!(mov_to_cr0(&compat_pcid, 0x11), Cr0Write::Fault);
    }

    #[test]
    fn other_64_bit_writes_keep_ia32e_mode() {
        // Clearing NE and WP (the bits that make the write exit) is fine.
        assert_eq!(
            mov_to_cr0(&LONG, 0x8000_0013),
            Cr0Write::Load { efer: LONG.efer }
        );
    }

    #[test]
    fn compatibility_mode_may_leave_ia32e_mode() {
        let compat = Cr0Context {
            cs_long: false,
            ..LONG
        };
        assert_eq!(
            mov_to_cr0(&compat, 0x11),
            Cr0Write::Load {
                efer: LONG.efer & !EFER_LMA
            }
        );
    }

    #[test]
    fn setting_pg_with_lme_enters_ia32e_mode_only_with_pae() {
        let prot = Cr0Context {
            cr0: 0x11,
            cr4: CR4_PAE,
            efer: EFER_LME,
            cs_long: false,
        };
        assert_eq!(
            mov_to_cr0(&prot, 0x8000_0011),
            Cr0Write::Load {
                efer: EFER_LME | EFER_LMA
            }
        );
        let no_pae = Cr0Context { cr4: 0, ..prot };
        assert_eq!(mov_to_cr0(&no_pae, 0x8000_0011), Cr0Write::Fault);
        // Without LME, paging is plain 32-bit or PAE paging.
        let legacy = Cr0Context { efer: 0, ..no_pae };
        assert_eq!(mov_to_cr0(&legacy, 0x8000_0011), Cr0Write::Load { efer: 0 });
        // Real mode to protected mode.
        let real = Cr0Context {
            cr0: 0x10,
            cr4: 0,
            efer: 0,
            cs_long: false,
        };
        assert_eq!(mov_to_cr0(&real, 0x11), Cr0Write::Load { efer: 0 });
    }
}
