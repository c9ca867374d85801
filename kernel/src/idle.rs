//! PV idle (issue 12): a CPU whose vCPUs are all halted sleeps until its next deadline or an
//! interrupt instead of spinning, in the deepest state CPUID leaf 05H allows (MONITOR/MWAIT
//! on the word a kick writes, else HLT), woken by the local APIC's TSC-deadline timer, kicks
//! (IPIs) and any other interrupt. The policy and the accounting are `vm::idle`
//! (host-tested); this module executes them and keeps each CPU's [`IdleStats`].

use crate::{arch, lapic, smp};
use spin::{Mutex, Once};
use vm::idle::{self, IdleStats, IdleStep, MwaitLeaf, Policy, SleepState, Wake};

/// Every CPU's idle accounting (only its own CPU writes its entry).
static STATS: [Mutex<IdleStats>; smp::MAX_CPUS] =
    [const { Mutex::new(IdleStats::new_const()) }; smp::MAX_CPUS];

/// What the boot CPU found (every CPU is the same model).
static POLICY: Once<(MwaitLeaf, Policy)> = Once::new();

/// Reads CPUID (leaf 01H ECX, leaf 05H when the maximum basic leaf reaches it) and the timer
/// mode once, and prints what idle will use: `idle: MONITOR/MWAIT yes (lines 64-64 bytes,
/// extensions yes, interrupt break yes, C-substates EDX=0x...), deepest MWAIT 0x.., timer
/// TSC-deadline`.
pub fn init(tsc_hz: u64) {
    let (leaf, policy) = POLICY.call_once(|| {
        let max = arch::cpuid(0, 0)[0];
        let leaf1_ecx = arch::cpuid(1, 0)[2];
        let leaf5 = (max >= 5).then(|| arch::cpuid(5, 0));
        let leaf = MwaitLeaf::from_cpuid(leaf1_ecx, leaf5);
        (leaf, Policy::new(&leaf, lapic::has_tsc_deadline(), tsc_hz))
    });
    let yes = |b: bool| if b { "yes" } else { "no" };
    let deepest = policy.deepest.map_or(SleepState::Hlt, SleepState::Mwait);
    log::info!(
        "idle: MONITOR/MWAIT {} (lines {}-{} bytes, extensions {}, interrupt break {}, C-substates EDX={:#x}); sleeps in {deepest}; wake-up timer {}",
        yes(leaf.monitor),
        leaf.line_min,
        leaf.line_max,
        yes(leaf.extensions),
        yes(leaf.interrupt_break),
        leaf.substates,
        if policy.timer { "TSC-deadline" } else { "none (idle CPUs poll)" }
    );
}

/// Waits on this CPU until `until` (TSC) or a wake-up: a kick, an interrupt, or (when
/// `host_poll`) a poll that saw a kick. Returns early at most after one poll or one sleep, so
/// the caller's wake-up checks and console pumping run between; the caller bounds `until`.
pub fn wait(until: u64, host_poll: bool) {
    let Some((_, policy)) = POLICY.get() else {
        return spin(until);
    };
    let me = crate::percpu::current().index();
    let now = arch::rdtsc();
    if now >= until {
        return;
    }
    match idle::choose(policy, until - now, host_poll) {
        IdleStep::Spin => spin(until),
        IdleStep::Poll(ticks) => {
            let end = now.saturating_add(ticks);
            let mut hit = false;
            while arch::rdtsc() < end {
                if smp::kick_pending() {
                    hit = true;
                    break;
                }
                core::hint::spin_loop();
            }
            if let Some(s) = STATS.get(me) {
                s.lock().record_poll(arch::rdtsc() - now, hit);
            }
            if !hit {
                // Nothing came while polling: sleep for the rest without polling again.
                sleep(policy, until);
            }
        }
        IdleStep::Sleep(_) => sleep(policy, until),
    }
}

/// Spins until `until` (a wait too short to sleep, or no wake-up timer), counted.
fn spin(until: u64) {
    let start = arch::rdtsc();
    while arch::rdtsc() < until && !smp::kick_pending() {
        core::hint::spin_loop();
    }
    if let Some(s) = STATS.get(crate::percpu::current().index()) {
        s.lock().record_spin(arch::rdtsc() - start);
    }
}

/// One sleep until `until` or an interrupt, in the state the policy picks for its length.
fn sleep(policy: &Policy, until: u64) {
    let start = arch::rdtsc();
    if start >= until {
        return;
    }
    let state = match idle::choose(policy, until - start, false) {
        IdleStep::Sleep(state) => state,
        IdleStep::Spin | IdleStep::Poll(_) => return spin(until),
    };
    // SAFETY: the policy has a timer only when the CPU has TSC-deadline mode; the IDT handles
    // IDLE_TIMER_VECTOR (interrupts.rs).
    unsafe { lapic::arm_deadline(until) };
    match (state, smp::kick_word()) {
        (SleepState::Mwait(hint), Some(word)) => {
            // SAFETY: MWAIT hints come from CPUID leaf 05H only when CPUID.01H:ECX.MONITOR is
            // set; the word is a static, mapped. A kick that came before MONITOR is seen by
            // the check after it (SDM Vol. 2B MONITOR: check the condition after arming).
            unsafe {
                arch::monitor(word.as_ptr() as *const u8);
                if !smp::kick_pending() {
                    arch::mwait(hint);
                }
            }
        }
        _ => {
            if !smp::kick_pending() {
                arch::wait_for_interrupt();
            }
        }
    }
    // SAFETY: as for arming.
    unsafe { lapic::disarm_deadline() };
    // A kick that woke us through the monitored line has its IPI on the way: take it here.
    arch::interrupt_window();
    let end = arch::rdtsc();
    let wake = if smp::kick_pending() {
        Wake::Kick
    } else if end >= until {
        Wake::Timer
    } else {
        Wake::Other
    };
    if let Some(s) = STATS.get(crate::percpu::current().index()) {
        s.lock().record_sleep(state, end - start, wake);
    }
}

/// This CPU's accounting so far (the host report prints it per CPU at the end of the run).
pub fn stats(cpu: usize) -> IdleStats {
    STATS
        .get(cpu)
        .map_or_else(IdleStats::default, |s| *s.lock())
}
