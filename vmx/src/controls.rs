//! VM-execution, VM-exit and VM-entry controls, and their computation from the capability MSRs.
//!
//! The control bits are defined in SDM Vol. 3C §25.6.1 (pin-based), §25.6.2 (processor-based),
//! §25.7.1 (VM-exit) and §25.8.1 (VM-entry); the allowed settings in SDM Vol. 3D Appendix A.2-A.5.

use core::fmt;

use crate::caps::Capabilities;
use crate::fields::VmcsField;
use crate::msr::Msr;

/// The five 32-bit control fields this crate computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ControlKind {
    /// Pin-based VM-execution controls (SDM Vol. 3C §25.6.1).
    PinBased,
    /// Primary processor-based VM-execution controls (SDM Vol. 3C §25.6.2, Table 25-6).
    PrimaryProcBased,
    /// Secondary processor-based VM-execution controls (SDM Vol. 3C §25.6.2, Table 25-7).
    SecondaryProcBased,
    /// VM-exit controls (SDM Vol. 3C §25.7.1).
    Exit,
    /// VM-entry controls (SDM Vol. 3C §25.8.1).
    Entry,
}

impl ControlKind {
    /// The capability MSR reporting the allowed settings of these controls: the TRUE_* MSR when
    /// `true_controls` (`IA32_VMX_BASIC[55]`) is set and one exists (SDM Vol. 3D Appendix A.2).
    pub const fn capability_msr(self, true_controls: bool) -> Msr {
        match (self, true_controls) {
            (Self::PinBased, false) => Msr::IA32_VMX_PINBASED_CTLS,
            (Self::PinBased, true) => Msr::IA32_VMX_TRUE_PINBASED_CTLS,
            (Self::PrimaryProcBased, false) => Msr::IA32_VMX_PROCBASED_CTLS,
            (Self::PrimaryProcBased, true) => Msr::IA32_VMX_TRUE_PROCBASED_CTLS,
            // SDM Vol. 3D Appendix A.3.3: there is no TRUE MSR for the secondary controls.
            (Self::SecondaryProcBased, _) => Msr::IA32_VMX_PROCBASED_CTLS2,
            (Self::Exit, false) => Msr::IA32_VMX_EXIT_CTLS,
            (Self::Exit, true) => Msr::IA32_VMX_TRUE_EXIT_CTLS,
            (Self::Entry, false) => Msr::IA32_VMX_ENTRY_CTLS,
            (Self::Entry, true) => Msr::IA32_VMX_TRUE_ENTRY_CTLS,
        }
    }

    /// Human-readable name of the control field.
    pub const fn description(self) -> &'static str {
        match self {
            Self::PinBased => "pin-based VM-execution control",
            Self::PrimaryProcBased => "primary processor-based VM-execution control",
            Self::SecondaryProcBased => "secondary processor-based VM-execution control",
            Self::Exit => "VM-exit control",
            Self::Entry => "VM-entry control",
        }
    }

    /// The SDM name of a bit of this control field, if it is defined.
    pub fn bit_name(self, bit: u32) -> Option<&'static str> {
        match self {
            Self::PinBased => PinBasedControls::bit_name(bit),
            Self::PrimaryProcBased => PrimaryControls::bit_name(bit),
            Self::SecondaryProcBased => SecondaryControls::bit_name(bit),
            Self::Exit => ExitControls::bit_name(bit),
            Self::Entry => EntryControls::bit_name(bit),
        }
    }
}

impl fmt::Display for ControlKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.description())
    }
}

/// Common interface of the control bitflags types.
pub trait ControlFlags: Copy + fmt::Debug {
    /// Which control field these flags belong to.
    const KIND: ControlKind;
    /// Raw 32-bit value (including bits without a name, such as default1 bits).
    fn to_raw(self) -> u32;
    /// From a raw 32-bit value, keeping every bit.
    fn from_raw(raw: u32) -> Self;
}

macro_rules! control_flags {
    (
        $(#[$($meta:tt)*])*
        $name:ident: $kind:expr;
        $( $(#[$($fmeta:tt)*])* $flag:ident = $bit:literal => $text:literal; )*
    ) => {
        bitflags::bitflags! {
            $(#[$($meta)*])*
            #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
            pub struct $name: u32 {
                $( $(#[$($fmeta)*])* const $flag = 1 << $bit; )*
            }
        }

        impl $name {
            /// The SDM name of bit `bit`, if it is defined.
            pub const fn bit_name(bit: u32) -> Option<&'static str> {
                match bit {
                    $( $bit => Some($text), )*
                    _ => None,
                }
            }
        }

        impl ControlFlags for $name {
            const KIND: ControlKind = $kind;
            fn to_raw(self) -> u32 {
                self.bits()
            }
            fn from_raw(raw: u32) -> Self {
                Self::from_bits_retain(raw)
            }
        }
    };
}

control_flags! {
    /// Pin-based VM-execution controls (SDM Vol. 3C §25.6.1, Table 25-5).
    PinBasedControls: ControlKind::PinBased;
    /// External interrupts cause VM exits.
    EXTERNAL_INTERRUPT_EXITING = 0 => "external-interrupt exiting";
    /// NMIs cause VM exits.
    NMI_EXITING = 3 => "NMI exiting";
    /// NMIs are never blocked and virtual-NMI blocking is tracked.
    VIRTUAL_NMIS = 5 => "virtual NMIs";
    /// The VMX-preemption timer counts down in VMX non-root operation.
    ACTIVATE_VMX_PREEMPTION_TIMER = 6 => "activate VMX-preemption timer";
    /// Interrupts with the posted-interrupt notification vector are processed specially.
    PROCESS_POSTED_INTERRUPTS = 7 => "process posted interrupts";
}

control_flags! {
    /// Primary processor-based VM-execution controls (SDM Vol. 3C §25.6.2, Table 25-6).
    PrimaryControls: ControlKind::PrimaryProcBased;
    /// VM exit at the beginning of any instruction if RFLAGS.IF = 1 and no blocking.
    INTERRUPT_WINDOW_EXITING = 2 => "interrupt-window exiting";
    /// RDTSC/RDTSCP/RDMSR(TSC) return the TSC plus the TSC offset.
    USE_TSC_OFFSETTING = 3 => "use TSC offsetting";
    /// HLT causes VM exits.
    HLT_EXITING = 7 => "HLT exiting";
    /// INVLPG causes VM exits.
    INVLPG_EXITING = 9 => "INVLPG exiting";
    /// MWAIT causes VM exits.
    MWAIT_EXITING = 10 => "MWAIT exiting";
    /// RDPMC causes VM exits.
    RDPMC_EXITING = 11 => "RDPMC exiting";
    /// RDTSC/RDTSCP cause VM exits.
    RDTSC_EXITING = 12 => "RDTSC exiting";
    /// MOV to CR3 causes VM exits (subject to the CR3-target values).
    CR3_LOAD_EXITING = 15 => "CR3-load exiting";
    /// MOV from CR3 causes VM exits.
    CR3_STORE_EXITING = 16 => "CR3-store exiting";
    /// The tertiary processor-based controls are used.
    ACTIVATE_TERTIARY_CONTROLS = 17 => "activate tertiary controls";
    /// MOV to CR8 causes VM exits.
    CR8_LOAD_EXITING = 19 => "CR8-load exiting";
    /// MOV from CR8 causes VM exits.
    CR8_STORE_EXITING = 20 => "CR8-store exiting";
    /// TPR virtualization through the virtual-APIC page.
    USE_TPR_SHADOW = 21 => "use TPR shadow";
    /// VM exit at the beginning of any instruction if there is no virtual-NMI blocking.
    NMI_WINDOW_EXITING = 22 => "NMI-window exiting";
    /// MOV DR causes VM exits.
    MOV_DR_EXITING = 23 => "MOV-DR exiting";
    /// Every I/O instruction causes a VM exit (ignored when I/O bitmaps are used).
    UNCONDITIONAL_IO_EXITING = 24 => "unconditional I/O exiting";
    /// The I/O bitmaps decide which I/O instructions cause VM exits.
    USE_IO_BITMAPS = 25 => "use I/O bitmaps";
    /// Monitor trap flag debugging feature.
    MONITOR_TRAP_FLAG = 27 => "monitor trap flag";
    /// The MSR bitmaps decide which RDMSR/WRMSR cause VM exits.
    USE_MSR_BITMAPS = 28 => "use MSR bitmaps";
    /// MONITOR causes VM exits.
    MONITOR_EXITING = 29 => "MONITOR exiting";
    /// PAUSE causes VM exits.
    PAUSE_EXITING = 30 => "PAUSE exiting";
    /// The secondary processor-based controls are used.
    ACTIVATE_SECONDARY_CONTROLS = 31 => "activate secondary controls";
}

control_flags! {
    /// Secondary processor-based VM-execution controls (SDM Vol. 3C §25.6.2, Table 25-7).
    SecondaryControls: ControlKind::SecondaryProcBased;
    /// Accesses to the APIC-access page are treated specially.
    VIRTUALIZE_APIC_ACCESSES = 0 => "virtualize APIC accesses";
    /// Extended page tables.
    ENABLE_EPT = 1 => "enable EPT";
    /// LGDT/LIDT/LLDT/LTR/SGDT/SIDT/SLDT/STR cause VM exits.
    DESCRIPTOR_TABLE_EXITING = 2 => "descriptor-table exiting";
    /// RDTSCP does not raise #UD.
    ENABLE_RDTSCP = 3 => "enable RDTSCP";
    /// x2APIC MSR accesses to the TPR are virtualized.
    VIRTUALIZE_X2APIC_MODE = 4 => "virtualize x2APIC mode";
    /// Cached linear translations are tagged with a VPID.
    ENABLE_VPID = 5 => "enable VPID";
    /// WBINVD/WBNOINVD cause VM exits.
    WBINVD_EXITING = 6 => "WBINVD exiting";
    /// The guest may run in unpaged protected mode or real-address mode.
    UNRESTRICTED_GUEST = 7 => "unrestricted guest";
    /// Certain APIC register accesses are virtualized.
    APIC_REGISTER_VIRTUALIZATION = 8 => "APIC-register virtualization";
    /// Evaluation and delivery of pending virtual interrupts.
    VIRTUAL_INTERRUPT_DELIVERY = 9 => "virtual-interrupt delivery";
    /// Series of PAUSE instructions cause VM exits.
    PAUSE_LOOP_EXITING = 10 => "PAUSE-loop exiting";
    /// RDRAND causes VM exits.
    RDRAND_EXITING = 11 => "RDRAND exiting";
    /// INVPCID does not raise #UD.
    ENABLE_INVPCID = 12 => "enable INVPCID";
    /// VMFUNC does not raise #UD.
    ENABLE_VM_FUNCTIONS = 13 => "enable VM functions";
    /// VMREAD/VMWRITE in non-root operation may access a shadow VMCS.
    VMCS_SHADOWING = 14 => "VMCS shadowing";
    /// ENCLS consults the ENCLS-exiting bitmap.
    ENABLE_ENCLS_EXITING = 15 => "enable ENCLS exiting";
    /// RDSEED causes VM exits.
    RDSEED_EXITING = 16 => "RDSEED exiting";
    /// Page-modification logging.
    ENABLE_PML = 17 => "enable PML";
    /// EPT violations may cause virtualization exceptions (#VE).
    EPT_VIOLATION_VE = 18 => "EPT-violation #VE";
    /// Intel PT suppresses VMX-specific packets in non-root operation.
    CONCEAL_VMX_FROM_PT = 19 => "conceal VMX from PT";
    /// XSAVES/XRSTORS do not raise #UD.
    ENABLE_XSAVES_XRSTORS = 20 => "enable XSAVES/XRSTORS";
    /// EPT execute permissions are separate for supervisor and user linear addresses.
    MODE_BASED_EXECUTE_CONTROL_FOR_EPT = 22 => "mode-based execute control for EPT";
    /// EPT write permissions may be specified at 128-byte granularity.
    SUB_PAGE_WRITE_PERMISSIONS_FOR_EPT = 23 => "sub-page write permissions for EPT";
    /// Intel PT output addresses are guest-physical addresses.
    PT_USES_GUEST_PHYSICAL_ADDRESSES = 24 => "Intel PT uses guest physical addresses";
    /// The TSC multiplier applies to guest TSC reads.
    USE_TSC_SCALING = 25 => "use TSC scaling";
    /// TPAUSE/UMONITOR/UMWAIT do not raise #UD.
    ENABLE_USER_WAIT_AND_PAUSE = 26 => "enable user wait and pause";
    /// PCONFIG does not raise #UD.
    ENABLE_PCONFIG = 27 => "enable PCONFIG";
    /// ENCLV consults the ENCLV-exiting bitmap.
    ENABLE_ENCLV_EXITING = 28 => "enable ENCLV exiting";
    /// Bus locks cause VM exits.
    VMM_BUS_LOCK_DETECTION = 30 => "VMM bus-lock detection";
    /// A VM exit occurs if an instruction runs too long without an event window.
    INSTRUCTION_TIMEOUT = 31 => "instruction timeout";
}

control_flags! {
    /// VM-exit controls (SDM Vol. 3C §25.7.1, Table 25-13).
    ExitControls: ControlKind::Exit;
    /// DR7 and IA32_DEBUGCTL are saved on VM exit.
    SAVE_DEBUG_CONTROLS = 2 => "save debug controls";
    /// The host runs in 64-bit mode after VM exit.
    HOST_ADDRESS_SPACE_SIZE = 9 => "host address-space size";
    /// IA32_PERF_GLOBAL_CTRL is loaded on VM exit.
    LOAD_IA32_PERF_GLOBAL_CTRL = 12 => "load IA32_PERF_GLOBAL_CTRL";
    /// The interrupt controller is acknowledged on exits due to external interrupts.
    ACKNOWLEDGE_INTERRUPT_ON_EXIT = 15 => "acknowledge interrupt on exit";
    /// IA32_PAT is saved on VM exit.
    SAVE_IA32_PAT = 18 => "save IA32_PAT";
    /// IA32_PAT is loaded on VM exit.
    LOAD_IA32_PAT = 19 => "load IA32_PAT";
    /// IA32_EFER is saved on VM exit.
    SAVE_IA32_EFER = 20 => "save IA32_EFER";
    /// IA32_EFER is loaded on VM exit.
    LOAD_IA32_EFER = 21 => "load IA32_EFER";
    /// The VMX-preemption timer value is saved on VM exit.
    SAVE_VMX_PREEMPTION_TIMER_VALUE = 22 => "save VMX-preemption timer value";
    /// IA32_BNDCFGS is cleared on VM exit.
    CLEAR_IA32_BNDCFGS = 23 => "clear IA32_BNDCFGS";
    /// Intel PT does not produce a paging information packet on VM exit.
    CONCEAL_VMX_FROM_PT = 24 => "conceal VMX from PT";
    /// IA32_RTIT_CTL is cleared on VM exit.
    CLEAR_IA32_RTIT_CTL = 25 => "clear IA32_RTIT_CTL";
    /// IA32_LBR_CTL is cleared on VM exit.
    CLEAR_IA32_LBR_CTL = 26 => "clear IA32_LBR_CTL";
    /// UINV is cleared on VM exit.
    CLEAR_UINV = 27 => "clear UINV";
    /// CET state is loaded on VM exit.
    LOAD_CET_STATE = 28 => "load CET state";
    /// IA32_PKRS is loaded on VM exit.
    LOAD_PKRS = 29 => "load PKRS";
    /// IA32_PERF_GLOBAL_CTL is saved on VM exit.
    SAVE_IA32_PERF_GLOBAL_CTL = 30 => "save IA32_PERF_GLOBAL_CTL";
    /// The secondary VM-exit controls are used.
    ACTIVATE_SECONDARY_CONTROLS = 31 => "activate secondary controls";
}

control_flags! {
    /// VM-entry controls (SDM Vol. 3C §25.8.1, Table 25-15).
    EntryControls: ControlKind::Entry;
    /// DR7 and IA32_DEBUGCTL are loaded on VM entry.
    LOAD_DEBUG_CONTROLS = 2 => "load debug controls";
    /// The guest is in IA-32e mode after VM entry.
    IA32E_MODE_GUEST = 9 => "IA-32e mode guest";
    /// VM entry to SMM (dual-monitor treatment only).
    ENTRY_TO_SMM = 10 => "entry to SMM";
    /// Deactivate the dual-monitor treatment of SMIs and SMM.
    DEACTIVATE_DUAL_MONITOR_TREATMENT = 11 => "deactivate dual-monitor treatment";
    /// IA32_PERF_GLOBAL_CTRL is loaded on VM entry.
    LOAD_IA32_PERF_GLOBAL_CTRL = 13 => "load IA32_PERF_GLOBAL_CTRL";
    /// IA32_PAT is loaded on VM entry.
    LOAD_IA32_PAT = 14 => "load IA32_PAT";
    /// IA32_EFER is loaded on VM entry.
    LOAD_IA32_EFER = 15 => "load IA32_EFER";
    /// IA32_BNDCFGS is loaded on VM entry.
    LOAD_IA32_BNDCFGS = 16 => "load IA32_BNDCFGS";
    /// Intel PT does not produce a paging information packet on VM entry.
    CONCEAL_VMX_FROM_PT = 17 => "conceal VMX from PT";
    /// IA32_RTIT_CTL is loaded on VM entry.
    LOAD_IA32_RTIT_CTL = 18 => "load IA32_RTIT_CTL";
    /// UINV is loaded on VM entry.
    LOAD_UINV = 19 => "load UINV";
    /// CET state is loaded on VM entry.
    LOAD_CET_STATE = 20 => "load CET state";
    /// IA32_LBR_CTL is loaded on VM entry.
    LOAD_GUEST_IA32_LBR_CTL = 21 => "load guest IA32_LBR_CTL";
    /// IA32_PKRS is loaded on VM entry.
    LOAD_PKRS = 22 => "load PKRS";
}

/// Allowed settings of one control field as reported by a capability MSR
/// (SDM Vol. 3D Appendix A.3.1): bits 31:0 are the allowed 0-settings (a 1 means the control
/// must be 1) and bits 63:32 the allowed 1-settings (a 0 means the control must be 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct AllowedSettings {
    /// Controls that must be 1 (bits 31:0 of the MSR).
    pub must_be_one: u32,
    /// Controls that may be 1 (bits 63:32 of the MSR).
    pub may_be_one: u32,
}

impl AllowedSettings {
    /// Width of one half of a control capability MSR.
    const HALF_BITS: u32 = 32;

    /// Splits a capability MSR value into its two halves (SDM Vol. 3D Appendix A.3.1).
    pub const fn from_msr(value: u64) -> Self {
        Self {
            must_be_one: value as u32,
            may_be_one: (value >> Self::HALF_BITS) as u32,
        }
    }

    /// Joins the two halves back into the MSR layout (SDM Vol. 3D Appendix A.3.1).
    pub const fn to_msr(self) -> u64 {
        ((self.may_be_one as u64) << Self::HALF_BITS) | self.must_be_one as u64
    }

    /// No control may be 1 (used when a capability MSR does not exist).
    pub const NONE: Self = Self {
        must_be_one: 0,
        may_be_one: 0,
    };

    /// Whether every bit of `bits` may be set to 1.
    pub const fn allows(self, bits: u32) -> bool {
        bits & !self.may_be_one == 0
    }
}

/// Why [`adjust`] could not produce a legal control value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AdjustError {
    /// A required control is 0 in the allowed 1-settings (SDM Vol. 3D Appendix A.3).
    Unsupported {
        /// Lowest offending bit.
        bit: u32,
    },
    /// The MSR says a control must be 1 and must be 0 at once, so no value passes the VM-entry
    /// checks (SDM Vol. 3C §27.2.1.1).
    Inconsistent {
        /// Lowest offending bit.
        bit: u32,
    },
}

impl fmt::Display for AdjustError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unsupported { bit } => write!(
                f,
                "required control bit {bit} is not allowed to be 1 by the capability MSR; \
                 make it optional or use a processor that supports it"
            ),
            Self::Inconsistent { bit } => write!(
                f,
                "the capability MSR requires control bit {bit} to be both 0 and 1; the \
                 processor (or emulator) reports inconsistent VMX capabilities"
            ),
        }
    }
}

fn lowest_bit(bits: u32) -> u32 {
    bits.trailing_zeros()
}

/// Applies a control capability MSR to a requested control value (SDM Vol. 3D Appendix A.3.1).
///
/// The result is `(desired | required | must-be-1) & may-be-1`: optional controls the processor
/// lacks are dropped, default1 controls the MSR forces are added. Fails if a `required` control
/// may not be 1 or the MSR is self-contradictory.
pub fn adjust(cap_msr: u64, desired: u32, required: u32) -> Result<u32, AdjustError> {
    let allowed = AllowedSettings::from_msr(cap_msr);
    let unsupported = required & !allowed.may_be_one;
    if unsupported != 0 {
        return Err(AdjustError::Unsupported {
            bit: lowest_bit(unsupported),
        });
    }
    let inconsistent = allowed.must_be_one & !allowed.may_be_one;
    if inconsistent != 0 {
        return Err(AdjustError::Inconsistent {
            bit: lowest_bit(inconsistent),
        });
    }
    Ok((desired | required | allowed.must_be_one) & allowed.may_be_one)
}

/// Why [`compute_controls`] failed; Display tells the user what to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ControlError {
    /// A required control is not supported: its allowed-1 bit is 0 in `msr`.
    Unsupported {
        /// The control field.
        kind: ControlKind,
        /// Bit number within the field.
        bit: u32,
        /// SDM name of the control.
        control: &'static str,
        /// The capability MSR lacking the control.
        msr: Msr,
    },
    /// A required secondary control cannot be used because IA32_VMX_PROCBASED_CTLS does not
    /// allow "activate secondary controls", so IA32_VMX_PROCBASED_CTLS2 does not exist
    /// (SDM Vol. 3D Appendix A.3.3).
    SecondaryControlsUnavailable {
        /// Bit number within the secondary controls.
        bit: u32,
        /// SDM name of the control.
        control: &'static str,
    },
    /// The capability MSR reports a control as both must-be-1 and must-be-0.
    InconsistentCapability {
        /// The control field.
        kind: ControlKind,
        /// Bit number within the field.
        bit: u32,
        /// The capability MSR.
        msr: Msr,
    },
    /// A required control needs another control that is not set (SDM Vol. 3C §27.2.1.1).
    MissingDependency {
        /// Field of the required control.
        kind: ControlKind,
        /// SDM name of the required control.
        control: &'static str,
        /// Field of the control it depends on.
        requires_kind: ControlKind,
        /// SDM name of the control it depends on.
        requires: &'static str,
    },
}

fn name_or_unnamed(kind: ControlKind, bit: u32) -> &'static str {
    kind.bit_name(bit).unwrap_or("unnamed (reserved) control")
}

impl ControlError {
    fn from_adjust(kind: ControlKind, msr: Msr, err: AdjustError) -> Self {
        match err {
            AdjustError::Unsupported { bit } => Self::Unsupported {
                kind,
                bit,
                control: name_or_unnamed(kind, bit),
                msr,
            },
            AdjustError::Inconsistent { bit } => Self::InconsistentCapability { kind, bit, msr },
        }
    }

    /// The SDM name of the control that could not be set.
    pub fn control(&self) -> &'static str {
        match self {
            Self::Unsupported { control, .. }
            | Self::SecondaryControlsUnavailable { control, .. }
            | Self::MissingDependency { control, .. } => control,
            Self::InconsistentCapability { kind, bit, .. } => name_or_unnamed(*kind, *bit),
        }
    }

    /// The capability MSR that lacks the control, if one is to blame.
    pub fn msr(&self) -> Option<Msr> {
        match self {
            Self::Unsupported { msr, .. } | Self::InconsistentCapability { msr, .. } => Some(*msr),
            Self::SecondaryControlsUnavailable { .. } => Some(Msr::IA32_VMX_PROCBASED_CTLS2),
            Self::MissingDependency { .. } => None,
        }
    }
}

impl fmt::Display for ControlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unsupported {
                kind,
                bit,
                control,
                msr,
            } => write!(
                f,
                "this processor does not support the required {kind} \"{control}\" \
                 (bit {bit} of the allowed 1-settings in {msr} is 0); run on a processor or \
                 emulator CPU model that supports it, or make the feature optional"
            ),
            Self::SecondaryControlsUnavailable { bit, control } => write!(
                f,
                "this processor does not support the required secondary processor-based \
                 VM-execution control \"{control}\" (bit {bit}): IA32_VMX_PROCBASED_CTLS (0x482) \
                 does not allow \"activate secondary controls\", so {} does not exist; run on \
                 a processor or emulator CPU model with secondary controls, or make the feature \
                 optional",
                Msr::IA32_VMX_PROCBASED_CTLS2
            ),
            Self::InconsistentCapability { kind, bit, msr } => write!(
                f,
                "{msr} reports {kind} \"{}\" (bit {bit}) as both must-be-1 and must-be-0; the \
                 processor or emulator reports inconsistent VMX capabilities, update its \
                 firmware/emulator or pick another CPU model",
                name_or_unnamed(*kind, *bit)
            ),
            Self::MissingDependency {
                kind,
                control,
                requires_kind,
                requires,
            } => write!(
                f,
                "the required {kind} \"{control}\" needs the {requires_kind} \"{requires}\" \
                 (SDM Vol. 3C §27.2.1.1), which is neither requested nor available; request it \
                 as well or make \"{control}\" optional"
            ),
        }
    }
}

/// Required and optional bits of one control field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Requested<F> {
    /// Controls without which the hypervisor cannot run: missing ones are errors.
    pub required: F,
    /// Controls used when available, silently dropped otherwise.
    pub optional: F,
}

impl<F> Requested<F> {
    /// Builds a request.
    pub const fn new(required: F, optional: F) -> Self {
        Self { required, optional }
    }
}

/// Which controls the hypervisor requires or would like.
///
/// [`compute_controls`] sets "activate secondary controls" by itself when secondary controls are
/// requested; default1 controls are added from the capability MSRs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ControlRequest {
    /// Pin-based VM-execution controls.
    pub pin: Requested<PinBasedControls>,
    /// Primary processor-based VM-execution controls.
    pub primary: Requested<PrimaryControls>,
    /// Secondary processor-based VM-execution controls.
    pub secondary: Requested<SecondaryControls>,
    /// VM-exit controls.
    pub exit: Requested<ExitControls>,
    /// VM-entry controls.
    pub entry: Requested<EntryControls>,
}

impl ControlRequest {
    /// The request of a 64-bit host running guests with EPT and unrestricted guest: EPT,
    /// unrestricted guest, MSR and I/O bitmaps, external-interrupt and NMI exiting, a 64-bit
    /// host and EFER/PAT switching are required; VPID and the preemption timer are optional.
    /// The controls that enable instructions (RDTSCP, INVPCID, XSAVES) are left to the caller,
    /// who requires exactly those of the features its CPUID offers.
    pub fn unrestricted_ept() -> Self {
        Self {
            pin: Requested::new(
                PinBasedControls::EXTERNAL_INTERRUPT_EXITING | PinBasedControls::NMI_EXITING,
                PinBasedControls::ACTIVATE_VMX_PREEMPTION_TIMER,
            ),
            // CR8 (the TPR of the host's local APIC) and the instructions that read host
            // state (RDPMC: the host's performance counters) or change the physical CPU's
            // sleep state (MONITOR/MWAIT) always exit, so guests can neither observe nor
            // disturb the host or each other through them (SDM Vol. 3C §26.1.3).
            primary: Requested::new(
                PrimaryControls::HLT_EXITING
                    | PrimaryControls::USE_MSR_BITMAPS
                    | PrimaryControls::USE_IO_BITMAPS
                    | PrimaryControls::CR8_LOAD_EXITING
                    | PrimaryControls::CR8_STORE_EXITING
                    | PrimaryControls::RDPMC_EXITING
                    | PrimaryControls::MWAIT_EXITING
                    | PrimaryControls::MONITOR_EXITING,
                PrimaryControls::empty(),
            ),
            secondary: Requested::new(
                SecondaryControls::ENABLE_EPT | SecondaryControls::UNRESTRICTED_GUEST,
                // "Enable RDTSCP/INVPCID/XSAVES" follow the CPUID policy (vm::features): the
                // caller requires those of the features it offers; the rest stay 0 (#UD).
                SecondaryControls::ENABLE_VPID,
            ),
            // DR7 and IA32_DEBUGCTL travel through the VMCS: a VM exit would otherwise set
            // DR7 to 0x400 and lose the guest's breakpoints (SDM Vol. 3C §28.3.1, §27.3.2.1).
            exit: Requested::new(
                ExitControls::HOST_ADDRESS_SPACE_SIZE
                    | ExitControls::SAVE_DEBUG_CONTROLS
                    | ExitControls::ACKNOWLEDGE_INTERRUPT_ON_EXIT
                    | ExitControls::SAVE_IA32_EFER
                    | ExitControls::LOAD_IA32_EFER
                    | ExitControls::SAVE_IA32_PAT
                    | ExitControls::LOAD_IA32_PAT,
                ExitControls::SAVE_VMX_PREEMPTION_TIMER_VALUE,
            ),
            entry: Requested::new(
                EntryControls::LOAD_DEBUG_CONTROLS
                    | EntryControls::LOAD_IA32_EFER
                    | EntryControls::LOAD_IA32_PAT,
                EntryControls::empty(),
            ),
        }
    }
}

/// The computed control values, ready to be written to the VMCS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ControlSet {
    /// Pin-based VM-execution controls (may contain unnamed default1 bits).
    pub pin: PinBasedControls,
    /// Primary processor-based VM-execution controls.
    pub primary: PrimaryControls,
    /// Secondary processor-based VM-execution controls (empty unless activated in `primary`).
    pub secondary: SecondaryControls,
    /// VM-exit controls.
    pub exit: ExitControls,
    /// VM-entry controls.
    pub entry: EntryControls,
}

impl ControlSet {
    /// The VMCS control fields and values to write with VMWRITE (SDM Vol. 3D Appendix B.3.1).
    /// The secondary controls field is skipped unless "activate secondary controls" is set,
    /// since processors without secondary controls do not support that field.
    pub fn vmcs_writes(&self) -> impl Iterator<Item = (VmcsField, u64)> {
        let secondary = self
            .primary
            .contains(PrimaryControls::ACTIVATE_SECONDARY_CONTROLS)
            .then_some((
                VmcsField::SECONDARY_PROC_BASED_VM_EXEC_CONTROLS,
                u64::from(self.secondary.bits()),
            ));
        [
            Some((
                VmcsField::PIN_BASED_VM_EXEC_CONTROLS,
                u64::from(self.pin.bits()),
            )),
            Some((
                VmcsField::PRIMARY_PROC_BASED_VM_EXEC_CONTROLS,
                u64::from(self.primary.bits()),
            )),
            secondary,
            Some((VmcsField::VM_EXIT_CONTROLS, u64::from(self.exit.bits()))),
            Some((VmcsField::VM_ENTRY_CONTROLS, u64::from(self.entry.bits()))),
        ]
        .into_iter()
        .flatten()
    }
}

/// A control that the VM-entry checks only allow together with another one
/// (SDM Vol. 3C §27.2.1.1).
#[derive(Debug, Clone, Copy)]
enum Bit {
    Pin(PinBasedControls),
    Primary(PrimaryControls),
    Secondary(SecondaryControls),
    Exit(ExitControls),
}

impl Bit {
    fn kind(self) -> ControlKind {
        match self {
            Self::Pin(_) => ControlKind::PinBased,
            Self::Primary(_) => ControlKind::PrimaryProcBased,
            Self::Secondary(_) => ControlKind::SecondaryProcBased,
            Self::Exit(_) => ControlKind::Exit,
        }
    }

    fn raw(self) -> u32 {
        match self {
            Self::Pin(b) => b.bits(),
            Self::Primary(b) => b.bits(),
            Self::Secondary(b) => b.bits(),
            Self::Exit(b) => b.bits(),
        }
    }

    fn name(self) -> &'static str {
        name_or_unnamed(self.kind(), lowest_bit(self.raw()))
    }

    fn is_set(self, set: &ControlSet) -> bool {
        match self {
            Self::Pin(b) => set.pin.contains(b),
            Self::Primary(b) => set.primary.contains(b),
            Self::Secondary(b) => set.secondary.contains(b),
            Self::Exit(b) => set.exit.contains(b),
        }
    }

    fn is_required(self, req: &ControlRequest) -> bool {
        match self {
            Self::Pin(b) => req.pin.required.contains(b),
            Self::Primary(b) => req.primary.required.contains(b),
            Self::Secondary(b) => req.secondary.required.contains(b),
            Self::Exit(b) => req.exit.required.contains(b),
        }
    }

    fn clear(self, set: &mut ControlSet) {
        match self {
            Self::Pin(b) => set.pin.remove(b),
            Self::Primary(b) => set.primary.remove(b),
            Self::Secondary(b) => set.secondary.remove(b),
            Self::Exit(b) => set.exit.remove(b),
        }
    }
}

/// `(dependent, dependency)`: the dependent control may only be 1 if the dependency is 1.
/// SDM Vol. 3C §27.2.1.1 ("Checks on VM-Execution Control Fields").
const DEPENDENCIES: &[(Bit, Bit)] = &[
    (
        Bit::Pin(PinBasedControls::VIRTUAL_NMIS),
        Bit::Pin(PinBasedControls::NMI_EXITING),
    ),
    (
        Bit::Primary(PrimaryControls::NMI_WINDOW_EXITING),
        Bit::Pin(PinBasedControls::VIRTUAL_NMIS),
    ),
    (
        Bit::Secondary(SecondaryControls::UNRESTRICTED_GUEST),
        Bit::Secondary(SecondaryControls::ENABLE_EPT),
    ),
    (
        Bit::Secondary(SecondaryControls::ENABLE_PML),
        Bit::Secondary(SecondaryControls::ENABLE_EPT),
    ),
    (
        Bit::Secondary(SecondaryControls::MODE_BASED_EXECUTE_CONTROL_FOR_EPT),
        Bit::Secondary(SecondaryControls::ENABLE_EPT),
    ),
    (
        Bit::Secondary(SecondaryControls::SUB_PAGE_WRITE_PERMISSIONS_FOR_EPT),
        Bit::Secondary(SecondaryControls::ENABLE_EPT),
    ),
    (
        Bit::Secondary(SecondaryControls::VIRTUALIZE_X2APIC_MODE),
        Bit::Primary(PrimaryControls::USE_TPR_SHADOW),
    ),
    (
        Bit::Secondary(SecondaryControls::APIC_REGISTER_VIRTUALIZATION),
        Bit::Primary(PrimaryControls::USE_TPR_SHADOW),
    ),
    (
        Bit::Secondary(SecondaryControls::VIRTUAL_INTERRUPT_DELIVERY),
        Bit::Primary(PrimaryControls::USE_TPR_SHADOW),
    ),
    (
        Bit::Secondary(SecondaryControls::VIRTUAL_INTERRUPT_DELIVERY),
        Bit::Pin(PinBasedControls::EXTERNAL_INTERRUPT_EXITING),
    ),
    (
        Bit::Pin(PinBasedControls::PROCESS_POSTED_INTERRUPTS),
        Bit::Secondary(SecondaryControls::VIRTUAL_INTERRUPT_DELIVERY),
    ),
    (
        Bit::Pin(PinBasedControls::PROCESS_POSTED_INTERRUPTS),
        Bit::Exit(ExitControls::ACKNOWLEDGE_INTERRUPT_ON_EXIT),
    ),
    // SDM Vol. 3C §27.2.1.2: "save VMX-preemption timer value" needs the timer activated.
    (
        Bit::Exit(ExitControls::SAVE_VMX_PREEMPTION_TIMER_VALUE),
        Bit::Pin(PinBasedControls::ACTIVATE_VMX_PREEMPTION_TIMER),
    ),
];

fn adjust_field<F: ControlFlags>(
    caps: &Capabilities,
    requested: Requested<F>,
) -> Result<F, ControlError> {
    let (msr, value) = caps.control_capability(F::KIND);
    adjust(
        value,
        requested.optional.to_raw(),
        requested.required.to_raw(),
    )
    .map(F::from_raw)
    .map_err(|e| ControlError::from_adjust(F::KIND, msr, e))
}

/// Computes all five control fields for `request` (SDM Vol. 3D Appendix A.2-A.5).
///
/// Uses the TRUE_* capability MSRs when `IA32_VMX_BASIC[55]` is set (SDM Vol. 3D Appendix A.2),
/// so default1 controls that the processor allows to be 0 are cleared unless requested.
/// Optional controls the processor lacks, or whose prerequisite control ended up 0, are
/// dropped; missing required controls are errors.
pub fn compute_controls(
    caps: &Capabilities,
    request: &ControlRequest,
) -> Result<ControlSet, ControlError> {
    let secondary_wanted = request.secondary.required | request.secondary.optional;
    let secondary_available = caps
        .allowed(ControlKind::PrimaryProcBased)
        .allows(PrimaryControls::ACTIVATE_SECONDARY_CONTROLS.bits());

    let mut primary_req = request.primary;
    let secondary = if secondary_wanted.is_empty() {
        SecondaryControls::empty()
    } else if !secondary_available {
        // SDM Vol. 3D Appendix A.3.3: without "activate secondary controls" there is no
        // IA32_VMX_PROCBASED_CTLS2 and every secondary control is effectively 0.
        if let Some((name, bit)) = first_named(request.secondary.required) {
            return Err(ControlError::SecondaryControlsUnavailable { bit, control: name });
        }
        SecondaryControls::empty()
    } else {
        let secondary = adjust_field(caps, request.secondary)?;
        if !request.secondary.required.is_empty() {
            primary_req.required |= PrimaryControls::ACTIVATE_SECONDARY_CONTROLS;
        } else {
            primary_req.optional |= PrimaryControls::ACTIVATE_SECONDARY_CONTROLS;
        }
        secondary
    };

    let mut set = ControlSet {
        pin: adjust_field(caps, request.pin)?,
        primary: adjust_field(caps, primary_req)?,
        secondary,
        exit: adjust_field(caps, request.exit)?,
        entry: adjust_field(caps, request.entry)?,
    };

    // Drop optional controls whose prerequisite is 0; a dropped control may in turn be a
    // prerequisite, so repeat until nothing changes (each round clears at least one bit).
    loop {
        let mut changed = false;
        for &(dependent, dependency) in DEPENDENCIES {
            if dependent.is_set(&set) && !dependency.is_set(&set) {
                if dependent.is_required(request) {
                    return Err(ControlError::MissingDependency {
                        kind: dependent.kind(),
                        control: dependent.name(),
                        requires_kind: dependency.kind(),
                        requires: dependency.name(),
                    });
                }
                dependent.clear(&mut set);
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }

    // Secondary controls only take effect when activated (SDM Vol. 3C §25.6.2); keep the
    // pair consistent so the VMCS never holds stray bits.
    if set.secondary.is_empty()
        && !request
            .primary
            .required
            .contains(PrimaryControls::ACTIVATE_SECONDARY_CONTROLS)
    {
        let forced = caps.allowed(ControlKind::PrimaryProcBased).must_be_one
            & PrimaryControls::ACTIVATE_SECONDARY_CONTROLS.bits();
        if forced == 0 {
            set.primary
                .remove(PrimaryControls::ACTIVATE_SECONDARY_CONTROLS);
        }
    }
    if !set
        .primary
        .contains(PrimaryControls::ACTIVATE_SECONDARY_CONTROLS)
    {
        set.secondary = SecondaryControls::empty();
    }
    Ok(set)
}

fn first_named(bits: SecondaryControls) -> Option<(&'static str, u32)> {
    if bits.is_empty() {
        return None;
    }
    let bit = lowest_bit(bits.bits());
    Some((name_or_unnamed(ControlKind::SecondaryProcBased, bit), bit))
}
