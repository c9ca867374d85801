//! A VM's platform as the exit handlers see it (docs/vm-platform.md): the legacy PC devices
//! (8259A PICs, 8254 PIT, MC146818 RTC, 16550A UART on COM1) behind the port I/O bus, the
//! CPUID and MSR policies, and the virtio-mmio devices in its physical map. The device models
//! and policies live in the host-tested `vm` crate; this module only connects them to the
//! VMCS and guest memory.

use super::guest_memory::GuestMemory;
use super::Console;
use crate::arch;
use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use hypercall::cpuid as hv;
use vm::archive::Archive;
use vm::config::{DeviceConfig, DiskSource, VmConfig};
use vm::cpuid::{CpuidConfig, CpuidPolicy, HypervisorLeaves, VcpuCpuidState};
use vm::devices::{LegacyPlatform, PlatformConfig};
use vm::insn::MmioAccess;
use vm::io::AccessSize;
use vm::msr::{MsrAction, MsrConfig, MsrContext, MsrPolicy, MsrState};
use vmx::msr::Msr;

/// A virtio device behind the MMIO transport.
enum Device {
    Blk(virtio::MmioTransport<virtio::BlockDevice<virtio::RamDisk>>),
    Net(virtio::MmioTransport<virtio::NetDevice>),
}

impl core::fmt::Debug for Device {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Device::Blk(_) => "virtio-blk",
            Device::Net(_) => "virtio-net",
        })
    }
}

#[derive(Debug)]
struct MmioRegion {
    base: u64,
    irq: u8,
    device: Box<Device>,
}

/// The gateway port on every VM's virtual switch (docs/vm-platform.md): it answers ARP and
/// ICMP echo, so a single guest can test its network.
pub const GATEWAY_IP: [u8; 4] = [192, 0, 2, 1];
pub const GATEWAY_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x01];

/// A VM's virtual network: a learning switch between its virtio-net devices and the gateway.
struct Network {
    switch: virtio::Switch,
    gateway: virtio::Gateway,
}

/// The VM's devices and policies.
pub struct Platform {
    legacy: LegacyPlatform,
    network: Option<Network>,
    /// When kicked virtio queues must be processed at the latest (TSC), if any are pending.
    kick_deadline: Option<u64>,
    /// How long a kick may wait for more requests to join its batch: 100 µs (the vCPU
    /// halting ends the wait earlier).
    kick_delay: u64,
    cpuid: CpuidPolicy,
    msr: MsrPolicy,
    pub msr_state: MsrState,
    mmio: Vec<MmioRegion>,
    tsc_aux: bool,
}

impl core::fmt::Debug for Platform {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Platform")
            .field("mmio", &self.mmio)
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
    pub fn new(config: &VmConfig, archive: &Archive<'static>, tsc_hz: u64) -> Result<Self, String> {
        let mut mmio = Vec::new();
        for (i, dev) in config.devices.iter().enumerate() {
            let (base, irq) = VmConfig::device_window(i);
            let device = match dev {
                DeviceConfig::VirtioBlk { source, read_only } => {
                    let disk = match source {
                        DiskSource::Empty { size } => {
                            // Keep a quarter of the heap for everything else.
                            let room = crate::memory::heap_free() / 4 * 3;
                            if *size as usize > room {
                                return Err(format!(
                                    "a {} MiB RAM disk does not fit in the hypervisor heap ({} MiB free); use a smaller \
                                     `virtio-blk = size:...` or give the machine more memory",
                                    size >> 20,
                                    room >> 20
                                ));
                            }
                            virtio::RamDisk::new(*size as usize)
                        }
                        // Copy-on-write over the archive entry: only written blocks use the heap.
                        DiskSource::Image(name) => {
                            virtio::RamDisk::from_static(archive.get(name).ok_or_else(|| {
                                format!("the boot archive has no disk image {name:?}")
                            })?)
                        }
                    };
                    let mut t = virtio::MmioTransport::new(virtio::BlockDevice::new(
                        disk.read_only(*read_only),
                    ));
                    // Asynchronous-backend behaviour: batch the requests behind one kick.
                    t.set_deferred_notify(true);
                    Device::Blk(t)
                }
                DeviceConfig::VirtioNet { mac } => {
                    Device::Net(virtio::MmioTransport::new(virtio::NetDevice::new(*mac)))
                }
                DeviceConfig::VirtioConsole => {
                    return Err("virtio-console is not available in this build".into())
                }
            };
            mmio.push(MmioRegion {
                base,
                irq,
                device: Box::new(device),
            });
        }
        let mut pc = PlatformConfig::new(tsc_hz);
        pc.boot_tsc = arch::rdtsc();
        pc.ram_bytes = config.memory;
        let legacy = LegacyPlatform::new(pc);

        let leaves = hypervisor_leaves();
        let mut cc = CpuidConfig::new(HypervisorLeaves {
            max_leaf: hv::MAX_LEAF,
            signature: hv::SIGNATURE,
            leaves: &leaves,
        });
        cc.tsc_hz = Some(tsc_hz);
        // XSAVE state is not switched between VMs yet (only FXSAVE state is): not offered.
        cc.xsave = false;
        let cpuid = CpuidPolicy::from_host(arch::cpuid, &cc);
        let msr = MsrPolicy::new(MsrConfig::new(tsc_hz));
        let msr_state = MsrState::new(&msr, true);
        let has_net = config
            .devices
            .iter()
            .any(|d| matches!(d, DeviceConfig::VirtioNet { .. }));
        let network = has_net.then(|| Network {
            switch: virtio::Switch::new(64),
            gateway: virtio::Gateway::new(GATEWAY_MAC, GATEWAY_IP),
        });
        Ok(Platform {
            legacy,
            network,
            kick_deadline: None,
            kick_delay: tsc_hz / 10_000,
            cpuid,
            msr,
            msr_state,
            mmio,
            tsc_aux: arch::has_tsc_aux(),
        })
    }

    /// CPUID as the guest sees it (precomputed policy).
    pub fn cpuid(&self, leaf: u32, subleaf: u32, cr4: u64) -> [u32; 4] {
        self.cpuid.lookup(
            leaf,
            subleaf,
            &VcpuCpuidState {
                apic_id: 0,
                cr4,
                xcr0: 1,
            },
        )
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

    /// When the next device timer fires, in TSC ticks.
    pub fn next_deadline(&self) -> Option<u64> {
        self.legacy.next_deadline_tsc()
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
        self.legacy.io_write(port, size, value, arch::rdtsc());
        self.drain_console(console);
    }

    pub fn is_mmio(&self, gpa: u64) -> bool {
        self.mmio
            .iter()
            .any(|r| (r.base..r.base + vm::config::MMIO_STRIDE).contains(&gpa))
    }

    /// One MMIO access against the region's device; a completion interrupt is raised on the
    /// device's IRQ line as an edge (virtio 1.2 §4.2.3.4 over the 8259A).
    pub fn mmio(&mut self, gpa: u64, access: MmioAccess, memory: &mut GuestMemory) -> u64 {
        let Some(region) = self
            .mmio
            .iter_mut()
            .find(|r| (r.base..r.base + vm::config::MMIO_STRIDE).contains(&gpa))
        else {
            return u64::MAX;
        };
        let offset = gpa - region.base;
        let (value, interrupt) = match (access, &mut *region.device) {
            (MmioAccess::Read { size }, Device::Blk(t)) => (t.read(offset, size), false),
            (MmioAccess::Read { size }, Device::Net(t)) => (t.read(offset, size), false),
            (MmioAccess::Write { size, value }, Device::Blk(t)) => {
                (0, t.write(offset, size, value, memory).interrupt)
            }
            (MmioAccess::Write { size, value }, Device::Net(t)) => {
                (0, t.write(offset, size, value, memory).interrupt)
            }
        };
        let is_net = matches!(&*region.device, Device::Net(_));
        let kicked = matches!(&*region.device, Device::Blk(t) if t.has_kicks());
        let irq = region.irq;
        if interrupt {
            self.pulse(irq);
        }
        if is_net && matches!(access, MmioAccess::Write { .. }) {
            self.pump_network(memory);
        }
        if kicked && self.kick_deadline.is_none() {
            self.kick_deadline = Some(arch::rdtsc() + self.kick_delay);
        }
        value
    }

    /// When the deferred virtio work must be done at the latest.
    pub fn kick_deadline(&self) -> Option<u64> {
        self.kick_deadline
    }

    /// Processes every kicked virtio queue now (the vCPU halted, or the deadline passed) and
    /// raises the devices' IRQs once per batch.
    pub fn process_kicks(&mut self, memory: &mut GuestMemory) {
        if self.kick_deadline.take().is_none() {
            return;
        }
        let mut raise: Vec<u8> = Vec::new();
        for r in self.mmio.iter_mut() {
            if let Device::Blk(t) = &mut *r.device {
                if t.process_kicks(memory).interrupt {
                    raise.push(r.irq);
                }
            }
        }
        for irq in raise {
            self.pulse(irq);
        }
    }

    /// One line per virtio device: its counters (printed when the VM stops).
    pub fn device_report(&self) -> Vec<String> {
        self.mmio
            .iter()
            .map(|r| {
                let (kind, s, problem) = match &*r.device {
                    Device::Blk(t) => ("virtio-blk", t.stats(), t.error().map(|e| format!("{e}"))),
                    Device::Net(t) => ("virtio-net", t.stats(), t.error().map(|e| format!("{e}"))),
                };
                format!(
                    "{kind} at {:#x} irq {}: requests={} bytes-read={} bytes-written={} notifications={} interrupts={} errors={} dropped={} bad-accesses={}{}",
                    r.base,
                    r.irq,
                    s.requests,
                    s.bytes_read,
                    s.bytes_written,
                    s.notifications,
                    s.interrupts,
                    s.errors,
                    s.dropped,
                    s.bad_accesses,
                    problem.map(|p| format!(" (needs reset: {p})")).unwrap_or_default()
                )
            })
            .collect()
    }

    /// An edge on a device IRQ line of the 8259A.
    fn pulse(&mut self, irq: u8) {
        self.legacy.set_irq(irq, true);
        self.legacy.set_irq(irq, false);
    }

    /// Moves frames through the VM's switch (guest TX → gateway → guest RX) and lets each
    /// net device fill RX buffers, raising its IRQ when the driver wants to know.
    fn pump_network(&mut self, memory: &mut GuestMemory) {
        let Some(net) = self.network.as_mut() else {
            return;
        };
        {
            let mut ports: Vec<&mut dyn virtio::NetPort> = Vec::new();
            for r in self.mmio.iter_mut() {
                if let Device::Net(t) = &mut *r.device {
                    ports.push(t.device_mut());
                }
            }
            ports.push(&mut net.gateway);
            net.switch.pump(&mut ports);
        }
        let mut raise: Vec<u8> = Vec::new();
        for r in self.mmio.iter_mut() {
            if let Device::Net(t) = &mut *r.device {
                if t.poll(memory).interrupt {
                    raise.push(r.irq);
                }
            }
        }
        for irq in raise {
            self.pulse(irq);
        }
    }

    /// Loads this VM's values of the MSRs the VMCS does not switch (before it runs).
    pub fn load_msrs(&self) {
        for (msr, value) in self.msr_state.swapped() {
            if msr == Msr::IA32_TSC_AUX && !self.tsc_aux {
                continue;
            }
            // SAFETY: these MSRs exist in long mode (TSC_AUX checked above); the host kernel
            // uses none of them (no SYSCALL, no SWAPGS), and the policy validated the values.
            unsafe { arch::wrmsr(msr, value) };
        }
    }

    /// Reads back the passed-through KERNEL_GS_BASE (after the VM ran).
    pub fn save_msrs(&mut self) {
        // SAFETY: KERNEL_GS_BASE exists in long mode.
        let v = unsafe { arch::rdmsr(Msr::IA32_KERNEL_GS_BASE) };
        self.msr_state.kernel_gs_base = v;
    }

    /// RDMSR/WRMSR decisions (vm::msr).
    pub fn rdmsr(&self, msr: u32, ctx: &MsrContext) -> MsrAction {
        if msr == Msr::IA32_KERNEL_GS_BASE.0 {
            // Passed through: the live value is in the CPU.
            // SAFETY: KERNEL_GS_BASE exists in long mode.
            return MsrAction::Read(unsafe { arch::rdmsr(Msr::IA32_KERNEL_GS_BASE) });
        }
        self.msr.rdmsr(&self.msr_state, msr, ctx)
    }

    pub fn wrmsr(&mut self, msr: u32, value: u64, ctx: &MsrContext) -> MsrAction {
        let action = self.msr.wrmsr(&mut self.msr_state, msr, value, ctx);
        if action == MsrAction::Written {
            // A swapped MSR must reach the CPU now: the guest may use it (SYSCALL) before the
            // next slice reloads them.
            if let Some((m, v)) = self
                .msr_state
                .swapped()
                .into_iter()
                .find(|(m, _)| m.0 == msr)
            {
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
