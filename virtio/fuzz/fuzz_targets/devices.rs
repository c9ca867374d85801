//! Fuzzes a virtio-blk or virtio-net device behind the MMIO transport: the input
//! drives guest memory contents, descriptors, avail ring entries, MMIO accesses,
//! notifications, RX frame delivery and the switch. Nothing may panic or hang, and
//! DEVICE_NEEDS_RESET must always come with a recorded error.
//!
//! Run with `cargo fuzz run devices` from `virtio/`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use virtio::memory::GuestMemory;
use virtio::spec::status;
use virtio::testing::{Driver, RAM_BASE};
use virtio::{
    BlockConfig, BlockDevice, Gateway, MmioTransport, NetDevice, NetPort, RamDisk, Switch,
    VirtioDevice,
};

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

fn run<D: VirtioDevice>(
    t: &mut MmioTransport<D>,
    input: &mut Input<'_>,
    net: bool,
    port: impl Fn(&mut MmioTransport<D>) -> Option<&mut dyn NetPort>,
) {
    let mut d = Driver::new(RAM);
    let wanted = input.u64() | virtio::spec::feature::VERSION_1;
    let qsize = 1u16 << (input.u8().unwrap_or(4) % 8);
    // Proper setup half of the time so the fuzzer reaches request processing quickly.
    if input.u8().unwrap_or(0) & 1 == 0 {
        let _ = d.setup(t, wanted, qsize);
    }
    let mut sw = Switch::new(8);
    let mut gw = Gateway::new([2, 0, 0, 0, 0, 1], [10, 0, 2, 2]);
    let mut ops = 0;
    while let Some(op) = input.u8() {
        ops += 1;
        if ops > 256 {
            break;
        }
        let nq = d.queues.len();
        match op % 10 {
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
            7 if net => {
                let n = usize::from(input.u16() % 1600);
                let frame = input.bytes(n).to_vec();
                if let Some(p) = port(t) {
                    p.deliver(&frame);
                }
            }
            8 if net => {
                if let Some(p) = port(t) {
                    sw.pump(&mut [p, &mut gw]);
                }
            }
            9 if nq > 0 => {
                let q = usize::from(input.u8().unwrap_or(0)) % nq;
                let v = input.u16();
                if v & 1 == 0 {
                    d.set_used_event(q, v);
                } else {
                    d.set_avail_flags(q, v >> 1);
                }
            }
            _ => {}
        }
        check(t);
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let kind = input.u8().unwrap_or(0);
    if kind & 1 == 0 {
        let cfg = BlockConfig {
            seg_max: u32::from(input.u8().unwrap_or(8)),
            size_max: u32::from(input.u16()),
            ..BlockConfig::default()
        };
        let disk = RamDisk::new(16 * 1024).read_only(kind & 2 != 0);
        let mut t = MmioTransport::new(BlockDevice::with_config(disk, cfg));
        run(&mut t, &mut input, false, |_| None);
    } else {
        let mut t = MmioTransport::new(NetDevice::new([0x52, 0x54, 0, 0, 0, 1]));
        run(&mut t, &mut input, true, |t| {
            Some(t.device_mut() as &mut dyn NetPort)
        });
    }
});
