//! Bulkhead's hardware-independent VM model, unit-tested on the host. The kernel owns the
//! hardware (VMCS, EPT, VM entry); everything that decides *what* happens on an exit lives
//! here.

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod acpi;
pub mod apic;
pub mod archive;
pub mod config;
pub mod console;
pub mod control_regs;
pub mod cpuid;
pub mod devices;
pub mod elf;
pub mod features;
pub mod idle;
pub mod insn;
pub mod io;
pub mod kvm_pv;
pub mod linux;
pub mod loader;
pub mod msr;
pub mod multiboot;
pub mod nic;
pub mod page_share;
pub mod paging;
pub mod pci_ecam;
pub mod placement;
pub mod pvh;
pub mod reboot;
pub mod shell;
pub mod snapshot;
pub mod stats;
pub mod store;
pub mod string_io;
#[cfg(test)]
mod test_mem;
pub mod xsave;
