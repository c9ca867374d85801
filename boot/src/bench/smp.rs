//! The SMP benchmark rows (issue 10): exit round trips on the boot CPU and on an application
//! processor of the same 2-CPU machine, the real-time VM's timer lateness on a dedicated CPU
//! alone and beside a noisy VM, and the kick latency (an IPI to a vCPU in the guest on another
//! CPU, sent to its external-interrupt exit). Parsers here are host-tested; the runs are in
//! `bench::run_bench`.

use super::{line_with, num, selftest_median, Figure};

pub const SEC_SMP: &str = "SMP and real-time partitions";

/// The selftest VM pinned to `cpu` (exit round trips measured there).
pub fn selftest_on_cpu_conf(cpu: u32) -> String {
    format!(
        "[vm.selftest]\nkind = \"elf64\"\nimage = \"selftest.elf\"\nmemory = \"16M\"\ncpus = [{cpu}]\n\
         [[vm.selftest.virtio-blk]]\nsize = \"1M\"\n"
    )
}

/// The real-time VM dedicated to CPU 1, with the noisy VM on CPU 0 when `noisy`.
pub fn rt_conf(noisy: bool) -> String {
    let mut s = String::from(
        "[vm.rt]\nkind = \"elf64\"\nimage = \"rt-latency.elf\"\nmemory = \"16M\"\ncpus = [1]\ndedicated = true\n",
    );
    if noisy {
        s += "[vm.noisy]\nkind = \"elf64\"\nimage = \"noisy.elf\"\nmemory = \"16M\"\ncpus = [0]\n\
              console-rate = \"2K\"\nconsole-buffer = \"2K\"\n";
    }
    s
}

/// Two vCPUs, one on each CPU: vCPU 0's MEM_RELEASEs kick vCPU 1 (smp-kick guest).
pub const KICK_CONF: &str =
    "[vm.kick]\nkind = \"elf64\"\nimage = \"smp-kick.elf\"\nmemory = \"16M\"\nvcpus = 2\n";

const RT_METHOD: &str = "rt-latency guest dedicated to CPU 1 of 2 (Bochs, 50 MIPS): 1,000 periods of the PIT at 1 kHz, lateness of each timer interrupt against the ideal period (guest TSC)";

/// The figures of the four SMP runs.
pub fn smp_figures(
    cpu0: &str,
    cpu1: &str,
    rt_alone: &str,
    rt_noisy: &str,
    kick: &str,
) -> Vec<Figure> {
    let mut out = Vec::new();
    for (cpu, t) in [(0, cpu0), (1, cpu1)] {
        for (key, label) in [
            ("cpuid", "CPUID"),
            ("hypercall-nop", "no-op hypercall (VMCALL NOP)"),
        ] {
            out.push(Figure::new(
                SEC_SMP,
                &format!("{label} round trip on CPU {cpu} of 2"),
                selftest_median(t, key),
                "TSC ticks",
                &format!(
                    "selftest guest pinned to CPU {cpu} (cpus = [{cpu}]) in a 2-CPU Bochs: median guest round trip; the TSC counts emulated time, which two emulated CPUs share"
                ),
            ));
        }
    }
    for (label, t) in [
        ("alone", rt_alone),
        ("beside a noisy VM on CPU 0", rt_noisy),
    ] {
        let line = line_with(t, "guest rt-latency: rt: periods=");
        for key in ["median", "max"] {
            out.push(Figure::new(
                SEC_SMP,
                &format!("real-time VM timer lateness, {key}, {label}"),
                line.and_then(|l| num(l, key)),
                "TSC ticks",
                RT_METHOD,
            ));
        }
        out.push(Figure::new(
            SEC_SMP,
            &format!("real-time VM worst exit handling, {label}"),
            line_with(t, "vm rt: exits: total").and_then(|l| num(l, "worst")),
            "TSC ticks",
            "the rt VM's statistics: the longest single exit, VM exit to the next entry",
        ));
    }
    let kicks = line_with(kick, "vm kick: exits: kicks count=");
    for (key, label) in [("avg", "average"), ("worst", "worst")] {
        out.push(Figure::new(
            SEC_SMP,
            &format!("kick latency (IPI to a vCPU in the guest on another CPU), {label}"),
            kicks.and_then(|l| num(l, key)),
            "TSC ticks",
            "smp-kick guest, 2 vCPUs on 2 CPUs: 100 MEM_RELEASEs on vCPU 0 each kick vCPU 1's CPU; ticks from the IPI's send to the external-interrupt exit it causes",
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smp_lines_give_every_figure() {
        let cpu = "guest selftest: BENCH cpuid median=700 min=1\nguest selftest: BENCH hypercall-nop median=720 min=1\n";
        let rt = "[rt] guest rt-latency: rt: periods=1000 median=5 max=13 (ticks)\n[ 1] INFO  vm rt: exits: total count=2 ticks=3 worst=2985\n";
        let kick = "[ 1] INFO  vm kick: exits: kicks count=100 latency avg=812 worst=2000\n";
        let f = smp_figures(cpu, cpu, rt, rt, kick);
        assert_eq!(f.len(), 12);
        let get = |name: &str| f.iter().find(|x| x.name == name).and_then(|x| x.value);
        assert_eq!(get("CPUID round trip on CPU 1 of 2"), Some(700.0));
        assert_eq!(get("real-time VM timer lateness, max, alone"), Some(13.0));
        assert_eq!(
            get("real-time VM worst exit handling, beside a noisy VM on CPU 0"),
            Some(2985.0)
        );
        assert_eq!(
            get("kick latency (IPI to a vCPU in the guest on another CPU), average"),
            Some(812.0)
        );
        assert!(smp_figures("", "", "", "", "")
            .iter()
            .all(|x| x.value.is_none()));
    }

    #[test]
    fn configs_name_the_cpus() {
        assert!(selftest_on_cpu_conf(1).contains("cpus = [1]"));
        assert!(rt_conf(true).contains("dedicated = true") && rt_conf(true).contains("[vm.noisy]"));
        assert!(!rt_conf(false).contains("noisy"));
    }
}
