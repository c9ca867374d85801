//! Byte-level checks of the tables (vm/tests/acpi_tables.rs parses them back with the `acpi`
//! crate as an independent reader).

use super::*;
use alloc::vec;
use alloc::vec::Vec;

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

fn sum(b: &[u8]) -> u8 {
    b.iter().fold(0u8, |a, &x| a.wrapping_add(x))
}

/// The table at `gpa` in `t`'s image, by its header's length, after checking the header.
fn table<'a>(t: &'a GuestTables, gpa: u64, sig: &[u8; 4], revision: u8) -> &'a [u8] {
    let at = (gpa - t.base_gpa()) as usize;
    let img = t.image();
    assert_eq!(&img[at..at + 4], sig);
    let len = le32(img, at + 4) as usize;
    let bytes = &img[at..at + len];
    assert_eq!(bytes[8], revision, "{sig:?} revision");
    assert_eq!(sum(bytes), 0, "{sig:?} checksum");
    assert_eq!(&bytes[10..16], b"BLKHD ");
    assert_eq!(&bytes[16..24], b"BULKHEAD");
    assert_eq!(le32(bytes, 24), 1);
    bytes
}

#[test]
fn layout_at_the_bios_area() {
    let t = GuestTables::build(&AcpiConfig::new(1), BIOS_AREA_GPA).unwrap();
    let l = t.layout();
    assert_eq!(t.rsdp_gpa(), 0xE0000);
    assert_eq!(
        (l.xsdt, l.fadt, l.facs, l.madt, l.dsdt),
        (0xE0040, 0xE0080, 0xE01C0, 0xE0200, 0xE0280)
    );
    // DSDT: 36-byte header + \_SB scope (7) + \_S5 (13).
    assert_eq!(t.end_gpa(), 0xE0280 + 56);
    assert_eq!(t.image().len(), 0x280 + 56);
}

#[test]
fn rsdp_bytes() {
    let t = GuestTables::build(&AcpiConfig::new(2), BIOS_AREA_GPA).unwrap();
    let r = &t.image()[..36];
    assert_eq!(&r[0..8], b"RSD PTR ");
    assert_eq!(sum(&r[..20]), 0, "ACPI 1.0 checksum");
    assert_eq!(sum(r), 0, "extended checksum");
    assert_eq!(&r[9..15], b"BLKHD ");
    assert_eq!(r[15], 2, "revision 2");
    assert_eq!(le32(r, 16), 0, "no RSDT");
    assert_eq!(le32(r, 20), 36, "length");
    assert_eq!(le64(r, 24), t.layout().xsdt);
    assert_eq!(&r[33..36], &[0, 0, 0]);
}

#[test]
fn xsdt_lists_the_fadt_and_the_madt() {
    let t = GuestTables::build(&AcpiConfig::new(2), BIOS_AREA_GPA).unwrap();
    let l = t.layout();
    let x = table(&t, l.xsdt, b"XSDT", 1);
    assert_eq!(x.len(), 36 + 16);
    assert_eq!((le64(x, 36), le64(x, 44)), (l.fadt, l.madt));
}

#[test]
fn fadt_bytes() {
    let t = GuestTables::build(&AcpiConfig::new(2), BIOS_AREA_GPA).unwrap();
    let l = t.layout();
    let f = table(&t, l.fadt, b"FACP", 6);
    assert_eq!(f.len(), 276, "ACPI 6.x FADT");
    assert_eq!(le32(f, 36), l.facs as u32, "FIRMWARE_CTRL");
    assert_eq!(le32(f, 40), l.dsdt as u32, "DSDT");
    assert_eq!(u16::from_le_bytes([f[46], f[47]]), 9, "SCI_INT");
    assert_eq!(le32(f, 48), 0, "SMI_CMD");
    assert_eq!((f[52], f[53]), (0, 0), "ACPI_ENABLE/DISABLE");
    assert_eq!(le32(f, 56), 0x600, "PM1a_EVT_BLK");
    assert_eq!(le32(f, 60), 0, "PM1b_EVT_BLK");
    assert_eq!(le32(f, 64), 0x604, "PM1a_CNT_BLK");
    assert_eq!(le32(f, 76), 0, "PM_TMR_BLK");
    assert_eq!(le32(f, 80), 0, "GPE0_BLK");
    assert_eq!(
        &f[88..92],
        &[4, 2, 0, 0],
        "PM1_EVT_LEN, PM1_CNT_LEN, PM2, PM_TMR"
    );
    assert_eq!(u16::from_le_bytes([f[96], f[97]]), 101, "P_LVL2_LAT: no C2");
    assert_eq!(
        u16::from_le_bytes([f[98], f[99]]),
        1001,
        "P_LVL3_LAT: no C3"
    );
    assert_eq!(f[108], 0x32, "CENTURY");
    assert_eq!(
        u16::from_le_bytes([f[109], f[110]]),
        0b1101,
        "IAPC_BOOT_ARCH"
    );
    // WBINVD (0), PROC_C1 (2), SLP_BUTTON (5), FIX_RTC (6), RESET_REG_SUP (10), HEADLESS (12).
    assert_eq!(le32(f, 112), 0x1465, "flags");
    assert_eq!(
        &f[116..120],
        &[1, 8, 0, 1],
        "RESET_REG: I/O, 8 bits, byte access"
    );
    assert_eq!(le64(f, 120), 0xCF9);
    assert_eq!(f[128], 6, "RESET_VALUE");
    assert_eq!(f[131], 5, "FADT minor version 5");
    assert_eq!(le64(f, 132), 0, "X_FIRMWARE_CTRL");
    assert_eq!(le64(f, 140), l.dsdt, "X_DSDT");
    assert_eq!(&f[148..152], &[1, 32, 0, 2], "X_PM1a_EVT_BLK");
    assert_eq!(le64(f, 152), 0x600);
    assert_eq!(&f[172..176], &[1, 16, 0, 2], "X_PM1a_CNT_BLK");
    assert_eq!(le64(f, 176), 0x604);
    assert!(
        f[184..268].iter().all(|&b| b == 0),
        "PM1b..SLEEP_STATUS absent"
    );
    assert_eq!(&f[268..276], b"Bulkhead", "HYPERVISOR_VENDOR_IDENTITY");
}

#[test]
fn facs_bytes() {
    let t = GuestTables::build(&AcpiConfig::new(1), BIOS_AREA_GPA).unwrap();
    let at = (t.layout().facs - BIOS_AREA_GPA) as usize;
    let f = &t.image()[at..at + 64];
    assert_eq!(at % 64, 0, "64-byte aligned");
    assert_eq!(&f[0..4], b"FACS");
    assert_eq!(le32(f, 4), 64);
    assert_eq!(f[32], 2, "version");
    assert!(f[8..32].iter().all(|&b| b == 0));
}

#[test]
fn madt_bytes() {
    let t = GuestTables::build(&AcpiConfig::new(2), BIOS_AREA_GPA).unwrap();
    let m = table(&t, t.layout().madt, b"APIC", 5);
    assert_eq!(le32(m, 36), 0xFEE0_0000);
    assert_eq!(le32(m, 40), 1, "PCAT_COMPAT");
    let expect: Vec<u8> = [
        // Processor Local APIC: UID 0 / APIC 0, UID 1 / APIC 1, enabled.
        &[0u8, 8, 0, 0, 1, 0, 0, 0][..],
        &[0, 8, 1, 1, 1, 0, 0, 0],
        // IOAPIC ID 0xF at 0xFEC00000, GSI base 0.
        &[1, 12, 0xF, 0, 0, 0, 0xC0, 0xFE, 0, 0, 0, 0],
        // ISA IRQ0 -> GSI 2, edge, active high.
        &[2, 10, 0, 0, 2, 0, 0, 0, 0x05, 0],
        // ISA IRQ9 -> GSI 9, level, active high.
        &[2, 10, 0, 9, 9, 0, 0, 0, 0x0D, 0],
        // Local APIC NMI: all processors, edge high, LINT1.
        &[4, 6, 0xFF, 0x05, 0, 1],
    ]
    .concat();
    assert_eq!(&m[44..], &expect[..]);
}

#[test]
fn x2apic_entries_for_large_ids() {
    let mut cfg = AcpiConfig::new(0);
    cfg.apic_ids = vec![0, 255, 0x1_0000];
    let t = GuestTables::build(&cfg, BIOS_AREA_GPA).unwrap();
    let m = table(&t, t.layout().madt, b"APIC", 5);
    let entries = &m[44..];
    assert_eq!(&entries[..8], &[0, 8, 0, 0, 1, 0, 0, 0]);
    // x2APIC: reserved, x2APIC ID 255, enabled, UID 1.
    assert_eq!(
        &entries[8..24],
        &[9, 16, 0, 0, 0xFF, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0]
    );
    assert_eq!(
        &entries[24..40],
        &[9, 16, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 2, 0, 0, 0]
    );
    // After the IOAPIC, two overrides and the local APIC NMI: the x2APIC NMI for all.
    let tail = &entries[40 + 12 + 10 + 10 + 6..];
    assert_eq!(
        tail,
        &[0xA, 12, 0x05, 0, 0xFF, 0xFF, 0xFF, 0xFF, 1, 0, 0, 0]
    );
}

#[test]
fn dsdt_aml() {
    let t = GuestTables::build(&AcpiConfig::new(1), BIOS_AREA_GPA).unwrap();
    let d = table(&t, t.layout().dsdt, b"DSDT", 2);
    assert_eq!(
        &d[36..],
        &[
            // Scope (\_SB) {}
            0x10, 0x06, b'\\', b'_', b'S', b'B', b'_',
            // Name (_S5, Package (4) {5, 0, 0, 0})
            0x08, b'_', b'S', b'5', b'_', 0x12, 0x07, 0x04, 0x0A, 0x05, 0x00, 0x00, 0x00,
        ]
    );
}

#[test]
fn dsdt_objects_go_inside_sb() {
    use aml::{Device, EISAName, Name, Path};
    let mut cfg = AcpiConfig::new(1);
    let hid = EISAName::new("PNP0501");
    let uid = 0u8;
    let hid_name = Name::new(Path::new("_HID"), &hid);
    let uid_name = Name::new(Path::new("_UID"), &uid);
    cfg.dsdt
        .add_to_sb(&Device::new(Path::new("COM1"), vec![&hid_name, &uid_name]));
    let t = GuestTables::build(&cfg, BIOS_AREA_GPA).unwrap();
    let d = table(&t, t.layout().dsdt, b"DSDT", 2);
    // Device (COM1) { Name (_HID, EisaId ("PNP0501")) Name (_UID, 0) }: ExtOpPrefix 0x5B,
    // DeviceOp 0x82, PkgLength 0x15, "COM1", then the two names (EISA ID 0x0105D041).
    let device = [
        0x5B, 0x82, 0x15, b'C', b'O', b'M', b'1', 0x08, b'_', b'H', b'I', b'D', 0x0C, 0x41, 0xD0,
        0x05, 0x01, 0x08, b'_', b'U', b'I', b'D', 0x00,
    ];
    assert_eq!(&d[36..38], &[0x10, 0x06 + device.len() as u8]);
    assert_eq!(&d[38..43], b"\\_SB_");
    assert_eq!(&d[43..43 + device.len()], &device);
    assert_eq!(&d[43 + device.len()..43 + device.len() + 5], b"\x08_S5_");
}

#[test]
fn many_vcpus_fit_below_1_mib() {
    let t = GuestTables::build(&AcpiConfig::new(MAX_VCPUS as u32), BIOS_AREA_GPA).unwrap();
    assert!(t.end_gpa() <= BIOS_AREA_END);
    let m = table(&t, t.layout().madt, b"APIC", 5);
    // 255 vCPUs: UIDs 0-254 with APIC IDs 0-254 are all xAPIC entries.
    assert_eq!(m.len(), 44 + 255 * 8 + 12 + 10 + 10 + 6);
}

#[test]
fn errors() {
    let build = |ids: Vec<u32>, base| {
        let mut cfg = AcpiConfig::new(0);
        cfg.apic_ids = ids;
        GuestTables::build(&cfg, base).map(|_| ()).unwrap_err()
    };
    assert_eq!(build(vec![], BIOS_AREA_GPA), AcpiError::NoVcpus);
    assert_eq!(
        build((0..256).collect(), BIOS_AREA_GPA),
        AcpiError::TooManyVcpus {
            count: 256,
            max: 255
        }
    );
    assert_eq!(
        build(vec![0, 1, 0], BIOS_AREA_GPA),
        AcpiError::DuplicateApicId(0)
    );
    assert_eq!(
        build(vec![0], 0xE0008),
        AcpiError::Misaligned { base_gpa: 0xE0008 }
    );
    assert_eq!(
        build(vec![0], 0xFFF00),
        AcpiError::DoesNotFit {
            end: 0xFFF00 + 0x280 + 56,
            limit: 0x10_0000
        }
    );
    assert_eq!(
        build(vec![0], 0xFFFF_FF00),
        AcpiError::DoesNotFit {
            end: 0xFFFF_FF00 + 0x280 + 56,
            limit: 1 << 32
        }
    );
    // Elsewhere below 4 GiB is fine.
    let t = GuestTables::build(&AcpiConfig::new(1), 0x7FF_0000).unwrap();
    assert_eq!(t.rsdp_gpa(), 0x7FF_0000);
    assert_eq!(le64(t.image(), 24), 0x7FF_0040);
    assert!(AcpiError::DuplicateApicId(3)
        .to_string()
        .contains("APIC ID 3"));
}

#[test]
fn virtio_mmio_device_aml() {
    let mut cfg = AcpiConfig::new(1);
    let device = VirtioMmio {
        base: 0xD000_1000,
        size: 0x1000,
        gsi: 6,
    };
    cfg.dsdt.add_virtio_mmio(1, &device);
    let t = GuestTables::build(&cfg, BIOS_AREA_GPA).unwrap();
    let d = table(&t, t.layout().dsdt, b"DSDT", 2);
    #[rustfmt::skip]
    let expected: &[u8] = &[
        // Device (VR01), PkgLength 0x3A
        0x5B, 0x82, 0x3A, b'V', b'R', b'0', b'1',
        // Name (_HID, "LNRO0005")
        0x08, b'_', b'H', b'I', b'D', 0x0D, b'L', b'N', b'R', b'O', b'0', b'0', b'0', b'5', 0,
        // Name (_UID, 1)
        0x08, b'_', b'U', b'I', b'D', 0x01,
        // Name (_CRS, Buffer (23) { ... })
        0x08, b'_', b'C', b'R', b'S', 0x11, 0x1A, 0x0A, 0x17,
        // Memory32Fixed (ReadWrite, 0xD0001000, 0x1000) (ACPI 6.5 §6.4.3.4)
        0x86, 0x09, 0x00, 0x01, 0x00, 0x10, 0x00, 0xD0, 0x00, 0x10, 0x00, 0x00,
        // Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive) { 6 } (§6.4.3.6)
        0x89, 0x06, 0x00, 0x03, 0x01, 0x06, 0x00, 0x00, 0x00,
        // End tag
        0x79, 0x00,
    ];
    // Scope (\_SB) { ... } with a two-byte PkgLength (§20.2.4: the body is over 63 bytes).
    assert_eq!(
        &d[36..39],
        &[
            0x10,
            0x40 | (5 + expected.len() + 2) as u8 & 0xF,
            ((5 + expected.len() + 2) >> 4) as u8
        ]
    );
    assert_eq!(&d[39..44], b"\\_SB_");
    assert_eq!(&d[44..44 + expected.len()], expected);
}

#[test]
fn com1_device_aml() {
    let mut cfg = AcpiConfig::new(1);
    cfg.dsdt.add_com1();
    let t = GuestTables::build(&cfg, BIOS_AREA_GPA).unwrap();
    let d = table(&t, t.layout().dsdt, b"DSDT", 2);
    #[rustfmt::skip]
    let expected: &[u8] = &[
        0x5B, 0x82, 0x31, b'C', b'O', b'M', b'1',
        // Name (_HID, EisaId ("PNP0501"))
        0x08, b'_', b'H', b'I', b'D', 0x0C, 0x41, 0xD0, 0x05, 0x01,
        // Name (_UID, 0)
        0x08, b'_', b'U', b'I', b'D', 0x00,
        // Name (_CRS, Buffer (19) { ... })
        0x08, b'_', b'C', b'R', b'S', 0x11, 0x16, 0x0A, 0x13,
        // IO (Decode16, 0x3F8, 0x3F8, 1, 8) (§6.4.2.5)
        0x47, 0x01, 0xF8, 0x03, 0xF8, 0x03, 0x01, 0x08,
        // Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive) { 4 }
        0x89, 0x06, 0x00, 0x03, 0x01, 0x04, 0x00, 0x00, 0x00,
        0x79, 0x00,
    ];
    assert_eq!(&d[43..43 + expected.len()], expected);
}
