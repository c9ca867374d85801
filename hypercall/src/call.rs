//! Call numbers (RAX in) and per-call limits. Numbers are stable and never reused.

use crate::cpuid;

/// `VERSION()`: returns the ABI version, `major << 16 | minor`.
pub const VERSION: u64 = 0;
/// `NOP()`: returns 0; measures the hypercall round trip.
pub const NOP: u64 = 1;
/// `CONSOLE_WRITE(gpa, len)`: writes `len` ≤ [`CONSOLE_MAX`] bytes to the VM's console;
/// returns `len`.
pub const CONSOLE_WRITE: u64 = 2;
/// `MULTICALL(gpa, count)`: runs `count` (1..=[`crate::multicall::MAX_ENTRIES`]) batch
/// entries with one exit; returns `count`.
pub const MULTICALL: u64 = 3;
/// `IDLE(mode)`: [`IDLE_YIELD`] or [`IDLE_HALT`]; returns 0.
pub const IDLE: u64 = 4;
/// `EXIT_STATS(gpa, len)`: copies the exit statistics; returns bytes written (or needed,
/// if `len` = 0).
pub const EXIT_STATS: u64 = 5;

/// `MEM_RELEASE(gpa, pages)` (v1.1): the guest no longer needs the contents of the `pages`
/// (1..=[`MEM_RELEASE_MAX_PAGES`]) 4 KiB pages at `gpa` (4 KiB aligned, guest RAM). The
/// hypervisor zeroes them and takes them out of the VM's EPT; the first access to one maps it
/// again, zero-filled. Returns `pages`.
pub const MEM_RELEASE: u64 = 6;

/// The first unassigned call number in v1.
pub const FIRST_UNASSIGNED: u64 = 7;

/// The most pages one `MEM_RELEASE` takes (2 MiB): the work of one call stays bounded.
pub const MEM_RELEASE_MAX_PAGES: u64 = 512;
/// The page size `MEM_RELEASE` counts in.
pub const PAGE_SIZE: u64 = 4096;

/// `IDLE` mode 0: give the rest of the time slice to other vCPUs.
pub const IDLE_YIELD: u64 = 0;
/// `IDLE` mode 1: sleep until an interrupt is pending, like `HLT`.
pub const IDLE_HALT: u64 = 1;

/// The largest `CONSOLE_WRITE` length, in bytes.
pub const CONSOLE_MAX: usize = 4096;

/// The ABI name of a call number.
pub const fn name(nr: u64) -> Option<&'static str> {
    match nr {
        VERSION => Some("VERSION"),
        NOP => Some("NOP"),
        CONSOLE_WRITE => Some("CONSOLE_WRITE"),
        MULTICALL => Some("MULTICALL"),
        IDLE => Some("IDLE"),
        EXIT_STATS => Some("EXIT_STATS"),
        MEM_RELEASE => Some("MEM_RELEASE"),
        _ => None,
    }
}

/// The CPUID feature bit that gates a call; 0 for calls that are always available
/// (`VERSION`, `NOP`); `None` for unassigned numbers.
pub const fn feature(nr: u64) -> Option<u32> {
    match nr {
        VERSION | NOP => Some(0),
        CONSOLE_WRITE => Some(cpuid::FEATURE_CONSOLE),
        MULTICALL => Some(cpuid::FEATURE_MULTICALL),
        IDLE => Some(cpuid::FEATURE_IDLE),
        EXIT_STATS => Some(cpuid::FEATURE_EXIT_STATS),
        MEM_RELEASE => Some(cpuid::FEATURE_MEM_RELEASE),
        _ => None,
    }
}
