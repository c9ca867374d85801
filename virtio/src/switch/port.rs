//! One switch port: what is attached to it, its queue of frames for the endpoint, its
//! flood bucket and its counters.

use super::limits::TokenBucket;
use super::Mac;
use crate::frames::FrameRing;

/// What a port connects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortKind {
    /// A VM's network device: it may send only from `mac` (its configured address).
    Guest { mac: Mac },
    /// The network's gateway (ARP and ICMP echo responder), sending from `mac`.
    Gateway { mac: Mac },
    /// A physical NIC bridged to the network: any unicast source is learned, except the
    /// addresses of this switch's guests and gateway (a frame from outside claiming one is
    /// spoofed).
    Uplink,
}

impl PortKind {
    /// The only source address the port may send from, if fixed.
    pub fn fixed_mac(self) -> Option<Mac> {
        match self {
            PortKind::Guest { mac } | PortKind::Gateway { mac } => Some(mac),
            PortKind::Uplink => None,
        }
    }
}

/// Why a frame was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Shorter than an Ethernet header, longer than [`crate::MAX_FRAME`], or a multicast
    /// source address (IEEE 802.3 §3.2.3: the source is an individual address).
    Malformed,
    /// A source address the port may not use.
    Spoofed,
    /// A flooded frame over the port's [`super::FloodLimit`].
    FloodLimited,
    /// The destination port's queue was full (for a flooded frame: half full, so flooding
    /// cannot crowd out unicast).
    QueueFull,
    /// The destination was learned on the ingress port (IEEE 802.1D-2004 §7.7.1: not sent
    /// back where it came from).
    Filtered,
}

/// Drops of one port, by reason. Malformed, spoofed, flood-limited and filtered frames
/// are counted on the port they came from; queue-full drops on the port they were for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Drops {
    pub malformed: u64,
    pub spoofed: u64,
    pub flood_limited: u64,
    pub queue_full: u64,
    pub filtered: u64,
}

impl Drops {
    /// The counter for `reason`.
    pub fn get_mut(&mut self, reason: DropReason) -> &mut u64 {
        match reason {
            DropReason::Malformed => &mut self.malformed,
            DropReason::Spoofed => &mut self.spoofed,
            DropReason::FloodLimited => &mut self.flood_limited,
            DropReason::QueueFull => &mut self.queue_full,
            DropReason::Filtered => &mut self.filtered,
        }
    }

    /// Drops of frames the port sent (every reason but queue-full).
    pub fn ingress_total(&self) -> u64 {
        self.malformed + self.spoofed + self.flood_limited + self.filtered
    }
}

/// Counters of one port. `ingress` is what the endpoint sent into the switch, `egress`
/// what the switch queued for (or handed to) the endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortStats {
    pub ingress_frames: u64,
    pub ingress_bytes: u64,
    pub egress_frames: u64,
    pub egress_bytes: u64,
    pub drops: Drops,
}

#[derive(Debug)]
pub(super) struct Port {
    pub kind: PortKind,
    /// Frames for the endpoint (`None` for the gateway, which answers in place).
    pub queue: Option<FrameRing>,
    pub flood: TokenBucket,
    pub stats: PortStats,
    /// Its endpoint went away ([`super::Switch::detach_port`]): frames for it are dropped
    /// (`queue_full`) until a guest port with the same MAC takes it again.
    pub detached: bool,
}
