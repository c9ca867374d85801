//! The console path, minus the hardware (docs/architecture.md, "Console"): guest console
//! bytes are cut into lines and cleaned ([`LineBuffer`]), each VM's output is limited by a
//! token bucket ([`RateLimit`]), and accepted lines wait in one bounded queue ([`ByteRing`])
//! that the hypervisor drains into the physical UART only when its transmitter has room.
//! Nothing here waits: a guest can never make a vCPU spin on the UART.

/// A fixed-capacity byte queue (FIFO). `N` is a power of two or any size: indices wrap with
/// `%`.
#[derive(Debug)]
pub struct ByteRing<const N: usize> {
    buf: [u8; N],
    head: usize,
    len: usize,
}

impl<const N: usize> Default for ByteRing<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> ByteRing<N> {
    /// An empty queue (usable in a `static`).
    pub const fn new() -> Self {
        ByteRing {
            buf: [0; N],
            head: 0,
            len: 0,
        }
    }

    /// Bytes queued.
    pub const fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is queued.
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Room left.
    pub const fn free(&self) -> usize {
        N - self.len
    }

    /// Appends `bytes` if they all fit; otherwise appends nothing and returns `false`.
    pub fn push(&mut self, bytes: &[u8]) -> bool {
        if bytes.len() > self.free() {
            return false;
        }
        // At most two copies: up to the end of the buffer, then from its start.
        let tail = (self.head + self.len) % N;
        let first = bytes.len().min(N - tail);
        self.buf[tail..tail + first].copy_from_slice(&bytes[..first]);
        self.buf[..bytes.len() - first].copy_from_slice(&bytes[first..]);
        self.len += bytes.len();
        true
    }

    /// The oldest queued bytes that lie contiguously in the buffer (possibly fewer than
    /// [`ByteRing::len`]).
    pub fn front(&self) -> &[u8] {
        let end = (self.head + self.len).min(N);
        &self.buf[self.head..end]
    }

    /// Drops the `n` oldest bytes (at most [`ByteRing::len`]).
    pub fn consume(&mut self, n: usize) {
        let n = n.min(self.len);
        self.head = (self.head + n) % N;
        self.len -= n;
    }
}

/// A token bucket of console bytes: `rate` bytes per second on average, bursts of at most
/// `burst` bytes. Time is TSC ticks at `tsc_hz`.
#[derive(Debug, Clone)]
pub struct RateLimit {
    rate: u64,
    burst: u64,
    tsc_hz: u64,
    tokens: u64,
    last: u64,
}

impl RateLimit {
    /// A full bucket at TSC time `now`.
    pub fn new(rate: u64, burst: u64, tsc_hz: u64, now: u64) -> Self {
        RateLimit {
            rate,
            burst,
            tsc_hz: tsc_hz.max(1),
            tokens: burst,
            last: now,
        }
    }

    /// The tokens available at TSC time `now` (after refilling).
    pub fn tokens(&mut self, now: u64) -> u64 {
        let _ = self.allow(0, now);
        self.tokens
    }

    /// Takes `n` bytes' worth of tokens at TSC time `now` if there are that many.
    pub fn allow(&mut self, n: u64, now: u64) -> bool {
        let elapsed = now.saturating_sub(self.last);
        // 64-bit arithmetic when the product fits (always, between frequent calls), 128-bit
        // otherwise.
        let earned = match elapsed.checked_mul(self.rate) {
            Some(p) => u128::from(p / self.tsc_hz),
            None => u128::from(elapsed) * u128::from(self.rate) / u128::from(self.tsc_hz),
        };
        if earned > 0 {
            // Advance `last` only by the time the earned tokens stand for, so fractions of a
            // token are not lost between frequent calls.
            let used = earned * u128::from(self.tsc_hz) / u128::from(self.rate.max(1));
            self.last = self
                .last
                .saturating_add(u64::try_from(used).unwrap_or(u64::MAX));
            let tokens = u128::from(self.tokens) + earned;
            self.tokens = u64::try_from(tokens.min(u128::from(self.burst))).unwrap_or(self.burst);
        }
        if self.tokens >= n {
            self.tokens -= n;
            true
        } else {
            false
        }
    }
}

impl RateLimit {
    /// Takes `n` bytes' worth of tokens at TSC time `now`, or all there are when fewer (for
    /// output already sent whose cost is known afterwards).
    pub fn spend(&mut self, n: u64, now: u64) {
        let have = self.tokens(now);
        self.tokens = have.saturating_sub(n);
    }
}

/// The longest console line; a longer one is cut (the rest continues on the next line).
pub const MAX_LINE: usize = 240;

/// A guest console's line discipline: bytes accumulate until `\n` (or [`MAX_LINE`]), and `\r`
/// is dropped. Lines come out raw, so a consumer that drops a line (over its rate limit) pays
/// nothing for it; [`clean`] turns an accepted line into what may reach a terminal.
#[derive(Debug)]
pub struct LineBuffer {
    line: [u8; MAX_LINE],
    len: usize,
    /// The current line's start was discarded: drop the rest of it too.
    skipping: bool,
}

impl Default for LineBuffer {
    fn default() -> Self {
        Self::new()
    }
}

/// The largest cleaned line: every byte of a cut line could become a 3-byte U+FFFD.
pub const MAX_CLEAN_LINE: usize = MAX_LINE * 3;

impl LineBuffer {
    pub const fn new() -> Self {
        LineBuffer {
            line: [0; MAX_LINE],
            len: 0,
            skipping: false,
        }
    }

    /// Whether a partial line is waiting.
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The partial line waiting for its end, raw (empty while the rest of a discarded line
    /// is being skipped).
    pub fn partial(&self) -> &[u8] {
        if self.skipping {
            &[]
        } else {
            &self.line[..self.len]
        }
    }

    /// Feeds bytes; `emit` receives each completed line, raw (without its newline). Runs of
    /// ordinary bytes are copied as slices.
    pub fn feed(&mut self, mut bytes: &[u8], emit: &mut dyn FnMut(&[u8])) {
        // One byte at a time is the UART's case: no slice machinery for it.
        if let [b] = bytes {
            if !self.skipping && *b != b'\n' && *b != b'\r' {
                self.line[self.len] = *b;
                self.len += 1;
                if self.len == MAX_LINE {
                    self.flush(emit);
                }
                return;
            }
        }
        while let Some((&first, _)) = bytes.split_first() {
            if self.skipping {
                match bytes.iter().position(|&b| b == b'\n') {
                    Some(i) => {
                        self.skipping = false;
                        bytes = &bytes[i + 1..];
                    }
                    None => return,
                }
                continue;
            }
            match first {
                b'\n' => {
                    self.flush(emit);
                    bytes = &bytes[1..];
                }
                b'\r' => bytes = &bytes[1..],
                _ => {
                    let room = MAX_LINE - self.len;
                    let run = bytes[..bytes.len().min(room)]
                        .iter()
                        .position(|&b| b == b'\n' || b == b'\r')
                        .unwrap_or(bytes.len().min(room));
                    self.line[self.len..self.len + run].copy_from_slice(&bytes[..run]);
                    self.len += run;
                    bytes = &bytes[run..];
                    if self.len == MAX_LINE {
                        self.flush(emit);
                    }
                }
            }
        }
    }

    /// Drops `bytes` unread but for line boundaries, in time proportional to the distance from
    /// the last newline to the end: what follows that newline starts a new line; without a
    /// newline the current line is dropped up to its end. Returns how many bytes were dropped
    /// (the partial line held before included).
    pub fn discard(&mut self, bytes: &[u8], emit: &mut dyn FnMut(&[u8])) -> usize {
        let held = self.len;
        self.len = 0;
        match bytes.iter().rposition(|&b| b == b'\n') {
            Some(i) => {
                self.skipping = false;
                self.feed(&bytes[i + 1..], emit);
                held + i + 1
            }
            None => {
                self.skipping = true;
                held + bytes.len()
            }
        }
    }

    /// Drops `len` bytes that were never read: the current line (its held start included) is
    /// dropped up to its next newline. Returns the bytes dropped.
    pub fn discard_unread(&mut self, len: usize) -> usize {
        let held = self.len;
        self.len = 0;
        self.skipping = true;
        held + len
    }

    /// Emits the partial line, if any (when the VM stops), raw.
    pub fn flush(&mut self, emit: &mut dyn FnMut(&[u8])) {
        let n = self.len;
        self.len = 0;
        emit(&self.line[..n]);
    }
}

/// Writes the cleaned form of `raw` into `out` (at least 3 bytes per input byte) and returns
/// its length (see [`LineBuffer`]): what a terminal would show of the line, with nothing that
/// could control the terminal. ECMA-48 control sequences (CSI: `ESC [` or the 8-bit U+009B,
/// parameter and intermediate bytes 0x20-0x3F, a final byte 0x40-0x7E; ECMA-48 §5.4) are
/// dropped whole, as the terminal would not print them (busybox's line editing asks for the
/// cursor position with `ESC [ 6 n` and erases with `ESC [ J`); a backspace (0x08) erases the
/// character before it, never more than the line holds (the prefix before it is the
/// hypervisor's); an unfinished sequence at the end shows nothing; other control characters
/// become `.` and invalid UTF-8 U+FFFD. The result only shrinks when bytes are appended to
/// `raw` by a backspace or a sequence's completion, so the cleaned form of a line as it grows
/// is what the terminal shows of it (the live line of an attached VM, [`OpenLine`]).
pub fn clean(raw: &[u8], out: &mut [u8]) -> usize {
    // The common case, printable ASCII and tabs, is copied as it is.
    if raw.iter().all(|&b| (0x20..0x7f).contains(&b) || b == b'\t') {
        let n = raw.len().min(out.len());
        out[..n].copy_from_slice(&raw[..n]);
        return n;
    }
    let mut n = 0;
    let put = |bytes: &[u8], out: &mut [u8], n: &mut usize| {
        if let Some(dst) = out.get_mut(*n..*n + bytes.len()) {
            dst.copy_from_slice(bytes);
            *n += bytes.len();
        }
    };
    // After ESC (is it a CSI?), and inside a CSI (its parameters and intermediates).
    let (mut escape, mut csi) = (false, false);
    for chunk in raw.utf8_chunks() {
        for c in chunk.valid().chars() {
            if csi {
                csi = false;
                match c {
                    '\u{20}'..='\u{3f}' => {
                        csi = true;
                        continue;
                    }
                    // The final byte ends the sequence.
                    '\u{40}'..='\u{7e}' => continue,
                    // Not a CSI byte: the sequence was malformed; this character stands.
                    _ => {}
                }
            }
            if core::mem::take(&mut escape) {
                if c == '[' {
                    csi = true;
                    continue;
                }
                put(b".", out, &mut n);
            }
            match c {
                '\u{1b}' => escape = true,
                '\u{9b}' => csi = true,
                '\u{8}' => {
                    // Back to the start of the last character (out holds valid UTF-8).
                    while n > 0 {
                        n -= 1;
                        if out[n] & 0xc0 != 0x80 {
                            break;
                        }
                    }
                }
                '\t' => put(b"\t", out, &mut n),
                c if c.is_control() => put(b".", out, &mut n),
                c => {
                    let mut tmp = [0u8; 4];
                    put(c.encode_utf8(&mut tmp).as_bytes(), out, &mut n);
                }
            }
        }
        if !chunk.invalid().is_empty() {
            csi = false;
            if core::mem::take(&mut escape) {
                put(b".", out, &mut n);
            }
            put("\u{fffd}".as_bytes(), out, &mut n);
        }
    }
    n
}

/// Who owns the terminal's open line ([`OpenLine`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineOwner {
    /// The hypervisor shell's prompt and what is typed after it.
    Shell,
    /// The attached VM's unfinished console line (`console VM`), with its prefix.
    Guest,
}

/// The longest open line: a guest prefix (`[name] `, at most [`MAX_PREFIX`] bytes) and a
/// cleaned console line.
pub const OPEN_LINE: usize = MAX_PREFIX + MAX_CLEAN_LINE;
/// The longest guest line prefix kept (`[name +ticks] `).
pub const MAX_PREFIX: usize = 96;
/// The most bytes an [`OpenLine::show`] and the [`OpenLine::finish`] after it queue together:
/// a whole line erased (`"\x08 \x08"` per byte), a whole new one written, and CR LF.
pub const OPEN_LINE_OUTPUT: usize = 3 * OPEN_LINE + OPEN_LINE + 2;

/// The terminal's unfinished line: the shell's prompt with what is typed, or the attached VM's
/// console line as it grows, shown before it is complete. Every other output must start at
/// the beginning of a line (the harness and the operator read lines by their start, and a
/// guest line may never continue a hypervisor line, nor the reverse), so before it is queued
/// [`OpenLine::interrupt`] ends the open line with CR LF, and [`OpenLine::redraw`] shows it
/// again afterwards. The owner updates it with [`OpenLine::show`], which queues only the
/// difference from what the terminal shows (the typed byte, or `"\x08 \x08"` per erased
/// character), and ends it with [`OpenLine::finish`]. Output goes to `out`, at most
/// [`OPEN_LINE_OUTPUT`] bytes for a show and a finish.
#[derive(Debug)]
pub struct OpenLine {
    owner: Option<LineOwner>,
    text: [u8; OPEN_LINE],
    len: usize,
    /// The terminal's current line is `text` (the cursor after it).
    shown: bool,
}

impl Default for OpenLine {
    fn default() -> Self {
        Self::new()
    }
}

impl OpenLine {
    pub const fn new() -> Self {
        OpenLine {
            owner: None,
            text: [0; OPEN_LINE],
            len: 0,
            shown: false,
        }
    }

    /// Whose line is open, if any.
    pub fn owner(&self) -> Option<LineOwner> {
        self.owner
    }

    /// Whether the terminal's current line is the open line.
    pub fn is_shown(&self) -> bool {
        self.shown
    }

    /// What the open line holds.
    pub fn text(&self) -> &[u8] {
        &self.text[..self.len]
    }

    /// Other output comes next: it must start a line, so the open line is ended with CR LF
    /// when the terminal shows it (it stays open, for [`OpenLine::redraw`]).
    pub fn interrupt(&mut self, out: &mut dyn FnMut(&[u8])) {
        if core::mem::take(&mut self.shown) {
            out(b"\r\n");
        }
    }

    /// Shows the open line again (after other output), if one is open and it is not shown.
    pub fn redraw(&mut self, out: &mut dyn FnMut(&[u8])) {
        if self.owner.is_some() && !self.shown {
            out(&self.text[..self.len]);
            self.shown = true;
        }
    }

    /// Makes the open line `owner`'s, holding `parts` concatenated (cut at [`OPEN_LINE`] on
    /// a character boundary), and shows it: when the terminal shows this owner's line, only
    /// the difference (erasing with `"\x08 \x08"` back to the common start when what goes
    /// is printable ASCII, one column per byte; otherwise the line is ended and written
    /// again); when it shows another owner's line, that one is ended first.
    pub fn show(&mut self, owner: LineOwner, parts: &[&[u8]], out: &mut dyn FnMut(&[u8])) {
        let mut new = [0u8; OPEN_LINE];
        let mut len = 0;
        for part in parts {
            let n = part.len().min(OPEN_LINE - len);
            new[len..len + n].copy_from_slice(&part[..n]);
            len += n;
        }
        // A cut inside a UTF-8 sequence: drop its start.
        if len == OPEN_LINE {
            while len > 0 && core::str::from_utf8(&new[..len]).is_err() {
                len -= 1;
            }
        }
        let new = &new[..len];
        if self.shown && self.owner == Some(owner) {
            let old = &self.text[..self.len];
            let common = old.iter().zip(new).take_while(|(a, b)| a == b).count();
            let gone = &old[common..];
            if gone.iter().all(|b| (0x20..0x7f).contains(b)) {
                for _ in gone {
                    out(b"\x08 \x08");
                }
                out(&new[common..]);
            } else {
                out(b"\r\n");
                out(new);
            }
        } else {
            self.interrupt(out);
            out(new);
        }
        self.text[..len].copy_from_slice(new);
        self.len = len;
        self.owner = Some(owner);
        self.shown = true;
    }

    /// `owner`'s line is complete: it is shown (again, if other output ended it) and ended
    /// with CR LF; no line is open afterwards. Another owner's open line is only interrupted.
    pub fn finish(&mut self, owner: LineOwner, out: &mut dyn FnMut(&[u8])) {
        if self.owner != Some(owner) {
            self.interrupt(out);
            return;
        }
        self.redraw(out);
        self.close(out);
    }

    /// No line is open any more; the terminal's line, if it showed it, is ended with CR LF and
    /// stays as it is.
    pub fn close(&mut self, out: &mut dyn FnMut(&[u8])) {
        self.interrupt(out);
        self.owner = None;
        self.len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::String;
    use alloc::vec::Vec;

    #[test]
    fn ring_is_fifo_all_or_nothing_and_wraps() {
        let mut r = ByteRing::<8>::new();
        assert!(r.push(b"abcde"));
        assert!(!r.push(b"fghi"), "4 bytes do not fit in 3");
        assert_eq!((r.len(), r.free()), (5, 3));
        assert_eq!(r.front(), b"abcde");
        r.consume(4);
        assert!(r.push(b"fghij"));
        // Wrapped: the contiguous front is the tail of the buffer, then the rest.
        let mut got = Vec::new();
        while !r.is_empty() {
            let f = r.front().to_vec();
            got.extend_from_slice(&f);
            r.consume(f.len());
        }
        assert_eq!(got, b"efghij");
        r.consume(100);
        assert!(r.is_empty());
    }

    #[test]
    fn rate_limit_allows_bursts_then_the_rate() {
        // 1,000 bytes/s, burst 100, TSC at 1 MHz.
        let mut l = RateLimit::new(1_000, 100, 1_000_000, 0);
        assert!(l.allow(60, 0));
        assert_eq!(l.tokens(0), 40);
        assert!(l.allow(40, 0));
        assert!(!l.allow(1, 0), "the burst is spent");
        assert_eq!(l.tokens(0), 0);
        // 10 ms later: 10 bytes earned.
        assert!(!l.allow(11, 10_000));
        assert!(l.allow(10, 10_000));
        // Many small steps earn as much as one large one (no lost fractions).
        for t in (10_500..=20_000).step_by(500) {
            let _ = l.allow(0, t);
        }
        assert!(l.allow(10, 20_000) && !l.allow(1, 20_000));
        // Long idle refills only up to the burst.
        assert!(!l.allow(101, u64::MAX / 2));
        assert!(l.allow(100, u64::MAX / 2));
    }

    #[test]
    fn rate_limit_with_zero_rate_or_huge_values_does_not_panic() {
        let mut l = RateLimit::new(0, 10, 0, 5);
        assert!(l.allow(10, u64::MAX));
        assert!(!l.allow(1, u64::MAX));
        let mut l = RateLimit::new(u64::MAX, u64::MAX, 1, 0);
        assert!(l.allow(u64::MAX, u64::MAX));
    }

    fn cleaned(l: &[u8]) -> String {
        let mut out = [0u8; MAX_CLEAN_LINE];
        let n = clean(l, &mut out);
        String::from_utf8(out[..n].to_vec()).unwrap()
    }

    fn lines(input: &[u8]) -> Vec<String> {
        let mut b = LineBuffer::new();
        let mut out = Vec::new();
        b.feed(input, &mut |l| out.push(cleaned(l)));
        if !b.is_empty() {
            b.flush(&mut |l| out.push(cleaned(l)));
        }
        out
    }

    #[test]
    fn lines_fed_in_pieces_are_the_same_lines() {
        let text = b"first line\r\nsecond\n\nthird without end";
        for split in 0..text.len() {
            let mut b = LineBuffer::new();
            let mut out = Vec::new();
            b.feed(&text[..split], &mut |l| out.push(cleaned(l)));
            b.feed(&text[split..], &mut |l| out.push(cleaned(l)));
            b.flush(&mut |l| out.push(cleaned(l)));
            assert_eq!(
                out,
                ["first line", "second", "", "third without end"],
                "split {split}"
            );
        }
    }

    #[test]
    fn discard_keeps_line_boundaries() {
        let mut b = LineBuffer::new();
        let mut out = Vec::new();
        b.feed(b"held", &mut |l| out.push(cleaned(l)));
        // Everything up to the last newline is dropped, the partial line before it too.
        assert_eq!(
            b.discard(b"aaa\nbbb\ncc", &mut |l| out.push(cleaned(l))),
            4 + 8
        );
        b.feed(b"c\n", &mut |l| out.push(cleaned(l)));
        assert_eq!(out, ["ccc"]);
        // No newline: the line is dropped to its end, whenever that comes.
        out.clear();
        assert_eq!(b.discard(b"xxxx", &mut |l| out.push(cleaned(l))), 4);
        b.feed(b"yy\nzz\n", &mut |l| out.push(cleaned(l)));
        assert_eq!(out, ["zz"]);
        // Unread bytes: the current line goes, up to its next newline.
        out.clear();
        b.feed(b"part", &mut |l| out.push(cleaned(l)));
        assert_eq!(b.discard_unread(100), 104);
        b.feed(b"rest\nnext\n", &mut |l| out.push(cleaned(l)));
        assert_eq!(out, ["next"]);
    }

    #[test]
    fn lines_are_cut_and_cleaned() {
        assert_eq!(lines(b"one\r\ntwo\nthree"), ["one", "two", "three"]);
        // Control sequences (ESC [ 2 J, ESC [ H) are dropped whole, other controls become
        // `.`; tab stays.
        assert_eq!(lines(b"\x1b[2J\x1b[Hx\ty\x07\x7f"), ["x\ty.."]);
        // The 8-bit CSI (U+009B) too; ordinary UTF-8 passes.
        assert_eq!(lines("a\u{9b}31mb é ─".as_bytes()), ["ab é ─"]);
        // ESC not followed by `[` is a control character; a malformed CSI ends at the first
        // byte that cannot be part of it, which stands.
        assert_eq!(lines(b"a\x1b(Bc\x1b[1;\x07d"), ["a.(Bc.d"]);
        // Invalid UTF-8 becomes U+FFFD.
        assert_eq!(lines(b"x\xffy"), ["x\u{fffd}y"]);
        // A line that forges a hypervisor line still starts where the guest's prefix goes:
        // the newline before it only ends the previous line.
        assert_eq!(
            lines(b"\nbulkhead: exit status 0 (ok)\n"),
            ["", "bulkhead: exit status 0 (ok)"]
        );
    }

    #[test]
    fn busybox_line_editing_shows_what_its_terminal_would() {
        // ash's prompt asks for the cursor position, then the operator types "ecko",
        // two backspaces (echoed as BS + ESC [ J: erase to the end) and "ho hi".
        let typed = b"/ # \x1b[6necko\x08\x1b[J\x08\x1b[Jho hi";
        assert_eq!(lines(typed), ["/ # echo hi"]);
        // A backspace erases a whole character, never before the line's start.
        assert_eq!(lines("x é\x08\x08\x08\x08y".as_bytes()), ["y"]);
        assert_eq!(lines("─\x08z".as_bytes()), ["z"]);
        // An unfinished sequence at the end shows nothing.
        assert_eq!(lines(b"ab\x1b"), ["ab"]);
        assert_eq!(lines(b"ab\x1b[1"), ["ab"]);
    }

    #[test]
    fn a_growing_line_cleans_to_what_the_terminal_shows() {
        // Every prefix of a line cleans to a prefix of the whole line's cleaned form, except
        // where a backspace or a sequence's final byte takes something back.
        let line = b"/ # \x1b[6necho hello-from-shell";
        let whole = cleaned(line);
        assert_eq!(whole, "/ # echo hello-from-shell");
        for end in 0..line.len() {
            let part = cleaned(&line[..end]);
            assert!(whole.starts_with(&part), "{end}: {part:?}");
        }
    }

    fn out_of(f: impl FnOnce(&mut dyn FnMut(&[u8]))) -> String {
        let mut out = Vec::new();
        f(&mut |b: &[u8]| out.extend_from_slice(b));
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn open_line_queues_only_what_changed() {
        let mut o = OpenLine::new();
        assert_eq!(o.owner(), None);
        assert_eq!(
            out_of(|f| o.show(LineOwner::Shell, &[b"bulkhead> "], f)),
            "bulkhead> "
        );
        // Typing: one byte each.
        assert_eq!(
            out_of(|f| o.show(LineOwner::Shell, &[b"bulkhead> ", b"v"], f)),
            "v"
        );
        assert_eq!(
            out_of(|f| o.show(LineOwner::Shell, &[b"bulkhead> ", b"vmx"], f)),
            "mx"
        );
        // Backspace, Ctrl-U.
        assert_eq!(
            out_of(|f| o.show(LineOwner::Shell, &[b"bulkhead> ", b"vm"], f)),
            "\x08 \x08"
        );
        assert_eq!(
            out_of(|f| o.show(LineOwner::Shell, &[b"bulkhead> "], f)),
            "\x08 \x08\x08 \x08"
        );
        // Unchanged: nothing.
        assert_eq!(
            out_of(|f| o.show(LineOwner::Shell, &[b"bulkhead> "], f)),
            ""
        );
        assert_eq!(o.text(), b"bulkhead> ");
        // A guest line arrives: the prompt is ended first, then redrawn once.
        assert_eq!(out_of(|f| o.interrupt(f)), "\r\n");
        assert_eq!(out_of(|f| o.interrupt(f)), "", "already at a line start");
        assert!(!o.is_shown());
        assert_eq!(out_of(|f| o.redraw(f)), "bulkhead> ");
        assert_eq!(out_of(|f| o.redraw(f)), "");
        // Typing while it is not shown writes the whole line.
        o.interrupt(&mut |_| {});
        assert_eq!(
            out_of(|f| o.show(LineOwner::Shell, &[b"bulkhead> ", b"s"], f)),
            "bulkhead> s"
        );
        // Enter: CR LF, nothing open.
        assert_eq!(out_of(|f| o.finish(LineOwner::Shell, f)), "\r\n");
        assert_eq!(o.owner(), None);
        assert_eq!(out_of(|f| o.redraw(f)), "");
        assert_eq!(out_of(|f| o.interrupt(f)), "");
        // Enter after other output ended the line: it is shown again before its end, so the
        // command's output follows the command.
        o.show(LineOwner::Shell, &[b"bulkhead> ", b"vms"], &mut |_| {});
        o.interrupt(&mut |_| {});
        assert_eq!(
            out_of(|f| o.finish(LineOwner::Shell, f)),
            "bulkhead> vms\r\n"
        );
    }

    #[test]
    fn open_line_of_an_attached_guest() {
        let mut o = OpenLine::new();
        let p: &[u8] = b"[linux] ";
        assert_eq!(
            out_of(|f| o.show(LineOwner::Guest, &[p, b"/ # "], f)),
            "[linux] / # "
        );
        assert_eq!(
            out_of(|f| o.show(LineOwner::Guest, &[p, b"/ # ech"], f)),
            "ech"
        );
        // The guest erased (BS, ESC [ J): so does the terminal.
        assert_eq!(
            out_of(|f| o.show(LineOwner::Guest, &[p, b"/ # ec"], f)),
            "\x08 \x08"
        );
        // Non-ASCII taken back: the line is written again on a new one.
        o.show(LineOwner::Guest, &[p, "/ # é".as_bytes()], &mut |_| {});
        assert_eq!(
            out_of(|f| o.show(LineOwner::Guest, &[p, b"/ # e"], f)),
            "\r\n[linux] / # e"
        );
        // The complete line: the rest, then CR LF. The terminal's line is the whole line.
        assert_eq!(
            out_of(|f| {
                o.show(LineOwner::Guest, &[p, b"/ # echo hi"], f);
                o.finish(LineOwner::Guest, f);
            }),
            "cho hi\r\n"
        );
        assert_eq!(o.owner(), None);
        // The shell takes the line over (detach): the guest's line is ended, stays as it is.
        o.show(LineOwner::Guest, &[p, b"/ # "], &mut |_| {});
        assert_eq!(
            out_of(|f| o.show(LineOwner::Shell, &[b"bulkhead> "], f)),
            "\r\nbulkhead> "
        );
        // A guest line finishing while the shell owns the line only interrupts it.
        assert_eq!(out_of(|f| o.finish(LineOwner::Guest, f)), "\r\n");
        assert_eq!(o.owner(), Some(LineOwner::Shell));
        // close: the line stays on the terminal, ended.
        o.redraw(&mut |_| {});
        assert_eq!(out_of(|f| o.close(f)), "\r\n");
        assert_eq!(out_of(|f| o.redraw(f)), "");
    }

    #[test]
    fn open_line_is_cut_on_a_character_boundary() {
        let mut o = OpenLine::new();
        let long = "é".repeat(OPEN_LINE);
        let out = out_of(|f| o.show(LineOwner::Guest, &[long.as_bytes()], f));
        assert_eq!(out.len(), OPEN_LINE - OPEN_LINE % 2);
        assert!(out.chars().all(|c| c == 'é'));
        // The worst case stays within OPEN_LINE_OUTPUT: a whole ASCII line erased, a whole
        // new one written, CR LF.
        let a = [b'a'; OPEN_LINE];
        let b = [b'b'; OPEN_LINE];
        let mut o = OpenLine::new();
        o.show(LineOwner::Guest, &[&a], &mut |_| {});
        let n = out_of(|f| {
            o.show(LineOwner::Guest, &[&b], f);
            o.finish(LineOwner::Guest, f);
        })
        .len();
        assert_eq!(n, OPEN_LINE_OUTPUT);
    }

    #[test]
    fn rate_limit_spend_takes_what_there_is() {
        let mut l = RateLimit::new(1_000, 100, 1_000_000, 0);
        l.spend(30, 0);
        assert_eq!(l.tokens(0), 70);
        l.spend(500, 0);
        assert_eq!(l.tokens(0), 0);
    }

    #[test]
    fn partial_line_is_what_waits_for_its_end() {
        let mut b = LineBuffer::new();
        b.feed(b"one\n/ # ec", &mut |_| {});
        assert_eq!(b.partial(), b"/ # ec");
        b.feed(b"ho\n", &mut |_| {});
        assert_eq!(b.partial(), b"");
        // The rest of a discarded line is not shown.
        b.discard(b"xxxx", &mut |_| {});
        b.feed(b"yy", &mut |_| {});
        assert_eq!(b.partial(), b"");
    }

    #[test]
    fn long_lines_are_split() {
        let long = [b'a'; MAX_LINE + 5];
        let got = lines(&long);
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].len(), got[1].len()), (MAX_LINE, 5));
        // Worst case: every byte invalid → 3 bytes each, still within MAX_CLEAN_LINE.
        let mut out = [0u8; MAX_CLEAN_LINE];
        assert_eq!(clean(&[0xff; MAX_LINE], &mut out), MAX_CLEAN_LINE);
    }
}
