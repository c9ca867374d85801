//! `hostile-masked-halt`: programs PIT channel 0 for a period of one PIT tick (count 1, the
//! shortest there is), masks every PIC input (OCW1 0xFF on both chips) and sleeps with
//! `sti; hlt`. No device can ever interrupt it: the hypervisor must stop the VM ("nothing can
//! wake it") at once, and the PIT's 1.19 MHz deadline must not cut anyone else's slices.

#![no_std]
#![no_main]

use guest_rt::cpu::outb;
use guest_rt::report;

guest_rt::entry!(main);

fn main(_ram_size: u64, _vm_index: u64) -> ! {
    report::start("hostile-masked-halt");
    // 8254: channel 0, lobyte/hibyte, mode 2, count 1; then mask both 8259As.
    for (port, value) in [
        (0x43, 0x34),
        (0x40, 1),
        (0x40, 0),
        (0x21, 0xff),
        (0xa1, 0xff),
    ] {
        outb(port, value);
    }
    guest_rt::say!("attempt sti; hlt with every interrupt line masked");
    // SAFETY: deliberately sleeps where nothing can wake it; the hypervisor must stop the VM.
    unsafe { core::arch::asm!("sti", "hlt", options(nomem, nostack)) };
    report::fail(
        "masked-halt",
        format_args!("woke from HLT with every line masked (the hypervisor must stop the VM)"),
    );
    report::done()
}
