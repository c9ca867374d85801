//! virtio-console end-to-end tests (virtio 1.2 §5.3): output through transmitq0 to the
//! sink, input into posted receiveq0 buffers, malformed chains, backpressure, bounds.

use super::*;
use crate::console::{ByteRing, ConsoleDevice, INPUT_CAPACITY, RECEIVEQ, TRANSMITQ};
use crate::spec::{interrupt, status, Register};
use crate::testing::Buf;

type Console = MmioTransport<ConsoleDevice<ByteRing>>;

fn console(sink_bytes: usize) -> (Driver, Console) {
    let mut t = MmioTransport::new(ConsoleDevice::new(ByteRing::new(sink_bytes)));
    let mut d = Driver::new(1 << 20);
    let f = d.setup(&mut t, ALL_FEATURES, 64).unwrap();
    assert_eq!(
        f,
        feature::VERSION_1 | feature::RING_EVENT_IDX | feature::RING_INDIRECT_DESC,
        "no SIZE, MULTIPORT or EMERG_WRITE"
    );
    assert_eq!(d.queues.len(), 2, "receiveq0 and transmitq0 only");
    (d, t)
}

fn output(t: &mut Console) -> Vec<u8> {
    let mut v = Vec::new();
    t.device_mut().sink_mut().drain(usize::MAX, |b| {
        v.extend_from_slice(b);
        b.len()
    });
    v
}

#[test]
fn identity_and_config_space() {
    let (mut d, mut t) = console(64);
    assert_eq!(d.mmio_read(&mut t, Register::DeviceId), 3);
    for off in (0..12).step_by(4) {
        assert_eq!(t.read(0x100 + off, 4), 0, "config at {off}");
    }
    t.write(0x108, 4, 0x41, &mut d.mem);
    assert_eq!(t.read(0x108, 4), 0, "emerg_wr is not offered");
    d.mmio_write(&mut t, Register::QueueSel, 2);
    assert_eq!(
        d.mmio_read(&mut t, Register::QueueNumMax),
        0,
        "no control queues"
    );
}

#[test]
fn hello_through_transmitq_reaches_the_sink() {
    let (mut d, mut t) = console(64);
    let a = d.alloc_data(b"hello\n");
    let head = d.add_chain(TRANSMITQ, &[Buf::r(a, 6)]);
    let e = d.kick(&mut t, TRANSMITQ);
    assert!(e.interrupt && !e.more);
    assert_eq!(d.pop_used(TRANSMITQ), Some((u32::from(head), 0)));
    assert_eq!(output(&mut t), b"hello\n");
    // Two descriptors and an indirect table, in order.
    let x = d.alloc_data(b"wor");
    let y = d.alloc_data(b"ld\n");
    d.add_chain(TRANSMITQ, &[Buf::r(x, 3), Buf::r(y, 3)]);
    d.add_indirect(TRANSMITQ, &[Buf::r(a, 5)]);
    d.kick(&mut t, TRANSMITQ);
    assert_eq!(output(&mut t), b"world\nhello");
    let st = t.stats();
    assert_eq!((st.requests, st.bytes_read, st.errors), (3, 17, 0));
}

#[test]
fn input_fills_posted_receive_buffers() {
    let (mut d, mut t) = console(64);
    let b0 = d.alloc(4, 16);
    let b1 = d.alloc(4, 16);
    let h0 = d.add_chain(RECEIVEQ, &[Buf::w(b0, 4)]);
    let h1 = d.add_chain(RECEIVEQ, &[Buf::w(b1, 4)]);
    assert!(!d.kick(&mut t, RECEIVEQ).interrupt, "no input yet");
    assert_eq!(t.device_mut().push_input(b"abcdef"), 6);
    let e = t.poll(&mut d.mem);
    assert!(e.interrupt, "the driver wants an interrupt");
    assert_eq!(d.pop_used(RECEIVEQ), Some((u32::from(h0), 4)));
    assert_eq!(d.pop_used(RECEIVEQ), Some((u32::from(h1), 2)));
    assert_eq!(d.read(b0, 4), b"abcd");
    assert_eq!(&d.read(b1, 2), b"ef");
    assert_eq!(d.ack_interrupt(&mut t), interrupt::USED_BUFFER);
    // Input without buffers waits; the input buffer is bounded.
    let big = vec![b'x'; INPUT_CAPACITY + 10];
    assert_eq!(t.device_mut().push_input(&big), INPUT_CAPACITY);
    assert_eq!(t.device_mut().push_input(b"y"), 0);
    assert!(!t.poll(&mut d.mem).interrupt);
    let b2 = d.alloc(INPUT_CAPACITY as u64, 16);
    d.add_chain(RECEIVEQ, &[Buf::w(b2, INPUT_CAPACITY as u32)]);
    // Like Linux: after consuming two buffers, ask for an interrupt at the next one
    // (virtio 1.2 §2.7.7.2).
    d.set_used_event(RECEIVEQ, 2);
    assert!(
        d.kick(&mut t, RECEIVEQ).interrupt,
        "posting a buffer delivers"
    );
    assert_eq!(
        d.pop_used(RECEIVEQ).map(|u| u.1),
        Some(INPUT_CAPACITY as u32)
    );
    assert_eq!(t.device().pending_input(), 0);
    assert_eq!(t.stats().bytes_written, 6 + INPUT_CAPACITY as u64);
}

/// virtio 1.2 §5.3.6.1: device-writable buffers in transmitq and device-readable ones in
/// receiveq are returned unused and counted; a structurally broken chain needs a reset.
#[test]
fn malformed_chains() {
    let (mut d, mut t) = console(64);
    let a = d.alloc_data(b"secret");
    let w = d.alloc(8, 16);
    let bad_tx = d.add_chain(TRANSMITQ, &[Buf::r(a, 6), Buf::w(w, 8)]);
    let good = d.alloc_data(b"ok");
    d.add_chain(TRANSMITQ, &[Buf::r(good, 2)]);
    d.kick(&mut t, TRANSMITQ);
    assert_eq!(d.pop_used(TRANSMITQ), Some((u32::from(bad_tx), 0)));
    assert!(d.pop_used(TRANSMITQ).is_some());
    assert_eq!(output(&mut t), b"ok", "nothing of the bad chain is output");
    assert_eq!(t.stats().errors, 1);

    let r = d.alloc_data(&[0; 8]);
    let bad_rx = d.add_chain(RECEIVEQ, &[Buf::r(r, 8)]);
    let ok_rx = d.alloc(8, 16);
    let h = d.add_chain(RECEIVEQ, &[Buf::w(ok_rx, 8)]);
    t.device_mut().push_input(b"in");
    t.poll(&mut d.mem);
    assert_eq!(d.pop_used(RECEIVEQ), Some((u32::from(bad_rx), 0)));
    assert_eq!(d.pop_used(RECEIVEQ), Some((u32::from(h), 2)));
    assert_eq!(&d.read(ok_rx, 2), b"in");
    assert_eq!(d.read(r, 8), [0; 8], "the readable buffer is not written");
    assert_eq!(t.stats().errors, 2);
    assert_eq!(t.status() & status::DEVICE_NEEDS_RESET, 0);

    // A descriptor loop is a broken ring (virtio 1.2 §2.7.5.2): DEVICE_NEEDS_RESET.
    d.write_desc(TRANSMITQ, 10, good, 2, crate::spec::ring::DESC_F_NEXT, 10);
    d.push_avail(TRANSMITQ, 10);
    d.kick(&mut t, TRANSMITQ);
    assert_ne!(t.status() & status::DEVICE_NEEDS_RESET, 0);
    assert_eq!(
        t.error().map(|e| e.to_string()),
        Some("virtqueue 1: descriptor chain loops at descriptor 10".into())
    );
}

/// A sink that is full takes what fits; the rest of the buffer follows, in order, once the
/// hypervisor drained it.
#[test]
fn sink_backpressure_keeps_order() {
    let (mut d, mut t) = console(4);
    let a = d.alloc_data(b"hello world\n");
    let head = d.add_chain(TRANSMITQ, &[Buf::r(a, 12)]);
    let b = d.alloc_data(b"!");
    d.add_chain(TRANSMITQ, &[Buf::r(b, 1)]);
    let e = d.kick(&mut t, TRANSMITQ);
    assert!(e.more && t.has_kicks());
    assert_eq!(d.pop_used(TRANSMITQ), None, "not fully written yet");
    let mut all = Vec::new();
    for _ in 0..10 {
        all.extend(output(&mut t));
        if !t.has_kicks() {
            break;
        }
        t.process_kicks(&mut d.mem);
    }
    all.extend(output(&mut t));
    assert_eq!(all, b"hello world\n!");
    assert_eq!(d.pop_used(TRANSMITQ), Some((u32::from(head), 0)));
    assert!(d.pop_used(TRANSMITQ).is_some());
}

/// 100 transmit buffers: 32 per call.
#[test]
fn transmit_is_bounded_per_call() {
    let (mut d, mut t) = console(1 << 16);
    let a = d.alloc_data(b"0123456789");
    for _ in 0..60 {
        d.add_chain(TRANSMITQ, &[Buf::r(a, 10)]);
    }
    assert!(d.kick(&mut t, TRANSMITQ).more);
    assert_eq!(t.device().sink().len(), 320);
    assert!(!t.process_kicks(&mut d.mem).more);
    assert_eq!(t.device().sink().len(), 600);
}

/// A reset forgets pending input and the partly written buffer.
#[test]
fn reset_clears_console_state() {
    let (mut d, mut t) = console(2);
    t.device_mut().push_input(b"lost");
    let a = d.alloc_data(b"abcdef");
    d.add_chain(TRANSMITQ, &[Buf::r(a, 6)]);
    d.kick(&mut t, TRANSMITQ);
    assert!(t.has_kicks());
    d.mmio_write(&mut t, Register::Status, 0);
    assert!(!t.has_kicks());
    assert_eq!(t.device().pending_input(), 0);
    output(&mut t);
    let (mut d, mut t2) = (d, t);
    d.setup(&mut t2, ALL_FEATURES, 64).unwrap();
    let b = d.alloc_data(b"ok");
    d.add_chain(TRANSMITQ, &[Buf::r(b, 2)]);
    d.kick(&mut t2, TRANSMITQ);
    assert_eq!(output(&mut t2), b"ok");
}
