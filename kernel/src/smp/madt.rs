//! The machine's processors from the ACPI MADT (ACPI 6.5 §5.2.12 "Multiple APIC Description
//! Table"), read with the `acpi` crate through the direct map.

use crate::memory;
use acpi::madt::{Madt, MadtEntry};
use acpi::{AcpiHandler, AcpiTables, PhysicalMapping};
use alloc::vec::Vec;
use core::ptr::NonNull;

/// ACPI tables live in memory the firmware's map lists (ACPI reclaim / NVS / reserved), all of
/// which the bootloader's direct map covers: mapping is an address computation.
#[derive(Debug, Clone, Copy)]
pub struct DirectMap;

impl AcpiHandler for DirectMap {
    unsafe fn map_physical_region<T>(&self, phys: usize, size: usize) -> PhysicalMapping<Self, T> {
        let virt = memory::phys_to_virt(phys as u64).cast::<T>();
        // SAFETY: the direct map covers all physical memory the memory map names; `virt` is
        // its address of `phys`, never null (the offset is a high kernel address).
        unsafe { PhysicalMapping::new(phys, NonNull::new_unchecked(virt), size, size, DirectMap) }
    }

    fn unmap_physical_region<T>(_region: &PhysicalMapping<Self, T>) {}
}

/// One processor the MADT lists as enabled (flags bit 0, ACPI 6.5 Table 5.23; an "online
/// capable" one is hot-pluggable and absent until then).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MadtCpu {
    pub apic_id: u32,
    pub uid: u32,
}

/// Why the processors could not be listed.
#[derive(Debug)]
pub enum MadtError {
    NoRsdp,
    Acpi(acpi::AcpiError),
}

impl core::fmt::Display for MadtError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            MadtError::NoRsdp => write!(
                f,
                "the firmware gave no ACPI RSDP: only the boot CPU is used (enable ACPI in the firmware setup)"
            ),
            MadtError::Acpi(e) => write!(
                f,
                "the ACPI tables could not be read ({e:?}): only the boot CPU is used"
            ),
        }
    }
}

/// MADT Local APIC / Local x2APIC flags: bit 0 enabled.
const FLAG_ENABLED: u32 = 1 << 0;

/// The machine's ACPI tables, from the bootloader's RSDP or a BIOS-area scan.
pub fn tables(rsdp: Option<u64>) -> Result<AcpiTables<DirectMap>, MadtError> {
    let tables =
        match rsdp {
            // SAFETY: `rsdp` is the address the bootloader found (BIOS scan or the UEFI
            // configuration table); the handler maps through the direct map.
            Some(rsdp) => unsafe { AcpiTables::from_rsdp(DirectMap, rsdp as usize) }
                .map_err(MadtError::Acpi)?,
            // The bootloader found none: scan the EBDA and 0xE0000-0xFFFFF ourselves (ACPI 6.5
            // §5.2.5.1), which some UEFI firmware also fills.
            // SAFETY: the scanned areas are below 1 MiB, covered by the direct map.
            None => unsafe { AcpiTables::search_for_rsdp_bios(DirectMap) }
                .map_err(|_| MadtError::NoRsdp)?,
        };
    Ok(tables)
}

/// The enabled processors, in MADT order (the boot CPU among them).
pub fn processors(rsdp: Option<u64>) -> Result<Vec<MadtCpu>, MadtError> {
    let tables = tables(rsdp)?;
    let madt = tables.find_table::<Madt>().map_err(MadtError::Acpi)?;
    let mut cpus = Vec::new();
    for entry in madt.get().entries() {
        let (apic_id, uid, flags) = match entry {
            MadtEntry::LocalApic(e) => (u32::from(e.apic_id), u32::from(e.processor_id), e.flags),
            MadtEntry::LocalX2Apic(e) => (e.x2apic_id, e.processor_uid, e.flags),
            _ => continue,
        };
        if flags & FLAG_ENABLED == 0 || cpus.iter().any(|c: &MadtCpu| c.apic_id == apic_id) {
            continue;
        }
        cpus.push(MadtCpu { apic_id, uid });
    }
    Ok(cpus)
}
