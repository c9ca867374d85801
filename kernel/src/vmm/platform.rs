//! A VM's platform as the exit handlers see it: the CPUID policy, the MSR policy, port I/O
//! devices and the virtio-mmio devices in its physical map (docs/vm-platform.md).

use super::guest_memory::GuestMemory;
use super::{Console, VmStats};
use crate::arch;
use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use hypercall::cpuid as hv;
use vm::archive::Archive;
use vm::config::{DeviceConfig, DiskSource, VmConfig};
use vm::insn::MmioAccess;
use vmx::caps::Capabilities;
use vmx::msr::{FeatureControl, Msr};

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

/// The 16550 UART's ports (COM1), its line status register and the THRE|TEMT bits.
const COM1: u16 = 0x3f8;
const COM1_LSR: u16 = COM1 + 5;
const LSR_THRE_TEMT: u32 = 0x60;

/// The VM's devices and policies.
#[derive(Debug)]
pub struct Platform {
    mmio: Vec<MmioRegion>,
    /// Emulated MSR values this VM may write and read back.
    tsc_aux: u64,
    sysenter: [u64; 3],
    scratch: u8,
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

impl Platform {
    pub fn new(config: &VmConfig, archive: &Archive, _caps: &Capabilities) -> Result<Self, String> {
        let mut mmio = Vec::new();
        for (i, dev) in config.devices.iter().enumerate() {
            let (base, irq) = VmConfig::device_window(i);
            let device = match dev {
                DeviceConfig::VirtioBlk { source, read_only } => {
                    let disk = match source {
                        DiskSource::Empty { size } => virtio::RamDisk::new(*size as usize),
                        DiskSource::Image(name) => {
                            let data = archive.get(name).ok_or_else(|| {
                                format!("the boot archive has no disk image {name:?}")
                            })?;
                            virtio::RamDisk::from_image(data.to_vec())
                        }
                    };
                    Device::Blk(virtio::MmioTransport::new(virtio::BlockDevice::new(
                        disk.read_only(*read_only),
                    )))
                }
                DeviceConfig::VirtioNet { mac } => {
                    Device::Net(virtio::MmioTransport::new(virtio::NetDevice::new(*mac)))
                }
            };
            mmio.push(MmioRegion {
                base,
                irq,
                device: Box::new(device),
            });
        }
        Ok(Platform {
            mmio,
            tsc_aux: 0,
            sysenter: [0; 3],
            scratch: 0,
        })
    }

    /// CPUID as the guest sees it: the host's answers with VMX, SMX, MONITOR, XSAVE,
    /// TSC-deadline and performance monitoring hidden, the hypervisor bit set, and Bulkhead's
    /// leaves at 0x40000000 (docs/hypercall-abi.md).
    pub fn cpuid(&self, leaf: u32, subleaf: u32) -> [u32; 4] {
        if let Some(l) = hv::hypervisor_leaf(leaf, hv::FEATURES_V1) {
            return [l.eax, l.ebx, l.ecx, l.edx];
        }
        let mut r = arch::cpuid(leaf, subleaf);
        match leaf {
            1 => {
                const MONITOR: u32 = 1 << 3;
                const VMX: u32 = 1 << 5;
                const SMX: u32 = 1 << 6;
                const TSC_DEADLINE: u32 = 1 << 24;
                const XSAVE: u32 = 1 << 26;
                const OSXSAVE: u32 = 1 << 27;
                const AVX: u32 = 1 << 28;
                r[2] &= !(MONITOR | VMX | SMX | TSC_DEADLINE | XSAVE | OSXSAVE | AVX);
                r[2] |= hv::HYPERVISOR_PRESENT_ECX;
            }
            // Performance monitoring and XSAVE state enumeration are not offered.
            0xA | 0xD => r = [0; 4],
            _ => {}
        }
        r
    }

    /// Whether an interrupt is pending for the guest (no interrupt controller yet).
    pub fn interrupt_pending(&self) -> bool {
        false
    }

    /// IN from a port: COM1 transmit always ready; unclaimed ports read all ones.
    pub fn port_read(
        &mut self,
        port: u16,
        size: u8,
        _console: &mut Console,
        stats: &mut VmStats,
    ) -> u32 {
        match port {
            COM1_LSR => LSR_THRE_TEMT,
            0x3ff => u32::from(self.scratch),
            COM1..=0x3fe => 0,
            _ => {
                stats.unclaimed_port_accesses += 1;
                if size == 4 {
                    u32::MAX
                } else {
                    (1u32 << (size * 8)) - 1
                }
            }
        }
    }

    /// OUT to a port: COM1's THR goes to the VM's console; unclaimed writes are dropped.
    pub fn port_write(
        &mut self,
        port: u16,
        _size: u8,
        value: u32,
        console: &mut Console,
        stats: &mut VmStats,
    ) {
        match port {
            COM1 => console.write(&[value as u8]),
            0x3ff => self.scratch = value as u8,
            0x3f9..=0x3fe => {}
            _ => stats.unclaimed_port_accesses += 1,
        }
    }

    fn region(&mut self, gpa: u64) -> Option<&mut MmioRegion> {
        self.mmio
            .iter_mut()
            .find(|r| (r.base..r.base + vm::config::MMIO_STRIDE).contains(&gpa))
    }

    pub fn is_mmio(&self, gpa: u64) -> bool {
        self.mmio
            .iter()
            .any(|r| (r.base..r.base + vm::config::MMIO_STRIDE).contains(&gpa))
    }

    /// One MMIO access, already decoded, against the region's device.
    pub fn mmio(&mut self, gpa: u64, access: MmioAccess, memory: &mut GuestMemory) -> u64 {
        let Some(region) = self.region(gpa) else {
            return u64::MAX;
        };
        let offset = gpa - region.base;
        let _irq = region.irq;
        match (access, &mut *region.device) {
            (MmioAccess::Read { size }, Device::Blk(t)) => t.read(offset, size),
            (MmioAccess::Read { size }, Device::Net(t)) => t.read(offset, size),
            (MmioAccess::Write { size, value }, Device::Blk(t)) => {
                let _effect = t.write(offset, size, value, memory);
                0
            }
            (MmioAccess::Write { size, value }, Device::Net(t)) => {
                let _effect = t.write(offset, size, value, memory);
                0
            }
        }
    }

    /// RDMSR policy: `None` raises #GP. MSRs in `switched` live in hardware while the VM runs.
    pub fn rdmsr(&self, msr: Msr, switched: &[Msr]) -> Option<u64> {
        if switched.contains(&msr) {
            // SAFETY: the switched MSRs exist on every CPU with long mode.
            return Some(unsafe { arch::rdmsr(msr) });
        }
        match msr {
            // Locked with VMX disabled: a guest never tries VMXON (SDM Vol. 3C §24.7).
            Msr::IA32_FEATURE_CONTROL => Some(FeatureControl::LOCK.bits()),
            Msr::IA32_TSC_AUX => Some(self.tsc_aux),
            Msr::IA32_SYSENTER_CS => Some(self.sysenter[0]),
            Msr::IA32_SYSENTER_ESP => Some(self.sysenter[1]),
            Msr::IA32_SYSENTER_EIP => Some(self.sysenter[2]),
            Msr::IA32_EFER => Some(super::vmcs::read_exit(
                vmx::fields::VmcsField::GUEST_IA32_EFER,
            )),
            Msr::IA32_PAT => Some(super::vmcs::read_exit(
                vmx::fields::VmcsField::GUEST_IA32_PAT,
            )),
            _ => None,
        }
    }

    /// WRMSR policy: `false` raises #GP.
    pub fn wrmsr(&mut self, msr: Msr, value: u64, switched: &[Msr]) -> bool {
        let canonical = |v: u64| ((v as i64) << 16 >> 16) as u64 == v;
        if switched.contains(&msr) {
            if msr != Msr::IA32_STAR && msr != Msr::IA32_FMASK && !canonical(value) {
                return false;
            }
            // SAFETY: the value is canonical where the MSR holds an address; the host kernel
            // does not use these MSRs.
            unsafe { arch::wrmsr(msr, value) };
            return true;
        }
        match msr {
            Msr::IA32_TSC_AUX if value >> 32 == 0 => self.tsc_aux = value,
            Msr::IA32_SYSENTER_CS => self.sysenter[0] = value & 0xffff,
            Msr::IA32_SYSENTER_ESP if canonical(value) => self.sysenter[1] = value,
            Msr::IA32_SYSENTER_EIP if canonical(value) => self.sysenter[2] = value,
            Msr::IA32_EFER => {
                // SCE, LME, LMA (read-only, must match), NXE; anything else is reserved.
                const ALLOWED: u64 = 1 | (1 << 8) | (1 << 10) | (1 << 11);
                if value & !ALLOWED != 0 {
                    return false;
                }
                let _ = super::vmcs::write(vmx::fields::VmcsField::GUEST_IA32_EFER, value);
            }
            Msr::IA32_PAT => {
                // Each byte must be a valid memory type: 0, 1, 4, 5, 6 or 7.
                if value
                    .to_le_bytes()
                    .iter()
                    .any(|b| !matches!(b, 0 | 1 | 4..=7))
                {
                    return false;
                }
                let _ = super::vmcs::write(vmx::fields::VmcsField::GUEST_IA32_PAT, value);
            }
            _ => return false,
        }
        true
    }
}
