//! The host's local APIC (SDM Vol. 3A ch. 11 "Advanced Programmable Interrupt Controller"):
//! x2APIC through MSRs when the CPU has it (§11.12), xAPIC through its MMIO page otherwise.
//! Bulkhead uses it for inter-processor interrupts (INIT/SIPI to start the other CPUs, a
//! fixed vector to wake or kick a CPU), its EOI, and each CPU's own ID.

use crate::arch;
use core::sync::atomic::{AtomicU64, Ordering};
use raw_cpuid::CpuId;
use vmx::msr::Msr;

/// IA32_APIC_BASE bits (SDM Vol. 3A §11.4.4): global enable, x2APIC mode, base address.
const APIC_GLOBAL_ENABLE: u64 = 1 << 11;
const APIC_X2APIC_MODE: u64 = 1 << 10;
const APIC_BASE_MASK: u64 = 0x000f_ffff_ffff_f000;

/// xAPIC register offsets (SDM Vol. 3A §11.4.1 Table 11-1); the x2APIC MSR of a register is
/// 0x800 + offset / 16 (§11.12.1.2 Table 11-6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
enum Reg {
    Id = 0x20,
    Eoi = 0xb0,
    SpuriousVector = 0xf0,
    ErrorStatus = 0x280,
    IcrLow = 0x300,
    IcrHigh = 0x310,
    LvtTimer = 0x320,
}

impl Reg {
    fn x2apic_msr(self) -> u32 {
        0x800 + (self as u32 >> 4)
    }
}

/// SVR bit 8: APIC software enable (SDM Vol. 3A §11.9).
const SVR_ENABLE: u32 = 1 << 8;
/// The spurious-interrupt vector Bulkhead programs (its low 4 bits must be 1 on older CPUs).
pub const SPURIOUS_VECTOR: u8 = 0xff;
/// The vector of the IPI that wakes a halted CPU or makes a running one exit (a kick).
pub const KICK_VECTOR: u8 = 0xf0;
/// The vector of the local APIC timer that ends an idle CPU's sleep (idle.rs).
pub const IDLE_TIMER_VECTOR: u8 = 0xf1;
/// LVT timer mode bits 18:17 = 10b: TSC-deadline (SDM Vol. 3A §11.5.1 Figure 11-8,
/// §11.5.4.1).
const LVT_TIMER_TSC_DEADLINE: u32 = 0b10 << 17;

/// ICR fields (SDM Vol. 3A §11.6.1 Figure 11-12).
const ICR_DELIVERY_INIT: u32 = 0b101 << 8;
const ICR_DELIVERY_STARTUP: u32 = 0b110 << 8;
const ICR_DELIVERY_FIXED: u32 = 0;
const ICR_DELIVERY_PENDING: u32 = 1 << 12;
const ICR_LEVEL_ASSERT: u32 = 1 << 14;
const ICR_TRIGGER_LEVEL: u32 = 1 << 15;

/// The xAPIC page's virtual address (0 until [`init`]; unused in x2APIC mode).
static XAPIC_BASE: AtomicU64 = AtomicU64::new(0);

/// Why the local APIC cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LapicError {
    /// IA32_APIC_BASE has the APIC globally disabled (firmware choice).
    Disabled,
    /// The xAPIC page could not be mapped.
    Unmapped(u64),
}

impl core::fmt::Display for LapicError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            LapicError::Disabled => write!(
                f,
                "the local APIC is disabled in IA32_APIC_BASE; enable it in the firmware setup"
            ),
            LapicError::Unmapped(p) => {
                write!(f, "the xAPIC page at {p:#x} could not be mapped")
            }
        }
    }
}

/// The APIC mode in use on this CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    X2Apic,
    XApic,
}

fn mode() -> Mode {
    // SAFETY: IA32_APIC_BASE exists on every CPU with VMX (SDM Vol. 3A §11.4.4).
    let base = unsafe { arch::rdmsr(Msr::IA32_APIC_BASE) };
    if base & APIC_X2APIC_MODE != 0 {
        Mode::X2Apic
    } else {
        Mode::XApic
    }
}

fn read(reg: Reg) -> u32 {
    match mode() {
        // SAFETY: in x2APIC mode the register MSRs exist (SDM Vol. 3A §11.12.1.2).
        Mode::X2Apic => unsafe { arch::rdmsr(Msr(reg.x2apic_msr())) as u32 },
        Mode::XApic => {
            let base = XAPIC_BASE.load(Ordering::Relaxed);
            // SAFETY: `init` mapped the xAPIC page uncached at `base`; registers are 32-bit
            // aligned reads (SDM Vol. 3A §11.4.1).
            unsafe { ((base + reg as u64) as *const u32).read_volatile() }
        }
    }
}

/// # Safety
/// The write must be one the caller means: an ICR write sends an interrupt to other CPUs.
unsafe fn write(reg: Reg, value: u32) {
    match mode() {
        // SAFETY: in x2APIC mode the register MSRs exist; the caller chose the value.
        Mode::X2Apic => unsafe { arch::wrmsr(Msr(reg.x2apic_msr()), u64::from(value)) },
        Mode::XApic => {
            let base = XAPIC_BASE.load(Ordering::Relaxed);
            // SAFETY: as in `read`; the caller chose the value.
            unsafe { ((base + reg as u64) as *mut u32).write_volatile(value) }
        }
    }
}

/// Enables this CPU's local APIC: x2APIC mode when CPUID.1:ECX[21] says the CPU has it (the
/// mode every CPU then uses: the boot CPU decides), software-enabled with the spurious vector
/// (SDM Vol. 3A §11.4.3, §11.12.1). Returns the mode.
pub fn init() -> Result<Mode, LapicError> {
    // SAFETY: IA32_APIC_BASE exists on every CPU with VMX.
    let base = unsafe { arch::rdmsr(Msr::IA32_APIC_BASE) };
    if base & APIC_GLOBAL_ENABLE == 0 {
        return Err(LapicError::Disabled);
    }
    let x2 = CpuId::new()
        .get_feature_info()
        .is_some_and(|f| f.has_x2apic());
    if x2 {
        if base & APIC_X2APIC_MODE == 0 {
            // SDM Vol. 3A §11.12.1: xAPIC → x2APIC by setting EXTD with EN set.
            // SAFETY: the CPU has x2APIC; switching mode only changes how the APIC's
            // registers are reached, and nothing is in flight (interrupts are disabled).
            unsafe { arch::wrmsr(Msr::IA32_APIC_BASE, base | APIC_X2APIC_MODE) };
        }
    } else {
        let phys = base & APIC_BASE_MASK;
        let virt = crate::memory::map_mmio(phys).ok_or(LapicError::Unmapped(phys))?;
        XAPIC_BASE.store(virt as u64, Ordering::Relaxed);
    }
    // SAFETY: software-enables the APIC with a spurious vector the IDT handles (SDM Vol. 3A
    // §11.9); it changes nothing for the local interrupt sources, whose LVT entries stay as
    // they are.
    unsafe { write(Reg::SpuriousVector, SVR_ENABLE | u32::from(SPURIOUS_VECTOR)) };
    Ok(mode())
}

/// This CPU's APIC ID (x2APIC: 32 bits; xAPIC: bits 31:24 of the ID register, §11.4.6).
pub fn id() -> u32 {
    match mode() {
        Mode::X2Apic => read(Reg::Id),
        Mode::XApic => read(Reg::Id) >> 24,
    }
}

/// Ends the interrupt in service (SDM Vol. 3A §11.8.5, §11.12.1.2). Returns `false`, doing
/// nothing, when the APIC cannot be reached: globally disabled, or in xAPIC mode before
/// [`init`] mapped its page.
pub fn eoi() -> bool {
    // SAFETY: IA32_APIC_BASE exists on every CPU with VMX.
    let base = unsafe { arch::rdmsr(Msr::IA32_APIC_BASE) };
    if base & APIC_GLOBAL_ENABLE == 0
        || (mode() == Mode::XApic && XAPIC_BASE.load(Ordering::Relaxed) == 0)
    {
        return false;
    }
    // SAFETY: writing 0 to EOI ends the highest-priority interrupt in service, the one the
    // caller handled.
    unsafe { write(Reg::Eoi, 0) };
    true
}

/// Sends an IPI with the ICR low word `low` to APIC `dest` and waits (bounded) until the
/// xAPIC has sent it (x2APIC ICR writes have no delivery status: §11.12.9).
///
/// # Safety
/// The IPI's effect on the target is the caller's choice (INIT resets it).
unsafe fn send(dest: u32, low: u32) {
    match mode() {
        // SAFETY: the x2APIC ICR is one 64-bit MSR, destination in bits 63:32 (§11.12.9).
        Mode::X2Apic => unsafe {
            arch::wrmsr(
                Msr(Reg::IcrLow.x2apic_msr()),
                (u64::from(dest) << 32) | u64::from(low),
            )
        },
        Mode::XApic => {
            // SAFETY: the destination goes in ICR bits 63:56 and is written first; the low
            // word's write sends the IPI (§11.6.1).
            unsafe {
                write(Reg::IcrHigh, dest << 24);
                write(Reg::IcrLow, low);
            }
            for _ in 0..1_000_000 {
                if read(Reg::IcrLow) & ICR_DELIVERY_PENDING == 0 {
                    break;
                }
                core::hint::spin_loop();
            }
        }
    }
}

/// INIT IPI to `dest` (SDM Vol. 3A §9.4.4.1: the first step of INIT-SIPI-SIPI).
///
/// # Safety
/// The target CPU is reset: it must not be one Bulkhead uses.
pub unsafe fn send_init(dest: u32) {
    // SAFETY: the caller guarantees the target is an unused CPU.
    unsafe {
        send(
            dest,
            ICR_DELIVERY_INIT | ICR_LEVEL_ASSERT | ICR_TRIGGER_LEVEL,
        )
    };
}

/// Start-up IPI to `dest`: it starts in real mode at `page << 12` (§9.4.4.1, §11.6.1).
///
/// # Safety
/// The target must be waiting for a SIPI after an INIT, and `page` must hold start-up code.
pub unsafe fn send_startup(dest: u32, page: u8) {
    // SAFETY: the caller guarantees the target and the code.
    unsafe {
        send(
            dest,
            ICR_DELIVERY_STARTUP | ICR_LEVEL_ASSERT | u32::from(page),
        )
    };
}

/// The kick IPI ([`KICK_VECTOR`]) to `dest`: a halted CPU wakes, a CPU running a guest takes
/// an external-interrupt exit.
pub fn send_kick(dest: u32) {
    // SAFETY: a fixed IPI with a vector whose host handler only sends EOI; a CPU in a guest
    // takes it as an external-interrupt exit, whose handler also sends EOI.
    unsafe {
        send(
            dest,
            ICR_DELIVERY_FIXED | ICR_LEVEL_ASSERT | u32::from(KICK_VECTOR),
        )
    };
}

/// Whether the local APIC timer has TSC-deadline mode (CPUID.01H:ECX[24], SDM Vol. 3A
/// §11.5.4.1).
pub fn has_tsc_deadline() -> bool {
    arch::cpuid(1, 0)[2] & (1 << 24) != 0
}

/// Arms this CPU's local APIC timer to raise [`IDLE_TIMER_VECTOR`] when the TSC reaches
/// `deadline` (TSC-deadline mode: the LVT timer entry first, then IA32_TSC_DEADLINE, SDM Vol.
/// 3A §11.5.4.1; a deadline already past fires at once).
///
/// # Safety
/// The CPU must have TSC-deadline mode ([`has_tsc_deadline`]) and the IDT must handle the
/// vector (interrupts.rs).
pub unsafe fn arm_deadline(deadline: u64) {
    // SAFETY: the caller guarantees the mode exists; the vector's handler only sends EOI.
    unsafe {
        write(
            Reg::LvtTimer,
            LVT_TIMER_TSC_DEADLINE | u32::from(IDLE_TIMER_VECTOR),
        );
        arch::wrmsr(Msr::IA32_TSC_DEADLINE, deadline.max(1));
    }
}

/// Disarms the TSC-deadline timer (writing 0, SDM Vol. 3A §11.5.4.1).
///
/// # Safety
/// As for [`arm_deadline`].
pub unsafe fn disarm_deadline() {
    // SAFETY: the caller guarantees the MSR exists; 0 only disarms.
    unsafe { arch::wrmsr(Msr::IA32_TSC_DEADLINE, 0) };
}

/// Clears the error-status register (written before reading, §11.5.3).
pub fn clear_errors() -> u32 {
    // SAFETY: a write to ESR latches the errors into it; it has no other effect.
    unsafe { write(Reg::ErrorStatus, 0) };
    read(Reg::ErrorStatus)
}
