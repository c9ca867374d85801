//! Intel 82093AA I/O Advanced Programmable Interrupt Controller (Intel 82093AA datasheet,
//! order no. 290566-001): 24 interrupt input pins, a redirection table entry per pin, edge and
//! level triggering with remote IRR, reached through two 32-bit MMIO registers at
//! [`MMIO_BASE`] (§3.0: IOREGSEL at offset 0x00 selects the register, IOWIN at 0x10 reads and
//! writes it).
//!
//! The model delivers at once: an interrupt leaves as an [`IoApicMessage`] that the VMM hands
//! to the local APIC(s) named by its destination, so the delivery status bit (§3.2.4, DELIVS)
//! always reads 0 (idle). Version 0x11 has no EOI register: level interrupts are ended by the
//! local APIC's EOI broadcast, which the VMM forwards as [`IoApic::eoi`].
//!
//! A redirection to vector 0-15 is sent as programmed: the receiving local APIC rejects it
//! (SDM Vol. 3A §11.5.3, "Illegal vector" error), as on hardware.

use super::state;
use crate::snapshot::codec::{Dec, Enc};

/// Guest-physical base of the IOAPIC's register window (the PC default; the MADT says so).
pub const MMIO_BASE: u64 = 0xFEC0_0000;
/// Size of the window the VMM routes to this model (one 4 KiB page).
pub const MMIO_SIZE: u64 = 0x1000;
/// §3.1: I/O Register Select, offset 0x00.
pub const IOREGSEL: u64 = 0x00;
/// §3.1: I/O Window, offset 0x10.
pub const IOWIN: u64 = 0x10;
/// Number of interrupt input pins (and redirection entries).
pub const PINS: usize = 24;

/// §3.2: register indices selected through IOREGSEL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Register {
    /// 0x00: IOAPICID (§3.2.1).
    Id,
    /// 0x01: IOAPICVER (§3.2.2).
    Version,
    /// 0x02: IOAPICARB (§3.2.3).
    Arbitration,
    /// 0x10 + 2·pin: bits 31:0 of entry `pin` (§3.2.4).
    RedirectionLow(u8),
    /// 0x11 + 2·pin: bits 63:32 of entry `pin`.
    RedirectionHigh(u8),
    /// Any other index: reads 0, writes are ignored.
    Unknown(u8),
}

/// First IOREGSEL index of the redirection table.
const REDIRECTION_FIRST: u8 = 0x10;
/// Last IOREGSEL index of the redirection table (0x10 + 2·24 - 1).
const REDIRECTION_LAST: u8 = REDIRECTION_FIRST + 2 * PINS as u8 - 1;

impl Register {
    /// Decodes an IOREGSEL value (§3.1: bits 7:0 are the register address).
    pub const fn decode(index: u8) -> Self {
        match index {
            0x00 => Self::Id,
            0x01 => Self::Version,
            0x02 => Self::Arbitration,
            REDIRECTION_FIRST..=REDIRECTION_LAST => {
                let pin = (index - REDIRECTION_FIRST) / 2;
                if index & 1 == 0 {
                    Self::RedirectionLow(pin)
                } else {
                    Self::RedirectionHigh(pin)
                }
            }
            other => Self::Unknown(other),
        }
    }
}

/// §3.2.2: IOAPICVER = maximum redirection entry (23) in bits 23:16, version 0x11 in 7:0.
pub const VERSION_VALUE: u32 = ((PINS as u32 - 1) << 16) | 0x11;
/// §3.2.1 / §3.2.3: the ID and arbitration ID live in bits 27:24.
const ID_SHIFT: u32 = 24;
const ID_MASK: u32 = 0xF << ID_SHIFT;

// §3.2.4, Table "IOREDTBL[23:0]": the bits of a redirection entry.
const VECTOR_MASK: u64 = 0xFF;
const DELIVERY_MODE_SHIFT: u32 = 8;
const DELIVERY_MODE_MASK: u64 = 0b111 << DELIVERY_MODE_SHIFT;
const DEST_MODE_LOGICAL: u64 = 1 << 11;
/// Delivery status (RO): always 0 here, deliveries are immediate.
const DELIVERY_STATUS: u64 = 1 << 12;
/// Interrupt input pin polarity: 1 = active low.
const POLARITY_LOW: u64 = 1 << 13;
/// Remote IRR (RO): set when a level interrupt is accepted, cleared by its EOI.
const REMOTE_IRR: u64 = 1 << 14;
/// Trigger mode: 1 = level.
const TRIGGER_LEVEL: u64 = 1 << 15;
const MASKED: u64 = 1 << 16;
const DEST_SHIFT: u32 = 56;
/// Bits the guest can write; bits 55:17 are reserved (read 0).
const WRITABLE: u64 = VECTOR_MASK
    | DELIVERY_MODE_MASK
    | DEST_MODE_LOGICAL
    | POLARITY_LOW
    | TRIGGER_LEVEL
    | MASKED
    | (0xFF << DEST_SHIFT);
const READ_ONLY: u64 = DELIVERY_STATUS | REMOTE_IRR;
/// The bits an entry can hold: the writable ones and remote IRR (delivery status is 0).
const STORED: u64 = WRITABLE | REMOTE_IRR;
/// The 4-bit IOAPIC ID of IOAPICID / IOAPICARB bits 27:24 (§3.2.1, §3.2.3).
const ID_MAX: u8 = (ID_MASK >> ID_SHIFT) as u8;
/// One bit per input pin in `IoApic::lines`.
const ALL_PINS: u32 = (1 << PINS) - 1;

/// §3.2.4 bits 10:8, "Delivery Mode".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryMode {
    /// 000: to the processors in the destination, on the vector.
    Fixed,
    /// 001: to the destination processor running at the lowest priority.
    LowestPriority,
    /// 010: SMI (vector ignored; edge only).
    Smi,
    /// 100: NMI (vector ignored; always treated as edge).
    Nmi,
    /// 101: INIT (vector ignored; always treated as edge).
    Init,
    /// 111: the external 8259A-compatible controller supplies the vector (edge only).
    ExtInt,
    /// 011 or 110: reserved; such an entry delivers nothing (counted in `reserved_mode_drops`).
    Reserved(u8),
}

impl DeliveryMode {
    /// Decodes bits 10:8 of an entry.
    pub const fn decode(bits: u8) -> Self {
        match bits & 0b111 {
            0b000 => Self::Fixed,
            0b001 => Self::LowestPriority,
            0b010 => Self::Smi,
            0b100 => Self::Nmi,
            0b101 => Self::Init,
            0b111 => Self::ExtInt,
            other => Self::Reserved(other),
        }
    }

    /// The bits 10:8 [`DeliveryMode::decode`] reads back as `self`.
    pub const fn bits(self) -> u8 {
        match self {
            Self::Fixed => 0b000,
            Self::LowestPriority => 0b001,
            Self::Smi => 0b010,
            Self::Nmi => 0b100,
            Self::Init => 0b101,
            Self::ExtInt => 0b111,
            Self::Reserved(bits) => bits & 0b111,
        }
    }

    /// §3.2.4: only Fixed and LowestPriority honour the trigger mode; SMI, NMI, INIT and
    /// ExtINT are edge-triggered "even if programmed as level triggered".
    pub const fn honours_level(self) -> bool {
        matches!(self, Self::Fixed | Self::LowestPriority)
    }
}

/// §3.2.4 bit 11, "Destination Mode".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DestinationMode {
    /// 0: bits 63:56 are an APIC ID.
    Physical,
    /// 1: bits 63:56 are a logical destination (matched against the LDR/DFR).
    Logical,
}

/// An interrupt message the IOAPIC sends to the local APIC(s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IoApicMessage {
    /// The input pin (GSI) that caused it.
    pub pin: u8,
    /// The vector as programmed (0-15 included: the local APIC rejects those).
    pub vector: u8,
    pub delivery: DeliveryMode,
    pub dest_mode: DestinationMode,
    /// Bits 63:56 of the entry.
    pub dest: u8,
    /// Level-triggered (the local APIC sets the TMR bit and its EOI must reach [`IoApic::eoi`]).
    pub level_triggered: bool,
}

impl IoApicMessage {
    /// Appends the message: pin, vector, delivery mode (bits 10:8), destination mode,
    /// destination, level-triggered.
    pub(super) fn save_state(&self, e: &mut Enc) {
        e.u8(self.pin).u8(self.vector).u8(self.delivery.bits());
        state::put_flag(e, self.dest_mode == DestinationMode::Logical);
        e.u8(self.dest);
        state::put_flag(e, self.level_triggered);
    }

    /// A message as [`IoApicMessage::save_state`] wrote it, one the IOAPIC could have sent.
    pub(super) fn load_state(d: &mut Dec<'_>) -> Result<Self, &'static str> {
        let pin = state::u8(d)?;
        if usize::from(pin) >= PINS {
            return Err("queued IOAPIC message for a pin above 23");
        }
        let vector = state::u8(d)?;
        let delivery = DeliveryMode::decode(state::u8(d)?);
        let logical = state::flag(
            d,
            "queued IOAPIC message's destination mode neither 0 nor 1",
        )?;
        let dest = state::u8(d)?;
        let level_triggered =
            state::flag(d, "queued IOAPIC message's trigger mode neither 0 nor 1")?;
        // §3.2.4, Delivery Mode: 011 and 110 are reserved (never sent); SMI, NMI, INIT and
        // ExtINT are always edge-triggered.
        if let DeliveryMode::Reserved(_) = delivery {
            return Err("queued IOAPIC message with a reserved delivery mode");
        }
        if level_triggered && !delivery.honours_level() {
            return Err("queued IOAPIC message level-triggered in an edge-only delivery mode");
        }
        Ok(Self {
            pin,
            vector,
            delivery,
            dest_mode: if logical {
                DestinationMode::Logical
            } else {
                DestinationMode::Physical
            },
            dest,
            level_triggered,
        })
    }
}

/// What a register write did beyond changing the register.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IoApicEffects {
    /// An interrupt to deliver now (unmasking an asserted level pin, for example).
    pub message: Option<IoApicMessage>,
    /// The set of level-triggered vectors changed: refresh the EOI-exit bitmap from
    /// [`IoApic::level_vectors`].
    pub level_vectors_changed: bool,
}

/// The messages an EOI re-delivers (at most one per pin), as an iterator.
#[derive(Debug, Clone)]
pub struct EoiDeliveries {
    messages: [Option<IoApicMessage>; PINS],
    next: usize,
}

impl Iterator for EoiDeliveries {
    type Item = IoApicMessage;

    fn next(&mut self) -> Option<IoApicMessage> {
        while self.next < PINS {
            let m = self.messages[self.next];
            self.next += 1;
            if m.is_some() {
                return m;
            }
        }
        None
    }
}

/// The 82093AA I/O APIC.
#[derive(Debug, Clone)]
pub struct IoApic {
    /// IOREGSEL bits 7:0.
    select: u8,
    /// IOAPICID bits 27:24.
    id: u8,
    /// IOAPICARB bits 27:24.
    arbitration: u8,
    redirection: [u64; PINS],
    /// Electrical level of each input pin (before polarity).
    lines: u32,
    deliveries: [u64; PINS],
    reserved_mode_drops: u64,
}

impl IoApic {
    /// An IOAPIC after reset with APIC ID `id` (bits 3:0 kept): every entry masked
    /// (§3.2.4: "the mask bit is set after reset"), everything else zero.
    pub fn new(id: u8) -> Self {
        let id = id & 0xF;
        Self {
            select: 0,
            id,
            // §3.2.3: the arbitration ID is loaded from the ID.
            arbitration: id,
            redirection: [MASKED; PINS],
            lines: 0,
            deliveries: [0; PINS],
            reserved_mode_drops: 0,
        }
    }

    /// Whether `gpa` is in the register window.
    pub const fn claims(gpa: u64) -> bool {
        gpa >= MMIO_BASE && gpa < MMIO_BASE + MMIO_SIZE
    }

    /// A 32-bit read at `offset` into the window (§3.1: the registers are 32 bits wide; the
    /// caller narrows sub-dword accesses). Offsets other than IOREGSEL and IOWIN read 0.
    pub fn mmio_read(&self, offset: u64) -> u32 {
        match offset {
            IOREGSEL => u32::from(self.select),
            IOWIN => self.read_register(Register::decode(self.select)),
            _ => 0,
        }
    }

    /// A 32-bit write at `offset` into the window. Offsets other than IOREGSEL and IOWIN are
    /// ignored.
    pub fn mmio_write(&mut self, offset: u64, value: u32) -> IoApicEffects {
        match offset {
            // §3.1: IOREGSEL bits 31:8 are reserved.
            IOREGSEL => {
                self.select = value as u8;
                IoApicEffects::default()
            }
            IOWIN => self.write_register(Register::decode(self.select), value),
            _ => IoApicEffects::default(),
        }
    }

    /// Reads register `reg` as IOWIN would.
    pub fn read_register(&self, reg: Register) -> u32 {
        match reg {
            Register::Id => u32::from(self.id) << ID_SHIFT,
            Register::Version => VERSION_VALUE,
            Register::Arbitration => u32::from(self.arbitration) << ID_SHIFT,
            Register::RedirectionLow(pin) => self.redirection[usize::from(pin)] as u32,
            Register::RedirectionHigh(pin) => (self.redirection[usize::from(pin)] >> 32) as u32,
            Register::Unknown(_) => 0,
        }
    }

    /// Writes register `reg` as IOWIN would.
    pub fn write_register(&mut self, reg: Register, value: u32) -> IoApicEffects {
        match reg {
            Register::Id => {
                self.id = ((value & ID_MASK) >> ID_SHIFT) as u8;
                // §3.2.3: "This register is loaded when the IOAPIC ID Register is written."
                self.arbitration = self.id;
                IoApicEffects::default()
            }
            // §3.2.2, §3.2.3: read-only.
            Register::Version | Register::Arbitration | Register::Unknown(_) => {
                IoApicEffects::default()
            }
            Register::RedirectionLow(pin) => {
                let old = self.redirection[usize::from(pin)];
                self.write_entry(pin, (old & !0xFFFF_FFFF) | u64::from(value))
            }
            Register::RedirectionHigh(pin) => {
                let old = self.redirection[usize::from(pin)];
                self.write_entry(pin, (old & 0xFFFF_FFFF) | (u64::from(value) << 32))
            }
        }
    }

    fn write_entry(&mut self, pin: u8, value: u64) -> IoApicEffects {
        let p = usize::from(pin);
        let old = self.redirection[p];
        let mut new = (value & WRITABLE) | (old & READ_ONLY);
        // Remote IRR is meaningless for edge entries (§3.2.4); switching an entry to edge
        // clears it, which Linux relies on to end a level interrupt on IOAPICs without an EOI
        // register (arch/x86/kernel/apic/io_apic.c, __eoi_ioapic_pin).
        if new & TRIGGER_LEVEL == 0 {
            new &= !REMOTE_IRR;
        }
        let was_level = Self::level_vector(old);
        self.redirection[p] = new;
        IoApicEffects {
            // Unmasking (or retargeting) a level entry whose line is asserted delivers.
            message: self.deliver_level(pin),
            level_vectors_changed: was_level != Self::level_vector(new),
        }
    }

    /// The raw 64-bit redirection entry of `pin` (None for pin ≥ 24).
    pub fn entry(&self, pin: u8) -> Option<u64> {
        self.redirection.get(usize::from(pin)).copied()
    }

    /// The current IOAPIC ID (bits 27:24 of IOAPICID).
    pub fn id(&self) -> u8 {
        self.id
    }

    /// The vector of `entry` if it is effectively level-triggered.
    fn level_vector(entry: u64) -> Option<u8> {
        let mode = DeliveryMode::decode((entry >> DELIVERY_MODE_SHIFT) as u8);
        (entry & TRIGGER_LEVEL != 0 && mode.honours_level()).then_some(entry as u8)
    }

    /// Whether `pin`'s line is asserted, honouring its polarity (§3.2.4 bit 13).
    fn asserted(&self, pin: u8) -> bool {
        let level = self.lines & (1 << pin) != 0;
        level != (self.redirection[usize::from(pin)] & POLARITY_LOW != 0)
    }

    /// Builds the message for `pin` and counts it, or counts a reserved-mode drop.
    fn send(&mut self, pin: u8) -> Option<IoApicMessage> {
        let p = usize::from(pin);
        let e = self.redirection[p];
        let delivery = DeliveryMode::decode((e >> DELIVERY_MODE_SHIFT) as u8);
        if let DeliveryMode::Reserved(_) = delivery {
            self.reserved_mode_drops += 1;
            return None;
        }
        let level_triggered = Self::level_vector(e).is_some();
        if level_triggered {
            self.redirection[p] |= REMOTE_IRR;
        }
        self.deliveries[p] += 1;
        Some(IoApicMessage {
            pin,
            vector: e as u8,
            delivery,
            dest_mode: if e & DEST_MODE_LOGICAL != 0 {
                DestinationMode::Logical
            } else {
                DestinationMode::Physical
            },
            dest: (e >> DEST_SHIFT) as u8,
            level_triggered,
        })
    }

    /// A level entry delivers while its line is asserted, it is unmasked and remote IRR is
    /// clear (§3.2.4, "Remote IRR"); then remote IRR is set.
    fn deliver_level(&mut self, pin: u8) -> Option<IoApicMessage> {
        let e = self.redirection[usize::from(pin)];
        let ready = Self::level_vector(e).is_some() && e & (MASKED | REMOTE_IRR) == 0;
        if ready && self.asserted(pin) {
            self.send(pin)
        } else {
            None
        }
    }

    /// Drives input pin `pin` to electrical `level`. An edge entry delivers when the line
    /// becomes asserted (a rising edge for active high, falling for active low) while
    /// unmasked; a level entry delivers as [`IoApic::eoi`] describes. Pins ≥ 24 are ignored.
    pub fn set_line(&mut self, pin: u8, level: bool) -> Option<IoApicMessage> {
        if usize::from(pin) >= PINS {
            return None;
        }
        let was = self.asserted(pin);
        if level {
            self.lines |= 1 << pin;
        } else {
            self.lines &= !(1 << pin);
        }
        let e = self.redirection[usize::from(pin)];
        if Self::level_vector(e).is_some() {
            return self.deliver_level(pin);
        }
        if !was && self.asserted(pin) && e & MASKED == 0 {
            return self.send(pin);
        }
        None
    }

    /// An EOI for `vector` from a local APIC (its EOI broadcast for a level-triggered vector):
    /// clears remote IRR of every level entry with that vector and delivers again those whose
    /// line is still asserted and which are unmasked.
    pub fn eoi(&mut self, vector: u8) -> EoiDeliveries {
        let mut out = EoiDeliveries {
            messages: [None; PINS],
            next: 0,
        };
        for pin in 0..PINS as u8 {
            let e = self.redirection[usize::from(pin)];
            if Self::level_vector(e) == Some(vector) && e & REMOTE_IRR != 0 {
                self.redirection[usize::from(pin)] &= !REMOTE_IRR;
                out.messages[usize::from(pin)] = self.deliver_level(pin);
            }
        }
        out
    }

    /// Bitmap (bit v of word v / 64) of the vectors of level-triggered entries, masked or not,
    /// for the VMX EOI-exit bitmap (SDM Vol. 3C §30.1.4): their EOIs must reach [`IoApic::eoi`].
    pub fn level_vectors(&self) -> [u64; 4] {
        let mut bits = [0u64; 4];
        for v in self
            .redirection
            .iter()
            .filter_map(|&e| Self::level_vector(e))
        {
            bits[usize::from(v / 64)] |= 1 << (v % 64);
        }
        bits
    }

    /// Interrupts sent for `pin` (0 for pin ≥ 24).
    pub fn deliveries(&self, pin: u8) -> u64 {
        self.deliveries.get(usize::from(pin)).copied().unwrap_or(0)
    }

    /// Interrupts not sent because the entry had a reserved delivery mode.
    pub fn reserved_mode_drops(&self) -> u64 {
        self.reserved_mode_drops
    }

    /// Appends the guest-visible state: IOREGSEL, the IOAPIC ID and arbitration ID (§3.1,
    /// §3.2.1, §3.2.3), the 24 redirection entries with their remote IRR bits (§3.2.4) and
    /// the input pins' electrical levels. Skipped: the per-pin delivery and reserved-mode
    /// drop counters (host statistics).
    pub fn save_state(&self, e: &mut Enc) {
        e.u8(self.select).u8(self.id).u8(self.arbitration);
        for &entry in &self.redirection {
            e.u64(entry);
        }
        e.u32(self.lines);
    }

    /// Reads what [`IoApic::save_state`] wrote into this IOAPIC (created with
    /// [`IoApic::new`]; the saved ID replaces the one it was created with, as a guest write
    /// would). `shift` is unused: the IOAPIC keeps no time. On error nothing changes and the
    /// message names the first bad field.
    pub fn load_state(&mut self, d: &mut Dec<'_>, shift: u64) -> Result<(), &'static str> {
        let _ = shift;
        let select = state::u8(d)?;
        let id = state::u8(d)?;
        if id > ID_MAX {
            return Err("IOAPIC ID above 15");
        }
        let arbitration = state::u8(d)?;
        // §3.2.3: the arbitration ID is loaded from the ID; this model never rotates it.
        if arbitration != id {
            return Err("IOAPIC arbitration ID differs from its ID");
        }
        let mut redirection = [0u64; PINS];
        for entry in &mut redirection {
            let e = state::u64(d)?;
            // §3.2.4: bits 55:17 are reserved; delivery status reads 0 (immediate delivery).
            if e & !STORED != 0 {
                return Err("IOAPIC redirection entry with reserved or delivery-status bits set");
            }
            // §3.2.4, Remote IRR: "undefined for edge triggered interrupts"; the model clears
            // it when an entry becomes edge-triggered.
            if e & REMOTE_IRR != 0 && e & TRIGGER_LEVEL == 0 {
                return Err("IOAPIC remote IRR set on an edge-triggered entry");
            }
            *entry = e;
        }
        let lines = state::u32(d)?;
        if lines & !ALL_PINS != 0 {
            return Err("IOAPIC line levels beyond pin 23");
        }
        self.select = select;
        self.id = id;
        self.arbitration = arbitration;
        self.redirection = redirection;
        self.lines = lines;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
