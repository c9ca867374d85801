use super::policy::{ClassStats, Costs, PageClass, Policy};
use super::*;
use alloc::collections::BTreeMap;
use alloc::string::ToString;

/// A toy host memory: frame → content (one byte stands for the page).
struct Host {
    frames: BTreeMap<Frame, u8>,
    next: Frame,
}

impl Host {
    fn new() -> Self {
        Host {
            frames: BTreeMap::new(),
            next: 100,
        }
    }
    fn alloc(&mut self, content: u8) -> Frame {
        self.next += 1;
        self.frames.insert(self.next, content);
        self.next
    }
}

/// Four VMs with eight pages each: pages 0-3 alike across VMs (kernel text), 4-7 their own.
#[test]
fn merging_and_cow_keep_every_guest_page_right_and_free_each_frame_once() {
    let mut host = Host::new();
    // Guest page → the frame it maps and whether it is writable.
    let mut map: BTreeMap<GuestPage, (Frame, bool)> = BTreeMap::new();
    for vm in 0..4u16 {
        for gfn in 0..8u64 {
            let content = if gfn < 4 {
                gfn as u8
            } else {
                (vm * 10) as u8 + gfn as u8
            };
            map.insert((vm, gfn), (host.alloc(content), true));
        }
    }
    let expect: BTreeMap<GuestPage, u8> = map
        .iter()
        .map(|(&p, &(f, _))| (p, host.frames[&f]))
        .collect();
    let mut shared = SharedPages::new();
    let mut freed = 0;
    // A deliberately weak hash: pages 4-7 collide with 0-3.
    let hash = |c: u8| u64::from(c % 4);
    for (&page, entry) in map.iter_mut() {
        let content = host.frames[&entry.0];
        let frames = &host.frames;
        match shared.merge(page, entry.0, hash(content), |a, b| {
            frames[&a] == frames[&b]
        }) {
            MergeOutcome::Merged {
                shared: s,
                freed: f,
            } => {
                assert_eq!(f, entry.0);
                *entry = (s, false);
                host.frames.remove(&f).expect("a frame freed once");
                freed += 1;
            }
            MergeOutcome::Candidate => entry.1 = false,
            MergeOutcome::Differs | MergeOutcome::AlreadyShared => {}
        }
    }
    // Pages 0-3 of VMs 1-3 merged into VM 0's: 12 frames saved; no collision merged.
    assert_eq!(freed, 12);
    assert_eq!(shared.frames_freed, 12);
    assert_eq!(shared.shared_pages(), 16);
    for (p, &(f, _)) in &map {
        assert_eq!(host.frames[&f], expect[p], "{p:?} reads another page");
    }
    // Every VM writes every page: a copy where others still share, the frame back where it
    // was the last owner.
    for vm in 0..4u16 {
        for gfn in 0..8u64 {
            let page = (vm, gfn);
            let (frame, writable) = map[&page];
            if writable {
                assert_eq!(shared.cow_fault(page), CowOutcome::NotShared);
                continue;
            }
            match shared.cow_fault(page) {
                CowOutcome::Copy { from } => {
                    assert_eq!(from, frame);
                    let c = host.frames[&from];
                    map.insert(page, (host.alloc(c), true));
                }
                CowOutcome::Reclaim { frame: f } => {
                    assert_eq!(f, frame);
                    map.insert(page, (f, true));
                }
                CowOutcome::NotShared => panic!("{page:?} was read-only but not shared"),
            }
        }
    }
    assert_eq!(shared.cow_copies, 12);
    assert_eq!(shared.shared_pages(), 0);
    // Each guest page has its own frame with its own content again.
    let mut seen = alloc::collections::BTreeSet::new();
    for (p, &(f, w)) in &map {
        assert!(w && seen.insert(f), "{p:?}");
        assert_eq!(host.frames[&f], expect[p]);
    }
}

#[test]
fn a_stopping_vm_gives_back_only_frames_nobody_else_maps() {
    let mut s = SharedPages::new();
    let same = |_: Frame, _: Frame| true;
    assert_eq!(s.merge((0, 1), 10, 7, same), MergeOutcome::Candidate);
    assert_eq!(
        s.merge((1, 1), 11, 7, same),
        MergeOutcome::Merged {
            shared: 10,
            freed: 11
        }
    );
    assert_eq!(s.merge((1, 1), 11, 7, same), MergeOutcome::AlreadyShared);
    assert_eq!(s.merge((0, 2), 12, 9, same), MergeOutcome::Candidate);
    // VM 0 stops: frame 10 is still VM 1's page, frame 12 was only VM 0's.
    assert_eq!(s.release_vm(0), [12]);
    assert_eq!(s.owners(10), [(1, 1)]);
    assert_eq!(s.release_vm(1), [10]);
    assert_eq!(s.shared_pages(), 0);
    assert_eq!(s.cow_copies, 0);
}

fn costs() -> Costs {
    Costs {
        page_value: 2_000,
        cow_zero: 3_000,
        cow_copy: 10_000,
    }
}

#[test]
fn the_threshold_follows_the_costs_and_p_fs_the_observed_faults() {
    let mut p = Policy::new(costs());
    // Zero pages: 2,000 / 3,000 = 0.6667; others 2,000 / 10,000 = 0.2.
    assert_eq!(p.threshold_ppm(PageClass::Zero), 666_666);
    assert_eq!(p.threshold_ppm(PageClass::Other), 200_000);
    // Nothing observed: p_fs = 1/2, so zero pages merge and the others wait.
    assert!(p.decide(PageClass::Zero).merge);
    assert!(!p.decide(PageClass::KernelImage).merge);
    // Kernel text: 1,000 page-periods merged, 3 faults: p_fs = 4/1002, merge.
    p.period(PageClass::KernelImage, 1_000);
    for _ in 0..3 {
        p.cow_fault(PageClass::KernelImage);
    }
    let d = p.decide(PageClass::KernelImage);
    assert_eq!(d.p_fs_ppm, 3_992);
    assert!(d.merge);
    assert_eq!(
        d.to_string(),
        "kernel-image: p_fs=0.0039 threshold=0.2000 -> merge"
    );
    // Anonymous memory written half the time: p_fs ≈ 0.5 > 0.2, keep.
    p.period(PageClass::Other, 100);
    for _ in 0..50 {
        p.cow_fault(PageClass::Other);
    }
    assert!(!p.decide(PageClass::Other).merge);
    // A page worth more than a fault always merges (threshold capped at 1).
    let rich = Policy::new(Costs {
        page_value: 50_000,
        ..costs()
    });
    assert_eq!(rich.threshold_ppm(PageClass::Other), 1_000_000);
    assert!(rich.decide(PageClass::Other).merge);
    // Faults beyond the periods (a fault storm) count as one per period: (3 + 1) / (3 + 2).
    let storm = ClassStats {
        merged_periods: 3,
        cow_faults: 1_000,
    };
    assert_eq!(storm.p_fs_ppm(), 800_000);
}

#[test]
fn pages_are_classed_by_content_then_address() {
    let kernel = (0x100_0000, 0x180_0000);
    assert_eq!(PageClass::of(0x100_0000, kernel, true), PageClass::Zero);
    assert_eq!(
        PageClass::of(0x100_0000, kernel, false),
        PageClass::KernelImage
    );
    assert_eq!(PageClass::of(0x180_0000, kernel, false), PageClass::Other);
}
