//! Per-VM MSR policy: what RDMSR/WRMSR exits do (SDM Vol. 3C §26.1.3: RDMSR/WRMSR exit
//! unless the MSR bitmap clears the MSR's bit; SDM Vol. 4 Table 2-2 for the MSRs).
//!
//! Every MSR the guest may touch falls in one class ([`MsrClass`]):
//!
//! * **VMCS-backed** ([`VmcsMsr`]): EFER, PAT, DEBUGCTL, SYSENTER_CS/ESP/EIP, FS_BASE,
//!   GS_BASE live in the guest-state area (SDM Vol. 3C §25.4.1) and are loaded/saved by VM
//!   entry/exit; the policy validates writes and answers [`MsrAction::ReadVmcs`] /
//!   [`MsrAction::WriteVmcs`] so the kernel accesses the field.
//! * **Swapped**: STAR, LSTAR, CSTAR, SFMASK, KERNEL_GS_BASE, TSC_AUX are not in the VMCS;
//!   their guest values live in [`MsrState`] and the kernel loads them into the hardware
//!   before VM entry and restores its own after exit ([`MsrState::swapped`],
//!   [`MsrState::set_swapped`]). KERNEL_GS_BASE is passed through by the MSR bitmap, so the
//!   kernel must read it back after every exit.
//! * **Emulated**: values computed or stored in [`MsrState`]: TSC (reads the guest TSC),
//!   PLATFORM_ID, APIC_BASE, FEATURE_CONTROL (locked, VMX off: a guest never tries VMXON),
//!   SMI_COUNT, microcode revision and update trigger, PLATFORM_INFO, MISC_FEATURES_ENABLES,
//!   MISC_ENABLE, the MTRRs (MTRRcap advertises fixed ranges, WC and a configurable number of
//!   variable ranges; writes are validated and read back; EPT decides the real memory type),
//!   TSC_DEADLINE when the CPUID policy exposes it; machine-check architecture with zero
//!   banks (MCG_CAP = 0, MCG_STATUS stored, MCG_CTL and every bank #GP: CPUID.1:EDX.MCE/MCA
//!   are set, SDM Vol. 3B §16.3.1); IA32_TSC_ADJUST, which with WRMSR to IA32_TSC moves the
//!   guest TSC through the VMCS TSC offset (SDM Vol. 3B §18.17.3, [`MsrAction::TscOffset`]).
//!   IA32_MISC_ENABLE: fast strings, automatic thermal control, limit CPUID maxval (honoured
//!   by the CPUID policy) and xTPR disable are writable; the read-only bits keep their values;
//!   the bits of features not offered (EIST, MONITOR FSM, XD disable) and reserved bits #GP.
//! * **#GP**: everything else, including the VMX capability MSRs 0x480-0x493 (VMX is hidden),
//!   the x2APIC range, PMU, MCA, speculation-control, XSS, CET and PT MSRs — the CPUID
//!   policy hides the features that would make a guest use them, and Linux probes with
//!   exception-safe accessors.
//!
//! Writes with reserved bits set, non-canonical addresses in the base/entry-point MSRs or
//! invalid memory types raise #GP, as on hardware.
//!
//! [`MsrPolicy::msr_bitmap`] builds the 4-KiB VMX MSR bitmap (SDM Vol. 3C §25.6.9: read
//! bitmap for low MSRs 00000000H-00001FFFH at offset 0, read bitmap for high MSRs
//! C0000000H-C0001FFFH at 1024, write bitmaps at 2048 and 3072; a set bit causes an exit) in
//! which only [`PASSTHROUGH`] MSRs are clear.

use vmx::msr::Msr;

/// MSRs the guest reads and writes without exits: hot, and either saved by VM exit
/// (FS_BASE, GS_BASE are guest-state fields) or swapped by the kernel (KERNEL_GS_BASE).
pub const PASSTHROUGH: &[Msr] = &[
    Msr::IA32_FS_BASE,
    Msr::IA32_GS_BASE,
    Msr::IA32_KERNEL_GS_BASE,
];

/// IA32_SMI_COUNT (read-only count of SMIs).
pub const MSR_SMI_COUNT: u32 = 0x34;
/// MSR_PLATFORM_INFO (maximum non-turbo ratio in bits 15:8; CPUID faulting support bit 32).
pub const MSR_PLATFORM_INFO: u32 = 0xce;
/// MSR_MISC_FEATURES_ENABLES (CPUID faulting bit 0, ring-3 MONITOR/MWAIT bit 1).
pub const MSR_MISC_FEATURES_ENABLES: u32 = 0x140;

/// EFER.SCE.
pub const EFER_SCE: u64 = 1 << 0;
/// EFER.LME.
pub const EFER_LME: u64 = 1 << 8;
/// EFER.LMA.
pub const EFER_LMA: u64 = 1 << 10;
/// EFER.NXE.
pub const EFER_NXE: u64 = 1 << 11;
const CR0_PG: u64 = 1 << 31;

const APIC_BASE_BSP: u64 = 1 << 8;
const APIC_BASE_EXTD: u64 = 1 << 10;
const APIC_BASE_EN: u64 = 1 << 11;
/// The architectural default local APIC base address.
pub const APIC_DEFAULT_BASE: u64 = 0xfee0_0000;

const MISC_ENABLE_FAST_STRING: u64 = 1 << 0;
const MISC_ENABLE_TCC: u64 = 1 << 3;
const MISC_ENABLE_PERF_AVAIL: u64 = 1 << 7;
const MISC_ENABLE_BTS_UNAVAIL: u64 = 1 << 11;
const MISC_ENABLE_PEBS_UNAVAIL: u64 = 1 << 12;
/// IA32_MISC_ENABLE[22]: CPUID.0:EAX reads at most 2 (SDM Vol. 4 Table 2-2).
pub const MISC_ENABLE_LIMIT_CPUID: u64 = 1 << 22;
const MISC_ENABLE_XTPR_DISABLE: u64 = 1 << 23;
/// Bits a guest may change (SDM Vol. 4 Table 2-2, IA32_MISC_ENABLE).
const MISC_ENABLE_WRITABLE: u64 =
    MISC_ENABLE_FAST_STRING | MISC_ENABLE_TCC | MISC_ENABLE_LIMIT_CPUID | MISC_ENABLE_XTPR_DISABLE;
/// Read-only bits: writes leave them as they are.
const MISC_ENABLE_READ_ONLY: u64 =
    MISC_ENABLE_PERF_AVAIL | MISC_ENABLE_BTS_UNAVAIL | MISC_ENABLE_PEBS_UNAVAIL;

/// IA32_MCG_STATUS bits (RIPV, EIPV, MCIP, LMCE_S; SDM Vol. 3B §16.3.1.2).
const MCG_STATUS_DEFINED: u64 = 0b1111;
/// IA32_P5_MC_ADDR and IA32_P5_MC_TYPE (read as 0 where MCE is offered, SDM Vol. 3B §16.10).
const MSR_P5_MC_ADDR: u32 = 0x0;
const MSR_P5_MC_TYPE: u32 = 0x1;

const MTRRCAP_FIX: u64 = 1 << 8;
const MTRRCAP_WC: u64 = 1 << 10;
const MTRR_DEF_FE: u64 = 1 << 10;
const MTRR_DEF_E: u64 = 1 << 11;
const MTRR_PHYSMASK_V: u64 = 1 << 11;
const MEMTYPE_WB: u64 = 6;
/// Most variable-range MTRR pairs [`MsrState`] stores.
pub const MAX_VARIABLE_MTRRS: usize = 8;
/// The fixed-range MTRRs, in the order [`MsrState`] stores them.
pub const FIXED_MTRRS: [u32; 11] = [
    0x250, 0x258, 0x259, 0x268, 0x269, 0x26a, 0x26b, 0x26c, 0x26d, 0x26e, 0x26f,
];

/// An MSR held in the VMCS guest-state area.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VmcsMsr {
    /// Guest IA32_EFER (needs the "load IA32_EFER" entry control).
    Efer,
    /// Guest IA32_PAT (needs the "load IA32_PAT" entry control).
    Pat,
    /// Guest IA32_DEBUGCTL.
    DebugCtl,
    /// Guest IA32_SYSENTER_CS (32-bit field).
    SysenterCs,
    /// Guest IA32_SYSENTER_ESP.
    SysenterEsp,
    /// Guest IA32_SYSENTER_EIP.
    SysenterEip,
    /// Guest FS base.
    FsBase,
    /// Guest GS base.
    GsBase,
}

/// How an MSR is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MsrClass {
    /// In the VMCS guest-state area.
    Vmcs(VmcsMsr),
    /// Guest value in [`MsrState`], swapped into hardware by the kernel around VM entry.
    Swapped,
    /// Emulated from [`MsrState`] and the configuration.
    Emulated,
    /// Raises #GP.
    Gp,
}

/// What the kernel does for one RDMSR/WRMSR exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MsrAction {
    /// RDMSR: return this value in EDX:EAX and skip the instruction.
    Read(u64),
    /// RDMSR: return the guest-state field's value.
    ReadVmcs(VmcsMsr),
    /// WRMSR: store this validated value in the guest-state field. For EFER the value has
    /// LMA preserved from the old value; the kernel keeps the "IA-32e mode guest" entry
    /// control equal to LMA.
    WriteVmcs(VmcsMsr, u64),
    /// WRMSR: absorbed into [`MsrState`] (or ignored, for write-ignored MSRs).
    Written,
    /// Inject #GP(0) and do not skip the instruction.
    InjectGp,
    /// WRMSR to IA32_TSC or IA32_TSC_ADJUST: absorbed into [`MsrState`]; the kernel loads
    /// this value into the VMCS TSC-offset field (SDM Vol. 3C §26.6.5) so the guest TSC
    /// moves by the amount the SDM says (SDM Vol. 3B §18.17.3).
    TscOffset(u64),
}

/// Per-VM MSR configuration (keep consistent with the CPUID policy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsrConfig {
    /// TSC frequency, for PLATFORM_INFO's maximum non-turbo ratio (100 MHz bus clock).
    pub tsc_hz: u64,
    /// Microcode revision reported in IA32_BIOS_SIGN_ID[63:32].
    pub microcode_revision: u32,
    /// The local APIC is exposed (APIC_BASE.EN set at reset).
    pub local_apic: bool,
    /// x2APIC is exposed (APIC_BASE.EXTD writable).
    pub x2apic: bool,
    /// TSC-deadline is exposed (IA32_TSC_DEADLINE emulated).
    pub tsc_deadline: bool,
    /// Guest physical address width (MAXPHYADDR) for reserved-bit checks.
    pub phys_addr_bits: u8,
    /// Linear address width for canonical checks (48, or 57 with LA57).
    pub linear_addr_bits: u8,
    /// Variable-range MTRRs advertised in MTRRcap (at most [`MAX_VARIABLE_MTRRS`]).
    pub variable_mtrrs: u8,
    /// Machine-check architecture with zero banks (CPUID.1:EDX.MCE/MCA offered).
    pub mca: bool,
    /// IA32_TSC_ADJUST (CPUID.7.0:EBX[1] offered).
    pub tsc_adjust: bool,
}

impl MsrConfig {
    /// Defaults: no local APIC, 39-bit physical and 48-bit linear addresses, no variable
    /// MTRRs, microcode revision 1.
    pub const fn new(tsc_hz: u64) -> Self {
        Self {
            tsc_hz,
            microcode_revision: 1,
            local_apic: false,
            x2apic: false,
            tsc_deadline: false,
            phys_addr_bits: 39,
            linear_addr_bits: 48,
            variable_mtrrs: 0,
            mca: true,
            tsc_adjust: true,
        }
    }
}

/// The per-vCPU values of swapped and emulated MSRs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MsrState {
    /// IA32_STAR.
    pub star: u64,
    /// IA32_LSTAR.
    pub lstar: u64,
    /// IA32_CSTAR.
    pub cstar: u64,
    /// IA32_FMASK (SFMASK).
    pub sfmask: u64,
    /// IA32_KERNEL_GS_BASE.
    pub kernel_gs_base: u64,
    /// IA32_TSC_AUX.
    pub tsc_aux: u64,
    /// IA32_APIC_BASE.
    pub apic_base: u64,
    /// IA32_MISC_ENABLE.
    pub misc_enable: u64,
    /// MSR_MISC_FEATURES_ENABLES.
    pub misc_features: u64,
    /// IA32_TSC_DEADLINE (0 = disarmed); the kernel arms its timer from it after a write.
    pub tsc_deadline: u64,
    /// IA32_MTRR_DEF_TYPE.
    pub mtrr_def_type: u64,
    /// Fixed-range MTRRs in [`FIXED_MTRRS`] order.
    pub mtrr_fixed: [u64; 11],
    /// Variable-range MTRRs as (PHYSBASE, PHYSMASK).
    pub mtrr_variable: [(u64, u64); MAX_VARIABLE_MTRRS],
    /// IA32_MCG_STATUS.
    pub mcg_status: u64,
    /// IA32_TSC_ADJUST (SDM Vol. 3B §18.17.3): 0 at reset, moved by writes to it and to the TSC.
    pub tsc_adjust: u64,
    /// The VMCS TSC offset that makes the guest TSC what its writes asked for (wrapping).
    pub tsc_offset: u64,
}

impl MsrState {
    /// Reset values for a vCPU (`bsp`: the bootstrap processor).
    pub fn new(policy: &MsrPolicy, bsp: bool) -> Self {
        let mut apic_base = APIC_DEFAULT_BASE;
        if bsp {
            apic_base |= APIC_BASE_BSP;
        }
        if policy.config.local_apic {
            apic_base |= APIC_BASE_EN;
        }
        Self {
            star: 0,
            lstar: 0,
            cstar: 0,
            sfmask: 0,
            kernel_gs_base: 0,
            tsc_aux: 0,
            apic_base,
            misc_enable: MISC_ENABLE_FAST_STRING
                | MISC_ENABLE_BTS_UNAVAIL
                | MISC_ENABLE_PEBS_UNAVAIL,
            misc_features: 0,
            tsc_deadline: 0,
            // MTRRs enabled, fixed ranges off, default type write-back.
            mtrr_def_type: MTRR_DEF_E | MEMTYPE_WB,
            mtrr_fixed: [0x0606_0606_0606_0606; 11],
            mtrr_variable: [(0, 0); MAX_VARIABLE_MTRRS],
            mcg_status: 0,
            tsc_adjust: 0,
            tsc_offset: 0,
        }
    }

    /// The swapped MSRs and their guest values, to load before VM entry.
    pub fn swapped(&self) -> [(Msr, u64); 6] {
        [
            (Msr::IA32_STAR, self.star),
            (Msr::IA32_LSTAR, self.lstar),
            (Msr::IA32_CSTAR, self.cstar),
            (Msr::IA32_FMASK, self.sfmask),
            (Msr::IA32_KERNEL_GS_BASE, self.kernel_gs_base),
            (Msr::IA32_TSC_AUX, self.tsc_aux),
        ]
    }

    /// Records a swapped MSR's hardware value read back after VM exit (KERNEL_GS_BASE is
    /// passed through, so the guest may have changed it). Returns false for other MSRs.
    pub fn set_swapped(&mut self, msr: Msr, value: u64) -> bool {
        let slot = match msr {
            Msr::IA32_STAR => &mut self.star,
            Msr::IA32_LSTAR => &mut self.lstar,
            Msr::IA32_CSTAR => &mut self.cstar,
            Msr::IA32_FMASK => &mut self.sfmask,
            Msr::IA32_KERNEL_GS_BASE => &mut self.kernel_gs_base,
            Msr::IA32_TSC_AUX => &mut self.tsc_aux,
            _ => return false,
        };
        *slot = value;
        true
    }
}

/// Guest state an RDMSR/WRMSR decision depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MsrContext {
    /// Current guest IA32_EFER (from the VMCS).
    pub efer: u64,
    /// Current guest CR0.
    pub cr0: u64,
    /// The TSC value the guest would read now (host TSC plus offset).
    pub guest_tsc: u64,
}

/// The MSR policy of one VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MsrPolicy {
    config: MsrConfig,
}

/// Whether `memtype` is a valid MTRR/PAT memory type (UC, WC, WT, WP, WB; SDM Vol. 3A
/// §12.11.2). `pat` additionally allows UC- (7).
fn valid_memtype(memtype: u64, pat: bool) -> bool {
    matches!(memtype, 0 | 1 | 4 | 5 | 6) || (pat && memtype == 7)
}

fn valid_bytes(value: u64, pat: bool) -> bool {
    value
        .to_le_bytes()
        .iter()
        .all(|&b| valid_memtype(u64::from(b), pat))
}

/// Byte offset and bit in the 4-KiB MSR bitmap for `msr` (SDM Vol. 3C §25.6.9), or `None`
/// for MSRs outside both covered ranges (those always exit).
pub fn bitmap_position(msr: u32, write: bool) -> Option<(usize, u8)> {
    let (base, index) = if msr <= Msr::BITMAP_LOW_LAST {
        (0, msr)
    } else if (Msr::BITMAP_HIGH_FIRST..=Msr::BITMAP_HIGH_LAST).contains(&msr) {
        (1024, msr - Msr::BITMAP_HIGH_FIRST)
    } else {
        return None;
    };
    let base = base + if write { 2048 } else { 0 };
    Some((base + (index / 8) as usize, (index % 8) as u8))
}

impl MsrPolicy {
    /// The policy for `config` (variable MTRRs clamped to [`MAX_VARIABLE_MTRRS`], address
    /// widths to sane ranges).
    pub fn new(mut config: MsrConfig) -> Self {
        config.variable_mtrrs = config.variable_mtrrs.min(MAX_VARIABLE_MTRRS as u8);
        config.phys_addr_bits = config.phys_addr_bits.clamp(32, 52);
        config.linear_addr_bits = if config.linear_addr_bits >= 57 {
            57
        } else {
            48
        };
        Self { config }
    }

    /// The configuration in effect.
    pub fn config(&self) -> &MsrConfig {
        &self.config
    }

    fn canonical(&self, addr: u64) -> bool {
        let shift = 64 - u32::from(self.config.linear_addr_bits);
        ((addr << shift) as i64 >> shift) as u64 == addr
    }

    fn phys_reserved(&self) -> u64 {
        !0u64 << self.config.phys_addr_bits
    }

    fn variable_mtrr(&self, msr: u32) -> Option<(usize, bool)> {
        let offset = msr.checked_sub(Msr::IA32_MTRR_PHYSBASE0.0)?;
        let index = (offset / 2) as usize;
        (index < usize::from(self.config.variable_mtrrs)).then_some((index, offset % 2 == 1))
    }

    fn fixed_mtrr(msr: u32) -> Option<usize> {
        FIXED_MTRRS.iter().position(|&m| m == msr)
    }

    /// The class of `msr`.
    pub fn classify(&self, msr: u32) -> MsrClass {
        let vmcs = match Msr(msr) {
            Msr::IA32_EFER => Some(VmcsMsr::Efer),
            Msr::IA32_PAT => Some(VmcsMsr::Pat),
            Msr::IA32_DEBUGCTL => Some(VmcsMsr::DebugCtl),
            Msr::IA32_SYSENTER_CS => Some(VmcsMsr::SysenterCs),
            Msr::IA32_SYSENTER_ESP => Some(VmcsMsr::SysenterEsp),
            Msr::IA32_SYSENTER_EIP => Some(VmcsMsr::SysenterEip),
            Msr::IA32_FS_BASE => Some(VmcsMsr::FsBase),
            Msr::IA32_GS_BASE => Some(VmcsMsr::GsBase),
            _ => None,
        };
        if let Some(v) = vmcs {
            return MsrClass::Vmcs(v);
        }
        match Msr(msr) {
            Msr::IA32_STAR
            | Msr::IA32_LSTAR
            | Msr::IA32_CSTAR
            | Msr::IA32_FMASK
            | Msr::IA32_KERNEL_GS_BASE
            | Msr::IA32_TSC_AUX => MsrClass::Swapped,
            Msr::IA32_TIME_STAMP_COUNTER
            | Msr::IA32_PLATFORM_ID
            | Msr::IA32_APIC_BASE
            | Msr::IA32_FEATURE_CONTROL
            | Msr::IA32_BIOS_UPDT_TRIG
            | Msr::IA32_BIOS_SIGN_ID
            | Msr::IA32_MISC_ENABLE
            | Msr::IA32_MTRRCAP
            | Msr::IA32_MTRR_DEF_TYPE => MsrClass::Emulated,
            Msr(MSR_SMI_COUNT | MSR_PLATFORM_INFO | MSR_MISC_FEATURES_ENABLES) => {
                MsrClass::Emulated
            }
            Msr::IA32_TSC_DEADLINE if self.config.tsc_deadline => MsrClass::Emulated,
            Msr::IA32_TSC_ADJUST if self.config.tsc_adjust => MsrClass::Emulated,
            Msr::IA32_MCG_CAP | Msr::IA32_MCG_STATUS if self.config.mca => MsrClass::Emulated,
            Msr(MSR_P5_MC_ADDR | MSR_P5_MC_TYPE) if self.config.mca => MsrClass::Emulated,
            _ if Self::fixed_mtrr(msr).is_some() || self.variable_mtrr(msr).is_some() => {
                MsrClass::Emulated
            }
            _ => MsrClass::Gp,
        }
    }

    /// Decides an RDMSR of `msr` (ECX).
    pub fn rdmsr(&self, state: &MsrState, msr: u32, ctx: &MsrContext) -> MsrAction {
        match self.classify(msr) {
            MsrClass::Gp => MsrAction::InjectGp,
            MsrClass::Vmcs(v) => MsrAction::ReadVmcs(v),
            MsrClass::Swapped => match Msr(msr) {
                Msr::IA32_STAR => MsrAction::Read(state.star),
                Msr::IA32_LSTAR => MsrAction::Read(state.lstar),
                Msr::IA32_CSTAR => MsrAction::Read(state.cstar),
                Msr::IA32_FMASK => MsrAction::Read(state.sfmask),
                Msr::IA32_KERNEL_GS_BASE => MsrAction::Read(state.kernel_gs_base),
                _ => MsrAction::Read(state.tsc_aux),
            },
            MsrClass::Emulated => self.read_emulated(state, msr, ctx),
        }
    }

    fn read_emulated(&self, state: &MsrState, msr: u32, ctx: &MsrContext) -> MsrAction {
        let value = match Msr(msr) {
            Msr::IA32_TIME_STAMP_COUNTER => ctx.guest_tsc,
            Msr::IA32_PLATFORM_ID => 0,
            Msr::IA32_APIC_BASE => state.apic_base,
            // Locked with VMX disabled both inside and outside SMX.
            Msr::IA32_FEATURE_CONTROL => 1,
            Msr::IA32_BIOS_UPDT_TRIG => return MsrAction::InjectGp,
            Msr::IA32_BIOS_SIGN_ID => u64::from(self.config.microcode_revision) << 32,
            Msr::IA32_MISC_ENABLE => state.misc_enable,
            Msr::IA32_MTRRCAP => u64::from(self.config.variable_mtrrs) | MTRRCAP_FIX | MTRRCAP_WC,
            Msr::IA32_MTRR_DEF_TYPE => state.mtrr_def_type,
            Msr::IA32_TSC_DEADLINE => state.tsc_deadline,
            Msr::IA32_TSC_ADJUST => state.tsc_adjust,
            // Zero banks, no MCG_CTL, no extended state (SDM Vol. 3B §16.3.1.1).
            Msr::IA32_MCG_CAP => 0,
            Msr::IA32_MCG_STATUS => state.mcg_status,
            Msr(MSR_P5_MC_ADDR | MSR_P5_MC_TYPE) => 0,
            Msr(MSR_SMI_COUNT) => 0,
            Msr(MSR_PLATFORM_INFO) => {
                let ratio = (self.config.tsc_hz / 100_000_000).min(0xff);
                ratio << 8
            }
            Msr(MSR_MISC_FEATURES_ENABLES) => state.misc_features,
            _ => {
                if let Some(i) = Self::fixed_mtrr(msr) {
                    state.mtrr_fixed[i]
                } else if let Some((i, mask)) = self.variable_mtrr(msr) {
                    let (base, m) = state.mtrr_variable[i];
                    if mask {
                        m
                    } else {
                        base
                    }
                } else {
                    return MsrAction::InjectGp;
                }
            }
        };
        MsrAction::Read(value)
    }

    /// Decides a WRMSR of `value` (EDX:EAX) to `msr` (ECX), updating `state` for swapped
    /// and emulated MSRs.
    pub fn wrmsr(&self, state: &mut MsrState, msr: u32, value: u64, ctx: &MsrContext) -> MsrAction {
        match self.classify(msr) {
            MsrClass::Gp => MsrAction::InjectGp,
            MsrClass::Vmcs(v) => match self.validate_vmcs(v, value, ctx) {
                Some(value) => MsrAction::WriteVmcs(v, value),
                None => MsrAction::InjectGp,
            },
            MsrClass::Swapped => {
                let ok = match Msr(msr) {
                    Msr::IA32_LSTAR | Msr::IA32_CSTAR | Msr::IA32_KERNEL_GS_BASE => {
                        self.canonical(value)
                    }
                    Msr::IA32_FMASK | Msr::IA32_TSC_AUX => value >> 32 == 0,
                    _ => true,
                };
                if ok && state.set_swapped(Msr(msr), value) {
                    MsrAction::Written
                } else {
                    MsrAction::InjectGp
                }
            }
            MsrClass::Emulated => match Msr(msr) {
                // SDM Vol. 3B §18.17.3: a write to IA32_TSC_ADJUST adds (new - old) to the
                // TSC; a write to IA32_TSC adds (new TSC - old TSC) to IA32_TSC_ADJUST.
                Msr::IA32_TIME_STAMP_COUNTER => {
                    let delta = value.wrapping_sub(ctx.guest_tsc);
                    state.tsc_offset = state.tsc_offset.wrapping_add(delta);
                    if self.config.tsc_adjust {
                        state.tsc_adjust = state.tsc_adjust.wrapping_add(delta);
                    }
                    MsrAction::TscOffset(state.tsc_offset)
                }
                Msr::IA32_TSC_ADJUST => {
                    let delta = value.wrapping_sub(state.tsc_adjust);
                    state.tsc_adjust = value;
                    state.tsc_offset = state.tsc_offset.wrapping_add(delta);
                    MsrAction::TscOffset(state.tsc_offset)
                }
                _ => self.write_emulated(state, msr, value),
            },
        }
    }

    fn validate_vmcs(&self, msr: VmcsMsr, value: u64, ctx: &MsrContext) -> Option<u64> {
        match msr {
            VmcsMsr::Efer => {
                if value & !(EFER_SCE | EFER_LME | EFER_LMA | EFER_NXE) != 0 {
                    return None;
                }
                // LME cannot change while paging is on (SDM Vol. 3A §10.8.5).
                if ctx.cr0 & CR0_PG != 0 && (value ^ ctx.efer) & EFER_LME != 0 {
                    return None;
                }
                // LMA is read-only: written values are ignored.
                Some((value & !EFER_LMA) | (ctx.efer & EFER_LMA))
            }
            VmcsMsr::Pat => valid_bytes(value, true).then_some(value),
            VmcsMsr::DebugCtl => {
                // Architectural bits: LBR 0, BTF 1, TR 6, BTS 7, BTINT 8, BTS_OFF_OS 9,
                // BTS_OFF_USR 10, FREEZE_LBRS_ON_PMI 11, FREEZE_PERFMON_ON_PMI 12,
                // FREEZE_WHILE_SMM 14, RTM_DEBUG 15. Anything else is reserved (#GP);
                // only BTF is honoured, the others (LBR/BTS/PMU) are dropped.
                const DEFINED: u64 = 0b1101_1111_1100_0011;
                (value & !DEFINED == 0).then_some(value & 0b10)
            }
            VmcsMsr::SysenterCs => Some(value & 0xffff_ffff),
            VmcsMsr::SysenterEsp | VmcsMsr::SysenterEip | VmcsMsr::FsBase | VmcsMsr::GsBase => {
                self.canonical(value).then_some(value)
            }
        }
    }

    fn write_emulated(&self, state: &mut MsrState, msr: u32, value: u64) -> MsrAction {
        let ok = match Msr(msr) {
            Msr::IA32_APIC_BASE => {
                let mut writable = APIC_BASE_EN | (!0xfff & !self.phys_reserved());
                if self.config.x2apic {
                    writable |= APIC_BASE_EXTD;
                }
                // BSP is read-only: it must keep its value.
                if value & !(writable | APIC_BASE_BSP) != 0
                    || (value ^ state.apic_base) & APIC_BASE_BSP != 0
                    || (value & APIC_BASE_EXTD != 0 && value & APIC_BASE_EN == 0)
                {
                    false
                } else {
                    state.apic_base = value;
                    true
                }
            }
            // Microcode loads are accepted and ignored; Linux writes 0 to the signature MSR
            // before CPUID(1) to read the revision.
            Msr::IA32_BIOS_UPDT_TRIG | Msr::IA32_BIOS_SIGN_ID => true,
            Msr::IA32_MISC_ENABLE => {
                let ok = value & !(MISC_ENABLE_WRITABLE | MISC_ENABLE_READ_ONLY) == 0;
                if ok {
                    state.misc_enable = (state.misc_enable & !MISC_ENABLE_WRITABLE)
                        | (value & MISC_ENABLE_WRITABLE);
                }
                ok
            }
            // Writable status bits only (SDM Vol. 3B §16.3.1.2).
            Msr::IA32_MCG_STATUS => {
                let ok = value & !MCG_STATUS_DEFINED == 0;
                if ok {
                    state.mcg_status = value;
                }
                ok
            }
            Msr(MSR_P5_MC_ADDR | MSR_P5_MC_TYPE) => true,
            Msr::IA32_MTRR_DEF_TYPE => {
                let ok = value & !(0xff | MTRR_DEF_FE | MTRR_DEF_E) == 0
                    && valid_memtype(value & 0xff, false);
                if ok {
                    state.mtrr_def_type = value;
                }
                ok
            }
            Msr::IA32_TSC_DEADLINE => {
                state.tsc_deadline = value;
                true
            }
            // CPUID faulting and ring-3 MWAIT are not offered (PLATFORM_INFO[32] = 0).
            Msr(MSR_MISC_FEATURES_ENABLES) => value == 0,
            Msr(MSR_SMI_COUNT | MSR_PLATFORM_INFO)
            | Msr::IA32_MCG_CAP
            | Msr::IA32_PLATFORM_ID
            | Msr::IA32_FEATURE_CONTROL
            | Msr::IA32_MTRRCAP => false,
            _ => {
                if let Some(i) = Self::fixed_mtrr(msr) {
                    let ok = valid_bytes(value, false);
                    if ok {
                        state.mtrr_fixed[i] = value;
                    }
                    ok
                } else if let Some((i, mask)) = self.variable_mtrr(msr) {
                    let reserved = self.phys_reserved();
                    let ok = if mask {
                        value & (reserved | (MTRR_PHYSMASK_V - 1)) == 0
                    } else {
                        value & (reserved | 0xf00) == 0 && valid_memtype(value & 0xff, false)
                    };
                    if ok {
                        let pair = &mut state.mtrr_variable[i];
                        if mask {
                            pair.1 = value;
                        } else {
                            pair.0 = value;
                        }
                    }
                    ok
                } else {
                    false
                }
            }
        };
        if ok {
            MsrAction::Written
        } else {
            MsrAction::InjectGp
        }
    }

    /// The emulated MSRs of `state` a snapshot keeps (vm::snapshot::VcpuState), as (index,
    /// value): IA32_APIC_BASE, IA32_MISC_ENABLE, the MTRRs this policy offers, and
    /// IA32_MCG_STATUS, IA32_TSC_DEADLINE and MSR_MISC_FEATURES_ENABLES where offered. The
    /// TSC and IA32_TSC_ADJUST are not among them: a restore sets the TSC offset itself.
    pub fn saved_msrs(&self, state: &MsrState) -> alloc::vec::Vec<(u32, u64)> {
        let mut out = alloc::vec![
            (Msr::IA32_APIC_BASE.0, state.apic_base),
            (Msr::IA32_MISC_ENABLE.0, state.misc_enable),
            (MSR_MISC_FEATURES_ENABLES, state.misc_features),
            (Msr::IA32_MTRR_DEF_TYPE.0, state.mtrr_def_type),
        ];
        out.extend(
            FIXED_MTRRS
                .iter()
                .zip(state.mtrr_fixed)
                .map(|(&m, v)| (m, v)),
        );
        for (i, &(base, mask)) in state
            .mtrr_variable
            .iter()
            .enumerate()
            .take(usize::from(self.config.variable_mtrrs))
        {
            let msr = Msr::IA32_MTRR_PHYSBASE0.0 + 2 * i as u32;
            out.push((msr, base));
            out.push((msr + 1, mask));
        }
        if self.config.mca {
            out.push((Msr::IA32_MCG_STATUS.0, state.mcg_status));
        }
        if self.config.tsc_deadline {
            out.push((Msr::IA32_TSC_DEADLINE.0, state.tsc_deadline));
        }
        out
    }

    /// Replays `saved` ([`MsrPolicy::saved_msrs`] of a snapshot) into `state` as the
    /// guest's own WRMSRs would be: each MSR must be one this policy emulates (not the TSC
    /// or its adjustment) and its value one the guest could have written. On the first that
    /// is not, returns it and leaves `state` unchanged.
    pub fn restore_saved(
        &self,
        state: &mut MsrState,
        saved: &[(u32, u64)],
    ) -> Result<(), (u32, u64)> {
        let mut next = state.clone();
        for &(msr, value) in saved {
            let emulated = self.classify(msr) == MsrClass::Emulated
                && !matches!(
                    Msr(msr),
                    Msr::IA32_TIME_STAMP_COUNTER | Msr::IA32_TSC_ADJUST
                );
            if !emulated || self.write_emulated(&mut next, msr, value) != MsrAction::Written {
                return Err((msr, value));
            }
        }
        *state = next;
        Ok(())
    }

    /// Writes the VMX MSR bitmap into `bitmap`: every bit set (exit) except reads and writes
    /// of the [`PASSTHROUGH`] MSRs.
    pub fn fill_msr_bitmap(&self, bitmap: &mut [u8; 4096]) {
        bitmap.fill(0xff);
        for msr in PASSTHROUGH {
            for write in [false, true] {
                if let Some((byte, bit)) = bitmap_position(msr.0, write) {
                    bitmap[byte] &= !(1 << bit);
                }
            }
        }
    }

    /// The VMX MSR bitmap (see [`MsrPolicy::fill_msr_bitmap`]).
    pub fn msr_bitmap(&self) -> [u8; 4096] {
        let mut bitmap = [0u8; 4096];
        self.fill_msr_bitmap(&mut bitmap);
        bitmap
    }
}

#[cfg(test)]
#[path = "msr_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "msr_fidelity_tests.rs"]
mod fidelity_tests;
