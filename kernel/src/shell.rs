//! The hypervisor shell on COM1 (issue 17; docs/architecture.md, "Hypervisor shell"): the
//! console-draining CPU polls the UART's receiver from its scheduling loop (between slices and
//! while idle, never in an exit handler), queues what arrived (bounded: beyond it bytes are
//! dropped and counted) and hands at most [`vm::shell::BYTES_PER_PASS`] bytes per pass to the
//! multiplexer ([`vm::shell::Mux`]); commands run here and print through the console queue.
//! Ctrl-A opens the shell; `console VM` sends every byte to that VM's UART until Ctrl-A.

use crate::vmm::shell_ops::{self, OpError};
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
    queue: InputQueue,
    /// `top`: the last sample and when the next refresh is due (TSC).
    top: Vec<Sample>,
    next_top: u64,
}

static SHELL: Mutex<Shell> = Mutex::new(Shell {
    mux: Mux::new(),
    queue: InputQueue::new(),
    top: Vec::new(),
    next_top: 0,
});
/// The TSC rate (input counts as recent for one second of it).
static TSC_HZ: AtomicU64 = AtomicU64::new(0);
/// When the receiver is next read (TSC).
static NEXT_POLL: AtomicU64 = AtomicU64::new(0);
/// When the receiver is next read inside a guest's slice (TSC; [`receive_if_due`]).
static NEXT_RECEIVE: AtomicU64 = AtomicU64::new(0);
/// When console input last arrived (TSC).
static LAST_INPUT: AtomicU64 = AtomicU64::new(0);
/// Bytes wait in the queue: the next pass runs even before its interval.
static PENDING: AtomicBool = AtomicBool::new(false);
/// The shell is open (or attached to a VM, or running `top`): it reads input promptly.
static OPEN: AtomicBool = AtomicBool::new(false);
/// Ticks between two reads while nobody types: a quarter of the time the receive FIFO takes
/// to fill at 115200 baud (the first bytes of new input then fit the FIFO).
static POLL_INTERVAL: AtomicU64 = AtomicU64::new(0);
/// Ticks between two reads while input is active ([`active`]): a sixteenth. A quarter would
/// do on a real UART; emulators deliver input faster than the baud rate (Bochs 2.7: 16 bytes
/// in about 19,000 ticks against 69,000 nominal, 3.7x), and what finds the FIFO full is
/// lost, or in Bochs may come again out of order.
static ACTIVE_INTERVAL: AtomicU64 = AtomicU64::new(0);

/// Tells the shell the TSC rate (its polling interval follows from the baud rate).
pub fn set_tsc_hz(tsc_hz: u64) {
    TSC_HZ.store(tsc_hz, Ordering::Relaxed);
    let fill = crate::serial::fifo_drain_ticks(tsc_hz);
    POLL_INTERVAL.store(fill / 4, Ordering::Relaxed);
    ACTIVE_INTERVAL.store(fill / 16, Ordering::Relaxed);
}

/// Input is active: the shell is open, or a byte arrived in the last second of TSC time.
fn active(now: u64) -> bool {
    let last = LAST_INPUT.load(Ordering::Relaxed);
    OPEN.load(Ordering::Relaxed)
        || (last != 0 && now.saturating_sub(last) < TSC_HZ.load(Ordering::Relaxed))
}

/// Ticks until the next read: [`ACTIVE_INTERVAL`] while input is active, else
/// [`POLL_INTERVAL`].
fn interval(now: u64) -> u64 {
    if active(now) {
        ACTIVE_INTERVAL.load(Ordering::Relaxed)
    } else {
        POLL_INTERVAL.load(Ordering::Relaxed)
    }
}

/// When console input is next read (TSC): an idle console-draining CPU wakes for it
/// (idle.rs), so the UART's receive FIFO never overruns.
pub fn next_poll() -> u64 {
    NEXT_POLL.load(Ordering::Relaxed)
}

/// Reads console input and runs the shell if its polling interval has passed or input waits
/// in the queue: two atomic loads otherwise. Only the console-draining CPU calls it.
pub fn poll_if_due(now: u64) {
    if now < NEXT_POLL.load(Ordering::Relaxed) && !PENDING.load(Ordering::Relaxed) {
        return;
    }
    NEXT_POLL.store(now.saturating_add(interval(now)), Ordering::Relaxed);
    let Some(mut shell) = SHELL.try_lock() else {
        return;
    };
    shell.pass();
}

/// Until when a guest's slice on the console-draining CPU may run before console input is
/// read: the next read while input is active (the shell open, or a byte in the last second),
/// so the UART's 16-byte receive FIFO does not overrun during a long slice; no limit
/// otherwise (then input waits for the slice's end, its first FIFO's worth kept). COM1's
/// receive interrupt ([`receive_interrupt`]) does the same where it reaches the CPU (Bochs
/// 2.7 takes external-interrupt exits only while the guest has RFLAGS.IF = 1).
pub fn slice_deadline(now: u64) -> u64 {
    // Called with a VM's lock held: nothing here may take one.
    if active(now) {
        NEXT_RECEIVE.load(Ordering::Relaxed)
    } else {
        u64::MAX
    }
}

/// Inside a guest's slice (at an exit, the VM's lock held): the UART's FIFO into the queue if
/// its reading interval has passed. Nothing is processed here: the bytes wait for the next
/// pass between slices ([`poll_if_due`]), which may need a VM's lock.
pub fn receive_if_due(now: u64) {
    if now < NEXT_RECEIVE.load(Ordering::Relaxed) {
        return;
    }
    NEXT_RECEIVE.store(now.saturating_add(interval(now)), Ordering::Relaxed);
    if let Some(mut shell) = SHELL.try_lock() {
        shell.receive();
    }
}

/// COM1's receive interrupt (an external-interrupt exit on the boot CPU): the UART's FIFO
/// into the input queue now, so a long slice cannot overrun it; the bytes are processed at
/// the next polling pass. If another CPU holds the shell, its pass reads the FIFO instead.
pub fn receive_interrupt() {
    if let Some(mut shell) = SHELL.try_lock() {
        shell.receive();
    }
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

impl Shell {
    /// The UART's receive FIFO into the queue (bytes beyond its bound are dropped and
    /// counted).
    fn receive(&mut self) {
        let mut rx = [0u8; RX_FIFO];
        let n = crate::serial::receive(&mut rx);
        for &b in &rx[..n] {
            self.queue.push(b);
        }
        if n > 0 {
            LAST_INPUT.store(arch::rdtsc().max(1), Ordering::Relaxed);
            PENDING.store(true, Ordering::Relaxed);
        }
    }

    /// One pass: pending starts served, the UART's FIFO into the queue, then a bounded
    /// number of bytes processed.
    fn pass(&mut self) {
        for started in shell_ops::service_starts() {
            match started {
                shell_ops::Started::Started { name, vcpus } => {
                    println!(
                        "[shell] vm {name}: started again from its configuration ({vcpus} vCPU(s))"
                    );
                }
                shell_ops::Started::Failed { name, error } => {
                    println!("[shell] vm {name}: cannot start: {error}");
                }
            }
        }
        self.receive();
        self.mux.stats.queue_overflow = self.queue.dropped;
        self.mux.stats.skipped_for_escape = self.queue.skipped;
        self.mux.stats.uart_overruns = crate::serial::rx_overruns();
        if self.mux.mode() == vm::shell::Mode::Top {
            self.top_if_due();
        }
        for _ in 0..vm::shell::BYTES_PER_PASS {
            let Some(byte) = self.queue.peek() else { break };
            if let Some(vm) = self.mux.attached() {
                if byte != vm::shell::ESCAPE {
                    match shell_ops::console_input(vm, byte) {
                        Ok(()) => {}
                        // The guest has not read its FIFO yet: the byte waits in the queue,
                        // unless the escape key is queued behind it (never held back).
                        Err(OpError::UartFull) => {
                            if self.queue.skip_to_escape() > 0 {
                                continue;
                            }
                            break;
                        }
                        Err(e) => {
                            self.queue.pop();
                            self.mux.feed(vm::shell::ESCAPE);
                            println!("\r\n[shell] detached: {e}");
                            crate::serial::print(format_args!("{PROMPT}"));
                            continue;
                        }
                    }
                }
            }
            self.queue.pop();
            match self.mux.feed(byte) {
                Step::Nothing | Step::ToGuest { .. } => {}
                Step::Opened => {
                    println!();
                    println!("[shell] bulkhead shell: `help` lists the commands, Ctrl-A closes it");
                    crate::serial::print(format_args!("{PROMPT}"));
                }
                Step::Closed => println!("\r\n[shell] closed"),
                Step::Echo(b) => crate::serial::print(format_args!("{}", b as char)),
                Step::Erase(n) => {
                    for _ in 0..n {
                        crate::serial::print(format_args!("\x08 \x08"));
                    }
                }
                Step::TopEnded => {
                    self.top.clear();
                    println!("[shell] top ended");
                    crate::serial::print(format_args!("{PROMPT}"));
                }
                Step::Detached(vm) => {
                    println!();
                    println!("[shell] detached from vm {}", name_of(vm));
                    crate::serial::print(format_args!("{PROMPT}"));
                }
                Step::Line => {
                    println!();
                    let line = String::from(self.mux.line());
                    self.run(&line);
                    if self.mux.mode() == vm::shell::Mode::Shell {
                        crate::serial::print(format_args!("{PROMPT}"));
                    }
                }
            }
        }
        PENDING.store(!self.queue.is_empty(), Ordering::Relaxed);
        OPEN.store(
            self.mux.mode() != vm::shell::Mode::Guests,
            Ordering::Relaxed,
        );
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
                    out = alloc::format!(
                        "[shell] attached to vm {} (Ctrl-A detaches)\n",
                        vms[vm].name
                    );
                }
            }
            Command::Stop(vm) => match shell_ops::stop(vm) {
                Ok(()) => out = alloc::format!("[shell] stopping vm {}\n", vms[vm].name),
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
