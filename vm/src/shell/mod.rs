//! The hypervisor shell on the serial console (issue 17), minus the hardware: the console-input
//! multiplexer ([`Mux`]), the command parser ([`parse`]) and the formatting of what commands
//! print ([`commands`]). The kernel reads COM1 into an [`InputQueue`] from its idle time (never
//! in an exit handler), feeds a bounded number of bytes per pass to the [`Mux`] and carries out
//! the [`Step`]s it returns.
//!
//! What the operator types:
//! - by default the console shows the guests' output, line-prefixed (`[name] ...`); every byte
//!   but the escape key is ignored (and counted);
//! - [`ESCAPE`] (Ctrl-A, as in QEMU's monitor) opens the shell: a `bulkhead> ` prompt, a line
//!   editor (backspace, Ctrl-U, Enter), commands ([`parse::Command`]); Ctrl-A again (or `exit`)
//!   closes it;
//! - `console VM` attaches the terminal to that VM's UART: every byte goes to the guest until
//!   Ctrl-A detaches (back to the prompt);
//! - `top` refreshes until any key, which only ends it.

pub mod commands;
pub mod parse;
pub mod regs;
#[cfg(test)]
mod session_tests;
#[cfg(test)]
mod tests;
pub mod top;

pub use parse::{parse, Command, LogLevel, ParseError, SnapshotName, VmName, MAX_CLONES_AT_ONCE};

/// The escape key: Ctrl-A (ASCII SOH).
pub const ESCAPE: u8 = 0x01;
/// The longest command line kept; bytes typed beyond it are dropped and counted.
pub const MAX_LINE: usize = 128;
/// Bytes the console-input queue holds between two passes of the shell.
pub const INPUT_QUEUE: usize = 256;
/// Bytes the kernel hands the multiplexer per pass: bounded work whatever is pasted.
pub const BYTES_PER_PASS: usize = 64;
/// The prompt.
pub const PROMPT: &str = "bulkhead> ";

const BACKSPACE: u8 = 0x08;
const DELETE: u8 = 0x7f;
const CTRL_U: u8 = 0x15;
const CR: u8 = b'\r';
const LF: u8 = b'\n';

/// Where console input goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The guests' output is shown; input is ignored except the escape key.
    Guests,
    /// The shell's prompt is open.
    Shell,
    /// Attached to VM `n`'s UART (an index into the kernel's VM table).
    Console(usize),
    /// `top` refreshes until any key (which is not passed on).
    Top,
}

/// What the kernel does for one input byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Nothing to show.
    Nothing,
    /// The shell opened: print the banner and the prompt.
    Opened,
    /// The shell closed: guest output resumes.
    Closed,
    /// Echo this byte.
    Echo(u8),
    /// Erase the last `n` characters on the terminal (`"\x08 \x08"` each).
    Erase(usize),
    /// A command line is complete: [`Mux::line`] holds it until the next byte.
    Line,
    /// Send this byte to VM `vm`'s UART.
    ToGuest { vm: usize, byte: u8 },
    /// Detached from VM `vm`: print a note and the prompt.
    Detached(usize),
    /// A key ended `top`: print the prompt.
    TopEnded,
}

/// Counters of console input.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InputStats {
    /// Bytes typed while the guests' output was shown (ignored).
    pub ignored: u64,
    /// Bytes beyond [`MAX_LINE`] on one command line (dropped).
    pub line_overflow: u64,
    /// Bytes that arrived while the [`InputQueue`] was full (dropped).
    pub queue_overflow: u64,
    /// Bytes for an attached guest dropped so the escape key behind them could be read
    /// ([`InputQueue::skipped`]).
    pub skipped_for_escape: u64,
    /// Times the machine's UART lost bytes to a full receive FIFO (input not read in time).
    pub uart_overruns: u64,
    /// Bytes sent to an attached VM.
    pub to_guest: u64,
    /// Command lines entered.
    pub lines: u64,
}

/// The console-input state machine.
#[derive(Debug, Clone)]
pub struct Mux {
    mode: Mode,
    line: [u8; MAX_LINE],
    len: usize,
    /// The last byte was a CR (a following LF belongs to the same Enter).
    after_cr: bool,
    /// [`Mux::line`] was returned: the next byte starts a new line.
    taken: bool,
    pub stats: InputStats,
}

impl Default for Mux {
    fn default() -> Self {
        Self::new()
    }
}

impl Mux {
    pub const fn new() -> Self {
        Mux {
            mode: Mode::Guests,
            line: [0; MAX_LINE],
            len: 0,
            after_cr: false,
            taken: false,
            stats: InputStats {
                ignored: 0,
                line_overflow: 0,
                queue_overflow: 0,
                skipped_for_escape: 0,
                uart_overruns: 0,
                to_guest: 0,
                lines: 0,
            },
        }
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The command line entered (valid right after [`Step::Line`]).
    pub fn line(&self) -> &str {
        // Only printable ASCII is ever stored (see `shell_byte`), so this cannot fail.
        core::str::from_utf8(&self.line[..self.len]).unwrap_or("")
    }

    /// Attaches the terminal to VM `vm` (the `console VM` command).
    pub fn attach(&mut self, vm: usize) {
        self.mode = Mode::Console(vm);
    }

    /// Starts `top`: the next key ends it.
    pub fn start_top(&mut self) {
        self.mode = Mode::Top;
    }

    /// Closes the shell (the `exit` command).
    pub fn close(&mut self) {
        self.mode = Mode::Guests;
    }

    /// The VM the terminal is attached to, if any.
    pub fn attached(&self) -> Option<usize> {
        match self.mode {
            Mode::Console(vm) => Some(vm),
            _ => None,
        }
    }

    /// Takes one input byte.
    pub fn feed(&mut self, byte: u8) -> Step {
        match self.mode {
            Mode::Guests => {
                if byte == ESCAPE {
                    self.open()
                } else {
                    self.stats.ignored += 1;
                    Step::Nothing
                }
            }
            Mode::Console(vm) => {
                if byte == ESCAPE {
                    self.mode = Mode::Shell;
                    self.len = 0;
                    Step::Detached(vm)
                } else {
                    self.stats.to_guest += 1;
                    Step::ToGuest { vm, byte }
                }
            }
            Mode::Top => {
                self.mode = Mode::Shell;
                self.len = 0;
                self.taken = false;
                Step::TopEnded
            }
            Mode::Shell => self.shell_byte(byte),
        }
    }

    fn open(&mut self) -> Step {
        self.mode = Mode::Shell;
        self.len = 0;
        self.after_cr = false;
        self.taken = false;
        Step::Opened
    }

    fn shell_byte(&mut self, byte: u8) -> Step {
        // The line returned with the last `Step::Line` is over: this byte starts a new one.
        if core::mem::take(&mut self.taken) {
            self.len = 0;
        }
        let after_cr = core::mem::replace(&mut self.after_cr, byte == CR);
        match byte {
            ESCAPE => {
                self.mode = Mode::Guests;
                self.len = 0;
                Step::Closed
            }
            // CR LF is one Enter.
            LF if after_cr => Step::Nothing,
            CR | LF => {
                self.stats.lines += u64::from(self.len > 0);
                self.taken = true;
                Step::Line
            }
            BACKSPACE | DELETE => {
                let erase = usize::from(self.len > 0);
                self.len -= erase;
                Step::Erase(erase)
            }
            CTRL_U => Step::Erase(core::mem::take(&mut self.len)),
            b' '..=b'~' => {
                if self.len == MAX_LINE {
                    self.stats.line_overflow += 1;
                    return Step::Nothing;
                }
                self.line[self.len] = byte;
                self.len += 1;
                Step::Echo(byte)
            }
            // Other control bytes and non-ASCII: not part of a command.
            _ => Step::Nothing,
        }
    }
}

/// The bounded queue between the UART's receiver and the shell: bytes that arrive while it is
/// full are dropped and counted, so an operator pasting a large input costs bounded work.
#[derive(Debug)]
pub struct InputQueue {
    ring: crate::console::ByteRing<INPUT_QUEUE>,
    pub dropped: u64,
    /// Bytes for an attached guest dropped because the escape key came behind them while the
    /// guest's UART had no room ([`InputQueue::skip_to_escape`]).
    pub skipped: u64,
    /// [`ESCAPE`] bytes in the queue.
    escapes: usize,
}

impl Default for InputQueue {
    fn default() -> Self {
        Self::new()
    }
}

impl InputQueue {
    pub const fn new() -> Self {
        InputQueue {
            ring: crate::console::ByteRing::new(),
            dropped: 0,
            skipped: 0,
            escapes: 0,
        }
    }

    /// Queues `byte`, or drops and counts it when the queue is full. The escape key always
    /// gets in: when the queue is full (an attached guest that does not read its UART, a
    /// paste), the bytes queued before it are dropped and counted in `skipped`, as
    /// [`InputQueue::skip_to_escape`] would drop them once it is queued.
    pub fn push(&mut self, byte: u8) -> bool {
        if byte == ESCAPE && self.ring.free() == 0 {
            let n = self.ring.len();
            self.ring.consume(n);
            self.skipped += n as u64;
            self.escapes = 0;
        }
        let ok = self.ring.push(&[byte]);
        if !ok {
            self.dropped += 1;
        } else if byte == ESCAPE {
            self.escapes += 1;
        }
        ok
    }

    /// Room left.
    pub fn free(&self) -> usize {
        self.ring.free()
    }

    pub fn len(&self) -> usize {
        self.ring.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ring.is_empty()
    }

    /// The oldest byte, left queued (a byte the attached guest's UART has no room for waits).
    pub fn peek(&self) -> Option<u8> {
        self.ring.front().first().copied()
    }

    /// Drops the oldest byte.
    pub fn pop(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.ring.consume(1);
        if b == ESCAPE {
            self.escapes -= 1;
        }
        Some(b)
    }

    /// When an [`ESCAPE`] is queued, drops (and counts in `skipped`) the bytes before it, so
    /// the escape key is next: the operator can always detach from a guest that does not read
    /// its UART, whose bytes would otherwise hold the key back for good. Returns how many
    /// bytes were dropped (0 when no escape is queued; nothing changes then).
    pub fn skip_to_escape(&mut self) -> usize {
        if self.escapes == 0 {
            return 0;
        }
        let mut n = 0;
        while self.peek() != Some(ESCAPE) {
            self.pop();
            n += 1;
        }
        self.skipped += n as u64;
        n
    }
}
