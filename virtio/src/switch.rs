//! A learning Ethernet switch between [`NetPort`]s, and a gateway port answering ARP
//! and ICMP echo for one IPv4 address.

use alloc::collections::VecDeque;
use alloc::vec;
use alloc::vec::Vec;

/// An Ethernet endpoint attached to a switch port.
pub trait NetPort {
    /// A frame from the network for this endpoint. Returns false if it was dropped.
    fn deliver(&mut self, frame: &[u8]) -> bool;
    /// The next frame this endpoint sends onto the network.
    fn take_frame(&mut self) -> Option<Vec<u8>>;
}

/// An Ethernet MAC address.
pub type Mac = [u8; 6];

/// The broadcast address.
pub const BROADCAST: Mac = [0xff; 6];

fn is_multicast(mac: &Mac) -> bool {
    mac[0] & 1 != 0
}

#[derive(Debug, Clone, Copy)]
struct MacEntry {
    mac: Mac,
    port: usize,
    last_seen: u64,
}

/// Switch counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SwitchStats {
    /// Frames received from ports.
    pub received: u64,
    /// Frames delivered to exactly one learned port.
    pub unicast: u64,
    /// Frames flooded to all other ports (broadcast, multicast, unknown destination).
    pub flooded: u64,
    /// Frames dropped (runt, destination is the ingress port, refused by a port).
    pub dropped: u64,
    /// MAC table entries evicted to make room.
    pub evicted: u64,
}

/// Rounds of "take from every port, forward" per [`Switch::pump`] (gateway replies
/// need a second round).
const PUMP_ROUNDS: usize = 8;
/// Frames taken from one port per round.
const PORT_BUDGET: usize = 512;

/// A learning switch: forwards by learned source MAC, floods unknown and broadcast
/// destinations to every other port. The MAC table is bounded; the least recently
/// seen entry is evicted when full.
#[derive(Debug)]
pub struct Switch {
    table: Vec<MacEntry>,
    capacity: usize,
    clock: u64,
    stats: SwitchStats,
}

impl Switch {
    /// A switch whose MAC table holds at most `mac_capacity` entries (at least 1).
    pub fn new(mac_capacity: usize) -> Self {
        Switch {
            table: Vec::new(),
            capacity: mac_capacity.max(1),
            clock: 0,
            stats: SwitchStats::default(),
        }
    }

    /// Counters.
    pub fn stats(&self) -> SwitchStats {
        self.stats
    }

    /// The port `mac` was learned on.
    pub fn lookup(&self, mac: &Mac) -> Option<usize> {
        self.table.iter().find(|e| e.mac == *mac).map(|e| e.port)
    }

    /// Number of learned MACs.
    pub fn learned(&self) -> usize {
        self.table.len()
    }

    fn learn(&mut self, mac: Mac, port: usize) {
        self.clock += 1;
        if is_multicast(&mac) {
            return;
        }
        if let Some(e) = self.table.iter_mut().find(|e| e.mac == mac) {
            e.port = port;
            e.last_seen = self.clock;
            return;
        }
        if self.table.len() >= self.capacity {
            if let Some(i) = self
                .table
                .iter()
                .enumerate()
                .min_by_key(|(_, e)| e.last_seen)
                .map(|(i, _)| i)
            {
                self.table.swap_remove(i);
                self.stats.evicted += 1;
            }
        }
        self.table.push(MacEntry {
            mac,
            port,
            last_seen: self.clock,
        });
    }

    /// Moves frames between `ports` (index = port number) until no port has anything
    /// to send or the work bound is reached. Returns the number of frames received.
    pub fn pump(&mut self, ports: &mut [&mut dyn NetPort]) -> u64 {
        let before = self.stats.received;
        for _ in 0..PUMP_ROUNDS {
            let mut any = false;
            for src in 0..ports.len() {
                for _ in 0..PORT_BUDGET {
                    let Some(frame) = ports.get_mut(src).and_then(|p| p.take_frame()) else {
                        break;
                    };
                    any = true;
                    self.forward(src, &frame, ports);
                }
            }
            if !any {
                break;
            }
        }
        self.stats.received - before
    }

    /// Forwards one frame that arrived on port `src`.
    pub fn forward(&mut self, src: usize, frame: &[u8], ports: &mut [&mut dyn NetPort]) {
        self.stats.received += 1;
        let (Some(dst), Some(smac)) = (mac_at(frame, 0), mac_at(frame, 6)) else {
            self.stats.dropped += 1;
            return;
        };
        self.learn(smac, src);
        let target = if is_multicast(&dst) {
            None
        } else {
            self.lookup(&dst).filter(|&p| p < ports.len())
        };
        match target {
            Some(p) if p == src => self.stats.dropped += 1,
            Some(p) => {
                self.stats.unicast += 1;
                if let Some(port) = ports.get_mut(p) {
                    if !port.deliver(frame) {
                        self.stats.dropped += 1;
                    }
                }
            }
            None => {
                self.stats.flooded += 1;
                for (i, port) in ports.iter_mut().enumerate() {
                    if i != src && !port.deliver(frame) {
                        self.stats.dropped += 1;
                    }
                }
            }
        }
    }
}

fn mac_at(frame: &[u8], at: usize) -> Option<Mac> {
    frame.get(at..at + 6)?.try_into().ok()
}

/// RFC 1071 Internet checksum of `data` (one's complement of the one's complement sum).
pub fn internet_checksum(data: &[u8]) -> u16 {
    let mut sum: u64 = 0;
    let (pairs, rest) = data.as_chunks::<2>();
    for c in pairs {
        sum += u64::from(u16::from_be_bytes(*c));
    }
    if let [last] = rest {
        sum += u64::from(*last) << 8;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

const ETH_HDR: usize = 14;
const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_ARP: u16 = 0x0806;
const IPPROTO_ICMP: u8 = 1;
const ICMP_ECHO_REPLY: u8 = 0;
const ICMP_ECHO_REQUEST: u8 = 8;
/// Minimum Ethernet frame without FCS; shorter replies are zero-padded.
const ETH_MIN: usize = 60;

/// Gateway counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GatewayStats {
    /// ARP replies sent.
    pub arp_replies: u64,
    /// ICMP echo replies sent.
    pub echo_replies: u64,
    /// Frames not addressed to the gateway or not understood.
    pub ignored: u64,
    /// Replies dropped because the output queue was full.
    pub dropped: u64,
}

/// What the gateway answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GatewayReply {
    /// An ARP reply.
    Arp,
    /// An ICMP echo reply.
    Echo,
}

/// Replies queued by the gateway; more are dropped.
const GATEWAY_BACKLOG: usize = 64;

/// A switch port that answers ARP requests and ICMP echo requests for one IPv4
/// address, so a single guest can be tested.
#[derive(Debug)]
pub struct Gateway {
    mac: Mac,
    ip: [u8; 4],
    out: VecDeque<Vec<u8>>,
    stats: GatewayStats,
}

impl Gateway {
    /// A gateway with hardware address `mac` answering for `ip`.
    pub fn new(mac: Mac, ip: [u8; 4]) -> Self {
        Gateway {
            mac,
            ip,
            out: VecDeque::new(),
            stats: GatewayStats::default(),
        }
    }

    /// Counters.
    pub fn stats(&self) -> GatewayStats {
        self.stats
    }

    /// The reply to `frame`, if the gateway answers it.
    pub fn respond(&self, frame: &[u8]) -> Option<(GatewayReply, Vec<u8>)> {
        let dst = mac_at(frame, 0)?;
        let src = mac_at(frame, 6)?;
        if dst != self.mac && dst != BROADCAST {
            return None;
        }
        let ethertype = u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]);
        let payload = frame.get(ETH_HDR..)?;
        match ethertype {
            ETHERTYPE_ARP => Some((GatewayReply::Arp, self.arp_reply(payload)?)),
            ETHERTYPE_IPV4 if dst == self.mac => {
                let ip = self.echo_reply(payload)?;
                Some((GatewayReply::Echo, self.ethernet(src, ETHERTYPE_IPV4, &ip)))
            }
            _ => None,
        }
    }

    fn ethernet(&self, dst: Mac, ethertype: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = Vec::with_capacity((ETH_HDR + payload.len()).max(ETH_MIN));
        f.extend_from_slice(&dst);
        f.extend_from_slice(&self.mac);
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(payload);
        if f.len() < ETH_MIN {
            f.resize(ETH_MIN, 0);
        }
        f
    }

    /// RFC 826: answers "who has `ip`" requests for Ethernet/IPv4.
    fn arp_reply(&self, arp: &[u8]) -> Option<Vec<u8>> {
        let arp = arp.get(..28)?;
        // htype 1 (Ethernet), ptype 0x0800, hlen 6, plen 4, oper 1 (request).
        if arp[..8] != [0, 1, 8, 0, 6, 4, 0, 1] || arp[24..28] != self.ip {
            return None;
        }
        let sha: Mac = arp[8..14].try_into().ok()?;
        let spa = &arp[14..18];
        let mut r = Vec::with_capacity(28);
        r.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 2]);
        r.extend_from_slice(&self.mac);
        r.extend_from_slice(&self.ip);
        r.extend_from_slice(&sha);
        r.extend_from_slice(spa);
        Some(self.ethernet(sha, ETHERTYPE_ARP, &r))
    }

    /// RFC 791 / RFC 792: answers ICMP echo requests to `ip` with valid checksums.
    fn echo_reply(&self, ip: &[u8]) -> Option<Vec<u8>> {
        let vihl = *ip.first()?;
        let ihl = usize::from(vihl & 0x0f) * 4;
        if vihl >> 4 != 4 || ihl < 20 || ip.len() < ihl {
            return None;
        }
        let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
        let frag = u16::from_be_bytes([ip[6], ip[7]]);
        if total < ihl + 8 || total > ip.len() || frag & 0x3fff != 0 {
            return None; // truncated, or fragmented (MF set or offset != 0)
        }
        if ip[9] != IPPROTO_ICMP || ip[16..20] != self.ip || internet_checksum(&ip[..ihl]) != 0 {
            return None;
        }
        let icmp = &ip[ihl..total];
        if icmp[0] != ICMP_ECHO_REQUEST || icmp[1] != 0 || internet_checksum(icmp) != 0 {
            return None;
        }
        let mut reply_icmp = icmp.to_vec();
        reply_icmp[0] = ICMP_ECHO_REPLY;
        reply_icmp[2] = 0;
        reply_icmp[3] = 0;
        let c = internet_checksum(&reply_icmp);
        reply_icmp[2..4].copy_from_slice(&c.to_be_bytes());

        let reply_total = u16::try_from(20 + reply_icmp.len()).ok()?;
        let mut hdr = vec![0u8; 20];
        hdr[0] = 0x45;
        hdr[1] = ip[1];
        hdr[2..4].copy_from_slice(&reply_total.to_be_bytes());
        hdr[4..6].copy_from_slice(&ip[4..6]); // identification
        hdr[8] = 64; // TTL
        hdr[9] = IPPROTO_ICMP;
        hdr[12..16].copy_from_slice(&self.ip);
        hdr[16..20].copy_from_slice(&ip[12..16]);
        let c = internet_checksum(&hdr);
        hdr[10..12].copy_from_slice(&c.to_be_bytes());
        hdr.extend_from_slice(&reply_icmp);
        Some(hdr)
    }
}

impl NetPort for Gateway {
    fn deliver(&mut self, frame: &[u8]) -> bool {
        let Some((kind, reply)) = self.respond(frame) else {
            self.stats.ignored += 1;
            return true;
        };
        match kind {
            GatewayReply::Arp => self.stats.arp_replies += 1,
            GatewayReply::Echo => self.stats.echo_replies += 1,
        }
        if self.out.len() >= GATEWAY_BACKLOG {
            self.stats.dropped += 1;
            return false;
        }
        self.out.push_back(reply);
        true
    }

    fn take_frame(&mut self) -> Option<Vec<u8>> {
        self.out.pop_front()
    }
}
