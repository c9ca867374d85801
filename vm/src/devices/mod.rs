//! Emulated legacy PC port-I/O devices and the [`LegacyPlatform`] that owns them.
//!
//! Each device cites its datasheet: Intel 8259A ([`pic`]), Intel 8254 ([`pit`]), Motorola
//! MC146818A ([`rtc`]), National Semiconductor PC16550D ([`uart`]); [`dma_page`] is the PC/AT
//! DMA page-register file with the port-0x80 I/O-delay sink. [`ioapic`] is the Intel 82093AA
//! I/O APIC (MMIO), [`acpi_pm`] the ACPI PM1 event/control blocks and reset register.

pub mod acpi_pm;
pub mod dma_page;
pub mod ioapic;
pub mod irq_lines;
pub mod legacy;
pub mod pic;
pub mod pit;
pub mod rtc;
pub mod uart;

pub use acpi_pm::AcpiPm;
pub use dma_page::DmaPages;
pub use ioapic::IoApic;
pub use irq_lines::IrqLines;
pub use legacy::{LegacyPlatform, PlatformConfig};
pub use pic::Pic;
pub use pit::Pit;
pub use rtc::Rtc;
pub use uart::Uart;
