//! Emulated legacy PC port-I/O devices and the [`LegacyPlatform`] that owns them.
//!
//! Each device cites its datasheet: Intel 8259A ([`pic`]), Intel 8254 ([`pit`]), Motorola
//! MC146818A ([`rtc`]), National Semiconductor PC16550D ([`uart`]); [`dma_page`] is the PC/AT
//! DMA page-register file with the port-0x80 I/O-delay sink. [`ioapic`] is the Intel 82093AA
//! I/O APIC (MMIO), [`acpi_pm`] the ACPI PM1 event/control blocks and reset register.
//!
//! Snapshots (issue 18): every device has `save_state(&self, &mut Enc)`, appending its
//! guest-visible state as a fixed sequence of fields (`vm::snapshot::codec`), and
//! `load_state(&mut self, &mut Dec, shift)`, reading them back into a device created the
//! normal way with the same configuration. `shift` is added to every stored host-TSC value,
//! so timers go on as if the VM had been paused. A refused load names the first bad field
//! and leaves the device unchanged; every value is checked, since a snapshot file is
//! untrusted input. [`LegacyPlatform::save_state`] composes them.

pub mod acpi_pm;
pub mod dma_page;
pub mod ioapic;
pub mod irq_lines;
pub mod legacy;
pub mod pic;
pub mod pit;
pub mod rtc;
pub mod uart;

#[cfg(test)]
mod state_tests;

pub use acpi_pm::AcpiPm;
pub use dma_page::DmaPages;
pub use ioapic::IoApic;
pub use irq_lines::IrqLines;
pub use legacy::{LegacyPlatform, PlatformConfig};
pub use pic::Pic;
pub use pit::Pit;
pub use rtc::Rtc;
pub use uart::Uart;

/// Host TSC ticks from `then` to `now`, modulo 2^64: a restored timestamp has had the
/// restore's shift added with wrapping (`load_state`), so a counter started before a host
/// reboot sits just below 2^64 on the new host. A `now` before `then` (by less than 2^63
/// ticks, about 97 years at 3 GHz) counts as no time.
fn tsc_elapsed(now: u64, then: u64) -> u64 {
    let d = now.wrapping_sub(then);
    if d > i64::MAX as u64 {
        0
    } else {
        d
    }
}

/// Field helpers the devices' `load_state`/`save_state` share.
mod state {
    use crate::snapshot::codec::{Dec, Enc};

    /// Why a load stops when the input runs out inside a field.
    pub const ENDS_EARLY: &str = "the section ends early";

    /// Why [`LegacyPlatform::load_section`](super::LegacyPlatform::load_section) refuses
    /// input that goes on after the last field.
    pub const TRAILING: &str = "bytes after the last field";

    pub fn u8(d: &mut Dec<'_>) -> Result<u8, &'static str> {
        d.u8().ok_or(ENDS_EARLY)
    }

    pub fn u16(d: &mut Dec<'_>) -> Result<u16, &'static str> {
        d.u16().ok_or(ENDS_EARLY)
    }

    pub fn u32(d: &mut Dec<'_>) -> Result<u32, &'static str> {
        d.u32().ok_or(ENDS_EARLY)
    }

    pub fn u64(d: &mut Dec<'_>) -> Result<u64, &'static str> {
        d.u64().ok_or(ENDS_EARLY)
    }

    /// The next `N` bytes as an array.
    pub fn array<const N: usize>(d: &mut Dec<'_>) -> Result<[u8; N], &'static str> {
        let raw = d.raw(N).ok_or(ENDS_EARLY)?;
        raw.try_into().map_err(|_| ENDS_EARLY)
    }

    /// A flag stored as one byte, 0 or 1; `bad` otherwise.
    pub fn flag(d: &mut Dec<'_>, bad: &'static str) -> Result<bool, &'static str> {
        match u8(d)? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(bad),
        }
    }

    pub fn put_flag(e: &mut Enc, v: bool) {
        e.u8(u8::from(v));
    }

    /// A byte that may only have the bits of `allowed` set; `bad` otherwise.
    pub fn bits8(d: &mut Dec<'_>, allowed: u8, bad: &'static str) -> Result<u8, &'static str> {
        let v = u8(d)?;
        if v & !allowed == 0 {
            Ok(v)
        } else {
            Err(bad)
        }
    }

    /// A 16-bit value that may only have the bits of `allowed` set; `bad` otherwise.
    pub fn bits16(d: &mut Dec<'_>, allowed: u16, bad: &'static str) -> Result<u16, &'static str> {
        let v = u16(d)?;
        if v & !allowed == 0 {
            Ok(v)
        } else {
            Err(bad)
        }
    }

    /// An optional value: a presence flag (`bad` if neither 0 nor 1), then the value if
    /// present, read by `read`.
    pub fn option<T>(
        d: &mut Dec<'_>,
        bad: &'static str,
        read: impl FnOnce(&mut Dec<'_>) -> Result<T, &'static str>,
    ) -> Result<Option<T>, &'static str> {
        if flag(d, bad)? {
            read(d).map(Some)
        } else {
            Ok(None)
        }
    }

    /// Writes an optional value as [`option`] reads it.
    pub fn put_option<T>(e: &mut Enc, v: Option<T>, write: impl FnOnce(&mut Enc, T)) {
        put_flag(e, v.is_some());
        if let Some(v) = v {
            write(e, v);
        }
    }
}
