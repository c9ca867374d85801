//! Per-CPU state: one block per physical CPU, found through the GS base (IA32_GS_BASE, SDM
//! Vol. 3A §3.4.4.1; Bulkhead never runs with a guest's GS base: the VMCS host-state area
//! restores this one on every VM exit, §28.5.1).

use crate::arch;
use core::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering};
use vmx::msr::Msr;

/// One CPU's own state. Only that CPU writes it after start-up; other CPUs read the atomics.
#[derive(Debug)]
pub struct PerCpu {
    /// Bulkhead's CPU number (0 = the boot CPU; the order of the ACPI MADT).
    index: AtomicUsize,
    tss_selector: AtomicU16,
    tss_base: AtomicU64,
}

impl PerCpu {
    const fn new() -> Self {
        PerCpu {
            index: AtomicUsize::new(0),
            tss_selector: AtomicU16::new(0),
            tss_base: AtomicU64::new(0),
        }
    }

    /// Bulkhead's number of this CPU (crate::smp::cpus index).
    pub fn index(&self) -> usize {
        self.index.load(Ordering::Relaxed)
    }
}

/// The boot CPU's block (static: it is needed before the heap exists).
static BOOT_CPU: PerCpu = PerCpu::new();

/// Makes `block` this CPU's per-CPU block.
fn install(block: &'static PerCpu, index: usize) {
    block.index.store(index, Ordering::Relaxed);
    // SAFETY: IA32_GS_BASE exists in 64-bit mode; the kernel reads it back (`current`) and
    // addresses nothing through GS.
    unsafe { arch::wrmsr(Msr::IA32_GS_BASE, block as *const PerCpu as u64) };
}

/// Installs the boot CPU's block (first thing in `kernel_main`).
pub fn init_boot_cpu() {
    install(&BOOT_CPU, 0);
}

/// Installs a new block for application processor `index` (heap-allocated, lives forever).
pub fn init_ap(index: usize) {
    let block: &'static PerCpu = alloc::boxed::Box::leak(alloc::boxed::Box::new(PerCpu::new()));
    install(block, index);
}

/// This CPU's block.
pub fn current() -> &'static PerCpu {
    // SAFETY: IA32_GS_BASE exists in 64-bit mode.
    let p = unsafe { arch::rdmsr(Msr::IA32_GS_BASE) };
    if p == 0 {
        // Before `init_boot_cpu` (no GS base yet): only the boot CPU runs then.
        return &BOOT_CPU;
    }
    // SAFETY: a non-zero GS base is the block `install` gave this CPU, which lives forever.
    unsafe { &*(p as *const PerCpu) }
}

/// Records this CPU's TSS (selector and base) for the VMCS host-state area.
pub fn set_tss(selector: u16, base: u64) {
    let c = current();
    c.tss_selector.store(selector, Ordering::Relaxed);
    c.tss_base.store(base, Ordering::Relaxed);
}

/// This CPU's TSS selector and base.
pub fn tss() -> (u16, u64) {
    let c = current();
    (
        c.tss_selector.load(Ordering::Relaxed),
        c.tss_base.load(Ordering::Relaxed),
    )
}
