//! The KVM paravirtual interface as Linux's guest side speaks it (`CONFIG_KVM_GUEST`): the
//! CPUID leaves, feature bits, MSRs, shared-memory layouts and hypercalls of Linux's
//! `arch/x86/include/uapi/asm/kvm_para.h` and `pvclock-abi.h` (and
//! `Documentation/virt/kvm/x86/{cpuid,msr,hypercalls}.rst`), written from those facts.
//!
//! - this module: CPUID leaves ([`cpuid_leaves`]) and feature bits ([`Features`]);
//! - [`pvclock`]: `pvclock_vcpu_time_info`, `pvclock_wall_clock`, the scale/shift from the
//!   TSC rate and the guest's `pvclock_scale_delta`;
//! - [`steal_time`]: `kvm_steal_time` and its flags;
//! - [`msr`]: the PV MSRs and the validation of a WRMSR to them ([`msr::PvMsrs`]);
//! - [`hypercall`]: the KVM hypercall numbers, convention and return codes.
//!
//! Everything here is pure data and arithmetic; the kernel writes guest memory and injects.

pub mod hypercall;
pub mod msr;
pub mod pvclock;
pub mod state;
pub mod steal_time;

#[cfg(test)]
mod state_snapshot_tests;
#[cfg(test)]
mod state_tests;
#[cfg(test)]
mod tests;

/// Where Bulkhead offers KVM's leaves. Linux's `kvm_cpuid_base()` scans
/// `0x4000_0000..0x4001_0000` in steps of `0x100` for the signature; Bulkhead's own ABI keeps
/// `0x4000_0000` (docs/hypercall-abi.md §1), so KVM's sits in the next block.
pub const CPUID_BASE: u32 = 0x4000_0100;
/// `KVM_CPUID_SIGNATURE` (relative leaf 0): EAX = highest KVM leaf, EBX/ECX/EDX = signature.
pub const CPUID_SIGNATURE: u32 = CPUID_BASE;
/// `KVM_CPUID_FEATURES` (relative leaf 1): EAX = feature bits, EDX = hints.
pub const CPUID_FEATURES: u32 = CPUID_BASE + 1;
/// The last leaf of KVM's block; leaves above [`CPUID_FEATURES`] up to it read as 0.
pub const CPUID_BLOCK_END: u32 = CPUID_BASE + 0xff;
/// The 12-byte signature, EBX, ECX, EDX in that order.
pub const SIGNATURE: [u8; 12] = *b"KVMKVMKVM\0\0\0";

bitflags::bitflags! {
    /// `KVM_CPUID_FEATURES`:EAX, the bits Bulkhead offers (kvm_para.h `KVM_FEATURE_*`).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Features: u32 {
        /// `KVM_FEATURE_NOP_IO_DELAY` (1): port 0x80 delays are unnecessary.
        const NOP_IO_DELAY = 1 << 1;
        /// `KVM_FEATURE_CLOCKSOURCE2` (3): kvmclock at MSRs 0x4b564d00/0x4b564d01.
        const CLOCKSOURCE2 = 1 << 3;
        /// `KVM_FEATURE_STEAL_TIME` (5): MSR 0x4b564d03.
        const STEAL_TIME = 1 << 5;
        /// `KVM_FEATURE_PV_EOI` (6): MSR 0x4b564d04.
        const PV_EOI = 1 << 6;
        /// `KVM_FEATURE_PV_UNHALT` (7): a halted vCPU is woken by `KVM_HC_KICK_CPU`.
        const PV_UNHALT = 1 << 7;
        /// `KVM_FEATURE_PV_TLB_FLUSH` (9): `KVM_VCPU_FLUSH_TLB` in steal time.
        const PV_TLB_FLUSH = 1 << 9;
        /// `KVM_FEATURE_PV_SEND_IPI` (11): `KVM_HC_SEND_IPI`.
        const PV_SEND_IPI = 1 << 11;
        /// `KVM_FEATURE_POLL_CONTROL` (12): MSR 0x4b564d05.
        const POLL_CONTROL = 1 << 12;
        /// `KVM_FEATURE_PV_SCHED_YIELD` (13): `KVM_HC_SCHED_YIELD`.
        const PV_SCHED_YIELD = 1 << 13;
        /// `KVM_FEATURE_CLOCKSOURCE_STABLE_BIT` (24): the guest may trust
        /// `PVCLOCK_TSC_STABLE_BIT`.
        const CLOCKSOURCE_STABLE_BIT = 1 << 24;
    }
}

/// `KVM_HINTS_REALTIME` (`KVM_CPUID_FEATURES`:EDX bit 0): vCPUs are never preempted (a
/// `dedicated` VM), so the guest may skip PV spinlocks and halt polling decisions.
pub const HINTS_REALTIME: u32 = 1 << 0;

/// Every feature the kernel implements: kvmclock with the stable bit, NOP_IO_DELAY (port 0x80
/// is an ordinary unclaimed port), steal time with the `preempted` flag and PV TLB flush, PV
/// EOI and POLL_CONTROL (kernel/src/vmm/kvm_pv.rs), PV_UNHALT, PV_SEND_IPI and
/// PV_SCHED_YIELD (kernel/src/vmm/kvm_hypercalls.rs).
pub const OFFERED: Features = Features::all();

/// The KVM leaves of a VM: `(leaf, [EAX, EBX, ECX, EDX])` for [`CPUID_SIGNATURE`] and
/// [`CPUID_FEATURES`]; `dedicated` sets [`HINTS_REALTIME`].
pub fn cpuid_leaves(features: Features, dedicated: bool) -> [(u32, [u32; 4]); 2] {
    let word = |i: usize| {
        u32::from_le_bytes([
            SIGNATURE[i],
            SIGNATURE[i + 1],
            SIGNATURE[i + 2],
            SIGNATURE[i + 3],
        ])
    };
    let hints = if dedicated { HINTS_REALTIME } else { 0 };
    [
        (CPUID_SIGNATURE, [CPUID_FEATURES, word(0), word(4), word(8)]),
        (CPUID_FEATURES, [features.bits(), 0, 0, hints]),
    ]
}

/// Which PV features a guest turned on (MSR enables), for the VM report line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Enabled {
    /// Some vCPU enabled kvmclock (`MSR_KVM_SYSTEM_TIME_NEW` bit 0).
    pub clock: bool,
    /// The guest asked for the wall clock (`MSR_KVM_WALL_CLOCK_NEW`).
    pub wall_clock: bool,
    /// Some vCPU enabled steal time.
    pub steal: bool,
    /// Some vCPU enabled PV EOI.
    pub pv_eoi: bool,
    /// The guest wrote `MSR_KVM_POLL_CONTROL`.
    pub poll_control: bool,
    /// The guest made a `KVM_HC_KICK_CPU` call.
    pub kick: bool,
    /// The guest made a `KVM_HC_SEND_IPI` call.
    pub send_ipi: bool,
    /// The guest made a `KVM_HC_SCHED_YIELD` call.
    pub sched_yield: bool,
    /// The guest set `KVM_VCPU_FLUSH_TLB` for a preempted vCPU.
    pub tlb_flush: bool,
}

impl Enabled {
    /// Merges another vCPU's record.
    pub fn merge(&mut self, other: Enabled) {
        self.clock |= other.clock;
        self.wall_clock |= other.wall_clock;
        self.steal |= other.steal;
        self.pv_eoi |= other.pv_eoi;
        self.poll_control |= other.poll_control;
        self.kick |= other.kick;
        self.send_ipi |= other.send_ipi;
        self.sched_yield |= other.sched_yield;
        self.tlb_flush |= other.tlb_flush;
    }

    /// The report words, in a fixed order (`clock wall-clock steal pv-eoi ...`); "none" if
    /// the guest enabled nothing.
    pub fn words(&self) -> impl Iterator<Item = &'static str> + '_ {
        [
            (self.clock, "clock"),
            (self.wall_clock, "wall-clock"),
            (self.steal, "steal"),
            (self.pv_eoi, "pv-eoi"),
            (self.poll_control, "poll-control"),
            (self.kick, "kick"),
            (self.send_ipi, "send-ipi"),
            (self.sched_yield, "sched-yield"),
            (self.tlb_flush, "tlb-flush"),
        ]
        .into_iter()
        .filter(|(on, _)| *on)
        .map(|(_, w)| w)
    }
}

impl core::fmt::Display for Enabled {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let mut any = false;
        for w in self.words() {
            if any {
                f.write_str(" ")?;
            }
            f.write_str(w)?;
            any = true;
        }
        if !any {
            f.write_str("none")?;
        }
        Ok(())
    }
}
