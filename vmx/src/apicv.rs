//! APIC virtualization (SDM Vol. 3C ch. 30, "APIC Virtualization and Virtual Interrupts"):
//! when a CPU has it, which controls Bulkhead uses, which x2APIC MSR accesses the CPU then
//! virtualizes (so the MSR bitmap may let them through), and the guest interrupt status.
//!
//! Bulkhead uses APIC virtualization only in its complete form: "use TPR shadow",
//! "virtualize APIC accesses" / "virtualize x2APIC mode", "APIC-register virtualization"
//! and "virtual-interrupt delivery" together ([`available`]). Without all of them (Bochs:
//! arrandale, sandy and ivy bridge) every APIC access exits and is emulated.

use crate::caps::Capabilities;
use crate::controls::{PrimaryControls, SecondaryControls};

/// The secondary controls of APIC virtualization (both APIC-access modes included: one of
/// the two is on at a time, by the guest's APIC mode, SDM Vol. 3C §27.2.1.1).
pub const SECONDARY: SecondaryControls = SecondaryControls::VIRTUALIZE_APIC_ACCESSES
    .union(SecondaryControls::VIRTUALIZE_X2APIC_MODE)
    .union(SecondaryControls::APIC_REGISTER_VIRTUALIZATION)
    .union(SecondaryControls::VIRTUAL_INTERRUPT_DELIVERY);

/// Whether the CPU offers every control of complete APIC virtualization.
pub fn available(caps: &Capabilities) -> bool {
    let primary = PrimaryControls::from_bits_retain(caps.primary.may_be_one);
    let secondary = SecondaryControls::from_bits_retain(caps.secondary.may_be_one);
    primary.contains(PrimaryControls::USE_TPR_SHADOW) && secondary.contains(SECONDARY)
}

/// The x2APIC MSRs whose RDMSR the CPU reads from the virtual-APIC page when "APIC-register
/// virtualization" and "virtualize x2APIC mode" are 1 (SDM Vol. 3C §30.5 "Virtualizing MSR-
/// Based APIC Accesses"): ID, version, TPR, PPR, LDR, SVR, ISR, TMR, IRR, ESR, LVT CMCI, ICR,
/// the LVTs, initial count and divide configuration. The timer's current count (0x839) is
/// listed too but the page cannot hold a count that runs down: it stays intercepted, as do
/// the MSRs outside the list, which the CPU would otherwise read from the physical APIC.
pub fn x2apic_read_virtualized(msr: u32) -> bool {
    matches!(msr,
        0x802 | 0x803 | 0x808 | 0x80A | 0x80D | 0x80F
        | 0x810..=0x827 // ISR, TMR, IRR
        | 0x828 | 0x82F | 0x830 | 0x832..=0x838 | 0x83E)
}

/// The x2APIC MSRs whose WRMSR the CPU virtualizes with "virtual-interrupt delivery" (SDM
/// Vol. 3C §30.5): TPR (TPR virtualization), EOI (EOI virtualization) and SELF IPI
/// (self-IPI virtualization). Every other write exits and is emulated.
pub const X2APIC_WRITES_VIRTUALIZED: [u32; 3] = [0x808, 0x80B, 0x83F];

/// The bit of `msr` in a VMX MSR bitmap (SDM Vol. 3C §25.6.9: read bitmap for low MSRs at
/// bytes 0-1023, write bitmap for low MSRs at 2048-3071): the x2APIC range is "low".
fn bit(msr: u32, write: bool) -> (usize, u8) {
    let byte = (msr / 8) as usize + if write { 2048 } else { 0 };
    (byte, (msr % 8) as u8)
}

/// The MSR bitmap a vCPU in x2APIC mode uses under APIC virtualization: `base` (the VM's
/// policy, where every x2APIC MSR exits) with the virtualized reads and writes let through.
pub fn x2apic_msr_bitmap(base: &[u8; 4096]) -> [u8; 4096] {
    let mut bitmap = *base;
    for msr in 0x800..=0x8FF {
        if x2apic_read_virtualized(msr) {
            let (byte, b) = bit(msr, false);
            bitmap[byte] &= !(1 << b);
        }
    }
    for msr in X2APIC_WRITES_VIRTUALIZED {
        let (byte, b) = bit(msr, true);
        bitmap[byte] &= !(1 << b);
    }
    bitmap
}

/// The guest interrupt status field (SDM Vol. 3C §25.4.2): RVI in bits 7:0 (the highest
/// requesting vector, 0 for none), SVI in bits 15:8 (the highest in-service vector).
pub const fn guest_interrupt_status(rvi: Option<u8>, svi: Option<u8>) -> u16 {
    let rvi = match rvi {
        Some(v) => v as u16,
        None => 0,
    };
    let svi = match svi {
        Some(v) => v as u16,
        None => 0,
    };
    (svi << 8) | rvi
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    fn exits(bitmap: &[u8; 4096], msr: u32, write: bool) -> bool {
        let (byte, b) = bit(msr, write);
        bitmap[byte] & (1 << b) != 0
    }

    #[test]
    fn bochs_models_with_and_without_apic_virtualization() {
        let caps = |raw| Capabilities::decode(&raw);
        assert!(available(&caps(fixtures::skylake_x())));
        assert!(available(&caps(fixtures::tigerlake())));
        assert!(!available(&caps(fixtures::arrandale())));
        assert!(!available(&caps(fixtures::core2_penryn())));
    }

    #[test]
    fn the_x2apic_bitmap_lets_through_only_what_the_cpu_virtualizes() {
        let base = [0xFFu8; 4096];
        let bitmap = x2apic_msr_bitmap(&base);
        // Reads from the virtual-APIC page.
        for msr in [
            0x802, 0x803, 0x808, 0x80A, 0x80D, 0x80F, 0x810, 0x827, 0x828, 0x830, 0x838,
        ] {
            assert!(!exits(&bitmap, msr, false), "read of {msr:#x}");
        }
        // The current count, the write-only EOI and SELF IPI, reserved MSRs: intercepted.
        for msr in [
            0x839, 0x80B, 0x83F, 0x800, 0x801, 0x804, 0x80E, 0x831, 0x840, 0x8FF,
        ] {
            assert!(exits(&bitmap, msr, false), "read of {msr:#x}");
        }
        // Writes: TPR, EOI, SELF IPI virtualized; everything else emulated.
        for msr in X2APIC_WRITES_VIRTUALIZED {
            assert!(!exits(&bitmap, msr, true), "write of {msr:#x}");
        }
        for msr in [0x802, 0x80F, 0x830, 0x832, 0x838, 0x83E] {
            assert!(exits(&bitmap, msr, true), "write of {msr:#x}");
        }
        // Nothing outside the x2APIC range changed.
        for msr in [0x0, 0x1B, 0x6E0, 0x7FF, 0x900, 0x1FFF] {
            assert!(exits(&bitmap, msr, false) && exits(&bitmap, msr, true));
        }
        assert_eq!(bitmap[1024..2048], base[1024..2048]);
        assert_eq!(bitmap[3072..], base[3072..]);
    }

    #[test]
    fn guest_interrupt_status_packs_rvi_and_svi() {
        assert_eq!(guest_interrupt_status(None, None), 0);
        assert_eq!(guest_interrupt_status(Some(0x41), None), 0x0041);
        assert_eq!(guest_interrupt_status(Some(0x41), Some(0xEF)), 0xEF41);
    }
}
