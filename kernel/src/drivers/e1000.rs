//! The Intel 8254x (e1000) NIC as a network's uplink (docs/architecture.md "Network
//! uplink"). `vm::nic::e1000` holds the driver logic (host-tested); this is the hardware
//! seam: the first supported PCI function found at boot gets memory decoding and bus
//! mastering, its BAR0 is reached through the direct map or an uncached mapping
//! (`mmio_map`), and zeroed frames become its descriptor rings and buffers. No interrupts:
//! [`poll`] runs from the scheduler between slices (`drivers::poll`), bounded by the ring
//! size, and moves frames between the NIC and its network's switch.

use super::nvme::DirectDma;
use crate::memory;
use crate::pci::Function;
use crate::vmm::networks::Network;
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use log::{info, warn};
use spin::Mutex;
use vm::nic::e1000::{self as hw, E1000Regs, Memory, BUFFER_BYTES, RING_DESCRIPTORS};

/// BAR0 of the 8254x is 128 KiB of registers (8254x SDM §5.4, memory BAR size).
const BAR_BYTES: u64 = 0x2_0000;
/// Two [`BUFFER_BYTES`] buffers fit a 4 KiB frame.
const BUFFERS_PER_FRAME: usize = memory::FRAME_SIZE as usize / BUFFER_BYTES;

/// BAR0 registers through a pointer.
#[derive(Debug)]
pub struct Regs {
    base: *mut u8,
}

// SAFETY: the pointer is the NIC's BAR0 mapping; the one NIC object owns it and it is used
// only under the NIC lock.
unsafe impl Send for Regs {}

impl E1000Regs for Regs {
    fn read32(&mut self, reg: u32) -> u32 {
        // SAFETY: `reg` is one of the driver's register offsets (below BAR_BYTES, 4-aligned)
        // in the mapped BAR; MMIO needs a volatile access.
        unsafe { self.base.add(reg as usize).cast::<u32>().read_volatile() }
    }

    fn write32(&mut self, reg: u32, value: u32) {
        // SAFETY: as in `read32`.
        unsafe {
            self.base
                .add(reg as usize)
                .cast::<u32>()
                .write_volatile(value)
        }
    }
}

/// The NIC, and the network port it is bridged to once attached.
struct Nic {
    dev: hw::E1000<Regs, DirectDma>,
    function: Function,
    model: &'static str,
    uplink: Option<(Arc<Network>, virtio::PortId)>,
    scratch: alloc::boxed::Box<[u8; BUFFER_BYTES]>,
}

static NIC: Mutex<Option<Nic>> = Mutex::new(None);

fn mac_text(m: [u8; 6]) -> String {
    format!("{}", virtio::MacText(m))
}

/// Finds and brings up the first supported NIC; reports it, or that there is none.
pub fn init(functions: &[Function]) {
    let nics = functions
        .iter()
        .filter(|f| f.vendor == hw::VENDOR_INTEL && hw::model(f.device_id).is_some());
    for f in nics {
        let model = hw::model(f.device_id).unwrap_or("8254x");
        match bring_up(f, model) {
            Ok(nic) => {
                let mac = nic.dev.mac();
                info!(
                    "e1000: {} ({}), MAC {}, polled, {} RX and {} TX descriptors",
                    model,
                    f,
                    mac_text(mac),
                    RING_DESCRIPTORS,
                    RING_DESCRIPTORS
                );
                *NIC.lock() = Some(nic);
                return;
            }
            Err(why) => warn!("e1000: {model} ({f}) not used: {why}"),
        }
    }
    info!(
        "net: no supported NIC (Intel 8254x/e1000, e.g. 82540EM 8086:100e); a network's \
         uplink cannot be attached"
    );
}

fn bring_up(f: &Function, model: &'static str) -> Result<Nic, String> {
    let bar = f
        .memory_bar0()
        .ok_or_else(|| String::from("BAR0 is not a memory BAR"))?;
    let base = if memory::is_direct_mapped(bar)
        && memory::is_direct_mapped(bar + BAR_BYTES - memory::FRAME_SIZE)
    {
        memory::phys_to_virt(bar)
    } else {
        crate::mmio_map::map(bar, BAR_BYTES)
            .map_err(|e| format!("BAR0 at {bar:#x} cannot be mapped: {e}"))?
    };
    let frame = || memory::allocate_frame().ok_or_else(|| String::from("no frames for its rings"));
    let rx_ring = frame()?;
    let tx_ring = frame()?;
    let mut rx_buffers = [0u64; RING_DESCRIPTORS];
    let mut tx_buffers = [0u64; RING_DESCRIPTORS];
    for bufs in [&mut rx_buffers, &mut tx_buffers] {
        for pair in bufs.chunks_mut(BUFFERS_PER_FRAME) {
            let page = frame()?;
            for (k, b) in pair.iter_mut().enumerate() {
                *b = page + (k * BUFFER_BYTES) as u64;
            }
        }
    }
    f.enable_memory_and_dma();
    let mem = Memory {
        rx_ring,
        tx_ring,
        rx_buffers,
        tx_buffers,
    };
    let dev = hw::E1000::init(Regs { base }, DirectDma, mem).map_err(|e| format!("{e}"))?;
    Ok(Nic {
        dev,
        function: *f,
        model,
        uplink: None,
        scratch: alloc::boxed::Box::new([0; BUFFER_BYTES]),
    })
}

/// Bridges the NIC to `net`: it becomes the network's uplink port. Returns a description
/// for the report, or why not.
pub fn attach(net: &Arc<Network>) -> Result<String, String> {
    let mut guard = NIC.lock();
    let nic = guard
        .as_mut()
        .ok_or_else(|| String::from("the machine has no supported NIC (Intel 8254x/e1000)"))?;
    if nic.uplink.is_some() {
        return Err("the NIC is already another network's uplink".into());
    }
    let port = net
        .switch
        .lock()
        .add_port(virtio::PortKind::Uplink)
        .map_err(|e| format!("{e}"))?;
    net.uplink.call_once(|| port);
    nic.uplink = Some((net.clone(), port));
    let link = if nic.dev.link_up() { "up" } else { "down" };
    Ok(format!(
        "e1000 {} at {} (MAC {}, link {link}) as port {}",
        nic.model,
        nic.function,
        mac_text(nic.dev.mac()),
        port.0
    ))
}

/// Whether the NIC is an uplink (its rings are polled while the CPU idles).
pub fn has_uplink() -> bool {
    NIC.try_lock()
        .is_none_or(|g| g.as_ref().is_some_and(|n| n.uplink.is_some()))
}

/// One bounded round: frames the switch queued for the uplink go to the NIC's transmit
/// ring (as many as it has free descriptors), received frames go into the switch (at most
/// a ring's worth), and the ports that got frames are told. Called by the scheduler.
pub fn poll() {
    let Some(mut guard) = NIC.try_lock() else {
        return;
    };
    let Some(nic) = guard.as_mut() else { return };
    let Some((net, port)) = nic.uplink.clone() else {
        return;
    };
    let now = crate::arch::rdtsc();
    let mut sw = net.switch.lock();
    if let Some(q) = sw.queue_mut(port) {
        while let Some(frame) = q.front() {
            if !nic.dev.transmit(frame) && nic.dev.tx_free() == 0 {
                break;
            }
            q.pop();
        }
    }
    let got = nic.dev.receive(RING_DESCRIPTORS, &mut nic.scratch, |f| {
        sw.ingress(port, f, now)
    });
    if got > 0 {
        net.ring_queued(&sw);
    }
}

/// The NIC's counters, for the report when the VMs stop.
pub fn report() -> Option<String> {
    let guard = NIC.lock();
    let nic = guard.as_ref()?;
    let s = nic.dev.stats();
    Some(format!(
        "e1000 {}: tx-frames={} tx-bytes={} rx-frames={} rx-bytes={} rx-errors={} tx-ring-full={} tx-malformed={}",
        nic.model, s.tx_frames, s.tx_bytes, s.rx_frames, s.rx_bytes, s.rx_errors, s.tx_ring_full, s.tx_malformed
    ))
}
