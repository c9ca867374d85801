//! `hostile-oob-write`: writes the 8 bytes just past the end of guest RAM. Expected: the
//! hypervisor stops the VM at the write (EPT violation); nothing is written anywhere.

#![no_std]
#![no_main]

use guest_rt::report;

guest_rt::entry!(main);

fn main(ram_size: u64, _vm_index: u64) -> ! {
    guest_rt::trap::init();
    report::start("hostile-oob-write");
    // SAFETY: identity-mapped (RAM is far below 4 GiB) and outside guest RAM: the write must
    // stop the VM.
    unsafe { hostile::attempt_write(ram_size, 0x5A5A_5A5A_5A5A_5A5A) };
    hostile::survived("oob-write", ram_size);
    report::done()
}
