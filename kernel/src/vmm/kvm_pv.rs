//! The KVM paravirtual interface of a VM with `kvm-pv` (docs/hypercall-abi.md §9): the PV
//! MSRs (kvmclock, wall clock, steal time, PV EOI, POLL_CONTROL) and the guest-memory areas
//! they place, kept up to date around VM entry. The bookkeeping and every layout is in the
//! host-tested `vm::kvm_pv` (`state`, `pvclock`, `steal_time`, `msr`); this is the glue to
//! guest memory, the local APIC and the TLB. The KVM hypercalls are in hypercalls.rs.

use super::*;
use core::sync::atomic::{fence, Ordering};
use vm::kvm_pv::state::{self, Effect, Update, VmPv};
use vm::kvm_pv::{msr, pvclock, steal_time};

/// Bulkhead's counters of one VM's PV use beyond `VmPv`'s.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct PvCounters {
    /// INVVPIDs done for `KVM_VCPU_FLUSH_TLB`.
    pub tlb_flushes: u64,
}

/// A new VM's KVM PV state (`None` without `kvm-pv`): its kvmclock counts from `epoch_tsc`
/// at `tsc_hz`.
pub(super) fn new_state(config: &VmConfig, tsc_hz: u64, epoch_tsc: u64) -> Option<VmPv> {
    if !config.kvm_pv {
        return None;
    }
    let clock = pvclock::Clock::new(tsc_hz, epoch_tsc)?;
    Some(VmPv::new(config.vcpus.max(1) as usize, clock))
}

/// Writes one versioned update: the odd version, a store fence, the fields, a store fence,
/// the even version (Linux's readers on any vCPU retry while it is odd or changed; x86
/// stores are not reordered with each other, SDM Vol. 3A §9.2.2, the fences keep the
/// compiler from doing so).
fn write_update<const N: usize>(memory: &mut GuestMemory, u: &Update<N>) -> Option<()> {
    memory.write(u.gpa, &u.odd.to_le_bytes())?;
    fence(Ordering::Release);
    memory.write(u.gpa + 4, &u.bytes[4..])?;
    fence(Ordering::Release);
    memory.write(u.gpa, &u.bytes[0..4])
}

impl Vm {
    /// Whether `[gpa, gpa + len)` (inside one page) is guest RAM: inside the VM's memory and
    /// not under an MMIO window (virtio-mmio, the IOAPIC, any local APIC's page).
    fn is_plain_ram(&self, gpa: u64, len: u64) -> bool {
        let Some(end) = gpa.checked_add(len) else {
            return false;
        };
        let page = gpa & !0xFFF;
        end <= self.memory.size()
            && !self.platform.is_mmio(gpa)
            && !self.platform.is_mmio(end - 1)
            && page != guest_apic::IOAPIC_GPA
            && !self.lapics.iter().any(|l| l.mmio_base() == page)
    }

    /// The report line of the PV features the guest enabled, with the counters.
    pub(super) fn kvm_pv_report(&self) {
        let Some(pv) = &self.kvm_pv else { return };
        let name = &self.name;
        info!("vm {name}: kvm-pv: {}", pv.enabled());
        info!(
            "vm {name}: kvm-pv counters: steal-ns={} pv-eois={} tlb-flushes={} refused-msr-writes={}",
            pv.stolen_ns, pv.pv_eois, self.kvm_pv_counters.tlb_flushes, pv.refused
        );
    }
}

impl VcpuExit<'_> {
    /// RDMSR of a KVM PV MSR in a `kvm-pv` VM: the value written (`None`: not one, or no
    /// `kvm-pv`; the MSR policy then answers, with #GP).
    pub(super) fn kvm_pv_rdmsr(&self, msr: u32) -> Option<u64> {
        self.vm.kvm_pv.as_ref()?.rdmsr(self.vcpu.index, msr)
    }

    /// WRMSR of a KVM PV MSR in a `kvm-pv` VM (`None`: not one). A refused write is #GP(0)
    /// (`vm::kvm_pv::msr`).
    pub(super) fn kvm_pv_wrmsr(&mut self, msr: u32, value: u64) -> Option<Action> {
        let index = self.vcpu.index;
        let vm = &mut *self.vm;
        let pv = vm.kvm_pv.as_ref()?;
        if !msr::is_pv_msr(msr) || index >= pv.vcpus.len() {
            return None;
        }
        // The state is taken out for the call, so the RAM check can borrow the VM.
        let mut pv = vm.kvm_pv.take()?;
        let result = pv.wrmsr(index, msr, value, |gpa, len| vm.is_plain_ram(gpa, len));
        vm.kvm_pv = Some(pv);
        let result = result?;
        let pv = vm.kvm_pv.as_mut()?;
        match result {
            Err(e) => {
                log::debug!("vm {}: vcpu {index}: {e}", vm.name);
                Some(gp())
            }
            Ok(Effect::WallClock(gpa)) => {
                let now = arch::rdtsc();
                let unix_ns = vm.platform.rtc_unix_ns(now);
                let update = pv.wall_clock(gpa, unix_ns, now);
                write_update(&mut vm.memory, &update);
                Some(Action::Advance)
            }
            Ok(Effect::Placed | Effect::None) => {
                if msr == msr::MSR_KVM_POLL_CONTROL {
                    self.vcpu.poll_control = pv.vcpus[index].host_poll_allowed();
                }
                Some(Action::Advance)
            }
        }
    }

    /// The vCPU's guest TSC moved (IA32_TSC, IA32_TSC_ADJUST) or it runs on another physical
    /// CPU: its kvmclock record is rewritten before it next enters.
    pub(super) fn kvm_pv_clock_changed(&mut self) {
        let index = self.vcpu.index;
        if let Some(pv) = self.vm.kvm_pv.as_mut() {
            pv.clock_changed(index);
        }
    }

    /// Before the first entry of a slice: the time the vCPU waited runnable since its last
    /// slice ended (`ready_since`) goes into its steal time, and `preempted` is cleared; a
    /// `KVM_VCPU_FLUSH_TLB` another vCPU left there flushes this vCPU's TLB (INVVPID).
    pub(super) fn kvm_pv_slice_start(&mut self, now: u64) {
        let Some(since) = self.vcpu.ready_since.take() else {
            return;
        };
        let index = self.vcpu.index;
        let tsc_hz = self.vm.tsc_hz.max(1);
        let waited_ns =
            (u128::from(now.saturating_sub(since)) * 1_000_000_000 / u128::from(tsc_hz)) as u64;
        let vm = &mut *self.vm;
        let Some(pv) = vm.kvm_pv.as_mut() else { return };
        let Some(gpa) = pv.vcpus.get(index).and_then(|v| v.steal_gpa()) else {
            return;
        };
        // Atomic: another vCPU may be setting KVM_VCPU_FLUSH_TLB with a compare-exchange.
        let preempted = vm
            .memory
            .swap_u8(gpa + steal_time::OFF_PREEMPTED as u64, 0)
            .unwrap_or(0);
        if let Some(update) = pv.steal_update(index, waited_ns.max(1)) {
            write_update(&mut vm.memory, &update);
        }
        if steal_time::on_entry(preempted).flush_tlb {
            if let Some(v) = pv.vcpus.get_mut(index) {
                v.enabled.tlb_flush = true;
            }
            vm.kvm_pv_counters.tlb_flushes += 1;
            if let Err(why) = flush_vpid(&vm.caps) {
                self.stop(StopReason::Bug(why));
            }
        }
    }

    /// Before each entry: the areas placed or made stale since the last one are written.
    pub(super) fn kvm_pv_before_entry(&mut self) {
        let index = self.vcpu.index;
        let offset = self.vcpu.msr_state.tsc_offset;
        let vm = &mut *self.vm;
        let Some(pv) = vm.kvm_pv.as_mut() else { return };
        if let Some(update) = pv.clock_update(index, offset) {
            write_update(&mut vm.memory, &update);
        }
        if let Some(update) = pv.steal_update(index, 0) {
            write_update(&mut vm.memory, &update);
        }
    }

    /// At the end of a slice: a vCPU still runnable was preempted, which its steal-time
    /// area says (`KVM_VCPU_PREEMPTED`, so other vCPUs stop spinning on its locks and may
    /// ask for a TLB flush instead of an IPI), and its waiting time starts.
    pub(super) fn kvm_pv_slice_end(&mut self, now: u64) {
        if self.vcpu.state != State::Runnable {
            return;
        }
        self.vcpu.ready_since = Some(now);
        let index = self.vcpu.index;
        let vm = &mut *self.vm;
        let Some(gpa) = vm
            .kvm_pv
            .as_ref()
            .and_then(|pv| pv.vcpus.get(index))
            .and_then(|v| v.steal_gpa())
        else {
            return;
        };
        let _ = vm.memory.write(
            gpa + steal_time::OFF_PREEMPTED as u64,
            &[steal_time::KVM_VCPU_PREEMPTED],
        );
    }

    /// Before entry, after the pending interrupt was injected: with the APIC emulated (no
    /// virtual-interrupt delivery), an edge-triggered interrupt in service alone, with
    /// nothing else requested, may be ended by the guest clearing its PV EOI bit instead of
    /// an EOI write that exits (KVM's `apic_sync_pv_eoi_to_guest` rule). With
    /// virtual-interrupt delivery the CPU virtualizes EOI writes without an exit for edge
    /// vectors (SDM Vol. 3C §30.1.4, EOI virtualization; level vectors exit through the
    /// EOI-exit bitmap), so the bit is never set and Linux's EOI write goes to the virtual
    /// APIC.
    pub(super) fn kvm_pv_eoi_offer(&mut self) {
        if self.vm.apicv.is_some() {
            return;
        }
        let index = self.vcpu.index;
        let vm = &mut *self.vm;
        let Some(v) = vm.kvm_pv.as_mut().and_then(|pv| pv.vcpus.get_mut(index)) else {
            return;
        };
        let Some(gpa) = v.pv_eoi_gpa() else { return };
        if v.pv_eoi_pending {
            return;
        }
        let lapic = &vm.lapics[index];
        let Some(vector) = lapic.highest_isr() else {
            return;
        };
        let allowed = state::pv_eoi_allowed(
            lapic.in_service_count(),
            lapic.highest_irr().is_some(),
            lapic.is_level_triggered(vector),
        );
        if allowed
            && vm
                .memory
                .write(gpa, &msr::KVM_PV_EOI_BIT.to_le_bytes())
                .is_some()
        {
            v.pv_eoi_pending = true;
        }
    }

    /// Whether a PV EOI offer is out for this vCPU (its bit set in guest memory; read back
    /// after the next exit by [`VcpuExit::kvm_pv_eoi_after_exit`]).
    pub(super) fn kvm_pv_eoi_out(&self) -> bool {
        self.vm
            .kvm_pv
            .as_ref()
            .and_then(|pv| pv.vcpus.get(self.vcpu.index))
            .is_some_and(|v| v.pv_eoi_pending)
    }

    /// After an exit: if the guest cleared the PV EOI bit, it ended the interrupt in service
    /// and the EOI is done for it now (KVM's `apic_sync_pv_eoi_from_guest`); otherwise the
    /// bit is taken back (an EOI register write or a new offer comes later). True when an
    /// offer was out: the next entry then needs the full pre-entry pass (a new offer, or the
    /// interrupt the EOI let through).
    pub(super) fn kvm_pv_eoi_after_exit(&mut self) -> bool {
        let index = self.vcpu.index;
        let vm = &mut *self.vm;
        let Some(pv) = vm.kvm_pv.as_mut() else {
            return false;
        };
        let Some(v) = pv.vcpus.get_mut(index) else {
            return false;
        };
        if !v.pv_eoi_pending {
            return false;
        }
        v.pv_eoi_pending = false;
        let Some(gpa) = v.pv_eoi_gpa() else {
            return true;
        };
        let mut word = [0u8; 4];
        if vm.memory.read(gpa, &mut word).is_none() {
            return true;
        }
        if state::pv_eoi_done(u32::from_le_bytes(word)) {
            pv.pv_eois += 1;
            let effect = vm.lapics[index].end_of_interrupt();
            self.apic_effect(effect);
        } else {
            let _ = vm.memory.write(gpa, &0u32.to_le_bytes());
        }
        true
    }
}

/// Flushes the current vCPU's linear and combined mappings on this CPU: INVVPID
/// single-context for the VPID in its VMCS (SDM Vol. 3C §29.4.3.3 and §31.3 "INVVPID"),
/// all-context where the CPU lacks single-context. Without VPIDs every VM entry flushes
/// them already (SDM Vol. 3C §29.4.3.1).
fn flush_vpid(caps: &Capabilities) -> Result<(), &'static str> {
    use vmx::caps::EptVpidCap;
    use vmx::instructions::InvvpidType;
    let vpid = vmcs::read(F::VPID).unwrap_or(0) as u16;
    if vpid == 0 || !caps.ept_vpid_has(EptVpidCap::INVVPID) {
        return Ok(());
    }
    let ty = if caps.ept_vpid_has(EptVpidCap::INVVPID_SINGLE_CONTEXT) {
        InvvpidType::SingleContext
    } else {
        InvvpidType::AllContext
    };
    // SAFETY: VMX root operation is active on this CPU; INVVPID only drops TLB entries of
    // this VPID (or all guest VPIDs), which the CPU refills from the guest's page tables.
    unsafe { vmx::instructions::invvpid(ty, vpid, 0) }.map_err(|_| "INVVPID failed")
}
