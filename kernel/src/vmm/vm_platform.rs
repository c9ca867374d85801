//! A VM's platform as the exit handlers see it (docs/vm-platform.md): the legacy PC devices
//! (8259A PICs, 8254 PIT, MC146818 RTC, 16550A UART on COM1) behind the port I/O bus, the
//! CPUID and MSR policies, and its virtio-mmio devices (`virtio_devices`). The device models
//! and policies live in the host-tested `vm` and `virtio` crates; this module only connects
//! them to the VMCS and guest memory.

use super::guest_memory::GuestMemory;
use super::virtio_devices::{IrqMask, VirtioDevices};
use super::Console;
use crate::arch;
use alloc::string::String;
use alloc::sync::Arc;
use hypercall::cpuid as hv;
use vm::archive::Archive;
use vm::config::VmConfig;
use vm::cpuid::{CpuidConfig, CpuidPolicy, HypervisorLeaves, VcpuCpuidState};
use vm::devices::{LegacyPlatform, PlatformConfig};
use vm::insn::{DwordAccess, MmioAccess};
use vm::io::AccessSize;
use vm::msr::{MsrAction, MsrConfig, MsrContext, MsrPolicy, MsrState};
use vmx::caps::Capabilities;
use vmx::controls::SecondaryControls;
use vmx::msr::Msr;

/// The VM's devices and policies.
pub struct Platform {
    legacy: LegacyPlatform,
    pub virtio: VirtioDevices,
    /// Shared with the vCPUs, which answer CPUID themselves (exits.rs, quick_exit.rs).
    cpuid: Arc<CpuidPolicy>,
    msr: MsrPolicy,
    tsc_aux: bool,
    /// CR4 bits of features the CPUID policy hides (vm::features::cr4_guest_reserved).
    cr4_reserved: u64,
    /// The TSC at which the RTC started (the VM's clock epoch).
    boot_tsc: u64,
}

impl core::fmt::Debug for Platform {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Platform")
            .field("virtio", &self.virtio)
            .finish()
    }
}

impl virtio::GuestMemory for GuestMemory {
    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), virtio::MemError> {
        GuestMemory::read(self, gpa, buf).ok_or(virtio::MemError::OutOfBounds {
            gpa,
            len: buf.len() as u64,
        })
    }
    fn write(&mut self, gpa: u64, data: &[u8]) -> Result<(), virtio::MemError> {
        GuestMemory::write(self, gpa, data).ok_or(virtio::MemError::OutOfBounds {
            gpa,
            len: data.len() as u64,
        })
    }
    fn check_range(&self, gpa: u64, len: u64) -> Result<(), virtio::MemError> {
        let end = gpa
            .checked_add(len)
            .ok_or(virtio::MemError::Overflow { gpa, len })?;
        if end <= self.size() {
            Ok(())
        } else {
            Err(virtio::MemError::OutOfBounds { gpa, len })
        }
    }
}

/// Bulkhead's hypervisor CPUID leaves (docs/hypercall-abi.md).
fn hypervisor_leaves() -> [(u32, [u32; 4]); 1] {
    let l = hv::hypervisor_leaf(hv::LEAF_INTERFACE, hv::FEATURES_V1).unwrap_or_default();
    [(hv::LEAF_INTERFACE, [l.eax, l.ebx, l.ecx, l.edx])]
}

impl Platform {
    pub fn new(
        config: &VmConfig,
        archive: &Archive<'static>,
        caps: &Capabilities,
        tsc_hz: u64,
        disk_budget: Option<u64>,
    ) -> Result<Self, String> {
        let virtio = VirtioDevices::new(config, archive, tsc_hz, disk_budget)?;
        let mut pc = PlatformConfig::new(tsc_hz);
        pc.boot_tsc = arch::rdtsc();
        // The VM's RTC starts at the machine's date (read at boot), advancing with the TSC.
        pc.wall_clock_secs = crate::host_rtc::unix_secs_at(pc.boot_tsc, tsc_hz);
        pc.ram_bytes = config.memory;
        // The IOAPIC and ACPI PM ports the guest's ACPI tables describe (vm::acpi); Linux,
        // PVH and Multiboot guests get the tables (create.rs), the PM ports are unclaimed for
        // the others.
        pc.ioapic_id = vm::acpi::IOAPIC_ID;
        pc.acpi_pm = config.kind.has_acpi();
        let legacy = LegacyPlatform::new(pc);

        let leaves = hypervisor_leaves();
        let mut cc = CpuidConfig::new(HypervisorLeaves {
            max_leaf: hv::MAX_LEAF,
            signature: hv::SIGNATURE,
            leaves: &leaves,
        });
        cc.tsc_hz = Some(tsc_hz);
        // Every vCPU has an emulated local APIC (guest_apic.rs, vm::apic) with x2APIC and the
        // TSC-deadline timer, and the topology leaves describe `vcpus` of them.
        cc.local_apic = true;
        cc.x2apic = true;
        cc.tsc_deadline = true;
        cc.vcpus = config.vcpus.max(1);
        // Offered where this CPU's VMX lets the guest use them (vm::features).
        cc.invpcid = true;
        cc.rdtscp = true;
        cc.secondary_allowed = SecondaryControls::from_bits_retain(caps.secondary.may_be_one);
        cc.cr4_allowed = caps.cr4_fixed.may_be_one;
        // XSAVE with the host's components (vm::cpuid allows x87, SSE, AVX, AVX-512, PKRU),
        // switched per vCPU (xsave.rs), if they fit the vCPU's image.
        cc.xsave = arch::has_xsave();
        // KVM's paravirtual leaves at 0x40000100 (kvm_pv.rs; Bulkhead's own stay at
        // 0x40000000): a dedicated VM's vCPUs are never preempted (KVM_HINTS_REALTIME).
        cc.kvm_leaves = config
            .kvm_pv
            .then(|| vm::kvm_pv::cpuid_leaves(vm::kvm_pv::OFFERED, config.dedicated));
        let mut cpuid = CpuidPolicy::from_host(arch::cpuid, &cc);
        if cpuid.xsave_size(cpuid.xcr0_supported()) as usize > super::xsave::AREA_BYTES {
            cc.xsave = false;
            cpuid = CpuidPolicy::from_host(arch::cpuid, &cc);
        }
        let msr = MsrPolicy::new(MsrConfig::new(tsc_hz));
        let cr4_reserved = vm::features::cr4_guest_reserved(&cpuid);
        Ok(Platform {
            boot_tsc: pc.boot_tsc,
            cr4_reserved,
            legacy,
            virtio,
            cpuid: Arc::new(cpuid),
            msr,
            tsc_aux: arch::has_tsc_aux(),
        })
    }

    /// The XCR0 components the guest may enable (0: XSAVE not offered).
    pub fn xcr0_supported(&self) -> u64 {
        self.cpuid.xcr0_supported()
    }

    /// The CR4 bits the guest may not set (features its CPUID hides).
    pub fn cr4_reserved(&self) -> u64 {
        self.cr4_reserved
    }

    /// The instruction-enabling controls the offered features need (vm::features).
    pub fn secondary_controls(&self) -> SecondaryControls {
        vm::features::secondary_controls(&self.cpuid)
    }

    /// The CPUID policy, for a new vCPU (it answers CPUID exits with it, no VM lock held).
    pub fn cpuid_policy(&self) -> Arc<CpuidPolicy> {
        Arc::clone(&self.cpuid)
    }

    /// The guest's MAXPHYADDR (CPUID.80000008:EAX[7:0], SDM Vol. 2A CPUID).
    pub fn max_phys_addr_bits(&self) -> u8 {
        self.cpuid
            .lookup(0x8000_0008, 0, &VcpuCpuidState::default())[0] as u8
    }

    /// A new vCPU's MSR state (vm::msr).
    pub fn new_msr_state(&self) -> MsrState {
        MsrState::new(&self.msr, true)
    }

    /// The host TSC at which the VM's RTC started counting: kvmclock's epoch too, so the
    /// wall clock of a VM whose RTC was not set is exactly the RTC's start time.
    pub fn boot_tsc(&self) -> u64 {
        self.boot_tsc
    }

    /// The RTC's time at host TSC `now` in nanoseconds since the Unix epoch (the RTC counts
    /// whole seconds: the kvmclock wall clock is as exact as the guest's CMOS clock).
    pub fn rtc_unix_ns(&mut self, now: u64) -> u64 {
        let secs = self.legacy.rtc_mut().unix_time(now).max(0) as u64;
        secs.saturating_mul(vm::kvm_pv::pvclock::NSEC_PER_SEC)
    }

    /// Brings the timers up to date.
    pub fn tick(&mut self, now: u64) {
        self.legacy.tick(now);
    }

    /// The vector the PIC would deliver next, if any.
    pub fn pending_vector(&self) -> Option<u8> {
        self.legacy.pending_vector()
    }

    /// INTA: the PIC moves the request in service and returns its vector.
    pub fn acknowledge(&mut self) -> Option<u8> {
        self.legacy.acknowledge()
    }

    /// When the next timer interrupt that can reach the vCPU is due, in TSC ticks (a masked
    /// timer is no reason to exit or to wake).
    pub fn next_wake(&self) -> Option<u64> {
        self.legacy.next_wake_tsc()
    }

    /// Whether any device can still interrupt a halted vCPU: a legacy device
    /// ([`LegacyPlatform::can_interrupt`]), or queued virtio work whose completion IRQ is
    /// unmasked.
    pub fn can_wake(&self) -> bool {
        self.legacy.can_interrupt()
            || (self.virtio.work_due().is_some()
                && self.virtio.irqs().any(|irq| self.legacy.irq_unmasked(irq)))
    }

    /// Ports nobody claims, accessed so far.
    pub fn unclaimed_port_accesses(&self) -> u64 {
        self.legacy.unclaimed().total()
    }

    fn drain_console(&mut self, console: &mut Console) {
        self.legacy
            .console()
            .drain(&mut |bytes| console.write(bytes));
    }

    /// Whether an access of `size` bytes to `port` leaves every interrupt line, timer and
    /// other device as it was (LegacyPlatform::port_is_passive): the exit fast path's test.
    pub fn port_is_passive(&self, port: u16, size: u8) -> bool {
        AccessSize::from_bytes(size).is_some_and(|s| self.legacy.port_is_passive(port, s))
    }

    /// IN from a port.
    pub fn port_read(&mut self, port: u16, size: u8, console: &mut Console) -> u32 {
        let Some(size) = AccessSize::from_bytes(size) else {
            return u32::MAX;
        };
        let value = self.legacy.io_read(port, size, arch::rdtsc());
        self.drain_console(console);
        value
    }

    /// OUT to a port.
    pub fn port_write(&mut self, port: u16, size: u8, value: u32, console: &mut Console) {
        let Some(size) = AccessSize::from_bytes(size) else {
            return;
        };
        // The console byte (COM1 THR) goes straight into the VM's console.
        if !self.legacy.uart_data_write(port, size, value, console) {
            self.legacy.io_write(port, size, value, arch::rdtsc());
            self.drain_console(console);
        }
    }

    /// One decoded access to the IOAPIC window (82093AA §3.1: 32-bit registers).
    pub fn ioapic_mmio(&mut self, gpa: u64, access: MmioAccess) -> u64 {
        match access.dword_register(gpa & 0xFFF) {
            read @ DwordAccess::Read { register, .. } => {
                read.narrow(self.legacy.ioapic_read(register))
            }
            DwordAccess::Write { register, value } => {
                self.legacy.ioapic_write(register, value);
                0
            }
            DwordAccess::Ignored => 0,
        }
    }

    /// An EOI for a level-triggered `vector` broadcast to the IOAPIC (SDM Vol. 3A §11.8.5).
    pub fn ioapic_eoi(&mut self, vector: u8) {
        self.legacy.ioapic_eoi(vector);
    }

    /// The interrupt lines' counters (double routing, IOAPIC queue overflows).
    pub fn irq_lines(&self) -> &vm::devices::IrqLines {
        self.legacy.irq_lines()
    }

    /// The IOAPIC's level-triggered vectors (for the EOI-exit bitmap) and the generation of
    /// that set.
    pub fn ioapic_level_vectors(&self) -> (u64, [u64; 4]) {
        let lines = self.legacy.irq_lines();
        (lines.level_generation, lines.ioapic.level_vectors())
    }

    /// The oldest IOAPIC message not yet routed to the vCPUs.
    pub fn take_ioapic_message(&mut self) -> Option<vm::devices::ioapic::IoApicMessage> {
        self.legacy.take_ioapic_message()
    }

    /// The guest's ACPI power-off (S5) or reset-register request, if its last port write
    /// made one (vm::devices::acpi_pm).
    pub fn take_power_request(&mut self) -> Option<vm::devices::acpi_pm::PowerRequest> {
        self.legacy.take_power_request()
    }

    pub fn is_mmio(&self, gpa: u64) -> bool {
        self.virtio.is_mmio(gpa)
    }

    /// One MMIO access against a virtio device; its completion interrupts are raised.
    pub fn mmio(
        &mut self,
        gpa: u64,
        access: MmioAccess,
        memory: &mut GuestMemory,
        console: &mut Console,
    ) -> (u64, bool) {
        let (value, raise) = self.virtio.access(gpa, access, memory, console);
        self.raise(raise);
        (value, raise != IrqMask::default())
    }

    /// One bounded round of queued virtio work (the deadline passed, or the vCPU halted);
    /// leftover work stays due.
    /// Console input for the guest's COM1 (the shell's `console VM`): received with the
    /// UART's receive interrupt when the guest enabled it. Returns how many bytes fit.
    pub fn uart_receive(&mut self, bytes: &[u8], now: u64) -> usize {
        self.legacy.uart_receive(bytes, now)
    }

    pub fn device_work(&mut self, memory: &mut GuestMemory, console: &mut Console) {
        let raise = self.virtio.do_work(memory, console);
        self.raise(raise);
    }

    /// Edges on device IRQ lines of the 8259A.
    fn raise(&mut self, lines: IrqMask) {
        for irq in lines.lines() {
            self.legacy.set_irq(irq, true);
            self.legacy.set_irq(irq, false);
        }
    }

    /// Loads a vCPU's values of the MSRs the VMCS does not switch (before it runs).
    pub fn load_msrs(&self, state: &MsrState) {
        for (msr, value) in state.swapped() {
            if msr == Msr::IA32_TSC_AUX && !self.tsc_aux {
                continue;
            }
            // SAFETY: these MSRs exist in long mode (TSC_AUX checked above); the host kernel
            // uses none of them (no SYSCALL, no SWAPGS), and the policy validated the values.
            unsafe { arch::wrmsr(msr, value) };
        }
    }

    /// Reads back the passed-through KERNEL_GS_BASE (after the VM ran).
    pub fn save_msrs(state: &mut MsrState) {
        // SAFETY: KERNEL_GS_BASE exists in long mode.
        let v = unsafe { arch::rdmsr(Msr::IA32_KERNEL_GS_BASE) };
        state.kernel_gs_base = v;
    }

    /// The legacy PC devices (a snapshot saves and loads their state).
    pub fn legacy(&self) -> &LegacyPlatform {
        &self.legacy
    }

    pub fn legacy_mut(&mut self) -> &mut LegacyPlatform {
        &mut self.legacy
    }

    /// The VM's MSR policy (a snapshot replays its vCPUs' MSRs through it).
    pub fn msr_policy(&self) -> &MsrPolicy {
        &self.msr
    }

    /// RDMSR/WRMSR decisions (vm::msr).
    pub fn rdmsr(&self, state: &MsrState, msr: u32, ctx: &MsrContext) -> MsrAction {
        if msr == Msr::IA32_KERNEL_GS_BASE.0 {
            // Passed through: the live value is in the CPU.
            // SAFETY: KERNEL_GS_BASE exists in long mode.
            return MsrAction::Read(unsafe { arch::rdmsr(Msr::IA32_KERNEL_GS_BASE) });
        }
        self.msr.rdmsr(state, msr, ctx)
    }

    pub fn wrmsr(&self, state: &mut MsrState, msr: u32, value: u64, ctx: &MsrContext) -> MsrAction {
        let action = self.msr.wrmsr(state, msr, value, ctx);
        if action == MsrAction::Written {
            // A swapped MSR must reach the CPU now: the guest may use it (SYSCALL) before the
            // next slice reloads them.
            if let Some((m, v)) = state.swapped().into_iter().find(|(m, _)| m.0 == msr) {
                if m != Msr::IA32_TSC_AUX || self.tsc_aux {
                    // SAFETY: as in `load_msrs`.
                    unsafe { arch::wrmsr(m, v) };
                }
            }
        }
        action
    }

    /// The MSR bitmap of this VM's policy (SDM Vol. 3C §25.6.9).
    pub fn msr_bitmap(&self) -> [u8; 4096] {
        self.msr.msr_bitmap()
    }
}
