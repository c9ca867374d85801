//! Model-specific register numbers used by a VMX hypervisor.
//!
//! The architectural MSRs are listed in SDM Vol. 4 Chapter 2 (Table 2-2, "IA-32 Architectural
//! MSRs"); the VMX capability MSRs are described in SDM Vol. 3D Appendix A.

use core::fmt;

/// A model-specific register number, as passed in ECX to `rdmsr`/`wrmsr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Msr(pub u32);

macro_rules! named_msrs {
    ($( $(#[$meta:meta])* $name:ident = $value:literal; )*) => {
        impl Msr {
            $( $(#[$meta])* pub const $name: Msr = Msr($value); )*

            /// Every MSR that has a name in this crate.
            pub const NAMED: &'static [Msr] = &[$(Msr::$name,)*];

            /// The architectural name of this MSR, if this crate knows it.
            pub const fn name(self) -> Option<&'static str> {
                match self.0 {
                    $( $value => Some(stringify!($name)), )*
                    _ => None,
                }
            }
        }
    };
}

named_msrs! {
    /// Time-stamp counter (SDM Vol. 4 Table 2-2).
    IA32_TIME_STAMP_COUNTER = 0x10;
    /// Platform ID.
    IA32_PLATFORM_ID = 0x17;
    /// Local APIC base address and enable bits.
    IA32_APIC_BASE = 0x1b;
    /// Feature control: VMX enable and lock bits (SDM Vol. 3C §24.7).
    IA32_FEATURE_CONTROL = 0x3a;
    /// TSC adjust.
    IA32_TSC_ADJUST = 0x3b;
    /// Speculation control.
    IA32_SPEC_CTRL = 0x48;
    /// Prediction command (write-only).
    IA32_PRED_CMD = 0x49;
    /// SMBASE (readable in SMM only).
    IA32_SMBASE = 0x9e;
    /// Microcode update trigger.
    IA32_BIOS_UPDT_TRIG = 0x79;
    /// Microcode update signature.
    IA32_BIOS_SIGN_ID = 0x8b;
    /// General-purpose performance counter 0.
    IA32_PMC0 = 0xc1;
    /// UMWAIT control.
    IA32_UMWAIT_CONTROL = 0xe1;
    /// Maximum-performance frequency clock count.
    IA32_MPERF = 0xe7;
    /// Actual-performance frequency clock count.
    IA32_APERF = 0xe8;
    /// MTRR capabilities.
    IA32_MTRRCAP = 0xfe;
    /// Enumeration of architectural features (speculative-execution mitigations).
    IA32_ARCH_CAPABILITIES = 0x10a;
    /// L1D flush command (write-only).
    IA32_FLUSH_CMD = 0x10b;
    /// SYSENTER target code segment.
    IA32_SYSENTER_CS = 0x174;
    /// SYSENTER target stack pointer.
    IA32_SYSENTER_ESP = 0x175;
    /// SYSENTER target instruction pointer.
    IA32_SYSENTER_EIP = 0x176;
    /// Machine-check global capabilities.
    IA32_MCG_CAP = 0x179;
    /// Machine-check global status.
    IA32_MCG_STATUS = 0x17a;
    /// Performance event select 0.
    IA32_PERFEVTSEL0 = 0x186;
    /// Performance status.
    IA32_PERF_STATUS = 0x198;
    /// Performance control.
    IA32_PERF_CTL = 0x199;
    /// Clock modulation.
    IA32_CLOCK_MODULATION = 0x19a;
    /// Thermal interrupt control.
    IA32_THERM_INTERRUPT = 0x19b;
    /// Thermal status.
    IA32_THERM_STATUS = 0x19c;
    /// Miscellaneous feature enables.
    IA32_MISC_ENABLE = 0x1a0;
    /// Debug control (LBR, BTF, ...).
    IA32_DEBUGCTL = 0x1d9;
    /// Variable-range MTRR base 0.
    IA32_MTRR_PHYSBASE0 = 0x200;
    /// Variable-range MTRR mask 0.
    IA32_MTRR_PHYSMASK0 = 0x201;
    /// Fixed-range MTRR 0x00000-0x7FFFF.
    IA32_MTRR_FIX64K_00000 = 0x250;
    /// Fixed-range MTRR 0x80000-0x9FFFF.
    IA32_MTRR_FIX16K_80000 = 0x258;
    /// Fixed-range MTRR 0xA0000-0xBFFFF.
    IA32_MTRR_FIX16K_A0000 = 0x259;
    /// Fixed-range MTRR 0xC0000-0xC7FFF (the 4K ranges continue up to 0x26f).
    IA32_MTRR_FIX4K_C0000 = 0x268;
    /// Fixed-range MTRR 0xF8000-0xFFFFF.
    IA32_MTRR_FIX4K_F8000 = 0x26f;
    /// Page attribute table.
    IA32_PAT = 0x277;
    /// MTRR default type.
    IA32_MTRR_DEF_TYPE = 0x2ff;
    /// Fixed-function performance counter control.
    IA32_FIXED_CTR_CTRL = 0x38d;
    /// Global performance counter status.
    IA32_PERF_GLOBAL_STATUS = 0x38e;
    /// Global performance counter control.
    IA32_PERF_GLOBAL_CTRL = 0x38f;
    /// Machine-check bank 0 control.
    IA32_MC0_CTL = 0x400;
    /// Basic VMX information (SDM Vol. 3D Appendix A.1).
    IA32_VMX_BASIC = 0x480;
    /// Capability of pin-based VM-execution controls (SDM Vol. 3D Appendix A.3.1).
    IA32_VMX_PINBASED_CTLS = 0x481;
    /// Capability of primary processor-based VM-execution controls (SDM Vol. 3D Appendix A.3.2).
    IA32_VMX_PROCBASED_CTLS = 0x482;
    /// Capability of VM-exit controls (SDM Vol. 3D Appendix A.4).
    IA32_VMX_EXIT_CTLS = 0x483;
    /// Capability of VM-entry controls (SDM Vol. 3D Appendix A.5).
    IA32_VMX_ENTRY_CTLS = 0x484;
    /// Miscellaneous VMX data (SDM Vol. 3D Appendix A.6).
    IA32_VMX_MISC = 0x485;
    /// CR0 bits fixed to 1 in VMX operation (SDM Vol. 3D Appendix A.7).
    IA32_VMX_CR0_FIXED0 = 0x486;
    /// CR0 bits allowed to be 1 in VMX operation (SDM Vol. 3D Appendix A.7).
    IA32_VMX_CR0_FIXED1 = 0x487;
    /// CR4 bits fixed to 1 in VMX operation (SDM Vol. 3D Appendix A.8).
    IA32_VMX_CR4_FIXED0 = 0x488;
    /// CR4 bits allowed to be 1 in VMX operation (SDM Vol. 3D Appendix A.8).
    IA32_VMX_CR4_FIXED1 = 0x489;
    /// Highest VMCS field index (SDM Vol. 3D Appendix A.9).
    IA32_VMX_VMCS_ENUM = 0x48a;
    /// Capability of secondary processor-based controls (SDM Vol. 3D Appendix A.3.3).
    IA32_VMX_PROCBASED_CTLS2 = 0x48b;
    /// EPT and VPID capabilities (SDM Vol. 3D Appendix A.10).
    IA32_VMX_EPT_VPID_CAP = 0x48c;
    /// TRUE capability of pin-based controls (SDM Vol. 3D Appendix A.3.1).
    IA32_VMX_TRUE_PINBASED_CTLS = 0x48d;
    /// TRUE capability of primary processor-based controls (SDM Vol. 3D Appendix A.3.2).
    IA32_VMX_TRUE_PROCBASED_CTLS = 0x48e;
    /// TRUE capability of VM-exit controls (SDM Vol. 3D Appendix A.4).
    IA32_VMX_TRUE_EXIT_CTLS = 0x48f;
    /// TRUE capability of VM-entry controls (SDM Vol. 3D Appendix A.5).
    IA32_VMX_TRUE_ENTRY_CTLS = 0x490;
    /// Supported VM functions (SDM Vol. 3D Appendix A.11).
    IA32_VMX_VMFUNC = 0x491;
    /// Capability of tertiary processor-based controls (SDM Vol. 3D Appendix A.3.4).
    IA32_VMX_PROCBASED_CTLS3 = 0x492;
    /// Capability of secondary VM-exit controls (SDM Vol. 3D Appendix A.4.2).
    IA32_VMX_EXIT_CTLS2 = 0x493;
    /// Intel PT trace control.
    IA32_RTIT_CTL = 0x570;
    /// User-mode CET configuration.
    IA32_U_CET = 0x6a0;
    /// Supervisor-mode CET configuration.
    IA32_S_CET = 0x6a2;
    /// Interrupt SSP table address.
    IA32_INTERRUPT_SSP_TABLE_ADDR = 0x6a8;
    /// TSC-deadline timer target.
    IA32_TSC_DEADLINE = 0x6e0;
    /// Supervisor protection keys.
    IA32_PKRS = 0x6e1;
    /// Hardware P-states enable.
    IA32_PM_ENABLE = 0x770;
    /// x2APIC ID (the x2APIC range is 0x800-0x8ff).
    IA32_X2APIC_APICID = 0x802;
    /// x2APIC version.
    IA32_X2APIC_VERSION = 0x803;
    /// x2APIC task priority.
    IA32_X2APIC_TPR = 0x808;
    /// x2APIC end of interrupt.
    IA32_X2APIC_EOI = 0x80b;
    /// x2APIC logical destination.
    IA32_X2APIC_LDR = 0x80d;
    /// x2APIC spurious-interrupt vector.
    IA32_X2APIC_SIVR = 0x80f;
    /// x2APIC interrupt command.
    IA32_X2APIC_ICR = 0x830;
    /// x2APIC LVT timer.
    IA32_X2APIC_LVT_TIMER = 0x832;
    /// x2APIC timer initial count.
    IA32_X2APIC_INIT_COUNT = 0x838;
    /// x2APIC timer current count.
    IA32_X2APIC_CUR_COUNT = 0x839;
    /// x2APIC timer divide configuration.
    IA32_X2APIC_DIV_CONF = 0x83e;
    /// x2APIC self IPI.
    IA32_X2APIC_SELF_IPI = 0x83f;
    /// Bounds-register configuration (MPX).
    IA32_BNDCFGS = 0xd90;
    /// Supervisor state components enabled in XSS.
    IA32_XSS = 0xda0;
    /// Extended feature enables (SCE, LME, LMA, NXE).
    IA32_EFER = 0xc000_0080;
    /// SYSCALL target segments.
    IA32_STAR = 0xc000_0081;
    /// 64-bit SYSCALL target RIP.
    IA32_LSTAR = 0xc000_0082;
    /// Compatibility-mode SYSCALL target RIP.
    IA32_CSTAR = 0xc000_0083;
    /// SYSCALL RFLAGS mask (also known as SFMASK).
    IA32_FMASK = 0xc000_0084;
    /// FS base.
    IA32_FS_BASE = 0xc000_0100;
    /// GS base.
    IA32_GS_BASE = 0xc000_0101;
    /// GS base swapped in by SWAPGS.
    IA32_KERNEL_GS_BASE = 0xc000_0102;
    /// Auxiliary TSC value returned by RDTSCP/RDPID.
    IA32_TSC_AUX = 0xc000_0103;
}

impl Msr {
    /// Alias of [`Msr::IA32_FMASK`] (the SYSCALL flag mask, often called SFMASK).
    pub const IA32_SFMASK: Msr = Msr::IA32_FMASK;

    /// First MSR of the x2APIC register range (SDM Vol. 3A §11.12.1).
    pub const X2APIC_FIRST: Msr = Msr(0x800);
    /// Last MSR of the x2APIC register range (SDM Vol. 3A §11.12.1).
    pub const X2APIC_LAST: Msr = Msr(0x8ff);

    /// Last MSR number of the "low" half covered by the MSR bitmap (SDM Vol. 3C §25.6.9).
    pub const BITMAP_LOW_LAST: u32 = 0x1fff;
    /// First MSR number of the "high" half covered by the MSR bitmap (SDM Vol. 3C §25.6.9).
    pub const BITMAP_HIGH_FIRST: u32 = 0xc000_0000;
    /// Last MSR number of the "high" half covered by the MSR bitmap (SDM Vol. 3C §25.6.9).
    pub const BITMAP_HIGH_LAST: u32 = 0xc000_1fff;

    /// Whether this MSR lies in the x2APIC register range.
    pub const fn is_x2apic(self) -> bool {
        self.0 >= Self::X2APIC_FIRST.0 && self.0 <= Self::X2APIC_LAST.0
    }

    /// Whether the MSR bitmap can control accesses to this MSR; accesses to MSRs outside the two
    /// covered ranges always cause VM exits when MSR bitmaps are used (SDM Vol. 3C §26.1.3).
    pub const fn in_msr_bitmap_range(self) -> bool {
        self.0 <= Self::BITMAP_LOW_LAST
            || (self.0 >= Self::BITMAP_HIGH_FIRST && self.0 <= Self::BITMAP_HIGH_LAST)
    }
}

impl fmt::Display for Msr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{name} ({:#x})", self.0),
            None => write!(f, "MSR {:#x}", self.0),
        }
    }
}

bitflags::bitflags! {
    /// IA32_FEATURE_CONTROL bits (SDM Vol. 3C §24.7; SDM Vol. 4 Table 2-2).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct FeatureControl: u64 {
        /// Lock bit: once set, WRMSR to IA32_FEATURE_CONTROL raises #GP until reset.
        const LOCK = 1 << 0;
        /// VMXON allowed inside SMX operation.
        const VMX_INSIDE_SMX = 1 << 1;
        /// VMXON allowed outside SMX operation.
        const VMX_OUTSIDE_SMX = 1 << 2;
        /// SENTER global enable.
        const SENTER_GLOBAL_ENABLE = 1 << 15;
        /// SGX launch control enable.
        const SGX_LAUNCH_CONTROL_ENABLE = 1 << 17;
        /// SGX global enable.
        const SGX_GLOBAL_ENABLE = 1 << 18;
        /// Local machine-check exceptions enable.
        const LMCE_ON = 1 << 20;
    }
}

/// Why VMXON cannot be executed according to IA32_FEATURE_CONTROL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeatureControlError {
    /// The register is locked with "enable VMX outside SMX" clear: VMXON raises #GP.
    VmxDisabledByFirmware,
}

impl fmt::Display for FeatureControlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::VmxDisabledByFirmware => f.write_str(
                "VMX is disabled by firmware: IA32_FEATURE_CONTROL (0x3a) is locked with \
                 'enable VMX outside SMX' clear; enable Intel VT-x in the firmware setup \
                 (or, under Bochs/QEMU, use a CPU model with VMX) and reboot",
            ),
        }
    }
}

impl FeatureControl {
    /// Decides how to make VMXON (outside SMX) legal (SDM Vol. 3C §24.7).
    ///
    /// Returns `Ok(None)` if nothing needs to be written, `Ok(Some(value))` with the value to
    /// write (lock set, VMX outside SMX enabled, other bits preserved) if the register is still
    /// unlocked, or an error if firmware locked VMX off.
    pub fn vmx_enable_plan(self) -> Result<Option<FeatureControl>, FeatureControlError> {
        let locked = self.contains(Self::LOCK);
        let enabled = self.contains(Self::VMX_OUTSIDE_SMX);
        match (locked, enabled) {
            (true, true) => Ok(None),
            (true, false) => Err(FeatureControlError::VmxDisabledByFirmware),
            (false, _) => Ok(Some(self | Self::LOCK | Self::VMX_OUTSIDE_SMX)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vmx_msr_numbers() {
        assert_eq!(Msr::IA32_FEATURE_CONTROL, Msr(0x3a));
        assert_eq!(Msr::IA32_VMX_BASIC, Msr(0x480));
        assert_eq!(Msr::IA32_VMX_VMCS_ENUM, Msr(0x48a));
        assert_eq!(Msr::IA32_VMX_TRUE_PINBASED_CTLS, Msr(0x48d));
        assert_eq!(Msr::IA32_VMX_TRUE_ENTRY_CTLS, Msr(0x490));
        assert_eq!(Msr::IA32_VMX_VMFUNC, Msr(0x491));
        assert_eq!(Msr::IA32_SFMASK, Msr(0xc000_0084));
    }

    #[test]
    fn names_are_unique_and_display() {
        for (i, a) in Msr::NAMED.iter().enumerate() {
            for b in &Msr::NAMED[i + 1..] {
                assert_ne!(a, b, "duplicate MSR number {a}");
            }
        }
        assert_eq!(
            std::format!("{}", Msr::IA32_VMX_BASIC),
            "IA32_VMX_BASIC (0x480)"
        );
        assert_eq!(std::format!("{}", Msr(0x1234)), "MSR 0x1234");
    }

    #[test]
    fn ranges() {
        assert!(Msr::IA32_X2APIC_EOI.is_x2apic());
        assert!(!Msr::IA32_EFER.is_x2apic());
        assert!(Msr::IA32_EFER.in_msr_bitmap_range());
        assert!(Msr::IA32_PAT.in_msr_bitmap_range());
        assert!(!Msr(0x4000_0000).in_msr_bitmap_range());
    }

    #[test]
    fn feature_control_plan() {
        let locked_on = FeatureControl::LOCK | FeatureControl::VMX_OUTSIDE_SMX;
        assert_eq!(locked_on.vmx_enable_plan(), Ok(None));
        assert_eq!(
            FeatureControl::LOCK.vmx_enable_plan(),
            Err(FeatureControlError::VmxDisabledByFirmware)
        );
        assert_eq!(
            FeatureControl::empty().vmx_enable_plan(),
            Ok(Some(locked_on))
        );
        let unknown = FeatureControl::from_bits_retain(1 << 40);
        assert_eq!(unknown.vmx_enable_plan(), Ok(Some(unknown | locked_on)));
    }
}
