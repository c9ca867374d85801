//! Exceptions: an IDT whose 0..=31 vectors all go to one handler.
//!
//! Fault recovery is label-based: [`probe!`] stores the address of a label right after the
//! probed instruction in [`RECOVER_RIP`], runs the instruction, and on an exception the
//! handler records the vector and error code and resumes at that label (RSP is unchanged: the
//! probed instruction pushed nothing). No instruction lengths are guessed.
//!
//! Without a recovery point armed, `#BP` is counted and execution continues after the `INT3`;
//! any other exception prints `FAIL unexpected-exception: ...` and `DONE`, and ends the VM.

use core::arch::global_asm;
use core::sync::atomic::{AtomicU64, Ordering};
use x86_64::structures::idt::InterruptDescriptorTable;
use x86_64::VirtAddr;

/// The registers and CPU frame as the entry stubs leave them.
#[repr(C)]
#[derive(Debug)]
pub struct TrapFrame {
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

/// An exception caught by a probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    pub vector: u8,
    pub error_code: u64,
}

impl core::fmt::Display for Fault {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "{} (error code {:#x})",
            vector_name(self.vector),
            self.error_code
        )
    }
}

pub const DE: u8 = 0;
pub const DB: u8 = 1;
pub const BP: u8 = 3;
pub const UD: u8 = 6;
pub const DF: u8 = 8;
pub const GP: u8 = 13;
pub const PF: u8 = 14;

/// Where the handler resumes after an exception; 0 = no probe armed.
pub static RECOVER_RIP: AtomicU64 = AtomicU64::new(0);
const NO_FAULT: u64 = u64::MAX;
static FAULT_VECTOR: AtomicU64 = AtomicU64::new(NO_FAULT);
static FAULT_ERROR: AtomicU64 = AtomicU64::new(0);
static BP_COUNT: AtomicU64 = AtomicU64::new(0);
static BP_RIP: AtomicU64 = AtomicU64::new(0);
static LAST_CR2: AtomicU64 = AtomicU64::new(0);
static FAULT_RFLAGS: AtomicU64 = AtomicU64::new(0);

pub fn vector_name(v: u8) -> &'static str {
    match v {
        0 => "#DE",
        1 => "#DB",
        2 => "NMI",
        3 => "#BP",
        4 => "#OF",
        5 => "#BR",
        6 => "#UD",
        7 => "#NM",
        8 => "#DF",
        10 => "#TS",
        11 => "#NP",
        12 => "#SS",
        13 => "#GP",
        14 => "#PF",
        16 => "#MF",
        17 => "#AC",
        18 => "#MC",
        19 => "#XM",
        20 => "#VE",
        21 => "#CP",
        _ => "vector",
    }
}

macro_rules! stubs {
    ($($name:ident = $vec:literal $kind:ident),* $(,)?) => {
        global_asm!(
            $(concat!(".global ", stringify!($name), "\n", stringify!($name), ":\n",
                      stubs!(@push $kind), "push ", stringify!($vec), "\n",
                      "jmp guest_trap_common\n"),)*
            "guest_trap_common:",
            "push rax", "push rbx", "push rcx", "push rdx", "push rsi", "push rdi", "push rbp",
            "push r8", "push r9", "push r10", "push r11", "push r12", "push r13", "push r14",
            "push r15",
            // The CPU aligned RSP to 16 before its 5-word frame (SDM Vol. 3A §6.14.2); with the
            // error code, the vector and 15 registers RSP is 16-aligned again for the call.
            "mov rdi, rsp",
            "cld",
            "call {handler}",
            "pop r15", "pop r14", "pop r13", "pop r12", "pop r11", "pop r10", "pop r9",
            "pop r8", "pop rbp", "pop rdi", "pop rsi", "pop rdx", "pop rcx", "pop rbx",
            "pop rax",
            "add rsp, 16",
            "iretq",
            handler = sym trap_handler,
        );
        extern "C" { $(fn $name();)* }
    };
    (@push noerr) => { "push 0\n" };
    (@push err) => { "" };
}

// SDM Vol. 3A §6.15 (Table 6-1): vectors 8, 10-14, 17, 21, 29 and 30 push an error code.
stubs! {
    t_de = 0 noerr, t_db = 1 noerr, t_nmi = 2 noerr, t_bp = 3 noerr, t_of = 4 noerr,
    t_br = 5 noerr, t_ud = 6 noerr, t_nm = 7 noerr, t_df = 8 err, t_ts = 10 err,
    t_np = 11 err, t_ss = 12 err, t_gp = 13 err, t_pf = 14 err, t_mf = 16 noerr,
    t_ac = 17 err, t_mc = 18 noerr, t_xm = 19 noerr, t_ve = 20 noerr, t_cp = 21 err,
    t_hv = 28 noerr, t_vc = 29 err, t_sx = 30 err,
}

extern "C" fn trap_handler(f: &mut TrapFrame) {
    let vector = f.vector as u8;
    if vector == PF {
        LAST_CR2.store(
            x86_64::registers::control::Cr2::read_raw(),
            Ordering::Relaxed,
        );
    }
    if vector == BP {
        BP_COUNT.fetch_add(1, Ordering::Relaxed);
        BP_RIP.store(f.rip, Ordering::Relaxed);
    }
    let recover = RECOVER_RIP.swap(0, Ordering::Relaxed);
    if recover != 0 {
        FAULT_VECTOR.store(f.vector, Ordering::Relaxed);
        FAULT_ERROR.store(f.error_code, Ordering::Relaxed);
        FAULT_RFLAGS.store(f.rflags, Ordering::Relaxed);
        f.rip = recover;
        return;
    }
    if vector == BP {
        // A trap: RIP is already past the INT3.
        return;
    }
    crate::report::fail(
        "unexpected-exception",
        format_args!(
            "{} vector={} error={:#x} rip={:#x} rsp={:#x} cr2={:#x} rax={:#x} rcx={:#x}",
            vector_name(vector),
            f.vector,
            f.error_code,
            f.rip,
            f.rsp,
            x86_64::registers::control::Cr2::read_raw(),
            f.rax,
            f.rcx
        ),
    );
    crate::report::done()
}

/// The IDT; built once by [`init`].
static mut IDT: Option<InterruptDescriptorTable> = None;

fn addr(stub: unsafe extern "C" fn()) -> VirtAddr {
    VirtAddr::new(stub as usize as u64)
}

/// Builds and loads the IDT (code selector: the current CS, 0x08). Call once, first thing.
pub fn init() {
    let mut idt = InterruptDescriptorTable::new();
    // SAFETY: every address is one of the stubs above, which save all registers, call the
    // handler and return with IRETQ (the frame layout matches `TrapFrame`).
    unsafe {
        idt.divide_error.set_handler_addr(addr(t_de));
        idt.debug.set_handler_addr(addr(t_db));
        idt.non_maskable_interrupt.set_handler_addr(addr(t_nmi));
        idt.breakpoint.set_handler_addr(addr(t_bp));
        idt.overflow.set_handler_addr(addr(t_of));
        idt.bound_range_exceeded.set_handler_addr(addr(t_br));
        idt.invalid_opcode.set_handler_addr(addr(t_ud));
        idt.device_not_available.set_handler_addr(addr(t_nm));
        idt.double_fault.set_handler_addr(addr(t_df));
        idt.invalid_tss.set_handler_addr(addr(t_ts));
        idt.segment_not_present.set_handler_addr(addr(t_np));
        idt.stack_segment_fault.set_handler_addr(addr(t_ss));
        idt.general_protection_fault.set_handler_addr(addr(t_gp));
        idt.page_fault.set_handler_addr(addr(t_pf));
        idt.x87_floating_point.set_handler_addr(addr(t_mf));
        idt.alignment_check.set_handler_addr(addr(t_ac));
        idt.machine_check.set_handler_addr(addr(t_mc));
        idt.simd_floating_point.set_handler_addr(addr(t_xm));
        idt.virtualization.set_handler_addr(addr(t_ve));
        idt.cp_protection_exception.set_handler_addr(addr(t_cp));
        idt.hv_injection_exception.set_handler_addr(addr(t_hv));
        idt.vmm_communication_exception.set_handler_addr(addr(t_vc));
        idt.security_exception.set_handler_addr(addr(t_sx));
    }
    // SAFETY: single vCPU, called once before any exception can occur; the IDT lives in a
    // static, so it outlives its use by the CPU.
    unsafe {
        let slot = &mut *core::ptr::addr_of_mut!(IDT);
        let idt: &'static InterruptDescriptorTable = slot.insert(idt);
        idt.load();
    }
}

/// Loads the IDT [`init`] built into this vCPU's IDTR (vCPUs other than the one that
/// called [`init`]; the handlers' fault recovery is for one vCPU at a time).
pub fn load() {
    // SAFETY: read-only use of the static IDT after `init` wrote it (the caller waited for
    // that, smp::wait_for_start); it lives for the whole run.
    unsafe {
        if let Some(idt) = (*core::ptr::addr_of!(IDT)).as_ref() {
            idt.load();
        }
    }
}

/// Clears the recorded fault; [`probe!`] calls this before arming.
pub fn clear() {
    FAULT_VECTOR.store(NO_FAULT, Ordering::Relaxed);
    FAULT_ERROR.store(0, Ordering::Relaxed);
}

/// Disarms the recovery point and returns the fault it caught, if any.
pub fn take() -> Option<Fault> {
    RECOVER_RIP.store(0, Ordering::Relaxed);
    let v = FAULT_VECTOR.swap(NO_FAULT, Ordering::Relaxed);
    (v != NO_FAULT).then(|| Fault {
        vector: v as u8,
        error_code: FAULT_ERROR.load(Ordering::Relaxed),
    })
}

/// How many `#BP` the handler has seen, and the RIP of the last one's frame.
pub fn breakpoints() -> (u64, u64) {
    (
        BP_COUNT.load(Ordering::Relaxed),
        BP_RIP.load(Ordering::Relaxed),
    )
}

/// CR2 at the last `#PF`.
/// The RFLAGS image the last recovered fault pushed.
pub fn last_fault_rflags() -> u64 {
    FAULT_RFLAGS.load(Ordering::Relaxed)
}

pub fn last_cr2() -> u64 {
    LAST_CR2.load(Ordering::Relaxed)
}

/// Runs the assembly template `$insn` (one or more instructions, with the usual `asm!`
/// operands after it) with a recovery point armed right after it, and evaluates to
/// `Option<Fault>`: the exception it raised, if any. Must be used inside `unsafe`.
///
/// Registers written by the template hold garbage when it faulted. Do not use `2:` labels in
/// the template.
#[macro_export]
macro_rules! probe {
    ($insn:literal $(, $($ops:tt)*)?) => {{
        $crate::trap::clear();
        ::core::arch::asm!(
            "lea {__probe_tmp}, [rip + 2f]",
            "mov qword ptr [{__probe_slot}], {__probe_tmp}",
            $insn,
            "2:",
            __probe_slot = in(reg) $crate::trap::RECOVER_RIP.as_ptr(),
            __probe_tmp = out(reg) _,
            $($($ops)*)?
        );
        $crate::trap::take()
    }};
}

/// Points IDT vector `vector` (32..=255) at an interrupt stub `handler` (which must save what
/// it uses and end with IRETQ). [`init`] must have run.
///
/// # Safety
/// `handler` must be the address of such a stub; it runs whenever the vector is delivered.
pub unsafe fn set_interrupt_gate(vector: u8, handler: u64) {
    // SAFETY: single vCPU; the caller guarantees the handler contract; the IDT is the static
    // one loaded by `init`, so updating the entry in place is what the CPU will read.
    unsafe {
        if let Some(idt) = (*core::ptr::addr_of_mut!(IDT)).as_mut() {
            idt[vector].set_handler_addr(VirtAddr::new(handler));
        }
    }
}

/// Points exception vector 1 (#DB), 6 (#UD) or 13 (#GP) at `handler` (an IRETQ-ending stub that handles
/// the CPU frame itself, #GP's error code included). Other vectors are left alone.
///
/// # Safety
/// As [`set_interrupt_gate`].
pub unsafe fn set_exception_gate(vector: u8, handler: u64) {
    // SAFETY: as in `set_interrupt_gate`.
    unsafe {
        if let Some(idt) = (*core::ptr::addr_of_mut!(IDT)).as_mut() {
            let addr = VirtAddr::new(handler);
            match vector {
                DB => {
                    idt.debug.set_handler_addr(addr);
                }
                UD => {
                    idt.invalid_opcode.set_handler_addr(addr);
                }
                GP => {
                    idt.general_protection_fault.set_handler_addr(addr);
                }
                _ => {}
            }
        }
    }
}
