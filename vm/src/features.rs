//! CPUID against what a guest can really use: every feature whose use a VM-execution control
//! or a CR4 bit enables. A feature CPUID hides must be unusable (its instruction raises #UD,
//! its CR4 bit #GP) and a feature CPUID offers must work, so a guest cannot tell Bulkhead's
//! vCPU from a CPU without the feature (SDM Vol. 2A CPUID; SDM Vol. 3C §26.3 for the
//! instructions the secondary controls enable; SDM Vol. 3A §2.5 and §2.6.2.1 for CR4).
//!
//! [`FEATURES`] is the table; [`secondary_controls`] gives the "enable ..." controls the
//! offered features need, [`cr4_guest_reserved`] the CR4 bits a guest may not set. The CPUID
//! policy ([`crate::cpuid`]) hides what the controls or CR4_FIXED1 cannot enable
//! ([`crate::cpuid::CpuidConfig::secondary_allowed`], `cr4_allowed`).

use crate::cpuid::{CpuidPolicy, VcpuCpuidState};
use vmx::controls::SecondaryControls;

/// A CPUID output register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reg {
    Eax = 0,
    Ebx = 1,
    Ecx = 2,
    Edx = 3,
}

/// Where CPUID enumerates a feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuidBit {
    pub leaf: u32,
    pub subleaf: u32,
    pub reg: Reg,
    pub bit: u32,
}

/// What makes a feature usable in VMX non-root operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// A secondary processor-based control: with it 0 the instructions raise #UD (SDM Vol. 3C
    /// §26.3).
    Control(SecondaryControls),
    /// A CR4 bit the guest sets to use the feature; MOV to CR4 setting it must #GP when the
    /// feature is hidden (SDM Vol. 2B MOV CR, "reserved bits").
    Cr4(u64),
}

/// One feature of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Feature {
    pub name: &'static str,
    pub cpuid: CpuidBit,
    pub gate: Gate,
}

const fn bit(leaf: u32, subleaf: u32, reg: Reg, bit: u32) -> CpuidBit {
    CpuidBit {
        leaf,
        subleaf,
        reg,
        bit,
    }
}

/// Every feature with an enabling VM-execution control or CR4 bit (SDM Vol. 3A §2.5 Figure
/// 2-7 for the CR4 bits, Vol. 2A Table 3-8 for the CPUID bits).
pub const FEATURES: &[Feature] = &[
    Feature {
        name: "RDTSCP",
        cpuid: bit(0x8000_0001, 0, Reg::Edx, 27),
        gate: Gate::Control(SecondaryControls::ENABLE_RDTSCP),
    },
    // RDPID also raises #UD when "enable RDTSCP" is 0 (SDM Vol. 3C §26.3).
    Feature {
        name: "RDPID",
        cpuid: bit(7, 0, Reg::Ecx, 22),
        gate: Gate::Control(SecondaryControls::ENABLE_RDTSCP),
    },
    Feature {
        name: "INVPCID",
        cpuid: bit(7, 0, Reg::Ebx, 10),
        gate: Gate::Control(SecondaryControls::ENABLE_INVPCID),
    },
    Feature {
        name: "XSAVES",
        cpuid: bit(0xd, 1, Reg::Eax, 3),
        gate: Gate::Control(SecondaryControls::ENABLE_XSAVES_XRSTORS),
    },
    Feature {
        name: "VME",
        cpuid: bit(1, 0, Reg::Edx, 1),
        gate: Gate::Cr4(1 << 0),
    },
    Feature {
        name: "PVI",
        cpuid: bit(1, 0, Reg::Edx, 1),
        gate: Gate::Cr4(1 << 1),
    },
    Feature {
        name: "TSD",
        cpuid: bit(1, 0, Reg::Edx, 4),
        gate: Gate::Cr4(1 << 2),
    },
    Feature {
        name: "DE",
        cpuid: bit(1, 0, Reg::Edx, 2),
        gate: Gate::Cr4(1 << 3),
    },
    Feature {
        name: "PSE",
        cpuid: bit(1, 0, Reg::Edx, 3),
        gate: Gate::Cr4(1 << 4),
    },
    Feature {
        name: "PAE",
        cpuid: bit(1, 0, Reg::Edx, 6),
        gate: Gate::Cr4(1 << 5),
    },
    Feature {
        name: "MCE",
        cpuid: bit(1, 0, Reg::Edx, 7),
        gate: Gate::Cr4(1 << 6),
    },
    Feature {
        name: "PGE",
        cpuid: bit(1, 0, Reg::Edx, 13),
        gate: Gate::Cr4(1 << 7),
    },
    Feature {
        name: "OSFXSR",
        cpuid: bit(1, 0, Reg::Edx, 24),
        gate: Gate::Cr4(1 << 9),
    },
    Feature {
        name: "OSXMMEXCPT",
        cpuid: bit(1, 0, Reg::Edx, 25),
        gate: Gate::Cr4(1 << 10),
    },
    Feature {
        name: "UMIP",
        cpuid: bit(7, 0, Reg::Ecx, 2),
        gate: Gate::Cr4(1 << 11),
    },
    Feature {
        name: "LA57",
        cpuid: bit(7, 0, Reg::Ecx, 16),
        gate: Gate::Cr4(1 << 12),
    },
    Feature {
        name: "VMX",
        cpuid: bit(1, 0, Reg::Ecx, 5),
        gate: Gate::Cr4(1 << 13),
    },
    Feature {
        name: "SMX",
        cpuid: bit(1, 0, Reg::Ecx, 6),
        gate: Gate::Cr4(1 << 14),
    },
    Feature {
        name: "FSGSBASE",
        cpuid: bit(7, 0, Reg::Ebx, 0),
        gate: Gate::Cr4(1 << 16),
    },
    Feature {
        name: "PCID",
        cpuid: bit(1, 0, Reg::Ecx, 17),
        gate: Gate::Cr4(1 << 17),
    },
    Feature {
        name: "XSAVE",
        cpuid: bit(1, 0, Reg::Ecx, 26),
        gate: Gate::Cr4(1 << 18),
    },
    Feature {
        name: "KL",
        cpuid: bit(7, 0, Reg::Ecx, 23),
        gate: Gate::Cr4(1 << 19),
    },
    Feature {
        name: "SMEP",
        cpuid: bit(7, 0, Reg::Ebx, 7),
        gate: Gate::Cr4(1 << 20),
    },
    Feature {
        name: "SMAP",
        cpuid: bit(7, 0, Reg::Ebx, 20),
        gate: Gate::Cr4(1 << 21),
    },
    Feature {
        name: "PKU",
        cpuid: bit(7, 0, Reg::Ecx, 3),
        gate: Gate::Cr4(1 << 22),
    },
    Feature {
        name: "CET",
        cpuid: bit(7, 0, Reg::Ecx, 7),
        gate: Gate::Cr4(1 << 23),
    },
    Feature {
        name: "PKS",
        cpuid: bit(7, 0, Reg::Ecx, 31),
        gate: Gate::Cr4(1 << 24),
    },
    Feature {
        name: "UINTR",
        cpuid: bit(7, 0, Reg::Edx, 5),
        gate: Gate::Cr4(1 << 25),
    },
];

/// CR4 bits every x86-64 CPU with VMX defines without a CPUID bit of their own: PCE (8).
const CR4_ALWAYS: u64 = 1 << 8;

/// Whether the policy offers the CPUID bit (at reset: CR4 = 0, XCR0 = x87).
pub fn offered(policy: &CpuidPolicy, b: CpuidBit) -> bool {
    let vcpu = VcpuCpuidState {
        apic_id: 0,
        cr4: 0,
        xcr0: 1,
        limit_cpuid: false,
    };
    let in_range = if b.leaf >= crate::cpuid::EXT_BASE_LEAF {
        b.leaf <= policy.max_extended_leaf()
    } else {
        b.leaf <= policy.max_basic_leaf()
    };
    in_range && policy.lookup(b.leaf, b.subleaf, &vcpu)[b.reg as usize] & (1 << b.bit) != 0
}

/// The "enable ..." secondary controls the offered features need (the others stay 0, so the
/// hidden instructions raise #UD).
pub fn secondary_controls(policy: &CpuidPolicy) -> SecondaryControls {
    let mut set = SecondaryControls::empty();
    for f in FEATURES {
        if let Gate::Control(c) = f.gate {
            if offered(policy, f.cpuid) {
                set |= c;
            }
        }
    }
    set
}

/// The CR4 bits a guest may not set: those of hidden features, and every bit no feature of
/// the table defines (SDM Vol. 3A §2.5: reserved bits, #GP).
pub fn cr4_guest_reserved(policy: &CpuidPolicy) -> u64 {
    let mut allowed = CR4_ALWAYS;
    for f in FEATURES {
        if let Gate::Cr4(bit) = f.gate {
            if offered(policy, f.cpuid) {
                allowed |= bit;
            }
        }
    }
    !allowed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpuid::{CpuidConfig, HypervisorLeaves};
    use vmx::caps::Capabilities;
    use vmx::controls::{compute_controls, ControlRequest};

    /// A host with everything of the table: Skylake-SP-like, plus LA57, UMIP, PKU, CET, PKS,
    /// KL, UINTR, RDPID, XSAVES and the SMX/VMX bits.
    fn rich_host(leaf: u32, sub: u32) -> [u32; 4] {
        match (leaf, sub) {
            (0, _) => [0xd, 0x756e_6547, 0x6c65_746e, 0x4965_6e69],
            (1, _) => [
                0x50654,
                0x0010_0800,
                0xfffa_3223 | (1 << 26) | (1 << 28),
                0xbfeb_fbff,
            ],
            (7, 0) => [0, 0xffff_ffff, 0xffff_ffff, 0xffff_ffff],
            (0xd, 0) => [0x2e7, 0x340, 0xa88, 0],
            (0xd, 1) => [0xf, 0, 0, 0],
            (0xd, 2) => [0x100, 0x240, 0, 0],
            (0xd, 5) => [0x40, 0x440, 0, 0],
            (0xd, 6) => [0x200, 0x480, 0, 0],
            (0xd, 7) => [0x400, 0x680, 0, 0],
            (0xd, 9) => [0x8, 0xa80, 0, 0],
            (0x8000_0000, _) => [0x8000_0008, 0, 0, 0],
            (0x8000_0001, _) => [0, 0, 0x121, 0x2c10_0800],
            (0x8000_0008, _) => [0x3027, 0, 0, 0],
            _ => [0; 4],
        }
    }

    /// A Westmere-like host: no leaf 7 features, no XSAVE, RDTSCP.
    fn old_host(leaf: u32, sub: u32) -> [u32; 4] {
        match (leaf, sub) {
            (0, _) => [0xb, 0x756e_6547, 0x6c65_746e, 0x4965_6e69],
            (1, _) => [0x20655, 0x0010_0800, 0x029e_e3ff, 0xbfeb_fbff],
            (0x8000_0000, _) => [0x8000_0008, 0, 0, 0],
            (0x8000_0001, _) => [0, 0, 0x1, 0x2c10_0800],
            _ => [0; 4],
        }
    }

    fn hv() -> HypervisorLeaves<'static> {
        HypervisorLeaves {
            max_leaf: 0x4000_0000,
            signature: *b"BulkheadHV\0\0",
            leaves: &[],
        }
    }

    /// For every Bochs model's capabilities, both hosts and XSAVE/INVPCID offered or not:
    /// a feature CPUID offers is usable (its control is set in the computed controls, or its
    /// CR4 bit is neither reserved for the guest nor refused by CR4_FIXED1), and a hidden one
    /// is not (control 0, CR4 bit reserved).
    #[test]
    fn hidden_means_unusable_and_offered_means_usable() {
        let models = [
            vmx::fixtures::arrandale(),
            vmx::fixtures::skylake_x(),
            vmx::fixtures::tigerlake(),
        ];
        let hosts: [fn(u32, u32) -> [u32; 4]; 2] = [rich_host, old_host];
        let mut checked = 0;
        for raw in models {
            let caps = Capabilities::decode(&raw);
            for host in hosts {
                for (xsave, invpcid) in [(true, true), (false, false), (true, false)] {
                    let mut cfg = CpuidConfig::new(hv());
                    cfg.xsave = xsave;
                    cfg.invpcid = invpcid;
                    cfg.secondary_allowed =
                        SecondaryControls::from_bits_retain(caps.secondary.may_be_one);
                    cfg.cr4_allowed = caps.cr4_fixed.may_be_one;
                    let policy = CpuidPolicy::from_host(host, &cfg);
                    let mut request = ControlRequest::unrestricted_ept();
                    request.secondary.required |= secondary_controls(&policy);
                    let set = compute_controls(&caps, &request)
                        .expect("the controls for offered features are available");
                    let reserved = cr4_guest_reserved(&policy);
                    for f in FEATURES {
                        let on = offered(&policy, f.cpuid);
                        // Controls shared by two features (RDTSCP and RDPID) make an
                        // instruction usable only where the CPU has it too.
                        let host_has = host(f.cpuid.leaf, f.cpuid.subleaf)[f.cpuid.reg as usize]
                            & (1 << f.cpuid.bit)
                            != 0;
                        let usable = match f.gate {
                            Gate::Control(c) => set.secondary.contains(c) && host_has,
                            Gate::Cr4(bit) => {
                                reserved & bit == 0 && caps.cr4_fixed.may_be_one & bit != 0
                            }
                        };
                        assert_eq!(
                            on, usable,
                            "{}: offered {on}, usable {usable} (xsave {xsave}, invpcid {invpcid})",
                            f.name
                        );
                        checked += 1;
                    }
                    // Never offered: VMX, SMX, XSAVES; INVPCID only when asked for.
                    for name in ["VMX", "SMX", "XSAVES"] {
                        let f = FEATURES.iter().find(|f| f.name == name).unwrap();
                        assert!(!offered(&policy, f.cpuid), "{name}");
                    }
                    let inv = FEATURES.iter().find(|f| f.name == "INVPCID").unwrap();
                    if !invpcid {
                        assert!(!offered(&policy, inv.cpuid));
                        assert!(!set.secondary.contains(SecondaryControls::ENABLE_INVPCID));
                    }
                    let osx = FEATURES.iter().find(|f| f.name == "XSAVE").unwrap();
                    if !xsave {
                        assert!(!offered(&policy, osx.cpuid));
                        assert_ne!(reserved & (1 << 18), 0, "CR4.OSXSAVE reserved");
                    }
                }
            }
        }
        assert_eq!(checked, 3 * 2 * 3 * FEATURES.len());
    }

    #[test]
    fn a_rich_host_on_skylake_offers_invpcid_rdtscp_and_osxsave() {
        let caps = Capabilities::decode(&vmx::fixtures::skylake_x());
        let mut cfg = CpuidConfig::new(hv());
        cfg.invpcid = true;
        cfg.secondary_allowed = SecondaryControls::from_bits_retain(caps.secondary.may_be_one);
        cfg.cr4_allowed = caps.cr4_fixed.may_be_one;
        let policy = CpuidPolicy::from_host(rich_host, &cfg);
        let c = secondary_controls(&policy);
        assert!(c.contains(SecondaryControls::ENABLE_INVPCID | SecondaryControls::ENABLE_RDTSCP));
        assert!(!c.contains(SecondaryControls::ENABLE_XSAVES_XRSTORS));
        let reserved = cr4_guest_reserved(&policy);
        assert_eq!(reserved & (1 << 18), 0, "OSXSAVE allowed");
        assert_ne!(reserved & (1 << 13), 0, "VMXE reserved");
        assert_ne!(reserved & (1 << 14), 0, "SMXE reserved");
        assert_ne!(reserved & (1 << 15), 0, "bit 15 is reserved");
    }
}
