//! Running an image under an emulator: a private work directory per run (image copy, config,
//! serial file, logs), live echo of the serial output, a wall-clock timeout, and a verdict
//! from the transcript (the kernel's exit line) and the emulator's exit status.

use crate::bochs::{self, BochsConfig, Firmware, SerialBackend};
use crate::error::{io, BootError};
use crate::qemu::{self, Accel, QemuConfig, QemuSerial};
use crate::serial_input::{Feed, Keyboard, Pty, RawMode, Relay};
use crate::transcript::{parse_exit, KernelExit};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where to run an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    /// Bochs with its BIOS: VT-x emulated (BIOS image).
    Bochs,
    /// Bochs with OVMF: UEFI firmware + VT-x, the nearest thing to a real machine (UEFI image).
    BochsUefi,
    /// QEMU TCG with OVMF: UEFI boot path, no VMX (UEFI image).
    Qemu,
    /// QEMU/KVM with nested VMX on an Intel host (UEFI image).
    Kvm,
}

impl Platform {
    pub const ALL: [Platform; 4] = [
        Platform::Bochs,
        Platform::BochsUefi,
        Platform::Qemu,
        Platform::Kvm,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Platform::Bochs => "bochs",
            Platform::BochsUefi => "bochs-uefi",
            Platform::Qemu => "qemu",
            Platform::Kvm => "kvm",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == s)
    }

    /// Whether the platform boots the UEFI image (else the BIOS one).
    pub fn uses_uefi(self) -> bool {
        !matches!(self, Platform::Bochs)
    }

    /// The best platform for running guests here: KVM with nested VMX when available, else
    /// Bochs (VT-x emulated).
    pub fn best_available() -> Self {
        if qemu::kvm_nested_vmx().is_ok() {
            Platform::Kvm
        } else {
            Platform::Bochs
        }
    }
}

/// What to run and how.
#[derive(Debug, Clone)]
pub struct RunSpec {
    pub platform: Platform,
    pub image: PathBuf,
    /// Bochs `cpu: model=` (Bochs platforms) or QEMU `-cpu` (TCG).
    pub cpu_model: String,
    pub cpus: u32,
    pub megs: u32,
    pub timeout: Duration,
    /// Copy the transcript here as well (it is always kept in the run's work directory).
    pub serial_out: Option<PathBuf>,
    /// Echo serial output to stdout as it arrives.
    pub echo: bool,
    /// Keep the work directory (config, logs) after the run.
    pub keep_work_dir: bool,
    /// More drives (image files or block devices), used in place, so what the hypervisor
    /// writes to them persists across runs: Bochs attaches them as ata0-slave, ata1-master
    /// and ata1-slave.
    pub drives: Vec<PathBuf>,
    /// NVMe drives (QEMU `-device nvme`; Bochs has no NVMe), used in place.
    pub nvme: Vec<PathBuf>,
    /// QEMU: the q35 machine (PCI Express, an ACPI MCFG, so the kernel reaches configuration
    /// space through ECAM) instead of pc (i440FX, mechanism #1). Its `-drive if=ide` drives
    /// sit on AHCI, which Bulkhead does not drive: use NVMe drives there.
    pub q35: bool,
    /// A simulated power loss: the emulator is killed (SIGKILL) as soon as the transcript
    /// shows a whole line with this text, so only what already reached its drive files
    /// survives.
    pub kill_at: Option<String>,
    /// An e1000 NIC with this MAC: Bochs on its virtual network (`ethmod=vnet`), QEMU on its
    /// user-mode network.
    pub e1000: Option<[u8; 6]>,
    /// Console input: typed into COM1 through a pseudo-terminal, each feed once the
    /// transcript shows its trigger (crate::serial_input). Empty: COM1 is output only.
    pub input: Vec<Feed>,
    /// A person types: this process's standard input is forwarded to COM1 (through a
    /// pseudo-terminal, as `input`), in raw mode when it is a terminal, until Ctrl-]
    /// ([`crate::serial_input::QUIT`]) or SIGINT/SIGTERM/SIGHUP, which end the run.
    pub keyboard: bool,
}

impl RunSpec {
    pub fn new(platform: Platform, image: impl Into<PathBuf>) -> Self {
        RunSpec {
            platform,
            image: image.into(),
            cpu_model: match platform {
                Platform::Qemu => "max".into(),
                Platform::Kvm => "host".into(),
                _ => bochs::DEFAULT_MODEL.into(),
            },
            cpus: 1,
            megs: 512,
            timeout: Duration::from_secs(120),
            serial_out: None,
            echo: false,
            keep_work_dir: false,
            drives: Vec::new(),
            nvme: Vec::new(),
            q35: false,
            kill_at: None,
            e1000: None,
            input: Vec::new(),
            keyboard: false,
        }
    }
}

/// How a run ended.
#[derive(Debug)]
pub struct RunOutcome {
    pub platform: Platform,
    pub transcript: String,
    /// The kernel's exit line, if it printed one.
    pub exit: Option<KernelExit>,
    pub timed_out: bool,
    /// The emulator's exit status (unreliable for Bochs; informative only).
    pub emulator_status: Option<ExitStatus>,
    pub wall: Duration,
    /// The work directory, if kept.
    pub work_dir: Option<PathBuf>,
    /// The tail of the emulator's own log and stderr, for diagnosing a run without exit line.
    pub emulator_log_tail: String,
    /// The run was ended on purpose at [`RunSpec::kill_at`].
    pub killed: bool,
    /// The person ended the run ([`RunSpec::keyboard`]: Ctrl-] or a signal).
    pub quit: bool,
}

/// Exit code of `bulkhead-boot run` when the wall-clock timeout hit.
pub const STATUS_TIMEOUT: i32 = 124;
/// Exit code when the emulator stopped without the kernel's exit line.
pub const STATUS_NO_VERDICT: i32 = 125;
/// Exit code when the person ended the run (Ctrl-] or a signal) before the kernel's verdict,
/// as a shell reports a command ended by SIGINT.
pub const STATUS_QUIT: i32 = 130;

impl RunOutcome {
    /// The kernel's status, or 124 (timeout) / 125 (no exit line).
    pub fn status_code(&self) -> i32 {
        match (&self.exit, self.timed_out) {
            (Some(e), _) => i32::from(e.code),
            (None, _) if self.quit => STATUS_QUIT,
            (None, true) => STATUS_TIMEOUT,
            (None, false) => STATUS_NO_VERDICT,
        }
    }

    /// One line for humans.
    pub fn summary(&self) -> String {
        match (&self.exit, self.timed_out) {
            (Some(e), _) => format!(
                "{}: kernel exit status {} ({}) after {:.1} s",
                self.platform.name(),
                e.code,
                e.name,
                self.wall.as_secs_f64()
            ),
            (None, true) => format!(
                "{}: timed out after {:.1} s without an exit line",
                self.platform.name(),
                self.wall.as_secs_f64()
            ),
            (None, _) if self.quit => format!(
                "{}: ended from the keyboard after {:.1} s",
                self.platform.name(),
                self.wall.as_secs_f64()
            ),
            (None, false) if self.killed => format!(
                "{}: killed on purpose (simulated power loss) after {:.1} s",
                self.platform.name(),
                self.wall.as_secs_f64()
            ),
            (None, false) => format!(
                "{}: emulator stopped ({}) without the kernel's exit line",
                self.platform.name(),
                self.emulator_status
                    .map_or("unknown status".into(), |s| s.to_string())
            ),
        }
    }

    /// Whether the transcript shows `needle` where only its rightful author can print it
    /// (a guest console line for a needle starting with `[`, the hypervisor's own lines
    /// otherwise: [`crate::transcript::shows`]).
    pub fn saw(&self, needle: &str) -> bool {
        crate::transcript::shows(&self.transcript, needle)
    }

    /// Whether `needle` appears anywhere in the transcript, guest lines included (for
    /// assertions that something must appear nowhere).
    pub fn contains(&self, needle: &str) -> bool {
        self.transcript.contains(needle)
    }

    /// Whether VM `vm`'s console printed a line containing `needle`.
    pub fn guest_said(&self, vm: &str, needle: &str) -> bool {
        crate::transcript::guest_lines(&self.transcript, vm).any(|l| l.contains(needle))
    }
}

fn require(what: &'static str, path: &Path) -> Result<(), BootError> {
    if path.exists() {
        Ok(())
    } else {
        Err(BootError::Missing {
            what,
            path: path.to_path_buf(),
        })
    }
}

fn find_program(name: &str) -> Result<PathBuf, BootError> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or(BootError::Missing {
            what: "emulator",
            path: PathBuf::from(name),
        })
}

/// The kernel's first line; a run that never printed it did not reach the kernel.
pub const KERNEL_BANNER: &str = "Bulkhead ";

/// How often a run is retried when the emulator itself crashes while the kernel ran.
const EMULATOR_CRASH_RETRIES: u32 = 2;
/// How often when it crashed before the kernel printed anything: nothing of the test ran, and
/// under load (several Bochs on two cores) the display crash right after the bootloader's
/// 800x600x24 mode switch was seen three times in a row.
const EMULATOR_EARLY_CRASH_RETRIES: u32 = 5;

/// How to give each Bochs its own network namespace, if this machine allows it.
///
/// Bochs's RFB display (the only headless display in Debian's build) listens on the first
/// free port from 5900; a second concurrent Bochs that has to fall back to another port
/// crashes in its Cirrus display refresh (`bx_svga_cirrus_c::update`, seen as SIGSEGV in
/// about one run in five). In a private network namespace every instance gets port 5900
/// and two runs at once never collide. Root uses `unshare -n`; other users `unshare -rn`
/// (user namespaces). Probed once.
fn namespace_prefix() -> Option<&'static [&'static str]> {
    static PREFIX: std::sync::OnceLock<Option<&'static [&'static str]>> =
        std::sync::OnceLock::new();
    *PREFIX.get_or_init(|| {
        let candidates: [&'static [&'static str]; 2] = [&["unshare", "-n"], &["unshare", "-rn"]];
        let found = candidates.into_iter().find(|p| {
            Command::new(p[0])
                .args(&p[1..])
                .arg("true")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        });
        if found.is_none() {
            eprintln!(
                "bulkhead-boot: cannot create network namespaces (unshare); concurrent Bochs runs may crash \
                 in Bochs's RFB display, so run them one at a time"
            );
        }
        found
    })
}

/// Whether Bochs ended on a triple fault (a guest's or bare kernel's deliberate reset with
/// `reset_on_triple_fault=0`), not a crash: Bochs 2.7 says "exception(): 3rd (13) exception
/// with no resolution", older builds "3rd exception with no resolution".
fn is_triple_fault(emulator_log_tail: &str) -> bool {
    emulator_log_tail
        .lines()
        .any(|l| l.contains("3rd") && l.contains("exception with no resolution"))
}

/// Runs the image and waits for the verdict.
///
/// Bochs 2.7 occasionally dies in its own display code (SIGSEGV in
/// `bx_svga_cirrus_c::update`, called from the VGA refresh timer), whatever the guest does,
/// and under load has been seen to end early with no output at all. The kernel can end Bochs
/// only after printing its exit line (the shutdown port) or by a host triple fault, which Bochs
/// logs as "3rd exception with no resolution"; so a run where the emulator ended by itself
/// before the timeout, without the kernel's exit line and without that triple fault, is the
/// emulator's failure and is retried, at most twice while the kernel ran and five times before
/// it started (counted apart; with extra drives only if they are image files, restored before
/// the retry) and
/// said on stderr with its log tail. A
/// deterministic failure still fails every attempt. A run the kernel ended, that timed out, or
/// that triple-faulted the host is never retried.
pub fn run(spec: &RunSpec) -> Result<RunOutcome, BootError> {
    // Early and late crashes are counted apart: a retry that dies before the kernel started
    // does not use up the budget of crashes while it ran (CI saw late, early, late in a row).
    let (mut early_attempts, mut late_attempts) = (0, 0);
    // Extra drives are used in place, so a retry must start from them as they were: image
    // files up to 256 MiB are copied first (block devices and larger files are not, and a
    // crash with them attached is not retried).
    let backup = DriveBackup::take(spec);
    loop {
        let outcome = run_once(spec)?;
        let emulator_crashed = outcome.exit.is_none()
            && !outcome.timed_out
            && outcome.emulator_status.is_some()
            && !is_triple_fault(&outcome.emulator_log_tail)
            && !outcome.transcript.contains("bulkhead: PANIC")
            && !outcome.killed
            && !outcome.quit;
        // Once the kernel ran it may have written the drives: a retry restores them first.
        let drives_touched = (!spec.drives.is_empty() || !spec.nvme.is_empty())
            && outcome.transcript.contains(KERNEL_BANNER);
        let restored = emulator_crashed
            && drives_touched
            && backup.as_ref().is_some_and(|b| b.restore(spec).is_ok());
        if emulator_crashed && drives_touched && !restored {
            eprintln!(
                "bulkhead-boot: the emulator crashed ({}) while the kernel ran with drives attached; not retried (the drives may have changed)\n--- emulator log tail ---\n{}",
                outcome.emulator_status.map_or("unknown".into(), |s| s.to_string()),
                outcome.emulator_log_tail
            );
            return Ok(outcome);
        }
        let early = !outcome.transcript.contains(KERNEL_BANNER);
        let (attempts, limit) = if early {
            (&mut early_attempts, EMULATOR_EARLY_CRASH_RETRIES)
        } else {
            (&mut late_attempts, EMULATOR_CRASH_RETRIES)
        };
        if !emulator_crashed || *attempts >= limit {
            return Ok(outcome);
        }
        *attempts += 1;
        let attempt = *attempts;
        eprintln!(
            "bulkhead-boot: the emulator crashed ({}) {}; retrying ({attempt}/{limit})\n--- emulator log tail ---\n{}",
            outcome.emulator_status.map_or("unknown".into(), |s| s.to_string()),
            if early { "before the kernel started" } else { "while the kernel ran" },
            outcome.emulator_log_tail
        );
    }
}

/// Copies of a run's extra drives (image files only), to start a retried run from the same
/// drives.
struct DriveBackup {
    dir: tempfile::TempDir,
}

impl DriveBackup {
    const MAX_BYTES: u64 = 256 << 20;

    fn files(spec: &RunSpec) -> impl Iterator<Item = &PathBuf> {
        spec.drives.iter().chain(spec.nvme.iter())
    }

    fn take(spec: &RunSpec) -> Option<DriveBackup> {
        let mut files = Self::files(spec).peekable();
        files.peek()?;
        let small_files = Self::files(spec)
            .all(|f| std::fs::metadata(f).is_ok_and(|m| m.is_file() && m.len() <= Self::MAX_BYTES));
        if !small_files {
            return None;
        }
        let dir = tempfile::tempdir().ok()?;
        for (i, f) in files.enumerate() {
            std::fs::copy(f, dir.path().join(i.to_string())).ok()?;
        }
        Some(DriveBackup { dir })
    }

    fn restore(&self, spec: &RunSpec) -> std::io::Result<()> {
        for (i, f) in Self::files(spec).enumerate() {
            std::fs::copy(self.dir.path().join(i.to_string()), f)?;
        }
        Ok(())
    }
}

fn run_once(spec: &RunSpec) -> Result<RunOutcome, BootError> {
    require("disk image", &spec.image)?;
    let dir = tempfile::Builder::new()
        .prefix("bulkhead-run-")
        .tempdir()
        .map_err(io(
            "cannot create a work directory in",
            std::env::temp_dir(),
        ))?;
    let work = dir.path().to_path_buf();
    // Each run boots its own copy: Bochs locks its disk and UEFI writes to the ESP, so two
    // runs of one image must not share the file.
    let disk = work.join("disk.img");
    std::fs::copy(&spec.image, &disk).map_err(io("cannot copy the image to", &disk))?;
    let serial = work.join("serial.txt");
    std::fs::write(&serial, b"").map_err(io("cannot create", &serial))?;
    let stdout_path = work.join("emulator.stdout");
    let stderr_path = work.join("emulator.stderr");
    let emulator_log = work.join("emulator.log");
    // Console input: the relay copies COM1's output into `serial` and types the feeds and
    // what the person types.
    let mut relay: Option<Relay> = None;
    let quit = Arc::new(AtomicBool::new(false));
    // Raw mode for the person's terminal while the run lasts (restored on drop).
    let mut raw_terminal: Option<RawMode> = None;
    let mut console_pty = || -> Result<Option<PathBuf>, BootError> {
        if spec.input.is_empty() && !spec.keyboard {
            return Ok(None);
        }
        let pty = Pty::open().map_err(io("cannot open a pseudo-terminal for", &serial))?;
        let slave = pty.slave_path.clone();
        let keyboard = spec.keyboard.then(|| {
            crate::serial_input::quit_on_signals();
            Keyboard {
                fd: libc::STDIN_FILENO,
                quit: quit.clone(),
            }
        });
        // SAFETY: isatty only inspects the descriptor.
        if spec.keyboard && unsafe { libc::isatty(libc::STDIN_FILENO) } == 1 {
            raw_terminal = Some(
                RawMode::enter(libc::STDIN_FILENO)
                    .map_err(io("cannot put the terminal in raw mode:", "/dev/stdin"))?,
            );
        }
        relay = Some(
            Relay::start_with(pty, &serial, spec.input.clone(), keyboard)
                .map_err(io("cannot relay the console to", &serial))?,
        );
        Ok(Some(slave))
    };

    let mut command = match spec.platform {
        Platform::Bochs | Platform::BochsUefi => {
            if !spec.nvme.is_empty() {
                return Err(BootError::Usage(
                    "Bochs emulates no NVMe controller: run NVMe drives with --platform qemu"
                        .into(),
                ));
            }
            if bochs::BROKEN_MODELS.contains(&spec.cpu_model.as_str()) {
                return Err(BootError::Usage(format!(
                    "Bochs CPU model {} crashes Bochs 2.7; pick another",
                    spec.cpu_model
                )));
            }
            let firmware = if spec.platform == Platform::Bochs {
                Firmware::bios()
            } else {
                Firmware::uefi()
            };
            for f in firmware.files() {
                require("firmware", f)?;
            }
            let config = BochsConfig {
                cpu_model: spec.cpu_model.clone(),
                cpus: spec.cpus,
                ips: bochs::IPS,
                megs: spec.megs,
                firmware,
                disk: disk.clone(),
                drives: spec.drives.clone(),
                serial: match console_pty()? {
                    Some(tty) => SerialBackend::Term(tty),
                    None => SerialBackend::File(serial.clone()),
                },
                log: emulator_log.clone(),
                e1000: spec.e1000.map(|mac| bochs::E1000Nic {
                    mac,
                    tftp_root: work.clone(),
                }),
            };
            let rc = work.join("bochsrc");
            std::fs::write(&rc, config.render()).map_err(io("cannot write", &rc))?;
            // The debugger is compiled in: a command file with `c` makes Bochs run at once.
            let cmds = work.join("debugger.rc");
            std::fs::write(&cmds, "c\n").map_err(io("cannot write", &cmds))?;
            let bochs = find_program("bochs-bin")?;
            let mut c = match namespace_prefix() {
                Some(prefix) => {
                    let mut c = Command::new(prefix[0]);
                    c.args(&prefix[1..]).arg(&bochs);
                    c
                }
                None => Command::new(&bochs),
            };
            c.arg("-q")
                .arg("-unlock")
                .arg("-f")
                .arg(&rc)
                .arg("-rc")
                .arg(&cmds);
            c
        }
        Platform::Qemu | Platform::Kvm => {
            let accel = if spec.platform == Platform::Kvm {
                qemu::kvm_nested_vmx().map_err(|why| BootError::PlatformUnavailable {
                    platform: "kvm",
                    why,
                })?;
                Accel::Kvm
            } else {
                Accel::Tcg
            };
            require("OVMF firmware", Path::new(qemu::OVMF_CODE))?;
            let vars = work.join("OVMF_VARS.fd");
            std::fs::copy(qemu::OVMF_VARS, &vars)
                .map_err(io("cannot copy OVMF variables to", &vars))?;
            let config = QemuConfig {
                accel,
                cpu: spec.cpu_model.clone(),
                megs: spec.megs,
                cpus: spec.cpus,
                disk: disk.clone(),
                drives: spec.drives.clone(),
                nvme: spec.nvme.clone(),
                q35: spec.q35,
                vars,
                serial: match console_pty()? {
                    Some(tty) => QemuSerial::Tty(tty),
                    None => QemuSerial::File(serial.clone()),
                },
                e1000: spec.e1000,
            };
            let mut c = Command::new(find_program("qemu-system-x86_64")?);
            c.args(config.args());
            c
        }
    };
    command
        .current_dir(&work)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout_path).map_err(io("cannot create", &stdout_path))?)
        .stderr(std::fs::File::create(&stderr_path).map_err(io("cannot create", &stderr_path))?);

    let start = Instant::now();
    let mut child = command
        .spawn()
        .map_err(io("cannot start the emulator for", &spec.image))?;
    let watched = watch(&mut child, &serial, spec, start, &quit);
    if let Some(mut r) = relay {
        r.finish();
    }
    drop(raw_terminal);
    let (transcript, timed_out, emulator_status, killed) = watched?;
    let quit = (quit.load(Ordering::Acquire)
        || (spec.keyboard && crate::serial_input::signalled()))
        && parse_exit(&transcript).is_none();
    let wall = start.elapsed();

    let mut emulator_log_tail = String::new();
    for p in [&stderr_path, &emulator_log] {
        if let Ok(text) = std::fs::read_to_string(p) {
            let lines: Vec<&str> = text.lines().collect();
            for l in &lines[lines.len().saturating_sub(15)..] {
                emulator_log_tail.push_str(l);
                emulator_log_tail.push('\n');
            }
        }
    }
    if let Some(out) = &spec.serial_out {
        std::fs::write(out, &transcript).map_err(io("cannot write the transcript to", out))?;
    }
    let work_dir = if spec.keep_work_dir {
        Some(dir.keep())
    } else {
        None
    };
    Ok(RunOutcome {
        platform: spec.platform,
        exit: parse_exit(&transcript),
        transcript,
        timed_out,
        emulator_status,
        wall,
        work_dir,
        emulator_log_tail,
        killed,
        quit,
    })
}

/// Follows the serial file until the kernel's exit line, the emulator's end, or the timeout.
fn watch(
    child: &mut Child,
    serial: &Path,
    spec: &RunSpec,
    start: Instant,
    quit: &AtomicBool,
) -> Result<(String, bool, Option<ExitStatus>, bool), BootError> {
    let mut file = std::fs::File::open(serial).map_err(io("cannot open", serial))?;
    let mut bytes = Vec::new();
    let mut offset = 0u64;
    let mut exit_seen_at: Option<Instant> = None;
    let mut stdout = std::io::stdout();
    loop {
        let status = child
            .try_wait()
            .map_err(io("cannot wait for the emulator of", &spec.image))?;
        // Read whatever arrived (also after the emulator ended: the last bytes).
        file.seek(SeekFrom::Start(offset))
            .map_err(io("cannot read", serial))?;
        let mut chunk = Vec::new();
        file.read_to_end(&mut chunk)
            .map_err(io("cannot read", serial))?;
        if !chunk.is_empty() {
            offset += chunk.len() as u64;
            if spec.echo {
                let _ = stdout.write_all(&chunk);
                let _ = stdout.flush();
            }
            bytes.extend_from_slice(&chunk);
            if let Some(at) = &spec.kill_at {
                // Only once the whole line has arrived.
                let text = String::from_utf8_lossy(&bytes);
                if text
                    .find(at.as_str())
                    .is_some_and(|i| text[i..].contains('\n'))
                {
                    let _ = child.kill();
                    let status = child.wait().ok();
                    return Ok((
                        String::from_utf8_lossy(&bytes).into_owned(),
                        false,
                        status,
                        true,
                    ));
                }
            }
            if exit_seen_at.is_none() && parse_exit(&String::from_utf8_lossy(&bytes)).is_some() {
                exit_seen_at = Some(Instant::now());
            }
        }
        if let Some(status) = status {
            return Ok((
                String::from_utf8_lossy(&bytes).into_owned(),
                false,
                Some(status),
                false,
            ));
        }
        // The kernel asked the emulator to stop; give it a moment, then end it ourselves
        // (e.g. QEMU without isa-debug-exit, or real-hardware-style halting).
        let lingering = exit_seen_at.is_some_and(|t| t.elapsed() > Duration::from_secs(3));
        let timed_out = start.elapsed() > spec.timeout;
        let quitting =
            quit.load(Ordering::Acquire) || (spec.keyboard && crate::serial_input::signalled());
        if lingering || timed_out || quitting {
            let _ = child.kill();
            let status = child.wait().ok();
            file.seek(SeekFrom::Start(offset))
                .map_err(io("cannot read", serial))?;
            let mut rest = Vec::new();
            let _ = file.read_to_end(&mut rest);
            if spec.echo {
                let _ = stdout.write_all(&rest);
            }
            bytes.extend_from_slice(&rest);
            return Ok((
                String::from_utf8_lossy(&bytes).into_owned(),
                timed_out && !lingering && !quitting,
                status,
                false,
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_triple_fault_is_not_taken_for_a_crash() {
        // Bochs 2.7 (Debian 12) and older wordings.
        assert!(is_triple_fault(
            "Bochs is exiting with the following message:\n[CPU0  ] exception(): 3rd (13) exception with no resolution\n"
        ));
        assert!(is_triple_fault("[CPU0  ] 3rd exception with no resolution"));
        assert!(!is_triple_fault(
            "Bochs is exiting with the following message:\n[XGUI  ] cannot connect to X server\n"
        ));
    }

    #[test]
    fn a_retry_starts_from_the_drives_as_they_were() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.img"), dir.path().join("b.img"));
        std::fs::write(&a, b"store A").unwrap();
        std::fs::write(&b, b"store B").unwrap();
        let mut spec = RunSpec::new(Platform::Bochs, dir.path().join("x.img"));
        spec.drives = vec![a.clone()];
        spec.nvme = vec![b.clone()];
        let backup = DriveBackup::take(&spec).expect("small image files are copied");
        std::fs::write(&a, b"written by a crashed run").unwrap();
        std::fs::write(&b, b"also").unwrap();
        backup.restore(&spec).unwrap();
        assert_eq!(std::fs::read(&a).unwrap(), b"store A");
        assert_eq!(std::fs::read(&b).unwrap(), b"store B");
        // Nothing to copy without drives; a missing drive file is not backed up.
        assert!(DriveBackup::take(&RunSpec::new(Platform::Bochs, "x.img")).is_none());
        spec.drives = vec![dir.path().join("missing.img")];
        assert!(DriveBackup::take(&spec).is_none());
    }
}
