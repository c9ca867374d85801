//! `hostile-oob-read`: reads guest-physical memory 4 MiB beyond the end of RAM (inside the
//! guest's identity map, outside every EPT mapping). Expected: the hypervisor stops the VM at
//! the first read and reports the EPT violation; the guest prints nothing after `attempt`.

#![no_std]
#![no_main]

use guest_rt::report;

guest_rt::entry!(main);

fn main(ram_size: u64, _vm_index: u64) -> ! {
    guest_rt::trap::init();
    report::start("hostile-oob-read");
    let gpa = ram_size + (4 << 20);
    // SAFETY: the address is identity-mapped by the guest's page tables (below 4 GiB) and
    // outside guest RAM: the read must stop the VM.
    let v = unsafe { hostile::attempt_read(gpa) };
    hostile::survived("oob-read", gpa);
    guest_rt::say!("read returned {v:#x}");
    report::done()
}
