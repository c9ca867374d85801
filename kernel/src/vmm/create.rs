//! Creating a VM (docs/architecture.md, "Creating a VM"): its heap worst case checked and
//! reserved, RAM and EPT, the guest image, the platform, the VMCS.

use super::virtio_devices::VirtioDevices;
use super::*;

/// Heap a VM takes besides its devices (platform state, statistics, FPU area, console),
/// rounded up.
const VM_FIXED_HEAP: u64 = 32 * 1024;

/// Heap kept free against fragmentation when VMs reserve their worst case: 1/32 of the heap,
/// at least 256 KiB.
fn heap_margin() -> usize {
    (memory::heap_size_and_high_water().0 / 32).max(256 * 1024)
}

/// Why a VM could not be created.
#[derive(Debug)]
pub enum CreateError {
    MissingEntry(String),
    /// A clone (`from-snapshot`) has no image to load: it starts from its snapshot.
    NoImage,
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
            CreateError::NoImage => f.write_str(
                "a clone (`from-snapshot`) has no image: it starts from its snapshot (`start VM` \
                 once the snapshot is taken)",
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

/// The placeholder boot state of a clone's vCPUs: the mode its kind's loader would start in
/// (the VMX controls are chosen for it at creation); a clone's vCPUs never enter from it, its
/// snapshot's vCPU states replace it when it starts.
fn clone_boot_state(kind: GuestKind) -> loader::BootState {
    let mode = match kind {
        GuestKind::Elf64 | GuestKind::Linux => EntryMode::Long64 { cr3: 0 },
        GuestKind::Real16 => EntryMode::Real16,
        GuestKind::Pvh | GuestKind::Multiboot => EntryMode::Flat32 { eax: 0, ebx: 0 },
    };
    loader::BootState {
        mode,
        rip: 0,
        rsp: 0,
        rdi: 0,
        rsi: 0,
    }
}

/// Loads a Linux bzImage through the 64-bit boot protocol (vm::linux) with the VM's ACPI
/// tables, whose DSDT names its virtio-mmio devices and COM1 (`VmConfig::acpi_config`); the
/// e820 map marks the virtio-mmio window reserved.
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
    let cmdline = config.linux_cmdline();
    let extra = [VmConfig::mmio_window_e820()];
    let lc = vm::linux::LinuxConfig {
        ram: config.memory,
        cmdline: &cmdline,
        initrd,
        e820_extra: &extra,
    };
    info!("vm {}: Linux command line: {}", config.name, lc.cmdline);
    // The guest's ACPI tables (vm::acpi: MADT with a local APIC per vCPU and the IOAPIC, FADT
    // naming the ACPI PM ports, DSDT with the devices) in the BIOS area, announced in the zero
    // page and found by the 0xE0000 scan too.
    let tables = vm::acpi::GuestTables::build(&config.acpi_config(), vm::acpi::BIOS_AREA_GPA)
        .map_err(|e| {
            CreateError::Platform(alloc::format!("building the ACPI tables failed: {e}"))
        })?;
    let extras = vm::linux::LinuxExtras {
        acpi: Some(&tables),
    };
    if config.kind == GuestKind::Pvh {
        let pc = vm::pvh::PvhConfig {
            ram: lc.ram,
            cmdline: lc.cmdline,
            initrd: lc.initrd,
            e820_extra: lc.e820_extra,
            acpi: Some(&tables),
        };
        return vm::pvh::load_pvh(image, &pc, memory).map_err(|e| {
            CreateError::Platform(alloc::format!("loading the PVH kernel failed: {e}"))
        });
    }
    vm::linux::load_linux_with(image, &lc, &extras, memory)
        .map_err(|e| CreateError::Platform(alloc::format!("loading the Linux kernel failed: {e}")))
}

/// Loads a Multiboot v1 kernel (vm::multiboot): the `initrd` entry is module 0 (its string the
/// entry's name), the memory map reserves the virtio-mmio window, the ACPI tables sit in the
/// BIOS area for a kernel that scans for the RSDP.
fn multiboot_boot(
    config: &VmConfig,
    archive: &Archive<'static>,
    image: &[u8],
    memory: &mut GuestMemory,
) -> Result<loader::BootState, CreateError> {
    let mut modules = alloc::vec::Vec::new();
    if let Some(name) = &config.initrd {
        let data = archive
            .get(name)
            .ok_or_else(|| CreateError::MissingEntry(name.clone()))?;
        modules.push(vm::multiboot::Module {
            data,
            string: name.as_str(),
        });
    }
    let tables = vm::acpi::GuestTables::build(&config.acpi_config(), vm::acpi::BIOS_AREA_GPA)
        .map_err(|e| {
            CreateError::Platform(alloc::format!("building the ACPI tables failed: {e}"))
        })?;
    let extra = [VmConfig::mmio_window_e820()];
    let mc = vm::multiboot::MultibootConfig {
        ram: config.memory,
        cmdline: config.cmdline.as_deref().unwrap_or(""),
        modules: &modules,
        e820_extra: &extra,
        acpi: Some(&tables),
    };
    vm::multiboot::load_multiboot(image, &mc, memory).map_err(|e| {
        CreateError::Platform(alloc::format!("loading the Multiboot kernel failed: {e}"))
    })
}

/// What a VM's devices may take from the shared heap (`Vm::heap_plan`).
pub(super) struct HeapPlan {
    /// Each copy-on-write disk's overlay budget (`heap-budget` shared out), if capped.
    pub disk_budget: Option<u64>,
}

/// The VM-wide frames its vCPUs' VMCSs name besides the EPT and the APIC pages: one MSR
/// bitmap and one pair of I/O bitmaps for all of them (SDM Vol. 3C §25.6.4, §25.6.9: the
/// controls only name their addresses).
#[derive(Debug, Clone, Copy)]
pub(super) struct VmFrames {
    pub msr_bitmap: u64,
    pub io_bitmaps: (u64, u64),
}

impl Vm {
    /// Allocates the VM's RAM and loads its guest image.
    pub(super) fn load(
        index: usize,
        config: &VmConfig,
        archive: &Archive<'static>,
        caps: &Capabilities,
        apic_access: Option<u64>,
    ) -> Result<(loader::BootState, GuestMemory), CreateError> {
        let ept_config = ept::EptConfig {
            page_2m: caps.ept_2m_pages(),
            page_1g: caps.ept_1g_pages(),
            ..Default::default()
        };
        let invept = guest_memory::InveptKind::for_cpu(caps);
        let apic_access = apic_access.map(|page| (vm::apic::DEFAULT_APIC_BASE, page));
        let vcpus = config.vcpus.max(1) as usize;
        if config.from_snapshot().is_some() {
            // A clone: no image; its RAM and every vCPU's state come from its snapshot when
            // it starts (snapshot/clone.rs).
            let memory =
                GuestMemory::new_clone(config.memory, ept_config, invept, apic_access, vcpus)
                    .map_err(CreateError::Memory)?;
            return Ok((clone_boot_state(config.kind), memory));
        }
        let mut memory = GuestMemory::new(config.memory, ept_config, invept, apic_access, vcpus)
            .map_err(CreateError::Memory)?;
        let boot = Self::load_image(index, config, archive, &mut memory)?;
        Ok((boot, memory))
    }

    /// Loads the guest image into `memory` (zeroed RAM) as its kind says.
    pub(super) fn load_image(
        index: usize,
        config: &VmConfig,
        archive: &Archive<'static>,
        memory: &mut GuestMemory,
    ) -> Result<loader::BootState, CreateError> {
        let name = config.image().ok_or(CreateError::NoImage)?;
        let image = archive
            .get(name)
            .ok_or_else(|| CreateError::MissingEntry(name.into()))?;
        match config.kind {
            GuestKind::Elf64 => loader::load_elf64(image, config.memory, index as u64, memory),
            GuestKind::Real16 => loader::load_real16(image, config.memory, memory),
            GuestKind::Linux | GuestKind::Pvh => {
                return linux_boot(config, archive, image, memory);
            }
            GuestKind::Multiboot => return multiboot_boot(config, archive, image, memory),
        }
        .map_err(CreateError::Load)
    }

    /// The budget rule (docs/architecture.md, "Budgets"): the VM's whole worst case on the
    /// shared heap, what its devices take now and what its guest can make them take later,
    /// must fit in what is really left; the later part is reserved, so no guest can take
    /// another VM's heap or the hypervisor's. `heap-budget` caps the devices' heap: what
    /// they take at creation, and the rest shared out as the overlay budgets of the
    /// copy-on-write disks.
    pub(super) fn heap_plan(
        config: &VmConfig,
        archive: &Archive<'static>,
    ) -> Result<HeapPlan, CreateError> {
        let create_bytes = VirtioDevices::creation_bytes(config);
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
                Some((budget - create_bytes) / VirtioDevices::cow_disk_count(config).max(1))
            }
        };
        let growth_bytes = VirtioDevices::growth_bytes(config, archive, disk_budget);
        let margin = heap_margin();
        let need = (create_bytes + growth_bytes + VM_FIXED_HEAP) as usize;
        let available = memory::heap_available();
        if need.saturating_add(margin) > available {
            return Err(CreateError::HeapBudget {
                need: need as u64,
                available: available.saturating_sub(margin) as u64,
            });
        }
        Ok(HeapPlan { disk_budget })
    }

    /// The VM's devices and platform, and its KVM PV state (kvmclock counts from the RTC's
    /// start); the heap its guest can make the devices take later is reserved. Returns them
    /// with the heap the devices took now and the bytes reserved.
    pub(super) fn new_platform(
        config: &VmConfig,
        archive: &Archive<'static>,
        caps: &Capabilities,
        tsc_hz: u64,
        plan: &HeapPlan,
    ) -> Result<(Platform, Option<vm::kvm_pv::state::VmPv>, u64, u64), CreateError> {
        let heap_before = memory::heap_free();
        let platform = Platform::new(config, archive, caps, tsc_hz, plan.disk_budget)
            .map_err(CreateError::Platform)?;
        let kvm_pv = kvm_pv::new_state(config, tsc_hz, platform.boot_tsc());
        // Device state (RAM disks, queues, switch) lives on the heap.
        let device_bytes = heap_before.saturating_sub(memory::heap_free()) as u64;
        let growth = platform.virtio.worst_case_bytes();
        let margin = heap_margin();
        memory::reserve_heap(growth as usize, margin).map_err(|available| {
            CreateError::HeapBudget {
                need: growth,
                available: available.saturating_sub(margin) as u64,
            }
        })?;
        Ok((platform, kvm_pv, device_bytes, growth))
    }

    /// A local APIC per vCPU over `pages` (one each), APIC ID = vCPU index (CPUID and the
    /// MADT say the same), in its power-up state.
    pub(super) fn new_lapics(
        pages: Vec<guest_apic::ApicFrame>,
        platform: &Platform,
        tsc_hz: u64,
    ) -> Vec<vm::apic::LocalApic<guest_apic::ApicFrame>> {
        pages
            .into_iter()
            .enumerate()
            .map(|(index, page)| {
                vm::apic::LocalApic::new(
                    page,
                    vm::apic::ApicConfig {
                        apic_id: index as u32,
                        bsp: index == 0,
                        max_phys_addr_bits: platform.max_phys_addr_bits(),
                        tsc_hz,
                        // The timer counts the core crystal clock CPUID 0x15 reports
                        // (vm::cpuid: the TSC frequency itself below 4.29 GHz), as Linux
                        // assumes.
                        timer_hz: guest_apic::timer_hz(tsc_hz),
                    },
                )
            })
            .collect()
    }

    /// What vCPU `index`'s VMCS names (its VPID, the VM's EPT, bitmaps and APIC pages).
    pub(super) fn vcpu_resources(&self, index: usize, vpid: u16) -> setup::VcpuResources {
        setup::VcpuResources {
            eptp: self.memory.eptp(),
            vpid,
            msr_bitmap: self.frames.msr_bitmap,
            io_bitmaps: self.frames.io_bitmaps,
            apic: self.apicv.as_ref().map(|a| setup::ApicPages {
                virtual_apic: self.lapics[index].page().phys(),
                apic_access: a.apic_access,
            }),
        }
    }

    /// Makes `vmcs` current and writes its controls (from `self.controls`) and the boot guest
    /// state.
    pub(super) fn program_vmcs(
        &self,
        vmcs: &vmcs::Vmcs,
        resources: &setup::VcpuResources,
        boot: &loader::BootState,
    ) -> Result<(), CreateError> {
        vmcs.load().map_err(|e| CreateError::Setup(e.into()))?;
        // SAFETY: the EPT maps only this VM's RAM (GuestMemory), the bitmaps are frames
        // allocated for this VM, and `controls` come from `setup::controls` for this CPU
        // model (every CPU in VMX root has the boot CPU's capabilities).
        unsafe { setup::write_controls(&self.controls, resources) }
            .map_err(|e| CreateError::Setup(e.into()))?;
        setup::write_guest_state(&self.caps, boot, self.platform.cr4_reserved())
            .map_err(|e| CreateError::Setup(e.into()))
    }

    /// vCPU `index` of `count` as it starts (or starts again, restart.rs) over `vmcs`.
    pub(super) fn new_vcpu(
        &self,
        config: &VmConfig,
        boot: &loader::BootState,
        (index, count): (usize, usize),
        vmcs: vmcs::Vmcs,
        vpid: u16,
    ) -> Vcpu {
        // docs/vm-platform.md: every vCPU of an elf64 guest starts at the entry point with
        // RDX = its index and RCX = the vCPU count.
        // The 32-bit boot protocols hand over EAX and EBX (vm::loader::EntryMode::Flat32).
        let (rax, rbx) = match boot.mode {
            EntryMode::Flat32 { eax, ebx } => (u64::from(eax), u64::from(ebx)),
            _ => (0, 0),
        };
        let regs = GuestRegs {
            rax,
            rbx,
            rdi: boot.rdi,
            rsi: boot.rsi,
            rdx: index as u64,
            rcx: count as u64,
            ..Default::default()
        };
        Vcpu {
            index,
            vmcs,
            vpid,
            epoch: 0,
            regs,
            launched: false,
            entered: false,
            host_state_written: false,
            controls: self.controls,
            // Linux and real-mode guests start their application processors themselves,
            // with INIT and start-up IPIs (SDM Vol. 3A §9.4.4), as on a PC: they wait for
            // them from the start. An elf64 guest's vCPUs all start at its entry.
            state: if index > 0 && config.kind != GuestKind::Elf64 {
                State::WaitForSipi
            } else {
                State::Runnable
            },
            deferred_event: None,
            nmi_pending: false,
            pending_startup: None,
            pv_unhalted: false,
            halted_irqs_off: false,
            idle_call: false,
            eoi_exit_generation: 0,
            debug: arch::DebugRegs::initial(),
            xstate: xsave::ExtendedState::new(self.platform.xcr0_supported()),
            msr_state: self.platform.new_msr_state(),
            stats: ExitStats::new(),
            slice_end: 0,
            wake_others_at: u64::MAX,
            slice_left: None,
            ept_sync: self.memory.sync().clone(),
            pooled: config.cpus.is_none(),
            last_cpu: None,
            ready_since: None,
            poll_control: true,
            fast_until: 0,
            exit_passive: false,
            decode_cache: vm::insn::DecodeCache::new(),
            cpuid: self.platform.cpuid_policy(),
            kvm_pv_offered: self.kvm_pv_offered,
            quick_armed: false,
            parked: false,
        }
    }

    /// Creates the VM and its vCPUs; `homes` names each vCPU's CPU (the placement plan).
    /// Returns them with the boot state the vCPUs start from.
    pub(super) fn create(
        index: usize,
        config: &VmConfig,
        archive: &Archive<'static>,
        caps: &Capabilities,
        tsc_hz: u64,
        homes: &[usize],
    ) -> Result<(Vm, Vec<Vcpu>, loader::BootState), CreateError> {
        let plan = Self::heap_plan(config, archive)?;
        // APIC virtualization when the CPU has all of it (vmx::apicv): the VM's APIC-access
        // page, mapped at the xAPIC base, and the MSR bitmap of vCPUs in x2APIC mode.
        let apicv = vmx::apicv::available(caps);
        let apic_access = if apicv {
            Some(setup::zeroed_frame().map_err(CreateError::Setup)?)
        } else {
            None
        };
        let (boot, memory) = Self::load(index, config, archive, caps, apic_access)?;
        let (platform, kvm_pv, device_bytes, reserved) =
            Self::new_platform(config, archive, caps, tsc_hz, &plan)?;

        let long_mode = matches!(boot.mode, EntryMode::Long64 { .. });
        let controls = setup::controls(caps, long_mode, platform.secondary_controls(), apicv)
            .map_err(|e| CreateError::Setup(SetupError::Controls(e)))?;
        let frames = VmFrames {
            msr_bitmap: setup::msr_bitmap(&platform.msr_bitmap()).map_err(CreateError::Setup)?,
            io_bitmaps: setup::io_bitmaps().map_err(CreateError::Setup)?,
        };
        let apicv = match apic_access {
            Some(apic_access) => Some(guest_apic::Apicv {
                apic_access,
                xapic_msr_bitmap: frames.msr_bitmap,
                x2apic_msr_bitmap: setup::msr_bitmap(&vmx::apicv::x2apic_msr_bitmap(
                    &platform.msr_bitmap(),
                ))
                .map_err(CreateError::Setup)?,
            }),
            None => None,
        };
        let count = homes.len().max(1);
        let mut pages = Vec::with_capacity(count);
        for _ in 0..count {
            pages.push(
                guest_apic::ApicFrame::new().ok_or(CreateError::Setup(SetupError::OutOfMemory))?,
            );
        }
        let lapics = Self::new_lapics(pages, &platform, tsc_hz);
        let inboxes = (0..count).map(|_| guest_apic::Inbox::default()).collect();
        let mut vm = Vm {
            name: config.name.clone(),
            memory,
            platform,
            console: Console::new(
                &config.name,
                config.console_timestamps,
                config.console_rate,
                config.console_buffer,
                tsc_hz,
            ),
            caps: caps.clone(),
            min_timer_ticks: tsc_hz / 100_000,
            tsc_hz,
            stopping: None,
            stop_rip: 0,
            vcpus_running: count,
            finished_stats: ExitStats::new(),
            xstate_switches: 0,
            xstate_ticks: 0,
            vcpu_cpus: homes.to_vec(),
            lapics,
            inboxes,
            apicv,
            apic_stats: guest_apic::RoutingStats::default(),
            kvm_pv,
            kvm_pv_counters: kvm_pv::PvCounters::default(),
            kvm_pv_offered: config.kvm_pv,
            kvm_calls: Default::default(),
            vcpu_sched: Vec::new(),
            controls,
            frames,
            heap_reserved: reserved,
            pause: None,
        };
        let mut vcpus = Vec::with_capacity(count);
        for index in 0..count {
            let vmcs = vmcs::Vmcs::new(caps).map_err(|e| CreateError::Setup(e.into()))?;
            let vpid = next_vpid();
            vm.program_vmcs(&vmcs, &vm.vcpu_resources(index, vpid), &boot)?;
            // The VMCS moves to its vCPU's CPU: VMCLEAR writes it back to memory and makes it
            // launchable there (SDM Vol. 3C §25.11.1, §25.11.3); that CPU writes its own host
            // state before the first entry.
            vmcs.clear().map_err(|e| CreateError::Setup(e.into()))?;
            if index == 0 {
                info!("vm {}: vcpu 0 VPID {vpid}", config.name);
            }
            let mut vcpu = vm.new_vcpu(config, &boot, (index, count), vmcs, vpid);
            if config.from_snapshot().is_some() {
                // A clone waits, stopped, for its start from the snapshot.
                vcpu.state = State::Stopped(StopReason::AwaitingSnapshot);
            }
            vcpus.push(vcpu);
        }
        if config.from_snapshot().is_some() {
            vm.vcpus_running = 0;
        }
        vm.vcpu_sched = vcpus
            .iter()
            .map(kvm_hypercalls::Sched::after_slice)
            .collect();
        // A VMCS, MSR bitmap and the two I/O bitmaps: 3 frames + one per vCPU.
        let vmx_bytes = (3 + count as u64) * memory::FRAME_SIZE;
        let ept_bytes = vm.memory.overhead_bytes();
        info!(
            "vm {}: memory beyond guest RAM: {} bytes (VMCS and bitmaps {vmx_bytes}, EPT {ept_bytes}, device state {device_bytes})",
            config.name,
            vmx_bytes + ept_bytes + device_bytes
        );
        let overhead = vmx_bytes + ept_bytes + device_bytes;
        info!(
            "vm {}: {} MiB RAM, {} guest {} entered at {:#x}, {} virtio device(s), {count} vCPU(s), overhead {} KiB (VMCS, bitmaps, EPT, devices)",
            config.name,
            config.memory >> 20,
            match config.kind {
                GuestKind::Elf64 => "64-bit",
                GuestKind::Real16 => "real-mode",
                GuestKind::Linux => "Linux",
                GuestKind::Pvh => "PVH",
                GuestKind::Multiboot => "Multiboot",
            },
            config.image().unwrap_or("(a clone: from its snapshot)"),
            boot.rip,
            config.devices.len(),
            overhead >> 10
        );
        Ok((vm, vcpus, boot))
    }
}

/// VPIDs for the vCPUs of all VMs, from 1 (VPID 0 is the host's: SDM Vol. 3C §29.1).
fn next_vpid() -> u16 {
    static NEXT: core::sync::atomic::AtomicU16 = core::sync::atomic::AtomicU16::new(1);
    NEXT.fetch_add(1, core::sync::atomic::Ordering::Relaxed)
}
