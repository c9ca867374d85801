//! A VM's virtio-mmio devices (docs/vm-platform.md): block, network and console devices in
//! the MMIO window, the VM's virtual switch with its gateway port, and the device work they
//! queue. The device models live in the host-tested `virtio` crate; this module places them
//! in the VM's physical map and schedules their work.
//!
//! Device work is bounded (docs/architecture.md, "Budgets and bounded work"): every call into
//! a device does at most `virtio::MAX_REQUESTS_PER_CALL` requests and `MAX_BYTES_PER_CALL`
//! bytes, the switch moves at most `virtio::switch::MAX_FRAMES_PER_PUMP` frames, and what is
//! left waits for the VM's next run-loop iteration ([`VirtioDevices::work_due`]); nothing is
//! allocated per access or per frame. The time spent is counted for the VM that caused it.

use super::guest_memory::GuestMemory;
use super::networks::{self, Network, PRIVATE_PORTS};
use super::Console;
use crate::arch;
use crate::drivers::store_disk::{StoreDisk, VmDisk};
use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use vm::archive::Archive;
use vm::config::{DeviceConfig, DiskSource, VmConfig, MAX_DEVICES};
use vm::insn::MmioAccess;

/// Bytes a virtio-console device buffers from the guest before the VM's console takes them.
const CONSOLE_RING_BYTES: usize = 4096;

/// A virtio device behind the MMIO transport.
enum Device {
    Blk(virtio::MmioTransport<virtio::BlockDevice<VmDisk>>),
    Net(virtio::MmioTransport<virtio::NetDevice>),
    Console(virtio::MmioTransport<virtio::ConsoleDevice<virtio::ByteRing>>),
}

impl Device {
    fn name(&self) -> &'static str {
        match self {
            Device::Blk(_) => "virtio-blk",
            Device::Net(_) => "virtio-net",
            Device::Console(_) => "virtio-console",
        }
    }
}

impl core::fmt::Debug for Device {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug)]
struct MmioRegion {
    base: u64,
    irq: u8,
    device: Box<Device>,
}

impl MmioRegion {
    fn contains(&self, gpa: u64) -> bool {
        (self.base..self.base + vm::config::MMIO_STRIDE).contains(&gpa)
    }
}

/// A virtio-net device's place on its network.
struct Attached {
    /// Index of the device's region.
    region: usize,
    network: Arc<Network>,
    port: virtio::PortId,
}

impl Drop for Attached {
    /// The device is gone (its VM restarts): its port stops taking frames until the VM's
    /// new device attaches to it again by its MAC (virtio::Switch::detach_port).
    fn drop(&mut self) {
        self.network.switch.lock().detach_port(self.port);
    }
}

/// IRQ lines to raise after device work, as a bitmask of ISA lines (no allocation).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IrqMask(pub u16);

impl IrqMask {
    fn add(&mut self, irq: u8) {
        self.0 |= 1 << irq;
    }
    /// The lines, ascending.
    pub fn lines(self) -> impl Iterator<Item = u8> {
        (0..16u8).filter(move |i| self.0 & (1 << i) != 0)
    }
}

/// Device work done for a VM: how many bounded rounds and the TSC ticks they took (reported
/// with the VM's exit statistics).
#[derive(Debug, Clone, Copy, Default)]
pub struct WorkStats {
    pub rounds: u64,
    pub ticks: u64,
}

/// A VM's virtio devices.
pub struct VirtioDevices {
    regions: Vec<MmioRegion>,
    /// The virtio-net devices, in order, with their network and port.
    nets: Vec<Attached>,
    /// When queued device work must run at the latest (TSC), if any waits.
    work_due: Option<u64>,
    /// How long a kick may wait for more requests to join its batch: 100 µs (the vCPU
    /// halting ends the wait earlier).
    kick_delay: u64,
    pub work: WorkStats,
}

impl core::fmt::Debug for VirtioDevices {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("VirtioDevices")
            .field("regions", &self.regions)
            .finish()
    }
}

impl VirtioDevices {
    /// No devices (what a restarting VM holds between dropping its devices and creating
    /// them anew): allocates nothing.
    pub fn none() -> Self {
        VirtioDevices {
            regions: Vec::new(),
            nets: Vec::new(),
            work_due: None,
            kick_delay: 0,
            work: WorkStats::default(),
        }
    }

    /// Whether a block device still waits for its drive (a store disk's transfer in flight):
    /// the devices must not be dropped before it completes.
    pub fn drive_busy(&self) -> bool {
        self.regions.iter().any(|r| match &*r.device {
            Device::Blk(t) => t.device().backend().busy(),
            _ => false,
        })
    }

    /// Whether a block device is backed by a drive (a store disk), whose contents a snapshot
    /// cannot hold.
    pub fn has_drive_disk(&self) -> bool {
        self.regions.iter().any(|r| match &*r.device {
            Device::Blk(t) => matches!(t.device().backend(), VmDisk::Store(_)),
            _ => false,
        })
    }

    /// Each device's guest-visible state for a snapshot (virtio::state), in window order.
    fn states(&self) -> impl Iterator<Item = virtio::TransportState<'_>> + '_ {
        self.regions.iter().map(|r| match &*r.device {
            Device::Blk(t) => t.save_state(),
            Device::Net(t) => t.save_state(),
            Device::Console(t) => t.save_state(),
        })
    }

    /// Heap the devices' snapshot sections take (a RAM disk's contents or overlay included).
    pub fn snapshot_bytes(&self) -> usize {
        self.states()
            .map(|s| vm::snapshot::virtio_state::encoded_len(&s))
            .sum()
    }

    /// One snapshot section per device, in window order (vm::snapshot::virtio_state). Frames
    /// in flight on a network are not saved (virtio::state says why).
    pub fn save_state(&self) -> Result<Vec<Vec<u8>>, String> {
        let mut sections = Vec::new();
        sections
            .try_reserve_exact(self.regions.len())
            .map_err(|_| String::from("no hypervisor heap for the device sections"))?;
        for s in self.states() {
            let mut e = vm::snapshot::codec::Enc::default();
            e.0.try_reserve_exact(vm::snapshot::virtio_state::encoded_len(&s))
                .map_err(|_| String::from("no hypervisor heap for a device section"))?;
            vm::snapshot::virtio_state::encode(&s, &mut e);
            sections.push(e.0);
        }
        Ok(sections)
    }

    /// Loads `sections` (one per device, [`VirtioDevices::save_state`] of a VM of the same
    /// configuration) into these new devices, after guest RAM was restored: every ring of a
    /// ready queue must lie in `memory` (virtio 1.2 §4.2.2). A device that refuses its
    /// section names why; the VM is then not started.
    pub fn load_state(&mut self, sections: &[Vec<u8>], memory: &GuestMemory) -> Result<(), String> {
        if sections.len() != self.regions.len() {
            return Err(format!(
                "it holds {} virtio devices, the VM has {}",
                sections.len(),
                self.regions.len()
            ));
        }
        for (i, (r, bytes)) in self.regions.iter_mut().zip(sections).enumerate() {
            let s = vm::snapshot::virtio_state::decode(bytes)
                .map_err(|e| format!("its virtio section {i} is malformed: {e}"))?;
            let name = r.device.name();
            match &mut *r.device {
                Device::Blk(t) => t.load_state_checked(&s, memory),
                Device::Net(t) => t.load_state_checked(&s, memory),
                Device::Console(t) => t.load_state_checked(&s, memory),
            }
            .map_err(|e| format!("its virtio section {i} does not fit {name} {i}: {e}"))?;
        }
        Ok(())
    }

    /// Creates the configured devices. A copy-on-write disk over an archive image gets an
    /// overlay budget of `disk_budget` bytes (its whole worst case when `None`).
    pub fn new(
        config: &VmConfig,
        archive: &Archive<'static>,
        tsc_hz: u64,
        disk_budget: Option<u64>,
    ) -> Result<Self, String> {
        let mut regions = Vec::new();
        let mut nets = Vec::new();
        // The VM's private network, for its devices that name none.
        let private = config
            .devices
            .iter()
            .any(|d| matches!(d, DeviceConfig::VirtioNet { network: None, .. }))
            .then(|| Arc::new(Network::new("private", PRIVATE_PORTS, true, tsc_hz)));
        regions
            .try_reserve_exact(config.devices.len().min(MAX_DEVICES))
            .map_err(|_| String::from("no hypervisor heap for the device list"))?;
        for (i, dev) in config.devices.iter().enumerate() {
            let (base, irq) = VmConfig::device_window(i);
            let device = match dev {
                DeviceConfig::VirtioBlk { source, read_only } => {
                    let mut blk_config = virtio::BlockConfig::default();
                    let disk = match source {
                        DiskSource::Empty { size } => VmDisk::Ram(virtio::RamDisk::try_new(*size as usize)
                            .map_err(|e| {
                                format!(
                                    "a {} MiB RAM disk does not fit in the hypervisor heap ({e}); use a smaller \
                                     `virtio-blk` size or give the machine more memory",
                                    size >> 20
                                )
                            })?.read_only(*read_only)),
                        // Copy-on-write over the archive entry: only written blocks use the heap,
                        // at most `disk_budget` bytes of them.
                        DiskSource::Image(name) => {
                            let image = archive.get(name).ok_or_else(|| {
                                format!("the boot archive has no disk image {name:?}")
                            })?;
                            let budget = disk_budget.unwrap_or_else(|| {
                                virtio::ramdisk::full_overlay_bytes(image.len() as u64)
                            });
                            VmDisk::Ram(virtio::RamDisk::from_static_with_budget(image, budget).read_only(*read_only))
                        }
                        // A disk of a disk store on a drive; GET_ID says "store:NAME".
                        DiskSource::Store(name) => {
                            let id = format!("store:{name}");
                            let n = id.len().min(virtio::blk::BLK_ID_BYTES);
                            blk_config.id = [0; virtio::blk::BLK_ID_BYTES];
                            blk_config.id[..n].copy_from_slice(&id.as_bytes()[..n]);
                            VmDisk::Store(StoreDisk::open(name, *read_only, &config.name).map_err(|e| format!("{e}"))?)
                        }
                    };
                    let mut t = virtio::MmioTransport::new(virtio::BlockDevice::with_config(
                        disk, blk_config,
                    ));
                    // Asynchronous-backend behaviour: batch the requests behind one kick.
                    t.set_deferred_notify(true);
                    Device::Blk(t)
                }
                DeviceConfig::VirtioNet { mac, network } => {
                    let net = match network {
                        Some(name) => networks::named(name)
                            .ok_or_else(|| format!("network {name} was not created at boot"))?,
                        None => private.clone().ok_or("no private network")?,
                    };
                    let port = net
                        .switch
                        .lock()
                        .add_port(virtio::PortKind::Guest { mac: *mac })
                        .map_err(|e| {
                            format!("virtio-net {} on network {}: {e}", nets.len(), net.name)
                        })?;
                    nets.push(Attached {
                        region: regions.len(),
                        network: net,
                        port,
                    });
                    Device::Net(virtio::MmioTransport::new(virtio::NetDevice::new(*mac)))
                }
                DeviceConfig::VirtioConsole => Device::Console(virtio::MmioTransport::new(
                    virtio::ConsoleDevice::new(virtio::ByteRing::new(CONSOLE_RING_BYTES)),
                )),
            };
            regions.push(MmioRegion {
                base,
                irq,
                device: Box::new(device),
            });
        }
        Ok(VirtioDevices {
            regions,
            nets,
            work_due: None,
            kick_delay: tsc_hz / 10_000,
            work: WorkStats::default(),
        })
    }

    /// Heap bytes creating `config`'s devices takes, from the configuration alone (checked
    /// against the free heap before anything is allocated): an upper estimate of each device's
    /// queues, frame rings and bookkeeping, plus its RAM disk.
    pub fn creation_bytes(config: &VmConfig) -> u64 {
        /// Transport, queues, request buffers and boxing of one device, rounded up.
        const PER_DEVICE: u64 = 32 * 1024;
        let mut create = 0u64;
        let mut private = false;
        for dev in &config.devices {
            create += PER_DEVICE;
            match dev {
                DeviceConfig::VirtioBlk {
                    source: DiskSource::Empty { size },
                    ..
                } => create += size,
                DeviceConfig::VirtioBlk { .. } => {}
                DeviceConfig::VirtioNet { network, .. } => {
                    private |= network.is_none();
                    // RX and TX backlogs of full-size frames, and its port's queue.
                    create += 2 * virtio::FrameRing::heap_bytes(virtio::net::RX_BACKLOG) as u64
                        + virtio::Switch::port_bytes(&virtio::SwitchConfig::new(1, 1)) as u64;
                }
                DeviceConfig::VirtioConsole => {
                    create += (virtio::ConsoleDevice::<virtio::ByteRing>::heap_bytes()
                        + CONSOLE_RING_BYTES) as u64;
                }
            }
        }
        if private {
            create += Network::heap_bytes(PRIVATE_PORTS) as u64;
        }
        create
    }

    /// The copy-on-write (`image = ...`) disks of `config`.
    fn cow_images<'c>(config: &'c VmConfig) -> impl Iterator<Item = &'c str> + 'c {
        config.devices.iter().filter_map(|d| match d {
            DeviceConfig::VirtioBlk {
                source: DiskSource::Image(name),
                ..
            } => Some(name.as_str()),
            _ => None,
        })
    }

    /// How many copy-on-write disks `config` has (they share `heap-budget`'s remainder).
    pub fn cow_disk_count(config: &VmConfig) -> u64 {
        Self::cow_images(config).count() as u64
    }

    /// Heap bytes the guest can make `config`'s devices take after creation: each
    /// copy-on-write disk's overlay, capped by `disk_budget` (its whole image when `None`).
    pub fn growth_bytes(
        config: &VmConfig,
        archive: &Archive<'static>,
        disk_budget: Option<u64>,
    ) -> u64 {
        Self::cow_images(config)
            .map(|name| {
                let len = archive.get(name).map_or(0, |i| i.len() as u64);
                let full = virtio::ramdisk::full_overlay_bytes(len);
                disk_budget.map_or(full, |b| b.min(full))
            })
            .sum()
    }

    /// Heap bytes the devices may still allocate because of the guest (copy-on-write disk
    /// overlays); the VM reserves them when it is created.
    pub fn worst_case_bytes(&self) -> u64 {
        self.regions
            .iter()
            .map(|r| match &*r.device {
                Device::Blk(t) => t.worst_case_bytes(),
                Device::Net(t) => t.worst_case_bytes(),
                Device::Console(t) => t.worst_case_bytes(),
            })
            .sum()
    }

    /// The IRQ lines of the devices.
    pub fn irqs(&self) -> impl Iterator<Item = u8> + '_ {
        self.regions.iter().map(|r| r.irq)
    }

    pub fn is_mmio(&self, gpa: u64) -> bool {
        self.regions.iter().any(|r| r.contains(gpa))
    }

    /// When queued device work must run at the latest, if any waits: now (0) when another
    /// VM or the uplink queued frames for one of the VM's net devices.
    pub fn work_due(&self) -> Option<u64> {
        if self.nets.iter().any(|n| n.network.rung(n.port)) {
            return Some(0);
        }
        self.work_due
    }

    /// One MMIO access; returns the value read and the IRQs to raise as edges (virtio 1.2
    /// §4.2.3.4 over the 8259A).
    pub fn access(
        &mut self,
        gpa: u64,
        access: MmioAccess,
        memory: &mut GuestMemory,
        console: &mut Console,
    ) -> (u64, IrqMask) {
        let mut raise = IrqMask::default();
        let Some(region) = self.regions.iter_mut().find(|r| r.contains(gpa)) else {
            return (u64::MAX, raise);
        };
        let offset = gpa - region.base;
        let (value, effect) = match (access, &mut *region.device) {
            (MmioAccess::Read { size }, Device::Blk(t)) => (t.read(offset, size), None),
            (MmioAccess::Read { size }, Device::Net(t)) => (t.read(offset, size), None),
            (MmioAccess::Read { size }, Device::Console(t)) => (t.read(offset, size), None),
            (MmioAccess::Write { size, value }, Device::Blk(t)) => {
                (0, Some(t.write(offset, size, value, memory)))
            }
            (MmioAccess::Write { size, value }, Device::Net(t)) => {
                (0, Some(t.write(offset, size, value, memory)))
            }
            (MmioAccess::Write { size, value }, Device::Console(t)) => {
                let e = t.write(offset, size, value, memory);
                drain_console_device(t, console);
                (0, Some(e))
            }
        };
        let is_net = matches!(&*region.device, Device::Net(_));
        let irq = region.irq;
        if let Some(e) = effect {
            if e.interrupt {
                raise.add(irq);
            }
            if e.more {
                // Deferred kicks batch for up to 100 µs; leftover work runs next iteration.
                let due = arch::rdtsc() + self.kick_delay;
                self.work_due = Some(self.work_due.map_or(due, |d| d.min(due)));
            }
            if is_net && self.pump_network(memory, &mut raise) {
                self.work_due = Some(arch::rdtsc());
            }
        }
        (value, raise)
    }

    /// One bounded round of queued device work: every device with work left gets one call,
    /// the switch one pump. Leftover work stays due (now), so it continues at the VM's next
    /// run-loop iteration, with the guest running in between. Returns the IRQs to raise.
    pub fn do_work(&mut self, memory: &mut GuestMemory, console: &mut Console) -> IrqMask {
        let mut raise = IrqMask::default();
        let rung = self.nets.iter().any(|n| n.network.rung(n.port));
        if self.work_due.take().is_none() && !rung {
            return raise;
        }
        let start = arch::rdtsc();
        let mut more = false;
        for r in self.regions.iter_mut() {
            let e = match &mut *r.device {
                Device::Blk(t) if t.has_kicks() => t.process_kicks(memory),
                Device::Console(t) if t.has_kicks() => {
                    let e = t.process_kicks(memory);
                    drain_console_device(t, console);
                    e
                }
                _ => continue,
            };
            if e.interrupt {
                raise.add(r.irq);
            }
            more |= e.more;
        }
        more |= self.pump_network(memory, &mut raise);
        let end = arch::rdtsc();
        if more {
            self.work_due = Some(end);
        }
        self.work.rounds += 1;
        self.work.ticks += end - start;
        raise
    }

    /// One bounded round of the VM's networks, per net device under its network's lock:
    /// what the device sent goes through the switch (at most
    /// `virtio::switch::MAX_FRAMES_PER_PUMP` frames, read in place), the doorbells of the
    /// ports that got frames are rung, then the device fills RX buffers straight from its
    /// port's queue (lent to it). Returns whether work is left.
    fn pump_network(&mut self, memory: &mut GuestMemory, raise: &mut IrqMask) -> bool {
        let now = arch::rdtsc();
        let mut more = false;
        for n in &self.nets {
            let region = &mut self.regions[n.region];
            let Device::Net(t) = &mut *region.device else {
                continue;
            };
            let mut sw = n.network.switch.lock();
            more |= sw.send_from(n.port, t.device_mut().tx_ring_mut(), now).more;
            n.network.ring_queued(&sw);
            n.network.answer(n.port);
            sw.swap_queue(n.port, t.device_mut().rx_ring_mut());
            let e = t.poll(memory);
            sw.swap_queue(n.port, t.device_mut().rx_ring_mut());
            drop(sw);
            if e.interrupt {
                raise.add(region.irq);
            }
            // TX taken by this poll must reach the switch in the next round.
            more |= e.more || virtio::NetPort::has_frame(t.device());
        }
        more
    }

    /// One line per device: its counters (printed when the VM stops).
    pub fn report(&self) -> Vec<String> {
        self.regions
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let (s, problem, extra) = match &*r.device {
                    Device::Blk(t) => (t.stats(), t.error(), t.device().backend().report()),
                    Device::Net(t) => (t.stats(), t.error(), self.port_report(i)),
                    Device::Console(t) => (t.stats(), t.error(), String::new()),
                };
                format!(
                    "{} at {:#x} irq {}: requests={} bytes-read={} bytes-written={} notifications={} interrupts={} errors={} dropped={} budget-exceeded={} bad-accesses={}{}{}",
                    r.device.name(),
                    r.base,
                    r.irq,
                    s.requests,
                    s.bytes_read,
                    s.bytes_written,
                    s.notifications,
                    s.interrupts,
                    s.errors,
                    s.dropped,
                    s.budget_exceeded,
                    s.bad_accesses,
                    extra,
                    problem
                        .map(|p| format!(" (needs reset: {p})"))
                        .unwrap_or_default()
                )
            })
            .collect()
    }
}

impl VirtioDevices {
    /// The switch port counters of the net device in region `region`.
    fn port_report(&self, region: usize) -> String {
        let Some(n) = self.nets.iter().find(|n| n.region == region) else {
            return String::new();
        };
        let stats = n.network.switch.lock().port_stats(n.port);
        stats
            .map(|s| port_line(&n.network.name, n.port, &s))
            .unwrap_or_default()
    }
}

/// A switch port's counters, as printed after a net device's line.
pub fn port_line(network: &str, port: virtio::PortId, s: &virtio::PortStats) -> String {
    let d = s.drops;
    format!(
        " network={network} port={} in-frames={} in-bytes={} out-frames={} out-bytes={} drop-spoofed={} drop-flood={} drop-malformed={} drop-queue-full={} drop-filtered={}",
        port.0,
        s.ingress_frames,
        s.ingress_bytes,
        s.egress_frames,
        s.egress_bytes,
        d.spoofed,
        d.flood_limited,
        d.malformed,
        d.queue_full,
        d.filtered
    )
}

/// Moves what a virtio-console device took from the guest into the VM's console (line
/// discipline, rate limit).
fn drain_console_device(
    t: &mut virtio::MmioTransport<virtio::ConsoleDevice<virtio::ByteRing>>,
    console: &mut Console,
) {
    t.device_mut().sink_mut().drain(usize::MAX, |bytes| {
        console.write(bytes);
        bytes.len()
    });
}
