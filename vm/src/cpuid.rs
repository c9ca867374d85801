//! Per-VM CPUID policy (SDM Vol. 2A, "CPUID—CPU Identification", and SDM Vol. 3C §26.1.2:
//! CPUID always causes a VM exit in VMX non-root operation).
//!
//! [`CpuidPolicy::from_host`] runs once at VM creation: it queries the host through a closure
//! and precomputes a sorted table of what the guest sees, so each CPUID exit is a binary
//! search plus a few per-vCPU patches ([`CpuidPolicy::lookup`]). The policy is an allowlist:
//! a feature bit reaches the guest only if the host has it *and* Bulkhead can let the guest
//! use it without emulation it does not have. Notably:
//!
//! * hidden: VMX and SMX (so a guest never tries VMXON), MONITOR/MWAIT, the PMU (leaf 0xA
//!   zeroed, PDCM, DS), thermal/power management (leaf 6 except ARAT), SGX, PT,
//!   WAITPKG, CET, the speculation-control MSR features (their MSRs raise #GP),
//!   MPX and AMX state, XSAVES/XSAVEC, RDT; x2APIC, TSC-deadline and the local APIC itself
//!   unless the configuration enables them (the hypervisor emulates them: offered then
//!   whatever the host has); INVPCID unless enabled (it needs the "enable INVPCID" VM-execution control);
//!   every feature whose VM-execution control the CPU cannot set or whose CR4 bit CR4_FIXED1
//!   refuses ([`crate::features`]: hidden means unusable, offered means usable);
//! * emulated whatever the host has: MCE/MCA with zero banks (IA32_MCG_CAP = 0) and
//!   TSC_ADJUST (CPUID.7.0:EBX[1], [`crate::msr`]);
//! * set: the hypervisor-present bit CPUID.1:ECX[31] (Linux relies on it, e.g. to skip the
//!   TSC-deadline microcode errata check);
//! * per vCPU: the initial APIC ID in CPUID.1:EBX[31:24] and the x2APIC ID in leaves
//!   0xB/0x1F EDX, a synthesised topology (one thread per core, all vCPUs in one package);
//! * dynamic: CPUID.1:ECX.OSXSAVE mirrors the guest's CR4.OSXSAVE, CPUID.7.0:ECX.OSPKE
//!   its CR4.PKE, CPUID.0xD.0:EBX the XSAVE area size for its current XCR0, and
//!   IA32_MISC_ENABLE's "limit CPUID maxval" caps the basic leaves at 2;
//! * hypervisor leaves 0x40000000.. with the caller's signature and data, optionally the
//!   VMware-style TSC/bus frequency leaf 0x40000010;
//! * optionally KVM's block at 0x40000100 ([`crate::kvm_pv`]): a second signature a guest's
//!   scan of the hypervisor range in 0x100 steps finds, with invariant TSC hidden (see
//!   [`CpuidConfig::kvm_leaves`]);
//! * leaves 0x15/0x16 from the TSC frequency the caller measured (raising the maximum basic
//!   leaf to 0x16 if needed), so Linux knows the TSC frequency without calibrating it.
//!
//! Out-of-range leaves follow Intel's rule (SDM Vol. 2A CPUID, "If a value entered for
//! CPUID.EAX is higher than the maximum input value for basic or extended function for that
//! processor then the data for the highest basic information leaf is returned"), except that
//! unused leaves of the hypervisor range 0x40000000-0x4FFFFFFF read as zeros so that
//! signature probes at 0x40000100, 0x40000200, ... find nothing.

use alloc::vec::Vec;

/// Hypervisor-range base leaf.
pub const HV_BASE_LEAF: u32 = 0x4000_0000;
/// Last leaf of the hypervisor range.
pub const HV_LAST_LEAF: u32 = 0x4fff_ffff;
/// The VMware-style timing leaf: EAX = TSC kHz, EBX = bus (APIC timer) kHz.
pub const HV_TIMING_LEAF: u32 = 0x4000_0010;
/// Base of the extended leaves.
pub const EXT_BASE_LEAF: u32 = 0x8000_0000;
/// Highest extended leaf exposed.
pub const EXT_MAX_LEAF: u32 = 0x8000_0008;
/// Most vCPUs the topology leaves describe.
pub const MAX_VCPUS: u32 = 1 << 16;
/// The highest basic leaf while IA32_MISC_ENABLE limits CPUID (SDM Vol. 4 Table 2-2).
pub const LIMITED_MAX_BASIC: u32 = 2;
/// Highest basic leaf ever exposed (bounds the table).
pub const BASIC_LEAF_CAP: u32 = 0x3f;

/// Feature bits referred to by the policy and its users.
pub mod bits {
    /// CPUID.1:ECX.MONITOR.
    pub const ECX1_MONITOR: u32 = 1 << 3;
    /// CPUID.1:ECX.VMX.
    pub const ECX1_VMX: u32 = 1 << 5;
    /// CPUID.1:ECX.SMX.
    pub const ECX1_SMX: u32 = 1 << 6;
    /// CPUID.1:ECX.PDCM.
    pub const ECX1_PDCM: u32 = 1 << 15;
    /// CPUID.1:ECX.PCID.
    pub const ECX1_PCID: u32 = 1 << 17;
    /// CPUID.1:ECX.x2APIC.
    pub const ECX1_X2APIC: u32 = 1 << 21;
    /// CPUID.1:ECX.TSC-Deadline.
    pub const ECX1_TSC_DEADLINE: u32 = 1 << 24;
    /// CPUID.1:ECX.XSAVE.
    pub const ECX1_XSAVE: u32 = 1 << 26;
    /// CPUID.1:ECX.OSXSAVE.
    pub const ECX1_OSXSAVE: u32 = 1 << 27;
    /// CPUID.1:ECX.AVX.
    pub const ECX1_AVX: u32 = 1 << 28;
    /// CPUID.1:ECX[31], "hypervisor present".
    pub const ECX1_HYPERVISOR: u32 = 1 << 31;
    /// CPUID.1:EDX.MCE.
    pub const EDX1_MCE: u32 = 1 << 7;
    /// CPUID.1:EDX.APIC.
    pub const EDX1_APIC: u32 = 1 << 9;
    /// CPUID.1:EDX.MTRR.
    pub const EDX1_MTRR: u32 = 1 << 12;
    /// CPUID.1:EDX.MCA.
    pub const EDX1_MCA: u32 = 1 << 14;
    /// CPUID.1:EDX.HTT.
    pub const EDX1_HTT: u32 = 1 << 28;
    /// CPUID.6:EAX.ARAT.
    pub const EAX6_ARAT: u32 = 1 << 2;
    /// CPUID.7.0:EBX.TSC_ADJUST.
    pub const EBX7_TSC_ADJUST: u32 = 1 << 1;
    /// CPUID.7.0:EBX.SGX.
    pub const EBX7_SGX: u32 = 1 << 2;
    /// CPUID.7.0:EBX.AVX2.
    pub const EBX7_AVX2: u32 = 1 << 5;
    /// CPUID.7.0:EBX.INVPCID.
    pub const EBX7_INVPCID: u32 = 1 << 10;
    /// CPUID.7.0:EBX.PT.
    pub const EBX7_PT: u32 = 1 << 25;
    /// CPUID.7.0:ECX.PKU.
    pub const ECX7_PKU: u32 = 1 << 3;
    /// CPUID.7.0:ECX.OSPKE.
    pub const ECX7_OSPKE: u32 = 1 << 4;
    /// CPUID.7.0:ECX.WAITPKG.
    pub const ECX7_WAITPKG: u32 = 1 << 5;
    /// CPUID.7.0:EDX.ARCH_CAPABILITIES.
    pub const EDX7_ARCH_CAPABILITIES: u32 = 1 << 29;
    /// CPUID.80000001:EDX.LM.
    pub const EDX81_LM: u32 = 1 << 29;
    /// CPUID.80000001:EDX.RDTSCP.
    pub const EDX81_RDTSCP: u32 = 1 << 27;
    /// CPUID.7.0:ECX.RDPID.
    pub const ECX7_RDPID: u32 = 1 << 22;
    /// CPUID.80000001:EDX.NX.
    pub const EDX81_NX: u32 = 1 << 20;
    /// CR4.OSXSAVE.
    pub const CR4_OSXSAVE: u64 = 1 << 18;
    /// CR4.PKE.
    pub const CR4_PKE: u64 = 1 << 22;
}

use bits::*;

/// CPUID.1:ECX bits passed through when the host has them (SSE3, PCLMULQDQ, SSSE3, CX16,
/// SSE4.1, SSE4.2, MOVBE, POPCNT, AES, RDRAND).
const ECX1_BASE: u32 = (1 << 0)
    | (1 << 1)
    | (1 << 9)
    | (1 << 13)
    | (1 << 19)
    | (1 << 20)
    | (1 << 22)
    | (1 << 23)
    | (1 << 25)
    | (1 << 30);
/// CPUID.1:ECX bits that need XSAVE-managed state (FMA, XSAVE, AVX, F16C).
const ECX1_XSAVE_GROUP: u32 = (1 << 12) | ECX1_XSAVE | ECX1_AVX | (1 << 29);
/// CPUID.1:EDX bits passed through (FPU, VME, DE, PSE, TSC, MSR, PAE, CX8, SEP, MTRR, PGE,
/// CMOV, PAT, PSE-36, CLFSH, MMX, FXSR, SSE, SSE2, SS).
const EDX1_BASE: u32 = (1 << 0)
    | (1 << 1)
    | (1 << 2)
    | (1 << 3)
    | (1 << 4)
    | (1 << 5)
    | (1 << 6)
    | (1 << 8)
    | (1 << 11)
    | EDX1_MTRR
    | (1 << 13)
    | (1 << 15)
    | (1 << 16)
    | (1 << 17)
    | (1 << 19)
    | (1 << 23)
    | (1 << 24)
    | (1 << 25)
    | (1 << 26)
    | (1 << 27);
/// CPUID.7.0:EBX bits passed through (FSGSBASE, BMI1, HLE, FDP_EXCPTN_ONLY, SMEP, BMI2,
/// ERMS, RTM, FPU CS/DS deprecation, RDSEED, ADX, SMAP, CLFLUSHOPT, CLWB, SHA).
const EBX7_BASE: u32 = (1 << 0)
    | (1 << 3)
    | (1 << 4)
    | (1 << 6)
    | (1 << 7)
    | (1 << 8)
    | (1 << 9)
    | (1 << 11)
    | (1 << 13)
    | (1 << 18)
    | (1 << 19)
    | (1 << 20)
    | (1 << 23)
    | (1 << 24)
    | (1 << 29);
/// CPUID.7.0:EBX AVX2 and AVX-512 bits.
const EBX7_XSAVE_GROUP: u32 = EBX7_AVX2
    | (1 << 16)
    | (1 << 17)
    | (1 << 21)
    | (1 << 26)
    | (1 << 27)
    | (1 << 28)
    | (1 << 30)
    | (1 << 31);
/// CPUID.7.0:ECX bits passed through (PREFETCHWT1, UMIP, GFNI, LA57, RDPID, CLDEMOTE,
/// MOVDIRI, MOVDIR64B).
const ECX7_BASE: u32 =
    (1 << 0) | (1 << 2) | (1 << 8) | (1 << 16) | (1 << 22) | (1 << 25) | (1 << 27) | (1 << 28);
/// CPUID.7.0:ECX bits needing XSAVE state (AVX512_VBMI, PKU, VBMI2, VAES, VPCLMULQDQ, VNNI,
/// BITALG, VPOPCNTDQ).
const ECX7_XSAVE_GROUP: u32 =
    (1 << 1) | ECX7_PKU | (1 << 6) | (1 << 9) | (1 << 10) | (1 << 11) | (1 << 12) | (1 << 14);
/// CPUID.7.0:EDX bits passed through (FSRM, MD_CLEAR, SERIALIZE, TSXLDTRK).
const EDX7_BASE: u32 = (1 << 4) | (1 << 10) | (1 << 14) | (1 << 16);
/// CPUID.7.0:EDX AVX-512 bits (4VNNIW, 4FMAPS, VP2INTERSECT, FP16).
const EDX7_XSAVE_GROUP: u32 = (1 << 2) | (1 << 3) | (1 << 8) | (1 << 23);
/// CPUID.7.1:EAX bits passed through (fast zero-length MOVSB, FSRS, FSRC).
const EAX71_BASE: u32 = (1 << 10) | (1 << 11) | (1 << 12);
/// CPUID.7.1:EAX bits needing XSAVE state (AVX-VNNI, AVX512_BF16).
const EAX71_XSAVE_GROUP: u32 = (1 << 4) | (1 << 5);
/// XCR0 components the guest may enable: x87, SSE, AVX, AVX-512 (opmask, ZMM_Hi256,
/// Hi16_ZMM), PKRU. Not MPX (3-4) or AMX (17-18).
const XCR0_ALLOWED: u64 = 0b10_1110_0111;
/// CPUID.0xD.1:EAX bits passed through (XSAVEOPT, XGETBV with ECX = 1).
const EAX_D1_ALLOWED: u32 = (1 << 0) | (1 << 2);
/// CPUID.80000001:ECX bits passed through (LAHF/SAHF, LZCNT, PREFETCHW).
const ECX81_ALLOWED: u32 = (1 << 0) | (1 << 5) | (1 << 8);
/// CPUID.80000001:EDX bits passed through (SYSCALL, NX, 1-GByte pages, RDTSCP, LM).
const EDX81_ALLOWED: u32 = (1 << 11) | EDX81_NX | (1 << 26) | (1 << 27) | EDX81_LM;
/// CPUID.80000007:EDX invariant TSC.
const EDX87_INVARIANT_TSC: u32 = 1 << 8;
/// Legacy region plus XSAVE header: the XSAVE area size with only x87/SSE enabled.
const XSAVE_LEGACY_SIZE: u32 = 576;

/// Hypervisor leaves supplied by the caller (the hypercall crate defines their contents).
#[derive(Debug, Clone, Copy)]
pub struct HypervisorLeaves<'a> {
    /// Highest hypervisor leaf (EAX of 0x40000000), at least 0x40000000.
    pub max_leaf: u32,
    /// Vendor signature returned in EBX, ECX, EDX of 0x40000000.
    pub signature: [u8; 12],
    /// Data of leaves 0x40000001..=max_leaf as (leaf, [EAX, EBX, ECX, EDX]); leaves not
    /// listed read as zeros.
    pub leaves: &'a [(u32, [u32; 4])],
}

/// What the guest may see beyond the fixed policy.
#[derive(Debug, Clone, Copy)]
pub struct CpuidConfig<'a> {
    /// Number of vCPUs (topology leaves), 1..=[`MAX_VCPUS`].
    pub vcpus: u32,
    /// Upper bound on the maximum basic leaf (after raising it to 0x16 for `tsc_hz`).
    pub max_basic_leaf: Option<u32>,
    /// TSC frequency to publish in leaves 0x15/0x16 (and 0x40000010 if enabled).
    pub tsc_hz: Option<u64>,
    /// Expose the local APIC (CPUID.1:EDX.APIC, CPUID.6:EAX.ARAT).
    pub local_apic: bool,
    /// Expose x2APIC (needs `local_apic`).
    pub x2apic: bool,
    /// Expose the TSC-deadline timer (needs `local_apic`).
    pub tsc_deadline: bool,
    /// Expose XSAVE and the AVX family (the hypervisor must handle XSETBV exits).
    pub xsave: bool,
    /// Expose PCID.
    pub pcid: bool,
    /// Expose INVPCID (the hypervisor must set "enable INVPCID").
    pub invpcid: bool,
    /// Expose RDTSCP and RDPID (needs "enable RDTSCP").
    pub rdtscp: bool,
    /// Expose MCE/MCA with zero machine-check banks (IA32_MCG_CAP reads 0).
    pub mca: bool,
    /// Expose IA32_TSC_ADJUST (CPUID.7.0:EBX[1]; the MSR policy emulates it).
    pub tsc_adjust: bool,
    /// The secondary controls the CPU can set (IA32_VMX_PROCBASED_CTLS2 allowed 1-settings):
    /// a feature whose enabling control is missing is hidden ([`crate::features`]).
    pub secondary_allowed: vmx::controls::SecondaryControls,
    /// The CR4 bits the CPU allows in VMX operation (IA32_VMX_CR4_FIXED1): a feature whose
    /// CR4 bit is refused is hidden.
    pub cr4_allowed: u64,
    /// Clamp CPUID.80000008:EAX[7:0] (guest physical address width) to this many bits.
    pub phys_addr_bits: Option<u8>,
    /// Publish the VMware-style timing leaf 0x40000010 (requires `tsc_hz`).
    pub timing_leaf: bool,
    /// APIC timer / bus frequency in kHz for leaf 0x40000010 EBX.
    pub bus_khz: u32,
    /// Hypervisor leaves.
    pub hypervisor: HypervisorLeaves<'a>,
    /// KVM's paravirtual leaves ([`crate::kvm_pv::cpuid_leaves`], at 0x40000100 and
    /// 0x40000101), for a VM offered the KVM interface. They also hide invariant TSC
    /// (CPUID.80000007:EDX[8]): Linux 6.1 `kvmclock_init()` (arch/x86/kernel/kvmclock.c)
    /// drops kvm-clock's rating from 400 to 299, below the TSC clocksource's 300
    /// (arch/x86/kernel/tsc.c), when CONSTANT_TSC and NONSTOP_TSC are both set and the TSC is
    /// not marked unstable; NONSTOP_TSC (and CONSTANT_TSC with it) comes from exactly this
    /// bit (arch/x86/kernel/cpu/intel.c `early_init_intel`). Without it kvm-clock keeps 400
    /// and is chosen, so clock reads go through the per-vCPU `pvclock_vcpu_time_info` that
    /// stays right when a vCPU moves between physical CPUs.
    pub kvm_leaves: Option<[(u32, [u32; 4]); 2]>,
}

impl<'a> CpuidConfig<'a> {
    /// The default policy for one vCPU in `nolapic` mode with XSAVE and PCID, and the given
    /// hypervisor leaves.
    pub const fn new(hypervisor: HypervisorLeaves<'a>) -> Self {
        Self {
            vcpus: 1,
            max_basic_leaf: None,
            tsc_hz: None,
            local_apic: false,
            x2apic: false,
            tsc_deadline: false,
            xsave: true,
            pcid: true,
            invpcid: false,
            rdtscp: true,
            mca: true,
            tsc_adjust: true,
            secondary_allowed: vmx::controls::SecondaryControls::all(),
            cr4_allowed: u64::MAX,
            phys_addr_bits: None,
            timing_leaf: false,
            bus_khz: 1_000_000,
            hypervisor,
            kvm_leaves: None,
        }
    }
}

/// The per-vCPU inputs of a lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VcpuCpuidState {
    /// Initial (x2)APIC ID of this vCPU.
    pub apic_id: u32,
    /// The guest's CR4 (for OSXSAVE, OSPKE).
    pub cr4: u64,
    /// The guest's XCR0 (for the XSAVE area size).
    pub xcr0: u64,
    /// IA32_MISC_ENABLE[22] "limit CPUID maxval": CPUID.0:EAX reads 2 and higher basic
    /// leaves answer as leaf 2 (SDM Vol. 4 Table 2-2).
    pub limit_cpuid: bool,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    leaf: u32,
    subleaf: u32,
    regs: [u32; 4],
}

/// Where one leaf's entries are in [`CpuidPolicy::entries`]: `len` entries from `start`
/// (one per subleaf of an indexed leaf; `len` 0 when the leaf has none).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Span {
    start: u16,
    len: u16,
}

/// The leaf windows [`CpuidPolicy::spans`] covers, as (first leaf, slots): every basic leaf
/// the table can hold, the extended leaves exposed, and Bulkhead's and KVM's hypervisor
/// blocks. A CPUID exit for a leaf in them finds its entries by indexing, not by a binary
/// search (some 90 instructions of a 160-instruction lookup in Bochs; issue 14).
const DENSE_WINDOWS: [(u32, usize); 4] = [
    (0, BASIC_LEAF_CAP as usize + 1),
    (HV_BASE_LEAF, 0x20),
    (crate::kvm_pv::CPUID_BASE, 0x10),
    (EXT_BASE_LEAF, (EXT_MAX_LEAF - EXT_BASE_LEAF) as usize + 1),
];
/// Slots in all of [`DENSE_WINDOWS`].
const DENSE_SLOTS: usize = {
    let mut n = 0;
    let mut i = 0;
    while i < DENSE_WINDOWS.len() {
        n += DENSE_WINDOWS[i].1;
        i += 1;
    }
    n
};

/// `leaf`'s slot in [`CpuidPolicy::spans`], if one of [`DENSE_WINDOWS`] holds it.
#[inline]
fn dense_slot(leaf: u32) -> Option<usize> {
    let mut base = 0;
    for (first, slots) in DENSE_WINDOWS {
        let offset = leaf.wrapping_sub(first) as usize;
        if offset < slots {
            return Some(base + offset);
        }
        base += slots;
    }
    None
}

/// The precomputed CPUID table of one VM.
#[derive(Debug, Clone)]
pub struct CpuidPolicy {
    /// Sorted by (leaf, subleaf).
    entries: Vec<Entry>,
    /// Each dense leaf's entries ([`dense_slot`]), built with `entries`.
    spans: [Span; DENSE_SLOTS],
    max_basic: u32,
    max_ext: u32,
    hv_max: u32,
    /// (offset + size) of XSAVE components 2..=9 that the guest may enable.
    xsave_ends: [u32; 10],
    xcr0_supported: u64,
    xsave: bool,
    pku: bool,
}

/// Leaves whose output depends on ECX (SDM Vol. 2A Table 3-8).
fn indexed(leaf: u32) -> bool {
    matches!(
        leaf,
        0x4 | 0x7 | 0xb | 0xd | 0xf | 0x10 | 0x12 | 0x14 | 0x17 | 0x18 | 0x1d | 0x1e | 0x1f | 0x20
    )
}

fn bits_for(count: u32) -> u32 {
    // ceil(log2(count)), 0 for 0 or 1.
    32 - count.max(1).saturating_sub(1).leading_zeros()
}

impl CpuidPolicy {
    /// Builds the table from `host(leaf, subleaf) -> [EAX, EBX, ECX, EDX]` and `config`.
    pub fn from_host<F>(mut host: F, config: &CpuidConfig<'_>) -> Self
    where
        F: FnMut(u32, u32) -> [u32; 4],
    {
        let vcpus = config.vcpus.clamp(1, MAX_VCPUS);
        let core_bits = bits_for(vcpus);
        let local_apic = config.local_apic;
        let host0 = host(0, 0);
        let mut max_basic = host0[0].min(BASIC_LEAF_CAP);
        if config.tsc_hz.is_some() {
            max_basic = max_basic.max(0x16);
        }
        if let Some(clamp) = config.max_basic_leaf {
            max_basic = max_basic.min(clamp);
        }
        let host_max_basic = host0[0];
        let mut host_leaf = |leaf: u32, sub: u32| {
            if leaf <= host_max_basic {
                host(leaf, sub)
            } else {
                [0; 4]
            }
        };

        let mut entries = Vec::new();
        let mut push = |leaf: u32, subleaf: u32, regs: [u32; 4]| {
            entries.push(Entry {
                leaf,
                subleaf,
                regs,
            })
        };

        // XSAVE components.
        let host_d0 = if config.xsave {
            host_leaf(0xd, 0)
        } else {
            [0; 4]
        };
        let host_xcr0 = u64::from(host_d0[0]) | (u64::from(host_d0[3]) << 32);
        let xsave = config.xsave && host_leaf(1, 0)[2] & ECX1_XSAVE != 0;
        let xcr0_supported = if xsave { host_xcr0 & XCR0_ALLOWED } else { 0 };
        let mut xsave_ends = [0u32; 10];
        let mut xsave_components = [[0u32; 4]; 10];
        for (i, end) in xsave_ends.iter_mut().enumerate().skip(2) {
            if xcr0_supported & (1 << i) != 0 {
                let r = host_leaf(0xd, i as u32);
                xsave_components[i] = r;
                *end = r[1].saturating_add(r[0]);
            }
        }
        let xsave_max = xsave_ends.iter().copied().fold(XSAVE_LEGACY_SIZE, u32::max);

        let mut pku = false;
        for leaf in 0..=max_basic {
            match leaf {
                0 => {
                    let h = host0;
                    push(0, 0, [max_basic, h[1], h[2], h[3]]);
                }
                1 => {
                    let h = host_leaf(1, 0);
                    let mut ecx = h[2] & ECX1_BASE;
                    if config.pcid {
                        ecx |= h[2] & ECX1_PCID;
                    }
                    if xsave {
                        ecx |= h[2] & ECX1_XSAVE_GROUP;
                    }
                    // The guest's local APIC is emulated (vm::apic), x2APIC and the
                    // TSC-deadline timer included: offered whatever the host has.
                    if local_apic && config.x2apic {
                        ecx |= ECX1_X2APIC;
                    }
                    if local_apic && config.tsc_deadline {
                        ecx |= ECX1_TSC_DEADLINE;
                    }
                    ecx |= ECX1_HYPERVISOR;
                    let mut edx = h[3] & EDX1_BASE;
                    if config.mca {
                        // Emulated with zero banks whatever the host has (vm::msr).
                        edx |= EDX1_MCE | EDX1_MCA;
                    }
                    if local_apic {
                        edx |= EDX1_APIC;
                    }
                    let logical = (1u32 << core_bits).min(255);
                    if vcpus > 1 {
                        edx |= EDX1_HTT;
                    }
                    // EBX: brand index and CLFLUSH size kept, logical count set, APIC ID
                    // patched per vCPU.
                    let ebx = (h[1] & 0xffff) | (logical << 16);
                    push(1, 0, [h[0], ebx, ecx, edx]);
                }
                2 => push(2, 0, host_leaf(2, 0)),
                4 => {
                    for sub in 0..16 {
                        let mut r = host_leaf(4, sub);
                        let cache_type = r[0] & 0x1f;
                        if cache_type != 0 {
                            let level = (r[0] >> 5) & 7;
                            let sharing = if level >= 3 {
                                ((1u32 << core_bits) - 1).min(0xfff)
                            } else {
                                0
                            };
                            let cores = ((1u32 << core_bits) - 1).min(0x3f);
                            r[0] = (r[0] & 0x3fff) | (sharing << 14) | (cores << 26);
                        }
                        push(4, sub, r);
                        if cache_type == 0 {
                            break;
                        }
                    }
                }
                6 => {
                    let arat = if local_apic {
                        host_leaf(6, 0)[0] & EAX6_ARAT
                    } else {
                        0
                    };
                    push(6, 0, [arat, 0, 0, 0]);
                }
                7 => {
                    let h = host_leaf(7, 0);
                    let max_sub = h[0].min(2);
                    let mut ebx = h[1] & EBX7_BASE;
                    let mut ecx = h[2] & ECX7_BASE;
                    let mut edx = h[3] & EDX7_BASE;
                    if config.invpcid {
                        ebx |= h[1] & EBX7_INVPCID;
                    }
                    if config.tsc_adjust {
                        // Emulated through the TSC offset whatever the host has (vm::msr).
                        ebx |= EBX7_TSC_ADJUST;
                    }
                    if !config.rdtscp {
                        ecx &= !ECX7_RDPID;
                    }
                    if xsave {
                        ebx |= h[1] & EBX7_XSAVE_GROUP;
                        ecx |= h[2] & ECX7_XSAVE_GROUP;
                        edx |= h[3] & EDX7_XSAVE_GROUP;
                        // PKU needs the PKRU component.
                        if xcr0_supported & (1 << 9) == 0 {
                            ecx &= !ECX7_PKU;
                        }
                    }
                    pku = ecx & ECX7_PKU != 0;
                    push(7, 0, [max_sub, ebx, ecx, edx]);
                    if max_sub >= 1 {
                        let h1 = host_leaf(7, 1);
                        let mut eax = h1[0] & EAX71_BASE;
                        if xsave {
                            eax |= h1[0] & EAX71_XSAVE_GROUP;
                        }
                        push(7, 1, [eax, 0, 0, 0]);
                    }
                    if max_sub >= 2 {
                        push(7, 2, [0; 4]);
                    }
                }
                0xb | 0x1f => {
                    // Level 0: SMT (one thread per core); level 1: core (all vCPUs).
                    push(leaf, 0, [0, 1, 0x100, 0]);
                    push(leaf, 1, [core_bits, vcpus.min(0xffff), 0x201, 0]);
                }
                0xd if xsave => {
                    push(
                        0xd,
                        0,
                        [
                            xcr0_supported as u32,
                            XSAVE_LEGACY_SIZE,
                            xsave_max,
                            (xcr0_supported >> 32) as u32,
                        ],
                    );
                    push(0xd, 1, [host_leaf(0xd, 1)[0] & EAX_D1_ALLOWED, 0, 0, 0]);
                    for (i, r) in xsave_components.iter().enumerate().skip(2) {
                        if xcr0_supported & (1 << i) != 0 {
                            // EAX size, EBX offset; ECX bit 0 (supervisor) is 0 for these.
                            push(0xd, i as u32, [r[0], r[1], r[2] & !1, 0]);
                        }
                    }
                }
                0x15 => push(
                    0x15,
                    0,
                    match config.tsc_hz {
                        Some(hz) => tsc_leaf_15(hz),
                        None => host_leaf(0x15, 0),
                    },
                ),
                0x16 => push(
                    0x16,
                    0,
                    match config.tsc_hz {
                        Some(hz) => {
                            let mhz = (hz / 1_000_000).min(0xffff) as u32;
                            [mhz, mhz, 100, 0]
                        }
                        None => {
                            let h = host_leaf(0x16, 0);
                            [h[0] & 0xffff, h[1] & 0xffff, h[2] & 0xffff, 0]
                        }
                    },
                ),
                // Everything else in the basic range (PSN, MONITOR, DCA, PMU, RDT, SGX, PT,
                // AMX, tile, LBR, key locker, hybrid, ...) reads as zeros.
                _ => push(leaf, 0, [0; 4]),
            }
        }

        // Extended leaves.
        let host_ext_max = host(EXT_BASE_LEAF, 0)[0];
        let max_ext = if host_ext_max >= EXT_BASE_LEAF {
            host_ext_max.min(EXT_MAX_LEAF)
        } else {
            EXT_BASE_LEAF
        };
        for leaf in EXT_BASE_LEAF..=max_ext {
            let h = if leaf <= host_ext_max {
                host(leaf, 0)
            } else {
                [0; 4]
            };
            let regs = match leaf - EXT_BASE_LEAF {
                0 => [max_ext, 0, 0, 0],
                1 => {
                    let mut edx = h[3] & EDX81_ALLOWED;
                    if !config.rdtscp {
                        edx &= !EDX81_RDTSCP;
                    }
                    [0, 0, h[2] & ECX81_ALLOWED, edx]
                }
                2..=4 | 6 => h,
                // Invariant TSC, unless KVM's kvm-clock should win (`kvm_leaves`).
                7 if config.kvm_leaves.is_some() => [0; 4],
                7 => [0, 0, 0, h[3] & EDX87_INVARIANT_TSC],
                8 => {
                    let mut phys = h[0] & 0xff;
                    if let Some(limit) = config.phys_addr_bits {
                        phys = phys.min(u32::from(limit));
                    }
                    [(h[0] & 0xff00) | phys, 0, 0, 0]
                }
                _ => [0; 4],
            };
            push(leaf, 0, regs);
        }

        // Hypervisor leaves.
        let mut hv_max = config.hypervisor.max_leaf.clamp(HV_BASE_LEAF, 0x4000_00ff);
        let timing = config.timing_leaf && config.tsc_hz.is_some();
        if timing {
            hv_max = hv_max.max(HV_TIMING_LEAF);
        }
        let sig = config.hypervisor.signature;
        let word = |i: usize| u32::from_le_bytes([sig[i], sig[i + 1], sig[i + 2], sig[i + 3]]);
        push(HV_BASE_LEAF, 0, [hv_max, word(0), word(4), word(8)]);
        for leaf in HV_BASE_LEAF + 1..=hv_max {
            let supplied = config
                .hypervisor
                .leaves
                .iter()
                .find(|(l, _)| *l == leaf)
                .map(|(_, r)| *r);
            let regs = match (supplied, leaf, config.tsc_hz) {
                (Some(r), _, _) => r,
                (None, HV_TIMING_LEAF, Some(hz)) if timing => [
                    (hz / 1000).min(u64::from(u32::MAX)) as u32,
                    config.bus_khz,
                    0,
                    0,
                ],
                _ => [0; 4],
            };
            push(leaf, 0, regs);
        }
        // KVM's block above Bulkhead's (leaves past `hv_max` up to 0x4fffffff are looked up
        // in the table, so only these two answer there).
        for (leaf, regs) in config.kvm_leaves.into_iter().flatten() {
            if leaf > hv_max {
                push(leaf, 0, regs);
            }
        }

        // Hidden means unusable and offered means usable (crate::features): a feature whose
        // enabling control or CR4 bit this CPU cannot give the guest is hidden.
        for f in crate::features::FEATURES {
            let usable = match f.gate {
                crate::features::Gate::Control(c) => config.secondary_allowed.contains(c),
                crate::features::Gate::Cr4(bit) => config.cr4_allowed & bit != 0,
            };
            if usable {
                continue;
            }
            for e in entries
                .iter_mut()
                .filter(|e| e.leaf == f.cpuid.leaf && e.subleaf == f.cpuid.subleaf)
            {
                e.regs[f.cpuid.reg as usize] &= !(1 << f.cpuid.bit);
            }
        }
        // XSAVE and everything that needs XSAVE state go together (CR4.OSXSAVE refused).
        let xsave = xsave
            && entries
                .iter()
                .any(|e| e.leaf == 1 && e.regs[2] & ECX1_XSAVE != 0);
        if !xsave {
            for e in entries.iter_mut() {
                match (e.leaf, e.subleaf) {
                    (1, _) => e.regs[2] &= !ECX1_XSAVE_GROUP,
                    (7, 0) => {
                        e.regs[1] &= !EBX7_XSAVE_GROUP;
                        e.regs[2] &= !ECX7_XSAVE_GROUP;
                        e.regs[3] &= !EDX7_XSAVE_GROUP;
                    }
                    (7, 1) => e.regs[0] &= !EAX71_XSAVE_GROUP,
                    (0xd, _) => e.regs = [0; 4],
                    _ => {}
                }
            }
        }
        let xcr0_supported = if xsave { xcr0_supported } else { 0 };
        let pku = pku
            && entries
                .iter()
                .any(|e| (e.leaf, e.subleaf) == (7, 0) && e.regs[2] & ECX7_PKU != 0);

        entries.sort_by_key(|e| (e.leaf, e.subleaf));
        let mut spans = [Span::default(); DENSE_SLOTS];
        for (i, e) in entries.iter().enumerate() {
            if let Some(slot) = dense_slot(e.leaf) {
                let span = &mut spans[slot];
                if span.len == 0 {
                    // Sorted: a leaf's entries are consecutive. The table has a few
                    // hundred entries at most (BASIC_LEAF_CAP, XSAVE's 64 components).
                    span.start = u16::try_from(i).unwrap_or(u16::MAX);
                }
                span.len = span.len.saturating_add(1);
            }
        }
        Self {
            entries,
            spans,
            max_basic,
            max_ext,
            hv_max,
            xsave_ends,
            xcr0_supported,
            xsave,
            pku,
        }
    }

    /// Highest basic leaf (EAX of leaf 0).
    pub fn max_basic_leaf(&self) -> u32 {
        self.max_basic
    }

    /// Highest extended leaf (EAX of 0x80000000).
    pub fn max_extended_leaf(&self) -> u32 {
        self.max_ext
    }

    /// Highest hypervisor leaf (EAX of 0x40000000).
    pub fn max_hypervisor_leaf(&self) -> u32 {
        self.hv_max
    }

    /// XCR0 bits the guest may set (XSETBV must #GP on others).
    pub fn xcr0_supported(&self) -> u64 {
        self.xcr0_supported
    }

    fn find(&self, leaf: u32, subleaf: u32) -> Option<[u32; 4]> {
        let subleaf = if indexed(leaf) { subleaf } else { 0 };
        if let Some(slot) = dense_slot(leaf) {
            let Span { start, len } = self.spans[slot];
            let start = usize::from(start);
            return self
                .entries
                .get(start..start + usize::from(len))?
                .iter()
                .find(|e| e.subleaf == subleaf)
                .map(|e| e.regs);
        }
        self.search(leaf, subleaf)
    }

    /// [`find`](Self::find) by binary search (leaves outside [`DENSE_WINDOWS`]; the tests'
    /// reference for the dense index).
    fn search(&self, leaf: u32, subleaf: u32) -> Option<[u32; 4]> {
        self.entries
            .binary_search_by_key(&(leaf, subleaf), |e| (e.leaf, e.subleaf))
            .ok()
            .map(|i| self.entries[i].regs)
    }

    /// XSAVE area size (standard format) for the components in `xcr0`.
    pub fn xsave_size(&self, xcr0: u64) -> u32 {
        let xcr0 = xcr0 & self.xcr0_supported;
        self.xsave_ends
            .iter()
            .enumerate()
            .filter(|(i, _)| xcr0 & (1 << i) != 0)
            .map(|(_, &end)| end)
            .fold(XSAVE_LEGACY_SIZE, u32::max)
    }

    /// Whether [`lookup`](Self::lookup) of `leaf` reads [`VcpuCpuidState::cr4`]: leaf 1
    /// (OSXSAVE) and leaf 7 (OSPKE), and an out-of-range leaf when it answers as a highest
    /// basic leaf that is one of them. For any other leaf the CPUID exit need not read the
    /// guest's CR4 (a VMREAD saved; `cr4` may be passed as 0).
    pub fn reads_cr4(&self, leaf: u32) -> bool {
        matches!(leaf, 1 | 7) || (leaf > self.max_basic && matches!(self.max_basic, 1 | 7))
    }

    /// The result of CPUID with EAX = `leaf`, ECX = `subleaf` on the vCPU described by
    /// `vcpu`, as [EAX, EBX, ECX, EDX].
    pub fn lookup(&self, leaf: u32, subleaf: u32, vcpu: &VcpuCpuidState) -> [u32; 4] {
        if vcpu.limit_cpuid && self.max_basic > LIMITED_MAX_BASIC && leaf < HV_BASE_LEAF {
            // "Limit CPUID maxval" (IA32_MISC_ENABLE[22]): leaf 0 reports 2, higher basic
            // leaves answer as the highest one (SDM Vol. 4 Table 2-2, Vol. 2A CPUID).
            let limited = VcpuCpuidState {
                limit_cpuid: false,
                ..*vcpu
            };
            return match leaf {
                0 => {
                    let mut r = self.lookup(0, 0, &limited);
                    r[0] = LIMITED_MAX_BASIC;
                    r
                }
                1..=LIMITED_MAX_BASIC => self.lookup(leaf, subleaf, &limited),
                _ => self.lookup(LIMITED_MAX_BASIC, 0, &limited),
            };
        }
        let leaf = if leaf <= self.max_basic
            || (EXT_BASE_LEAF..=self.max_ext).contains(&leaf)
            || (HV_BASE_LEAF..=self.hv_max).contains(&leaf)
        {
            leaf
        } else if (HV_BASE_LEAF..=HV_LAST_LEAF).contains(&leaf) {
            // Beyond Bulkhead's block: KVM's leaves if offered, zeros elsewhere.
            return self.find(leaf, 0).unwrap_or([0; 4]);
        } else {
            self.max_basic
        };
        let mut r = match self.find(leaf, subleaf) {
            Some(r) => r,
            // Invalid topology levels: type 0, ECX[7:0] echoes the level number.
            None if matches!(leaf, 0xb | 0x1f) => [0, 0, subleaf & 0xff, 0],
            None => [0; 4],
        };
        match leaf {
            1 => {
                r[1] = (r[1] & 0x00ff_ffff) | ((vcpu.apic_id & 0xff) << 24);
                if self.xsave && vcpu.cr4 & CR4_OSXSAVE != 0 {
                    r[2] |= ECX1_OSXSAVE;
                }
            }
            7 if subleaf == 0 && self.pku && vcpu.cr4 & CR4_PKE != 0 => r[2] |= ECX7_OSPKE,
            0xb | 0x1f => r[3] = vcpu.apic_id,
            0xd if subleaf == 0 && self.xsave => r[1] = self.xsave_size(vcpu.xcr0),
            _ => {}
        }
        r
    }
}

/// Leaf 0x15 for a TSC of `hz`: TSC = ECX (crystal Hz) × EBX / EAX.
fn tsc_leaf_15(hz: u64) -> [u32; 4] {
    let max = u64::from(u32::MAX);
    let ratio = hz.div_ceil(max).max(1);
    let crystal = (hz / ratio).min(max) as u32;
    [1, ratio as u32, crystal, 0]
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIG: [u8; 12] = *b"BulkheadVMM\0";

    /// A Haswell-ish host with VMX, SMX, MONITOR, x2APIC, TSC-deadline, PDCM, MCE/MCA,
    /// AVX/AVX2, XSAVE with x87/SSE/AVX/MPX, PKU absent, max basic leaf 0xD.
    fn host(leaf: u32, sub: u32) -> [u32; 4] {
        match (leaf, sub) {
            (0, _) => [0xd, 0x756e_6547, 0x6c65_746e, 0x4965_6e69],
            (1, _) => [0x306c3, 0x0710_0800, 0x7ffa_fbff, 0xbfeb_fbff],
            (2, _) => [0x7603_6301, 0, 0, 0x00c1_0000],
            (4, 0) => [0x1c00_4121, 0x01c0_003f, 0x3f, 0],
            (4, 1) => [0x1c00_4122, 0x01c0_003f, 0x3f, 0],
            (4, 2) => [0x1c00_4143, 0x01c0_003f, 0x1ff, 0],
            (4, 3) => [0x1c03_c163, 0x02c0_003f, 0x1fff, 6],
            (5, _) => [0x40, 0x40, 3, 0x0004_2120],
            (6, _) => [0x77, 2, 9, 0],
            (7, 0) => [0, 0x0000_27ab, 0, 0x9c00_0400],
            (0xa, _) => [0x0730_0403, 0, 0, 0x603],
            (0xb, _) => [1, 2, 0x100, 0],
            (0xd, 0) => [0x1f, 0x340, 0x3c0, 0],
            (0xd, 1) => [0xf, 0, 0, 0],
            (0xd, 2) => [0x100, 0x240, 0, 0],
            (0xd, 3) => [0x40, 0x3c0, 0, 0],
            (0xd, 4) => [0x40, 0x400, 0, 0],
            (0x8000_0000, _) => [0x8000_0008, 0, 0, 0],
            (0x8000_0001, _) => [0, 0, 0x21, 0x2c10_0800],
            (0x8000_0002, _) => [0x65746e49, 0x2952286c, 0x726f4320, 0x4d542865],
            (0x8000_0006, _) => [0, 0, 0x0100_6040, 0],
            (0x8000_0007, _) => [0, 0, 0, 0x100],
            (0x8000_0008, _) => [0x3027, 0, 0, 0],
            _ => [0; 4],
        }
    }

    fn hv() -> HypervisorLeaves<'static> {
        HypervisorLeaves {
            max_leaf: 0x4000_0001,
            signature: SIG,
            leaves: &[(0x4000_0001, [1, 2, 3, 4]), (0x4000_0005, [9; 4])],
        }
    }

    fn vcpu(apic_id: u32) -> VcpuCpuidState {
        VcpuCpuidState {
            apic_id,
            cr4: 0,
            xcr0: 1,
            limit_cpuid: false,
        }
    }

    /// The leaves `reads_cr4` says need no CR4 answer the same whatever CR4 holds, for the
    /// host's leaves and for hosts whose highest basic leaf is 1 or 7.
    #[test]
    fn only_the_leaves_that_read_cr4_depend_on_it() {
        let limited = |max: u32| {
            move |leaf: u32, sub: u32| {
                if leaf == 0 {
                    let mut r = host(0, 0);
                    r[0] = max;
                    r
                } else {
                    host(leaf, sub)
                }
            }
        };
        let policies = [
            CpuidPolicy::from_host(host, &CpuidConfig::new(hv())),
            CpuidPolicy::from_host(limited(7), &CpuidConfig::new(hv())),
            CpuidPolicy::from_host(limited(1), &CpuidConfig::new(hv())),
        ];
        for p in &policies {
            let mut needed = 0;
            for leaf in (0..0x20)
                .chain(0x4000_0000..0x4000_0010)
                .chain(0x8000_0000..0x8000_0010)
                .chain([0x20, 0x1000, u32::MAX])
            {
                for limit_cpuid in [false, true] {
                    let state = |cr4| VcpuCpuidState {
                        cr4,
                        limit_cpuid,
                        ..vcpu(3)
                    };
                    for sub in [0, 1] {
                        let a = p.lookup(leaf, sub, &state(0));
                        let b = p.lookup(leaf, sub, &state(u64::MAX));
                        if a != b {
                            assert!(p.reads_cr4(leaf), "leaf {leaf:#x}.{sub} depends on CR4");
                            needed += 1;
                        }
                    }
                }
            }
            assert!(
                needed > 0,
                "no leaf depended on CR4: the test proves nothing"
            );
        }
    }

    #[test]
    fn dense_index_finds_what_the_binary_search_finds() {
        let mut cfg = CpuidConfig::new(hv());
        cfg.kvm_leaves = Some([(0x4000_0100, [0x4000_0101, 1, 2, 3]), (0x4000_0101, [7; 4])]);
        for p in [
            CpuidPolicy::from_host(host, &CpuidConfig::new(hv())),
            CpuidPolicy::from_host(host, &cfg),
        ] {
            let mut found = std::collections::BTreeSet::new();
            for leaf in (0..=BASIC_LEAF_CAP + 2)
                .chain(HV_BASE_LEAF..HV_BASE_LEAF + 0x130)
                .chain(EXT_BASE_LEAF..EXT_MAX_LEAF + 3)
                .chain([u32::MAX, HV_LAST_LEAF])
            {
                for sub in (0..70).chain([u32::MAX]) {
                    let sub = if indexed(leaf) { sub } else { 0 };
                    let dense = p.find(leaf, sub);
                    assert_eq!(dense, p.search(leaf, sub), "leaf {leaf:#x}.{sub}");
                    if dense.is_some() {
                        found.insert((leaf, sub));
                    }
                }
            }
            // Every entry of the table was reached, each once.
            assert_eq!(found.len(), p.entries.len());
            assert!(p.entries.iter().any(|e| e.leaf == 0xd && e.subleaf > 1));
        }
        assert_eq!(dense_slot(0), Some(0));
        assert_eq!(dense_slot(BASIC_LEAF_CAP + 1), None);
        assert_eq!(dense_slot(EXT_MAX_LEAF), Some(DENSE_SLOTS - 1));
        assert_eq!(dense_slot(EXT_MAX_LEAF + 1), None);
    }

    #[test]
    fn feature_bits() {
        let p = CpuidPolicy::from_host(host, &CpuidConfig::new(hv()));
        let l1 = p.lookup(1, 0, &vcpu(0));
        assert_eq!(l1[0], 0x306c3);
        assert_eq!(l1[2] & ECX1_VMX, 0, "VMX hidden");
        assert_eq!(l1[2] & (ECX1_SMX | ECX1_MONITOR | ECX1_PDCM), 0);
        assert_eq!(l1[2] & (ECX1_X2APIC | ECX1_TSC_DEADLINE), 0);
        assert_ne!(l1[2] & ECX1_HYPERVISOR, 0, "hypervisor bit");
        assert_ne!(l1[2] & (ECX1_XSAVE | ECX1_AVX | ECX1_PCID), 0);
        assert_eq!(l1[2] & ECX1_OSXSAVE, 0, "CR4.OSXSAVE is clear");
        assert_eq!(l1[3] & (EDX1_APIC | EDX1_HTT), 0);
        assert_eq!(
            l1[3] & (EDX1_MCE | EDX1_MCA),
            EDX1_MCE | EDX1_MCA,
            "zero-bank MCA"
        );
        assert_ne!(l1[3] & EDX1_MTRR, 0);
        assert_eq!(p.lookup(5, 0, &vcpu(0)), [0; 4], "MONITOR leaf");
        assert_eq!(p.lookup(6, 0, &vcpu(0)), [0; 4]);
        assert_eq!(p.lookup(0xa, 0, &vcpu(0)), [0; 4], "no PMU");
        let l7 = p.lookup(7, 0, &vcpu(0));
        assert_eq!(l7[1] & EBX7_INVPCID, 0);
        assert_ne!(l7[1] & EBX7_TSC_ADJUST, 0, "TSC_ADJUST is emulated");
        assert_ne!(l7[1] & EBX7_AVX2, 0);
        assert_eq!(l7[3] & EDX7_ARCH_CAPABILITIES, 0);
        let e1 = p.lookup(0x8000_0001, 0, &vcpu(0));
        assert_ne!(e1[3] & (EDX81_LM | EDX81_NX), 0);
        assert_eq!(p.lookup(0x8000_0002, 0, &vcpu(0))[0], 0x65746e49);
        assert_eq!(p.lookup(0x8000_0007, 0, &vcpu(0))[3], 0x100);
    }

    #[test]
    fn options_enable_apic_features_and_hide_xsave() {
        // The emulated APIC features are offered even on a host without them.
        let bare = |leaf: u32, sub: u32| {
            let mut r = host(leaf, sub);
            if leaf == 1 {
                r[2] &= !(ECX1_X2APIC | ECX1_TSC_DEADLINE);
                r[3] &= !EDX1_APIC;
            }
            r
        };
        let mut cfg = CpuidConfig::new(hv());
        cfg.local_apic = true;
        cfg.x2apic = true;
        cfg.tsc_deadline = true;
        cfg.invpcid = true;
        cfg.xsave = false;
        cfg.pcid = false;
        let p = CpuidPolicy::from_host(bare, &cfg);
        let l1 = p.lookup(1, 0, &vcpu(0));
        assert_ne!(l1[2] & ECX1_X2APIC, 0);
        assert_ne!(l1[2] & ECX1_TSC_DEADLINE, 0);
        assert_ne!(l1[3] & EDX1_APIC, 0);
        assert_eq!(l1[2] & (ECX1_XSAVE | ECX1_AVX | ECX1_PCID), 0);
        assert_eq!(p.lookup(6, 0, &vcpu(0))[0], EAX6_ARAT);
        let l7 = p.lookup(7, 0, &vcpu(0));
        assert_ne!(l7[1] & EBX7_INVPCID, 0);
        assert_eq!(l7[1] & EBX7_AVX2, 0);
        assert_eq!(p.lookup(0xd, 0, &vcpu(0)), [0; 4]);
        assert_eq!(p.xcr0_supported(), 0);
        let s = VcpuCpuidState {
            cr4: CR4_OSXSAVE,
            ..vcpu(0)
        };
        assert_eq!(p.lookup(1, 0, &s)[2] & ECX1_OSXSAVE, 0);
    }

    #[test]
    fn per_vcpu_ids_topology_and_dynamic_bits() {
        let mut cfg = CpuidConfig::new(hv());
        cfg.vcpus = 3;
        let p = CpuidPolicy::from_host(host, &cfg);
        let s = VcpuCpuidState {
            apic_id: 2,
            cr4: CR4_OSXSAVE,
            xcr0: 0b111,
            limit_cpuid: false,
        };
        let l1 = p.lookup(1, 0, &s);
        assert_eq!(l1[1] >> 24, 2);
        assert_eq!((l1[1] >> 16) & 0xff, 4);
        assert_ne!(l1[3] & EDX1_HTT, 0);
        assert_ne!(l1[2] & ECX1_OSXSAVE, 0);
        assert_eq!(p.lookup(0xb, 0, &s), [0, 1, 0x100, 2]);
        assert_eq!(p.lookup(0xb, 1, &s), [2, 3, 0x201, 2]);
        assert_eq!(p.lookup(0xb, 2, &s), [0, 0, 2, 2]);
        assert_eq!(p.lookup(4, 0, &s)[0] >> 26, 3);
        assert_eq!((p.lookup(4, 3, &s)[0] >> 14) & 0xfff, 3, "L3 shared");
        assert_eq!(p.lookup(4, 4, &s), [0; 4]);
        // XSAVE: AVX enabled → 0x240 + 0x100 = 832 bytes; MPX is never offered.
        assert_eq!(p.xcr0_supported(), 0b111);
        assert_eq!(p.lookup(0xd, 0, &s), [0b111, 0x340, 0x340, 0]);
        let s87 = VcpuCpuidState { xcr0: 0b11, ..s };
        assert_eq!(p.lookup(0xd, 0, &s87)[1], 576);
        assert_eq!(
            p.lookup(0xd, 1, &s)[0],
            0b101,
            "XSAVEOPT, XGETBV1; no XSAVEC/XSAVES"
        );
        assert_eq!(p.lookup(0xd, 2, &s), [0x100, 0x240, 0, 0]);
        assert_eq!(p.lookup(0xd, 3, &s), [0; 4]);
    }

    #[test]
    fn extreme_vcpu_counts_are_clamped() {
        for vcpus in [0, 1, 2, 255, 256, u32::MAX] {
            let mut cfg = CpuidConfig::new(hv());
            cfg.vcpus = vcpus;
            let p = CpuidPolicy::from_host(host, &cfg);
            let l = p.lookup(0xb, 1, &vcpu(0));
            assert_eq!(l[1], vcpus.clamp(1, MAX_VCPUS).min(0xffff));
            let _ = p.lookup(4, 3, &vcpu(0));
            let _ = p.lookup(1, 0, &vcpu(0));
        }
    }

    #[test]
    fn hypervisor_leaves_and_signature() {
        let p = CpuidPolicy::from_host(host, &CpuidConfig::new(hv()));
        let l = p.lookup(HV_BASE_LEAF, 0, &vcpu(0));
        assert_eq!(l[0], 0x4000_0001);
        let mut sig = [0u8; 12];
        sig[..4].copy_from_slice(&l[1].to_le_bytes());
        sig[4..8].copy_from_slice(&l[2].to_le_bytes());
        sig[8..].copy_from_slice(&l[3].to_le_bytes());
        assert_eq!(&sig, b"BulkheadVMM\0");
        assert_eq!(p.lookup(0x4000_0001, 0, &vcpu(0)), [1, 2, 3, 4]);
        assert_eq!(p.lookup(0x4000_0005, 0, &vcpu(0)), [0; 4], "beyond max");
        assert_eq!(p.lookup(0x4000_0100, 0, &vcpu(0)), [0; 4]);
    }

    #[test]
    fn tsc_leaves() {
        let mut cfg = CpuidConfig::new(hv());
        cfg.tsc_hz = Some(2_893_300_000);
        cfg.timing_leaf = true;
        let p = CpuidPolicy::from_host(host, &cfg);
        assert_eq!(p.max_basic_leaf(), 0x16, "raised from the host's 0xD");
        assert_eq!(p.lookup(0, 0, &vcpu(0))[0], 0x16);
        let l15 = p.lookup(0x15, 0, &vcpu(0));
        assert_eq!(
            u64::from(l15[2]) * u64::from(l15[1]) / u64::from(l15[0]),
            2_893_300_000
        );
        assert_eq!(p.lookup(0x16, 0, &vcpu(0)), [2893, 2893, 100, 0]);
        assert_eq!(p.lookup(0xe, 0, &vcpu(0)), [0; 4]);
        assert_eq!(p.max_hypervisor_leaf(), HV_TIMING_LEAF);
        assert_eq!(
            p.lookup(HV_TIMING_LEAF, 0, &vcpu(0)),
            [2_893_300, 1_000_000, 0, 0]
        );
        // A TSC above 4.29 GHz still encodes.
        let l = tsc_leaf_15(5_000_000_000);
        assert_eq!(
            u64::from(l[2]) * u64::from(l[1]) / u64::from(l[0]),
            5_000_000_000
        );
        // An explicit clamp wins over the raise.
        cfg.max_basic_leaf = Some(7);
        assert_eq!(CpuidPolicy::from_host(host, &cfg).max_basic_leaf(), 7);
    }

    #[test]
    fn out_of_range_leaves_return_highest_basic_leaf() {
        let mut cfg = CpuidConfig::new(hv());
        cfg.phys_addr_bits = Some(36);
        let p = CpuidPolicy::from_host(host, &cfg);
        let top = p.lookup(0xd, 0, &vcpu(0));
        assert_eq!(p.lookup(0xe, 0, &vcpu(0)), top);
        assert_eq!(p.lookup(0x3fff_ffff, 0, &vcpu(0)), top);
        assert_eq!(p.lookup(0x8000_0009, 0, &vcpu(0)), top);
        assert_eq!(p.lookup(0xffff_ffff, 0, &vcpu(0)), top);
        assert_eq!(p.lookup(0x8000_0000, 0, &vcpu(0))[0], 0x8000_0008);
        assert_eq!(p.lookup(0x8000_0008, 0, &vcpu(0))[0], 0x3024);
        // Non-indexed leaves ignore ECX.
        assert_eq!(p.lookup(1, 77, &vcpu(0)), p.lookup(1, 0, &vcpu(0)));
        // A host with no extended leaves and max basic 1 does not break anything.
        let tiny = |leaf: u32, _| if leaf == 0 { [1, 0, 0, 0] } else { [0; 4] };
        let p = CpuidPolicy::from_host(tiny, &CpuidConfig::new(hv()));
        assert_eq!(p.max_extended_leaf(), EXT_BASE_LEAF);
        assert_eq!(p.lookup(0x8000_0001, 0, &vcpu(0)), p.lookup(1, 0, &vcpu(0)));
        for leaf in [0, 1, 2, 0xb, 0x4000_0000, 0x8000_0000, u32::MAX] {
            for sub in [0, 1, 2, 63, u32::MAX] {
                let _ = p.lookup(
                    leaf,
                    sub,
                    &VcpuCpuidState {
                        apic_id: u32::MAX,
                        cr4: u64::MAX,
                        xcr0: u64::MAX,
                        limit_cpuid: true,
                    },
                );
            }
        }
    }
}
