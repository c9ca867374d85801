//! A VM's console: its line discipline, rate limit and counters (docs/architecture.md,
//! "Console").

use super::*;

/// Tokens for one full line and its newline: below that the console counts as over its limit
/// and drops writes without reading them (it refills a little during every write, which must
/// not make a flood read every byte again).
const FULL_LINE: u64 = vm::console::MAX_LINE as u64 + 1;

/// Per-VM console (docs/architecture.md, "Console"): bytes from the UART and the console
/// hypercall are cut into cleaned lines (vm::console::LineBuffer), limited to `console-rate`
/// bytes per second with bursts of `console-buffer` bytes, and queued for the physical UART
/// prefixed with the VM's name (and, with `console-timestamps = yes`, the TSC ticks since the
/// VM's first entry: `[linux +123456789] text`). Nothing waits for the UART; a line over the
/// limit, or that finds the console queue full, is dropped and counted, and a report line
/// says so when the VM's output is accepted again.
#[derive(Debug)]
pub struct Console {
    line: LineBuffer,
    out: ConsoleOut,
    /// Bytes written so far (the shell shows an attached VM's unfinished line again only when
    /// this changed).
    written: u64,
}

/// Where a VM's cleaned console lines go: the limit, the console queue, the counters.
#[derive(Debug)]
struct ConsoleOut {
    name: String,
    /// `[name] `, formatted once.
    prefix: String,
    limit: RateLimit,
    /// Prefix lines with the ticks since the first VM entry.
    timestamps: bool,
    /// TSC of the first VM entry (0 until then).
    started: u64,
    /// Lines and bytes printed, and dropped.
    lines: u64,
    bytes: u64,
    dropped_lines: u64,
    dropped_bytes: u64,
    /// Dropped bytes not yet reported.
    unreported: u64,
    /// When drops were last reported (TSC), and the least time between two reports (one
    /// second): the report is hypervisor output a guest causes, so it is limited too.
    reported_at: u64,
    report_interval: u64,
    /// The shell's terminal is attached to this VM (`console VM`): its unfinished line may be
    /// on the terminal, so a completed line queues only what the terminal lacks.
    attached: bool,
}

impl Console {
    pub(super) fn new(name: &str, timestamps: bool, rate: u64, burst: u64, tsc_hz: u64) -> Self {
        Console {
            line: LineBuffer::new(),
            out: ConsoleOut {
                name: name.into(),
                prefix: alloc::format!("[{name}] "),
                limit: RateLimit::new(rate, burst, tsc_hz, arch::rdtsc()),
                timestamps,
                started: 0,
                lines: 0,
                bytes: 0,
                dropped_lines: 0,
                dropped_bytes: 0,
                unreported: 0,
                reported_at: 0,
                report_interval: tsc_hz,
                attached: false,
            },
            written: 0,
        }
    }

    pub fn write(&mut self, bytes: &[u8]) {
        self.written = self.written.wrapping_add(bytes.len() as u64);
        let out = &mut self.out;
        // Only a write larger than a line can be worth dropping unread (a UART byte never is).
        if bytes.len() > vm::console::MAX_LINE && out.limit.tokens(arch::rdtsc()) < FULL_LINE {
            // Over the limit: nothing of this can be printed; drop it at the cost of finding
            // its last newline, not of reading every byte (a guest may send 512 KiB per exit).
            let dropped = self.line.discard(bytes, &mut |text| out.emit(text)) as u64;
            out.dropped_bytes += dropped;
            out.unreported += dropped;
            return;
        }
        self.line.feed(bytes, &mut |text| out.emit(text));
    }

    /// Drops `len` bytes unread if the console is over its limit (returns whether it did): the
    /// current line is then dropped up to its next newline, whenever that comes.
    pub(super) fn discard_if_over_limit(&mut self, len: usize) -> bool {
        if self.out.limit.tokens(arch::rdtsc()) >= FULL_LINE {
            return false;
        }
        let dropped = self.line.discard_unread(len) as u64;
        self.out.dropped_bytes += dropped;
        self.out.unreported += dropped;
        true
    }

    /// The shell's terminal is attached to this VM, or no longer.
    pub(super) fn set_attached(&mut self, attached: bool) {
        self.out.attached = attached;
    }

    /// Bytes written so far (changes whenever the unfinished line may have).
    pub(super) fn written(&self) -> u64 {
        self.written
    }

    /// Shows the unfinished line on the terminal as its open line (`[name] ` and the line
    /// cleaned, vm::console::clean), charging what was queued to the console rate. Returns
    /// whether the terminal is up to date: `false` while the VM is over its rate (its lines
    /// are being dropped then) or the console queue is too full, to be tried again.
    pub(super) fn show_unfinished(&mut self) -> bool {
        if self.out.limit.tokens(arch::rdtsc()) < FULL_LINE {
            return false;
        }
        let mut text = [0u8; MAX_CLEAN_LINE];
        let n = clean(self.line.partial(), &mut text);
        if n == 0 {
            return true;
        }
        let prefix = self.out.prefix.as_bytes();
        let prefix = &prefix[..prefix.len().min(vm::console::MAX_PREFIX)];
        match crate::serial::guest_open_line(&[prefix, &text[..n]]) {
            Some(queued) => {
                self.out.limit.spend(queued as u64, arch::rdtsc());
                true
            }
            None => false,
        }
    }

    /// Emits a partial line (when the VM stops).
    pub(super) fn flush(&mut self) {
        if !self.line.is_empty() {
            let out = &mut self.out;
            self.line.flush(&mut |text| out.emit(text));
        }
    }
}

impl Console {
    /// Marks the VM's first entry: timestamps count from here.
    pub(super) fn start(&mut self) {
        self.out.started = arch::rdtsc();
    }

    /// TSC of the VM's first entry (0 until then).
    pub(super) fn started(&self) -> u64 {
        self.out.started
    }

    /// The counters for the VM's stop report.
    pub(super) fn summary(&self) -> String {
        alloc::format!(
            "lines={} bytes={} console-dropped={} dropped-lines={}",
            self.out.lines,
            self.out.bytes,
            self.out.dropped_bytes,
            self.out.dropped_lines
        )
    }
}

/// The UART model writes transmitted bytes straight into the VM's console.
impl vm::io::ConsoleSink for Console {
    fn write_bytes(&mut self, bytes: &[u8]) {
        self.write(bytes);
    }
}

impl ConsoleOut {
    /// One raw line: printed (cleaned, prefixed) if the limit and the console queue allow,
    /// else dropped without being cleaned.
    fn emit(&mut self, raw: &[u8]) {
        let now = arch::rdtsc();
        let cost = raw.len() as u64 + 1;
        let accepted = self.limit.allow(cost, now) && {
            let mut text = [0u8; MAX_CLEAN_LINE];
            let n = clean(raw, &mut text);
            if self.timestamps {
                crate::serial::guest_line(
                    format_args!("{} +{}", self.name, now.saturating_sub(self.started)),
                    &text[..n],
                    self.attached,
                )
            } else {
                crate::serial::guest_line_raw(self.prefix.as_bytes(), &text[..n], self.attached)
            }
        };
        if accepted {
            self.lines += 1;
            self.bytes += cost;
            if self.unreported > 0 && now.saturating_sub(self.reported_at) >= self.report_interval {
                self.reported_at = now;
                warn!(
                    "vm {}: console: {} bytes dropped (over console-rate, or the console queue was full)",
                    self.name, self.unreported
                );
                self.unreported = 0;
            }
        } else {
            self.dropped_lines += 1;
            self.dropped_bytes += cost;
            self.unreported += cost;
        }
    }
}
