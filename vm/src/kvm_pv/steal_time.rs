//! `struct kvm_steal_time` (kvm_para.h): 64 bytes the hypervisor fills per vCPU with the
//! time the vCPU was runnable but not running, a version (odd while updating), the
//! `preempted` byte and the `KVM_VCPU_*` flags the guest sets for a preempted vCPU.

/// `sizeof(struct kvm_steal_time)`; the MSR's address is aligned to it.
pub const SIZE: usize = 64;
/// Offset of `u64 steal`: nanoseconds stolen since the area was enabled.
pub const OFF_STEAL: usize = 0;
/// Offset of `u32 version`.
pub const OFF_VERSION: usize = 8;
/// Offset of `u32 flags`.
pub const OFF_FLAGS: usize = 12;
/// Offset of `u8 preempted`: [`KVM_VCPU_PREEMPTED`] and [`KVM_VCPU_FLUSH_TLB`].
pub const OFF_PREEMPTED: usize = 16;

/// `KVM_VCPU_PREEMPTED`: the vCPU was descheduled while runnable.
pub const KVM_VCPU_PREEMPTED: u8 = 1 << 0;
/// `KVM_VCPU_FLUSH_TLB`: set by another vCPU of the guest instead of a TLB-shootdown IPI to
/// a preempted vCPU; the hypervisor flushes that vCPU's TLB before it next runs.
pub const KVM_VCPU_FLUSH_TLB: u8 = 1 << 1;

/// What the entry path does with the `preempted` byte it read (and cleared) at VM entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryFlags {
    /// Flush the vCPU's TLB (INVVPID single-context) before entry.
    pub flush_tlb: bool,
}

/// Decodes the `preempted` byte taken at entry.
pub fn on_entry(preempted: u8) -> EntryFlags {
    EntryFlags {
        flush_tlb: preempted & KVM_VCPU_FLUSH_TLB != 0,
    }
}

/// The `steal` and `version` bytes of one update (the hypervisor writes `version` odd,
/// then `steal`, then `version` even: see [`super::pvclock::begin_update`]).
pub fn steal_bytes(steal_ns: u64) -> [u8; 8] {
    steal_ns.to_le_bytes()
}
