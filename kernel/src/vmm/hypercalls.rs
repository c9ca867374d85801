//! VMCALL: the hypercall ABI (docs/hypercall-abi.md) against one VM.

use super::*;
use hypercall::route::Abi;

/// The hypercall dispatcher's view of one VM.
struct HcHost<'a> {
    memory: &'a mut GuestMemory,
    console: &'a mut Console,
    stats: &'a ExitStats,
    tsc_hz: u64,
}

impl HypercallHost for HcHost<'_> {
    fn read_guest(&mut self, gpa: u64, buf: &mut [u8]) -> Result<(), HcError> {
        self.memory.read(gpa, buf).ok_or(HcError::BadAddress)
    }
    fn write_guest(&mut self, gpa: u64, data: &[u8]) -> Result<(), HcError> {
        self.memory.write(gpa, data).ok_or(HcError::BadAddress)
    }
    fn console_write(&mut self, bytes: &[u8]) {
        self.console.write(bytes);
    }
    fn console_discard(&mut self, len: usize) -> bool {
        self.console.discard_if_over_limit(len)
    }
    fn exit_stats(&self, out: &mut dyn FnMut(u32, u64, u64)) {
        for (reason, s) in self.stats.nonzero() {
            out(u32::from(reason), s.count, s.ticks);
        }
    }
    fn tick_hz(&self) -> u64 {
        self.tsc_hz
    }
    fn release_memory(&mut self, gpa: u64, pages: u64) -> Result<(), HcError> {
        match self.memory.release(gpa, pages * hypercall::call::PAGE_SIZE) {
            Ok(()) => Ok(()),
            Err(guest_memory::ReleaseError::OutsideRam) => Err(HcError::BadAddress),
            Err(e) => {
                warn!("MEM_RELEASE of {pages} page(s) at {gpa:#x} failed: {e:?}");
                Err(HcError::TooLarge)
            }
        }
    }
}

/// What a VMCALL passes: the registers as the guest's mode sees them, its CPL and mode.
pub(super) struct HcFrame {
    regs: HcRegs,
    cpl: u8,
    long: bool,
}

impl HcFrame {
    /// Reads the frame of the VMCALL `vcpu` just executed (two or three VMREADs).
    pub(super) fn read(vcpu: &Vcpu) -> HcFrame {
        let long = guest_long_mode();
        let r = &vcpu.regs;
        let regs = HcRegs {
            rax: r.rax,
            rbx: r.rbx,
            rcx: r.rcx,
            rdx: r.rdx,
            rsi: r.rsi,
        };
        HcFrame {
            regs: if long { regs } else { regs.low32() },
            // The CPL is the DPL of SS (SDM Vol. 3A §5.5; access rights bits 6:5, SDM Vol. 3C
            // §25.4.1).
            cpl: ((vmcs::read_exit(F::GUEST_SS_ACCESS_RIGHTS) >> 5) & 3) as u8,
            long,
        }
    }
}

/// A Bulkhead call that needs nothing of the VM (VERSION, NOP: `hypercall::host::
/// is_stateless`), answered from the vCPU alone; the quick path (quick_exit.rs) runs it
/// without the VM's lock. `None` for every other call.
pub(super) fn stateless_hypercall(vcpu: &mut Vcpu, frame: &HcFrame) -> Option<Action> {
    let Abi::Bulkhead(nr) = hypercall::route::route(frame.regs.rax, vcpu.kvm_pv_offered) else {
        return None;
    };
    let regs = HcRegs {
        rax: nr,
        ..frame.regs
    };
    let outcome = hypercall::host::dispatch_stateless(regs, frame.cpl)?;
    vcpu.stats.hypercalls += 1;
    vcpu.regs.rax = outcome.rax(frame.long);
    // A stateless call's action is always Continue.
    Some(Action::Advance)
}

impl VcpuExit<'_> {
    /// VMCALL (reason 18): the hypercall ABI v1 (docs/hypercall-abi.md).
    pub(super) fn hypercall(&mut self) -> Action {
        let frame = HcFrame::read(self.vcpu);
        if let Some(action) = stateless_hypercall(self.vcpu, &frame) {
            return action;
        }
        let HcFrame { regs, cpl, long } = frame;
        // A Bulkhead call may carry the ABI tag (docs/hypercall-abi.md §9.2); in a VM offered
        // KVM's interface an untagged number is KVM's.
        let nr = match hypercall::route::route(regs.rax, self.vm.kvm_pv_offered) {
            Abi::Bulkhead(nr) => nr,
            Abi::Kvm(nr) => {
                let args = [regs.rbx, regs.rcx, regs.rdx, regs.rsi];
                return self.kvm_hypercall(nr, args, cpl, long);
            }
        };
        let regs = HcRegs { rax: nr, ..regs };
        let outcome = {
            let vm = &mut *self.vm;
            let mut host = HcHost {
                memory: &mut vm.memory,
                console: &mut vm.console,
                stats: &self.vcpu.stats,
                tsc_hz: vm.tsc_hz,
            };
            hypercall::dispatch(&mut host, regs, cpl)
        };
        self.vcpu.stats.hypercalls += 1;
        if regs.rax == hypercall::call::MULTICALL {
            self.vcpu.stats.multicall_operations += u64::from(outcome.calls_executed);
        }
        self.vcpu.regs.rax = outcome.rax(long);
        match outcome.action {
            HcAction::Continue => Action::Advance,
            HcAction::Yield => Action::Yield,
            HcAction::Idle => {
                // PV idle (idle.rs): the guest says it is idle; its CPU sleeps without polling.
                self.vcpu.idle_call = true;
                self.vcpu.halted_irqs_off = false;
                Action::Halt
            }
        }
    }
}
