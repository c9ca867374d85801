//! The KVM paravirtual clock row (issue 12): what a kvmclock read costs. The `kvm-pv` test
//! guest (tests/guest/selftest/src/bin/kvm-pv.rs) in a VM with `kvm-pv = true` reads its
//! `pvclock_vcpu_time_info` 10,000 times as Linux's `__pvclock_read_cycles` does, between
//! two EXIT_STATS calls: the exits in between other than the VMX-preemption timer's (the
//! hypervisor's own deadlines: console pacing, slice ends), none expected since the record
//! is guest memory the hypervisor updates only when it must, and the TSC ticks per read. Linux's
//! `clock_gettime` through the vDSO with kvm-clock is this read plus its own arithmetic.
//! Then the same inside Linux: the test guest's `clock` check runs `/bin/clockloop`
//! (`clock_gettime(CLOCK_MONOTONIC)` a million times, glibc's vDSO) with `kvm-pv` (clocksource
//! kvm-clock) and without (tsc); the exits the loop costs are the VM's total less that of the
//! same boot with a loop of 0 calls (what remains is the guest's timer tick while it runs).
//! The parsers are host-tested; [`run`] makes the runs for `bench::run_bench`.

use super::irq::total_exits;
use super::{line_with, num, run_guest_on, ticks_of, Figure, Options};
use crate::error::BootError;
use crate::image::guest_dir;

pub const SEC_KVM: &str = "KVM paravirtual interface";

/// The `kvm-pv` guest alone, with KVM's interface.
pub const KVMCLOCK_CONF: &str =
    "[vm.pv]\nkind = \"elf64\"\nimage = \"kvm-pv.elf\"\nmemory = \"16M\"\nkvm-pv = true\n";

const METHOD: &str = "kvm-pv guest (elf64, kvm-pv = true), Bochs skylake_x: 10,000 kvmclock reads (version, fields, RDTSC, version again; Linux's pvclock protocol) between two EXIT_STATS calls; exits: EXIT_STATS delta less the VMX-preemption-timer exits of the hypervisor's console pacing and slice ends";

/// The figures of the `BENCH kvmclock` line of `transcript`.
pub fn kvmclock_figures(transcript: &str) -> Vec<Figure> {
    let line = line_with(transcript, "guest kvm-pv: BENCH kvmclock reads=");
    let reads = line.and_then(|l| num(l, "reads")).filter(|&n| n > 0.0);
    let per = |key: &str| Some(line.and_then(|l| num(l, key))? / reads?);
    let guest_exits = line.and_then(|l| Some((num(l, "exits")? - num(l, "timer-exits")?) / reads?));
    vec![
        Figure::new(
            SEC_KVM,
            "VM exits per kvmclock read (besides the preemption timer's)",
            guest_exits,
            "exits",
            METHOD,
        ),
        Figure::new(SEC_KVM, "kvmclock read", per("ticks"), "TSC ticks", METHOD),
    ]
}

/// `clock_gettime` calls of the Linux loop.
pub const CLOCK_CALLS: u64 = 1_000_000;

/// The Linux test guest (one vCPU, no devices) running only the `clock` check with `calls`.
pub fn linux_clock_conf(kvm_pv: bool, calls: u64) -> String {
    format!(
        "[vm.linux]\nkind = \"linux\"\nimage = \"bzImage\"\ninitrd = \"initramfs.cpio.lz4\"\n\
         memory = \"64M\"\nkvm-pv = {kvm_pv}\nconsole-timestamps = true\n\
         cmdline = \"console=ttyS0,115200 panic=-1 reboot=t io_delay=none tsc=reliable \
         no_timer_check tsc_early_khz=50000 bulkhead.checks=clock bulkhead.clock={calls}\"\n"
    )
}

/// The Linux rows of one configuration (`label`: "kvm-pv" or "kvm-pv = false"): exits per
/// call and per second of the loop, ticks per call, from the run with [`CLOCK_CALLS`] calls
/// (`looped`) and the one with none (`base`).
pub fn linux_clock_figures(label: &str, looped: &str, base: &str) -> Vec<Figure> {
    let method = format!(
        "Linux test guest, 1 vCPU, {label}: /bin/clockloop, {CLOCK_CALLS} clock_gettime(CLOCK_MONOTONIC) (vDSO); exits: the VM's total less that of the same boot with 0 calls; time: console timestamps of `guest: clock BEGIN` and `END` (TSC at 50 MHz)"
    );
    let extra = total_exits(looped, "linux")
        .zip(total_exits(base, "linux"))
        .map(|(a, b)| (a - b).max(0.0));
    let ticks = ticks_of(looped, "linux", "guest: clock BEGIN")
        .zip(ticks_of(looped, "linux", "guest: clock END"))
        .and_then(|(b, e)| e.checked_sub(b))
        .filter(|&t| t > 0);
    let passed = line_with(looped, "guest: PASS clock clocksource=").is_some();
    let calls = CLOCK_CALLS as f64;
    let ok = |v: Option<f64>| v.filter(|_| passed);
    vec![
        Figure::new(
            SEC_KVM,
            &format!("Linux clock_gettime, {label}: VM exits per call"),
            ok(extra.map(|x| x / calls)),
            "exits",
            &method,
        ),
        Figure::new(
            SEC_KVM,
            &format!("Linux clock_gettime loop, {label}: VM exits per second"),
            ok(extra
                .zip(ticks)
                .map(|(x, t)| x / (t as f64 / crate::bochs::IPS as f64))),
            "exits/s",
            &method,
        ),
        Figure::new(
            SEC_KVM,
            &format!("Linux clock_gettime, {label}: per call"),
            ok(ticks.map(|t| t as f64 / calls)),
            "TSC ticks",
            &method,
        ),
    ]
}

/// Runs the guests (skipped in smoke mode).
pub fn run(o: &Options) -> Result<Vec<Figure>, BootError> {
    let labels = [(true, "kvm-pv"), (false, "kvm-pv = false")];
    if o.smoke {
        let mut f = kvmclock_figures("");
        for (_, label) in labels {
            f.extend(linux_clock_figures(label, "", ""));
        }
        return Ok(f.into_iter().map(Figure::skipped).collect());
    }
    let guest = [guest_dir().join("kvm-pv.elf")];
    let run = run_guest_on(o, "kvmclock reads (kvm-pv)", KVMCLOCK_CONF, &guest, 300, 1)?;
    let mut figures = kvmclock_figures(&run.transcript);
    let dir = super::linux_guest_dir()?;
    let files = [dir.join("bzImage"), dir.join("initramfs.cpio.lz4")];
    for (kvm_pv, label) in labels {
        let looped = run_guest_on(
            o,
            &format!("Linux clock_gettime loop ({label})"),
            &linux_clock_conf(kvm_pv, CLOCK_CALLS),
            &files,
            900,
            1,
        )?;
        let base = run_guest_on(
            o,
            &format!("Linux clock_gettime loop of 0 calls ({label})"),
            &linux_clock_conf(kvm_pv, 0),
            &files,
            900,
            1,
        )?;
        figures.extend(linux_clock_figures(
            label,
            &looped.transcript,
            &base.transcript,
        ));
    }
    Ok(figures)
}

/// `bench --only kvmclock`: just these rows.
pub fn run_only(o: &Options) -> Result<super::Report, BootError> {
    super::irq::only(o, run)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bench_line_gives_exits_and_ticks_per_read() {
        let t = "[pv] guest kvm-pv: BENCH kvmclock reads=10000 exits=13 timer-exits=12 ticks=2500000 last=7\n";
        let f = kvmclock_figures(t);
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].value, Some(0.0001));
        assert_eq!(f[1].value, Some(250.0));
        assert!(kvmclock_figures("").iter().all(|x| x.value.is_none()));
        let zero = "guest kvm-pv: BENCH kvmclock reads=0 exits=0 timer-exits=0 ticks=0";
        assert!(kvmclock_figures(zero).iter().all(|x| x.value.is_none()));
    }

    #[test]
    fn the_linux_loop_gives_exits_per_call_and_per_second() {
        let looped = "[linux +1000] guest: clock BEGIN clocksource=kvm-clock calls=1000000\n\
                      [linux +100001000] guest: clock calls=1000000 ns=2000000000 backwards=0\n\
                      [linux +100002000] guest: clock END\n\
                      [linux +100003000] guest: PASS clock clocksource=kvm-clock calls=1000000 backwards=0\n\
                      [   9] INFO  vm linux: exits: total                  count=5500 ticks=1\n";
        let base = "[   9] INFO  vm linux: exits: total                  count=5000 ticks=1\n";
        let f = linux_clock_figures("kvm-pv", looped, base);
        let v: Vec<_> = f.iter().map(|f| f.value).collect();
        // 500 extra exits over 1,000,000 calls and 100,001,000 ticks (2.00002 s at 50 MHz).
        assert_eq!(v[0], Some(0.0005));
        assert!((v[1].unwrap() - 500.0 / 2.00002).abs() < 1e-9);
        assert_eq!(v[2], Some(100.001));
        // A loop that failed (the clock went backwards) gives no figures.
        let failed = looped.replace("PASS clock", "FAIL clock");
        assert!(linux_clock_figures("kvm-pv", &failed, base)
            .iter()
            .all(|f| f.value.is_none()));
        assert!(linux_clock_conf(false, 0).contains("kvm-pv = false"));
        assert!(linux_clock_conf(true, 7).contains("bulkhead.checks=clock bulkhead.clock=7"));
    }

    #[test]
    fn the_config_offers_kvm_pv() {
        assert!(KVMCLOCK_CONF.contains("kvm-pv = true") && KVMCLOCK_CONF.contains("kvm-pv.elf"));
    }
}
