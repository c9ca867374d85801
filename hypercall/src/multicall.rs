//! `MULTICALL` batches: an array of 32-byte entries in guest memory.
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | `call` (in) |
//! | 8 | 8 | `arg0` (in) |
//! | 16 | 8 | `arg1` (in) |
//! | 24 | 8 | `result` (out, signed, RAX encoding) |

use core::fmt;
use core::mem::{align_of, offset_of, size_of};

use crate::{call, decode, CallError};

/// Bytes per entry.
pub const ENTRY_SIZE: usize = 32;
/// Offset of `call` in an entry.
pub const OFF_CALL: usize = 0;
/// Offset of `arg0` in an entry.
pub const OFF_ARG0: usize = 8;
/// Offset of `arg1` in an entry.
pub const OFF_ARG1: usize = 16;
/// Offset of `result` in an entry.
pub const OFF_RESULT: usize = 24;
/// The largest batch, in entries: one 4096-byte page.
pub const MAX_ENTRIES: usize = 4096 / ENTRY_SIZE;
/// Required alignment of a batch's guest-physical address.
pub const BATCH_ALIGN: u64 = 32;
/// The `result` value [`Batch`] gives an entry before it runs (no call returns it).
pub const NOT_RUN: i64 = i64::MIN;

/// One batch entry, in guest memory layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C, align(32))]
pub struct Entry {
    /// The call number.
    pub call: u64,
    /// Argument 0 (RBX of a plain call).
    pub arg0: u64,
    /// Argument 1 (RCX of a plain call).
    pub arg1: u64,
    /// The result, written by the hypervisor: `>= 0` success value, `< 0` `-code`.
    pub result: i64,
}

const _: () = {
    assert!(size_of::<Entry>() == ENTRY_SIZE);
    assert!(align_of::<Entry>() as u64 == BATCH_ALIGN);
    assert!(offset_of!(Entry, call) == OFF_CALL);
    assert!(offset_of!(Entry, arg0) == OFF_ARG0);
    assert!(offset_of!(Entry, arg1) == OFF_ARG1);
    assert!(offset_of!(Entry, result) == OFF_RESULT);
};

impl Entry {
    /// An entry not yet run.
    pub const fn new(call: u64, arg0: u64, arg1: u64) -> Entry {
        Entry {
            call,
            arg0,
            arg1,
            result: NOT_RUN,
        }
    }

    /// The entry as guest memory bytes.
    pub fn to_bytes(&self) -> [u8; ENTRY_SIZE] {
        let mut b = [0u8; ENTRY_SIZE];
        b[OFF_CALL..OFF_CALL + 8].copy_from_slice(&self.call.to_le_bytes());
        b[OFF_ARG0..OFF_ARG0 + 8].copy_from_slice(&self.arg0.to_le_bytes());
        b[OFF_ARG1..OFF_ARG1 + 8].copy_from_slice(&self.arg1.to_le_bytes());
        b[OFF_RESULT..OFF_RESULT + 8].copy_from_slice(&self.result.to_le_bytes());
        b
    }

    /// The entry from guest memory bytes.
    pub fn from_bytes(b: &[u8; ENTRY_SIZE]) -> Entry {
        let word = |off: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[off..off + 8]);
            u64::from_le_bytes(w)
        };
        Entry {
            call: word(OFF_CALL),
            arg0: word(OFF_ARG0),
            arg1: word(OFF_ARG1),
            result: word(OFF_RESULT) as i64,
        }
    }

    /// The decoded result; `Err(CallError::Unknown(NOT_RUN))` if the entry has not run.
    pub const fn outcome(&self) -> Result<u64, CallError> {
        decode(self.result)
    }
}

/// [`Batch::push`] on a full batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

impl fmt::Display for Full {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "multicall batch full ({MAX_ENTRIES} entries)")
    }
}

/// A page of entries, page-aligned so that a full batch never crosses a page.
#[derive(Debug, Clone, Copy)]
#[repr(C, align(4096))]
struct Page([Entry; MAX_ENTRIES]);

const _: () = assert!(size_of::<Page>() == 4096);

/// A batch of up to [`MAX_ENTRIES`] calls for one `MULTICALL`, built by the guest.
///
/// The entries live in a 4096-byte-aligned page; [`Batch::gpa`] is its address (its
/// guest-physical address when memory is identity-mapped). `Batch` is 8 KiB (the page plus
/// the length, rounded up to the alignment); keep it in a static or a large enough stack.
#[derive(Debug, Clone)]
pub struct Batch {
    page: Page,
    len: usize,
}

impl Default for Batch {
    fn default() -> Batch {
        Batch::new()
    }
}

impl Batch {
    /// An empty batch.
    pub const fn new() -> Batch {
        Batch {
            page: Page([Entry::new(0, 0, 0); MAX_ENTRIES]),
            len: 0,
        }
    }

    /// Queues `call(arg0, arg1)`; returns its index, or [`Full`].
    pub fn push(&mut self, call: u64, arg0: u64, arg1: u64) -> Result<usize, Full> {
        let i = self.len;
        let slot = self.page.0.get_mut(i).ok_or(Full)?;
        *slot = Entry::new(call, arg0, arg1);
        self.len = i + 1;
        Ok(i)
    }

    /// Queues a `NOP`.
    pub fn push_nop(&mut self) -> Result<usize, Full> {
        self.push(call::NOP, 0, 0)
    }

    /// Queues a `VERSION`.
    pub fn push_version(&mut self) -> Result<usize, Full> {
        self.push(call::VERSION, 0, 0)
    }

    /// Queues a `CONSOLE_WRITE` of `bytes` (by address: identity-mapped memory assumed). The
    /// hypervisor reads them when the batch runs, so they must still hold the text then.
    pub fn push_console(&mut self, bytes: &[u8]) -> Result<usize, Full> {
        self.push(
            call::CONSOLE_WRITE,
            bytes.as_ptr() as u64,
            bytes.len() as u64,
        )
    }

    /// Queues an `IDLE(mode)`.
    pub fn push_idle(&mut self, mode: u64) -> Result<usize, Full> {
        self.push(call::IDLE, mode, 0)
    }

    /// The number of queued entries.
    pub const fn len(&self) -> usize {
        self.len
    }

    /// Whether no entry is queued.
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// [`MAX_ENTRIES`].
    pub const fn capacity(&self) -> usize {
        MAX_ENTRIES
    }

    /// Removes every entry.
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Marks every queued entry not run ([`NOT_RUN`]), before a `MULTICALL`.
    pub fn reset_results(&mut self) {
        for e in self.entries_mut() {
            e.result = NOT_RUN;
        }
    }

    /// The queued entries.
    pub fn entries(&self) -> &[Entry] {
        self.page.0.get(..self.len).unwrap_or(&[])
    }

    fn entries_mut(&mut self) -> &mut [Entry] {
        self.page.0.get_mut(..self.len).unwrap_or(&mut [])
    }

    /// Each queued entry's decoded result, in order.
    pub fn results(&self) -> impl ExactSizeIterator<Item = Result<u64, CallError>> + '_ {
        self.entries().iter().map(Entry::outcome)
    }

    /// Entry `i`'s decoded result.
    pub fn result(&self, i: usize) -> Option<Result<u64, CallError>> {
        self.entries().get(i).map(Entry::outcome)
    }

    /// The address of the first entry (the `gpa` argument of `MULTICALL` under identity
    /// mapping).
    pub fn gpa(&self) -> u64 {
        self.page.0.as_ptr() as u64
    }
}
