//! `timer`: the interrupt and scheduling path. Programs the 8259A PICs (vector base 0x20)
//! and the 8254 PIT (channel 0, mode 2, 100 Hz), then sleeps in `sti; hlt` until ten timer
//! interrupts woke it: each one is an IRQ the hypervisor's PIT raised, its PIC delivered and
//! VT-x injected. It checks the interval against the TSC frequency that CPUID 0x16 reports,
//! then spins with interrupts off for 40 million TSC ticks so the hypervisor must preempt it
//! (VMX-preemption timer) to let other VMs run.

#![no_std]
#![no_main]

use core::sync::atomic::{AtomicU64, Ordering};
use guest_rt::cpu;
use guest_rt::report::{self, fail, pass};

guest_rt::entry!(main);

static TICKS: AtomicU64 = AtomicU64::new(0);
const VECTOR_BASE: u8 = 0x20;
const PIT_HZ: u64 = 1_193_182;
const RATE_HZ: u64 = 100;
const WANTED_TICKS: u64 = 10;
const SPIN_TICKS: u64 = 40_000_000;

#[no_mangle]
extern "C" fn timer_tick() {
    TICKS.fetch_add(1, Ordering::Relaxed);
    guest_rt::pic::eoi();
}

guest_rt::irq_stub!(timer_irq_stub, timer_tick);

fn main(_ram_size: u64, _vm_index: u64) -> ! {
    guest_rt::trap::init();
    report::start("timer");
    // SAFETY: the stub above saves every caller-saved register and ends with IRETQ.
    unsafe { guest_rt::trap::set_interrupt_gate(VECTOR_BASE, timer_irq_stub as *const () as u64) };

    guest_rt::pic::init(VECTOR_BASE, 0xFE);
    // 8254: channel 0, lobyte/hibyte, mode 2 (rate generator), binary.
    let divisor = (PIT_HZ / RATE_HZ) as u16;
    guest_rt::pic::pit_periodic(divisor);

    let start = cpu::rdtsc();
    let mut halts = 0u64;
    while TICKS.load(Ordering::Relaxed) < WANTED_TICKS && halts < 1000 {
        // SAFETY: STI; HLT sleeps until the next interrupt, whose handler is installed.
        unsafe { core::arch::asm!("sti", "hlt", "cli", options(nomem, nostack)) };
        halts += 1;
    }
    let elapsed = cpu::rdtsc() - start;
    let ticks = TICKS.load(Ordering::Relaxed);
    if ticks >= WANTED_TICKS {
        pass("pit-irq-wakes-hlt");
    } else {
        fail(
            "pit-irq-wakes-hlt",
            format_args!("{ticks} interrupts after {halts} HLTs"),
        );
    }
    // CPUID.16H:EAX is the TSC base frequency in MHz (the hypervisor's calibrated value).
    let mhz = u64::from(cpu::cpuid(0x16, 0).eax);
    let expected = mhz * 1_000_000 * (WANTED_TICKS - 1) / RATE_HZ;
    guest_rt::say!("timer: {ticks} ticks in {elapsed} TSC ticks, {halts} HLTs, TSC {mhz} MHz");
    // The first tick may come anywhere within its period: allow ten ticks' worth ± 25 %.
    if mhz > 0 && elapsed >= expected * 3 / 4 && elapsed <= expected * 2 {
        pass("pit-rate");
    } else {
        fail(
            "pit-rate",
            format_args!(
                "{elapsed} TSC ticks for {ticks} periods at {mhz} MHz (about {expected} expected)"
            ),
        );
    }

    let spin_start = cpu::rdtsc();
    while cpu::rdtsc() - spin_start < SPIN_TICKS {
        core::hint::spin_loop();
    }
    pass("cpu-bound-spin");
    report::done()
}
