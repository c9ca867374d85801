//! The posted-interrupt descriptor: how one CPU hands a virtual interrupt to a vCPU that may
//! be running on another, without a VM exit there (SDM Vol. 3C §30.6 "Posted-Interrupt
//! Processing"; §29.6 in older editions).
//!
//! The descriptor is 64 bytes, 64-byte aligned, its physical address in the VMCS field
//! "posted-interrupt descriptor address" ([`crate::VmcsField::POSTED_INTERRUPT_DESCRIPTOR_ADDRESS`])
//! with the pin-based control "process posted interrupts" and the notification vector in
//! [`crate::VmcsField::POSTED_INTERRUPT_NOTIFICATION_VECTOR`] (SDM Vol. 3C §25.6.8):
//!
//! | bits    | field |
//! |---------|-------|
//! | 255:0   | PIR, posted-interrupt requests: one bit per vector |
//! | 256     | ON, outstanding notification: a notification was sent and not yet processed |
//! | 257     | SN, suppress notification: post into PIR but send no notification |
//! | 279:272 | NV, notification vector |
//! | 319:288 | NDST, notification destination: the APIC ID of the CPU to notify; in xAPIC mode the 8-bit ID sits in NDST bits 15:8 (descriptor bits 303:296) |
//!
//! The SDM defines PIR and ON and leaves bits 511:257 to software; SN, NV and NDST are the
//! layout Intel VT-d gives them (VT-d specification §9.11 "Posted Interrupt Descriptor"), which
//! an IOMMU posting into the same descriptor needs. Bulkhead uses that layout for its own
//! cross-CPU posts too.
//!
//! A sender calls [`PostedInterruptDescriptor::post`]: it sets the vector's PIR bit, then,
//! unless SN is set, test-and-sets ON; only the post that turns ON from 0 to 1 must send the
//! notification (an IPI with vector NV to NDST). On the receiving CPU the processor, in VMX
//! non-root operation, clears ON, then ORs PIR into the virtual IRR and clears PIR, atomically
//! per bit (§30.6 steps 2 and 4). [`PostedInterruptDescriptor::take_pending`] does the same in
//! software, for a vCPU that is not running when the notification arrives or on a CPU
//! without posted-interrupt processing: the hypervisor then injects the vectors itself.
//!
//! Clearing ON before reading PIR is what makes the protocol lose nothing: a post whose PIR
//! bit is set after the drain finds ON clear and notifies again.
//!
//! No Bochs 2.7 CPU model offers "process posted interrupts" (the allowed-1 settings in
//! `vmx::fixtures` have bit 7 of the pin-based controls clear on every model), so the hardware
//! path, the CPU reading this descriptor itself, is untested; the tests here cover the
//! software side on the host, including posts racing from several threads.

use core::sync::atomic::{AtomicU64, Ordering};

/// Bit positions in the descriptor's control word (bits 319:256, the fifth u64).
const ON: u64 = 1 << 0;
const SN: u64 = 1 << 1;
const NV_SHIFT: u32 = 16;
const NV_MASK: u64 = 0xFF << NV_SHIFT;
const NDST_SHIFT: u32 = 32;
const NDST_MASK: u64 = 0xFFFF_FFFF << NDST_SHIFT;
/// In xAPIC mode the 8-bit APIC ID is NDST bits 15:8.
const NDST_XAPIC_SHIFT: u32 = 8;
/// Vectors 0-31 are exceptions and reserved; an APIC refuses to deliver 0-15 (SDM Vol. 3A
/// §11.5.2 "Valid Interrupt Vectors"; §10.5.2 in older editions).
pub const MIN_NOTIFICATION_VECTOR: u8 = 16;

/// How the local APIC of the notified CPU is addressed (SDM Vol. 3A §11.12 "Extended XAPIC
/// (x2APIC)").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApicMode {
    /// 8-bit APIC IDs.
    XApic,
    /// 32-bit x2APIC IDs.
    X2Apic,
}

/// What a sender must do after [`PostedInterruptDescriptor::post`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PostOutcome {
    /// This post set ON: send the notification (vector NV to NDST).
    NotifyNeeded,
    /// ON was already set: a notification is on its way and will find this vector.
    AlreadyPending,
    /// SN is set (the vCPU is not running): the vector waits in PIR, no notification.
    Suppressed,
}

/// A notification the descriptor cannot hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotificationError {
    /// NV below 16: a local APIC never delivers such a vector.
    InvalidVector(u8),
    /// An xAPIC destination above 255.
    XApicIdTooLarge(u32),
}

impl core::fmt::Display for NotificationError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            NotificationError::InvalidVector(v) => write!(
                f,
                "posted-interrupt notification vector {v} is below 16, which a local APIC \
                 never delivers: choose a vector from 32 to 255 that the host does not use"
            ),
            NotificationError::XApicIdTooLarge(id) => write!(
                f,
                "APIC ID {id} does not fit the 8 bits of an xAPIC destination: the CPU must \
                 be in x2APIC mode to be notified (ApicMode::X2Apic)"
            ),
        }
    }
}

/// The 256 vectors taken from PIR, bit `v` for vector `v`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PendingVectors(pub [u64; 4]);

impl PendingVectors {
    pub fn is_empty(&self) -> bool {
        self.0 == [0; 4]
    }

    pub fn contains(&self, vector: u8) -> bool {
        self.0[usize::from(vector / 64)] & (1 << (vector % 64)) != 0
    }

    pub fn insert(&mut self, vector: u8) {
        self.0[usize::from(vector / 64)] |= 1 << (vector % 64);
    }

    /// The highest pending vector: what the CPU merges into RVI (§30.6 step 5).
    pub fn highest(&self) -> Option<u8> {
        (0..4).rev().find(|&w| self.0[w] != 0).map(|w| {
            // w < 4 and the bit index < 64, so the vector is below 256.
            (w * 64 + 63 - self.0[w].leading_zeros() as usize) as u8
        })
    }

    /// The number of pending vectors.
    pub fn count(&self) -> u32 {
        self.0.iter().map(|w| w.count_ones()).sum()
    }

    /// The pending vectors, lowest first.
    pub fn iter(&self) -> impl Iterator<Item = u8> + '_ {
        (0..=u8::MAX).filter(|&v| self.contains(v))
    }

    /// Bitwise OR (the virtual IRR gets `virr | pending`).
    pub fn union(&self, other: &PendingVectors) -> PendingVectors {
        let mut out = *self;
        for (o, b) in out.0.iter_mut().zip(other.0) {
            *o |= b;
        }
        out
    }
}

/// A posted-interrupt descriptor (SDM Vol. 3C §30.6). Every access is a LOCK-prefixed atomic
/// operation on an aligned u64, which is what the processor itself uses on the descriptor
/// ("The logical processor performs a logical-OR of PIR into VIRR and clears PIR ... No other
/// agent can read or write a PIR bit between the time it is read and when it is cleared").
#[repr(C, align(64))]
#[derive(Debug, Default)]
pub struct PostedInterruptDescriptor {
    /// Bits 255:0.
    pir: [AtomicU64; 4],
    /// Bits 319:256: ON, SN, NV, NDST.
    control: AtomicU64,
    /// Bits 511:320, reserved.
    reserved: [AtomicU64; 3],
}

impl PostedInterruptDescriptor {
    /// An empty descriptor: no vector requested, ON and SN clear, NV and NDST 0 (set them
    /// with [`Self::set_notification`] before the first post that may notify).
    pub const fn new() -> Self {
        PostedInterruptDescriptor {
            pir: [const { AtomicU64::new(0) }; 4],
            control: AtomicU64::new(0),
            reserved: [const { AtomicU64::new(0) }; 3],
        }
    }

    /// Requests `vector` for the vCPU: sets its PIR bit, then, unless SN is set,
    /// test-and-sets ON. The vector is recorded in every outcome.
    pub fn post(&self, vector: u8) -> PostOutcome {
        self.pir[usize::from(vector / 64)].fetch_or(1 << (vector % 64), Ordering::SeqCst);
        self.notify_if_needed()
    }

    /// The test-and-set of ON unless SN is set, after a PIR change.
    fn notify_if_needed(&self) -> PostOutcome {
        let mut control = self.control.load(Ordering::SeqCst);
        loop {
            if control & SN != 0 {
                return PostOutcome::Suppressed;
            }
            if control & ON != 0 {
                return PostOutcome::AlreadyPending;
            }
            match self.control.compare_exchange_weak(
                control,
                control | ON,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => return PostOutcome::NotifyNeeded,
                Err(now) => control = now,
            }
        }
    }

    /// What the processor does on a notification (§30.6 steps 2 and 4): clears ON, then
    /// takes every PIR bit (each u64 swapped with 0, so a bit is taken exactly once).
    pub fn take_pending(&self) -> PendingVectors {
        self.clear_outstanding();
        self.drain_pir()
    }

    /// Clears ON; true when it was set (one notification consumed).
    pub fn clear_outstanding(&self) -> bool {
        self.control.fetch_and(!ON, Ordering::SeqCst) & ON != 0
    }

    /// Takes every PIR bit without touching ON (the second half of [`Self::take_pending`]).
    pub fn drain_pir(&self) -> PendingVectors {
        let mut out = PendingVectors::default();
        for (o, word) in out.0.iter_mut().zip(&self.pir) {
            *o = word.swap(0, Ordering::SeqCst);
        }
        out
    }

    /// The requested vectors, left in PIR.
    pub fn peek_pending(&self) -> PendingVectors {
        let mut out = PendingVectors::default();
        for (o, word) in out.0.iter_mut().zip(&self.pir) {
            *o = word.load(Ordering::SeqCst);
        }
        out
    }

    /// Sets NV and NDST, keeping ON and SN (a vCPU that moves to another CPU gets a new
    /// destination while posts may race with the change).
    pub fn set_notification(
        &self,
        vector: u8,
        apic_id: u32,
        mode: ApicMode,
    ) -> Result<(), NotificationError> {
        if vector < MIN_NOTIFICATION_VECTOR {
            return Err(NotificationError::InvalidVector(vector));
        }
        let ndst = match mode {
            ApicMode::X2Apic => apic_id,
            ApicMode::XApic => {
                let id = u8::try_from(apic_id)
                    .map_err(|_| NotificationError::XApicIdTooLarge(apic_id))?;
                u32::from(id) << NDST_XAPIC_SHIFT
            }
        };
        let fields = (u64::from(vector) << NV_SHIFT) | (u64::from(ndst) << NDST_SHIFT);
        let mut control = self.control.load(Ordering::SeqCst);
        loop {
            let new = (control & !(NV_MASK | NDST_MASK)) | fields;
            match self.control.compare_exchange_weak(
                control,
                new,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => break,
                Err(now) => control = now,
            }
        }
        Ok(())
    }

    /// NV.
    pub fn notification_vector(&self) -> u8 {
        // NV_MASK keeps 8 bits.
        ((self.control.load(Ordering::SeqCst) & NV_MASK) >> NV_SHIFT) as u8
    }

    /// The APIC ID NDST names, read in `mode`'s format.
    pub fn notification_destination(&self, mode: ApicMode) -> u32 {
        // NDST_MASK keeps 32 bits.
        let ndst = ((self.control.load(Ordering::SeqCst) & NDST_MASK) >> NDST_SHIFT) as u32;
        match mode {
            ApicMode::X2Apic => ndst,
            ApicMode::XApic => (ndst >> NDST_XAPIC_SHIFT) & 0xFF,
        }
    }

    /// ON: a notification is outstanding.
    pub fn is_outstanding(&self) -> bool {
        self.control.load(Ordering::SeqCst) & ON != 0
    }

    /// SN: posts send no notification.
    pub fn is_suppressed(&self) -> bool {
        self.control.load(Ordering::SeqCst) & SN != 0
    }

    /// Sets SN: the vCPU stops running on its CPU (descheduled or halted); posts only record.
    pub fn suppress(&self) {
        self.control.fetch_or(SN, Ordering::SeqCst);
    }

    /// Clears SN when the vCPU is about to run again. A vector posted while suppressed is
    /// still in PIR: if there is one, ON is test-and-set as a post would, and `true` says
    /// this call set it, so the caller must notify (or take the vectors itself before VM
    /// entry). A post racing with this call either sees SN set (and its vector is seen here)
    /// or sees it clear (and notifies itself).
    pub fn unsuppress(&self) -> bool {
        self.control.fetch_and(!SN, Ordering::SeqCst);
        !self.peek_pending().is_empty() && self.notify_if_needed() == PostOutcome::NotifyNeeded
    }

    /// The raw 64 bytes as the processor reads them (for tests and dumps).
    pub fn raw(&self) -> [u64; 8] {
        let mut out = [0; 8];
        for (o, w) in out
            .iter_mut()
            .zip(self.pir.iter().chain([&self.control]).chain(&self.reserved))
        {
            *o = w.load(Ordering::SeqCst);
        }
        out
    }
}

#[cfg(test)]
mod tests;
