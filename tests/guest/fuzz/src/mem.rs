//! The guest's memory map and the address generators.
//!
//! | GPA | use |
//! |---|---|
//! | `0 .. 1 MiB` | the hypervisor's GDT, TSS and page tables (0x1000..0x8FFF): never a target |
//! | `1 MiB ..` | this ELF (code, data, bss with the fuzzer's own stack) |
//! | `SCRATCH_BASE .. RAM end` | scratch: virtqueues, descriptor targets, hypercall buffers |
//!
//! The guest runs on a stack in its `.bss` (see `_start`), so the top of RAM, where the
//! hypervisor put the initial stack, is scratch too: a buffer that straddles the end of RAM
//! may be (wrongly) half-written by the hypervisor without hurting the fuzzer.
//!
//! Every address a generator returns is either inside scratch or deliberately invalid
//! (outside RAM, MMIO, non-canonical, wrapping), except GPA 0, returned only by
//! [`Mem::pointer`] whose callers never write more than 4 KiB there (page 0 is unused).

use crate::rng::Rng;

/// Start of the scratch region (4 MiB: well past the ELF, which is < 256 KiB).
pub const SCRATCH_BASE: u64 = 0x40_0000;
/// virtio-mmio window 0 (docs/vm-platform.md: device i at 0xD000_0000 + i × 0x1000).
pub const MMIO_BASE: u64 = 0xD000_0000;
pub const MMIO_STRIDE: u64 = 0x1000;
/// The local APIC's default base (SDM Vol. 3A §11.4.1): not mapped for Bulkhead guests.
const APIC_BASE: u64 = 0xFEE0_0000;
const GIB4: u64 = 0x1_0000_0000;
const NON_CANONICAL: u64 = 0x8000_0000_0000_0000;

#[derive(Debug, Clone, Copy)]
pub struct Mem {
    /// Guest RAM size in bytes (RDI at entry).
    pub ram: u64,
    /// Number of virtio-mmio windows the VM has.
    pub windows: u64,
}

impl Mem {
    pub fn scratch_len(&self) -> u64 {
        self.ram - SCRATCH_BASE
    }

    /// Whether `[gpa, gpa + len)` lies inside scratch.
    pub fn in_scratch(&self, gpa: u64, len: u64) -> bool {
        gpa >= SCRATCH_BASE && gpa.checked_add(len).is_some_and(|end| end <= self.ram)
    }

    /// A scratch address with room for `len` bytes, aligned to `align` (a power of two).
    pub fn scratch(&self, rng: &mut Rng, len: u64, align: u64) -> u64 {
        let room = self.scratch_len().saturating_sub(len).max(1);
        (SCRATCH_BASE + rng.below(room)) & !(align - 1)
    }

    /// A scratch address in the 64 KiB of `region` (0..self.regions()), aligned to `align`:
    /// rings, tables and buffers are drawn from a few small regions so they overlap often.
    pub fn region(&self, rng: &mut Rng, region: u64, len: u64, align: u64) -> u64 {
        const REGION: u64 = 0x1_0000;
        let base = SCRATCH_BASE + (region % self.regions()) * REGION;
        let room = REGION.saturating_sub(len).max(1);
        (base + rng.below(room)) & !(align - 1)
    }

    /// [`Mem::region`] of a random region.
    pub fn any_region(&self, rng: &mut Rng, len: u64, align: u64) -> u64 {
        let r = rng.below(self.regions());
        self.region(rng, r, len, align)
    }

    pub fn regions(&self) -> u64 {
        (self.scratch_len() / 0x1_0000).clamp(1, 8)
    }

    /// The base of virtio-mmio window `i`.
    pub fn window(&self, i: u64) -> u64 {
        MMIO_BASE + i * MMIO_STRIDE
    }

    /// A buffer or ring address for a device to access `len` bytes at: like [`Mem::pointer`]
    /// but never below scratch (a device may write far more than 4 KiB at GPA 0).
    pub fn dma_pointer(&self, rng: &mut Rng, len: u64) -> u64 {
        let p = self.pointer(rng, len);
        if p < SCRATCH_BASE {
            self.ram + p
        } else {
            p
        }
    }

    /// A guest-physical buffer address for the hypervisor to read or write `len` bytes at:
    /// scratch half of the time, otherwise invalid (RAM end and around it, MMIO, the APIC,
    /// 4 GiB, non-canonical, wrapping) or GPA 0.
    pub fn pointer(&self, rng: &mut Rng, len: u64) -> u64 {
        match rng.below(16) {
            0..=7 => self.scratch(rng, len.min(0x1_0000), 1),
            8 => self.ram - rng.below(64).min(len.max(1)),
            9 => self.ram + rng.below(0x2000),
            10 => self.window(rng.below(self.windows.max(1) + 1)) + rng.below(MMIO_STRIDE),
            11 => rng.pick(&[APIC_BASE, GIB4, GIB4 - 8, 0xFFFF_F000, 0]),
            12 => rng.pick(&[NON_CANONICAL, u64::MAX, u64::MAX - 7, 0x0000_8000_0000_0000]),
            13 => u64::MAX - rng.below(0x1000),
            14 => self.ram + rng.next() % (GIB4 * 64),
            _ => {
                // Random bits, pushed out of RAM if they landed in it.
                let v = rng.next();
                if v < self.ram {
                    v + self.ram
                } else {
                    v
                }
            }
        }
    }
}
