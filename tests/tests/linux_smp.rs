//! SMP Linux (issue 11): the test guest's kernel, without `nolapic`, on the VM's interrupt
//! platform: a local APIC per vCPU, the IOAPIC and the ACPI tables. It starts its other vCPUs
//! with INIT and start-up IPIs, runs a workload pinned to every CPU (busybox `taskset`), and
//! checks /proc/cpuinfo and /proc/interrupts (the local timer on every CPU, IPIs, virtio
//! interrupts through the IOAPIC) besides its usual virtio checks.

use bulkhead_tests::{bundle_files, linux_guest, manifest_value, Checked};

const CMDLINE: &str = "console=ttyS0,115200 panic=-1 reboot=t io_delay=none tsc=reliable";

fn smp_conf(vcpus: u32) -> String {
    format!(
        "[vm.linux]\nkind = \"linux\"\nimage = \"bzImage\"\ninitrd = \"initramfs.cpio.lz4\"\nmemory = \"64M\"\n\
         vcpus = {vcpus}\ncmdline = \"{CMDLINE} bulkhead.checks=blk,net,smp bulkhead.cpus={vcpus}\"\n\
         [[vm.linux.virtio-blk]]\nsize = \"8M\"\n\
         [[vm.linux.virtio-net]]\nmac = \"52:54:00:12:34:56\"\n"
    )
}

/// Boots the SMP guest with `vcpus` vCPUs on `cpus` emulated CPUs of model `cpu`.
fn boot_smp(cpu: &str, cpus: u32, vcpus: u32) -> Checked {
    let dir = linux_guest();
    let files = [dir.join("bzImage"), dir.join("initramfs.cpio.lz4")];
    let (_tmp, image) = bundle_files(&smp_conf(vcpus), &files);
    bulkhead_tests::boot_image_smp(bulkhead_boot::Platform::Bochs, &image, cpu, cpus, 1200)
}

fn check(run: &Checked, vcpus: u32) {
    let pattern = manifest_value(&linux_guest(), "blk_pattern_sha256");
    run.exited(0, "ok")
        .said(
            "linux",
            &format!("guest: PASS virtio-blk pattern sha256={pattern}"),
        )
        .said(
            "linux",
            "guest: PASS virtio-net ping 192.0.2.1 received=3/3",
        )
        .said(
            "linux",
            &format!("guest: PASS smp cpus={vcpus} workload on every CPU sha256={pattern}"),
        )
        .said(
            "linux",
            &format!("guest: PASS smp interrupts local-timer-cpus={vcpus} "),
        )
        .said("linux", "guest: ALL PASS")
        .saw("vm linux: stopped: guest powered off (ACPI S5)")
        .not_saw("guest: FAIL")
        .not_saw("hypervisor bug")
        .not_saw("Kernel panic");
    // Every application processor was started once by the guest's own start-up IPIs.
    let startups: u64 = (1..vcpus)
        .map(|i| {
            let line = run.line(&format!("vm linux: vcpu {i} exits: apic accesses="));
            line.rsplit("startups=")
                .next()
                .and_then(|n| n.trim().parse().ok())
                .unwrap_or(0)
        })
        .sum();
    assert_eq!(startups, u64::from(vcpus - 1), "start-up IPIs taken");
    eprintln!(
        "{}",
        run.guest_line("linux", "guest: smp: local-timer-cpus=")
    );
}

/// A counter of the VM report's `vm linux: kvm-pv counters:` line.
fn kvm_pv_counter(run: &Checked, name: &str) -> u64 {
    let line = run.line("vm linux: kvm-pv counters: ");
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{name}=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name}= in {line:?}"))
}

/// Two vCPUs on a two-CPU Skylake-X (APIC virtualization: virtual-interrupt delivery). The
/// guest enables PV EOI (kvm-pv), but the CPU virtualizes its EOIs without exits, so the
/// hypervisor never offers the PV EOI bit (docs/hypercall-abi.md §9.4).
#[test]
fn smp_linux_on_two_vcpus_skylake_x() {
    let run = boot_smp("corei7_skylake_x", 2, 2);
    check(&run, 2);
    assert!(run.line("vm linux: kvm-pv: ").contains(" pv-eoi"));
    assert_eq!(kvm_pv_counter(&run, "pv-eois"), 0);
}

/// Two vCPUs on a two-CPU Arrandale (no APIC-register virtualization: full emulation). With
/// the APIC emulated, edge interrupts (the local timer, IPIs) are ended through the PV EOI
/// bit instead of an exiting EOI write.
#[test]
fn smp_linux_on_two_vcpus_arrandale() {
    let run = boot_smp("corei5_arrandale_m520", 2, 2);
    check(&run, 2);
    assert!(run.line("vm linux: kvm-pv: ").contains(" pv-eoi"));
    let pv_eois = kvm_pv_counter(&run, "pv-eois");
    assert!(pv_eois > 100, "PV EOIs done: {pv_eois}");
    eprintln!("arrandale: {}", run.line("vm linux: kvm-pv counters: "));
}

/// Four vCPUs sharing two CPUs.
#[test]
fn smp_linux_on_four_vcpus() {
    let run = boot_smp("corei7_skylake_x", 2, 4);
    check(&run, 4);
}
