//! Keeping every CPU's cached EPT translations of one VM in step with its EPT (SDM Vol. 3C
//! §29.4.3.4: after a change that removes or restricts a mapping, or points it elsewhere,
//! translations cached from the old entry may be used until an INVEPT on each CPU that may
//! hold them). INVEPT acts on the executing CPU only, so a change is a *shootdown*: the CPU
//! that made it flushes itself, and every other CPU running one of the VM's vCPUs in guest
//! mode is kicked out of it and flushes before it enters again; the changer waits until each
//! has, so that when it goes on (a copy-on-write fault resumes its guest, a device signals its
//! guest) no vCPU can still reach the old frame.
//!
//! The handshake is lock-free (the changer holds the VM's lock, a vCPU enters without it):
//! a vCPU sets its `in_guest` flag, then reads the generation and flushes if it is newer than
//! its last flush; the changer bumps the generation, then reads each vCPU's flag. With
//! sequentially consistent accesses on both sides, either the vCPU sees the new generation
//! before its entry, or the changer sees it in guest mode and waits for its exit (which
//! clears the flag right after VM exit, before any lock is taken: no deadlock).

use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

/// One vCPU's side of the handshake.
#[derive(Debug, Default)]
struct VcpuTlb {
    in_guest: AtomicBool,
    /// The generation it last flushed for (on the CPU it runs on).
    flushed: AtomicU64,
    /// The CPU it runs on (whom to kick).
    cpu: AtomicUsize,
}

/// A VM's EPT generation and its vCPUs' flushes.
#[derive(Debug)]
pub struct EptSync {
    generation: AtomicU64,
    vcpus: Vec<VcpuTlb>,
    eptp: u64,
    invept: vmx::instructions::InveptType,
}

/// Ticks a shootdown waits for one vCPU before it reports a hypervisor bug (a vCPU in guest
/// mode that does not exit on a kick): 10^10 (seconds on any CPU).
const PATIENCE: u64 = 10_000_000_000;

impl EptSync {
    pub fn new(vcpus: usize, eptp: u64, invept: vmx::instructions::InveptType) -> Self {
        EptSync {
            generation: AtomicU64::new(0),
            vcpus: (0..vcpus).map(|_| VcpuTlb::default()).collect(),
            eptp,
            invept,
        }
    }

    /// INVEPT of this VM's translations on this CPU.
    pub fn invept_here(&self) -> Result<(), vmx::error::VmFail> {
        // SAFETY: VMX root operation is active on every CPU that runs VMs; the EPTP is this
        // VM's own, so only its cached translations are dropped.
        unsafe { vmx::instructions::invept(self.invept, self.eptp) }
    }

    /// vCPU `index` is about to enter its guest on CPU `cpu`: marks it in guest mode and
    /// flushes this CPU if the EPT changed since its last flush. `Err` when INVEPT failed
    /// (then it is marked out again and must not enter).
    pub fn enter(&self, index: usize, cpu: usize) -> Result<(), vmx::error::VmFail> {
        let Some(v) = self.vcpus.get(index) else {
            return Ok(());
        };
        v.cpu.store(cpu, Ordering::Relaxed);
        v.in_guest.store(true, Ordering::SeqCst);
        let generation = self.generation.load(Ordering::SeqCst);
        if v.flushed.load(Ordering::Relaxed) != generation {
            if let Err(e) = self.invept_here() {
                v.in_guest.store(false, Ordering::SeqCst);
                return Err(e);
            }
            v.flushed.store(generation, Ordering::SeqCst);
        }
        Ok(())
    }

    /// vCPU `index` left guest mode (right after its VM exit).
    pub fn exited(&self, index: usize) {
        if let Some(v) = self.vcpus.get(index) {
            v.in_guest.store(false, Ordering::SeqCst);
        }
    }

    /// vCPU `index` flushed this CPU for the current generation outside [`EptSync::enter`]
    /// (a migration's INVEPT).
    pub fn flushed_here(&self, index: usize) {
        if let Some(v) = self.vcpus.get(index) {
            v.flushed
                .store(self.generation.load(Ordering::SeqCst), Ordering::SeqCst);
        }
    }

    /// The EPT changed: flushes this CPU, then kicks every vCPU in guest mode that has not
    /// flushed since and waits until each has left guest mode or flushed. Called with the
    /// VM's lock held, by a vCPU of the VM (outside guest mode) or by another CPU (device
    /// work for the VM). Returns the kicks sent.
    pub fn shootdown(&self) -> Result<u32, ShootdownError> {
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        self.invept_here().map_err(ShootdownError::Invept)?;
        let here = crate::percpu::current().index();
        let mut kicks = 0;
        for (i, v) in self.vcpus.iter().enumerate() {
            let pending = || {
                v.in_guest.load(Ordering::SeqCst) && v.flushed.load(Ordering::SeqCst) < generation
            };
            if !pending() {
                continue;
            }
            let cpu = v.cpu.load(Ordering::Relaxed);
            if cpu == here {
                // In guest mode on this CPU, which runs this code in root mode: only a stale
                // flag (the vCPU left the guest before its flag was cleared) can say so.
                continue;
            }
            crate::smp::kick(cpu);
            kicks += 1;
            let start = crate::arch::rdtsc();
            while pending() {
                if crate::arch::rdtsc().saturating_sub(start) > PATIENCE {
                    return Err(ShootdownError::NoExit { vcpu: i, cpu });
                }
                core::hint::spin_loop();
            }
        }
        Ok(kicks)
    }
}

/// Why a shootdown did not complete (hypervisor bugs: the VM that needed it stops).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShootdownError {
    Invept(vmx::error::VmFail),
    /// A vCPU stayed in guest mode after its CPU was kicked.
    NoExit {
        vcpu: usize,
        cpu: usize,
    },
}

impl core::fmt::Display for ShootdownError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ShootdownError::Invept(e) => write!(f, "INVEPT failed: {e}"),
            ShootdownError::NoExit { vcpu, cpu } => write!(
                f,
                "vcpu {vcpu} on cpu {cpu} did not leave guest mode when kicked for an EPT flush"
            ),
        }
    }
}
