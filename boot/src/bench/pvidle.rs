//! The PV idle benchmark rows (issue 12): an idle 2-vCPU Linux guest (`sleep` for
//! [`irq::IDLE_SECONDS`]) on a 2-CPU Bochs, its exits per second and the host CPUs' sleep
//! residency (the host report's `cpu N: idle:` lines, kernel/src/idle.rs), in three
//! configurations: the KVM paravirtual interface offered (`kvm-pv`, the default for Linux),
//! the same with the guest's `cpuidle-haltpoll` forced on (`cpuidle_haltpoll.force=1`: the
//! guest polls before it halts and turns host polling off through `MSR_KVM_POLL_CONTROL`),
//! and `kvm-pv = false`. Parsers are host-tested; [`run`] makes the runs (`bench --only idle`
//! runs just these).

use super::irq::{smp_linux_conf, total_exits, IDLE_SECONDS};
use super::{line_with, linux_guest_dir, run_guest_on, Figure, Options, Report};
use crate::error::BootError;

pub const SEC_IDLE: &str = "PV idle (idle Linux guest)";

/// The three configurations: (label, `kvm-pv`, extra command line).
pub const CONFIGS: [(&str, bool, &str); 3] = [
    ("kvm-pv", true, ""),
    (
        "kvm-pv, cpuidle_haltpoll.force=1",
        true,
        " cpuidle_haltpoll.force=1",
    ),
    ("kvm-pv = false", false, ""),
];

/// The idle SMP Linux configuration with `kvm-pv` and `extra` appended to its command line.
pub fn idle_conf(kvm_pv: bool, extra: &str) -> String {
    let base = smp_linux_conf(2, "idle");
    let with_cmdline = match base.rfind("\"\n") {
        Some(at) => format!("{}{extra}{}", &base[..at], &base[at..]),
        None => base,
    };
    format!("{with_cmdline}kvm-pv = {kvm_pv}\n")
}

/// The VM's running time in TSC ticks (`vm linux: stopped: ... after N ticks`).
pub fn vm_ticks(transcript: &str) -> Option<f64> {
    let line = crate::transcript::kernel_messages(transcript)
        .find(|l| l.contains("vm linux: stopped: "))?;
    let rest = &line[line.rfind(" after ")? + 7..];
    rest.split(' ').next()?.parse().ok()
}

/// Milliseconds asleep on one `cpu N: idle:` line: the sum of its `X ms in STATE` parts.
fn asleep_ms(line: &str) -> f64 {
    line.split(", ")
        .filter(|part| part.contains(" ms in "))
        .filter_map(|part| {
            part.split(" ms in ")
                .next()?
                .rsplit(' ')
                .next()?
                .parse::<f64>()
                .ok()
        })
        .sum()
}

/// Sleep residency in percent: the CPUs' time asleep (every `cpu N: idle:` line) over the
/// VM's running time on `cpus` CPUs at `tsc_hz`.
pub fn residency(transcript: &str, cpus: u32, tsc_hz: f64) -> Option<f64> {
    let ran_ms = vm_ticks(transcript)? / tsc_hz * 1000.0;
    let lines: Vec<&str> = crate::transcript::kernel_messages(transcript)
        .filter(|l| l.contains(": idle: ") && l.contains("cpu "))
        .collect();
    if lines.is_empty() || ran_ms <= 0.0 {
        return None;
    }
    let asleep: f64 = lines.iter().map(|l| asleep_ms(l)).sum();
    Some(100.0 * asleep / (ran_ms * f64::from(cpus)))
}

/// Host wake-ups per second of the VM's running time (every CPU's `N wake-ups`).
pub fn wakeups_per_second(transcript: &str, tsc_hz: f64) -> Option<f64> {
    let seconds = vm_ticks(transcript)? / tsc_hz;
    let total: f64 = crate::transcript::kernel_messages(transcript)
        .filter(|l| l.contains(": idle: "))
        .filter_map(|l| l.split("; ").nth(1)?.split(' ').next()?.parse::<f64>().ok())
        .sum();
    (seconds > 0.0).then(|| total / seconds)
}

/// Exits per second of the VM's running time.
pub fn exits_per_second(transcript: &str, tsc_hz: f64) -> Option<f64> {
    let seconds = vm_ticks(transcript)? / tsc_hz;
    (seconds > 0.0).then(|| total_exits(transcript, "linux").map(|e| e / seconds))?
}

/// Whether the guest reached its idle window (`guest: idle done`).
fn idled(transcript: &str) -> bool {
    line_with(transcript, "guest: idle done").is_some()
}

/// The figures of the three runs (transcripts in [`CONFIGS`] order).
pub fn idle_figures(runs: [&str; 3], cpus: u32) -> Vec<Figure> {
    let hz = crate::bochs::IPS as f64;
    let method = format!(
        "2-vCPU Linux test guest (`bulkhead.checks=idle bulkhead.idle={IDLE_SECONDS}`: boot, `sleep {IDLE_SECONDS}`, poweroff) on a {cpus}-CPU Bochs (50 MIPS, virtual time); over the VM's whole run (`stopped: ... after N ticks`)"
    );
    let mut out = Vec::new();
    for ((label, _, _), t) in CONFIGS.iter().zip(runs) {
        let ok = idled(t);
        let keep = |v: Option<f64>| v.filter(|_| ok);
        out.push(Figure::new(
            SEC_IDLE,
            &format!("idle Linux, {label}: exits per second"),
            keep(exits_per_second(t, hz)),
            "exits/s",
            &format!("{method}: the VM's total exits over its running time"),
        ));
        out.push(Figure::new(
            SEC_IDLE,
            &format!("idle Linux, {label}: host sleep residency"),
            keep(residency(t, cpus, hz)),
            "%",
            &format!("{method}: the host CPUs' time in C1 (HLT) and MWAIT states (`cpu N: idle:` lines) over the running time times the CPUs"),
        ));
        out.push(Figure::new(
            SEC_IDLE,
            &format!("idle Linux, {label}: host wake-ups per second"),
            keep(wakeups_per_second(t, hz)),
            "wake-ups/s",
            &format!("{method}: every CPU's sleeps ended (timer, kick or other interrupt)"),
        ));
    }
    out
}

/// Runs the three idle configurations; in smoke mode only the rows, marked skipped.
pub fn run(o: &Options) -> Result<Vec<Figure>, BootError> {
    let cpus = o.cpus.max(2);
    if o.smoke {
        return Ok(idle_figures(["", "", ""], cpus)
            .into_iter()
            .map(Figure::skipped)
            .collect());
    }
    let dir = linux_guest_dir()?;
    let files = [dir.join("bzImage"), dir.join("initramfs.cpio.lz4")];
    let mut transcripts = Vec::new();
    for (label, kvm_pv, extra) in CONFIGS {
        let what = format!("idle SMP Linux, {label}");
        let run = run_guest_on(o, &what, &idle_conf(kvm_pv, extra), &files, 1200, cpus)?;
        transcripts.push(run.transcript);
    }
    Ok(idle_figures(
        [&transcripts[0], &transcripts[1], &transcripts[2]],
        cpus,
    ))
}

/// `bench --only idle`.
pub fn run_only(o: &Options) -> Result<Report, BootError> {
    super::irq::only(o, run)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RUN: &str = "\
[linux +2000000] guest: idle start seconds=10
[linux +502000000] guest: idle done seconds=10
[     600000000] INFO  vm linux: stopped: guest halted with interrupts disabled (powered off) (RIP 0x1) after 600000000 ticks
[     600000001] INFO  vm linux: exits: total                  count=30000 ticks=3 worst=2
[     600000002] INFO  cpu 0: idle: 100 ms in C1 (HLT) (sleeps=1), 2000 ms in MWAIT 0x00 (sleeps=10), 6000 ms in MWAIT 0x21 (sleeps=20), 1 ms polling (polls=2 hits=1), 3 ms spinning; 31 wake-ups (timer=30 kick=1 other=0)
[     600000003] INFO  cpu 1: idle: 0 ms in C1 (HLT) (sleeps=0), 0 ms in MWAIT 0x00 (sleeps=0), 3900 ms in MWAIT 0x21 (sleeps=9), 0 ms polling (polls=0 hits=0), 0 ms spinning; 9 wake-ups (timer=9 kick=0 other=0)
";

    #[test]
    fn idle_rows_come_from_the_report_lines() {
        let hz = 50e6;
        assert_eq!(vm_ticks(RUN), Some(600e6));
        // 30000 exits over 12 s.
        assert_eq!(exits_per_second(RUN, hz), Some(2500.0));
        // (100 + 2000 + 6000 + 3900) ms of 2 × 12000 ms.
        assert_eq!(residency(RUN, 2, hz), Some(50.0));
        // 40 wake-ups over 12 s.
        let w = wakeups_per_second(RUN, hz).unwrap();
        assert!((w - 40.0 / 12.0).abs() < 1e-9, "{w}");
        let f = idle_figures([RUN, RUN, ""], 2);
        assert_eq!(f.len(), 9);
        assert_eq!(f[0].value, Some(2500.0));
        assert_eq!(f[1].value, Some(50.0));
        // A run that never idled gives no figures.
        assert!(f[6..].iter().all(|x| x.value.is_none()));
        assert!(f[3].name.contains("cpuidle_haltpoll.force=1"));
    }

    #[test]
    fn configurations_set_kvm_pv_and_the_command_line() {
        let c = idle_conf(true, " cpuidle_haltpoll.force=1");
        assert!(
            c.contains("bulkhead.idle=10 cpuidle_haltpoll.force=1\"\n"),
            "{c}"
        );
        assert!(c.ends_with("kvm-pv = true\n"), "{c}");
        let c = idle_conf(false, "");
        assert!(
            c.contains("bulkhead.idle=10\"\n") && c.ends_with("kvm-pv = false\n"),
            "{c}"
        );
    }
}
