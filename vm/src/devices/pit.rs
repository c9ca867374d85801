//! Intel 8254 programmable interval timer (Intel 8254 datasheet, order no. 231164) clocked at
//! 1.193182 MHz, with the PC/AT wiring: counter 0 → IRQ0, counter 1 (DRAM refresh, modelled
//! but unused), counter 2 gated and read back through system control port B (0x61).
//!
//! Time is derived from the TSC: the device is told the TSC frequency at construction and the
//! current TSC on every access, and computes counter values and OUT levels analytically —
//! nothing ticks. Counter 0's rising OUT edges become IRQ0 edges when the platform calls
//! [`Pit::advance`]; edges missed between two calls are coalesced into one (and counted in
//! [`Pit::coalesced_ticks`]), the behaviour of an edge-triggered PIC input that was already
//! latched. [`Pit::next_deadline_tsc`] tells the hypervisor when to wake up for the next one
//! (e.g. via the VMX-preemption timer).
//!
//! Modelled: modes 0 (interrupt on terminal count), 1 and 5 (hardware-triggered, via the gate
//! of counter 2), 2 (rate generator), 3 (square wave), 4 (software-triggered strobe: Linux's
//! one-shot clockevent mode); lobyte/hibyte/lobyte-then-hibyte access; counter latch command;
//! read-back command with count and status latching; gate semantics (modes 0/4 pause, modes
//! 2/3 stop and reload on the rising edge). Simplifications: BCD counting is reported in the
//! status byte but counts in binary; a new count written in modes 2/3 takes effect at once
//! rather than at the end of the current period.

use super::state;
use crate::io::IoContext;
use crate::snapshot::codec::{Dec, Enc};

/// Input clock of the PC's 8254, in Hz.
pub const PIT_HZ: u64 = 1_193_182;
/// Counter 0 data port.
pub const PORT_COUNTER0: u16 = 0x40;
/// Counter 1 data port.
pub const PORT_COUNTER1: u16 = 0x41;
/// Counter 2 data port.
pub const PORT_COUNTER2: u16 = 0x42;
/// Control word / read-back port.
pub const PORT_CONTROL: u16 = 0x43;
/// System control port B: counter 2 gate and speaker enable, OUT2 and refresh readback.
pub const PORT_B: u16 = 0x61;
/// The interrupt line counter 0 drives.
pub const PIT_IRQ: u8 = 0;
/// PIT clocks per toggle of port B bit 4 (refresh request, ~15 µs on the PC/AT).
const REFRESH_TICKS: u64 = 18;
/// Port B bits 2-3: parity and I/O channel check enables, stored for readback.
const PORT_B_CHECKS: u8 = 0x0c;
/// The highest counter mode (8254 datasheet, "Control Word Format": M2-M0 select modes 0-5).
const MAX_MODE: u8 = 5;
/// The largest initial count: 0 written in binary counts 2^16 (8254 datasheet, "Counter
/// Operation"; in BCD 0 counts 10^4, which is smaller).
const FULL_COUNT: u64 = 0x1_0000;

/// A refusal naming counter `$i` (0-2) of the PIT.
macro_rules! per_counter {
    ($i:expr, $what:literal) => {
        match $i {
            0 => concat!("PIT channel 0 ", $what),
            1 => concat!("PIT channel 1 ", $what),
            _ => concat!("PIT channel 2 ", $what),
        }
    };
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    Lo = 1,
    Hi = 2,
    LoHi = 3,
}

impl Access {
    fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => Self::Lo,
            2 => Self::Hi,
            3 => Self::LoHi,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone)]
struct Channel {
    mode: u8,
    access: Access,
    bcd: bool,
    /// Initial count, 1..=65536.
    count: u64,
    /// A count has been written since the last control word.
    armed: bool,
    null_count: bool,
    gate: bool,
    /// PIT ticks counted before `running_since` (accumulates across gate pauses).
    ticks_before: u64,
    /// TSC at which counting (re)started, `None` while stopped.
    running_since: Option<u64>,
    write_hi_next: bool,
    pending_lsb: u8,
    read_hi_next: bool,
    latch: Option<u16>,
    status_latch: Option<u8>,
    /// Rising OUT edges already reported (counter 0 only).
    edges: u64,
}

impl Channel {
    fn new(gate: bool) -> Self {
        Self {
            mode: 0,
            access: Access::LoHi,
            bcd: false,
            count: 0x1_0000,
            armed: false,
            null_count: true,
            gate,
            ticks_before: 0,
            running_since: None,
            write_hi_next: false,
            pending_lsb: 0,
            read_hi_next: false,
            latch: None,
            status_latch: None,
            edges: 0,
        }
    }

    fn hw_triggered(&self) -> bool {
        matches!(self.mode, 1 | 5)
    }

    /// Mode, access, BCD, initial count, loaded/null-count/gate, ticks counted and the TSC
    /// counting started at, the byte-order state of writes (with the pending LSB) and reads,
    /// the count and status latches, and the OUT edges reported.
    fn save_state(&self, e: &mut Enc) {
        e.u8(self.mode).u8(self.access as u8);
        state::put_flag(e, self.bcd);
        // At most FULL_COUNT: fits.
        e.u32(self.count as u32);
        state::put_flag(e, self.armed);
        state::put_flag(e, self.null_count);
        state::put_flag(e, self.gate);
        e.u64(self.ticks_before);
        state::put_option(e, self.running_since, |e, t| {
            e.u64(t);
        });
        state::put_flag(e, self.write_hi_next);
        e.u8(self.pending_lsb);
        state::put_flag(e, self.read_hi_next);
        state::put_option(e, self.latch, |e, v| {
            e.u16(v);
        });
        state::put_option(e, self.status_latch, |e, v| {
            e.u8(v);
        });
        e.u64(self.edges);
    }

    /// Counter `i` as [`Channel::save_state`] wrote it, its start time moved by `shift`.
    fn load_state(d: &mut Dec<'_>, i: usize, shift: u64) -> Result<Self, &'static str> {
        let mode = state::u8(d)?;
        if mode > MAX_MODE {
            return Err(per_counter!(i, "mode above 5"));
        }
        let access = Access::from_u8(state::u8(d)?).ok_or(per_counter!(
            i,
            "access (RW1-RW0) not LSB, MSB or LSB then MSB"
        ))?;
        let bcd = state::flag(d, per_counter!(i, "BCD flag neither 0 nor 1"))?;
        let count = u64::from(state::u32(d)?);
        if !(1..=FULL_COUNT).contains(&count) {
            return Err(per_counter!(i, "initial count outside 1..=65536"));
        }
        let armed = state::flag(d, per_counter!(i, "count-loaded flag neither 0 nor 1"))?;
        let null_count = state::flag(d, per_counter!(i, "null-count flag neither 0 nor 1"))?;
        let gate = state::flag(d, per_counter!(i, "gate neither 0 nor 1"))?;
        let ticks_before = state::u64(d)?;
        let running_since =
            state::option(d, per_counter!(i, "running flag neither 0 nor 1"), |d| {
                state::u64(d).map(|t| t.wrapping_add(shift))
            })?;
        let write_hi_next = state::flag(d, per_counter!(i, "write byte order neither 0 nor 1"))?;
        let pending_lsb = state::u8(d)?;
        let read_hi_next = state::flag(d, per_counter!(i, "read byte order neither 0 nor 1"))?;
        let latch = state::option(
            d,
            per_counter!(i, "count latch flag neither 0 nor 1"),
            state::u16,
        )?;
        let status_latch = state::option(
            d,
            per_counter!(i, "status latch flag neither 0 nor 1"),
            state::u8,
        )?;
        let edges = state::u64(d)?;
        let ch = Self {
            mode,
            access,
            bcd,
            count,
            armed,
            null_count,
            gate,
            ticks_before,
            running_since,
            write_hi_next,
            pending_lsb,
            read_hi_next,
            latch,
            status_latch,
            edges,
        };
        // 8254 datasheet, "Read/Write Operations": only an LSB-then-MSB counter is ever
        // between the two bytes of an access.
        if (ch.write_hi_next || ch.read_hi_next) && ch.access != Access::LoHi {
            return Err(per_counter!(
                i,
                "between two bytes without LSB-then-MSB access"
            ));
        }
        // "Counter Operation": a counter counts only once a count is written after its
        // control word.
        if !ch.armed && (ch.running_since.is_some() || ch.ticks_before != 0 || ch.edges != 0) {
            return Err(per_counter!(i, "counting without a count written"));
        }
        // On the PC/AT only counter 2's gate is wired (port B bit 0); 0 and 1 are tied high.
        if i != 2 && !ch.gate {
            return Err(per_counter!(
                i,
                "gate low, but only counter 2's gate is wired"
            ));
        }
        // OUT edges are reported for counter 0 (IRQ0) only: at most one per count in modes 0
        // and 4, none in the gate-triggered modes 1 and 5 (it never drives IRQ0 there).
        let edges_possible = match (i, ch.mode) {
            (0, 2 | 3) => true,
            (0, 0 | 4) => ch.edges <= 1,
            _ => ch.edges == 0,
        };
        if !edges_possible {
            return Err(per_counter!(i, "OUT edge count impossible in its mode"));
        }
        Ok(ch)
    }
}

/// The 8254 with its port-B companion.
#[derive(Debug, Clone)]
pub struct Pit {
    tsc_hz: u64,
    channels: [Channel; 3],
    speaker: bool,
    /// Port B bits 2-3 (parity/IOCHK check enables), stored for readback.
    port_b_checks: u8,
    coalesced: u64,
}

impl Pit {
    /// A PIT whose time base is a TSC running at `tsc_hz` (clamped to at least 1 Hz).
    pub fn new(tsc_hz: u64) -> Self {
        Self {
            tsc_hz: tsc_hz.max(1),
            channels: [Channel::new(true), Channel::new(true), Channel::new(false)],
            speaker: false,
            port_b_checks: 0,
            coalesced: 0,
        }
    }

    /// Whether `port` belongs to the PIT (including port B).
    pub const fn claims(port: u16) -> bool {
        matches!(port, PORT_COUNTER0..=PORT_CONTROL | PORT_B)
    }

    fn tsc_to_ticks(&self, tsc: u64) -> u64 {
        u64::try_from(u128::from(tsc) * u128::from(PIT_HZ) / u128::from(self.tsc_hz))
            .unwrap_or(u64::MAX)
    }

    fn ticks_to_tsc(&self, ticks: u64) -> u64 {
        let t = (u128::from(ticks) * u128::from(self.tsc_hz)).div_ceil(u128::from(PIT_HZ));
        u64::try_from(t).unwrap_or(u64::MAX)
    }

    /// PIT ticks counted by channel `i` at `now`.
    fn ticks(&self, i: usize, now: u64) -> u64 {
        let ch = &self.channels[i];
        let running = ch
            .running_since
            .map_or(0, |since| self.tsc_to_ticks(super::tsc_elapsed(now, since)));
        ch.ticks_before.saturating_add(running)
    }

    fn value(&self, i: usize, now: u64) -> u16 {
        let ch = &self.channels[i];
        if !ch.armed || (ch.hw_triggered() && ch.running_since.is_none() && ch.ticks_before == 0) {
            return ch.count as u16;
        }
        let t = self.ticks(i, now);
        let c = ch.count;
        let v = match ch.mode {
            2 => c - t % c,
            3 => {
                let phase = t % c;
                let high = c.div_ceil(2);
                let p = if phase < high { phase } else { phase - high };
                c - 2 * p
            }
            // Modes 0, 1, 4, 5 count down and wrap through 0xffff after the terminal count.
            _ => (c + 0x1_0000 - t % 0x1_0000) % 0x1_0000,
        };
        v as u16
    }

    fn out(&self, i: usize, now: u64) -> bool {
        let ch = &self.channels[i];
        if !ch.armed {
            return ch.mode != 0;
        }
        let t = self.ticks(i, now);
        let c = ch.count;
        match ch.mode {
            0 => t >= c,
            1 => (ch.running_since.is_none() && ch.ticks_before == 0) || t >= c,
            2 => ch.running_since.is_none() || c < 2 || t % c != c - 1,
            3 => ch.running_since.is_none() || t % c < c.div_ceil(2),
            // Modes 4 and 5: low for one clock at the terminal count.
            _ => t != c,
        }
    }

    /// Rising OUT edges of counter `i` since it was loaded.
    fn edges_due(&self, i: usize, now: u64) -> u64 {
        let ch = &self.channels[i];
        if !ch.armed {
            return 0;
        }
        let t = self.ticks(i, now);
        match ch.mode {
            2 | 3 => t / ch.count,
            0 | 4 => u64::from(t >= ch.count),
            _ => 0,
        }
    }

    /// Reports counter 0's OUT edges up to `now` as IRQ0 edges (coalesced).
    pub fn advance(&mut self, ctx: &mut IoContext<'_>) {
        let now = ctx.now_tsc();
        let due = self.edges_due(0, now);
        let ch = &mut self.channels[0];
        if due > ch.edges {
            // A statistic: saturating, since a restored counter may have counted for long.
            self.coalesced = self.coalesced.saturating_add(due - ch.edges - 1);
            ch.edges = due;
            ctx.pulse_irq(PIT_IRQ);
        }
    }

    /// TSC time of counter 0's next IRQ0 edge, if one is scheduled.
    pub fn next_deadline_tsc(&self) -> Option<u64> {
        let ch = &self.channels[0];
        let since = ch.running_since?;
        if !ch.armed {
            return None;
        }
        let tick = match ch.mode {
            2 | 3 => ch.edges.checked_add(1)?.checked_mul(ch.count)?,
            0 | 4 if ch.edges == 0 => ch.count,
            _ => return None,
        };
        // Modulo 2^64, as TSC times are (see `tsc_elapsed`).
        Some(since.wrapping_add(self.ticks_to_tsc(tick.saturating_sub(ch.ticks_before))))
    }

    /// Period of counter 0 in TSC ticks when it is in a periodic mode.
    pub fn period_tsc(&self) -> Option<u64> {
        let ch = &self.channels[0];
        (ch.armed && matches!(ch.mode, 2 | 3)).then(|| self.ticks_to_tsc(ch.count))
    }

    /// IRQ0 edges that were merged with an earlier, not yet reported one.
    pub fn coalesced_ticks(&self) -> u64 {
        self.coalesced
    }

    /// Current OUT level of counter 2 (port B bit 5).
    pub fn out2(&self, now_tsc: u64) -> bool {
        self.out(2, now_tsc)
    }

    fn start(&mut self, i: usize, now: u64) {
        let ch = &mut self.channels[i];
        ch.armed = true;
        ch.null_count = false;
        ch.ticks_before = 0;
        ch.edges = 0;
        ch.running_since = (ch.gate && !ch.hw_triggered()).then_some(now);
    }

    fn load(&mut self, i: usize, raw: u16, ctx: &mut IoContext<'_>) {
        let ch = &mut self.channels[i];
        ch.count = match raw {
            0 if ch.bcd => 10_000,
            0 => 0x1_0000,
            n => u64::from(n),
        };
        self.start(i, ctx.now_tsc());
        if i == 0 {
            ctx.lower_irq(PIT_IRQ);
        }
    }

    fn set_gate(&mut self, i: usize, level: bool, now: u64) {
        if self.channels[i].gate == level {
            return;
        }
        let ticks = self.ticks(i, now);
        let ch = &mut self.channels[i];
        ch.gate = level;
        if !ch.armed {
            return;
        }
        match (ch.mode, level) {
            // Modes 0 and 4: the gate only pauses counting.
            (0 | 4, true) => ch.running_since = Some(now),
            // Modes 1, 5 (trigger) and 2, 3 (reload) restart on the rising edge.
            (_, true) => {
                ch.ticks_before = 0;
                ch.edges = 0;
                ch.running_since = Some(now);
            }
            (_, false) => {
                ch.ticks_before = ticks;
                // Modes 1 and 5 keep counting after the trigger regardless of the gate.
                if !ch.hw_triggered() {
                    ch.running_since = None;
                }
            }
        }
    }

    fn status(&self, i: usize, now: u64) -> u8 {
        let ch = &self.channels[i];
        (u8::from(self.out(i, now)) << 7)
            | (u8::from(ch.null_count) << 6)
            | ((ch.access as u8) << 4)
            | (ch.mode << 1)
            | u8::from(ch.bcd)
    }

    fn latch_count(&mut self, i: usize, now: u64) {
        if self.channels[i].latch.is_none() {
            let v = self.value(i, now);
            self.channels[i].latch = Some(v);
        }
    }

    fn write_control(&mut self, value: u8, ctx: &mut IoContext<'_>) {
        let now = ctx.now_tsc();
        let select = value >> 6;
        if select == 3 {
            // Read-back: bit 5 = 0 latches counts, bit 4 = 0 latches status, bits 3:1 select.
            for i in 0..3 {
                if value & (2 << i) == 0 {
                    continue;
                }
                if value & 0x20 == 0 {
                    self.latch_count(i, now);
                }
                if value & 0x10 == 0 && self.channels[i].status_latch.is_none() {
                    let s = self.status(i, now);
                    self.channels[i].status_latch = Some(s);
                }
            }
            return;
        }
        let i = usize::from(select);
        let access = match (value >> 4) & 3 {
            0 => return self.latch_count(i, now),
            1 => Access::Lo,
            2 => Access::Hi,
            _ => Access::LoHi,
        };
        let mode = match (value >> 1) & 7 {
            6 => 2,
            7 => 3,
            m => m,
        };
        let ch = &mut self.channels[i];
        *ch = Channel {
            mode,
            access,
            bcd: value & 1 != 0,
            ..Channel::new(ch.gate)
        };
        if i == 0 {
            // Mode 0 drives OUT low at once; the others drive it high, which is not an edge
            // that should interrupt.
            ctx.lower_irq(PIT_IRQ);
        }
    }

    fn read_counter(&mut self, i: usize, now: u64) -> u8 {
        if let Some(s) = self.channels[i].status_latch.take() {
            return s;
        }
        let (latched, value) = match self.channels[i].latch {
            Some(v) => (true, v),
            None => (false, self.value(i, now)),
        };
        let ch = &mut self.channels[i];
        let [lo, hi] = value.to_le_bytes();
        let (byte, done) = match ch.access {
            Access::Lo => (lo, true),
            Access::Hi => (hi, true),
            Access::LoHi if !ch.read_hi_next => {
                ch.read_hi_next = true;
                (lo, false)
            }
            Access::LoHi => {
                ch.read_hi_next = false;
                (hi, true)
            }
        };
        if latched && done {
            ch.latch = None;
        }
        byte
    }

    fn write_counter(&mut self, i: usize, value: u8, ctx: &mut IoContext<'_>) {
        let ch = &mut self.channels[i];
        let raw = match ch.access {
            Access::Lo => u16::from(value),
            Access::Hi => u16::from(value) << 8,
            Access::LoHi if !ch.write_hi_next => {
                ch.write_hi_next = true;
                ch.pending_lsb = value;
                ch.null_count = true;
                return;
            }
            Access::LoHi => {
                ch.write_hi_next = false;
                u16::from_le_bytes([ch.pending_lsb, value])
            }
        };
        self.load(i, raw, ctx);
    }

    fn read_port_b(&self, now: u64) -> u8 {
        let refresh = (self.tsc_to_ticks(now) / REFRESH_TICKS) & 1 == 1;
        u8::from(self.channels[2].gate)
            | (u8::from(self.speaker) << 1)
            | self.port_b_checks
            | (u8::from(refresh) << 4)
            | (u8::from(self.out2(now)) << 5)
    }

    /// Appends the guest-visible state: per counter 0-2 its mode, access, BCD, initial
    /// count, loaded/null-count/gate state, the ticks counted and the host TSC counting
    /// (re)started at, the read and write byte-order state with the pending LSB, the count
    /// and status latches and the OUT edges already reported as IRQ0; then port B's speaker
    /// and check-enable bits (8254 datasheet, "Operational Description"). Skipped: the TSC
    /// rate (configuration) and the coalesced-tick counter (a host statistic).
    pub fn save_state(&self, e: &mut Enc) {
        for ch in &self.channels {
            ch.save_state(e);
        }
        state::put_flag(e, self.speaker);
        e.u8(self.port_b_checks);
    }

    /// Reads what [`Pit::save_state`] wrote into this PIT (created with [`Pit::new`] at the
    /// same TSC rate), adding `shift` to every counter's start TSC, so the counters read and
    /// interrupt at `t + shift` as the saved PIT did at `t`. On error nothing changes and the
    /// message names the first bad field.
    pub fn load_state(&mut self, d: &mut Dec<'_>, shift: u64) -> Result<(), &'static str> {
        let mut channels = self.channels.clone();
        for (i, ch) in channels.iter_mut().enumerate() {
            *ch = Channel::load_state(d, i, shift)?;
        }
        let speaker = state::flag(d, "PIT port B speaker bit neither 0 nor 1")?;
        let port_b_checks = state::bits8(
            d,
            PORT_B_CHECKS,
            "PIT port B value beyond the check enables",
        )?;
        self.channels = channels;
        self.speaker = speaker;
        self.port_b_checks = port_b_checks;
        Ok(())
    }

    /// Byte read from a PIT port or port B (unknown ports read 0xff).
    pub fn read_port(&mut self, port: u16, ctx: &mut IoContext<'_>) -> u8 {
        let now = ctx.now_tsc();
        match port {
            PORT_COUNTER0..=PORT_COUNTER2 => {
                self.read_counter(usize::from(port - PORT_COUNTER0), now)
            }
            PORT_B => self.read_port_b(now),
            // The control word register is write-only.
            _ => 0xff,
        }
    }

    /// Byte write to a PIT port or port B (unknown ports are ignored).
    pub fn write_port(&mut self, port: u16, value: u8, ctx: &mut IoContext<'_>) {
        match port {
            PORT_COUNTER0..=PORT_COUNTER2 => {
                self.write_counter(usize::from(port - PORT_COUNTER0), value, ctx)
            }
            PORT_CONTROL => self.write_control(value, ctx),
            PORT_B => {
                self.speaker = value & 0x02 != 0;
                self.port_b_checks = value & PORT_B_CHECKS;
                self.set_gate(2, value & 0x01 != 0, ctx.now_tsc());
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::tests::{FakeConsole, FakeIrq};

    const TSC_HZ: u64 = 2_000_000_000;

    /// A TSC delta that is exactly `ticks` PIT clocks.
    fn t(ticks: u64) -> u64 {
        ticks * TSC_HZ / PIT_HZ + 1
    }

    /// The first TSC delta at which `ticks` PIT clocks have elapsed.
    fn ceil_t(ticks: u64) -> u64 {
        (ticks * TSC_HZ).div_ceil(PIT_HZ)
    }

    struct Rig {
        pit: Pit,
        irq: FakeIrq,
        con: FakeConsole,
    }

    impl Rig {
        fn new() -> Self {
            Self {
                pit: Pit::new(TSC_HZ),
                irq: FakeIrq::default(),
                con: FakeConsole::default(),
            }
        }
        fn out(&mut self, port: u16, v: u8, now: u64) {
            let mut ctx = IoContext::new(now, &mut self.irq, &mut self.con);
            self.pit.write_port(port, v, &mut ctx);
        }
        fn inb(&mut self, port: u16, now: u64) -> u8 {
            let mut ctx = IoContext::new(now, &mut self.irq, &mut self.con);
            self.pit.read_port(port, &mut ctx)
        }
        fn advance(&mut self, now: u64) {
            let mut ctx = IoContext::new(now, &mut self.irq, &mut self.con);
            self.pit.advance(&mut ctx);
        }
    }

    #[test]
    fn mode2_periodic_irq0_with_coalescing() {
        let mut r = Rig::new();
        // Linux init_pit_timer(periodic): 0x34, LATCH = 1193182/100 (HZ=100) ≈ 11932.
        let latch: u16 = 11932;
        r.out(PORT_CONTROL, 0x34, 1000);
        r.out(PORT_COUNTER0, latch as u8, 1000);
        r.out(PORT_COUNTER0, (latch >> 8) as u8, 1000);
        let start = 1000;
        let period = u64::from(latch);
        assert_eq!(r.pit.next_deadline_tsc(), Some(start + ceil_t(period)));
        r.advance(start + t(period) - 2);
        assert_eq!(r.irq.rising_edges[0], 0);
        // One tick at a time for 10 periods: 10 edges.
        for k in 1..=10 {
            r.advance(start + t(k * period));
            assert_eq!(r.irq.rising_edges[0], k as u32);
            assert!(r.pit.next_deadline_tsc().unwrap() > start + t(k * period) - 1);
        }
        // A long gap of 100 periods yields one edge; 99 coalesced.
        r.advance(start + t(110 * period));
        assert_eq!(r.irq.rising_edges[0], 11);
        assert_eq!(r.pit.coalesced_ticks(), 99);
        assert!(r.pit.next_deadline_tsc().unwrap() <= start + t(111 * period));
        assert_eq!(r.pit.period_tsc(), Some(ceil_t(period)));
    }

    #[test]
    fn mode2_counter_reads_decrease_and_reload() {
        let mut r = Rig::new();
        r.out(PORT_CONTROL, 0x34, 0);
        r.out(PORT_COUNTER0, 100, 0);
        r.out(PORT_COUNTER0, 0, 0);
        let lo = r.inb(PORT_COUNTER0, t(30));
        let hi = r.inb(PORT_COUNTER0, t(30));
        assert_eq!(u16::from_le_bytes([lo, hi]), 70);
        let lo = r.inb(PORT_COUNTER0, t(130));
        let hi = r.inb(PORT_COUNTER0, t(130));
        assert_eq!(u16::from_le_bytes([lo, hi]), 70);
    }

    #[test]
    fn channel2_mode0_out2_goes_high_after_count() {
        let mut r = Rig::new();
        // pit_hpet_ptimer_calibrate_cpu(): gate high, speaker off, mode 0, latch, poll OUT2.
        let b = r.inb(PORT_B, 0);
        r.out(PORT_B, (b & !0x02) | 0x01, 0);
        r.out(PORT_CONTROL, 0xb0, 0);
        let latch: u16 = 11932;
        r.out(PORT_COUNTER2, latch as u8, 10);
        assert_eq!(r.inb(PORT_B, 10) & 0x20, 0, "OUT2 low while counting");
        r.out(PORT_COUNTER2, (latch >> 8) as u8, 10);
        assert_eq!(r.inb(PORT_B, 10 + t(11931)) & 0x20, 0);
        assert_eq!(r.inb(PORT_B, 10 + t(11932)) & 0x20, 0x20);
        assert_eq!(r.inb(PORT_B, 10 + t(50_000)) & 0x21, 0x21);
        // quick_pit_calibrate() reads the live counter MSB repeatedly.
        r.out(PORT_CONTROL, 0xb0, 0);
        r.out(PORT_COUNTER2, 0xff, 0);
        r.out(PORT_COUNTER2, 0xff, 0);
        let _lo = r.inb(PORT_COUNTER2, t(256));
        assert_eq!(r.inb(PORT_COUNTER2, t(256)), 0xfe);
        // Gate low pauses mode 0.
        r.out(PORT_B, 0x00, t(512));
        let _ = r.inb(PORT_COUNTER2, t(5000));
        assert_eq!(r.inb(PORT_COUNTER2, t(5000)), 0xfd);
        // No IRQ from counter 2.
        assert_eq!(r.irq.rising_edges[0], 0);
    }

    #[test]
    fn latch_and_read_back() {
        let mut r = Rig::new();
        r.out(PORT_CONTROL, 0x30, 0); // counter 0, lohi, mode 0
        r.out(PORT_COUNTER0, 0x00, 0);
        r.out(PORT_COUNTER0, 0x10, 0); // 0x1000
        r.out(PORT_CONTROL, 0x00, t(0x100)); // latch counter 0
                                             // Later reads still see the latched value, until both bytes are read.
        assert_eq!(r.inb(PORT_COUNTER0, t(0x500)), 0x00);
        r.out(PORT_CONTROL, 0x00, t(0x600)); // ignored: already latched
        assert_eq!(r.inb(PORT_COUNTER0, t(0x700)), 0x0f);
        assert_eq!(r.inb(PORT_COUNTER0, t(0x800)), 0x00);
        assert_eq!(r.inb(PORT_COUNTER0, t(0x800)), 0x08);
        // Read-back of count and status of counter 0: status first.
        r.out(PORT_CONTROL, 0xc2, t(0x900));
        let status = r.inb(PORT_COUNTER0, t(0xa00));
        assert_eq!(status, 0x30, "OUT low, count loaded, lohi, mode 0, binary");
        assert_eq!(r.inb(PORT_COUNTER0, t(0xa00)), 0x00);
        assert_eq!(r.inb(PORT_COUNTER0, t(0xa00)), 0x07);
        // Status only, after the terminal count: OUT high.
        r.out(PORT_CONTROL, 0xe2, t(0x2000));
        assert_eq!(r.inb(PORT_COUNTER0, t(0x2000)), 0xb0);
        // Mode 0 counter 0 fires IRQ0 once.
        r.advance(t(0x2000));
        r.advance(t(0x9000));
        assert_eq!(r.irq.rising_edges[0], 1);
        assert_eq!(r.pit.next_deadline_tsc(), None);
        // Null count shows between control word and count.
        r.out(PORT_CONTROL, 0x34, t(0x9000));
        r.out(PORT_CONTROL, 0xe2, t(0x9000));
        assert_eq!(r.inb(PORT_COUNTER0, t(0x9000)) & 0x40, 0x40);
    }

    #[test]
    fn mode4_oneshot_and_mode3() {
        let mut r = Rig::new();
        // Linux oneshot clockevent: 0x38 then the delta.
        r.out(PORT_CONTROL, 0x38, 0);
        r.out(PORT_COUNTER0, 0xe8, 0);
        r.out(PORT_COUNTER0, 0x03, 0);
        assert_eq!(r.pit.next_deadline_tsc(), Some(ceil_t(1000)));
        r.advance(t(999));
        assert_eq!(r.irq.rising_edges[0], 0);
        r.advance(t(1000));
        assert_eq!(r.irq.rising_edges[0], 1);
        r.advance(t(5000));
        assert_eq!(r.irq.rising_edges[0], 1);
        // Mode 3 on counter 2 toggles OUT2 at half periods.
        r.out(PORT_B, 0x01, 0);
        r.out(PORT_CONTROL, 0xb6, 0);
        r.out(PORT_COUNTER2, 100, 0);
        r.out(PORT_COUNTER2, 0, 0);
        assert_eq!(r.inb(PORT_B, t(10)) & 0x20, 0x20);
        assert_eq!(r.inb(PORT_B, t(60)) & 0x20, 0);
        assert_eq!(r.inb(PORT_B, t(110)) & 0x20, 0x20);
        // Byte modes.
        r.out(PORT_CONTROL, 0x92, 0); // counter 2, LSB only, mode 1
        r.out(PORT_COUNTER2, 0x40, 0);
        assert_eq!(
            r.inb(PORT_COUNTER2, t(10)),
            0x40,
            "mode 1 waits for a gate edge"
        );
        r.out(PORT_B, 0x00, t(10));
        r.out(PORT_B, 0x01, t(10));
        assert_eq!(r.inb(PORT_COUNTER2, t(20)), 0x36);
    }

    #[test]
    fn refresh_bit_toggles_and_garbage_is_safe() {
        let mut r = Rig::new();
        let a = r.inb(PORT_B, 0) & 0x10;
        let b = r.inb(PORT_B, t(REFRESH_TICKS)) & 0x10;
        assert_ne!(a, b);
        for v in 0..=255u8 {
            for port in [0x40, 0x41, 0x42, 0x43, 0x61] {
                r.out(port, v, u64::from(v) * 1000);
                let _ = r.inb(port, u64::MAX - u64::from(v));
            }
            r.advance(u64::MAX);
            let _ = r.pit.next_deadline_tsc();
        }
        let mut p = Pit::new(0);
        let (mut irq, mut con) = (FakeIrq::default(), FakeConsole::default());
        let mut ctx = IoContext::new(u64::MAX, &mut irq, &mut con);
        p.write_port(PORT_CONTROL, 0x34, &mut ctx);
        p.write_port(PORT_COUNTER0, 1, &mut ctx);
        p.write_port(PORT_COUNTER0, 0, &mut ctx);
        p.advance(&mut ctx);
        let _ = p.next_deadline_tsc();
    }
}
