//! The hypercall ABI v1 (docs/hypercall-abi.md) as raw VMCALLs: the test guests also pass
//! garbage, so they use this rather than typed wrappers.

use crate::trap::Fault;

pub const ABI_VERSION: u64 = 0x0001_0001;
pub const CPUID_BASE: u32 = 0x4000_0000;
pub const CPUID_INFO: u32 = 0x4000_0001;
/// "Bulk", "head", "HV\0\0".
pub const SIGNATURE: [u32; 3] = [0x6b6c_7542, 0x6461_6568, 0x0000_5648];

pub const VERSION: u64 = 0;
pub const NOP: u64 = 1;
pub const CONSOLE_WRITE: u64 = 2;
pub const MULTICALL: u64 = 3;
pub const IDLE: u64 = 4;
pub const EXIT_STATS: u64 = 5;
pub const MEM_RELEASE: u64 = 6;

pub const UNKNOWN_CALL: i64 = 1;
pub const BAD_ADDRESS: i64 = 2;
pub const BAD_LENGTH: i64 = 3;
pub const BAD_ARGUMENT: i64 = 4;
pub const NOT_PERMITTED: i64 = 5;
pub const TOO_LARGE: i64 = 6;
pub const UNSUPPORTED: i64 = 7;
pub const NESTED: i64 = 8;

pub const CONSOLE_MAX: u64 = 4096;
pub const MULTICALL_MAX: u64 = 128;

/// VMX basic exit reasons (Intel SDM Vol. 3D, Appendix C) used in EXIT_STATS.
pub const EXIT_CPUID: u32 = 10;
pub const EXIT_HLT: u32 = 12;
pub const EXIT_VMCALL: u32 = 18;
pub const EXIT_IO: u32 = 30;
pub const EXIT_EPT_VIOLATION: u32 = 48;

/// One 32-byte MULTICALL entry.
#[repr(C, align(32))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Entry {
    pub call: u64,
    pub arg0: u64,
    pub arg1: u64,
    pub result: i64,
}

impl Entry {
    pub const fn new(call: u64, arg0: u64, arg1: u64) -> Self {
        Entry {
            call,
            arg0,
            arg1,
            result: i64::MIN,
        }
    }
}

/// VMCALL with RAX = `nr` and RBX, RCX, RDX, RSI = `args`; the signed result, or the
/// exception VMCALL raised (`#UD` without a hypervisor that handles it).
///
/// # Safety
/// Hypercalls may write guest memory named by the arguments (MULTICALL results,
/// EXIT_STATS): those must be buffers the caller owns (or addresses outside RAM, which the
/// hypervisor refuses).
pub unsafe fn call(nr: u64, args: [u64; 4]) -> Result<i64, Fault> {
    let ret: u64;
    crate::trap::clear();
    // SAFETY: the caller vouches for the memory the call may write; VMCALL preserves every
    // register except RAX (ABI §2); RBX, reserved by LLVM, is swapped in and out around it.
    // The recovery label sits *before* the second XCHG, so RBX is restored on the fault path
    // too. The asm is not `nomem`: the hypervisor writes guest memory.
    unsafe {
        core::arch::asm!(
            "lea {tmp}, [rip + 2f]",
            "mov qword ptr [{slot}], {tmp}",
            "xchg {a0}, rbx",
            "vmcall",
            "2:",
            "xchg {a0}, rbx",
            slot = in(reg) crate::trap::RECOVER_RIP.as_ptr(),
            tmp = out(reg) _,
            a0 = inout(reg) args[0] => _,
            inout("rax") nr => ret,
            in("rcx") args[1],
            in("rdx") args[2],
            in("rsi") args[3],
            options(nostack)
        );
    }
    let fault = crate::trap::take();
    fault.map_or(Ok(ret as i64), Err)
}

/// A call with no memory arguments (VERSION, NOP, IDLE, unknown numbers).
pub fn call0(nr: u64, args: [u64; 4]) -> Result<i64, Fault> {
    // SAFETY: used only for calls whose arguments are not written to memory (or for
    // garbage numbers the hypervisor rejects).
    unsafe { call(nr, args) }
}

/// CONSOLE_WRITE of `bytes` (identity-mapped, so the pointer is the GPA).
pub fn console_write(bytes: &[u8]) -> Result<i64, Fault> {
    // SAFETY: CONSOLE_WRITE only reads the buffer.
    unsafe {
        call(
            CONSOLE_WRITE,
            [bytes.as_ptr() as u64, bytes.len() as u64, 0, 0],
        )
    }
}

/// MULTICALL over `batch` (32-byte aligned by `Entry`'s type); results are written in place.
pub fn multicall(batch: &mut [Entry]) -> Result<i64, Fault> {
    // SAFETY: the hypervisor writes only the `result` fields of the batch we own exclusively.
    unsafe {
        call(
            MULTICALL,
            [batch.as_mut_ptr() as u64, batch.len() as u64, 0, 0],
        )
    }
}

/// EXIT_STATS into `buf`.
pub fn exit_stats(buf: &mut [u8]) -> Result<i64, Fault> {
    // SAFETY: the hypervisor writes at most `buf.len()` bytes of the buffer we own.
    unsafe {
        call(
            EXIT_STATS,
            [buf.as_mut_ptr() as u64, buf.len() as u64, 0, 0],
        )
    }
}

/// Prints `guest <name>: <args>` through CONSOLE_WRITE (one call, one line).
pub fn console_say(args: core::fmt::Arguments<'_>) -> Result<i64, Fault> {
    let mut line = crate::report::Line::guest(args);
    console_write(line.finish())
}
