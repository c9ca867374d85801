//! Every CPU of the machine: the processors the ACPI MADT lists are started with
//! INIT-SIPI-SIPI (SDM Vol. 3A §9.4.4.1) through the start-up code in low memory, one at a
//! time; each loads its own GDT/TSS and per-CPU block, checks its own FEATURE_CONTROL and VMX
//! capabilities against the boot CPU's, and enters VMX root operation with its own VMXON
//! region. A CPU that does not come up is reported with the reason and left out, never waited
//! for without a bound.
//!
//! The application processors are started before the boot CPU's VMXON: INIT is blocked in
//! VMX root operation (SDM Vol. 3C §24.8), and Bochs 2.7 mishandles INIT/SIPI around VMX
//! (../shared/platform-notes.md).

pub mod madt;
mod trampoline;

use crate::{arch, lapic, vmxon};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use log::{info, warn};
use spin::Once;
use vmx::caps::{Capabilities, RawCapabilities};

/// Each application processor's kernel stack.
const AP_STACK_BYTES: usize = 128 * 1024;
/// Bulkhead uses at most this many CPUs (more are reported and left out).
pub const MAX_CPUS: usize = 64;

/// Where a CPU is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum CpuState {
    /// Not started (yet), or given up on.
    Offline = 0,
    /// Sent INIT-SIPI-SIPI; its code has not reported back.
    Starting = 1,
    /// In VMX root operation, waiting for or running vCPUs.
    VmxRoot = 2,
    /// Came up but cannot run VMs (the reason is in its slot).
    Failed = 3,
    /// Left VMX operation at the end of the run.
    Stopped = 4,
}

impl CpuState {
    fn from_u8(v: u8) -> CpuState {
        match v {
            1 => CpuState::Starting,
            2 => CpuState::VmxRoot,
            3 => CpuState::Failed,
            4 => CpuState::Stopped,
            _ => CpuState::Offline,
        }
    }
}

/// Why an application processor cannot run VMs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ApFailure {
    None = 0,
    NoResponse = 1,
    NoVmx = 2,
    FeatureControl = 3,
    CapabilitiesDiffer = 4,
    Vmxon = 5,
    Lapic = 6,
    TooMany = 7,
}

impl ApFailure {
    fn from_u8(v: u8) -> ApFailure {
        match v {
            1 => ApFailure::NoResponse,
            2 => ApFailure::NoVmx,
            3 => ApFailure::FeatureControl,
            4 => ApFailure::CapabilitiesDiffer,
            5 => ApFailure::Vmxon,
            6 => ApFailure::Lapic,
            7 => ApFailure::TooMany,
            _ => ApFailure::None,
        }
    }

    fn text(self) -> &'static str {
        match self {
            ApFailure::None => "no reason recorded",
            ApFailure::NoResponse => "no response to INIT-SIPI-SIPI within 1 s",
            ApFailure::NoVmx => "this CPU does not offer VT-x (CPUID.1:ECX.VMX = 0)",
            ApFailure::FeatureControl => {
                "IA32_FEATURE_CONTROL is locked with VMX disabled on this CPU (firmware setup)"
            }
            ApFailure::CapabilitiesDiffer => {
                "its VMX capability MSRs differ from the boot CPU's (mixed CPU models are not supported)"
            }
            ApFailure::Vmxon => "VMXON failed on this CPU",
            ApFailure::Lapic => "its local APIC is disabled",
            ApFailure::TooMany => "Bulkhead uses at most 64 CPUs",
        }
    }
}

/// One CPU as the boot CPU sees it.
#[derive(Debug)]
pub struct CpuSlot {
    pub apic_id: u32,
    state: AtomicU8,
    failure: AtomicU8,
    /// How far its start-up code got when it did not answer (trampoline progress).
    progress: AtomicU64,
}

impl CpuSlot {
    pub fn state(&self) -> CpuState {
        CpuState::from_u8(self.state.load(Ordering::Acquire))
    }

    fn set(&self, state: CpuState) {
        self.state.store(state as u8, Ordering::Release);
    }

    fn fail(&self, why: ApFailure) {
        self.failure.store(why as u8, Ordering::Relaxed);
        self.set(CpuState::Failed);
    }
}

/// The values every application processor copies from the boot CPU.
#[derive(Debug)]
struct BootCpu {
    cr0: u64,
    cr3: u64,
    cr4: u64,
    efer: u64,
    pat: u64,
    raw_caps: RawCapabilities,
    caps: Capabilities,
    has_smx: bool,
}

static CPUS: Once<Vec<CpuSlot>> = Once::new();
/// The TSC handshake of a starting AP: it sets [`TSC_WANTED`], the boot CPU answers with its
/// TSC in [`TSC_NOW`] and sets [`TSC_SENT`]; the AP writes it to its own TSC.
static TSC_WANTED: AtomicBool = AtomicBool::new(false);
static TSC_SENT: AtomicBool = AtomicBool::new(false);
static TSC_NOW: AtomicU64 = AtomicU64::new(0);
static BOOT: Once<BootCpu> = Once::new();
/// Set at the end of the run: every application processor leaves VMX operation and halts.
static SHUTDOWN: AtomicBool = AtomicBool::new(false);

/// Every CPU Bulkhead knows of (index 0 is the boot CPU).
pub fn cpus() -> &'static [CpuSlot] {
    CPUS.get().map_or(&[], Vec::as_slice)
}

/// TSC ticks in `us` microseconds.
fn us(tsc_hz: u64, us: u64) -> u64 {
    tsc_hz / 1_000_000 * us
}

fn spin_for(ticks: u64) {
    let end = arch::rdtsc().saturating_add(ticks);
    while arch::rdtsc() < end {
        core::hint::spin_loop();
    }
}

/// Starts every application processor. Call on the boot CPU after its platform report and
/// before its own VMXON. Returns how many CPUs are in VMX root operation besides the boot
/// CPU once it is too.
pub fn start_application_processors(
    rsdp: Option<u64>,
    raw_caps: RawCapabilities,
    caps: &Capabilities,
    tsc_hz: u64,
) {
    let boot_apic = match lapic::init() {
        Ok(mode) => {
            let id = lapic::id();
            info!("lapic: boot CPU APIC ID {id}, {mode:?} mode");
            id
        }
        Err(e) => {
            warn!("lapic: {e}: only the boot CPU is used");
            CPUS.call_once(|| alloc::vec![slot(0, CpuState::VmxRoot)]);
            return;
        }
    };
    let listed = match madt::processors(rsdp) {
        Ok(list) => list,
        Err(e) => {
            warn!("smp: {e}");
            Vec::new()
        }
    };
    // The boot CPU first, then the others in MADT order.
    let mut slots = alloc::vec![slot(boot_apic, CpuState::VmxRoot)];
    for cpu in listed.iter().filter(|c| c.apic_id != boot_apic) {
        slots.push(slot(cpu.apic_id, CpuState::Offline));
    }
    let cpus = CPUS.call_once(|| slots);
    // SAFETY: reading the boot CPU's control registers and MSRs, which always exist in
    // 64-bit mode (PAT: every CPU with VMX).
    let (efer, pat) = unsafe {
        (
            arch::rdmsr(vmx::msr::Msr::IA32_EFER),
            arch::rdmsr(vmx::msr::Msr::IA32_PAT),
        )
    };
    BOOT.call_once(|| BootCpu {
        cr0: arch::read_cr0(),
        cr3: arch::read_cr3(),
        cr4: arch::read_cr4(),
        efer,
        pat,
        raw_caps,
        caps: caps.clone(),
        has_smx: raw_cpuid::CpuId::new()
            .get_feature_info()
            .is_some_and(|f| f.has_smx()),
    });
    if cpus.len() == 1 {
        return;
    }
    let tramp = match trampoline::Trampoline::prepare() {
        Ok(t) => t,
        Err(e) => {
            warn!("smp: {e}: only the boot CPU is used");
            for c in &cpus[1..] {
                c.fail(ApFailure::NoResponse);
            }
            return;
        }
    };
    for (index, cpu) in cpus.iter().enumerate().skip(1) {
        if index >= MAX_CPUS {
            cpu.fail(ApFailure::TooMany);
            continue;
        }
        start_one(&tramp, index, cpu, tsc_hz);
    }
}

fn slot(apic_id: u32, state: CpuState) -> CpuSlot {
    CpuSlot {
        apic_id,
        state: AtomicU8::new(state as u8),
        failure: AtomicU8::new(0),
        progress: AtomicU64::new(0),
    }
}

/// INIT, 10 ms, SIPI, 200 µs, SIPI if it has not started (SDM Vol. 3A §9.4.4.1), then up to
/// 1 s for it to report; one that does not is sent INIT again so it cannot run the start-up
/// code later, while the next CPU uses it.
fn start_one(tramp: &trampoline::Trampoline, index: usize, cpu: &CpuSlot, tsc_hz: u64) {
    let stack: &'static mut [u8] = alloc::vec![0u8; AP_STACK_BYTES].leak();
    let top = (stack.as_ptr() as u64 + AP_STACK_BYTES as u64) & !0xf;
    tramp.arm(top, ap_entry as *const () as u64, index as u64);
    cpu.set(CpuState::Starting);
    // SAFETY: the target is an application processor the MADT lists that Bulkhead has not
    // started; the start-up page holds the trampoline armed for it.
    unsafe {
        lapic::clear_errors();
        lapic::send_init(cpu.apic_id);
        spin_for(us(tsc_hz, 10_000));
        lapic::send_startup(cpu.apic_id, tramp.vector());
        spin_for(us(tsc_hz, 200));
        if tramp.progress() == 0 {
            lapic::send_startup(cpu.apic_id, tramp.vector());
        }
    }
    let deadline = arch::rdtsc().saturating_add(tsc_hz);
    while cpu.state() == CpuState::Starting && arch::rdtsc() < deadline {
        if TSC_WANTED.swap(false, Ordering::AcqRel) {
            TSC_NOW.store(arch::rdtsc(), Ordering::Release);
            TSC_SENT.store(true, Ordering::Release);
        }
        core::hint::spin_loop();
    }
    if cpu.state() == CpuState::Starting {
        cpu.progress
            .store(u64::from(tramp.progress()), Ordering::Relaxed);
        cpu.fail(ApFailure::NoResponse);
        // SAFETY: the CPU did not come up: INIT puts it back into wait-for-SIPI.
        unsafe { lapic::send_init(cpu.apic_id) };
        spin_for(us(tsc_hz, 10_000));
    }
}

/// Prints one line per CPU: `cpu N: apic ID X, VMX root` or `cpu N: apic ID X not started:
/// REASON`. Call on the boot CPU after its own VMXON.
pub fn report() {
    for (i, cpu) in cpus().iter().enumerate() {
        let boot = if i == 0 { " (boot CPU)" } else { "" };
        match cpu.state() {
            CpuState::VmxRoot => info!("cpu {i}: apic ID {}{boot}, VMX root", cpu.apic_id),
            CpuState::Failed => {
                let why = ApFailure::from_u8(cpu.failure.load(Ordering::Relaxed));
                let progress = cpu.progress.load(Ordering::Relaxed);
                let detail = match (why, progress) {
                    (ApFailure::NoResponse, 1) => " (it reached real mode only)",
                    (ApFailure::NoResponse, 2) => " (it reached protected mode only)",
                    (ApFailure::NoResponse, 3) => " (it reached long mode, not the kernel)",
                    _ => "",
                };
                info!(
                    "cpu {i}: apic ID {} not started: {}{detail}",
                    cpu.apic_id,
                    why.text()
                )
            }
            state => info!("cpu {i}: apic ID {} not started: {state:?}", cpu.apic_id),
        }
    }
    let online = cpus()
        .iter()
        .filter(|c| c.state() == CpuState::VmxRoot)
        .count();
    info!("smp: {online} of {} CPUs in VMX root", cpus().len().max(1));
}

/// The CPUs in VMX root operation (indexes into [`cpus`]).
pub fn online() -> Vec<usize> {
    let all = cpus();
    if all.is_empty() {
        // No CPU table (start-up not attempted): the boot CPU alone.
        return alloc::vec![0];
    }
    all.iter()
        .enumerate()
        .filter(|(_, c)| c.state() == CpuState::VmxRoot)
        .map(|(i, _)| i)
        .collect()
}

/// When the last kick to each CPU was sent (TSC; 0 when none is outstanding): the receiving
/// CPU's kick exit measures the kick's latency from it.
static KICK_SENT: [KickSlot; MAX_CPUS] = [const { KickSlot(AtomicU64::new(0)) }; MAX_CPUS];

/// One CPU's kick word on a line of its own: an idle CPU MONITORs it (idle.rs), and a write
/// anywhere in the monitored range wakes MWAIT (SDM Vol. 2B MONITOR), so no other CPU's word
/// may share it. 128 bytes covers the largest monitor line CPUID.05H:EBX reports on the
/// models Bulkhead runs on (64) and adjacent-line prefetch pairs.
#[repr(align(128))]
struct KickSlot(AtomicU64);

impl core::ops::Deref for KickSlot {
    type Target = AtomicU64;
    fn deref(&self) -> &AtomicU64 {
        &self.0
    }
}

/// Wakes CPU `index` with the kick IPI: a halted CPU wakes; one running a guest takes an
/// external-interrupt exit.
pub fn kick(index: usize) {
    if let Some(cpu) = cpus().get(index) {
        if cpu.state() == CpuState::VmxRoot {
            if let Some(sent) = KICK_SENT.get(index) {
                let _ =
                    sent.compare_exchange(0, arch::rdtsc(), Ordering::Relaxed, Ordering::Relaxed);
            }
            lapic::send_kick(cpu.apic_id);
        }
    }
}

/// The ticks since the oldest kick to this CPU not yet received, clearing it: called by the
/// handler of the kick's external-interrupt exit.
pub fn kick_received() -> Option<u64> {
    let me = crate::percpu::current().index();
    let sent = KICK_SENT.get(me)?.swap(0, Ordering::Relaxed);
    (sent != 0).then(|| arch::rdtsc().saturating_sub(sent))
}

/// Whether a kick to this CPU was sent and not yet received or absorbed, and the word a kick
/// writes first (an idle CPU monitors it: idle.rs).
pub fn kick_pending() -> bool {
    let me = crate::percpu::current().index();
    KICK_SENT
        .get(me)
        .is_some_and(|s| s.load(Ordering::Relaxed) != 0)
}

/// The word [`kick`] writes for this CPU before its IPI (MONITOR's target in idle.rs).
pub fn kick_word() -> Option<&'static AtomicU64> {
    KICK_SENT
        .get(crate::percpu::current().index())
        .map(|s| &s.0)
}

/// Forgets a kick to this CPU that arrived while it idled (every vCPU here halted): its
/// wake-up checks see what the kick was for, so the kick's latency is not the time this CPU
/// spent without a guest. Called by the scheduler's idle wait.
pub fn kick_absorbed() {
    let me = crate::percpu::current().index();
    if let Some(sent) = KICK_SENT.get(me) {
        sent.store(0, Ordering::Relaxed);
    }
}

/// Ends the run on every application processor: each leaves VMX operation and halts. Waits
/// (bounded) until they have.
pub fn shutdown(tsc_hz: u64) {
    SHUTDOWN.store(true, Ordering::Release);
    for cpu in cpus().iter().skip(1) {
        if cpu.state() == CpuState::VmxRoot {
            lapic::send_kick(cpu.apic_id);
        }
    }
    let deadline = arch::rdtsc().saturating_add(tsc_hz);
    while cpus()
        .iter()
        .skip(1)
        .any(|c| c.state() == CpuState::VmxRoot)
        && arch::rdtsc() < deadline
    {
        core::hint::spin_loop();
    }
}

/// Whether the run is ending (application processors stop).
pub fn shutting_down() -> bool {
    SHUTDOWN.load(Ordering::Acquire)
}

/// The application processors' first Rust code (the trampoline jumps here with its stack).
extern "C" fn ap_entry(index: u64) -> ! {
    let index = index as usize;
    let (Some(boot), Some(cpu)) = (BOOT.get(), cpus().get(index)) else {
        arch::halt_forever()
    };
    // SAFETY: the boot CPU's values: its page tables (which map the kernel as the start-up
    // copy does), control registers and EFER/PAT, for an identical CPU model.
    unsafe {
        arch::write_cr3(boot.cr3);
        arch::write_cr4(boot.cr4);
        arch::write_cr0(boot.cr0);
        arch::wrmsr(vmx::msr::Msr::IA32_EFER, boot.efer);
        arch::wrmsr(vmx::msr::Msr::IA32_PAT, boot.pat);
    }
    sync_tsc();
    crate::percpu::init_ap(index);
    crate::interrupts::init_ap();
    if lapic::init().is_err() {
        cpu.fail(ApFailure::Lapic);
        arch::halt_forever()
    }
    let root = match enter_vmx_root(boot) {
        Ok(root) => root,
        Err(why) => {
            cpu.fail(why);
            arch::halt_forever()
        }
    };
    cpu.set(CpuState::VmxRoot);
    let mut ran = false;
    while !shutting_down() {
        if !ran && crate::vmm::work_published() {
            ran = true;
            crate::vmm::run_this_cpu();
            continue;
        }
        arch::wait_for_interrupt();
    }
    let _ = root.leave();
    cpu.set(CpuState::Stopped);
    arch::halt_forever()
}

/// Sets this CPU's TSC to the boot CPU's (SDM Vol. 3B §18.17: WRMSR to IA32_TIME_STAMP_COUNTER).
/// Time is kept in TSC ticks everywhere (device timers, slices, console timestamps) and a
/// pool vCPU moves between CPUs, so every CPU must count the same. Real CPUs come out of reset
/// together; Bochs restarts an AP's TSC at its INIT. The boot CPU answers within its wait loop,
/// so the error is the handshake's few hundred ticks.
fn sync_tsc() {
    TSC_SENT.store(false, Ordering::Release);
    TSC_WANTED.store(true, Ordering::Release);
    let start = arch::rdtsc();
    while !TSC_SENT.load(Ordering::Acquire) {
        if arch::rdtsc().wrapping_sub(start) > 1 << 28 {
            return;
        }
        core::hint::spin_loop();
    }
    let now = TSC_NOW.load(Ordering::Acquire);
    // SAFETY: IA32_TIME_STAMP_COUNTER exists on every CPU with VMX; nothing on this CPU
    // has used the TSC yet but the loop above.
    unsafe { arch::wrmsr(vmx::msr::Msr::IA32_TIME_STAMP_COUNTER, now) };
}

/// This CPU's checks (VMX, FEATURE_CONTROL, the same capabilities as the boot CPU) and VMXON.
fn enter_vmx_root(boot: &BootCpu) -> Result<vmxon::VmxRoot, ApFailure> {
    let has_vmx = raw_cpuid::CpuId::new()
        .get_feature_info()
        .is_some_and(|f| f.has_vmx());
    if !has_vmx {
        return Err(ApFailure::NoVmx);
    }
    crate::host_report::enable_feature_control(boot.has_smx, false)
        .map_err(|_| ApFailure::FeatureControl)?;
    let raw = RawCapabilities::read(|m| {
        // SAFETY: only MSRs whose existence CPUID.1:ECX.VMX or a capability bit establishes.
        unsafe { arch::rdmsr(m) }
    });
    if raw != boot.raw_caps {
        return Err(ApFailure::CapabilitiesDiffer);
    }
    arch::enable_caches();
    // The boot CPU's CR4 already had these; the XCR0 is per CPU (SDM Vol. 1 §13.3).
    arch::enable_fxsr();
    vmxon::enter(&boot.caps).map_err(|_| ApFailure::Vmxon)
}
