//! How a run ends: a documented exit status on the serial console, then the emulator is told
//! to stop (QEMU's isa-debug-exit device, Bochs's shutdown port), or the CPU halts on real
//! hardware. The status table is documented in docs/exit-status.md; the host runner parses the
//! `bulkhead: exit status N (name)` line.

use crate::arch;

/// The kernel's exit statuses (docs/exit-status.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ExitStatus {
    /// The run completed as asked.
    Ok = 0,
    /// A hypervisor bug: panic or unexpected CPU exception.
    HypervisorFailure = 1,
    /// The CPU is not an Intel CPU.
    NotIntel = 16,
    /// CPUID.1:ECX.VMX is 0: VT-x not offered (or hidden by the hypervisor below us).
    NoVmx = 17,
    /// IA32_FEATURE_CONTROL is locked with VMX disabled by the firmware.
    VmxDisabledByFirmware = 18,
    /// VT-x lacks a feature Bulkhead requires (EPT, unrestricted guest, ...).
    VmxFeatureMissing = 19,
    /// The boot archive or its configuration is malformed, or a VM could not be created.
    BadConfiguration = 32,
}

impl ExitStatus {
    /// The stable name printed next to the number.
    pub fn name(self) -> &'static str {
        match self {
            ExitStatus::Ok => "ok",
            ExitStatus::HypervisorFailure => "hypervisor-failure",
            ExitStatus::NotIntel => "not-intel",
            ExitStatus::NoVmx => "no-vmx",
            ExitStatus::VmxDisabledByFirmware => "vmx-disabled-by-firmware",
            ExitStatus::VmxFeatureMissing => "vmx-feature-missing",
            ExitStatus::BadConfiguration => "bad-configuration",
        }
    }
}

/// QEMU's `isa-debug-exit` device (the runner adds it at this port): a write of V ends QEMU
/// with status (V << 1) | 1.
const QEMU_DEBUG_EXIT_PORT: u16 = 0xf4;
/// Bochs's port 0xE9 hack reads back 0xE9 when enabled.
const BOCHS_E9_PORT: u16 = 0xe9;
/// Bochs ends the simulation when "Shutdown" is written to this port byte by byte.
const BOCHS_SHUTDOWN_PORT: u16 = 0x8900;

/// The machine the kernel runs on, as far as ending a run goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    Qemu,
    Bochs,
    Hardware,
}

impl Platform {
    pub fn name(self) -> &'static str {
        match self {
            Platform::Qemu => "QEMU",
            Platform::Bochs => "Bochs",
            Platform::Hardware => "hardware (or an unknown hypervisor)",
        }
    }
}

/// Detects QEMU (TCG or KVM) by its CPUID hypervisor signature and Bochs by its 0xE9 port.
pub fn platform() -> Platform {
    const HYPERVISOR_BIT: u32 = 1 << 31; // CPUID.1:ECX[31]
    const HYPERVISOR_LEAF: u32 = 0x4000_0000;
    if arch::cpuid(1, 0)[2] & HYPERVISOR_BIT != 0 {
        let [_, b, c, d] = arch::cpuid(HYPERVISOR_LEAF, 0);
        let mut sig = [0u8; 12];
        sig[0..4].copy_from_slice(&b.to_le_bytes());
        sig[4..8].copy_from_slice(&c.to_le_bytes());
        sig[8..12].copy_from_slice(&d.to_le_bytes());
        if &sig == b"TCGTCGTCGTCG" || sig.starts_with(b"KVMKVMKVM") {
            return Platform::Qemu;
        }
    }
    // SAFETY: reading port 0xE9 has no effect: Bochs's port-E9 hack answers 0xE9, other
    // machines float the bus (0xFF) or have nothing there.
    if unsafe { arch::inb(BOCHS_E9_PORT) } == 0xe9 {
        return Platform::Bochs;
    }
    Platform::Hardware
}

/// Prints the exit line, drains the UART and stops the machine.
pub fn exit(status: ExitStatus) -> ! {
    crate::serial::print_emergency(format_args!(
        "bulkhead: exit status {} ({})\n",
        status as u8,
        status.name()
    ));
    crate::serial::drain();
    match platform() {
        // SAFETY: on QEMU the runner attaches isa-debug-exit at this port; without it the
        // write goes to an unclaimed port and is ignored.
        Platform::Qemu => unsafe { arch::outl(QEMU_DEBUG_EXIT_PORT, u32::from(status as u8)) },
        Platform::Bochs => {
            for b in b"Shutdown" {
                // SAFETY: Bochs's shutdown port; writing it only ends the simulation.
                unsafe { arch::outb(BOCHS_SHUTDOWN_PORT, *b) };
            }
        }
        Platform::Hardware => {
            crate::serial::print_emergency(format_args!(
                "bulkhead: halted; power the machine off\n"
            ));
            crate::serial::drain();
        }
    }
    arch::halt_forever()
}
