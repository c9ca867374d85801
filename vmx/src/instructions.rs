//! Thin wrappers around the VMX instructions (SDM Vol. 3C §31.3). This is the only module of
//! the crate with inline assembly. Every wrapper decodes RFLAGS into `Result<_, VmFail>`
//! following the conventions of SDM Vol. 3C §31.2.
//!
//! The wrappers are compiled for the host too, but host tests never execute them.

use crate::error::VmFail;
#[cfg(target_arch = "x86_64")]
use crate::error::VmInstructionError;
#[cfg(target_arch = "x86_64")]
use crate::fields::VmcsField;

/// INVEPT types (SDM Vol. 3C §31.3, INVEPT; support in SDM Vol. 3D Appendix A.10).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u64)]
pub enum InveptType {
    /// Invalidate mappings associated with one EPTP.
    SingleContext = 1,
    /// Invalidate mappings associated with all EPTPs.
    AllContext = 2,
}

/// INVVPID types (SDM Vol. 3C §31.3, INVVPID; support in SDM Vol. 3D Appendix A.10).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u64)]
pub enum InvvpidType {
    /// Invalidate one linear address tagged with one VPID.
    IndividualAddress = 0,
    /// Invalidate all mappings tagged with one VPID.
    SingleContext = 1,
    /// Invalidate all mappings tagged with any VPID except 0.
    AllContext = 2,
    /// Like single-context, but keep global translations.
    SingleContextRetainingGlobals = 3,
}

/// The 128-bit INVEPT descriptor (SDM Vol. 3C §31.3, INVEPT, Figure 31-1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C, align(16))]
pub struct InveptDescriptor {
    /// The EPT pointer (bits 63:0).
    pub eptp: u64,
    /// Reserved, must be 0 (bits 127:64).
    pub reserved: u64,
}

/// The 128-bit INVVPID descriptor (SDM Vol. 3C §31.3, INVVPID, Figure 31-2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C, align(16))]
pub struct InvvpidDescriptor {
    /// VPID in bits 15:0; bits 63:16 are reserved and must be 0.
    pub vpid: u64,
    /// Linear address (bits 127:64), used by the individual-address type.
    pub linear_address: u64,
}

/// Decodes RFLAGS after a VMX instruction; on VMfailValid reads the VM-instruction error field
/// (SDM Vol. 3C §31.2, §25.9.5).
// Inlined, as the VMREAD/VMWRITE wrappers below: every exit does a dozen of these, and
// the call chain per field cost some 30 ticks in Bochs.
#[inline]
#[cfg(target_arch = "x86_64")]
fn check(rflags: u64) -> Result<(), VmFail> {
    VmFail::check(rflags, || {
        // SAFETY: called only after VMfailValid, which implies VMX operation with a current
        // VMCS, so VMREAD of the VM-instruction error field is legal; it has no side effects.
        let (value, flags) = unsafe { raw_vmread(VmcsField::VM_INSTRUCTION_ERROR.encoding()) };
        if VmFail::check(flags, || 0).is_ok() {
            value as u32
        } else {
            // The error field itself could not be read; report a number Table 31-1 never uses.
            VmInstructionError::Unknown(0).number()
        }
    })
}

/// VMREAD returning the value and RFLAGS.
///
/// # Safety
/// Must run in VMX root operation (otherwise #UD) at CPL 0.
#[inline]
#[cfg(target_arch = "x86_64")]
unsafe fn raw_vmread(encoding: u32) -> (u64, u64) {
    let value: u64;
    let ax: u16;
    // SAFETY: the caller guarantees VMX root operation at CPL 0; VMREAD only writes the
    // output register and RFLAGS, LAHF only AH.
    unsafe {
        core::arch::asm!(
            "vmread {value}, {field}",
            "lahf",
            field = in(reg) u64::from(encoding),
            value = out(reg) value,
            out("ax") ax,
            options(nostack),
        );
    }
    (value, lahf_rflags(ax))
}

/// RFLAGS bits 7:0 from AX after LAHF (SDM Vol. 2A LAHF: AH = SF:ZF:0:AF:0:PF:1:CF), which
/// holds the two status flags of a VMX instruction (CF, ZF; SDM Vol. 3C §31.2). LAHF is two
/// instructions cheaper than PUSHFQ/POP on every VMREAD and VMWRITE (issue 14). In 64-bit
/// mode it needs CPUID.80000001H:ECX.LAHF-SAHF[bit 0], which every processor with EPT
/// and unrestricted guest (what Bulkhead requires) has.
#[inline]
#[cfg(target_arch = "x86_64")]
fn lahf_rflags(ax: u16) -> u64 {
    u64::from(ax >> 8)
}

/// Enters VMX operation with the VMXON region at physical address `vmxon_region`
/// (SDM Vol. 3C §24.7, §31.3 VMXON).
///
/// # Safety
/// CPL 0; CR4.VMXE set; CR0/CR4 satisfy the VMX fixed bits; IA32_FEATURE_CONTROL allows VMXON;
/// `vmxon_region` is the 4-KByte aligned physical address of a zeroed region of
/// `vmcs_region_size()` bytes whose first 4 bytes hold the VMCS revision id, which must stay
/// allocated and unaliased until VMXOFF. Otherwise the instruction faults (#UD/#GP).
#[cfg(target_arch = "x86_64")]
pub unsafe fn vmxon(vmxon_region: u64) -> Result<(), VmFail> {
    let rflags: u64;
    // SAFETY: the caller upholds the VMXON preconditions above; the operand is a pointer to a
    // local u64 holding the physical address, valid for the duration of the instruction.
    unsafe {
        core::arch::asm!(
            "vmxon qword ptr [{addr}]",
            "pushfq",
            "pop {flags}",
            addr = in(reg) &vmxon_region,
            flags = out(reg) rflags,
        );
    }
    check(rflags)
}

/// Leaves VMX operation (SDM Vol. 3C §31.3 VMXOFF).
///
/// # Safety
/// Must run in VMX root operation at CPL 0; any VMCS that will be used again must be VMCLEARed
/// first, and nothing may rely on VMX operation afterwards.
#[cfg(target_arch = "x86_64")]
pub unsafe fn vmxoff() -> Result<(), VmFail> {
    let rflags: u64;
    // SAFETY: the caller guarantees VMX root operation at CPL 0; VMXOFF only changes the
    // processor's VMX state and RFLAGS.
    unsafe {
        core::arch::asm!("vmxoff", "pushfq", "pop {flags}", flags = out(reg) rflags);
    }
    check(rflags)
}

/// Clears the VMCS at physical address `vmcs` and makes it inactive (SDM Vol. 3C §31.3 VMCLEAR).
///
/// # Safety
/// VMX root operation at CPL 0; `vmcs` is the 4-KByte aligned physical address of a VMCS region
/// owned by the caller (the processor writes VMCS data to it).
#[cfg(target_arch = "x86_64")]
pub unsafe fn vmclear(vmcs: u64) -> Result<(), VmFail> {
    let rflags: u64;
    // SAFETY: the caller guarantees VMX root operation and ownership of the region; the
    // operand points to a local u64 holding the physical address.
    unsafe {
        core::arch::asm!(
            "vmclear qword ptr [{addr}]",
            "pushfq",
            "pop {flags}",
            addr = in(reg) &vmcs,
            flags = out(reg) rflags,
        );
    }
    check(rflags)
}

/// Makes the VMCS at physical address `vmcs` current and active (SDM Vol. 3C §31.3 VMPTRLD).
///
/// # Safety
/// VMX root operation at CPL 0; `vmcs` is the 4-KByte aligned physical address of a VMCS region
/// owned by the caller, initialized with the revision id, not the VMXON region.
#[cfg(target_arch = "x86_64")]
pub unsafe fn vmptrld(vmcs: u64) -> Result<(), VmFail> {
    let rflags: u64;
    // SAFETY: the caller guarantees VMX root operation and ownership of the region; the
    // operand points to a local u64 holding the physical address.
    unsafe {
        core::arch::asm!(
            "vmptrld qword ptr [{addr}]",
            "pushfq",
            "pop {flags}",
            addr = in(reg) &vmcs,
            flags = out(reg) rflags,
        );
    }
    check(rflags)
}

/// Returns the physical address of the current VMCS (`u64::MAX` if none)
/// (SDM Vol. 3C §31.3 VMPTRST).
///
/// # Safety
/// Must run in VMX root operation at CPL 0.
#[cfg(target_arch = "x86_64")]
pub unsafe fn vmptrst() -> Result<u64, VmFail> {
    let mut pointer: u64 = 0;
    let rflags: u64;
    // SAFETY: the caller guarantees VMX root operation; VMPTRST writes 8 bytes to the local
    // `pointer`, which is valid and exclusively borrowed here.
    unsafe {
        core::arch::asm!(
            "vmptrst qword ptr [{addr}]",
            "pushfq",
            "pop {flags}",
            addr = in(reg) &mut pointer,
            flags = out(reg) rflags,
        );
    }
    check(rflags).map(|()| pointer)
}

/// Reads a field of the current VMCS (SDM Vol. 3C §31.3 VMREAD).
///
/// # Safety
/// Must run in VMX root operation at CPL 0 (VMREAD has no memory side effects).
#[inline]
#[cfg(target_arch = "x86_64")]
pub unsafe fn vmread(field: VmcsField) -> Result<u64, VmFail> {
    // SAFETY: forwarded precondition (VMX root operation at CPL 0).
    let (value, rflags) = unsafe { raw_vmread(field.encoding()) };
    check(rflags).map(|()| value)
}

/// Writes a field of the current VMCS (SDM Vol. 3C §31.3 VMWRITE).
///
/// # Safety
/// VMX root operation at CPL 0, and the value must keep every memory reference of the VMCS
/// (bitmaps, EPTP, MSR lists, host state) pointing at memory the hypervisor owns: the processor
/// will use them on the next VM entry or exit.
#[inline]
#[cfg(target_arch = "x86_64")]
pub unsafe fn vmwrite(field: VmcsField, value: u64) -> Result<(), VmFail> {
    let ax: u16;
    // SAFETY: the caller guarantees VMX root operation and the validity of what the value
    // refers to; VMWRITE only writes the current VMCS and RFLAGS, LAHF only AH.
    unsafe {
        core::arch::asm!(
            "vmwrite {field}, {value}",
            "lahf",
            field = in(reg) u64::from(field.encoding()),
            value = in(reg) value,
            out("ax") ax,
            options(nostack),
        );
    }
    check(lahf_rflags(ax))
}

/// Invalidates EPT-derived translations (SDM Vol. 3C §31.3 INVEPT).
///
/// # Safety
/// VMX root operation at CPL 0 and the type supported per IA32_VMX_EPT_VPID_CAP (otherwise
/// VMfail or #UD).
#[cfg(target_arch = "x86_64")]
pub unsafe fn invept(ty: InveptType, eptp: u64) -> Result<(), VmFail> {
    let descriptor = InveptDescriptor { eptp, reserved: 0 };
    let rflags: u64;
    // SAFETY: the caller guarantees VMX root operation; INVEPT only reads the 16-byte local
    // descriptor and flushes TLB state.
    unsafe {
        core::arch::asm!(
            "invept {ty}, xmmword ptr [{desc}]",
            "pushfq",
            "pop {flags}",
            ty = in(reg) ty as u64,
            desc = in(reg) &descriptor,
            flags = out(reg) rflags,
        );
    }
    check(rflags)
}

/// Invalidates VPID-tagged translations (SDM Vol. 3C §31.3 INVVPID).
///
/// # Safety
/// VMX root operation at CPL 0 and the type supported per IA32_VMX_EPT_VPID_CAP (otherwise
/// VMfail or #UD).
#[cfg(target_arch = "x86_64")]
pub unsafe fn invvpid(ty: InvvpidType, vpid: u16, linear_address: u64) -> Result<(), VmFail> {
    let descriptor = InvvpidDescriptor {
        vpid: u64::from(vpid),
        linear_address,
    };
    let rflags: u64;
    // SAFETY: the caller guarantees VMX root operation; INVVPID only reads the 16-byte local
    // descriptor and flushes TLB state.
    unsafe {
        core::arch::asm!(
            "invvpid {ty}, xmmword ptr [{desc}]",
            "pushfq",
            "pop {flags}",
            ty = in(reg) ty as u64,
            desc = in(reg) &descriptor,
            flags = out(reg) rflags,
        );
    }
    check(rflags)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptor_layout() {
        assert_eq!(core::mem::size_of::<InveptDescriptor>(), 16);
        assert_eq!(core::mem::size_of::<InvvpidDescriptor>(), 16);
        assert_eq!(InveptType::AllContext as u64, 2);
        assert_eq!(InvvpidType::SingleContextRetainingGlobals as u64, 3);
    }

    #[test]
    fn vmfail_type_is_shared() {
        // The wrappers return the error type decoded in `error`; nothing executes VMX here.
        let r: Result<(), VmFail> = Err(VmFail::Invalid);
        assert!(r.is_err());
    }
}
