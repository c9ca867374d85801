//! Fuzzes a virtio-blk (owned or copy-on-write disk with a small overlay budget),
//! virtio-net or virtio-console device behind the MMIO transport: the input drives guest
//! memory contents, descriptors, avail ring entries, MMIO accesses, notifications,
//! deferred-kick processing, RX frame / console input delivery, the switch and the console
//! sink. Nothing may panic or hang, DEVICE_NEEDS_RESET must always come with a recorded
//! error, and a disk overlay never exceeds its budget.
//!
//! Run with `cargo fuzz run devices` from `virtio/`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use virtio::memory::GuestMemory;
use virtio::spec::status;
use virtio::testing::{Driver, RAM_BASE};
use virtio::{
    BlockBackend, BlockConfig, BlockDevice, ByteRing, ConsoleDevice, MmioTransport, NetDevice,
    NetPort, PortId, PortKind, RamDisk, Switch, SwitchConfig, VirtioDevice,
};

/// What the fuzzer may do to the device besides MMIO: deliver a frame or input bytes,
/// move frames or drain output.
trait Extra {
    fn deliver(&mut self, bytes: &[u8]);
    fn pump(&mut self, sw: &mut Switch);
    fn check(&self) {}
}

impl Extra for BlockDevice<RamDisk> {
    fn deliver(&mut self, _: &[u8]) {}
    fn pump(&mut self, _: &mut Switch) {}
    fn check(&self) {
        let disk = self.backend();
        if let Some(budget) = disk.overlay_budget() {
            assert!(disk.overlay_charged() <= budget);
            assert!(disk.worst_case_bytes() <= budget);
        }
    }
}

impl Extra for NetDevice {
    fn deliver(&mut self, bytes: &[u8]) {
        NetPort::deliver(self, bytes);
    }
    fn pump(&mut self, sw: &mut Switch) {
        // Port 1 is the device's (port 0 the gateway): send, then RX from the lent queue.
        sw.send_from(PortId(1), self.tx_ring_mut(), 0);
        sw.swap_queue(PortId(1), self.rx_ring_mut());
    }
}

impl Extra for ConsoleDevice<ByteRing> {
    fn deliver(&mut self, bytes: &[u8]) {
        self.push_input(bytes);
    }
    fn pump(&mut self, _: &mut Switch) {
        let n = self.sink().len() / 2 + 1;
        self.sink_mut().drain(n, |b| b.len());
    }
}

static IMAGE: [u8; 16 * 1024] = [0x5a; 16 * 1024];

const RAM: usize = 1 << 16;

struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn bytes(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.0.len());
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        a
    }
    fn u8(&mut self) -> Option<u8> {
        self.bytes(1).first().copied()
    }
    fn u16(&mut self) -> u16 {
        let mut b = [0u8; 2];
        let s = self.bytes(2);
        b[..s.len()].copy_from_slice(s);
        u16::from_le_bytes(b)
    }
    fn u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        let s = self.bytes(4);
        b[..s.len()].copy_from_slice(s);
        u32::from_le_bytes(b)
    }
    fn u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        let s = self.bytes(8);
        b[..s.len()].copy_from_slice(s);
        u64::from_le_bytes(b)
    }
    /// A guest address: usually inside RAM, sometimes arbitrary.
    fn addr(&mut self) -> u64 {
        let sel = self.u8().unwrap_or(0);
        if sel & 0x80 != 0 {
            self.u64()
        } else {
            RAM_BASE + u64::from(self.u16())
        }
    }
}

fn check<D: VirtioDevice>(t: &MmioTransport<D>) {
    if t.status() & status::DEVICE_NEEDS_RESET != 0 {
        assert!(t.error().is_some());
    }
}

fn run<D: VirtioDevice + Extra>(t: &mut MmioTransport<D>, input: &mut Input<'_>) {
    let mut d = Driver::new(RAM);
    let wanted = input.u64() | virtio::spec::feature::VERSION_1;
    let qsize = 1u16 << (input.u8().unwrap_or(4) % 8);
    // Proper setup half of the time so the fuzzer reaches request processing quickly.
    if input.u8().unwrap_or(0) & 1 == 0 {
        let _ = d.setup(t, wanted, qsize);
    }
    let mut sw = Switch::new(SwitchConfig::new(2, 1_000_000));
    let _ = sw.add_gateway([2, 0, 0, 0, 0, 1], [10, 0, 2, 2]);
    let _ = sw.add_port(PortKind::Guest {
        mac: [0x52, 0x54, 0, 0, 0, 1],
    });
    let mut ops = 0;
    while let Some(op) = input.u8() {
        ops += 1;
        if ops > 256 {
            break;
        }
        let nq = d.queues.len();
        match op % 11 {
            0 => {
                let at = RAM_BASE + u64::from(input.u16());
                let n = usize::from(input.u8().unwrap_or(0));
                let bytes = input.bytes(n).to_vec();
                let _ = d.mem.write(at, &bytes);
            }
            1 => {
                let off = u64::from(input.u16() % 0x200);
                let size = [1u8, 2, 4, 8, 3][usize::from(input.u8().unwrap_or(0) % 5)];
                let v = input.u64();
                t.write(off, size, v, &mut d.mem);
            }
            2 => {
                let off = u64::from(input.u16() % 0x200);
                let size = [1u8, 2, 4, 8][usize::from(input.u8().unwrap_or(0) % 4)];
                t.read(off, size);
            }
            3 => {
                let q = u32::from(input.u8().unwrap_or(0) % 3);
                t.write(0x50, 4, u64::from(q), &mut d.mem);
            }
            4 => {
                t.poll(&mut d.mem);
            }
            5 if nq > 0 => {
                let q = usize::from(input.u8().unwrap_or(0)) % nq;
                let head = input.u16();
                d.push_avail(q, head);
            }
            6 if nq > 0 => {
                let q = usize::from(input.u8().unwrap_or(0)) % nq;
                let i = input.u16() % d.queues[q].size;
                let addr = input.addr();
                let len = input.u32();
                let flags = input.u16();
                let next = input.u16();
                d.write_desc(q, i, addr, len % 0x4000, flags, next);
            }
            7 => {
                let n = usize::from(input.u16() % 1600);
                let bytes = input.bytes(n).to_vec();
                t.device_mut().deliver(&bytes);
            }
            8 => t.device_mut().pump(&mut sw),
            9 if nq > 0 => {
                let q = usize::from(input.u8().unwrap_or(0)) % nq;
                let v = input.u16();
                if v & 1 == 0 {
                    d.set_used_event(q, v);
                } else {
                    d.set_avail_flags(q, v >> 1);
                }
            }
            10 => {
                let e = t.process_kicks(&mut d.mem);
                assert_eq!(e.more, t.has_kicks());
            }
            _ => {}
        }
        check(t);
        t.device().check();
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let kind = input.u8().unwrap_or(0);
    match kind % 3 {
        0 => {
            let cfg = BlockConfig {
                seg_max: u32::from(input.u8().unwrap_or(8)),
                size_max: u32::from(input.u16()),
                ..BlockConfig::default()
            };
            let disk = if kind & 4 != 0 {
                RamDisk::from_static_with_budget(&IMAGE, u64::from(input.u16()))
            } else {
                RamDisk::new(16 * 1024)
            };
            let disk = disk.read_only(kind & 8 != 0);
            let mut t = MmioTransport::new(BlockDevice::with_config(disk, cfg));
            t.set_deferred_notify(kind & 16 != 0);
            run(&mut t, &mut input);
        }
        1 => {
            let mut t = MmioTransport::new(NetDevice::new([0x52, 0x54, 0, 0, 0, 1]));
            run(&mut t, &mut input);
        }
        _ => {
            let sink = ByteRing::new(usize::from(input.u8().unwrap_or(16)));
            let mut t = MmioTransport::new(ConsoleDevice::new(sink));
            t.set_deferred_notify(kind & 16 != 0);
            run(&mut t, &mut input);
        }
    }
});
