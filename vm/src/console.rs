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
/// its length (see [`LineBuffer`]).
pub fn clean(raw: &[u8], out: &mut [u8]) -> usize {
    // The common case, printable ASCII and tabs, is copied as it is.
    if raw.iter().all(|&b| (0x20..0x7f).contains(&b) || b == b'\t') {
        let n = raw.len().min(out.len());
        out[..n].copy_from_slice(&raw[..n]);
        return n;
    }
    let mut n = 0;
    let mut put = |bytes: &[u8], n: &mut usize| {
        if let Some(dst) = out.get_mut(*n..*n + bytes.len()) {
            dst.copy_from_slice(bytes);
            *n += bytes.len();
        }
    };
    for chunk in raw.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c.is_control() && c != '\t' {
                put(b".", &mut n);
            } else {
                let mut tmp = [0u8; 4];
                put(c.encode_utf8(&mut tmp).as_bytes(), &mut n);
            }
        }
        if !chunk.invalid().is_empty() {
            put("\u{fffd}".as_bytes(), &mut n);
        }
    }
    n
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
        // ESC [ 2 J and other controls are neutralised; tab stays.
        assert_eq!(lines(b"\x1b[2Jx\ty\x07\x7f"), [".[2Jx\ty.."]);
        // The 8-bit CSI (U+009B) is a control too; ordinary UTF-8 passes.
        assert_eq!(lines("a\u{9b}31mb é ─".as_bytes()), ["a.31mb é ─"]);
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
