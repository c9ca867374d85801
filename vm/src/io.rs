//! Port I/O: the access size of an I/O-instruction exit, the context a device sees while it
//! handles an access (time, interrupt lines, console), and [`IoBus`], the routing table for
//! port devices registered at run time.
//!
//! The legacy PC devices (PIC, PIT, RTC, UART, ...) are owned by
//! [`LegacyPlatform`](crate::devices::LegacyPlatform), which routes their fixed port ranges
//! with a `match` and hands every other port to an [`IoBus`]. The bus
//!
//! * rejects registrations that overlap a registered or reserved range ([`IoError::Overlap`]);
//! * gives an access that lies entirely inside one device's range to that device with its full
//!   size, and splits an access that straddles ranges into byte accesses (what an ISA bus
//!   does with a wide access to 8-bit devices);
//! * reads unclaimed ports as all ones of the access size and ignores writes to them, counting
//!   both per port ([`UnclaimedStats`]) for the exit statistics.
//!
//! Sizes come from the exit qualification for I/O instructions (SDM Vol. 3C §28.2.1,
//! Table 28-5: bits 2:0 are the access size minus one, 0, 1 or 3).

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::fmt;

/// Size of one port access.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AccessSize {
    /// `in al` / `out al`.
    Byte,
    /// `in ax` / `out ax`.
    Word,
    /// `in eax` / `out eax`.
    Dword,
}

impl AccessSize {
    /// Decodes a size in bytes (1, 2 or 4).
    pub const fn from_bytes(bytes: u8) -> Option<Self> {
        match bytes {
            1 => Some(Self::Byte),
            2 => Some(Self::Word),
            4 => Some(Self::Dword),
            _ => None,
        }
    }

    /// Decodes bits 2:0 of the I/O-instruction exit qualification (SDM Vol. 3C Table 28-5:
    /// 0 = 1 byte, 1 = 2 bytes, 3 = 4 bytes; other encodings are not used).
    pub const fn from_exit_qualification(qualification: u64) -> Option<Self> {
        match qualification & 0b111 {
            0 => Some(Self::Byte),
            1 => Some(Self::Word),
            3 => Some(Self::Dword),
            _ => None,
        }
    }

    /// Number of bytes (1, 2 or 4).
    pub const fn bytes(self) -> u8 {
        match self {
            Self::Byte => 1,
            Self::Word => 2,
            Self::Dword => 4,
        }
    }

    /// Mask of the bits an access of this size transfers.
    pub const fn mask(self) -> u32 {
        match self {
            Self::Byte => 0xff,
            Self::Word => 0xffff,
            Self::Dword => 0xffff_ffff,
        }
    }

    /// The last port an access of this size starting at `port` touches (wrapping at 0xffff).
    pub const fn last_port(self, port: u16) -> u16 {
        port.wrapping_add(self.bytes() as u16 - 1)
    }
}

/// Something that accepts interrupt-request line levels: the PIC, or a fake in tests.
pub trait IrqSink {
    /// Drives ISA interrupt line `irq` (0-15) to `level`. Out-of-range lines are ignored.
    fn set_irq(&mut self, irq: u8, level: bool);
}

/// Where console bytes (UART transmit data) go.
pub trait ConsoleSink {
    /// Appends bytes to the console. Implementations are bounded and may drop bytes.
    fn write_bytes(&mut self, bytes: &[u8]);
}

/// What a device sees while it handles one access: the time and the platform's outputs.
pub struct IoContext<'a> {
    now_tsc: u64,
    irq: &'a mut dyn IrqSink,
    console: &'a mut dyn ConsoleSink,
}

impl fmt::Debug for IoContext<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IoContext")
            .field("now_tsc", &self.now_tsc)
            .finish_non_exhaustive()
    }
}

impl<'a> IoContext<'a> {
    /// A context at TSC time `now_tsc` driving `irq` and writing to `console`.
    pub fn new(now_tsc: u64, irq: &'a mut dyn IrqSink, console: &'a mut dyn ConsoleSink) -> Self {
        Self {
            now_tsc,
            irq,
            console,
        }
    }

    /// The current time in TSC ticks.
    pub fn now_tsc(&self) -> u64 {
        self.now_tsc
    }

    /// Drives interrupt line `irq` to `level`.
    pub fn set_irq(&mut self, irq: u8, level: bool) {
        self.irq.set_irq(irq, level);
    }

    /// Drives interrupt line `irq` high.
    pub fn raise_irq(&mut self, irq: u8) {
        self.irq.set_irq(irq, true);
    }

    /// Drives interrupt line `irq` low.
    pub fn lower_irq(&mut self, irq: u8) {
        self.irq.set_irq(irq, false);
    }

    /// Low then high: one rising edge, for edge-triggered lines.
    pub fn pulse_irq(&mut self, irq: u8) {
        self.irq.set_irq(irq, false);
        self.irq.set_irq(irq, true);
    }

    /// Emits bytes on the VM console.
    pub fn console_write(&mut self, bytes: &[u8]) {
        self.console.write_bytes(bytes);
    }
}

/// A device on the port I/O bus.
///
/// `port` is the absolute port number; `value` and the return value carry the low
/// `size.bytes()` bytes of EAX (the bus masks the result, so a device may return wider data).
/// Devices must not panic on any port, size or value.
pub trait PortDevice: Send {
    /// Short name for logs and statistics.
    fn name(&self) -> &'static str;
    /// Handles `in` from `port`.
    fn read(&mut self, port: u16, size: AccessSize, ctx: &mut IoContext<'_>) -> u32;
    /// Handles `out` to `port`.
    fn write(&mut self, port: u16, size: AccessSize, value: u32, ctx: &mut IoContext<'_>);
}

/// Errors of [`IoBus`] registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoError {
    /// `first > last`.
    EmptyRange {
        /// First port of the rejected range.
        first: u16,
        /// Last port of the rejected range.
        last: u16,
    },
    /// The range overlaps a range already registered or reserved by `existing`.
    Overlap {
        /// First port of the rejected range.
        first: u16,
        /// Last port of the rejected range.
        last: u16,
        /// Name of the device that owns the overlapping range.
        existing: &'static str,
    },
    /// The bus already holds [`IoBus::MAX_RANGES`] ranges.
    Full,
}

impl fmt::Display for IoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::EmptyRange { first, last } => {
                write!(f, "empty port range {first:#x}-{last:#x}")
            }
            Self::Overlap {
                first,
                last,
                existing,
            } => write!(
                f,
                "port range {first:#x}-{last:#x} overlaps the range of {existing}"
            ),
            Self::Full => f.write_str("the I/O bus has no room for more port ranges"),
        }
    }
}

/// Handle of a device registered on an [`IoBus`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DeviceId(usize);

/// Accesses to one unclaimed port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UnclaimedPort {
    /// The port.
    pub port: u16,
    /// Number of `in` accesses.
    pub reads: u64,
    /// Number of `out` accesses.
    pub writes: u64,
}

/// Counters of accesses to ports no device claims: per port for the first
/// [`UnclaimedStats::TRACKED_PORTS`] distinct ports, plus totals over all ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnclaimedStats {
    ports: [UnclaimedPort; Self::TRACKED_PORTS],
    len: usize,
    /// All unclaimed `in` accesses.
    pub total_reads: u64,
    /// All unclaimed `out` accesses.
    pub total_writes: u64,
    /// Accesses to unclaimed ports beyond the first `TRACKED_PORTS` distinct ones.
    pub untracked: u64,
}

impl Default for UnclaimedStats {
    fn default() -> Self {
        Self::new()
    }
}

impl UnclaimedStats {
    /// Number of distinct ports counted individually.
    pub const TRACKED_PORTS: usize = 16;

    /// No accesses yet.
    pub const fn new() -> Self {
        Self {
            ports: [UnclaimedPort {
                port: 0,
                reads: 0,
                writes: 0,
            }; Self::TRACKED_PORTS],
            len: 0,
            total_reads: 0,
            total_writes: 0,
            untracked: 0,
        }
    }

    /// Counts one access to `port`.
    pub fn record(&mut self, port: u16, write: bool) {
        if write {
            self.total_writes += 1;
        } else {
            self.total_reads += 1;
        }
        let slot = match self.ports[..self.len].iter().position(|p| p.port == port) {
            Some(i) => i,
            None if self.len < Self::TRACKED_PORTS => {
                self.ports[self.len] = UnclaimedPort {
                    port,
                    ..UnclaimedPort::default()
                };
                self.len += 1;
                self.len - 1
            }
            None => {
                self.untracked += 1;
                return;
            }
        };
        if write {
            self.ports[slot].writes += 1;
        } else {
            self.ports[slot].reads += 1;
        }
    }

    /// Per-port counters, in order of first access.
    pub fn ports(&self) -> &[UnclaimedPort] {
        &self.ports[..self.len]
    }

    /// Counters of `port`, if it is tracked.
    pub fn port(&self, port: u16) -> Option<UnclaimedPort> {
        self.ports().iter().copied().find(|p| p.port == port)
    }

    /// All unclaimed accesses.
    pub fn total(&self) -> u64 {
        self.total_reads + self.total_writes
    }
}

enum Owner {
    /// Claimed by the platform itself (routed before the bus sees the access).
    Reserved(&'static str),
    Device(usize),
}

struct Range {
    first: u16,
    last: u16,
    owner: Owner,
}

/// Routing table of run-time port devices, with unclaimed-port accounting.
pub struct IoBus {
    /// Sorted by `first`, non-overlapping.
    ranges: Vec<Range>,
    devices: Vec<Box<dyn PortDevice>>,
    unclaimed: UnclaimedStats,
}

impl fmt::Debug for IoBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_list();
        for r in &self.ranges {
            let name = match r.owner {
                Owner::Reserved(name) => name,
                Owner::Device(i) => self.devices.get(i).map_or("?", |d| d.name()),
            };
            list.entry(&format_args!("{:#x}-{:#x} {}", r.first, r.last, name));
        }
        list.finish()
    }
}

impl Default for IoBus {
    fn default() -> Self {
        Self::new()
    }
}

enum Lookup {
    Device(usize),
    Reserved,
    None,
}

impl IoBus {
    /// Most ranges (reserved plus registered) a bus holds: registration is bounded.
    pub const MAX_RANGES: usize = 64;

    /// An empty bus.
    pub const fn new() -> Self {
        Self {
            ranges: Vec::new(),
            devices: Vec::new(),
            unclaimed: UnclaimedStats::new(),
        }
    }

    fn insert(&mut self, first: u16, last: u16, owner: Owner) -> Result<(), IoError> {
        if first > last {
            return Err(IoError::EmptyRange { first, last });
        }
        if let Some(r) = self
            .ranges
            .iter()
            .find(|r| r.first <= last && first <= r.last)
        {
            let existing = match r.owner {
                Owner::Reserved(name) => name,
                Owner::Device(i) => self.devices.get(i).map_or("?", |d| d.name()),
            };
            return Err(IoError::Overlap {
                first,
                last,
                existing,
            });
        }
        if self.ranges.len() >= Self::MAX_RANGES {
            return Err(IoError::Full);
        }
        let at = self.ranges.partition_point(|r| r.first < first);
        self.ranges.insert(at, Range { first, last, owner });
        Ok(())
    }

    /// Marks `first..=last` as owned by someone routing it before the bus (the platform's
    /// built-in devices), so registrations cannot overlap it. Accesses that reach the bus
    /// for a reserved port read as all ones and are not counted as unclaimed.
    pub fn reserve(&mut self, first: u16, last: u16, name: &'static str) -> Result<(), IoError> {
        self.insert(first, last, Owner::Reserved(name))
    }

    /// Registers `device` on `first..=last`.
    pub fn register(
        &mut self,
        first: u16,
        last: u16,
        device: Box<dyn PortDevice>,
    ) -> Result<DeviceId, IoError> {
        let id = self.devices.len();
        self.insert(first, last, Owner::Device(id))?;
        self.devices.push(device);
        Ok(DeviceId(id))
    }

    /// The device registered as `id`.
    pub fn device_mut(&mut self, id: DeviceId) -> Option<&mut (dyn PortDevice + 'static)> {
        self.devices.get_mut(id.0).map(|d| &mut **d)
    }

    /// Name of whoever claims `port`, if anyone.
    pub fn owner_name(&self, port: u16) -> Option<&'static str> {
        let r = self.range_of(port)?;
        Some(match r.owner {
            Owner::Reserved(name) => name,
            Owner::Device(i) => self.devices.get(i).map_or("?", |d| d.name()),
        })
    }

    fn range_of(&self, port: u16) -> Option<&Range> {
        let i = self.ranges.partition_point(|r| r.first <= port);
        let r = self.ranges.get(i.checked_sub(1)?)?;
        (port <= r.last).then_some(r)
    }

    fn lookup(&self, port: u16) -> Lookup {
        match self.range_of(port) {
            Some(Range {
                owner: Owner::Device(i),
                ..
            }) => Lookup::Device(*i),
            Some(_) => Lookup::Reserved,
            None => Lookup::None,
        }
    }

    /// Whether some device or reservation covers the whole access (used to decide whether to
    /// give a wide access to one device).
    fn single_device(&self, port: u16, size: AccessSize) -> Option<usize> {
        let last = size.last_port(port);
        let r = self.range_of(port)?;
        match r.owner {
            Owner::Device(i) if last >= port && last <= r.last => Some(i),
            _ => None,
        }
    }

    /// The claimed port ranges, `(first, last)` inclusive, ascending (devices and
    /// reservations).
    pub fn claimed_ranges(&self) -> impl Iterator<Item = (u16, u16)> + '_ {
        self.ranges.iter().map(|r| (r.first, r.last))
    }

    /// Whether a device or reservation covers any byte of the access (else it is unclaimed:
    /// reads float high, writes are dropped, both only counted).
    pub fn any_claimed(&self, port: u16, size: AccessSize) -> bool {
        (0..size.bytes() as u16).any(|i| self.range_of(port.wrapping_add(i)).is_some())
    }

    /// Handles `in` of `size` from `port`.
    pub fn read(&mut self, port: u16, size: AccessSize, ctx: &mut IoContext<'_>) -> u32 {
        if let Some(i) = self.single_device(port, size) {
            if let Some(d) = self.devices.get_mut(i) {
                return d.read(port, size, ctx) & size.mask();
            }
        }
        if !self.any_claimed(port, size) {
            self.unclaimed.record(port, false);
            return size.mask();
        }
        let mut value = 0u32;
        for i in 0..size.bytes() {
            let p = port.wrapping_add(u16::from(i));
            let byte = match self.lookup(p) {
                Lookup::Device(d) => self
                    .devices
                    .get_mut(d)
                    .map_or(0xff, |d| d.read(p, AccessSize::Byte, ctx) & 0xff),
                Lookup::Reserved => 0xff,
                Lookup::None => {
                    self.unclaimed.record(p, false);
                    0xff
                }
            };
            value |= byte << (8 * u32::from(i));
        }
        value
    }

    /// Handles `out` of `size` to `port`.
    pub fn write(&mut self, port: u16, size: AccessSize, value: u32, ctx: &mut IoContext<'_>) {
        let value = value & size.mask();
        if let Some(i) = self.single_device(port, size) {
            if let Some(d) = self.devices.get_mut(i) {
                d.write(port, size, value, ctx);
                return;
            }
        }
        if !self.any_claimed(port, size) {
            self.unclaimed.record(port, true);
            return;
        }
        for i in 0..size.bytes() {
            let p = port.wrapping_add(u16::from(i));
            let byte = (value >> (8 * u32::from(i))) & 0xff;
            match self.lookup(p) {
                Lookup::Device(d) => {
                    if let Some(d) = self.devices.get_mut(d) {
                        d.write(p, AccessSize::Byte, byte, ctx);
                    }
                }
                Lookup::Reserved => {}
                Lookup::None => self.unclaimed.record(p, true),
            }
        }
    }

    /// Counters of accesses to unclaimed ports.
    pub fn unclaimed(&self) -> &UnclaimedStats {
        &self.unclaimed
    }

    /// Counts an unclaimed access seen by a caller that routes ports before the bus.
    pub fn record_unclaimed(&mut self, port: u16, write: bool) {
        self.unclaimed.record(port, write);
    }
}

/// A bounded console buffer: the UART writes into it, the hypervisor drains it (typically
/// when [`ConsoleBuffer::line_ready`] says a line is complete). Bytes beyond the capacity are
/// dropped and counted.
#[derive(Debug, Clone)]
pub struct ConsoleBuffer {
    buf: Vec<u8>,
    capacity: usize,
    newlines: usize,
    dropped: u64,
}

impl ConsoleBuffer {
    /// Default capacity in bytes.
    pub const DEFAULT_CAPACITY: usize = 4096;

    /// An empty buffer holding at most `capacity` bytes (allocated up front).
    pub fn new(capacity: usize) -> Self {
        Self {
            buf: Vec::with_capacity(capacity),
            capacity,
            newlines: 0,
            dropped: 0,
        }
    }

    /// Whether the buffer holds a complete line or is at least half full: time to drain.
    pub fn line_ready(&self) -> bool {
        self.newlines > 0 || self.buf.len() >= self.capacity / 2
    }

    /// Bytes currently buffered.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether nothing is buffered.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Bytes dropped because the buffer was full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// The buffered bytes.
    pub fn contents(&self) -> &[u8] {
        &self.buf
    }

    /// Hands the buffered bytes to `out` and empties the buffer.
    pub fn drain(&mut self, out: &mut dyn FnMut(&[u8])) {
        if !self.buf.is_empty() {
            out(&self.buf);
        }
        self.buf.clear();
        self.newlines = 0;
    }
}

impl Default for ConsoleBuffer {
    fn default() -> Self {
        Self::new(Self::DEFAULT_CAPACITY)
    }
}

impl ConsoleSink for ConsoleBuffer {
    fn write_bytes(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if self.buf.len() < self.capacity {
                self.buf.push(b);
                if b == b'\n' {
                    self.newlines += 1;
                }
            } else {
                self.dropped += 1;
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::vec;

    /// Records line levels and edges.
    #[derive(Debug, Default)]
    pub struct FakeIrq {
        pub levels: [bool; 16],
        pub rising_edges: [u32; 16],
    }

    impl IrqSink for FakeIrq {
        fn set_irq(&mut self, irq: u8, level: bool) {
            let Some(l) = self.levels.get_mut(usize::from(irq)) else {
                return;
            };
            if level && !*l {
                self.rising_edges[usize::from(irq)] += 1;
            }
            *l = level;
        }
    }

    #[derive(Debug, Default)]
    pub struct FakeConsole(pub Vec<u8>);

    impl ConsoleSink for FakeConsole {
        fn write_bytes(&mut self, bytes: &[u8]) {
            self.0.extend_from_slice(bytes);
        }
    }

    /// A 4-port device remembering the last write per port; reads return port | size<<16.
    struct Regs {
        regs: [u32; 4],
        base: u16,
        log: vec::Vec<(u16, u8, u32)>,
    }

    // `vec::Vec` is Send.
    impl PortDevice for Regs {
        fn name(&self) -> &'static str {
            "regs"
        }
        fn read(&mut self, port: u16, size: AccessSize, _ctx: &mut IoContext<'_>) -> u32 {
            self.log.push((port, size.bytes(), 0));
            0xab00_0000 | u32::from(port) | (u32::from(size.bytes()) << 16)
        }
        fn write(&mut self, port: u16, size: AccessSize, value: u32, _ctx: &mut IoContext<'_>) {
            self.log.push((port, size.bytes(), value));
            if let Some(r) = self.regs.get_mut(usize::from(port.wrapping_sub(self.base))) {
                *r = value;
            }
        }
    }

    fn regs(base: u16) -> Box<Regs> {
        Box::new(Regs {
            regs: [0; 4],
            base,
            log: vec![],
        })
    }

    #[test]
    fn sizes() {
        assert_eq!(AccessSize::from_bytes(1), Some(AccessSize::Byte));
        assert_eq!(AccessSize::from_bytes(3), None);
        assert_eq!(
            AccessSize::from_exit_qualification(3),
            Some(AccessSize::Dword)
        );
        assert_eq!(AccessSize::from_exit_qualification(2), None);
        assert_eq!(AccessSize::Word.mask(), 0xffff);
        assert_eq!(AccessSize::Dword.last_port(0xfffe), 1);
    }

    #[test]
    fn overlapping_registration_is_rejected() {
        let mut bus = IoBus::new();
        bus.reserve(0x20, 0x21, "pic").unwrap();
        bus.register(0x100, 0x103, regs(0x100)).unwrap();
        assert_eq!(
            bus.register(0x103, 0x106, regs(0x103)).unwrap_err(),
            IoError::Overlap {
                first: 0x103,
                last: 0x106,
                existing: "regs"
            }
        );
        assert_eq!(
            bus.register(0x10, 0x20, regs(0x10)).unwrap_err(),
            IoError::Overlap {
                first: 0x10,
                last: 0x20,
                existing: "pic"
            }
        );
        assert!(matches!(
            bus.register(5, 4, regs(5)),
            Err(IoError::EmptyRange { .. })
        ));
        bus.register(0x104, 0x107, regs(0x104)).unwrap();
        assert_eq!(bus.owner_name(0x107), Some("regs"));
        assert_eq!(bus.owner_name(0x108), None);
        assert_eq!(bus.owner_name(0x21), Some("pic"));
        for i in 0..IoBus::MAX_RANGES as u16 {
            let _ = bus.reserve(0x1000 + i, 0x1000 + i, "x");
        }
        assert_eq!(bus.reserve(0x9000, 0x9000, "x"), Err(IoError::Full));
    }

    #[test]
    fn unclaimed_reads_all_ones_and_counts() {
        let mut bus = IoBus::new();
        let (mut irq, mut con) = (FakeIrq::default(), FakeConsole::default());
        let mut ctx = IoContext::new(0, &mut irq, &mut con);
        assert_eq!(bus.read(0x87, AccessSize::Byte, &mut ctx), 0xff);
        assert_eq!(bus.read(0xcf8, AccessSize::Word, &mut ctx), 0xffff);
        assert_eq!(bus.read(0xcf8, AccessSize::Dword, &mut ctx), 0xffff_ffff);
        bus.write(0xcf8, AccessSize::Dword, 0x8000_0000, &mut ctx);
        let s = bus.unclaimed();
        assert_eq!(
            s.port(0xcf8),
            Some(UnclaimedPort {
                port: 0xcf8,
                reads: 2,
                writes: 1
            })
        );
        assert_eq!(s.port(0x87).unwrap().reads, 1);
        assert_eq!((s.total_reads, s.total_writes, s.total()), (3, 1, 4));
        for p in 0..40u16 {
            bus.write(0x2000 + p, AccessSize::Byte, 0, &mut ctx);
        }
        let s = bus.unclaimed();
        assert_eq!(s.ports().len(), UnclaimedStats::TRACKED_PORTS);
        assert_eq!(s.untracked, 40 - (UnclaimedStats::TRACKED_PORTS as u64 - 2));
        assert_eq!(s.total_writes, 41);
    }

    #[test]
    fn wide_accesses_inside_one_device_and_split_ones() {
        let mut bus = IoBus::new();
        let id = bus.register(0x100, 0x103, regs(0x100)).unwrap();
        bus.reserve(0x104, 0x104, "reserved").unwrap();
        let (mut irq, mut con) = (FakeIrq::default(), FakeConsole::default());
        let mut ctx = IoContext::new(0, &mut irq, &mut con);
        // Entirely inside: one access with the full size; result masked to the size.
        assert_eq!(bus.read(0x100, AccessSize::Word, &mut ctx), 0x0100);
        assert_eq!(bus.read(0x100, AccessSize::Dword, &mut ctx), 0xab04_0100);
        // Straddling 0x103 (device), 0x104 (reserved), 0x105-0x106 (unclaimed): byte split.
        assert_eq!(bus.read(0x103, AccessSize::Dword, &mut ctx), 0xffff_ff03);
        bus.write(0x102, AccessSize::Dword, 0x4433_2211, &mut ctx);
        assert_eq!(bus.unclaimed().port(0x105).unwrap().reads, 1);
        assert_eq!(bus.unclaimed().port(0x105).unwrap().writes, 1);
        assert_eq!(bus.unclaimed().port(0x104), None);
        assert!(bus.device_mut(id).is_some());
        assert_eq!(bus.unclaimed().total(), 3);
    }

    #[test]
    fn console_buffer_is_bounded() {
        let mut c = ConsoleBuffer::new(8);
        c.write_bytes(b"abc");
        assert!(!c.line_ready());
        c.write_bytes(b"d\nefghij");
        assert!(c.line_ready());
        assert_eq!(c.contents(), b"abcd\nefg");
        assert_eq!(c.dropped(), 3);
        let mut got = vec![];
        c.drain(&mut |b| got.extend_from_slice(b));
        assert_eq!(got, b"abcd\nefg");
        assert!(c.is_empty());
    }
}
