//! Instruction wrappers: CPUID (counted, for the EXIT_STATS check), MSRs with `#GP`
//! reporting, port I/O, MMIO, TSC, control registers.

use crate::probe;
use crate::trap::Fault;
use core::arch::asm;
use core::sync::atomic::{AtomicU64, Ordering};

static CPUIDS: AtomicU64 = AtomicU64::new(0);

/// CPUID result registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuidResult {
    pub eax: u32,
    pub ebx: u32,
    pub ecx: u32,
    pub edx: u32,
}

/// Executes CPUID with EAX = `leaf`, ECX = `subleaf` (each call is counted: [`cpuid_count`]).
pub fn cpuid(leaf: u32, subleaf: u32) -> CpuidResult {
    CPUIDS.fetch_add(1, Ordering::Relaxed);
    let (eax, ebx, ecx, edx);
    // SAFETY: CPUID has no side effects on memory; RBX (reserved by LLVM) is saved in a
    // scratch register and restored.
    unsafe {
        asm!(
            "mov {save:r}, rbx",
            "cpuid",
            "xchg {save:r}, rbx",
            save = out(reg) ebx,
            inout("eax") leaf => eax,
            inout("ecx") subleaf => ecx,
            out("edx") edx,
            options(nostack, preserves_flags, nomem),
        );
    }
    CpuidResult { eax, ebx, ecx, edx }
}

/// How many CPUIDs [`cpuid`] has executed.
pub fn cpuid_count() -> u64 {
    CPUIDS.load(Ordering::Relaxed)
}

/// RDMSR; `Err` with the exception (expected: `#GP`) if it faulted.
pub fn rdmsr(msr: u32) -> Result<u64, Fault> {
    let (lo, hi): (u32, u32);
    // SAFETY: reading an MSR has no memory effects; a fault is caught by the probe.
    let fault =
        unsafe { probe!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi, options(nostack)) };
    match fault {
        Some(f) => Err(f),
        None => Ok(u64::from(hi) << 32 | u64::from(lo)),
    }
}

/// WRMSR; `Err` with the exception if it faulted.
///
/// # Safety
/// The MSR write must not break the guest (e.g. EFER, GS_BASE in use).
pub unsafe fn wrmsr(msr: u32, value: u64) -> Result<(), Fault> {
    // SAFETY: the caller vouches for the write's effect; a fault is caught by the probe.
    let fault = unsafe {
        probe!(
            "wrmsr",
            in("ecx") msr,
            in("eax") value as u32,
            in("edx") (value >> 32) as u32,
            options(nostack)
        )
    };
    fault.map_or(Ok(()), Err)
}

pub fn inb(port: u16) -> u8 {
    let v: u8;
    // SAFETY: port input has no memory effects; the guest's ports are all virtual.
    unsafe {
        asm!("in al, dx", in("dx") port, out("al") v, options(nomem, nostack, preserves_flags))
    };
    v
}

pub fn inl(port: u16) -> u32 {
    let v: u32;
    // SAFETY: as for `inb`.
    unsafe {
        asm!("in eax, dx", in("dx") port, out("eax") v, options(nomem, nostack, preserves_flags))
    };
    v
}

pub fn outb(port: u16, v: u8) {
    // SAFETY: port output has no memory effects visible to Rust; the ports are virtual.
    unsafe {
        asm!("out dx, al", in("dx") port, in("al") v, options(nomem, nostack, preserves_flags))
    };
}

/// 32-bit MMIO read (volatile) of guest-physical `gpa`.
///
/// # Safety
/// `gpa` must be mapped (RAM or an MMIO region), or the hypervisor stops the VM.
pub unsafe fn mmio_read32(gpa: u64) -> u32 {
    // SAFETY: identity-mapped; the caller vouches that `gpa` is mapped.
    unsafe { core::ptr::read_volatile(gpa as *const u32) }
}

/// 32-bit MMIO write (volatile) to guest-physical `gpa`.
///
/// # Safety
/// As for [`mmio_read32`], and the write must be harmless.
pub unsafe fn mmio_write32(gpa: u64, v: u32) {
    // SAFETY: identity-mapped; the caller vouches for the write.
    unsafe { core::ptr::write_volatile(gpa as *mut u32, v) }
}

pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC only reads the time-stamp counter (CR4.TSD is clear at CPL 0 anyway).
    unsafe { core::arch::x86_64::_rdtsc() }
}

pub fn read_cr0() -> u64 {
    let v: u64;
    // SAFETY: reading CR0 at CPL 0 has no side effects.
    unsafe { asm!("mov {}, cr0", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

pub fn read_cr4() -> u64 {
    let v: u64;
    // SAFETY: reading CR4 at CPL 0 has no side effects.
    unsafe { asm!("mov {}, cr4", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

pub fn read_cr3() -> u64 {
    let v: u64;
    // SAFETY: reading CR3 at CPL 0 has no side effects.
    unsafe { asm!("mov {}, cr3", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// MOV to CR4; `Err` with the exception if it faulted.
///
/// # Safety
/// The new CR4 must keep the guest running (PAE on, ...).
pub unsafe fn write_cr4(v: u64) -> Result<(), Fault> {
    // SAFETY: the caller vouches for the value; a fault is caught by the probe.
    let fault = unsafe { probe!("mov cr4, {v}", v = in(reg) v, options(nostack)) };
    fault.map_or(Ok(()), Err)
}

pub const CR0_PE: u64 = 1 << 0;
pub const CR0_PG: u64 = 1 << 31;
pub const CR4_PAE: u64 = 1 << 5;
pub const CR4_VMXE: u64 = 1 << 13;

pub const IA32_FEATURE_CONTROL: u32 = 0x3A;
pub const IA32_VMX_BASIC: u32 = 0x480;
pub const IA32_VMX_LAST: u32 = 0x491;
pub const IA32_LSTAR: u32 = 0xC000_0082;
pub const IA32_KERNEL_GS_BASE: u32 = 0xC000_0102;
pub const IA32_TSC_AUX: u32 = 0xC000_0103;
