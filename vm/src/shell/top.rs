//! `top`: exits per second per VM and per reason, from two samples of each VM's exit
//! statistics. The shell takes a sample every [`REFRESH_MS`] of TSC time until a key is
//! pressed; each refresh prints one header and one line per VM with its total and its
//! [`REASONS_PER_VM`] busiest reasons (bounded output whatever the guests do).

use crate::stats::ExitStats;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::{self, Write};
use vmx::exit::ExitReason;

/// Time between two refreshes.
pub const REFRESH_MS: u64 = 1000;
/// The busiest reasons shown per VM.
pub const REASONS_PER_VM: usize = 4;

/// One VM's statistics at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    pub name: String,
    pub exits: ExitStats,
    /// When it was taken (TSC).
    pub at: u64,
}

fn reason_name(r: u16) -> &'static str {
    if r == 0xFFFF {
        "other"
    } else {
        ExitReason::from_basic(r).description()
    }
}

fn per_second(delta: u64, ticks: u64, tsc_hz: u64) -> u64 {
    if ticks == 0 {
        return 0;
    }
    (u128::from(delta) * u128::from(tsc_hz) / u128::from(ticks)) as u64
}

/// One refresh: for each VM in `now` (matched by name in `before`; a VM without an earlier
/// sample, or whose counts went down because it was restarted, counts from zero), its total
/// exits per second and its [`REASONS_PER_VM`] busiest reasons.
pub fn refresh(before: &[Sample], now: &[Sample], tsc_hz: u64, out: &mut dyn Write) -> fmt::Result {
    writeln!(out, "top: exits per second (any key stops)")?;
    for s in now {
        let prev = before
            .iter()
            .find(|b| b.name == s.name && b.exits.total.count <= s.exits.total.count);
        let zero = ExitStats::default();
        let (pexits, pat) = prev.map_or((&zero, s.at), |p| (&p.exits, p.at));
        let ticks = s.at.saturating_sub(pat);
        let total = s.exits.total.count.saturating_sub(pexits.total.count);
        let mut reasons: Vec<(u64, u16)> = s
            .exits
            .nonzero()
            .map(|(r, st)| (st.count.saturating_sub(pexits.get(r).count), r))
            .filter(|&(d, _)| d > 0)
            .collect();
        reasons.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        write!(
            out,
            "{:<12} total {:>8}/s",
            s.name,
            per_second(total, ticks, tsc_hz)
        )?;
        for (d, r) in reasons.iter().take(REASONS_PER_VM) {
            write!(
                out,
                "  {} {}/s",
                reason_name(*r),
                per_second(*d, ticks, tsc_hz)
            )?;
        }
        writeln!(out)?;
    }
    Ok(())
}
