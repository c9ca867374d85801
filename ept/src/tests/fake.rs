//! A fake frame allocator and table memory. Frames live at
//! `BASE + i * 4 KiB`; recycled and fresh frames are filled with garbage so
//! tests notice if the builder relies on zeroed frames.

use std::cell::OnceCell;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::entry::{self, entry_size, is_leaf, is_present};
use crate::{Ept, EptConfig, FrameAllocator, Hpa, TableMemory};

pub const BASE: u64 = 0x40_0000_0000;
const GARBAGE: u64 = 0xdead_beef_0000_0fff;

#[derive(Debug)]
pub struct FakeAlloc {
    capacity: usize,
    next: usize,
    free: Vec<Hpa>,
    allocated: BTreeSet<u64>,
    /// Hand out this misaligned frame next (for error tests).
    pub bogus_next: Option<Hpa>,
}

impl FakeAlloc {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            next: 0,
            free: Vec::new(),
            allocated: BTreeSet::new(),
            bogus_next: None,
        }
    }

    /// Frames handed out and not yet freed.
    pub fn outstanding(&self) -> usize {
        self.allocated.len()
    }

    /// Frames that can still be allocated.
    pub fn available(&self) -> usize {
        self.free.len() + (self.capacity - self.next)
    }

    /// Lowers the capacity so that exactly `n` more frames can be allocated.
    pub fn limit_to(&mut self, n: usize) {
        while self.free.len() > n {
            self.free.remove(0);
        }
        let fresh = n - self.free.len();
        self.capacity = self.next + fresh;
    }
}

impl FrameAllocator for FakeAlloc {
    fn allocate_table(&mut self) -> Option<Hpa> {
        if let Some(bogus) = self.bogus_next.take() {
            self.allocated.insert(bogus.as_u64());
            return Some(bogus);
        }
        let frame = match self.free.pop() {
            Some(f) => f,
            None if self.next < self.capacity => {
                self.next += 1;
                Hpa::new(BASE + (self.next as u64 - 1) * 4096)
            }
            None => return None,
        };
        assert!(
            self.allocated.insert(frame.as_u64()),
            "{frame:?} handed out twice"
        );
        Some(frame)
    }

    fn free_table(&mut self, frame: Hpa) {
        assert!(
            self.allocated.remove(&frame.as_u64()),
            "free of unallocated {frame:?}"
        );
        if frame.as_u64().is_multiple_of(4096) {
            self.free.push(frame);
        }
    }
}

#[derive(Debug)]
pub struct FakeMem {
    frames: Vec<OnceCell<Box<[AtomicU64; 512]>>>,
}

impl FakeMem {
    pub fn new(capacity: usize) -> Self {
        Self {
            frames: (0..capacity).map(|_| OnceCell::new()).collect(),
        }
    }

    /// Raw entry, for white-box checks.
    pub fn entry(&self, frame: Hpa, idx: usize) -> u64 {
        self.table(frame)[idx].load(Ordering::Relaxed)
    }

    pub fn set_entry(&self, frame: Hpa, idx: usize, value: u64) {
        self.table(frame)[idx].store(value, Ordering::Relaxed)
    }
}

// SAFETY: there is no real hardware here; every frame the fake allocator hands
// out is backed by its own boxed array, which is all the tests rely on.
unsafe impl TableMemory for FakeMem {
    fn table(&self, frame: Hpa) -> &[AtomicU64; 512] {
        let offset = frame
            .as_u64()
            .checked_sub(BASE)
            .expect("frame below the fake's base");
        let idx = usize::try_from(offset / 4096).expect("frame index");
        self.frames[idx].get_or_init(|| Box::new(std::array::from_fn(|_| AtomicU64::new(GARBAGE))))
    }
}

pub type FakeEpt = Ept<FakeAlloc, FakeMem>;

pub fn new_ept(config: EptConfig, capacity: usize) -> FakeEpt {
    Ept::new(FakeAlloc::new(capacity), FakeMem::new(capacity), config).expect("new ept")
}

/// Walks the raw tables: returns the number of reachable tables and checks
/// that no non-root table is empty and that every entry is well formed.
pub fn audit(ept: &FakeEpt) -> usize {
    fn rec(mem: &FakeMem, table: Hpa, level: u8, is_root: bool) -> usize {
        let mut count = 1;
        let mut present = 0;
        for idx in 0..512 {
            let e = mem.entry(table, idx);
            if !is_present(e) {
                assert_eq!(e, 0, "not-present entry with stray bits at level {level}");
                continue;
            }
            present += 1;
            assert!(e & entry::PERM_MASK & entry::WRITE == 0 || e & entry::READ != 0);
            if is_leaf(e, level) {
                assert_eq!(entry::address(e) % entry_size(level), 0, "misaligned leaf");
            } else {
                assert!(level > 1);
                assert_eq!(e & 0b111, 0b111, "non-leaf entries grant RWX");
                assert_eq!(e & entry::LARGE, 0);
                count += rec(mem, Hpa::new(entry::address(e)), level - 1, false);
            }
        }
        assert!(
            is_root || present > 0,
            "empty table left linked at level {level}"
        );
        count
    }
    rec(ept.memory(), ept.eptp().pml4(), 4, true)
}
