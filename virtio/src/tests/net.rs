//! virtio-net, switch and gateway end-to-end tests (virtio 1.2 §5.1).

use super::fuzz_smoke::{mmio_noise, scribble, Rng};
use super::*;
use crate::frames::{FrameBuf, MAX_FRAME};
use crate::net::{NetDevice, NET_HDR_LEN, RX_BACKLOG, RX_QUEUE, TX_BACKLOG, TX_QUEUE};
use crate::spec::{interrupt, net_status, status, Register};
use crate::switch::{internet_checksum, Gateway, NetPort, Switch, BROADCAST};

type Net = MmioTransport<NetDevice>;

const GW_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xfe];
const GW_IP: [u8; 4] = [10, 0, 2, 2];
const MAC_A: [u8; 6] = [0x52, 0x54, 0, 0, 0, 0x0a];
const MAC_B: [u8; 6] = [0x52, 0x54, 0, 0, 0, 0x0b];
const IP_A: [u8; 4] = [10, 0, 2, 15];

struct Guest {
    d: Driver,
    t: Net,
    rx: Vec<(u16, u64)>,
}

impl Guest {
    fn new(mac: [u8; 6], rx_buffers: usize) -> Self {
        let mut t = MmioTransport::new(NetDevice::new(mac));
        let mut d = Driver::new(1 << 20);
        let f = d.setup(&mut t, ALL_FEATURES, 64).unwrap();
        assert_eq!(
            f,
            feature::VERSION_1
                | feature::RING_EVENT_IDX
                | feature::RING_INDIRECT_DESC
                | feature::NET_MAC
                | feature::NET_STATUS
        );
        let mut g = Guest {
            d,
            t,
            rx: Vec::new(),
        };
        g.post_rx(rx_buffers);
        g
    }

    fn post_rx(&mut self, n: usize) {
        let bufs = self.d.net_rx_buffers(RX_QUEUE, n, 1526);
        self.rx.extend(bufs);
        self.d.kick(&mut self.t, RX_QUEUE);
    }

    fn send(&mut self, frame: &[u8]) {
        self.d.net_tx(TX_QUEUE, frame);
        self.d.kick(&mut self.t, TX_QUEUE);
        assert!(self.d.pop_used(TX_QUEUE).is_some());
    }

    /// Frames received so far (virtio_net_hdr checked and stripped).
    fn recv(&mut self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while let Some((id, len)) = self.d.pop_used(RX_QUEUE) {
            let i = self
                .rx
                .iter()
                .position(|(h, _)| u32::from(*h) == id)
                .unwrap();
            let (_, addr) = self.rx.remove(i);
            let buf = self.d.read(addr, len as usize);
            assert_eq!(&buf[..10], &[0; 10], "no offload info");
            assert_eq!(&buf[10..12], &1u16.to_le_bytes(), "num_buffers = 1");
            out.push(buf[NET_HDR_LEN..].to_vec());
        }
        out
    }

    fn poll(&mut self) -> bool {
        self.t.poll(&mut self.d.mem).interrupt
    }
}

/// The next frame a port sends, copied out.
fn take(port: &mut dyn NetPort) -> Option<Vec<u8>> {
    let mut buf = [0u8; MAX_FRAME];
    let n = port.take_frame(&mut buf)?;
    Some(buf[..n].to_vec())
}

fn eth(dst: [u8; 6], src: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn arp_request(sha: [u8; 6], spa: [u8; 4], tpa: [u8; 4]) -> Vec<u8> {
    let mut a = vec![0, 1, 8, 0, 6, 4, 0, 1];
    a.extend_from_slice(&sha);
    a.extend_from_slice(&spa);
    a.extend_from_slice(&[0; 6]);
    a.extend_from_slice(&tpa);
    eth(BROADCAST, sha, 0x0806, &a)
}

fn echo_request(src: [u8; 6], dst: [u8; 6], sip: [u8; 4], dip: [u8; 4], seq: u16) -> Vec<u8> {
    let mut icmp = vec![8, 0, 0, 0, 0x12, 0x34];
    icmp.extend_from_slice(&seq.to_be_bytes());
    icmp.extend((0..56u8).map(|i| i ^ 0x5a));
    let c = internet_checksum(&icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    let total = (20 + icmp.len()) as u16;
    let mut ip = vec![0x45, 0, 0, 0, 0xab, 0xcd, 0x40, 0, 64, 1, 0, 0];
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip.extend_from_slice(&sip);
    ip.extend_from_slice(&dip);
    let c = internet_checksum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    ip.extend_from_slice(&icmp);
    eth(dst, src, 0x0800, &ip)
}

#[test]
fn config_space_mac_and_link_status() {
    let mut g = Guest::new(MAC_A, 0);
    assert_eq!(g.d.mmio_read(&mut g.t, Register::DeviceId), 1);
    let mac: Vec<u8> = (0..6).map(|i| g.t.read(0x100 + i, 1) as u8).collect();
    assert_eq!(mac, MAC_A);
    assert_eq!(g.t.read(0x106, 2) as u16, net_status::LINK_UP);
    let gen = g.d.mmio_read(&mut g.t, Register::ConfigGeneration);
    g.t.device_mut().set_link_up(false);
    // virtio 1.2 §5.1.4.2: link changes raise a configuration change interrupt.
    assert!(g.poll());
    assert_eq!(
        g.t.interrupt_status() & interrupt::CONFIG_CHANGE,
        interrupt::CONFIG_CHANGE
    );
    assert_eq!(g.t.read(0x106, 2), 0);
    assert_ne!(g.d.mmio_read(&mut g.t, Register::ConfigGeneration), gen);
    // Frames are dropped while the link is down.
    assert!(!g
        .t
        .device_mut()
        .deliver(&eth(MAC_A, MAC_B, 0x88b5, &[0; 46])));
}

#[test]
fn arp_to_gateway_gets_reply() {
    let mut g = Guest::new(MAC_A, 8);
    let mut gw = Gateway::new(GW_MAC, GW_IP);
    let mut sw = Switch::new(16);
    g.send(&arp_request(MAC_A, IP_A, GW_IP));
    sw.pump(&mut [g.t.device_mut() as &mut dyn NetPort, &mut gw]);
    assert!(g.poll(), "RX completion interrupts");
    let frames = g.recv();
    assert_eq!(frames.len(), 1);
    let f = &frames[0];
    assert_eq!(&f[0..6], &MAC_A);
    assert_eq!(&f[6..12], &GW_MAC);
    assert_eq!(&f[12..14], &[8, 6]);
    assert_eq!(&f[14..22], &[0, 1, 8, 0, 6, 4, 0, 2], "ARP reply");
    assert_eq!(&f[22..28], &GW_MAC);
    assert_eq!(&f[28..32], &GW_IP);
    assert_eq!(&f[32..38], &MAC_A);
    assert_eq!(&f[38..42], &IP_A);
    assert_eq!(gw.stats().arp_replies, 1);
    // ARP for another address is ignored.
    g.send(&arp_request(MAC_A, IP_A, [10, 0, 2, 3]));
    sw.pump(&mut [g.t.device_mut() as &mut dyn NetPort, &mut gw]);
    g.poll();
    assert!(g.recv().is_empty());
    assert_eq!(gw.stats().ignored, 1);
}

#[test]
fn ping_gateway_gets_echo_reply_with_valid_checksums() {
    let mut g = Guest::new(MAC_A, 8);
    let mut gw = Gateway::new(GW_MAC, GW_IP);
    let mut sw = Switch::new(16);
    let req = echo_request(MAC_A, GW_MAC, IP_A, GW_IP, 7);
    g.send(&req);
    sw.pump(&mut [g.t.device_mut() as &mut dyn NetPort, &mut gw]);
    assert!(g.poll());
    let frames = g.recv();
    assert_eq!(frames.len(), 1);
    let f = &frames[0];
    assert_eq!(&f[0..6], &MAC_A);
    assert_eq!(&f[6..12], &GW_MAC);
    assert_eq!(&f[12..14], &[8, 0]);
    let ip = &f[14..];
    assert_eq!(ip[0], 0x45);
    assert_eq!(internet_checksum(&ip[..20]), 0, "IPv4 header checksum");
    assert_eq!(ip[9], 1);
    assert_eq!(&ip[12..16], &GW_IP);
    assert_eq!(&ip[16..20], &IP_A);
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    let icmp = &ip[20..total];
    assert_eq!(internet_checksum(icmp), 0, "ICMP checksum");
    assert_eq!(icmp[0], 0, "echo reply");
    let req_icmp = &req[34..];
    assert_eq!(&icmp[4..], &req_icmp[4..], "id, seq and payload echoed");
    assert_eq!(gw.stats().echo_replies, 1);
    // A corrupted checksum gets no reply.
    let mut bad = echo_request(MAC_A, GW_MAC, IP_A, GW_IP, 8);
    bad[40] ^= 1;
    g.send(&bad);
    sw.pump(&mut [g.t.device_mut() as &mut dyn NetPort, &mut gw]);
    g.poll();
    assert!(g.recv().is_empty());
    let st = g.t.stats();
    assert_eq!(st.errors, 0);
    assert!(st.bytes_read > 0 && st.bytes_written > 0);
}

#[test]
fn switch_learns_macs_and_forwards_unicast() {
    let mut a = Guest::new(MAC_A, 8);
    let mut b = Guest::new(MAC_B, 8);
    let mut gw = Gateway::new(GW_MAC, GW_IP);
    let mut sw = Switch::new(16);
    let payload = [0x42; 46];
    // Unknown destination: flooded to B and the gateway.
    a.send(&eth(MAC_B, MAC_A, 0x88b5, &payload));
    sw.pump(&mut [
        a.t.device_mut() as &mut dyn NetPort,
        b.t.device_mut(),
        &mut gw,
    ]);
    b.poll();
    assert_eq!(b.recv(), vec![eth(MAC_B, MAC_A, 0x88b5, &payload)]);
    assert_eq!(gw.stats().ignored, 1);
    assert_eq!(sw.lookup(&MAC_A), Some(0));
    // B answers: A was learned, so only A gets it.
    b.send(&eth(MAC_A, MAC_B, 0x88b5, &payload));
    sw.pump(&mut [
        a.t.device_mut() as &mut dyn NetPort,
        b.t.device_mut(),
        &mut gw,
    ]);
    a.poll();
    assert_eq!(a.recv().len(), 1);
    assert_eq!(gw.stats().ignored, 1);
    assert_eq!(sw.lookup(&MAC_B), Some(1));
    // And now A -> B is unicast too.
    a.send(&eth(MAC_B, MAC_A, 0x88b5, &payload));
    sw.pump(&mut [
        a.t.device_mut() as &mut dyn NetPort,
        b.t.device_mut(),
        &mut gw,
    ]);
    b.poll();
    a.poll();
    assert_eq!(b.recv().len(), 1);
    assert!(a.recv().is_empty());
    assert_eq!(gw.stats().ignored, 1);
    let st = sw.stats();
    assert_eq!((st.received, st.flooded, st.unicast), (3, 1, 2));
}

#[test]
fn broadcast_floods_to_all_other_ports() {
    let mut a = Guest::new(MAC_A, 8);
    let mut b = Guest::new(MAC_B, 8);
    let mut gw = Gateway::new(GW_MAC, GW_IP);
    let mut sw = Switch::new(16);
    let f = eth(BROADCAST, MAC_A, 0x88b5, &[1; 46]);
    a.send(&f);
    sw.pump(&mut [
        a.t.device_mut() as &mut dyn NetPort,
        b.t.device_mut(),
        &mut gw,
    ]);
    a.poll();
    b.poll();
    assert_eq!(b.recv(), vec![f]);
    assert!(a.recv().is_empty(), "never sent back to the ingress port");
    assert_eq!(gw.stats().ignored, 1);
    assert_eq!(sw.stats().flooded, 1);
}

#[test]
fn mac_table_is_bounded() {
    struct Sink(u64);
    impl NetPort for Sink {
        fn deliver(&mut self, _: &[u8]) -> bool {
            self.0 += 1;
            true
        }
        fn take_frame(&mut self, _: &mut FrameBuf) -> Option<usize> {
            None
        }
        fn has_frame(&self) -> bool {
            false
        }
    }
    let mut sw = Switch::new(4);
    let (mut p0, mut p1) = (Sink(0), Sink(0));
    for i in 0..10u8 {
        let f = eth(BROADCAST, [2, 0, 0, 0, 0, i], 0x88b5, &[0; 46]);
        sw.forward(0, &f, &mut [&mut p0, &mut p1]);
    }
    assert_eq!(sw.learned(), 4);
    assert_eq!(sw.stats().evicted, 6);
    assert_eq!(sw.lookup(&[2, 0, 0, 0, 0, 9]), Some(0));
    assert_eq!(sw.lookup(&[2, 0, 0, 0, 0, 0]), None);
    // Runts are dropped; multicast sources are not learned.
    sw.forward(1, &[0; 10], &mut [&mut p0, &mut p1]);
    sw.forward(
        1,
        &eth(BROADCAST, BROADCAST, 0x88b5, &[]),
        &mut [&mut p0, &mut p1],
    );
    assert_eq!(sw.lookup(&BROADCAST), None);
    assert_eq!(sw.stats().dropped, 1);
    assert_eq!(p1.0, 10);
}

#[test]
fn frames_without_rx_buffers_are_dropped_and_counted() {
    let mut g = Guest::new(MAC_A, 0);
    let f = eth(MAC_A, MAC_B, 0x88b5, &[7; 46]);
    for _ in 0..RX_BACKLOG + 6 {
        g.t.device_mut().deliver(&f);
    }
    assert!(!g.poll(), "nothing delivered, no interrupt");
    assert_eq!(g.t.device().rx_backlog(), RX_BACKLOG);
    assert_eq!(g.t.device().dropped(), 6);
    assert_eq!(g.t.stats().dropped, 6);
    // Posting buffers (RX notify) delivers from the backlog.
    g.post_rx(16);
    assert_eq!(g.recv().len(), 16);
    assert_eq!(g.t.device().rx_backlog(), RX_BACKLOG - 16);
}

#[test]
fn rx_buffer_too_small_drops_frame() {
    let mut g = Guest::new(MAC_A, 0);
    let a = g.d.alloc(32, 16);
    let head = g.d.add_chain(RX_QUEUE, &[crate::testing::Buf::w(a, 32)]);
    g.t.device_mut()
        .deliver(&eth(MAC_A, MAC_B, 0x88b5, &[7; 46]));
    assert!(g.poll());
    assert_eq!(g.d.pop_used(RX_QUEUE), Some((u32::from(head), 0)));
    assert_eq!(g.t.stats().errors, 1);
    assert_eq!(g.t.device().dropped(), 1);
    assert!(g.t.error().is_none());
}

#[test]
fn malformed_tx_is_dropped() {
    let mut g = Guest::new(MAC_A, 0);
    let a = g.d.alloc_data(&[0; 8]);
    g.d.add_chain(TX_QUEUE, &[crate::testing::Buf::r(a, 8)]);
    // GSO requested without the feature.
    let mut buf = vec![0u8; 12 + 60];
    buf[1] = 1;
    let b = g.d.alloc_data(&buf);
    g.d.add_chain(TX_QUEUE, &[crate::testing::Buf::r(b, 72)]);
    // Oversized frame.
    let c = g.d.alloc(12 + 2000, 16);
    g.d.add_chain(TX_QUEUE, &[crate::testing::Buf::r(c, 2012)]);
    g.d.kick(&mut g.t, TX_QUEUE);
    let mut n = 0;
    while g.d.pop_used(TX_QUEUE).is_some() {
        n += 1;
    }
    assert_eq!(n, 3);
    assert_eq!(g.t.stats().errors, 3);
    assert!(take(g.t.device_mut()).is_none());
    assert_eq!(g.t.status() & status::DEVICE_NEEDS_RESET, 0);
}

#[test]
fn tx_with_header_in_separate_descriptor_and_indirect() {
    let mut g = Guest::new(MAC_A, 0);
    let frame = eth(MAC_B, MAC_A, 0x88b5, &[3; 50]);
    let h = g.d.alloc_data(&[0; 12]);
    let f = g.d.alloc_data(&frame);
    let bufs = [
        crate::testing::Buf::r(h, 12),
        crate::testing::Buf::r(f, frame.len() as u32),
    ];
    g.d.add_chain(TX_QUEUE, &bufs);
    g.d.add_indirect(TX_QUEUE, &bufs);
    g.d.kick(&mut g.t, TX_QUEUE);
    assert_eq!(take(g.t.device_mut()), Some(frame.clone()));
    assert_eq!(take(g.t.device_mut()), Some(frame));
    assert_eq!(g.t.stats().requests, 2);
}

#[test]
fn net_fuzz_smoke() {
    let mut r = Rng(0xdead_beef_cafe_f00d);
    let mut gw = Gateway::new(GW_MAC, GW_IP);
    let mut sw = Switch::new(8);
    for _ in 0..800 {
        let mut t = MmioTransport::new(NetDevice::new(MAC_A));
        let mut d = Driver::new(1 << 16);
        let features = r.next() | feature::VERSION_1;
        if d.setup(&mut t, features, [1u16, 4, 16][r.below(3) as usize])
            .is_err()
        {
            continue;
        }
        for _ in 0..4 {
            let q = r.below(2) as usize;
            scribble(&mut r, &mut d, q);
            d.kick(&mut t, q);
            mmio_noise(&mut r, &mut d, &mut t);
            let len = r.below(1600) as usize;
            let frame: Vec<u8> = (0..len).map(|_| r.next() as u8).collect();
            t.device_mut().deliver(&frame);
            gw.deliver(&frame);
            sw.pump(&mut [t.device_mut() as &mut dyn NetPort, &mut gw]);
            t.poll(&mut d.mem);
        }
    }
}

/// A port that sends `left` numbered frames to `dst` and counts what it receives.
struct Source {
    mac: [u8; 6],
    dst: [u8; 6],
    left: u32,
    sent: u32,
    received: Vec<u32>,
}

impl Source {
    fn new(mac: [u8; 6], dst: [u8; 6], frames: u32) -> Self {
        Source {
            mac,
            dst,
            left: frames,
            sent: 0,
            received: Vec::new(),
        }
    }
}

impl NetPort for Source {
    fn deliver(&mut self, frame: &[u8]) -> bool {
        let seq = u32::from_be_bytes(frame[14..18].try_into().unwrap());
        self.received.push(seq);
        true
    }
    fn take_frame(&mut self, buf: &mut FrameBuf) -> Option<usize> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let f = eth(self.dst, self.mac, 0x88b5, &self.sent.to_be_bytes());
        self.sent += 1;
        buf[..f.len()].copy_from_slice(&f);
        Some(f.len())
    }
    fn has_frame(&self) -> bool {
        self.left > 0
    }
}

/// One pump moves at most MAX_FRAMES_PER_PUMP frames, round robin between ports, and says
/// whether frames are left; the rest follow in order in later pumps.
#[test]
fn pump_is_bounded_and_round_robin() {
    use crate::switch::MAX_FRAMES_PER_PUMP;
    assert_eq!(MAX_FRAMES_PER_PUMP, 64);
    let mut a = Source::new(MAC_A, MAC_B, 100);
    let mut b = Source::new(MAC_B, MAC_A, 100);
    let mut sink = Source::new(GW_MAC, GW_MAC, 0);
    let mut sw = Switch::new(16);
    let out = sw.pump(&mut [&mut a, &mut b, &mut sink]);
    assert_eq!((out.frames, out.more), (64, true));
    assert_eq!((a.sent, b.sent), (32, 32), "one frame per port per round");
    let mut rounds = vec![out.frames];
    loop {
        let out = sw.pump(&mut [&mut a, &mut b, &mut sink]);
        rounds.push(out.frames);
        if !out.more {
            break;
        }
    }
    assert_eq!(rounds, [64, 64, 64, 8]);
    assert_eq!(sw.pump(&mut [&mut a, &mut b, &mut sink]).frames, 0);
    // Every frame arrived, in order (B's first frame was flooded before A was learned).
    assert_eq!(b.received, (0..100).collect::<Vec<_>>());
    assert_eq!(a.received, (0..100).collect::<Vec<_>>());
    assert_eq!(sw.stats().received, 200);
}

/// A guest sending 100 frames in one batch with nobody draining its TX queue: 64 are kept
/// (TX_BACKLOG), 36 dropped and counted; every buffer is returned to the driver.
#[test]
fn tx_backlog_full_drops_and_counts() {
    assert_eq!(TX_BACKLOG, 64);
    let mut t = MmioTransport::new(NetDevice::new(MAC_A));
    let mut d = Driver::new(1 << 20);
    d.setup(&mut t, ALL_FEATURES, 256).unwrap();
    for i in 0..100u8 {
        d.net_tx(TX_QUEUE, &eth(MAC_B, MAC_A, 0x88b5, &[i; 46]));
    }
    let e = d.kick(&mut t, TX_QUEUE);
    assert!(e.more, "32 per call");
    assert_eq!(t.device().tx_backlog(), 32);
    while t.has_kicks() {
        t.poll(&mut d.mem);
    }
    let mut returned = 0;
    while d.pop_used(TX_QUEUE).is_some() {
        returned += 1;
    }
    assert_eq!(returned, 100);
    assert_eq!(t.device().tx_backlog(), TX_BACKLOG);
    assert_eq!(t.device().dropped(), 36);
    let st = t.stats();
    assert_eq!((st.dropped, st.errors, st.requests), (36, 0, 100));
    // The kept frames are the first 64, in order.
    assert_eq!(
        take(t.device_mut()),
        Some(eth(MAC_B, MAC_A, 0x88b5, &[0; 46]))
    );
}

/// The gateway queues at most GATEWAY_BACKLOG replies; the rest are dropped and counted.
#[test]
fn gateway_backlog_is_bounded() {
    use crate::switch::GATEWAY_BACKLOG;
    let mut gw = Gateway::new(GW_MAC, GW_IP);
    for _ in 0..GATEWAY_BACKLOG + 8 {
        gw.deliver(&arp_request(MAC_A, IP_A, GW_IP));
    }
    assert!(!gw.deliver(&arp_request(MAC_A, IP_A, GW_IP)));
    assert!(
        gw.deliver(&eth(GW_MAC, MAC_A, 0x88b5, &[0; 46])),
        "ignored, not dropped"
    );
    let st = gw.stats();
    assert_eq!((st.arp_replies, st.dropped, st.ignored), (41, 9, 1));
    let mut n = 0;
    while take(&mut gw).is_some() {
        n += 1;
    }
    assert_eq!(n, GATEWAY_BACKLOG);
    // Padding past the IP total length is not echoed: the reply fits a frame even when the
    // request (delivered directly, not through a NIC) is longer than MAX_FRAME.
    let mut big = echo_request(MAC_A, GW_MAC, IP_A, GW_IP, 1);
    let request_len = big.len();
    big.resize(MAX_FRAME + 100, 0);
    assert!(gw.deliver(&big));
    assert_eq!(take(&mut gw).map(|f| f.len()), Some(request_len));
}

/// The hypervisor's way to pump: a PortSet over its own device list (no per-call Vec of
/// ports). Guest A pings the gateway through it.
#[test]
fn port_set_over_the_hypervisors_devices() {
    use crate::switch::PortSet;
    struct Vm<'a> {
        nics: &'a mut [Net],
        gateway: &'a mut Gateway,
    }
    impl PortSet for Vm<'_> {
        fn len(&self) -> usize {
            self.nics.len() + 1
        }
        fn port(&mut self, i: usize) -> Option<&mut dyn NetPort> {
            if i == self.nics.len() {
                return Some(self.gateway);
            }
            self.nics
                .get_mut(i)
                .map(|t| t.device_mut() as &mut dyn NetPort)
        }
        fn port_ref(&self, i: usize) -> Option<&dyn NetPort> {
            if i == self.nics.len() {
                return Some(&*self.gateway);
            }
            self.nics.get(i).map(|t| t.device() as &dyn NetPort)
        }
    }
    let mut g = Guest::new(MAC_A, 8);
    let mut gw = Gateway::new(GW_MAC, GW_IP);
    let mut sw = Switch::new(16);
    g.d.net_tx(TX_QUEUE, &echo_request(MAC_A, GW_MAC, IP_A, GW_IP, 3));
    g.d.kick(&mut g.t, TX_QUEUE);
    let Guest { d, t, rx } = g;
    let mut nics = [t];
    let out = sw.pump_set(&mut Vm {
        nics: &mut nics,
        gateway: &mut gw,
    });
    assert_eq!((out.frames, out.more), (2, false), "request and reply");
    let [t] = nics;
    let mut g = Guest { d, t, rx };
    assert!(g.poll());
    let frames = g.recv();
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0][34], 0, "ICMP echo reply");
    assert_eq!(gw.stats().echo_replies, 1);
}
