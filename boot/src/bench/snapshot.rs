//! The snapshot benchmark rows (issue 18, `bench --only snapshot`): the Linux test guest of
//! tests/tests/snapshot_linux.rs (64 MiB, a 2 MiB virtio-blk, a virtio-net, its blk and net
//! checks, then its busybox shell), beside a `forever.elf` VM that keeps the hypervisor
//! running, driven through the serial shell: `snapshot linux s1` while it waits in its shell,
//! `exit` (it powers off), `restore s1 linux`, a command in the restored guest's shell, `exit`
//! again, `stop keep`.
//!
//! Every figure is virtual time in TSC ticks (Bochs: 50 MHz, one per emulated instruction):
//! the hypervisor's log lines carry the TSC (`[     486676669] INFO  ...`), and with
//! `console-timestamps = true` each guest line carries the TSC ticks since its VM's `first VM
//! entry` line (`[linux +81397288] ...`). The console is made anew when the VM is rebuilt for
//! the restore and counts from the restored VM's own `first VM entry` line, so a restored
//! guest line's TSC is that line's TSC plus its stamp ([`restored_line_tsc`]). The VM `keep`
//! shares the one emulated CPU throughout, so every span here includes its timeslices. The
//! parser is a pure function over the transcript, host-tested (`tests.rs`).

use super::{Figure, Options, Report};
use crate::error::{io, BootError};
use crate::run::{Platform, RunSpec};
use crate::serial_input::Feed;
use crate::transcript::kernel_message_at;
use std::path::PathBuf;
use std::time::Duration;

pub const SEC_SNAPSHOT: &str = "Snapshots (Linux guest, serial shell)";

/// The VM config of tests/tests/snapshot_linux.rs, with console timestamps.
pub const CONF: &str = "[vm.linux]\nkind = \"linux\"\nimage = \"bzImage\"\ninitrd = \"initramfs.cpio.lz4\"\n\
    memory = \"64M\"\nconsole-timestamps = true\ncmdline = \"console=ttyS0,115200 quiet panic=-1 reboot=t \
    io_delay=none nolapic tsc=reliable no_timer_check bulkhead.checks=blk,net bulkhead.ping=2 \
    bulkhead.end=shell\"\n\
    [[vm.linux.virtio-blk]]\nsize = \"2M\"\n\
    [[vm.linux.virtio-net]]\nmac = \"52:54:00:12:34:56\"\n\
    [vm.keep]\nkind = \"elf64\"\nimage = \"forever.elf\"\nmemory = \"16M\"\n";

const PROMPT: &str = "bulkhead> ";
const ATTACHED: &str = "[shell] attached to vm linux (Ctrl-A detaches)\r\n";
const POWERED_OFF: &str = "vm linux: stopped: guest powered off (ACPI S5)";
/// What the restored guest prints (`echo restored-$((6*7))`: the typed line shows the
/// expression, only the output shows 42).
const RESTORED: &str = "restored-42";

/// The console input. Every command line starts with Ctrl-U (0x15): Bochs's COM1 sometimes
/// delivers a byte twice, and Ctrl-U clears what a repeated byte left on the line, both in
/// the hypervisor's shell and in the guest's (tests/tests/snapshot.rs).
pub fn feeds() -> Vec<Feed> {
    vec![
        Feed::new("] guest: shell (exit to power off)", "\x01"),
        Feed::new(PROMPT, "\x15snapshot linux s1\r"),
        Feed::new("[shell] snapshot s1 of vm linux: ", "\x15console linux\r"),
        Feed::new(ATTACHED, "\x15exit\r"),
        Feed::new(POWERED_OFF, "\x01"),
        Feed::new(PROMPT, "\x15restore s1 linux\r"),
        Feed::new(
            "[shell] vm linux: started again from a snapshot",
            "\x15console linux\r",
        ),
        Feed::new(ATTACHED, "\x15echo restored-$((6*7))\r"),
        Feed::new(format!("] {RESTORED}\r\n"), "\x15exit\r"),
        Feed::new(POWERED_OFF, "\x01"),
        Feed::new(PROMPT, "\x15stop keep\r"),
    ]
}

// ---- parsing ----------------------------------------------------------------------------------

/// A transcript line without the `\r`s the terminal output leaves around it.
fn clean(line: &str) -> &str {
    line.trim_matches('\r')
}

/// The first hypervisor log line (`[TSC] LEVEL message`) at or after line `from` whose
/// message starts with `prefix`: (its line index, TSC, the message after `prefix`).
fn kernel_line<'t>(lines: &[&'t str], from: usize, prefix: &str) -> Option<(usize, u64, &'t str)> {
    lines.iter().enumerate().skip(from).find_map(|(i, l)| {
        let (tsc, message) = kernel_message_at(l)?;
        Some((i, tsc, message.strip_prefix(prefix)?))
    })
}

/// [`kernel_line`], or an error naming the line.
fn need_kernel<'t>(
    lines: &[&'t str],
    from: usize,
    prefix: &str,
) -> Result<(usize, u64, &'t str), String> {
    kernel_line(lines, from, prefix)
        .ok_or_else(|| format!("no hypervisor line `[TSC] INFO  {prefix}...`"))
}

/// The first line at or after `from` that starts with `prefix`: (its index, the rest).
fn need_line<'t>(lines: &[&'t str], from: usize, prefix: &str) -> Result<(usize, &'t str), String> {
    lines
        .iter()
        .enumerate()
        .skip(from)
        .find_map(|(i, l)| Some((i, clean(l).strip_prefix(prefix)?)))
        .ok_or_else(|| format!("no line starting `{prefix}`"))
}

/// A guest console line of `vm` with a timestamp, `[vm +TICKS] text`: (TICKS, text).
fn stamped_guest_line<'t>(line: &'t str, vm: &str) -> Option<(u64, &'t str)> {
    let rest = clean(line)
        .strip_prefix('[')?
        .strip_prefix(vm)?
        .strip_prefix(" +")?;
    let (ticks, text) = rest.split_once("] ")?;
    Some((ticks.parse().ok()?, text))
}

/// The first stamped console line of `vm` at or after `from` whose text is exactly `text`
/// (or, with `prefix`, starts with it): (its index, its stamp).
fn need_guest(
    lines: &[&str],
    from: usize,
    vm: &str,
    text: &str,
    prefix: bool,
) -> Result<(usize, u64), String> {
    lines
        .iter()
        .enumerate()
        .skip(from)
        .find_map(|(i, l)| {
            let (ticks, t) = stamped_guest_line(l, vm)?;
            let hit = if prefix {
                t.starts_with(text)
            } else {
                t == text
            };
            hit.then_some((i, ticks))
        })
        .ok_or_else(|| format!("no stamped console line `[{vm} +TICKS] {text}`"))
}

/// The number that `text` starts with.
fn leading_number(text: &str, what: &str) -> Result<f64, String> {
    let digits: String = text.chars().take_while(char::is_ascii_digit).collect();
    digits
        .parse()
        .map_err(|_| format!("no number for {what} at `{text}`"))
}

/// The number after `key` in `text` (`key` included up to the number).
fn number_after(text: &str, key: &str, what: &str) -> Result<f64, String> {
    let at = text
        .find(key)
        .ok_or_else(|| format!("no `{key}` ({what}) in `{text}`"))?;
    leading_number(&text[at + key.len()..], what)
}

/// The snapshot run's figures, each parsed from the transcript or the reason it is missing.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotRun {
    /// `vm linux: snapshot s1 taken (B bytes, paused T ticks; N step(s), the longest L ticks)`.
    pub pause_ticks: Result<f64, String>,
    pub steps: Result<f64, String>,
    pub longest_step_ticks: Result<f64, String>,
    pub bytes: Result<f64, String>,
    /// `[shell] snapshot s1 of vm linux: ... (P pages not zero), K KiB held, paused U us`.
    pub pages_not_zero: Result<f64, String>,
    pub kib_held: Result<f64, String>,
    pub pause_us: Result<f64, String>,
    /// `vm linux: restarting from a snapshot (... rebuilt in T ticks)`.
    pub rebuild_ticks: Result<f64, String>,
    /// From the `restarting from a snapshot` line's TSC to the restored VM's `first VM entry`.
    pub restore_to_entry_ticks: Result<f64, String>,
    /// From the `restarting from a snapshot` line's TSC to the restored guest's `restored-42`.
    pub restore_to_output_ticks: Result<f64, String>,
    /// The first boot: `first VM entry` to `guest: userspace up` (the console's stamp).
    pub boot_to_userspace_ticks: Result<f64, String>,
}

impl SnapshotRun {
    /// The figures in report order: (name, unit, method, value).
    pub fn rows(
        &self,
    ) -> [(
        &'static str,
        &'static str,
        &'static str,
        &Result<f64, String>,
    ); 11] {
        [
            (
                "snapshot pause (vm linux paused), ticks",
                "TSC ticks",
                "`snapshot linux s1` in the serial shell while the guest waits in its shell: the INFO line `snapshot s1 taken (... paused N ticks ...)`, the request to the VM's resumption",
                &self.pause_ticks,
            ),
            (
                "snapshot pause (vm linux paused), µs",
                "µs (virtual)",
                "the shell's `[shell] snapshot s1 of vm linux: ... paused N us` (the same pause at the TSC rate)",
                &self.pause_us,
            ),
            (
                "snapshot steps",
                "steps",
                "the INFO line's `N step(s)`: the snapshot is taken in steps of about one timeslice, the VM beside it (keep) runs between them",
                &self.steps,
            ),
            (
                "snapshot, longest step",
                "TSC ticks",
                "the INFO line's `the longest N ticks`: the longest the other VM waited at a time",
                &self.longest_step_ticks,
            ),
            (
                "snapshot size held",
                "bytes",
                "the INFO line's `(N bytes`: RAM pages not zero, platform, local APIC, virtio and vCPU state",
                &self.bytes,
            ),
            (
                "snapshot size held, KiB",
                "KiB",
                "the shell's `N KiB held`",
                &self.kib_held,
            ),
            (
                "RAM pages not zero (of 16,384 in 64 MiB)",
                "pages",
                "the shell's `(N pages not zero)`: the 4 KiB pages the snapshot holds",
                &self.pages_not_zero,
            ),
            (
                "restore: VM rebuilt",
                "TSC ticks",
                "`restore s1 linux` of the powered-off VM: the INFO line `restarting from a snapshot (... rebuilt in N ticks)` (devices, RAM and local APICs from the snapshot)",
                &self.rebuild_ticks,
            ),
            (
                "restore to the restored VM's first entry",
                "TSC ticks",
                "TSC of the `restarting from a snapshot` line to the TSC of the restored VM's `first VM entry` line (its vCPU loaded from the snapshot on its CPU)",
                &self.restore_to_entry_ticks,
            ),
            (
                "restore to the guest's first output line",
                "TSC ticks",
                "TSC of the `restarting from a snapshot` line to the restored guest's `restored-42` (its console stamp as a TSC); includes `console linux` and `echo restored-$((6*7))` typed into COM1 after the shell's `started again` line, which the host's pace decides, so it varies from run to run",
                &self.restore_to_output_ticks,
            ),
            (
                "for comparison: the same VM's boot to userspace",
                "TSC ticks",
                "the first boot of the VM above (blk and net checks follow it): console timestamp (TSC ticks since vm linux's first VM entry) of `guest: userspace up`; the `keep` VM shares the CPU",
                &self.boot_to_userspace_ticks,
            ),
        ]
    }

    /// The reasons of the figures that are missing, one per row.
    pub fn errors(&self) -> Vec<String> {
        self.rows()
            .iter()
            .filter_map(|(name, _, _, v)| v.as_ref().err().map(|e| format!("{name}: {e}")))
            .collect()
    }
}

/// The TSC of the restored guest's console line `line` stamped `stamp`: the restored VM's
/// console counts from its `first VM entry` line, which must come between the restart line
/// (`restart`) and `line`.
pub fn restored_line_tsc(
    lines: &[&str],
    restart: usize,
    line: usize,
    stamp: u64,
) -> Result<u64, String> {
    entry_after(lines, restart)
        .filter(|&(i, _)| i < line)
        .map(|(_, tsc)| tsc + stamp)
        .ok_or_else(|| {
            "no `vm linux: first VM entry` line between the restart and the restored guest's line"
                .to_string()
        })
}

/// The first `vm linux: first VM entry` line at or after `from`: (its index, its TSC).
fn entry_after(lines: &[&str], from: usize) -> Option<(usize, u64)> {
    lines.iter().enumerate().skip(from).find_map(|(i, l)| {
        let (tsc, message) = kernel_message_at(l)?;
        (message.trim_end() == "vm linux: first VM entry").then_some((i, tsc))
    })
}

/// Parses the snapshot run's transcript.
pub fn parse(transcript: &str) -> SnapshotRun {
    let lines: Vec<&str> = transcript.lines().collect();
    let lines = &lines[..];

    let taken = need_kernel(lines, 0, "vm linux: snapshot s1 taken (");
    let from_taken = |key: &str, what: &str| -> Result<f64, String> {
        let (_, _, rest) = taken.clone()?;
        number_after(rest, key, what)
    };
    let shell = need_line(lines, 0, "[shell] snapshot s1 of vm linux: ");
    let from_shell = |key: &str, what: &str| -> Result<f64, String> {
        let (_, rest) = shell.clone()?;
        number_after(rest, key, what)
    };
    let restart = need_kernel(lines, 0, "vm linux: restarting from a snapshot (");

    let restore_to_output = restart.clone().and_then(|(at, tsc, _)| {
        let (i, stamp) = need_guest(lines, at, "linux", RESTORED, false)?;
        let seen = restored_line_tsc(lines, at, i, stamp)?;
        seen.checked_sub(tsc).map(|t| t as f64).ok_or_else(|| {
            format!("`{RESTORED}` at TSC {seen} comes before the restart line's TSC {tsc}")
        })
    });
    let restart_to_entry = restart.clone().and_then(|(at, tsc, _)| {
        let (_, entry) = entry_after(lines, at)
            .ok_or("no `vm linux: first VM entry` line after the restart line")?;
        Ok((entry - tsc) as f64)
    });
    let first_entry = entry_after(lines, 0)
        .ok_or_else(|| "no hypervisor line `[TSC] INFO  vm linux: first VM entry`".to_string());
    let boot = first_entry.and_then(|(at, _)| {
        let (_, stamp) = need_guest(lines, at, "linux", "guest: userspace up", true)?;
        Ok(stamp as f64)
    });

    SnapshotRun {
        pause_ticks: from_taken("paused ", "the pause"),
        steps: from_taken("; ", "the steps"),
        longest_step_ticks: from_taken("the longest ", "the longest step"),
        bytes: taken
            .clone()
            .and_then(|(_, _, rest)| leading_number(rest, "the bytes")),
        pages_not_zero: from_shell("MiB RAM (", "the pages not zero"),
        kib_held: from_shell(" pages not zero), ", "the KiB held"),
        pause_us: from_shell("paused ", "the pause in us"),
        rebuild_ticks: restart
            .and_then(|(_, _, rest)| number_after(rest, "rebuilt in ", "the rebuild")),
        restore_to_entry_ticks: restart_to_entry,
        restore_to_output_ticks: restore_to_output,
        boot_to_userspace_ticks: boot,
    }
}

/// The figures of the run (an empty transcript gives missing rows).
pub fn snapshot_figures(transcript: &str) -> Vec<Figure> {
    parse(transcript)
        .rows()
        .iter()
        .map(|(name, unit, method, v)| {
            Figure::new(SEC_SNAPSHOT, name, v.as_ref().ok().copied(), unit, method)
        })
        .collect()
}

// ---- running ----------------------------------------------------------------------------------

/// Runs the snapshot session (Linux guest `files`: bzImage and initramfs); in smoke mode only
/// the rows, marked skipped. The transcript is kept next to the JSON report.
pub fn run(o: &Options, files: &[PathBuf]) -> Result<Vec<Figure>, BootError> {
    if o.smoke {
        return Ok(snapshot_figures("")
            .into_iter()
            .map(Figure::skipped)
            .collect());
    }
    let dir = tempfile::tempdir().map_err(io(
        "cannot create a temporary directory in",
        std::env::temp_dir(),
    ))?;
    let mut all = files.to_vec();
    all.push(crate::image::guest_dir().join("forever.elf"));
    let image = super::bundle_image(dir.path(), CONF, &all)?;
    let mut spec = RunSpec::new(Platform::Bochs, &image);
    spec.cpu_model = o.cpu.clone();
    spec.megs = 512;
    spec.timeout = Duration::from_secs(900);
    spec.input = feeds();
    if o.verbose {
        eprintln!(
            "bench: running Linux snapshot and restore through the serial shell in Bochs ({})",
            o.cpu
        );
    }
    let outcome = crate::run::run(&spec)?;
    if o.verbose {
        eprintln!("bench: snapshot: {}", outcome.summary());
    }
    if let Some(parent) = o.out.parent() {
        std::fs::create_dir_all(parent).map_err(io("cannot create", parent))?;
        let p = parent.join("snapshot-linux.transcript.txt");
        std::fs::write(&p, &outcome.transcript).map_err(io("cannot write", &p))?;
    }
    let parsed = parse(&outcome.transcript);
    for e in parsed.errors() {
        eprintln!("bench: snapshot: not measured: {e}");
    }
    Ok(snapshot_figures(&outcome.transcript))
}

/// `bench --only snapshot`.
pub fn run_only(o: &Options) -> Result<Report, BootError> {
    super::irq::only(o, |o| {
        let guest = super::linux_guest_dir()?;
        run(
            o,
            &[guest.join("bzImage"), guest.join("initramfs.cpio.lz4")],
        )
    })
}
