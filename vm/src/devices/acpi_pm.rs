//! The ACPI fixed-hardware power-management registers of a non-HW-reduced platform (ACPI 6.5
//! chapter 4, "ACPI Hardware Specification", §4.8): the PM1a event block (PM1_STS, PM1_EN) at
//! [`PM1A_EVT_BLK`], the PM1a control block (PM1_CNT) at [`PM1A_CNT_BLK`], and the reset
//! register at [`RESET_PORT`] that the FADT's RESET_REG names (§4.8.3.6).
//!
//! What it models:
//! - ACPI mode is on from the start: the FADT's SMI_CMD is 0 ("the system does not support
//!   mode transition", §5.2.9 Table 5.9, SMI_CMD), so SCI_EN reads 1 and cannot be cleared
//!   (§4.8.3.2.1, SCI_EN).
//! - One fixed event, the power button (PWRBTN_STS/PWRBTN_EN, §4.8.3.1):
//!   [`AcpiPm::press_power_button`] sets its status; [`AcpiPm::sci_level`] is the SCI line (GSI 9, level, active high).
//!   Status bits are write-1-to-clear (§4.8.3.1.1). GBL_EN sticks: a platform with the
//!   legacy ACPI hardware must implement the global lock (ACPICA disables the lock with an
//!   error otherwise); no firmware ever holds it, so GBL_STS is never set (§4.8.3.1.2,
//!   §5.2.10 FACS).
//! - Sleep: writing SLP_EN with SLP_TYP = [`SLP_TYP_S5`] (the value the DSDT's `\_S5` object
//!   gives) records [`PowerRequest::Off`] (§4.8.3.2.1, §7.4.2 "\_Sx (System States)"). Other
//!   sleep types are not offered; their SLP_EN wakes at once (WAK_STS set) and is counted.
//! - Reset: a write to [`RESET_PORT`] with RST_CPU (bit 2) set, e.g. the FADT's RESET_VALUE
//!   0x06, records [`PowerRequest::Reset`] (Intel PCH datasheets, "Reset Control Register"
//!   RST_CNT at I/O 0xCF9: bit 1 SYS_RST, bit 2 RST_CPU, bit 3 FULL_RST).
//!
//! The registers are 16-bit; [`LegacyPlatform`](super::LegacyPlatform) gives them byte
//! accesses (a word access is split as for every built-in device). Every bit acts within its
//! byte (SLP_EN and SLP_TYP share the high byte of PM1_CNT), so a split access behaves as the
//! word access OSPM makes at the widths PM1_EVT_LEN / PM1_CNT_LEN give.

use super::state;
use crate::snapshot::codec::{Dec, Enc};

/// PM1a_EVT_BLK: PM1a_STS at +0, PM1a_EN at +2 (§4.8.3.1), FADT PM1_EVT_LEN = 4.
pub const PM1A_EVT_BLK: u16 = 0x600;
/// FADT PM1_EVT_LEN.
pub const PM1_EVT_LEN: u8 = 4;
/// PM1a_CNT_BLK (§4.8.3.2), FADT PM1_CNT_LEN = 2.
pub const PM1A_CNT_BLK: u16 = 0x604;
/// FADT PM1_CNT_LEN.
pub const PM1_CNT_LEN: u8 = 2;
/// The reset register (FADT RESET_REG, an 8-bit I/O register, §4.8.3.6).
pub const RESET_PORT: u16 = 0xCF9;
/// FADT RESET_VALUE: SYS_RST | RST_CPU, a hard reset.
pub const RESET_VALUE: u8 = 0x06;
/// The SLP_TYP value of S5 (soft off), shared with the DSDT's `\_S5` package.
pub const SLP_TYP_S5: u8 = 5;
/// The SCI's interrupt (FADT SCI_INT): ISA IRQ 9 / GSI 9, level, active high.
pub const SCI_IRQ: u8 = 9;

const PM1_STS: u16 = PM1A_EVT_BLK;
const PM1_EN: u16 = PM1A_EVT_BLK + 2;

/// §4.8.3.1.1, PM1 Status Registers: PWRBTN_STS.
pub const PWRBTN_STS: u16 = 1 << 8;
/// §4.8.3.1.1: WAK_STS, set when the system wakes from a sleeping state.
pub const WAK_STS: u16 = 1 << 15;
/// Status bits this model implements.
const STS_IMPLEMENTED: u16 = PWRBTN_STS | WAK_STS;
/// §4.8.3.1.2, PM1 Enable Registers: PWRBTN_EN.
pub const PWRBTN_EN: u16 = 1 << 8;
/// §4.8.3.1.2: GBL_EN.
pub const GBL_EN: u16 = 1 << 5;
/// Enable bits this model implements (TMR_EN, RTC_EN... do not stick: no PM timer, no RTC
/// alarm).
const EN_IMPLEMENTED: u16 = PWRBTN_EN | GBL_EN;
/// §4.8.3.2.1, PM1 Control Registers: SCI_EN (bit 0), BM_RLD (1), GBL_RLS (2, write-only), SLP_TYP
/// (12:10), SLP_EN (13, write-only).
pub const SCI_EN: u16 = 1 << 0;
const BM_RLD: u16 = 1 << 1;
const SLP_TYP_SHIFT: u16 = 10;
const SLP_TYP_MASK: u16 = 0b111 << SLP_TYP_SHIFT;
/// SLP_EN: writing 1 enters the sleeping state SLP_TYP selects; reads 0.
pub const SLP_EN: u16 = 1 << 13;
/// PM1_CNT bits that read back as written.
const CNT_STORED: u16 = BM_RLD | SLP_TYP_MASK;

/// RST_CNT bit 2: a write with it set resets.
const RST_CPU: u8 = 1 << 2;
/// RST_CNT bits that read back (SYS_RST, FULL_RST).
const RST_STORED: u8 = (1 << 1) | (1 << 3);

/// How a snapshot stores [`AcpiPm::request`].
const REQUEST_NONE: u8 = 0;
const REQUEST_OFF: u8 = 1;
const REQUEST_RESET: u8 = 2;

/// What the guest asked the platform to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerRequest {
    /// SLP_EN with the S5 sleep type: power the VM off.
    Off,
    /// The reset register: restart the VM.
    Reset,
}

/// The PM1a event and control blocks and the reset register.
#[derive(Debug, Clone, Default)]
pub struct AcpiPm {
    status: u16,
    enable: u16,
    control: u16,
    reset_control: u8,
    request: Option<PowerRequest>,
    /// SLP_EN writes with a sleep type other than S5.
    unsupported_sleeps: u64,
}

impl AcpiPm {
    /// The registers after power-on: nothing pending, ACPI mode on.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether `port` is one of this device's registers.
    pub const fn claims(port: u16) -> bool {
        (port >= PM1A_EVT_BLK && port < PM1A_CNT_BLK + PM1_CNT_LEN as u16) || port == RESET_PORT
    }

    /// The 16-bit register at `base` and whether `port` is its high byte.
    fn byte_of(value: u16, port: u16, base: u16) -> u8 {
        (value >> (8 * (port - base))) as u8
    }

    /// A byte read of `port`.
    pub fn read_port(&self, port: u16) -> u8 {
        match port {
            PM1_STS..=0x601 => Self::byte_of(self.status, port, PM1_STS),
            PM1_EN..=0x603 => Self::byte_of(self.enable, port, PM1_EN),
            // SCI_EN always reads 1; SLP_EN and GBL_RLS read 0.
            PM1A_CNT_BLK..=0x605 => Self::byte_of(self.control | SCI_EN, port, PM1A_CNT_BLK),
            RESET_PORT => self.reset_control,
            _ => 0xFF,
        }
    }

    /// A byte write of `value` to `port`.
    pub fn write_port(&mut self, port: u16, value: u8) {
        let shift = |base: u16| 8 * (port - base);
        match port {
            PM1_STS..=0x601 => {
                // §4.8.3.1.1: writing 1 clears a status bit, 0 has no effect.
                self.status &= !((u16::from(value) << shift(PM1_STS)) & STS_IMPLEMENTED);
            }
            PM1_EN..=0x603 => {
                let s = shift(PM1_EN);
                let keep = self.enable & !(0xFF << s);
                self.enable = keep | ((u16::from(value) << s) & EN_IMPLEMENTED);
            }
            PM1A_CNT_BLK..=0x605 => {
                let s = shift(PM1A_CNT_BLK);
                let written = u16::from(value) << s;
                let keep = self.control & !(0xFF << s);
                self.control = keep | (written & CNT_STORED);
                if written & SLP_EN != 0 {
                    self.sleep();
                }
            }
            RESET_PORT => {
                self.reset_control = value & RST_STORED;
                if value & RST_CPU != 0 {
                    self.request = Some(PowerRequest::Reset);
                }
            }
            _ => {}
        }
    }

    /// SLP_EN was written: enter the sleeping state SLP_TYP selects (§4.8.3.2.1, §16.1).
    fn sleep(&mut self) {
        let typ = ((self.control & SLP_TYP_MASK) >> SLP_TYP_SHIFT) as u8;
        if typ == SLP_TYP_S5 {
            self.request = Some(PowerRequest::Off);
        } else {
            // Not offered in the DSDT: the "sleep" ends at once, as a wake would (§4.8.3.1.1
            // WAK_STS), so a guest polling WAK_STS goes on.
            self.unsupported_sleeps += 1;
            self.status |= WAK_STS;
        }
    }

    /// The pending power-off or reset request, taken (the VMM acts on it once).
    pub fn take_request(&mut self) -> Option<PowerRequest> {
        self.request.take()
    }

    /// The pending request without taking it.
    pub fn request(&self) -> Option<PowerRequest> {
        self.request
    }

    /// The power button was pressed: PWRBTN_STS set (the SCI follows if PWRBTN_EN is set).
    pub fn press_power_button(&mut self) {
        self.status |= PWRBTN_STS;
    }

    /// The SCI line: a status bit set whose enable bit is set (§4.8.3.1; SCI_EN is always 1).
    /// Drive GSI [`SCI_IRQ`] with it after each access.
    pub fn sci_level(&self) -> bool {
        self.status & self.enable != 0
    }

    /// SLP_EN writes with a sleep type other than S5.
    pub fn unsupported_sleeps(&self) -> u64 {
        self.unsupported_sleeps
    }

    /// Appends the guest-visible state: PM1_STS, PM1_EN, PM1_CNT (ACPI 6.5 §4.8.3.1,
    /// §4.8.3.2), the reset register's stored bits (§4.8.3.6) and the power-off or reset
    /// request not yet taken by the VMM. Skipped: the unsupported-sleep counter (a host
    /// statistic). There is no PM timer (FADT PM_TMR_LEN = 0), so nothing is timed.
    pub fn save_state(&self, e: &mut Enc) {
        e.u16(self.status)
            .u16(self.enable)
            .u16(self.control)
            .u8(self.reset_control);
        e.u8(match self.request {
            None => REQUEST_NONE,
            Some(PowerRequest::Off) => REQUEST_OFF,
            Some(PowerRequest::Reset) => REQUEST_RESET,
        });
    }

    /// Reads what [`AcpiPm::save_state`] wrote into this device (created with
    /// [`AcpiPm::new`]). `shift` is unused: nothing here keeps time. On error nothing changes
    /// and the message names the first bad field.
    pub fn load_state(&mut self, d: &mut Dec<'_>, shift: u64) -> Result<(), &'static str> {
        let _ = shift;
        let status = state::bits16(d, STS_IMPLEMENTED, "ACPI PM1_STS with unmodelled bits")?;
        let enable = state::bits16(d, EN_IMPLEMENTED, "ACPI PM1_EN with unmodelled bits")?;
        // SCI_EN reads 1 without being stored; SLP_EN and GBL_RLS are write-only.
        let control = state::bits16(d, CNT_STORED, "ACPI PM1_CNT with bits that do not stick")?;
        let reset_control = state::bits8(
            d,
            RST_STORED,
            "ACPI reset register with bits that do not stick",
        )?;
        let request = match state::u8(d)? {
            REQUEST_NONE => None,
            REQUEST_OFF => Some(PowerRequest::Off),
            REQUEST_RESET => Some(PowerRequest::Reset),
            _ => return Err("ACPI power request neither none, off nor reset"),
        };
        self.status = status;
        self.enable = enable;
        self.control = control;
        self.reset_control = reset_control;
        self.request = request;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write16(pm: &mut AcpiPm, port: u16, value: u16) {
        pm.write_port(port, value as u8);
        pm.write_port(port + 1, (value >> 8) as u8);
    }

    fn read16(pm: &AcpiPm, port: u16) -> u16 {
        u16::from(pm.read_port(port)) | (u16::from(pm.read_port(port + 1)) << 8)
    }

    #[test]
    fn reset_state_and_claims() {
        let pm = AcpiPm::new();
        assert_eq!(read16(&pm, 0x600), 0);
        assert_eq!(read16(&pm, 0x602), 0);
        assert_eq!(read16(&pm, 0x604), SCI_EN, "ACPI mode from the start");
        assert_eq!(pm.read_port(0xCF9), 0);
        assert!(!pm.sci_level());
        assert_eq!(pm.request(), None);
        for port in [0x600, 0x601, 0x602, 0x603, 0x604, 0x605, 0xCF9] {
            assert!(AcpiPm::claims(port), "{port:#x}");
        }
        for port in [0x5FF, 0x606, 0xCF8, 0xCFA] {
            assert!(!AcpiPm::claims(port), "{port:#x}");
        }
        assert_eq!(pm.read_port(0x606), 0xFF);
    }

    #[test]
    fn sci_en_cannot_be_cleared_and_write_only_bits_read_zero() {
        let mut pm = AcpiPm::new();
        write16(&mut pm, 0x604, 0);
        assert_eq!(read16(&pm, 0x604), SCI_EN);
        // BM_RLD and SLP_TYP stick; GBL_RLS (bit 2) and reserved bits do not.
        write16(&mut pm, 0x604, 0x0C06 | 0xC3F8);
        assert_eq!(read16(&pm, 0x604), 0x0C03);
        assert_eq!(pm.request(), None, "SLP_EN (bit 13) was not written");
    }

    #[test]
    fn s5_powers_off() {
        let mut pm = AcpiPm::new();
        // Linux's acpi_hw_legacy_sleep: SLP_TYP first, then SLP_TYP | SLP_EN.
        let typ = u16::from(SLP_TYP_S5) << 10;
        write16(&mut pm, 0x604, typ | SCI_EN);
        assert_eq!(pm.request(), None);
        write16(&mut pm, 0x604, typ | SLP_EN | SCI_EN);
        assert_eq!(pm.take_request(), Some(PowerRequest::Off));
        assert_eq!(pm.take_request(), None, "taken once");
        assert_eq!(read16(&pm, 0x604), typ | SCI_EN, "SLP_EN reads 0");
        // A single byte write to the high byte (0x605) works too: 0x34 = SLP_EN | S5 << 2.
        pm.write_port(0x605, 0x34);
        assert_eq!(pm.take_request(), Some(PowerRequest::Off));
        assert_eq!(pm.unsupported_sleeps(), 0);
    }

    #[test]
    fn other_sleep_types_wake_at_once() {
        let mut pm = AcpiPm::new();
        write16(&mut pm, 0x604, (3 << 10) | SLP_EN);
        assert_eq!(pm.take_request(), None);
        assert_eq!(pm.unsupported_sleeps(), 1);
        assert_eq!(read16(&pm, 0x600), WAK_STS);
        // Write-1-to-clear.
        write16(&mut pm, 0x600, WAK_STS);
        assert_eq!(read16(&pm, 0x600), 0);
    }

    #[test]
    fn power_button_status_enable_and_sci() {
        let mut pm = AcpiPm::new();
        pm.press_power_button();
        assert_eq!(read16(&pm, 0x600), PWRBTN_STS);
        assert!(!pm.sci_level(), "not enabled");
        // TMR_EN (0) and RTC_EN (10) do not stick; PWRBTN_EN and GBL_EN (5) do.
        write16(&mut pm, 0x602, 0xFFFF);
        assert_eq!(read16(&pm, 0x602), PWRBTN_EN | GBL_EN);
        assert!(pm.sci_level());
        // Writing 0 to a status bit does nothing; writing 1 clears it.
        write16(&mut pm, 0x600, 0);
        assert_eq!(read16(&pm, 0x600), PWRBTN_STS);
        pm.write_port(0x601, 0x01);
        assert_eq!(read16(&pm, 0x600), 0);
        assert!(!pm.sci_level());
        // The enable register's high byte alone: PWRBTN_EN goes, GBL_EN (low byte) stays.
        pm.write_port(0x603, 0);
        assert_eq!(read16(&pm, 0x602), GBL_EN);
    }

    #[test]
    fn reset_register() {
        let mut pm = AcpiPm::new();
        // Linux reboot=pci writes 0x02 (SYS_RST), then 0x06.
        pm.write_port(0xCF9, 0x02);
        assert_eq!(pm.request(), None);
        assert_eq!(pm.read_port(0xCF9), 0x02);
        pm.write_port(0xCF9, RESET_VALUE);
        assert_eq!(pm.take_request(), Some(PowerRequest::Reset));
        assert_eq!(pm.read_port(0xCF9), 0x02, "RST_CPU reads 0");
        pm.write_port(0xCF9, 0xF0);
        assert_eq!(pm.request(), None);
        assert_eq!(pm.read_port(0xCF9), 0);
    }

    #[test]
    fn every_byte_value_on_every_port_is_safe() {
        let mut pm = AcpiPm::new();
        for port in 0x5F0..0x610u16 {
            for v in 0..=255u8 {
                pm.write_port(port, v);
                let _ = pm.read_port(port);
            }
        }
        assert_eq!(read16(&pm, 0x604) & SCI_EN, SCI_EN);
        assert_eq!(read16(&pm, 0x600) & !STS_IMPLEMENTED, 0);
        assert_eq!(read16(&pm, 0x602) & !EN_IMPLEMENTED, 0);
    }
}
