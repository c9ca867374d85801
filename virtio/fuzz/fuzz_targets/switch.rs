//! Fuzzes frames into a network's switch: three guest ports, a gateway and an uplink, small
//! queues, a small MAC table with short ageing and a tight flood limit. The input picks the
//! ingress port, the time step and the frame (often with a guest's or a learned address so
//! the interesting paths are reached). Nothing may panic; every frame is counted exactly
//! once (forwarded or dropped on its ingress port); queues and the table stay bounded; a
//! frame carrying a guest's source address is only ever queued if that guest sent it.
//!
//! Run with `cargo fuzz run switch` from `virtio/`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use virtio::switch::{FloodLimit, Mac, BROADCAST};
use virtio::{FrameRing, PortId, PortKind, Switch, SwitchConfig};

const GUESTS: [Mac; 3] = [
    [0x52, 0x54, 0, 0, 0, 1],
    [0x52, 0x54, 0, 0, 0, 2],
    [0x52, 0x54, 0, 0, 0, 3],
];
const GATEWAY: Mac = [0x02, 0, 0, 0, 0, 1];
const QUEUE: usize = 4;
const TABLE: usize = 4;

fn mac(sel: u8, tail: u8) -> Mac {
    match sel % 6 {
        0..=2 => GUESTS[usize::from(sel % 6)],
        3 => GATEWAY,
        4 => BROADCAST,
        _ => [tail & 0xfe, 0xee, 0, 0, 0, tail],
    }
}

fuzz_target!(|data: &[u8]| {
    let mut config = SwitchConfig::new(5, 1000);
    config.queue_frames = QUEUE;
    config.mac_capacity = TABLE;
    config.aging_ticks = 50;
    config.flood = FloodLimit {
        frames_per_second: 100,
        burst: 3,
    };
    let mut sw = Switch::new(config);
    sw.add_gateway(GATEWAY, [10, 0, 0, 1]).unwrap();
    let guests: Vec<PortId> = GUESTS
        .iter()
        .map(|&mac| sw.add_port(PortKind::Guest { mac }).unwrap())
        .collect();
    let uplink = sw.add_port(PortKind::Uplink).unwrap();
    let mut tx = FrameRing::new(QUEUE);
    let mut now = 0u64;
    let mut input = data;
    while let [op, step, dsel, ssel, len, rest @ ..] = input {
        let n = usize::from(*len) * 7 % 1600;
        let (body, rest) = rest.split_at(n.min(rest.len()));
        input = rest;
        now += u64::from(*step);
        let mut frame = Vec::with_capacity(12 + body.len());
        frame.extend_from_slice(&mac(*dsel, *ssel));
        frame.extend_from_slice(&mac(*ssel, *dsel));
        frame.extend_from_slice(body);
        frame.truncate(n.max(usize::from(*op & 0x0f)));
        let src = match op >> 4 {
            0..=3 => uplink,
            k => guests[usize::from(k) % 3],
        };
        if op & 0x10 != 0 {
            tx.push(&frame);
            sw.send_from(src, &mut tx, now);
            tx.clear();
        } else {
            sw.ingress(src, &frame, now);
        }
        // Check and drain every queue: bounded, and a guest's source only from that guest.
        for p in 0..sw.port_count() {
            let id = PortId(p);
            assert!(sw.queued(id) <= QUEUE);
            let Some(q) = sw.queue_mut(id) else { continue };
            while let Some(f) = q.front() {
                assert!((14..=virtio::MAX_FRAME).contains(&f.len()));
                let s: Mac = f[6..12].try_into().unwrap();
                if let Some(g) = GUESTS.iter().position(|m| *m == s) {
                    assert_eq!(src, guests[g], "a guest's address from another port");
                }
                q.pop();
            }
        }
        assert!(sw.learned() <= TABLE);
    }
    let dropped: u64 = (0..sw.port_count())
        .map(|p| sw.port_stats(PortId(p)).unwrap().drops.ingress_total())
        .sum();
    let st = sw.stats();
    assert_eq!(st.received, st.unicast + st.flooded + dropped);
});
