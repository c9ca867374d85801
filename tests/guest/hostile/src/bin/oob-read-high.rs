//! `hostile-oob-read-high`: maps GPA 4 GiB (0x1_0000_0000) in its own page tables and reads
//! it. Expected: the hypervisor stops the VM at the read (EPT violation, no mapping there).

#![no_std]
#![no_main]

use guest_rt::report;

guest_rt::entry!(main);

const GPA: u64 = 0x1_0000_0000;

fn main(_ram_size: u64, _vm_index: u64) -> ! {
    guest_rt::trap::init();
    report::start("hostile-oob-read-high");
    // SAFETY: 4 GiB is above everything the guest uses; the mapping only adds translations.
    unsafe { hostile::map_gib(GPA) };
    // SAFETY: just mapped; the read must stop the VM.
    let v = unsafe { hostile::attempt_read(GPA) };
    hostile::survived("oob-read-high", GPA);
    guest_rt::say!("read returned {v:#x}");
    report::done()
}
