//! The memory of an instant clone (issue 18; docs/architecture.md, "Instant clones"), the
//! hardware-independent part: which host frame backs each 4 KiB page of the clone's RAM, and
//! what an access to a page that has none yet needs.
//!
//! A clone starts with nothing mapped in its EPT. Its RAM is the snapshot's: the snapshot's
//! data pages sit once in the *base*, frames every clone of the snapshot shares and none
//! writes; its zero pages are in no frame at all. The first access to a page is an EPT
//! violation (SDM Vol. 3C §29.3.3), and [`ClonePages::fault`] says what it needs:
//!
//! - a read or fetch of a base page: map the base frame read and execute only ([`Fault::MapShared`]);
//! - a write to a base page (first access or after the read-only mapping): copy it into a
//!   frame of the clone's own and map that writable ([`Fault::Copy`]: copy-on-write);
//! - any access to a zero page: a zeroed frame of its own, mapped writable ([`Fault::Zero`]);
//! - a page with its own frame already: not a fault this module explains ([`Fault::Mapped`]).
//!
//! So the snapshot's memory is never written, a clone's writes land only in its own frames,
//! and a clone holds only the pages it wrote (or touched, for zero pages). The hypervisor's own
//! accesses for the guest (device DMA) ask the same questions ([`ClonePages::backing`]).
//!
//! Frames are opaque 4 KiB-aligned addresses here; the kernel allocates, copies and maps
//! them.

use alloc::vec::Vec;

/// A page's entry: 0 follows the base, [`DETACHED`] is zero whatever the base holds (the
/// guest released it, `MEM_RELEASE`), anything else is an own frame's address | [`OWN`].
const FOLLOW_BASE: u64 = 0;
const DETACHED: u64 = 2;
const OWN: u64 = 1;
/// Frames are 4 KiB aligned: the low 12 bits of an entry are free for the tags.
const FRAME_MASK: u64 = !0xfff;

/// What backs one page of a clone's RAM now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backing {
    /// Zero, in no frame (reads see zeros).
    Zero,
    /// The snapshot base's frame: read-only for the clone.
    Shared(u64),
    /// A frame of the clone's own.
    Own(u64),
}

/// What an EPT violation on a page of the clone needs ([`ClonePages::fault`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Map the base frame readable and executable, not writable.
    MapShared(u64),
    /// Allocate a frame, copy the base frame into it, map it with full access (and, if the
    /// base frame was mapped read-only before, invalidate that translation everywhere).
    Copy { from: u64 },
    /// Allocate a zeroed frame and map it with full access.
    Zero,
    /// The page has its own frame: the violation is not a clone's (a genuine one).
    Mapped(u64),
    /// The page is not RAM of this clone.
    Outside,
}

/// A clone's faults and frames, for its statistics and the benchmark.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CloneCounters {
    /// Base pages mapped read-only on a first read or fetch.
    pub shared_maps: u64,
    /// Base pages copied on a write (copy-on-write faults).
    pub copies: u64,
    /// Zero pages given a frame on first touch.
    pub zero_fills: u64,
    /// Frames of its own it holds now.
    pub own_frames: u64,
}

/// The snapshot base a clone follows: for each page of RAM, the frame holding its data, or
/// none for a zero page.
pub trait Base {
    /// Pages of RAM the base covers.
    fn pages(&self) -> u64;
    /// The frame of page `page`, `None` for a zero page (or a page past the end).
    fn frame(&self, page: u64) -> Option<u64>;
}

/// A plain base: one entry per page, 0 for a zero page (frames are never at address 0 in
/// a base the kernel builds, and the tests use nonzero addresses).
impl Base for [u64] {
    fn pages(&self) -> u64 {
        self.len() as u64
    }
    fn frame(&self, page: u64) -> Option<u64> {
        self.get(usize::try_from(page).ok()?)
            .copied()
            .filter(|&f| f != 0)
    }
}

/// Each page's backing beyond the base (one u64 per 4 KiB page: 8 bytes of hypervisor heap
/// per 4 KiB of clone RAM) and the counters.
#[derive(Debug, Clone, Default)]
pub struct ClonePages {
    entries: Vec<u64>,
    counters: CloneCounters,
}

impl ClonePages {
    /// `pages` pages, all following the base.
    pub fn new(pages: u64) -> Self {
        ClonePages {
            entries: alloc::vec![FOLLOW_BASE; pages as usize],
            counters: CloneCounters::default(),
        }
    }

    pub fn pages(&self) -> u64 {
        self.entries.len() as u64
    }

    pub fn counters(&self) -> CloneCounters {
        self.counters
    }

    /// What backs `page` now.
    pub fn backing<B: Base + ?Sized>(&self, base: &B, page: u64) -> Option<Backing> {
        let entry = *self.entries.get(usize::try_from(page).ok()?)?;
        Some(match entry {
            FOLLOW_BASE => base.frame(page).map_or(Backing::Zero, Backing::Shared),
            DETACHED => Backing::Zero,
            own => Backing::Own(own & FRAME_MASK),
        })
    }

    /// What an access to `page` that the EPT did not allow needs (`write`: the access was a
    /// write). Counts nothing: [`ClonePages::mapped_shared`] and [`ClonePages::own`] count
    /// what was done.
    pub fn fault<B: Base + ?Sized>(&self, base: &B, page: u64, write: bool) -> Fault {
        match self.backing(base, page) {
            None => Fault::Outside,
            Some(Backing::Zero) => Fault::Zero,
            Some(Backing::Shared(frame)) if write => Fault::Copy { from: frame },
            Some(Backing::Shared(frame)) => Fault::MapShared(frame),
            Some(Backing::Own(frame)) => Fault::Mapped(frame),
        }
    }

    /// The base frame of `page` was mapped read-only.
    pub fn mapped_shared(&mut self) {
        self.counters.shared_maps += 1;
    }

    /// `page` now has its own `frame` (4 KiB aligned, not 0): `copied` when it holds a copy
    /// of the base page, else it was zero. Returns the frame it replaces, if the page had one
    /// (the caller frees it).
    pub fn own(&mut self, page: u64, frame: u64, copied: bool) -> Option<u64> {
        debug_assert!(frame != 0 && frame & !FRAME_MASK == 0);
        let entry = self.entries.get_mut(usize::try_from(page).ok()?)?;
        let old = core::mem::replace(entry, frame | OWN);
        if copied {
            self.counters.copies += 1;
        } else {
            self.counters.zero_fills += 1;
        }
        match old {
            FOLLOW_BASE | DETACHED => {
                self.counters.own_frames += 1;
                None
            }
            old => Some(old & FRAME_MASK),
        }
    }

    /// `MEM_RELEASE` of `page`: it reads as zero from now on, whatever the base holds; returns
    /// its own frame, if it had one (the caller frees it after unmapping it).
    pub fn release(&mut self, page: u64) -> Option<u64> {
        let entry = self.entries.get_mut(usize::try_from(page).ok()?)?;
        match core::mem::replace(entry, DETACHED) {
            FOLLOW_BASE | DETACHED => None,
            old => {
                self.counters.own_frames -= 1;
                Some(old & FRAME_MASK)
            }
        }
    }

    /// A new start from the base: every page follows it again, the counters are cleared;
    /// returns the own frames to free (after the EPT no longer maps them).
    pub fn reset(&mut self) -> Vec<u64> {
        let frames = self
            .entries
            .iter_mut()
            .filter_map(|e| match core::mem::replace(e, FOLLOW_BASE) {
                FOLLOW_BASE | DETACHED => None,
                own => Some(own & FRAME_MASK),
            })
            .collect();
        self.counters = CloneCounters::default();
        frames
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 4 pages: 0 and 2 hold data in the base, 1 and 3 are zero.
    const BASE: [u64; 4] = [0x10_0000, 0, 0x20_0000, 0];

    #[test]
    fn first_accesses_map_the_base_read_only_copy_it_on_write_and_fill_zero_pages() {
        let pages = ClonePages::new(4);
        let base: &[u64] = &BASE;
        assert_eq!(pages.fault(base, 0, false), Fault::MapShared(0x10_0000));
        assert_eq!(pages.fault(base, 0, true), Fault::Copy { from: 0x10_0000 });
        assert_eq!(pages.fault(base, 1, false), Fault::Zero);
        assert_eq!(pages.fault(base, 1, true), Fault::Zero);
        assert_eq!(pages.fault(base, 4, false), Fault::Outside);
        assert_eq!(pages.fault(base, u64::MAX, true), Fault::Outside);
        assert_eq!(pages.backing(base, 2), Some(Backing::Shared(0x20_0000)));
        assert_eq!(pages.backing(base, 3), Some(Backing::Zero));
    }

    #[test]
    fn an_own_frame_replaces_the_base_and_is_counted_once() {
        let mut pages = ClonePages::new(4);
        let base: &[u64] = &BASE;
        pages.mapped_shared();
        assert_eq!(pages.own(0, 0x7000, true), None);
        assert_eq!(pages.own(1, 0x8000, false), None);
        assert_eq!(pages.backing(base, 0), Some(Backing::Own(0x7000)));
        assert_eq!(pages.fault(base, 0, true), Fault::Mapped(0x7000));
        assert_eq!(pages.fault(base, 1, false), Fault::Mapped(0x8000));
        // The base is untouched: another clone still follows it.
        let other = ClonePages::new(4);
        assert_eq!(other.backing(base, 0), Some(Backing::Shared(0x10_0000)));
        assert_eq!(
            pages.counters(),
            CloneCounters {
                shared_maps: 1,
                copies: 1,
                zero_fills: 1,
                own_frames: 2
            }
        );
        // Replacing an own frame hands the old one back and does not count a second frame.
        assert_eq!(pages.own(0, 0x9000, true), Some(0x7000));
        assert_eq!(pages.counters().own_frames, 2);
        assert_eq!(pages.own(9, 0xa000, true), None);
        assert_eq!(pages.counters().own_frames, 2);
    }

    #[test]
    fn a_released_page_reads_zero_even_where_the_base_has_data() {
        let mut pages = ClonePages::new(4);
        let base: &[u64] = &BASE;
        assert_eq!(pages.release(2), None);
        assert_eq!(pages.backing(base, 2), Some(Backing::Zero));
        assert_eq!(pages.fault(base, 2, false), Fault::Zero);
        let _ = pages.own(0, 0x7000, true);
        assert_eq!(pages.release(0), Some(0x7000));
        assert_eq!(pages.counters().own_frames, 0);
        assert_eq!(pages.release(0), None);
        assert_eq!(pages.release(4), None);
    }

    #[test]
    fn a_reset_hands_back_every_own_frame_and_follows_the_base_again() {
        let mut pages = ClonePages::new(4);
        let base: &[u64] = &BASE;
        let _ = pages.own(0, 0x7000, true);
        let _ = pages.own(3, 0x8000, false);
        let _ = pages.release(2);
        let mut freed = pages.reset();
        freed.sort_unstable();
        assert_eq!(freed, [0x7000, 0x8000]);
        assert_eq!(pages.counters(), CloneCounters::default());
        assert_eq!(pages.backing(base, 0), Some(Backing::Shared(0x10_0000)));
        assert_eq!(pages.backing(base, 2), Some(Backing::Shared(0x20_0000)));
        assert_eq!(pages.backing(base, 3), Some(Backing::Zero));
    }

    #[test]
    fn a_base_shorter_than_the_clone_reads_zero_past_its_end() {
        let pages = ClonePages::new(8);
        let base: &[u64] = &BASE;
        assert_eq!(pages.backing(base, 6), Some(Backing::Zero));
        assert_eq!(pages.fault(base, 7, true), Fault::Zero);
    }
}
