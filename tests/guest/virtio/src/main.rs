//! `virtio-client`: an independent virtio-mmio client for Bulkhead's virtio-blk (device 0,
//! GPA 0xD000_0000, IRQ 5) and virtio-net (device 1, GPA 0xD000_1000, IRQ 6), built on the
//! rcore-os `virtio-drivers` crate (a driver nobody here wrote) over an identity-mapped HAL.
//!
//! Checks, in order: blk-capacity, blk-write-read, blk-flush, blk-out-of-range,
//! blk-large-request (one 128 KiB segment: size_max binds only with VIRTIO_BLK_F_SIZE_MAX),
//! blk-batch-32, blk-interrupt, net-arp, net-ping, net-ping-1000; benchmarks (BENCH lines):
//! ping (1000 echo requests), blk-write-4k, blk-read-4k, blk-write-64k, blk-read-64k (16 MiB
//! each, less on a smaller disk), each with the exit counts it cost (EXIT_STATS deltas).
//!
//! On a disk whose device id is `store:NAME` (a disk-store disk) it runs only
//! blk-persist-write (blank disk) or blk-persist-read (a second boot), see `blk::persist`;
//! on a disk named `linger...` it then keeps writing unflushed data (8192 writes of 4 KiB,
//! `blk::linger`), so a test can cut the power while it is busy.
//!
//! With a virtio-net MAC of `52:54:00:f0:xx:xx` it only forges frames onto its network
//! (forge.rs) and reports what it sent.
//!
//! VM config: one `[[vm.NAME.virtio-blk]]` with `size = "20M"` (device 0), one
//! `[[vm.NAME.virtio-net]]` (device 1); 32 MiB RAM (README.md).

#![no_std]
#![no_main]
// `guest_rt::report::Detail` (a 240-byte line buffer) is the failure type of every check;
// the guest has megabytes of stack, so returning it by value is fine.
#![allow(clippy::result_large_err)]

extern crate alloc;

mod blk;
mod forge;
mod hal;
mod irq;
mod net;
mod stats;
mod util;

use guest_rt::report::{self, fail};
use guest_rt::say;

guest_rt::entry!(main);

#[global_allocator]
static HEAP: hal::Heap = hal::Heap;

fn main(ram_size: u64, vm_index: u64) -> ! {
    guest_rt::trap::init();
    report::start("virtio-client");
    say!(
        "ram={ram_size:#x} vm-index={vm_index} tsc-mhz={}",
        guest_rt::cpu::cpuid(0x16, 0).eax
    );
    irq::init();

    let s0 = stats::snapshot();
    let mut disk = match blk::open(irq::BLK_BASE) {
        Ok(d) => Some(d),
        Err(e) => {
            fail("blk-init", format_args!("{e}"));
            None
        }
    };
    if let Some(d) = disk.as_mut() {
        // A disk of a disk store (device id "store:NAME"): only the persistence check.
        let mut id = [0u8; 20];
        if d.device_id(&mut id).is_ok() && id.starts_with(b"store:") {
            blk::persist(d);
            if id.starts_with(b"store:linger") {
                blk::linger(d);
            }
            report::done()
        }
    }
    // Forging mode: attack the network, nothing else (forge.rs). Checked only after the
    // store-disk case, whose VMs have no net device (device 1's window does not exist there:
    // reading it would stop the VM).
    if forge::mac_at(irq::NET_BASE).starts_with(&forge::FORGE_PREFIX) {
        match net::open(irq::NET_BASE) {
            Ok(mut c) => forge::run(&mut c),
            Err(e) => fail("net-init", format_args!("{e}")),
        }
        report::done()
    }
    if let Some(d) = disk.as_mut() {
        let d1 = stats::delta(&s0, &stats::snapshot());
        say!("blk init: exits={} mmio_exits={}", d1.total, d1.mmio);
        blk::functional(d);
        blk::large_request(d);
        blk::batch(d);
    }

    match net::open(irq::NET_BASE) {
        Ok(mut c) => net::run(&mut c),
        Err(e) => fail("net-init", format_args!("{e}")),
    }

    if let Some(d) = disk.as_mut() {
        blk::benchmarks(d);
    }

    let (handed, live, allocs, pool) = hal::dma_usage();
    let (heap_used, heap_allocs, heap_frees) = hal::heap_usage();
    say!(
        "dma pool: {handed}/{pool} pages handed out in {allocs} allocations, {live} live; heap: {heap_used} bytes of arena, {heap_allocs} allocs, {heap_frees} frees"
    );
    report::done()
}
