//! Capability MSR values of Bochs CPU models, for tests (this crate's and, with the
//! `fixtures` feature, other crates').
//!
//! Provenance:
//! * `skylake_x()`: IA32_VMX_BASIC, PINBASED, PROCBASED, EXIT, ENTRY, PROCBASED2, EPT_VPID_CAP,
//!   VMFUNC, CR0_FIXED0 and CR4_FIXED0 were read in Bochs (cpu model corei7_skylake_x). The
//!   TRUE_* values, MISC, CR0/CR4_FIXED1 and VMCS_ENUM are CONSTRUCTED: plausible values
//!   consistent with the SDM (the TRUE_* MSRs clear the default1 bits that may be 0 per
//!   SDM Vol. 3D Appendix A.2).
//! * every other model is CONSTRUCTED from these facts about Bochs: revision id 0x2b except
//!   0x4 on icelake_u and tigerlake; unrestricted guest from arrandale on (lynnfield has EPT
//!   and VPID but no unrestricted guest); APIC-register virtualization and virtual-interrupt
//!   delivery on haswell and newer; MTF only on icelake_u and tigerlake; PML from skylake_x;
//!   posted interrupts on no model; CR0_FIXED0 = 0x80000021 and CR4_FIXED0 = 0x2000 on all;
//!   MSRs 0x48B/0x48C raise #GP on models without secondary controls (core2_penryn) and 0x491
//!   on models without VM functions.

use crate::caps::RawCapabilities;
use crate::controls::{EntryControls, ExitControls, PrimaryControls};
use crate::msr::Msr;

/// CR0_FIXED0 on every Bochs model: PE, NE, PG.
const CR0_FIXED0: u64 = 0x8000_0021;
/// CR0_FIXED1 (constructed): every bit of CR0 may be 1.
const CR0_FIXED1: u64 = 0xffff_ffff;
/// CR4_FIXED0 on every Bochs model: VMXE.
const CR4_FIXED0: u64 = 0x2000;
/// CR4_FIXED1 of recent models (constructed): bits 0-10, VMXE, FSGSBASE, PCIDE, OSXSAVE,
/// SMEP, SMAP, PKE.
const CR4_FIXED1_MODERN: u64 = 0x0077_27ff;
/// CR4_FIXED1 of older models (constructed): bits 0-10, VMXE, OSXSAVE.
const CR4_FIXED1_OLD: u64 = 0x0004_27ff;
/// VMCS_ENUM (constructed): highest index 0x17.
const VMCS_ENUM: u64 = 0x2e;
/// MISC (constructed): timer rate 5, stores LMA, HLT/shutdown/wait-for-SIPI, 4 CR3 targets,
/// VMWRITE to any field.
const MISC_WITH_TIMER: u64 = 0x2004_01e5;
/// MISC (constructed) of models without preemption timer.
const MISC_NO_TIMER: u64 = 0x0004_01e0;

/// TRUE_PINBASED (constructed): same as the plain MSR (no default1 pin control may be 0).
const fn true_pin(plain: u64) -> u64 {
    plain
}

/// TRUE_PROCBASED (constructed): CR3-load/CR3-store exiting (bits 15, 16) may be 0.
const fn true_proc(plain: u64) -> u64 {
    let may_be_zero = PrimaryControls::CR3_LOAD_EXITING.union(PrimaryControls::CR3_STORE_EXITING);
    plain & !(may_be_zero.bits() as u64)
}

/// TRUE_EXIT (constructed): "save debug controls" (bit 2) may be 0.
const fn true_exit(plain: u64) -> u64 {
    plain & !(ExitControls::SAVE_DEBUG_CONTROLS.bits() as u64)
}

/// TRUE_ENTRY (constructed): "load debug controls" (bit 2) may be 0.
const fn true_entry(plain: u64) -> u64 {
    plain & !(EntryControls::LOAD_DEBUG_CONTROLS.bits() as u64)
}

const fn with_true(mut raw: RawCapabilities) -> RawCapabilities {
    raw.true_pinbased = Some(true_pin(raw.pinbased));
    raw.true_procbased = Some(true_proc(raw.procbased));
    raw.true_exit = Some(true_exit(raw.exit));
    raw.true_entry = Some(true_entry(raw.entry));
    raw
}

/// corei7_skylake_x: EPT (4-level, 2M, 1G, A/D), VPID, unrestricted guest, APIC-register
/// virtualization, virtual-interrupt delivery, PML, VMFUNC, preemption timer; no MTF, no
/// posted interrupts.
pub const fn skylake_x() -> RawCapabilities {
    with_true(RawCapabilities {
        basic: 0x00d8_1000_0000_002b,
        pinbased: 0x0000_007f_0000_0016,
        procbased: 0xf7f9_fffe_0401_e172,
        exit: 0x007f_ffff_0003_6dff,
        entry: 0x0000_ffff_0000_11ff,
        misc: MISC_WITH_TIMER,
        cr0_fixed0: CR0_FIXED0,
        cr0_fixed1: CR0_FIXED1,
        cr4_fixed0: CR4_FIXED0,
        cr4_fixed1: CR4_FIXED1_MODERN,
        vmcs_enum: VMCS_ENUM,
        procbased2: Some(0x0217_7fff_0000_0000),
        ept_vpid_cap: Some(0x0f01_0633_4141),
        vmfunc: Some(1),
        true_pinbased: None,
        true_procbased: None,
        true_exit: None,
        true_entry: None,
    })
}

/// corei5_lynnfield_750 (constructed): EPT and VPID but no unrestricted guest, no
/// preemption timer, no VM functions (IA32_VMX_VMFUNC raises #GP).
pub const fn lynnfield() -> RawCapabilities {
    with_true(RawCapabilities {
        basic: 0x00d8_1000_0000_002b,
        pinbased: 0x0000_003f_0000_0016,
        procbased: 0xf7f9_fffe_0401_e172,
        exit: 0x003f_ffff_0003_6dff,
        entry: 0x0000_ffff_0000_11ff,
        misc: MISC_NO_TIMER,
        cr0_fixed0: CR0_FIXED0,
        cr0_fixed1: CR0_FIXED1,
        cr4_fixed0: CR4_FIXED0,
        cr4_fixed1: CR4_FIXED1_OLD,
        vmcs_enum: VMCS_ENUM,
        // Bits 0-6: up to "WBINVD exiting"; bit 7 (unrestricted guest) is 0.
        procbased2: Some(0x0000_007f_0000_0000),
        // Execute-only, walk 4, UC/WB, 2M, INVEPT single/all, INVVPID all four types.
        ept_vpid_cap: Some(0x0f01_0611_4141),
        vmfunc: None,
        true_pinbased: None,
        true_procbased: None,
        true_exit: None,
        true_entry: None,
    })
}

/// corei5_arrandale_m520 (constructed): like lynnfield plus unrestricted guest, PAUSE-loop
/// exiting and the preemption timer.
pub const fn arrandale() -> RawCapabilities {
    with_true(RawCapabilities {
        basic: 0x00d8_1000_0000_002b,
        pinbased: 0x0000_007f_0000_0016,
        procbased: 0xf7f9_fffe_0401_e172,
        exit: 0x007f_ffff_0003_6dff,
        entry: 0x0000_ffff_0000_11ff,
        misc: MISC_WITH_TIMER,
        cr0_fixed0: CR0_FIXED0,
        cr0_fixed1: CR0_FIXED1,
        cr4_fixed0: CR4_FIXED0,
        cr4_fixed1: CR4_FIXED1_OLD,
        vmcs_enum: VMCS_ENUM,
        // Bits 0-7 and 10.
        procbased2: Some(0x0000_04ff_0000_0000),
        ept_vpid_cap: Some(0x0f01_0611_4141),
        vmfunc: None,
        true_pinbased: None,
        true_procbased: None,
        true_exit: None,
        true_entry: None,
    })
}

/// corei7_icelake_u (constructed): revision id 0x4, MTF, everything skylake_x has plus
/// conceal-VMX-from-PT, mode-based execute control and advanced EPT-violation information.
pub const fn icelake_u() -> RawCapabilities {
    with_true(RawCapabilities {
        basic: 0x00d8_1000_0000_0004,
        pinbased: 0x0000_007f_0000_0016,
        procbased: 0xfff9_fffe_0401_e172,
        exit: 0x007f_ffff_0003_6dff,
        entry: 0x0000_ffff_0000_11ff,
        misc: MISC_WITH_TIMER,
        cr0_fixed0: CR0_FIXED0,
        cr0_fixed1: CR0_FIXED1,
        cr4_fixed0: CR4_FIXED0,
        cr4_fixed1: CR4_FIXED1_MODERN,
        vmcs_enum: VMCS_ENUM,
        procbased2: Some(0x025f_7fff_0000_0000),
        ept_vpid_cap: Some(0x0f01_0673_4141),
        vmfunc: Some(1),
        true_pinbased: None,
        true_procbased: None,
        true_exit: None,
        true_entry: None,
    })
}

/// tigerlake (constructed): same VMX feature set as icelake_u (revision id 0x4, MTF).
pub const fn tigerlake() -> RawCapabilities {
    icelake_u()
}

/// core2_penryn_t9600 (constructed): no secondary controls (so no EPT, VPID or unrestricted
/// guest; IA32_VMX_PROCBASED_CTLS2 and IA32_VMX_EPT_VPID_CAP raise #GP), no TRUE_* MSRs, no
/// preemption timer.
pub const fn core2_penryn() -> RawCapabilities {
    RawCapabilities {
        basic: 0x0058_1000_0000_002b,
        pinbased: 0x0000_003f_0000_0016,
        // Bit 63 ("activate secondary controls" allowed-1) is 0.
        procbased: 0x77f9_fffe_0401_e172,
        exit: 0x0003_ffff_0003_6dff,
        entry: 0x0000_3fff_0000_11ff,
        misc: MISC_NO_TIMER,
        cr0_fixed0: CR0_FIXED0,
        cr0_fixed1: CR0_FIXED1,
        cr4_fixed0: CR4_FIXED0,
        cr4_fixed1: CR4_FIXED1_OLD,
        vmcs_enum: VMCS_ENUM,
        procbased2: None,
        ept_vpid_cap: None,
        vmfunc: None,
        true_pinbased: None,
        true_procbased: None,
        true_exit: None,
        true_entry: None,
    }
}

/// A function returning the capabilities of one model.
pub type Model = fn() -> RawCapabilities;

/// Every model, with its Bochs name.
pub const MODELS: &[(&str, Model)] = &[
    ("corei7_skylake_x", skylake_x),
    ("corei5_lynnfield_750", lynnfield),
    ("corei5_arrandale_m520", arrandale),
    ("corei7_icelake_u", icelake_u),
    ("tigerlake", tigerlake),
    ("core2_penryn_t9600", core2_penryn),
];

/// The value of `msr` on the model described by `raw`, or `None` where that model raises #GP:
/// an optional MSR the model does not have, or any MSR outside the capability range.
pub fn msr_value(raw: &RawCapabilities, msr: Msr) -> Option<u64> {
    Some(match msr {
        Msr::IA32_VMX_BASIC => raw.basic,
        Msr::IA32_VMX_PINBASED_CTLS => raw.pinbased,
        Msr::IA32_VMX_PROCBASED_CTLS => raw.procbased,
        Msr::IA32_VMX_EXIT_CTLS => raw.exit,
        Msr::IA32_VMX_ENTRY_CTLS => raw.entry,
        Msr::IA32_VMX_MISC => raw.misc,
        Msr::IA32_VMX_CR0_FIXED0 => raw.cr0_fixed0,
        Msr::IA32_VMX_CR0_FIXED1 => raw.cr0_fixed1,
        Msr::IA32_VMX_CR4_FIXED0 => raw.cr4_fixed0,
        Msr::IA32_VMX_CR4_FIXED1 => raw.cr4_fixed1,
        Msr::IA32_VMX_VMCS_ENUM => raw.vmcs_enum,
        Msr::IA32_VMX_PROCBASED_CTLS2 => raw.procbased2?,
        Msr::IA32_VMX_EPT_VPID_CAP => raw.ept_vpid_cap?,
        Msr::IA32_VMX_VMFUNC => raw.vmfunc?,
        Msr::IA32_VMX_TRUE_PINBASED_CTLS => raw.true_pinbased?,
        Msr::IA32_VMX_TRUE_PROCBASED_CTLS => raw.true_procbased?,
        Msr::IA32_VMX_TRUE_EXIT_CTLS => raw.true_exit?,
        Msr::IA32_VMX_TRUE_ENTRY_CTLS => raw.true_entry?,
        _ => return None,
    })
}

/// A fake `rdmsr` for [`RawCapabilities::read`] that panics, like a #GP, when asked for an
/// MSR the model does not have.
pub fn strict_rdmsr(raw: RawCapabilities) -> impl FnMut(Msr) -> u64 {
    move |msr| match msr_value(&raw, msr) {
        Some(v) => v,
        None => panic!("rdmsr({msr}) raises #GP on this CPU model"),
    }
}
