//! Typing into the emulated COM1: the runner gives Bochs the slave side of a pseudo-terminal
//! (`com1: mode=term`), relays what the guest machine writes from the master side into the
//! run's transcript file (so the transcript is followed as with `mode=file`), and writes each
//! [`Feed`]'s bytes once the transcript shows its trigger text, in order.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd};
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

/// The relay thread: master -> `transcript` file, feeds -> master. Ends when `stop` is set.
#[derive(Debug)]
pub struct Relay {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Relay {
    pub fn start(pty: Pty, transcript: &Path, feeds: Vec<Feed>) -> std::io::Result<Relay> {
        let mut out = std::fs::OpenOptions::new().append(true).open(transcript)?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut pty = pty;
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
                            let _ = pty.master.write_all(bytes);
                        }
                        continue;
                    }
                    _ => {
                        if stopping {
                            return;
                        }
                        std::thread::sleep(Duration::from_millis(10));
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
}
