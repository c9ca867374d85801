//! `hostile-triple-fault`: loads an IDT with limit 0 and executes INT3. Delivering #BP fails
//! (#GP), delivering the #GP fails (#DF), delivering the #DF fails: triple fault. Expected:
//! the hypervisor stops the VM and reports the triple fault.

#![no_std]
#![no_main]

use guest_rt::report;

guest_rt::entry!(main);

/// A pseudo-descriptor for LIDT: limit, then base.
#[repr(C, packed)]
struct Idtr {
    limit: u16,
    base: u64,
}

fn main(_ram_size: u64, _vm_index: u64) -> ! {
    report::start("hostile-triple-fault");
    guest_rt::say!("attempt lidt limit=0, int3");
    let idtr = Idtr { limit: 0, base: 0 };
    // SAFETY: deliberately destroys exception delivery; interrupts are off, so only the INT3
    // raises an event, and it must end the VM.
    unsafe {
        core::arch::asm!("lidt [{p}]", "int3", p = in(reg) &idtr, options(nostack));
    }
    report::fail(
        "triple-fault",
        format_args!("survived INT3 with an empty IDT (the hypervisor must stop the VM)"),
    );
    report::done()
}
