//! `smp-triple`: a hostile two-vCPU guest. vCPU 0 announces itself and spins forever (it never
//! exits on its own); vCPU 1 loads an empty IDT and executes UD2, which cannot be delivered:
//! #UD → #GP → #DF → triple fault. The hypervisor must stop the whole VM (vCPU 0 too, kicked
//! out of its loop on the other CPU) and nothing else:
//!
//! ```text
//! guest smp-triple: smp-triple: vcpu 0 spinning
//! ```

#![no_std]
#![no_main]

use guest_rt::hv::console_say;
use guest_rt::smp::{self, VcpuBoot};

guest_rt::smp_entry!(main);

fn main(boot: VcpuBoot) -> ! {
    if boot.vcpu == 0 {
        guest_rt::report::set_name("smp-triple");
        let _ = console_say(format_args!("smp-triple: vcpu 0 spinning"));
        smp::release_others();
        loop {
            core::hint::spin_loop();
        }
    }
    smp::wait_for_start();
    // An IDT of limit 0: every vector is beyond it (SDM Vol. 3A §6.10), so the #UD becomes
    // #GP, then #DF, then a triple fault (§6.15, Table 6-5).
    let idtr: [u16; 5] = [0; 5];
    // SAFETY: the guest means to die here; nothing after it runs.
    unsafe {
        core::arch::asm!("lidt [{}]", "ud2", in(reg) idtr.as_ptr(), options(noreturn));
    }
}
