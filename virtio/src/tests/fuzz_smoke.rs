//! Deterministic pseudo-random robustness test: garbage rings, descriptors and MMIO
//! accesses must never panic or hang, and DEVICE_NEEDS_RESET must be sticky until reset.

use super::*;
use crate::memory::GuestMemory;
use crate::mmio::VirtioDevice;
use crate::spec::status;
use crate::testing::RAM_BASE;

/// xorshift64* PRNG.
pub(crate) struct Rng(pub u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    pub(crate) fn chance(&mut self, one_in: u64) -> bool {
        self.below(one_in) == 0
    }
}

const RAM: usize = 1 << 16;

/// A plausible-but-hostile address: mostly inside RAM, sometimes near the edges or wild.
fn addr(r: &mut Rng) -> u64 {
    match r.below(8) {
        0 => r.next(),
        1 => RAM_BASE + RAM as u64 - r.below(64),
        2 => RAM_BASE.wrapping_sub(r.below(64)),
        _ => RAM_BASE + r.below(RAM as u64),
    }
}

fn len(r: &mut Rng) -> u32 {
    match r.below(6) {
        0 => r.next() as u32,
        1 => 16 * r.below(80) as u32,
        2 => 0,
        _ => r.below(2048) as u32,
    }
}

/// Scribbles over the rings of queue `q` and publishes a random number of heads.
pub(crate) fn scribble(r: &mut Rng, d: &mut Driver, q: usize) {
    let dq = d.queues[q].clone();
    for i in 0..dq.size {
        let at = dq.desc + 16 * u64::from(i);
        let a = addr(r);
        let l = len(r);
        let flags = if r.chance(10) {
            r.next() as u16
        } else {
            r.below(8) as u16
        };
        let next = if r.chance(10) {
            r.next() as u16
        } else {
            r.below(u64::from(dq.size) + 1) as u16
        };
        d.mem.write_u64(at, a).unwrap();
        d.mem.write_u32(at + 8, l).unwrap();
        d.mem.write_u16(at + 12, flags).unwrap();
        d.mem.write_u16(at + 14, next).unwrap();
    }
    // Some indirect tables somewhere in RAM.
    for _ in 0..r.below(4) {
        let at = RAM_BASE + 16 * r.below(RAM as u64 / 16 - 1);
        for k in 0..r.below(8) {
            let p = at + 16 * k;
            if d.mem.check_range(p, 16).is_err() {
                break;
            }
            d.mem.write_u64(p, addr(r)).unwrap();
            d.mem.write_u32(p + 8, len(r)).unwrap();
            d.mem.write_u16(p + 12, r.below(8) as u16).unwrap();
            d.mem.write_u16(p + 14, r.below(8) as u16).unwrap();
        }
    }
    let heads = if r.chance(8) {
        r.next() as u16
    } else {
        r.below(8) as u16
    };
    for _ in 0..heads.min(dq.size) {
        let head = if r.chance(8) {
            r.next() as u16
        } else {
            r.below(u64::from(dq.size)) as u16
        };
        d.push_avail(q, head);
    }
    if r.chance(8) {
        d.set_avail_idx(q, r.next() as u16);
    }
    if r.chance(4) {
        d.set_used_event(q, r.next() as u16);
    }
    if r.chance(4) {
        d.set_avail_flags(q, r.next() as u16);
    }
}

/// Random MMIO accesses, including config space and status writes.
pub(crate) fn mmio_noise<D: VirtioDevice>(r: &mut Rng, d: &mut Driver, t: &mut MmioTransport<D>) {
    for _ in 0..r.below(4) {
        let off = if r.chance(2) {
            r.below(0x200)
        } else {
            4 * r.below(0x80)
        };
        let size = [1u8, 2, 4, 8, 3][r.below(5) as usize];
        if r.chance(2) {
            t.read(off, size);
        } else {
            // Avoid resetting too often so deeper states are reached.
            let v = if off == 0x70 { r.next() | 1 } else { r.next() };
            t.write(off, size, v, &mut d.mem);
        }
    }
}

#[test]
fn blk_fuzz_smoke() {
    let mut r = Rng(0x9e37_79b9_7f4a_7c15);
    let mut needs_reset = 0;
    for _ in 0..1500 {
        let features = r.next() | feature::VERSION_1;
        let mut t = MmioTransport::new(BlockDevice::new(RamDisk::new(8192)));
        let mut d = Driver::new(RAM);
        if d.setup(&mut t, features, [1u16, 2, 4, 16, 64][r.below(5) as usize])
            .is_err()
        {
            continue;
        }
        for _ in 0..4 {
            scribble(&mut r, &mut d, 0);
            d.kick(&mut t, 0);
            mmio_noise(&mut r, &mut d, &mut t);
            t.poll(&mut d.mem);
            if t.status() & status::DEVICE_NEEDS_RESET != 0 {
                needs_reset += 1;
                assert!(t.error().is_some());
                // Sticky until reset: the driver cannot clear it.
                t.write(0x70, 4, 0x0f, &mut d.mem);
                assert_ne!(t.status() & status::DEVICE_NEEDS_RESET, 0);
                break;
            }
        }
    }
    assert!(needs_reset > 100, "garbage rings should mostly be detected");
}

#[test]
fn queue_fuzz_random_memory() {
    // Completely random guest memory under a queue driven directly.
    let mut r = Rng(42);
    for _ in 0..2000 {
        let mut mem = crate::memory::VecMemory::new(0, 4096);
        for b in mem.as_mut_slice().iter_mut() {
            *b = r.below(4) as u8;
        }
        for _ in 0..16 {
            let off = r.below(4096);
            let v = r.next().to_le_bytes();
            let _ = mem.write(off, &v[..(4096 - off as usize).min(8)]);
        }
        let mut q = crate::queue::Queue::new(64);
        q.set_size(1 << r.below(7));
        q.set_desc_table(16 * r.below(256));
        q.set_avail_ring(2 * r.below(2048));
        q.set_used_ring(4 * r.below(1024));
        q.set_features(r.chance(2), r.chance(2));
        if q.activate(&mem).is_err() {
            continue;
        }
        for _ in 0..8 {
            match q.pop(&mem) {
                Ok(Some(c)) => {
                    assert!(c.descriptor_count() <= usize::from(q.size()));
                    assert!(c.readable_len() + c.writable_len() <= u64::from(u32::MAX));
                    let _ = q.add_used(&mut mem, c.head, r.next() as u32);
                }
                Ok(None) => break,
                Err(_) => break,
            }
            let _ = q.needs_interrupt(&mem);
            let _ = q.enable_notification(&mut mem);
        }
    }
}
