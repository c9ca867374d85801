//! The KVM paravirtual clock row (issue 12): what a kvmclock read costs. The `kvm-pv` test
//! guest (tests/guest/selftest/src/bin/kvm-pv.rs) in a VM with `kvm-pv = true` reads its
//! `pvclock_vcpu_time_info` 10,000 times as Linux's `__pvclock_read_cycles` does, between
//! two EXIT_STATS calls: the exits in between other than the VMX-preemption timer's (the
//! hypervisor's own deadlines: console pacing, slice ends), none expected since the record
//! is guest memory the hypervisor updates only when it must, and the TSC ticks per read. Linux's
//! `clock_gettime` through the vDSO with kvm-clock is this read plus its own arithmetic.
//! The parser is host-tested; [`run`] makes the run for `bench::run_bench`.

use super::{line_with, num, run_guest_on, Figure, Options};
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

/// Runs the guest (skipped in smoke mode).
pub fn run(o: &Options) -> Result<Vec<Figure>, BootError> {
    if o.smoke {
        return Ok(kvmclock_figures("")
            .into_iter()
            .map(Figure::skipped)
            .collect());
    }
    let guest = [guest_dir().join("kvm-pv.elf")];
    let run = run_guest_on(o, "kvmclock reads (kvm-pv)", KVMCLOCK_CONF, &guest, 300, 1)?;
    Ok(kvmclock_figures(&run.transcript))
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
    fn the_config_offers_kvm_pv() {
        assert!(KVMCLOCK_CONF.contains("kvm-pv = true") && KVMCLOCK_CONF.contains("kvm-pv.elf"));
    }
}
