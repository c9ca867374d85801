//! Everything that can be wrong with a drive, its GPT, a store header or a request, each
//! variant precise enough to say what to do.

use alloc::string::String;
use core::fmt;

/// A failed sector transfer, as a [`super::BlockIo`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IoError {
    /// The request reaches past the end of the device.
    OutOfRange {
        lba: u64,
        sectors: u64,
        device_sectors: u64,
    },
    /// The drive reported an error (ATA status/error registers, NVMe status code).
    Device { lba: u64, status: u16 },
    /// The drive did not complete the command in time.
    Timeout { lba: u64 },
    /// A buffer that is not a whole number of sectors.
    Unaligned { bytes: usize },
    /// A host-side failure (the host tool's file I/O), with its message.
    Host(String),
    /// The drive does not take this operation (a discard or write-zeroes it has no command
    /// for), or the request is malformed for it.
    Unsupported { op: super::block::Op },
}

impl fmt::Display for IoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IoError::OutOfRange {
                lba,
                sectors,
                device_sectors,
            } => write!(
                f,
                "sectors {lba}..{} are beyond the end of the device ({device_sectors} sectors)",
                lba.saturating_add(*sectors)
            ),
            IoError::Unsupported { op } => write!(
                f,
                "the drive has no command for {op:?} (or the request is malformed for it)"
            ),
            IoError::Device { lba, status } => {
                write!(f, "the drive failed a transfer at sector {lba} (status {status:#x}); check the drive")
            }
            IoError::Timeout { lba } => {
                write!(
                    f,
                    "the drive did not answer a transfer at sector {lba} in time; check the drive"
                )
            }
            IoError::Unaligned { bytes } => {
                write!(
                    f,
                    "a transfer of {bytes} bytes is not a whole number of 512-byte sectors"
                )
            }
            IoError::Host(m) => write!(f, "{m}"),
        }
    }
}

/// Why the GUID partition table cannot be used (UEFI 2.10 §5.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GptError {
    /// The GPT header's own size field is outside 92..=512.
    HeaderSize(u32),
    /// The header's CRC-32 does not match its contents.
    HeaderChecksum { stored: u32, computed: u32 },
    /// The header does not say it lives where it was read.
    MyLba { stored: u64, read_at: u64 },
    /// The partition entry array has an implausible shape.
    EntryArray { entries: u32, entry_size: u32 },
    /// The partition entry array lies outside the drive.
    EntryArrayOutOfRange { lba: u64 },
    /// The partition entry array's CRC-32 does not match.
    EntriesChecksum { stored: u32, computed: u32 },
    /// A partition's first LBA is after its last, or outside the usable area.
    BadPartition { index: u32 },
    /// Two partitions have the Bulkhead store type.
    SeveralStores { first: u32, second: u32 },
}

impl fmt::Display for GptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GptError::HeaderSize(n) => write!(f, "GPT header size {n} is outside 92..=512"),
            GptError::HeaderChecksum { stored, computed } => write!(
                f,
                "GPT header checksum {stored:#010x} does not match its contents ({computed:#010x})"
            ),
            GptError::MyLba { stored, read_at } => {
                write!(f, "GPT header read at sector {read_at} says it is at sector {stored}")
            }
            GptError::EntryArray { entries, entry_size } => write!(
                f,
                "GPT partition array of {entries} entries of {entry_size} bytes is not supported (entries 1..=1024 of 128..=4096 bytes, a multiple of 128)"
            ),
            GptError::EntryArrayOutOfRange { lba } => {
                write!(f, "GPT partition array at sector {lba} is outside the drive")
            }
            GptError::EntriesChecksum { stored, computed } => write!(
                f,
                "GPT partition array checksum {stored:#010x} does not match its contents ({computed:#010x})"
            ),
            GptError::BadPartition { index } => {
                write!(f, "GPT partition {index} has a range outside the drive's usable sectors")
            }
            GptError::SeveralStores { first, second } => write!(
                f,
                "GPT partitions {first} and {second} both have the Bulkhead store type; change the type of one"
            ),
        }
    }
}

/// Why one copy of the store header is not valid. Offsets are within the header copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderError {
    /// No `BKHDSTOR` magic: this is not a store header at all.
    BadMagic,
    /// A format version this build does not read.
    UnsupportedVersion(u32),
    /// The header's size field is not the format's.
    BadHeaderSize(u32),
    /// The CRC-32C over the header does not match.
    Checksum { stored: u32, computed: u32 },
    /// Generation 0 is never written.
    ZeroGeneration,
    /// The allocation unit is not a power of two from 8 to 2^20 sectors.
    BadUnit(u32),
    /// The header describes a store larger than the region holding it.
    RegionMismatch {
        header_sectors: u64,
        region_sectors: u64,
    },
    /// The region has no room for both header copies and one allocation unit.
    StoreTooSmall { sectors: u64 },
    /// More disks than slots.
    TooManyDisks(u32),
    /// A reserved byte is not zero.
    ReservedNotZero { offset: usize },
    /// A disk's name is not 1-32 bytes of a-z, 0-9 and '-' starting with a letter.
    BadName { slot: usize },
    /// Two disks share a name.
    DuplicateName { slot: usize, first: usize },
    /// A disk's flags have bits this version does not define.
    BadFlags { slot: usize, flags: u32 },
    /// A disk of size 0.
    EmptyDisk { slot: usize },
    /// A disk with more extents than the format allows.
    TooManyExtents { slot: usize, count: u32 },
    /// An extent of zero units.
    EmptyExtent { slot: usize, extent: usize },
    /// An extent outside the store's data units.
    ExtentOutOfStore { slot: usize, extent: usize },
    /// An extent that overlaps another one (of this or another disk).
    ExtentOverlap {
        slot: usize,
        extent: usize,
        other_slot: usize,
    },
    /// A disk larger than its extents.
    SizeBeyondExtents {
        slot: usize,
        size_sectors: u64,
        capacity_sectors: u64,
    },
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use HeaderError as H;
        match self {
            H::BadMagic => write!(f, "no store magic (BKHDSTOR)"),
            H::UnsupportedVersion(v) => {
                write!(
                    f,
                    "store format version {v} is not supported (this build reads version {})",
                    super::header::VERSION
                )
            }
            H::BadHeaderSize(n) => {
                write!(f, "header size {n} is not {}", super::header::HEADER_BYTES)
            }
            H::Checksum { stored, computed } => {
                write!(f, "checksum {stored:#010x} does not match the contents ({computed:#010x}): torn or corrupted")
            }
            H::ZeroGeneration => write!(f, "generation 0"),
            H::BadUnit(u) => write!(
                f,
                "allocation unit of {u} sectors is not a power of two from 8 to 1048576"
            ),
            H::RegionMismatch {
                header_sectors,
                region_sectors,
            } => write!(
                f,
                "the store claims {header_sectors} sectors but its region has {region_sectors}"
            ),
            H::StoreTooSmall { sectors } => {
                write!(f, "a store of {sectors} sectors has no room for its headers and one allocation unit")
            }
            H::TooManyDisks(n) => write!(f, "{n} disks (at most {})", super::header::MAX_DISKS),
            H::ReservedNotZero { offset } => {
                write!(f, "reserved byte at offset {offset} is not zero")
            }
            H::BadName { slot } => write!(f, "disk {slot} has a malformed name"),
            H::DuplicateName { slot, first } => {
                write!(f, "disk {slot} has the name of disk {first}")
            }
            H::BadFlags { slot, flags } => write!(f, "disk {slot} has unknown flags {flags:#x}"),
            H::EmptyDisk { slot } => write!(f, "disk {slot} has size 0"),
            H::TooManyExtents { slot, count } => {
                write!(
                    f,
                    "disk {slot} has {count} extents (at most {})",
                    super::header::MAX_EXTENTS
                )
            }
            H::EmptyExtent { slot, extent } => write!(f, "extent {extent} of disk {slot} is empty"),
            H::ExtentOutOfStore { slot, extent } => {
                write!(
                    f,
                    "extent {extent} of disk {slot} lies outside the store's data area"
                )
            }
            H::ExtentOverlap {
                slot,
                extent,
                other_slot,
            } => {
                write!(
                    f,
                    "extent {extent} of disk {slot} overlaps an extent of disk {other_slot}"
                )
            }
            H::SizeBeyondExtents {
                slot,
                size_sectors,
                capacity_sectors,
            } => write!(
                f,
                "disk {slot} is {size_sectors} sectors but its extents hold {capacity_sectors}"
            ),
        }
    }
}

/// Which of the two header copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Copy {
    A,
    B,
}

impl fmt::Display for Copy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Copy::A => "A",
            Copy::B => "B",
        })
    }
}

/// What a store operation can fail with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// The drive failed.
    Io(IoError),
    /// The drive has a GPT that cannot be used.
    Gpt(GptError),
    /// The drive has a GPT without a Bulkhead store partition.
    NoStorePartition,
    /// Neither header copy has the store magic: the region was never formatted.
    NotAStore,
    /// Both header copies are damaged.
    BothCopiesBad { a: HeaderError, b: HeaderError },
    /// The region is too small to format.
    RegionTooSmall { sectors: u64, needed: u64 },
    /// The allocation unit asked for is not a power of two from 8 to 2^20 sectors.
    BadUnit(u32),
    /// A disk name that is not 1-32 bytes of a-z, 0-9 and '-' starting with a letter.
    BadName(String),
    /// A size that is 0 or not a multiple of 512 bytes.
    BadSize(u64),
    /// A disk of that name exists already.
    DiskExists(String),
    /// No disk of that name.
    NoSuchDisk(String),
    /// Every disk slot is used.
    TooManyDisks,
    /// Not enough free space.
    NoSpace { needed_bytes: u64, free_bytes: u64 },
    /// The free space is in too many pieces for the disk's extent table.
    TooFragmented { name: String },
    /// A grow to a size smaller than the disk's current one.
    WouldShrink {
        name: String,
        size: u64,
        requested: u64,
    },
    /// A transfer beyond the end of a store disk.
    BeyondDisk {
        sector: u64,
        sectors: u64,
        disk_sectors: u64,
    },
}

impl From<IoError> for StoreError {
    fn from(e: IoError) -> Self {
        StoreError::Io(e)
    }
}

impl From<GptError> for StoreError {
    fn from(e: GptError) -> Self {
        StoreError::Gpt(e)
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use StoreError as S;
        match self {
            S::Io(e) => write!(f, "I/O error: {e}"),
            S::Gpt(e) => write!(f, "unusable partition table: {e}"),
            S::NoStorePartition => write!(
                f,
                "the drive's GPT has no Bulkhead store partition (type {}); add one or run `bulkhead-boot disk init --gpt`",
                super::gpt::STORE_TYPE_TEXT
            ),
            S::NotAStore => write!(f, "no disk store here; create one with `bulkhead-boot disk init`"),
            S::BothCopiesBad { a, b } => write!(
                f,
                "both store header copies are damaged (A: {a}; B: {b}); the store is not written: restore it from a backup"
            ),
            S::RegionTooSmall { sectors, needed } => {
                write!(f, "the store region has {sectors} sectors; a store needs at least {needed}")
            }
            S::BadUnit(u) => write!(f, "allocation unit of {u} sectors: use a power of two from 8 (4K) to 1048576 (512M)"),
            S::BadName(n) => write!(
                f,
                "disk name {n:?}: use 1-32 characters of a-z, 0-9 and '-', a letter first"
            ),
            S::BadSize(s) => write!(f, "disk size {s}: use a multiple of 512 bytes, at least 512"),
            S::DiskExists(n) => write!(f, "a disk named {n:?} exists already; pick another name or delete it first"),
            S::NoSuchDisk(n) => write!(f, "no disk named {n:?} in the store; `bulkhead-boot disk ls` lists them"),
            S::TooManyDisks => write!(f, "the store holds {} disks already; delete one first", super::header::MAX_DISKS),
            S::NoSpace { needed_bytes, free_bytes } => write!(
                f,
                "the store has {free_bytes} bytes free, {needed_bytes} are needed; delete a disk or use a larger drive"
            ),
            S::TooFragmented { name } => write!(
                f,
                "disk {name:?} would need more than {} extents; the free space is too fragmented",
                super::header::MAX_EXTENTS
            ),
            S::WouldShrink { name, size, requested } => write!(
                f,
                "disk {name:?} is {size} bytes; grow takes a larger size than that, not {requested}"
            ),
            S::BeyondDisk { sector, sectors, disk_sectors } => write!(
                f,
                "sectors {sector}..{} are beyond the disk's {disk_sectors} sectors",
                sector.saturating_add(*sectors)
            ),
        }
    }
}
