//! CPU fidelity (issue 13): a guest cannot tell Bulkhead's vCPU from a CPU without the
//! features Bulkhead hides. On each CPU model: the 64-bit `fidelity` guest (and its partner
//! VM, which puts its IDT in a virtio-mmio window and must be stopped), the real-mode
//! `fidelity16` guest (IVT delivery of injected faults, string I/O, long mode without LTR)
//! and `taskswitch16` (a task gate: the documented stop).

use bulkhead_tests::{boot_image, bundle_image, Checked};

const CONF: &str = r#"
[vm.fidelity]
kind = "elf64"
image = "fidelity.elf"
memory = "16M"

[vm.partner]
kind = "elf64"
image = "fidelity.elf"
memory = "16M"

[[vm.partner.virtio-blk]]
size = "64K"

[vm.real]
kind = "real16"
image = "fidelity16.bin"
memory = "4M"

[vm.tasks]
kind = "real16"
image = "taskswitch16.bin"
memory = "4M"
"#;

/// The 64-bit checks every model passes, in order.
const CHECKS: &[&str] = &[
    "rf-injected-gp",
    "cpuid-invpcid",
    "cpuid-rdtscp",
    "cpuid-rdpid",
    "cpuid-cr4-bits",
    "invd-completes",
    "mca-zero-banks",
    "tsc-adjust",
    "tsc-write-moves-adjust",
    "misc-enable",
    "cr0-64bit-rules",
    "rep-outsb",
    "rep-insb",
    "rep-insw-df",
    "insd-addr32",
];

const REAL_CHECKS: &[&str] = &[
    "real-mode-gp-ivt",
    "real-mode-ud-ivt",
    "rep-outsb-real",
    "rep-insb-real",
    "long-mode-without-ltr",
];

/// `xsave`: whether the model has XSAVE and AVX (offered to guests then).
fn fidelity_on(cpu: &str, xsave: bool) -> Checked {
    let (_dir, image) = bundle_image(
        CONF,
        &["fidelity.elf", "fidelity16.bin", "taskswitch16.bin"],
    );
    let run = boot_image(&image, cpu, 300);
    if std::env::var_os("FIDELITY_SHOW").is_some() {
        eprintln!("{}", run.outcome.transcript);
    }
    run.exited(0, "ok");
    for check in CHECKS {
        run.saw(&format!("[fidelity] guest fidelity: PASS {check}"));
    }
    let xsave_checks: &[&str] = if xsave {
        &["xsave-xsetbv", "xsave-state-survives-switches"]
    } else {
        &["xsave-hidden"]
    };
    for check in xsave_checks {
        run.saw(&format!("[fidelity] guest fidelity: PASS {check}"));
        run.saw(&format!("[partner] guest fidelity: PASS {check}"));
    }
    let passed = CHECKS.len() + xsave_checks.len();
    run.saw(&format!(
        "[fidelity] guest fidelity: DONE passed={passed} failed=0"
    ))
    .saw(&format!(
        "[fidelity] guest fidelity: xsave: {}",
        if xsave { "offered" } else { "hidden" }
    ))
    .saw("vm fidelity: stopped: guest halted with interrupts disabled (powered off)")
    // The partner: its INT 0x10 through an IDT at 0xd0000000 stops it with the report.
    .saw("vm partner: stopped: delivering vector 0x10 touched the device window at 0xd0000100")
    .not_saw("INT 0x10 through an IDT in MMIO returned");
    for check in REAL_CHECKS {
        run.saw(&format!("[real] guest fidelity16: PASS {check}"));
    }
    run.saw("[real] guest fidelity16: DONE passed=5 failed=0")
        .saw("vm real: stopped: guest halted with interrupts disabled (powered off)")
        .saw("[tasks] guest fidelity16: jumping through a task gate")
        .saw("vm tasks: stopped: task switch to TSS selector 0x20 by JMP: hardware task switching")
        .exits("tasks", "task switch", 1)
        .not_saw("FAIL")
        .not_saw("hypervisor bug")
        .saw("bulkhead: all VMs stopped (4 ran, 0 could not start)");
    // One I/O exit per REP string instruction (4,096 elements at most per exit).
    run
}

#[test]
fn fidelity_on_skylake_x() {
    fidelity_on("corei7_skylake_x", true);
}

#[test]
fn fidelity_on_arrandale() {
    fidelity_on("corei5_arrandale_m520", false);
}

#[test]
fn fidelity_on_tigerlake() {
    fidelity_on("tigerlake", true);
}
