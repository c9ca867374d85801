//! `snapshot`: a guest whose state a snapshot must carry whole (issue 18). It fills 2 MiB of
//! its RAM with a xorshift sequence, programs the 8259A and the PIT (100 Hz) and counts
//! timer interrupts, then prints `guest snapshot: ready sum=S` and polls COM1's receiver. When a
//! key `g` or `h` arrives (typed through the shell's `console VM`), it checks the 2 MiB again, waits
//! for 20 more timer interrupts (the restored PIT and PIC still deliver), checks that its
//! TSC moved forward and that its stack and registers survived (a value computed before the
//! wait), and prints `guest snapshot: resumed sum=S same=1 ticks=20 tsc-forward=1 key=K` before
//! DONE. Run, snapshotted while it waits and restored, it prints the same line twice.
//!
//! The key `w` (for instant clones) writes every page of RAM from 2 MiB to its end, the
//! 2 MiB region included, with another sequence, checks it back and prints `guest snapshot:
//! scribbled pages=N ok=1`, then waits for its next key: a clone of the snapshot that does
//! this must change neither the snapshot's memory nor another clone's.

#![no_std]
#![no_main]

use core::sync::atomic::{AtomicU64, Ordering};
use guest_rt::cpu::{self, inb};
use guest_rt::report;

guest_rt::entry!(main);

static TICKS: AtomicU64 = AtomicU64::new(0);
const VECTOR_BASE: u8 = 0x20;
const PIT_HZ: u64 = 1_193_182;
const RATE_HZ: u64 = 100;
/// The region the guest fills and checks: [4 MiB, 6 MiB).
const REGION: u64 = 4 << 20;
const REGION_LEN: u64 = 2 << 20;
/// Timer interrupts awaited after the key (the restored PIT must keep interrupting).
const TICKS_AFTER: u64 = 20;
const LSR: u16 = guest_rt::uart::COM1 + 5;
const LSR_DATA_READY: u8 = 1;
/// The keys that end the wait (others are ignored).
const KEYS: &[u8] = b"gh";
/// The key that scribbles over RAM and goes on waiting.
const SCRIBBLE: u8 = b'w';
/// Where scribbling starts (the image, stack and page tables lie below).
const SCRIBBLE_FROM: u64 = 2 << 20;

/// Writes every word of [2 MiB, ram_size) with a sequence unlike `pass_over`'s, then checks
/// it back; returns (pages, whether every word read back).
fn scribble(ram_size: u64) -> (u64, bool) {
    let words = (ram_size - SCRIBBLE_FROM) / 8;
    let value = |i: u64| (i ^ 0xdead_beef_0000_0000).rotate_left(7);
    for i in 0..words {
        // SAFETY: [2 MiB, ram_size) is guest RAM this guest owns and nothing of it is code,
        // stack or page tables (all below 1 MiB + 64 KiB).
        unsafe { ((SCRIBBLE_FROM + i * 8) as *mut u64).write_volatile(value(i)) };
    }
    // SAFETY: as above, reads only.
    let ok = (0..words)
        .all(|i| unsafe { ((SCRIBBLE_FROM + i * 8) as *const u64).read_volatile() } == value(i));
    ((ram_size - SCRIBBLE_FROM) / 4096, ok)
}

#[no_mangle]
extern "C" fn snapshot_tick() {
    TICKS.fetch_add(1, Ordering::Relaxed);
    guest_rt::pic::eoi();
}

guest_rt::irq_stub!(snapshot_irq_stub, snapshot_tick);

/// xorshift64 over the region: writes it when `fill`, and returns the sum of its words.
fn pass_over(fill: bool) -> u64 {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut sum = 0u64;
    for i in 0..REGION_LEN / 8 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let p = (REGION + i * 8) as *mut u64;
        // SAFETY: [4 MiB, 6 MiB) is guest RAM this guest owns (its image is below 1 MiB +
        // 64 KiB, its stack below that; the test gives it 16 MiB).
        let v = unsafe {
            if fill {
                p.write_volatile(x);
            }
            p.read_volatile()
        };
        sum = sum.wrapping_add(v ^ i);
    }
    sum
}

fn main(ram_size: u64, _vm_index: u64) -> ! {
    guest_rt::trap::init();
    report::start("snapshot");
    // SAFETY: the stub saves every caller-saved register and ends with IRETQ.
    unsafe {
        guest_rt::trap::set_interrupt_gate(VECTOR_BASE, snapshot_irq_stub as *const () as u64)
    };
    guest_rt::pic::init(VECTOR_BASE, 0xFE);
    guest_rt::pic::pit_periodic((PIT_HZ / RATE_HZ) as u16);
    let sum = pass_over(true);
    // Kept in a register or on the stack across the snapshot.
    let witness = sum.rotate_left(17) ^ 0x5a5a;
    let t0 = cpu::rdtsc();
    guest_rt::say!("ready sum={sum:#018x}");
    // Interrupts on while waiting: the PIT keeps ticking (and is in the snapshot).
    let key = loop {
        // SAFETY: STI; HLT sleeps until the next interrupt, whose handler is installed.
        unsafe { core::arch::asm!("sti", "hlt", "cli", options(nomem, nostack)) };
        if inb(LSR) & LSR_DATA_READY != 0 {
            let byte = inb(guest_rt::uart::COM1);
            // Only a key the test types: Bochs's COM1 may repeat a byte of the shell's
            // command line after it, which then reaches this UART.
            if KEYS.contains(&byte) {
                break byte;
            }
            if byte == SCRIBBLE {
                let (pages, ok) = scribble(ram_size);
                guest_rt::say!("scribbled pages={pages} ok={}", u8::from(ok));
            }
        }
    };
    let again = pass_over(false);
    let start = TICKS.load(Ordering::Relaxed);
    while TICKS.load(Ordering::Relaxed) - start < TICKS_AFTER {
        // SAFETY: as above.
        unsafe { core::arch::asm!("sti", "hlt", "cli", options(nomem, nostack)) };
    }
    let t1 = cpu::rdtsc();
    let same = u8::from(again == sum && witness == sum.rotate_left(17) ^ 0x5a5a);
    guest_rt::say!(
        "resumed sum={again:#018x} same={same} ticks={} tsc-forward={} key={}",
        TICKS.load(Ordering::Relaxed) - start,
        u8::from(t1 > t0),
        key as char
    );
    if same == 1 {
        report::pass("memory-and-registers-survive");
    } else {
        report::fail(
            "memory-and-registers-survive",
            format_args!("sum {again:#x} != {sum:#x}"),
        );
    }
    report::done()
}
