//! `hostile-console-flood`: floods its console. Eight MULTICALLs of 128 CONSOLE_WRITEs of
//! 4 KiB each (4 MiB in all, about six minutes at 115200 baud), then it powers off. Before
//! consoles were queued this held every vCPU for about 45 s per MULTICALL while the bytes went
//! out of the UART; now the VM's console rate limit drops what exceeds it (counted), and
//! neither this VM nor its neighbours wait for the UART.

#![no_std]
#![no_main]

use guest_rt::hv::{self, Entry};
use guest_rt::report::{self, fail, pass};

guest_rt::entry!(main);

const ROUNDS: usize = 8;
const BATCH: usize = 128;
const CHUNK: usize = 4096;

#[repr(C, align(4096))]
struct Text([u8; CHUNK]);

/// Printable text with a newline every 64 bytes.
static mut TEXT: Text = Text([0; CHUNK]);

fn main(_ram_size: u64, _vm_index: u64) -> ! {
    guest_rt::trap::init();
    report::start("hostile-console-flood");
    // SAFETY: single vCPU, written once before any hypercall reads it.
    let text = unsafe { &mut (*core::ptr::addr_of_mut!(TEXT)).0 };
    for (i, b) in text.iter_mut().enumerate() {
        *b = if i % 64 == 63 {
            b'\n'
        } else {
            b'a' + (i % 26) as u8
        };
    }
    let gpa = text.as_ptr() as u64;
    let mut batch = [Entry::new(hv::CONSOLE_WRITE, gpa, CHUNK as u64); BATCH];
    let start = guest_rt::cpu::rdtsc();
    let mut ok = 0;
    for _ in 0..ROUNDS {
        if hv::multicall(&mut batch) == Ok(BATCH as i64)
            && batch.iter().all(|e| e.result == CHUNK as i64)
        {
            ok += 1;
        }
    }
    let ticks = guest_rt::cpu::rdtsc() - start;
    // Its console bucket is empty now: wait a second (CPUID 0x16: the TSC rate) so these
    // report lines fit in it again.
    let hz = u64::from(guest_rt::cpu::cpuid(0x16, 0).eax) * 1_000_000;
    let waited = guest_rt::cpu::rdtsc();
    while guest_rt::cpu::rdtsc() - waited < hz {
        core::hint::spin_loop();
    }
    guest_rt::say!(
        "flood: {} bytes in {ROUNDS} multicalls, {ticks} TSC ticks",
        ROUNDS * BATCH * CHUNK
    );
    if ok == ROUNDS {
        pass("flood-accepted");
    } else {
        fail(
            "flood-accepted",
            format_args!("{ok} of {ROUNDS} multicalls wrote everything"),
        );
    }
    report::done()
}
