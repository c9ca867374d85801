//! `regs VM [VCPU]`: a vCPU's registers as of its last VM exit. The kernel copies them from
//! the vCPU's VMCS on the vCPU's own CPU after each slice (never from another CPU's VMCS) into
//! a [`Registers`] snapshot; the shell formats it with [`regs`].

use core::fmt::{self, Write};

/// The general-purpose registers in the order `regs` prints them.
pub const GPR_NAMES: [&str; 16] = [
    "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp", "r8", "r9", "r10", "r11", "r12", "r13",
    "r14", "r15",
];

/// The segment selectors in the order `regs` prints them.
pub const SELECTOR_NAMES: [&str; 8] = ["cs", "ss", "ds", "es", "fs", "gs", "ldtr", "tr"];

/// A vCPU's architectural state at a VM exit: the guest-state area's RIP, RFLAGS, RSP, control
/// registers, EFER and selectors (SDM Vol. 3C §25.4.1) and the GPRs the exit saved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Registers {
    /// In [`GPR_NAMES`] order.
    pub gprs: [u64; 16],
    pub rip: u64,
    pub rflags: u64,
    pub cr0: u64,
    pub cr2: u64,
    pub cr3: u64,
    pub cr4: u64,
    pub efer: u64,
    /// In [`SELECTOR_NAMES`] order.
    pub selectors: [u16; 8],
    /// When it was taken (TSC).
    pub at: u64,
}

/// What `regs` shows about the vCPU besides its registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegsHeader<'a> {
    pub vm: &'a str,
    pub vcpu: usize,
    /// `running`, `halted`, `waiting for SIPI`, `stopped`.
    pub state: &'a str,
    /// The CPU it last ran on.
    pub cpu: Option<usize>,
    /// TSC now (the snapshot's age is `now - at`).
    pub now: u64,
}

/// `regs VM [VCPU]`: a title line saying how old the snapshot is, then 4 GPRs per line, then
/// RIP/RFLAGS, the control registers and EFER, the selectors.
pub fn regs(h: &RegsHeader<'_>, r: &Registers, tsc_hz: u64, out: &mut dyn Write) -> fmt::Result {
    let age_us = u128::from(h.now.saturating_sub(r.at)) * 1_000_000 / u128::from(tsc_hz.max(1));
    write!(out, "{} vcpu {}: {}", h.vm, h.vcpu, h.state)?;
    if let Some(cpu) = h.cpu {
        write!(out, " (cpu {cpu})")?;
    }
    writeln!(out, "; registers as of its last exit, {age_us} us ago")?;
    for (row, names) in GPR_NAMES.chunks(4).enumerate() {
        for (i, name) in names.iter().enumerate() {
            write!(out, "  {name:<4}={:016x}", r.gprs[row * 4 + i])?;
        }
        writeln!(out)?;
    }
    writeln!(out, "  rip =0x{:016x}  rflags=0x{:08x}", r.rip, r.rflags)?;
    writeln!(
        out,
        "  cr0 =0x{:08x}  cr2=0x{:016x}  cr3=0x{:016x}  cr4=0x{:08x}  efer=0x{:x}",
        r.cr0, r.cr2, r.cr3, r.cr4, r.efer
    )?;
    write!(out, " ")?;
    for (name, sel) in SELECTOR_NAMES.iter().zip(r.selectors) {
        write!(out, " {name}={sel:04x}")?;
    }
    writeln!(out)
}
