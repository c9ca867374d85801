//! `rt-latency`: a periodic deadline and its jitter. Programs the 8254 PIT channel 0 as a
//! rate generator at about 1 kHz (divisor 1193) through its own 8259A (vector 0x20), sleeps in
//! `sti; hlt`, and stamps the TSC in each timer interrupt. After 1000 periods it detrends the
//! stamps (ideal tick k = first + k × the mean period) and reports each tick's lateness
//! against the earliest one: median and maximum in TSC ticks. It is a benchmark figure for a
//! dedicated VM beside a noisy one, not an assertion. Lines (CONSOLE_WRITE):
//!
//! ```text
//! guest rt-latency: rt: period=P ticks (PIT divisor 1193)
//! guest rt-latency: rt: periods=1000 median=A max=B (ticks)
//! ```
//!
//! or `rt: FAIL ...` when the interrupts stop coming.

#![no_std]
#![no_main]

use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use guest_rt::cpu::rdtsc;
use guest_rt::hv::console_say;

guest_rt::entry!(main);

const VECTOR_BASE: u8 = 0x20;
/// 1,193,182 Hz / 1193 = 1000.15 Hz.
const DIVISOR: u16 = 1193;
const PERIODS: usize = 1000;
/// Unmask IRQ 0 (the PIT) only.
const PIT_ONLY: u8 = 0xFE;

static STAMPS: [AtomicU64; PERIODS + 1] = [const { AtomicU64::new(0) }; PERIODS + 1];
static TICKS: AtomicUsize = AtomicUsize::new(0);
/// Lateness of each period, sorted for the median (only main touches it, after the run).
static mut LATENESS: [u64; PERIODS + 1] = [0; PERIODS + 1];

#[no_mangle]
extern "C" fn rt_tick() {
    let now = rdtsc();
    let n = TICKS.load(Ordering::Relaxed);
    if n <= PERIODS {
        STAMPS[n].store(now, Ordering::Relaxed);
        TICKS.store(n + 1, Ordering::Release);
    }
    guest_rt::pic::eoi();
}

guest_rt::irq_stub!(rt_irq_stub, rt_tick);

fn main(_ram_size: u64, _vm_index: u64) -> ! {
    guest_rt::trap::init();
    guest_rt::report::set_name("rt-latency");
    // SAFETY: the stub saves every caller-saved register and ends with IRETQ.
    unsafe { guest_rt::trap::set_interrupt_gate(VECTOR_BASE, rt_irq_stub as *const () as u64) };
    guest_rt::pic::init(VECTOR_BASE, PIT_ONLY);
    guest_rt::pic::pit_periodic(DIVISOR);
    let mut halts = 0u64;
    while TICKS.load(Ordering::Acquire) <= PERIODS && halts < 100 * PERIODS as u64 {
        // SAFETY: STI; HLT sleeps until the next interrupt, whose handler is installed.
        unsafe { core::arch::asm!("sti", "hlt", "cli", options(nomem, nostack)) };
        halts += 1;
    }
    // Mask the PIT again so nothing interrupts the report.
    guest_rt::pic::init(VECTOR_BASE, 0xFF);
    let got = TICKS.load(Ordering::Acquire);
    if got <= PERIODS {
        let _ = console_say(format_args!(
            "rt: FAIL {got} timer interrupts after {halts} HLTs, {} wanted",
            PERIODS + 1
        ));
        guest_rt::halt()
    }
    let first = STAMPS[0].load(Ordering::Relaxed);
    let span = STAMPS[PERIODS].load(Ordering::Relaxed).wrapping_sub(first);
    // SAFETY: the interrupt handler never touches LATENESS and interrupts are off.
    let lateness = unsafe { &mut *core::ptr::addr_of_mut!(LATENESS) };
    // Deviation from the ideal tick, in ticks (signed), then relative to the earliest.
    let mut deviation = [0i64; PERIODS + 1];
    for (k, d) in deviation.iter_mut().enumerate() {
        let ideal = first + (u128::from(span) * k as u128 / PERIODS as u128) as u64;
        *d = STAMPS[k].load(Ordering::Relaxed) as i64 - ideal as i64;
    }
    let earliest = deviation.iter().copied().min().unwrap_or(0);
    for (l, d) in lateness.iter_mut().zip(deviation) {
        *l = (d - earliest) as u64;
    }
    lateness.sort_unstable();
    let median = lateness[PERIODS / 2];
    let max = lateness[PERIODS];
    let _ = console_say(format_args!(
        "rt: period={} ticks (PIT divisor {DIVISOR})",
        span / PERIODS as u64
    ));
    let _ = console_say(format_args!(
        "rt: periods={PERIODS} median={median} max={max} (ticks)"
    ));
    guest_rt::halt()
}
