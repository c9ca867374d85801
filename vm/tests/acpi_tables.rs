//! The guest's ACPI tables (`vm::acpi`) read back by an independent reader, the `acpi` crate
//! (the one the kernel reads the host's tables with): the RSDP found by address and by the
//! BIOS-area scan, every checksum and length it validates, the FADT's fields and every MADT
//! entry. An integration test because mapping "physical memory" for the reader needs `unsafe`,
//! which the `vm` crate forbids.

use core::ptr::NonNull;

use acpi::address::{AccessSize, AddressSpace};
use acpi::fadt::Fadt;
use acpi::madt::{Madt, MadtEntry};
use acpi::{AcpiHandler, AcpiTable, AcpiTables, PhysicalMapping};
use vm::acpi::{AcpiConfig, GuestTables, BIOS_AREA_GPA};

/// Guest memory below 1 MiB (plus a page: the BIOS-area scan reads a little past 1 MiB),
/// leaked so mappings of it live as long as the reader wants.
#[derive(Clone, Copy, Debug)]
struct LowMemory {
    base: NonNull<u8>,
    len: usize,
}

impl LowMemory {
    const LEN: usize = 0x10_1000;

    fn with(tables: &GuestTables) -> Self {
        let mut mem = vec![0u8; Self::LEN];
        let at = tables.base_gpa() as usize;
        mem[at..at + tables.image().len()].copy_from_slice(tables.image());
        let leaked: &'static mut [u8] = Box::leak(mem.into_boxed_slice());
        Self {
            base: NonNull::new(leaked.as_mut_ptr()).unwrap(),
            len: Self::LEN,
        }
    }
}

impl AcpiHandler for LowMemory {
    unsafe fn map_physical_region<T>(&self, pa: usize, size: usize) -> PhysicalMapping<Self, T> {
        assert!(
            pa.checked_add(size).is_some_and(|end| end <= self.len),
            "the reader asked for {pa:#x}+{size:#x}, outside guest memory"
        );
        // SAFETY: `pa + size` is inside the leaked allocation (checked above), which is never
        // freed; the reader's table types are `repr(C, packed)` (alignment 1).
        let ptr = unsafe { self.base.add(pa) }.cast::<T>();
        // SAFETY: the mapping covers `size` readable bytes at `ptr`, valid for the program's
        // life.
        unsafe { PhysicalMapping::new(pa, ptr, size, size, *self) }
    }

    fn unmap_physical_region<T>(_region: &PhysicalMapping<Self, T>) {}
}

fn read(tables: &GuestTables) -> AcpiTables<LowMemory> {
    // SAFETY: the RSDP address is inside the handler's memory, where the image was copied.
    unsafe { AcpiTables::from_rsdp(LowMemory::with(tables), tables.rsdp_gpa() as usize) }
        .expect("the acpi crate accepts the RSDP and XSDT")
}

#[test]
fn rsdp_is_found_by_the_bios_area_scan() {
    let t = GuestTables::build(&AcpiConfig::new(2), BIOS_AREA_GPA).unwrap();
    // SAFETY: the handler maps only its own memory (it asserts every request).
    let found = unsafe { AcpiTables::search_for_rsdp_bios(LowMemory::with(&t)) }.unwrap();
    let fadt = found.find_table::<Fadt>().unwrap();
    assert_eq!(fadt.physical_start(), t.layout().fadt as usize);
}

#[test]
fn xsdt_lists_exactly_the_fadt_and_madt() {
    let t = GuestTables::build(&AcpiConfig::new(1), BIOS_AREA_GPA).unwrap();
    let tables = read(&t);
    let sigs: Vec<String> = tables
        .headers()
        .map(|h| h.signature.as_str().to_string())
        .collect();
    assert_eq!(sigs, ["FACP", "APIC"]);
    for h in tables.headers() {
        assert_eq!(h.oem_id(), "BLKHD ");
        assert_eq!(h.oem_table_id(), "BULKHEAD");
    }
}

#[test]
fn fadt_fields() {
    let t = GuestTables::build(&AcpiConfig::new(2), BIOS_AREA_GPA).unwrap();
    let l = t.layout();
    let tables = read(&t);
    let fadt = tables.find_table::<Fadt>().unwrap();
    fadt.validate().unwrap();
    assert_eq!(fadt.header().revision, 6);
    assert_eq!({ fadt.header().length }, 276);
    assert_eq!({ fadt.sci_interrupt }, 9);
    assert_eq!({ fadt.smi_cmd_port }, 0);
    assert_eq!(fadt.facs_address().unwrap(), l.facs as usize);
    assert_eq!(fadt.dsdt_address().unwrap(), l.dsdt as usize);
    let evt = fadt.pm1a_event_block().unwrap();
    assert_eq!(evt.address_space, AddressSpace::SystemIo);
    assert_eq!((evt.address, evt.bit_width, evt.bit_offset), (0x600, 32, 0));
    assert_eq!(evt.access_size, AccessSize::WordAccess);
    let cnt = fadt.pm1a_control_block().unwrap();
    assert_eq!(cnt.address_space, AddressSpace::SystemIo);
    assert_eq!((cnt.address, cnt.bit_width), (0x604, 16));
    assert!(fadt.pm1b_event_block().unwrap().is_none());
    assert!(fadt.pm1b_control_block().unwrap().is_none());
    assert!(fadt.pm2_control_block().unwrap().is_none());
    assert!(fadt.pm_timer_block().unwrap().is_none());
    assert!(fadt.gpe0_block().unwrap().is_none());
    assert!(fadt.gpe1_block().unwrap().is_none());
    let reset = fadt.reset_register().unwrap();
    assert_eq!(reset.address_space, AddressSpace::SystemIo);
    assert_eq!((reset.address, reset.bit_width), (0xCF9, 8));
    assert_eq!(reset.access_size, AccessSize::ByteAccess);
    assert_eq!({ fadt.reset_value }, 6);
    assert_eq!({ fadt.century }, 0x32);
    let flags = { fadt.flags };
    assert!(flags.supports_equivalent_to_wbinvd());
    assert!(flags.all_procs_support_c1_power_state());
    assert!(!flags.power_button_is_control_method());
    assert!(flags.sleep_button_is_control_method());
    assert!(flags.no_rtc_wake_in_fixed_register_space());
    assert!(flags.supports_system_reset_via_fadt());
    assert!(flags.system_is_headless());
    assert!(!flags.system_is_hw_reduced_acpi());
    assert!(!flags.local_xapics_must_use_physical_destination_mode());
    let boot = { fadt.iapc_boot_arch };
    assert!(boot.legacy_devices_are_accessible());
    assert!(!boot.motherboard_implements_8042(), "Bulkhead has no i8042");
    assert!(boot.dont_probe_vga());
    assert!(boot.dont_enable_msi());
    assert!(!boot.dont_enable_pcie_aspm());
    // The DSDT as the reader finds it: its AML after the header.
    let dsdt = tables.dsdt().unwrap();
    assert_eq!(dsdt.address, l.dsdt as usize + 36);
    assert_eq!(dsdt.length, 20);
}

/// The MADT entries in order, as plain tuples.
#[derive(Debug, PartialEq, Eq)]
enum Entry {
    LocalApic {
        uid: u8,
        id: u8,
        flags: u32,
    },
    X2Apic {
        uid: u32,
        id: u32,
        flags: u32,
    },
    IoApic {
        id: u8,
        address: u32,
        gsi_base: u32,
    },
    Override {
        bus: u8,
        irq: u8,
        gsi: u32,
        flags: u16,
    },
    Nmi {
        uid: u8,
        flags: u16,
        lint: u8,
    },
    X2Nmi {
        uid: u32,
        flags: u16,
        lint: u8,
    },
}

fn madt_entries(t: &GuestTables) -> (u32, bool, Vec<Entry>) {
    let tables = read(t);
    let madt = tables.find_table::<Madt>().unwrap();
    assert_eq!(madt.physical_start(), t.layout().madt as usize);
    let madt = madt.get();
    let entries = madt
        .entries()
        .map(|e| match e {
            MadtEntry::LocalApic(e) => Entry::LocalApic {
                uid: e.processor_id,
                id: e.apic_id,
                flags: e.flags,
            },
            MadtEntry::LocalX2Apic(e) => Entry::X2Apic {
                uid: e.processor_uid,
                id: e.x2apic_id,
                flags: e.flags,
            },
            MadtEntry::IoApic(e) => Entry::IoApic {
                id: e.io_apic_id,
                address: e.io_apic_address,
                gsi_base: e.global_system_interrupt_base,
            },
            MadtEntry::InterruptSourceOverride(e) => Entry::Override {
                bus: e.bus,
                irq: e.irq,
                gsi: e.global_system_interrupt,
                flags: e.flags,
            },
            MadtEntry::LocalApicNmi(e) => Entry::Nmi {
                uid: e.processor_id,
                flags: e.flags,
                lint: e.nmi_line,
            },
            MadtEntry::X2ApicNmi(e) => Entry::X2Nmi {
                uid: e.processor_uid,
                flags: e.flags,
                lint: e.nmi_line,
            },
            other => panic!("unexpected MADT entry {other:?}"),
        })
        .collect();
    (madt.local_apic_address, madt.supports_8259(), entries)
}

fn common_tail() -> [Entry; 4] {
    [
        Entry::IoApic {
            id: 0xF,
            address: 0xFEC0_0000,
            gsi_base: 0,
        },
        Entry::Override {
            bus: 0,
            irq: 0,
            gsi: 2,
            flags: 0x5,
        },
        Entry::Override {
            bus: 0,
            irq: 9,
            gsi: 9,
            flags: 0xD,
        },
        Entry::Nmi {
            uid: 0xFF,
            flags: 0x5,
            lint: 1,
        },
    ]
}

#[test]
fn madt_for_four_vcpus() {
    let t = GuestTables::build(&AcpiConfig::new(4), BIOS_AREA_GPA).unwrap();
    let (lapic, pcat, entries) = madt_entries(&t);
    assert_eq!(lapic, 0xFEE0_0000);
    assert!(pcat, "PCAT_COMPAT: the 8259A pair is present");
    let mut expect: Vec<Entry> = (0..4)
        .map(|i| Entry::LocalApic {
            uid: i,
            id: i,
            flags: 1,
        })
        .collect();
    expect.extend(common_tail());
    assert_eq!(entries, expect);
}

#[test]
fn madt_with_x2apic_ids() {
    let mut cfg = AcpiConfig::new(0);
    cfg.apic_ids = vec![0, 2, 300];
    let t = GuestTables::build(&cfg, BIOS_AREA_GPA).unwrap();
    let (_, _, entries) = madt_entries(&t);
    let mut expect = vec![
        Entry::LocalApic {
            uid: 0,
            id: 0,
            flags: 1,
        },
        Entry::LocalApic {
            uid: 1,
            id: 2,
            flags: 1,
        },
        Entry::X2Apic {
            uid: 2,
            id: 300,
            flags: 1,
        },
    ];
    expect.extend(common_tail());
    expect.push(Entry::X2Nmi {
        uid: u32::MAX,
        flags: 0x5,
        lint: 1,
    });
    assert_eq!(entries, expect);
}

#[test]
fn a_corrupted_table_is_rejected() {
    let t = GuestTables::build(&AcpiConfig::new(1), BIOS_AREA_GPA).unwrap();
    let mem = LowMemory::with(&t);
    // Flip one byte of the MADT's body: its checksum no longer holds.
    let at = t.layout().madt as usize + 50;
    // SAFETY: `at` is inside the leaked allocation, and no mapping of it is alive.
    unsafe { *mem.base.as_ptr().add(at) ^= 1 };
    // SAFETY: as in `read`.
    let tables = unsafe { AcpiTables::from_rsdp(mem, t.rsdp_gpa() as usize) }.unwrap();
    assert!(tables.find_table::<Madt>().is_err());
    assert!(tables.find_table::<Fadt>().is_ok());
}
