//! The SMP test guests (issue 10) as they run today, one vCPU per VM: `smp-counter` with
//! `vcpus = 1` counts exactly and executes exactly 1000 CPUIDs; `rt-latency` measures the
//! PIT's period; `progress` and `noisy` side by side print what their harness tests will
//! read, with exit counts that match the guests' own. Multi-vCPU and pinned runs come with the kernel's SMP support.

use bulkhead_tests::{boot_image, bundle_image, Checked};

fn vm(name: &str, image: &str, extra: &str) -> String {
    format!("[vm.{name}]\nkind = \"elf64\"\nimage = \"{image}\"\nmemory = \"16M\"\n{extra}")
}

/// A `key=value` number from VM `vm`'s console line containing `needle`.
fn value(run: &Checked, vm: &str, needle: &str, key: &str) -> u64 {
    let line = run.guest_line(vm, needle);
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{key}=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
}

/// One vCPU: the entry path every vCPU will take (own stack, .bss zeroed once), 100,000
/// LOCK XADDs, exactly 1000 CPUID exits (1000 + vCPU index), the verdict from vCPU 0.
#[test]
fn smp_counter_with_one_vcpu_counts_exactly() {
    let conf = vm("smp", "smp-counter.elf", "vcpus = 1\n");
    let (_dir, image) = bundle_image(&conf, &["smp-counter.elf"]);
    let run = boot_image(&image, "corei7_skylake_x", 240);
    run.exited(0, "ok")
        .saw("[smp] guest smp-counter: smp: start vcpus=1")
        .saw("[smp] guest smp-counter: smp: vcpu 0 adds=100000 cpuids=1000")
        .saw("[smp] guest smp-counter: smp: vcpus=1 counter=100000 expected=100000")
        .saw("[smp] guest smp-counter: smp: ok")
        .not_saw("FAIL")
        .saw("vm smp: stopped: guest halted with interrupts disabled (powered off)")
        .exits("smp", "CPUID", 1000)
        // Four console lines, nothing else called.
        .exits("smp", "VMCALL", 4);
}

/// `rt-latency` alone: 1001 timer interrupts injected, a mean period of 1 ms of the 50 MHz
/// TSC (the PIT at divisor 1193 is 1000.15 Hz), and its lateness figures.
#[test]
fn rt_latency_measures_a_one_millisecond_period() {
    let (_dir, image) = bundle_image(&vm("rt", "rt-latency.elf", ""), &["rt-latency.elf"]);
    let run = boot_image(&image, "corei7_skylake_x", 240);
    run.exited(0, "ok")
        .not_saw("FAIL")
        .saw("[rt] guest rt-latency: rt: periods=1000 median=")
        .counter("rt", "interrupts-injected", 1001);
    let period = value(&run, "rt", "rt: period=", "period");
    assert!((49_000..=51_000).contains(&period), "period {period} ticks");
    let median = value(&run, "rt", "rt: periods=", "median");
    let max = value(&run, "rt", "rt: periods=", "max");
    assert!(median <= max, "median {median} above max {max}");
    eprintln!("rt-latency alone: {}", run.guest_line("rt", "rt: periods="));
}

/// `progress` and `noisy` time-sliced on one CPU, with `smp-counter` after them: each prints
/// its lines, and the noisy guest's exits are exactly what it counted (one CPUID and six
/// port accesses per iteration, plus its CPUID 0x16). Its console rate is kept below the
/// UART's ~11 KB/s so that its report is not dropped behind its own flood in the queue.
#[test]
fn progress_and_noisy_guests_report() {
    let conf = vm("progress", "progress.elf", "")
        + &vm(
            "noisy",
            "noisy.elf",
            "console-rate = \"2K\"\nconsole-buffer = \"2K\"\n",
        )
        + &vm("smp", "smp-counter.elf", "");
    let (_dir, image) = bundle_image(&conf, &["progress.elf", "noisy.elf", "smp-counter.elf"]);
    let run = boot_image(&image, "corei7_skylake_x", 400);
    run.exited(0, "ok").not_saw("FAIL");
    for round in 1..=10 {
        run.said(
            "progress",
            &format!("guest progress: progress: round {round} tsc "),
        );
    }
    run.saw("[progress] guest progress: progress: done rounds=10 work=0x")
        .saw("[smp] guest smp-counter: smp: ok");
    let iterations = value(&run, "noisy", "noisy: iterations=", "iterations");
    assert!(iterations > 1000, "{iterations} noisy iterations");
    assert_eq!(value(&run, "noisy", "noisy: ", "io"), 6 * iterations);
    run.exits("noisy", "CPUID", iterations + 1)
        .exits("noisy", "I/O instruction", 6 * iterations)
        .exits("smp", "CPUID", 1000);
    eprintln!("noisy: {}", run.guest_line("noisy", "noisy: "));
}
