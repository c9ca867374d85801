//! Programming a VMCS: VM-execution controls from the capability MSRs, host state from the
//! running kernel, and the guest's initial state for a 64-bit or a real-mode start.

use super::entry;
use super::vmcs::{self, guest_field, GuestField, VmcsError};
use crate::{arch, memory};
use core::fmt;
use vm::loader::{self, BootState, EntryMode};
use vmx::caps::Capabilities;
use vmx::controls::{
    compute_controls, ControlError, ControlRequest, ControlSet, EntryControls, PinBasedControls,
    PrimaryControls, SecondaryControls,
};
use vmx::exit::ExceptionVector;
use vmx::fields::{SegmentAccessRights, VmcsField as F};
use vmx::msr::Msr;
use x86_64::instructions::tables::{sgdt, sidt};

/// CR4.VMXE (SDM Vol. 3A §2.5).
pub const CR4_VMXE: u64 = 1 << 13;
/// EFER bits (SDM Vol. 3A §2.2.1).
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;
const EFER_NXE: u64 = 1 << 11;
/// The power-on PAT (SDM Vol. 3A §12.12.4).
const PAT_DEFAULT: u64 = 0x0007_0406_0007_0406;
/// Exceptions that exit instead of going to the guest: #BP is intercepted and reflected
/// (it exercises the exception path; SDM Vol. 3C §26.2).
pub const EXCEPTION_BITMAP: u32 = 1 << ExceptionVector::Breakpoint as u32;

/// Why a vCPU's VMCS could not be programmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetupError {
    Controls(ControlError),
    Vmcs(VmcsError),
    OutOfMemory,
}

impl From<VmcsError> for SetupError {
    fn from(e: VmcsError) -> Self {
        SetupError::Vmcs(e)
    }
}

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SetupError::Controls(e) => write!(f, "{e}"),
            SetupError::Vmcs(e) => write!(f, "{e}"),
            SetupError::OutOfMemory => write!(f, "no memory for the MSR or I/O bitmaps"),
        }
    }
}

/// The controls every Bulkhead vCPU uses: EPT + unrestricted guest (required), VPID and the
/// preemption timer when available, HLT exiting, MSR and I/O bitmaps, external-interrupt and
/// NMI exiting; CR3 accesses do not exit (EPT makes them harmless).
///
/// `enables` are the instruction-enabling secondary controls the VM's CPUID offers
/// (vm::features::secondary_controls): required, so what CPUID offers works; the others stay
/// 0, so what it hides raises #UD (SDM Vol. 3C §26.3).
///
/// With `apicv` (vmx::apicv::available), the guest's local APIC is virtualized (SDM Vol. 3C
/// ch. 30): TPR shadow, APIC-register virtualization and virtual-interrupt delivery, and
/// "virtualize APIC accesses" for the xAPIC mode every vCPU starts in
/// ([`set_apic_access_mode`] follows the guest's mode). CR8 then reads and writes the
/// virtual TPR (§30.3) instead of exiting.
pub fn controls(
    caps: &Capabilities,
    long_mode: bool,
    enables: SecondaryControls,
    apicv: bool,
) -> Result<ControlSet, ControlError> {
    let mut request = ControlRequest::unrestricted_ept();
    if apicv {
        request.primary.required |= PrimaryControls::USE_TPR_SHADOW;
        request.primary.required &=
            !(PrimaryControls::CR8_LOAD_EXITING | PrimaryControls::CR8_STORE_EXITING);
        request.secondary.required |= SecondaryControls::VIRTUALIZE_APIC_ACCESSES
            | SecondaryControls::APIC_REGISTER_VIRTUALIZATION
            | SecondaryControls::VIRTUAL_INTERRUPT_DELIVERY;
    }
    request.secondary.required |= enables;
    // IA32_TSC and IA32_TSC_ADJUST writes move the guest TSC (vm::msr, SDM Vol. 3B §18.17.3).
    request.primary.required |= PrimaryControls::USE_TSC_OFFSETTING;
    request.pin.optional |= PinBasedControls::ACTIVATE_VMX_PREEMPTION_TIMER;
    request.secondary.optional |= SecondaryControls::ENABLE_VPID;
    if long_mode {
        request.entry.required |= EntryControls::IA32E_MODE_GUEST;
    }
    compute_controls(caps, &request)
}

/// A zeroed frame (the APIC-access page: its contents are never read, SDM Vol. 3C §30.4).
pub fn zeroed_frame() -> Result<u64, SetupError> {
    filled_frame(0)
}

/// A frame filled with `byte`.
fn filled_frame(byte: u8) -> Result<u64, SetupError> {
    let frame = memory::allocate_frame().ok_or(SetupError::OutOfMemory)?;
    // SAFETY: the frame was just allocated and is mapped by the direct map.
    unsafe {
        core::ptr::write_bytes(
            memory::phys_to_virt(frame),
            byte,
            memory::FRAME_SIZE as usize,
        )
    };
    Ok(frame)
}

/// A frame holding the VM's MSR bitmap (SDM Vol. 3C §25.6.9), computed by its MSR policy:
/// every MSR exits except the hot ones the policy passes through.
pub fn msr_bitmap(bitmap: &[u8; 4096]) -> Result<u64, SetupError> {
    let frame = filled_frame(0xff)?;
    // SAFETY: the frame was just allocated (4 KiB) and is mapped by the direct map.
    unsafe {
        core::ptr::copy_nonoverlapping(bitmap.as_ptr(), memory::phys_to_virt(frame), bitmap.len())
    };
    Ok(frame)
}

/// I/O bitmaps A and B (SDM Vol. 3C §25.6.4): every port exits.
pub fn io_bitmaps() -> Result<(u64, u64), SetupError> {
    Ok((filled_frame(0xff)?, filled_frame(0xff)?))
}

fn host_selectors() -> (u16, u16, u16, u64) {
    use x86_64::instructions::segmentation::{Segment, CS, SS};
    let (tr, tr_base) = crate::interrupts::tss();
    (CS::get_reg().0 & !7, SS::get_reg().0 & !7, tr & !7, tr_base)
}

/// Writes the host-state area (SDM Vol. 3C §25.5, checked per §27.2.2-27.2.4).
pub fn write_host_state() -> Result<(), VmcsError> {
    /// SAFETY (for every call): the host-state values below are read from the running kernel
    /// itself (its control registers, selectors, descriptor tables, MSRs) and HOST_RIP is the
    /// VM-exit entry point of `entry`, so a VM exit resumes this kernel exactly as it runs.
    fn host(field: F, value: u64) -> Result<(), VmcsError> {
        // SAFETY: see above: the value describes the running kernel.
        unsafe { vmcs::write(field, value) }
    }
    let (cs, ss, tr, tr_base) = host_selectors();
    host(F::HOST_CR0, arch::read_cr0())?;
    host(F::HOST_CR3, arch::read_cr3())?;
    host(F::HOST_CR4, arch::read_cr4())?;
    host(F::HOST_CS_SELECTOR, u64::from(cs))?;
    host(F::HOST_SS_SELECTOR, u64::from(ss))?;
    for f in [
        F::HOST_DS_SELECTOR,
        F::HOST_ES_SELECTOR,
        F::HOST_FS_SELECTOR,
        F::HOST_GS_SELECTOR,
    ] {
        host(f, 0)?;
    }
    host(F::HOST_TR_SELECTOR, u64::from(tr))?;
    // SAFETY: the kernel's FS/GS base MSRs always exist in 64-bit mode.
    let (fs, gs) = unsafe {
        (
            arch::rdmsr(Msr::IA32_FS_BASE),
            arch::rdmsr(Msr::IA32_GS_BASE),
        )
    };
    host(F::HOST_FS_BASE, fs)?;
    host(F::HOST_GS_BASE, gs)?;
    host(F::HOST_TR_BASE, tr_base)?;
    host(F::HOST_GDTR_BASE, sgdt().base.as_u64())?;
    host(F::HOST_IDTR_BASE, sidt().base.as_u64())?;
    host(F::HOST_IA32_SYSENTER_CS, 0)?;
    host(F::HOST_IA32_SYSENTER_ESP, 0)?;
    host(F::HOST_IA32_SYSENTER_EIP, 0)?;
    // SAFETY: EFER and PAT exist on every CPU with VMX.
    let (efer, pat) = unsafe { (arch::rdmsr(Msr::IA32_EFER), arch::rdmsr(Msr::IA32_PAT)) };
    host(F::HOST_IA32_EFER, efer)?;
    host(F::HOST_IA32_PAT, pat)?;
    host(F::HOST_RIP, entry::host_rip())?;
    Ok(())
}

/// The guest CR0 the CPU runs with for a guest-visible `cr0` (fixed bits applied; with
/// unrestricted guest PE and PG are free, SDM Vol. 3C §27.3.1.1).
pub fn effective_cr0(caps: &Capabilities, cr0: u64) -> u64 {
    let fixed = caps.guest_cr0_fixed(true);
    (cr0 | fixed.must_be_one) & fixed.may_be_one
}

/// The guest CR4 the CPU runs with (VMXE forced on by CR4_FIXED0, hidden by the shadow).
pub fn effective_cr4(caps: &Capabilities, cr4: u64) -> u64 {
    (cr4 | caps.cr4_fixed.must_be_one) & caps.cr4_fixed.may_be_one
}

/// CR0/CR4 bits the guest may not own: the fixed ones, and the CR4 bits of features its CPUID
/// hides (`cr4_reserved`, vm::features::cr4_guest_reserved), so setting one exits and raises
/// #GP; guest reads see the shadows (SDM Vol. 3C §25.6.6).
pub fn cr_masks(caps: &Capabilities, cr4_reserved: u64) -> (u64, u64) {
    let f0 = caps.guest_cr0_fixed(true);
    let cr0_mask = f0.must_be_one | (!f0.may_be_one & 0xffff_ffff);
    let cr4_mask = caps.cr4_fixed.must_be_one
        | (!caps.cr4_fixed.may_be_one & 0xffff_ffff)
        | (cr4_reserved & 0xffff_ffff);
    (cr0_mask, cr4_mask)
}

/// The guest segment registers' fields in the order of their VMCS encodings and of a
/// snapshot's `VcpuState::segments` (ES, CS, SS, DS, FS, GS, LDTR, TR; SDM Vol. 3C §25.4.1,
/// Appendix B): selector, base, limit, access rights.
pub(super) const SEGMENT_FIELDS: [[GuestField; 4]; SEGMENTS] = [
    [
        guest_field!(GUEST_ES_SELECTOR),
        guest_field!(GUEST_ES_BASE),
        guest_field!(GUEST_ES_LIMIT),
        guest_field!(GUEST_ES_ACCESS_RIGHTS),
    ],
    [
        guest_field!(GUEST_CS_SELECTOR),
        guest_field!(GUEST_CS_BASE),
        guest_field!(GUEST_CS_LIMIT),
        guest_field!(GUEST_CS_ACCESS_RIGHTS),
    ],
    [
        guest_field!(GUEST_SS_SELECTOR),
        guest_field!(GUEST_SS_BASE),
        guest_field!(GUEST_SS_LIMIT),
        guest_field!(GUEST_SS_ACCESS_RIGHTS),
    ],
    [
        guest_field!(GUEST_DS_SELECTOR),
        guest_field!(GUEST_DS_BASE),
        guest_field!(GUEST_DS_LIMIT),
        guest_field!(GUEST_DS_ACCESS_RIGHTS),
    ],
    [
        guest_field!(GUEST_FS_SELECTOR),
        guest_field!(GUEST_FS_BASE),
        guest_field!(GUEST_FS_LIMIT),
        guest_field!(GUEST_FS_ACCESS_RIGHTS),
    ],
    [
        guest_field!(GUEST_GS_SELECTOR),
        guest_field!(GUEST_GS_BASE),
        guest_field!(GUEST_GS_LIMIT),
        guest_field!(GUEST_GS_ACCESS_RIGHTS),
    ],
    [
        guest_field!(GUEST_LDTR_SELECTOR),
        guest_field!(GUEST_LDTR_BASE),
        guest_field!(GUEST_LDTR_LIMIT),
        guest_field!(GUEST_LDTR_ACCESS_RIGHTS),
    ],
    [
        guest_field!(GUEST_TR_SELECTOR),
        guest_field!(GUEST_TR_BASE),
        guest_field!(GUEST_TR_LIMIT),
        guest_field!(GUEST_TR_ACCESS_RIGHTS),
    ],
];

/// [`SEGMENT_FIELDS`] indices.
const CS: usize = 1;
const LDTR: usize = 6;
const TR: usize = 7;
const SEGMENTS: usize = vm::snapshot::vcpu::SEGMENTS;

#[allow(clippy::too_many_arguments)]
fn segment(
    sel: GuestField,
    base: GuestField,
    limit: GuestField,
    ar: GuestField,
    s: u16,
    b: u64,
    l: u32,
    rights: SegmentAccessRights,
) -> Result<(), VmcsError> {
    vmcs::write_guest(sel, u64::from(s))?;
    vmcs::write_guest(base, b)?;
    vmcs::write_guest(limit, u64::from(l))?;
    vmcs::write_guest(ar, u64::from(rights.raw()))
}

/// Writes the guest-state area for the boot state (SDM Vol. 3C §25.4, checked per §27.3.1).
pub fn write_guest_state(
    caps: &Capabilities,
    boot: &BootState,
    cr4_reserved: u64,
) -> Result<(), VmcsError> {
    let (
        cr0,
        cr4,
        efer,
        cs_rights,
        data_rights,
        cs_sel,
        data_sel,
        limit,
        tr_sel,
        tr_base,
        tr_limit,
        gdt_base,
        gdt_limit,
    ) = match boot.mode {
        EntryMode::Long64 { cr3 } => {
            vmcs::write_guest(guest_field!(GUEST_CR3), cr3)?;
            // PE | MP | ET | NE | WP | PG; PAE | OSFXSR | OSXMMEXCPT.
            (
                0x8001_0033,
                0x620,
                EFER_LME | EFER_LMA | EFER_NXE,
                SegmentAccessRights::LONG_MODE_CODE,
                SegmentAccessRights::FLAT_DATA,
                loader::CODE64_SELECTOR,
                loader::DATA_SELECTOR,
                0xffff_ffff,
                loader::TSS_SELECTOR,
                loader::TSS_GPA,
                loader::TSS_LIMIT,
                loader::GDT_GPA,
                u64::from(loader::GDT_LIMIT),
            )
        }
        EntryMode::Flat32 { .. } => {
            vmcs::write_guest(guest_field!(GUEST_CR3), 0)?;
            // PE | ET | NE, paging off: allowed with unrestricted guest (SDM Vol. 3C
            // §26.3.1.1: PG = 1 requires PE = 1, not the reverse; the PE/PG fixed bits are
            // relaxed by the "unrestricted guest" control, §25.6.2). Flat 4 GiB code32 and
            // data segments (Multiboot 0.6.96 §3.2; Xen docs/misc/pvh.pandoc), TR the busy
            // 32-bit TSS of vm::loader::build_flat32_environment.
            (
                0x31,
                0,
                0,
                SegmentAccessRights::FLAT_CODE32,
                SegmentAccessRights::FLAT_DATA,
                loader::CODE32_SELECTOR,
                loader::DATA_SELECTOR,
                0xffff_ffff,
                loader::TSS_SELECTOR,
                loader::TSS_GPA,
                loader::TSS_LIMIT,
                loader::GDT_GPA,
                u64::from(loader::GDT32_LIMIT),
            )
        }
        EntryMode::Real16 => {
            vmcs::write_guest(guest_field!(GUEST_CR3), 0)?;
            // ET | NE: real mode, paging off (allowed by unrestricted guest).
            (
                0x30,
                0,
                0,
                SegmentAccessRights::REAL_MODE_CODE,
                SegmentAccessRights::REAL_MODE_DATA,
                0,
                0,
                0xffff,
                0,
                0,
                0xffff,
                0,
                0xffff,
            )
        }
    };
    let (cr0_mask, cr4_mask) = cr_masks(caps, cr4_reserved);
    // SAFETY: the guest/host masks only decide which CR0/CR4 writes exit (SDM Vol. 3C
    // §25.6.6); the CPU still enforces the fixed bits on the guest's own writes (§26.3).
    unsafe {
        vmcs::write(F::CR0_GUEST_HOST_MASK, cr0_mask)?;
        vmcs::write(F::CR4_GUEST_HOST_MASK, cr4_mask)?;
    }
    vmcs::write_guest(guest_field!(CR0_READ_SHADOW), cr0)?;
    vmcs::write_guest(guest_field!(CR4_READ_SHADOW), cr4)?;
    vmcs::write_guest(guest_field!(GUEST_CR0), effective_cr0(caps, cr0))?;
    vmcs::write_guest(guest_field!(GUEST_CR4), effective_cr4(caps, cr4))?;
    vmcs::write_guest(guest_field!(GUEST_IA32_EFER), efer)?;
    vmcs::write_guest(guest_field!(GUEST_IA32_PAT), PAT_DEFAULT)?;
    vmcs::write_guest(guest_field!(GUEST_DR7), 0x400)?;
    vmcs::write_guest(guest_field!(GUEST_RFLAGS), 0x2)?;
    vmcs::write_guest(guest_field!(GUEST_RIP), boot.rip)?;
    vmcs::write_guest(guest_field!(GUEST_RSP), boot.rsp)?;
    // TR must be a usable busy TSS (SDM Vol. 3C §27.3.1.2); LDTR may be unusable. The real-mode
    // start has the reset state's 32-bit busy TSS (SDM Vol. 3A §10.1.1, Table 10-1): a 16-bit
    // one would make IA-32e mode activation fail for a guest that never loads TR (§10.8.5).
    let tr_rights = if boot.mode == EntryMode::Real16 {
        SegmentAccessRights::RESET_TR
    } else {
        SegmentAccessRights::new(SegmentAccessRights::TYPE_TSS_BUSY, false, 0)
    };
    for (i, [s, b, l, a]) in SEGMENT_FIELDS.into_iter().enumerate() {
        let (sel, base, lim, rights) = match i {
            CS => (cs_sel, 0, limit, cs_rights),
            TR => (tr_sel, tr_base, tr_limit, tr_rights),
            LDTR => (0, 0, 0, SegmentAccessRights::UNUSABLE_SEGMENT),
            // ES, SS, DS, FS, GS.
            _ => (data_sel, 0, limit, data_rights),
        };
        segment(s, b, l, a, sel, base, lim, rights)?;
    }
    vmcs::write_guest(guest_field!(GUEST_GDTR_BASE), gdt_base)?;
    vmcs::write_guest(guest_field!(GUEST_GDTR_LIMIT), gdt_limit)?;
    vmcs::write_guest(guest_field!(GUEST_IDTR_BASE), 0)?;
    vmcs::write_guest(
        guest_field!(GUEST_IDTR_LIMIT),
        if boot.mode == EntryMode::Real16 {
            0x3ff
        } else {
            0
        },
    )?;
    vmcs::write_guest(guest_field!(GUEST_IA32_SYSENTER_CS), 0)?;
    vmcs::write_guest(guest_field!(GUEST_IA32_SYSENTER_ESP), 0)?;
    vmcs::write_guest(guest_field!(GUEST_IA32_SYSENTER_EIP), 0)?;
    vmcs::write_guest(guest_field!(GUEST_IA32_DEBUGCTL), 0)?;
    vmcs::write_guest(guest_field!(GUEST_INTERRUPTIBILITY_STATE), 0)?;
    vmcs::write_guest(guest_field!(GUEST_ACTIVITY_STATE), 0)?;
    vmcs::write_guest(guest_field!(GUEST_PENDING_DEBUG_EXCEPTIONS), 0)?;
    // SDM Vol. 3C §27.3.1.5: no shadow VMCS, so the link pointer is all ones.
    vmcs::write_guest(guest_field!(VMCS_LINK_POINTER), u64::MAX)?;
    Ok(())
}

/// Writes the state a start-up IPI leaves a vCPU in (SDM Vol. 3A §9.4.4.1 and Table 10-1,
/// INIT then SIPI): real mode, CS selector `vector << 8` with base `vector << 12`, IP 0, the
/// other segments at 0 with 64 KiB limits, paging and protection off (CR0 = ET | NE: the CPU
/// would keep CD/NW from reset, which only slow a guest down), EFER 0, interrupts off.
pub fn write_startup_state(
    caps: &Capabilities,
    vector: u8,
    cr4_reserved: u64,
) -> Result<(), VmcsError> {
    let boot = BootState {
        mode: EntryMode::Real16,
        rip: 0,
        rsp: 0,
        rdi: 0,
        rsi: 0,
    };
    write_guest_state(caps, &boot, cr4_reserved)?;
    vmcs::write_guest(guest_field!(GUEST_CS_SELECTOR), u64::from(vector) << 8)?;
    vmcs::write_guest(guest_field!(GUEST_CS_BASE), u64::from(vector) << 12)?;
    Ok(())
}

/// The pages of APIC virtualization (SDM Vol. 3C §25.6.8).
#[derive(Debug, Clone, Copy)]
pub struct ApicPages {
    /// The vCPU's virtual-APIC page: its local APIC model's register file (guest_apic.rs).
    pub virtual_apic: u64,
    /// The VM's APIC-access page: the frame its EPT maps at the xAPIC base.
    pub apic_access: u64,
}

/// Everything a vCPU's VMCS needs besides guest state.
#[derive(Debug, Clone, Copy)]
pub struct VcpuResources {
    pub eptp: u64,
    pub vpid: u16,
    pub msr_bitmap: u64,
    pub io_bitmaps: (u64, u64),
    /// With APIC virtualization.
    pub apic: Option<ApicPages>,
}

/// Writes the controls and host state of the current VMCS.
///
/// # Safety
/// `res` must name frames this VM owns: its EPT hierarchy (mapping only its own RAM and
/// nothing of the host), its MSR bitmap and its two I/O bitmaps (SDM Vol. 3C §25.6.4,
/// §25.6.9, §25.6.11); `set` must come from `compute_controls` for this CPU.
pub unsafe fn write_controls(set: &ControlSet, res: &VcpuResources) -> Result<(), VmcsError> {
    // SAFETY: the caller guarantees the resources and controls (see the function contract).
    unsafe { write_control_fields(set, res)? };
    write_host_state()
}

/// # Safety
/// As [`write_controls`].
unsafe fn write_control_fields(set: &ControlSet, res: &VcpuResources) -> Result<(), VmcsError> {
    // SAFETY: forwarded from the caller's contract.
    let w = |f: F, v: u64| unsafe { vmcs::write(f, v) };
    for (field, value) in set.vmcs_writes() {
        w(field, value)?;
    }
    w(F::EXCEPTION_BITMAP, u64::from(EXCEPTION_BITMAP))?;
    w(F::PAGE_FAULT_ERROR_CODE_MASK, 0)?;
    w(F::PAGE_FAULT_ERROR_CODE_MATCH, 0)?;
    w(F::CR3_TARGET_COUNT, 0)?;
    w(F::VM_EXIT_MSR_STORE_COUNT, 0)?;
    w(F::VM_EXIT_MSR_LOAD_COUNT, 0)?;
    w(F::VM_ENTRY_MSR_LOAD_COUNT, 0)?;
    w(F::VM_ENTRY_INTERRUPTION_INFO, 0)?;
    w(F::EPT_POINTER, res.eptp)?;
    // The guest TSC starts as the host's (SDM Vol. 3C §26.6.5).
    w(F::TSC_OFFSET, 0)?;
    if set.secondary.contains(SecondaryControls::ENABLE_VPID) {
        w(F::VPID, u64::from(res.vpid))?;
    }
    w(F::MSR_BITMAP, res.msr_bitmap)?;
    w(F::IO_BITMAP_A, res.io_bitmaps.0)?;
    w(F::IO_BITMAP_B, res.io_bitmaps.1)?;
    if let Some(apic) = res.apic {
        // SDM Vol. 3C §25.6.8: the virtual-APIC and APIC-access pages; the TPR threshold
        // (ignored with virtual-interrupt delivery) and the EOI-exit bitmap start clear.
        w(F::VIRTUAL_APIC_ADDRESS, apic.virtual_apic)?;
        w(F::APIC_ACCESS_ADDRESS, apic.apic_access)?;
        w(F::TPR_THRESHOLD, 0)?;
        for f in [
            F::EOI_EXIT_BITMAP_0,
            F::EOI_EXIT_BITMAP_1,
            F::EOI_EXIT_BITMAP_2,
            F::EOI_EXIT_BITMAP_3,
        ] {
            w(f, 0)?;
        }
        vmcs::write_guest(guest_field!(GUEST_INTERRUPT_STATUS), 0)?;
    }
    Ok(())
}

/// Follows the guest APIC's mode under APIC virtualization (SDM Vol. 3C §27.2.1.1: the two
/// APIC-access controls exclude each other): xAPIC mode virtualizes accesses to the
/// APIC-access page, x2APIC mode the x2APIC MSRs with `msr_bitmap` (vmx::apicv::
/// x2apic_msr_bitmap), a disabled APIC neither (its MMIO page is plain memory of the VM and
/// its MSRs #GP through the emulation).
pub fn set_apic_access_mode(
    set: &mut ControlSet,
    xapic: bool,
    x2apic: bool,
    msr_bitmap: u64,
) -> Result<(), VmcsError> {
    set.secondary
        .set(SecondaryControls::VIRTUALIZE_APIC_ACCESSES, xapic);
    set.secondary
        .set(SecondaryControls::VIRTUALIZE_X2APIC_MODE, x2apic);
    // SAFETY: `set` holds the secondary controls computed for this CPU with APIC
    // virtualization; only the APIC-access mode bits changed (both allowed-1 on this CPU:
    // vmx::apicv::available), and `msr_bitmap` is a frame of this VM's.
    unsafe {
        vmcs::write(
            F::SECONDARY_PROC_BASED_VM_EXEC_CONTROLS,
            u64::from(set.secondary.bits()),
        )?;
        vmcs::write(F::MSR_BITMAP, msr_bitmap)
    }
}

/// Sets or clears interrupt-window exiting (SDM Vol. 3C §25.6.2).
pub fn set_interrupt_window_exiting(set: &mut ControlSet, on: bool) -> Result<(), VmcsError> {
    set.primary
        .set(PrimaryControls::INTERRUPT_WINDOW_EXITING, on);
    // SAFETY: `set` holds the primary controls computed for this CPU; only the
    // interrupt-window bit changed, which makes the guest exit sooner and nothing else.
    unsafe {
        vmcs::write(
            F::PRIMARY_PROC_BASED_VM_EXEC_CONTROLS,
            u64::from(set.primary.bits()),
        )
    }
}

/// Sets or clears the "IA-32e mode guest" entry control, which must follow the guest's
/// EFER.LMA (SDM Vol. 3C §25.8.1, checked at entry per §27.3.1.1).
pub fn set_ia32e_mode_guest(set: &mut ControlSet, on: bool) -> Result<(), VmcsError> {
    set.entry.set(EntryControls::IA32E_MODE_GUEST, on);
    // SAFETY: `set` holds the entry controls computed for this CPU; only the IA-32e bit
    // changed, which selects the guest's mode and nothing of the host.
    unsafe { vmcs::write(F::VM_ENTRY_CONTROLS, u64::from(set.entry.bits())) }
}
