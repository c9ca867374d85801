//! Decoded instructions kept per vCPU (issue 14: "MMIO without re-decoding"): a guest's
//! virtio doorbell write, or the loop that polls a device register, is the same instruction
//! at the same RIP exit after exit, and decoding it is most of an MMIO exit's handler.
//!
//! An entry is keyed by exactly what a decode depends on: the instruction's bytes and the
//! decode mode (from EFER.LMA and CS.L/CS.D). The kernel fetches the bytes at RIP through the
//! guest's page tables on every exit anyway (they are what it would decode), so a hit needs no
//! invalidation: a guest that rewrites its code, maps another page at that address or changes
//! mode presents other bytes or another mode and misses. Only the decode is kept; what the
//! instruction does (the value a store writes, the registers) is worked out on each exit.

use super::{CpuMode, MAX_INSN_LEN};
use iced_x86::Instruction;

/// Entries per vCPU: a driver's few MMIO instructions (the notify write, the interrupt
/// status read and acknowledge, a config read) fit; the oldest entry is replaced first.
const ENTRIES: usize = 4;

#[derive(Clone, Copy)]
struct Entry {
    mode: CpuMode,
    len: u8,
    bytes: [u8; MAX_INSN_LEN],
    insn: Instruction,
}

/// A small cache of decoded instructions (see the module documentation).
#[derive(Clone)]
pub struct DecodeCache {
    entries: [Option<Entry>; ENTRIES],
    /// The slot the next new entry takes (round robin).
    next: usize,
    /// Decodes answered from the cache and decodes done.
    pub hits: u64,
    pub misses: u64,
}

impl core::fmt::Debug for DecodeCache {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DecodeCache")
            .field("entries", &self.entries.iter().flatten().count())
            .field("hits", &self.hits)
            .field("misses", &self.misses)
            .finish()
    }
}

impl Default for DecodeCache {
    fn default() -> Self {
        Self::new()
    }
}

impl DecodeCache {
    pub const fn new() -> Self {
        DecodeCache {
            entries: [None; ENTRIES],
            next: 0,
            hits: 0,
            misses: 0,
        }
    }

    /// The decode of the instruction `bytes` start with, in `mode`, if it was decoded before.
    pub(super) fn lookup(&mut self, bytes: &[u8], mode: CpuMode) -> Option<Instruction> {
        let found = self.entries.iter().flatten().find(|e| {
            let len = usize::from(e.len);
            e.mode == mode && bytes.len() >= len && bytes[..len] == e.bytes[..len]
        });
        match found {
            Some(e) => {
                self.hits += 1;
                Some(e.insn)
            }
            None => {
                self.misses += 1;
                None
            }
        }
    }

    /// Keeps `insn`, decoded from the start of `bytes` in `mode`.
    pub(super) fn insert(&mut self, bytes: &[u8], mode: CpuMode, insn: &Instruction) {
        let len = insn.len().min(bytes.len()).min(MAX_INSN_LEN);
        let mut kept = [0u8; MAX_INSN_LEN];
        kept[..len].copy_from_slice(&bytes[..len]);
        self.entries[self.next] = Some(Entry {
            mode,
            len: len as u8,
            bytes: kept,
            insn: *insn,
        });
        self.next = (self.next + 1) % ENTRIES;
    }

    /// Forgets every entry (the counters stay).
    pub fn clear(&mut self) {
        self.entries = [None; ENTRIES];
        self.next = 0;
    }
}
