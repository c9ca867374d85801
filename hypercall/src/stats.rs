//! The binary layout `EXIT_STATS` writes (little-endian):
//!
//! Header (offset 0, [`HEADER_SIZE`] bytes): `u32 layout` (= [`LAYOUT_VERSION`]),
//! `u32 count`, `u32 entry_size` (= [`ENTRY_SIZE`]), `u32 header_size` (= [`HEADER_SIZE`]),
//! `u64 tick_hz` (0 if unknown).
//!
//! Entry `i` at `header_size + i * entry_size`: `u32 reason` (VMX basic exit reason),
//! `u32` reserved (0), `u64 count`, `u64 ticks`.

use crate::HcError;

/// The layout version in the header.
pub const LAYOUT_VERSION: u32 = 1;
/// Bytes of the v1 header.
pub const HEADER_SIZE: usize = 24;
/// Bytes of a v1 entry.
pub const ENTRY_SIZE: usize = 24;
/// The most entries the hypervisor copies (more are dropped).
pub const MAX_ENTRIES: usize = 128;
/// The largest v1 copy, in bytes (3096).
pub const MAX_SIZE: usize = size_for(MAX_ENTRIES);

/// Header offset of `layout`.
pub const OFF_LAYOUT: usize = 0;
/// Header offset of `count`.
pub const OFF_COUNT: usize = 4;
/// Header offset of `entry_size`.
pub const OFF_ENTRY_SIZE: usize = 8;
/// Header offset of `header_size`.
pub const OFF_HEADER_SIZE: usize = 12;
/// Header offset of `tick_hz`.
pub const OFF_TICK_HZ: usize = 16;
/// Entry offset of `reason`.
pub const OFF_REASON: usize = 0;
/// Entry offset of `count`.
pub const OFF_ENTRY_COUNT: usize = 8;
/// Entry offset of `ticks`.
pub const OFF_TICKS: usize = 16;

/// Bytes of a copy with `n` entries.
pub const fn size_for(n: usize) -> usize {
    HEADER_SIZE + n * ENTRY_SIZE
}

/// The header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Layout version (1).
    pub layout: u32,
    /// Number of entries.
    pub count: u32,
    /// Bytes per entry.
    pub entry_size: u32,
    /// Bytes before the first entry.
    pub header_size: u32,
    /// Tick counter frequency, 0 if unknown.
    pub tick_hz: u64,
}

impl Header {
    /// A v1 header for `count` entries.
    pub const fn v1(count: u32, tick_hz: u64) -> Header {
        Header {
            layout: LAYOUT_VERSION,
            count,
            entry_size: ENTRY_SIZE as u32,
            header_size: HEADER_SIZE as u32,
            tick_hz,
        }
    }

    /// The header's bytes.
    pub fn to_bytes(&self) -> [u8; HEADER_SIZE] {
        let mut b = [0u8; HEADER_SIZE];
        b[OFF_LAYOUT..OFF_LAYOUT + 4].copy_from_slice(&self.layout.to_le_bytes());
        b[OFF_COUNT..OFF_COUNT + 4].copy_from_slice(&self.count.to_le_bytes());
        b[OFF_ENTRY_SIZE..OFF_ENTRY_SIZE + 4].copy_from_slice(&self.entry_size.to_le_bytes());
        b[OFF_HEADER_SIZE..OFF_HEADER_SIZE + 4].copy_from_slice(&self.header_size.to_le_bytes());
        b[OFF_TICK_HZ..OFF_TICK_HZ + 8].copy_from_slice(&self.tick_hz.to_le_bytes());
        b
    }
}

/// One exit reason's statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// VMX basic exit reason (SDM Vol. 3D Appendix C).
    pub reason: u32,
    /// Exits with this reason.
    pub count: u64,
    /// Total ticks from exit to the next entry for those exits.
    pub ticks: u64,
}

impl Entry {
    /// The entry's bytes.
    pub fn to_bytes(&self) -> [u8; ENTRY_SIZE] {
        let mut b = [0u8; ENTRY_SIZE];
        b[OFF_REASON..OFF_REASON + 4].copy_from_slice(&self.reason.to_le_bytes());
        b[OFF_ENTRY_COUNT..OFF_ENTRY_COUNT + 8].copy_from_slice(&self.count.to_le_bytes());
        b[OFF_TICKS..OFF_TICKS + 8].copy_from_slice(&self.ticks.to_le_bytes());
        b
    }
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    let s = b.get(off..off.checked_add(4)?)?;
    Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    let s = b.get(off..off.checked_add(8)?)?;
    let mut w = [0u8; 8];
    w.copy_from_slice(s);
    Some(u64::from_le_bytes(w))
}

/// A parsed `EXIT_STATS` copy.
#[derive(Debug, Clone, Copy)]
pub struct Stats<'a> {
    /// The header.
    pub header: Header,
    buf: &'a [u8],
}

impl<'a> Stats<'a> {
    /// Parses a copy, using `header_size` and `entry_size` (so later minor versions that
    /// append fields still parse). `BadLength` if `buf` is shorter than the header says,
    /// `BadArgument` for another layout version or sizes below v1's.
    pub fn parse(buf: &'a [u8]) -> Result<Stats<'a>, HcError> {
        let header = Header {
            layout: u32_at(buf, OFF_LAYOUT).ok_or(HcError::BadLength)?,
            count: u32_at(buf, OFF_COUNT).ok_or(HcError::BadLength)?,
            entry_size: u32_at(buf, OFF_ENTRY_SIZE).ok_or(HcError::BadLength)?,
            header_size: u32_at(buf, OFF_HEADER_SIZE).ok_or(HcError::BadLength)?,
            tick_hz: u64_at(buf, OFF_TICK_HZ).ok_or(HcError::BadLength)?,
        };
        if header.layout != LAYOUT_VERSION
            || (header.header_size as usize) < HEADER_SIZE
            || (header.entry_size as usize) < ENTRY_SIZE
        {
            return Err(HcError::BadArgument);
        }
        let need = (header.count as usize)
            .checked_mul(header.entry_size as usize)
            .and_then(|n| n.checked_add(header.header_size as usize))
            .ok_or(HcError::BadLength)?;
        if buf.len() < need {
            return Err(HcError::BadLength);
        }
        Ok(Stats { header, buf })
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.header.count as usize
    }

    /// Whether there is no entry.
    pub fn is_empty(&self) -> bool {
        self.header.count == 0
    }

    /// Entry `i`.
    pub fn get(&self, i: usize) -> Option<Entry> {
        if i >= self.len() {
            return None;
        }
        let base = (self.header.header_size as usize)
            .checked_add(i.checked_mul(self.header.entry_size as usize)?)?;
        Some(Entry {
            reason: u32_at(self.buf, base.checked_add(OFF_REASON)?)?,
            count: u64_at(self.buf, base.checked_add(OFF_ENTRY_COUNT)?)?,
            ticks: u64_at(self.buf, base.checked_add(OFF_TICKS)?)?,
        })
    }

    /// The entries, in order.
    pub fn iter(&self) -> impl Iterator<Item = Entry> + '_ {
        (0..self.len()).map_while(|i| self.get(i))
    }

    /// The entry for `reason`, if any.
    pub fn find(&self, reason: u32) -> Option<Entry> {
        self.iter().find(|e| e.reason == reason)
    }
}
