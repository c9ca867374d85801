//! COM1 console (a 16550 through the `uart_16550` crate) behind the `log` facade, with a TSC
//! timestamp on every line.
//!
//! Nothing on the VM exit path waits for the UART (docs/architecture.md, "Console"): all
//! output goes into one bounded queue ([`vm::console::ByteRing`]) in order, and [`pump`] moves
//! at most one transmit FIFO's worth (16 bytes) to the UART when its transmitter is empty. The
//! scheduler pumps between slices, while idle, and on a preemption-timer deadline while bytes
//! wait, like a transmit interrupt would. Guest console lines are admitted only while the
//! queue has room beyond [`HYPERVISOR_RESERVE`] (else the caller drops and counts them);
//! the hypervisor's own text is never dropped: when the queue is full it drains synchronously.
//!
//! The terminal's unfinished line, the shell's prompt or the attached VM's console line as it
//! grows ([`vm::console::OpenLine`]), is kept with the queue under its lock: every other
//! output is queued at the start of a line (the open line ended with CR LF first), and the
//! shell shows the open line again on its next pass ([`redraw_open_line`]).

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicU64, Ordering};
use spin::Mutex;
use uart_16550::backend::PioBackend;
use uart_16550::spec::registers::{IER, LSR};
use uart_16550::{Config, Uart16550};
use vm::console::{ByteRing, LineOwner, OpenLine, OPEN_LINE_OUTPUT};

/// COM1's base I/O port on PC-compatible machines.
const COM1: u16 = 0x3f8;
/// The output queue: 64 KiB, about 5.7 s of output at 115200 baud.
const QUEUE_BYTES: usize = 64 * 1024;
/// Room kept for the hypervisor's own lines: guest lines are refused when less is free.
pub const HYPERVISOR_RESERVE: usize = QUEUE_BYTES / 4;
/// The 16550's transmit FIFO (bytes written at once when it is empty).
pub const FIFO_BYTES: u64 = 16;
/// Bits per byte on the wire at 8-N-1 (start, 8 data, stop).
const BITS_PER_BYTE: u64 = 10;
pub const BAUD: u64 = 115_200;

static PORT: Mutex<Option<Uart16550<PioBackend>>> = Mutex::new(None);
/// The output queue and the terminal's open line: every byte queued goes through both.
struct Out {
    ring: ByteRing<QUEUE_BYTES>,
    open: OpenLine,
}

impl Out {
    /// Ends the open line on the terminal (CR LF) if it shows it, so what is queued next
    /// starts a line. Needs 2 bytes of room.
    fn interrupt(&mut self) {
        let Out { ring, open } = self;
        open.interrupt(&mut |b| {
            let _ = ring.push(b);
        });
    }

    /// Runs an open-line operation whose output goes into the queue (the caller checked there
    /// is room for [`OPEN_LINE_OUTPUT`] bytes); returns how many bytes it queued.
    fn with_open(&mut self, f: impl FnOnce(&mut OpenLine, &mut dyn FnMut(&[u8]))) -> usize {
        let Out { ring, open } = self;
        let mut queued = 0;
        f(open, &mut |b| {
            if ring.push(b) {
                queued += b.len();
            }
        });
        queued
    }
}

static QUEUE: Mutex<Out> = Mutex::new(Out {
    ring: ByteRing::new(),
    open: OpenLine::new(),
});
/// When [`pump_if_due`] next has work (TSC), `u64::MAX` while nothing is queued.
static NEXT_PUMP: AtomicU64 = AtomicU64::new(u64::MAX);
/// [`fifo_drain_ticks`] of the calibrated TSC (0 until [`set_tsc_hz`]: pump at every call).
static PUMP_INTERVAL: AtomicU64 = AtomicU64::new(0);

/// Tells the console the TSC rate, so [`pump_if_due`] runs once per FIFO drain time.
pub fn set_tsc_hz(tsc_hz: u64) {
    PUMP_INTERVAL.store(fifo_drain_ticks(tsc_hz), Ordering::Relaxed);
}

/// When queued bytes next need a [`pump`] (TSC), if any are queued: the VMM arms the
/// preemption timer for it, as a transmit interrupt would interrupt the guest.
#[inline]
pub fn next_pump() -> Option<u64> {
    let t = NEXT_PUMP.load(Ordering::Relaxed);
    (t != u64::MAX).then_some(t)
}

/// Pumps if bytes wait and the last pump was at least one FIFO drain time ago: one atomic
/// load when there is nothing to do, so the VM exit path can call it every time.
#[inline]
pub fn pump_if_due(now: u64) {
    if now < NEXT_PUMP.load(Ordering::Relaxed) {
        return;
    }
    let more = pump();
    let next = if more {
        now.saturating_add(PUMP_INTERVAL.load(Ordering::Relaxed))
    } else {
        u64::MAX
    };
    NEXT_PUMP.store(next, Ordering::Relaxed);
}

/// Marks queued output as due for the next [`pump_if_due`].
fn mark_pending() {
    let _ = NEXT_PUMP.compare_exchange(u64::MAX, 0, Ordering::Relaxed, Ordering::Relaxed);
}

/// Initialises COM1 at 115200 8-N-1. Output before this call is dropped.
pub fn init() {
    // SAFETY: 0x3f8..0x3ff is COM1 on every PC platform Bulkhead boots on, and only this
    // module touches it (through the PORT mutex) for the kernel's whole lifetime.
    let Ok(mut uart) = (unsafe { Uart16550::new_port(COM1) }) else {
        return;
    };
    let config = Config {
        baud_rate: uart_16550::BaudRate::Baud115200,
        ..Config::DEFAULT
    };
    // A machine without COM1 (some laptops) still boots: output then goes nowhere.
    if uart.init(config).is_ok() {
        *PORT.lock() = Some(uart);
    }
}

/// TSC ticks the UART needs to send one FIFO's worth: how often [`pump`] should run while
/// bytes wait.
pub fn fifo_drain_ticks(tsc_hz: u64) -> u64 {
    tsc_hz.saturating_mul(FIFO_BYTES * BITS_PER_BYTE) / BAUD
}

/// Moves at most one transmit FIFO's worth of queued bytes to the UART, if its transmitter
/// is empty; never waits. Returns whether bytes are still queued.
pub fn pump() -> bool {
    let mut out = QUEUE.lock();
    let q = &mut out.ring;
    if q.is_empty() {
        return false;
    }
    let mut port = PORT.lock();
    let Some(uart) = port.as_mut() else {
        // No UART: the output goes nowhere.
        let n = q.len();
        q.consume(n);
        return false;
    };
    let mut sent = 0;
    // `send_bytes` writes up to a FIFO's worth only when the FIFO is empty (LSR.THRE), so
    // this loop runs at most twice (the front may end at the ring's wrap).
    while sent < FIFO_BYTES as usize && !q.is_empty() {
        let chunk = q.front();
        let want = chunk.len().min(FIFO_BYTES as usize - sent);
        let n = uart.send_bytes(&chunk[..want]);
        q.consume(n);
        sent += n;
        if n < want {
            break;
        }
    }
    !q.is_empty()
}

/// Lets COM1 raise IRQ 4 when bytes arrive (the 16550's "received data available"
/// interrupt: at the FIFO's trigger level or after the character timeout; PC16550D datasheet,
/// "Interrupt Enable Register"; the crate's `init` already set OUT2, which gates the UART's
/// interrupt onto the PC's IRQ line), so console input is read soon even while a guest's
/// slice runs (the shell drains the FIFO in the external-interrupt exit, kernel/src/shell.rs).
/// The transmitter's interrupt stays off: output is paced by the TSC. False without a UART.
pub fn enable_receive_interrupt() -> bool {
    match PORT.lock().as_mut() {
        Some(uart) => {
            uart.enable_interrupts(IER::DATA_READY);
            true
        }
        None => false,
    }
}

/// Receive overruns COM1 reported (LSR bit 1: a byte arrived while its receive FIFO was
/// full and was lost; PC16550D datasheet, "Line Status Register").
static RX_OVERRUNS: AtomicU64 = AtomicU64::new(0);

/// Reads what COM1 has received, at most `buf.len()` bytes (the receive FIFO's), without
/// waiting: polled by the hypervisor shell (kernel/src/shell.rs). Counts the overruns the
/// line status reports ([`rx_overruns`]).
pub fn receive(buf: &mut [u8]) -> usize {
    // try_lock: a CPU printing at this moment holds the port for a FIFO's worth; the shell
    // reads on its next pass instead of waiting.
    match PORT.try_lock() {
        Some(mut port) => port.as_mut().map_or(0, |uart| {
            if uart.lsr().contains(LSR::OVERRUN_ERROR) {
                RX_OVERRUNS.fetch_add(1, Ordering::Relaxed);
            }
            uart.receive_bytes(buf)
        }),
        None => 0,
    }
}

/// How many times COM1 lost received bytes to a full FIFO (each time one byte or more).
pub fn rx_overruns() -> u64 {
    RX_OVERRUNS.load(Ordering::Relaxed)
}

/// Queues `bytes` of hypervisor text at the start of a line (the open line ended first),
/// draining the UART synchronously while the queue is full (the hypervisor's own output is
/// never dropped).
fn push_hypervisor(mut bytes: &[u8]) {
    while !bytes.is_empty() {
        let took = {
            let mut q = QUEUE.lock();
            // Before every piece: the shell may have redrawn the open line in between.
            if q.ring.free() > 2 {
                q.interrupt();
            }
            let n = if q.open.is_shown() {
                0
            } else {
                bytes.len().min(q.ring.free())
            };
            let ok = q.ring.push(&bytes[..n]);
            debug_assert!(ok);
            n
        };
        bytes = &bytes[took..];
        mark_pending();
        if !bytes.is_empty() {
            pump();
            core::hint::spin_loop();
        }
    }
}

/// Formats into a stack buffer and queues it in pieces of at most 512 bytes.
struct Queued {
    buf: [u8; 512],
    len: usize,
}

impl Queued {
    fn flush(&mut self) {
        push_hypervisor(&self.buf[..self.len]);
        self.len = 0;
    }
}

impl Write for Queued {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for &b in s.as_bytes() {
            let crlf: &[u8] = if b == b'\n' {
                b"\r\n"
            } else {
                core::slice::from_ref(&b)
            };
            if self.len + crlf.len() > self.buf.len() {
                self.flush();
            }
            self.buf[self.len..self.len + crlf.len()].copy_from_slice(crlf);
            self.len += crlf.len();
        }
        Ok(())
    }
}

/// Writes formatted hypervisor text to the console queue.
pub fn print(args: fmt::Arguments) {
    let mut w = Queued {
        buf: [0; 512],
        len: 0,
    };
    let _ = w.write_fmt(args);
    w.flush();
}

/// Queues one guest console line, `[prefix] text\r\n`, if the queue has room for it beyond
/// the hypervisor's reserve; returns `false` (nothing queued) otherwise. `text` must already
/// be cleaned (vm::console::LineBuffer). `attached`: the line is the attached VM's (`console
/// VM`), whose unfinished line the terminal may show: then only what it lacks is queued.
pub fn guest_line(prefix: fmt::Arguments, text: &[u8], attached: bool) -> bool {
    let mut head = [0u8; 96];
    let mut w = Slice {
        buf: &mut head,
        len: 0,
    };
    let _ = write!(w, "[{prefix}] ");
    let head_len = w.len;
    guest_line_raw(&head[..head_len], text, attached)
}

/// [`guest_line`] with the prefix already formatted (`[name] `).
pub fn guest_line_raw(head: &[u8], text: &[u8], attached: bool) -> bool {
    let mut q = QUEUE.lock();
    let need = (head.len() + text.len() + 2).max(OPEN_LINE_OUTPUT);
    if q.ring.free() < need + HYPERVISOR_RESERVE {
        return false;
    }
    let ok = if attached && q.open.owner() == Some(LineOwner::Guest) {
        // The terminal shows (or will show again) this line's start: complete it.
        q.with_open(|open, out| {
            open.show(LineOwner::Guest, &[head, text], out);
            open.finish(LineOwner::Guest, out);
        });
        true
    } else {
        q.interrupt();
        q.ring.push(head) && q.ring.push(text) && q.ring.push(b"\r\n")
    };
    mark_pending();
    ok
}

/// Shows the shell's open line (its prompt and what is typed after it), queuing only what
/// changed on the terminal ([`vm::console::OpenLine::show`]); hypervisor text, never dropped.
pub fn shell_line(parts: &[&[u8]]) {
    with_room(|q| {
        q.with_open(|open, out| open.show(LineOwner::Shell, parts, out));
    });
}

/// The shell's line is complete (Enter): shown whole and ended with CR LF.
pub fn finish_shell_line() {
    with_room(|q| {
        q.with_open(|open, out| open.finish(LineOwner::Shell, out));
    });
}

/// No line is open any more (the shell closed, `top` started): the terminal's line, if it
/// shows the open line, is ended with CR LF.
pub fn close_open_line() {
    with_room(|q| {
        q.with_open(|open, out| open.close(out));
    });
}

/// Shows the attached VM's unfinished console line (`parts`: its prefix and cleaned text) as
/// the open line, if the queue has room beyond the hypervisor's reserve: guest output, so
/// otherwise nothing is queued. Returns how many bytes were queued (`None` when none could
/// be), for the VM's console rate.
pub fn guest_open_line(parts: &[&[u8]]) -> Option<usize> {
    let mut q = QUEUE.lock();
    if q.ring.free() < OPEN_LINE_OUTPUT + HYPERVISOR_RESERVE {
        return None;
    }
    let n = q.with_open(|open, out| open.show(LineOwner::Guest, parts, out));
    mark_pending();
    Some(n)
}

/// Shows the open line again if other output ended it (the shell's polling pass).
pub fn redraw_open_line() {
    let mut q = QUEUE.lock();
    if q.open.owner().is_none() || q.open.is_shown() || q.ring.free() < OPEN_LINE_OUTPUT {
        return;
    }
    q.with_open(|open, out| open.redraw(out));
    mark_pending();
}

/// Runs `f` on the queue once it has room for an open-line operation, draining the UART
/// synchronously until then (hypervisor text is never dropped).
fn with_room(f: impl FnOnce(&mut Out)) {
    loop {
        {
            let mut q = QUEUE.lock();
            if q.ring.free() >= OPEN_LINE_OUTPUT {
                f(&mut q);
                mark_pending();
                return;
            }
        }
        pump();
        core::hint::spin_loop();
    }
}

/// A `fmt::Write` into a fixed slice (truncating).
struct Slice<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl Write for Slice<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let n = s.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

/// Writes to COM1 directly, after whatever is queued, without waiting for the locks: for
/// the panic, exception and exit paths, which may have interrupted a holder of a lock on this
/// CPU.
pub fn print_emergency(args: fmt::Arguments) {
    // SAFETY: the lock holders (if any) were interrupted on this CPU and never resume (the
    // emergency paths end the run), so taking the queue and the port over cannot race.
    unsafe {
        QUEUE.force_unlock();
        PORT.force_unlock();
    }
    // At the start of a line, even in the middle of the shell's prompt.
    {
        let mut q = QUEUE.lock();
        if q.ring.free() > 2 {
            q.interrupt();
        }
    }
    flush_queue();
    struct Direct<'a>(&'a mut Uart16550<PioBackend>);
    impl Write for Direct<'_> {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            for b in s.bytes() {
                if b == b'\n' {
                    self.0.send_bytes_exact(b"\r");
                }
                self.0.send_bytes_exact(&[b]);
            }
            Ok(())
        }
    }
    if let Some(uart) = PORT.lock().as_mut() {
        let _ = Direct(uart).write_fmt(args);
    }
}

/// Sends everything queued, waiting for the UART.
fn flush_queue() {
    while pump() {
        core::hint::spin_loop();
    }
}

/// Sends everything queued and waits until the UART has shifted out every byte
/// (LSR.TEMT), so nothing is lost when the emulator is shut down right after.
pub fn drain() {
    flush_queue();
    if let Some(uart) = PORT.lock().as_mut() {
        for _ in 0..10_000_000 {
            if uart.lsr().contains(LSR::TRANSMITTER_EMPTY) {
                break;
            }
            core::hint::spin_loop();
        }
    }
}

#[macro_export]
macro_rules! println {
    () => { $crate::serial::print(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::serial::print(format_args!("{}\n", format_args!($($arg)*))) };
}

struct Logger;

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record) {
        if self.enabled(record.metadata()) {
            print(format_args!(
                "[{:>14}] {:<5} {}\n",
                crate::arch::rdtsc(),
                record.level(),
                record.args()
            ));
        }
    }

    fn flush(&self) {
        drain();
    }
}

static LOGGER: Logger = Logger;

/// Installs the serial logger at `level`.
pub fn init_logger(level: log::LevelFilter) {
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(level);
    }
}
