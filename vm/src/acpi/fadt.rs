//! The FADT (ACPI 6.5 §5.2.9, Table 5.9) and FACS (§5.2.10) of a non-HW-reduced PC whose
//! fixed hardware is [`crate::devices::acpi_pm`].

use alloc::vec::Vec;

use acpi_tables::facs::FACS;
use acpi_tables::fadt::{FADTBuilder, Flags, PmProfile};
use acpi_tables::gas::{AccessSize, AddressSpace, GAS};
use acpi_tables::Aml;

use super::{OEM_ID, OEM_REVISION, OEM_TABLE_ID};
use crate::devices::acpi_pm;
use crate::devices::rtc::REG_CENTURY;

/// §5.2.9.3, Table 5.11, IA-PC Boot Architecture Flags.
mod boot_arch {
    /// Bit 0, LEGACY_DEVICES: ISA devices the OS cannot enumerate (COM1, PIT, RTC, PICs).
    pub const LEGACY_DEVICES: u16 = 1 << 0;
    /// Bit 1, 8042: left clear — Bulkhead has no i8042 keyboard controller.
    pub const I8042: u16 = 1 << 1;
    /// Bit 2, VGA Not Present: no VGA; the OS must not probe for one.
    pub const VGA_NOT_PRESENT: u16 = 1 << 2;
    /// Bit 3, MSI Not Supported: there is no PCI bus, so no MSI.
    pub const MSI_NOT_SUPPORTED: u16 = 1 << 3;
}

/// The IAPC_BOOT_ARCH value: legacy devices, no 8042, no VGA, no MSI (the CMOS RTC is
/// present: bit 5 clear).
pub const IAPC_BOOT_ARCH: u16 =
    boot_arch::LEGACY_DEVICES | boot_arch::VGA_NOT_PRESENT | boot_arch::MSI_NOT_SUPPORTED;
const _: () = assert!(IAPC_BOOT_ARCH & boot_arch::I8042 == 0);

/// §5.2.9 Table 5.9, P_LVL2_LAT: a value above 100 says C2 is not supported.
const C2_NOT_SUPPORTED: u16 = 101;
/// P_LVL3_LAT: a value above 1000 says C3 is not supported.
const C3_NOT_SUPPORTED: u16 = 1001;
/// HYPERVISOR_VENDOR_IDENTITY (FADT 6.0+): "Bulkhead" as a little-endian u64.
pub const HYPERVISOR_VENDOR: u64 = u64::from_le_bytes(*b"Bulkhead");
/// The FADT's major revision (§5.2.9: 6 for ACPI 6.x; the minor version is 5, ACPI 6.5).
pub const FADT_REVISION: u8 = 6;
/// §5.2.10, FACS structure: version 2.
const FACS_VERSION: u8 = 2;

/// A GAS (§5.2.3.2) for `len` bytes of I/O space at `port`, accessed `access` at a time.
fn io_gas(port: u16, len: u8, access: AccessSize) -> GAS {
    GAS::new(AddressSpace::SystemIo, 8 * len, 0, access, u64::from(port))
}

/// The FADT with the FACS at `facs` and the DSDT at `dsdt`.
pub fn build(facs: u32, dsdt: u32) -> Vec<u8> {
    let mut f = FADTBuilder::new(OEM_ID, OEM_TABLE_ID, OEM_REVISION)
        .preferred_pm_profile(PmProfile::Unspecified)
        // WBINVD works on every vCPU (FLUSH_SIZE/STRIDE then ignored); HLT is C1.
        .flag(Flags::Wbinvd)
        .flag(Flags::ProcC1)
        // PWR_BUTTON clear: the power button is the fixed-feature one of acpi_pm. No sleep
        // button (SLP_BUTTON set, and no control-method device), no RTC wake (FIX_RTC).
        .flag(Flags::SlpButton)
        .flag(Flags::FixRtc)
        .flag(Flags::ResetRegSup)
        .flag(Flags::Headless);
    f.major_version = FADT_REVISION;
    // Table 5.9: "If the X_FIRMWARE_CTRL field contains a non zero value [...]" — the FACS is
    // below 4 GiB, so FIRMWARE_CTRL holds it and X_FIRMWARE_CTRL stays 0, which the spec
    // requires when FIRMWARE_CTRL is non-zero. The DSDT is given in both fields (X_DSDT wins;
    // equal values avoid OSPM's 32/64-bit mismatch warning).
    f.firmware_ctrl = facs.into();
    f.x_firmware_ctrl = 0.into();
    f.dsdt = dsdt.into();
    f.x_dsdt = u64::from(dsdt).into();
    f.sci_int = u16::from(acpi_pm::SCI_IRQ).into();
    // SMI_CMD = 0: no SMM, no ACPI mode transition; ACPI_ENABLE/DISABLE are then 0 too.
    f.smi_cmd = 0.into();
    f.acpi_enable = 0;
    f.acpi_disable = 0;
    f.pm1a_evt_blk = u32::from(acpi_pm::PM1A_EVT_BLK).into();
    f.pm1a_cnt_blk = u32::from(acpi_pm::PM1A_CNT_BLK).into();
    f.pm1_evt_len = acpi_pm::PM1_EVT_LEN;
    f.pm1_cnt_len = acpi_pm::PM1_CNT_LEN;
    // No PM timer (PM_TMR_BLK = 0, PM_TMR_LEN = 0: optional since ACPI 5.0), no GPE blocks,
    // no PM2 or PM1b blocks.
    f.pm_tmr_blk = 0.into();
    f.pm_tmr_len = 0;
    f.p_lvl2_lat = C2_NOT_SUPPORTED.into();
    f.p_lvl3_lat = C3_NOT_SUPPORTED.into();
    f.century = REG_CENTURY;
    f.iapc_boot_arch = IAPC_BOOT_ARCH.into();
    f.reset_reg = io_gas(acpi_pm::RESET_PORT, 1, AccessSize::ByteAccess);
    f.reset_value = acpi_pm::RESET_VALUE;
    f.x_pm1a_evt_blk = io_gas(
        acpi_pm::PM1A_EVT_BLK,
        acpi_pm::PM1_EVT_LEN,
        AccessSize::WordAccess,
    );
    f.x_pm1a_cnt_blk = io_gas(
        acpi_pm::PM1A_CNT_BLK,
        acpi_pm::PM1_CNT_LEN,
        AccessSize::WordAccess,
    );
    f.hypervisor_vendor_identity = HYPERVISOR_VENDOR.into();
    let mut out = Vec::new();
    f.finalize().to_aml_bytes(&mut out);
    out
}

/// The FACS: no hardware signature, no waking vector, no global lock owner, version 2.
pub fn facs() -> Vec<u8> {
    let mut facs = FACS::new();
    facs.version = FACS_VERSION;
    let mut out = Vec::new();
    facs.to_aml_bytes(&mut out);
    out
}
