//! VM entry and exit: the only assembly that switches between Bulkhead and a guest.
//!
//! `bulkhead_vm_enter(regs, launched)` saves the host's callee-saved registers and the `regs`
//! pointer on the stack, writes that stack pointer to HOST_RSP, loads the guest's
//! general-purpose registers and CR2, and executes VMLAUNCH or VMRESUME. On a VM exit the CPU
//! continues at `bulkhead_vm_exit` (HOST_RIP) with RSP = HOST_RSP; the guest registers are
//! stored back into `regs` and the function returns 0 to its caller. If the entry itself fails
//! (VMfailValid/VMfailInvalid, SDM Vol. 3C §31.2), it returns the RFLAGS of the failure
//! (always non-zero: bit 1 of RFLAGS is reserved as 1).
//!
//! Guest RSP, RIP and RFLAGS live in the VMCS; CR2 is not part of the VMCS (SDM Vol. 3C
//! §28.3) and is switched here.

use core::arch::global_asm;
use vmx::fields::VmcsField;

/// A guest's general-purpose registers (except RSP) and CR2, in the order the assembly uses.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct GuestRegs {
    pub rax: u64,
    pub rbx: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub rbp: u64,
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
    pub cr2: u64,
}

global_asm!(
    ".global bulkhead_vm_enter",
    "bulkhead_vm_enter:",
    "push rbp",
    "push rbx",
    "push r12",
    "push r13",
    "push r14",
    "push r15",
    "push rdi",
    // HOST_RSP = the stack with the regs pointer on top.
    "mov rax, {host_rsp}",
    "vmwrite rax, rsp",
    "jbe 3f",
    // MOV to CR2 leaves the arithmetic flags undefined: do it before the compare.
    "mov rax, [rdi + 120]",
    "mov cr2, rax",
    "cmp rsi, 0",
    "mov rax, [rdi + 0]",
    "mov rbx, [rdi + 8]",
    "mov rcx, [rdi + 16]",
    "mov rdx, [rdi + 24]",
    "mov rsi, [rdi + 32]",
    "mov rbp, [rdi + 48]",
    "mov r8, [rdi + 56]",
    "mov r9, [rdi + 64]",
    "mov r10, [rdi + 72]",
    "mov r11, [rdi + 80]",
    "mov r12, [rdi + 88]",
    "mov r13, [rdi + 96]",
    "mov r14, [rdi + 104]",
    "mov r15, [rdi + 112]",
    "mov rdi, [rdi + 40]",
    "jne 2f",
    "vmlaunch",
    "jmp 3f",
    "2:",
    "vmresume",
    // VM entry failed: return RFLAGS (CF = VMfailInvalid, ZF = VMfailValid).
    "3:",
    "pushfq",
    "pop rax",
    "add rsp, 8",
    "pop r15",
    "pop r14",
    "pop r13",
    "pop r12",
    "pop rbx",
    "pop rbp",
    "ret",
    "",
    ".global bulkhead_vm_exit",
    "bulkhead_vm_exit:",
    "xchg rax, [rsp]",
    "mov [rax + 8], rbx",
    "mov [rax + 16], rcx",
    "mov [rax + 24], rdx",
    "mov [rax + 32], rsi",
    "mov [rax + 40], rdi",
    "mov [rax + 48], rbp",
    "mov [rax + 56], r8",
    "mov [rax + 64], r9",
    "mov [rax + 72], r10",
    "mov [rax + 80], r11",
    "mov [rax + 88], r12",
    "mov [rax + 96], r13",
    "mov [rax + 104], r14",
    "mov [rax + 112], r15",
    "mov rbx, cr2",
    "mov [rax + 120], rbx",
    "pop rbx",
    "mov [rax + 0], rbx",
    "xor eax, eax",
    "pop r15",
    "pop r14",
    "pop r13",
    "pop r12",
    "pop rbx",
    "pop rbp",
    "ret",
    host_rsp = const VmcsField::HOST_RSP.encoding(),
);

extern "C" {
    fn bulkhead_vm_enter(regs: *mut GuestRegs, launched: u64) -> u64;
    fn bulkhead_vm_exit();
}

/// HOST_RIP for every VMCS.
pub fn host_rip() -> u64 {
    bulkhead_vm_exit as *const () as u64
}

/// Enters the guest of the current VMCS and returns at its next VM exit (`Ok`), or with the
/// RFLAGS of a failed VM entry (`Err`).
///
/// # Safety
/// A VMCS must be current on this CPU with complete host state (HOST_RIP = [`host_rip`]) and
/// guest state, and `launched` must say whether it was launched before (SDM Vol. 3C §25.11.3).
pub unsafe fn enter(regs: &mut GuestRegs, launched: bool) -> Result<(), u64> {
    // SAFETY: the caller guarantees a complete current VMCS; the assembly preserves the
    // callee-saved registers and only touches `regs` through the pointer given.
    let flags = unsafe { bulkhead_vm_enter(regs, u64::from(launched)) };
    if flags == 0 {
        Ok(())
    } else {
        Err(flags)
    }
}

// The assembly above hard-codes these offsets.
const _: () = assert!(core::mem::offset_of!(GuestRegs, cr2) == 120);
const _: () = assert!(core::mem::offset_of!(GuestRegs, rdi) == 40);
const _: () = assert!(core::mem::offset_of!(GuestRegs, r15) == 112);
