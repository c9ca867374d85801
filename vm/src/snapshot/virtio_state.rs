//! A virtio section: one virtio-mmio device's [`TransportState`] (virtio::state says what it
//! holds) in the snapshot's field encoding ([`super::codec`]).
//!
//! The decoder checks the shape (tags, booleans, flag bits, counts within the crate's
//! limits, every byte read); [`virtio::MmioTransport::load_state_checked`] checks the
//! meaning against the VM's device. A decoded state borrows a disk's bytes from the section.
//!
//! ```text
//! u8  status            u32 device_features_sel   u32 driver_features_sel
//! u64 driver_features   u32 queue_sel             u32 interrupt_status
//! u32 config_generation u8  config_change_pending u64 pending   u32 next_queue
//! u8  queues, each: u16 size, u8 flags (QUEUE_*), u64 desc, u64 avail, u64 used,
//!                   u16 next_avail, u16 next_used, u16 signalled_used
//! u32 virtio device ID (virtio 1.2 §5), then
//!   blk:     u64 len, u8 read_only, u8 contents (DISK_*):
//!            external: nothing; owned: u64 n + n bytes;
//!            copy-on-write: u64 blocks, each u64 index + 4096 bytes; u32 ranges, each
//!            u64 start + u64 end
//!   net:     u8 link_up
//!   console: u32 n + n input bytes, u64 tx_skip
//! ```

use alloc::borrow::Cow;
use alloc::vec::Vec;

use super::codec::{Dec, Enc};
use virtio::console::INPUT_CAPACITY;
use virtio::ramdisk::{MAX_ZERO_RANGES, OVERLAY_BLOCK};
use virtio::state::{
    BlkState, ConsoleState, DeviceKind, DeviceState, DiskContents, DiskState, NetState,
    OverlayBlock, OverlayState, QueueState, TransportState, ZeroRange, MAX_QUEUES,
};

const QUEUE_READY: u8 = 1 << 0;
const QUEUE_USED_PENDING: u8 = 1 << 1;
const QUEUE_EVENT_IDX: u8 = 1 << 2;
const QUEUE_INDIRECT: u8 = 1 << 3;
const QUEUE_SUPPRESSED: u8 = 1 << 4;
const QUEUE_FLAGS: u8 =
    QUEUE_READY | QUEUE_USED_PENDING | QUEUE_EVENT_IDX | QUEUE_INDIRECT | QUEUE_SUPPRESSED;

const DISK_EXTERNAL: u8 = 0;
const DISK_OWNED: u8 = 1;
const DISK_COPY_ON_WRITE: u8 = 2;

/// Bytes of one overlay block in a section.
const BLOCK: usize = OVERLAY_BLOCK as usize;

/// Bytes `s` takes encoded (to reserve heap before encoding a large disk).
pub fn encoded_len(s: &TransportState<'_>) -> usize {
    const FIXED: usize = 1 + 4 + 4 + 8 + 4 + 4 + 4 + 1 + 8 + 4 + 1 + 4;
    const QUEUE: usize = 2 + 1 + 8 * 3 + 2 * 3;
    FIXED
        + s.queues.len() * QUEUE
        + match &s.device {
            DeviceState::Blk(b) => {
                8 + 1
                    + 1
                    + match &b.disk.contents {
                        DiskContents::External => 0,
                        DiskContents::Owned(bytes) => 8 + bytes.len(),
                        DiskContents::CopyOnWrite(o) => {
                            8 + o.blocks.len() * (8 + BLOCK) + 4 + o.zero_ranges.len() * 16
                        }
                    }
            }
            DeviceState::Net(_) => 1,
            DeviceState::Console(c) => 4 + c.input.len() + 8,
        }
}

/// Encodes `s`. A state taken from a transport has at most [`MAX_QUEUES`] queues, overlay
/// blocks of [`OVERLAY_BLOCK`] bytes and at most [`MAX_ZERO_RANGES`] zero ranges; the
/// decoder refuses anything else.
pub fn encode(s: &TransportState<'_>, e: &mut Enc) {
    e.u8(s.status)
        .u32(s.device_features_sel)
        .u32(s.driver_features_sel)
        .u64(s.driver_features)
        .u32(s.queue_sel)
        .u32(s.interrupt_status)
        .u32(s.config_generation)
        .u8(u8::from(s.config_change_pending))
        .u64(s.pending)
        .u32(s.next_queue)
        .u8(s.queues.len() as u8);
    for q in &s.queues {
        let flags = [
            (q.ready, QUEUE_READY),
            (q.used_pending, QUEUE_USED_PENDING),
            (q.event_idx, QUEUE_EVENT_IDX),
            (q.indirect, QUEUE_INDIRECT),
            (q.notifications_suppressed, QUEUE_SUPPRESSED),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .fold(0, |f, (_, bit)| f | bit);
        e.u16(q.size)
            .u8(flags)
            .u64(q.desc_table)
            .u64(q.avail_ring)
            .u64(q.used_ring)
            .u16(q.next_avail)
            .u16(q.next_used)
            .u16(q.signalled_used);
    }
    e.u32(s.device.kind().device_id());
    match &s.device {
        DeviceState::Blk(b) => {
            e.u64(b.disk.len).u8(u8::from(b.disk.read_only));
            match &b.disk.contents {
                DiskContents::External => {
                    e.u8(DISK_EXTERNAL);
                }
                DiskContents::Owned(bytes) => {
                    e.u8(DISK_OWNED).u64(bytes.len() as u64);
                    e.0.extend_from_slice(bytes);
                }
                DiskContents::CopyOnWrite(o) => {
                    e.u8(DISK_COPY_ON_WRITE).u64(o.blocks.len() as u64);
                    for b in &o.blocks {
                        e.u64(b.index);
                        e.0.extend_from_slice(&b.data);
                    }
                    e.u32(o.zero_ranges.len() as u32);
                    for r in &o.zero_ranges {
                        e.u64(r.start).u64(r.end);
                    }
                }
            }
        }
        DeviceState::Net(n) => {
            e.u8(u8::from(n.link_up));
        }
        DeviceState::Console(c) => {
            e.bytes(&c.input).u64(c.tx_skip);
        }
    }
}

/// What is wrong with a virtio section.
const SHORT: &str = "the section ends early";

fn flag(d: &mut Dec<'_>) -> Result<bool, &'static str> {
    match d.u8().ok_or(SHORT)? {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err("a flag byte is neither 0 nor 1"),
    }
}

/// Decodes a section [`encode`] wrote, borrowing disk bytes from `bytes`. Checks shape only
/// (see the module documentation); refuses bytes after the last field.
pub fn decode(bytes: &[u8]) -> Result<TransportState<'_>, &'static str> {
    let mut d = Dec::new(bytes);
    let s = decode_fields(&mut d)?;
    if !d.done() {
        return Err("bytes after the last field");
    }
    Ok(s)
}

fn decode_fields<'a>(d: &mut Dec<'a>) -> Result<TransportState<'a>, &'static str> {
    let status = d.u8().ok_or(SHORT)?;
    let device_features_sel = d.u32().ok_or(SHORT)?;
    let driver_features_sel = d.u32().ok_or(SHORT)?;
    let driver_features = d.u64().ok_or(SHORT)?;
    let queue_sel = d.u32().ok_or(SHORT)?;
    let interrupt_status = d.u32().ok_or(SHORT)?;
    let config_generation = d.u32().ok_or(SHORT)?;
    let config_change_pending = flag(d)?;
    let pending = d.u64().ok_or(SHORT)?;
    let next_queue = d.u32().ok_or(SHORT)?;
    let count = d.u8().ok_or(SHORT)? as usize;
    if count > MAX_QUEUES {
        return Err("more virtqueues than a device has");
    }
    let mut queues = Vec::with_capacity(count);
    for _ in 0..count {
        let size = d.u16().ok_or(SHORT)?;
        let flags = d.u8().ok_or(SHORT)?;
        if flags & !QUEUE_FLAGS != 0 {
            return Err("a virtqueue has undefined flag bits");
        }
        queues.push(QueueState {
            size,
            ready: flags & QUEUE_READY != 0,
            used_pending: flags & QUEUE_USED_PENDING != 0,
            event_idx: flags & QUEUE_EVENT_IDX != 0,
            indirect: flags & QUEUE_INDIRECT != 0,
            notifications_suppressed: flags & QUEUE_SUPPRESSED != 0,
            desc_table: d.u64().ok_or(SHORT)?,
            avail_ring: d.u64().ok_or(SHORT)?,
            used_ring: d.u64().ok_or(SHORT)?,
            next_avail: d.u16().ok_or(SHORT)?,
            next_used: d.u16().ok_or(SHORT)?,
            signalled_used: d.u16().ok_or(SHORT)?,
        });
    }
    let kind = DeviceKind::from_device_id(d.u32().ok_or(SHORT)?)
        .ok_or("a device type Bulkhead does not implement")?;
    let device = match kind {
        DeviceKind::Blk => DeviceState::Blk(BlkState {
            disk: decode_disk(d)?,
        }),
        DeviceKind::Net => DeviceState::Net(NetState { link_up: flag(d)? }),
        DeviceKind::Console => {
            let input = d
                .bytes(INPUT_CAPACITY)
                .ok_or("the console input ends early or exceeds its buffer")?
                .to_vec();
            DeviceState::Console(ConsoleState {
                input,
                tx_skip: d.u64().ok_or(SHORT)?,
            })
        }
    };
    Ok(TransportState {
        status,
        device_features_sel,
        driver_features_sel,
        driver_features,
        queue_sel,
        interrupt_status,
        config_generation,
        config_change_pending,
        pending,
        next_queue,
        queues,
        device,
    })
}

fn decode_disk<'a>(d: &mut Dec<'a>) -> Result<DiskState<'a>, &'static str> {
    let len = d.u64().ok_or(SHORT)?;
    let read_only = flag(d)?;
    let contents = match d.u8().ok_or(SHORT)? {
        DISK_EXTERNAL => DiskContents::External,
        DISK_OWNED => {
            let n = usize::try_from(d.u64().ok_or(SHORT)?).map_err(|_| SHORT)?;
            DiskContents::Owned(Cow::Borrowed(d.raw(n).ok_or(SHORT)?))
        }
        DISK_COPY_ON_WRITE => {
            let n = d.u64().ok_or(SHORT)?;
            // Each block needs its bytes in the section: growing block by block bounds the
            // allocation by the section's size, whatever `n` claims.
            let mut blocks = Vec::new();
            for _ in 0..n {
                let index = d.u64().ok_or(SHORT)?;
                let data = Cow::Borrowed(d.raw(BLOCK).ok_or(SHORT)?);
                blocks.push(OverlayBlock { index, data });
            }
            let ranges = d.u32().ok_or(SHORT)? as usize;
            if ranges > MAX_ZERO_RANGES {
                return Err("more zero ranges than a disk overlay records");
            }
            let mut zero_ranges = Vec::with_capacity(ranges);
            for _ in 0..ranges {
                zero_ranges.push(ZeroRange {
                    start: d.u64().ok_or(SHORT)?,
                    end: d.u64().ok_or(SHORT)?,
                });
            }
            DiskContents::CopyOnWrite(OverlayState {
                blocks,
                zero_ranges,
            })
        }
        _ => return Err("an unknown disk contents kind"),
    };
    Ok(DiskState {
        len,
        read_only,
        contents,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn queue(i: u16) -> QueueState {
        QueueState {
            size: 256,
            ready: true,
            desc_table: 0x10_0000 + u64::from(i) * 0x1000,
            avail_ring: 0x20_0000,
            used_ring: 0x30_0000,
            next_avail: 7 + i,
            next_used: 6,
            signalled_used: 5,
            used_pending: i == 0,
            event_idx: true,
            indirect: false,
            notifications_suppressed: i == 1,
        }
    }

    fn transport(device: DeviceState<'_>, queues: usize) -> TransportState<'_> {
        TransportState {
            status: 0x0f,
            device_features_sel: 1,
            driver_features_sel: 0,
            driver_features: 1 << 32 | 1 << 29,
            queue_sel: 1,
            interrupt_status: 1,
            config_generation: 3,
            config_change_pending: true,
            pending: 0b10,
            next_queue: 1,
            queues: (0..queues as u16).map(queue).collect(),
            device,
        }
    }

    fn round_trip(s: &TransportState<'_>) {
        let mut e = Enc::default();
        encode(s, &mut e);
        assert_eq!(e.0.len(), encoded_len(s));
        assert_eq!(&decode(&e.0).unwrap(), s);
        // Every prefix is refused, and so is a byte more.
        for n in 0..e.0.len() {
            assert!(decode(&e.0[..n]).is_err(), "prefix of {n} bytes accepted");
        }
        let mut longer = e.0.clone();
        longer.push(0);
        assert_eq!(decode(&longer), Err("bytes after the last field"));
    }

    #[test]
    fn every_device_kind_round_trips() {
        let data: Vec<u8> = (0..2 * BLOCK).map(|i| (i * 7) as u8).collect();
        let blocks = vec![
            OverlayBlock {
                index: 0,
                data: Cow::Borrowed(&data[..BLOCK]),
            },
            OverlayBlock {
                index: 9,
                data: Cow::Borrowed(&data[BLOCK..]),
            },
        ];
        let cow = DiskContents::CopyOnWrite(OverlayState {
            blocks,
            zero_ranges: vec![ZeroRange {
                start: 0x2000,
                end: 0x2200,
            }],
        });
        for contents in [
            DiskContents::External,
            DiskContents::Owned(Cow::Borrowed(&data[..1000])),
            cow,
        ] {
            round_trip(&transport(
                DeviceState::Blk(BlkState {
                    disk: DiskState {
                        len: 1 << 20,
                        read_only: false,
                        contents,
                    },
                }),
                1,
            ));
        }
        round_trip(&transport(DeviceState::Net(NetState { link_up: true }), 2));
        round_trip(&transport(
            DeviceState::Console(ConsoleState {
                input: b"typed ahead".to_vec(),
                tx_skip: 3,
            }),
            2,
        ));
    }

    fn encoded(s: &TransportState<'_>) -> Vec<u8> {
        let mut e = Enc::default();
        encode(s, &mut e);
        e.0
    }

    #[test]
    fn malformed_sections_are_refused_with_their_reason() {
        let net = transport(DeviceState::Net(NetState { link_up: false }), 2);
        let good = encoded(&net);
        // config_change_pending is byte 29.
        let mut b = good.clone();
        b[29] = 2;
        assert_eq!(decode(&b), Err("a flag byte is neither 0 nor 1"));
        // The queue count is byte 42.
        let mut b = good.clone();
        b[42] = MAX_QUEUES as u8 + 1;
        assert_eq!(decode(&b), Err("more virtqueues than a device has"));
        // The first queue's flags are byte 45.
        let mut b = good.clone();
        b[45] |= 0x80;
        assert_eq!(decode(&b), Err("a virtqueue has undefined flag bits"));
        // The device ID follows the two 33-byte queues.
        let id = 43 + 2 * 33;
        let mut b = good.clone();
        b[id..id + 4].copy_from_slice(&99u32.to_le_bytes());
        assert_eq!(decode(&b), Err("a device type Bulkhead does not implement"));

        let disk = |contents| {
            transport(
                DeviceState::Blk(BlkState {
                    disk: DiskState {
                        len: 1 << 20,
                        read_only: true,
                        contents,
                    },
                }),
                1,
            )
        };
        let good = encoded(&disk(DiskContents::External));
        let tag = 43 + 33 + 4 + 8 + 1;
        let mut b = good.clone();
        b[tag] = 3;
        assert_eq!(decode(&b), Err("an unknown disk contents kind"));
        // A copy-on-write overlay claiming more blocks than the section holds.
        let cow = encoded(&disk(DiskContents::CopyOnWrite(OverlayState::default())));
        let mut b = cow.clone();
        b[tag + 1..tag + 9].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(decode(&b), Err(SHORT));
        let mut b = cow.clone();
        b[tag + 9..tag + 13].copy_from_slice(&(MAX_ZERO_RANGES as u32 + 1).to_le_bytes());
        assert_eq!(
            decode(&b),
            Err("more zero ranges than a disk overlay records")
        );
        // An owned disk claiming more bytes than the section holds.
        let owned = encoded(&disk(DiskContents::Owned(Cow::Borrowed(&[1, 2, 3]))));
        let mut b = owned.clone();
        b[tag + 1..tag + 9].copy_from_slice(&4u64.to_le_bytes());
        assert_eq!(decode(&b), Err(SHORT));

        let console = encoded(&transport(
            DeviceState::Console(ConsoleState {
                input: vec![b'x'; INPUT_CAPACITY],
                tx_skip: 0,
            }),
            2,
        ));
        assert!(decode(&console).is_ok());
        let mut b = console.clone();
        let len = 43 + 2 * 33 + 4;
        b[len..len + 4].copy_from_slice(&(INPUT_CAPACITY as u32 + 1).to_le_bytes());
        assert_eq!(
            decode(&b),
            Err("the console input ends early or exceeds its buffer")
        );
    }
}
