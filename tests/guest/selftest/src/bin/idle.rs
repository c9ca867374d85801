//! `idle`: a guest that is idle most of the time (PV idle, issue 12). vCPU 0 arms its local
//! APIC timer in TSC-deadline mode 40 times, `PERIOD` ticks ahead each, and waits for each
//! interrupt: the first 20 times with the Bulkhead IDLE hypercall, the other 20 with STI;
//! HLT. It checks that exactly 40 timer interrupts arrived, none early. Lines:
//!
//! ```text
//! guest idle: PASS idle-hypercall-timer
//! guest idle: PASS idle-hlt-timer
//! ```

#![no_std]
#![no_main]
#![allow(clippy::result_large_err)]

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use guest_rt::apic::{self, reg};
use guest_rt::report::{check, Detail};
use guest_rt::{cpu, detail, hv};

guest_rt::entry!(main);

const TIMER_VECTOR: u8 = 0x41;
/// 2 ms of Bochs's 50 MHz TSC.
const PERIOD: u64 = 100_000;
const ROUNDS: u32 = 20;

static FIRES: AtomicU32 = AtomicU32::new(0);
static LAST: AtomicU64 = AtomicU64::new(0);

#[no_mangle]
extern "C" fn on_timer() {
    LAST.store(cpu::rdtsc(), Ordering::Relaxed);
    FIRES.fetch_add(1, Ordering::Relaxed);
    apic::write(reg::EOI, 0);
}
guest_rt::irq_stub!(timer_stub, on_timer);

type Check = Result<(), Detail>;

fn main(_ram_size: u64, _vm_index: u64) -> ! {
    guest_rt::trap::init();
    guest_rt::report::set_name("idle");
    // SAFETY: the stub saves every caller-saved register and ends with IRETQ.
    unsafe { guest_rt::trap::set_interrupt_gate(TIMER_VECTOR, timer_stub as *const () as u64) };
    apic::write(reg::SVR, apic::SVR_ENABLE | apic::SPURIOUS_VECTOR);
    apic::write(
        reg::LVT_TIMER,
        apic::TIMER_TSC_DEADLINE | u32::from(TIMER_VECTOR),
    );
    check("idle-hypercall-timer", rounds(true));
    check("idle-hlt-timer", rounds(false));
    guest_rt::report::done()
}

/// `ROUNDS` timer periods, each waited for with the IDLE hypercall (`idle_call`) or HLT.
fn rounds(idle_call: bool) -> Check {
    let before = FIRES.load(Ordering::Relaxed);
    for i in 0..ROUNDS {
        let deadline = cpu::rdtsc() + PERIOD;
        // SAFETY: arming this vCPU's virtual timer has no other effect.
        unsafe { cpu::wrmsr(apic::IA32_TSC_DEADLINE, deadline) }
            .map_err(|f| detail!("WRMSR IA32_TSC_DEADLINE raised {f}"))?;
        while FIRES.load(Ordering::Relaxed) == before + i {
            if idle_call {
                // IDLE(1) (docs/hypercall-abi.md §4): the vCPU sleeps until an interrupt is
                // pending in its APIC (made with IF = 0, so a timer that fires just before the
                // call cannot be taken first and leave it sleeping); the STI below takes it.
                let r =
                    hv::call0(hv::IDLE, [1, 0, 0, 0]).map_err(|f| detail!("IDLE raised {f}"))?;
                if r != 0 {
                    return Err(detail!("IDLE returned {r}"));
                }
                // SAFETY: the timer's handler is installed.
                unsafe { core::arch::asm!("sti", "nop", "cli", options(nomem, nostack)) };
            } else {
                // SAFETY: as above; HLT returns at the interrupt.
                unsafe { core::arch::asm!("sti", "hlt", "cli", options(nomem, nostack)) };
            }
        }
        let at = LAST.load(Ordering::Relaxed);
        if at < deadline {
            return Err(detail!(
                "round {i}: the timer fired at {at}, before {deadline}"
            ));
        }
    }
    let fired = FIRES.load(Ordering::Relaxed) - before;
    if fired != ROUNDS {
        return Err(detail!("{fired} timer interrupts, expected {ROUNDS}"));
    }
    Ok(())
}
