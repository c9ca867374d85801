//! Intel VT-x extended page tables (EPT): a builder for the 4-level EPT
//! hierarchy over an abstract frame allocator.
//!
//! * [`Ept::map`] / [`Ept::map_with`] map guest-physical ranges with access
//!   rights and memory type, using 2 MiB and 1 GiB pages where alignment and
//!   the [`EptConfig`] allow;
//! * [`Ept::unmap`] and [`Ept::protect`] split large pages on demand;
//! * [`Ept::translate`] performs the GPA→HPA walk;
//! * [`Ept::eptp`] builds the EPT pointer for the VMCS;
//! * every change returns the [`Invalidation`] (INVEPT) the caller owes.
//!
//! The kernel provides frames through [`FrameAllocator`] and accesses them
//! through [`TableMemory`] (a direct map); host tests use a `Vec`-backed fake.
//!
//! References are to the Intel SDM Vol. 3C: chapter 29 "VMX Support for
//! Address Translation" (§29.3 EPT, §29.4 caching and INVEPT) and §25.6.11
//! (EPTP).
#![cfg_attr(not(test), no_std)]

mod entry;
mod ept;
mod eptp;
mod error;
mod memory;
mod types;

pub use crate::ept::{Ept, EptConfig};
pub use crate::eptp::{Eptp, Invalidation, InveptDescriptor, InveptType};
pub use crate::error::EptError;
pub use crate::memory::{FrameAllocator, TableMemory};
pub use crate::types::{
    Access, Attributes, Gpa, Hpa, MemoryType, PageSize, Translation, GPA_LIMIT, PAGE_SIZE,
};

#[cfg(test)]
mod tests;
