//! `smp-kick`: measures the hypervisor's kick (an IPI that takes a vCPU on another CPU out of
//! the guest). vCPU 1 computes without exiting; vCPU 0 gives a scratch page back with
//! MEM_RELEASE 100 times, touching it between (the page faults back in). Each release changes
//! the VM's EPT, so the hypervisor kicks vCPU 1's CPU to flush it; the VM's report then counts
//! the kicks and their latency (`exits: kicks count= latency avg= worst=`). Lines:
//!
//! ```text
//! guest smp-kick: smp-kick: releases=100 ok
//! ```

#![no_std]
#![no_main]

use core::sync::atomic::{AtomicBool, Ordering};
use guest_rt::hv::{self, console_say};
use guest_rt::smp::{self, VcpuBoot};

guest_rt::smp_entry!(main);

const RELEASES: u32 = 100;
static STOP: AtomicBool = AtomicBool::new(false);

#[repr(C, align(4096))]
struct Page([u8; 4096]);
static mut SCRATCH: Page = Page([0; 4096]);

fn main(boot: VcpuBoot) -> ! {
    if boot.vcpu != 0 {
        smp::wait_for_start();
        // Interrupts on (nothing is ever injected into vCPU 1): Bochs 2.7 takes an
        // external-interrupt exit only while the guest has RFLAGS.IF = 1, although with
        // external-interrupt exiting IF does not block the exit (SDM Vol. 3C §26.2).
        // SAFETY: no interrupt reaches this vCPU (the 8259A's go to vCPU 0).
        unsafe { core::arch::asm!("sti", options(nomem, nostack)) };
        let mut x = 1u64;
        while !STOP.load(Ordering::Relaxed) {
            x = core::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
        guest_rt::halt();
    }
    guest_rt::trap::init();
    guest_rt::report::set_name("smp-kick");
    smp::release_others();
    let page = core::ptr::addr_of_mut!(SCRATCH) as u64;
    let mut ok = true;
    for i in 0..RELEASES {
        // Give the page back, then touch it: it faults back in zeroed (docs/hypercall-abi.md).
        // It returns the number of pages released.
        ok &= matches!(hv::call0(hv::MEM_RELEASE, [page, 1, 0, 0]), Ok(1));
        // SAFETY: the page is this guest's own; volatile so the touch really happens.
        unsafe { core::ptr::write_volatile(page as *mut u32, i) };
        // Give vCPU 1 time to be back in the guest before the next kick (about 20 µs).
        let start = guest_rt::cpu::rdtsc();
        while guest_rt::cpu::rdtsc().wrapping_sub(start) < 1000 {
            core::hint::spin_loop();
        }
    }
    STOP.store(true, Ordering::Relaxed);
    let _ = console_say(format_args!(
        "smp-kick: releases={RELEASES} {}",
        if ok { "ok" } else { "FAIL" }
    ));
    guest_rt::halt()
}
