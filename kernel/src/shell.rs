//! The hypervisor shell on COM1 (issue 17; docs/architecture.md, "Hypervisor shell"): the
//! console-draining CPU polls the UART's receiver from its scheduling loop (between slices and
//! while idle, never in an exit handler), queues what arrived (bounded: beyond it bytes are
//! dropped and counted) and hands at most [`vm::shell::BYTES_PER_PASS`] bytes per pass to the
//! multiplexer ([`vm::shell::Mux`]); commands run here and print through the console queue.
//! Ctrl-A opens the shell; `console VM` sends every byte to that VM's UART until Ctrl-A.

use crate::println;
use crate::vmm::shell_ops::{self, OpError};
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};
use spin::Mutex;
use vm::shell::{commands, parse, Command, InputQueue, LogLevel, Mux, Step, VmName, PROMPT};

/// The 16550's receive FIFO: at most this many bytes arrive between two reads that matter.
const RX_FIFO: usize = 16;

struct Shell {
    mux: Mux,
    queue: InputQueue,
}

static SHELL: Mutex<Shell> = Mutex::new(Shell {
    mux: Mux::new(),
    queue: InputQueue::new(),
});
/// When the receiver is next read (TSC).
static NEXT_POLL: AtomicU64 = AtomicU64::new(0);
/// Ticks between two reads: a quarter of the time the receive FIFO takes to fill at 115200
/// baud, so nothing overruns it.
static POLL_INTERVAL: AtomicU64 = AtomicU64::new(0);

/// Tells the shell the TSC rate (its polling interval follows from the baud rate).
pub fn set_tsc_hz(tsc_hz: u64) {
    POLL_INTERVAL.store(
        crate::serial::fifo_drain_ticks(tsc_hz) / 4,
        Ordering::Relaxed,
    );
}

/// Reads console input and runs the shell if its polling interval has passed: one atomic
/// load otherwise. Only the console-draining CPU calls it.
pub fn poll_if_due(now: u64) {
    if now < NEXT_POLL.load(Ordering::Relaxed) {
        return;
    }
    NEXT_POLL.store(
        now.saturating_add(POLL_INTERVAL.load(Ordering::Relaxed)),
        Ordering::Relaxed,
    );
    let Some(mut shell) = SHELL.try_lock() else {
        return;
    };
    shell.pass();
}

impl Shell {
    /// One pass: the UART's FIFO into the queue, then a bounded number of bytes processed.
    fn pass(&mut self) {
        let mut rx = [0u8; RX_FIFO];
        let n = crate::serial::receive(&mut rx);
        for &b in &rx[..n] {
            self.queue.push(b);
        }
        self.mux.stats.queue_overflow = self.queue.dropped;
        for _ in 0..vm::shell::BYTES_PER_PASS {
            let Some(byte) = self.queue.peek() else { break };
            if let Some(vm) = self.mux.attached() {
                if byte != vm::shell::ESCAPE {
                    match shell_ops::console_input(vm, byte) {
                        Ok(()) => {}
                        // The guest has not read its FIFO yet: the byte waits in the queue.
                        Err(OpError::UartFull) => break,
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
            Command::Top | Command::Start(_) | Command::Restart(_) | Command::Regs { .. } => {
                let word = line.split_ascii_whitespace().next().unwrap_or("");
                out = alloc::format!("error: `{word}` is not available in this build yet\n");
            }
        }
        crate::serial::print(format_args!("{out}"));
    }
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
