//! `progress`: a single-vCPU guest that computes for about 5 million TSC ticks per round with
//! interrupts off, then prints the round and its TSC, 10 rounds, then powers off. Two of them
//! on different physical CPUs both report while the other computes; on one CPU their lines
//! alternate by time slice. Lines (CONSOLE_WRITE):
//!
//! ```text
//! guest progress: progress: round R tsc T steps=S (R = 1..=10, T = the guest's TSC, S =
//!                                                  batches of 256 xorshift steps computed)
//! guest progress: progress: done rounds=10 work=W
//! ```

#![no_std]
#![no_main]

use guest_rt::cpu::rdtsc;
use guest_rt::hv::console_say;

guest_rt::entry!(main);

const ROUNDS: u32 = 10;
const ROUND_TICKS: u64 = 5_000_000;

/// One step of xorshift64: pure computation, no memory beyond registers.
fn step(x: u64) -> u64 {
    let x = x ^ (x << 13);
    let x = x ^ (x >> 7);
    x ^ (x << 17)
}

fn main(_ram_size: u64, _vm_index: u64) -> ! {
    guest_rt::trap::init();
    guest_rt::report::set_name("progress");
    let mut work = 0x9E37_79B9_7F4A_7C15u64;
    for round in 1..=ROUNDS {
        let start = rdtsc();
        // How much this vCPU computed in the round: about half as much when it shares its
        // CPU with another busy vCPU as when it has one of its own.
        let mut steps = 0u64;
        while rdtsc().wrapping_sub(start) < ROUND_TICKS {
            for _ in 0..256 {
                work = step(core::hint::black_box(work));
            }
            steps += 1;
        }
        let _ = console_say(format_args!(
            "progress: round {round} tsc {} steps={steps}",
            rdtsc()
        ));
    }
    let _ = console_say(format_args!(
        "progress: done rounds={ROUNDS} work={work:#x}"
    ));
    guest_rt::halt()
}
