//! virtio-net checks through `virtio_drivers::device::net::VirtIONetRaw`: ARP for the
//! gateway 192.0.2.1 and ICMP echo (frames built by hand), plus a 1000-ping benchmark.

use crate::hal::IdentityHal;
use crate::irq;
use crate::stats;
use crate::util::{inet_checksum, median, Text};
use guest_rt::cpu::rdtsc;
use guest_rt::report::{fail, pass, Detail};
use guest_rt::{detail, say};
use virtio_drivers::device::net::VirtIONetRaw;
use virtio_drivers::transport::mmio::MmioTransport;

const QUEUE: usize = 16;
pub type Net = VirtIONetRaw<IdentityHal, MmioTransport<'static>, QUEUE>;

const RX_BUFS: usize = 8;
const BUF_LEN: usize = 2048;
const MY_IP: [u8; 4] = [192, 0, 2, 2];
const GW_IP: [u8; 4] = [192, 0, 2, 1];
const ETH_ARP: u16 = 0x0806;
const ETH_IPV4: u16 = 0x0800;
const ICMP_ID: u16 = 0x4248;
const PING_PAYLOAD: usize = 56;
pub const PINGS: usize = 1000;
/// Polls of the used ring before a reply counts as lost (no exits: plain memory reads).
const REPLY_POLLS: u64 = 2_000_000;

#[repr(C, align(4096))]
struct Bufs([[u8; BUF_LEN]; RX_BUFS + 1]);

static mut BUFS: Bufs = Bufs([[0; BUF_LEN]; RX_BUFS + 1]);
static mut PING_TICKS: [u64; PINGS] = [0; PINGS];

/// The driver with its receive buffers posted.
pub struct Client {
    net: Net,
    bufs: &'static mut [[u8; BUF_LEN]; RX_BUFS + 1],
    token_slot: [usize; QUEUE],
    pub mac: [u8; 6],
    pub received: u64,
    pub ignored: u64,
}

impl core::fmt::Debug for Client {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Client").field("mac", &self.mac).finish()
    }
}

/// Opens the device at `base` and posts the receive buffers.
pub fn open(base: u64) -> Result<Client, Detail> {
    let header = core::ptr::NonNull::new(base as *mut _).expect("non-zero base");
    // SAFETY: `base` is the virtio-mmio window the hypervisor maps for this VM (0x200 bytes),
    // identity-mapped, valid for the rest of the program and used only through this
    // transport (the interrupt handler touches only InterruptStatus/ACK).
    let transport = unsafe { MmioTransport::new(header, 0x200) }
        .map_err(|e| detail!("MmioTransport::new({base:#x}): {e}"))?;
    let net = Net::new(transport).map_err(|e| detail!("VirtIONetRaw::new: {e}"))?;
    let mac = net.mac_address();
    let mut c = Client {
        net,
        // SAFETY: single vCPU; this is the only reference ever made to BUFS.
        bufs: unsafe { &mut (*core::ptr::addr_of_mut!(BUFS)).0 },
        token_slot: [usize::MAX; QUEUE],
        mac,
        received: 0,
        ignored: 0,
    };
    for slot in 0..RX_BUFS {
        c.post(slot)?;
    }
    Ok(c)
}

impl Client {
    fn post(&mut self, slot: usize) -> Result<(), Detail> {
        // SAFETY: the buffer is not touched until its token comes back from the used ring and
        // `receive_complete` gets the same buffer.
        let token = unsafe { self.net.receive_begin(&mut self.bufs[slot]) }
            .map_err(|e| detail!("receive_begin: {e}"))?;
        self.token_slot[usize::from(token) % QUEUE] = slot;
        Ok(())
    }

    /// Transmits `frame` (Ethernet header onward) and waits for the TX completion.
    pub fn send(&mut self, frame: &[u8]) -> Result<(), Detail> {
        let tx = &mut self.bufs[RX_BUFS];
        let hdr = self
            .net
            .fill_buffer_header(tx)
            .map_err(|e| detail!("fill_buffer_header: {e}"))?;
        tx[hdr..hdr + frame.len()].copy_from_slice(frame);
        let tx = &tx[..hdr + frame.len()];
        // SAFETY: `tx` is not touched until `transmit_complete` below gets it back.
        let token =
            unsafe { self.net.transmit_begin(tx) }.map_err(|e| detail!("transmit_begin: {e}"))?;
        let mut polls = 0u64;
        loop {
            if let Some(t) = self.net.poll_transmit() {
                if t != token {
                    return Err(detail!("TX completion token {t}, expected {token}"));
                }
                break;
            }
            polls += 1;
            if polls > REPLY_POLLS {
                return Err(detail!("TX never completed"));
            }
            core::hint::spin_loop();
        }
        // SAFETY: the same buffer as passed to `transmit_begin`.
        unsafe { self.net.transmit_complete(token, tx) }
            .map_err(|e| detail!("transmit_complete: {e}"))?;
        Ok(())
    }

    /// Hands every received frame to `f` (which returns true when it is the one awaited),
    /// re-posting the buffers; returns whether `f` accepted one.
    pub fn poll(&mut self, f: &mut dyn FnMut(&[u8]) -> bool) -> Result<bool, Detail> {
        let mut hit = false;
        while let Some(token) = self.net.poll_receive() {
            let slot = self.token_slot[usize::from(token) % QUEUE];
            if slot >= RX_BUFS {
                return Err(detail!("RX token {token} was never posted"));
            }
            // SAFETY: the same buffer as passed to `receive_begin` for this token.
            let (hdr, len) = unsafe { self.net.receive_complete(token, &mut self.bufs[slot]) }
                .map_err(|e| detail!("receive_complete: {e}"))?;
            self.received += 1;
            let frame = &self.bufs[slot][hdr..hdr + len.min(BUF_LEN - hdr)];
            if f(frame) {
                hit = true;
            } else {
                self.ignored += 1;
            }
            self.post(slot)?;
            if hit {
                break;
            }
        }
        Ok(hit)
    }

    /// Polls (no interrupts) until `f` accepts a frame; false after `REPLY_POLLS` empty polls.
    pub fn wait_frame(&mut self, f: &mut dyn FnMut(&[u8]) -> bool) -> Result<bool, Detail> {
        for _ in 0..REPLY_POLLS {
            if self.poll(f)? {
                return Ok(true);
            }
            core::hint::spin_loop();
        }
        Ok(false)
    }

    pub fn rx_pending(&self) -> bool {
        self.net.poll_receive().is_some()
    }
}

fn be16(b: &[u8], o: usize) -> u16 {
    u16::from_be_bytes([b[o], b[o + 1]])
}

fn arp_request(mac: [u8; 6]) -> [u8; 60] {
    let mut f = [0u8; 60]; // padded to the Ethernet minimum
    f[0..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&ETH_ARP.to_be_bytes());
    let a = &mut f[14..42];
    a[0..2].copy_from_slice(&1u16.to_be_bytes()); // htype Ethernet
    a[2..4].copy_from_slice(&ETH_IPV4.to_be_bytes()); // ptype IPv4
    a[4] = 6;
    a[5] = 4;
    a[6..8].copy_from_slice(&1u16.to_be_bytes()); // request
    a[8..14].copy_from_slice(&mac);
    a[14..18].copy_from_slice(&MY_IP);
    a[24..28].copy_from_slice(&GW_IP);
    f
}

/// The gateway's MAC if `f` is the ARP reply to our request.
fn arp_reply_mac(f: &[u8], mac: [u8; 6]) -> Option<[u8; 6]> {
    if f.len() < 42 || be16(f, 12) != ETH_ARP || f[0..6] != mac {
        return None;
    }
    let a = &f[14..42];
    let ok = be16(a, 0) == 1
        && be16(a, 2) == ETH_IPV4
        && a[4] == 6
        && a[5] == 4
        && be16(a, 6) == 2
        && a[14..18] == GW_IP
        && a[18..24] == mac
        && a[24..28] == MY_IP;
    ok.then(|| a[8..14].try_into().expect("6 bytes"))
}

const PING_LEN: usize = 14 + 20 + 8 + PING_PAYLOAD;

fn echo_request(mac: [u8; 6], gw: [u8; 6], seq: u16) -> [u8; PING_LEN] {
    let mut f = [0u8; PING_LEN];
    f[0..6].copy_from_slice(&gw);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&ETH_IPV4.to_be_bytes());
    {
        let ip = &mut f[14..34];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&((20 + 8 + PING_PAYLOAD) as u16).to_be_bytes());
        ip[4..6].copy_from_slice(&seq.to_be_bytes()); // identification
        ip[6..8].copy_from_slice(&0x4000u16.to_be_bytes()); // DF
        ip[8] = 64;
        ip[9] = 1; // ICMP
        ip[12..16].copy_from_slice(&MY_IP);
        ip[16..20].copy_from_slice(&GW_IP);
        let c = inet_checksum(ip);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
    }
    {
        let icmp = &mut f[34..];
        icmp[0] = 8; // echo request
        icmp[4..6].copy_from_slice(&ICMP_ID.to_be_bytes());
        icmp[6..8].copy_from_slice(&seq.to_be_bytes());
        for (i, b) in icmp[8..].iter_mut().enumerate() {
            *b = (i as u8) ^ (seq as u8);
        }
        let c = inet_checksum(icmp);
        icmp[2..4].copy_from_slice(&c.to_be_bytes());
    }
    f
}

/// Whether `f` is the valid echo reply to `req` (addresses swapped, checksums right, same
/// id, sequence and payload).
fn is_echo_reply(f: &[u8], req: &[u8; PING_LEN]) -> bool {
    if f.len() < PING_LEN || be16(f, 12) != ETH_IPV4 || f[0..6] != req[6..12] {
        return false;
    }
    let ip = &f[14..34];
    if ip[0] != 0x45 || ip[9] != 1 || ip[12..16] != GW_IP || ip[16..20] != MY_IP {
        return false;
    }
    let total = usize::from(be16(ip, 2));
    if total != 20 + 8 + PING_PAYLOAD || inet_checksum(ip) != 0 {
        return false;
    }
    let icmp = &f[34..14 + total];
    icmp[0] == 0
        && icmp[1] == 0
        && inet_checksum(icmp) == 0
        && icmp[4..8] == req[38..42]
        && icmp[8..] == req[42..]
}

/// One ping: send, wait for the reply. Returns the TSC ticks it took.
fn ping(c: &mut Client, gw: [u8; 6], seq: u16) -> Result<u64, Detail> {
    let req = echo_request(c.mac, gw, seq);
    let t0 = rdtsc();
    c.send(&req)?;
    if c.wait_frame(&mut |f| is_echo_reply(f, &req))? {
        Ok(rdtsc() - t0)
    } else {
        Err(detail!("no echo reply to seq {seq}"))
    }
}

/// MAC, ARP, 3 pings, then the 1000-ping benchmark.
pub fn run(c: &mut Client) {
    let m = c.mac;
    say!(
        "net mac={:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0],
        m[1],
        m[2],
        m[3],
        m[4],
        m[5]
    );

    // ARP: send, then sleep until the RX interrupt (the reply is normally already there).
    irq::drain();
    let irq0 = irq::NET.interrupts();
    let arp = arp_request(m);
    let mut gw = None;
    let sent = c.send(&arp);
    if let Err(e) = sent {
        fail("net-arp", format_args!("{e}"));
        return;
    }
    // The reply is usually in the RX ring before the send returns (the hypervisor pumps the
    // switch on the notify); wait for the device's interrupt anyway, so it is exercised.
    let (_, halts) = irq::wait_until(|| c.rx_pending() && irq::NET.interrupts() > irq0, 20);
    let res = c.wait_frame(&mut |f| match arp_reply_mac(f, m) {
        Some(g) => {
            gw = Some(g);
            true
        }
        None => false,
    });
    let irqs = irq::NET.interrupts() - irq0;
    let g = match (res, gw) {
        (Ok(true), Some(g)) => g,
        (Ok(_), _) => {
            fail(
                "net-arp",
                format_args!(
                    "no ARP reply from 192.0.2.1 ({} frames received, {} ignored, {irqs} interrupts, {halts} halts)",
                    c.received, c.ignored
                ),
            );
            return;
        }
        (Err(e), _) => {
            fail("net-arp", format_args!("{e}"));
            return;
        }
    };
    say!(
        "net arp: 192.0.2.1 is at {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x} (interrupts={irqs} halts={halts})",
        g[0],
        g[1],
        g[2],
        g[3],
        g[4],
        g[5]
    );
    pass("net-arp");

    let mut first = Ok(());
    let mut times = [0u64; 3];
    for (seq, t) in times.iter_mut().enumerate() {
        match ping(c, g, seq as u16 + 1) {
            Ok(dt) => *t = dt,
            Err(e) => {
                first = Err(e);
                break;
            }
        }
    }
    match first {
        Ok(()) => {
            say!(
                "net ping: 3 replies, ticks {} {} {}",
                times[0],
                times[1],
                times[2]
            );
            pass("net-ping");
        }
        Err(e) => {
            fail("net-ping", format_args!("{e}"));
            return;
        }
    }

    // SAFETY: single vCPU; the only reference to PING_TICKS.
    let ticks = unsafe { &mut *core::ptr::addr_of_mut!(PING_TICKS) };
    irq::drain();
    let irq0 = irq::NET.interrupts();
    let s0 = stats::snapshot();
    let t0 = rdtsc();
    let mut replied = 0;
    let mut err = None;
    for (i, t) in ticks.iter_mut().enumerate() {
        match ping(c, g, 100 + i as u16) {
            Ok(dt) => {
                *t = dt;
                replied += 1;
            }
            Err(e) => {
                err = Some(e);
                break;
            }
        }
        // Let the interrupts the device raised for this exchange in (counted by the handler),
        // as an interrupt-driven driver would; outside the per-ping round trip.
        irq::drain();
    }
    let total = rdtsc() - t0;
    let irqs = irq::NET.interrupts() - irq0;
    let d = stats::delta(&s0, &stats::snapshot());
    let med = median(&mut ticks[..replied]);
    let min = ticks[..replied].first().copied().unwrap_or(0);
    say!(
        "BENCH ping n={replied} median={med} min={min} total={total} exits={} mmio_exits={} io_exits={} interrupts={irqs}",
        d.total,
        d.mmio,
        d.io
    );
    let name = Text::new(format_args!("net-ping-{PINGS}"));
    match err {
        None if replied == PINGS => pass(name.as_str()),
        None => fail(name.as_str(), format_args!("{replied} replies")),
        Some(e) => fail(
            name.as_str(),
            format_args!("{replied}/{PINGS} replied, then {e}"),
        ),
    }
    say!(
        "net interrupts={} frames-received={} ignored={}",
        irq::NET.interrupts(),
        c.received,
        c.ignored
    );
}
