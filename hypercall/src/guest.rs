//! Guest side: `no_std` wrappers over `VMCALL` for 64-bit guests.
//!
//! - [`detect`] (CPUID) must find Bulkhead before any `VMCALL` is executed; the safe
//!   wrappers check it (once, cached) and return [`CallError::NoHypervisor`] otherwise.
//! - **Identity mapping.** The wrappers pass a buffer's virtual address as its
//!   guest-physical address, so they assume memory is identity-mapped (virtual = physical),
//!   as in Bulkhead's test guests. [`console_write`] only makes the hypervisor *read*, so it
//!   is safe either way (wrong bytes at worst); [`exit_stats`] and [`multicall`] make it
//!   *write*, so they are `unsafe` and require identity mapping.
//! - Hypercalls need CPL 0: from user mode every call returns `NotPermitted`.

use core::arch::asm;
use core::arch::x86_64::__cpuid;
use core::sync::atomic::{AtomicU8, Ordering};

use crate::cpuid::{self, Interface, Leaf};
use crate::multicall::Batch;
use crate::{call, decode, CallError, Version};

/// Executes `VMCALL` with RAX = `nr`, RBX = `a0`, RCX = `a1`, RDX = `a2`, RSI = `a3`, and
/// returns RAX (`>= 0` success value, `< 0` `-code`).
///
/// # Safety
///
/// - Bulkhead must be present ([`detect`]): elsewhere `VMCALL` raises `#UD` or, under
///   another hypervisor, means something else entirely.
/// - Memory the call makes the hypervisor write (the `EXIT_STATS` buffer, a `MULTICALL`
///   batch's result fields and whatever its entries write) must be guest-physical addresses
///   of memory the caller may write and that no Rust reference aliases during the call.
pub unsafe fn vmcall(nr: u64, a0: u64, a1: u64, a2: u64, a3: u64) -> i64 {
    let rax: u64;
    // SAFETY: the caller guarantees Bulkhead handles the VMCALL and that the memory it writes
    // is ours to write. RBX is reserved by LLVM, so argument 0 travels in another register
    // and is swapped into RBX around the VMCALL, which restores RBX (the hypervisor
    // preserves every register but RAX). RCX, RDX, RSI are declared clobbered although the
    // ABI preserves them. No `nomem`: the hypervisor may read and write guest memory. No
    // `preserves_flags`: nothing relies on the hypervisor keeping RFLAGS.
    unsafe {
        asm!(
            "xchg {a0}, rbx",
            "vmcall",
            "xchg {a0}, rbx",
            a0 = inout(reg) a0 => _,
            inout("rax") nr => rax,
            inout("rcx") a1 => _,
            inout("rdx") a2 => _,
            inout("rsi") a3 => _,
            options(nostack),
        );
    }
    rax as i64
}

const UNKNOWN: u8 = 0;
const ABSENT: u8 = 1;
const PRESENT: u8 = 2;
static DETECTED: AtomicU8 = AtomicU8::new(UNKNOWN);

fn read_leaf(leaf: u32) -> Leaf {
    let r = __cpuid(leaf);
    Leaf {
        eax: r.eax,
        ebx: r.ebx,
        ecx: r.ecx,
        edx: r.edx,
    }
}

/// The Bulkhead interface from CPUID (leaves `0x4000_0000` and `0x4000_0001`), `None` if
/// not running under Bulkhead. Runs CPUID (a VM exit) every time.
pub fn interface() -> Option<Interface> {
    let found = if read_leaf(1).ecx & cpuid::HYPERVISOR_PRESENT_ECX == 0 {
        None
    } else {
        let vendor = read_leaf(cpuid::LEAF_VENDOR);
        if cpuid::signature_matches(vendor.ebx, vendor.ecx, vendor.edx)
            && vendor.eax >= cpuid::LEAF_INTERFACE
        {
            Interface::from_leaves(vendor, read_leaf(cpuid::LEAF_INTERFACE))
        } else {
            None
        }
    };
    // Only a v1-compatible hypervisor enables the wrappers.
    let usable = found.filter(|i| i.version.major == Version::CURRENT.major);
    DETECTED.store(
        if usable.is_some() { PRESENT } else { ABSENT },
        Ordering::Relaxed,
    );
    found
}

/// The ABI version if Bulkhead is present (by CPUID, section 1 of the ABI document).
pub fn detect() -> Option<Version> {
    interface().map(|i| i.version)
}

/// Whether Bulkhead with a major-version-1 ABI is present (CPUID once, then cached).
pub fn present() -> bool {
    match DETECTED.load(Ordering::Relaxed) {
        PRESENT => true,
        ABSENT => false,
        _ => {
            interface();
            DETECTED.load(Ordering::Relaxed) == PRESENT
        }
    }
}

/// A call that makes the hypervisor write no memory (or only memory the caller vouches for).
///
/// # Safety
///
/// As [`vmcall`], except presence, which this checks.
unsafe fn checked(nr: u64, a0: u64, a1: u64) -> Result<u64, CallError> {
    if !present() {
        return Err(CallError::NoHypervisor);
    }
    // SAFETY: Bulkhead is present (checked above); the caller guarantees the memory rules.
    decode(unsafe { vmcall(nr, a0, a1, 0, 0) })
}

/// `VERSION`: the ABI version.
pub fn version() -> Result<Version, CallError> {
    // SAFETY: VERSION writes no guest memory.
    let raw = unsafe { checked(call::VERSION, 0, 0) }?;
    Ok(Version::from_raw(raw as u32))
}

/// `NOP`: one hypercall round trip.
pub fn nop() -> Result<(), CallError> {
    // SAFETY: NOP writes no guest memory.
    unsafe { checked(call::NOP, 0, 0) }.map(|_| ())
}

/// `CONSOLE_WRITE`: writes `bytes` to the VM's console, in pieces of at most
/// [`call::CONSOLE_MAX`] bytes; returns the bytes written. Assumes identity mapping (else
/// the console shows other memory, or the call fails with `BadAddress`).
pub fn console_write(bytes: &[u8]) -> Result<usize, CallError> {
    let mut done = 0;
    for chunk in bytes.chunks(call::CONSOLE_MAX) {
        // SAFETY: CONSOLE_WRITE only reads guest memory, never writes it.
        let n = unsafe {
            checked(
                call::CONSOLE_WRITE,
                chunk.as_ptr() as u64,
                chunk.len() as u64,
            )
        }?;
        done += n as usize;
    }
    Ok(done)
}

/// `IDLE(1)`: sleep until an interrupt is pending, like `HLT`. Call with interrupts enabled,
/// `MEM_RELEASE`: gives back the contents of `pages` 4 KiB pages at guest-physical `gpa`; they
/// read as zero when next touched.
pub fn mem_release(gpa: u64, pages: u64) -> Result<u64, CallError> {
    // SAFETY: MEM_RELEASE changes only the named guest pages, which the caller gives up.
    decode(unsafe { vmcall(call::MEM_RELEASE, gpa, pages, 0, 0) })
}

/// or only an NMI wakes the vCPU.
pub fn idle() -> Result<(), CallError> {
    // SAFETY: IDLE writes no guest memory.
    unsafe { checked(call::IDLE, call::IDLE_HALT, 0) }.map(|_| ())
}

/// `IDLE(0)`: give the rest of the time slice to other vCPUs.
pub fn yield_now() -> Result<(), CallError> {
    // SAFETY: IDLE writes no guest memory.
    unsafe { checked(call::IDLE, call::IDLE_YIELD, 0) }.map(|_| ())
}

/// `EXIT_STATS(0, 0)`: the bytes a full statistics copy needs now.
pub fn exit_stats_size() -> Result<usize, CallError> {
    // SAFETY: with len = 0, EXIT_STATS writes nothing.
    unsafe { checked(call::EXIT_STATS, 0, 0) }.map(|n| n as usize)
}

/// `EXIT_STATS`: copies the VM's exit statistics into `buf` (layout in [`crate::stats`];
/// parse with [`crate::stats::Stats::parse`]); returns the bytes written. `BadLength` if
/// `buf` is too small (4096 bytes always suffice in v1); an empty `buf` is a size query.
///
/// # Safety
///
/// Memory must be identity-mapped over `buf`: the hypervisor writes at `buf`'s address taken
/// as guest-physical.
pub unsafe fn exit_stats(buf: &mut [u8]) -> Result<usize, CallError> {
    // SAFETY: `buf` is exclusively borrowed, writable, and (caller) identity-mapped, and the
    // hypervisor writes at most `buf.len()` bytes there.
    unsafe { checked(call::EXIT_STATS, buf.as_mut_ptr() as u64, buf.len() as u64) }
        .map(|n| n as usize)
}

/// `MULTICALL`: runs every queued entry of `batch` with one exit and returns the number run
/// (an empty batch returns 0 without a hypercall). Each entry's result is then in
/// [`Batch::results`]; entries that did not run read as `NOT_RUN`.
///
/// # Safety
///
/// Memory must be identity-mapped over `batch`, and every memory argument of its entries
/// must satisfy the rules of the entry's own call: buffers that entries make the hypervisor
/// write (`EXIT_STATS`) must be identity-mapped, writable, and not aliased by any Rust
/// reference during the call.
pub unsafe fn multicall(batch: &mut Batch) -> Result<usize, CallError> {
    if batch.is_empty() {
        return Ok(0);
    }
    batch.reset_results();
    let (gpa, n) = (batch.gpa(), batch.len() as u64);
    // SAFETY: `batch` is exclusively borrowed, so the hypervisor may write its result fields
    // (identity mapping and the entries' own buffers are the caller's guarantee).
    unsafe { checked(call::MULTICALL, gpa, n) }.map(|n| n as usize)
}
