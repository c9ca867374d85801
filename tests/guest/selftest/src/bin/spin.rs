//! `spin`: spins for 20 million TSC ticks with interrupts enabled (RFLAGS.IF = 1) and every
//! line of its own 8259A masked, so no guest interrupt arrives, then powers off. A host tick
//! reaches the CPU as external-interrupt exits meanwhile; the test counts them.

#![no_std]
#![no_main]

use guest_rt::cpu;
use guest_rt::report::{self, pass};

guest_rt::entry!(main);

const SPIN_TICKS: u64 = 20_000_000;

fn main(_ram_size: u64, _vm_index: u64) -> ! {
    guest_rt::trap::init();
    report::start("spin");
    guest_rt::pic::init(0x20, 0xFF);
    // SAFETY: every guest interrupt line is masked, so enabling interrupts delivers none.
    unsafe { core::arch::asm!("sti", options(nomem, nostack)) };
    let start = cpu::rdtsc();
    while cpu::rdtsc() - start < SPIN_TICKS {
        core::hint::spin_loop();
    }
    // SAFETY: back to the state report::done expects.
    unsafe { core::arch::asm!("cli", options(nomem, nostack)) };
    pass("spun-with-interrupts-on");
    report::done()
}
