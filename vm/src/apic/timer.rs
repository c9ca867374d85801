//! The local APIC timer (SDM Vol. 3A §11.5.4): one-shot, periodic and TSC-deadline modes,
//! the divide configuration register (Figure 11-10), counted analytically from the TSC.
//!
//! The timer's input clock runs at `timer_hz` (the bus/core crystal clock the guest sees),
//! the TSC at `tsc_hz`; a count of `n` at divide `d` lasts `ceil(n·d·tsc_hz / timer_hz)` TSC
//! ticks, exactly `n·d` when the two clocks are equal. A periodic timer's next deadline is
//! its previous deadline plus the period (no drift from late `advance` calls); periods missed
//! between two calls are coalesced into one interrupt, as an edge already pending in IRR
//! would be.
//!
//! Every TSC value here (`now`, the deadline, in TSC-deadline mode too) is the *host* TSC: the
//! kernel passes `rdtsc()` as `now` and converts IA32_TSC_DEADLINE from the guest's TSC by
//! its TSC offset (SDM Vol. 3C §26.6.5) before [`Timer::set_tsc_deadline`]. A snapshot
//! restore therefore moves the one stored timestamp, the deadline, by the host TSC's shift
//! ([`Timer::load_state`]); the period is a length and stays.

use crate::snapshot::codec::{Dec, Enc};

/// LVT timer bits 18:17 (§11.5.4.1, Table 11-2).
const TIMER_MODE_SHIFT: u32 = 17;
/// The two bits of the timer mode field.
const TIMER_MODE_FIELD: u32 = 0b11;
/// Timer mode 00: one-shot (SDM Vol. 3A §11.5.1, Figure 11-8).
const MODE_ONE_SHOT: u32 = 0b00;
/// Timer mode 01: periodic.
const MODE_PERIODIC: u32 = 0b01;
/// Timer mode 10: TSC-deadline.
const MODE_TSC_DEADLINE: u32 = 0b10;
/// Timer mode 11: reserved.
const MODE_RESERVED: u32 = 0b11;
/// The largest divisor (Figure 11-10: divide by 128).
const MAX_DIVISOR: u64 = 128;
/// Divide configuration bits 0, 1 and 3 (bit 2 is reserved, Figure 11-10).
pub const DIVIDE_WRITE_MASK: u32 = 0b1011;

/// The timer mode selected by LVT timer bits 18:17.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerMode {
    /// 00: counts down once from the initial count.
    OneShot,
    /// 01: reloads the initial count at zero.
    Periodic,
    /// 10: fires when the TSC reaches IA32_TSC_DEADLINE.
    TscDeadline,
}

impl TimerMode {
    /// The mode of an LVT timer value; the reserved encoding 11 counts as one-shot.
    pub fn of_lvt(lvt: u32) -> Self {
        match (lvt >> TIMER_MODE_SHIFT) & TIMER_MODE_FIELD {
            MODE_PERIODIC => Self::Periodic,
            MODE_TSC_DEADLINE => Self::TscDeadline,
            _ => Self::OneShot,
        }
    }

    /// The mode's LVT encoding (bits 18:17 shifted down).
    fn code(self) -> u32 {
        match self {
            Self::OneShot => MODE_ONE_SHOT,
            Self::Periodic => MODE_PERIODIC,
            Self::TscDeadline => MODE_TSC_DEADLINE,
        }
    }
}

/// The register-page words the timer's saved state must agree with.
#[derive(Debug, Clone, Copy)]
pub(super) struct TimerRegisters {
    /// LVT timer (0x320).
    pub(super) lvt: u32,
    /// Initial count (0x380).
    pub(super) initial_count: u32,
    /// Divide configuration (0x3E0).
    pub(super) divide: u32,
}

/// The divisor a divide configuration value selects (Figure 11-10: bits 3,1,0 = 000 → 2,
/// 001 → 4, ..., 110 → 128, 111 → 1).
pub fn divisor(dcr: u32) -> u64 {
    let code = ((dcr >> 1) & 0b100) | (dcr & 0b11);
    if code == 0b111 {
        1
    } else {
        2 << code
    }
}

/// The timer's arming state: what the register page cannot hold.
#[derive(Debug, Clone)]
pub(super) struct Timer {
    tsc_hz: u64,
    timer_hz: u64,
    /// The mode last written to the LVT (switching it disarms).
    pub(super) mode: TimerMode,
    /// The divisor in effect (the page's DCR, decoded when written).
    pub(super) divisor: u64,
    /// The initial count in effect (one-shot/periodic).
    initial: u64,
    /// Host TSC of the next expiry, `None` when disarmed.
    pub(super) deadline: Option<u64>,
    /// TSC ticks per period (periodic mode).
    period: u64,
}

impl Timer {
    pub(super) fn new(tsc_hz: u64, timer_hz: u64) -> Self {
        Self {
            tsc_hz: tsc_hz.max(1),
            timer_hz: timer_hz.max(1),
            mode: TimerMode::OneShot,
            divisor: divisor(0),
            initial: 0,
            deadline: None,
            period: 0,
        }
    }

    /// Back to the reset state (disarmed, one-shot, divide by 2).
    pub(super) fn reset(&mut self) {
        *self = Self::new(self.tsc_hz, self.timer_hz);
    }

    /// TSC ticks for `timer_ticks` input-clock ticks, rounded up, saturating.
    fn tsc_for(&self, timer_ticks: u64) -> u64 {
        let tsc =
            (u128::from(timer_ticks) * u128::from(self.tsc_hz)).div_ceil(u128::from(self.timer_hz));
        u64::try_from(tsc).unwrap_or(u64::MAX)
    }

    /// Counter decrements (input ticks / divisor) in `tsc` TSC ticks, rounded up.
    fn counts_in(&self, tsc: u64) -> u64 {
        let per = u128::from(self.tsc_hz) * u128::from(self.divisor);
        let counts = (u128::from(tsc) * u128::from(self.timer_hz)).div_ceil(per);
        u64::try_from(counts).unwrap_or(u64::MAX)
    }

    /// Disarm (mode switch, count 0, APIC disabled).
    pub(super) fn disarm(&mut self) {
        self.deadline = None;
        self.initial = 0;
        self.period = 0;
    }

    /// A write of the initial count at `now` (§11.5.4: writing 0 stops the timer).
    pub(super) fn start_count(&mut self, initial: u32, now: u64) {
        self.disarm();
        if initial == 0 || self.mode == TimerMode::TscDeadline {
            return;
        }
        self.initial = u64::from(initial);
        let length = self.tsc_for(self.initial * self.divisor);
        self.deadline = Some(now.saturating_add(length));
        if self.mode == TimerMode::Periodic {
            self.period = length;
        }
    }

    /// Arm TSC-deadline mode at `deadline` (0 disarms, §11.5.4.1).
    pub(super) fn set_tsc_deadline(&mut self, deadline: u64) {
        self.disarm();
        if deadline != 0 {
            self.deadline = Some(deadline);
        }
    }

    /// The current count register at `now` (§11.5.4; 0 when disarmed, expired or in
    /// TSC-deadline mode).
    pub(super) fn current_count(&self, now: u64) -> u32 {
        let Some(deadline) = self.deadline else {
            return 0;
        };
        let remaining = match self.mode {
            TimerMode::TscDeadline => return 0,
            _ if now < deadline => deadline - now,
            TimerMode::Periodic if self.period > 0 => self.period - (now - deadline) % self.period,
            _ => 0,
        };
        let count = self.counts_in(remaining).min(self.initial);
        u32::try_from(count).unwrap_or(u32::MAX)
    }

    /// A new divide configuration at `now`: the count still to go is kept and continues at
    /// the new rate; a periodic reload uses the new divisor.
    pub(super) fn set_divide(&mut self, dcr: u32, now: u64) {
        let new = divisor(dcr);
        if new == self.divisor {
            return;
        }
        let remaining_counts = u64::from(self.current_count(now));
        self.divisor = new;
        if self.deadline.is_some() && self.mode != TimerMode::TscDeadline {
            let rest = self.tsc_for(remaining_counts * self.divisor);
            self.deadline = Some(now.saturating_add(rest));
            if self.mode == TimerMode::Periodic {
                self.period = self.tsc_for(self.initial * self.divisor);
            }
        }
    }

    /// Consume the expiries due at `now`: `Some(missed)` if the timer fired (with `missed`
    /// further periods coalesced into this one), `None` if nothing was due.
    pub(super) fn expire(&mut self, now: u64) -> Option<u64> {
        let deadline = self.deadline?;
        if now < deadline {
            return None;
        }
        if self.mode == TimerMode::Periodic && self.period > 0 {
            let missed = (now - deadline) / self.period;
            let next = (missed + 1)
                .checked_mul(self.period)
                .and_then(|step| deadline.checked_add(step));
            self.deadline = next;
            Some(missed)
        } else {
            // One-shot reaches 0 and stays; TSC-deadline reads 0 after firing (§11.5.4.1).
            self.deadline = None;
            Some(0)
        }
    }

    /// Appends the arming state (snapshot, issue 18): the mode as its LVT encoding (u8), the
    /// divisor (u64), the initial count (u64), armed (u8 0/1), the deadline in host TSC
    /// ticks (u64, 0 when disarmed) and the period in TSC ticks (u64). The clock rates are
    /// configuration and not saved.
    pub(super) fn save_state(&self, e: &mut Enc) {
        e.u8(self.mode.code() as u8)
            .u64(self.divisor)
            .u64(self.initial)
            .u8(u8::from(self.deadline.is_some()))
            .u64(self.deadline.unwrap_or(0))
            .u64(self.period);
    }

    /// Reads [`Self::save_state`]'s fields into a timer with this one's clock rates, checked
    /// against themselves and against the register page's `regs`; the deadline is moved by
    /// `shift` host TSC ticks ([`shift_deadline`]). `self` is not changed.
    pub(super) fn load_state(
        &self,
        d: &mut Dec,
        shift: u64,
        regs: TimerRegisters,
    ) -> Result<Timer, &'static str> {
        const SHORT: &str = "the section ends early";
        let mode = match u32::from(d.u8().ok_or(SHORT)?) {
            MODE_ONE_SHOT => TimerMode::OneShot,
            MODE_PERIODIC => TimerMode::Periodic,
            MODE_TSC_DEADLINE => TimerMode::TscDeadline,
            // SDM Vol. 3A §11.5.1, Figure 11-8: timer mode 11 is reserved.
            MODE_RESERVED => return Err("timer mode 3 is reserved"),
            _ => return Err("timer mode out of range"),
        };
        let divide_by = d.u64().ok_or(SHORT)?;
        // Figure 11-10: the divisors are 1, 2, 4, ..., 128.
        if !divide_by.is_power_of_two() || divide_by > MAX_DIVISOR {
            return Err("timer divisor not a power of two from 1 to 128");
        }
        let initial = d.u64().ok_or(SHORT)?;
        // §11.5.4: the initial count register is 32 bits.
        if u32::try_from(initial).is_err() {
            return Err("timer initial count wider than 32 bits");
        }
        let armed = match d.u8().ok_or(SHORT)? {
            0 => false,
            1 => true,
            _ => return Err("timer armed flag neither 0 nor 1"),
        };
        let at = d.u64().ok_or(SHORT)?;
        if !armed && at != 0 {
            return Err("a disarmed timer with a deadline");
        }
        let deadline = armed.then(|| shift_deadline(at, shift));
        // Kept as saved, not recomputed from this timer's clock rates: a restoring host's
        // TSC may run a little off the snapshot's (snapshot::TSC_TOLERANCE_PPM), and the
        // period in TSC ticks is what the guest's TSC sees.
        let period = d.u64().ok_or(SHORT)?;
        match mode {
            // Only a periodic timer reloads; an armed one has a period of at least one tick
            // (a count of 1 or more at divide 1 or more, rounded up).
            TimerMode::Periodic if deadline.is_some() && period == 0 => {
                return Err("periodic timer armed with period 0");
            }
            TimerMode::Periodic => {}
            _ if period != 0 => return Err("timer period outside periodic mode"),
            _ => {}
        }
        // §11.5.4: an initial count of 0 stops the timer; §11.5.4.1: TSC-deadline mode
        // ignores the initial count register.
        match mode {
            TimerMode::TscDeadline if initial != 0 => {
                return Err("timer initial count in TSC-deadline mode");
            }
            TimerMode::OneShot | TimerMode::Periodic if deadline.is_some() && initial == 0 => {
                return Err("timer armed with initial count 0");
            }
            _ => {}
        }
        // The arming state follows the page's LVT timer, initial count and divide
        // configuration whenever they are written (access.rs); TimerMode::of_lvt reads the
        // reserved mode 11, which a guest can write, as one-shot.
        if TimerMode::of_lvt(regs.lvt) != mode {
            return Err("timer mode differs from the LVT timer's");
        }
        if u64::from(regs.initial_count) != initial {
            return Err("timer initial count differs from the register page's");
        }
        if divisor(regs.divide) != divide_by {
            return Err("timer divisor differs from the divide configuration register");
        }
        Ok(Timer {
            tsc_hz: self.tsc_hz,
            timer_hz: self.timer_hz,
            mode,
            divisor: divide_by,
            initial,
            deadline,
            period,
        })
    }
}

/// A host-TSC deadline moved by a restore's `shift` (the restoring host's TSC minus the
/// snapshot's, modulo 2^64, so a "negative" shift is a restore on a host whose TSC is behind).
/// The timer compares TSC values as plain unsigned numbers, so the shift is applied as a
/// signed, saturating step instead of wrapping: a deadline that would land before TSC 0 was
/// already due and becomes 0 (it fires at once), one beyond the end of the TSC stays at
/// `u64::MAX`. For every other deadline this is `deadline.wrapping_add(shift)`.
pub(super) fn shift_deadline(deadline: u64, shift: u64) -> u64 {
    deadline.saturating_add_signed(shift as i64)
}
