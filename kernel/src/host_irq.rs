//! The host's interrupt controllers, as far as Bulkhead uses them today: it runs with
//! RFLAGS.IF = 0 and takes host interrupts only as external-interrupt VM exits with
//! "acknowledge interrupt on exit" (SDM Vol. 3C §25.7.1, §28.2.2: the CPU performs the
//! interrupt acknowledge and stores the vector in the VM-exit interruption information). The
//! handler must then end the interrupt at its controller (EOI), or the controller never sends
//! another of that priority.
//!
//! At boot the 8259A pair is remapped to [`PIC_VECTOR_BASE`]..+16 and masked, so a host vector
//! says which controller it came from: 8259A vectors, or the local APIC's (everything else).

use crate::arch;

/// The 8259A master's and slave's first vectors after [`init`] (8259A datasheet, ICW2).
pub const PIC_VECTOR_BASE: u8 = 0x20;
const MASTER_CMD: u16 = 0x20;
const MASTER_DATA: u16 = 0x21;
const SLAVE_CMD: u16 = 0xa0;
const SLAVE_DATA: u16 = 0xa1;
/// ICW1: edge triggered, cascade, ICW4 needed (8259A datasheet).
const ICW1_INIT_ICW4: u8 = 0x11;
/// ICW3: the slave on the master's IR2; the slave's cascade identity 2.
const ICW3_MASTER: u8 = 1 << 2;
const ICW3_SLAVE: u8 = 2;
/// ICW4: 8086 mode.
const ICW4_8086: u8 = 0x01;
/// OCW2: non-specific EOI.
const OCW2_EOI: u8 = 0x20;
/// OCW3: read the in-service register on the next command-port read.
const OCW3_READ_ISR: u8 = 0x0b;

/// Remaps the 8259A pair to [`PIC_VECTOR_BASE`] and masks every line (ICW1-ICW4, OCW1).
pub fn init() {
    let base = PIC_VECTOR_BASE;
    // SAFETY: 0x20/0x21/0xA0/0xA1 are the 8259A pair on every PC; the initialisation sequence
    // only changes which vectors they send and masks them, with interrupts disabled.
    unsafe {
        arch::outb(MASTER_CMD, ICW1_INIT_ICW4);
        arch::outb(SLAVE_CMD, ICW1_INIT_ICW4);
        arch::outb(MASTER_DATA, base);
        arch::outb(SLAVE_DATA, base + 8);
        arch::outb(MASTER_DATA, ICW3_MASTER);
        arch::outb(SLAVE_DATA, ICW3_SLAVE);
        arch::outb(MASTER_DATA, ICW4_8086);
        arch::outb(SLAVE_DATA, ICW4_8086);
        arch::outb(MASTER_DATA, 0xff);
        arch::outb(SLAVE_DATA, 0xff);
    }
}

/// The 8254's input clock (8254 datasheet; PC platform).
const PIT_HZ: u32 = 1_193_182;
const PIT_CHANNEL0: u16 = 0x40;
const PIT_MODE: u16 = 0x43;
/// Channel 0, lobyte/hibyte, mode 2 (rate generator), binary.
const PIT_CH0_RATE: u8 = 0x34;

/// Starts the host tick: PIT channel 0 as a rate generator at `hz` (1..=10000) and IRQ0
/// unmasked at the master 8259A. Each tick reaches the CPU as an external-interrupt exit while
/// a guest runs (Bulkhead's own code runs with interrupts disabled, so ticks wait for the
/// next VM entry); the exit handler ends it with [`end_of_interrupt`]. Call after the TSC was
/// calibrated (which uses channel 2). Returns the rate programmed.
pub fn start_tick(hz: u32) -> u32 {
    let divisor = (PIT_HZ / hz.clamp(1, 10_000)).clamp(2, 0xffff) as u16;
    // SAFETY: the PIT belongs to the PC platform and Bulkhead uses channel 0 for nothing else;
    // unmasking IRQ0 only lets its interrupts reach the CPU as VM exits.
    unsafe {
        arch::outb(PIT_MODE, PIT_CH0_RATE);
        arch::outb(PIT_CHANNEL0, divisor as u8);
        arch::outb(PIT_CHANNEL0, (divisor >> 8) as u8);
    }
    unmask(PIT_IRQ);
    PIT_HZ / u32::from(divisor)
}

/// The PC's IRQ lines Bulkhead takes: the PIT's channel 0 and COM1.
pub const PIT_IRQ: u8 = 0;
pub const COM1_IRQ: u8 = 4;

/// Unmasks master 8259A line `irq` (0-7; OCW1), leaving the others as they are: its
/// interrupts then reach the boot CPU as external-interrupt VM exits.
pub fn unmask(irq: u8) {
    if irq >= 8 {
        return;
    }
    // SAFETY: OCW1 only changes which of the master's lines are masked; Bulkhead runs with
    // interrupts disabled, so an unmasked line only causes VM exits.
    unsafe {
        let mask = arch::inb(MASTER_DATA);
        arch::outb(MASTER_DATA, mask & !(1 << irq));
    }
}

/// Where a host interrupt came from, decided by its vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// IRQ line of the 8259A pair (0-15).
    Pic(u8),
    /// The local APIC (timer, IPIs, IOAPIC-routed lines, or its spurious vector).
    LocalApic,
}

/// How an EOI went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Eoi {
    /// The controller was told.
    Sent(Source),
    /// Spurious 8259A IRQ 7/15: nothing in service, no EOI due.
    Spurious(Source),
    /// The local APIC is disabled or its page is outside the direct map: nothing could be
    /// told (the interrupt is counted; a host LAPIC driver comes with SMP).
    Unreachable(Source),
}

/// The source of `vector`.
pub fn source(vector: u8) -> Source {
    match vector.checked_sub(PIC_VECTOR_BASE) {
        Some(irq) if irq < 16 => Source::Pic(irq),
        _ => Source::LocalApic,
    }
}

/// A host interrupt was taken (an external-interrupt exit, or an idle CPU's wait with
/// interrupts enabled: interrupts.rs): its work, then its end at the controller. COM1's
/// receive interrupt moves the UART's FIFO into the shell's input queue (bounded: one FIFO;
/// try-locks only, so it never waits for the code it interrupted).
pub fn taken(vector: u8) -> Eoi {
    if source(vector) == Source::Pic(COM1_IRQ) {
        crate::shell::receive_interrupt();
    }
    end_of_interrupt(vector)
}

/// Ends the host interrupt `vector` at its controller. An 8259A IRQ 7 or 15 that is not in
/// service is spurious and gets no EOI (8259A datasheet, "spurious interrupts").
pub fn end_of_interrupt(vector: u8) -> Eoi {
    let src = source(vector);
    match src {
        Source::Pic(irq) => {
            let (cmd, line) = if irq < 8 {
                (MASTER_CMD, irq)
            } else {
                (SLAVE_CMD, irq - 8)
            };
            // SAFETY: OCW3 then a command-port read returns the ISR and changes nothing else.
            let isr = unsafe {
                arch::outb(cmd, OCW3_READ_ISR);
                arch::inb(cmd)
            };
            if isr & (1 << line) == 0 {
                return Eoi::Spurious(src);
            }
            // SAFETY: a non-specific EOI ends the highest in-service IRQ, the one just taken
            // (interrupts are disabled in the host, so nothing nests).
            unsafe {
                if irq >= 8 {
                    arch::outb(SLAVE_CMD, OCW2_EOI);
                }
                arch::outb(MASTER_CMD, OCW2_EOI);
            }
        }
        Source::LocalApic => {
            if !crate::lapic::eoi() {
                return Eoi::Unreachable(src);
            }
        }
    }
    Eoi::Sent(src)
}
