//! When merging a page pays (the seed's policy): a merged page saves one frame for as long
//! as it stays shared, and costs a copy-on-write fault when a VM later writes it. Over one
//! scan period, merging a page of class *c* is worth it when the expected fault cost is below
//! the value of the frame saved:
//!
//! ```text
//! p_fs(c) · cost_cow(c) < value_page   ⇔   p_fs(c) < threshold(c) = value_page / cost_cow(c)
//! ```
//!
//! where p_fs(c) is the probability that a merged page of class *c* is written within a
//! period, measured from the COW faults the class has taken (Laplace's rule of succession,
//! (faults + 1) / (periods + 2): a class never observed starts at ½, so nothing is merged on
//! faith unless the threshold is above ½). Zero pages fault more cheaply than others (the
//! copy is a zero fill), so their threshold is higher.

use core::fmt;

/// The classes the scanner tells apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum PageClass {
    /// Every byte zero (freed or never-touched guest memory).
    Zero,
    /// Inside the guest kernel image the loader placed (text and read-only data mostly).
    KernelImage,
    /// Everything else (page cache, anonymous memory).
    Other,
}

pub const CLASSES: [PageClass; 3] = [PageClass::Zero, PageClass::KernelImage, PageClass::Other];

impl PageClass {
    fn index(self) -> usize {
        self as usize
    }

    pub fn name(self) -> &'static str {
        match self {
            PageClass::Zero => "zero",
            PageClass::KernelImage => "kernel-image",
            PageClass::Other => "other",
        }
    }

    /// A page's class: zero by content, kernel image by its guest-physical address.
    pub fn of(gpa: u64, kernel: (u64, u64), is_zero: bool) -> Self {
        if is_zero {
            PageClass::Zero
        } else if (kernel.0..kernel.1).contains(&gpa) {
            PageClass::KernelImage
        } else {
            PageClass::Other
        }
    }
}

/// What one class was observed to do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClassStats {
    /// Page-periods spent merged (one per merged page per scan period).
    pub merged_periods: u64,
    /// COW faults taken on merged pages of the class.
    pub cow_faults: u64,
}

impl ClassStats {
    /// p_fs as parts per million: (faults + 1) / (periods + 2).
    pub fn p_fs_ppm(&self) -> u64 {
        let faults = self.cow_faults.min(self.merged_periods) + 1;
        let periods = self.merged_periods + 2;
        (u128::from(faults) * 1_000_000 / u128::from(periods)) as u64
    }
}

/// The costs the decision weighs, in TSC ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Costs {
    /// What keeping one frame free for a period is worth.
    pub page_value: u64,
    /// One COW fault on a zero page: the exit, a frame zeroed, the EPT entry, the entry.
    pub cow_zero: u64,
    /// One COW fault on another page: the same with a 4 KiB copy.
    pub cow_copy: u64,
}

/// A merge decision for a class, with its reasons (for the report).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub class: PageClass,
    pub merge: bool,
    pub p_fs_ppm: u64,
    pub threshold_ppm: u64,
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: p_fs={}.{:04} threshold={}.{:04} -> {}",
            self.class.name(),
            self.p_fs_ppm / 1_000_000,
            self.p_fs_ppm % 1_000_000 / 100,
            self.threshold_ppm / 1_000_000,
            self.threshold_ppm % 1_000_000 / 100,
            if self.merge { "merge" } else { "keep" }
        )
    }
}

/// The per-class statistics and the decision rule.
#[derive(Debug, Clone)]
pub struct Policy {
    pub costs: Costs,
    pub stats: [ClassStats; 3],
}

impl Policy {
    pub fn new(costs: Costs) -> Self {
        Self {
            costs,
            stats: [ClassStats::default(); 3],
        }
    }

    /// threshold(c) = value_page / cost_cow(c), in ppm, at most 1.
    pub fn threshold_ppm(&self, class: PageClass) -> u64 {
        let cost = match class {
            PageClass::Zero => self.costs.cow_zero,
            PageClass::KernelImage | PageClass::Other => self.costs.cow_copy,
        }
        .max(1);
        (u128::from(self.costs.page_value) * 1_000_000 / u128::from(cost)).min(1_000_000) as u64
    }

    pub fn decide(&self, class: PageClass) -> Decision {
        let p = self.stats[class.index()].p_fs_ppm();
        let t = self.threshold_ppm(class);
        Decision {
            class,
            merge: p < t,
            p_fs_ppm: p,
            threshold_ppm: t,
        }
    }

    /// One scan period passed with `merged` pages of `class` shared.
    pub fn period(&mut self, class: PageClass, merged: u64) {
        let s = &mut self.stats[class.index()];
        s.merged_periods = s.merged_periods.saturating_add(merged);
    }

    /// A COW fault on a merged page of `class`.
    pub fn cow_fault(&mut self, class: PageClass) {
        let s = &mut self.stats[class.index()];
        s.cow_faults = s.cow_faults.saturating_add(1);
    }
}
