//! PCI enumeration: through ECAM, the memory-mapped configuration space the ACPI MCFG
//! describes (PCI Firmware Specification 3.0 §4.1.2; PCI Express Base 4.0 §7.2.2;
//! `vm::pci_ecam`), when the firmware has one for segment group 0 (QEMU q35, real PCIe
//! machines), else through configuration mechanism #1: CONFIG_ADDRESS at port 0xCF8 and
//! CONFIG_DATA at 0xCFC (PCI Local Bus Specification 3.0 §3.2.2.3.2; Bochs's i440FX, QEMU's
//! pc). Every bus, device and function is read once at boot (functions 1-7 only of
//! multi-function devices, header type bit 7, §6.2.1); the list is what the block drivers
//! look for their controllers in. The drivers use the first 256 bytes (class codes, BARs,
//! command register), which both mechanisms reach.

use crate::arch;
use crate::memory;
use alloc::vec::Vec;
use vm::pci_ecam::EcamRegion;

const CONFIG_ADDRESS: u16 = 0xCF8;
const CONFIG_DATA: u16 = 0xCFC;
/// CONFIG_ADDRESS bit 31: enable the configuration cycle.
const ENABLE: u32 = 1 << 31;
/// Vendor ID of a function that is not there (the bus master abort reads all ones).
const NO_VENDOR: u16 = 0xFFFF;
/// Header type register (offset 0x0E) bit 7: a multi-function device.
const MULTI_FUNCTION: u8 = 0x80;

/// Configuration-space register offsets (PCI 3.0 §6.1, Figure 6-1).
mod reg {
    pub const ID: u8 = 0x00;
    pub const CLASS: u8 = 0x08;
    pub const HEADER: u8 = 0x0C;
    pub const COMMAND: u8 = 0x04;
    pub const BAR0: u8 = 0x10;
}

/// Command register bits (PCI 3.0 §6.2.2): I/O space and memory space decoding, bus master.
const COMMAND_IO: u32 = 1 << 0;
const COMMAND_MEMORY: u32 = 1 << 1;
const COMMAND_BUS_MASTER: u32 = 1 << 2;
/// A memory BAR of type 64-bit (bits 2:1 = 10b, §6.2.5.1); bits 3:0 are not address.
const BAR_TYPE_64: u32 = 0b100;
const BAR_FLAGS: u32 = 0xF;

/// Class codes the drivers look for (PCI Code and ID Assignment Specification 1.11 §1.2).
pub mod class {
    pub const MASS_STORAGE: u8 = 0x01;
    pub const IDE: u8 = 0x01;
    pub const NVM: u8 = 0x08;
    /// NVM Express I/O controller programming interface.
    pub const NVME_PROG_IF: u8 = 0x02;
    /// IDE programming interface bit 7: a bus-master IDE controller, its registers in BAR4
    /// (PCI IDE Controller Specification 1.0 §2.1; Bus Master IDE rev 1.0 §2).
    pub const IDE_BUS_MASTER: u8 = 0x80;
}

/// One PCI function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Function {
    pub bus: u8,
    pub device: u8,
    pub function: u8,
    pub vendor: u16,
    pub device_id: u16,
    pub class: u8,
    pub subclass: u8,
    pub prog_if: u8,
}

impl core::fmt::Display for Function {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "{:02x}:{:02x}.{} {:04x}:{:04x} class {:02x}.{:02x}.{:02x}",
            self.bus,
            self.device,
            self.function,
            self.vendor,
            self.device_id,
            self.class,
            self.subclass,
            self.prog_if
        )
    }
}

/// How configuration space is reached, chosen once by [`init`].
#[derive(Debug, Clone, Copy)]
enum Access {
    Mechanism1,
    Ecam { region: EcamRegion, virt: usize },
}

static ACCESS: spin::Once<Access> = spin::Once::new();

/// How [`init`] reaches configuration space, for the boot report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    Ecam(EcamRegion),
    /// Mechanism #1, and why not ECAM.
    Mechanism1(&'static str),
}

impl core::fmt::Display for Mechanism {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Mechanism::Ecam(r) => write!(
                f,
                "ECAM at {:#x}, buses {}-{}, from the ACPI MCFG",
                r.base, r.start_bus, r.end_bus
            ),
            Mechanism::Mechanism1(why) => write!(f, "configuration mechanism #1; {why}"),
        }
    }
}

/// Chooses the configuration mechanism: ECAM from the MCFG of the ACPI tables at `rsdp`
/// (mapped uncached unless the direct map covers it), else mechanism #1.
pub fn init(rsdp: Option<u64>) -> Mechanism {
    let chosen = choose(rsdp);
    ACCESS.call_once(|| match chosen {
        Ok((region, virt)) => Access::Ecam { region, virt },
        Err(_) => Access::Mechanism1,
    });
    match chosen {
        Ok((r, _)) => Mechanism::Ecam(r),
        Err(why) => Mechanism::Mechanism1(why),
    }
}

fn choose(rsdp: Option<u64>) -> Result<(EcamRegion, usize), &'static str> {
    let tables = crate::smp::madt::tables(rsdp).map_err(|_| "no ACPI tables")?;
    let mcfg = tables
        .find_table::<acpi::mcfg::Mcfg>()
        .map_err(|_| "no ACPI MCFG")?;
    let entries: Vec<EcamRegion> = mcfg
        .get()
        .entries()
        .iter()
        .map(|e| EcamRegion {
            base: e.base_address,
            segment: e.pci_segment_group,
            start_bus: e.bus_number_start,
            end_bus: e.bus_number_end,
        })
        .collect();
    let region =
        vm::pci_ecam::segment0(&entries).ok_or("the MCFG has no usable segment 0 entry")?;
    let virt = if memory::is_direct_mapped(region.base)
        && memory::is_direct_mapped(region.base + region.len() - memory::FRAME_SIZE)
    {
        memory::phys_to_virt(region.base)
    } else {
        crate::mmio_map::map(region.base, region.len())
            .map_err(|_| "the MCFG's ECAM region cannot be mapped")?
    };
    Ok((region, virt as usize))
}

/// The ECAM address of a register, if ECAM is in use and reaches it.
fn ecam(bus: u8, device: u8, function: u8, offset: u8) -> Option<*mut u32> {
    match ACCESS.get() {
        Some(Access::Ecam { region, virt }) => {
            let off = region.offset(bus, device, function, u16::from(offset & 0xFC))?;
            Some((virt + off as usize) as *mut u32)
        }
        _ => None,
    }
}

fn address(bus: u8, device: u8, function: u8, offset: u8) -> u32 {
    ENABLE
        | u32::from(bus) << 16
        | u32::from(device & 0x1F) << 11
        | u32::from(function & 7) << 8
        | u32::from(offset & 0xFC)
}

/// Reads a 32-bit configuration register.
pub fn read32(bus: u8, device: u8, function: u8, offset: u8) -> u32 {
    if let Some(p) = ecam(bus, device, function, offset) {
        // SAFETY: `p` is inside the MCFG's ECAM region for segment 0, mapped (direct map in
        // the PCI hole, uncached by the firmware's MTRRs, or `mmio_map`'s uncached window)
        // for the run; a dword read of configuration space has no side effect on the
        // header registers read here.
        return unsafe { p.read_volatile() };
    }
    // SAFETY: ports 0xCF8/0xCFC are the host bridge's configuration mechanism #1; a read of
    // configuration space has no side effect on the standard header registers read here, and
    // nothing else in Bulkhead uses these ports (interrupts are off, so no read is torn).
    unsafe {
        arch::outl(CONFIG_ADDRESS, address(bus, device, function, offset));
        arch::inl(CONFIG_DATA)
    }
}

/// Writes a 32-bit configuration register.
pub fn write32(bus: u8, device: u8, function: u8, offset: u8, value: u32) {
    if let Some(p) = ecam(bus, device, function, offset) {
        // SAFETY: as in `read32`; the callers write only a function's own command register.
        unsafe { p.write_volatile(value) };
        return;
    }
    // SAFETY: as in `read32`; the callers write only a function's own command register
    // (enabling memory decoding and bus mastering for the driver that owns it).
    unsafe {
        arch::outl(CONFIG_ADDRESS, address(bus, device, function, offset));
        arch::outl(CONFIG_DATA, value);
    }
}

impl Function {
    fn read(bus: u8, device: u8, function: u8) -> Option<Function> {
        let id = read32(bus, device, function, reg::ID);
        let vendor = id as u16;
        if vendor == NO_VENDOR {
            return None;
        }
        let c = read32(bus, device, function, reg::CLASS);
        Some(Function {
            bus,
            device,
            function,
            vendor,
            device_id: (id >> 16) as u16,
            class: (c >> 24) as u8,
            subclass: (c >> 16) as u8,
            prog_if: (c >> 8) as u8,
        })
    }

    /// Base address register `n` (0-5) as read.
    pub fn bar(&self, n: u8) -> u32 {
        read32(self.bus, self.device, self.function, reg::BAR0 + 4 * n)
    }

    /// BAR0 as a memory address (with BAR1 as its high half when it is a 64-bit BAR), or
    /// `None` for an I/O BAR.
    pub fn memory_bar0(&self) -> Option<u64> {
        let lo = self.bar(0);
        if lo & 1 != 0 {
            return None;
        }
        let hi = if lo & 0b110 == BAR_TYPE_64 {
            u64::from(self.bar(1))
        } else {
            0
        };
        Some(hi << 32 | u64::from(lo & !BAR_FLAGS))
    }

    /// Turns on memory decoding and bus mastering (DMA) for this function.
    pub fn enable_memory_and_dma(&self) {
        let c = read32(self.bus, self.device, self.function, reg::COMMAND) & 0xFFFF;
        write32(
            self.bus,
            self.device,
            self.function,
            reg::COMMAND,
            c | COMMAND_MEMORY | COMMAND_BUS_MASTER,
        );
    }

    /// Turns on I/O decoding and bus mastering (DMA) for this function (a bus-master IDE
    /// controller, whose registers are in an I/O BAR).
    pub fn enable_io_and_dma(&self) {
        let c = read32(self.bus, self.device, self.function, reg::COMMAND) & 0xFFFF;
        write32(
            self.bus,
            self.device,
            self.function,
            reg::COMMAND,
            c | COMMAND_IO | COMMAND_BUS_MASTER,
        );
    }

    pub fn is(&self, class: u8, subclass: u8) -> bool {
        (self.class, self.subclass) == (class, subclass)
    }
}

/// Every function on every bus.
pub fn enumerate() -> Vec<Function> {
    let mut found = Vec::new();
    for bus in 0..=255u8 {
        for device in 0..32u8 {
            let Some(f0) = Function::read(bus, device, 0) else {
                continue;
            };
            found.push(f0);
            let header = (read32(bus, device, 0, reg::HEADER) >> 16) as u8;
            if header & MULTI_FUNCTION != 0 {
                found.extend((1..8).filter_map(|f| Function::read(bus, device, f)));
            }
        }
    }
    found
}
