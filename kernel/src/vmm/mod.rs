//! The virtual machine monitor: VMs built from the boot archive's configuration, each with its
//! own RAM, EPT, VMCS and devices, run round-robin on this CPU. A VM that misbehaves is
//! stopped with a report; the others keep running.

mod entry;
mod exits;
mod guest_memory;
mod platform;
mod setup;
mod virtio_devices;
mod vmcs;

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
use platform::Platform;
use vm::archive::Archive;
use vm::config::{Config, GuestKind, VmConfig};
use vm::loader::{self, EntryMode};
use vm::msr::{MsrAction, MsrContext, VmcsMsr};
use vm::stats::ExitStats;
use vmx::caps::Capabilities;
use vmx::controls::{ControlSet, PinBasedControls};
use vmx::event::{Combined, Injection};
use vmx::exit::{ExceptionVector, ExitReason, InterruptionInfo};
use vmx::fields::VmcsField as F;

pub use setup::SetupError;
use vm::console::{LineBuffer, RateLimit};
use vm::control_regs::{self, mov_to_cr0, Cr0Context, Cr0Write};

/// Heap a VM takes besides its devices (platform state, statistics, FPU area, console),
/// rounded up.
const VM_FIXED_HEAP: u64 = 32 * 1024;

/// Heap kept free against fragmentation when VMs reserve their worst case: 1/32 of the heap,
/// at least 256 KiB.
fn heap_margin() -> usize {
    (memory::heap_size_and_high_water().0 / 32).max(256 * 1024)
}

/// Why a VM ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// HLT with RFLAGS.IF = 0 and nothing pending: the guest powered itself off.
    HaltedWithInterruptsDisabled,
    /// HLT with interrupts enabled but no device that could ever interrupt.
    HaltedWithoutInterruptSource,
    TripleFault,
    /// A guest access to guest-physical memory that is neither RAM nor an MMIO region.
    OutsideMemory {
        gpa: u64,
        access: &'static str,
    },
    /// An MMIO access Bulkhead could not emulate.
    MmioUnemulated {
        gpa: u64,
    },
    /// An exit reason Bulkhead does not handle.
    Unhandled(ExitReason),
    /// Delivering an event touched a virtio-mmio window (the guest's IDT, GDT or stack is
    /// there).
    EventDeliveryThroughMmio {
        gpa: u64,
        vector: u8,
    },
    /// VM entry failed (SDM Vol. 3C §27.8).
    EntryFailure {
        reason: ExitReason,
        qualification: u64,
    },
    /// VMLAUNCH/VMRESUME itself failed (VMfail, SDM Vol. 3C §31.2).
    EntryInstructionFailed {
        rflags: u64,
        error: u64,
    },
    /// Something only a hypervisor bug can cause.
    Bug(&'static str),
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StopReason::HaltedWithInterruptsDisabled => {
                write!(f, "guest halted with interrupts disabled (powered off)")
            }
            StopReason::HaltedWithoutInterruptSource => write!(
                f,
                "guest halted waiting for an interrupt no device can send"
            ),
            StopReason::TripleFault => write!(f, "triple fault"),
            StopReason::OutsideMemory { gpa, access } => {
                write!(
                    f,
                    "{access} of guest-physical {gpa:#x}, outside guest RAM and every MMIO region"
                )
            }
            StopReason::MmioUnemulated { gpa } => write!(f, "unemulated MMIO access at {gpa:#x}"),
            StopReason::Unhandled(r) => write!(f, "unhandled exit reason {r}"),
            StopReason::EventDeliveryThroughMmio { gpa, vector } => write!(
                f,
                "delivering vector {vector:#x} touched the device window at {gpa:#x} (the guest's IDT, GDT or stack is in MMIO)"
            ),
            StopReason::EntryFailure {
                reason,
                qualification,
            } => {
                let class = vmx::exit::EntryFailure::classify(
                    ExitReason::from_raw(u32::from(reason.number()) | (1 << 31)),
                    *qualification,
                );
                match class {
                    Some(class) => write!(
                        f,
                        "VM entry failed: {reason}, qualification {qualification:#x}: {class}"
                    ),
                    None => write!(
                        f,
                        "VM entry failed: {reason}, qualification {qualification:#x}"
                    ),
                }
            }
            StopReason::EntryInstructionFailed { rflags, error } => {
                write!(
                    f,
                    "VMLAUNCH/VMRESUME failed (RFLAGS {rflags:#x}): VM-instruction error {error}"
                )
            }
            StopReason::Bug(m) => write!(f, "hypervisor bug: {m}"),
        }
    }
}

/// vCPU scheduling state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Runnable,
    Halted,
    Stopped(StopReason),
}

/// One vCPU: its VMCS and the registers the VMCS does not hold.
#[derive(Debug)]
pub struct Vcpu {
    vmcs: vmcs::Vmcs,
    regs: GuestRegs,
    launched: bool,
    controls: ControlSet,
    state: State,
    /// An interrupt whose delivery an exit interrupted while the exit's handler injected an
    /// exception first (SDM Vol. 3A §6.15): delivered at the next interrupt window.
    deferred_event: Option<Injection>,
    /// The guest's CR8 (task-priority register, SDM Vol. 3A §11.8.6.1): MOV CR8 exits (the
    /// real CR8 is the host local APIC's TPR) and reads back this value.
    cr8: u64,
    /// DR0-DR3 and DR6 while the vCPU is not running (DR7 is in the VMCS).
    debug: arch::DebugRegs,
}

/// Per-VM console (docs/architecture.md, "Console"): bytes from the UART and the console
/// hypercall are cut into cleaned lines (vm::console::LineBuffer), limited to `console-rate`
/// bytes per second with bursts of `console-buffer` bytes, and queued for the physical UART
/// prefixed with the VM's name (and, with `console-timestamps = yes`, the TSC ticks since the
/// VM's first entry: `[linux +123456789] text`). Nothing waits for the UART; a line over the
/// limit, or that finds the console queue full, is dropped and counted, and a report line
/// says so when the VM's output is accepted again.
#[derive(Debug)]
pub struct Console {
    line: LineBuffer,
    out: ConsoleOut,
}

/// Where a VM's cleaned console lines go: the limit, the console queue, the counters.
#[derive(Debug)]
struct ConsoleOut {
    name: String,
    limit: RateLimit,
    /// Prefix lines with the ticks since the first VM entry.
    timestamps: bool,
    /// TSC of the first VM entry (0 until then).
    started: u64,
    /// Lines and bytes printed, and dropped.
    lines: u64,
    bytes: u64,
    dropped_lines: u64,
    dropped_bytes: u64,
    /// Dropped bytes not yet reported.
    unreported: u64,
}

impl Console {
    fn new(name: &str, timestamps: bool, rate: u64, burst: u64, tsc_hz: u64) -> Self {
        Console {
            line: LineBuffer::new(),
            out: ConsoleOut {
                name: name.into(),
                limit: RateLimit::new(rate, burst, tsc_hz, arch::rdtsc()),
                timestamps,
                started: 0,
                lines: 0,
                bytes: 0,
                dropped_lines: 0,
                dropped_bytes: 0,
                unreported: 0,
            },
        }
    }

    pub fn write(&mut self, bytes: &[u8]) {
        let out = &mut self.out;
        self.line.feed(bytes, &mut |text| out.emit(text));
    }

    fn flush(&mut self) {
        if !self.line.is_empty() {
            let out = &mut self.out;
            self.line.flush(&mut |text| out.emit(text));
        }
    }
}

impl ConsoleOut {
    fn emit(&mut self, text: &[u8]) {
        let now = arch::rdtsc();
        let cost = text.len() as u64 + 1;
        let accepted = self.limit.allow(cost, now)
            && if self.timestamps {
                crate::serial::guest_line(
                    format_args!("{} +{}", self.name, now.saturating_sub(self.started)),
                    text,
                )
            } else {
                crate::serial::guest_line(format_args!("{}", self.name), text)
            };
        if accepted {
            self.lines += 1;
            self.bytes += cost;
            if self.unreported > 0 {
                warn!(
                    "vm {}: console: {} bytes dropped (over console-rate, or the console queue was full)",
                    self.name, self.unreported
                );
                self.unreported = 0;
            }
        } else {
            self.dropped_lines += 1;
            self.dropped_bytes += cost;
            self.unreported += cost;
        }
    }
}

/// One virtual machine.
#[derive(Debug)]
pub struct Vm {
    name: String,
    memory: GuestMemory,
    vcpu: Vcpu,
    platform: Platform,
    console: Console,
    stats: ExitStats,
    caps: Capabilities,
    /// x87/SSE state while the VM is not running (SDM Vol. 1 §10.5).
    fpu: Box<arch::FxArea>,
    /// End of the current time slice (TSC).
    slice_end: u64,
    /// When a halted VM's device fires (TSC): the slice ends early then, so that VM runs.
    wake_others_at: u64,
    /// What is left of a slice cut short for another VM's wake-up (resumed next).
    slice_left: Option<u64>,
    /// The shortest device-timer interval honoured (10 µs of TSC ticks).
    min_timer_ticks: u64,
    /// The TSC frequency (the unit of every tick count the VM is told).
    tsc_hz: u64,
}

/// Why a VM could not be created.
#[derive(Debug)]
pub enum CreateError {
    MissingEntry(String),
    Load(loader::LoadError),
    Memory(guest_memory::GuestMemoryError),
    Setup(SetupError),
    Platform(String),
    /// The VM's worst case does not fit in the unreserved heap.
    HeapBudget {
        need: u64,
        available: u64,
    },
}

impl fmt::Display for CreateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CreateError::MissingEntry(n) => write!(
                f,
                "the boot archive has no entry {n:?}; add the file to the bundle"
            ),
            CreateError::Load(e) => write!(f, "loading the guest image failed: {e}"),
            CreateError::Memory(e) => write!(f, "{e}"),
            CreateError::Setup(e) => write!(f, "programming the VMCS failed: {e}"),
            CreateError::Platform(m) => write!(f, "{m}"),
            CreateError::HeapBudget { need, available } => write!(
                f,
                "its worst case needs {} KiB of hypervisor heap (device state now, disk overlays \
                 later) but only {} KiB are left unreserved; give it fewer or smaller disks, or \
                 the machine more memory",
                need.div_ceil(1024),
                available / 1024
            ),
        }
    }
}

impl Vm {
    /// Allocates the VM's RAM and loads its guest image.
    fn load(
        index: usize,
        config: &VmConfig,
        archive: &Archive<'static>,
        caps: &Capabilities,
    ) -> Result<(loader::BootState, GuestMemory), CreateError> {
        let image = archive
            .get(&config.image)
            .ok_or_else(|| CreateError::MissingEntry(config.image.clone()))?;
        let ept_config = ept::EptConfig {
            page_2m: caps.ept_2m_pages(),
            page_1g: caps.ept_1g_pages(),
            ..Default::default()
        };
        let mut memory = GuestMemory::new(
            config.memory,
            ept_config,
            guest_memory::InveptKind::for_cpu(caps),
        )
        .map_err(CreateError::Memory)?;
        match config.kind {
            GuestKind::Elf64 => loader::load_elf64(image, config.memory, index as u64, &mut memory),
            GuestKind::Real16 => loader::load_real16(image, config.memory, &mut memory),
            GuestKind::Linux => {
                return linux_boot(config, archive, image, &mut memory).map(|boot| (boot, memory));
            }
        }
        .map_err(CreateError::Load)
        .map(|boot| (boot, memory))
    }

    fn create(
        index: usize,
        config: &VmConfig,
        archive: &Archive<'static>,
        caps: &Capabilities,
        tsc_hz: u64,
    ) -> Result<Vm, CreateError> {
        // The budget rule (docs/architecture.md, "Budgets"): the VM's whole worst case on the
        // shared heap, what its devices take now and what its guest can make them take later,
        // must fit in what is really left; the later part is reserved, so no guest can take
        // another VM's heap or the hypervisor's.
        // `heap-budget` caps the devices' heap: what they take at creation, and the rest
        // shared out as the overlay budgets of the copy-on-write disks.
        let (create_bytes, _) = virtio_devices::VirtioDevices::heap_estimate(config, archive, None);
        let disk_budget = match config.heap_budget {
            None => None,
            Some(budget) if budget < create_bytes => {
                return Err(CreateError::Platform(alloc::format!(
                    "its devices need {} KiB of hypervisor heap when created, more than \
                     heap-budget = {} KiB; raise heap-budget or use smaller RAM disks",
                    create_bytes.div_ceil(1024),
                    budget / 1024
                )))
            }
            Some(budget) => {
                let cow_disks = config
                    .devices
                    .iter()
                    .filter(|d| {
                        matches!(
                            d,
                            vm::config::DeviceConfig::VirtioBlk {
                                source: vm::config::DiskSource::Image(_),
                                ..
                            }
                        )
                    })
                    .count() as u64;
                Some((budget - create_bytes) / cow_disks.max(1))
            }
        };
        let (create_bytes, growth_bytes) =
            virtio_devices::VirtioDevices::heap_estimate(config, archive, disk_budget);
        let margin = heap_margin();
        let need = (create_bytes + growth_bytes + VM_FIXED_HEAP) as usize;
        let available = memory::heap_available();
        if need.saturating_add(margin) > available {
            return Err(CreateError::HeapBudget {
                need: need as u64,
                available: available.saturating_sub(margin) as u64,
            });
        }
        let (boot, memory) = Self::load(index, config, archive, caps)?;

        let heap_before = memory::heap_free();
        let platform =
            Platform::new(config, archive, tsc_hz, disk_budget).map_err(CreateError::Platform)?;
        // Device state (RAM disks, queues, switch) lives on the heap.
        let device_bytes = heap_before.saturating_sub(memory::heap_free()) as u64;
        let growth = platform.virtio.worst_case_bytes();
        memory::reserve_heap(growth as usize, margin).map_err(|available| {
            CreateError::HeapBudget {
                need: growth,
                available: available.saturating_sub(margin) as u64,
            }
        })?;

        let long_mode = matches!(boot.mode, EntryMode::Long64 { .. });
        let controls = setup::controls(caps, long_mode)
            .map_err(|e| CreateError::Setup(SetupError::Controls(e)))?;
        let vmcs = vmcs::Vmcs::new(caps).map_err(|e| CreateError::Setup(e.into()))?;
        vmcs.load().map_err(|e| CreateError::Setup(e.into()))?;
        let resources = setup::VcpuResources {
            eptp: memory.eptp(),
            vpid: index as u16 + 1,
            msr_bitmap: setup::msr_bitmap(&platform.msr_bitmap()).map_err(CreateError::Setup)?,
            io_bitmaps: setup::io_bitmaps().map_err(CreateError::Setup)?,
        };
        // SAFETY: the EPT maps only this VM's RAM (GuestMemory), the bitmaps are frames just
        // allocated for this VM, and `controls` come from `setup::controls` for this CPU.
        unsafe { setup::write_controls(&controls, &resources) }
            .map_err(|e| CreateError::Setup(e.into()))?;
        setup::write_guest_state(caps, &boot).map_err(|e| CreateError::Setup(e.into()))?;
        let regs = GuestRegs {
            rdi: boot.rdi,
            rsi: boot.rsi,
            ..Default::default()
        };
        // VMCS, MSR bitmap and the two I/O bitmaps: four frames.
        let vmx_bytes = 4 * memory::FRAME_SIZE;
        let ept_bytes = memory.overhead_bytes();
        info!(
            "vm {}: memory beyond guest RAM: {} bytes (VMCS and bitmaps {vmx_bytes}, EPT {ept_bytes}, device state {device_bytes})",
            config.name,
            vmx_bytes + ept_bytes + device_bytes
        );
        let overhead = vmx_bytes + ept_bytes + device_bytes;
        info!(
            "vm {}: {} MiB RAM, {} guest {} entered at {:#x}, {} virtio device(s), VPID {}, overhead {} KiB (VMCS, bitmaps, EPT, devices)",
            config.name,
            config.memory >> 20,
            match config.kind {
                GuestKind::Elf64 => "64-bit",
                GuestKind::Real16 => "real-mode",
                GuestKind::Linux => "Linux",
            },
            config.image,
            boot.rip,
            config.devices.len(),
            resources.vpid,
            overhead >> 10
        );
        Ok(Vm {
            name: config.name.clone(),
            memory,
            vcpu: Vcpu {
                vmcs,
                regs,
                launched: false,
                controls,
                state: State::Runnable,
                deferred_event: None,
                cr8: 0,
                debug: arch::DebugRegs::initial(),
            },
            platform,
            console: Console::new(
                &config.name,
                config.console_timestamps,
                config.console_rate,
                config.console_buffer,
                tsc_hz,
            ),
            stats: ExitStats::new(),
            caps: caps.clone(),
            fpu: Box::new(arch::FxArea::initial()),
            slice_end: 0,
            wake_others_at: u64::MAX,
            slice_left: None,
            min_timer_ticks: tsc_hz / 100_000,
            tsc_hz,
        })
    }

    /// Whether the guest is in 64-bit mode (EFER.LMA and CS.L).
    fn long_mode(&self) -> bool {
        const EFER_LMA: u64 = 1 << 10;
        const CS_L: u64 = 1 << 13;
        vmcs::read_exit(F::GUEST_IA32_EFER) & EFER_LMA != 0
            && vmcs::read_exit(F::GUEST_CS_ACCESS_RIGHTS) & CS_L != 0
    }

    /// VMCALL (reason 18): the hypercall ABI v1 (docs/hypercall-abi.md).
    fn hypercall(&mut self) -> Action {
        let long = self.long_mode();
        let r = &self.vcpu.regs;
        let regs = HcRegs {
            rax: r.rax,
            rbx: r.rbx,
            rcx: r.rcx,
            rdx: r.rdx,
            rsi: r.rsi,
        };
        let regs = if long { regs } else { regs.low32() };
        let cpl = ((vmcs::read_exit(F::GUEST_SS_ACCESS_RIGHTS) >> 5) & 3) as u8;
        let outcome = {
            let mut host = HcHost {
                memory: &mut self.memory,
                console: &mut self.console,
                stats: &self.stats,
                tsc_hz: self.tsc_hz,
            };
            hypercall::dispatch(&mut host, regs, cpl)
        };
        self.stats.hypercalls += 1;
        if regs.rax == hypercall::call::MULTICALL {
            self.stats.multicall_operations += u64::from(outcome.calls_executed);
        }
        self.vcpu.regs.rax = outcome.rax(long);
        match outcome.action {
            HcAction::Continue => Action::Advance,
            HcAction::Yield => Action::Yield,
            HcAction::Idle => Action::Halt,
        }
    }

    /// RDMSR (reason 31): the VM's MSR policy (vm::msr) decides.
    fn rdmsr(&mut self) -> Action {
        let msr = self.vcpu.regs.rcx as u32;
        let value = match self.platform.rdmsr(msr, &self.msr_context()) {
            MsrAction::Read(v) => v,
            MsrAction::ReadVmcs(field) => vmcs::read_exit(vmcs_msr_field(field).field()),
            MsrAction::InjectGp | MsrAction::Written | MsrAction::WriteVmcs(..) => return gp(),
        };
        self.vcpu.regs.rax = value & 0xffff_ffff;
        self.vcpu.regs.rdx = value >> 32;
        Action::Advance
    }

    /// WRMSR (reason 32): the VM's MSR policy validates; VMCS-held MSRs go to the VMCS.
    fn wrmsr(&mut self) -> Action {
        let msr = self.vcpu.regs.rcx as u32;
        let value = (self.vcpu.regs.rdx << 32) | (self.vcpu.regs.rax & 0xffff_ffff);
        match self.platform.wrmsr(msr, value, &self.msr_context()) {
            MsrAction::Written => Action::Advance,
            MsrAction::WriteVmcs(field, v) => match vmcs::write_guest(vmcs_msr_field(field), v) {
                Ok(()) => Action::Advance,
                Err(_) => Action::Stop(StopReason::Bug("VMWRITE of an MSR field failed")),
            },
            MsrAction::InjectGp | MsrAction::Read(_) | MsrAction::ReadVmcs(_) => gp(),
        }
    }

    fn msr_context(&self) -> MsrContext {
        MsrContext {
            efer: vmcs::read_exit(F::GUEST_IA32_EFER),
            cr0: vmcs::read_exit(F::CR0_READ_SHADOW),
            guest_tsc: arch::rdtsc(),
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
                const CS_L: u64 = 1 << 13;
                let ctx = Cr0Context {
                    cr0: vmcs::read_exit(F::CR0_READ_SHADOW),
                    cr4: vmcs::read_exit(F::CR4_READ_SHADOW),
                    efer: vmcs::read_exit(F::GUEST_IA32_EFER),
                    cs_long: vmcs::read_exit(F::GUEST_CS_ACCESS_RIGHTS) & CS_L != 0,
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
                let (_, cr4_mask) = setup::cr_masks(&self.caps);
                // VMXE, and every bit this CPU cannot set, is reserved for the guest.
                if value & setup::CR4_VMXE != 0
                    || value & cr4_mask & !setup::CR4_VMXE != 0
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
                self.vcpu.cr8 = value;
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

    /// INS/OUTS: not used by the guests Bulkhead runs; stop with a precise report.
    fn string_io(&mut self, q: &vmx::exit::IoQualification) -> Action {
        warn!(
            "vm {}: string I/O on port {:#x} is not emulated",
            self.name, q.port
        );
        Action::Stop(StopReason::Unhandled(ExitReason::IoInstruction))
    }

    /// An EPT violation inside an MMIO region: decode the instruction at RIP and perform it
    /// against the region's device.
    fn mmio(&mut self, gpa: u64, info: &ExitInfo) -> Action {
        self.stats.mmio_accesses += 1;
        let mut bytes = [0u8; 15];
        let Some(n) = self.fetch_instruction(info.rip, &mut bytes) else {
            return Action::Stop(StopReason::MmioUnemulated { gpa });
        };
        let mode = vm::insn::CpuMode::from_segment(
            vmcs::read_exit(F::GUEST_IA32_EFER) & (1 << 10) != 0,
            vmcs::read_exit(F::GUEST_CS_ACCESS_RIGHTS) & (1 << 13) != 0,
            vmcs::read_exit(F::GUEST_CS_ACCESS_RIGHTS) & (1 << 14) != 0,
        );
        let mut regs = InsnRegs {
            regs: &mut self.vcpu.regs,
        };
        let platform = &mut self.platform;
        let memory = &mut self.memory;
        let console = &mut self.console;
        let result = vm::insn::emulate(&bytes[..n], mode, &mut regs, |access| {
            platform.mmio(gpa, access, memory, console)
        });
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

    /// Copies up to 15 instruction bytes at the guest's RIP through its page tables.
    fn fetch_instruction(&self, rip: u64, out: &mut [u8; 15]) -> Option<usize> {
        let state = vm::paging::PagingState {
            cr0: vmcs::read_exit(F::GUEST_CR0),
            cr3: vmcs::read_exit(F::GUEST_CR3),
            cr4: vmcs::read_exit(F::GUEST_CR4),
            efer: vmcs::read_exit(F::GUEST_IA32_EFER),
        };
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
        (n > 0).then_some(n)
    }

    /// When this slice ends: its time is up, or a halted VM's device fires.
    fn slice_deadline(&self) -> u64 {
        self.slice_end.min(self.wake_others_at)
    }

    /// Interrupt window open (reason 7): the pending interrupt is injected before the next
    /// entry (see `inject_pending_interrupt`).
    fn interrupt_window(&mut self) -> Action {
        let _ = setup::set_interrupt_window_exiting(&mut self.vcpu.controls, false);
        Action::Resume
    }

    /// VMX-preemption timer (reason 52): a device deadline or the end of the time slice.
    fn timer_expired(&mut self) -> Action {
        if arch::rdtsc() >= self.slice_deadline() {
            Action::Yield
        } else {
            Action::Resume
        }
    }

    /// Delivers the next interrupt if the guest can take it now (RFLAGS.IF = 1, no STI/MOV-SS
    /// blocking, no event already being injected: SDM Vol. 3C §27.6.1 and §26.8), otherwise
    /// asks for an exit when the window opens (interrupt-window exiting, §26.7.5). An
    /// interrupt deferred behind an exception (see [`Vcpu::deferred_event`]) goes first, then
    /// the PIC's.
    fn inject_pending_interrupt(&mut self) {
        if self.vcpu.deferred_event.is_none() && self.platform.pending_vector().is_none() {
            return;
        }
        let injecting = vmcs::read_exit(F::VM_ENTRY_INTERRUPTION_INFO) & (1 << 31) != 0;
        if injecting {
            return;
        }
        let rflags = vmcs::read_exit(F::GUEST_RFLAGS);
        let blocking = vmcs::read_exit(F::GUEST_INTERRUPTIBILITY_STATE) & 0b11;
        if rflags & (1 << 9) == 0 || blocking != 0 {
            let _ = setup::set_interrupt_window_exiting(&mut self.vcpu.controls, true);
            return;
        }
        let event = match self.vcpu.deferred_event.take() {
            Some(event) => Some(event),
            None => self.platform.acknowledge().map(|vector| Injection {
                info: InterruptionInfo::new_external_interrupt(vector),
                error_code: None,
                instruction_length: None,
            }),
        };
        if let Some(event) = event {
            write_injection(&event);
            self.stats.interrupts_injected += 1;
            // A halted guest resumes at the instruction after HLT (activity state active).
            let _ = vmcs::write_guest(vmcs::guest_field!(GUEST_ACTIVITY_STATE), 0);
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
        match crate::host_irq::end_of_interrupt(info.vector()) {
            crate::host_irq::Eoi::Sent(_) => self.stats.host_interrupts_ended += 1,
            crate::host_irq::Eoi::Spurious(_) => self.stats.host_interrupts_spurious += 1,
            crate::host_irq::Eoi::Unreachable(_) => self.stats.host_interrupts_unended += 1,
        }
        Action::Resume
    }

    /// Makes this VM's MSR, FPU and debug-register values live before it runs.
    fn switch_in(&self) {
        self.platform.load_msrs();
        self.fpu.restore();
        self.vcpu.debug.restore();
    }

    /// Saves what `switch_in` made live after the VM ran.
    fn switch_out(&mut self) {
        self.platform.save_msrs();
        self.fpu.save();
        self.vcpu.debug.save();
    }

    /// A halted vCPU that nothing can ever wake: its VM is stopped.
    fn halt_forever(&mut self) {
        if let Err(e) = self.vcpu.vmcs.load() {
            error!("vm {}: {e}", self.name);
        }
        self.stop(StopReason::HaltedWithoutInterruptSource);
    }

    fn stop(&mut self, reason: StopReason) {
        self.vcpu.state = State::Stopped(reason);
        if matches!(
            reason,
            StopReason::EntryFailure { .. } | StopReason::EntryInstructionFailed { .. }
        ) {
            vmcs::dump(&self.name);
        }
        self.stats.unclaimed_port_accesses = self.platform.unclaimed_port_accesses();
        let rip = vmcs::read(F::GUEST_RIP).unwrap_or(0);
        self.console.flush();
        let ran = arch::rdtsc().saturating_sub(self.console.out.started);
        info!(
            "vm {}: stopped: {reason} (RIP {rip:#x}) after {ran} ticks",
            self.name
        );
        for line in alloc::format!("{}", self.stats).lines() {
            info!("vm {}: {line}", self.name);
        }
        info!(
            "vm {}: console: lines={} bytes={} console-dropped={} dropped-lines={}",
            self.name,
            self.console.out.lines,
            self.console.out.bytes,
            self.console.out.dropped_bytes,
            self.console.out.dropped_lines
        );
        info!(
            "vm {}: memory: released-pages={} faulted-in={}",
            self.name, self.memory.released, self.memory.faulted_in
        );
        info!(
            "vm {}: device work: rounds={} ticks={}",
            self.name, self.platform.virtio.work.rounds, self.platform.virtio.work.ticks
        );
        for line in self.platform.virtio.report() {
            info!("vm {}: {line}", self.name);
        }
    }

    /// Applies a handler's action to the VMCS; returns whether the vCPU keeps running. An
    /// event whose delivery the exit interrupted is delivered again on the next entry (SDM Vol.
    /// 3C §28.2.4), combined with an exception the handler raises as the CPU would (SDM Vol. 3A
    /// §6.15 Table 6-5).
    fn apply(&mut self, action: Action, info: &ExitInfo) -> bool {
        let advance = |len: u64| {
            let _ = vmcs::write_guest(vmcs::guest_field!(GUEST_RIP), info.rip.wrapping_add(len));
            // Skipping an instruction ends STI/MOV-SS blocking (SDM Vol. 3C §25.4.2).
            let state = vmcs::read_exit(F::GUEST_INTERRUPTIBILITY_STATE);
            if state & 0b11 != 0 {
                let _ = vmcs::write_guest(
                    vmcs::guest_field!(GUEST_INTERRUPTIBILITY_STATE),
                    state & !0b11,
                );
            }
        };
        let mut reinject = info.interrupted;
        let keep_running = match action {
            Action::Resume => true,
            Action::Advance => {
                advance(info.instruction_length);
                true
            }
            Action::Inject { vector, error_code } => {
                let new = Injection::exception(vector, error_code);
                let now = match reinject
                    .take()
                    .map(|pending| vmx::event::combine(pending, new))
                {
                    None => new,
                    Some(Combined::Inject { now, deferred }) => {
                        self.vcpu.deferred_event = deferred.or(self.vcpu.deferred_event);
                        now
                    }
                    Some(Combined::TripleFault) => {
                        self.stop(StopReason::TripleFault);
                        return false;
                    }
                };
                write_injection(&now);
                self.stats.exceptions_injected += 1;
                true
            }
            Action::InjectSoftware { vector } => {
                // SDM Vol. 3C §27.6.1.1: software exceptions need the instruction length.
                write_injection(&Injection {
                    info: InterruptionInfo::new_software_exception(vector),
                    error_code: None,
                    instruction_length: Some(info.instruction_length as u32),
                });
                self.stats.exceptions_injected += 1;
                true
            }
            Action::Halt => {
                advance(info.instruction_length);
                // An idle vCPU is the moment to do the I/O it queued (one bounded round; the
                // scheduler continues the rest while the vCPU sleeps).
                self.platform
                    .device_work(&mut self.memory, &mut self.console);
                self.vcpu.state = State::Halted;
                false
            }
            Action::Yield => {
                if info.reason.reason != ExitReason::PreemptionTimerExpired {
                    advance(info.instruction_length);
                }
                false
            }
            Action::Stop(reason) => {
                self.stop(reason);
                return false;
            }
        };
        if let Some(event) = reinject {
            write_injection(&event);
            self.stats.events_reinjected += 1;
            if self.vcpu.state == State::Halted {
                self.vcpu.state = State::Runnable;
            }
        }
        keep_running
    }

    /// Runs the vCPU for up to one time slice: device timers are brought up to date and
    /// pending interrupts injected before every entry; the VMX-preemption timer is armed for
    /// the earlier of the next device deadline and the end of the slice (SDM Vol. 3C §26.5.1:
    /// it counts down at the TSC rate >> IA32_VMX_MISC[4:0]).
    ///
    /// Returns whether the slice was cut short for a halted VM's wake-up: the rest of the
    /// slice is then kept in `slice_left`, so another VM's timers never cost this one its time.
    fn run_slice(&mut self, timeslice: u64, wake_others_at: u64) -> bool {
        if let Err(e) = self.vcpu.vmcs.load() {
            self.stop(StopReason::Bug("VMPTRLD failed"));
            error!("vm {}: {e}", self.name);
            return false;
        }
        let preemption = self
            .vcpu
            .controls
            .pin
            .contains(PinBasedControls::ACTIVATE_VMX_PREEMPTION_TIMER);
        let rate = self.caps.preemption_timer_rate();
        self.switch_in();
        let budget = self.slice_left.take().unwrap_or(timeslice);
        self.slice_end = arch::rdtsc().saturating_add(budget);
        self.wake_others_at = wake_others_at;
        loop {
            let now = arch::rdtsc();
            crate::serial::pump_if_due(now);
            if self.platform.virtio.work_due().is_some_and(|d| now >= d) {
                self.platform
                    .device_work(&mut self.memory, &mut self.console);
            }
            self.platform.tick(now);
            self.inject_pending_interrupt();
            if preemption {
                // Queued console output gets the UART's next FIFO slot on time, like a
                // transmit interrupt would.
                let slice_end = self
                    .slice_deadline()
                    .min(self.platform.virtio.work_due().unwrap_or(u64::MAX))
                    .min(crate::serial::next_pump().unwrap_or(u64::MAX));
                // A guest may program its PIT for a 1-tick period; a floor on device deadlines
                // (10 µs) keeps that from turning into an exit storm. Coalesced ticks are
                // delivered as one interrupt, as the PIT model already does for missed ones.
                let floor = now.saturating_add(self.min_timer_ticks);
                let deadline = self
                    .platform
                    .next_wake()
                    .map_or(slice_end, |d| d.max(floor).min(slice_end));
                let ticks = (deadline.saturating_sub(now) >> rate).clamp(1, u64::from(u32::MAX));
                let _ = vmcs::write_guest(vmcs::guest_field!(VMX_PREEMPTION_TIMER_VALUE), ticks);
            }
            if !self.vcpu.launched {
                self.console.out.started = arch::rdtsc();
                info!("vm {}: first VM entry", self.name);
            }
            // SAFETY: this VM's VMCS is current (loaded above) with complete host and guest
            // state, and `launched` tracks VMLAUNCH for it.
            let result = unsafe { entry::enter(&mut self.vcpu.regs, self.vcpu.launched) };
            let exited_at = arch::rdtsc();
            if let Err(rflags) = result {
                let error = vmcs::read(F::VM_INSTRUCTION_ERROR).unwrap_or(0);
                self.stop(StopReason::EntryInstructionFailed { rflags, error });
                break;
            }
            self.vcpu.launched = true;
            let info = ExitInfo::read();
            let action = exits::dispatch(self, &info);
            // Recorded before the action is applied, so a stopping VM's report includes it.
            self.stats
                .record(info.reason.reason.number(), arch::rdtsc() - exited_at);
            if !self.apply(action, &info) {
                break;
            }
            if !preemption && arch::rdtsc() > self.slice_deadline() {
                break;
            }
        }
        self.switch_out();
        let now = arch::rdtsc();
        let cut_for_wakeup = self.vcpu.state == State::Runnable
            && now >= self.wake_others_at
            && now < self.slice_end;
        if cut_for_wakeup {
            self.slice_left = Some(self.slice_end - now);
        }
        cut_for_wakeup
    }
}

/// Loads a Linux bzImage through the 64-bit boot protocol (vm::linux): the command line gets
/// one `virtio_mmio.device=` entry per device of the VM, and the e820 map marks the
/// virtio-mmio window reserved.
fn linux_boot(
    config: &VmConfig,
    archive: &Archive<'static>,
    image: &[u8],
    memory: &mut GuestMemory,
) -> Result<loader::BootState, CreateError> {
    let initrd = match &config.initrd {
        Some(name) => Some(
            archive
                .get(name)
                .ok_or_else(|| CreateError::MissingEntry(name.clone()))?,
        ),
        None => None,
    };
    let mut cmdline = config.cmdline.clone().unwrap_or_default();
    for i in 0..config.devices.len() {
        let (base, irq) = VmConfig::device_window(i);
        cmdline += &alloc::format!(" virtio_mmio.device=4K@{base:#x}:{irq}");
    }
    let window = vm::linux::E820Entry {
        addr: vm::config::MMIO_BASE,
        size: vm::config::MMIO_STRIDE * vm::config::MAX_DEVICES as u64,
        kind: vm::linux::E820Kind::Reserved,
    };
    let extra = [window];
    let lc = vm::linux::LinuxConfig {
        ram: config.memory,
        cmdline: cmdline.trim(),
        initrd,
        e820_extra: &extra,
    };
    info!("vm {}: Linux command line: {}", config.name, lc.cmdline);
    vm::linux::load_linux(image, &lc, memory)
        .map_err(|e| CreateError::Platform(alloc::format!("loading the Linux kernel failed: {e}")))
}

/// Programs the VM-entry event-injection fields for `event` (SDM Vol. 3C §25.8.3).
fn write_injection(event: &Injection) {
    let _ = vmcs::write_guest(
        vmcs::guest_field!(VM_ENTRY_INTERRUPTION_INFO),
        u64::from(event.info.raw()),
    );
    if let Some(code) = event.error_code {
        let _ = vmcs::write_guest(
            vmcs::guest_field!(VM_ENTRY_EXCEPTION_ERROR_CODE),
            u64::from(code),
        );
    }
    if let Some(len) = event.instruction_length {
        let _ = vmcs::write_guest(
            vmcs::guest_field!(VM_ENTRY_INSTRUCTION_LENGTH),
            u64::from(len),
        );
    }
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

/// Creates every configured VM and runs them round-robin until all have stopped. Returns how
/// many VMs were created and how many could not be.
pub fn run(
    caps: &Capabilities,
    archive: &Archive<'static>,
    config: &Config,
    tsc_hz: u64,
) -> (usize, usize) {
    let mut vms: Vec<Vm> = Vec::new();
    let mut failed = 0;
    for (i, vc) in config.vms.iter().enumerate() {
        match Vm::create(i, vc, archive, caps, tsc_hz) {
            Ok(vm) => vms.push(vm),
            Err(e) => {
                error!("vm {}: not started: {e}", vc.name);
                failed += 1;
            }
        }
    }
    let created = vms.len();
    let timeslice = config.hypervisor.timeslice;
    // A halted VM's timer may cut another VM's slice at most this often (100 µs): the PIT
    // model coalesces the ticks in between into one interrupt, as for any missed tick.
    let min_wake = tsc_hz / 10_000;
    let mut next = 0;
    // The VM whose slice was cut for a wake-up: it resumes after the woken VM.
    let mut resume: Option<usize> = None;
    while !vms
        .iter()
        .all(|v| matches!(v.vcpu.state, State::Stopped(_)))
    {
        crate::serial::pump_if_due(arch::rdtsc());
        // Halted vCPUs wake when their devices raise an interrupt; one that no device can
        // interrupt any more (every line masked, no timer) never wakes: its VM is stopped.
        let now = arch::rdtsc();
        for vm in vms.iter_mut().filter(|v| v.vcpu.state == State::Halted) {
            // Device work a sleeping vCPU waits for: one bounded round per pass, counted for
            // its VM, with the other VMs' slices in between.
            if vm.platform.virtio.work_due().is_some_and(|d| now >= d) {
                vm.platform.device_work(&mut vm.memory, &mut vm.console);
            }
            vm.platform.tick(now);
            if vm.platform.pending_vector().is_some() || vm.vcpu.deferred_event.is_some() {
                vm.vcpu.state = State::Runnable;
            } else if !vm.platform.can_wake() {
                vm.halt_forever();
            }
        }
        let runnable = (0..vms.len())
            .map(|k| (next + k) % vms.len())
            .find(|&i| vms[i].vcpu.state == State::Runnable);
        if let Some(i) = runnable {
            let wake_others_at = vms
                .iter()
                .filter(|v| v.vcpu.state == State::Halted)
                .filter_map(|v| v.platform.next_wake())
                .min()
                .map_or(u64::MAX, |d| d.max(now.saturating_add(min_wake)));
            let cut = vms[i].run_slice(timeslice, wake_others_at);
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
        // Everyone left is halted: wait for the earliest device deadline; without one
        // nothing can ever wake them.
        let deadline = vms
            .iter()
            .filter(|v| v.vcpu.state == State::Halted)
            .filter_map(|v| v.platform.next_wake())
            .min();
        match deadline {
            Some(d) => {
                // Idle: the time to drain the console.
                loop {
                    let now = arch::rdtsc();
                    if now >= d {
                        break;
                    }
                    crate::serial::pump_if_due(now);
                    core::hint::spin_loop();
                }
            }
            None => {
                for vm in vms.iter_mut().filter(|v| v.vcpu.state == State::Halted) {
                    vm.halt_forever();
                }
            }
        }
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
