//! virtio-net device (virtio 1.2 §5.1): one RX and one TX queue, MAC and link status,
//! no offloads, no mergeable RX buffers.

use alloc::collections::VecDeque;
use alloc::vec;
use alloc::vec::Vec;

use crate::blk::read_bytes;
use crate::memory::GuestMemory;
use crate::mmio::{DeviceError, DeviceStats, Progress, VirtioDevice, WorkBudget};
use crate::queue::{Queue, QueueError};
use crate::spec::{device_id, feature, net_status};
use crate::switch::NetPort;

/// virtio 1.2 §5.1.2: receiveq1 is queue 0.
pub const RX_QUEUE: usize = 0;
/// virtio 1.2 §5.1.2: transmitq1 is queue 1.
pub const TX_QUEUE: usize = 1;
/// Queue size offered for both queues.
pub const NET_QUEUE_SIZE: u16 = 256;
/// virtio 1.2 §5.1.6: struct virtio_net_hdr is 12 bytes when VERSION_1 is negotiated
/// (num_buffers is always present).
pub const NET_HDR_LEN: usize = 12;
/// Largest Ethernet frame accepted without GSO (1500-byte MTU, 14-byte header,
/// 802.1Q tag; virtio 1.2 §5.1.6.3.1: buffers need not hold more without GSO).
pub const MAX_FRAME: usize = 1518;
/// Smallest Ethernet frame the device forwards (the Ethernet header).
pub const MIN_FRAME: usize = 14;
/// Frames buffered for a guest with no RX buffers; more are dropped and counted.
pub const RX_BACKLOG: usize = 64;
/// Frames sent by the guest not yet taken by the switch; more are dropped and counted.
pub const TX_BACKLOG: usize = 256;

/// virtio 1.2 §5.1.6: gso_type VIRTIO_NET_HDR_GSO_NONE.
const GSO_NONE: u8 = 0;

/// A virtio-net device. Frames sent by the guest are queued for [`NetPort::take_frame`];
/// frames for the guest are queued by [`NetPort::deliver`] and copied into RX buffers
/// by [`crate::MmioTransport::poll`] (or when the driver adds RX buffers).
#[derive(Debug)]
pub struct NetDevice {
    mac: [u8; 6],
    link_up: bool,
    generation: u32,
    features: u64,
    rx_backlog: VecDeque<Vec<u8>>,
    tx_out: VecDeque<Vec<u8>>,
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
            rx_backlog: VecDeque::new(),
            tx_out: VecDeque::new(),
            unreported_drops: 0,
            total_drops: 0,
        }
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

    /// virtio 1.2 §5.1.6.2: transmit every available TX chain.
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
            let Some(chain) = queue.pop(mem)? else {
                break;
            };
            budget.take_request();
            stats.requests += 1;
            let total = chain.readable_len();
            let mut hdr = [0u8; NET_HDR_LEN];
            let frame_len = total.saturating_sub(NET_HDR_LEN as u64);
            let ok = total >= (NET_HDR_LEN + MIN_FRAME) as u64
                && frame_len <= MAX_FRAME as u64
                && chain.read_at(mem, 0, &mut hdr) == Ok(NET_HDR_LEN)
                // No GSO features are offered (virtio 1.2 §5.1.6.2.1).
                && hdr[1] == GSO_NONE;
            if ok {
                budget.take_bytes(frame_len);
                let mut frame = vec![0u8; frame_len as usize];
                if chain.read_at(mem, NET_HDR_LEN as u64, &mut frame) == Ok(frame.len()) {
                    stats.bytes_read += frame_len;
                    if self.tx_out.len() < TX_BACKLOG && self.link_up {
                        self.tx_out.push_back(frame);
                    } else {
                        self.drop_frame();
                    }
                } else {
                    stats.errors += 1;
                    self.drop_frame();
                }
            } else {
                stats.errors += 1;
                self.drop_frame();
            }
            // virtio 1.2 §5.1.6.2: TX buffers are returned with nothing written.
            queue.add_used(mem, chain.head, 0)?;
        }
        self.report(stats);
        Ok(Progress::Done)
    }

    /// virtio 1.2 §5.1.6.3/§5.1.6.4: copies backlog frames into available RX buffers.
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
        while !self.rx_backlog.is_empty() {
            if budget.exhausted() {
                self.report(stats);
                return Ok(Progress::More);
            }
            let Some(chain) = queue.pop(mem)? else {
                break;
            };
            let Some(frame) = self.rx_backlog.pop_front() else {
                queue.undo_pop();
                break;
            };
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
                && chain.write_at(mem, NET_HDR_LEN as u64, &frame) == Ok(frame.len());
            if written {
                stats.bytes_written += frame.len() as u64;
                queue.add_used(mem, chain.head, need as u32)?;
            } else {
                // A buffer that is read-only or too small: the frame is dropped and the
                // buffer returned empty.
                stats.errors += 1;
                self.drop_frame();
                queue.add_used(mem, chain.head, 0)?;
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
            || self.rx_backlog.len() >= RX_BACKLOG
        {
            self.drop_frame();
            return false;
        }
        self.rx_backlog.push_back(frame.to_vec());
        true
    }

    fn take_frame(&mut self) -> Option<Vec<u8>> {
        self.tx_out.pop_front()
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
}
