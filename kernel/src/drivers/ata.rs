//! The ATA/IDE channels' registers as port I/O for `vm::store::ata` (which holds the driver
//! logic, host-tested). The channels come from the PCI IDE controllers: a channel in
//! compatibility mode uses the legacy ports (0x1F0/0x3F6, 0x170/0x376), one in native mode
//! its BARs (PCI IDE Controller Specification 1.0 §2.1, programming interface bits 0 and 2).

use crate::arch;
use crate::pci::{self, Function};
use vm::store::ata::{AtaBus, Reg};

/// Legacy (compatibility-mode) command and control block ports of the two channels.
const LEGACY: [(u16, u16); 2] = [(0x1F0, 0x3F6), (0x170, 0x376)];
/// Programming interface bit of "channel n operates in native mode": bit 0 and bit 2.
const NATIVE_BIT: [u8; 2] = [0x01, 0x04];
/// An I/O-space BAR has bit 0 set; bits 1:0 are not part of the address (PCI 3.0 §6.2.5.1).
const BAR_IO: u32 = 0x1;
/// The native control block BAR points 2 bytes below the alternate status register.
const NATIVE_CONTROL_OFFSET: u16 = 2;

/// One channel's command block base and alternate-status/device-control port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortBus {
    pub base: u16,
    pub control: u16,
}

impl PortBus {
    /// The two channels of an IDE controller.
    pub fn channels(f: &Function) -> [Option<PortBus>; 2] {
        core::array::from_fn(|ch| {
            if f.prog_if & NATIVE_BIT[ch] == 0 {
                let (base, control) = LEGACY[ch];
                return Some(PortBus { base, control });
            }
            let (cmd, ctl) = (f.bar(2 * ch as u8), f.bar(2 * ch as u8 + 1));
            if cmd & BAR_IO == 0 || ctl & BAR_IO == 0 {
                return None;
            }
            let port = |b: u32| u16::try_from(b & !0x3).ok();
            Some(PortBus {
                base: port(cmd)?,
                control: port(ctl)? + NATIVE_CONTROL_OFFSET,
            })
        })
    }
}

impl AtaBus for PortBus {
    fn read(&mut self, reg: Reg) -> u8 {
        // SAFETY: the port is a register of this IDE channel, which only this driver uses
        // after boot (the firmware and bootloader are done with the boot drive); reading
        // Status acknowledges an interrupt, which is masked (nIEN) anyway.
        unsafe { arch::inb(self.base + reg as u16) }
    }

    fn write(&mut self, reg: Reg, value: u8) {
        // SAFETY: as in `read`; the values are the ATA taskfile of a PIO command (no DMA).
        unsafe { arch::outb(self.base + reg as u16, value) }
    }

    fn alt_status(&mut self) -> u8 {
        // SAFETY: the alternate status register has no side effect (ATA/ATAPI-6 §7.3).
        unsafe { arch::inb(self.control) }
    }

    fn control(&mut self, value: u8) {
        // SAFETY: the device control register: nIEN and SRST only (ATA/ATAPI-6 §7.8).
        unsafe { arch::outb(self.control, value) }
    }

    fn read_data(&mut self, words: &mut [u16]) {
        // SAFETY: PIO data-in from this channel's data register into `words`.
        unsafe { arch::insw(self.base + Reg::Data as u16, words) }
    }

    fn write_data(&mut self, words: &[u16]) {
        // SAFETY: PIO data-out to this channel's data register.
        unsafe { arch::outsw(self.base + Reg::Data as u16, words) }
    }

    fn now(&mut self) -> u64 {
        arch::rdtsc()
    }
}

/// The IDE controllers' channels, or the legacy ports when PCI shows no IDE controller.
pub fn channels(functions: &[Function]) -> alloc::vec::Vec<PortBus> {
    let mut out: alloc::vec::Vec<PortBus> = functions
        .iter()
        .filter(|f| f.is(pci::class::MASS_STORAGE, pci::class::IDE))
        .flat_map(|f| PortBus::channels(f).into_iter().flatten())
        .collect();
    out.dedup();
    if out.is_empty() {
        out.extend(LEGACY.map(|(base, control)| PortBus { base, control }));
    }
    out
}
