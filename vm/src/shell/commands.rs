//! What the shell's commands print, from plain data the kernel fills in: [`VmRow`] for `vms`,
//! [`StatsView`] for `stats VM`. Everything is written to a `fmt::Write`, lines ending in
//! `\n` (the console turns them into CR LF).

use super::parse::COMMANDS;
use crate::stats::ExitStats;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::{self, Write};

/// A VM's state as `vms` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VmState {
    /// At least one vCPU runs or can be woken.
    Running,
    /// A stop was decided; its vCPUs are leaving.
    Stopping,
    /// Every vCPU has stopped (its report was printed).
    Stopped,
    /// Stopped, with a start pending: the operator's `start`/`restart`, or the guest's reboot
    /// (`on-reboot = "restart"`, whose rebuild may wait its turn: vm::reboot).
    Starting,
}

impl fmt::Display for VmState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            VmState::Running => "running",
            VmState::Stopping => "stopping",
            VmState::Stopped => "stopped",
            VmState::Starting => "starting",
        })
    }
}

/// One VM in `vms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmRow {
    pub name: String,
    pub state: VmState,
    /// The CPU each vCPU runs on.
    pub vcpu_cpus: Vec<usize>,
    /// vCPUs not stopped.
    pub vcpus_running: usize,
    pub memory_bytes: u64,
    /// TSC ticks since the VM started.
    pub uptime_ticks: u64,
}

/// `stats VM`: the VM's exit counters so far (its stopped vCPUs' and its running ones'),
/// console and device counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatsView {
    pub name: String,
    pub state: VmState,
    pub uptime_ticks: u64,
    pub exits: ExitStats,
    /// `vm::console`'s summary line.
    pub console: String,
    /// Device counters, one line each (the stop report's).
    pub devices: Vec<String>,
}

/// Seconds with milliseconds, from TSC ticks at `tsc_hz`.
struct Seconds {
    ticks: u64,
    tsc_hz: u64,
}

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hz = self.tsc_hz.max(1);
        let ms = u128::from(self.ticks) * 1000 / u128::from(hz);
        write!(f, "{}.{:03}s", ms / 1000, ms % 1000)
    }
}

/// Memory in MiB, or KiB below one MiB.
struct Size(u64);

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const KIB: u64 = 1024;
        const MIB: u64 = 1024 * KIB;
        let mut s = String::new();
        if self.0 >= MIB && self.0.is_multiple_of(MIB) {
            let _ = write!(s, "{}M", self.0 / MIB);
        } else {
            let _ = write!(s, "{}K", self.0 / KIB);
        }
        f.pad(&s)
    }
}

/// `help`: one line per command.
pub fn help(out: &mut dyn Write) -> fmt::Result {
    for (_, usage, what) in COMMANDS {
        writeln!(out, "  {usage:<16} {what}")?;
    }
    writeln!(
        out,
        "  Ctrl-A           open/close the shell; detach from a console"
    )
}

/// The console-input counters, the line `vms` ends with.
pub fn input_line(s: &super::InputStats, out: &mut dyn Write) -> fmt::Result {
    writeln!(
        out,
        "console input: lines={} to-guest={} ignored={} dropped-long-line={} dropped-queue-full={} dropped-before-escape={} uart-overruns={}",
        s.lines, s.to_guest, s.ignored, s.line_overflow, s.queue_overflow, s.skipped_for_escape, s.uart_overruns
    )
}

/// `vms`: a header and one line per VM.
pub fn vms(rows: &[VmRow], tsc_hz: u64, out: &mut dyn Write) -> fmt::Result {
    writeln!(
        out,
        "{:<12} {:<8} {:>5}  {:<10} {:>6} {:>10}",
        "VM", "STATE", "VCPUS", "CPUS", "MEMORY", "UPTIME"
    )?;
    for r in rows {
        let mut cpus = String::new();
        for (i, c) in r.vcpu_cpus.iter().enumerate() {
            let _ = write!(cpus, "{}{c}", if i > 0 { "," } else { "" });
        }
        let vcpus = alloc::format!("{}/{}", r.vcpus_running, r.vcpu_cpus.len());
        let up = alloc::format!(
            "{}",
            Seconds {
                ticks: r.uptime_ticks,
                tsc_hz
            }
        );
        writeln!(
            out,
            "{:<12} {:<8} {:>5}  {:<10} {:>6} {:>10}",
            r.name,
            r.state,
            vcpus,
            cpus,
            Size(r.memory_bytes),
            up
        )?;
    }
    Ok(())
}

/// `stats VM`: a title line, then the stop report's lines, each prefixed with the VM's name.
pub fn stats(view: &StatsView, tsc_hz: u64, out: &mut dyn Write) -> fmt::Result {
    let name = &view.name;
    writeln!(
        out,
        "{name}: {} for {}",
        view.state,
        Seconds {
            ticks: view.uptime_ticks,
            tsc_hz
        }
    )?;
    for line in alloc::format!("{}", view.exits).lines() {
        writeln!(out, "{name}: {line}")?;
    }
    writeln!(out, "{name}: console: {}", view.console)?;
    for line in &view.devices {
        writeln!(out, "{name}: {line}")?;
    }
    Ok(())
}
