//! `hostile-timer-storm`: programs PIT channel 0 for a period of one PIT tick (count 1, about
//! 1.19 MHz), unmasks only IRQ0 and sleeps in `sti; hlt` until 2,000 timer interrupts have
//! come (the handler EOIs each and masks IRQ0 after the last); then it powers off. Its timer must cost its own time, not its
//! neighbours': the hypervisor coalesces the ticks (a halted VM's deadline cuts another VM's
//! slice at most every 100 µs) and gives the cut slice back.

#![no_std]
#![no_main]

use core::sync::atomic::{AtomicU64, Ordering};
use guest_rt::cpu::{self, outb};
use guest_rt::report::{self, pass};

guest_rt::entry!(main);

const VECTOR_BASE: u8 = 0x20;
const WANTED: u64 = 2_000;

static TICKS: AtomicU64 = AtomicU64::new(0);

#[no_mangle]
extern "C" fn storm_tick() {
    // At 1.19 MHz the next tick is due before IRETQ returns, so the interrupted loop never
    // runs again (a livelock on real hardware too): the handler itself masks IRQ0 at the end.
    if TICKS.fetch_add(1, Ordering::Relaxed) + 1 >= WANTED {
        outb(0x21, 0xFF);
    }
    guest_rt::pic::eoi();
}

guest_rt::irq_stub!(storm_irq_stub, storm_tick);

fn main(_ram_size: u64, _vm_index: u64) -> ! {
    guest_rt::trap::init();
    report::start("hostile-timer-storm");
    // SAFETY: the stub saves what it uses and ends with IRETQ.
    unsafe { guest_rt::trap::set_interrupt_gate(VECTOR_BASE, storm_irq_stub as *const () as u64) };
    guest_rt::pic::init(VECTOR_BASE, 0xFE);
    guest_rt::pic::pit_periodic(1);
    let start = cpu::rdtsc();
    while TICKS.load(Ordering::Relaxed) < WANTED {
        // SAFETY: sleeps until the next timer interrupt, whose handler is installed.
        unsafe { core::arch::asm!("sti", "hlt", "cli", options(nomem, nostack)) };
    }
    let elapsed = cpu::rdtsc() - start;
    guest_rt::say!("storm: {WANTED} interrupts in {elapsed} TSC ticks");
    pass("storm-survived");
    report::done()
}
