//! KVM's hypercalls (issue 12): the `kvm-hc` guest, in an elf64 VM with `kvm-pv = true`,
//! makes KICK_CPU, SEND_IPI and SCHED_YIELD calls, unknown numbers and calls naming vCPUs
//! that do not exist, and checks results and delivered interrupts from inside; the VM's
//! report counts every call exactly.

use bulkhead_tests::{bundle_image, Checked};

const CHECKS: [&str; 11] = [
    "kvm-unknown-enosys",
    "kvm-bulkhead-tagged",
    "kvm-send-ipi-self",
    "kvm-send-ipi-remote",
    "kvm-send-ipi-both",
    "kvm-send-ipi-no-target",
    "kvm-send-ipi-bad-icr",
    "kvm-kick-no-target",
    "kvm-kick-halted",
    "kvm-sched-yield",
    "kvm-no-stray-interrupts",
];

fn vm(cpus: &str) -> String {
    format!(
        "[vm.kvmhc]\nkind = \"elf64\"\nimage = \"kvm-hc.elf\"\nmemory = \"16M\"\nvcpus = 2\nkvm-pv = true\ncpus = {cpus}\n"
    )
}

fn run(cpus: &str) -> Checked {
    let (_dir, image) = bundle_image(&vm(cpus), &["kvm-hc.elf"]);
    let run = bulkhead_tests::boot_image_smp(
        bulkhead_boot::Platform::Bochs,
        &image,
        "corei7_skylake_x",
        2,
        300,
    );
    run.exited(0, "ok").not_saw("FAIL");
    for check in CHECKS {
        run.saw(&format!("[kvmhc] guest kvm-hc: PASS {check}"));
    }
    run.saw("[kvmhc] guest kvm-hc: DONE passed=11 failed=0");
    // Both vCPUs ended in a HLT with interrupts off that no kick could end any more.
    let stopped = run.line("vm kvmhc: stopped: ");
    assert!(
        stopped.contains("vm kvmhc: stopped: guest halted with interrupts disabled"),
        "{stopped}"
    );
    run
}

/// The report's counters, exactly: 3 kicks (2 naming no vCPU, 1 that woke vCPU 1 from its
/// interrupts-off halt), 7 SEND_IPIs delivering 1+1+2+1 interrupts with 5 bitmap bits naming
/// no vCPU, 3 yields (`yielded` of them gave the CPU up), 7 unknown numbers, 3 refused ICRs.
fn assert_counters(run: &Checked, yielded: &[u32]) {
    let line = run.line("vm kvmhc: kvm hypercalls: ");
    let ok = yielded.iter().any(|y| {
        line.ends_with(&format!(
            "vm kvmhc: kvm hypercalls: kick-cpu=3 kick-no-target=2 kick-woke=1 send-ipi=7 ipis-delivered=5 ipis-no-target=5 sched-yield=3 yielded={y} enosys=7 eperm=0 einval=3"
        ))
    });
    assert!(ok, "{line}");
}

/// Both vCPUs on CPU 0: vCPU 1 spins while vCPU 0 runs, so it is preempted and SCHED_YIELD
/// gives it the CPU (it spins during the yield); the kick yields to it too.
#[test]
fn kvm_hypercalls_on_one_cpu() {
    let run = run("[0]");
    assert_counters(&run, &[1]);
    let line = run.guest_line("kvmhc", "guest kvm-hc: yield: spins-during-yield=");
    let spins: u64 = line
        .rsplit('=')
        .next()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    assert!(spins > 0, "vCPU 1 did not run during the yield: {line}");
}

/// vCPU 1 on CPU 1: IPIs and the kick reach it through host kicks; it runs on its own CPU, so
/// SCHED_YIELD toward it gives nothing up (it is never seen preempted but between its own
/// slices, which the counters allow).
#[test]
fn kvm_hypercalls_across_cpus() {
    let run = run("[0, 1]");
    assert_counters(&run, &[0, 1]);
    let kicks = run.line("vm kvmhc: interrupts: routed=");
    assert!(!kicks.contains(" kicks=0 "), "{kicks}");
}
