//! Snapshot state of a virtio-mmio device (issue 18): plain data holding everything the guest
//! can observe of a transport, its virtqueues and its device, taken by
//! [`MmioTransport::save_state`](crate::MmioTransport::save_state) and put back by
//! [`MmioTransport::load_state`](crate::MmioTransport::load_state). This crate has no codec;
//! `vm::snapshot::virtio_state` encodes these types.
//!
//! # What is saved
//!
//! - The transport (virtio 1.2 §4.2.2): device status, both feature selectors, the negotiated
//!   features, QueueSel, InterruptStatus, ConfigGeneration, whether a device configuration
//!   change has not been signalled yet, the queues with work left and the round-robin
//!   position between them.
//! - Every virtqueue (virtio 1.2 §2.7): size, ready, the three ring addresses, the next
//!   available and used indices, the used index of the last interrupt decision and whether
//!   used buffers were added since, the ring features in effect and whether notifications
//!   are suppressed.
//! - The device ([`DeviceState`]): a block device's disk contents (an owned disk's bytes, a
//!   copy-on-write disk's overlay blocks and zero ranges; never the image under it), a
//!   network device's link status, a console's buffered input and how much of a partly
//!   transmitted buffer its sink already took.
//!
//! # What is not saved
//!
//! - Configuration: what the VM's configuration creates again (queue maxima, the MAC, the
//!   disk's size, image, overlay budget and read-only flag, the block config and id, the
//!   deferred-notification mode). A load checks what it can (kind, queue count, disk size,
//!   read-only flag, disk kind) and refuses a state of another configuration.
//! - Host bookkeeping: [`DeviceStats`](crate::DeviceStats), the net device's drop counters,
//!   the RAM disk's flush counter and overlay charge (recomputed from the blocks and ranges),
//!   and the error that set DEVICE_NEEDS_RESET ([`MmioTransport::error`](crate::MmioTransport::error):
//!   the status bit is saved, its reason is not).
//! - Host-side attachments: the console's sink (its buffered output stays with the host),
//!   a network device's switch port.
//! - Frames in flight on a network device: frames waiting for RX buffers and frames the
//!   guest sent that the switch did not take yet are dropped, as a network may drop frames
//!   (virtio 1.2 §5.1.6 promises no delivery); the guest's TCP retransmits.
//! - Requests in flight: a block request or console output buffer the device took from the
//!   available ring but did not complete is given back (its queue's next available index is
//!   saved one lower), so after a load the device takes it again and runs it from the start
//!   (a block request is idempotent: it reads or writes the same sectors from the same guest
//!   buffers; the console skips the bytes its sink already took).
//!
//! # Validation
//!
//! A state is hostile input. A load accepts exactly the states the transport can reach by
//! itself (apart from ring placement in guest RAM, which
//! [`MmioTransport::load_state_checked`](crate::MmioTransport::load_state_checked) also
//! checks), so nothing the device does afterwards can panic, index out of range or overflow,
//! and changes nothing when it refuses one.

use alloc::borrow::Cow;
use alloc::vec::Vec;
use core::fmt;

use crate::ramdisk::OVERLAY_BLOCK;
use crate::spec::device_id;

/// The most virtqueues a state may hold: the transport tracks pending work for this many.
pub const MAX_QUEUES: usize = crate::mmio::MAX_TRACKED_QUEUES;

/// A device kind (virtio 1.2 §5 device types implemented by this crate).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    /// virtio-net (virtio 1.2 §5.1).
    Net,
    /// virtio-blk (virtio 1.2 §5.2).
    Blk,
    /// virtio-console (virtio 1.2 §5.3).
    Console,
}

impl DeviceKind {
    /// The virtio 1.2 §5 device ID.
    pub const fn device_id(self) -> u32 {
        match self {
            DeviceKind::Net => device_id::NET,
            DeviceKind::Blk => device_id::BLOCK,
            DeviceKind::Console => device_id::CONSOLE,
        }
    }

    /// The kind with virtio 1.2 §5 device ID `id`, if this crate implements it.
    pub const fn from_device_id(id: u32) -> Option<Self> {
        match id {
            device_id::NET => Some(DeviceKind::Net),
            device_id::BLOCK => Some(DeviceKind::Blk),
            device_id::CONSOLE => Some(DeviceKind::Console),
            _ => None,
        }
    }

    /// Its name in messages ("blk", "net", "console").
    pub const fn name(self) -> &'static str {
        match self {
            DeviceKind::Net => "net",
            DeviceKind::Blk => "blk",
            DeviceKind::Console => "console",
        }
    }
}

impl fmt::Display for DeviceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One split virtqueue as the guest configured and the device advanced it (virtio 1.2 §2.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueState {
    /// QueueNum as written by the driver (checked only for a ready queue, as the device
    /// checks it when the driver sets QueueReady).
    pub size: u16,
    /// QueueReady.
    pub ready: bool,
    /// Descriptor table GPA (QueueDescLow/High).
    pub desc_table: u64,
    /// Driver area GPA, the available ring (QueueDriverLow/High).
    pub avail_ring: u64,
    /// Device area GPA, the used ring (QueueDeviceLow/High).
    pub used_ring: u64,
    /// The next available ring index the device consumes (virtio 1.2 §2.7.6).
    pub next_avail: u16,
    /// The next used ring index the device fills (virtio 1.2 §2.7.8).
    pub next_used: u16,
    /// The used index at the last interrupt decision (virtio 1.2 §2.7.7.2, EVENT_IDX).
    pub signalled_used: u16,
    /// Used buffers were added since the last interrupt decision.
    pub used_pending: bool,
    /// VIRTIO_F_EVENT_IDX is in effect on this queue (virtio 1.2 §2.7.7, §2.7.10).
    pub event_idx: bool,
    /// VIRTIO_F_INDIRECT_DESC is in effect on this queue (virtio 1.2 §2.7.5.3).
    pub indirect: bool,
    /// The device asked the driver not to notify (virtio 1.2 §2.7.10).
    pub notifications_suppressed: bool,
}

/// A part of a split virtqueue (virtio 1.2 §2.7), as named in messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RingPart {
    /// The descriptor table (virtio 1.2 §2.7.5).
    Descriptors,
    /// The driver area: the available ring (virtio 1.2 §2.7.6).
    Driver,
    /// The device area: the used ring (virtio 1.2 §2.7.8).
    Device,
}

impl fmt::Display for RingPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RingPart::Descriptors => "descriptor table",
            RingPart::Driver => "driver area",
            RingPart::Device => "device area",
        })
    }
}

/// The guest-visible state of a virtio-mmio transport and its device (virtio 1.2 §4.2.2).
/// Borrows the bulk of a disk from the device it was taken from (or from the bytes it was
/// decoded from); [`TransportState::into_owned`] copies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportState<'a> {
    /// Device status (virtio 1.2 §2.1).
    pub status: u8,
    /// DeviceFeaturesSel.
    pub device_features_sel: u32,
    /// DriverFeaturesSel.
    pub driver_features_sel: u32,
    /// DriverFeatures as written (final once FEATURES_OK is set, virtio 1.2 §3.1.1).
    pub driver_features: u64,
    /// QueueSel.
    pub queue_sel: u32,
    /// InterruptStatus (virtio 1.2 §4.2.2): the bits not acknowledged yet.
    pub interrupt_status: u32,
    /// ConfigGeneration (virtio 1.2 §2.5.1, §4.2.2).
    pub config_generation: u32,
    /// The device's configuration changed and the transport has not folded the change into
    /// ConfigGeneration (nor raised its interrupt) yet: the next access or poll does.
    pub config_change_pending: bool,
    /// Queues with work left (one bit per queue): deferred kicks, or a call that reached its
    /// work bound.
    pub pending: u64,
    /// The first queue the next `process_kicks` looks at (round robin).
    pub next_queue: u32,
    /// The virtqueues, in index order.
    pub queues: Vec<QueueState>,
    /// The device's own part.
    pub device: DeviceState<'a>,
}

impl TransportState<'_> {
    /// The same state owning all of its data.
    pub fn into_owned(self) -> TransportState<'static> {
        TransportState {
            status: self.status,
            device_features_sel: self.device_features_sel,
            driver_features_sel: self.driver_features_sel,
            driver_features: self.driver_features,
            queue_sel: self.queue_sel,
            interrupt_status: self.interrupt_status,
            config_generation: self.config_generation,
            config_change_pending: self.config_change_pending,
            pending: self.pending,
            next_queue: self.next_queue,
            queues: self.queues,
            device: self.device.into_owned(),
        }
    }
}

/// The device-specific part of a [`TransportState`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceState<'a> {
    /// A block device.
    Blk(BlkState<'a>),
    /// A network device.
    Net(NetState),
    /// A console.
    Console(ConsoleState),
}

impl DeviceState<'_> {
    /// Which kind of device this is the state of.
    pub fn kind(&self) -> DeviceKind {
        match self {
            DeviceState::Blk(_) => DeviceKind::Blk,
            DeviceState::Net(_) => DeviceKind::Net,
            DeviceState::Console(_) => DeviceKind::Console,
        }
    }

    /// The same state owning all of its data.
    pub fn into_owned(self) -> DeviceState<'static> {
        match self {
            DeviceState::Blk(b) => DeviceState::Blk(BlkState {
                disk: b.disk.into_owned(),
            }),
            DeviceState::Net(n) => DeviceState::Net(n),
            DeviceState::Console(c) => DeviceState::Console(c),
        }
    }
}

/// A block device's state (virtio 1.2 §5.2). Its configuration space (capacity, limits, id)
/// follows from its creation; the negotiated features are the transport's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlkState<'a> {
    /// The disk.
    pub disk: DiskState<'a>,
}

/// A disk behind a block device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskState<'a> {
    /// Size in bytes (must equal the VM's disk).
    pub len: u64,
    /// The disk is read-only, VIRTIO_BLK_F_RO (must equal the VM's disk).
    pub read_only: bool,
    /// What was written to it.
    pub contents: DiskContents<'a>,
}

impl DiskState<'_> {
    /// The same state owning all of its data.
    pub fn into_owned(self) -> DiskState<'static> {
        DiskState {
            len: self.len,
            read_only: self.read_only,
            contents: match self.contents {
                DiskContents::External => DiskContents::External,
                DiskContents::Owned(b) => DiskContents::Owned(Cow::Owned(b.into_owned())),
                DiskContents::CopyOnWrite(o) => DiskContents::CopyOnWrite(OverlayState {
                    blocks: o
                        .blocks
                        .into_iter()
                        .map(|b| OverlayBlock {
                            index: b.index,
                            data: Cow::Owned(b.data.into_owned()),
                        })
                        .collect(),
                    zero_ranges: o.zero_ranges,
                }),
            },
        }
    }
}

/// A disk's contents in a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiskContents<'a> {
    /// The backend keeps its data itself (a drive): nothing saved, nothing restored.
    External,
    /// An owned RAM disk: all of its bytes.
    Owned(Cow<'a, [u8]>),
    /// A copy-on-write RAM disk: its overlay (the image under it is the VM's configured
    /// image, not saved).
    CopyOnWrite(OverlayState<'a>),
}

impl DiskContents<'_> {
    /// The kind's name in messages.
    pub fn kind_name(&self) -> &'static str {
        match self {
            DiskContents::External => DISK_EXTERNAL,
            DiskContents::Owned(_) => DISK_OWNED,
            DiskContents::CopyOnWrite(_) => DISK_COPY_ON_WRITE,
        }
    }
}

/// [`DiskContents::kind_name`] of [`DiskContents::External`].
pub const DISK_EXTERNAL: &str = "external";
/// [`DiskContents::kind_name`] of [`DiskContents::Owned`].
pub const DISK_OWNED: &str = "owned";
/// [`DiskContents::kind_name`] of [`DiskContents::CopyOnWrite`].
pub const DISK_COPY_ON_WRITE: &str = "copy-on-write";

/// The overlay of a copy-on-write RAM disk ([`crate::ramdisk`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OverlayState<'a> {
    /// Modified blocks, by strictly increasing index.
    pub blocks: Vec<OverlayBlock<'a>>,
    /// Ranges that read as zeros where no block overrides them: sorted, disjoint and not
    /// touching (virtio 1.2 §5.2.6.2 WRITE_ZEROES / DISCARD).
    pub zero_ranges: Vec<ZeroRange>,
}

/// One modified block of a copy-on-write disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverlayBlock<'a> {
    /// Block number (byte offset / [`OVERLAY_BLOCK`]).
    pub index: u64,
    /// Its [`OVERLAY_BLOCK`] bytes (past the end of the disk: never read).
    pub data: Cow<'a, [u8]>,
}

/// A byte range `[start, end)` of a disk that reads as zeros.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZeroRange {
    /// First byte.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
}

/// A network device's state (virtio 1.2 §5.1). The MAC is configuration; frames in flight
/// are dropped (see the [module documentation](self)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetState {
    /// VIRTIO_NET_S_LINK_UP in the configuration space status (virtio 1.2 §5.1.4).
    pub link_up: bool,
}

/// A console's state (virtio 1.2 §5.3): one port, always open (no MULTIPORT).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConsoleState {
    /// Input not delivered to the guest yet, oldest first (at most
    /// [`crate::console::INPUT_CAPACITY`] bytes).
    pub input: Vec<u8>,
    /// Bytes of the first transmitq buffer the device takes after a load that its sink
    /// already received before the snapshot (0 unless output stalled on a full sink).
    pub tx_skip: u64,
}

/// Why a state cannot be loaded into a transport. Nothing was changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateError {
    /// The state is of another device kind than the transport's device.
    KindMismatch {
        /// The state's kind.
        snapshot: DeviceKind,
        /// The transport's device ID (virtio 1.2 §5).
        vm_device_id: u32,
    },
    /// The state has another number of virtqueues than the device.
    QueueCount {
        /// Queues in the state.
        snapshot: usize,
        /// Queues of the device.
        vm: usize,
    },
    /// A ready queue of size 0 (virtio 1.2 §2.7).
    QueueSizeZero {
        /// Queue index.
        queue: usize,
    },
    /// A ready queue whose size is not a power of 2 (virtio 1.2 §2.7).
    QueueSizeNotPowerOfTwo {
        /// Queue index.
        queue: usize,
        /// The size.
        size: u16,
    },
    /// A ready queue larger than QueueNumMax (virtio 1.2 §4.2.2).
    QueueSizeTooLarge {
        /// Queue index.
        queue: usize,
        /// The size.
        size: u16,
        /// QueueNumMax.
        max: u16,
    },
    /// A ready queue's ring part is misaligned (virtio 1.2 §2.7 "Virtqueue Part Alignment").
    QueueMisaligned {
        /// Queue index.
        queue: usize,
        /// Which part.
        part: RingPart,
        /// Its address.
        addr: u64,
        /// The required alignment.
        align: u64,
    },
    /// A ready queue's ring part wraps around the address space.
    QueueRingOverflow {
        /// Queue index.
        queue: usize,
        /// Which part.
        part: RingPart,
        /// Its address.
        addr: u64,
    },
    /// A ready queue's ring part is not in guest RAM.
    QueueRingOutsideMemory {
        /// Queue index.
        queue: usize,
        /// Which part.
        part: RingPart,
        /// Its address.
        addr: u64,
    },
    /// A queue uses a ring feature (EVENT_IDX, INDIRECT_DESC) the device never offered.
    QueueFeatureNotOffered {
        /// Queue index.
        queue: usize,
        /// The feature bit (virtio 1.2 §6).
        feature: u64,
    },
    /// After DRIVER_OK a queue's ring features differ from the negotiated ones (virtio 1.2
    /// §3.1.1: features are final then).
    QueueFeaturesDiffer {
        /// Queue index.
        queue: usize,
    },
    /// Device status with reserved bits (virtio 1.2 §2.1).
    StatusReserved {
        /// The status.
        status: u8,
    },
    /// Device status that skips a step of the initialization sequence (virtio 1.2 §3.1.1).
    StatusOrder {
        /// The status.
        status: u8,
    },
    /// FEATURES_OK with features the device never offered (virtio 1.2 §2.2.1).
    FeaturesNotOffered {
        /// The negotiated features.
        features: u64,
        /// The device's features.
        offered: u64,
    },
    /// FEATURES_OK without VIRTIO_F_VERSION_1, which this modern-only device requires
    /// (virtio 1.2 §6.1).
    FeaturesWithoutVersion1 {
        /// The negotiated features.
        features: u64,
    },
    /// InterruptStatus with reserved bits (virtio 1.2 §4.2.2).
    InterruptReserved {
        /// The interrupt status.
        status: u32,
    },
    /// Work pending while the device is not running (before DRIVER_OK or with
    /// DEVICE_NEEDS_RESET).
    PendingInactive {
        /// The pending mask.
        pending: u64,
    },
    /// Work pending on a queue that is not ready or does not exist.
    PendingNotReady {
        /// The pending mask.
        pending: u64,
        /// The first such queue.
        queue: usize,
    },
    /// The round-robin position is beyond the queues.
    NextQueue {
        /// The position.
        next: u32,
        /// Queues of the device.
        queues: usize,
    },
    /// The disk's size differs from the VM's disk.
    DiskSize {
        /// Bytes in the state.
        snapshot: u64,
        /// Bytes of the VM's disk.
        vm: u64,
    },
    /// The disk's read-only flag differs from the VM's disk.
    ReadOnly {
        /// The state's flag.
        snapshot: bool,
        /// The VM's disk's flag.
        vm: bool,
    },
    /// The disk's kind (owned, copy-on-write, external) differs from the VM's disk.
    DiskKind {
        /// [`DiskContents::kind_name`] of the state.
        snapshot: &'static str,
        /// The VM's disk's kind.
        vm: &'static str,
    },
    /// An owned disk's bytes are not as many as the disk.
    DiskContentsLength {
        /// Bytes in the state.
        bytes: u64,
        /// Bytes of the disk.
        disk: u64,
    },
    /// An overlay block beyond the end of the disk.
    OverlayBlockBeyondDisk {
        /// The block number.
        index: u64,
        /// Blocks of the disk.
        blocks: u64,
    },
    /// An overlay block repeated or out of order.
    OverlayBlockOrder {
        /// The block number.
        index: u64,
    },
    /// An overlay block that is not [`OVERLAY_BLOCK`] bytes.
    OverlayBlockLength {
        /// The block number.
        index: u64,
        /// Its length.
        len: usize,
    },
    /// The overlay needs more than the disk's budget ([`crate::ramdisk`]).
    OverlayBudget {
        /// Bytes the blocks and zero ranges are charged.
        needed: u64,
        /// The budget.
        budget: u64,
    },
    /// A zero range that is empty or ends beyond the disk.
    ZeroRangeBounds {
        /// First byte.
        start: u64,
        /// One past the last byte.
        end: u64,
        /// Bytes of the disk.
        disk: u64,
    },
    /// A zero range that overlaps, touches or precedes the one before it.
    ZeroRangeOrder {
        /// Its first byte.
        start: u64,
    },
    /// More zero ranges than an overlay records ([`crate::ramdisk::MAX_ZERO_RANGES`]).
    TooManyZeroRanges {
        /// Ranges in the state.
        count: usize,
        /// The most allowed.
        max: usize,
    },
    /// More console input than the input buffer holds.
    ConsoleInput {
        /// Bytes in the state.
        len: usize,
        /// [`crate::console::INPUT_CAPACITY`].
        max: usize,
    },
    /// A partly transmitted console buffer without a ready transmitq, or further in than
    /// any chain is long (32-bit lengths, virtio 1.2 §2.7.8).
    ConsoleTransmitOffset {
        /// Bytes the sink took.
        offset: u64,
    },
    /// The hypervisor heap cannot hold the restored disk overlay.
    OutOfMemory {
        /// Bytes asked for.
        bytes: u64,
    },
}

/// A device ID in messages: the kind's name, or the number.
struct DeviceName(u32);

impl fmt::Display for DeviceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match DeviceKind::from_device_id(self.0) {
            Some(k) => f.write_str(k.name()),
            None => write!(f, "device type {}", self.0),
        }
    }
}

fn writability(read_only: bool) -> &'static str {
    if read_only {
        "read-only"
    } else {
        "writable"
    }
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use StateError as E;
        match *self {
            E::KindMismatch {
                snapshot,
                vm_device_id,
            } => write!(
                f,
                "the device kind differs: snapshot has {snapshot}, VM has {}",
                DeviceName(vm_device_id)
            ),
            E::QueueCount { snapshot, vm } => {
                write!(f, "the snapshot has {snapshot} virtqueues, the device {vm}")
            }
            E::QueueSizeZero { queue } => write!(f, "queue {queue} is ready with size 0"),
            E::QueueSizeNotPowerOfTwo { queue, size } => {
                write!(f, "queue {queue} size {size} is not a power of two")
            }
            E::QueueSizeTooLarge { queue, size, max } => write!(
                f,
                "queue {queue} size {size} exceeds the device's maximum {max}"
            ),
            E::QueueMisaligned {
                queue,
                part,
                addr,
                align,
            } => write!(
                f,
                "queue {queue} {part} at {addr:#x} is not {align}-byte aligned"
            ),
            E::QueueRingOverflow { queue, part, addr } => write!(
                f,
                "queue {queue} {part} at {addr:#x} wraps around the address space"
            ),
            E::QueueRingOutsideMemory { queue, part, addr } => {
                write!(f, "queue {queue} {part} at {addr:#x} is outside guest RAM")
            }
            E::QueueFeatureNotOffered { queue, feature } => write!(
                f,
                "queue {queue} uses ring feature bit {} the device never offered",
                feature.trailing_zeros()
            ),
            E::QueueFeaturesDiffer { queue } => write!(
                f,
                "queue {queue}'s ring features differ from the negotiated ones"
            ),
            E::StatusReserved { status } => {
                write!(f, "device status {status:#04x} has reserved bits set")
            }
            E::StatusOrder { status } => write!(
                f,
                "device status {status:#04x} skips a step of the initialization sequence"
            ),
            E::FeaturesNotOffered { features, offered } => write!(
                f,
                "the negotiated features {features:#x} include bits {:#x} the device never \
                 offered",
                features & !offered
            ),
            E::FeaturesWithoutVersion1 { features } => write!(
                f,
                "the negotiated features {features:#x} lack VIRTIO_F_VERSION_1"
            ),
            E::InterruptReserved { status } => {
                write!(f, "interrupt status {status:#x} has reserved bits set")
            }
            E::PendingInactive { pending } => write!(
                f,
                "queues {pending:#x} have work pending on a device that is not running"
            ),
            E::PendingNotReady { pending, queue } => write!(
                f,
                "queue {queue} has work pending but is not ready (pending mask {pending:#x})"
            ),
            E::NextQueue { next, queues } => write!(
                f,
                "round-robin position {next} is beyond the {queues} virtqueues"
            ),
            E::DiskSize { snapshot, vm } => write!(
                f,
                "disk size differs: snapshot has {snapshot} bytes, VM has {vm}"
            ),
            E::ReadOnly { snapshot, vm } => write!(
                f,
                "the disk's read-only flag differs: snapshot has a {} disk, VM a {} one",
                writability(snapshot),
                writability(vm)
            ),
            E::DiskKind { snapshot, vm } => write!(
                f,
                "the disk kind differs: snapshot has {snapshot} contents, the VM's disk is {vm}"
            ),
            E::DiskContentsLength { bytes, disk } => {
                write!(f, "the disk contents are {bytes} bytes, the disk {disk}")
            }
            E::OverlayBlockBeyondDisk { index, blocks } => write!(
                f,
                "overlay block {index} is beyond the disk's {blocks} blocks"
            ),
            E::OverlayBlockOrder { index } => {
                write!(f, "overlay block {index} is repeated or out of order")
            }
            E::OverlayBlockLength { index, len } => write!(
                f,
                "overlay block {index} holds {len} bytes, not {OVERLAY_BLOCK}"
            ),
            E::OverlayBudget { needed, budget } => write!(
                f,
                "the disk overlay needs {needed} bytes of its {budget}-byte budget; raise the \
                 disk's overlay budget in the VM configuration"
            ),
            E::ZeroRangeBounds { start, end, disk } => write!(
                f,
                "zero range {start:#x}..{end:#x} is empty or beyond the {disk}-byte disk"
            ),
            E::ZeroRangeOrder { start } => write!(
                f,
                "zero range at {start:#x} overlaps, touches or precedes the one before it"
            ),
            E::TooManyZeroRanges { count, max } => {
                write!(f, "{count} zero ranges, at most {max} allowed")
            }
            E::ConsoleInput { len, max } => {
                write!(f, "{len} bytes of console input, at most {max} fit")
            }
            E::ConsoleTransmitOffset { offset } => write!(
                f,
                "the console's partly transmitted buffer is {offset} bytes in, but its \
                 transmitq is not ready or no buffer is that long"
            ),
            E::OutOfMemory { bytes } => write!(
                f,
                "cannot allocate {bytes} bytes from the hypervisor heap for the disk overlay"
            ),
        }
    }
}
