//! The output protocol: `guest <name>: start`, one `PASS <check>` or `FAIL <check>: <detail>`
//! line per check, and `DONE passed=<n> failed=<m>` before `cli; hlt`.
//!
//! Each line is formatted into a buffer first and written in one piece, so a line is never
//! interleaved with anything the exception handler prints.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicPtr, AtomicU32, AtomicUsize, Ordering};

static NAME_PTR: AtomicPtr<u8> = AtomicPtr::new(core::ptr::null_mut());
static NAME_LEN: AtomicUsize = AtomicUsize::new(0);
static PASSED: AtomicU32 = AtomicU32::new(0);
static FAILED: AtomicU32 = AtomicU32::new(0);

/// The longest line; longer lines are cut (and end in `...`).
pub const LINE_MAX: usize = 240;

/// A line being assembled.
#[derive(Debug)]
pub struct Line {
    buf: [u8; LINE_MAX],
    len: usize,
    cut: bool,
}

impl Default for Line {
    fn default() -> Self {
        Self::new()
    }
}

impl Line {
    pub const fn new() -> Self {
        Line {
            buf: [0; LINE_MAX],
            len: 0,
            cut: false,
        }
    }

    /// `guest <name>: ` followed by `args`, without the newline.
    pub fn guest(args: fmt::Arguments<'_>) -> Self {
        let mut l = Line::new();
        let _ = write!(l, "guest {}: {}", name(), args);
        l
    }

    /// The bytes, with `...` if the text was cut, and a trailing newline.
    pub fn finish(&mut self) -> &[u8] {
        if self.cut {
            self.len = LINE_MAX - 4;
            self.buf[self.len..self.len + 3].copy_from_slice(b"...");
            self.len += 3;
        } else if self.len == LINE_MAX {
            self.len -= 1;
        }
        self.buf[self.len] = b'\n';
        &self.buf[..self.len + 1]
    }
}

impl Write for Line {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        // Keep one byte for the newline.
        let room = LINE_MAX - 1 - self.len;
        let n = s.len().min(room);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        if n < s.len() {
            self.cut = true;
        }
        Ok(())
    }
}

/// Sets the `<name>` of every line (`selftest`, `hostile-oob-read`, ...) and prints
/// `guest <name>: start`.
pub fn start(name: &'static str) {
    set_name(name);
    say(format_args!("start"));
}

/// Sets the `<name>` of every line without printing anything (guests that print only
/// through CONSOLE_WRITE, [`crate::hv::console_say`]).
pub fn set_name(name: &'static str) {
    NAME_PTR.store(name.as_ptr() as *mut u8, Ordering::Relaxed);
    NAME_LEN.store(name.len(), Ordering::Relaxed);
}

/// The name given to [`start`] (`?` before).
pub fn name() -> &'static str {
    let p = NAME_PTR.load(Ordering::Relaxed);
    if p.is_null() {
        return "?";
    }
    // SAFETY: NAME_PTR/NAME_LEN are only set together, by `start`, from a `&'static str`.
    let bytes = unsafe { core::slice::from_raw_parts(p, NAME_LEN.load(Ordering::Relaxed)) };
    core::str::from_utf8(bytes).unwrap_or("?")
}

/// Prints `guest <name>: <args>` on the UART.
pub fn say(args: fmt::Arguments<'_>) {
    crate::uart::write_bytes(Line::guest(args).finish());
}

/// Prints `guest <name>: PASS <check>`.
pub fn pass(check: &str) {
    PASSED.fetch_add(1, Ordering::Relaxed);
    say(format_args!("PASS {check}"));
}

/// Counts a PASS whose line the guest printed itself (e.g. through REP OUTSB).
pub fn count_pass() {
    PASSED.fetch_add(1, Ordering::Relaxed);
}

/// Prints `guest <name>: FAIL <check>: <detail>`.
pub fn fail(check: &str, detail: fmt::Arguments<'_>) {
    FAILED.fetch_add(1, Ordering::Relaxed);
    say(format_args!("FAIL {check}: {detail}"));
}

/// PASS if `result` is `Ok`, else FAIL with the error as detail.
pub fn check<E: fmt::Display>(check: &str, result: Result<(), E>) {
    match result {
        Ok(()) => pass(check),
        Err(e) => fail(check, format_args!("{e}")),
    }
}

/// (passed, failed) so far.
pub fn counts() -> (u32, u32) {
    (
        PASSED.load(Ordering::Relaxed),
        FAILED.load(Ordering::Relaxed),
    )
}

/// Prints `guest <name>: DONE passed=<n> failed=<m>` and ends the VM with `cli; hlt`.
pub fn done() -> ! {
    let (p, f) = counts();
    say(format_args!("DONE passed={p} failed={f}"));
    crate::halt()
}

/// A check's failure detail built with `format_args!`-like syntax into a fixed buffer, for
/// `Result<(), Detail>` checks.
#[derive(Debug)]
pub struct Detail(Line);

impl Detail {
    pub fn new(args: fmt::Arguments<'_>) -> Self {
        let mut l = Line::new();
        let _ = l.write_fmt(args);
        Detail(l)
    }
}

impl fmt::Display for Detail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = core::str::from_utf8(&self.0.buf[..self.0.len]).unwrap_or("<non-utf8>");
        f.write_str(s)
    }
}

/// `Err(Detail)` from format arguments: `return Err(detail!("got {x:#x}"))`.
#[macro_export]
macro_rules! detail {
    ($($t:tt)*) => {
        $crate::report::Detail::new(format_args!($($t)*))
    };
}

/// Prints `guest <name>: <format>` on the UART.
#[macro_export]
macro_rules! say {
    ($($t:tt)*) => {
        $crate::report::say(format_args!($($t)*))
    };
}
