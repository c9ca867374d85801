//! The boot-time platform report: what the CPU is, whether and how VT-x can be used, every
//! VMX capability by name, and the memory map; plus the diagnosis when VT-x cannot be used.

use crate::arch;
use crate::exit::ExitStatus;
use log::{error, info, warn};
use raw_cpuid::CpuId;
use vmx::caps::{Capabilities, RawCapabilities};
use vmx::msr::{FeatureControl, Msr};

/// Why VT-x cannot be used, with the one sentence the user gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unavailable {
    NotIntel,
    NoVmx,
    DisabledByFirmware { feature_control: u64 },
    MissingFeature(&'static str),
}

impl Unavailable {
    pub fn status(self) -> ExitStatus {
        match self {
            Unavailable::NotIntel => ExitStatus::NotIntel,
            Unavailable::NoVmx => ExitStatus::NoVmx,
            Unavailable::DisabledByFirmware { .. } => ExitStatus::VmxDisabledByFirmware,
            Unavailable::MissingFeature(_) => ExitStatus::VmxFeatureMissing,
        }
    }

    fn explain(self, vendor: &str) {
        match self {
            Unavailable::NotIntel => error!(
                "cannot run: this CPU is {vendor}, not Intel, and Bulkhead needs Intel VT-x; run it on an \
                 Intel machine, or under QEMU/KVM on an Intel host with nested VMX (kvm_intel nested=1, -cpu host)"
            ),
            Unavailable::NoVmx => error!(
                "cannot run: the CPU does not offer VT-x (CPUID.1:ECX.VMX = 0); enable Intel Virtualization \
                 Technology in the firmware setup, or on QEMU/KVM enable nested VMX (kvm_intel nested=1) and use -cpu host"
            ),
            Unavailable::DisabledByFirmware { feature_control } => error!(
                "cannot run: the firmware disabled VT-x and locked it (IA32_FEATURE_CONTROL = {feature_control:#x}); \
                 enable Intel Virtualization Technology in the firmware setup, then power-cycle the machine"
            ),
            Unavailable::MissingFeature(what) => error!(
                "cannot run: this CPU's VT-x lacks {what}, which Bulkhead requires; use an Intel CPU from \
                 Westmere (2010) on, QEMU/KVM with -cpu host on such a host, or a Bochs model from \
                 corei5_arrandale_m520 on"
            ),
        }
    }
}

/// What the CPU reported, kept for later stages (VMXON, VMCS setup).
#[derive(Debug)]
pub struct Platform {
    pub capabilities: Option<Capabilities>,
    /// The capability MSRs as read on the boot CPU: every other CPU must read the same.
    pub raw_capabilities: Option<RawCapabilities>,
}

/// SDM Vol. 3C §24.7: VMXON needs IA32_FEATURE_CONTROL locked with "enable VMX outside SMX"
/// set. Firmware normally does this; when it left the MSR unlocked (OVMF does), set the bit
/// (and "inside SMX" when SMX exists) and lock it ourselves. Returns the final value; `log`
/// prints what was found (the boot CPU's report; application processors stay quiet).
pub fn enable_feature_control(smx: bool, log: bool) -> Result<u64, Unavailable> {
    // SAFETY: IA32_FEATURE_CONTROL exists when CPUID.1:ECX.VMX or .SMX is set (SDM Vol. 4,
    // Table 2-2), which the caller checked.
    let value = unsafe { arch::rdmsr(Msr::IA32_FEATURE_CONTROL) };
    let fc = FeatureControl::from_bits_retain(value);
    if fc.contains(FeatureControl::LOCK) {
        if fc.contains(FeatureControl::VMX_OUTSIDE_SMX) {
            if log {
                info!("feature control: IA32_FEATURE_CONTROL = {value:#x} (locked by the firmware, VMX outside SMX enabled)");
            }
            return Ok(value);
        }
        return Err(Unavailable::DisabledByFirmware {
            feature_control: value,
        });
    }
    let mut new = fc | FeatureControl::LOCK | FeatureControl::VMX_OUTSIDE_SMX;
    if smx {
        new |= FeatureControl::VMX_INSIDE_SMX;
    }
    // SAFETY: the MSR exists (above) and is unlocked, so the write is architecturally allowed;
    // enabling VMX has no effect on the kernel's memory.
    unsafe { arch::wrmsr(Msr::IA32_FEATURE_CONTROL, new.bits()) };
    // SAFETY: as for the first read.
    let now = unsafe { arch::rdmsr(Msr::IA32_FEATURE_CONTROL) };
    if log {
        info!(
            "feature control: IA32_FEATURE_CONTROL was {value:#x} (unlocked); Bulkhead enabled VMX outside SMX \
             and locked it: now {now:#x}"
        );
    }
    Ok(now)
}

/// Prints the platform report and decides whether VT-x can be used.
pub fn report(memory: &crate::memory::MemorySummary) -> (Platform, Result<(), Unavailable>) {
    let cpuid = CpuId::new();
    let vendor = cpuid.get_vendor_info();
    let vendor = vendor.as_ref().map_or("an unknown vendor", |v| v.as_str());
    let features = cpuid.get_feature_info();
    let brand = cpuid.get_processor_brand_string();
    let brand = brand.as_ref().map_or("", |b| b.as_str().trim());
    let (family, model, stepping) = features.as_ref().map_or((0, 0, 0), |f| {
        (f.family_id(), f.model_id(), f.stepping_id())
    });
    let has_vmx = features.as_ref().is_some_and(|f| f.has_vmx());
    let has_smx = features.as_ref().is_some_and(|f| f.has_smx());
    let hv = features.as_ref().is_some_and(|f| f.has_hypervisor());

    info!("platform: {}", crate::exit::platform().name());
    info!("cpu: {vendor} family {family:#x} model {model:#x} stepping {stepping} \"{brand}\"");
    info!(
        "cpu: VMX {} (CPUID.1:ECX[5]), SMX {}, hypervisor bit {}",
        yes(has_vmx),
        yes(has_smx),
        yes(hv)
    );
    info!(
        "memory: {} map entries, {} MiB usable in {} regions (largest {} MiB), highest address {:#x}, \
         heap {} MiB at {:#x}",
        memory.regions,
        memory.usable_bytes >> 20,
        memory.usable_regions,
        memory.largest_usable >> 20,
        memory.highest_address,
        memory.heap_size >> 20,
        memory.heap_start
    );
    if memory.ignored_regions > 0 {
        warn!(
            "memory: {} usable regions beyond the first 64 are left unused",
            memory.ignored_regions
        );
    }

    let mut platform = Platform {
        capabilities: None,
        raw_capabilities: None,
    };
    let verdict = (|| {
        if !has_vmx {
            return Err(if vendor == "GenuineIntel" {
                Unavailable::NoVmx
            } else {
                Unavailable::NotIntel
            });
        }
        // The capability MSRs are readable whenever CPUID reports VMX (SDM Vol. 3D A.1),
        // even when the firmware locked VMX off: report them first.
        let raw = RawCapabilities::read(|m| {
            // SAFETY: `RawCapabilities::read` only asks for MSRs whose existence CPUID.1:ECX.VMX
            // or a capability bit establishes (SDM Vol. 3D Appendix A).
            unsafe { arch::rdmsr(m) }
        });
        let caps = Capabilities::decode(&raw);
        for line in alloc::format!("{caps}").lines() {
            info!("vmx: {line}");
        }
        platform.capabilities = Some(caps.clone());
        platform.raw_capabilities = Some(raw);
        enable_feature_control(has_smx, true)?;
        if !caps.has_ept() {
            return Err(Unavailable::MissingFeature("EPT (extended page tables)"));
        }
        if !caps.has_unrestricted_guest() {
            return Err(Unavailable::MissingFeature("unrestricted guest"));
        }
        Ok(())
    })();
    match verdict {
        Ok(()) => {
            info!("bulkhead: VT-x is usable: EPT and unrestricted guest present, VMX enabled")
        }
        Err(why) => why.explain(vendor),
    }
    (platform, verdict)
}

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}
