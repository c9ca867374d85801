//! The loader with ACPI tables (`LinuxExtras::acpi`).

use super::*;
use crate::acpi::{AcpiConfig, GuestTables, BIOS_AREA_GPA};

fn load_with(tables: &GuestTables, extra: &[E820Entry]) -> Result<Mem, LinuxError> {
    let image = bzimage();
    let mut mem = Mem::new(RAM);
    let cfg = LinuxConfig {
        e820_extra: extra,
        ..config(RAM, "console=ttyS0", None)
    };
    let extras = LinuxExtras { acpi: Some(tables) };
    load_linux_with(&image, &cfg, &extras, &mut mem)?;
    Ok(mem)
}

#[test]
fn tables_in_the_bios_area() {
    let t = GuestTables::build(&AcpiConfig::new(2), BIOS_AREA_GPA).unwrap();
    let mem = load_with(&t, &[]).unwrap();
    // zero-page.rst: acpi_rsdp_addr at 0x070.
    assert_eq!(mem.u64(ZERO_PAGE_GPA + 0x70), 0xE0000);
    assert_eq!(mem.read(0xE0000, t.image().len()), t.image());
    assert_eq!(&mem.read(0xE0000, 8)[..], b"RSD PTR ");
    // The BIOS area stays reserved in the e820 map.
    assert_eq!(
        e820(&mem),
        [
            (0, 0x9FC00, 1),
            (0x9FC00, 0x100000 - 0x9FC00, 2),
            (0x100000, RAM - 0x100000, 1)
        ]
    );
}

#[test]
fn no_tables_no_rsdp_pointer() {
    let mut mem = Mem::new(RAM);
    load_linux(&bzimage(), &config(RAM, "x", None), &mut mem).unwrap();
    assert_eq!(mem.u64(ZERO_PAGE_GPA + 0x70), 0);
    assert!(!mem.written(0xE0000));
}

#[test]
fn tables_must_not_be_in_ram() {
    let base = 0x300_0000;
    let t = GuestTables::build(&AcpiConfig::new(1), base).unwrap();
    assert_eq!(
        load_with(&t, &[]).map(drop).unwrap_err(),
        LinuxError::AcpiTablesInRam {
            start: base,
            end: t.end_gpa()
        }
    );
    // Reserved by an extra e820 entry: accepted, and the map says so.
    let hole = [E820Entry {
        addr: base,
        size: 0x1000,
        kind: E820Kind::Acpi,
    }];
    let mem = load_with(&t, &hole).unwrap();
    assert_eq!(mem.u64(ZERO_PAGE_GPA + 0x70), base);
    assert!(e820(&mem).contains(&(base, 0x1000, 3)));
    assert!(LinuxError::AcpiTablesInRam { start: 1, end: 2 }
        .to_string()
        .contains("0xE0000"));
}
