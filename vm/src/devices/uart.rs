//! National Semiconductor PC16550D UART (16550A family; PC16550D datasheet, "Registers" and
//! "FIFO Interrupt Mode Operation"), as COM1 at 0x3F8-0x3FF on IRQ 4.
//!
//! The transmitter is infinitely fast: LSR.THRE and LSR.TEMT are always set, so a guest
//! never waits on the baud rate, and every THR write goes straight to the console sink.
//! Interrupts follow the 16550 rules Linux's 8250 driver relies on:
//!
//! * THR-empty (IIR = 0x02, priority 3): becomes pending when IER.ETBEI goes 0→1 (THR is
//!   empty) and after every THR write (the byte is "sent" at once); cleared by reading IIR
//!   while it is the reported source, by writing THR, or by clearing ETBEI.
//! * Received data available (IIR = 0x04, priority 2): while the receive queue is non-empty
//!   and IER.ERBFI is set (trigger level 1, no character-timeout distinction).
//! * Receiver line status (IIR = 0x06, priority 1): overrun in loopback mode, cleared by
//!   reading LSR.
//! * Modem status (IIR = 0x00, priority 4): delta bits in MSR, cleared by reading MSR.
//!
//! The INTR output reaches the PIC through MCR.OUT2, as on the PC (the 8250 driver sets OUT2
//! when it uses the IRQ), and is inactive in loopback mode, where the modem outputs are
//! disconnected. In loopback, THR bytes go to the receiver and MSR[7:4] reflect
//! MCR OUT2/OUT1/DTR/RTS as DCD/RI/DSR/CTS (what Linux's autoconfig probe checks); outside
//! loopback the modem lines read DCD, DSR and CTS asserted.

use alloc::collections::VecDeque;

use super::state;
use crate::io::IoContext;
use crate::snapshot::codec::{Dec, Enc};

/// Base port of COM1.
pub const COM1_BASE: u16 = 0x3f8;
/// IRQ of COM1.
pub const COM1_IRQ: u8 = 4;
/// Bytes the receive queue holds (the hypervisor feeds it; the guest drains it).
pub const RX_CAPACITY: usize = 256;

const IER_ERBFI: u8 = 0x01;
const IER_ETBEI: u8 = 0x02;
const IER_ELSI: u8 = 0x04;
const IER_EDSSI: u8 = 0x08;
/// IER bits 3:0; bits 7:4 are always 0 (datasheet, "Interrupt Enable Register").
const IER_ALL: u8 = IER_ERBFI | IER_ETBEI | IER_ELSI | IER_EDSSI;

const IIR_NONE: u8 = 0x01;
const IIR_MSR: u8 = 0x00;
const IIR_THRE: u8 = 0x02;
const IIR_RDA: u8 = 0x04;
const IIR_RLS: u8 = 0x06;
const IIR_FIFO: u8 = 0xc0;

const LCR_DLAB: u8 = 0x80;
const MCR_DTR: u8 = 0x01;
const MCR_RTS: u8 = 0x02;
const MCR_OUT1: u8 = 0x04;
const MCR_OUT2: u8 = 0x08;
const MCR_LOOP: u8 = 0x10;
/// MCR bits 4:0; bits 7:5 are always 0 (datasheet, "Modem Control Register").
const MCR_ALL: u8 = MCR_DTR | MCR_RTS | MCR_OUT1 | MCR_OUT2 | MCR_LOOP;

const LSR_DR: u8 = 0x01;
const LSR_OE: u8 = 0x02;
const LSR_THRE: u8 = 0x20;
const LSR_TEMT: u8 = 0x40;

const MSR_CTS: u8 = 0x10;
const MSR_DSR: u8 = 0x20;
const MSR_RI: u8 = 0x40;
const MSR_DCD: u8 = 0x80;
/// MSR bits 3:0: DCTS, DDSR, TERI, DDCD (datasheet, "Modem Status Register").
const MSR_DELTAS: u8 = 0x0f;

/// One 16550A.
#[derive(Debug, Clone)]
pub struct Uart {
    base: u16,
    irq: u8,
    ier: u8,
    lcr: u8,
    mcr: u8,
    scr: u8,
    dll: u8,
    dlm: u8,
    fifo: bool,
    thre_pending: bool,
    /// Line-status error bits (OE) awaiting an LSR read.
    lsr_errors: u8,
    /// MSR delta bits 3:0 awaiting an MSR read.
    msr_delta: u8,
    rx: VecDeque<u8>,
    tx_bytes: u64,
    /// The level last driven on the IRQ line: the PIC is told only of changes (its priority
    /// resolution is the costly part of a console byte).
    line: bool,
}

impl Uart {
    /// A UART at `base`..=`base + 7` driving interrupt line `irq`, in its reset state
    /// (datasheet Table IV: IER, IIR = 1, LCR, MCR = 0; divisor 1 = 115200 baud).
    pub fn new(base: u16, irq: u8) -> Self {
        Self {
            base,
            irq,
            ier: 0,
            lcr: 0x03,
            mcr: 0,
            scr: 0,
            dll: 1,
            dlm: 0,
            fifo: false,
            thre_pending: false,
            lsr_errors: 0,
            msr_delta: 0,
            rx: VecDeque::with_capacity(RX_CAPACITY),
            tx_bytes: 0,
            line: false,
        }
    }

    /// COM1: 0x3F8, IRQ 4.
    pub fn com1() -> Self {
        Self::new(COM1_BASE, COM1_IRQ)
    }

    /// First port.
    pub fn base(&self) -> u16 {
        self.base
    }

    /// Whether `port` is one of this UART's eight registers.
    pub fn claims(&self, port: u16) -> bool {
        port.wrapping_sub(self.base) < 8
    }

    /// Bytes the guest has transmitted.
    pub fn tx_bytes(&self) -> u64 {
        self.tx_bytes
    }

    /// The divisor latch (baud = 115200 / divisor).
    pub fn divisor(&self) -> u16 {
        u16::from_le_bytes([self.dll, self.dlm])
    }

    /// Room left in the receive queue.
    pub fn rx_space(&self) -> usize {
        RX_CAPACITY - self.rx.len()
    }

    fn loopback(&self) -> bool {
        self.mcr & MCR_LOOP != 0
    }

    fn modem_status(&self) -> u8 {
        if self.loopback() {
            let m = self.mcr;
            (if m & MCR_RTS != 0 { MSR_CTS } else { 0 })
                | (if m & MCR_DTR != 0 { MSR_DSR } else { 0 })
                | (if m & MCR_OUT1 != 0 { MSR_RI } else { 0 })
                | (if m & MCR_OUT2 != 0 { MSR_DCD } else { 0 })
        } else {
            MSR_DCD | MSR_DSR | MSR_CTS
        }
    }

    /// The highest-priority pending interrupt source (datasheet Table IV, IIR).
    fn source(&self) -> Option<u8> {
        if self.ier & IER_ELSI != 0 && self.lsr_errors != 0 {
            Some(IIR_RLS)
        } else if self.ier & IER_ERBFI != 0 && !self.rx.is_empty() {
            Some(IIR_RDA)
        } else if self.ier & IER_ETBEI != 0 && self.thre_pending {
            Some(IIR_THRE)
        } else if self.ier & IER_EDSSI != 0 && self.msr_delta != 0 {
            Some(IIR_MSR)
        } else {
            None
        }
    }

    /// Level of the IRQ line as the PIC sees it (INTR gated by OUT2, off in loopback).
    pub fn irq_level(&self) -> bool {
        self.source().is_some() && self.mcr & MCR_OUT2 != 0 && !self.loopback()
    }

    fn update_irq(&mut self, ctx: &mut IoContext<'_>) {
        let level = self.irq_level();
        if level != self.line {
            self.line = level;
            ctx.set_irq(self.irq, level);
        }
    }

    fn push_rx(&mut self, byte: u8) -> bool {
        if self.rx.len() < RX_CAPACITY {
            self.rx.push_back(byte);
            true
        } else {
            false
        }
    }

    /// Feeds received bytes (console input); returns how many fit in the receive queue.
    pub fn receive(&mut self, bytes: &[u8], ctx: &mut IoContext<'_>) -> usize {
        let n = bytes.iter().take_while(|&&b| self.push_rx(b)).count();
        self.update_irq(ctx);
        n
    }

    fn transmit(&mut self, byte: u8, ctx: &mut IoContext<'_>) {
        if self.loopback() {
            if !self.push_rx(byte) {
                self.lsr_errors |= LSR_OE;
            }
        } else {
            self.tx_bytes += 1;
            ctx.console_write(&[byte]);
        }
        // Writing THR clears the THRE interrupt; the byte leaves at once and THR is empty
        // again, which re-arms it. Drop the line in between so an edge-triggered PIC input
        // sees a new edge. With THRE interrupts disabled (IER.ETBEI = 0, the polling drivers'
        // case) the write changes no interrupt source: nothing to evaluate.
        if self.ier & IER_ETBEI != 0 {
            self.thre_pending = false;
            self.update_irq(ctx);
            self.thre_pending = true;
            self.update_irq(ctx);
        } else {
            self.thre_pending = true;
        }
    }

    fn set_mcr(&mut self, value: u8) {
        let before = self.modem_status();
        self.mcr = value & MCR_ALL;
        let after = self.modem_status();
        let changed = before ^ after;
        let mut delta = 0;
        if changed & MSR_CTS != 0 {
            delta |= 0x01;
        }
        if changed & MSR_DSR != 0 {
            delta |= 0x02;
        }
        // TERI: trailing edge of RI only.
        if before & MSR_RI != 0 && after & MSR_RI == 0 {
            delta |= 0x04;
        }
        if changed & MSR_DCD != 0 {
            delta |= 0x08;
        }
        self.msr_delta |= delta;
    }

    /// Appends the guest-visible state: IER, LCR, MCR, SCR, the divisor latch (DLL, DLM),
    /// FIFO enable, the pending THRE interrupt, LSR error bits awaiting an LSR read, MSR
    /// delta bits awaiting an MSR read and the receive FIFO's bytes, oldest first (PC16550D
    /// datasheet, "Registers"). Skipped: the base port and IRQ (configuration), the
    /// transmitted-byte counter (a host statistic) and the IRQ level last driven, which
    /// follows from the registers ([`Uart::irq_level`]).
    pub fn save_state(&self, e: &mut Enc) {
        e.u8(self.ier)
            .u8(self.lcr)
            .u8(self.mcr)
            .u8(self.scr)
            .u8(self.dll)
            .u8(self.dlm);
        state::put_flag(e, self.fifo);
        state::put_flag(e, self.thre_pending);
        e.u8(self.lsr_errors).u8(self.msr_delta);
        let (a, b) = self.rx.as_slices();
        // At most RX_CAPACITY: fits.
        e.u32(self.rx.len() as u32);
        for &byte in a.iter().chain(b) {
            e.u8(byte);
        }
    }

    /// Reads what [`Uart::save_state`] wrote into this UART (created with [`Uart::new`] at
    /// the same base and IRQ); the IRQ level it drives is taken to be the one its registers
    /// give, as it was when saved. `shift` is unused: the model is untimed. On error nothing
    /// changes and the message names the first bad field.
    pub fn load_state(&mut self, d: &mut Dec<'_>, shift: u64) -> Result<(), &'static str> {
        let _ = shift;
        let ier = state::bits8(d, IER_ALL, "UART IER with bits 7:4 set")?;
        let lcr = state::u8(d)?;
        let mcr = state::bits8(d, MCR_ALL, "UART MCR with bits 7:5 set")?;
        let scr = state::u8(d)?;
        let dll = state::u8(d)?;
        let dlm = state::u8(d)?;
        let fifo = state::flag(d, "UART FIFO enable neither 0 nor 1")?;
        let thre_pending = state::flag(d, "UART THRE-pending flag neither 0 nor 1")?;
        // Only overrun is ever reported (loopback into a full receiver).
        let lsr_errors = state::bits8(d, LSR_OE, "UART LSR errors other than overrun")?;
        let msr_delta = state::bits8(d, MSR_DELTAS, "UART MSR deltas beyond bits 3:0")?;
        let len = state::u32(d)? as usize;
        if len > RX_CAPACITY {
            return Err("UART receive FIFO longer than its capacity");
        }
        let bytes = d.raw(len).ok_or(state::ENDS_EARLY)?;
        let mut rx = VecDeque::with_capacity(RX_CAPACITY);
        rx.extend(bytes.iter().copied());
        self.ier = ier;
        self.lcr = lcr;
        self.mcr = mcr;
        self.scr = scr;
        self.dll = dll;
        self.dlm = dlm;
        self.fifo = fifo;
        self.thre_pending = thre_pending;
        self.lsr_errors = lsr_errors;
        self.msr_delta = msr_delta;
        self.rx = rx;
        self.line = self.irq_level();
        Ok(())
    }

    /// Byte read from register `port` (ports outside the UART read 0xff).
    pub fn read_port(&mut self, port: u16, ctx: &mut IoContext<'_>) -> u8 {
        if !self.claims(port) {
            return 0xff;
        }
        let dlab = self.lcr & LCR_DLAB != 0;
        let value = match port.wrapping_sub(self.base) {
            0 if dlab => self.dll,
            0 => self.rx.pop_front().unwrap_or(0),
            1 if dlab => self.dlm,
            1 => self.ier,
            2 => {
                let source = self.source();
                if source == Some(IIR_THRE) {
                    self.thre_pending = false;
                }
                source.unwrap_or(IIR_NONE) | if self.fifo { IIR_FIFO } else { 0 }
            }
            3 => self.lcr,
            4 => self.mcr,
            5 => {
                let lsr = LSR_THRE
                    | LSR_TEMT
                    | self.lsr_errors
                    | if self.rx.is_empty() { 0 } else { LSR_DR };
                self.lsr_errors = 0;
                lsr
            }
            6 => {
                let msr = self.modem_status() | self.msr_delta;
                self.msr_delta = 0;
                msr
            }
            _ => self.scr,
        };
        self.update_irq(ctx);
        value
    }

    /// Byte write to register `port` (ports outside the UART are ignored).
    pub fn write_port(&mut self, port: u16, value: u8, ctx: &mut IoContext<'_>) {
        if !self.claims(port) {
            return;
        }
        let dlab = self.lcr & LCR_DLAB != 0;
        match port.wrapping_sub(self.base) {
            0 if dlab => self.dll = value,
            0 => {
                // `transmit` updates the line itself.
                self.transmit(value, ctx);
                return;
            }
            1 if dlab => self.dlm = value,
            1 => {
                let old = self.ier;
                self.ier = value & IER_ALL;
                if self.ier & IER_ETBEI == 0 {
                    self.thre_pending = false;
                } else if old & IER_ETBEI == 0 {
                    // THR is always empty: enabling ETBEI raises the THRE interrupt.
                    self.thre_pending = true;
                }
            }
            2 => {
                let enable = value & 0x01 != 0;
                // Changing the FIFO enable, or bit 1 (RCVR FIFO reset), empties the receiver.
                if enable != self.fifo || value & 0x02 != 0 {
                    self.rx.clear();
                }
                self.fifo = enable;
            }
            3 => self.lcr = value,
            4 => self.set_mcr(value),
            // LSR and MSR writes are factory-test only.
            5 | 6 => {}
            _ => self.scr = value,
        }
        self.update_irq(ctx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::tests::{FakeConsole, FakeIrq};

    struct Rig {
        uart: Uart,
        irq: FakeIrq,
        con: FakeConsole,
    }

    impl Rig {
        fn new() -> Self {
            Self {
                uart: Uart::com1(),
                irq: FakeIrq::default(),
                con: FakeConsole::default(),
            }
        }
        fn out(&mut self, reg: u16, v: u8) {
            let mut ctx = IoContext::new(0, &mut self.irq, &mut self.con);
            self.uart.write_port(COM1_BASE + reg, v, &mut ctx);
        }
        fn inb(&mut self, reg: u16) -> u8 {
            let mut ctx = IoContext::new(0, &mut self.irq, &mut self.con);
            self.uart.read_port(COM1_BASE + reg, &mut ctx)
        }
        fn line(&self) -> bool {
            self.irq.levels[usize::from(COM1_IRQ)]
        }
        fn edges(&self) -> u32 {
            self.irq.rising_edges[usize::from(COM1_IRQ)]
        }
    }

    #[test]
    fn output_capture_lsr_and_dlab() {
        let mut r = Rig::new();
        assert_eq!(r.inb(5), 0x60, "THRE and TEMT always set");
        // 8250 set_termios: DLAB, divisor 1, 8N1.
        r.out(3, 0x80);
        r.out(0, 0x01);
        r.out(1, 0x00);
        assert_eq!(r.inb(0), 0x01);
        r.out(3, 0x03);
        assert_eq!(r.uart.divisor(), 1);
        for &b in b"Linux version 6.1\n" {
            assert_ne!(r.inb(5) & 0x20, 0);
            r.out(0, b);
        }
        assert_eq!(r.con.0, b"Linux version 6.1\n");
        assert_eq!(r.uart.tx_bytes(), 18);
        assert_eq!(r.inb(2), 0x01, "no interrupt pending, FIFO off");
        r.out(2, 0x07);
        assert_eq!(r.inb(2), 0xc1, "FIFO enabled: 16550A");
        r.out(7, 0xa5);
        assert_eq!(r.inb(7), 0xa5, "scratch register");
        assert!(!r.line(), "no interrupts without IER");
    }

    #[test]
    fn linux_autoconfig_probe() {
        let mut r = Rig::new();
        // IER test.
        r.out(1, 0);
        assert_eq!(r.inb(1) & 0x0f, 0);
        r.out(1, 0x0f);
        assert_eq!(r.inb(1) & 0x0f, 0x0f);
        r.out(1, 0);
        // Loopback MSR test.
        r.out(4, MCR_LOOP | 0x0a);
        assert_eq!(r.inb(6) & 0xf0, 0x90);
        r.out(4, 0);
        // FIFO type.
        r.out(2, 0x01);
        assert_eq!(r.inb(2) >> 6, 3);
        // LCR 0xBF: EFR (port 2) must not read 0, or this is taken for a 16650.
        r.out(3, 0xbf);
        assert_ne!(r.inb(2), 0);
        r.out(3, 0);
        // IER.UUE (bit 6) does not stick: not an XScale UART.
        r.out(1, 0x40);
        assert_eq!(r.inb(1) & 0x40, 0);
        // Loopback data.
        r.out(4, MCR_LOOP);
        r.out(0, 0x55);
        assert_eq!(r.inb(5) & LSR_DR, LSR_DR);
        assert_eq!(r.inb(0), 0x55);
        assert_eq!(r.inb(5) & LSR_DR, 0);
        assert!(r.con.0.is_empty(), "loopback bytes stay inside");
    }

    #[test]
    fn thre_interrupt_like_the_8250_driver_expects() {
        let mut r = Rig::new();
        r.out(4, MCR_OUT2 | MCR_RTS | MCR_DTR);
        // serial8250_do_startup's THRE re-assertion test.
        r.out(1, IER_ETBEI);
        assert!(r.line());
        assert_eq!(r.inb(2), 0x02);
        assert!(!r.line(), "reading IIR cleared THRE");
        assert_eq!(r.inb(2), 0x01);
        r.out(1, 0);
        r.out(1, IER_ETBEI);
        assert_eq!(r.inb(2), 0x02, "re-enabling ETBEI re-asserts THRE");
        // Interrupt-driven TX: every THR write yields a fresh edge.
        let before = r.edges();
        r.out(0, b'a');
        r.out(0, b'b');
        assert!(r.line());
        assert_eq!(r.edges(), before + 2);
        assert_eq!(r.inb(2), 0x02);
        // __stop_tx: ETBEI cleared, nothing pending.
        r.out(1, 0);
        assert!(!r.line());
        // OUT2 gates the line.
        r.out(1, IER_ETBEI);
        r.out(4, 0);
        assert!(!r.line());
        r.out(4, MCR_OUT2);
        assert!(r.line());
        assert_eq!(r.con.0, b"ab");
    }

    #[test]
    fn receive_queue_and_priorities() {
        let mut r = Rig::new();
        r.out(4, MCR_OUT2);
        r.out(1, IER_ERBFI | IER_ETBEI);
        let mut ctx = IoContext::new(0, &mut r.irq, &mut r.con);
        assert_eq!(r.uart.receive(b"hi", &mut ctx), 2);
        assert_eq!(r.inb(2), 0x04, "received data outranks THRE");
        assert_eq!(r.inb(0), b'h');
        assert_eq!(r.inb(0), b'i');
        assert_eq!(r.inb(2), 0x02);
        assert_eq!(r.inb(0), 0, "empty RBR");
        let big = [b'x'; RX_CAPACITY + 10];
        let mut ctx = IoContext::new(0, &mut r.irq, &mut r.con);
        assert_eq!(r.uart.receive(&big, &mut ctx), RX_CAPACITY);
        assert_eq!(r.uart.rx_space(), 0);
        r.out(2, 0x03);
        assert_eq!(r.inb(5) & LSR_DR, 0, "FIFO reset empties the receiver");
        // Loopback overrun → line status interrupt, cleared by reading LSR.
        r.out(1, IER_ELSI);
        r.out(4, MCR_LOOP);
        for _ in 0..=RX_CAPACITY {
            r.out(0, 1);
        }
        assert_eq!(r.inb(2) & 0x0f, 0x06);
        assert_eq!(r.inb(5) & LSR_OE, LSR_OE);
        assert_eq!(r.inb(2) & 0x0f, 0x01);
        // Modem status interrupt on delta (entering loopback already changed the lines).
        assert_eq!(r.inb(6), 0x0b, "DCTS, DDSR, DDCD from entering loopback");
        r.out(1, IER_EDSSI);
        r.out(4, MCR_LOOP | MCR_RTS);
        assert_eq!(r.inb(2) & 0x0f, 0x00);
        assert_eq!(r.inb(6), MSR_CTS | 0x01);
        assert_eq!(r.inb(2) & 0x0f, 0x01);
        for port in 0..16 {
            for v in [0u8, 0xff, 0x80, 0x10] {
                r.out(port, v);
                let _ = r.inb(port);
            }
        }
    }
}
