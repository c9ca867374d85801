//! One vCPU's architectural state in a snapshot: what VM entry needs to continue the guest
//! exactly where it stopped (SDM Vol. 3C §25.4 "Guest-state area": registers, segment
//! registers with their hidden parts, descriptor tables, MSRs loaded on entry, activity and
//! interruptibility state, pending debug exceptions; §25.8.3 the event to inject on entry),
//! plus the general registers, the MSRs the hypervisor keeps outside the VMCS and the
//! XSAVE area. The guest's TSC is stored as its value, not as the host's offset: a restore
//! on another machine (or later) derives a new offset from it.

use alloc::vec::Vec;

use super::codec::{Dec, Enc};

/// The largest XSAVE area accepted (Sapphire Rapids with AMX: 11,008 bytes).
pub const MAX_XSAVE: usize = 16 << 10;

/// A segment register with its hidden part (SDM Vol. 3C §25.4.1: selector, base, limit and
/// access rights in the VMX access-rights format, bit 16 = unusable).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Segment {
    pub selector: u16,
    pub base: u64,
    pub limit: u32,
    pub access_rights: u32,
}

/// GDTR / IDTR (base and 16-bit limit, §25.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DescriptorTable {
    pub base: u64,
    pub limit: u16,
}

/// The event VM entry delivers first (SDM Vol. 3C §25.8.3: VM-entry interruption-information
/// format, error code, instruction length), when the vCPU was paused with one pending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingEvent {
    pub interruption_info: u32,
    pub error_code: u32,
    pub instruction_len: u32,
}

/// Segment registers in this order: ES, CS, SS, DS, FS, GS, LDTR, TR (the VMCS field order).
pub const SEGMENTS: usize = 8;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VcpuState {
    /// RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI, R8-R15 (the instruction encoding's order).
    pub gprs: [u64; 16],
    pub rip: u64,
    pub rflags: u64,
    pub segments: [Segment; SEGMENTS],
    pub gdtr: DescriptorTable,
    pub idtr: DescriptorTable,
    /// The guest's own view (read shadows applied: what MOV from CR returns).
    pub cr0: u64,
    pub cr2: u64,
    pub cr3: u64,
    pub cr4: u64,
    pub cr8: u64,
    pub dr6: u64,
    pub dr7: u64,
    pub efer: u64,
    pub pat: u64,
    pub sysenter_cs: u64,
    pub sysenter_esp: u64,
    pub sysenter_eip: u64,
    pub star: u64,
    pub lstar: u64,
    pub cstar: u64,
    pub sfmask: u64,
    pub kernel_gs_base: u64,
    pub tsc_aux: u64,
    /// The guest's TSC when it was paused.
    pub guest_tsc: u64,
    /// SDM Vol. 3C §25.4.2: 0 active, 1 HLT, 2 shutdown, 3 wait-for-SIPI.
    pub activity_state: u32,
    /// §25.4.2 interruptibility state (STI / MOV SS blocking, NMI blocking).
    pub interruptibility: u32,
    /// §25.4.2 pending debug exceptions.
    pub pending_debug: u64,
    pub pending_event: Option<PendingEvent>,
    pub xcr0: u64,
    /// The XSAVE area (standard format) of the guest's extended state.
    pub xsave: Vec<u8>,
    /// DR0-DR3 (DR6 and DR7 above).
    pub dr: [u64; 4],
    /// The emulated MSRs the hypervisor holds for the vCPU (MTRRs, IA32_MISC_ENABLE,
    /// IA32_TSC_DEADLINE, ...) as (index, value): a restore replays them through the VM's
    /// MSR policy, which refuses a value the guest could not have written.
    pub emulated_msrs: Vec<(u32, u64)>,
    /// What the hypervisor holds outside the VMCS about the vCPU's execution.
    pub held: HeldState,
}

/// A vCPU's scheduling state (the hypervisor emulates HLT and wait-for-SIPI by not entering
/// the guest, so the VMCS activity state says "active" for both).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(u8)]
pub enum RunState {
    #[default]
    Runnable = 0,
    /// In HLT, until an interrupt (or, with `halted_irqs_off`, a KVM kick or an NMI).
    Halted = 1,
    /// After INIT, until a start-up IPI (SDM Vol. 3A §9.4.4).
    WaitForSipi = 2,
}

/// Event state the hypervisor keeps for a vCPU beside the VMCS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HeldState {
    pub run: RunState,
    /// An interrupt whose delivery an exit interrupted while an exception was injected
    /// first (SDM Vol. 3A §6.15), delivered at the next window.
    pub deferred_event: Option<PendingEvent>,
    /// An NMI waiting for NMI blocking to end.
    pub nmi_pending: bool,
    /// A start-up IPI's vector taken in while the vCPU waited outside a slice.
    pub pending_startup: Option<u8>,
    /// KVM_HC_KICK_CPU named the vCPU (its next HLT returns at once).
    pub pv_unhalted: bool,
    /// Halted with RFLAGS.IF = 0 in a KVM PV VM.
    pub halted_irqs_off: bool,
    /// Its last halt was the IDLE hypercall.
    pub idle_call: bool,
    /// MSR_KVM_POLL_CONTROL bit 0.
    pub poll_control: bool,
}

/// At most this many emulated MSRs per vCPU (11 fixed and 16 variable MTRR registers and a
/// handful of others fit).
pub const MAX_EMULATED_MSRS: usize = 64;

/// `activity_state` values above this are not defined (§25.4.2).
const MAX_ACTIVITY_STATE: u32 = 3;

impl VcpuState {
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Enc::default();
        for r in self.gprs {
            e.u64(r);
        }
        e.u64(self.rip).u64(self.rflags);
        for s in &self.segments {
            e.u16(s.selector)
                .u64(s.base)
                .u32(s.limit)
                .u32(s.access_rights);
        }
        for t in [self.gdtr, self.idtr] {
            e.u64(t.base).u16(t.limit);
        }
        for v in [
            self.cr0,
            self.cr2,
            self.cr3,
            self.cr4,
            self.cr8,
            self.dr6,
            self.dr7,
            self.efer,
            self.pat,
            self.sysenter_cs,
            self.sysenter_esp,
            self.sysenter_eip,
            self.star,
            self.lstar,
            self.cstar,
            self.sfmask,
            self.kernel_gs_base,
            self.tsc_aux,
            self.guest_tsc,
        ] {
            e.u64(v);
        }
        e.u32(self.activity_state)
            .u32(self.interruptibility)
            .u64(self.pending_debug);
        encode_event(&mut e, self.pending_event);
        e.u64(self.xcr0).bytes(&self.xsave);
        for r in self.dr {
            e.u64(r);
        }
        e.u32(self.emulated_msrs.len() as u32);
        for &(msr, value) in &self.emulated_msrs {
            e.u32(msr).u64(value);
        }
        let h = &self.held;
        e.u8(h.run as u8);
        encode_event(&mut e, h.deferred_event);
        e.u8(u8::from(h.nmi_pending));
        match h.pending_startup {
            None => e.u8(0),
            Some(v) => e.u8(1).u8(v),
        };
        for flag in [
            h.pv_unhalted,
            h.halted_irqs_off,
            h.idle_call,
            h.poll_control,
        ] {
            e.u8(u8::from(flag));
        }
        e.0
    }

    /// The state in `b`, or the name of the first field that is missing or impossible.
    pub fn decode(b: &[u8]) -> Result<Self, &'static str> {
        let mut d = Dec::new(b);
        let short = "the section ends early";
        let mut s = VcpuState::default();
        for r in &mut s.gprs {
            *r = d.u64().ok_or(short)?;
        }
        s.rip = d.u64().ok_or(short)?;
        s.rflags = d.u64().ok_or(short)?;
        for seg in &mut s.segments {
            *seg = Segment {
                selector: d.u16().ok_or(short)?,
                base: d.u64().ok_or(short)?,
                limit: d.u32().ok_or(short)?,
                access_rights: d.u32().ok_or(short)?,
            };
        }
        for t in [&mut s.gdtr, &mut s.idtr] {
            *t = DescriptorTable {
                base: d.u64().ok_or(short)?,
                limit: d.u16().ok_or(short)?,
            };
        }
        for v in [
            &mut s.cr0,
            &mut s.cr2,
            &mut s.cr3,
            &mut s.cr4,
            &mut s.cr8,
            &mut s.dr6,
            &mut s.dr7,
            &mut s.efer,
            &mut s.pat,
            &mut s.sysenter_cs,
            &mut s.sysenter_esp,
            &mut s.sysenter_eip,
            &mut s.star,
            &mut s.lstar,
            &mut s.cstar,
            &mut s.sfmask,
            &mut s.kernel_gs_base,
            &mut s.tsc_aux,
            &mut s.guest_tsc,
        ] {
            *v = d.u64().ok_or(short)?;
        }
        s.activity_state = d.u32().ok_or(short)?;
        if s.activity_state > MAX_ACTIVITY_STATE {
            return Err("activity state above 3 (SDM Vol. 3C §25.4.2)");
        }
        s.interruptibility = d.u32().ok_or(short)?;
        s.pending_debug = d.u64().ok_or(short)?;
        s.pending_event = decode_event(&mut d)?;
        s.xcr0 = d.u64().ok_or(short)?;
        s.xsave = d
            .bytes(MAX_XSAVE)
            .ok_or("XSAVE area missing or over 16 KiB")?
            .to_vec();
        for r in &mut s.dr {
            *r = d.u64().ok_or(short)?;
        }
        let n = d.u32().ok_or(short)? as usize;
        if n > MAX_EMULATED_MSRS {
            return Err("more than 64 emulated MSRs");
        }
        for _ in 0..n {
            let msr = d.u32().ok_or(short)?;
            s.emulated_msrs.push((msr, d.u64().ok_or(short)?));
        }
        s.held.run = match d.u8().ok_or(short)? {
            0 => RunState::Runnable,
            1 => RunState::Halted,
            2 => RunState::WaitForSipi,
            _ => return Err("run state neither runnable, halted nor waiting for SIPI"),
        };
        s.held.deferred_event = decode_event(&mut d)?;
        s.held.nmi_pending = flag(&mut d)?;
        s.held.pending_startup = match d.u8().ok_or(short)? {
            0 => None,
            1 => Some(d.u8().ok_or(short)?),
            _ => return Err("start-up flag neither 0 nor 1"),
        };
        s.held.pv_unhalted = flag(&mut d)?;
        s.held.halted_irqs_off = flag(&mut d)?;
        s.held.idle_call = flag(&mut d)?;
        s.held.poll_control = flag(&mut d)?;
        if !d.done() {
            return Err("bytes after the last field");
        }
        Ok(s)
    }
}

fn encode_event(e: &mut Enc, event: Option<PendingEvent>) {
    match event {
        None => e.u8(0),
        Some(p) => e
            .u8(1)
            .u32(p.interruption_info)
            .u32(p.error_code)
            .u32(p.instruction_len),
    };
}

/// VM-entry interruption-information bit 31: valid (SDM Vol. 3C §25.8.3, Table 25-17).
const EVENT_VALID: u32 = 1 << 31;
/// Bits 30:12 are reserved (0).
const EVENT_RESERVED: u32 = 0x7fff_f000;
/// An instruction length VM entry accepts for a software event: 1 to 15 (§27.2.1.3).
const MAX_INSTRUCTION_LEN: u32 = 15;

fn decode_event(d: &mut Dec) -> Result<Option<PendingEvent>, &'static str> {
    let short = "the section ends early";
    match d.u8().ok_or(short)? {
        0 => Ok(None),
        1 => {
            let p = PendingEvent {
                interruption_info: d.u32().ok_or(short)?,
                error_code: d.u32().ok_or(short)?,
                instruction_len: d.u32().ok_or(short)?,
            };
            if p.interruption_info & EVENT_VALID == 0 || p.interruption_info & EVENT_RESERVED != 0 {
                return Err(
                    "a pending event not valid or with reserved bits set (SDM Vol. 3C §25.8.3)",
                );
            }
            if p.instruction_len > MAX_INSTRUCTION_LEN {
                return Err("a pending event's instruction length above 15");
            }
            Ok(Some(p))
        }
        _ => Err("pending-event flag neither 0 nor 1"),
    }
}

fn flag(d: &mut Dec) -> Result<bool, &'static str> {
    match d.u8().ok_or("the section ends early")? {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err("a flag neither 0 nor 1"),
    }
}
