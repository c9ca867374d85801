//! One VMCS per vCPU: its region, VMCLEAR/VMPTRLD, and typed field access that names the
//! field when an instruction fails.

use crate::memory;
use core::fmt;
use vmx::caps::Capabilities;
use vmx::error::VmFail;
use vmx::fields::VmcsField;
use vmx::instructions;

/// A VMX instruction failed on a named field or region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VmcsError {
    OutOfMemory,
    Clear(VmFail),
    Load(VmFail),
    Write { field: VmcsField, error: VmFail },
    Read { field: VmcsField, error: VmFail },
}

impl fmt::Display for VmcsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VmcsError::OutOfMemory => write!(f, "no memory for a VMCS"),
            VmcsError::Clear(e) => write!(f, "VMCLEAR failed: {e}"),
            VmcsError::Load(e) => write!(f, "VMPTRLD failed: {e}"),
            VmcsError::Write { field, error } => {
                write!(f, "VMWRITE {} failed: {error}", field.name())
            }
            VmcsError::Read { field, error } => {
                write!(f, "VMREAD {} failed: {error}", field.name())
            }
        }
    }
}

/// A VMCS region (SDM Vol. 3C §25.2): one 4 KiB frame with the revision identifier.
#[derive(Debug)]
pub struct Vmcs {
    frame: u64,
}

impl Vmcs {
    /// Allocates and VMCLEARs a VMCS (SDM Vol. 3C §25.11.3: VMCLEAR initialises the launch
    /// state to "clear").
    pub fn new(caps: &Capabilities) -> Result<Self, VmcsError> {
        let frame = memory::allocate_frame().ok_or(VmcsError::OutOfMemory)?;
        // SDM Vol. 3C §25.2: bits 30:0 of the first word hold the revision identifier.
        // SAFETY: the frame was just allocated and is mapped by the direct map.
        unsafe {
            memory::phys_to_virt(frame)
                .cast::<u32>()
                .write(caps.revision_id() & 0x7fff_ffff)
        };
        // SAFETY: in VMX root operation (the caller entered it); the frame is a fresh VMCS region.
        unsafe { instructions::vmclear(frame) }.map_err(VmcsError::Clear)?;
        Ok(Vmcs { frame })
    }

    /// Makes this VMCS current on this CPU.
    pub fn load(&self) -> Result<(), VmcsError> {
        // SAFETY: the region is a VMCS initialised by `new`; VMX root operation is active.
        unsafe { instructions::vmptrld(self.frame) }.map_err(VmcsError::Load)
    }
}

/// Writes a field of the current VMCS.
pub fn write(field: VmcsField, value: u64) -> Result<(), VmcsError> {
    // SAFETY: VMWRITE only changes the current VMCS; values that refer to memory (bitmaps,
    // EPTP, host state) are constructed by this module's callers from frames they own.
    unsafe { instructions::vmwrite(field, value) }
        .map_err(|error| VmcsError::Write { field, error })
}

/// Reads a field of the current VMCS.
pub fn read(field: VmcsField) -> Result<u64, VmcsError> {
    // SAFETY: VMREAD has no side effects besides RFLAGS.
    unsafe { instructions::vmread(field) }.map_err(|error| VmcsError::Read { field, error })
}

/// Reads a field the CPU always provides after a VM exit; a failure is a hypervisor bug
/// (no current VMCS), so it reads as 0 and is logged rather than stopping the VM.
pub fn read_exit(field: VmcsField) -> u64 {
    match read(field) {
        Ok(v) => v,
        Err(e) => {
            log::error!("vmcs: {e}");
            0
        }
    }
}

/// Prints every readable field of the current VMCS (after a failed VM entry, so the failed
/// check can be found against SDM Vol. 3C §27.2-27.3). Fields this CPU does not support
/// fail VMREAD and are skipped.
pub fn dump(vm: &str) {
    log::error!("vm {vm}: VMCS dump (fields this CPU lacks are omitted):");
    let mut line = alloc::string::String::new();
    let mut n = 0;
    for field in VmcsField::ALL {
        if let Ok(value) = read(*field) {
            use core::fmt::Write;
            let _ = write!(line, " {}={value:#x}", field.name());
            n += 1;
            if n % 4 == 0 {
                log::error!("vm {vm}: vmcs{line}");
                line.clear();
            }
        }
    }
    if !line.is_empty() {
        log::error!("vm {vm}: vmcs{line}");
    }
}
