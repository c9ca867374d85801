//! `forever`: a guest that never ends by itself, for the hypervisor shell's tests (issue 17):
//! prints one line, then executes a CPUID every 100,000 TSC ticks with interrupts off, until
//! the operator stops it (`stop VM`). Its CPUID count grows while it runs.
//!
//! ```text
//! guest forever: forever: running
//! ```

#![no_std]
#![no_main]

use guest_rt::cpu::{cpuid, rdtsc};
use guest_rt::hv::console_say;

guest_rt::entry!(main);

/// TSC ticks between two CPUIDs.
const PERIOD: u64 = 100_000;

fn main(_ram_size: u64, _vm_index: u64) -> ! {
    let _ = console_say(format_args!("forever: running"));
    loop {
        let start = rdtsc();
        while rdtsc() - start < PERIOD {
            core::hint::spin_loop();
        }
        let _ = cpuid(0, 0);
    }
}
