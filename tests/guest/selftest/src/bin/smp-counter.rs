//! `smp-counter`: every vCPU adds 1 to one shared counter with LOCK XADD exactly 100,000
//! times, then executes exactly 1000 + (its index) CPUID instructions (so the harness can
//! check each vCPU's CPUID exits and their sum), then counts itself done. vCPU 0 waits for all
//! of them, prints one line per vCPU and the total, and powers off; the others end in
//! `cli; hlt` once done and print nothing. Every line goes through CONSOLE_WRITE:
//!
//! ```text
//! guest smp-counter: smp: start vcpus=N
//! guest smp-counter: smp: vcpu I adds=100000 cpuids=K        (one per vCPU, K = 1000 + I)
//! guest smp-counter: smp: vcpus=N counter=TOTAL expected=N*100000
//! guest smp-counter: smp: ok                                 (or smp: FAIL <why>)
//! ```

#![no_std]
#![no_main]

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use guest_rt::hv::console_say;
use guest_rt::smp::{self, VcpuBoot, MAX_VCPUS};

guest_rt::smp_entry!(main);

const ADDS: u64 = 100_000;
const BASE_CPUIDS: u32 = 1000;
/// How long vCPU 0 waits for the others, in TSC ticks (about 80 s in Bochs at 50 MHz).
const WAIT_TICKS: u64 = 4_000_000_000;

static COUNTER: AtomicU64 = AtomicU64::new(0);
static DONE: AtomicU32 = AtomicU32::new(0);
/// What each vCPU did, for vCPU 0's report.
static ADDED: [AtomicU64; MAX_VCPUS] = [const { AtomicU64::new(0) }; MAX_VCPUS];
static CPUIDS: [AtomicU32; MAX_VCPUS] = [const { AtomicU32::new(0) }; MAX_VCPUS];

/// CPUID leaf 0 without guest_rt's shared call counter (a plain CPUID, one exit).
fn cpuid0() {
    // SAFETY: CPUID has no memory effects; RBX (reserved by LLVM) is saved and restored.
    unsafe {
        core::arch::asm!(
            "mov {save}, rbx",
            "cpuid",
            "mov rbx, {save}",
            save = out(reg) _,
            inout("eax") 0 => _,
            inout("ecx") 0 => _,
            out("edx") _,
            options(nostack, nomem, preserves_flags)
        );
    }
}

fn main(boot: VcpuBoot) -> ! {
    let me = boot.vcpu as usize;
    if me == 0 {
        guest_rt::trap::init();
        guest_rt::report::set_name("smp-counter");
        let _ = console_say(format_args!("smp: start vcpus={}", boot.vcpus));
        smp::release_others();
    } else {
        smp::wait_for_start();
    }
    let mut last = 0;
    for _ in 0..ADDS {
        last = smp::lock_xadd(&COUNTER, 1);
    }
    core::hint::black_box(last);
    ADDED[me].store(ADDS, Ordering::Relaxed);
    let cpuids = BASE_CPUIDS + boot.vcpu;
    for _ in 0..cpuids {
        cpuid0();
    }
    CPUIDS[me].store(cpuids, Ordering::Relaxed);
    DONE.fetch_add(1, Ordering::Release);
    if me != 0 {
        guest_rt::halt();
    }

    let all = smp::wait_until(WAIT_TICKS, || DONE.load(Ordering::Acquire) == boot.vcpus);
    let done = DONE.load(Ordering::Acquire);
    for i in 0..boot.vcpus as usize {
        let _ = console_say(format_args!(
            "smp: vcpu {i} adds={} cpuids={}",
            ADDED[i].load(Ordering::Relaxed),
            CPUIDS[i].load(Ordering::Relaxed)
        ));
    }
    let total = COUNTER.load(Ordering::Acquire);
    let expected = u64::from(boot.vcpus) * ADDS;
    let _ = console_say(format_args!(
        "smp: vcpus={} counter={total} expected={expected}",
        boot.vcpus
    ));
    if !all {
        let _ = console_say(format_args!(
            "smp: FAIL only {done} of {} vCPUs finished within {WAIT_TICKS} TSC ticks",
            boot.vcpus
        ));
    } else if total != expected {
        let _ = console_say(format_args!(
            "smp: FAIL counter {total} is not {expected}: an increment was lost"
        ));
    } else {
        let _ = console_say(format_args!("smp: ok"));
    }
    guest_rt::halt()
}
