//! Page sharing across VMs (issue 18), the hardware-independent part: which pages are worth
//! merging ([`policy`]: the seed's p_fs threshold per page class) and the copy-on-write
//! bookkeeping of merged pages ([`SharedPages`]). The kernel's scanner (to come) hashes pages
//! in idle time, asks the policy, confirms identity byte for byte through the callback
//! [`SharedPages::merge`] takes, maps the shared frame read-only in each VM's EPT and, on the
//! EPT violation of a write, asks [`SharedPages::cow_fault`] whether to copy or to take the
//! frame back writable.

pub mod policy;

#[cfg(test)]
mod tests;

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

/// A host frame (its physical address >> 12).
pub type Frame = u64;
/// A guest page: (VM index, guest frame number).
pub type GuestPage = (u16, u64);

/// A frame shared read-only by several guest pages.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Shared {
    frame: Frame,
    hash: u64,
    owners: Vec<GuestPage>,
}

/// What [`SharedPages::merge`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MergeOutcome {
    /// The page now maps `shared` read-only; its own frame `freed` goes back to the allocator.
    Merged { shared: Frame, freed: Frame },
    /// No page with that content yet: the page's frame is now a candidate others can merge
    /// into (it stays mapped writable until a second page joins it).
    Candidate,
    /// A page with the same hash but other bytes (a hash collision): nothing changed.
    Differs,
    /// The page is already shared.
    AlreadyShared,
}

/// What a write to a shared page needs ([`SharedPages::cow_fault`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CowOutcome {
    /// Copy `from` into a new frame for the writer; the others keep sharing it.
    Copy { from: Frame },
    /// The writer was the last owner: map `frame` writable again, no copy.
    Reclaim { frame: Frame },
    /// The page is not shared (a stale fault): nothing to do.
    NotShared,
}

/// Merged pages and merge candidates, by content hash.
#[derive(Debug, Default)]
pub struct SharedPages {
    /// hash → the frames with that hash (usually one; collisions keep several).
    by_hash: BTreeMap<u64, Vec<Shared>>,
    /// Guest page → its frame's hash, for pages that are candidates or shared.
    pages: BTreeMap<GuestPage, u64>,
    /// Frames given back by merges (the saving) and taken by copies.
    pub frames_freed: u64,
    pub cow_copies: u64,
}

impl SharedPages {
    pub fn new() -> Self {
        Self::default()
    }

    /// Offers guest page `page`, held in `frame` with content hash `hash`. `identical(a, b)`
    /// compares two frames byte for byte (the hash alone never merges).
    pub fn merge(
        &mut self,
        page: GuestPage,
        frame: Frame,
        hash: u64,
        mut identical: impl FnMut(Frame, Frame) -> bool,
    ) -> MergeOutcome {
        if self.pages.contains_key(&page) {
            return MergeOutcome::AlreadyShared;
        }
        let list = self.by_hash.entry(hash).or_default();
        if let Some(s) = list.iter_mut().find(|s| identical(s.frame, frame)) {
            s.owners.push(page);
            self.pages.insert(page, hash);
            self.frames_freed += 1;
            return MergeOutcome::Merged {
                shared: s.frame,
                freed: frame,
            };
        }
        let collided = !list.is_empty();
        if collided {
            return MergeOutcome::Differs;
        }
        list.push(Shared {
            frame,
            hash,
            owners: alloc::vec![page],
        });
        self.pages.insert(page, hash);
        MergeOutcome::Candidate
    }

    /// A write to `page` faulted: it leaves the shared frame, which the writer either copies
    /// (others still share it) or takes back writable (it was the last owner).
    pub fn cow_fault(&mut self, page: GuestPage) -> CowOutcome {
        let outcome = self.leave(page);
        if matches!(outcome, CowOutcome::Copy { .. }) {
            self.cow_copies += 1;
        }
        outcome
    }

    fn leave(&mut self, page: GuestPage) -> CowOutcome {
        let Some(hash) = self.pages.remove(&page) else {
            return CowOutcome::NotShared;
        };
        let Some(list) = self.by_hash.get_mut(&hash) else {
            return CowOutcome::NotShared;
        };
        let Some(i) = list.iter().position(|s| s.owners.contains(&page)) else {
            return CowOutcome::NotShared;
        };
        let s = &mut list[i];
        s.owners.retain(|&p| p != page);
        let frame = s.frame;
        let outcome = if s.owners.is_empty() {
            list.remove(i);
            CowOutcome::Reclaim { frame }
        } else {
            CowOutcome::Copy { from: frame }
        };
        if list.is_empty() {
            self.by_hash.remove(&hash);
        }
        outcome
    }

    /// Guest pages that map a shared frame with at least one other (candidates excluded).
    pub fn shared_pages(&self) -> usize {
        self.by_hash
            .values()
            .flatten()
            .filter(|s| s.owners.len() > 1)
            .map(|s| s.owners.len())
            .sum()
    }

    /// The owners of `frame`, for checks and reports.
    pub fn owners(&self, frame: Frame) -> Vec<GuestPage> {
        self.by_hash
            .values()
            .flatten()
            .find(|s| s.frame == frame)
            .map_or_else(Vec::new, |s| s.owners.clone())
    }

    /// Every page of VM `vm` leaves its shared frames (the VM stopped): the frames no VM
    /// maps any more, which go back to the allocator. The VM's own RAM frames that other
    /// VMs' pages were merged into stay theirs until the last of them leaves.
    pub fn release_vm(&mut self, vm: u16) -> Vec<Frame> {
        let pages: Vec<GuestPage> = self.pages.keys().filter(|p| p.0 == vm).copied().collect();
        pages
            .into_iter()
            .filter_map(|p| match self.leave(p) {
                CowOutcome::Reclaim { frame } => Some(frame),
                _ => None,
            })
            .collect()
    }
}
