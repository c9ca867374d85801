//! The fuzz guest's IDT: all 256 vectors, each counted, none fatal when expected.
//!
//! - Every vector has a 32-byte stub (`fuzz_vectors + 32 * v`) that pushes a dummy error code
//!   where the CPU pushes none, then the vector, and joins one common entry.
//!   SDM Vol. 3A §6.15 (Table 6-1): vectors 8, 10-14, 17, 21, 29 and 30 push an error code
//!   when the CPU raises them, but an `INT n` to the same vector pushes none (§6.12.1.2); the
//!   stubs of those vectors consult [`FUZZ_SOFT_INT`], which the `INT n` action sets.
//! - Recovery is label-based as in `guest_rt`: [`probe!`] stores the address of a label right
//!   after the probed instruction in [`RECOVER_RIP`]; the handler resumes there.
//! - Unarmed, `#BP`, `INT n` (flagged), and external interrupts (vector ≥ 32, the PIC is
//!   programmed at 0x20 before interrupts are ever enabled) return normally; anything else
//!   is a fault the fuzzer did not provoke: a `FAIL unexpected-exception` line, and the VM
//!   ends.

use core::arch::global_asm;
use core::sync::atomic::{AtomicU64, AtomicU8, Ordering};

/// The registers and CPU frame as the common entry leaves them.
#[repr(C)]
#[derive(Debug)]
pub struct Frame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    pub vector: u64,
    pub error_code: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

/// Where the handler resumes after an exception; 0 = no probe armed.
pub static RECOVER_RIP: AtomicU64 = AtomicU64::new(0);
/// Set by the `INT n` action: the next vector is a software interrupt (no error code, trap
/// semantics: the handler returns after the instruction).
#[no_mangle]
pub static FUZZ_SOFT_INT: AtomicU8 = AtomicU8::new(0);

const NO_FAULT: u64 = u64::MAX;
static FAULT_VECTOR: AtomicU64 = AtomicU64::new(NO_FAULT);
/// How many times each vector was taken.
static COUNTS: [AtomicU64; 256] = [const { AtomicU64::new(0) }; 256];

/// First vector that is not an exception (SDM Vol. 3A §6.2: 0-31 are reserved).
pub const FIRST_INTERRUPT: u8 = 32;
pub const BP: u8 = 3;
const PIC1_COMMAND: u16 = 0x20;
const PIC2_COMMAND: u16 = 0xA0;
/// OCW2 non-specific EOI (8259A data sheet, OCW2 R=0 SL=0 EOI=1).
const PIC_EOI: u8 = 0x20;

// The stubs and the common entry (AT&T syntax for `.rept`/`.if` arithmetic on the vector).
global_asm!(
    ".pushsection .text.fuzz_vectors, \"ax\"",
    ".balign 32",
    ".global fuzz_vectors",
    "fuzz_vectors:",
    ".set fz_vec, 0",
    ".rept 256",
    ".balign 32",
    ".if (fz_vec == 8) || ((fz_vec >= 10) && (fz_vec <= 14)) || (fz_vec == 17) || (fz_vec == 21) || (fz_vec == 29) || (fz_vec == 30)",
    "cmpb $0, {soft}(%rip)",
    "je 1f",
    "pushq $0",
    "1:",
    ".else",
    "pushq $0",
    ".endif",
    "pushq $fz_vec",
    "jmp fuzz_trap_common",
    ".set fz_vec, fz_vec + 1",
    ".endr",
    "fuzz_trap_common:",
    "pushq %rax", "pushq %rbx", "pushq %rcx", "pushq %rdx", "pushq %rsi", "pushq %rdi",
    "pushq %rbp", "pushq %r8", "pushq %r9", "pushq %r10", "pushq %r11", "pushq %r12",
    "pushq %r13", "pushq %r14", "pushq %r15",
    // The CPU aligned RSP to 16 before its 5-word frame (SDM Vol. 3A §6.14.2); with the
    // error code, the vector and 15 registers RSP is 16-aligned again for the call.
    "movq %rsp, %rdi",
    "cld",
    "call {handler}",
    "popq %r15", "popq %r14", "popq %r13", "popq %r12", "popq %r11", "popq %r10",
    "popq %r9", "popq %r8", "popq %rbp", "popq %rdi", "popq %rsi", "popq %rdx",
    "popq %rcx", "popq %rbx", "popq %rax",
    "addq $16, %rsp",
    "iretq",
    ".popsection",
    soft = sym FUZZ_SOFT_INT,
    handler = sym fuzz_trap,
    options(att_syntax),
);

extern "C" {
    static fuzz_vectors: u8;
}

/// Bytes per stub in `fuzz_vectors`.
const STUB_SIZE: u64 = 32;

extern "C" fn fuzz_trap(f: &mut Frame) {
    let vector = f.vector as u8;
    COUNTS[usize::from(vector)].fetch_add(1, Ordering::Relaxed);
    let recover = RECOVER_RIP.swap(0, Ordering::Relaxed);
    if FUZZ_SOFT_INT.swap(0, Ordering::Relaxed) != 0 {
        // INT n is a trap: the frame's RIP is already past the instruction.
        FAULT_VECTOR.store(f.vector, Ordering::Relaxed);
        return;
    }
    if recover != 0 {
        FAULT_VECTOR.store(f.vector, Ordering::Relaxed);
        f.rip = recover;
        return;
    }
    if vector == BP {
        return;
    }
    if vector >= FIRST_INTERRUPT {
        guest_rt::cpu::outb(PIC2_COMMAND, PIC_EOI);
        guest_rt::cpu::outb(PIC1_COMMAND, PIC_EOI);
        return;
    }
    crate::say(format_args!(
        "FAIL unexpected-exception: vector={} error={:#x} rip={:#x} rsp={:#x} cr2={:#x} rax={:#x} rcx={:#x} iter={} action={}",
        f.vector,
        f.error_code,
        f.rip,
        f.rsp,
        x86_64_cr2(),
        f.rax,
        f.rcx,
        crate::current_iteration(),
        crate::current_action()
    ));
    guest_rt::halt()
}

fn x86_64_cr2() -> u64 {
    let v: u64;
    // SAFETY: reading CR2 at CPL 0 has no side effects.
    unsafe {
        core::arch::asm!("mov {}, cr2", out(reg) v, options(nomem, nostack, preserves_flags))
    };
    v
}

/// One IDT gate (SDM Vol. 3A §6.14.1, Figure 6-8).
#[repr(C)]
#[derive(Clone, Copy)]
struct Gate {
    offset_low: u16,
    selector: u16,
    ist: u8,
    attributes: u8,
    offset_mid: u16,
    offset_high: u32,
    reserved: u32,
}

/// Present, DPL 0, 64-bit interrupt gate (type 0xE): IF is cleared on entry.
const GATE_INTERRUPT: u8 = 0x8E;

#[repr(C, align(16))]
struct Idt([Gate; 256]);

static mut IDT: Idt = Idt([Gate {
    offset_low: 0,
    selector: 0,
    ist: 0,
    attributes: 0,
    offset_mid: 0,
    offset_high: 0,
    reserved: 0,
}; 256]);

/// The LIDT operand (SDM Vol. 3A §2.4.3).
#[repr(C, packed)]
struct Pseudo {
    limit: u16,
    base: u64,
}

/// Fills every gate with its stub and loads the IDT. Call once, first thing.
pub fn init() {
    let cs: u16;
    // SAFETY: reading CS has no side effects.
    unsafe {
        core::arch::asm!("mov {0:x}, cs", out(reg) cs, options(nomem, nostack, preserves_flags))
    };
    let base = core::ptr::addr_of!(fuzz_vectors) as u64;
    // SAFETY: single vCPU, interrupts off, called once before any exception can occur; the
    // IDT is a static, so it outlives its use by the CPU.
    unsafe {
        let idt = &mut *core::ptr::addr_of_mut!(IDT);
        for (v, gate) in idt.0.iter_mut().enumerate() {
            let handler = base + STUB_SIZE * v as u64;
            *gate = Gate {
                offset_low: handler as u16,
                selector: cs,
                ist: 0,
                attributes: GATE_INTERRUPT,
                offset_mid: (handler >> 16) as u16,
                offset_high: (handler >> 32) as u32,
                reserved: 0,
            };
        }
        let pseudo = Pseudo {
            limit: (core::mem::size_of::<Idt>() - 1) as u16,
            base: idt as *const Idt as u64,
        };
        core::arch::asm!("lidt [{}]", in(reg) &pseudo, options(readonly, nostack, preserves_flags));
    }
}

/// Clears the recorded fault; [`probe!`] calls this before arming.
pub fn clear() {
    FAULT_VECTOR.store(NO_FAULT, Ordering::Relaxed);
}

/// Disarms the recovery point and returns the vector it caught, if any.
pub fn take() -> Option<u8> {
    RECOVER_RIP.store(0, Ordering::Relaxed);
    let v = FAULT_VECTOR.swap(NO_FAULT, Ordering::Relaxed);
    (v != NO_FAULT).then_some(v as u8)
}

/// How often `vector` was taken.
pub fn count(vector: u8) -> u64 {
    COUNTS[usize::from(vector)].load(Ordering::Relaxed)
}

/// Exceptions taken (vectors 0-31).
pub fn exceptions() -> u64 {
    (0..FIRST_INTERRUPT).map(count).sum()
}

/// Interrupts and software interrupts taken (vectors 32-255).
pub fn interrupts() -> u64 {
    (FIRST_INTERRUPT..=255).map(count).sum()
}

/// Runs the assembly template `$insn` with a recovery point armed right after it and
/// evaluates to `Option<u8>`: the vector it raised, if any. Must be used inside `unsafe`.
/// Do not use `2:` labels in the template.
#[macro_export]
macro_rules! probe {
    ($insn:literal $(, $($ops:tt)*)?) => {{
        $crate::idt::clear();
        ::core::arch::asm!(
            "lea {__probe_tmp}, [rip + 2f]",
            "mov qword ptr [{__probe_slot}], {__probe_tmp}",
            $insn,
            "2:",
            __probe_slot = in(reg) $crate::idt::RECOVER_RIP.as_ptr(),
            __probe_tmp = out(reg) _,
            $($($ops)*)?
        );
        $crate::idt::take()
    }};
}
