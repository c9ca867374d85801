//! The ATA/IDE channels' registers as port I/O for `vm::store::ata` (which holds the driver
//! logic, host-tested). The channels come from the PCI IDE controllers: a channel in
//! compatibility mode uses the legacy ports (0x1F0/0x3F6, 0x170/0x376), one in native mode
//! its BARs (PCI IDE Controller Specification 1.0 §2.1, programming interface bits 0 and 2).
//! A controller with programming interface bit 7 (the PIIX3/PIIX4 IDE function, Bochs's and
//! QEMU's) has bus-master registers in BAR4, 8 bytes per channel ("Programming Interface for
//! Bus Master IDE Controller" rev 1.0 §2): each such channel gets a 64 KiB bounce buffer and
//! a PRD table page below 4 GiB, and I/O decoding and bus mastering in its command register.

use crate::arch;
use crate::memory;
use crate::pci::{self, Function};
use vm::store::ata::dma::{self, BmReg, BusMaster, DmaArea};
use vm::store::ata::{AtaBus, Reg};

/// Legacy (compatibility-mode) command and control block ports of the two channels.
const LEGACY: [(u16, u16); 2] = [(0x1F0, 0x3F6), (0x170, 0x376)];
/// Programming interface bit of "channel n operates in native mode": bit 0 and bit 2.
const NATIVE_BIT: [u8; 2] = [0x01, 0x04];
/// An I/O-space BAR has bit 0 set; bits 1:0 are not part of the address (PCI 3.0 §6.2.5.1).
const BAR_IO: u32 = 0x1;
/// The native control block BAR points 2 bytes below the alternate status register.
const NATIVE_CONTROL_OFFSET: u16 = 2;
/// BAR4 holds the bus-master registers (Bus Master IDE rev 1.0 §2; PIIX4 datasheet BMIBA).
const BAR_BUS_MASTER: u8 = 4;
/// The bounce buffer: one READ/WRITE DMA EXT of 128 sectors, the largest request the store
/// disks make (`vm::store::disk_io::MAX_PART_BYTES`), in one 64 KiB-aligned PRD entry.
const BOUNCE_BYTES: u64 = 64 * 1024;
/// The PRD table's page, right after the buffer (so inside one 64 KiB block, §1.2).
const TABLE_BYTES: u64 = memory::FRAME_SIZE;

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

/// One channel's bus-master registers (BAR4 + 8·channel) and its DMA memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortBusMaster {
    pub base: u16,
    pub area: DmaArea,
}

impl PortBusMaster {
    /// The bus master of channel `ch` of `f`, with freshly allocated DMA memory; `None`
    /// when the controller has no bus master, BAR4 is not an I/O BAR, or no memory.
    fn new(f: &Function, ch: usize) -> Option<PortBusMaster> {
        if f.prog_if & pci::class::IDE_BUS_MASTER == 0 {
            return None;
        }
        let bar = f.bar(BAR_BUS_MASTER);
        if bar & BAR_IO == 0 {
            return None;
        }
        let base = u16::try_from(bar & !0x3).ok()? + dma::CHANNEL_STRIDE * ch as u16;
        let buffer = memory::allocate_contiguous(BOUNCE_BYTES + TABLE_BYTES, BOUNCE_BYTES)?;
        Some(PortBusMaster {
            base,
            area: DmaArea {
                table: buffer + BOUNCE_BYTES,
                table_bytes: TABLE_BYTES as usize,
                buffer,
                buffer_bytes: BOUNCE_BYTES as usize,
            },
        })
    }

    /// `phys..phys + len` lies in this channel's DMA area.
    fn owns(&self, phys: u64, len: usize) -> bool {
        let a = &self.area;
        let in_range = |start: u64, bytes: usize| {
            phys >= start && phys.saturating_add(len as u64) <= start + bytes as u64
        };
        in_range(a.buffer, a.buffer_bytes) || in_range(a.table, a.table_bytes)
    }
}

impl BusMaster for PortBusMaster {
    fn area(&self) -> DmaArea {
        self.area
    }

    fn read_bm(&mut self, reg: BmReg) -> u8 {
        // SAFETY: a bus-master register of this channel (BAR4 of its IDE function), used by
        // this driver only; reading Command or Status has no side effect (§2.1, §2.2).
        unsafe { arch::inb(self.base + reg as u16) }
    }

    fn write_bm(&mut self, reg: BmReg, value: u8) {
        // SAFETY: as in `read_bm`. Start is only set by the driver after the PRD table it
        // wrote (describing this channel's own DMA area, never other memory) is loaded.
        unsafe { arch::outb(self.base + reg as u16, value) }
    }

    fn write_prd_address(&mut self, phys: u32) {
        // SAFETY: the PRD Table Address register (§2.3); the driver passes its own table page.
        unsafe { arch::outl(self.base + dma::PRD_TABLE_ADDRESS, phys) }
    }

    fn write_memory(&mut self, phys: u64, data: &[u8]) {
        if !self.owns(phys, data.len()) {
            return;
        }
        // SAFETY: the range lies in this channel's DMA area (checked above), frames taken
        // from the allocator for it alone and covered by the direct map; the bus master is
        // stopped while the driver fills it.
        unsafe {
            core::ptr::copy_nonoverlapping(data.as_ptr(), memory::phys_to_virt(phys), data.len())
        }
    }

    fn read_memory(&mut self, phys: u64, out: &mut [u8]) {
        if !self.owns(phys, out.len()) {
            return;
        }
        // The device wrote the memory behind the compiler's back: order the copy after the
        // status read that said the transfer is done.
        core::sync::atomic::compiler_fence(core::sync::atomic::Ordering::SeqCst);
        // SAFETY: as in `write_memory`; the transfer into it has completed (Active clear).
        unsafe {
            core::ptr::copy_nonoverlapping(memory::phys_to_virt(phys), out.as_mut_ptr(), out.len())
        }
    }
}

/// One IDE channel: its command and control block ports, and its bus master if it has one.
#[derive(Debug)]
pub struct IdeChannel {
    pub ports: PortBus,
    pub bus_master: Option<PortBusMaster>,
}

impl AtaBus for IdeChannel {
    fn read(&mut self, reg: Reg) -> u8 {
        self.ports.read(reg)
    }
    fn write(&mut self, reg: Reg, value: u8) {
        self.ports.write(reg, value)
    }
    fn alt_status(&mut self) -> u8 {
        self.ports.alt_status()
    }
    fn control(&mut self, value: u8) {
        self.ports.control(value)
    }
    fn read_data(&mut self, words: &mut [u16]) {
        self.ports.read_data(words)
    }
    fn write_data(&mut self, words: &[u16]) {
        self.ports.write_data(words)
    }
    fn now(&mut self) -> u64 {
        self.ports.now()
    }
    fn bus_master(&mut self) -> Option<&mut dyn BusMaster> {
        self.bus_master.as_mut().map(|b| b as &mut dyn BusMaster)
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
        // SAFETY: as in `read`; the values are the ATA taskfile of a command; a DMA command
        // moves data only through the channel's own PRD table and bounce buffer.
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

/// The IDE controllers' channels (with their bus masters), or the legacy ports (PIO only)
/// when PCI shows no IDE controller.
pub fn channels(functions: &[Function]) -> alloc::vec::Vec<IdeChannel> {
    let mut out: alloc::vec::Vec<IdeChannel> = alloc::vec::Vec::new();
    for f in functions
        .iter()
        .filter(|f| f.is(pci::class::MASS_STORAGE, pci::class::IDE))
    {
        let ports = PortBus::channels(f);
        if f.prog_if & pci::class::IDE_BUS_MASTER != 0 {
            f.enable_io_and_dma();
        }
        for (ch, p) in ports.into_iter().enumerate() {
            let Some(p) = p else { continue };
            if out.iter().any(|c| c.ports == p) {
                continue;
            }
            out.push(IdeChannel {
                ports: p,
                bus_master: PortBusMaster::new(f, ch),
            });
        }
    }
    if out.is_empty() {
        out.extend(LEGACY.map(|(base, control)| IdeChannel {
            ports: PortBus { base, control },
            bus_master: None,
        }));
    }
    out
}
