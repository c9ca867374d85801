//! virtio-mmio version 2 transport (virtio 1.2 §4.2) and the device interface.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::fmt;

use crate::memory::GuestMemory;
use crate::queue::{Queue, QueueError};
use crate::spec::{
    feature, interrupt, status, Register, MMIO_CONFIG_OFFSET, MMIO_MAGIC, MMIO_VERSION,
};
use crate::state::{DeviceState, QueueState, StateError, TransportState};

mod device;
mod snapshot;

pub use device::{Progress, VirtioDevice, WorkBudget, MAX_BYTES_PER_CALL, MAX_REQUESTS_PER_CALL};

/// Per-device statistics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeviceStats {
    /// Requests (blk) or frames (net) completed, successfully or not.
    pub requests: u64,
    /// Bytes read from guest memory on behalf of requests (blk writes, net TX).
    pub bytes_read: u64,
    /// Bytes written to guest memory on behalf of requests (blk reads, net RX).
    pub bytes_written: u64,
    /// QueueNotify writes.
    pub notifications: u64,
    /// Interrupts the hypervisor was asked to inject.
    pub interrupts: u64,
    /// Failed requests and queue errors.
    pub errors: u64,
    /// Frames dropped (net: no RX buffer, queue full, oversized).
    pub dropped: u64,
    /// Requests refused because the device's heap budget was exhausted (blk: copy-on-write
    /// overlay full, answered with VIRTIO_BLK_S_IOERR; also counted in `errors`).
    pub budget_exceeded: u64,
    /// Ignored MMIO accesses (bad offset, size or alignment, or write to a read-only
    /// register, or forbidden state transition).
    pub bad_accesses: u64,
}

/// What the hypervisor must do after an MMIO access.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MmioEffect {
    /// Inject the device's interrupt (InterruptStatus became non-zero for a new event).
    pub interrupt: bool,
    /// Work is left because the call hit its work bound ([`MAX_REQUESTS_PER_CALL`],
    /// [`MAX_BYTES_PER_CALL`]) or a deferred kick waits: call
    /// [`MmioTransport::process_kicks`] again soon (e.g. in the VM's next time slice).
    /// Same as [`MmioTransport::has_kicks`] after the call.
    pub more: bool,
}

/// Why the device entered DEVICE_NEEDS_RESET.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceError {
    /// A virtqueue was malformed.
    Queue {
        /// Queue index.
        queue: usize,
        /// What was wrong.
        error: QueueError,
    },
}

impl fmt::Display for DeviceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceError::Queue { queue, error } => write!(f, "virtqueue {queue}: {error}"),
        }
    }
}

/// Maximum rounds of "process, re-enable notifications, re-check" per queue and call, so
/// that a driver racing on another vCPU cannot keep the device busy forever.
const MAX_BATCH_ROUNDS: usize = 4;
/// Queues the pending-work bit mask can track; higher queues are processed synchronously.
pub(crate) const MAX_TRACKED_QUEUES: usize = u64::BITS as usize;

/// A virtio-mmio version 2 register window (virtio 1.2 §4.2.2) around a device.
#[derive(Debug)]
pub struct MmioTransport<D: VirtioDevice> {
    device: D,
    queues: Vec<Queue>,
    status: u8,
    device_features_sel: u32,
    driver_features_sel: u32,
    driver_features: u64,
    queue_sel: u32,
    interrupt_status: u32,
    config_generation: u32,
    device_generation: u32,
    vendor_id: u32,
    error: Option<DeviceError>,
    stats: DeviceStats,
    /// Deferred notification mode: QueueNotify only marks the queue pending.
    deferred: bool,
    /// Queues with work left (deferred kicks, or a call that hit its work bound), one bit
    /// per queue.
    pending: u64,
    /// First queue [`MmioTransport::process_kicks`] looks at (round robin between queues).
    next_queue: usize,
}

impl<D: VirtioDevice> MmioTransport<D> {
    /// Wraps `device` in a freshly reset MMIO register window.
    pub fn new(device: D) -> Self {
        let queues = (0..device.num_queues())
            .map(|i| Queue::new(device.queue_max_size(i)))
            .collect();
        let device_generation = device.config_generation();
        MmioTransport {
            device,
            queues,
            status: 0,
            device_features_sel: 0,
            driver_features_sel: 0,
            driver_features: 0,
            queue_sel: 0,
            interrupt_status: 0,
            config_generation: 0,
            device_generation,
            vendor_id: u32::from_le_bytes(*b"BLKH"),
            error: None,
            stats: DeviceStats::default(),
            deferred: false,
            pending: 0,
            next_queue: 0,
        }
    }

    /// Deferred notification mode, as an asynchronous backend behaves: a QueueNotify only
    /// marks its queue kicked and [`MmioTransport::process_kicks`] does the work later (when
    /// the vCPU halts or a short deadline passes). Until then the device has not moved
    /// avail_event past the kick, so with VIRTIO_F_EVENT_IDX the driver adds further
    /// requests without notifying again (virtio 1.2 §2.7.10): one exit for a whole batch.
    pub fn set_deferred_notify(&mut self, deferred: bool) {
        self.deferred = deferred;
    }

    /// Whether queues have work left: kicked and not processed yet (deferred mode), or left
    /// over by a call that reached its work bound. Call [`MmioTransport::process_kicks`].
    pub fn has_kicks(&self) -> bool {
        self.pending != 0
    }

    /// Processes pending queues (deferred kicks, leftovers of bounded calls) within one
    /// [`WorkBudget::per_call`], round robin between queues, and decides once whether to
    /// interrupt. `more` in the result says work is still left (call again later).
    pub fn process_kicks(&mut self, mem: &mut dyn GuestMemory) -> MmioEffect {
        if self.pending == 0 || !self.active() {
            self.pending = 0;
            return MmioEffect::default();
        }
        let mut budget = WorkBudget::per_call();
        let n = self.queues.len().min(MAX_TRACKED_QUEUES);
        let start = self.next_queue % n.max(1);
        for k in 0..n {
            let index = (start + k) % n;
            if self.pending & (1 << index) == 0 {
                continue;
            }
            if budget.exhausted() {
                // Start the next call here, so every queue gets its turn.
                self.next_queue = index;
                break;
            }
            match self.run_queue(index, mem, &mut budget) {
                Ok(Progress::Done) => self.pending &= !(1 << index),
                Ok(Progress::More) => self.next_queue = index + 1,
                Err((queue, error)) => return self.fail(DeviceError::Queue { queue, error }),
            }
        }
        self.finish_call(mem)
    }

    /// The device.
    pub fn device(&self) -> &D {
        &self.device
    }
    /// The device, mutably (e.g. to deliver RX frames; call [`MmioTransport::poll`] after).
    pub fn device_mut(&mut self) -> &mut D {
        &mut self.device
    }
    /// The virtqueues.
    pub fn queues(&self) -> &[Queue] {
        &self.queues
    }
    /// Device status register (virtio 1.2 §2.1).
    pub fn status(&self) -> u8 {
        self.status
    }
    /// Features negotiated so far.
    pub fn driver_features(&self) -> u64 {
        self.driver_features
    }
    /// InterruptStatus (virtio 1.2 §4.2.2).
    pub fn interrupt_status(&self) -> u32 {
        self.interrupt_status
    }
    /// The error that set DEVICE_NEEDS_RESET, if any.
    pub fn error(&self) -> Option<DeviceError> {
        self.error
    }
    /// Statistics.
    pub fn stats(&self) -> DeviceStats {
        self.stats
    }
    /// Heap bytes the device may still allocate because of the guest
    /// ([`VirtioDevice::worst_case_bytes`]); reserve them when the VM is created.
    pub fn worst_case_bytes(&self) -> u64 {
        self.device.worst_case_bytes()
    }

    fn active(&self) -> bool {
        self.status & status::DRIVER_OK != 0 && self.status & status::DEVICE_NEEDS_RESET == 0
    }

    fn selected_queue(&mut self) -> Option<&mut Queue> {
        self.queues.get_mut(self.queue_sel as usize)
    }

    /// virtio 1.2 §2.4 / §4.2.2.1: writing 0 to Status resets the device.
    fn reset(&mut self) {
        self.device.reset();
        self.pending = 0;
        self.next_queue = 0;
        for q in &mut self.queues {
            q.reset();
        }
        self.status = 0;
        self.device_features_sel = 0;
        self.driver_features_sel = 0;
        self.driver_features = 0;
        self.queue_sel = 0;
        self.interrupt_status = 0;
        self.error = None;
        self.device_generation = self.device.config_generation();
    }

    /// virtio 1.2 §2.1.2: on an unrecoverable error the device sets DEVICE_NEEDS_RESET
    /// and, if DRIVER_OK was set, sends a configuration change notification.
    fn fail(&mut self, err: DeviceError) -> MmioEffect {
        self.stats.errors += 1;
        // The queues are ignored until reset: no work is left.
        self.pending = 0;
        if self.error.is_none() {
            self.error = Some(err);
        }
        let was_ok = self.status & status::DRIVER_OK != 0;
        self.status |= status::DEVICE_NEEDS_RESET;
        if was_ok {
            self.raise(interrupt::CONFIG_CHANGE)
        } else {
            MmioEffect::default()
        }
    }

    fn raise(&mut self, bits: u32) -> MmioEffect {
        // virtio 1.2 §4.2.2.1: the bit stays set until acknowledged via InterruptACK.
        self.interrupt_status |= bits;
        self.stats.interrupts += 1;
        MmioEffect {
            interrupt: true,
            more: false,
        }
    }

    fn bad_access(&mut self) {
        self.stats.bad_accesses += 1;
    }

    /// Handles a guest read of `size` bytes at `offset` in the MMIO window. Bad
    /// accesses read as 0 and are counted.
    pub fn read(&mut self, offset: u64, size: u8) -> u64 {
        if offset >= MMIO_CONFIG_OFFSET {
            // virtio 1.2 §4.2.2: config space; 1, 2, 4 and 8 byte accesses.
            if !matches!(size, 1 | 2 | 4 | 8) || !offset.is_multiple_of(u64::from(size)) {
                self.bad_access();
                return 0;
            }
            let mut buf = [0u8; 8];
            let n = usize::from(size);
            self.device
                .read_config(offset - MMIO_CONFIG_OFFSET, &mut buf[..n]);
            return u64::from_le_bytes(buf);
        }
        // virtio 1.2 §4.2.2.2: registers are accessed with 32-bit aligned accesses.
        let reg = match Register::from_offset(offset) {
            Some(r) if size == 4 => r,
            _ => {
                self.bad_access();
                return 0;
            }
        };
        let q = self.queues.get(self.queue_sel as usize);
        let v: u32 = match reg {
            Register::MagicValue => MMIO_MAGIC,
            Register::Version => MMIO_VERSION,
            Register::DeviceId => self.device.device_id(),
            Register::VendorId => self.vendor_id,
            Register::DeviceFeatures => {
                let f = self.device.device_features();
                match self.device_features_sel {
                    0 => f as u32,
                    1 => (f >> 32) as u32,
                    _ => 0,
                }
            }
            // virtio 1.2 §4.2.2.1: QueueNumMax is 0 for a queue that is not available.
            Register::QueueNumMax => q.map_or(0, |q| u32::from(q.max_size())),
            Register::QueueReady => q.map_or(0, |q| u32::from(q.ready())),
            Register::InterruptStatus => self.interrupt_status,
            Register::Status => u32::from(self.status),
            // virtio 1.2 §4.2.2: no shared memory regions: length reads as -1.
            Register::ShmLenLow | Register::ShmLenHigh => u32::MAX,
            Register::ShmBaseLow | Register::ShmBaseHigh => u32::MAX,
            Register::QueueReset => 0,
            Register::ConfigGeneration => self.current_generation(),
            _ => {
                // Write-only register.
                self.bad_access();
                0
            }
        };
        u64::from(v)
    }

    fn current_generation(&mut self) -> u32 {
        self.sync_generation();
        self.config_generation
    }

    /// Folds device-side config changes into ConfigGeneration; true if it changed.
    fn sync_generation(&mut self) -> bool {
        let g = self.device.config_generation();
        if g != self.device_generation {
            self.device_generation = g;
            self.config_generation = self.config_generation.wrapping_add(1);
            true
        } else {
            false
        }
    }

    /// Handles a guest write of `size` bytes of `value` at `offset` in the MMIO window.
    /// `mem` is the guest's memory (used when a notification processes a queue).
    pub fn write(
        &mut self,
        offset: u64,
        size: u8,
        value: u64,
        mem: &mut dyn GuestMemory,
    ) -> MmioEffect {
        if offset >= MMIO_CONFIG_OFFSET {
            if !matches!(size, 1 | 2 | 4 | 8) || !offset.is_multiple_of(u64::from(size)) {
                self.bad_access();
                return MmioEffect::default();
            }
            let bytes = value.to_le_bytes();
            self.device
                .write_config(offset - MMIO_CONFIG_OFFSET, &bytes[..usize::from(size)]);
            return self.config_effect();
        }
        let reg = match Register::from_offset(offset) {
            Some(r) if size == 4 => r,
            _ => {
                self.bad_access();
                return MmioEffect::default();
            }
        };
        let v = value as u32;
        match reg {
            Register::DeviceFeaturesSel => self.device_features_sel = v,
            Register::DriverFeaturesSel => self.driver_features_sel = v,
            Register::DriverFeatures => {
                // virtio 1.2 §3.1.1: features are written before FEATURES_OK.
                if self.status & status::FEATURES_OK != 0 {
                    self.bad_access();
                    return MmioEffect::default();
                }
                match self.driver_features_sel {
                    0 => {
                        self.driver_features = (self.driver_features & !0xffff_ffff) | u64::from(v);
                    }
                    1 => {
                        self.driver_features =
                            (self.driver_features & 0xffff_ffff) | (u64::from(v) << 32);
                    }
                    // virtio 1.2 §2.2: no feature bits above 63.
                    _ if v != 0 => self.bad_access(),
                    _ => {}
                }
            }
            Register::QueueSel => self.queue_sel = v,
            Register::QueueNum => self.queue_write(|q| q.set_size(v.min(0xffff) as u16)),
            Register::QueueDescLow => {
                self.queue_write(|q| q.set_desc_table(set_low(q.desc_table(), v)))
            }
            Register::QueueDescHigh => {
                self.queue_write(|q| q.set_desc_table(set_high(q.desc_table(), v)))
            }
            Register::QueueDriverLow => {
                self.queue_write(|q| q.set_avail_ring(set_low(q.avail_ring(), v)))
            }
            Register::QueueDriverHigh => {
                self.queue_write(|q| q.set_avail_ring(set_high(q.avail_ring(), v)))
            }
            Register::QueueDeviceLow => {
                self.queue_write(|q| q.set_used_ring(set_low(q.used_ring(), v)))
            }
            Register::QueueDeviceHigh => {
                self.queue_write(|q| q.set_used_ring(set_high(q.used_ring(), v)))
            }
            Register::QueueReady => return self.queue_ready(v, mem),
            Register::QueueNotify => return self.notify(v, mem),
            Register::InterruptAck => self.interrupt_status &= !v,
            Register::Status => return self.write_status(v),
            _ => self.bad_access(),
        }
        MmioEffect::default()
    }

    fn queue_write(&mut self, f: impl FnOnce(&mut Queue) -> bool) {
        // virtio 1.2 §4.2.2.2: queue layout is written before QueueReady, after
        // FEATURES_OK and before DRIVER_OK; writes to a missing queue are ignored.
        let ok = match self.selected_queue() {
            Some(q) => f(q),
            None => false,
        };
        if !ok {
            self.bad_access();
        }
    }

    fn queue_ready(&mut self, v: u32, mem: &mut dyn GuestMemory) -> MmioEffect {
        // A queue made ready before FEATURES_OK (out of the order of virtio 1.2 §3.1.1) sees
        // DriverFeatures as written so far, which may hold bits the device never offered; it
        // uses only offered ones (virtio 1.2 §2.2: the driver accepts a subset of the
        // offered features), so no queue holds a ring feature a snapshot load refuses
        // (StateError::QueueFeatureNotOffered).
        let features = self.driver_features & self.device.device_features();
        let sel = self.queue_sel as usize;
        let Some(q) = self.queues.get_mut(sel) else {
            self.bad_access();
            return MmioEffect::default();
        };
        if v == 0 {
            q.deactivate();
            if sel < MAX_TRACKED_QUEUES {
                self.pending &= !(1 << sel);
            }
            self.device.queue_stopped(sel);
            return MmioEffect::default();
        }
        if q.ready() {
            return MmioEffect::default();
        }
        q.set_features(
            features & feature::RING_EVENT_IDX != 0,
            features & feature::RING_INDIRECT_DESC != 0,
        );
        match q.activate(mem) {
            Ok(()) => MmioEffect::default(),
            Err(error) => self.fail(DeviceError::Queue { queue: sel, error }),
        }
    }

    /// virtio 1.2 §2.1.2, §3.1.1: the driver only sets bits, in the order
    /// ACKNOWLEDGE, DRIVER, FEATURES_OK, DRIVER_OK; 0 resets; FAILED any time.
    fn write_status(&mut self, v: u32) -> MmioEffect {
        if v == 0 {
            self.reset();
            return MmioEffect::default();
        }
        let Ok(mut new) = u8::try_from(v) else {
            self.bad_access();
            return MmioEffect::default();
        };
        if new & !status::DEFINED != 0 {
            // virtio 1.2 §2.1: only the defined bits exist; reserved ones read back as 0.
            self.bad_access();
            new &= status::DEFINED;
        }
        // DEVICE_NEEDS_RESET is owned by the device; the driver may echo it back.
        let new = (new & !status::DEVICE_NEEDS_RESET) | (self.status & status::DEVICE_NEEDS_RESET);
        let old = self.status;
        if new & old != old {
            // virtio 1.2 §2.1.2: the driver MUST NOT clear a device status bit.
            self.bad_access();
            return MmioEffect::default();
        }
        let added = new & !old;
        let need = |bit: u8, prereq: u8| added & bit == 0 || new & prereq == prereq;
        let ordered = need(status::DRIVER, status::ACKNOWLEDGE)
            && need(status::FEATURES_OK, status::ACKNOWLEDGE | status::DRIVER)
            && need(status::DRIVER_OK, status::FEATURES_OK);
        if !ordered {
            self.bad_access();
            return MmioEffect::default();
        }
        let mut accepted = new;
        if added & status::FEATURES_OK != 0 && !self.features_acceptable() {
            // virtio 1.2 §2.2.2 / §3.1.1: the device refuses FEATURES_OK, so it reads back clear.
            accepted &= !status::FEATURES_OK;
            self.stats.errors += 1;
            if accepted & status::DRIVER_OK != 0 {
                // virtio 1.2 §3.1.1: DRIVER_OK only follows an accepted FEATURES_OK (the
                // driver re-reads it first); set in the same write, it is refused too.
                accepted &= !status::DRIVER_OK;
                self.bad_access();
            }
        }
        self.status = accepted;
        if added & status::DRIVER_OK != 0 && accepted & status::DRIVER_OK != 0 {
            // Features are final now (virtio 1.2 §3.1.1): apply them to every queue.
            let f = self.driver_features;
            for q in &mut self.queues {
                q.set_features(
                    f & feature::RING_EVENT_IDX != 0,
                    f & feature::RING_INDIRECT_DESC != 0,
                );
            }
            self.device.activate(self.driver_features);
            self.device_generation = self.device.config_generation();
        }
        MmioEffect::default()
    }

    /// virtio 1.2 §6.1 / §2.2.1: only offered features may be accepted, and this
    /// modern-only device requires VIRTIO_F_VERSION_1.
    fn features_acceptable(&self) -> bool {
        let offered = self.device.device_features();
        self.driver_features & !offered == 0 && self.driver_features & feature::VERSION_1 != 0
    }

    fn notify(&mut self, v: u32, mem: &mut dyn GuestMemory) -> MmioEffect {
        self.stats.notifications += 1;
        let index = v as usize;
        if index >= self.queues.len() {
            self.bad_access();
            return MmioEffect::default();
        }
        if !self.active() {
            // Nothing to do before DRIVER_OK or after an error; the notify is counted.
            return MmioEffect::default();
        }
        let Some(q) = self.queues.get(index) else {
            return MmioEffect::default();
        };
        if !q.ready() {
            self.bad_access();
            return MmioEffect::default();
        }
        let tracked = index < MAX_TRACKED_QUEUES;
        if self.deferred && tracked {
            self.pending |= 1 << index;
            // The device will process this queue soon: the driver need not notify again
            // meanwhile (virtio 1.2 §2.7.10).
            let result = self
                .queues
                .get_mut(index)
                .map(|q| q.disable_notification(mem));
            if let Some(Err(error)) = result {
                return self.fail(DeviceError::Queue {
                    queue: index,
                    error,
                });
            }
            return MmioEffect {
                interrupt: false,
                more: true,
            };
        }
        // Synchronous mode: this call does up to one budget of work (continuing what an
        // earlier call left, in order); the rest stays pending.
        let mut budget = WorkBudget::per_call();
        match self.run_queue(index, mem, &mut budget) {
            Ok(Progress::More) if tracked => self.pending |= 1 << index,
            Ok(Progress::Done) if tracked => self.pending &= !(1 << index),
            Ok(_) => {}
            Err((queue, error)) => return self.fail(DeviceError::Queue { queue, error }),
        }
        self.finish_call(mem)
    }

    /// Processes queue `index` within `budget` (virtio 1.2 §2.7.13); with work left, the
    /// driver is asked not to notify (the device comes back by itself, virtio 1.2
    /// §2.7.10), otherwise notifications are re-enabled and the queue re-checked.
    fn run_queue(
        &mut self,
        index: usize,
        mem: &mut dyn GuestMemory,
        budget: &mut WorkBudget,
    ) -> Result<Progress, (usize, QueueError)> {
        let Some(q) = self.queues.get_mut(index) else {
            return Ok(Progress::Done);
        };
        let on_queue = |e| (index, e);
        for _ in 0..MAX_BATCH_ROUNDS {
            let progress = self
                .device
                .process_queue(index, q, mem, &mut self.stats, budget)
                .map_err(on_queue)?;
            if progress == Progress::More {
                q.disable_notification(mem).map_err(on_queue)?;
                return Ok(Progress::More);
            }
            if !q.enable_notification(mem).map_err(on_queue)? {
                break;
            }
        }
        Ok(Progress::Done)
    }

    /// End of a call that processed queues: one interrupt decision for all of them
    /// (virtio 1.2 §2.7.7), and whether work is left.
    fn finish_call(&mut self, mem: &mut dyn GuestMemory) -> MmioEffect {
        match self.interrupt_decision(mem) {
            Ok(mut e) => {
                e.more = self.pending != 0;
                e
            }
            Err((queue, error)) => self.fail(DeviceError::Queue { queue, error }),
        }
    }

    fn interrupt_decision(
        &mut self,
        mem: &mut dyn GuestMemory,
    ) -> Result<MmioEffect, (usize, QueueError)> {
        let mut used = false;
        for (i, q) in self
            .queues
            .iter_mut()
            .enumerate()
            .filter(|(_, q)| q.ready())
        {
            used |= q.needs_interrupt(mem).map_err(|e| (i, e))?;
        }
        let mut effect = if used {
            self.raise(interrupt::USED_BUFFER)
        } else {
            MmioEffect::default()
        };
        if self.sync_generation() {
            effect.interrupt |= self.raise(interrupt::CONFIG_CHANGE).interrupt;
        }
        Ok(effect)
    }

    fn config_effect(&mut self) -> MmioEffect {
        if self.sync_generation() && self.status & status::DRIVER_OK != 0 {
            self.raise(interrupt::CONFIG_CHANGE)
        } else {
            MmioEffect::default()
        }
    }

    /// Lets the device complete asynchronous work (e.g. deliver RX frames queued with the
    /// device's own API), processes queues with available buffers or work left, all
    /// within one [`WorkBudget::per_call`], and reports whether to inject the interrupt and
    /// whether work is left (`more`). Call it after delivering frames or input and, ideally,
    /// periodically (e.g. on a timer tick).
    pub fn poll(&mut self, mem: &mut dyn GuestMemory) -> MmioEffect {
        if !self.active() {
            return self.config_effect_if_ok();
        }
        let mut budget = WorkBudget::per_call();
        match self
            .device
            .poll(&mut self.queues, mem, &mut self.stats, &mut budget)
        {
            Ok(Progress::Done) => {}
            // Asynchronous work left over: the next poll continues it.
            Ok(Progress::More) => budget = WorkBudget::new(0, 0),
            Err(e) => return self.fail(e),
        }
        for index in 0..self.queues.len() {
            if budget.exhausted() {
                break;
            }
            let Some(q) = self.queues.get_mut(index) else {
                break;
            };
            let tracked = index < MAX_TRACKED_QUEUES;
            let pending = tracked && self.pending & (1 << index) != 0;
            let available = match q.ready().then(|| q.has_available(mem)) {
                Some(Ok(p)) => p,
                Some(Err(error)) => {
                    return self.fail(DeviceError::Queue {
                        queue: index,
                        error,
                    })
                }
                None => false,
            };
            if !(pending || available) {
                continue;
            }
            match self.run_queue(index, mem, &mut budget) {
                Ok(Progress::Done) if tracked => self.pending &= !(1 << index),
                Ok(Progress::More) if tracked => self.pending |= 1 << index,
                Ok(_) => {}
                Err((queue, error)) => return self.fail(DeviceError::Queue { queue, error }),
            }
        }
        self.finish_call(mem)
    }

    fn config_effect_if_ok(&mut self) -> MmioEffect {
        if self.status & status::DRIVER_OK != 0 {
            self.config_effect()
        } else {
            self.sync_generation();
            MmioEffect::default()
        }
    }
}

fn set_low(old: u64, v: u32) -> u64 {
    (old & !0xffff_ffff) | u64::from(v)
}

fn set_high(old: u64, v: u32) -> u64 {
    (old & 0xffff_ffff) | (u64::from(v) << 32)
}
