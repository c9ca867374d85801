//! KVM hypercalls (Documentation/virt/kvm/x86/hypercalls.rst, kvm_para.h): `VMCALL` with
//! the number in RAX and up to four arguments in RBX, RCX, RDX, RSI; the result in RAX. In
//! a 32-bit guest only the low 32 bits of each register count.

/// `KVM_HC_KICK_CPU(flags, apic_id)`: wake the vCPU halted with `PV_UNHALT`.
pub const KVM_HC_KICK_CPU: u64 = 5;
/// `KVM_HC_SEND_IPI(bitmap_low, bitmap_high, min_apic_id, icr)`: IPIs to the APIC IDs
/// `min + i` for every set bit `i` of the 128-bit bitmap; returns how many were sent.
pub const KVM_HC_SEND_IPI: u64 = 10;
/// `KVM_HC_SCHED_YIELD(apic_id)`: the caller waits for that vCPU; give it the CPU.
pub const KVM_HC_SCHED_YIELD: u64 = 11;

/// `KVM_ENOSYS`: unknown hypercall (RAX = -1000).
pub const KVM_ENOSYS: i64 = 1000;
/// `KVM_EINVAL` (EINVAL): a bad argument, e.g. an APIC ID no vCPU has.
pub const KVM_EINVAL: i64 = 22;
/// `KVM_EPERM` (EPERM): a hypercall from CPL > 0.
pub const KVM_EPERM: i64 = 1;

/// The IPI bitmap of `KVM_HC_SEND_IPI`: 128 bits in 64-bit mode (RBX, RCX), 64 in 32-bit.
pub const SEND_IPI_BITS_64: u32 = 128;

/// ICR delivery mode (bits 10:8; SDM Vol. 3A §11.6.1).
const ICR_DELIVERY_MASK: u64 = 0x700;
/// ICR vector (bits 7:0; SDM Vol. 3A §11.6.1).
const ICR_VECTOR_MASK: u64 = 0xff;
/// ICR destination mode (bit 11) and shorthand (bits 19:18): `KVM_HC_SEND_IPI` names its
/// destinations by the bitmap (physical APIC IDs), so both must be 0 (`-KVM_EINVAL`).
const ICR_DEST_MODE_AND_SHORTHAND: u64 = (1 << 11) | (0b11 << 18);

/// A decoded KVM hypercall.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvmCall {
    /// [`KVM_HC_KICK_CPU`].
    KickCpu {
        /// APIC ID of the vCPU to wake.
        apic_id: u32,
    },
    /// [`KVM_HC_SEND_IPI`].
    SendIpi {
        /// The destination bitmap, bit i = APIC ID `min + i`.
        bitmap: u128,
        /// APIC ID of bit 0.
        min: u32,
        /// ICR bits 7:0, the vector.
        vector: u8,
        /// ICR bits 10:8, the delivery mode.
        delivery_mode: u8,
    },
    /// [`KVM_HC_SEND_IPI`] with a logical destination mode or a shorthand: `-KVM_EINVAL`.
    SendIpiBadIcr,
    /// [`KVM_HC_SCHED_YIELD`].
    SchedYield {
        /// APIC ID of the vCPU the caller waits for.
        apic_id: u32,
    },
    /// Any other number: `-KVM_ENOSYS`.
    Unknown(u64),
}

/// Decodes RAX (`nr`) and the four argument registers; `long_mode` is false for a 32-bit
/// caller (arguments truncated to 32 bits, a 64-bit IPI bitmap from RBX only).
pub fn decode(nr: u64, args: [u64; 4], long_mode: bool) -> KvmCall {
    let a = |i: usize| {
        if long_mode {
            args[i]
        } else {
            args[i] & 0xffff_ffff
        }
    };
    match nr {
        KVM_HC_KICK_CPU => KvmCall::KickCpu {
            apic_id: a(1) as u32,
        },
        KVM_HC_SEND_IPI => {
            let bitmap = if long_mode {
                u128::from(a(0)) | (u128::from(a(1)) << 64)
            } else {
                u128::from(a(0)) | (u128::from(a(1)) << 32)
            };
            let icr = a(3);
            if icr & ICR_DEST_MODE_AND_SHORTHAND != 0 {
                return KvmCall::SendIpiBadIcr;
            }
            KvmCall::SendIpi {
                bitmap,
                min: a(2) as u32,
                vector: (icr & ICR_VECTOR_MASK) as u8,
                delivery_mode: ((icr & ICR_DELIVERY_MASK) >> 8) as u8,
            }
        }
        KVM_HC_SCHED_YIELD => KvmCall::SchedYield {
            apic_id: a(0) as u32,
        },
        other => KvmCall::Unknown(other),
    }
}

/// The APIC IDs a `SEND_IPI` bitmap names, lowest first (`min + i` wrapping is refused: an
/// ID above `u32::MAX` names no vCPU).
pub fn ipi_targets(bitmap: u128, min: u32) -> impl Iterator<Item = Option<u32>> {
    (0..SEND_IPI_BITS_64)
        .filter(move |i| bitmap & (1u128 << i) != 0)
        .map(move |i| min.checked_add(i))
}

/// The RAX value for a result: the value itself, or `-code` for an error.
pub fn result_rax(result: Result<u64, i64>, long_mode: bool) -> u64 {
    let v = match result {
        Ok(v) => v,
        Err(code) => (-code) as u64,
    };
    if long_mode {
        v
    } else {
        v & 0xffff_ffff
    }
}

/// ICR delivery modes `KVM_HC_SEND_IPI` carries out (SDM Vol. 3A §11.6.1 Figure 11-12,
/// bits 10:8): fixed, lowest priority (the bitmap already names each destination, so it is
/// delivered as fixed) and NMI, the ones Linux's `kvm_send_ipi_mask` sends.
const DELIVERY_FIXED: u8 = 0b000;
const DELIVERY_LOWEST_PRIORITY: u8 = 0b001;
const DELIVERY_NMI: u8 = 0b100;

/// What one `KVM_HC_SEND_IPI` delivers to each vCPU its bitmap names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpiKind {
    /// A fixed interrupt with this vector.
    Fixed(u8),
    /// An NMI (the vector is ignored, SDM Vol. 3A §11.6.1).
    Nmi,
}

impl IpiKind {
    /// The kind for an ICR delivery mode (bits 10:8), or `-KVM_EINVAL` for SMI, INIT,
    /// start-up and the reserved modes, which a PV IPI does not carry.
    pub fn from_icr(delivery_mode: u8, vector: u8) -> Result<Self, i64> {
        match delivery_mode {
            DELIVERY_FIXED | DELIVERY_LOWEST_PRIORITY => Ok(IpiKind::Fixed(vector)),
            DELIVERY_NMI => Ok(IpiKind::Nmi),
            _ => Err(KVM_EINVAL),
        }
    }
}

/// Every KVM hypercall is refused from CPL > 0 with `-KVM_EPERM` before its number is looked
/// at (KVM: `kvm_emulate_hypercall`; Documentation/virt/kvm/x86/hypercalls.rst).
pub fn check_cpl(cpl: u8) -> Result<(), i64> {
    if cpl == 0 {
        Ok(())
    } else {
        Err(KVM_EPERM)
    }
}

/// The vCPUs a `SEND_IPI` reaches: `lookup` maps an APIC ID to a vCPU index (None: no such
/// vCPU). APIC IDs no vCPU has are skipped, as KVM does (`__pv_send_ipi` counts only the
/// vCPUs that exist); `no_target` counts them for the report.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IpiPlan {
    /// vCPU indexes, in APIC ID order.
    pub targets: alloc::vec::Vec<usize>,
    /// Bits of the bitmap naming no vCPU (or past `u32::MAX`).
    pub no_target: u32,
}

/// Plans a `SEND_IPI` ([`ipi_targets`] resolved through `lookup`).
pub fn plan_send_ipi(bitmap: u128, min: u32, lookup: impl Fn(u32) -> Option<usize>) -> IpiPlan {
    let mut plan = IpiPlan::default();
    for id in ipi_targets(bitmap, min) {
        match id.and_then(&lookup) {
            Some(vcpu) => plan.targets.push(vcpu),
            None => plan.no_target += 1,
        }
    }
    plan
}

/// A VM's KVM hypercall counters, printed in its report (`kvm hypercalls: ...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KvmCallStats {
    /// `KVM_HC_KICK_CPU` calls, those naming no vCPU, and those that woke a halted vCPU.
    pub kick_cpu: u64,
    pub kick_no_target: u64,
    pub kick_woke: u64,
    /// `KVM_HC_SEND_IPI` calls, the interrupts they delivered, and bitmap bits naming no vCPU.
    pub send_ipi: u64,
    pub ipis_delivered: u64,
    pub ipis_no_target: u64,
    /// `KVM_HC_SCHED_YIELD` calls, and those that gave up the slice to a preempted target.
    pub sched_yield: u64,
    pub yielded: u64,
    /// Calls answered `-KVM_ENOSYS`, `-KVM_EPERM`, `-KVM_EINVAL`.
    pub enosys: u64,
    pub eperm: u64,
    pub einval: u64,
}

impl KvmCallStats {
    /// Whether the guest made any KVM hypercall (the report prints the line only then).
    pub fn any(&self) -> bool {
        self.kick_cpu + self.send_ipi + self.sched_yield + self.enosys + self.eperm + self.einval
            > 0
    }
}

impl core::fmt::Display for KvmCallStats {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "kvm hypercalls: kick-cpu={} kick-no-target={} kick-woke={} send-ipi={} ipis-delivered={} ipis-no-target={} sched-yield={} yielded={} enosys={} eperm={} einval={}",
            self.kick_cpu,
            self.kick_no_target,
            self.kick_woke,
            self.send_ipi,
            self.ipis_delivered,
            self.ipis_no_target,
            self.sched_yield,
            self.yielded,
            self.enosys,
            self.eperm,
            self.einval
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_ipi_skips_apic_ids_no_vcpu_has() {
        // Two vCPUs, APIC IDs 0 and 1.
        let lookup = |id: u32| (id < 2).then_some(id as usize);
        let p = plan_send_ipi(0b1111, 0, lookup);
        assert_eq!(p.targets, [0, 1]);
        assert_eq!(p.no_target, 2);
        let p = plan_send_ipi(1, 1000, lookup);
        assert!(p.targets.is_empty());
        assert_eq!(p.no_target, 1);
        let p = plan_send_ipi(0b10 | 1 << 100, 0, lookup);
        assert_eq!(p.targets, [1]);
        assert_eq!(p.no_target, 1);
        // An ID past u32::MAX names nobody.
        let p = plan_send_ipi(0b11, u32::MAX, |_| Some(0));
        assert_eq!(p.targets, [0]);
        assert_eq!(p.no_target, 1);
        assert_eq!(plan_send_ipi(0, 0, lookup), IpiPlan::default());
    }

    #[test]
    fn send_ipi_carries_fixed_lowest_priority_and_nmi_only() {
        assert_eq!(IpiKind::from_icr(0, 0xf2), Ok(IpiKind::Fixed(0xf2)));
        assert_eq!(IpiKind::from_icr(1, 0x40), Ok(IpiKind::Fixed(0x40)));
        assert_eq!(IpiKind::from_icr(4, 0x02), Ok(IpiKind::Nmi));
        for mode in [2, 3, 5, 6, 7] {
            assert_eq!(IpiKind::from_icr(mode, 0x40), Err(KVM_EINVAL), "{mode}");
        }
        // Through the decoder: ICR 0x4fd is NMI (mode 100b).
        match decode(KVM_HC_SEND_IPI, [1, 0, 0, 0x4fd], true) {
            KvmCall::SendIpi {
                delivery_mode,
                vector,
                ..
            } => assert_eq!(IpiKind::from_icr(delivery_mode, vector), Ok(IpiKind::Nmi)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn user_mode_callers_get_eperm_and_its_rax_is_minus_one() {
        assert_eq!(check_cpl(0), Ok(()));
        for cpl in 1..=3 {
            assert_eq!(check_cpl(cpl), Err(KVM_EPERM));
        }
        let rax = result_rax(check_cpl(3).map(|()| 0), true);
        assert_eq!(rax as i64, -1);
        assert_eq!(result_rax(check_cpl(3).map(|()| 0), false), 0xffff_ffff);
    }

    #[test]
    fn stats_line_names_every_counter() {
        let mut s = KvmCallStats::default();
        assert!(!s.any());
        s.kick_cpu = 3;
        s.ipis_delivered = 4;
        s.enosys = 2;
        assert!(s.any());
        assert_eq!(
            alloc::format!("{s}"),
            "kvm hypercalls: kick-cpu=3 kick-no-target=0 kick-woke=0 send-ipi=0 ipis-delivered=4 ipis-no-target=0 sched-yield=0 yielded=0 enosys=2 eperm=0 einval=0"
        );
    }
}
