//! The KVM PV MSRs (Documentation/virt/kvm/x86/msr.rst, kvm_para.h) and what a WRMSR to
//! one asks for. A write that names memory the guest may not use as a PV area raises #GP
//! (WRMSR: #GP(0) "if the value written sets a reserved bit or is otherwise invalid", SDM
//! Vol. 2B WRMSR, exceptions; reflected into the guest as SDM Vol. 3C §27.6 event
//! injection).

/// `MSR_KVM_WALL_CLOCK_NEW`: write the GPA of a `pvclock_wall_clock`; the hypervisor fills
/// it once.
pub const MSR_KVM_WALL_CLOCK_NEW: u32 = 0x4b56_4d00;
/// `MSR_KVM_SYSTEM_TIME_NEW`: GPA of this vCPU's `pvclock_vcpu_time_info` | enable (bit 0).
pub const MSR_KVM_SYSTEM_TIME_NEW: u32 = 0x4b56_4d01;
/// `MSR_KVM_STEAL_TIME`: 64-byte aligned GPA of `kvm_steal_time` | enable (bit 0); bits 5:1
/// reserved.
pub const MSR_KVM_STEAL_TIME: u32 = 0x4b56_4d03;
/// `MSR_KVM_PV_EOI_EN`: 4-byte aligned GPA of the PV EOI word | enable (bit 0); bit 1
/// reserved.
pub const MSR_KVM_PV_EOI_EN: u32 = 0x4b56_4d04;
/// `MSR_KVM_POLL_CONTROL`: bit 0 = 1 lets the host poll before halting the vCPU (the
/// reset value); other bits reserved.
pub const MSR_KVM_POLL_CONTROL: u32 = 0x4b56_4d05;

/// `KVM_MSR_ENABLED`: bit 0 of the area MSRs.
pub const KVM_MSR_ENABLED: u64 = 1 << 0;
/// `KVM_PV_EOI_BIT`: bit 0 of the PV EOI word; set by the hypervisor when the injected
/// interrupt needs no EOI exit, cleared by the guest instead of writing EOI.
pub const KVM_PV_EOI_BIT: u32 = 1 << 0;
/// `POLL_CONTROL` bit 0: host-side halt polling allowed.
pub const POLL_CONTROL_HOST_POLL: u64 = 1 << 0;
/// The size of the PV EOI word the guest gives (an `unsigned long` in Linux, of which only
/// bit 0 counts; the hypervisor touches 4 bytes).
pub const PV_EOI_SIZE: u64 = 4;
/// 4 KiB: the wall clock must not cross a page.
const PAGE: u64 = 4096;

/// One of the PV areas of a vCPU (or the VM, for the wall clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Area {
    /// `pvclock_wall_clock` (12 bytes, 4-byte aligned, inside one page).
    WallClock,
    /// `pvclock_vcpu_time_info` (32 bytes, 32-byte aligned).
    SystemTime,
    /// `kvm_steal_time` (64 bytes, 64-byte aligned).
    StealTime,
    /// The PV EOI word (4 bytes, 4-byte aligned).
    PvEoi,
}

impl Area {
    /// Bytes the hypervisor writes.
    pub const fn size(self) -> u64 {
        match self {
            Area::WallClock => super::pvclock::WALL_CLOCK_SIZE as u64,
            Area::SystemTime => super::pvclock::VCPU_TIME_INFO_SIZE as u64,
            Area::StealTime => super::steal_time::SIZE as u64,
            Area::PvEoi => PV_EOI_SIZE,
        }
    }

    /// Required alignment of the GPA. Linux aligns `hv_clock` to a cache line and
    /// `steal_time` to 64 (the ABI's `KVM_STEAL_ALIGNMENT_BITS`), so natural alignment
    /// refuses nothing Linux does and keeps every area inside one page.
    pub const fn align(self) -> u64 {
        match self {
            Area::WallClock => 4,
            Area::SystemTime => 32,
            Area::StealTime => 64,
            Area::PvEoi => 4,
        }
    }

    /// The MSR that sets it.
    pub const fn msr(self) -> u32 {
        match self {
            Area::WallClock => MSR_KVM_WALL_CLOCK_NEW,
            Area::SystemTime => MSR_KVM_SYSTEM_TIME_NEW,
            Area::StealTime => MSR_KVM_STEAL_TIME,
            Area::PvEoi => MSR_KVM_PV_EOI_EN,
        }
    }

    /// The name in error messages.
    pub const fn name(self) -> &'static str {
        match self {
            Area::WallClock => "wall clock",
            Area::SystemTime => "kvmclock",
            Area::StealTime => "steal time",
            Area::PvEoi => "PV EOI",
        }
    }
}

/// A PV MSR write, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PvWrite {
    /// Place (or re-place) `area` at `gpa`.
    Enable {
        /// Which area.
        area: Area,
        /// Its guest-physical address.
        gpa: u64,
    },
    /// Disable `area` (bit 0 clear).
    Disable(Area),
    /// Store `POLL_CONTROL`.
    PollControl(u64),
}

/// Why a PV MSR write raises #GP (the kernel logs it at debug level; the guest sees #GP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PvMsrError {
    /// Reserved bits set.
    Reserved {
        /// The MSR.
        msr: u32,
        /// The value written.
        value: u64,
    },
    /// The address is not aligned as the ABI needs.
    Unaligned {
        /// Which area.
        area: Area,
        /// The address.
        gpa: u64,
    },
    /// Some byte of the area is not guest RAM (outside RAM, an MMIO window, or a hole).
    NotRam {
        /// Which area.
        area: Area,
        /// The address.
        gpa: u64,
    },
    /// The area overlaps another PV area of the VM.
    Overlaps {
        /// Which area was written.
        area: Area,
        /// The address.
        gpa: u64,
        /// The area it overlaps.
        other: Area,
    },
}

impl core::fmt::Display for PvMsrError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            PvMsrError::Reserved { msr, value } => write!(
                f,
                "WRMSR {msr:#x} = {value:#x} sets reserved bits: #GP (the guest's kvm_para.h does not match Bulkhead's KVM ABI)"
            ),
            PvMsrError::Unaligned { area, gpa } => write!(
                f,
                "{} area at {gpa:#x} is not {}-byte aligned: #GP",
                area.name(),
                area.align()
            ),
            PvMsrError::NotRam { area, gpa } => write!(
                f,
                "{} area at {gpa:#x} ({} bytes) is not all guest RAM: #GP",
                area.name(),
                area.size()
            ),
            PvMsrError::Overlaps { area, gpa, other } => write!(
                f,
                "{} area at {gpa:#x} overlaps the guest's {} area: #GP",
                area.name(),
                other.name()
            ),
        }
    }
}

/// Decodes a WRMSR to a PV MSR; `None` if `msr` is not one. Only the bit layout is checked
/// here; [`validate`] checks the address.
pub fn decode_write(msr: u32, value: u64) -> Option<Result<PvWrite, PvMsrError>> {
    let area = |area: Area, reserved: u64| {
        if value & reserved != 0 {
            return Err(PvMsrError::Reserved { msr, value });
        }
        if msr != MSR_KVM_WALL_CLOCK_NEW && value & KVM_MSR_ENABLED == 0 {
            return Ok(PvWrite::Disable(area));
        }
        Ok(PvWrite::Enable {
            area,
            gpa: value & !KVM_MSR_ENABLED,
        })
    };
    Some(match msr {
        // The wall clock has no enable bit: the whole value is the GPA.
        MSR_KVM_WALL_CLOCK_NEW => Ok(PvWrite::Enable {
            area: Area::WallClock,
            gpa: value,
        }),
        MSR_KVM_SYSTEM_TIME_NEW => area(Area::SystemTime, 0),
        // Bits 5:1 reserved (KVM_STEAL_RESERVED_MASK).
        MSR_KVM_STEAL_TIME => area(Area::StealTime, 0b11_1110),
        // Bit 1 reserved (KVM_PV_EOI_RESERVED).
        MSR_KVM_PV_EOI_EN => area(Area::PvEoi, 0b10),
        MSR_KVM_POLL_CONTROL => {
            if value & !POLL_CONTROL_HOST_POLL != 0 {
                Err(PvMsrError::Reserved { msr, value })
            } else {
                Ok(PvWrite::PollControl(value))
            }
        }
        _ => return None,
    })
}

/// Whether `msr` is one of the PV MSRs.
pub fn is_pv_msr(msr: u32) -> bool {
    matches!(
        msr,
        MSR_KVM_WALL_CLOCK_NEW
            | MSR_KVM_SYSTEM_TIME_NEW
            | MSR_KVM_STEAL_TIME
            | MSR_KVM_PV_EOI_EN
            | MSR_KVM_POLL_CONTROL
    )
}

/// One placed area: which, and where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placed {
    /// Which area.
    pub area: Area,
    /// Its GPA.
    pub gpa: u64,
    /// The vCPU it belongs to (`None` for the VM's wall clock).
    pub vcpu: Option<u32>,
}

/// Checks that `area` at `gpa` for `vcpu` is aligned, all RAM (`is_ram(gpa, len)`), does
/// not wrap, does not cross a page, and overlaps none of `placed` other than the area it
/// replaces (same area, same vCPU).
pub fn validate(
    area: Area,
    gpa: u64,
    vcpu: Option<u32>,
    is_ram: impl Fn(u64, u64) -> bool,
    placed: impl IntoIterator<Item = Placed>,
) -> Result<(), PvMsrError> {
    let size = area.size();
    if !gpa.is_multiple_of(area.align()) {
        return Err(PvMsrError::Unaligned { area, gpa });
    }
    let Some(end) = gpa.checked_add(size) else {
        return Err(PvMsrError::NotRam { area, gpa });
    };
    if gpa / PAGE != (end - 1) / PAGE || !is_ram(gpa, size) {
        return Err(PvMsrError::NotRam { area, gpa });
    }
    for p in placed {
        if p.area == area && p.vcpu == vcpu {
            continue;
        }
        let p_end = p.gpa.saturating_add(p.area.size());
        if gpa < p_end && p.gpa < end {
            return Err(PvMsrError::Overlaps {
                area,
                gpa,
                other: p.area,
            });
        }
    }
    Ok(())
}
