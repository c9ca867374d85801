//! The guest's ACPI tables (ACPI 6.5 chapter 5, "ACPI Software Programming Model"), built as
//! one byte image the VMM copies into guest memory at `base_gpa`:
//!
//! | offset | table | spec |
//! |---|---|---|
//! | 0 | RSDP, revision 2, 36 bytes, 16-byte aligned, both checksums, XSDT address (no RSDT) | §5.2.5 |
//! | 64-byte aligned | XSDT: the FADT and the MADT | §5.2.8 |
//! | 64-byte aligned | FADT revision 6.5 (`fadt`): FACS, DSDT, PM1a blocks, reset register | §5.2.9 |
//! | 64-byte aligned | FACS, 64 bytes (the spec asks for 64-byte alignment) | §5.2.10 |
//! | 64-byte aligned | MADT (`madt`): local APICs, the IOAPIC, overrides, LINT1 NMI | §5.2.12 |
//! | 64-byte aligned | DSDT ([`Dsdt`]): `\_SB` and `\_S5` | §5.2.11.1 |
//!
//! At `base_gpa = 0xE0000` ([`BIOS_AREA_GPA`]) the image lies in the BIOS read-only area the
//! Linux loader marks reserved, and the RSDP is where the OS's scan of 0xE0000-0xFFFFF finds
//! it (§5.2.5.1); the Linux loader also passes its address in the zero page
//! (`crate::linux::LinuxExtras::acpi`).
//!
//! The tables are written with rust-vmm's `acpi_tables` crate (`no_std` + `alloc`, no
//! `unsafe`): its RSDP, XSDT, FACS, FADT, generic SDT and AML writers. The crate's MADT is
//! written for RISC-V and ARM (no interrupt source overrides, NMI or x2APIC structures, flags
//! fixed at 0), so `madt` lays the x86 structures out itself in a generic SDT.

mod devices;
mod dsdt;
mod fadt;
mod madt;

use alloc::vec::Vec;
use core::fmt;

use acpi_tables::{rsdp::Rsdp, xsdt::XSDT, Aml};

pub use acpi_tables::aml;
pub use devices::{VirtioMmio, COM_HID, VIRTIO_MMIO_HID};
pub use dsdt::Dsdt;

/// Where the tables go for a guest with the PC's BIOS area: 0xE0000, so the RSDP is found by
/// the 0xE0000-0xFFFFF scan (§5.2.5.1).
pub const BIOS_AREA_GPA: u64 = 0xE_0000;
/// End of the BIOS area (1 MiB): an image placed in it must end here.
pub const BIOS_AREA_END: u64 = 0x10_0000;
/// The IOAPIC's APIC ID in the MADT (a constant, not N: the VMM creates its
/// [`IoApic`](crate::devices::IoApic) with it). 0xF is the highest 4-bit 82093AA ID, so it
/// differs from every local APIC ID of a VM with up to 15 vCPUs.
pub const IOAPIC_ID: u8 = 0xF;
/// At most this many vCPUs (ACPI processor UIDs 0..=254 fit the Processor Local APIC
/// structure's 8-bit UID; the VM configuration allows far fewer).
pub const MAX_VCPUS: usize = 255;

/// OEM ID of every table header (§5.2.6, 6 bytes).
pub const OEM_ID: [u8; 6] = *b"BLKHD ";
/// OEM table ID of every table header (8 bytes).
pub const OEM_TABLE_ID: [u8; 8] = *b"BULKHEAD";
/// OEM revision of every table header.
pub const OEM_REVISION: u32 = 1;

/// §5.2.5.3: the RSDP's size at revision 2.
const RSDP_LEN: usize = 36;
/// §5.2.5.1: the RSDP is on a 16-byte boundary.
const RSDP_ALIGN: u64 = 16;
/// §5.2.10: the FACS is 64-byte aligned; every table here is, for simplicity.
const TABLE_ALIGN: usize = 64;

/// What the guest's tables describe.
#[derive(Debug, Clone)]
pub struct AcpiConfig {
    /// APIC ID of vCPU i (its ACPI processor UID is i). The vCPU count is the length.
    pub apic_ids: Vec<u32>,
    /// The DSDT's contents beyond `\_SB` and `\_S5`: the VM's devices (`devices`).
    pub dsdt: Dsdt,
}

impl AcpiConfig {
    /// `vcpus` vCPUs with APIC IDs 0..vcpus and the basic DSDT.
    pub fn new(vcpus: u32) -> Self {
        Self {
            apic_ids: (0..vcpus).collect(),
            dsdt: Dsdt::new(),
        }
    }
}

/// Why the tables cannot be built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AcpiError {
    /// No vCPU.
    NoVcpus,
    /// More vCPUs than the tables can describe.
    TooManyVcpus { count: usize, max: usize },
    /// Two vCPUs have the same APIC ID.
    DuplicateApicId(u32),
    /// `base_gpa` is not 16-byte aligned (the RSDP must be).
    Misaligned { base_gpa: u64 },
    /// The image `[base_gpa, end)` does not fit below `limit` (the BIOS area's end, or 4 GiB:
    /// the FADT's 32-bit FACS and DSDT fields).
    DoesNotFit { end: u64, limit: u64 },
}

impl fmt::Display for AcpiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoVcpus => f.write_str("the ACPI tables need at least one vCPU; set vcpus >= 1"),
            Self::TooManyVcpus { count, max } => write!(
                f,
                "the ACPI tables describe at most {max} vCPUs, the VM has {count}; lower vcpus"
            ),
            Self::DuplicateApicId(id) => write!(
                f,
                "two vCPUs have APIC ID {id}; give every vCPU its own APIC ID"
            ),
            Self::Misaligned { base_gpa } => write!(
                f,
                "the ACPI tables must start on a 16-byte boundary (the RSDP), not at \
                 {base_gpa:#x}; place them at 0xE0000"
            ),
            Self::DoesNotFit { end, limit } => write!(
                f,
                "the ACPI tables would end at {end:#x}, beyond {limit:#x}; place them lower or \
                 describe fewer devices"
            ),
        }
    }
}

/// Guest-physical addresses of the tables in a [`GuestTables`] image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub rsdp: u64,
    pub xsdt: u64,
    pub fadt: u64,
    pub facs: u64,
    pub madt: u64,
    pub dsdt: u64,
}

/// The built tables: one image to copy at [`GuestTables::base_gpa`].
#[derive(Debug, Clone)]
pub struct GuestTables {
    base_gpa: u64,
    image: Vec<u8>,
    layout: Layout,
}

/// Appends `table` at the next [`TABLE_ALIGN`] boundary; returns its offset.
fn place(image: &mut Vec<u8>, table: &[u8]) -> usize {
    let at = image.len().next_multiple_of(TABLE_ALIGN);
    image.resize(at, 0);
    image.extend_from_slice(table);
    at
}

fn bytes_of(table: &dyn Aml) -> Vec<u8> {
    let mut out = Vec::new();
    table.to_aml_bytes(&mut out);
    out
}

impl GuestTables {
    /// Builds the tables for `config`, addressed for an image at `base_gpa`.
    pub fn build(config: &AcpiConfig, base_gpa: u64) -> Result<Self, AcpiError> {
        let ids = &config.apic_ids;
        if ids.is_empty() {
            return Err(AcpiError::NoVcpus);
        }
        if ids.len() > MAX_VCPUS {
            return Err(AcpiError::TooManyVcpus {
                count: ids.len(),
                max: MAX_VCPUS,
            });
        }
        for (i, &id) in ids.iter().enumerate() {
            if ids[..i].contains(&id) {
                return Err(AcpiError::DuplicateApicId(id));
            }
        }
        if !base_gpa.is_multiple_of(RSDP_ALIGN) {
            return Err(AcpiError::Misaligned { base_gpa });
        }

        // The tables' sizes do not depend on their addresses: lay out with placeholders first.
        let madt = madt::build(ids);
        let dsdt = config.dsdt.build();
        let facs = fadt::facs();
        let fadt_len = fadt::build(0, 0).len();
        let xsdt_len = bytes_of(&Self::xsdt(0, 0)).len();
        let mut offsets = [0usize; 6];
        let mut size = RSDP_LEN;
        for (slot, len) in
            offsets[1..]
                .iter_mut()
                .zip([xsdt_len, fadt_len, facs.len(), madt.len(), dsdt.len()])
        {
            *slot = size.next_multiple_of(TABLE_ALIGN);
            size = *slot + len;
        }
        let gpa = |i: usize| base_gpa + offsets[i] as u64;
        let layout = Layout {
            rsdp: base_gpa,
            xsdt: gpa(1),
            fadt: gpa(2),
            facs: gpa(3),
            madt: gpa(4),
            dsdt: gpa(5),
        };
        let end = base_gpa.saturating_add(size as u64);
        let limit = if (BIOS_AREA_GPA..BIOS_AREA_END).contains(&base_gpa) {
            BIOS_AREA_END
        } else {
            1 << 32
        };
        if end > limit {
            return Err(AcpiError::DoesNotFit { end, limit });
        }

        // Addresses below 4 GiB were just checked: the 32-bit fields cannot truncate.
        let fadt = fadt::build(layout.facs as u32, layout.dsdt as u32);
        let xsdt = bytes_of(&Self::xsdt(layout.fadt, layout.madt));
        let mut image = bytes_of(&Rsdp::new(OEM_ID, layout.xsdt));
        for (i, table) in [&xsdt, &fadt, &facs, &madt, &dsdt].into_iter().enumerate() {
            let at = place(&mut image, table);
            debug_assert_eq!(at, offsets[i + 1]);
        }
        Ok(Self {
            base_gpa,
            image,
            layout,
        })
    }

    fn xsdt(fadt: u64, madt: u64) -> XSDT {
        let mut xsdt = XSDT::new(OEM_ID, OEM_TABLE_ID, OEM_REVISION);
        xsdt.add_entry(fadt);
        xsdt.add_entry(madt);
        xsdt
    }

    /// The bytes to copy at [`GuestTables::base_gpa`].
    pub fn image(&self) -> &[u8] {
        &self.image
    }

    /// Where the image goes.
    pub fn base_gpa(&self) -> u64 {
        self.base_gpa
    }

    /// One past the image's last byte.
    pub fn end_gpa(&self) -> u64 {
        self.base_gpa + self.image.len() as u64
    }

    /// The RSDP's address (`boot_params.acpi_rsdp_addr`): the image's first byte.
    pub fn rsdp_gpa(&self) -> u64 {
        self.layout.rsdp
    }

    /// Every table's address.
    pub fn layout(&self) -> Layout {
        self.layout
    }
}

#[cfg(test)]
mod tests;
