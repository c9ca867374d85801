//! virtio-net, switch and gateway end-to-end tests (virtio 1.2 §5.1).

use super::fuzz_smoke::{mmio_noise, scribble, Rng};
use super::*;
use crate::frames::MAX_FRAME;
use crate::net::{NetDevice, NET_HDR_LEN, RX_BACKLOG, RX_QUEUE, TX_BACKLOG, TX_QUEUE};
use crate::spec::{interrupt, net_status, status, Register};
use crate::switch::{
    internet_checksum, Gateway, NetPort, PortId, PortKind, Switch, SwitchConfig, BROADCAST,
    MAX_FRAMES_PER_PUMP,
};

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

/// A network with a gateway (port 0) and a port per guest MAC (ports 1..).
fn network(macs: &[[u8; 6]]) -> (Switch, Vec<PortId>) {
    let mut sw = Switch::new(SwitchConfig::new(8, 1_000_000_000));
    assert_eq!(sw.add_gateway(GW_MAC, GW_IP), Ok(PortId(0)));
    let ports = macs
        .iter()
        .map(|&mac| sw.add_port(PortKind::Guest { mac }).unwrap())
        .collect();
    (sw, ports)
}

/// The hypervisor's round for one guest: what it sent goes through the switch (in place),
/// then its RX buffers are filled from its port's queue, lent to the device. Returns
/// whether the device asked for an interrupt.
fn exchange(sw: &mut Switch, port: PortId, g: &mut Guest) -> bool {
    sw.send_from(port, g.t.device_mut().tx_ring_mut(), 0);
    assert!(sw.swap_queue(port, g.t.device_mut().rx_ring_mut()));
    let irq = g.poll();
    assert!(sw.swap_queue(port, g.t.device_mut().rx_ring_mut()));
    irq
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
    let (mut sw, ports) = network(&[MAC_A]);
    g.send(&arp_request(MAC_A, IP_A, GW_IP));
    assert!(
        exchange(&mut sw, ports[0], &mut g),
        "RX completion interrupts"
    );
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
    assert_eq!(sw.gateway_stats().unwrap().arp_replies, 1);
    // ARP for another address is ignored.
    g.send(&arp_request(MAC_A, IP_A, [10, 0, 2, 3]));
    exchange(&mut sw, ports[0], &mut g);
    assert!(g.recv().is_empty());
    assert_eq!(sw.gateway_stats().unwrap().ignored, 1);
}

#[test]
fn ping_gateway_gets_echo_reply_with_valid_checksums() {
    let mut g = Guest::new(MAC_A, 8);
    let (mut sw, ports) = network(&[MAC_A]);
    let req = echo_request(MAC_A, GW_MAC, IP_A, GW_IP, 7);
    g.send(&req);
    assert!(exchange(&mut sw, ports[0], &mut g));
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
    assert_eq!(sw.gateway_stats().unwrap().echo_replies, 1);
    // A corrupted checksum gets no reply.
    let mut bad = echo_request(MAC_A, GW_MAC, IP_A, GW_IP, 8);
    bad[40] ^= 1;
    g.send(&bad);
    exchange(&mut sw, ports[0], &mut g);
    assert!(g.recv().is_empty());
    let st = g.t.stats();
    assert_eq!(st.errors, 0);
    assert!(st.bytes_read > 0 && st.bytes_written > 0);
}

/// Two guests on one network: a frame for an unknown address is flooded (to B and the
/// gateway), one for B's address goes to B only; a forged source is dropped and counted.
#[test]
fn guests_on_one_network_exchange_frames() {
    let mut a = Guest::new(MAC_A, 8);
    let mut b = Guest::new(MAC_B, 8);
    let (mut sw, ports) = network(&[MAC_A, MAC_B]);
    let payload = [0x42; 46];
    let other = [0x52, 0x54, 0, 0, 0, 0x0c];
    a.send(&eth(other, MAC_A, 0x88b5, &payload));
    exchange(&mut sw, ports[0], &mut a);
    exchange(&mut sw, ports[1], &mut b);
    assert_eq!(b.recv(), vec![eth(other, MAC_A, 0x88b5, &payload)]);
    assert_eq!(sw.gateway_stats().unwrap().ignored, 1);
    // To B's own (static) address: B only.
    a.send(&eth(MAC_B, MAC_A, 0x88b5, &payload));
    exchange(&mut sw, ports[0], &mut a);
    exchange(&mut sw, ports[1], &mut b);
    assert_eq!(b.recv(), vec![eth(MAC_B, MAC_A, 0x88b5, &payload)]);
    assert_eq!(sw.gateway_stats().unwrap().ignored, 1);
    // B answers A.
    b.send(&eth(MAC_A, MAC_B, 0x88b5, &payload));
    exchange(&mut sw, ports[1], &mut b);
    exchange(&mut sw, ports[0], &mut a);
    assert_eq!(a.recv(), vec![eth(MAC_A, MAC_B, 0x88b5, &payload)]);
    // A forging B's address reaches nobody.
    a.send(&eth(MAC_B, MAC_B, 0x88b5, &payload));
    a.send(&eth(BROADCAST, other, 0x88b5, &payload));
    exchange(&mut sw, ports[0], &mut a);
    exchange(&mut sw, ports[1], &mut b);
    assert!(b.recv().is_empty());
    let st = sw.stats();
    assert_eq!((st.received, st.flooded, st.unicast), (5, 1, 2));
    let pa = sw.port_stats(ports[0]).unwrap();
    assert_eq!(
        (pa.ingress_frames, pa.egress_frames, pa.drops.spoofed),
        (4, 1, 2)
    );
    assert_eq!(pa.ingress_bytes, 4 * 60);
    let pb = sw.port_stats(ports[1]).unwrap();
    assert_eq!(
        (pb.ingress_frames, pb.egress_frames, pb.egress_bytes),
        (1, 2, 120)
    );
    assert_eq!(sw.port_stats(PortId(0)).unwrap().egress_frames, 1);
}

#[test]
fn broadcast_floods_to_all_other_ports() {
    let mut a = Guest::new(MAC_A, 8);
    let mut b = Guest::new(MAC_B, 8);
    let (mut sw, ports) = network(&[MAC_A, MAC_B]);
    let f = eth(BROADCAST, MAC_A, 0x88b5, &[1; 46]);
    a.send(&f);
    exchange(&mut sw, ports[0], &mut a);
    exchange(&mut sw, ports[1], &mut b);
    assert_eq!(b.recv(), vec![f]);
    assert!(a.recv().is_empty(), "never sent back to the ingress port");
    assert_eq!(sw.gateway_stats().unwrap().ignored, 1);
    assert_eq!(sw.stats().flooded, 1);
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
    let (mut sw, ports) = network(&[MAC_A]);
    let uplink = sw.add_port(PortKind::Uplink).unwrap();
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
            sw.ingress(uplink, &frame, r.next() % (1 << 40));
            sw.send_from(ports[0], t.device_mut().tx_ring_mut(), r.next() % (1 << 40));
            sw.swap_queue(ports[0], t.device_mut().rx_ring_mut());
            t.poll(&mut d.mem);
            sw.swap_queue(ports[0], t.device_mut().rx_ring_mut());
        }
    }
}

/// One call takes at most MAX_FRAMES_PER_PUMP frames from a sender and says whether frames
/// are left; the rest follow, in order, in later calls.
#[test]
fn send_is_bounded_per_call() {
    assert_eq!(MAX_FRAMES_PER_PUMP, 64);
    let (mut sw, ports) = network(&[MAC_A, MAC_B]);
    let mut ring = crate::frames::FrameRing::new(100);
    for i in 0..100u32 {
        assert!(ring.push(&eth(MAC_B, MAC_A, 0x88b5, &i.to_be_bytes())));
    }
    let mut rounds = Vec::new();
    let mut received = Vec::new();
    loop {
        let out = sw.send_from(ports[0], &mut ring, 0);
        rounds.push((out.frames, out.more));
        let q = sw.queue_mut(ports[1]).unwrap();
        while let Some(f) = q.front() {
            received.push(u32::from_be_bytes(f[14..18].try_into().unwrap()));
            q.pop();
        }
        if !out.more {
            break;
        }
    }
    assert_eq!(rounds, [(64, true), (36, false)]);
    assert_eq!(received, (0..100).collect::<Vec<_>>());
    assert_eq!(sw.stats().unicast, 100);
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
