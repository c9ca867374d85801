//! Intel 8254x (e1000) driver logic: register layout, legacy receive and transmit
//! descriptors and their rings, bring-up, polled transmit and receive. References are to
//! the "PCI/PCI-X Family of Gigabit Ethernet Controllers Software Developer's Manual"
//! (8254x SDM, rev. 4.0): §3.2.3 receive descriptor, §3.3.3 legacy transmit descriptor,
//! §13 registers, §14 initialization.
//!
//! Polled, no interrupts (IMC masks them all): the scheduler calls [`E1000::receive`] and
//! [`E1000::transmit`] between slices, each bounded by the ring size.

mod regs;
#[cfg(test)]
mod tests;

pub use regs::{ctrl, rctl, rx_status, tctl, tx_cmd, Reg};

use crate::store::nvme::DmaMemory;

/// PCI vendor ID of Intel.
pub const VENDOR_INTEL: u16 = 0x8086;
/// 8254x device IDs the driver takes (8254x SDM §5.1, Table 5-1; all use the legacy
/// descriptors and the register layout here). 82540EM (0x100E) is what Bochs and QEMU
/// emulate.
pub const DEVICE_IDS: [(u16, &str); 14] = [
    (0x1000, "82542"),
    (0x1001, "82543GC"),
    (0x1004, "82543GC"),
    (0x1008, "82544EI"),
    (0x100C, "82544GC"),
    (0x100E, "82540EM"),
    (0x100F, "82545EM"),
    (0x1010, "82546EB"),
    (0x1013, "82541EI"),
    (0x1015, "82540EM (LOM)"),
    (0x1017, "82540EP"),
    (0x1019, "82547EI"),
    (0x1026, "82545GM"),
    (0x1076, "82541GI"),
];

/// The model name of a supported device ID.
pub fn model(device_id: u16) -> Option<&'static str> {
    DEVICE_IDS
        .iter()
        .find(|(id, _)| *id == device_id)
        .map(|(_, m)| *m)
}

/// Descriptors per ring: RDLEN/TDLEN must be multiples of 128 bytes (§13.4.27, §13.4.38),
/// i.e. of 8 descriptors.
pub const RING_DESCRIPTORS: usize = 32;
/// Bytes of one descriptor (§3.2.3, §3.3.3).
pub const DESCRIPTOR_BYTES: usize = 16;
/// Receive buffer size: RCTL.BSIZE = 00b with BSEX = 0 is 2048 bytes (§13.4.22).
pub const BUFFER_BYTES: usize = 2048;
/// Largest frame the driver sends or accepts (no jumbo frames; FCS stripped).
pub const MAX_FRAME: usize = 1518;
/// Polls of CTRL.RST after a reset before the device is declared dead.
pub const RESET_POLLS: u32 = 100_000;

/// The 8254x's registers: 32-bit accesses at byte offsets of BAR0.
pub trait E1000Regs {
    fn read32(&mut self, reg: u32) -> u32;
    fn write32(&mut self, reg: u32, value: u32);
}

/// Physical memory the driver owns: the two descriptor rings and one
/// [`BUFFER_BYTES`] buffer per descriptor (physically addressed; the kernel gives it
/// zeroed frames).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Memory {
    /// [`RING_DESCRIPTORS`] × 16 bytes, 16-byte aligned (§3.2.6: 16-byte aligned base).
    pub rx_ring: u64,
    pub tx_ring: u64,
    /// One buffer per descriptor.
    pub rx_buffers: [u64; RING_DESCRIPTORS],
    pub tx_buffers: [u64; RING_DESCRIPTORS],
}

/// Why the NIC is not used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum E1000Error {
    /// CTRL.RST did not clear after a reset.
    ResetTimeout,
    /// Neither RAH0.AV nor the EEPROM (through EERD) gave a unicast address.
    NoMacAddress,
}

impl core::fmt::Display for E1000Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            E1000Error::ResetTimeout => write!(
                f,
                "the device did not finish its reset (CTRL.RST stayed set); check the NIC or \
                 use another one"
            ),
            E1000Error::NoMacAddress => write!(
                f,
                "no MAC address in receive address 0 or the EEPROM; the NIC cannot be used"
            ),
        }
    }
}

/// Counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NicStats {
    pub tx_frames: u64,
    pub tx_bytes: u64,
    pub rx_frames: u64,
    pub rx_bytes: u64,
    /// Received descriptors with an error bit or without EOP (a frame longer than a buffer).
    pub rx_errors: u64,
    /// Frames not sent because every transmit descriptor was busy.
    pub tx_ring_full: u64,
    /// Frames not sent because they were shorter than a header or longer than MAX_FRAME.
    pub tx_malformed: u64,
}

/// Legacy receive descriptor (§3.2.3, Table 3-1): buffer address (8 bytes), length (2),
/// packet checksum (2), status (1), errors (1), special (2).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RxDescriptor {
    pub buffer: u64,
    pub length: u16,
    pub checksum: u16,
    pub status: u8,
    pub errors: u8,
    pub special: u16,
}

impl RxDescriptor {
    pub fn to_bytes(self) -> [u8; DESCRIPTOR_BYTES] {
        let mut b = [0u8; DESCRIPTOR_BYTES];
        b[0..8].copy_from_slice(&self.buffer.to_le_bytes());
        b[8..10].copy_from_slice(&self.length.to_le_bytes());
        b[10..12].copy_from_slice(&self.checksum.to_le_bytes());
        b[12] = self.status;
        b[13] = self.errors;
        b[14..16].copy_from_slice(&self.special.to_le_bytes());
        b
    }

    pub fn from_bytes(b: &[u8; DESCRIPTOR_BYTES]) -> Self {
        RxDescriptor {
            buffer: u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]),
            length: u16::from_le_bytes([b[8], b[9]]),
            checksum: u16::from_le_bytes([b[10], b[11]]),
            status: b[12],
            errors: b[13],
            special: u16::from_le_bytes([b[14], b[15]]),
        }
    }
}

/// Legacy transmit descriptor (§3.3.3, Table 3-8): buffer address (8), length (2), CSO (1),
/// CMD (1), STA (1, with RSV in bits 7:4), CSS (1), special (2).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TxDescriptor {
    pub buffer: u64,
    pub length: u16,
    pub cso: u8,
    pub cmd: u8,
    pub status: u8,
    pub css: u8,
    pub special: u16,
}

impl TxDescriptor {
    pub fn to_bytes(self) -> [u8; DESCRIPTOR_BYTES] {
        let mut b = [0u8; DESCRIPTOR_BYTES];
        b[0..8].copy_from_slice(&self.buffer.to_le_bytes());
        b[8..10].copy_from_slice(&self.length.to_le_bytes());
        b[10] = self.cso;
        b[11] = self.cmd;
        b[12] = self.status;
        b[13] = self.css;
        b[14..16].copy_from_slice(&self.special.to_le_bytes());
        b
    }

    pub fn from_bytes(b: &[u8; DESCRIPTOR_BYTES]) -> Self {
        TxDescriptor {
            buffer: u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]),
            length: u16::from_le_bytes([b[8], b[9]]),
            cso: b[10],
            cmd: b[11],
            status: b[12],
            css: b[13],
            special: u16::from_le_bytes([b[14], b[15]]),
        }
    }
}

/// Reads EEPROM word `addr` through EERD (§13.4.4, 82540/82544/82545/82546 layout: START
/// bit 0, DONE bit 4, address bits 15:8, data bits 31:16); `None` if it never completes.
fn eeprom_read(regs: &mut impl E1000Regs, addr: u32) -> Option<u16> {
    regs.write32(Reg::EERD, regs::EERD_START | addr << regs::EERD_ADDR_SHIFT);
    for _ in 0..RESET_POLLS {
        let v = regs.read32(Reg::EERD);
        if v & regs::EERD_DONE != 0 {
            return Some((v >> regs::EERD_DATA_SHIFT) as u16);
        }
    }
    None
}

/// An 8254x brought up for polled operation.
pub struct E1000<R, D> {
    regs: R,
    dma: D,
    mem: Memory,
    mac: [u8; 6],
    /// Next receive descriptor the hardware will fill (§3.2.6: software owns the
    /// descriptors from head up to tail).
    rx_next: usize,
    /// Next free transmit descriptor (our TDT).
    tx_tail: usize,
    /// Oldest transmit descriptor not yet seen done.
    tx_clean: usize,
    stats: NicStats,
}

impl<R, D> core::fmt::Debug for E1000<R, D> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("E1000")
            .field("mac", &self.mac)
            .field("stats", &self.stats)
            .finish()
    }
}

fn next(i: usize) -> usize {
    (i + 1) % RING_DESCRIPTORS
}

impl<R: E1000Regs, D: DmaMemory> E1000<R, D> {
    /// Resets the device and sets it up (§14.3-§14.5): link up, all interrupts masked,
    /// promiscuous receive (the uplink bridges frames for the guests' addresses, not only
    /// the NIC's) with broadcast, CRC stripped, 2 KiB buffers; transmit with pad-short-packets
    /// and the recommended IPG. Every receive descriptor is given to the hardware.
    pub fn init(mut regs: R, mut dma: D, mem: Memory) -> Result<Self, E1000Error> {
        // The address the EEPROM loaded at power-on (§13.5.2), read before the reset, which
        // may clear the receive address registers (Bochs's model does).
        let before = (regs.read32(Reg::RAL0), regs.read32(Reg::RAH0));
        // §14.5 / §13.4.1: CTRL.RST resets the device; it clears the bit when done.
        regs.write32(Reg::IMC, u32::MAX);
        let c = regs.read32(Reg::CTRL);
        regs.write32(Reg::CTRL, c | ctrl::RST);
        let mut polls = 0;
        while regs.read32(Reg::CTRL) & ctrl::RST != 0 {
            polls += 1;
            if polls >= RESET_POLLS {
                return Err(E1000Error::ResetTimeout);
            }
        }
        // §13.4.16: interrupts are masked again after the reset; ICR read clears causes.
        regs.write32(Reg::IMC, u32::MAX);
        let _ = regs.read32(Reg::ICR);
        // §14.3: set link up (SLU) and auto-speed detection; clear the PHY reset and
        // VLAN mode and the loss-of-signal inversion.
        let c = regs.read32(Reg::CTRL);
        regs.write32(
            Reg::CTRL,
            (c | ctrl::SLU | ctrl::ASDE) & !(ctrl::LRST | ctrl::PHY_RST | ctrl::VME | ctrl::ILOS),
        );
        let mac = if before.1 & regs::RAH_AV != 0 {
            let (ral, rah) = before;
            [
                ral as u8,
                (ral >> 8) as u8,
                (ral >> 16) as u8,
                (ral >> 24) as u8,
                rah as u8,
                (rah >> 8) as u8,
            ]
        } else {
            // §5.6.1 (EEPROM words 00h-02h: Ethernet address) through EERD (§13.4.4).
            let mut mac = [0u8; 6];
            for (w, pair) in mac.chunks_mut(2).enumerate() {
                let word = eeprom_read(&mut regs, w as u32).ok_or(E1000Error::NoMacAddress)?;
                pair.copy_from_slice(&word.to_le_bytes());
            }
            mac
        };
        if mac == [0; 6] || mac == [0xff; 6] || mac[0] & 1 != 0 {
            return Err(E1000Error::NoMacAddress);
        }
        // §13.5.2-3: receive address 0 is the NIC's own (AV set), even though the receive
        // filter is promiscuous.
        regs.write32(
            Reg::RAL0,
            u32::from_le_bytes([mac[0], mac[1], mac[2], mac[3]]),
        );
        regs.write32(
            Reg::RAH0,
            regs::RAH_AV | u32::from(mac[4]) | u32::from(mac[5]) << 8,
        );
        // §14.4: clear the multicast table array.
        for i in 0..regs::MTA_ENTRIES {
            regs.write32(Reg::MTA + 4 * i, 0);
        }
        // Receive ring (§14.4): every descriptor points at its buffer, status clear.
        for (i, &buf) in mem.rx_buffers.iter().enumerate() {
            let d = RxDescriptor {
                buffer: buf,
                ..RxDescriptor::default()
            };
            dma.write(mem.rx_ring + (i * DESCRIPTOR_BYTES) as u64, &d.to_bytes());
        }
        for (i, _) in mem.tx_buffers.iter().enumerate() {
            dma.write(
                mem.tx_ring + (i * DESCRIPTOR_BYTES) as u64,
                &TxDescriptor::default().to_bytes(),
            );
        }
        let ring_bytes = (RING_DESCRIPTORS * DESCRIPTOR_BYTES) as u32;
        regs.write32(Reg::RDBAL, mem.rx_ring as u32);
        regs.write32(Reg::RDBAH, (mem.rx_ring >> 32) as u32);
        regs.write32(Reg::RDLEN, ring_bytes);
        regs.write32(Reg::RDH, 0);
        // Head = tail means empty to the hardware: one descriptor stays with software.
        regs.write32(Reg::RDT, (RING_DESCRIPTORS - 1) as u32);
        regs.write32(
            Reg::RCTL,
            rctl::EN | rctl::UPE | rctl::MPE | rctl::BAM | rctl::SECRC,
        );
        // Transmit ring (§14.5).
        regs.write32(Reg::TDBAL, mem.tx_ring as u32);
        regs.write32(Reg::TDBAH, (mem.tx_ring >> 32) as u32);
        regs.write32(Reg::TDLEN, ring_bytes);
        regs.write32(Reg::TDH, 0);
        regs.write32(Reg::TDT, 0);
        regs.write32(
            Reg::TCTL,
            tctl::EN | tctl::PSP | tctl::CT_DEFAULT | tctl::COLD_FULL_DUPLEX,
        );
        regs.write32(Reg::TIPG, regs::TIPG_DEFAULT);
        Ok(E1000 {
            regs,
            dma,
            mem,
            mac,
            rx_next: 0,
            tx_tail: 0,
            tx_clean: 0,
            stats: NicStats::default(),
        })
    }

    /// The NIC's own MAC address (from RAL0/RAH0).
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// STATUS.LU (§13.4.2): the link is up.
    pub fn link_up(&mut self) -> bool {
        self.regs.read32(Reg::STATUS) & regs::STATUS_LU != 0
    }

    pub fn stats(&self) -> NicStats {
        self.stats
    }

    fn tx_desc_at(&self, i: usize) -> u64 {
        self.mem.tx_ring + (i * DESCRIPTOR_BYTES) as u64
    }

    /// Reclaims transmit descriptors the hardware reported done (STA.DD, §3.3.3.2).
    fn reclaim(&mut self) {
        while self.tx_clean != self.tx_tail {
            let mut b = [0u8; DESCRIPTOR_BYTES];
            self.dma.read(self.tx_desc_at(self.tx_clean), &mut b);
            if TxDescriptor::from_bytes(&b).status & regs::TX_STA_DD == 0 {
                break;
            }
            self.tx_clean = next(self.tx_clean);
        }
    }

    /// Queues `frame` for transmission (copied into its descriptor's buffer; the FCS is
    /// added by the hardware, IFCS). False if the ring is full or the frame malformed.
    pub fn transmit(&mut self, frame: &[u8]) -> bool {
        if !(14..=MAX_FRAME).contains(&frame.len()) {
            self.stats.tx_malformed += 1;
            return false;
        }
        self.reclaim();
        // One descriptor stays free: TDT == TDH means empty (§3.3.6).
        if next(self.tx_tail) == self.tx_clean {
            self.stats.tx_ring_full += 1;
            return false;
        }
        let i = self.tx_tail;
        let buf = self.mem.tx_buffers[i];
        self.dma.write(buf, frame);
        let d = TxDescriptor {
            buffer: buf,
            length: frame.len() as u16,
            cmd: tx_cmd::EOP | tx_cmd::IFCS | tx_cmd::RS,
            ..TxDescriptor::default()
        };
        self.dma.write(self.tx_desc_at(i), &d.to_bytes());
        self.tx_tail = next(i);
        self.regs.write32(Reg::TDT, self.tx_tail as u32);
        self.stats.tx_frames += 1;
        self.stats.tx_bytes += frame.len() as u64;
        true
    }

    /// Free transmit descriptors (after reclaiming the done ones).
    pub fn tx_free(&mut self) -> usize {
        self.reclaim();
        (self.tx_clean + RING_DESCRIPTORS - self.tx_tail - 1) % RING_DESCRIPTORS
    }

    /// Hands at most `max` received frames to `deliver` (copied into `scratch` first, in
    /// order), giving each descriptor back to the hardware. Returns how many descriptors
    /// were consumed (frames and errors).
    pub fn receive(
        &mut self,
        max: usize,
        scratch: &mut [u8; BUFFER_BYTES],
        mut deliver: impl FnMut(&[u8]),
    ) -> usize {
        let mut done = 0;
        while done < max {
            let at = self.mem.rx_ring + (self.rx_next * DESCRIPTOR_BYTES) as u64;
            let mut b = [0u8; DESCRIPTOR_BYTES];
            self.dma.read(at, &mut b);
            let d = RxDescriptor::from_bytes(&b);
            if d.status & rx_status::DD == 0 {
                break;
            }
            let len = usize::from(d.length);
            // §3.2.3.1-2: a frame is whole with EOP and no error bits.
            if d.status & rx_status::EOP == 0 || d.errors != 0 || !(14..=MAX_FRAME).contains(&len) {
                self.stats.rx_errors += 1;
            } else {
                self.dma
                    .read(self.mem.rx_buffers[self.rx_next], &mut scratch[..len]);
                self.stats.rx_frames += 1;
                self.stats.rx_bytes += len as u64;
                deliver(&scratch[..len]);
            }
            // Give it back: status cleared, buffer address restored, tail moved onto it.
            let fresh = RxDescriptor {
                buffer: self.mem.rx_buffers[self.rx_next],
                ..RxDescriptor::default()
            };
            self.dma.write(at, &fresh.to_bytes());
            self.regs.write32(Reg::RDT, self.rx_next as u32);
            self.rx_next = next(self.rx_next);
            done += 1;
        }
        done
    }
}
