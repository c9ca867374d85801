//! Entering and leaving VMX root operation on this CPU (SDM Vol. 3C §24.7-24.8).

use crate::{arch, memory};
use core::fmt;
use vmx::caps::Capabilities;
use vmx::error::VmFail;
use vmx::instructions;

/// CR4.VMXE: VMX enable (SDM Vol. 3A §2.5).
const CR4_VMXE: u64 = 1 << 13;

/// Why VMXON failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VmxOnError {
    /// No frame for the VMXON region.
    OutOfMemory,
    /// The VMCS region size is larger than the 4 KiB frames Bulkhead uses.
    RegionTooLarge(usize),
    /// VMXON itself failed (SDM Vol. 3C §31.3, VMXON).
    Vmxon(VmFail),
}

impl fmt::Display for VmxOnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VmxOnError::OutOfMemory => write!(f, "no memory for the VMXON region"),
            VmxOnError::RegionTooLarge(n) => write!(
                f,
                "the CPU asks for a {n}-byte VMXON region; Bulkhead supports 4096"
            ),
            VmxOnError::Vmxon(e) => write!(
                f,
                "VMXON failed: {e} (is VMX already in use by firmware or another hypervisor?)"
            ),
        }
    }
}

/// This CPU in VMX root operation. Leave it with [`VmxRoot::leave`].
#[derive(Debug)]
pub struct VmxRoot {
    region: u64,
    saved_cr0: u64,
    saved_cr4: u64,
}

/// Enters VMX root operation: applies the CR0/CR4 fixed bits (SDM Vol. 3D A.7, A.8), sets
/// CR4.VMXE, writes the revision identifier into a fresh 4 KiB VMXON region (SDM Vol. 3C
/// §25.11.5) and executes VMXON. IA32_FEATURE_CONTROL must already allow VMX outside SMX.
pub fn enter(caps: &Capabilities) -> Result<VmxRoot, VmxOnError> {
    if caps.vmcs_region_size() > memory::FRAME_SIZE as usize {
        return Err(VmxOnError::RegionTooLarge(caps.vmcs_region_size()));
    }
    let region = memory::allocate_frame().ok_or(VmxOnError::OutOfMemory)?;
    // SDM Vol. 3C §25.11.5: bits 30:0 of the first word hold the VMCS revision identifier,
    // bit 31 is clear.
    let revision = caps.revision_id() & 0x7fff_ffff;
    // SAFETY: the frame was just allocated for this purpose and is mapped by the direct map.
    unsafe { memory::phys_to_virt(region).cast::<u32>().write(revision) };

    let (saved_cr0, saved_cr4) = (arch::read_cr0(), arch::read_cr4());
    // SAFETY: the fixed bits VMX demands (PE, NE, PG in CR0; VMXE in CR4) are compatible with
    // the running 64-bit kernel: PE and PG are already set, NE only selects native x87 error
    // reporting, and VMXE only permits VMXON.
    unsafe {
        arch::write_cr0(caps.adjust_host_cr0(saved_cr0));
        arch::write_cr4(caps.adjust_host_cr4(saved_cr4) | CR4_VMXE);
    }
    // SAFETY: CR0/CR4 satisfy the fixed-bit rules, FEATURE_CONTROL allows VMXON (checked by
    // the platform report), and the region is a 4 KiB-aligned frame holding the revision id.
    match unsafe { instructions::vmxon(region) } {
        Ok(()) => Ok(VmxRoot {
            region,
            saved_cr0,
            saved_cr4,
        }),
        Err(e) => {
            // SAFETY: restoring the values read above; the region was never used by the CPU.
            unsafe {
                arch::write_cr4(saved_cr4);
                arch::write_cr0(saved_cr0);
                memory::free_frame(region);
            }
            Err(VmxOnError::Vmxon(e))
        }
    }
}

impl VmxRoot {
    /// The physical address of the VMXON region.
    pub fn region(&self) -> u64 {
        self.region
    }

    /// Executes VMXOFF, restores CR0/CR4 and frees the VMXON region.
    pub fn leave(self) -> Result<(), VmFail> {
        // SAFETY: this CPU is in VMX root operation (we own the VmxRoot) with no current
        // guest running.
        unsafe { instructions::vmxoff() }?;
        // SAFETY: back out of VMX operation; the saved values are the kernel's own and the
        // VMXON region is no longer referenced by the CPU.
        unsafe {
            arch::write_cr4(self.saved_cr4);
            arch::write_cr0(self.saved_cr0);
            memory::free_frame(self.region);
        }
        Ok(())
    }
}
