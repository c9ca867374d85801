//! The hypervisor shell on COM1 (issue 17; docs/architecture.md, "Hypervisor shell"): the
//! console-draining CPU reads the UART's receiver into a bounded queue (beyond it bytes are
//! dropped and counted) often enough that its 16-byte FIFO does not overrun, also while one of
//! its vCPUs runs a slice ([`receive_if_due`] from the exits, [`receive_interrupt`] from COM1's
//! interrupt; only a FIFO read, no VM lock), and from its scheduling loop (between slices and
//! while idle, never in an exit handler) hands at most [`vm::shell::BYTES_PER_PASS`] queued
//! bytes per pass to the multiplexer ([`vm::shell::Mux`]); commands run here and print through
//! the console queue. Ctrl-A opens the shell; `console VM` sends every byte to that VM's UART
//! until Ctrl-A. The prompt with what is typed, and while attached the VM's unfinished console
//! line (its echo of what is typed), are the terminal's open line (`serial::shell_line`,
//! `shell_ops::show_unfinished`): other output ends it, each pass shows it again.

use crate::vmm::shell_ops::{self, OpError};
use crate::vmm::snapshot::{self, Taken};
use crate::{arch, println};
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use spin::Mutex;
use vm::shell::top::{self, Sample};
use vm::shell::{commands, parse, regs, Command, InputQueue, LogLevel, Mux, Step, VmName, PROMPT};

/// The 16550's receive FIFO: at most this many bytes arrive between two reads that matter.
const RX_FIFO: usize = 16;

struct Shell {
    mux: Mux,
    /// `top`: the last sample and when the next refresh is due (TSC).
    top: Vec<Sample>,
    next_top: u64,
    /// The attached VM's console byte count when its unfinished line was last shown.
    seen: Option<u64>,
}

static SHELL: Mutex<Shell> = Mutex::new(Shell {
    mux: Mux::new(),
    top: Vec::new(),
    next_top: 0,
    seen: None,
});
/// What the receiver delivered, until the shell's pass takes it (the console-draining CPU
/// alone fills and empties it: the lock never waits for long).
static INPUT: Mutex<InputQueue> = Mutex::new(InputQueue::new());
/// The TSC rate (input counts as recent for one second of it).
static TSC_HZ: AtomicU64 = AtomicU64::new(0);
/// When the shell's pass next runs (TSC).
static NEXT_POLL: AtomicU64 = AtomicU64::new(0);
/// When the receiver is next read (TSC), between slices or inside one ([`receive_if_due`]).
static NEXT_RX: AtomicU64 = AtomicU64::new(0);
/// When console input last arrived (TSC).
static LAST_INPUT: AtomicU64 = AtomicU64::new(0);
/// Bytes wait in the queue: the next pass runs even before its interval.
static PENDING: AtomicBool = AtomicBool::new(false);
/// The shell is open (or attached to a VM, or running `top`): typed bytes matter (command
/// lines, a paste into a guest), so the receiver is read on time even while a vCPU runs.
static OPEN: AtomicBool = AtomicBool::new(false);
/// Ticks between two passes of the shell, and between two reads while nobody types: a quarter
/// of the time the receive FIFO takes to fill at 115200 baud (the first bytes of new input fit
/// the FIFO; an idle console-draining CPU wakes for them).
static PASS_INTERVAL: AtomicU64 = AtomicU64::new(0);
/// Ticks between two reads while input is active ([`active`]): an eighth of the FIFO's fill
/// time. A UART on a wire fills it no faster than the baud rate; an emulator may (Bochs's
/// COM1 on a terminal delivered 16 bytes in 19,000 TSC ticks at 50 MHz, 3.7 times the baud
/// rate, and drops what finds the FIFO full, or delivers it again out of order).
static ACTIVE_INTERVAL: AtomicU64 = AtomicU64::new(0);
/// Ticks between two reads while bytes keep arriving (a paste): a 32nd of the FIFO's fill
/// time (under one byte time at Bochs's rate), only until a read finds nothing.
static BURST_INTERVAL: AtomicU64 = AtomicU64::new(0);
/// [`PASS_INTERVAL`] in FIFO fill times.
const PASSES_PER_FILL: u64 = 4;
/// [`ACTIVE_INTERVAL`] in FIFO fill times.
const ACTIVE_READS_PER_FILL: u64 = 8;
/// [`BURST_INTERVAL`] in FIFO fill times.
const BURST_READS_PER_FILL: u64 = 32;

/// Tells the shell the TSC rate (its reading intervals follow from the baud rate).
pub fn set_tsc_hz(tsc_hz: u64) {
    TSC_HZ.store(tsc_hz, Ordering::Relaxed);
    let fill = crate::serial::fifo_drain_ticks(tsc_hz);
    PASS_INTERVAL.store(fill / PASSES_PER_FILL, Ordering::Relaxed);
    ACTIVE_INTERVAL.store(fill / ACTIVE_READS_PER_FILL, Ordering::Relaxed);
    BURST_INTERVAL.store(fill / BURST_READS_PER_FILL, Ordering::Relaxed);
}

/// Input is active: the shell is open, or a byte arrived in the last second of TSC time.
#[inline]
fn active(now: u64) -> bool {
    let last = LAST_INPUT.load(Ordering::Relaxed);
    OPEN.load(Ordering::Relaxed)
        || (last != 0 && now.saturating_sub(last) < TSC_HZ.load(Ordering::Relaxed))
}

/// When console input is next read or processed (TSC): an idle console-draining CPU wakes for
/// it (idle.rs), so the UART's receive FIFO does not overrun.
pub fn next_poll() -> u64 {
    NEXT_POLL.load(Ordering::Relaxed)
}

/// Runs the next pass at the console CPU's next look, not a polling interval later (a
/// snapshot being taken in steps, vmm::snapshot).
pub fn pass_soon() {
    PENDING.store(true, Ordering::Relaxed);
    NEXT_POLL.store(0, Ordering::Relaxed);
}

/// Reads console input and runs the shell if its polling interval has passed or input waits
/// in the queue; otherwise reads the FIFO if a read is due (three atomic loads when nothing
/// is). Only the console-draining CPU calls it.
pub fn poll_if_due(now: u64) {
    if now < NEXT_POLL.load(Ordering::Relaxed) && !PENDING.load(Ordering::Relaxed) {
        // A read may be due before the pass (bytes arriving): the FIFO into the queue.
        receive_if_due(now);
        return;
    }
    let interval = if active(now) {
        &ACTIVE_INTERVAL
    } else {
        &PASS_INTERVAL
    };
    schedule(&NEXT_POLL, now, interval);
    receive(now);
    let Some(mut shell) = SHELL.try_lock() else {
        return;
    };
    shell.service();
    let Some(mut queue) = INPUT.try_lock() else {
        return;
    };
    shell.pass(&mut queue);
    PENDING.store(!queue.is_empty(), Ordering::Relaxed);
    OPEN.store(
        shell.mux.mode() != vm::shell::Mode::Guests,
        Ordering::Relaxed,
    );
}

/// Until when a guest's slice on the console-draining CPU may run before console input is
/// read: the next read while input is active (the shell open, or a byte in the last second),
/// so the UART's 16-byte receive FIFO does not overrun during a long slice; no limit
/// otherwise (then input waits for the slice's end, its first FIFO's worth kept). COM1's
/// receive interrupt ([`receive_interrupt`]) does the same where it reaches the CPU (Bochs
/// 2.7 takes external-interrupt exits only while the guest has RFLAGS.IF = 1).
#[inline]
pub fn slice_deadline(now: u64) -> u64 {
    // Called with a VM's lock held: nothing here may take one.
    if active(now) {
        NEXT_RX.load(Ordering::Relaxed)
    } else {
        u64::MAX
    }
}

/// Inside a guest's slice (at an exit, the VM's lock held): the UART's FIFO into the queue if
/// its reading interval has passed (one atomic load otherwise). Nothing is processed here: the
/// bytes wait for the next pass between slices ([`poll_if_due`]), which may need a VM's lock.
#[inline]
pub fn receive_if_due(now: u64) {
    if now < NEXT_RX.load(Ordering::Relaxed) {
        return;
    }
    receive(now);
}

/// COM1's receive interrupt (an external-interrupt exit on the boot CPU): the UART's FIFO
/// into the input queue now, so a long slice cannot overrun it; the bytes are processed at
/// the next pass.
pub fn receive_interrupt() {
    receive(arch::rdtsc());
}

/// Takes COM1's receive interrupt when the boot CPU serves the console (the 8259A delivers
/// it there); otherwise console input is polled only.
pub fn use_receive_interrupt() -> bool {
    if crate::serial::enable_receive_interrupt() {
        crate::host_irq::unmask(crate::host_irq::COM1_IRQ);
        return true;
    }
    false
}

/// The UART's receive FIFO into the input queue (bytes beyond its bound are dropped and
/// counted), and when to read it next: soon while bytes keep coming, an eighth of a fill time
/// while input is active, a quarter otherwise.
fn receive(now: u64) {
    let Some(mut queue) = INPUT.try_lock() else {
        return;
    };
    let mut rx = [0u8; RX_FIFO];
    let n = crate::serial::receive(&mut rx);
    for &b in &rx[..n] {
        queue.push(b);
    }
    if n > 0 {
        LAST_INPUT.store(now.max(1), Ordering::Relaxed);
        PENDING.store(true, Ordering::Relaxed);
    }
    let interval = if n > 0 {
        &BURST_INTERVAL
    } else if active(now) {
        &ACTIVE_INTERVAL
    } else {
        &PASS_INTERVAL
    };
    schedule(&NEXT_RX, now, interval);
}

/// Sets `next` to `interval` ticks after `now`.
fn schedule(next: &AtomicU64, now: u64, interval: &AtomicU64) {
    next.store(
        now.saturating_add(interval.load(Ordering::Relaxed)),
        Ordering::Relaxed,
    );
}

/// A new, empty prompt.
fn prompt() {
    crate::serial::shell_line(&[PROMPT.as_bytes()]);
}

impl Shell {
    /// One pass: pending starts served, then a bounded number of queued bytes processed.
    /// The pass's work besides input: VMs to rebuild (a restart, a restore, a clone's start)
    /// and snapshot steps, each up to a timeslice or more. It runs without the input queue's
    /// lock, so the receiver is still read meanwhile (`receive` skips a read while the lock is
    /// held, and the UART's 16-byte FIFO overruns in 1.4 ms at 115200 baud).
    fn service(&mut self) {
        for started in shell_ops::service_starts() {
            match started {
                // A guest's reboot: restart.rs said so in the VM's own lines.
                shell_ops::Started::Started { reboot: true, .. } => {}
                shell_ops::Started::Started {
                    name,
                    vcpus,
                    from_snapshot,
                    ..
                } => {
                    let from = if from_snapshot {
                        "a snapshot"
                    } else {
                        "its configuration"
                    };
                    println!("[shell] vm {name}: started again from {from} ({vcpus} vCPU(s))");
                }
                shell_ops::Started::Failed {
                    name,
                    error,
                    reboot: true,
                } => {
                    log::error!("vm {name}: cannot start again after its reboot: {error}");
                }
                shell_ops::Started::Failed { name, error, .. } => {
                    println!("[shell] vm {name}: cannot start: {error}");
                }
            }
        }
        for taken in crate::vmm::snapshot::service() {
            match taken {
                Taken::Taken {
                    name,
                    vm,
                    vcpus,
                    memory,
                    data_pages,
                    bytes,
                    paused_ticks,
                } => println!(
                    "[shell] snapshot {name} of vm {vm}: {vcpus} vCPU(s), {} MiB RAM ({data_pages} pages not zero), {} KiB held, paused {} us",
                    memory >> 20,
                    bytes / 1024,
                    paused_ticks.saturating_mul(1_000_000) / shell_ops::tsc_hz().max(1)
                ),
                Taken::Failed { name, vm, error } => {
                    println!("[shell] snapshot {name} of vm {vm} not taken: {error}")
                }
            }
        }
    }

    fn pass(&mut self, queue: &mut InputQueue) {
        self.mux.stats.queue_overflow = queue.dropped;
        self.mux.stats.skipped_for_escape = queue.skipped;
        self.mux.stats.uart_overruns = crate::serial::rx_overruns();
        if self.mux.mode() == vm::shell::Mode::Top {
            self.top_if_due();
        }
        for _ in 0..vm::shell::BYTES_PER_PASS {
            let Some(byte) = queue.peek() else { break };
            if let Some(vm) = self.mux.attached() {
                if byte != vm::shell::ESCAPE {
                    match shell_ops::console_input(vm, byte) {
                        Ok(()) => {}
                        // The guest has not read its FIFO yet: the byte waits in the queue,
                        // unless the escape key is queued behind it (never held back).
                        Err(OpError::UartFull) => {
                            if queue.skip_to_escape() > 0 {
                                continue;
                            }
                            break;
                        }
                        Err(e) => {
                            queue.pop();
                            self.mux.feed(vm::shell::ESCAPE);
                            self.detach(vm);
                            println!("[shell] detached: {e}");
                            prompt();
                            continue;
                        }
                    }
                }
            }
            queue.pop();
            match self.mux.feed(byte) {
                Step::Nothing | Step::ToGuest { .. } => {}
                Step::Opened => {
                    println!();
                    println!("[shell] bulkhead shell: `help` lists the commands, Ctrl-A closes it");
                    prompt();
                }
                Step::Closed => {
                    crate::serial::close_open_line();
                    println!("[shell] closed");
                }
                // The prompt and the line as it is now: the terminal gets what changed.
                Step::Echo(_) | Step::Erase(_) => {
                    crate::serial::shell_line(&[PROMPT.as_bytes(), self.mux.line().as_bytes()])
                }
                Step::TopEnded => {
                    self.top.clear();
                    println!("[shell] top ended");
                    prompt();
                }
                Step::Detached(vm) => {
                    self.detach(vm);
                    println!("[shell] detached from vm {}", name_of(vm));
                    prompt();
                }
                Step::Line => {
                    crate::serial::finish_shell_line();
                    let line = String::from(self.mux.line());
                    self.run(&line);
                    if self.mux.mode() == vm::shell::Mode::Shell {
                        prompt();
                    }
                }
            }
        }
        match self.mux.mode() {
            // The guest's echo of what was typed, as it comes.
            vm::shell::Mode::Console(vm) => {
                shell_ops::show_unfinished(vm, &mut self.seen);
                crate::serial::redraw_open_line();
            }
            vm::shell::Mode::Shell => crate::serial::redraw_open_line(),
            vm::shell::Mode::Guests | vm::shell::Mode::Top => {}
        }
    }

    /// The terminal is no longer attached to `vm`: its completed lines are printed whole
    /// again; its unfinished line stays on the terminal as it is.
    fn detach(&mut self, vm: usize) {
        shell_ops::set_attached(vm, false);
        self.seen = None;
        crate::serial::close_open_line();
    }

    fn run(&mut self, line: &str) {
        let names = shell_ops::names();
        let vms: Vec<VmName<'_>> = names
            .iter()
            .map(|(name, vcpus)| VmName {
                name,
                vcpus: *vcpus,
            })
            .collect();
        let command = match parse(line, &vms) {
            Ok(c) => c,
            Err(e) => {
                println!("{e}");
                return;
            }
        };
        let mut out = String::new();
        match command {
            Command::Empty => {}
            Command::Help => {
                let _ = commands::help(&mut out);
            }
            Command::Vms => {
                let _ = commands::vms(&shell_ops::rows(), shell_ops::tsc_hz(), &mut out);
                let _ = commands::input_line(&self.mux.stats, &mut out);
            }
            Command::Stats(vm) => match shell_ops::stats(vm) {
                Ok(view) => {
                    let _ = commands::stats(&view, shell_ops::tsc_hz(), &mut out);
                }
                Err(e) => out = alloc::format!("error: {e}\n"),
            },
            Command::Console(vm) => {
                if shell_ops::stopped(vm) {
                    out = alloc::format!("error: {}\n", OpError::Stopped);
                } else {
                    self.mux.attach(vm);
                    shell_ops::set_attached(vm, true);
                    self.seen = None;
                    out = alloc::format!(
                        "[shell] attached to vm {} (Ctrl-A detaches)\n",
                        vms[vm].name
                    );
                }
            }
            Command::Stop(vm) => match shell_ops::stop(vm) {
                Ok(shell_ops::Stopped::Stopping) => {
                    out = alloc::format!("[shell] stopping vm {}\n", vms[vm].name)
                }
                Ok(shell_ops::Stopped::RebootCancelled) => {
                    out = alloc::format!(
                        "[shell] vm {} stays stopped (its start after the guest's reboot is cancelled)\n",
                        vms[vm].name
                    )
                }
                Err(e) => out = alloc::format!("error: {e}\n"),
            },
            Command::Log(level) => {
                log::set_max_level(filter(level));
                out = alloc::format!("[shell] log level {}\n", level.name());
            }
            Command::Exit => {
                self.mux.close();
                out = "[shell] closed\n".into();
            }
            Command::Top => {
                // The first refresh one interval from now, against this sample.
                self.top = shell_ops::samples();
                self.next_top = arch::rdtsc().saturating_add(top_interval());
                self.mux.start_top();
                out = "[shell] top: a refresh every second; any key ends it\n".into();
            }
            Command::Regs { vm, vcpu } => match shell_ops::regs(vm, vcpu) {
                Ok(snap) => {
                    let header = regs::RegsHeader {
                        vm: vms[vm].name,
                        vcpu,
                        state: snap.state,
                        cpu: snap.cpu,
                        now: arch::rdtsc(),
                    };
                    let _ = regs::regs(&header, &snap.regs, shell_ops::tsc_hz(), &mut out);
                }
                Err(e) => out = alloc::format!("error: {e}\n"),
            },
            Command::Start(vm) => match shell_ops::start(vm) {
                Ok(()) => out = alloc::format!("[shell] starting vm {}\n", vms[vm].name),
                Err(e) => out = alloc::format!("error: {e}\n"),
            },
            Command::Restart(vm) => match shell_ops::restart(vm) {
                Ok(()) => out = alloc::format!("[shell] restarting vm {}\n", vms[vm].name),
                Err(e) => out = alloc::format!("error: {e}\n"),
            },
            Command::Snapshot { vm, name } => match snapshot::request(vm, name) {
                Ok(()) => {
                    out = alloc::format!(
                        "[shell] pausing vm {} for snapshot {name}\n",
                        vms[vm].name
                    )
                }
                Err(e) => out = alloc::format!("error: {e}\n"),
            },
            Command::Snapshots => {
                let held = snapshot::list();
                if held.is_empty() {
                    out = "[shell] no snapshots\n".into();
                }
                for line in held {
                    out.push_str(&line);
                    out.push('\n');
                }
            }
            Command::Restore { name, vm } => match snapshot::restore(name, vm) {
                Ok(()) => {
                    out = alloc::format!(
                        "[shell] restoring vm {} from snapshot {name}\n",
                        vms[vm].name
                    )
                }
                Err(e) => out = alloc::format!("error: {e}\n"),
            },
            Command::Clone { name, count } => match snapshot::clone_many(name, count) {
                Ok(started) => {
                    out = alloc::format!(
                        "[shell] starting {} clone(s) of snapshot {name}: {}\n",
                        started.len(),
                        started.join(" ")
                    )
                }
                Err(e) => out = alloc::format!("error: {e}\n"),
            },
            Command::Forget(name) => match snapshot::forget(name) {
                Ok(bytes) => {
                    out = alloc::format!(
                        "[shell] snapshot {name} dropped ({} KiB freed)\n",
                        bytes / 1024
                    )
                }
                Err(e) => out = alloc::format!("error: {e}\n"),
            },
        }
        crate::serial::print(format_args!("{out}"));
    }
}

impl Shell {
    /// One `top` refresh when its interval has passed (bounded: one line per VM).
    fn top_if_due(&mut self) {
        let now = arch::rdtsc();
        if now < self.next_top {
            return;
        }
        self.next_top = now.saturating_add(top_interval());
        let sample = shell_ops::samples();
        let mut out = String::new();
        let _ = top::refresh(&self.top, &sample, shell_ops::tsc_hz(), &mut out);
        self.top = sample;
        crate::serial::print(format_args!("{out}"));
    }
}

/// TSC ticks between two `top` refreshes.
fn top_interval() -> u64 {
    shell_ops::tsc_hz().saturating_mul(top::REFRESH_MS) / 1000
}

fn name_of(vm: usize) -> String {
    shell_ops::names()
        .into_iter()
        .nth(vm)
        .map_or_else(|| "?".into(), |(n, _)| n)
}

fn filter(level: LogLevel) -> log::LevelFilter {
    match level {
        LogLevel::Off => log::LevelFilter::Off,
        LogLevel::Error => log::LevelFilter::Error,
        LogLevel::Warn => log::LevelFilter::Warn,
        LogLevel::Info => log::LevelFilter::Info,
        LogLevel::Debug => log::LevelFilter::Debug,
        LogLevel::Trace => log::LevelFilter::Trace,
    }
}
