//! PV idle: how a physical CPU whose vCPUs are all halted waits for its next deadline, and
//! the per-CPU accounting of that time. Hardware-independent; the kernel (kernel/src/idle.rs)
//! executes MONITOR/MWAIT or HLT and arms the local APIC timer.
//!
//! - [`MwaitLeaf`]: CPUID leaf 05H (SDM Vol. 2A, CPUID, "MONITOR/MWAIT Leaf") and the MWAIT
//!   hint of its deepest C-state (SDM Vol. 2B, MWAIT, Table 4-12 "MWAIT Hints Register");
//! - [`choose`]: what to do for a wait of a given length (spin, poll, C1, the deepest state);
//! - [`IdleStats`]: residency per state and wake-ups, the host report's `idle:` line.

use core::fmt;

/// CPUID.05H:ECX bit 0: the MONITOR/MWAIT extensions are enumerated (ECX of MWAIT valid).
const ECX_EXTENSIONS: u32 = 1 << 0;
/// CPUID.05H:ECX bit 1: MWAIT ECX bit 0 makes an interrupt a break event even with IF = 0.
const ECX_INTERRUPT_BREAK: u32 = 1 << 1;
/// MWAIT EAX bits 7:4: the target C-state minus one (0 = C1); bits 3:0: the sub-state
/// (SDM Vol. 2B Table 4-12).
const HINT_CSTATE_SHIFT: u32 = 4;
/// The highest C-state EDX enumerates (C7: EDX bits 31:28).
const MAX_CSTATE: u32 = 7;

/// What CPUID leaf 05H says, with CPUID.01H:ECX.MONITOR (bit 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MwaitLeaf {
    /// CPUID.01H:ECX[3]: MONITOR/MWAIT exist (and IA32_MISC_ENABLE[18] enables them).
    pub monitor: bool,
    /// EAX[15:0], EBX[15:0]: the smallest and largest monitor-line sizes in bytes.
    pub line_min: u16,
    pub line_max: u16,
    /// ECX bits 0 and 1 ([`ECX_EXTENSIONS`], [`ECX_INTERRUPT_BREAK`]).
    pub extensions: bool,
    pub interrupt_break: bool,
    /// EDX: 4 bits per C-state, C0 in bits 3:0 ... C7 in bits 31:28: the number of its
    /// sub-states MWAIT supports.
    pub substates: u32,
}

impl MwaitLeaf {
    /// From CPUID.01H:ECX and leaf 05H's EAX, EBX, ECX, EDX (read only when the maximum basic
    /// leaf is at least 5: `leaf5` None otherwise).
    pub fn from_cpuid(leaf1_ecx: u32, leaf5: Option<[u32; 4]>) -> Self {
        let monitor = leaf1_ecx & (1 << 3) != 0;
        let Some([eax, ebx, ecx, edx]) = leaf5.filter(|_| monitor) else {
            return MwaitLeaf {
                monitor,
                ..Default::default()
            };
        };
        MwaitLeaf {
            monitor,
            line_min: eax as u16,
            line_max: ebx as u16,
            extensions: ecx & ECX_EXTENSIONS != 0,
            interrupt_break: ecx & ECX_INTERRUPT_BREAK != 0,
            substates: edx,
        }
    }

    /// Sub-states of C-state `n` (1..=7).
    fn substates_of(&self, n: u32) -> u32 {
        (self.substates >> (4 * n)) & 0xf
    }

    /// The MWAIT hint of the deepest C-state with a sub-state (its deepest sub-state), when
    /// MWAIT can be used to sleep: MONITOR exists and the leaf enumerates the C-states
    /// (extensions; without them EDX is not meaningful, so C1 = hint 0 only).
    pub fn deepest_hint(&self) -> Option<u8> {
        if !self.monitor {
            return None;
        }
        if !self.extensions {
            return Some(0);
        }
        let deepest = (1..=MAX_CSTATE).rev().find(|&n| self.substates_of(n) > 0);
        Some(deepest.map_or(0, |n| {
            (((n - 1) << HINT_CSTATE_SHIFT) | (self.substates_of(n) - 1)) as u8
        }))
    }
}

/// A sleep state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SleepState {
    /// HLT (C1).
    Hlt,
    /// MWAIT with this hint in EAX.
    Mwait(u8),
}

impl fmt::Display for SleepState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SleepState::Hlt => f.write_str("C1 (HLT)"),
            SleepState::Mwait(h) => write!(f, "MWAIT {h:#04x}"),
        }
    }
}

/// The idle policy of one CPU (ticks are TSC ticks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// The deepest MWAIT hint ([`MwaitLeaf::deepest_hint`]); None: HLT only.
    pub deepest: Option<u8>,
    /// A wake-up timer can be armed (the local APIC's TSC-deadline mode): without one the
    /// CPU cannot sleep past its deadline and polls instead.
    pub timer: bool,
    /// Waits shorter than this are spun (a sleep would cost more than it saves).
    pub min_sleep: u64,
    /// Waits at least this long use the deepest state, shorter ones C1.
    pub deep_min: u64,
    /// How long to poll before sleeping when a halted guest allows host polling.
    pub poll: u64,
}

impl Policy {
    /// A policy for a CPU with this MWAIT leaf and timer, at `tsc_hz`: spin below 5 µs, the
    /// deepest state from 100 µs, polls of 20 µs.
    pub fn new(leaf: &MwaitLeaf, timer: bool, tsc_hz: u64) -> Self {
        Policy {
            deepest: leaf.deepest_hint(),
            timer,
            min_sleep: tsc_hz / 200_000,
            deep_min: tsc_hz / 10_000,
            poll: tsc_hz / 50_000,
        }
    }
}

/// What one idle wait does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdleStep {
    /// Spin (checking for wake-ups) until the deadline.
    Spin,
    /// Poll for a wake-up for this many ticks, then decide again.
    Poll(u64),
    /// Sleep in this state until the deadline (the timer is armed for it) or an interrupt.
    Sleep(SleepState),
}

/// The step for a wait of `ticks` until the deadline; `host_poll` says whether some halted
/// vCPU here allows host polling (KVM's `MSR_KVM_POLL_CONTROL` bit 0 = 1, its reset value;
/// a vCPU that asked for idle through the Bulkhead IDLE hypercall, or whose guest polls
/// itself with `cpuidle-haltpoll`, does not).
pub fn choose(policy: &Policy, ticks: u64, host_poll: bool) -> IdleStep {
    if !policy.timer || ticks < policy.min_sleep {
        return IdleStep::Spin;
    }
    if host_poll && policy.poll > 0 {
        return IdleStep::Poll(policy.poll.min(ticks));
    }
    let state = match policy.deepest {
        Some(hint) if ticks >= policy.deep_min => SleepState::Mwait(hint),
        Some(_) => SleepState::Mwait(0),
        None => SleepState::Hlt,
    };
    IdleStep::Sleep(state)
}

/// Why a sleep ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// The deadline passed (the armed timer, or it was already due).
    Timer,
    /// Another CPU's kick (an IPI, or its write to the monitored line).
    Kick,
    /// Any other interrupt.
    Other,
}

/// Per-state residency slots: C1 (HLT), MWAIT C1 (hint 0) and the deepest MWAIT hint.
const SLOTS: usize = 3;

/// One CPU's idle accounting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IdleStats {
    /// Ticks asleep and sleeps, per slot: HLT, MWAIT 0x00, MWAIT `deep_hint`.
    pub ticks: [u64; SLOTS],
    pub sleeps: [u64; SLOTS],
    /// The deep slot's hint.
    pub deep_hint: u8,
    /// Wake-ups by cause.
    pub timer_wakes: u64,
    pub kick_wakes: u64,
    pub other_wakes: u64,
    /// Ticks spent polling before a sleep, polls, and polls that a wake-up ended.
    pub poll_ticks: u64,
    pub polls: u64,
    pub poll_hits: u64,
    /// Ticks spun in waits too short to sleep (or without a timer).
    pub spin_ticks: u64,
}

impl IdleStats {
    /// All zero (for statics).
    pub const fn new_const() -> Self {
        IdleStats {
            ticks: [0; SLOTS],
            sleeps: [0; SLOTS],
            deep_hint: 0,
            timer_wakes: 0,
            kick_wakes: 0,
            other_wakes: 0,
            poll_ticks: 0,
            polls: 0,
            poll_hits: 0,
            spin_ticks: 0,
        }
    }

    fn slot(&mut self, state: SleepState) -> usize {
        match state {
            SleepState::Hlt => 0,
            SleepState::Mwait(0) => 1,
            SleepState::Mwait(h) => {
                self.deep_hint = h;
                2
            }
        }
    }

    /// Records one sleep of `ticks` in `state` that `wake` ended.
    pub fn record_sleep(&mut self, state: SleepState, ticks: u64, wake: Wake) {
        let s = self.slot(state);
        self.ticks[s] = self.ticks[s].saturating_add(ticks);
        self.sleeps[s] += 1;
        match wake {
            Wake::Timer => self.timer_wakes += 1,
            Wake::Kick => self.kick_wakes += 1,
            Wake::Other => self.other_wakes += 1,
        }
    }

    /// Records one poll of `ticks`; `hit`: a wake-up ended it.
    pub fn record_poll(&mut self, ticks: u64, hit: bool) {
        self.poll_ticks = self.poll_ticks.saturating_add(ticks);
        self.polls += 1;
        self.poll_hits += u64::from(hit);
    }

    /// Records `ticks` of spinning.
    pub fn record_spin(&mut self, ticks: u64) {
        self.spin_ticks = self.spin_ticks.saturating_add(ticks);
    }

    /// Every wake-up from a sleep.
    pub fn wakeups(&self) -> u64 {
        self.timer_wakes + self.kick_wakes + self.other_wakes
    }

    /// Ticks asleep in any state.
    pub fn asleep(&self) -> u64 {
        self.ticks.iter().sum()
    }

    /// The report line (after `cpu N: `), times in ms at `tsc_hz`: `idle: 12 ms in C1 (HLT),
    /// 0 ms in MWAIT 0x00, 340 ms in MWAIT 0x20 (sleeps=...), 3 ms polling (polls=.. hits=..),
    /// 1 ms spinning; 812 wake-ups (timer=.. kick=.. other=..)`.
    pub fn line(&self, tsc_hz: u64) -> IdleLine<'_> {
        IdleLine { s: self, tsc_hz }
    }
}

/// [`IdleStats::line`].
#[derive(Debug)]
pub struct IdleLine<'a> {
    s: &'a IdleStats,
    tsc_hz: u64,
}

impl fmt::Display for IdleLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |t: u64| (u128::from(t) * 1000 / u128::from(self.tsc_hz.max(1))) as u64;
        let s = self.s;
        let deep = SleepState::Mwait(s.deep_hint);
        write!(
            f,
            "idle: {} ms in {} (sleeps={}), {} ms in {} (sleeps={}), {} ms in {} (sleeps={}), \
             {} ms polling (polls={} hits={}), {} ms spinning; {} wake-ups (timer={} kick={} other={})",
            ms(s.ticks[0]),
            SleepState::Hlt,
            s.sleeps[0],
            ms(s.ticks[1]),
            SleepState::Mwait(0),
            s.sleeps[1],
            ms(s.ticks[2]),
            deep,
            s.sleeps[2],
            ms(s.poll_ticks),
            s.polls,
            s.poll_hits,
            ms(s.spin_ticks),
            s.wakeups(),
            s.timer_wakes,
            s.kick_wakes,
            s.other_wakes
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MONITOR: u32 = 1 << 3;

    #[test]
    fn deepest_hint_is_the_deepest_enumerated_cstate_and_substate() {
        // C0: 0, C1: 2 sub-states, C2: 1, C3: 2 (EDX = 0x2120), extensions + break.
        let l = MwaitLeaf::from_cpuid(MONITOR, Some([64, 64, 0b11, 0x0000_2120]));
        assert_eq!((l.line_min, l.line_max), (64, 64));
        assert!(l.extensions && l.interrupt_break);
        // C3 = hint bits 7:4 = 2, its second sub-state = 1.
        assert_eq!(l.deepest_hint(), Some(0x21));
        // Only C1.
        let l = MwaitLeaf::from_cpuid(MONITOR, Some([64, 64, 1, 0x10]));
        assert_eq!(l.deepest_hint(), Some(0x00));
        // No C-states enumerated at all: C1.
        let l = MwaitLeaf::from_cpuid(MONITOR, Some([64, 64, 1, 0]));
        assert_eq!(l.deepest_hint(), Some(0x00));
        // C7 (bits 31:28).
        let l = MwaitLeaf::from_cpuid(MONITOR, Some([64, 64, 1, 0x1000_0010]));
        assert_eq!(l.deepest_hint(), Some(0x60));
        // No extensions: EDX is not trusted, C1 only.
        let l = MwaitLeaf::from_cpuid(MONITOR, Some([64, 64, 0, 0x2120]));
        assert_eq!(l.deepest_hint(), Some(0x00));
        // No MONITOR: HLT, whatever leaf 5 says.
        let l = MwaitLeaf::from_cpuid(0, Some([64, 64, 3, 0x2120]));
        assert_eq!(l.deepest_hint(), None);
        assert_eq!(l, MwaitLeaf::default());
        assert_eq!(MwaitLeaf::from_cpuid(MONITOR, None).deepest_hint(), Some(0));
    }

    fn policy(deepest: Option<u8>, timer: bool) -> Policy {
        Policy::new(
            &MwaitLeaf {
                monitor: deepest.is_some(),
                extensions: true,
                substates: deepest.map_or(0, |h| {
                    let n = u32::from(h >> 4) + 1;
                    (u32::from(h & 0xf) + 1) << (4 * n)
                }),
                ..Default::default()
            },
            timer,
            50_000_000,
        )
    }

    #[test]
    fn policy_thresholds_follow_the_tsc_rate() {
        let p = policy(Some(0x20), true);
        assert_eq!(p.deepest, Some(0x20));
        // 50 MHz: 5 µs = 250 ticks, 100 µs = 5000, 20 µs = 1000.
        assert_eq!((p.min_sleep, p.deep_min, p.poll), (250, 5000, 1000));
    }

    #[test]
    fn choose_spins_polls_or_sleeps_in_the_state_the_wait_deserves() {
        let p = policy(Some(0x20), true);
        assert_eq!(choose(&p, 100, false), IdleStep::Spin);
        assert_eq!(choose(&p, 100, true), IdleStep::Spin);
        assert_eq!(
            choose(&p, 1000, false),
            IdleStep::Sleep(SleepState::Mwait(0))
        );
        assert_eq!(
            choose(&p, 1_000_000, false),
            IdleStep::Sleep(SleepState::Mwait(0x20))
        );
        // Host polling allowed: poll first, at most until the deadline.
        assert_eq!(choose(&p, 1_000_000, true), IdleStep::Poll(1000));
        assert_eq!(choose(&p, 600, true), IdleStep::Poll(600));
        // No MWAIT: HLT at every length worth sleeping.
        let p = policy(None, true);
        assert_eq!(
            choose(&p, 1_000_000, false),
            IdleStep::Sleep(SleepState::Hlt)
        );
        assert_eq!(choose(&p, 1000, false), IdleStep::Sleep(SleepState::Hlt));
        // No wake-up timer: never sleep.
        let p = policy(Some(0x20), false);
        assert_eq!(choose(&p, 1_000_000, false), IdleStep::Spin);
    }

    #[test]
    fn stats_add_up_and_print_in_ms() {
        let mut s = IdleStats::default();
        s.record_sleep(SleepState::Mwait(0x20), 50_000_000, Wake::Timer);
        s.record_sleep(SleepState::Mwait(0x20), 25_000_000, Wake::Kick);
        s.record_sleep(SleepState::Mwait(0), 500_000, Wake::Other);
        s.record_sleep(SleepState::Hlt, 50_000, Wake::Timer);
        s.record_poll(1000, true);
        s.record_poll(1000, false);
        s.record_spin(50_000);
        assert_eq!(s.wakeups(), 4);
        assert_eq!(s.asleep(), 75_550_000);
        assert_eq!(
            alloc::format!("{}", s.line(50_000_000)),
            "idle: 1 ms in C1 (HLT) (sleeps=1), 10 ms in MWAIT 0x00 (sleeps=1), 1500 ms in MWAIT 0x20 (sleeps=2), \
             0 ms polling (polls=2 hits=1), 1 ms spinning; 4 wake-ups (timer=2 kick=1 other=1)"
        );
    }
}
