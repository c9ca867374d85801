//! VMX capability MSRs: reading them safely and decoding them (SDM Vol. 3D Appendix A).

use core::fmt;

use crate::controls::{
    AllowedSettings, ControlKind, PinBasedControls, PrimaryControls, SecondaryControls,
};
use crate::instructions::{InveptType, InvvpidType};
use crate::msr::Msr;

/// The raw values of the VMX capability MSRs. Optional MSRs are `None` when the processor
/// does not enumerate them (reading them would raise #GP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RawCapabilities {
    /// IA32_VMX_BASIC (0x480).
    pub basic: u64,
    /// IA32_VMX_PINBASED_CTLS (0x481).
    pub pinbased: u64,
    /// IA32_VMX_PROCBASED_CTLS (0x482).
    pub procbased: u64,
    /// IA32_VMX_EXIT_CTLS (0x483).
    pub exit: u64,
    /// IA32_VMX_ENTRY_CTLS (0x484).
    pub entry: u64,
    /// IA32_VMX_MISC (0x485).
    pub misc: u64,
    /// IA32_VMX_CR0_FIXED0 (0x486).
    pub cr0_fixed0: u64,
    /// IA32_VMX_CR0_FIXED1 (0x487).
    pub cr0_fixed1: u64,
    /// IA32_VMX_CR4_FIXED0 (0x488).
    pub cr4_fixed0: u64,
    /// IA32_VMX_CR4_FIXED1 (0x489).
    pub cr4_fixed1: u64,
    /// IA32_VMX_VMCS_ENUM (0x48A).
    pub vmcs_enum: u64,
    /// IA32_VMX_PROCBASED_CTLS2 (0x48B), present if "activate secondary controls" may be 1.
    pub procbased2: Option<u64>,
    /// IA32_VMX_EPT_VPID_CAP (0x48C), present if "enable EPT" or "enable VPID" may be 1.
    pub ept_vpid_cap: Option<u64>,
    /// IA32_VMX_VMFUNC (0x491), present if "enable VM functions" may be 1.
    pub vmfunc: Option<u64>,
    /// IA32_VMX_TRUE_PINBASED_CTLS (0x48D), present if `IA32_VMX_BASIC[55]` is 1.
    pub true_pinbased: Option<u64>,
    /// IA32_VMX_TRUE_PROCBASED_CTLS (0x48E), present if `IA32_VMX_BASIC[55]` is 1.
    pub true_procbased: Option<u64>,
    /// IA32_VMX_TRUE_EXIT_CTLS (0x48F), present if `IA32_VMX_BASIC[55]` is 1.
    pub true_exit: Option<u64>,
    /// IA32_VMX_TRUE_ENTRY_CTLS (0x490), present if `IA32_VMX_BASIC[55]` is 1.
    pub true_entry: Option<u64>,
}

/// `IA32_VMX_BASIC[55]`: the TRUE_* control capability MSRs exist (SDM Vol. 3D Appendix A.1).
const BASIC_TRUE_CONTROLS: u64 = 1 << 55;

fn allowed1(msr_value: u64, bit: u32) -> bool {
    AllowedSettings::from_msr(msr_value).allows(bit)
}

impl RawCapabilities {
    /// Reads every capability MSR through `rdmsr`, touching an optional MSR only when a
    /// capability bit says it exists (Bochs raises #GP otherwise): PROCBASED_CTLS2 only if the
    /// primary controls allow "activate secondary controls" (bit 31 of the allowed-1 half);
    /// EPT_VPID_CAP only if secondary allows EPT (bit 1) or VPID (bit 5); VMFUNC only if
    /// secondary allows "enable VM functions" (bit 13); TRUE_* only if `IA32_VMX_BASIC[55]`.
    pub fn read(mut rdmsr: impl FnMut(Msr) -> u64) -> Self {
        let basic = rdmsr(Msr::IA32_VMX_BASIC);
        let procbased = rdmsr(Msr::IA32_VMX_PROCBASED_CTLS);
        // SDM Vol. 3D Appendix A.3.3: IA32_VMX_PROCBASED_CTLS2 exists only if bit 63 of
        // IA32_VMX_PROCBASED_CTLS (allowed-1 of "activate secondary controls") is 1.
        let procbased2 = allowed1(
            procbased,
            PrimaryControls::ACTIVATE_SECONDARY_CONTROLS.bits(),
        )
        .then(|| rdmsr(Msr::IA32_VMX_PROCBASED_CTLS2));
        let secondary_allows =
            |bits: SecondaryControls| procbased2.is_some_and(|v| allowed1(v, bits.bits()));
        // SDM Vol. 3D Appendix A.10: IA32_VMX_EPT_VPID_CAP exists only if the secondary
        // controls allow "enable EPT" or "enable VPID".
        let ept_vpid_cap = (secondary_allows(SecondaryControls::ENABLE_EPT)
            || secondary_allows(SecondaryControls::ENABLE_VPID))
        .then(|| rdmsr(Msr::IA32_VMX_EPT_VPID_CAP));
        // SDM Vol. 3D Appendix A.11: IA32_VMX_VMFUNC exists only if "enable VM functions"
        // may be 1.
        let vmfunc = secondary_allows(SecondaryControls::ENABLE_VM_FUNCTIONS)
            .then(|| rdmsr(Msr::IA32_VMX_VMFUNC));
        // SDM Vol. 3D Appendix A.1: the TRUE_* MSRs exist only if IA32_VMX_BASIC[55] is 1.
        let has_true = basic & BASIC_TRUE_CONTROLS != 0;
        let mut read_true = |msr| has_true.then(|| rdmsr(msr));
        let true_pinbased = read_true(Msr::IA32_VMX_TRUE_PINBASED_CTLS);
        let true_procbased = read_true(Msr::IA32_VMX_TRUE_PROCBASED_CTLS);
        let true_exit = read_true(Msr::IA32_VMX_TRUE_EXIT_CTLS);
        let true_entry = read_true(Msr::IA32_VMX_TRUE_ENTRY_CTLS);
        Self {
            basic,
            pinbased: rdmsr(Msr::IA32_VMX_PINBASED_CTLS),
            procbased,
            exit: rdmsr(Msr::IA32_VMX_EXIT_CTLS),
            entry: rdmsr(Msr::IA32_VMX_ENTRY_CTLS),
            misc: rdmsr(Msr::IA32_VMX_MISC),
            cr0_fixed0: rdmsr(Msr::IA32_VMX_CR0_FIXED0),
            cr0_fixed1: rdmsr(Msr::IA32_VMX_CR0_FIXED1),
            cr4_fixed0: rdmsr(Msr::IA32_VMX_CR4_FIXED0),
            cr4_fixed1: rdmsr(Msr::IA32_VMX_CR4_FIXED1),
            vmcs_enum: rdmsr(Msr::IA32_VMX_VMCS_ENUM),
            procbased2,
            ept_vpid_cap,
            vmfunc,
            true_pinbased,
            true_procbased,
            true_exit,
            true_entry,
        }
    }
}

/// Memory type of a VMX structure (SDM Vol. 3D Appendix A.1, Table A-1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MemoryType {
    /// Uncacheable (0).
    Uncacheable,
    /// Write-back (6).
    WriteBack,
    /// A value Table A-1 leaves reserved.
    Reserved(u8),
}

impl MemoryType {
    /// Encoding of UC in `IA32_VMX_BASIC[53:50]` (SDM Vol. 3D Table A-1).
    pub const UC: u8 = 0;
    /// Encoding of WB in `IA32_VMX_BASIC[53:50]` (SDM Vol. 3D Table A-1).
    pub const WB: u8 = 6;

    /// Decodes a 4-bit memory type.
    pub const fn from_raw(raw: u8) -> Self {
        match raw {
            Self::UC => Self::Uncacheable,
            Self::WB => Self::WriteBack,
            other => Self::Reserved(other),
        }
    }
}

impl fmt::Display for MemoryType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Uncacheable => f.write_str("UC"),
            Self::WriteBack => f.write_str("WB"),
            Self::Reserved(n) => write!(f, "reserved ({n})"),
        }
    }
}

/// Decoded IA32_VMX_BASIC (SDM Vol. 3D Appendix A.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BasicInfo {
    /// Bits 30:0: VMCS revision identifier.
    pub revision_id: u32,
    /// Bits 44:32: bytes to allocate for the VMXON region and any VMCS region.
    pub region_size: usize,
    /// Bit 48: VMXON/VMCS/MSR-bitmap... addresses are limited to 32 bits.
    pub addresses_32bit: bool,
    /// Bit 49: dual-monitor treatment of SMIs and SMM is supported.
    pub dual_monitor_smm: bool,
    /// Bits 53:50: memory type the processor uses to access the VMCS.
    pub vmcs_memory_type: MemoryType,
    /// Bit 54: VM exits due to INS/OUTS report instruction information.
    pub ins_outs_reporting: bool,
    /// Bit 55: the TRUE_* control capability MSRs exist.
    pub true_controls: bool,
    /// Bit 56: VM entry may inject hardware exceptions with or without error code regardless
    /// of the vector.
    pub relaxed_exception_error_code: bool,
}

impl BasicInfo {
    const REVISION_MASK: u64 = 0x7fff_ffff;
    const REGION_SIZE_SHIFT: u32 = 32;
    const REGION_SIZE_MASK: u64 = 0x1fff;
    const ADDR_32BIT: u64 = 1 << 48;
    const DUAL_MONITOR: u64 = 1 << 49;
    const MEMTYPE_SHIFT: u32 = 50;
    const MEMTYPE_MASK: u64 = 0xf;
    const INS_OUTS: u64 = 1 << 54;
    const NO_ERR_CODE_CHECK: u64 = 1 << 56;

    /// Decodes IA32_VMX_BASIC (SDM Vol. 3D Appendix A.1).
    pub const fn decode(raw: u64) -> Self {
        Self {
            revision_id: (raw & Self::REVISION_MASK) as u32,
            region_size: ((raw >> Self::REGION_SIZE_SHIFT) & Self::REGION_SIZE_MASK) as usize,
            addresses_32bit: raw & Self::ADDR_32BIT != 0,
            dual_monitor_smm: raw & Self::DUAL_MONITOR != 0,
            vmcs_memory_type: MemoryType::from_raw(
                ((raw >> Self::MEMTYPE_SHIFT) & Self::MEMTYPE_MASK) as u8,
            ),
            ins_outs_reporting: raw & Self::INS_OUTS != 0,
            true_controls: raw & BASIC_TRUE_CONTROLS != 0,
            relaxed_exception_error_code: raw & Self::NO_ERR_CODE_CHECK != 0,
        }
    }
}

/// Decoded IA32_VMX_MISC (SDM Vol. 3D Appendix A.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MiscInfo {
    /// Bits 4:0: the preemption timer counts down each time bit X of the TSC changes.
    pub preemption_timer_rate: u8,
    /// Bit 5: VM exits store EFER.LMA into the "IA-32e mode guest" entry control.
    pub stores_lma_on_exit: bool,
    /// Bit 6: activity state HLT is supported.
    pub activity_hlt: bool,
    /// Bit 7: activity state shutdown is supported.
    pub activity_shutdown: bool,
    /// Bit 8: activity state wait-for-SIPI is supported.
    pub activity_wait_for_sipi: bool,
    /// Bit 14: Intel PT can be used in VMX operation.
    pub pt_in_vmx: bool,
    /// Bit 15: RDMSR can read IA32_SMBASE in SMM.
    pub rdmsr_smbase_in_smm: bool,
    /// Bits 24:16: number of CR3-target values supported.
    pub cr3_target_count: u16,
    /// Bits 27:25: recommended maximum number of MSRs in each MSR list, 512 * (N + 1).
    pub max_msr_list_entries: u32,
    /// Bit 28: bit 2 of IA32_SMM_MONITOR_CTL can be set to 1.
    pub smm_monitor_ctl_bit2: bool,
    /// Bit 29: VMWRITE can write any supported field, including VM-exit information fields.
    pub vmwrite_any_field: bool,
    /// Bit 30: VM entry may inject software interrupts/exceptions with instruction length 0.
    pub zero_length_injection: bool,
    /// Bits 63:32: MSEG revision identifier.
    pub mseg_revision: u32,
}

impl MiscInfo {
    const RATE_MASK: u64 = 0x1f;
    const LMA: u64 = 1 << 5;
    const HLT: u64 = 1 << 6;
    const SHUTDOWN: u64 = 1 << 7;
    const WAIT_SIPI: u64 = 1 << 8;
    const PT: u64 = 1 << 14;
    const SMBASE: u64 = 1 << 15;
    const CR3_SHIFT: u32 = 16;
    const CR3_MASK: u64 = 0x1ff;
    const MSR_LIST_SHIFT: u32 = 25;
    const MSR_LIST_MASK: u64 = 0x7;
    const MSR_LIST_UNIT: u32 = 512;
    const SMM_CTL: u64 = 1 << 28;
    const VMWRITE_ANY: u64 = 1 << 29;
    const ZERO_LEN: u64 = 1 << 30;
    const MSEG_SHIFT: u32 = 32;

    /// Decodes IA32_VMX_MISC (SDM Vol. 3D Appendix A.6).
    pub const fn decode(raw: u64) -> Self {
        Self {
            preemption_timer_rate: (raw & Self::RATE_MASK) as u8,
            stores_lma_on_exit: raw & Self::LMA != 0,
            activity_hlt: raw & Self::HLT != 0,
            activity_shutdown: raw & Self::SHUTDOWN != 0,
            activity_wait_for_sipi: raw & Self::WAIT_SIPI != 0,
            pt_in_vmx: raw & Self::PT != 0,
            rdmsr_smbase_in_smm: raw & Self::SMBASE != 0,
            cr3_target_count: ((raw >> Self::CR3_SHIFT) & Self::CR3_MASK) as u16,
            max_msr_list_entries: Self::MSR_LIST_UNIT
                * (((raw >> Self::MSR_LIST_SHIFT) & Self::MSR_LIST_MASK) as u32 + 1),
            smm_monitor_ctl_bit2: raw & Self::SMM_CTL != 0,
            vmwrite_any_field: raw & Self::VMWRITE_ANY != 0,
            zero_length_injection: raw & Self::ZERO_LEN != 0,
            mseg_revision: (raw >> Self::MSEG_SHIFT) as u32,
        }
    }
}

/// Bits of CR0 or CR4 fixed in VMX operation (SDM Vol. 3D Appendix A.7 and A.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct FixedBits {
    /// IA32_VMX_CRx_FIXED0: bits that must be 1.
    pub must_be_one: u64,
    /// IA32_VMX_CRx_FIXED1: bits that may be 1 (a 0 means fixed to 0).
    pub may_be_one: u64,
}

impl FixedBits {
    /// Forces the fixed bits onto `value`.
    pub const fn apply(self, value: u64) -> u64 {
        (value | self.must_be_one) & self.may_be_one
    }

    /// The bits of `value` that violate the fixed settings (0 if it is legal).
    pub const fn violations(self, value: u64) -> u64 {
        (self.must_be_one & !value) | (value & !self.may_be_one)
    }
}

bitflags::bitflags! {
    /// IA32_VMX_EPT_VPID_CAP (SDM Vol. 3D Appendix A.10).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct EptVpidCap: u64 {
        /// Bit 0: EPT entries may allow execute without read (execute-only).
        const EXECUTE_ONLY = 1 << 0;
        /// Bit 6: page-walk length of 4.
        const PAGE_WALK_LENGTH_4 = 1 << 6;
        /// Bit 7: page-walk length of 5.
        const PAGE_WALK_LENGTH_5 = 1 << 7;
        /// Bit 8: EPT paging structures may be uncacheable (UC).
        const MEMORY_TYPE_UC = 1 << 8;
        /// Bit 14: EPT paging structures may be write-back (WB).
        const MEMORY_TYPE_WB = 1 << 14;
        /// Bit 16: EPT PDEs may map 2-MByte pages.
        const PDE_2MB_PAGES = 1 << 16;
        /// Bit 17: EPT PDPTEs may map 1-GByte pages.
        const PDPTE_1GB_PAGES = 1 << 17;
        /// Bit 20: INVEPT is supported.
        const INVEPT = 1 << 20;
        /// Bit 21: accessed and dirty flags for EPT.
        const ACCESSED_DIRTY = 1 << 21;
        /// Bit 22: advanced VM-exit information for EPT violations.
        const ADVANCED_EXIT_INFO = 1 << 22;
        /// Bit 23: supervisor shadow-stack control.
        const SUPERVISOR_SHADOW_STACK = 1 << 23;
        /// Bit 25: single-context INVEPT.
        const INVEPT_SINGLE_CONTEXT = 1 << 25;
        /// Bit 26: all-context INVEPT.
        const INVEPT_ALL_CONTEXT = 1 << 26;
        /// Bit 32: INVVPID is supported.
        const INVVPID = 1 << 32;
        /// Bit 40: individual-address INVVPID.
        const INVVPID_INDIVIDUAL_ADDRESS = 1 << 40;
        /// Bit 41: single-context INVVPID.
        const INVVPID_SINGLE_CONTEXT = 1 << 41;
        /// Bit 42: all-context INVVPID.
        const INVVPID_ALL_CONTEXT = 1 << 42;
        /// Bit 43: single-context-retaining-globals INVVPID.
        const INVVPID_SINGLE_CONTEXT_RETAINING_GLOBALS = 1 << 43;
    }
}

bitflags::bitflags! {
    /// IA32_VMX_VMFUNC: supported VM functions (SDM Vol. 3D Appendix A.11; SDM Vol. 3C
    /// §25.6.14).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct VmFunctions: u64 {
        /// VM function 0: EPTP switching.
        const EPTP_SWITCHING = 1 << 0;
    }
}

/// Decoded VMX capabilities.
///
/// The control capabilities are the *effective* ones: the TRUE_* MSRs when
/// `IA32_VMX_BASIC[55]` is set and they were read, the plain MSRs otherwise
/// (SDM Vol. 3D Appendix A.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capabilities {
    raw: RawCapabilities,
    /// IA32_VMX_BASIC.
    pub basic: BasicInfo,
    /// Allowed pin-based controls.
    pub pin: AllowedSettings,
    /// Allowed primary processor-based controls.
    pub primary: AllowedSettings,
    /// Allowed secondary processor-based controls ([`AllowedSettings::NONE`] if the secondary
    /// controls cannot be activated).
    pub secondary: AllowedSettings,
    /// Allowed VM-exit controls.
    pub exit: AllowedSettings,
    /// Allowed VM-entry controls.
    pub entry: AllowedSettings,
    /// IA32_VMX_MISC.
    pub misc: MiscInfo,
    /// CR0 bits fixed in VMX operation.
    pub cr0_fixed: FixedBits,
    /// CR4 bits fixed in VMX operation.
    pub cr4_fixed: FixedBits,
    /// IA32_VMX_VMCS_ENUM bits 9:1: highest index of any VMCS field encoding (SDM Vol. 3D
    /// Appendix A.9).
    pub vmcs_max_index: u16,
    /// EPT/VPID capabilities (empty if the MSR does not exist).
    pub ept_vpid: EptVpidCap,
    /// Supported VM functions (empty if VM functions cannot be enabled).
    pub vm_functions: VmFunctions,
}

impl Capabilities {
    const VMCS_ENUM_SHIFT: u32 = 1;
    const VMCS_ENUM_MASK: u64 = 0x1ff;

    /// Decodes the raw MSR values. Never fails: inconsistent values decode to "unsupported".
    pub fn decode(raw: &RawCapabilities) -> Self {
        let basic = BasicInfo::decode(raw.basic);
        // SDM Vol. 3D Appendix A.2: with IA32_VMX_BASIC[55] = 1, the TRUE_* MSRs report the
        // allowed settings (including which default1 controls may be 0).
        let effective = |plain: u64, true_value: Option<u64>| {
            AllowedSettings::from_msr(match (basic.true_controls, true_value) {
                (true, Some(v)) => v,
                _ => plain,
            })
        };
        let primary = effective(raw.procbased, raw.true_procbased);
        // SDM Vol. 3D Appendix A.3.3: the secondary MSR is meaningful only if the primary
        // controls allow "activate secondary controls".
        let secondary = match raw.procbased2 {
            Some(v) if primary.allows(PrimaryControls::ACTIVATE_SECONDARY_CONTROLS.bits()) => {
                AllowedSettings::from_msr(v)
            }
            _ => AllowedSettings::NONE,
        };
        // SDM Vol. 3D Appendix A.10 / A.11: these MSRs only mean something if the
        // corresponding secondary controls may be 1.
        let ept_vpid = if secondary.allows(SecondaryControls::ENABLE_EPT.bits())
            || secondary.allows(SecondaryControls::ENABLE_VPID.bits())
        {
            EptVpidCap::from_bits_retain(raw.ept_vpid_cap.unwrap_or(0))
        } else {
            EptVpidCap::empty()
        };
        let vm_functions = if secondary.allows(SecondaryControls::ENABLE_VM_FUNCTIONS.bits()) {
            VmFunctions::from_bits_retain(raw.vmfunc.unwrap_or(0))
        } else {
            VmFunctions::empty()
        };
        Self {
            raw: *raw,
            basic,
            pin: effective(raw.pinbased, raw.true_pinbased),
            primary,
            secondary,
            exit: effective(raw.exit, raw.true_exit),
            entry: effective(raw.entry, raw.true_entry),
            misc: MiscInfo::decode(raw.misc),
            // SDM Vol. 3D Appendix A.7 and A.8.
            cr0_fixed: FixedBits {
                must_be_one: raw.cr0_fixed0,
                may_be_one: raw.cr0_fixed1,
            },
            cr4_fixed: FixedBits {
                must_be_one: raw.cr4_fixed0,
                may_be_one: raw.cr4_fixed1,
            },
            vmcs_max_index: ((raw.vmcs_enum >> Self::VMCS_ENUM_SHIFT) & Self::VMCS_ENUM_MASK)
                as u16,
            ept_vpid,
            vm_functions,
        }
    }

    /// The raw MSR values this was decoded from.
    pub fn raw(&self) -> &RawCapabilities {
        &self.raw
    }

    /// VMCS revision identifier to write into VMXON and VMCS regions (SDM Vol. 3C §25.2).
    pub fn revision_id(&self) -> u32 {
        self.basic.revision_id
    }

    /// Size of the VMXON region and of each VMCS region in bytes.
    pub fn vmcs_region_size(&self) -> usize {
        self.basic.region_size
    }

    /// Whether the TRUE_* capability MSRs are in use.
    pub fn has_true_controls(&self) -> bool {
        self.basic.true_controls && self.raw.true_procbased.is_some()
    }

    /// Allowed settings of a control field.
    pub fn allowed(&self, kind: ControlKind) -> AllowedSettings {
        match kind {
            ControlKind::PinBased => self.pin,
            ControlKind::PrimaryProcBased => self.primary,
            ControlKind::SecondaryProcBased => self.secondary,
            ControlKind::Exit => self.exit,
            ControlKind::Entry => self.entry,
        }
    }

    /// The capability MSR in effect for a control field and its value (0 for a secondary MSR
    /// that does not exist: nothing allowed).
    pub fn control_capability(&self, kind: ControlKind) -> (Msr, u64) {
        let true_controls = self.basic.true_controls;
        let pick = |plain: u64, true_value: Option<u64>| match (true_controls, true_value) {
            (true, Some(v)) => (kind.capability_msr(true), v),
            _ => (kind.capability_msr(false), plain),
        };
        match kind {
            ControlKind::PinBased => pick(self.raw.pinbased, self.raw.true_pinbased),
            ControlKind::PrimaryProcBased => pick(self.raw.procbased, self.raw.true_procbased),
            ControlKind::SecondaryProcBased => {
                (kind.capability_msr(false), self.secondary.to_msr())
            }
            ControlKind::Exit => pick(self.raw.exit, self.raw.true_exit),
            ControlKind::Entry => pick(self.raw.entry, self.raw.true_entry),
        }
    }

    fn pin_allows(&self, c: PinBasedControls) -> bool {
        self.pin.allows(c.bits())
    }

    fn primary_allows(&self, c: PrimaryControls) -> bool {
        self.primary.allows(c.bits())
    }

    fn secondary_allows(&self, c: SecondaryControls) -> bool {
        self.primary_allows(PrimaryControls::ACTIVATE_SECONDARY_CONTROLS)
            && self.secondary.allows(c.bits())
    }

    /// Whether "enable EPT" may be 1.
    pub fn has_ept(&self) -> bool {
        self.secondary_allows(SecondaryControls::ENABLE_EPT)
    }

    /// Whether "unrestricted guest" may be 1.
    pub fn has_unrestricted_guest(&self) -> bool {
        self.secondary_allows(SecondaryControls::UNRESTRICTED_GUEST)
    }

    /// Whether "enable VPID" may be 1.
    pub fn has_vpid(&self) -> bool {
        self.secondary_allows(SecondaryControls::ENABLE_VPID)
    }

    /// EPT/VPID capability bit test (false if EPT and VPID are both unavailable).
    pub fn ept_vpid_has(&self, bits: EptVpidCap) -> bool {
        self.ept_vpid.contains(bits)
    }

    /// EPT supports a page-walk length of 4 (SDM Vol. 3D Appendix A.10).
    pub fn ept_walk_length_4(&self) -> bool {
        self.has_ept() && self.ept_vpid_has(EptVpidCap::PAGE_WALK_LENGTH_4)
    }

    /// EPT PDEs can map 2-MByte pages.
    pub fn ept_2m_pages(&self) -> bool {
        self.has_ept() && self.ept_vpid_has(EptVpidCap::PDE_2MB_PAGES)
    }

    /// EPT PDPTEs can map 1-GByte pages.
    pub fn ept_1g_pages(&self) -> bool {
        self.has_ept() && self.ept_vpid_has(EptVpidCap::PDPTE_1GB_PAGES)
    }

    /// EPT accessed and dirty flags are supported.
    pub fn ept_accessed_dirty(&self) -> bool {
        self.has_ept() && self.ept_vpid_has(EptVpidCap::ACCESSED_DIRTY)
    }

    /// EPT execute-only translations are supported.
    pub fn ept_execute_only(&self) -> bool {
        self.has_ept() && self.ept_vpid_has(EptVpidCap::EXECUTE_ONLY)
    }

    /// EPT paging structures may be WB.
    pub fn ept_wb_tables(&self) -> bool {
        self.has_ept() && self.ept_vpid_has(EptVpidCap::MEMORY_TYPE_WB)
    }

    /// EPT paging structures may be UC.
    pub fn ept_uc_tables(&self) -> bool {
        self.has_ept() && self.ept_vpid_has(EptVpidCap::MEMORY_TYPE_UC)
    }

    /// Whether an INVEPT type is supported (SDM Vol. 3D Appendix A.10).
    pub fn supports_invept(&self, ty: InveptType) -> bool {
        let bit = match ty {
            InveptType::SingleContext => EptVpidCap::INVEPT_SINGLE_CONTEXT,
            InveptType::AllContext => EptVpidCap::INVEPT_ALL_CONTEXT,
        };
        self.has_ept() && self.ept_vpid_has(EptVpidCap::INVEPT | bit)
    }

    /// Whether an INVVPID type is supported (SDM Vol. 3D Appendix A.10).
    pub fn supports_invvpid(&self, ty: InvvpidType) -> bool {
        let bit = match ty {
            InvvpidType::IndividualAddress => EptVpidCap::INVVPID_INDIVIDUAL_ADDRESS,
            InvvpidType::SingleContext => EptVpidCap::INVVPID_SINGLE_CONTEXT,
            InvvpidType::AllContext => EptVpidCap::INVVPID_ALL_CONTEXT,
            InvvpidType::SingleContextRetainingGlobals => {
                EptVpidCap::INVVPID_SINGLE_CONTEXT_RETAINING_GLOBALS
            }
        };
        self.has_vpid() && self.ept_vpid_has(EptVpidCap::INVVPID | bit)
    }

    /// Whether "activate VMX-preemption timer" may be 1.
    pub fn has_preemption_timer(&self) -> bool {
        self.pin_allows(PinBasedControls::ACTIVATE_VMX_PREEMPTION_TIMER)
    }

    /// The preemption timer ticks every time bit `rate` of the TSC changes (TSC >> rate).
    pub fn preemption_timer_rate(&self) -> u8 {
        self.misc.preemption_timer_rate
    }

    /// Whether "process posted interrupts" may be 1.
    pub fn has_posted_interrupts(&self) -> bool {
        self.pin_allows(PinBasedControls::PROCESS_POSTED_INTERRUPTS)
    }

    /// Whether "enable PML" may be 1.
    pub fn has_pml(&self) -> bool {
        self.secondary_allows(SecondaryControls::ENABLE_PML)
    }

    /// Whether "enable VM functions" may be 1.
    pub fn has_vmfunc(&self) -> bool {
        self.secondary_allows(SecondaryControls::ENABLE_VM_FUNCTIONS)
    }

    /// Whether VM function 0 (EPTP switching) is available.
    pub fn has_eptp_switching(&self) -> bool {
        self.has_vmfunc() && self.vm_functions.contains(VmFunctions::EPTP_SWITCHING)
    }

    /// Whether "use MSR bitmaps" may be 1.
    pub fn has_msr_bitmaps(&self) -> bool {
        self.primary_allows(PrimaryControls::USE_MSR_BITMAPS)
    }

    /// Whether "use I/O bitmaps" may be 1.
    pub fn has_io_bitmaps(&self) -> bool {
        self.primary_allows(PrimaryControls::USE_IO_BITMAPS)
    }

    /// Whether "monitor trap flag" may be 1.
    pub fn has_monitor_trap_flag(&self) -> bool {
        self.primary_allows(PrimaryControls::MONITOR_TRAP_FLAG)
    }

    /// Whether "use TPR shadow" may be 1.
    pub fn has_tpr_shadow(&self) -> bool {
        self.primary_allows(PrimaryControls::USE_TPR_SHADOW)
    }

    /// Whether "APIC-register virtualization" may be 1.
    pub fn has_apic_register_virtualization(&self) -> bool {
        self.secondary_allows(SecondaryControls::APIC_REGISTER_VIRTUALIZATION)
    }

    /// Whether "virtual-interrupt delivery" may be 1.
    pub fn has_virtual_interrupt_delivery(&self) -> bool {
        self.secondary_allows(SecondaryControls::VIRTUAL_INTERRUPT_DELIVERY)
    }

    /// Whether "virtual NMIs" may be 1.
    pub fn has_virtual_nmis(&self) -> bool {
        self.pin_allows(PinBasedControls::VIRTUAL_NMIS)
    }

    /// The CR0 value to use in VMX operation (fixed bits applied; SDM Vol. 3D Appendix A.7).
    pub fn adjust_host_cr0(&self, cr0: u64) -> u64 {
        self.cr0_fixed.apply(cr0)
    }

    /// The CR4 value to use in VMX operation (fixed bits applied; SDM Vol. 3D Appendix A.8).
    pub fn adjust_host_cr4(&self, cr4: u64) -> u64 {
        self.cr4_fixed.apply(cr4)
    }

    /// CR0 fixed bits a guest must respect; with unrestricted guest, PE (bit 0) and PG
    /// (bit 31) are exempt (SDM Vol. 3C §27.3.1.1).
    pub fn guest_cr0_fixed(&self, unrestricted_guest: bool) -> FixedBits {
        const CR0_PE: u64 = 1 << 0;
        const CR0_PG: u64 = 1 << 31;
        let mut fixed = self.cr0_fixed;
        if unrestricted_guest {
            fixed.must_be_one &= !(CR0_PE | CR0_PG);
        }
        fixed
    }
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// Writes a parenthesised, comma-separated list of the present items, or nothing.
struct List<'f, 'a> {
    f: &'f mut fmt::Formatter<'a>,
    open: bool,
}

impl<'f, 'a> List<'f, 'a> {
    fn new(f: &'f mut fmt::Formatter<'a>) -> Self {
        Self { f, open: false }
    }

    fn item(&mut self, present: bool, text: &str) -> fmt::Result {
        if present {
            self.f.write_str(if self.open { ", " } else { " (" })?;
            self.open = true;
            self.f.write_str(text)?;
        }
        Ok(())
    }

    /// One item made of `prefix` followed by the present names, space-separated.
    fn group(&mut self, present: bool, prefix: &str, names: &[(&str, bool)]) -> fmt::Result {
        self.item(present, prefix)?;
        if present {
            for (name, _) in names.iter().filter(|(_, p)| *p) {
                self.f.write_str(" ")?;
                self.f.write_str(name)?;
            }
        }
        Ok(())
    }

    fn finish(self) -> fmt::Result {
        if self.open {
            self.f.write_str(")")?;
        }
        Ok(())
    }
}

impl fmt::Display for Capabilities {
    /// The boot-time platform report, one feature per line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "VMCS revision id: {:#x} (region {} bytes, memory type {}, TRUE_* controls: {})",
            self.revision_id(),
            self.vmcs_region_size(),
            self.basic.vmcs_memory_type,
            yes_no(self.has_true_controls())
        )?;

        let cap = |b| self.ept_vpid_has(b);
        write!(f, "EPT: {}", yes_no(self.has_ept()))?;
        if self.has_ept() {
            let mut list = List::new(f);
            list.item(cap(EptVpidCap::PAGE_WALK_LENGTH_4), "4-level walk")?;
            list.item(cap(EptVpidCap::PAGE_WALK_LENGTH_5), "5-level walk")?;
            list.item(cap(EptVpidCap::PDE_2MB_PAGES), "2M pages")?;
            list.item(cap(EptVpidCap::PDPTE_1GB_PAGES), "1G pages")?;
            list.item(cap(EptVpidCap::ACCESSED_DIRTY), "A/D bits")?;
            list.item(cap(EptVpidCap::EXECUTE_ONLY), "execute-only")?;
            list.item(cap(EptVpidCap::MEMORY_TYPE_UC), "UC tables")?;
            list.item(cap(EptVpidCap::MEMORY_TYPE_WB), "WB tables")?;
            list.item(cap(EptVpidCap::ADVANCED_EXIT_INFO), "advanced VM-exit info")?;
            list.item(
                cap(EptVpidCap::SUPERVISOR_SHADOW_STACK),
                "supervisor shadow-stack control",
            )?;
            list.group(
                cap(EptVpidCap::INVEPT),
                "INVEPT",
                &[
                    (
                        "single-context",
                        self.supports_invept(InveptType::SingleContext),
                    ),
                    ("all-context", self.supports_invept(InveptType::AllContext)),
                ],
            )?;
            list.finish()?;
        }
        f.write_str("\n")?;

        write!(f, "VPID: {}", yes_no(self.has_vpid()))?;
        if self.has_vpid() {
            let mut list = List::new(f);
            list.group(
                cap(EptVpidCap::INVVPID),
                "INVVPID",
                &[
                    (
                        "individual-address",
                        self.supports_invvpid(InvvpidType::IndividualAddress),
                    ),
                    (
                        "single-context",
                        self.supports_invvpid(InvvpidType::SingleContext),
                    ),
                    (
                        "all-context",
                        self.supports_invvpid(InvvpidType::AllContext),
                    ),
                    (
                        "single-context-retaining-globals",
                        self.supports_invvpid(InvvpidType::SingleContextRetainingGlobals),
                    ),
                ],
            )?;
            list.finish()?;
        }
        f.write_str("\n")?;

        writeln!(
            f,
            "unrestricted guest: {}",
            yes_no(self.has_unrestricted_guest())
        )?;
        writeln!(
            f,
            "APIC-register virtualization: {}",
            yes_no(self.has_apic_register_virtualization())
        )?;
        writeln!(
            f,
            "virtual-interrupt delivery: {}",
            yes_no(self.has_virtual_interrupt_delivery())
        )?;
        writeln!(
            f,
            "posted interrupts: {}",
            yes_no(self.has_posted_interrupts())
        )?;
        write!(
            f,
            "preemption timer: {}",
            yes_no(self.has_preemption_timer())
        )?;
        if self.has_preemption_timer() {
            write!(f, " (rate: TSC >> {})", self.preemption_timer_rate())?;
        }
        f.write_str("\n")?;
        writeln!(f, "PML: {}", yes_no(self.has_pml()))?;
        write!(f, "VMFUNC: {}", yes_no(self.has_vmfunc()))?;
        if self.has_vmfunc() {
            let mut list = List::new(f);
            list.item(self.has_eptp_switching(), "EPTP switching")?;
            list.finish()?;
        }
        f.write_str("\n")?;
        writeln!(f, "MSR bitmaps: {}", yes_no(self.has_msr_bitmaps()))?;
        writeln!(f, "I/O bitmaps: {}", yes_no(self.has_io_bitmaps()))?;
        writeln!(
            f,
            "monitor trap flag: {}",
            yes_no(self.has_monitor_trap_flag())
        )?;
        writeln!(
            f,
            "CR0 fixed: must-be-1 {:#x}, may-be-1 {:#x}",
            self.cr0_fixed.must_be_one, self.cr0_fixed.may_be_one
        )?;
        writeln!(
            f,
            "CR4 fixed: must-be-1 {:#x}, may-be-1 {:#x}",
            self.cr4_fixed.must_be_one, self.cr4_fixed.may_be_one
        )
    }
}
