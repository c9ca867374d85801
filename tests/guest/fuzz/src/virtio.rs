//! virtio-mmio actions (virtio 1.2 §4.2.2 register layout, §2.7 split virtqueues, §5.1
//! network, §5.2 block): raw accesses of every size and several instruction forms to the
//! device windows, and a small driver that takes a device through feature negotiation,
//! hands it queues (good, overlapping, misaligned, outside RAM, in MMIO) and random
//! descriptor chains (well-formed requests and frames, loops, zero and 2^32-1 lengths,
//! addresses outside RAM or in MMIO, descriptors overlapping the rings, self-referencing
//! indirect tables), then notifies it.
//!
//! Every queue address and buffer address is scratch or invalid ([`Mem::dma_pointer`]): a
//! device writing where the guest was told to write never touches the fuzzer's code, stack
//! or page tables. A raw write to a queue address register gets such an address too.

use crate::mem::{Mem, MMIO_STRIDE};
use crate::rng::Rng;
use crate::{probe, trace};

// virtio 1.2 §4.2.2 (MMIO Device Register Layout).
const MAGIC: u64 = 0x000;
const DEVICE_ID: u64 = 0x008;
const DEVICE_FEATURES: u64 = 0x010;
const DEVICE_FEATURES_SEL: u64 = 0x014;
const DRIVER_FEATURES: u64 = 0x020;
const DRIVER_FEATURES_SEL: u64 = 0x024;
const QUEUE_SEL: u64 = 0x030;
const QUEUE_NUM_MAX: u64 = 0x034;
const QUEUE_NUM: u64 = 0x038;
const QUEUE_READY: u64 = 0x044;
const QUEUE_NOTIFY: u64 = 0x050;
const INTERRUPT_STATUS: u64 = 0x060;
const INTERRUPT_ACK: u64 = 0x064;
const STATUS: u64 = 0x070;
const QUEUE_DESC_LOW: u64 = 0x080;
const QUEUE_DRIVER_LOW: u64 = 0x090;
const QUEUE_DEVICE_LOW: u64 = 0x0A0;
/// The address registers: 0x080..0x0A8 (low/high pairs).
const ADDRESS_REGS: core::ops::Range<u64> = 0x080..0x0A8;
const SHM_SEL: u64 = 0x0AC;
const QUEUE_RESET: u64 = 0x0C0;
const CONFIG_GENERATION: u64 = 0x0FC;
const CONFIG: u64 = 0x100;
const REGISTERS: &[u64] = &[
    MAGIC,
    0x004,
    DEVICE_ID,
    0x00C,
    DEVICE_FEATURES,
    DEVICE_FEATURES_SEL,
    DRIVER_FEATURES,
    DRIVER_FEATURES_SEL,
    QUEUE_SEL,
    QUEUE_NUM_MAX,
    QUEUE_NUM,
    QUEUE_READY,
    QUEUE_NOTIFY,
    INTERRUPT_STATUS,
    INTERRUPT_ACK,
    STATUS,
    0x080,
    0x084,
    0x090,
    0x094,
    0x0A0,
    0x0A4,
    SHM_SEL,
    0x0B0,
    0x0B4,
    0x0B8,
    0x0BC,
    QUEUE_RESET,
    CONFIG_GENERATION,
];

// virtio 1.2 §2.1 device status bits.
const ACKNOWLEDGE: u32 = 1;
const DRIVER: u32 = 2;
const DRIVER_OK: u32 = 4;
const FEATURES_OK: u32 = 8;
const FAILED: u32 = 128;

// virtio 1.2 §6 / §2.7.5 / §2.7.6.
const F_INDIRECT: u64 = 1 << 28;
const F_EVENT_IDX: u64 = 1 << 29;
const F_VERSION_1: u64 = 1 << 32;
const DESC_NEXT: u16 = 1;
const DESC_WRITE: u16 = 2;
const DESC_INDIRECT: u16 = 4;
const AVAIL_NO_INTERRUPT: u16 = 1;
const DESC_SIZE: u64 = 16;

// virtio 1.2 §5.1 / §5.2.
const DEVICE_NET: u32 = 1;
const DEVICE_BLOCK: u32 = 2;
const NET_TX: u64 = 1;
/// virtio_net_hdr with VIRTIO_F_VERSION_1 (§5.1.6): 12 bytes.
const NET_HDR: u64 = 12;
const BLK_SECTOR: u64 = 512;
/// Block request types (§5.2.6).
const BLK_TYPES: &[u32] = &[0, 1, 4, 8, 10, 11, 13, 14, 2, 0xFFFF_FFFF];

/// The gateway every VM's switch has (docs/vm-platform.md, The network).
const GATEWAY_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const GATEWAY_IP: [u8; 4] = [192, 0, 2, 1];
const GUEST_IP: [u8; 4] = [192, 0, 2, 77];

/// One virtqueue as this driver laid it out.
#[derive(Debug, Clone, Copy, Default)]
struct Queue {
    size: u16,
    desc: u64,
    avail: u64,
    used: u64,
    next_avail: u16,
    /// The rings lie in scratch, so the driver may fill them.
    owned: bool,
}

/// One virtio-mmio window.
#[derive(Debug, Clone, Copy, Default)]
pub struct Device {
    base: u64,
    id: u32,
    queues: [Queue; 2],
    mac: [u8; 6],
}

/// The devices of the VM, found once at start.
#[derive(Debug)]
pub struct Devices {
    list: [Device; 8],
    count: usize,
}

impl Devices {
    /// Reads MagicValue and DeviceID of the first `windows` windows (which must exist: a read
    /// of an absent window stops the VM).
    pub fn probe(mem: &Mem) -> Self {
        let mut d = Devices {
            list: [Device::default(); 8],
            count: mem.windows.min(8) as usize,
        };
        for (i, dev) in d.list[..d.count].iter_mut().enumerate() {
            dev.base = mem.window(i as u64);
            dev.id = read32(dev.base + DEVICE_ID);
            dev.mac = [0x02, 0, 0, 0, 0x10, i as u8];
        }
        d
    }

    pub fn count(&self) -> usize {
        self.count
    }

    pub fn ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.list[..self.count].iter().map(|d| d.id)
    }
}

/// A plain 32-bit register read (MOV).
fn read32(gpa: u64) -> u32 {
    let v: u32;
    // SAFETY: `gpa` is in a virtio-mmio window this VM has; the hypervisor emulates the MOV.
    let _ = unsafe {
        probe!("mov {v:e}, dword ptr [{a}]", a = in(reg) gpa, v = out(reg) v, options(nostack))
    };
    v
}

/// A plain 32-bit register write (MOV).
fn write32(gpa: u64, v: u32) {
    // SAFETY: as for `read32`; the value may make the device DMA only into scratch or to
    // invalid addresses (module comment).
    let _ = unsafe {
        probe!("mov dword ptr [{a}], {v:e}", a = in(reg) gpa, v = in(reg) v, options(nostack))
    };
}

/// An MMIO load of `size` bytes with one of several instruction forms.
///
/// # Safety
/// `gpa` must be in one of the VM's virtio windows.
unsafe fn load(gpa: u64, size: u8, form: u64) {
    // SAFETY: the caller guarantees the window; loads have no side effects on guest memory.
    let _ = unsafe {
        match (size, form % 4) {
            (1, 0) => {
                probe!("mov {v:l}, byte ptr [{a}]", a = in(reg) gpa, v = out(reg) _, options(nostack))
            }
            (1, 1) => {
                probe!("movzx {v:e}, byte ptr [{a}]", a = in(reg) gpa, v = out(reg) _, options(nostack))
            }
            (1, 2) => {
                probe!("movsx {v}, byte ptr [{a}]", a = in(reg) gpa, v = out(reg) _, options(nostack))
            }
            (1, _) => {
                probe!("test byte ptr [{a}], {v:l}", a = in(reg) gpa, v = in(reg) 0x5au64, options(nostack))
            }
            (2, 0) => {
                probe!("mov {v:x}, word ptr [{a}]", a = in(reg) gpa, v = out(reg) _, options(nostack))
            }
            (2, 1) => {
                probe!("movzx {v:e}, word ptr [{a}]", a = in(reg) gpa, v = out(reg) _, options(nostack))
            }
            (2, 2) => {
                probe!("movsx {v}, word ptr [{a}]", a = in(reg) gpa, v = out(reg) _, options(nostack))
            }
            (2, _) => {
                probe!("cmp word ptr [{a}], {v:x}", a = in(reg) gpa, v = in(reg) 7u64, options(nostack))
            }
            (4, 0) => {
                probe!("mov {v:e}, dword ptr [{a}]", a = in(reg) gpa, v = out(reg) _, options(nostack))
            }
            (4, 1) => {
                probe!("movsxd {v}, dword ptr [{a}]", a = in(reg) gpa, v = out(reg) _, options(nostack))
            }
            (4, 2) => probe!("test dword ptr [{a}], 0x10", a = in(reg) gpa, options(nostack)),
            (4, _) => {
                probe!("cmp {v:e}, dword ptr [{a}]", a = in(reg) gpa, v = in(reg) 2u64, options(nostack))
            }
            (_, 0) | (_, 1) => {
                probe!("mov {v}, qword ptr [{a}]", a = in(reg) gpa, v = out(reg) _, options(nostack))
            }
            _ => {
                probe!("cmp qword ptr [{a}], {v}", a = in(reg) gpa, v = in(reg) 1u64, options(nostack))
            }
        }
    };
}

/// An MMIO store (or read-modify-write) of `size` bytes with one of several forms.
///
/// # Safety
/// As for [`load`]; the value must not point the device at memory the guest uses.
unsafe fn store(gpa: u64, size: u8, v: u64, form: u64) {
    // SAFETY: the caller guarantees the window and the value.
    let _ = unsafe {
        match (size, form % 4) {
            (1, 0) => {
                probe!("mov byte ptr [{a}], {v:l}", a = in(reg) gpa, v = in(reg) v, options(nostack))
            }
            (1, 1) => {
                probe!("or byte ptr [{a}], {v:l}", a = in(reg) gpa, v = in(reg) v, options(nostack))
            }
            (1, 2) => probe!("stosb", inout("rdi") gpa => _, in("al") v as u8, options(nostack)),
            (1, _) => probe!("mov byte ptr [{a}], 0x01", a = in(reg) gpa, options(nostack)),
            (2, 0) => {
                probe!("mov word ptr [{a}], {v:x}", a = in(reg) gpa, v = in(reg) v, options(nostack))
            }
            (2, 1) => {
                probe!("and word ptr [{a}], {v:x}", a = in(reg) gpa, v = in(reg) v, options(nostack))
            }
            (2, 2) => probe!("stosw", inout("rdi") gpa => _, in("ax") v as u16, options(nostack)),
            (2, _) => {
                probe!("add word ptr [{a}], {v:x}", a = in(reg) gpa, v = in(reg) v, options(nostack))
            }
            (4, 0) => {
                probe!("mov dword ptr [{a}], {v:e}", a = in(reg) gpa, v = in(reg) v, options(nostack))
            }
            (4, 1) => {
                probe!("or dword ptr [{a}], {v:e}", a = in(reg) gpa, v = in(reg) v, options(nostack))
            }
            (4, 2) => probe!("stosd", inout("rdi") gpa => _, in("eax") v as u32, options(nostack)),
            (4, _) => {
                probe!("xor dword ptr [{a}], {v:e}", a = in(reg) gpa, v = in(reg) v, options(nostack))
            }
            (_, 0) => {
                probe!("mov qword ptr [{a}], {v}", a = in(reg) gpa, v = in(reg) v, options(nostack))
            }
            (_, 1) => probe!("stosq", inout("rdi") gpa => _, in("rax") v, options(nostack)),
            (_, 2) => {
                probe!("sub qword ptr [{a}], {v}", a = in(reg) gpa, v = in(reg) v, options(nostack))
            }
            _ => probe!("mov qword ptr [{a}], 0x11", a = in(reg) gpa, options(nostack)),
        }
    };
}

/// One raw access to a random offset of a random window.
pub fn raw(rng: &mut Rng, mem: &Mem, devs: &Devices) {
    if devs.count == 0 {
        return;
    }
    let dev = &devs.list[rng.below(devs.count as u64) as usize];
    let offset = match rng.below(8) {
        0..=4 => rng.pick(REGISTERS),
        5 => CONFIG + rng.below(0x100),
        6 => rng.below(0x100),
        _ => rng.below(MMIO_STRIDE),
    };
    let size = rng.pick(&[4u8, 4, 4, 1, 2, 8]);
    let write = rng.chance(1, 2);
    let form = rng.below(4);
    let mut value = rng.interesting();
    if write && ADDRESS_REGS.contains(&offset) {
        let a = mem.dma_pointer(rng, 0x1000);
        value = if offset % 8 == 0 {
            a & 0xFFFF_FFFF
        } else {
            a >> 32
        };
    }
    let gpa = dev.base + offset;
    trace!(
        "mmio {} gpa={gpa:#x} size={size} form={form} value={value:#x}",
        if write { "write" } else { "read" }
    );
    // SAFETY: the window exists; queue addresses written are scratch or invalid.
    unsafe {
        if write {
            store(gpa, size, value, form);
        } else {
            load(gpa, size, form);
        }
    }
}

/// One driver step on a random device.
pub fn drive(rng: &mut Rng, mem: &Mem, devs: &mut Devices) {
    if devs.count == 0 {
        return;
    }
    let i = rng.below(devs.count as u64) as usize;
    let dev = &mut devs.list[i];
    match rng.weighted(&[4, 8, 1, 1, 1]) {
        0 => initialise(rng, mem, dev),
        1 => submit(rng, mem, dev),
        2 => {
            let r = rng.next() & 0xFFFF_FFFF;
            let q = rng.pick(&[0u64, 1, 2, 0xFFFF, r]);
            trace!("virtio {i}: reconfigure queue {q:#x}");
            setup_queue(rng, mem, dev, q, false);
        }
        3 => {
            let status = if rng.chance(1, 2) {
                rng.below(256) as u32
            } else {
                rng.interesting() as u32
            };
            trace!("virtio {i}: status={status:#x}");
            write32(dev.base + STATUS, status);
        }
        _ => {
            trace!("virtio {i}: interrupt ack");
            let pending = read32(dev.base + INTERRUPT_STATUS);
            write32(dev.base + INTERRUPT_ACK, pending);
        }
    }
}

/// Reset, ACKNOWLEDGE | DRIVER, a random feature set, FEATURES_OK, the queues, DRIVER_OK
/// (virtio 1.2 §3.1.1), with steps skipped or garbled now and then.
fn initialise(rng: &mut Rng, mem: &Mem, dev: &mut Device) {
    let mut offered = 0u64;
    for sel in 0..2u32 {
        write32(dev.base + DEVICE_FEATURES_SEL, sel);
        offered |= u64::from(read32(dev.base + DEVICE_FEATURES)) << (32 * sel);
    }
    // Half of the initialisations are by the book, so the devices also get work done.
    let good = rng.chance(1, 2);
    let mask = rng.next();
    let accept = match if good { 0 } else { rng.below(7) } {
        0..=2 => offered,
        3 => offered & mask,
        4 => offered & !F_VERSION_1,
        5 => offered & !(F_INDIRECT | F_EVENT_IDX),
        _ => mask,
    };
    let queues = if good { 2 } else { rng.pick(&[1u64, 2, 2, 3]) };
    let skip_ok = !good && rng.chance(1, 8);
    trace!(
        "virtio at {:#x}: initialise features={accept:#x} queues={queues} skip-driver-ok={skip_ok}",
        dev.base
    );
    write32(dev.base + STATUS, 0);
    write32(dev.base + STATUS, ACKNOWLEDGE);
    write32(dev.base + STATUS, ACKNOWLEDGE | DRIVER);
    write32(dev.base + DRIVER_FEATURES_SEL, 0);
    write32(dev.base + DRIVER_FEATURES, accept as u32);
    write32(dev.base + DRIVER_FEATURES_SEL, 1);
    write32(dev.base + DRIVER_FEATURES, (accept >> 32) as u32);
    write32(dev.base + STATUS, ACKNOWLEDGE | DRIVER | FEATURES_OK);
    let _ = read32(dev.base + STATUS);
    for q in 0..queues {
        setup_queue(rng, mem, dev, q, good);
    }
    let status = if skip_ok {
        ACKNOWLEDGE | DRIVER | FAILED
    } else {
        ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK
    };
    write32(dev.base + STATUS, status);
}

/// Writes a 64-bit queue address into its low/high register pair.
fn write_address(dev: &Device, low: u64, addr: u64) {
    write32(dev.base + low, addr as u32);
    write32(dev.base + low + 4, (addr >> 32) as u32);
}

/// QueueSel, QueueNum, the three ring addresses, QueueReady for queue `q`.
fn setup_queue(rng: &mut Rng, mem: &Mem, dev: &mut Device, q: u64, good: bool) {
    let size = match if good { 0 } else { rng.below(8) } {
        0..=4 => 1u64 << rng.below(5),
        5 => 1u64 << rng.below(9),
        _ => {
            let r = rng.next() & 0xFFFF_FFFF;
            rng.pick(&[0u64, 3, 255, 257, 512, 1024, 0x8000, 0xFFFF, r])
        }
    };
    let n = size.min(0x1_0000);
    let (desc_len, avail_len, used_len) = (DESC_SIZE * n, 6 + 2 * n, 6 + 8 * n);
    let region = rng.below(mem.regions());
    let (desc, avail, used) = match if good { 0 } else { rng.below(10) } {
        // virtio 1.2 §2.7: descriptor table 16-aligned, driver ring 2, device ring 4.
        0..=5 => {
            let total = desc_len + avail_len + used_len + 8;
            let desc = mem.region(rng, region, total, 16);
            let avail = desc + desc_len;
            let used = (avail + avail_len + 3) & !3;
            (desc, avail, used)
        }
        // Each ring anywhere in scratch, overlapping whatever is there.
        6 => (
            mem.any_region(rng, desc_len, 16),
            mem.any_region(rng, avail_len, 2),
            mem.any_region(rng, used_len, 4),
        ),
        // All three rings at one address.
        7 => {
            let a = mem.region(rng, region, desc_len.max(used_len), 16);
            (a, a, a)
        }
        // Misaligned.
        8 => {
            let a = mem.region(rng, region, desc_len + avail_len + used_len + 8, 16);
            (a + 1, a + desc_len + 1, a + desc_len + avail_len + 3)
        }
        // Outside RAM, in MMIO, huge.
        _ => (
            mem.dma_pointer(rng, desc_len),
            mem.dma_pointer(rng, avail_len),
            mem.dma_pointer(rng, used_len),
        ),
    };
    let ready = if good {
        1
    } else {
        rng.pick(&[1u32, 1, 1, 1, 0, 2, u32::MAX])
    };
    trace!(
        "virtio at {:#x}: queue {q:#x} size={size:#x} desc={desc:#x} avail={avail:#x} used={used:#x} ready={ready:#x}",
        dev.base
    );
    let owned = size > 0
        && size <= 0x8000
        && mem.in_scratch(desc, desc_len)
        && mem.in_scratch(avail, avail_len)
        && mem.in_scratch(used, used_len);
    if owned {
        // Empty rings: flags and idx of both (virtio 1.2 §2.7.6, §2.7.8).
        // SAFETY: both rings lie in scratch (checked).
        unsafe {
            core::ptr::write_volatile(avail as *mut u32, 0);
            core::ptr::write_volatile(used as *mut u32, 0);
        }
    }
    write32(dev.base + QUEUE_SEL, q as u32);
    let _ = read32(dev.base + QUEUE_NUM_MAX);
    write32(dev.base + QUEUE_NUM, size as u32);
    write_address(dev, QUEUE_DESC_LOW, desc);
    write_address(dev, QUEUE_DRIVER_LOW, avail);
    write_address(dev, QUEUE_DEVICE_LOW, used);
    write32(dev.base + QUEUE_READY, ready);
    if let Some(slot) = dev.queues.get_mut(q as usize) {
        *slot = Queue {
            size: size as u16,
            desc,
            avail,
            used,
            next_avail: 0,
            owned,
        };
    }
}

/// Writes descriptor `i` of a table at `table`.
///
/// # Safety
/// `table + 16 * i` must be scratch.
unsafe fn put_desc(table: u64, i: u64, addr: u64, len: u32, flags: u16, next: u16) {
    let p = (table + DESC_SIZE * i) as *mut u8;
    // SAFETY: the caller guarantees the 16 bytes lie in scratch.
    unsafe {
        core::ptr::write_volatile(p as *mut u64, addr);
        core::ptr::write_volatile(p.add(8) as *mut u32, len);
        core::ptr::write_volatile(p.add(12) as *mut u16, flags);
        core::ptr::write_volatile(p.add(14) as *mut u16, next);
    }
}

/// A descriptor length.
fn buf_len(rng: &mut Rng) -> u32 {
    match rng.below(10) {
        0 => 0,
        1 => 0xFFFF_FFFF,
        2 => rng.pick(&[1, 511, 513, 0x8000_0000, 0x10_0000, 0x7FFF_FFFF]),
        3..=6 => rng.pick(&[512, 1024, 4096, 16]),
        _ => rng.range(1, 0x4000) as u32,
    }
}

/// A random descriptor in a chain of table size `n`: any address (scratch or invalid or the
/// rings themselves), any length, random flags, `next` in range, out of range, or itself.
fn random_desc(rng: &mut Rng, mem: &Mem, q: &Queue, i: u64, n: u64) -> (u64, u32, u16, u16) {
    let len = buf_len(rng);
    let addr = match rng.below(6) {
        0 => q.desc,
        1 => q.used,
        2 => q.avail,
        _ => mem.dma_pointer(rng, u64::from(len)),
    };
    let flags = match rng.below(4) {
        0 => rng.next() as u16,
        _ => rng.below(8) as u16,
    };
    let next = match rng.below(5) {
        0 => i as u16,
        1 => (i as u16).wrapping_sub(1),
        2 => rng.next() as u16,
        _ => rng.below(n.max(1)) as u16,
    };
    (addr, len, flags, next)
}

/// A block request (virtio 1.2 §5.2.6): header, 0-3 data buffers, status byte; returns the
/// descriptors as (addr, len, flags) in chain order.
fn block_request(rng: &mut Rng, mem: &Mem, out: &mut [(u64, u32, u16); 5]) -> usize {
    if rng.chance(2, 3) {
        return valid_block_request(rng, mem, out);
    }
    let kind = rng.pick(BLK_TYPES);
    let sector = match rng.below(6) {
        0 => 0,
        1 => rng.below(2048),
        2 => rng.pick(&[2047, 2048, 2049, u64::MAX, u64::MAX / BLK_SECTOR]),
        _ => rng.interesting(),
    };
    let header = mem.any_region(rng, 16, 8);
    // SAFETY: 16 bytes of scratch.
    unsafe {
        core::ptr::write_volatile(header as *mut u32, kind);
        core::ptr::write_volatile((header + 4) as *mut u32, 0);
        core::ptr::write_volatile((header + 8) as *mut u64, sector);
    }
    let mut n = 0;
    out[n] = (header, rng.pick(&[16, 16, 16, 8, 0, 32]), 0);
    n += 1;
    let device_writes = matches!(kind, 0 | 8 | 10);
    for _ in 0..rng.below(4) {
        let len = buf_len(rng);
        let addr = mem.dma_pointer(rng, u64::from(len));
        if kind == 11 || kind == 13 {
            // DISCARD / WRITE_ZEROES segments: sector, num_sectors, flags (§5.2.6.2).
            if mem.in_scratch(addr, 16) {
                // SAFETY: 16 bytes of scratch.
                unsafe {
                    core::ptr::write_volatile(addr as *mut u64, rng.interesting());
                    core::ptr::write_volatile((addr + 8) as *mut u32, rng.interesting() as u32);
                    core::ptr::write_volatile((addr + 12) as *mut u32, rng.below(4) as u32);
                }
            }
        }
        let write = if rng.chance(7, 8) {
            device_writes
        } else {
            !device_writes
        };
        out[n] = (addr, len, if write { DESC_WRITE } else { 0 });
        n += 1;
    }
    let status = mem.dma_pointer(rng, 1);
    out[n] = (
        status,
        rng.pick(&[1, 1, 1, 0, 2]),
        if rng.chance(7, 8) { DESC_WRITE } else { 0 },
    );
    n + 1
}

/// A request the device should complete: IN, OUT, FLUSH or GET_ID with 1-2 buffers of whole
/// sectors in scratch, inside the 1 MiB disk most of the time (§5.2.6).
fn valid_block_request(rng: &mut Rng, mem: &Mem, out: &mut [(u64, u32, u16); 5]) -> usize {
    const DISK_SECTORS: u64 = 2048;
    let kind = rng.pick(&[0u32, 0, 1, 1, 4, 8]);
    let buffers = if kind == 4 {
        0
    } else {
        rng.range(1, 2) as usize
    };
    let sectors: [u64; 2] = [rng.range(1, 16), rng.range(1, 16)];
    let total: u64 = sectors[..buffers].iter().sum();
    let sector = rng.below(DISK_SECTORS.saturating_sub(total).max(1) + 4);
    let header = mem.any_region(rng, 16, 16);
    // SAFETY: 16 bytes of scratch.
    unsafe {
        core::ptr::write_volatile(header as *mut u32, kind);
        core::ptr::write_volatile((header + 4) as *mut u32, 0);
        core::ptr::write_volatile((header + 8) as *mut u64, sector);
    }
    out[0] = (header, 16, 0);
    let flags = if kind == 1 { 0 } else { DESC_WRITE };
    for (k, &n) in sectors[..buffers].iter().enumerate() {
        let len = if kind == 8 { 20 } else { n * BLK_SECTOR };
        out[1 + k] = (mem.scratch(rng, len, BLK_SECTOR), len as u32, flags);
    }
    out[1 + buffers] = (mem.any_region(rng, 1, 1), 1, DESC_WRITE);
    buffers + 2
}

/// Fills a scratch buffer with an Ethernet frame (ARP request or ICMP echo request to the
/// gateway, or garbage) after a zeroed virtio_net_hdr; returns its length.
fn frame(rng: &mut Rng, mac: [u8; 6], buf: u64) -> u64 {
    let mut f = [0u8; 98];
    let kind = rng.below(3);
    let len = match kind {
        0 => {
            // ARP who-has 192.0.2.1 (RFC 826).
            f[0..6].copy_from_slice(&[0xFF; 6]);
            f[6..12].copy_from_slice(&mac);
            f[12..14].copy_from_slice(&[0x08, 0x06]);
            f[14..22].copy_from_slice(&[0, 1, 0x08, 0x00, 6, 4, 0, 1]);
            f[22..28].copy_from_slice(&mac);
            f[28..32].copy_from_slice(&GUEST_IP);
            f[38..42].copy_from_slice(&GATEWAY_IP);
            42
        }
        1 => {
            // ICMP echo request to the gateway (RFC 791, RFC 792), 56 bytes of payload.
            f[0..6].copy_from_slice(&GATEWAY_MAC);
            f[6..12].copy_from_slice(&mac);
            f[12..14].copy_from_slice(&[0x08, 0x00]);
            let ip = &mut f[14..34];
            ip.copy_from_slice(&[
                0x45, 0, 0, 84, 0, 1, 0, 0, 64, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            ]);
            ip[12..16].copy_from_slice(&GUEST_IP);
            ip[16..20].copy_from_slice(&GATEWAY_IP);
            let c = checksum(ip);
            ip[10..12].copy_from_slice(&c.to_be_bytes());
            let icmp = &mut f[34..98];
            icmp[0] = 8;
            icmp[4..6].copy_from_slice(&[0x12, 0x34]);
            icmp[6..8].copy_from_slice(&(rng.next() as u16).to_be_bytes());
            for (k, b) in icmp[8..].iter_mut().enumerate() {
                *b = k as u8;
            }
            if rng.chance(7, 8) {
                let c = checksum(icmp);
                icmp[2..4].copy_from_slice(&c.to_be_bytes());
            }
            98
        }
        _ => {
            for b in f.iter_mut() {
                *b = rng.next() as u8;
            }
            rng.range(0, 98) as usize
        }
    };
    // SAFETY: the caller passes a scratch buffer of NET_HDR + 98 bytes.
    unsafe {
        core::ptr::write_bytes(buf as *mut u8, 0, NET_HDR as usize);
        core::ptr::copy_nonoverlapping(f.as_ptr(), (buf + NET_HDR) as *mut u8, len);
    }
    NET_HDR + len as u64
}

/// The Internet checksum (RFC 1071).
fn checksum(bytes: &[u8]) -> u16 {
    let mut sum = 0u32;
    for pair in bytes.chunks(2) {
        let word = u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
        sum += u32::from(word);
    }
    while sum > 0xFFFF {
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    !(sum as u16)
}

/// Builds one chain's descriptors (as addr, len, flags) for queue `qi` of `dev`.
fn chain(rng: &mut Rng, mem: &Mem, dev: &Device, qi: u64, out: &mut [(u64, u32, u16); 5]) -> usize {
    match (dev.id, qi) {
        (DEVICE_BLOCK, _) => block_request(rng, mem, out),
        (DEVICE_NET, NET_TX) => {
            let buf = mem.any_region(rng, NET_HDR + 98, 2);
            let len = frame(rng, dev.mac, buf);
            if rng.chance(1, 2) {
                out[0] = (buf, len as u32, 0);
                1
            } else {
                out[0] = (buf, NET_HDR as u32, 0);
                out[1] = (buf + NET_HDR, (len - NET_HDR) as u32, 0);
                2
            }
        }
        _ if rng.chance(1, 2) => {
            // A receive buffer the device can fill: header and a full frame (§5.1.6.3).
            out[0] = (mem.scratch(rng, 2048, 2), 2048, DESC_WRITE);
            1
        }
        _ => {
            let n = rng.range(1, 3) as usize;
            for slot in out.iter_mut().take(n) {
                let any = buf_len(rng);
                let len = rng.pick(&[NET_HDR as u32, 1526, 2048, 0, 65535, any]);
                *slot = (mem.dma_pointer(rng, u64::from(len)), len, DESC_WRITE);
            }
            n
        }
    }
}

/// Puts 1..k chains on a queue of the device (well-formed, random, indirect, looping), makes
/// them available and notifies the device.
fn submit(rng: &mut Rng, mem: &Mem, dev: &mut Device) {
    let qi = rng.below(2);
    let q = dev.queues[qi as usize];
    let r = rng.next() & 0xFFFF_FFFF;
    let notify = rng.pick(&[qi, qi, qi, qi, qi ^ 1, 0xFFFF, r]);
    if !q.owned {
        trace!(
            "virtio at {:#x}: notify {notify:#x} (queue {qi} not set up)",
            dev.base
        );
        write32(dev.base + QUEUE_NOTIFY, notify as u32);
        return;
    }
    let size = u64::from(q.size);
    let chains = match rng.below(8) {
        0 => size.min(256),
        _ => rng.range(1, size.min(4)),
    };
    let mut kinds = [0u64; 4];
    for j in 0..chains {
        let kind = rng.weighted(&[6, 2, 2, 1]) as u64;
        kinds[(kind as usize).min(3)] += 1;
        let head = if rng.chance(31, 32) {
            rng.below(size)
        } else {
            size + rng.below(4)
        };
        if head < size {
            // SAFETY: the descriptor table lies in scratch (q.owned) and head < size.
            unsafe { fill_chain(rng, mem, dev, &q, qi, head, kind) };
        }
        let slot = q.avail + 4 + 2 * ((u64::from(q.next_avail) + j) % size);
        // SAFETY: the avail ring lies in scratch (q.owned).
        unsafe { core::ptr::write_volatile(slot as *mut u16, head as u16) };
    }
    let idx = match rng.below(20) {
        0 => rng.next() as u16,
        1 => q.next_avail.wrapping_add(0x8000),
        _ => q.next_avail.wrapping_add(chains as u16),
    };
    let r = rng.next() as u16;
    let flags = rng.pick(&[0u16, 0, AVAIL_NO_INTERRUPT, r]);
    let used_event = rng.next() as u16;
    trace!(
        "virtio at {:#x}: queue {qi} chains={chains} (request/random/indirect/loop {}/{}/{}/{}) idx={idx} flags={flags:#x} notify={notify:#x}",
        dev.base, kinds[0], kinds[1], kinds[2], kinds[3]
    );
    // SAFETY: the avail ring lies in scratch (q.owned): flags, idx, used_event (§2.7.6).
    unsafe {
        core::ptr::write_volatile((q.avail + 4 + 2 * size) as *mut u16, used_event);
        core::ptr::write_volatile(q.avail as *mut u16, flags);
        core::ptr::write_volatile((q.avail + 2) as *mut u16, idx);
    }
    dev.queues[qi as usize].next_avail = idx;
    write32(dev.base + QUEUE_NOTIFY, notify as u32);
}

/// Writes the chain starting at descriptor `head`: kind 0 a well-formed request/frame/buffers,
/// 1 random descriptors, 2 an indirect table, 3 a loop.
///
/// # Safety
/// The queue's descriptor table must lie in scratch and `head < q.size`.
unsafe fn fill_chain(
    rng: &mut Rng,
    mem: &Mem,
    dev: &Device,
    q: &Queue,
    qi: u64,
    head: u64,
    kind: u64,
) {
    let size = u64::from(q.size);
    let mut parts = [(0u64, 0u32, 0u16); 5];
    match kind {
        0 => {
            let n = chain(rng, mem, dev, qi, &mut parts);
            let mut at = head;
            for (k, &(addr, len, flags)) in parts[..n].iter().enumerate() {
                let last = k + 1 == n;
                let next = if last { 0 } else { rng.below(size) };
                let f = if last { flags } else { flags | DESC_NEXT };
                // SAFETY: at < size, table in scratch.
                unsafe { put_desc(q.desc, at, addr, len, f, next as u16) };
                at = next;
            }
        }
        1 => {
            let n = rng.range(1, 6);
            let mut at = head;
            for _ in 0..n {
                let (addr, len, flags, next) = random_desc(rng, mem, q, at, size);
                // SAFETY: at < size, table in scratch.
                unsafe { put_desc(q.desc, at, addr, len, flags, next) };
                at = u64::from(next) % size;
            }
        }
        2 => {
            // An indirect table in scratch (virtio 1.2 §2.7.5.3), sometimes nested or
            // pointing at itself.
            let n = rng.range(1, 16);
            // Room for 16 entries: a well-formed chain has up to 5.
            let table = mem.any_region(rng, 16 * DESC_SIZE, 16);
            let well_formed = rng.chance(1, 2);
            let count = if well_formed {
                chain(rng, mem, dev, qi, &mut parts) as u64
            } else {
                n
            };
            for k in 0..count {
                let (mut addr, mut len, mut flags, mut next) = if well_formed {
                    let (a, l, f) = parts[k as usize];
                    let last = k + 1 == count;
                    (a, l, if last { f } else { f | DESC_NEXT }, (k + 1) as u16)
                } else {
                    random_desc(rng, mem, q, k, n)
                };
                if rng.chance(1, 8) {
                    // Self-referencing: an indirect descriptor inside the table to itself.
                    (addr, len, flags) = (table, (n * DESC_SIZE) as u32, DESC_INDIRECT);
                    next = k as u16;
                }
                // SAFETY: the table (n ≥ count entries) lies in scratch.
                unsafe { put_desc(table, k, addr, len, flags, next) };
            }
            let len = match rng.below(6) {
                0 => 0,
                1 => 0xFFFF_FFFF,
                2 => (count * DESC_SIZE + 8) as u32,
                _ => (count * DESC_SIZE) as u32,
            };
            let addr = match rng.below(8) {
                0 => q.desc,
                1 => mem.dma_pointer(rng, u64::from(len)),
                _ => table,
            };
            let flags = DESC_INDIRECT | rng.pick(&[0, 0, DESC_NEXT, DESC_WRITE]);
            // SAFETY: head < size, table in scratch.
            unsafe { put_desc(q.desc, head, addr, len, flags, rng.below(size) as u16) };
        }
        _ => {
            // A loop: head -> a -> ... -> head.
            let n = rng.range(1, 4);
            let mut at = head;
            for k in 0..n {
                let next = if k + 1 == n { head } else { rng.below(size) };
                let len = buf_len(rng);
                let addr = mem.dma_pointer(rng, u64::from(len));
                // SAFETY: at < size, table in scratch.
                unsafe {
                    put_desc(
                        q.desc,
                        at,
                        addr,
                        len,
                        DESC_NEXT | rng.pick(&[0, DESC_WRITE]),
                        next as u16,
                    )
                };
                at = next;
            }
        }
    }
}
