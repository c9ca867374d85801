//! Shared code of the hostile guests (`src/bin/*.rs`, one attack each): guarded memory
//! accesses that announce themselves, and page-table surgery to reach GPAs above the 4 GiB
//! the hypervisor identity-maps.
//!
//! The integration tests judge these guests by the **hypervisor's** report (the VM stopped,
//! and why); the guest only announces each access (`attempt ...`) and, should an access
//! wrongly complete, prints `FAIL <check>: survived ...` so the transcript shows it.

#![no_std]

use guest_rt::{cpu, report, say};

/// Announces and performs a 64-bit read of `gpa` (identity-mapped); returns the value read
/// if the hypervisor let it through (the caller then reports the failure).
///
/// # Safety
/// `gpa` must be mapped in the guest's page tables; the read is expected to stop the VM.
pub unsafe fn attempt_read(gpa: u64) -> u64 {
    say!("attempt read gpa={gpa:#x}");
    // SAFETY: the caller vouches that the address is mapped by the guest's page tables; the
    // hypervisor is expected to stop the VM here.
    unsafe { core::ptr::read_volatile(gpa as *const u64) }
}

/// Announces and performs a 64-bit write of `value` to `gpa`.
///
/// # Safety
/// As for [`attempt_read`]; the write must not hit memory the guest uses.
pub unsafe fn attempt_write(gpa: u64, value: u64) {
    say!("attempt write gpa={gpa:#x}");
    // SAFETY: as for `attempt_read`.
    unsafe { core::ptr::write_volatile(gpa as *mut u64, value) }
}

/// Reports that an access which must stop the VM completed.
pub fn survived(check: &str, gpa: u64) {
    report::fail(
        check,
        format_args!("survived an access to gpa {gpa:#x} (the hypervisor must stop the VM)"),
    );
}

const ADDR_MASK: u64 = 0x000F_FFFF_FFFF_F000;
const P_RW: u64 = 0x3;
const PS: u64 = 0x80;
const GIB: u64 = 1 << 30;

#[repr(C, align(4096))]
struct Table([u64; 512]);

/// The page directory [`map_gib`] installs.
static mut HIGH_PD: Table = Table([0; 512]);

/// Maps the 1 GiB at `gpa` (1 GiB-aligned, below 512 GiB) identity with 2 MiB pages, through
/// `PDPT[gpa / 1 GiB]` (unused above 4 GiB by the hypervisor's tables), and flushes the TLB.
/// Each call replaces the previous mapping made by this function.
///
/// # Safety
/// Changes the live page tables; `gpa` must be ≥ 4 GiB so nothing in use is remapped.
pub unsafe fn map_gib(gpa: u64) {
    assert!(gpa.is_multiple_of(GIB) && (4 * GIB..512 * GIB).contains(&gpa));
    static mut LAST: usize = 0;
    let pml4 = (cpu::read_cr3() & ADDR_MASK) as *mut u64;
    // SAFETY: the hypervisor's page tables lie in guest RAM below 1 MiB, identity-mapped;
    // PML4[0] covers 0..512 GiB. We run alone (one vCPU, interrupts off). HIGH_PD is only used
    // here.
    unsafe {
        let pdpt = (pml4.read_volatile() & ADDR_MASK) as *mut u64;
        let pd = core::ptr::addr_of_mut!(HIGH_PD.0) as *mut u64;
        let last = LAST;
        if last != 0 {
            pdpt.add(last).write_volatile(0);
        }
        for i in 0..512 {
            pd.add(i)
                .write_volatile((gpa + (i as u64) * (2 << 20)) | P_RW | PS);
        }
        let slot = (gpa / GIB) as usize;
        pdpt.add(slot).write_volatile(pd as u64 | P_RW);
        LAST = slot;
        // Reloading CR3 flushes every non-global translation.
        core::arch::asm!("mov {t}, cr3", "mov cr3, {t}", t = out(reg) _, options(nostack));
    }
}
