//! A vCPU's x87/SSE/AVX/... state (SDM Vol. 1 chapter 13): with XSAVE, every component the
//! VM's CPUID offers is saved and restored with the vCPU, together with its XCR0; without it
//! (older CPUs), the x87/SSE state through FXSAVE. XSETBV exits unconditionally (SDM Vol. 3C
//! §26.1.2) and is validated by `vm::xsave`.

use super::*;
use vm::xsave::{validate_xsetbv, xcr0};

/// Bytes reserved for a vCPU's XSAVE image (standard format); the CPUID policy offers XSAVE
/// only if its components fit (vm::cpuid::CpuidPolicy::xsave_size, checked in `Platform::new`).
pub const AREA_BYTES: usize = 4096;
/// CR4.OSXSAVE (SDM Vol. 3A §2.5).
const CR4_OSXSAVE: u64 = 1 << 18;
/// Offset of MXCSR in the legacy region (SDM Vol. 1 Table 10-2).
const MXCSR_OFFSET: usize = 24;
/// MXCSR and FCW at reset (SDM Vol. 3A Table 10-1).
const MXCSR_RESET: u32 = 0x1f80;

/// A 64-byte aligned XSAVE image (SDM Vol. 1 §13.4).
#[repr(C, align(64))]
struct XsaveArea([u8; AREA_BYTES]);

#[derive(Debug)]
enum Area {
    /// FXSAVE only (no XSAVE on this CPU, or not offered).
    Fx(Box<arch::FxArea>),
    /// XSAVE with these components.
    X { image: Box<XsaveArea>, mask: u64 },
}

impl core::fmt::Debug for XsaveArea {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("XsaveArea")
    }
}

/// One vCPU's extended state while it does not run, and what switching it cost.
#[derive(Debug)]
pub struct ExtendedState {
    area: Area,
    /// The guest's XCR0 (x87 only at reset, SDM Vol. 1 §13.3).
    pub xcr0: u64,
    /// Times the state was switched in (each with its save after the run), and the TSC ticks
    /// both took (the benchmark's XSAVE switch cost per VM switch).
    pub switches: u64,
    pub ticks: u64,
}

impl ExtendedState {
    /// The reset state; `mask` are the XCR0 components the VM's CPUID offers (0: FXSAVE).
    pub fn new(mask: u64) -> Self {
        let area = if mask == 0 {
            Area::Fx(Box::new(arch::FxArea::initial()))
        } else {
            // XSTATE_BV = 0: every component is in its initial state on the first XRSTOR,
            // except MXCSR, which XRSTOR always loads from the legacy region (SDM Vol. 1
            // §13.8.1).
            let mut image = Box::new(XsaveArea([0; AREA_BYTES]));
            image.0[MXCSR_OFFSET..MXCSR_OFFSET + 4].copy_from_slice(&MXCSR_RESET.to_le_bytes());
            Area::X {
                image,
                mask: mask | xcr0::X87 | xcr0::SSE,
            }
        };
        ExtendedState {
            area,
            xcr0: xcr0::X87,
            switches: 0,
            ticks: 0,
        }
    }

    /// Whether XSAVE state (not only FXSAVE state) is switched.
    pub fn xsave(&self) -> bool {
        matches!(self.area, Area::X { .. })
    }

    /// Makes this vCPU's state live (before it runs): every offered component is restored
    /// under the full mask, then the guest's own XCR0 is loaded.
    pub fn restore(&mut self) {
        let start = arch::rdtsc();
        match &self.area {
            Area::Fx(fx) => fx.restore(),
            // SAFETY: CR4.OSXSAVE is set at boot (arch::enable_fxsr) when the CPU has XSAVE;
            // `mask` and `xcr0` passed vm::xsave::validate_xsetbv against the CPUID policy's
            // components, which the host supports; the image is 64-byte aligned, large enough
            // (Platform::new) and was written by XSAVE or is the initial image.
            Area::X { image, mask } => unsafe {
                arch::xsetbv(*mask);
                arch::xrstor(image.0.as_ptr(), *mask);
                arch::xsetbv(self.xcr0);
            },
        }
        self.switches += 1;
        self.account(start);
    }

    /// Saves the live state (after the vCPU ran), every offered component included.
    pub fn save(&mut self) {
        let start = arch::rdtsc();
        match &mut self.area {
            Area::Fx(fx) => fx.save(),
            // SAFETY: as in `restore`.
            Area::X { image, mask } => unsafe {
                arch::xsetbv(*mask);
                arch::xsave(image.0.as_mut_ptr(), *mask);
            },
        }
        self.account(start);
    }

    /// The saved image (a snapshot's copy): the FXSAVE region, or the whole XSAVE area.
    pub fn image(&self) -> &[u8] {
        match &self.area {
            Area::Fx(fx) => &fx.0,
            Area::X { image, .. } => &image.0,
        }
    }

    /// Takes a snapshot's image and XCR0 in place of the saved state, once
    /// `vm::xsave::check_image` found nothing FXRSTOR/XRSTOR would fault on and `xcr0` is one
    /// the guest could have loaded (`supported`: the VM's CPUID components).
    pub fn load_image(
        &mut self,
        bytes: &[u8],
        xcr0: u64,
        supported: u64,
    ) -> Result<(), &'static str> {
        let (len, xsave, rfbm) = match &self.area {
            Area::Fx(_) => (vm::xsave::FXSAVE_BYTES, false, 0),
            Area::X { mask, .. } => (AREA_BYTES, true, *mask),
        };
        vm::xsave::check_image(bytes, len, xsave, rfbm)?;
        let xcr0 = if xsave {
            validate_xsetbv(0, xcr0, supported)
                .map_err(|_| "an XCR0 the VM's CPUID does not allow")?
        } else if xcr0 == xcr0::X87 {
            xcr0
        } else {
            return Err("an XCR0 other than x87 for a vCPU without XSAVE");
        };
        match &mut self.area {
            Area::Fx(fx) => fx.0.copy_from_slice(bytes),
            Area::X { image, .. } => image.0.copy_from_slice(bytes),
        }
        self.xcr0 = xcr0;
        Ok(())
    }

    fn account(&mut self, start: u64) {
        self.ticks += arch::rdtsc().saturating_sub(start);
    }
}

impl VcpuExit<'_> {
    /// XSETBV (reason 55): #UD without XSAVE or with CR4.OSXSAVE = 0, #GP at CPL > 0 or for a
    /// value the VM's CPUID does not allow (SDM Vol. 2D XSETBV, Vol. 1 §13.3); otherwise
    /// XCR0 is loaded and kept with the vCPU.
    pub(super) fn xsetbv(&mut self) -> Action {
        let ud = Action::Inject {
            vector: ExceptionVector::InvalidOpcode,
            error_code: None,
        };
        if !self.vcpu.xstate.xsave() || vmcs::read_exit(F::GUEST_CR4) & CR4_OSXSAVE == 0 {
            return ud;
        }
        // CPL is SS.DPL (SDM Vol. 3C §27.3.1.2), access-rights bits 6:5.
        let cpl = (vmcs::read_exit(F::GUEST_SS_ACCESS_RIGHTS) >> 5) & 3;
        let value = (self.vcpu.regs.rdx << 32) | (self.vcpu.regs.rax & 0xffff_ffff);
        let ecx = self.vcpu.regs.rcx as u32;
        match validate_xsetbv(ecx, value, self.platform.xcr0_supported()) {
            Ok(v) if cpl == 0 => {
                // SAFETY: `v` passed validation against components the host supports.
                unsafe { arch::xsetbv(v) };
                self.vcpu.xstate.xcr0 = v;
                Action::Advance
            }
            _ => gp(),
        }
    }
}
