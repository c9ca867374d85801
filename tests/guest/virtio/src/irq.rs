//! Interrupts: the 8259A pair (vector base 0x20), one stub per virtio device IRQ (5 = blk at
//! 0xD000_0000, 6 = net at 0xD000_1000) and the 8254 PIT in one-shot mode as a timeout for
//! `sti; hlt` waits.
//!
//! The device handlers read InterruptStatus (0x60) and write it back to InterruptACK (0x64)
//! directly through MMIO (the driver objects belong to the main code), count the interrupt,
//! and send a non-specific EOI. Interrupts are only enabled inside [`wait_until`].

use core::sync::atomic::{AtomicU64, Ordering};
use guest_rt::cpu::outb;

pub const VECTOR_BASE: u8 = 0x20;
pub const BLK_IRQ: u8 = 5;
pub const NET_IRQ: u8 = 6;
pub const BLK_BASE: u64 = 0xD000_0000;
pub const NET_BASE: u64 = 0xD000_1000;
const INTERRUPT_STATUS: u64 = 0x60;
const INTERRUPT_ACK: u64 = 0x64;

/// Per device: interrupts taken, and InterruptStatus bits seen (bit 0 used buffer, bit 1
/// configuration change), and interrupts with InterruptStatus = 0 (spurious).
#[derive(Debug)]
pub struct Counters {
    pub interrupts: AtomicU64,
    pub used_buffer: AtomicU64,
    pub config_change: AtomicU64,
    pub spurious: AtomicU64,
}

impl Counters {
    const fn new() -> Self {
        Counters {
            interrupts: AtomicU64::new(0),
            used_buffer: AtomicU64::new(0),
            config_change: AtomicU64::new(0),
            spurious: AtomicU64::new(0),
        }
    }

    pub fn interrupts(&self) -> u64 {
        self.interrupts.load(Ordering::Relaxed)
    }
}

pub static BLK: Counters = Counters::new();
pub static NET: Counters = Counters::new();
pub static TIMER_TICKS: AtomicU64 = AtomicU64::new(0);

fn device_interrupt(base: u64, c: &Counters) {
    // SAFETY: the device's MMIO window is mapped (the VM config has the device); reading
    // InterruptStatus and writing InterruptACK only clear the device's interrupt bits.
    let status = unsafe { guest_rt::cpu::mmio_read32(base + INTERRUPT_STATUS) };
    if status != 0 {
        // SAFETY: as above.
        unsafe { guest_rt::cpu::mmio_write32(base + INTERRUPT_ACK, status) };
    }
    c.interrupts.fetch_add(1, Ordering::Relaxed);
    if status & 1 != 0 {
        c.used_buffer.fetch_add(1, Ordering::Relaxed);
    }
    if status & 2 != 0 {
        c.config_change.fetch_add(1, Ordering::Relaxed);
    }
    if status == 0 {
        c.spurious.fetch_add(1, Ordering::Relaxed);
    }
    guest_rt::pic::eoi();
}

#[no_mangle]
extern "C" fn virtio_blk_irq() {
    device_interrupt(BLK_BASE, &BLK);
}

#[no_mangle]
extern "C" fn virtio_net_irq() {
    device_interrupt(NET_BASE, &NET);
}

#[no_mangle]
extern "C" fn virtio_timer_irq() {
    TIMER_TICKS.fetch_add(1, Ordering::Relaxed);
    outb(0x20, 0x20);
}

macro_rules! irq_stub {
    ($stub:literal, $handler:ident) => {
        core::arch::global_asm!(
            concat!(".global ", $stub),
            concat!($stub, ":"),
            "push rax", "push rcx", "push rdx", "push rsi", "push rdi",
            "push r8", "push r9", "push r10", "push r11",
            // 5-word CPU frame + 9 registers = 14 words: RSP is 16-aligned for the call.
            "cld",
            "call {handler}",
            "pop r11", "pop r10", "pop r9", "pop r8",
            "pop rdi", "pop rsi", "pop rdx", "pop rcx", "pop rax",
            "iretq",
            handler = sym $handler,
        );
    };
}

irq_stub!("virtio_blk_irq_stub", virtio_blk_irq);
irq_stub!("virtio_net_irq_stub", virtio_net_irq);
irq_stub!("virtio_timer_irq_stub", virtio_timer_irq);

extern "C" {
    fn virtio_blk_irq_stub();
    fn virtio_net_irq_stub();
    fn virtio_timer_irq_stub();
}

/// Installs the stubs and programs the PICs: IRQ 0 (PIT), 5 (blk) and 6 (net) unmasked on
/// the master, the slave fully masked (no cascade needed). `trap::init` must have run.
pub fn init() {
    // SAFETY: each stub saves every caller-saved register and ends with IRETQ.
    unsafe {
        guest_rt::trap::set_interrupt_gate(VECTOR_BASE, virtio_timer_irq_stub as *const () as u64);
        guest_rt::trap::set_interrupt_gate(
            VECTOR_BASE + BLK_IRQ,
            virtio_blk_irq_stub as *const () as u64,
        );
        guest_rt::trap::set_interrupt_gate(
            VECTOR_BASE + NET_IRQ,
            virtio_net_irq_stub as *const () as u64,
        );
    }
    // 8259A: ICW1 (edge, cascade, ICW4), ICW2 (vector base), ICW3 (slave on IRQ2), ICW4
    // (8086 mode); then OCW1 masks.
    let master_mask = !((1u8 << 0) | (1 << BLK_IRQ) | (1 << NET_IRQ));
    guest_rt::pic::init(VECTOR_BASE, master_mask);
}

/// Arms the PIT (channel 0, mode 0: interrupt on terminal count) for `count` input clocks
/// (1.193182 MHz; 0 = 65536, about 55 ms).
fn arm_timeout(count: u16) {
    outb(0x43, 0x30); // channel 0, lobyte/hibyte, mode 0, binary
    outb(0x40, count as u8);
    outb(0x40, (count >> 8) as u8);
}

/// Sleeps in `sti; hlt` until `done()` holds, with the PIT as a backstop: at most
/// `max_timeouts` PIT expiries (about 55 ms each). Returns (done, halts).
pub fn wait_until(mut done: impl FnMut() -> bool, max_timeouts: u64) -> (bool, u64) {
    let ticks0 = TIMER_TICKS.load(Ordering::Relaxed);
    let mut halts = 0;
    let mut armed_at = u64::MAX;
    loop {
        if done() {
            return (true, halts);
        }
        let ticks = TIMER_TICKS.load(Ordering::Relaxed);
        if ticks - ticks0 >= max_timeouts {
            return (done(), halts);
        }
        if armed_at != ticks {
            arm_timeout(0);
            armed_at = ticks;
        }
        halts += 1;
        // SAFETY: STI; HLT sleeps until the next interrupt (the PIT is armed as a backstop);
        // every unmasked vector has a handler; CLI restores the interrupts-off default.
        unsafe { core::arch::asm!("sti", "hlt", "cli", options(nostack)) };
    }
}

/// Lets pending interrupts in (`sti; nop; cli`), so stale edges are counted before a
/// measurement starts.
pub fn drain() {
    // SAFETY: as in `wait_until`; the NOP is the one instruction after STI's shadow.
    unsafe { core::arch::asm!("sti", "nop", "nop", "cli", options(nostack)) };
}
