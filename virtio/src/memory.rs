//! Guest-physical memory access with bounds-checked GPA ranges.
//!
//! Device code never holds raw pointers into guest RAM: every access goes through
//! [`GuestMemory`], which either copies the whole range or fails with [`MemError`].

use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

/// A failed guest memory access.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemError {
    /// `gpa..gpa+len` is not entirely backed by guest RAM.
    OutOfBounds {
        /// First guest-physical address of the access.
        gpa: u64,
        /// Length of the access in bytes.
        len: u64,
    },
    /// `gpa + len` overflows the 64-bit address space.
    Overflow {
        /// First guest-physical address of the access.
        gpa: u64,
        /// Length of the access in bytes.
        len: u64,
    },
}

impl fmt::Display for MemError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MemError::OutOfBounds { gpa, len } => {
                write!(f, "guest range {gpa:#x}+{len:#x} is outside guest RAM")
            }
            MemError::Overflow { gpa, len } => {
                write!(
                    f,
                    "guest range {gpa:#x}+{len:#x} overflows the address space"
                )
            }
        }
    }
}

/// Guest-physical memory as seen by a device.
///
/// Implementations must fail (never panic) for any range not fully inside guest RAM.
pub trait GuestMemory {
    /// Copies `buf.len()` bytes starting at `gpa` into `buf`.
    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), MemError>;
    /// Copies `data` into guest memory starting at `gpa`.
    fn write(&mut self, gpa: u64, data: &[u8]) -> Result<(), MemError>;
    /// Checks that `gpa..gpa+len` is entirely guest RAM without accessing it.
    fn check_range(&self, gpa: u64, len: u64) -> Result<(), MemError>;

    /// Reads a little-endian u16.
    fn read_u16(&self, gpa: u64) -> Result<u16, MemError> {
        let mut b = [0u8; 2];
        self.read(gpa, &mut b)?;
        Ok(u16::from_le_bytes(b))
    }
    /// Reads a little-endian u32.
    fn read_u32(&self, gpa: u64) -> Result<u32, MemError> {
        let mut b = [0u8; 4];
        self.read(gpa, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }
    /// Reads a little-endian u64.
    fn read_u64(&self, gpa: u64) -> Result<u64, MemError> {
        let mut b = [0u8; 8];
        self.read(gpa, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }
    /// Writes a little-endian u16.
    fn write_u16(&mut self, gpa: u64, v: u16) -> Result<(), MemError> {
        self.write(gpa, &v.to_le_bytes())
    }
    /// Writes a little-endian u32.
    fn write_u32(&mut self, gpa: u64, v: u32) -> Result<(), MemError> {
        self.write(gpa, &v.to_le_bytes())
    }
    /// Writes a little-endian u64.
    fn write_u64(&mut self, gpa: u64, v: u64) -> Result<(), MemError> {
        self.write(gpa, &v.to_le_bytes())
    }
}

/// Guest RAM backed by a `Vec<u8>` mapped at `base` (tests and simple hosts).
#[derive(Debug, Clone)]
pub struct VecMemory {
    base: u64,
    data: Vec<u8>,
}

impl VecMemory {
    /// `size` zeroed bytes of guest RAM at guest-physical address `base`.
    pub fn new(base: u64, size: usize) -> Self {
        VecMemory {
            base,
            data: vec![0; size],
        }
    }

    /// Guest RAM at `base` holding `data`.
    pub fn from_vec(base: u64, data: Vec<u8>) -> Self {
        VecMemory { base, data }
    }

    /// First guest-physical address.
    pub fn base(&self) -> u64 {
        self.base
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.data.len() as u64
    }

    /// The raw contents (host view).
    pub fn as_slice(&self) -> &[u8] {
        &self.data
    }

    /// The raw contents, mutable (host view).
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.data
    }

    /// Host index range for `gpa..gpa+len`, bounds-checked.
    fn range(&self, gpa: u64, len: u64) -> Result<core::ops::Range<usize>, MemError> {
        let end = gpa
            .checked_add(len)
            .ok_or(MemError::Overflow { gpa, len })?;
        let oob = MemError::OutOfBounds { gpa, len };
        let start_off = gpa.checked_sub(self.base).ok_or(oob)?;
        let end_off = end.checked_sub(self.base).ok_or(oob)?;
        if end_off > self.data.len() as u64 {
            return Err(oob);
        }
        let s = usize::try_from(start_off).map_err(|_| oob)?;
        let e = usize::try_from(end_off).map_err(|_| oob)?;
        Ok(s..e)
    }
}

impl GuestMemory for VecMemory {
    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), MemError> {
        let r = self.range(gpa, buf.len() as u64)?;
        let src = self.data.get(r).ok_or(MemError::OutOfBounds {
            gpa,
            len: buf.len() as u64,
        })?;
        buf.copy_from_slice(src);
        Ok(())
    }

    fn write(&mut self, gpa: u64, data: &[u8]) -> Result<(), MemError> {
        let len = data.len() as u64;
        let r = self.range(gpa, len)?;
        let dst = self
            .data
            .get_mut(r)
            .ok_or(MemError::OutOfBounds { gpa, len })?;
        dst.copy_from_slice(data);
        Ok(())
    }

    fn check_range(&self, gpa: u64, len: u64) -> Result<(), MemError> {
        self.range(gpa, len).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds() {
        let mut m = VecMemory::new(0x1000, 0x100);
        assert!(m.write_u32(0x1000, 0xdead_beef).is_ok());
        assert_eq!(m.read_u32(0x1000), Ok(0xdead_beef));
        assert!(m.read_u64(0x10f8).is_ok());
        assert_eq!(
            m.read_u64(0x10f9),
            Err(MemError::OutOfBounds {
                gpa: 0x10f9,
                len: 8
            })
        );
        assert!(m.read_u16(0xfff).is_err());
        assert_eq!(
            m.check_range(u64::MAX, 2),
            Err(MemError::Overflow {
                gpa: u64::MAX,
                len: 2
            })
        );
        assert!(m.check_range(0x1100, 0).is_ok());
        assert!(m.write(0x1100, &[1]).is_err());
    }
}
