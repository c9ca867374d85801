//! `kvm-hc`: KVM's hypercalls in a VM with `kvm-pv = true` (issue 12), checked from inside.
//! Two vCPUs in xAPIC mode; vCPU 0 makes the calls and prints one `PASS`/`FAIL` line each,
//! vCPU 1 takes IPIs, halts with interrupts disabled until kicked, then spins (the yield
//! target). Calls (KVM convention: RAX number, RBX/RCX/RDX/RSI, result in RAX):
//!
//! - unknown numbers (0, 1, 2, 12, 999, 2^32 + 5) and Bulkhead's untagged VERSION: -1000
//!   (-KVM_ENOSYS); the tagged VERSION still answers Bulkhead's ABI version;
//! - `KVM_HC_SEND_IPI` to itself, to vCPU 1, to both (returns 1, 1, 2, and exactly one
//!   interrupt per target and vector), to APIC IDs no vCPU has (2-3, 1000, 64: 0; 1 and 5: 1)
//!   and with an ICR the call does not carry (shorthand, logical mode, start-up: -22);
//! - `KVM_HC_KICK_CPU` to APIC IDs 7 and 0xFFFFFFFF (0, nothing woken), to vCPU 1 halted with
//!   IF = 0 (0, it wakes; it did not wake before);
//! - `KVM_HC_SCHED_YIELD` to vCPU 1 (spinning), to APIC ID 9, to itself: 0. Prints
//!   `yield: spins-during-yield=N` (the harness knows whether vCPU 1 shares vCPU 0's CPU).

#![no_std]
#![no_main]
#![allow(clippy::result_large_err)]

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use guest_rt::apic::{self, reg};
use guest_rt::hv;
use guest_rt::report::{check, Detail};
use guest_rt::smp::{self, VcpuBoot};
use guest_rt::{detail, say};

guest_rt::smp_entry!(main);

type Check = Result<(), Detail>;

/// KVM hypercall numbers (Linux `include/uapi/linux/kvm_para.h`).
const KVM_HC_KICK_CPU: u64 = 5;
const KVM_HC_SEND_IPI: u64 = 10;
const KVM_HC_SCHED_YIELD: u64 = 11;
const KVM_ENOSYS: i64 = -1000;
const KVM_EINVAL: i64 = -22;

/// Vectors: A (self), B (vCPU 1), C (both), D (no-target cases), E (vCPU 1's phase change,
/// a plain xAPIC IPI).
const BASE: u8 = 0x50;
const A: u8 = BASE;
const B: u8 = BASE + 1;
const C: u8 = BASE + 2;
const D: u8 = BASE + 3;
const E: u8 = BASE + 4;
const VECTORS: usize = 5;
/// Long enough for any exit round trip in Bochs (ticks = instructions there).
const WAIT: u64 = 200_000_000;

/// Interrupts taken, by APIC ID (vCPU) and vector - BASE.
static HITS: [[AtomicU32; VECTORS]; 2] = [const { [const { AtomicU32::new(0) }; VECTORS] }; 2];
static READY1: AtomicBool = AtomicBool::new(false);
static PHASE: AtomicU32 = AtomicU32::new(0);
static ARMED: AtomicBool = AtomicBool::new(false);
static WOKEN: AtomicU32 = AtomicU32::new(0);
static SPINS: AtomicU64 = AtomicU64::new(0);

fn hit(vector: u8) {
    let id = (apic::read(reg::ID) >> 24) as usize;
    if let Some(row) = HITS.get(id) {
        row[usize::from(vector - BASE)].fetch_add(1, Ordering::Relaxed);
    }
    apic::write(reg::EOI, 0);
}

fn hits(vcpu: usize, vector: u8) -> u32 {
    HITS[vcpu][usize::from(vector - BASE)].load(Ordering::Relaxed)
}

#[no_mangle]
extern "C" fn on_a() {
    hit(A);
}
#[no_mangle]
extern "C" fn on_b() {
    hit(B);
}
#[no_mangle]
extern "C" fn on_c() {
    hit(C);
}
#[no_mangle]
extern "C" fn on_d() {
    hit(D);
}
#[no_mangle]
extern "C" fn on_e() {
    hit(E);
}
guest_rt::irq_stub!(a_stub, on_a);
guest_rt::irq_stub!(b_stub, on_b);
guest_rt::irq_stub!(c_stub, on_c);
guest_rt::irq_stub!(d_stub, on_d);
guest_rt::irq_stub!(e_stub, on_e);

/// A KVM hypercall (or an untagged Bulkhead number, which a KVM PV VM reads as KVM's).
fn kvm(nr: u64, args: [u64; 4]) -> i64 {
    match hv::call0(nr, args) {
        Ok(v) => v,
        Err(f) => {
            say!("VMCALL {nr} raised {f}");
            i64::MIN
        }
    }
}

/// Lets pending interrupts in: STI; NOP; CLI.
fn window() {
    // SAFETY: every vector that can arrive has a handler installed.
    unsafe { core::arch::asm!("sti", "nop", "nop", "cli", options(nomem, nostack)) };
}

fn main(boot: VcpuBoot) -> ! {
    if boot.vcpu != 0 {
        vcpu1();
    }
    guest_rt::trap::init();
    guest_rt::report::set_name("kvm-hc");
    // SAFETY: the stubs save every caller-saved register and end with IRETQ.
    unsafe {
        for (v, stub) in [
            (A, a_stub as *const () as u64),
            (B, b_stub as *const () as u64),
            (C, c_stub as *const () as u64),
            (D, d_stub as *const () as u64),
            (E, e_stub as *const () as u64),
        ] {
            guest_rt::trap::set_interrupt_gate(v, stub);
        }
    }
    apic::write(reg::SVR, apic::SVR_ENABLE | apic::SPURIOUS_VECTOR);
    smp::release_others();
    if !smp::wait_until(WAIT, || READY1.load(Ordering::Acquire)) {
        say!("vCPU 1 never came up");
        guest_rt::report::done();
    }
    check("kvm-unknown-enosys", unknown());
    check("kvm-bulkhead-tagged", tagged());
    check("kvm-send-ipi-self", send_ipi_self());
    check("kvm-send-ipi-remote", send_ipi_remote());
    check("kvm-send-ipi-both", send_ipi_both());
    check("kvm-send-ipi-no-target", send_ipi_no_target());
    check("kvm-send-ipi-bad-icr", send_ipi_bad_icr());
    check("kvm-kick-no-target", kick_no_target());
    check("kvm-kick-halted", kick_halted());
    check("kvm-sched-yield", sched_yield());
    check("kvm-no-stray-interrupts", no_stray());
    PHASE.store(3, Ordering::Release);
    guest_rt::report::done()
}

/// vCPU 1: takes IPIs with interrupts on until vCPU 0 moves it on (vector E), halts with
/// interrupts off until kicked, spins for the yield check, then halts for good.
fn vcpu1() -> ! {
    smp::wait_for_start();
    apic::write(reg::SVR, apic::SVR_ENABLE | apic::SPURIOUS_VECTOR);
    READY1.store(true, Ordering::Release);
    while PHASE.load(Ordering::Acquire) == 0 {
        // SAFETY: every vector vCPU 0 sends has a handler in the shared IDT.
        unsafe { core::arch::asm!("sti", "hlt", "cli", options(nomem, nostack)) };
    }
    ARMED.store(true, Ordering::Release);
    // SAFETY: a HLT with interrupts disabled: in a KVM PV VM only KVM_HC_KICK_CPU ends it.
    unsafe { core::arch::asm!("cli", "hlt", options(nomem, nostack)) };
    WOKEN.fetch_add(1, Ordering::Release);
    while PHASE.load(Ordering::Acquire) < 3 {
        SPINS.fetch_add(1, Ordering::Relaxed);
    }
    guest_rt::halt()
}

fn unknown() -> Check {
    for nr in [0, 1, 2, 12, 999, (1 << 32) | KVM_HC_KICK_CPU] {
        let r = kvm(nr, [0; 4]);
        if r != KVM_ENOSYS {
            return Err(detail!("KVM call {nr:#x} returned {r}, expected -1000"));
        }
    }
    Ok(())
}

fn tagged() -> Check {
    let r = kvm(hypercall::route::tagged(hv::VERSION), [0; 4]);
    if r != hv::ABI_VERSION as i64 {
        return Err(detail!("tagged VERSION returned {r:#x}"));
    }
    let r = kvm(hv::VERSION, [0; 4]);
    if r != KVM_ENOSYS {
        return Err(detail!(
            "untagged VERSION (KVM's 0) returned {r}, expected -1000"
        ));
    }
    Ok(())
}

fn send_ipi_self() -> Check {
    let r = kvm(KVM_HC_SEND_IPI, [1, 0, 0, u64::from(A)]);
    window();
    let (me, other) = (hits(0, A), hits(1, A));
    if r != 1 || me != 1 || other != 0 {
        return Err(detail!(
            "returned {r}, vCPU 0 took {me}, vCPU 1 took {other}"
        ));
    }
    Ok(())
}

fn send_ipi_remote() -> Check {
    let r = kvm(KVM_HC_SEND_IPI, [0b10, 0, 0, u64::from(B)]);
    let arrived = smp::wait_until(WAIT, || hits(1, B) == 1);
    window();
    let (me, other) = (hits(0, B), hits(1, B));
    if r != 1 || !arrived || me != 0 || other != 1 {
        return Err(detail!(
            "returned {r}, vCPU 0 took {me}, vCPU 1 took {other}"
        ));
    }
    Ok(())
}

fn send_ipi_both() -> Check {
    let r = kvm(KVM_HC_SEND_IPI, [0b11, 0, 0, u64::from(C)]);
    window();
    let arrived = smp::wait_until(WAIT, || hits(1, C) == 1);
    let (me, other) = (hits(0, C), hits(1, C));
    if r != 2 || !arrived || me != 1 || other != 1 {
        return Err(detail!(
            "returned {r}, vCPU 0 took {me}, vCPU 1 took {other}"
        ));
    }
    Ok(())
}

fn send_ipi_no_target() -> Check {
    let d = u64::from(D);
    // (bitmap low, bitmap high, min, expected count).
    for (lo, hi, min, want) in [
        (0b1100, 0, 0, 0),
        (1, 0, 1000, 0),
        (0, 1, 0, 0),
        ((1 << 1) | (1 << 5), 0, 0, 1),
    ] {
        let r = kvm(KVM_HC_SEND_IPI, [lo, hi, min, d]);
        if r != want {
            return Err(detail!(
                "bitmap {hi:#x}:{lo:#x} min {min} returned {r}, expected {want}"
            ));
        }
    }
    let arrived = smp::wait_until(WAIT, || hits(1, D) == 1);
    window();
    let (me, other) = (hits(0, D), hits(1, D));
    if !arrived || me != 0 || other != 1 {
        return Err(detail!(
            "vCPU 0 took {me}, vCPU 1 took {other}, expected 0 and 1"
        ));
    }
    Ok(())
}

fn send_ipi_bad_icr() -> Check {
    let a = u64::from(A);
    for icr in [a | (0b11 << 18), a | (1 << 11), a | (0b110 << 8)] {
        let r = kvm(KVM_HC_SEND_IPI, [1, 0, 0, icr]);
        if r != KVM_EINVAL {
            return Err(detail!("ICR {icr:#x} returned {r}, expected -22"));
        }
    }
    window();
    if hits(0, A) != 1 {
        return Err(detail!("vCPU 0 took vector A {} times", hits(0, A)));
    }
    Ok(())
}

fn kick_no_target() -> Check {
    for id in [7u64, 0xFFFF_FFFF] {
        let r = kvm(KVM_HC_KICK_CPU, [0, id, 0, 0]);
        if r != 0 {
            return Err(detail!("KICK_CPU({id:#x}) returned {r}"));
        }
    }
    if WOKEN.load(Ordering::Acquire) != 0 {
        return Err(detail!("vCPU 1 woke"));
    }
    Ok(())
}

fn kick_halted() -> Check {
    PHASE.store(1, Ordering::Release);
    // A plain fixed IPI through the xAPIC ICR (SDM Vol. 3A §11.6.1) takes vCPU 1 out of its
    // interrupts-on halt to see the new phase.
    apic::write(reg::ICR_HIGH, 1 << 24);
    apic::write(reg::ICR_LOW, u32::from(E));
    if !smp::wait_until(WAIT, || ARMED.load(Ordering::Acquire)) {
        return Err(detail!("vCPU 1 never reached its interrupts-off halt"));
    }
    // Long enough for its HLT to exit and for interrupts (none come) to show up.
    smp::wait_until(2_000_000, || false);
    if WOKEN.load(Ordering::Acquire) != 0 {
        return Err(detail!("vCPU 1's HLT with IF = 0 returned without a kick"));
    }
    let r = kvm(KVM_HC_KICK_CPU, [0, 1, 0, 0]);
    let woke = smp::wait_until(WAIT, || WOKEN.load(Ordering::Acquire) == 1);
    if r != 0 || !woke {
        return Err(detail!("KICK_CPU(1) returned {r}, vCPU 1 woke: {woke}"));
    }
    Ok(())
}

fn sched_yield() -> Check {
    if !smp::wait_until(WAIT, || SPINS.load(Ordering::Relaxed) > 0) {
        return Err(detail!("vCPU 1 never spun"));
    }
    let before = SPINS.load(Ordering::Relaxed);
    let r = kvm(KVM_HC_SCHED_YIELD, [1, 0, 0, 0]);
    let during = SPINS.load(Ordering::Relaxed) - before;
    let r9 = kvm(KVM_HC_SCHED_YIELD, [9, 0, 0, 0]);
    let r0 = kvm(KVM_HC_SCHED_YIELD, [0, 0, 0, 0]);
    say!("yield: spins-during-yield={during}");
    if (r, r9, r0) != (0, 0, 0) {
        return Err(detail!("SCHED_YIELD returned {r}, {r9}, {r0}"));
    }
    Ok(())
}

/// Exactly one interrupt per target and vector, none on vectors not sent to a vCPU.
fn no_stray() -> Check {
    window();
    let want = [[1, 0, 1, 0, 0], [0, 1, 1, 1, 1]];
    for (vcpu, row) in want.iter().enumerate() {
        for (i, &n) in row.iter().enumerate() {
            let got = hits(vcpu, BASE + i as u8);
            if got != n {
                return Err(detail!(
                    "vCPU {vcpu} took vector {:#x} {got} times, expected {n}",
                    BASE + i as u8
                ));
            }
        }
    }
    Ok(())
}
