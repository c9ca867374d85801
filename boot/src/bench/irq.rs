//! The interrupt-platform benchmark rows (issue 11):
//!
//! - exits per delivered interrupt and per EOI, and the self-IPI round trip, from the
//!   `irq-bench` guest on `corei7_skylake_x` (APIC virtualization with virtual-interrupt
//!   delivery) and on `corei5_arrandale_m520` (no APIC-register virtualization: every APIC
//!   access and EOI is emulated), in xAPIC and x2APIC mode;
//! - the latency of a device interrupt, COM1's transmitter-empty interrupt through IOAPIC
//!   pin 4, from the OUT that raises it to the guest's handler, on the same two models;
//! - the exits per second of an idle SMP Linux guest (2 vCPUs);
//! - Linux boot to userspace with 1, 2 and 4 vCPUs.
//!
//! The parsers are pure functions over transcripts, host-tested below; [`run`] makes the runs
//! for `bench::run_bench`, [`run_only`] for `bulkhead-boot bench --only irq`.

use super::{
    bochs_version, line_with, linux_guest_dir, num, run_guest_on, ticks_of, today, Figure, Options,
    Report,
};
use crate::error::{io, BootError};
use crate::image::{build_guests, build_images, build_kernel, guest_dir, workspace_root};
use std::path::PathBuf;

pub const SEC_IRQ: &str = "Interrupts (local APIC, IOAPIC)";

/// The Bochs model with APIC-register virtualization and virtual-interrupt delivery, and the
/// one without (platform-notes: haswell and later have them, arrandale does not).
pub const APICV_MODEL: &str = "corei7_skylake_x";
pub const EMULATED_MODEL: &str = "corei5_arrandale_m520";

/// The `irq-bench` guest alone, one vCPU.
pub const IRQ_CONF: &str =
    "[vm.irq]\nkind = \"elf64\"\nimage = \"irq-bench.elf\"\nmemory = \"16M\"\n";

/// The SMP Linux command line (tests/tests/linux_smp.rs: no `nolapic`), with the bench's
/// `tsc_early_khz` (the TSC rate Bochs runs at, `crate::bochs::IPS`) and no device checks.
pub const SMP_CMDLINE: &str = concat!(
    "console=ttyS0,115200 panic=-1 reboot=t io_delay=none tsc=reliable no_timer_check ",
    "tsc_early_khz=50000"
);
const _: () = assert!(
    crate::bochs::IPS == 50_000_000,
    "SMP_CMDLINE's tsc_early_khz must equal IPS / 1000"
);

/// Seconds the idle SMP Linux guest sits idle (`bulkhead.idle=`).
pub const IDLE_SECONDS: u32 = 10;

/// The Linux test guest with `vcpus` vCPUs and no devices, console timestamps on; `checks` is
/// `bulkhead.checks=` (`none`, or `idle` with [`IDLE_SECONDS`]).
pub fn smp_linux_conf(vcpus: u32, checks: &str) -> String {
    format!(
        "[vm.linux]\nkind = \"linux\"\nimage = \"bzImage\"\ninitrd = \"initramfs.cpio.lz4\"\nmemory = \"64M\"\n\
         vcpus = {vcpus}\nconsole-timestamps = true\n\
         cmdline = \"{SMP_CMDLINE} bulkhead.checks={checks} bulkhead.idle={IDLE_SECONDS}\"\n"
    )
}

/// One `BENCH irq` line of the irq-bench guest: interrupts, exits (all but VMCALL), exits
/// caused by the EOIs, TSC ticks of the unbracketed pass.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IrqPass {
    pub n: f64,
    pub exits: f64,
    pub eoi_exits: f64,
    pub ticks: f64,
}

impl IrqPass {
    /// Exits per interrupt besides its EOI's (raising it and delivering it).
    pub fn delivery_exits(&self) -> f64 {
        (self.exits - self.eoi_exits) / self.n
    }
}

/// The `BENCH irq mode=<mode> source=<source>` line of `transcript`.
pub fn irq_pass(transcript: &str, mode: &str, source: &str) -> Option<IrqPass> {
    let line = line_with(
        transcript,
        &format!("guest irq-bench: BENCH irq mode={mode} source={source} n="),
    )?;
    let pass = IrqPass {
        n: num(line, "n")?,
        exits: num(line, "exits")?,
        eoi_exits: num(line, "eoi_exits")?,
        ticks: num(line, "ticks")?,
    };
    (pass.n > 0.0).then_some(pass)
}

const MODES: [(&str, &str); 2] = [("xapic", "xAPIC (MMIO)"), ("x2apic", "x2APIC (MSRs)")];

/// The figures of the irq-bench runs on the two models.
pub fn apic_figures(apicv: &str, emulated: &str) -> Vec<Figure> {
    let how = "irq-bench guest, 1 vCPU, 100 interrupts per pass; exits = EXIT_STATS deltas over every reason but VMCALL";
    let mut out = Vec::new();
    for (model, label, t) in [
        (APICV_MODEL, "virtual-interrupt delivery", apicv),
        (EMULATED_MODEL, "full emulation", emulated),
    ] {
        let on = format!("{model}, {label}");
        for (mode, mode_label) in MODES {
            let ipi = irq_pass(t, mode, "self-ipi");
            let timer = irq_pass(t, mode, "timer");
            out.push(Figure::new(
                SEC_IRQ,
                &format!("exits per delivered self-IPI, {mode_label}, {on}"),
                ipi.map(|p| p.delivery_exits()),
                "exits",
                &format!("{how}: the exits of sending it (ICR or SELF IPI write) and delivering it, its EOI's excluded"),
            ));
            out.push(Figure::new(
                SEC_IRQ,
                &format!("exits per delivered timer interrupt, {mode_label}, {on}"),
                timer.map(|p| p.delivery_exits()),
                "exits",
                &format!("{how}: the local APIC timer, periodic, 40,000 timer-clock ticks per period, divide by 1; its EOI's exits excluded; includes VMX-preemption-timer exits for the hypervisor's other deadlines (console pacing, slices: `reasons=` in the transcript), so it varies a little from run to run"),
            ));
            out.push(Figure::new(
                SEC_IRQ,
                &format!("exits per EOI, {mode_label}, {on}"),
                ipi.zip(timer)
                    .map(|(a, b)| (a.eoi_exits + b.eoi_exits) / (a.n + b.n)),
                "exits",
                &format!("{how}: the handler reads EXIT_STATS right before and after each EOI write (self-IPI and timer passes)"),
            ));
            out.push(Figure::new(
                SEC_IRQ,
                &format!("self-IPI round trip (send, handler, EOI), {mode_label}, {on}"),
                ipi.map(|p| p.ticks / p.n),
                "TSC ticks",
                "irq-bench guest: TSC over 100 self-IPIs each sent, taken and EOIed, divided by 100 (no EXIT_STATS in that pass)",
            ));
        }
        let latency = line_with(t, "guest irq-bench: BENCH uart-irq-latency n=");
        for key in ["median", "max"] {
            out.push(Figure::new(
                SEC_IRQ,
                &format!("device interrupt latency (COM1 → IOAPIC pin 4 → handler), {key}, {on}"),
                latency.and_then(|l| num(l, key)),
                "TSC ticks",
                "irq-bench guest, xAPIC mode, 8259As masked: COM1's transmitter-empty interrupt (IER bit 1 set with the THR empty) through IOAPIC pin 4, edge, fixed; RDTSC right before the OUT to IER, RDTSC first thing in the handler; 100 samples",
            ));
        }
    }
    out
}

/// The transcripts of the SMP Linux runs.
#[derive(Debug, Default, Clone, Copy)]
pub struct LinuxSmpRuns<'a> {
    /// Boots to poweroff with no checks, 1, 2 and 4 vCPUs.
    pub boot: [&'a str; 3],
    /// 2 vCPUs with the idle check.
    pub idle: &'a str,
}

/// The vCPU counts of [`LinuxSmpRuns::boot`].
pub const BOOT_VCPUS: [u32; 3] = [1, 2, 4];

/// The count of the VM statistics line `vm <vm>: exits: total count=N`, kernel lines only.
pub fn total_exits(transcript: &str, vm: &str) -> Option<f64> {
    let prefix = format!("vm {vm}: exits: total ");
    crate::transcript::kernel_messages(transcript)
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|rest| num(rest, "count"))
}

/// Exits per second of guest time while the idle run sat idle: the idle run's exits minus
/// the 2-vCPU boot run's (the same boot without the idle check), over the idle window's TSC
/// ticks between `guest: idle start` and `guest: idle done`, at `tsc_hz`.
pub fn idle_exits_per_second(boot2: &str, idle: &str, tsc_hz: f64) -> Option<f64> {
    let extra = total_exits(idle, "linux")? - total_exits(boot2, "linux")?;
    let start = ticks_of(idle, "linux", "guest: idle start")?;
    let done = ticks_of(idle, "linux", "guest: idle done")?;
    let seconds = done.checked_sub(start).filter(|&t| t > 0)? as f64 / tsc_hz;
    Some(extra / seconds)
}

/// The figures of the SMP Linux runs (`cpus` emulated CPUs).
pub fn linux_smp_figures(r: &LinuxSmpRuns<'_>, cpus: u32) -> Vec<Figure> {
    let mut out = Vec::new();
    for (vcpus, t) in BOOT_VCPUS.into_iter().zip(r.boot) {
        out.push(Figure::new(
            SEC_IRQ,
            &format!("Linux boot to userspace, {vcpus} vCPU{}", if vcpus == 1 { "" } else { "s" }),
            ticks_of(t, "linux", "guest: userspace up").map(|v| v as f64),
            "TSC ticks",
            &format!("SMP Linux test guest (local APIC, IOAPIC, ACPI; no devices) on a {cpus}-CPU Bochs: console timestamp of `guest: userspace up` (ticks since the first VM entry; the TSC counts time the emulated CPUs share)"),
        ));
    }
    out.push(Figure::new(
        SEC_IRQ,
        "idle SMP Linux guest (2 vCPUs): exits per second",
        idle_exits_per_second(r.boot[1], r.idle, crate::bochs::IPS as f64),
        "exits/s",
        &format!("the 2-vCPU guest with `bulkhead.checks=idle bulkhead.idle={IDLE_SECONDS}` (`sleep {IDLE_SECONDS}`) minus the same boot without it: total exits of the VM's statistics, over the idle window's console timestamps at 50 MHz (guest seconds)"),
    ));
    out
}

/// Runs the irq-bench guest on both models and the SMP Linux guests; in smoke mode only the
/// rows, marked skipped.
pub fn run(o: &Options) -> Result<Vec<Figure>, BootError> {
    let cpus = o.cpus.max(2);
    if o.smoke {
        let mut f = apic_figures("", "");
        f.extend(linux_smp_figures(&LinuxSmpRuns::default(), cpus));
        return Ok(f.into_iter().map(Figure::skipped).collect());
    }
    let guest = [guest_dir().join("irq-bench.elf")];
    let on = |model: &str| Options {
        cpu: model.into(),
        ..o.clone()
    };
    let apicv = run_guest_on(&on(APICV_MODEL), "irq-bench", IRQ_CONF, &guest, 300, 1)?;
    let emulated = run_guest_on(&on(EMULATED_MODEL), "irq-bench", IRQ_CONF, &guest, 300, 1)?;
    let dir = linux_guest_dir()?;
    let files = [dir.join("bzImage"), dir.join("initramfs.cpio.lz4")];
    let mut boots = Vec::new();
    for vcpus in BOOT_VCPUS {
        let what = format!("SMP Linux, {vcpus} vCPUs, boot to poweroff");
        let conf = smp_linux_conf(vcpus, "none");
        boots.push(run_guest_on(o, &what, &conf, &files, 1200, cpus)?);
    }
    let idle = run_guest_on(
        o,
        "SMP Linux, 2 vCPUs, idle",
        &smp_linux_conf(2, "idle"),
        &files,
        1200,
        cpus,
    )?;
    save_transcripts(
        o,
        &[
            ("irq-bench-apicv", &apicv.transcript),
            ("irq-bench-emulated", &emulated.transcript),
            ("linux-smp-1", &boots[0].transcript),
            ("linux-smp-2", &boots[1].transcript),
            ("linux-smp-4", &boots[2].transcript),
            ("linux-smp-idle", &idle.transcript),
        ],
    )?;
    let mut f = apic_figures(&apicv.transcript, &emulated.transcript);
    f.extend(linux_smp_figures(
        &LinuxSmpRuns {
            boot: [
                &boots[0].transcript,
                &boots[1].transcript,
                &boots[2].transcript,
            ],
            idle: &idle.transcript,
        },
        cpus,
    ));
    Ok(f)
}

/// The runs' transcripts next to the JSON report.
fn save_transcripts(o: &Options, runs: &[(&str, &String)]) -> Result<(), BootError> {
    let Some(parent) = o.out.parent() else {
        return Ok(());
    };
    std::fs::create_dir_all(parent).map_err(io("cannot create", parent))?;
    for (name, t) in runs {
        let p: PathBuf = parent.join(format!("{name}.transcript.txt"));
        std::fs::write(&p, t).map_err(io("cannot write", &p))?;
    }
    Ok(())
}

/// `bench --only irq`: builds the kernel, images and guests, makes only these runs, and
/// writes their report to `o.out`.
pub fn run_only(o: &Options) -> Result<Report, BootError> {
    only(o, run)
}

/// Builds what the sessions need, runs `rows` and writes their report (`bench --only`).
pub fn only(
    o: &Options,
    rows: impl FnOnce(&Options) -> Result<Vec<Figure>, BootError>,
) -> Result<Report, BootError> {
    let kernel = build_kernel()?;
    build_images(&kernel, None, &workspace_root().join("target/bench/images"))?;
    build_guests()?;
    let report = Report {
        date: today(),
        bochs_cpu: o.cpu.clone(),
        bochs_version: bochs_version(),
        smoke: o.smoke,
        figures: rows(o)?,
    };
    if let Some(parent) = o.out.parent() {
        std::fs::create_dir_all(parent).map_err(io("cannot create", parent))?;
    }
    std::fs::write(&o.out, report.to_json()).map_err(io("cannot write", &o.out))?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::Status;

    const APICV: &str = "\
[irq] guest irq-bench: BENCH irq mode=xapic source=self-ipi n=100 exits=200 eoi_exits=0 ticks=250000 reasons=56:200
[irq] guest irq-bench: BENCH irq mode=xapic source=timer n=100 exits=104 eoi_exits=2 ticks=4000000
[irq] guest irq-bench: BENCH uart-irq-latency n=100 median=3100 max=4200 min=3000
[irq] guest irq-bench: BENCH irq mode=x2apic source=self-ipi n=100 exits=1 eoi_exits=0 ticks=9000
[irq] guest irq-bench: BENCH irq mode=x2apic source=timer n=100 exits=100 eoi_exits=0 ticks=4000000
";
    const EMULATED: &str = "\
[irq] guest irq-bench: BENCH irq mode=xapic source=self-ipi n=100 exits=200 eoi_exits=100 ticks=500000
[irq] guest irq-bench: BENCH irq mode=xapic source=timer n=100 exits=200 eoi_exits=100 ticks=4000000
[irq] guest irq-bench: BENCH uart-irq-latency n=100 median=5000 max=9000 min=4000
[irq] guest irq-bench: BENCH irq mode=x2apic source=self-ipi n=100 exits=250 eoi_exits=100 ticks=400000
[irq] guest irq-bench: BENCH irq mode=x2apic source=timer FAIL: fewer than 100 interrupts (fired 3)
";

    fn value(f: &[Figure], name: &str) -> Option<f64> {
        f.iter()
            .find(|x| x.name == name)
            .unwrap_or_else(|| panic!("no figure '{name}'"))
            .value
    }

    #[test]
    fn irq_lines_give_exits_per_interrupt_and_per_eoi() {
        let f = apic_figures(APICV, EMULATED);
        assert_eq!(f.len(), 20);
        let on = "corei7_skylake_x, virtual-interrupt delivery";
        assert_eq!(
            value(
                &f,
                &format!("exits per delivered self-IPI, xAPIC (MMIO), {on}")
            ),
            Some(2.0)
        );
        assert_eq!(
            value(
                &f,
                &format!("exits per delivered timer interrupt, xAPIC (MMIO), {on}")
            ),
            Some(1.02)
        );
        assert_eq!(
            value(&f, &format!("exits per EOI, xAPIC (MMIO), {on}")),
            Some(0.01)
        );
        assert_eq!(
            value(
                &f,
                &format!("exits per delivered self-IPI, x2APIC (MSRs), {on}")
            ),
            Some(0.01)
        );
        assert_eq!(
            value(
                &f,
                &format!("self-IPI round trip (send, handler, EOI), x2APIC (MSRs), {on}")
            ),
            Some(90.0)
        );
        assert_eq!(
            value(
                &f,
                &format!("device interrupt latency (COM1 → IOAPIC pin 4 → handler), max, {on}")
            ),
            Some(4200.0)
        );
        let emu = "corei5_arrandale_m520, full emulation";
        assert_eq!(
            value(
                &f,
                &format!("exits per delivered self-IPI, x2APIC (MSRs), {emu}")
            ),
            Some(1.5)
        );
        assert_eq!(
            value(&f, &format!("exits per EOI, xAPIC (MMIO), {emu}")),
            Some(1.0)
        );
        // A failed pass is missing, and so is the EOI figure that needs it.
        let timer = format!("exits per delivered timer interrupt, x2APIC (MSRs), {emu}");
        assert_eq!(value(&f, &timer), None);
        assert_eq!(
            value(&f, &format!("exits per EOI, x2APIC (MSRs), {emu}")),
            None
        );
        assert_eq!(f.iter().filter(|x| x.status == Status::Missing).count(), 2);
        assert!(apic_figures("", "").iter().all(|x| x.value.is_none()));
    }

    #[test]
    fn a_forged_or_empty_pass_is_not_a_figure() {
        let zero =
            "guest irq-bench: BENCH irq mode=xapic source=self-ipi n=0 exits=0 eoi_exits=0 ticks=0";
        assert_eq!(irq_pass(zero, "xapic", "self-ipi"), None);
        let other =
            "guest other: BENCH irq mode=xapic source=self-ipi n=100 exits=1 eoi_exits=0 ticks=1";
        assert_eq!(irq_pass(other, "xapic", "self-ipi"), None);
    }

    const BOOT2: &str = "\
[linux +1500000] guest: userspace up uptime=0.03
[  900] INFO  vm linux: exits: total                  count=40000 ticks=9
";
    const IDLE: &str = "\
[linux +1500000] guest: userspace up uptime=0.03
[linux +2000000] guest: idle start seconds=10
[linux +502000000] guest: idle done seconds=10
[linux +502000001] vm linux: exits: total count=1
[  900] INFO  vm linux: exits: total                  count=45000 ticks=9
";

    #[test]
    fn idle_exits_are_the_difference_over_the_idle_window() {
        // 5,000 more exits over 500,000,000 ticks = 10 s at 50 MHz; the guest's forged line
        // (its console, not a kernel message) is ignored.
        assert_eq!(idle_exits_per_second(BOOT2, IDLE, 50e6), Some(500.0));
        assert_eq!(idle_exits_per_second(BOOT2, BOOT2, 50e6), None);
        let boot1 = "[linux +1200000] guest: userspace up uptime=0.02\n";
        let boot4 = "[linux +2600000] guest: userspace up uptime=0.05\n";
        let f = linux_smp_figures(
            &LinuxSmpRuns {
                boot: [boot1, BOOT2, boot4],
                idle: IDLE,
            },
            2,
        );
        let values: Vec<_> = f.iter().map(|x| x.value).collect();
        assert_eq!(values, [Some(1.2e6), Some(1.5e6), Some(2.6e6), Some(500.0)]);
        assert_eq!(f[2].name, "Linux boot to userspace, 4 vCPUs");
        assert!(linux_smp_figures(&LinuxSmpRuns::default(), 2)
            .iter()
            .all(|x| x.status == Status::Missing));
    }

    #[test]
    fn smp_config_names_vcpus_and_the_idle_check() {
        let c = smp_linux_conf(4, "idle");
        assert!(c.contains("vcpus = 4\n"), "{c}");
        assert!(c.contains("bulkhead.checks=idle bulkhead.idle=10\""), "{c}");
        assert!(!c.contains("nolapic"), "{c}");
        assert!(c.contains("console-timestamps = true"), "{c}");
        vm::config::Config::parse(c.as_bytes()).expect("the SMP Linux bench config parses");
    }
}
