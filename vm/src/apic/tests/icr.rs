//! The interrupt command register (SDM Vol. 3A §11.6.1, Figure 11-12, Table 11-3).

use super::*;

fn ipi(delivery_mode: DeliveryMode, vector: u8, destination: u32) -> Ipi {
    Ipi {
        delivery_mode,
        vector,
        destination_mode: DestinationMode::Physical,
        destination,
        shorthand: Shorthand::None,
        level: true,
        trigger: TriggerMode::Edge,
    }
}

fn send(a: &mut Apic, high: u32, low: u32) -> ApicEffect {
    a.mmio_write(0x310, high, 0);
    a.mmio_write(0x300, low, 0)
}

#[test]
fn every_delivery_mode() {
    let mut a = enabled(0);
    let cases = [
        (0x0000_4031, ipi(DeliveryMode::Fixed, 0x31, 3)),
        (0x0000_4140, ipi(DeliveryMode::LowestPriority, 0x40, 3)),
        (0x0000_4200, ipi(DeliveryMode::Smi, 0, 3)),
        (0x0000_4400, ipi(DeliveryMode::Nmi, 0, 3)),
        (0x0000_4500, ipi(DeliveryMode::Init, 0, 3)),
        (0x0000_4608, ipi(DeliveryMode::StartUp, 0x08, 3)),
        (
            0x0000_8500,
            Ipi {
                level: false,
                trigger: TriggerMode::Level,
                ..ipi(DeliveryMode::InitLevelDeassert, 0, 3)
            },
        ),
        (
            0x0000_C931,
            Ipi {
                destination_mode: DestinationMode::Logical,
                trigger: TriggerMode::Level,
                ..ipi(DeliveryMode::LowestPriority, 0x31, 3)
            },
        ),
    ];
    for (low, expected) in cases {
        assert_eq!(
            send(&mut a, 0x0300_0000, low),
            ApicEffect::Ipi(expected),
            "ICR {low:#x}"
        );
    }
    assert_eq!(a.stats().ipis_sent, cases.len() as u64);
    assert_eq!(a.mmio_read(0x300, 0), 0xC931, "delivery status reads 0");
    assert_eq!(a.mmio_read(0x310, 0), 0x0300_0000);
    assert_eq!(esr(&mut a), 0);
}

#[test]
fn icr_high_write_alone_sends_nothing() {
    let mut a = enabled(0);
    assert_eq!(a.mmio_write(0x310, 0xFFFF_FFFF, 0), ApicEffect::None);
    assert_eq!(a.mmio_read(0x310, 0), 0xFF00_0000);
    assert_eq!(a.stats().ipis_sent, 0);
}

#[test]
fn shorthands() {
    let mut a = enabled(0);
    let all = |shorthand| Ipi {
        shorthand,
        destination: 0,
        ..ipi(DeliveryMode::Fixed, 0x90, 0)
    };
    assert_eq!(
        send(&mut a, 0, 0x8_4090),
        ApicEffect::Ipi(all(Shorthand::AllIncludingSelf))
    );
    assert_eq!(
        send(&mut a, 0, 0xC_4090),
        ApicEffect::Ipi(all(Shorthand::AllExcludingSelf))
    );
    assert_eq!(a.highest_irr(), None, "the router delivers those");
    assert_eq!(
        send(&mut a, 0, 0x4_4090),
        ApicEffect::SelfIpi { vector: 0x90 }
    );
    assert_eq!(
        a.highest_irr(),
        Some(0x90),
        "self: delivered inside the model"
    );
    assert_eq!(
        send(&mut a, 0, 0x4_C091),
        ApicEffect::SelfIpi { vector: 0x91 }
    );
    assert_eq!(word(&a, 0x180 + 0x40), 1 << 17, "level self IPI sets TMR");
    let stats = a.stats();
    assert_eq!((stats.ipis_sent, stats.self_ipis), (2, 2));
}

#[test]
fn illegal_vectors_send_nothing_and_latch_send_illegal_vector() {
    let mut a = enabled(0);
    assert_eq!(send(&mut a, 0, 0x400F), ApicEffect::None);
    assert_eq!(send(&mut a, 0, 0x4105), ApicEffect::None);
    assert_eq!(
        send(&mut a, 0, 0x4_4001),
        ApicEffect::None,
        "self, vector 1"
    );
    assert_eq!(a.highest_irr(), None);
    assert_eq!(esr(&mut a), ESR_SEND_ILLEGAL_VECTOR);
    assert_eq!(a.stats().ipis_rejected, 3);
    assert_eq!(a.stats().ipis_sent, 0);
    // SIPI and NMI vectors below 16 are fine.
    assert!(matches!(send(&mut a, 0, 0x4600), ApicEffect::Ipi(_)));
}

#[test]
fn reserved_modes_and_combinations_send_nothing() {
    let mut a = enabled(0);
    assert_eq!(send(&mut a, 0, 0x4330), ApicEffect::None, "mode 011");
    assert_eq!(send(&mut a, 0, 0x4730), ApicEffect::None, "mode 111");
    assert_eq!(send(&mut a, 0, 0x4_4400), ApicEffect::None, "NMI to self");
    assert_eq!(
        send(&mut a, 0, 0x4_4130),
        ApicEffect::None,
        "lowest priority to self"
    );
    assert_eq!(esr(&mut a), 0);
    assert_eq!(a.stats().ipis_rejected, 4);
}
