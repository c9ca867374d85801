//! A vCPU: its VMCS and everything the VMCS does not hold that is the vCPU's own (registers,
//! interrupt state, debug registers, extended state, MSRs, exit statistics, time slice). It
//! runs on its home CPU (scheduler.rs); the VM-wide state is in [`super::Vm`].

use super::*;
use vm::msr::MsrState;

/// vCPU scheduling state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Runnable,
    Halted,
    /// After INIT: only a start-up IPI makes it run again (SDM Vol. 3A §9.4.4, the
    /// wait-for-SIPI state emulated by not entering the guest).
    WaitForSipi,
    Stopped(StopReason),
}

/// One vCPU.
#[derive(Debug)]
pub struct Vcpu {
    /// The vCPU's number in its VM (0 = the boot vCPU; the CPUID APIC ID).
    pub(super) index: usize,
    pub(super) vmcs: vmcs::Vmcs,
    /// Its VPID (SDM Vol. 3C §29.1), for the VMCS and INVVPID when it restarts.
    pub(super) vpid: u16,
    /// The VM's epoch this vCPU last started in (restart.rs: a stopped vCPU of a VM rebuilt
    /// since starts again).
    pub(super) epoch: u64,
    pub(super) regs: GuestRegs,
    pub(super) launched: bool,
    /// Whether it has entered the guest once (`launched` is cleared again when the VMCS
    /// moves between CPUs).
    pub(super) entered: bool,
    /// Whether the VMCS's host-state area was written on this vCPU's CPU (scheduler.rs: a
    /// VMCS is VMCLEARed before it moves; the new CPU rewrites the host state).
    pub(super) host_state_written: bool,
    pub(super) controls: ControlSet,
    pub(super) state: State,
    /// An interrupt whose delivery an exit interrupted while the exit's handler injected an
    /// exception first (SDM Vol. 3A §6.15): delivered at the next interrupt window.
    pub(super) deferred_event: Option<Injection>,
    /// An NMI sent to this vCPU (its APIC's NMI delivery mode, SDM Vol. 3A §11.6.1), injected
    /// when NMIs are not blocked (SDM Vol. 3C §26.3.1.5).
    pub(super) nmi_pending: bool,
    /// A start-up IPI's vector taken in while the vCPU waited outside a slice: its start state
    /// is written when it next runs (its VMCS current).
    pub(super) pending_startup: Option<u8>,
    /// `KVM_HC_KICK_CPU` named this vCPU: it leaves its halt, or its next HLT returns at once
    /// (KVM's `pv_unhalted`; cleared when it does).
    pub(super) pv_unhalted: bool,
    /// Halted with RFLAGS.IF = 0 in a KVM PV VM: only a kick or an NMI wakes it.
    pub(super) halted_irqs_off: bool,
    /// Its last halt was the Bulkhead IDLE hypercall (a hint to sleep at once), not HLT.
    pub(super) idle_call: bool,
    /// The IOAPIC level-vector generation this vCPU's EOI-exit bitmap was written for
    /// (apic_virtualization.rs).
    pub(super) eoi_exit_generation: u64,
    /// DR0-DR3 and DR6 while the vCPU is not running (DR7 is in the VMCS).
    pub(super) debug: arch::DebugRegs,
    /// x87/SSE/AVX/... state and XCR0 while the vCPU is not running (xsave.rs).
    pub(super) xstate: xsave::ExtendedState,
    /// The MSRs the VMCS does not switch (vm::msr), with the TSC adjustment.
    pub(super) msr_state: MsrState,
    /// This vCPU's exit statistics (the VM's report adds them up).
    pub(super) stats: ExitStats,
    /// End of the current time slice (TSC).
    pub(super) slice_end: u64,
    /// When a halted vCPU on the same CPU is due (TSC): the slice ends early then.
    pub(super) wake_others_at: u64,
    /// What is left of a slice cut short for another vCPU's wake-up (resumed next).
    pub(super) slice_left: Option<u64>,
    /// Its VM's EPT shootdown state (ept_sync.rs): it enters its guest through it, lock-free.
    pub(super) ept_sync: alloc::sync::Arc<super::ept_sync::EptSync>,
    /// A pool vCPU (its VM has no `cpus`): any CPU of the pool runs its next slice, so its
    /// VMCS is VMCLEARed after each slice (SDM Vol. 3C §25.11.1).
    pub(super) pooled: bool,
    /// The CPU it last ran on.
    pub(super) last_cpu: Option<usize>,
    /// When its last slice ended with it still runnable (TSC): the wait until its next slice
    /// is its steal time (kvm_pv.rs).
    pub(super) ready_since: Option<u64>,
    /// `MSR_KVM_POLL_CONTROL` bit 0 (kvm_pv.rs): the guest lets the host poll before it
    /// halts this vCPU (true from reset, also without `kvm-pv`).
    pub(super) poll_control: bool,
    /// Until when (TSC) a simple exit may go back into the guest by the fast path
    /// (fast_path.rs): the deadline the last full pre-entry pass armed the preemption timer
    /// for; 0 when none was armed (every exit then takes the full pass).
    pub(super) fast_until: u64,
    /// Set by a handler whose exit changed nothing the pre-entry pass looks at beyond queued
    /// device work (a virtio register access that raised no line): it may resume by the fast
    /// path. Cleared before each dispatch.
    pub(super) exit_passive: bool,
    /// The MMIO instructions it decoded last (vm::insn::DecodeCache: a doorbell write decodes
    /// once).
    pub(super) decode_cache: vm::insn::DecodeCache,
    /// The VM's CPUID policy (shared, read-only): CPUID is answered from the vCPU alone.
    pub(super) cpuid: alloc::sync::Arc<vm::cpuid::CpuidPolicy>,
    /// Whether the VM offers KVM's PV interface (an untagged hypercall number is KVM's).
    pub(super) kvm_pv_offered: bool,
    /// Whether the next exit may be answered by the quick path (quick_exit.rs): the last
    /// full pre-entry pass armed the preemption timer for `fast_until` and left no PV EOI
    /// offer out (its result is read, under the VM's lock, after the next exit).
    pub(super) quick_armed: bool,
    /// Parked for its VM's snapshot (snapshot/mod.rs): not run, not woken, until the pause
    /// ends.
    pub(super) parked: bool,
}

impl Vcpu {
    /// Whether the host may poll for a wake-up before it sleeps while this vCPU halts
    /// (`MSR_KVM_POLL_CONTROL` bit 0, Documentation/virt/kvm/x86/msr.rst; the guest's
    /// `cpuidle-haltpoll` clears it while it polls itself). Read by the PV idle decision
    /// ([`Vcpu::host_polls`]).
    pub fn poll_control(&self) -> bool {
        self.poll_control
    }

    /// Halted or waiting for a start-up IPI: the scheduler checks it for a wake-up.
    pub(super) fn sleeps(&self) -> bool {
        !self.parked && matches!(self.state, State::Halted | State::WaitForSipi)
    }

    /// Runnable and not parked for a snapshot: the scheduler may give it a slice.
    pub(super) fn runnable(&self) -> bool {
        !self.parked && self.state == State::Runnable
    }

    /// Whether this halted vCPU lets its CPU poll for a wake-up before sleeping (PV idle): it
    /// halted with HLT (the IDLE hypercall asks for sleep at once) and its guest left host
    /// polling on.
    pub(super) fn host_polls(&self) -> bool {
        self.state == State::Halted && !self.idle_call && self.poll_control()
    }

    /// When this slice ends: its time is up, or a halted vCPU's device fires.
    pub(super) fn slice_deadline(&self) -> u64 {
        self.slice_end.min(self.wake_others_at)
    }

    /// Whether this vCPU's stopping stops its whole VM: every reason on the boot vCPU, and a
    /// fault or failure on any (a secondary vCPU that halts for good only parks itself).
    pub(super) fn stops_vm(&self, reason: StopReason) -> bool {
        self.index == 0
            || !matches!(
                reason,
                StopReason::HaltedWithInterruptsDisabled | StopReason::HaltedWithoutInterruptSource
            )
    }
}
