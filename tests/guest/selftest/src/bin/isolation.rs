//! `isolation`: architectural state the VMCS does not switch stays each VM's own. Two VMs run
//! this guest; each sets CR8 (the TPR), DR0-DR3, DR6 and DR7 to values derived from its VM
//! index, then yields to the other VM (IDLE hypercall) and exits (CPUID) hundreds of times,
//! checking after every switch that it still reads its own values (`state-survives-switches`).
//! Then it arms a hardware execution breakpoint, takes 100 more exits and switches, and calls
//! the breakpointed function: the #DB must arrive (`breakpoint-survives-exits`, the guest's
//! DR7 survives VM exits). Instructions that would read host state or pick the physical CPU's
//! sleep state fault as on a CPU without them: RDPMC #GP (no counters offered), MONITOR and
//! MWAIT #UD (CPUID.1:ECX.MONITOR = 0); MOV to CR8 with reserved bits #GP.

#![no_std]
#![no_main]

use core::sync::atomic::{AtomicU64, Ordering};
use guest_rt::report::{self, fail, pass};
use guest_rt::trap::{self, GP, UD};
use guest_rt::{cpu, hv};

guest_rt::entry!(main);

const SWITCHES: u64 = 300;
/// DR7: L0-L3 are bits 0, 2, 4, 6; RWn/LENn at 16 + 4n (SDM Vol. 3B §18.2.4); bit 10 reads 1.
const DR7_FIXED: u64 = 0x400;
/// DR6: B0-B3 and BD/BS/BT are writable; everything else reads 1 (SDM Vol. 3B §18.2.3).
const DR6_FIXED: u64 = 0xffff_0ff0;

static DB_HITS: AtomicU64 = AtomicU64::new(0);
static DB_DR6: AtomicU64 = AtomicU64::new(0);

#[no_mangle]
extern "C" fn isolation_db(dr6: u64) {
    DB_HITS.fetch_add(1, Ordering::Relaxed);
    DB_DR6.store(dr6, Ordering::Relaxed);
}

core::arch::global_asm!(
    ".global isolation_db_stub",
    "isolation_db_stub:",
    "push rax", "push rcx", "push rdx", "push rsi", "push rdi",
    "push r8", "push r9", "push r10", "push r11",
    "mov rdi, dr6",
    "cld",
    "call {db}",
    // Clear DR6's status bits, then resume with RF set so the instruction runs once
    // (SDM Vol. 3B §18.3.1.1). The frame: 9 saved registers, then RIP, CS, RFLAGS.
    "mov rax, {dr6_fixed}",
    "mov dr6, rax",
    "or qword ptr [rsp + 9*8 + 16], 0x10000",
    "pop r11", "pop r10", "pop r9", "pop r8",
    "pop rdi", "pop rsi", "pop rdx", "pop rcx", "pop rax",
    "iretq",
    db = sym isolation_db,
    dr6_fixed = const DR6_FIXED,
);

extern "C" {
    fn isolation_db_stub();
}

#[inline(never)]
#[no_mangle]
extern "C" fn isolation_target() -> u64 {
    core::hint::black_box(42)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct State {
    cr8: u64,
    dr: [u64; 4],
    dr6: u64,
    dr7: u64,
}

fn read_state() -> State {
    let mut s = State {
        cr8: 0,
        dr: [0; 4],
        dr6: 0,
        dr7: 0,
    };
    // SAFETY: reading CR8 and the debug registers at CPL 0 has no side effects.
    unsafe {
        core::arch::asm!("mov {}, cr8", out(reg) s.cr8, options(nomem, nostack));
        core::arch::asm!("mov {}, dr0", out(reg) s.dr[0], options(nomem, nostack));
        core::arch::asm!("mov {}, dr1", out(reg) s.dr[1], options(nomem, nostack));
        core::arch::asm!("mov {}, dr2", out(reg) s.dr[2], options(nomem, nostack));
        core::arch::asm!("mov {}, dr3", out(reg) s.dr[3], options(nomem, nostack));
        core::arch::asm!("mov {}, dr6", out(reg) s.dr6, options(nomem, nostack));
        core::arch::asm!("mov {}, dr7", out(reg) s.dr7, options(nomem, nostack));
    }
    s
}

/// # Safety
/// The DR7 value must not arm a breakpoint on anything the guest touches unprepared.
unsafe fn write_state(s: &State) {
    // SAFETY: the caller vouches for DR7; the other registers have no effect by themselves.
    unsafe {
        core::arch::asm!("mov cr8, {}", in(reg) s.cr8, options(nomem, nostack));
        core::arch::asm!("mov dr0, {}", in(reg) s.dr[0], options(nomem, nostack));
        core::arch::asm!("mov dr1, {}", in(reg) s.dr[1], options(nomem, nostack));
        core::arch::asm!("mov dr2, {}", in(reg) s.dr[2], options(nomem, nostack));
        core::arch::asm!("mov dr3, {}", in(reg) s.dr[3], options(nomem, nostack));
        core::arch::asm!("mov dr6, {}", in(reg) s.dr6, options(nomem, nostack));
        core::arch::asm!("mov dr7, {}", in(reg) s.dr7, options(nomem, nostack));
    }
}

fn switch_and_exit() {
    let _ = hv::call0(hv::IDLE, [0, 0, 0, 0]); // IDLE(yield): the other VM runs
    let _ = cpu::cpuid(0, 0);
}

fn main(_ram_size: u64, vm_index: u64) -> ! {
    trap::init();
    report::start("isolation");
    let i = vm_index & 3;
    // Addresses far outside guest RAM (never touched), a write breakpoint in slot i.
    let mine = State {
        cr8: 3 + 5 * i,
        dr: core::array::from_fn(|k| 0x7f00_0000_0000 + (i << 32) + ((k as u64) << 12)),
        dr6: DR6_FIXED | if i.is_multiple_of(2) { 0b0101 } else { 0b1010 },
        dr7: DR7_FIXED | (1 << (2 * i)) | (0b01 << (16 + 4 * i)),
    };
    // SAFETY: the write breakpoint is on an address outside guest RAM.
    unsafe { write_state(&mine) };
    let mut bad = None;
    for n in 0..SWITCHES {
        switch_and_exit();
        let now = read_state();
        if now != mine {
            bad = Some((n, now));
            break;
        }
    }
    match bad {
        None => pass("state-survives-switches"),
        Some((n, now)) => fail(
            "state-survives-switches",
            format_args!("after {n} switches: read {now:x?}, set {mine:x?}"),
        ),
    }

    // An execution breakpoint on `isolation_target` (RW0 = LEN0 = 00), armed across exits.
    // SAFETY: the #DB stub handles the breakpoint and resumes with RF set.
    unsafe {
        trap::set_exception_gate(trap::DB, isolation_db_stub as *const () as u64);
        let bp = State {
            dr: [isolation_target as *const () as u64, 0, 0, 0],
            dr6: DR6_FIXED,
            dr7: DR7_FIXED | 1,
            ..mine
        };
        write_state(&bp);
    }
    for _ in 0..100 {
        switch_and_exit();
    }
    let r = isolation_target();
    let (hits, dr6) = (
        DB_HITS.load(Ordering::Relaxed),
        DB_DR6.load(Ordering::Relaxed),
    );
    // SAFETY: disarms every breakpoint.
    unsafe {
        core::arch::asm!("mov dr7, {}", in(reg) DR7_FIXED, options(nomem, nostack));
    }
    if r == 42 && hits == 1 && dr6 & 1 != 0 {
        pass("breakpoint-survives-exits");
    } else {
        fail(
            "breakpoint-survives-exits",
            format_args!("{hits} #DB, DR6 {dr6:#x} at the hit, result {r}"),
        );
    }

    // SAFETY: RDPMC faults (#GP, recovered by the probe) or only reads a counter.
    let rdpmc = unsafe { guest_rt::probe!("rdpmc", in("ecx") 0, out("eax") _, out("edx") _) };
    // SAFETY: MONITOR faults (#UD, recovered) or only arms address monitoring.
    let monitor =
        unsafe { guest_rt::probe!("monitor", in("rax") 0x10_0000u64, in("ecx") 0, in("edx") 0) };
    // SAFETY: MWAIT faults (#UD, recovered) or waits at most until the next event.
    let mwait = unsafe { guest_rt::probe!("mwait", in("eax") 0, in("ecx") 0) };
    // SAFETY: a reserved CR8 value faults (#GP, recovered) and changes nothing.
    let cr8 = unsafe { guest_rt::probe!("mov cr8, {v}", v = in(reg) 0x10u64) };
    let vec = |f: Option<trap::Fault>| f.map(|f| f.vector);
    if vec(rdpmc) == Some(GP) {
        pass("rdpmc-gp");
    } else {
        fail("rdpmc-gp", format_args!("RDPMC gave {rdpmc:?}"));
    }
    if vec(monitor) == Some(UD) && vec(mwait) == Some(UD) {
        pass("monitor-mwait-ud");
    } else {
        fail(
            "monitor-mwait-ud",
            format_args!("MONITOR {monitor:?}, MWAIT {mwait:?}"),
        );
    }
    if vec(cr8) == Some(GP) && read_state().cr8 == mine.cr8 {
        pass("cr8-reserved-gp");
    } else {
        fail(
            "cr8-reserved-gp",
            format_args!("MOV CR8 <- 0x10 gave {cr8:?}"),
        );
    }
    report::done()
}
