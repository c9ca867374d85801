//! Typing into the emulated COM1: the runner gives Bochs the slave side of a pseudo-terminal
//! (`com1: mode=term`), relays what the guest machine writes from the master side into the
//! run's transcript file (so the transcript is followed as with `mode=file`), and writes each
//! [`Feed`]'s bytes once the transcript shows its trigger text, in order.
//!
//! A person's keyboard too ([`Keyboard`], `bulkhead-boot run` on a terminal): the terminal is
//! put in raw mode (no line editing, no echo, no signals from Ctrl-C/Ctrl-Z/Ctrl-\, no CR to
//! LF translation) so every key reaches COM1 as it is typed (Ctrl-A opens the hypervisor
//! shell, Enter is CR, Backspace is DEL), except [`QUIT`], which ends the run. Output
//! processing is left alone.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Bytes to type once the transcript, after the previous feed's trigger, contains `after`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Feed {
    pub after: String,
    pub bytes: Vec<u8>,
}

impl Feed {
    pub fn new(after: impl Into<String>, bytes: impl Into<Vec<u8>>) -> Self {
        Feed {
            after: after.into(),
            bytes: bytes.into(),
        }
    }
}

/// Which feed is next and where in the transcript its trigger is looked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FeedCursor {
    /// Index of the next feed.
    pub next: usize,
    /// Transcript offset just past the previous trigger.
    pub from: usize,
}

impl FeedCursor {
    /// The next feed's bytes if its trigger is in `transcript[from..]`; the cursor then moves
    /// past the trigger. Call again for feeds whose triggers already arrived.
    pub fn due<'f>(&mut self, transcript: &[u8], feeds: &'f [Feed]) -> Option<&'f [u8]> {
        let feed = feeds.get(self.next)?;
        let hay = transcript.get(self.from..)?;
        let needle = feed.after.as_bytes();
        let at = if needle.is_empty() {
            0
        } else {
            hay.windows(needle.len()).position(|w| w == needle)?
        };
        self.from += at + needle.len();
        self.next += 1;
        Some(&feed.bytes)
    }
}

/// A pseudo-terminal: the master side stays here, Bochs opens the slave by its path.
#[derive(Debug)]
pub struct Pty {
    master: File,
    /// Held open so the master never sees a hang-up before Bochs opens its side.
    _slave: File,
    pub slave_path: PathBuf,
}

impl Pty {
    /// Opens a pty pair with the slave in raw mode (no echo, no line editing) and the master
    /// non-blocking.
    pub fn open() -> std::io::Result<Pty> {
        // SAFETY: posix_openpt returns a new fd or -1; nothing else is passed.
        let fd = unsafe { libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `fd` is a freshly opened descriptor owned by nothing else.
        let master = unsafe { File::from_raw_fd(fd) };
        // SAFETY: grantpt/unlockpt take the master fd; ptsname_r writes at most `buf.len()`
        // bytes, NUL-terminated, into `buf`.
        let name = unsafe {
            if libc::grantpt(fd) != 0 || libc::unlockpt(fd) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let mut buf = [0 as libc::c_char; 128];
            if libc::ptsname_r(fd, buf.as_mut_ptr(), buf.len()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            std::ffi::CStr::from_ptr(buf.as_ptr())
                .to_string_lossy()
                .into_owned()
        };
        let slave = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&name)?;
        // SAFETY: termios is plain data; tcgetattr fills it for a valid tty fd, cfmakeraw and
        // tcsetattr only read and write it.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(slave.as_raw_fd(), &mut t) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            libc::cfmakeraw(&mut t);
            if libc::tcsetattr(slave.as_raw_fd(), libc::TCSANOW, &t) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let flags = libc::fcntl(fd, libc::F_GETFL);
            if flags < 0 || libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(Pty {
            master,
            _slave: slave,
            slave_path: name.into(),
        })
    }
}

/// The key that ends an interactive run: Ctrl-] (ASCII GS), as in telnet and `virsh console`
/// (Ctrl-A is the hypervisor shell's, Ctrl-C goes to the guest).
pub const QUIT: u8 = 0x1d;

/// The bytes of `typed` to send to COM1: those before [`QUIT`], and whether it was typed.
pub fn until_quit(typed: &[u8]) -> (&[u8], bool) {
    match typed.iter().position(|&b| b == QUIT) {
        Some(i) => (&typed[..i], true),
        None => (typed, false),
    }
}

/// A terminal in raw mode for as long as this lives (the settings it had are restored on drop).
pub struct RawMode {
    fd: RawFd,
    saved: libc::termios,
}

impl std::fmt::Debug for RawMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawMode").field("fd", &self.fd).finish()
    }
}

impl RawMode {
    /// Puts the terminal `fd` in raw input mode: bytes arrive one at a time as typed, without
    /// echo, without line editing (ICANON), signals (ISIG: Ctrl-C is a byte for the guest) or
    /// CR/LF translation (Enter stays CR, what a 16550 on a real serial line receives), and
    /// without XON/XOFF. Output processing (OPOST) is kept, so LF still starts a new line.
    pub fn enter(fd: RawFd) -> std::io::Result<RawMode> {
        // SAFETY: termios is plain data; tcgetattr fills it for a valid tty fd (and fails
        // otherwise), tcsetattr only reads it.
        unsafe {
            let mut saved: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(fd, &mut saved) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let mut raw = saved;
            raw.c_lflag &= !(libc::ICANON | libc::ECHO | libc::ISIG | libc::IEXTEN);
            raw.c_iflag &= !(libc::ICRNL
                | libc::INLCR
                | libc::IGNCR
                | libc::IXON
                | libc::ISTRIP
                | libc::BRKINT);
            raw.c_cc[libc::VMIN] = 1;
            raw.c_cc[libc::VTIME] = 0;
            if libc::tcsetattr(fd, libc::TCSANOW, &raw) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(RawMode { fd, saved })
        }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // SAFETY: restores the settings read in `enter` on the same fd.
        unsafe {
            libc::tcsetattr(self.fd, libc::TCSANOW, &self.saved);
        }
    }
}

/// What a person types, forwarded to COM1: read from `fd` (standard input, borrowed: it stays
/// open), until [`QUIT`], which sets `quit` (the runner then ends the run).
#[derive(Debug)]
pub struct Keyboard {
    pub fd: RawFd,
    pub quit: Arc<AtomicBool>,
}

/// Set by [`on_signal`] (see [`quit_on_signals`]).
static SIGNALLED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_signal: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    SIGNALLED.store(true, Ordering::Release);
}

/// Makes SIGINT, SIGTERM and SIGHUP end an interactive run cleanly ([`signalled`] turns true;
/// the runner then kills the emulator and restores the terminal's settings) instead of
/// killing this process with its terminal left in raw mode. With the terminal raw, Ctrl-C is
/// a byte for the guest: these signals come from `kill` or a closed terminal.
pub fn quit_on_signals() {
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: installs an async-signal-safe handler (one atomic store) for a signal whose
        // default action would end the process.
        unsafe {
            libc::signal(
                signal,
                on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t,
            );
        }
    }
}

/// Whether one of the signals of [`quit_on_signals`] arrived.
pub fn signalled() -> bool {
    SIGNALLED.load(Ordering::Acquire)
}

/// Bytes read from the keyboard at once.
const KEYBOARD_CHUNK: usize = 256;
/// How long the relay waits for either side before it checks whether to stop.
const RELAY_POLL_MS: i32 = 10;

/// Typed bytes go out in pieces of at most this many, [`TYPING_GAP_MS`] apart: a person types
/// no 19-byte burst, and one longer than the emulated UART's 16-byte receive FIFO overruns it
/// whenever the kernel's read of it falls a few byte times late (seen in Bochs: the bytes past
/// the 16th of a command line lost, deterministically for some kernel builds).
const TYPING_CHUNK: usize = 8;
const TYPING_GAP_MS: u64 = 3;

/// Writes all of `bytes` to the non-blocking pty master in typing-sized pieces, waiting while
/// its buffer is full (the emulator reads its side at the emulated baud rate), unless `stop`
/// is set.
fn write_master(master: &mut File, bytes: &[u8], stop: &AtomicBool) {
    for (i, piece) in bytes.chunks(TYPING_CHUNK).enumerate() {
        if i > 0 {
            std::thread::sleep(Duration::from_millis(TYPING_GAP_MS));
        }
        write_all_master(master, piece, stop);
    }
}

fn write_all_master(master: &mut File, mut bytes: &[u8], stop: &AtomicBool) {
    while !bytes.is_empty() {
        match master.write(bytes) {
            Ok(0) => return,
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if stop.load(Ordering::Acquire) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// The relay thread: master -> `transcript` file, feeds and keyboard -> master. Ends when
/// `stop` is set.
#[derive(Debug)]
pub struct Relay {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Relay {
    pub fn start(pty: Pty, transcript: &Path, feeds: Vec<Feed>) -> std::io::Result<Relay> {
        Self::start_with(pty, transcript, feeds, None)
    }

    /// [`Relay::start`] with a person's keyboard as well.
    pub fn start_with(
        pty: Pty,
        transcript: &Path,
        feeds: Vec<Feed>,
        keyboard: Option<Keyboard>,
    ) -> std::io::Result<Relay> {
        let mut out = std::fs::OpenOptions::new().append(true).open(transcript)?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut pty = pty;
            let mut keyboard = keyboard;
            let mut seen = Vec::new();
            let mut cursor = FeedCursor::default();
            let mut buf = [0u8; 4096];
            loop {
                let stopping = flag.load(Ordering::Acquire);
                match pty.master.read(&mut buf) {
                    Ok(n) if n > 0 => {
                        let _ = out.write_all(&buf[..n]);
                        let _ = out.flush();
                        seen.extend_from_slice(&buf[..n]);
                        while let Some(bytes) = cursor.due(&seen, &feeds) {
                            write_master(&mut pty.master, bytes, &flag);
                        }
                        continue;
                    }
                    _ => {
                        if stopping {
                            return;
                        }
                    }
                }
                let master_fd = pty.master.as_raw_fd();
                let mut fds = [
                    libc::pollfd {
                        fd: master_fd,
                        events: libc::POLLIN,
                        revents: 0,
                    },
                    libc::pollfd {
                        fd: keyboard.as_ref().map_or(-1, |k| k.fd),
                        events: libc::POLLIN,
                        revents: 0,
                    },
                ];
                // SAFETY: `fds` is a valid array of two pollfd (a negative fd is ignored).
                unsafe { libc::poll(fds.as_mut_ptr(), 2, RELAY_POLL_MS) };
                if fds[1].revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 {
                    let Some(k) = keyboard.as_ref() else { continue };
                    let mut typed = [0u8; KEYBOARD_CHUNK];
                    // SAFETY: reads at most `typed.len()` bytes into `typed` from an fd the
                    // caller keeps open for the relay's lifetime; poll said it is readable.
                    let n = unsafe { libc::read(k.fd, typed.as_mut_ptr().cast(), typed.len()) };
                    if n <= 0 {
                        // End of input (or an error): nothing more to forward.
                        keyboard = None;
                        continue;
                    }
                    let (send, quit) = until_quit(&typed[..n as usize]);
                    write_master(&mut pty.master, send, &flag);
                    if quit {
                        k.quit.store(true, Ordering::Release);
                        keyboard = None;
                    }
                }
            }
        });
        Ok(Relay {
            stop,
            thread: Some(thread),
        })
    }

    /// Relays what is left and ends the thread.
    pub fn finish(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feeds_go_out_in_order_each_after_its_trigger() {
        let feeds = vec![
            Feed::new("boot done", b"\x01".to_vec()),
            Feed::new("bulkhead> ", b"vms\r".to_vec()),
            Feed::new("bulkhead> ", b"stats a\r".to_vec()),
        ];
        let mut c = FeedCursor::default();
        assert_eq!(c.due(b"booting", &feeds), None);
        let t = b"booting\nboot done\nbulkhead> ".to_vec();
        assert_eq!(c.due(&t, &feeds), Some(&b"\x01"[..]));
        assert_eq!(c.from, 17);
        // The prompt already there triggers the second feed, not the third.
        assert_eq!(c.due(&t, &feeds), Some(&b"vms\r"[..]));
        assert_eq!(c.from, t.len());
        assert_eq!(c.due(&t, &feeds), None);
        let mut t2 = t.clone();
        t2.extend_from_slice(b"vms\nVM ...\nbulkhead> ");
        assert_eq!(c.due(&t2, &feeds), Some(&b"stats a\r"[..]));
        assert_eq!(c.next, 3);
        assert_eq!(c.due(&t2, &feeds), None);
    }

    #[test]
    fn a_pty_carries_bytes_both_ways() {
        let dir = tempfile::tempdir().unwrap();
        let transcript = dir.path().join("serial.txt");
        std::fs::write(&transcript, b"").unwrap();
        let pty = Pty::open().unwrap();
        let path = pty.slave_path.clone();
        // The emulator's side.
        let mut emu = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        let mut relay = Relay::start(
            pty,
            &transcript,
            vec![Feed::new("login: ", b"root\r".to_vec())],
        )
        .unwrap();
        emu.write_all(b"hello\nlogin: ").unwrap();
        let mut got = [0u8; 5];
        emu.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"root\r");
        relay.finish();
        assert_eq!(std::fs::read(&transcript).unwrap(), b"hello\nlogin: ");
    }

    #[test]
    fn quit_key_ends_what_is_forwarded() {
        assert_eq!(until_quit(b"vms\r"), (&b"vms\r"[..], false));
        assert_eq!(until_quit(b"ab\x1dcd"), (&b"ab"[..], true));
        assert_eq!(until_quit(b"\x1d"), (&b""[..], true));
        // Ctrl-A (the shell's key), Ctrl-C and DEL pass.
        assert_eq!(until_quit(b"\x01\x03\x7f"), (&b"\x01\x03\x7f"[..], false));
    }

    #[test]
    fn keyboard_bytes_reach_the_emulator_until_the_quit_key() {
        let dir = tempfile::tempdir().unwrap();
        let transcript = dir.path().join("serial.txt");
        std::fs::write(&transcript, b"").unwrap();
        let pty = Pty::open().unwrap();
        let mut emu = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&pty.slave_path)
            .unwrap();
        // The "keyboard": a pipe's read end.
        let mut fds = [0; 2];
        // SAFETY: pipe fills `fds` with two new descriptors.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: both descriptors are new and owned here.
        let (keys, mut typing) = unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) };
        let quit = Arc::new(AtomicBool::new(false));
        let mut relay = Relay::start_with(
            pty,
            &transcript,
            Vec::new(),
            Some(Keyboard {
                fd: keys.as_raw_fd(),
                quit: quit.clone(),
            }),
        )
        .unwrap();
        typing.write_all(b"\x01vms\r").unwrap();
        let mut got = [0u8; 5];
        emu.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"\x01vms\r");
        assert!(!quit.load(Ordering::Acquire));
        typing.write_all(b"x\x1dnot sent").unwrap();
        let mut x = [0u8; 1];
        emu.read_exact(&mut x).unwrap();
        assert_eq!(&x, b"x");
        let t0 = std::time::Instant::now();
        while !quit.load(Ordering::Acquire) {
            assert!(
                t0.elapsed() < Duration::from_secs(5),
                "the quit key was not seen"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        // Nothing after the quit key reaches the emulator (its side reads nothing more).
        std::thread::sleep(Duration::from_millis(50));
        // SAFETY: F_GETFL/F_SETFL on a descriptor owned by `emu`.
        unsafe {
            let flags = libc::fcntl(emu.as_raw_fd(), libc::F_GETFL);
            assert_eq!(
                libc::fcntl(emu.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK),
                0
            );
        }
        let mut rest = [0u8; 16];
        let err = emu.read(&mut rest).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::WouldBlock);
        // Output is still relayed.
        emu.write_all(b"bye").unwrap();
        std::thread::sleep(Duration::from_millis(100));
        relay.finish();
        assert_eq!(std::fs::read(&transcript).unwrap(), b"bye");
        drop(keys);
    }
}
