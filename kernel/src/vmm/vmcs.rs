//! One VMCS per vCPU: its region, VMCLEAR/VMPTRLD, and typed field access that names the
//! field when an instruction fails.

use crate::memory;
use core::fmt;
use vmx::caps::Capabilities;
use vmx::error::VmFail;
use vmx::fields::{FieldKind, VmcsField};
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

    /// A stand-in that names no VMCS region: held only for the moment a restarting vCPU is
    /// rebuilt around its own VMCS (restart.rs), never loaded, cleared or written.
    pub(super) const fn placeholder() -> Self {
        Vmcs { frame: 0 }
    }

    /// VMCLEAR: writes the VMCS back to its region and makes it not current on this CPU, so
    /// another CPU may load it (SDM Vol. 3C §25.11.1).
    pub fn clear(&self) -> Result<(), VmcsError> {
        // SAFETY: the region is a VMCS initialised by `new`; VMX root operation is active.
        unsafe { instructions::vmclear(self.frame) }.map_err(VmcsError::Clear)
    }

    /// Whether this VMCS is the current VMCS on this CPU (VMPTRST, SDM Vol. 3C §31.3): reading
    /// it is then reading this vCPU's guest state, never another's.
    pub fn is_current(&self) -> bool {
        // SAFETY: VMPTRST only stores the current-VMCS pointer; VMX root operation is active.
        unsafe { instructions::vmptrst() }.is_ok_and(|p| p == self.frame)
    }

    /// Makes this VMCS current on this CPU.
    pub fn load(&self) -> Result<(), VmcsError> {
        // SAFETY: the region is a VMCS initialised by `new`; VMX root operation is active.
        unsafe { instructions::vmptrld(self.frame) }.map_err(VmcsError::Load)
    }
}

/// Writes any field of the current VMCS.
///
/// # Safety
/// Control and host-state fields decide what the host runs on the next VM exit (HOST_RIP,
/// HOST_CR3, ...) and which memory the guest can reach (EPT pointer, bitmap and MSR-area
/// addresses, SDM Vol. 3C §25.6): the caller must write values that keep the host intact and
/// the guest inside its VM. Exit handlers use [`write_guest`] instead.
#[inline]
pub unsafe fn write(field: VmcsField, value: u64) -> Result<(), VmcsError> {
    // SAFETY: VMWRITE only changes the current VMCS; the caller guarantees the value is sound
    // for the field (see the function contract).
    unsafe { instructions::vmwrite(field, value) }
        .map_err(|error| VmcsError::Write { field, error })
}

/// A VMCS field that cannot break the host or widen what the guest reaches: the guest-state
/// area (SDM Vol. 3C §25.4), which VM entry checks (§27.3.1) before the guest runs, and the
/// event-injection and read-shadow controls, which only change what the guest sees (§25.8.3,
/// §25.6.6). Build one with [`guest_field!`]: a host-state or control field is a compile error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestField(VmcsField);

impl GuestField {
    /// Control fields a handler may write: injection (SDM Vol. 3C §25.8.3), the CR0/CR4
    /// read shadows (§25.6.6) and the TSC offset (§25.6.5: only the TSC values the guest
    /// reads change).
    const SAFE_CONTROLS: [VmcsField; 6] = [
        VmcsField::TSC_OFFSET,
        VmcsField::VM_ENTRY_INTERRUPTION_INFO,
        VmcsField::VM_ENTRY_EXCEPTION_ERROR_CODE,
        VmcsField::VM_ENTRY_INSTRUCTION_LENGTH,
        VmcsField::CR0_READ_SHADOW,
        VmcsField::CR4_READ_SHADOW,
    ];

    /// Panics (at compile time, through [`guest_field!`]) for any other field.
    pub const fn new(field: VmcsField) -> Self {
        let mut ok = matches!(field.kind(), FieldKind::GuestState);
        let mut i = 0;
        while i < Self::SAFE_CONTROLS.len() {
            ok |= Self::SAFE_CONTROLS[i].encoding() == field.encoding();
            i += 1;
        }
        assert!(ok, "not a guest-state or injection field");
        GuestField(field)
    }

    /// The field.
    pub const fn field(self) -> VmcsField {
        self.0
    }
}

/// A [`GuestField`] checked at compile time: `guest_field!(GUEST_RIP)`.
macro_rules! guest_field {
    ($name:ident) => {
        const { $crate::vmm::vmcs::GuestField::new(vmx::fields::VmcsField::$name) }
    };
}
pub(crate) use guest_field;

/// Writes a guest-state or injection field of the current VMCS.
#[inline]
pub fn write_guest(field: GuestField, value: u64) -> Result<(), VmcsError> {
    // SAFETY: `GuestField` admits only fields VM entry checks or that only change what the
    // guest sees (see its documentation); a bad value fails this VM's entry, nothing else.
    unsafe { write(field.0, value) }
}

/// Reads a field of the current VMCS.
#[inline]
pub fn read(field: VmcsField) -> Result<u64, VmcsError> {
    // SAFETY: VMREAD has no side effects besides RFLAGS.
    unsafe { instructions::vmread(field) }.map_err(|error| VmcsError::Read { field, error })
}

/// Reads a field the CPU always provides after a VM exit; a failure is a hypervisor bug
/// (no current VMCS), so it reads as 0 and is logged rather than stopping the VM.
#[inline]
pub fn read_exit(field: VmcsField) -> u64 {
    match read(field) {
        Ok(v) => v,
        Err(e) => read_failed(e),
    }
}

#[cold]
fn read_failed(e: VmcsError) -> u64 {
    log::error!("vmcs: {e}");
    0
}

/// The guest's view of a control register (SDM Vol. 3C §25.6.6): the bits set in its
/// guest/host mask read from the read shadow, the others (the guest owns them and changes
/// them without an exit) from the register itself.
fn guest_view(reg: VmcsField, mask: VmcsField, shadow: VmcsField) -> u64 {
    let m = read_exit(mask);
    (read_exit(reg) & !m) | (read_exit(shadow) & m)
}

/// CR0 as the guest sees it ([`guest_view`]).
pub fn guest_cr0() -> u64 {
    guest_view(
        VmcsField::GUEST_CR0,
        VmcsField::CR0_GUEST_HOST_MASK,
        VmcsField::CR0_READ_SHADOW,
    )
}

/// CR4 as the guest sees it ([`guest_view`]).
pub fn guest_cr4() -> u64 {
    guest_view(
        VmcsField::GUEST_CR4,
        VmcsField::CR4_GUEST_HOST_MASK,
        VmcsField::CR4_READ_SHADOW,
    )
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
