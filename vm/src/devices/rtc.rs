//! Motorola MC146818 real-time clock and CMOS RAM (MC146818A datasheet), at the PC/AT ports
//! 0x70 (index; bit 7 = NMI disable) and 0x71 (data).
//!
//! Time registers (0x00 seconds … 0x09 year, plus the IBM century byte 0x32) are computed on
//! every read from a wall-clock base (seconds since the Unix epoch at a given TSC) advanced by
//! TSC time, in BCD or binary and 12- or 24-hour format as register B selects. Register A's
//! update-in-progress bit is always 0, so a guest never waits for an update cycle; register D
//! reports valid RAM and time. Guest writes to the time registers move the clock (an offset
//! from the base), and register B's SET bit freezes the registers while the guest writes them,
//! as on the real part. Periodic/alarm/update interrupts (IRQ8) are not generated: register C
//! reads 0. Bytes 0x0E-0x7F are general CMOS RAM the hypervisor may preset (memory size,
//! equipment) before the guest runs.

use super::state;
use crate::snapshot::codec::{Dec, Enc};

/// Index port (write-only on the PC; bit 7 disables NMI).
pub const PORT_INDEX: u16 = 0x70;
/// Data port.
pub const PORT_DATA: u16 = 0x71;

/// Register A: UIP(7), divider(6:4), rate select(3:0).
pub const REG_A: u8 = 0x0a;
/// Register B: SET(7), PIE(6), AIE(5), UIE(4), SQWE(3), DM(2, 1 = binary), 24/12(1), DSE(0).
pub const REG_B: u8 = 0x0b;
/// Register C: interrupt flags (read clears).
pub const REG_C: u8 = 0x0c;
/// Register D: VRT(7).
pub const REG_D: u8 = 0x0d;
/// IBM PC century byte.
pub const REG_CENTURY: u8 = 0x32;

const B_SET: u8 = 0x80;
/// Register B bit 4, UIE: cleared whenever SET is written 1 (MC146818A datasheet, register B).
const B_UIE: u8 = 0x10;
const B_BINARY: u8 = 0x04;
const B_24H: u8 = 0x02;
/// Register A bit 7, UIP: read-only, never stored.
const A_UIP: u8 = 0x80;
/// Index port bit 7 (NMI disable on the PC); bits 6:0 select one of the 128 bytes.
const INDEX_NMI_DISABLE: u8 = 0x80;
/// Bytes of CMOS RAM including the clock registers (MC146818A: 64; the PC's 128-byte part).
const CMOS_BYTES: usize = 128;
/// CMOS bytes the model never stores: the time registers and the century are kept as a
/// clock, the day of week is derived, registers C and D are computed on read.
const COMPUTED: [u8; 10] = [
    0x00,
    0x02,
    0x04,
    0x06,
    0x07,
    0x08,
    0x09,
    REG_C,
    REG_D,
    REG_CENTURY,
];
/// Calendar limits (MC146818A datasheet, "Time, calendar and alarm locations").
const MONTHS: u8 = 12;
const HOURS: u8 = 24;
const MINUTES: u8 = 60;
const SECONDS: u8 = 60;

/// A calendar date and time (UTC, proleptic Gregorian).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateTime {
    /// Full year, e.g. 2026.
    pub year: i64,
    /// 1-12.
    pub month: u8,
    /// 1-31.
    pub day: u8,
    /// 0-23.
    pub hour: u8,
    /// 0-59.
    pub minute: u8,
    /// 0-59.
    pub second: u8,
}

/// Days since 1970-01-01 of a civil date (H. Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: u8, day: u8) -> i64 {
    let m = i64::from(month.clamp(1, 12));
    let y = if m <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(day.clamp(1, 31)) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

impl DateTime {
    /// The date and time `secs` seconds after 1970-01-01 00:00:00 UTC (H. Hinnant's
    /// `civil_from_days`). Total for every `i64`.
    pub fn from_unix(secs: i64) -> Self {
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
        let year = yoe + era * 400 + i64::from(month <= 2);
        Self {
            year,
            month,
            day,
            hour: (rem / 3600) as u8,
            minute: (rem / 60 % 60) as u8,
            second: (rem % 60) as u8,
        }
    }

    /// Seconds since the Unix epoch; out-of-range fields are clamped (so any guest-written
    /// register combination yields some time rather than an error).
    pub fn to_unix(self) -> i64 {
        let year = self.year.clamp(-1_000_000, 1_000_000);
        days_from_civil(year, self.month, self.day) * 86_400
            + i64::from(self.hour.min(23)) * 3600
            + i64::from(self.minute.min(59)) * 60
            + i64::from(self.second.min(59))
    }

    /// Whether every field is in range and the day exists in its month (Gregorian leap
    /// years), the year one [`DateTime::from_unix`] can give: what the clock can show.
    fn is_valid(self) -> bool {
        let years = DateTime::from_unix(i64::MIN).year..=DateTime::from_unix(i64::MAX).year;
        let leap = self.year.rem_euclid(4) == 0
            && (self.year.rem_euclid(100) != 0 || self.year.rem_euclid(400) == 0);
        let days_in_month = match self.month {
            2 if leap => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        };
        years.contains(&self.year)
            && (1..=MONTHS).contains(&self.month)
            && (1..=days_in_month).contains(&self.day)
            && self.hour < HOURS
            && self.minute < MINUTES
            && self.second < SECONDS
    }

    /// Day of the week, 1 = Sunday … 7 = Saturday (the MC146818 convention).
    pub fn weekday(self) -> u8 {
        // 1970-01-01 was a Thursday (5).
        ((days_from_civil(self.year, self.month, self.day) + 4).rem_euclid(7) + 1) as u8
    }
}

/// The time registers of a real MC146818 as read from the machine's CMOS (the host RTC the
/// hypervisor reads once at boot to give its VMs the date): seconds (0x00), minutes (0x02),
/// hours (0x04), day of month (0x07), month (0x08), year (0x09), register B (0x0B) and the
/// IBM century byte (0x32; 0 or not BCD when the firmware does not keep it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawTime {
    pub second: u8,
    pub minute: u8,
    pub hour: u8,
    pub day: u8,
    pub month: u8,
    pub year: u8,
    pub reg_b: u8,
    pub century: u8,
}

/// Why [`RawTime::decode`] refused a reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RtcReadError {
    /// A field outside its range once decoded (BCD digit above 9, month 13, ...).
    OutOfRange { register: u8, value: u8 },
}

impl core::fmt::Display for RtcReadError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            RtcReadError::OutOfRange { register, value } => write!(
                f,
                "the machine's RTC register {register:#04x} reads {value:#04x}, not a valid time; set the date in the firmware setup"
            ),
        }
    }
}

impl RawTime {
    /// The date and time the registers show: BCD unless register B's DM bit says binary,
    /// 12-hour (bit 7 of the hours = PM) unless its 24/12 bit is set (MC146818A datasheet,
    /// "Time, calendar and alarm locations" and register B); the century from byte 0x32 when
    /// it holds 19..=99, else 20xx.
    pub fn decode(self) -> Result<DateTime, RtcReadError> {
        let binary = self.reg_b & B_BINARY != 0;
        let field = |register: u8, raw: u8, max: u8, min: u8| {
            let ok_bcd = binary || (raw & 0x0f <= 9 && raw >> 4 <= 9);
            let v = if binary { raw } else { from_bcd(raw) };
            if ok_bcd && (min..=max).contains(&v) {
                Ok(v)
            } else {
                Err(RtcReadError::OutOfRange {
                    register,
                    value: raw,
                })
            }
        };
        let hour = if self.reg_b & B_24H != 0 {
            field(0x04, self.hour, 23, 0)?
        } else {
            let h = field(0x04, self.hour & 0x7f, 12, 1)? % 12;
            h + if self.hour & 0x80 != 0 { 12 } else { 0 }
        };
        let year = i64::from(field(0x09, self.year, 99, 0)?);
        let century = match field(REG_CENTURY, self.century, 99, 19) {
            Ok(c) => i64::from(c),
            Err(_) => 20,
        };
        Ok(DateTime {
            year: century * 100 + year,
            month: field(0x08, self.month, 12, 1)?,
            day: field(0x07, self.day, 31, 1)?,
            hour,
            minute: field(0x02, self.minute, 59, 0)?,
            second: field(0x00, self.second, 59, 0)?,
        })
    }
}

fn to_bcd(v: u8) -> u8 {
    ((v / 10) << 4) | (v % 10)
}

fn from_bcd(v: u8) -> u8 {
    (v >> 4) * 10 + (v & 0x0f)
}

/// The MC146818 RTC with 128 bytes of CMOS.
#[derive(Debug, Clone)]
pub struct Rtc {
    index: u8,
    nmi_disabled: bool,
    cmos: [u8; CMOS_BYTES],
    tsc_hz: u64,
    base_tsc: u64,
    base_secs: i64,
    /// Correction applied by guest writes to the time registers.
    offset_secs: i64,
    /// Registers frozen while register B's SET bit is on.
    frozen: Option<DateTime>,
}

impl Rtc {
    /// A clock reading `wall_clock_secs` (seconds since the Unix epoch) at TSC `base_tsc`,
    /// the TSC running at `tsc_hz` (clamped to at least 1).
    pub fn new(wall_clock_secs: u64, base_tsc: u64, tsc_hz: u64) -> Self {
        let mut cmos = [0u8; CMOS_BYTES];
        cmos[usize::from(REG_A)] = 0x26; // 32.768 kHz time base, 1024 Hz periodic rate
        cmos[usize::from(REG_B)] = B_24H; // 24-hour, BCD
        Self {
            index: 0,
            nmi_disabled: false,
            cmos,
            tsc_hz: tsc_hz.max(1),
            base_tsc,
            base_secs: i64::try_from(wall_clock_secs).unwrap_or(i64::MAX / 2),
            offset_secs: 0,
            frozen: None,
        }
    }

    /// Whether `port` belongs to the RTC.
    pub const fn claims(port: u16) -> bool {
        matches!(port, PORT_INDEX | PORT_DATA)
    }

    /// Whether the guest last wrote the index port with bit 7 set (NMI masked).
    pub fn nmi_disabled(&self) -> bool {
        self.nmi_disabled
    }

    /// Presets general CMOS byte `index` (0x0E-0x7F; the clock registers and the century byte
    /// are not settable this way). Returns whether the byte was stored.
    pub fn set_cmos_byte(&mut self, index: u8, value: u8) -> bool {
        if !(0x0e..0x80).contains(&index) || index == REG_CENTURY {
            return false;
        }
        self.cmos[usize::from(index)] = value;
        true
    }

    /// A general CMOS byte (any index below 0x80; clock registers read their stored raw
    /// value, which is not the time).
    pub fn cmos_byte(&self, index: u8) -> u8 {
        self.cmos.get(usize::from(index)).copied().unwrap_or(0xff)
    }

    /// Fills the PC/AT memory-size bytes for a guest with `ram_bytes` of RAM: base memory
    /// (0x15/0x16, 640 KiB), extended memory above 1 MiB in KiB (0x17/0x18 and 0x30/0x31,
    /// capped at 0xFFFF), memory above 16 MiB in 64-KiB blocks (0x34/0x35, capped, covering
    /// up to 4 GiB), memory above 4 GiB in 64-KiB blocks (0x5B-0x5D, the SeaBIOS/QEMU
    /// convention), and the standard checksum over 0x10-0x2D at 0x2E/0x2F.
    pub fn set_memory_size(&mut self, ram_bytes: u64) {
        const KIB: u64 = 1024;
        const MIB: u64 = 1024 * KIB;
        const GIB: u64 = 1024 * MIB;
        let put16 = |cmos: &mut [u8; 128], lo: usize, v: u64| {
            let v = v.min(0xffff) as u16;
            cmos[lo] = v as u8;
            cmos[lo + 1] = (v >> 8) as u8;
        };
        put16(&mut self.cmos, 0x15, 640);
        let below_4g = ram_bytes.min(4 * GIB);
        let ext_kib = below_4g.saturating_sub(MIB) / KIB;
        put16(&mut self.cmos, 0x17, ext_kib);
        put16(&mut self.cmos, 0x30, ext_kib);
        put16(
            &mut self.cmos,
            0x34,
            below_4g.saturating_sub(16 * MIB) / (64 * KIB),
        );
        let high = (ram_bytes.saturating_sub(4 * GIB) / (64 * KIB)).min(0xff_ffff);
        self.cmos[0x5b] = high as u8;
        self.cmos[0x5c] = (high >> 8) as u8;
        self.cmos[0x5d] = (high >> 16) as u8;
        let sum: u16 = self.cmos[0x10..=0x2d].iter().map(|&b| u16::from(b)).sum();
        self.cmos[0x2e] = (sum >> 8) as u8;
        self.cmos[0x2f] = sum as u8;
    }

    fn elapsed_secs(&self, now_tsc: u64) -> i64 {
        let s = super::tsc_elapsed(now_tsc, self.base_tsc) / self.tsc_hz;
        i64::try_from(s).unwrap_or(i64::MAX / 4)
    }

    /// Seconds since the Unix epoch the clock shows at `now_tsc`.
    pub fn unix_time(&self, now_tsc: u64) -> i64 {
        self.base_secs
            .saturating_add(self.elapsed_secs(now_tsc))
            .saturating_add(self.offset_secs)
    }

    /// The date and time the registers show at `now_tsc`.
    pub fn now(&self, now_tsc: u64) -> DateTime {
        self.frozen
            .unwrap_or_else(|| DateTime::from_unix(self.unix_time(now_tsc)))
    }

    fn set_time(&mut self, dt: DateTime, now_tsc: u64) {
        let current = self.base_secs.saturating_add(self.elapsed_secs(now_tsc));
        self.offset_secs = dt.to_unix().saturating_sub(current);
    }

    fn binary(&self) -> bool {
        self.cmos[usize::from(REG_B)] & B_BINARY != 0
    }

    fn encode(&self, v: u8) -> u8 {
        if self.binary() {
            v
        } else {
            to_bcd(v)
        }
    }

    fn decode(&self, v: u8) -> u8 {
        if self.binary() {
            v
        } else {
            from_bcd(v)
        }
    }

    fn read_register(&mut self, index: u8, now_tsc: u64) -> u8 {
        let dt = self.now(now_tsc);
        match index {
            0x00 => self.encode(dt.second),
            0x02 => self.encode(dt.minute),
            0x04 => {
                if self.cmos[usize::from(REG_B)] & B_24H != 0 {
                    self.encode(dt.hour)
                } else {
                    let h12 = match dt.hour % 12 {
                        0 => 12,
                        h => h,
                    };
                    self.encode(h12) | if dt.hour >= 12 { 0x80 } else { 0 }
                }
            }
            0x06 => self.encode(dt.weekday()),
            0x07 => self.encode(dt.day),
            0x08 => self.encode(dt.month),
            0x09 => self.encode(dt.year.rem_euclid(100) as u8),
            REG_CENTURY => self.encode(dt.year.div_euclid(100).clamp(0, 99) as u8),
            // UIP is never set.
            REG_A => self.cmos[usize::from(REG_A)] & 0x7f,
            // No interrupt sources are modelled, so no flags are ever pending.
            REG_C => 0,
            REG_D => 0x80,
            i => self.cmos_byte(i),
        }
    }

    fn write_register(&mut self, index: u8, value: u8, now_tsc: u64) {
        let time_field = matches!(index, 0x00 | 0x02 | 0x04 | 0x07 | 0x08 | 0x09 | REG_CENTURY);
        if time_field {
            let mut dt = self.now(now_tsc);
            match index {
                0x00 => dt.second = self.decode(value),
                0x02 => dt.minute = self.decode(value),
                0x04 => {
                    dt.hour = if self.cmos[usize::from(REG_B)] & B_24H != 0 {
                        self.decode(value)
                    } else {
                        let h = self.decode(value & 0x7f) % 12;
                        h + if value & 0x80 != 0 { 12 } else { 0 }
                    }
                }
                0x07 => dt.day = self.decode(value),
                0x08 => dt.month = self.decode(value),
                0x09 => dt.year = dt.year.div_euclid(100) * 100 + i64::from(self.decode(value)),
                _ => dt.year = i64::from(self.decode(value)) * 100 + dt.year.rem_euclid(100),
            }
            // Normalise (e.g. 31 February) through the epoch round trip.
            let dt = DateTime::from_unix(dt.to_unix());
            if self.frozen.is_some() {
                self.frozen = Some(dt);
            } else {
                self.set_time(dt, now_tsc);
            }
            return;
        }
        match index {
            REG_A => self.cmos[usize::from(REG_A)] = value & 0x7f,
            REG_B => {
                let old = self.cmos[usize::from(REG_B)];
                let mut value = value;
                if value & B_SET != 0 {
                    // SET freezes the update cycle and clears UIE.
                    value &= !0x10;
                    if old & B_SET == 0 {
                        self.frozen = Some(self.now(now_tsc));
                    }
                } else if let Some(dt) = self.frozen.take() {
                    self.set_time(dt, now_tsc);
                }
                self.cmos[usize::from(REG_B)] = value;
            }
            // C and D are read-only; the day of week is derived from the date.
            REG_C | REG_D | 0x06 => {}
            i => {
                if let Some(b) = self.cmos.get_mut(usize::from(i)) {
                    *b = value;
                }
            }
        }
    }

    /// Appends the guest-visible state: the index register and its NMI-disable bit, the 128
    /// CMOS bytes (registers A and B, the alarm bytes 0x01/0x03/0x05, general RAM), the
    /// clock (the host TSC its base holds at, the base in Unix seconds and the guest's
    /// correction) and the registers frozen while register B's SET bit is on (MC146818A
    /// datasheet, "Address map", register B). Skipped: the TSC rate (configuration). No
    /// periodic, alarm or update interrupt state exists: the model raises none.
    pub fn save_state(&self, e: &mut Enc) {
        e.u8(self.index);
        state::put_flag(e, self.nmi_disabled);
        for &b in &self.cmos {
            e.u8(b);
        }
        e.u64(self.base_tsc)
            .u64(self.base_secs as u64)
            .u64(self.offset_secs as u64);
        state::put_option(e, self.frozen, |e, dt| {
            e.u64(dt.year as u64)
                .u8(dt.month)
                .u8(dt.day)
                .u8(dt.hour)
                .u8(dt.minute)
                .u8(dt.second);
        });
    }

    /// Reads what [`Rtc::save_state`] wrote into this RTC (created with [`Rtc::new`] at the
    /// same TSC rate), adding `shift` to the clock's base TSC: the clock shows at `t + shift`
    /// what the saved one showed at `t`, as if the VM had been paused. On error nothing
    /// changes and the message names the first bad field.
    pub fn load_state(&mut self, d: &mut Dec<'_>, shift: u64) -> Result<(), &'static str> {
        let index = state::u8(d)?;
        if index & INDEX_NMI_DISABLE != 0 {
            return Err("RTC index above 0x7F");
        }
        let nmi_disabled = state::flag(d, "RTC NMI-disable bit neither 0 nor 1")?;
        let cmos: [u8; CMOS_BYTES] = state::array(d)?;
        let base_tsc = state::u64(d)?.wrapping_add(shift);
        let base_secs = state::u64(d)? as i64;
        let offset_secs = state::u64(d)? as i64;
        let frozen = state::option(d, "RTC frozen-time flag neither 0 nor 1", |d| {
            Ok(DateTime {
                year: state::u64(d)? as i64,
                month: state::u8(d)?,
                day: state::u8(d)?,
                hour: state::u8(d)?,
                minute: state::u8(d)?,
                second: state::u8(d)?,
            })
        })?;
        if COMPUTED.iter().any(|&r| cmos[usize::from(r)] != 0) {
            return Err("RTC CMOS byte of a clock or status register not 0");
        }
        let reg_b = cmos[usize::from(REG_B)];
        if cmos[usize::from(REG_A)] & A_UIP != 0 {
            return Err("RTC register A stores the read-only UIP bit");
        }
        // Register B: "SET ... UIE is cleared"; the registers stay frozen while SET is on.
        if reg_b & B_SET != 0 && reg_b & B_UIE != 0 {
            return Err("RTC register B has SET and UIE together");
        }
        if (reg_b & B_SET != 0) != frozen.is_some() {
            return Err("RTC register B's SET bit disagrees with the frozen time");
        }
        if frozen.is_some_and(|dt| !dt.is_valid()) {
            return Err("RTC frozen time not a date the clock can show");
        }
        self.index = index;
        self.nmi_disabled = nmi_disabled;
        self.cmos = cmos;
        self.base_tsc = base_tsc;
        self.base_secs = base_secs;
        self.offset_secs = offset_secs;
        self.frozen = frozen;
        Ok(())
    }

    /// Byte read from 0x70/0x71 (0x70 reads 0xff: the index register is write-only).
    pub fn read_port(&mut self, port: u16, now_tsc: u64) -> u8 {
        match port {
            PORT_DATA => self.read_register(self.index, now_tsc),
            _ => 0xff,
        }
    }

    /// Byte write to 0x70/0x71.
    pub fn write_port(&mut self, port: u16, value: u8, now_tsc: u64) {
        match port {
            PORT_INDEX => {
                self.nmi_disabled = value & 0x80 != 0;
                self.index = value & 0x7f;
            }
            PORT_DATA => self.write_register(self.index, value, now_tsc),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HZ: u64 = 1_000_000_000;
    /// 2026-12-31 23:59:59 UTC.
    const NYE: u64 = 1_798_761_599;

    fn read(rtc: &mut Rtc, index: u8, now: u64) -> u8 {
        rtc.write_port(PORT_INDEX, 0x80 | index, now);
        rtc.read_port(PORT_DATA, now)
    }

    #[test]
    fn host_rtc_readings_decode_in_every_format() {
        let bcd = RawTime {
            second: 0x59,
            minute: 0x59,
            hour: 0x23,
            day: 0x31,
            month: 0x12,
            year: 0x26,
            reg_b: B_24H,
            century: 0x20,
        };
        assert_eq!(bcd.decode().unwrap().to_unix(), NYE as i64);
        // Binary, 12-hour: 11 PM.
        let bin = RawTime {
            second: 59,
            minute: 59,
            hour: 0x80 | 11,
            day: 31,
            month: 12,
            year: 26,
            reg_b: B_BINARY,
            century: 20,
        };
        assert_eq!(bin.decode().unwrap().to_unix(), NYE as i64);
        // 12 AM is hour 0; no century byte means 20xx.
        let midnight = RawTime {
            hour: 0x12,
            reg_b: 0,
            century: 0,
            ..bcd
        };
        assert_eq!(midnight.decode().unwrap().hour, 0);
        assert_eq!(midnight.decode().unwrap().year, 2026);
        // A reading that is not a time is refused, naming the register.
        for (bad, register) in [
            (RawTime { month: 0x13, ..bcd }, 0x08),
            (
                RawTime {
                    second: 0x5a,
                    ..bcd
                },
                0x00,
            ),
            (RawTime { day: 0, ..bcd }, 0x07),
            (RawTime { hour: 0x24, ..bcd }, 0x04),
        ] {
            match bad.decode() {
                Err(RtcReadError::OutOfRange { register: r, .. }) => assert_eq!(r, register),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
        // A model's registers read back through the decoder give its time.
        let mut rtc = Rtc::new(NYE, 0, HZ);
        let raw = RawTime {
            second: read(&mut rtc, 0x00, 0),
            minute: read(&mut rtc, 0x02, 0),
            hour: read(&mut rtc, 0x04, 0),
            day: read(&mut rtc, 0x07, 0),
            month: read(&mut rtc, 0x08, 0),
            year: read(&mut rtc, 0x09, 0),
            reg_b: read(&mut rtc, REG_B, 0),
            century: read(&mut rtc, REG_CENTURY, 0),
        };
        assert_eq!(raw.decode().unwrap().to_unix(), NYE as i64);
    }

    #[test]
    fn calendar_conversion() {
        assert_eq!(
            DateTime::from_unix(NYE as i64),
            DateTime {
                year: 2026,
                month: 12,
                day: 31,
                hour: 23,
                minute: 59,
                second: 59
            }
        );
        assert_eq!(
            DateTime::from_unix(0).weekday(),
            5,
            "1970-01-01 was a Thursday"
        );
        assert_eq!(DateTime::from_unix(951_782_400).month, 2, "2000-02-29");
        assert_eq!(DateTime::from_unix(951_782_400).day, 29);
        for s in [-86_401i64, 0, 68_169_600, 4_107_542_399, NYE as i64] {
            assert_eq!(DateTime::from_unix(s).to_unix(), s);
        }
        let _ = DateTime::from_unix(i64::MIN).to_unix();
        let _ = DateTime::from_unix(i64::MAX).to_unix();
    }

    #[test]
    fn bcd_reads_and_rollover() {
        let mut rtc = Rtc::new(NYE, 1000, HZ);
        assert_eq!(read(&mut rtc, 0x00, 1000), 0x59);
        assert_eq!(read(&mut rtc, 0x02, 1000), 0x59);
        assert_eq!(read(&mut rtc, 0x04, 1000), 0x23);
        assert_eq!(read(&mut rtc, 0x07, 1000), 0x31);
        assert_eq!(read(&mut rtc, 0x08, 1000), 0x12);
        assert_eq!(read(&mut rtc, 0x09, 1000), 0x26);
        assert_eq!(read(&mut rtc, REG_CENTURY, 1000), 0x20);
        assert_eq!(read(&mut rtc, 0x06, 1000), 0x05, "Thursday");
        assert!(rtc.nmi_disabled());
        // + 2 s: 2027-01-01 00:00:01.
        let now = 1000 + 2 * HZ;
        assert_eq!(read(&mut rtc, 0x00, now), 0x01);
        assert_eq!(read(&mut rtc, 0x04, now), 0x00);
        assert_eq!(read(&mut rtc, 0x07, now), 0x01);
        assert_eq!(read(&mut rtc, 0x08, now), 0x01);
        assert_eq!(read(&mut rtc, 0x09, now), 0x27);
    }

    #[test]
    fn status_registers_never_stall() {
        let mut rtc = Rtc::new(NYE, 0, HZ);
        for t in (0..3 * HZ).step_by(HZ as usize / 7) {
            assert_eq!(read(&mut rtc, REG_A, t) & 0x80, 0);
        }
        assert_eq!(read(&mut rtc, REG_A, 0), 0x26);
        assert_eq!(read(&mut rtc, REG_B, 0), 0x02);
        assert_eq!(read(&mut rtc, REG_C, 0), 0x00);
        assert_eq!(read(&mut rtc, REG_D, 0), 0x80);
        rtc.write_port(PORT_INDEX, REG_A, 0);
        rtc.write_port(PORT_DATA, 0xff, 0);
        assert_eq!(read(&mut rtc, REG_A, 0), 0x7f);
    }

    #[test]
    fn binary_and_12_hour_modes() {
        let mut rtc = Rtc::new(NYE, 0, HZ);
        rtc.write_port(PORT_INDEX, REG_B, 0);
        rtc.write_port(PORT_DATA, B_BINARY, 0); // binary, 12-hour
        assert_eq!(read(&mut rtc, 0x00, 0), 59);
        assert_eq!(read(&mut rtc, 0x04, 0), 0x80 | 11, "11 PM");
        assert_eq!(read(&mut rtc, 0x09, 0), 26);
        // Writes in binary mode: set the year to 2030 and 8 AM.
        rtc.write_port(PORT_INDEX, 0x09, 0);
        rtc.write_port(PORT_DATA, 30, 0);
        rtc.write_port(PORT_INDEX, 0x04, 0);
        rtc.write_port(PORT_DATA, 8, 0);
        assert_eq!(read(&mut rtc, 0x09, 5 * HZ), 30);
        assert_eq!(read(&mut rtc, 0x04, 0), 8, "AM");
        assert_eq!(read(&mut rtc, 0x00, 5 * HZ), 4, "59 + 5 s wrapped");
        assert_eq!(read(&mut rtc, 0x04, 5 * HZ), 9, "08:59:59 + 5 s");
        assert_eq!(read(&mut rtc, 0x08, 5 * HZ), 12);
    }

    #[test]
    fn set_bit_freezes_then_commits() {
        let mut rtc = Rtc::new(NYE, 0, HZ);
        rtc.write_port(PORT_INDEX, REG_B, 0);
        rtc.write_port(PORT_DATA, B_SET | B_24H, 0);
        for (i, v) in [
            (0x00u8, 0x30u8),
            (0x02, 0x15),
            (0x04, 0x10),
            (0x07, 0x04),
            (0x08, 0x07),
        ] {
            rtc.write_port(PORT_INDEX, i, 0);
            rtc.write_port(PORT_DATA, v, 0);
        }
        assert_eq!(read(&mut rtc, 0x00, 10 * HZ), 0x30, "frozen while SET");
        rtc.write_port(PORT_INDEX, REG_B, 10 * HZ);
        rtc.write_port(PORT_DATA, B_24H, 10 * HZ);
        assert_eq!(read(&mut rtc, 0x00, 13 * HZ), 0x33);
        assert_eq!(read(&mut rtc, 0x07, 13 * HZ), 0x04);
        assert_eq!(read(&mut rtc, 0x08, 13 * HZ), 0x07);
        assert_eq!(read(&mut rtc, 0x09, 13 * HZ), 0x26);
        // Garbage in every register never panics.
        for i in 0..=255u8 {
            for v in [0u8, 0x99, 0xff, 0x5a] {
                rtc.write_port(PORT_INDEX, i, u64::MAX);
                rtc.write_port(PORT_DATA, v, u64::MAX);
                let _ = rtc.read_port(PORT_DATA, u64::MAX);
                let _ = rtc.read_port(PORT_INDEX, 0);
            }
        }
    }

    #[test]
    fn cmos_memory_bytes() {
        let mut rtc = Rtc::new(0, 0, HZ);
        rtc.set_memory_size(32 << 20);
        assert_eq!(read(&mut rtc, 0x15, 0), 0x80);
        assert_eq!(read(&mut rtc, 0x16, 0), 0x02);
        assert_eq!(read(&mut rtc, 0x17, 0), 0x00);
        assert_eq!(
            read(&mut rtc, 0x18, 0),
            0x7c,
            "31 MiB above 1 MiB = 0x7c00 KiB"
        );
        assert_eq!(read(&mut rtc, 0x30, 0), 0x00);
        assert_eq!(read(&mut rtc, 0x31, 0), 0x7c);
        assert_eq!(read(&mut rtc, 0x34, 0), 0x00);
        assert_eq!(
            read(&mut rtc, 0x35, 0),
            0x01,
            "16 MiB above 16 MiB in 64 KiB blocks"
        );
        rtc.set_memory_size(6 << 30);
        assert_eq!(read(&mut rtc, 0x18, 0), 0xff, "capped");
        assert_eq!(
            read(&mut rtc, 0x5c, 0),
            0x80,
            "2 GiB above 4 GiB = 0x8000 blocks"
        );
        assert!(rtc.set_cmos_byte(0x10, 0x44));
        assert!(!rtc.set_cmos_byte(0x00, 1));
        assert!(!rtc.set_cmos_byte(0x80, 1));
        assert_eq!(read(&mut rtc, 0x10, 0), 0x44);
    }
}
