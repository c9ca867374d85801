//! `hostile-host-memory`: tries to reach the hypervisor's own memory by writing across high
//! guest-physical addresses: 0x8000_0000 to 4 GiB in 16 MiB steps (skipping guest RAM and the
//! virtio-mmio page), then 4, 8, 16, ... 256 GiB through its own page tables. Expected: the
//! hypervisor stops the VM at the first write (0x8000_0000); every further `attempt` line in
//! the transcript, and any `FAIL`, is a failure.

#![no_std]
#![no_main]

use guest_rt::report;

guest_rt::entry!(main);

const STEP: u64 = 16 << 20;
const VIRTIO_MMIO: u64 = 0xD000_0000;
const GIB: u64 = 1 << 30;
const MARK: u64 = 0xB0B0_DEAD_BEEF_B0B0;

fn main(ram_size: u64, _vm_index: u64) -> ! {
    guest_rt::trap::init();
    report::start("hostile-host-memory");
    let mut survived = 0u32;
    let mut gpa = 0x8000_0000u64;
    while gpa < 4 * GIB {
        if gpa >= ram_size && gpa != VIRTIO_MMIO {
            // SAFETY: identity-mapped below 4 GiB, outside guest RAM: must stop the VM.
            unsafe { hostile::attempt_write(gpa, MARK) };
            hostile::survived("host-memory", gpa);
            survived += 1;
        }
        gpa += STEP;
    }
    let mut high = 4 * GIB;
    while high <= 256 * GIB {
        // SAFETY: above 4 GiB nothing of the guest is mapped; the write must stop the VM.
        unsafe {
            hostile::map_gib(high);
            hostile::attempt_write(high, MARK);
        }
        hostile::survived("host-memory", high);
        survived += 1;
        high *= 2;
    }
    guest_rt::say!("{survived} writes outside guest RAM completed");
    report::done()
}
