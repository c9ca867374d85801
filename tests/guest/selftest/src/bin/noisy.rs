//! `noisy`: a neighbour that storms exits for about 2 s of TSC (the rate from CPUID 0x16):
//! in each iteration a CPUID, a PIT channel 0 latch and read (ports 0x43, 0x40), an RTC
//! register read (ports 0x70, 0x71) and a port 0x61 read, and every 16th iteration a 200-byte
//! console line (the hypervisor's console rate limit drops most of them). Interrupts stay
//! off. At the end (CONSOLE_WRITE, after a second's wait that refills its console bucket):
//! give the VM a `console-rate` below the UART's ~11 KB/s (e.g. "2K"), or its flood fills the
//! hypervisor's console queue and this line is dropped behind it:
//!
//! ```text
//! guest noisy: noisy: iterations=I cpuids=I io=6*I console=C tsc=T
//! ```

#![no_std]
#![no_main]

use guest_rt::cpu::{self, inb, outb, rdtsc};
use guest_rt::hv::{console_say, console_write};

guest_rt::entry!(main);

const SECONDS: u64 = 2;
const CONSOLE_EVERY: u64 = 16;
/// PIT control word: channel 0, latch count (8254 datasheet, "Counter Latch Command").
const PIT_LATCH_CH0: u8 = 0x00;
const PIT_CONTROL: u16 = 0x43;
const PIT_CH0: u16 = 0x40;
const RTC_INDEX: u16 = 0x70;
const RTC_DATA: u16 = 0x71;
/// RTC status register A (MC146818A), read-only use.
const RTC_STATUS_A: u8 = 0x0A;
const SYSTEM_CONTROL_B: u16 = 0x61;

fn main(_ram_size: u64, _vm_index: u64) -> ! {
    guest_rt::trap::init();
    guest_rt::report::set_name("noisy");
    let hz = u64::from(cpu::cpuid(0x16, 0).eax) * 1_000_000;
    let hz = if hz == 0 { 50_000_000 } else { hz };
    let line = [b'n'; 199];
    let mut line_nl = [b'\n'; 200];
    line_nl[..199].copy_from_slice(&line);
    let start = rdtsc();
    let (mut iterations, mut console) = (0u64, 0u64);
    let mut sink = 0u32;
    while rdtsc().wrapping_sub(start) < SECONDS * hz {
        sink ^= cpu::cpuid(0, 0).ebx;
        outb(PIT_CONTROL, PIT_LATCH_CH0);
        sink ^= u32::from(inb(PIT_CH0)) | u32::from(inb(PIT_CH0)) << 8;
        outb(RTC_INDEX, RTC_STATUS_A);
        sink ^= u32::from(inb(RTC_DATA));
        sink ^= u32::from(inb(SYSTEM_CONTROL_B));
        if iterations % CONSOLE_EVERY == 0 {
            let _ = console_write(&line_nl);
            console += 1;
        }
        iterations += 1;
    }
    let ticks = rdtsc().wrapping_sub(start);
    core::hint::black_box(sink);
    // A second of quiet so the report fits in the console bucket again.
    let quiet = rdtsc();
    while rdtsc().wrapping_sub(quiet) < hz {
        core::hint::spin_loop();
    }
    // Writes the hypervisor dropped unread leave its line discipline discarding up to the next
    // newline (docs/architecture.md, "Console"): end that line first.
    let _ = console_write(b"\n");
    let _ = console_say(format_args!(
        "noisy: iterations={iterations} cpuids={iterations} io={} console={console} tsc={ticks}",
        6 * iterations
    ));
    guest_rt::halt()
}
