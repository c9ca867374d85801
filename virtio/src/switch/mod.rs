//! A network's learning Ethernet switch (IEEE 802.1D-2004 §7 in miniature) with an optional
//! gateway port answering ARP and ICMP echo, for the VMs attached to one network and an
//! optional uplink to a physical NIC.
//!
//! Isolation rules: a guest port sends only from its configured MAC ([`PortKind::Guest`]),
//! a frame from the uplink claiming a guest's or the gateway's address is spoofed; flooding
//! (broadcast, multicast, unknown unicast) is bounded per port by a [`FloodLimit`]; the MAC
//! table ([`table::MacTable`]) holds at most `mac_capacity` learned addresses and ages them.
//! Every drop is counted per port and reason ([`PortStats`]).
//!
//! Data path: nothing is allocated after creation (the port array, the table and each
//! port's queue are allocated when the switch and the port are created). A frame is copied
//! once inside the switch: [`Switch::send_from`] reads it in place at the front of the
//! sender's TX ring and copies it into the queue of each port it goes to, and
//! [`Switch::swap_queue`] lends a port's queue to the receiving device (a pointer swap) so
//! the device fills the guest's RX buffers straight from it. One call moves at most
//! [`MAX_FRAMES_PER_PUMP`] frames, so one sender cannot hold the switch for long.

mod gateway;
mod limits;
mod port;
pub mod table;
#[cfg(test)]
mod tests;

use alloc::vec::Vec;

pub use gateway::{internet_checksum, Gateway, GatewayReply, GatewayStats, GATEWAY_BACKLOG};
pub use limits::{FloodLimit, TokenBucket};
pub use port::{DropReason, Drops, PortKind, PortStats};

use crate::frames::{FrameBuf, FrameRing, MAX_FRAME};
use port::Port;
use table::{Learned, MacTable};

/// An Ethernet endpoint that exchanges frames one at a time (the gateway, test endpoints).
pub trait NetPort {
    /// A frame from the network for this endpoint. Returns false if it was dropped.
    fn deliver(&mut self, frame: &[u8]) -> bool;
    /// Moves the next frame this endpoint sends onto the network into `buf`; its length.
    fn take_frame(&mut self, buf: &mut FrameBuf) -> Option<usize>;
    /// Whether [`NetPort::take_frame`] has a frame.
    fn has_frame(&self) -> bool;
}

/// An Ethernet MAC address.
pub type Mac = [u8; 6];

/// The broadcast address.
pub const BROADCAST: Mac = [0xff; 6];

/// IEEE 802.3 §3.2.3: bit 0 of the first octet marks a group (multicast) address.
pub fn is_multicast(mac: &Mac) -> bool {
    mac[0] & 1 != 0
}

pub(crate) fn mac_at(frame: &[u8], at: usize) -> Option<Mac> {
    frame.get(at..at + 6)?.try_into().ok()
}

/// Smallest frame the switch forwards: the Ethernet header (destination, source, type).
pub const ETH_HEADER: usize = 14;

/// Frames one [`Switch::send_from`] call takes from the sender at most; the rest wait in
/// its ring for the next call (the VM's next slice).
pub const MAX_FRAMES_PER_PUMP: u64 = 64;

/// A flooded frame is queued for a port only while its queue is less than 1/this full.
pub const FLOOD_QUEUE_SHARE: usize = 2;

/// Default MAC table size (learned addresses, beside the static ones).
pub const DEFAULT_MAC_CAPACITY: usize = 256;
/// IEEE 802.1D-2004 §7.9.2, Table 7-5: recommended ageing time 300 s.
pub const DEFAULT_AGING_SECONDS: u64 = 300;
/// Frames a port's queue holds (the same as a virtio-net device's RX backlog, so the two
/// can be swapped).
pub const DEFAULT_QUEUE_FRAMES: usize = crate::net::RX_BACKLOG;

/// A switch's fixed parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SwitchConfig {
    /// Ports it can have (guests, gateway, uplink).
    pub max_ports: usize,
    /// Learned (dynamic) MAC table entries.
    pub mac_capacity: usize,
    /// TSC ticks after which an unrefreshed learned entry is forgotten.
    pub aging_ticks: u64,
    /// Flooded frames per port.
    pub flood: FloodLimit,
    /// TSC frequency (for the flood buckets).
    pub tsc_hz: u64,
    /// Frames each port's queue holds.
    pub queue_frames: usize,
}

impl SwitchConfig {
    /// The defaults for `max_ports` ports on a TSC of `tsc_hz`.
    pub fn new(max_ports: usize, tsc_hz: u64) -> Self {
        SwitchConfig {
            max_ports,
            mac_capacity: DEFAULT_MAC_CAPACITY,
            aging_ticks: tsc_hz.saturating_mul(DEFAULT_AGING_SECONDS),
            flood: FloodLimit::DEFAULT,
            tsc_hz,
            queue_frames: DEFAULT_QUEUE_FRAMES,
        }
    }
}

/// Why a port could not be added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwitchError {
    /// The switch has `max` ports already.
    TooManyPorts { max: usize },
    /// Another port already uses this MAC.
    DuplicateMac { mac: Mac, port: usize },
    /// The switch has a gateway already.
    SecondGateway,
}

impl core::fmt::Display for SwitchError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            SwitchError::TooManyPorts { max } => write!(
                f,
                "the network has its {max} ports already; attach fewer devices to it"
            ),
            SwitchError::DuplicateMac { mac, port } => write!(
                f,
                "MAC {} is already used by port {port} of this network; give each \
                 virtio-net device on a network its own mac",
                MacText(*mac)
            ),
            SwitchError::SecondGateway => write!(f, "the network has a gateway already"),
        }
    }
}

/// A MAC as `aa:bb:cc:dd:ee:ff`.
#[derive(Debug, Clone, Copy)]
pub struct MacText(pub Mac);

impl core::fmt::Display for MacText {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

/// A port number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct PortId(pub usize);

/// Switch-wide counters. Every frame sent in is counted once in `received` and then once
/// in exactly one of `unicast`, `flooded` or a port's ingress drops.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SwitchStats {
    pub received: u64,
    /// Frames sent to the one port their destination was learned on.
    pub unicast: u64,
    /// Frames sent to every other port.
    pub flooded: u64,
    /// Learned entries that replaced a live one (table full).
    pub evicted: u64,
    /// Learned entries that replaced one that had aged out.
    pub aged: u64,
}

/// What one [`Switch::send_from`] call did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PumpOutcome {
    /// Frames taken from the sender (forwarded or dropped).
    pub frames: u64,
    /// Frames are left in the sender's ring: call again (the VM's next slice).
    pub more: bool,
}

/// A learning switch.
#[derive(Debug)]
pub struct Switch {
    config: SwitchConfig,
    ports: Vec<Port>,
    table: MacTable,
    gateway: Option<(usize, Gateway)>,
    stats: SwitchStats,
}

impl Switch {
    /// A switch with no ports; its port array and MAC table are allocated now.
    pub fn new(config: SwitchConfig) -> Self {
        Switch {
            config,
            ports: Vec::with_capacity(config.max_ports),
            table: MacTable::new(config.mac_capacity, config.max_ports, config.aging_ticks),
            gateway: None,
            stats: SwitchStats::default(),
        }
    }

    /// Heap bytes [`Switch::new`] allocates (the ports' queues are [`Switch::port_bytes`]
    /// each, the gateway [`Gateway::heap_bytes`]).
    pub const fn heap_bytes(config: &SwitchConfig) -> usize {
        config.max_ports * core::mem::size_of::<Port>()
            + MacTable::heap_bytes(config.mac_capacity, config.max_ports)
    }

    /// Heap bytes one guest or uplink port's queue takes.
    pub const fn port_bytes(config: &SwitchConfig) -> usize {
        FrameRing::heap_bytes(config.queue_frames)
    }

    /// The parameters it was created with.
    pub fn config(&self) -> &SwitchConfig {
        &self.config
    }

    /// Adds a guest or uplink port (its queue is allocated now). For a gateway use
    /// [`Switch::add_gateway`]. A guest port whose MAC names a detached port (its VM was
    /// restarted) takes that port again, with an empty queue and its counters kept.
    pub fn add_port(&mut self, kind: PortKind) -> Result<PortId, SwitchError> {
        if let PortKind::Gateway { .. } = kind {
            return Err(SwitchError::SecondGateway);
        }
        if let Some(id) = self.ports.iter().position(|p| p.detached && p.kind == kind) {
            let port = &mut self.ports[id];
            port.detached = false;
            if let Some(q) = port.queue.as_mut() {
                q.clear();
            }
            return Ok(PortId(id));
        }
        self.push_port(kind, Some(FrameRing::new(self.config.queue_frames)))
    }

    /// The endpoint of guest port `port` went away (its VM stopped for a restart): its
    /// queued frames are dropped, and so is every frame for it until [`Switch::add_port`]
    /// attaches a port with the same MAC again. Its MAC stays pinned to it, so no other
    /// port can claim the address meanwhile. False if there is no such guest port.
    pub fn detach_port(&mut self, port: PortId) -> bool {
        match self.ports.get_mut(port.0) {
            Some(p) if matches!(p.kind, PortKind::Guest { .. }) => {
                p.detached = true;
                if let Some(q) = p.queue.as_mut() {
                    q.clear();
                }
                true
            }
            _ => false,
        }
    }

    /// Whether `port` is detached.
    pub fn is_detached(&self, port: PortId) -> bool {
        self.ports.get(port.0).is_some_and(|p| p.detached)
    }

    /// Adds the gateway port: `gateway` answers for its address, sending from `mac`.
    pub fn add_gateway(&mut self, mac: Mac, ip: [u8; 4]) -> Result<PortId, SwitchError> {
        if self.gateway.is_some() {
            return Err(SwitchError::SecondGateway);
        }
        let id = self.push_port(PortKind::Gateway { mac }, None)?;
        self.gateway = Some((id.0, Gateway::new(mac, ip)));
        Ok(id)
    }

    fn push_port(
        &mut self,
        kind: PortKind,
        queue: Option<FrameRing>,
    ) -> Result<PortId, SwitchError> {
        if self.ports.len() >= self.config.max_ports {
            return Err(SwitchError::TooManyPorts {
                max: self.config.max_ports,
            });
        }
        let id = self.ports.len();
        if let Some(mac) = kind.fixed_mac() {
            self.table.pin(mac, id)?;
        }
        self.ports.push(Port {
            kind,
            queue,
            flood: TokenBucket::new(self.config.flood, self.config.tsc_hz),
            stats: PortStats::default(),
            detached: false,
        });
        Ok(PortId(id))
    }

    /// Number of ports.
    pub fn port_count(&self) -> usize {
        self.ports.len()
    }

    /// What port `port` connects.
    pub fn port_kind(&self, port: PortId) -> Option<PortKind> {
        self.ports.get(port.0).map(|p| p.kind)
    }

    /// Counters of `port`.
    pub fn port_stats(&self, port: PortId) -> Option<PortStats> {
        self.ports.get(port.0).map(|p| p.stats)
    }

    /// Switch-wide counters.
    pub fn stats(&self) -> SwitchStats {
        self.stats
    }

    /// The gateway's counters, if the network has one.
    pub fn gateway_stats(&self) -> Option<GatewayStats> {
        self.gateway.as_ref().map(|(_, g)| g.stats())
    }

    /// The port a live table entry for `mac` names.
    pub fn lookup(&self, mac: &Mac, now: u64) -> Option<PortId> {
        self.table.lookup(mac, now).map(PortId)
    }

    /// Learned (dynamic) table entries.
    pub fn learned(&self) -> usize {
        self.table.dynamic_len()
    }

    /// Frames waiting in `port`'s queue.
    pub fn queued(&self, port: PortId) -> usize {
        self.ports
            .get(port.0)
            .and_then(|p| p.queue.as_ref())
            .map_or(0, FrameRing::len)
    }

    /// `port`'s queue of frames for its endpoint (an uplink's driver drains it).
    pub fn queue_mut(&mut self, port: PortId) -> Option<&mut FrameRing> {
        self.ports.get_mut(port.0)?.queue.as_mut()
    }

    /// Exchanges `port`'s queue with `ring` (a pointer swap, no copy): the hypervisor lends
    /// the queue to the port's virtio-net device (`NetDevice::rx_ring_mut`) while the device
    /// fills RX buffers from it, then swaps back. False (nothing swapped) if the port has
    /// no queue or the capacities differ.
    pub fn swap_queue(&mut self, port: PortId, ring: &mut FrameRing) -> bool {
        match self.ports.get_mut(port.0).and_then(|p| p.queue.as_mut()) {
            Some(q) if q.capacity() == ring.capacity() => {
                core::mem::swap(q, ring);
                true
            }
            _ => false,
        }
    }

    /// Takes up to [`MAX_FRAMES_PER_PUMP`] frames from the front of `ring` (the sender's
    /// TX ring, e.g. `NetDevice::tx_ring_mut`) and forwards each from port `src`, then
    /// forwards what the gateway answered. Allocates nothing.
    pub fn send_from(&mut self, src: PortId, ring: &mut FrameRing, now: u64) -> PumpOutcome {
        let mut frames = 0;
        while frames < MAX_FRAMES_PER_PUMP {
            let Some(frame) = ring.front() else { break };
            self.forward(src.0, frame, now);
            ring.pop();
            frames += 1;
        }
        self.pump_gateway(now);
        PumpOutcome {
            frames,
            more: !ring.is_empty(),
        }
    }

    /// Forwards one frame that arrived on `src` (e.g. from the uplink's RX descriptor, in
    /// place), then what the gateway answered.
    pub fn ingress(&mut self, src: PortId, frame: &[u8], now: u64) {
        self.forward(src.0, frame, now);
        self.pump_gateway(now);
    }

    /// Forwards the gateway's replies (at most its backlog, [`GATEWAY_BACKLOG`]).
    fn pump_gateway(&mut self, now: u64) {
        let Some((port, mut gw)) = self.gateway.take() else {
            return;
        };
        // Bounded by the backlog; the gateway never answers its own replies.
        for _ in 0..GATEWAY_BACKLOG {
            let Some(frame) = gw.front() else { break };
            self.forward(port, frame, now);
            gw.pop();
        }
        self.gateway = Some((port, gw));
    }

    fn drop_at(&mut self, port: usize, reason: DropReason) {
        if let Some(p) = self.ports.get_mut(port) {
            *p.stats.drops.get_mut(reason) += 1;
        }
    }

    /// The forwarding decision for one frame from port `src` (IEEE 802.1D-2004 §7.7).
    fn forward(&mut self, src: usize, frame: &[u8], now: u64) {
        let Some(port) = self.ports.get_mut(src) else {
            return;
        };
        port.stats.ingress_frames += 1;
        port.stats.ingress_bytes += frame.len() as u64;
        let kind = port.kind;
        self.stats.received += 1;
        let (Some(dst), Some(smac)) = (mac_at(frame, 0), mac_at(frame, 6)) else {
            return self.drop_at(src, DropReason::Malformed);
        };
        if !(ETH_HEADER..=MAX_FRAME).contains(&frame.len()) || is_multicast(&smac) {
            return self.drop_at(src, DropReason::Malformed);
        }
        match kind.fixed_mac() {
            Some(mac) if mac != smac => return self.drop_at(src, DropReason::Spoofed),
            Some(_) => {}
            None => match self.table.learn(smac, src, now) {
                Learned::Static { .. } => return self.drop_at(src, DropReason::Spoofed),
                Learned::Evicted => self.stats.evicted += 1,
                Learned::ReplacedAged => self.stats.aged += 1,
                Learned::Refreshed | Learned::Moved | Learned::Added => {}
            },
        }
        let target = if is_multicast(&dst) {
            None
        } else {
            self.table.lookup(&dst, now)
        };
        match target {
            Some(p) if p == src => self.drop_at(src, DropReason::Filtered),
            Some(p) => {
                self.stats.unicast += 1;
                self.deliver(p, frame, false);
            }
            None => {
                let allowed = self.ports.get_mut(src).is_some_and(|p| p.flood.take(now));
                if !allowed {
                    return self.drop_at(src, DropReason::FloodLimited);
                }
                self.stats.flooded += 1;
                for p in (0..self.ports.len()).filter(|&p| p != src) {
                    self.deliver(p, frame, true);
                }
            }
        }
    }

    /// Queues `frame` for port `p` (the one copy), or hands it to the gateway. A `flooded`
    /// frame may use only the first half of the queue ([`FLOOD_QUEUE_SHARE`]), so the
    /// broadcasts other ports are allowed cannot crowd out a port's unicast traffic.
    fn deliver(&mut self, p: usize, frame: &[u8], flooded: bool) {
        let taken = match (self.ports.get_mut(p), self.gateway.as_mut()) {
            (Some(port), _) if port.detached => false,
            (Some(port), _) if port.queue.is_some() => port.queue.as_mut().is_some_and(|q| {
                let room = !flooded || q.len() * FLOOD_QUEUE_SHARE < q.capacity();
                room && q.push(frame)
            }),
            (Some(_), Some((gp, gw))) if *gp == p => gw.deliver(frame),
            // The gateway is taken out only while its own replies are forwarded, and a frame
            // is never sent back to the port it came from.
            _ => return,
        };
        let Some(port) = self.ports.get_mut(p) else {
            return;
        };
        if taken {
            port.stats.egress_frames += 1;
            port.stats.egress_bytes += frame.len() as u64;
        } else {
            port.stats.drops.queue_full += 1;
        }
    }
}
