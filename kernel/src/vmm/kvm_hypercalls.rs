//! KVM's hypercalls in a VM offered the KVM paravirtual interface (`kvm-pv`; the decoding,
//! return codes and planning are `vm::kvm_pv::hypercall`, host-tested): `KVM_HC_KICK_CPU`
//! (PV_UNHALT), `KVM_HC_SEND_IPI` (PV_SEND_IPI) and `KVM_HC_SCHED_YIELD` (PV_SCHED_YIELD), as
//! Linux's guest side (`arch/x86/kernel/kvm.c`) uses them and
//! Documentation/virt/kvm/x86/hypercalls.rst describes them. One handler per call.

use super::guest_apic::{Delivery, Message};
use super::*;
// Vectors 0-15 are illegal as interrupts (SDM Vol. 3A §11.5.3, "illegal vector").
use vm::apic::{DestinationMode, IpiDestination, Shorthand, FIRST_LEGAL_VECTOR};
use vm::kvm_pv::hypercall::{self as kvm, IpiKind, KvmCall};

/// How one vCPU stands for the scheduler, as KVM's PV calls see it (VM-wide, so another
/// vCPU's handler can read it under the VM's lock).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Sched {
    /// In a time slice on some CPU.
    Running,
    /// Runnable but not in a slice: `KVM_HC_SCHED_YIELD` toward it gives up the caller's slice.
    Preempted,
    /// Halted with interrupts enabled: its timer or a device may still wake it.
    Halted,
    /// Waiting for a start-up IPI (SDM Vol. 3A §9.4.4): it cannot run on its own.
    WaitForSipi,
    /// Halted with RFLAGS.IF = 0 in a KVM PV VM (Linux's `kvm_wait` with interrupts off): only
    /// `KVM_HC_KICK_CPU` or an NMI wakes it.
    HaltedIrqsOff,
    Stopped,
}

impl Sched {
    /// Whether a vCPU in this state may still run and so kick another.
    pub(super) fn may_kick(self) -> bool {
        matches!(self, Sched::Running | Sched::Preempted | Sched::Halted)
    }

    /// The state of a vCPU after its slice.
    pub(super) fn after_slice(vcpu: &Vcpu) -> Self {
        match vcpu.state {
            State::Runnable => Sched::Preempted,
            State::Halted if vcpu.halted_irqs_off => Sched::HaltedIrqsOff,
            State::Halted => Sched::Halted,
            State::WaitForSipi => Sched::WaitForSipi,
            State::Stopped(_) => Sched::Stopped,
        }
    }
}

impl Vm {
    /// The vCPU whose local APIC has `apic_id` (in its APIC's current mode's format).
    fn vcpu_of_apic_id(&self, apic_id: u32) -> Option<usize> {
        self.lapics.iter().position(|l| l.apic_id() == apic_id)
    }

    /// Whether a vCPU other than `me` may still run (and so kick `me`).
    pub(super) fn another_may_kick(&self, me: usize) -> bool {
        self.vcpu_sched
            .iter()
            .enumerate()
            .any(|(i, s)| i != me && s.may_kick())
    }
}

impl VcpuExit<'_> {
    /// A KVM hypercall: number `nr` (RAX), arguments RBX, RCX, RDX, RSI (already truncated
    /// for a 32-bit caller), result in RAX. CPL > 0 gets `-KVM_EPERM`, an unknown number
    /// `-KVM_ENOSYS`.
    pub(super) fn kvm_hypercall(&mut self, nr: u64, args: [u64; 4], cpl: u8, long: bool) -> Action {
        self.vcpu.stats.hypercalls += 1;
        let (result, action) = match kvm::check_cpl(cpl) {
            Err(e) => (Err(e), Action::Advance),
            Ok(()) => match kvm::decode(nr, args, long) {
                KvmCall::KickCpu { apic_id } => self.kvm_kick_cpu(apic_id),
                KvmCall::SendIpi {
                    bitmap,
                    min,
                    vector,
                    delivery_mode,
                } => match IpiKind::from_icr(delivery_mode, vector) {
                    Ok(kind) => (Ok(self.kvm_send_ipi(bitmap, min, kind)), Action::Advance),
                    Err(e) => (Err(e), Action::Advance),
                },
                KvmCall::SendIpiBadIcr => (Err(kvm::KVM_EINVAL), Action::Advance),
                KvmCall::SchedYield { apic_id } => self.kvm_sched_yield(apic_id),
                KvmCall::Unknown(_) => (Err(kvm::KVM_ENOSYS), Action::Advance),
            },
        };
        let stats = &mut self.vm.kvm_calls;
        match result {
            Err(kvm::KVM_EPERM) => stats.eperm += 1,
            Err(kvm::KVM_ENOSYS) => stats.enosys += 1,
            Err(_) => stats.einval += 1,
            Ok(_) => {}
        }
        self.vcpu.regs.rax = kvm::result_rax(result, long);
        action
    }

    /// `KVM_HC_KICK_CPU(flags, apic_id)`: the vCPU with that APIC ID leaves its halt (or, if it
    /// is not halted, its next HLT returns at once: KVM's `pv_unhalted`), even with interrupts
    /// disabled; then the caller yields toward it if it shares this CPU, as KVM's handler
    /// does (`kvm_sched_yield` after the kick). Returns 0, also for an APIC ID no vCPU has
    /// (KVM ignores those).
    fn kvm_kick_cpu(&mut self, apic_id: u32) -> (Result<u64, i64>, Action) {
        self.vm.kvm_calls.kick_cpu += 1;
        let Some(target) = self.vm.vcpu_of_apic_id(apic_id) else {
            self.vm.kvm_calls.kick_no_target += 1;
            return (Ok(0), Action::Advance);
        };
        self.vm.inboxes[target].unhalt = true;
        let here = crate::percpu::current().index();
        let cpu = self.vm.vcpu_cpus.get(target).copied();
        let action = match cpu {
            Some(cpu) if cpu != here => {
                crate::smp::kick(cpu);
                Action::Advance
            }
            // The caller's own halt flag: nothing to yield to.
            _ if target == self.vcpu.index => Action::Advance,
            _ => Action::Yield,
        };
        (Ok(0), action)
    }

    /// `KVM_HC_SEND_IPI(bitmap_low, bitmap_high, min, icr)`: the interrupt (or NMI) to every
    /// vCPU whose APIC ID the bitmap names, through the guest APIC model (their inboxes, kicks
    /// for vCPUs on other CPUs). Returns how many were delivered: vCPUs that exist and, for a
    /// fixed interrupt, whose APIC is enabled (SDM Vol. 3A §11.4.7.2: a disabled APIC accepts
    /// none; KVM's `kvm_apic_set_irq` counts the same way). APIC IDs no vCPU has are skipped.
    fn kvm_send_ipi(&mut self, bitmap: u128, min: u32, kind: IpiKind) -> u64 {
        self.vm.kvm_calls.send_ipi += 1;
        let plan = kvm::plan_send_ipi(bitmap, min, |id| self.vm.vcpu_of_apic_id(id));
        self.vm.kvm_calls.ipis_no_target += u64::from(plan.no_target);
        let me = self.vcpu.index;
        let mut delivered = 0;
        for target in plan.targets {
            let (delivery, vector) = match kind {
                IpiKind::Fixed(v) => (Delivery::Fixed, v),
                IpiKind::Nmi => (Delivery::Nmi, 0),
            };
            if delivery == Delivery::Fixed
                && (!self.vm.lapics[target].is_enabled() || vector < FIRST_LEGAL_VECTOR)
            {
                continue;
            }
            let msg = Message {
                delivery,
                vector,
                destination: IpiDestination {
                    shorthand: Shorthand::None,
                    mode: DestinationMode::Physical,
                    destination: self.vm.lapics[target].apic_id(),
                },
                level_triggered: false,
                from_ioapic: false,
            };
            self.vm.route(&msg, Some(me));
            delivered += 1;
        }
        self.vm.kvm_calls.ipis_delivered += delivered;
        delivered
    }

    /// `KVM_HC_SCHED_YIELD(apic_id)`: the caller waits for that vCPU (a lock holder, an IPI
    /// target); if it is preempted (runnable, not in a slice), this vCPU gives up the rest of
    /// its slice so the scheduler can run it. Returns 0 in every case (KVM does).
    fn kvm_sched_yield(&mut self, apic_id: u32) -> (Result<u64, i64>, Action) {
        self.vm.kvm_calls.sched_yield += 1;
        let preempted = self
            .vm
            .vcpu_of_apic_id(apic_id)
            .filter(|&t| t != self.vcpu.index)
            .is_some_and(|t| self.vm.vcpu_sched.get(t) == Some(&Sched::Preempted));
        if preempted {
            self.vm.kvm_calls.yielded += 1;
            (Ok(0), Action::Yield)
        } else {
            (Ok(0), Action::Advance)
        }
    }
}
