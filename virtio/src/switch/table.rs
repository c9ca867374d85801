//! The switch's MAC address table (IEEE 802.1D-2004 §7.9 "The Filtering Database"): static
//! entries for the addresses a port is configured with (a guest's MAC, the gateway's), which
//! never age and cannot be taken over, and at most `capacity` dynamic entries learned on
//! ports whose sources are not fixed (an uplink), aged out after `aging` TSC ticks
//! (§7.9.2: the recommended ageing time is 300 s). Allocated once at creation.

use alloc::vec::Vec;

use super::{Mac, SwitchError};

#[derive(Debug, Clone, Copy)]
struct Entry {
    mac: Mac,
    port: usize,
    last_seen: u64,
    pinned: bool,
}

/// What learning a source address did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Learned {
    /// Already known on this port: refreshed.
    Refreshed,
    /// Known on another port: moved to this one (a station moved).
    Moved,
    /// A new entry in a free slot.
    Added,
    /// A new entry in the slot of an entry that had aged out.
    ReplacedAged,
    /// A new entry in the slot of the least recently seen live entry (table full).
    Evicted,
    /// The address is a static entry of another port: not learned (the caller drops the
    /// frame as spoofed).
    Static { port: usize },
}

/// A bounded MAC table.
#[derive(Debug)]
pub struct MacTable {
    entries: Vec<Entry>,
    capacity: usize,
    dynamic: usize,
    statics: usize,
    max_statics: usize,
    aging: u64,
}

impl MacTable {
    /// A table for `max_statics` static entries and `capacity` dynamic ones, aged after
    /// `aging` ticks; allocated now.
    pub fn new(capacity: usize, max_statics: usize, aging: u64) -> Self {
        MacTable {
            entries: Vec::with_capacity(capacity + max_statics),
            capacity,
            dynamic: 0,
            statics: 0,
            max_statics,
            aging,
        }
    }

    /// Heap bytes of a table with these capacities.
    pub const fn heap_bytes(capacity: usize, max_statics: usize) -> usize {
        (capacity + max_statics) * core::mem::size_of::<Entry>()
    }

    /// Dynamic entries held (live or aged, not yet reclaimed).
    pub fn dynamic_len(&self) -> usize {
        self.dynamic
    }

    fn expired(&self, e: &Entry, now: u64) -> bool {
        !e.pinned && now.saturating_sub(e.last_seen) > self.aging
    }

    /// Adds a static entry: `mac` lives on `port` for good.
    pub fn pin(&mut self, mac: Mac, port: usize) -> Result<(), SwitchError> {
        if let Some(e) = self.entries.iter().find(|e| e.mac == mac) {
            if e.pinned {
                return Err(SwitchError::DuplicateMac { mac, port: e.port });
            }
        }
        if self.statics >= self.max_statics {
            return Err(SwitchError::TooManyPorts {
                max: self.max_statics,
            });
        }
        // A dynamic entry for the same address is replaced by the static one.
        if let Some(i) = self.entries.iter().position(|e| e.mac == mac) {
            self.entries.swap_remove(i);
            self.dynamic -= 1;
        }
        self.entries.push(Entry {
            mac,
            port,
            last_seen: 0,
            pinned: true,
        });
        self.statics += 1;
        Ok(())
    }

    /// The port a live entry for `mac` names.
    pub fn lookup(&self, mac: &Mac, now: u64) -> Option<usize> {
        self.entries
            .iter()
            .find(|e| e.mac == *mac && !self.expired(e, now))
            .map(|e| e.port)
    }

    /// The port of the static entry for `mac`, if there is one.
    pub fn static_port(&self, mac: &Mac) -> Option<usize> {
        self.entries
            .iter()
            .find(|e| e.mac == *mac && e.pinned)
            .map(|e| e.port)
    }

    /// Learns that `mac` (unicast) was seen on `port` at `now`. Bounded: one pass over the
    /// table, no allocation (the vector never grows past its creation capacity).
    pub fn learn(&mut self, mac: Mac, port: usize, now: u64) -> Learned {
        if let Some(e) = self.entries.iter_mut().find(|e| e.mac == mac) {
            if e.pinned {
                return Learned::Static { port: e.port };
            }
            let moved = e.port != port;
            e.port = port;
            e.last_seen = now;
            return if moved {
                Learned::Moved
            } else {
                Learned::Refreshed
            };
        }
        let entry = Entry {
            mac,
            port,
            last_seen: now,
            pinned: false,
        };
        if self.dynamic < self.capacity {
            self.entries.push(entry);
            self.dynamic += 1;
            return Learned::Added;
        }
        // Full: reuse the least recently seen dynamic entry (aged or not).
        let Some((i, aged)) = self
            .entries
            .iter()
            .enumerate()
            .filter(|(_, e)| !e.pinned)
            .min_by_key(|(_, e)| e.last_seen)
            .map(|(i, e)| (i, self.expired(e, now)))
        else {
            // A table with no room for dynamic entries learns nothing.
            return Learned::Evicted;
        };
        self.entries[i] = entry;
        if aged {
            Learned::ReplacedAged
        } else {
            Learned::Evicted
        }
    }
}
