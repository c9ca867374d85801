//! Snapshot state of a transport (issue 18; [`crate::state`] says what is saved): save it,
//! and load it after checking that the transport could have reached it by itself.

use super::*;

impl<D: VirtioDevice> MmioTransport<D> {
    /// The guest-visible state of the transport, its queues and its device for a snapshot
    /// ([`crate::state`] says what is saved and what is not). A chain the device took and
    /// did not complete is given back to its available ring in the state (its queue's next
    /// available index one lower): the restored device runs it again. The device keeps
    /// running unchanged.
    pub fn save_state(&self) -> TransportState<'_> {
        let queues = self
            .queues
            .iter()
            .enumerate()
            .map(|(i, q)| {
                let mut s = q.save_state();
                s.next_avail = s.next_avail.wrapping_sub(self.device.in_flight_chains(i));
                s
            })
            .collect();
        TransportState {
            status: self.status,
            device_features_sel: self.device_features_sel,
            driver_features_sel: self.driver_features_sel,
            driver_features: self.driver_features,
            queue_sel: self.queue_sel,
            interrupt_status: self.interrupt_status,
            config_generation: self.config_generation,
            config_change_pending: self.device.config_generation() != self.device_generation,
            pending: self.pending,
            // At most the queue count (`process_kicks`), which fits the state's queue limit.
            next_queue: u32::try_from(self.next_queue).unwrap_or(u32::MAX),
            queues,
            device: self.device.save_device_state(),
        }
    }

    /// Takes over `s`, a [`MmioTransport::save_state`] of a transport created with the same
    /// configuration, after checking all of it (see [`MmioTransport::load_state_checked`]);
    /// ready queues' rings are not checked against guest RAM (a ring outside it fails the
    /// queue at its first use, with DEVICE_NEEDS_RESET). On error nothing changed.
    /// Statistics, the deferred-notification mode and host attachments stay.
    pub fn load_state(&mut self, s: &TransportState<'_>) -> Result<(), StateError> {
        self.load(s, None)
    }

    /// [`MmioTransport::load_state`] that also refuses ready queues whose rings are not in
    /// `mem` (restore guest RAM first), as setting QueueReady does (virtio 1.2 §4.2.2).
    ///
    /// Accepted are exactly the states the transport reaches by itself: the device kind and
    /// queue count of this device; a device status of defined bits in the order of virtio
    /// 1.2 §3.1.1; after FEATURES_OK, features the device offered including VERSION_1
    /// (§2.2.1, §6.1); InterruptStatus bits of §4.2.2; ready queues valid as in
    /// [`Queue::check_state`], with the negotiated ring features after DRIVER_OK; pending
    /// work only on ready queues of a running device; then the device's part
    /// ([`VirtioDevice::load_device_state`]).
    pub fn load_state_checked(
        &mut self,
        s: &TransportState<'_>,
        mem: &dyn GuestMemory,
    ) -> Result<(), StateError> {
        self.load(s, Some(mem))
    }

    fn load(
        &mut self,
        s: &TransportState<'_>,
        mem: Option<&dyn GuestMemory>,
    ) -> Result<(), StateError> {
        self.check_state(s, mem)?;
        // The last fallible step: it changes nothing on error, and nothing below fails.
        self.device.load_device_state(&s.device, &s.queues)?;
        for (q, qs) in self.queues.iter_mut().zip(&s.queues) {
            q.load_state(qs);
        }
        self.status = s.status;
        self.device_features_sel = s.device_features_sel;
        self.driver_features_sel = s.driver_features_sel;
        self.driver_features = s.driver_features;
        self.queue_sel = s.queue_sel;
        self.interrupt_status = s.interrupt_status;
        self.config_generation = s.config_generation;
        self.pending = s.pending;
        // Checked against the queue count.
        self.next_queue = s.next_queue as usize;
        self.error = None;
        if self.status & status::DRIVER_OK != 0 {
            // The driver set DRIVER_OK with these (final) features (virtio 1.2 §3.1.1).
            self.device.activate(self.driver_features);
        }
        let g = self.device.config_generation();
        // A change not signalled yet is signalled at the next access or poll (§4.2.2).
        self.device_generation = if s.config_change_pending {
            g.wrapping_sub(1)
        } else {
            g
        };
        Ok(())
    }

    /// Checks the transport's part of `s` ([`MmioTransport::load_state_checked`]).
    fn check_state(
        &self,
        s: &TransportState<'_>,
        mem: Option<&dyn GuestMemory>,
    ) -> Result<(), StateError> {
        let vm_device_id = self.device.device_id();
        let snapshot = s.device.kind();
        if snapshot.device_id() != vm_device_id {
            return Err(StateError::KindMismatch {
                snapshot,
                vm_device_id,
            });
        }
        if s.queues.len() != self.queues.len() {
            return Err(StateError::QueueCount {
                snapshot: s.queues.len(),
                vm: self.queues.len(),
            });
        }
        let st = s.status;
        if st & !status::DEFINED != 0 {
            return Err(StateError::StatusReserved { status: st });
        }
        // virtio 1.2 §3.1.1: each step's bit is only set after the previous ones
        // (write_status), and bits are never cleared but by a reset.
        let has = |bits: u8| st & bits == bits;
        let after = |bit: u8, prereq: u8| !has(bit) || has(prereq);
        if !(after(status::DRIVER, status::ACKNOWLEDGE)
            && after(status::FEATURES_OK, status::ACKNOWLEDGE | status::DRIVER)
            && after(status::DRIVER_OK, status::FEATURES_OK))
        {
            return Err(StateError::StatusOrder { status: st });
        }
        let offered = self.device.device_features();
        let features = s.driver_features;
        if has(status::FEATURES_OK) {
            // virtio 1.2 §2.2.1, §6.1: the device accepted them (features_acceptable), and
            // DriverFeatures is frozen since.
            if features & !offered != 0 {
                return Err(StateError::FeaturesNotOffered { features, offered });
            }
            if features & feature::VERSION_1 == 0 {
                return Err(StateError::FeaturesWithoutVersion1 { features });
            }
        }
        if s.interrupt_status & !interrupt::DEFINED != 0 {
            return Err(StateError::InterruptReserved {
                status: s.interrupt_status,
            });
        }
        let driver_ok = has(status::DRIVER_OK);
        for (i, (q, qs)) in self.queues.iter().zip(&s.queues).enumerate() {
            q.check_state(i, qs, offered, mem)?;
            // Features are applied to every queue at DRIVER_OK and to queues made ready
            // after it (virtio 1.2 §3.1.1: final then).
            let event_idx = features & feature::RING_EVENT_IDX != 0;
            let indirect = features & feature::RING_INDIRECT_DESC != 0;
            if driver_ok && (qs.event_idx != event_idx || qs.indirect != indirect) {
                return Err(StateError::QueueFeaturesDiffer { queue: i });
            }
        }
        let tracked = self.queues.len().min(MAX_TRACKED_QUEUES);
        if s.pending != 0 {
            // `fail` and `process_kicks` clear pending work of a device not running.
            if !driver_ok || has(status::DEVICE_NEEDS_RESET) {
                return Err(StateError::PendingInactive { pending: s.pending });
            }
            // Queue 64 and up are never tracked; QueueReady = 0 clears a queue's bit.
            let not_ready = (0..MAX_TRACKED_QUEUES)
                .find(|&i| s.pending & (1 << i) != 0 && !s.queues.get(i).is_some_and(|q| q.ready));
            if let Some(queue) = not_ready {
                return Err(StateError::PendingNotReady {
                    pending: s.pending,
                    queue,
                });
            }
        }
        if s.next_queue as usize > tracked {
            return Err(StateError::NextQueue {
                next: s.next_queue,
                queues: self.queues.len(),
            });
        }
        Ok(())
    }
}
