//! The scheduler: the placement plan (vm::placement) gives every vCPU a home CPU; each CPU in
//! VMX root runs its own vCPUs round-robin (its run queue), wakes its halted vCPUs when their
//! devices fire, and idles until the earliest wake-up. A dedicated CPU (a real-time partition)
//! runs only its VM's vCPUs, without time slicing, and leaves the console to the others.
//!
//! Locks: each VM's state is behind its own lock, held by a vCPU from an exit to the next
//! entry; a vCPU's own state is touched only by its home CPU. No lock is global to the exit
//! path: the shared structures left are the console queue (serial.rs: a bounded copy of at
//! most one line per call), the heap (not used on the exit path except by device work that
//! its VM's budget bounds) and the frame allocator (VM creation only).

use super::guest_apic::Signal;
use super::kvm_hypercalls::Sched;
use super::shell_ops;
use super::*;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use spin::{Mutex, Once};
use vm::placement::{self, VmRequest};

/// One VM as the scheduler holds it: its state behind its lock, and its vCPUs.
pub struct VmSlot {
    pub(super) vm: Mutex<Vm>,
    pub(super) vcpus: Vec<Mutex<Vcpu>>,
    /// Each running vCPU's exit statistics as of its last slice (None once it stopped: its
    /// counts are then in the VM's `finished_stats`), for the shell's `stats VM`: a pinned
    /// vCPU's own lock is held by its CPU for the whole run.
    pub(super) live: Vec<Mutex<Option<ExitStats>>>,
    /// Each vCPU's registers and scheduling state as of its last slice, copied on its own CPU
    /// from its own VMCS (the shell's `regs VM VCPU` never reads another CPU's VMCS).
    pub(super) regs: Vec<Mutex<Option<shell_ops::RegsSnapshot>>>,
    /// What it was created from (restart.rs builds it again from it) and its place in the
    /// configuration.
    pub(super) config: VmConfig,
    pub(super) config_index: usize,
    /// Bumped each time it is rebuilt; a stopped vCPU of an older epoch starts again.
    pub(super) epoch: AtomicU64,
    /// The boot state its vCPUs started from: its image's, as last loaded (a rebuild from
    /// the configuration loads it again; one from a snapshot keeps it).
    pub(super) boot: Mutex<loader::BootState>,
    /// A start asked for (`start`/`restart`, or the guest's reboot): rebuilt once every vCPU
    /// has stopped (shell_ops::service_starts).
    pub(super) pending_start: Mutex<Option<PendingStart>>,
    /// The guest's reboots that started it again, over the whole run.
    pub(super) reboots: AtomicU64,
    /// When its next reboot may rebuild it (its rebuilds' share of the console CPU bounded).
    pub(super) reboot_pacing: Mutex<vm::reboot::RebootPacing>,
    /// The snapshot a pending start restores (the shell's `restore`, snapshot/mod.rs).
    pub(super) restore_from: Mutex<Option<alloc::sync::Arc<vm::snapshot::Snapshot>>>,
    /// What its vCPUs continue from after a rebuild from a snapshot (None: its boot state).
    pub(super) resume: Mutex<Option<super::snapshot::Resume>>,
}

/// Who asked for a stopped VM to be built again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PendingStart {
    /// The shell's `start` or `restart`.
    Operator,
    /// The guest's reboot (`on-reboot = "restart"`): paced (vm::reboot), and cancelled by
    /// `stop`.
    Reboot,
}

impl VmSlot {
    /// The start waiting for this VM, if any.
    pub(super) fn pending_start(&self) -> Option<PendingStart> {
        *self.pending_start.lock()
    }
    /// Publishes `vcpu`'s statistics for the shell (after each of its slices).
    fn publish(&self, vcpu: &Vcpu) {
        if let Some(live) = self.live.get(vcpu.index) {
            let stats = (!matches!(vcpu.state, State::Stopped(_))).then(|| vcpu.stats.clone());
            *live.lock() = stats;
        }
        if let (Some(regs), Some(snap)) = (self.regs.get(vcpu.index), shell_ops::capture(vcpu)) {
            *regs.lock() = Some(snap);
        }
    }
}

/// The VMs the scheduler runs, once published (for the shell).
pub(super) fn slots() -> &'static [VmSlot] {
    VMS.get().map_or(&[], |v| v.as_slice())
}

// SAFETY: a `Vcpu` holds its VMCS region's address and boxed state of its own; only its home
// CPU uses it (through the mutex).
unsafe impl Send for Vcpu {}

/// What one CPU runs.
#[derive(Debug, Default, Clone)]
struct CpuWork {
    /// (VM slot, vCPU index) of every vCPU pinned here (`cpus`, `dedicated`).
    vcpus: Vec<(usize, usize)>,
    /// This CPU also runs the pool: the vCPUs of VMs without `cpus`.
    pool: bool,
    /// A real-time partition's CPU: its vCPUs are never time-sliced.
    dedicated: bool,
    /// This CPU drains the console queue.
    pumps: bool,
}

static VMS: Once<Vec<VmSlot>> = Once::new();
/// The boot archive the VMs were created from (restarts load their images again from it).
static ARCHIVE: Once<Archive<'static>> = Once::new();
/// Bumped by every rebuild (restart.rs): a CPU that has seen an older value looks for
/// stopped vCPUs to start again.
static REBUILDS: AtomicU64 = AtomicU64::new(0);
static WORK: Once<Vec<CpuWork>> = Once::new();
/// The pool's vCPUs (VM slot, vCPU index): any non-dedicated CPU runs them, a slice at a time.
static POOL: Once<Vec<(usize, usize)>> = Once::new();
/// Pool vCPUs not stopped yet.
static POOL_RUNNING: AtomicUsize = AtomicUsize::new(0);
/// Whether more than one CPU serves the pool (then a pool vCPU's VMCS is VMCLEARed after each
/// slice, so any of them can load it next).
static POOL_SHARED: AtomicBool = AtomicBool::new(false);

/// A pool vCPU stopped.
pub(super) fn pool_vcpu_stopped() {
    POOL_RUNNING.fetch_sub(1, Ordering::AcqRel);
}

/// A pool vCPU started again (restart.rs).
pub(super) fn pool_vcpu_restarted() {
    POOL_RUNNING.fetch_add(1, Ordering::AcqRel);
}

/// A VM was rebuilt (restart.rs): CPUs look for its stopped vCPUs.
pub(super) fn restarted() {
    REBUILDS.fetch_add(1, Ordering::AcqRel);
}

/// A stopped VM is about to start again (`start`/`restart`): it counts as running from now,
/// so the run does not end meanwhile; [`vm_finished`] balances it if it cannot.
pub(super) fn vm_starting() {
    RUNNING_VMS.fetch_add(1, Ordering::AcqRel);
}

/// The boot archive (set once the VMs are created).
pub(super) fn archive() -> Option<&'static Archive<'static>> {
    ARCHIVE.get()
}
static TIMESLICE: AtomicUsize = AtomicUsize::new(0);

/// The pool's timeslice in TSC ticks (`timeslice` in bulkhead.toml).
pub(super) fn timeslice_ticks() -> u64 {
    TIMESLICE.load(Ordering::Relaxed) as u64
}
/// VMs that still have a vCPU running.
static RUNNING_VMS: AtomicUsize = AtomicUsize::new(0);
/// Set when the plan is published: application processors start their run queues.
static PUBLISHED: AtomicBool = AtomicBool::new(false);

/// A VM's last vCPU stopped (its report is printed).
pub(super) fn vm_finished() {
    if RUNNING_VMS.fetch_sub(1, Ordering::AcqRel) == 1 {
        // Every CPU may be asleep with nothing to run (PV idle): wake them to end the run,
        // the boot CPU first.
        let here = crate::percpu::current().index();
        for cpu in 0..crate::smp::cpus().len() {
            if cpu != here {
                crate::smp::kick(cpu);
            }
        }
    }
}

/// Whether the VMs are placed and this CPU has vCPUs to run (application processors poll this
/// while idle, woken by the kick the boot CPU sends when it publishes the plan).
pub fn work_published() -> bool {
    PUBLISHED.load(Ordering::Acquire)
}

/// Creates every configured VM, places their vCPUs on the CPUs in VMX root, runs this CPU's
/// share and waits until every VM has stopped. Returns how many VMs were created and how many
/// could not be.
pub fn run(
    caps: &Capabilities,
    archive: &Archive<'static>,
    config: &Config,
    tsc_hz: u64,
) -> (usize, usize) {
    let online: Vec<u32> = crate::smp::online().iter().map(|&c| c as u32).collect();
    crate::idle::init(tsc_hz);
    let requests: Vec<VmRequest<'_>> = config.vms.iter().map(VmRequest::from).collect();
    let plan = match placement::plan(&requests, &online) {
        Ok(plan) => plan,
        Err(e) => {
            error!("bulkhead: cannot place the VMs' vCPUs: {e}");
            return (0, config.vms.len());
        }
    };
    let mut slots: Vec<VmSlot> = Vec::new();
    // Each created VM's vCPU homes, and whether it is pinned (else its vCPUs join the pool).
    let mut created_homes: Vec<(Vec<usize>, bool)> = Vec::new();
    let mut failed = 0;
    for (i, vc) in config.vms.iter().enumerate() {
        let homes: Vec<usize> = plan.homes[i].iter().map(|&c| c as usize).collect();
        match Vm::create(i, vc, archive, caps, tsc_hz, &homes) {
            Ok((vm, vcpus, boot)) => {
                let how = match (vc.dedicated, &vc.cpus) {
                    (true, _) => " (dedicated)",
                    (false, Some(_)) => " (pinned)",
                    (false, None) => " first (pool: it runs on any CPU no partition owns)",
                };
                for (k, cpu) in homes.iter().enumerate() {
                    info!("vm {}: vcpu {k} on cpu {cpu}{how}", vc.name);
                }
                slots.push(VmSlot {
                    vm: Mutex::new(vm),
                    live: vcpus.iter().map(|_| Mutex::new(None)).collect(),
                    regs: vcpus.iter().map(|_| Mutex::new(None)).collect(),
                    vcpus: vcpus.into_iter().map(Mutex::new).collect(),
                    config: vc.clone(),
                    config_index: i,
                    epoch: AtomicU64::new(0),
                    boot: Mutex::new(boot),
                    pending_start: Mutex::new(None),
                    reboots: AtomicU64::new(0),
                    reboot_pacing: Mutex::new(Default::default()),
                    restore_from: Mutex::new(None),
                    resume: Mutex::new(None),
                });
                created_homes.push((homes, vc.cpus.is_some()));
            }
            Err(e) => {
                error!("vm {}: not started: {e}", vc.name);
                failed += 1;
            }
        }
    }
    let created = slots.len();
    let cpus = crate::smp::cpus().len().max(1);
    let mut work = alloc::vec![CpuWork::default(); cpus];
    let mut pool = Vec::new();
    for (slot, (homes, pinned)) in created_homes.iter().enumerate() {
        for (k, &cpu) in homes.iter().enumerate() {
            if !*pinned {
                pool.push((slot, k));
            } else if let Some(w) = work.get_mut(cpu) {
                w.vcpus.push((slot, k));
            }
        }
    }
    for (cpu, w) in work.iter_mut().enumerate() {
        w.dedicated = plan.dedicated_to(cpu as u32).is_some();
    }
    let mut pool_cpus = 0;
    for &cpu in &online {
        let w = &mut work[cpu as usize];
        if !w.dedicated {
            w.pool = true;
            pool_cpus += 1;
        }
    }
    POOL_SHARED.store(pool_cpus > 1, Ordering::Relaxed);
    // Clones (`from-snapshot`) wait, stopped, for their start: neither they nor their pool
    // vCPUs run yet.
    let is_clone = |slot: usize| slots[slot].config.from_snapshot().is_some();
    let pool_running = pool.iter().filter(|&&(slot, _)| !is_clone(slot)).count();
    let running = (0..slots.len()).filter(|&s| !is_clone(s)).count();
    POOL_RUNNING.store(pool_running, Ordering::Release);
    POOL.call_once(|| pool);
    // The console is drained by the first CPU no real-time partition owns (else CPU 0).
    let pump_cpu = online
        .iter()
        .map(|&c| c as usize)
        .find(|&c| !work[c].dedicated)
        .unwrap_or(0);
    work[pump_cpu].pumps = true;
    // The 8259A sends COM1's interrupt to the boot CPU: taken there only when that CPU serves
    // the console (never on a real-time partition's CPU).
    if pump_cpu == 0 && crate::shell::use_receive_interrupt() {
        info!("shell: console input by COM1's receive interrupt (IRQ 4) and polling");
    }
    TIMESLICE.store(config.hypervisor.timeslice as usize, Ordering::Relaxed);
    RUNNING_VMS.store(running, Ordering::Release);
    ARCHIVE.call_once(|| archive.clone());
    VMS.call_once(|| slots);
    WORK.call_once(|| work);
    PUBLISHED.store(true, Ordering::Release);
    for &cpu in online.iter().filter(|&&c| c != 0) {
        crate::smp::kick(cpu as usize);
    }
    run_this_cpu();
    // This CPU's vCPUs are done: drain the console until the other CPUs' are too.
    while RUNNING_VMS.load(Ordering::Acquire) > 0 {
        crate::serial::pump_if_due(arch::rdtsc());
        crate::shell::poll_if_due(arch::rdtsc());
        crate::drivers::poll();
        // No vCPU of its own left: PV idle until the console or a driver needs it, woken by
        // the kick of the VM that stops last.
        crate::smp::kick_absorbed();
        crate::idle::wait(idle_until(arch::rdtsc(), None, true, tsc_hz), false);
    }
    // PV idle's accounting per CPU (idle.rs): residency per sleep state, polls, wake-ups.
    for &cpu in &online {
        info!(
            "cpu {cpu}: {}",
            crate::idle::stats(cpu as usize).line(tsc_hz)
        );
    }
    let (size, high_water) = memory::heap_size_and_high_water();
    info!(
        "heap: {} KiB, high-water {} KiB, reserved for guest-driven growth {} KiB",
        size / 1024,
        high_water / 1024,
        memory::heap_reserved() / 1024
    );
    (created, failed)
}

/// Runs this CPU's pinned vCPUs, and pool vCPUs a slice at a time, until all have stopped.
pub fn run_this_cpu() {
    let cpu = crate::percpu::current().index();
    let (Some(vms), Some(work), Some(pool)) = (VMS.get(), WORK.get(), POOL.get()) else {
        return;
    };
    let Some(mine) = work.get(cpu) else { return };
    let pool: &[(usize, usize)] = if mine.pool { pool } else { &[] };
    if mine.vcpus.is_empty() && pool.is_empty() {
        return;
    }
    // Only this CPU ever locks its pinned vCPUs: hold them for the whole run. Pool vCPUs are
    // taken with `try_lock` for one wake-up check or one slice at a time.
    let mut vcpus: Vec<(&VmSlot, spin::MutexGuard<'_, Vcpu>)> = mine
        .vcpus
        .iter()
        .map(|&(slot, k)| (&vms[slot], vms[slot].vcpus[k].lock()))
        .collect();
    let timeslice = if mine.dedicated {
        // A partition's vCPU runs until it halts or yields: no slice end to exit for.
        u64::MAX / 4
    } else {
        TIMESLICE.load(Ordering::Relaxed) as u64
    };
    let tsc_hz = vms.first().map_or(1_000_000_000, |s| s.vm.lock().tsc_hz);
    // A halted vCPU's timer may cut another vCPU's slice at most this often (100 µs): the PIT
    // model coalesces the ticks in between into one interrupt, as for any missed tick.
    let min_wake = tsc_hz / 10_000;
    let shared_pool = POOL_SHARED.load(Ordering::Relaxed);
    let mut next = 0;
    let mut next_pool = 0;
    // Pinned and pool vCPUs take turns.
    let mut pool_turn = false;
    // The vCPU whose slice was cut for a wake-up: it resumes after the woken one.
    let mut resume: Option<usize> = None;
    let mut pool_resume: Option<usize> = None;
    // The rebuilds this CPU has looked for stopped vCPUs after (restart.rs).
    let mut rebuilds_seen = 0;
    // Whether one of the vCPUs here may be parked for a snapshot (snapshot/mod.rs).
    let mut parked_here = false;
    loop {
        // Until every VM has stopped: a stopped VM may be started again (the shell's `start`
        // and `restart`), its vCPUs here with it.
        if RUNNING_VMS.load(Ordering::Acquire) == 0 {
            break;
        }
        let rebuilds = REBUILDS.load(Ordering::Acquire);
        if rebuilds != rebuilds_seen {
            for (slot, vcpu) in vcpus.iter_mut() {
                vcpu.restart_if_rebuilt(slot);
            }
            // A pool vCPU another CPU holds now is looked at again next pass.
            let mut all_seen = true;
            for &(s, k) in pool {
                match vms[s].vcpus[k].try_lock() {
                    Some(mut v) => {
                        v.restart_if_rebuilt(&vms[s]);
                    }
                    None => all_seen = false,
                }
            }
            if all_seen {
                rebuilds_seen = rebuilds;
            }
        }
        if parked_here || super::snapshot::pausing() {
            // A VM being paused for a snapshot: its vCPUs here park (or go on once the
            // snapshot is taken) on this, their home CPU (snapshot/mod.rs).
            parked_here = false;
            for (slot, vcpu) in vcpus.iter_mut() {
                parked_here |= vcpu.pause_check(slot, false);
            }
            for &(s, k) in pool {
                match vms[s].vcpus[k].try_lock() {
                    Some(mut v) => parked_here |= v.pause_check(&vms[s], shared_pool),
                    // Another CPU holds it now: looked at again next pass.
                    None => parked_here = true,
                }
            }
        }
        if mine.pumps {
            crate::serial::pump_if_due(arch::rdtsc());
            // The hypervisor shell: console input, a bounded number of bytes per pass, here
            // between slices and in the idle loop below, never in an exit handler.
            crate::shell::poll_if_due(arch::rdtsc());
            // Block drivers complete their requests here, a bounded step each, never in an
            // exit; the console-draining CPU does it (no real-time partition's).
            crate::drivers::poll();
        }
        let now = arch::rdtsc();
        let mut earliest: Option<u64> = None;
        // Queued device work of a sleeping vCPU's VM (done in its wake-up check) and whether
        // some sleeping vCPU lets the host poll before sleeping (idle.rs).
        let mut work_due: Option<u64> = None;
        let mut host_poll = false;
        let mut note = |w: Wake, host_polls: bool| {
            earliest = run_loop::min_deadline(earliest, w.deadline);
            work_due = run_loop::min_deadline(work_due, w.work_due);
            host_poll |= host_polls;
        };
        for (slot, vcpu) in vcpus.iter_mut().filter(|(_, v)| v.sleeps()) {
            note(wake_check(slot, vcpu, now), vcpu.host_polls());
            if matches!(vcpu.state, State::Stopped(_)) {
                slot.publish(vcpu);
            }
        }
        for &(s, k) in pool {
            if let Some(mut v) = vms[s].vcpus[k].try_lock() {
                if v.sleeps() {
                    note(wake_check(&vms[s], &mut v, now), v.host_polls());
                    if matches!(v.state, State::Stopped(_)) {
                        vms[s].publish(&v);
                    }
                }
            }
        }
        let wake_others_at = earliest.map_or(u64::MAX, |d| d.max(now.saturating_add(min_wake)));
        let pinned_pick = (0..vcpus.len())
            .map(|k| (next + k) % vcpus.len())
            .find(|&i| vcpus[i].1.runnable());
        pool_turn = !pool_turn;
        if pinned_pick.is_none() || (pool_turn && !pool.is_empty()) {
            // A runnable pool vCPU no other CPU holds, round-robin.
            let picked = (0..pool.len()).find_map(|j| {
                let at = (next_pool + j) % pool.len();
                let (s, k) = pool[at];
                let v = vms[s].vcpus[k].try_lock()?;
                v.runnable().then_some((at, &vms[s], v))
            });
            if let Some((at, slot, mut v)) = picked {
                let cut = run_loop::run_slice(slot, &mut v, timeslice, wake_others_at, mine.pumps);
                slot.publish(&v);
                if shared_pool {
                    // Another CPU may run it next, or start it again if it stopped (SDM Vol.
                    // 3C §25.11.1: VMCLEAR before a VMCS is made current on another
                    // processor).
                    if v.vmcs.clear().is_ok() {
                        v.launched = false;
                        v.host_state_written = false;
                    }
                }
                next_pool = if cut {
                    pool_resume = Some(at);
                    at + 1
                } else {
                    match pool_resume.take() {
                        Some(r) if r != at => r,
                        _ => at + 1,
                    }
                };
                continue;
            }
        }
        if let Some(i) = pinned_pick {
            let (slot, vcpu) = &mut vcpus[i];
            let cut = run_loop::run_slice(slot, vcpu, timeslice, wake_others_at, mine.pumps);
            slot.publish(vcpu);
            next = if cut {
                resume = Some(i);
                i + 1
            } else {
                match resume.take() {
                    Some(r) if r != i => r,
                    _ => i + 1,
                }
            };
            continue;
        }
        // Everything here is halted (or stopped, or running elsewhere): PV idle (idle.rs)
        // sleeps until the earliest device deadline or queued device work, woken early by
        // kicks from other CPUs. The console-draining CPU also wakes for console output and
        // input and, while a block or network driver has work in flight, every `poll`; any
        // CPU at least every `idle_bound` (a wake-up no kick announced).
        let until = idle_until(
            now,
            run_loop::min_deadline(earliest, work_due),
            mine.pumps,
            tsc_hz,
        );
        // A kick that reaches this CPU now finds no guest to take out of: the wake-up checks
        // serve it, and its latency must not count this idle time.
        crate::smp::kick_absorbed();
        crate::idle::wait(until, host_poll);
        crate::smp::kick_absorbed();
    }
}

/// Until when an idle CPU may sleep (PV idle, idle.rs): its earliest deadline (a sleeping
/// vCPU's timer, queued device work), for the console-draining CPU also the next console
/// output and input pass (and, while input is active, the next read of its receiver) and,
/// while a block or network driver has work in flight, 20 µs; any CPU at least every 10 ms (a
/// wake-up no kick announced).
fn idle_until(now: u64, deadline: Option<u64>, pumps: bool, tsc_hz: u64) -> u64 {
    let mut until = deadline
        .unwrap_or(u64::MAX)
        .min(now.saturating_add(tsc_hz / 100));
    if pumps {
        until = until
            .min(crate::serial::next_pump().unwrap_or(u64::MAX))
            .min(crate::shell::next_poll())
            .min(crate::shell::slice_deadline(now));
        if crate::drivers::busy() {
            until = until.min(now.saturating_add(tsc_hz / 50_000));
        }
    }
    until
}

/// What a wake-up check found for a sleeping vCPU.
struct Wake {
    /// Its next wake-up deadline (its timers).
    deadline: Option<u64>,
    /// When its VM's queued device work is next due (done in the next check).
    work_due: Option<u64>,
}

/// A halted vCPU, or one waiting for a start-up IPI: does its VM's device work, brings the
/// VM's timers and its local APIC's up to date, takes in what other vCPUs and devices sent it
/// (guest_apic.rs) and makes it runnable when an interrupt is pending for it or a start-up IPI
/// came; stops it when nothing can ever wake it, or when its VM is stopping. Returns its next
/// wake-up deadline.
fn wake_check(slot: &VmSlot, vcpu: &mut Vcpu, now: u64) -> Wake {
    let mut vm = slot.vm.lock();
    let deadline = wake_check_locked(&mut vm, vcpu, now);
    Wake {
        deadline,
        work_due: vm.platform.virtio.work_due(),
    }
}

/// A sleeping vCPU became runnable at `now`: until its next slice starts it waits for a CPU,
/// which its steal time counts (kvm_pv.rs), and KVM's SCHED_YIELD sees it as preempted.
fn woken(x: &mut VcpuExit<'_>, now: u64) {
    x.vcpu.state = State::Runnable;
    x.vcpu.ready_since.get_or_insert(now);
    let me = x.vcpu.index;
    x.vm.vcpu_sched[me] = Sched::Preempted;
}

/// [`wake_check`] under the VM's lock: the vCPU's own next wake-up deadline.
fn wake_check_locked(vm: &mut Vm, vcpu: &mut Vcpu, now: u64) -> Option<u64> {
    let mut x = VcpuExit { vm, vcpu };
    if let Some(reason) = x.vm.stopping {
        if x.vcpu.vmcs.load().is_ok() {
            x.stop(reason);
        }
        return None;
    }
    // Device work a sleeping vCPU waits for: one bounded round per pass, counted for its VM,
    // with the other vCPUs' slices in between.
    if x.vm.platform.virtio.work_due().is_some_and(|d| now >= d) {
        x.vm.device_work();
    }
    x.vm.platform.tick(now);
    x.vm.route_ioapic();
    let me = x.vcpu.index;
    match x.take_inbox() {
        Signal::Startup(vector) => {
            x.vcpu.pending_startup = Some(vector);
            woken(&mut x, now);
            return None;
        }
        Signal::Reset => {
            if x.vcpu.vmcs.load().is_ok() {
                x.stop(StopReason::InitOnBootVcpu);
            }
            return None;
        }
        Signal::Init | Signal::None => {}
    }
    if x.vcpu.state == State::WaitForSipi {
        // Only another vCPU's start-up IPI ends the wait (checked on each pass).
        return None;
    }
    x.vm.lapics[me].advance(now);
    if x.vcpu.pv_unhalted || (x.vcpu.halted_irqs_off && x.vcpu.nmi_pending) {
        // KVM_HC_KICK_CPU (PV_UNHALT) or an NMI: out of the halt, interrupts enabled or not.
        if x.vcpu.pv_unhalted {
            x.vm.kvm_calls.kick_woke += 1;
        }
        x.vcpu.pv_unhalted = false;
        x.vcpu.halted_irqs_off = false;
        woken(&mut x, now);
        return None;
    }
    if x.vcpu.halted_irqs_off {
        // Interrupts cannot wake it (SDM Vol. 2A HLT); only another vCPU's kick can.
        if !x.vm.another_may_kick(me) && x.vcpu.vmcs.load().is_ok() {
            x.stop(StopReason::HaltedWithInterruptsDisabled);
        }
        return None;
    }
    let boot_vcpu = me == 0;
    let pic =
        boot_vcpu && x.vm.lapics[0].accepts_extint() && x.vm.platform.pending_vector().is_some();
    if x.vcpu.deferred_event.is_some()
        || x.vcpu.nmi_pending
        || x.vm.lapics[me].pending().is_some()
        || pic
    {
        woken(&mut x, now);
        return None;
    }
    // Nothing can ever wake a vCPU with no timer of its own armed, no device able to
    // interrupt and no other vCPU of its VM running (which could send it an IPI or make a
    // device interrupt).
    let timer = x.vm.lapics[me].timer_deadline();
    let can_wake = timer.is_some() || x.vm.platform.can_wake() || x.vm.another_may_kick(me);
    if !can_wake {
        if x.vcpu.vmcs.load().is_ok() {
            x.halt_forever();
        }
        return None;
    }
    let pit = if boot_vcpu {
        x.vm.platform.next_wake()
    } else {
        None
    };
    run_loop::min_deadline(pit, timer)
}
