//! Guest RAM in a snapshot: the VM's pages as ascending runs, zero pages stored as a count
//! only (a booted Linux guest's RAM is mostly zero; a restore maps those lazily or zeroes
//! them).
//!
//! ```text
//! u64 page count of the VM's RAM
//! u32 run count
//! runs: u64 first page, u32 pages, u32 kind (0 = zero, 1 = data), then pages × 4096 bytes
//!       for a data run
//! ```
//!
//! The runs cover every page exactly once, in order: the reader refuses gaps, overlaps,
//! runs beyond the RAM and short data.

use alloc::vec::Vec;

use super::codec::{Dec, Enc};

pub const PAGE: usize = 4096;
const KIND_ZERO: u32 = 0;
const KIND_DATA: u32 = 1;

/// One run as read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Run<'a> {
    /// `pages` zero pages from `first`.
    Zero { first: u64, pages: u32 },
    /// The contents of `data.len() / 4096` pages from `first`.
    Data { first: u64, data: &'a [u8] },
}

/// Encodes `pages` pages, `read(i, buf)` filling page *i* (twice for a data page: once to
/// scan it, once to copy it); consecutive pages of the same kind (zero or not) form one run.
pub fn encode(pages: u64, mut read: impl FnMut(u64, &mut [u8; PAGE])) -> Vec<u8> {
    let mut buf = [0u8; PAGE];
    let plan = scan(pages, |i| {
        read(i, &mut buf);
        page_has_data(&buf)
    });
    let mut out = Vec::new();
    fill(&plan, &mut out, read);
    out
}

/// The runs of a VM's RAM as [`scan`] found them: (first page, pages, data), a data run's
/// contents read when the section is written ([`fill`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pages: u64,
    runs: Vec<(u64, u32, bool)>,
}

impl Plan {
    /// The section's size in bytes.
    pub fn encoded_len(&self) -> usize {
        let data: usize = self
            .runs
            .iter()
            .filter(|r| r.2)
            .map(|r| r.1 as usize * PAGE)
            .sum();
        8 + 4 + self.runs.len() * 16 + data
    }
    /// Pages holding data (not zero).
    pub fn data_pages(&self) -> u64 {
        self.runs
            .iter()
            .filter(|r| r.2)
            .map(|r| u64::from(r.1))
            .sum()
    }
}

/// Whether `page` holds a byte that is not zero (compared a word at a time: the kernel has
/// no SIMD, and a VM's RAM is scanned whole while it is paused).
pub fn page_has_data(page: &[u8; PAGE]) -> bool {
    page.as_chunks::<8>()
        .0
        .iter()
        .any(|w| u64::from_ne_bytes(*w) != 0)
}

/// The runs of `pages` pages, `has_data(i)` telling whether page *i* holds a byte that is
/// not zero (e.g. [`page_has_data`], or a check in place that copies nothing); the plan's
/// [`Plan::encoded_len`] is the section's size. [`Plan::new`] and [`Plan::scan_some`] do the
/// same a bounded number of pages at a time.
pub fn scan(pages: u64, has_data: impl FnMut(u64) -> bool) -> Plan {
    let mut plan = Plan::new(pages);
    plan.scan_some(pages, has_data);
    plan
}

impl Plan {
    /// A plan of `pages` pages of which none is scanned yet.
    pub fn new(pages: u64) -> Self {
        Plan {
            pages,
            runs: Vec::new(),
        }
    }

    /// Pages scanned so far.
    pub fn scanned(&self) -> u64 {
        self.runs
            .last()
            .map_or(0, |&(first, n, _)| first + u64::from(n))
    }

    /// Scans at most `budget` more pages; returns whether every page is scanned.
    pub fn scan_some(&mut self, budget: u64, mut has_data: impl FnMut(u64) -> bool) -> bool {
        let start = self.scanned();
        let end = start.saturating_add(budget).min(self.pages);
        for i in start..end {
            let is_data = has_data(i);
            match self.runs.last_mut() {
                Some((first, n, d))
                    if *first + u64::from(*n) == i && *d == is_data && *n < u32::MAX =>
                {
                    *n += 1
                }
                _ => self.runs.push((i, 1, is_data)),
            }
        }
        end == self.pages
    }
}

/// Where [`fill_some`] goes on: the run and the page in it, and whether the section's header
/// is written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FillCursor {
    started: bool,
    run: usize,
    page: u32,
    /// The current run's header is written.
    in_run: bool,
}

/// Second pass: writes the section of `plan` into `out` (which the caller sized, e.g. with
/// `try_reserve_exact(plan.encoded_len())`), reading its data pages with `read`. Pages that
/// became zero or non-zero since the scan are written as they are now (a data run may hold
/// zero pages; a zero run stays zero: the caller scans and fills with the VM paused).
pub fn fill(plan: &Plan, out: &mut Vec<u8>, read: impl FnMut(u64, &mut [u8; PAGE])) {
    let mut cursor = FillCursor::default();
    fill_some(plan, out, &mut cursor, u64::MAX, read);
}

/// [`fill`] for at most `budget` data pages, from `cursor` on; returns whether the section
/// is complete. A plan must be scanned completely first.
pub fn fill_some(
    plan: &Plan,
    out: &mut Vec<u8>,
    cursor: &mut FillCursor,
    budget: u64,
    mut read: impl FnMut(u64, &mut [u8; PAGE]),
) -> bool {
    let mut e = Enc(core::mem::take(out));
    if !cursor.started {
        e.u64(plan.pages).u32(plan.runs.len() as u32);
        cursor.started = true;
    }
    let mut buf = [0u8; PAGE];
    let mut left = budget;
    while let Some(&(first, n, is_data)) = plan.runs.get(cursor.run) {
        if !cursor.in_run {
            cursor.in_run = true;
            e.u64(first).u32(n);
            e.u32(if is_data { KIND_DATA } else { KIND_ZERO });
        }
        if is_data {
            while cursor.page < n {
                if left == 0 {
                    *out = e.0;
                    return false;
                }
                read(first + u64::from(cursor.page), &mut buf);
                e.0.extend_from_slice(&buf);
                cursor.page += 1;
                left -= 1;
            }
        }
        cursor.run += 1;
        cursor.page = 0;
        cursor.in_run = false;
    }
    *out = e.0;
    true
}

/// The runs of a memory section of a VM with `pages` pages of RAM, checked to cover them all.
pub fn decode(b: &[u8], pages: u64) -> Result<Vec<Run<'_>>, &'static str> {
    let mut d = Dec::new(b);
    let short = "the section ends early";
    if d.u64().ok_or(short)? != pages {
        return Err("its page count differs from the VM's RAM");
    }
    let count = d.u32().ok_or(short)?;
    let mut runs = Vec::new();
    let mut next = 0u64;
    for _ in 0..count {
        let first = d.u64().ok_or(short)?;
        let n = d.u32().ok_or(short)?;
        let kind = d.u32().ok_or(short)?;
        if first != next || n == 0 {
            return Err("its runs leave a gap, overlap or are empty");
        }
        next = first
            .checked_add(u64::from(n))
            .filter(|&e| e <= pages)
            .ok_or("a run goes beyond the VM's RAM")?;
        runs.push(match kind {
            KIND_ZERO => Run::Zero { first, pages: n },
            KIND_DATA => {
                let len = (n as usize).checked_mul(PAGE).ok_or(short)?;
                Run::Data {
                    first,
                    data: d.raw(len).ok_or(short)?,
                }
            }
            _ => return Err("a run of unknown kind"),
        });
    }
    if next != pages {
        return Err("its runs do not cover the VM's RAM");
    }
    if !d.done() {
        return Err("bytes after the last run");
    }
    Ok(runs)
}
