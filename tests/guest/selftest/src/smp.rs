//! Several vCPUs in one test guest (issue 10): the entry point every vCPU takes, a stack of
//! its own for each, and the LOCK-prefixed counter the SMP guests share.
//!
//! The elf64 convention (docs/vm-platform.md): every vCPU enters at the ELF entry point with
//! RDI = RAM size, RSI = VM index, RDX = this vCPU's index (0 = the boot vCPU) and RCX = the
//! number of vCPUs, all on the same RSP (the top of RAM). [`smp_entry!`]'s `_start` therefore
//! touches no stack before it has switched to `STACKS[RDX]`:
//!
//! 1. vCPU 0 zeroes `.bss` (where the stacks and the guests' shared counters live), then
//!    stores `BSS_READY` into [`BSS_STATE`], a `.data` word the loader initialised to
//!    `BSS_DIRTY`; every other vCPU spins (PAUSE) until it reads `BSS_READY`;
//! 2. each vCPU loads RSP with the top of its own 16 KiB stack and calls
//!    `main(VcpuBoot)`.
//!
//! A vCPU index of [`MAX_VCPUS`] or more halts at once (`cli; hlt`). RCX = 0 (a hypervisor
//! that predates the convention and starts one vCPU with RDX = RCX = 0) means one vCPU.

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

/// At most this many vCPUs (the `vcpus` limit of the configuration).
pub const MAX_VCPUS: usize = 16;
/// Each vCPU's stack.
pub const STACK_SIZE: usize = 16 * 1024;
/// [`BSS_STATE`] values.
pub const BSS_DIRTY: u32 = 1;
pub const BSS_READY: u32 = 2;

/// What a vCPU receives at entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VcpuBoot {
    pub ram_size: u64,
    pub vm_index: u64,
    /// This vCPU's index, 0 = the boot vCPU.
    pub vcpu: u32,
    /// The VM's vCPU count, at least 1.
    pub vcpus: u32,
}

/// The vCPUs' stacks (in `.bss`, zeroed by vCPU 0 before any vCPU uses one).
#[repr(C, align(16))]
#[derive(Debug)]
pub struct Stacks(pub [[u8; STACK_SIZE]; MAX_VCPUS]);

pub static mut GUEST_RT_SMP_STACKS: Stacks = Stacks([[0; STACK_SIZE]; MAX_VCPUS]);

/// `.data` (a non-zero initial value), so it is valid before `.bss` is zeroed.
pub static BSS_STATE: AtomicU32 = AtomicU32::new(BSS_DIRTY);

/// Set by vCPU 0 once its IDT and console name are ready: the other vCPUs wait for it with
/// [`wait_for_start`] before they load the IDT.
static STARTED: AtomicBool = AtomicBool::new(false);

/// The Rust side of the entry: builds [`VcpuBoot`] from the four registers.
pub fn boot(ram_size: u64, vm_index: u64, vcpu: u64, vcpus: u64) -> VcpuBoot {
    VcpuBoot {
        ram_size,
        vm_index,
        vcpu: vcpu as u32,
        vcpus: (vcpus as u32).clamp(1, MAX_VCPUS as u32),
    }
}

/// vCPU 0: the shared state is ready, the other vCPUs may go.
pub fn release_others() {
    STARTED.store(true, Ordering::Release);
}

/// vCPU 1..: waits for [`release_others`], then loads the IDT vCPU 0 built.
pub fn wait_for_start() {
    while !STARTED.load(Ordering::Acquire) {
        core::hint::spin_loop();
    }
    crate::trap::load();
}

/// LOCK XADD: adds `value` to `*counter` atomically and returns the old value.
pub fn lock_xadd(counter: &AtomicU64, value: u64) -> u64 {
    let mut v = value;
    // SAFETY: a LOCK-prefixed read-modify-write of an AtomicU64 we borrow; no other memory
    // is touched.
    unsafe {
        core::arch::asm!(
            "lock xadd qword ptr [{p}], {v}",
            p = in(reg) counter.as_ptr(),
            v = inout(reg) v,
            options(nostack, preserves_flags)
        );
    }
    v
}

/// Spins until `done()` or `timeout` TSC ticks have passed; whether `done()` held.
pub fn wait_until(timeout: u64, mut done: impl FnMut() -> bool) -> bool {
    let start = crate::cpu::rdtsc();
    while !done() {
        if crate::cpu::rdtsc().wrapping_sub(start) > timeout {
            return done();
        }
        core::hint::spin_loop();
    }
    true
}

/// Defines the ELF entry point `_start` for guests whose vCPUs all enter there (module
/// documentation) and calls `$main: fn(VcpuBoot) -> !` on each vCPU's own stack.
#[macro_export]
macro_rules! smp_entry {
    ($main:path) => {
        #[no_mangle]
        extern "C" fn __guest_rust_smp_entry(ram: u64, vm: u64, vcpu: u64, vcpus: u64) -> ! {
            let main: fn($crate::smp::VcpuBoot) -> ! = $main;
            main($crate::smp::boot(ram, vm, vcpu, vcpus))
        }

        ::core::arch::global_asm!(
            ".pushsection .text.start, \"ax\"",
            ".global _start",
            "_start:",
            "cli",
            "cld",
            "mov r12, rdi",
            "mov r13, rsi",
            "mov r14, rdx",
            "mov r15, rcx",
            "cmp r14, {max}",
            "jae 9f",
            "test r14, r14",
            "jnz 3f",
            // vCPU 0: zero .bss, then let the others go.
            "lea rdi, [rip + __bss_start]",
            "lea rcx, [rip + __bss_end]",
            "sub rcx, rdi",
            "xor eax, eax",
            "rep stosb",
            "mov dword ptr [rip + {state}], {ready}",
            "jmp 4f",
            "3:",
            "pause",
            "cmp dword ptr [rip + {state}], {ready}",
            "jne 3b",
            "4:",
            // RSP = the top of STACKS[index].
            "lea rsp, [rip + {stacks}]",
            "lea rax, [r14 + 1]",
            "imul rax, rax, {stack_size}",
            "add rsp, rax",
            "xor ebp, ebp",
            "mov rdi, r12",
            "mov rsi, r13",
            "mov rdx, r14",
            "mov rcx, r15",
            "call {entry}",
            "9:",
            "cli",
            "hlt",
            "jmp 9b",
            ".popsection",
            max = const $crate::smp::MAX_VCPUS,
            ready = const $crate::smp::BSS_READY,
            stack_size = const $crate::smp::STACK_SIZE,
            state = sym $crate::smp::BSS_STATE,
            stacks = sym $crate::smp::GUEST_RT_SMP_STACKS,
            entry = sym __guest_rust_smp_entry,
        );
    };
}
