//! The local APIC timer (SDM Vol. 3A §11.5.4): one-shot, periodic and TSC-deadline modes,
//! the divide configuration register (Figure 11-10), counted analytically from the TSC.
//!
//! The timer's input clock runs at `timer_hz` (the bus/core crystal clock the guest sees),
//! the TSC at `tsc_hz`; a count of `n` at divide `d` lasts `ceil(n·d·tsc_hz / timer_hz)` TSC
//! ticks, exactly `n·d` when the two clocks are equal. A periodic timer's next deadline is
//! its previous deadline plus the period (no drift from late `advance` calls); periods missed
//! between two calls are coalesced into one interrupt, as an edge already pending in IRR
//! would be.

/// LVT timer bits 18:17 (§11.5.4.1, Table 11-2).
const TIMER_MODE_SHIFT: u32 = 17;
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
        match (lvt >> TIMER_MODE_SHIFT) & 0b11 {
            0b01 => Self::Periodic,
            0b10 => Self::TscDeadline,
            _ => Self::OneShot,
        }
    }
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
    /// TSC of the next expiry, `None` when disarmed.
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
}
