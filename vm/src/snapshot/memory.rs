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

/// Encodes `pages` pages, `read(i, buf)` filling page *i*; consecutive pages of the same kind
/// (zero or not) form one run.
pub fn encode(pages: u64, mut read: impl FnMut(u64, &mut [u8; PAGE])) -> Vec<u8> {
    let mut runs: Vec<(u64, u32, Vec<u8>)> = Vec::new();
    let mut buf = [0u8; PAGE];
    for i in 0..pages {
        read(i, &mut buf);
        let zero = buf.iter().all(|&b| b == 0);
        match runs.last_mut() {
            Some((first, n, data))
                if *first + u64::from(*n) == i && data.is_empty() == zero && *n < u32::MAX =>
            {
                *n += 1;
                if !zero {
                    data.extend_from_slice(&buf);
                }
            }
            _ => runs.push((i, 1, if zero { Vec::new() } else { buf.to_vec() })),
        }
    }
    let mut e = Enc::default();
    e.u64(pages).u32(runs.len() as u32);
    for (first, n, data) in &runs {
        e.u64(*first).u32(*n);
        if data.is_empty() {
            e.u32(KIND_ZERO);
        } else {
            e.u32(KIND_DATA);
            e.0.extend_from_slice(data);
        }
    }
    e.0
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
