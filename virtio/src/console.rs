//! virtio-console (virtio 1.2 §5.3) with one port: receiveq0 (queue 0) carries input to
//! the guest, transmitq0 (queue 1) carries its output. No MULTIPORT (so no control
//! queues), no SIZE, no EMERG_WRITE.
//!
//! # Use from the hypervisor
//!
//! - Output: the device hands the bytes of every transmitq buffer to a [`ConsoleSink`] the
//!   hypervisor provides (e.g. the VM's console ring, [`ByteRing`]), at most the transport's
//!   per-call byte bound per call. A sink that accepts fewer bytes than offered applies
//!   backpressure: the rest of the buffer is offered again in the next call
//!   ([`crate::MmioTransport::process_kicks`]); a sink that must never stall the guest
//!   accepts everything and drops (and counts) what it cannot keep.
//! - Input: [`ConsoleDevice::push_input`] copies bytes into a fixed input buffer
//!   ([`INPUT_CAPACITY`]); [`crate::MmioTransport::poll`] then fills the driver's posted
//!   receiveq buffers and reports whether to interrupt.
//!
//! Everything is allocated at creation ([`ConsoleDevice::heap_bytes`]).

use alloc::boxed::Box;
use alloc::vec;

use crate::blk::read_bytes;
use crate::memory::GuestMemory;
use crate::mmio::{DeviceError, DeviceStats, Progress, VirtioDevice, WorkBudget};
use crate::queue::{DescriptorChain, Queue, QueueError};
use crate::spec::{device_id, feature};
use crate::state::{ConsoleState, DeviceState, QueueState, StateError};

/// virtio 1.2 §5.3.2: receiveq0 is queue 0.
pub const RECEIVEQ: usize = 0;
/// virtio 1.2 §5.3.2: transmitq0 is queue 1.
pub const TRANSMITQ: usize = 1;
/// Queue size offered for both queues.
pub const CONSOLE_QUEUE_SIZE: u16 = 128;
/// Input bytes buffered until the driver posts receive buffers; more are refused.
pub const INPUT_CAPACITY: usize = 4096;
/// Bytes copied from guest memory per sink call.
const CHUNK: usize = 256;
/// virtio 1.2 §5.3.4: struct virtio_console_config { le16 cols; le16 rows;
/// le32 max_nr_ports; le32 emerg_wr; }.
const CONFIG_LEN: usize = 12;

/// Where guest console output goes.
pub trait ConsoleSink {
    /// Takes output bytes; returns how many it accepted (the rest is offered again later).
    fn write(&mut self, bytes: &[u8]) -> usize;
}

impl<F: FnMut(&[u8]) -> usize> ConsoleSink for F {
    fn write(&mut self, bytes: &[u8]) -> usize {
        self(bytes)
    }
}

/// A fixed-capacity byte FIFO (allocated at creation). As a [`ConsoleSink`] it accepts
/// what fits (backpressure); [`ByteRing::drain`] empties it, e.g. into a UART from the
/// scheduler's idle time.
#[derive(Debug)]
pub struct ByteRing {
    buf: Box<[u8]>,
    head: usize,
    len: usize,
}

impl ByteRing {
    /// A ring of `capacity` bytes.
    pub fn new(capacity: usize) -> Self {
        ByteRing {
            buf: vec![0; capacity].into_boxed_slice(),
            head: 0,
            len: 0,
        }
    }

    /// Capacity in bytes.
    pub fn capacity(&self) -> usize {
        self.buf.len()
    }

    /// Bytes queued.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends as much of `bytes` as fits; returns how many.
    pub fn push(&mut self, bytes: &[u8]) -> usize {
        let cap = self.capacity();
        let n = bytes.len().min(cap - self.len);
        for (k, &b) in bytes.iter().take(n).enumerate() {
            let i = (self.head + self.len + k) % cap;
            if let Some(slot) = self.buf.get_mut(i) {
                *slot = b;
            }
        }
        self.len += n;
        n
    }

    /// The queued bytes as at most two contiguous slices, oldest first.
    pub fn as_slices(&self) -> (&[u8], &[u8]) {
        let first_len = self.len.min(self.capacity() - self.head);
        let first = self
            .buf
            .get(self.head..self.head + first_len)
            .unwrap_or(&[]);
        let second = self.buf.get(..self.len - first_len).unwrap_or(&[]);
        (first, second)
    }

    /// Removes the oldest `n` bytes (at most all of them).
    pub fn consume(&mut self, n: usize) {
        let n = n.min(self.len);
        if n > 0 {
            self.head = (self.head + n) % self.capacity();
            self.len -= n;
        }
    }

    /// Hands at most `max` of the oldest bytes to `f` (one or two slices), which returns how
    /// many it took; those are removed. Returns the total taken.
    pub fn drain(&mut self, max: usize, mut f: impl FnMut(&[u8]) -> usize) -> usize {
        let mut taken = 0;
        for _ in 0..2 {
            let (first, _) = self.as_slices();
            let part = first.get(..first.len().min(max - taken)).unwrap_or(&[]);
            if part.is_empty() {
                break;
            }
            let offered = part.len();
            let n = f(part).min(offered);
            self.consume(n);
            taken += n;
            if n < offered {
                break;
            }
        }
        taken
    }

    /// Drops every byte.
    pub fn clear(&mut self) {
        self.head = 0;
        self.len = 0;
    }
}

impl ConsoleSink for ByteRing {
    fn write(&mut self, bytes: &[u8]) -> usize {
        self.push(bytes)
    }
}

/// A virtio console device (virtio 1.2 §5.3) with one port, writing guest output to `S`.
#[derive(Debug)]
pub struct ConsoleDevice<S: ConsoleSink> {
    sink: S,
    features: u64,
    input: ByteRing,
    /// The chain being processed (capacity [`CONSOLE_QUEUE_SIZE`]: no allocation per buffer).
    chain: DescriptorChain,
    /// Bytes of the transmitq chain in `chain` the sink has taken, when it refused the rest.
    tx_offset: Option<u64>,
    /// Bytes of the next transmitq chain the sink already took before a snapshot was
    /// loaded ([`ConsoleState::tx_skip`]).
    tx_skip: u64,
    scratch: [u8; CHUNK],
}

impl<S: ConsoleSink> ConsoleDevice<S> {
    /// A console whose output goes to `sink`.
    pub fn new(sink: S) -> Self {
        ConsoleDevice {
            sink,
            features: 0,
            input: ByteRing::new(INPUT_CAPACITY),
            chain: DescriptorChain::with_capacity(CONSOLE_QUEUE_SIZE),
            tx_offset: None,
            tx_skip: 0,
            scratch: [0; CHUNK],
        }
    }

    /// Heap bytes one device holds besides its sink, all allocated by
    /// [`ConsoleDevice::new`].
    pub const fn heap_bytes() -> usize {
        INPUT_CAPACITY
            + 2 * CONSOLE_QUEUE_SIZE as usize * core::mem::size_of::<crate::queue::Segment>()
    }

    /// The output sink.
    pub fn sink(&self) -> &S {
        &self.sink
    }

    /// The output sink, mutably (e.g. to drain it).
    pub fn sink_mut(&mut self) -> &mut S {
        &mut self.sink
    }

    /// Queues input for the guest; returns how many bytes were accepted (the input buffer
    /// holds [`INPUT_CAPACITY`] bytes). Call [`crate::MmioTransport::poll`] afterwards to
    /// deliver them into the driver's receive buffers.
    pub fn push_input(&mut self, bytes: &[u8]) -> usize {
        self.input.push(bytes)
    }

    /// Input bytes not yet delivered to the guest.
    pub fn pending_input(&self) -> usize {
        self.input.len()
    }

    /// virtio 1.2 §5.3.6: hands the bytes of transmitq buffers to the sink, within
    /// `budget`.
    fn transmit(
        &mut self,
        queue: &mut Queue,
        mem: &mut dyn GuestMemory,
        stats: &mut DeviceStats,
        budget: &mut WorkBudget,
    ) -> Result<Progress, QueueError> {
        loop {
            if self.tx_offset.is_none() {
                if budget.exhausted() {
                    return Ok(if queue.has_available(mem)? {
                        Progress::More
                    } else {
                        Progress::Done
                    });
                }
                if !queue.pop_into(mem, &mut self.chain)? {
                    return Ok(Progress::Done);
                }
                budget.take_request();
                stats.requests += 1;
                let skip = core::mem::take(&mut self.tx_skip);
                if !self.chain.writable.is_empty() {
                    // virtio 1.2 §5.3.6.1: the driver MUST NOT put a device-writable buffer
                    // in a transmitq. The buffer is returned unread.
                    stats.errors += 1;
                    queue.add_used(mem, self.chain.head, 0)?;
                    continue;
                }
                // After a load: the sink already has the first `skip` bytes (an offset past
                // the chain's end completes it at once).
                self.tx_offset = Some(skip);
            }
            let mut done = self.tx_offset.unwrap_or(0);
            let total = self.chain.readable_len();
            while done < total {
                let n = budget.take_bytes((total - done).min(CHUNK as u64)) as usize;
                if n == 0 {
                    self.tx_offset = Some(done);
                    return Ok(Progress::More);
                }
                let buf = &mut self.scratch[..n];
                if self.chain.read_at(mem, done, buf) != Ok(n) {
                    // Checked to be guest RAM when popped; the memory went away.
                    stats.errors += 1;
                    done = total;
                    break;
                }
                let taken = self.sink.write(buf).min(n);
                stats.bytes_read += taken as u64;
                done += taken as u64;
                if taken < n {
                    // The sink is full: offer the rest in the next call.
                    self.tx_offset = Some(done);
                    return Ok(Progress::More);
                }
            }
            self.tx_offset = None;
            // virtio 1.2 §5.3.6: transmit buffers are returned with nothing written.
            queue.add_used(mem, self.chain.head, 0)?;
        }
    }

    /// virtio 1.2 §5.3.6: fills posted receiveq buffers with pending input, within
    /// `budget`.
    fn receive(
        &mut self,
        queue: &mut Queue,
        mem: &mut dyn GuestMemory,
        stats: &mut DeviceStats,
        budget: &mut WorkBudget,
    ) -> Result<Progress, QueueError> {
        if !queue.ready() {
            return Ok(Progress::Done);
        }
        while !self.input.is_empty() {
            if budget.exhausted() {
                return Ok(Progress::More);
            }
            if !queue.pop_into(mem, &mut self.chain)? {
                break;
            }
            budget.take_request();
            stats.requests += 1;
            if !self.chain.readable.is_empty() {
                // virtio 1.2 §5.3.6.1: the driver MUST NOT put a device-readable buffer in
                // a receiveq. The buffer is returned empty; the input waits for the next.
                stats.errors += 1;
                queue.add_used(mem, self.chain.head, 0)?;
                continue;
            }
            let room = self.chain.writable_len();
            let want = (self.input.len() as u64).min(room);
            let n = budget.take_bytes(want) as usize;
            let (first, second) = self.input.as_slices();
            let a = first.get(..n.min(first.len())).unwrap_or(&[]);
            let b = second.get(..n - a.len()).unwrap_or(&[]);
            let ok = self.chain.write_at(mem, 0, a) == Ok(a.len())
                && self.chain.write_at(mem, a.len() as u64, b) == Ok(b.len());
            if ok {
                self.input.consume(n);
                stats.bytes_written += n as u64;
                queue.add_used(mem, self.chain.head, n as u32)?;
            } else {
                stats.errors += 1;
                queue.add_used(mem, self.chain.head, 0)?;
            }
        }
        Ok(Progress::Done)
    }
}

impl<S: ConsoleSink> VirtioDevice for ConsoleDevice<S> {
    fn device_id(&self) -> u32 {
        device_id::CONSOLE
    }

    fn device_features(&self) -> u64 {
        // virtio 1.2 §5.3.3: none of SIZE, MULTIPORT, EMERG_WRITE is offered.
        feature::VERSION_1 | feature::RING_EVENT_IDX | feature::RING_INDIRECT_DESC
    }

    fn num_queues(&self) -> usize {
        2
    }

    fn queue_max_size(&self, index: usize) -> u16 {
        if index < 2 {
            CONSOLE_QUEUE_SIZE
        } else {
            0
        }
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        // virtio 1.2 §5.3.4: cols/rows are valid only with SIZE, max_nr_ports only with
        // MULTIPORT, emerg_wr only with EMERG_WRITE: none is offered, so all read as 0.
        read_bytes(&[0; CONFIG_LEN], offset, data);
    }

    fn write_config(&mut self, _offset: u64, _data: &[u8]) {
        // virtio 1.2 §5.3.4: emerg_wr is written only with EMERG_WRITE (not offered).
    }

    fn activate(&mut self, features: u64) {
        self.features = features;
    }

    fn process_queue(
        &mut self,
        index: usize,
        queue: &mut Queue,
        mem: &mut dyn GuestMemory,
        stats: &mut DeviceStats,
        budget: &mut WorkBudget,
    ) -> Result<Progress, QueueError> {
        match index {
            RECEIVEQ => self.receive(queue, mem, stats, budget),
            TRANSMITQ => self.transmit(queue, mem, stats, budget),
            _ => Ok(Progress::Done),
        }
    }

    fn poll(
        &mut self,
        queues: &mut [Queue],
        mem: &mut dyn GuestMemory,
        stats: &mut DeviceStats,
        budget: &mut WorkBudget,
    ) -> Result<Progress, DeviceError> {
        match queues.get_mut(RECEIVEQ) {
            Some(q) => self
                .receive(q, mem, stats, budget)
                .map_err(|error| DeviceError::Queue {
                    queue: RECEIVEQ,
                    error,
                }),
            None => Ok(Progress::Done),
        }
    }

    fn queue_stopped(&mut self, index: usize) {
        if index == TRANSMITQ {
            self.tx_offset = None;
            self.tx_skip = 0;
        }
    }

    fn reset(&mut self) {
        self.features = 0;
        self.tx_offset = None;
        self.tx_skip = 0;
        self.input.clear();
    }

    /// The input not delivered yet and how far the sink got in a stalled transmitq buffer
    /// (the buffer itself is given back to the ring, [`VirtioDevice::in_flight_chains`]).
    /// The sink's own buffered output belongs to the host.
    fn save_device_state(&self) -> DeviceState<'_> {
        let (first, second) = self.input.as_slices();
        let mut input = alloc::vec::Vec::with_capacity(first.len() + second.len());
        input.extend_from_slice(first);
        input.extend_from_slice(second);
        DeviceState::Console(ConsoleState {
            input,
            tx_skip: self.tx_offset.unwrap_or(self.tx_skip),
        })
    }

    fn load_device_state(
        &mut self,
        state: &DeviceState<'_>,
        queues: &[QueueState],
    ) -> Result<(), StateError> {
        let DeviceState::Console(c) = state else {
            return Err(StateError::KindMismatch {
                snapshot: state.kind(),
                vm_device_id: device_id::CONSOLE,
            });
        };
        if c.input.len() > INPUT_CAPACITY {
            return Err(StateError::ConsoleInput {
                len: c.input.len(),
                max: INPUT_CAPACITY,
            });
        }
        // A stalled buffer belongs to a ready transmitq (stopping the queue forgets it) and
        // is at most a chain long: 32-bit lengths (virtio 1.2 §2.7.8, QueueError::LengthOverflow).
        let transmitq_ready = queues.get(TRANSMITQ).is_some_and(|q| q.ready);
        if c.tx_skip != 0 && (!transmitq_ready || c.tx_skip > u64::from(u32::MAX)) {
            return Err(StateError::ConsoleTransmitOffset { offset: c.tx_skip });
        }
        self.input.clear();
        self.input.push(&c.input);
        self.tx_offset = None;
        self.tx_skip = c.tx_skip;
        self.features = 0;
        Ok(())
    }

    /// A transmitq buffer the sink did not take all of (virtio 1.2 §5.3.6).
    fn in_flight_chains(&self, index: usize) -> u16 {
        u16::from(index == TRANSMITQ && self.tx_offset.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_ring_wraps_and_drains() {
        let mut r = ByteRing::new(8);
        assert_eq!(r.push(b"abcdef"), 6);
        r.consume(4);
        assert_eq!(r.push(b"ghijklmn"), 6, "only 6 fit");
        assert_eq!(r.as_slices(), (&b"efgh"[..], &b"ijkl"[..]));
        let mut out = alloc::vec::Vec::new();
        let taken = r.drain(5, |b| {
            out.extend_from_slice(b);
            b.len()
        });
        assert_eq!((taken, &out[..]), (5, &b"efghi"[..]));
        let taken = r.drain(100, |b| b.len().min(1));
        assert_eq!(taken, 1, "a partial take stops the drain");
        assert_eq!(r.as_slices(), (&b"kl"[..], &b""[..]));
        r.clear();
        assert!(r.is_empty());
        let mut zero = ByteRing::new(0);
        assert_eq!(zero.push(b"x"), 0);
        zero.consume(1);
        assert_eq!(zero.drain(4, |b| b.len()), 0);
    }
}
