//! GDT, TSS with IST stacks, and an IDT whose exception handlers print the vector, error code,
//! RIP, CR2 and every general-purpose register, then end the run as a hypervisor failure.
//!
//! The entry stubs are assembly (below) because `extern "x86-interrupt"` handlers cannot see
//! the interrupted general-purpose registers.

use core::arch::global_asm;
use spin::Once;
use x86_64::instructions::segmentation::{Segment, CS, DS, ES, SS};
use x86_64::instructions::tables::load_tss;
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable, SegmentSelector};
use x86_64::structures::idt::InterruptDescriptorTable;
use x86_64::structures::tss::TaskStateSegment;
use x86_64::VirtAddr;

/// IST slots (the TSS's IST1..IST3; the IDT takes them 0-based).
const IST_DOUBLE_FAULT: u16 = 0;
const IST_NMI: u16 = 1;
const IST_MACHINE_CHECK: u16 = 2;
const IST_STACK_SIZE: usize = 16 * 1024;

#[repr(C, align(16))]
struct Stack([u8; IST_STACK_SIZE]);

static mut IST_STACKS: [Stack; 3] = [const { Stack([0; IST_STACK_SIZE]) }; 3];

static TSS: Once<TaskStateSegment> = Once::new();
static GDT: Once<Gdt> = Once::new();
static IDT: Once<InterruptDescriptorTable> = Once::new();

/// The state pushed by the entry stubs: GPRs (pushed last, so first here), the vector, the
/// error code (0 for vectors without one) and the CPU's interrupt frame.
#[repr(C)]
#[derive(Debug)]
pub struct ExceptionFrame {
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

macro_rules! stubs {
    ($($name:ident = $vec:literal $kind:ident),* $(,)?) => {
        global_asm!(
            $(concat!(".global ", stringify!($name), "\n", stringify!($name), ":\n",
                      stubs!(@push $kind), "push ", stringify!($vec), "\n",
                      "jmp bulkhead_exception_common\n"),)*
            "bulkhead_exception_common:",
            "push rax", "push rbx", "push rcx", "push rdx", "push rsi", "push rdi", "push rbp",
            "push r8", "push r9", "push r10", "push r11", "push r12", "push r13", "push r14", "push r15",
            // The CPU aligned RSP to 16 before pushing its 5-word frame (SDM Vol. 3A §6.14.2);
            // 2 + 15 more words keep it 16-aligned for the call.
            "mov rdi, rsp",
            "cld",
            "call {handler}",
            "ud2",
            handler = sym exception_handler,
        );
        extern "C" { $(fn $name();)* }
    };
    (@push noerr) => { "push 0\n" };
    (@push err) => { "" };
}

// SDM Vol. 3A §6.15 (Table 6-1): vectors 8, 10-14, 17, 21, 29 and 30 push an error code.
stubs! {
    exc_de = 0 noerr, exc_db = 1 noerr, exc_nmi = 2 noerr, exc_bp = 3 noerr, exc_of = 4 noerr,
    exc_br = 5 noerr, exc_ud = 6 noerr, exc_nm = 7 noerr, exc_df = 8 err, exc_ts = 10 err,
    exc_np = 11 err, exc_ss = 12 err, exc_gp = 13 err, exc_pf = 14 err, exc_mf = 16 noerr,
    exc_ac = 17 err, exc_mc = 18 noerr, exc_xm = 19 noerr, exc_ve = 20 noerr, exc_cp = 21 err,
    exc_hv = 28 noerr, exc_vc = 29 err, exc_sx = 30 err,
}

fn exception_name(vector: u64) -> &'static str {
    match vector {
        0 => "#DE divide error",
        1 => "#DB debug",
        2 => "NMI",
        3 => "#BP breakpoint",
        4 => "#OF overflow",
        5 => "#BR bound range",
        6 => "#UD invalid opcode",
        7 => "#NM device not available",
        8 => "#DF double fault",
        10 => "#TS invalid TSS",
        11 => "#NP segment not present",
        12 => "#SS stack fault",
        13 => "#GP general protection",
        14 => "#PF page fault",
        16 => "#MF x87 error",
        17 => "#AC alignment check",
        18 => "#MC machine check",
        19 => "#XM SIMD error",
        20 => "#VE virtualization exception",
        21 => "#CP control protection",
        28 => "#HV hypervisor injection",
        29 => "#VC VMM communication",
        30 => "#SX security",
        _ => "reserved",
    }
}

extern "C" fn exception_handler(f: &ExceptionFrame) -> ! {
    use crate::serial::print_emergency as p;
    p(format_args!(
        "\nbulkhead: CPU exception {} (vector {}) error code {:#x} at RIP {:#018x}\n",
        exception_name(f.vector),
        f.vector,
        f.error_code,
        f.rip
    ));
    p(format_args!(
        "  CR2 {:#018x}  CR3 {:#018x}  CS {:#x}  SS {:#x}  RFLAGS {:#x}  RSP {:#018x}\n",
        crate::arch::read_cr2(),
        crate::arch::read_cr3(),
        f.cs,
        f.ss,
        f.rflags,
        f.rsp
    ));
    p(format_args!(
        "  RAX {:#018x}  RBX {:#018x}  RCX {:#018x}  RDX {:#018x}\n",
        f.rax, f.rbx, f.rcx, f.rdx
    ));
    p(format_args!(
        "  RSI {:#018x}  RDI {:#018x}  RBP {:#018x}  R8  {:#018x}\n",
        f.rsi, f.rdi, f.rbp, f.r8
    ));
    p(format_args!(
        "  R9  {:#018x}  R10 {:#018x}  R11 {:#018x}  R12 {:#018x}\n",
        f.r9, f.r10, f.r11, f.r12
    ));
    p(format_args!(
        "  R13 {:#018x}  R14 {:#018x}  R15 {:#018x}\n",
        f.r13, f.r14, f.r15
    ));
    crate::exit::exit(crate::exit::ExitStatus::HypervisorFailure)
}

fn stub_addr(stub: unsafe extern "C" fn()) -> VirtAddr {
    VirtAddr::new(stub as usize as u64)
}

/// A TSS whose IST slots point at `stacks` (three stacks of [`IST_STACK_SIZE`] bytes).
fn tss_with_stacks(stacks: *const Stack) -> TaskStateSegment {
    let mut tss = TaskStateSegment::new();
    for (slot, i) in [IST_DOUBLE_FAULT, IST_NMI, IST_MACHINE_CHECK]
        .into_iter()
        .enumerate()
    {
        // SAFETY: `stacks` points at three stacks; only the address is computed.
        let base = unsafe { stacks.add(slot) } as u64;
        tss.interrupt_stack_table[usize::from(i)] = VirtAddr::new(base + IST_STACK_SIZE as u64);
    }
    tss
}

type Gdt = (
    GlobalDescriptorTable,
    SegmentSelector,
    SegmentSelector,
    SegmentSelector,
);

/// A GDT with the kernel's code and data segments and `tss`.
fn gdt_with(tss: &'static TaskStateSegment) -> Gdt {
    let mut gdt = GlobalDescriptorTable::new();
    let code = gdt.append(Descriptor::kernel_code_segment());
    let data = gdt.append(Descriptor::kernel_data_segment());
    let tss_sel = gdt.append(Descriptor::tss_segment(tss));
    (gdt, code, data, tss_sel)
}

/// Loads `gdt` and its segments and TSS on this CPU; records the TSS for the VMCS host state.
fn load_gdt(gdt: &'static Gdt, tss: &'static TaskStateSegment) {
    let (gdt, code, data, tss_sel) = gdt;
    gdt.load();
    // SAFETY: the selectors index descriptors of the GDT just loaded.
    unsafe {
        CS::set_reg(*code);
        SS::set_reg(*data);
        DS::set_reg(*data);
        ES::set_reg(*data);
        load_tss(*tss_sel);
    }
    crate::percpu::set_tss(tss_sel.0, tss as *const TaskStateSegment as u64);
}

/// An application processor's descriptor tables (SDM Vol. 3A §9.4.4.1: each CPU loads its own
/// GDT and TSS; the IDT is shared): a GDT and a TSS with its own IST stacks, on the heap for
/// the kernel's lifetime, and the shared IDT.
pub fn init_ap() {
    let stacks: &'static mut [Stack; 3] = alloc::boxed::Box::leak(alloc::boxed::Box::new(
        [const { Stack([0; IST_STACK_SIZE]) }; 3],
    ));
    let tss: &'static TaskStateSegment =
        alloc::boxed::Box::leak(alloc::boxed::Box::new(tss_with_stacks(stacks.as_ptr())));
    let gdt: &'static Gdt = alloc::boxed::Box::leak(alloc::boxed::Box::new(gdt_with(tss)));
    load_gdt(gdt, tss);
    if let Some(idt) = IDT.get() {
        idt.load();
    }
}

/// Loads the boot CPU's GDT (with a TSS carrying IST stacks for #DF, NMI and #MC) and the IDT.
pub fn init() {
    let tss = TSS.call_once(|| {
        // IST_STACKS is only ever used as raw stack memory by the CPU; taking its address
        // does not create a reference.
        tss_with_stacks(core::ptr::addr_of!(IST_STACKS).cast::<Stack>())
    });
    let gdt = GDT.call_once(|| gdt_with(tss));
    load_gdt(gdt, tss);

    let idt = IDT.call_once(|| {
        let mut idt = InterruptDescriptorTable::new();
        // SAFETY: every address is one of the stubs above, which follow the interrupt-gate
        // contract (they never return into the interrupted code), and the IST indexes name
        // stacks installed in the TSS above.
        unsafe {
            idt.divide_error.set_handler_addr(stub_addr(exc_de));
            idt.debug.set_handler_addr(stub_addr(exc_db));
            idt.non_maskable_interrupt
                .set_handler_addr(stub_addr(exc_nmi))
                .set_stack_index(IST_NMI);
            idt.breakpoint.set_handler_addr(stub_addr(exc_bp));
            idt.overflow.set_handler_addr(stub_addr(exc_of));
            idt.bound_range_exceeded.set_handler_addr(stub_addr(exc_br));
            idt.invalid_opcode.set_handler_addr(stub_addr(exc_ud));
            idt.device_not_available.set_handler_addr(stub_addr(exc_nm));
            idt.double_fault
                .set_handler_addr(stub_addr(exc_df))
                .set_stack_index(IST_DOUBLE_FAULT);
            idt.invalid_tss.set_handler_addr(stub_addr(exc_ts));
            idt.segment_not_present.set_handler_addr(stub_addr(exc_np));
            idt.stack_segment_fault.set_handler_addr(stub_addr(exc_ss));
            idt.general_protection_fault
                .set_handler_addr(stub_addr(exc_gp));
            idt.page_fault.set_handler_addr(stub_addr(exc_pf));
            idt.x87_floating_point.set_handler_addr(stub_addr(exc_mf));
            idt.alignment_check.set_handler_addr(stub_addr(exc_ac));
            idt.machine_check
                .set_handler_addr(stub_addr(exc_mc))
                .set_stack_index(IST_MACHINE_CHECK);
            idt.simd_floating_point.set_handler_addr(stub_addr(exc_xm));
            idt.virtualization.set_handler_addr(stub_addr(exc_ve));
            idt.cp_protection_exception
                .set_handler_addr(stub_addr(exc_cp));
            idt.hv_injection_exception
                .set_handler_addr(stub_addr(exc_hv));
            idt.vmm_communication_exception
                .set_handler_addr(stub_addr(exc_vc));
            idt.security_exception.set_handler_addr(stub_addr(exc_sx));
        }
        // The host local APIC's vectors (lapic.rs): a kick only wakes a halted CPU; a
        // spurious interrupt gets no EOI (SDM Vol. 3A §11.9).
        // SAFETY: both stubs above return with IRETQ after restoring what they changed.
        unsafe {
            idt[crate::lapic::KICK_VECTOR].set_handler_addr(stub_addr(bulkhead_kick_entry));
            // The idle timer (idle.rs) only wakes the CPU too.
            idt[crate::lapic::IDLE_TIMER_VECTOR].set_handler_addr(stub_addr(bulkhead_kick_entry));
            idt[crate::lapic::SPURIOUS_VECTOR].set_handler_addr(stub_addr(bulkhead_spurious_entry));
            // The 8259A pair's vectors (host_irq.rs): an unmasked line (the host tick, COM1's
            // receive interrupt) can fire while an idle CPU waits with interrupts enabled.
            for (irq, stub) in PIC_STUBS.iter().enumerate() {
                idt[crate::host_irq::PIC_VECTOR_BASE + irq as u8]
                    .set_handler_addr(stub_addr(*stub));
            }
        }
        idt
    });
    idt.load();
}

// The host local APIC's interrupts return to the interrupted code (an idle CPU's HLT): the
// stubs save the registers the C ABI lets a call clobber. The CPU aligned RSP to 16 and pushed
// 5 words (SDM Vol. 3A §6.14.2); 9 more keep the call aligned.
global_asm!(
    ".global bulkhead_kick_entry",
    ".global bulkhead_spurious_entry",
    "bulkhead_kick_entry:",
    "push rax", "push rcx", "push rdx", "push rsi", "push rdi",
    "push r8", "push r9", "push r10", "push r11",
    "cld",
    "call {handler}",
    "pop r11", "pop r10", "pop r9", "pop r8",
    "pop rdi", "pop rsi", "pop rdx", "pop rcx", "pop rax",
    "iretq",
    "bulkhead_spurious_entry:",
    "iretq",
    handler = sym kick_handler,
);
extern "C" {
    fn bulkhead_kick_entry();
    fn bulkhead_spurious_entry();
}

/// A kick IPI (crate::lapic::KICK_VECTOR) or the idle timer (IDLE_TIMER_VECTOR): it only
/// wakes the CPU; end it.
extern "C" fn kick_handler() {
    // A kick arrives only once the APIC is set up (it is what sent it).
    let _ = crate::lapic::eoi();
}

// An 8259A interrupt taken in the host (an idle CPU's STI; MWAIT or STI; HLT, idle.rs): a
// stub per vector puts its IRQ number in EAX, the common part saves what the C ABI lets a call
// clobber (with RAX, 9 words after the CPU's 5: the call stays 16-aligned, SDM Vol. 3A
// §6.14.2), calls `pic_handler` and returns to the interrupted code.
macro_rules! pic_stubs {
    ($($name:ident = $irq:literal),* $(,)?) => {
        global_asm!(
            $(concat!(".global ", stringify!($name), "\n", stringify!($name), ":\n",
                      "push rax\n", "mov eax, ", stringify!($irq), "\n",
                      "jmp bulkhead_pic_common\n"),)*
            "bulkhead_pic_common:",
            "push rcx", "push rdx", "push rsi", "push rdi",
            "push r8", "push r9", "push r10", "push r11",
            "mov edi, eax",
            "cld",
            "call {handler}",
            "pop r11", "pop r10", "pop r9", "pop r8",
            "pop rdi", "pop rsi", "pop rdx", "pop rcx",
            "pop rax",
            "iretq",
            handler = sym pic_handler,
        );
        extern "C" { $(fn $name();)* }
        /// The entry stubs of IRQ 0-15, in order.
        const PIC_STUBS: [unsafe extern "C" fn(); 16] = [$($name),*];
    };
}

pic_stubs! {
    pic_0 = 0, pic_1 = 1, pic_2 = 2, pic_3 = 3, pic_4 = 4, pic_5 = 5, pic_6 = 6, pic_7 = 7,
    pic_8 = 8, pic_9 = 9, pic_10 = 10, pic_11 = 11, pic_12 = 12, pic_13 = 13, pic_14 = 14,
    pic_15 = 15,
}

/// A host 8259A interrupt in root mode: what an external-interrupt exit would do for it
/// (host_irq::taken), then the interrupted idle wait resumes and sees what changed.
extern "C" fn pic_handler(irq: u32) {
    // An idle CPU has no exit statistics to count the outcome in.
    let _ = crate::host_irq::taken(crate::host_irq::PIC_VECTOR_BASE + irq as u8);
}

/// This CPU's TSS selector and base, for the VMCS host-state area.
pub fn tss() -> (u16, u64) {
    crate::percpu::tss()
}
