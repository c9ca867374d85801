//! Constants named by the virtio 1.2 specification.
//!
//! Section numbers refer to "Virtual I/O Device (VIRTIO) Version 1.2".

/// Device types (virtio 1.2 §5).
pub mod device_id {
    /// Network card (virtio 1.2 §5.1).
    pub const NET: u32 = 1;
    /// Block device (virtio 1.2 §5.2).
    pub const BLOCK: u32 = 2;
    /// Console (virtio 1.2 §5.3).
    pub const CONSOLE: u32 = 3;
}

/// Feature bits (virtio 1.2 §6 reserved bits, §5.1.3 net, §5.2.3 block).
pub mod feature {
    /// virtio 1.2 §6: the driver can use descriptors with VIRTQ_DESC_F_INDIRECT (§2.7.5.3).
    pub const RING_INDIRECT_DESC: u64 = 1 << 28;
    /// virtio 1.2 §6: used_event / avail_event notification suppression (§2.7.7, §2.7.10).
    pub const RING_EVENT_IDX: u64 = 1 << 29;
    /// virtio 1.2 §6: compliance with this specification (modern device).
    pub const VERSION_1: u64 = 1 << 32;
    /// virtio 1.2 §6: device is behind an IOMMU (never offered here).
    pub const ACCESS_PLATFORM: u64 = 1 << 33;
    /// virtio 1.2 §6: packed virtqueue layout (never offered here).
    pub const RING_PACKED: u64 = 1 << 34;

    /// virtio 1.2 §5.2.3: maximum size of any single segment is in `size_max`.
    pub const BLK_SIZE_MAX: u64 = 1 << 1;
    /// virtio 1.2 §5.2.3: maximum number of segments in a request is in `seg_max`.
    pub const BLK_SEG_MAX: u64 = 1 << 2;
    /// virtio 1.2 §5.2.3: disk-style geometry in `geometry`.
    pub const BLK_GEOMETRY: u64 = 1 << 4;
    /// virtio 1.2 §5.2.3: device is read-only.
    pub const BLK_RO: u64 = 1 << 5;
    /// virtio 1.2 §5.2.3: block size of disk is in `blk_size`.
    pub const BLK_BLK_SIZE: u64 = 1 << 6;
    /// virtio 1.2 §5.2.3: cache flush command support.
    pub const BLK_FLUSH: u64 = 1 << 9;
    /// virtio 1.2 §5.2.3: device exports topology information.
    pub const BLK_TOPOLOGY: u64 = 1 << 10;
    /// virtio 1.2 §5.2.3: device can toggle its cache between writeback and writethrough.
    pub const BLK_CONFIG_WCE: u64 = 1 << 11;
    /// virtio 1.2 §5.2.3: device supports discard.
    pub const BLK_DISCARD: u64 = 1 << 13;
    /// virtio 1.2 §5.2.3: device supports write zeroes.
    pub const BLK_WRITE_ZEROES: u64 = 1 << 14;

    /// virtio 1.2 §5.1.3: device handles packets with partial checksum (not offered).
    pub const NET_CSUM: u64 = 1 << 0;
    /// virtio 1.2 §5.1.3: driver handles packets with partial checksum (not offered).
    pub const NET_GUEST_CSUM: u64 = 1 << 1;
    /// virtio 1.2 §5.1.3: device maximum MTU reporting (not offered).
    pub const NET_MTU: u64 = 1 << 3;
    /// virtio 1.2 §5.1.3: device has given MAC address.
    pub const NET_MAC: u64 = 1 << 5;
    /// virtio 1.2 §5.1.3: driver can merge receive buffers (not offered).
    pub const NET_MRG_RXBUF: u64 = 1 << 15;
    /// virtio 1.2 §5.1.3: configuration status field is available.
    pub const NET_STATUS: u64 = 1 << 16;
    /// virtio 1.2 §5.1.3: control channel is available (not offered).
    pub const NET_CTRL_VQ: u64 = 1 << 17;

    /// virtio 1.2 §5.3.3: configuration cols and rows are valid (not offered).
    pub const CONSOLE_SIZE: u64 = 1 << 0;
    /// virtio 1.2 §5.3.3: multiple ports and control virtqueues (not offered).
    pub const CONSOLE_MULTIPORT: u64 = 1 << 1;
    /// virtio 1.2 §5.3.3: emergency write through emerg_wr (not offered).
    pub const CONSOLE_EMERG_WRITE: u64 = 1 << 2;
}

/// Device status field bits (virtio 1.2 §2.1).
pub mod status {
    /// Guest OS has found the device and recognized it as a valid virtio device.
    pub const ACKNOWLEDGE: u8 = 1;
    /// Guest OS knows how to drive the device.
    pub const DRIVER: u8 = 2;
    /// The driver is set up and ready to drive the device.
    pub const DRIVER_OK: u8 = 4;
    /// The driver has acknowledged all the features it understands.
    pub const FEATURES_OK: u8 = 8;
    /// The device has experienced an error from which it can't recover (virtio 1.2 §2.1.2).
    pub const DEVICE_NEEDS_RESET: u8 = 64;
    /// Something went wrong in the guest, and it has given up on the device.
    pub const FAILED: u8 = 128;
    /// Every bit virtio 1.2 §2.1 defines; the others are reserved.
    pub const DEFINED: u8 =
        ACKNOWLEDGE | DRIVER | DRIVER_OK | FEATURES_OK | DEVICE_NEEDS_RESET | FAILED;
}

/// Split virtqueue flags (virtio 1.2 §2.7.5, §2.7.6, §2.7.8).
pub mod ring {
    /// virtio 1.2 §2.7.5: buffer continues via the `next` field.
    pub const DESC_F_NEXT: u16 = 1;
    /// virtio 1.2 §2.7.5: buffer is device write-only (otherwise device read-only).
    pub const DESC_F_WRITE: u16 = 2;
    /// virtio 1.2 §2.7.5.3: buffer contains a table of buffer descriptors.
    pub const DESC_F_INDIRECT: u16 = 4;
    /// virtio 1.2 §2.7.6: the driver does not want an interrupt (without EVENT_IDX).
    pub const AVAIL_F_NO_INTERRUPT: u16 = 1;
    /// virtio 1.2 §2.7.8: the device does not want notifications (without EVENT_IDX).
    pub const USED_F_NO_NOTIFY: u16 = 1;
    /// virtio 1.2 §2.7.5: size of one descriptor in bytes.
    pub const DESC_SIZE: u64 = 16;
    /// virtio 1.2 §2.7: maximum queue size of a split virtqueue.
    pub const MAX_QUEUE_SIZE: u16 = 32768;
    /// virtio 1.2 §2.7 "Virtqueue Part Alignment": the descriptor table.
    pub const DESC_ALIGN: u64 = 16;
    /// virtio 1.2 §2.7 "Virtqueue Part Alignment": the driver area (available ring).
    pub const AVAIL_ALIGN: u64 = 2;
    /// virtio 1.2 §2.7 "Virtqueue Part Alignment": the device area (used ring).
    pub const USED_ALIGN: u64 = 4;
    /// virtio 1.2 §2.7.6: flags, idx and used_event around the available ring's entries.
    pub const AVAIL_FIXED_BYTES: u64 = 6;
    /// virtio 1.2 §2.7.6: one available ring entry (le16 ring[]).
    pub const AVAIL_ENTRY_BYTES: u64 = 2;
    /// virtio 1.2 §2.7.8: flags, idx and avail_event around the used ring's entries.
    pub const USED_FIXED_BYTES: u64 = 6;
    /// virtio 1.2 §2.7.8: one used ring entry (struct virtq_used_elem).
    pub const USED_ENTRY_BYTES: u64 = 8;
}

/// virtio 1.2 §4.2.2: "virt" in little endian.
pub const MMIO_MAGIC: u32 = 0x7472_6976;
/// virtio 1.2 §4.2.2: version 2 is the non-legacy virtio-mmio interface.
pub const MMIO_VERSION: u32 = 2;

/// InterruptStatus bits (virtio 1.2 §4.2.2).
pub mod interrupt {
    /// The device used a buffer in at least one of the active virtqueues.
    pub const USED_BUFFER: u32 = 1;
    /// The configuration of the device has changed.
    pub const CONFIG_CHANGE: u32 = 2;
    /// Every bit virtio 1.2 §4.2.2 defines for InterruptStatus.
    pub const DEFINED: u32 = USED_BUFFER | CONFIG_CHANGE;
}

/// virtio-mmio version 2 register layout (virtio 1.2 §4.2.2, table "MMIO Device Register Layout").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u64)]
pub enum Register {
    /// R: 0x74726976.
    MagicValue = 0x000,
    /// R: 0x2.
    Version = 0x004,
    /// R: virtio subsystem device ID.
    DeviceId = 0x008,
    /// R: virtio subsystem vendor ID.
    VendorId = 0x00c,
    /// R: 32 feature bits selected by DeviceFeaturesSel.
    DeviceFeatures = 0x010,
    /// W: selects the 32-bit word of DeviceFeatures.
    DeviceFeaturesSel = 0x014,
    /// W: 32 feature bits accepted by the driver, selected by DriverFeaturesSel.
    DriverFeatures = 0x020,
    /// W: selects the 32-bit word of DriverFeatures.
    DriverFeaturesSel = 0x024,
    /// W: selects the virtqueue the following queue registers apply to.
    QueueSel = 0x030,
    /// R: maximum queue size of the selected queue (0 if not available).
    QueueNumMax = 0x034,
    /// W: queue size the driver will use.
    QueueNum = 0x038,
    /// RW: queue ready bit.
    QueueReady = 0x044,
    /// W: queue notifier (value = queue index).
    QueueNotify = 0x050,
    /// R: interrupt status bits.
    InterruptStatus = 0x060,
    /// W: interrupt acknowledge.
    InterruptAck = 0x064,
    /// RW: device status (virtio 1.2 §2.1).
    Status = 0x070,
    /// W: descriptor table address, low 32 bits.
    QueueDescLow = 0x080,
    /// W: descriptor table address, high 32 bits.
    QueueDescHigh = 0x084,
    /// W: driver (available) ring address, low 32 bits.
    QueueDriverLow = 0x090,
    /// W: driver (available) ring address, high 32 bits.
    QueueDriverHigh = 0x094,
    /// W: device (used) ring address, low 32 bits.
    QueueDeviceLow = 0x0a0,
    /// W: device (used) ring address, high 32 bits.
    QueueDeviceHigh = 0x0a4,
    /// W: shared memory region selector.
    ShmSel = 0x0ac,
    /// R: shared memory region length, low 32 bits.
    ShmLenLow = 0x0b0,
    /// R: shared memory region length, high 32 bits.
    ShmLenHigh = 0x0b4,
    /// R: shared memory region base, low 32 bits.
    ShmBaseLow = 0x0b8,
    /// R: shared memory region base, high 32 bits.
    ShmBaseHigh = 0x0bc,
    /// RW: queue reset (only with VIRTIO_F_RING_RESET, not offered).
    QueueReset = 0x0c0,
    /// R: configuration atomicity value.
    ConfigGeneration = 0x0fc,
}

/// virtio 1.2 §4.2.2: device-specific configuration space starts at 0x100.
pub const MMIO_CONFIG_OFFSET: u64 = 0x100;
/// Size of one virtio-mmio register window as usually described to the guest
/// (e.g. device tree `reg = <base 0x200>`); covers the registers and config space.
pub const MMIO_WINDOW_SIZE: u64 = 0x200;

impl Register {
    /// All registers, for lookups.
    const ALL: [Register; 28] = [
        Register::MagicValue,
        Register::Version,
        Register::DeviceId,
        Register::VendorId,
        Register::DeviceFeatures,
        Register::DeviceFeaturesSel,
        Register::DriverFeatures,
        Register::DriverFeaturesSel,
        Register::QueueSel,
        Register::QueueNumMax,
        Register::QueueNum,
        Register::QueueReady,
        Register::QueueNotify,
        Register::InterruptStatus,
        Register::InterruptAck,
        Register::Status,
        Register::QueueDescLow,
        Register::QueueDescHigh,
        Register::QueueDriverLow,
        Register::QueueDriverHigh,
        Register::QueueDeviceLow,
        Register::QueueDeviceHigh,
        Register::ShmSel,
        Register::ShmLenLow,
        Register::ShmLenHigh,
        Register::ShmBaseLow,
        Register::ShmBaseHigh,
        Register::QueueReset,
    ];

    /// The register at `offset`, if any. ConfigGeneration is included.
    pub fn from_offset(offset: u64) -> Option<Register> {
        if offset == Register::ConfigGeneration as u64 {
            return Some(Register::ConfigGeneration);
        }
        Register::ALL.iter().copied().find(|r| *r as u64 == offset)
    }

    /// Byte offset of the register in the MMIO window.
    pub fn offset(self) -> u64 {
        self as u64
    }
}

/// virtio-blk request types (virtio 1.2 §5.2.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlkRequestType {
    /// VIRTIO_BLK_T_IN: read.
    In,
    /// VIRTIO_BLK_T_OUT: write.
    Out,
    /// VIRTIO_BLK_T_FLUSH.
    Flush,
    /// VIRTIO_BLK_T_GET_ID: 20-byte device id string.
    GetId,
    /// VIRTIO_BLK_T_DISCARD.
    Discard,
    /// VIRTIO_BLK_T_WRITE_ZEROES.
    WriteZeroes,
}

impl BlkRequestType {
    /// virtio 1.2 §5.2.6 numeric value of VIRTIO_BLK_T_IN.
    pub const IN: u32 = 0;
    /// VIRTIO_BLK_T_OUT.
    pub const OUT: u32 = 1;
    /// VIRTIO_BLK_T_FLUSH.
    pub const FLUSH: u32 = 4;
    /// VIRTIO_BLK_T_GET_ID.
    pub const GET_ID: u32 = 8;
    /// VIRTIO_BLK_T_GET_LIFETIME (unsupported).
    pub const GET_LIFETIME: u32 = 10;
    /// VIRTIO_BLK_T_DISCARD.
    pub const DISCARD: u32 = 11;
    /// VIRTIO_BLK_T_WRITE_ZEROES.
    pub const WRITE_ZEROES: u32 = 13;
    /// VIRTIO_BLK_T_SECURE_ERASE (unsupported).
    pub const SECURE_ERASE: u32 = 14;

    /// Decodes a request type; `None` for unknown or unsupported types.
    pub fn from_u32(v: u32) -> Option<Self> {
        match v {
            Self::IN => Some(Self::In),
            Self::OUT => Some(Self::Out),
            Self::FLUSH => Some(Self::Flush),
            Self::GET_ID => Some(Self::GetId),
            Self::DISCARD => Some(Self::Discard),
            Self::WRITE_ZEROES => Some(Self::WriteZeroes),
            _ => None,
        }
    }

    /// The numeric value on the wire.
    pub fn as_u32(self) -> u32 {
        match self {
            Self::In => Self::IN,
            Self::Out => Self::OUT,
            Self::Flush => Self::FLUSH,
            Self::GetId => Self::GET_ID,
            Self::Discard => Self::DISCARD,
            Self::WriteZeroes => Self::WRITE_ZEROES,
        }
    }
}

/// virtio-blk status values (virtio 1.2 §5.2.6).
pub mod blk_status {
    /// VIRTIO_BLK_S_OK.
    pub const OK: u8 = 0;
    /// VIRTIO_BLK_S_IOERR.
    pub const IOERR: u8 = 1;
    /// VIRTIO_BLK_S_UNSUPP.
    pub const UNSUPP: u8 = 2;
}

/// virtio-net config `status` bits (virtio 1.2 §5.1.4).
pub mod net_status {
    /// VIRTIO_NET_S_LINK_UP.
    pub const LINK_UP: u16 = 1;
    /// VIRTIO_NET_S_ANNOUNCE.
    pub const ANNOUNCE: u16 = 2;
}

/// virtio 1.2 §2.7.7.2 / §2.7.10: `vring_need_event`: true if `new_idx` has just
/// passed `event_idx` since `old_idx` (all arithmetic modulo 2^16).
pub fn vring_need_event(event_idx: u16, new_idx: u16, old_idx: u16) -> bool {
    new_idx.wrapping_sub(event_idx).wrapping_sub(1) < new_idx.wrapping_sub(old_idx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn need_event() {
        // virtio 1.2 §2.7.7.2: notify iff event_idx is in [old, new).
        assert!(vring_need_event(0, 1, 0));
        assert!(!vring_need_event(1, 1, 0));
        assert!(vring_need_event(4, 10, 0));
        assert!(!vring_need_event(10, 10, 0));
        assert!(vring_need_event(0xffff, 2, 0xfffe), "wraps modulo 2^16");
        assert!(!vring_need_event(5, 3, 3), "nothing new, no event");
    }

    #[test]
    fn register_offsets_round_trip() {
        for r in Register::ALL {
            assert_eq!(Register::from_offset(r.offset()), Some(r));
        }
        assert_eq!(
            Register::from_offset(0x0fc),
            Some(Register::ConfigGeneration)
        );
        assert_eq!(Register::from_offset(0x018), None);
        assert_eq!(Register::from_offset(0x100), None);
    }

    #[test]
    fn blk_request_types_round_trip() {
        for t in [
            BlkRequestType::In,
            BlkRequestType::Out,
            BlkRequestType::Flush,
            BlkRequestType::GetId,
            BlkRequestType::Discard,
            BlkRequestType::WriteZeroes,
        ] {
            assert_eq!(BlkRequestType::from_u32(t.as_u32()), Some(t));
        }
        assert_eq!(BlkRequestType::from_u32(BlkRequestType::GET_LIFETIME), None);
    }
}
