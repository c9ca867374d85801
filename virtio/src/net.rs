//! virtio-net device (virtio 1.2 §5.1): one RX and one TX queue, MAC and link status,
//! no offloads, no mergeable RX buffers.

use crate::blk::read_bytes;
use crate::frames::{FrameBuf, FrameRing};
use crate::memory::GuestMemory;
use crate::mmio::{DeviceError, DeviceStats, Progress, VirtioDevice, WorkBudget};
use crate::queue::{DescriptorChain, Queue, QueueError};
use crate::spec::{device_id, feature, net_status};
use crate::state::{DeviceState, NetState, QueueState, StateError};
use crate::switch::NetPort;

pub use crate::frames::MAX_FRAME;

/// virtio 1.2 §5.1.2: receiveq1 is queue 0.
pub const RX_QUEUE: usize = 0;
/// virtio 1.2 §5.1.2: transmitq1 is queue 1.
pub const TX_QUEUE: usize = 1;
/// Queue size offered for both queues.
pub const NET_QUEUE_SIZE: u16 = 256;
/// virtio 1.2 §5.1.6: struct virtio_net_hdr is 12 bytes when VERSION_1 is negotiated
/// (num_buffers is always present).
pub const NET_HDR_LEN: usize = 12;
/// Smallest Ethernet frame the device forwards (the Ethernet header).
pub const MIN_FRAME: usize = 14;
/// Frames buffered for a guest with no RX buffers; more are dropped and counted.
pub const RX_BACKLOG: usize = 64;
/// Frames sent by the guest not yet taken by the switch; more are dropped and counted.
/// At least the frames one call may transmit ([`crate::mmio::MAX_REQUESTS_PER_CALL`]).
pub const TX_BACKLOG: usize = 64;

/// virtio 1.2 §5.1.6: gso_type VIRTIO_NET_HDR_GSO_NONE.
const GSO_NONE: u8 = 0;

/// A virtio-net device. Frames sent by the guest are queued for [`NetPort::take_frame`];
/// frames for the guest are queued by [`NetPort::deliver`] and copied into RX buffers
/// by [`crate::MmioTransport::poll`] (or when the driver adds RX buffers).
///
/// Both frame queues are [`FrameRing`]s allocated at creation
/// ([`NetDevice::heap_bytes`] in all, nothing later): no allocation per frame or per MMIO
/// access; frames that find a queue full are dropped and counted
/// ([`crate::DeviceStats::dropped`]).
#[derive(Debug)]
pub struct NetDevice {
    mac: [u8; 6],
    link_up: bool,
    generation: u32,
    features: u64,
    rx_backlog: FrameRing,
    tx_out: FrameRing,
    /// The chain being processed (capacity [`NET_QUEUE_SIZE`]: no allocation per frame).
    chain: DescriptorChain,
    /// Drops not yet folded into [`DeviceStats::dropped`].
    unreported_drops: u64,
    total_drops: u64,
}

impl NetDevice {
    /// A device with MAC address `mac` and the link up.
    pub fn new(mac: [u8; 6]) -> Self {
        NetDevice {
            mac,
            link_up: true,
            generation: 0,
            features: 0,
            rx_backlog: FrameRing::new(RX_BACKLOG),
            tx_out: FrameRing::new(TX_BACKLOG),
            chain: DescriptorChain::with_capacity(NET_QUEUE_SIZE),
            unreported_drops: 0,
            total_drops: 0,
        }
    }

    /// Heap bytes one device holds (its frame rings and descriptor chain), all allocated by
    /// [`NetDevice::new`].
    pub const fn heap_bytes() -> usize {
        FrameRing::heap_bytes(RX_BACKLOG)
            + FrameRing::heap_bytes(TX_BACKLOG)
            + 2 * NET_QUEUE_SIZE as usize * core::mem::size_of::<crate::queue::Segment>()
    }

    /// The device's MAC address (VIRTIO_NET_F_MAC).
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// Link status (VIRTIO_NET_S_LINK_UP).
    pub fn link_up(&self) -> bool {
        self.link_up
    }

    /// Changes the link status; the transport raises a configuration change
    /// interrupt at the next access or poll (virtio 1.2 §5.1.4.2).
    pub fn set_link_up(&mut self, up: bool) {
        if up != self.link_up {
            self.link_up = up;
            self.generation = self.generation.wrapping_add(1);
        }
    }

    /// Frames waiting for RX buffers.
    pub fn rx_backlog(&self) -> usize {
        self.rx_backlog.len()
    }

    /// Frames sent by the guest waiting for the switch.
    pub fn tx_backlog(&self) -> usize {
        self.tx_out.len()
    }

    /// The ring of frames waiting for RX buffers: a switch port lends its queue here
    /// (`Switch::swap_queue`) so RX buffers are filled straight from it.
    pub fn rx_ring_mut(&mut self) -> &mut FrameRing {
        &mut self.rx_backlog
    }

    /// The ring of frames the guest sent, for the switch to take in place
    /// (`Switch::send_from`).
    pub fn tx_ring_mut(&mut self) -> &mut FrameRing {
        &mut self.tx_out
    }

    /// Frames dropped since creation (RX backlog full, TX backlog full, malformed).
    pub fn dropped(&self) -> u64 {
        self.total_drops
    }

    fn drop_frame(&mut self) {
        self.unreported_drops += 1;
        self.total_drops += 1;
    }

    fn report(&mut self, stats: &mut DeviceStats) {
        stats.dropped += core::mem::take(&mut self.unreported_drops);
    }

    /// virtio 1.2 §5.1.4 struct virtio_net_config: mac, status, max_virtqueue_pairs.
    fn config_bytes(&self) -> [u8; 10] {
        let mut c = [0u8; 10];
        c[..6].copy_from_slice(&self.mac);
        let st = if self.link_up { net_status::LINK_UP } else { 0 };
        c[6..8].copy_from_slice(&st.to_le_bytes());
        c[8..10].copy_from_slice(&1u16.to_le_bytes());
        c
    }

    /// virtio 1.2 §5.1.6.2: transmits available TX chains within `budget`.
    fn transmit(
        &mut self,
        queue: &mut Queue,
        mem: &mut dyn GuestMemory,
        stats: &mut DeviceStats,
        budget: &mut WorkBudget,
    ) -> Result<Progress, QueueError> {
        loop {
            if budget.exhausted() {
                self.report(stats);
                return Ok(if queue.has_available(mem)? {
                    Progress::More
                } else {
                    Progress::Done
                });
            }
            if !queue.pop_into(mem, &mut self.chain)? {
                break;
            }
            budget.take_request();
            stats.requests += 1;
            let chain = &self.chain;
            let total = chain.readable_len();
            let mut hdr = [0u8; NET_HDR_LEN];
            let frame_len = total.saturating_sub(NET_HDR_LEN as u64);
            let ok = total >= (NET_HDR_LEN + MIN_FRAME) as u64
                && frame_len <= MAX_FRAME as u64
                && chain.read_at(mem, 0, &mut hdr) == Ok(NET_HDR_LEN)
                // No GSO features are offered (virtio 1.2 §5.1.6.2.1).
                && hdr[1] == GSO_NONE;
            if !ok {
                stats.errors += 1;
                self.drop_frame();
            } else if !self.link_up || self.tx_out.is_full() {
                self.drop_frame();
            } else {
                budget.take_bytes(frame_len);
                let n = frame_len as usize;
                let copied = self.tx_out.push_with(|slot| {
                    let dst = slot.get_mut(..n)?;
                    (chain.read_at(mem, NET_HDR_LEN as u64, dst) == Ok(n)).then_some(n)
                });
                if copied.is_some() {
                    stats.bytes_read += frame_len;
                } else {
                    stats.errors += 1;
                    self.drop_frame();
                }
            }
            // virtio 1.2 §5.1.6.2: TX buffers are returned with nothing written.
            queue.add_used(mem, self.chain.head, 0)?;
        }
        self.report(stats);
        Ok(Progress::Done)
    }

    /// virtio 1.2 §5.1.6.3/§5.1.6.4: copies backlog frames into available RX buffers
    /// within `budget`.
    fn fill_rx(
        &mut self,
        queue: &mut Queue,
        mem: &mut dyn GuestMemory,
        stats: &mut DeviceStats,
        budget: &mut WorkBudget,
    ) -> Result<Progress, QueueError> {
        if !queue.ready() {
            return Ok(Progress::Done);
        }
        // Bounded by the backlog length (each iteration removes one frame) and the budget.
        while let Some(frame) = self.rx_backlog.front() {
            if budget.exhausted() {
                self.report(stats);
                return Ok(Progress::More);
            }
            if !queue.pop_into(mem, &mut self.chain)? {
                break;
            }
            let chain = &self.chain;
            stats.requests += 1;
            budget.take_request();
            budget.take_bytes(frame.len() as u64);
            // virtio 1.2 §5.1.6.3.1: without MRG_RXBUF num_buffers is 1; no checksum or
            // GSO information (flags 0, gso_type NONE).
            let mut hdr = [0u8; NET_HDR_LEN];
            hdr[10..12].copy_from_slice(&1u16.to_le_bytes());
            let need = (NET_HDR_LEN + frame.len()) as u64;
            let fits = chain.readable.is_empty() && chain.writable_len() >= need;
            let written = fits
                && chain.write_at(mem, 0, &hdr) == Ok(NET_HDR_LEN)
                && chain.write_at(mem, NET_HDR_LEN as u64, frame) == Ok(frame.len());
            let head = chain.head;
            let frame_len = frame.len() as u64;
            self.rx_backlog.pop();
            if written {
                stats.bytes_written += frame_len;
                queue.add_used(mem, head, need as u32)?;
            } else {
                // A buffer that is read-only or too small: the frame is dropped and the
                // buffer returned empty.
                stats.errors += 1;
                self.drop_frame();
                queue.add_used(mem, head, 0)?;
            }
        }
        self.report(stats);
        Ok(Progress::Done)
    }
}

impl NetPort for NetDevice {
    /// Queues `frame` for the guest; dropped (and counted) when the link is down,
    /// the frame is malformed or the backlog is full.
    fn deliver(&mut self, frame: &[u8]) -> bool {
        if !self.link_up
            || frame.len() < MIN_FRAME
            || frame.len() > MAX_FRAME
            || !self.rx_backlog.push(frame)
        {
            self.drop_frame();
            return false;
        }
        true
    }

    fn take_frame(&mut self, buf: &mut FrameBuf) -> Option<usize> {
        self.tx_out.pop_into(buf)
    }

    fn has_frame(&self) -> bool {
        !self.tx_out.is_empty()
    }
}

impl VirtioDevice for NetDevice {
    fn device_id(&self) -> u32 {
        device_id::NET
    }

    fn device_features(&self) -> u64 {
        feature::VERSION_1
            | feature::RING_EVENT_IDX
            | feature::RING_INDIRECT_DESC
            | feature::NET_MAC
            | feature::NET_STATUS
    }

    fn num_queues(&self) -> usize {
        2
    }

    fn queue_max_size(&self, index: usize) -> u16 {
        if index < 2 {
            NET_QUEUE_SIZE
        } else {
            0
        }
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_bytes(&self.config_bytes(), offset, data);
    }

    fn write_config(&mut self, _offset: u64, _data: &[u8]) {
        // virtio 1.2 §5.1.4: mac is only writable with VIRTIO_NET_F_CTRL_MAC_ADDR
        // (not offered); the rest is read-only.
    }

    fn activate(&mut self, features: u64) {
        self.features = features;
    }

    fn process_queue(
        &mut self,
        index: usize,
        queue: &mut Queue,
        mem: &mut dyn GuestMemory,
        stats: &mut DeviceStats,
        budget: &mut WorkBudget,
    ) -> Result<Progress, QueueError> {
        match index {
            RX_QUEUE => self.fill_rx(queue, mem, stats, budget),
            TX_QUEUE => self.transmit(queue, mem, stats, budget),
            _ => Ok(Progress::Done),
        }
    }

    fn poll(
        &mut self,
        queues: &mut [Queue],
        mem: &mut dyn GuestMemory,
        stats: &mut DeviceStats,
        budget: &mut WorkBudget,
    ) -> Result<Progress, DeviceError> {
        match queues.get_mut(RX_QUEUE) {
            Some(q) => self
                .fill_rx(q, mem, stats, budget)
                .map_err(|error| DeviceError::Queue {
                    queue: RX_QUEUE,
                    error,
                }),
            None => Ok(Progress::Done),
        }
    }

    fn reset(&mut self) {
        self.features = 0;
        self.rx_backlog.clear();
        self.tx_out.clear();
    }

    fn config_generation(&self) -> u32 {
        self.generation
    }

    /// The link status (virtio 1.2 §5.1.4); the MAC is configuration, and frames waiting
    /// in either direction are not saved (a network may drop frames).
    fn save_device_state(&self) -> DeviceState<'_> {
        DeviceState::Net(NetState {
            link_up: self.link_up,
        })
    }

    /// Takes the link status over (the transport restores whether its change was
    /// signalled) and drops frames waiting in either direction.
    fn load_device_state(
        &mut self,
        state: &DeviceState<'_>,
        _queues: &[QueueState],
    ) -> Result<(), StateError> {
        let DeviceState::Net(n) = state else {
            return Err(StateError::KindMismatch {
                snapshot: state.kind(),
                vm_device_id: device_id::NET,
            });
        };
        self.link_up = n.link_up;
        self.features = 0;
        self.rx_backlog.clear();
        self.tx_out.clear();
        Ok(())
    }
}
