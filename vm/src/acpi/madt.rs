//! The MADT (ACPI 6.5 §5.2.12, "Multiple APIC Description Table"), revision 5, for a PC with
//! one local APIC per vCPU, one 82093AA IOAPIC and the 8259A pair.

use alloc::vec;
use alloc::vec::Vec;

use acpi_tables::sdt::Sdt;

use super::{IOAPIC_ID, OEM_ID, OEM_REVISION, OEM_TABLE_ID};
use crate::devices::{acpi_pm, ioapic};

/// §5.2.12, MADT format: revision 5 (ACPI 6.3; the structures used here are unchanged
/// since).
pub const MADT_REVISION: u8 = 5;
/// The local APIC's physical address (SDM Vol. 3A §11.4.1, the IA32_APIC_BASE default).
pub const LOCAL_APIC_ADDRESS: u32 = 0xFEE0_0000;
/// §5.2.12, Multiple APIC Flags: PCAT_COMPAT, a dual 8259 setup is present too.
pub const PCAT_COMPAT: u32 = 1 << 0;
/// Header (36) + local interrupt controller address (4) + flags (4).
const HEADER_LEN: u32 = 44;

/// §5.2.12, Interrupt Controller Structure Types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum StructureType {
    ProcessorLocalApic = 0,
    IoApic = 1,
    InterruptSourceOverride = 2,
    LocalApicNmi = 4,
    ProcessorLocalX2Apic = 9,
    LocalX2ApicNmi = 0xA,
}

/// §5.2.12.2, Local APIC Flags: Enabled.
pub const LAPIC_ENABLED: u32 = 1 << 0;
/// §5.2.12.12: "Logical processors with APIC ID values of 255 and greater" use the
/// Processor Local x2APIC structure; so does a UID above 254 (the local APIC structure's UID
/// is 8 bits and 0xFF means "all processors" in the NMI structure).
const MAX_XAPIC_ID: u32 = 254;

/// §5.2.12.5, MPS INTI Flags: polarity bits 1:0 (01 active high, 11 active low), trigger
/// mode bits 3:2 (01 edge, 11 level).
pub mod inti {
    pub const ACTIVE_HIGH: u16 = 0b01;
    pub const EDGE: u16 = 0b01 << 2;
    pub const LEVEL: u16 = 0b11 << 2;
}

/// §5.2.12.5 Interrupt Source Override: ISA bus (0).
const ISA_BUS: u8 = 0;
/// ISA IRQ 0 (the PIT) is wired to IOAPIC pin 2, as on every PC.
pub const PIT_ISA_IRQ: u8 = 0;
pub const PIT_GSI: u32 = 2;
/// §5.2.12.7 Local APIC NMI: processor UID 0xFF = all processors.
const ALL_PROCESSORS: u8 = 0xFF;
/// §5.2.12.13 Local x2APIC NMI: UID 0xFFFFFFFF = all processors.
const ALL_X2_PROCESSORS: u32 = u32::MAX;
/// NMI is wired to LINT1 on a PC.
pub const NMI_LINT: u8 = 1;

fn structure(kind: StructureType, body: &[u8]) -> Vec<u8> {
    let mut s = Vec::with_capacity(body.len() + 2);
    s.push(kind as u8);
    s.push(body.len() as u8 + 2);
    s.extend_from_slice(body);
    s
}

/// §5.2.12.2 Processor Local APIC (8 bytes).
fn local_apic(uid: u8, apic_id: u8) -> Vec<u8> {
    let mut b = vec![uid, apic_id];
    b.extend_from_slice(&LAPIC_ENABLED.to_le_bytes());
    structure(StructureType::ProcessorLocalApic, &b)
}

/// §5.2.12.12 Processor Local x2APIC (16 bytes).
fn local_x2apic(uid: u32, x2apic_id: u32) -> Vec<u8> {
    let mut b = vec![0, 0];
    b.extend_from_slice(&x2apic_id.to_le_bytes());
    b.extend_from_slice(&LAPIC_ENABLED.to_le_bytes());
    b.extend_from_slice(&uid.to_le_bytes());
    structure(StructureType::ProcessorLocalX2Apic, &b)
}

/// §5.2.12.3 I/O APIC (12 bytes).
fn io_apic(id: u8, address: u32, gsi_base: u32) -> Vec<u8> {
    let mut b = vec![id, 0];
    b.extend_from_slice(&address.to_le_bytes());
    b.extend_from_slice(&gsi_base.to_le_bytes());
    structure(StructureType::IoApic, &b)
}

/// §5.2.12.5 Interrupt Source Override (10 bytes).
fn source_override(irq: u8, gsi: u32, flags: u16) -> Vec<u8> {
    let mut b = vec![ISA_BUS, irq];
    b.extend_from_slice(&gsi.to_le_bytes());
    b.extend_from_slice(&flags.to_le_bytes());
    structure(StructureType::InterruptSourceOverride, &b)
}

/// §5.2.12.7 Local APIC NMI (6 bytes).
fn local_apic_nmi(uid: u8, flags: u16, lint: u8) -> Vec<u8> {
    let mut b = vec![uid];
    b.extend_from_slice(&flags.to_le_bytes());
    b.push(lint);
    structure(StructureType::LocalApicNmi, &b)
}

/// §5.2.12.13 Local x2APIC NMI (12 bytes).
fn local_x2apic_nmi(uid: u32, flags: u16, lint: u8) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&flags.to_le_bytes());
    b.extend_from_slice(&uid.to_le_bytes());
    b.extend_from_slice(&[lint, 0, 0, 0]);
    structure(StructureType::LocalX2ApicNmi, &b)
}

/// The MADT for vCPUs with `apic_ids` (vCPU i has ACPI processor UID i; the caller checked
/// there are at most 255 and no duplicates).
pub fn build(apic_ids: &[u32]) -> Vec<u8> {
    let mut sdt = Sdt::new(
        *b"APIC",
        HEADER_LEN,
        MADT_REVISION,
        OEM_ID,
        OEM_TABLE_ID,
        OEM_REVISION,
    );
    sdt.write_u32(36, LOCAL_APIC_ADDRESS);
    sdt.write_u32(40, PCAT_COMPAT);
    let mut x2apic = false;
    for (uid, &id) in apic_ids.iter().enumerate() {
        let uid = uid as u32;
        match (u8::try_from(uid), u8::try_from(id)) {
            (Ok(u), Ok(a)) if id <= MAX_XAPIC_ID && uid <= MAX_XAPIC_ID => {
                sdt.append_slice(&local_apic(u, a))
            }
            _ => {
                x2apic = true;
                sdt.append_slice(&local_x2apic(uid, id));
            }
        }
    }
    sdt.append_slice(&io_apic(IOAPIC_ID, ioapic::MMIO_BASE as u32, 0));
    // §5.2.12.5: ISA IRQs without an override are identity-mapped, edge, active high.
    sdt.append_slice(&source_override(
        PIT_ISA_IRQ,
        PIT_GSI,
        inti::EDGE | inti::ACTIVE_HIGH,
    ));
    // The SCI: §5.2.9 SCI_INT "sharable, level, active low" is the default for an SCI on an
    // 8259; on the IOAPIC Bulkhead drives it active high, so it says so here.
    sdt.append_slice(&source_override(
        acpi_pm::SCI_IRQ,
        u32::from(acpi_pm::SCI_IRQ),
        inti::LEVEL | inti::ACTIVE_HIGH,
    ));
    let nmi_flags = inti::EDGE | inti::ACTIVE_HIGH;
    sdt.append_slice(&local_apic_nmi(ALL_PROCESSORS, nmi_flags, NMI_LINT));
    if x2apic {
        sdt.append_slice(&local_x2apic_nmi(ALL_X2_PROCESSORS, nmi_flags, NMI_LINT));
    }
    sdt.as_slice().to_vec()
}
