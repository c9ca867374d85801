//! `bulkhead-boot bench` (`scripts/bench`): Bulkhead's benchmarks in one report.
//!
//! Every figure comes from a run made here, in Bochs with `clock: sync=none` and
//! `ips=50000000`: time inside the emulated machine is virtual (the TSC counts emulated work,
//! not host seconds) and repeatable. The runs:
//!
//! 1. `selftest.elf` under Bulkhead: exit round trips timed by the guest with RDTSC.
//! 2. `virtio-client.elf` under Bulkhead: virtio-blk passes and 1,000 pings, with the exits
//!    (EXIT_STATS deltas) and device interrupts taken during each.
//! 3. The Linux test guest under Bulkhead (no virtio devices, `bulkhead.checks=workload`),
//!    with console timestamps (TSC ticks since the first VM entry).
//! 4. The same bzImage, initramfs and command line booted by Bochs directly from a SYSLINUX
//!    disk (`scripts/bare-linux-image`), no hypervisor; it ends with `bulkhead.end=reboot`, a
//!    triple fault, which stops Bochs (`reset_on_triple_fault=0`, `panic: action=fatal`).
//! 5. File sizes of the kernel ELF (and its loaded segments) and of the BIOS/UEFI images,
//!    and the per-VM memory the hypervisor reports at VM creation.
//!
//! 6. The SMP rows (`smp.rs`) on a 2-CPU Bochs: round trips on CPU 0 and an application
//!    processor, a dedicated real-time VM with and without a noisy neighbour, the kick latency.
//! 7. The interrupt rows (`irq.rs`): the `irq-bench` guest on skylake_x and arrandale, the
//!    SMP Linux guest with 1, 2 and 4 vCPUs and idle (`bench --only irq` runs just these).
//! 8. The Debian rows (`debian.rs`): Debian's stock kernel to userspace under Bulkhead and on
//!    bare Bochs (`bench --only debian`).
//! 9. The snapshot rows (`snapshot.rs`): the Linux test guest snapshotted in its shell and
//!    restored through the serial shell, beside a `forever.elf` VM (`bench --only snapshot`).
//!
//! The parsers (`figures.rs`, `smp.rs`, `irq.rs`, `snapshot.rs`) are pure functions over transcript text, unit-tested
//! (`tests.rs`), so a change of an output format breaks a test instead of silently emptying
//! the report.

use crate::error::{io, BootError};
use crate::image::{
    build_bios_image, build_guests, build_images, build_kernel, guest_dir, kernel_path,
    pack_bundle, workspace_root,
};
use crate::run::{run, Platform, RunOutcome, RunSpec};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Section names, in report order.
pub const SEC_EXITS: &str = "Exit round trips";
pub const SEC_BLK: &str = "virtio-blk";
pub const SEC_NET: &str = "virtio-net";
pub const SEC_LINUX: &str = "Linux guest";
pub const SEC_SIZE: &str = "Image and memory";

/// Whether a figure was measured in this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Measured,
    /// Not run (smoke mode).
    Skipped,
    /// Run, but the transcript lacked the line (a failure of the benchmark).
    Missing,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Measured => "measured",
            Status::Skipped => "skipped",
            Status::Missing => "missing",
        }
    }
}

/// One row of the report.
#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    pub section: String,
    pub name: String,
    pub value: Option<f64>,
    pub status: Status,
    pub unit: String,
    pub method: String,
}

impl Figure {
    pub fn new(section: &str, name: &str, value: Option<f64>, unit: &str, method: &str) -> Self {
        Figure {
            section: section.into(),
            name: name.into(),
            status: if value.is_some() {
                Status::Measured
            } else {
                Status::Missing
            },
            value,
            unit: unit.into(),
            method: method.into(),
        }
    }

    pub fn skipped(mut self) -> Self {
        self.value = None;
        self.status = Status::Skipped;
        self
    }
}

/// The whole report.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub date: String,
    pub bochs_cpu: String,
    pub bochs_version: String,
    pub smoke: bool,
    pub figures: Vec<Figure>,
}

impl Report {
    /// The figure named `name` (names are unique).
    pub fn get(&self, name: &str) -> Option<&Figure> {
        self.figures.iter().find(|f| f.name == name)
    }

    /// Figures that should have been measured and were not.
    pub fn missing(&self) -> Vec<&Figure> {
        self.figures
            .iter()
            .filter(|f| f.status == Status::Missing)
            .collect()
    }

    pub fn to_json(&self) -> String {
        let figures: Vec<serde_json::Value> = self
            .figures
            .iter()
            .map(|f| {
                serde_json::json!({
                    "section": f.section,
                    "name": f.name,
                    "value": f.value,
                    "status": f.status.name(),
                    "unit": f.unit,
                    "method": f.method,
                })
            })
            .collect();
        let v = serde_json::json!({
            "date": self.date,
            "bochs_cpu": self.bochs_cpu,
            "bochs_version": self.bochs_version,
            "smoke": self.smoke,
            "figures": figures,
        });
        let mut s = serde_json::to_string_pretty(&v).unwrap_or_default();
        s.push('\n');
        s
    }

    /// Parses what [`Report::to_json`] wrote; `Err` says what is malformed.
    pub fn from_json(text: &str) -> Result<Self, String> {
        let v: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let s = |v: &serde_json::Value, k: &str| -> Result<String, String> {
            v.get(k)
                .and_then(|x| x.as_str())
                .map(str::to_string)
                .ok_or_else(|| format!("no string '{k}'"))
        };
        let mut figures = Vec::new();
        for f in v
            .get("figures")
            .and_then(|f| f.as_array())
            .ok_or("no 'figures' array")?
        {
            let status = match s(f, "status")?.as_str() {
                "measured" => Status::Measured,
                "skipped" => Status::Skipped,
                "missing" => Status::Missing,
                other => return Err(format!("unknown status '{other}'")),
            };
            let value = match f.get("value") {
                Some(serde_json::Value::Null) | None => None,
                Some(x) => Some(x.as_f64().ok_or("a value is not a number")?),
            };
            if (status == Status::Measured) != value.is_some() {
                return Err(format!(
                    "figure '{}': status {} with value {value:?}",
                    s(f, "name")?,
                    status.name()
                ));
            }
            figures.push(Figure {
                section: s(f, "section")?,
                name: s(f, "name")?,
                value,
                status,
                unit: s(f, "unit")?,
                method: s(f, "method")?,
            });
        }
        Ok(Report {
            date: s(&v, "date")?,
            bochs_cpu: s(&v, "bochs_cpu")?,
            bochs_version: s(&v, "bochs_version")?,
            smoke: v.get("smoke").and_then(|x| x.as_bool()).unwrap_or(false),
            figures,
        })
    }

    /// The markdown table: a header line, then one table with a bold row per section.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "Measured {} on Bochs {} with CPU model `{}`{}.\n",
            self.date,
            self.bochs_version,
            self.bochs_cpu,
            if self.smoke { " (smoke mode)" } else { "" }
        );
        let _ = writeln!(s, "| Metric | Value | Unit | Method |");
        let _ = writeln!(s, "| --- | ---: | --- | --- |");
        let mut section = "";
        for f in &self.figures {
            if f.section != section {
                section = &f.section;
                let _ = writeln!(s, "| **{section}** | | | |");
            }
            let value = match f.value {
                Some(v) => format_value(v),
                None => f.status.name().to_string(),
            };
            let _ = writeln!(s, "| {} | {} | {} | {} |", f.name, value, f.unit, f.method);
        }
        s
    }
}

/// Whole numbers as such (with thousands separators), others with 2 significant decimals.
pub fn format_value(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        let digits = format!("{}", v.abs() as u64);
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        if v < 0.0 {
            format!("-{out}")
        } else {
            out
        }
    } else if v.abs() >= 100.0 {
        format!("{v:.1}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

pub mod debian;
mod figures;
pub mod irq;
pub mod kvmclock;
pub mod net;
pub mod pvidle;
pub mod smp;
pub mod snapshot;
pub mod store;

pub use figures::*;

// ---- running ---------------------------------------------------------------------------------

/// What `bench` does.
#[derive(Debug, Clone)]
pub struct Options {
    pub cpu: String,
    pub out: PathBuf,
    /// Only the selftest run and the sizes; other rows are marked skipped.
    pub smoke: bool,
    /// Emulated CPUs of the SMP rows (the other rows run on one CPU, as the KVM comparison).
    pub cpus: u32,
    /// Progress on stderr.
    pub verbose: bool,
}

impl Options {
    pub fn new() -> Self {
        Options {
            cpu: crate::bochs::DEFAULT_MODEL.into(),
            out: default_out(),
            smoke: false,
            cpus: 2,
            verbose: true,
        }
    }
}

impl Default for Options {
    fn default() -> Self {
        Self::new()
    }
}

/// `target/bench/bench.json`.
pub fn default_out() -> PathBuf {
    workspace_root().join("target/bench/bench.json")
}

const SELFTEST_CONF: &str = "\
[vm.selftest]
kind = \"elf64\"
image = \"selftest.elf\"
memory = \"16M\"
[[vm.selftest.virtio-blk]]
size = \"1M\"
";
const VIRTIO_CONF: &str = "\
[vm.virtio]
kind = \"elf64\"
image = \"virtio-client.elf\"
memory = \"32M\"
[[vm.virtio.virtio-blk]]
size = \"20M\"
[[vm.virtio.virtio-net]]
mac = \"52:54:00:12:34:56\"
";
/// The command line both Linux runs share (Bulkhead adds nothing: the VM has no devices).
/// `tsc_early_khz` tells both kernels the TSC rate Bochs really runs at (one tick per emulated
/// instruction, [`crate::bochs::IPS`]): on bare Bochs the kernel would otherwise take the CPU
/// model's nominal CPUID frequency (3.5 GHz for Skylake-X) and its clock would run 70× slow;
/// under Bulkhead it matches what CPUID 0x15/0x16 already report (calibrated against the PIT).
pub const LINUX_CMDLINE: &str = concat!(
    "console=ttyS0,115200 panic=-1 reboot=t io_delay=none nolapic tsc=reliable no_timer_check ",
    "tsc_early_khz=50000 bulkhead.checks=workload"
);
const _: () = assert!(
    crate::bochs::IPS == 50_000_000,
    "LINUX_CMDLINE's tsc_early_khz must equal IPS / 1000"
);

fn linux_conf() -> String {
    format!(
        "[vm.linux]\nkind = \"linux\"\nimage = \"bzImage\"\ninitrd = \"initramfs.cpio.lz4\"\nmemory = \"64M\"\n\
         console-timestamps = true\ncmdline = \"{LINUX_CMDLINE}\"\n"
    )
}

/// The same Linux VM with its console on a virtio-console (`console=hvc0`) instead of COM1.
fn linux_hvc0_conf() -> String {
    let cmdline = LINUX_CMDLINE.replace("console=ttyS0,115200", "console=hvc0");
    format!(
        "[vm.linux]\nkind = \"linux\"\nimage = \"bzImage\"\ninitrd = \"initramfs.cpio.lz4\"\nmemory = \"64M\"\n\
         console-timestamps = true\ncmdline = \"{cmdline}\"\nvirtio-console = true\n"
    )
}

/// The exit count of `reason` (or `total`) in VM `vm`'s statistics.
fn other_err(what: String) -> BootError {
    BootError::Io {
        what,
        path: PathBuf::new(),
        source: std::io::Error::other("benchmark step failed"),
    }
}

/// A BIOS image with `conf` and `files` in its boot archive, in `dir`.
fn bundle_image(dir: &Path, conf: &str, files: &[PathBuf]) -> Result<PathBuf, BootError> {
    let bundle = dir.join("bundle");
    std::fs::create_dir_all(&bundle).map_err(io("cannot create", &bundle))?;
    let conf_path = bundle.join(vm::config::FILE_NAME);
    std::fs::write(&conf_path, conf).map_err(io("cannot write", &conf_path))?;
    for f in files {
        let dst = bundle.join(f.file_name().unwrap_or_default());
        std::fs::copy(f, &dst).map_err(io("cannot copy to", &dst))?;
    }
    let archive = pack_bundle(&bundle)?;
    let ramdisk = dir.join("archive.bin");
    std::fs::write(&ramdisk, archive).map_err(io("cannot write", &ramdisk))?;
    let image = dir.join("bulkhead-bios.img");
    build_bios_image(&kernel_path(), Some(&ramdisk), &image)?;
    Ok(image)
}

fn boot(
    o: &Options,
    what: &str,
    image: &Path,
    megs: u32,
    timeout: u64,
) -> Result<RunOutcome, BootError> {
    boot_on(o, what, image, megs, timeout, 1)
}

fn boot_on(
    o: &Options,
    what: &str,
    image: &Path,
    megs: u32,
    timeout: u64,
    cpus: u32,
) -> Result<RunOutcome, BootError> {
    boot_with_nic(o, what, image, megs, timeout, cpus, None)
}

/// As [`boot_on`], with an e1000 NIC on Bochs's virtual network when `e1000` is given.
fn boot_with_nic(
    o: &Options,
    what: &str,
    image: &Path,
    megs: u32,
    timeout: u64,
    cpus: u32,
    e1000: Option<[u8; 6]>,
) -> Result<RunOutcome, BootError> {
    let mut spec = RunSpec::new(Platform::Bochs, image);
    spec.e1000 = e1000;
    spec.cpu_model = o.cpu.clone();
    spec.cpus = cpus;
    spec.megs = megs;
    spec.timeout = Duration::from_secs(timeout);
    if o.verbose {
        eprintln!("bench: running {what} in Bochs ({})", o.cpu);
    }
    let outcome = run(&spec)?;
    if o.verbose {
        eprintln!("bench: {what}: {}", outcome.summary());
    }
    Ok(outcome)
}

/// Runs Bulkhead's test guests under Bulkhead with the bench config (one Bochs run, one CPU).
fn run_guest(
    o: &Options,
    what: &str,
    conf: &str,
    files: &[PathBuf],
    timeout: u64,
) -> Result<RunOutcome, BootError> {
    run_guest_on(o, what, conf, files, timeout, 1)
}

/// As [`run_guest`] on `o.cpus` emulated CPUs (the SMP rows).
fn run_guest_smp(
    o: &Options,
    what: &str,
    conf: &str,
    files: &[PathBuf],
    timeout: u64,
) -> Result<RunOutcome, BootError> {
    run_guest_on(o, what, conf, files, timeout, o.cpus.max(2))
}

fn run_guest_on(
    o: &Options,
    what: &str,
    conf: &str,
    files: &[PathBuf],
    timeout: u64,
    cpus: u32,
) -> Result<RunOutcome, BootError> {
    let dir = tempfile::tempdir().map_err(io(
        "cannot create a temporary directory in",
        std::env::temp_dir(),
    ))?;
    let image = bundle_image(dir.path(), conf, files)?;
    boot_on(o, what, &image, 512, timeout, cpus)
}

/// The Linux test guest's directory: `$BULKHEAD_LINUX_GUEST`, else `scripts/build-guest`'s.
pub(crate) fn linux_guest_dir() -> Result<PathBuf, BootError> {
    cached_guest_dir("BULKHEAD_LINUX_GUEST", "scripts/build-guest")
}

/// A guest build's directory: `$env`, else the last line `script` prints (it builds or takes
/// the guest from its cache).
fn cached_guest_dir(env: &str, script: &str) -> Result<PathBuf, BootError> {
    if let Some(d) = std::env::var_os(env) {
        return Ok(PathBuf::from(d));
    }
    let script = workspace_root().join(script);
    let out = std::process::Command::new(&script)
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(io("cannot run", &script))?;
    let text = String::from_utf8_lossy(&out.stdout);
    match (out.status.success(), text.lines().last()) {
        (true, Some(dir)) => Ok(PathBuf::from(dir.trim())),
        _ => Err(BootError::KernelBuild(format!(
            "{} failed ({})",
            script.display(),
            out.status
        ))),
    }
}

/// A SYSLINUX disk (`scripts/bare-linux-image`) that boots `files` (kernel, initramfs) of
/// `guest` with `cmdline` on bare Bochs; the image lives in the returned temporary directory.
fn bare_linux_image(
    guest: &Path,
    cmdline: &str,
    files: (&str, &str),
) -> Result<(tempfile::TempDir, PathBuf), BootError> {
    let dir = tempfile::tempdir().map_err(io(
        "cannot create a temporary directory in",
        std::env::temp_dir(),
    ))?;
    let img = dir.path().join("bare-linux.img");
    let script = workspace_root().join("scripts/bare-linux-image");
    let status = std::process::Command::new(&script)
        .arg(guest)
        .arg(&img)
        .arg(cmdline)
        .env("BARE_KERNEL", files.0)
        .env("BARE_INITRD", files.1)
        .stdout(std::process::Stdio::null())
        .status()
        .map_err(io("cannot run", &script))?;
    if !status.success() {
        return Err(other_err(format!(
            "scripts/bare-linux-image failed for {} ({status})",
            guest.display()
        )));
    }
    Ok((dir, img))
}

fn today() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    civil_date(secs / 86_400)
}

/// The proleptic Gregorian date of day `days` since 1970-01-01 (H. Hinnant's algorithm).
pub fn civil_date(days: u64) -> String {
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

fn bochs_version() -> String {
    std::process::Command::new("dpkg-query")
        .args(["-W", "-f=${Version}", "bochs"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "(version unknown)".into())
}

/// Builds what the benchmarks need, runs them, and writes the JSON report to `o.out`.
pub fn run_bench(o: &Options) -> Result<Report, BootError> {
    let say = |m: &str| {
        if o.verbose {
            eprintln!("bench: {m}");
        }
    };
    say("building the kernel, its images and the test guests");
    let kernel = build_kernel()?;
    let images_dir = workspace_root().join("target/bench/images");
    let images = build_images(&kernel, None, &images_dir)?;
    build_guests()?;
    let size = |p: &Path| std::fs::metadata(p).ok().map(|m| m.len());
    let kernel_elf = std::fs::read(&kernel).ok();

    let selftest = run_guest(
        o,
        "selftest (exit round trips)",
        SELFTEST_CONF,
        &[guest_dir().join("selftest.elf")],
        180,
    )?;
    let mut figures = selftest_figures(&selftest.transcript);
    if o.smoke {
        figures.extend(
            crate::bench::smp::smp_figures("", "", "", "", "")
                .into_iter()
                .map(Figure::skipped),
        );
    } else {
        use crate::bench::smp::{rt_conf, selftest_on_cpu_conf, KICK_CONF};
        let g = |n: &str| guest_dir().join(n);
        let cpu0 = run_guest_smp(
            o,
            "selftest on CPU 0 of 2",
            &selftest_on_cpu_conf(0),
            &[g("selftest.elf")],
            300,
        )?;
        let cpu1 = run_guest_smp(
            o,
            "selftest on CPU 1 of 2",
            &selftest_on_cpu_conf(1),
            &[g("selftest.elf")],
            300,
        )?;
        let rt_files = [g("rt-latency.elf"), g("noisy.elf")];
        let rt_alone = run_guest_smp(o, "real-time VM alone", &rt_conf(false), &rt_files, 300)?;
        let rt_noisy = run_guest_smp(
            o,
            "real-time VM beside a noisy VM",
            &rt_conf(true),
            &rt_files,
            300,
        )?;
        let kick = run_guest_smp(
            o,
            "kick latency (smp-kick)",
            KICK_CONF,
            &[g("smp-kick.elf")],
            300,
        )?;
        figures.extend(crate::bench::smp::smp_figures(
            &cpu0.transcript,
            &cpu1.transcript,
            &rt_alone.transcript,
            &rt_noisy.transcript,
            &kick.transcript,
        ));
    }

    figures.extend(irq::run(o)?);
    figures.extend(kvmclock::run(o)?);
    figures.extend(pvidle::run(o)?);
    figures.extend(debian::run(o)?);

    let (virtio, bulkhead_linux, bare_linux, hvc0_linux) = if o.smoke {
        (None, None, None, None)
    } else {
        let virtio = run_guest(
            o,
            "virtio-client (virtio-blk and virtio-net)",
            VIRTIO_CONF,
            &[guest_dir().join("virtio-client.elf")],
            600,
        )?;
        say("building the Linux test guest (scripts/build-guest; cached)");
        let guest = linux_guest_dir()?;
        let files = [guest.join("bzImage"), guest.join("initramfs.cpio.lz4")];
        let linux = run_guest(o, "Linux under Bulkhead", &linux_conf(), &files, 900)?;
        let hvc0 = run_guest(
            o,
            "Linux under Bulkhead, console on virtio-console",
            &linux_hvc0_conf(),
            &files,
            900,
        )?;
        let (_dir, bare_img) = bare_linux_image(
            &guest,
            &format!("{LINUX_CMDLINE} bulkhead.end=reboot"),
            ("bzImage", "initramfs.cpio.lz4"),
        )?;
        // The guest ends in a triple fault (bulkhead.end=reboot, reboot=t); Bochs, with
        // reset_on_triple_fault=0 and panics fatal, then exits.
        let bare = boot(o, "Linux on bare Bochs (no Bulkhead)", &bare_img, 64, 900)?;
        figures.extend(net::run(o, &files)?);
        figures.extend(store::run_rows(o, &files)?);
        figures.extend(snapshot::run(o, &files)?);
        (Some(virtio), Some(linux), Some(bare), Some(hvc0))
    };
    if o.smoke {
        figures.extend(net::net_figures("", "").into_iter().map(Figure::skipped));
        figures.extend(
            store::store_figures("", "", "")
                .into_iter()
                .map(Figure::skipped),
        );
        figures.extend(snapshot::run(o, &[])?);
    }

    match &virtio {
        Some(v) => figures.extend(virtio_figures(&v.transcript)),
        None => figures.extend(virtio_figures("").into_iter().map(Figure::skipped)),
    }
    match (&bulkhead_linux, &bare_linux) {
        (Some(a), Some(b)) => figures.extend(linux_figures(&LinuxRuns {
            bulkhead: &a.transcript,
            bulkhead_wall: Some(a.wall.as_secs_f64()),
            bare: &b.transcript,
            bare_wall: Some(b.wall.as_secs_f64()),
        })),
        _ => figures.extend(
            linux_figures(&LinuxRuns::default())
                .into_iter()
                .map(Figure::skipped),
        ),
    }
    match (&bulkhead_linux, &hvc0_linux) {
        (Some(a), Some(b)) => figures.extend(console_figures(&a.transcript, &b.transcript)),
        _ => figures.extend(console_figures("", "").into_iter().map(Figure::skipped)),
    }
    let empty = String::new();
    let transcript_of =
        |r: &Option<RunOutcome>| r.as_ref().map_or(&empty, |r| &r.transcript).clone();
    let (virtio_t, linux_t) = (transcript_of(&virtio), transcript_of(&bulkhead_linux));
    let vms = [
        (
            selftest.transcript.as_str(),
            "selftest",
            "selftest VM (16 MiB, virtio-blk)",
        ),
        (
            virtio_t.as_str(),
            "virtio",
            "virtio VM (32 MiB, virtio-blk + virtio-net)",
        ),
        (linux_t.as_str(), "linux", "Linux VM (64 MiB, no devices)"),
    ];
    let mut sizes = size_figures(
        kernel_elf.as_deref(),
        size(&images.bios),
        size(&images.uefi),
        &vms,
    );
    if o.smoke {
        for f in &mut sizes {
            if !f.name.contains("selftest VM") && f.name.starts_with("memory") {
                *f = f.clone().skipped();
            }
        }
    }
    figures.extend(sizes);

    let report = Report {
        date: today(),
        bochs_cpu: o.cpu.clone(),
        bochs_version: bochs_version(),
        smoke: o.smoke,
        figures,
    };
    if let Some(parent) = o.out.parent() {
        std::fs::create_dir_all(parent).map_err(io("cannot create", parent))?;
        // The transcripts the figures came from, next to the JSON, for checking them.
        let runs = [
            ("selftest", Some(&selftest)),
            ("virtio-client", virtio.as_ref()),
            ("linux-bulkhead", bulkhead_linux.as_ref()),
            ("linux-bare", bare_linux.as_ref()),
        ];
        for (name, run) in runs {
            if let Some(r) = run {
                let p = parent.join(format!("{name}.transcript.txt"));
                std::fs::write(&p, &r.transcript).map_err(io("cannot write", &p))?;
            }
        }
    }
    std::fs::write(&o.out, report.to_json()).map_err(io("cannot write", &o.out))?;
    Ok(report)
}

#[cfg(test)]
mod tests;
