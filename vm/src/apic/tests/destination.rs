//! Destination matching for the router (SDM Vol. 3A §11.6.2; x2APIC §11.12.10).

use super::*;

fn dest(mode: DestinationMode, destination: u32) -> IpiDestination {
    IpiDestination {
        shorthand: Shorthand::None,
        mode,
        destination,
    }
}

fn physical(destination: u32) -> IpiDestination {
    dest(DestinationMode::Physical, destination)
}

fn logical(destination: u32) -> IpiDestination {
    dest(DestinationMode::Logical, destination)
}

#[test]
fn xapic_physical() {
    let a = apic(3, false);
    assert!(a.accepts_destination(&physical(3), false));
    assert!(!a.accepts_destination(&physical(4), false));
    assert!(a.accepts_destination(&physical(0xFF), false), "broadcast");
    assert!(
        a.accepts_destination(&physical(0x103), false),
        "8 bits only"
    );
}

#[test]
fn xapic_logical_flat() {
    let mut a = enabled(0);
    a.mmio_write(0xD0, 0x0400_0000, 0);
    assert!(a.accepts_destination(&logical(0x04), false));
    assert!(a.accepts_destination(&logical(0x0C), false));
    assert!(!a.accepts_destination(&logical(0x08), false));
    assert!(a.accepts_destination(&logical(0xFF), false));
    assert!(!a.accepts_destination(&logical(0x00), false));
}

#[test]
fn xapic_logical_cluster() {
    let mut a = enabled(0);
    a.mmio_write(0xE0, 0x0FFF_FFFF, 0);
    a.mmio_write(0xD0, 0x2100_0000, 0);
    assert!(a.accepts_destination(&logical(0x21), false));
    assert!(a.accepts_destination(&logical(0x23), false));
    assert!(
        !a.accepts_destination(&logical(0x22), false),
        "other member"
    );
    assert!(
        !a.accepts_destination(&logical(0x31), false),
        "other cluster"
    );
    assert!(
        a.accepts_destination(&logical(0xF1), false),
        "every cluster"
    );
    assert!(!a.accepts_destination(&logical(0xF2), false));
    assert!(a.accepts_destination(&logical(0xFF), false));
    a.mmio_write(0xE0, 0x5FFF_FFFF, 0);
    assert!(
        !a.accepts_destination(&logical(0x21), false),
        "reserved model"
    );
}

#[test]
fn x2apic_physical_and_logical() {
    let a = x2(0x25);
    assert!(a.accepts_destination(&physical(0x25), false));
    assert!(!a.accepts_destination(&physical(0x26), false));
    assert!(
        !a.accepts_destination(&physical(0xFF), false),
        "0xFF is an ID in x2APIC"
    );
    assert!(a.accepts_destination(&physical(0xFFFF_FFFF), false));
    // LDR 0x0002_0020: cluster 2, member bit 5.
    assert!(a.accepts_destination(&logical(0x0002_0020), false));
    assert!(a.accepts_destination(&logical(0x0002_0030), false));
    assert!(!a.accepts_destination(&logical(0x0002_0010), false));
    assert!(!a.accepts_destination(&logical(0x0003_0020), false));
    assert!(a.accepts_destination(&logical(0xFFFF_FFFF), false));
}

#[test]
fn shorthands_use_is_sender() {
    let a = apic(1, false);
    let with = |shorthand| IpiDestination {
        shorthand,
        ..physical(7)
    };
    assert!(a.accepts_destination(&with(Shorthand::Self_), true));
    assert!(!a.accepts_destination(&with(Shorthand::Self_), false));
    assert!(a.accepts_destination(&with(Shorthand::AllIncludingSelf), true));
    assert!(a.accepts_destination(&with(Shorthand::AllIncludingSelf), false));
    assert!(!a.accepts_destination(&with(Shorthand::AllExcludingSelf), true));
    assert!(a.accepts_destination(&with(Shorthand::AllExcludingSelf), false));
}

#[test]
fn a_disabled_apic_matches_nothing() {
    let mut a = apic(1, false);
    a.set_apic_base(DEFAULT_APIC_BASE).unwrap();
    assert!(!a.accepts_destination(&physical(0xFF), false));
    let all = IpiDestination {
        shorthand: Shorthand::AllIncludingSelf,
        ..physical(0)
    };
    assert!(!a.accepts_destination(&all, false));
}

#[test]
fn an_ipi_names_its_destination() {
    let mut a = enabled(0);
    a.mmio_write(0x310, 0x0500_0000, 0);
    let ApicEffect::Ipi(ipi) = a.mmio_write(0x300, 0x4831, 0) else {
        panic!("no IPI");
    };
    assert_eq!(ipi.destination(), logical(5));
}
