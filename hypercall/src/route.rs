//! Two ABIs on one `VMCALL`: in a VM offered the KVM paravirtual interface (`kvm-pv = yes`,
//! KVM's leaves at `0x4000_0100`), an untagged call number is KVM's (KVM numbers 1–12
//! overlap Bulkhead's 0–6); a Bulkhead call is tagged with [`BULKHEAD_TAG`] in RAX bits
//! 31:16. Every VM accepts the tagged form, so a guest that always tags works in both kinds
//! of VM; VMs without KVM PV also take untagged numbers as Bulkhead's (the existing test
//! guests). The tag lives in the low 32 bits so 32-bit callers (EAX only) can use it too.

/// `"BH"` in RAX bits 31:16: this call is Bulkhead's (`RAX = BULKHEAD_TAG | nr`).
pub const BULKHEAD_TAG: u64 = 0x4248_0000;
/// The bits the tag occupies.
pub const TAG_MASK: u64 = 0xffff_0000;

/// Which ABI a `VMCALL` belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Abi {
    /// A Bulkhead call with this number (tag removed).
    Bulkhead(u64),
    /// A KVM hypercall with this number.
    Kvm(u64),
}

/// Routes a `VMCALL` by its RAX (already truncated to 32 bits for a 32-bit caller).
pub const fn route(rax: u64, kvm_pv: bool) -> Abi {
    if rax & !0xffff == BULKHEAD_TAG {
        Abi::Bulkhead(rax & !TAG_MASK)
    } else if kvm_pv {
        Abi::Kvm(rax)
    } else {
        Abi::Bulkhead(rax)
    }
}

/// The Bulkhead call number of `rax` in a VM without KVM's interface: the tag removed if
/// present (`route(rax, false)`).
pub const fn untag(rax: u64) -> u64 {
    match route(rax, false) {
        Abi::Bulkhead(nr) | Abi::Kvm(nr) => nr,
    }
}

/// The RAX a guest loads for Bulkhead call `nr` in a VM with KVM PV (works in every VM).
pub const fn tagged(nr: u64) -> u64 {
    BULKHEAD_TAG | nr
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call;

    #[test]
    fn untagged_numbers_are_bulkhead_s_without_kvm_pv_and_kvm_s_with_it() {
        for nr in 0..call::FIRST_UNASSIGNED {
            assert_eq!(route(nr, false), Abi::Bulkhead(nr));
            assert_eq!(route(nr, true), Abi::Kvm(nr));
        }
        // KVM_HC_SEND_IPI, KVM_HC_SCHED_YIELD.
        assert_eq!(route(10, true), Abi::Kvm(10));
        assert_eq!(route(11, true), Abi::Kvm(11));
    }

    #[test]
    fn tagged_numbers_are_bulkhead_s_in_every_vm() {
        for nr in 0..call::FIRST_UNASSIGNED {
            assert_eq!(tagged(nr), 0x4248_0000 + nr);
            assert_eq!(route(tagged(nr), true), Abi::Bulkhead(nr));
            assert_eq!(route(tagged(nr), false), Abi::Bulkhead(nr));
        }
        assert_eq!(untag(tagged(call::MULTICALL)), call::MULTICALL);
        assert_eq!(untag(call::MULTICALL), call::MULTICALL);
        // An unassigned tagged number stays Bulkhead's (the dispatcher answers -Unknown).
        assert_eq!(route(tagged(0xffff), true), Abi::Bulkhead(0xffff));
    }

    #[test]
    fn the_tag_must_be_exact() {
        // Other high bits: not the tag; in a KVM PV VM that is KVM's (-KVM_ENOSYS).
        assert_eq!(route(0x4249_0001, true), Abi::Kvm(0x4249_0001));
        assert_eq!(
            route(1 << 32 | BULKHEAD_TAG, true),
            Abi::Kvm(1 << 32 | BULKHEAD_TAG)
        );
        assert_eq!(
            route(1 << 32 | BULKHEAD_TAG, false),
            Abi::Bulkhead(1 << 32 | BULKHEAD_TAG)
        );
    }
}
