//! A switch port that answers ARP requests and ICMP echo requests for one IPv4 address
//! (the network's gateway), and the RFC 1071 checksum it needs.

use alloc::boxed::Box;

use super::{mac_at, Mac, NetPort, BROADCAST};
use crate::frames::{FrameBuf, FrameRing, MAX_FRAME};

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
pub const GATEWAY_BACKLOG: usize = 32;

/// A switch port that answers ARP requests and ICMP echo requests for one IPv4
/// address, so a single guest can be tested. Replies are built in place in a
/// [`FrameRing`] of [`GATEWAY_BACKLOG`] frames allocated at creation.
#[derive(Debug)]
pub struct Gateway {
    mac: Mac,
    ip: [u8; 4],
    out: FrameRing,
    /// Where a reply is built when `out` is full (to count it as dropped).
    scratch: Box<FrameBuf>,
    stats: GatewayStats,
}

/// Writes an Ethernet frame (`dst`, `src`, `ethertype`, then the payload `body` writes at
/// [`ETH_HDR`]) into `buf`, zero-padded to [`ETH_MIN`]; its length.
fn ethernet(
    buf: &mut FrameBuf,
    dst: Mac,
    src: Mac,
    ethertype: u16,
    body: impl FnOnce(&mut [u8]) -> Option<usize>,
) -> Option<usize> {
    buf[..6].copy_from_slice(&dst);
    buf[6..12].copy_from_slice(&src);
    buf[12..ETH_HDR].copy_from_slice(&ethertype.to_be_bytes());
    let n = ETH_HDR + body(&mut buf[ETH_HDR..])?;
    let len = n.max(ETH_MIN);
    buf.get_mut(n..len)?.fill(0);
    Some(len)
}

impl Gateway {
    /// A gateway with hardware address `mac` answering for `ip`.
    pub fn new(mac: Mac, ip: [u8; 4]) -> Self {
        Gateway {
            mac,
            ip,
            out: FrameRing::new(GATEWAY_BACKLOG),
            scratch: Box::new([0; MAX_FRAME]),
            stats: GatewayStats::default(),
        }
    }

    /// Heap bytes one gateway holds (allocated by [`Gateway::new`]).
    pub const fn heap_bytes() -> usize {
        FrameRing::heap_bytes(GATEWAY_BACKLOG) + MAX_FRAME
    }

    /// Counters.
    pub fn stats(&self) -> GatewayStats {
        self.stats
    }

    /// The oldest queued reply, in place.
    pub fn front(&self) -> Option<&[u8]> {
        self.out.front()
    }

    /// Removes the oldest queued reply.
    pub fn pop(&mut self) {
        self.out.pop();
    }

    /// Writes the reply to `frame` into `out`, if the gateway answers it: what it is and
    /// its length.
    pub fn respond(&self, frame: &[u8], out: &mut FrameBuf) -> Option<(GatewayReply, usize)> {
        respond(self.mac, self.ip, frame, out)
    }
}

fn respond(
    mac: Mac,
    ip: [u8; 4],
    frame: &[u8],
    out: &mut FrameBuf,
) -> Option<(GatewayReply, usize)> {
    let dst = mac_at(frame, 0)?;
    let src = mac_at(frame, 6)?;
    if dst != mac && dst != BROADCAST {
        return None;
    }
    let ethertype = u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]);
    let payload = frame.get(ETH_HDR..)?;
    match ethertype {
        ETHERTYPE_ARP => {
            let sha = arp_request_sender(ip, payload)?;
            let n = ethernet(out, sha, mac, ETHERTYPE_ARP, |b| {
                arp_reply(mac, ip, payload, b)
            })?;
            Some((GatewayReply::Arp, n))
        }
        ETHERTYPE_IPV4 if dst == mac => {
            let n = ethernet(out, src, mac, ETHERTYPE_IPV4, |b| {
                echo_reply(ip, payload, b)
            })?;
            Some((GatewayReply::Echo, n))
        }
        _ => None,
    }
}

/// RFC 826: the sender of a "who has `ip`" request for Ethernet/IPv4.
fn arp_request_sender(ip: [u8; 4], arp: &[u8]) -> Option<Mac> {
    let arp = arp.get(..28)?;
    // htype 1 (Ethernet), ptype 0x0800, hlen 6, plen 4, oper 1 (request).
    if arp[..8] != [0, 1, 8, 0, 6, 4, 0, 1] || arp[24..28] != ip {
        return None;
    }
    arp[8..14].try_into().ok()
}

/// RFC 826: writes the reply to an ARP request for `ip` into `out`; its length.
fn arp_reply(mac: Mac, ip: [u8; 4], arp: &[u8], out: &mut [u8]) -> Option<usize> {
    let sha: Mac = arp_request_sender(ip, arp)?;
    let spa = arp.get(14..18)?;
    let r = out.get_mut(..28)?;
    r[..8].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 2]);
    r[8..14].copy_from_slice(&mac);
    r[14..18].copy_from_slice(&ip);
    r[18..24].copy_from_slice(&sha);
    r[24..28].copy_from_slice(spa);
    Some(28)
}

/// RFC 791 / RFC 792: writes the reply to an ICMP echo request to `ip` (with valid
/// checksums) into `out`; its length.
fn echo_reply(my_ip: [u8; 4], ip: &[u8], out: &mut [u8]) -> Option<usize> {
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
    if ip[9] != IPPROTO_ICMP || ip[16..20] != my_ip || internet_checksum(&ip[..ihl]) != 0 {
        return None;
    }
    let icmp = &ip[ihl..total];
    if icmp[0] != ICMP_ECHO_REQUEST || icmp[1] != 0 || internet_checksum(icmp) != 0 {
        return None;
    }
    let reply_total = 20 + icmp.len();
    let out = out.get_mut(..reply_total)?;
    let (hdr, reply_icmp) = out.split_at_mut(20);
    reply_icmp.copy_from_slice(icmp);
    reply_icmp[0] = ICMP_ECHO_REPLY;
    reply_icmp[2] = 0;
    reply_icmp[3] = 0;
    let c = internet_checksum(reply_icmp);
    reply_icmp[2..4].copy_from_slice(&c.to_be_bytes());

    hdr.fill(0);
    hdr[0] = 0x45;
    hdr[1] = ip[1];
    hdr[2..4].copy_from_slice(&u16::try_from(reply_total).ok()?.to_be_bytes());
    hdr[4..6].copy_from_slice(&ip[4..6]); // identification
    hdr[8] = 64; // TTL
    hdr[9] = IPPROTO_ICMP;
    hdr[12..16].copy_from_slice(&my_ip);
    hdr[16..20].copy_from_slice(&ip[12..16]);
    let c = internet_checksum(hdr);
    hdr[10..12].copy_from_slice(&c.to_be_bytes());
    Some(reply_total)
}

impl NetPort for Gateway {
    fn deliver(&mut self, frame: &[u8]) -> bool {
        let (mac, ip) = (self.mac, self.ip);
        let mut kind = None;
        let queued = self.out.push_with(|slot| {
            let (k, n) = respond(mac, ip, frame, slot)?;
            kind = Some(k);
            Some(n)
        });
        if queued.is_none() && self.out.is_full() {
            // No room for a reply: build it in the scratch buffer to tell a dropped reply
            // from a frame the gateway ignores.
            if let Some((k, _)) = respond(mac, ip, frame, &mut self.scratch) {
                match k {
                    GatewayReply::Arp => self.stats.arp_replies += 1,
                    GatewayReply::Echo => self.stats.echo_replies += 1,
                }
                self.stats.dropped += 1;
                return false;
            }
        }
        match kind {
            Some(GatewayReply::Arp) => self.stats.arp_replies += 1,
            Some(GatewayReply::Echo) => self.stats.echo_replies += 1,
            None => self.stats.ignored += 1,
        }
        true
    }

    fn take_frame(&mut self, buf: &mut FrameBuf) -> Option<usize> {
        self.out.pop_into(buf)
    }

    fn has_frame(&self) -> bool {
        !self.out.is_empty()
    }
}
