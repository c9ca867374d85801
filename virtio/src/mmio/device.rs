//! What a device behind the transport implements ([`VirtioDevice`]) and the bounded work
//! budget of one transport call ([`WorkBudget`]).

use super::*;

/// Requests (blk requests, net frames, console buffers) a device starts per transport
/// call ([`MmioTransport::write`] of a QueueNotify, [`MmioTransport::process_kicks`],
/// [`MmioTransport::poll`]). The rest stays pending for the next call.
pub const MAX_REQUESTS_PER_CALL: u32 = 32;
/// Data bytes a device moves per transport call (guest memory ↔ backend, zeroed bytes).
/// A request larger than what is left continues in the next call from where it stopped.
pub const MAX_BYTES_PER_CALL: u64 = 1 << 20;

/// What one transport call may still do: requests to start and data bytes to move.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkBudget {
    requests: u32,
    bytes: u64,
}

impl WorkBudget {
    /// A budget of `requests` requests and `bytes` bytes.
    pub const fn new(requests: u32, bytes: u64) -> Self {
        WorkBudget { requests, bytes }
    }

    /// [`MAX_REQUESTS_PER_CALL`] and [`MAX_BYTES_PER_CALL`].
    pub const fn per_call() -> Self {
        Self::new(MAX_REQUESTS_PER_CALL, MAX_BYTES_PER_CALL)
    }

    /// Requests left.
    pub fn requests(&self) -> u32 {
        self.requests
    }

    /// Bytes left.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Whether nothing more may be started or moved.
    pub fn exhausted(&self) -> bool {
        self.requests == 0 || self.bytes == 0
    }

    /// Takes one request; false (and nothing taken) when the budget is exhausted.
    pub fn take_request(&mut self) -> bool {
        if self.exhausted() {
            return false;
        }
        self.requests -= 1;
        true
    }

    /// Takes up to `want` bytes; returns how many were granted.
    pub fn take_bytes(&mut self, want: u64) -> u64 {
        let n = want.min(self.bytes);
        self.bytes -= n;
        n
    }
}

/// Whether a device finished what it could do on a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Nothing left to do for now.
    Done,
    /// The work budget ran out with work left; the transport keeps the queue pending.
    More,
}

/// A device behind a virtio transport.
pub trait VirtioDevice {
    /// virtio 1.2 §5 device type ([`crate::spec::device_id`]).
    fn device_id(&self) -> u32;
    /// Offered feature bits (virtio 1.2 §2.2, §6). Must include VERSION_1.
    fn device_features(&self) -> u64;
    /// Number of virtqueues.
    fn num_queues(&self) -> usize;
    /// QueueNumMax of queue `index`.
    fn queue_max_size(&self, index: usize) -> u16;
    /// Reads device-specific configuration space (virtio 1.2 §2.5). Bytes past the end
    /// of the configuration structure read as 0.
    fn read_config(&self, offset: u64, data: &mut [u8]);
    /// Writes device-specific configuration space (ignored for read-only fields).
    fn write_config(&mut self, offset: u64, data: &[u8]);
    /// Called when the driver sets DRIVER_OK with the negotiated features.
    fn activate(&mut self, features: u64) {
        let _ = features;
    }
    /// Processes available buffers of queue `index` within `budget` (called on QueueNotify
    /// and for pending queues). Returns [`Progress::More`] when the budget ran out before
    /// the work did.
    fn process_queue(
        &mut self,
        index: usize,
        queue: &mut Queue,
        mem: &mut dyn GuestMemory,
        stats: &mut DeviceStats,
        budget: &mut WorkBudget,
    ) -> Result<Progress, QueueError>;
    /// Completes asynchronous work (e.g. net RX frames that arrived) within `budget`,
    /// called by [`MmioTransport::poll`].
    fn poll(
        &mut self,
        queues: &mut [Queue],
        mem: &mut dyn GuestMemory,
        stats: &mut DeviceStats,
        budget: &mut WorkBudget,
    ) -> Result<Progress, DeviceError> {
        let _ = (queues, mem, stats, budget);
        Ok(Progress::Done)
    }
    /// The driver cleared QueueReady of queue `index`: forget work in flight on it.
    fn queue_stopped(&mut self, index: usize) {
        let _ = index;
    }
    /// Resets device-internal state (virtio 1.2 §2.4).
    fn reset(&mut self);
    /// Config generation changes since creation; a change raises a configuration
    /// change interrupt (virtio 1.2 §2.5.1, §4.2.2 ConfigGeneration).
    fn config_generation(&self) -> u32 {
        0
    }
    /// Heap bytes the device may still allocate because of guest activity, at most
    /// (reserve them at VM creation). Default: 0.
    fn worst_case_bytes(&self) -> u64 {
        0
    }
    /// The device's own part of a snapshot ([`crate::state`]). The negotiated features are
    /// the transport's; chains in flight are given back ([`VirtioDevice::in_flight_chains`]).
    fn save_device_state(&self) -> DeviceState<'_>;
    /// Checks all of `state` (hostile input: a device of another kind, another disk, too
    /// much input, ...) and then takes it over, forgetting work in flight and the
    /// negotiated features (the transport activates the device again after DRIVER_OK);
    /// `queues` is the transport's part, already checked. On error nothing changed.
    fn load_device_state(
        &mut self,
        state: &DeviceState<'_>,
        queues: &[QueueState],
    ) -> Result<(), StateError>;
    /// Chains of queue `index` the device took from the available ring and has not put in
    /// the used ring yet (a request whose data phase continues in a later call). A snapshot
    /// gives them back to the ring (virtio 1.2 §2.7.13), so the restored device runs them
    /// again from the start. Default: 0.
    fn in_flight_chains(&self, index: usize) -> u16 {
        let _ = index;
        0
    }
}

impl<T: VirtioDevice + ?Sized> VirtioDevice for Box<T> {
    fn device_id(&self) -> u32 {
        (**self).device_id()
    }
    fn device_features(&self) -> u64 {
        (**self).device_features()
    }
    fn num_queues(&self) -> usize {
        (**self).num_queues()
    }
    fn queue_max_size(&self, index: usize) -> u16 {
        (**self).queue_max_size(index)
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        (**self).read_config(offset, data)
    }
    fn write_config(&mut self, offset: u64, data: &[u8]) {
        (**self).write_config(offset, data)
    }
    fn activate(&mut self, features: u64) {
        (**self).activate(features)
    }
    fn process_queue(
        &mut self,
        index: usize,
        queue: &mut Queue,
        mem: &mut dyn GuestMemory,
        stats: &mut DeviceStats,
        budget: &mut WorkBudget,
    ) -> Result<Progress, QueueError> {
        (**self).process_queue(index, queue, mem, stats, budget)
    }
    fn poll(
        &mut self,
        queues: &mut [Queue],
        mem: &mut dyn GuestMemory,
        stats: &mut DeviceStats,
        budget: &mut WorkBudget,
    ) -> Result<Progress, DeviceError> {
        (**self).poll(queues, mem, stats, budget)
    }
    fn queue_stopped(&mut self, index: usize) {
        (**self).queue_stopped(index)
    }
    fn reset(&mut self) {
        (**self).reset()
    }
    fn config_generation(&self) -> u32 {
        (**self).config_generation()
    }
    fn worst_case_bytes(&self) -> u64 {
        (**self).worst_case_bytes()
    }
    fn save_device_state(&self) -> DeviceState<'_> {
        (**self).save_device_state()
    }
    fn load_device_state(
        &mut self,
        state: &DeviceState<'_>,
        queues: &[QueueState],
    ) -> Result<(), StateError> {
        (**self).load_device_state(state, queues)
    }
    fn in_flight_chains(&self, index: usize) -> u16 {
        (**self).in_flight_chains(index)
    }
}
