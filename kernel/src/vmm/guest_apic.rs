//! The guest's local APICs (one per vCPU, `vm::apic`) and its IOAPIC (`vm::devices::ioapic`)
//! connected to the VMCS: the xAPIC page and the IOAPIC window as MMIO (EPT violations), the
//! x2APIC MSRs, IA32_APIC_BASE and IA32_TSC_DEADLINE, interrupt messages routed to the vCPUs
//! their destination names (SDM Vol. 3A §11.6.2), and each vCPU's inbox of what other vCPUs
//! and devices sent it, taken in before its next entry (INIT and SIPI included: §9.4.4).
//!
//! The model owns every register; this module only moves accesses to it and applies the
//! [`ApicEffect`]s it returns.

use super::*;
use vm::apic::{
    ApicEffect, ApicMode, ApicPage, DeliveryMode, DestinationMode, Ipi, IpiDestination, LocalApic,
    Shorthand, TriggerMode, PAGE_WORDS,
};
use vm::devices::ioapic::{self, IoApicMessage};
use vm::insn::{DwordAccess, MmioAccess};
use vmx::posted::PendingVectors;

/// The IOAPIC's register window (82093AA §3.0; Bulkhead's MADT).
pub(super) const IOAPIC_GPA: u64 = ioapic::MMIO_BASE;
/// x2APIC MSR range (SDM Vol. 3A §11.12.1.2).
const X2APIC_MSRS: core::ops::RangeInclusive<u32> =
    vm::apic::registers::X2APIC_MSR_BASE..=vm::apic::registers::X2APIC_MSR_LAST;
use vm::apic::{IA32_APIC_BASE, IA32_TSC_DEADLINE};

/// The APIC timer's input clock: the core crystal clock of CPUID 0x15 (ECX), which for a TSC
/// below 2^32 Hz is the TSC frequency itself (vm::cpuid::tsc_leaf_15).
pub(super) fn timer_hz(tsc_hz: u64) -> u64 {
    let ratio = tsc_hz.div_ceil(u64::from(u32::MAX)).max(1);
    tsc_hz / ratio
}

/// A 4 KiB frame holding one vCPU's APIC registers: the model's register file and, with APIC
/// virtualization, the VMCS virtual-APIC page (SDM Vol. 3C §30.1), which the CPU reads and
/// writes while the vCPU runs.
#[derive(Debug)]
pub struct ApicFrame {
    phys: u64,
}

impl ApicFrame {
    /// A zeroed frame, or `None` when the frame allocator is empty.
    pub fn new() -> Option<Self> {
        let phys = memory::allocate_frame()?;
        // SAFETY: the frame was just allocated (4 KiB) and is mapped by the direct map.
        unsafe {
            core::ptr::write_bytes(memory::phys_to_virt(phys), 0, memory::FRAME_SIZE as usize)
        };
        Some(Self { phys })
    }
}

impl ApicFrame {
    /// Its physical address (the VMCS virtual-APIC address).
    pub fn phys(&self) -> u64 {
        self.phys
    }
}

impl Drop for ApicFrame {
    fn drop(&mut self) {
        // SAFETY: the frame was allocated in `new` and is owned only by this value; no VMCS
        // names it any more when its vCPU is dropped.
        unsafe { memory::free_frame(self.phys) };
    }
}

// SAFETY: the frame is owned by one VM and accessed only under that VM's lock.
unsafe impl Send for ApicFrame {}

impl ApicPage for ApicFrame {
    fn regs(&self) -> &[u32; PAGE_WORDS] {
        // SAFETY: the frame is 4 KiB, page-aligned, direct-mapped and owned by this value. With
        // APIC virtualization the CPU writes VTPR/VISR/VIRR only while the vCPU runs, when no
        // handler of its VM holds this reference (the VM's lock is not held across entry).
        unsafe { &*(memory::phys_to_virt(self.phys) as *const [u32; PAGE_WORDS]) }
    }
    fn regs_mut(&mut self) -> &mut [u32; PAGE_WORDS] {
        // SAFETY: as in `regs`, and `&mut self` makes the reference unique.
        unsafe { &mut *(memory::phys_to_virt(self.phys) as *mut [u32; PAGE_WORDS]) }
    }
}

/// What other vCPUs and devices sent one vCPU since it last ran (taken in under the VM's lock
/// before its next entry; a vCPU in the guest on another CPU is kicked to take it sooner).
#[derive(Debug, Default)]
pub struct Inbox {
    /// Fixed and lowest-priority interrupts by vector.
    pub fixed: PendingVectors,
    /// Those of them that are level-triggered (their TMR bit is set on acceptance).
    pub level: PendingVectors,
    pub nmi: bool,
    pub init: bool,
    /// The vector of the latest start-up IPI.
    pub sipi: Option<u8>,
    /// `KVM_HC_KICK_CPU` (kvm_hypercalls.rs): leave the halt.
    pub unhalt: bool,
}

impl Inbox {
    /// Whether anything waits here.
    pub fn is_empty(&self) -> bool {
        self.fixed.is_empty() && !self.nmi && !self.init && self.sipi.is_none() && !self.unhalt
    }
}

/// A VM's APIC virtualization (SDM Vol. 3C ch. 30; vmx::apicv), when the CPU has it.
#[derive(Debug, Clone, Copy)]
pub struct Apicv {
    /// The APIC-access page its EPT maps at the xAPIC base.
    pub apic_access: u64,
    /// The MSR bitmaps of vCPUs in xAPIC (every x2APIC MSR exits: #GP) and x2APIC mode.
    pub xapic_msr_bitmap: u64,
    pub x2apic_msr_bitmap: u64,
}

/// Interrupt messages routed to vCPUs (the VM's report prints them).
#[derive(Debug, Default, Clone, Copy)]
pub struct RoutingStats {
    /// Messages accepted by a vCPU (one per destination vCPU).
    pub messages: u64,
    /// Kicks sent to get a message to a vCPU in the guest on another CPU.
    pub kicks: u64,
    /// Messages of a delivery mode guests are not offered (SMI, ExtINT by message).
    pub dropped: u64,
}

/// What taking in the inbox asks of the vCPU's run loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Signal {
    None,
    /// INIT: the vCPU waits for a start-up IPI (SDM Vol. 3A §9.4.4, §11.4.7.3).
    Init,
    /// A start-up IPI for a vCPU waiting for one: start in real mode at `vector << 12`.
    Startup(u8),
    /// INIT on the boot vCPU: the VM is reset, which ends it ([`StopReason::InitOnBootVcpu`]).
    Reset,
}

/// How an interrupt message is delivered (SDM Vol. 3A §11.6.1; 82093AA §3.2.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Delivery {
    Fixed,
    LowestPriority,
    Nmi,
    Init,
    StartUp,
    /// Delivery modes guests are not offered: SMI, ExtINT by message, INIT de-assert,
    /// reserved IOAPIC modes. Dropped (and counted, except INIT de-assert, a no-op on every
    /// processor since the Pentium 4: §11.6.1).
    Dropped {
        count: bool,
    },
}

/// An interrupt message on the (virtual) APIC bus: from a vCPU's ICR or from the IOAPIC.
#[derive(Debug, Clone, Copy)]
pub(super) struct Message {
    pub delivery: Delivery,
    pub vector: u8,
    pub destination: IpiDestination,
    pub level_triggered: bool,
    /// From the IOAPIC: its 8-bit physical destination 0xFF is a broadcast for x2APIC-mode
    /// APICs too (whose own broadcast ID is 0xFFFFFFFF, §11.12.9).
    pub from_ioapic: bool,
}

impl Message {
    /// An IPI from a vCPU's ICR.
    pub fn from_ipi(ipi: &Ipi) -> Self {
        let delivery = match ipi.delivery_mode {
            DeliveryMode::Fixed => Delivery::Fixed,
            DeliveryMode::LowestPriority => Delivery::LowestPriority,
            DeliveryMode::Nmi => Delivery::Nmi,
            DeliveryMode::Init => Delivery::Init,
            DeliveryMode::StartUp => Delivery::StartUp,
            DeliveryMode::InitLevelDeassert => Delivery::Dropped { count: false },
            DeliveryMode::Smi => Delivery::Dropped { count: true },
        };
        Self {
            delivery,
            vector: ipi.vector,
            destination: ipi.destination(),
            level_triggered: ipi.trigger == TriggerMode::Level,
            from_ioapic: false,
        }
    }

    /// An IOAPIC redirection message (82093AA §3.2.4).
    pub fn from_ioapic(msg: &IoApicMessage) -> Self {
        let delivery = match msg.delivery {
            ioapic::DeliveryMode::Fixed => Delivery::Fixed,
            ioapic::DeliveryMode::LowestPriority => Delivery::LowestPriority,
            ioapic::DeliveryMode::Nmi => Delivery::Nmi,
            ioapic::DeliveryMode::Init => Delivery::Init,
            ioapic::DeliveryMode::Smi
            | ioapic::DeliveryMode::ExtInt
            | ioapic::DeliveryMode::Reserved(_) => Delivery::Dropped { count: true },
        };
        let mode = match msg.dest_mode {
            ioapic::DestinationMode::Physical => DestinationMode::Physical,
            ioapic::DestinationMode::Logical => DestinationMode::Logical,
        };
        Self {
            delivery,
            vector: msg.vector,
            destination: IpiDestination {
                shorthand: Shorthand::None,
                mode,
                destination: u32::from(msg.dest),
            },
            level_triggered: msg.level_triggered,
            from_ioapic: true,
        }
    }
}

impl Vm {
    /// Delivers an interrupt message from the IOAPIC or from vCPU `sender` (its ICR) to every
    /// vCPU its destination names (SDM Vol. 3A §11.6.2), through their inboxes (the sender's
    /// own share is taken in by the caller at once; vCPUs in the guest on other CPUs are
    /// kicked). A lowest-priority message goes to the matching vCPU whose APIC has the lowest
    /// task priority, the first such (the SDM leaves ties to the model: §11.6.2.4).
    pub(super) fn route(&mut self, msg: &Message, sender: Option<usize>) {
        if let Delivery::Dropped { count } = msg.delivery {
            self.apic_stats.dropped += u64::from(count);
            return;
        }
        let here = crate::percpu::current().index();
        let matches = |lapic: &LocalApic<ApicFrame>, is_sender: bool| {
            let mut dest = msg.destination;
            if msg.from_ioapic
                && dest.mode == DestinationMode::Physical
                && dest.destination == vm::apic::XAPIC_BROADCAST
                && lapic.mode() == ApicMode::X2Apic
            {
                dest.destination = vm::apic::X2APIC_BROADCAST;
            }
            lapic.accepts_destination(&dest, is_sender)
        };
        let targets = self.lapics.len();
        let lowest = (msg.delivery == Delivery::LowestPriority).then(|| {
            (0..targets)
                .filter(|&t| matches(&self.lapics[t], sender == Some(t)))
                .min_by_key(|&t| self.lapics[t].tpr())
        });
        let mut kick = 0u64;
        for target in 0..targets {
            let chosen = match lowest {
                Some(pick) => pick == Some(target),
                None => matches(&self.lapics[target], sender == Some(target)),
            };
            if !chosen {
                continue;
            }
            self.apic_stats.messages += 1;
            let inbox = &mut self.inboxes[target];
            match msg.delivery {
                Delivery::Fixed | Delivery::LowestPriority => {
                    inbox.fixed.insert(msg.vector);
                    if msg.level_triggered {
                        inbox.level.insert(msg.vector);
                    }
                }
                Delivery::Nmi => inbox.nmi = true,
                Delivery::Init => inbox.init = true,
                Delivery::StartUp => inbox.sipi = Some(msg.vector),
                Delivery::Dropped { .. } => {}
            }
            if let Some(&cpu) = self.vcpu_cpus.get(target) {
                if cpu != here && cpu < 64 && Some(target) != sender {
                    kick |= 1 << cpu;
                }
            }
        }
        for cpu in 0..64 {
            if kick & (1 << cpu) != 0 {
                crate::smp::kick(cpu);
                self.apic_stats.kicks += 1;
            }
        }
    }

    /// Routes what the IOAPIC sent since the last call (its pins changed in a device access,
    /// in device work or on a timer tick).
    pub(super) fn route_ioapic(&mut self) {
        while let Some(msg) = self.platform.take_ioapic_message() {
            self.route(&Message::from_ioapic(&msg), None);
        }
    }
}

impl VcpuExit<'_> {
    /// This vCPU's local APIC.
    pub(super) fn lapic(&mut self) -> &mut LocalApic<ApicFrame> {
        &mut self.vm.lapics[self.vcpu.index]
    }

    /// Applies what an access to this vCPU's APIC asked for.
    pub(super) fn apic_effect(&mut self, effect: ApicEffect) {
        match effect {
            // The run loop re-reads the timer deadline and the pending interrupt before every
            // entry; a self IPI is already in IRR; the MMIO target follows the mode per access.
            ApicEffect::None | ApicEffect::TimerChanged | ApicEffect::SelfIpi { .. } => {}
            ApicEffect::ModeChanged => {
                if let Err(why) = self.apic_mode_changed() {
                    self.stop(StopReason::Bug(why));
                }
            }
            ApicEffect::Ipi(ipi) => {
                let me = self.vcpu.index;
                // The sender's own share waits in its inbox like anyone's: the run loop takes
                // it in before the next entry (an INIT to itself included).
                self.vm.route(&Message::from_ipi(&ipi), Some(me));
            }
            ApicEffect::Eoi { vector, level } => {
                if level {
                    // EOI broadcast to the IOAPIC (SDM Vol. 3A §11.8.5).
                    self.vm.platform.ioapic_eoi(vector);
                    self.vm.route_ioapic();
                }
            }
        }
    }

    /// Takes in this vCPU's inbox (the VM's lock is held): interrupts into its APIC's IRR,
    /// INIT and start-up IPIs as a [`Signal`] for the run loop.
    pub(super) fn take_inbox(&mut self) -> Signal {
        let index = self.vcpu.index;
        if self.vm.inboxes[index].is_empty() {
            return Signal::None;
        }
        let inbox = core::mem::take(&mut self.vm.inboxes[index]);
        let lapic = &mut self.vm.lapics[index];
        for vector in inbox.fixed.iter() {
            lapic.accept(vector, inbox.level.contains(vector));
        }
        if inbox.nmi {
            self.vcpu.nmi_pending = true;
        }
        if inbox.unhalt {
            self.vcpu.pv_unhalted = true;
        }
        if inbox.init && index == 0 {
            return Signal::Reset;
        }
        if inbox.init {
            // INIT resets the APIC but its ID and base (SDM Vol. 3A §11.4.7.3); a start-up
            // IPI that came with it in the same batch is honoured after.
            self.vm.lapics[index].reset_for_init();
            self.vcpu.state = State::WaitForSipi;
            self.vcpu.nmi_pending = false;
            return match inbox.sipi {
                Some(vector) => Signal::Startup(vector),
                None => Signal::Init,
            };
        }
        match inbox.sipi {
            // A start-up IPI is ignored unless the vCPU waits for one (SDM Vol. 3A §9.4.4.1).
            Some(vector) if self.vcpu.state == State::WaitForSipi => Signal::Startup(vector),
            _ => Signal::None,
        }
    }
}

/// One decoded xAPIC MMIO access to `lapic` (32-bit registers at 16-byte offsets, SDM Vol.
/// 3A §11.4.1): the value read and the model's effect.
pub(super) fn xapic_access(
    lapic: &mut LocalApic<ApicFrame>,
    gpa: u64,
    access: MmioAccess,
    now: u64,
) -> (u64, ApicEffect) {
    match access.dword_register(gpa & 0xFFF) {
        read @ DwordAccess::Read { register, .. } => (
            read.narrow(lapic.mmio_read(register as u16, now)),
            ApicEffect::None,
        ),
        DwordAccess::Write { register, value } => {
            (0, lapic.mmio_write(register as u16, value, now))
        }
        DwordAccess::Ignored => (0, ApicEffect::None),
    }
}

/// Whether an access is a write to the xAPIC EOI register (for the exit statistics).
pub(super) fn is_eoi_write(gpa: u64, access: &MmioAccess) -> bool {
    let eoi = u64::from(vm::apic::ApicRegister::Eoi.offset());
    matches!(access, MmioAccess::Write { .. }) && gpa & 0xFF0 == eoi
}

impl VcpuExit<'_> {
    /// RDMSR of a local-APIC MSR: IA32_APIC_BASE, IA32_TSC_DEADLINE (in guest TSC units: the
    /// model keeps host TSC deadlines, SDM Vol. 3C §26.6.5) or an x2APIC register (#GP unless
    /// the APIC is in x2APIC mode, SDM Vol. 3A §11.12.1.2). `None`: not an APIC MSR.
    pub(super) fn apic_rdmsr(&mut self, msr: u32) -> Option<Result<u64, ()>> {
        let offset = self.vcpu.msr_state.tsc_offset;
        let now = arch::rdtsc();
        let lapic = self.lapic();
        let result = match msr {
            IA32_APIC_BASE => Ok(lapic.apic_base()),
            IA32_TSC_DEADLINE => Ok(match lapic.tsc_deadline(now) {
                0 => 0,
                host => host.wrapping_add(offset),
            }),
            m if X2APIC_MSRS.contains(&m) => lapic.msr_read(m, now).map_err(|_| ()),
            _ => return None,
        };
        if X2APIC_MSRS.contains(&msr) {
            self.vcpu.stats.apic_accesses += 1;
        }
        Some(result)
    }

    /// WRMSR of a local-APIC MSR (as [`Self::apic_rdmsr`]); the model's effect is applied.
    pub(super) fn apic_wrmsr(&mut self, msr: u32, value: u64) -> Option<Result<(), ()>> {
        let offset = self.vcpu.msr_state.tsc_offset;
        let now = arch::rdtsc();
        let lapic = self.lapic();
        let result = match msr {
            IA32_APIC_BASE => lapic.set_apic_base(value),
            IA32_TSC_DEADLINE => {
                let host = if value == 0 {
                    0
                } else {
                    value.wrapping_sub(offset)
                };
                Ok(lapic.set_tsc_deadline(host, now))
            }
            m if X2APIC_MSRS.contains(&m) => lapic.msr_write(m, value, now),
            _ => return None,
        };
        if X2APIC_MSRS.contains(&msr) {
            self.vcpu.stats.apic_accesses += 1;
            let eoi = vm::apic::ApicRegister::Eoi.x2apic_msr();
            self.vcpu.stats.apic_eoi_exits += u64::from(msr == eoi);
        }
        Some(match result {
            Ok(effect) => {
                self.apic_effect(effect);
                Ok(())
            }
            Err(_) => Err(()),
        })
    }
}
