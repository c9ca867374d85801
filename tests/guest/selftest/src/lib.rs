//! `guest_rt`: the runtime of Bulkhead's no_std test guests (`selftest`, `hostile-*`).
//!
//! - [`entry!`]: the ELF entry `_start` (in `.text.start`): zeroes `.bss`, then calls the
//!   guest's `main(ram_size, vm_index)` on the stack the hypervisor gave it.
//! - [`smp_entry!`]: the entry for guests with several vCPUs ([`smp`]): `.bss` zeroed once,
//!   a stack per vCPU, `main(VcpuBoot)` with the vCPU's index and count.
//! - [`uart`]: polled output to the 16550 at 0x3F8; [`report`]: the `guest <name>: ...`
//!   lines of the output protocol and the PASS/FAIL counters.
//! - [`trap`]: an IDT for every exception vector; [`probe!`] runs one instruction and returns
//!   the vector it raised, if any (the handler resumes at a label after the instruction).
//! - [`hv`]: raw VMCALL and the hypercall ABI v1 numbers (docs/hypercall-abi.md);
//!   [`cpu`]: CPUID, MSRs, port I/O, TSC, control registers.
//!
//! Memory is identity-mapped (guest-virtual = guest-physical), so pointers are GPAs.

#![no_std]

pub mod apic;
pub mod cpu;
pub mod hv;
pub mod pic;
pub mod report;
pub mod smp;
pub mod trap;
pub mod uart;

/// Defines the ELF entry point `_start` (section `.text.start`) that zeroes `.bss` and calls
/// `$main: fn(ram_size: u64, vm_index: u64) -> !` with the RDI and RSI the hypervisor set.
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        #[no_mangle]
        extern "C" fn __guest_rust_entry(ram_size: u64, vm_index: u64) -> ! {
            let main: fn(u64, u64) -> ! = $main;
            main(ram_size, vm_index)
        }

        ::core::arch::global_asm!(
            ".pushsection .text.start, \"ax\"",
            ".global _start",
            "_start:",
            "cli",
            "cld",
            "mov r12, rdi",
            "mov r13, rsi",
            "lea rdi, [rip + __bss_start]",
            "lea rcx, [rip + __bss_end]",
            "sub rcx, rdi",
            "xor eax, eax",
            "rep stosb",
            "mov rdi, r12",
            "mov rsi, r13",
            "and rsp, -16",
            "xor ebp, ebp",
            "call {entry}",
            "2:",
            "cli",
            "hlt",
            "jmp 2b",
            ".popsection",
            entry = sym __guest_rust_entry,
        );
    };
}

/// Ends the VM: `cli; hlt` (the hypervisor stops a VM that halts with interrupts disabled).
pub fn halt() -> ! {
    loop {
        // SAFETY: disabling interrupts and halting only stop this vCPU; that is the intent.
        unsafe { core::arch::asm!("cli", "hlt", options(nomem, nostack)) };
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    report::fail("panic", format_args!("{}", info.message()));
    report::done()
}

/// An interrupt entry stub named `$stub` that saves the caller-saved registers, calls the
/// `extern "C" fn()` `$handler` and returns with IRETQ (for vectors without an error code).
/// Declares `extern "C" { fn $stub(); }` so `$stub as *const () as u64` is its address.
#[macro_export]
macro_rules! irq_stub {
    ($stub:ident, $handler:path) => {
        ::core::arch::global_asm!(
            concat!(".global ", stringify!($stub)),
            concat!(stringify!($stub), ":"),
            "push rax", "push rcx", "push rdx", "push rsi", "push rdi",
            "push r8", "push r9", "push r10", "push r11",
            "cld",
            "call {handler}",
            "pop r11", "pop r10", "pop r9", "pop r8",
            "pop rdi", "pop rsi", "pop rdx", "pop rcx", "pop rax",
            "iretq",
            handler = sym $handler,
        );
        extern "C" {
            fn $stub();
        }
    };
}
