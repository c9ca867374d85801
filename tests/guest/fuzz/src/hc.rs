//! Hypercall actions (docs/hypercall-abi.md): every call number including unassigned ones,
//! arguments from the boundary generator, buffers from [`Mem::pointer`], and MULTICALL
//! batches of random entries.
//!
//! What keeps the fuzzer alive: a call that may *write* guest memory (EXIT_STATS, MULTICALL's
//! result fields, MEM_RELEASE, which zeroes the pages it names, and any number whose low 32
//! bits name them, in case the hypervisor ignored the high bits) only ever gets a scratch or
//! invalid buffer; CONSOLE_WRITE from RAM reads a
//! short printable text, so the console stays small; `IDLE(1)` is issued only after
//! [`crate::ops::arm_wakeup`] made sure a timer interrupt ends it.

use crate::mem::Mem;
use crate::rng::Rng;
use crate::{ops, trace};

pub const NOP: u64 = 1;
pub const CONSOLE_WRITE: u64 = 2;
pub const MULTICALL: u64 = 3;
pub const IDLE: u64 = 4;
pub const EXIT_STATS: u64 = 5;
/// ABI v1.1: zeroes and unmaps pages until touched.
pub const MEM_RELEASE: u64 = 6;
/// The first unassigned call number.
const UNASSIGNED: u64 = 7;
/// MEM_RELEASE takes at most 512 pages of 4 KiB.
const MEM_RELEASE_MAX_PAGES: u64 = 512;
const PAGE: u64 = 4096;
/// docs/hypercall-abi.md §3: at most 4096 console bytes, 128 batch entries.
pub const CONSOLE_MAX: u64 = 4096;
pub const MULTICALL_MAX: u64 = 128;
/// MULTICALL entries are 32 bytes, batches 32-byte aligned (§5 call 3).
const ENTRY_SIZE: u64 = 32;
/// IDLE mode 1: sleep until an interrupt (§5 call 4).
const IDLE_SLEEP: u64 = 1;

/// The text a console write from RAM prints (no newline, nothing a transcript check matches).
static TEXT: &[u8] = b"~fz~abcdefghijklmnopqrstuvwxyz0123456789~";

/// VMCALL with RAX = `nr`, RBX, RCX, RDX, RSI = `args`: the result, or the vector it raised.
///
/// # Safety
/// The call may write guest memory named by the arguments: only scratch or invalid buffers.
pub unsafe fn call(nr: u64, args: [u64; 4]) -> Result<u64, u8> {
    let ret: u64;
    crate::idt::clear();
    // SAFETY: the caller vouches for the memory the call may write; VMCALL preserves every
    // register except RAX (ABI §2); RBX, reserved by LLVM, is swapped in and out around it,
    // and the recovery label sits before the second XCHG so RBX is restored on a fault too.
    unsafe {
        core::arch::asm!(
            "lea {tmp}, [rip + 2f]",
            "mov qword ptr [{slot}], {tmp}",
            "xchg {a0}, rbx",
            "vmcall",
            "2:",
            "xchg {a0}, rbx",
            slot = in(reg) crate::idt::RECOVER_RIP.as_ptr(),
            tmp = out(reg) _,
            a0 = inout(reg) args[0] => _,
            inout("rax") nr => ret,
            in("rcx") args[1],
            in("rdx") args[2],
            in("rsi") args[3],
            options(nostack)
        );
    }
    crate::idt::take().map_or(Ok(ret), Err)
}

/// A call number: mostly assigned ones, else unassigned, high-bit and random ones.
fn number(rng: &mut Rng) -> u64 {
    match rng.below(10) {
        0..=5 => rng.below(UNASSIGNED),
        6 => rng.range(UNASSIGNED, 64),
        7 => (rng.range(1, u64::from(u32::MAX)) << 32) | rng.below(UNASSIGNED),
        8 => u64::from(rng.next() as u32),
        _ => rng.interesting(),
    }
}

/// Whether the hypervisor could (if it ignored the high bits) treat `nr` as a call that
/// writes guest memory.
fn may_write(nr: u64) -> bool {
    matches!(nr as u32 as u64, MULTICALL | EXIT_STATS | MEM_RELEASE)
}

/// A length: boundaries of the call's limits, small values, huge ones.
fn length(rng: &mut Rng, max: u64) -> u64 {
    match rng.below(8) {
        0 => 0,
        1..=3 => rng.range(1, 64),
        4 => rng.pick(&[max - 1, max, max + 1, 23, 24, 48, 3096]),
        5 => rng.range(1, max),
        _ => rng.interesting(),
    }
}

/// arg0/arg1 for call `nr`, safe for the fuzzer (see the module comment).
fn arguments(rng: &mut Rng, mem: &Mem, nr: u64) -> (u64, u64) {
    match nr {
        CONSOLE_WRITE => {
            if rng.chance(1, 2) {
                // From RAM: a short slice of TEXT, sometimes with a bad length instead.
                let off = rng.below(TEXT.len() as u64);
                let len = if rng.chance(3, 4) {
                    rng.below(TEXT.len() as u64 - off + 1)
                } else {
                    rng.pick(&[CONSOLE_MAX + 1, u64::MAX, 1 << 32, 0x8000_0000])
                };
                (TEXT.as_ptr() as u64 + off, len)
            } else {
                // A bad buffer with any length. Scratch holds DMA garbage: a pointer into
                // RAM is moved to just below its end with a length that crosses it.
                let mut len = length(rng, CONSOLE_MAX);
                let mut gpa = mem.pointer(rng, len);
                if gpa < mem.ram {
                    gpa = mem.ram - rng.below(32);
                    len = len.max(mem.ram - gpa + 1);
                }
                (gpa, len)
            }
        }
        _ if may_write(nr) => {
            if nr as u32 as u64 == MULTICALL {
                let count = length(rng, MULTICALL_MAX);
                (mem.pointer(rng, count.saturating_mul(ENTRY_SIZE)), count)
            } else if nr as u32 as u64 == MEM_RELEASE {
                // Pages in scratch (mostly page-aligned: scratch starts 4 MiB-aligned, so
                // rounding down stays in it) or an invalid range.
                let pages = length(rng, MEM_RELEASE_MAX_PAGES);
                let len = pages.saturating_mul(PAGE);
                let mut gpa = mem.pointer(rng, len);
                // Never the guest's own image, stack or tables below scratch (gpa 0 is one of
                // the pointer generator's boundary values): released pages read as zero.
                if gpa < mem.ram && !mem.in_scratch(gpa, 1) {
                    gpa = mem.scratch(rng, len.min(mem.ram), PAGE);
                }
                let gpa = if rng.chance(3, 4) && mem.in_scratch(gpa & !(PAGE - 1), 1) {
                    gpa & !(PAGE - 1)
                } else {
                    gpa
                };
                (gpa, pages)
            } else {
                let len = length(rng, 4096);
                (mem.pointer(rng, len), len)
            }
        }
        IDLE => (rng.pick(&[0, 0, 0, IDLE_SLEEP, 2, u64::MAX]), 0),
        _ => (rng.interesting(), rng.interesting()),
    }
}

/// Reserved arguments: 0 most of the time (so the call does something), else garbage.
fn reserved(rng: &mut Rng) -> u64 {
    if rng.chance(7, 8) {
        0
    } else {
        rng.interesting()
    }
}

/// One random hypercall.
pub fn single(rng: &mut Rng, mem: &Mem) {
    let nr = number(rng);
    let (a0, a1) = arguments(rng, mem, nr);
    let (a2, a3) = (reserved(rng), reserved(rng));
    // A MULTICALL here runs whatever entries scratch holds (earlier batches: maybe IDLE(1)).
    if (nr == IDLE && a0 == IDLE_SLEEP) || nr as u32 as u64 == MULTICALL {
        ops::arm_wakeup(rng);
    }
    trace!("hypercall nr={nr:#x} args={a0:#x},{a1:#x},{a2:#x},{a3:#x}");
    if nr == CONSOLE_WRITE {
        crate::console_dirty();
    }
    // SAFETY: buffers of writing calls are scratch or invalid (arguments()).
    let _ = unsafe { call(nr, [a0, a1, a2, a3]) };
}

#[repr(C, align(32))]
#[derive(Clone, Copy)]
struct Entry {
    call: u64,
    arg0: u64,
    arg1: u64,
    result: u64,
}

/// One MULTICALL: a batch of random entries in scratch (or a bad batch pointer / count).
pub fn multicall(rng: &mut Rng, mem: &Mem) {
    let count = match rng.below(10) {
        0..=6 => rng.range(1, 16),
        7 => rng.range(1, MULTICALL_MAX),
        8 => rng.pick(&[MULTICALL_MAX, MULTICALL_MAX + 1, 0]),
        _ => rng.interesting(),
    };
    let room = count.min(MULTICALL_MAX) * ENTRY_SIZE;
    let batch = match rng.below(8) {
        0..=5 => mem.scratch(rng, room, ENTRY_SIZE),
        6 => mem.scratch(rng, room, 1),
        _ => mem.pointer(rng, room),
    };
    let mut idle = false;
    let mut console = 0;
    if mem.in_scratch(batch, room) {
        for i in 0..count.min(MULTICALL_MAX) {
            let mut nr = number(rng);
            if nr == CONSOLE_WRITE {
                console += 1;
                if console > 2 {
                    nr = NOP;
                }
            }
            let (a0, mut a1) = arguments(rng, mem, nr);
            if nr == CONSOLE_WRITE && a1 <= CONSOLE_MAX {
                a1 = a1.min(16);
            }
            idle |= nr == IDLE && a0 == IDLE_SLEEP;
            let e = Entry {
                call: nr,
                arg0: a0,
                arg1: a1,
                result: rng.next(),
            };
            // SAFETY: the batch lies in scratch (checked above), 32-byte entries.
            unsafe { core::ptr::write_volatile((batch + i * ENTRY_SIZE) as *mut Entry, e) };
        }
    }
    if idle {
        ops::arm_wakeup(rng);
    }
    let (a2, a3) = (reserved(rng), reserved(rng));
    trace!("multicall batch={batch:#x} count={count:#x} args={a2:#x},{a3:#x} console-entries={console} idle={idle}");
    if console > 0 {
        crate::console_dirty();
    }
    // SAFETY: the batch (written back by the hypervisor) is scratch or invalid.
    let _ = unsafe { call(MULTICALL, [batch, count, a2, a3]) };
}
