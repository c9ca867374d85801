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
