//! The run configuration, `bulkhead.toml` in the boot archive: which VMs to run, with what
//! memory, guest image and devices. TOML (docs/configuration.md), read with the `toml` crate
//! and `serde` (no `std`: the hypervisor parses it at boot, the host tool before packing):
//!
//! ```toml
//! [hypervisor]
//! timeslice = 2000000            # TSC ticks a vCPU runs before the next VM's turn
//!
//! [vm.selftest]
//! kind = "elf64"                 # "elf64" | "real16" | "linux"
//! image = "selftest.elf"         # archive entry with the guest image
//! memory = "16M"                 # bytes, or a string with K/M/G; a 2M multiple
//!
//! [[vm.selftest.virtio-blk]]
//! size = "1M"                    # or image = "disk.img"; read-only = true
//!
//! [[vm.selftest.virtio-net]]
//! mac = "52:54:00:12:34:56"
//! network = "lan"                # a [network.NAME]; without it the VM has a private one
//!
//! [network.lan]
//! gateway = true                 # the ARP/ICMP responder at 192.0.2.1 (default true)
//! uplink = "e1000"               # bridge the network to the machine's e1000 NIC
//! ```
//!
//! [`Config::parse`] turns the file into the typed [`Config`] the hypervisor runs from. Every
//! mistake is a [`ConfigError`] with its line and column and what to write instead; unknown
//! keys are errors that suggest the closest known key.
//!
//! Modules: `schema` (the serde types, as written), `check` (unknown keys, ranges, limits,
//! kind-specific keys), `cpus` (`vcpus`, `cpus`, `dedicated` and the placement conflicts
//! between VMs that the file alone shows), `networks` (`[network.NAME]` and the devices
//! attached to them), `error` (the error type and its messages).

mod check;
mod cpus;
mod error;
mod networks;
mod schema;

use alloc::string::String;
use alloc::vec::Vec;

pub use error::{line_column, ConfigError, ConfigErrorKind, KeyHint};

/// The archive entry (and bundle file) holding the configuration.
pub const FILE_NAME: &str = "bulkhead.toml";
/// The name of the old INI-like format, refused with a hint to convert it.
pub const OLD_FILE_NAME: &str = "bulkhead.conf";

/// Guest RAM limits: at least 4 MiB (page tables, GDT and an image at 1 MiB), at most up to
/// the MMIO window at [`MMIO_BASE`] (3328 MiB), in multiples of [`MEMORY_ALIGN`].
pub const MIN_MEMORY: u64 = 4 << 20;
pub const MAX_MEMORY: u64 = MMIO_BASE;
/// Guest RAM is mapped with 2 MiB EPT pages where the CPU has them.
pub const MEMORY_ALIGN: u64 = 2 << 20;
/// Guest-physical base of the first virtio-mmio device; device i sits at
/// `MMIO_BASE + i * MMIO_STRIDE` with IRQ `DEVICE_IRQS[i]` (docs/vm-platform.md).
pub const MMIO_BASE: u64 = 0xD000_0000;
pub const MMIO_STRIDE: u64 = 0x1000;
/// At most this many VMs and devices per VM.
pub const MAX_VMS: usize = 16;
pub const MAX_DEVICES: usize = 8;
/// The ISA IRQ (= GSI through the MADT's identity overrides) of each virtio-mmio device, in
/// window order: the 8259A lines no platform device or guest driver of the PC claims. Not 0
/// (PIT), 1 (keyboard), 2 (cascade), 3 (COM2), 4 (COM1), 8 (the RTC: Linux's rtc_cmos binds
/// it even though the model raises none), 9 (the ACPI SCI of Linux VMs, FADT SCI_INT) or 13
/// (the FPU's error line); every device has its own line, so no edge interrupt is shared.
pub const DEVICE_IRQS: [u8; MAX_DEVICES] = [5, 6, 7, 10, 11, 12, 14, 15];
const _: () = {
    let mut i = 0;
    while i < MAX_DEVICES {
        let irq = DEVICE_IRQS[i];
        assert!(irq < 16 && !matches!(irq, 0..=4 | 8 | 9 | 13));
        assert!(irq != crate::devices::acpi_pm::SCI_IRQ && irq != crate::devices::uart::COM1_IRQ);
        i += 1;
    }
};
// The DSDT describes each window with a 32-bit `Memory32Fixed` (vm::acpi::VirtioMmio).
const _: () = assert!(MMIO_BASE + MAX_DEVICES as u64 * MMIO_STRIDE <= 1 << 32);
/// The gateway port of a network (`gateway = true`, and every private network): it answers
/// ARP and ICMP echo for this address (RFC 5737 TEST-NET-1) from this MAC
/// (docs/vm-platform.md).
pub const GATEWAY_IP: [u8; 4] = [192, 0, 2, 1];
pub const GATEWAY_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x01];
/// At most this many `[network.NAME]` tables.
pub const MAX_NETWORKS: usize = 16;
/// `[hypervisor] timeslice`: default and range, in TSC ticks.
pub const DEFAULT_TIMESLICE: u64 = 2_000_000;
pub const MIN_TIMESLICE: u64 = 10_000;
pub const MAX_TIMESLICE: u64 = 1_000_000_000_000;
/// `[hypervisor] host-tick-hz`: at most 10 kHz (the PIT runs at 1.193182 MHz).
pub const MAX_HOST_TICK_HZ: u32 = 10_000;
/// `vcpus`: vCPUs per VM, default 1.
pub const MAX_VCPUS: u32 = 16;
/// `cpus` entries are physical CPU indexes (the boot CPU is 0) up to this one. Whether the
/// CPU exists is known only at boot ([`crate::placement`]).
pub const MAX_CPU_INDEX: u32 = 255;
/// A virtio-blk sector (virtio 1.2 §5.2.6: capacity and offsets are in 512-byte sectors).
pub const SECTOR_SIZE: u64 = 512;
/// `heap-budget`: range and granularity (heap pages).
pub const MIN_HEAP_BUDGET: u64 = 64 << 10;
pub const MAX_HEAP_BUDGET: u64 = 1 << 30;
pub const HEAP_BUDGET_ALIGN: u64 = 4 << 10;
/// `console-buffer`: the per-VM console ring.
pub const DEFAULT_CONSOLE_BUFFER: u64 = 16 << 10;
pub const MIN_CONSOLE_BUFFER: u64 = 1 << 10;
pub const MAX_CONSOLE_BUFFER: u64 = 1 << 20;
/// `console-rate`: console bytes per second printed; the rest is dropped and counted.
pub const DEFAULT_CONSOLE_RATE: u64 = 32 << 10;
pub const MIN_CONSOLE_RATE: u64 = 1 << 10;
pub const MAX_CONSOLE_RATE: u64 = 16 << 20;
/// Archive entry names are 1 to this many bytes (vm::archive).
pub const MAX_ENTRY_NAME: usize = crate::archive::NAME_LEN - 1;

/// How the guest image is loaded and started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestKind {
    /// A static ELF64 loaded at its physical addresses and entered in 64-bit mode.
    Elf64,
    /// A flat binary loaded at 0x7C00 and entered in real mode (unrestricted guest).
    Real16,
    /// A Linux bzImage entered through the 64-bit boot protocol.
    Linux,
    /// An ELF kernel (Linux's `vmlinux`) entered through its PVH note (vm::pvh), with the
    /// Linux platform (ACPI tables, virtio-mmio devices on the command line).
    Pvh,
    /// A Multiboot v1 kernel (vm::multiboot); `initrd` becomes module 0.
    Multiboot,
}

impl GuestKind {
    /// The name written in `kind = "..."`.
    pub fn name(self) -> &'static str {
        match self {
            GuestKind::Elf64 => "elf64",
            GuestKind::Real16 => "real16",
            GuestKind::Linux => "linux",
            GuestKind::Pvh => "pvh",
            GuestKind::Multiboot => "multiboot",
        }
    }

    /// Whether the VM takes `cmdline` and `initrd` (the boot protocols that pass them).
    pub fn takes_cmdline(self) -> bool {
        matches!(
            self,
            GuestKind::Linux | GuestKind::Pvh | GuestKind::Multiboot
        )
    }

    /// Whether the VM boots Linux (bzImage or PVH): `kvm-pv` on by default.
    pub fn is_linux(self) -> bool {
        matches!(self, GuestKind::Linux | GuestKind::Pvh)
    }

    /// Whether its VMs get ACPI tables (and the PM and reset registers their FADT names):
    /// the kinds a bootloader-style loader starts (Linux, PVH, Multiboot).
    pub fn has_acpi(self) -> bool {
        matches!(
            self,
            GuestKind::Linux | GuestKind::Pvh | GuestKind::Multiboot
        )
    }
}

/// A virtio device of a VM, in MMIO window order (docs/configuration.md): the
/// `virtio-blk` entries in file order, then the `virtio-net` entries, then the console.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceConfig {
    /// A block device over a RAM disk (an empty disk of `size` bytes, or a copy-on-write
    /// disk over an archive entry) or over a disk store's disk.
    VirtioBlk { source: DiskSource, read_only: bool },
    /// A network device with its MAC, attached to the named `[network.NAME]` or, without
    /// one, to a private switch of its VM with a gateway port.
    VirtioNet {
        mac: [u8; 6],
        network: Option<String>,
    },
    /// A virtio console (virtio 1.2 §5.3) with one port (`hvc0` in Linux).
    VirtioConsole,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiskSource {
    Empty {
        size: u64,
    },
    Image(String),
    /// A named disk of a disk store on one of the machine's drives (`vm::store`).
    Store(String),
}

/// What a guest's reboot does to its VM (`on-reboot`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnReboot {
    /// The VM ends with its report, then starts again from its configuration as after
    /// power-up: RAM zeroed, image loaded again, devices new (store disks keep their data).
    #[default]
    Restart,
    /// The VM ends with its report and stays stopped (`start VM` in the shell boots it).
    Stop,
}

/// What a VM's RAM starts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestSource {
    /// `image`: the archive entry its kind's loader loads.
    Image(String),
    /// `from-snapshot`: an instant clone of the named snapshot (docs/configuration.md): it
    /// waits, stopped, until the snapshot exists and `start` or `clone` starts it; its RAM
    /// is the snapshot's, shared and copied on write.
    Snapshot(String),
}

/// One VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmConfig {
    pub name: String,
    pub kind: GuestKind,
    pub source: GuestSource,
    pub memory: u64,
    /// vCPUs, 1 to [`MAX_VCPUS`].
    pub vcpus: u32,
    /// Physical CPUs the vCPUs are pinned to (vCPU i on `cpus[i % len]`), distinct, non-empty,
    /// each at most [`MAX_CPU_INDEX`]; `None`: the vCPUs share the pool of non-dedicated CPUs.
    pub cpus: Option<Vec<u32>>,
    /// Exclusive use of `cpus` (a real-time partition): then `cpus` is given and has at least
    /// `vcpus` entries, and no other VM lists any of them.
    pub dedicated: bool,
    pub cmdline: Option<String>,
    pub initrd: Option<String>,
    /// At most [`MAX_DEVICES`], in window order.
    pub devices: Vec<DeviceConfig>,
    /// Prefix each console line with the TSC ticks since the VM's first entry.
    pub console_timestamps: bool,
    /// `kvm-pv`: offer the KVM paravirtual interface (KVM's CPUID leaves at `0x4000_0100`, its
    /// MSRs and hypercalls; docs/hypercall-abi.md §9). Default: on for the kinds that boot Linux
    /// (`linux`, `pvh`), off for the others.
    pub kvm_pv: bool,
    /// `on-reboot`: what a guest's reboot (its write to the FADT's reset register) does.
    pub on_reboot: OnReboot,
    /// A cap on the hypervisor heap this VM's devices may use; `None`: their worst case.
    pub heap_budget: Option<u64>,
    /// Bytes of the VM's console ring.
    pub console_buffer: u64,
    /// Console bytes per second printed; the rest is dropped and counted.
    pub console_rate: u64,
}

/// What a network's uplink is bridged to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Uplink {
    /// The machine's first Intel 8254x (e1000) NIC, driven by the hypervisor.
    E1000,
}

impl Uplink {
    /// The name written in `uplink = "..."`.
    pub fn name(self) -> &'static str {
        match self {
            Uplink::E1000 => "e1000",
        }
    }
}

/// One `[network.NAME]`: a learning switch shared by the devices attached to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkConfig {
    pub name: String,
    /// A gateway port (ARP and ICMP echo for 192.0.2.1); default true.
    pub gateway: bool,
    pub uplink: Option<Uplink>,
}

/// Hypervisor-wide settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HypervisorConfig {
    pub timeslice: u64,
    /// A periodic host timer interrupt (the PIT at this rate; 0: none): each one is an
    /// external-interrupt exit that ends a slice on time even without the VMX-preemption
    /// timer.
    pub host_tick_hz: u32,
    /// `store-check`: at boot, before the VT-x verdict, each drive with a disk store gets a
    /// write / flush / read-back of a free allocation unit (docs/configuration.md).
    pub store_check: bool,
}

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub hypervisor: HypervisorConfig,
    /// In file order.
    pub vms: Vec<VmConfig>,
    /// `[network.NAME]` tables, in file order.
    pub networks: Vec<NetworkConfig>,
}

impl Config {
    /// The network named `name`.
    pub fn network(&self, name: &str) -> Option<&NetworkConfig> {
        self.networks.iter().find(|n| n.name == name)
    }
}

impl Config {
    /// Parses `bulkhead.toml` (UTF-8, an optional byte-order mark) and checks it.
    pub fn parse(bytes: &[u8]) -> Result<Config, ConfigError> {
        let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        let text = core::str::from_utf8(bytes).map_err(|e| {
            let good = core::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or_default();
            let (line, column) = line_column(good, good.len());
            ConfigError {
                line,
                column,
                kind: ConfigErrorKind::NotUtf8,
            }
        })?;
        check::parse_text(text)
    }
}

/// Line and column of the value at `path` in a configuration file, e.g.
/// `["vm", "linux", "virtio-blk", "0", "image"]`; `None` when it is not there. For host tools
/// that report on what a checked file names (a missing bundle file, an image that does not
/// load).
pub fn value_position(bytes: &[u8], path: &[&str]) -> Option<(usize, usize)> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    check::value_position(core::str::from_utf8(bytes).ok()?, path)
}

impl VmConfig {
    /// The archive entry of its guest image (`None` for a clone, `from-snapshot`).
    pub fn image(&self) -> Option<&str> {
        match &self.source {
            GuestSource::Image(i) => Some(i),
            GuestSource::Snapshot(_) => None,
        }
    }

    /// The snapshot it is a clone of (`from-snapshot`).
    pub fn from_snapshot(&self) -> Option<&str> {
        match &self.source {
            GuestSource::Snapshot(s) => Some(s),
            GuestSource::Image(_) => None,
        }
    }

    /// The command line a `kind = "linux"` VM boots with: its `cmdline`. Its devices are not
    /// named there: the DSDT describes them ([`VmConfig::acpi_config`]).
    pub fn linux_cmdline(&self) -> String {
        self.cmdline.clone().unwrap_or_default().trim().into()
    }

    /// The ACPI tables of a `kind = "linux"` VM (docs/vm-platform.md): a local APIC per vCPU,
    /// and in the DSDT its virtio-mmio devices in configuration order, then COM1.
    pub fn acpi_config(&self) -> crate::acpi::AcpiConfig {
        let mut acpi = crate::acpi::AcpiConfig::new(self.vcpus.max(1));
        for i in 0..self.devices.len() {
            let (base, irq) = VmConfig::device_window(i);
            let device = crate::acpi::VirtioMmio {
                // Below 4 GiB: asserted where MAX_DEVICES is defined.
                base: base as u32,
                size: MMIO_STRIDE as u32,
                gsi: irq.into(),
            };
            acpi.dsdt.add_virtio_mmio(i, &device);
        }
        acpi.dsdt.add_com1();
        acpi
    }

    /// The e820 entry that reserves the virtio-mmio window for a Linux guest.
    pub fn mmio_window_e820() -> crate::linux::E820Entry {
        crate::linux::E820Entry {
            addr: MMIO_BASE,
            size: MMIO_STRIDE * MAX_DEVICES as u64,
            kind: crate::linux::E820Kind::Reserved,
        }
    }

    /// Guest-physical base and IRQ of device `index` (docs/vm-platform.md).
    pub fn device_window(index: usize) -> (u64, u8) {
        (MMIO_BASE + index as u64 * MMIO_STRIDE, DEVICE_IRQS[index])
    }
}

/// Parses a size: a number of bytes with an optional K, M or G suffix (powers of 1024).
pub fn parse_size(s: &str) -> Option<u64> {
    let (digits, shift) = match s.as_bytes().last()? {
        b'K' | b'k' => (&s[..s.len() - 1], 10),
        b'M' | b'm' => (&s[..s.len() - 1], 20),
        b'G' | b'g' => (&s[..s.len() - 1], 30),
        _ => (s, 0),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    n.checked_mul(1u64 << shift)
}

/// Parses a MAC address `aa:bb:cc:dd:ee:ff` (unicast, not all-zero).
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut mac {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    if parts.next().is_some() || mac[0] & 1 != 0 || mac == [0; 6] {
        return None;
    }
    Some(mac)
}

/// A size as TOML text: `"64M"` when it is a whole number of K, M or G, else the bytes.
pub fn size_to_toml(bytes: u64) -> String {
    for (shift, suffix) in [(30, 'G'), (20, 'M'), (10, 'K')] {
        if bytes != 0 && bytes.is_multiple_of(1u64 << shift) {
            return alloc::format!("\"{}{suffix}\"", bytes >> shift);
        }
    }
    alloc::format!("{bytes}")
}

#[cfg(test)]
mod tests;
