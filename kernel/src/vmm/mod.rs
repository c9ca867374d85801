//! The virtual machine monitor: VMs built from the boot archive's configuration, each with its
//! own RAM, EPT and devices ([`Vm`], behind a per-VM lock) and one or more vCPUs ([`Vcpu`],
//! each with its own VMCS), run on every CPU in VMX root (scheduler.rs: a run queue per CPU).
//! A VM that misbehaves is stopped with a report; the others keep running.

mod apic_virtualization;
mod console;
mod create;
mod entry;
mod ept_sync;
mod exits;
mod fast_path;
mod guest_apic;
mod guest_memory;
mod hypercalls;
mod inject;
mod kvm_hypercalls;
mod kvm_pv;
pub mod networks;
mod quick_exit;
mod restart;
mod run_loop;
mod scheduler;
mod setup;
pub mod shell_ops;
pub mod snapshot;
mod stop;
mod stop_reason;
mod string_io;
mod vcpu;
mod virtio_devices;
mod vm_platform;
mod vmcs;
mod xsave;

pub use console::Console;
use scheduler::VmSlot;
pub use scheduler::{run, run_this_cpu, work_published};
pub use stop_reason::StopReason;

use crate::{arch, memory};
use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use entry::GuestRegs;
use exits::{Action, ExitInfo};
use guest_memory::GuestMemory;
use hypercall::{HcAction, HcError, HcRegs, HypercallHost};
use log::{error, info, warn};
use vm::archive::Archive;
use vm::config::{Config, GuestKind, VmConfig};
use vm::loader::{self, EntryMode};
use vm::msr::{MsrAction, MsrContext, VmcsMsr};
use vm::stats::ExitStats;
use vm_platform::Platform;
use vmx::caps::Capabilities;
use vmx::controls::{ControlSet, PinBasedControls};
use vmx::event::{Combined, Injection};
use vmx::exit::{ExceptionVector, ExitReason, InterruptionInfo};
use vmx::fields::VmcsField as F;

pub use setup::SetupError;
pub use vcpu::{State, Vcpu};
use vm::console::{clean, LineBuffer, RateLimit, MAX_CLEAN_LINE};
use vm::control_regs::{self, mov_to_cr0, Cr0Context, Cr0Write};

/// One virtual machine's VM-wide state: guest memory and its EPT, devices, console. Its vCPUs
/// ([`Vcpu`]) run on any CPU; this state is behind the VM's own lock (scheduler.rs), taken for
/// an exit's handling and never across VM entry.
#[derive(Debug)]
pub struct Vm {
    name: String,
    memory: GuestMemory,
    platform: Platform,
    console: Console,
    caps: Capabilities,
    /// The shortest device-timer interval honoured (10 µs of TSC ticks).
    min_timer_ticks: u64,
    /// The TSC frequency (the unit of every tick count the VM is told).
    tsc_hz: u64,
    /// Why the VM is ending, once one vCPU decided (the others stop at their next exit).
    stopping: Option<StopReason>,
    /// The RIP of the vCPU that stopped the VM, for the report.
    stop_rip: u64,
    /// vCPUs not stopped yet: the last one out prints the VM's report.
    vcpus_running: usize,
    /// The exit statistics of the vCPUs that have stopped, summed for the VM's report.
    finished_stats: ExitStats,
    /// Extended-state switch counters of the stopped vCPUs, summed for the report.
    xstate_switches: u64,
    xstate_ticks: u64,
    /// The CPU each vCPU runs on (the placement plan): whom to kick.
    vcpu_cpus: Vec<usize>,
    /// Each vCPU's local APIC (guest_apic.rs): VM-wide, so a sender's handler can match an
    /// interrupt's destination against every vCPU's APIC ID and logical ID.
    lapics: Vec<vm::apic::LocalApic<guest_apic::ApicFrame>>,
    /// What other vCPUs and devices sent each vCPU, taken in before its next entry.
    inboxes: Vec<guest_apic::Inbox>,
    /// APIC virtualization, when the CPU has all of it (else every APIC access is emulated).
    apicv: Option<guest_apic::Apicv>,
    apic_stats: guest_apic::RoutingStats,
    /// The KVM paravirtual interface's state (kvm_pv.rs), for a VM with `kvm-pv`.
    kvm_pv: Option<vm::kvm_pv::state::VmPv>,
    kvm_pv_counters: kvm_pv::PvCounters,
    /// The KVM paravirtual interface is offered (`kvm-pv`): untagged VMCALL numbers are KVM's
    /// (hypercall::route) and a HLT with interrupts disabled waits for `KVM_HC_KICK_CPU`.
    kvm_pv_offered: bool,
    kvm_calls: vm::kvm_pv::hypercall::KvmCallStats,
    /// Each vCPU's scheduling state as the KVM PV calls see it (kvm_hypercalls.rs).
    vcpu_sched: Vec<kvm_hypercalls::Sched>,
    /// The VMX controls every vCPU starts with (restart.rs programs them again).
    controls: ControlSet,
    /// The MSR and I/O bitmaps its vCPUs' VMCSs name.
    frames: create::VmFrames,
    /// Heap reserved for what its guest can make its devices take later (given back and
    /// reserved anew when it restarts).
    heap_reserved: u64,
    /// A snapshot being taken: its vCPUs park (snapshot/mod.rs).
    pause: Option<snapshot::Pause>,
}

// SAFETY: a `Vm` holds raw pointers only into its own guest RAM and EPT frames (GuestMemory),
// which no other VM and no other thread of control use except through the VM's lock.
unsafe impl Send for Vm {}

/// Which device an MMIO access goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MmioTarget {
    LocalApic,
    IoApic,
    Virtio,
}

/// What an exit handler works on: the exiting vCPU and its VM (whose lock the caller holds).
/// It dereferences to the VM, so handlers read VM-wide state as `self.platform` and the
/// vCPU's as `self.vcpu`.
pub struct VcpuExit<'a> {
    vm: &'a mut Vm,
    vcpu: &'a mut Vcpu,
}

impl core::ops::Deref for VcpuExit<'_> {
    type Target = Vm;
    fn deref(&self) -> &Vm {
        self.vm
    }
}

impl core::ops::DerefMut for VcpuExit<'_> {
    fn deref_mut(&mut self) -> &mut Vm {
        self.vm
    }
}

impl VcpuExit<'_> {
    /// RDMSR (reason 31): the VM's MSR policy (vm::msr) decides.
    fn rdmsr(&mut self) -> Action {
        let msr = self.vcpu.regs.rcx as u32;
        if let Some(result) = self.apic_rdmsr(msr) {
            let Ok(value) = result else { return gp() };
            self.vcpu.regs.rax = value & 0xffff_ffff;
            self.vcpu.regs.rdx = value >> 32;
            return Action::Advance;
        }
        if let Some(value) = self.kvm_pv_rdmsr(msr) {
            self.vcpu.regs.rax = value & 0xffff_ffff;
            self.vcpu.regs.rdx = value >> 32;
            return Action::Advance;
        }
        let ctx = self.msr_context();
        let value = match self.vm.platform.rdmsr(&self.vcpu.msr_state, msr, &ctx) {
            MsrAction::Read(v) => v,
            MsrAction::ReadVmcs(field) => vmcs::read_exit(vmcs_msr_field(field).field()),
            MsrAction::InjectGp
            | MsrAction::Written
            | MsrAction::WriteVmcs(..)
            | MsrAction::TscOffset(_) => return gp(),
        };
        self.vcpu.regs.rax = value & 0xffff_ffff;
        self.vcpu.regs.rdx = value >> 32;
        Action::Advance
    }

    /// WRMSR (reason 32): the VM's MSR policy validates; VMCS-held MSRs go to the VMCS.
    fn wrmsr(&mut self) -> Action {
        let msr = self.vcpu.regs.rcx as u32;
        let value = (self.vcpu.regs.rdx << 32) | (self.vcpu.regs.rax & 0xffff_ffff);
        match self.apic_wrmsr(msr, value) {
            Some(Ok(())) => return Action::Advance,
            Some(Err(())) => return gp(),
            None => {}
        }
        if let Some(action) = self.kvm_pv_wrmsr(msr, value) {
            return action;
        }
        let ctx = self.msr_context();
        match self
            .vm
            .platform
            .wrmsr(&mut self.vcpu.msr_state, msr, value, &ctx)
        {
            MsrAction::Written => Action::Advance,
            MsrAction::WriteVmcs(field, v) => match vmcs::write_guest(vmcs_msr_field(field), v) {
                Ok(()) => Action::Advance,
                Err(_) => Action::Stop(StopReason::Bug("VMWRITE of an MSR field failed")),
            },
            // The guest TSC moved (IA32_TSC, IA32_TSC_ADJUST): SDM Vol. 3C §26.6.5.
            MsrAction::TscOffset(offset) => {
                match vmcs::write_guest(vmcs::guest_field!(TSC_OFFSET), offset) {
                    Ok(()) => {
                        // kvmclock's records hold the guest TSC (kvm_pv.rs).
                        self.kvm_pv_clock_changed();
                        Action::Advance
                    }
                    Err(_) => Action::Stop(StopReason::Bug("VMWRITE of the TSC offset failed")),
                }
            }
            MsrAction::InjectGp | MsrAction::Read(_) | MsrAction::ReadVmcs(_) => gp(),
        }
    }

    fn msr_context(&self) -> MsrContext {
        MsrContext {
            efer: vmcs::read_exit(F::GUEST_IA32_EFER),
            cr0: vmcs::guest_cr0(),
            // "Use TSC offsetting" (SDM Vol. 3C §26.6.5): the guest reads host TSC + offset.
            guest_tsc: arch::rdtsc().wrapping_add(self.vcpu.msr_state.tsc_offset),
        }
    }

    /// MOV to CR0/CR3/CR4 that exited because it touches a bit Bulkhead owns
    /// (SDM Vol. 3C §26.1.3): the guest sees its value in the read shadow; the CPU runs with
    /// the fixed bits applied. CR4.VMXE cannot be set (VMX is not offered): #GP.
    fn write_cr(&mut self, cr: u8, value: u64) -> Action {
        let gp = Action::Inject {
            vector: ExceptionVector::GeneralProtection,
            error_code: Some(0),
        };
        let result = match cr {
            0 => {
                // The architectural rules (vm::control_regs, SDM Vol. 2B MOV CR and Vol. 3A
                // §10.8.5): #GP for illegal values, IA-32e mode entered or left by PG.
                // The guest's view of CR0/CR4, not the read shadows alone: a guest that set
                // CR4.PAE, which it owns, changed only GUEST_CR4; PVH Linux then sets PG.
                let ctx = Cr0Context {
                    cr0: vmcs::guest_cr0(),
                    cr4: vmcs::guest_cr4(),
                    efer: vmcs::read_exit(F::GUEST_IA32_EFER),
                    cs_long: cs_long(),
                };
                let efer = match mov_to_cr0(&ctx, value) {
                    Cr0Write::Fault => return gp,
                    Cr0Write::Load { efer } => efer,
                };
                let lma = efer & control_regs::EFER_LMA != 0;
                if lma != (ctx.efer & control_regs::EFER_LMA != 0) {
                    // SDM Vol. 3C §25.8.1: "IA-32e mode guest" must equal EFER.LMA on entry.
                    if setup::set_ia32e_mode_guest(&mut self.vcpu.controls, lma).is_err() {
                        return Action::Stop(StopReason::Bug(
                            "VMWRITE of the entry controls failed",
                        ));
                    }
                }
                vmcs::write_guest(vmcs::guest_field!(GUEST_IA32_EFER), efer)
                    .and_then(|()| vmcs::write_guest(vmcs::guest_field!(CR0_READ_SHADOW), value))
                    .and_then(|()| {
                        vmcs::write_guest(
                            vmcs::guest_field!(GUEST_CR0),
                            setup::effective_cr0(&self.caps, value),
                        )
                    })
            }
            3 => vmcs::write_guest(vmcs::guest_field!(GUEST_CR3), value),
            4 => {
                let reserved = self.platform.cr4_reserved();
                let (_, cr4_mask) = setup::cr_masks(&self.caps, reserved);
                // VMXE, every bit this CPU cannot set and the bits of features CPUID hides
                // (vm::features) are reserved for the guest: #GP (SDM Vol. 2B MOV CR).
                if value & setup::CR4_VMXE != 0
                    || value & cr4_mask & !setup::CR4_VMXE != 0
                    || value & reserved != 0
                    || value >> 32 != 0
                {
                    return gp;
                }
                vmcs::write_guest(vmcs::guest_field!(CR4_READ_SHADOW), value).and_then(|()| {
                    vmcs::write_guest(
                        vmcs::guest_field!(GUEST_CR4),
                        setup::effective_cr4(&self.caps, value),
                    )
                })
            }
            8 => {
                // MOV to CR8: bits 63:4 are reserved (#GP), SDM Vol. 3A §2.5 and §11.8.6.1.
                if value >> 4 != 0 {
                    return gp;
                }
                // CR8[3:0] is TPR[7:4] of the vCPU's local APIC (SDM Vol. 3A §11.8.6.1).
                self.lapic().set_tpr((value as u8) << 4);
                Ok(())
            }
            _ => {
                return Action::Stop(StopReason::Bug(
                    "a MOV to a control register Bulkhead does not intercept",
                ))
            }
        };
        match result {
            Ok(()) => Action::Advance,
            Err(_) => Action::Stop(StopReason::Bug("VMWRITE of a control register failed")),
        }
    }

    /// The device behind an MMIO guest-physical address, if any: this vCPU's local APIC page
    /// (while it is in xAPIC mode), the IOAPIC window, a virtio-mmio device.
    fn mmio_target(&self, gpa: u64) -> Option<MmioTarget> {
        let lapic = &self.vm.lapics[self.vcpu.index];
        if lapic.mode() == vm::apic::ApicMode::XApic && gpa & !0xFFF == lapic.mmio_base() {
            Some(MmioTarget::LocalApic)
        } else if gpa & !0xFFF == guest_apic::IOAPIC_GPA {
            Some(MmioTarget::IoApic)
        } else if self.platform.is_mmio(gpa) {
            Some(MmioTarget::Virtio)
        } else {
            None
        }
    }

    /// An EPT violation inside an MMIO region: decode the instruction at RIP and perform it
    /// against the region's device.
    fn mmio(&mut self, gpa: u64, info: &ExitInfo) -> Action {
        self.vcpu.stats.mmio_accesses += 1;
        let mut bytes = [0u8; 15];
        let Some(Fetched { len: n, mode, .. }) = self.fetch_instruction(info.rip, &mut bytes)
        else {
            return Action::Stop(StopReason::MmioUnemulated { gpa });
        };
        let index = self.vcpu.index;
        let target = self.mmio_target(gpa);
        let mut regs = InsnRegs {
            regs: &mut self.vcpu.regs,
        };
        let vm = &mut *self.vm;
        let (platform, memory, console) = (&mut vm.platform, &mut vm.memory, &mut vm.console);
        let lapic = &mut vm.lapics[index];
        let mut effect = vm::apic::ApicEffect::None;
        let mut eoi = false;
        let mut raised = false;
        let now = arch::rdtsc();
        let cache = &mut self.vcpu.decode_cache;
        let result =
            vm::insn::emulate_cached(cache, &bytes[..n], mode, &mut regs, |access| match target {
                Some(MmioTarget::LocalApic) => {
                    let (value, e) = guest_apic::xapic_access(lapic, gpa, access, now);
                    eoi |= guest_apic::is_eoi_write(gpa, &access);
                    effect = e;
                    value
                }
                Some(MmioTarget::IoApic) => platform.ioapic_mmio(gpa, access),
                _ => {
                    let (value, raise) = platform.mmio(gpa, access, memory, console);
                    raised |= raise;
                    value
                }
            });
        // A virtio register access that raised no interrupt line may take the fast path
        // (fast_path.rs; queued device work keeps its deadline).
        self.vcpu.exit_passive = target == Some(MmioTarget::Virtio) && !raised && result.is_ok();
        self.vcpu.stats.mmio_decode_hits = self.vcpu.decode_cache.hits;
        if target == Some(MmioTarget::LocalApic) {
            self.vcpu.stats.apic_accesses += 1;
            self.vcpu.stats.apic_eoi_exits += u64::from(eoi);
        }
        self.apic_effect(effect);
        self.vm.route_ioapic();
        match result {
            Ok(done) => {
                let _ = vmcs::write_guest(
                    vmcs::guest_field!(GUEST_RIP),
                    info.rip.wrapping_add(u64::from(done.len)),
                );
                Action::Resume
            }
            Err(e) => {
                error!(
                    "vm {}: cannot emulate the MMIO access at {gpa:#x} (RIP {:#x}): {e}",
                    self.name, info.rip
                );
                Action::Stop(StopReason::MmioUnemulated { gpa })
            }
        }
    }

    /// Copies up to 15 instruction bytes at the guest's RIP through its page tables, with the
    /// mode to decode them in (each VMCS field read once: a VMREAD is some 30 ticks in Bochs).
    fn fetch_instruction(&self, rip: u64, out: &mut [u8; 15]) -> Option<Fetched> {
        let state = vm::paging::PagingState {
            cr0: vmcs::read_exit(F::GUEST_CR0),
            cr3: vmcs::read_exit(F::GUEST_CR3),
            cr4: vmcs::read_exit(F::GUEST_CR4),
            efer: vmcs::read_exit(F::GUEST_IA32_EFER),
        };
        // CS access rights: L (bit 13) and D/B (bit 14), SDM Vol. 3C §25.4.1.
        let cs = vmcs::read_exit(F::GUEST_CS_ACCESS_RIGHTS);
        let lma = state.efer & control_regs::EFER_LMA != 0;
        let mode = vm::insn::CpuMode::from_segment(lma, cs & CS_L != 0, cs & CS_DB != 0);
        let linear = vmcs::read_exit(F::GUEST_CS_BASE).wrapping_add(rip);
        let mut n = 0;
        while n < out.len() {
            let la = linear.wrapping_add(n as u64);
            let gpa = vm::paging::translate(
                &state,
                la,
                |a| self.memory.read_u64(a),
                |a| {
                    let mut b = [0u8; 4];
                    self.memory.read(a, &mut b).map(|()| u32::from_le_bytes(b))
                },
            );
            let Ok(gpa) = gpa else { break };
            let chunk = ((4096 - (la & 0xfff)) as usize).min(out.len() - n);
            if self.memory.read(gpa, &mut out[n..n + chunk]).is_none() {
                break;
            }
            n += chunk;
        }
        (n > 0).then_some(Fetched { len: n, mode, lma })
    }

    /// Interrupt window open (reason 7): the pending interrupt is injected before the next
    /// entry (see `inject_pending_interrupt`).
    fn interrupt_window(&mut self) -> Action {
        let _ = setup::set_interrupt_window_exiting(&mut self.vcpu.controls, false);
        Action::Resume
    }

    /// VMX-preemption timer (reason 52): a device deadline or the end of the time slice.
    fn timer_expired(&mut self) -> Action {
        if arch::rdtsc() >= self.vcpu.slice_deadline() {
            Action::Yield
        } else {
            Action::Resume
        }
    }

    /// External interrupt (reason 1): the CPU acknowledged a host interrupt on exit (SDM Vol.
    /// 3C §25.7.1, the vector is in the VM-exit interruption information); end it at the host
    /// controller and let the guest continue.
    fn host_interrupt(&mut self) -> Action {
        let info = InterruptionInfo::from_raw(vmcs::read_exit(F::VM_EXIT_INTERRUPTION_INFO) as u32);
        if !info.valid() {
            return Action::Stop(StopReason::Bug(
                "external-interrupt exit without a vector although interrupts are acknowledged on exit",
            ));
        }
        if info.vector() == crate::lapic::KICK_VECTOR {
            // Another CPU wants this vCPU out of the guest (its VM stops, its EPT changed).
            if let Some(ticks) = crate::smp::kick_received() {
                self.vcpu.stats.record_kick(ticks);
            }
        }
        // Console input (COM1's receive interrupt) into the shell's queue, then the EOI.
        match crate::host_irq::taken(info.vector()) {
            crate::host_irq::Eoi::Sent(_) => self.vcpu.stats.host_interrupts_ended += 1,
            crate::host_irq::Eoi::Spurious(_) => self.vcpu.stats.host_interrupts_spurious += 1,
            crate::host_irq::Eoi::Unreachable(_) => self.vcpu.stats.host_interrupts_unended += 1,
        }
        Action::Resume
    }
}

/// Whether the guest's CS is a 64-bit code segment (CS.L, access-rights bit 13: SDM Vol. 3C
/// §25.4.1 Table 25-2).
/// CS access rights: the L (64-bit code) and D/B (default operand size) bits (SDM Vol. 3C
/// §25.4.1, Table 25-2).
const CS_L: u64 = 1 << 13;
const CS_DB: u64 = 1 << 14;

fn cs_long() -> bool {
    vmcs::read_exit(F::GUEST_CS_ACCESS_RIGHTS) & CS_L != 0
}

/// Whether the guest runs in 64-bit mode: IA-32e mode (EFER.LMA) with a 64-bit code segment
/// (CS.L; SDM Vol. 3A §5.2.1).
fn guest_long_mode() -> bool {
    vmcs::read_exit(F::GUEST_IA32_EFER) & control_regs::EFER_LMA != 0 && cs_long()
}

/// What [`VcpuExit::fetch_instruction`] found at RIP.
struct Fetched {
    len: usize,
    mode: vm::insn::CpuMode,
    /// EFER.LMA (IA-32e mode).
    lma: bool,
}

/// #GP(0) (SDM Vol. 3A §6.15).
fn gp() -> Action {
    Action::Inject {
        vector: ExceptionVector::GeneralProtection,
        error_code: Some(0),
    }
}

/// The guest-state field holding an MSR the VMCS switches.
fn vmcs_msr_field(msr: VmcsMsr) -> vmcs::GuestField {
    match msr {
        VmcsMsr::Efer => vmcs::guest_field!(GUEST_IA32_EFER),
        VmcsMsr::Pat => vmcs::guest_field!(GUEST_IA32_PAT),
        VmcsMsr::DebugCtl => vmcs::guest_field!(GUEST_IA32_DEBUGCTL),
        VmcsMsr::SysenterCs => vmcs::guest_field!(GUEST_IA32_SYSENTER_CS),
        VmcsMsr::SysenterEsp => vmcs::guest_field!(GUEST_IA32_SYSENTER_ESP),
        VmcsMsr::SysenterEip => vmcs::guest_field!(GUEST_IA32_SYSENTER_EIP),
        VmcsMsr::FsBase => vmcs::guest_field!(GUEST_FS_BASE),
        VmcsMsr::GsBase => vmcs::guest_field!(GUEST_GS_BASE),
    }
}

/// Guest registers for the instruction emulator.
struct InsnRegs<'a> {
    regs: &'a mut GuestRegs,
}

impl vm::insn::Registers for InsnRegs<'_> {
    fn get(&self, r: vm::insn::Gpr) -> u64 {
        exits::get_gpr(self.regs, r)
    }
    fn set(&mut self, r: vm::insn::Gpr, value: u64) {
        exits::set_gpr(self.regs, r, value);
    }
    fn rflags(&self) -> u64 {
        vmcs::read_exit(F::GUEST_RFLAGS)
    }
    fn set_rflags(&mut self, value: u64) {
        let _ = vmcs::write_guest(vmcs::guest_field!(GUEST_RFLAGS), value);
    }
}
