//! Host tests of the switch alone: learning, aging, the table bound, flood limits, spoofing,
//! per-port counters. (Guests through virtio-net are in `crate::tests::net`.)

use super::*;
use alloc::vec;
use alloc::vec::Vec;

const HZ: u64 = 1_000_000;
const A: Mac = [0x52, 0x54, 0, 0, 0, 0x0a];
const B: Mac = [0x52, 0x54, 0, 0, 0, 0x0b];
const GW: Mac = [0x02, 0, 0, 0, 0, 1];

fn eth(dst: Mac, src: Mac, n: u8) -> Vec<u8> {
    let mut f = vec![0u8; 60];
    f[..6].copy_from_slice(&dst);
    f[6..12].copy_from_slice(&src);
    f[12..14].copy_from_slice(&0x88b5u16.to_be_bytes());
    f[14] = n;
    f
}

fn host(i: u16) -> Mac {
    let [hi, lo] = i.to_be_bytes();
    [0x02, 0xee, 0, 0, hi, lo]
}

/// Guests A and B (ports 0, 1) and an uplink (port 2).
fn three(config: SwitchConfig) -> Switch {
    let mut sw = Switch::new(config);
    assert_eq!(sw.add_port(PortKind::Guest { mac: A }), Ok(PortId(0)));
    assert_eq!(sw.add_port(PortKind::Guest { mac: B }), Ok(PortId(1)));
    assert_eq!(sw.add_port(PortKind::Uplink), Ok(PortId(2)));
    sw
}

fn drain(sw: &mut Switch, p: usize) -> Vec<Vec<u8>> {
    let q = sw.queue_mut(PortId(p)).unwrap();
    let mut out = Vec::new();
    while let Some(f) = q.front() {
        out.push(f.to_vec());
        q.pop();
    }
    out
}

/// Every frame is counted once: forwarded (unicast or flooded) or dropped on its ingress.
fn conserved(sw: &Switch) {
    let dropped: u64 = (0..sw.port_count())
        .map(|p| sw.port_stats(PortId(p)).unwrap().drops.ingress_total())
        .sum();
    let st = sw.stats();
    assert_eq!(st.received, st.unicast + st.flooded + dropped);
}

#[test]
fn uplink_sources_are_learned_then_unicast() {
    let mut sw = three(SwitchConfig::new(4, HZ));
    let h = host(1);
    // A to an unknown host: flooded to B and the uplink.
    sw.ingress(PortId(0), &eth(h, A, 1), 10);
    assert_eq!(drain(&mut sw, 1), [eth(h, A, 1)]);
    assert_eq!(drain(&mut sw, 2), [eth(h, A, 1)]);
    // The host answers from the uplink: learned there; A's address is static.
    sw.ingress(PortId(2), &eth(A, h, 2), 20);
    assert_eq!(sw.lookup(&h, 20), Some(PortId(2)));
    assert_eq!(drain(&mut sw, 0), [eth(A, h, 2)]);
    assert!(drain(&mut sw, 1).is_empty());
    // Now A -> host is unicast to the uplink only.
    sw.ingress(PortId(0), &eth(h, A, 3), 30);
    assert!(drain(&mut sw, 1).is_empty());
    assert_eq!(drain(&mut sw, 2), [eth(h, A, 3)]);
    let st = sw.stats();
    assert_eq!((st.received, st.unicast, st.flooded), (3, 2, 1));
    assert_eq!(sw.learned(), 1);
    conserved(&sw);
}

#[test]
fn learned_entries_age_out() {
    let mut config = SwitchConfig::new(4, HZ);
    config.aging_ticks = 1000;
    let mut sw = three(config);
    let h = host(7);
    sw.ingress(PortId(2), &eth(A, h, 0), 100);
    assert_eq!(
        sw.lookup(&h, 1100),
        Some(PortId(2)),
        "still live at the limit"
    );
    assert_eq!(sw.lookup(&h, 1101), None, "aged out");
    // Aged: a frame for it is flooded again (B sees it).
    sw.ingress(PortId(0), &eth(h, A, 1), 1101);
    assert_eq!(drain(&mut sw, 1).len(), 1);
    // Refreshing keeps it.
    sw.ingress(PortId(2), &eth(A, h, 2), 2000);
    assert_eq!(sw.lookup(&h, 2900), Some(PortId(2)));
    // Guests' addresses are static and never age.
    assert_eq!(sw.lookup(&A, u64::MAX), Some(PortId(0)));
}

#[test]
fn mac_table_is_bounded_and_reuses_the_oldest() {
    let mut config = SwitchConfig::new(4, HZ);
    config.mac_capacity = 4;
    config.aging_ticks = 1000;
    config.flood.burst = 1000;
    let mut sw = three(config);
    for i in 0..10u16 {
        sw.ingress(PortId(2), &eth(A, host(i), 0), u64::from(i));
    }
    assert_eq!(sw.learned(), 4);
    assert_eq!(sw.stats().evicted, 6);
    assert_eq!(sw.lookup(&host(9), 10), Some(PortId(2)));
    assert_eq!(sw.lookup(&host(5), 10), None, "evicted");
    // Past the ageing time the oldest slot is reused as aged, not evicted.
    sw.ingress(PortId(2), &eth(A, host(100), 0), 5000);
    assert_eq!(sw.stats().aged, 1);
    assert_eq!(sw.learned(), 4);
    // A table full of outside addresses never pushes out a guest's.
    assert_eq!(sw.lookup(&B, 5000), Some(PortId(1)));
    sw.ingress(PortId(0), &eth(B, A, 1), 5000);
    assert_eq!(drain(&mut sw, 1).len(), 1);
    assert_eq!(drain(&mut sw, 2).len(), 0, "unicast, not flooded");
    conserved(&sw);
}

#[test]
fn spoofed_sources_are_dropped_and_counted() {
    let mut sw = three(SwitchConfig::new(4, HZ));
    // A guest sending from B's address, from an invented one, from a group address.
    sw.ingress(PortId(0), &eth(BROADCAST, B, 0), 0);
    sw.ingress(PortId(0), &eth(B, host(1), 0), 0);
    sw.ingress(PortId(0), &eth(B, [0x01, 0, 0x5e, 0, 0, 1], 0), 0);
    // The uplink claiming a guest's address (table poisoning).
    sw.ingress(PortId(2), &eth(BROADCAST, A, 0), 0);
    assert!(drain(&mut sw, 1).is_empty());
    assert!(drain(&mut sw, 0).is_empty());
    assert_eq!(sw.lookup(&A, 0), Some(PortId(0)), "A stays on its port");
    let a = sw.port_stats(PortId(0)).unwrap();
    assert_eq!(
        a.drops,
        Drops {
            malformed: 1,
            spoofed: 2,
            ..Drops::default()
        }
    );
    assert_eq!((a.ingress_frames, a.ingress_bytes), (3, 180));
    assert_eq!(sw.port_stats(PortId(2)).unwrap().drops.spoofed, 1);
    assert_eq!(sw.learned(), 0);
    conserved(&sw);
}

#[test]
fn malformed_and_filtered_frames() {
    let mut sw = three(SwitchConfig::new(4, HZ));
    sw.ingress(PortId(0), &[0; 13], 0);
    sw.ingress(PortId(0), &[0; MAX_FRAME + 1], 0);
    // To its own address: filtered, not reflected.
    sw.ingress(PortId(0), &eth(A, A, 0), 0);
    let d = sw.port_stats(PortId(0)).unwrap().drops;
    assert_eq!((d.malformed, d.filtered), (2, 1));
    assert!(drain(&mut sw, 0).is_empty());
    conserved(&sw);
}

#[test]
fn flooding_is_bounded_per_port_in_tsc_time() {
    let mut config = SwitchConfig::new(4, HZ);
    config.flood = FloodLimit {
        frames_per_second: 100,
        burst: 4,
    };
    config.queue_frames = 256;
    let mut sw = three(config);
    // A floods 10 broadcasts at t=0: the burst of 4 passes.
    for i in 0..10 {
        sw.ingress(PortId(0), &eth(BROADCAST, A, i), 0);
    }
    assert_eq!(drain(&mut sw, 1).len(), 4);
    assert_eq!(sw.port_stats(PortId(0)).unwrap().drops.flood_limited, 6);
    // 100 per second = one per 10,000 ticks: 25,000 ticks later, 2 more.
    for i in 0..5 {
        sw.ingress(PortId(0), &eth(BROADCAST, A, i), 25_000);
    }
    assert_eq!(drain(&mut sw, 1).len(), 2);
    // B's budget is its own: its broadcasts and A's unicast still pass.
    sw.ingress(PortId(1), &eth(BROADCAST, B, 0), 25_000);
    sw.ingress(PortId(0), &eth(B, A, 0), 25_000);
    assert_eq!(drain(&mut sw, 0).len(), 1);
    assert_eq!(drain(&mut sw, 1).len(), 1);
    let st = sw.port_stats(PortId(0)).unwrap();
    assert_eq!((st.drops.flood_limited, st.ingress_frames), (9, 16));
    // Time going backwards (another CPU's TSC) earns nothing.
    let mut bucket = TokenBucket::new(
        FloodLimit {
            frames_per_second: 1,
            burst: 1,
        },
        HZ,
    );
    assert!(bucket.take(5 * HZ));
    assert!(!bucket.take(HZ));
    assert!(!bucket.take(5 * HZ + HZ - 1));
    assert!(bucket.take(6 * HZ));
    conserved(&sw);
}

#[test]
fn full_queues_drop_at_the_receiver() {
    let mut config = SwitchConfig::new(4, HZ);
    config.queue_frames = 2;
    let mut sw = three(config);
    for i in 0..5 {
        sw.ingress(PortId(0), &eth(B, A, i), 0);
    }
    assert_eq!(sw.queued(PortId(1)), 2);
    let b = sw.port_stats(PortId(1)).unwrap();
    assert_eq!((b.egress_frames, b.drops.queue_full), (2, 3));
    assert_eq!(drain(&mut sw, 1), [eth(B, A, 0), eth(B, A, 1)]);
    // The swap refuses a ring of another size.
    let mut other = FrameRing::new(3);
    assert!(!sw.swap_queue(PortId(1), &mut other));
    let mut same = FrameRing::new(2);
    assert!(same.push(&eth(B, A, 9)));
    assert!(sw.swap_queue(PortId(1), &mut same));
    assert_eq!(drain(&mut sw, 1), [eth(B, A, 9)]);
    conserved(&sw);
}

#[test]
fn ports_are_bounded_and_macs_unique() {
    let mut sw = Switch::new(SwitchConfig::new(3, HZ));
    assert_eq!(sw.add_gateway(GW, [10, 0, 0, 1]), Ok(PortId(0)));
    assert_eq!(
        sw.add_gateway(GW, [10, 0, 0, 1]),
        Err(SwitchError::SecondGateway)
    );
    assert_eq!(
        sw.add_port(PortKind::Gateway { mac: B }),
        Err(SwitchError::SecondGateway)
    );
    assert_eq!(
        sw.add_port(PortKind::Guest { mac: GW }),
        Err(SwitchError::DuplicateMac { mac: GW, port: 0 })
    );
    assert_eq!(sw.add_port(PortKind::Guest { mac: A }), Ok(PortId(1)));
    assert_eq!(sw.add_port(PortKind::Uplink), Ok(PortId(2)));
    assert_eq!(
        sw.add_port(PortKind::Uplink),
        Err(SwitchError::TooManyPorts { max: 3 })
    );
    assert_eq!(
        SwitchError::DuplicateMac { mac: A, port: 1 }.to_string(),
        "MAC 52:54:00:00:00:0a is already used by port 1 of this network; give each \
         virtio-net device on a network its own mac"
    );
    assert_eq!(sw.port_kind(PortId(1)), Some(PortKind::Guest { mac: A }));
    assert_eq!(
        Switch::heap_bytes(sw.config()) + 2 * Switch::port_bytes(sw.config()),
        3 * core::mem::size_of::<port::Port>()
            + table::MacTable::heap_bytes(256, 3)
            + 2 * 64 * (MAX_FRAME + 2)
    );
}

#[test]
fn gateway_answers_through_the_switch() {
    let mut sw = Switch::new(SwitchConfig::new(3, HZ));
    sw.add_gateway(GW, [10, 0, 0, 1]).unwrap();
    sw.add_port(PortKind::Guest { mac: A }).unwrap();
    let mut arp = eth(BROADCAST, A, 0);
    arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
    arp[14..22].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    arp[22..28].copy_from_slice(&A);
    arp[28..32].copy_from_slice(&[10, 0, 0, 2]);
    arp[38..42].copy_from_slice(&[10, 0, 0, 1]);
    let mut ring = FrameRing::new(4);
    assert!(ring.push(&arp));
    let out = sw.send_from(PortId(1), &mut ring, 0);
    assert_eq!((out.frames, out.more), (1, false));
    let replies = drain(&mut sw, 1);
    assert_eq!(replies.len(), 1);
    assert_eq!(&replies[0][..6], &A);
    assert_eq!(&replies[0][6..12], &GW);
    assert_eq!(&replies[0][20..22], &[0, 2], "ARP reply");
    assert_eq!(sw.gateway_stats().unwrap().arp_replies, 1);
    let g = sw.port_stats(PortId(0)).unwrap();
    assert_eq!((g.ingress_frames, g.egress_frames), (1, 1));
    conserved(&sw);
}

/// Flooded frames use at most half a port's queue: a broadcast storm another port is allowed
/// leaves room for unicast.
#[test]
fn flooded_frames_leave_half_the_queue_to_unicast() {
    let mut config = SwitchConfig::new(4, HZ);
    config.queue_frames = 8;
    config.flood.burst = 100;
    let mut sw = three(config);
    for i in 0..10 {
        sw.ingress(PortId(2), &eth(BROADCAST, host(1), i), 0);
    }
    assert_eq!(sw.queued(PortId(1)), 4, "half of 8");
    assert_eq!(sw.port_stats(PortId(1)).unwrap().drops.queue_full, 6);
    for i in 0..5 {
        sw.ingress(PortId(0), &eth(B, A, i), 0);
    }
    assert_eq!(sw.queued(PortId(1)), 8, "unicast fills the rest");
    let b = sw.port_stats(PortId(1)).unwrap();
    assert_eq!((b.egress_frames, b.drops.queue_full), (8, 7));
    assert_eq!(
        FloodLimit::DEFAULT,
        FloodLimit {
            frames_per_second: 100,
            burst: 32
        }
    );
    conserved(&sw);
}

#[test]
fn a_detached_guest_port_drops_its_frames_and_is_taken_again_by_its_mac() {
    let mut sw = three(SwitchConfig::new(3, HZ));
    // B's VM stops for a restart with a frame queued for it.
    sw.ingress(PortId(0), &eth(B, A, 1), 10);
    assert_eq!(sw.queued(PortId(1)), 1);
    assert!(sw.detach_port(PortId(1)));
    assert!(sw.is_detached(PortId(1)));
    assert_eq!(sw.queued(PortId(1)), 0);
    // Frames for it meanwhile are dropped at the receiver; its MAC stays pinned to it.
    sw.ingress(PortId(0), &eth(B, A, 2), 20);
    assert_eq!(sw.queued(PortId(1)), 0);
    assert_eq!(sw.port_stats(PortId(1)).unwrap().drops.queue_full, 1);
    assert_eq!(
        sw.add_port(PortKind::Guest { mac: B }),
        Ok(PortId(1)),
        "the restarted VM takes its old port (the switch is full: no new one)"
    );
    assert!(!sw.is_detached(PortId(1)));
    sw.ingress(PortId(0), &eth(B, A, 3), 30);
    assert_eq!(drain(&mut sw, 1), vec![eth(B, A, 3)]);
    // Only guest ports detach; a second guest with another MAC finds no room.
    assert!(!sw.detach_port(PortId(2)));
    assert!(!sw.detach_port(PortId(9)));
    assert_eq!(
        sw.add_port(PortKind::Guest { mac: host(7) }),
        Err(SwitchError::TooManyPorts { max: 3 })
    );
    conserved(&sw);
}
