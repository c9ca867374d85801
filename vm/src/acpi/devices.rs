//! The devices a VM's DSDT describes (issue 12), so that an OS finds them through ACPI alone:
//!
//! - one `LNRO0005` device per virtio-mmio transport, in configuration order (Linux's
//!   `virtio_mmio` driver matches that ID in `virtio_mmio_acpi_match`; its probe order follows
//!   the namespace, so the first disk is `/dev/vda`), with a `Memory32Fixed` window and an
//!   extended interrupt descriptor naming its GSI (ACPI 6.5 §6.4.3.4 and §6.4.3.6);
//! - COM1 as `PNP0501` (a 16550A-compatible UART) with its eight ports and IRQ 4
//!   (§6.4.2.5 I/O port descriptor, §6.4.3.6).
//!
//! Each device has `_HID`, `_UID` and `_CRS` (§6.1.5, §6.1.12, §6.2.2) and no `_STA`: an absent
//! `_STA` means present, enabled and functioning (§6.3.7).

use alloc::vec;

use acpi_tables::aml::{
    Device, EISAName, Interrupt, Memory32Fixed, Name, Path, ResourceTemplate, IO,
};

use super::Dsdt;

/// `_HID` of a virtio-mmio transport (the ID Linaro registered, used by Linux and QEMU).
pub const VIRTIO_MMIO_HID: &str = "LNRO0005";
/// `_HID` of a 16550A-compatible serial port (PNP ID for "16550A-compatible COM port").
pub const COM_HID: &str = "PNP0501";
/// COM1's first port and its port count.
pub const COM1_PORT: u16 = 0x3F8;
pub const COM1_PORTS: u8 = 8;
/// COM1's ISA IRQ (the MADT has no override for it, so it is also GSI 4).
pub const COM1_IRQ: u32 = 4;
/// At most this many virtio-mmio devices get a name (`VR00`..`VRFF`).
pub const MAX_VIRTIO_DEVICES: usize = 256;

/// One virtio-mmio transport as the guest sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VirtioMmio {
    /// Guest-physical base of its register window (below 4 GiB: `Memory32Fixed`).
    pub base: u32,
    /// Length of the window in bytes.
    pub size: u32,
    /// The GSI it raises (an IOAPIC pin; below 16 also the ISA IRQ on the 8259A).
    pub gsi: u32,
}

/// `VR` and two hex digits: the device's ACPI name segment (§5.3: four characters).
fn virtio_name(index: usize) -> alloc::string::String {
    alloc::format!("VR{index:02X}")
}

impl Dsdt {
    /// Adds virtio-mmio device number `index` (its `_UID`) inside `\_SB`. Devices appear in
    /// the order they are added; `index` must be below [`MAX_VIRTIO_DEVICES`].
    pub fn add_virtio_mmio(&mut self, index: usize, device: &VirtioMmio) {
        assert!(
            index < MAX_VIRTIO_DEVICES,
            "virtio-mmio device index {index} has no ACPI name"
        );
        let hid = Name::new(Path::new("_HID"), &VIRTIO_MMIO_HID);
        let uid_value = index as u32;
        let uid = Name::new(Path::new("_UID"), &uid_value);
        // §6.4.3.6 flags: consumer, edge-triggered, active-high, exclusive — the transport
        // signals each new interrupt status with a fresh edge (virtio 1.2 §4.2.2.1 leaves the
        // wiring to the platform; Linux's command-line devices are edge-triggered ISA IRQs).
        let window = Memory32Fixed::new(true, device.base, device.size);
        let irq = Interrupt::new(true, true, false, false, device.gsi);
        let resources = ResourceTemplate::new(vec![&window, &irq]);
        let crs = Name::new(Path::new("_CRS"), &resources);
        let name = virtio_name(index);
        self.add_to_sb(&Device::new(Path::new(&name), vec![&hid, &uid, &crs]));
    }

    /// Adds COM1 (`PNP0501`, ports 0x3F8-0x3FF, IRQ 4) inside `\_SB`.
    pub fn add_com1(&mut self) {
        let hid_value = EISAName::new(COM_HID);
        let hid = Name::new(Path::new("_HID"), &hid_value);
        let uid_value = 0u8;
        let uid = Name::new(Path::new("_UID"), &uid_value);
        let ports = IO::new(COM1_PORT, COM1_PORT, 1, COM1_PORTS);
        let irq = Interrupt::new(true, true, false, false, COM1_IRQ);
        let resources = ResourceTemplate::new(vec![&ports, &irq]);
        let crs = Name::new(Path::new("_CRS"), &resources);
        self.add_to_sb(&Device::new(Path::new("COM1"), vec![&hid, &uid, &crs]));
    }
}
