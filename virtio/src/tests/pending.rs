//! virtio-blk over an asynchronous backend (a drive): `BackendError::Pending` keeps the
//! request in flight and the device asks again later; the guest sees the completion only
//! once the backend finished, and never an error for the wait.

use super::*;
use crate::blk::{BackendError, BlockBackend};
use crate::mmio::VirtioDevice as _;
use crate::spec::{blk_status, BlkRequestType as T};
use crate::testing::Buf;

/// A RAM disk that answers every new transfer `Pending` `waits` times first, and records
/// what it was asked (a write is "on the drive" only when it answered Ok).
#[derive(Debug)]
struct Slow {
    disk: RamDisk,
    waits: u32,
    left: u32,
    asked: Option<(u8, u64, usize)>,
    pendings: u64,
    flushes: u64,
}

impl Slow {
    fn wait(&mut self, key: (u8, u64, usize)) -> Result<(), BackendError> {
        if self.asked != Some(key) {
            self.asked = Some(key);
            self.left = self.waits;
        }
        if self.left > 0 {
            self.left -= 1;
            self.pendings += 1;
            return Err(BackendError::Pending);
        }
        self.asked = None;
        Ok(())
    }
}

impl BlockBackend for Slow {
    fn len(&self) -> u64 {
        self.disk.len()
    }
    fn read_only(&self) -> bool {
        false
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), BackendError> {
        self.wait((0, offset, buf.len()))?;
        self.disk.read_at(offset, buf)
    }
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), BackendError> {
        self.wait((1, offset, data.len()))?;
        self.disk.write_at(offset, data)
    }
    fn flush(&mut self) -> Result<(), BackendError> {
        self.wait((2, 0, 0))?;
        self.flushes += 1;
        Ok(())
    }
    fn supports_zeroes(&self) -> bool {
        false
    }
}

type SlowBlk = MmioTransport<BlockDevice<Slow>>;

fn slow(waits: u32) -> (crate::testing::Driver, SlowBlk) {
    let backend = Slow {
        disk: RamDisk::new(1 << 20),
        waits,
        left: 0,
        asked: None,
        pendings: 0,
        flushes: 0,
    };
    let mut t = MmioTransport::new(BlockDevice::new(backend));
    let mut d = crate::testing::Driver::new(1 << 20);
    d.setup(&mut t, ALL_FEATURES, 64).expect("setup");
    (d, t)
}

/// Submits one request and calls the device until it completes; returns (status, used
/// length, calls it took).
fn run<B: BlockBackend>(
    d: &mut crate::testing::Driver,
    t: &mut MmioTransport<BlockDevice<B>>,
    ty: u32,
    sector: u64,
    data: &[Buf],
) -> (u8, u32, u32) {
    let (bufs, st) = d.blk_request(ty, sector, data);
    d.add_chain(0, &bufs);
    let mut e = d.kick(t, 0);
    let mut calls = 1;
    while d.used_idx(0) == 0 || d.pop_used(0).is_none() {
        assert!(
            e.more,
            "the device stopped asking while a request was in flight"
        );
        e = t.process_kicks(&mut d.mem);
        calls += 1;
        assert!(calls < 1000);
    }
    (d.read(st, 1)[0], 0, calls)
}

#[test]
fn pending_transfers_complete_later_without_errors() {
    let (mut d, mut t) = slow(3);
    let data: Vec<u8> = (0..8192u32).map(|i| (i * 7) as u8).collect();
    let a = d.alloc_data(&data);
    let (s, _, calls) = run(&mut d, &mut t, T::OUT, 8, &[Buf::r(a, 8192)]);
    assert_eq!(s, blk_status::OK);
    // Two 4 KiB chunks, each answered Pending 3 times: 6 waits, so at least 7 calls.
    assert!(calls >= 7, "{calls}");
    assert_eq!(t.device().backend().pendings, 6);
    let x = d.alloc(8192, 16);
    let (s, _, _) = run(&mut d, &mut t, T::IN, 8, &[Buf::w(x, 8192)]);
    assert_eq!(s, blk_status::OK);
    assert_eq!(d.read(x, 8192), data);
    let (s, _, calls) = run(&mut d, &mut t, T::FLUSH, 0, &[]);
    assert_eq!((s, t.device().backend().flushes), (blk_status::OK, 1));
    assert!(calls >= 4);
    let st = t.stats();
    assert_eq!((st.requests, st.errors), (3, 0));
    // No DISCARD / WRITE_ZEROES from a backend without them.
    assert_eq!(
        t.device().device_features() & (feature::BLK_DISCARD | feature::BLK_WRITE_ZEROES),
        0
    );
}

/// A backend that asks for larger transfers ([`BlockBackend::max_transfer`], a drive's
/// command size) gets a 64 KiB request in one call, and one beyond `MAX_TRANSFER` in
/// `MAX_TRANSFER` pieces; the default backend gets 4 KiB pieces.
#[derive(Debug)]
struct Big {
    disk: RamDisk,
    max: usize,
    calls: Vec<(u8, u64, usize)>,
}

impl BlockBackend for Big {
    fn len(&self) -> u64 {
        self.disk.len()
    }
    fn read_only(&self) -> bool {
        false
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), BackendError> {
        self.calls.push((0, offset, buf.len()));
        self.disk.read_at(offset, buf)
    }
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), BackendError> {
        self.calls.push((1, offset, data.len()));
        self.disk.write_at(offset, data)
    }
    fn flush(&mut self) -> Result<(), BackendError> {
        Ok(())
    }
    fn max_transfer(&self) -> usize {
        self.max
    }
    fn write_zeroes(&mut self, offset: u64, len: u64) -> Result<(), BackendError> {
        self.calls.push((2, offset, len as usize));
        self.disk.write_zeroes(offset, len)
    }
    /// Leaves the data (as a store disk on a drive without TRIM does).
    fn discard(&mut self, offset: u64, len: u64) -> Result<(), BackendError> {
        self.calls.push((3, offset, len as usize));
        Ok(())
    }
}

fn big_calls(max: usize, bytes: u32) -> Vec<(u8, u64, usize)> {
    let backend = Big {
        disk: RamDisk::new(1 << 20),
        max,
        calls: Vec::new(),
    };
    let mut t = MmioTransport::new(BlockDevice::new(backend));
    let mut d = crate::testing::Driver::new(1 << 20);
    d.setup(&mut t, ALL_FEATURES, 64).expect("setup");
    let data: Vec<u8> = (0..bytes).map(|i| (i * 13 + 5) as u8).collect();
    let a = d.alloc_data(&data);
    // 16 KiB segments (within size_max and seg_max).
    let seg = u64::from(bytes).min(16 * 1024);
    let segs = |at: u64, w: bool| -> Vec<Buf> {
        (0..u64::from(bytes) / seg)
            .map(|i| {
                if w {
                    Buf::w(at + i * seg, seg as u32)
                } else {
                    Buf::r(at + i * seg, seg as u32)
                }
            })
            .collect()
    };
    let (bufs, st) = d.blk_request(T::OUT, 16, &segs(a, false));
    d.add_chain(0, &bufs);
    let mut e = d.kick(&mut t, 0);
    while d.pop_used(0).is_none() {
        assert!(e.more, "the write stopped");
        e = t.process_kicks(&mut d.mem);
    }
    assert_eq!(d.read(st, 1)[0], blk_status::OK);
    let x = d.alloc(bytes.into(), 16);
    let (bufs, st) = d.blk_request(T::IN, 16, &segs(x, true));
    d.add_chain(0, &bufs);
    let mut e = d.kick(&mut t, 0);
    while d.pop_used(0).is_none() {
        assert!(e.more, "the read stopped");
        e = t.process_kicks(&mut d.mem);
    }
    assert_eq!(d.read(st, 1)[0], blk_status::OK);
    assert!(d.read(x, bytes as usize) == data, "read back");
    t.device().backend().calls.clone()
}

#[test]
fn a_backend_gets_transfers_of_its_own_size() {
    let base = 16 * 512;
    assert_eq!(
        big_calls(64 * 1024, 65536),
        vec![(1, base, 65536), (0, base, 65536)]
    );
    // 128 KiB with a backend asking for 1 MiB: clamped to MAX_TRANSFER (64 KiB).
    assert_eq!(crate::blk::MAX_TRANSFER, 65536);
    assert_eq!(
        big_calls(1 << 20, 131072),
        vec![
            (1, base, 65536),
            (1, base + 65536, 65536),
            (0, base, 65536),
            (0, base + 65536, 65536)
        ]
    );
    // Not a whole number of sectors: rounded down (4700 -> 4608 = 9 sectors).
    assert_eq!(
        big_calls(4700, 8192),
        vec![
            (1, base, 4608),
            (1, base + 4608, 3584),
            (0, base, 4608),
            (0, base + 4608, 3584)
        ]
    );
    // The default: 4 KiB pieces.
    assert_eq!(big_calls(crate::blk::CHUNK, 8192).len(), 4);
}

/// DISCARD reaches the backend's `discard` (which may leave the data), WRITE_ZEROES its
/// `write_zeroes`; both are offered with their limits in the config space (virtio 1.2
/// §5.2.4: max_discard_sectors at 36, max_write_zeroes_sectors at 48).
#[test]
fn discard_and_write_zeroes_reach_their_own_backend_calls() {
    let backend = Big {
        disk: RamDisk::new(1 << 20),
        max: 4096,
        calls: Vec::new(),
    };
    let mut t = MmioTransport::new(BlockDevice::new(backend));
    let mut d = crate::testing::Driver::new(1 << 20);
    d.setup(&mut t, ALL_FEATURES, 64).expect("setup");
    assert_eq!(
        t.device().device_features() & (feature::BLK_DISCARD | feature::BLK_WRITE_ZEROES),
        feature::BLK_DISCARD | feature::BLK_WRITE_ZEROES
    );
    let mut cfg = [0u8; 60];
    t.device().read_config(0, &mut cfg);
    assert_eq!(
        u32::from_le_bytes(cfg[36..40].try_into().unwrap()),
        0x0040_0000
    );
    assert_eq!(
        u32::from_le_bytes(cfg[48..52].try_into().unwrap()),
        0x0040_0000
    );
    let ones = d.alloc_data(&[0xEE; 4096]);
    let (s, _, _) = run(&mut d, &mut t, T::OUT, 0, &[Buf::r(ones, 4096)]);
    assert_eq!(s, blk_status::OK);
    let mut seg = [0u8; 16];
    seg[..8].copy_from_slice(&1u64.to_le_bytes());
    seg[8..12].copy_from_slice(&2u32.to_le_bytes());
    let a = d.alloc_data(&seg);
    let (s, _, _) = run(&mut d, &mut t, T::DISCARD, 0, &[Buf::r(a, 16)]);
    assert_eq!(s, blk_status::OK);
    seg[..8].copy_from_slice(&4u64.to_le_bytes());
    let a = d.alloc_data(&seg);
    let (s, _, _) = run(&mut d, &mut t, T::WRITE_ZEROES, 0, &[Buf::r(a, 16)]);
    assert_eq!(s, blk_status::OK);
    assert_eq!(
        t.device().backend().calls,
        vec![(1, 0, 4096), (3, 512, 1024), (2, 2048, 1024)]
    );
    let mut disk = vec![0u8; 4096];
    t.device_mut()
        .backend_mut()
        .disk
        .read_at(0, &mut disk)
        .unwrap();
    // The discarded sectors 1-2 kept their data; sectors 4-5 are zero.
    assert!(disk[..2048].iter().all(|&b| b == 0xEE));
    assert!(disk[2048..3072].iter().all(|&b| b == 0));
    assert!(disk[3072..].iter().all(|&b| b == 0xEE));
}
