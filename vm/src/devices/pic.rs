//! Intel 8259A programmable interrupt controller, master/slave pair as wired in the PC/AT
//! (Intel 8259A datasheet, order no. 231468): master at 0x20/0x21, slave at 0xA0/0xA1 with
//! its INT output on master IR2, plus the edge/level control registers (ELCR) at
//! 0x4D0/0x4D1 found on PIIX-class chipsets.
//!
//! Modelled: the ICW1-ICW4 initialisation sequence (single/cascade, ICW4 optional, vector base
//! from ICW2, auto-EOI and special-fully-nested from ICW4), OCW1 masks, OCW2 non-specific,
//! specific and rotating EOIs and set-priority, OCW3 IRR/ISR read select, poll and special
//! mask mode, edge-triggered requests (level-triggered where ICW1.LTIM or the ELCR says so),
//! and the spurious IRQ7/IRQ15 that an acknowledge without a request yields.
//!
//! The hypervisor drives it with [`Pic::raise`]/[`Pic::lower`] (or [`IrqSink::set_irq`]) and
//! injects with [`Pic::pending_vector`] and [`Pic::acknowledge`] (the INTA cycle). A chip that
//! has not completed its ICW sequence delivers nothing, so a guest that never programs the
//! PIC never gets interrupt vectors it did not choose.

use super::state;
use crate::io::IrqSink;
use crate::snapshot::codec::{Dec, Enc};

/// Master command port (ICW1, OCW2, OCW3; reads IRR/ISR/poll).
pub const MASTER_CMD: u16 = 0x20;
/// Master data port (ICW2-4, OCW1 = IMR).
pub const MASTER_DATA: u16 = 0x21;
/// Slave command port.
pub const SLAVE_CMD: u16 = 0xa0;
/// Slave data port.
pub const SLAVE_DATA: u16 = 0xa1;
/// ELCR for IRQ0-7.
pub const ELCR_MASTER: u16 = 0x4d0;
/// ELCR for IRQ8-15.
pub const ELCR_SLAVE: u16 = 0x4d1;
/// The master input the slave is cascaded on.
pub const CASCADE_IRQ: u8 = 2;

/// ICW2 in 8086 mode: bits 7:3 (T7-T3) are the vector base, bits 2:0 the interrupt level
/// (8259A datasheet, "Initialization Command Word 2").
const VECTOR_BASE_MASK: u8 = 0xf8;
/// Interrupt inputs IR0-IR7 of one chip, and so the priority levels OCW2 rotates through.
const LEVELS: u8 = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum InitState {
    /// Initialised (or never initialised, see `initialized`): data port writes are OCW1.
    #[default]
    Ready = 0,
    ExpectIcw2 = 1,
    ExpectIcw3 = 2,
    ExpectIcw4 = 3,
}

impl InitState {
    fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0 => Self::Ready,
            1 => Self::ExpectIcw2,
            2 => Self::ExpectIcw3,
            3 => Self::ExpectIcw4,
            _ => return None,
        })
    }
}

// The mode bits of a chip as a snapshot stores them (one bit per flag of `Chip`).
const F_INITIALIZED: u16 = 1 << 0;
const F_ICW4_NEEDED: u16 = 1 << 1;
const F_SINGLE: u16 = 1 << 2;
const F_LTIM: u16 = 1 << 3;
const F_AUTO_EOI: u16 = 1 << 4;
const F_ROTATE_ON_AEOI: u16 = 1 << 5;
const F_SPECIAL_FULLY_NESTED: u16 = 1 << 6;
const F_READ_ISR: u16 = 1 << 7;
const F_POLL: u16 = 1 << 8;
const F_SPECIAL_MASK: u16 = 1 << 9;
const F_ALL: u16 = (1 << 10) - 1;

/// The refusals of one chip's snapshot state, naming the chip.
struct ChipErrors {
    vector_base: &'static str,
    init: &'static str,
    flags: &'static str,
    priority: &'static str,
    elcr: &'static str,
    initialised_mid_sequence: &'static str,
    icw3_single: &'static str,
    icw4_unannounced: &'static str,
}

macro_rules! chip_errors {
    ($chip:literal) => {
        ChipErrors {
            vector_base: concat!("PIC ", $chip, " vector base (ICW2) not a multiple of 8"),
            init: concat!("PIC ", $chip, " initialisation step above ICW4"),
            flags: concat!("PIC ", $chip, " mode flags with undefined bits set"),
            priority: concat!("PIC ", $chip, " lowest priority (OCW2 L2-L0) above 7"),
            elcr: concat!(
                "PIC ",
                $chip,
                " ELCR makes an edge-only input level-triggered"
            ),
            initialised_mid_sequence: concat!(
                "PIC ",
                $chip,
                " initialised in the middle of its ICW sequence"
            ),
            icw3_single: concat!("PIC ", $chip, " expects ICW3 in single mode"),
            icw4_unannounced: concat!("PIC ", $chip, " expects an ICW4 its ICW1 did not announce"),
        }
    };
}

const MASTER_ERRORS: ChipErrors = chip_errors!("master");
const SLAVE_ERRORS: ChipErrors = chip_errors!("slave");

/// One 8259A.
#[derive(Debug, Clone, Default)]
struct Chip {
    irr: u8,
    isr: u8,
    imr: u8,
    /// Current input line levels (for edge detection).
    lines: u8,
    vector_base: u8,
    init: InitState,
    initialized: bool,
    icw4_needed: bool,
    single: bool,
    /// ICW1.LTIM: all inputs level-triggered.
    ltim: bool,
    auto_eoi: bool,
    rotate_on_aeoi: bool,
    special_fully_nested: bool,
    /// Interrupt that currently has the highest priority is `priority_add` (IR0 after reset).
    priority_add: u8,
    read_isr: bool,
    poll: bool,
    special_mask: bool,
    elcr: u8,
    elcr_mask: u8,
}

impl Chip {
    fn new(elcr_mask: u8) -> Self {
        Self {
            elcr_mask,
            ..Self::default()
        }
    }

    fn level_triggered(&self, mask: u8) -> bool {
        self.ltim || self.elcr & mask != 0
    }

    fn set_irq(&mut self, irq: u8, level: bool) {
        let mask = 1u8 << (irq & 7);
        if self.level_triggered(mask) {
            if level {
                self.irr |= mask;
            } else {
                self.irr &= !mask;
            }
        } else if level && self.lines & mask == 0 {
            // Rising edge: latch the request.
            self.irr |= mask;
        }
        if level {
            self.lines |= mask;
        } else {
            self.lines &= !mask;
        }
    }

    /// Priority (0 = highest) of the highest-priority bit in `mask`.
    fn priority(&self, mask: u8) -> Option<u8> {
        (0..8u8).find(|p| mask & (1 << ((p + self.priority_add) & 7)) != 0)
    }

    /// The request this chip would present on INT now (datasheet "Interrupt sequence":
    /// highest-priority unmasked IRR bit above every in-service level).
    fn requested(&self, is_master: bool) -> Option<u8> {
        if !self.initialized {
            return None;
        }
        let p = self.priority(self.irr & !self.imr)?;
        let mut in_service = self.isr;
        if self.special_mask {
            in_service &= !self.imr;
        }
        if self.special_fully_nested && is_master {
            in_service &= !(1 << CASCADE_IRQ);
        }
        let current = self.priority(in_service).unwrap_or(8);
        (p < current).then_some((p + self.priority_add) & 7)
    }

    /// INTA for `irq`: IRR→ISR (or auto-EOI), edge requests consumed.
    fn intack(&mut self, irq: u8) {
        let mask = 1u8 << (irq & 7);
        if self.auto_eoi {
            if self.rotate_on_aeoi {
                self.priority_add = (irq + 1) & 7;
            }
        } else {
            self.isr |= mask;
        }
        if !self.level_triggered(mask) {
            self.irr &= !mask;
        }
    }

    fn reset_for_icw1(&mut self, icw1: u8) {
        // ICW1 clears IMR and ISR, resets priorities, selects IRR for reads and clears special
        // mask mode (datasheet "Initialization Command Words").
        let elcr = self.elcr;
        let elcr_mask = self.elcr_mask;
        let lines = self.lines;
        *self = Self {
            elcr,
            elcr_mask,
            lines,
            ..Self::default()
        };
        self.init = InitState::ExpectIcw2;
        self.icw4_needed = icw1 & 0x01 != 0;
        self.single = icw1 & 0x02 != 0;
        self.ltim = icw1 & 0x08 != 0;
        // Level inputs that are still high re-request (edge inputs need a new edge).
        self.irr = if self.ltim { lines } else { lines & self.elcr };
    }

    fn write_cmd(&mut self, value: u8) {
        if value & 0x10 != 0 {
            self.reset_for_icw1(value);
        } else if value & 0x08 != 0 {
            // OCW3.
            if value & 0x04 != 0 {
                self.poll = true;
            }
            if value & 0x02 != 0 {
                self.read_isr = value & 0x01 != 0;
            }
            if value & 0x40 != 0 {
                self.special_mask = value & 0x20 != 0;
            }
        } else {
            // OCW2: R, SL, EOI in bits 7:5, level in 2:0.
            let level = value & 7;
            match value >> 5 {
                0b000 => self.rotate_on_aeoi = false,
                0b100 => self.rotate_on_aeoi = true,
                cmd @ (0b001 | 0b101) => {
                    if let Some(p) = self.priority(self.isr) {
                        let irq = (p + self.priority_add) & 7;
                        self.isr &= !(1 << irq);
                        if cmd == 0b101 {
                            self.priority_add = (irq + 1) & 7;
                        }
                    }
                }
                0b011 => self.isr &= !(1 << level),
                0b111 => {
                    self.isr &= !(1 << level);
                    self.priority_add = (level + 1) & 7;
                }
                0b110 => self.priority_add = (level + 1) & 7,
                _ => {} // 0b010: no operation.
            }
        }
    }

    fn write_data(&mut self, value: u8) {
        match self.init {
            InitState::Ready => self.imr = value,
            InitState::ExpectIcw2 => {
                self.vector_base = value & VECTOR_BASE_MASK;
                self.init = if !self.single {
                    InitState::ExpectIcw3
                } else if self.icw4_needed {
                    InitState::ExpectIcw4
                } else {
                    self.finish_init()
                };
            }
            InitState::ExpectIcw3 => {
                // Master: which inputs have slaves; slave: its cascade identity. The PC wiring
                // is fixed, so the value is not needed.
                self.init = if self.icw4_needed {
                    InitState::ExpectIcw4
                } else {
                    self.finish_init()
                };
            }
            InitState::ExpectIcw4 => {
                self.auto_eoi = value & 0x02 != 0;
                self.special_fully_nested = value & 0x10 != 0;
                self.init = self.finish_init();
            }
        }
    }

    fn finish_init(&mut self) -> InitState {
        self.initialized = true;
        InitState::Ready
    }

    fn read_cmd(&self) -> u8 {
        if self.read_isr {
            self.isr
        } else {
            self.irr
        }
    }

    fn flags(&self) -> u16 {
        [
            (self.initialized, F_INITIALIZED),
            (self.icw4_needed, F_ICW4_NEEDED),
            (self.single, F_SINGLE),
            (self.ltim, F_LTIM),
            (self.auto_eoi, F_AUTO_EOI),
            (self.rotate_on_aeoi, F_ROTATE_ON_AEOI),
            (self.special_fully_nested, F_SPECIAL_FULLY_NESTED),
            (self.read_isr, F_READ_ISR),
            (self.poll, F_POLL),
            (self.special_mask, F_SPECIAL_MASK),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .fold(0, |acc, (_, bit)| acc | bit)
    }

    /// IRR, ISR, IMR, input levels, ICW2 vector base, ICW sequence step, the mode flags
    /// (ICW1/ICW4/OCW2/OCW3 state), OCW2 priority rotation and ELCR. The ELCR's mask of
    /// level-capable inputs is wiring, not state.
    fn save_state(&self, e: &mut Enc) {
        e.u8(self.irr)
            .u8(self.isr)
            .u8(self.imr)
            .u8(self.lines)
            .u8(self.vector_base)
            .u8(self.init as u8)
            .u16(self.flags())
            .u8(self.priority_add)
            .u8(self.elcr);
    }

    /// This chip (for its wiring) with the fields of [`Chip::save_state`] from `d`.
    fn load_state(&self, d: &mut Dec<'_>, errors: &ChipErrors) -> Result<Self, &'static str> {
        let irr = state::u8(d)?;
        let isr = state::u8(d)?;
        let imr = state::u8(d)?;
        let lines = state::u8(d)?;
        let vector_base = state::bits8(d, VECTOR_BASE_MASK, errors.vector_base)?;
        let init = InitState::from_u8(state::u8(d)?).ok_or(errors.init)?;
        let flags = state::bits16(d, F_ALL, errors.flags)?;
        // OCW2 L2-L0 name one of the eight levels (8259A datasheet, "Operation Command Word
        // 2"); `priority` adds a level to it.
        let priority_add = state::u8(d)?;
        if priority_add >= LEVELS {
            return Err(errors.priority);
        }
        // Only the inputs the chipset wires as level-capable have ELCR bits.
        let elcr = state::bits8(d, self.elcr_mask, errors.elcr)?;
        let on = |bit: u16| flags & bit != 0;
        let chip = Self {
            irr,
            isr,
            imr,
            lines,
            vector_base,
            init,
            initialized: on(F_INITIALIZED),
            icw4_needed: on(F_ICW4_NEEDED),
            single: on(F_SINGLE),
            ltim: on(F_LTIM),
            auto_eoi: on(F_AUTO_EOI),
            rotate_on_aeoi: on(F_ROTATE_ON_AEOI),
            special_fully_nested: on(F_SPECIAL_FULLY_NESTED),
            priority_add,
            read_isr: on(F_READ_ISR),
            poll: on(F_POLL),
            special_mask: on(F_SPECIAL_MASK),
            elcr,
            elcr_mask: self.elcr_mask,
        };
        // The ICW sequence (8259A datasheet, "Initialization Command Words", flow chart):
        // ICW1 starts it uninitialised; ICW3 follows only in cascade mode (SNGL = 0), ICW4
        // only when ICW1.IC4 asked for it.
        match chip.init {
            InitState::Ready => {}
            _ if chip.initialized => return Err(errors.initialised_mid_sequence),
            InitState::ExpectIcw3 if chip.single => return Err(errors.icw3_single),
            InitState::ExpectIcw4 if !chip.icw4_needed => return Err(errors.icw4_unannounced),
            InitState::ExpectIcw2 | InitState::ExpectIcw3 | InitState::ExpectIcw4 => {}
        }
        Ok(chip)
    }
}

/// The master/slave 8259A pair.
#[derive(Debug, Clone)]
pub struct Pic {
    master: Chip,
    slave: Chip,
    spurious: u64,
}

impl Default for Pic {
    fn default() -> Self {
        Self::new()
    }
}

impl Pic {
    /// Power-on state: both chips uninitialised (nothing is delivered until ICW1-ICW4).
    pub fn new() -> Self {
        Self {
            // IRQ0-2 (timer, keyboard, cascade) and IRQ8/IRQ13 are always edge-triggered.
            master: Chip::new(0xf8),
            slave: Chip::new(0xde),
            spurious: 0,
        }
    }

    fn cascaded(&self) -> bool {
        !self.master.single
    }

    /// Propagates the slave's INT output to master IR2.
    fn update_cascade(&mut self) {
        if self.cascaded() {
            let level = self.slave.requested(false).is_some();
            self.master.set_irq(CASCADE_IRQ, level);
        }
    }

    /// Drives ISA line `irq` (0-15) to `level`. IRQ2 is the cascade input, so a request on
    /// line 2 is redirected to IRQ9 as on the PC/AT bus; lines above 15 are ignored.
    pub fn set_line(&mut self, irq: u8, level: bool) {
        match irq {
            CASCADE_IRQ => self.slave.set_irq(1, level),
            0..=7 => self.master.set_irq(irq, level),
            8..=15 => self.slave.set_irq(irq - 8, level),
            _ => return,
        }
        self.update_cascade();
    }

    /// Raises ISA line `irq` (a rising edge latches a request on edge-triggered inputs).
    pub fn raise(&mut self, irq: u8) {
        self.set_line(irq, true);
    }

    /// Lowers ISA line `irq`.
    pub fn lower(&mut self, irq: u8) {
        self.set_line(irq, false);
    }

    /// One rising edge (lower, then raise) on line `irq`, for edge-triggered sources.
    pub fn pulse(&mut self, irq: u8) {
        self.set_line(irq, false);
        self.set_line(irq, true);
    }

    /// The vector the next INTA would return, if the master asserts INT: the highest-priority
    /// unmasked request not blocked by an in-service interrupt of equal or higher priority.
    pub fn pending_vector(&self) -> Option<u8> {
        let irq = self.master.requested(true)?;
        if irq == CASCADE_IRQ && self.cascaded() {
            Some(match self.slave.requested(false) {
                Some(s) => self.slave.vector_base | s,
                None => self.slave.vector_base | 7,
            })
        } else {
            Some(self.master.vector_base | irq)
        }
    }

    /// The INTA cycle: moves the request into service (or auto-EOIs it) and returns its
    /// vector; `None` if INT is not asserted. If the slave withdrew its request after the
    /// master latched IR2, the slave answers with its IR7 vector (spurious IRQ15) without
    /// setting its ISR, as the datasheet describes for a withdrawn request.
    pub fn acknowledge(&mut self) -> Option<u8> {
        let irq = self.master.requested(true)?;
        self.master.intack(irq);
        let vector = if irq == CASCADE_IRQ && self.cascaded() {
            match self.slave.requested(false) {
                Some(s) => {
                    self.slave.intack(s);
                    self.slave.vector_base | s
                }
                None => {
                    self.spurious += 1;
                    self.slave.vector_base | 7
                }
            }
        } else {
            self.master.vector_base | irq
        };
        self.update_cascade();
        Some(vector)
    }

    /// Spurious acknowledges so far.
    pub fn spurious_count(&self) -> u64 {
        self.spurious
    }

    /// Whether `port` belongs to the PIC (including the ELCRs).
    pub const fn claims(port: u16) -> bool {
        matches!(
            port,
            MASTER_CMD | MASTER_DATA | SLAVE_CMD | SLAVE_DATA | ELCR_MASTER | ELCR_SLAVE
        )
    }

    /// Poll command result (OCW3 P=1): 0x80 | level if a request is pending (and it is
    /// acknowledged, as an INTA would), else 0.
    fn poll_read(&mut self, slave: bool) -> u8 {
        if slave {
            self.slave.poll = false;
            match self.slave.requested(false) {
                Some(irq) => {
                    self.slave.intack(irq);
                    // The master's IR2 request is served by this poll too.
                    if self.cascaded() {
                        self.master.irr &= !(1 << CASCADE_IRQ);
                    }
                    self.update_cascade();
                    0x80 | irq
                }
                None => 0,
            }
        } else {
            self.master.poll = false;
            match self.master.requested(true) {
                Some(irq) => {
                    self.master.intack(irq);
                    self.update_cascade();
                    0x80 | irq
                }
                None => 0,
            }
        }
    }

    /// Byte read from one of the PIC ports (unknown ports read 0xff).
    pub fn read_port(&mut self, port: u16) -> u8 {
        match port {
            MASTER_CMD if self.master.poll => self.poll_read(false),
            SLAVE_CMD if self.slave.poll => self.poll_read(true),
            MASTER_CMD => self.master.read_cmd(),
            SLAVE_CMD => self.slave.read_cmd(),
            MASTER_DATA if self.master.poll => self.poll_read(false),
            SLAVE_DATA if self.slave.poll => self.poll_read(true),
            MASTER_DATA => self.master.imr,
            SLAVE_DATA => self.slave.imr,
            ELCR_MASTER => self.master.elcr,
            ELCR_SLAVE => self.slave.elcr,
            _ => 0xff,
        }
    }

    /// Byte write to one of the PIC ports (unknown ports are ignored).
    pub fn write_port(&mut self, port: u16, value: u8) {
        match port {
            MASTER_CMD => self.master.write_cmd(value),
            SLAVE_CMD => self.slave.write_cmd(value),
            MASTER_DATA => self.master.write_data(value),
            SLAVE_DATA => self.slave.write_data(value),
            ELCR_MASTER => self.master.elcr = value & self.master.elcr_mask,
            ELCR_SLAVE => self.slave.elcr = value & self.slave.elcr_mask,
            _ => return,
        }
        self.update_cascade();
    }

    /// IRR of the master (bits 0-7) and slave (bits 8-15).
    pub fn irr(&self) -> u16 {
        u16::from(self.master.irr) | u16::from(self.slave.irr) << 8
    }

    /// ISR of the master (bits 0-7) and slave (bits 8-15).
    pub fn isr(&self) -> u16 {
        u16::from(self.master.isr) | u16::from(self.slave.isr) << 8
    }

    /// IMR of the master (bits 0-7) and slave (bits 8-15).
    pub fn imr(&self) -> u16 {
        u16::from(self.master.imr) | u16::from(self.slave.imr) << 8
    }

    /// Whether ISA line `irq` (0-15) can reach the CPU: unmasked at its chip and, for a slave
    /// line, the cascade line IRQ2 unmasked at the master (8259A datasheet, OCW1 and
    /// cascade mode).
    pub fn line_unmasked(&self, irq: u8) -> bool {
        match irq {
            0..=7 => self.master.imr & (1 << irq) == 0,
            8..=15 => self.master.imr & (1 << 2) == 0 && self.slave.imr & (1 << (irq - 8)) == 0,
            _ => false,
        }
    }

    /// Vector bases programmed by ICW2 (master, slave).
    pub fn vector_bases(&self) -> (u8, u8) {
        (self.master.vector_base, self.slave.vector_base)
    }

    /// Appends the pair's guest-visible state, master then slave: IRR, ISR, IMR, input line
    /// levels, ICW2 vector base, ICW sequence progress, the ICW1/ICW4/OCW2/OCW3 mode flags
    /// (single/cascade, LTIM, IC4, AEOI, rotate-on-AEOI, SFNM, read-ISR, poll, special mask),
    /// the OCW2 priority rotation and the ELCR (8259A datasheet, "Programming the 8259A").
    /// Skipped: the ELCRs' masks of level-capable inputs (chipset wiring) and the spurious
    /// acknowledge counter (a host statistic).
    pub fn save_state(&self, e: &mut Enc) {
        self.master.save_state(e);
        self.slave.save_state(e);
    }

    /// Reads what [`Pic::save_state`] wrote into this pair (freshly created with
    /// [`Pic::new`]). `shift` is unused: the 8259A keeps no time. On error nothing changes
    /// and the message names the first bad field.
    pub fn load_state(&mut self, d: &mut Dec<'_>, shift: u64) -> Result<(), &'static str> {
        let _ = shift;
        let master = self.master.load_state(d, &MASTER_ERRORS)?;
        let slave = self.slave.load_state(d, &SLAVE_ERRORS)?;
        self.master = master;
        self.slave = slave;
        Ok(())
    }
}

impl IrqSink for Pic {
    fn set_irq(&mut self, irq: u8, level: bool) {
        self.set_line(irq, level);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `init_8259A()` of Linux x86_64: vectors 0x30/0x38, cascade on IR2, 8086 mode.
    fn linux_pic(auto_eoi: bool) -> Pic {
        let mut p = Pic::new();
        p.write_port(MASTER_DATA, 0xff);
        p.write_port(SLAVE_DATA, 0xff);
        p.write_port(MASTER_CMD, 0x11);
        p.write_port(MASTER_DATA, 0x30);
        p.write_port(MASTER_DATA, 0x04);
        p.write_port(MASTER_DATA, if auto_eoi { 0x03 } else { 0x01 });
        p.write_port(SLAVE_CMD, 0x11);
        p.write_port(SLAVE_DATA, 0x38);
        p.write_port(SLAVE_DATA, 0x02);
        p.write_port(SLAVE_DATA, 0x01);
        // Masks restored: all masked except the cascade.
        p.write_port(MASTER_DATA, 0xfb);
        p.write_port(SLAVE_DATA, 0xff);
        p
    }

    #[test]
    fn uninitialised_pic_delivers_nothing() {
        let mut p = Pic::new();
        p.raise(0);
        assert_eq!(p.pending_vector(), None);
        assert_eq!(p.acknowledge(), None);
    }

    #[test]
    fn linux_probe_reads_back_imr() {
        let mut p = Pic::new();
        p.write_port(SLAVE_DATA, 0xff);
        p.write_port(MASTER_DATA, 0xfb);
        assert_eq!(p.read_port(MASTER_DATA), 0xfb);
    }

    #[test]
    fn init_mask_ack_eoi() {
        let mut p = linux_pic(false);
        assert_eq!(p.vector_bases(), (0x30, 0x38));
        p.raise(0);
        assert_eq!(p.pending_vector(), None, "IRQ0 is masked");
        assert_eq!(p.irr() & 1, 1);
        p.write_port(MASTER_DATA, 0xfa); // unmask IRQ0
        assert_eq!(p.pending_vector(), Some(0x30));
        assert_eq!(p.acknowledge(), Some(0x30));
        assert_eq!(p.isr(), 1);
        assert_eq!(p.irr() & 1, 0);
        // Edge-triggered: the line is still high, no new request without a new edge.
        assert_eq!(p.pending_vector(), None);
        p.lower(0);
        p.raise(0);
        assert_eq!(p.pending_vector(), None, "in service blocks the same level");
        // OCW3 read ISR, as i8259A_irq_real() does.
        p.write_port(MASTER_CMD, 0x0b);
        assert_eq!(p.read_port(MASTER_CMD), 0x01);
        p.write_port(MASTER_CMD, 0x0a);
        assert_eq!(p.read_port(MASTER_CMD), 0x01, "IRR has the new edge");
        // Specific EOI as mask_and_ack_8259A() sends it.
        p.write_port(MASTER_CMD, 0x60);
        assert_eq!(p.isr(), 0);
        assert_eq!(p.acknowledge(), Some(0x30));
        p.write_port(MASTER_CMD, 0x20); // non-specific EOI
        assert_eq!(p.isr(), 0);
        assert_eq!(p.acknowledge(), None);
    }

    #[test]
    fn priority_and_nesting() {
        let mut p = linux_pic(false);
        p.write_port(MASTER_DATA, 0x00);
        p.raise(3);
        assert_eq!(p.acknowledge(), Some(0x33));
        p.raise(4);
        assert_eq!(
            p.pending_vector(),
            None,
            "IRQ4 is lower than in-service IRQ3"
        );
        p.raise(1);
        assert_eq!(p.pending_vector(), Some(0x31), "IRQ1 preempts IRQ3");
        assert_eq!(p.acknowledge(), Some(0x31));
        p.write_port(MASTER_CMD, 0x20); // EOIs IRQ1 (highest in service)
        assert_eq!(p.isr(), 1 << 3);
        p.write_port(MASTER_CMD, 0x20); // EOIs IRQ3
        assert_eq!(p.acknowledge(), Some(0x34));
        // Rotation: set priority so IRQ5 is lowest → IRQ6 highest.
        p.write_port(MASTER_CMD, 0x20);
        p.write_port(MASTER_CMD, 0xc5);
        p.raise(0);
        p.raise(6);
        assert_eq!(p.acknowledge(), Some(0x36));
    }

    #[test]
    fn cascade_through_irq2() {
        let mut p = linux_pic(false);
        p.raise(12);
        assert_eq!(p.pending_vector(), None, "slave input masked");
        p.write_port(SLAVE_DATA, 0xef); // unmask IRQ12
        assert_eq!(p.pending_vector(), Some(0x3c));
        p.write_port(MASTER_DATA, 0xff); // mask the cascade on the master
        assert_eq!(p.pending_vector(), None);
        p.write_port(MASTER_DATA, 0xfb);
        assert_eq!(p.acknowledge(), Some(0x3c));
        assert_eq!(p.isr(), (1 << 12) | (1 << 2));
        // Linux EOIs the slave then the master's cascade input.
        p.write_port(SLAVE_CMD, 0x64);
        p.write_port(MASTER_CMD, 0x62);
        assert_eq!(p.isr(), 0);
        assert_eq!(p.pending_vector(), None);
        // Line 2 is redirected to IRQ9.
        p.write_port(SLAVE_DATA, 0xfd);
        p.raise(2);
        assert_eq!(p.acknowledge(), Some(0x39));
    }

    #[test]
    fn spurious_irq15_when_slave_withdraws() {
        let mut p = linux_pic(false);
        p.write_port(SLAVE_DATA, 0x00);
        p.raise(10);
        // Master latched IR2 (edge); now the slave's request is masked away.
        p.write_port(SLAVE_DATA, 0xff);
        assert_eq!(p.irr() & (1 << 2), 1 << 2);
        assert_eq!(p.acknowledge(), Some(0x3f));
        assert_eq!(p.isr() & 0xff00, 0, "spurious IRQ15 does not set slave ISR");
        assert_eq!(p.spurious_count(), 1);
    }

    #[test]
    fn auto_eoi_and_poll_and_elcr() {
        let mut p = linux_pic(true);
        p.write_port(MASTER_DATA, 0x00);
        p.raise(1);
        assert_eq!(p.acknowledge(), Some(0x31));
        assert_eq!(p.isr(), 0);
        p.lower(1);
        p.raise(5);
        p.write_port(MASTER_CMD, 0x0c); // poll
        assert_eq!(p.read_port(MASTER_CMD), 0x85);
        assert_eq!(
            p.read_port(MASTER_CMD),
            0x00,
            "poll is one-shot; IRR now empty"
        );
        // ELCR: level-triggered IRQ5 follows the line.
        p.write_port(ELCR_MASTER, 0xff);
        assert_eq!(p.read_port(ELCR_MASTER), 0xf8, "IRQ0-2 cannot be level");
        p.write_port(ELCR_SLAVE, 0xff);
        assert_eq!(p.read_port(ELCR_SLAVE), 0xde);
        p.raise(5);
        assert_eq!(p.pending_vector(), Some(0x35));
        p.lower(5);
        assert_eq!(p.pending_vector(), None);
    }

    #[test]
    fn garbage_never_panics() {
        let mut p = Pic::new();
        for v in 0..=255u8 {
            for port in [
                MASTER_CMD,
                MASTER_DATA,
                SLAVE_CMD,
                SLAVE_DATA,
                0x4d0,
                0x4d1,
                0x99,
            ] {
                p.write_port(port, v);
                let _ = p.read_port(port);
                p.set_irq(v, v & 1 == 0);
                let _ = p.acknowledge();
            }
        }
    }
}
