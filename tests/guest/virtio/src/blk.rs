//! virtio-blk checks and benchmarks through `virtio_drivers::device::blk::VirtIOBlk`.

use crate::hal::IdentityHal;
use crate::irq;
use crate::stats;
use crate::util::{Fnv, Text, XorShift};
use core::sync::atomic::Ordering;
use guest_rt::cpu::rdtsc;
use guest_rt::report::{fail, pass};
use guest_rt::say;
use virtio_drivers::device::blk::{BlkReq, BlkResp, RespStatus, VirtIOBlk, SECTOR_SIZE};
use virtio_drivers::transport::mmio::MmioTransport;
use virtio_drivers::Error;

pub type Blk = VirtIOBlk<IdentityHal, MmioTransport<'static>>;

/// The crate's fixed queue size for VirtIOBlk (`QUEUE_SIZE` in device/blk.rs): with indirect
/// descriptors, at most this many requests are in flight.
pub const QUEUE_SLOTS: usize = 16;

const RW_SECTORS: usize = 64;
const RW_FIRST: usize = 40_000 % 1024 + 8; // an arbitrary, unaligned start sector
const BATCH: usize = 32;
const BATCH_REQ_BYTES: usize = 4096;
const BATCH_FIRST: usize = 4096; // sector 4096 = 2 MiB
const BENCH_MAX_BYTES: u64 = 16 << 20;
const BENCH_BUF_BYTES: usize = QUEUE_SLOTS * 64 * 1024;

#[repr(C, align(4096))]
struct Aligned<const N: usize>([u8; N]);

static mut RW_BUF: Aligned<{ RW_SECTORS * SECTOR_SIZE }> = Aligned([0; RW_SECTORS * SECTOR_SIZE]);
static mut RW_BACK: Aligned<{ RW_SECTORS * SECTOR_SIZE }> = Aligned([0; RW_SECTORS * SECTOR_SIZE]);
static mut BATCH_BUF: Aligned<{ BATCH * BATCH_REQ_BYTES }> = Aligned([0; BATCH * BATCH_REQ_BYTES]);
static mut BENCH_BUF: Aligned<BENCH_BUF_BYTES> = Aligned([0; BENCH_BUF_BYTES]);

/// A mutable view of one of the statics above.
///
/// # Safety
/// Single vCPU: the caller must not hold another reference to the same static.
unsafe fn buf<const N: usize>(s: *mut Aligned<N>) -> &'static mut [u8; N] {
    // SAFETY: the caller guarantees exclusivity; the static lives forever.
    unsafe { &mut (*s).0 }
}

/// Opens the device at `base` (0x200-byte window).
pub fn open(base: u64) -> Result<Blk, guest_rt::report::Detail> {
    let header = core::ptr::NonNull::new(base as *mut _).expect("non-zero base");
    // SAFETY: `base` is the virtio-mmio window the hypervisor maps for this VM (0x200 bytes:
    // header + config space), identity-mapped, valid for the rest of the program and used
    // only through this transport (the interrupt handler touches only InterruptStatus/ACK).
    let transport = unsafe { MmioTransport::new(header, 0x200) }
        .map_err(|e| guest_rt::detail!("MmioTransport::new({base:#x}): {e}"))?;
    VirtIOBlk::<IdentityHal, _>::new(transport)
        .map_err(|e| guest_rt::detail!("VirtIOBlk::new: {e}"))
}

/// Capacity, write-read, flush, out-of-range.
pub fn functional(blk: &mut Blk) {
    let cap = blk.capacity();
    say!(
        "blk capacity={} sectors ({} KiB) readonly={}",
        cap,
        cap * SECTOR_SIZE as u64 / 1024,
        blk.readonly()
    );
    if cap >= (RW_FIRST + RW_SECTORS) as u64 {
        pass("blk-capacity");
    } else {
        fail("blk-capacity", format_args!("{cap} sectors is too small"));
        return;
    }

    // Write 64 sectors in 4 KiB requests, read them back in one 32 KiB request.
    // SAFETY: the only references to RW_BUF / RW_BACK.
    let (out, back) = unsafe {
        (
            buf(core::ptr::addr_of_mut!(RW_BUF)),
            buf(core::ptr::addr_of_mut!(RW_BACK)),
        )
    };
    XorShift::new(0x5eed_b10c).fill(out);
    let mut wsum = Fnv::default();
    wsum.update(out);
    let mut result = Ok(());
    for (i, chunk) in out.chunks(4096).enumerate() {
        if let Err(e) = blk.write_blocks(RW_FIRST + i * 8, chunk) {
            result = Err(guest_rt::detail!("write_blocks({}): {e}", RW_FIRST + i * 8));
            break;
        }
    }
    if result.is_ok() {
        back.fill(0);
        if let Err(e) = blk.read_blocks(RW_FIRST, back) {
            result = Err(guest_rt::detail!("read_blocks({RW_FIRST}, 32 KiB): {e}"));
        }
    }
    let mut rsum = Fnv::default();
    rsum.update(back);
    match result {
        Ok(()) if wsum.finish() == rsum.finish() && out[..] == back[..] => pass(
            Text::new(format_args!(
                "blk-write-read checksum={:016x} sectors={}",
                rsum.finish(),
                RW_SECTORS
            ))
            .as_str(),
        ),
        Ok(()) => {
            let first = out.iter().zip(back.iter()).position(|(a, b)| a != b);
            fail(
                "blk-write-read",
                format_args!(
                    "checksum written {:016x} read {:016x}, first difference at byte {:?}",
                    wsum.finish(),
                    rsum.finish(),
                    first
                ),
            )
        }
        Err(e) => fail("blk-write-read", format_args!("{e}")),
    }

    match blk.flush() {
        Ok(()) => pass("blk-flush"),
        Err(e) => fail("blk-flush", format_args!("{e}")),
    }

    // A read of the sector just past the end, and one that straddles the end, must fail.
    let past = blk.read_blocks(cap as usize, &mut back[..SECTOR_SIZE]);
    let straddle = blk.read_blocks(cap as usize - 1, &mut back[..2 * SECTOR_SIZE]);
    let last = blk.read_blocks(cap as usize - 1, &mut back[..SECTOR_SIZE]);
    match (past, straddle, last) {
        (Err(Error::IoError), Err(Error::IoError), Ok(())) => pass("blk-out-of-range"),
        (p, s, l) => fail(
            "blk-out-of-range",
            format_args!(
                "read at capacity {cap}: {p:?}, straddling: {s:?} (both should be IoError); last sector: {l:?} (should be Ok)"
            ),
        ),
    }
}

/// A 128 KiB write and read, each one request with one 128 KiB data segment. virtio-drivers
/// does not negotiate VIRTIO_BLK_F_SIZE_MAX / SEG_MAX (its SUPPORTED_FEATURES lack them), so
/// the device's size_max (64 KiB) does not bind this driver (virtio 1.2 §5.2.3: the limit is
/// only announced with the feature): a conforming device must accept the request.
pub fn large_request(blk: &mut Blk) {
    const LEN: usize = 128 * 1024;
    // SAFETY: the only reference to BENCH_BUF while this runs.
    let data = unsafe { buf(core::ptr::addr_of_mut!(BENCH_BUF)) };
    let (out, back) = data.split_at_mut(LEN);
    let back = &mut back[..LEN];
    XorShift::new(0x1a29e).fill(out);
    back.fill(0);
    let sector = BATCH_FIRST + 1024; // beyond the batch region
    let w = blk.write_blocks(sector, out);
    let r = blk.read_blocks(sector, back);
    match (w, r) {
        (Ok(()), Ok(())) if out[..] == back[..] => pass("blk-large-request"),
        (Ok(()), Ok(())) => fail("blk-large-request", format_args!("128 KiB read back differs")),
        (w, r) => fail(
            "blk-large-request",
            format_args!(
                "one-segment 128 KiB write {w:?}, read {r:?}: the hypervisor's virtio-blk enforces size_max=64K though SIZE_MAX was not negotiated"
            ),
        ),
    }
}

/// One in-flight request's buffers.
struct Slot {
    req: BlkReq,
    resp: BlkResp,
}

fn new_slots() -> [Slot; BATCH] {
    core::array::from_fn(|_| Slot {
        req: BlkReq::default(),
        resp: BlkResp::default(),
    })
}

/// Submits `n` requests of `BATCH_REQ_BYTES` (writes or reads) with the non-blocking API,
/// as many at once as the queue takes, sleeping in `sti; hlt` for the completion interrupt
/// whenever the queue is full or everything is submitted. Returns (max in flight, rounds,
/// interrupt waits that timed out).
fn batch_phase(
    blk: &mut Blk,
    write: bool,
    data: &mut [u8],
) -> Result<(usize, usize, usize), guest_rt::report::Detail> {
    let mut slots = new_slots();
    let mut token_slot = [usize::MAX; QUEUE_SLOTS];
    let (mut next, mut done, mut inflight, mut max_inflight, mut rounds, mut timeouts) =
        (0, 0, 0, 0, 0, 0);
    while done < BATCH {
        let irq_before = irq::BLK.interrupts();
        while next < BATCH {
            let sector = BATCH_FIRST + next * (BATCH_REQ_BYTES / SECTOR_SIZE);
            let chunk = &mut data[next * BATCH_REQ_BYTES..(next + 1) * BATCH_REQ_BYTES];
            let s = &mut slots[next];
            // SAFETY: `s.req`, `s.resp` and `chunk` are not touched again until the request
            // completes and `complete_*_blocks` gets the same buffers.
            let r = unsafe {
                if write {
                    blk.write_blocks_nb(sector, &mut s.req, chunk, &mut s.resp)
                } else {
                    blk.read_blocks_nb(sector, &mut s.req, chunk, &mut s.resp)
                }
            };
            match r {
                Ok(token) => {
                    let t = usize::from(token);
                    if t >= QUEUE_SLOTS || token_slot[t] != usize::MAX {
                        return Err(guest_rt::detail!("token {token} reused or out of range"));
                    }
                    token_slot[t] = next;
                    next += 1;
                    inflight += 1;
                    max_inflight = max_inflight.max(inflight);
                }
                Err(Error::QueueFull) if inflight > 0 => break,
                Err(e) => return Err(guest_rt::detail!("request {next}: {e}")),
            }
        }
        rounds += 1;
        // Sleep until the device's completion interrupt (the PIT bounds the wait).
        let (got, _halts) = irq::wait_until(|| irq::BLK.interrupts() > irq_before, 20);
        if !got {
            timeouts += 1;
        }
        while let Some(token) = blk.peek_used() {
            let t = usize::from(token);
            let i = token_slot.get(t).copied().unwrap_or(usize::MAX);
            if i >= BATCH {
                return Err(guest_rt::detail!(
                    "used ring returned unknown token {token}"
                ));
            }
            token_slot[t] = usize::MAX;
            let chunk = &mut data[i * BATCH_REQ_BYTES..(i + 1) * BATCH_REQ_BYTES];
            let s = &mut slots[i];
            // SAFETY: the same buffers as were passed when the token was returned.
            let r = unsafe {
                if write {
                    blk.complete_write_blocks(token, &s.req, chunk, &mut s.resp)
                } else {
                    blk.complete_read_blocks(token, &s.req, chunk, &mut s.resp)
                }
            };
            if let Err(e) = r {
                return Err(guest_rt::detail!("request {i} completed with {e}"));
            }
            if s.resp.status() != RespStatus::OK {
                return Err(guest_rt::detail!(
                    "request {i} status {:?}",
                    s.resp.status()
                ));
            }
            done += 1;
            inflight -= 1;
        }
        if rounds > 4 * BATCH {
            return Err(guest_rt::detail!("no progress: {done}/{BATCH} completed"));
        }
    }
    Ok((max_inflight, rounds, timeouts))
}

/// 32 writes, then 32 reads, queued with `write_blocks_nb` / `read_blocks_nb`, completions
/// awaited with `sti; hlt` (interrupt-driven); data verified.
pub fn batch(blk: &mut Blk) {
    // SAFETY: the only reference to BATCH_BUF.
    let data = unsafe { buf(core::ptr::addr_of_mut!(BATCH_BUF)) };
    XorShift::new(0xba7c_4032).fill(data);
    let mut want = Fnv::default();
    want.update(data);

    irq::drain();
    let irq0 = irq::BLK.interrupts();
    let s0 = stats::snapshot();
    let w = batch_phase(blk, true, data);
    let s1 = stats::snapshot();
    let irq_w = irq::BLK.interrupts() - irq0;
    data.fill(0);
    let r = batch_phase(blk, false, data);
    let s2 = stats::snapshot();
    let irq_r = irq::BLK.interrupts() - irq0 - irq_w;
    let mut got = Fnv::default();
    got.update(data);

    for (what, res, d, irqs) in [
        ("write", &w, stats::delta(&s0, &s1), irq_w),
        ("read", &r, stats::delta(&s1, &s2), irq_r),
    ] {
        if let Ok((max_inflight, rounds, timeouts)) = res {
            // Each interrupt costs two MMIO exits in the handler (status read + ACK write);
            // the rest are QueueNotify writes.
            say!(
                "blk batch {what}: requests={BATCH} queued-at-once={max_inflight} rounds={rounds} interrupts={irqs} wait-timeouts={timeouts} exits={} mmio_exits={} notifications~={}",
                d.total,
                d.mmio,
                d.mmio.saturating_sub(2 * irqs)
            );
        }
    }
    say!(
        "blk batch: queue size {} (virtio-drivers VirtIOBlk QUEUE_SIZE), so at most {} of the 32 requests are queued at once; the rest are queued as completions free slots",
        blk.virt_queue_size(),
        blk.virt_queue_size()
    );
    match (w, r) {
        (Ok(_), Ok(_)) if want.finish() == got.finish() => pass("blk-batch-32"),
        (Ok(_), Ok(_)) => fail(
            "blk-batch-32",
            format_args!(
                "read back checksum {:016x}, written {:016x}",
                got.finish(),
                want.finish()
            ),
        ),
        (Err(e), _) => fail("blk-batch-32", format_args!("writes: {e}")),
        (_, Err(e)) => fail("blk-batch-32", format_args!("reads: {e}")),
    }
    let total = irq::BLK.interrupts();
    say!(
        "blk interrupts={} (batch: {} for writes, {} for reads; used-buffer={} config-change={} spurious={})",
        total,
        irq_w,
        irq_r,
        irq::BLK.used_buffer.load(Ordering::Relaxed),
        irq::BLK.config_change.load(Ordering::Relaxed),
        irq::BLK.spurious.load(Ordering::Relaxed)
    );
    if irq_w + irq_r >= 1 {
        pass("blk-interrupt");
    } else {
        fail(
            "blk-interrupt",
            format_args!("no completion interrupt during the batch (total {total})"),
        );
    }
}

/// One sequential pass of `total` bytes in `req_bytes` requests, up to `inflight` queued.
fn bench_pass(
    blk: &mut Blk,
    name: &str,
    write: bool,
    req_bytes: usize,
    total: u64,
    inflight: usize,
) -> Result<(), guest_rt::report::Detail> {
    // SAFETY: the only reference to BENCH_BUF.
    let data = unsafe { buf(core::ptr::addr_of_mut!(BENCH_BUF)) };
    let requests = (total / req_bytes as u64) as usize;
    let sectors_per_req = req_bytes / SECTOR_SIZE;
    let mut slots = new_slots();
    let mut token_slot = [usize::MAX; QUEUE_SLOTS];
    let mut free: [usize; QUEUE_SLOTS] = core::array::from_fn(|i| i);
    let mut nfree = inflight;
    let (mut next, mut done) = (0usize, 0usize);
    irq::drain();
    let irq0 = irq::BLK.interrupts();
    let s0 = stats::snapshot();
    let t0 = rdtsc();
    while done < requests {
        while next < requests && nfree > 0 {
            let slot = free[nfree - 1];
            let chunk = &mut data[slot * req_bytes..(slot + 1) * req_bytes];
            let s = &mut slots[slot];
            let sector = next * sectors_per_req;
            // SAFETY: the slot's buffers are not touched until its completion.
            let r = unsafe {
                if write {
                    blk.write_blocks_nb(sector, &mut s.req, chunk, &mut s.resp)
                } else {
                    blk.read_blocks_nb(sector, &mut s.req, chunk, &mut s.resp)
                }
            };
            match r {
                Ok(token) => {
                    token_slot[usize::from(token) % QUEUE_SLOTS] = slot;
                    nfree -= 1;
                    next += 1;
                }
                Err(Error::QueueFull) => break,
                Err(e) => return Err(guest_rt::detail!("request {next}: {e}")),
            }
        }
        let mut spins = 0u64;
        while blk.peek_used().is_none() {
            spins += 1;
            if spins > 10_000_000 {
                return Err(guest_rt::detail!("no completion after {done}/{requests}"));
            }
            core::hint::spin_loop();
        }
        while let Some(token) = blk.peek_used() {
            let slot = token_slot[usize::from(token) % QUEUE_SLOTS];
            let chunk = &mut data[slot * req_bytes..(slot + 1) * req_bytes];
            let s = &mut slots[slot];
            // SAFETY: the same buffers as were passed when the token was returned.
            let r = unsafe {
                if write {
                    blk.complete_write_blocks(token, &s.req, chunk, &mut s.resp)
                } else {
                    blk.complete_read_blocks(token, &s.req, chunk, &mut s.resp)
                }
            };
            if let Err(e) = r {
                return Err(guest_rt::detail!("completion {done}: {e}"));
            }
            free[nfree] = slot;
            nfree += 1;
            done += 1;
        }
        // Open an interrupt window after each batch of completions, as an interrupt-driven
        // driver would: the completion interrupts the device raised are injected and taken
        // here (the handler counts them), so `interrupts=` counts injections.
        irq::drain();
    }
    let ticks = rdtsc() - t0;
    let irqs = irq::BLK.interrupts() - irq0;
    let d = stats::delta(&s0, &stats::snapshot());
    let mhz = u64::from(guest_rt::cpu::cpuid(0x16, 0).eax);
    // bytes / (ticks / (MHz * 1e6)) / 2^20 = bytes * MHz * 1e6 / ticks / 2^20
    let kib_s = if ticks > 0 {
        (u128::from(total) * u128::from(mhz) * 1_000_000 / u128::from(ticks) / 1024) as u64
    } else {
        0
    };
    say!(
        "BENCH {name} bytes={total} ticks={ticks} requests={requests} inflight={inflight} exits={} mmio_exits={} kib_per_s={kib_s} interrupts={irqs}",
        d.total,
        d.mmio
    );
    Ok(())
}

/// Sequential write then read of up to 16 MiB in 4 KiB and in 64 KiB requests.
pub fn benchmarks(blk: &mut Blk) {
    let cap_bytes = blk.capacity() * SECTOR_SIZE as u64;
    let total = BENCH_MAX_BYTES.min(cap_bytes & !0xFFFF);
    if total < BENCH_MAX_BYTES {
        say!(
            "blk bench: disk is {cap_bytes} bytes, using {total} bytes instead of {BENCH_MAX_BYTES}"
        );
    } else {
        say!("blk bench: {total} bytes per pass");
    }
    if total == 0 {
        fail(
            "blk-bench",
            format_args!("disk too small ({cap_bytes} bytes)"),
        );
        return;
    }
    // SAFETY: the only reference to BENCH_BUF (released before the passes take it).
    XorShift::new(0xbe4c).fill(unsafe { buf(core::ptr::addr_of_mut!(BENCH_BUF)) });
    let inflight = QUEUE_SLOTS;
    for (name, write, req) in [
        ("blk-write-4k", true, 4096),
        ("blk-read-4k", false, 4096),
        ("blk-write-64k", true, 64 * 1024),
        ("blk-read-64k", false, 64 * 1024),
    ] {
        if let Err(e) = bench_pass(blk, name, write, req, total, inflight) {
            fail(name, format_args!("{e}"));
        }
    }
}

/// Sector 0 of a persistence disk once written: magic, then the pattern's FNV-1a 64.
const PERSIST_MAGIC: &[u8; 8] = b"BKHDPERS";
/// The pattern: 64 sectors from sector 8.
const PERSIST_FIRST: usize = 8;

/// Persistence check on a store disk (device id `store:NAME`): a blank disk gets a pattern
/// (64 sectors from sector 8, written in 4 KiB requests, flushed) and then a marker with
/// its checksum in sector 0 (flushed); a disk with the marker is read back and checked, so
/// a second boot on the same drive proves the data survived.
pub fn persist(blk: &mut Blk) {
    // SAFETY: the only references to RW_BUF / RW_BACK.
    let (out, back) = unsafe {
        (
            buf(core::ptr::addr_of_mut!(RW_BUF)),
            buf(core::ptr::addr_of_mut!(RW_BACK)),
        )
    };
    let cap = blk.capacity();
    say!(
        "blk store disk capacity={cap} sectors readonly={}",
        blk.readonly()
    );
    let marker = &mut back[..SECTOR_SIZE];
    if let Err(e) = blk.read_blocks(0, marker) {
        return fail("blk-persist", format_args!("read_blocks(0): {e}"));
    }
    if &marker[..8] == PERSIST_MAGIC {
        let want = u64::from_le_bytes(marker[8..16].try_into().unwrap_or([0; 8]));
        back.fill(0);
        if let Err(e) = blk.read_blocks(PERSIST_FIRST, back) {
            return fail(
                "blk-persist-read",
                format_args!("read_blocks({PERSIST_FIRST}): {e}"),
            );
        }
        let mut sum = Fnv::default();
        sum.update(back);
        if sum.finish() == want {
            pass(
                Text::new(format_args!(
                    "blk-persist-read checksum={want:016x} sectors={RW_SECTORS}"
                ))
                .as_str(),
            );
            if blk.readonly() {
                readonly_write(blk, &mut back[..SECTOR_SIZE]);
            }
        } else {
            fail(
                "blk-persist-read",
                format_args!(
                    "checksum {:016x}, the marker says {want:016x}",
                    sum.finish()
                ),
            );
        }
        return;
    }
    XorShift::new(0x5eed_d15c).fill(out);
    let mut sum = Fnv::default();
    sum.update(out);
    for (i, chunk) in out.chunks(4096).enumerate() {
        if let Err(e) = blk.write_blocks(PERSIST_FIRST + i * 8, chunk) {
            return fail(
                "blk-persist-write",
                format_args!("write_blocks({}): {e}", PERSIST_FIRST + i * 8),
            );
        }
    }
    if let Err(e) = blk.flush() {
        return fail("blk-persist-write", format_args!("flush: {e}"));
    }
    let marker = &mut back[..SECTOR_SIZE];
    marker.fill(0);
    marker[..8].copy_from_slice(PERSIST_MAGIC);
    marker[8..16].copy_from_slice(&sum.finish().to_le_bytes());
    if let Err(e) = blk.write_blocks(0, marker).and_then(|()| blk.flush()) {
        return fail("blk-persist-write", format_args!("marker: {e}"));
    }
    pass(
        Text::new(format_args!(
            "blk-persist-write checksum={:016x} sectors={RW_SECTORS}",
            sum.finish()
        ))
        .as_str(),
    );
}

/// On a read-only store disk (VIRTIO_BLK_F_RO): a write of the marker sector must fail
/// (virtio 1.2 §5.2.6.2: the device answers VIRTIO_BLK_S_IOERR) and leave it unchanged.
fn readonly_write(blk: &mut Blk, sector: &mut [u8]) {
    if let Err(e) = blk.read_blocks(0, sector) {
        return fail("blk-readonly-write", format_args!("read_blocks(0): {e}"));
    }
    let before = u64::from_le_bytes(sector[8..16].try_into().unwrap_or([0; 8]));
    sector[8..16].copy_from_slice(&(!before).to_le_bytes());
    match blk.write_blocks(0, sector) {
        Ok(()) => fail("blk-readonly-write", format_args!("the write succeeded")),
        Err(e) => {
            if let Err(e) = blk.read_blocks(0, sector) {
                return fail("blk-readonly-write", format_args!("read_blocks(0): {e}"));
            }
            let after = u64::from_le_bytes(sector[8..16].try_into().unwrap_or([0; 8]));
            if after == before {
                pass(Text::new(format_args!("blk-readonly-write refused: {e}")).as_str());
            } else {
                fail(
                    "blk-readonly-write",
                    format_args!("refused ({e}) but sector 0 changed"),
                );
            }
        }
    }
}

/// Writes after the persistence check that keep the disk busy (several seconds in Bochs).
const LINGER_WRITES: usize = 8192;

/// Keeps the disk busy after the persistence check: [`LINGER_WRITES`] 4 KiB writes of a
/// second pattern over sectors 1024-2047, never flushed. A test that cuts the power
/// meanwhile checks that the flushed data survived.
pub fn linger(blk: &mut Blk) {
    // SAFETY: the only reference to RW_BUF here (persist has returned).
    let out = unsafe { buf(core::ptr::addr_of_mut!(RW_BUF)) };
    XorShift::new(0x11_6e12).fill(out);
    let mut writes = 0usize;
    while writes < LINGER_WRITES {
        let sector = 1024 + (writes % 128) * 8;
        if blk.write_blocks(sector, &out[..4096]).is_err() {
            break;
        }
        writes += 1;
    }
    say!("blk linger: {writes} unflushed 4 KiB writes");
}
