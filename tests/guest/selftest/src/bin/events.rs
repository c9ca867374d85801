//! `events`: events whose delivery causes a VM exit must still be delivered (SDM Vol. 3C
//! §28.2.4). The guest gives a scratch page back with the MEM_RELEASE hypercall (ABI v1.1),
//! so the hypervisor unmaps it from the EPT, then moves its stack onto that page and takes an
//! event: the CPU's pushes of the interrupt frame hit the unmapped page, the VM exits with the
//! event in the IDT-vectoring information, the hypervisor maps the page back (zero-filled)
//! and must deliver the event again. Each case releases the page first:
//! - `timer-irq-redelivered`: five PIT interrupts, injected by the hypervisor while the guest
//!   sleeps in HLT on the released stack (nothing regenerates an interrupt: a lost one would
//!   leave IRQ0 in service at the virtual PIC and the guest asleep for ever);
//! - `ud-redelivered`: UD2 (a CPU-raised fault);
//! - `int-n-redelivered`: INT 0x81 (a software interrupt, re-injected with its length);
//! - `injected-gp-redelivered`: WRMSR to a missing MSR (a #GP the hypervisor injects);
//! - `released-page-reads-zero`, `mem-release-errors`: the hypercall's contract.
//!
//! The hypervisor's statistics then show exactly eight re-delivered events
//! (`events-reinjected=8`) and nine released pages faulted back in (the first by a read).

#![no_std]
#![no_main]

use core::sync::atomic::{AtomicU64, Ordering};
use guest_rt::cpu::outb;
use guest_rt::hv;
use guest_rt::report::{self, fail, pass};

guest_rt::entry!(main);

const VECTOR_BASE: u8 = 0x20;
const SOFT_VECTOR: u8 = 0x81;
const UD_VECTOR: u8 = 6;
const GP_VECTOR: u8 = 13;
const PIT_HZ: u64 = 1_193_182;
const RATE_HZ: u64 = 1000;
const TIMER_ROUNDS: u64 = 5;
/// An MSR no CPU has: WRMSR raises #GP (the hypervisor injects it).
const MISSING_MSR: u32 = 0x4000_1234;
const PAGE: usize = 4096;

/// The scratch page given back and used as the stack.
#[repr(C, align(4096))]
struct Page([u8; PAGE]);
static mut SCRATCH: Page = Page([0; PAGE]);

static TICKS: AtomicU64 = AtomicU64::new(0);
static SOFT: AtomicU64 = AtomicU64::new(0);
static UD: AtomicU64 = AtomicU64::new(0);
static GP: AtomicU64 = AtomicU64::new(0);

#[no_mangle]
extern "C" fn events_tick() {
    TICKS.fetch_add(1, Ordering::Relaxed);
    guest_rt::pic::eoi();
}

guest_rt::irq_stub!(events_irq_stub, events_tick);

core::arch::global_asm!(
    // INT 0x81: count and return after the INT.
    ".global events_soft_stub",
    "events_soft_stub:",
    "lock inc qword ptr [rip + {soft}]",
    "iretq",
    // #UD from UD2 (2 bytes, no error code): count, skip it.
    ".global events_ud_stub",
    "events_ud_stub:",
    "lock inc qword ptr [rip + {ud}]",
    "add qword ptr [rsp], 2",
    "iretq",
    // #GP from WRMSR (2 bytes) with its error code: count, skip, drop the code.
    ".global events_gp_stub",
    "events_gp_stub:",
    "lock inc qword ptr [rip + {gp}]",
    "add qword ptr [rsp + 8], 2",
    "add rsp, 8",
    "iretq",
    soft = sym SOFT,
    ud = sym UD,
    gp = sym GP,
);

extern "C" {
    fn events_soft_stub();
    fn events_ud_stub();
    fn events_gp_stub();
}

fn scratch() -> u64 {
    core::ptr::addr_of!(SCRATCH) as u64
}

/// Gives the scratch page back; `false` (and a FAIL line) if the hypercall refused.
fn release(check: &str) -> bool {
    match hv::call0(hv::MEM_RELEASE, [scratch(), 1, 0, 0]) {
        Ok(1) => true,
        other => {
            fail(check, format_args!("MEM_RELEASE returned {other:?}"));
            false
        }
    }
}

/// Runs `body` (an asm template fragment) with RSP at the top of the scratch page.
macro_rules! on_scratch_stack {
    ($($body:literal),* $(; $($operands:tt)*)?) => {
        // SAFETY: the scratch page is ours and unused while the body runs; RSP is restored
        // from R12 (callee-saved, declared clobbered) afterwards.
        unsafe {
            core::arch::asm!(
                "mov r12, rsp",
                "mov rsp, {top}",
                $($body,)*
                "mov rsp, r12",
                top = in(reg) scratch() + PAGE as u64,
                out("r12") _,
                $($($operands)*)?
            )
        }
    };
}

fn main(_ram_size: u64, _vm_index: u64) -> ! {
    guest_rt::trap::init();
    report::start("events");
    // SAFETY: each stub preserves the registers it touches and ends with IRETQ.
    unsafe {
        guest_rt::trap::set_interrupt_gate(VECTOR_BASE, events_irq_stub as *const () as u64);
        guest_rt::trap::set_interrupt_gate(SOFT_VECTOR, events_soft_stub as *const () as u64);
        guest_rt::trap::set_exception_gate(UD_VECTOR, events_ud_stub as *const () as u64);
        guest_rt::trap::set_exception_gate(GP_VECTOR, events_gp_stub as *const () as u64);
    }

    // The contract first: a released page reads as zero.
    // SAFETY: the scratch page is ours; volatile so the accesses really happen.
    unsafe { core::ptr::write_volatile(scratch() as *mut u64, 0x5a5a_5a5a_5a5a_5a5a) };
    if release("released-page-reads-zero") {
        // SAFETY: as above; this read is the first touch after the release.
        let v = unsafe { core::ptr::read_volatile(scratch() as *const u64) };
        if v == 0 {
            pass("released-page-reads-zero");
        } else {
            fail("released-page-reads-zero", format_args!("read {v:#x}"));
        }
    }
    let errors = [
        hv::call0(hv::MEM_RELEASE, [scratch() + 8, 1, 0, 0]),
        hv::call0(hv::MEM_RELEASE, [scratch(), 0, 0, 0]),
        hv::call0(hv::MEM_RELEASE, [0x4000_0000_0000, 1, 0, 0]),
    ];
    let want = [
        Ok(-hv::BAD_ARGUMENT),
        Ok(-hv::BAD_LENGTH),
        Ok(-hv::BAD_ADDRESS),
    ];
    if errors == want {
        pass("mem-release-errors");
    } else {
        fail("mem-release-errors", format_args!("{errors:?}"));
    }

    guest_rt::pic::init(VECTOR_BASE, 0xFE);
    let divisor = (PIT_HZ / RATE_HZ) as u16;
    guest_rt::pic::pit_periodic(divisor);

    let mut ok = true;
    for round in 0..TIMER_ROUNDS {
        if !release("timer-irq-redelivered") {
            ok = false;
            break;
        }
        let before = TICKS.load(Ordering::Relaxed);
        on_scratch_stack!("sti", "hlt", "cli");
        let after = TICKS.load(Ordering::Relaxed);
        // A lost interrupt leaves IRQ0 in service and this vCPU asleep for ever; a tick that
        // became due meanwhile may follow the first one: at least one.
        if after == before {
            fail(
                "timer-irq-redelivered",
                format_args!("round {round}: HLT ended without the timer interrupt"),
            );
            ok = false;
            break;
        }
    }
    outb(0x21, 0xFF);
    if ok {
        pass("timer-irq-redelivered");
    }

    if release("ud-redelivered") {
        on_scratch_stack!("ud2");
        let n = UD.load(Ordering::Relaxed);
        if n == 1 {
            pass("ud-redelivered");
        } else {
            fail("ud-redelivered", format_args!("#UD handler ran {n} times"));
        }
    }
    if release("int-n-redelivered") {
        on_scratch_stack!("int 0x81");
        let n = SOFT.load(Ordering::Relaxed);
        if n == 1 {
            pass("int-n-redelivered");
        } else {
            fail(
                "int-n-redelivered",
                format_args!("INT 0x81 handler ran {n} times"),
            );
        }
    }
    if release("injected-gp-redelivered") {
        on_scratch_stack!("wrmsr"; in("ecx") MISSING_MSR, in("eax") 0, in("edx") 0);
        let n = GP.load(Ordering::Relaxed);
        if n == 1 {
            pass("injected-gp-redelivered");
        } else {
            fail(
                "injected-gp-redelivered",
                format_args!("#GP handler ran {n} times"),
            );
        }
    }
    report::done()
}
