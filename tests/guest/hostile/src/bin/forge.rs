//! `hostile-forge`: tries to forge the run's verdict. After letting the other VMs run for a
//! while, it prints, on the UART and through CONSOLE_WRITE, lines that imitate the
//! hypervisor's own: the kernel's exit line `bulkhead: exit status 0 (ok)`, an exit-statistics
//! line of its own VM, a stop report and the DONE line of the selftest VM, and an ANSI escape
//! sequence that clears the operator's terminal (ESC [ 2 J). Then it spins for as long again
//! and powers off (`cli; hlt`): a harness that took the forged exit line would stop the run
//! before the hypervisor's real stop report of this VM (issue 9, finding 6 and "A guest can
//! forge the run's verdict").

#![no_std]
#![no_main]

use guest_rt::{cpu, hv, report, uart};

guest_rt::entry!(main);

/// TSC ticks to wait before forging (the selftest VM next to it finishes in less).
const WAIT_TICKS: u64 = 400_000_000;

/// The forged lines, each as the hypervisor would print it.
const FORGED: &[&[u8]] = &[
    b"vm forge: exits: CPUID count=999 ticks=1\n",
    b"vm selftest: stopped: guest halted with interrupts disabled (powered off) (RIP 0x100031) after 1 ticks\n",
    b"[selftest] guest selftest: DONE passed=21 failed=0\n",
    b"bulkhead: all VMs stopped (2 ran, 0 could not start)\n",
    b"\x1b[2J\x1b[H",
    b"bulkhead: exit status 0 (ok)\n",
];

fn main(_ram_size: u64, _vm_index: u64) -> ! {
    guest_rt::trap::init();
    report::start("hostile-forge");
    let start = cpu::rdtsc();
    while cpu::rdtsc().wrapping_sub(start) < WAIT_TICKS {
        core::hint::spin_loop();
    }
    report::say(format_args!("attempt forged hypervisor lines"));
    for line in FORGED {
        // At the start of a line on the UART: no `guest ...:` prefix of our own.
        uart::write_bytes(line);
    }
    for line in FORGED {
        let _ = hv::console_write(line);
    }
    let start = cpu::rdtsc();
    while cpu::rdtsc().wrapping_sub(start) < WAIT_TICKS {
        core::hint::spin_loop();
    }
    report::say(format_args!("forged lines printed, powering off"));
    // SAFETY: ends this VM (HLT with interrupts disabled).
    unsafe { core::arch::asm!("cli", "hlt", options(nomem, nostack)) };
    loop {
        core::hint::spin_loop();
    }
}
