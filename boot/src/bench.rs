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
//! The parsers below are pure functions over transcript text, unit-tested, so a change of an
//! output format breaks a test instead of silently emptying the report.

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

// ---- transcript parsing ---------------------------------------------------------------------

/// The first line of `text` containing `needle`.
pub fn line_with<'a>(text: &'a str, needle: &str) -> Option<&'a str> {
    text.lines().find(|l| l.contains(needle))
}

/// The value of the whitespace-separated `key=value` token in `line`.
pub fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

/// [`field`] as a number.
pub fn num(line: &str, key: &str) -> Option<f64> {
    field(line, key)?.parse().ok()
}

/// The selftest guest's `BENCH <name> median=<cycles> ...` median.
pub fn selftest_median(transcript: &str, name: &str) -> Option<f64> {
    num(
        line_with(transcript, &format!("guest selftest: BENCH {name} "))?,
        "median",
    )
}

/// The ticks of a console timestamp `[<vm> +<ticks>] ...` on `line`.
pub fn console_ticks(line: &str) -> Option<u64> {
    let start = line.find(" +")? + 2;
    line[start..].split(']').next()?.trim().parse().ok()
}

/// The ticks of the console line of `vm` containing `needle`.
pub fn ticks_of(transcript: &str, vm: &str, needle: &str) -> Option<u64> {
    let prefix = format!("[{vm} +");
    transcript
        .lines()
        .filter(|l| l.contains(&prefix))
        .find(|l| l.contains(needle))
        .and_then(console_ticks)
}

/// The Linux kernel's printk timestamp (`[    0.559125] text`) of the first message
/// containing `needle`, in seconds. Also finds it after a Bulkhead console prefix.
pub fn printk_seconds(transcript: &str, needle: &str) -> Option<f64> {
    let line = line_with(transcript, needle)?;
    line.split('[')
        .skip(1)
        .filter_map(|part| part.split(']').next())
        .map(str::trim)
        .filter(|t| t.contains('.'))
        .find_map(|t| t.parse().ok())
}

/// The per-VM memory report: (total, VMCS and bitmaps, EPT, device state) in bytes.
pub fn memory_beyond_ram(transcript: &str, vm: &str) -> Option<[u64; 4]> {
    let key = format!("vm {vm}: memory beyond guest RAM: ");
    let line = line_with(transcript, &key)?;
    let rest = &line[line.find(&key)? + key.len()..];
    let total = rest.split_whitespace().next()?.parse().ok()?;
    let grab = |label: &str| -> Option<u64> {
        let i = rest.find(label)? + label.len();
        rest[i..]
            .trim_start()
            .split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    };
    Some([
        total,
        grab("VMCS and bitmaps")?,
        grab("EPT")?,
        grab("device state")?,
    ])
}

/// The sizes of an ELF64 file's PT_LOAD segments: (count, bytes in the file, bytes in memory).
pub fn elf_load_sizes(elf: &[u8]) -> Option<(u64, u64, u64)> {
    let u16_at = |o: usize| Some(u16::from_le_bytes(elf.get(o..o + 2)?.try_into().ok()?));
    let u32_at = |o: usize| Some(u32::from_le_bytes(elf.get(o..o + 4)?.try_into().ok()?));
    let u64_at = |o: usize| Some(u64::from_le_bytes(elf.get(o..o + 8)?.try_into().ok()?));
    // ELF64 (class 2), little-endian (data 1).
    if elf.get(0..4)? != b"\x7fELF" || elf.get(4)? != &2 || elf.get(5)? != &1 {
        return None;
    }
    let phoff = usize::try_from(u64_at(0x20)?).ok()?;
    let phentsize = usize::from(u16_at(0x36)?);
    let phnum = usize::from(u16_at(0x38)?);
    let (mut count, mut file, mut mem) = (0, 0, 0);
    for i in 0..phnum {
        let ph = phoff + i * phentsize;
        if u32_at(ph)? == 1 {
            count += 1;
            file += u64_at(ph + 0x20)?;
            mem += u64_at(ph + 0x28)?;
        }
    }
    Some((count, file, mem))
}

// ---- figures from transcripts ---------------------------------------------------------------

const SELFTEST_METHOD: &str = "selftest guest under Bulkhead: RDTSC before and after, median of 64 samples after a warm-up (includes the RDTSC pair)";

/// The exit round-trip figures from the selftest run.
pub fn selftest_figures(transcript: &str) -> Vec<Figure> {
    let rows: [(&str, &str, &str); 9] = [
        ("cpuid", "CPUID", ""),
        ("hypercall-nop", "no-op hypercall (VMCALL NOP)", ""),
        (
            "multicall-1",
            "multicall, per operation, n = 1",
            "; call time / n",
        ),
        (
            "multicall-8",
            "multicall, per operation, n = 8",
            "; call time / n",
        ),
        (
            "multicall-32",
            "multicall, per operation, n = 32",
            "; call time / n",
        ),
        ("pio-in", "port I/O in (unclaimed port 0x2F0)", ""),
        ("pio-out", "port I/O out (COM1 scratch 0x3FF)", ""),
        ("mmio-read", "MMIO read (virtio MagicValue)", ""),
        ("mmio-write", "MMIO write (virtio QueueSel)", ""),
    ];
    let mut figures: Vec<Figure> = rows
        .iter()
        .map(|(key, label, extra)| {
            Figure::new(
                SEC_EXITS,
                label,
                selftest_median(transcript, key),
                "TSC ticks",
                &format!("{SELFTEST_METHOD}{extra}"),
            )
        })
        .collect();
    // The console byte: the hypervisor's handling time per UART THR write (issue 9: at most
    // about 400), and the guest-side round trip.
    let console = line_with(transcript, "guest selftest: BENCH console-byte ");
    figures.push(Figure::new(
        SEC_EXITS,
        "console byte (UART THR write)",
        console.and_then(|l| num(l, "handler")),
        "TSC ticks",
        "selftest guest: 2,048 OUTs to COM1's THR (0x3F8, 64 lines of 32 bytes); EXIT_STATS I/O ticks delta / I/O exit count delta: the hypervisor's handling per exit, VM exit to the next entry's bookkeeping",
    ));
    figures.push(Figure::new(
        SEC_EXITS,
        "console byte (UART THR write), guest round trip",
        console.and_then(|l| num(l, "median")),
        "TSC ticks",
        &format!("{SELFTEST_METHOD}; per byte of a 32-byte line"),
    ));
    // Switching the vCPU's extended state (XSAVE of every offered component + XRSTOR and
    // the XCR0 loads, or FXSAVE/FXRSTOR without XSAVE) once per VM switch (issue 13).
    let xstate = line_with(transcript, "vm selftest: extended state: ");
    figures.push(Figure::new(
        SEC_EXITS,
        "extended state (XSAVE) switch, per VM switch",
        xstate.and_then(|l| num(l, "avg")),
        "TSC ticks",
        "the selftest VM's report: ticks of XSETBV + XSAVE after each run and XSETBV + XRSTOR + XSETBV before it, divided by the number of runs (kernel/src/vmm/xsave.rs)",
    ));
    figures
}

/// The virtio-blk and virtio-net figures from the virtio-client run.
pub fn virtio_figures(transcript: &str) -> Vec<Figure> {
    let mut out = Vec::new();
    let mib = 1024.0 * 1024.0;
    for (key, label) in [
        ("blk-read-4k", "sequential read, 4 KiB requests"),
        ("blk-write-4k", "sequential write, 4 KiB requests"),
        ("blk-read-64k", "sequential read, 64 KiB requests"),
        ("blk-write-64k", "sequential write, 64 KiB requests"),
    ] {
        let line = line_with(transcript, &format!("guest virtio-client: BENCH {key} "));
        let get = |k: &str| line.and_then(|l| num(l, k));
        let bytes = get("bytes").filter(|b| *b > 0.0);
        let per_mib = |k: &str| Some(get(k)? * mib / bytes?);
        let how = "virtio-client guest (virtio-drivers 0.13), 16 MiB pass, 16 requests in flight";
        out.push(Figure::new(
            SEC_BLK,
            &format!("{label}: exits per MiB"),
            per_mib("exits"),
            "exits/MiB",
            &format!("{how}; EXIT_STATS hypercall before and after (all exit reasons, interrupt handling included)"),
        ));
        out.push(Figure::new(
            SEC_BLK,
            &format!("{label}: interrupts per MiB"),
            per_mib("interrupts"),
            "interrupts/MiB",
            &format!("{how}; device interrupts injected and taken by the guest's IRQ 5 handler (interrupt window opened after each completion batch)"),
        ));
        out.push(Figure::new(
            SEC_BLK,
            &format!("{label}: throughput"),
            get("kib_per_s").map(|k| k / 1024.0),
            "MiB/s (virtual)",
            &format!("{how}; bytes / RDTSC ticks of the pass, at the TSC rate of CPUID leaf 0x16"),
        ));
    }
    let ping = line_with(transcript, "guest virtio-client: BENCH ping ");
    let get = |k: &str| ping.and_then(|l| num(l, k));
    // Each echo is two packets: the request sent and the reply received.
    let packets = get("n").filter(|n| *n > 0.0).map(|n| 2.0 * n);
    let per_k = |k: &str| Some(get(k)? * 1000.0 / packets?);
    let how = "virtio-client guest: 1,000 ICMP echoes to the gateway, one at a time, polled; 2 packets per echo";
    out.push(Figure::new(
        SEC_NET,
        "exits per 1,000 packets",
        per_k("exits"),
        "exits",
        &format!("{how}; EXIT_STATS hypercall before and after"),
    ));
    out.push(Figure::new(
        SEC_NET,
        "interrupts per 1,000 packets",
        per_k("interrupts"),
        "interrupts",
        &format!("{how}; device interrupts injected and taken by the IRQ 6 handler (interrupt window opened after each echo)"),
    ));
    out.push(Figure::new(
        SEC_NET,
        "ping round trip (median)",
        get("median"),
        "TSC ticks",
        &format!("{how}; RDTSC from before the request is queued to the reply's arrival, median of 1,000"),
    ));
    let mhz = line_with(transcript, "guest virtio-client: ram=").and_then(|l| num(l, "tsc-mhz"));
    out.push(Figure::new(
        SEC_NET,
        "ping round trip (median), in virtual time",
        get("median")
            .zip(mhz.filter(|m| *m > 0.0))
            .map(|(t, m)| t / m),
        "µs (virtual)",
        "the median above / the TSC rate of CPUID leaf 0x16 (tsc-mhz)",
    ));
    out
}

/// Walls and transcripts of the two Linux runs.
#[derive(Debug, Default, Clone)]
pub struct LinuxRuns<'a> {
    pub bulkhead: &'a str,
    pub bulkhead_wall: Option<f64>,
    pub bare: &'a str,
    pub bare_wall: Option<f64>,
}

/// The Linux guest figures: under Bulkhead, bare, and their ratios.
pub fn linux_figures(r: &LinuxRuns<'_>) -> Vec<Figure> {
    let mut out = Vec::new();
    let s = SEC_LINUX;
    let bk = r.bulkhead;
    let tick_method =
        "hypervisor console timestamp (TSC ticks since the first VM entry) of the guest's line";
    let up = ticks_of(bk, "linux", "guest: userspace up");
    out.push(Figure::new(
        s,
        "Bulkhead: VM entry to userspace",
        up.map(|t| t as f64),
        "TSC ticks",
        &format!("{tick_method} `guest: userspace up`"),
    ));
    // The workload's ticks: from the console line before `workload sha256` (the guest prints
    // nothing in between) to that line.
    let sha_ticks = workload_ticks(bk, "guest: workload sha256");
    out.push(Figure::new(
        s,
        "Bulkhead: CPU-bound workload (sha256 of 2 MiB), hypervisor ticks",
        sha_ticks.map(|t| t as f64),
        "TSC ticks",
        "difference of the hypervisor console timestamps of the guest line before the workload and of `guest: workload sha256`",
    ));
    let uptime =
        |t: &str| line_with(t, "guest: userspace up uptime=").and_then(|l| num(l, "uptime"));
    let sha_ms = |t: &str| line_with(t, "guest: workload sha256 ").and_then(|l| num(l, "ms"));
    let spawn_ms = |t: &str| line_with(t, "guest: workload spawn ").and_then(|l| num(l, "ms"));
    let run_init = |t: &str| printk_seconds(t, "Run /init as init process");
    type Probe = fn(&str) -> Option<f64>;
    let probes: [(&str, &str, &str, Probe); 4] = [
        (
            "kernel start to /init (printk clock)",
            "s (guest)",
            "the guest kernel's printk timestamp of `Run /init as init process` (sched_clock)",
            run_init,
        ),
        (
            "uptime at userspace",
            "s (guest)",
            "/proc/uptime (jiffies, 10 ms) printed by /init in `guest: userspace up`",
            uptime,
        ),
        (
            "CPU-bound workload (sha256 of 2 MiB)",
            "ms (guest)",
            "/init's `workload sha256 ms=` (/proc/uptime before and after, 10 ms resolution)",
            sha_ms,
        ),
        (
            "fork+exec workload (20 × /bin/true)",
            "ms (guest)",
            "/init's `workload spawn ms=` (/proc/uptime before and after, 10 ms resolution)",
            spawn_ms,
        ),
    ];
    for (label, unit, method, probe) in probes {
        let a = probe(r.bulkhead);
        let b = probe(r.bare);
        out.push(Figure::new(
            s,
            &format!("Bulkhead: {label}"),
            a,
            unit,
            method,
        ));
        out.push(Figure::new(
            s,
            &format!("bare Bochs: {label}"),
            b,
            unit,
            method,
        ));
        out.push(Figure::new(
            s,
            &format!("ratio Bulkhead / bare: {label}"),
            a.zip(b.filter(|b| *b > 0.0)).map(|(a, b)| a / b),
            "×",
            "the two figures above, divided",
        ));
    }
    // The guests' own idea of the TSC rate: the clocks above are only comparable when the
    // two runs agree on it (and on the PIT they calibrate against).
    let tsc_mhz = |t: &str| {
        // "tsc: Detected <f> MHz TSC" after calibration, "... MHz processor" with
        // tsc_early_khz (the value given on the command line).
        let l = t.lines().find(|l| {
            l.contains("tsc: Detected ")
                && (l.ends_with(" MHz TSC") || l.ends_with(" MHz processor"))
        })?;
        let i = l.find("tsc: Detected ")? + "tsc: Detected ".len();
        let rest = &l[i..];
        rest.strip_suffix(" MHz TSC")
            .or_else(|| rest.strip_suffix(" MHz processor"))?
            .trim()
            .parse()
            .ok()
    };
    for (who, t) in [("Bulkhead", r.bulkhead), ("bare Bochs", r.bare)] {
        out.push(Figure::new(
            s,
            &format!("{who}: guest kernel's TSC frequency"),
            tsc_mhz(t),
            "MHz",
            "the guest kernel's `tsc: Detected <f> MHz TSC|processor` (both runs pass tsc_early_khz = the Bochs TSC rate)",
        ));
    }
    out.push(Figure::new(
        s,
        "Bulkhead: host wall time of the run",
        r.bulkhead_wall,
        "s (host)",
        "host clock around the Bochs process (emulator speed, not guest time; informative)",
    ));
    out.push(Figure::new(
        s,
        "bare Bochs: host wall time of the run",
        r.bare_wall,
        "s (host)",
        "host clock around the Bochs process (emulator speed, not guest time; informative)",
    ));
    out
}

/// Ticks from the guest console line before the one containing `needle` to that line.
pub fn workload_ticks(transcript: &str, needle: &str) -> Option<u64> {
    let stamped: Vec<(&str, u64)> = transcript
        .lines()
        .filter(|l| l.starts_with("[linux +"))
        .filter_map(|l| Some((l, console_ticks(l)?)))
        .collect();
    let i = stamped.iter().position(|(l, _)| l.contains(needle))?;
    let end = stamped[i].1;
    let start = stamped[..i]
        .iter()
        .rev()
        .find(|(l, _)| l.contains("guest: "))?
        .1;
    end.checked_sub(start)
}

/// Image sizes and the per-VM memory figures.
pub fn size_figures(
    kernel_elf: Option<&[u8]>,
    bios_bytes: Option<u64>,
    uefi_bytes: Option<u64>,
    vms: &[(&str, &str, &str)],
) -> Vec<Figure> {
    let s = SEC_SIZE;
    let mut out = Vec::new();
    let loads = kernel_elf.and_then(elf_load_sizes);
    out.push(Figure::new(
        s,
        "hypervisor kernel ELF, file size",
        kernel_elf.map(|e| e.len() as f64),
        "bytes",
        "size of target/x86_64-unknown-none/release/bulkhead (with symbols)",
    ));
    out.push(Figure::new(
        s,
        "hypervisor kernel, loaded segments in memory",
        loads.map(|(_, _, m)| m as f64),
        "bytes",
        "sum of p_memsz of the ELF's PT_LOAD program headers (code, data, bss)",
    ));
    out.push(Figure::new(
        s,
        "hypervisor kernel, loaded segments in the file",
        loads.map(|(_, f, _)| f as f64),
        "bytes",
        "sum of p_filesz of the ELF's PT_LOAD program headers",
    ));
    out.push(Figure::new(
        s,
        "BIOS disk image (no bundle)",
        bios_bytes.map(|b| b as f64),
        "bytes",
        "size of bulkhead-bios.img from the bootloader crate, kernel only",
    ));
    out.push(Figure::new(
        s,
        "UEFI disk image (no bundle)",
        uefi_bytes.map(|b| b as f64),
        "bytes",
        "size of bulkhead-uefi.img from the bootloader crate, kernel only",
    ));
    for (transcript, vm, desc) in vms {
        let m = memory_beyond_ram(transcript, vm);
        let method =
            "the hypervisor's allocation count at VM creation (`memory beyond guest RAM` line)";
        for (i, part) in ["total", "VMCS and bitmaps", "EPT", "device state"]
            .iter()
            .enumerate()
        {
            out.push(Figure::new(
                s,
                &format!("memory beyond guest RAM, {desc}: {part}"),
                m.map(|m| m[i] as f64),
                "bytes",
                method,
            ));
        }
    }
    out
}

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
fn vm_exit_count(transcript: &str, vm: &str, reason: &str) -> Option<f64> {
    let prefix = format!("vm {vm}: exits: {reason} ");
    crate::transcript::kernel_messages(transcript)
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|rest| num(rest, "count"))
}

/// Linux's boot exits with its console on COM1 and on virtio-console (issue 9: the UART costs
/// an exit per byte, virtio-console a few per line).
pub fn console_figures(ttys0: &str, hvc0: &str) -> Vec<Figure> {
    let how = "Linux test guest, boot to poweroff with the workload check, exits from the VM's statistics";
    let mut out = Vec::new();
    for (console, t) in [("ttyS0", ttys0), ("hvc0", hvc0)] {
        out.push(Figure::new(
            SEC_LINUX,
            &format!("boot exits, console={console}"),
            vm_exit_count(t, "linux", "total"),
            "exits",
            how,
        ));
        out.push(Figure::new(
            SEC_LINUX,
            &format!("boot I/O exits, console={console}"),
            vm_exit_count(t, "linux", "I/O instruction"),
            "exits",
            how,
        ));
    }
    out
}

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
    let mut spec = RunSpec::new(Platform::Bochs, image);
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
fn linux_guest_dir() -> Result<PathBuf, BootError> {
    if let Some(d) = std::env::var_os("BULKHEAD_LINUX_GUEST") {
        return Ok(PathBuf::from(d));
    }
    let script = workspace_root().join("scripts/build-guest");
    let out = std::process::Command::new(&script)
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(io("cannot run", &script))?;
    let text = String::from_utf8_lossy(&out.stdout);
    match (out.status.success(), text.lines().last()) {
        (true, Some(dir)) => Ok(PathBuf::from(dir.trim())),
        _ => Err(BootError::KernelBuild(format!(
            "scripts/build-guest failed ({})",
            out.status
        ))),
    }
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
            crate::bench_smp::smp_figures("", "", "", "", "")
                .into_iter()
                .map(Figure::skipped),
        );
    } else {
        use crate::bench_smp::{rt_conf, selftest_on_cpu_conf, KICK_CONF};
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
        figures.extend(crate::bench_smp::smp_figures(
            &cpu0.transcript,
            &cpu1.transcript,
            &rt_alone.transcript,
            &rt_noisy.transcript,
            &kick.transcript,
        ));
    }

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
        let dir = tempfile::tempdir().map_err(io(
            "cannot create a temporary directory in",
            std::env::temp_dir(),
        ))?;
        let bare_img = dir.path().join("bare-linux.img");
        let script = workspace_root().join("scripts/bare-linux-image");
        let status = std::process::Command::new(&script)
            .arg(&guest)
            .arg(&bare_img)
            .arg(format!("{LINUX_CMDLINE} bulkhead.end=reboot"))
            .stdout(std::process::Stdio::null())
            .status()
            .map_err(io("cannot run", &script))?;
        if !status.success() {
            return Err(other_err(format!(
                "scripts/bare-linux-image failed ({status})"
            )));
        }
        // The guest ends in a triple fault (bulkhead.end=reboot, reboot=t); Bochs, with
        // reset_on_triple_fault=0 and panics fatal, then exits.
        let bare = boot(o, "Linux on bare Bochs (no Bulkhead)", &bare_img, 64, 900)?;
        (Some(virtio), Some(linux), Some(bare), Some(hvc0))
    };

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
mod tests {
    use super::*;

    const SELFTEST: &str = "\
[         1234] INFO  vm selftest: memory beyond guest RAM: 61440 bytes (VMCS and bitmaps 16384, EPT 40960, device state 4096)
guest selftest: BENCH cpuid median=1020 min=1000 n=64
guest selftest: BENCH hypercall-nop median=1500 min=1400 n=64
guest selftest: BENCH multicall-1 median=1700 min=1600 n=64
guest selftest: BENCH multicall-8 median=400 min=390 n=64
guest selftest: BENCH multicall-32 median=250 min=240 n=64
guest selftest: BENCH pio-in median=1800 min=1700 n=64
guest selftest: BENCH pio-out median=1900 min=1800 n=64
guest selftest: BENCH mmio-read median=3000 min=2900 n=64
guest selftest: BENCH mmio-write median=3100 min=3000 n=64
guest selftest: BENCH console-byte median=1022 min=1022 handler=741 n=2048
[         1300] INFO  vm selftest: extended state: xsave xcr0=0x7 switches=12 ticks=3720 avg=310
";

    #[test]
    fn console_figures_read_the_linux_vms_statistics() {
        let uart =
            "[   1] INFO  vm linux: exits: I/O instruction        count=18197 ticks=1 avg=1\n\
                    [   2] INFO  vm linux: exits: total                  count=21745 ticks=9\n";
        let hvc = "[   1] INFO  vm linux: exits: I/O instruction        count=900 ticks=1 avg=1\n\
                   [forge] vm linux: exits: total count=1\n\
                   [   2] INFO  vm linux: exits: total                  count=3500 ticks=9\n";
        let f = console_figures(uart, hvc);
        let values: Vec<_> = f.iter().map(|f| f.value).collect();
        assert_eq!(
            values,
            [Some(21745.0), Some(18197.0), Some(3500.0), Some(900.0)]
        );
        assert!(console_figures("", "")
            .iter()
            .all(|f| f.status == Status::Missing));
    }

    #[test]
    fn selftest_lines_give_every_exit_figure() {
        let f = selftest_figures(SELFTEST);
        assert_eq!(f.len(), 12);
        assert_eq!(f[11].value, Some(310.0), "XSAVE switch cost");
        assert!(f.iter().all(|f| f.status == Status::Measured));
        assert_eq!(f[9].name, "console byte (UART THR write)");
        assert_eq!((f[9].value, f[10].value), (Some(741.0), Some(1022.0)));
        assert_eq!(f[0].value, Some(1020.0));
        assert_eq!(f[3].name, "multicall, per operation, n = 8");
        assert_eq!(f[3].value, Some(400.0));
        assert_eq!(f[8].value, Some(3100.0));
        // A renamed line shows up as missing, not as a silent zero.
        let f = selftest_figures(&SELFTEST.replace("BENCH cpuid", "BENCH cpu-id"));
        assert_eq!(f[0].status, Status::Missing);
        assert_eq!(f[0].value, None);
    }

    #[test]
    fn memory_line_is_parsed() {
        assert_eq!(
            memory_beyond_ram(SELFTEST, "selftest"),
            Some([61440, 16384, 40960, 4096])
        );
        assert_eq!(memory_beyond_ram(SELFTEST, "linux"), None);
    }

    const VIRTIO: &str = "\
guest virtio-client: ram=0x2000000 vm-index=0 tsc-mhz=50
guest virtio-client: BENCH ping n=1000 median=25000 min=20000 total=30000000 exits=12000 mmio_exits=8000 io_exits=2000 interrupts=1000
guest virtio-client: BENCH blk-write-4k bytes=16777216 ticks=100000000 requests=4096 inflight=16 exits=16384 mmio_exits=9000 kib_per_s=8192 interrupts=512
guest virtio-client: BENCH blk-read-4k bytes=16777216 ticks=100000000 requests=4096 inflight=16 exits=8192 mmio_exits=9000 kib_per_s=10240 interrupts=256
guest virtio-client: BENCH blk-write-64k bytes=16777216 ticks=100000000 requests=256 inflight=16 exits=1600 mmio_exits=900 kib_per_s=20480 interrupts=32
guest virtio-client: BENCH blk-read-64k bytes=16777216 ticks=100000000 requests=256 inflight=16 exits=1600 mmio_exits=900 kib_per_s=20480 interrupts=16
";

    #[test]
    fn virtio_lines_give_per_mib_and_per_packet_figures() {
        let f = virtio_figures(VIRTIO);
        let get = |n: &str| f.iter().find(|f| f.name == n).and_then(|f| f.value);
        assert_eq!(
            get("sequential write, 4 KiB requests: exits per MiB"),
            Some(1024.0)
        );
        assert_eq!(
            get("sequential write, 4 KiB requests: interrupts per MiB"),
            Some(32.0)
        );
        assert_eq!(
            get("sequential read, 4 KiB requests: throughput"),
            Some(10.0)
        );
        assert_eq!(
            get("sequential read, 64 KiB requests: interrupts per MiB"),
            Some(1.0)
        );
        assert_eq!(get("exits per 1,000 packets"), Some(6000.0));
        assert_eq!(get("interrupts per 1,000 packets"), Some(500.0));
        assert_eq!(get("ping round trip (median)"), Some(25000.0));
        assert_eq!(
            get("ping round trip (median), in virtual time"),
            Some(500.0)
        );
        assert!(f.iter().all(|f| f.status == Status::Measured), "{f:#?}");
        // Without `interrupts=` (the old guest) those rows are missing, the rest still there.
        let old = VIRTIO.replace(" interrupts=", " irqs=");
        let f = virtio_figures(&old);
        let missing: Vec<_> = f.iter().filter(|f| f.status == Status::Missing).collect();
        assert_eq!(missing.len(), 5);
        assert!(missing.iter().all(|f| f.name.contains("interrupts")));
    }

    const BULKHEAD_LINUX: &str = "\
[    100] INFO  vm linux: memory beyond guest RAM: 90112 bytes (VMCS and bitmaps 16384, EPT 73728, device state 0)
[linux +1000] [    0.000000] Linux version 6.1.192
[linux +1500] [    0.000000] tsc: Detected 50.000 MHz processor
[linux +2000] [    0.000000] tsc: Detected 50.001 MHz TSC
[linux +40000000] [    0.701000] Run /init as init process
[linux +41000000] guest: userspace up uptime=0.72
[linux +45000000] guest: workload sha256 bytes=2097152 ms=80
[linux +46000000] guest: workload spawn count=20 ms=20
[linux +46500000] guest: checks done uptime=0.93
";
    const BARE_LINUX: &str = "\
[    0.000000] Linux version 6.1.192
[    0.000000] tsc: Detected 3499.912 MHz TSC
[    0.559125] Run /init as init process
guest: userspace up uptime=0.57
guest: workload sha256 bytes=2097152 ms=40
guest: workload spawn count=20 ms=10
";

    #[test]
    fn linux_lines_give_ticks_guest_times_and_ratios() {
        assert_eq!(
            console_ticks("[linux +41000000] guest: userspace up"),
            Some(41_000_000)
        );
        assert_eq!(printk_seconds(BARE_LINUX, "Run /init"), Some(0.559125));
        assert_eq!(printk_seconds(BULKHEAD_LINUX, "Run /init"), Some(0.701));
        assert_eq!(
            workload_ticks(BULKHEAD_LINUX, "guest: workload sha256"),
            Some(4_000_000)
        );
        let f = linux_figures(&LinuxRuns {
            bulkhead: BULKHEAD_LINUX,
            bulkhead_wall: Some(30.0),
            bare: BARE_LINUX,
            bare_wall: Some(5.0),
        });
        let get = |n: &str| f.iter().find(|f| f.name == n).and_then(|f| f.value);
        assert_eq!(get("Bulkhead: VM entry to userspace"), Some(41_000_000.0));
        assert_eq!(
            get("Bulkhead: CPU-bound workload (sha256 of 2 MiB), hypervisor ticks"),
            Some(4_000_000.0)
        );
        assert_eq!(get("bare Bochs: uptime at userspace"), Some(0.57));
        assert_eq!(
            get("bare Bochs: guest kernel's TSC frequency"),
            Some(3499.912)
        );
        assert_eq!(
            get("ratio Bulkhead / bare: CPU-bound workload (sha256 of 2 MiB)"),
            Some(2.0)
        );
        assert_eq!(
            get("ratio Bulkhead / bare: fork+exec workload (20 × /bin/true)"),
            Some(2.0)
        );
        assert!(f.iter().all(|f| f.status == Status::Measured), "{f:#?}");
        let mut names: Vec<_> = f.iter().map(|f| &f.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), f.len(), "figure names are unique");
        let f = linux_figures(&LinuxRuns::default());
        assert!(f.iter().all(|f| f.status == Status::Missing));
    }

    #[test]
    fn elf_program_headers_are_summed() {
        // A minimal ELF64 header with two program headers: PT_LOAD and PT_NOTE.
        let mut e = vec![0u8; 64 + 2 * 56];
        e[0..4].copy_from_slice(b"\x7fELF");
        e[4] = 2;
        e[5] = 1;
        e[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
        e[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        e[0x38..0x3a].copy_from_slice(&2u16.to_le_bytes());
        let ph = 64;
        e[ph..ph + 4].copy_from_slice(&1u32.to_le_bytes());
        e[ph + 0x20..ph + 0x28].copy_from_slice(&1000u64.to_le_bytes());
        e[ph + 0x28..ph + 0x30].copy_from_slice(&5000u64.to_le_bytes());
        let ph = 64 + 56;
        e[ph..ph + 4].copy_from_slice(&4u32.to_le_bytes());
        e[ph + 0x20..ph + 0x28].copy_from_slice(&77u64.to_le_bytes());
        assert_eq!(elf_load_sizes(&e), Some((1, 1000, 5000)));
        assert_eq!(elf_load_sizes(b"not an elf"), None);
    }

    #[test]
    fn report_round_trips_through_json_and_renders_markdown() {
        let mut figures = selftest_figures(SELFTEST);
        figures.extend(virtio_figures("").into_iter().map(Figure::skipped));
        figures.extend(size_figures(
            Some(b"x"),
            Some(10),
            None,
            &[(SELFTEST, "selftest", "t")],
        ));
        let r = Report {
            date: "2026-11-22".into(),
            bochs_cpu: "corei7_skylake_x".into(),
            bochs_version: "2.7+dfsg-1".into(),
            smoke: true,
            figures,
        };
        let back = Report::from_json(&r.to_json()).expect("parses");
        assert_eq!(back, r);
        let md = r.markdown();
        assert!(md.contains("| Metric | Value | Unit | Method |"));
        assert!(md.contains("| **Exit round trips** | | | |"));
        assert!(md.contains("| CPUID | 1,020 | TSC ticks |"));
        assert!(md.contains("| exits per 1,000 packets | skipped |"));
        assert!(md.contains("| UEFI disk image (no bundle) | missing |"));
        assert_eq!(r.missing().len(), 3, "the two ELF rows and the UEFI image");
        assert!(Report::from_json("{}").is_err());
        assert!(Report::from_json(&r.to_json().replace("\"measured\"", "\"skipped\"")).is_err());
    }

    #[test]
    fn values_and_dates_format() {
        assert_eq!(format_value(1234567.0), "1,234,567");
        assert_eq!(format_value(12.3456), "12.35");
        assert_eq!(format_value(0.5678), "0.568");
        assert_eq!(format_value(1234.56), "1234.6");
        assert_eq!(civil_date(0), "1970-01-01");
        assert_eq!(civil_date(20_414), "2025-11-22");
    }
}
