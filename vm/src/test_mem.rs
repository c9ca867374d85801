//! Test fixture shared by the loaders' host tests (Linux, PVH, Multiboot): sparse guest
//! memory that records every write and reads back the newest bytes written.

use alloc::vec;
use alloc::vec::Vec;

use crate::loader::{GuestWrite, LoadError};

/// Guest RAM of `ram` bytes; writes beyond it fail with [`LoadError::OutsideRam`].
pub(crate) struct Mem {
    ram: u64,
    pub(crate) writes: Vec<(u64, Vec<u8>)>,
}

impl Mem {
    pub(crate) fn new(ram: u64) -> Self {
        Mem {
            ram,
            writes: Vec::new(),
        }
    }

    pub(crate) fn read(&self, gpa: u64, len: usize) -> Vec<u8> {
        let mut out = vec![0u8; len];
        for (at, data) in &self.writes {
            for (i, b) in out.iter_mut().enumerate() {
                let a = gpa + i as u64;
                if a >= *at && a < at + data.len() as u64 {
                    *b = data[(a - at) as usize];
                }
            }
        }
        out
    }

    pub(crate) fn u8(&self, gpa: u64) -> u8 {
        self.read(gpa, 1)[0]
    }

    pub(crate) fn u16(&self, gpa: u64) -> u16 {
        u16::from_le_bytes(self.read(gpa, 2).try_into().unwrap())
    }

    pub(crate) fn u32(&self, gpa: u64) -> u32 {
        u32::from_le_bytes(self.read(gpa, 4).try_into().unwrap())
    }

    pub(crate) fn u64(&self, gpa: u64) -> u64 {
        u64::from_le_bytes(self.read(gpa, 8).try_into().unwrap())
    }

    /// The NUL-terminated string at `gpa` (at most 256 bytes read).
    pub(crate) fn cstr(&self, gpa: u64) -> Vec<u8> {
        let b = self.read(gpa, 256);
        b[..b.iter().position(|&c| c == 0).unwrap()].to_vec()
    }

    /// Whether any write covered `gpa`.
    pub(crate) fn written(&self, gpa: u64) -> bool {
        self.writes
            .iter()
            .any(|(at, d)| gpa >= *at && gpa < at + d.len() as u64)
    }
}

impl GuestWrite for Mem {
    fn write(&mut self, gpa: u64, data: &[u8]) -> Result<(), LoadError> {
        let len = data.len() as u64;
        if gpa.checked_add(len).is_none_or(|e| e > self.ram) {
            return Err(LoadError::OutsideRam { gpa, len });
        }
        self.writes.push((gpa, data.to_vec()));
        Ok(())
    }

    fn zero(&mut self, gpa: u64, len: u64) -> Result<(), LoadError> {
        self.write(gpa, &vec![0; len as usize])
    }
}
