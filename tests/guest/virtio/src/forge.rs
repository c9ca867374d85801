//! Forging mode (a VM whose virtio-net MAC starts with [`FORGE_PREFIX`]): the guest attacks
//! its network instead of running the checks. It sends frames from addresses that are not
//! its own (ARP replies claiming the two victims' addresses for the victims' IPs, unicast
//! frames to one victim "from" the other, [`TABLE_FILL`] invented sources to fill the MAC
//! table), then a burst of broadcasts from its own address; then, for [`ROUNDS`] rounds of
//! about 110 ms each (while the victims boot, ping and move data), [`ROUND_BROADCASTS`]
//! broadcasts and [`ROUND_SPOOFS`] forged frames per round. It reports how many of each it
//! sent. The hypervisor must drop and count every forged frame (`drop-spoofed` on its
//! port) and cut the broadcast storm (`drop-flood`), while the victims keep talking.

use crate::irq;
use crate::net::Client;
use guest_rt::report::fail;
use guest_rt::say;

/// MACs `52:54:00:f0:xx:xx` select forging mode.
pub const FORGE_PREFIX: [u8; 4] = [0x52, 0x54, 0x00, 0xf0];
/// The victims (tests/tests/net.rs: the two Linux VMs on the shared network).
const VICTIM_A: [u8; 6] = [0x52, 0x54, 0, 0, 0, 0x0a];
const VICTIM_B: [u8; 6] = [0x52, 0x54, 0, 0, 0, 0x0b];
const IP_A: [u8; 4] = [192, 0, 2, 10];
const IP_B: [u8; 4] = [192, 0, 2, 11];
/// Forged ARP replies and forged unicast frames, each.
const POISON: u32 = 100;
/// Invented source addresses.
const TABLE_FILL: u32 = 300;
/// Broadcasts from the guest's own address, back to back.
const STORM: u32 = 500;
/// The sustained phase: rounds, and what each sends before sleeping two PIT periods.
const ROUNDS: u32 = 60;
const ROUND_BROADCASTS: u32 = 100;
const ROUND_SPOOFS: u32 = 2;
/// PIT expiries (about 55 ms each) slept between rounds.
const ROUND_SLEEP: u64 = 2;
/// IEEE 802 local experimental ethertype 1 (IEEE Std 802-2014 §9.2.4).
const ETH_EXPERIMENTAL: u16 = 0x88b5;

/// The MAC in the virtio-net config space at `base` (virtio 1.2 §4.2.2: config at 0x100,
/// §5.1.4: mac first), read without initialising the device.
pub fn mac_at(base: u64) -> [u8; 6] {
    let mut mac = [0u8; 6];
    for (i, b) in mac.iter_mut().enumerate() {
        // SAFETY: the virtio-mmio window at `base` is mapped by the hypervisor for this VM;
        // a byte read of the device configuration has no side effect.
        *b = unsafe { core::ptr::read_volatile((base + 0x100 + i as u64) as *const u8) };
    }
    mac
}

fn frame(dst: [u8; 6], src: [u8; 6], ethertype: u16) -> [u8; 60] {
    let mut f = [0u8; 60];
    f[0..6].copy_from_slice(&dst);
    f[6..12].copy_from_slice(&src);
    f[12..14].copy_from_slice(&ethertype.to_be_bytes());
    f
}

/// RFC 826 reply "`ip` is at `mac`" sent to `to`.
fn arp_claim(to: [u8; 6], mac: [u8; 6], ip: [u8; 4], to_ip: [u8; 4]) -> [u8; 60] {
    let mut f = frame(to, mac, 0x0806);
    let a = &mut f[14..42];
    a[0..8].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 2]);
    a[8..14].copy_from_slice(&mac);
    a[14..18].copy_from_slice(&ip);
    a[18..24].copy_from_slice(&to);
    a[24..28].copy_from_slice(&to_ip);
    f
}

pub fn run(c: &mut Client) {
    let me = c.mac;
    let mut spoofed = 0u32;
    let send = |c: &mut Client, f: &[u8], what: &str| {
        if let Err(e) = c.send(f) {
            fail("forge", format_args!("{what}: {e}"));
            return false;
        }
        true
    };
    for i in 0..POISON {
        // "192.0.2.11 is at A's address" to A, claiming B's IP from A's MAC; and a frame to B
        // "from" A.
        let mut claim = arp_claim(VICTIM_B, VICTIM_A, IP_A, IP_B);
        claim[59] = i as u8;
        let to_b = frame(VICTIM_B, VICTIM_A, ETH_EXPERIMENTAL);
        if !send(c, &claim, "forged ARP") || !send(c, &to_b, "forged unicast") {
            return;
        }
        spoofed += 2;
    }
    for i in 0..TABLE_FILL {
        let [hi, lo] = (i as u16).to_be_bytes();
        let src = [0x02, 0xbd, 0, 0, hi, lo];
        if !send(
            c,
            &frame([0xff; 6], src, ETH_EXPERIMENTAL),
            "invented source",
        ) {
            return;
        }
        spoofed += 1;
    }
    let mut broadcasts = 0u32;
    for _ in 0..STORM {
        if !send(c, &frame([0xff; 6], me, ETH_EXPERIMENTAL), "broadcast") {
            return;
        }
        broadcasts += 1;
    }
    say!("forge: burst done spoofed={spoofed} broadcasts={broadcasts}");
    let t0 = guest_rt::cpu::rdtsc();
    for round in 0..ROUNDS {
        for _ in 0..ROUND_BROADCASTS {
            if !send(c, &frame([0xff; 6], me, ETH_EXPERIMENTAL), "broadcast") {
                return;
            }
            broadcasts += 1;
        }
        for _ in 0..ROUND_SPOOFS {
            let mut f = frame(VICTIM_A, VICTIM_B, ETH_EXPERIMENTAL);
            f[14] = round as u8;
            if !send(c, &f, "forged unicast") {
                return;
            }
            spoofed += 1;
        }
        // Replies and floods from the others are not wanted: drop what arrived.
        let _ = c.poll(&mut |_| false);
        irq::wait_until(|| false, ROUND_SLEEP);
    }
    let ticks = guest_rt::cpu::rdtsc() - t0;
    say!("forge: spoofed={spoofed} broadcasts={broadcasts} sustained-ticks={ticks}");
}
