use super::*;
use std::sync::atomic::{AtomicBool, AtomicU32};
use std::sync::Arc;
use std::time::{Duration, Instant};
use std::vec::Vec;

/// SDM Vol. 3C §30.6: 64 bytes, 64-byte aligned, PIR in bits 255:0, the control word at 256.
#[test]
fn layout() {
    assert_eq!(core::mem::size_of::<PostedInterruptDescriptor>(), 64);
    assert_eq!(core::mem::align_of::<PostedInterruptDescriptor>(), 64);
    assert_eq!(core::mem::offset_of!(PostedInterruptDescriptor, pir), 0);
    assert_eq!(
        core::mem::offset_of!(PostedInterruptDescriptor, control),
        32
    );
    assert_eq!(PostedInterruptDescriptor::new().raw(), [0; 8]);
}

#[test]
fn post_sets_the_pir_bit_and_on_once() {
    let d = PostedInterruptDescriptor::new();
    assert_eq!(d.post(0x31), PostOutcome::NotifyNeeded);
    assert_eq!(d.raw(), [1 << 0x31, 0, 0, 0, ON, 0, 0, 0]);
    assert_eq!(d.post(64), PostOutcome::AlreadyPending);
    assert_eq!(d.post(255), PostOutcome::AlreadyPending);
    assert_eq!(d.post(0x31), PostOutcome::AlreadyPending);
    assert_eq!(d.raw(), [1 << 0x31, 1, 0, 1 << 63, 1, 0, 0, 0]);
    assert!(d.is_outstanding());
    let p = d.take_pending();
    assert_eq!(p.iter().collect::<Vec<_>>(), [0x31, 64, 255]);
    assert_eq!((p.count(), p.highest()), (3, Some(255)));
    // Taken: PIR and ON clear, the next post notifies again.
    assert_eq!(d.raw(), [0; 8]);
    assert!(d.take_pending().is_empty());
    assert_eq!(d.post(200), PostOutcome::NotifyNeeded);
    assert_eq!(d.take_pending().iter().collect::<Vec<_>>(), [200]);
}

#[test]
fn suppressed_posts_wait_in_pir_and_notify_when_resumed() {
    let d = PostedInterruptDescriptor::new();
    d.suppress();
    assert!(d.is_suppressed());
    assert_eq!(d.post(40), PostOutcome::Suppressed);
    assert_eq!(d.post(41), PostOutcome::Suppressed);
    assert!(!d.is_outstanding());
    assert_eq!(d.raw()[0], (1 << 40) | (1 << 41));
    assert!(d.unsuppress());
    assert!(d.is_outstanding() && !d.is_suppressed());
    // ON is set: a second resume has nothing to notify.
    assert!(!d.unsuppress());
    assert_eq!(d.take_pending().count(), 2);
    // Nothing posted while suppressed: nothing to notify.
    d.suppress();
    assert!(!d.unsuppress());
    assert!(!d.is_outstanding());
    // SN does not hide a notification already outstanding.
    assert_eq!(d.post(50), PostOutcome::NotifyNeeded);
    d.suppress();
    assert_eq!(d.post(51), PostOutcome::Suppressed);
    assert!(d.is_outstanding());
}

#[test]
fn notification_fields_keep_on_and_sn() {
    let d = PostedInterruptDescriptor::new();
    d.post(0x20);
    d.suppress();
    // xAPIC: the 8-bit APIC ID in NDST bits 15:8, descriptor bits 303:296 (control bits 47:40).
    d.set_notification(0xF2, 0x12, ApicMode::XApic).unwrap();
    assert_eq!(d.raw()[4], ON | SN | (0xF2 << 16) | (0x12 << 40));
    assert_eq!(d.notification_vector(), 0xF2);
    assert_eq!(d.notification_destination(ApicMode::XApic), 0x12);
    // x2APIC: the 32-bit ID in NDST; a move replaces both fields and keeps ON and SN.
    d.set_notification(0xF3, 0x1234_5678, ApicMode::X2Apic)
        .unwrap();
    assert_eq!(d.raw()[4], ON | SN | (0xF3 << 16) | (0x1234_5678 << 32));
    assert_eq!(d.notification_destination(ApicMode::X2Apic), 0x1234_5678);
    d.set_notification(16, 255, ApicMode::XApic).unwrap();
    assert_eq!(d.raw()[4], ON | SN | (16 << 16) | (0xFF << 40));
    assert_eq!(d.raw()[0], 1 << 0x20);
    // Refused, and the descriptor unchanged.
    let before = d.raw();
    assert_eq!(
        d.set_notification(15, 0, ApicMode::XApic),
        Err(NotificationError::InvalidVector(15))
    );
    assert_eq!(
        d.set_notification(0xF2, 256, ApicMode::XApic),
        Err(NotificationError::XApicIdTooLarge(256))
    );
    assert_eq!(d.raw(), before);
    assert_eq!(
        NotificationError::InvalidVector(15).to_string(),
        "posted-interrupt notification vector 15 is below 16, which a local APIC never \
         delivers: choose a vector from 32 to 255 that the host does not use"
    );
    assert_eq!(
        NotificationError::XApicIdTooLarge(256).to_string(),
        "APIC ID 256 does not fit the 8 bits of an xAPIC destination: the CPU must be in \
         x2APIC mode to be notified (ApicMode::X2Apic)"
    );
}

/// The interleaving that take_pending's order (ON cleared before PIR is read, §30.6 steps 2
/// and 4) exists for: a post landing between the two steps notifies again, so its vector is
/// never left in PIR without an outstanding notification.
#[test]
fn a_post_between_clearing_on_and_draining_notifies_again() {
    let d = PostedInterruptDescriptor::new();
    assert_eq!(d.post(100), PostOutcome::NotifyNeeded);
    assert!(d.clear_outstanding());
    assert_eq!(d.post(101), PostOutcome::NotifyNeeded);
    assert_eq!(d.drain_pir().iter().collect::<Vec<_>>(), [100, 101]);
    // The second notification finds nothing: harmless, and it clears ON.
    assert!(d.is_outstanding());
    assert!(d.take_pending().is_empty());
    assert!(!d.is_outstanding() && !d.clear_outstanding());
    // The other order would lose: drained first, the post sees ON still set and does not
    // notify, then ON is cleared with the vector in PIR.
    assert_eq!(d.post(102), PostOutcome::NotifyNeeded);
    assert!(d.drain_pir().contains(102));
    assert_eq!(d.post(103), PostOutcome::AlreadyPending);
    assert!(d.clear_outstanding());
    assert!(d.peek_pending().contains(103) && !d.is_outstanding());
}

#[test]
fn pending_vectors() {
    let mut p = PendingVectors::default();
    assert!(p.is_empty());
    assert_eq!((p.highest(), p.count()), (None, 0));
    for v in [0, 63, 64, 127, 128, 254] {
        p.insert(v);
    }
    assert_eq!(p.highest(), Some(254));
    assert_eq!(p.count(), 6);
    assert!(p.contains(127) && !p.contains(126));
    let mut q = PendingVectors::default();
    q.insert(255);
    q.insert(0);
    let u = p.union(&q);
    assert_eq!(
        u.iter().collect::<Vec<_>>(),
        [0, 63, 64, 127, 128, 254, 255]
    );
    assert_eq!(u.0, [1 | 1 << 63, 1 | 1 << 63, 1, 1 << 63 | 1 << 62]);
}

/// Four threads post 224 vectors (32-255) 500 times each while a consumer takes them:
/// every vector is taken, and every notification a post asked for matches exactly one ON
/// that the consumer cleared.
#[test]
fn concurrent_posts_are_all_taken_and_each_notification_consumed_once() {
    const THREADS: usize = 4;
    const ROUNDS: usize = 500;
    let d = Arc::new(PostedInterruptDescriptor::new());
    let done = Arc::new(AtomicBool::new(false));
    let notified = Arc::new(AtomicU32::new(0));
    let consumer = {
        let (d, done) = (d.clone(), done.clone());
        std::thread::spawn(move || {
            let (mut seen, mut cleared) = (PendingVectors::default(), 0u32);
            loop {
                let finished = done.load(Ordering::SeqCst);
                cleared += u32::from(d.clear_outstanding());
                seen = seen.union(&d.drain_pir());
                if finished {
                    return (seen, cleared);
                }
                std::thread::yield_now();
            }
        })
    };
    let producers: Vec<_> = (0..THREADS)
        .map(|t| {
            let (d, notified) = (d.clone(), notified.clone());
            std::thread::spawn(move || {
                for _ in 0..ROUNDS {
                    for v in (32u8..=255).filter(|v| usize::from(*v) % THREADS == t) {
                        if d.post(v) == PostOutcome::NotifyNeeded {
                            notified.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                }
            })
        })
        .collect();
    for p in producers {
        p.join().unwrap();
    }
    done.store(true, Ordering::SeqCst);
    let (seen, cleared) = consumer.join().unwrap();
    assert_eq!(seen.count(), 224);
    assert_eq!(seen.iter().next(), Some(32));
    assert_eq!(d.raw(), [0; 8]);
    assert_eq!(notified.load(Ordering::SeqCst), cleared);
    assert!(cleared >= 1);
}

/// No lost wake-up: three producers each post their own vector, wait until it was taken,
/// and post again, 2000 times; the consumer takes only when ON says a notification is
/// outstanding. A post lost between the consumer's clear of ON and its drain would leave a
/// producer waiting (it gives up after 20 s and the test fails); each vector is taken
/// exactly 2000 times.
#[test]
fn a_consumer_woken_only_by_notifications_takes_every_post_exactly_once() {
    const ROUNDS: u32 = 2000;
    const VECTORS: [u8; 3] = [0x40, 0x41, 0xC0];
    let d = Arc::new(PostedInterruptDescriptor::new());
    let stop = Arc::new(AtomicBool::new(false));
    let consumer = {
        let (d, stop) = (d.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut taken = [0u32; 3];
            while !stop.load(Ordering::SeqCst) {
                if !d.is_outstanding() {
                    std::thread::yield_now();
                    continue;
                }
                let p = d.take_pending();
                for (count, v) in taken.iter_mut().zip(VECTORS) {
                    *count += u32::from(p.contains(v));
                }
            }
            taken
        })
    };
    let producers: Vec<_> = VECTORS
        .iter()
        .map(|&v| {
            let d = d.clone();
            std::thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(20);
                for round in 0..ROUNDS {
                    d.post(v);
                    while d.peek_pending().contains(v) {
                        assert!(
                            Instant::now() < deadline,
                            "vector {v:#x} not taken in round {round}: a notification was lost"
                        );
                        std::thread::yield_now();
                    }
                }
            })
        })
        .collect();
    for p in producers {
        p.join().unwrap();
    }
    stop.store(true, Ordering::SeqCst);
    assert_eq!(consumer.join().unwrap(), [ROUNDS; 3]);
    assert!(!d.is_outstanding());
}
