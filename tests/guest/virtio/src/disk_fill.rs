//! `disk-fill`: a guest that tries to make the hypervisor allocate without bound. Its
//! virtio-blk disk is a copy-on-write disk over an archive image whose overlay budget is much
//! smaller than the disk (configuration `heap-budget`); the guest writes every 4 KiB block
//! (each write needs one overlay block), then reads every block back:
//! - blocks written before the budget ran out read back what was written;
//! - every later write is refused with VIRTIO_BLK_S_IOERR and leaves the block as the image
//!   had it (nothing partially written);
//! - the hypervisor counts the refusals (`budget-exceeded=`) and its heap stays inside the
//!   VM's reservation, while the VM next to it passes its checks.
//!
//! Output: `disk-fill: blocks=B written=W refused=R verified=V intact=I`, then PASS/FAIL
//! `budget-respected`. The image's block k holds the byte `k as u8` everywhere.

#![no_std]
#![no_main]
#![allow(clippy::result_large_err)]

extern crate alloc;

#[allow(dead_code)]
#[path = "blk.rs"]
mod blk;
#[allow(dead_code)]
#[path = "hal.rs"]
mod hal;
#[allow(dead_code)]
#[path = "irq.rs"]
mod irq;
#[allow(dead_code)]
#[path = "stats.rs"]
mod stats;
#[allow(dead_code)]
#[path = "util.rs"]
mod util;

use guest_rt::report::{self, fail, pass};
use guest_rt::say;

guest_rt::entry!(main);

#[global_allocator]
static HEAP: hal::Heap = hal::Heap;

const BLOCK: usize = 4096;
const SECTORS_PER_BLOCK: usize = BLOCK / 512;

/// What this guest writes into block `k`: a byte no image block holds (the image's are `k`).
fn written_byte(k: usize) -> u8 {
    (k as u8) ^ 0xa5
}

fn main(_ram_size: u64, _vm_index: u64) -> ! {
    guest_rt::trap::init();
    report::start("disk-fill");
    irq::init();
    let mut disk = match blk::open(irq::BLK_BASE) {
        Ok(d) => d,
        Err(e) => {
            fail("blk-init", format_args!("{e}"));
            report::done()
        }
    };
    let blocks = disk.capacity() as usize / SECTORS_PER_BLOCK;
    let mut buf = alloc::vec![0u8; BLOCK];
    let mut ok = alloc::vec![false; blocks];
    let (mut written, mut refused) = (0, 0);
    for (k, done) in ok.iter_mut().enumerate() {
        buf.fill(written_byte(k));
        match disk.write_blocks(k * SECTORS_PER_BLOCK, &buf) {
            Ok(()) => {
                *done = true;
                written += 1;
            }
            Err(_) => refused += 1,
        }
    }
    let (mut verified, mut intact) = (0, 0);
    for (k, &done) in ok.iter().enumerate() {
        if disk.read_blocks(k * SECTORS_PER_BLOCK, &mut buf).is_err() {
            continue;
        }
        let want = if done { written_byte(k) } else { k as u8 };
        if buf.iter().all(|&b| b == want) {
            if done {
                verified += 1;
            } else {
                intact += 1;
            }
        }
    }
    say!("disk-fill: blocks={blocks} written={written} refused={refused} verified={verified} intact={intact}");
    if written > 0 && refused > 0 && verified == written && intact == refused {
        pass("budget-respected");
    } else {
        fail(
            "budget-respected",
            format_args!(
                "{written} written, {refused} refused, {verified} verified, {intact} intact"
            ),
        );
    }
    report::done()
}
