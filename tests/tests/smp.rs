//! The SMP test guests (issue 10) as they run today, one vCPU per VM: `smp-counter` with
//! `vcpus = 1` counts exactly and executes exactly 1000 CPUIDs; `rt-latency` measures the
//! PIT's period; `progress` and `noisy` side by side print what their harness tests will
//! read, with exit counts that match the guests' own. Multi-vCPU and pinned runs come with the kernel's SMP support.

use bulkhead_tests::{boot_image, bundle_image, Checked};

fn vm(name: &str, image: &str, extra: &str) -> String {
    format!("[vm.{name}]\nkind = \"elf64\"\nimage = \"{image}\"\nmemory = \"16M\"\n{extra}")
}

/// Boots `image` on a 2-CPU Skylake-X Bochs.
fn boot_two_cpus(image: &std::path::Path, timeout_secs: u64) -> Checked {
    bulkhead_tests::boot_image_smp(
        bulkhead_boot::Platform::Bochs,
        image,
        "corei7_skylake_x",
        2,
        timeout_secs,
    )
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

/// The count in VM `vm`'s `vm VM: vcpu N exits: REASON count=` line, 0 without one.
fn vcpu_exits(run: &Checked, vm: &str, vcpu: usize, reason: &str) -> u64 {
    let prefix = format!("vm {vm}: vcpu {vcpu} exits: {reason} ");
    bulkhead_boot::transcript::kernel_messages(&run.outcome.transcript)
        .find_map(|l| {
            l.strip_prefix(&prefix)?
                .trim_start()
                .strip_prefix("count=")?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// Several vCPUs on several CPUs (issue 10): every vCPU adds 100,000 with LOCK XADD and the
/// total is exact; vCPU i executes exactly 1000 + i CPUIDs, per-vCPU statistics say so and add
/// up to the VM's; the pool placement spreads the vCPUs least-loaded first. On Skylake-X (2
/// CPUs, 2 vCPUs), Tiger Lake (4 CPUs, 4 vCPUs) and Arrandale (xAPIC; 4 vCPUs on 2 CPUs,
/// time-sliced).
#[test]
fn smp_counter_on_several_vcpus_counts_exactly() {
    for (model, cpus, vcpus) in [
        ("corei7_skylake_x", 2u32, 2usize),
        ("tigerlake", 4, 4),
        ("corei5_arrandale_m520", 2, 4),
    ] {
        let conf = vm("smp", "smp-counter.elf", &format!("vcpus = {vcpus}\n"));
        let (_dir, image) = bundle_image(&conf, &["smp-counter.elf"]);
        let run = bulkhead_tests::boot_image_smp(
            bulkhead_boot::Platform::Bochs,
            &image,
            model,
            cpus,
            400,
        );
        let total = 100_000 * vcpus as u64;
        run.exited(0, "ok")
            .saw(&format!(
                "[smp] guest smp-counter: smp: start vcpus={vcpus}"
            ))
            .saw(&format!(
                "[smp] guest smp-counter: smp: vcpus={vcpus} counter={total} expected={total}"
            ))
            .saw("[smp] guest smp-counter: smp: ok")
            .not_saw("FAIL")
            .saw("vm smp: stopped: guest halted with interrupts disabled (powered off)");
        let mut cpuid_sum = 0;
        let mut total_sum = 0;
        for i in 0..vcpus {
            run.saw(&format!("vm smp: vcpu {i} on cpu {}", i % cpus as usize))
                .saw(&format!(
                    "[smp] guest smp-counter: smp: vcpu {i} adds=100000 cpuids={}",
                    1000 + i
                ));
            let cpuid = vcpu_exits(&run, "smp", i, "CPUID");
            assert_eq!(cpuid, 1000 + i as u64, "{model}: vcpu {i} CPUID exits");
            cpuid_sum += cpuid;
            total_sum += vcpu_exits(&run, "smp", i, "total");
        }
        run.exits("smp", "CPUID", cpuid_sum)
            .exits("smp", "total", total_sum);
        for i in 1..vcpus {
            run.saw(&format!(
                "vm smp: vcpu {i} stopped: guest halted with interrupts disabled (powered off)"
            ));
        }
    }
}

/// Each round's `steps` of `progress` VM `vm`.
fn steps(run: &Checked, vm: &str) -> Vec<u64> {
    (1..=10)
        .map(|round| value(run, vm, &format!("progress: round {round} tsc "), "steps"))
        .collect()
}

/// Two VMs pinned to different CPUs run at the same time: each computes about as much per
/// round as it would alone, and clearly more than when both share one CPU (measured: 1,388 against 830 steps a round, the
/// rest of the shared CPU going to the other VM and the hypervisor).
#[test]
fn pinned_vms_on_different_cpus_run_at_the_same_time() {
    let pinned = |a: u32, b: u32| {
        vm("a", "progress.elf", &format!("cpus = [{a}]\n"))
            + &vm("b", "progress.elf", &format!("cpus = [{b}]\n"))
    };
    let mut per_round = Vec::new();
    for (a, b) in [(0, 1), (0, 0)] {
        let (_dir, image) = bundle_image(&pinned(a, b), &["progress.elf"]);
        let run = boot_two_cpus(&image, 400);
        run.exited(0, "ok")
            .saw(&format!("vm a: vcpu 0 on cpu {a}"))
            .saw(&format!("vm b: vcpu 0 on cpu {b}"))
            .saw("[a] guest progress: progress: done rounds=10")
            .saw("[b] guest progress: progress: done rounds=10");
        // Rounds 2-9: both VMs are computing throughout.
        let (sa, sb) = (steps(&run, "a"), steps(&run, "b"));
        let sum = |s: &[u64]| s[1..9].iter().sum::<u64>();
        eprintln!("cpus [{a}] and [{b}]: steps a {sa:?} b {sb:?}");
        per_round.push((sum(&sa), sum(&sb)));
    }
    let ((apart_a, apart_b), (shared_a, shared_b)) = (per_round[0], per_round[1]);
    for (apart, shared) in [(apart_a, shared_a), (apart_b, shared_b)] {
        assert!(
            apart * 10 > shared * 14,
            "on their own CPUs the VMs computed {apart} steps, sharing one {shared}: not in parallel"
        );
    }
}

/// A vCPU that triple-faults stops its VM, all its vCPUs (vCPU 0 spins on the other CPU and is
/// kicked out), and nothing else: the neighbour VM finishes its work.
#[test]
fn a_triple_faulting_vcpu_stops_its_vm_and_only_it() {
    let conf = vm("bad", "smp-triple.elf", "vcpus = 2\n") + &vm("good", "smp-counter.elf", "");
    let (_dir, image) = bundle_image(&conf, &["smp-triple.elf", "smp-counter.elf"]);
    let run = boot_two_cpus(&image, 300);
    run.exited(0, "ok")
        .saw("[bad] guest smp-triple: smp-triple: vcpu 0 spinning")
        .saw("vm bad: vcpu 1 stopped: triple fault")
        .saw("vm bad: vcpu 0 stopped: triple fault")
        .saw("vm bad: stopped: triple fault")
        .exits("bad", "triple fault", 1)
        .saw("[good] guest smp-counter: smp: ok")
        .saw("vm good: stopped: guest halted with interrupts disabled (powered off)");
}

/// Placements the machine cannot honour are refused at boot with the CPUs it has.
#[test]
fn a_cpu_the_machine_lacks_is_refused_with_the_cpus_present() {
    let conf = vm("far", "smp-counter.elf", "cpus = [3]\n");
    let (_dir, image) = bundle_image(&conf, &["smp-counter.elf"]);
    let run = boot_two_cpus(&image, 200);
    run.saw("bulkhead: cannot place the VMs' vCPUs: ")
        .not_saw("vm far: first VM entry");
    eprintln!("{}", run.line("cannot place"));
}

/// A real-time partition (issue 10): `rt-latency` dedicated to CPU 1 measures the lateness of
/// its 1 kHz timer with and without a noisy VM storming exits, I/O and console output on CPU
/// 0. Both runs complete their 1000 periods on the dedicated CPU; the figures are printed for
/// comparison (scripts/bench records them: a benchmark, not a timed assertion).
#[test]
fn a_dedicated_real_time_vm_keeps_its_period_beside_a_noisy_neighbour() {
    let rt = vm("rt", "rt-latency.elf", "cpus = [1]\ndedicated = true\n");
    let noisy = vm(
        "noisy",
        "noisy.elf",
        "cpus = [0]\nconsole-rate = \"2K\"\nconsole-buffer = \"2K\"\n",
    );
    for (label, conf) in [("alone", rt.clone()), ("with noisy", rt.clone() + &noisy)] {
        let (_dir, image) = bundle_image(&conf, &["rt-latency.elf", "noisy.elf"]);
        let run = boot_two_cpus(&image, 400);
        run.exited(0, "ok")
            .saw("vm rt: vcpu 0 on cpu 1 (dedicated)")
            .saw("[rt] guest rt-latency: rt: periods=1000 median=")
            .not_saw("FAIL");
        let period = value(&run, "rt", "rt: period=", "period");
        assert!(
            (49_000..=51_000).contains(&period),
            "{label}: period {period} ticks"
        );
        if label == "with noisy" {
            run.said("noisy", "noisy: iterations=");
        }
        let worst = run.line("vm rt: exits: total");
        eprintln!(
            "rt-latency {label}: {} | {worst}",
            run.guest_line("rt", "rt: periods=")
        );
    }
}

/// The EPT shootdown kicks the VM's other vCPU out of the guest on its CPU: 100 MEM_RELEASEs
/// on vCPU 0 change the EPT, and vCPU 1 (computing on CPU 1) takes a kick for them and flushes
/// before it runs on; the kicks and their latency are counted.
#[test]
fn an_ept_change_kicks_the_vms_other_cpu() {
    let conf = vm("kick", "smp-kick.elf", "vcpus = 2\n");
    let (_dir, image) = bundle_image(&conf, &["smp-kick.elf"]);
    let run = boot_two_cpus(&image, 300);
    run.exited(0, "ok")
        .saw("[kick] guest smp-kick: smp-kick: releases=100 ok")
        .saw("vm kick: vcpu 1 on cpu 1")
        .saw("vm kick: memory: released-pages=100 faulted-in=100");
    let line = run.line("vm kick: vcpu 1 exits: kicks count=");
    let num = |key: &str| -> u64 {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{key}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {key}= in {line}"))
    };
    let (count, avg, worst) = (num("count"), num("avg"), num("worst"));
    // Each release kicks CPU 1 once; a kick sent while the previous one is still pending
    // merges with it (one IPI vector), so a few may coalesce, none may be lost entirely.
    assert!((50..=100).contains(&count), "{count} kicks: {line}");
    assert!(avg > 0 && worst >= avg, "{line}");
    assert_eq!(
        vcpu_exits(&run, "kick", 1, "external interrupt"),
        count,
        "{line}"
    );
    // vCPU 0 changed the EPT itself: nobody kicks it.
    run.not_saw("vm kick: vcpu 0 exits: kicks");
    eprintln!("{line}");
}

/// The pool: three busy VMs without `cpus` on two CPUs share both, a slice at a time (each
/// pool vCPU's VMCS VMCLEARed after its slice and loaded by whichever CPU runs it next), so
/// each computes about as much as the others; homed statically, one of them would have a CPU
/// of its own and compute about twice as much as each of the other two.
#[test]
fn pool_vcpus_share_every_cpu_of_the_pool() {
    let conf =
        vm("a", "progress.elf", "") + &vm("b", "progress.elf", "") + &vm("c", "progress.elf", "");
    let (_dir, image) = bundle_image(&conf, &["progress.elf"]);
    let run = boot_two_cpus(&image, 400);
    run.exited(0, "ok");
    let sums: Vec<u64> = ["a", "b", "c"]
        .iter()
        .map(|vm| {
            run.saw(&format!("[{vm}] guest progress: progress: done rounds=10"));
            steps(&run, vm)[1..9].iter().sum()
        })
        .collect();
    let (min, max) = (sums.iter().min().unwrap(), sums.iter().max().unwrap());
    eprintln!("pool of 2 CPUs, 3 VMs: steps {sums:?}");
    assert!(max * 10 < min * 13, "unequal shares of the pool: {sums:?}");
    // They moved between the CPUs, and time moved with them: every CPU's TSC counts the same
    // (the APs take the boot CPU's at start-up), so each VM ran at least its 10 rounds of 5 M
    // ticks by the clock of whichever CPU stopped it.
    for vm in ["a", "b", "c"] {
        let entries = bulkhead_boot::transcript::kernel_messages(&run.outcome.transcript)
            .filter(|l| *l == format!("vm {vm}: first VM entry"))
            .count();
        assert_eq!(
            entries, 1,
            "{vm}: one first VM entry, wherever it ran later"
        );
        let stopped = run.line(&format!("vm {vm}: stopped: "));
        let ran: u64 = stopped
            .split(" after ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        assert!((50_000_000..400_000_000).contains(&ran), "{vm}: {stopped}");
        let line = run.line(&format!("vm {vm}: exits: hypercalls="));
        let migrations: u64 = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("migrations="))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        assert!(migrations > 0, "{vm} never moved: {line}");
    }
}
