//! Bulkhead hypercall ABI v1 (`VMCALL`), as specified in `docs/hypercall-abi.md`.
//!
//! - [`cpuid`]: discovery leaves `0x4000_0000`/`0x4000_0001` (signature, version, feature
//!   bits, batch size), for the hypervisor's CPUID policy and for guests.
//! - [`call`]: call numbers and per-call limits; [`HcError`]: error codes; [`Version`].
//! - [`multicall`]: the 32-byte batch entry layout and the guest-side [`multicall::Batch`].
//! - [`stats`]: the binary layout `EXIT_STATS` copies to the guest, encoder and parser.
//! - [`host`]: the hypervisor's dispatcher, [`dispatch`], over a [`HypercallHost`] that
//!   knows guest RAM and the VM; it knows nothing about VMX.
//! - [`route`]: which ABI a `VMCALL` belongs to in a VM that also offers KVM's.
//! - `guest` (x86_64 only): `no_std` wrappers over one `vmcall` instruction.
//!
//! Nothing here allocates or panics on guest-controlled input.

#![cfg_attr(not(test), no_std)]

pub mod call;
pub mod cpuid;
mod error;
#[cfg(target_arch = "x86_64")]
pub mod guest;
pub mod host;
pub mod multicall;
pub mod route;
pub mod stats;

pub use error::{decode, encode, CallError, HcError};
pub use host::{dispatch, HcAction, HcOutcome, HcRegs, HypercallHost};

use core::fmt;

/// An ABI version, `major << 16 | minor` on the wire (CPUID `0x4000_0001`:EAX, `VERSION`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    /// Incompatible changes.
    pub major: u16,
    /// Compatible additions.
    pub minor: u16,
}

impl Version {
    /// ABI v1.0.
    pub const V1_0: Version = Version { major: 1, minor: 0 };
    /// ABI v1.1: adds `MEM_RELEASE`.
    pub const V1_1: Version = Version { major: 1, minor: 1 };
    /// The version this crate implements.
    pub const CURRENT: Version = Version::V1_1;

    /// The wire form, `major << 16 | minor`.
    pub const fn raw(self) -> u32 {
        ((self.major as u32) << 16) | self.minor as u32
    }

    /// From the wire form.
    pub const fn from_raw(raw: u32) -> Version {
        Version {
            major: (raw >> 16) as u16,
            minor: raw as u16,
        }
    }

    /// Whether a guest written for `required` can use a hypervisor offering `self`: same
    /// major version, and at least the same minor version.
    pub const fn satisfies(self, required: Version) -> bool {
        self.major == required.major && self.minor >= required.minor
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// The ABI version this crate implements, in wire form (`0x0001_0001`).
pub const ABI_VERSION: u32 = Version::CURRENT.raw();

#[cfg(test)]
mod tests;
